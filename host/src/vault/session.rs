//! The worker's Vault session: Kubernetes login with the pod's ServiceAccount token,
//! renewal before expiry, re-login when renewal is capped or fails.
//!
//! - The JWT is re-read from its file at every login: the kubelet rotates it.
//! - A background task renews the token at two thirds of its lifetime; when
//!   renewal hits `token_max_ttl` (Vault caps the TTL) or fails, it logs in again.
//!   So a request never waits for a login while a valid token exists.
//! - Concurrent callers that find no valid token share one login.
//! - A 403 on a read makes the caller ask for a fresh login ([`Session::relogin`])
//!   and retry once.

use super::{AuthInfo, VaultClient, VaultError, VaultToken};
use crate::metrics::Metrics;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How the worker logs in.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    pub mount: String,
    pub role: String,
    pub token_path: std::path::PathBuf,
}

#[derive(Clone)]
struct Current {
    token: VaultToken,
    obtained: Instant,
    lifetime: Duration,
    renewable: bool,
}

impl Current {
    fn expires(&self) -> Instant {
        self.obtained + self.lifetime
    }

    /// Usable for a request: not expired and not about to.
    fn usable(&self) -> bool {
        let margin = (self.lifetime / 10).min(Duration::from_secs(5));
        Instant::now() + margin < self.expires()
    }
}

/// The Vault session shared by every request of the process.
pub struct Session {
    client: VaultClient,
    login: LoginConfig,
    current: RwLock<Option<Current>>,
    login_lock: tokio::sync::Mutex<()>,
    last_error: RwLock<Option<VaultError>>,
    metrics: Arc<Metrics>,
}

impl Session {
    pub fn new(client: VaultClient, login: LoginConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            login,
            current: RwLock::new(None),
            login_lock: tokio::sync::Mutex::new(()),
            last_error: RwLock::new(None),
            metrics,
        }
    }

    pub fn client(&self) -> &VaultClient {
        &self.client
    }

    pub fn login_config(&self) -> &LoginConfig {
        &self.login
    }

    fn snapshot(&self) -> Option<Current> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether a usable token is held right now.
    pub fn logged_in(&self) -> bool {
        self.snapshot().is_some_and(|c| c.usable())
    }

    /// The last login/renewal failure, for readiness reporting.
    pub fn last_error(&self) -> Option<VaultError> {
        self.last_error
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A usable token: the current one, or a fresh login.
    pub async fn token(&self) -> Result<VaultToken, VaultError> {
        if let Some(current) = self.snapshot().filter(Current::usable) {
            return Ok(current.token);
        }
        self.login_once(None).await
    }

    /// Called after a 403 with `rejected`: logs in again unless another caller has
    /// already replaced that token.
    pub async fn relogin(&self, rejected: &VaultToken) -> Result<VaultToken, VaultError> {
        self.login_once(Some(rejected)).await
    }

    async fn login_once(&self, rejected: Option<&VaultToken>) -> Result<VaultToken, VaultError> {
        let _one_login = self.login_lock.lock().await;
        if let Some(current) = self.snapshot().filter(Current::usable)
            && rejected.is_none_or(|r| *r != current.token)
        {
            return Ok(current.token);
        }
        let result = self.login_now().await;
        match &result {
            Ok(_) => *self.last_error.write().unwrap_or_else(|e| e.into_inner()) = None,
            Err(error) => {
                *self.last_error.write().unwrap_or_else(|e| e.into_inner()) = Some(error.clone())
            }
        }
        result
    }

    /// Reads the JWT (fresh from disk) and logs in.
    async fn login_now(&self) -> Result<VaultToken, VaultError> {
        let path = &self.login.token_path;
        let jwt = tokio::fs::read_to_string(path)
            .await
            .map(Zeroizing::new)
            .map_err(|e| VaultError::TokenFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        let jwt = jwt.trim();
        if jwt.is_empty() {
            return Err(VaultError::TokenFile {
                path: path.display().to_string(),
                reason: "the file is empty".into(),
            });
        }
        match self
            .client
            .login_kubernetes(&self.login.mount, &self.login.role, jwt)
            .await
        {
            Ok(auth) => {
                self.metrics.logins.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    vault = %self.client.addr(),
                    role = %self.login.role,
                    ttl_s = auth.lease_duration.as_secs(),
                    "logged in to Vault with the ServiceAccount token"
                );
                Ok(self.install(auth))
            }
            Err(error) => {
                self.metrics.login_failures.fetch_add(1, Ordering::Relaxed);
                let error = explain_login_failure(error, &self.login);
                tracing::error!("{error}");
                Err(error)
            }
        }
    }

    fn install(&self, auth: AuthInfo) -> VaultToken {
        let token = auth.token.clone();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Current {
            token: auth.token,
            obtained: Instant::now(),
            lifetime: auth.lease_duration,
            renewable: auth.renewable,
        });
        token
    }

    /// One maintenance step: renew (or log in) if the token is past two thirds of
    /// its life. Returns how long to sleep before the next step.
    pub async fn maintain(&self) -> Duration {
        let Some(current) = self.snapshot() else {
            return match self.login_once(None).await {
                Ok(_) => Duration::ZERO,
                Err(_) => Duration::from_secs(2),
            };
        };
        let renew_at = current.obtained + current.lifetime * 2 / 3;
        let now = Instant::now();
        if now < renew_at {
            return renew_at - now;
        }
        if current.renewable && current.lifetime > Duration::ZERO {
            match self
                .client
                .renew_self(&current.token, current.lifetime)
                .await
            {
                // A renewal that returns less than a third of what was asked has
                // hit token_max_ttl: log in again instead of renewing a dying token.
                Ok(auth)
                    if auth.lease_duration >= current.lifetime / 3
                        && auth.lease_duration > Duration::ZERO =>
                {
                    self.metrics.renewals.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        ttl_s = auth.lease_duration.as_secs(),
                        "renewed the Vault token"
                    );
                    let lifetime = auth.lease_duration;
                    let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
                    if let Some(held) = guard.as_mut().filter(|held| held.token == current.token) {
                        held.obtained = Instant::now();
                        held.lifetime = lifetime;
                    }
                    return Duration::ZERO;
                }
                Ok(_) => tracing::info!("Vault token reached its maximum TTL; logging in again"),
                Err(error) => {
                    tracing::warn!("Vault token renewal failed ({error}); logging in again")
                }
            }
        }
        match self.login_once(Some(&current.token)).await {
            Ok(_) => Duration::ZERO,
            Err(_) => Duration::from_secs(1),
        }
    }

    /// Runs [`Session::maintain`] forever in the background.
    pub fn spawn_maintenance(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let session = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(strong) = session.upgrade() else {
                    return;
                };
                let wait = strong.maintain().await;
                drop(strong);
                tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
            }
        })
    }
}

/// Turns a login failure into a sentence an operator can act on.
fn explain_login_failure(error: VaultError, login: &LoginConfig) -> VaultError {
    match error {
        VaultError::Status {
            addr,
            operation,
            status: status @ (400 | 403),
            mut errors,
        } => {
            errors.push(format!(
                "Vault refused the pod's ServiceAccount token for role {:?}: check that the pod \
                 runs as the ServiceAccount the role binds (gtc-worker-<env>-<tenant> by default) \
                 in the bound namespace, \
                 and that auth/{}/role/{} exists",
                login.role, login.mount, login.role
            ));
            VaultError::Status {
                addr,
                operation,
                status,
                errors,
            }
        }
        other => other,
    }
}
