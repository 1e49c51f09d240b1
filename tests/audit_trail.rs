//! The audit trail of a real `gtc serve`: cache hits counted and written as one
//! aggregate per bundle and secret (flushed at shutdown: nothing lost on
//! SIGTERM), every fetch, refusal, error and stale answer a record of its own,
//! and `--audit-every-hit` for one record per hit.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};
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
    let answer = get_json(gtc.url(&format!("/p/bench-get?n={n}&name={name}"))).await;
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
    // is gone): asked until /metrics counts a stale answer. (The worker's own
    // look-ups of its declared secrets count there too, so more than one may
    // show at once.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut gets = 0;
    loop {
        assert_eq!(probe_get(&gtc, "/p", b"x").await["value"], "value-of-x");
        gets += 1;
        let metrics = gtc.metrics().await;
        if metric(&metrics, "gtc_secrets_cache_total{result=\"stale\"}") >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "never stale: {metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, log) = gtc.terminate();
    // A record for each stale answer the guest got (the worker's own look-ups
    // are not audited): at least one, at most one per get.
    let stale = lines_about(&log, X, &["cache=\"stale\"", "outcome=\"ok\""]).len();
    assert!((1..=gets).contains(&stale), "{stale} of {gets}: {log}");
}

/// The refusals of `bundle` the audit lines account for: a record of its own
/// counts one, an aggregate (`count=`) its count.
fn refusals_in(log: &str, bundle: &str) -> u64 {
    let tag = format!("bundle={bundle} ");
    audit_lines(log)
        .into_iter()
        .filter(|l| l.contains(&tag) && l.contains("outcome=\"denied\""))
        .map(calls_in)
        .sum()
}

/// `GET {prefix}/get-names?n=N&from=K` on the probe: N distinct names
/// `probe/n<i>`, answered by kind; returns how many were denied.
async fn denied_names(gtc: &Gtc, prefix: &str, from: u64, n: u64) -> u64 {
    let answer = get_json(gtc.url(&format!("{prefix}/get-names?n={n}&from={from}"))).await;
    assert_eq!(answer.as_object().map(|o| o.len()), Some(1), "{answer}");
    answer["denied"]
        .as_u64()
        .unwrap_or_else(|| panic!("{answer}"))
}

/// Issue 22, item 3: one bundle floods refusals (eight requests at a time, each
/// a thousand distinct undeclared names) while its neighbour is refused exactly
/// 50 times: every one of the neighbour's refusals is in the audit trail (its
/// own records and aggregate counts add up to 50), so is every one of the
/// flooder's, and the flooder's audit volume stays within what its aggregates
/// allow per flush window. Before: 2.6 M audit lines in 12 s, and 5 of the
/// neighbour's 20 records lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_flood_loses_none_of_a_neighbours_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/_/flooder/x", b"flooder-value-0123");
    dev_put(&store, "acme/_/neighbour/x", b"neighbour-value-0123");
    let flooder = write_bundle(
        dir.path(),
        "flooder",
        "probe",
        &["/f"],
        r#"secrets = ["x"]"#,
    );
    let neighbour = write_bundle(
        dir.path(),
        "neighbour",
        "probe",
        &["/n"],
        r#"secrets = ["x"]"#,
    );
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}", flooder.display()),
            format!("--bundle={}", neighbour.display()),
            "--audit-flush=1s".into(),
        ],
        &env_for(&store),
    );
    let flood_for = Duration::from_secs(
        std::env::var("GTC_AUDIT_FLOOD_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2),
    );
    let started = Instant::now();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..8u64)
        .map(|task| {
            let base = gtc.base.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = client();
                let mut denied = 0;
                let mut from = task * 100_000_000;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let answer: serde_json::Value = client
                        .get(format!("{base}/f/get-names?n=1000&from={from}"))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    denied += answer["denied"].as_u64().unwrap_or(0);
                    from += 1000;
                }
                denied
            })
        })
        .collect();
    // The flood is on before the neighbour is refused.
    metric_until(&gtc, "gtc_secrets_get_total{outcome=\"denied\"}", |n| {
        n >= 10_000.0
    })
    .await;
    // The neighbour: 20 distinct undeclared names, and one 30 times.
    assert_eq!(denied_names(&gtc, "/n", 0, 20).await, 20);
    for _ in 0..30 {
        assert_eq!(probe_get(&gtc, "/n", b"z").await["error"], "denied");
    }
    // The flood goes on at least `flood_for` (GTC_AUDIT_FLOOD_SECONDS, for
    // measurements), and until the neighbour is done.
    tokio::time::sleep(flood_for.saturating_sub(started.elapsed())).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut flooder_denied = 0;
    for task in flood {
        flooder_denied += task.await.unwrap();
    }
    let flooded = started.elapsed();
    let metrics = gtc.metrics().await;
    for bundle in ["flooder", "neighbour"] {
        for counter in [
            "gtc_audit_records_dropped_total",
            "gtc_audit_disclosures_refused_total",
        ] {
            assert_eq!(
                metric(&metrics, &format!("{counter}{{bundle=\"{bundle}\"}}")),
                0.0,
                "{metrics}"
            );
        }
    }
    let aggregated = metric(
        &metrics,
        "gtc_audit_records_aggregated_total{bundle=\"flooder\"}",
    );
    assert!(aggregated >= flooder_denied as f64 * 0.9, "{metrics}");
    let (code, log) = gtc.terminate();
    assert_eq!(code, Some(0));

    assert_eq!(refusals_in(&log, "neighbour"), 50, "{log}");
    assert_eq!(refusals_in(&log, "flooder"), flooder_denied);
    // Each of the neighbour's distinct names has a record of its own, written
    // at once (not only counted in an aggregate).
    for i in 0..20 {
        let secret = format!("secrets://dev/acme/_/probe/n{i}");
        let own: Vec<&str> = lines_about(&log, &secret, &["bundle=neighbour "])
            .into_iter()
            .filter(|l| !l.contains("count="))
            .collect();
        assert_eq!(own.len(), 1, "{secret}: {log}");
    }
    // The flooder: per flush window at most 256 first records, 256 aggregates
    // and 32 "(other names)" aggregates, whatever it asks.
    let lines: Vec<&str> = audit_lines(&log)
        .into_iter()
        .filter(|l| l.contains("bundle=flooder "))
        .collect();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let windows = flooded.as_secs() + 2;
    eprintln!(
        "flooder: {flooder_denied} refusals in {flooded:.1?} → {} audit lines, {bytes} bytes; \
         neighbour: 50 refusals, all accounted for",
        lines.len()
    );
    assert!(
        lines.len() as u64 <= windows * (2 * 256 + 32),
        "{} lines in {windows} windows",
        lines.len()
    );
    assert!(
        lines.iter().any(|l| l.contains("secret=\"(other names)\"")),
        "{}",
        lines.join("\n")
    );
}

/// Issue 22, item 3: a disclosure whose audit record cannot be queued is
/// refused — the guest hears `unavailable`, never the value — as Vault refuses
/// a request it cannot audit. The writer is held with the test hook
/// `GTC_TEST_AUDIT_HOLD` (while the file exists the writer writes nothing, as
/// when the log cannot be written) and the queue is tiny (`--audit-queue=4`:
/// one place for a disclosure).
#[tokio::test]
async fn a_disclosure_that_cannot_be_audited_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    for name in ["a", "b", "c"] {
        dev_put(
            &store,
            &format!("acme/_/probe/{name}"),
            format!("value-of-{name}-0123456789").as_bytes(),
        );
    }
    let probe = write_bundle(dir.path(), "probe", "probe", &["/p"], r#"secrets = ["x"]"#);
    let hold = dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let mut env = env_for(&store);
    env.push(("GTC_TEST_AUDIT_HOLD", hold.display().to_string()));
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}", probe.display()),
            // Undeclared names are read (a fetch, a disclosure) on first use.
            "--allow-undeclared-secrets=probe".into(),
            "--audit-queue=4".into(),
        ],
        &env,
    );
    // `a` takes the one place; its record waits for the writer.
    assert_eq!(
        probe_get(&gtc, "/p", b"a").await["value"],
        "value-of-a-0123456789"
    );
    let refused = probe_get(&gtc, "/p", b"b").await;
    assert_eq!(
        refused,
        serde_json::json!({"error": "unavailable", "detail": ""})
    );
    let metrics = gtc.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "gtc_audit_disclosures_refused_total{bundle=\"probe\"}"
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "gtc_secrets_get_total{outcome=\"unavailable\"}"),
        1.0
    );
    // The writer catches up: disclosures are taken again.
    std::fs::remove_file(&hold).unwrap();
    metric_until(
        &gtc,
        "gtc_audit_records_written_total{bundle=\"probe\"}",
        |n| n >= 1.0,
    )
    .await;
    assert_eq!(
        probe_get(&gtc, "/p", b"c").await["value"],
        "value-of-c-0123456789"
    );
    let (code, log) = gtc.terminate();
    assert_eq!(code, Some(0), "{log}");
    for (name, records) in [("a", 1), ("b", 0), ("c", 1)] {
        let secret = format!("secrets://dev/acme/_/probe/{name}");
        assert_eq!(
            lines_about(&log, &secret, &["outcome=\"ok\"", "cache=\"miss\""]).len(),
            records,
            "{name}: {log}"
        );
    }
    let warning: Vec<&str> = audit_lines(&log)
        .into_iter()
        .filter(|l| l.contains("disclosures refused"))
        .collect();
    assert_eq!(warning.len(), 1, "{log}");
    assert!(
        warning[0].contains("bundle=probe") && warning[0].contains("refused=1"),
        "{}",
        warning[0]
    );
}
