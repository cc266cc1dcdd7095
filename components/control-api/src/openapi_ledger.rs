//! The OpenAPI description of the accounts, transfers and journals routes
//! (served by the `ledger` component); part of the one document at
//! `/api/openapi.json`. The answers are the engine's views, the request bodies
//! the engine's `AccountSpec` and `TransferRequest`.

#![allow(dead_code)]

use stepwise_engine::ledger::AccountSpec;
use stepwise_engine::transfer::TransferRequest;
use stepwise_engine::views::ledger::{AccountList, AccountView, JournalList, JournalView, TransferList, TransferView};
use stepwise_engine::views::ErrorBody;

/// Creates an account (active, empty).
#[utoipa::path(post, path = "/api/accounts", tag = "ledger", request_body = AccountSpec,
    responses((status = 201, body = AccountView), (status = 200, description = "The same body again: the account", body = AccountView),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 409, description = "`account_exists`: that id with another body", body = ErrorBody)))]
pub fn create_account() {}

/// Accounts in id order.
#[utoipa::path(get, path = "/api/accounts", tag = "ledger",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = AccountList), (status = 400, body = ErrorBody)))]
pub fn list_accounts() {}

/// One account with its newest 20 lines.
#[utoipa::path(get, path = "/api/accounts/{id}", tag = "ledger", params(("id" = String, Path)),
    responses((status = 200, body = AccountView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub fn get_account() {}

/// `freeze`: new transfers from or to it are refused (422 `account_frozen`) and accepted ones fail at
/// execution, releasing their hold; `unfreeze` makes it active again.
#[utoipa::path(post, path = "/api/accounts/{id}/{action}", tag = "ledger",
    params(("id" = String, Path), ("action" = String, Path, description = "`freeze` or `unfreeze`")),
    responses((status = 200, body = AccountView), (status = 404, body = ErrorBody)))]
pub fn account_status() {}

/// Accepts a transfer: checks, holds the amount on `from` and issues the receipt in one transaction;
/// the tick executes it.
#[utoipa::path(post, path = "/api/transfers", tag = "ledger", request_body = TransferRequest,
    params(("Idempotency-Key" = String, Header, description = "1 to 255 printable characters; kept 25 hours"),
           ("wait" = Option<bool>, Query, description = "`true`: answer once final (200), or 202 after 10 s")),
    responses((status = 202, description = "Accepted (`processing`), or the same key and body again: that transfer as it is now", body = TransferView),
              (status = 200, description = "With `wait=true`: final", body = TransferView),
              (status = 400, description = "A bad field, an amount that is not an integer from 1 to 2^53 − 1, a missing Idempotency-Key", body = ErrorBody),
              (status = 409, description = "`idempotency_key_reused`: the key with another body", body = ErrorBody),
              (status = 422, description = "`account_not_found`, `account_frozen`, `currency_mismatch`, `same_account`, `insufficient_balance`, `balance_limit`; nothing changed", body = ErrorBody)))]
pub fn create_transfer() {}

/// Transfers, newest first.
#[utoipa::path(get, path = "/api/transfers", tag = "ledger",
    params(("account" = Option<String>, Query, description = "from or to this account"), ("status" = Option<String>, Query),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = TransferList), (status = 400, body = ErrorBody)))]
pub fn list_transfers() {}

/// One transfer by its receipt code.
#[utoipa::path(get, path = "/api/transfers/{receipt_code}", tag = "ledger", params(("receipt_code" = String, Path)),
    responses((status = 200, body = TransferView),
              (status = 400, description = "`invalid_receipt_code`: not a code, or a mistyped one (the check fails)", body = ErrorBody),
              (status = 404, description = "A well-formed code no transfer has", body = ErrorBody)))]
pub fn get_transfer() {}

/// One journal.
#[utoipa::path(get, path = "/api/journals/{id}", tag = "ledger", params(("id" = i64, Path)),
    responses((status = 200, body = JournalView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub fn get_journal() {}

/// The journals of an external reference (a receipt code: at most one).
#[utoipa::path(get, path = "/api/journals", tag = "ledger", params(("external_ref" = String, Query)),
    responses((status = 200, body = JournalList), (status = 400, body = ErrorBody)))]
pub fn journals_by_ref() {}
