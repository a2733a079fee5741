//! The deadline of a request's body (`body_timeout`, docs/SERVER.md): the
//! whole body must have arrived that long after the handler first asked
//! for it (not from the head: the audit log's check and the wait for a
//! body slot come first, and are not the client's time). The note records
//! when the body ended, where the request's own clock (`request_timeout`)
//! starts.
//! A client that sends it slower (a slow upload, a body trickled a byte at
//! a time to hold a connection) gets an error from the body, which the
//! handler sees as an unreadable body; the request's note records it, and
//! the observing layer answers 408 (HK1310) in the family's shape.
//!
//! A whole-body deadline rather than an idle timeout between frames: a
//! trickle of one byte just under an idle timeout would keep a request
//! open for as long as its client likes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::state::RequestNote;
use crate::error::ServeError;

/// A request body that fails once its deadline has passed.
pub struct Deadline {
    inner: Body,
    /// Set at the first poll.
    deadline: Option<Pin<Box<Sleep>>>,
    limit: Duration,
    note: RequestNote,
}

impl Deadline {
    /// `inner` must have arrived within `limit` from its first poll; when
    /// it has not, `note` says so (`slow_body`).
    pub fn wrap(inner: Body, limit: Duration, note: RequestNote) -> Body {
        if inner.is_end_stream() {
            return inner;
        }
        Body::new(Deadline {
            inner,
            deadline: None,
            limit,
            note,
        })
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let limit = this.limit;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + limit)));
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if frame.is_none() || this.inner.is_end_stream() {
                this.note.with(|n| {
                    n.body_read.get_or_insert_with(std::time::Instant::now);
                });
            }
            return Poll::Ready(frame);
        }
        if deadline.as_mut().poll(cx).is_ready() {
            let seconds = this.limit.as_secs();
            this.note.with(|n| n.slow_body = Some(seconds));
            return Poll::Ready(Some(Err(axum::Error::new(ServeError::SlowBody {
                seconds,
            }))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
