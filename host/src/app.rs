//! Wiring: from the pod's environment and the operator's `--bundle` arguments to a
//! running host. App-wide state (engine, backend, cache) is built here once.

use crate::backend::{DevStore, SecretsBackend, VaultBackend};
use crate::bundle::{BundleError, BundleSpec, Manifest};
use crate::cache::SecretsService;
use crate::capability::{
    BundleSecrets, DEFAULT_MAX_GETS_PER_REQUEST, DeclaredSecrets, GetCounters, fetch_deadline,
};
use crate::config::{self, BackendKind, ConfigError, Environment, FleetSettings};
use crate::ingress::{Host, RouteError};
use crate::metrics::Metrics;
use crate::prefetch;
use crate::runtime::{Runtime, RuntimeConfig, RuntimeError};
use crate::scope::Scope;
use crate::vault::VaultClient;
use crate::vault::health::jitter;
use crate::vault::session::Session;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("{0}")]
    Backend(String),
    #[error("no bundles to serve: pass at least one --bundle DIR[=TEAM]")]
    NoBundles,
    #[error("bundle {bundle}: {source}")]
    Declaration {
        bundle: String,
        source: crate::capability::DeclarationError,
    },
    #[error("--allow-undeclared-secrets {0}: no bundle with that id is served")]
    UnknownBundle(String),
    #[error(transparent)]
    Sealed(#[from] crate::sealed::SealedConfigError),
}

/// Builds the configured secrets backend for a worker. The Vault session logs
/// in from the background after `start_delay` (the start-up jitter): serving
/// starts at once, and `/readyz` says when the worker can serve.
pub async fn worker_backend(
    env: &dyn Environment,
    kind: BackendKind,
    metrics: &Arc<Metrics>,
    fleet: &FleetSettings,
    start_delay: Duration,
) -> Result<SecretsBackend, AppError> {
    match kind {
        BackendKind::DevStore => Ok(SecretsBackend::DevStore(DevStore::new(
            config::dev_store_path(env),
        ))),
        BackendKind::Vault => {
            let settings = config::vault_worker_settings(env)?;
            let client =
                VaultClient::new(&settings.client).map_err(|e| AppError::Backend(e.to_string()))?;
            let session = Arc::new(Session::with_backoff(
                client,
                settings.login,
                metrics.clone(),
                fleet.backoff,
            ));
            session.spawn_maintenance(start_delay);
            Ok(SecretsBackend::Vault(VaultBackend::new(
                session,
                settings.layout,
            )))
        }
    }
}

/// Loads every bundle and returns the host that serves them.
pub async fn build_host(
    env: &dyn Environment,
    specs: &[BundleSpec],
    runtime_config: &RuntimeConfig,
) -> Result<(Arc<Host>, Runtime), AppError> {
    if specs.is_empty() {
        return Err(AppError::NoBundles);
    }
    // The backend choice is checked first: it is the most important thing a pod
    // must get right, and its error names every accepted value.
    let kind = config::backend_kind(env)?;
    let (pod_env, tenant) = config::env_and_tenant(env)?;
    let metrics = Arc::new(Metrics::default());
    let mut runtime_config = runtime_config.clone();
    if runtime_config.max_instances_per_bundle.is_none() {
        runtime_config.max_instances_per_bundle =
            Some(fair_share(runtime_config.max_instances, specs.len()));
    }
    if kind == BackendKind::Vault {
        let settings = config::vault_worker_settings(env)?;
        let mut guard = (*runtime_config.egress_guard).clone();
        forbid_backend(&mut guard, &settings.client.addr).await;
        runtime_config.egress_guard = Arc::new(guard);
    }
    let fleet = config::fleet_settings(env)?;
    // One draw for the login and the first fetch of declared secrets.
    let start_delay = match kind {
        BackendKind::Vault => jitter(Duration::ZERO, fleet.startup_jitter),
        BackendKind::DevStore => Duration::ZERO,
    };
    let backend = worker_backend(env, kind, &metrics, &fleet, start_delay).await?;
    tracing::info!(backend = %backend.describe(), env = %pod_env, tenant = %tenant, "secrets backend selected");
    let cache_policy = config::cache_policy(env)?;
    let service = Arc::new(SecretsService::new(backend, cache_policy));
    let gets = Arc::new(GetCounters::default());
    let runtime = Runtime::with_metrics(&runtime_config, metrics.clone())?;
    let mut bundles = Vec::new();
    let mut keeper = Vec::new();
    let manifests = specs
        .iter()
        .map(|spec| Manifest::load(&spec.dir))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(unknown) = runtime_config
        .allow_undeclared_secrets
        .iter()
        .find(|id| !manifests.iter().any(|m| &m.id == *id))
    {
        return Err(AppError::UnknownBundle(unknown.to_string()));
    }
    let scope_of = |spec: &BundleSpec| Scope {
        env: pod_env.clone(),
        tenant: tenant.clone(),
        team: spec.team.clone(),
    };
    let all_declared = specs
        .iter()
        .zip(&manifests)
        .map(|(spec, manifest)| {
            let allow_undeclared = runtime_config
                .allow_undeclared_secrets
                .contains(&manifest.id);
            if allow_undeclared {
                tracing::warn!(
                    bundle = %manifest.id,
                    "this bundle may read secrets its manifest does not declare \
                     (--allow-undeclared-secrets): a migration switch, remove it once the \
                     manifest lists what the bundle reads"
                );
            }
            DeclaredSecrets::new(
                &scope_of(spec),
                &manifest.id,
                manifest.secrets.iter().map(String::as_str),
                manifest.sealed.iter().map(|s| s.name.as_str()),
                allow_undeclared,
            )
            .map_err(|source| AppError::Declaration {
                bundle: manifest.id.to_string(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for ((spec, manifest), mut declared) in specs.iter().zip(manifests).zip(all_declared.clone()) {
        let scope = scope_of(spec);
        declared.seal_also(&all_declared);
        let secrets = Arc::new(
            BundleSecrets::new(
                manifest.id.clone(),
                scope,
                service.clone(),
                gets.clone(),
                DEFAULT_MAX_GETS_PER_REQUEST,
                declared,
            )
            .with_limits(
                // The time limit in force: the manifest's, capped by the operator.
                fetch_deadline(
                    manifest.limits.capped(&runtime_config.maxima).0.timeout,
                    fleet.backend_timeout,
                ),
                fleet.budget,
            )
            .with_declared(manifest.declared_names()),
        );
        metrics.register_budget(secrets.budget().clone());
        keeper.push(secrets.clone());
        let started = std::time::Instant::now();
        let id = manifest.id.clone();
        let routes = manifest.routes.join(",");
        let bundle = runtime.load(manifest, secrets)?;
        tracing::info!(
            bundle = %id,
            team = spec.team.as_str(),
            routes = %routes,
            load_ms = started.elapsed().as_millis() as u64,
            max_instances = bundle.concurrency_cap(),
            timeout_ms = bundle.limits().timeout.as_millis() as u64,
            memory_mib = bundle.limits().memory_bytes >> 20,
            "bundle loaded"
        );
        bundles.push(Arc::new(bundle));
    }
    if start_delay.is_zero() {
        // No start-up jitter to wait for: the first look-up happens before the
        // worker listens, so it is ready as soon as it serves (if it can).
        for secrets in &keeper {
            secrets.check_declared().await;
        }
    }
    prefetch::spawn_keeper(keeper, start_delay, prefetch::keeper_tick(cache_policy.ttl));
    let host = Host::new(bundles, service, gets, metrics)?;
    Ok((Arc::new(host), runtime))
}

/// Each bundle's default share of the instance pool: equal parts, at least one.
/// The shares add up to no more than the pool, so every bundle can always get its
/// share however busy the others are.
pub fn fair_share(pool: u32, bundles: usize) -> u32 {
    let bundles = u32::try_from(bundles.max(1)).unwrap_or(u32::MAX);
    (pool / bundles).max(1)
}

/// Adds the secrets backend's address (by name and by every address it resolves
/// to now) to the destinations no bundle may reach.
async fn forbid_backend(guard: &mut crate::egress::EgressGuard, addr: &str) {
    let Ok(url) = reqwest::Url::parse(addr) else {
        return;
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(authority) = crate::egress::Authority::parse(&format!(
        "{}:{port}",
        if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        }
    )) {
        guard.forbidden_authorities.push(authority);
    }
    let lookup = tokio::net::lookup_host((host, port));
    if let Ok(Ok(addrs)) = tokio::time::timeout(std::time::Duration::from_secs(2), lookup).await {
        guard.forbidden_addrs.extend(addrs);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fair_shares_never_exceed_the_pool() {
        for pool in [1u32, 2, 7, 256] {
            for bundles in 1usize..=20 {
                let share = super::fair_share(pool, bundles);
                assert!(share >= 1);
                assert!(share as usize * bundles <= (pool as usize).max(bundles));
            }
        }
        assert_eq!(super::fair_share(256, 2), 128);
    }
}
