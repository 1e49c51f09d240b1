//! A cap on how many bytes a bundle's response body may carry.
//!
//! A guest that streams without end is cut off at its limit: the body ends with an
//! error (the client sees an aborted response) and the guest's next write fails;
//! the runtime's guarded body logs it once, naming the bundle and the limit.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use wasmtime_wasi_http::Error as HttpError;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

pub struct LimitedBody {
    inner: HyperOutgoingBody,
    left: u64,
    limit: u64,
}

impl LimitedBody {
    pub fn new(inner: HyperOutgoingBody, limit: u64) -> Self {
        Self {
            inner,
            left: limit,
            limit,
        }
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let len = data.len() as u64;
            if len > self.left {
                self.left = 0;
                return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(self.limit)))));
            }
            self.left -= len;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
