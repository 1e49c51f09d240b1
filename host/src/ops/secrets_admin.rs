//! Operator commands: `gtc op secrets put|ls|rewrap`, the admin side of the backends.
//!
//! These run with the operator's credentials (for Vault, an admin `VAULT_TOKEN`),
//! never in a worker. Values come from stdin or a file and are never printed.
//! `ls --check` reports which Vault entries are upgradable (envelope v1, or not
//! wrapped by the tenant's own transit key); `rewrap` upgrades them in place, as
//! new KV versions, without the value ever leaving this process.

use crate::config::{self, BackendKind, ConfigError, Environment};
use crate::secrets::backend::{DevStore, EntryState, Rewrap, VaultAdmin};
use crate::secrets::scope::{NameError, SecretPath, Segment};
use crate::secrets::vault::VaultClient;
use std::fmt::Write as _;
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
    DevStore(#[from] crate::secrets::backend::dev_store::DevStoreError),
    /// Vault could not be asked (a runtime failure, not bad input): worded for an
    /// operator at a terminal, not for a worker pod.
    #[error("{}", operator_words(.0))]
    Vault(crate::secrets::vault::VaultError),
    /// A backend operation that failed at run time (listing, checking, rewrapping).
    #[error("{0}")]
    Backend(String),
    #[error("{0} applies to the vault backend only (the dev store holds no envelopes)")]
    VaultOnly(&'static str),
    #[error("some entries could not be rewrapped (see above)")]
    RewrapIncomplete,
}

impl OpError {
    /// Whether the operator's input or configuration is at fault (exit status 2)
    /// rather than a backend that failed at run time (exit status 1).
    pub fn is_configuration(&self) -> bool {
        match self {
            Self::Vault(error) => matches!(error, crate::secrets::vault::VaultError::Config(_)),
            Self::Backend(_) | Self::RewrapIncomplete => false,
            _ => true,
        }
    }
}

/// A Vault error as an operator running `gtc op` needs it: the worker-side hints
/// (NetworkPolicies admitting worker pods) do not apply to a laptop.
fn operator_words(error: &crate::secrets::vault::VaultError) -> String {
    use crate::secrets::vault::VaultError;
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

/// An admin-side failure: a Vault error keeps its operator wording (and its
/// exit status); anything else (a malformed envelope) is a runtime failure.
fn admin_error(error: crate::secrets::backend::vault::AdminError) -> OpError {
    match error {
        crate::secrets::backend::vault::AdminError::Vault(error) => OpError::Vault(error),
        other => OpError::Backend(other.to_string()),
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
    let stored = match config::backend_kind(env)? {
        BackendKind::DevStore => {
            let store = DevStore::new(config::dev_store_path(env));
            store.put(&secret, &value)?;
            format!(
                "stored {} in dev store {}",
                secret.uri(),
                store.path().display()
            )
        }
        BackendKind::Vault => {
            let admin = vault_admin(env)?;
            let version = admin.put(&secret, &value).await.map_err(OpError::Vault)?;
            format!(
                "stored {} in Vault as an envelope (KV version {version})",
                secret.uri()
            )
        }
    };
    Ok(match short_value_warning(value.len()) {
        Some(warning) => format!("{stored}\n{warning}"),
        None => stored,
    })
}

/// Below this many bytes a value is too short to be sealed: scrubbing and
/// `verify-hmac-sha256` are equality oracles a guest can try guesses against.
pub const MIN_SEALED_VALUE_BYTES: usize = 16;

/// The warning `put` prints for a value too short to be sealed (its length only).
fn short_value_warning(len: usize) -> Option<String> {
    (len < MIN_SEALED_VALUE_BYTES).then(|| {
        format!(
            "warning: the value is {len} bytes: if a bundle seals this secret, use a \
             high-entropy value of at least {MIN_SEALED_VALUE_BYTES} random bytes (a sealed \
             value can be confirmed by guessing: scrubbing and signature checks answer \
             whether a guess is it)"
        )
    })
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
    list_in(env, &env_name, prefix).await
}

/// The Vault entries below `prefix`, parsed back into paths.
async fn vault_entries(
    env: &dyn Environment,
    prefix: &str,
    env_flag: Option<&str>,
    command: &'static str,
) -> Result<(VaultAdmin, Vec<SecretPath>), OpError> {
    let env_name = env_segment(env, env_flag)?;
    if config::backend_kind(env)? != BackendKind::Vault {
        return Err(OpError::VaultOnly(command));
    }
    let admin = vault_admin(env)?;
    let mut paths = Vec::new();
    for uri in list_in(env, &env_name, prefix).await? {
        paths.push(SecretPath::parse_uri(&uri).map_err(|e| OpError::Path {
            path: uri.clone(),
            reason: e.to_string(),
        })?);
    }
    Ok((admin, paths))
}

/// `gtc op secrets ls --check`: one line per entry, `URI<TAB>state`, where the
/// state is `current (v2, KEY)`, `upgradable: WHY — run gtc op secrets rewrap`,
/// `UNUSABLE: WHY` or `deleted`. Nothing is decrypted.
pub async fn check(
    env: &dyn Environment,
    prefix: &str,
    env_flag: Option<&str>,
) -> Result<Vec<String>, OpError> {
    let (admin, paths) = vault_entries(env, prefix, env_flag, "ls --check").await?;
    let mut lines = Vec::new();
    for path in paths {
        let state = match admin.check(&path).await {
            Ok(EntryState::Current { key }) => format!("current (envelope v2, transit key {key})"),
            Ok(EntryState::Upgradable(why)) => {
                format!("upgradable: {why} — run `gtc op secrets rewrap`")
            }
            Ok(EntryState::Unusable(why)) => format!("UNUSABLE: {why}"),
            Ok(EntryState::Deleted) => "deleted".to_string(),
            Err(error) => return Err(admin_error(error)),
        };
        lines.push(format!("{}\t{state}", path.uri()));
    }
    Ok(lines)
}

/// `gtc op secrets rewrap`: upgrades every entry below `prefix` to an envelope v2
/// under the tenant's transit key. v1 envelopes name no key: `legacy_key` (the
/// shared `greentic` key unless told) unwraps them. Returns one line per entry and
/// whether all succeeded; an entry that fails is reported and the rest go on.
pub async fn rewrap(
    env: &dyn Environment,
    prefix: &str,
    env_flag: Option<&str>,
    legacy_key: Option<&str>,
) -> Result<(String, bool), OpError> {
    let legacy_key = match legacy_key {
        Some(key) if crate::secrets::envelope::valid_key_name(key) => key.to_string(),
        Some(key) => {
            return Err(OpError::Path {
                path: key.to_string(),
                reason: "--from-key: not a transit key name".into(),
            });
        }
        None => crate::secrets::backend::SHARED_TRANSIT_KEY.to_string(),
    };
    let (admin, paths) = vault_entries(env, prefix, env_flag, "rewrap").await?;
    let mut report = String::new();
    let mut all_ok = true;
    for path in paths {
        let outcome = match admin.rewrap(&path, &legacy_key).await {
            Ok(Rewrap::AlreadyCurrent) => "already current".to_string(),
            Ok(Rewrap::Deleted) => "deleted, skipped".to_string(),
            Ok(Rewrap::Rewrapped {
                from_version,
                from_key,
                kv_version,
            }) => format!(
                "rewrapped: envelope v{from_version} (transit key {from_key}) -> v2 (transit key {}), KV version {kv_version}",
                admin.layout().transit_key_for(&path)
            ),
            Err(error) => {
                all_ok = false;
                format!("FAILED: {error}")
            }
        };
        let _ = writeln!(report, "{}: {outcome}", path.uri());
    }
    Ok((report, all_ok))
}

async fn list_in(
    env: &dyn Environment,
    env_name: &Segment,
    prefix: &str,
) -> Result<Vec<String>, OpError> {
    let parts: Vec<&str> = prefix.trim_end_matches('/').split('/').collect();
    let valid = match parts.as_slice() {
        [tenant] => Segment::parse(tenant).is_ok(),
        [tenant, team] => {
            Segment::parse(tenant).is_ok() && crate::secrets::scope::TeamSlot::parse(team).is_ok()
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
        crate::secrets::scope::URI_SCHEME,
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

/// `gtc op secrets put` as a command: says where the value went, on stderr (stdout
/// stays free for scripts).
pub async fn put_command(
    env: &dyn Environment,
    path: &str,
    env_flag: Option<&str>,
    from_file: Option<&Path>,
) -> Result<(), OpError> {
    eprintln!("{}", put(env, path, env_flag, from_file).await?);
    Ok(())
}

/// `gtc op secrets ls [--check]` as a command: one line per entry, for the
/// caller to write to stdout.
pub async fn ls_command(
    env: &dyn Environment,
    prefix: &str,
    env_flag: Option<&str>,
    with_check: bool,
) -> Result<String, OpError> {
    let lines = if with_check {
        check(env, prefix, env_flag).await?
    } else {
        list(env, prefix, env_flag).await?
    };
    Ok(lines.into_iter().map(|line| format!("{line}\n")).collect())
}

/// `gtc op secrets rewrap` as a command: the report on stdout; fails (exit 1)
/// when any entry could not be rewrapped.
pub async fn rewrap_command(
    env: &dyn Environment,
    prefix: &str,
    env_flag: Option<&str>,
    from_key: &str,
) -> Result<(String, Result<(), OpError>), OpError> {
    let (report, all_ok) = rewrap(env, prefix, env_flag, Some(from_key)).await?;
    let outcome = if all_ok {
        Ok(())
    } else {
        Err(OpError::RewrapIncomplete)
    };
    Ok((report, outcome))
}
