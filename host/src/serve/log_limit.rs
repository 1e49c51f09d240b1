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
//! On top of the bundles' own limits, one [`HostLogBudget`] bounds the lines about
//! all bundles together (`gtc serve --max-log-lines-per-second`, default
//! [`DEFAULT_HOST_LINES_PER_SECOND`]), so the total does not grow with the number
//! of bundles. It is shared fairly: each bundle is guaranteed an equal part of
//! half the budget per window (rounded down), and the other half goes to
//! whichever bundles have more to say first. A line the host budget holds back
//! is counted as suppressed for its bundle (its kind's next summary includes it),
//! and one line per window says how many the host budget held back in all.
//!
//! Lines the host's libraries (wasmtime, hyper) log on a guest's behalf carry no
//! bundle; [`CallsiteLimit`] applies the same rule per call site to every event of
//! those crates, as a tracing layer installed by the binary.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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

/// Default of `gtc serve --max-log-lines-per-second`: lines about all bundles
/// together per [`WINDOW`].
pub const DEFAULT_HOST_LINES_PER_SECOND: u32 = 500;

/// The host's budget of lines about bundles, shared by every bundle's
/// [`LogLimiter`] (and so by guest output too).
#[derive(Debug)]
pub struct HostLogBudget {
    per_window: u32,
    state: Mutex<HostWindow>,
    /// Lines held back over the process lifetime, for `/metrics`.
    suppressed: AtomicU64,
}

#[derive(Debug, Default)]
struct HostWindow {
    started: Option<Instant>,
    /// Which window this is (a bundle's count from an older one is stale).
    epoch: u64,
    /// Lines taken from the shared half in this window.
    shared_used: u32,
    /// Lines held back in this window.
    suppressed: u64,
    /// Per registered bundle: the window of its count, and the lines it took
    /// from its guaranteed part in that window.
    bundles: Vec<(u64, u32)>,
}

impl HostLogBudget {
    pub fn new(per_window: u32) -> Arc<Self> {
        Arc::new(Self {
            per_window: per_window.max(1),
            state: Mutex::new(HostWindow::default()),
            suppressed: AtomicU64::new(0),
        })
    }

    pub fn per_window(&self) -> u32 {
        self.per_window
    }

    /// Lines held back so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }

    /// A new bundle's place in the budget.
    fn register(&self) -> usize {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.bundles.push((0, 0));
        state.bundles.len() - 1
    }

    /// Whether one more line about bundle `slot` may be written at `now`, and,
    /// when this call opened a new window after one that held lines back, how
    /// many (for the one summary line: [`HostLogBudget::log_summary`]).
    fn admit(&self, slot: usize, now: Instant) -> (bool, Option<u64>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut summary = None;
        if state
            .started
            .is_none_or(|started| now.duration_since(started) >= WINDOW)
        {
            if state.suppressed > 0 {
                summary = Some(state.suppressed);
            }
            state.started = Some(now);
            state.epoch += 1;
            state.shared_used = 0;
            state.suppressed = 0;
        }
        let bundles = state.bundles.len().max(1) as u32;
        let guaranteed = self.per_window / 2 / bundles;
        let shared = self.per_window - guaranteed * bundles;
        let epoch = state.epoch;
        let admitted = match state.bundles.get_mut(slot) {
            Some(own) => {
                if own.0 != epoch {
                    *own = (epoch, 0);
                }
                if own.1 < guaranteed {
                    own.1 += 1;
                    true
                } else {
                    false
                }
            }
            None => false,
        };
        let admitted = admitted || {
            if state.shared_used < shared {
                state.shared_used += 1;
                true
            } else {
                false
            }
        };
        if !admitted {
            state.suppressed += 1;
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
        (admitted, summary)
    }

    /// The one line per window that says how many lines the budget held back.
    fn log_summary(&self, suppressed: u64) {
        tracing::warn!(
            target: "gtc::log_limit",
            suppressed,
            per_second = self.per_window,
            "{suppressed} log lines about bundles suppressed: the host's log budget of {} lines \
             per second for all bundles was spent (each bundle's own summary counts its share)",
            self.per_window
        );
    }
}

impl crate::metrics::HostLogStats for HostLogBudget {
    fn suppressed(&self) -> u64 {
        HostLogBudget::suppressed(self)
    }

    fn per_second(&self) -> u32 {
        self.per_window
    }
}

static HOST: OnceLock<Arc<HostLogBudget>> = OnceLock::new();

/// Sets the process's host log budget (`--max-log-lines-per-second`); `false`
/// if it was already in use (then the first one stays).
pub fn install_host_budget(per_second: u32) -> bool {
    let mut installed = false;
    HOST.get_or_init(|| {
        installed = true;
        HostLogBudget::new(per_second)
    });
    installed
}

/// The process's host log budget (the default one if none was installed).
pub fn host_budget() -> &'static Arc<HostLogBudget> {
    HOST.get_or_init(|| HostLogBudget::new(DEFAULT_HOST_LINES_PER_SECOND))
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

/// Per-kind line budgets of one bundle (and its place in the host's budget).
#[derive(Debug, Default)]
pub struct LogLimiter {
    windows: Mutex<HashMap<&'static str, Window>>,
    /// Lines dropped over the process lifetime (all kinds), for `/metrics`.
    dropped: AtomicU64,
    /// The host's budget and this bundle's place in it; `None` for the host's
    /// own lines.
    host: Option<(Arc<HostLogBudget>, usize)>,
}

impl LogLimiter {
    /// Per-kind budgets only: for lines the host logs about itself.
    pub fn new() -> Self {
        Self::default()
    }

    /// A bundle's limiter, within the process's host budget ([`host_budget`]).
    pub fn for_bundle() -> Self {
        Self::within(host_budget())
    }

    /// A bundle's limiter within `host`.
    pub fn within(host: &Arc<HostLogBudget>) -> Self {
        Self {
            host: Some((host.clone(), host.register())),
            ..Self::default()
        }
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
        let Some(suppressed) = window.admit(now, per_window) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Admit::Drop;
        };
        let Some((host, slot)) = &self.host else {
            return Admit::Log { suppressed };
        };
        let (line, summary) = host.admit(*slot, now);
        let admit = if !line {
            // Held back by the host: counted in this kind's next summary, with
            // the summary it would have carried.
            window.suppressed += suppressed + 1;
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Admit::Drop
        } else if suppressed > 0 && !host.admit(*slot, now).0 {
            // The line, but not its summary: the count waits for the next one.
            window.suppressed += suppressed;
            Admit::Log { suppressed: 0 }
        } else {
            Admit::Log { suppressed }
        };
        drop(windows);
        if let Some(held_back) = summary {
            host.log_summary(held_back);
        }
        admit
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
    /// (and the capability's once-per-request warnings about a guest's calls).
    pub const GUEST_DRIVEN: &'static [&'static str] =
        &["wasmtime", "cranelift", "hyper", "gtc::secrets::capability"];

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

    /// Lines `limiter` may write of `kind` at `now`, out of `tries`.
    fn admitted(limiter: &LogLimiter, now: Instant, tries: u32) -> u32 {
        (0..tries)
            .filter(|_| matches!(limiter.admit_at("k", now, 1000), Admit::Log { .. }))
            .count() as u32
    }

    #[test]
    fn the_host_budget_bounds_all_bundles_together_and_keeps_a_part_for_each() {
        let host = HostLogBudget::new(100);
        let bundles: Vec<LogLimiter> = (0..16).map(|_| LogLimiter::within(&host)).collect();
        let start = Instant::now();
        // Fifteen bundles flood first: they take their guaranteed parts (50 / 16
        // = 3 each) and the whole shared half (100 - 48 = 52).
        let flooders: u32 = bundles[..15].iter().map(|b| admitted(b, start, 500)).sum();
        assert_eq!(flooders, 15 * 3 + 52);
        // The sixteenth still has its guaranteed part, and no more.
        assert_eq!(admitted(&bundles[15], start, 10), 3);
        // What the host held back is each bundle's suppressed count.
        let dropped: u64 = bundles.iter().map(LogLimiter::dropped).sum();
        assert_eq!(dropped, 15 * 500 + 10 - 100);
        assert_eq!(host.suppressed(), dropped);
        // The next window: the budget is whole again, and a bundle's held-back
        // lines are in its kind's summary.
        assert_eq!(
            bundles[15].admit_at("k", start + WINDOW, 1000),
            Admit::Log { suppressed: 7 }
        );
    }

    #[test]
    fn a_lone_bundle_may_use_the_whole_host_budget() {
        let host = HostLogBudget::new(100);
        let lone = LogLimiter::within(&host);
        let start = Instant::now();
        assert_eq!(admitted(&lone, start, 1000), 100);
        // The next window: 99 lines, and the summary of the 900 before.
        assert_eq!(admitted(&lone, start + WINDOW, 1000), 99);
        // Lines for the host itself are not counted against it.
        let own = LogLimiter::new();
        assert_eq!(admitted(&own, start, 1000), 1000);
    }
}
