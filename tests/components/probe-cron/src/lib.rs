//! A test cron component: each run records its start and end (wall clock, µs)
//! in SQLite and takes `run_ms` (a component variable) to finish, so the tests
//! can check the firing rate and how runs overlap. With `hang` set to `loop`
//! (a busy loop) or `sleep` (a host wait), each run records its start in
//! `cron_hangs` and never ends, for the cron deadline's tests; with
//! `hang_runs` = N as well, only the first N runs do (the others run as
//! usual), for a run stuck while later ones go on.

use spin_sdk::sqlite3::{Connection, Value};

spin_sdk::wit_bindgen::generate!({
    world: "spin-cron",
    path: "../../../wit",
    runtime_path: "::spin_sdk::wit_bindgen::rt",
});

struct Cron;

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Whether this run hangs: it records its start in `cron_hangs` if fewer
/// than `hang_runs` runs did (any number when `hang_runs` is 0 or unset),
/// in one statement, so two runs at once cannot both take the last place.
fn claims_a_hang(db: &Connection) -> Result<bool, String> {
    let limit = match spin_sdk::variables::get("hang_runs").ok().and_then(|v| v.parse::<i64>().ok()) {
        Some(n) if n > 0 => n,
        _ => i64::MAX,
    };
    db.execute("CREATE TABLE IF NOT EXISTS cron_hangs (id INTEGER PRIMARY KEY AUTOINCREMENT, started_us INTEGER)", &[])
        .map_err(|e| e.to_string())?;
    let inserted = db
        .execute(
            "INSERT INTO cron_hangs (started_us) SELECT ? WHERE (SELECT COUNT(*) FROM cron_hangs) < ? RETURNING id",
            &[Value::Integer(now_us()), Value::Integer(limit)],
        )
        .map_err(|e| e.to_string())?;
    let claimed = inserted.rows().next().is_some();
    Ok(claimed)
}

fn hang(how: &str) -> Result<(), String> {
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
    if !how.is_empty() && claims_a_hang(&db)? {
        return hang(&how);
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
