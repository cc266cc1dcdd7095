//! Property tests of the ledger's rules: random sequences of acceptances,
//! executions (in batches, each batch one transaction that may crash before
//! it commits), freezes and unfreezes, against a model of the store that
//! applies the engine's decisions the way the store does. After every
//! operation: money is conserved, no account without `allow_negative` has
//! `balance − held < 0`, every journal balances, each account's balance is the
//! sum of its lines and its `held` the sum of its processing transfers, and
//! every completed transfer has exactly one journal.

use std::collections::BTreeMap;

use proptest::prelude::*;
use stepwise_engine::ledger::{Account, AccountSpec, AccountStatus, Line};
use stepwise_engine::receipt::Key;
use stepwise_engine::transfer::{self, Outcome, State, Transfer, TransferRequest};

const NOW: i64 = 1_795_000_000_000;
const ACCOUNTS: usize = 6;

/// The store, in memory: what one committed transaction at a time leaves.
#[derive(Clone, Default)]
struct Book {
    accounts: BTreeMap<String, Account>,
    transfers: Vec<Transfer>,
    /// (external_ref, lines)
    journals: Vec<(String, Vec<Line>)>,
}

#[derive(Debug, Clone)]
enum Op {
    Accept { from: usize, to: usize, amount: i64 },
    Execute { batch: usize, crash_after: Option<usize> },
    Freeze(usize),
    Unfreeze(usize),
}

fn name(i: usize) -> String {
    if i == 0 {
        "bank".into()
    } else {
        format!("user-{i}")
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..ACCOUNTS + 1, 0..ACCOUNTS + 1, prop_oneof![1i64..500, Just(transfer_max())])
            .prop_map(|(from, to, amount)| Op::Accept { from, to, amount }),
        3 => (1usize..8, proptest::option::of(0usize..8)).prop_map(|(batch, crash_after)| Op::Execute { batch, crash_after }),
        1 => (0..ACCOUNTS).prop_map(Op::Freeze),
        1 => (0..ACCOUNTS).prop_map(Op::Unfreeze),
    ]
}

fn transfer_max() -> i64 {
    stepwise_engine::ledger::MAX_AMOUNT
}

impl Book {
    fn new() -> Self {
        let mut b = Book::default();
        for i in 0..ACCOUNTS {
            let spec = AccountSpec { id: name(i), currency: "IDR".into(), allow_negative: i == 0, name: None };
            b.accounts.insert(name(i), Account::open(spec));
        }
        b
    }

    /// One acceptance transaction (index ACCOUNTS names an unknown account).
    fn accept(&mut self, from: usize, to: usize, amount: i64, at: i64) {
        let req = TransferRequest { from: name(from), to: name(to), amount, currency: "IDR".into(), description: None };
        let before = self.clone();
        let to_account = self.accounts.get(&req.to).cloned();
        let result = transfer::accept(&req, self.accounts.get_mut(&req.from), to_account.as_ref());
        match result {
            Ok(()) => {
                let id = self.transfers.len() as u64 + 1;
                let receipt_code = transfer::receipt_code(&Key::new(&[1; 32]), id);
                self.transfers.push(Transfer {
                    id,
                    receipt_code,
                    request: req,
                    created_at: at,
                    state: State::Processing,
                });
            }
            Err(_) => {
                assert!(
                    self.accounts == before.accounts && self.transfers.len() == before.transfers.len(),
                    "a refusal changed something"
                );
            }
        }
    }

    /// One execution transaction over the oldest `batch` processing
    /// transfers; a crash after `crash_after` of them loses the whole
    /// transaction, as a rollback does.
    fn execute(&mut self, batch: usize, crash_after: Option<usize>, at: i64) {
        let mut next = self.clone();
        let due: Vec<usize> = next
            .transfers
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state == State::Processing)
            .map(|(i, _)| i)
            .take(batch)
            .collect();
        for (n, i) in due.into_iter().enumerate() {
            if crash_after == Some(n) {
                return;
            }
            let t = next.transfers[i].clone();
            let mut from = next.accounts[&t.request.from].clone();
            let mut to = next.accounts[&t.request.to].clone();
            let outcome = transfer::execute(&t, &mut from, &mut to);
            let state = match outcome {
                Outcome::Post(journal) => {
                    next.journals.push((journal.external_ref().to_string(), journal.lines().to_vec()));
                    State::Completed { journal_id: next.journals.len() as i64, at }
                }
                Outcome::Fail(reason) => State::Failed { reason, at },
            };
            next.accounts.insert(from.id().to_string(), from);
            next.accounts.insert(to.id().to_string(), to);
            next.transfers[i].state = state;
        }
        *self = next;
    }

    fn set_status(&mut self, i: usize, status: AccountStatus) {
        if let Some(a) = self.accounts.get_mut(&name(i)) {
            a.status = status;
        }
    }

    fn check(&self) {
        let total: i64 = self.accounts.values().map(|a| a.balance).sum();
        assert_eq!(total, 0, "money is conserved");
        for (r, lines) in &self.journals {
            let d: i128 = lines.iter().map(|l| i128::from(l.debit)).sum();
            let c: i128 = lines.iter().map(|l| i128::from(l.credit)).sum();
            assert_eq!(d, c, "journal {r} balances");
        }
        for a in self.accounts.values() {
            if !a.spec.allow_negative {
                assert!(a.available() >= 0, "{} went below zero: {a:?}", a.id());
            }
            let from_lines: i64 = self
                .journals
                .iter()
                .flat_map(|(_, l)| l)
                .filter(|l| l.account == a.id())
                .map(|l| l.credit - l.debit)
                .sum();
            assert_eq!(a.balance, from_lines, "{}'s balance is the sum of its lines", a.id());
            let held: i64 = self
                .transfers
                .iter()
                .filter(|t| t.state == State::Processing && t.request.from == a.id())
                .map(|t| t.request.amount)
                .sum();
            assert_eq!(a.held, held, "{}'s held is its processing transfers", a.id());
        }
        for t in &self.transfers {
            let journals = self.journals.iter().filter(|(r, _)| *r == t.receipt_code()).count();
            match t.state {
                State::Completed { journal_id, .. } => {
                    assert_eq!(journals, 1, "completed transfer {} has exactly one journal", t.id);
                    assert_eq!(self.journals[journal_id as usize - 1].0, t.receipt_code());
                }
                _ => assert_eq!(journals, 0, "transfer {} has no journal unless completed", t.id),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_invariants_hold_for_any_sequence(ops in proptest::collection::vec(op(), 1..120)) {
        let mut book = Book::new();
        for (step, op) in ops.iter().enumerate() {
            let at = NOW + step as i64;
            match *op {
                Op::Accept { from, to, amount } => book.accept(from, to, amount, at),
                Op::Execute { batch, crash_after } => book.execute(batch, crash_after, at),
                Op::Freeze(i) => book.set_status(i, AccountStatus::Frozen),
                Op::Unfreeze(i) => book.set_status(i, AccountStatus::Active),
            }
            book.check();
        }
        // Whatever happened, the queue drains once nothing crashes.
        book.execute(usize::MAX, None, NOW + 1_000);
        book.check();
        prop_assert!(book.transfers.iter().all(|t| t.state.is_final()));
    }
}
