//! What tests read back: `GET /sandbox/calls` (the call records, oldest
//! first, filtered) and `GET /sandbox/stats` (counts per binding).

use std::collections::BTreeMap;

use serde::Serialize;
use spin_sdk::http::Request;
use stepwise_store::db::Value;
use stepwise_web::ApiError;

use crate::protocol::Op;
use crate::reply::bad_request;
use crate::script::DEFAULT_BALANCE;
use crate::store::{int, text, Store};

/// The default and the largest `limit` of `GET /sandbox/calls`.
pub const DEFAULT_LIMIT: i64 = 1000;
/// The largest `limit` accepted.
pub const MAX_LIMIT: i64 = 100_000;

/// The query string's decoded `(name, value)` pairs, in order; a name
/// outside `known` is refused with `400` (`invalid_query`).
pub fn query(req: &Request, known: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    stepwise_web::query(req, known).map_err(|e| bad_request("invalid_query", e.message))
}

/// A `limit` parameter from 1 to `max`; `400` (`invalid_query`) otherwise.
pub fn parse_limit(v: &str, max: i64) -> Result<i64, ApiError> {
    match v.parse::<i64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(bad_request("invalid_query", format!("limit must be from 1 to {max}"))),
    }
}

/// The filters of `GET /sandbox/calls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallsFilter {
    /// Only this binding.
    pub binding_id: Option<String>,
    /// Only this operation.
    pub op: Option<Op>,
    /// Only this transaction (`T<n>`).
    pub transaction_id: Option<String>,
    /// Only this request_id.
    pub request_id: Option<String>,
    /// Only calls with `seq` above this (paging).
    pub after_seq: Option<i64>,
    /// At most this many, the oldest first.
    pub limit: i64,
}

impl CallsFilter {
    /// Reads the query string: `binding_id`, `op`, `transaction_id`,
    /// `request_id`, `after_seq`, `limit` (1 to 100000, default 1000).
    /// Unknown parameters and bad values are refused; empty values mean no filter.
    pub fn from_request(req: &Request) -> Result<CallsFilter, ApiError> {
        let bad = |m: String| bad_request("invalid_query", m);
        let mut f = CallsFilter {
            binding_id: None,
            op: None,
            transaction_id: None,
            request_id: None,
            after_seq: None,
            limit: DEFAULT_LIMIT,
        };
        for (k, v) in query(req, &["binding_id", "op", "transaction_id", "request_id", "after_seq", "limit"])? {
            if v.is_empty() {
                continue;
            }
            match k.as_str() {
                "binding_id" => f.binding_id = Some(v),
                "transaction_id" => f.transaction_id = Some(v),
                "request_id" => f.request_id = Some(v),
                "op" => f.op = Some(Op::from_name(&v).ok_or_else(|| bad(format!("unknown op `{v}`")))?),
                "after_seq" => {
                    f.after_seq = Some(v.parse().map_err(|_| bad(format!("after_seq `{v}` is not an integer")))?)
                }
                "limit" => f.limit = parse_limit(&v, MAX_LIMIT)?,
                _ => {}
            }
        }
        Ok(f)
    }

    /// The WHERE clause and its parameters.
    fn sql(&self) -> (String, Vec<Value>) {
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        let mut eq = |col: &str, v: Value| {
            clauses.push(format!("{col} = ?"));
            params.push(v);
        };
        if let Some(b) = &self.binding_id {
            eq("binding_id", text(b));
        }
        if let Some(op) = self.op {
            eq("op", text(op.as_str()));
        }
        if let Some(t) = &self.transaction_id {
            eq("transaction_id", text(t));
        }
        if let Some(r) = &self.request_id {
            eq("request_id", text(r));
        }
        if let Some(s) = self.after_seq {
            clauses.push("seq > ?".to_string());
            params.push(int(s));
        }
        let where_ = if clauses.is_empty() { String::new() } else { format!(" WHERE {}", clauses.join(" AND ")) };
        (where_, params)
    }
}

/// One call record as shown.
#[derive(Debug, Serialize)]
struct CallJson<'a> {
    seq: i64,
    received_at_ms: i64,
    op: &'a str,
    binding_id: Option<&'a str>,
    transaction_id: Option<&'a str>,
    request_id: Option<&'a str>,
    header_request_id: Option<&'a str>,
    duplicate: bool,
    rejected: bool,
    status_code: i64,
    otp_ok: Option<bool>,
}

/// The body of `GET /sandbox/calls`.
#[derive(Debug, Serialize)]
pub struct CallsPage<'a> {
    calls: Vec<CallJson<'a>>,
}

/// The stored rows behind a [`CallsPage`] (which borrows from them).
pub struct CallRows(stepwise_store::db::QueryResult);

impl CallRows {
    /// `{"calls": [...]}`, oldest first, fields in a fixed order.
    pub fn page(&self) -> CallsPage<'_> {
        let calls = self
            .0
            .rows()
            .map(|row| CallJson {
                seq: row.get::<i64>("seq").unwrap_or(0),
                received_at_ms: row.get::<i64>("received_at_ms").unwrap_or(0),
                op: row.get::<&str>("op").unwrap_or(""),
                binding_id: row.get::<&str>("binding_id"),
                transaction_id: row.get::<&str>("transaction_id"),
                request_id: row.get::<&str>("request_id"),
                header_request_id: row.get::<&str>("header_request_id"),
                duplicate: row.get::<bool>("duplicate").unwrap_or(false),
                rejected: row.get::<bool>("rejected").unwrap_or(false),
                status_code: row.get::<i64>("status_code").unwrap_or(0),
                otp_ok: row.get::<bool>("otp_ok"),
            })
            .collect();
        CallsPage { calls }
    }
}

/// Reads the call records matching `filter`, oldest first.
pub fn calls(store: &Store, filter: &CallsFilter) -> Result<CallRows, ApiError> {
    let (where_, mut params) = filter.sql();
    params.push(int(filter.limit));
    let r = store.exec(
        &format!(
            "SELECT seq, received_at_ms, op, binding_id, transaction_id, request_id, header_request_id,
                    duplicate, rejected, status_code, otp_ok
             FROM sandbox_calls{where_} ORDER BY seq ASC LIMIT ?"
        ),
        &params,
    )?;
    Ok(CallRows(r))
}

/// Counts of one binding.
#[derive(Debug, Default, Serialize)]
struct BindingStats {
    /// `/start` calls that did work (not repeats, not refused).
    starts: i64,
    /// Every call, repeats and refusals included.
    calls: i64,
    /// Repeated request_ids.
    duplicates: i64,
    /// The most calls of the binding in flight at once.
    max_concurrent: i64,
    /// Its balance now.
    balance: i64,
}

/// The body of `GET /sandbox/stats`.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// Counts per binding, by binding_id.
    bindings: BTreeMap<String, BindingStats>,
    /// `/start` calls that did work, all bindings.
    total_starts: i64,
    /// Every protocol call received (including those naming no known transaction).
    total_calls: i64,
}

/// `{"bindings": {...}, "total_starts": n, "total_calls": n}`.
pub fn stats(store: &Store) -> Result<Stats, ApiError> {
    let mut bindings: BTreeMap<String, BindingStats> = BTreeMap::new();
    let fresh = || BindingStats { balance: DEFAULT_BALANCE, ..BindingStats::default() };
    let r = store.exec(
        "SELECT binding_id,
                SUM(op = 'start' AND duplicate = 0 AND rejected = 0) AS starts,
                COUNT(*) AS calls,
                SUM(duplicate) AS duplicates
         FROM sandbox_calls WHERE binding_id IS NOT NULL GROUP BY binding_id",
        &[],
    )?;
    for row in r.rows() {
        let Some(b) = row.get::<&str>("binding_id") else { continue };
        let e = bindings.entry(b.to_string()).or_insert_with(fresh);
        e.starts = row.get::<i64>("starts").unwrap_or(0);
        e.calls = row.get::<i64>("calls").unwrap_or(0);
        e.duplicates = row.get::<i64>("duplicates").unwrap_or(0);
    }
    let r = store.exec("SELECT binding_id, balance FROM sandbox_bindings", &[])?;
    for row in r.rows() {
        let Some(b) = row.get::<&str>("binding_id") else { continue };
        bindings.entry(b.to_string()).or_insert_with(fresh).balance = row.get::<i64>("balance").unwrap_or(0);
    }
    let r = store.exec("SELECT binding_id, max_concurrent FROM sandbox_inflight", &[])?;
    for row in r.rows() {
        let Some(b) = row.get::<&str>("binding_id") else { continue };
        bindings.entry(b.to_string()).or_insert_with(fresh).max_concurrent =
            row.get::<i64>("max_concurrent").unwrap_or(0);
    }
    let r = store.exec(
        "SELECT COALESCE(SUM(op = 'start' AND duplicate = 0 AND rejected = 0), 0) AS starts, COUNT(*) AS calls
         FROM sandbox_calls",
        &[],
    )?;
    let row = r.rows().next();
    let total_starts = row.as_ref().and_then(|r| r.get::<i64>("starts")).unwrap_or(0);
    let total_calls = row.as_ref().and_then(|r| r.get::<i64>("calls")).unwrap_or(0);
    Ok(Stats { bindings, total_starts, total_calls })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_query(q: &str) -> Result<CallsFilter, ApiError> {
        let req = Request::builder().method(spin_sdk::http::Method::Get).uri(format!("/sandbox/calls?{q}")).build();
        CallsFilter::from_request(&req)
    }

    #[test]
    fn filters() {
        let f = from_query("binding_id=b%2D1&op=start&limit=5&after_seq=3&request_id=&x_unused=").unwrap_err();
        assert_eq!(f.code, "invalid_query");
        let f = from_query("binding_id=b%2D1&op=start&limit=5&after_seq=3&request_id=").unwrap();
        assert_eq!(f.binding_id.as_deref(), Some("b-1"));
        assert_eq!((f.op, f.limit, f.after_seq, f.request_id.clone()), (Some(Op::Start), 5, Some(3), None));
        let (where_, params) = f.sql();
        assert_eq!(where_, " WHERE binding_id = ? AND op = ? AND seq > ?");
        assert_eq!(params.len(), 3);
        let d = from_query("").unwrap();
        assert_eq!((d.limit, d.sql().0), (DEFAULT_LIMIT, String::new()));
        for bad in ["op=nope", "limit=0", "limit=100001", "limit=x", "after_seq=x", "what=1"] {
            assert!(from_query(bad).is_err(), "{bad}");
        }
    }
}
