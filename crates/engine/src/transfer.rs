//! Transfers (CONTRACT section 7): the request and its pre-checks, the hold
//! acceptance takes, execution (the journal it posts, or why it fails), the
//! transfer's states and its receipt code.
//!
//! A transfer lives in two moves, each one database transaction:
//!
//! 1. **accept** ([`accept`]): both accounts exist, are active, share the
//!    currency and differ, and `from` can send the amount; then the amount is
//!    held on `from` (`held += amount`) and the transfer is `processing`. A
//!    refused transfer changes nothing and gets no receipt. Because of the
//!    hold, an accepted transfer never fails for want of funds.
//! 2. **execute** ([`execute`], in the tick, many per transaction): the hold is
//!    released and, if both accounts are still active, a balanced journal
//!    debits `from` and credits `to` (`completed`); otherwise it is `failed`
//!    with its reason and only the hold is released. A transfer whose account
//!    is gone ([`execute_orphan`]) or whose row cannot be read fails too
//!    (`account_missing`, `unreadable`), alone.
//!
//! `executing` is the state of a transfer inside the execution transaction:
//! execution is all or nothing, so no reader ever sees a transfer stay there.

use serde::{Deserialize, Serialize};

use crate::idempotency;
use crate::ledger::{self, Account, AccountStatus, Journal};
use crate::receipt::{self, Key, ReceiptError, TRANSFER_PREFIX};
use crate::time::Millis;
use crate::FieldError;

/// How long `?wait=true` waits for a transfer to be final.
pub const WAIT_MS: i64 = 10_000;

/// `POST /api/transfers`'s body, checked ([`TransferRequest::from_json`]
/// reads it field by field, naming the field at fault; the OpenAPI
/// document describes it with this type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = TransferCreate))]
pub struct TransferRequest {
    /// The account debited.
    pub from: String,
    /// The account credited.
    pub to: String,
    /// A JSON integer from 1 to 2^53 − 1, in minor units.
    pub amount: i64,
    /// Both accounts' currency.
    pub currency: String,
    /// For people: up to 256 printable characters.
    pub description: Option<String>,
}

impl TransferRequest {
    /// Reads and checks the body, naming the field at fault.
    pub fn from_json(body: &serde_json::Value) -> Result<Self, FieldError> {
        let obj = ledger::object(body, &["from", "to", "amount", "currency", "description"])?;
        let from = ledger::required_str(obj, "from")?;
        ledger::validate_account_id(from, "from")?;
        let to = ledger::required_str(obj, "to")?;
        ledger::validate_account_id(to, "to")?;
        let amount = ledger::amount(obj.get("amount").unwrap_or(&serde_json::Value::Null), "amount")?;
        let currency = ledger::required_str(obj, "currency")?;
        ledger::validate_currency(currency, "currency")?;
        let description = ledger::optional_text(obj, "description")?;
        Ok(Self { from: from.into(), to: to.into(), amount, currency: currency.into(), description })
    }

    /// Its [`idempotency::fingerprint`], to tell a repeat from another
    /// request under the same `Idempotency-Key` (over `[from, to, amount,
    /// currency, description]`, as every release has stored it).
    pub fn fingerprint(&self) -> String {
        idempotency::fingerprint(&serde_json::json!([self.from, self.to, self.amount, self.currency, self.description]))
    }
}

/// Which side of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The account debited.
    From,
    /// The account credited.
    To,
}

impl Side {
    fn field(self) -> &'static str {
        match self {
            Side::From => "from",
            Side::To => "to",
        }
    }
}

/// Why a transfer is refused at acceptance (422) or fails at execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An account does not exist.
    AccountNotFound(Side),
    /// The account on that side is not active (`account_frozen`).
    AccountFrozen(Side),
    /// An account's currency is not the transfer's.
    CurrencyMismatch(Side),
    /// `from` and `to` are the same account.
    SameAccount,
    /// `from` cannot send the amount.
    InsufficientBalance {
        /// What it can send.
        available: i64,
    },
    /// The transfer would take a balance or a hold past
    /// [`ledger::BALANCE_LIMIT`].
    BalanceLimit(Side),
}

impl Refusal {
    /// The contract's code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::AccountNotFound(_) => "account_not_found",
            Refusal::AccountFrozen(_) => "account_frozen",
            Refusal::CurrencyMismatch(_) => "currency_mismatch",
            Refusal::SameAccount => "same_account",
            Refusal::InsufficientBalance { .. } => "insufficient_balance",
            Refusal::BalanceLimit(_) => "balance_limit",
        }
    }

    /// What people read.
    pub fn message(&self, req: &TransferRequest) -> String {
        let account = |s: Side| match s {
            Side::From => &req.from,
            Side::To => &req.to,
        };
        match self {
            Refusal::AccountNotFound(s) => format!("{}: no account {:?}", s.field(), account(*s)),
            Refusal::AccountFrozen(s) => format!("{}: account {:?} is frozen", s.field(), account(*s)),
            Refusal::CurrencyMismatch(s) => {
                format!("{}: account {:?} is not in {}", s.field(), account(*s), req.currency)
            }
            Refusal::SameAccount => "from and to are the same account".into(),
            Refusal::InsufficientBalance { available } => {
                format!("from: account {:?} has {available} available, less than {}", req.from, req.amount)
            }
            Refusal::BalanceLimit(s) => {
                format!(
                    "{}: account {:?} would pass the ledger's limit of {}",
                    s.field(),
                    account(*s),
                    ledger::BALANCE_LIMIT
                )
            }
        }
    }
}

/// The pre-checks, in the contract's order: both accounts exist, are active,
/// share the currency, differ, and `from` can send the amount.
pub fn precheck(req: &TransferRequest, from: Option<&Account>, to: Option<&Account>) -> Result<(), Refusal> {
    let from = from.ok_or(Refusal::AccountNotFound(Side::From))?;
    let to = to.ok_or(Refusal::AccountNotFound(Side::To))?;
    for (side, a) in [(Side::From, from), (Side::To, to)] {
        if a.status == AccountStatus::Frozen {
            return Err(Refusal::AccountFrozen(side));
        }
    }
    for (side, a) in [(Side::From, from), (Side::To, to)] {
        if a.spec.currency != req.currency {
            return Err(Refusal::CurrencyMismatch(side));
        }
    }
    if from.id() == to.id() {
        return Err(Refusal::SameAccount);
    }
    if !from.can_send(req.amount) {
        return Err(Refusal::InsufficientBalance { available: from.available() });
    }
    // What the transfer can do to both balances once executed, and the hold.
    let held_ok = from.held.checked_add(req.amount).is_some_and(|h| h <= ledger::BALANCE_LIMIT);
    if !held_ok || !from.balance_can_take(-req.amount) {
        return Err(Refusal::BalanceLimit(Side::From));
    }
    if !to.balance_can_take(req.amount) {
        return Err(Refusal::BalanceLimit(Side::To));
    }
    Ok(())
}

/// Accepts `req`: the pre-checks, then the hold on `from` (`held += amount`).
/// On a refusal `from` is unchanged.
pub fn accept(req: &TransferRequest, from: Option<&mut Account>, to: Option<&Account>) -> Result<(), Refusal> {
    precheck(req, from.as_deref(), to)?;
    if let Some(from) = from {
        from.held += req.amount;
    }
    Ok(())
}

/// Why an accepted transfer failed at execution (it released its hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = TransferFailReason))]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// An account was frozen after acceptance.
    AccountFrozen,
    /// An account's state broke an invariant (it could not send the held
    /// amount): a damaged database, never a client's doing.
    InsufficientBalance,
    /// A balance would pass [`ledger::BALANCE_LIMIT`] (transfers to the same
    /// account accepted together).
    BalanceLimit,
    /// An account no longer exists (deleted behind the API's back, which
    /// never deletes one): the hold on `from` is released if `from` exists.
    AccountMissing,
    /// The stored transfer cannot be read (a damaged row): the hold is
    /// released only where the row still says from which account and how
    /// much.
    Unreadable,
}

impl FailReason {
    /// The contract's string.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::AccountFrozen => "account_frozen",
            FailReason::InsufficientBalance => "insufficient_balance",
            FailReason::BalanceLimit => "balance_limit",
            FailReason::AccountMissing => "account_missing",
            FailReason::Unreadable => "unreadable",
        }
    }

    /// Parses a stored reason.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "account_frozen" => Some(FailReason::AccountFrozen),
            "insufficient_balance" => Some(FailReason::InsufficientBalance),
            "balance_limit" => Some(FailReason::BalanceLimit),
            "account_missing" => Some(FailReason::AccountMissing),
            "unreadable" => Some(FailReason::Unreadable),
            _ => None,
        }
    }
}

/// The names of a transfer's states, as the API shows and filters them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = TransferStatus))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted, its amount held, waiting for execution.
    Processing,
    /// Inside the execution transaction (never seen committed).
    Executing,
    /// Posted: one journal.
    Completed,
    /// Not posted; the hold released.
    Failed,
}

impl Status {
    /// Every status, for metrics and filters.
    pub const ALL: [Status; 4] = [Status::Processing, Status::Executing, Status::Completed, Status::Failed];

    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Processing => "processing",
            Status::Executing => "executing",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Where a transfer is, with what each state carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Accepted, waiting for execution.
    Processing,
    /// Posted as journal `journal_id` at `at`.
    Completed {
        /// The posted journal's id (`GET /api/journals/{id}`); its `external_ref` is the receipt code.
        journal_id: i64,
        /// When the journal was posted.
        at: Millis,
    },
    /// Failed at execution at `at`: no journal was posted (see [`FailReason`] for the hold).
    Failed {
        /// Why execution failed.
        reason: FailReason,
        /// When it failed.
        at: Millis,
    },
}

impl State {
    /// The status the API shows, without what the state carries.
    pub fn status(&self) -> Status {
        match self {
            State::Processing => Status::Processing,
            State::Completed { .. } => Status::Completed,
            State::Failed { .. } => Status::Failed,
        }
    }

    /// Whether it has ended (completed or failed).
    pub fn is_final(&self) -> bool {
        !matches!(self, State::Processing)
    }
}

/// A transfer of `amount` minor units between two accounts of one currency, from acceptance to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Its row id (the receipt code is made from it).
    pub id: u64,
    /// Its receipt code: [`receipt_code`] of `id` under the database's key.
    pub receipt_code: String,
    /// What was asked.
    pub request: TransferRequest,
    /// When it was accepted.
    pub created_at: Millis,
    /// Processing, or completed or failed and when.
    pub state: State,
}

impl Transfer {
    /// Its receipt code: how the API names the transfer (the row id stays hidden).
    pub fn receipt_code(&self) -> &str {
        &self.receipt_code
    }
}

/// The receipt code of transfer `id` under the database's `key`.
pub fn receipt_code(key: &Key, id: u64) -> String {
    receipt::code(key, TRANSFER_PREFIX, id)
}

/// A receipt code that names no transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Not a receipt code, or a mistyped one (400 `invalid_receipt_code`).
    #[error("{0}")]
    Invalid(ReceiptError),
    /// A well-formed code that is not a transfer's (404).
    #[error("no transfer has this receipt code")]
    Unknown,
}

/// The transfer id a receipt code names under the database's `key`. A
/// mistyped code is told without the key; a well-formed one decodes to the
/// one id whose code it is, which the caller looks up (a code never issued
/// names an id no transfer has).
pub fn id_from_receipt(key: &Key, code: &str) -> Result<u64, LookupError> {
    let parsed = receipt::parse(code).map_err(LookupError::Invalid)?;
    if parsed.prefix != TRANSFER_PREFIX {
        return Err(LookupError::Unknown);
    }
    parsed.id(key).ok_or(LookupError::Unknown)
}

/// What executing a transfer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Post this journal; the transfer completes.
    Post(Journal),
    /// The transfer fails.
    Fail(FailReason),
}

/// Executes `t` (processing) against its accounts as they are now: releases
/// the hold on `from` and, if both are active, applies the journal it posts
/// to both balances. `from` and `to` are changed in place either way; the
/// caller writes them, the journal and the new state in one transaction.
pub fn execute(t: &Transfer, from: &mut Account, to: &mut Account) -> Outcome {
    let amount = t.request.amount;
    debug_assert_eq!(t.state, State::Processing);
    debug_assert!(from.id() == t.request.from && to.id() == t.request.to);
    from.held -= amount;
    if from.status == AccountStatus::Frozen || to.status == AccountStatus::Frozen {
        return Outcome::Fail(FailReason::AccountFrozen);
    }
    // The hold guarantees this; refuse rather than break the invariant if a
    // damaged database says otherwise.
    if !from.can_send(amount) {
        return Outcome::Fail(FailReason::InsufficientBalance);
    }
    if !from.balance_can_take(-amount) || !to.balance_can_take(amount) {
        return Outcome::Fail(FailReason::BalanceLimit);
    }
    match Journal::transfer(t.receipt_code.clone(), &t.request.from, &t.request.to, amount) {
        Ok(journal) => {
            from.balance += journal.effect_on(from.id());
            to.balance += journal.effect_on(to.id());
            Outcome::Post(journal)
        }
        // Unreachable for an accepted amount (1..=2^53-1); kept as a failure,
        // never a panic.
        Err(_) => Outcome::Fail(FailReason::InsufficientBalance),
    }
}

/// Executes `t` (processing) when an account is missing: it fails with
/// [`FailReason::AccountMissing`], and the hold is released on `from` if
/// `from` exists (nothing is held anywhere else). The caller writes `from`.
pub fn execute_orphan(t: &Transfer, from: Option<&mut Account>) -> Outcome {
    debug_assert_eq!(t.state, State::Processing);
    if let Some(from) = from {
        debug_assert_eq!(from.id(), t.request.from);
        from.held -= t.request.amount;
    }
    Outcome::Fail(FailReason::AccountMissing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::AccountSpec;
    use serde_json::json;

    const NOW: Millis = 1_795_000_000_000;

    impl Transfer {
        fn view_json(&self) -> serde_json::Value {
            serde_json::to_value(crate::views::ledger::TransferView::from(self)).unwrap()
        }
    }

    fn account(id: &str, balance: i64, allow_negative: bool) -> Account {
        let mut a = Account::open(AccountSpec { id: id.into(), currency: "IDR".into(), allow_negative, name: None });
        a.balance = balance;
        a
    }

    fn request(from: &str, to: &str, amount: i64) -> TransferRequest {
        TransferRequest { from: from.into(), to: to.into(), amount, currency: "IDR".into(), description: None }
    }

    #[test]
    fn requests_name_the_field_at_fault() {
        let ok = TransferRequest::from_json(
            &json!({"from": "a", "to": "b", "amount": 5, "currency": "IDR", "description": "rent"}),
        )
        .unwrap();
        assert_eq!(ok.description.as_deref(), Some("rent"));
        for (body, field) in [
            (json!({"to": "b", "amount": 5, "currency": "IDR"}), "from"),
            (json!({"from": "a", "to": "b c", "amount": 5, "currency": "IDR"}), "to"),
            (json!({"from": "a", "to": "b", "currency": "IDR"}), "amount"),
            (json!({"from": "a", "to": "b", "amount": 0, "currency": "IDR"}), "amount"),
            (json!({"from": "a", "to": "b", "amount": 2.5, "currency": "IDR"}), "amount"),
            (json!({"from": "a", "to": "b", "amount": 5, "currency": "usd"}), "currency"),
            (json!({"from": "a", "to": "b", "amount": 5, "currency": "IDR", "memo": "x"}), "memo"),
        ] {
            assert_eq!(TransferRequest::from_json(&body).unwrap_err().field, field, "{body}");
        }
    }

    #[test]
    fn the_fingerprint_tells_bodies_apart() {
        let a = request("a", "b", 5);
        assert_eq!(a.fingerprint(), request("a", "b", 5).fingerprint());
        assert_ne!(a.fingerprint(), request("a", "b", 6).fingerprint());
        assert_ne!(a.fingerprint(), TransferRequest { description: Some("x".into()), ..a.clone() }.fingerprint());
    }

    #[test]
    fn the_fingerprint_is_the_one_earlier_releases_stored() {
        let r = TransferRequest { description: Some("invoice 7".into()), ..request("bank", "alice", 700) };
        // How the previous release computed it, spelled out: keys it stored still answer.
        use sha2::{Digest, Sha256};
        let before = |r: &TransferRequest| {
            hex::encode(Sha256::digest(json!([r.from, r.to, r.amount, r.currency, r.description]).to_string()))
        };
        assert_eq!(r.fingerprint(), before(&r));
        assert_eq!(r.fingerprint(), "634d00b9db1fab6370ddab4e8137d3a960f75b6462ecfd13cbd86268c001a74c");
        let plain = request("a", "b", 5);
        assert_eq!(plain.fingerprint(), before(&plain));
        assert_eq!(plain.fingerprint(), "377272b595c737ac6ec92c6d16408f321d17ff3cbd6c679a2746ea16553a1aa0");
    }

    #[test]
    fn prechecks_run_in_the_contracts_order() {
        let (a, b) = (account("a", 10, false), account("b", 0, false));
        let r = request("a", "b", 5);
        assert_eq!(precheck(&r, None, Some(&b)), Err(Refusal::AccountNotFound(Side::From)));
        assert_eq!(precheck(&r, Some(&a), None), Err(Refusal::AccountNotFound(Side::To)));
        let mut frozen = b.clone();
        frozen.status = AccountStatus::Frozen;
        assert_eq!(precheck(&r, Some(&a), Some(&frozen)).unwrap_err().code(), "account_frozen");
        let mut usd = b.clone();
        usd.spec.currency = "USD".into();
        assert_eq!(precheck(&r, Some(&a), Some(&usd)), Err(Refusal::CurrencyMismatch(Side::To)));
        assert_eq!(precheck(&request("a", "a", 5), Some(&a), Some(&a)), Err(Refusal::SameAccount));
        assert_eq!(
            precheck(&request("a", "b", 11), Some(&a), Some(&b)),
            Err(Refusal::InsufficientBalance { available: 10 })
        );
        assert_eq!(precheck(&r, Some(&a), Some(&b)), Ok(()));
        // A bank may go below zero.
        assert_eq!(precheck(&request("bank", "b", 1_000), Some(&account("bank", 0, true)), Some(&b)), Ok(()));
        let mut huge = account("b", ledger::BALANCE_LIMIT - 4, false);
        assert_eq!(precheck(&r, Some(&a), Some(&huge)), Err(Refusal::BalanceLimit(Side::To)));
        huge.balance = 0;
        assert_eq!(precheck(&r, Some(&a), Some(&huge)), Ok(()));
        let m = Refusal::InsufficientBalance { available: 10 }.message(&request("a", "b", 11));
        assert!(m.contains("10") && m.contains("11"), "{m}");
    }

    #[test]
    fn acceptance_holds_the_amount_and_a_refusal_changes_nothing() {
        let (mut a, b) = (account("a", 10, false), account("b", 0, false));
        accept(&request("a", "b", 6), Some(&mut a), Some(&b)).unwrap();
        assert_eq!((a.balance, a.held, a.available()), (10, 6, 4));
        assert_eq!(accept(&request("a", "b", 5), Some(&mut a), Some(&b)).unwrap_err().code(), "insufficient_balance");
        assert_eq!((a.balance, a.held), (10, 6));
    }

    #[test]
    fn execution_posts_one_balanced_journal_and_releases_the_hold() {
        let (mut a, mut b) = (account("a", 10, false), account("b", 0, false));
        let req = request("a", "b", 6);
        accept(&req, Some(&mut a), Some(&b)).unwrap();
        let t = Transfer {
            id: 7,
            receipt_code: receipt_code(&Key::new(&[3; 32]), 7),
            request: req,
            created_at: NOW,
            state: State::Processing,
        };
        let Outcome::Post(journal) = execute(&t, &mut a, &mut b) else { panic!("not posted") };
        assert_eq!(journal.external_ref(), t.receipt_code());
        assert_eq!((a.balance, a.held, b.balance), (4, 0, 6));
        let json = Transfer { state: State::Completed { journal_id: 3, at: NOW + 5 }, ..t }.view_json();
        assert_eq!(json["status"], "completed");
        assert_eq!(json["journal_id"], 3);
        assert_eq!(json["reason"], serde_json::Value::Null);
    }

    #[test]
    fn an_account_frozen_after_acceptance_fails_the_transfer_and_frees_the_hold() {
        let (mut a, mut b) = (account("a", 10, false), account("b", 0, false));
        let req = request("a", "b", 6);
        accept(&req, Some(&mut a), Some(&b)).unwrap();
        b.status = AccountStatus::Frozen;
        let t = Transfer {
            id: 1,
            receipt_code: receipt_code(&Key::new(&[3; 32]), 1),
            request: req,
            created_at: NOW,
            state: State::Processing,
        };
        let out = execute(&t, &mut a, &mut b);
        assert_eq!(out, Outcome::Fail(FailReason::AccountFrozen));
        assert_eq!((a.balance, a.held, b.balance), (10, 0, 0));
        let json =
            Transfer { state: State::Failed { reason: FailReason::AccountFrozen, at: NOW + 1 }, ..t }.view_json();
        assert_eq!(json["status"], "failed");
        assert_eq!(json["reason"], "account_frozen");
    }

    #[test]
    fn a_transfer_whose_account_is_missing_fails_and_releases_the_hold_where_there_is_one() {
        let mut a = account("a", 10, false);
        let req = request("a", "gone", 6);
        a.held = 6;
        let t = Transfer {
            id: 2,
            receipt_code: receipt_code(&Key::new(&[3; 32]), 2),
            request: req,
            created_at: NOW,
            state: State::Processing,
        };
        assert_eq!(execute_orphan(&t, Some(&mut a)), Outcome::Fail(FailReason::AccountMissing));
        assert_eq!((a.balance, a.held), (10, 0));
        assert_eq!(execute_orphan(&t, None), Outcome::Fail(FailReason::AccountMissing));
        let json =
            Transfer { state: State::Failed { reason: FailReason::AccountMissing, at: NOW + 1 }, ..t }.view_json();
        assert_eq!((json["status"].as_str(), json["reason"].as_str()), (Some("failed"), Some("account_missing")));
        assert_eq!(FailReason::Unreadable.as_str(), "unreadable");
    }

    #[test]
    fn receipt_lookups_tell_mistyped_codes_from_unknown_ones() {
        for key in [Key::legacy(), Key::new(&[9; 32])] {
            let code = receipt_code(&key, 42);
            assert_eq!(id_from_receipt(&key, &code), Ok(42));
            let mut typo = code.clone().into_bytes();
            typo[4] = if typo[4] == b'0' { b'1' } else { b'0' };
            assert!(matches!(id_from_receipt(&key, std::str::from_utf8(&typo).unwrap()), Err(LookupError::Invalid(_))));
            assert!(matches!(id_from_receipt(&key, "nope"), Err(LookupError::Invalid(_))));
            let worker = receipt::code(&key, receipt::WORKER_PREFIX, 42);
            assert_eq!(id_from_receipt(&key, &worker), Err(LookupError::Unknown));
        }
        // Under another key a code names another id.
        let (a, b) = (Key::new(&[9; 32]), Key::new(&[10; 32]));
        assert_ne!(id_from_receipt(&b, &receipt_code(&a, 42)), Ok(42));
    }

    #[test]
    fn statuses_and_reasons_read_back() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        for r in [
            FailReason::AccountFrozen,
            FailReason::InsufficientBalance,
            FailReason::BalanceLimit,
            FailReason::AccountMissing,
            FailReason::Unreadable,
        ] {
            assert_eq!(FailReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Status::parse("done"), None);
    }
}
