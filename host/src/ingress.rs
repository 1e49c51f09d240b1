//! HTTP ingress: routes requests to bundles by path prefix, and answers the host's
//! own endpoints (`/healthz`, `/readyz`, `/metrics`).
//!
//! `/readyz` is ready only when the backend is ready (e.g. logged in to Vault) and
//! every bundle's declared secrets resolve; otherwise it answers 503 with the
//! reasons, naming the bundle and secret, never a value.

use crate::cache::SecretsService;
use crate::capability::GetCounters;
use crate::metrics::Metrics;
use crate::runtime::{LoadedBundle, host_response};
use http::StatusCode;
use hyper::server::conn::http1;
use std::sync::Arc;
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
            .find(|(prefix, _)| {
                prefix.is_empty()
                    || path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
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
                let text = self.metrics.render(&self.service, &self.gets);
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
        let response = match bundle.handle(request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(bundle = bundle.name(), "{error}");
                let status = error.status();
                let message = match status {
                    StatusCode::GATEWAY_TIMEOUT => "the bundle exceeded its time limit",
                    StatusCode::BAD_REQUEST => "bad request",
                    _ => "the bundle failed; see the host log",
                };
                host_response(
                    status,
                    "application/json",
                    format!("{{\"error\":\"{message}\"}}\n"),
                )
            }
        };
        self.metrics
            .request(bundle.name(), response.status().as_u16());
        response
    }

    /// Readiness: the backend answers and every declared secret resolves.
    pub async fn readiness(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Err(error) = self.service.backend().ready().await {
            problems.push(format!(
                "backend {}: {error}",
                self.service.backend().describe()
            ));
        }
        for bundle in &self.bundles {
            for name in &bundle.manifest().secrets {
                let resolution = bundle.secrets().resolve(name).await;
                if let Err(error) = resolution.result {
                    problems.push(format!(
                        "bundle {}: declared secret {name:?} does not resolve: {}",
                        bundle.name(),
                        crate::capability::describe_guest_error(&error)
                    ));
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
        match self.readiness().await {
            Ok(()) => host_response(StatusCode::OK, "application/json", "{\"ready\":true}\n"),
            Err(problems) => {
                let body = serde_json::json!({ "ready": false, "reasons": problems });
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
pub async fn serve(listener: TcpListener, host: Arc<Host>, shutdown: impl Future<Output = ()>) {
    serve_connections(
        listener,
        move |request| {
            let host = host.clone();
            async move { host.handle(request).await }
        },
        shutdown,
    )
    .await;
}

/// Accepts HTTP/1.1 connections on `listener` and answers each request with
/// `handler`, until `shutdown` completes. Shared by the host and the router.
pub async fn serve_connections<F, Fut>(
    listener: TcpListener,
    handler: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<HyperOutgoingBody>> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("accept failed: {error}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = handler(request);
                async move { Ok::<_, std::convert::Infallible>(answer.await) }
            });
            if let Err(error) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, "connection ended with an error: {error}");
            }
        });
    }
}
