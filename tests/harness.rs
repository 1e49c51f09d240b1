//! The test harness's own leak scan must fail loudly, never pass by scanning
//! nothing: each helper is driven into the condition where it used to skip
//! silently, and must panic (or catch what it exists to catch).

mod support;

use std::panic::catch_unwind;
use support::*;

fn panic_text(result: std::thread::Result<impl std::fmt::Debug>) -> String {
    match result {
        Ok(value) => panic!("expected a panic, got {value:?}"),
        Err(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    }
}

#[test]
fn a_secret_too_short_to_scan_for_is_refused_not_ignored() {
    let text = panic_text(catch_unwind(|| forbid(b"short")));
    assert!(text.contains("cannot look for a 5-byte secret"), "{text}");
    let before = forbidden_count();
    forbid(b"long-enough-value");
    assert!(
        forbidden_count() > before,
        "a long value was not registered"
    );
}

#[test]
fn registered_values_are_found_raw_and_encoded() {
    use base64::Engine as _;
    let value = b"harness-secret-\x00\xff-bytes";
    forbid(value);
    for (form, text) in [
        (
            "base64",
            base64::engine::general_purpose::STANDARD.encode(value),
        ),
        (
            "base64url",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value),
        ),
        ("hex", hex::encode(value)),
    ] {
        let line = format!("{{\"field\":\"{text}\"}}");
        let found = panic_text(catch_unwind(|| assert_no_leaks("a test line", &line)));
        assert!(
            found.contains("leaked a registered secret value"),
            "{form}: {found}"
        );
    }
    let utf8 = b"harness-plain-text-secret";
    forbid(utf8);
    let found = panic_text(catch_unwind(|| {
        assert_no_leaks("a test line", "value=harness-plain-text-secret;")
    }));
    assert!(
        found.contains("leaked a registered secret value"),
        "{found}"
    );
    assert_no_leaks("an innocent line", "nothing to see here");
}

#[test]
fn a_scan_that_cannot_read_its_endpoint_panics() {
    // Nothing listens on a port that was just free: the scan must say so.
    let base = format!("http://127.0.0.1:{}", free_port());
    let text = panic_text(catch_unwind(|| blocking_get(&base, "/metrics")));
    assert!(
        text.contains("leak scan of /metrics") && text.contains("cannot connect"),
        "{text}"
    );
    let text = panic_text(catch_unwind(|| blocking_get("127.0.0.1:1", "/readyz")));
    assert!(text.contains("not an http:// address"), "{text}");
}

#[test]
fn a_stopped_host_is_scanned_and_a_leak_in_its_log_fails_the_stop() {
    // The host names a bundle's routes in its log (not in /metrics or /readyz);
    // registered as a "secret", the stop-time scan of the log must catch it.
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(dir.path(), "hello", "hello", &["/leaky-route-path"], "");
    let gtc = Gtc::serve(&[format!("--bundle={}", bundle.display())], &[]);
    forbid(b"leaky-route-path");
    let text = panic_text(catch_unwind(std::panic::AssertUnwindSafe(move || {
        gtc.stop()
    })));
    assert!(
        text.contains("the gtc log leaked a registered secret value"),
        "{text}"
    );
}
