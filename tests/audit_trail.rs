//! The audit trail of a real `gtc serve`: cache hits counted and written as one
//! aggregate per bundle and secret (flushed at shutdown: nothing lost on
//! SIGTERM), every fetch, refusal, error and stale answer a record of its own,
//! and `--audit-every-hit` for one record per hit.

mod support;

use std::path::Path;
use support::*;

fn env_for(store: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("GREENTIC_ENV", "dev".to_string()),
        ("GREENTIC_TENANT", "acme".to_string()),
        ("GREENTIC_DEV_STORE", store.display().to_string()),
    ]
}

fn audit_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("gtc::audit")).collect()
}

/// The audit lines about `secret` (a canonical URI) that contain every `part`.
fn lines_about<'a>(log: &'a str, secret: &str, parts: &[&str]) -> Vec<&'a str> {
    let quoted = format!("secret=\"{secret}\"");
    audit_lines(log)
        .into_iter()
        .filter(|l| l.contains(&quoted) && parts.iter().all(|p| l.contains(p)))
        .collect()
}

fn count_of(line: &str) -> u64 {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("count="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"))
}

async fn bench_get(gtc: &Gtc, n: u64, name: &str) {
    let answer: serde_json::Value = client()
        .get(gtc.url(&format!("/p/bench-get?n={n}&name={name}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["failures"], 0, "{answer}");
}

const X: &str = "secrets://dev/acme/_/probe/x";
const SECRET: &[u8] = b"audit-webhook-key-0123456789";

#[tokio::test]
async fn cached_gets_are_counted_and_written_at_shutdown_everything_else_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/_/probe/x", b"value-of-x");
    dev_put(&store, "acme/_/probe/z", b"value-of-z");
    dev_put(&store, "acme/_/webchat-bot/webhook-secret", SECRET);
    let probe = write_bundle(dir.path(), "probe", "probe", &["/p"], r#"secrets = ["x"]"#);
    let webchat = webchat_bundle(dir.path());
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}", probe.display()),
            format!("--bundle={}", webchat.display()),
            "--allow-undeclared-secrets=probe".into(),
            // Nothing is flushed before shutdown: the aggregate must survive SIGTERM.
            "--audit-flush=1h".into(),
        ],
        &env_for(&store),
    );
    // `x` was looked up (and cached) by the worker before it listened: every
    // guest `get` of it is a cache hit (at most 1,000 per request).
    let n = 20_000;
    for _ in 0..n / 1000 {
        bench_get(&gtc, 1000, "x").await;
    }
    assert_eq!(probe_get(&gtc, "/p", b"x").await["value"], "value-of-x");
    for _ in 0..3 {
        assert_eq!(webhook(&gtc, SECRET, r#"{"text":"hi"}"#).await.0, 200);
    }
    // A fetch (undeclared, allowed by the migration switch), then its hit.
    assert_eq!(probe_get(&gtc, "/p", b"z").await["value"], "value-of-z");
    assert_eq!(probe_get(&gtc, "/p", b"z").await["value"], "value-of-z");
    // A fetch that finds nothing, then the cached "not found".
    for _ in 0..2 {
        assert_eq!(probe_get(&gtc, "/p", b"nope").await["error"], "not-found");
    }
    // Refusals: out of scope, malformed, sealed by another bundle.
    let other_team = b"secrets://dev/acme/blue/probe/x";
    assert_eq!(probe_get(&gtc, "/p", other_team).await["error"], "denied");
    assert_eq!(
        probe_get(&gtc, "/p", b"../x").await["error"],
        "invalid-name"
    );
    assert_eq!(
        probe_get(&gtc, "/p", b"webchat-bot/webhook-secret").await["error"],
        "denied"
    );
    // An error: the backend is gone, and `w` was never cached.
    std::fs::remove_file(&store).unwrap();
    assert_eq!(probe_get(&gtc, "/p", b"w").await["error"], "unavailable");
    let metrics = gtc.metrics().await;
    assert!(
        metrics.contains("gtc_audit_events_dropped_total 0"),
        "{metrics}"
    );

    let (code, log) = gtc.terminate();
    assert_eq!(code, Some(0), "{log}");

    // One aggregate for the n + 1 hits on x, written at shutdown.
    let x_hits = lines_about(&log, X, &["secrets.get", "cache=\"hit\"", "count="]);
    assert_eq!(x_hits.len(), 1, "{log}");
    assert_eq!(count_of(x_hits[0]), n + 1, "{}", x_hits[0]);
    assert!(
        x_hits[0].contains("bundle=probe")
            && x_hits[0].contains("outcome=\"ok\"")
            && x_hits[0].contains("first=20")
            && x_hits[0].contains("last=20"),
        "{}",
        x_hits[0]
    );
    // The webhook key's sealed uses from the cache, aggregated the same way.
    let key = "secrets://dev/acme/_/webchat-bot/webhook-secret";
    let verify = lines_about(&log, key, &["sealed.verify-hmac-sha256", "count="]);
    assert_eq!(verify.len(), 1, "{log}");
    assert_eq!(count_of(verify[0]), 3);
    // The fetch of z has its own record; its hit is counted.
    let z = "secrets://dev/acme/_/probe/z";
    assert_eq!(
        lines_about(&log, z, &["cache=\"miss\"", "latency_us="]).len(),
        1
    );
    assert_eq!(count_of(lines_about(&log, z, &["count="])[0]), 1);
    // Not found: the fetch on its own, the cached answer counted.
    let nope = "secrets://dev/acme/_/probe/nope";
    assert_eq!(
        lines_about(&log, nope, &["outcome=\"not-found\"", "cache=\"miss\""]).len(),
        1,
        "{log}"
    );
    let nope_hits = lines_about(&log, nope, &["outcome=\"not-found\"", "count="]);
    assert_eq!(nope_hits.len(), 1, "{log}");
    assert_eq!(count_of(nope_hits[0]), 1);
    // Each refusal and the error: a record each, with the reason.
    let other = "secrets://dev/acme/blue/probe/x";
    assert_eq!(lines_about(&log, other, &["outcome=\"denied\""]).len(), 1);
    assert_eq!(
        lines_about(&log, "(malformed)", &["outcome=\"invalid-name\""]).len(),
        1
    );
    assert_eq!(
        lines_about(&log, key, &["bundle=probe", "denied", "reason=\"sealed\""]).len(),
        1,
        "{log}"
    );
    let w = "secrets://dev/acme/_/probe/w";
    let error = lines_about(&log, w, &["outcome=\"unavailable\""]);
    assert_eq!(error.len(), 1, "{log}");
    assert!(error[0].contains("reason="), "{}", error[0]);
    // The whole trail of ~20,000 calls is a few lines.
    let bytes: usize = audit_lines(&log).iter().map(|l| l.len() + 1).sum();
    assert!(bytes < 8 * 1024, "{bytes} bytes of audit lines:\n{log}");
}

#[tokio::test]
async fn every_hit_gets_a_record_when_the_operator_asks() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/_/probe/x", b"value-of-x");
    let probe = write_bundle(dir.path(), "probe", "probe", &["/p"], r#"secrets = ["x"]"#);
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}", probe.display()),
            "--audit-every-hit".into(),
        ],
        &env_for(&store),
    );
    bench_get(&gtc, 50, "x").await;
    let (code, log) = gtc.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        lines_about(&log, X, &["cache=\"hit\"", "latency_us="]).len(),
        50,
        "{log}"
    );
    assert!(lines_about(&log, X, &["count="]).is_empty(), "{log}");
}

#[tokio::test]
async fn a_stale_answer_has_a_record_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/_/probe/x", b"value-of-x");
    let probe = write_bundle(dir.path(), "probe", "probe", &["/p"], r#"secrets = ["x"]"#);
    let mut env = env_for(&store);
    env.push(("GREENTIC_SECRETS_CACHE_TTL", "1s".into()));
    let gtc = Gtc::serve(&[format!("--bundle={}", probe.display())], &env);
    std::fs::remove_file(&store).unwrap();
    // Once its TTL (1 s) has passed, the cached value is served stale (the store
    // is gone): asked until /metrics counts one stale answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        assert_eq!(probe_get(&gtc, "/p", b"x").await["value"], "value-of-x");
        let metrics = gtc.metrics().await;
        if metrics.contains("gtc_secrets_cache_total{result=\"stale\"} 1\n") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never stale: {metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, log) = gtc.terminate();
    assert_eq!(
        lines_about(&log, X, &["cache=\"stale\"", "outcome=\"ok\""]).len(),
        1,
        "{log}"
    );
}
