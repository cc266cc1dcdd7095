//! Real Spin for the harness: finding the binary, starting `spin up` the way
//! the runner is started, and stopping every process it is made of.
//!
//! `spin up` is a parent process: it spawns `spin trigger http` (which
//! serves) and `spin trigger-cron`, which runs the cron plugin's own binary.
//! A SIGKILL of `spin up` alone would leave them running, so a crash here
//! stops and kills the whole process tree at once, and waits until every one
//! of them is gone (so the port is free for a restart).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{free_port, project_root, request, Runner, RunnerConfig, RunnerKind};

/// A Spin CLI with the spin-trigger-cron plugin.
#[derive(Clone, Debug)]
pub struct SpinInstall {
    /// The `spin` binary.
    pub bin: PathBuf,
    /// `SPIN_DATA_DIR`, where its plugins are (`None`: the process's own, or Spin's default).
    pub data_dir: Option<PathBuf>,
}

/// The install script beside the project (`../shared/tools/spin/install.sh`).
pub fn install_script() -> PathBuf {
    project_root().join("../shared/tools/spin/install.sh")
}

/// The Spin to test with, found once: `SPIN_BIN` (with `SPIN_DATA_DIR` if
/// set), else `spin` on `PATH`, else what `../shared/tools/spin/install.sh`
/// unpacks (it prints `export SPIN_BIN=...` and `export SPIN_DATA_DIR=...`).
pub fn install() -> Result<&'static SpinInstall, String> {
    static FOUND: OnceLock<Result<SpinInstall, String>> = OnceLock::new();
    FOUND.get_or_init(find).as_ref().map_err(Clone::clone)
}

fn find() -> Result<SpinInstall, String> {
    let data_dir = std::env::var_os("SPIN_DATA_DIR").filter(|d| !d.is_empty()).map(PathBuf::from);
    if let Some(bin) = std::env::var_os("SPIN_BIN").filter(|b| !b.is_empty()) {
        return Ok(SpinInstall { bin: PathBuf::from(bin), data_dir });
    }
    if let Some(bin) =
        std::env::var_os("PATH").iter().flat_map(std::env::split_paths).map(|d| d.join("spin")).find(|p| p.is_file())
    {
        return Ok(SpinInstall { bin, data_dir });
    }
    let script = install_script();
    if !script.exists() {
        return Err(format!(
            "no Spin: set SPIN_BIN, put `spin` (with the trigger-cron plugin) on PATH, or provide {}",
            script.display()
        ));
    }
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed with {}", script.display(), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .map(|v| PathBuf::from(v.trim().trim_matches('\'')))
    };
    let bin = value("SPIN_BIN").ok_or_else(|| format!("{} printed no SPIN_BIN:\n{text}", script.display()))?;
    Ok(SpinInstall { bin, data_dir: value("SPIN_DATA_DIR") })
}

/// Why a start failed.
enum StartError {
    /// The port was taken by another process (a free port can be tried).
    PortTaken(String),
    Other(String),
}

/// `spin up` for a [`RunnerConfig`]: the same manifest, variables and
/// runtime config, on `127.0.0.1:<port>` (a free port unless one is given:
/// Spin must know it before the start, as `upstream_url` may point there)
/// and the state dir. Spin runs in the state dir: it resolves a relative
/// `[sqlite_database.*] path` against its working directory (and a
/// key-value one against the runtime config file's), so with the runtime
/// config in the state dir both land there, as on the runner.
pub(crate) fn start(cfg: &RunnerConfig) -> Result<Runner, String> {
    if let Some(ms) = cfg.tick_ms {
        return Err(format!(
            "--tick-ms {ms} is the runner's: Spin fires cron components on their schedule (cron_schedule())"
        ));
    }
    let spin = install()?;
    let (state_dir, owned) = cfg.make_state_dir();
    let manifest = cfg.manifest_for(&state_dir)?;
    let runtime_config = cfg.write_runtime_config(&state_dir)?;
    let mut last = String::new();
    for _ in 0..if cfg.port.is_some() { 1 } else { 4 } {
        let port = cfg.port.unwrap_or_else(free_port);
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(&spin.bin);
        cmd.current_dir(&state_dir)
            .arg("up")
            .arg("--from")
            .arg(&manifest)
            .arg("--listen")
            .arg(&addr)
            .arg("--state-dir")
            .arg(&state_dir);
        if let Some(rc) = &runtime_config {
            cmd.arg("--runtime-config-file").arg(rc);
        }
        cmd.args(&cfg.args);
        if let Some(d) = &spin.data_dir {
            cmd.env("SPIN_DATA_DIR", d);
        }
        for (k, v) in cfg.resolved_env(&addr) {
            cmd.env(k, v);
        }
        match launch(cmd, port, tempfile::tempdir().expect("temp dir")) {
            Ok((child, log_path, log_dir)) => {
                return Ok(Runner {
                    child: Some(child),
                    kind: RunnerKind::Spin,
                    addr,
                    state_dir,
                    _owned_state: owned,
                    log_path,
                    _log_dir: log_dir,
                    config: Some(cfg.clone()),
                })
            }
            Err(StartError::PortTaken(e)) => last = e,
            Err(StartError::Other(e)) => return Err(e),
        }
    }
    Err(last)
}

/// Spawns `cmd` (a `spin up`), both its outputs into one log file, and waits
/// until it says it serves `127.0.0.1:<port>` and answers HTTP there.
fn launch(
    mut cmd: Command,
    port: u16,
    log_dir: tempfile::TempDir,
) -> Result<(Child, PathBuf, tempfile::TempDir), StartError> {
    let log_path = log_dir.path().join("spin.log");
    let log = OpenOptions::new().create(true).append(true).open(&log_path).expect("log file");
    cmd.stdin(Stdio::null()).stdout(Stdio::from(log.try_clone().expect("log file"))).stderr(Stdio::from(log));
    let mut child = cmd.spawn().map_err(|e| StartError::Other(format!("cannot spawn {cmd:?}: {e}")))?;
    let serving = format!("Serving http://127.0.0.1:{port}");
    let url = format!("http://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Listed before `try_wait` reaps it (until then its pid is not reused).
        let tree = process_tree(child.id());
        let logs = read(&log_path);
        if let Ok(Some(status)) = child.try_wait() {
            // Whatever it left behind (it stops its triggers itself when one fails).
            for p in tree.iter().filter(|p| **p != child.id()) {
                signal(*p, libc::SIGKILL);
            }
            let msg = format!("spin up exited with {status} before serving:\n{logs}");
            let taken = logs.contains("is already in use") || logs.contains("Address already in use");
            return Err(if taken { StartError::PortTaken(msg) } else { StartError::Other(msg) });
        }
        // Its own "Serving" line (so a server of another process on this
        // port cannot pass for it), then an answer.
        if logs.lines().any(|l| l.trim() == serving) && request("GET", &url, &[], None).is_ok() {
            return Ok((child, log_path, log_dir));
        }
        if Instant::now() > deadline {
            kill_tree(&mut child);
            return Err(StartError::Other(format!("spin up did not serve {url} within 120 s:\n{logs}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read(path: &Path) -> String {
    let mut s = String::new();
    let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut s));
    s
}

/// `(pid, ppid, state)` of every process, from `/proc/*/stat`.
fn processes() -> Vec<(u32, u32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
        let state = rest.next()?.chars().next()?;
        let ppid = rest.next()?.parse().ok()?;
        Some((pid, ppid, state))
    })
    .collect()
}

/// `root` and all its descendants (sorted).
pub fn process_tree(root: u32) -> Vec<u32> {
    let all = processes();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(all.iter().filter(|(_, ppid, _)| *ppid == parent).map(|(pid, _, _)| *pid));
        i += 1;
    }
    tree.sort_unstable();
    tree.dedup();
    tree
}

/// The process has exited (gone, or a zombie: its sockets are closed).
pub fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).is_none_or(|s| s == "Z" || s == "X")
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: plain kill(2) on a pid of our own child's process tree.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// SIGKILL for `child` and all its descendants, as in a crash: each is
/// stopped first (so none can fork while the tree is listed), then all are
/// killed; returns once every one has exited (30 s at most).
pub(crate) fn kill_tree(child: &mut Child) {
    let root = child.id();
    let mut tree = process_tree(root);
    loop {
        for p in &tree {
            signal(*p, libc::SIGSTOP);
        }
        let again = process_tree(root);
        if again == tree {
            break;
        }
        tree = again;
    }
    for p in &tree {
        signal(*p, libc::SIGKILL);
    }
    let _ = child.wait();
    // No panic here: this also runs in `Drop`, maybe while a test unwinds
    // (a restart on a port still held fails with Spin's own message).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tree.iter().all(|p| is_gone(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The README's "Running on Spin" block as a script: its lines after
/// `scripts/build`, with continuation lines joined. It must hold exactly two
/// `spin up` lines: the sandbox's (in the background) and Stepwise's.
pub fn readme_spin_block() -> Result<String, String> {
    let readme = std::fs::read_to_string(project_root().join("README.md")).map_err(|e| format!("README.md: {e}"))?;
    let section =
        readme.split("\n## Running on Spin\n").nth(1).ok_or("README.md has no \"## Running on Spin\" section")?;
    let section = section.split("\n## ").next().unwrap_or(section);
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .ok_or("no sh block in \"Running on Spin\"")?;
    let joined = block.replace("\\\n", " ");
    let lines: Vec<&str> = joined.lines().map(str::trim).filter(|l| !l.is_empty() && *l != "scripts/build").collect();
    let ups = lines.iter().filter(|l| l.split_whitespace().any(|w| w == "spin") && l.contains(" up ")).count();
    if ups != 2 {
        return Err(format!("expected two `spin up` lines (the sandbox's and Stepwise's), found {ups}"));
    }
    Ok(lines.join("\n"))
}

/// Runs a shell command line that starts Spin (`spin` there is the Spin of
/// [`install`]) in `dir`, and waits until it serves `127.0.0.1:<port>`. The
/// runner it returns has `dir/.spin` (Spin's default) as its state dir and
/// cannot be restarted.
pub fn start_command_line(line: &str, dir: &Path, port: u16) -> Result<Runner, String> {
    let spin = install()?;
    // `spin` on PATH: a link beside the log, which lives as long as the runner.
    let log_dir = tempfile::tempdir().expect("temp dir");
    let bin_dir = log_dir.path().join("bin");
    std::fs::create_dir(&bin_dir).map_err(|e| format!("{}: {e}", bin_dir.display()))?;
    std::os::unix::fs::symlink(&spin.bin, bin_dir.join("spin")).map_err(|e| format!("symlink: {e}"))?;
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::var_os("PATH").iter().flat_map(std::env::split_paths)),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(line).current_dir(dir).env("PATH", path);
    if let Some(d) = &spin.data_dir {
        cmd.env("SPIN_DATA_DIR", d);
    }
    let (child, log_path, log_dir) = launch(cmd, port, log_dir).map_err(|e| match e {
        StartError::PortTaken(e) | StartError::Other(e) => e,
    })?;
    Ok(Runner {
        child: Some(child),
        kind: RunnerKind::Spin,
        addr: format!("127.0.0.1:{port}"),
        state_dir: dir.join(".spin"),
        _owned_state: None,
        log_path,
        _log_dir: log_dir,
        config: None,
    })
}
