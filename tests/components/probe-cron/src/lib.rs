//! A test cron component: each run records its start and end (wall clock, µs)
//! in SQLite and takes `run_ms` (a component variable) to finish, so the tests
//! can check the firing rate and that runs never overlap.

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

fn run(metadata: &Metadata) -> Result<(), String> {
    let db = Connection::open_default().map_err(|e| e.to_string())?;
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
