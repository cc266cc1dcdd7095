//! Wall-clock deadlines for guests, with wasmtime's epoch interruption.
//!
//! Compiled code checks the engine's epoch at function entries and loop
//! headers; the runner's [watchdog](crate::watchdog) advances the epoch every
//! [`EPOCH_TICK`]. Each store asks to be called back at the next tick, and a
//! guest that has been busy since the tick before (its task not suspended in
//! between) then yields to tokio, so it never pins a worker thread.
//!
//! A guest that waited in a host call since the last tick was not busy, and
//! goes on at the tick instead of yielding. The wait that matters here is
//! the write turn: a request queues for it for milliseconds, so a tick has
//! nearly always passed when it gets the turn, and yielding at its next
//! function entry would send the holder of the one serial resource to the
//! back of the run queue (measured with acceptance alone: 170 to 195 µs on
//! average between an acceptance's `BEGIN IMMEDIATE` and its next statement,
//! of a 591 µs turn; 29 µs of a 386 µs turn since).
//! [`Polls`] counts the polls of the guest's task, which is how the callback
//! tells the two apart.
//!
//! An HTTP request's guest runs in a task the watchdog aborts at its deadline
//! ([`yield_when_busy`]): the task is dropped at its next yield, whether it runs
//! Wasm or waits in a host call, with no timer per request. A cron run
//! ([`limit_store`]) also traps with [`wasmtime::Trap::Interrupt`] at its
//! deadline, and its caller bounds host calls with a tokio timeout.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline};

/// How often the epoch advances: the granularity of deadlines. A busy guest
/// runs one to two of these before it yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How many times a guest's task has been polled: shared by the task
/// ([`Polls::count`]) and the store's epoch callback.
#[derive(Debug, Clone, Default)]
pub struct Polls(Arc<AtomicU64>);

impl Polls {
    /// `task`, counting each of its polls.
    pub async fn count<F: Future>(self, task: F) -> F::Output {
        let mut task = std::pin::pin!(task);
        std::future::poll_fn(|cx| {
            self.0.fetch_add(1, Ordering::Relaxed);
            task.as_mut().poll(cx)
        })
        .await
    }
}

/// What the epoch callback decides at a tick: the guest yields only when its
/// task is in the same poll as at the previous tick, i.e. it has run (Wasm
/// or host calls that did not wait) for at least a whole tick.
#[derive(Debug)]
struct BusyGuest {
    polls: Polls,
    /// The poll the previous tick found.
    seen: u64,
}

impl BusyGuest {
    fn new(polls: Polls) -> Self {
        Self { polls, seen: u64::MAX }
    }

    fn at_tick(&mut self) -> UpdateDeadline {
        let now = self.polls.0.load(Ordering::Relaxed);
        let busy = now == self.seen;
        self.seen = now;
        if busy {
            UpdateDeadline::Yield(1)
        } else {
            UpdateDeadline::Continue(1)
        }
    }
}

/// Makes `store`'s guest yield to the async runtime at an epoch tick when it
/// has been busy since the tick before, without a deadline of its own. The
/// guest's task must run inside [`Polls::count`] of the answer.
pub fn yield_when_busy<T: 'static>(store: &mut Store<T>) -> Polls {
    at_ticks(store, None)
}

/// Makes `store`'s guest trap once `deadline` has passed while it runs Wasm,
/// and before that yield as [`yield_when_busy`] says. The guest's task must
/// run inside [`Polls::count`] of the answer.
pub fn limit_store<T: 'static>(store: &mut Store<T>, deadline: Instant) -> Polls {
    at_ticks(store, Some(deadline))
}

/// The epoch callback of both: a trap past `deadline`, else [`BusyGuest`]'s
/// decision.
fn at_ticks<T: 'static>(store: &mut Store<T>, deadline: Option<Instant>) -> Polls {
    let polls = Polls::default();
    let mut busy = BusyGuest::new(polls.clone());
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(busy.at_tick())
        }
    });
    polls
}

/// Whether `e` is the trap [`limit_store`] raises at the deadline.
pub fn is_deadline_trap(e: &wasmtime::Error) -> bool {
    e.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};
    use wasmtime::{Caller, Config, Engine, Linker, Module};

    /// A core module whose export `run` calls the host's `step` and then a
    /// function of its own (whose entry checks the epoch), three times.
    fn step_then_call_thrice() -> Vec<u8> {
        let header: &[u8] = &[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        let types: &[u8] = &[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]; // () -> ()
        let import: &[u8] = &[0x02, 0x0d, 0x01, 0x04, b'h', b'o', b's', b't', 0x04, b's', b't', b'e', b'p', 0x00, 0x00];
        let functions: &[u8] = &[0x03, 0x03, 0x02, 0x00, 0x00]; // 1 (run) and 2 (leaf)
        let export: &[u8] = &[0x07, 0x07, 0x01, 0x03, b'r', b'u', b'n', 0x00, 0x01];
        let code: &[u8] = &[0x0a, 0x13, 0x02];
        // run: (call step, call leaf) three times; leaf: nothing.
        let run: &[u8] = &[0x0e, 0x00, 0x10, 0x00, 0x10, 0x02, 0x10, 0x00, 0x10, 0x02, 0x10, 0x00, 0x10, 0x02, 0x0b];
        let leaf: &[u8] = &[0x02, 0x00, 0x0b];
        [header, types, import, functions, export, code, run, leaf].concat()
    }

    /// What the host's `step` does, call after call.
    enum Step {
        /// Advances the epoch, as the watchdog does at a tick, and returns.
        Tick,
        /// Waits until the test says so.
        Wait(tokio::sync::oneshot::Receiver<()>),
        /// Returns at once.
        Nothing,
    }

    /// Polls `task` once.
    fn poll_once<F: Future>(task: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        task.poll(&mut Context::from_waker(Waker::noop()))
    }

    /// The engine, and `run` of [`step_then_call_thrice`] in a store set up
    /// by [`yield_when_busy`], its steps `steps`, inside [`Polls::count`].
    fn guest(steps: Vec<Step>) -> (Engine, Polls, impl Future<Output = wasmtime::Result<()>>) {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).unwrap();
        let module = Module::new(&engine, step_then_call_thrice()).unwrap();
        let steps = Mutex::new(VecDeque::from(steps));
        let mut linker = Linker::new(&engine);
        linker
            .func_wrap_async("host", "step", move |caller: Caller<'_, ()>, (): ()| {
                let step = steps.lock().unwrap().pop_front().unwrap_or(Step::Nothing);
                let wait = match step {
                    Step::Tick => {
                        caller.engine().increment_epoch();
                        None
                    }
                    Step::Wait(rx) => Some(rx),
                    Step::Nothing => None,
                };
                Box::new(async move {
                    if let Some(rx) = wait {
                        let _ = rx.await;
                    }
                })
            })
            .unwrap();
        let mut store = Store::new(&engine, ());
        let polls = yield_when_busy(&mut store);
        let task = polls.clone().count(async move {
            let instance = linker.instantiate_async(&mut store, &module).await?;
            let run = instance.get_typed_func::<(), ()>(&mut store, "run")?;
            run.call_async(&mut store, ()).await
        });
        (engine, polls, task)
    }

    #[test]
    fn a_guest_yields_at_a_tick_only_when_its_task_ran_since_the_tick_before() {
        let polls = Polls::default();
        let mut busy = BusyGuest::new(polls.clone());
        let poll = || polls.0.fetch_add(1, Ordering::Relaxed);
        poll();
        assert!(matches!(busy.at_tick(), UpdateDeadline::Continue(1)), "the first tick of a poll");
        assert!(matches!(busy.at_tick(), UpdateDeadline::Yield(1)), "busy for a whole tick");
        poll();
        assert!(matches!(busy.at_tick(), UpdateDeadline::Continue(1)), "suspended and polled again since");
        poll();
        poll();
        assert!(matches!(busy.at_tick(), UpdateDeadline::Continue(1)));
        assert!(matches!(busy.at_tick(), UpdateDeadline::Yield(1)));
        assert!(matches!(busy.at_tick(), UpdateDeadline::Yield(1)), "still busy");
    }

    #[test]
    fn a_guest_busy_across_ticks_yields_and_goes_on_when_polled_again() {
        let (_engine, polls, task) = guest(vec![Step::Tick, Step::Tick, Step::Tick]);
        let mut task = std::pin::pin!(task);
        // Ticks 1 and 2 come while it runs: it goes on at the first and
        // yields at the second.
        assert!(poll_once(task.as_mut()).is_pending(), "a guest busy for a whole tick must yield");
        match poll_once(task.as_mut()) {
            Poll::Ready(r) => r.unwrap(),
            Poll::Pending => panic!("polled again, the guest must go on past the next tick"),
        }
        assert_eq!(polls.0.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_guest_that_waited_in_a_host_call_past_ticks_goes_on_without_yielding() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (engine, polls, task) = guest(vec![Step::Wait(rx)]);
        let mut task = std::pin::pin!(task);
        assert!(poll_once(task.as_mut()).is_pending(), "it waits in its first step");
        // Two ticks pass while it waits (as a write turn's wait does).
        engine.increment_epoch();
        engine.increment_epoch();
        tx.send(()).unwrap();
        match poll_once(task.as_mut()) {
            Poll::Ready(r) => r.unwrap(),
            Poll::Pending => panic!("a guest that waited yielded at its first function entry after the wait"),
        }
        assert_eq!(polls.0.load(Ordering::Relaxed), 2);
    }
}
