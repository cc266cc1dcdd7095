//! Spin SQLite (`spin:sqlite/sqlite@3.0.0`, and the older
//! `fermyon:spin/sqlite@2.0.0` on the same connections): named databases in SQLite files,
//! WAL mode, a busy timeout, and one connection per `open` taken from a pool,
//! so `last-insert-rowid`, `changes` and transactions are never shared with
//! another instance.
//!
//! Writers of one database queue in this process on a fair async lock, held
//! from a connection's first write (or `BEGIN`) until it is back in
//! autocommit mode, so in-process writers wake the moment the lock frees
//! instead of polling with SQLite's sleeping busy handler; the wait is bounded
//! by [`BUSY_TIMEOUT`] like SQLite's. Other processes on the same file are
//! still arbitrated by SQLite itself:
//! a statement first runs inline with no busy wait (microseconds, and the
//! guest's transaction holds the lock as briefly as possible); only when
//! SQLite answers `SQLITE_BUSY` does it run again on tokio's blocking pool
//! with the full [`BUSY_TIMEOUT`], so a lock wait never blocks an async
//! worker thread.
//!
//! Long statements (a full-table scan, a large update) run on the blocking
//! pool too, decided per statement without guessing from the SQL:
//!
//! - a statement that is safe to run twice (read-only, or any statement in
//!   autocommit mode, which SQLite rolls back whole when interrupted) runs
//!   inline with a budget of [`INLINE_BUDGET`]: still running then, SQLite's
//!   progress handler interrupts it and it runs again on the blocking pool;
//! - a write inside an explicit transaction cannot be interrupted (SQLite
//!   would roll back the whole transaction), so it runs inline, timed;
//! - either way a statement that went over the budget is remembered (per
//!   database, by its SQL text) and from then on goes straight to the
//!   blocking pool. Handing a statement to the blocking pool costs tens of
//!   microseconds, more than most statements take, so the quick ones stay
//!   inline.
//!
//! The budget is the calling thread's CPU time, not wall-clock time: on a
//! loaded machine a quick statement whose thread was preempted would
//! otherwise look slow and be sent to the blocking pool for good (measured:
//! a one-insert request lost 22 % of its throughput that way). Reading that
//! clock is a system call, so it is read only for statements long enough to
//! reach SQLite's progress handler ([`PROGRESS_OPS`] virtual-machine
//! instructions), counted from that first check. The quick statements that
//! make up nearly all of them (an accepted transfer runs ten) read it about
//! once in a hundred runs: SQLite counts a cached statement's instructions
//! across its runs.
//!
//! Every write turn of this process writes on one connection, the pool's
//! writer, which the turn hands from holder to holder: an instance whose
//! connection takes the turn (at `BEGIN`, or at a write in autocommit mode)
//! sets its own connection aside, runs on the writer until it is back in
//! autocommit mode, and then on its own connection again. In WAL mode a
//! connection that sees another connection's commit drops its whole page
//! cache, so with one connection per instance every transaction read its
//! pages from the file again (23 `pread`s per accepted transfer, measured);
//! the writer's cache stays warm from one write turn to the next. The guest
//! cannot tell: a turn starts and ends in autocommit mode, where a
//! connection holds no snapshot; `last-insert-rowid` and `changes` are kept
//! per instance, from its own writes; and a connection that ran a statement
//! that may leave state on the connection itself (a `TEMP` object, a
//! `PRAGMA`, `ATTACH`: anything but plain DML and transaction control) stays
//! on the one connection it has from then on.
//!
//! Connections open through the [`crate::wal_vfs`] VFS: SQLite's own unix
//! VFS, except that a commit's WAL frames reach the kernel in one write
//! (23 `pwrite`s per accepted transfer before, measured).

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;
use wasmtime::component::{HasSelf, Linker, Resource};

use crate::bindings::spin::sqlite::sqlite as wit;
use crate::capability::{AppContext, Capability, ComponentContext};
use crate::state::InstanceState;

/// How long a writer waits for another's lock before `database is locked`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a statement may run inline on an async worker thread before it
/// is moved to the blocking pool (see the module docs), unless
/// `stepwise up --sqlite-inline-budget-ms` says otherwise.
pub const INLINE_BUDGET: Duration = Duration::from_millis(1);

/// The inline budget in force, in ns: [`INLINE_BUDGET`] unless set at start
/// (under valgrind every statement takes ~50 times its CPU time, so the
/// callgrind benchmark raises it to keep quick statements inline, as they
/// are natively).
static INLINE_BUDGET_NS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(INLINE_BUDGET.as_nanos() as u64);

/// Sets the inline budget of every database (once, at start).
pub fn set_inline_budget(budget: Duration) {
    INLINE_BUDGET_NS.store(budget.as_nanos().min(u64::MAX as u128) as u64, std::sync::atomic::Ordering::Relaxed);
}

/// The inline budget in force.
fn inline_budget() -> Duration {
    Duration::from_nanos(INLINE_BUDGET_NS.load(std::sync::atomic::Ordering::Relaxed))
}

/// SQLite virtual-machine instructions between checks of the inline budget.
const PROGRESS_OPS: std::os::raw::c_int = 1000;

/// How many slow statements a database remembers.
const MAX_SLOW: usize = 256;

thread_local! {
    /// The statement running inline on this thread; `None` on the blocking
    /// pool (and between statements).
    static INLINE_RUN: Cell<Option<InlineRun>> = const { Cell::new(None) };
}

/// A statement running inline, as the progress handler sees it.
#[derive(Debug, Clone, Copy)]
struct InlineRun {
    /// When it started, by the wall clock (no system call to read).
    started: std::time::Instant,
    /// The thread's CPU time at the statement's first progress check
    /// (`None` until then): its CPU time is counted from there.
    cpu_from: Option<Duration>,
    /// Interrupted once over budget (safe to run twice), or only timed.
    interruptible: bool,
}

impl InlineRun {
    /// Whether the statement has used more than the inline budget: first by
    /// the wall clock, then, only if that says so, by the thread's CPU time
    /// since its first progress check (a statement that never reached one
    /// ran fewer than [`PROGRESS_OPS`] instructions and is quick whatever
    /// the wall clock says: its thread was preempted).
    fn over_budget(&self) -> bool {
        // A thread's CPU time never outruns the wall clock.
        self.started.elapsed() > inline_budget()
            && self.cpu_from.is_some_and(|from| thread_cpu().saturating_sub(from) > inline_budget())
    }
}

/// The CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu() -> Duration {
    #[cfg(test)]
    tests::CPU_CLOCK_READS.with(|n| n.set(n.get() + 1));
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // every Linux has. On failure `ts` stays zero, which only makes the
    // budget look unspent.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// The progress handler of every pooled connection: at the inline
/// statement's first check notes the thread's CPU time; from then on
/// interrupts it once over budget, if it may be.
fn over_inline_budget() -> bool {
    INLINE_RUN.with(|cell| {
        let Some(mut run) = cell.get() else { return false };
        if run.cpu_from.is_none() {
            run.cpu_from = Some(thread_cpu());
            cell.set(Some(run));
            return false;
        }
        run.interruptible && run.over_budget()
    })
}

/// Runs `f` (one statement, inline) under the inline budget: interrupted
/// past it if `interruptible`. Also answers whether it went over the budget.
fn with_inline_budget<T>(interruptible: bool, f: impl FnOnce() -> T) -> (T, bool) {
    INLINE_RUN
        .with(|cell| cell.set(Some(InlineRun { started: std::time::Instant::now(), cpu_from: None, interruptible })));
    let r = f();
    let over = INLINE_RUN.with(|cell| cell.take()).is_some_and(|run| run.over_budget());
    (r, over)
}

/// A pool of connections to one SQLite file.
#[derive(Debug)]
pub struct ConnectionPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// This process's writers, in turn, and the connection the holder of
    /// the turn writes on (`None` until one is returned to it, or after one
    /// was lost with an instance that ended mid-statement).
    write_lock: Arc<tokio::sync::Mutex<Option<Connection>>>,
    /// Statements that went over the inline budget, by SQL text.
    slow: Mutex<HashSet<Box<str>>>,
}

/// How many idle connections a pool keeps.
const MAX_IDLE: usize = 64;

/// How often the background checkpointer copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// WAL frames (pages) past which a checkpoint is finished in a write turn,
/// so the WAL starts over (see
/// [`ConnectionPool::start_checkpointer`]): about 4 MiB.
const RESTART_FRAMES: i64 = 1024;

/// A PASSIVE checkpoint: the frames in the WAL, and how many of them are
/// now copied into the database.
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?)))
}

fn warn_unless_busy(e: &rusqlite::Error) {
    if !is_busy(e) {
        tracing::warn!("WAL checkpoint failed: {e}");
    }
}

impl ConnectionPool {
    /// Opens (creating if needed) the file at `path` in WAL mode and checks it is usable.
    pub fn open(path: &Path) -> Result<Arc<Self>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        crate::wal_vfs::register().map_err(anyhow::Error::msg)?;
        let pool = Arc::new(Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            write_lock: Arc::new(tokio::sync::Mutex::new(None)),
            slow: Mutex::new(HashSet::new()),
        });
        let conn = pool.connect().with_context(|| format!("cannot open SQLite file {}", path.display()))?;
        pool.put(conn);
        let writer = pool.connect().with_context(|| format!("cannot open SQLite file {}", path.display()))?;
        *pool.write_lock.try_lock().context("the new pool's write turn is free")? = Some(writer);
        Self::start_checkpointer(&pool)?;
        Ok(pool)
    }

    /// Checkpoints the WAL from a thread of its own, so no guest's commit
    /// pays for a checkpoint (and its fsync) while holding the write lock.
    /// PASSIVE checkpoints run alongside writers and readers; a busy one is
    /// simply tried again next round. Ends when the pool is dropped.
    ///
    /// SQLite starts the WAL over only when a checkpoint has copied all of
    /// it; while writes never pause, each checkpoint ends behind the frames
    /// appended while it ran, and the WAL grew for as long as the load
    /// lasted (measured: 370 MB in 7 s of accepted transfers, against a
    /// 3 MB database), each new frame's blocks allocated and zeroed by the
    /// file system and each page lookup searching a longer WAL index. So
    /// once the WAL holds [`RESTART_FRAMES`], a second checkpoint copies
    /// what was appended during the first in a write turn, with no writer
    /// of this process appending: then the next writer starts the WAL over.
    fn start_checkpointer(pool: &Arc<Self>) -> Result<()> {
        let conn = Connection::open(&pool.path)?;
        conn.busy_timeout(Duration::ZERO)?;
        let weak = Arc::downgrade(pool);
        std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || loop {
            std::thread::sleep(CHECKPOINT_EVERY);
            let Some(pool) = weak.upgrade() else { break };
            let behind = match checkpoint(&conn) {
                // What it reports copied is what it saw: frames appended
                // while it ran are left, and the WAL cannot start over.
                Ok((log, _)) => log >= RESTART_FRAMES,
                Err(e) => {
                    warn_unless_busy(&e);
                    false
                }
            };
            if behind {
                let _turn = pool.write_lock.blocking_lock();
                if let Err(e) = checkpoint(&conn) {
                    warn_unless_busy(&e);
                }
            }
        })?;
        Ok(())
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        // SQLite's unix VFS, but a commit's WAL frames in one write.
        let conn =
            Connection::open_with_flags_and_vfs(&self.path, rusqlite::OpenFlags::default(), crate::wal_vfs::NAME)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Connections wait for locks only when asked to (see `run_waiting`).
        // WAL persists in the file; setting it on every connection is cheap and
        // makes a file created by another tool safe for concurrent readers.
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        // Commits never checkpoint: the pool's checkpointer thread does.
        conn.execute_batch(
            "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-512;",
        )?;
        conn.set_prepared_statement_cache_capacity(64);
        conn.busy_timeout(Duration::ZERO)?;
        conn.progress_handler(PROGRESS_OPS, Some(over_inline_budget));
        Ok(conn)
    }

    /// Whether `sql` went over the inline budget before.
    fn is_slow(&self, sql: &str) -> bool {
        self.slow.lock().unwrap_or_else(|e| e.into_inner()).contains(sql)
    }

    /// Remembers that `sql` went over the inline budget.
    fn mark_slow(&self, sql: &str) {
        let mut slow = self.slow.lock().unwrap_or_else(|e| e.into_inner());
        if slow.len() < MAX_SLOW {
            slow.insert(sql.into());
        }
    }

    /// Takes an idle connection or opens a new one.
    pub fn get(&self) -> rusqlite::Result<Connection> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(c) => Ok(c),
            None => self.connect(),
        }
    }

    /// Returns a connection; an open transaction is rolled back first so the
    /// next user starts clean.
    pub fn put(&self, conn: Connection) {
        if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// Where each used store label lives: the runtime config's path, or the
/// `default` label's file in the state dir as Spin puts it. Any other label
/// must be placed by the runtime config (as in Spin): an error names the
/// missing `[section.label]`.
pub fn store_paths(
    state_dir: &Path,
    configured: &BTreeMap<String, PathBuf>,
    used: &[String],
    default_file: &str,
    (what, section): (&str, &str),
) -> Result<Vec<(String, PathBuf)>> {
    used.iter()
        .map(|label| match configured.get(label) {
            Some(p) => Ok((label.clone(), p.clone())),
            None if label == "default" => Ok((label.clone(), state_dir.join(default_file))),
            None => anyhow::bail!("{what} `{label}` is not defined: add [{section}.{label}] to the runtime config"),
        })
        .collect()
}

/// The databases of the app, by label.
#[derive(Debug, Default)]
pub struct SqliteDatabases {
    pools: HashMap<String, Arc<ConnectionPool>>,
}

impl SqliteDatabases {
    /// Opens every database: `default` at `<state_dir>/sqlite_db.db` unless the
    /// runtime config places it (or others) elsewhere.
    pub fn open(state_dir: &Path, configured: &BTreeMap<String, PathBuf>, used: &[String]) -> Result<Self> {
        let mut pools = HashMap::new();
        for (label, path) in
            store_paths(state_dir, configured, used, "sqlite_db.db", ("SQLite database", "sqlite_database"))?
        {
            pools.insert(label, ConnectionPool::open(&path)?);
        }
        Ok(Self { pools })
    }

    fn pool(&self, label: &str) -> Option<Arc<ConnectionPool>> {
        self.pools.get(label).cloned()
    }
}

impl Capability for SqliteDatabases {
    const NAME: &'static str = "sqlite";
    type Component = SqliteAccess;
    type Instance = SqliteAccess;

    /// `spin:sqlite/sqlite@3.0.0` and the older `fermyon:spin/sqlite@2.0.0`.
    fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)?;
        crate::bindings::fermyon::spin::sqlite::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)
    }

    fn configure(app: &AppContext<'_>) -> Result<Self> {
        let used = app.declared(|c| &c.sqlite_databases);
        Self::open(app.state_dir, &app.runtime_config.sqlite_databases, &used)
    }

    fn configure_component(self: &Arc<Self>, c: &ComponentContext<'_>) -> Result<SqliteAccess> {
        Ok(SqliteAccess { databases: self.clone(), allowed: c.decl.sqlite_databases.clone().into() })
    }

    fn new_instance(component: &SqliteAccess) -> SqliteAccess {
        component.clone()
    }
}

/// A component's view of the databases: only the labels it declared.
#[derive(Debug, Clone, Default)]
pub struct SqliteAccess {
    /// Every database of the app; the component reaches only those in `allowed`.
    pub databases: Arc<SqliteDatabases>,
    /// The labels in the component's `sqlite_databases`.
    pub allowed: Arc<[String]>,
}

/// The write turn: the pool's writer connection, if it has one.
type WriteTurn = tokio::sync::OwnedMutexGuard<Option<Connection>>;

/// An open connection held in an instance's resource table; returned to the
/// pool when the guest drops it or the instance ends.
pub struct SqliteConnection {
    /// The connection statements run on: the instance's own, or the pool's
    /// writer while this instance holds the write turn.
    conn: Option<Connection>,
    pool: Arc<ConnectionPool>,
    /// Held while this connection writes or has a transaction open.
    write_turn: Option<WriteTurn>,
    /// The instance's own connection, set aside while it runs on the writer.
    parked: Option<Connection>,
    /// Ran a statement that may leave state on the connection itself: it
    /// keeps the connection it has (see the module docs).
    pinned: bool,
    /// `last-insert-rowid` and `changes` as this instance's own writes left them.
    last_insert_rowid: i64,
    changes: u64,
}

impl Drop for SqliteConnection {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            match self.write_turn.as_mut() {
                // The writer goes back to the turn, its transaction rolled
                // back first; one that cannot roll back is closed.
                Some(turn) if turn.is_none() && self.parked.is_some() => {
                    if c.is_autocommit() || c.execute_batch("ROLLBACK").is_ok() {
                        **turn = Some(c);
                    }
                }
                // Rolls back an open transaction before the write turn is released.
                _ => self.pool.put(c),
            }
        }
        if let Some(c) = self.parked.take() {
            self.pool.put(c);
        }
        self.write_turn = None;
    }
}

/// Where a statement ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// On the async worker thread that called it.
    Inline,
    /// On tokio's blocking pool.
    Offloaded,
}

/// Interrupts a statement on the blocking pool whose caller went away (an
/// instance dropped at its deadline), unless disarmed.
struct InterruptOnDrop(Option<rusqlite::InterruptHandle>);

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.interrupt();
        }
    }
}

impl SqliteConnection {
    /// A connection for an instance: `conn`, taken from `pool`.
    fn new(conn: Connection, pool: Arc<ConnectionPool>) -> Self {
        Self { conn: Some(conn), pool, write_turn: None, parked: None, pinned: false, last_insert_rowid: 0, changes: 0 }
    }

    /// Takes the write turn, and runs on the pool's writer until it ends.
    fn take_turn(&mut self, mut turn: WriteTurn) {
        if !self.pinned {
            if let Some(writer) = turn.take() {
                self.parked = self.conn.replace(writer);
            }
        }
        self.write_turn = Some(turn);
    }

    /// Ends the write turn once the connection is back in autocommit mode:
    /// the writer goes back to the turn for the next holder, and this
    /// instance runs on its own connection again. A pinned connection keeps
    /// the one it runs on; the turn then gets its writer from the next
    /// holder that has its own.
    /// Answers whether a turn ended.
    fn release_turn_if_done(&mut self) -> bool {
        if !self.conn.as_ref().is_some_and(Connection::is_autocommit) {
            return false;
        }
        let Some(mut turn) = self.write_turn.take() else { return false };
        if self.pinned || turn.is_some() {
            return true;
        }
        let own = match self.parked.take() {
            Some(own) => Some(own),
            // No writer was waiting: this instance wrote on its own
            // connection, which becomes the writer if another can be had.
            None => self.pool.get().ok(),
        };
        if let Some(own) = own {
            *turn = self.conn.replace(own);
        }
        true
    }

    /// Notes what a statement that ran left on the connection: the
    /// results of a write, and whether the connection must stay this one.
    fn note(&mut self, sql: &str, wrote: bool) {
        if wrote {
            if let Some(c) = self.conn.as_ref() {
                self.last_insert_rowid = c.last_insert_rowid();
                self.changes = c.changes();
            }
        }
        if !self.pinned && !leaves_no_connection_state(sql) {
            self.pinned = true;
        }
    }

    /// Runs one statement: takes the write turn if it writes, then runs it
    /// inline or on the blocking pool (see the module docs).
    async fn run(&mut self, sql: String, params: Vec<SqlValue>) -> (Result<wit::QueryResult, wit::Error>, Ran) {
        let Some(conn) = self.conn.as_ref() else {
            return (Err(wit::Error::InvalidConnection), Ran::Inline);
        };
        if self.write_turn.is_none() && conn.is_autocommit() && needs_write_turn(conn, &sql) {
            let lock = self.pool.write_lock.clone();
            match tokio::time::timeout(BUSY_TIMEOUT, lock.lock_owned()).await {
                Ok(turn) => self.take_turn(turn),
                Err(_) => return (Err(wit::Error::Io("database is locked".into())), Ran::Inline),
            }
        }
        let Some(conn) = self.conn.as_ref() else {
            return (Err(wit::Error::InvalidConnection), Ran::Inline);
        };
        if !self.pool.is_slow(&sql) {
            let Inline { result: first, retry_safe, writes, over_budget } = run_inline(conn, &sql, &params);
            match first {
                // Locked by another connection: wait for it off the async threads.
                Err(e) if is_busy(&e) => {}
                // Over budget, and rolled back: run it again where it may take long.
                Err(e) if retry_safe && is_interrupted(&e) => self.pool.mark_slow(&sql),
                done => {
                    if over_budget {
                        self.pool.mark_slow(&sql);
                    }
                    self.note(&sql, writes && done.is_ok());
                    if self.release_turn_if_done() {
                        hand_over().await;
                    }
                    return (done.map_err(io_err), Ran::Inline);
                }
            }
        }
        let Some(conn) = self.conn.take() else {
            return (Err(wit::Error::InvalidConnection), Ran::Offloaded);
        };
        let mut interrupt = InterruptOnDrop(Some(conn.get_interrupt_handle()));
        let sql_text = sql.clone();
        let joined = run_waiting(conn, sql, params).await;
        interrupt.0 = None;
        match joined {
            Ok((conn, result, writes)) => {
                self.conn = Some(conn);
                self.note(&sql_text, writes && result.is_ok());
                if self.release_turn_if_done() {
                    hand_over().await;
                }
                (result.map_err(io_err), Ran::Offloaded)
            }
            Err(e) => (Err(io_err(e)), Ran::Offloaded),
        }
    }
}

/// Lets the next writer run as soon as a write turn ends. Its wake-up lands
/// in this worker thread's next-task slot, which no other thread may take,
/// so without a yield it waited for the rest of this guest's request (its
/// answer, and more): the write turn, the one serial part of every write,
/// stood idle meanwhile. After the yield this thread runs the next writer,
/// and the rest of this request, back in the run queue, can go to another.
async fn hand_over() {
    tokio::task::yield_now().await;
}

/// Runs one statement inline, from a single lookup in the connection's
/// statement cache: safe to run twice (autocommit, or read-only, as
/// transaction control counts in SQLite) it runs within the inline budget
/// (interrupted past it); a write inside a transaction runs to its end.
fn run_inline(conn: &Connection, sql: &str, params: &[SqlValue]) -> Inline {
    let mut stmt = match conn.prepare_cached(sql) {
        Ok(stmt) => stmt,
        Err(e) => return Inline { result: Err(e), retry_safe: true, writes: false, over_budget: false },
    };
    let writes = !stmt.readonly();
    let retry_safe = conn.is_autocommit() || !writes;
    let (result, over_budget) = with_inline_budget(retry_safe, || run_prepared(&mut stmt, params));
    Inline { result, retry_safe, writes, over_budget }
}

/// What [`run_inline`] did.
struct Inline {
    result: rusqlite::Result<wit::QueryResult>,
    /// Safe to run twice (a statement that does not compile is: its error
    /// is the answer).
    retry_safe: bool,
    /// The statement may write (SQLite's `sqlite3_stmt_readonly` says no;
    /// transaction control counts as read-only).
    writes: bool,
    /// It used more than the inline budget (see [`InlineRun::over_budget`]).
    over_budget: bool,
}

/// Whether `sql` leaves nothing on the connection itself, so the statements
/// after it may run on another (see the module docs): plain DML, queries
/// and transaction control. Anything else (`CREATE TEMP ...`, `PRAGMA`,
/// `ATTACH`, any DDL, to be safe) may.
fn leaves_no_connection_state(sql: &str) -> bool {
    const PLAIN: [&str; 13] = [
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "REPLACE",
        "WITH",
        "VALUES",
        "BEGIN",
        "COMMIT",
        "END",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE",
    ];
    let head = sql.trim_start();
    PLAIN.iter().any(|w| {
        starts_with_word(head, w) && !head[w.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
    })
}

fn is_interrupted(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted)
}

/// Whether `sql` starts with `word`, in any case.
fn starts_with_word(sql: &str, word: &str) -> bool {
    sql.as_bytes().get(..word.len()).is_some_and(|head| head.eq_ignore_ascii_case(word.as_bytes()))
}

/// Whether `sql` needs the write turn: it writes, or it opens a transaction.
fn needs_write_turn(conn: &Connection, sql: &str) -> bool {
    let head = sql.trim_start();
    if starts_with_word(head, "BEGIN") || starts_with_word(head, "SAVEPOINT") {
        return true;
    }
    match conn.prepare_cached(sql) {
        Ok(stmt) => !stmt.readonly(),
        Err(_) => false, // the statement itself will report the error
    }
}

fn io_err(e: impl std::fmt::Display) -> wit::Error {
    wit::Error::Io(e.to_string())
}

fn to_sql(v: wit::Value) -> SqlValue {
    match v {
        wit::Value::Integer(i) => SqlValue::Integer(i),
        wit::Value::Real(f) => SqlValue::Real(f),
        wit::Value::Text(s) => SqlValue::Text(s),
        wit::Value::Blob(b) => SqlValue::Blob(b),
        wit::Value::Null => SqlValue::Null,
    }
}

fn from_sql(v: ValueRef<'_>) -> wit::Value {
    match v {
        ValueRef::Null => wit::Value::Null,
        ValueRef::Integer(i) => wit::Value::Integer(i),
        ValueRef::Real(f) => wit::Value::Real(f),
        // Valid UTF-8 (every text the app writes) is checked by the fast
        // validator and copied once; only invalid bytes go the lossy way
        // (the same string either way).
        ValueRef::Text(t) => wit::Value::Text(match std::str::from_utf8(t) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(t).into_owned(),
        }),
        ValueRef::Blob(b) => wit::Value::Blob(b.to_vec()),
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked))
}

/// Runs `f` on a pooled connection allowed to wait up to [`BUSY_TIMEOUT`]
/// for another's lock (pooled connections otherwise never wait). Blocking:
/// call it on tokio's blocking pool.
pub fn waiting<T>(conn: &Connection, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let r = conn.busy_timeout(BUSY_TIMEOUT).and_then(|()| f(conn));
    let _ = conn.busy_timeout(Duration::ZERO);
    r
}

/// Runs `sql` on the blocking pool, waiting up to [`BUSY_TIMEOUT`] for locks.
async fn run_waiting(
    conn: Connection,
    sql: String,
    params: Vec<SqlValue>,
) -> Result<(Connection, rusqlite::Result<wit::QueryResult>, bool), tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        let r = waiting(&conn, |c| run_statement(c, &sql, &params));
        let writes = r.as_ref().is_ok_and(|(_, writes)| *writes);
        (conn, r.map(|(result, _)| result), writes)
    })
    .await
}

/// Runs one statement and collects its rows; also says whether it may
/// write (see [`Inline::writes`]).
fn run_statement(conn: &Connection, sql: &str, params: &[SqlValue]) -> rusqlite::Result<(wit::QueryResult, bool)> {
    let mut stmt = conn.prepare_cached(sql)?;
    let writes = !stmt.readonly();
    Ok((run_prepared(&mut stmt, params)?, writes))
}

/// Runs a prepared statement and collects its rows.
fn run_prepared(stmt: &mut rusqlite::Statement<'_>, params: &[SqlValue]) -> rusqlite::Result<wit::QueryResult> {
    let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
    let n = columns.len();
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            values.push(from_sql(row.get_ref(i)?));
        }
        out.push(wit::RowResult { values });
    }
    Ok(wit::QueryResult { columns, rows: out })
}

impl wit::Host for InstanceState {}

impl wit::HostConnection for InstanceState {
    async fn open(&mut self, database: String) -> Result<Resource<SqliteConnection>, wit::Error> {
        if !self.caps.sqlite.allowed.contains(&database) {
            return Err(wit::Error::AccessDenied);
        }
        let pool = self.caps.sqlite.databases.pool(&database).ok_or(wit::Error::NoSuchDatabase)?;
        let conn = pool.get().map_err(io_err)?;
        self.table.push(SqliteConnection::new(conn, pool)).map_err(|_| wit::Error::DatabaseFull)
    }

    async fn execute(
        &mut self,
        this: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<wit::Value>,
    ) -> Result<wit::QueryResult, wit::Error> {
        let params: Vec<SqlValue> = parameters.into_iter().map(to_sql).collect();
        let entry = self.table.get_mut(&this).map_err(|_| wit::Error::InvalidConnection)?;
        entry.run(statement, params).await.0
    }

    async fn last_insert_rowid(&mut self, this: Resource<SqliteConnection>) -> i64 {
        self.table.get(&this).map(|e| e.last_insert_rowid).unwrap_or(0)
    }

    async fn changes(&mut self, this: Resource<SqliteConnection>) -> u64 {
        self.table.get(&this).map(|e| e.changes).unwrap_or(0)
    }

    async fn drop(&mut self, this: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        // Dropping the entry returns the connection to the pool.
        self.table.delete(this)?;
        Ok(())
    }
}

/// `fermyon:spin/sqlite@2.0.0` (spin-sdk's `sqlite` module): the same
/// connections as version 3, without `last-insert-rowid` and `changes`.
mod v2 {
    use super::{wit as v3, InstanceState, SqliteConnection};
    use crate::bindings::fermyon::spin::sqlite as wit;
    use wasmtime::component::Resource;

    fn error(e: v3::Error) -> wit::Error {
        match e {
            v3::Error::NoSuchDatabase => wit::Error::NoSuchDatabase,
            v3::Error::AccessDenied => wit::Error::AccessDenied,
            v3::Error::InvalidConnection => wit::Error::InvalidConnection,
            v3::Error::DatabaseFull => wit::Error::DatabaseFull,
            v3::Error::Io(m) => wit::Error::Io(m),
        }
    }

    fn value_in(v: wit::Value) -> v3::Value {
        match v {
            wit::Value::Integer(i) => v3::Value::Integer(i),
            wit::Value::Real(f) => v3::Value::Real(f),
            wit::Value::Text(s) => v3::Value::Text(s),
            wit::Value::Blob(b) => v3::Value::Blob(b),
            wit::Value::Null => v3::Value::Null,
        }
    }

    fn value_out(v: v3::Value) -> wit::Value {
        match v {
            v3::Value::Integer(i) => wit::Value::Integer(i),
            v3::Value::Real(f) => wit::Value::Real(f),
            v3::Value::Text(s) => wit::Value::Text(s),
            v3::Value::Blob(b) => wit::Value::Blob(b),
            v3::Value::Null => wit::Value::Null,
        }
    }

    impl wit::Host for InstanceState {}

    impl wit::HostConnection for InstanceState {
        async fn open(&mut self, database: String) -> Result<Resource<SqliteConnection>, wit::Error> {
            v3::HostConnection::open(self, database).await.map_err(error)
        }

        async fn execute(
            &mut self,
            this: Resource<SqliteConnection>,
            statement: String,
            parameters: Vec<wit::Value>,
        ) -> Result<wit::QueryResult, wit::Error> {
            let params = parameters.into_iter().map(value_in).collect();
            let r = v3::HostConnection::execute(self, this, statement, params).await.map_err(error)?;
            Ok(wit::QueryResult {
                columns: r.columns,
                rows: r
                    .rows
                    .into_iter()
                    .map(|row| wit::RowResult { values: row.values.into_iter().map(value_out).collect() })
                    .collect(),
            })
        }

        async fn drop(&mut self, this: Resource<SqliteConnection>) -> wasmtime::Result<()> {
            v3::HostConnection::drop(self, this).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    thread_local! {
        /// [`thread_cpu`] readings on this thread (each a system call).
        pub(super) static CPU_CLOCK_READS: Cell<u64> = const { Cell::new(0) };
    }

    #[tokio::test(flavor = "current_thread")]
    async fn only_statements_past_the_first_progress_check_read_the_cpu_clock() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ConnectionPool::open(&dir.path().join("db.sqlite")).unwrap();
        let mut c = instance_connection(&pool);
        c.run("CREATE TABLE t(x INTEGER PRIMARY KEY, y TEXT)".into(), vec![]).await.0.unwrap();
        for i in 0..100 {
            if i == 1 {
                // From the second round: the first loaded the schema.
                CPU_CLOCK_READS.with(|n| n.set(0));
            }
            c.run("BEGIN IMMEDIATE".into(), vec![]).await.0.unwrap();
            let (r, ran) = c.run("INSERT INTO t VALUES (?, 'a')".into(), vec![SqlValue::Integer(i)]).await;
            assert_eq!((r.unwrap().rows.len(), ran), (0, Ran::Inline));
            c.run("COMMIT".into(), vec![]).await.0.unwrap();
            let (r, ran) = c.run("SELECT x FROM t WHERE x = ?".into(), vec![SqlValue::Integer(i)]).await;
            assert_eq!((count(&r.unwrap()), ran), (i, Ran::Inline));
        }
        // SQLite counts a cached statement's instructions across its runs,
        // so a quick one reaches a progress check every hundred runs or so.
        let reads = CPU_CLOCK_READS.with(Cell::get);
        assert!(reads <= 8, "396 quick statements, {reads} clock reads (one or two each before)");
        let scan =
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1500) SELECT count(*) FROM c";
        let (r, ran) = c.run(scan.into(), vec![]).await;
        assert_eq!((count(&r.unwrap()), ran), (1500, Ran::Inline));
        assert!(CPU_CLOCK_READS.with(Cell::get) >= 1, "a statement past its first progress check is timed");
        assert!(!pool.is_slow(scan), "and, within budget, stays inline");
    }

    #[test]
    fn pool_rolls_back_open_transactions_and_uses_wal() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ConnectionPool::open(&dir.path().join("db.sqlite")).unwrap();
        let c = pool.get().unwrap();
        let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        c.execute_batch("CREATE TABLE t(x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);").unwrap();
        assert!(!c.is_autocommit());
        pool.put(c);
        let c = pool.get().unwrap();
        assert!(c.is_autocommit());
        let n: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0, "the abandoned transaction was rolled back");
    }

    #[test]
    fn statements_return_typed_rows() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ConnectionPool::open(&dir.path().join("db.sqlite")).unwrap();
        let c = pool.get().unwrap();
        run_statement(&c, "CREATE TABLE t(i INTEGER, r REAL, s TEXT, b BLOB, n)", &[]).unwrap();
        run_statement(
            &c,
            "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
            &[
                SqlValue::Integer(7),
                SqlValue::Real(1.5),
                SqlValue::Text("x".into()),
                SqlValue::Blob(vec![1]),
                SqlValue::Null,
            ],
        )
        .unwrap();
        assert_eq!(c.changes(), 1);
        let (q, writes) = run_statement(&c, "SELECT * FROM t", &[]).unwrap();
        assert!(!writes);
        assert_eq!(q.columns, vec!["i", "r", "s", "b", "n"]);
        assert!(matches!(q.rows[0].values[0], wit::Value::Integer(7)));
        assert!(matches!(q.rows[0].values[4], wit::Value::Null));
        assert!(run_statement(&c, "SELEC nonsense", &[]).is_err());
        // Text is returned as is; bytes that are not UTF-8 become U+FFFD.
        let (q, _) = run_statement(&c, "SELECT 'héllo', CAST(x'ff61' AS TEXT)", &[]).unwrap();
        assert!(matches!(&q.rows[0].values[0], wit::Value::Text(t) if t == "héllo"));
        assert!(matches!(&q.rows[0].values[1], wit::Value::Text(t) if t == "\u{FFFD}a"));
    }

    #[tokio::test]
    async fn a_locked_database_is_waited_for_off_the_async_threads() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ConnectionPool::open(&dir.path().join("db.sqlite")).unwrap();
        let holder = pool.get().unwrap();
        holder.execute_batch("CREATE TABLE t(x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);").unwrap();
        let waiter = pool.get().unwrap();
        let e = run_statement(&waiter, "INSERT INTO t VALUES (2)", &[]).unwrap_err();
        assert!(is_busy(&e), "inline attempts do not wait: {e}");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            holder.execute_batch("COMMIT").unwrap();
        });
        let (waiter, r, writes) = run_waiting(waiter, "INSERT INTO t VALUES (2)".into(), vec![]).await.unwrap();
        assert!(writes);
        r.unwrap();
        release.join().unwrap();
        let n: i64 = waiter.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn the_background_checkpointer_copies_the_wal_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let pool = ConnectionPool::open(&path).unwrap();
        let c = pool.get().unwrap();
        let auto: i64 = c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0)).unwrap();
        assert_eq!(auto, 0, "commits never checkpoint");
        c.execute_batch("CREATE TABLE t(x BLOB)").unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        for _ in 0..200 {
            c.execute("INSERT INTO t VALUES (zeroblob(4000))", []).unwrap();
        }
        // Nobody here checkpoints, so the database file only grows once the
        // pool's own thread has copied the WAL into it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < before + 700_000 {
            assert!(Instant::now() < deadline, "the WAL was never checkpointed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn writes_and_transactions_need_the_write_turn() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ConnectionPool::open(&dir.path().join("db.sqlite")).unwrap();
        let c = pool.get().unwrap();
        c.execute_batch("CREATE TABLE t(x)").unwrap();
        assert!(needs_write_turn(&c, "begin immediate"));
        assert!(needs_write_turn(&c, "  BEGIN"));
        assert!(needs_write_turn(&c, "INSERT INTO t VALUES (1)"));
        assert!(needs_write_turn(&c, "UPDATE t SET x = 2"));
        assert!(!needs_write_turn(&c, "SELECT * FROM t"));
        assert!(!needs_write_turn(&c, "COMMIT"));
    }

    /// A connection as an instance holds it.
    fn instance_connection(pool: &Arc<ConnectionPool>) -> SqliteConnection {
        SqliteConnection::new(pool.get().unwrap(), pool.clone())
    }

    const SLOW_READ: &str =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) SELECT count(*) AS n FROM c";

    fn count(r: &wit::QueryResult) -> i64 {
        match r.rows[0].values[0] {
            wit::Value::Integer(n) => n,
            ref v => panic!("not an integer: {v:?}"),
        }
    }

    /// A pool on a new database made by `schema`.
    fn pool_with(schema: &str) -> (tempfile::TempDir, Arc<ConnectionPool>) {
        let dir = tempfile::tempdir().unwrap();
        let pool = ConnectionPool::open(&dir.path().join("db.sqlite")).unwrap();
        pool.get().unwrap().execute_batch(schema).unwrap();
        (dir, pool)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_wal_starts_over_while_writes_never_pause() {
        let (_dir, pool) = pool_with("CREATE TABLE t(x BLOB)");
        let mut c = instance_connection(&pool);
        let mut statements = 0u64;
        let started = Instant::now();
        // Sixty checkpoint rounds or more, and enough writes to fill the
        // WAL past RESTART_FRAMES many times over even on a slow machine.
        while started.elapsed() < Duration::from_secs(6) || statements < 20_000 {
            assert!(started.elapsed() < Duration::from_secs(60), "only {statements} writes in 60 s");
            ok(&mut c, "INSERT INTO t VALUES (zeroblob(8000))").await;
            ok(&mut c, "DELETE FROM t WHERE rowid < (SELECT max(rowid) FROM t) - 20").await;
            statements += 2;
        }
        // Every write appends at least one frame (these about four); the
        // WAL holds the frames since it last started over: without the turn,
        // every one of the run's.
        // (-1 while the background checkpointer holds the checkpoint lock.)
        let reader = pool.get().unwrap();
        let asked = Instant::now();
        let in_wal = loop {
            match checkpoint(&reader).unwrap() {
                (-1, _) => assert!(asked.elapsed() < Duration::from_secs(5), "the checkpoint lock stays taken"),
                (frames, _) => break frames,
            }
        };
        assert!(
            (in_wal as u64) * 2 < statements,
            "the WAL holds {in_wal} frames after {statements} writes: it did not start over"
        );
    }

    /// Which SQLite connection `c` runs its statements on.
    fn physical(c: &SqliteConnection) -> usize {
        // SAFETY: the handle is only compared, never used.
        unsafe { c.conn.as_ref().unwrap().handle() as usize }
    }

    fn writer_waits(pool: &ConnectionPool) -> bool {
        pool.write_lock.try_lock().is_ok_and(|w| w.is_some())
    }

    async fn ok(c: &mut SqliteConnection, sql: &str) -> wit::QueryResult {
        c.run(sql.into(), vec![]).await.0.unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn every_write_turn_runs_on_the_one_warm_writer_and_instances_cannot_tell() {
        let (_dir, pool) = pool_with("CREATE TABLE t(x INTEGER PRIMARY KEY, y)");
        assert!(writer_waits(&pool), "the pool opens with its writer");
        let mut a = instance_connection(&pool);
        let mut b = instance_connection(&pool);
        let (own_a, own_b) = (physical(&a), physical(&b));

        ok(&mut a, "BEGIN IMMEDIATE").await;
        let writer = physical(&a);
        assert_ne!(writer, own_a, "a writes on the pool's writer");
        ok(&mut a, "INSERT INTO t (y) VALUES ('a')").await;
        ok(&mut a, "COMMIT").await;
        assert_eq!(physical(&a), own_a, "and reads on its own connection again");
        assert!(a.write_turn.is_none() && writer_waits(&pool), "the writer went back to the turn");

        ok(&mut b, "INSERT INTO t (y) VALUES ('b1')").await;
        assert_eq!(physical(&b), own_b, "an autocommit write's turn ends with it");
        ok(&mut b, "SELECT count(*) FROM t").await;
        ok(&mut b, "BEGIN").await;
        assert_eq!(physical(&b), writer, "the next turn's holder gets the same writer");
        ok(&mut b, "INSERT INTO t (y) VALUES ('b2'), ('b3')").await;
        ok(&mut b, "COMMIT").await;

        // last-insert-rowid and changes are each instance's own.
        assert_eq!((a.last_insert_rowid, a.changes), (1, 1));
        assert_eq!((b.last_insert_rowid, b.changes), (4, 2));
        ok(&mut a, "SELECT * FROM t").await;
        assert_eq!((a.last_insert_rowid, a.changes), (1, 1), "a read changes neither");
        assert_eq!(count(&ok(&mut a, "SELECT count(*) FROM t").await), 4, "a sees b's commits");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_with_state_of_its_own_keeps_its_connection() {
        let (_dir, pool) = pool_with("CREATE TABLE t(x)");
        let mut a = instance_connection(&pool);
        ok(&mut a, "CREATE TEMP TABLE mine(x)").await;
        assert!(a.pinned && a.write_turn.is_none());
        let pinned_on = physical(&a);
        ok(&mut a, "INSERT INTO mine VALUES (1)").await;
        ok(&mut a, "INSERT INTO t VALUES (1)").await;
        assert_eq!(count(&ok(&mut a, "SELECT count(*) FROM mine").await), 1, "the temp table is where a runs");
        assert_eq!(physical(&a), pinned_on);

        // The turn lost its writer to `a`; the next holder's own connection becomes it.
        assert!(!writer_waits(&pool));
        let mut b = instance_connection(&pool);
        ok(&mut b, "INSERT INTO t VALUES (2)").await;
        assert!(writer_waits(&pool), "the writer is back");
        assert_eq!(count(&ok(&mut b, "SELECT count(*) FROM t").await), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_next_writer_runs_as_soon_as_a_write_turn_ends() {
        let (_dir, pool) = pool_with("CREATE TABLE t(x)");
        // Both on the runtime's one worker thread, as two guests' requests.
        let a = tokio::spawn(async move {
            let mut a = instance_connection(&pool);
            ok(&mut a, "BEGIN IMMEDIATE").await;
            ok(&mut a, "INSERT INTO t VALUES (1)").await;
            let b = tokio::spawn({
                let pool = pool.clone();
                async move {
                    let mut b = instance_connection(&pool);
                    ok(&mut b, "INSERT INTO t VALUES (2)").await;
                }
            });
            // b runs until it waits for the turn.
            tokio::task::yield_now().await;
            assert!(!b.is_finished());
            ok(&mut a, "COMMIT").await;
            // The rest of a's request: b has written by now.
            let seen = count(&ok(&mut a, "SELECT count(*) FROM t").await);
            b.await.unwrap();
            seen
        });
        assert_eq!(a.await.unwrap(), 2, "the next writer wrote before the first request went on");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_instance_ending_mid_transaction_gives_the_writer_back_rolled_back() {
        let (_dir, pool) = pool_with("CREATE TABLE t(x)");
        let mut a = instance_connection(&pool);
        ok(&mut a, "BEGIN IMMEDIATE").await;
        ok(&mut a, "INSERT INTO t VALUES (1)").await;
        drop(a);
        assert!(writer_waits(&pool), "the writer is back, and the turn free");
        let mut b = instance_connection(&pool);
        ok(&mut b, "BEGIN IMMEDIATE").await;
        assert_eq!(count(&ok(&mut b, "SELECT count(*) FROM t").await), 0, "a's insert was rolled back");
        ok(&mut b, "COMMIT").await;
    }

    #[test]
    fn only_plain_statements_let_a_connection_move() {
        for sql in [
            "SELECT 1",
            " insert into t values (1)",
            "WITH x AS (SELECT 1) DELETE FROM t",
            "begin immediate",
            "COMMIT",
            "savepoint a",
            "RELEASE a",
        ] {
            assert!(leaves_no_connection_state(sql), "{sql}");
        }
        for sql in [
            "CREATE TEMP TABLE x(y)",
            "PRAGMA foreign_keys=OFF",
            "ATTACH 'x' AS y",
            "SELECTED",
            "DROP TABLE t",
            "EXPLAIN SELECT 1",
        ] {
            assert!(!leaves_no_connection_state(sql), "{sql}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_long_read_moves_off_the_async_thread_and_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ConnectionPool::open(&dir.path().join("db.sqlite")).unwrap();
        let mut c = instance_connection(&pool);
        let (r, ran) = c.run("SELECT 1".into(), vec![]).await;
        assert_eq!((count(&r.unwrap()), ran), (1, Ran::Inline), "quick statements stay inline");

        // The only async thread keeps running other tasks while the scan runs.
        let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        tokio::task::yield_now().await;
        let started = Instant::now();
        let (r, ran) = c.run(SLOW_READ.into(), vec![]).await;
        let took = started.elapsed();
        let ticked = ticks.load(std::sync::atomic::Ordering::Relaxed);
        ticker.abort();
        assert_eq!((count(&r.unwrap()), ran), (2_000_000, Ran::Offloaded));
        assert!(took > Duration::from_millis(20), "the scan is long enough to matter: {took:?}");
        assert!(ticked * 4 >= took.as_millis() as u64, "the async thread was free: {ticked} ticks in {took:?}");
        assert!(pool.is_slow(SLOW_READ));
        let (r, ran) = c.run(SLOW_READ.into(), vec![]).await;
        assert_eq!((count(&r.unwrap()), ran), (2_000_000, Ran::Offloaded), "straight to the blocking pool next time");
    }

    /// A database with a table `t` of `rows` rows, an instance's connection
    /// to it, and the sum of `t.x`.
    async fn big_table(rows: i64) -> (tempfile::TempDir, Arc<ConnectionPool>, SqliteConnection, i64) {
        let dir = tempfile::tempdir().unwrap();
        let pool = ConnectionPool::open(&dir.path().join("db.sqlite")).unwrap();
        let mut c = instance_connection(&pool);
        let fill = format!(
            "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) SELECT x FROM c"
        );
        c.run("CREATE TABLE t(x INTEGER)".into(), vec![]).await.0.unwrap();
        c.run(fill, vec![]).await.0.unwrap();
        let before = sum(&mut c).await;
        (dir, pool, c, before)
    }

    async fn sum(c: &mut SqliteConnection) -> i64 {
        count(&c.run("SELECT sum(x) FROM t".into(), vec![]).await.0.unwrap())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_interrupted_autocommit_write_runs_again_exactly_once() {
        let rows = 300_000;
        let (_dir, _pool, mut c, before) = big_table(rows).await;
        let update = "UPDATE t SET x = x + 1";
        let (r, ran) = c.run(update.into(), vec![]).await;
        r.unwrap();
        assert_eq!(ran, Ran::Offloaded);
        assert_eq!(c.conn.as_ref().unwrap().changes(), rows as u64);
        assert_eq!(sum(&mut c).await, before + rows, "every row updated once: the interrupted attempt left nothing");
        assert!(c.write_turn.is_none(), "the write turn is released after an autocommit write");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_long_write_in_a_transaction_is_never_interrupted_but_remembered() {
        let rows = 300_000;
        let (_dir, pool, mut c, before) = big_table(rows).await;
        let update = "UPDATE t SET x = x + 1";
        c.run("BEGIN IMMEDIATE".into(), vec![]).await.0.unwrap();
        let (r, ran) = c.run(update.into(), vec![]).await;
        r.unwrap();
        assert_eq!(ran, Ran::Inline, "interrupting it would roll back the whole transaction");
        assert!(pool.is_slow(update), "it took longer than the budget");
        let (r, ran) = c.run(update.into(), vec![]).await;
        r.unwrap();
        assert_eq!(ran, Ran::Offloaded, "next time it goes to the blocking pool");
        assert!(c.write_turn.is_some(), "the transaction keeps the write turn");
        c.run("COMMIT".into(), vec![]).await.0.unwrap();
        assert!(c.write_turn.is_none());
        assert_eq!(sum(&mut c).await, before + 2 * rows, "both updates, in one transaction");
    }

    #[test]
    fn undefined_labels_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = SqliteDatabases::open(dir.path(), &BTreeMap::new(), &["other".into()]).unwrap_err();
        assert!(e.to_string().contains("[sqlite_database.other]"));
        let dbs = SqliteDatabases::open(dir.path(), &BTreeMap::new(), &["default".into()]).unwrap();
        assert!(dbs.pool("default").is_some());
        assert!(dir.path().join("sqlite_db.db").exists());
    }
}
