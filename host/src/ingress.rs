//! HTTP ingress: routes requests to bundles by path prefix, and answers the host's
//! own endpoints (`/healthz`, `/readyz`, `/metrics`).
//!
//! `/readyz` is ready only when the backend is not down (and logged in to Vault)
//! and every bundle's declared secrets resolved when last looked up; otherwise it
//! answers 503 with the reasons, naming the bundle and secret, never a value. It
//! answers from state, without calling the backend.

use crate::cache::SecretsService;
use crate::capability::GetCounters;
use crate::log_limit::{Admit, LogLimiter};
use crate::metrics::Metrics;
use crate::runtime::{LoadedBundle, host_response};
use http::StatusCode;
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Everything the server needs, shared by all connections.
pub struct Host {
    bundles: Vec<Arc<LoadedBundle>>,
    /// `(prefix, index into bundles)`, longest prefix first.
    routes: Vec<(String, usize)>,
    service: Arc<SecretsService>,
    gets: Arc<GetCounters>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("route {route:?} is claimed by both {first} and {second}")]
    Conflict {
        route: String,
        first: String,
        second: String,
    },
    #[error("route {route:?} of bundle {bundle} is reserved by the host")]
    Reserved { route: String, bundle: String },
}

const RESERVED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

impl Host {
    pub fn new(
        bundles: Vec<Arc<LoadedBundle>>,
        service: Arc<SecretsService>,
        gets: Arc<GetCounters>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RouteError> {
        let mut routes: Vec<(String, usize)> = Vec::new();
        for (index, bundle) in bundles.iter().enumerate() {
            for route in &bundle.manifest().routes {
                let route = route.trim_end_matches('/').to_string();
                if RESERVED
                    .iter()
                    .any(|r| route == *r || route.starts_with(&format!("{r}/")))
                {
                    return Err(RouteError::Reserved {
                        route,
                        bundle: bundle.name().to_string(),
                    });
                }
                if let Some((_, other)) = routes.iter().find(|(r, _)| *r == route) {
                    return Err(RouteError::Conflict {
                        route,
                        first: bundles[*other].name().to_string(),
                        second: bundle.name().to_string(),
                    });
                }
                routes.push((route, index));
            }
        }
        routes.sort_by_key(|(route, _)| std::cmp::Reverse(route.len()));
        Ok(Self {
            bundles,
            routes,
            service,
            gets,
            metrics,
        })
    }

    /// The bundle that serves `path`, if any.
    pub fn route(&self, path: &str) -> Option<&Arc<LoadedBundle>> {
        self.routes
            .iter()
            .find(|(prefix, _)| crate::route::serves(prefix, path))
            .map(|(_, index)| &self.bundles[*index])
    }

    /// Answers one request.
    pub async fn handle(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<HyperOutgoingBody> {
        let path = request.uri().path().to_string();
        match path.as_str() {
            "/healthz" => return host_response(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" => return self.readyz().await,
            "/metrics" => {
                let mut text = self.metrics.render(&self.service, &self.gets);
                self.metrics.render_bundles(
                    &mut text,
                    self.bundles.iter().map(|b| {
                        (
                            b.name(),
                            b.instances_in_use(),
                            b.concurrency_cap(),
                            b.log_limiter().dropped(),
                        )
                    }),
                );
                return host_response(StatusCode::OK, "text/plain; version=0.0.4", text);
            }
            _ => {}
        }
        let Some(bundle) = self.route(&path) else {
            return host_response(
                StatusCode::NOT_FOUND,
                "application/json",
                "{\"error\":\"no bundle serves this path\"}\n",
            );
        };
        let started = std::time::Instant::now();
        match bundle.handle(request).await {
            // Counted (and any late failure logged) when its body ends.
            Ok(response) => response,
            Err(error) => {
                bundle.log_failure(&error, started.elapsed(), false);
                let status = error.status();
                let message = match status {
                    StatusCode::GATEWAY_TIMEOUT => "the bundle exceeded its time limit",
                    StatusCode::BAD_REQUEST => "bad request",
                    StatusCode::SERVICE_UNAVAILABLE => "the bundle is busy; retry shortly",
                    _ => "the bundle failed; see the host log",
                };
                let mut response = host_response(
                    status,
                    "application/json",
                    format!("{{\"error\":\"{message}\"}}\n"),
                );
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    response.headers_mut().insert(
                        http::header::RETRY_AFTER,
                        http::HeaderValue::from_static("1"),
                    );
                }
                self.metrics.request(bundle.name(), status.as_u16());
                response
            }
        }
    }

    /// Readiness, from what the worker already knows — no backend call, so it
    /// answers at once whatever the network does: the backend is not down (and,
    /// for Vault, a token is held), and every bundle's declared secrets resolved
    /// when the worker last looked them up (see `prefetch`: at start, after the
    /// start-up jitter, then about once a second, from the cache).
    pub async fn readiness(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Err(error) = self.service.backend().ready().await {
            problems.push(format!(
                "backend {}: {error}",
                self.service.backend().describe()
            ));
        }
        for bundle in &self.bundles {
            for (name, status) in bundle.secrets().declared() {
                match status {
                    crate::capability::DeclaredStatus::Ok => {}
                    crate::capability::DeclaredStatus::Pending => problems.push(format!(
                        "bundle {}: declared secret {name:?} not fetched yet (start-up)",
                        bundle.name()
                    )),
                    crate::capability::DeclaredStatus::Failed(why) => problems.push(format!(
                        "bundle {}: declared secret {name:?} does not resolve: {why}",
                        bundle.name()
                    )),
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    async fn readyz(&self) -> hyper::Response<HyperOutgoingBody> {
        let backend = self.service.backend().health().map(|health| {
            serde_json::json!({
                "state": health.state.as_str(),
                "cause": health.cause.map(|cause| cause.label()),
                "for_s": health.for_how_long.as_secs(),
            })
        });
        match self.readiness().await {
            Ok(()) => {
                let body = serde_json::json!({ "ready": true, "backend": backend });
                host_response(StatusCode::OK, "application/json", format!("{body}\n"))
            }
            Err(problems) => {
                let body =
                    serde_json::json!({ "ready": false, "reasons": problems, "backend": backend });
                host_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    format!("{body}\n"),
                )
            }
        }
    }
}

/// Limits on client connections, for `serve` and `route` alike. The defaults are
/// what a public ingress would use.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Time a client has to send a complete request head. hyper starts this timer
    /// whenever it waits for a head, so it is also the keep-alive idle timeout: a
    /// connection with no request in progress is closed after it.
    pub header_read_timeout: Duration,
    /// Open client connections; past it a new connection is answered 503 and closed.
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes; past it 431.
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_header_bytes: 16 << 10,
        }
    }
}

/// Serves the host on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    host: Arc<Host>,
    limits: &ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let metrics = host.metrics.clone();
    serve_connections(
        listener,
        limits,
        metrics,
        move |request| {
            let host = host.clone();
            async move { host.handle(request).await }
        },
        shutdown,
    )
    .await;
}

/// What a connection over the cap is told before it is closed.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n\
content-type: application/json\r\ncontent-length: 41\r\nconnection: close\r\n\r\n\
{\"error\":\"too many connections; retry\"}\n";

/// Accepts HTTP/1.1 connections on `listener` and answers each request with
/// `handler`, until `shutdown` completes. Shared by the host and the router.
///
/// Connections are capped ([`ConnectionLimits`]); heads must arrive within the
/// header-read timeout and fit the header size cap. When the process runs out of
/// file descriptors (or memory for sockets), accepting backs off instead of
/// spinning, and says so at a bounded rate.
pub async fn serve_connections<F, Fut>(
    listener: TcpListener,
    limits: &ConnectionLimits,
    metrics: Arc<Metrics>,
    handler: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<HyperOutgoingBody>> + Send + 'static,
{
    tokio::pin!(shutdown);
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8192) * 2);
    let builder = Arc::new(builder);
    let log = LogLimiter::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    accepted
                }
                Err(error) => {
                    let exhausted = is_resource_exhaustion(&error);
                    if let Admit::Log { suppressed } = log.admit("accept") {
                        LogLimiter::log_suppressed("(listener)", "accept", suppressed);
                        if exhausted {
                            tracing::error!(
                                backoff_ms = backoff.as_millis() as u64,
                                "accept failed: {error}; backing off (raise the file descriptor limit or lower --max-connections)"
                            );
                        } else {
                            tracing::warn!("accept failed: {error}");
                        }
                    }
                    if exhausted {
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = &mut shutdown => break,
                        }
                        backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
            if let Admit::Log { suppressed } = log.admit("connection-cap") {
                LogLimiter::log_suppressed("(listener)", "connection-cap", suppressed);
                tracing::warn!(
                    %peer,
                    limit = limits.max_connections,
                    "connection refused: the connection cap is reached"
                );
            }
            tokio::spawn(refuse(stream));
            continue;
        };
        let handler = handler.clone();
        let builder = builder.clone();
        let metrics = metrics.clone();
        metrics.connections_open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = handler(request);
                async move { Ok::<_, std::convert::Infallible>(answer.await) }
            });
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, "connection ended with an error: {error}");
            }
            metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a refused connection may take to read its 503.
const REFUSE_WRITE_TIMEOUT: Duration = Duration::from_millis(200);

/// Tells a connection over the cap to come back later, then closes it.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt as _;
    let _ = tokio::time::timeout(REFUSE_WRITE_TIMEOUT, async {
        let _ = stream.write_all(OVER_CAPACITY).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Accept errors that mean "out of descriptors or socket memory": retrying at
/// once would only spin.
fn is_resource_exhaustion(error: &std::io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 on Linux.
    matches!(error.raw_os_error(), Some(23 | 24 | 105 | 12))
}
