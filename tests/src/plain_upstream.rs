//! A transaction service written apart from Stepwise (CONTRACT section 1):
//! Python's `http.server` in its own process, HTTP/1.1 with keep-alive,
//! reading request bodies by `Content-Length` only, as many real upstreams do
//! (a chunked body arrives empty and is answered 400). Bindings whose id
//! starts with `otp-` ask for an OTP (`123456`) on start; every other start
//! succeeds, but a start for a binding whose id starts with `huge-` is
//! answered with a 300 MB body, and one for a binding whose id starts with
//! `garbage-` with a 200 whose body is not JSON. A repeated `request_id` is
//! answered again without new work.
//! `GET /calls` lists what it received, each call with the number of the TCP
//! connection it came on (1, 2, ... in the order they were accepted).

use std::process::Child;
use std::time::Duration;

use serde_json::Value;

use crate::{poll_until, request};

const SCRIPT: &str = r#"
import http.server, json, sys, threading

lock = threading.Lock()
calls = []
answers = {}
transactions = {}
accepted = [0]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with lock:
            accepted[0] += 1
            self.connection_id = accepted[0]

    def answer(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with lock:
            self.answer(200, {"calls": list(calls)})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        call = {"path": self.path, "content_length": self.headers.get("Content-Length"),
                "transfer_encoding": self.headers.get("Transfer-Encoding"),
                "header_request_id": self.headers.get("X-Request-Id"), "body_len": len(raw),
                "connection": self.connection_id}
        try:
            body = json.loads(raw)
        except ValueError:
            with lock:
                calls.append(call)
            return self.answer(400, {"error": "no JSON body"})
        call["request_id"] = body.get("request_id")
        huge = False
        with lock:
            call["duplicate"] = call["request_id"] in answers
            calls.append(call)
            if call["duplicate"]:
                status, doc = answers[call["request_id"]]
                return self.answer(status, doc)
            parts = self.path.strip("/").split("/")
            if parts[-1] == "start" and body.get("binding_id", "").startswith("huge-"):
                huge = True
            elif parts[-1] == "start" and body.get("binding_id", "").startswith("garbage-"):
                page = b"<html><body>502 Bad Gateway</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            elif parts[-1] == "start":
                binding = body.get("binding_id", "")
                tx = {"id": "P%d" % (len(transactions) + 1), "binding_id": binding, "status": "SUKSES",
                      "reason": None, "otp_required": False, "amount": 1000, "balance": 9000}
                if binding.startswith("otp-"):
                    tx.update(status="PROCESSING", otp_required=True)
                transactions[tx["id"]] = tx
            else:
                tx = transactions.get(parts[-2])
                if tx is None:
                    return self.answer(404, {"error": "unknown transaction"})
                op = parts[-1]
                if op == "otp":
                    ok = body.get("otp") == "123456"
                    tx.update(status="SUKSES" if ok else "GAGAL", otp_required=False, reason=None if ok else "wrong_otp")
                elif op == "stop" and tx["status"] == "PROCESSING":
                    tx.update(status="GAGAL", otp_required=False, reason="stopped")
            if not huge:
                answers[call["request_id"]] = (200, dict(tx))
                return self.answer(200, tx)
        # 300 MB of JSON-looking bytes, written as the reader takes them (a
        # reader that stops reading closes the connection).
        size, chunk = 300 * 1024 * 1024, b" " * (1024 * 1024)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        try:
            for _ in range(size // len(chunk)):
                self.wfile.write(chunk)
        except OSError:
            self.close_connection = True

    def log_message(self, format, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

server = Server(("127.0.0.1", 0), Handler)
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
"#;

/// A running plain upstream; killed on drop.
pub struct PlainUpstream {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl PlainUpstream {
    /// Starts it (needs `python3`) and waits until it listens.
    pub fn start() -> Self {
        let (child, port) = crate::spawn_python_server("the plain upstream", SCRIPT, &[]);
        let up = Self { child, port };
        poll_until(Duration::from_secs(30), "the plain upstream to answer", || {
            request("GET", &format!("{}/calls", up.origin()), &[], None).ok()
        });
        up
    }

    /// `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every call it received, oldest first.
    pub fn calls(&self) -> Vec<Value> {
        let a = request("GET", &format!("{}/calls", self.origin()), &[], None).expect("GET /calls");
        a.json()["calls"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for PlainUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
