//! Wiring: from the pod's environment (parsed once into a [`PodConfig`]) and the
//! operator's flags to a running host or router. App-wide state (engine, backend,
//! cache) is built here once; the command bodies of `gtc serve` and `gtc route`
//! live here because they wire the wings together.

use crate::bundle::compile_cache::CacheSetting;
use crate::bundle::fleet::{self, FleetErrors, Member};
use crate::bundle::manifest::{BundleError, BundleSpec, Limits, Manifest};
use crate::bundle::ownership::{self, Claims};
use crate::cli::{RouteArgs, ServeArgs};
use crate::config::{BackendConfig, ConfigError, Environment, PodConfig};
use crate::metrics::Metrics;
use crate::secrets::audit::{self, AuditConfig};
use crate::secrets::backend::{DevStore, SecretsBackend, VaultBackend};
use crate::secrets::cache::SecretsService;
use crate::secrets::capability::{
    BundleSecrets, DEFAULT_MAX_GETS_PER_REQUEST, DeclaredSecrets, GetCounters, fetch_deadline,
};
use crate::secrets::prefetch;
use crate::secrets::scope::Scope;
use crate::secrets::vault::VaultClient;
use crate::secrets::vault::health::jitter;
use crate::secrets::vault::session::Session;
use crate::serve::egress::EgressGuard;
use crate::serve::ingress::{self, Host};
use crate::serve::route::{self, Router};
use crate::serve::runtime::{Runtime, RuntimeConfig, RuntimeError};
use crate::serve::sealed::SealedEgress;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Several bundles' manifests are invalid: each is named.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Bundles(Vec<BundleError>),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// What `bundle::fleet::check` refuses about the bundles served together.
    #[error(transparent)]
    Fleet(#[from] FleetErrors),
    #[error("{0}")]
    Backend(String),
    #[error("no bundles to serve: pass at least one --bundle DIR[=TEAM]")]
    NoBundles,
    #[error("bundle {bundle}: {source}")]
    Declaration {
        bundle: String,
        source: crate::secrets::capability::DeclarationError,
    },
    #[error(transparent)]
    SealedOwner(#[from] crate::bundle::ownership::OwnerConflict),
    #[error("--allow-undeclared-secrets {0}: no bundle with that id is served")]
    UnknownBundle(String),
    #[error(transparent)]
    Sealed(#[from] crate::serve::sealed::SealedConfigError),
    #[error(transparent)]
    Router(#[from] crate::serve::route::RouteError),
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, String),
}

impl AppError {
    /// Whether the operator's configuration is at fault (exit status 2), rather
    /// than the machine or the network (exit status 1).
    pub fn is_configuration(&self) -> bool {
        match self {
            Self::Config(_)
            | Self::Bundle(_)
            | Self::Bundles(_)
            | Self::Fleet(_)
            | Self::NoBundles
            | Self::Declaration { .. }
            | Self::UnknownBundle(_)
            | Self::SealedOwner(_)
            | Self::Sealed(_) => true,
            Self::Runtime(runtime) => runtime.is_configuration(),
            Self::Router(router) => router.is_configuration(),
            Self::Backend(_) | Self::Listen(..) => false,
        }
    }
}

/// Builds the configured secrets backend for a worker. The Vault session logs
/// in from the background after `start_delay` (the start-up jitter): serving
/// starts at once, and `/readyz` says when the worker can serve.
pub fn worker_backend(pod: &PodConfig, start_delay: Duration) -> Result<SecretsBackend, AppError> {
    match &pod.backend {
        BackendConfig::DevStore { path } => {
            Ok(SecretsBackend::DevStore(DevStore::new(path.clone())))
        }
        BackendConfig::Vault(settings) => {
            let client =
                VaultClient::new(&settings.client).map_err(|e| AppError::Backend(e.to_string()))?;
            let session = Arc::new(Session::with_backoff(
                client,
                settings.login.clone(),
                pod.fleet.backoff,
            ));
            session.spawn_maintenance(start_delay);
            Ok(SecretsBackend::Vault(
                VaultBackend::new(session, settings.layout.clone())
                    .for_scope(&pod.env, &pod.tenant),
            ))
        }
    }
}

/// `gtc serve`: binds, builds the host from the pod's environment and the
/// operator's flags, and serves until `shutdown` completes.
pub async fn serve(
    env: &dyn Environment,
    args: ServeArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    // Bind first: the host's own port is a destination no bundle may reach.
    let listen = match args.listen {
        Some(listen) => listen,
        None => crate::config::listen_addr(env)?,
    };
    let listener = bind(listen).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| AppError::Listen(listen, e.to_string()))?;
    let runtime_config = runtime_config(&args, addr)?;
    audit::install(AuditConfig {
        every_hit: args.audit_every_hit,
        flush_every: args.audit_flush,
        queue: args.audit_queue,
        hold: env.var("GTC_TEST_AUDIT_HOLD").map(std::path::PathBuf::from),
    });
    crate::serve::log_limit::install_host_budget(args.max_log_lines_per_second);
    if args.bundles.is_empty() {
        return Err(AppError::NoBundles);
    }
    let pod = PodConfig::from_env(env)?;
    let (host, _runtime) = build_host(&pod, &args.bundles, &runtime_config).await?;
    // Tests and scripts read this line to find the port.
    println!("gtc listening on http://{addr}");
    tracing::info!(%addr, "serving");
    ingress::serve(listener, host, &args.connections.limits(), shutdown).await;
    // Pending aggregates and queued records are written before exit.
    audit::shutdown();
    Ok(())
}

/// The engine-wide settings `gtc serve`'s flags ask for; `own` is where the host
/// listens (no bundle may reach it: that port on loopback, on the bound address,
/// and on every interface address when bound to a wildcard).
fn runtime_config(args: &ServeArgs, own: std::net::SocketAddr) -> Result<RuntimeConfig, AppError> {
    Ok(RuntimeConfig {
        max_instances: args.max_instances,
        max_instances_per_bundle: args.max_instances_per_bundle,
        queue_timeout: args.queue_timeout,
        maxima: Limits {
            memory_bytes: (args.max_memory_mib as usize) << 20,
            timeout: args.max_timeout,
            response_bytes: args.max_response_mib << 20,
        },
        egress_guard: Arc::new(EgressGuard {
            allow_loopback: args.egress_allow_loopback,
            own_ports: vec![own.port()],
            own_addrs: crate::serve::egress::listener_addresses(own.ip()),
            ..Default::default()
        }),
        compile_cache: args.compile.setting(),
        keep_resident: (args.keep_resident_kib as usize) << 10,
        instance_reuse: args.instance_reuse_maxima(),
        // One turn per worker thread (--worker-threads).
        cpu_turns: None,
        allow_undeclared_secrets: args.allow_undeclared_secrets.clone(),
        share_sealed: args.share.share_sealed.clone(),
        sealed_egress: Some(Arc::new(SealedEgress::new(
            args.sealed_allow_http.clone(),
            args.egress_ca_file.as_deref(),
        )?)),
    })
}

/// `gtc route`: the router in front of the workers, until `shutdown` completes.
pub async fn route(args: RouteArgs, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    let router = Arc::new(Router::new(&args.upstreams)?);
    let listener = bind(args.listen).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| AppError::Listen(args.listen, e.to_string()))?;
    let metrics_listener = match args.metrics_listen {
        Some(metrics_addr) => Some(bind(metrics_addr).await?),
        None => None,
    };
    println!("gtc route listening on http://{addr}");
    if let (Some(metrics_listener), Some(asked)) = (&metrics_listener, args.metrics_listen) {
        let metrics_addr = metrics_listener
            .local_addr()
            .map_err(|e| AppError::Listen(asked, e.to_string()))?;
        println!("gtc route metrics on http://{metrics_addr}/metrics");
    }
    tracing::info!(%addr, upstreams = ?args.upstreams, "routing");
    route::serve(
        listener,
        metrics_listener,
        router,
        &args.connections.limits(),
        shutdown,
    )
    .await;
    Ok(())
}

async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, AppError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AppError::Listen(addr, e.to_string()))
}

/// The runtime `gtc bundle check` and `compile` use: one instance slot is enough
/// to link, and the engine's code settings are the ones `gtc serve` uses, so what
/// `compile` stores is what `serve` loads.
pub fn tool_runtime(compile_cache: CacheSetting) -> Result<Runtime, AppError> {
    Ok(Runtime::new(&RuntimeConfig {
        max_instances: 1,
        compile_cache,
        ..RuntimeConfig::default()
    })?)
}

/// Loads every bundle and returns the host that serves them: the backend, the
/// secrets service, the runtime, then each bundle's declared secrets and
/// component, then the keeper that keeps declared secrets fresh.
pub async fn build_host(
    pod: &PodConfig,
    specs: &[BundleSpec],
    runtime_config: &RuntimeConfig,
) -> Result<(Arc<Host>, Runtime), AppError> {
    if specs.is_empty() {
        return Err(AppError::NoBundles);
    }
    let metrics = Arc::new(Metrics::default());
    let mut runtime_config = runtime_config.clone();
    if runtime_config.max_instances_per_bundle.is_none() {
        runtime_config.max_instances_per_bundle =
            Some(fair_share(runtime_config.max_instances, specs.len()));
    }
    if let BackendConfig::Vault(settings) = &pod.backend {
        let mut guard = (*runtime_config.egress_guard).clone();
        forbid_backend(&mut guard, &settings.client.addr).await;
        runtime_config.egress_guard = Arc::new(guard);
    }
    // One draw for the login and the first fetch of declared secrets.
    let start_delay = match pod.backend {
        BackendConfig::Vault(_) => jitter(Duration::ZERO, pod.fleet.startup_jitter),
        BackendConfig::DevStore { .. } => Duration::ZERO,
    };
    let backend = worker_backend(pod, start_delay)?;
    tracing::info!(backend = %backend.describe(), env = %pod.env, tenant = %pod.tenant, "secrets backend selected");
    let service = Arc::new(SecretsService::new(backend, pod.cache));
    let gets = Arc::new(GetCounters::default());
    let runtime = Runtime::with_metrics(&runtime_config, metrics.clone())?;
    // Every manifest is read before any is refused, so that all their problems
    // are reported at once, as `gtc bundle check` does.
    let (manifests, invalid): (Vec<_>, Vec<_>) = specs
        .iter()
        .map(|spec| Manifest::load(&spec.dir))
        .partition(Result::is_ok);
    let mut invalid: Vec<BundleError> = invalid.into_iter().filter_map(Result::err).collect();
    if invalid.len() == 1 {
        return Err(invalid.remove(0).into());
    } else if !invalid.is_empty() {
        return Err(AppError::Bundles(invalid));
    }
    let manifests: Vec<Manifest> = manifests.into_iter().filter_map(Result::ok).collect();
    // The rules across bundles, the very ones `gtc bundle check` runs, before
    // anything is compiled.
    let members: Vec<Member<'_>> = specs
        .iter()
        .zip(&manifests)
        .map(|(spec, manifest)| Member {
            manifest,
            dir: &spec.dir,
            team: &spec.team,
        })
        .collect();
    let problems = fleet::check(&members);
    if !problems.is_empty() {
        return Err(FleetErrors(problems).into());
    }
    if let Some(unknown) = runtime_config
        .allow_undeclared_secrets
        .iter()
        .find(|id| !manifests.iter().any(|m| &m.id == *id))
    {
        return Err(AppError::UnknownBundle(unknown.to_string()));
    }
    let scope_of = |spec: &BundleSpec| Scope {
        env: pod.env.clone(),
        tenant: pod.tenant.clone(),
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
    for manifest in &manifests {
        for warning in manifest.warnings() {
            tracing::warn!(bundle = %manifest.id, "{warning}");
        }
    }
    let claims: Vec<Claims> = specs
        .iter()
        .zip(&manifests)
        .map(|(spec, manifest)| Claims::of(manifest, &spec.dir, Some(&spec.team)))
        .collect();
    let (conflicts, shared) = ownership::conflicts(&claims, &runtime_config.share_sealed);
    if let Some(conflict) = conflicts.into_iter().next() {
        return Err(conflict.into());
    }
    for shared in shared {
        tracing::warn!(
            secret = %shared.key,
            bundles = %shared.bundles.join(", "),
            "a sealed secret is shared by several bundles (--share-sealed): each of them may \
             inject it towards its own destinations and check signatures with it"
        );
    }
    let mut bundles = Vec::new();
    let mut keeper = Vec::new();
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
                    pod.fleet.backend_timeout,
                ),
                pod.fleet.budget,
            )
            .with_verify_budget(pod.fleet.verify_budget)
            .with_declared(manifest.declared_names()),
        );
        metrics.register_budget(secrets.budget().clone());
        metrics.register_verify(secrets.verify_checks().clone());
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
    tracing::info!(
        bundles = bundles.len(),
        distinct_components = runtime.distinct_components(),
        "bundles loaded: one compiled copy per distinct component"
    );
    if start_delay.is_zero() {
        // No start-up jitter to wait for: the first look-up happens before the
        // worker listens, so it is ready as soon as it serves (if it can).
        for secrets in &keeper {
            secrets.check_declared().await;
        }
    }
    prefetch::spawn_keeper(keeper, start_delay, prefetch::keeper_tick(pod.cache.ttl));
    let host = Host::new(bundles, service, gets, metrics);
    Ok((Arc::new(host), runtime))
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); lines the host's
/// libraries write on a guest's behalf are rate-limited per call site.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let limit = crate::serve::log_limit::CallsiteLimit::new(
        crate::serve::log_limit::CallsiteLimit::GUEST_DRIVEN,
    );
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let registry = tracing_subscriber::registry().with(filter).with(limit);
    if std::env::var("GTC_LOG_FORMAT").is_ok_and(|v| v == "json") {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt).init();
    }
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
}

/// The README's promise: 1 for a runtime failure, 2 for bad configuration (a
/// flag, a variable, a manifest, a component the host cannot run). Each wing's
/// error says which it is.
pub fn exit_status(error: &anyhow::Error) -> u8 {
    use crate::bundle::commands::BundleCommandError;
    use crate::ops::doctor::DoctorFailed;
    let configuration = if let Some(app) = error.downcast_ref::<AppError>() {
        app.is_configuration()
    } else if let Some(op) = error.downcast_ref::<crate::ops::secrets_admin::OpError>() {
        op.is_configuration()
    } else if let Some(bundle) = error.downcast_ref::<BundleCommandError>() {
        bundle.is_configuration()
    } else if let Some(runtime) = error.downcast_ref::<crate::serve::runtime::RuntimeError>() {
        runtime.is_configuration()
    } else if let Some(scaffold) = error.downcast_ref::<crate::bundle::scaffold::ScaffoldError>() {
        scaffold.is_configuration()
    } else if let Some(doctor) = error.downcast_ref::<DoctorFailed>() {
        matches!(doctor, DoctorFailed::Configuration)
    } else {
        error
            .downcast_ref::<crate::ops::deploy::RenderError>()
            .is_some()
            || error.downcast_ref::<crate::config::ConfigError>().is_some()
            || error
                .downcast_ref::<crate::bundle::manifest::BundleError>()
                .is_some()
    };
    if configuration { 2 } else { 1 }
}

/// Each bundle's default share of the instance pool: equal parts, at least one.
/// With no more bundles than pool slots the shares add up to no more than the
/// pool, so every bundle can always get its share however busy the others are;
/// with more bundles than slots each gets one, and a request past the free slots
/// waits its queue timeout for one.
pub fn fair_share(pool: u32, bundles: usize) -> u32 {
    let bundles = u32::try_from(bundles.max(1)).unwrap_or(u32::MAX);
    (pool / bundles).max(1)
}

/// Adds the secrets backend's address (by name and by every address it resolves
/// to now) to the destinations no bundle may reach.
async fn forbid_backend(guard: &mut EgressGuard, addr: &str) {
    let Ok(url) = reqwest::Url::parse(addr) else {
        return;
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(authority) = crate::bundle::authority::Authority::parse(&format!(
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
    fn fair_shares_fit_the_pool_and_are_never_zero() {
        for pool in [1u32, 2, 7, 256] {
            for bundles in 1usize..=300 {
                let share = super::fair_share(pool, bundles);
                if bundles <= pool as usize {
                    // Equal parts that fit: the sum never exceeds the pool, and
                    // no slot a bundle could have is left out.
                    assert!(
                        share as usize * bundles <= pool as usize,
                        "{pool}/{bundles}"
                    );
                    assert!(
                        (share as usize + 1) * bundles > pool as usize,
                        "{pool}/{bundles}"
                    );
                } else {
                    assert_eq!(share, 1, "{pool}/{bundles}: one each, never zero");
                }
            }
        }
        assert_eq!(super::fair_share(256, 2), 128);
        assert_eq!(super::fair_share(7, 3), 2);
    }
}
