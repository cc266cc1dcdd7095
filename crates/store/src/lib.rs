//! The store remembers: Stepwise's schema, migrations and queries over Spin's
//! SQLite (`spin:sqlite/sqlite@3.0.0`), shared by the components.
//!
//! Every state change that must be atomic is one `BEGIN IMMEDIATE`
//! transaction ([`Db::immediate`]); no transaction stays open across an
//! outbound call.

#![warn(missing_docs)]

pub mod api_keys;
pub mod audit;
pub mod db;
pub mod effects;
pub mod idempotency;
pub mod inbox;
pub mod instance;
pub mod iterations;
pub mod lease;
pub mod ledger;
pub mod machines;
pub mod metrics;
pub mod migrations;
#[cfg(feature = "native")]
pub mod native;
pub mod otp_queue;
pub mod outbox;
pub mod postgres;
pub mod requests;
pub mod retention;
pub mod sagas;
pub mod subscriptions;
pub mod transfers;
pub mod value;
pub mod workers;

pub use db::{Db, StoreError};
