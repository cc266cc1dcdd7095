//! The saga services (CONTRACT section 5's users, products, Midtrans Snap
//! and Core API, wallet, risk, betting) as a server written apart from
//! Stepwise: Python's `http.server` in its own process, HTTP/1.1 with
//! keep-alive, reading bodies by `Content-Length` only. Each answer is
//! remembered by `Idempotency-Key` (a repeated key answers it again and does
//! nothing twice). `GET /calls` lists every request with its headers;
//! `PUT /fail` `{"path_suffix": "/v1/liabilities/bs1", "status": 503, "times": 99}`
//! makes matching calls fail; `PUT /delay` `{"path_suffix", "ms"}` makes them
//! slow (a second call with the same key waits for the first's answer);
//! `POST /pay/{order_id}` marks an order paid (or sets what its status
//! answers: `{"transaction_status", "fraud_status", "gross_amount"}`).
//! `GET /calls` also counts every arrival per idempotency key, and every
//! successful POST per business object (the path and the id its body names).

use std::process::Child;
use std::time::Duration;

use serde_json::Value;

use crate::{poll_until, request};

const SCRIPT: &str = r#"
import http.server, json, sys, threading, base64

KEY = sys.argv[1]
lock = threading.Lock()
calls = []
answers = {}
orders = {}
amounts = {}
effects = {}
objects = {}
arrivals = {}

def business(path, b):
    # What a call acts on, whatever its key: the path and the business id
    # its body names (a reservation's transaction, a payment's order, a
    # wallet reference).
    b = b if isinstance(b, dict) else {}
    details = b.get("transaction_details") if isinstance(b.get("transaction_details"), dict) else {}
    ident = b.get("transaction_id") or b.get("order_id") or b.get("reference") or details.get("order_id") or ""
    return path + "|" + str(ident)
fails = []
delays = []
pending = {}

def auth_ok(h):
    want = "Basic " + base64.b64encode((KEY + ":").encode()).decode()
    return h.get("Authorization") == want

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def do_GET(self):
        if self.path == "/calls":
            with lock:
                return self.answer(200, {"calls": list(calls), "effects": dict(effects), "objects": dict(objects), "arrivals": dict(arrivals)})
        self.serve("GET", None)

    def do_PUT(self):
        b = self.body() or {}
        with lock:
            (delays if self.path == "/delay" else fails).append(dict(b))
        self.answer(200, b)

    def do_POST(self):
        if self.path.startswith("/pay/"):
            b = self.body() or {}
            with lock:
                orders[self.path[5:]] = b.get("transaction_status", "settlement")
                for f in ("fraud_status", "gross_amount"):
                    if f in b:
                        amounts[(self.path[5:], f)] = b[f]
            return self.answer(200, {"paid": self.path[5:]})
        self.serve("POST", self.body())

    def serve(self, method, b):
        key = self.headers.get("Idempotency-Key")
        if key:
            with lock:
                arrivals[key] = arrivals.get(key, 0) + 1
        while True:
            with lock:
                calls.append({"method": method, "path": self.path, "body": b,
                              "headers": {k.lower(): v for k, v in self.headers.items()}})
                for f in fails:
                    if f["times"] > 0 and self.path.endswith(f["path_suffix"]):
                        f["times"] -= 1
                        return self.answer(f["status"], {"error": {"code": "injected", "message": "injected"}})
                if key and key in answers:
                    status, doc = answers[key]
                    return self.answer(status, doc)
                waiting = pending.get(key) if key else None
                if waiting is None:
                    done = threading.Event()
                    if key:
                        pending[key] = done
                    delay = next((d["ms"] for d in delays if self.path.endswith(d["path_suffix"])), 0)
                    break
            # The same key is being served: wait for its answer, then give it again.
            waiting.wait(30)
            with lock:
                calls.pop()
        if delay:
            threading.Event().wait(delay / 1000.0)
        with lock:
            status, doc = self.route(method, b or {})
            if key and status < 500:
                answers[key] = (status, doc)
                if 200 <= status < 300:
                    effects[key] = effects.get(key, 0) + 1
            if method == "POST" and 200 <= status < 300:
                o = business(self.path, b)
                objects[o] = objects.get(o, 0) + 1
            if key:
                pending.pop(key, None)
            done.set()
        return self.answer(status, doc)

    def route(self, method, b):
        p = self.path
        parts = p.strip("/").split("/")
        if p == "/v1/users/authorize":
            if b.get("token") == "bad":
                return 401, {"error": {"code": "unauthorized", "message": "bad token"}}
            return 200, {"user_id": "u-" + str(b.get("token"))}
        if p == "/v1/reservations":
            total = sum(int(i["price"]) * int(i["quantity"]) for i in b.get("items", []))
            if any(i.get("product_id") == "none" for i in b.get("items", [])):
                return 404, {"error": {"code": "product_not_found", "message": "no such product"}}
            return 200, {"transaction_id": b.get("transaction_id"), "status": "reserved", "total": total}
        if p.startswith("/v1/reservations/"):
            return 200, {"transaction_id": parts[2], "status": {"release": "cancelled", "commit": "committed", "settle": "settled"}.get(parts[3], "?")}
        if p.startswith("/snap/") or p.startswith("/v2/"):
            if not auth_ok(self.headers):
                return 401, {"error": {"code": "unauthorized", "message": "Basic auth"}}
            if p == "/snap/v1/transactions":
                oid = b["transaction_details"]["order_id"]
                orders[oid] = "pending"
                amounts[(oid, "gross_amount")] = "%d.00" % int(b["transaction_details"]["gross_amount"])
                return 201, {"token": "tok-" + oid, "redirect_url": "https://pay.example/" + oid}
            oid, verb = parts[1], parts[2]
            if verb == "status":
                doc = {"order_id": oid, "transaction_status": orders.get(oid, "pending"), "status_code": "200"}
                for f in ("fraud_status", "gross_amount"):
                    if (oid, f) in amounts:
                        doc[f] = amounts[(oid, f)]
                return 200, doc
            if verb == "expire":
                if orders.get(oid) == "settlement":
                    return 412, {"error": {"code": "already_paid", "message": "paid"}}
                orders[oid] = "expire"
                return 200, {"order_id": oid, "transaction_status": "expire"}
            if verb == "cancel":
                orders[oid] = "cancel"
                return 200, {"order_id": oid, "transaction_status": "cancel"}
        if p.startswith("/v1/bet-slips/"):
            verb = parts[-1]
            if verb == "validate":
                return 200, {"eligible": True, "stake": 1000}
            if verb == "quote":
                return 200, {"quote_id": "q-" + parts[2], "amount": 1000 * int(b.get("odds_bp", 10000)) // 10000}
            return 200, {"bet_slip_id": parts[2], "status": verb}
        if p == "/v1/odds/live":
            return 200, {"odds_bp": 15000}
        if p.startswith("/v1/wallets/") or p.startswith("/v1/liabilities/"):
            return 200, {"ok": True, "path": p}
        return 404, {"error": {"code": "no_route", "message": p}}

    def log_message(self, format, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that went away (a runner killed by a test) is expected.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

server = Server(("127.0.0.1", 0), Handler)
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
"#;

/// The saga services in a Python process; killed on drop.
pub struct PlainServices {
    child: Child,
    /// The port (127.0.0.1).
    pub port: u16,
}

impl PlainServices {
    /// Starts them, checking Basic auth against `server_key`.
    pub fn start(server_key: &str) -> Self {
        let (child, port) = crate::spawn_python_server("the plain services", SCRIPT, &[server_key]);
        let s = Self { child, port };
        poll_until(Duration::from_secs(30), "the plain services to answer", || {
            request("GET", &format!("{}/calls", s.origin()), &[], None).ok()
        });
        s
    }

    /// `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every call, oldest first, and the effects counted per idempotency key.
    pub fn calls(&self) -> (Vec<Value>, Value) {
        let a = request("GET", &format!("{}/calls", self.origin()), &[], None).expect("GET /calls").json();
        (a["calls"].as_array().cloned().unwrap_or_default(), a["effects"].clone())
    }

    /// Successful POSTs per business object (the path and the id its body
    /// names), whatever their idempotency key: a resend under a new key
    /// counts twice here.
    pub fn objects(&self) -> Value {
        request("GET", &format!("{}/calls", self.origin()), &[], None).expect("GET /calls").json()["objects"].clone()
    }

    /// How many requests arrived per idempotency key (every arrival, a
    /// repeat waiting for the first's answer included).
    pub fn arrivals(&self) -> Value {
        request("GET", &format!("{}/calls", self.origin()), &[], None).expect("GET /calls").json()["arrivals"].clone()
    }

    /// Makes calls whose path ends with `suffix` answer after `ms` (the work is done at the end).
    pub fn delay(&self, suffix: &str, ms: u64) {
        let body = serde_json::json!({ "path_suffix": suffix, "ms": ms }).to_string();
        request("PUT", &format!("{}/delay", self.origin()), &[], Some(body.as_bytes())).expect("PUT /delay");
    }

    /// Marks an order paid at the payment API (its status answers `settlement`), with no notification.
    pub fn pay(&self, order_id: &str) {
        self.set_status(order_id, &serde_json::json!({}));
    }

    /// Sets what the payment API's status answers for an order, e.g.
    /// `{"transaction_status": "capture", "fraud_status": "challenge"}` or
    /// another `gross_amount` (default: settlement, the created amount).
    pub fn set_status(&self, order_id: &str, fields: &Value) {
        request("POST", &format!("{}/pay/{order_id}", self.origin()), &[], Some(fields.to_string().as_bytes()))
            .expect("POST /pay");
    }

    /// Makes the next `times` calls whose path ends with `suffix` answer `status`.
    pub fn fail(&self, suffix: &str, status: u16, times: u32) {
        let body = serde_json::json!({ "path_suffix": suffix, "status": status, "times": times }).to_string();
        request("PUT", &format!("{}/fail", self.origin()), &[], Some(body.as_bytes())).expect("PUT /fail");
    }
}

impl Drop for PlainServices {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
