//! A test cron component: each run records its start and end (wall clock, µs)
//! in SQLite and takes `run_ms` (a component variable) to finish, so the tests
//! can check the firing rate and that runs never overlap. With `hang` set to
//! `loop` (a busy loop) or `sleep` (a host wait), each run records its start in
//! `cron_hangs` and never ends, for the cron deadline's tests.

use spin_sdk::sqlite3::{Connection, Value};

spin_sdk::wit_bindgen::generate!({
    world: "spin-cron",
    path: "../../../wit",
    runtime_path: "::spin_sdk::wit_bindgen::rt",
});


struct Cron;

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn hang(db: &Connection, how: &str) -> Result<(), String> {
    db.execute("CREATE TABLE IF NOT EXISTS cron_hangs (id INTEGER PRIMARY KEY AUTOINCREMENT, started_us INTEGER)", &[])
        .map_err(|e| e.to_string())?;
    db.execute("INSERT INTO cron_hangs (started_us) VALUES (?)", &[Value::Integer(now_us())]).map_err(|e| e.to_string())?;
    if how == "sleep" {
        std::thread::sleep(std::time::Duration::from_secs(24 * 3600));
        return Ok(());
    }
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn run(metadata: &Metadata) -> Result<(), String> {
    let db = Connection::open_default().map_err(|e| e.to_string())?;
    let how = spin_sdk::variables::get("hang").unwrap_or_default();
    if !how.is_empty() {
        return hang(&db, &how);
    }
    let start = now_us();
    let run_ms: u64 = spin_sdk::variables::get("run_ms").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    std::thread::sleep(std::time::Duration::from_millis(run_ms));
    db.execute(
        "CREATE TABLE IF NOT EXISTS cron_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started_us INTEGER, ended_us INTEGER, ts INTEGER)",
        &[],
    )
    .map_err(|e| e.to_string())?;
    db.execute(
        "INSERT INTO cron_runs (started_us, ended_us, ts) VALUES (?, ?, ?)",
        &[Value::Integer(start), Value::Integer(now_us()), Value::Integer(metadata.timestamp as i64)],
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

impl Guest for Cron {
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        run(&metadata).map_err(Error::Other)
    }
}

export!(Cron);
