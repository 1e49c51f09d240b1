//! The `greentic:secrets/secrets` capability: what a guest's `secrets.get` does.
//!
//! App-wide state ([`BundleSecrets`]: the bundle's scope and the shared
//! [`SecretsService`]) is built once per bundle; per-request state ([`SecretsCtx`])
//! is an `Arc` and a counter. The import is trappable: the outer `Result` is a host
//! fault that stops the guest, the inner WIT `error` is what the guest sees, and no
//! case of it carries an address, a path, a token or a value.
//!
//! Every call emits one audit event (target `gtc::audit`): bundle, scope, the
//! resolved URI (or only the length of a malformed name), outcome, cache use and
//! latency. Never a value.

use crate::backend::BackendError;
use crate::cache::{CacheOutcome, SecretsService};
use crate::scope::{NameError, Scope, Segment};
use crate::secret_value::SecretBytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use wasmtime::component::{HasSelf, Linker};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        interfaces: "import greentic:secrets/secrets@1.0.0;",
        imports: { default: async | trappable },
    });
}

pub use bindings::greentic::secrets::secrets::Error as GuestError;
use bindings::greentic::secrets::secrets::Host;

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

/// What one bundle's `secrets.get` needs, shared by all its requests.
pub struct BundleSecrets {
    pub bundle_id: Segment,
    pub scope: Scope,
    pub service: Arc<SecretsService>,
    pub counters: Arc<GetCounters>,
    pub max_gets_per_request: u32,
}

/// The outcome of one `get`, before it is handed to the guest.
pub struct Resolution {
    pub result: Result<SecretBytes, GuestError>,
    /// The URI that answered (or was last tried); `None` for refused names.
    pub uri: Option<String>,
    pub cache: Option<CacheOutcome>,
    /// Operator-facing reason for a backend failure (no secrets in it).
    pub reason: Option<String>,
}

impl BundleSecrets {
    /// Resolves `name` in this bundle's scope and reads it: team first, then
    /// tenant-wide.
    pub async fn resolve(&self, name: &str) -> Resolution {
        let candidates = match self.scope.resolve(&self.bundle_id, name) {
            Ok(candidates) => candidates,
            Err(NameError::Malformed(why)) => {
                return Resolution {
                    result: Err(GuestError::InvalidName(why.to_string())),
                    uri: None,
                    cache: None,
                    reason: None,
                };
            }
            Err(NameError::OutOfScope) => {
                return Resolution {
                    result: Err(GuestError::Denied),
                    // Well formed, so safe to log: the operator wants to know.
                    uri: Some(name.to_string()),
                    cache: None,
                    reason: None,
                };
            }
        };
        let mut cache = CacheOutcome::Hit;
        let mut last_uri = None;
        for path in &candidates {
            let uri = path.uri();
            match self.service.get(path).await {
                Ok((found, outcome)) => {
                    cache = combine(cache, outcome);
                    if let Some(value) = found {
                        return Resolution {
                            result: Ok(value),
                            uri: Some(uri),
                            cache: Some(cache),
                            reason: None,
                        };
                    }
                    last_uri = Some(uri);
                }
                Err(error) => {
                    let guest_error = match error {
                        BackendError::Unavailable(_) => GuestError::Unavailable,
                        BackendError::Corrupt(_) => GuestError::Internal,
                    };
                    return Resolution {
                        result: Err(guest_error),
                        uri: Some(uri),
                        cache: Some(CacheOutcome::Miss),
                        reason: Some(error.to_string()),
                    };
                }
            }
        }
        Resolution {
            result: Err(GuestError::NotFound),
            uri: last_uri,
            cache: Some(cache),
            reason: None,
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

impl Host for SecretsCtx {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<Vec<u8>, GuestError>> {
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
        let resolution = bundle.resolve(&name).await;
        bundle.counters.count(&resolution.result);
        tracing::info!(
            target: "gtc::audit",
            bundle = %bundle.bundle_id,
            env = %bundle.scope.env,
            tenant = %bundle.scope.tenant,
            team = bundle.scope.team.as_str(),
            secret = resolution.uri.as_deref().unwrap_or("(malformed)"),
            name_len = name.len(),
            outcome = outcome_name(&resolution.result),
            cache = resolution.cache.map(CacheOutcome::as_str).unwrap_or("none"),
            latency_us = started.elapsed().as_micros() as u64,
            reason = resolution.reason.as_deref().unwrap_or(""),
            "secrets.get"
        );
        Ok(resolution.result.map(|value| value.expose().to_vec()))
    }
}

/// Adds `greentic:secrets/secrets` to a linker; `get` finds the per-request state.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut SecretsCtx,
) -> wasmtime::Result<()> {
    bindings::greentic::secrets::secrets::add_to_linker::<T, HasSelf<SecretsCtx>>(linker, get)
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
