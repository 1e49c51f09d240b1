//! Components written elsewhere run unchanged: ones written for Greentic's runner
//! (`greentic:secrets-store/secrets-store@1.0.0` and `@1.1.0`, their bindings
//! generated from `guests/greentic-wit/`, which matches Greentic's published
//! packages type for type: `enum secrets-error`), answered on the same scoped
//! resolution as gtc's own `secrets.get`, with that WIT's shapes; 1.1.0's `put` is
//! refused by this read-only host.

mod support;

use std::path::Path;
use support::*;

async fn ask(gtc: &Gtc, key: &str) -> (u16, String) {
    gtc.get(&format!("/runner?key={key}")).await
}

fn runner_bundle(root: &Path) -> std::path::PathBuf {
    write_bundle(
        root,
        "runner",
        "greentic-component",
        &["/runner"],
        // `shared/region` is tenant-wide; `absent` is declared but never seeded.
        r#"secrets = ["api-token", "shared/region", "absent"]"#,
    )
}

#[tokio::test]
async fn greentic_runner_components_read_their_scope_through_secrets_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/ops/runner/api-token", b"runner-token-ops");
    dev_put(&store, "acme/_/shared/region", b"eu-west-1");
    dev_put(
        &store,
        "acme/billing/runner/api-token",
        b"runner-token-billing",
    );
    dev_put(&store, "acme/ops/runner/undeclared", b"never-read");
    let runner = runner_bundle(dir.path());
    let env = vec![
        ("GREENTIC_ENV", "dev".to_string()),
        ("GREENTIC_TENANT", "acme".to_string()),
        ("GREENTIC_DEV_STORE", store.display().to_string()),
    ];
    let gtc = Gtc::serve(&[format!("--bundle={}=ops", runner.display())], &env);

    // The team's own value, then the tenant-wide fallback, as for secrets.get.
    assert_eq!(
        ask(&gtc, "api-token").await,
        (200, "runner-token-ops".into())
    );
    assert_eq!(ask(&gtc, "shared/region").await, (200, "eu-west-1".into()));
    // A missing secret is ok(none), not an error.
    assert_eq!(ask(&gtc, "absent").await, (404, "none".into()));
    // Undeclared, another team's, malformed: that WIT's cases.
    assert_eq!(ask(&gtc, "undeclared").await, (500, "denied".into()));
    assert_eq!(
        ask(&gtc, "secrets://dev/acme/billing/runner/api-token").await,
        (500, "denied".into())
    );
    assert_eq!(ask(&gtc, "..%2Fx").await, (500, "invalid-key".into()));
    // The three refusals have a record each; the three cache hits (the worker
    // looked the declared names up at start) are counted per secret and written
    // at shutdown.
    let (_, log) = gtc.terminate();
    let audited: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("gtc::audit") && l.contains("secrets-store.get"))
        .collect();
    assert_eq!(audited.len(), 6, "{log}");
    let hits = audited.iter().filter(|l| l.contains("count=1 ")).count();
    assert_eq!(hits, 3, "{log}");
    assert!(!log.contains("runner-token"), "no value in the log");
}

#[tokio::test]
async fn an_unreachable_backend_is_internal_in_secrets_store() {
    // secrets-store has no `unavailable` case: gtc answers `internal` (documented).
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("sa-token");
    std::fs::write(&token, "not-a-real-service-account-token").unwrap();
    let runner = runner_bundle(dir.path());
    let nowhere = free_port();
    let env = vec![
        ("GREENTIC_ENV", "dev".to_string()),
        ("GREENTIC_TENANT", "acme".to_string()),
        ("GREENTIC_SECRETS_BACKEND", "vault".to_string()),
        ("VAULT_ADDR", format!("http://127.0.0.1:{nowhere}")),
        ("VAULT_K8S_ROLE", "gtc-worker".to_string()),
        ("VAULT_K8S_TOKEN_PATH", token.display().to_string()),
    ];
    let gtc = Gtc::serve(&[format!("--bundle={}", runner.display())], &env);
    let started = std::time::Instant::now();
    assert_eq!(ask(&gtc, "api-token").await, (500, "internal".into()));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "within the bundle's time limit"
    );
    let log = gtc.stop();
    assert!(
        log.lines()
            .any(|l| l.contains("secrets-store.get") && l.contains("outcome=\"unavailable\"")),
        "the audit keeps the real outcome:\n{log}"
    );
}

async fn ask11(gtc: &Gtc, query: &str) -> (u16, String) {
    gtc.get(&format!("/runner11?{query}")).await
}

#[tokio::test]
async fn secrets_store_1_1_components_read_and_their_put_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/ops/runner11/api-token", b"runner11-token-ops");
    let runner = write_bundle(
        dir.path(),
        "runner11",
        "greentic-component-v1-1",
        &["/runner11"],
        r#"secrets = ["api-token", "absent"]"#,
    );
    let env = vec![
        ("GREENTIC_ENV", "dev".to_string()),
        ("GREENTIC_TENANT", "acme".to_string()),
        ("GREENTIC_DEV_STORE", store.display().to_string()),
    ];
    let gtc = Gtc::serve(&[format!("--bundle={}=ops", runner.display())], &env);

    // get: 1.0.0's answers, in 1.1.0's types.
    assert_eq!(
        ask11(&gtc, "key=api-token").await,
        (200, "runner11-token-ops".into())
    );
    assert_eq!(ask11(&gtc, "key=absent").await, (404, "none".into()));
    assert_eq!(ask11(&gtc, "key=undeclared").await, (500, "denied".into()));
    assert_eq!(ask11(&gtc, "key=..%2Fx").await, (500, "invalid-key".into()));

    // put: the guest is stopped (it never answers `stored`), the log says why in
    // words a guest author can act on, and /metrics counts it.
    let (status, body) = ask11(&gtc, "put=api-token").await;
    assert_eq!(status, 500, "{body}");
    assert_ne!(body, "stored");
    let metrics = gtc.metrics().await;
    assert!(
        metrics.contains("gtc_secrets_store_put_refused_total 1\n"),
        "{metrics}"
    );
    // The value was not replaced: the next request reads the seeded one.
    assert_eq!(
        ask11(&gtc, "key=api-token").await,
        (200, "runner11-token-ops".into())
    );
    let log = gtc.stop();
    assert!(
        log.contains("greentic:secrets-store put is refused: gtc is a read-only secrets host")
            && log.contains("operators write them with `gtc op secrets put`"),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("secrets-store.put refused")
            && l.contains("runner11")
            && l.contains("key_len=9")),
        "{log}"
    );
    assert!(!log.contains("runner11-token"), "no value in the log");
}
