//! Start-up prefetch and the declared-secrets keeper.
//!
//! Why: readiness should mean "can serve". At start (after a random delay within
//! `GREENTIC_STARTUP_JITTER`, so that workers started together do not log in and
//! read in step; with no jitter, before it listens, see `app`) the worker looks up
//! every bundle's declared secrets once; after
//! that it looks again about once a second. A look-up is a cache hit (no I/O)
//! until the value's TTL has passed; then it is fetched again, once per TTL at
//! most (the cache makes concurrent misses one trip). So declared secrets stay
//! fresh without a guest ever waiting for them, the Vault load of an idle worker
//! is its declared secrets once per TTL, and `/readyz` answers from what the
//! keeper last found, without calling Vault.
//!
//! The keeper's backend trips are charged to the bundle's fetch budget, as its
//! requests' are: a manifest that declares a thousand names cannot make the worker
//! read faster than the budget (what the budget does not cover waits for the next
//! round, and `/readyz` keeps saying "not fetched yet"). A declared name found
//! missing is looked at again after 2 s, then 4, 8, … up to the cache TTL, not at
//! every tick (see `BundleSecrets::check_declared`).

use crate::secrets::capability::BundleSecrets;
use crate::secrets::vault::health::jitter;
use std::sync::Arc;
use std::time::Duration;

/// How often the keeper looks (jittered between half and all of it).
pub const KEEPER_TICK: Duration = Duration::from_secs(1);

/// The keeper's interval for a cache TTL: a second, or half the TTL when that
/// is shorter (at least 100 ms), so an expired declared secret is refreshed
/// within a small fraction of its TTL.
pub fn keeper_tick(ttl: Duration) -> Duration {
    (ttl / 2).clamp(Duration::from_millis(100), KEEPER_TICK)
}

/// Starts the keeper: after `delay`, looks up every declared secret of every
/// bundle, then again every `tick` (jittered).
pub fn spawn_keeper(
    bundles: Vec<Arc<BundleSecrets>>,
    delay: Duration,
    tick: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let mut first = true;
        loop {
            for bundle in &bundles {
                bundle.check_declared().await;
            }
            if first {
                first = false;
                let declared: usize = bundles.iter().map(|b| b.declared().len()).sum();
                tracing::info!(
                    declared,
                    delay_ms = delay.as_millis() as u64,
                    "start-up prefetch of declared secrets done"
                );
            }
            tokio::time::sleep(jitter(tick / 2, tick)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_follows_short_ttls() {
        assert_eq!(keeper_tick(Duration::from_secs(30)), KEEPER_TICK);
        assert_eq!(
            keeper_tick(Duration::from_millis(600)),
            Duration::from_millis(300)
        );
        assert_eq!(
            keeper_tick(Duration::from_millis(10)),
            Duration::from_millis(100)
        );
    }
}
