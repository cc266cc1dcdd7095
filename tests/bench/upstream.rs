//! `bench-upstream`: a small, fast transaction service (CONTRACT section 1's
//! protocol) and the checkout's saga services, for the benchmarks, in its own
//! process over TCP, so the figures show Stepwise rather than a slow
//! simulated upstream. HTTP/1.1 with keep-alive (hyper); every start and
//! every service call succeeds after `--latency-ms` (a payment stays
//! pending until `POST /payments/settle` `{"order_ids": [...]}` marks it
//! paid: its status then answers `settlement` with the amount it was
//! created for, as the gateway would after the customer paid); a repeated `request_id` or `Idempotency-Key` is answered again
//! without new work; bodies are read by their length. Prints
//! `listening <port>` once it serves.
//!
//! It is also the events benchmark's webhook receiver: `POST /hooks/...`
//! answers 204 at once and keeps the time from the event's `at` to its
//! arrival; `GET /hooks/stats` answers `{"count", "latencies_ms"}` (every
//! arrival's, sorted) and `DELETE /hooks/stats` starts over.
//!
//! `GET /starts/first` answers, per binding, when its first `/start`
//! arrived (µs since the Unix epoch): the workers benchmark's measure of
//! how soon a newly started worker makes its first call.
//!
//! Usage: `bench-upstream [--latency-ms N]`

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};

#[derive(Default)]
struct State {
    answers: Mutex<HashMap<String, Bytes>>,
    next_tx: AtomicU64,
    /// Per webhook delivery: ms from the event's `at` to its arrival.
    hooks: Mutex<Vec<i64>>,
    /// Per Snap payment (order id): its `gross_amount`, and whether it was paid.
    payments: Mutex<HashMap<String, (i64, bool)>>,
    /// Per binding: when its first `/start` arrived, µs since the epoch.
    first_starts: Mutex<HashMap<String, i64>>,
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The webhook receiver's routes.
fn hooks(state: &State, method: &hyper::Method, path: &str, body: &[u8]) -> Option<Response<Full<Bytes>>> {
    if !path.starts_with("/hooks") {
        return None;
    }
    let mut hooks = state.hooks.lock().unwrap_or_else(|p| p.into_inner());
    Some(match (method.as_str(), path) {
        ("GET", "/hooks/stats") => {
            let mut sorted = hooks.clone();
            sorted.sort_unstable();
            answer(200, Bytes::from(json!({ "count": sorted.len(), "latencies_ms": sorted }).to_string()))
        }
        ("DELETE", "/hooks/stats") => {
            hooks.clear();
            answer(200, Bytes::from_static(b"{}"))
        }
        _ => {
            let at = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|e| e["at"].as_str().and_then(stepwise_e2e::timestamp_micros));
            hooks.push(at.map_or(-1, |us| now_ms() - us / 1000));
            let mut r = answer(204, Bytes::new());
            r.headers_mut().remove("content-type");
            r
        }
    })
}

async fn handle(
    state: Arc<State>,
    latency: Duration,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let arrived = now_us();
    let path = req.uri().path().to_string();
    let idempotency_key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).map(String::from);
    let get = req.method() == hyper::Method::GET;
    let method = req.method().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(answer(400, Bytes::from_static(b"{\"error\":\"body\"}"))),
    };
    if let Some(r) = hooks(&state, &method, &path, &body) {
        return Ok(r);
    }
    if method == hyper::Method::POST && path == "/payments/settle" {
        let ids: Vec<String> = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|d| serde_json::from_value(d["order_ids"].clone()).ok())
            .unwrap_or_default();
        let mut payments = state.payments.lock().unwrap_or_else(|p| p.into_inner());
        let mut settled = 0;
        for id in &ids {
            if let Some(p) = payments.get_mut(id) {
                p.1 = true;
                settled += 1;
            }
        }
        return Ok(answer(200, Bytes::from(json!({ "settled": settled }).to_string())));
    }
    if get && path == "/starts/first" {
        let firsts = state.first_starts.lock().unwrap_or_else(|p| p.into_inner());
        return Ok(answer(200, Bytes::from(json!(*firsts).to_string())));
    }
    let doc = match serde_json::from_slice::<Value>(&body) {
        Ok(d) => d,
        Err(_) if get || body.is_empty() => Value::Null,
        Err(_) => return Ok(answer(400, Bytes::from_static(b"{\"error\":\"no JSON body\"}"))),
    };
    if path.ends_with("/start") {
        if let Some(binding) = doc["binding_id"].as_str() {
            let mut firsts = state.first_starts.lock().unwrap_or_else(|p| p.into_inner());
            firsts.entry(binding.to_string()).or_insert(arrived);
        }
    }
    // Workers' calls repeat a request id; sagas' calls an Idempotency-Key.
    // A GET (a payment status poll) is never replayed.
    let dedup = match idempotency_key {
        _ if get => String::new(),
        Some(k) => format!("key:{k}"),
        None => format!("rid:{}", doc["request_id"].as_str().unwrap_or_default()),
    };
    let seen =
        if dedup.is_empty() { None } else { state.answers.lock().map(|a| a.get(&dedup).cloned()).unwrap_or(None) };
    if let Some(a) = seen {
        return Ok(answer(200, a));
    }
    if !latency.is_zero() {
        // (tokio's timer has 1 ms steps: even a zero sleep would wait for one)
        tokio::time::sleep(latency).await;
    }
    let (status, tx) = if path.ends_with("/start") {
        let id = state.next_tx.fetch_add(1, Ordering::Relaxed) + 1;
        (
            200,
            json!({"id": format!("B{id}"), "binding_id": doc["binding_id"], "status": "SUKSES", "reason": null,
               "otp_required": false, "amount": 1000, "balance": 1_000_000}),
        )
    } else if let Some(a) = saga_service(&state, &path, &doc) {
        a
    } else {
        return Ok(answer(404, Bytes::from_static(b"{\"error\":\"no such route\"}")));
    };
    let bytes = Bytes::from(tx.to_string());
    if !dedup.is_empty() {
        if let Ok(mut a) = state.answers.lock() {
            a.insert(dedup, bytes.clone());
        }
    }
    Ok(answer(status, bytes))
}

/// The checkout's services, answering at once: authorization, a reservation
/// (its total), a Snap payment, the reservation's commit, release and
/// settle, and the Core API's status, cancel and expire.
fn saga_service(state: &State, path: &str, doc: &Value) -> Option<(u16, Value)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    Some(match parts.as_slice() {
        ["v1", "users", "authorize"] => (200, json!({"user_id": "u1"})),
        ["v1", "reservations"] => {
            let total: i64 = doc["items"]
                .as_array()?
                .iter()
                .map(|i| i["price"].as_i64().unwrap_or(0) * i["quantity"].as_i64().unwrap_or(0))
                .sum();
            (200, json!({"transaction_id": doc["transaction_id"], "status": "reserved", "total": total}))
        }
        ["v1", "reservations", id, op] => (200, json!({"transaction_id": id, "status": op})),
        ["snap", "v1", "transactions"] => {
            let details = &doc["transaction_details"];
            if let (Some(order), Some(gross)) = (details["order_id"].as_str(), details["gross_amount"].as_i64()) {
                state.payments.lock().unwrap_or_else(|p| p.into_inner()).insert(order.to_string(), (gross, false));
            }
            (201, json!({"token": "t", "redirect_url": "https://pay.example/t"}))
        }
        ["v2", id, "status"] => match state.payments.lock().unwrap_or_else(|p| p.into_inner()).get(*id) {
            Some((gross, true)) => (
                200,
                json!({"order_id": id, "transaction_status": "settlement", "fraud_status": "accept",
                                                "status_code": "200", "gross_amount": format!("{gross}.00")}),
            ),
            _ => (200, json!({"order_id": id, "transaction_status": "pending", "status_code": "201"})),
        },
        ["v2", id, op] => (200, json!({"order_id": id, "transaction_status": op})),
        _ => return None,
    })
}

fn answer(status: u16, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    r
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let latency_ms: u64 = match args.iter().position(|a| a == "--latency-ms") {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| std::io::Error::other("--latency-ms takes a number"))?,
        None => 0,
    };
    let latency = Duration::from_millis(latency_ms);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?.port());
    let state = Arc::new(State::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), latency, req));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
