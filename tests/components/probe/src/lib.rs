//! A test component for the runner. Each path exercises one capability and
//! answers plain text, so the runner's tests can check it over HTTP.

use std::sync::atomic::{AtomicU64, Ordering};

use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;
use spin_sdk::sqlite3::{Connection, Value};

/// Counts requests seen by this instance: always 1 when every request gets a fresh instance.
static SEEN: AtomicU64 = AtomicU64::new(0);

fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.replace("%2F", "/").replace("%3A", ":"))
}

fn text(status: u16, body: impl Into<String>) -> Response {
    Response::builder().status(status).header("content-type", "text/plain").body(body.into()).build()
}

#[http_component]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let info = req.header("spin-path-info").and_then(|h| h.as_str()).unwrap_or("").to_string();
    let route = req.path().to_string();
    Ok(match (req.method(), info.as_str()) {
        (_, "/headers") => {
            let mut out = String::new();
            for name in [
                "spin-full-url",
                "spin-path-info",
                "spin-matched-route",
                "spin-component-route",
                "spin-base-path",
                "spin-client-addr",
            ] {
                let v = req.header(name).and_then(|h| h.as_str()).unwrap_or("<none>");
                out.push_str(&format!("{name}={v}\n"));
            }
            out.push_str(&format!("path={route}\n"));
            text(200, out)
        }
        (_, "/seen") => text(200, (SEEN.fetch_add(1, Ordering::SeqCst) + 1).to_string()),
        (Method::Put, "/kv") => {
            let key = query_param(&req, "key").unwrap_or_default();
            Store::open_default()?.set(&key, req.body())?;
            text(204, "")
        }
        (Method::Get, "/kv") => {
            let key = query_param(&req, "key").unwrap_or_default();
            match Store::open_default()?.get(&key)? {
                Some(v) => text(200, String::from_utf8_lossy(&v).into_owned()),
                None => text(404, "no such key"),
            }
        }
        (_, "/kv-denied") => match Store::open("other") {
            Ok(_) => text(200, "opened"),
            Err(e) => text(403, format!("{e:?}")),
        },
        (Method::Post, "/sql") => {
            let db = Connection::open_default()?;
            db.execute(
                "CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT NOT NULL)",
                &[],
            )?;
            let v = String::from_utf8_lossy(req.body()).into_owned();
            db.execute("INSERT INTO probe (v) VALUES (?)", &[Value::Text(v)])?;
            let id = db.last_insert_rowid();
            let changes = db.changes();
            text(200, format!("{id} {changes}"))
        }
        (Method::Get, "/sql") => {
            let db = Connection::open_default()?;
            db.execute(
                "CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT NOT NULL)",
                &[],
            )?;
            let r = db.execute("SELECT count(*) AS n FROM probe", &[])?;
            let n: i64 = r.rows().next().and_then(|row| row.get::<i64>("n")).unwrap_or(-1);
            text(200, n.to_string())
        }
        (Method::Get, "/sql-v2") => {
            // The same database through spin-sdk's older `sqlite` module
            // (`fermyon:spin/sqlite@2.0.0`).
            let db = spin_sdk::sqlite::Connection::open_default()?;
            let r = db.execute(
                "SELECT count(*) AS n FROM probe WHERE v = ?",
                &[spin_sdk::sqlite::Value::Text("two".into())],
            )?;
            let n: i64 = r.rows().next().and_then(|row| row.get::<i64>("n")).unwrap_or(-1);
            text(200, n.to_string())
        }
        (Method::Post, "/sql-tx") => {
            // Opens a transaction and leaves it open: the runner must roll it
            // back when the instance ends, so it never leaks into another request.
            let db = Connection::open_default()?;
            db.execute(
                "CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT NOT NULL)",
                &[],
            )?;
            db.execute("BEGIN IMMEDIATE", &[])?;
            db.execute("INSERT INTO probe (v) VALUES ('uncommitted')", &[])?;
            text(200, "left open")
        }
        (_, "/var") => {
            let name = query_param(&req, "name").unwrap_or_default();
            match spin_sdk::variables::get(&name) {
                Ok(v) => text(200, v),
                Err(e) => text(404, format!("{e:?}")),
            }
        }
        (_, "/env") => {
            let name = query_param(&req, "name").unwrap_or_default();
            text(200, std::env::var(name).unwrap_or_else(|_| "<unset>".into()))
        }
        (_, "/fetch") => {
            let url = query_param(&req, "url").unwrap_or_default();
            let out = Request::get(&url).build();
            match spin_sdk::http::send::<_, Response>(out).await {
                Ok(resp) => text(200, format!("{} {}", resp.status(), String::from_utf8_lossy(resp.body()))),
                Err(e) => text(502, format!("refused: {e}")),
            }
        }
        (_, "/fetch-many") => {
            // `n` sequential calls to `url`, one after the other; with `size`,
            // each is a POST of `size` bytes (the digits 0-9 repeated) with its
            // `content-length` set, as the Stepwise components send bodies.
            let url = query_param(&req, "url").unwrap_or_default();
            let n: usize = query_param(&req, "n").and_then(|v| v.parse().ok()).unwrap_or(1);
            let size: usize = query_param(&req, "size").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut statuses = Vec::with_capacity(n);
            for i in 0..n {
                let out = if size == 0 {
                    Request::get(&url).build()
                } else {
                    let body: Vec<u8> = (0..size).map(|b| b'0' + (b % 10) as u8).collect();
                    Request::post(&url, body).header("content-length", size.to_string()).build()
                };
                match spin_sdk::http::send::<_, Response>(out).await {
                    Ok(resp) => statuses.push(resp.status().to_string()),
                    Err(e) => return Ok(text(502, format!("call {}: {e}", i + 1))),
                }
            }
            text(200, statuses.join(" "))
        }
        (_, "/sleep") => {
            let ms: u64 = query_param(&req, "ms").and_then(|v| v.parse().ok()).unwrap_or(0);
            // Tests wait for this line to know the request is in flight.
            println!("sleep {ms} started");
            std::thread::sleep(std::time::Duration::from_millis(ms));
            text(200, format!("slept {ms}"))
        }
        (_, "/sleep-log") => {
            // Sleeps `ms` and records when it started and ended, so tests can
            // see which calls overlapped.
            let ms: u64 = query_param(&req, "ms").and_then(|v| v.parse().ok()).unwrap_or(0);
            let now_us = || {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as i64)
                    .unwrap_or(0)
            };
            let started = now_us();
            std::thread::sleep(std::time::Duration::from_millis(ms));
            let ended = now_us();
            let db = Connection::open_default()?;
            db.execute("CREATE TABLE IF NOT EXISTS sleep_log (started_us INTEGER, ended_us INTEGER)", &[])?;
            db.execute("INSERT INTO sleep_log VALUES (?, ?)", &[Value::Integer(started), Value::Integer(ended)])?;
            text(200, "logged")
        }
        (_, "/print") => {
            println!("probe says hello on stdout");
            eprintln!("probe says hello on stderr");
            text(200, "printed")
        }
        (_, "/trap") => panic!("probe asked to trap"),
        (_, "/loop") => {
            // Never returns, never calls the host: only epoch interruption stops it.
            println!("loop started");
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        (_, "/hang") => {
            // Waits in a host call forever: only the host's timeout stops it.
            println!("hang started");
            std::thread::sleep(std::time::Duration::from_secs(24 * 3600));
            text(200, "woke up")
        }
        (_, "/body-len") => text(200, req.body().len().to_string()),
        _ => text(404, format!("probe: nothing at {info}")),
    })
}
