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
//!
//! The router tells callers the truth about a worker it could not use. In a
//! cluster the upstream is a Service: when none of its workers is ready (e.g.
//! while Vault is down and `/readyz` answers 503) the Service has no endpoints
//! and a connection to it is refused, so a refused or timed-out *connect* means
//! "no ready worker": 503 with `Retry-After` (the request never reached a worker,
//! retrying is safe). 502 is kept for a worker that took the request and broke
//! the connection before its answer was complete; 504 for one that did not
//! answer within the router's time limit. Each is counted in the router's own
//! metrics ([`RouteCounters`], served on `--metrics-listen`, never on the public
//! port).

use crate::serve::runtime::host_response;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt as _, Limited};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Largest request body forwarded.
pub const MAX_BODY: usize = 1 << 20;

/// What a caller is told to wait before retrying when no worker is ready: about
/// one readiness-probe period of the rendered worker.
pub const RETRY_AFTER_SECS: u64 = 5;

/// How long the router waits for a TCP connection to a worker. A Service with no
/// ready endpoint refuses at once; a NetworkPolicy drop only times out.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request could not be answered by a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UpstreamFailure {
    /// The connection was refused: no ready worker behind the Service (503).
    Refused,
    /// The connection was not accepted in time: a NetworkPolicy drop or a node
    /// gone (503).
    ConnectTimeout,
    /// The worker took the request and broke the connection before its answer
    /// was complete (502).
    Broken,
    /// The worker did not answer within the router's time limit (504).
    Timeout,
}

impl UpstreamFailure {
    /// The `cause` label and the body's words.
    pub fn cause(self) -> &'static str {
        match self {
            Self::Refused => "no_ready_worker",
            Self::ConnectTimeout => "connect_timeout",
            Self::Broken => "connection_broken",
            Self::Timeout => "timeout",
        }
    }

    fn classify(error: &reqwest::Error) -> Self {
        if error.is_connect() {
            if error.is_timeout() {
                Self::ConnectTimeout
            } else {
                Self::Refused
            }
        } else if error.is_timeout() {
            Self::Timeout
        } else {
            Self::Broken
        }
    }

    /// The answer the caller gets.
    fn response(self) -> hyper::Response<HyperOutgoingBody> {
        let (status, body) = match self {
            Self::Refused => (
                StatusCode::SERVICE_UNAVAILABLE,
                "{\"error\":\"no worker of this route is ready\",\"cause\":\"no_ready_worker\"}\n",
            ),
            Self::ConnectTimeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "{\"error\":\"no worker of this route could be reached in time\",\"cause\":\"connect_timeout\"}\n",
            ),
            Self::Broken => (
                StatusCode::BAD_GATEWAY,
                "{\"error\":\"the worker broke the connection before answering\",\"cause\":\"connection_broken\"}\n",
            ),
            Self::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "{\"error\":\"the worker did not answer in time\",\"cause\":\"timeout\"}\n",
            ),
        };
        let mut response = host_response(status, "application/json", body);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// The router's own counters, rendered at `/metrics` on `--metrics-listen`.
#[derive(Default)]
pub struct RouteCounters {
    /// Answers the router gave, by status (forwarded or its own).
    responses: Mutex<BTreeMap<u16, u64>>,
    /// Requests no worker answered, by (route, cause).
    failures: Mutex<BTreeMap<(String, UpstreamFailure), u64>>,
}

impl RouteCounters {
    fn response(&self, status: StatusCode) {
        let mut responses = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        *responses.entry(status.as_u16()).or_default() += 1;
    }

    fn failure(&self, route: &str, failure: UpstreamFailure) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        *failures.entry((route.to_string(), failure)).or_default() += 1;
    }

    /// The Prometheus text exposition of the counters and `connections`'s.
    pub fn render(&self, connections: &crate::metrics::Metrics) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP gtc_route_responses_total Answers the router gave, by HTTP status.\n\
             # TYPE gtc_route_responses_total counter\n",
        );
        for (status, count) in self
            .responses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "gtc_route_responses_total{{status=\"{status}\"}} {count}"
            );
        }
        out.push_str(
            "# HELP gtc_route_upstream_failures_total Requests no worker answered, by route and cause \
             (no_ready_worker and connect_timeout answer 503, connection_broken 502, timeout 504).\n\
             # TYPE gtc_route_upstream_failures_total counter\n",
        );
        for ((route, failure), count) in self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "gtc_route_upstream_failures_total{{route=\"{}\",cause=\"{}\"}} {count}",
                escape_label(route),
                failure.cause()
            );
        }
        let _ = write!(
            out,
            "# HELP gtc_route_connections_open Client connections open.\n\
             # TYPE gtc_route_connections_open gauge\n\
             gtc_route_connections_open {}\n\
             # HELP gtc_route_connections_refused_total Client connections refused at the cap.\n\
             # TYPE gtc_route_connections_refused_total counter\n\
             gtc_route_connections_refused_total {}\n",
            connections
                .connections_open
                .load(std::sync::atomic::Ordering::Relaxed),
            connections
                .connections_refused
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        out
    }
}

/// A Prometheus label value: `\\`, `"` and newlines escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

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
    counters: RouteCounters,
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
            .connect_timeout(CONNECT_TIMEOUT)
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
            counters: RouteCounters::default(),
        })
    }

    /// The upstream that serves `path`, if any.
    pub fn upstream_for(&self, path: &str) -> Option<&str> {
        self.route_for(path).map(|(_, upstream)| upstream)
    }

    /// (the route's prefix, or `*` for the fallback; its upstream) for `path`.
    fn route_for(&self, path: &str) -> Option<(&str, &str)> {
        self.prefixed
            .iter()
            .find(|(prefix, _)| crate::serve::connections::serves(prefix, path))
            .map(|(prefix, upstream)| (prefix.as_str(), upstream.as_str()))
            .or(self.fallback.as_deref().map(|upstream| ("*", upstream)))
    }

    /// The router's counters.
    pub fn counters(&self) -> &RouteCounters {
        &self.counters
    }

    async fn forward(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<HyperOutgoingBody> {
        let response = self.forward_uncounted(request).await;
        self.counters.response(response.status());
        response
    }

    fn failed(
        &self,
        route: &str,
        upstream: &str,
        failure: UpstreamFailure,
    ) -> hyper::Response<HyperOutgoingBody> {
        tracing::warn!(route, %upstream, cause = failure.cause(), "no answer from a worker");
        self.counters.failure(route, failure);
        failure.response()
    }

    async fn forward_uncounted(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<HyperOutgoingBody> {
        let path = request.uri().path().to_string();
        match path.as_str() {
            "/healthz" | "/readyz" => return host_response(StatusCode::OK, "text/plain", "ok\n"),
            "/metrics" => return host_response(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
            _ => {}
        }
        let Some((route, upstream)) = self.route_for(&path) else {
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
                        return self.failed(route, upstream, UpstreamFailure::classify(&error));
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
            Err(error) => self.failed(route, upstream, UpstreamFailure::classify(&error)),
        }
    }
}

/// Serves the router on `listener` until `shutdown` completes, and its metrics
/// on `metrics_listener` (`/metrics`; anything else is 404) when one is given.
pub async fn serve(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    router: Arc<Router>,
    limits: &crate::serve::connections::ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Arc::new(crate::metrics::Metrics::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics_server = metrics_listener.map(|listener| {
        let router = router.clone();
        let connections = connections.clone();
        let limits = limits.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            crate::serve::connections::serve_connections(
                listener,
                &limits,
                Arc::new(crate::metrics::Metrics::default()),
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let text = (request.uri().path() == "/metrics")
                        .then(|| router.counters().render(&connections));
                    async move {
                        match text {
                            Some(text) => {
                                host_response(StatusCode::OK, "text/plain; version=0.0.4", text)
                            }
                            None => {
                                host_response(StatusCode::NOT_FOUND, "text/plain", "not found\n")
                            }
                        }
                    }
                },
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            )
            .await;
        })
    });
    crate::serve::connections::serve_connections(
        listener,
        limits,
        connections,
        move |request| {
            let router = router.clone();
            async move { router.forward(request).await }
        },
        shutdown,
    )
    .await;
    let _ = stop.send(true);
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
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
