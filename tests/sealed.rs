//! Sealed secrets end to end through the real `gtc` binary: the manifest's sealed
//! list, what an operator sees of it (`gtc bundle inspect`), `get` refusing sealed
//! values, and readiness counting them.

mod support;

use std::path::Path;
use support::*;

const TOKEN: &[u8] = b"sealed-bot-token-7f3a9c2e11";

fn env_for(store: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("GREENTIC_ENV", "dev".to_string()),
        ("GREENTIC_TENANT", "acme".to_string()),
        ("GREENTIC_DEV_STORE", store.display().to_string()),
    ]
}

/// A probe bundle with `probe/token` sealed to `to` (also its egress allowlist).
fn sealed_probe(root: &Path, to: &str) -> std::path::PathBuf {
    write_bundle(
        root,
        "probe",
        "probe",
        &["/p"],
        &format!(
            "[secrets]\nread = [\"probe/plain\"]\n[[secrets.sealed]]\nname = \"probe/token\"\n\
             to = [\"{to}\"]\n[egress]\nallow = [\"{to}\"]"
        ),
    )
}

#[test]
fn operators_see_every_sealed_secret_and_where_it_may_travel() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = sealed_probe(dir.path(), "api.telegram.org:443");
    let out = run_gtc(&["bundle", "inspect", bundle.to_str().unwrap()], &[], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let review = String::from_utf8_lossy(&out.stdout);
    assert!(review.contains("bundle probe"), "{review}");
    assert!(review.contains("readable secrets probe/plain"), "{review}");
    assert!(
        review.contains("sealed secret probe/token may travel to https://api.telegram.org:443"),
        "{review}"
    );
    // A sealed destination outside the egress allowlist is a bad manifest.
    std::fs::write(
        bundle.join("bundle.toml"),
        "id = \"probe\"\ncomponent = \"x.wasm\"\nroutes = [\"/p\"]\n\
         [[secrets.sealed]]\nname = \"token\"\nto = [\"evil.example:443\"]",
    )
    .unwrap();
    let out = run_gtc(&["bundle", "inspect", bundle.to_str().unwrap()], &[], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[egress].allow"));
}

#[tokio::test]
async fn get_never_returns_a_sealed_value_and_readiness_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/_/probe/plain", b"plain-value");
    let bundle = sealed_probe(dir.path(), "api.telegram.org:443");
    let gtc = Gtc::serve(
        &[format!("--bundle={}", bundle.display())],
        &env_for(&store),
    );
    // Sealed, but not seeded yet: not ready, and the reason names it.
    let ready = client().get(gtc.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("probe/token"));
    drop(gtc);
    dev_put(&store, "acme/_/probe/token", TOKEN);
    let gtc = Gtc::serve(
        &[format!("--bundle={}", bundle.display())],
        &env_for(&store),
    );
    let ready = client().get(gtc.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    assert_eq!(
        probe_get(&gtc, "/p", b"probe/plain").await["value"],
        "plain-value"
    );
    for name in [
        &b"probe/token"[..],
        b"token",
        b"secrets://dev/acme/_/probe/token",
    ] {
        let answer = probe_get(&gtc, "/p", name).await;
        assert_eq!(answer["error"], "denied", "{answer}");
    }
    let log = gtc.stop();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("gtc::audit") && l.contains("probe/token"))
        .collect();
    assert_eq!(refused.len(), 3, "{log}");
    assert!(
        refused
            .iter()
            .all(|l| l.contains("denied") && l.contains("sealed")),
        "{log}"
    );
}

#[tokio::test]
async fn components_of_both_package_versions_serve_side_by_side() {
    // probe is built against greentic:secrets@1.0.0, webchat-bot against 1.1.0
    // (its webhook key sealed, checked by the host).
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/_/webchat-bot/webhook-secret", TOKEN);
    dev_put(&store, "acme/_/probe/plain", b"plain-value");
    let webchat = webchat_bundle(dir.path());
    let probe = write_bundle(
        dir.path(),
        "probe",
        "probe",
        &["/p"],
        r#"secrets = ["plain"]"#,
    );
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}", webchat.display()),
            format!("--bundle={}", probe.display()),
        ],
        &env_for(&store),
    );
    assert_eq!(
        probe_get(&gtc, "/p", b"plain").await["value"],
        "plain-value"
    );
    let (status, body) = webhook(&gtc, TOKEN, r#"{"text":"sealed hi"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("you said: sealed hi"), "{body}");
    assert_eq!(webhook(&gtc, b"not-the-key", "{}").await.0, 401);
    let log = gtc.stop();
    assert!(
        log.lines().any(|l| l.contains("sealed.verify-hmac-sha256")
            && l.contains("secrets://dev/acme/_/webchat-bot/webhook-secret")
            && l.contains("outcome=\"ok\"")),
        "{log}"
    );
}
