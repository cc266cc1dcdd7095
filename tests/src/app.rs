//! The Stepwise app (`spin.toml`) under test, beside the sandbox app
//! (`components/sandbox/spin.toml`) it calls as its upstream and saga
//! services: the control API with its token, the sandbox's script and
//! records, and waits on what the tick does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::{poll_until, Answer, Runner, RunnerConfig, RunnerKind};

/// The API token every test app uses (the bootstrap `admin` key).
pub const TOKEN: &str = "test-token-0123456789";

/// How often test apps tick on the runner.
pub const TICK_MS: u64 = 50;

/// The Midtrans server key the test sandbox and Stepwise share (test-only:
/// the sandbox has no default key, and neither has Stepwise).
pub const SANDBOX_KEY: &str = "SB-Mid-server-test-sandbox";

/// The sandbox's manifest: an app of its own (components/sandbox/spin.toml).
pub const SANDBOX_MANIFEST: &str = "components/sandbox/spin.toml";

/// The service variables that point Stepwise at an upstream.
pub const SERVICE_URLS: [&str; 8] = [
    "upstream_url",
    "users_url",
    "products_url",
    "payment_url",
    "payment_api_url",
    "wallet_url",
    "risk_url",
    "betting_url",
];

/// How long a test app's tick keeps stepping: a little over the time
/// between its firings ([`TICK_MS`]), as README advises (the default is
/// 1,100 ms for the 1 s cron), so one tick is always looking. A tick looks
/// for due work every 5 ms while its budget lasts, so each further
/// overlapping run is idle CPU: with 200 ms, four runs at once kept an idle
/// app at a fifth of a core, and the suites side by side in `scripts/test`
/// short of CPU.
pub const TICK_BUDGET_MS: &str = "60";

/// The app's runner config on the host `STEPWISE_E2E_RUNNER` names (the
/// runner by default): see [`config_on`].
pub fn config() -> RunnerConfig {
    config_on(RunnerKind::from_env())
}

/// Stepwise's config on `kind`: `spin.toml`, the test token; on the runner
/// fast ticks (`--tick-ms`, a short budget). On Spin the cron plugin fires
/// the tick every second and it steps for the default `tick_budget_ms`
/// (900 ms). [`App::with`] points every service it does not set at a
/// sandbox of its own, with the sandbox's Midtrans key.
pub fn config_on(kind: RunnerKind) -> RunnerConfig {
    let cfg = RunnerConfig::new("spin.toml").on(kind).var("api_token", TOKEN);
    match kind {
        RunnerKind::Stepwise => cfg.var("tick_budget_ms", TICK_BUDGET_MS).tick_ms(TICK_MS),
        RunnerKind::Spin => cfg,
    }
}

/// The sandbox app's config, notifying Stepwise at `stepwise_port`. It runs
/// on the project's runner whatever Stepwise runs on: it is a test peer.
pub fn sandbox_config(stepwise_port: u16) -> RunnerConfig {
    RunnerConfig::new(SANDBOX_MANIFEST)
        .on(RunnerKind::Stepwise)
        .var("midtrans_server_key", SANDBOX_KEY)
        .var("stepwise_url", &format!("http://127.0.0.1:{stepwise_port}"))
        .env("STEPWISE_LOG", "warn")
        // Its clients are Stepwise replicas whose overlapping ticks open
        // bursts of connections from one address each (its pool keeps 16
        // idle): the per-client cap on connections waiting for headers is
        // for untrusted clients, off here as behind a proxy.
        .arg("--max-header-waits-per-client")
        .arg("512")
}

/// `cfg` with every service it does not set pointed at `sandbox` (a
/// `host:port`), and the sandbox's Midtrans key unless it sets its own.
pub fn beside_sandbox(cfg: RunnerConfig, sandbox: &str) -> RunnerConfig {
    let origin = format!("http://{sandbox}");
    SERVICE_URLS
        .into_iter()
        .fold(cfg, |cfg, var| cfg.var_default(var, &origin))
        .var_default("midtrans_server_key", SANDBOX_KEY)
}

/// The database test apps keep their state in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Database {
    /// Spin's embedded SQLite (the default).
    Sqlite,
    /// A throwaway PostgreSQL of the app's own (`database_url`).
    Postgres,
}

impl Database {
    /// From `STEPWISE_E2E_DATABASE`: `postgres`, or `sqlite` (also when unset).
    pub fn from_env() -> Database {
        match std::env::var("STEPWISE_E2E_DATABASE").as_deref() {
            Ok("postgres") => Database::Postgres,
            Ok("sqlite") | Ok("") | Err(_) => Database::Sqlite,
            Ok(other) => panic!("STEPWISE_E2E_DATABASE={other}: expected `postgres` or `sqlite`"),
        }
    }
}

/// `cfg` keeping its state in `pg` (when there is one), unless it names a database itself.
fn with_database(cfg: RunnerConfig, pg: Option<&crate::services::Postgres>) -> RunnerConfig {
    match pg {
        Some(pg) => cfg.var_default("database_url", &pg.url()).var_default("database_origin", &pg.origin()),
        None => cfg,
    }
}

/// A running app: Stepwise and the sandbox it calls, each a process of its own.
pub struct App {
    /// The runner serving Stepwise.
    pub runner: Runner,
    /// The sandbox app (shared with the app it was started beside, if any).
    pub sandbox: Arc<Runner>,
    /// The state-changing calls [`App::api`] made that succeeded (method,
    /// path): each must be in the audit trail when the app is dropped.
    changes: Mutex<Vec<(String, String)>>,
    /// The PostgreSQL it keeps its state in ([`Database::Postgres`]),
    /// shared with the apps started beside it.
    pub postgres: Option<Arc<crate::services::Postgres>>,
}

impl App {
    /// Starts the app with the default config.
    pub fn start() -> App {
        App::with(config())
    }

    /// Starts a sandbox, then Stepwise with `cfg` on a port fixed in
    /// advance (so the sandbox can notify its webhook) and every service
    /// `cfg` does not set pointed at the sandbox.
    pub fn with(cfg: RunnerConfig) -> App {
        App::with_database(cfg, Database::from_env())
    }

    /// [`App::with`] keeping its state in `database` whatever
    /// `STEPWISE_E2E_DATABASE` says (the benchmarks compare both).
    pub fn with_database(cfg: RunnerConfig, database: Database) -> App {
        let postgres = (database == Database::Postgres).then(|| Arc::new(crate::services::Postgres::start()));
        // The port is chosen before anything listens on it, so another
        // process may take it meanwhile: then both start again on another.
        let mut last = String::new();
        for _ in 0..3 {
            let port = cfg.fixed_port().unwrap_or_else(crate::free_port);
            let sandbox = Arc::new(sandbox_config(port).start());
            match with_database(beside_sandbox(cfg.clone().port(port), &sandbox.addr), postgres.as_deref()).try_start()
            {
                Ok(runner) => return App { runner, sandbox, changes: Mutex::default(), postgres },
                Err(e) if e.contains("Address already in use") && cfg.fixed_port().is_none() => last = e,
                Err(e) => panic!("runner did not start: {e}"),
            }
        }
        panic!("runner did not start: {last}")
    }

    /// An app made of a runner started by hand (e.g. a replica in a
    /// network namespace), the sandbox it calls and the PostgreSQL it keeps
    /// its state in.
    pub fn from_parts(runner: Runner, sandbox: Arc<Runner>, postgres: Option<Arc<crate::services::Postgres>>) -> App {
        App { runner, sandbox, changes: Mutex::default(), postgres }
    }

    /// Starts Stepwise with `cfg` calling `other`'s sandbox (e.g. a second
    /// runner on the same state).
    pub fn beside(cfg: RunnerConfig, other: &App) -> App {
        let runner = with_database(beside_sandbox(cfg, &other.sandbox.addr), other.postgres.as_deref()).start();
        App { runner, sandbox: other.sandbox.clone(), changes: Mutex::default(), postgres: other.postgres.clone() }
    }

    /// Restarts Stepwise with another config (on the same port and beside
    /// the same sandbox): see [`Runner::restart_with`].
    pub fn restart_with(&mut self, cfg: RunnerConfig) {
        let port = self.runner.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("addr has a port");
        self.runner
            .restart_with(with_database(beside_sandbox(cfg.port(port), &self.sandbox.addr), self.postgres.as_deref()));
    }

    /// The first column of the first row of `sql` as an integer, read
    /// from the app's database directly (SQLite's file, or PostgreSQL).
    pub fn scalar(&self, sql: &str) -> i64 {
        match &self.postgres {
            Some(pg) => pg.psql(sql).trim().parse().unwrap_or_else(|e| panic!("`{sql}`: not an integer ({e})")),
            None => self.runner.database().query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("`{sql}`: {e}")),
        }
    }

    /// The first column of every row of `sql` as integers, read from the
    /// app's database directly (SQLite's file, or PostgreSQL).
    pub fn column_i64(&self, sql: &str) -> Vec<i64> {
        match &self.postgres {
            Some(pg) => pg
                .psql(sql)
                .lines()
                .map(|l| l.trim().parse().unwrap_or_else(|e| panic!("`{sql}`: {l:?}: {e}")))
                .collect(),
            None => {
                let db = self.runner.database();
                let mut q = db.prepare(sql).unwrap_or_else(|e| panic!("`{sql}`: {e}"));
                let rows = q.query_map([], |r| r.get(0)).unwrap_or_else(|e| panic!("`{sql}`: {e}"));
                rows.map(|r| r.unwrap_or_else(|e| panic!("`{sql}`: {e}"))).collect()
            }
        }
    }

    /// Runs statements on the app's database directly (SQLite's file, or
    /// PostgreSQL), behind the app's back: to damage a row as a disk, a bug
    /// or a hand at the console could.
    pub fn execute(&self, sql: &str) {
        match &self.postgres {
            Some(pg) => {
                pg.psql(sql);
            }
            None => self.runner.database().execute_batch(sql).unwrap_or_else(|e| panic!("`{sql}`: {e}")),
        }
    }

    /// An API call with the bootstrap key ([`TOKEN`]); a state-changing one
    /// that succeeds is checked against the audit trail on drop.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let a = self.api_as(TOKEN, method, path, body);
        self.note_change(method, path, &a);
        a
    }

    /// A request with these headers (the caller's `authorization`, which must
    /// be [`TOKEN`]'s); checked against the audit trail on drop as [`App::api`] is.
    pub fn send_change(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Answer {
        let a = self.runner.send(method, path, headers, body);
        self.note_change(method, path, &a);
        a
    }

    fn note_change(&self, method: &str, path: &str, a: &Answer) {
        if method != "GET" && (200..300).contains(&a.status) {
            let path = path.split('?').next().unwrap_or(path).to_string();
            self.changes.lock().unwrap_or_else(|p| p.into_inner()).push((method.to_string(), path));
        }
    }

    /// An API call with the key `secret`.
    pub fn api_as(&self, secret: &str, method: &str, path: &str, body: Option<Value>) -> Answer {
        let auth = format!("Bearer {secret}");
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        let body = body.map(|b| b.to_string());
        self.runner.send(method, path, &headers, body.as_deref().map(str::as_bytes))
    }

    /// `POST /api/keys`, expecting 201: the key with its secret.
    pub fn create_key(&self, name: &str, scope: &str) -> Value {
        let a = self.api("POST", "/api/keys", Some(json!({ "name": name, "scope": scope })));
        assert_eq!(a.status, 201, "create key {name}: {}", a.body);
        a.json()
    }

    /// The whole audit trail, in `seq` order.
    pub fn audit_trail(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let a = self.api_as(TOKEN, "GET", &format!("/api/audit?after={after}&limit=1000"), None);
            assert_eq!(a.status, 200, "audit: {}", a.body);
            let page = a.json();
            out.extend(page["entries"].as_array().cloned().unwrap_or_default());
            match page["next_after"].as_i64() {
                Some(n) => after = n,
                None => return out,
            }
        }
    }

    /// Checks that every state-changing call [`App::api`] made that
    /// succeeded has an entry in the audit trail, by the bootstrap key, of
    /// its method and a route matching its path.
    pub fn assert_changes_audited(&self) {
        let changes = std::mem::take(&mut *self.changes.lock().unwrap_or_else(|p| p.into_inner()));
        if changes.is_empty() {
            return;
        }
        let trail = self.audit_trail();
        for (method, path) in changes {
            let found = trail.iter().any(|e| {
                e["method"] == method.as_str()
                    && e["key_id"] == "api_token"
                    && e["route"].as_str().is_some_and(|route| route_matches(route, &path))
            });
            assert!(found, "{method} {path} succeeded but is not in the audit trail:\n{trail:#?}");
        }
    }

    /// `POST /api/workers`, expecting 202.
    pub fn start_workers(&self, ids: &[&str], policy: Value) -> Value {
        let a = self.api("POST", "/api/workers", Some(json!({ "binding_ids": ids, "policy": policy })));
        assert_eq!(a.status, 202, "start: {}", a.body);
        a.json()
    }

    /// `GET /api/workers/{id}`.
    pub fn worker(&self, id: &str) -> Value {
        let a = self.api("GET", &format!("/api/workers/{id}"), None);
        assert_eq!(a.status, 200, "worker {id}: {}", a.body);
        a.json()
    }

    /// Polls the worker until `pred` holds (30 s at most).
    pub fn wait_worker(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        poll_until(Duration::from_secs(30), &format!("worker {id}: {what}"), || {
            let w = self.worker(id);
            pred(&w).then_some(w)
        })
    }

    /// Waits until the worker is stopped.
    pub fn wait_stopped(&self, id: &str) -> Value {
        self.wait_worker(id, "stopped", |w| w["state"] == "stopped")
    }

    /// Scripts the sandbox for one binding.
    pub fn script(&self, binding: &str, script: Value) {
        let a =
            self.sandbox.send("PUT", &format!("/sandbox/bindings/{binding}"), &[], Some(script.to_string().as_bytes()));
        assert_eq!(a.status, 200, "sandbox script: {}", a.body);
    }

    /// The calls the sandbox received for a binding, oldest first.
    pub fn calls(&self, binding: &str) -> Vec<Value> {
        let a = self.sandbox.get(&format!("/sandbox/calls?binding_id={binding}&limit=100000"));
        assert_eq!(a.status, 200, "sandbox calls: {}", a.body);
        a.json()["calls"].as_array().cloned().unwrap_or_default()
    }

    /// The sandbox's calls of one operation for a binding.
    pub fn calls_of(&self, binding: &str, op: &str) -> Vec<Value> {
        self.calls(binding).into_iter().filter(|c| c["op"] == op).collect()
    }

    /// The sandbox's statistics.
    pub fn sandbox_stats(&self) -> Value {
        self.sandbox.get("/sandbox/stats").json()
    }

    /// How many ticks have run so far (from the tick's log line).
    pub fn ticks(&self) -> usize {
        self.runner.logs().matches("\"event\":\"tick\"").count()
    }

    /// Waits until `n` more ticks have run: time for the tick to have acted.
    pub fn wait_ticks(&self, n: usize) {
        let start = self.ticks();
        poll_until(Duration::from_secs(30), &format!("{n} more ticks"), || (self.ticks() >= start + n).then_some(()));
    }

    /// The request log of a binding, newest first.
    pub fn request_log(&self, binding: &str) -> Vec<Value> {
        let a = self.api("GET", &format!("/api/requests?binding_id={binding}&limit=1000"), None);
        assert_eq!(a.status, 200, "requests: {}", a.body);
        a.json()["requests"].as_array().cloned().unwrap_or_default()
    }
}

/// Whether a router route (`/api/workers/:binding_id/:action`) matches a path.
pub fn route_matches(route: &str, path: &str) -> bool {
    let (r, p): (Vec<&str>, Vec<&str>) = (route.split('/').collect(), path.split('/').collect());
    r.len() == p.len() && r.iter().zip(&p).all(|(r, p)| r.starts_with(':') || r == p)
}

impl Drop for App {
    /// Every state-changing call the test made is in the audit trail (when
    /// the test has not failed already and the app still answers).
    fn drop(&mut self) {
        if std::thread::panicking() || !self.runner.is_running() {
            return;
        }
        self.assert_changes_audited();
    }
}
