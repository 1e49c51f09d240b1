//! Secrets backends: where values actually live.
//!
//! A backend answers one question — "what is stored at this exact path?" — and
//! knows nothing of names, scopes or caching (see `scope` and `cache`). The set of
//! backends is closed and chosen by the pod's `GREENTIC_SECRETS_BACKEND`, so it is
//! an enum rather than a trait object: no boxing on the request path.

pub mod budget;
pub mod dev_store;
pub mod vault;

use crate::secrets::scope::SecretPath;
use crate::secrets::secret_value::SecretBytes;
use crate::secrets::vault::health::Snapshot;
use std::time::Duration;

pub use dev_store::DevStore;
pub use vault::{
    AdminError, EntryState, Rewrap, SHARED_TRANSIT_KEY, VaultAdmin, VaultBackend, VaultLayout,
    tenant_transit_key,
};

/// Why a backend could not answer. Messages are for the operator's log: they may
/// name a file or a Vault address, never a value, token or key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// Cannot be reached or cannot answer right now; a retry may work. Stale cached
    /// values may be served for a bounded time; the guest sees `unavailable`.
    #[error("secrets backend unavailable: {0}")]
    Unavailable(String),
    /// The stored entry exists but is unusable (not an envelope, fails to decrypt).
    /// The guest sees `internal`.
    #[error("stored secret is unusable: {0}")]
    Corrupt(String),
}

/// The backend selected for this process.
pub enum SecretsBackend {
    DevStore(DevStore),
    Vault(VaultBackend),
}

impl SecretsBackend {
    /// The value stored at `path`, or `None` if nothing is stored there; an
    /// answer (possibly `Unavailable`) comes within `deadline`.
    pub async fn fetch(
        &self,
        path: &SecretPath,
        deadline: Duration,
    ) -> Result<Option<SecretBytes>, BackendError> {
        match self {
            // A local file: no network to wait for.
            Self::DevStore(store) => store.fetch(path).await,
            Self::Vault(vault) => vault.fetch(path, deadline).await,
        }
    }

    /// The shared health state of a remote backend (`None` for the dev store).
    pub fn health(&self) -> Option<Snapshot> {
        match self {
            Self::DevStore(_) => None,
            Self::Vault(vault) => Some(vault.health()),
        }
    }

    /// A short description for logs and `/readyz` (no credentials).
    pub fn describe(&self) -> String {
        match self {
            Self::DevStore(store) => format!("dev-store at {}", store.path().display()),
            Self::Vault(vault) => vault.describe(),
        }
    }

    /// Whether the backend is ready to answer, from what is known (Vault: logged
    /// in and not down; no call to Vault is made here, so this answers at once).
    pub async fn ready(&self) -> Result<(), BackendError> {
        match self {
            Self::DevStore(store) => store.ready().await,
            Self::Vault(vault) => vault.ready(),
        }
    }
}
