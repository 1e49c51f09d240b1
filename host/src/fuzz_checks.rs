//! Invariant checks over untrusted input, shared by the fuzz targets
//! (`host/fuzz`, cargo fuzz) and the corpus replay in the test suite.
//!
//! Each function takes arbitrary bytes, runs one parser, and panics only if an
//! invariant is broken (which is what a fuzzer reports). Parsers themselves must
//! never panic on any input.

use crate::bundle::manifest::Manifest;
use crate::secrets::envelope::Envelope;
use crate::secrets::scope::{MAX_SEGMENT_LEN, Scope, SecretPath, Segment, TeamSlot};
use crate::secrets::secret_value::SecretBytes;
use crate::secrets::vault::parse;

fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SEGMENT_LEN
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Secret names as a guest passes them: whatever resolves stays in scope, is made
/// of valid segments, and round-trips through its canonical URI unchanged.
pub fn secret_name(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let scope = Scope {
        env: Segment::parse("dev").expect("valid"),
        tenant: Segment::parse("acme").expect("valid"),
        team: TeamSlot::parse("team-a").expect("valid"),
    };
    let category = Segment::parse("bot").expect("valid");
    if let Ok(paths) = scope.resolve(&category, text) {
        assert!(!paths.is_empty() && paths.len() <= 2);
        for path in &paths {
            assert_eq!(path.env, scope.env);
            assert_eq!(path.tenant, scope.tenant);
            assert!(path.team == scope.team || path.team == TeamSlot::TenantWide);
            assert!(segment_ok(path.category.as_str()) && segment_ok(path.name.as_str()));
            assert_eq!(SecretPath::parse_uri(&path.uri()).as_ref(), Ok(path));
            assert!(text.ends_with(path.name.as_str()), "a name was rewritten");
        }
    }
    if let Ok(path) = SecretPath::parse_uri(text) {
        assert_eq!(path.uri(), text, "a URI was normalised");
    }
}

/// KV-v2 data objects (envelope v1 or v2): parsing never panics; a parsed envelope
/// re-serialises to itself, opening it with an unrelated key fails cleanly, and a v2
/// envelope read at another KV version is refused as rolled back.
pub fn envelope(data: &[u8]) {
    envelope_reached(data);
}

/// [`envelope`], saying how far the input got: the version of the envelope it
/// parsed into (whose invariants were then checked), or `None`. The corpus replay
/// counts these, so the committed corpus keeps reaching the v2 checks.
pub fn envelope_reached(data: &[u8]) -> Option<u64> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(data)
    else {
        return None;
    };
    let envelope = Envelope::from_kv_data(&map).ok()?;
    {
        let again = envelope.to_kv_data();
        let reparsed = again
            .as_object()
            .map(Envelope::from_kv_data)
            .expect("an object")
            .expect("a serialised envelope parses");
        assert_eq!(reparsed, envelope);
        // Nothing here was sealed with this key: opening must fail, cleanly (an
        // error, not a panic), whatever the input. Forging a GCM tag without the
        // key is what AES-GCM rules out.
        let key = SecretBytes::new(vec![0x42; 32]);
        assert!(
            envelope
                .open(&key, "secrets://dev/acme/_/bot/name", Some(1))
                .is_err(),
            "an envelope opened with a key it was not sealed with"
        );
        // A v2 envelope read at another KV version than it names is refused as a
        // rollback before anything is decrypted; v1 binds no version.
        match &envelope.binding {
            crate::secrets::envelope::Binding::V1 => assert!(envelope.check_version(None).is_ok()),
            crate::secrets::envelope::Binding::V2 {
                transit_key,
                kv_version,
            } => {
                assert!(crate::secrets::envelope::valid_key_name(transit_key));
                let other = kv_version.wrapping_add(1);
                assert!(matches!(
                    envelope.check_version(Some(other)),
                    Err(crate::secrets::envelope::EnvelopeError::RolledBack { .. })
                ));
                // Opening checks the version first: a rolled-back read is refused
                // as such, before any decryption is tried.
                assert!(matches!(
                    envelope.open(&key, "secrets://dev/acme/_/bot/name", Some(other)),
                    Err(crate::secrets::envelope::EnvelopeError::RolledBack { .. })
                ));
                // Read at the version it names, it passes the rollback check.
                assert!(envelope.check_version(Some(*kv_version)).is_ok());
            }
        }
    }
    Some(match envelope.binding {
        crate::secrets::envelope::Binding::V1 => 1,
        crate::secrets::envelope::Binding::V2 { .. } => 2,
    })
}

/// Bundle manifests: parsing never panics; what parses is valid.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(manifest) = Manifest::parse(text, std::path::Path::new("/bundle")) {
        assert!(segment_ok(manifest.id.as_str()));
        assert!(!manifest.routes.is_empty() && manifest.routes.iter().all(|r| r.starts_with('/')));
        assert!(manifest.limits.memory_bytes > 0 && !manifest.limits.timeout.is_zero());
    }
}

/// Vault answers: every parser returns a value or a fixed reason.
pub fn vault_response(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = parse::error_list(&body);
    if let Ok(auth) = parse::auth_info(body.clone()) {
        // The token itself never shows in Debug output (warnings may say anything).
        assert_eq!(format!("{:?}", auth.token), "VaultToken([redacted])");
    }
    for not_found in [false, true] {
        if let Ok(entry) = parse::kv_entry(not_found, body.clone()) {
            assert!(!not_found || entry.data.is_none());
        }
    }
    let _ = parse::plaintext_key(&mut body.clone());
    let _ = parse::take_data_string(&mut body.clone(), "ciphertext");
}
