//! Envelope v1: how a secret is stored in KV-v2 without its plaintext ever
//! reaching Vault's storage.
//!
//! The KV-v2 `data` object of a secret is:
//!
//! ```json
//! { "format": "greentic.secrets.envelope", "version": 1, "alg": "AES-256-GCM",
//!   "wrapped_dek": "vault:v1:...", "nonce": "<base64 96-bit>",
//!   "ciphertext": "<base64 ciphertext || 128-bit tag>" }
//! ```
//!
//! - A fresh 256-bit data key (DEK) per written version, wrapped by Vault transit;
//!   the wrapped form is Vault's own `vault:vN:...` string.
//! - The additional authenticated data is the secret's canonical `secrets://` URI,
//!   so an envelope copied to another path (team, tenant, name) fails to open.
//! - The DEK and the value live only in zeroizing memory.
//!
//! Anything else found in KV (e.g. a plaintext `vault kv put`) is refused.

use crate::secret_value::SecretBytes;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

pub const FORMAT: &str = "greentic.secrets.envelope";
pub const VERSION: u64 = 1;
pub const ALGORITHM: &str = "AES-256-GCM";
const NONCE_LEN: usize = 12;
const DEK_LEN: usize = 32;
const TAG_LEN: usize = 16;

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
}

/// A parsed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Vault transit ciphertext of the DEK (`vault:vN:...`).
    pub wrapped_dek: String,
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

impl Envelope {
    /// Encrypts `value` for `uri` with `dek` (whose wrapped form is `wrapped_dek`).
    pub fn seal(
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
                    aad: uri.as_bytes(),
                },
            )
            .map_err(|_| EnvelopeError::Decrypt)?;
        Ok(Self {
            wrapped_dek,
            nonce,
            ciphertext,
        })
    }

    /// Decrypts with `dek`; fails unless `uri` is the one the envelope was sealed for.
    pub fn open(&self, dek: &SecretBytes, uri: &str) -> Result<SecretBytes, EnvelopeError> {
        let cipher = cipher(dek)?;
        let plaintext = cipher
            .decrypt(
                Nonce::from_slice(&self.nonce),
                Payload {
                    msg: &self.ciphertext,
                    aad: uri.as_bytes(),
                },
            )
            .map_err(|_| EnvelopeError::Decrypt)?;
        Ok(SecretBytes::from(Zeroizing::new(plaintext)))
    }

    /// The KV-v2 `data` object.
    pub fn to_kv_data(&self) -> Value {
        serde_json::json!({
            "format": FORMAT,
            "version": VERSION,
            "alg": ALGORITHM,
            "wrapped_dek": self.wrapped_dek,
            "nonce": STANDARD.encode(self.nonce),
            "ciphertext": STANDARD.encode(&self.ciphertext),
        })
    }

    /// Parses a KV-v2 `data` object.
    pub fn from_kv_data(data: &Map<String, Value>) -> Result<Self, EnvelopeError> {
        if data.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(EnvelopeError::NotAnEnvelope);
        }
        match data.get("version").and_then(Value::as_u64) {
            Some(VERSION) => {}
            Some(other) => return Err(EnvelopeError::Unsupported(format!("version {other}"))),
            None => return Err(EnvelopeError::Malformed("no version")),
        }
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

    fn kv(envelope: &Envelope) -> Map<String, Value> {
        envelope.to_kv_data().as_object().cloned().unwrap()
    }

    #[test]
    fn round_trip_through_kv_data() {
        let sealed = Envelope::seal(b"the value", &dek(), "vault:v1:abc".into(), URI).unwrap();
        let parsed = Envelope::from_kv_data(&kv(&sealed)).unwrap();
        assert_eq!(parsed, sealed);
        assert_eq!(parsed.open(&dek(), URI).unwrap().expose(), b"the value");
        let text = sealed.to_kv_data().to_string();
        assert!(!text.contains("the value"));
    }

    #[test]
    fn another_uri_or_key_or_tampering_fails() {
        let sealed = Envelope::seal(b"v", &dek(), "vault:v1:abc".into(), URI).unwrap();
        let other = "secrets://dev/acme/sales/webchat-bot/webhook-secret";
        assert_eq!(sealed.open(&dek(), other), Err(EnvelopeError::Decrypt));
        assert_eq!(
            sealed.open(&SecretBytes::new(vec![7; 32]), URI),
            Err(EnvelopeError::Decrypt)
        );
        assert_eq!(
            sealed.open(&SecretBytes::new(vec![7; 16]), URI),
            Err(EnvelopeError::BadKey)
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(tampered.open(&dek(), URI), Err(EnvelopeError::Decrypt));
    }

    #[test]
    fn nonces_are_fresh() {
        let a = Envelope::seal(b"v", &dek(), "vault:v1:a".into(), URI).unwrap();
        let b = Envelope::seal(b"v", &dek(), "vault:v1:a".into(), URI).unwrap();
        assert_ne!(a.nonce, b.nonce);
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
        let sealed = Envelope::seal(b"v", &dek(), "vault:v1:a".into(), URI).unwrap();
        for (field, value) in [
            ("version", serde_json::json!(2)),
            ("alg", serde_json::json!("ROT13")),
            ("nonce", serde_json::json!("AAAA")),
            ("wrapped_dek", serde_json::json!("plain-key")),
            ("ciphertext", serde_json::json!("!!")),
        ] {
            let mut data = kv(&sealed);
            data.insert(field.into(), value);
            assert!(Envelope::from_kv_data(&data).is_err(), "{field}");
        }
    }
}
