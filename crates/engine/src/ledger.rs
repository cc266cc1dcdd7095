//! Accounts and the double-entry ledger (CONTRACT section 7): what an account
//! is, the input rules for accounts and amounts, and the journal a transfer
//! posts, checked to balance before anyone writes it.
//!
//! Money is integers in minor units (`i64`), one currency per account. An
//! account's `balance` is the sum of its ledger lines, `credit − debit`; its
//! `held` is what accepted, not yet executed transfers hold on it; what it
//! can still send is `available = balance − held`. An account without
//! `allow_negative` never has `available < 0`; funds enter through one that
//! allows it (a bank or equity account), whose balance goes negative.

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// The largest amount a transfer may move: 2^53 − 1, the largest integer
/// every JSON reader (JavaScript's numbers included) reads exactly.
pub const MAX_AMOUNT: i64 = (1 << 53) - 1;

/// No balance or hold may leave `-BALANCE_LIMIT..=BALANCE_LIMIT` (2^62):
/// far beyond any real ledger, and far from where `i64` (and SQLite's
/// integers) would overflow. A transfer that would cross it is refused.
pub const BALANCE_LIMIT: i64 = 1 << 62;

/// The longest account name and transfer description.
pub const MAX_TEXT_LEN: usize = 256;

/// Whether an account may take part in transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Sends and receives.
    Active,
    /// Refuses new transfers; transfers accepted before the freeze fail at
    /// execution and release their hold.
    Frozen,
}

impl AccountStatus {
    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Frozen => "frozen",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(AccountStatus::Active),
            "frozen" => Some(AccountStatus::Frozen),
            _ => None,
        }
    }

    /// The operator actions that change an account in this status (the
    /// API's `allowed_actions`): `freeze` an active one, `unfreeze` a frozen
    /// one. The other answers 200 and changes nothing.
    pub fn allowed_actions(self) -> &'static [&'static str] {
        match self {
            AccountStatus::Active => &["freeze"],
            AccountStatus::Frozen => &["unfreeze"],
        }
    }
}

/// What defines an account, as its creator sent it. Creating an account
/// again with the same spec is harmless; with another spec it is a conflict.
///
/// [`AccountSpec::from_json`] reads `POST /api/accounts`'s body field by
/// field; the OpenAPI document describes that body with this type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = AccountCreate))]
pub struct AccountSpec {
    /// 1 to 64 characters of `[A-Za-z0-9._:-]`.
    pub id: String,
    /// Three capital letters (ISO 4217 style, e.g. `IDR`).
    pub currency: String,
    /// Whether the balance may go below zero (banks, equity: where funds enter); default false.
    #[cfg_attr(feature = "openapi", schema(required = false, default = false))]
    pub allow_negative: bool,
    /// A name for people, up to 256 printable characters.
    pub name: Option<String>,
}

impl AccountSpec {
    /// Reads and checks `POST /api/accounts`'s body.
    pub fn from_json(body: &serde_json::Value) -> Result<Self, FieldError> {
        let obj = object(body, &["id", "currency", "allow_negative", "name"])?;
        let id = required_str(obj, "id")?;
        validate_account_id(id, "id")?;
        let currency = required_str(obj, "currency")?;
        validate_currency(currency, "currency")?;
        let allow_negative = match obj.get("allow_negative") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(_) => return Err(FieldError::new("allow_negative", "must be true or false")),
        };
        let name = optional_text(obj, "name")?;
        Ok(Self { id: id.to_string(), currency: currency.to_string(), allow_negative, name })
    }
}

/// An account as the ledger sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// How it was created.
    pub spec: AccountSpec,
    /// Active or frozen.
    pub status: AccountStatus,
    /// The sum of its ledger lines (`credit − debit`).
    pub balance: i64,
    /// Held by accepted, not yet executed transfers from it.
    pub held: i64,
}

impl Account {
    /// A new, empty, active account.
    pub fn open(spec: AccountSpec) -> Self {
        Self { spec, status: AccountStatus::Active, balance: 0, held: 0 }
    }

    /// Its id: 1 to 64 characters of `[A-Za-z0-9._:-]`, chosen by the client.
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// What it can still send: `balance − held`.
    pub fn available(&self) -> i64 {
        self.balance.saturating_sub(self.held)
    }

    /// Whether it can send `amount` more now.
    pub fn can_send(&self, amount: i64) -> bool {
        self.spec.allow_negative || self.available() >= amount
    }

    /// Whether `delta` can be added to its balance within [`BALANCE_LIMIT`].
    pub fn balance_can_take(&self, delta: i64) -> bool {
        self.balance.checked_add(delta).is_some_and(|b| (-BALANCE_LIMIT..=BALANCE_LIMIT).contains(&b))
    }
}

/// Checks an account id: 1 to 64 characters of `[A-Za-z0-9._:-]`, the
/// same rule as a binding id's.
pub fn validate_account_id(id: &str, field: &str) -> Result<(), FieldError> {
    crate::binding::validate(id, field)
}

/// Checks a currency: exactly three capital letters.
pub fn validate_currency(c: &str, field: &str) -> Result<(), FieldError> {
    if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(FieldError::new(field, "must be three capital letters (e.g. IDR)"))
    }
}

/// Reads an amount: a JSON integer from 1 to [`MAX_AMOUNT`]. `1.0`, `"5"`,
/// `0`, negatives and anything above 2^53 − 1 are refused.
pub fn amount(v: &serde_json::Value, field: &str) -> Result<i64, FieldError> {
    let refuse = || FieldError::new(field, format!("must be a whole number of minor units from 1 to {MAX_AMOUNT}"));
    let serde_json::Value::Number(n) = v else { return Err(refuse()) };
    // `as_i64` is `None` for a number written with a fraction or an exponent
    // (read as a float) and for integers beyond i64.
    match n.as_i64() {
        Some(a) if (1..=MAX_AMOUNT).contains(&a) => Ok(a),
        _ => Err(refuse()),
    }
}

/// The object `v` with only the `allowed` keys, or an error naming the first
/// other key.
pub(crate) fn object<'a>(
    v: &'a serde_json::Value,
    allowed: &[&str],
) -> Result<&'a serde_json::Map<String, serde_json::Value>, FieldError> {
    let obj = v.as_object().ok_or_else(|| FieldError::new("body", "must be a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(FieldError::new(k.clone(), format!("unknown field (expected one of: {})", allowed.join(", "))));
    }
    Ok(obj)
}

/// A required string field.
pub(crate) fn required_str<'a>(
    obj: &'a serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<&'a str, FieldError> {
    match obj.get(field) {
        Some(serde_json::Value::String(s)) => Ok(s),
        None | Some(serde_json::Value::Null) => Err(FieldError::new(field, "is required")),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

/// An optional text field: up to [`MAX_TEXT_LEN`] printable characters.
pub(crate) fn optional_text(
    obj: &serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<Option<String>, FieldError> {
    match obj.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.chars().count() <= MAX_TEXT_LEN && !s.chars().any(char::is_control) => {
            Ok(Some(s.clone()))
        }
        Some(_) => {
            Err(FieldError::new(field, format!("must be a string of up to {MAX_TEXT_LEN} printable characters")))
        }
    }
}

/// One ledger line: one account debited or credited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The id of the account debited or credited.
    pub account: String,
    /// Taken from it (positive, or 0 on a credit line).
    pub debit: i64,
    /// Given to it (positive, or 0 on a debit line).
    pub credit: i64,
}

/// A journal that does not balance or is not made of proper lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// Fewer than two lines.
    #[error("a journal needs at least two lines")]
    TooFewLines,
    /// A line that is not exactly one positive debit or one positive credit.
    #[error("line {0} must have exactly one of debit and credit, positive")]
    BadLine(usize),
    /// Debits and credits differ.
    #[error("debits ({debits}) and credits ({credits}) differ")]
    Unbalanced {
        /// Total of the lines' debits, in minor units (`i128`, so no sum overflows).
        debits: i128,
        /// Total of the lines' credits, in minor units.
        credits: i128,
    },
}

/// A balanced journal, ready to post: its lines debit and credit the same
/// total. The only way to make one is [`Journal::new`], which checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    external_ref: String,
    lines: Vec<Line>,
}

impl Journal {
    /// A journal of `lines` under `external_ref` (a transfer's receipt code),
    /// if they balance.
    pub fn new(external_ref: impl Into<String>, lines: Vec<Line>) -> Result<Self, JournalError> {
        if lines.len() < 2 {
            return Err(JournalError::TooFewLines);
        }
        let (mut debits, mut credits) = (0i128, 0i128);
        for (i, l) in lines.iter().enumerate() {
            let proper = (l.debit > 0 && l.credit == 0) || (l.credit > 0 && l.debit == 0);
            if !proper {
                return Err(JournalError::BadLine(i));
            }
            debits += i128::from(l.debit);
            credits += i128::from(l.credit);
        }
        if debits != credits {
            return Err(JournalError::Unbalanced { debits, credits });
        }
        Ok(Self { external_ref: external_ref.into(), lines })
    }

    /// The journal of a transfer: `amount` debited from `from`, credited to `to`.
    pub fn transfer(external_ref: impl Into<String>, from: &str, to: &str, amount: i64) -> Result<Self, JournalError> {
        Self::new(
            external_ref,
            vec![
                Line { account: from.to_string(), debit: amount, credit: 0 },
                Line { account: to.to_string(), debit: 0, credit: amount },
            ],
        )
    }

    /// Its external reference (a receipt code).
    pub fn external_ref(&self) -> &str {
        &self.external_ref
    }

    /// At least two; each a positive debit or a positive credit, summing to equal totals.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// What it changes on `account`'s balance (`credit − debit`).
    pub fn effect_on(&self, account: &str) -> i64 {
        self.lines.iter().filter(|l| l.account == account).map(|l| l.credit - l.debit).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_are_positive_integers_up_to_2_53_minus_1() {
        assert_eq!(amount(&json!(1), "amount"), Ok(1));
        assert_eq!(amount(&json!(MAX_AMOUNT), "amount"), Ok(MAX_AMOUNT));
        for bad in [
            json!(0),
            json!(-1),
            json!(MAX_AMOUNT + 1),
            json!(1.0),
            json!(1.5),
            json!("5"),
            json!(null),
            json!(u64::MAX),
            json!([1]),
        ] {
            let e = amount(&bad, "amount").unwrap_err();
            assert_eq!(e.field, "amount", "{bad}");
        }
        let big: serde_json::Value = serde_json::from_str("1e3").unwrap();
        assert!(amount(&big, "amount").is_err(), "an exponent is a float");
    }

    #[test]
    fn account_specs_are_checked_field_by_field() {
        let ok = AccountSpec::from_json(&json!({"id": "bank", "currency": "IDR", "allow_negative": true})).unwrap();
        assert!(ok.allow_negative);
        assert_eq!(ok.name, None);
        let user = AccountSpec::from_json(&json!({"id": "u-1", "currency": "IDR", "name": "Ani"})).unwrap();
        assert!(!user.allow_negative);
        for (body, field) in [
            (json!({"currency": "IDR"}), "id"),
            (json!({"id": "a b", "currency": "IDR"}), "id"),
            (json!({"id": "a", "currency": "idr"}), "currency"),
            (json!({"id": "a", "currency": "IDRX"}), "currency"),
            (json!({"id": "a", "currency": "IDR", "allow_negative": "yes"}), "allow_negative"),
            (json!({"id": "a", "currency": "IDR", "name": 5}), "name"),
            (json!({"id": "a", "currency": "IDR", "owner": "x"}), "owner"),
        ] {
            assert_eq!(AccountSpec::from_json(&body).unwrap_err().field, field, "{body}");
        }
        assert_eq!(AccountSpec::from_json(&json!([])).unwrap_err().field, "body");
    }

    #[test]
    fn available_is_balance_minus_held() {
        let mut a =
            Account::open(AccountSpec { id: "a".into(), currency: "IDR".into(), allow_negative: false, name: None });
        a.balance = 100;
        a.held = 30;
        assert_eq!(a.available(), 70);
        assert!(a.can_send(70));
        assert!(!a.can_send(71));
        a.spec.allow_negative = true;
        assert!(a.can_send(1_000));
        assert_eq!(serde_json::to_value(crate::views::ledger::AccountView::from(&a)).unwrap()["available"], 70);
    }

    #[test]
    fn journals_balance_or_are_refused() {
        let j = Journal::transfer("TR-1", "a", "b", 5).unwrap();
        assert_eq!(j.effect_on("a"), -5);
        assert_eq!(j.effect_on("b"), 5);
        assert_eq!(j.effect_on("c"), 0);
        let line = |account: &str, debit, credit| Line { account: account.into(), debit, credit };
        assert_eq!(Journal::new("x", vec![line("a", 5, 0)]), Err(JournalError::TooFewLines));
        assert_eq!(
            Journal::new("x", vec![line("a", 5, 0), line("b", 0, 4)]),
            Err(JournalError::Unbalanced { debits: 5, credits: 4 })
        );
        assert_eq!(Journal::new("x", vec![line("a", 5, 5), line("b", 0, 0)]), Err(JournalError::BadLine(0)));
        assert_eq!(Journal::new("x", vec![line("a", 5, 0), line("b", 0, -5)]), Err(JournalError::BadLine(1)));
        assert!(Journal::new("x", vec![line("a", 5, 0), line("b", 0, 2), line("c", 0, 3)]).is_ok());
        assert!(Journal::transfer("x", "a", "b", 0).is_err());
    }
}
