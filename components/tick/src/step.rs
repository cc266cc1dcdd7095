//! One tick: the store's stepper, run with the real transport (wasi:http
//! through spin-sdk) and the real clocks.

use futures::future::{select, Either};
use futures::StreamExt;
use spin_sdk::http::{IncomingResponse, Method, Request};
use stepwise_stepper::{self as stepper, CallResult, Clock, Outbound, Transport};
use stepwise_store::{metrics, retention, Db};

use crate::config::Config;
use crate::deadline::{elapsed_ms, Deadline};
use crate::error::TickError;

/// Outbound calls through spin-sdk, each bounded by its time-out and its
/// answer's body by `max_answer_bytes`: past it the body is not read further
/// (the connection is dropped), so one huge answer costs one call, not the
/// tick's memory.
struct Http {
    max_answer_bytes: usize,
}

/// What a call came to: the status, the body (its start, when too large),
/// and whether it was too large.
type Read = (u16, Vec<u8>, bool);

/// Reads `resp`'s body up to `limit` bytes.
async fn read_bounded(resp: IncomingResponse, limit: usize) -> Result<Read, TickError> {
    let status = resp.status();
    let mut stream = resp.take_body_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| TickError::Answer(format!("{e:?}")))?;
        if body.len() + chunk.len() > limit {
            let room = limit - body.len();
            body.extend_from_slice(&chunk[..room]);
            return Ok((status, body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body, false))
}

/// The value of header `name` in `out`.
fn header<'a>(out: &'a Outbound, name: &str) -> &'a str {
    out.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
}

/// A Redis stream subscription's delivery: `XADD <stream> <seq>-0 event
/// <body>` through Spin's outbound Redis. Added is 200; refused as not newer
/// than the stream's last entry (this event is there already) is 409; any
/// other Redis error is 500 with its text; no connection is no status.
/// Spin's Redis calls are synchronous: the host's time-outs bound them.
fn xadd(out: &Outbound) -> CallResult {
    use spin_sdk::redis::{Connection, Error, RedisParameter};
    use stepwise_store::subscriptions::redis_answer;
    let start = wasi::clocks::monotonic_clock::now();
    let args = [
        RedisParameter::Binary(header(out, "stream").as_bytes().to_vec()),
        RedisParameter::Binary(header(out, "entry-id").as_bytes().to_vec()),
        RedisParameter::Binary(b"event".to_vec()),
        RedisParameter::Binary(out.body.clone()),
    ];
    let conn = match Connection::open(&out.url) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "{}",
                serde_json::json!({ "event": "redis_unreachable", "url": out.url, "error": format!("{e:?}") })
            );
            return CallResult {
                status_code: None,
                body: Vec::new(),
                timed_out: false,
                too_large: false,
                duration_ms: elapsed_ms(start),
            };
        }
    };
    let (status_code, body) = match conn.execute("XADD", &args) {
        Ok(_) => (Some(redis_answer::ADDED), Vec::new()),
        Err(Error::Other(e)) if e.contains("equal or smaller than the target stream top item") => {
            (Some(redis_answer::ALREADY_THERE), e.into_bytes())
        }
        Err(e) => (Some(500), format!("{e:?}").into_bytes()),
    };
    CallResult { status_code, body, timed_out: false, too_large: false, duration_ms: elapsed_ms(start) }
}

impl Transport for Http {
    async fn send(&self, out: &Outbound) -> CallResult {
        if out.method == "XADD" {
            return xadd(out);
        }
        let start = wasi::clocks::monotonic_clock::now();
        let method = match out.method {
            "GET" => Method::Get,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => Method::Post,
        };
        let bodiless = matches!(method, Method::Get | Method::Delete);
        let mut req = Request::builder();
        req.method(method).uri(&out.url);
        if !out.body.is_empty() {
            req.header("content-type", "application/json");
        }
        if !out.body.is_empty() || !bodiless {
            // The body is known in full (perhaps empty): say its length, so an
            // upstream that reads Content-Length only (and not chunked
            // bodies) gets all of it.
            req.header("content-length", out.body.len().to_string());
        }
        for (k, v) in &out.headers {
            req.header(k, v);
        }
        let req = req.body(out.body.clone()).build();
        let limit = self.max_answer_bytes;
        let call = Box::pin(async move {
            let resp =
                spin_sdk::http::send::<_, IncomingResponse>(req).await.map_err(|e| TickError::Answer(e.to_string()))?;
            read_bounded(resp, limit).await
        });
        let (status_code, body, timed_out, too_large) = match select(call, Deadline::after_ms(out.timeout_ms)).await {
            Either::Left((Ok((status, body, too_large)), _)) => {
                if too_large {
                    eprintln!(
                        "{}",
                        serde_json::json!({ "event": "answer_too_large", "url": out.url, "limit_bytes": limit })
                    );
                }
                (Some(status), body, false, too_large)
            }
            Either::Left((Err(e), _)) => {
                eprintln!(
                    "{}",
                    serde_json::json!({ "event": "upstream_unreachable", "url": out.url, "error": e.to_string() })
                );
                (None, Vec::new(), false, false)
            }
            Either::Right(_) => (None, Vec::new(), true, false),
        };
        CallResult { status_code, body, timed_out, too_large, duration_ms: elapsed_ms(start) }
    }
}

/// The wall clock for timestamps; the monotonic clock for waiting.
struct Wall;

impl Clock for Wall {
    fn now(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }

    async fn sleep_until(&self, t: i64) {
        let wait = t - self.now();
        if wait > 0 {
            Deadline::after_ms(wait as u64).await;
        }
    }

    fn micros(&self) -> i64 {
        (wasi::clocks::monotonic_clock::now() / 1_000) as i64
    }
}

/// Rows purged per table per tick at most (expired idempotency keys, and
/// history past `retention_days`): a backlog is worked off over ticks, so
/// the purge never takes a tick's budget.
const PURGE_ROWS: u32 = 1000;

/// Runs one tick.
pub async fn tick() -> Result<(), TickError> {
    let started = wasi::clocks::monotonic_clock::now();
    let cfg = Config::load()?;
    let db = Db::open()?;
    let owner = format!("{:016x}", wasi::random::random::get_random_u64());
    // History past its keeping time, and idempotency keys past theirs
    // (transfers keep theirs 25 h): a bounded batch per table.
    let mut purged = 0;
    for (table, n) in retention::purge(&db, Wall.now(), cfg.retention_ms, PURGE_ROWS) {
        match n {
            Ok(n) => purged += n,
            Err(e) => eprintln!("tick: purging {table}: {e}"),
        }
    }
    let totals =
        stepper::run(&db, &cfg.stepper, &owner, &Http { max_answer_bytes: cfg.max_answer_bytes }, &Wall).await?;
    let duration_ms = elapsed_ms(started);
    let summary = db.immediate(|db| {
        metrics::inc(db, "stepwise_ticks", &[], 1)?;
        metrics::inc(db, "stepwise_tick_claimed", &[], totals.claimed.into())?;
        metrics::inc(db, "stepwise_tick_transfers", &[], totals.transfers.into())?;
        metrics::observe(db, "stepwise_tick_duration_seconds", &[], duration_ms as f64 / 1e3)
    });
    if let Err(e) = summary {
        eprintln!("tick: metrics: {e}");
    }
    println!(
        "{}",
        serde_json::json!({
            "event": "tick", "due": totals.due, "claimed": totals.claimed, "recorded": totals.recorded,
            "discarded": totals.discarded, "errors": totals.errors, "transfers": totals.transfers, "purged": purged,
            "duration_ms": duration_ms,
        })
    );
    Ok(())
}
