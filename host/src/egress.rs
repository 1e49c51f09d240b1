//! Outgoing HTTP from guests: only to the bundle's allowlist, only so many per request.
//!
//! The allowlist holds `host:port` authorities from the bundle manifest; a request
//! to anything else fails inside the guest with `HTTP-request-denied` and is logged.
//! An empty list (the default) means no outgoing HTTP at all.

use std::sync::Arc;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Default cap on outgoing requests in one incoming request.
pub const DEFAULT_MAX_OUTGOING_PER_REQUEST: u32 = 32;

/// A bundle's egress rules, shared by its requests.
#[derive(Debug)]
pub struct EgressPolicy {
    pub bundle: Arc<str>,
    pub allow: Vec<String>,
    pub max_per_request: u32,
}

impl EgressPolicy {
    fn allows(&self, authority: &str) -> bool {
        self.allow.iter().any(|a| a.eq_ignore_ascii_case(authority))
    }
}

/// Per-request hooks: the shared policy and a counter.
pub struct EgressHooks {
    policy: Arc<EgressPolicy>,
    sent: u32,
}

impl EgressHooks {
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        Self { policy, sent: 0 }
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

fn authority_of(request: &http::Request<WasiBody>) -> Option<String> {
    let uri = request.uri();
    let host = uri.host()?;
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("http") => 80,
        _ => 443,
    });
    Some(format!("{host}:{port}"))
}

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        drop(fut);
        let authority = authority_of(&request);
        let allowed = authority.as_deref().is_some_and(|a| self.policy.allows(a));
        if !allowed {
            tracing::warn!(
                bundle = %self.policy.bundle,
                authority = authority.as_deref().unwrap_or("(none)"),
                "outgoing HTTP denied: not in the bundle's egress allowlist"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        self.sent += 1;
        if self.sent > self.policy.max_per_request {
            tracing::warn!(
                bundle = %self.policy.bundle,
                limit = self.policy.max_per_request,
                "outgoing HTTP denied: too many requests in one incoming request"
            );
            return Box::new(async { Err(HttpError::ConnectionLimitReached) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}
