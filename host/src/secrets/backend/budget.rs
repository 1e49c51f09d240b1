//! Per-bundle budgets: a token bucket per bundle, for backend fetches and for
//! sealed signature checks.
//!
//! Why: the cache makes repeated names cheap, but a guest that asks for ever new
//! names (or names that do not exist) sends each one to Vault. Without a bound,
//! one bundle could use up Vault's capacity (or its rate-limit quota) and starve
//! its neighbours' cold reads. Each bundle may start `rate` backend fetches per
//! second on average, `burst` at once; past that its uncached `get`s answer
//! `unavailable` at once and a cached name is served from the cache (stale) until
//! the bucket refills. The refusals are counted (`/metrics`) and logged once per
//! [`LOG_WINDOW`], not once per call.
//!
//! The same bucket bounds `sealed.verify-hmac-sha256` ([`Purpose::Verify`]): each
//! check compares a guest-chosen MAC with the one under a sealed key, an equality
//! oracle, so a bundle may make at most `rate` of them per second on average
//! (`GREENTIC_BUNDLE_VERIFY_RATE` / `_BURST`); past that a check answers
//! `unavailable` until the bucket refills.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Fetches per second and burst size of one bundle's bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetPolicy {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for BudgetPolicy {
    fn default() -> Self {
        Self {
            per_second: 20.0,
            burst: 100.0,
        }
    }
}

impl BudgetPolicy {
    /// The default bound on one bundle's sealed signature checks: above what a
    /// pod verifying one signed webhook per request serves, and a bound on the
    /// guesses per second a guest can confirm through the oracle (which is why
    /// sealed values must be high-entropy in the first place).
    pub const VERIFY_DEFAULT: Self = Self {
        per_second: 50_000.0,
        burst: 50_000.0,
    };
}

/// What a bucket bounds (it chooses the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Backend fetches (`GREENTIC_BUNDLE_FETCH_RATE` / `_BURST`).
    Fetch,
    /// Sealed signature checks (`GREENTIC_BUNDLE_VERIFY_RATE` / `_BURST`).
    Verify,
}

impl Purpose {
    fn exceeded(self) -> &'static str {
        match self {
            Self::Fetch => {
                "bundle exceeded its budget of backend fetches (GREENTIC_BUNDLE_FETCH_RATE / \
                 _BURST); its uncached secrets answer `unavailable` and cached ones are served \
                 from the cache until the budget refills"
            }
            Self::Verify => {
                "bundle exceeded its budget of sealed.verify-hmac-sha256 checks \
                 (GREENTIC_BUNDLE_VERIFY_RATE / _BURST); checks answer `unavailable` until the \
                 budget refills"
            }
        }
    }
}

/// At most one log line per bundle per window about refused takes.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Refusals since the last log line, and when it was written.
    unlogged: u64,
    logged_at: Option<Instant>,
}

/// One bundle's bucket.
pub struct FetchBudget {
    owner: String,
    policy: BudgetPolicy,
    purpose: Purpose,
    bucket: Mutex<Bucket>,
    /// Takes refused, for `/metrics`.
    pub refused: AtomicU64,
}

impl FetchBudget {
    /// A bucket of backend fetches.
    pub fn new(owner: &str, policy: BudgetPolicy) -> Self {
        Self::for_purpose(owner, policy, Purpose::Fetch)
    }

    pub fn for_purpose(owner: &str, policy: BudgetPolicy, purpose: Purpose) -> Self {
        Self {
            owner: owner.to_string(),
            policy,
            purpose,
            bucket: Mutex::new(Bucket {
                tokens: policy.burst,
                refilled: Instant::now(),
                unlogged: 0,
                logged_at: None,
            }),
            refused: AtomicU64::new(0),
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn policy(&self) -> BudgetPolicy {
        self.policy
    }

    /// Whether the bucket holds less than one fetch right now (nothing taken).
    pub fn is_spent(&self) -> bool {
        let bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let earned =
            Instant::now().duration_since(bucket.refilled).as_secs_f64() * self.policy.per_second;
        (bucket.tokens + earned).min(self.policy.burst) < 1.0
    }

    /// Takes one fetch from the bucket; `false` (counted, logged once per
    /// window) when it is empty.
    pub fn try_take(&self) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let earned = now.duration_since(bucket.refilled).as_secs_f64() * self.policy.per_second;
        bucket.tokens = (bucket.tokens + earned).min(self.policy.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return true;
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        bucket.unlogged += 1;
        let due = bucket
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= LOG_WINDOW);
        if due {
            let refused = std::mem::take(&mut bucket.unlogged);
            bucket.logged_at = Some(now);
            drop(bucket);
            tracing::warn!(
                bundle = %self.owner,
                refused,
                per_second = self.policy.per_second,
                burst = self.policy.burst,
                "{} (logged at most every {} s)",
                self.purpose.exceeded(),
                LOG_WINDOW.as_secs()
            );
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let budget = FetchBudget::new(
            "bot",
            BudgetPolicy {
                per_second: 10.0,
                burst: 5.0,
            },
        );
        let taken = (0..50).filter(|_| budget.try_take()).count();
        assert_eq!(taken, 5);
        assert_eq!(budget.refused.load(Ordering::Relaxed), 45);
        // Tokens come back at 10/s (at most the burst of 5): as many as the time
        // that really passed allows, however long the sleep overshot on a loaded
        // machine.
        let emptied = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(320));
        let slept = emptied.elapsed();
        let taken = (0..50).filter(|_| budget.try_take()).count();
        let refill = emptied.elapsed();
        let least = ((slept.as_secs_f64() * 10.0).floor() as usize).min(5);
        let most = ((refill.as_secs_f64() * 10.0).ceil() as usize).min(5);
        assert!(
            (least..=most).contains(&taken) && taken >= 3,
            "{taken} tokens after {slept:?}..{refill:?}"
        );
    }
}
