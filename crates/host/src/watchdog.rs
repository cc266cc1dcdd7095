//! The runner's watchdog: one thread that keeps wall-clock limits for the
//! whole process, so no request and no connection needs a timer of its own
//! (a tokio timer per request measurably cost throughput). Every
//! [`EPOCH_TICK`] it advances the engine's epoch (see [`crate::deadline`])
//! and aborts the guest tasks past their request deadline; every
//! [`IDLE_SCAN_TICKS`] ticks it closes the keep-alive connections idle for
//! longer than the idle timeout.
//!
//! Registering is one push under a lock; nothing is deregistered: an entry
//! whose task finished or whose connection closed is dropped on the next
//! scan.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use wasmtime::Engine;

use crate::connections::ConnState;
use crate::deadline::EPOCH_TICK;
use crate::runner_metrics::{Refusal, RunnerMetrics};

/// Idle connections are looked for every this many ticks (100 ms).
pub const IDLE_SCAN_TICKS: u32 = 10;

/// A guest task and its deadline.
struct Request {
    deadline: Instant,
    task: AbortHandle,
    component: Arc<str>,
    path: Box<str>,
}

/// A connection; dropping `close` tells it to close.
struct Connection {
    state: Arc<ConnState>,
    close: oneshot::Sender<()>,
}

/// What the watchdog watches.
pub struct Watchdog {
    requests: Mutex<Vec<Request>>,
    connections: Mutex<Vec<Connection>>,
    idle_timeout: Duration,
    metrics: Arc<RunnerMetrics>,
}

impl Watchdog {
    /// Starts the watchdog thread for `engine`; it ends when the engine or
    /// the returned watchdog is dropped.
    pub fn start(engine: &Engine, idle_timeout: Duration, metrics: Arc<RunnerMetrics>) -> std::io::Result<Arc<Self>> {
        let this = Arc::new(Self {
            requests: Mutex::new(Vec::new()),
            connections: Mutex::new(Vec::new()),
            idle_timeout,
            metrics,
        });
        let engine = engine.weak();
        let watchdog: Weak<Self> = Arc::downgrade(&this);
        std::thread::Builder::new().name("watchdog".into()).spawn(move || {
            let mut tick: u32 = 0;
            loop {
                std::thread::sleep(EPOCH_TICK);
                let (Some(engine), Some(watchdog)) = (engine.upgrade(), watchdog.upgrade()) else {
                    return;
                };
                engine.increment_epoch();
                watchdog.expire_requests(Instant::now());
                tick = tick.wrapping_add(1);
                if tick.is_multiple_of(IDLE_SCAN_TICKS) {
                    watchdog.close_idle();
                }
            }
        })?;
        Ok(this)
    }

    /// Aborts `task` (a request's guest, `component` serving `path`) if it is
    /// still running at `deadline`.
    pub fn watch_request(&self, deadline: Instant, task: AbortHandle, component: Arc<str>, path: &str) {
        let r = Request { deadline, task, component, path: path.into() };
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    }

    /// Watches a connection; the returned receiver resolves (with an error,
    /// its sender dropped) once the connection has been idle for the idle
    /// timeout. Dropping the receiver ends the watch.
    pub fn watch_connection(&self, state: Arc<ConnState>) -> oneshot::Receiver<()> {
        let (close, closed) = oneshot::channel();
        self.connections.lock().unwrap_or_else(|e| e.into_inner()).push(Connection { state, close });
        closed
    }

    fn expire_requests(&self, now: Instant) {
        let mut expired = Vec::new();
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).retain_mut(|r| {
            if r.task.is_finished() {
                return false;
            }
            if r.deadline > now {
                return true;
            }
            // Counted before the abort, so whoever sees the task end sees it counted.
            let total = self.metrics.refused(Refusal::Deadline);
            r.task.abort();
            expired.push((r.component.clone(), std::mem::take(&mut r.path), total));
            false
        });
        for (component, path, total) in expired {
            if let Some(total) = total {
                tracing::warn!(target: "http", component = &*component, path = &*path, reason = "deadline", total,
                    "guest stopped at the request deadline; its instance was dropped");
            }
        }
    }

    /// Drops the entries of closed connections, and those of idle ones,
    /// which tells them to close (their receiver sees the sender dropped).
    fn close_idle(&self) {
        let idle_ms = self.idle_timeout.as_millis() as u64;
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| !c.close.is_closed() && !c.state.idle_for(idle_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watchdog(idle: Duration) -> (Engine, Arc<Watchdog>) {
        let engine = Engine::default();
        let w = Watchdog::start(&engine, idle, Arc::new(RunnerMetrics::new(8))).unwrap();
        (engine, w)
    }

    #[tokio::test]
    async fn a_task_past_its_deadline_is_aborted_and_counted() {
        let (_engine, w) = watchdog(Duration::from_secs(60));
        let stuck = tokio::spawn(std::future::pending::<()>());
        let quick = tokio::spawn(async {});
        w.watch_request(Instant::now() + Duration::from_millis(50), stuck.abort_handle(), "c".into(), "/p");
        w.watch_request(Instant::now() + Duration::from_millis(50), quick.abort_handle(), "c".into(), "/q");
        let started = Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(5), stuck).await.unwrap().unwrap_err();
        assert!(err.is_cancelled());
        assert!(started.elapsed() >= Duration::from_millis(40), "not before the deadline");
        quick.await.unwrap();
        assert_eq!(w.metrics.refused_total(Refusal::Deadline), 1, "only the stuck one");
        assert!(w.requests.lock().unwrap().is_empty(), "finished and aborted entries are dropped");
    }

    #[tokio::test]
    async fn an_idle_connection_is_told_to_close_and_a_busy_one_is_not() {
        let (_engine, w) = watchdog(Duration::from_millis(100));
        let idle = ConnState::new();
        let busy = ConnState::new();
        let _in_flight = busy.request_started();
        let idle_closed = w.watch_connection(idle);
        let mut busy_closed = w.watch_connection(busy);
        tokio::time::timeout(Duration::from_secs(5), idle_closed).await.unwrap().unwrap_err();
        assert!(busy_closed.try_recv().is_err_and(|e| e == oneshot::error::TryRecvError::Empty));
        drop(busy_closed);
        // A closed connection's entry goes on the next scan.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !w.connections.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "entries linger");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
