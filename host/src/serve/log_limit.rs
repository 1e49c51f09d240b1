//! Rate-limited logging for what the host says on a guest's behalf.
//!
//! A guest controls how often the host has something to say about it: a denied
//! outgoing request, a failed request, a refused admission. Without a limit one
//! request can write a million log lines (a denied request in a loop is cheap for
//! the guest and costs the host a formatted line each time). So every such line
//! goes through a [`LogLimiter`] kept per bundle: at most [`LINES_PER_WINDOW`]
//! lines of one kind per [`WINDOW`], and then one summary "N similar lines
//! suppressed" when the next window opens.
//!
//! Lines the host's libraries (wasmtime, hyper) log on a guest's behalf carry no
//! bundle; [`CallsiteLimit`] applies the same rule per call site to every event of
//! those crates, as a tracing layer installed by the binary.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Length of one counting window.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Lines of one kind logged per window; past it they are counted, not written.
pub const LINES_PER_WINDOW: u32 = 20;

#[derive(Debug)]
struct Window {
    started: Instant,
    emitted: u32,
    suppressed: u64,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            started: now,
            emitted: 0,
            suppressed: 0,
        }
    }

    /// One more line at `now`: `Some(suppressed in the window before)` when it
    /// may be written, `None` when it is over the budget (and counted).
    fn admit(&mut self, now: Instant, per_window: u32) -> Option<u64> {
        let mut suppressed = 0;
        if now.duration_since(self.started) >= WINDOW {
            suppressed = self.suppressed;
            *self = Window::new(now);
        }
        if self.emitted < per_window {
            self.emitted += 1;
            Some(suppressed)
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// What the caller may do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Log it. `suppressed` lines of this kind were dropped in the window before:
    /// log that count too (see [`LogLimiter::log_suppressed`]).
    Log { suppressed: u64 },
    /// Drop it (counted).
    Drop,
}

/// Per-kind line budgets of one bundle.
#[derive(Debug, Default)]
pub struct LogLimiter {
    windows: Mutex<HashMap<&'static str, Window>>,
    /// Lines dropped over the process lifetime (all kinds), for `/metrics`.
    dropped: AtomicU64,
}

impl LogLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether one more line of `kind` may be logged now.
    pub fn admit(&self, kind: &'static str) -> Admit {
        self.admit_at(kind, Instant::now(), LINES_PER_WINDOW)
    }

    /// [`LogLimiter::admit`] with a budget of `per_window` lines for this kind.
    pub fn admit_up_to(&self, kind: &'static str, per_window: u32) -> Admit {
        self.admit_at(kind, Instant::now(), per_window)
    }

    fn admit_at(&self, kind: &'static str, now: Instant, per_window: u32) -> Admit {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(kind).or_insert_with(|| Window::new(now));
        match window.admit(now, per_window) {
            Some(suppressed) => Admit::Log { suppressed },
            None => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Admit::Drop
            }
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes the summary line for `suppressed` dropped lines of `kind`.
    pub fn log_suppressed(bundle: &str, kind: &str, suppressed: u64) {
        if suppressed > 0 {
            tracing::warn!(
                bundle,
                kind,
                suppressed,
                "{suppressed} similar log lines about bundle {bundle} suppressed ({kind})"
            );
        }
    }
}

/// Logs one line about a bundle through its limiter: `$limiter.admit($kind)`, the
/// summary of what the last window dropped, then the line itself.
#[macro_export]
macro_rules! limited_warn {
    ($limiter:expr, $bundle:expr, $kind:expr, $($rest:tt)+) => {{
        if let $crate::serve::log_limit::Admit::Log { suppressed } = $limiter.admit($kind) {
            $crate::serve::log_limit::LogLimiter::log_suppressed(&$bundle, $kind, suppressed);
            tracing::warn!(bundle = %$bundle, $($rest)+);
        }
    }};
}

/// A tracing layer that rate-limits events of the host's libraries per call site
/// (targets starting with one of `targets`), with the same window and budget.
pub struct CallsiteLimit {
    targets: &'static [&'static str],
    sites: Mutex<HashMap<tracing::callsite::Identifier, Window>>,
}

impl CallsiteLimit {
    /// Crates that log on a guest's behalf without naming the bundle.
    pub const GUEST_DRIVEN: &'static [&'static str] = &["wasmtime", "cranelift", "hyper"];

    pub fn new(targets: &'static [&'static str]) -> Self {
        Self {
            targets,
            sites: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(suppressed)` when the event may be written.
    fn admit(&self, site: tracing::callsite::Identifier, now: Instant) -> Option<u64> {
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        sites
            .entry(site)
            .or_insert_with(|| Window::new(now))
            .admit(now, LINES_PER_WINDOW)
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CallsiteLimit {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        let meta = event.metadata();
        if !self.targets.iter().any(|t| meta.target().starts_with(t)) {
            return true;
        }
        match self.admit(meta.callsite(), Instant::now()) {
            None => false,
            Some(0) => true,
            Some(suppressed) => {
                tracing::warn!(
                    target: "gtc::log_limit",
                    site = %format_args!("{}:{}", meta.file().unwrap_or("?"), meta.line().unwrap_or(0)),
                    suppressed,
                    "{suppressed} similar log lines from {} suppressed",
                    meta.target()
                );
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_its_budget_then_counts_and_summarises() {
        let limiter = LogLimiter::new();
        let start = Instant::now();
        for _ in 0..LINES_PER_WINDOW {
            assert_eq!(
                limiter.admit_at("k", start, LINES_PER_WINDOW),
                Admit::Log { suppressed: 0 }
            );
        }
        for _ in 0..1000 {
            assert_eq!(limiter.admit_at("k", start, LINES_PER_WINDOW), Admit::Drop);
        }
        // Another kind has its own budget.
        assert_eq!(
            limiter.admit_at("other", start, LINES_PER_WINDOW),
            Admit::Log { suppressed: 0 }
        );
        assert_eq!(
            limiter.admit_at("k", start + WINDOW, LINES_PER_WINDOW),
            Admit::Log { suppressed: 1000 }
        );
        assert_eq!(limiter.dropped(), 1000);
    }
}
