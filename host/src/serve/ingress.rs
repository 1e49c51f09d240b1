//! HTTP ingress: routes requests to bundles by path prefix, and answers the host's
//! own endpoints (`/healthz`, `/readyz`, `/metrics`).
//!
//! `/readyz` is ready only when the backend is not down (and logged in to Vault)
//! and every bundle's declared secrets resolved when last looked up; otherwise it
//! answers 503 with the reasons, naming the bundle and secret, never a value. It
//! answers from state, without calling the backend.

use crate::metrics::Metrics;
use crate::secrets::cache::SecretsService;
use crate::secrets::capability::GetCounters;
use crate::serve::runtime::{LoadedBundle, host_response};
use http::StatusCode;
use std::sync::Arc;
use tokio::net::TcpListener;
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

impl Host {
    /// The routing table of `bundles`, whose routes `bundle::fleet::check` has
    /// accepted (one owner per prefix, none of the host's own): `app::build_host`
    /// runs it before any bundle is loaded, as `gtc bundle check` does.
    pub fn new(
        bundles: Vec<Arc<LoadedBundle>>,
        service: Arc<SecretsService>,
        gets: Arc<GetCounters>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut routes: Vec<(String, usize)> = Vec::new();
        for (index, bundle) in bundles.iter().enumerate() {
            for route in &bundle.manifest().routes {
                let route = crate::bundle::fleet::normalized_route(route).to_string();
                routes.push((route, index));
            }
        }
        routes.sort_by_key(|(route, _)| std::cmp::Reverse(route.len()));
        Self {
            bundles,
            routes,
            service,
            gets,
            metrics,
        }
    }

    /// The bundle that serves `path`, if any.
    pub fn route(&self, path: &str) -> Option<&Arc<LoadedBundle>> {
        self.routes
            .iter()
            .find(|(prefix, _)| crate::serve::connections::serves(prefix, path))
            .map(|(_, index)| &self.bundles[*index])
    }

    /// Answers one request.
    pub async fn handle(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<HyperOutgoingBody> {
        match request.uri().path() {
            "/healthz" => return host_response(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" => return self.readyz().await,
            "/metrics" => {
                let mut text = self.metrics.render(&self.service, &self.gets);
                self.metrics.render_bundles(
                    &mut text,
                    &**crate::serve::log_limit::host_budget(),
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
        let Some(bundle) = self.route(request.uri().path()) else {
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
                bundle.count_answered(status.as_u16());
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
                    crate::secrets::capability::DeclaredStatus::Ok => {}
                    crate::secrets::capability::DeclaredStatus::Pending => problems.push(format!(
                        "bundle {}: declared secret {name:?} not fetched yet (start-up)",
                        bundle.name()
                    )),
                    crate::secrets::capability::DeclaredStatus::Failed(why) => {
                        problems.push(format!(
                            "bundle {}: declared secret {name:?} does not resolve: {why}",
                            bundle.name()
                        ))
                    }
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

/// Serves the host on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    host: Arc<Host>,
    limits: &crate::serve::connections::ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let metrics = host.metrics.clone();
    crate::serve::connections::serve_connections(
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
