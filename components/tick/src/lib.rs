//! The tick (cron): advances each due binding worker by exactly one upstream
//! call. Per worker, three moves: claim (one `BEGIN IMMEDIATE` transaction:
//! check the desired state, take the lease, write the request-log row whose
//! id becomes the request id), call (no lock held), record (one transaction:
//! response fields, the worker's new state, the lease released). Up to
//! `tick_concurrency` workers move at once.

mod config;
mod deadline;
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
            Error::Other(e)
        })
    }
}

export!(Tick);
