//! The Wasm runtime: one engine, bundles compiled once and pre-instantiated, a fresh
//! instance per request from the pooling allocator, and the sandbox around it.
//!
//! Sandbox, per request: no environment variables, arguments, preopened directories
//! or sockets; outgoing HTTP only to the bundle's allowlist; memory, instance and
//! table limits; a time limit enforced by epoch interruption (CPU) and by a wall
//! clock timeout (waiting), covering the response body too; stdout/stderr to the
//! host log, tagged and size-limited; host-side resources (header maps, streams,
//! outgoing requests) bounded in proportion to the memory limit.
//!
//! Neighbours: a request holds its bundle's slot and a pool slot until its instance
//! is gone, each bundle may hold at most its share of the pool, and a request that
//! finds no slot within the queue timeout is refused with 503 + `Retry-After`
//! instead of waiting behind a hostile bundle.
//!
//! Reuse (opt-in, `[instances] reuse` in the manifest, within the operator's
//! maxima): an instance that served a request cleanly waits in its bundle's
//! [`WarmPool`] for the next request of the same bundle, keeping its slots; its
//! per-request state (time limit, secret reads, outgoing requests, output budget)
//! starts afresh each request. A trap, a time-out, a limit hit or a response that
//! did not end cleanly retires it; so do its request count, its age and idleness.

use crate::bundle::component_check;
use crate::bundle::manifest::{Limits, Manifest};
use crate::metrics::Metrics;
use crate::secrets::capability::{self, BundleSecrets, SecretsCtx};
use crate::serve::cpu_share::{BundleCpu, CpuShare};
use crate::serve::egress::{EgressGuard, EgressHooks, EgressPolicy};
use crate::serve::guest_log::{self, GuestLog, OutputBudget};
use crate::serve::host_memory::{self, BundleBytes, HostBytes, HostMemoryView};
use crate::serve::log_limit::LogLimiter;
use crate::serve::response_limit::LimitedBody;
use crate::serve::warm::{IdleInstances, Warm, WarmPool};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use wasmtime::component::{Component, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime::{StoreLimits, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::HostResponseOutparam;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// How often the epoch advances: the host looks at each running guest every tick
/// (stopping it once its time is up, so time limits hold to within a tick).
const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Ticks a guest runs before it yields its turn while nobody waits for one; while
/// a guest of any bundle waits ([`CpuShare::contended`]) it yields at its next
/// tick, and a bundle holding no turn ends the running slices at once (the
/// runtime advances the epoch). Short slices matter beyond the turns: tokio polls
/// for new I/O between tasks, so a slice is also how long a new request may wait
/// to be read. With 10 ms ticks and 50 ms uncontended slices a neighbour's median
/// was 0.36 s beside spinning guests and 8–110 ms beside header-map and refusal
/// floods; with 1 ms ticks and 2 ms slices it is within 3× of its baseline in
/// every row of BENCHMARKS.md's "Neighbour under attack".
const CHECK_EVERY_TICKS: u64 = 2;
/// Memory of a recycled instance slot that is wiped with `memset` and kept mapped,
/// instead of being returned to the kernel: no page faults on reuse and no TLB
/// shootdowns on release for the pages a typical request touches (a Rust guest's
/// shadow stack and first heap pages). It more than doubled requests/s (BENCHMARKS.md).
/// The wipe also means nothing a request left in memory survives into the next.
pub const KEEP_RESIDENT: usize = 2 << 20;
/// Idle slots kept warm (with up to KEEP_RESIDENT each resident): bounds the memory
/// an idle worker keeps after a burst.
const MAX_WARM_SLOTS: u32 = 32;
/// Extra wall-clock time, past the CPU limit, before a waiting request is abandoned.
const WALL_CLOCK_GRACE: Duration = Duration::from_millis(500);

/// Host-side resources (header maps, bodies, streams, pollables, outgoing
/// requests, pending futures) one request may hold at once, per MiB of the
/// bundle's memory limit. Together with [`FIELD_SIZE_LIMIT`] this ties the host
/// memory a request can make the host allocate to the memory the operator already
/// granted its guest: 32 entries × 32 KiB per MiB ≈ 1 MiB per MiB.
const HOST_RESOURCES_PER_MIB: usize = 32;
/// At least this many host-side resources per request, whatever the memory limit.
const MIN_HOST_RESOURCES: usize = 256;
/// Largest header map (in wasmtime's accounting: bytes plus per-entry overhead) a
/// guest may build; public proxies cap request headers at 8–32 KiB on the wire.
const FIELD_SIZE_LIMIT: usize = 32 << 10;

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Instances that may run at once (the pool size); more requests wait.
    pub max_instances: u32,
    /// Instances one bundle may hold at once (`None`: the whole pool). The app sets
    /// a fair share of the pool by default, so a bundle cannot starve the others.
    pub max_instances_per_bundle: Option<u32>,
    /// How long a request may wait for an instance before it is refused with 503.
    pub queue_timeout: Duration,
    /// The operator's maxima for what a bundle manifest may ask.
    pub maxima: Limits,
    /// Destinations no bundle may reach, whatever its manifest says.
    pub egress_guard: Arc<EgressGuard>,
    /// Where compiled components are kept between starts.
    pub compile_cache: crate::bundle::compile_cache::CacheSetting,
    /// Bundles (by id) the operator lets read secrets their manifest does not
    /// declare: a migration switch, empty by default.
    pub allow_undeclared_secrets: Vec<crate::secrets::scope::Segment>,
    /// Sealed values (`category/name`) the operator lets several bundles seal
    /// (`--share-sealed`); every other sealed value has one owner bundle.
    pub share_sealed: Vec<String>,
    /// The operator's settings for requests carrying sealed secrets (`None`:
    /// such requests are refused).
    pub sealed_egress: Option<Arc<crate::serve::sealed::SealedEgress>>,
    /// Bytes of each recycled slot's memory and tables kept mapped and wiped
    /// instead of returned to the kernel ([`KEEP_RESIDENT`] by default).
    pub keep_resident: usize,
    /// The operator's maxima for `[instances]` (one request: reuse is off for
    /// every bundle).
    pub instance_reuse: crate::bundle::manifest::InstanceReuse,
    /// Guests that may run at once, shared per bundle (`None`: the async
    /// runtime's worker threads, else the CPUs the process may use).
    pub cpu_turns: Option<usize>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: 256,
            max_instances_per_bundle: None,
            queue_timeout: Duration::from_secs(1),
            maxima: Limits::operator_default_maxima(),
            egress_guard: Arc::new(EgressGuard::default()),
            compile_cache: crate::bundle::compile_cache::CacheSetting::Off,
            allow_undeclared_secrets: Vec::new(),
            share_sealed: Vec::new(),
            sealed_egress: None,
            keep_resident: KEEP_RESIDENT,
            instance_reuse: crate::bundle::manifest::InstanceReuse::OPERATOR_DEFAULT_MAXIMA,
            cpu_turns: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot set up the Wasm engine: {0}")]
    Engine(String),
    #[error("bundle {bundle}: cannot load component {path}: {reason}")]
    Component {
        bundle: String,
        path: std::path::PathBuf,
        reason: String,
    },
    /// The file is not a component this host can run (bad configuration).
    #[error("bundle {bundle}: {problem}")]
    ComponentFile {
        bundle: String,
        problem: crate::bundle::component_check::ComponentFileError,
    },
}

impl RuntimeError {
    /// Whether the operator's configuration is at fault (exit status 2), rather
    /// than the machine (exit status 1).
    pub fn is_configuration(&self) -> bool {
        matches!(self, Self::Component { .. } | Self::ComponentFile { .. })
    }
}

/// Per-request store data.
pub struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: StoreLimits,
    egress: EgressHooks,
    secrets: SecretsCtx,
    output: OutputBudget,
    deadline: Instant,
    /// Ticks run since the guest last yielded its turn.
    ticks: u64,
    /// Set when the epoch callback ends the guest's slice (see `cpu_share`).
    yielded: Arc<AtomicBool>,
    /// Header-map bytes this request made the host hold.
    host_bytes: HostBytes,
}

impl HostMemoryView for RequestState {
    fn host_bytes(&mut self) -> &mut HostBytes {
        &mut self.host_bytes
    }
}

impl RequestState {
    /// Starts a request on a reused instance: its time limit, secret reads,
    /// outgoing requests and output budget are the new request's own.
    fn begin(&mut self, bundle: &LoadedBundle) {
        self.deadline = Instant::now() + bundle.limits.timeout;
        self.secrets = SecretsCtx::new(bundle.secrets.clone());
        self.egress = EgressHooks::new(bundle.egress.clone());
        self.output.refill(guest_log::DEFAULT_BUDGET);
        self.ticks = 0;
        self.host_bytes.reset();
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

/// `gtc bundle check` runs the start's own steps: this engine, linker, compile
/// cache and operator settings.
impl crate::bundle::check::ComponentHost for Runtime {
    type Error = RuntimeError;

    fn compile(
        &self,
        manifest: &Manifest,
    ) -> Result<crate::bundle::compile_cache::Loaded, RuntimeError> {
        Runtime::compile(self, manifest)
    }

    fn link_check(&self, component: &Component) -> Result<(), crate::bundle::check::LinkFailure> {
        self.pre_instantiate(component).map(|_| ())
    }

    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn maxima(&self) -> &Limits {
        &self.config.maxima
    }

    fn refuses_destination(
        &self,
        authority: &crate::bundle::authority::Authority,
    ) -> Option<&'static str> {
        self.config.egress_guard.refuses_literal(authority)
    }

    fn compile_cache_dir(&self) -> Option<&std::path::Path> {
        self.config.compile_cache.dir()
    }
}

/// The engine and linker, shared by every bundle.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RequestState>,
    /// Every distinct component loaded so far: bundles with the same component
    /// share one compiled copy.
    components: crate::bundle::compile_cache::LoadedComponents,
    slots: Arc<Semaphore>,
    /// Every reusing bundle's idle instances.
    idle: Arc<IdleInstances>,
    /// The turns guests run in, shared per bundle.
    cpu: Arc<CpuShare>,
    config: RuntimeConfig,
    metrics: Arc<Metrics>,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    pub fn new(config: &RuntimeConfig) -> Result<Self, RuntimeError> {
        Self::with_metrics(config, Arc::new(Metrics::default()))
    }

    /// A runtime that counts its requests in `metrics`.
    pub fn with_metrics(
        config: &RuntimeConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RuntimeError> {
        let engine_err = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let mut wasm = Config::new();
        wasm.epoch_interruption(true);
        let mut pool = PoolingAllocationConfig::default();
        let n = config.max_instances.max(1);
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(4))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_memory_size(crate::bundle::manifest::MAX_MEMORY_BYTES)
            .linear_memory_keep_resident(config.keep_resident)
            .table_keep_resident(config.keep_resident)
            // Where the kernel has PAGEMAP_SCAN (Linux ≥ 6.7), only the pages a
            // request dirtied are wiped, not the whole kept-resident range.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .max_unused_warm_slots(MAX_WARM_SLOTS);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(engine_err)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_err)?;
        host_memory::add_to_linker(&mut linker).map_err(engine_err)?;
        capability::add_to_linker(&mut linker, |state: &mut RequestState| &mut state.secrets)
            .map_err(engine_err)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (ticker_engine, stop) = (engine.clone(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("gtc-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| RuntimeError::Engine(format!("cannot start the epoch ticker: {e}")))?;

        let preempt_engine = engine.clone();
        Ok(Self {
            engine,
            linker,
            components: Default::default(),
            slots: Arc::new(Semaphore::new(n as usize)),
            idle: Arc::default(),
            cpu: Arc::new(
                CpuShare::new(config.cpu_turns.unwrap_or_else(|| {
                    tokio::runtime::Handle::try_current()
                        .map(|runtime| runtime.metrics().num_workers())
                        .unwrap_or_else(|_| {
                            std::thread::available_parallelism().map_or(1, usize::from)
                        })
                }))
                .with_preempt(move || preempt_engine.increment_epoch()),
            ),
            config: config.clone(),
            metrics,
            ticker_stop,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Distinct components loaded so far (bundles sharing one count once).
    pub fn distinct_components(&self) -> usize {
        self.components.len()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The settings this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Links `component` against the host's imports and checks its export: a
    /// start and `gtc bundle check` alike. The error names the import the linker
    /// stopped at, when it names one.
    fn pre_instantiate(
        &self,
        component: &Component,
    ) -> Result<ProxyPre<RequestState>, crate::bundle::check::LinkFailure> {
        use crate::bundle::check::LinkFailure;
        let instance_pre = self.linker.instantiate_pre(component).map_err(|e| {
            // wasmtime's own words: "component imports instance `NAME`, but a
            // matching implementation was not found in the linker".
            let import = e
                .to_string()
                .split_once("component imports ")
                .and_then(|(_, rest)| rest.split('`').nth(1))
                .map(str::to_string);
            LinkFailure::Import {
                import,
                reason: format!("{e:#}"),
            }
        })?;
        ProxyPre::new(instance_pre).map_err(|e| {
            LinkFailure::Export(format!(
                "not a wasi:http proxy (no incoming-handler export): {e:#}"
            ))
        })
    }

    /// Checks a bundle's component file and compiles it (or loads it from the
    /// compile cache): the first half of [`Runtime::load`], and all of
    /// `gtc bundle compile`.
    pub fn compile(
        &self,
        manifest: &Manifest,
    ) -> Result<crate::bundle::compile_cache::Loaded, RuntimeError> {
        component_check::check_file(&manifest.component).map_err(|problem| {
            RuntimeError::ComponentFile {
                bundle: manifest.id.to_string(),
                problem,
            }
        })?;
        crate::bundle::compile_cache::load(
            &self.engine,
            &manifest.component,
            &self.config.compile_cache,
            manifest.id.as_str(),
            &self.components,
        )
        .map_err(|e| RuntimeError::Component {
            bundle: manifest.id.to_string(),
            path: manifest.component.clone(),
            reason: e.to_string(),
        })
    }

    /// Compiles and pre-instantiates a bundle's component.
    pub fn load(
        &self,
        manifest: Manifest,
        secrets: Arc<BundleSecrets>,
    ) -> Result<LoadedBundle, RuntimeError> {
        let file_err = |problem: component_check::ComponentFileError| RuntimeError::ComponentFile {
            bundle: manifest.id.to_string(),
            problem,
        };
        let path = manifest.component.clone();
        let component = self.compile(&manifest)?.component;
        let (imports, _) = component_check::interfaces(&self.engine, &component);
        let missing = component_check::missing_imports(&imports);
        if !missing.is_empty() {
            return Err(file_err(
                component_check::ComponentFileError::Incompatible { path, missing },
            ));
        }
        let pre = self.pre_instantiate(&component).map_err(|failure| {
            let reason = match failure {
                crate::bundle::check::LinkFailure::Import { reason, .. }
                | crate::bundle::check::LinkFailure::Export(reason) => reason,
            };
            file_err(component_check::ComponentFileError::Unlinkable {
                path: path.clone(),
                reason,
            })
        })?;
        let bundle: Arc<str> = Arc::from(manifest.id.as_str());
        for (why, names) in component_check::sandboxed(&imports) {
            tracing::warn!(bundle = %bundle, imports = names.join(", "), "{why}");
        }
        for warning in crate::bundle::check::only_denied(&manifest, &imports) {
            tracing::warn!(bundle = %bundle, "{warning}");
        }
        let (limits, capped) = manifest.limits.capped(&self.config.maxima);
        if !capped.is_empty() {
            tracing::warn!(
                bundle = %bundle,
                "bundle manifest asks more than the operator allows; capped: {}",
                capped.join(", ")
            );
        }
        let log = Arc::new(LogLimiter::for_bundle());
        for authority in &manifest.egress_allow {
            if let Some(why) = self.config.egress_guard.refuses_literal(authority) {
                tracing::warn!(
                    bundle = %bundle,
                    %authority,
                    "egress.allow names a destination the operator forbids ({why}); requests to it will be refused"
                );
            }
        }
        let egress = Arc::new(EgressPolicy {
            bundle: bundle.clone(),
            allow: manifest.egress_allow.clone(),
            max_per_request: crate::serve::egress::DEFAULT_MAX_OUTGOING_PER_REQUEST,
            guard: self.config.egress_guard.clone(),
            log: log.clone(),
            sealed: manifest.sealed.clone(),
            sealed_egress: self.config.sealed_egress.clone(),
            sealed_counts: self.metrics.register_sealed(&bundle),
            secrets: secrets.clone(),
        });
        let pool = self.config.max_instances.max(1);
        let cap = self
            .config
            .max_instances_per_bundle
            .unwrap_or(pool)
            .clamp(1, pool);
        let instances = self.metrics.register_instances(&bundle);
        let requests = self.metrics.register_requests(&bundle);
        let warm = self.warm_pool(&bundle, &manifest, &secrets, &instances);
        let cpu = self.cpu.register(self.metrics.register_cpu(&bundle));
        Ok(LoadedBundle {
            name: bundle,
            limits,
            manifest,
            pre,
            secrets,
            egress,
            slots: self.slots.clone(),
            own_slots: Arc::new(Semaphore::new(cap as usize)),
            cap,
            queue_timeout: self.config.queue_timeout,
            metrics: self.metrics.clone(),
            log,
            instances,
            requests,
            warm,
            idle: self.idle.clone(),
            cpu,
            share: self.cpu.clone(),
            host_bytes: BundleBytes::new(host_memory::bundle_budget(limits.memory_bytes)),
        })
    }

    /// The pool of a bundle that reuses instances: the manifest's `[instances]`
    /// within the operator's maxima, its age within the secrets cache's TTL.
    fn warm_pool(
        &self,
        bundle: &str,
        manifest: &Manifest,
        secrets: &BundleSecrets,
        counts: &Arc<crate::metrics::InstanceCounts>,
    ) -> Option<Arc<WarmPool<Slot>>> {
        let (mut reuse, capped) = manifest.instances.capped(&self.config.instance_reuse);
        if !capped.is_empty() {
            tracing::warn!(
                bundle,
                "bundle manifest asks more instance reuse than the operator allows; capped: {}",
                capped.join(", ")
            );
        }
        if !reuse.enabled() {
            if manifest.instances.enabled() {
                tracing::info!(
                    bundle,
                    "instance reuse is off on this host (--max-instance-reuse 1 or \
                     --no-instance-reuse): a fresh instance per request"
                );
            }
            return None;
        }
        let ttl = secrets.service.policy().ttl;
        if !ttl.is_zero() && reuse.max_age > ttl {
            reuse.max_age = ttl;
        }
        tracing::info!(
            bundle,
            requests = reuse.requests,
            idle_timeout_ms = reuse.idle_timeout.as_millis() as u64,
            max_age_s = reuse.max_age.as_secs_f64(),
            "instances are reused (globals persist between this bundle's requests)"
        );
        let pool = Arc::new(WarmPool::new(reuse, counts.clone()));
        pool.spawn_sweeper();
        self.idle.register(&pool);
        Some(pool)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// How a request failed inside the host (the client gets a short status).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    #[error("bundle {bundle} exceeded its time limit of {limit:?}")]
    Timeout { bundle: String, limit: Duration },
    #[error("bundle {bundle} exceeded its memory limit of {limit_mib} MiB")]
    Memory { bundle: String, limit_mib: usize },
    #[error("bundle {bundle} exhausted its call stack (unbounded recursion?)")]
    Stack { bundle: String },
    #[error(
        "bundle {bundle} exceeded its host resource budget of {limit} handles \
         (header maps, bodies, streams, outgoing requests); request stopped"
    )]
    HostResources { bundle: String, limit: usize },
    #[error(
        "bundle {bundle} exceeded its host resource budget of {limit} bytes ({what}); \
         request stopped"
    )]
    HostMemory {
        bundle: String,
        what: &'static str,
        limit: usize,
    },
    #[error("bundle {bundle} failed: {reason}")]
    Guest { bundle: String, reason: String },
    #[error("bundle {bundle} never sent a response")]
    NoResponse { bundle: String },
    #[error("bundle {bundle}: bad request: {reason}")]
    BadRequest { bundle: String, reason: String },
    #[error(
        "bundle {bundle}: no instance free within {waited:?} ({what}); request refused with 503"
    )]
    Busy {
        bundle: String,
        what: String,
        waited: Duration,
    },
}

impl RequestError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Timeout { .. } => http::StatusCode::GATEWAY_TIMEOUT,
            Self::BadRequest { .. } => http::StatusCode::BAD_REQUEST,
            Self::Busy { .. } => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short log-limiter kind for this failure.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Memory { .. } => "memory",
            Self::Stack { .. } => "stack",
            Self::HostResources { .. } | Self::HostMemory { .. } => "host-resources",
            Self::Guest { .. } => "guest-failure",
            Self::NoResponse { .. } => "no-response",
            Self::BadRequest { .. } => "bad-request",
            Self::Busy { .. } => "busy",
        }
    }
}

/// A bundle ready to serve: compiled, linked, pre-instantiated.
pub struct LoadedBundle {
    name: Arc<str>,
    manifest: Manifest,
    limits: Limits,
    pre: ProxyPre<RequestState>,
    secrets: Arc<BundleSecrets>,
    egress: Arc<EgressPolicy>,
    /// The pool, shared by every bundle.
    slots: Arc<Semaphore>,
    /// This bundle's share of the pool.
    own_slots: Arc<Semaphore>,
    cap: u32,
    queue_timeout: Duration,
    metrics: Arc<Metrics>,
    log: Arc<LogLimiter>,
    instances: Arc<crate::metrics::InstanceCounts>,
    /// Its answered requests by status (`gtc_requests_total`).
    requests: Arc<crate::metrics::RequestCounts>,
    /// Idle instances kept for reuse (`None`: a fresh instance per request).
    warm: Option<Arc<WarmPool<Slot>>>,
    /// Every reusing bundle's idle instances, to evict from when the pool is full.
    idle: Arc<IdleInstances>,
    /// This bundle's place in the rotation of turns, and its CPU counters.
    cpu: Arc<BundleCpu>,
    share: Arc<CpuShare>,
    /// Header-map bytes over this bundle's running requests.
    host_bytes: Arc<BundleBytes>,
}

/// The slots a running request holds until its instance is gone.
struct Admission {
    _own: OwnedSemaphorePermit,
    _pool: OwnedSemaphorePermit,
}

/// An instance and the slots it holds: created for a request, and for a bundle
/// that reuses instances kept (slots included) between its requests.
pub struct Slot {
    store: Store<RequestState>,
    /// Set once instantiated (a fresh slot is instantiated in its request's task).
    proxy: Option<Proxy>,
    /// Set when a response of this instance was aborted (body over its limit,
    /// broken): it serves no further request.
    aborted: Arc<AtomicBool>,
    _admission: Admission,
}

impl LoadedBundle {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn secrets(&self) -> &Arc<BundleSecrets> {
        &self.secrets
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts a request answered on this bundle's route (`gtc_requests_total`).
    pub fn count_answered(&self, status: u16) {
        self.requests.answered(status);
    }

    /// The limits in force (the manifest's, capped by the operator's maxima).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Instances this bundle may hold at once.
    pub fn concurrency_cap(&self) -> u32 {
        self.cap
    }

    /// Instances this bundle holds right now.
    pub fn instances_in_use(&self) -> u32 {
        self.cap
            .saturating_sub(self.own_slots.available_permits() as u32)
    }

    /// The bundle's limiter for what the host logs on its behalf.
    pub fn log_limiter(&self) -> &Arc<LogLimiter> {
        &self.log
    }

    fn new_store(&self) -> Store<RequestState> {
        let budget = OutputBudget::new(guest_log::DEFAULT_BUDGET);
        let mut wasi = WasiCtx::builder();
        let log = || self.log.clone();
        wasi.stdout(GuestLog::new(
            self.name.clone(),
            "stdout",
            budget.clone(),
            log(),
        ))
        .stderr(GuestLog::new(
            self.name.clone(),
            "stderr",
            budget.clone(),
            log(),
        ))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .instances(32)
            .tables(64)
            .memories(8)
            .trap_on_grow_failure(true)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(self.host_resource_limit());
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(FIELD_SIZE_LIMIT);
        let state = RequestState {
            wasi: wasi.build(),
            http,
            table,
            limits,
            egress: EgressHooks::new(self.egress.clone()),
            secrets: SecretsCtx::new(self.secrets.clone()),
            output: budget,
            deadline: Instant::now() + self.limits.timeout,
            ticks: 0,
            yielded: Arc::default(),
            host_bytes: HostBytes::new(
                host_memory::request_budget(self.limits.memory_bytes),
                self.host_bytes.clone(),
            ),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        // Every tick of running: stop the guest once its time is spent; yield
        // its turn when another guest waits for one, or every CHECK_EVERY_TICKS.
        store.set_epoch_deadline(1);
        let share = self.share.clone();
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            if Instant::now() >= state.deadline {
                return Ok(UpdateDeadline::Interrupt);
            }
            state.ticks += 1;
            if state.ticks >= CHECK_EVERY_TICKS || share.contended() {
                state.ticks = 0;
                state.yielded.store(true, Ordering::Relaxed);
                Ok(UpdateDeadline::Yield(1))
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        store
    }

    /// Host-side resources one request of this bundle may hold at once.
    fn host_resource_limit(&self) -> usize {
        ((self.limits.memory_bytes >> 20) * HOST_RESOURCES_PER_MIB).max(MIN_HOST_RESOURCES)
    }

    /// An instance for a request: an idle one of this bundle when it reuses
    /// instances, else a fresh store holding this bundle's slot and a pool slot,
    /// waiting at most the queue timeout for them. A bundle waiting for its own
    /// slot takes an instance that comes back meanwhile; a request that finds
    /// the pool full first evicts the instance idle the longest on the host.
    async fn instance(&self) -> Result<Warm<Slot>, RequestError> {
        if let Some(warm) = self.take_warm() {
            return Ok(warm);
        }
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.queue_timeout;
        let mut queued = false;
        let own_cap = || format!("the bundle's concurrency cap of {} is reached", self.cap);
        let own = loop {
            match self.own_slots.clone().try_acquire_owned() {
                Ok(permit) => break permit,
                Err(TryAcquireError::Closed) => return Err(self.closed()),
                Err(TryAcquireError::NoPermits) => {}
            }
            self.note_queued(&mut queued, &own_cap());
            let returned = async {
                match &self.warm {
                    Some(pool) => pool.returned().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                permit = tokio::time::timeout_at(deadline, self.own_slots.clone().acquire_owned()) => {
                    break self.permit_or_busy(permit, started, own_cap())?;
                }
                () = returned => {
                    if let Some(warm) = self.take_warm() {
                        return Ok(warm);
                    }
                }
            }
        };
        let pool = loop {
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => break permit,
                Err(TryAcquireError::Closed) => return Err(self.closed()),
                Err(TryAcquireError::NoPermits) => {}
            }
            // An idle instance gives its slot up before anyone waits for one.
            if self.idle.evict_one() {
                continue;
            }
            let what = "every instance of the pool is busy";
            self.note_queued(&mut queued, what);
            let permit =
                tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await;
            break self.permit_or_busy(permit, started, what.to_string())?;
        };
        Ok(Warm::new(Slot {
            store: self.new_store(),
            proxy: None,
            aborted: Arc::default(),
            _admission: Admission {
                _own: own,
                _pool: pool,
            },
        }))
    }

    /// An idle instance of this bundle, ready for a new request.
    fn take_warm(&self) -> Option<Warm<Slot>> {
        let pool = self.warm.as_ref()?;
        let mut warm = loop {
            let warm = pool.take()?;
            // Its last response was aborted after it came back: not trusted again.
            if !warm.instance.aborted.load(Ordering::Relaxed) {
                break warm;
            }
            self.instances.retire(crate::metrics::Retired::Fault);
        };
        self.instances.reused.fetch_add(1, Ordering::Relaxed);
        let store = &mut warm.instance.store;
        store.data_mut().begin(self);
        store.set_epoch_deadline(1);
        Some(warm)
    }

    /// After a request that ended without fault: keeps the instance for the
    /// bundle's next request, or retires it. Done before the response's end is
    /// released, so that a client's next request finds the instance back.
    fn keep_or_retire(&self, mut warm: Warm<Slot>, proxy: Proxy) {
        let Some(pool) = &self.warm else {
            return;
        };
        if warm.instance.aborted.load(Ordering::Relaxed) {
            self.instances.retire(crate::metrics::Retired::Fault);
            return;
        }
        warm.instance.proxy = Some(proxy);
        warm.served += 1;
        // With the pool full, someone may be waiting for a slot: do not keep one idle.
        let keep = self.slots.available_permits() > 0;
        drop(pool.put(warm, keep));
    }

    fn closed(&self) -> RequestError {
        RequestError::Guest {
            bundle: self.name.to_string(),
            reason: "runtime is shutting down".into(),
        }
    }

    /// Logs (rate-limited) and counts a request that has to wait, once per request.
    fn note_queued(&self, queued: &mut bool, what: &str) {
        if std::mem::replace(queued, true) {
            return;
        }
        crate::limited_warn!(
            self.log,
            self.name,
            "queued",
            "request queued: {}; waiting up to {:?}",
            what,
            self.queue_timeout
        );
        self.metrics.queued(&self.name);
    }

    fn permit_or_busy(
        &self,
        waited: Result<
            Result<OwnedSemaphorePermit, tokio::sync::AcquireError>,
            tokio::time::error::Elapsed,
        >,
        started: Instant,
        what: String,
    ) -> Result<OwnedSemaphorePermit, RequestError> {
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(self.closed()),
            Err(_) => Err(RequestError::Busy {
                bundle: self.name.to_string(),
                what,
                waited: started.elapsed(),
            }),
        }
    }

    /// Runs the request on an instance (fresh, or this bundle's reused one) and
    /// returns the guest's response.
    ///
    /// The instance keeps its slots until it is gone: a guest that sends its head
    /// and then keeps streaming (or hangs) holds them until it finishes or its time
    /// limit stops it, so a bundle can never run more instances than its cap. The
    /// returned body ends cleanly only when the instance finished without fault;
    /// a failure after the head aborts the response (see [`GuardedBody`]).
    pub async fn handle<B>(
        self: &Arc<Self>,
        request: hyper::Request<B>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, RequestError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let bundle = || self.name.to_string();
        let head_request = request.method() == http::Method::HEAD;
        let mut warm = self.instance().await?;
        let store = &mut warm.instance.store;
        let (sender, mut receiver) = tokio::sync::oneshot::channel();
        let bad_request = |e: wasmtime::Error| RequestError::BadRequest {
            bundle: bundle(),
            reason: format!("{e:#}"),
        };
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(bad_request)?;
        let outparam = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(bad_request)?;
        let outparam_rep = outparam.rep();
        let this = self.clone();
        let limit = self.limits.timeout;
        let until = tokio::time::Instant::now() + limit + WALL_CLOCK_GRACE;
        let aborted = warm.instance.aborted.clone();
        let yielded = warm.instance.store.data().yielded.clone();
        let (outcome_tx, mut outcome_rx) = tokio::sync::oneshot::channel();
        let mut run = GuestRun::new(async move {
            let run = this.share.run(&this.cpu, yielded, async {
                let slot = &mut warm.instance;
                let proxy = match slot.proxy.take() {
                    Some(proxy) => proxy,
                    None => {
                        this.instances.created.fetch_add(1, Ordering::Relaxed);
                        this.pre.instantiate_async(&mut slot.store).await?
                    }
                };
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut slot.store, incoming, outparam)
                    .await?;
                // A guest that returned holding its response-outparam (kept in
                // a global, neither set nor dropped) would leave this client
                // waiting on an instance that serves others: it is not reused,
                // and dropping it ends the request.
                let kept: Resource<HostResponseOutparam> = Resource::new_own(outparam_rep);
                let held = slot.store.data_mut().table.get(&kept).is_ok();
                Ok((proxy, held))
            });
            let result = match tokio::time::timeout_at(until, run).await {
                Ok(result) => result.map_err(|e| this.classify(e)),
                Err(_) => Err(RequestError::Timeout {
                    bundle: this.name.to_string(),
                    limit,
                }),
            };
            let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
            match result {
                // A reusable instance is back in its pool before the response
                // ends, so that the client's next request finds it there.
                Ok((proxy, false)) if this.warm.is_some() => {
                    this.keep_or_retire(warm, proxy);
                    let _ = outcome_tx.send(outcome.clone());
                }
                // Otherwise the body learns the outcome first; the instance is
                // then dropped (its memory wiped) and only after that are its
                // slots released.
                result => {
                    let _ = outcome_tx.send(outcome.clone());
                    if this.warm.is_some() && !matches!(result, Ok((_, false))) {
                        this.instances.retire(crate::metrics::Retired::Fault);
                    }
                    drop(warm);
                }
            }
        });
        let started = Instant::now();
        // The guest runs on this task until its head arrives (a guest that
        // answers at once has then ended too). A run that ended without a head has
        // dropped its sender, so `None` is not expected; it means "no response".
        let head = std::future::poll_fn(|cx| {
            let finished = run.poll_run(cx).is_ready();
            match std::pin::Pin::new(&mut receiver).poll(cx) {
                std::task::Poll::Ready(head) => std::task::Poll::Ready(Some(head)),
                std::task::Poll::Pending if finished => std::task::Poll::Ready(None),
                std::task::Poll::Pending => std::task::Poll::Pending,
            }
        })
        .await;
        match head {
            Some(Ok(Ok(response))) => {
                // A guest still writing its body goes on as a task of its own:
                // hyper stops polling the body while the client does not read,
                // and the run's time limit must still end it.
                run.detach();
                let status = response.status().as_u16();
                // hyper never reads the body of these; the request ends with its
                // instance, not with a body.
                let bodyless = head_request
                    || response.status().is_informational()
                    || matches!(status, 204 | 304);
                let (limit, bundle) = (self.limits.response_bytes, self.clone());
                Ok(response.map(move |body| {
                    GuardedBody {
                        inner: LimitedBody::new(body, limit),
                        outcome: Some(outcome_rx),
                        aborted,
                        inner_done: false,
                        bundle: Some(bundle),
                        status,
                        started,
                        bodyless,
                    }
                    .boxed_unsync()
                }))
            }
            Some(Ok(Err(code))) => Err(RequestError::Guest {
                bundle: bundle(),
                reason: format!("guest answered with error code {code:?}"),
            }),
            Some(Err(_)) | None => {
                std::future::poll_fn(|cx| run.poll_run(cx)).await;
                Err(match outcome_rx.try_recv() {
                    Ok(Ok(())) => RequestError::NoResponse { bundle: bundle() },
                    Ok(Err(error)) => error,
                    Err(_) => RequestError::Guest {
                        bundle: bundle(),
                        reason: "the request's run ended without an outcome".into(),
                    },
                })
            }
        }
    }

    fn classify(&self, error: wasmtime::Error) -> RequestError {
        let bundle = self.name.to_string();
        // The trap sits below a backtrace context; find it in the chain.
        let trap = error
            .chain()
            .find_map(|cause| cause.downcast_ref::<Trap>().copied());
        let table_full = error.chain().any(|cause| {
            cause
                .downcast_ref::<wasmtime::component::ResourceTableError>()
                .is_some_and(|e| matches!(e, wasmtime::component::ResourceTableError::Full))
        });
        let over_budget = error
            .chain()
            .find_map(|cause| cause.downcast_ref::<host_memory::OverBudget>());
        let chain = format!("{error:#}");
        if let Some(over) = over_budget {
            return RequestError::HostMemory {
                bundle,
                what: over.what,
                limit: over.limit,
            };
        }
        match trap {
            Some(Trap::Interrupt) => RequestError::Timeout {
                bundle,
                limit: self.limits.timeout,
            },
            Some(Trap::StackOverflow) => RequestError::Stack { bundle },
            _ if table_full => RequestError::HostResources {
                bundle,
                limit: self.host_resource_limit(),
            },
            _ if chain.contains("forcing trap when growing memory") => RequestError::Memory {
                bundle,
                limit_mib: self.limits.memory_bytes >> 20,
            },
            // A short reason: the trap itself (its text starts with "wasm trap:"),
            // not a page of wasm backtrace.
            Some(trap) => RequestError::Guest {
                bundle,
                reason: trap.to_string(),
            },
            None => RequestError::Guest {
                bundle,
                reason: error.root_cause().to_string(),
            },
        }
    }

    /// Logs a failed request once (through the bundle's limiter).
    pub fn log_failure(&self, error: &RequestError, elapsed: Duration, after_head: bool) {
        let when = if after_head {
            "after the response head was sent; response aborted"
        } else {
            "before a response was sent"
        };
        crate::limited_warn!(
            self.log,
            self.name,
            error.kind(),
            elapsed_ms = elapsed.as_millis() as u64,
            "{error} ({when})"
        );
    }
}

/// The response body of a guest: it ends cleanly only when the instance that
/// produced it finished without fault. A trap, a time-out or a cut-off after the
/// head makes the body end with an error, so the client sees an aborted response
/// (no terminating chunk, connection closed) rather than a truncated one that looks
/// complete; the failure is logged once and counted as `status="aborted"`. The
/// request is counted in `/metrics` when its body ends.
pub struct GuardedBody {
    inner: LimitedBody,
    outcome: Option<tokio::sync::oneshot::Receiver<Result<(), RequestError>>>,
    /// Set when the response is aborted: its instance is not reused.
    aborted: Arc<AtomicBool>,
    inner_done: bool,
    /// Taken when the request is accounted for.
    bundle: Option<Arc<LoadedBundle>>,
    status: u16,
    started: Instant,
    /// The client gets no body (HEAD, 204, 304): hyper drops it unread.
    bodyless: bool,
}

impl GuardedBody {
    /// The bundle's name while the request is not yet accounted for.
    fn bundle_name(&self) -> String {
        self.bundle
            .as_ref()
            .map(|b| b.name.to_string())
            .unwrap_or_default()
    }

    fn finish_ok(&mut self) {
        if let Some(bundle) = self.bundle.take() {
            bundle.requests.answered(self.status);
        }
    }

    fn finish_aborted(&mut self, error: &RequestError) {
        self.aborted.store(true, Ordering::Relaxed);
        if let Some(bundle) = self.bundle.take() {
            bundle.log_failure(error, self.started.elapsed(), true);
            bundle.requests.aborted();
        }
    }
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        if !this.inner_done {
            match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => return Poll::Ready(Some(Ok(frame))),
                Poll::Ready(Some(Err(error))) => {
                    this.inner_done = true;
                    this.outcome = None;
                    let bundle = this.bundle_name();
                    let failure = match &error {
                        wasmtime_wasi_http::Error::HttpResponseBodySize(Some(limit)) => {
                            RequestError::Guest {
                                bundle,
                                reason: format!(
                                    "response exceeded its body size limit of {limit} bytes"
                                ),
                            }
                        }
                        other => RequestError::Guest {
                            bundle,
                            reason: format!("response body failed: {other}"),
                        },
                    };
                    this.finish_aborted(&failure);
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) => this.inner_done = true,
            }
        }
        let Some(outcome) = this.outcome.as_mut() else {
            return Poll::Ready(None);
        };
        let result = match std::pin::Pin::new(outcome).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(result)) => result,
            Poll::Ready(Err(_)) => Err(RequestError::Guest {
                bundle: this.bundle_name(),
                reason: "the request task ended without an outcome".into(),
            }),
        };
        this.outcome = None;
        match result {
            Ok(()) => {
                this.finish_ok();
                Poll::Ready(None)
            }
            Err(error) => {
                this.finish_aborted(&error);
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseIncomplete)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Never claim the end before the outcome is known: hyper must poll once
        // more, so that a failure still aborts the response.
        self.outcome.is_none() && self.inner_done
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        let Some(bundle) = self.bundle.take() else {
            return;
        };
        let outcome = self.outcome.take();
        match (
            self.bodyless,
            outcome,
            tokio::runtime::Handle::try_current(),
        ) {
            // No body was ever due: account for the request when its instance ends.
            (true, Some(outcome), Ok(runtime)) => {
                let (status, started) = (self.status, self.started);
                runtime.spawn(async move {
                    match outcome.await {
                        Ok(Ok(())) => bundle.requests.answered(status),
                        Ok(Err(error)) => {
                            bundle.log_failure(&error, started.elapsed(), true);
                            bundle.requests.aborted();
                        }
                        Err(_) => bundle.requests.aborted(),
                    }
                });
            }
            (true, _, _) => bundle.requests.answered(self.status),
            // The client went away before the body ended.
            (false, _, _) => bundle.requests.answered(CLIENT_GONE),
        }
    }
}

/// A request's guest run, driven by the task that serves its connection until
/// the response head arrives: a guest that answers at once (sets its response,
/// writes its body, returns) has then ended, and no task was spawned for it, nor
/// any wake-up passed between tasks. A run that goes on after the head, or whose
/// connection goes away first (hyper drops the request's future), goes on as a
/// task of its own, so the guest ends as it would have: at its time limit at the
/// latest, its instance reused or wiped, its slots released. (A guest that sets its
/// head and then computes without waiting sends that head when its slice ends, at
/// most one slice later, rather than at once.)
struct GuestRun(Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>);

impl GuestRun {
    fn new(run: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(Some(Box::pin(run)))
    }

    /// Runs the guest on; ready once the run has ended. A run that panics ends
    /// there, as a spawned task's would: its response sender and outcome are
    /// dropped with it, so the client gets a 500 (or an aborted body) and the
    /// connection lives on.
    fn poll_run(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let Some(run) = self.0.as_mut() else {
            return std::task::Poll::Ready(());
        };
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.as_mut().poll(cx)));
        match polled {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(())) | Err(_) => {
                self.0 = None;
                std::task::Poll::Ready(())
            }
        }
    }

    /// Leaves what is left of the run to a task of its own.
    fn detach(mut self) {
        self.spawn_rest();
    }

    fn spawn_rest(&mut self) {
        if let Some(run) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(run);
        }
    }
}

impl Drop for GuestRun {
    fn drop(&mut self) {
        self.spawn_rest();
    }
}

/// The status recorded for a request whose client left before its body ended
/// (nginx's convention).
pub const CLIENT_GONE: u16 = 499;

/// A response made by the host itself (errors, health), in the guests' body type.
pub fn host_response(
    status: http::StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> hyper::Response<HyperOutgoingBody> {
    let body = http_body_util::Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that panics ends there, as a spawned task's would: what it held (here
    /// the sender a response would go through) is dropped, and the connection's task
    /// that drives it goes on.
    #[tokio::test]
    async fn a_panicking_run_ends_without_taking_its_driver_down() {
        let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
        let mut run = GuestRun::new(async move {
            let _held = sender;
            panic!("a host fault in a guest's run");
        });
        std::future::poll_fn(|cx| run.poll_run(cx)).await;
        assert!(receiver.await.is_err(), "the run's sender outlived it");
        assert!(run.0.is_none());
    }
}
