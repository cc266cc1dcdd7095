//! Serving one call of a simulated service, the same way for all of them.
//! In one `BEGIN IMMEDIATE` transaction: the service's fault script is
//! counted down ([`faults`]); an injected failure answers at once; a
//! refused input (bad body, wrong credentials) answers its error; a POST
//! whose `Idempotency-Key` was answered before gets the stored answer
//! again, doing nothing; otherwise the work runs in a savepoint (undone
//! if it refuses) and a 2xx answer is stored under the key. Every call is
//! recorded, with whether it did the work (`effect`), so tests can count
//! effects per key. Then the service's latency is slept and the call answered.
//!
//! Only 2xx answers are stored: a refused call did nothing, and a repeat
//! of it is judged again (so an operator's retry after a fix goes through).
//! GETs (the payment status) are reads, never deduplicated: a status poll
//! sends the same key every time and must see the order as it is now.

use serde::de::DeserializeOwned;
use serde_json::Value;
use spin_sdk::http::{Method, Request};
use stepwise_web::ApiError;

use crate::reply::{bad_request, error, Reply};
use crate::script::sleep_ms;
use crate::services::faults::{self, Injected};
use crate::services::Service;
use crate::store::{int, now_ms, opt_text, text, Store};

/// The statements that create its tables, run when the store's schema version changes.
pub const SCHEMA: &[&str] = &[
    // The 2xx answers by (service, Idempotency-Key), replayed byte for byte.
    "CREATE TABLE IF NOT EXISTS sandbox_svc_answers (
        service TEXT NOT NULL,
        idem_key TEXT NOT NULL,
        operation TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        body TEXT NOT NULL,
        answered_at_ms INTEGER NOT NULL,
        PRIMARY KEY (service, idem_key)
    )",
    // Every call received. `effect`: it did the work (not a replay, not
    // refused, not failed by injection before the work).
    "CREATE TABLE IF NOT EXISTS sandbox_svc_calls (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at_ms INTEGER NOT NULL,
        service TEXT NOT NULL,
        operation TEXT NOT NULL,
        subject TEXT,
        idem_key TEXT,
        request_id TEXT,
        status_code INTEGER NOT NULL,
        duplicate INTEGER NOT NULL,
        injected INTEGER NOT NULL,
        refused INTEGER NOT NULL,
        effect INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS sandbox_svc_calls_by_key ON sandbox_svc_calls (idem_key, seq)",
];

/// The tables `DELETE /sandbox` empties.
pub const TABLES: &[&str] = &["sandbox_svc_answers", "sandbox_svc_calls"];

/// The longest `Idempotency-Key` accepted.
pub const MAX_KEY_LEN: usize = 256;

/// What the work of a call answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    /// The HTTP status (2xx; refusals are errors).
    pub status: u16,
    pub body: Value,
    /// Whether it changed anything (counted in the effects).
    pub effect: bool,
}

impl Done {
    /// An answer that changed something.
    pub fn effect(status: u16, body: Value) -> Done {
        Done { status, body, effect: true }
    }

    /// An answer that changed nothing (a read, or a repeat of a final change).
    pub fn no_effect(status: u16, body: Value) -> Done {
        Done { status, body, effect: false }
    }
}

/// Which call of which service, for the records.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub service: Service,
    /// The operation (one of `service.operations()`).
    pub operation: &'static str,
    /// The resource it is about (reservation, order, wallet, bet slip ...).
    pub subject: &'a str,
}

/// How a call is answered, decided before any work.
#[derive(Debug, Clone, PartialEq)]
pub enum Route<'f, T> {
    /// An injected failure, instead of the work.
    Injected(&'f Injected),
    /// Its input was refused: nothing is done.
    Refused(ApiError),
    /// The key was answered before: the stored answer, nothing done again.
    Replayed(Reply),
    /// The work runs on this input.
    Work(T),
}

/// Decides how a call is answered: an injected failure (unless it comes
/// after the work) first, then a refused input, then a stored answer.
pub fn route<T>(fault: Option<&Injected>, input: Result<T, ApiError>, stored: Option<Reply>) -> Route<'_, T> {
    match (fault, input, stored) {
        (Some(f), _, _) if !f.after_effect => Route::Injected(f),
        (_, Err(e), _) => Route::Refused(e),
        (_, Ok(_), Some(answer)) => Route::Replayed(answer),
        (_, Ok(input), None) => Route::Work(input),
    }
}

/// The `Idempotency-Key` header: trimmed, `None` when absent or empty, `400`
/// (`invalid_idempotency_key`) when longer than [`MAX_KEY_LEN`].
pub fn idempotency_key(header: Option<&str>) -> Result<Option<String>, ApiError> {
    match header.map(str::trim) {
        None | Some("") => Ok(None),
        Some(k) if k.len() > MAX_KEY_LEN => {
            Err(bad_request("invalid_idempotency_key", format!("Idempotency-Key must be at most {MAX_KEY_LEN} bytes")))
        }
        Some(k) => Ok(Some(k.to_string())),
    }
}

/// A JSON body of `T` (unknown fields ignored, as a real service would);
/// an empty body reads as `T::default()` (for calls sent without one).
pub fn body<T: DeserializeOwned + Default>(req: &Request) -> Result<T, ApiError> {
    if req.body().iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    stepwise_web::json_body(req)
}

fn header<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.header(name).and_then(|h| h.as_str())
}

/// One `sandbox_svc_calls` row.
struct Record<'a> {
    call: Call<'a>,
    received_at_ms: i64,
    key: Option<&'a str>,
    request_id: Option<&'a str>,
    status: u16,
    duplicate: bool,
    injected: bool,
    refused: bool,
    effect: bool,
}

fn record(s: &Store, r: &Record<'_>) -> Result<(), ApiError> {
    s.exec(
        "INSERT INTO sandbox_svc_calls (received_at_ms, service, operation, subject, idem_key, request_id, status_code,
            duplicate, injected, refused, effect)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            int(r.received_at_ms),
            text(r.call.service.as_str()),
            text(r.call.operation),
            text(r.call.subject),
            opt_text(r.key),
            opt_text(r.request_id),
            int(r.status.into()),
            int(r.duplicate.into()),
            int(r.injected.into()),
            int(r.refused.into()),
            int(r.effect.into()),
        ],
    )?;
    Ok(())
}

fn stored_answer(s: &Store, service: Service, key: &str) -> Result<Option<Reply>, ApiError> {
    let r = s.exec(
        "SELECT status_code, body FROM sandbox_svc_answers WHERE service = ? AND idem_key = ?",
        &[text(service.as_str()), text(key)],
    )?;
    let found = r.rows().next().and_then(|row| {
        Some(Reply { status: row.get::<u16>("status_code")?, body: row.get::<&str>("body")?.to_string() })
    });
    Ok(found)
}

fn store_answer(s: &Store, call: &Call<'_>, key: &str, reply: &Reply) -> Result<(), ApiError> {
    s.exec(
        "INSERT OR REPLACE INTO sandbox_svc_answers (service, idem_key, operation, status_code, body, answered_at_ms)
         VALUES (?, ?, ?, ?, ?, ?)",
        &[
            text(call.service.as_str()),
            text(key),
            text(call.operation),
            int(reply.status.into()),
            text(&reply.body),
            int(now_ms()),
        ],
    )?;
    Ok(())
}

/// Serves `call` of `req`: `input` is the parsed request (or why it is
/// refused) and `work` does it. `Err` only when the storage itself fails.
pub fn serve<T>(
    req: &Request,
    call: Call<'_>,
    input: Result<T, ApiError>,
    work: impl FnOnce(&Store, T) -> Result<Done, ApiError>,
) -> Result<Reply, ApiError> {
    let received_at_ms = now_ms();
    let dedup = *req.method() == Method::Post;
    let (key, input) = match idempotency_key(header(req, "idempotency-key")) {
        Ok(key) => (key, input),
        Err(e) => (None, Err(e)),
    };
    let request_id = header(req, "x-request-id");
    let store = Store::open()?;
    let (reply, latency_ms) = store.immediate(|s| {
        let mut script = faults::load(s, call.service)?;
        let fault = script.take(call.operation);
        if fault.is_some() {
            faults::save(s, call.service, &script)?;
        }
        let stored = match (&key, dedup, input.is_ok()) {
            (Some(k), true, true) => stored_answer(s, call.service, k)?,
            _ => None,
        };
        let mut rec = Record {
            call,
            received_at_ms,
            key: key.as_deref(),
            request_id,
            status: 0,
            duplicate: false,
            injected: fault.is_some(),
            refused: false,
            effect: false,
        };
        let mut reply = match route(fault.as_ref(), input, stored) {
            Route::Injected(f) => f.reply(call.service, call.operation),
            Route::Refused(e) => {
                rec.refused = true;
                error(&e)
            }
            Route::Replayed(answer) => {
                rec.duplicate = true;
                answer
            }
            Route::Work(input) => match s.savepoint(|s| work(s, input)) {
                Ok(done) => {
                    let reply = Reply::json(done.status, &done.body);
                    if let (Some(k), true, true) = (&key, dedup, reply.is_success()) {
                        store_answer(s, &call, k, &reply)?;
                    }
                    rec.effect = done.effect;
                    reply
                }
                Err(e) => {
                    rec.refused = true;
                    error(&e)
                }
            },
        };
        if let Some(f) = fault.as_ref().filter(|f| f.after_effect) {
            reply = f.reply(call.service, call.operation);
        }
        rec.status = reply.status;
        record(s, &rec)?;
        Ok((reply, script.latency_ms))
    })?;
    sleep_ms(latency_ms);
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(after_effect: bool) -> Injected {
        Injected { status: 503, code: "injected_failure".into(), after_effect }
    }

    #[test]
    fn routes() {
        let ok = || Ok::<u8, ApiError>(1);
        let refused = || Err::<u8, ApiError>(bad_request("invalid_request", "token: missing"));
        let stored = || Some(Reply { status: 200, body: "{}".into() });
        assert_eq!(route(None, ok(), None), Route::Work(1));
        assert_eq!(route(None, ok(), stored()), Route::Replayed(Reply { status: 200, body: "{}".into() }));
        assert!(matches!(route(None, refused(), None), Route::Refused(e) if e.status == 400));
        // An injected failure comes before everything, a stored answer too.
        let before = fault(false);
        assert_eq!(route(Some(&before), ok(), stored()), Route::Injected(&before));
        assert_eq!(route(Some(&before), refused(), None), Route::Injected(&before));
        // After the work: the call goes its way, the failure replaces its answer.
        let after = fault(true);
        assert_eq!(route(Some(&after), ok(), None), Route::Work(1));
        assert!(matches!(route(Some(&after), ok(), stored()), Route::Replayed(_)));
    }

    #[test]
    fn keys() {
        assert_eq!(idempotency_key(None), Ok(None));
        assert_eq!(idempotency_key(Some("  ")), Ok(None));
        assert_eq!(idempotency_key(Some(" s1:reserve_stock:action ")), Ok(Some("s1:reserve_stock:action".into())));
        assert_eq!(idempotency_key(Some(&"k".repeat(MAX_KEY_LEN + 1))).unwrap_err().code, "invalid_idempotency_key");
    }
}
