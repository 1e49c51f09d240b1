//! The pod contract: what the worker reads from its environment.
//!
//! Only non-secret values come from the environment. The backend must be named in a
//! pod; a developer machine defaults to the dev store. Unknown values fail closed:
//! the process refuses to start and says which variable is wrong and what it
//! accepts.

use crate::secrets::backend::dev_store;
use crate::secrets::cache::CachePolicy;
use crate::secrets::scope::Segment;
use std::path::PathBuf;
use std::time::Duration;

pub const ENV_BACKEND: &str = "GREENTIC_SECRETS_BACKEND";
pub const ENV_ENV: &str = "GREENTIC_ENV";
pub const ENV_TENANT: &str = "GREENTIC_TENANT";
pub const ENV_DEV_STORE: &str = "GREENTIC_DEV_STORE";
pub const ENV_CACHE_TTL: &str = "GREENTIC_SECRETS_CACHE_TTL";
pub const ENV_STALE_FOR: &str = "GREENTIC_SECRETS_STALE_FOR";
pub const ENV_NOT_FOUND_TTL: &str = "GREENTIC_SECRETS_NOT_FOUND_TTL";
pub const ENV_CACHE_MAX: &str = "GREENTIC_SECRETS_CACHE_MAX_ENTRIES";
/// Where the kubelet mounts the ServiceAccount token by default.
pub const DEFAULT_SA_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

const ACCEPTED_BACKENDS: &str =
    "dev-store, vault, greentic.secrets.dev-store, greentic.secrets.vault";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "{ENV_BACKEND}={value:?} is not a known secrets backend; accepted values: {ACCEPTED_BACKENDS}"
    )]
    UnknownBackend { value: String },
    #[error(
        "{ENV_BACKEND} is not set, and this process runs inside a Kubernetes pod ({evidence}); \
         a worker must say which secrets backend it uses (accepted values: {ACCEPTED_BACKENDS})"
    )]
    BackendRequiredInPod { evidence: String },
    #[error(
        "VAULT_TOKEN is set, but a worker must not hold a static Vault token: it logs in with \
         its ServiceAccount token (VAULT_K8S_ROLE) and holds only short-lived tokens; unset VAULT_TOKEN"
    )]
    StaticToken,
    #[error("{var} is required {why}")]
    Missing {
        var: &'static str,
        why: &'static str,
    },
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
}

/// Which backend the pod asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    DevStore,
    Vault,
}

impl BackendKind {
    /// Parses `GREENTIC_SECRETS_BACKEND` (also the bound Secrets pack names).
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        match value {
            "dev-store" | "greentic.secrets.dev-store" => Ok(Self::DevStore),
            "vault" | "greentic.secrets.vault" => Ok(Self::Vault),
            other => Err(ConfigError::UnknownBackend {
                value: other.to_string(),
            }),
        }
    }
}

/// The pod's environment, parsed once into one typed value per concern, so that
/// the wiring (`app`) reads top to bottom and every error names its variable.
#[derive(Debug, Clone)]
pub struct PodConfig {
    /// `GREENTIC_ENV` and `GREENTIC_TENANT`: the scope every bundle shares.
    pub env: Segment,
    pub tenant: Segment,
    /// `GREENTIC_SECRETS_BACKEND` and what the chosen backend needs.
    pub backend: BackendConfig,
    /// `GREENTIC_SECRETS_CACHE_TTL` and the other cache settings.
    pub cache: CachePolicy,
    /// Start-up jitter, back-off, fetch budgets, the backend's timeout.
    pub fleet: FleetSettings,
}

/// The backend the pod asked for, with its settings.
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// `GREENTIC_DEV_STORE`: the dev store's file.
    DevStore { path: PathBuf },
    /// `VAULT_*`: address, login, layout.
    Vault(Box<VaultSettings>),
}

impl BackendConfig {
    pub fn kind(&self) -> BackendKind {
        match self {
            Self::DevStore { .. } => BackendKind::DevStore,
            Self::Vault(_) => BackendKind::Vault,
        }
    }
}

impl PodConfig {
    /// Reads everything a worker needs. The backend choice is checked first: it is
    /// the most important thing a pod must get right, and its error names every
    /// accepted value.
    pub fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        let kind = backend_kind(env)?;
        let (pod_env, tenant) = env_and_tenant(env)?;
        let backend = match kind {
            BackendKind::DevStore => BackendConfig::DevStore {
                path: dev_store_path(env),
            },
            BackendKind::Vault => BackendConfig::Vault(Box::new(vault_worker_settings(env)?)),
        };
        Ok(Self {
            env: pod_env,
            tenant,
            backend,
            fleet: fleet_settings(env)?,
            cache: cache_policy(env)?,
        })
    }
}

/// Read access to the process environment (a closure in tests).
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    fn file_exists(&self, path: &str) -> bool;
}

/// The real process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
    fn file_exists(&self, path: &str) -> bool {
        std::path::Path::new(path).exists()
    }
}

/// Why we believe this is a pod, if we do.
fn pod_evidence(env: &dyn Environment) -> Option<String> {
    if env.var("KUBERNETES_SERVICE_HOST").is_some() {
        return Some("KUBERNETES_SERVICE_HOST is set".into());
    }
    let token_path = env
        .var("VAULT_K8S_TOKEN_PATH")
        .unwrap_or_else(|| DEFAULT_SA_TOKEN_PATH.to_string());
    env.file_exists(&token_path)
        .then(|| format!("a ServiceAccount token exists at {token_path}"))
}

/// Selects the backend kind: explicit value, or dev-store outside a pod.
pub fn backend_kind(env: &dyn Environment) -> Result<BackendKind, ConfigError> {
    match env.var(ENV_BACKEND) {
        Some(value) => BackendKind::parse(&value),
        None => match pod_evidence(env) {
            Some(evidence) => Err(ConfigError::BackendRequiredInPod { evidence }),
            None => Ok(BackendKind::DevStore),
        },
    }
}

/// Env and tenant of the pod. Outside a pod they default to `dev` / `local`.
pub fn env_and_tenant(env: &dyn Environment) -> Result<(Segment, Segment), ConfigError> {
    let in_pod = pod_evidence(env).is_some();
    let read = |var: &'static str, default: &str| -> Result<Segment, ConfigError> {
        let value = match env.var(var) {
            Some(value) => value,
            None if in_pod => {
                return Err(ConfigError::Missing {
                    var,
                    why: "inside a pod",
                });
            }
            None => default.to_string(),
        };
        Segment::parse(&value).map_err(|e| ConfigError::Invalid {
            var,
            value,
            reason: e.to_string(),
        })
    };
    Ok((read(ENV_ENV, "dev")?, read(ENV_TENANT, "local")?))
}

/// The dev store's file.
pub fn dev_store_path(env: &dyn Environment) -> PathBuf {
    env.var(ENV_DEV_STORE)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(dev_store::DEFAULT_PATH))
}

/// Cache settings from `GREENTIC_SECRETS_CACHE_TTL`, `..._NOT_FOUND_TTL`,
/// `..._STALE_FOR`, `..._MAX_ENTRIES`.
pub fn cache_policy(env: &dyn Environment) -> Result<CachePolicy, ConfigError> {
    let mut policy = CachePolicy::default();
    if let Some(value) = env.var(ENV_CACHE_TTL) {
        policy.ttl = parse_duration(ENV_CACHE_TTL, &value)?;
    }
    if let Some(value) = env.var(ENV_NOT_FOUND_TTL) {
        policy.not_found_ttl = parse_duration(ENV_NOT_FOUND_TTL, &value)?;
    }
    if let Some(value) = env.var(ENV_STALE_FOR) {
        policy.stale_for = parse_duration(ENV_STALE_FOR, &value)?;
    }
    if let Some(value) = env.var(ENV_CACHE_MAX) {
        policy.max_entries = value.parse().map_err(|_| ConfigError::Invalid {
            var: ENV_CACHE_MAX,
            value: value.clone(),
            reason: "expected a whole number".into(),
        })?;
    }
    Ok(policy)
}

/// The longest duration any setting accepts (one year). Longer values are
/// surely a typo, and would overflow `Instant` arithmetic later (a deadline is
/// `now + duration`): they are refused here, with the variable named.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `250ms`, `30s`, `5m`, `1h` (or plain seconds), at most [`MAX_DURATION`].
/// The arithmetic is checked: a number that would overflow is refused, never
/// wrapped or saturated into some other duration.
/// Where `gtc serve` listens when `--listen` is not given.
pub const ENV_LISTEN: &str = "GTC_LISTEN";
/// Its default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// `GTC_LISTEN` (a `HOST:PORT` socket address), else the default; an error
/// names the variable, since the operator set it there, not as a flag.
pub fn listen_addr(env: &dyn Environment) -> Result<std::net::SocketAddr, ConfigError> {
    let value = env.var(ENV_LISTEN);
    let text = value.as_deref().unwrap_or(DEFAULT_LISTEN);
    text.parse().map_err(|_| ConfigError::Invalid {
        var: ENV_LISTEN,
        value: text.to_string(),
        reason: "expected an IP address and port, e.g. 0.0.0.0:8080".into(),
    })
}

/// [`parse_duration`], refusing zero (a timeout of nothing).
pub fn positive_duration(var: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let duration = parse_duration(var, value)?;
    if duration.is_zero() {
        return Err(ConfigError::Invalid {
            var,
            value: value.to_string(),
            reason: "must be more than 0".into(),
        });
    }
    Ok(duration)
}

/// A file of PEM certificates (`VAULT_CACERT`): present, a file, and holding at
/// least one certificate reqwest accepts. Checked once here, so each fault is a
/// configuration error naming the variable, with the OS error said once.
pub fn pem_certificate_file(var: &'static str, path: &str) -> Result<PathBuf, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        var,
        value: path.to_string(),
        reason,
    };
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(invalid("no such file".into()));
        }
        Err(_) if std::path::Path::new(path).is_dir() => {
            return Err(invalid("is a directory, not a PEM certificate file".into()));
        }
        Err(e) => return Err(invalid(format!("cannot read it: {e}"))),
    };
    let has_block = text
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----");
    if !has_block || reqwest::Certificate::from_pem_bundle(&text).is_err() {
        return Err(invalid(
            "not a PEM certificate (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(PathBuf::from(path))
}

pub fn parse_duration(var: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        var,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    const SHAPE: &str = "expected a duration such as 250ms, 30s, 5m or 1h";
    let too_long = || invalid("too long: at most 8760h (one year)");
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    if number.is_empty() {
        return Err(invalid(SHAPE));
    }
    // Digits only: a parse failure here can only be u64 overflow.
    let number: u64 = number.parse().map_err(|_| too_long())?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.checked_mul(60).ok_or_else(too_long)?),
        "h" => Duration::from_secs(number.checked_mul(3600).ok_or_else(too_long)?),
        _ => return Err(invalid(SHAPE)),
    };
    if duration > MAX_DURATION {
        return Err(too_long());
    }
    Ok(duration)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub struct FakeEnv {
        pub vars: HashMap<String, String>,
        pub files: Vec<String>,
    }

    impl FakeEnv {
        pub fn new(vars: &[(&str, &str)]) -> Self {
            Self {
                vars: vars
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                files: Vec::new(),
            }
        }
    }

    impl Environment for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).cloned()
        }
        fn file_exists(&self, path: &str) -> bool {
            self.files.iter().any(|f| f == path)
        }
    }

    #[test]
    fn backend_names() {
        for (value, kind) in [
            ("dev-store", BackendKind::DevStore),
            ("greentic.secrets.dev-store", BackendKind::DevStore),
            ("vault", BackendKind::Vault),
            ("greentic.secrets.vault", BackendKind::Vault),
        ] {
            assert_eq!(
                backend_kind(&FakeEnv::new(&[(ENV_BACKEND, value)])),
                Ok(kind)
            );
        }
        let err = backend_kind(&FakeEnv::new(&[(ENV_BACKEND, "Vault")])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(ENV_BACKEND) && text.contains("dev-store, vault"),
            "{text}"
        );
    }

    #[test]
    fn unset_backend_defaults_only_outside_pods() {
        assert_eq!(backend_kind(&FakeEnv::new(&[])), Ok(BackendKind::DevStore));
        let pod = FakeEnv::new(&[("KUBERNETES_SERVICE_HOST", "10.0.0.1")]);
        assert!(matches!(
            backend_kind(&pod),
            Err(ConfigError::BackendRequiredInPod { .. })
        ));
        let mut token = FakeEnv::new(&[]);
        token.files.push(DEFAULT_SA_TOKEN_PATH.to_string());
        assert!(backend_kind(&token).is_err());
        assert!(env_and_tenant(&token).is_err());
    }

    #[test]
    fn vault_worker_settings_defaults_and_refusals() {
        let env = FakeEnv::new(&[
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_K8S_ROLE", "gtc-worker"),
        ]);
        let settings = vault_worker_settings(&env).unwrap();
        assert_eq!(settings.login.mount, "kubernetes");
        assert_eq!(
            settings.login.token_path,
            PathBuf::from(DEFAULT_SA_TOKEN_PATH)
        );
        assert_eq!(settings.layout.kv_mount, "secret");
        assert_eq!(settings.layout.kv_prefix, "greentic");
        // The tenant's own transit key unless configured; no legacy key unless set.
        assert_eq!(settings.layout.transit_key, None);
        assert_eq!(settings.layout.legacy_transit_key, None);
        let migrating = FakeEnv::new(&[
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_K8S_ROLE", "r"),
            ("VAULT_TRANSIT_LEGACY_KEY", "greentic"),
        ]);
        let layout = vault_worker_settings(&migrating).unwrap().layout;
        assert_eq!(layout.legacy_transit_key.as_deref(), Some("greentic"));
        let escaping = FakeEnv::new(&[
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_K8S_ROLE", "r"),
            ("VAULT_TRANSIT_KEY", "../sys"),
        ]);
        assert!(vault_worker_settings(&escaping).is_err());
        let with_token = FakeEnv::new(&[
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_K8S_ROLE", "r"),
            ("VAULT_TOKEN", "s.static"),
        ]);
        assert_eq!(
            vault_worker_settings(&with_token).unwrap_err(),
            ConfigError::StaticToken
        );
        for bad in ["ftp://vault:8200", "vault:8200", "127.0.0.1:8200"] {
            let env = FakeEnv::new(&[("VAULT_ADDR", bad), ("VAULT_K8S_ROLE", "r")]);
            assert!(
                matches!(
                    vault_worker_settings(&env),
                    Err(ConfigError::Invalid {
                        var: "VAULT_ADDR",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        let no_role = FakeEnv::new(&[("VAULT_ADDR", "http://127.0.0.1:8200")]);
        assert!(matches!(
            vault_worker_settings(&no_role),
            Err(ConfigError::Missing {
                var: "VAULT_K8S_ROLE",
                ..
            })
        ));
        let climbing = FakeEnv::new(&[
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_K8S_ROLE", "r"),
            ("VAULT_KV_PREFIX", "greentic/../other"),
        ]);
        assert!(matches!(
            vault_worker_settings(&climbing),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("X", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_duration("X", "30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("X", "5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("X", "5 m").is_err());
        assert!(parse_duration("X", "-1s").is_err());
        assert!(parse_duration("X", "").is_err());
        assert!(parse_duration("X", "ms").is_err());
        assert_eq!(parse_duration("X", "8760h").unwrap(), MAX_DURATION);
    }

    #[test]
    fn overflowing_durations_are_refused_not_wrapped() {
        // 307445734561825861 * 60 and 5124095576030432 * 3600 overflow u64: they
        // once panicked (debug) or wrapped to 44 s / 3584 s (release).
        for value in [
            "307445734561825861m",
            "5124095576030432h",
            "18446744073709551616",
            "99999999999999999999999ms",
            "8761h",
            "31536001s",
        ] {
            let err = parse_duration(ENV_CACHE_TTL, value).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(ENV_CACHE_TTL) && text.contains(value) && text.contains("too long"),
                "{value}: {text}"
            );
        }
        let env = FakeEnv::new(&[(ENV_CACHE_TTL, "307445734561825861m")]);
        assert!(matches!(
            cache_policy(&env),
            Err(ConfigError::Invalid {
                var: ENV_CACHE_TTL,
                ..
            })
        ));
    }
}

/// Vault settings from the pod environment (`VAULT_*`).
#[derive(Debug, Clone)]
pub struct VaultSettings {
    pub client: crate::secrets::vault::ClientConfig,
    pub layout: crate::secrets::backend::VaultLayout,
    pub login: crate::secrets::vault::session::LoginConfig,
}

pub const ENV_VAULT_TIMEOUT: &str = "GREENTIC_VAULT_TIMEOUT";

/// Mount names, prefixes, key and namespace names: plain path segments, nothing
/// that could climb out of the intended path.
pub fn is_vault_path(value: &str) -> bool {
    !value.is_empty()
        && value.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
}

/// A Vault path setting from the environment, checked with [`is_vault_path`].
fn vault_path_value(
    env: &dyn Environment,
    var: &'static str,
    default: &str,
) -> Result<String, ConfigError> {
    let value = env.var(var).unwrap_or_else(|| default.to_string());
    check_vault_path_value(var, value)
}

/// Like [`vault_path_value`] for a variable without a default.
fn optional_vault_path_value(
    env: &dyn Environment,
    var: &'static str,
) -> Result<Option<String>, ConfigError> {
    env.var(var)
        .map(|value| check_vault_path_value(var, value))
        .transpose()
}

fn check_vault_path_value(var: &'static str, value: String) -> Result<String, ConfigError> {
    if is_vault_path(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            var,
            value,
            reason: "expected path segments of letters, digits, '-', '_' or '.'".into(),
        })
    }
}

/// Reads `VAULT_ADDR` and the mount/key layout (shared by worker and admin).
fn vault_common(
    env: &dyn Environment,
) -> Result<
    (
        crate::secrets::vault::ClientConfig,
        crate::secrets::backend::VaultLayout,
    ),
    ConfigError,
> {
    let addr = env.var("VAULT_ADDR").ok_or(ConfigError::Missing {
        var: "VAULT_ADDR",
        why: "with the vault backend",
    })?;
    let scheme_ok = reqwest::Url::parse(&addr)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some());
    if !scheme_ok {
        return Err(ConfigError::Invalid {
            var: "VAULT_ADDR",
            value: addr,
            reason: "expected an http:// or https:// URL, e.g. https://vault.example.com:8200"
                .into(),
        });
    }
    let timeout = match env.var(ENV_VAULT_TIMEOUT) {
        Some(value) => positive_duration(ENV_VAULT_TIMEOUT, &value)?,
        None => DEFAULT_VAULT_TIMEOUT,
    };
    let ca_cert = match env.var("VAULT_CACERT") {
        Some(path) => Some(pem_certificate_file("VAULT_CACERT", &path)?),
        None => None,
    };
    let client = crate::secrets::vault::ClientConfig {
        addr,
        namespace: env.var("VAULT_NAMESPACE"),
        ca_cert,
        timeout,
    };
    let layout = crate::secrets::backend::VaultLayout {
        kv_mount: vault_path_value(env, "VAULT_KV_MOUNT", "secret")?,
        kv_prefix: vault_path_value(env, "VAULT_KV_PREFIX", "greentic")?,
        transit_mount: vault_path_value(env, "VAULT_TRANSIT_MOUNT", "transit")?,
        transit_key: optional_vault_path_value(env, "VAULT_TRANSIT_KEY")?,
        legacy_transit_key: optional_vault_path_value(env, "VAULT_TRANSIT_LEGACY_KEY")?,
    };
    Ok((client, layout))
}

/// The worker's Vault settings. A static `VAULT_TOKEN` is refused: a worker holds
/// only short-lived tokens it obtained by logging in.
pub fn vault_worker_settings(env: &dyn Environment) -> Result<VaultSettings, ConfigError> {
    if env.var("VAULT_TOKEN").is_some() {
        return Err(ConfigError::StaticToken);
    }
    let (client, layout) = vault_common(env)?;
    let role = env.var("VAULT_K8S_ROLE").ok_or(ConfigError::Missing {
        var: "VAULT_K8S_ROLE",
        why: "with the vault backend",
    })?;
    let login = crate::secrets::vault::session::LoginConfig {
        mount: vault_path_value(env, "VAULT_K8S_MOUNT", "kubernetes")?,
        role,
        token_path: PathBuf::from(
            env.var("VAULT_K8S_TOKEN_PATH")
                .unwrap_or_else(|| DEFAULT_SA_TOKEN_PATH.to_string()),
        ),
    };
    Ok(VaultSettings {
        client,
        layout,
        login,
    })
}

/// The operator's Vault settings: address, layout and the admin `VAULT_TOKEN`.
pub fn vault_admin_settings(
    env: &dyn Environment,
) -> Result<
    (
        crate::secrets::vault::ClientConfig,
        crate::secrets::backend::VaultLayout,
        crate::secrets::vault::VaultToken,
    ),
    ConfigError,
> {
    let (client, layout) = vault_common(env)?;
    let token = env.var("VAULT_TOKEN").ok_or(ConfigError::Missing {
        var: "VAULT_TOKEN",
        why: "for `gtc op secrets` with the vault backend (an operator token)",
    })?;
    Ok((
        client,
        layout,
        crate::secrets::vault::VaultToken::new(token),
    ))
}

/// How a worker behaves when Vault is slow, down or hammered: start-up jitter,
/// the probe back-off cap, per-bundle fetch budgets (see `vault::health`,
/// `backend::budget`, `prefetch`).
#[derive(Debug, Clone, Copy)]
pub struct FleetSettings {
    /// The login and the first fetch of declared secrets wait a random time in
    /// `[0, startup_jitter]`, so that workers started together spread their load.
    pub startup_jitter: Duration,
    pub backoff: crate::secrets::vault::health::Backoff,
    pub budget: crate::secrets::backend::budget::BudgetPolicy,
    /// Each bundle's bound on `sealed.verify-hmac-sha256` checks.
    pub verify_budget: crate::secrets::backend::budget::BudgetPolicy,
    /// The backend's own per-request timeout (`GREENTIC_VAULT_TIMEOUT`).
    pub backend_timeout: Duration,
}

pub const ENV_STARTUP_JITTER: &str = "GREENTIC_STARTUP_JITTER";
pub const ENV_BACKOFF_MAX: &str = "GREENTIC_VAULT_BACKOFF_MAX";
pub const ENV_FETCH_RATE: &str = "GREENTIC_BUNDLE_FETCH_RATE";
pub const ENV_FETCH_BURST: &str = "GREENTIC_BUNDLE_FETCH_BURST";
pub const ENV_VERIFY_RATE: &str = "GREENTIC_BUNDLE_VERIFY_RATE";
pub const ENV_VERIFY_BURST: &str = "GREENTIC_BUNDLE_VERIFY_BURST";
/// Default of `GREENTIC_STARTUP_JITTER`.
pub const DEFAULT_STARTUP_JITTER: Duration = Duration::from_secs(2);
/// Default of `GREENTIC_VAULT_TIMEOUT`.
pub const DEFAULT_VAULT_TIMEOUT: Duration = Duration::from_secs(10);

fn positive_number(
    env: &dyn Environment,
    var: &'static str,
    default: f64,
) -> Result<f64, ConfigError> {
    let Some(value) = env.var(var) else {
        return Ok(default);
    };
    match value.parse::<f64>() {
        Ok(number) if number.is_finite() && number > 0.0 => Ok(number),
        _ => Err(ConfigError::Invalid {
            var,
            value,
            reason: "expected a positive number".into(),
        }),
    }
}

/// Reads the fleet settings (all optional).
pub fn fleet_settings(env: &dyn Environment) -> Result<FleetSettings, ConfigError> {
    let duration = |var: &'static str, default: Duration| match env.var(var) {
        Some(value) => parse_duration(var, &value),
        None => Ok(default),
    };
    let mut backoff = crate::secrets::vault::health::Backoff::default();
    backoff.max = duration(ENV_BACKOFF_MAX, backoff.max)?.max(backoff.base);
    use crate::secrets::backend::budget::BudgetPolicy;
    let defaults = BudgetPolicy::default();
    let verify = BudgetPolicy::VERIFY_DEFAULT;
    Ok(FleetSettings {
        startup_jitter: duration(ENV_STARTUP_JITTER, DEFAULT_STARTUP_JITTER)?,
        backoff,
        budget: BudgetPolicy {
            per_second: positive_number(env, ENV_FETCH_RATE, defaults.per_second)?,
            burst: positive_number(env, ENV_FETCH_BURST, defaults.burst)?.max(1.0),
        },
        verify_budget: BudgetPolicy {
            per_second: positive_number(env, ENV_VERIFY_RATE, verify.per_second)?,
            burst: positive_number(env, ENV_VERIFY_BURST, verify.burst)?.max(1.0),
        },
        backend_timeout: match env.var(ENV_VAULT_TIMEOUT) {
            Some(value) => positive_duration(ENV_VAULT_TIMEOUT, &value)?,
            None => DEFAULT_VAULT_TIMEOUT,
        },
    })
}

#[cfg(test)]
mod fleet_tests {
    use super::tests::FakeEnv;
    use super::*;

    #[test]
    fn fleet_settings_defaults_and_overrides() {
        let defaults = fleet_settings(&FakeEnv::new(&[])).unwrap();
        assert_eq!(defaults.startup_jitter, DEFAULT_STARTUP_JITTER);
        assert_eq!(defaults.backend_timeout, DEFAULT_VAULT_TIMEOUT);
        assert_eq!(defaults.budget.per_second, 20.0);
        assert_eq!(defaults.verify_budget.per_second, 50_000.0);
        let set = fleet_settings(&FakeEnv::new(&[
            (ENV_STARTUP_JITTER, "0"),
            (ENV_BACKOFF_MAX, "3s"),
            (ENV_FETCH_RATE, "2.5"),
            (ENV_FETCH_BURST, "7"),
            (ENV_VERIFY_RATE, "3"),
            (ENV_VERIFY_BURST, "0.5"),
        ]))
        .unwrap();
        assert_eq!(set.startup_jitter, Duration::ZERO);
        assert_eq!(set.backoff.max, Duration::from_secs(3));
        assert_eq!((set.budget.per_second, set.budget.burst), (2.5, 7.0));
        // A burst below one check would refuse every check: it is one.
        let verify = set.verify_budget;
        assert_eq!((verify.per_second, verify.burst), (3.0, 1.0));
        for (var, value) in [
            (ENV_FETCH_RATE, "0"),
            (ENV_FETCH_BURST, "-1"),
            (ENV_FETCH_RATE, "x"),
            (ENV_VERIFY_RATE, "-3"),
            (ENV_VERIFY_BURST, "many"),
        ] {
            let error = fleet_settings(&FakeEnv::new(&[(var, value)])).unwrap_err();
            assert!(error.to_string().contains(var), "{error}");
        }
    }
}
