//! The development store: one local JSON file, for a developer machine.
//!
//! It keeps the same scoping as Vault (entries are keyed by canonical `secrets://`
//! URI) but no encryption: it is not for production, and a worker pod refuses to
//! default to it. Format (version 1):
//!
//! ```json
//! { "format": "greentic-dev-store", "version": 1,
//!   "secrets": { "secrets://dev/acme/_/webchat-bot/webhook-secret": { "value_b64": "..." } } }
//! ```
//!
//! The file is written with mode 0600, atomically (temporary file + rename), so a
//! reader never sees half a file.

use super::BackendError;
use crate::secrets::scope::SecretPath;
use crate::secrets::secret_value::SecretBytes;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Default location, relative to the working directory.
pub const DEFAULT_PATH: &str = ".greentic/dev-store.json";
const FORMAT: &str = "greentic-dev-store";
const VERSION: u32 = 1;

/// Errors of the admin side (`gtc op secrets`) on the dev store.
#[derive(Debug, thiserror::Error)]
pub enum DevStoreError {
    #[error("cannot read dev store {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("dev store {path} is not a valid version-1 dev store: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot write dev store {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize, Default)]
struct StoreFile {
    format: String,
    version: u32,
    secrets: BTreeMap<String, StoredEntry>,
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    value_b64: String,
}

impl Drop for StoredEntry {
    /// The base64 text is the value in another spelling: wipe it too.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value_b64);
    }
}

/// A dev store file.
#[derive(Debug, Clone)]
pub struct DevStore {
    path: PathBuf,
}

impl DevStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the value at `path`. A missing file is "unavailable" (the developer has
    /// not seeded anything yet, and the log says how to); a missing entry is `None`.
    pub async fn fetch(&self, path: &SecretPath) -> Result<Option<SecretBytes>, BackendError> {
        let file = self.load_for_runtime().await?;
        let Some(entry) = file.secrets.get(&path.uri()) else {
            return Ok(None);
        };
        let bytes = Zeroizing::new(STANDARD.decode(&entry.value_b64).map_err(|_| {
            BackendError::Corrupt(format!(
                "dev store {}: entry {} is not valid base64",
                self.path.display(),
                path.uri()
            ))
        })?);
        Ok(Some(SecretBytes::from(bytes)))
    }

    pub async fn ready(&self) -> Result<(), BackendError> {
        self.load_for_runtime().await.map(drop)
    }

    async fn load_for_runtime(&self) -> Result<StoreFile, BackendError> {
        let raw = match tokio::fs::read(&self.path).await {
            Ok(raw) => Zeroizing::new(raw),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackendError::Unavailable(format!(
                    "dev store {} does not exist; seed it with `gtc op secrets put`",
                    self.path.display()
                )));
            }
            Err(e) => {
                return Err(BackendError::Unavailable(format!(
                    "cannot read dev store {}: {e}",
                    self.path.display()
                )));
            }
        };
        parse(&raw).map_err(|reason| {
            BackendError::Corrupt(format!("dev store {}: {reason}", self.path.display()))
        })
    }

    fn load_for_admin(&self) -> Result<StoreFile, DevStoreError> {
        match std::fs::read(&self.path) {
            Ok(raw) => parse(&Zeroizing::new(raw)).map_err(|reason| DevStoreError::Invalid {
                path: self.path.clone(),
                reason,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoreFile {
                format: FORMAT.to_string(),
                version: VERSION,
                secrets: BTreeMap::new(),
            }),
            Err(source) => Err(DevStoreError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Stores `value` at `path`, creating the file if needed.
    pub fn put(&self, path: &SecretPath, value: &[u8]) -> Result<(), DevStoreError> {
        let mut file = self.load_for_admin()?;
        file.secrets.insert(
            path.uri(),
            StoredEntry {
                value_b64: STANDARD.encode(value),
            },
        );
        self.write(&file)
    }

    /// The canonical URIs stored under `prefix` (e.g. `secrets://dev/acme/`), no values.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, DevStoreError> {
        let file = self.load_for_admin()?;
        Ok(file
            .secrets
            .keys()
            .filter(|uri| uri.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn write(&self, file: &StoreFile) -> Result<(), DevStoreError> {
        let write_err = |source| DevStoreError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(write_err)?;
        let json = Zeroizing::new(
            serde_json::to_vec_pretty(file).map_err(|e| write_err(std::io::Error::other(e)))?,
        );
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            self.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut out = options.open(&tmp).map_err(write_err)?;
        out.write_all(&json).map_err(write_err)?;
        out.sync_all().map_err(write_err)?;
        std::fs::rename(&tmp, &self.path).map_err(write_err)
    }
}

fn parse(raw: &[u8]) -> Result<StoreFile, String> {
    let file: StoreFile = serde_json::from_slice(raw)
        .map_err(|e| format!("not valid JSON ({})", e.classify_name()))?;
    if file.format != FORMAT || file.version != VERSION {
        return Err(format!(
            "expected format {FORMAT:?} version {VERSION}, found {:?} version {}",
            file.format, file.version
        ));
    }
    Ok(file)
}

/// `serde_json` errors can quote input; only the category is safe to log.
trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected structure",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(uri: &str) -> SecretPath {
        SecretPath::parse_uri(uri).unwrap()
    }

    #[tokio::test]
    async fn put_then_fetch_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = DevStore::new(dir.path().join("sub/store.json"));
        let p = path("secrets://dev/acme/_/bot/key");
        assert!(matches!(
            store.fetch(&p).await,
            Err(BackendError::Unavailable(_))
        ));
        store.put(&p, b"v1").unwrap();
        assert_eq!(store.fetch(&p).await.unwrap().unwrap().expose(), b"v1");
        store.put(&p, b"v2").unwrap();
        assert_eq!(store.fetch(&p).await.unwrap().unwrap().expose(), b"v2");
        assert!(
            store
                .fetch(&path("secrets://dev/acme/t/bot/key"))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.list("secrets://dev/acme/").unwrap(), vec![p.uri()]);
        assert!(store.list("secrets://prod/").unwrap().is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn corrupt_file_is_reported_without_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("store.json");
        std::fs::write(&file, "{\"format\": \"greentic-dev-store\", \"version\": 1, \"secrets\": {\"x\": \"topsecret\"").unwrap();
        let store = DevStore::new(&file);
        let err = store
            .fetch(&path("secrets://dev/acme/_/bot/key"))
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Corrupt(_)));
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }
}
