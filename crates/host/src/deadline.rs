//! Wall-clock deadlines for guests, with wasmtime's epoch interruption.
//!
//! Compiled code checks the engine's epoch at function entries and loop
//! headers; the runner's [watchdog](crate::watchdog) advances the epoch every
//! [`EPOCH_TICK`]. Each store asks to be called back at the next tick, and a
//! busy guest then yields to tokio, so it never pins a worker thread.
//!
//! An HTTP request's guest runs in a task the watchdog aborts at its deadline
//! ([`yield_at_ticks`]): the task is dropped at its next yield, whether it runs
//! Wasm or waits in a host call, with no timer per request. A cron run
//! ([`limit_store`]) also traps with [`wasmtime::Trap::Interrupt`] at its
//! deadline, and its caller bounds host calls with a tokio timeout.

use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline};

/// How often the epoch advances: the granularity of deadlines and how long a
/// busy guest runs before it yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Makes `store`'s guest yield to the async runtime at every epoch tick
/// while it runs Wasm, without a deadline of its own.
pub fn yield_at_ticks<T: 'static>(store: &mut Store<T>) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
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
