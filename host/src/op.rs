//! Operator commands: `gtc op secrets put|ls`, the admin side of the backends.
//!
//! These run with the operator's credentials (for Vault, an admin `VAULT_TOKEN`),
//! never in a worker. Values come from stdin or a file and are never printed.

use crate::backend::{DevStore, VaultAdmin};
use crate::config::{self, BackendKind, ConfigError, Environment};
use crate::scope::{NameError, SecretPath, Segment};
use crate::vault::VaultClient;
use std::io::{IsTerminal as _, Read as _};
use std::path::Path;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("bad secret path {path:?}: {reason}")]
    Path { path: String, reason: String },
    #[error("cannot read the value: {0}")]
    Input(std::io::Error),
    #[error("refusing to store an empty value")]
    EmptyValue,
    #[error(transparent)]
    DevStore(#[from] crate::backend::dev_store::DevStoreError),
    /// Vault could not be asked (a runtime failure, not bad input): worded for an
    /// operator at a terminal, not for a worker pod.
    #[error("{}", operator_words(.0))]
    Vault(crate::vault::VaultError),
}

impl OpError {
    /// Whether the operator's input or configuration is at fault (exit status 2)
    /// rather than a backend that failed at run time (exit status 1).
    pub fn is_configuration(&self) -> bool {
        match self {
            Self::Vault(error) => matches!(error, crate::vault::VaultError::Config(_)),
            _ => true,
        }
    }
}

/// A Vault error as an operator running `gtc op` needs it: the worker-side hints
/// (NetworkPolicies admitting worker pods) do not apply to a laptop.
fn operator_words(error: &crate::vault::VaultError) -> String {
    use crate::vault::VaultError;
    match error {
        VaultError::Unreachable { addr, cause, .. } => format!(
            "Vault at {addr} unreachable ({cause}) — check VAULT_ADDR (from a workstation: is \
             `kubectl port-forward` to Vault still running?), that Vault is up, and VAULT_CACERT \
             for an https address"
        ),
        VaultError::Status { status: 403, .. } => format!(
            "{error} — check that VAULT_TOKEN is an operator token allowed to write \
             {{kv mount}}/data/{{prefix}}/… and use the transit key (VAULT_KV_MOUNT, VAULT_KV_PREFIX, \
             VAULT_TRANSIT_MOUNT, VAULT_TRANSIT_KEY must match vault-bootstrap.sh)"
        ),
        other => other.to_string(),
    }
}

/// The environment to act in: `--env`, else the pod's.
fn env_segment(env: &dyn Environment, flag: Option<&str>) -> Result<Segment, OpError> {
    match flag {
        Some(value) => Segment::parse(value).map_err(|e| OpError::Path {
            path: value.to_string(),
            reason: format!("--env: {e}"),
        }),
        None => Ok(config::env_and_tenant(env)?.0),
    }
}

/// Parses `TENANT/TEAM|_/CATEGORY/NAME` in `env`.
pub fn parse_put_path(env: &Segment, path: &str) -> Result<SecretPath, OpError> {
    let bad = |e: NameError| OpError::Path {
        path: path.to_string(),
        reason: match e {
            NameError::Malformed(why) => format!("{why} (expected TENANT/TEAM|_/CATEGORY/NAME)"),
            other => other.to_string(),
        },
    };
    SecretPath::parse_relative(&format!("{env}/{path}")).map_err(bad)
}

/// Reads the value: from a file, or stdin. A single trailing newline typed at a
/// terminal is dropped; piped bytes are kept exactly.
pub fn read_value(from_file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>, OpError> {
    let mut value = Zeroizing::new(Vec::new());
    match from_file {
        Some(path) => {
            *value = std::fs::read(path).map_err(OpError::Input)?;
        }
        None => {
            let stdin = std::io::stdin();
            let interactive = stdin.is_terminal();
            stdin
                .lock()
                .read_to_end(&mut value)
                .map_err(OpError::Input)?;
            if interactive && value.last() == Some(&b'\n') {
                value.pop();
            }
        }
    }
    if value.is_empty() {
        return Err(OpError::EmptyValue);
    }
    Ok(value)
}

/// `gtc op secrets put`.
pub async fn put(
    env: &dyn Environment,
    path: &str,
    env_flag: Option<&str>,
    from_file: Option<&Path>,
) -> Result<String, OpError> {
    let env_name = env_segment(env, env_flag)?;
    let secret = parse_put_path(&env_name, path)?;
    let value = read_value(from_file)?;
    match config::backend_kind(env)? {
        BackendKind::DevStore => {
            let store = DevStore::new(config::dev_store_path(env));
            store.put(&secret, &value)?;
            Ok(format!(
                "stored {} in dev store {}",
                secret.uri(),
                store.path().display()
            ))
        }
        BackendKind::Vault => {
            let admin = vault_admin(env)?;
            let version = admin.put(&secret, &value).await.map_err(OpError::Vault)?;
            let version = version.map_or_else(String::new, |v| format!(" (KV version {v})"));
            Ok(format!(
                "stored {} in Vault as an envelope{version}",
                secret.uri()
            ))
        }
    }
}

fn vault_admin(env: &dyn Environment) -> Result<VaultAdmin, OpError> {
    let (client_config, layout, token) = config::vault_admin_settings(env)?;
    let client = VaultClient::new(&client_config).map_err(OpError::Vault)?;
    Ok(VaultAdmin::new(client, token, layout))
}

/// `gtc op secrets ls`: canonical URIs, no values.
pub async fn list(
    env: &dyn Environment,
    prefix: &str,
    env_flag: Option<&str>,
) -> Result<Vec<String>, OpError> {
    let env_name = env_segment(env, env_flag)?;
    let parts: Vec<&str> = prefix.trim_end_matches('/').split('/').collect();
    let valid = match parts.as_slice() {
        [tenant] => Segment::parse(tenant).is_ok(),
        [tenant, team] => {
            Segment::parse(tenant).is_ok() && crate::scope::TeamSlot::parse(team).is_ok()
        }
        _ => false,
    };
    if !valid {
        return Err(OpError::Path {
            path: prefix.to_string(),
            reason: "expected TENANT or TENANT/TEAM|_".into(),
        });
    }
    let uri_prefix = format!(
        "{}{env_name}/{}/",
        crate::scope::URI_SCHEME,
        parts.join("/")
    );
    match config::backend_kind(env)? {
        BackendKind::DevStore => Ok(DevStore::new(config::dev_store_path(env)).list(&uri_prefix)?),
        BackendKind::Vault => vault_admin(env)?
            .list(&format!("{env_name}/{}", parts.join("/")))
            .await
            .map_err(OpError::Vault),
    }
}
