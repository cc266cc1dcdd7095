//! A future that completes at a monotonic-clock deadline, for call time-outs
//! inside spin-sdk's executor (it waits on a `wasi:clocks` pollable).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use wasi::clocks::monotonic_clock;

/// Completes once the monotonic clock reaches the deadline.
pub struct Deadline {
    at: monotonic_clock::Instant,
}

impl Deadline {
    /// A deadline `ms` from now.
    pub fn after_ms(ms: u64) -> Self {
        Self { at: monotonic_clock::now().saturating_add(ms.saturating_mul(1_000_000)) }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if monotonic_clock::now() >= self.at {
            return Poll::Ready(());
        }
        spin_executor::push_waker(monotonic_clock::subscribe_instant(self.at), cx.waker().clone());
        Poll::Pending
    }
}

/// Milliseconds elapsed since `start` on the monotonic clock.
pub fn elapsed_ms(start: monotonic_clock::Instant) -> i64 {
    (monotonic_clock::now().saturating_sub(start) / 1_000_000) as i64
}
