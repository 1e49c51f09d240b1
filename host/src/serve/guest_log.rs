//! Guest stdout/stderr, sent to the host log line by line, tagged with the bundle.
//!
//! Output is size-limited per request: past the budget, lines are dropped and one
//! warning says so. Across requests, the bundle's [`LogLimiter`] caps the lines per
//! second ([`LINES_PER_SECOND`]) with a "suppressed" summary, within the host's
//! budget for all bundles together. A guest that prints without end cannot flood
//! the host log, and neither can many of them.

use crate::serve::log_limit::{Admit, LogLimiter};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Default bytes of guest output logged per request.
pub const DEFAULT_BUDGET: usize = 64 * 1024;
/// Longest line logged as one event; longer lines are split.
const MAX_LINE: usize = 4096;
/// Guest output lines logged per bundle per second, over all its requests.
pub const LINES_PER_SECOND: u32 = 200;

/// The output budget of one request, shared by its stdout and stderr.
#[derive(Clone)]
pub struct OutputBudget {
    left: Arc<AtomicUsize>,
    warned: Arc<AtomicBool>,
}

impl OutputBudget {
    pub fn new(bytes: usize) -> Self {
        Self {
            left: Arc::new(AtomicUsize::new(bytes)),
            warned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Gives the budget `bytes` again, for the next request of a reused instance.
    pub fn refill(&self, bytes: usize) {
        self.left.store(bytes, Ordering::Relaxed);
        self.warned.store(false, Ordering::Relaxed);
    }

    /// Takes up to `wanted` bytes of budget; returns how many were granted.
    fn take(&self, wanted: usize) -> usize {
        let mut granted = 0;
        let _ = self
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                granted = left.min(wanted);
                Some(left - granted)
            });
        granted
    }
}

/// One of the guest's output streams.
#[derive(Clone)]
pub struct GuestLog {
    bundle: Arc<str>,
    stream: &'static str,
    budget: OutputBudget,
    limiter: Arc<LogLimiter>,
}

impl GuestLog {
    pub fn new(
        bundle: Arc<str>,
        stream: &'static str,
        budget: OutputBudget,
        limiter: Arc<LogLimiter>,
    ) -> Self {
        Self {
            bundle,
            stream,
            budget,
            limiter,
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            log: self.clone(),
            pending: Mutex::new(Vec::new()),
        })
    }
}

struct LineWriter {
    log: GuestLog,
    pending: Mutex<Vec<u8>>,
}

impl LineWriter {
    fn emit(&self, line: &[u8]) {
        let Admit::Log { suppressed } = self
            .log
            .limiter
            .admit_up_to("guest-output", LINES_PER_SECOND)
        else {
            return;
        };
        LogLimiter::log_suppressed(&self.log.bundle, "guest-output", suppressed);
        let text = String::from_utf8_lossy(line);
        tracing::info!(
            target: "gtc::guest",
            bundle = %self.log.bundle,
            stream = self.log.stream,
            "{}",
            text.trim_end_matches('\r')
        );
    }

    fn accept(&self, bytes: &[u8]) {
        let granted = self.log.budget.take(bytes.len());
        if granted < bytes.len()
            && !self.log.budget.warned.swap(true, Ordering::Relaxed)
            && let Admit::Log { suppressed } = self.log.limiter.admit("guest-output-budget")
        {
            // Once per request, and within the bundle's and the host's budgets.
            LogLimiter::log_suppressed(&self.log.bundle, "guest-output-budget", suppressed);
            tracing::warn!(
                target: "gtc::guest",
                bundle = %self.log.bundle,
                "guest output exceeded its per-request budget; further output is dropped"
            );
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend_from_slice(&bytes[..granted]);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            self.emit(&line[..line.len() - 1]);
        }
        if pending.len() >= MAX_LINE {
            let line: Vec<u8> = std::mem::take(&mut *pending);
            self.emit(&line);
        }
    }

    fn flush_pending(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.is_empty() {
            let line = std::mem::take(&mut *pending);
            drop(pending);
            self.emit(&line);
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.accept(buf);
        // Everything is accepted (dropped past the budget): the guest never blocks
        // on its log.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flush_pending();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush_pending();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_shared_and_bounded() {
        let budget = OutputBudget::new(10);
        assert_eq!(budget.take(6), 6);
        assert_eq!(budget.clone().take(6), 4);
        assert_eq!(budget.take(1), 0);
    }
}
