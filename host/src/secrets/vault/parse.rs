//! Parsing of Vault's JSON answers, kept apart from the transport so that it can
//! be fuzzed: whatever bytes a server (or something pretending to be one) sends,
//! these functions return a value or a short, fixed reason — they never panic and
//! never echo the body (which may hold a token or a key).

use super::{AuthInfo, KvEntry, VaultToken};
use crate::secrets::secret_value::SecretBytes;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use std::time::Duration;
use zeroize::Zeroizing;

/// Vault's `errors` list (strings only).
pub fn error_list(body: &Value) -> Vec<String> {
    body.get("errors")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A login or renewal answer: `auth.client_token`, `auth.lease_duration`,
/// `auth.renewable`, `warnings`. The token is moved out of the body, not copied.
pub fn auth_info(mut body: Value) -> Result<AuthInfo, &'static str> {
    const MISSING: &str = "no auth block with a client token";
    let auth = body.get_mut("auth").ok_or(MISSING)?;
    let token = match auth.get_mut("client_token").map(Value::take) {
        Some(Value::String(token)) if !token.is_empty() => VaultToken::new(token),
        _ => return Err(MISSING),
    };
    let lease_duration = auth
        .get("lease_duration")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let renewable = auth
        .get("renewable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let warnings = body
        .get("warnings")
        .and_then(Value::as_array)
        .map(|w| {
            w.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(AuthInfo {
        token,
        // Clamp absurd TTLs so that `Instant` arithmetic can never overflow.
        lease_duration: Duration::from_secs(lease_duration.min(10 * 365 * 24 * 3600)),
        renewable,
        warnings,
    })
}

/// A KV-v2 read. `not_found` is the 404 case, which for a deleted or destroyed
/// latest version still carries `data.metadata`.
pub fn kv_entry(not_found: bool, body: Value) -> Result<KvEntry, &'static str> {
    let data = body.get("data");
    let version = data
        .and_then(|d| d.get("metadata"))
        .and_then(|m| m.get("version"))
        .and_then(Value::as_u64);
    if not_found {
        return Ok(KvEntry {
            data: None,
            version,
        });
    }
    let object = match data.and_then(|d| d.get("data")) {
        Some(Value::Object(map)) => Some(map.clone()),
        Some(Value::Null) | None => None,
        Some(_) => return Err("data.data is not an object"),
    };
    Ok(KvEntry {
        data: object,
        version,
    })
}

/// Moves `data.<field>` out of an answer as a zeroizing string.
pub fn take_data_string(body: &mut Value, field: &str) -> Option<Zeroizing<String>> {
    match body.get_mut("data")?.get_mut(field)?.take() {
        Value::String(s) => Some(Zeroizing::new(s)),
        _ => None,
    }
}

/// `data.plaintext` of a transit answer, base64-decoded into zeroizing memory.
pub fn plaintext_key(body: &mut Value) -> Result<SecretBytes, &'static str> {
    let plaintext = take_data_string(body, "plaintext").ok_or("no data.plaintext")?;
    let mut bytes = Zeroizing::new(Vec::new());
    STANDARD
        .decode_vec(plaintext.as_bytes(), &mut bytes)
        .map_err(|_| "data.plaintext is not base64")?;
    Ok(SecretBytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kv_shapes() {
        let live = json!({"data": {"data": {"k": "v"}, "metadata": {"version": 3}}});
        let entry = kv_entry(false, live).unwrap();
        assert_eq!(entry.version, Some(3));
        assert!(entry.data.is_some());
        // Deleted latest version: 404 with a normal body.
        let deleted =
            json!({"data": {"data": null, "metadata": {"version": 4, "deletion_time": "x"}}});
        let entry = kv_entry(true, deleted).unwrap();
        assert!(entry.data.is_none());
        assert_eq!(entry.version, Some(4));
        assert!(
            kv_entry(true, json!({"errors": []}))
                .unwrap()
                .data
                .is_none()
        );
        assert!(kv_entry(false, json!({"data": {"data": 5}})).is_err());
    }

    #[test]
    fn auth_and_keys() {
        let auth = auth_info(json!({"auth": {"client_token": "s.abc", "lease_duration": 60, "renewable": true}, "warnings": ["capped"]})).unwrap();
        assert_eq!(auth.lease_duration, Duration::from_secs(60));
        assert!(auth.renewable && auth.warnings == ["capped"]);
        assert!(!format!("{auth:?}").contains("s.abc"));
        assert!(auth_info(json!({"auth": null})).is_err());
        assert!(auth_info(json!({"auth": {"client_token": ""}})).is_err());
        let mut answer = json!({"data": {"plaintext": "AAEC"}});
        assert_eq!(plaintext_key(&mut answer).unwrap().expose(), &[0, 1, 2]);
        assert!(plaintext_key(&mut json!({"data": {"plaintext": "!"}})).is_err());
        assert_eq!(error_list(&json!({"errors": ["a", 1, "b"]})), ["a", "b"]);
    }
}
