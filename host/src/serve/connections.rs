//! The accept loop that both HTTP servers share: `gtc serve`'s ingress and
//! `gtc route`'s router each hand it a request handler, and neither imports the
//! other.
//!
//! What it enforces is the same for both: a cap on open connections (past it a
//! connection is told 503 and closed), a deadline and a size cap for request
//! heads, and, when the process runs out of file descriptors or socket memory, an
//! accept back-off instead of a spin. [`serves`] is the path-prefix rule both use
//! to match a route.

use crate::metrics::Metrics;
use crate::serve::head_deadline::HeadDeadline;
use crate::serve::log_limit::{Admit, LogLimiter};
use hyper::server::conn::http1;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Whether a route `prefix` (without trailing '/') covers `path`: the prefix
/// itself or anything below it on a '/' boundary (`/webhook` covers `/webhook/x`,
/// not `/webhookx`). The worker matches bundle routes the same way.
pub fn serves(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
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
    // No timer here: each connection gets its own below, and hyper refuses a
    // header-read timeout without one, so serve only with a per-connection clone.
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8192) * 2);
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
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "could not turn off Nagle's algorithm: {error}");
        }
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
        // Each connection keeps its head deadline with a timer of its own.
        let mut builder = builder.clone();
        builder.timer(HeadDeadline::new());
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
