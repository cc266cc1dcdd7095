//! An outside upstream for outbound HTTP tests: Python's `http.server` in its
//! own process, speaking HTTP/1.1 with keep-alive, reading request bodies by
//! `Content-Length` only (a chunked body would not arrive). It counts the TCP
//! connections it accepts and records every request: its connection, method,
//! path, headers and body.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::poll_until;

/// The server. Every line it prints is one JSON event.
const SCRIPT: &str = r#"
import http.server, json, sys, threading

lock = threading.Lock()
accepted = [0]

def emit(event):
    line = json.dumps(event) + "\n"
    with lock:
        sys.stdout.write(line)
        sys.stdout.flush()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with lock:
            accepted[0] += 1
            self.connection_id = accepted[0]
        emit({"event": "connection", "connection": self.connection_id})

    def serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        digits = bytes(48 + i % 10 for i in range(len(body)))
        emit({
            "event": "request",
            "connection": self.connection_id,
            "method": self.command,
            "path": self.path,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body_len": len(body),
            "body_is_digits": body == digits,
        })
        answer = b"ok %d" % len(body)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = serve

    def log_message(self, format, *args):
        emit({"event": "log", "message": format % args})

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

server = Server(("127.0.0.1", 0), Handler)
emit({"event": "listening", "port": server.server_address[1]})
server.serve_forever()
"#;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// Which accepted connection (1, 2, ...) carried it.
    pub connection: u64,
    pub method: String,
    /// Request target.
    pub path: String,
    /// Headers, names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Bytes of body read (by `Content-Length`).
    pub body_len: usize,
    /// Whether the body is the digits `0123456789` repeated (what the probe sends).
    pub body_is_digits: bool,
}

impl UpstreamRequest {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A running counting upstream; killed on drop.
pub struct CountingUpstream {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    events: Arc<Mutex<Vec<Value>>>,
}

impl CountingUpstream {
    /// Starts the server (needs `python3`) and waits until it listens.
    pub fn start() -> Self {
        let mut child = Command::new("python3")
            .arg("-u")
            .arg("-c")
            .arg(SCRIPT)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the counting upstream");
        let stdout = child.stdout.take().expect("piped stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => sink.lock().expect("events lock").push(v),
                    Err(e) => eprintln!("counting upstream printed a non-JSON line ({e}): {line}"),
                }
            }
        });
        let mut upstream = Self { child, port: 0, events };
        upstream.port = poll_until(Duration::from_secs(30), "the counting upstream to listen", || {
            upstream.events_of("listening").first().and_then(|e| e["port"].as_u64()).map(|p| p as u16)
        });
        upstream
    }

    /// `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events.lock().expect("events lock").iter().filter(|e| e["event"] == kind).cloned().collect()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.events_of("connection").len()
    }

    /// Requests received so far, in arrival order.
    pub fn requests(&self) -> Vec<UpstreamRequest> {
        self.events_of("request")
            .iter()
            .map(|e| UpstreamRequest {
                connection: e["connection"].as_u64().unwrap_or(0),
                method: e["method"].as_str().unwrap_or_default().to_string(),
                path: e["path"].as_str().unwrap_or_default().to_string(),
                headers: e["headers"]
                    .as_array()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                (
                                    h[0].as_str().unwrap_or_default().to_string(),
                                    h[1].as_str().unwrap_or_default().to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                body_len: e["body_len"].as_u64().unwrap_or(0) as usize,
                body_is_digits: e["body_is_digits"].as_bool().unwrap_or(false),
            })
            .collect()
    }

    /// Waits (up to `deadline`) until at least `n` requests arrived, and returns them.
    pub fn wait_for_requests(&self, n: usize, deadline: Duration) -> Vec<UpstreamRequest> {
        poll_until(deadline, &format!("{n} requests at the counting upstream"), || {
            let requests = self.requests();
            (requests.len() >= n).then_some(requests)
        })
    }

    /// The server's own log lines (for failure messages).
    pub fn log(&self) -> Vec<String> {
        self.events_of("log").iter().filter_map(|e| e["message"].as_str().map(str::to_string)).collect()
    }
}

impl Drop for CountingUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
