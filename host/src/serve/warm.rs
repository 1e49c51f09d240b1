//! Idle instances kept for reuse: one pool per bundle that opted in
//! (`[instances] reuse`), and the host-wide view that lets a request of any
//! bundle reclaim an idle instance's slot.
//!
//! Why a pool per bundle: an instance carries its bundle's globals, scope and
//! declared secrets, so it may only ever serve that bundle again. Why a host-wide
//! view: an idle instance holds its pool slot, and a neighbour that finds the pool
//! full must not wait behind instances nobody is using — it evicts the one idle
//! the longest instead.
//!
//! An instance leaves the pool for good when it has served its requests, when
//! its age passes the bundle's maximum (at most the secrets cache's TTL, so that a
//! value the guest keeps in memory is refreshed as the cache would be), when it
//! was idle too long (a sweeper looks every half idle timeout), or when it is
//! evicted. The pool is generic over what it holds, so this module knows nothing
//! of stores or components.

use crate::bundle::manifest::InstanceReuse;
use crate::metrics::{InstanceCounts, Retired};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// An instance and what the pool needs to know of it.
pub struct Warm<I> {
    pub instance: I,
    pub created: Instant,
    /// Requests it has served so far.
    pub served: u32,
    idle_since: Instant,
}

impl<I> Warm<I> {
    pub fn new(instance: I) -> Self {
        let now = Instant::now();
        Self {
            instance,
            created: now,
            served: 0,
            idle_since: now,
        }
    }
}

/// One bundle's idle instances.
pub struct WarmPool<I> {
    policy: InstanceReuse,
    idle: Mutex<Vec<Warm<I>>>,
    /// Woken when an instance comes back: a request of this bundle waiting for
    /// its concurrency slot takes it instead.
    returned: tokio::sync::Notify,
    counts: Arc<InstanceCounts>,
}

impl<I: Send + 'static> WarmPool<I> {
    pub fn new(policy: InstanceReuse, counts: Arc<InstanceCounts>) -> Self {
        Self {
            policy,
            idle: Mutex::new(Vec::new()),
            returned: tokio::sync::Notify::new(),
            counts,
        }
    }

    pub fn policy(&self) -> &InstanceReuse {
        &self.policy
    }

    pub fn counts(&self) -> &Arc<InstanceCounts> {
        &self.counts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Warm<I>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The instance idle the shortest time (its memory is the warmest), if any
    /// is still young enough; older ones found on the way are retired.
    pub fn take(&self) -> Option<Warm<I>> {
        let mut expired = Vec::new();
        let found = {
            let mut idle = self.lock();
            loop {
                match idle.pop() {
                    Some(warm) if warm.created.elapsed() >= self.policy.max_age => {
                        expired.push(warm)
                    }
                    other => break other,
                }
            }
        };
        self.retire_all(expired, Retired::Age);
        if found.is_some() {
            self.counts.idle.fetch_sub(1, Ordering::Relaxed);
        }
        found
    }

    /// Keeps `warm` (which has just served a request) for the next one, unless it
    /// has served its requests or its age is up. Returns it when `keep` is false
    /// (the host needs its slot elsewhere), for the caller to drop.
    pub fn put(&self, mut warm: Warm<I>, keep: bool) -> Option<Warm<I>> {
        let now = Instant::now();
        let why = if warm.served >= self.policy.requests {
            Some(Retired::Requests)
        } else if now.saturating_duration_since(warm.created) >= self.policy.max_age {
            Some(Retired::Age)
        } else if !keep {
            Some(Retired::Evicted)
        } else {
            None
        };
        if let Some(why) = why {
            self.counts.retire(why);
            return Some(warm);
        }
        warm.idle_since = now;
        self.lock().push(warm);
        self.counts.idle.fetch_add(1, Ordering::Relaxed);
        self.returned.notify_one();
        None
    }

    /// Waits until an instance comes back to this pool.
    pub async fn returned(&self) {
        self.returned.notified().await
    }

    /// Retires the instances idle or alive too long; returns how many.
    pub fn sweep(&self) -> usize {
        let (mut too_idle, mut too_old) = (Vec::new(), Vec::new());
        {
            let mut idle = self.lock();
            let mut kept = Vec::with_capacity(idle.len());
            for warm in idle.drain(..) {
                if warm.created.elapsed() >= self.policy.max_age {
                    too_old.push(warm);
                } else if warm.idle_since.elapsed() >= self.policy.idle_timeout {
                    too_idle.push(warm);
                } else {
                    kept.push(warm);
                }
            }
            *idle = kept;
        }
        let swept = too_idle.len() + too_old.len();
        self.retire_all(too_idle, Retired::Idle);
        self.retire_all(too_old, Retired::Age);
        swept
    }

    /// Counts and drops idle instances (outside the lock: dropping an instance
    /// wipes its memory).
    fn retire_all(&self, gone: Vec<Warm<I>>, why: Retired) {
        for warm in gone {
            self.counts.idle.fetch_sub(1, Ordering::Relaxed);
            self.counts.retire(why);
            drop(warm);
        }
    }

    /// When the instance idle the longest became idle.
    fn longest_idle_since(&self) -> Option<Instant> {
        self.lock().first().map(|warm| warm.idle_since)
    }

    /// Retires the instance idle the longest; whether there was one.
    fn evict_longest_idle(&self) -> bool {
        let evicted = {
            let mut idle = self.lock();
            if idle.is_empty() {
                None
            } else {
                Some(idle.remove(0))
            }
        };
        match evicted {
            Some(warm) => {
                self.retire_all(vec![warm], Retired::Evicted);
                true
            }
            None => false,
        }
    }

    /// Sweeps this pool every half idle timeout (at least every second) while
    /// it exists.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let every =
            (self.policy.idle_timeout / 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let pool = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match pool.upgrade() {
                    Some(pool) => pool.sweep(),
                    None => break,
                };
            }
        });
    }
}

/// What the host-wide view needs of a bundle's pool.
trait Evictable: Send + Sync {
    fn longest_idle_since(&self) -> Option<Instant>;
    fn evict_longest_idle(&self) -> bool;
}

impl<I: Send + 'static> Evictable for WarmPool<I> {
    fn longest_idle_since(&self) -> Option<Instant> {
        WarmPool::longest_idle_since(self)
    }

    fn evict_longest_idle(&self) -> bool {
        WarmPool::evict_longest_idle(self)
    }
}

/// Every bundle's pool, for a request that finds the host's instance pool full.
#[derive(Default)]
pub struct IdleInstances {
    pools: Mutex<Vec<Weak<dyn Evictable>>>,
}

impl IdleInstances {
    pub fn register<I: Send + 'static>(&self, pool: &Arc<WarmPool<I>>) {
        let pool: Arc<dyn Evictable> = pool.clone();
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&pool));
    }

    /// Retires the instance idle the longest on the whole host (its slot comes
    /// free); whether there was one.
    pub fn evict_one(&self) -> bool {
        let pools: Vec<Arc<dyn Evictable>> = {
            let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools.retain(|pool| pool.strong_count() > 0);
            pools.iter().filter_map(Weak::upgrade).collect()
        };
        pools
            .iter()
            .filter_map(|pool| pool.longest_idle_since().map(|since| (since, pool)))
            .min_by_key(|(since, _)| *since)
            .is_some_and(|(_, pool)| pool.evict_longest_idle())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(requests: u32, idle_ms: u64, age_ms: u64) -> InstanceReuse {
        InstanceReuse {
            requests,
            idle_timeout: Duration::from_millis(idle_ms),
            max_age: Duration::from_millis(age_ms),
        }
    }

    fn pool(policy: InstanceReuse) -> Arc<WarmPool<u32>> {
        Arc::new(WarmPool::new(policy, Arc::default()))
    }

    #[test]
    fn an_instance_serves_its_requests_then_retires() {
        let pool = pool(policy(3, 60_000, 60_000));
        let mut warm = Warm::new(7);
        for served in 1..=3 {
            warm.served = served;
            match pool.put(warm, true) {
                None => warm = pool.take().expect("kept"),
                Some(gone) => {
                    assert_eq!(served, 3);
                    assert_eq!(gone.instance, 7);
                    warm = gone;
                }
            }
        }
        assert_eq!(pool.counts().retired(Retired::Requests), 1);
        assert!(pool.take().is_none());
    }

    #[test]
    fn old_and_idle_instances_are_swept_and_eviction_takes_the_longest_idle() {
        let pool = pool(policy(100, 30, 60_000));
        let mut first = Warm::new(1);
        first.served = 1;
        assert!(pool.put(first, true).is_none());
        std::thread::sleep(Duration::from_millis(40));
        let mut second = Warm::new(2);
        second.served = 1;
        assert!(pool.put(second, true).is_none());
        assert_eq!(pool.sweep(), 1, "the first one was idle past 30 ms");
        assert_eq!(pool.counts().retired(Retired::Idle), 1);
        let host = IdleInstances::default();
        host.register(&pool);
        assert!(host.evict_one());
        assert!(!host.evict_one(), "nothing idle is left");
        assert_eq!(pool.counts().retired(Retired::Evicted), 1);
        assert_eq!(pool.counts().idle.load(Ordering::Relaxed), 0);

        let young = pool_with_age(20);
        let mut warm = Warm::new(3);
        warm.served = 1;
        assert!(young.put(warm, true).is_none());
        std::thread::sleep(Duration::from_millis(30));
        assert!(young.take().is_none(), "past its age: retired, not reused");
        assert_eq!(young.counts().retired(Retired::Age), 1);
    }

    fn pool_with_age(age_ms: u64) -> Arc<WarmPool<u32>> {
        pool(policy(100, 60_000, age_ms))
    }

    #[test]
    fn a_pool_under_pressure_does_not_keep_the_instance() {
        let pool = pool(policy(100, 60_000, 60_000));
        let mut warm = Warm::new(1);
        warm.served = 1;
        assert!(pool.put(warm, false).is_some());
        assert_eq!(pool.counts().retired(Retired::Evicted), 1);
    }
}
