//! The end-to-end harness: starts the real `stepwise` runner with the real
//! components on a free port and a temporary state dir, talks HTTP to it,
//! stops it (gracefully or with SIGKILL) and restarts it on the same state.
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
pub mod plain_upstream;
pub mod upstream;

pub use serde_json::{json, Value};

/// The repository root.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The runner binary.
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

/// How to start a runner.
#[derive(Clone)]
pub struct RunnerConfig {
    manifest: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
    tick_ms: Option<u64>,
    state_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    runtime_config: Option<String>,
}

impl RunnerConfig {
    /// A runner for the manifest at `manifest` (relative to the repository root).
    pub fn new(manifest: &str) -> Self {
        Self { manifest: project_root().join(manifest), env: Vec::new(), args: Vec::new(), tick_ms: None, state_dir: None, cache_dir: None, runtime_config: None }
    }

    /// Sets a Spin variable through its `SPIN_VARIABLE_<NAME>` override.
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.env.push((format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()), value.to_string()));
        self
    }

    /// Sets an environment variable of the runner process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds a command-line argument to `stepwise up`.
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    /// Fires cron components every `ms` (the last call wins).
    pub fn tick_ms(mut self, ms: u64) -> Self {
        self.tick_ms = Some(ms);
        self
    }

    /// Fires cron components on their own schedule (what Spin does), not every N ms.
    pub fn cron_schedule(mut self) -> Self {
        self.tick_ms = None;
        self
    }

    /// A runtime config, written into the runner's state dir (so relative
    /// paths in it stay inside that dir) and passed with `--runtime-config`.
    pub fn runtime_config(mut self, toml: &str) -> Self {
        self.runtime_config = Some(toml.to_string());
        self
    }

    /// Caches compiled code in `dir` instead of the tests' shared cache.
    pub fn cache_dir(mut self, dir: &Path) -> Self {
        self.cache_dir = Some(dir.to_path_buf());
        self
    }

    /// Uses an existing state dir (to share it between runners).
    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.state_dir = Some(dir.to_path_buf());
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
        require_built(&runner_binary());
        let (state_dir, owned) = match &self.state_dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::tempdir().expect("temp dir");
                (t.path().to_path_buf(), Some(t))
            }
        };
        let mut runtime_config_args = Vec::new();
        if let Some(text) = &self.runtime_config {
            let path = state_dir.join("runtime-config.toml");
            std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            runtime_config_args = vec!["--runtime-config".into(), path.to_string_lossy().into_owned()];
        }
        let log_dir = tempfile::tempdir().expect("temp dir");
        let log_path = log_dir.path().join("stderr.log");
        let log = File::create(&log_path).expect("log file");
        let cache = self.cache_dir.clone().unwrap_or_else(|| project_root().join("target/e2e-cache"));
        let mut cmd = Command::new(runner_binary());
        cmd.current_dir(project_root())
            .arg("up")
            .arg("--manifest")
            .arg(&self.manifest)
            .arg("--listen")
            .arg("127.0.0.1:0")
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
        for (k, v) in &self.env {
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
                    addr,
                    state_dir,
                    _owned_state: owned,
                    log_path,
                    _log_dir: log_dir,
                    config: self.clone(),
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

/// A running `stepwise up`.
pub struct Runner {
    child: Option<Child>,
    /// `host:port` it listens on.
    pub addr: String,
    /// Its state dir.
    pub state_dir: PathBuf,
    _owned_state: Option<tempfile::TempDir>,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
    config: RunnerConfig,
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
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

    /// GET.
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

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("runner is running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        poll_until(Duration::from_secs(60), "the runner to exit after SIGTERM", || child.try_wait().ok().flatten())
    }

    /// SIGKILL: no shutdown at all, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new runner process on the same state dir (a new port).
    pub fn restart(&mut self) {
        self.kill();
        let cfg = self.config.clone().state_dir(&self.state_dir);
        let mut next = cfg.start();
        self.child = next.child.take();
        self.addr = next.addr.clone();
        self.log_path = next.log_path.clone();
        std::mem::swap(&mut self._log_dir, &mut next._log_dir);
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
