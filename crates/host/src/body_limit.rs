//! The host-side limit on request bodies. A body whose declared length
//! (`content-length`) is over the limit is refused before any guest runs
//! ([`declared_too_large`]); any other body (chunked, or a self request's) is
//! counted as it streams to the guest ([`LimitedBody`]): the frame that
//! crosses the limit is never delivered, the guest reads an error instead and
//! the runner is told, so it can answer 413 and drop the instance.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;
use wasmtime_wasi_http::Error as HttpError;

/// Whether a body declares (through its exact size hint, i.e. hyper's parsed
/// `content-length`) more than `limit` bytes.
pub fn declared_too_large<B: Body>(body: &B, limit: u64) -> bool {
    body.size_hint().lower() > limit
}

/// A request body cut off after `limit` bytes.
pub struct LimitedBody<B> {
    inner: B,
    limit: u64,
    seen: u64,
    /// Fired (once) when the body crosses the limit.
    exceeded: Option<oneshot::Sender<()>>,
}

impl<B> LimitedBody<B> {
    /// Wraps `inner`; `exceeded` fires when it crosses `limit`.
    pub fn new(inner: B, limit: u64, exceeded: oneshot::Sender<()>) -> Self {
        Self { inner, limit, seen: 0, exceeded: Some(exceeded) }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<HttpError>,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        if this.seen > this.limit {
            return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(this.seen)))));
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => f,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            this.seen = this.seen.saturating_add(data.len() as u64);
            if this.seen > this.limit {
                // Tell the runner first, so its 413 wins over whatever the
                // guest answers once it sees the error.
                if let Some(tx) = this.exceeded.take() {
                    let _ = tx.send(());
                }
                return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(this.seen)))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    /// `n` data frames of `size` bytes, as a chunked upload arrives.
    struct Chunks {
        left: usize,
        size: usize,
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = HttpError;
        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            self.left -= 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; self.size])))))
        }
    }

    #[test]
    fn declared_lengths_over_the_limit_are_seen_up_front() {
        assert!(declared_too_large(&Full::new(Bytes::from(vec![0; 11])), 10));
        assert!(!declared_too_large(&Full::new(Bytes::from(vec![0; 10])), 10));
        assert!(!declared_too_large(&Chunks { left: 100, size: 100 }, 10), "a chunked body declares nothing");
    }

    #[tokio::test]
    async fn a_body_at_the_limit_passes_whole() {
        let (tx, mut rx) = oneshot::channel();
        let got = LimitedBody::new(Chunks { left: 10, size: 10 }, 100, tx).collect().await.unwrap().to_bytes();
        assert_eq!(got.len(), 100);
        assert!(rx.try_recv().is_err(), "not exceeded");
    }

    #[tokio::test]
    async fn a_chunked_body_over_the_limit_stops_at_the_crossing_frame_and_tells_the_runner() {
        let (tx, mut rx) = oneshot::channel();
        let mut body = LimitedBody::new(Chunks { left: 1000, size: 64 }, 200, tx);
        let mut delivered = 0;
        let err = loop {
            match body.frame().await {
                Some(Ok(f)) => delivered += f.into_data().map(|d| d.len()).unwrap_or(0),
                Some(Err(e)) => break e,
                None => panic!("the body ended under the limit"),
            }
        };
        assert_eq!(delivered, 192, "only whole frames under the limit reach the guest");
        assert!(matches!(err, HttpError::HttpRequestBodySize(Some(256))), "{err:?}");
        assert!(rx.try_recv().is_ok(), "the runner was told");
        assert!(matches!(body.frame().await, Some(Err(_))), "and it stays cut off");
    }
}
