//! Instance reuse, end to end through the real `gtc` binary: a bundle that opts in
//! (`[instances] reuse`) keeps its globals between its own requests and nobody
//! else's; its per-request limits start afresh; a fault, its request count, its
//! age (at most the secrets cache's TTL) and idleness retire an instance; the
//! operator's maxima and switch win over the manifest; an idle instance gives its
//! pool slot up to a neighbour that needs it.

mod support;

use serde_json::Value;
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

/// A probe bundle `id` on `/id` with `instances` as its `[instances]` table
/// (empty: no table, fresh instances).
fn probe(root: &Path, id: &str, instances: &str, extra: &str) -> String {
    let table = if instances.is_empty() {
        String::new()
    } else {
        format!("[instances]\n{instances}\n")
    };
    let dir = write_bundle(
        root,
        id,
        "probe",
        &[&format!("/{id}")],
        &format!("{extra}\n{table}"),
    );
    format!("--bundle={}", dir.display())
}

async fn count(gtc: &Gtc, bundle: &str) -> u64 {
    let (status, body) = gtc.get(&format!("/{bundle}/count")).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    answer["count"].as_u64().unwrap()
}

async fn counts(gtc: &Gtc, bundle: &str, n: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(count(gtc, bundle).await);
    }
    seen
}

fn labelled(name: &str, bundle: &str) -> String {
    format!("{name}{{bundle=\"{bundle}\"}}")
}

fn retired(bundle: &str, reason: &str) -> String {
    format!("gtc_instances_retired_total{{bundle=\"{bundle}\",reason=\"{reason}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reusing_bundle_keeps_its_globals_and_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    let gtc = Gtc::serve(
        &[
            probe(dir.path(), "reuser", "reuse = 3", ""),
            probe(dir.path(), "other", "reuse = 100", ""),
            probe(dir.path(), "fresh", "", ""),
        ],
        &env_for(&store),
    );
    // Three requests per instance, then a new one.
    assert_eq!(counts(&gtc, "reuser", 7).await, [1, 2, 3, 1, 2, 3, 1]);
    // The same component in another bundle: its own instances, its own globals.
    assert_eq!(counts(&gtc, "other", 2).await, [1, 2]);
    assert_eq!(counts(&gtc, "fresh", 3).await, [1, 1, 1]);
    // Each request of a reused instance has its own 1000 secret reads: were the
    // count carried over, the second request would be stopped (500).
    for _ in 0..2 {
        let (status, body) = gtc.get("/other/get-many?n=1000").await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        count(&gtc, "other").await,
        3,
        "the same instance throughout"
    );
    // A trap retires the instance: the next request starts from a fresh one.
    let (status, _) = gtc.get("/other/recurse").await;
    assert_eq!(status, 500);
    assert_eq!(count(&gtc, "other").await, 1);
    // A guest that returns holding its response-outparam gets its client a 500
    // at once (not a wait on an instance that goes on serving others), and the
    // instance is retired.
    assert_eq!(count(&gtc, "other").await, 2);
    let (status, body) = gtc.get("/other/hoard").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(count(&gtc, "other").await, 1);

    let metrics = gtc.metrics().await;
    for (line, value) in [
        (labelled("gtc_instances_created_total", "reuser"), 3.0),
        (labelled("gtc_instances_reused_total", "reuser"), 4.0),
        (retired("reuser", "requests"), 2.0),
        (labelled("gtc_instances_idle", "reuser"), 1.0),
        (labelled("gtc_instances_created_total", "other"), 3.0),
        (retired("other", "fault"), 2.0),
        (labelled("gtc_instances_created_total", "fresh"), 3.0),
        (labelled("gtc_instances_reused_total", "fresh"), 0.0),
        (labelled("gtc_instances_idle", "fresh"), 0.0),
    ] {
        assert_eq!(metric(&metrics, &line), value, "{line}\n{metrics}");
    }
    let log = gtc.stop();
    assert!(
        log.contains("instances are reused (globals persist between this bundle's requests)"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_caps_reuse_or_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    let bundle = probe(dir.path(), "reuser", "reuse = 3", "");
    let capped = Gtc::serve(
        &[bundle.clone(), "--max-instance-reuse=2".into()],
        &env_for(&store),
    );
    assert_eq!(counts(&capped, "reuser", 4).await, [1, 2, 1, 2]);
    let log = capped.stop();
    assert!(log.contains("capped: instances.reuse 3 -> 2"), "{log}");

    let off = Gtc::serve(&[bundle, "--no-instance-reuse".into()], &env_for(&store));
    assert_eq!(counts(&off, "reuser", 3).await, [1, 1, 1]);
    let log = off.stop();
    assert!(log.contains("instance reuse is off on this host"), "{log}");
}

/// A guest that keeps a secret in memory sees a rotated value once its
/// instance's age passes the secrets cache's TTL, whatever `max_age_s` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_reaches_a_guest_that_keeps_it_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    let (old, new) = (
        b"kept-value-before-rotation-0123".as_slice(),
        b"kept-value-after-rotation-45678".as_slice(),
    );
    dev_put(&store, "acme/_/keeper/token", old);
    let mut env = env_for(&store);
    env.push(("GREENTIC_SECRETS_CACHE_TTL", "1s".to_string()));
    let gtc = Gtc::serve(
        &[probe(
            dir.path(),
            "keeper",
            "reuse = 100000\nmax_age_s = 3600",
            "secrets = [\"keeper/token\"]",
        )],
        &env,
    );
    let kept = |gtc: &Gtc| {
        let request = client()
            .post(gtc.url("/keeper/get-once"))
            .body("keeper/token")
            .send();
        async move { request.await.unwrap().json::<Value>().await.unwrap() }
    };
    let old_text = String::from_utf8(old.to_vec()).unwrap();
    let new_text = String::from_utf8(new.to_vec()).unwrap();
    assert_eq!(kept(&gtc).await["value"], old_text.as_str());
    dev_put(&store, "acme/_/keeper/token", new);
    let rotated = Instant::now();
    // The instance keeps the old value while it lives...
    assert_eq!(kept(&gtc).await["value"], old_text.as_str());
    // ...and is retired at the cache's TTL (1 s), not at max_age_s (1 h).
    loop {
        let answer = kept(&gtc).await;
        if answer["value"] == new_text.as_str() {
            break;
        }
        assert_eq!(answer["value"], old_text.as_str(), "{answer}");
        assert!(
            rotated.elapsed() < Duration::from_secs(30),
            "the kept value was never refreshed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = gtc.metrics().await;
    assert!(
        metric(&metrics, &retired("keeper", "age")) >= 1.0,
        "{metrics}"
    );
    gtc.stop();
}

/// An idle instance is retired after its idle timeout, and gives its pool slot
/// up at once to a neighbour that finds the pool full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_time_out_and_yield_their_slots_to_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    let gtc = Gtc::serve(
        &[
            probe(
                dir.path(),
                "idler",
                "reuse = 100\nidle_timeout_ms = 300",
                "",
            ),
            probe(dir.path(), "holder", "reuse = 100", ""),
            probe(dir.path(), "neighbour", "", ""),
            "--max-instances=3".into(),
            "--max-instances-per-bundle=2".into(),
        ],
        &env_for(&store),
    );
    assert_eq!(count(&gtc, "idler").await, 1);
    metric_until(&gtc, &retired("idler", "idle"), |v| v == 1.0).await;
    assert_eq!(
        metric(
            &gtc.metrics().await,
            &labelled("gtc_instances_idle", "idler")
        ),
        0.0
    );

    // The holder keeps two instances idle (of a pool of three)...
    let sleep = |bundle: &'static str| {
        let request = client()
            .get(gtc.url(&format!("/{bundle}/sleep?ms=400")))
            .send();
        async move { request.await.unwrap().status().as_u16() }
    };
    let (a, b) = tokio::join!(sleep("holder"), sleep("holder"));
    assert_eq!((a, b), (200, 200));
    metric_until(&gtc, &labelled("gtc_instances_idle", "holder"), |v| {
        v == 2.0
    })
    .await;
    // ...and the neighbour's two requests at once need two slots: the second
    // takes an idle one's, instead of waiting a second and getting 503.
    let started = Instant::now();
    let (a, b) = tokio::join!(sleep("neighbour"), sleep("neighbour"));
    assert_eq!((a, b), (200, 200), "after {:?}", started.elapsed());
    let metrics = gtc.metrics().await;
    assert_eq!(
        metric(&metrics, &retired("holder", "evicted")),
        1.0,
        "{metrics}"
    );
    // Listed once a request of the bundle has waited for a slot: none did.
    assert!(
        !metrics.contains("gtc_requests_queued_total{bundle=\"neighbour\"}"),
        "{metrics}"
    );
    gtc.stop();
}
