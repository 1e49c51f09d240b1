//! The `gtc` binary: parses the command line, sets up logging, and reports errors
//! in words an operator can act on. Exit status: 0 ok, 1 runtime failure, 2 bad
//! configuration.

use anyhow::Context as _;
use clap::Parser as _;
use gtc::cli::{BundleCommand, Cli, Command, DeployCommand, OpCommand, RenderArgs, SecretsCommand};
use gtc::config::ProcessEnv;
use std::process::ExitCode;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); lines the host's
/// libraries write on a guest's behalf are rate-limited per call site.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let limit = gtc::log_limit::CallsiteLimit::new(gtc::log_limit::CallsiteLimit::GUEST_DRIVEN);
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

async fn shutdown_signal() {
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let env = ProcessEnv;
    match cli.command {
        Command::Serve(args) => {
            // Bind first: the host's own port is a destination no bundle may reach.
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            let addr = listener.local_addr()?;
            let runtime_config = gtc::runtime::RuntimeConfig {
                max_instances: args.max_instances,
                max_instances_per_bundle: args.max_instances_per_bundle,
                queue_timeout: args.queue_timeout,
                maxima: gtc::bundle::Limits {
                    memory_bytes: (args.max_memory_mib as usize) << 20,
                    timeout: args.max_timeout,
                    response_bytes: args.max_response_mib << 20,
                },
                egress_guard: std::sync::Arc::new(gtc::egress::EgressGuard {
                    allow_loopback: args.egress_allow_loopback,
                    own_ports: vec![addr.port()],
                    ..Default::default()
                }),
                compile_cache: args.compile.setting(),
                keep_resident: (args.keep_resident_kib as usize) << 10,
                allow_undeclared_secrets: args.allow_undeclared_secrets,
                sealed_egress: Some(std::sync::Arc::new(
                    gtc::sealed::SealedEgress::new(
                        args.sealed_allow_http,
                        args.egress_ca_file.as_deref(),
                    )
                    .map_err(gtc::app::AppError::from)?,
                )),
            };
            gtc::audit::install(gtc::audit::AuditConfig {
                every_hit: args.audit_every_hit,
                flush_every: args.audit_flush,
                ..Default::default()
            });
            let (host, _runtime) =
                gtc::app::build_host(&env, &args.bundles, &runtime_config).await?;
            // Tests and scripts read this line to find the port.
            println!("gtc listening on http://{addr}");
            tracing::info!(%addr, "serving");
            gtc::ingress::serve(
                listener,
                host,
                &args.connections.limits(),
                shutdown_signal(),
            )
            .await;
            // Pending aggregates and queued records are written before exit.
            gtc::audit::shutdown();
            Ok(())
        }
        Command::Deploy { command } => match *command {
            DeployCommand::Render(args) => {
                print!("{}", render(args)?);
                Ok(())
            }
        },
        Command::Bundle { command } => bundle_command(command),
        Command::New(args) => {
            let created = gtc::scaffold::create(args.lang, &args.name, args.dir.as_deref())?;
            println!(
                "created {} ({}, {} files); next, in that directory:",
                created.dir.display(),
                created.description,
                created.files
            );
            for line in created.next_steps() {
                println!("  {line}");
            }
            Ok(())
        }
        Command::Route(args) => {
            let router = std::sync::Arc::new(gtc::route::Router::new(&args.upstreams)?);
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            let addr = listener.local_addr()?;
            println!("gtc route listening on http://{addr}");
            tracing::info!(%addr, upstreams = ?args.upstreams, "routing");
            gtc::route::serve(
                listener,
                router,
                &args.connections.limits(),
                shutdown_signal(),
            )
            .await;
            Ok(())
        }
        Command::Doctor(args) => {
            let report = gtc::doctor::run(&env, &args.bundles).await;
            for check in &report.checks {
                println!("{check}");
            }
            if report.healthy() {
                println!("all checks passed");
                Ok(())
            } else if report.configuration_failed() {
                Err(DoctorFailed::Configuration.into())
            } else {
                Err(DoctorFailed::Check.into())
            }
        }
        Command::Op {
            command: OpCommand::Secrets { command },
        } => match command {
            SecretsCommand::Put {
                path,
                from_file,
                env: env_flag,
            } => {
                let done =
                    gtc::op::put(&env, &path, env_flag.as_deref(), from_file.as_deref()).await?;
                eprintln!("{done}");
                Ok(())
            }
            SecretsCommand::Ls {
                prefix,
                env: env_flag,
                check,
            } => {
                let lines = if check {
                    gtc::op::check(&env, &prefix, env_flag.as_deref()).await?
                } else {
                    gtc::op::list(&env, &prefix, env_flag.as_deref()).await?
                };
                for line in lines {
                    println!("{line}");
                }
                Ok(())
            }
            SecretsCommand::Rewrap {
                prefix,
                env: env_flag,
                from_key,
            } => {
                let (report, all_ok) =
                    gtc::op::rewrap(&env, &prefix, env_flag.as_deref(), Some(&from_key)).await?;
                print!("{report}");
                if all_ok {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!(
                        "some entries could not be rewrapped (see above)"
                    ))
                }
            }
        },
    }
}

/// `gtc bundle inspect | check | compile`.
fn bundle_command(command: BundleCommand) -> anyhow::Result<()> {
    use gtc::app::AppError;
    use gtc::runtime::{Runtime, RuntimeConfig};
    // One instance slot is enough to link; the engine's code settings are the ones
    // `gtc serve` uses, so what `compile` stores is what `serve` loads.
    let runtime = |cache| {
        Runtime::new(&RuntimeConfig {
            max_instances: 1,
            compile_cache: cache,
            ..RuntimeConfig::default()
        })
        .map_err(AppError::from)
    };
    match command {
        BundleCommand::Inspect { dir } => {
            let manifest = gtc::bundle::Manifest::load(&dir).map_err(AppError::from)?;
            print!("{}", manifest.review());
            Ok(())
        }
        BundleCommand::Check { dirs, compile } => {
            let runtime = runtime(compile.setting())?;
            let mut failed = 0;
            for dir in &dirs {
                let report = gtc::bundle_check::check(dir, &runtime);
                println!("== {}", dir.display());
                print!("{}", report.render());
                if !report.ok() {
                    failed += 1;
                }
            }
            if failed == 0 {
                Ok(())
            } else {
                Err(BundleCheckFailed::WouldNotStart(failed).into())
            }
        }
        BundleCommand::Compile { dirs, compile } => {
            let cache = compile.setting();
            if cache.dir().is_none() {
                return Err(BundleCheckFailed::NoCache.into());
            }
            let runtime = runtime(cache)?;
            for dir in &dirs {
                let manifest = gtc::bundle::Manifest::load(dir).map_err(AppError::from)?;
                let loaded = runtime.compile(&manifest).map_err(AppError::from)?;
                let stored = match (loaded.origin, &loaded.artifact) {
                    (gtc::compile_cache::Origin::Compiled { stored: false }, _) | (_, None) => {
                        anyhow::bail!(
                            "bundle {}: compiled, but the artifact could not be stored (see the log)",
                            manifest.id
                        )
                    }
                    (_, Some(artifact)) => artifact.clone(),
                };
                println!(
                    "{}: {:.1} MiB component, {} in {:.2} s -> {}",
                    manifest.id,
                    loaded.size as f64 / (1 << 20) as f64,
                    match loaded.origin {
                        gtc::compile_cache::Origin::Cached => "already compiled",
                        gtc::compile_cache::Origin::Compiled { .. } => "compiled",
                    },
                    loaded.elapsed.as_secs_f64(),
                    stored.display()
                );
            }
            Ok(())
        }
    }
}

/// `gtc bundle check` or `compile` cannot do its work (exit status 2).
#[derive(Debug, thiserror::Error)]
enum BundleCheckFailed {
    #[error("{0} bundle(s) would not start; see the errors above")]
    WouldNotStart(usize),
    #[error(
        "gtc bundle compile needs a compile cache: pass --compile-cache DIR \
         (or set GTC_COMPILE_CACHE, XDG_CACHE_HOME or HOME)"
    )]
    NoCache,
}

/// `gtc doctor` found a problem (already printed step by step).
#[derive(Debug, thiserror::Error)]
enum DoctorFailed {
    /// The pod's own configuration is wrong (exit status 2).
    #[error("doctor found a configuration error; see the FAIL line above")]
    Configuration,
    /// A check of the path to the secrets failed (exit status 1).
    #[error("doctor found a problem; see the FAIL line above")]
    Check,
}

fn render(args: RenderArgs) -> anyhow::Result<String> {
    use gtc::deploy::RenderError;
    let segment = |flag: &str, value: &str| {
        gtc::scope::Segment::parse(value).map_err(|e| {
            RenderError::Invalid(format!(
                "--{flag} {value:?}: {} (lower-case letters, digits, '.', '_' and '-')",
                e.reason()
            ))
        })
    };
    if let Some(old) = &args.vault_namespace {
        return Err(RenderError::Invalid(format!(
            "--vault-namespace {old:?}: this flag was renamed, because Vault's own namespaces \
             (VAULT_NAMESPACE) are something else: use --vault-k8s-namespace for the \
             Kubernetes namespace of Vault's pods, or --vault-enterprise-namespace for a \
             Vault Enterprise / OpenBao namespace"
        ))
        .into());
    }
    let dev_store = match &args.dev_store {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            RenderError::Invalid(format!(
                "--dev-store {}: cannot read it: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    // The bundles' manifests, when a copy is at hand: --bundles-dir for the
    // router's per-team routes, --bundle-manifests for the egress allowlists.
    let manifests = |flag: &str, dir: &std::path::Path| {
        args.bundles
            .iter()
            .map(|bundle| {
                gtc::bundle::Manifest::load(&dir.join(bundle.name.as_str()))
                    .map(|manifest| (bundle.name.clone(), manifest))
                    .map_err(|e| RenderError::Invalid(format!("--{flag}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let mut egress_allowlists = Vec::new();
    if let Some(dir) = &args.bundle_manifests {
        for (name, manifest) in manifests("bundle-manifests", dir)? {
            egress_allowlists.push((name.to_string(), manifest.egress_allow));
        }
    }
    let mut routes = std::collections::BTreeMap::new();
    if let Some(dir) = &args.bundles_dir {
        for (name, manifest) in manifests("bundles-dir", dir)? {
            routes.insert(name, manifest.routes);
        }
    }
    let team_workers = if args.isolate_teams {
        gtc::deploy::TeamWorkers::Isolated
    } else if args.shared_worker {
        gtc::deploy::TeamWorkers::Shared
    } else {
        gtc::deploy::TeamWorkers::Auto
    };
    let limit = |value: String| (value != "none").then_some(value);
    let mut dns = gtc::deploy::network::DnsFlags {
        namespace: args.dns_namespace,
        ..Default::default()
    };
    if !args.dns_pod_labels.is_empty() {
        dns.pod_labels = args.dns_pod_labels;
    }
    dns.cidrs = args.dns_cidrs;
    if !args.dns_ports.is_empty() {
        dns.ports = args.dns_ports;
    }
    let config = gtc::deploy::DeployConfig {
        env: segment("env", &args.env)?,
        tenant: segment("tenant", &args.tenant)?,
        namespace: args.namespace,
        image: args.image,
        backend: gtc::config::BackendKind::parse(&args.backend).map_err(|_| {
            RenderError::Invalid(format!(
                "--backend {:?}: expected vault or dev-store",
                args.backend
            ))
        })?,
        vault_addr: args.vault_addr,
        vault_role: args.vault_role,
        vault_network: gtc::deploy::network::VaultNetworkFlags {
            mode: args.vault_mode,
            k8s_namespace: args.vault_k8s_namespace,
            pod_labels: args.vault_pod_labels,
            target_port: args.vault_target_port,
            cidrs: args.vault_cidrs,
            port: args.vault_port,
        },
        vault_ca: args
            .vault_cacert_configmap
            .map(|config_map| gtc::deploy::VaultCa {
                config_map,
                key: args.vault_cacert_key,
            }),
        vault_enterprise_namespace: args.vault_enterprise_namespace,
        service_account: args.service_account,
        layout: gtc::backend::VaultLayout {
            kv_mount: args.kv_mount,
            kv_prefix: args.kv_prefix,
            transit_mount: args.transit_mount,
            transit_key: args.transit_key,
            legacy_transit_key: args.transit_legacy_key,
        },
        bundles: args.bundles,
        routes,
        team_workers,
        replicas: args.replicas,
        dev_store,
        dns,
        metrics: gtc::deploy::network::MetricsFlags {
            from_namespace: args.metrics_from_namespace,
            from_pod_labels: args.metrics_from_pod_labels,
            monitor: args.prometheus_operator,
            interval: args.scrape_interval,
        },
        image_pull_policy: args.image_pull_policy,
        egress: args.egress_cidrs,
        egress_allowlists,
        scale: gtc::deploy::scale::ScaleFlags {
            pdb_max_unavailable: (!args.no_pdb).then_some(args.pdb_max_unavailable),
            autoscale_max: args.autoscale_max,
            autoscale_cpu_percent: args.autoscale_cpu_percent,
            spread: args.topology_spread,
            worker: gtc::deploy::scale::ResourceFlags {
                cpu_request: args.worker_cpu_request,
                memory_request: args.worker_memory_request,
                cpu_limit: limit(args.worker_cpu_limit),
                memory_limit: args.worker_memory_limit,
            },
            router: gtc::deploy::scale::ResourceFlags {
                cpu_request: args.router_cpu_request,
                memory_request: args.router_memory_request,
                cpu_limit: limit(args.router_cpu_limit),
                memory_limit: args.router_memory_limit,
            },
        },
    };
    let objects = gtc::deploy::render(&config)?;
    Ok(gtc::deploy::to_yaml(&objects)?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(args) = &cli.command
        && let Some(threads) = args.worker_threads
    {
        builder.worker_threads(usize::from(threads));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(exit_status(&error))
        }
    }
}

/// The README's promise: 1 for a runtime failure, 2 for bad configuration (a
/// flag, a variable, a manifest, a component the host cannot run).
fn exit_status(error: &anyhow::Error) -> u8 {
    use gtc::app::AppError;
    let configuration = if let Some(app) = error.downcast_ref::<AppError>() {
        match app {
            AppError::Config(_)
            | AppError::Bundle(_)
            | AppError::Route(_)
            | AppError::NoBundles
            | AppError::Declaration { .. }
            | AppError::UnknownBundle(_)
            | AppError::Sealed(_) => true,
            AppError::Runtime(runtime) => runtime.is_configuration(),
            AppError::Backend(_) => false,
        }
    } else if let Some(op) = error.downcast_ref::<gtc::op::OpError>() {
        op.is_configuration()
    } else if error.downcast_ref::<BundleCheckFailed>().is_some() {
        true
    } else if let Some(scaffold) = error.downcast_ref::<gtc::scaffold::ScaffoldError>() {
        scaffold.is_configuration()
    } else if let Some(doctor) = error.downcast_ref::<DoctorFailed>() {
        matches!(doctor, DoctorFailed::Configuration)
    } else {
        error.downcast_ref::<gtc::deploy::RenderError>().is_some()
            || error.downcast_ref::<gtc::config::ConfigError>().is_some()
            || matches!(
                error.downcast_ref::<gtc::route::RouteError>(),
                Some(gtc::route::RouteError::Upstream(_) | gtc::route::RouteError::Conflict(_))
            )
    };
    if configuration { 2 } else { 1 }
}
