//! A webhook receiver written apart from Stepwise, for the subscriptions
//! suite: Python's `http.server` in its own process (HTTP/1.1, keep-alive,
//! bodies read by `Content-Length`), checking every delivery with the
//! `standardwebhooks` package from PyPI, a verifier nobody here wrote.
//!
//! `PUT /secret` `{"secret"}` sets the secret to verify with. `PUT /mode`
//! `{"fail": 0.22, "reset": 0.06, "hang": 0.02, "hang_ms": 700, "slow": 0.05,
//! "slow_ms": 40, "seed": 1}` makes that share of deliveries answer 500,
//! have their connection reset, answer only after `hang_ms` (past the
//! subscription's time-out), or answer 200 slowly; the rest answer 204.
//! `GET /received` lists every delivery as it came: `id`, `timestamp`,
//! `verified` (or the verifier's `error`), the body as text, the status
//! answered (`reset` for none) and the receiver's arrival order.

use std::process::Child;
use std::time::Duration;

use serde_json::{json, Value};

use crate::{poll_until, request};

const SCRIPT: &str = r#"
import http.server, json, random, socket, struct, sys, threading, time
from standardwebhooks.webhooks import Webhook

lock = threading.Lock()
received = []
state = {"secret": None, "fail": 0.0, "reset": 0.0, "hang": 0.0, "hang_ms": 0, "slow": 0.0, "slow_ms": 0}
rng = random.Random(1)

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY the body
    # waits for the client's delayed ACK (40 ms) on every answer with one.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def answer(self, status, doc=None):
        body = json.dumps(doc).encode() if doc is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def raw(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        if self.path == "/received":
            with lock:
                self.answer(200, {"received": received})
        else:
            self.answer(404, {})

    def do_PUT(self):
        doc = json.loads(self.raw() or b"{}")
        with lock:
            if self.path == "/secret":
                state["secret"] = doc["secret"]
            elif self.path == "/mode":
                for k in ("fail", "reset", "hang", "hang_ms", "slow", "slow_ms"):
                    state[k] = doc.get(k, 0)
                rng.seed(doc.get("seed", 1))
        self.answer(200, {})

    def do_POST(self):
        body = self.raw()
        headers = {k.lower(): v for k, v in self.headers.items()}
        with lock:
            secret = state["secret"]
            roll = rng.random()
            mode = dict(state)
        entry = {"id": headers.get("webhook-id"), "timestamp": headers.get("webhook-timestamp"),
                 "signature": headers.get("webhook-signature"), "body": body.decode("utf-8", "replace"),
                 "verified": False, "error": None, "path": self.path}
        try:
            Webhook(secret).verify(body, {k: headers.get(k, "") for k in ("webhook-id", "webhook-timestamp", "webhook-signature")})
            entry["verified"] = True
        except Exception as e:
            entry["error"] = "%s: %s" % (type(e).__name__, e)
        edges = [("fail", mode["fail"]), ("reset", mode["reset"]), ("hang", mode["hang"]), ("slow", mode["slow"])]
        outcome, acc = "ok", 0.0
        for name, share in edges:
            acc += share
            if roll < acc:
                outcome = name
                break
        if outcome == "reset":
            entry["status"] = "reset"
            with lock:
                entry["order"] = len(received)
                received.append(entry)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if outcome == "hang":
            time.sleep(mode["hang_ms"] / 1000.0)
        if outcome == "slow":
            time.sleep(mode["slow_ms"] / 1000.0)
        status = 500 if outcome == "fail" else (204 if outcome in ("ok", "slow") else 200)
        entry["status"] = status if outcome != "hang" else "hang"
        with lock:
            entry["order"] = len(received)
            received.append(entry)
        if status == 204:
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.answer(status, {"error": "try later"} if status == 500 else {})

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass

port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
srv = Server(("127.0.0.1", port), Handler)
print(json.dumps({"port": srv.server_address[1]}), flush=True)
srv.serve_forever()
"#;

/// The receiver, killed on drop.
pub struct Receiver {
    child: Child,
    /// Its port (127.0.0.1).
    pub port: u16,
}

impl Receiver {
    /// Starts it on a free port.
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// Starts it on `port` (0: a free one); as a new process, it has
    /// received nothing.
    pub fn start_on(port: u16) -> Self {
        let (child, port) = crate::spawn_python_server("the webhook receiver", SCRIPT, &[&port.to_string()]);
        let r = Self { child, port };
        poll_until(Duration::from_secs(30), "the webhook receiver to answer", || {
            request("GET", &r.url("/received"), &[], None).ok()
        });
        r
    }

    /// `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A URL on it.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    fn put(&self, path: &str, doc: Value) {
        let a =
            request("PUT", &self.url(path), &[("content-type", "application/json")], Some(doc.to_string().as_bytes()))
                .expect("the receiver answers");
        assert_eq!(a.status, 200, "{}", a.body);
    }

    /// Verifies deliveries with `secret` from now on.
    pub fn set_secret(&self, secret: &str) {
        self.put("/secret", json!({ "secret": secret }));
    }

    /// Sets how it misbehaves (see the module's docs).
    pub fn set_mode(&self, mode: Value) {
        self.put("/mode", mode);
    }

    /// Every delivery so far, in arrival order.
    pub fn received(&self) -> Vec<Value> {
        let a = request("GET", &self.url("/received"), &[], None).expect("the receiver answers");
        a.json()["received"].as_array().cloned().unwrap_or_default()
    }

    /// Stops it at once (connections to its port are refused after).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill();
    }
}
