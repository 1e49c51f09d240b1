//! The worker's Vault session: Kubernetes login with the pod's ServiceAccount token,
//! renewal before expiry, re-login when renewal is capped or fails.
//!
//! - The JWT is re-read from its file at every login: the kubelet rotates it.
//! - A background task renews the token at a jittered point between 55 % and 70 %
//!   of its lifetime (so a fleet started together does not renew in step); when
//!   renewal hits `token_max_ttl` (Vault caps the TTL) or is refused, it logs in
//!   again. So a request never waits for a login while a valid token exists.
//! - Concurrent callers that find no valid token share one login.
//! - A 403 on a read makes the caller ask for a fresh login ([`Session::relogin`])
//!   and retry once.
//! - Every background step asks the shared [`BackendHealth`] first and records
//!   its outcome there: while Vault is down, logins and renewals are probes,
//!   retried with exponential back-off and jitter (reset on success), never in a
//!   tight loop and never once per request.

use super::health::{self, BackendHealth, Backoff};
use super::{AuthInfo, VaultClient, VaultError, VaultToken};
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// When the background task renews it (jittered).
    renew_at: Instant,
}

/// The share of a token's lifetime after which it is renewed: drawn per token
/// from this range, so that workers started together spread their renewals.
const RENEW_BETWEEN: (f64, f64) = (0.55, 0.70);

/// When no call has reached Vault for this long, the background task checks
/// `sys/health`: an outage is then noticed (and `/readyz` says so) within this
/// time even when nothing else calls Vault, and a recovery is noticed without
/// a guest having to ask. Only an idle worker sends it.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// The heartbeat's own deadline: a silent drop must not hold it for the
/// client's full timeout.
pub const HEARTBEAT_DEADLINE: Duration = Duration::from_secs(2);
/// The longest a background login or renewal may take (or the client's timeout
/// when shorter): a login stuck on a dropped connection must not keep `/readyz`
/// saying "not logged in yet" instead of naming the timeout.
pub const BACKGROUND_DEADLINE: Duration = Duration::from_secs(5);

fn renew_point(obtained: Instant, lifetime: Duration) -> Instant {
    let (low, high) = RENEW_BETWEEN;
    obtained + health::jitter(lifetime.mul_f64(low), lifetime.mul_f64(high))
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
    counters: SessionCounters,
    health: Arc<BackendHealth>,
}

/// What the session has done, for `/metrics` (read by `crate::metrics`).
#[derive(Debug, Default)]
pub struct SessionCounters {
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    pub renewals: AtomicU64,
}

impl Session {
    /// A session with the default back-off (see [`Backoff`]).
    pub fn new(client: VaultClient, login: LoginConfig) -> Self {
        Self::with_backoff(client, login, Backoff::default())
    }

    pub fn with_backoff(client: VaultClient, login: LoginConfig, backoff: Backoff) -> Self {
        let health = Arc::new(BackendHealth::new(client.addr(), backoff));
        Self {
            client,
            login,
            current: RwLock::new(None),
            login_lock: tokio::sync::Mutex::new(()),
            counters: SessionCounters::default(),
            health,
        }
    }

    /// Logins, failed logins and renewals so far.
    pub fn counters(&self) -> &SessionCounters {
        &self.counters
    }

    /// The health state shared with every caller of this session.
    pub fn health(&self) -> &Arc<BackendHealth> {
        &self.health
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

    /// A usable token: the current one, or a fresh login.
    pub async fn token(&self) -> Result<VaultToken, VaultError> {
        self.token_as(false).await
    }

    /// [`Session::token`]; a `probe` (the one caller let through while Vault is
    /// down) does not wait for a login already in flight: that one may be stuck on
    /// a connection a network drop killed, and would delay the recovery until
    /// its timeout.
    pub async fn token_as(&self, probe: bool) -> Result<VaultToken, VaultError> {
        if let Some(current) = self.snapshot().filter(Current::usable) {
            return Ok(current.token);
        }
        self.login_once(None, probe).await
    }

    /// Called after a 403 with `rejected`: logs in again unless another caller has
    /// already replaced that token.
    pub async fn relogin(&self, rejected: &VaultToken) -> Result<VaultToken, VaultError> {
        self.relogin_as(rejected, false).await
    }

    /// [`Session::relogin`], as a probe or not (see [`Session::token_as`]).
    pub async fn relogin_as(
        &self,
        rejected: &VaultToken,
        probe: bool,
    ) -> Result<VaultToken, VaultError> {
        self.login_once(Some(rejected), probe).await
    }

    async fn login_once(
        &self,
        rejected: Option<&VaultToken>,
        probe: bool,
    ) -> Result<VaultToken, VaultError> {
        let _one_login = if probe {
            self.login_lock.try_lock().ok()
        } else {
            Some(self.login_lock.lock().await)
        };
        if let Some(current) = self.snapshot().filter(Current::usable)
            && rejected.is_none_or(|r| *r != current.token)
        {
            return Ok(current.token);
        }
        self.login_now().await
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
                self.counters.logins.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    vault = %self.client.addr(),
                    role = %self.login.role,
                    ttl_s = auth.lease_duration.as_secs(),
                    "logged in to Vault with the ServiceAccount token"
                );
                Ok(self.install(auth))
            }
            Err(error) => {
                // Logged by the health state when it changes something (once per
                // outage, not once per attempt).
                self.counters.login_failures.fetch_add(1, Ordering::Relaxed);
                Err(explain_login_failure(error, &self.login))
            }
        }
    }

    fn install(&self, auth: AuthInfo) -> VaultToken {
        let token = auth.token.clone();
        let obtained = Instant::now();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Current {
            token: auth.token,
            obtained,
            lifetime: auth.lease_duration,
            renewable: auth.renewable,
            renew_at: renew_point(obtained, auth.lease_duration),
        });
        token
    }

    /// One maintenance step: log in when there is no token, renew (or log in
    /// again) once the token passes its renewal point. Asks the health state
    /// first and records the outcome there. Returns how long to sleep before the
    /// next step.
    pub async fn maintain(&self) -> Duration {
        let current = self.snapshot();
        if let Some(current) = &current {
            let now = Instant::now();
            if now < current.renew_at {
                return self.heartbeat(current.renew_at - now).await;
            }
        }
        let permit = match self.health.admit() {
            Ok(permit) => permit,
            Err(refused) => return refused.retry_in,
        };
        let (probe, started) = (permit.is_probe(), Instant::now());
        let step = async {
            match current {
                Some(current) if current.renewable && current.lifetime > Duration::ZERO => {
                    self.renew_or_login(current, probe).await
                }
                Some(current) => self.login_once(Some(&current.token), probe).await.map(drop),
                None => self.login_once(None, probe).await.map(drop),
            }
        };
        let deadline = self.client.timeout().min(BACKGROUND_DEADLINE);
        let outcome = tokio::time::timeout(deadline, step)
            .await
            .unwrap_or_else(|_| Err(self.client.timed_out()));
        drop(permit);
        match outcome {
            Ok(()) => {
                self.health.success();
                Duration::ZERO
            }
            Err(error) => {
                self.health.failure(&error, true, started);
                self.health.retry_in()
            }
        }
    }

    /// Checks `sys/health` when Vault has been idle for [`HEARTBEAT`] (or is down
    /// and a probe is due); returns how long to sleep, at most `until_renewal`.
    async fn heartbeat(&self, until_renewal: Duration) -> Duration {
        let idle = self.health.idle_for();
        if self.health.state() != health::State::Down && idle < HEARTBEAT {
            return until_renewal.min(HEARTBEAT - idle);
        }
        let permit = match self.health.admit() {
            Ok(permit) => permit,
            Err(refused) => return until_renewal.min(refused.retry_in),
        };
        let started = Instant::now();
        let outcome = tokio::time::timeout(HEARTBEAT_DEADLINE, self.client.heartbeat())
            .await
            .unwrap_or_else(|_| Err(self.client.timed_out()));
        drop(permit);
        match outcome {
            Ok(()) => self.health.reachable(),
            Err(error) => self.health.failure(&error, false, started),
        }
        Duration::ZERO
    }

    /// Renews `current`; logs in again when the renewal is capped by
    /// `token_max_ttl` or refused (a revoked token). A renewal that could not
    /// reach Vault is not followed by a login: that would only double the calls.
    async fn renew_or_login(&self, current: Current, probe: bool) -> Result<(), VaultError> {
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
                self.counters.renewals.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    ttl_s = auth.lease_duration.as_secs(),
                    "renewed the Vault token"
                );
                let lifetime = auth.lease_duration;
                let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
                if let Some(held) = guard.as_mut().filter(|held| held.token == current.token) {
                    held.obtained = Instant::now();
                    held.lifetime = lifetime;
                    held.renew_at = renew_point(held.obtained, lifetime);
                }
                return Ok(());
            }
            Ok(_) => tracing::info!("Vault token reached its maximum TTL; logging in again"),
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                tracing::warn!("Vault token renewal failed ({error}); logging in again")
            }
        }
        self.login_once(Some(&current.token), probe).await.map(drop)
    }

    /// Runs [`Session::maintain`] forever in the background, the first time
    /// after `delay` (the worker's start-up jitter).
    pub fn spawn_maintenance(self: &Arc<Self>, delay: Duration) -> tokio::task::JoinHandle<()> {
        let session = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
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
