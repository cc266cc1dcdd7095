//! The simulated upstream's decisions, free of storage: what a `/start` does
//! with the binding's next outcome, and how each later call moves a
//! transaction. The service applies these inside one SQLite transaction.

use crate::protocol::Status;
use crate::script::Outcome;

/// Reason of a start refused because the balance does not cover the amount.
pub const REASON_INSUFFICIENT_BEFORE_START: &str = "insufficient_balance_before_start";
/// Reason of a pending transaction that could not be paid when it completed
/// (the balance was spent by other transactions meanwhile).
pub const REASON_INSUFFICIENT: &str = "insufficient_balance";
/// Reason of a wrong OTP: the transaction ends GAGAL at once.
pub const REASON_INVALID_OTP: &str = "invalid_otp";
/// Reason of a `/stop` on a PROCESSING transaction.
pub const REASON_STOPPED: &str = "stopped";

/// A transaction's mutable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnState {
    pub status: Status,
    /// Why it failed.
    pub reason: Option<String>,
    /// True while it waits for `/otp`.
    pub otp_required: bool,
    /// The binding's scripted amount at `/start`; debited from its balance only on SUKSES.
    pub amount: i64,
    /// `/continue` and `/check` calls counted so far.
    pub polls: u32,
    /// The poll that finishes it (`processing:N`); `None` never finishes by polling.
    pub polls_needed: Option<u32>,
    /// Set by `/pause`, cleared by `/resume`; changes nothing else.
    pub paused: bool,
}

impl TxnState {
    fn new(status: Status, amount: i64) -> TxnState {
        TxnState { status, reason: None, otp_required: false, amount, polls: 0, polls_needed: None, paused: false }
    }

    fn failed(amount: i64, reason: &str) -> TxnState {
        TxnState { reason: Some(reason.to_string()), ..TxnState::new(Status::Gagal, amount) }
    }
}

/// What a `/start` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartDecision {
    /// Create a transaction in this state.
    Create {
        /// The new transaction.
        txn: TxnState,
        /// Debit the amount from the binding's balance now.
        debit: bool,
        /// The outcome was used (the binding moves to its next one).
        consumed: bool,
        /// Sleep this long after committing, before answering (`slow:<ms>`).
        delay_ms: u64,
    },
    /// Answer this HTTP status with an error body; no transaction (the outcome is used).
    Error {
        /// 400 to 599, from the script's `error:<code>` outcome.
        status: u16,
    },
}

/// Decides a `/start` for a binding with `balance` and transaction `amount`
/// whose next outcome is `outcome`. A balance below the amount fails first,
/// without using the outcome.
pub fn decide_start(balance: i64, amount: i64, outcome: &Outcome) -> StartDecision {
    if balance < amount {
        return StartDecision::Create {
            txn: TxnState::failed(amount, REASON_INSUFFICIENT_BEFORE_START),
            debit: false,
            consumed: false,
            delay_ms: 0,
        };
    }
    let create =
        |txn: TxnState, debit: bool, delay_ms: u64| StartDecision::Create { txn, debit, consumed: true, delay_ms };
    match outcome {
        Outcome::Success => create(TxnState::new(Status::Sukses, amount), true, 0),
        Outcome::Slow(ms) => create(TxnState::new(Status::Sukses, amount), true, *ms),
        Outcome::Fail(reason) => create(TxnState::failed(amount, reason), false, 0),
        Outcome::Otp => create(TxnState { otp_required: true, ..TxnState::new(Status::Processing, amount) }, false, 0),
        Outcome::Processing(n) => {
            create(TxnState { polls_needed: *n, ..TxnState::new(Status::Processing, amount) }, false, 0)
        }
        Outcome::Error(status) => StartDecision::Error { status: *status },
    }
}

/// A call on an existing transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// `/otp` with the OTP sent and the binding's expected OTP.
    Otp {
        /// What the caller sent.
        given: &'a str,
        /// What the binding's script expects.
        expected: &'a str,
    },
    /// `/continue` or `/check`: one poll.
    Poll,
    /// `/pause`: sets the `paused` flag, which changes nothing else (polls still count).
    Pause,
    /// `/resume`: clears the `paused` flag.
    Resume,
    /// `/stop`: a PROCESSING transaction ends GAGAL `stopped`; a final one stays as it is.
    Stop,
}

/// The result of a call on a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The transaction after the call.
    pub txn: TxnState,
    /// Debit the amount from the binding's balance now.
    pub debit: bool,
    /// For `/otp` that was checked: whether the OTP was right; otherwise `None`.
    pub otp_ok: Option<bool>,
}

/// Finishes a pending transaction successfully if the balance still covers it.
fn complete(mut txn: TxnState, balance: i64) -> (TxnState, bool) {
    txn.otp_required = false;
    if balance < txn.amount {
        txn.status = Status::Gagal;
        txn.reason = Some(REASON_INSUFFICIENT.to_string());
        (txn, false)
    } else {
        txn.status = Status::Sukses;
        txn.reason = None;
        (txn, true)
    }
}

/// Decides a call on a transaction given the binding's current `balance`.
/// Final transactions never change (pause/resume still set the flag); an OTP
/// is only checked while one is required; polls only count on a transaction
/// that waits for polls.
pub fn decide_call(txn: &TxnState, action: Action<'_>, balance: i64) -> Step {
    let unchanged = |txn: TxnState| Step { txn, debit: false, otp_ok: None };
    let mut next = txn.clone();
    match action {
        Action::Pause => {
            next.paused = true;
            unchanged(next)
        }
        Action::Resume => {
            next.paused = false;
            unchanged(next)
        }
        _ if txn.status.is_final() => unchanged(next),
        Action::Stop => {
            next.status = Status::Gagal;
            next.reason = Some(REASON_STOPPED.to_string());
            next.otp_required = false;
            unchanged(next)
        }
        Action::Otp { given, expected } => {
            if !txn.otp_required {
                return unchanged(next);
            }
            if given == expected {
                let (next, debit) = complete(next, balance);
                Step { txn: next, debit, otp_ok: Some(true) }
            } else {
                next.status = Status::Gagal;
                next.reason = Some(REASON_INVALID_OTP.to_string());
                next.otp_required = false;
                Step { txn: next, debit: false, otp_ok: Some(false) }
            }
        }
        Action::Poll => {
            if txn.otp_required {
                return unchanged(next);
            }
            next.polls = next.polls.saturating_add(1);
            match next.polls_needed {
                Some(n) if next.polls >= n => {
                    let (next, debit) = complete(next, balance);
                    Step { txn: next, debit, otp_ok: None }
                }
                _ => unchanged(next),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(d: StartDecision) -> (TxnState, bool, bool, u64) {
        match d {
            StartDecision::Create { txn, debit, consumed, delay_ms } => (txn, debit, consumed, delay_ms),
            other => panic!("expected a transaction, got {other:?}"),
        }
    }

    #[test]
    fn start_outcomes() {
        let (t, debit, used, delay) = created(decide_start(5000, 1000, &Outcome::Success));
        assert_eq!((t.status, debit, used, delay), (Status::Sukses, true, true, 0));
        let (t, debit, _, delay) = created(decide_start(5000, 1000, &Outcome::Slow(30)));
        assert_eq!((t.status, debit, delay), (Status::Sukses, true, 30));
        let (t, debit, used, _) = created(decide_start(5000, 1000, &Outcome::Fail("blocked".into())));
        assert_eq!((t.status, t.reason.as_deref(), debit, used), (Status::Gagal, Some("blocked"), false, true));
        let (t, debit, _, _) = created(decide_start(5000, 1000, &Outcome::Otp));
        assert_eq!((t.status, t.otp_required, debit), (Status::Processing, true, false));
        let (t, _, _, _) = created(decide_start(5000, 1000, &Outcome::Processing(Some(2))));
        assert_eq!((t.status, t.otp_required, t.polls_needed), (Status::Processing, false, Some(2)));
        assert_eq!(decide_start(5000, 1000, &Outcome::Error(503)), StartDecision::Error { status: 503 });
    }

    #[test]
    fn insufficient_balance_comes_first_and_keeps_the_outcome() {
        for o in [Outcome::Success, Outcome::Error(503), Outcome::Otp] {
            let (t, debit, used, _) = created(decide_start(999, 1000, &o));
            assert_eq!(t.status, Status::Gagal);
            assert_eq!(t.reason.as_deref(), Some(REASON_INSUFFICIENT_BEFORE_START));
            assert!(!debit && !used);
        }
        // Exactly enough is enough.
        assert!(matches!(decide_start(1000, 1000, &Outcome::Success), StartDecision::Create { debit: true, .. }));
    }

    fn pending_otp() -> TxnState {
        created(decide_start(5000, 1000, &Outcome::Otp)).0
    }

    #[test]
    fn otp_right_and_wrong() {
        let t = pending_otp();
        let s = decide_call(&t, Action::Otp { given: "123456", expected: "123456" }, 5000);
        assert_eq!((s.txn.status, s.txn.otp_required, s.debit, s.otp_ok), (Status::Sukses, false, true, Some(true)));
        let s = decide_call(&t, Action::Otp { given: "000000", expected: "123456" }, 5000);
        assert_eq!(
            (s.txn.status, s.txn.reason.as_deref(), s.debit, s.otp_ok),
            (Status::Gagal, Some("invalid_otp"), false, Some(false))
        );
        // The balance was spent meanwhile.
        let s = decide_call(&t, Action::Otp { given: "123456", expected: "123456" }, 10);
        assert_eq!(
            (s.txn.status, s.txn.reason.as_deref(), s.debit),
            (Status::Gagal, Some("insufficient_balance"), false)
        );
        // Polls do not finish an OTP transaction.
        let s = decide_call(&t, Action::Poll, 5000);
        assert_eq!(s.txn, t);
    }

    #[test]
    fn polling() {
        let mut t = created(decide_start(5000, 1000, &Outcome::Processing(Some(3)))).0;
        for _ in 0..2 {
            let s = decide_call(&t, Action::Poll, 5000);
            assert_eq!((s.txn.status, s.debit), (Status::Processing, false));
            t = s.txn;
        }
        let s = decide_call(&t, Action::Poll, 5000);
        assert_eq!((s.txn.status, s.txn.polls, s.debit), (Status::Sukses, 3, true));
        // A final transaction stays as it is.
        let again = decide_call(&s.txn, Action::Poll, 5000);
        assert_eq!((again.txn.clone(), again.debit), (s.txn, false));

        let mut never = created(decide_start(5000, 1000, &Outcome::Processing(None))).0;
        for _ in 0..100 {
            never = decide_call(&never, Action::Poll, 5000).txn;
        }
        assert_eq!((never.status, never.polls), (Status::Processing, 100));
        // An OTP on a transaction that wants none is not checked.
        let s = decide_call(&never, Action::Otp { given: "x", expected: "y" }, 5000);
        assert_eq!((s.txn, s.otp_ok), (never, None));
    }

    #[test]
    fn stop_pause_resume() {
        let t = pending_otp();
        let s = decide_call(&t, Action::Stop, 5000);
        assert_eq!(
            (s.txn.status, s.txn.reason.as_deref(), s.txn.otp_required),
            (Status::Gagal, Some("stopped"), false)
        );
        let done = created(decide_start(5000, 1000, &Outcome::Success)).0;
        assert_eq!(decide_call(&done, Action::Stop, 5000).txn, done);
        assert_eq!(decide_call(&done, Action::Otp { given: "1", expected: "2" }, 5000).otp_ok, None);
        let p = decide_call(&t, Action::Pause, 5000).txn;
        assert!(p.paused);
        assert_eq!((p.status, p.otp_required), (t.status, t.otp_required));
        assert!(!decide_call(&p, Action::Resume, 5000).txn.paused);
    }
}
