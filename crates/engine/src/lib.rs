//! Stepwise's engine: the rules, with no I/O.
//!
//! The engine decides, the components translate, the store remembers. Every
//! function here is pure: time comes in as an argument (milliseconds since the
//! Unix epoch), and the answer is the next state plus what to do next (one
//! upstream call, a wait until a deadline, or nothing), in the manner of
//! `quinn-proto`'s sans-I/O state machines.
//!
//! - [`access`]: API key scopes and secrets.
//! - [`machine`]: what every durable machine is to the tick.
//! - [`worker`]: the binding worker and its loop rule (CONTRACT section 2).
//! - [`policy`]: worker policies, their defaults and validation.
//! - [`upstream`]: the upstream transaction service's protocol (section 1).
//! - [`binding`], [`otp`]: input rules for binding ids and OTPs.
//! - [`payment`]: the Midtrans notification signature and payment statuses.
//! - [`receipt`]: receipt codes.
//! - [`idempotency`]: idempotency keys: their rules, scopes and lifetimes.
//! - [`ledger`], [`transfer`]: accounts, the double-entry ledger, transfers.
//! - [`saga`]: saga definitions, templates and the saga machine.
//! - [`subscription`]: event subscriptions, their delivery and signatures.
//! - [`retention`]: how long history is kept, and which machines are finished.
//! - [`time`]: RFC 3339 formatting of engine timestamps.
//! - [`views`]: the API's answers as types, described by the OpenAPI document.

#![warn(missing_docs)]

pub mod access;
pub mod binding;
pub mod error;
pub mod idempotency;
pub mod ledger;
pub mod machine;
pub mod otp;
pub mod payment;
pub mod policy;
pub mod receipt;
pub mod retention;
pub mod saga;
pub mod subscription;
pub mod text;
pub mod time;
pub mod transfer;
pub mod upstream;
pub mod views;
pub mod worker;

pub use error::{Error, FieldError};
