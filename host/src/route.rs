//! `gtc route`: the traffic router, a small reverse proxy that forwards webhooks to
//! the worker Service.
//!
//! It exists so that the internet-facing pod holds nothing: it runs without a
//! ServiceAccount token and has no secret access; only the worker talks to Vault.
//! It forwards every path except the host's own endpoints (the worker's
//! `/metrics` and `/readyz` stay internal), with a bounded request body.

use crate::runtime::host_response;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt as _, Limited};
use std::sync::Arc;
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Largest request body forwarded.
pub const MAX_BODY: usize = 1 << 20;

/// Headers that describe one connection, never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub struct Router {
    upstream: String,
    client: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("--upstream {0:?} must be an http:// or https:// URL")]
    Upstream(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl Router {
    pub fn new(upstream: &str) -> Result<Self, RouteError> {
        let url =
            reqwest::Url::parse(upstream).map_err(|_| RouteError::Upstream(upstream.into()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RouteError::Upstream(upstream.into()));
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(60))
            // Below the worker's keep-alive idle timeout (its header-read timeout,
            // 10 s by default), so a pooled connection is never reused just as the
            // worker closes it.
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| RouteError::Client(e.to_string()))?;
        Ok(Self {
            upstream: upstream.trim_end_matches('/').to_string(),
            client,
        })
    }

    async fn forward(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<HyperOutgoingBody> {
        let path = request.uri().path().to_string();
        match path.as_str() {
            "/healthz" | "/readyz" => return host_response(StatusCode::OK, "text/plain", "ok\n"),
            "/metrics" => return host_response(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
            _ => {}
        }
        let (parts, body) = request.into_parts();
        let body: Bytes = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return host_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "application/json",
                    "{\"error\":\"request body too large\"}\n",
                );
            }
        };
        let target = format!(
            "{}{}",
            self.upstream,
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
        );
        let mut outgoing = self.client.request(parts.method, target).body(body);
        for (name, value) in &parts.headers {
            if name != http::header::HOST && !HOP_BY_HOP.contains(&name.as_str()) {
                outgoing = outgoing.header(name, value);
            }
        }
        match outgoing.send().await {
            Ok(answer) => {
                let status = answer.status();
                let headers = answer.headers().clone();
                let body = match answer.bytes().await {
                    Ok(body) => body,
                    Err(error) => {
                        tracing::warn!("upstream body failed: {error}");
                        return host_response(
                            StatusCode::BAD_GATEWAY,
                            "application/json",
                            "{\"error\":\"upstream failed\"}\n",
                        );
                    }
                };
                let mut response = host_response(status, "application/octet-stream", body);
                response.headers_mut().clear();
                for (name, value) in &headers {
                    if !HOP_BY_HOP.contains(&name.as_str()) && name != http::header::CONTENT_LENGTH
                    {
                        response.headers_mut().append(name, value.clone());
                    }
                }
                response
            }
            Err(error) => {
                tracing::warn!(upstream = %self.upstream, "cannot reach the worker: {}", if error.is_timeout() { "timeout" } else { "connection failed" });
                host_response(
                    StatusCode::BAD_GATEWAY,
                    "application/json",
                    "{\"error\":\"worker unreachable\"}\n",
                )
            }
        }
    }
}

/// Serves the router on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    limits: &crate::ingress::ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    crate::ingress::serve_connections(
        listener,
        limits,
        Arc::new(crate::metrics::Metrics::default()),
        move |request| {
            let router = router.clone();
            async move { router.forward(request).await }
        },
        shutdown,
    )
    .await;
}
