//! The envelope: how a secret is stored in KV-v2 without its plaintext ever
//! reaching Vault's storage.
//!
//! The KV-v2 `data` object of a secret (v2, what `gtc op secrets put` writes):
//!
//! ```json
//! { "format": "greentic.secrets.envelope", "version": 2, "alg": "AES-256-GCM",
//!   "transit_key": "greentic-prod-acme", "kv_version": 3,
//!   "wrapped_dek": "vault:v1:...", "nonce": "<base64 96-bit>",
//!   "ciphertext": "<base64 ciphertext || 128-bit tag>" }
//! ```
//!
//! - A fresh 256-bit data key (DEK) per written version, wrapped by Vault transit
//!   key `transit_key` (the tenant's own key); the wrapped form is Vault's own
//!   `vault:vN:...` string, which does not name the key — hence the field.
//! - The additional authenticated data binds the secret's canonical `secrets://`
//!   URI, the KV version the envelope was written as, and the transit key name.
//!   An envelope copied to another path fails to open; one copied back over a
//!   newer version (a rollback by someone with KV write) is refused as "rolled
//!   back" before anything is decrypted, and if its `kv_version` field is edited
//!   to match, the AAD no longer matches. The version is known before writing
//!   because the admin writes with check-and-set (`options.cas`).
//! - v1 (no `transit_key`, no `kv_version`; AAD = URI only) still opens: entries
//!   written before v2 keep working until `gtc op secrets rewrap` upgrades them.
//! - The DEK and the value live only in zeroizing memory.
//!
//! Anything else found in KV (e.g. a plaintext `vault kv put`) is refused.

use crate::secrets::secret_value::SecretBytes;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

pub const FORMAT: &str = "greentic.secrets.envelope";
/// The version `gtc op secrets put` writes.
pub const VERSION: u64 = 2;
pub const ALGORITHM: &str = "AES-256-GCM";
const NONCE_LEN: usize = 12;
const DEK_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// Longest transit key name accepted from an envelope.
const MAX_KEY_NAME: usize = 128;

/// Why an envelope could not be read or opened. Never contains key material or
/// plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error(
        "the KV entry is not a greentic envelope (was it written with a raw `kv put`? \
         write secrets with `gtc op secrets put`)"
    )]
    NotAnEnvelope,
    #[error("unsupported envelope: {0}")]
    Unsupported(String),
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
    #[error("the data key has the wrong length")]
    BadKey,
    #[error(
        "the envelope does not decrypt for this secret's URI (tampered, or copied from another path)"
    )]
    Decrypt,
    #[error(
        "rolled back: KV version {found} holds the envelope written as version {written} \
         (an older version was copied back by someone with KV write); write the secret again \
         with `gtc op secrets put` and check who can write this KV path"
    )]
    RolledBack { written: u64, found: u64 },
    #[error("the KV entry has no version number, so a v2 envelope cannot be checked")]
    NoKvVersion,
}

/// What the additional authenticated data binds, by envelope version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// v1: the URI only; the DEK was wrapped by a key the envelope does not name
    /// (the shared key of the deployment).
    V1,
    /// v2: the URI, the KV version the envelope was written as, and the transit key
    /// that wrapped the DEK.
    V2 {
        transit_key: String,
        kv_version: u64,
    },
}

/// A parsed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub binding: Binding,
    /// Vault transit ciphertext of the DEK (`vault:vN:...`).
    pub wrapped_dek: String,
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

/// Transit key names an envelope may carry: the characters Vault key names and
/// our configuration accept, so the name can go into a URL path unescaped.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KEY_NAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Binding {
    fn aad(&self, uri: &str) -> Vec<u8> {
        match self {
            Self::V1 => uri.as_bytes().to_vec(),
            // NUL cannot occur in a URI (segments are checked) nor in a key name.
            Self::V2 {
                transit_key,
                kv_version,
            } => format!("{FORMAT}/v2\0{uri}\0{kv_version}\0{transit_key}").into_bytes(),
        }
    }

    /// The transit key named by the envelope (v2), if any.
    pub fn transit_key(&self) -> Option<&str> {
        match self {
            Self::V1 => None,
            Self::V2 { transit_key, .. } => Some(transit_key),
        }
    }
}

impl Envelope {
    /// Encrypts `value` as a v2 envelope for `uri`, to be written as KV version
    /// `kv_version` (the admin writes with check-and-set on `kv_version - 1`), with
    /// `dek` whose wrapped form by transit key `transit_key` is `wrapped_dek`.
    pub fn seal(
        value: &[u8],
        dek: &SecretBytes,
        wrapped_dek: String,
        transit_key: &str,
        uri: &str,
        kv_version: u64,
    ) -> Result<Self, EnvelopeError> {
        if !valid_key_name(transit_key) {
            return Err(EnvelopeError::Malformed("transit key name"));
        }
        let binding = Binding::V2 {
            transit_key: transit_key.to_string(),
            kv_version,
        };
        Self::seal_with(binding, value, dek, wrapped_dek, uri)
    }

    /// Encrypts `value` in the legacy v1 format (AAD = URI). `gtc` itself never
    /// writes v1 any more; this exists so migration paths can be exercised.
    pub fn seal_v1(
        value: &[u8],
        dek: &SecretBytes,
        wrapped_dek: String,
        uri: &str,
    ) -> Result<Self, EnvelopeError> {
        Self::seal_with(Binding::V1, value, dek, wrapped_dek, uri)
    }

    fn seal_with(
        binding: Binding,
        value: &[u8],
        dek: &SecretBytes,
        wrapped_dek: String,
        uri: &str,
    ) -> Result<Self, EnvelopeError> {
        let cipher = cipher(dek)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: &binding.aad(uri),
                },
            )
            .map_err(|_| EnvelopeError::Decrypt)?;
        Ok(Self {
            binding,
            wrapped_dek,
            nonce,
            ciphertext,
        })
    }

    /// Checks, before anything is decrypted, that a v2 envelope sits at the KV
    /// version it was written as (`kv_version`: the version the read returned).
    pub fn check_version(&self, kv_version: Option<u64>) -> Result<(), EnvelopeError> {
        match (&self.binding, kv_version) {
            (Binding::V1, _) => Ok(()),
            (
                Binding::V2 {
                    kv_version: written,
                    ..
                },
                Some(found),
            ) if *written == found => Ok(()),
            (
                Binding::V2 {
                    kv_version: written,
                    ..
                },
                Some(found),
            ) => Err(EnvelopeError::RolledBack {
                written: *written,
                found,
            }),
            (Binding::V2 { .. }, None) => Err(EnvelopeError::NoKvVersion),
        }
    }

    /// Decrypts with `dek`; fails unless `uri` (and, for v2, the KV version the
    /// entry was read at) are the ones the envelope was sealed for.
    pub fn open(
        &self,
        dek: &SecretBytes,
        uri: &str,
        kv_version: Option<u64>,
    ) -> Result<SecretBytes, EnvelopeError> {
        self.check_version(kv_version)?;
        let cipher = cipher(dek)?;
        let plaintext = cipher
            .decrypt(
                Nonce::from_slice(&self.nonce),
                Payload {
                    msg: &self.ciphertext,
                    aad: &self.binding.aad(uri),
                },
            )
            .map_err(|_| EnvelopeError::Decrypt)?;
        Ok(SecretBytes::from(Zeroizing::new(plaintext)))
    }

    /// The envelope's format version (1 or 2).
    pub fn version(&self) -> u64 {
        match self.binding {
            Binding::V1 => 1,
            Binding::V2 { .. } => 2,
        }
    }

    /// The KV-v2 `data` object.
    pub fn to_kv_data(&self) -> Value {
        let mut data = serde_json::json!({
            "format": FORMAT,
            "version": self.version(),
            "alg": ALGORITHM,
            "wrapped_dek": self.wrapped_dek,
            "nonce": STANDARD.encode(self.nonce),
            "ciphertext": STANDARD.encode(&self.ciphertext),
        });
        if let (
            Binding::V2 {
                transit_key,
                kv_version,
            },
            Some(object),
        ) = (&self.binding, data.as_object_mut())
        {
            object.insert("transit_key".into(), Value::from(transit_key.as_str()));
            object.insert("kv_version".into(), Value::from(*kv_version));
        }
        data
    }

    /// Parses a KV-v2 `data` object (v1 or v2).
    pub fn from_kv_data(data: &Map<String, Value>) -> Result<Self, EnvelopeError> {
        if data.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(EnvelopeError::NotAnEnvelope);
        }
        let version = match data.get("version").and_then(Value::as_u64) {
            Some(version @ (1 | 2)) => version,
            Some(other) => return Err(EnvelopeError::Unsupported(format!("version {other}"))),
            None => return Err(EnvelopeError::Malformed("no version")),
        };
        match data.get("alg").and_then(Value::as_str) {
            Some(ALGORITHM) => {}
            Some(other) => {
                let shown: String = other.chars().take(32).collect();
                return Err(EnvelopeError::Unsupported(format!("algorithm {shown:?}")));
            }
            None => return Err(EnvelopeError::Malformed("no alg")),
        }
        let text = |field: &'static str| {
            data.get(field)
                .and_then(Value::as_str)
                .ok_or(EnvelopeError::Malformed(field))
        };
        let binding = if version == 1 {
            Binding::V1
        } else {
            let transit_key = text("transit_key")?;
            if !valid_key_name(transit_key) {
                return Err(EnvelopeError::Malformed(
                    "transit_key is not a transit key name",
                ));
            }
            let kv_version = data
                .get("kv_version")
                .and_then(Value::as_u64)
                .ok_or(EnvelopeError::Malformed("kv_version"))?;
            Binding::V2 {
                transit_key: transit_key.to_string(),
                kv_version,
            }
        };
        let wrapped_dek = text("wrapped_dek")?;
        if !wrapped_dek.starts_with("vault:v") {
            return Err(EnvelopeError::Malformed(
                "wrapped_dek is not a vault:vN: ciphertext",
            ));
        }
        let nonce: [u8; NONCE_LEN] = STANDARD
            .decode(text("nonce")?)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(EnvelopeError::Malformed("nonce is not 12 bytes of base64"))?;
        let ciphertext = STANDARD
            .decode(text("ciphertext")?)
            .map_err(|_| EnvelopeError::Malformed("ciphertext is not base64"))?;
        if ciphertext.len() < TAG_LEN {
            return Err(EnvelopeError::Malformed(
                "ciphertext is shorter than its tag",
            ));
        }
        Ok(Self {
            binding,
            wrapped_dek: wrapped_dek.to_string(),
            nonce,
            ciphertext,
        })
    }
}

fn cipher(dek: &SecretBytes) -> Result<Aes256Gcm, EnvelopeError> {
    if dek.len() != DEK_LEN {
        return Err(EnvelopeError::BadKey);
    }
    Aes256Gcm::new_from_slice(dek.expose()).map_err(|_| EnvelopeError::BadKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dek() -> SecretBytes {
        SecretBytes::new((0u8..32).collect())
    }

    const URI: &str = "secrets://dev/acme/support/webchat-bot/webhook-secret";
    const KEY: &str = "greentic-dev-acme";

    fn kv(envelope: &Envelope) -> Map<String, Value> {
        envelope.to_kv_data().as_object().cloned().unwrap()
    }

    /// The README's "Reading an envelope" recipe, written from the README alone
    /// (none of this module's AAD code): it opens what `seal` wrote, and fails
    /// for another URI, version or key name.
    #[test]
    fn an_independent_reader_following_the_readme_opens_v2() {
        let envelope =
            Envelope::seal(b"readme-value", &dek(), "vault:v1:x".into(), KEY, URI, 7).unwrap();
        let data = envelope.to_kv_data();
        let open = |uri: &str, version: u64, key: &str| {
            let mut aad = Vec::new();
            aad.extend_from_slice(b"greentic.secrets.envelope/v2");
            aad.push(0);
            aad.extend_from_slice(uri.as_bytes());
            aad.push(0);
            aad.extend_from_slice(version.to_string().as_bytes());
            aad.push(0);
            aad.extend_from_slice(key.as_bytes());
            let nonce = STANDARD.decode(data["nonce"].as_str().unwrap()).unwrap();
            let ciphertext = STANDARD
                .decode(data["ciphertext"].as_str().unwrap())
                .unwrap();
            Aes256Gcm::new_from_slice(dek().expose()).unwrap().decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
        };
        assert_eq!(data["kv_version"], 7);
        assert_eq!(data["transit_key"], KEY);
        assert_eq!(open(URI, 7, KEY).unwrap(), b"readme-value");
        assert!(open(URI, 8, KEY).is_err());
        assert!(open("secrets://dev/acme/_/webchat-bot/webhook-secret", 7, KEY).is_err());
        assert!(open(URI, 7, "greentic").is_err());
    }

    fn sealed(version: u64) -> Envelope {
        Envelope::seal(
            b"the value",
            &dek(),
            "vault:v1:abc".into(),
            KEY,
            URI,
            version,
        )
        .unwrap()
    }

    #[test]
    fn round_trip_through_kv_data() {
        let sealed = sealed(3);
        let parsed = Envelope::from_kv_data(&kv(&sealed)).unwrap();
        assert_eq!(parsed, sealed);
        assert_eq!(parsed.binding.transit_key(), Some(KEY));
        assert_eq!(
            parsed.open(&dek(), URI, Some(3)).unwrap().expose(),
            b"the value"
        );
        let text = sealed.to_kv_data().to_string();
        assert!(!text.contains("the value"));
        assert!(text.contains("\"version\":2") && text.contains("\"kv_version\":3"));
    }

    #[test]
    fn v1_still_opens_with_the_uri_alone() {
        let v1 = Envelope::seal_v1(b"old", &dek(), "vault:v1:abc".into(), URI).unwrap();
        let data = kv(&v1);
        assert_eq!(data["version"], 1);
        assert!(!data.contains_key("kv_version") && !data.contains_key("transit_key"));
        let parsed = Envelope::from_kv_data(&data).unwrap();
        assert_eq!(parsed.binding, Binding::V1);
        // v1 binds no version: any KV version (or none) opens.
        assert_eq!(parsed.open(&dek(), URI, Some(7)).unwrap().expose(), b"old");
        assert_eq!(parsed.open(&dek(), URI, None).unwrap().expose(), b"old");
        let other = "secrets://dev/acme/sales/webchat-bot/webhook-secret";
        assert_eq!(
            parsed.open(&dek(), other, None),
            Err(EnvelopeError::Decrypt)
        );
    }

    #[test]
    fn a_rolled_back_copy_is_refused() {
        let first = sealed(1);
        // Copied back as version 3: refused before decrypting, and says so.
        let error = first.open(&dek(), URI, Some(3)).unwrap_err();
        assert_eq!(
            error,
            EnvelopeError::RolledBack {
                written: 1,
                found: 3
            }
        );
        assert!(error.to_string().contains("rolled back"));
        // The version field edited to match: the AAD no longer matches.
        let mut edited = first.clone();
        edited.binding = Binding::V2 {
            transit_key: KEY.into(),
            kv_version: 3,
        };
        assert_eq!(
            edited.open(&dek(), URI, Some(3)),
            Err(EnvelopeError::Decrypt)
        );
        // The key name edited: the AAD no longer matches either.
        let mut rekeyed = first.clone();
        rekeyed.binding = Binding::V2 {
            transit_key: "greentic-dev-other".into(),
            kv_version: 1,
        };
        assert_eq!(
            rekeyed.open(&dek(), URI, Some(1)),
            Err(EnvelopeError::Decrypt)
        );
        assert_eq!(
            first.open(&dek(), URI, None),
            Err(EnvelopeError::NoKvVersion)
        );
    }

    #[test]
    fn another_uri_or_key_or_tampering_fails() {
        let sealed = sealed(1);
        let other = "secrets://dev/acme/sales/webchat-bot/webhook-secret";
        assert_eq!(
            sealed.open(&dek(), other, Some(1)),
            Err(EnvelopeError::Decrypt)
        );
        assert_eq!(
            sealed.open(&SecretBytes::new(vec![7; 32]), URI, Some(1)),
            Err(EnvelopeError::Decrypt)
        );
        assert_eq!(
            sealed.open(&SecretBytes::new(vec![7; 16]), URI, Some(1)),
            Err(EnvelopeError::BadKey)
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(
            tampered.open(&dek(), URI, Some(1)),
            Err(EnvelopeError::Decrypt)
        );
    }

    #[test]
    fn nonces_are_fresh() {
        assert_ne!(sealed(1).nonce, sealed(1).nonce);
    }

    #[test]
    fn refuses_what_is_not_an_envelope() {
        let plain = serde_json::json!({"value": "plaintext"})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(
            Envelope::from_kv_data(&plain),
            Err(EnvelopeError::NotAnEnvelope)
        );
        let sealed = sealed(1);
        for (field, value) in [
            ("version", serde_json::json!(3)),
            ("alg", serde_json::json!("ROT13")),
            ("nonce", serde_json::json!("AAAA")),
            ("wrapped_dek", serde_json::json!("plain-key")),
            ("ciphertext", serde_json::json!("!!")),
            ("transit_key", serde_json::json!("../../sys/policies")),
            ("transit_key", serde_json::json!("")),
            ("kv_version", serde_json::json!("one")),
        ] {
            let mut data = kv(&sealed);
            data.insert(field.into(), value);
            assert!(Envelope::from_kv_data(&data).is_err(), "{field}");
        }
        let mut no_key = kv(&sealed);
        no_key.remove("transit_key");
        assert!(Envelope::from_kv_data(&no_key).is_err());
        assert!(!valid_key_name(&"k".repeat(MAX_KEY_NAME + 1)));
        assert!(Envelope::seal(b"v", &dek(), "vault:v1:a".into(), "a/b", URI, 1).is_err());
    }
}
