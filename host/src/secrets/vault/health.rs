//! The Vault backend's health, shared by every caller in the process: the session's
//! background login and renewal, and every guest's fetch.
//!
//! Why one shared state: a worker that cannot reach Vault must not let each request
//! find that out for itself. Without it, a silent network drop made every
//! `secrets.get` wait for its own timed-out login (the guest got a 504 instead of a
//! 503), and a guest asking for 1000 names, or a worker whose role is missing, sent
//! one Vault request (and one TokenReview) per call.
//!
//! - **Healthy**: the last call succeeded. Everything goes to Vault.
//! - **Degraded**: Vault answers, but not everything works (a 403 on a read, a 5xx,
//!   an unexpected answer). Calls still go through; three such failures in a row
//!   count as down.
//! - **Down**: Vault cannot be used as a whole (timeout, refused, DNS, TLS, sealed,
//!   429, the login refused, the token file unreadable). Callers are not admitted:
//!   they fail fast with the cause, and a cached value is served stale instead. One
//!   caller at a time is let through as a *probe*, at most once per back-off
//!   interval, which doubles after each failure (with jitter, capped) and resets
//!   on success.
//!
//! Every change of state (or of the cause while down) is logged once, naming the
//! cause; failures that change nothing are logged at debug level only.

use super::VaultError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the backend is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Healthy,
    Degraded,
    Down,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Down => "down",
        }
    }
}

/// Why the last call failed, in a word an operator can search for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// No answer in time: a silent drop (NetworkPolicy), a frozen Vault.
    Timeout,
    /// Connection refused or reset: nothing listens, or a policy rejects.
    Refused,
    Dns,
    Tls,
    Sealed,
    /// The login was refused or failed (role missing, ServiceAccount not bound,
    /// TokenReview failing): the HTTP status.
    LoginRefused(u16),
    /// A 403 on a read: the policy does not grant it.
    Forbidden,
    /// A rate-limit quota (429).
    RateLimited,
    /// A 5xx (other than sealed).
    ServerError(u16),
    /// Another 4xx.
    Rejected(u16),
    /// The ServiceAccount token file cannot be read.
    TokenFile,
    /// An answer that is not what the Vault API promises.
    Protocol,
    /// A local configuration problem (bad token characters, client set-up).
    Config,
}

impl Cause {
    /// Classifies a failed call (`login`: it was a login).
    pub fn of(error: &VaultError, login: bool) -> Cause {
        match error {
            VaultError::Unreachable { cause, .. } => match *cause {
                super::CONNECT_TIMEOUT | super::REQUEST_TIMEOUT => Cause::Timeout,
                super::DNS_FAILED => Cause::Dns,
                super::TLS_FAILED => Cause::Tls,
                _ => Cause::Refused,
            },
            VaultError::Sealed { .. } => Cause::Sealed,
            // Refused by this state itself: the cause is already recorded.
            VaultError::Down { .. } => Cause::Refused,
            VaultError::Status { status, .. } => match *status {
                429 => Cause::RateLimited,
                s if login => Cause::LoginRefused(s),
                s if s >= 500 => Cause::ServerError(s),
                403 => Cause::Forbidden,
                s => Cause::Rejected(s),
            },
            VaultError::TokenFile { .. } => Cause::TokenFile,
            VaultError::Protocol { .. } => Cause::Protocol,
            VaultError::Config(_) => Cause::Config,
        }
    }

    /// A short label for logs, `/readyz` and metrics.
    pub fn label(self) -> String {
        match self {
            Self::Timeout => "timeout".into(),
            Self::Refused => "connection refused".into(),
            Self::Dns => "DNS".into(),
            Self::Tls => "TLS".into(),
            Self::Sealed => "sealed".into(),
            Self::LoginRefused(status) if status >= 500 => format!("login failed ({status})"),
            Self::LoginRefused(status) => format!("login refused ({status})"),
            Self::Forbidden => "403".into(),
            Self::RateLimited => "rate-limited (429)".into(),
            Self::ServerError(status) => format!("server error ({status})"),
            Self::Rejected(status) => format!("rejected ({status})"),
            Self::TokenFile => "token file".into(),
            Self::Protocol => "unexpected answer".into(),
            Self::Config => "configuration".into(),
        }
    }

    /// Whether one such failure means Vault cannot be used at all right now.
    fn takes_it_down(self) -> bool {
        !matches!(
            self,
            Self::Forbidden | Self::ServerError(_) | Self::Rejected(_) | Self::Protocol
        )
    }
}

/// Soft failures in a row (5xx, 403 on reads, odd answers) that count as down.
const SOFT_FAILURES_FOR_DOWN: u32 = 3;

/// The probe interval: `base` after the first failure, doubling, at most `max`;
/// each interval is drawn uniformly from its upper half (jitter, so a fleet does
/// not probe in step).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(250),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The upper bound of the interval after `failures` failures in a row (≥ 1).
    pub fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.base
            .saturating_mul(1u32 << doublings)
            .min(self.max.max(self.base))
    }

    /// The jittered interval after `failures` failures in a row.
    pub fn interval(&self, failures: u32) -> Duration {
        let ceiling = self.ceiling(failures);
        jitter(ceiling / 2, ceiling)
    }
}

/// A uniformly random duration in `[low, high]`.
pub fn jitter(low: Duration, high: Duration) -> Duration {
    use rand::Rng as _;
    if high <= low {
        return low;
    }
    let span = (high - low).as_micros() as u64;
    low + Duration::from_micros(rand::thread_rng().gen_range(0..=span))
}

struct Inner {
    state: State,
    cause: Option<Cause>,
    /// The operator-facing message of the last failure (no secrets in it).
    detail: String,
    since: Instant,
    /// Failures in a row (reset by a success).
    failures: u32,
    next_probe: Instant,
    probe_in_flight: bool,
    /// When the last successful call ended: a failure of a call that started
    /// before it is old news (a request stuck on a connection that a network
    /// drop killed) and changes nothing.
    last_success: Instant,
    /// When any outcome was last recorded (for the idle heartbeat).
    last_outcome: Instant,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct HealthCounters {
    /// Callers refused without a Vault call because the backend is down.
    pub fail_fast: AtomicU64,
    /// Probes let through while down.
    pub probes: AtomicU64,
    /// Changes of state.
    pub transitions: AtomicU64,
}

/// The shared health state.
pub struct BackendHealth {
    inner: Mutex<Inner>,
    backoff: Backoff,
    /// The Vault address, for log lines.
    addr: String,
    pub counters: HealthCounters,
}

/// What a caller may do.
pub struct Permit {
    /// Set when this caller is the probe: dropping the permit ends the probe.
    probe: Option<Arc<BackendHealth>>,
}

impl Permit {
    /// Whether this caller is the probe of a backend that is down.
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(health) = self.probe.take() {
            health.lock().probe_in_flight = false;
        }
    }
}

/// Refused: the backend is down and it is not time to probe.
#[derive(Debug, Clone)]
pub struct FailFast {
    pub cause: Option<Cause>,
    /// The last failure's message.
    pub detail: String,
    /// When the next probe may go.
    pub retry_in: Duration,
}

impl FailFast {
    /// As a Vault error, so callers handle it like any other unavailability.
    pub fn into_error(self, addr: &str) -> VaultError {
        VaultError::Down {
            addr: addr.to_string(),
            cause: self.cause.map_or_else(|| "unknown".into(), Cause::label),
            retry_ms: self.retry_in.as_millis() as u64,
        }
    }
}

/// A copy of the state, for `/readyz`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub state: State,
    pub cause: Option<Cause>,
    pub detail: String,
    /// Time in the current state.
    pub for_how_long: Duration,
    pub failures: u32,
}

impl BackendHealth {
    pub fn new(addr: &str, backoff: Backoff) -> Self {
        let now = Instant::now();
        Self {
            inner: Mutex::new(Inner {
                state: State::Healthy,
                cause: None,
                detail: String::new(),
                since: now,
                failures: 0,
                next_probe: now,
                probe_in_flight: false,
                last_success: now,
                last_outcome: now,
            }),
            backoff,
            addr: addr.to_string(),
            counters: HealthCounters::default(),
        }
    }

    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks to call Vault. While down, only one probe per interval is admitted.
    pub fn admit(self: &Arc<Self>) -> Result<Permit, FailFast> {
        let mut inner = self.lock();
        if inner.state != State::Down {
            return Ok(Permit { probe: None });
        }
        let now = Instant::now();
        if now >= inner.next_probe && !inner.probe_in_flight {
            inner.probe_in_flight = true;
            self.counters.probes.fetch_add(1, Ordering::Relaxed);
            return Ok(Permit {
                probe: Some(self.clone()),
            });
        }
        self.counters.fail_fast.fetch_add(1, Ordering::Relaxed);
        // A probe in flight may take a while: tell the caller to come back after
        // the current interval at the earliest.
        let retry_in = inner
            .next_probe
            .checked_duration_since(now)
            .unwrap_or(self.backoff.base);
        Err(FailFast {
            cause: inner.cause,
            detail: inner.detail.clone(),
            retry_in,
        })
    }

    /// How long until a caller may be admitted (zero unless down).
    pub fn retry_in(&self) -> Duration {
        let inner = self.lock();
        if inner.state != State::Down {
            return Duration::ZERO;
        }
        inner
            .next_probe
            .checked_duration_since(Instant::now())
            .unwrap_or(self.backoff.base)
    }

    /// Records a call that Vault answered as it should.
    pub fn success(&self) {
        let mut inner = self.lock();
        let was = inner.state;
        let down_for = inner.since.elapsed();
        inner.failures = 0;
        inner.next_probe = Instant::now();
        inner.last_success = Instant::now();
        inner.last_outcome = Instant::now();
        if was != State::Healthy {
            inner.state = State::Healthy;
            inner.since = Instant::now();
            let cause = inner.cause.take().map(Cause::label).unwrap_or_default();
            inner.detail.clear();
            drop(inner);
            self.counters.transitions.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                vault = %self.addr,
                was = was.as_str(),
                %cause,
                after_ms = down_for.as_millis() as u64,
                "Vault backend is healthy again"
            );
        }
    }

    /// Records a successful heartbeat (`sys/health`): Vault is reachable and
    /// unsealed. That ends an outage of the network or of Vault itself, not one
    /// of credentials or policy (a refused login, a 403), which only a real call
    /// can clear.
    pub fn reachable(&self) {
        let mut inner = self.lock();
        let credentials = matches!(
            inner.cause,
            Some(
                Cause::LoginRefused(_)
                    | Cause::Forbidden
                    | Cause::TokenFile
                    | Cause::Config
                    | Cause::Protocol
                    | Cause::Rejected(_)
            )
        );
        if inner.state != State::Healthy && credentials {
            inner.last_outcome = Instant::now();
            inner.next_probe = Instant::now() + self.backoff.interval(inner.failures.max(1));
            return;
        }
        drop(inner);
        self.success();
    }

    /// Records a failed call (`login`: it was a login or renewal) that started
    /// at `started`.
    pub fn failure(&self, error: &VaultError, login: bool, started: Instant) {
        if matches!(error, VaultError::Down { .. }) {
            // A refusal by this state itself is not news about Vault.
            return;
        }
        let cause = Cause::of(error, login);
        let mut inner = self.lock();
        // Old news: a call that started before the last success, or before the
        // backend was found down (many calls in flight at that moment must not
        // count as many failed probes and push the back-off to its cap).
        let known_down = inner.state == State::Down && started < inner.since;
        if started < inner.last_success || known_down {
            drop(inner);
            tracing::debug!(vault = %self.addr, cause = %cause.label(), "a call that started before the last success failed: {error}");
            return;
        }
        let (was, was_cause) = (inner.state, inner.cause);
        inner.failures = inner.failures.saturating_add(1);
        let state = if cause.takes_it_down() || inner.failures >= SOFT_FAILURES_FOR_DOWN {
            State::Down
        } else {
            State::Degraded
        };
        let interval = self.backoff.interval(inner.failures);
        inner.next_probe = Instant::now() + interval;
        inner.cause = Some(cause);
        inner.detail = error.to_string();
        if state != was {
            inner.state = state;
            inner.since = Instant::now();
        }
        let failures = inner.failures;
        drop(inner);
        if state == was && was_cause == Some(cause) {
            tracing::debug!(vault = %self.addr, cause = %cause.label(), failures, "{error}");
            return;
        }
        if state != was {
            self.counters.transitions.fetch_add(1, Ordering::Relaxed);
        }
        match state {
            State::Down => tracing::error!(
                vault = %self.addr,
                cause = %cause.label(),
                failures,
                next_probe_ms = interval.as_millis() as u64,
                "Vault backend is down ({}): {error}; uncached secrets fail fast \
                 (the guest gets `unavailable`), cached ones are served stale, and one \
                 probe at a time retries with back-off",
                cause.label()
            ),
            State::Degraded => tracing::warn!(
                vault = %self.addr,
                cause = %cause.label(),
                failures,
                "Vault backend is degraded ({}): {error}",
                cause.label()
            ),
            State::Healthy => {}
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Time since Vault last answered (or failed to): how stale this state is.
    pub fn idle_for(&self) -> Duration {
        self.lock().last_outcome.elapsed()
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            state: inner.state,
            cause: inner.cause,
            detail: inner.detail.clone(),
            for_how_long: inner.since.elapsed(),
            failures: inner.failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(base_ms: u64, max_ms: u64) -> Arc<BackendHealth> {
        Arc::new(BackendHealth::new(
            "http://vault.test:8200",
            Backoff {
                base: Duration::from_millis(base_ms),
                max: Duration::from_millis(max_ms),
            },
        ))
    }

    fn timeout() -> VaultError {
        VaultError::Unreachable {
            addr: "http://vault.test:8200".into(),
            cause: super::super::REQUEST_TIMEOUT,
            hint: "h",
        }
    }

    fn status(status: u16) -> VaultError {
        VaultError::Status {
            addr: "a".into(),
            operation: "o".into(),
            status,
            errors: vec![],
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(4), Duration::from_millis(800));
        assert_eq!(b.ceiling(5), Duration::from_millis(1000));
        assert_eq!(b.ceiling(500), Duration::from_millis(1000));
        let draws: Vec<_> = (0..200).map(|_| b.interval(3)).collect();
        assert!(
            draws
                .iter()
                .all(|d| *d >= Duration::from_millis(200) && *d <= Duration::from_millis(400))
        );
        // Jittered: not all the same.
        assert!(draws.iter().any(|d| *d != draws[0]));
    }

    #[test]
    fn down_admits_one_probe_per_interval_and_success_resets() {
        let h = health(200, 400);
        assert!(h.admit().is_ok());
        h.failure(&timeout(), false, Instant::now());
        assert_eq!(h.snapshot().state, State::Down);
        assert_eq!(h.snapshot().cause, Some(Cause::Timeout));
        // Within the interval: refused at once.
        let refused = h.admit().err().expect("fail fast");
        assert_eq!(refused.cause, Some(Cause::Timeout));
        assert!(refused.retry_in <= Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(210));
        let probe = h.admit().expect("a probe");
        // Only one probe at a time.
        assert!(h.admit().is_err());
        drop(probe);
        let probe = h.admit().expect("the probe slot is free again");
        h.success();
        drop(probe);
        assert_eq!(h.snapshot().state, State::Healthy);
        assert_eq!(h.snapshot().failures, 0);
        assert!(h.admit().is_ok() && h.admit().is_ok());
        assert_eq!(h.counters.probes.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn causes_and_soft_failures() {
        let h = health(10, 20);
        h.failure(&status(500), false, Instant::now());
        assert_eq!(h.snapshot().state, State::Degraded);
        assert!(h.admit().is_ok());
        h.failure(&status(403), false, Instant::now());
        assert_eq!(h.snapshot().cause, Some(Cause::Forbidden));
        assert_eq!(h.snapshot().state, State::Degraded);
        h.failure(&status(502), false, Instant::now());
        assert_eq!(
            h.snapshot().state,
            State::Down,
            "three soft failures in a row"
        );
        h.success();
        h.failure(&status(403), true, Instant::now());
        assert_eq!(h.snapshot().cause, Some(Cause::LoginRefused(403)));
        assert_eq!(h.snapshot().state, State::Down);
        h.success();
        h.failure(&status(429), false, Instant::now());
        assert_eq!(h.snapshot().state, State::Down);
        h.success();
        h.failure(
            &VaultError::Sealed { addr: "a".into() },
            false,
            Instant::now(),
        );
        assert_eq!(h.snapshot().cause, Some(Cause::Sealed));
        // Its own refusals are not failures of Vault.
        let before = h.snapshot().failures;
        h.failure(
            &h.admit().err().unwrap().into_error("a"),
            false,
            Instant::now(),
        );
        assert_eq!(h.snapshot().failures, before);
        // A call that started before the last success is old news.
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(30));
        let probe = h.admit().unwrap();
        h.success();
        drop(probe);
        h.failure(&timeout(), false, started);
        assert_eq!(h.snapshot().state, State::Healthy);
    }
}
