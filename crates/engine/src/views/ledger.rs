//! Accounts, transfers and journals (the `ledger` component's answers).

use serde::Serialize;

use crate::ledger::{Account, AccountStatus};
use crate::time::rfc3339;
use crate::transfer::{self, State, Transfer};

/// An account. Money is integers in minor units.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Account))]
pub struct AccountView {
    /// 1 to 64 characters of `[A-Za-z0-9._:-]`.
    pub id: String,
    /// Three capital letters, e.g. `IDR`.
    pub currency: String,
    /// A frozen account refuses new transfers, and those accepted before the freeze fail.
    pub status: AccountStatus,
    /// Whether the balance may go below zero (banks, equity: where funds enter).
    pub allow_negative: bool,
    /// For people.
    pub name: Option<String>,
    /// The sum of its lines, credit − debit.
    pub balance: i64,
    /// Held by accepted transfers from it that have not executed yet.
    pub held: i64,
    /// `balance − held`: what it can send (never below zero unless `allow_negative`).
    pub available: i64,
    /// The actions that change it now: `["freeze"]` when active, `["unfreeze"]` when frozen.
    pub allowed_actions: Vec<String>,
    /// Its newest lines, newest first: in the answers about one account, absent in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<AccountLine>>,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        AccountView {
            id: a.spec.id.clone(),
            currency: a.spec.currency.clone(),
            status: a.status,
            allow_negative: a.spec.allow_negative,
            name: a.spec.name.clone(),
            balance: a.balance,
            held: a.held,
            available: a.available(),
            allowed_actions: a.status.allowed_actions().iter().map(|s| s.to_string()).collect(),
            lines: None,
        }
    }
}

/// One ledger line of an account.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountLine {
    /// The journal that posted it.
    pub journal_id: i64,
    /// The receipt code of the transfer that posted it.
    pub external_ref: String,
    /// Minor units taken from the account.
    pub debit: i64,
    /// Minor units given to the account.
    pub credit: i64,
    /// RFC 3339.
    pub posted_at: String,
}

/// `GET /api/accounts`: a page in id order.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountList {
    /// This page (without lines).
    pub accounts: Vec<AccountView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// A transfer as `POST /api/transfers` and `GET /api/transfers/{receipt_code}` answer it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Transfer))]
pub struct TransferView {
    /// `TR-XXXXXXXX-C`: unique, not sequential, with a check character that
    /// catches any single mistyped character and any swap of neighbours.
    pub receipt_code: String,
    /// `processing` (accepted, amount held), `completed` or `failed`.
    pub status: transfer::Status,
    /// The account debited.
    pub from: String,
    /// The account credited.
    pub to: String,
    /// Minor units, 1 to 2^53 − 1.
    pub amount: i64,
    /// Both accounts' currency.
    pub currency: String,
    /// For people.
    pub description: Option<String>,
    /// Why it failed: `account_frozen` (an account frozen since acceptance),
    /// `balance_limit`, `insufficient_balance` (a damaged account),
    /// `account_missing` (an account gone since acceptance) or `unreadable`
    /// (its stored row is damaged).
    pub reason: Option<transfer::FailReason>,
    /// The journal it posted, once completed.
    pub journal_id: Option<i64>,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
    /// When it completed or failed (RFC 3339).
    pub completed_at: Option<String>,
}

impl From<&Transfer> for TransferView {
    fn from(t: &Transfer) -> Self {
        let (reason, journal_id, completed_at) = match &t.state {
            State::Processing => (None, None, None),
            State::Completed { journal_id, at } => (None, Some(*journal_id), Some(rfc3339(*at))),
            State::Failed { reason, at } => (Some(*reason), None, Some(rfc3339(*at))),
        };
        TransferView {
            receipt_code: t.receipt_code().to_string(),
            status: t.state.status(),
            from: t.request.from.clone(),
            to: t.request.to.clone(),
            amount: t.request.amount,
            currency: t.request.currency.clone(),
            description: t.request.description.clone(),
            reason,
            journal_id,
            created_at: rfc3339(t.created_at),
            completed_at,
        }
    }
}

/// `GET /api/transfers`: a page, newest first.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransferList {
    /// This page.
    pub transfers: Vec<TransferView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// One account debited or credited: one of `debit` and `credit` is positive, the other 0.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JournalLine {
    /// The account.
    pub account: String,
    /// Minor units taken from it.
    pub debit: i64,
    /// Minor units given to it.
    pub credit: i64,
}

/// A journal: balanced lines (debits = credits) under an external reference.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Journal))]
pub struct JournalView {
    /// Its id.
    pub id: i64,
    /// The receipt code of the transfer that posted it (unique).
    pub external_ref: String,
    /// Its lines, in posting order.
    pub lines: Vec<JournalLine>,
    /// RFC 3339.
    pub posted_at: String,
}

/// `GET /api/journals?external_ref=`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JournalList {
    /// The journals posted under that reference (none or one).
    pub journals: Vec<JournalView>,
}
