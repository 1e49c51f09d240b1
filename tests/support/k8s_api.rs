//! A stand-in for the one Kubernetes API endpoint Vault's Kubernetes auth calls:
//! TokenReview. It mints projected ServiceAccount tokens (RS256, with a key
//! generated at start) and reviews them as the API server would: signature,
//! expiry and audience are checked, and the answer names the ServiceAccount.
//!
//! Its caller is authenticated and authorized as the API server does it: the
//! request's bearer token must be a token of this issuer whose audience the API
//! server accepts ([`API_AUDIENCE`]; a worker's projected token, audience `vault`,
//! is not one) — else 401 — and its ServiceAccount must be bound to
//! `system:auth-delegator` ([`K8sApi::bind_auth_delegator`], what applying the
//! rendered ClusterRoleBinding does) — else 403. So Vault configured without a
//! reviewer JWT (it then sends the worker's own token) fails here as it would
//! on a cluster.
//!
//! Used by the tests and by examples/k8s-vault-demo/local.sh (through the
//! `tokenreview-stub` example). Listens on 127.0.0.1 only; stops on drop.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{SignatureEncoding as _, Signer as _, Verifier as _};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The stand-in for the Kubernetes API's TokenReview endpoint.
pub struct K8sApi {
    pub addr: String,
    key: RsaPrivateKey,
    /// `jti` of every token reviewed, in order.
    pub reviewed: Arc<Mutex<Vec<String>>>,
    pub ca_pem: String,
    /// `system:serviceaccount:NS:NAME` of every ServiceAccount bound to
    /// `system:auth-delegator` (allowed to create TokenReviews).
    delegators: Arc<Mutex<BTreeSet<String>>>,
    /// Callers refused, as `STATUS reason`, in order.
    pub refused_callers: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub const WORKER_NAMESPACE: &str = "greentic-workers";

/// The audience the API server accepts for its own API (its issuer, as a
/// cluster's default `--api-audiences`): what `kubectl create token` mints.
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl K8sApi {
    pub fn start() -> K8sApi {
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let public = RsaPublicKey::from(&key);
        let reviewed = Arc::new(Mutex::new(Vec::new()));
        let delegators = Arc::new(Mutex::new(BTreeSet::new()));
        let refused_callers = Arc::new(Mutex::new(Vec::new()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let state = ApiState {
            key: public,
            seen: reviewed.clone(),
            delegators: delegators.clone(),
            refused: refused_callers.clone(),
        };
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve_token_reviews(listener, state, stop_rx));
        });
        let ca =
            rcgen::generate_simple_self_signed(vec!["kubernetes.default.svc".to_string()]).unwrap();
        K8sApi {
            addr,
            key,
            reviewed,
            ca_pem: ca.cert.pem(),
            delegators,
            refused_callers,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// A projected ServiceAccount token, as the kubelet would mount it.
    pub fn mint(
        &self,
        namespace: &str,
        service_account: &str,
        audience: &str,
        ttl: Duration,
    ) -> String {
        let issued = now();
        let jti = format!("jti-{}", rand::random::<u64>());
        let claims = json!({
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
            "aud": [audience],
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl.as_secs(),
            "jti": jti,
            "kubernetes.io": {
                "namespace": namespace,
                "pod": {"name": "gtc-worker-0", "uid": "pod-uid-0"},
                "serviceaccount": {"name": service_account, "uid": sa_uid(namespace, service_account)},
            },
        });
        let header =
            B64URL.encode(json!({"alg": "RS256", "typ": "JWT", "kid": "test"}).to_string());
        let payload = B64URL.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let signature = SigningKey::<Sha256>::new(self.key.clone()).sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64URL.encode(signature.to_bytes()))
    }

    pub fn reviewed(&self) -> Vec<String> {
        self.reviewed.lock().unwrap().clone()
    }

    /// Binds `service_account` to `system:auth-delegator` (what applying a
    /// ClusterRoleBinding to it does): it may create TokenReviews.
    pub fn bind_auth_delegator(&self, namespace: &str, service_account: &str) {
        self.delegators.lock().unwrap().insert(format!(
            "system:serviceaccount:{namespace}:{service_account}"
        ));
    }

    /// A reviewer token for `service_account`, bound to `system:auth-delegator`,
    /// with the API server's audience (what `kubectl create token` mints).
    pub fn mint_reviewer(&self, namespace: &str, service_account: &str) -> String {
        self.bind_auth_delegator(namespace, service_account);
        self.mint(
            namespace,
            service_account,
            API_AUDIENCE,
            Duration::from_secs(24 * 3600),
        )
    }

    /// The callers refused so far (`401 …` / `403 …`).
    pub fn refused_callers(&self) -> Vec<String> {
        self.refused_callers.lock().unwrap().clone()
    }
}

/// What the server needs to review tokens and authenticate its callers.
#[derive(Clone)]
struct ApiState {
    key: RsaPublicKey,
    seen: Arc<Mutex<Vec<String>>>,
    delegators: Arc<Mutex<BTreeSet<String>>>,
    refused: Arc<Mutex<Vec<String>>>,
}

fn audiences_of(claims: &Value) -> Vec<String> {
    claims["aud"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Authenticates and authorizes the caller of a TokenReview as the API server
/// does: `Err((status, reason))` when it may not create one.
fn authorize_caller(authorization: Option<&str>, state: &ApiState) -> Result<(), (u16, String)> {
    let bearer = authorization
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or((401, "no bearer token".to_string()))?;
    let claims = verify(bearer, &state.key).map_err(|why| (401, why))?;
    if !audiences_of(&claims).iter().any(|a| a == API_AUDIENCE) {
        return Err((
            401,
            format!(
                "the bearer token's audience {:?} is not accepted by the API server",
                audiences_of(&claims)
            ),
        ));
    }
    let user = claims["sub"].as_str().unwrap_or_default();
    if !state.delegators.lock().unwrap().contains(user) {
        return Err((
            403,
            format!("{user} cannot create tokenreviews (no system:auth-delegator binding)"),
        ));
    }
    Ok(())
}

/// The `jti` claim of a JWT (no verification: test bookkeeping only).
pub fn jti_of(jwt: &str) -> String {
    let payload = jwt.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&B64URL.decode(payload).unwrap()).unwrap();
    claims["jti"].as_str().unwrap().to_string()
}

fn sa_uid(namespace: &str, service_account: &str) -> String {
    format!("uid-{namespace}-{service_account}")
}

impl Drop for K8sApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Verifies a JWT: RS256 signature with `key`, not expired; returns its claims.
fn verify(jwt: &str, key: &RsaPublicKey) -> Result<Value, String> {
    let mut parts = jwt.split('.');
    let (Some(header_b64), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT".into());
    };
    let header: Value =
        serde_json::from_slice(&B64URL.decode(header_b64).map_err(|_| "bad header")?)
            .map_err(|_| "bad header")?;
    if header["alg"] != "RS256" {
        return Err("unsupported alg".into());
    }
    let signature = Signature::try_from(
        B64URL
            .decode(signature)
            .map_err(|_| "bad signature")?
            .as_slice(),
    )
    .map_err(|_| "bad signature")?;
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(format!("{header_b64}.{payload}").as_bytes(), &signature)
        .map_err(|_| "signature does not verify")?;
    let claims: Value = serde_json::from_slice(&B64URL.decode(payload).map_err(|_| "bad payload")?)
        .map_err(|_| "bad payload")?;
    if claims["exp"].as_u64().is_none_or(|exp| exp <= now()) {
        return Err("token has expired".into());
    }
    Ok(claims)
}

fn review(body: &[u8], key: &RsaPublicKey, seen: &Mutex<Vec<String>>) -> Value {
    let refused = |why: &str| {
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "status": {"authenticated": false, "error": why},
        })
    };
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return refused("bad request");
    };
    let token = request["spec"]["token"].as_str().unwrap_or_default();
    let claims = match verify(token, key) {
        Ok(claims) => claims,
        Err(why) => return refused(&why),
    };
    if let Some(jti) = claims["jti"].as_str() {
        seen.lock().unwrap().push(jti.to_string());
    }
    let token_audiences = audiences_of(&claims);
    let wanted: Vec<String> = request["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let audiences: Vec<String> = if wanted.is_empty() {
        token_audiences.clone()
    } else {
        wanted
            .iter()
            .filter(|a| token_audiences.contains(a))
            .cloned()
            .collect()
    };
    if audiences.is_empty() {
        return refused("token audiences do not match");
    }
    let namespace = claims["kubernetes.io"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let service_account = claims["kubernetes.io"]["serviceaccount"]["name"]
        .as_str()
        .unwrap_or_default();
    json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "status": {
            "authenticated": true,
            "user": {
                "username": format!("system:serviceaccount:{namespace}:{service_account}"),
                "uid": sa_uid(namespace, service_account),
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{namespace}"), "system:authenticated"],
            },
            "audiences": audiences,
        },
    })
}

async fn serve_token_reviews(
    listener: std::net::TcpListener,
    state: ApiState,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    use http_body_util::{BodyExt as _, Full};
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted { Ok((s, _)) => s, Err(_) => continue },
            _ = &mut stop => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    async move {
                        let path = request.uri().path().to_string();
                        let caller = authorize_caller(
                            request
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok()),
                            &state,
                        );
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let (status, answer) = match caller {
                            _ if path != "/apis/authentication.k8s.io/v1/tokenreviews" => {
                                (404, json!({"kind": "Status", "code": 404}))
                            }
                            Err((status, reason)) => {
                                state
                                    .refused
                                    .lock()
                                    .unwrap()
                                    .push(format!("{status} {reason}"));
                                let message = if status == 401 {
                                    "Unauthorized"
                                } else {
                                    "Forbidden"
                                };
                                (
                                    status,
                                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                           "message": message, "reason": message, "code": status}),
                                )
                            }
                            Ok(()) => (201, review(&body, &state.key, &state.seen)),
                        };
                        let mut response =
                            hyper::Response::new(Full::new(bytes::Bytes::from(answer.to_string())));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        response.headers_mut().insert(
                            "content-type",
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(response)
                    }
                },
            );
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
