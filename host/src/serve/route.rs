//! `gtc route`: the traffic router, a small reverse proxy that forwards webhooks to
//! the worker Service.
//!
//! It exists so that the internet-facing pod holds nothing: it runs without a
//! ServiceAccount token and has no secret access; only the worker talks to Vault.
//! It forwards every path except the host's own endpoints (the worker's
//! `/metrics` and `/readyz` stay internal), with a bounded request body.
//!
//! Upstreams: one URL for every path (one worker per tenant), or `PREFIX=URL`
//! pairs when each team has its own worker: a path goes to the longest prefix it
//! falls under (on a segment boundary, as the worker itself matches routes), else
//! to the plain URL if one is given, else it is answered 404 here.

use crate::serve::runtime::host_response;
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
    /// (prefix without trailing '/', upstream base URL), longest prefix first.
    prefixed: Vec<(String, String)>,
    /// Where paths under no prefix go.
    fallback: Option<String>,
    client: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("--upstream {0:?} must be an http:// or https:// URL, or PREFIX=URL")]
    Upstream(String),
    #[error("--upstream: {0}")]
    Conflict(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl RouteError {
    /// Whether the operator's `--upstream` flags are at fault (exit status 2).
    pub fn is_configuration(&self) -> bool {
        matches!(self, Self::Upstream(_) | Self::Conflict(_))
    }
}

fn base_url(arg: &str, url: &str) -> Result<String, RouteError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| RouteError::Upstream(arg.into()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(RouteError::Upstream(arg.into()));
    }
    Ok(url.trim_end_matches('/').to_string())
}

impl Router {
    /// `upstreams`: `URL` (every path) and/or `PREFIX=URL` (paths under PREFIX).
    pub fn new(upstreams: &[String]) -> Result<Self, RouteError> {
        let mut prefixed: Vec<(String, String)> = Vec::new();
        let mut fallback = None;
        for arg in upstreams {
            match arg
                .split_once('=')
                .filter(|(prefix, _)| prefix.starts_with('/'))
            {
                Some((prefix, url)) => {
                    let prefix = prefix.trim_end_matches('/').to_string();
                    if prefix.contains(['?', '#', ' ']) {
                        return Err(RouteError::Upstream(arg.clone()));
                    }
                    if prefixed.iter().any(|(p, _)| *p == prefix) {
                        return Err(RouteError::Conflict(format!(
                            "prefix {prefix:?} is given twice"
                        )));
                    }
                    prefixed.push((prefix, base_url(arg, url)?));
                }
                None if fallback.is_some() => {
                    return Err(RouteError::Conflict(
                        "more than one upstream for every path; give the others a PREFIX=".into(),
                    ));
                }
                None => fallback = Some(base_url(arg, arg)?),
            }
        }
        if prefixed.is_empty() && fallback.is_none() {
            return Err(RouteError::Conflict(
                "at least one upstream is required".into(),
            ));
        }
        prefixed.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
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
            prefixed,
            fallback,
            client,
        })
    }

    /// The upstream that serves `path`, if any.
    pub fn upstream_for(&self, path: &str) -> Option<&str> {
        self.prefixed
            .iter()
            .find(|(prefix, _)| crate::serve::connections::serves(prefix, path))
            .map(|(_, upstream)| upstream.as_str())
            .or(self.fallback.as_deref())
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
        let Some(upstream) = self.upstream_for(&path) else {
            return host_response(
                StatusCode::NOT_FOUND,
                "application/json",
                "{\"error\":\"no route\"}\n",
            );
        };
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
            upstream,
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
                tracing::warn!(%upstream, "cannot reach the worker: {}", if error.is_timeout() { "timeout" } else { "connection failed" });
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
    limits: &crate::serve::connections::ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    crate::serve::connections::serve_connections(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn router(args: &[&str]) -> Result<Router, RouteError> {
        Router::new(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn longest_prefix_on_a_segment_boundary_then_the_fallback() {
        let r = router(&[
            "/webhook=http://support:8080/",
            "/webhook/sales=http://sales:8080",
            "http://default:8080",
        ])
        .unwrap();
        assert_eq!(r.upstream_for("/webhook"), Some("http://support:8080"));
        assert_eq!(r.upstream_for("/webhook/x"), Some("http://support:8080"));
        assert_eq!(
            r.upstream_for("/webhook/sales/1"),
            Some("http://sales:8080")
        );
        assert_eq!(r.upstream_for("/webhookx"), Some("http://default:8080"));
        let only_prefixes = router(&["/a=http://a:1"]).unwrap();
        assert_eq!(only_prefixes.upstream_for("/b"), None);
        // The single-URL form is unchanged.
        assert_eq!(
            router(&["http://w:8080"])
                .unwrap()
                .upstream_for("/anything"),
            Some("http://w:8080")
        );
    }

    #[test]
    fn ambiguous_or_bad_upstreams_are_refused() {
        assert!(router(&["/a=http://x:1", "/a/=http://y:1"]).is_err());
        assert!(router(&["http://x:1", "http://y:1"]).is_err());
        assert!(router(&["/a=ftp://x"]).is_err());
        assert!(router(&["not a url"]).is_err());
        assert!(router(&[]).is_err());
    }
}
