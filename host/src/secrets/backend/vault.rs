//! The Vault (or OpenBao) backend: KV-v2 read → transit decrypt of the data key →
//! local AES-256-GCM open, with the worker's own short-lived token.
//!
//! Storage path: `{kv_mount}/data/{kv_prefix}/{env}/{tenant}/{team|_}/{category}/{name}`.
//! A 403 triggers one re-login and one retry (the token may have been revoked).
//! Every fetch asks the session's shared health state first (while Vault is down
//! it fails fast, and only a probe goes through), runs within a deadline (a
//! guest's fetch gets one derived from its bundle's time limit), and records its
//! outcome there.
//! The admin side ([`VaultAdmin`], used by `gtc op secrets`) writes envelopes with
//! an operator token; the worker never writes.

use super::BackendError;
use crate::secrets::envelope::Envelope;
use crate::secrets::envelope::EnvelopeError;
use crate::secrets::scope::{SecretPath, Segment, URI_SCHEME};
use crate::secrets::secret_value::SecretBytes;
use crate::secrets::vault::health::Snapshot;
use crate::secrets::vault::session::Session;
use crate::secrets::vault::{KvEntry, VaultClient, VaultError, VaultToken};
use std::sync::Arc;
use std::time::Duration;

/// The transit key every tenant shared before per-tenant keys (envelope v1 era).
pub const SHARED_TRANSIT_KEY: &str = "greentic";

/// The tenant's own transit key, `greentic-<env>-<tenant>`: what
/// `vault-bootstrap.sh` creates and the tenant's policy alone may use.
pub fn tenant_transit_key(env: &Segment, tenant: &Segment) -> String {
    format!("{SHARED_TRANSIT_KEY}-{env}-{tenant}")
}

/// Where secrets live inside Vault.
#[derive(Debug, Clone)]
pub struct VaultLayout {
    pub kv_mount: String,
    pub kv_prefix: String,
    pub transit_mount: String,
    /// The key that wraps new data keys; `None`: the tenant's own key
    /// ([`tenant_transit_key`]).
    pub transit_key: Option<String>,
    /// A second key accepted while migrating: envelopes it wrapped still open, and
    /// v1 envelopes (which do not name their key) are unwrapped with it.
    pub legacy_transit_key: Option<String>,
}

impl VaultLayout {
    /// The KV-v2 path (below `{mount}/data/`) of a secret.
    pub fn kv_path(&self, path: &SecretPath) -> String {
        format!("{}/{}", self.kv_prefix, path.relative())
    }

    /// The key new envelopes of `path`'s tenant are wrapped with.
    pub fn transit_key_for(&self, path: &SecretPath) -> String {
        self.transit_key
            .clone()
            .unwrap_or_else(|| tenant_transit_key(&path.env, &path.tenant))
    }

    /// The transit key that unwraps `envelope`'s data key, if this configuration
    /// accepts it: the envelope names its key (v2) and the key must be the
    /// tenant's own or the configured legacy key; a v1 envelope is unwrapped with
    /// the legacy key, if one is configured. Anything else is refused before Vault
    /// is asked, so a tampered key name cannot make the worker use another key.
    pub fn unwrap_key(&self, envelope: &Envelope, path: &SecretPath) -> Result<String, String> {
        let own = self.transit_key_for(path);
        match envelope.binding.transit_key() {
            None => self.legacy_transit_key.clone().ok_or_else(|| {
                format!(
                    "a v1 envelope (its data key is wrapped by a shared transit key it does not \
                     name); upgrade it with `gtc op secrets rewrap`, or set \
                     VAULT_TRANSIT_LEGACY_KEY while migrating (this worker's key: {own})"
                )
            }),
            Some(key) if key == own || self.legacy_transit_key.as_deref() == Some(key) => {
                Ok(key.to_string())
            }
            Some(key) => Err(format!(
                "the data key is wrapped by transit key {key:?}, which this worker does not \
                 accept (its key: {own}{})",
                self.legacy_transit_key
                    .as_deref()
                    .map(|legacy| format!(", legacy key: {legacy}"))
                    .unwrap_or_default()
            )),
        }
    }
}

impl Default for VaultLayout {
    fn default() -> Self {
        Self {
            kv_mount: "secret".into(),
            kv_prefix: "greentic".into(),
            transit_mount: "transit".into(),
            transit_key: None,
            legacy_transit_key: None,
        }
    }
}

/// Runs a Vault call with the session's token; on 403, logs in again and retries
/// once (the token may have been revoked or expired early).
macro_rules! with_relogin {
    ($backend:expr, $probe:expr, |$client:ident, $token:ident| $call:expr) => {{
        let session = &$backend.session;
        let $client = session.client();
        let first = session.token_as($probe).await.map_err(FetchError::Login)?;
        let result = {
            let $token = &first;
            $call
        };
        match result {
            Err(error) if error.status() == Some(403) => {
                tracing::info!("Vault answered 403; logging in again and retrying once");
                let fresh = session
                    .relogin_as(&first, $probe)
                    .await
                    .map_err(FetchError::Login)?;
                let $token = &fresh;
                $call.map_err(FetchError::Vault)
            }
            other => other.map_err(FetchError::Vault),
        }
    }};
}

fn backend_error(error: VaultError) -> BackendError {
    BackendError::Unavailable(error.to_string())
}

/// A failed fetch, by what it says about Vault's health.
enum FetchError {
    /// Vault failed a read or decrypt.
    Vault(VaultError),
    /// The login (on the request path, no valid token held) failed.
    Login(VaultError),
    /// Vault answered; the stored entry is unusable.
    Corrupt(BackendError),
}

impl From<VaultError> for FetchError {
    fn from(error: VaultError) -> Self {
        Self::Vault(error)
    }
}

/// The worker's backend.
pub struct VaultBackend {
    session: Arc<Session>,
    layout: VaultLayout,
    /// The transit key of the pod's scope, once known (for `describe`).
    scope_key: Option<String>,
}

impl VaultBackend {
    pub fn new(session: Arc<Session>, layout: VaultLayout) -> Self {
        Self {
            session,
            layout,
            scope_key: None,
        }
    }

    /// Names the pod's (env, tenant), so that [`VaultBackend::describe`] (the log,
    /// `/readyz`) names the transit key this worker actually uses.
    pub fn for_scope(mut self, env: &Segment, tenant: &Segment) -> Self {
        self.scope_key = Some(
            self.layout
                .transit_key
                .clone()
                .unwrap_or_else(|| tenant_transit_key(env, tenant)),
        );
        self
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    pub fn layout(&self) -> &VaultLayout {
        &self.layout
    }

    pub fn describe(&self) -> String {
        let login = self.session.login_config();
        format!(
            "vault at {} (auth/{} role {}, KV {}/data/{}, transit {}/{})",
            self.session.client().addr(),
            login.mount,
            login.role,
            self.layout.kv_mount,
            self.layout.kv_prefix,
            self.layout.transit_mount,
            self.scope_key
                .as_deref()
                .or(self.layout.transit_key.as_deref())
                .unwrap_or("greentic-<env>-<tenant>")
        )
    }

    async fn read_entry(&self, kv_path: &str, probe: bool) -> Result<KvEntry, FetchError> {
        with_relogin!(self, probe, |client, token| client
            .kv2_read(token, &self.layout.kv_mount, kv_path)
            .await)
    }

    async fn unwrap_dek(
        &self,
        key: &str,
        wrapped: &str,
        probe: bool,
    ) -> Result<SecretBytes, FetchError> {
        let layout = &self.layout;
        with_relogin!(self, probe, |client, token| client
            .transit_decrypt(token, &layout.transit_mount, key, wrapped)
            .await)
    }

    /// Reads and opens the secret at `path`, answering within `deadline` whatever
    /// the network does (a silent drop included): past it, the call is abandoned
    /// and counted as a timeout.
    pub async fn fetch(
        &self,
        path: &SecretPath,
        deadline: Duration,
    ) -> Result<Option<SecretBytes>, BackendError> {
        let health = self.session.health();
        let permit = health
            .admit()
            .map_err(|refused| backend_error(refused.into_error(self.session.client().addr())))?;
        let started = std::time::Instant::now();
        let fetch = self.fetch_now(path, permit.is_probe());
        let outcome = match tokio::time::timeout(deadline, fetch).await {
            Ok(outcome) => outcome,
            Err(_) => Err(FetchError::Vault(self.session.client().timed_out())),
        };
        drop(permit);
        match outcome {
            Ok(value) => {
                health.success();
                Ok(value)
            }
            Err(FetchError::Vault(error)) => {
                health.failure(&error, false, started);
                Err(self.explain(error))
            }
            Err(FetchError::Login(error)) => {
                health.failure(&error, true, started);
                Err(backend_error(error))
            }
            Err(FetchError::Corrupt(error)) => {
                // Vault answered: it is up; the entry is the problem.
                health.success();
                Err(error)
            }
        }
    }

    fn explain(&self, error: VaultError) -> BackendError {
        let layout = &self.layout;
        match error.status() {
            Some(403) => BackendError::Unavailable(format!(
                "{error} — the worker's policy must grant read on {}/data/{}/<env>/<tenant>/*",
                layout.kv_mount, layout.kv_prefix
            )),
            _ => backend_error(error),
        }
    }

    async fn fetch_now(
        &self,
        path: &SecretPath,
        probe: bool,
    ) -> Result<Option<SecretBytes>, FetchError> {
        let layout = &self.layout;
        let kv_path = layout.kv_path(path);
        let entry = self.read_entry(&kv_path, probe).await?;
        let Some(data) = entry.data else {
            return Ok(None);
        };
        let uri = path.uri();
        let located = || {
            format!(
                "{uri} (KV {}/data/{kv_path}, version {})",
                layout.kv_mount,
                entry.version.map_or_else(|| "?".into(), |v| v.to_string())
            )
        };
        let refuse = |why: String| {
            let message = format!("{}: {why}", located());
            tracing::error!("refusing a stored secret: {message}");
            FetchError::Corrupt(BackendError::Corrupt(message))
        };
        let envelope = Envelope::from_kv_data(&data).map_err(|e| refuse(e.to_string()))?;
        // A rolled-back copy is refused before Vault is asked to unwrap anything.
        envelope
            .check_version(entry.version)
            .map_err(|e| refuse(e.to_string()))?;
        let key = layout.unwrap_key(&envelope, path).map_err(refuse)?;
        let dek = self
            .unwrap_dek(&key, &envelope.wrapped_dek, probe)
            .await
            .map_err(|error| match error {
                FetchError::Vault(error) if error.status() == Some(400) => {
                    let message = format!(
                        "{}: transit refused to unwrap the data key: {error}",
                        located()
                    );
                    tracing::error!("refusing a stored secret: {message}");
                    FetchError::Corrupt(BackendError::Corrupt(message))
                }
                other => other,
            })?;
        envelope
            .open(&dek, &uri, entry.version)
            .map(Some)
            .map_err(|e| refuse(e.to_string()))
    }

    /// The shared health state, for `/readyz`.
    pub fn health(&self) -> Snapshot {
        self.session.health().snapshot()
    }

    /// Ready, without calling Vault: logged in, and the health state is not down.
    pub fn ready(&self) -> Result<(), BackendError> {
        let health = self.health();
        if health.state == crate::secrets::vault::health::State::Down {
            return Err(BackendError::Unavailable(format!(
                "down for {} s ({}): {}",
                health.for_how_long.as_secs(),
                health.cause.map(|c| c.label()).unwrap_or_default(),
                health.detail
            )));
        }
        if !self.session.logged_in() {
            return Err(BackendError::Unavailable(
                "not logged in to Vault yet (start-up, or the token expired and a new login is pending)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The operator's side: writes envelopes and lists names with an admin token.
pub struct VaultAdmin {
    client: VaultClient,
    token: VaultToken,
    layout: VaultLayout,
}

impl VaultAdmin {
    pub fn new(client: VaultClient, token: VaultToken, layout: VaultLayout) -> Self {
        Self {
            client,
            token,
            layout,
        }
    }

    /// Seals `value` in a fresh v2 envelope (the tenant's transit key) and writes
    /// it with check-and-set; returns the new KV version.
    pub async fn put(&self, path: &SecretPath, value: &[u8]) -> Result<u64, VaultError> {
        self.put_after(path, value, None).await
    }

    /// Writes `value` as the version after `expected` (`None`: after whatever is
    /// current). The envelope must name its KV version before it is written, so the
    /// write is a check-and-set on the version it was sealed after; a concurrent
    /// writer makes it fail, and it is sealed again for the next version (only
    /// when the caller did not pin `expected`).
    async fn put_after(
        &self,
        path: &SecretPath,
        value: &[u8],
        expected: Option<u64>,
    ) -> Result<u64, VaultError> {
        const ATTEMPTS: usize = 3;
        let layout = &self.layout;
        let kv_path = layout.kv_path(path);
        let key = layout.transit_key_for(path);
        let (dek, wrapped) = self
            .client
            .transit_datakey(&self.token, &layout.transit_mount, &key)
            .await
            .map_err(|error| match error {
                VaultError::Status {
                    addr,
                    operation,
                    status: 400,
                    mut errors,
                } => {
                    errors.push(format!(
                        "does transit key {key} exist? vault-bootstrap.sh creates it for \
                         env {} and tenant {}",
                        path.env, path.tenant
                    ));
                    VaultError::Status {
                        addr,
                        operation,
                        status: 400,
                        errors,
                    }
                }
                other => other,
            })?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = match expected {
                Some(version) => version,
                None => {
                    self.client
                        .kv2_current_version(&self.token, &layout.kv_mount, &kv_path)
                        .await?
                }
            };
            let envelope =
                Envelope::seal(value, &dek, wrapped.clone(), &key, &path.uri(), current + 1)
                    .map_err(|e| VaultError::Config(e.to_string()))?;
            match self
                .client
                .kv2_write(
                    &self.token,
                    &layout.kv_mount,
                    &kv_path,
                    &envelope.to_kv_data(),
                    current,
                )
                .await
            {
                Ok(Some(written)) if written == current + 1 => return Ok(written),
                Ok(other) => {
                    return Err(VaultError::Config(format!(
                        "KV wrote {kv_path} as version {other:?}, expected {} — the envelope \
                         names the wrong version; write it again",
                        current + 1
                    )));
                }
                Err(error)
                    if error.status() == Some(400) && expected.is_none() && attempt < ATTEMPTS =>
                {
                    tracing::info!("{kv_path} changed while writing; sealing for the next version");
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Reads the latest entry of `path` and parses its envelope.
    async fn read_envelope(
        &self,
        path: &SecretPath,
    ) -> Result<Option<(Envelope, Option<u64>)>, AdminError> {
        let entry = self
            .client
            .kv2_read(
                &self.token,
                &self.layout.kv_mount,
                &self.layout.kv_path(path),
            )
            .await?;
        let Some(data) = entry.data else {
            return Ok(None);
        };
        Ok(Some((Envelope::from_kv_data(&data)?, entry.version)))
    }

    /// How the latest entry of `path` stands (no decryption): current, or
    /// upgradable by [`VaultAdmin::rewrap`], or unusable.
    pub async fn check(&self, path: &SecretPath) -> Result<EntryState, AdminError> {
        let Some((envelope, version)) = (match self.read_envelope(path).await {
            Err(AdminError::Envelope(error)) => return Ok(EntryState::Unusable(error.to_string())),
            other => other?,
        }) else {
            return Ok(EntryState::Deleted);
        };
        if let Err(error) = envelope.check_version(version) {
            return Ok(EntryState::Unusable(error.to_string()));
        }
        let own = self.layout.transit_key_for(path);
        Ok(match envelope.binding.transit_key() {
            Some(key) if key == own => EntryState::Current { key: own },
            Some(key) => EntryState::Upgradable(format!(
                "v2 wrapped by transit key {key}, not the tenant's {own}"
            )),
            None => {
                EntryState::Upgradable("envelope v1 (no rollback protection, shared key)".into())
            }
        })
    }

    /// Re-seals the latest entry of `path` as a v2 envelope under the tenant's key,
    /// as the next KV version (check-and-set on the version read). The old data key
    /// is unwrapped with the key the envelope names (`legacy_key` for v1), the value
    /// is opened and sealed again inside this process, in zeroizing memory: no
    /// plaintext leaves it. A rolled-back or unopenable entry is refused, not
    /// laundered into a fresh version.
    pub async fn rewrap(&self, path: &SecretPath, legacy_key: &str) -> Result<Rewrap, AdminError> {
        let Some((envelope, version)) = self.read_envelope(path).await? else {
            return Ok(Rewrap::Deleted);
        };
        let own = self.layout.transit_key_for(path);
        if envelope.binding.transit_key() == Some(own.as_str()) {
            envelope.check_version(version)?;
            return Ok(Rewrap::AlreadyCurrent);
        }
        let from = envelope
            .binding
            .transit_key()
            .unwrap_or(legacy_key)
            .to_string();
        let dek = self
            .client
            .transit_decrypt(
                &self.token,
                &self.layout.transit_mount,
                &from,
                &envelope.wrapped_dek,
            )
            .await?;
        let value = envelope.open(&dek, &path.uri(), version)?;
        drop(dek);
        let Some(current) = version else {
            return Err(AdminError::Envelope(EnvelopeError::NoKvVersion));
        };
        let written = self.put_after(path, value.expose(), Some(current)).await?;
        Ok(Rewrap::Rewrapped {
            from_version: envelope.version(),
            from_key: from,
            kv_version: written,
        })
    }

    pub fn layout(&self) -> &VaultLayout {
        &self.layout
    }

    /// Canonical URIs stored below `{env}/{tenant}[/{team}]`, found by walking
    /// KV metadata (names only).
    pub async fn list(&self, below: &str) -> Result<Vec<String>, VaultError> {
        let mut found = Vec::new();
        let mut pending = vec![format!(
            "{}/{}/",
            self.layout.kv_prefix,
            below.trim_end_matches('/')
        )];
        while let Some(folder) = pending.pop() {
            for key in self
                .client
                .kv2_list(&self.token, &self.layout.kv_mount, &folder)
                .await?
            {
                let full = format!("{folder}{key}");
                if key.ends_with('/') {
                    pending.push(full);
                } else if let Some(relative) =
                    full.strip_prefix(&format!("{}/", self.layout.kv_prefix))
                {
                    found.push(format!("{URI_SCHEME}{relative}"));
                }
            }
        }
        found.sort();
        Ok(found)
    }
}

/// Why an admin operation on one entry failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// What `gtc op secrets ls --check` reports for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryState {
    /// Envelope v2 wrapped by the tenant's own key.
    Current { key: String },
    /// Opens today, but `gtc op secrets rewrap` should upgrade it (why).
    Upgradable(String),
    /// Will not open (why).
    Unusable(String),
    /// The latest version is deleted or destroyed.
    Deleted,
}

/// What `gtc op secrets rewrap` did to one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrap {
    AlreadyCurrent,
    Rewrapped {
        from_version: u64,
        from_key: String,
        kv_version: u64,
    },
    Deleted,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(uri: &str) -> SecretPath {
        SecretPath::parse_uri(uri).unwrap()
    }

    fn envelope(key: Option<&str>) -> Envelope {
        let dek = SecretBytes::new(vec![1; 32]);
        let uri = "secrets://dev/acme/_/bot/key";
        match key {
            Some(key) => Envelope::seal(b"v", &dek, "vault:v1:x".into(), key, uri, 1),
            None => Envelope::seal_v1(b"v", &dek, "vault:v1:x".into(), uri),
        }
        .unwrap()
    }

    #[test]
    fn only_the_tenants_own_key_or_the_configured_legacy_key_unwraps() {
        let own = path("secrets://dev/acme/_/bot/key");
        let mut layout = VaultLayout::default();
        assert_eq!(layout.transit_key_for(&own), "greentic-dev-acme");
        assert_eq!(
            layout.unwrap_key(&envelope(Some("greentic-dev-acme")), &own),
            Ok("greentic-dev-acme".to_string())
        );
        // Another tenant's key named in an envelope: refused before Vault is asked.
        let error = layout
            .unwrap_key(&envelope(Some("greentic-dev-globex")), &own)
            .unwrap_err();
        assert!(error.contains("does not accept"), "{error}");
        // v1 names no key: only with a legacy key configured.
        let error = layout.unwrap_key(&envelope(None), &own).unwrap_err();
        assert!(error.contains("gtc op secrets rewrap"), "{error}");
        assert!(
            layout
                .unwrap_key(&envelope(Some("greentic")), &own)
                .is_err()
        );
        layout.legacy_transit_key = Some("greentic".into());
        assert_eq!(
            layout.unwrap_key(&envelope(None), &own),
            Ok("greentic".to_string())
        );
        assert_eq!(
            layout.unwrap_key(&envelope(Some("greentic")), &own),
            Ok("greentic".to_string())
        );
        // An explicit key replaces the tenant default.
        layout.transit_key = Some("custom".into());
        assert_eq!(layout.transit_key_for(&own), "custom");
        assert!(
            layout
                .unwrap_key(&envelope(Some("greentic-dev-acme")), &own)
                .is_err()
        );
    }
}
