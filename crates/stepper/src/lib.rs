//! The stepper: how every durable machine is advanced, one recorded step at a
//! time (ARCHITECTURE "Storage rules"). A step is three moves:
//!
//! 1. **claim** ([`claim`]): one transaction ([`Db::locking`]) loads and
//!    locks the machine (skipping it if another stepper holds it), checks its lease, asks it for its next step, inserts the
//!    request-log row (whose id is the request id), marks the call begun,
//!    carries out the effects and saves the machine with a lease;
//! 2. **call** ([`Transport::send`]): no lock held, bounded by a time-out;
//! 3. **record** ([`record`]): one transaction checks that the lease is still
//!    this stepper's, judges the answer, feeds it to the machine, carries out
//!    the effects and saves it with the lease released.
//!
//! [`run`] is one tick: it claims due machines and keeps stepping (a machine
//! due again right after its record is stepped again) until its time budget
//! runs out, with up to `concurrency` calls in flight. The database and the
//! network are behind [`Db`] (Spin's SQLite or rusqlite) and [`Transport`]
//! (wasi:http or a script), and time behind [`Clock`], so the protocol has
//! native tests.
//!
//! The store (`stepwise-store`) remembers, one module per table; this crate
//! drives: the protocol ([`step`]), the tick's loop ([`tick`]), and how each
//! kind of machine is stepped ([`Stepped`] for workers, sagas and
//! subscriptions: their calls' URLs, headers and bodies, how answers are
//! judged, their metrics).

#![warn(missing_docs)]

pub mod step;
pub mod tick;

mod saga;
mod subscription;
mod worker;

pub use step::*;
pub use tick::{run, Totals};
