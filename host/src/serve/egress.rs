//! Outgoing HTTP from guests: only to the bundle's allowlist, never to what the
//! operator forbids, only so many per request.
//!
//! Two lists decide, in this order:
//! - the bundle's allowlist (`[egress].allow` in its manifest, written by the bundle
//!   author): `host:port` authorities, compared after normalisation (lower-case host,
//!   explicit port, no user-info). An empty list means no outgoing HTTP at all;
//! - the operator's [`EgressGuard`], which no manifest can widen: link-local
//!   addresses (cloud metadata services such as 169.254.169.254), the host's own
//!   listeners (its port on loopback, on the address it is bound to, and on every
//!   interface address when bound to a wildcard: a request that came back in
//!   would reach a bundle, sealed value and all), the secrets backend (Vault) and,
//!   unless the operator allows it, loopback. The guard looks at the addresses a name resolves to, so a friendly
//!   name pointing at a forbidden address is refused too. For plain `http` the
//!   connection then goes to the address that was checked; `https` connects by name
//!   (the certificate is checked against it), so a name whose DNS answer changes
//!   between check and connect is outside what the guard sees — a NetworkPolicy on
//!   the pod's egress covers that case.
//!
//! A refused request fails inside the guest with `HTTP-request-denied` (or
//! `destination-IP-prohibited`) and is logged through the bundle's rate limiter.
//!
//! A request with a `{{secret:NAME}}` placeholder (see [`crate::serve::sealed`]) passes
//! the same checks, then the sealed-secret rules; the host then sends it itself
//! (to the address the guard checked, also for https) and scrubs the response.
//! A refusal there is also an audit event (target `gtc::audit`, `sealed.inject`)
//! naming the bundle, the secret URI and the refused destination (aggregated
//! with its repeats). Every injection is a disclosure with a record of its own;
//! one whose record the audit queue cannot take is not sent
//! (`destination-unavailable`).

use crate::bundle::authority::{Authority, AuthorityError};
use crate::bundle::manifest::SealedSecret;
use crate::secrets::capability::{BundleSecrets, Use};
use crate::serve::log_limit::LogLimiter;
use crate::serve::sealed::{
    Injected, Refusal as SealedRefusal, ScrubbedBody, Scrubber, SealedEgress,
};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Default cap on outgoing requests in one incoming request.
pub const DEFAULT_MAX_OUTGOING_PER_REQUEST: u32 = 32;
/// Longest a destination's DNS look-up may take before the request is refused.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The authority an outgoing request is addressed to, with the scheme's default port.
fn request_authority(request: &http::Request<WasiBody>) -> Result<Authority, AuthorityError> {
    let uri = request.uri();
    let authority = uri.authority().ok_or(AuthorityError::Host)?;
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => return Err(AuthorityError::Host),
    };
    Authority::parse_with_default(authority.as_str(), Some(default_port))
}

/// Destinations the operator forbids to every bundle, whatever its allowlist says.
#[derive(Debug, Clone, Default)]
pub struct EgressGuard {
    /// Loopback (and the unspecified address, which reaches it) is allowed.
    pub allow_loopback: bool,
    /// The host's own listeners: any local address on these ports is refused.
    pub own_ports: Vec<u16>,
    /// The non-loopback addresses the host answers on (every interface address
    /// when it listens on a wildcard): refused on `own_ports` as well, so that
    /// no request, sealed or plain, re-enters the host.
    pub own_addrs: Vec<IpAddr>,
    /// Exact endpoints refused (e.g. Vault's resolved address).
    pub forbidden_addrs: Vec<SocketAddr>,
    /// Authorities refused by name (e.g. Vault's `host:port`).
    pub forbidden_authorities: Vec<Authority>,
}

impl EgressGuard {
    /// Why `addr` (an address `authority` resolved to) is forbidden, if it is.
    fn refuses(&self, addr: SocketAddr) -> Option<&'static str> {
        let ip = canonical_ip(addr.ip());
        let local = ip.is_loopback() || ip.is_unspecified();
        if is_link_local(ip) {
            return Some("a link-local address (cloud metadata services live there)");
        }
        if self
            .forbidden_addrs
            .iter()
            .any(|f| canonical_ip(f.ip()) == ip && f.port() == addr.port())
        {
            return Some("the secrets backend");
        }
        if (local || self.own_addrs.contains(&ip)) && self.own_ports.contains(&addr.port()) {
            return Some("the host's own listener");
        }
        if local && !self.allow_loopback {
            return Some("loopback (the operator has not allowed it)");
        }
        None
    }

    /// Why `authority` is forbidden by name, if it is.
    fn refuses_name(&self, authority: &Authority) -> Option<&'static str> {
        self.forbidden_authorities
            .contains(authority)
            .then_some("the secrets backend")
    }

    /// Checks an authority as written (no DNS): for warnings at load time.
    pub fn refuses_literal(&self, authority: &Authority) -> Option<&'static str> {
        self.refuses_name(authority).or_else(|| {
            authority
                .ip()
                .and_then(|ip| self.refuses(SocketAddr::new(ip, authority.port)))
        })
    }

    /// Resolves `authority` and checks every address. Returns the first address
    /// when all are allowed.
    async fn check(&self, authority: &Authority) -> Result<SocketAddr, Refusal> {
        if let Some(why) = self.refuses_name(authority) {
            return Err(Refusal::Forbidden(why));
        }
        let addrs: Vec<SocketAddr> = match authority.ip() {
            Some(ip) => vec![SocketAddr::new(ip, authority.port)],
            None => {
                let lookup = tokio::net::lookup_host((authority.host.as_str(), authority.port));
                match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                    Ok(Ok(addrs)) => addrs.collect(),
                    Ok(Err(_)) | Err(_) => return Err(Refusal::Unresolved),
                }
            }
        };
        if let Some(why) = addrs.iter().find_map(|addr| self.refuses(*addr)) {
            return Err(Refusal::Forbidden(why));
        }
        addrs.first().copied().ok_or(Refusal::Unresolved)
    }
}

enum Refusal {
    Forbidden(&'static str),
    Unresolved,
}

/// The addresses a listener bound to `ip` answers on: `ip` itself, or every
/// address of this machine's interfaces when `ip` is a wildcard.
pub fn listener_addresses(ip: IpAddr) -> Vec<IpAddr> {
    if ip.is_unspecified() {
        local_addresses()
    } else {
        vec![canonical_ip(ip)]
    }
}

/// This machine's interface addresses, from the kernel's tables (Linux, where
/// worker pods run): IPv4 `LOCAL` host routes in `/proc/net/fib_trie`, IPv6 in
/// `/proc/net/if_inet6`. Elsewhere none are found, and only loopback and the
/// wildcard count as the host's own addresses.
fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        let mut last: Option<IpAddr> = None;
        for line in trie.lines() {
            let line = line.trim_start();
            if let Some(addr) = line.strip_prefix("|-- ") {
                last = addr.trim().parse().ok();
            } else if line.starts_with("/32 host LOCAL")
                && let Some(ip) = last
                && !out.contains(&ip)
            {
                out.push(ip);
            }
        }
    }
    if let Ok(table) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in table.lines() {
            let Some(hex) = line.split_whitespace().next() else {
                continue;
            };
            if let Ok(bits) = u128::from_str_radix(hex, 16)
                && hex.len() == 32
            {
                let ip = canonical_ip(IpAddr::V6(std::net::Ipv6Addr::from(bits)));
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    }
    out
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// A bundle's egress rules, shared by its requests.
pub struct EgressPolicy {
    pub bundle: Arc<str>,
    pub allow: Vec<Authority>,
    pub max_per_request: u32,
    pub guard: Arc<EgressGuard>,
    pub log: Arc<LogLimiter>,
    /// The manifest's sealed secrets and where each may travel.
    pub sealed: Vec<SealedSecret>,
    /// The operator's sealed-egress settings (TLS roots, plain-http authorities).
    pub sealed_egress: Option<Arc<SealedEgress>>,
    /// This bundle's sealed-secret counters (`/metrics`).
    pub sealed_counts: Arc<crate::metrics::SealedCounters>,
    /// Where sealed values are read from (same scope and cache as `get`).
    pub secrets: Arc<BundleSecrets>,
}

impl std::fmt::Debug for EgressPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressPolicy")
            .field("bundle", &self.bundle)
            .field("allow", &self.allow)
            .field("sealed", &self.sealed)
            .finish_non_exhaustive()
    }
}

impl EgressPolicy {
    fn allows(&self, authority: &Authority) -> bool {
        self.allow.contains(authority)
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

fn refused(error: HttpError) -> ResponseFuture {
    Box::new(async { Err(error) })
}

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        drop(fut);
        let policy = self.policy.clone();
        let authority = match request_authority(&request) {
            Ok(authority) => authority,
            Err(why) => {
                crate::limited_warn!(
                    policy.log,
                    policy.bundle,
                    "egress-denied",
                    "outgoing HTTP denied: malformed authority ({why})"
                );
                return refused(HttpError::HttpRequestUriInvalid);
            }
        };
        if !policy.allows(&authority) {
            crate::limited_warn!(
                policy.log,
                policy.bundle,
                "egress-denied",
                %authority,
                "outgoing HTTP denied: not in the bundle's egress allowlist"
            );
            return refused(HttpError::HttpRequestDenied);
        }
        self.sent += 1;
        if self.sent > policy.max_per_request {
            crate::limited_warn!(
                policy.log,
                policy.bundle,
                "egress-limit",
                limit = policy.max_per_request,
                "outgoing HTTP denied: too many requests in one incoming request"
            );
            return refused(HttpError::ConnectionLimitReached);
        }
        let https = request.uri().scheme_str() == Some("https");
        let sealed_names = match policy.sealed_egress.as_deref() {
            Some(settings) => {
                match crate::serve::sealed::plan(
                    &request,
                    &authority,
                    https,
                    &policy.sealed,
                    settings,
                ) {
                    Ok(None) => None,
                    Ok(Some(used)) => Some(used.iter().map(|s| s.name.clone()).collect::<Vec<_>>()),
                    Err(refusal) => {
                        sealed_refused(&policy, &authority, &refusal);
                        return refused(HttpError::HttpRequestDenied);
                    }
                }
            }
            None if has_placeholder(&request) => {
                sealed_refused(&policy, &authority, &SealedRefusal::Malformed);
                return refused(HttpError::HttpRequestDenied);
            }
            None => None,
        };
        if let Some(names) = sealed_names {
            return Box::new(send_sealed(
                policy, request, authority, https, names, options,
            ));
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let addr = checked_addr(&policy, &authority).await?;
            // Plain http goes to the address that was checked (the Host header
            // keeps the name); https connects by name for the certificate check.
            if request.uri().scheme_str() == Some("http") {
                let mut parts = request.uri().clone().into_parts();
                if let Ok(pinned) = http::uri::Authority::try_from(addr.to_string()) {
                    parts.authority = Some(pinned);
                    if let Ok(uri) = http::Uri::from_parts(parts) {
                        *request.uri_mut() = uri;
                    }
                }
            }
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

/// The address to connect to, after the operator's guard (refusals logged).
async fn checked_addr(
    policy: &EgressPolicy,
    authority: &Authority,
) -> Result<SocketAddr, HttpError> {
    match policy.guard.check(authority).await {
        Ok(addr) => Ok(addr),
        Err(Refusal::Forbidden(why)) => {
            crate::limited_warn!(
                policy.log,
                policy.bundle,
                "egress-forbidden",
                %authority,
                "outgoing HTTP denied by the operator's egress policy: {why}"
            );
            Err(HttpError::DestinationIpProhibited)
        }
        Err(Refusal::Unresolved) => Err(HttpError::DestinationNotFound),
    }
}

/// Whether a request mentions a placeholder anywhere it could be substituted.
fn has_placeholder(request: &http::Request<WasiBody>) -> bool {
    let path = request.uri().path_and_query().map_or("", |p| p.as_str());
    crate::serve::sealed::mentions_placeholder(path.as_bytes())
        || request
            .headers()
            .values()
            .any(|v| crate::serve::sealed::mentions_placeholder(v.as_bytes()))
}

/// Logs (rate-limited) and audits a refused sealed request; nothing was sent.
fn sealed_refused(policy: &EgressPolicy, authority: &Authority, refusal: &SealedRefusal) {
    policy
        .sealed_counts
        .refused
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let secret = refusal
        .name()
        .map(|name| {
            policy
                .secrets
                .uri_of(name)
                .unwrap_or_else(|| name.to_string())
        })
        .unwrap_or_default();
    let why = refusal.reason();
    policy
        .secrets
        .audit()
        .record(crate::secrets::audit::Record::Inject(
            crate::secrets::audit::Inject {
                bundle: policy.bundle.to_string(),
                secret: secret.clone(),
                destination: authority.to_string(),
                outcome: "refused",
                reason: why.to_string(),
                latency_us: None,
            },
        ));
    crate::limited_warn!(
        policy.log,
        policy.bundle,
        "sealed-refused",
        secret = secret.as_str(),
        destination = %authority,
        "outgoing HTTP with a sealed secret refused before sending: {why}"
    );
}

/// Checks the destination, reads the sealed values, substitutes them, sends the
/// request from the host and scrubs the response.
async fn send_sealed(
    policy: Arc<EgressPolicy>,
    mut request: http::Request<WasiBody>,
    authority: Authority,
    https: bool,
    names: Vec<String>,
    options: Option<RequestOptions>,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
> {
    use http_body_util::BodyExt;
    let Some(settings) = policy.sealed_egress.clone() else {
        return Err(HttpError::HttpRequestDenied);
    };
    let addr = checked_addr(&policy, &authority).await?;
    let mut injected = Vec::with_capacity(names.len());
    for name in &names {
        let started = std::time::Instant::now();
        let resolution = policy.secrets.resolve_for(name, Use::Sealed).await;
        let outcome = match &resolution.result {
            Ok(_) => "injected",
            Err(_) => "unavailable",
        };
        let record = crate::secrets::audit::Record::Inject(crate::secrets::audit::Inject {
            bundle: policy.bundle.to_string(),
            secret: resolution.uri.clone().unwrap_or_else(|| name.clone()),
            destination: authority.to_string(),
            outcome,
            reason: resolution.reason.clone().unwrap_or_default(),
            latency_us: Some(started.elapsed().as_micros() as u64),
        });
        let audit = policy.secrets.audit();
        let result = if record.is_disclosure() {
            // Never sent unaudited: a record the queue cannot take now refuses
            // the request as if the value were unavailable (nothing is sent).
            audit
                .disclose(record)
                .map_err(|_| crate::secrets::capability::GuestError::Unavailable)
                .and(resolution.result)
        } else {
            audit.record(record);
            resolution.result
        };
        if result.is_err() {
            policy
                .sealed_counts
                .refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        match result {
            Ok(value) => injected.push(Injected::new(name, value.expose())),
            Err(crate::secrets::capability::GuestError::Unavailable) => {
                return Err(HttpError::DestinationUnavailable);
            }
            Err(_) => return Err(HttpError::InternalError(None)),
        }
    }
    if let Err(error) = crate::serve::sealed::substitute(&mut request, &injected) {
        policy
            .sealed_counts
            .refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::limited_warn!(
            policy.log,
            policy.bundle,
            "sealed-refused",
            destination = %authority,
            "outgoing HTTP with a sealed secret refused: {error}"
        );
        return Err(HttpError::HttpRequestDenied);
    }
    crate::serve::sealed::ask_for_plain_response(&mut request);
    let scrubber = Arc::new(Scrubber::new(&injected));
    drop(injected);
    let (response, io) = crate::serve::sealed::send(
        request,
        addr,
        &authority,
        https,
        settings.tls.clone(),
        options,
    )
    .await?;
    let (mut parts, body) = response.into_parts();
    policy
        .sealed_counts
        .injected
        .fetch_add(names.len() as u64, std::sync::atomic::Ordering::Relaxed);
    if let Some(why) = crate::serve::sealed::unscrubbable(&parts) {
        policy
            .sealed_counts
            .response_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Nothing of it reaches the guest: the body is dropped unread.
        crate::limited_warn!(
            policy.log,
            policy.bundle,
            "sealed-response-refused",
            destination = %authority,
            "the response to a request carrying a sealed secret was refused: {why}"
        );
        return Err(HttpError::HttpResponseContentCoding(None));
    }
    scrubber.scrub_headers(&mut parts.headers);
    let body = ScrubbedBody::new(body.map_err(HttpError::from), scrubber);
    Ok((
        http::Response::from_parts(parts, body.boxed_unsync()),
        Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_refuses_metadata_loopback_own_ports_and_the_backend() {
        let vault: SocketAddr = "10.0.0.5:8200".parse().unwrap();
        let guard = EgressGuard {
            allow_loopback: false,
            own_ports: vec![8080],
            own_addrs: vec!["10.1.2.3".parse().unwrap()],
            forbidden_addrs: vec![vault],
            forbidden_authorities: vec![Authority::parse("vault.vault.svc:8200").unwrap()],
        };
        let refused = |text: &str| guard.refuses_literal(&Authority::parse(text).unwrap());
        assert!(refused("169.254.169.254:80").is_some());
        assert!(refused("[fe80::1]:80").is_some());
        assert!(refused("127.0.0.1:9000").is_some());
        assert!(refused("[::ffff:127.0.0.1]:9000").is_some());
        assert!(refused("0.0.0.0:9000").is_some());
        assert!(refused("10.0.0.5:8200").is_some());
        assert!(refused("vault.vault.svc:8200").is_some());
        assert!(refused("10.0.0.5:443").is_none());
        // The host's own non-loopback address, on its port (and only there).
        assert!(refused("10.1.2.3:8080").is_some());
        assert!(refused("[::ffff:10.1.2.3]:8080").is_some());
        assert!(refused("10.1.2.3:443").is_none());
        assert!(refused("93.184.216.34:443").is_none());
        let loopback_ok = EgressGuard {
            allow_loopback: true,
            ..guard
        };
        let refused = |text: &str| loopback_ok.refuses_literal(&Authority::parse(text).unwrap());
        assert!(refused("127.0.0.1:9000").is_none());
        assert!(refused("127.0.0.1:8080").is_some(), "own listener");
        assert!(refused("169.254.169.254:80").is_some());
    }

    #[test]
    fn a_wildcard_listener_answers_on_every_interface_address() {
        let wildcard = listener_addresses("0.0.0.0".parse().unwrap());
        assert!(
            wildcard.contains(&"127.0.0.1".parse().unwrap()),
            "{wildcard:?}"
        );
        let one: IpAddr = "192.0.2.77".parse().unwrap();
        assert_eq!(listener_addresses(one), [one]);
    }
}
