//! The `greentic:secrets/secrets` capability: what a guest's `secrets.get` does.
//!
//! App-wide state ([`BundleSecrets`]: the bundle's scope and the shared
//! [`SecretsService`]) is built once per bundle; per-request state ([`SecretsCtx`])
//! is an `Arc` and a counter. The import is trappable: the outer `Result` is a host
//! fault that stops the guest, the inner WIT `error` is what the guest sees, and no
//! case of it carries an address, a path, a token or a value.
//!
//! Every call is audited ([`crate::secrets::audit`], target `gtc::audit`): bundle,
//! scope, the resolved URI (or only the length of a malformed name), outcome,
//! cache use and latency, never a value. A disclosure (a fetched or stale value
//! handed out) gets a record of its own, and when the bundle's share of the
//! audit queue cannot take it the guest hears `unavailable` instead of the value;
//! refusals and errors are aggregated per key and window; cache hits are counted
//! per secret and written as aggregates.
//!
//! Least privilege between the bundles of one team: a bundle reads only the names
//! its manifest declares (`secrets`, plus the sealed list, whose values `get` never
//! returns). Anything else is `denied` with the audit reason `undeclared`, unless
//! the operator lets that one bundle read undeclared names for a migration
//! (`gtc serve --allow-undeclared-secrets BUNDLE_ID`).
//!
//! Each bundle's backend trips are bounded: a deadline derived from its time
//! limit ([`fetch_deadline`]), so a guest hears `unavailable` while it still has
//! time to answer 503, and a budget of fetches per second ([`FetchBudget`]), so
//! one bundle cannot use up Vault for the others. The bundle's declared secrets
//! are looked up by the worker itself ([`BundleSecrets::check_declared`], see
//! `prefetch`), and `/readyz` reports what it found.

use crate::secrets::audit::{self, BundleAudit, HitCounter, HitKind};
use crate::secrets::backend::BackendError;
use crate::secrets::backend::budget::{BudgetPolicy, FetchBudget, Purpose};
use crate::secrets::cache::{CacheOutcome, FetchLimits, SecretsService};
use crate::secrets::scope::{NameError, Scope, SecretPath, Segment};
use crate::secrets::secret_value::SecretBytes;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{HasSelf, Linker};

/// `greentic:secrets@1.0.0`: `secrets.get` only. Components built against it keep
/// running: the host defines both versions under their exact names.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        interfaces: "import greentic:secrets/secrets@1.0.0;",
        imports: { default: async | trappable },
    });
}

/// `greentic:secrets@1.1.0`: the same `secrets`, plus `sealed`.
mod bindings_1_1 {
    wasmtime::component::bindgen!({
        path: "../wit",
        interfaces: "
            import greentic:secrets/secrets@1.1.0;
            import greentic:secrets/sealed@1.1.0;
        ",
        imports: { default: async | trappable },
    });
}

/// `greentic:secrets-store@1.0.0`: the interface of Greentic's runner, so that
/// components written for it run unchanged. `get(key)` is `secrets.get(key)` with
/// that WIT's shapes (see [`store_answer`]).
mod bindings_store {
    wasmtime::component::bindgen!({
        path: "../wit",
        interfaces: "import greentic:secrets-store/secrets-store@1.0.0;",
        imports: { default: async | trappable },
    });
}

/// `greentic:secrets-store@1.1.0`: 1.0.0's `get`, plus a `put` that this read-only
/// host refuses (see [`PUT_REFUSED`]).
mod bindings_store_1_1 {
    wasmtime::component::bindgen!({
        path: "../wit",
        interfaces: "import greentic:secrets-store/secrets-store@1.1.0;",
        imports: { default: async | trappable },
    });
}

pub use bindings::greentic::secrets1_0_0::secrets::Error as GuestError;
use bindings::greentic::secrets1_0_0::secrets::Host;
use bindings_1_1::greentic::secrets1_1_0::sealed::Host as SealedHost;
use bindings_1_1::greentic::secrets1_1_0::secrets::{Error as GuestError11, Host as Host11};
use bindings_store::greentic::secrets_store1_0_0::secrets_store::{
    Host as StoreHost, SecretsError as StoreError,
};
use bindings_store_1_1::greentic::secrets_store1_1_0::secrets_store::{
    Host as StoreHost11, SecretsError as StoreError11,
};

/// The 1.1.0 spelling of an error (the same cases as 1.0.0).
fn error_1_1(error: GuestError) -> GuestError11 {
    match error {
        GuestError::NotFound => GuestError11::NotFound,
        GuestError::Denied => GuestError11::Denied,
        GuestError::InvalidName(why) => GuestError11::InvalidName(why),
        GuestError::Unavailable => GuestError11::Unavailable,
        GuestError::Internal => GuestError11::Internal,
    }
}

/// Default cap on `secrets.get` calls in one request; past it the guest is stopped.
pub const DEFAULT_MAX_GETS_PER_REQUEST: u32 = 1_000;

/// Counts of `secrets.get` outcomes, for `/metrics`.
#[derive(Debug, Default)]
pub struct GetCounters {
    pub ok: AtomicU64,
    pub not_found: AtomicU64,
    pub denied: AtomicU64,
    pub invalid_name: AtomicU64,
    pub unavailable: AtomicU64,
    pub internal: AtomicU64,
    /// `greentic:secrets-store@1.1.0` `put` calls, each refused with a trap.
    pub store_put_refused: AtomicU64,
}

impl GetCounters {
    fn count(&self, outcome: &Result<SecretBytes, GuestError>) {
        let counter = match outcome {
            Ok(_) => &self.ok,
            Err(GuestError::NotFound) => &self.not_found,
            Err(GuestError::Denied) => &self.denied,
            Err(GuestError::InvalidName(_)) => &self.invalid_name,
            Err(GuestError::Unavailable) => &self.unavailable,
            Err(GuestError::Internal) => &self.internal,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One bundle's `sealed.verify-hmac-sha256` checks: the bucket that bounds their
/// rate and what they answered (`gtc_sealed_verify_total`).
pub struct VerifyChecks {
    pub budget: FetchBudget,
    pub valid: AtomicU64,
    pub invalid: AtomicU64,
    /// Answered `unavailable` because the bucket was empty.
    pub limited: AtomicU64,
}

impl VerifyChecks {
    fn new(bundle: &str, policy: BudgetPolicy) -> Self {
        Self {
            budget: FetchBudget::for_purpose(bundle, policy, Purpose::Verify),
            valid: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            limited: AtomicU64::new(0),
        }
    }

    /// Compares `mac` with the MAC of `message` under `key` if the bucket allows
    /// one more check; `None` (counted) when it does not.
    fn check(&self, key: &[u8], message: &[u8], mac: &[u8]) -> Option<bool> {
        if !self.budget.try_take() {
            self.limited.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let valid = verify_hmac_sha256(key, message, mac);
        let counter = if valid { &self.valid } else { &self.invalid };
        counter.fetch_add(1, Ordering::Relaxed);
        Some(valid)
    }
}

/// Resolved names kept per bundle (names a guest asks for are few and repeated).
const MAX_REMEMBERED_NAMES: usize = 1024;

/// The share of a bundle's time limit that one `secrets.get` may spend waiting
/// for the backend: the rest is the guest's, to answer 503 (or anything else).
pub const FETCH_SHARE_OF_TIME_LIMIT: f64 = 0.4;

/// How long a guest's `get` may wait for the backend, end to end (connect,
/// login, read, decrypt): 40 % of the bundle's time limit, and never more than
/// the backend's own timeout (`GREENTIC_VAULT_TIMEOUT`). With the default 5 s
/// limit and 10 s timeout: 2 s.
pub fn fetch_deadline(time_limit: Duration, backend_timeout: Duration) -> Duration {
    time_limit
        .mul_f64(FETCH_SHARE_OF_TIME_LIMIT)
        .min(backend_timeout)
        .max(Duration::from_millis(50))
}

/// What the worker last found when it looked up a declared secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclaredStatus {
    /// Not looked up yet (start-up jitter, or the first fetch is under way).
    Pending,
    /// Resolves to a value (possibly served from the cache within its stale bound).
    Ok,
    /// Does not resolve: why, for `/readyz`.
    Failed(String),
}

/// One storage path to try for a name, with its canonical URI.
struct Candidate {
    path: SecretPath,
    uri: String,
    /// This bundle's cache hits on `uri`, for the audit trail.
    hits: Arc<HitCounter>,
}

/// What the manifest lets `get` do with a `category/name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Declared in `secrets` (or the operator allows undeclared names).
    Readable,
    /// Not declared: denied, audit reason `undeclared`.
    Undeclared,
    /// Declared sealed: usable only by the host, denied to `get`, audit reason `sealed`.
    Sealed,
    /// Sealed by another bundle of this host: denied, audit reason `sealed`.
    SealedElsewhere,
}

impl Access {
    fn refusal(self) -> Option<&'static str> {
        match self {
            Access::Readable => None,
            Access::Undeclared => Some("undeclared"),
            Access::Sealed | Access::SealedElsewhere => Some("sealed"),
        }
    }
}

/// Who a resolution is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// The guest's `get`: readable names only.
    Get,
    /// Readiness: every declared name, readable or sealed (never returned).
    Readiness,
    /// Host-side use of a sealed value (injection, signature checks): sealed only.
    Sealed,
}

impl Use {
    fn refusal(self, access: Access) -> Option<&'static str> {
        match (self, access) {
            (Use::Get, access) => access.refusal(),
            (Use::Readiness, Access::Undeclared | Access::SealedElsewhere) => Some("undeclared"),
            (Use::Readiness, _) => None,
            (Use::Sealed, Access::Sealed) => None,
            (Use::Sealed, _) => Some("not-sealed"),
        }
    }
}

/// The names a bundle may use, from its manifest, as `(category, name)` pairs in
/// its own scope; built once when the bundle is loaded.
#[derive(Debug, Clone, Default)]
pub struct DeclaredSecrets {
    readable: HashSet<(Segment, Segment)>,
    sealed: HashSet<(Segment, Segment)>,
    /// Names other bundles of this host declared sealed: never readable here,
    /// and not usable either (they are not this bundle's).
    sealed_elsewhere: HashSet<(Segment, Segment)>,
    /// The operator's migration switch: undeclared names are readable.
    allow_undeclared: bool,
}

/// A declared name that cannot be used in the bundle's scope.
#[derive(Debug, thiserror::Error)]
#[error("declared secret {name:?}: {reason}")]
pub struct DeclarationError {
    pub name: String,
    pub reason: String,
}

impl DeclaredSecrets {
    /// Resolves the manifest's `secrets` and sealed names in `scope`.
    pub fn new<'a>(
        scope: &Scope,
        bundle_id: &Segment,
        readable: impl IntoIterator<Item = &'a str>,
        sealed: impl IntoIterator<Item = &'a str>,
        allow_undeclared: bool,
    ) -> Result<Self, DeclarationError> {
        let key = |name: &str| {
            let paths = scope
                .resolve(bundle_id, name)
                .map_err(|e| DeclarationError {
                    name: name.to_string(),
                    reason: match e {
                        NameError::Malformed(why) => why.to_string(),
                        NameError::OutOfScope => "outside the bundle's scope".to_string(),
                    },
                })?;
            let path = paths.first().ok_or_else(|| DeclarationError {
                name: name.to_string(),
                reason: "does not resolve".to_string(),
            })?;
            Ok((path.category.clone(), path.name.clone()))
        };
        let readable = readable.into_iter().map(key).collect::<Result<_, _>>()?;
        let sealed: HashSet<_> = sealed.into_iter().map(key).collect::<Result<_, _>>()?;
        Ok(Self {
            readable,
            sealed,
            sealed_elsewhere: HashSet::new(),
            allow_undeclared,
        })
    }

    /// Seals names another bundle of this host declared sealed: a value sealed
    /// by one bundle is sealed for all of them, whatever their manifests or the
    /// operator's migration switch say.
    pub fn seal_also(&mut self, others: &[DeclaredSecrets]) {
        for other in others {
            self.sealed_elsewhere.extend(other.sealed.iter().cloned());
        }
    }

    /// Every name is readable (tests and tools that serve no manifest).
    pub fn unrestricted() -> Self {
        Self {
            allow_undeclared: true,
            ..Self::default()
        }
    }

    fn access(&self, path: &SecretPath) -> Access {
        let key = (path.category.clone(), path.name.clone());
        if self.sealed.contains(&key) {
            Access::Sealed
        } else if self.sealed_elsewhere.contains(&key) {
            Access::SealedElsewhere
        } else if self.allow_undeclared || self.readable.contains(&key) {
            Access::Readable
        } else {
            Access::Undeclared
        }
    }
}

/// What one bundle's `secrets.get` needs, shared by all its requests.
pub struct BundleSecrets {
    pub bundle_id: Segment,
    pub scope: Scope,
    pub service: Arc<SecretsService>,
    pub counters: Arc<GetCounters>,
    pub max_gets_per_request: u32,
    declared: DeclaredSecrets,
    /// Names already resolved in this scope → what the manifest allows and the
    /// paths to try. Resolution is pure (scope, manifest and name only), so
    /// remembering it changes no answer; it keeps parsing and URI formatting off
    /// the cached path.
    resolved: RwLock<HashMap<String, Resolved>>,
    /// This bundle's backend trips: at most this long, charged to this budget.
    deadline: Duration,
    budget: Arc<FetchBudget>,
    /// This bundle's sealed signature checks: their rate bound and outcomes.
    verify: Arc<VerifyChecks>,
    /// The manifest's declared names and what the worker last found for each.
    declared_status: RwLock<Vec<(String, DeclaredStatus)>>,
    /// Declared names the keeper found missing: when to look again, and the
    /// back-off that led there (2 s, doubling, up to the cache TTL).
    missing: std::sync::Mutex<HashMap<String, (Instant, Duration)>>,
    /// This bundle's share of the audit trail.
    audit: BundleAudit,
}

/// The keeper's first back-off for a declared name it found missing.
pub const MISSING_FIRST_BACKOFF: Duration = Duration::from_secs(2);

/// A remembered resolution of one name.
#[derive(Clone)]
struct Resolved {
    access: Access,
    candidates: Arc<[Candidate]>,
}

/// The outcome of one `get`, before it is handed to the guest.
pub struct Resolution {
    pub result: Result<SecretBytes, GuestError>,
    /// The URI that answered (or was last tried); `None` for refused names.
    pub uri: Option<String>,
    pub cache: Option<CacheOutcome>,
    /// Operator-facing reason for a backend failure (no secrets in it).
    pub reason: Option<String>,
    /// Set when the answer came from the cache alone: where to count the hit.
    pub hits: Option<Arc<HitCounter>>,
}

impl BundleSecrets {
    pub fn new(
        bundle_id: Segment,
        scope: Scope,
        service: Arc<SecretsService>,
        counters: Arc<GetCounters>,
        max_gets_per_request: u32,
        declared: DeclaredSecrets,
    ) -> Self {
        let budget = Arc::new(FetchBudget::new(
            bundle_id.as_str(),
            BudgetPolicy::default(),
        ));
        let verify = Arc::new(VerifyChecks::new(
            bundle_id.as_str(),
            BudgetPolicy::VERIFY_DEFAULT,
        ));
        Self {
            scope,
            service,
            counters,
            max_gets_per_request,
            declared,
            resolved: RwLock::new(HashMap::new()),
            deadline: crate::secrets::cache::UNHURRIED,
            budget,
            verify,
            declared_status: RwLock::new(Vec::new()),
            missing: std::sync::Mutex::new(HashMap::new()),
            audit: audit::global().bundle(bundle_id.as_str()),
            bundle_id,
        }
    }

    /// Audits this bundle's calls through `audit` instead of the process's trail
    /// (tests); before any name is resolved.
    pub fn with_audit(mut self, audit: BundleAudit) -> Self {
        self.audit = audit;
        self
    }

    pub fn audit(&self) -> &BundleAudit {
        &self.audit
    }

    /// Bounds this bundle's backend trips: `deadline` each (see
    /// [`fetch_deadline`]), and `budget` fetches per second.
    pub fn with_limits(mut self, deadline: Duration, budget: BudgetPolicy) -> Self {
        self.deadline = deadline;
        self.budget = Arc::new(FetchBudget::new(self.bundle_id.as_str(), budget));
        self
    }

    /// Bounds this bundle's `sealed.verify-hmac-sha256` checks to `policy`.
    pub fn with_verify_budget(mut self, policy: BudgetPolicy) -> Self {
        self.verify = Arc::new(VerifyChecks::new(self.bundle_id.as_str(), policy));
        self
    }

    /// This bundle's signature checks (for `/metrics`).
    pub fn verify_checks(&self) -> &Arc<VerifyChecks> {
        &self.verify
    }

    /// Sets the names the bundle's manifest declares, sealed ones included
    /// (looked up by the keeper, reported by `/readyz`).
    pub fn with_declared<'a>(self, names: impl IntoIterator<Item = &'a str>) -> Self {
        *self
            .declared_status
            .write()
            .unwrap_or_else(|e| e.into_inner()) = names
            .into_iter()
            .map(|name| (name.to_string(), DeclaredStatus::Pending))
            .collect();
        self
    }

    pub fn budget(&self) -> &Arc<FetchBudget> {
        &self.budget
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Looks up every declared secret as the worker (not charged to the guest's
    /// budget, not counted as traffic) and remembers the outcome. A cached answer
    /// costs nothing; one past its TTL is fetched again, so declared secrets stay
    /// fresh and a guest never waits for them.
    pub async fn check_declared(&self) {
        let now = Instant::now();
        let names: Vec<String> = {
            let missing = self.missing.lock().unwrap_or_else(|e| e.into_inner());
            self.declared_status
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(name, _)| name.clone())
                .filter(|name| missing.get(name).is_none_or(|(next, _)| *next <= now))
                .collect()
        };
        // The keeper's backend trips are the bundle's: charged to its budget like a
        // guest's (a cache hit costs nothing).
        let limits = FetchLimits {
            deadline: self.deadline,
            budget: Some(&self.budget),
            counted: false,
        };
        let longest = self.service.policy().ttl.max(MISSING_FIRST_BACKOFF);
        for name in names {
            let result = self
                .resolve_within(&name, Use::Readiness, limits)
                .await
                .result;
            let status = match &result {
                Ok(_) => DeclaredStatus::Ok,
                // The budget is spent: what was found stays as it was, and the rest
                // waits for the next round.
                Err(GuestError::Unavailable) if self.budget.is_spent() => return,
                Err(error) => DeclaredStatus::Failed(describe_guest_error(error)),
            };
            {
                let mut missing = self.missing.lock().unwrap_or_else(|e| e.into_inner());
                if matches!(result, Err(GuestError::NotFound)) {
                    let backoff = missing
                        .get(&name)
                        .map_or(MISSING_FIRST_BACKOFF, |(_, last)| (*last * 2).min(longest));
                    missing.insert(name.clone(), (Instant::now() + backoff, backoff));
                } else {
                    missing.remove(&name);
                }
            }
            let mut declared = self
                .declared_status
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = declared.iter_mut().find(|(n, _)| *n == name) {
                entry.1 = status;
            }
        }
    }

    /// What the worker last found for each declared secret.
    pub fn declared(&self) -> Vec<(String, DeclaredStatus)> {
        self.declared_status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The paths to try for `name`, remembered after the first resolution.
    fn candidates(&self, name: &str) -> Result<Resolved, NameError> {
        if let Some(known) = self
            .resolved
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(known.clone());
        }
        let candidates: Arc<[Candidate]> = self
            .scope
            .resolve(&self.bundle_id, name)?
            .into_iter()
            .map(|path| {
                let uri = path.uri();
                Candidate {
                    hits: HitCounter::new(&self.audit, &uri),
                    uri,
                    path,
                }
            })
            .collect();
        let access = candidates
            .first()
            .map_or(Access::Undeclared, |c| self.declared.access(&c.path));
        let entry = Resolved { access, candidates };
        let mut resolved = self.resolved.write().unwrap_or_else(|e| e.into_inner());
        if resolved.len() < MAX_REMEMBERED_NAMES {
            resolved.insert(name.to_string(), entry.clone());
        }
        Ok(entry)
    }

    /// The canonical URI `name` resolves to first (for audit lines), if valid.
    pub fn uri_of(&self, name: &str) -> Option<String> {
        let resolved = self.candidates(name).ok()?;
        resolved.candidates.first().map(|c| c.uri.clone())
    }

    /// Resolves `name` for the guest's `get` in this bundle's scope and reads it:
    /// team first, then tenant-wide. Only declared, readable names are read.
    pub async fn resolve(&self, name: &str) -> Resolution {
        self.resolve_for(name, Use::Get).await
    }

    /// Reads `name` for the host's own use of it on the guest's behalf (`Use`
    /// says which names qualify); the value never goes back to the guest. Within
    /// the bundle's deadline and budget.
    pub async fn resolve_for(&self, name: &str, purpose: Use) -> Resolution {
        let limits = FetchLimits {
            deadline: self.deadline,
            budget: Some(&self.budget),
            counted: true,
        };
        self.resolve_within(name, purpose, limits).await
    }

    /// [`BundleSecrets::resolve_for`] within `limits`: team first, then
    /// tenant-wide.
    pub async fn resolve_within(
        &self,
        name: &str,
        purpose: Use,
        limits: FetchLimits<'_>,
    ) -> Resolution {
        let candidates = match self.candidates(name) {
            Ok(Resolved { access, candidates }) => match purpose.refusal(access) {
                None => candidates,
                Some(refusal) => {
                    return Resolution {
                        result: Err(GuestError::Denied),
                        uri: candidates.first().map(|c| c.uri.clone()),
                        cache: None,
                        reason: Some(refusal.to_string()),
                        hits: None,
                    };
                }
            },
            Err(NameError::Malformed(why)) => {
                return Resolution {
                    result: Err(GuestError::InvalidName(why.to_string())),
                    uri: None,
                    cache: None,
                    reason: None,
                    hits: None,
                };
            }
            Err(NameError::OutOfScope) => {
                return Resolution {
                    result: Err(GuestError::Denied),
                    // Well formed, so safe to log: the operator wants to know.
                    uri: Some(name.to_string()),
                    cache: None,
                    reason: None,
                    hits: None,
                };
            }
        };
        let mut cache = CacheOutcome::Hit;
        let mut last = None;
        for candidate @ Candidate { path, uri, hits } in candidates.iter() {
            match self.service.get_at(path, uri, limits).await {
                Ok((found, outcome)) => {
                    cache = combine(cache, outcome);
                    if let Some(value) = found {
                        return Resolution {
                            result: Ok(value),
                            uri: Some(uri.clone()),
                            cache: Some(cache),
                            reason: None,
                            hits: (cache == CacheOutcome::Hit).then(|| hits.clone()),
                        };
                    }
                    last = Some(candidate);
                }
                Err(error) => {
                    let guest_error = match error {
                        BackendError::Unavailable(_) => GuestError::Unavailable,
                        BackendError::Corrupt(_) => GuestError::Internal,
                    };
                    return Resolution {
                        result: Err(guest_error),
                        uri: Some(uri.clone()),
                        cache: Some(CacheOutcome::Miss),
                        reason: Some(error.to_string()),
                        hits: None,
                    };
                }
            }
        }
        self.service
            .found_nothing(candidates.iter().map(|c| c.uri.as_str()));
        Resolution {
            result: Err(GuestError::NotFound),
            uri: last.map(|c| c.uri.clone()),
            cache: Some(cache),
            reason: None,
            hits: last
                .filter(|_| cache == CacheOutcome::Hit)
                .map(|c| c.hits.clone()),
        }
    }
}

fn combine(so_far: CacheOutcome, next: CacheOutcome) -> CacheOutcome {
    match (so_far, next) {
        (CacheOutcome::Stale, _) | (_, CacheOutcome::Stale) => CacheOutcome::Stale,
        (CacheOutcome::Miss, _) | (_, CacheOutcome::Miss) => CacheOutcome::Miss,
        _ => CacheOutcome::Hit,
    }
}

fn outcome_name(result: &Result<SecretBytes, GuestError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(GuestError::NotFound) => "not-found",
        Err(GuestError::Denied) => "denied",
        Err(GuestError::InvalidName(_)) => "invalid-name",
        Err(GuestError::Unavailable) => "unavailable",
        Err(GuestError::Internal) => "internal",
    }
}

/// Per-request state of the capability: small on purpose.
pub struct SecretsCtx {
    bundle: Arc<BundleSecrets>,
    gets: u32,
}

impl SecretsCtx {
    pub fn new(bundle: Arc<BundleSecrets>) -> Self {
        Self { bundle, gets: 0 }
    }
}

impl SecretsCtx {
    /// One counted, audited resolution of `name` for `operation`; the per-request
    /// call budget covers every operation that reads a secret.
    async fn fetch(
        &mut self,
        name: &str,
        purpose: Use,
        operation: &'static str,
    ) -> wasmtime::Result<Result<SecretBytes, GuestError>> {
        let bundle = &self.bundle;
        self.gets += 1;
        if self.gets > bundle.max_gets_per_request {
            tracing::warn!(
                bundle = %bundle.bundle_id,
                limit = bundle.max_gets_per_request,
                "bundle exceeded its secrets.get calls per request; request stopped"
            );
            wasmtime::bail!(
                "bundle {} exceeded {} secrets.get calls in one request",
                bundle.bundle_id,
                bundle.max_gets_per_request
            );
        }
        let started = Instant::now();
        let mut resolution = bundle.resolve_for(name, purpose).await;
        let audit = &bundle.audit;
        let hit = resolution
            .hits
            .take()
            .and_then(|hits| Some((hits, HitKind::of(operation, resolution.result.is_ok())?)));
        // A cache hit is counted (one aggregate record per secret every few
        // seconds); anything else gets a record, aggregated for refusals.
        if let Some((hits, kind)) = &hit
            && audit.aggregates_hits()
        {
            audit.hit(hits, *kind, started);
            bundle.counters.count(&resolution.result);
            return Ok(resolution.result);
        }
        let latency_us = started.elapsed().as_micros() as u64;
        let outcome = outcome_name(&resolution.result);
        let cache = resolution.cache.map(CacheOutcome::as_str).unwrap_or("none");
        let refusal = match (&resolution.uri, &resolution.reason) {
            // The common case, kept small: the URI already names env, tenant and team.
            (Some(_), None) => None,
            (_, reason) => Some(Box::new(audit::Refusal {
                env: bundle.scope.env.to_string(),
                tenant: bundle.scope.tenant.to_string(),
                team: bundle.scope.team.as_str().to_string(),
                name_len: name.len(),
                reason: reason.clone().unwrap_or_default(),
            })),
        };
        let record = audit::Record::Call(audit::Call {
            operation,
            bundle: bundle.bundle_id.to_string(),
            secret: resolution
                .uri
                .clone()
                .unwrap_or_else(|| "(malformed)".to_string()),
            outcome,
            cache,
            latency_us,
            refusal,
        });
        if record.is_disclosure() {
            // Never handed out unaudited: a record the queue cannot take now
            // makes the call `unavailable` (the value is dropped, zeroized).
            if audit.disclose(record).is_err() {
                resolution.result = Err(GuestError::Unavailable);
            }
        } else if let Some((hits, kind)) = &hit {
            audit.hit_record(record, hits, *kind, started);
        } else {
            audit.record(record);
        }
        bundle.counters.count(&resolution.result);
        Ok(resolution.result)
    }

    async fn get_bytes(&mut self, name: &str) -> wasmtime::Result<Result<Vec<u8>, GuestError>> {
        let fetched = self.fetch(name, Use::Get, "secrets.get").await?;
        Ok(fetched.map(|value| value.expose().to_vec()))
    }
}

impl Host for SecretsCtx {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<Vec<u8>, GuestError>> {
        self.get_bytes(&name).await
    }
}

impl Host11 for SecretsCtx {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<Vec<u8>, GuestError11>> {
        Ok(self.get_bytes(&name).await?.map_err(error_1_1))
    }
}

impl StoreHost for SecretsCtx {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, StoreError>> {
        let fetched = self.fetch(&key, Use::Get, "secrets-store.get").await?;
        Ok(store_answer(fetched.map(|value| value.expose().to_vec())))
    }
}

/// Why a `greentic:secrets-store@1.1.0` `put` stops the guest: the message of the
/// trap, which the operator's log shows next to the bundle's name. That WIT's
/// `put` has no error result, so refusing it any other way would look like success.
pub const PUT_REFUSED: &str = "greentic:secrets-store put is refused: gtc is a read-only \
     secrets host (a guest reads secrets with get; operators write them with \
     `gtc op secrets put`), so a component that calls put cannot run here unchanged";

impl StoreHost11 for SecretsCtx {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, StoreError11>> {
        let fetched = self.fetch(&key, Use::Get, "secrets-store.get").await?;
        Ok(
            store_answer(fetched.map(|value| value.expose().to_vec())).map_err(
                |error| match error {
                    StoreError::NotFound => StoreError11::NotFound,
                    StoreError::Denied => StoreError11::Denied,
                    StoreError::InvalidKey => StoreError11::InvalidKey,
                    StoreError::Internal => StoreError11::Internal,
                },
            ),
        )
    }

    async fn put(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        // Neither the key (the guest's own text) nor the value reaches the log.
        drop(value);
        let bundle = &self.bundle;
        bundle
            .counters
            .store_put_refused
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            bundle = %bundle.bundle_id,
            key_len = key.len(),
            "secrets-store.put refused: this host is read-only; request stopped"
        );
        wasmtime::bail!("{PUT_REFUSED}")
    }
}

/// A `secrets.get` answer in `greentic:secrets-store` shapes: a missing secret is
/// `ok(none)`; a malformed key is `invalid-key`; `unavailable` becomes `internal`,
/// the only case that WIT has for a failure that is not the guest's.
fn store_answer(answer: Result<Vec<u8>, GuestError>) -> Result<Option<Vec<u8>>, StoreError> {
    match answer {
        Ok(value) => Ok(Some(value)),
        Err(GuestError::NotFound) => Ok(None),
        Err(GuestError::Denied) => Err(StoreError::Denied),
        Err(GuestError::InvalidName(_)) => Err(StoreError::InvalidKey),
        Err(GuestError::Unavailable | GuestError::Internal) => Err(StoreError::Internal),
    }
}

impl SealedHost for SecretsCtx {
    async fn verify_hmac_sha256(
        &mut self,
        name: String,
        message: Vec<u8>,
        mac: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, GuestError11>> {
        // Over the per-request limit, a signature check answers `unavailable`
        // (the guest can answer 503) instead of ending the request: checking
        // signatures is a normal part of a handler, not a runaway loop.
        if self.gets >= self.bundle.max_gets_per_request {
            self.gets = self.gets.saturating_add(1);
            self.bundle
                .counters
                .unavailable
                .fetch_add(1, Ordering::Relaxed);
            // Once per request: a guest looping on the error cannot flood the log.
            if self.gets == self.bundle.max_gets_per_request + 1 {
                tracing::warn!(
                    bundle = %self.bundle.bundle_id,
                    limit = self.bundle.max_gets_per_request,
                    "sealed.verify-hmac-sha256 over the per-request limit: answered unavailable"
                );
            }
            return Ok(Err(error_1_1(GuestError::Unavailable)));
        }
        let key = self
            .fetch(&name, Use::Sealed, "sealed.verify-hmac-sha256")
            .await?;
        // Only a check that compares a MAC is an oracle: it alone is charged to
        // the bundle's rate (a refused name taught the guest nothing).
        Ok(match key {
            Ok(key) => match self.bundle.verify.check(key.expose(), &message, &mac) {
                Some(valid) => Ok(valid),
                None => {
                    self.bundle
                        .counters
                        .unavailable
                        .fetch_add(1, Ordering::Relaxed);
                    Err(error_1_1(GuestError::Unavailable))
                }
            },
            Err(error) => Err(error_1_1(error)),
        })
    }
}

/// Constant-time check of an HMAC-SHA256 tag (`hmac`'s `verify_slice` compares
/// with `subtle`); a tag of the wrong length is simply not valid.
fn verify_hmac_sha256(key: &[u8], message: &[u8], mac: &[u8]) -> bool {
    use hmac::Mac;
    let Ok(mut hmac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return false;
    };
    hmac.update(message);
    hmac.verify_slice(mac).is_ok()
}

/// Adds `greentic:secrets` 1.0.0 and 1.1.0 and `greentic:secrets-store` 1.0.0 and
/// 1.1.0 to a linker, each under its exact name; `get` finds the per-request state.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut SecretsCtx,
) -> wasmtime::Result<()> {
    bindings::greentic::secrets1_0_0::secrets::add_to_linker::<T, HasSelf<SecretsCtx>>(
        linker, get,
    )?;
    bindings_1_1::greentic::secrets1_1_0::secrets::add_to_linker::<T, HasSelf<SecretsCtx>>(
        linker, get,
    )?;
    bindings_1_1::greentic::secrets1_1_0::sealed::add_to_linker::<T, HasSelf<SecretsCtx>>(
        linker, get,
    )?;
    bindings_store::greentic::secrets_store1_0_0::secrets_store::add_to_linker::<
        T,
        HasSelf<SecretsCtx>,
    >(linker, get)?;
    bindings_store_1_1::greentic::secrets_store1_1_0::secrets_store::add_to_linker::<
        T,
        HasSelf<SecretsCtx>,
    >(linker, get)
}

/// A short operator-facing description of a guest error.
pub fn describe_guest_error(error: &GuestError) -> String {
    match error {
        GuestError::NotFound => "not found (seed it with `gtc op secrets put`)".into(),
        GuestError::Denied => "outside the bundle's scope".into(),
        GuestError::InvalidName(why) => format!("invalid name: {why}"),
        GuestError::Unavailable => "secrets backend unavailable".into(),
        GuestError::Internal => "stored entry unusable (see the log)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::backend::{DevStore, SecretsBackend};
    use crate::secrets::cache::CachePolicy;
    use crate::secrets::scope::TeamSlot;

    fn bundle(dir: &std::path::Path) -> BundleSecrets {
        bundle_with_budget(dir, 1e9).with_limits(crate::secrets::cache::UNHURRIED, unlimited())
    }

    fn unlimited() -> BudgetPolicy {
        BudgetPolicy {
            per_second: 1e9,
            burst: 1e9,
        }
    }

    fn bundle_with_budget(dir: &std::path::Path, burst: f64) -> BundleSecrets {
        bundle_with(dir, burst, CachePolicy::default())
    }

    fn bundle_with(dir: &std::path::Path, burst: f64, policy: CachePolicy) -> BundleSecrets {
        let store = DevStore::new(dir.join("store.json"));
        store
            .put(
                &SecretPath::parse_uri("secrets://dev/acme/_/bot/shared").unwrap(),
                b"tenant",
            )
            .unwrap();
        store
            .put(
                &SecretPath::parse_uri("secrets://dev/acme/red/bot/own").unwrap(),
                b"team",
            )
            .unwrap();
        let service = SecretsService::new(SecretsBackend::DevStore(store), policy);
        BundleSecrets::new(
            Segment::parse("bot").unwrap(),
            Scope {
                env: Segment::parse("dev").unwrap(),
                tenant: Segment::parse("acme").unwrap(),
                team: TeamSlot::parse("red").unwrap(),
            },
            Arc::new(service),
            Arc::new(GetCounters::default()),
            DEFAULT_MAX_GETS_PER_REQUEST,
            DeclaredSecrets::unrestricted(),
        )
        .with_limits(
            crate::secrets::cache::UNHURRIED,
            BudgetPolicy {
                per_second: 0.001,
                burst,
            },
        )
    }

    #[tokio::test]
    async fn a_missing_declared_name_backs_off_doubling_up_to_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let policy = CachePolicy {
            ttl: Duration::from_secs(10),
            not_found_ttl: Duration::ZERO,
            ..CachePolicy::default()
        };
        let secrets = bundle_with(dir.path(), 1e9, policy)
            .with_limits(crate::secrets::cache::UNHURRIED, unlimited())
            .with_declared(["later", "own"]);
        let backoff = |secrets: &BundleSecrets| {
            secrets
                .missing
                .lock()
                .unwrap()
                .get("later")
                .map(|(_, backoff)| *backoff)
        };
        // Due now: moves the next look to the past, as time passing would.
        let make_due = |secrets: &BundleSecrets| {
            if let Some(entry) = secrets.missing.lock().unwrap().get_mut("later") {
                entry.0 = Instant::now();
            }
        };
        secrets.check_declared().await;
        assert_eq!(backoff(&secrets), Some(Duration::from_secs(2)));
        // Not due yet: not looked at again, the back-off stays.
        secrets.check_declared().await;
        assert_eq!(backoff(&secrets), Some(Duration::from_secs(2)));
        for expected in [4, 8, 10, 10] {
            make_due(&secrets);
            secrets.check_declared().await;
            assert_eq!(backoff(&secrets), Some(Duration::from_secs(expected)));
        }
        // A found name never backs off; once seeded, the missing one resolves and
        // its back-off is forgotten.
        assert!(secrets.missing.lock().unwrap().get("own").is_none());
        DevStore::new(dir.path().join("store.json"))
            .put(
                &SecretPath::parse_uri("secrets://dev/acme/_/bot/later").unwrap(),
                b"seeded-later",
            )
            .unwrap();
        make_due(&secrets);
        secrets.check_declared().await;
        assert_eq!(backoff(&secrets), None);
        assert!(
            secrets
                .declared()
                .iter()
                .all(|(_, status)| *status == DeclaredStatus::Ok),
            "{:?}",
            secrets.declared()
        );
    }

    #[tokio::test]
    async fn a_missing_secret_is_seen_soon_after_seeding_but_fallbacks_keep_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let policy = CachePolicy {
            not_found_ttl: Duration::from_millis(200),
            ..CachePolicy::default()
        };
        let secrets = bundle_with(dir.path(), 1e9, policy)
            .with_limits(crate::secrets::cache::UNHURRIED, unlimited());
        let store = DevStore::new(dir.path().join("store.json"));
        let value = |r: &Resolution| summary(r).0;

        // Nothing anywhere: not-found, remembered briefly.
        assert_eq!(
            value(&secrets.resolve("bot/late").await),
            Err("Error::NotFound".to_string())
        );
        store
            .put(
                &SecretPath::parse_uri("secrets://dev/acme/red/bot/late").unwrap(),
                b"seeded",
            )
            .unwrap();
        let again = secrets.resolve("bot/late").await;
        assert_eq!(value(&again), Err("Error::NotFound".to_string()));
        assert_eq!(again.cache, Some(CacheOutcome::Hit));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            value(&secrets.resolve("bot/late").await),
            Ok(b"seeded".to_vec())
        );

        // A team miss that fell back to the tenant-wide value keeps the full TTL:
        // a new team override is seen within one TTL, like a rotation.
        assert_eq!(
            value(&secrets.resolve("bot/shared").await),
            Ok(b"tenant".to_vec())
        );
        store
            .put(
                &SecretPath::parse_uri("secrets://dev/acme/red/bot/shared").unwrap(),
                b"team",
            )
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let shared = secrets.resolve("bot/shared").await;
        assert_eq!(value(&shared), Ok(b"tenant".to_vec()));
        assert_eq!(shared.cache, Some(CacheOutcome::Hit));
    }

    #[tokio::test]
    async fn the_budget_bounds_backend_trips_but_not_cached_answers() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = bundle_with_budget(dir.path(), 3.0);
        // `own` costs one trip (the team's entry exists).
        assert_eq!(
            summary(&secrets.resolve("own").await).0,
            Ok(b"team".to_vec())
        );
        // Two more trips: the team's `missing-0` (absent), then the tenant-wide one.
        assert!(matches!(
            secrets.resolve("missing-0").await.result,
            Err(GuestError::NotFound)
        ));
        for i in 1..20 {
            let outcome = secrets.resolve(&format!("missing-{i}")).await;
            assert!(
                matches!(outcome.result, Err(GuestError::Unavailable)),
                "{i}"
            );
            assert!(outcome.reason.unwrap().contains("budget"));
        }
        assert_eq!(secrets.budget().refused.load(Ordering::Relaxed), 19);
        // What is cached is still served.
        assert_eq!(
            summary(&secrets.resolve("own").await).0,
            Ok(b"team".to_vec())
        );
        assert!(matches!(
            secrets.resolve("missing-0").await.result,
            Err(GuestError::NotFound)
        ));
    }

    #[test]
    fn the_fetch_deadline_leaves_the_guest_most_of_its_time() {
        let secs = Duration::from_secs;
        assert_eq!(fetch_deadline(secs(5), secs(10)), secs(2));
        assert_eq!(fetch_deadline(secs(60), secs(10)), secs(10));
        assert_eq!(
            fetch_deadline(Duration::from_millis(10), secs(10)),
            Duration::from_millis(50)
        );
    }

    fn summary(resolution: &Resolution) -> (Result<Vec<u8>, String>, Option<String>) {
        (
            resolution
                .result
                .as_ref()
                .map(|v| v.expose().to_vec())
                .map_err(|e| format!("{e:?}")),
            resolution.uri.clone(),
        )
    }

    #[tokio::test]
    async fn remembered_resolutions_answer_exactly_like_fresh_ones() {
        let dir = tempfile::tempdir().unwrap();
        let remembered = bundle(dir.path());
        let names = [
            "shared",
            "own",
            "bot/own",
            "bot/shared",
            "missing",
            "secrets://dev/acme/red/bot/own",
            "secrets://dev/acme/blue/bot/own",
            "../own",
            "BOT/own",
            "",
        ];
        for name in names {
            let first = summary(&remembered.resolve(name).await);
            let second = summary(&remembered.resolve(name).await);
            // A bundle that has never seen the name (no memo) answers the same.
            let fresh = summary(&bundle(dir.path()).resolve(name).await);
            assert_eq!(first, second, "{name:?}");
            assert_eq!(first, fresh, "{name:?}");
        }
        assert_eq!(
            summary(&remembered.resolve("own").await).0,
            Ok(b"team".to_vec())
        );
        assert_eq!(
            summary(&remembered.resolve("shared").await).0,
            Ok(b"tenant".to_vec())
        );
    }

    #[tokio::test]
    async fn only_declared_names_are_readable_and_sealed_ones_never() {
        let dir = tempfile::tempdir().unwrap();
        let mut secrets = bundle(dir.path());
        secrets.declared = DeclaredSecrets::new(
            &secrets.scope,
            &secrets.bundle_id,
            ["own"],
            ["bot/shared"],
            false,
        )
        .unwrap();
        let own = secrets.resolve("secrets://dev/acme/red/bot/own").await;
        assert_eq!(summary(&own).0, Ok(b"team".to_vec()));
        for (name, reason) in [
            ("shared", "sealed"),
            ("secrets://dev/acme/_/bot/shared", "sealed"),
            ("other/own", "undeclared"),
            ("missing", "undeclared"),
        ] {
            let refused = secrets.resolve(name).await;
            assert!(matches!(refused.result, Err(GuestError::Denied)), "{name}");
            assert_eq!(refused.reason.as_deref(), Some(reason), "{name}");
        }
        secrets.declared.allow_undeclared = true;
        secrets.resolved.write().unwrap().clear();
        assert_eq!(
            summary(&secrets.resolve("other/own").await).0,
            Err("Error::NotFound".into())
        );
        assert!(matches!(
            secrets.resolve("shared").await.result,
            Err(GuestError::Denied)
        ));
        let out_of_scope = DeclaredSecrets::new(
            &secrets.scope,
            &secrets.bundle_id,
            ["secrets://dev/acme/blue/bot/own"],
            [],
            false,
        );
        assert!(out_of_scope.is_err());
    }

    #[tokio::test]
    async fn a_value_whose_disclosure_cannot_be_audited_is_not_handed_out() {
        use crate::secrets::audit::{AuditConfig, Auditor, Record, Sink};
        let dir = tempfile::tempdir().unwrap();
        // The audit writer is stuck in its sink until `gate` opens.
        let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let records = Arc::new(std::sync::Mutex::new(Vec::<Record>::new()));
        let sink = {
            let (gate, records) = (gate.clone(), records.clone());
            Arc::new(move |r: &Record| {
                let (open, opened) = &*gate;
                let _open = opened
                    .wait_while(open.lock().unwrap(), |open| !*open)
                    .unwrap();
                records.lock().unwrap().push(r.clone());
            }) as Sink
        };
        let auditor = Auditor::start(
            AuditConfig {
                queue: 4,
                flush_every: Duration::from_secs(3600),
                ..AuditConfig::default()
            },
            sink,
        );
        let secrets = Arc::new(bundle(dir.path()).with_audit(auditor.bundle("bot")));
        // One bundle, a queue of 4: one place for a disclosure.
        assert_eq!(auditor.config().shares(1).1, 1);
        let mut ctx = SecretsCtx::new(secrets.clone());
        let own = Host::get(&mut ctx, "own".into()).await.unwrap();
        assert_eq!(own.as_deref().ok(), Some(&b"team"[..]));
        // The writer has not written `own`'s record: `shared` cannot be audited,
        // so it is not handed out, through any of the interfaces.
        let shared = Host::get(&mut ctx, "shared".into()).await.unwrap();
        assert!(matches!(shared, Err(GuestError::Unavailable)), "{shared:?}");
        let store = StoreHost::get(&mut ctx, "bot/other-0".into())
            .await
            .unwrap();
        assert!(matches!(store, Ok(None)), "not found is no disclosure");
        assert_eq!(secrets.counters.unavailable.load(Ordering::Relaxed), 1);
        assert_eq!(secrets.counters.ok.load(Ordering::Relaxed), 1);
        assert_eq!(
            secrets
                .audit()
                .stats()
                .disclosures_refused
                .load(Ordering::Relaxed),
            1
        );
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        // Once `own`'s record is written, a disclosure is audited and handed out
        // again; `shared` (cached by the refused fetch) is then a counted hit.
        let deadline = Instant::now() + Duration::from_secs(10);
        while secrets.audit().stats().written.load(Ordering::Relaxed) < 1 {
            assert!(Instant::now() < deadline, "the writer never caught up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let shared = Host::get(&mut ctx, "shared".into()).await.unwrap();
        assert_eq!(shared.as_deref().ok(), Some(&b"tenant"[..]));
        auditor.shutdown();
        let records = records.lock().unwrap().clone();
        let disclosed: Vec<&str> = records
            .iter()
            .filter_map(|r| match r {
                Record::Call(c) if c.outcome == "ok" => Some(c.secret.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(disclosed, ["secrets://dev/acme/red/bot/own"]);
        assert!(
            records.iter().any(|r| matches!(r, Record::Hits(h)
                if &*h.secret == "secrets://dev/acme/_/bot/shared" && h.count == 1)),
            "{records:?}"
        );
        assert!(
            records
                .iter()
                .any(|r| matches!(r, Record::Refused { count: 1, .. }))
        );
    }

    #[tokio::test]
    async fn the_memo_is_bounded_and_still_correct_past_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = bundle(dir.path());
        for i in 0..(MAX_REMEMBERED_NAMES + 50) {
            let outcome = secrets.resolve(&format!("missing-{i}")).await;
            assert!(matches!(outcome.result, Err(GuestError::NotFound)));
        }
        assert_eq!(secrets.resolved.read().unwrap().len(), MAX_REMEMBERED_NAMES);
        assert_eq!(
            summary(&secrets.resolve("own").await).0,
            Ok(b"team".to_vec())
        );
    }
}
