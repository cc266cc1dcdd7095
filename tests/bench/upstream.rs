//! `bench-upstream`: a small, fast transaction service (CONTRACT section 1's
//! protocol) for the workers benchmark, in its own process over TCP, so the
//! figures show Stepwise rather than a slow simulated upstream. HTTP/1.1
//! with keep-alive (hyper); every start succeeds after `--latency-ms`; a
//! repeated `request_id` is answered again without new work; bodies are read
//! by their length. Prints `listening <port>` once it serves.
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
}

async fn handle(state: Arc<State>, latency: Duration, req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(answer(400, Bytes::from_static(b"{\"error\":\"body\"}"))),
    };
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return Ok(answer(400, Bytes::from_static(b"{\"error\":\"no JSON body\"}")));
    };
    let request_id = doc["request_id"].as_str().unwrap_or_default().to_string();
    let seen = state.answers.lock().map(|a| a.get(&request_id).cloned()).unwrap_or(None);
    if let Some(a) = seen {
        return Ok(answer(200, a));
    }
    if !latency.is_zero() {
        // (tokio's timer has 1 ms steps: even a zero sleep would wait for one)
        tokio::time::sleep(latency).await;
    }
    let tx = if path.ends_with("/start") {
        let id = state.next_tx.fetch_add(1, Ordering::Relaxed) + 1;
        json!({"id": format!("B{id}"), "binding_id": doc["binding_id"], "status": "SUKSES", "reason": null,
               "otp_required": false, "amount": 1000, "balance": 1_000_000})
    } else {
        return Ok(answer(404, Bytes::from_static(b"{\"error\":\"only starts succeed here\"}")));
    };
    let bytes = Bytes::from(tx.to_string());
    if let Ok(mut a) = state.answers.lock() {
        a.insert(request_id, bytes.clone());
    }
    Ok(answer(200, bytes))
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
        Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).ok_or_else(|| std::io::Error::other("--latency-ms takes a number"))?,
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
            let _ = http1::Builder::new().timer(TokioTimer::new()).keep_alive(true).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
