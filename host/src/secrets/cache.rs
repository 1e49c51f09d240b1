//! The app-wide secrets service: a backend behind a cache.
//!
//! - Values (and "nothing stored here") are cached per canonical URI for a freshness
//!   TTL, so a cached `get` costs a map look-up and no I/O.
//! - Concurrent misses for one URI make one backend trip: the first caller fetches,
//!   the others wait on the same slot and read what it stored — or, when an
//!   answer within the stale bound exists, serve it while the refresh runs.
//! - If the backend is unavailable, the last known answer is served for a bounded
//!   extra time (logged and counted); after that the caller gets the error. While
//!   it is down, a URI is retried at most every [`RETRY_BACKOFF`]: a struggling
//!   Vault (sealed, rate-limited) is not hammered by every request, and recovery
//!   is noticed within that interval.
//! - Every caller says how long it may wait ([`FetchLimits::deadline`]: a guest's
//!   is derived from its bundle's time limit) and whose budget a backend trip is
//!   charged to ([`FetchBudget`], one per bundle): past the deadline, or with the
//!   budget spent, the last answer within the stale bound is served, or the caller
//!   gets `unavailable` — never a wait longer than the deadline.
//! - A new version in the backend is seen within one TTL: no restart for rotation.
//! - A name that resolved to nothing at all (the guest heard `not-found`) is
//!   remembered only for the short [`CachePolicy::not_found_ttl`]: an author who
//!   seeds a missing secret sees it within seconds, not a whole TTL. A team-level
//!   miss that fell back to a tenant-wide value keeps the full TTL (a new team
//!   override is then seen within one TTL, like a rotation), so tenant-wide
//!   secrets do not cost a backend trip every few seconds.
//! - The number of cached URIs is bounded, so hostile guests asking for endless
//!   distinct names cannot grow memory without limit.

use crate::secrets::backend::budget::FetchBudget;
use crate::secrets::backend::{BackendError, SecretsBackend};
use crate::secrets::scope::SecretPath;
use crate::secrets::secret_value::SecretBytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long answers are fresh, how long they may be served stale, how many URIs
/// are kept.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    pub ttl: Duration,
    /// Freshness of "nothing stored here" when nothing was found at all.
    pub not_found_ttl: Duration,
    pub stale_for: Duration,
    pub max_entries: usize,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30),
            not_found_ttl: Duration::from_secs(2),
            stale_for: Duration::from_secs(300),
            max_entries: 100_000,
        }
    }
}

impl CachePolicy {
    /// No caching at all: every `get` goes to the backend (benchmarks, debugging).
    pub fn disabled() -> Self {
        Self {
            ttl: Duration::ZERO,
            not_found_ttl: Duration::ZERO,
            stale_for: Duration::ZERO,
            max_entries: 0,
        }
    }
}

/// How a `get` was answered, for audit events and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A fresh cached answer.
    Hit,
    /// Fetched from the backend.
    Miss,
    /// The backend failed; a cached answer within the stale bound was served.
    Stale,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
        }
    }
}

/// Counters, read by `/metrics`.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stale_served: AtomicU64,
    pub backend_errors: AtomicU64,
    pub backend_fetch_micros: AtomicU64,
}

/// While the backend fails, how long a stale entry is served before the next try.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// The deadline of callers that are not a guest (benchmarks, tools): generous,
/// the backend's own timeouts apply first.
pub const UNHURRIED: Duration = Duration::from_secs(60);

/// How one caller's `get` is bounded.
#[derive(Clone, Copy)]
pub struct FetchLimits<'a> {
    /// The caller gets an answer within this time, whatever the backend does.
    pub deadline: Duration,
    /// Charged for each backend trip this caller starts (`None`: not limited, for
    /// the worker's own start-up fetch of declared secrets).
    pub budget: Option<&'a FetchBudget>,
    /// Whether the look-up counts in the hit/miss statistics (the readiness
    /// keeper's look-ups do not: they are not traffic).
    pub counted: bool,
}

impl FetchLimits<'_> {
    pub const UNHURRIED: FetchLimits<'static> = FetchLimits {
        deadline: UNHURRIED,
        budget: None,
        counted: true,
    };

    fn charge(&self) -> bool {
        self.budget.is_none_or(FetchBudget::try_take)
    }

    fn over_budget(&self) -> BackendError {
        BackendError::Unavailable(format!(
            "bundle {} is over its budget of backend fetches",
            self.budget.map_or("?", FetchBudget::owner)
        ))
    }
}

struct Entry {
    value: Option<SecretBytes>,
    fetched_at: Instant,
    /// The policy's TTL, or the not-found TTL once a resolution found nothing.
    fresh_for: Duration,
    /// Set after a failed refresh: serve stale without asking again until then.
    retry_at: Option<Instant>,
}

#[derive(Default)]
struct Slot {
    /// Read-locked by every cached `get` (readers never wait for each other: one
    /// hot secret on many cores), write-locked only to store a fetch.
    entry: RwLock<Option<Entry>>,
    /// Held by the one caller refreshing this URI.
    refresh: tokio::sync::Mutex<()>,
}

/// The backend plus its cache; one per process, shared by every bundle.
pub struct SecretsService {
    backend: SecretsBackend,
    policy: CachePolicy,
    slots: RwLock<HashMap<String, Arc<Slot>>>,
    stats: CacheStats,
}

/// Result of one `get`: the value (or `None` if nothing is stored) and how it was found.
pub type Lookup = Result<(Option<SecretBytes>, CacheOutcome), BackendError>;

impl SecretsService {
    pub fn new(backend: SecretsBackend, policy: CachePolicy) -> Self {
        Self {
            backend,
            policy,
            slots: RwLock::new(HashMap::new()),
            stats: CacheStats::default(),
        }
    }

    pub fn backend(&self) -> &SecretsBackend {
        &self.backend
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    pub fn policy(&self) -> CachePolicy {
        self.policy
    }

    /// The value at `path`, from the cache when fresh (no deadline or budget
    /// beyond the backend's own timeouts).
    pub async fn get(&self, path: &SecretPath) -> Lookup {
        self.get_at(path, &path.uri(), FetchLimits::UNHURRIED).await
    }

    fn count(&self, limits: &FetchLimits<'_>, counter: &AtomicU64) {
        if limits.counted {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// [`SecretsService::get`] with the canonical URI of `path` already at hand
    /// (the capability keeps resolved names, so the hot path formats nothing),
    /// within the caller's limits.
    pub async fn get_at(&self, path: &SecretPath, uri: &str, limits: FetchLimits<'_>) -> Lookup {
        // The common case first: a fresh entry, read under the map's read lock
        // without taking a reference to its slot.
        if let Some(value) = read(&self.slots).get(uri).and_then(|slot| self.fresh(slot)) {
            self.count(&limits, &self.stats.hits);
            return Ok((value, CacheOutcome::Hit));
        }
        let Some(slot) = self.slot(uri) else {
            // Caching disabled, or the cache is full of live entries.
            self.count(&limits, &self.stats.misses);
            if !limits.charge() {
                return Err(limits.over_budget());
            }
            return self
                .fetch(path, limits.deadline)
                .await
                .map(|v| (v, CacheOutcome::Miss));
        };
        if let Some(value) = self.fresh(&slot) {
            self.count(&limits, &self.stats.hits);
            return Ok((value, CacheOutcome::Hit));
        }
        if let Some(value) = self.backing_off(&slot) {
            self.stats.stale_served.fetch_add(1, Ordering::Relaxed);
            return Ok((value, CacheOutcome::Stale));
        }
        // One caller refreshes; the others serve the last answer meanwhile if it is
        // within the stale bound (a slow or failing backend then delays one
        // request, not all), and wait only when there is nothing to serve.
        let started = Instant::now();
        let _refreshing = match slot.refresh.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                if let Some(value) = self.within_stale_bound(&slot) {
                    self.stats.stale_served.fetch_add(1, Ordering::Relaxed);
                    return Ok((value, CacheOutcome::Stale));
                }
                match tokio::time::timeout(limits.deadline, slot.refresh.lock()).await {
                    Ok(guard) => guard,
                    Err(_) => {
                        return Err(BackendError::Unavailable(format!(
                            "no answer from the backend within {} ms (another request's \
                             fetch of this secret is still waiting)",
                            limits.deadline.as_millis()
                        )));
                    }
                }
            }
        };
        // Another caller may have refreshed (or failed to) while this one waited.
        if let Some(value) = self.fresh(&slot) {
            self.count(&limits, &self.stats.hits);
            return Ok((value, CacheOutcome::Hit));
        }
        if let Some(value) = self.backing_off(&slot) {
            self.stats.stale_served.fetch_add(1, Ordering::Relaxed);
            return Ok((value, CacheOutcome::Stale));
        }
        if !limits.charge() {
            if let Some(value) = self.within_stale_bound(&slot) {
                self.stats.stale_served.fetch_add(1, Ordering::Relaxed);
                return Ok((value, CacheOutcome::Stale));
            }
            return Err(limits.over_budget());
        }
        self.count(&limits, &self.stats.misses);
        let deadline = limits.deadline.saturating_sub(started.elapsed());
        match self.fetch(path, deadline).await {
            Ok(value) => {
                *write(&slot.entry) = Some(Entry {
                    value: value.clone(),
                    fetched_at: Instant::now(),
                    fresh_for: self.policy.ttl,
                    retry_at: None,
                });
                Ok((value, CacheOutcome::Miss))
            }
            Err(BackendError::Unavailable(reason)) => {
                let stale = write(&slot.entry).as_mut().and_then(|entry| {
                    let usable =
                        entry.fetched_at.elapsed() < self.policy.ttl + self.policy.stale_for;
                    usable.then(|| {
                        // First failure since the last success: worth a log line.
                        let first = entry.retry_at.is_none();
                        entry.retry_at = Some(Instant::now() + RETRY_BACKOFF);
                        (entry.value.clone(), entry.fetched_at.elapsed(), first)
                    })
                });
                match stale {
                    Some((value, age, first)) => {
                        self.stats.stale_served.fetch_add(1, Ordering::Relaxed);
                        if first {
                            tracing::warn!(
                                secret = uri,
                                age_ms = age.as_millis() as u64,
                                stale_for_s = self.policy.stale_for.as_secs(),
                                %reason,
                                "serving a stale cached secret: the backend is unavailable \
                                 (until it answers again or the stale bound passes)"
                            );
                        }
                        Ok((value, CacheOutcome::Stale))
                    }
                    None => Err(BackendError::Unavailable(reason)),
                }
            }
            Err(other) => Err(other),
        }
    }

    async fn fetch(
        &self,
        path: &SecretPath,
        deadline: Duration,
    ) -> Result<Option<SecretBytes>, BackendError> {
        let started = Instant::now();
        let result = self.backend.fetch(path, deadline).await;
        self.stats
            .backend_fetch_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if result.is_err() {
            self.stats.backend_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// The cached answer if it is still within the stale bound.
    fn within_stale_bound(&self, slot: &Slot) -> Option<Option<SecretBytes>> {
        let entry = read(&slot.entry);
        let entry = entry.as_ref()?;
        (entry.fetched_at.elapsed() < self.policy.ttl + self.policy.stale_for)
            .then(|| entry.value.clone())
    }

    /// A stale answer to serve without asking the backend: it failed a moment ago.
    fn backing_off(&self, slot: &Slot) -> Option<Option<SecretBytes>> {
        let entry = read(&slot.entry);
        let entry = entry.as_ref()?;
        let waiting = entry.retry_at.is_some_and(|at| Instant::now() < at);
        let within_bound = entry.fetched_at.elapsed() < self.policy.ttl + self.policy.stale_for;
        (waiting && within_bound).then(|| entry.value.clone())
    }

    fn fresh(&self, slot: &Slot) -> Option<Option<SecretBytes>> {
        let entry = read(&slot.entry);
        let entry = entry.as_ref()?;
        (entry.fetched_at.elapsed() < entry.fresh_for).then(|| entry.value.clone())
    }

    /// A resolution tried `uris` and found nothing in any of them: their "nothing
    /// stored" answers stay fresh only for the not-found TTL from now on.
    pub fn found_nothing<'a>(&self, uris: impl IntoIterator<Item = &'a str>) {
        let slots = read(&self.slots);
        let shortens =
            |entry: &Entry| entry.value.is_none() && entry.fresh_for > self.policy.not_found_ttl;
        for slot in uris.into_iter().filter_map(|uri| slots.get(uri)) {
            // A read lock first: a cached "not found" asked again (the common
            // case) has been shortened already and needs no write.
            let needed = read(&slot.entry).as_ref().is_some_and(shortens);
            if needed
                && let Some(entry) = write(&slot.entry).as_mut()
                && shortens(entry)
            {
                entry.fresh_for = self.policy.not_found_ttl;
            }
        }
    }

    fn slot(&self, uri: &str) -> Option<Arc<Slot>> {
        if self.policy.max_entries == 0 || self.policy.ttl.is_zero() {
            return None;
        }
        if let Some(slot) = read(&self.slots).get(uri) {
            return Some(slot.clone());
        }
        let mut slots = write(&self.slots);
        if slots.len() >= self.policy.max_entries && !slots.contains_key(uri) {
            let keep_for = self.policy.ttl + self.policy.stale_for;
            slots.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || read(&slot.entry)
                        .as_ref()
                        .is_some_and(|e| e.fetched_at.elapsed() < keep_for)
            });
            if slots.len() >= self.policy.max_entries {
                return None;
            }
        }
        Some(slots.entry(uri.to_string()).or_default().clone())
    }

    /// Number of URIs currently cached.
    pub fn cached_entries(&self) -> usize {
        read(&self.slots).len()
    }
}

// A poisoned lock only means another thread panicked while holding it; the data
// (a cache entry) is still consistent, so keep serving.
fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::backend::DevStore;

    fn path(uri: &str) -> SecretPath {
        SecretPath::parse_uri(uri).unwrap()
    }

    fn service(dir: &std::path::Path, policy: CachePolicy) -> (SecretsService, DevStore) {
        let store = DevStore::new(dir.join("store.json"));
        (
            SecretsService::new(SecretsBackend::DevStore(store.clone()), policy),
            store,
        )
    }

    #[tokio::test]
    async fn hit_after_miss_and_rotation_after_ttl() {
        let dir = tempfile::tempdir().unwrap();
        // A TTL far longer than the two calls that must see the cached value
        // take, even on a loaded machine; the sleep passes it for sure.
        let policy = CachePolicy {
            ttl: Duration::from_millis(1000),
            ..CachePolicy::default()
        };
        let (svc, store) = service(dir.path(), policy);
        let p = path("secrets://dev/acme/_/bot/key");
        store.put(&p, b"one").unwrap();
        let (v, o) = svc.get(&p).await.unwrap();
        assert_eq!((v.unwrap().expose(), o), (&b"one"[..], CacheOutcome::Miss));
        store.put(&p, b"two").unwrap();
        let (v, o) = svc.get(&p).await.unwrap();
        assert_eq!((v.unwrap().expose(), o), (&b"one"[..], CacheOutcome::Hit));
        tokio::time::sleep(Duration::from_millis(1050)).await;
        let (v, o) = svc.get(&p).await.unwrap();
        assert_eq!((v.unwrap().expose(), o), (&b"two"[..], CacheOutcome::Miss));
    }

    #[tokio::test]
    async fn stale_is_served_within_bound_then_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        // Stale from 100 ms to 2.1 s: a wide window for the stale answer, and a
        // sleep that surely passes its end.
        let policy = CachePolicy {
            ttl: Duration::from_millis(100),
            stale_for: Duration::from_millis(2000),
            max_entries: 10,
            ..CachePolicy::default()
        };
        let (svc, store) = service(dir.path(), policy);
        let p = path("secrets://dev/acme/_/bot/key");
        store.put(&p, b"one").unwrap();
        svc.get(&p).await.unwrap();
        std::fs::remove_file(store.path()).unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (v, o) = svc.get(&p).await.unwrap();
        assert_eq!((v.unwrap().expose(), o), (&b"one"[..], CacheOutcome::Stale));
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert!(matches!(
            svc.get(&p).await,
            Err(BackendError::Unavailable(_))
        ));
        assert_eq!(svc.stats().stale_served.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn cache_size_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let policy = CachePolicy {
            max_entries: 3,
            ..CachePolicy::default()
        };
        let (svc, store) = service(dir.path(), policy);
        store
            .put(&path("secrets://dev/acme/_/bot/real"), b"x")
            .unwrap();
        for i in 0..10 {
            let p = path(&format!("secrets://dev/acme/_/bot/missing-{i}"));
            assert!(svc.get(&p).await.unwrap().0.is_none());
        }
        assert!(svc.cached_entries() <= 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_make_one_backend_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, store) = service(dir.path(), CachePolicy::default());
        let p = path("secrets://dev/acme/_/bot/key");
        store.put(&p, b"one").unwrap();
        let svc = Arc::new(svc);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (svc, p) = (svc.clone(), p.clone());
                tokio::spawn(async move { svc.get(&p).await.unwrap().0.unwrap() })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().expose(), b"one");
        }
        assert_eq!(svc.stats().misses.load(Ordering::Relaxed), 1);
        assert_eq!(svc.stats().hits.load(Ordering::Relaxed), 49);
    }

    #[tokio::test]
    async fn others_serve_stale_while_one_refreshes() {
        let dir = tempfile::tempdir().unwrap();
        let policy = CachePolicy {
            ttl: Duration::from_millis(50),
            ..CachePolicy::default()
        };
        let (svc, store) = service(dir.path(), policy);
        let p = path("secrets://dev/acme/_/bot/key");
        store.put(&p, b"one").unwrap();
        svc.get(&p).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        // Hold the refresh as a slow backend trip would.
        let slot = svc.slot(&p.uri()).unwrap();
        let held = slot.refresh.lock().await;
        let (v, o) = svc.get(&p).await.unwrap();
        assert_eq!((v.unwrap().expose(), o), (&b"one"[..], CacheOutcome::Stale));
        drop(held);
        assert_eq!(svc.get(&p).await.unwrap().1, CacheOutcome::Miss);
    }

    #[tokio::test]
    async fn disabled_cache_always_fetches() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, store) = service(dir.path(), CachePolicy::disabled());
        let p = path("secrets://dev/acme/_/bot/key");
        store.put(&p, b"one").unwrap();
        for _ in 0..3 {
            assert_eq!(svc.get(&p).await.unwrap().1, CacheOutcome::Miss);
        }
        assert_eq!(svc.cached_entries(), 0);
    }
}
