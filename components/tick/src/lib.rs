//! The tick (cron): config, then the store's stepper with the real transport.
//! It claims due machines and keeps stepping them, each step one upstream
//! call recorded before the next, until `tick_budget_ms` runs out. Per step,
//! three moves: claim (one `BEGIN IMMEDIATE` transaction: check the desired
//! state, take the lease, write the request-log row whose id becomes the
//! request id), call (no lock held), record (one transaction: response
//! fields, the machine's new state, the lease released). Up to
//! `tick_concurrency` calls are in flight at once.

mod config;
mod deadline;
mod error;
mod step;

spin_sdk::wit_bindgen::generate!({
    world: "spin-cron",
    path: "../../wit",
    runtime_path: "::spin_sdk::wit_bindgen::rt",
});

struct Tick;

impl Guest for Tick {
    fn handle_cron_event(_metadata: Metadata) -> Result<(), Error> {
        spin_sdk::http::run(step::tick()).map_err(|e| {
            eprintln!("tick failed: {e}");
            Error::Other(e.to_string())
        })
    }
}

export!(Tick);
