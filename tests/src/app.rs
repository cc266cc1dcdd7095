//! The Stepwise app (`spin.toml`) under test: the control API with its token,
//! the sandbox upstream's script and records, and waits on what the tick does.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{poll_until, Answer, Runner, RunnerConfig, RunnerKind};

/// The API token every test app uses.
pub const TOKEN: &str = "test-token-0123456789";

/// How often test apps tick on the runner.
pub const TICK_MS: u64 = 50;

/// The runtime config tests use: the sandbox's database inside the runner's
/// own (temporary) state dir, so parallel tests never share it.
pub const RUNTIME_CONFIG: &str = "[sqlite_database.sandbox]\ntype = \"spin\"\npath = \"sandbox.db\"\n";

/// How long a test app's tick keeps stepping (the default is 900 ms for the
/// 1 s cron; with fast ticks a shorter budget keeps `wait_ticks` short).
pub const TICK_BUDGET_MS: &str = "200";

/// The app's runner config on the host `STEPWISE_E2E_RUNNER` names (the
/// runner by default): see [`config_on`].
pub fn config() -> RunnerConfig {
    config_on(RunnerKind::from_env())
}

/// The app's config on `kind`: `spin.toml`, the sandbox's database in the
/// state dir, the test token; on the runner fast ticks (`--tick-ms`, a short
/// budget). On Spin the cron plugin fires the tick every second and it steps
/// for the default `tick_budget_ms` (900 ms); and as the plugin gives cron
/// components no origin for self requests (`http://self.alt` fails with
/// `HttpRequestUriInvalid`), `upstream_url` is the app's own listen address,
/// where the sandbox answers (README, "Running on Spin").
pub fn config_on(kind: RunnerKind) -> RunnerConfig {
    let cfg = RunnerConfig::new("spin.toml").on(kind).runtime_config(RUNTIME_CONFIG).var("api_token", TOKEN);
    match kind {
        RunnerKind::Stepwise => cfg.var("tick_budget_ms", TICK_BUDGET_MS).tick_ms(TICK_MS),
        // On Spin the tick cannot call the app itself through http://self.alt
        // (README, "Running on Spin"): every outside origin is the app's address.
        RunnerKind::Spin => ["upstream_url", "users_url", "products_url", "payment_url", "payment_api_url", "wallet_url", "risk_url", "betting_url"]
            .into_iter()
            .fold(cfg, |cfg, var| cfg.var_with_addr(var, "http://{addr}")),
    }
}

/// A running app.
pub struct App {
    /// The runner serving it.
    pub runner: Runner,
}

impl App {
    /// Starts the app with the default config.
    pub fn start() -> App {
        App { runner: config().start() }
    }

    /// Starts the app with a customised config.
    pub fn with(cfg: RunnerConfig) -> App {
        App { runner: cfg.start() }
    }

    /// An authenticated API call.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let auth = format!("Bearer {TOKEN}");
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        let body = body.map(|b| b.to_string());
        self.runner.send(method, path, &headers, body.as_deref().map(str::as_bytes))
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
        let a = self.runner.send("PUT", &format!("/sandbox/bindings/{binding}"), &[], Some(script.to_string().as_bytes()));
        assert_eq!(a.status, 200, "sandbox script: {}", a.body);
    }

    /// The calls the sandbox received for a binding, oldest first.
    pub fn calls(&self, binding: &str) -> Vec<Value> {
        let a = self.runner.get(&format!("/sandbox/calls?binding_id={binding}&limit=100000"));
        assert_eq!(a.status, 200, "sandbox calls: {}", a.body);
        a.json()["calls"].as_array().cloned().unwrap_or_default()
    }

    /// The sandbox's calls of one operation for a binding.
    pub fn calls_of(&self, binding: &str, op: &str) -> Vec<Value> {
        self.calls(binding).into_iter().filter(|c| c["op"] == op).collect()
    }

    /// The sandbox's statistics.
    pub fn sandbox_stats(&self) -> Value {
        self.runner.get("/sandbox/stats").json()
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
