//! The end-to-end harness: starts the real `stepwise` runner (or real Spin,
//! `spin up`, see [`RunnerKind`] and [`spin`]) with the real components on a
//! free port and a temporary state dir, talks HTTP to it, stops it
//! (gracefully or with SIGKILL) and restarts it on the same state.
//!
//! Everything is built once beforehand by `scripts/test` (or `scripts/build`);
//! the harness only checks that the artifacts are there.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod app;
pub mod bench;
pub mod dialects;
pub mod ledger;
pub mod netns;
pub mod plain_services;
pub mod plain_upstream;
pub mod receiver;
pub mod scenarios;
pub mod services;
pub mod spin;
pub mod upstream;

pub use serde_json::{json, Value};

/// The repository root.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The default `spin.toml` gives application variable `name`.
pub fn manifest_default(name: &str) -> Option<String> {
    let text = std::fs::read_to_string(project_root().join("spin.toml")).ok()?;
    let doc: toml::Value = toml::from_str(&text).ok()?;
    doc.get("variables")?.get(name)?.get("default")?.as_str().map(String::from)
}

/// The release build of the runner, `target/release/stepwise`.
pub fn runner_binary() -> PathBuf {
    project_root().join("target/release/stepwise")
}

/// A built component.
pub fn wasm(name: &str) -> PathBuf {
    project_root().join("target/wasm32-wasip2/release").join(format!("{name}.wasm"))
}

fn require_built(path: &Path) {
    assert!(
        path.exists(),
        "{} is missing: build first with scripts/build (scripts/test does it for you)",
        path.display()
    );
}

/// Polls `f` until it returns `Some`, failing the test after `deadline`.
pub fn poll_until<T>(deadline: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Which host serves the app under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunnerKind {
    /// `stepwise up`, the project's own runner (the default).
    Stepwise,
    /// `spin up`: real Spin with the spin-trigger-cron plugin (see [`spin`]).
    Spin,
}

impl RunnerKind {
    /// From `STEPWISE_E2E_RUNNER`: `spin`, or `stepwise` (also when unset).
    pub fn from_env() -> RunnerKind {
        match std::env::var("STEPWISE_E2E_RUNNER").as_deref() {
            Ok("spin") => RunnerKind::Spin,
            Ok("stepwise") | Ok("") | Err(_) => RunnerKind::Stepwise,
            Ok(other) => panic!("STEPWISE_E2E_RUNNER={other}: expected `spin` or `stepwise`"),
        }
    }
}

/// An environment variable of the runner process.
#[derive(Clone)]
enum EnvValue {
    Plain(String),
    /// `{addr}` is replaced by the `host:port` the app listens on.
    WithAddr(String),
}

/// How to start a runner.
#[derive(Clone)]
pub struct RunnerConfig {
    manifest: PathBuf,
    kind: RunnerKind,
    env: Vec<(String, EnvValue)>,
    args: Vec<String>,
    tick_ms: Option<u64>,
    state_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    runtime_config: Option<String>,
    port: Option<u16>,
    cron_expression: Option<String>,
    listen_host: Option<String>,
    netns: Option<String>,
}

impl RunnerConfig {
    /// A runner for the manifest at `manifest` (relative to the repository
    /// root), of the kind `STEPWISE_E2E_RUNNER` names ([`RunnerKind::from_env`]).
    pub fn new(manifest: &str) -> Self {
        Self {
            manifest: project_root().join(manifest),
            kind: RunnerKind::from_env(),
            env: Vec::new(),
            args: Vec::new(),
            tick_ms: None,
            state_dir: None,
            cache_dir: None,
            runtime_config: None,
            port: None,
            cron_expression: None,
            listen_host: None,
            netns: None,
        }
    }

    /// Runs it on `kind` (`stepwise up` or `spin up`).
    pub fn on(mut self, kind: RunnerKind) -> Self {
        self.kind = kind;
        self
    }

    /// What it runs on.
    pub fn kind(&self) -> RunnerKind {
        self.kind
    }

    /// Sets a Spin variable through its `SPIN_VARIABLE_<NAME>` override.
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.env.push((spin_variable(name), EnvValue::Plain(value.to_string())));
        self
    }

    /// Sets a Spin variable unless it is set already (a default that any
    /// [`Self::var`] wins over, before or after).
    pub fn var_default(mut self, name: &str, value: &str) -> Self {
        let key = spin_variable(name);
        if !self.env.iter().any(|(k, _)| *k == key) {
            self.env.insert(0, (key, EnvValue::Plain(value.to_string())));
        }
        self
    }

    /// The port it will listen on, if fixed ([`Self::port`]).
    pub fn fixed_port(&self) -> Option<u16> {
        self.port
    }

    /// Sets a Spin variable to `template` with `{addr}` replaced by the
    /// `host:port` the app listens on (a free port is chosen before the start).
    pub fn var_with_addr(mut self, name: &str, template: &str) -> Self {
        self.env.push((spin_variable(name), EnvValue::WithAddr(template.to_string())));
        self
    }

    /// Sets an environment variable of the runner process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), EnvValue::Plain(value.to_string())));
        self
    }

    /// Adds a command-line argument to `stepwise up` (or `spin up`).
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    /// Fires cron components every `ms` (the last call wins). The runner's
    /// `--tick-ms`: Spin has no such thing, and a Spin start refuses it.
    pub fn tick_ms(mut self, ms: u64) -> Self {
        self.tick_ms = Some(ms);
        self
    }

    /// Fires cron components on their own schedule (what Spin does), not every N ms.
    pub fn cron_schedule(mut self) -> Self {
        self.tick_ms = None;
        self
    }

    /// Runs every cron component on `expr` (6 fields, seconds first) instead
    /// of the manifest's schedule: the runner starts from a copy of the
    /// manifest, written into its state dir, with every `cron_expression`
    /// replaced and component sources made absolute. With a schedule that
    /// does not come due while a test runs (`0 0 0 29 2 *`) and no
    /// `--tick-ms`, the tick never fires. Implies [`Self::cron_schedule`].
    pub fn cron_expression(mut self, expr: &str) -> Self {
        self.cron_expression = Some(expr.to_string());
        self.tick_ms = None;
        self
    }

    /// The manifest to start from: the configured one, or (with
    /// [`Self::cron_expression`]) the rewritten copy in `state_dir`.
    fn manifest_for(&self, state_dir: &Path) -> Result<PathBuf, String> {
        let Some(expr) = &self.cron_expression else { return Ok(self.manifest.clone()) };
        let text = std::fs::read_to_string(&self.manifest).map_err(|e| format!("{}: {e}", self.manifest.display()))?;
        let mut doc: toml::Value = toml::from_str(&text).map_err(|e| format!("{}: {e}", self.manifest.display()))?;
        let base = self.manifest.parent().unwrap_or(Path::new("."));
        let crons = doc.get_mut("trigger").and_then(|t| t.get_mut("cron")).and_then(|c| c.as_array_mut());
        let crons = crons.ok_or_else(|| format!("{} has no [[trigger.cron]]", self.manifest.display()))?;
        for t in crons {
            t.as_table_mut()
                .ok_or("a [[trigger.cron]] that is not a table")?
                .insert("cron_expression".into(), toml::Value::String(expr.clone()));
        }
        if let Some(components) = doc.get_mut("component").and_then(|c| c.as_table_mut()) {
            for (_, c) in components.iter_mut() {
                if let Some(src) = c.get_mut("source") {
                    if let Some(abs) = src.as_str().map(|rel| base.join(rel).to_string_lossy().into_owned()) {
                        *src = toml::Value::String(abs);
                    }
                }
            }
        }
        let path = state_dir.join("manifest.toml");
        let out = toml::to_string(&doc).map_err(|e| format!("cannot write the manifest: {e}"))?;
        std::fs::write(&path, out).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// A runtime config, written into the runner's state dir (so relative
    /// paths in it stay inside that dir) and passed with `--runtime-config`
    /// (Spin: `--runtime-config-file`).
    pub fn runtime_config(mut self, toml: &str) -> Self {
        self.runtime_config = Some(toml.to_string());
        self
    }

    /// Caches compiled code in `dir` instead of the tests' shared cache
    /// (the runner's `--cache-dir`; Spin keeps its own wasmtime cache).
    pub fn cache_dir(mut self, dir: &Path) -> Self {
        self.cache_dir = Some(dir.to_path_buf());
        self
    }

    /// Uses an existing state dir (to share it between runners).
    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.state_dir = Some(dir.to_path_buf());
        self
    }

    /// Listens on `host` instead of 127.0.0.1 (the runner only).
    pub fn listen_host(mut self, host: &str) -> Self {
        self.listen_host = Some(host.to_string());
        self
    }

    /// Runs in network namespace `name` (`ip netns exec`; the runner only;
    /// see [`netns::Host`]).
    pub fn netns(mut self, name: &str) -> Self {
        self.netns = Some(name.to_string());
        self
    }

    /// Listens on this port of 127.0.0.1 instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Starts the runner and waits until it serves.
    pub fn start(&self) -> Runner {
        match self.try_start() {
            Ok(r) => r,
            Err(e) => panic!("runner did not start: {e}"),
        }
    }

    /// Starts the runner; `Err` carries its stderr if it exited instead of serving.
    pub fn try_start(&self) -> Result<Runner, String> {
        match self.kind {
            RunnerKind::Stepwise => self.try_start_stepwise(),
            RunnerKind::Spin => spin::start(self),
        }
    }

    fn needs_addr(&self) -> bool {
        self.env.iter().any(|(_, v)| matches!(v, EnvValue::WithAddr(_)))
    }

    /// The environment with `{addr}` resolved.
    fn resolved_env(&self, addr: &str) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|(k, v)| match v {
                EnvValue::Plain(s) => (k.clone(), s.clone()),
                EnvValue::WithAddr(t) => (k.clone(), t.replace("{addr}", addr)),
            })
            .collect()
    }

    /// The state dir (a new temporary one unless given) and its owner.
    fn make_state_dir(&self) -> (PathBuf, Option<tempfile::TempDir>) {
        match &self.state_dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::tempdir().expect("temp dir");
                (t.path().to_path_buf(), Some(t))
            }
        }
    }

    /// Writes the runtime config, if any, into the state dir.
    fn write_runtime_config(&self, state_dir: &Path) -> Result<Option<PathBuf>, String> {
        let Some(text) = &self.runtime_config else { return Ok(None) };
        let path = state_dir.join("runtime-config.toml");
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Some(path))
    }

    fn try_start_stepwise(&self) -> Result<Runner, String> {
        require_built(&runner_binary());
        let (state_dir, owned) = self.make_state_dir();
        let manifest = self.manifest_for(&state_dir)?;
        let runtime_config_args = match self.write_runtime_config(&state_dir)? {
            Some(path) => vec!["--runtime-config".to_string(), path.to_string_lossy().into_owned()],
            None => Vec::new(),
        };
        let port = match self.port {
            Some(p) => p,
            None if self.needs_addr() => free_port(),
            None => 0,
        };
        let host = self.listen_host.as_deref().unwrap_or("127.0.0.1");
        let env = self.resolved_env(&format!("{host}:{port}"));
        let log_dir = tempfile::tempdir().expect("temp dir");
        let log_path = log_dir.path().join("stderr.log");
        let log = File::create(&log_path).expect("log file");
        let cache = self.cache_dir.clone().unwrap_or_else(|| project_root().join("target/e2e-cache"));
        let mut cmd = match &self.netns {
            Some(ns) => {
                // `ip netns exec` runs the runner in its place (same pid).
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(runner_binary());
                c
            }
            None => Command::new(runner_binary()),
        };
        cmd.current_dir(project_root())
            .arg("up")
            .arg("--manifest")
            .arg(&manifest)
            .arg("--listen")
            .arg(format!("{host}:{port}"))
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--cache-dir")
            .arg(&cache)
            .args(&self.args)
            .args(&runtime_config_args)
            .args(self.tick_ms.map(|ms| vec!["--tick-ms".to_string(), ms.to_string()]).unwrap_or_default())
            .env("STEPWISE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| format!("cannot spawn runner: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("Serving http://") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(50)) {
                return Ok(Runner {
                    child: Some(child),
                    kind: RunnerKind::Stepwise,
                    addr,
                    state_dir,
                    _owned_state: owned,
                    log_path,
                    _log_dir: log_dir,
                    config: Some(self.clone()),
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                let _ = File::open(&log_path).and_then(|mut f| f.read_to_string(&mut err));
                return Err(format!("runner exited with {status} before serving:\n{err}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("runner did not print its address within 120 s".into());
            }
        }
    }
}

fn spin_variable(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

/// A port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// A running `stepwise up` (or `spin up`).
pub struct Runner {
    child: Option<Child>,
    kind: RunnerKind,
    /// `host:port` it listens on.
    pub addr: String,
    /// Its `--state-dir`: the one the caller gave, or a temporary one removed with the runner.
    pub state_dir: PathBuf,
    _owned_state: Option<tempfile::TempDir>,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
    /// How to start it again (`None`: started from a command line, not restartable).
    config: Option<RunnerConfig>,
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// Body as text.
    pub body: String,
    /// Response headers (lower-case names).
    pub headers: Vec<(String, String)>,
}

impl Answer {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build()
}

/// Sends one request to `url`.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<Answer, String> {
    let mut req = agent().request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| resp.header(&n).map(|v| (n.to_ascii_lowercase(), v.to_string())))
        .collect();
    let mut body = String::new();
    resp.into_reader().read_to_string(&mut body).map_err(|e| e.to_string())?;
    Ok(Answer { status, body, headers })
}

impl Runner {
    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a request; panics if no answer came.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Answer {
        request(method, &self.url(path), headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `GET path` with no extra headers and no body.
    pub fn get(&self, path: &str) -> Answer {
        self.send("GET", path, &[], None)
    }

    /// A request with a JSON body.
    pub fn json(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &Value) -> Answer {
        let mut h = headers.to_vec();
        h.push(("content-type", "application/json"));
        self.send(method, path, &h, Some(body.to_string().as_bytes()))
    }

    /// The runner's stderr so far.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        let _ = File::open(&self.log_path).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// The OS process id (Spin: of `spin up`, the parent of its trigger processes).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// What it runs on.
    pub fn kind(&self) -> RunnerKind {
        self.kind
    }

    /// Whether its process is still there (not stopped or killed).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops it and waits (bounded) for the exit: SIGTERM for the runner;
    /// SIGINT for Spin (what Ctrl-C sends: the cron plugin handles SIGINT,
    /// a SIGTERM kills it), whose trigger processes must all be gone.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("runner is running");
        let tree = match self.kind {
            RunnerKind::Stepwise => Vec::new(),
            RunnerKind::Spin => spin::process_tree(child.id()),
        };
        let signal = if self.kind == RunnerKind::Spin { libc::SIGINT } else { libc::SIGTERM };
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
        let status = poll_until(Duration::from_secs(60), "the runner to exit after SIGTERM/SIGINT", || {
            child.try_wait().ok().flatten()
        });
        poll_until(Duration::from_secs(30), "Spin's trigger processes to exit", || {
            tree.iter().all(|p| spin::is_gone(*p)).then_some(())
        });
        status
    }

    /// SIGKILL: no shutdown at all, as in a crash. On Spin every process of
    /// it (`spin up`, its HTTP trigger, the cron trigger and its plugin)
    /// dies at once; this returns once they are all gone (the port is free).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            match self.kind {
                RunnerKind::Stepwise => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                RunnerKind::Spin => spin::kill_tree(&mut child),
            }
        }
    }

    /// Starts a new runner process on the same state dir (on the same port
    /// when one was fixed, as the sandbox's `stepwise_url` points there, and
    /// always on Spin; else on a new port).
    pub fn restart(&mut self) {
        self.kill();
        let mut cfg = self
            .config
            .clone()
            .expect("this runner was started from a command line: no restart")
            .state_dir(&self.state_dir);
        if self.kind == RunnerKind::Spin {
            let port = self.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("addr has a port");
            cfg = cfg.port(port);
        }
        let mut next = cfg.start();
        self.child = next.child.take();
        self.addr = next.addr.clone();
        self.log_path = next.log_path.clone();
        std::mem::swap(&mut self._log_dir, &mut next._log_dir);
    }

    /// [`Self::restart`] with another config (e.g. one whose tick fires,
    /// after a start with [`RunnerConfig::cron_expression`] kept it from
    /// firing): later restarts use it too.
    pub fn restart_with(&mut self, cfg: RunnerConfig) {
        assert!(self.config.is_some(), "this runner was started from a command line: no restart");
        self.config = Some(cfg);
        self.restart();
    }

    /// A field of the runner's `/proc/PID/status` in kB (`VmRSS`, `VmHWM`).
    pub fn proc_status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid()))
    }

    /// The runner's own counters (`/.well-known/stepwise/metrics`), as text.
    pub fn runner_metrics(&self) -> String {
        let a = self.get("/.well-known/stepwise/metrics");
        assert_eq!(a.status, 200, "runner metrics: {}", a.body);
        a.body
    }

    /// One sample of the runner's counters, by its name and labels as
    /// written (`stepwise_http_refused_total{reason="deadline"}`).
    pub fn runner_metric(&self, sample: &str) -> u64 {
        let text = self.runner_metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample} in:\n{text}"))
    }

    /// Opens the app's default SQLite database directly (read-only checks).
    pub fn database(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(self.state_dir.join("sqlite_db.db")).expect("open sqlite_db.db");
        c.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
        c
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `2026-12-01T11:31:43.902850Z` (RFC 3339) → µs since the epoch.
pub fn timestamp_micros(ts: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(ts).ok().map(|t| t.timestamp_micros())
}

/// Now, µs since the epoch (the wall clock the runner's timestamps use).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// A process's resident memory now and at its peak (`VmRSS`, `VmHWM`), KiB.
pub fn process_rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A process's CPU time (user + system), in seconds.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 14th, stime the 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// A process's minor page faults so far (every thread's).
pub fn process_minor_faults(pid: u32) -> u64 {
    proc_stat_fields(pid).get(7).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// [`process_cpu_seconds`] plus the CPU of the children it has waited for.
pub fn process_cpu_seconds_with_children(pid: u32) -> f64 {
    let f = proc_stat_fields(pid);
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12) + ticks(13) + ticks(14)) / hz
}

/// The parent of process `pid`, if it is still there.
pub fn process_parent(pid: u32) -> Option<u32> {
    proc_stat_fields(pid).get(1).and_then(|p| p.parse().ok())
}

/// The fields of /proc/<pid>/stat after the command name (state, ppid, ...).
fn proc_stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("").split_whitespace().map(String::from).collect()
}

/// Starts `python3 -u -c <script> <args>` (a test server written apart from
/// Stepwise) whose first line on stdout is `{"port": N}`; returns it and the port.
pub fn spawn_python_server(what: &str, script: &str, args: &[&str]) -> (Child, u16) {
    let mut child = Command::new("python3")
        .args(["-u", "-c", script])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 runs {what}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap_or_else(|e| panic!("{what} prints its port: {e}"));
    let port = serde_json::from_str::<Value>(&first)
        .ok()
        .and_then(|v| v["port"].as_u64())
        .unwrap_or_else(|| panic!("{what}: not a port line: {first}"));
    (child, port as u16)
}

/// A running `bench-upstream` (tests/bench/upstream.rs, built beside the
/// benchmark binaries): the benchmarks' fast upstream and saga services, in
/// its own process over TCP; killed on drop.
pub struct BenchUpstream {
    child: Child,
    /// Its port (127.0.0.1).
    pub port: u16,
}

impl BenchUpstream {
    /// Starts it beside the running executable, answering after `latency_ms`.
    pub fn start(latency_ms: u64) -> Self {
        let exe = std::env::current_exe().expect("own path").with_file_name("bench-upstream");
        let mut child = Command::new(&exe)
            .args(["--latency-ms", &latency_ms.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("bench-upstream prints its port");
        let port = line.trim().strip_prefix("listening ").and_then(|p| p.parse().ok()).expect("listening <port>");
        BenchUpstream { child, port }
    }
}

impl Drop for BenchUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
