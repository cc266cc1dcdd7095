//! Throwaway PostgreSQL and Redis servers for the runner's service tests:
//! each starts its own server on a free port of 127.0.0.1 in a temporary
//! directory and stops it (and removes the directory) on drop. `scripts/test`
//! installs Debian's `postgresql` and `redis-server` (`ensure_services`).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::{free_port, poll_until};

/// The newest PostgreSQL's `bin` dir (`/usr/lib/postgresql/<version>/bin` with an `initdb`).
pub fn postgres_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!("no /usr/lib/postgresql/*/bin/initdb: install Debian's postgresql (scripts/test does it)"),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (initdb refuses root).
fn pg_tool(bin: &Path, tool: &str, args: &[&str]) -> Output {
    let exe = bin.join(tool);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Starts the cluster whose data is in `dir/data` on `port` of `listen`
/// (comma-separated addresses).
fn pg_ctl_start(bin: &Path, dir: &Path, listen: &str, port: u16) -> Result<(), String> {
    let log = dir.join("log").to_string_lossy().into_owned();
    let data = dir.join("data").to_string_lossy().into_owned();
    let mut opts = format!(
        "-k {} -c listen_addresses={listen} -p {port} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
        dir.display()
    );
    if std::env::var_os(STATEMENTS_ENV).is_some() {
        opts.push_str(" -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_utility=on");
    }
    let o = pg_tool(bin, "pg_ctl", &["-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "60", "start"]);
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("{}\n{}", text(&o), std::fs::read_to_string(&log).unwrap_or_default()))
    }
}

/// When set, throwaway servers count their statements
/// (`pg_stat_statements`, for [`Postgres::statements`]): the benchmarks'
/// round trips. Off for the tests.
pub const STATEMENTS_ENV: &str = "STEPWISE_E2E_PG_STATEMENTS";

/// A PostgreSQL cluster of its own (trust authentication, user `postgres`).
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// The addresses it listens on (127.0.0.1 first).
    listen: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Postgres {
    /// initdb and start on a free port of 127.0.0.1 (tried again on another
    /// port if that one was taken meanwhile).
    pub fn start() -> Postgres {
        Postgres::start_listening(&[])
    }

    /// [`Postgres::start`], listening on `extra` addresses of this host too
    /// (e.g. the host's end of a network namespace's veth pair), which are
    /// let in without a password as 127.0.0.1 is (`samenet`).
    pub fn start_listening(extra: &[&str]) -> Postgres {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        if is_root() {
            let o = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).output().expect("chown");
            assert!(o.status.success(), "chown: {}", text(&o));
        }
        let data = dir.path().join("data");
        let data_s = data.to_string_lossy().into_owned();
        let o = pg_tool(&bin, "initdb", &["-D", &data_s, "-A", "trust", "-U", "postgres", "--no-sync"]);
        assert!(o.status.success(), "initdb: {}", text(&o));
        let listen = std::iter::once("127.0.0.1").chain(extra.iter().copied()).collect::<Vec<_>>().join(",");
        if !extra.is_empty() {
            let hba = data.join("pg_hba.conf");
            let mut f = std::fs::OpenOptions::new().append(true).open(&hba).expect("pg_hba.conf");
            writeln!(f, "host all all samenet trust").expect("pg_hba.conf");
        }
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            match pg_ctl_start(&bin, dir.path(), &listen, port) {
                Ok(()) => return Postgres { bin, dir, listen, port },
                Err(e) => last = e,
            }
        }
        panic!("PostgreSQL did not start: {last}");
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_string_lossy().into_owned()
    }

    /// Stops the server (an outage): `fast`, which ends every session at
    /// once but keeps what was committed (an `immediate` stop is a crash,
    /// which loses commits here, as the throwaway server runs with
    /// `synchronous_commit=off`). [`Postgres::restart`] brings it back.
    pub fn stop(&self) {
        let o = pg_tool(&self.bin, "pg_ctl", &["-D", &self.data(), "stop", "-m", "fast", "-w"]);
        assert!(o.status.success(), "pg_ctl stop: {}", text(&o));
    }

    /// Starts it again on the same port, with the same data.
    pub fn restart(&self) {
        pg_ctl_start(&self.bin, self.dir.path(), &self.listen, self.port)
            .unwrap_or_else(|e| panic!("PostgreSQL did not start again: {e}"));
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", self.port)
    }

    /// `postgres://127.0.0.1:PORT` (for `allowed_outbound_hosts`).
    pub fn origin(&self) -> String {
        format!("postgres://127.0.0.1:{}", self.port)
    }

    /// [`Postgres::url`] at another of its addresses ([`Postgres::start_listening`]).
    pub fn url_at(&self, host: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?sslmode=disable", self.port)
    }

    /// [`Postgres::origin`] at another of its addresses.
    pub fn origin_at(&self, host: &str) -> String {
        format!("postgres://{host}:{}", self.port)
    }

    /// Statements the server has run so far, every kind (`BEGIN`, `COMMIT`
    /// and savepoints too), when started with [`STATEMENTS_ENV`] set (else 0).
    pub fn statements(&self) -> u64 {
        if std::env::var_os(STATEMENTS_ENV).is_none() {
            return 0;
        }
        self.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        let n = self.psql("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements");
        n.trim().parse::<f64>().map(|n| n as u64).unwrap_or_else(|e| panic!("pg_stat_statements: {n:?}: {e}"))
    }

    /// The `n` statements run most often so far, one a line: calls, total
    /// execution ms, the statement's start (needs [`STATEMENTS_ENV`]).
    pub fn top_statements(&self, n: u32) -> String {
        self.psql(&format!(
            "SELECT calls, round(total_exec_time::numeric, 1), left(regexp_replace(query, '\\s+', ' ', 'g'), 150) FROM pg_stat_statements ORDER BY calls DESC LIMIT {n}"
        ))
    }

    /// CPU-seconds the server has used so far: the postmaster, the sessions
    /// that ended (which it waited for) and those still open.
    pub fn cpu_seconds(&self) -> f64 {
        let pid: u32 = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
            .expect("postmaster.pid");
        let children: f64 = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            .filter(|p| crate::process_parent(*p) == Some(pid))
            .map(crate::process_cpu_seconds)
            .sum();
        crate::process_cpu_seconds_with_children(pid) + children
    }

    /// Runs SQL with psql (unaligned, tuples only) and returns its output; panics on an error.
    pub fn psql(&self, sql: &str) -> String {
        let o = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
            .args(["-p", &self.port.to_string(), "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("psql runs");
        assert!(o.status.success(), "psql `{sql}`: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim_end().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = pg_tool(&self.bin, "pg_ctl", &["-D", &self.data(), "stop", "-m", "immediate", "-w"]);
    }
}

/// A Redis server of its own (no persistence), killed on drop.
pub struct Redis {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Redis {
    /// Starts `redis-server` on a free port and waits until it answers PING.
    pub fn start() -> Redis {
        Redis::start_listening(&[])
    }

    /// [`Redis::start`], listening on `extra` addresses of this host too.
    pub fn start_listening(extra: &[&str]) -> Redis {
        let port = free_port();
        let mut bind = vec!["127.0.0.1"];
        bind.extend(extra);
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--save", "", "--appendonly", "no", "--protected-mode", "no", "--bind"])
            .args(&bind)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (install Debian's redis-server): {e}"));
        let mut r = Redis { child, port };
        poll_until(Duration::from_secs(20), "redis-server to answer PING", || {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("redis-server exited: {status}");
            }
            r.try_command(&["PING"]).ok().filter(|a| a == "+PONG")
        });
        r
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// [`Redis::url`] at another of its addresses ([`Redis::start_listening`]).
    pub fn url_at(&self, host: &str) -> String {
        format!("redis://{host}:{}", self.port)
    }

    /// Sends one command over a new TCP connection and returns the reply
    /// (RESP, first line, with a bulk string's or an array's items appended
    /// on lines of their own).
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    fn try_command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes())?;
        let mut r = BufReader::new(s);
        read_reply(&mut r)
    }
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end().to_string();
    let count = |l: &str| l.get(1..).and_then(|n| n.parse::<i64>().ok()).unwrap_or(-1);
    match line.chars().next() {
        Some('$') if count(&line) >= 0 => {
            let mut buf = vec![0; count(&line) as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(buf.len() - 2);
            Ok(format!("{line}\n{}", String::from_utf8_lossy(&buf)))
        }
        Some('*') if count(&line) >= 0 => {
            let mut out = line.clone();
            for _ in 0..count(&line) {
                out.push('\n');
                out.push_str(&read_reply(r)?);
            }
            Ok(out)
        }
        _ => Ok(line),
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
