//! A small Vault / OpenBao HTTP client: exactly the endpoints `gtc` uses, one shared
//! connection pool, typed errors.
//!
//! Why not a Vault client crate: the worker needs Kubernetes login with a re-read
//! JWT, renew-self, KV-v2 reads that treat "deleted version" 404s (which carry a
//! normal body) as absence, transit decrypt and datakey, namespaces and a custom CA —
//! and errors that keep Vault's status and `errors` list while never carrying a
//! token or a value. That is a few hundred lines over `reqwest` (rustls), and it
//! lets one client (one pool, no per-call TLS handshake) serve every request.
//!
//! Errors explain themselves to an operator: an unreachable Vault names the
//! address and the likely cause (a NetworkPolicy), a 403 names the operation.
//!
//! Namespaces (`VAULT_NAMESPACE`): login, KV, transit and token calls carry
//! `X-Vault-Namespace`; `sys/health` never does, because Vault and OpenBao serve it
//! only in the root namespace (inside one they answer `400 operation unavailable
//! in namespaces`, which would make a namespaced worker look down for good). The
//! health of the server is the same from every namespace.

pub mod health;
pub mod parse;
pub mod session;

use crate::secrets::secret_value::SecretBytes;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::fmt;
use std::time::Duration;
use zeroize::Zeroizing;

/// A Vault token. Never printed: `Debug` is redacted and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultToken(Zeroizing<String>);

impl VaultToken {
    pub fn new(token: String) -> Self {
        Self(Zeroizing::new(token))
    }

    fn header_value(&self) -> Result<reqwest::header::HeaderValue, VaultError> {
        let mut value = reqwest::header::HeaderValue::from_str(&self.0).map_err(|_| {
            VaultError::Config("the Vault token contains invalid characters".into())
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for VaultToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultToken([redacted])")
    }
}

/// Why a Vault call failed. No variant carries a token, JWT or secret value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VaultError {
    #[error("Vault at {addr} unreachable ({cause}) — {hint}")]
    Unreachable {
        addr: String,
        cause: &'static str,
        hint: &'static str,
    },
    #[error("Vault at {addr} is sealed — unseal it (or wait for auto-unseal)")]
    Sealed { addr: String },
    /// Not tried: the shared health state says Vault is down (see [`health`]).
    #[error("Vault at {addr} is down ({cause}); not asked again for {retry_ms} ms")]
    Down {
        addr: String,
        cause: String,
        retry_ms: u64,
    },
    #[error("Vault at {addr}: {operation} failed with HTTP {status}{}", format_errors(.errors))]
    Status {
        addr: String,
        operation: String,
        status: u16,
        errors: Vec<String>,
    },
    #[error("Vault at {addr}: unexpected answer to {operation}: {detail}")]
    Protocol {
        addr: String,
        operation: String,
        detail: String,
    },
    #[error("cannot read the ServiceAccount token at {path}: {reason}")]
    TokenFile { path: String, reason: String },
    #[error("Vault configuration: {0}")]
    Config(String),
}

fn format_errors(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!(": {}", errors.join("; "))
    }
}

impl VaultError {
    /// HTTP status of a `Status` error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether a retry later may succeed (network, sealed, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Sealed { .. } | Self::Down { .. } => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Protocol { .. } | Self::TokenFile { .. } | Self::Config(_) => false,
        }
    }
}

/// Causes of [`VaultError::Unreachable`] (also read by [`health::Cause::of`]).
pub const CONNECT_TIMEOUT: &str = "connect timeout";
pub const REQUEST_TIMEOUT: &str = "request timeout";
pub const DNS_FAILED: &str = "DNS lookup failed";
pub const TLS_FAILED: &str = "TLS handshake failed";
pub const REFUSED: &str = "connection refused or reset";
/// The hint for timeouts: a silent drop looks exactly like this.
pub const TIMEOUT_HINT: &str =
    "check the NetworkPolicy that admits worker pods to Vault, and that Vault is up";
/// The longest a connection attempt may take, whatever `timeout` says: in a
/// cluster, Vault answers a SYN in milliseconds; waiting longer only delays the
/// answer to the guest.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Connection settings of the client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// e.g. `https://vault.vault.svc:8200` (no trailing slash needed).
    pub addr: String,
    pub namespace: Option<String>,
    /// PEM file with the CA that signed Vault's certificate.
    pub ca_cert: Option<std::path::PathBuf>,
    pub timeout: Duration,
}

/// What a login or renewal returned.
#[derive(Debug, Clone)]
pub struct AuthInfo {
    pub token: VaultToken,
    pub lease_duration: Duration,
    pub renewable: bool,
    pub warnings: Vec<String>,
}

/// One KV-v2 read: the `data` object (or `None` for a deleted/destroyed latest
/// version) and its version number.
#[derive(Debug)]
pub struct KvEntry {
    pub data: Option<serde_json::Map<String, Value>>,
    pub version: Option<u64>,
}

/// Which Vault namespace a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Namespace {
    /// `VAULT_NAMESPACE` when set (everything the worker does with a token).
    Configured,
    /// The root namespace (`sys/health`, which Vault serves only there).
    Root,
}

/// The shared client. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct VaultClient {
    http: reqwest::Client,
    addr: String,
    namespace: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClient")
            .field("addr", &self.addr)
            .finish()
    }
}

impl VaultClient {
    pub fn new(config: &ClientConfig) -> Result<Self, VaultError> {
        let addr = config.addr.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&addr)
            .map_err(|e| VaultError::Config(format!("VAULT_ADDR={addr:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(VaultError::Config(format!(
                "VAULT_ADDR={addr:?} must start with http:// or https://"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(MAX_CONNECT_TIMEOUT))
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .no_proxy()
            .user_agent(concat!("gtc/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                VaultError::Config(format!("cannot read VAULT_CACERT {}: {e}", path.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                VaultError::Config(format!(
                    "VAULT_CACERT {} is not a PEM certificate: {e}",
                    path.display()
                ))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| VaultError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            addr,
            namespace: config.namespace.clone(),
            timeout: config.timeout,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The error of a call abandoned at its deadline (a caller's own, shorter
    /// than the client's timeout): the same words as the client's timeout.
    pub fn timed_out(&self) -> VaultError {
        VaultError::Unreachable {
            addr: self.addr.clone(),
            cause: REQUEST_TIMEOUT,
            hint: TIMEOUT_HINT,
        }
    }

    /// The per-request timeout (`GREENTIC_VAULT_TIMEOUT`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one request inside `VAULT_NAMESPACE` and returns (status, JSON
    /// body). 404 is returned to the caller (KV-v2 uses it with a normal body);
    /// other non-2xx become errors.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&VaultToken>,
        body: Option<&Value>,
        operation: &str,
    ) -> Result<(StatusCode, Value), VaultError> {
        self.call_in(Namespace::Configured, method, path, token, body, operation)
            .await
    }

    /// [`Self::call`] in `namespace`.
    async fn call_in(
        &self,
        namespace: Namespace,
        method: Method,
        path: &str,
        token: Option<&VaultToken>,
        body: Option<&Value>,
        operation: &str,
    ) -> Result<(StatusCode, Value), VaultError> {
        let url = format!("{}/v1/{}", self.addr, path);
        let mut request = self.http.request(method, &url);
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token.header_value()?);
        }
        if let (Namespace::Configured, Some(namespace)) = (namespace, &self.namespace) {
            request = request.header("X-Vault-Namespace", namespace);
        }
        request = request.header("X-Vault-Request", "true");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        // Responses can carry a token or a data key: keep the raw body in memory
        // that is wiped once parsed (`Vec::from` reuses the buffer when it can).
        let bytes = Zeroizing::new(Vec::from(bytes));
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| VaultError::Protocol {
                addr: self.addr.clone(),
                operation: operation.to_string(),
                detail: if bytes.starts_with(b"Client sent an HTTP request to an HTTPS server") {
                    "TLS/protocol mismatch: the server speaks HTTPS but VAULT_ADDR says http:// — \
                     use https:// (and VAULT_CACERT)"
                        .to_string()
                } else {
                    format!("HTTP {} with a body that is not JSON", status.as_u16())
                },
            })?
        };
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok((status, json));
        }
        let errors = parse::error_list(&json);
        // A sealed Vault answers 503: with `errors: ["Vault is sealed"]` on most
        // endpoints, with `{"sealed": true}` on sys/health.
        let sealed = errors.iter().any(|e| e.contains("sealed"))
            || json.get("sealed").and_then(Value::as_bool) == Some(true);
        if status == StatusCode::SERVICE_UNAVAILABLE && sealed {
            return Err(VaultError::Sealed {
                addr: self.addr.clone(),
            });
        }
        Err(VaultError::Status {
            addr: self.addr.clone(),
            operation: operation.to_string(),
            status: status.as_u16(),
            errors,
        })
    }

    fn transport_error(&self, error: &reqwest::Error) -> VaultError {
        let (cause, hint) = if error.is_timeout() && error.is_connect() {
            (CONNECT_TIMEOUT, TIMEOUT_HINT)
        } else if error.is_timeout() {
            // The connection was open: a policy would have stopped the connect.
            (
                REQUEST_TIMEOUT,
                "Vault accepted the connection but did not answer in time: it is busy or frozen, \
                 or a login is waiting on the Kubernetes API (TokenReview); `gtc doctor` tells them apart",
            )
        } else if error.is_connect() {
            // The cause sits deep in the source chain (hyper → rustls/io); its
            // Debug form names it (e.g. `InvalidCertificate(UnknownIssuer)`).
            let text = format!("{error:?}").to_ascii_lowercase();
            if text.contains("invalidcontenttype")
                || text.contains("corrupt message")
                || text.contains("wrong version number")
            {
                // rustls got bytes that are not a TLS record: a plain-HTTP server.
                (
                    "TLS/protocol mismatch: the server does not speak TLS",
                    "VAULT_ADDR says https:// but Vault listens with plain HTTP: use http://, or enable TLS on Vault's listener",
                )
            } else if text.contains("dns error") || text.contains("failed to lookup") {
                (
                    DNS_FAILED,
                    "check VAULT_ADDR's host name and the pod's DNS egress policy",
                )
            } else if text.contains("certificate")
                || text.contains("tls")
                || text.contains("handshake")
            {
                (
                    TLS_FAILED,
                    "check VAULT_CACERT and that VAULT_ADDR's host name matches Vault's certificate",
                )
            } else {
                (
                    REFUSED,
                    "check that Vault is running at that address and that a NetworkPolicy admits worker pods to it",
                )
            }
        } else {
            (
                "connection failed",
                "check that Vault is running and reachable from this pod",
            )
        };
        VaultError::Unreachable {
            addr: self.addr.clone(),
            cause,
            hint,
        }
    }

    /// A 404 from an endpoint that only answers when its engine/method exists.
    fn nothing_mounted(&self, operation: String, what: String) -> VaultError {
        VaultError::Status {
            addr: self.addr.clone(),
            operation,
            status: 404,
            errors: vec![what],
        }
    }

    fn protocol(&self, operation: &str, detail: impl Into<String>) -> VaultError {
        VaultError::Protocol {
            addr: self.addr.clone(),
            operation: operation.to_string(),
            detail: detail.into(),
        }
    }

    fn auth_info(&self, operation: &str, body: Value) -> Result<AuthInfo, VaultError> {
        parse::auth_info(body).map_err(|detail| self.protocol(operation, detail))
    }

    /// `POST auth/{mount}/login {role, jwt}`.
    pub async fn login_kubernetes(
        &self,
        mount: &str,
        role: &str,
        jwt: &str,
    ) -> Result<AuthInfo, VaultError> {
        let operation = format!("Kubernetes login (auth/{mount}/login, role {role})");
        let body = serde_json::json!({ "role": role, "jwt": jwt });
        let (status, json) = self
            .call(
                Method::POST,
                &format!("auth/{mount}/login"),
                None,
                Some(&body),
                &operation,
            )
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Err(self.nothing_mounted(
                operation,
                format!("no auth method is mounted at auth/{mount}"),
            ));
        }
        self.auth_info(&operation, json)
    }

    /// `POST auth/token/renew-self`.
    pub async fn renew_self(
        &self,
        token: &VaultToken,
        increment: Duration,
    ) -> Result<AuthInfo, VaultError> {
        let operation = "token renewal (auth/token/renew-self)";
        let body = serde_json::json!({ "increment": format!("{}s", increment.as_secs().max(1)) });
        let (_, json) = self
            .call(
                Method::POST,
                "auth/token/renew-self",
                Some(token),
                Some(&body),
                operation,
            )
            .await?;
        self.auth_info(operation, json)
    }

    /// `GET {mount}/data/{path}`. A missing path, or a latest version that is
    /// deleted or destroyed (404 with a normal body), reads as `data: None`.
    pub async fn kv2_read(
        &self,
        token: &VaultToken,
        mount: &str,
        path: &str,
    ) -> Result<KvEntry, VaultError> {
        let operation = format!("KV read of {mount}/data/{path}");
        let (status, json) = self
            .call(
                Method::GET,
                &format!("{mount}/data/{path}"),
                Some(token),
                None,
                &operation,
            )
            .await?;
        let data = json.get("data");
        let version = data
            .and_then(|d| d.get("metadata"))
            .and_then(|m| m.get("version"))
            .and_then(Value::as_u64);
        if status == StatusCode::NOT_FOUND {
            return Ok(KvEntry {
                data: None,
                version,
            });
        }
        let object = match data.and_then(|d| d.get("data")) {
            Some(Value::Object(map)) => Some(map.clone()),
            Some(Value::Null) | None => None,
            Some(_) => return Err(self.protocol(&operation, "data.data is not an object")),
        };
        Ok(KvEntry {
            data: object,
            version,
        })
    }

    /// `GET {mount}/metadata/{path}`: the current version number, 0 when nothing
    /// was ever written there (a check-and-set write then creates version 1).
    pub async fn kv2_current_version(
        &self,
        token: &VaultToken,
        mount: &str,
        path: &str,
    ) -> Result<u64, VaultError> {
        let operation = format!("KV metadata read of {mount}/metadata/{path}");
        let (status, json) = self
            .call(
                Method::GET,
                &format!("{mount}/metadata/{path}"),
                Some(token),
                None,
                &operation,
            )
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(0);
        }
        json.get("data")
            .and_then(|d| d.get("current_version"))
            .and_then(Value::as_u64)
            .ok_or_else(|| self.protocol(&operation, "no data.current_version"))
    }

    /// `POST {mount}/data/{path} {"options": {"cas": cas}, "data": ...}`: writes
    /// only if `cas` is still the current version (0: only if nothing exists), so
    /// the new version is `cas + 1`. A lost race is an HTTP 400 error.
    pub async fn kv2_write(
        &self,
        token: &VaultToken,
        mount: &str,
        path: &str,
        data: &Value,
        cas: u64,
    ) -> Result<Option<u64>, VaultError> {
        let operation = format!("KV write of {mount}/data/{path} (check-and-set {cas})");
        let body = serde_json::json!({ "options": { "cas": cas }, "data": data });
        let (status, json) = self
            .call(
                Method::POST,
                &format!("{mount}/data/{path}"),
                Some(token),
                Some(&body),
                &operation,
            )
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Err(
                self.nothing_mounted(operation, format!("no KV-v2 engine is mounted at {mount}/"))
            );
        }
        Ok(json
            .get("data")
            .and_then(|d| d.get("version"))
            .and_then(Value::as_u64))
    }

    /// `LIST {mount}/metadata/{path}`: the keys one level below (folders end in `/`).
    pub async fn kv2_list(
        &self,
        token: &VaultToken,
        mount: &str,
        path: &str,
    ) -> Result<Vec<String>, VaultError> {
        let operation = format!("KV list of {mount}/metadata/{path}");
        let method = Method::from_bytes(b"LIST").map_err(|_| self.protocol(&operation, "LIST"))?;
        let (status, json) = self
            .call(
                method,
                &format!("{mount}/metadata/{path}"),
                Some(token),
                None,
                &operation,
            )
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        Ok(json
            .get("data")
            .and_then(|d| d.get("keys"))
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `POST {mount}/{endpoint}/{key}` to transit; returns the operation's name (for
    /// errors) and the answer. A 404 means there is no transit engine or key there.
    async fn transit(
        &self,
        token: &VaultToken,
        mount: &str,
        key: &str,
        endpoint: &str,
        body: &Value,
    ) -> Result<(String, Value), VaultError> {
        let path = format!("{mount}/{endpoint}/{key}");
        let operation = format!("transit {endpoint} ({path})");
        let (status, json) = self
            .call(Method::POST, &path, Some(token), Some(body), &operation)
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Err(self.nothing_mounted(
                operation,
                format!("no transit engine or key at {mount}/keys/{key}"),
            ));
        }
        Ok((operation, json))
    }

    /// `POST {mount}/decrypt/{key}`: unwraps a `vault:vN:...` ciphertext.
    pub async fn transit_decrypt(
        &self,
        token: &VaultToken,
        mount: &str,
        key: &str,
        ciphertext: &str,
    ) -> Result<SecretBytes, VaultError> {
        let body = serde_json::json!({ "ciphertext": ciphertext });
        let (operation, mut json) = self.transit(token, mount, key, "decrypt", &body).await?;
        parse::plaintext_key(&mut json).map_err(|detail| self.protocol(&operation, detail))
    }

    /// `POST {mount}/datakey/plaintext/{key}`: a fresh 256-bit data key, in clear
    /// and wrapped by the transit key.
    pub async fn transit_datakey(
        &self,
        token: &VaultToken,
        mount: &str,
        key: &str,
    ) -> Result<(SecretBytes, String), VaultError> {
        let body = serde_json::json!({ "bits": 256 });
        let (operation, mut json) = self
            .transit(token, mount, key, "datakey/plaintext", &body)
            .await?;
        let dek =
            parse::plaintext_key(&mut json).map_err(|detail| self.protocol(&operation, detail))?;
        let wrapped = parse::take_data_string(&mut json, "ciphertext")
            .ok_or_else(|| self.protocol(&operation, "no data.ciphertext"))?;
        Ok((dek, wrapped.to_string()))
    }

    /// `GET sys/health` (no token, root namespace): `Ok(())` when initialized,
    /// unsealed and active.
    pub async fn health(&self) -> Result<(), VaultError> {
        // A standby node forwards requests: healthy for a worker (the default
        // answer for a standby is 429, which is not an error here).
        let (status, _) = self
            .call_in(
                Namespace::Root,
                Method::GET,
                "sys/health?standbyok=true&perfstandbyok=true",
                None,
                None,
                "health check",
            )
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Err(self.protocol("health check", "no sys/health endpoint"));
        }
        Ok(())
    }

    /// `GET sys/health` as a liveness check of a worker (no token, root namespace,
    /// the cheapest call Vault answers): a standby answers too; a 503 means sealed.
    pub async fn heartbeat(&self) -> Result<(), VaultError> {
        let operation = "health check (sys/health)";
        match self
            .call_in(
                Namespace::Root,
                Method::GET,
                "sys/health?standbyok=true&perfstandbyok=true",
                None,
                None,
                operation,
            )
            .await
        {
            Ok((StatusCode::NOT_FOUND, _)) => {
                Err(self.protocol(operation, "no sys/health endpoint"))
            }
            Ok(_) => Ok(()),
            Err(VaultError::Status { status: 503, .. }) => Err(VaultError::Sealed {
                addr: self.addr.clone(),
            }),
            Err(other) => Err(other),
        }
    }
}
