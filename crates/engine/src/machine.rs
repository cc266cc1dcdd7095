//! What every durable machine is to the tick (ARCHITECTURE "Durable
//! machines"): a plain value the store keeps between steps, advanced in the
//! manner of `quinn-proto`'s sans-I/O state machines.
//!
//! The stepper asks a machine for its next [`Step`] with [`Machine::poll`],
//! makes at most that one outbound call, and feeds the answer back with
//! [`Machine::on_answer`]. Outside events (an operator's control, an OTP, a
//! webhook notification) come in through [`Machine::on_signal`]. Whatever the
//! store must do in the same transaction as saving the machine comes out of
//! [`Machine::drain_effects`]. Time is always an argument.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::time::Millis;
use crate::Error;

/// The kinds of durable machine, as stored in the `machines` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A binding worker ([`crate::worker::Worker`]).
    Worker,
    /// A saga ([`crate::saga::machine::Saga`]).
    Saga,
    /// An event subscription ([`crate::subscription::Subscription`]).
    Subscription,
}

impl Kind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Worker => "worker",
            Kind::Saga => "saga",
            Kind::Subscription => "subscription",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "worker" => Some(Kind::Worker),
            "saga" => Some(Kind::Saga),
            "subscription" => Some(Kind::Subscription),
            _ => None,
        }
    }
}

/// A call sent and not yet answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight<C> {
    /// What was sent, kept so that a call whose answer was never recorded is sent again as it was.
    pub call: C,
    /// Its request id (the request log row's id).
    pub request_id: String,
    /// When it was first sent.
    pub sent_at: Millis,
}

/// What the stepper should do with a machine now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<C> {
    /// Make this call: write its request-log row, then [`Machine::begin`], in
    /// the claim's transaction.
    Call(C),
    /// A call whose answer was never recorded: send it again with the same
    /// request id.
    Resend(InFlight<C>),
    /// Nothing before this time.
    Wait(Millis),
    /// Nothing until an outside event.
    Idle,
}

/// A value the store keeps in the `machines` table between steps and advances one call at a time.
pub trait Machine: Serialize + DeserializeOwned {
    /// The outbound call it asks for.
    type Call: Clone;
    /// A judged answer to one of its calls.
    type Answer;
    /// An outside event.
    type Signal;
    /// Something the store must do in the same transaction as the save.
    type Effect;

    /// Its row's `kind` in the `machines` table (ids are unique within a kind).
    const KIND: Kind;

    /// Its id within the kind.
    fn id(&self) -> &str;

    /// Its run number (a machine that can be started again counts runs).
    fn run(&self) -> u64;

    /// The state name the API filters on (stored beside the snapshot).
    fn state_name(&self) -> &'static str;

    /// Decides the next step at `now` (inside the claim's transaction).
    fn poll(&mut self, now: Millis) -> Step<Self::Call>;

    /// Marks `call` as sent with `request_id` (same transaction as the
    /// claim). A call the machine did not ask for (see [`Machine::poll`]) is
    /// an [`Error`] and changes nothing.
    fn begin(&mut self, call: Self::Call, request_id: String, now: Millis) -> Result<(), Error>;

    /// Records the answer to the call in flight with `request_id`; an answer
    /// that belongs to no call in flight is [`Error::Stale`].
    fn on_answer(&mut self, request_id: &str, answer: Self::Answer, now: Millis) -> Result<(), Error>;

    /// Applies an outside event.
    fn on_signal(&mut self, signal: Self::Signal, now: Millis) -> Result<(), Error>;

    /// When the stepper should next look at it (`None`: only after an
    /// outside event). A machine with a call in flight is due when that
    /// call's lease runs out, which the store tracks.
    fn next_due(&self) -> Option<Millis>;

    /// Takes the effects produced since the last call.
    fn drain_effects(&mut self) -> Vec<Self::Effect>;

    /// Whether one of its calls is out (claimed and not yet recorded): a
    /// change made meanwhile keeps the lease, so the stepper that sent the
    /// call records its answer.
    fn calling(&self) -> bool;
}

/// How long a claim lasts: the call's time-out plus a margin that covers the
/// record's wait for the database (up to the 5 s busy timeout, twice: once
/// for the claim's commit, once for the record) with room to spare. Another
/// stepper may take the machine over only after this; a record delayed by
/// lock contention still finds its lease.
pub fn lease_ms(call_timeout_ms: u64) -> i64 {
    call_timeout_ms.saturating_add(LEASE_MARGIN_MS) as i64
}

/// What [`lease_ms`] adds to the call's time-out, in ms.
pub const LEASE_MARGIN_MS: u64 = 15_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in [Kind::Worker, Kind::Saga, Kind::Subscription] {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("nope"), None);
    }

    #[test]
    fn the_lease_outlives_the_call_and_two_busy_timeouts() {
        assert!(lease_ms(10_000) > 10_000 + 2 * 5_000);
    }
}
