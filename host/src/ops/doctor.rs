//! `gtc doctor`: checks, in order, everything a worker needs to reach its secrets,
//! and says for each step what passed or what to check next.
//!
//! Vault backend: configuration → DNS → TCP → TLS / Vault health → Kubernetes login
//! with the token file → KV read of each declared secret → transit decrypt and
//! envelope open. Dev store: configuration → file → declared secrets. The first
//! failure stops the run (later steps are reported as skipped): each step only
//! makes sense once the previous one works.

use crate::bundle::manifest::{BundleSpec, Manifest};
use crate::config::{self, BackendKind, Environment};
use crate::secrets::backend::{DevStore, VaultLayout};
use crate::secrets::envelope::Envelope;
use crate::secrets::scope::{Scope, SecretPath};
use crate::secrets::vault::session::LoginConfig;
use crate::secrets::vault::{VaultClient, VaultError, VaultToken};
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

/// One step's result.
#[derive(Debug, Clone)]
pub struct Check {
    pub step: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        };
        write!(f, "[{tag}] {:<9} {}", self.step, self.detail)
    }
}

/// The report of one run.
#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

/// One line per check: Vault's multi-line errors ("1 error occurred:\n\t* …")
/// are folded, every run of whitespace becoming one space.
fn one_line(detail: String) -> String {
    if !detail.contains(['\n', '\r', '\t']) {
        return detail;
    }
    detail.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Report {
    fn pass(&mut self, step: &'static str, detail: impl Into<String>) {
        self.checks.push(Check {
            step,
            verdict: Verdict::Pass,
            detail: one_line(detail.into()),
        });
    }

    /// Records a failure and the steps that will not run after it.
    fn fail(&mut self, step: &'static str, detail: impl Into<String>, skipped: &[&'static str]) {
        self.checks.push(Check {
            step,
            verdict: Verdict::Fail,
            detail: one_line(detail.into()),
        });
        for step in skipped {
            self.checks.push(Check {
                step,
                verdict: Verdict::Skip,
                detail: "not checked: fix the failure above first".into(),
            });
        }
    }

    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.verdict == Verdict::Pass)
    }

    /// Whether the pod's own configuration failed (exit status 2), rather than a
    /// check of the path to the secrets (exit status 1).
    pub fn configuration_failed(&self) -> bool {
        self.checks
            .iter()
            .find(|c| c.verdict == Verdict::Fail)
            .is_some_and(|c| c.step == "config")
    }
}

const VAULT_STEPS: [&str; 7] = ["config", "dns", "tcp", "vault", "login", "read", "decrypt"];

fn after(step: &str) -> Vec<&'static str> {
    VAULT_STEPS
        .iter()
        .skip_while(|s| **s != step)
        .skip(1)
        .copied()
        .collect()
}

/// Declared secrets of the given bundles, resolved in their scopes.
fn declared(
    env: &dyn Environment,
    bundles: &[BundleSpec],
) -> Result<Vec<(String, Vec<SecretPath>)>, String> {
    let (pod_env, tenant) = config::env_and_tenant(env).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for spec in bundles {
        let manifest = Manifest::load(&spec.dir).map_err(|e| e.to_string())?;
        let scope = Scope {
            env: pod_env.clone(),
            tenant: tenant.clone(),
            team: spec.team.clone(),
        };
        for name in manifest.declared_names() {
            let paths = scope
                .resolve(&manifest.id, name)
                .map_err(|e| format!("bundle {}: declared secret {name:?}: {e}", manifest.id))?;
            out.push((format!("{}:{name}", manifest.id), paths));
        }
    }
    Ok(out)
}

/// `gtc doctor` found a problem (already printed step by step).
#[derive(Debug, thiserror::Error)]
pub enum DoctorFailed {
    /// The pod's own configuration is wrong (exit status 2).
    #[error("doctor found a configuration error; see the FAIL line above")]
    Configuration,
    /// A check of the path to the secrets failed (exit status 1).
    #[error("doctor found a problem; see the FAIL line above")]
    Check,
}

/// `gtc doctor` as a command: the report (each step on its own line, then the
/// verdict) for the caller to write to stdout, and the outcome.
pub async fn command(
    env: &dyn Environment,
    bundles: &[BundleSpec],
) -> (String, Result<(), DoctorFailed>) {
    use std::fmt::Write as _;
    let report = run(env, bundles).await;
    let mut text = String::new();
    for check in &report.checks {
        let _ = writeln!(text, "{check}");
    }
    let outcome = if report.healthy() {
        text.push_str("all checks passed\n");
        Ok(())
    } else if report.configuration_failed() {
        Err(DoctorFailed::Configuration)
    } else {
        Err(DoctorFailed::Check)
    };
    (text, outcome)
}

/// Runs every check for the configured backend.
pub async fn run(env: &dyn Environment, bundles: &[BundleSpec]) -> Report {
    let mut report = Report::default();
    let kind = match config::backend_kind(env) {
        Ok(kind) => kind,
        Err(error) => {
            report.fail("config", error.to_string(), &after("config"));
            return report;
        }
    };
    let secrets = match declared(env, bundles) {
        Ok(secrets) => secrets,
        Err(error) => {
            report.fail("config", error, &after("config"));
            return report;
        }
    };
    match kind {
        BackendKind::DevStore => dev_store(env, &secrets, &mut report).await,
        BackendKind::Vault => vault(env, &secrets, &mut report).await,
    }
    report
}

async fn dev_store(
    env: &dyn Environment,
    secrets: &[(String, Vec<SecretPath>)],
    report: &mut Report,
) {
    let store = DevStore::new(config::dev_store_path(env));
    report.pass(
        "config",
        format!("backend dev-store, file {}", store.path().display()),
    );
    if let Err(error) = store.ready().await {
        report.fail("file", error.to_string(), &["read"]);
        return;
    }
    report.pass("file", "the dev store is readable");
    for (label, paths) in secrets {
        let mut found = false;
        for path in paths {
            match store.fetch(path).await {
                Ok(Some(_)) => {
                    report.pass("read", format!("{label} resolves to {}", path.uri()));
                    found = true;
                    break;
                }
                Ok(None) => {}
                Err(error) => {
                    report.fail("read", format!("{label}: {error}"), &[]);
                    return;
                }
            }
        }
        if !found {
            report.fail(
                "read",
                format!(
                    "{label}: not found at {} — seed it with `gtc op secrets put`",
                    uris(paths)
                ),
                &[],
            );
        }
    }
}

fn uris(paths: &[SecretPath]) -> String {
    paths
        .iter()
        .map(SecretPath::uri)
        .collect::<Vec<_>>()
        .join(" or ")
}

async fn vault(env: &dyn Environment, secrets: &[(String, Vec<SecretPath>)], report: &mut Report) {
    let settings = match config::vault_worker_settings(env) {
        Ok(settings) => settings,
        Err(error) => {
            report.fail("config", error.to_string(), &after("config"));
            return;
        }
    };
    let addr = settings.client.addr.clone();
    let Ok(url) = reqwest::Url::parse(&addr) else {
        report.fail(
            "config",
            format!("VAULT_ADDR={addr:?} is not a URL"),
            &after("config"),
        );
        return;
    };
    // The rendered policies are named per scope (`deploy::names`).
    let scope = format!(
        "{}-{}",
        env.var("GREENTIC_ENV").unwrap_or_else(|| "ENV".into()),
        env.var("GREENTIC_TENANT")
            .unwrap_or_else(|| "TENANT".into())
    );
    report.pass(
        "config",
        format!("backend vault at {addr}, role {}", settings.login.role),
    );
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = url.port_or_known_default().unwrap_or(8200);

    // DNS.
    let addresses = match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(found)) => found.collect::<Vec<_>>(),
        Ok(Err(error)) => {
            report.fail("dns", format!("cannot resolve {host}: {error} — check VAULT_ADDR and the pod's DNS egress (NetworkPolicy allow-dns-egress-{scope})"), &after("dns"));
            return;
        }
        Err(_) => {
            report.fail("dns", format!("resolving {host} timed out — check the pod's DNS egress (NetworkPolicy allow-dns-egress-{scope})"), &after("dns"));
            return;
        }
    };
    let Some(first) = addresses.first().copied() else {
        report.fail(
            "dns",
            format!("{host} resolves to no address"),
            &after("dns"),
        );
        return;
    };
    report.pass("dns", format!("{host} resolves to {first}"));

    // TCP.
    match tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(first),
    )
    .await
    {
        Ok(Ok(_)) => report.pass("tcp", format!("connected to {first}")),
        Ok(Err(error)) => {
            report.fail("tcp", format!("cannot connect to {first}: {error} — is Vault running at {addr}? does a NetworkPolicy admit worker pods to it?"), &after("tcp"));
            return;
        }
        Err(_) => {
            report.fail("tcp", format!("connect to {first} timed out — check the NetworkPolicy that admits worker pods to Vault (allow-worker-egress-to-vault-{scope}, and Vault's own ingress policy)"), &after("tcp"));
            return;
        }
    }

    // TLS and Vault's own health.
    let client = match VaultClient::new(&settings.client) {
        Ok(client) => client,
        Err(error) => {
            report.fail("vault", error.to_string(), &after("vault"));
            return;
        }
    };
    match client.health().await {
        Ok(()) => report.pass(
            "vault",
            format!(
                "{} answers and is unsealed",
                if url.scheme() == "https" {
                    "TLS handshake ok; Vault"
                } else {
                    "Vault (plain HTTP)"
                }
            ),
        ),
        Err(error) => {
            report.fail(
                "vault",
                health_failure(&error, first, &settings.client),
                &after("vault"),
            );
            return;
        }
    }

    // Login with the token file.
    let token = match login(&client, &settings.login).await {
        Ok(token) => {
            report.pass(
                "login",
                format!(
                    "logged in with {} as role {}",
                    settings.login.token_path.display(),
                    settings.login.role
                ),
            );
            token
        }
        Err(error) => {
            report.fail("login", login_failure(&error, &settings), &after("login"));
            return;
        }
    };

    // Read each declared secret, then decrypt it.
    if secrets.is_empty() {
        report.pass(
            "read",
            "no declared secrets to read (pass --bundle DIR=TEAM to check a bundle's)",
        );
        report.pass("decrypt", "nothing to decrypt");
        return;
    }
    let mut opened = Vec::new();
    for (label, paths) in secrets {
        match read_first(&client, &token, &settings.layout, paths).await {
            Ok(Some((path, envelope, version))) => {
                report.pass("read", format!("{label}: {} is an envelope", path.uri()));
                opened.push((label, path, envelope, version));
            }
            Ok(None) => {
                report.fail(
                    "read",
                    format!(
                        "{label}: not found at {} — seed it with `gtc op secrets put`",
                        uris(paths)
                    ),
                    &["decrypt"],
                );
                return;
            }
            Err(message) => {
                report.fail("read", format!("{label}: {message}"), &["decrypt"]);
                return;
            }
        }
    }
    for (label, path, envelope, version) in opened {
        let layout = &settings.layout;
        let key = match envelope
            .check_version(version)
            .map_err(|e| e.to_string())
            .and_then(|()| layout.unwrap_key(&envelope, &path))
        {
            Ok(key) => key,
            Err(why) => {
                report.fail("decrypt", format!("{label}: {why}"), &[]);
                continue;
            }
        };
        match client
            .transit_decrypt(&token, &layout.transit_mount, &key, &envelope.wrapped_dek)
            .await
        {
            Ok(dek) => match envelope.open(&dek, &path.uri(), version) {
                Ok(_) => report.pass(
                    "decrypt",
                    format!(
                        "{label}: data key unwrapped by {}/decrypt/{key} and value opened",
                        layout.transit_mount
                    ),
                ),
                Err(error) => report.fail("decrypt", format!("{label}: {error}"), &[]),
            },
            Err(error) => report.fail(
                "decrypt",
                format!(
                    "{label}: {error} — the policy must grant update on {}/decrypt/{key}",
                    layout.transit_mount
                ),
                &[],
            ),
        }
    }
}

async fn login(client: &VaultClient, login: &LoginConfig) -> Result<VaultToken, VaultError> {
    let jwt = tokio::fs::read_to_string(&login.token_path)
        .await
        .map_err(|e| VaultError::TokenFile {
            path: login.token_path.display().to_string(),
            reason: e.to_string(),
        })?;
    let jwt = zeroize::Zeroizing::new(jwt);
    client
        .login_kubernetes(&login.mount, &login.role, jwt.trim())
        .await
        .map(|auth| auth.token)
        .map_err(|error| match error {
            VaultError::Status { addr, operation, status, mut errors } if status == 400 || status == 403 => {
                errors.push(format!(
                    "check that the token file holds a token of the ServiceAccount the role binds (gtc-worker-<env>-<tenant> by default) with audience vault, and that auth/{}/role/{} binds it; \
                     with Vault outside the cluster, also that Vault's TokenReview calls are accepted by the API server: auth/{}/config needs the reviewer's token_reviewer_jwt \
                     (vault-bootstrap.sh TOKEN_REVIEWER_JWT_FILE, a token of gtc-vault-reviewer-<env>-<tenant>, whose ClusterRoleBinding to system:auth-delegator the render emits) — \
                     without one Vault sends the worker's own token, which the API server refuses",
                    login.mount, login.role, login.mount
                ));
                VaultError::Status { addr, operation, status, errors }
            }
            other => other,
        })
}

async fn read_first(
    client: &VaultClient,
    token: &VaultToken,
    layout: &VaultLayout,
    paths: &[SecretPath],
) -> Result<Option<(SecretPath, Envelope, Option<u64>)>, String> {
    for path in paths {
        let entry = client
            .kv2_read(token, &layout.kv_mount, &layout.kv_path(path))
            .await
            .map_err(|error| match error.status() {
                Some(403) => format!(
                    "{error} — the worker may read only {mount}/data/{prefix}/<env>/<tenant>/*: \
                     check that VAULT_KV_MOUNT ({mount}) and VAULT_KV_PREFIX ({prefix}) are what \
                     vault-bootstrap.sh and `gtc op secrets put` used (defaults secret and greentic), \
                     then that the role's policy grants read there",
                    mount = layout.kv_mount,
                    prefix = layout.kv_prefix
                ),
                _ => error.to_string(),
            })?;
        if let Some(data) = entry.data {
            let envelope =
                Envelope::from_kv_data(&data).map_err(|e| format!("{}: {e}", path.uri()))?;
            return Ok(Some((path.clone(), envelope, entry.version)));
        }
    }
    Ok(None)
}

/// The health step's failure, told apart by what already worked: the TCP step
/// connected, so a timeout here is Vault not answering, not a NetworkPolicy.
fn health_failure(
    error: &VaultError,
    connected: std::net::SocketAddr,
    client: &crate::secrets::vault::ClientConfig,
) -> String {
    match error {
        VaultError::Sealed { addr } => format!(
            "Vault at {addr} is sealed — unseal it (`vault operator unseal`) or check its auto-unseal; \
             until then no secret can be read"
        ),
        VaultError::Unreachable { addr, cause, .. } if *cause == TIMEOUT_AFTER_CONNECT => format!(
            "connected to {connected} but Vault at {addr} did not answer within {:?} \
             (GREENTIC_VAULT_TIMEOUT) — the network path is open (a NetworkPolicy would block the \
             connect instead): Vault is overloaded, frozen or stuck; check its logs and load",
            client.timeout
        ),
        VaultError::Status {
            addr, status: 501, ..
        } => format!(
            "Vault at {addr} is not initialized — run `vault operator init` (then unseal it)"
        ),
        other => other.to_string(),
    }
}

/// What `VaultClient` reports when a request was sent but no answer came in time.
const TIMEOUT_AFTER_CONNECT: &str = "request timeout";

/// The login step's failure. Vault answered its health check, so a login that
/// times out is Vault waiting on its own call to the Kubernetes TokenReview API.
fn login_failure(error: &VaultError, settings: &config::VaultSettings) -> String {
    match error {
        VaultError::Unreachable { addr, cause, .. } if *cause == TIMEOUT_AFTER_CONNECT => format!(
            "login timed out: Vault at {addr} answers its health check but did not finish the \
             Kubernetes login (auth/{}/login, role {}) within {:?} — Vault is most likely waiting \
             for the Kubernetes API (TokenReview): check kubernetes_host in auth/{}/config, \
             Vault's egress to the API server, and for a Vault outside the cluster \
             K8S_DISABLE_LOCAL_CA_JWT=true and TOKEN_REVIEWER_JWT_FILE in vault-bootstrap.sh",
            settings.login.mount,
            settings.login.role,
            settings.client.timeout,
            settings.login.mount
        ),
        other => other.to_string(),
    }
}
