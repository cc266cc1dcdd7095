//! A test component for the runner's outbound Redis (`spin_sdk::redis`,
//! `fermyon:spin/redis@2.0.0`). `POST /redis` opens one connection (to
//! `?address=`, percent-encoded, else the `redis_url` variable) and runs the
//! body's lines on it, one call per line (`op arg arg ...`), answering one
//! line per call: `ok` and the result, or `err` and the error's `Debug`.
//! Results are `nil`, `status:S`, `int:N` or `bin:TEXT`, space-separated.
//! A refused `open` answers 403 with its error.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::redis::{Connection, Error, RedisParameter, RedisResult};

fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query().split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| {
        v.replace("%2F", "/").replace("%3A", ":").replace("%40", "@").replace("%3F", "?").replace("%3D", "=")
    })
}

fn text(status: u16, body: impl Into<String>) -> Response {
    Response::builder().status(status).header("content-type", "text/plain").body(body.into()).build()
}

fn show(r: &RedisResult) -> String {
    match r {
        RedisResult::Nil => "nil".into(),
        RedisResult::Status(s) => format!("status:{s}"),
        RedisResult::Int64(n) => format!("int:{n}"),
        RedisResult::Binary(b) => format!("bin:{}", String::from_utf8_lossy(b)),
    }
}

/// `int:N` is an integer parameter, anything else its bytes.
fn parameter(arg: &str) -> RedisParameter {
    match arg.strip_prefix("int:").and_then(|n| n.parse().ok()) {
        Some(n) => RedisParameter::Int64(n),
        None => RedisParameter::Binary(arg.as_bytes().to_vec()),
    }
}

/// Runs one line on `conn`; `held` keeps connections `hold` opened until the answer.
fn call(conn: &Connection, address: &str, line: &str, held: &mut Vec<Connection>) -> Result<String, Error> {
    let mut words = line.split_whitespace();
    let op = words.next().unwrap_or_default();
    let args: Vec<String> = words.map(str::to_string).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    Ok(match op {
        "set" => {
            conn.set(&arg(0), &arg(1).into_bytes())?;
            String::new()
        }
        "get" => match conn.get(&arg(0))? {
            Some(v) => show(&RedisResult::Binary(v)),
            None => "nil".into(),
        },
        "incr" => format!("int:{}", conn.incr(&arg(0))?),
        "del" => format!("int:{}", conn.del(&args)?),
        "sadd" => format!("int:{}", conn.sadd(&arg(0), &args[1.min(args.len())..])?),
        "srem" => format!("int:{}", conn.srem(&arg(0), &args[1.min(args.len())..])?),
        "smembers" => {
            let mut members = conn.smembers(&arg(0))?;
            members.sort();
            members.join(" ")
        }
        "publish" => {
            conn.publish(&arg(0), &arg(1).into_bytes())?;
            String::new()
        }
        "execute" => {
            let params: Vec<RedisParameter> = args.iter().skip(1).map(|a| parameter(a)).collect();
            conn.execute(&arg(0), &params)?.iter().map(show).collect::<Vec<_>>().join(" ")
        }
        // Opens up to N more connections to the same address and keeps them
        // open: `int:K` once all are open, else the first error.
        "hold" => {
            let n: usize = arg(0).parse().unwrap_or(0);
            for _ in 0..n {
                held.push(Connection::open(address)?);
            }
            format!("int:{}", held.len())
        }
        other => format!("unknown op {other}"),
    })
}

#[http_component]
fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let info = req.header("spin-path-info").and_then(|h| h.as_str()).unwrap_or("").to_string();
    if info != "/redis" {
        return Ok(text(404, format!("probe-redis: nothing at {info}")));
    }
    let address = match query_param(&req, "address") {
        Some(a) => a,
        None => spin_sdk::variables::get("redis_url")?,
    };
    let conn = match Connection::open(&address) {
        Ok(c) => c,
        Err(e) => return Ok(text(403, format!("{e:?}"))),
    };
    let script = String::from_utf8_lossy(req.body()).into_owned();
    let mut held = Vec::new();
    let mut out = Vec::new();
    for line in script.lines().filter(|l| !l.trim().is_empty()) {
        out.push(match call(&conn, &address, line, &mut held) {
            Ok(s) if s.is_empty() => "ok".to_string(),
            Ok(s) => format!("ok {s}"),
            Err(e) => format!("err {e:?}"),
        });
    }
    Ok(text(200, out.join("\n")))
}
