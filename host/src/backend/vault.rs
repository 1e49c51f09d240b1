//! The Vault (or OpenBao) backend: KV-v2 read → transit decrypt of the data key →
//! local AES-256-GCM open, with the worker's own short-lived token.
//!
//! Storage path: `{kv_mount}/data/{kv_prefix}/{env}/{tenant}/{team|_}/{category}/{name}`.
//! A 403 triggers one re-login and one retry (the token may have been revoked).
//! The admin side ([`VaultAdmin`], used by `gtc op secrets`) writes envelopes with
//! an operator token; the worker never writes.

use super::BackendError;
use crate::envelope::Envelope;
use crate::scope::{SecretPath, URI_SCHEME};
use crate::secret_value::SecretBytes;
use crate::vault::session::Session;
use crate::vault::{KvEntry, VaultClient, VaultError, VaultToken};
use std::sync::Arc;

/// Where secrets live inside Vault.
#[derive(Debug, Clone)]
pub struct VaultLayout {
    pub kv_mount: String,
    pub kv_prefix: String,
    pub transit_mount: String,
    pub transit_key: String,
}

impl VaultLayout {
    /// The KV-v2 path (below `{mount}/data/`) of a secret.
    pub fn kv_path(&self, path: &SecretPath) -> String {
        format!("{}/{}", self.kv_prefix, path.relative())
    }
}

impl Default for VaultLayout {
    fn default() -> Self {
        Self {
            kv_mount: "secret".into(),
            kv_prefix: "greentic".into(),
            transit_mount: "transit".into(),
            transit_key: "greentic".into(),
        }
    }
}

/// Runs a Vault call with the session's token; on 403, logs in again and retries
/// once (the token may have been revoked or expired early).
macro_rules! with_relogin {
    ($backend:expr, |$client:ident, $token:ident| $call:expr) => {{
        let session = &$backend.session;
        let $client = session.client();
        let first = session.token().await?;
        let result = {
            let $token = &first;
            $call
        };
        match result {
            Err(error) if error.status() == Some(403) => {
                tracing::info!("Vault answered 403; logging in again and retrying once");
                let fresh = session.relogin(&first).await?;
                let $token = &fresh;
                $call
            }
            other => other,
        }
    }};
}

fn backend_error(error: VaultError) -> BackendError {
    BackendError::Unavailable(error.to_string())
}

/// The worker's backend.
pub struct VaultBackend {
    session: Arc<Session>,
    layout: VaultLayout,
}

impl VaultBackend {
    pub fn new(session: Arc<Session>, layout: VaultLayout) -> Self {
        Self { session, layout }
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
            self.layout.transit_key
        )
    }

    async fn read_entry(&self, kv_path: &str) -> Result<KvEntry, VaultError> {
        with_relogin!(self, |client, token| client
            .kv2_read(token, &self.layout.kv_mount, kv_path)
            .await)
    }

    async fn unwrap_dek(&self, wrapped: &str) -> Result<SecretBytes, VaultError> {
        let layout = &self.layout;
        with_relogin!(self, |client, token| client
            .transit_decrypt(token, &layout.transit_mount, &layout.transit_key, wrapped)
            .await)
    }

    pub async fn fetch(&self, path: &SecretPath) -> Result<Option<SecretBytes>, BackendError> {
        let layout = &self.layout;
        let kv_path = layout.kv_path(path);
        let entry = self
            .read_entry(&kv_path)
            .await
            .map_err(|error| match error.status() {
                Some(403) => BackendError::Unavailable(format!(
                    "{error} — the worker's policy must grant read on {}/data/{}/<env>/<tenant>/*",
                    layout.kv_mount, layout.kv_prefix
                )),
                _ => backend_error(error),
            })?;
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
        let envelope = Envelope::from_kv_data(&data).map_err(|error| {
            let message = format!("{}: {error}", located());
            tracing::error!("refusing a stored secret: {message}");
            BackendError::Corrupt(message)
        })?;
        let dek = self
            .unwrap_dek(&envelope.wrapped_dek)
            .await
            .map_err(|error| match error.status() {
                Some(400) => {
                    let message = format!(
                        "{}: transit refused to unwrap the data key: {error}",
                        located()
                    );
                    tracing::error!("refusing a stored secret: {message}");
                    BackendError::Corrupt(message)
                }
                _ => backend_error(error),
            })?;
        envelope.open(&dek, &uri).map(Some).map_err(|error| {
            let message = format!("{}: {error}", located());
            tracing::error!("refusing a stored secret: {message}");
            BackendError::Corrupt(message)
        })
    }

    /// Ready when logged in (logging in now if needed).
    pub async fn ready(&self) -> Result<(), BackendError> {
        self.session.token().await.map(drop).map_err(backend_error)
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

    /// Seals `value` in a fresh envelope and writes it; returns the KV version.
    pub async fn put(&self, path: &SecretPath, value: &[u8]) -> Result<Option<u64>, VaultError> {
        let layout = &self.layout;
        let (dek, wrapped) = self
            .client
            .transit_datakey(&self.token, &layout.transit_mount, &layout.transit_key)
            .await?;
        let envelope = Envelope::seal(value, &dek, wrapped, &path.uri())
            .map_err(|e| VaultError::Config(e.to_string()))?;
        self.client
            .kv2_write(
                &self.token,
                &layout.kv_mount,
                &layout.kv_path(path),
                &envelope.to_kv_data(),
            )
            .await
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
