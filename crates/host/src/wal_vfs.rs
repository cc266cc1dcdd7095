//! `stepwise-wal`: SQLite's own unix VFS, except that a commit's WAL frames
//! reach the kernel in one `pwrite` instead of two per page.
//!
//! SQLite appends each frame of a commit to the WAL with two writes, the
//! 24-byte frame header and then the page, so an accepted transfer (about
//! eleven pages) cost 23 `pwrite` system calls, each of which takes the
//! file's locks and walks the page cache on its own. This VFS passes every
//! call through to the default VFS (`unix`), and for WAL files only, holds
//! back writes that continue one another and hands them to it as one write:
//!
//! - the held bytes are written as soon as the page of a *commit* frame (a
//!   frame header whose second word, the database size after the commit, is
//!   not zero) has joined them, within the same `xWrite` call: SQLite
//!   publishes the commit in the WAL index only after that call returns, and
//!   if the write fails, that call fails and SQLite rolls the commit back;
//! - a write that does not continue the held bytes writes them first;
//! - any other call on the file (a read, a sync, its size, a truncation,
//!   closing it, a file control) writes them first, so SQLite never sees the
//!   file without its own writes;
//! - a frame header written right after a read (SQLite recomputing the
//!   checksums of a transaction that rewrote its own frames) is written at
//!   once, with what was held before it: nothing follows it;
//! - at most [`HOLD_MAX`] bytes are held: a larger commit (or a transaction
//!   spilling pages before its commit) takes a write per 64 KiB;
//! - any change of the connection's shared-memory locks (the database file's
//!   `xShmLock`, reached through a link between a database file and its WAL
//!   file) writes them first. Frames a transaction spilled and then rolled
//!   back are therefore written while the connection still holds the WAL's
//!   write lock, as plain SQLite wrote them, and never later, over frames
//!   another connection or process committed at the same offsets since.
//!
//! Bytes held back belong to a transaction that has not committed, so a
//! crash that loses them loses nothing SQLite had promised: recovery keeps
//! only the frames up to the last valid commit frame, as it does after a
//! crash between two `pwrite`s. Other connections read only committed
//! frames, which are in the file. The database file, its shared memory, its
//! locks and every other file pass straight through, so processes using the
//! plain `unix` VFS (Spin, the `sqlite3` shell) share the database as before.

use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::{Mutex, OnceLock, PoisonError};

use rusqlite::ffi;

/// The VFS's name, to open connections with.
pub const NAME: &str = "stepwise-wal";
const NAME_C: &CStr = c"stepwise-wal";

/// The most bytes held back (unless one write alone is larger, a frame of
/// a 64 KiB page): the unix VFS writes at most 128 KiB in one call.
const HOLD_MAX: usize = 64 << 10;

/// The size of a WAL frame header (SQLite's `WAL_FRAME_HDRSIZE`).
const FRAME_HEADER: usize = 24;

/// Registers the VFS (once per process; later calls return the first
/// result). Not the default: a connection asks for it by [`NAME`].
pub fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: `sqlite3_vfs_find` with NULL returns the default VFS
            // (SQLite initialises itself first); it lives for the process.
            let real = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
            if real.is_null() {
                return Err("SQLite has no default VFS".into());
            }
            // SAFETY: `real` is a valid VFS that is never unregistered.
            let real_ref = unsafe { &*real };
            let real_size = usize::try_from(real_ref.szOsFile).map_err(|_| "bad szOsFile".to_string())?;
            let vfs = Box::new(ffi::sqlite3_vfs {
                szOsFile: c_int::try_from(real_offset() + real_size).map_err(|_| "szOsFile overflows".to_string())?,
                pNext: ptr::null_mut(),
                zName: NAME_C.as_ptr(),
                pAppData: real.cast(),
                xOpen: Some(open),
                ..*real_ref
            });
            // SQLite keeps the pointer for the life of the process.
            let vfs = Box::leak(vfs);
            // SAFETY: `vfs` is a complete VFS that lives forever.
            let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
            if rc == ffi::SQLITE_OK {
                Ok(())
            } else {
                Err(format!("sqlite3_vfs_register failed ({rc})"))
            }
        })
        .clone()
}

/// A file opened through this VFS: SQLite's `sqlite3_file` header (pointing
/// at [`METHODS`]), then what this VFS keeps, then the real VFS's own file
/// object at [`real_offset`].
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    /// A WAL file: its writes may be held back.
    wal: bool,
    /// The last call on the file was a read.
    after_read: bool,
    /// Where the held bytes go in the file.
    held_at: i64,
    /// Bytes written by SQLite and not yet handed to the real file.
    held: Vec<u8>,
    /// Where the page of the last commit frame header written goes, if its
    /// page has not been written yet.
    commit_page_at: Option<i64>,
    /// A database file's open WAL file, or a WAL file's database file (both
    /// belong to one connection); null when there is none.
    partner: *mut File,
    /// A database file's name as SQLite passed it to `xOpen` (its key in
    /// [`DATABASES`]); 0 for other files.
    db_name: usize,
}

/// The database files open through this VFS, by the address of the name
/// SQLite opened them with, so that a WAL file, whose name
/// `sqlite3_filename_database` turns into that same address, finds its
/// database file. Touched when a database or WAL file opens or closes.
static DATABASES: Mutex<Option<HashMap<usize, usize>>> = Mutex::new(None);

/// Runs `f` on the registry of database files.
fn databases<T>(f: impl FnOnce(&mut HashMap<usize, usize>) -> T) -> T {
    let mut guard = DATABASES.lock().unwrap_or_else(PoisonError::into_inner);
    f(guard.get_or_insert_with(HashMap::new))
}

/// Where the real VFS's file object starts in our file object.
const fn real_offset() -> usize {
    let size = size_of::<File>();
    let align = 16;
    size.div_ceil(align) * align
}

/// The real VFS's file object inside ours.
///
/// # Safety
/// `file` is a file object this VFS opened.
unsafe fn real(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: our file objects are `real_offset() + szOsFile(real)` bytes.
    unsafe { file.cast::<u8>().add(real_offset()).cast() }
}

/// The real file's methods.
///
/// # Safety
/// `file` is a file object this VFS opened successfully.
unsafe fn methods<'a>(file: *mut ffi::sqlite3_file) -> &'a ffi::sqlite3_io_methods {
    // SAFETY: a successful open left the real file's methods set.
    unsafe { &*(*real(file)).pMethods }
}

/// Our part of the file object.
///
/// # Safety
/// `file` is a file object this VFS opened successfully, used by one thread
/// at a time (SQLite's rule for a connection).
unsafe fn ours<'a>(file: *mut ffi::sqlite3_file) -> &'a mut File {
    // SAFETY: see above; `File` is the start of the object.
    unsafe { &mut *file.cast::<File>() }
}

/// Calls the real file's `$method` with `$args`.
macro_rules! forward {
    ($file:expr, $method:ident, $($arg:expr),*) => {
        match methods($file).$method {
            Some(m) => m(real($file), $($arg),*),
            None => ffi::SQLITE_IOERR,
        }
    };
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes our VFS (whose `pAppData` is the real VFS) and a
    // file object of our `szOsFile` bytes; the real VFS opens its part.
    unsafe {
        let real_vfs = (*vfs).pAppData.cast::<ffi::sqlite3_vfs>();
        (*file).pMethods = ptr::null();
        let Some(real_open) = (*real_vfs).xOpen else { return ffi::SQLITE_CANTOPEN };
        let rc = real_open(real_vfs, name, real(file), flags, out_flags);
        // SQLite calls xClose on a file whose methods are set, even after a
        // failed open; ours are set exactly when the real ones are.
        if (*real(file)).pMethods.is_null() {
            return rc;
        }
        let ours = file.cast::<File>();
        ptr::write(
            ours,
            File {
                base: ffi::sqlite3_file { pMethods: &METHODS },
                wal: false,
                after_read: false,
                held_at: 0,
                held: Vec::new(),
                commit_page_at: None,
                partner: ptr::null_mut(),
                db_name: 0,
            },
        );
        if name.is_null() {
            return rc;
        }
        if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 {
            (*ours).db_name = name as usize;
            databases(|d| d.insert(name as usize, ours as usize));
        } else if flags & ffi::SQLITE_OPEN_WAL != 0 {
            // A WAL file holds writes back only when its database file's
            // lock changes can write them: otherwise it passes them through.
            let db_name = ffi::sqlite3_filename_database(name) as usize;
            if let Some(db) = databases(|d| d.get(&db_name).copied()) {
                let db = db as *mut File;
                (*db).partner = ours;
                (*ours).partner = db;
                (*ours).wal = true;
            }
        }
        rc
    }
}

/// Writes the held bytes to the real file (in one write).
///
/// # Safety
/// As [`ours`].
unsafe fn write_held(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the function's contract.
    unsafe {
        let f = ours(file);
        if f.held.is_empty() {
            return ffi::SQLITE_OK;
        }
        let Some(write) = methods(file).xWrite else { return ffi::SQLITE_IOERR_WRITE };
        let Ok(len) = c_int::try_from(f.held.len()) else { return ffi::SQLITE_IOERR_WRITE };
        #[cfg(test)]
        tests::count_wal_write();
        let rc = write(real(file), f.held.as_ptr().cast(), len, f.held_at);
        // Written or not, SQLite now knows what became of these bytes: on an
        // error it abandons the transaction and writes its frames again.
        f.held.clear();
        rc
    }
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, buf: *const c_void, amt: c_int, offset: i64) -> c_int {
    // SAFETY: SQLite passes a file this VFS opened and `amt` readable bytes.
    unsafe {
        let f = ours(file);
        if !f.wal {
            return forward!(file, xWrite, buf, amt, offset);
        }
        let after_read = std::mem::replace(&mut f.after_read, false);
        let Ok(len) = usize::try_from(amt) else { return ffi::SQLITE_IOERR_WRITE };
        let bytes = std::slice::from_raw_parts(buf.cast::<u8>(), len);
        let is_commit_header = len == FRAME_HEADER && bytes[4..8] != [0; 4];
        let completes_commit = f.commit_page_at == Some(offset);
        f.commit_page_at = is_commit_header.then_some(offset + FRAME_HEADER as i64);
        if !f.held.is_empty() && (f.held_at + f.held.len() as i64 != offset || f.held.len() + len > HOLD_MAX) {
            let rc = write_held(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if f.held.is_empty() {
            f.held_at = offset;
        }
        f.held.extend_from_slice(bytes);
        // A header written right after a read is a checksum rewrite, where
        // nothing follows it (or a frame appended right after a read, whose
        // page then follows as usual): written at once.
        let header_after_read = after_read && len == FRAME_HEADER;
        #[cfg(test)]
        if header_after_read {
            tests::count_header_after_read();
        }
        if completes_commit || header_after_read {
            return write_held(file);
        }
        ffi::SQLITE_OK
    }
}

/// Writes the held bytes, then runs `call` (the method on the real file):
/// for every method but `xWrite`, `xSectorSize`, `xDeviceCharacteristics`
/// and the shared-memory ones. `read`: the method reads the file.
///
/// # Safety
/// As [`ours`].
unsafe fn after_held(file: *mut ffi::sqlite3_file, read: bool, call: impl FnOnce() -> c_int) -> c_int {
    // SAFETY: per the function's contract.
    unsafe {
        let rc = write_held(file);
        let f = ours(file);
        f.after_read = read;
        f.commit_page_at = None;
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        call()
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file this VFS opened, once; our part is
    // dropped after the real file is closed.
    unsafe {
        let rc = after_held(file, false, || ffi::SQLITE_OK);
        let closed = forward!(file, xClose,);
        let f = ours(file);
        if !f.partner.is_null() {
            if f.db_name != 0 {
                // A WAL file outliving its database file (SQLite closes it
                // first) holds nothing back any more.
                write_held(f.partner.cast());
                (*f.partner).wal = false;
            }
            (*f.partner).partner = ptr::null_mut();
        }
        if f.db_name != 0 {
            databases(|d| d.remove(&f.db_name));
        }
        ptr::drop_in_place(file.cast::<File>());
        (*file).pMethods = ptr::null();
        if rc != ffi::SQLITE_OK {
            rc
        } else {
            closed
        }
    }
}

unsafe extern "C" fn read(file: *mut ffi::sqlite3_file, buf: *mut c_void, amt: c_int, offset: i64) -> c_int {
    // SAFETY: forwarded as SQLite called it.
    unsafe { after_held(file, true, || forward!(file, xRead, buf, amt, offset)) }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: forwarded as SQLite called it.
    unsafe { after_held(file, false, || forward!(file, xTruncate, size)) }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: forwarded as SQLite called it.
    unsafe { after_held(file, false, || forward!(file, xSync, flags)) }
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: forwarded as SQLite called it.
    unsafe { after_held(file, false, || forward!(file, xFileSize, size)) }
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: forwarded as SQLite called it.
    unsafe { after_held(file, false, || forward!(file, xLock, level)) }
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: forwarded as SQLite called it.
    unsafe { after_held(file, false, || forward!(file, xUnlock, level)) }
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: forwarded as SQLite called it.
    unsafe { after_held(file, false, || forward!(file, xCheckReservedLock, out)) }
}

unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: forwarded as SQLite called it.
    unsafe {
        after_held(file, false, || match methods(file).xFileControl {
            Some(m) => m(real(file), op, arg),
            None => ffi::SQLITE_NOTFOUND,
        })
    }
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: forwarded as SQLite called it; nothing written is observed.
    unsafe { methods(file).xSectorSize.map_or(4096, |m| m(real(file))) }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: forwarded as SQLite called it; nothing written is observed.
    unsafe { methods(file).xDeviceCharacteristics.map_or(0, |m| m(real(file))) }
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    page: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: forwarded as SQLite called it (the database file's shared memory).
    unsafe { forward!(file, xShmMap, page, size, extend, out) }
}

unsafe extern "C" fn shm_lock(file: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    // SAFETY: forwarded as SQLite called it; the WAL file linked to this
    // database file belongs to the same connection, used by this thread.
    unsafe {
        let wal = ours(file).partner;
        // The held bytes reach the file before the lock changes. An unlock is
        // passed on whatever became of them: SQLite does not look at its
        // result, and the bytes are those of a transaction that has ended.
        let held = if wal.is_null() { ffi::SQLITE_OK } else { write_held(wal.cast()) };
        if held != ffi::SQLITE_OK && flags & ffi::SQLITE_SHM_UNLOCK == 0 {
            return held;
        }
        forward!(file, xShmLock, offset, n, flags)
    }
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: forwarded as SQLite called it.
    unsafe {
        if let Some(m) = methods(file).xShmBarrier {
            m(real(file));
        }
    }
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: forwarded as SQLite called it.
    unsafe { forward!(file, xShmUnmap, delete) }
}

unsafe extern "C" fn fetch(file: *mut ffi::sqlite3_file, offset: i64, amt: c_int, out: *mut *mut c_void) -> c_int {
    // SAFETY: forwarded as SQLite called it (memory-mapped reads; the
    // runner does not turn them on, and never for a WAL file).
    unsafe { after_held(file, true, || forward!(file, xFetch, offset, amt, out)) }
}

unsafe extern "C" fn unfetch(file: *mut ffi::sqlite3_file, offset: i64, p: *mut c_void) -> c_int {
    // SAFETY: forwarded as SQLite called it.
    unsafe { forward!(file, xUnfetch, offset, p) }
}

/// The methods of every file this VFS opens (version 3, as `unix`'s).
static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rusqlite::{Connection, OpenFlags};

    thread_local! {
        /// Writes this VFS handed to a real WAL file on this thread (each
        /// test has its own).
        static REAL_WAL_WRITES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
        /// Frame headers written at once because a read of the WAL came
        /// just before them, on this thread.
        static HEADERS_AFTER_READ: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    pub(crate) fn count_header_after_read() {
        HEADERS_AFTER_READ.with(|n| n.set(n.get() + 1));
    }

    fn headers_after_read() -> u64 {
        HEADERS_AFTER_READ.with(std::cell::Cell::get)
    }

    pub(crate) fn count_wal_write() {
        REAL_WAL_WRITES.with(|n| n.set(n.get() + 1));
    }

    fn wal_writes() -> u64 {
        REAL_WAL_WRITES.with(std::cell::Cell::get)
    }

    fn open(path: &std::path::Path, cache_kib: i64) -> Connection {
        register().unwrap();
        let c = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), NAME).unwrap();
        c.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-{cache_kib};"
        ))
        .unwrap();
        c
    }

    /// A connection through the plain `unix` VFS, as another process has.
    fn plain(path: &std::path::Path) -> Connection {
        Connection::open_with_flags_and_vfs(path, OpenFlags::default(), "unix").unwrap()
    }

    /// What a crash would leave on disk now: the database and its WAL as the
    /// kernel has them (every byte written so far), copied to a directory of
    /// their own while the connections stay open. Not the shared memory: the
    /// copy's first connection rebuilds the WAL index from the WAL's frames,
    /// as after a crash. (Leaking a connection instead would leave its file
    /// descriptors open after the directory is gone, and SQLite would share
    /// its state with a later file that reuses the inode number.)
    fn crashed_copy(dir: &std::path::Path) -> tempfile::TempDir {
        let copy = tempfile::tempdir().unwrap();
        for name in ["db.sqlite", "db.sqlite-wal"] {
            std::fs::copy(dir.join(name), copy.path().join(name)).unwrap();
        }
        copy
    }

    /// A database in a directory of its own with table `t(k, v)`, and a
    /// connection through this VFS with a page cache of `cache_kib`.
    fn with_table(cache_kib: i64) -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let c = open(&path, cache_kib);
        c.execute_batch("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)").unwrap();
        (dir, path, c)
    }

    fn sum(c: &Connection) -> (i64, i64) {
        c.query_row("SELECT count(*), coalesce(sum(length(v)), 0) FROM t", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap()
    }

    #[test]
    fn every_commit_is_in_the_file_when_it_returns_in_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let c = open(&path, 2000);
        c.execute_batch("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t(v);").unwrap();
        let other = plain(&path);
        for i in 0..200i64 {
            let before = (wal_writes(), headers_after_read());
            // One page, then several (table, index, and more as it grows).
            c.execute(
                "INSERT INTO t(k, v) VALUES (?, ?)",
                rusqlite::params![i, "x".repeat(10 + (i as usize % 3) * 900)],
            )
            .unwrap();
            // One write, or two when SQLite read the WAL just before the
            // commit's first frame: the page cache is shared by every
            // connection of the process (SQLITE_ENABLE_MEMORY_MANAGEMENT), so
            // other tests' connections may have taken this one's pages.
            let after_read = headers_after_read() - before.1;
            assert!(after_read <= 1, "commit {i}: one frame header follows a read at most");
            assert_eq!(wal_writes() - before.0, 1 + after_read, "commit {i}: one write");
            assert_eq!(sum(&other).0, i + 1, "another process sees commit {i} at once");
        }
        // The process dies here without closing anything: what it leaves.
        let crashed = crashed_copy(dir.path());
        let c = plain(&crashed.path().join("db.sqlite"));
        let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
        assert_eq!(sum(&c).0, 200);
    }

    #[test]
    fn a_commit_is_one_write_per_64_kib() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let wal = dir.path().join("db.sqlite-wal");
        let c = open(&path, 2000);
        c.execute_batch(
            "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT); CREATE TABLE u(k INTEGER PRIMARY KEY, v TEXT);",
        )
        .unwrap();
        let mut k = 0;
        for rows in [3, 40] {
            let size_before = std::fs::metadata(&wal).unwrap().len();
            let before = wal_writes();
            let tx = c.unchecked_transaction().unwrap();
            for _ in 0..rows {
                k += 1;
                tx.execute("INSERT INTO t VALUES (?, ?)", rusqlite::params![k, "y".repeat(3000)]).unwrap();
                tx.execute("INSERT INTO u VALUES (?, ?)", rusqlite::params![k, "v".repeat(100)]).unwrap();
            }
            tx.commit().unwrap();
            let writes = wal_writes() - before;
            let appended = std::fs::metadata(&wal).unwrap().len() - size_before;
            assert!(appended >= rows * 4096, "{rows} pages or more were appended: {appended} bytes");
            let expected = appended.div_ceil(HOLD_MAX as u64);
            assert!(writes <= expected + 1, "{appended} bytes in {writes} writes");
            if rows == 3 {
                assert_eq!(writes, 1, "a few pages ({appended} bytes), one write");
            }
            assert_eq!(sum(&plain(&path)).0, k, "committed in full");
        }
    }

    #[test]
    fn a_transaction_that_spills_and_rewrites_its_own_frames_commits_whole() {
        // A tiny page cache: the transaction spills frames before it commits,
        // then changes the same pages again (overwritten in place, and the
        // checksums rewritten at the commit).
        let (dir, path, c) = with_table(64);
        let other = plain(&path);
        for round in 0..3 {
            c.execute_batch("BEGIN IMMEDIATE").unwrap();
            for i in 0..600 {
                c.execute(
                    "INSERT INTO t(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                    rusqlite::params![i, format!("{round}-{}", "z".repeat(700))],
                )
                .unwrap();
            }
            for i in 0..600 {
                c.execute("UPDATE t SET v = v || 'w' WHERE k = ?", [i]).unwrap();
            }
            // Nothing of it is visible before the commit.
            assert_eq!(sum(&other).0, if round == 0 { 0 } else { 600 });
            c.execute_batch("COMMIT").unwrap();
            let expected = 600 * (format!("{round}-").len() as i64 + 700 + 1);
            assert_eq!(sum(&other), (600, expected), "round {round} is whole for another process");
        }
        // A rolled-back spill leaves nothing.
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        for i in 0..600 {
            c.execute("UPDATE t SET v = 'gone' WHERE k = ?", [i]).unwrap();
        }
        c.execute_batch("ROLLBACK").unwrap();
        assert_eq!(sum(&c).0, 600);
        let crashed = crashed_copy(dir.path());
        let c = plain(&crashed.path().join("db.sqlite"));
        let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
        let gone: i64 = c.query_row("SELECT count(*) FROM t WHERE v = 'gone'", [], |r| r.get(0)).unwrap();
        assert_eq!((sum(&c).0, gone), (600, 0));
    }

    #[test]
    fn frames_of_a_rolled_back_spill_never_overwrite_a_later_commit_of_another_connection() {
        let (_dir, path, a) = with_table(64);
        for i in 0..600 {
            a.execute("INSERT INTO t(k, v) VALUES (?, ?)", rusqlite::params![i, "a".repeat(700)]).unwrap();
        }
        let (b, other) = (open(&path, 2000), plain(&path));
        for round in 0..3 {
            // `a` spills frames past the last commit, reading every page from
            // the database file (the WAL copied back and emptied first), then
            // rolls back (as an interrupted statement does).
            let (busy, _, _): (i64, i64, i64) =
                a.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
            assert_eq!(busy, 0);
            a.execute_batch("BEGIN IMMEDIATE").unwrap();
            a.execute("UPDATE t SET v = ? WHERE k < 600", ["gone".repeat(150)]).unwrap();
            a.execute_batch("ROLLBACK").unwrap();
            // Another connection, then another process, commits where those
            // frames were; then `a` reads the WAL again.
            for (c, k) in [(&b, 1000 + round * 2), (&other, 1001 + round * 2)] {
                c.execute("INSERT INTO t(k, v) VALUES (?, ?)", rusqlite::params![k, "b".repeat(3000)]).unwrap();
                c.execute("UPDATE t SET v = ? WHERE k < 600", ["c".repeat(700)]).unwrap();
            }
            assert_eq!(sum(&a).0, 600 + 2 * (round + 1), "round {round}");
            let ok: String = other.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            assert_eq!(ok, "ok", "round {round}");
            let gone: i64 = other.query_row("SELECT count(*) FROM t WHERE v LIKE 'gone%'", [], |r| r.get(0)).unwrap();
            assert_eq!((sum(&other).0, gone), (600 + 2 * (round + 1), 0), "round {round}");
        }
    }

    #[test]
    fn a_commit_right_after_a_read_of_the_wal_is_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let a = open(&path, 2000);
        let b = open(&path, 2000);
        a.execute_batch("CREATE TABLE t(k INTEGER PRIMARY KEY, v INTEGER); INSERT INTO t VALUES (1, 0);").unwrap();
        let other = plain(&path);
        for i in 1..=50 {
            // Each commit by one drops the other's page cache: the next
            // update reads its page from the WAL, then commits one frame.
            let (writer, reader) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
            writer.execute("UPDATE t SET v = ? WHERE k = 1", [i]).unwrap();
            let seen: i64 = reader.query_row("SELECT v FROM t WHERE k = 1", [], |r| r.get(0)).unwrap();
            assert_eq!(seen, i, "the other connection reads commit {i}");
            let seen: i64 = other.query_row("SELECT v FROM t WHERE k = 1", [], |r| r.get(0)).unwrap();
            assert_eq!(seen, i, "another process reads commit {i}");
        }
    }

    #[test]
    fn the_wal_starts_over_and_full_sync_pads_as_before() {
        let (dir, path, c) = with_table(2000);
        for i in 0..50 {
            c.execute("INSERT INTO t(k, v) VALUES (?, 'a')", [i]).unwrap();
        }
        // Copied and started over: the next commit writes the WAL header
        // at the start of the file again.
        let (busy, _, _): (i64, i64, i64) =
            c.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        assert_eq!(busy, 0);
        c.execute_batch("PRAGMA synchronous=FULL").unwrap();
        for i in 50..100 {
            c.execute("INSERT INTO t(k, v) VALUES (?, 'b')", [i]).unwrap();
        }
        assert_eq!(sum(&plain(&path)).0, 100);
        let crashed = crashed_copy(dir.path());
        let c = plain(&crashed.path().join("db.sqlite"));
        let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!((ok.as_str(), sum(&c).0), ("ok", 100));
    }
}
