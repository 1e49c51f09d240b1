//! The Wasm runtime: one engine, bundles compiled once and pre-instantiated, a fresh
//! instance per request from the pooling allocator, and the sandbox around it.
//!
//! Sandbox, per request: no environment variables, arguments, preopened directories
//! or sockets; outgoing HTTP only to the bundle's allowlist; memory, instance and
//! table limits; a time limit enforced by epoch interruption (CPU) and by a wall
//! clock timeout (waiting); stdout/stderr to the host log, tagged and size-limited.

use crate::bundle::{Limits, Manifest};
use crate::capability::{self, BundleSecrets, SecretsCtx};
use crate::egress::{EgressHooks, EgressPolicy};
use crate::guest_log::{self, GuestLog, OutputBudget};
use crate::response_limit::LimitedBody;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime::{StoreLimits, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// How often the epoch advances.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Ticks a guest runs before the host looks at it: then it yields to other tasks
/// (fairness) and is stopped if its time is up. Short requests (the common case)
/// never get there: yielding every tick put them at the back of the run queue and
/// cost a 20 ms p99 under load (BENCHMARKS.md). Time limits are enforced to within
/// this many ticks (50 ms).
const CHECK_EVERY_TICKS: u64 = 5;
/// Memory of a recycled instance slot that is wiped with `memset` and kept mapped,
/// instead of being returned to the kernel: no page faults on reuse and no TLB
/// shootdowns on release for the pages a typical request touches (a Rust guest's
/// shadow stack and first heap pages). It more than doubled requests/s (BENCHMARKS.md).
/// The wipe also means nothing a request left in memory survives into the next.
const KEEP_RESIDENT: usize = 2 << 20;
/// Idle slots kept warm (with up to KEEP_RESIDENT each resident): bounds the memory
/// an idle worker keeps after a burst.
const MAX_WARM_SLOTS: u32 = 32;
/// Extra wall-clock time, past the CPU limit, before a waiting request is abandoned.
const WALL_CLOCK_GRACE: Duration = Duration::from_millis(500);

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Instances that may run at once (the pool size); more requests wait.
    pub max_instances: u32,
    /// Compiled-component cache directory (`None`: compile at every start).
    pub compile_cache: Option<std::path::PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: 256,
            compile_cache: None,
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
}

/// Per-request store data.
pub struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: StoreLimits,
    egress: EgressHooks,
    secrets: SecretsCtx,
    deadline: Instant,
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

/// The engine and linker, shared by every bundle.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RequestState>,
    slots: Arc<Semaphore>,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    pub fn new(config: &RuntimeConfig) -> Result<Self, RuntimeError> {
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
            .max_memory_size(crate::bundle::MAX_MEMORY_BYTES)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .max_unused_warm_slots(MAX_WARM_SLOTS);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = &config.compile_cache {
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            let cache = wasmtime::Cache::new(cache).map_err(engine_err)?;
            wasm.cache(Some(cache));
        }
        let engine = Engine::new(&wasm).map_err(engine_err)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_err)?;
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

        Ok(Self {
            engine,
            linker,
            slots: Arc::new(Semaphore::new(n as usize)),
            ticker_stop,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles and pre-instantiates a bundle's component.
    pub fn load(
        &self,
        manifest: Manifest,
        secrets: Arc<BundleSecrets>,
    ) -> Result<LoadedBundle, RuntimeError> {
        let component_err = |reason: String| RuntimeError::Component {
            bundle: manifest.id.to_string(),
            path: manifest.component.clone(),
            reason,
        };
        let component = Component::from_file(&self.engine, &manifest.component)
            .map_err(|e| component_err(format!("{e:#}")))?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| component_err(format!("{e:#}")))?;
        let pre = ProxyPre::new(instance_pre).map_err(|e| {
            component_err(format!(
                "not a wasi:http proxy (no incoming-handler export): {e:#}"
            ))
        })?;
        let bundle: Arc<str> = Arc::from(manifest.id.as_str());
        let egress = Arc::new(EgressPolicy {
            bundle: bundle.clone(),
            allow: manifest.egress_allow.clone(),
            max_per_request: crate::egress::DEFAULT_MAX_OUTGOING_PER_REQUEST,
        });
        Ok(LoadedBundle {
            name: bundle,
            limits: manifest.limits,
            manifest,
            pre,
            secrets,
            egress,
            slots: self.slots.clone(),
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// How a request failed inside the host (the client gets a short status).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("bundle {bundle} exceeded its time limit of {limit:?}")]
    Timeout { bundle: String, limit: Duration },
    #[error("bundle {bundle} exceeded its memory limit of {limit_mib} MiB")]
    Memory { bundle: String, limit_mib: usize },
    #[error("bundle {bundle} exhausted its call stack (unbounded recursion?)")]
    Stack { bundle: String },
    #[error("bundle {bundle} failed: {reason}")]
    Guest { bundle: String, reason: String },
    #[error("bundle {bundle} never sent a response")]
    NoResponse { bundle: String },
    #[error("bundle {bundle}: bad request: {reason}")]
    BadRequest { bundle: String, reason: String },
}

impl RequestError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Timeout { .. } => http::StatusCode::GATEWAY_TIMEOUT,
            Self::BadRequest { .. } => http::StatusCode::BAD_REQUEST,
            _ => http::StatusCode::INTERNAL_SERVER_ERROR,
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
    slots: Arc<Semaphore>,
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

    fn new_store(&self) -> Store<RequestState> {
        let budget = OutputBudget::new(guest_log::DEFAULT_BUDGET);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestLog::new(self.name.clone(), "stdout", budget.clone()))
            .stderr(GuestLog::new(self.name.clone(), "stderr", budget))
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
        let state = RequestState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits,
            egress: EgressHooks::new(self.egress.clone()),
            secrets: SecretsCtx::new(self.secrets.clone()),
            deadline: Instant::now() + self.limits.timeout,
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        // Every CHECK_EVERY_TICKS of running: yield to other tasks while time is
        // left, stop the guest once it is spent.
        store.set_epoch_deadline(CHECK_EVERY_TICKS);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(CHECK_EVERY_TICKS))
            }
        });
        store
    }

    /// Runs the request on a fresh instance and returns the guest's response.
    pub async fn handle<B>(
        self: &Arc<Self>,
        request: hyper::Request<B>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, RequestError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let bundle = self.name.to_string();
        let _slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RequestError::Guest {
                bundle: bundle.clone(),
                reason: "runtime is shutting down".into(),
            })?;
        let mut store = self.new_store();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let bad_request = |e: wasmtime::Error| RequestError::BadRequest {
            bundle: bundle.clone(),
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
        let this = self.clone();
        let limit = self.limits.timeout;
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = this.pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
            };
            match tokio::time::timeout(limit + WALL_CLOCK_GRACE, run).await {
                Ok(result) => result.map_err(|e| this.classify(e)),
                Err(_) => Err(RequestError::Timeout {
                    bundle: this.name.to_string(),
                    limit,
                }),
            }
        });
        let started = Instant::now();
        match receiver.await {
            Ok(Ok(response)) => {
                let (limit, bundle) = (self.limits.response_bytes, self.name.clone());
                Ok(response.map(|body| LimitedBody::new(body, limit, bundle).boxed_unsync()))
            }
            Ok(Err(code)) => Err(RequestError::Guest {
                bundle,
                reason: format!("guest answered with error code {code:?}"),
            }),
            Err(_) => {
                let outcome = task.await;
                let error = match outcome {
                    Ok(Ok(())) => RequestError::NoResponse { bundle },
                    Ok(Err(error)) => error,
                    Err(join) => RequestError::Guest {
                        bundle,
                        reason: format!("request task failed: {join}"),
                    },
                };
                tracing::warn!(
                    bundle = %self.name,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "{error}"
                );
                Err(error)
            }
        }
    }

    fn classify(&self, error: wasmtime::Error) -> RequestError {
        let bundle = self.name.to_string();
        // The trap sits below a backtrace context; find it in the chain.
        let trap = error
            .chain()
            .find_map(|cause| cause.downcast_ref::<Trap>().copied());
        let chain = format!("{error:#}");
        match trap {
            Some(Trap::Interrupt) => RequestError::Timeout {
                bundle,
                limit: self.limits.timeout,
            },
            Some(Trap::StackOverflow) => RequestError::Stack { bundle },
            _ if chain.contains("forcing trap when growing memory") => RequestError::Memory {
                bundle,
                limit_mib: self.limits.memory_bytes >> 20,
            },
            // A short reason: the trap itself, not a page of wasm backtrace.
            Some(trap) => RequestError::Guest {
                bundle,
                reason: format!("wasm trap: {trap}"),
            },
            None => RequestError::Guest {
                bundle,
                reason: error.root_cause().to_string(),
            },
        }
    }
}

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
