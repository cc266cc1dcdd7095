//! Wall-clock deadlines for guests, with wasmtime's epoch interruption.
//!
//! Compiled code checks the engine's epoch at function entries and loop
//! headers; a thread of the runner advances the epoch every [`EPOCH_TICK`].
//! Each store asks to be called back at the next tick: before its deadline the
//! guest yields to tokio (so a busy guest never pins a worker thread), after it
//! the guest traps with [`wasmtime::Trap::Interrupt`]. A guest blocked in a
//! host call (a sleep, an outbound request) does not run Wasm, so callers also
//! bound the whole call with a tokio timeout at the same deadline.

use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, Trap, UpdateDeadline};

/// How often the epoch advances: the granularity of deadlines and how long a
/// busy guest runs before it yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Advances `engine`'s epoch every [`EPOCH_TICK`] on a thread of its own,
/// for the life of the process.
pub fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let engine = engine.weak();
    std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || loop {
        std::thread::sleep(EPOCH_TICK);
        match engine.upgrade() {
            Some(e) => e.increment_epoch(),
            None => return,
        }
    })?;
    Ok(())
}

/// Makes `store`'s guest trap once `deadline` has passed while it runs Wasm,
/// and yield at every epoch tick before that.
pub fn limit_store<T: 'static>(store: &mut Store<T>, deadline: Instant) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
}

/// Whether `e` is the trap [`limit_store`] raises at the deadline.
pub fn is_deadline_trap(e: &wasmtime::Error) -> bool {
    e.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
}
