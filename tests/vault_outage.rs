//! When Vault cannot be reached: the worker answers 503 fast (or serves a cached
//! value within its stale bound), `/readyz` answers at once with the reason, and
//! neither a guest nor a misconfiguration multiplies the load on Vault.
//!
//! Real OpenBao behind a loopback proxy (support/proxy.rs) that counts the
//! requests reaching Vault by kind and drops traffic silently on demand, as a
//! NetworkPolicy does: `NoAccept` (the SYN is dropped: connect times out) and
//! `Blackhole` (connected, never answered).

mod support;

use std::time::{Duration, Instant};
use support::proxy::{Mode, Tally, VaultProxy};
use support::vault::*;
use support::*;

const SECRET: &[u8] = b"outage-test-signing-key-7d1e";
const SECRET_PATH: &str = "acme/support/webchat-bot/webhook-secret";
/// The default bundle time limit.
const TIME_LIMIT: Duration = Duration::from_secs(5);
/// The back-off cap the tests run with (GREENTIC_VAULT_BACKOFF_MAX).
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// The first back-off interval (`Backoff::default().base`).
const BACKOFF_BASE: Duration = Duration::from_millis(250);

/// The worker's environment with Vault reached through `proxy`.
fn env_via(
    world: &VaultWorld,
    proxy: &str,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = with_env(&world.worker_env(), "VAULT_ADDR", Some(proxy));
    env.push(("GREENTIC_VAULT_BACKOFF_MAX", "1s".into()));
    for (key, value) in extra {
        env = with_env(&env, key, Some(value));
    }
    env
}

fn serve_webchat(world: &VaultWorld, env: &[(&'static str, String)]) -> Gtc {
    let bundle = webchat_bundle(world.dir.path());
    Gtc::serve(&[format!("--bundle={}=support", bundle.display())], env)
}

/// A `probe` bundle at `/p` (tenant-wide secrets only: one Vault path per name).
fn serve_probe(world: &VaultWorld, env: &[(&'static str, String)], declared: &str) -> Gtc {
    let probe = write_bundle(world.dir.path(), "probe", "probe", &["/p"], declared);
    // It asks for names it does not declare (that is the point of these tests).
    Gtc::serve(
        &[
            format!("--bundle={}", probe.display()),
            "--allow-undeclared-secrets=probe".into(),
        ],
        env,
    )
}

async fn timed_webhook(gtc: &Gtc) -> (u16, Duration) {
    let started = Instant::now();
    let (status, _) = webhook(gtc, SECRET, r#"{"text":"hi"}"#).await;
    (status, started.elapsed())
}

/// `/readyz`: status, body, and how long it took.
async fn timed_readyz(gtc: &Gtc) -> (u16, String, Duration) {
    let started = Instant::now();
    let response = client().get(gtc.url("/readyz")).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, body, started.elapsed())
}

/// Polls `/readyz` until `done(status, body)`. Every answer must come before the
/// rendered probe's 3 s timeout, and the answer that shows `what` within 1 s (it
/// is asked again, up to three times, if the machine stalled it: this suite runs
/// many servers on two cores).
async fn readyz_until(gtc: &Gtc, what: &str, done: impl Fn(u16, &str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut slow = 0;
    loop {
        let (status, body, took) = timed_readyz(gtc).await;
        assert!(
            took < Duration::from_secs(3),
            "/readyz took {took:?}: {body}"
        );
        if done(status, &body) {
            if took < Duration::from_secs(1) {
                return body;
            }
            slow += 1;
            assert!(
                slow < 3,
                "/readyz showed {what} only after {took:?}: {body}"
            );
            continue;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never showed {what}; last {status} {body}\n{}",
            gtc.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn until_webhook_is(gtc: &Gtc, wanted: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, took) = timed_webhook(gtc).await;
        assert!(took < TIME_LIMIT, "an answer took {took:?}");
        if status == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the webhook never answered {wanted} (last {status})\n{}",
            gtc.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The log lines announcing that the backend went down.
fn down_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains("Vault backend is down"))
        .collect()
}

/// The most probes the back-off admits in `elapsed`: each interval is at least
/// half its ceiling (base, doubling, capped), plus the first call.
fn most_probes(elapsed: Duration) -> u64 {
    let mut probes = 1;
    let mut at = Duration::ZERO;
    let mut ceiling = BACKOFF_BASE;
    loop {
        at += ceiling / 2;
        if at > elapsed {
            return probes;
        }
        probes += 1;
        ceiling = (ceiling * 2).min(BACKOFF_MAX);
    }
}

#[tokio::test]
async fn a_silent_drop_at_start_answers_503_before_the_time_limit_then_recovers() {
    let world = VaultWorld::start("20m", "1h");
    world.put(SECRET_PATH, SECRET);
    // One after the other: serving and switching the proxy block the thread,
    // which would skew a concurrent sibling's timings.
    drop_at_start(&world, Mode::NoAccept).await;
    drop_at_start(&world, Mode::Blackhole).await;
}

async fn drop_at_start(world: &VaultWorld, mode: Mode) {
    let proxy = VaultProxy::start(&world.bao.addr, mode);
    let gtc = serve_webchat(world, &env_via(world, &proxy.addr, &[]));
    let mut slowest = Duration::ZERO;
    for _ in 0..4 {
        let (status, took) = timed_webhook(&gtc).await;
        assert_eq!(status, 503, "{mode:?}\n{}", gtc.log());
        assert!(
            took < TIME_LIMIT - Duration::from_secs(1),
            "{mode:?}: {took:?}"
        );
        slowest = slowest.max(took);
    }
    eprintln!("{mode:?} at start: 4 webhooks answered 503, the slowest in {slowest:?}");
    let reasons = readyz_until(&gtc, "the timeout", |status, body| {
        status == 503 && body.contains("timeout")
    })
    .await;
    assert!(reasons.contains("\"state\":\"down\""), "{reasons}");
    assert_eq!(
        proxy.tally().forwarded(),
        0,
        "{mode:?}: {:?}",
        proxy.tally()
    );
    let metrics = gtc.metrics().await;
    let fail_fast = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gtc_vault_fail_fast_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("gtc_vault_fail_fast_total is absent: {metrics}"));
    assert!(
        metrics.contains("gtc_vault_backend_state{state=\"down\"} 1") && fail_fast > 0,
        "{metrics}"
    );
    // The network is back: served again without a restart.
    proxy.set_mode(Mode::Forward);
    until_webhook_is(&gtc, 200).await;
    readyz_until(&gtc, "ready", |status, _| status == 200).await;
    let log = gtc.stop();
    let down = down_lines(&log);
    assert_eq!(down.len(), 1, "{mode:?}: one line per state change:\n{log}");
    assert!(
        down[0].contains("(timeout)") && down[0].contains("NetworkPolicy"),
        "{}",
        down[0]
    );
    assert!(log.contains("Vault backend is healthy again"), "{log}");
    assert!(!log.contains("exceeded its time limit"), "{log}");
}

#[tokio::test]
async fn a_silent_drop_on_a_running_worker_serves_stale_then_503_fast() {
    let world = VaultWorld::start("20m", "1h");
    world.put(SECRET_PATH, SECRET);
    drop_while_running(&world, Mode::Blackhole).await;
    drop_while_running(&world, Mode::NoAccept).await;
}

async fn drop_while_running(world: &VaultWorld, mode: Mode) {
    let proxy = VaultProxy::start(&world.bao.addr, Mode::Forward);
    let env = env_via(
        world,
        &proxy.addr,
        &[
            ("GREENTIC_SECRETS_CACHE_TTL", "1s"),
            ("GREENTIC_SECRETS_STALE_FOR", "4s"),
        ],
    );
    let gtc = serve_webchat(world, &env);
    until_webhook_is(&gtc, 200).await;
    proxy.set_mode(mode);
    let dropped_at = Instant::now();
    // The cached value was fetched at most TTL + one keeper tick before the
    // drop, so it is served until at least 5 s - 2 s = 3 s into it, and no
    // longer than 5 s + a refresh deadline (2 s).
    let mut seen = Vec::new();
    let mut slowest = Duration::ZERO;
    while dropped_at.elapsed() < Duration::from_secs(9) {
        let at = dropped_at.elapsed();
        let (status, took) = timed_webhook(&gtc).await;
        assert!(
            took < TIME_LIMIT - Duration::from_secs(2),
            "{mode:?}: an answer at {at:?} took {took:?}\n{}",
            gtc.log()
        );
        if at < Duration::from_millis(2800) {
            assert_eq!(status, 200, "{mode:?} at {at:?}\n{}", gtc.log());
        } else if at > Duration::from_millis(7200) {
            assert_eq!(status, 503, "{mode:?} at {at:?}");
        } else {
            assert!(status == 200 || status == 503, "{status}");
        }
        seen.push(status);
        slowest = slowest.max(took);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(seen.contains(&200) && seen.contains(&503), "{seen:?}");
    // Stale then 503: once the stale bound is spent, no 200 comes back while the
    // network stays down.
    let first_503 = seen.iter().position(|s| *s == 503).unwrap_or(seen.len());
    assert!(
        seen[first_503..].iter().all(|s| *s == 503),
        "{mode:?}: a 200 after a 503: {seen:?}"
    );
    eprintln!(
        "{mode:?} on a running worker: {} answers, {} stale 200s then 503s, the slowest in {slowest:?}",
        seen.len(),
        seen.iter().filter(|s| **s == 200).count()
    );
    readyz_until(&gtc, "the timeout", not_ready("timeout")).await;
    proxy.set_mode(Mode::Forward);
    until_webhook_is(&gtc, 200).await;
    let log = gtc.stop();
    let down = down_lines(&log);
    assert_eq!(down.len(), 1, "{mode:?}: one line per state change:\n{log}");
    assert!(down[0].contains("(timeout)"), "{}", down[0]);
    assert!(log.contains("serving a stale cached secret"), "{log}");
    assert!(!log.contains("exceeded its time limit"), "{log}");
}

/// Calls the probe's `get-names` route: requests of 1000 distinct names each,
/// starting at `from`, at least `requests` of them and for at least `lasting`;
/// returns the outcome counts summed.
async fn ask_distinct_names(
    gtc: &Gtc,
    from: u64,
    requests: u64,
    lasting: Duration,
) -> serde_json::Value {
    let mut total = serde_json::Map::new();
    let started = Instant::now();
    for r in 0.. {
        if r >= requests && started.elapsed() >= lasting {
            break;
        }
        let url = gtc.url(&format!("/p/get-names?from={}&n=1000", from + r * 1000));
        let response = client().get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{}", gtc.log());
        let counts: serde_json::Value = response.json().await.unwrap();
        for (kind, count) in counts.as_object().unwrap() {
            let sum = total.get(kind).and_then(|v| v.as_u64()).unwrap_or(0);
            total.insert(kind.clone(), (sum + count.as_u64().unwrap()).into());
        }
    }
    serde_json::Value::Object(total)
}

#[tokio::test]
async fn ten_thousand_distinct_names_stay_within_the_bundle_budget_and_the_probe_rate() {
    let world = VaultWorld::start("20m", "1h");
    world.put("acme/_/probe/real", b"neighbour-cold-read");
    let proxy = VaultProxy::start(&world.bao.addr, Mode::Forward);
    // A healthy Vault: the budget (5 fetches/s, burst 20) bounds the KV reads.
    let env = env_via(
        &world,
        &proxy.addr,
        &[
            ("GREENTIC_BUNDLE_FETCH_RATE", "5"),
            ("GREENTIC_BUNDLE_FETCH_BURST", "20"),
        ],
    );
    let greedy = write_bundle(world.dir.path(), "probe", "probe", &["/p"], "");
    let neighbour = write_bundle(world.dir.path(), "neighbour", "probe", &["/q"], "");
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}", greedy.display()),
            format!("--bundle={}", neighbour.display()),
            "--allow-undeclared-secrets=probe".into(),
            "--allow-undeclared-secrets=neighbour".into(),
        ],
        &env,
    );
    let before = proxy.tally();
    let started = Instant::now();
    let outcomes = ask_distinct_names(&gtc, 0, 10, Duration::from_secs(3)).await;
    let elapsed = started.elapsed();
    let reads = proxy.tally().since(&before).kv_read;
    let allowed = 20 + (5.0 * elapsed.as_secs_f64()).ceil() as u64;
    eprintln!(
        "10,000 names, healthy Vault: {reads} KV reads in {elapsed:?} (budget allows {allowed}); {outcomes}"
    );
    assert!(
        reads <= allowed,
        "{reads} KV reads in {elapsed:?} (budget allows {allowed}); {outcomes}"
    );
    let answered =
        outcomes["not-found"].as_u64().unwrap_or(0) + outcomes["unavailable"].as_u64().unwrap();
    assert!(answered >= 10_000 && answered % 1000 == 0, "{outcomes}");
    // The neighbour's cold read is not starved.
    assert_eq!(
        probe_get(&gtc, "/q", b"probe/real").await["value"],
        "neighbour-cold-read"
    );
    let metrics = gtc.metrics().await;
    assert!(
        metrics.lines().any(|l| l
            .starts_with("gtc_secrets_budget_refused_total{bundle=\"probe\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    let log = gtc.stop();
    let budget_lines = log
        .matches("exceeded its budget of backend fetches")
        .count();
    assert!(
        (1..=1 + elapsed.as_secs() / 10).contains(&(budget_lines as u64)),
        "logged once per window: {budget_lines}\n{log}"
    );

    // Sealed, with a budget that does not bind: the health state does.
    let unbounded = env_via(
        &world,
        &proxy.addr,
        &[
            ("GREENTIC_BUNDLE_FETCH_RATE", "100000"),
            ("GREENTIC_BUNDLE_FETCH_BURST", "100000"),
        ],
    );
    let gtc = serve_probe(&world, &unbounded, "");
    assert_eq!(
        probe_get(&gtc, "/p", b"probe/n0").await["error"],
        "not-found"
    );
    world.bao.cli_ok(&["operator", "seal"]);
    let before = proxy.tally();
    let started = Instant::now();
    let outcomes = ask_distinct_names(&gtc, 1_000_000, 10, Duration::from_secs(3)).await;
    let elapsed = started.elapsed();
    let reached = proxy.tally().since(&before);
    eprintln!(
        "10,000 names, sealed: {reached:?} in {elapsed:?} (at most {} probes)",
        most_probes(elapsed)
    );
    let refused = outcomes["unavailable"].as_u64().unwrap();
    assert!(
        refused >= 10_000 && outcomes.as_object().unwrap().len() == 1,
        "{outcomes}"
    );
    assert!(
        reached.forwarded() <= most_probes(elapsed),
        "{reached:?} in {elapsed:?}: more than one probe per back-off interval ({})",
        most_probes(elapsed)
    );
    let log = gtc.stop();
    let down = down_lines(&log);
    assert_eq!(down.len(), 1, "{log}");
    assert!(down[0].contains("(sealed)"), "{}", down[0]);
}

#[tokio::test]
async fn a_thousand_missing_declared_names_cost_at_most_the_bundle_budget() {
    // An idle bundle that declares 1000 names nobody seeded: the start-up prefetch
    // and the keeper charge its fetch budget (5/s, burst 20) like its requests do,
    // and a missing name backs off; nothing is asked of the guest at all.
    let world = VaultWorld::start("20m", "1h");
    let proxy = VaultProxy::start(&world.bao.addr, Mode::Forward);
    let env = env_via(
        &world,
        &proxy.addr,
        &[
            ("GREENTIC_BUNDLE_FETCH_RATE", "5"),
            ("GREENTIC_BUNDLE_FETCH_BURST", "20"),
        ],
    );
    let names: Vec<String> = (0..1000).map(|i| format!("\"missing-{i}\"")).collect();
    let declared = format!("secrets = [{}]", names.join(", "));
    let before = proxy.tally();
    let started = Instant::now();
    let gtc = serve_probe(&world, &env, &declared);
    // Wait until the keeper has spent its burst (work is happening), then watch
    // a few seconds more: the reads grow with the budget, not with the names.
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.tally().since(&before).kv_read < 20 {
        assert!(Instant::now() < deadline, "the keeper never read");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let reads = proxy.tally().since(&before).kv_read;
    let elapsed = started.elapsed();
    let allowed = 20 + (5.0 * elapsed.as_secs_f64()).ceil() as u64;
    eprintln!("1000 missing declared names: {reads} KV reads in {elapsed:?} (budget {allowed})");
    assert!(
        reads <= allowed,
        "{reads} KV reads in {elapsed:?}: more than the budget allows ({allowed})"
    );
    // Not ready (the names do not resolve), and it says why, without a value.
    let (status, body, _) = timed_readyz(&gtc).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("missing-"), "{body}");
    drop(gtc);
}

#[tokio::test]
async fn a_missing_role_costs_one_login_per_backoff_interval() {
    let world = VaultWorld::start("20m", "1h");
    world
        .bao
        .cli_ok(&["delete", &format!("auth/kubernetes/role/{ROLE}")]);
    let proxy = VaultProxy::start(&world.bao.addr, Mode::Forward);
    let reviewed_before = world.k8s.reviewed().len();
    // The count starts before the worker does: its own logins count too.
    let started = Instant::now();
    let gtc = serve_probe(&world, &env_via(&world, &proxy.addr, &[]), "");
    let asking = Instant::now();
    // Guests keep asking (1000 gets per request) for about six seconds.
    let mut outcomes = Vec::new();
    while asking.elapsed() < Duration::from_secs(6) || outcomes.len() < 5 {
        let from = outcomes.len() as u64 * 1000;
        outcomes.push(ask_distinct_names(&gtc, from, 1, Duration::ZERO).await);
    }
    let elapsed = started.elapsed();
    let logins = proxy.tally().login;
    eprintln!(
        "missing role: {logins} logins, {} TokenReviews in {elapsed:?} for {} guest requests of 1000 gets (at most {} probes)",
        world.k8s.reviewed().len() - reviewed_before,
        outcomes.len(),
        most_probes(elapsed)
    );
    assert!(
        (1..=most_probes(elapsed)).contains(&logins),
        "{logins} logins in {elapsed:?} for {} guest requests (at most {} probes)",
        outcomes.len(),
        most_probes(elapsed)
    );
    assert!(proxy.tally().kv_read == 0, "{:?}", proxy.tally());
    // OpenBao ran no TokenReview without a role; either way, never more than logins.
    assert!(world.k8s.reviewed().len() - reviewed_before <= logins as usize);
    assert!(
        outcomes.iter().all(|o| o["unavailable"] == 1000),
        "{outcomes:?}"
    );
    readyz_until(&gtc, "the refused login", not_ready("login refused (400)")).await;
    let log = gtc.stop();
    let down = down_lines(&log);
    assert_eq!(down.len(), 1, "{log}");
    assert!(down[0].contains("login refused"), "{}", down[0]);
}

fn not_ready(reason: &'static str) -> impl Fn(u16, &str) -> bool {
    move |status: u16, body: &str| status == 503 && body.contains(reason)
}

#[tokio::test]
async fn readyz_answers_at_once_with_the_reason_in_every_failure_mode() {
    let world = VaultWorld::start("20m", "1h");
    // Every worker of the first round starts first (starting blocks this thread,
    // which would skew the timing of answers awaited meanwhile).
    // A declared secret that is not there yet (the doctor's `read` step). "Not
    // found" is cached like any answer: a short TTL makes the seeding show soon.
    let short_ttl = with_env(
        &world.worker_env(),
        "GREENTIC_SECRETS_CACHE_TTL",
        Some("300ms"),
    );
    let missing = serve_webchat(&world, &short_ttl);
    // Nothing listening (the doctor's `tcp` step), and silent drops; each with
    // and without declared secrets.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let no_accept = VaultProxy::start(&world.bao.addr, Mode::NoAccept);
    let blackhole = VaultProxy::start(&world.bao.addr, Mode::Blackhole);
    let mut unreachable = Vec::new();
    for (addr, reason) in [
        (closed.as_str(), "connection refused"),
        (no_accept.addr.as_str(), "timeout"),
        (blackhole.addr.as_str(), "timeout"),
    ] {
        let env = env_via(&world, addr, &[]);
        unreachable.push((serve_webchat(&world, &env), reason));
        unreachable.push((serve_probe(&world, &env, ""), reason));
    }
    // A healthy backend without declared secrets is ready once logged in.
    let without_declared = serve_probe(&world, &world.worker_env(), "");
    tokio::join!(
        readyz_until(&missing, "the missing secret", not_ready("not found")),
        readyz_until(&without_declared, "ready", |status, _| status == 200),
        async {
            for (gtc, reason) in &unreachable {
                readyz_until(gtc, reason, not_ready(reason)).await;
            }
        },
    );
    drop((unreachable, without_declared));
    world.put(SECRET_PATH, SECRET);
    readyz_until(&missing, "ready", |status, _| status == 200).await;
    drop(missing);

    // The pod's ServiceAccount is not the one the role binds (the `login` step).
    world.set_sa_token("default");
    let gtc = serve_webchat(&world, &world.worker_env());
    let body = readyz_until(&gtc, "the refused login", not_ready("login refused (403)")).await;
    assert!(body.contains("gtc-worker"), "{body}");
    drop(gtc);
    world.set_sa_token(SERVICE_ACCOUNT);

    // OpenBao frozen (SIGSTOP) under a running worker (the doctor's `vault:
    // timeout`); meanwhile OpenBao cannot reach the TokenReview API, so a new
    // worker cannot log in.
    let gtc = serve_webchat(&world, &world.worker_env());
    readyz_until(&gtc, "ready", |status, _| status == 200).await;
    world.bao.cli_ok(&[
        "write",
        "auth/kubernetes/config",
        &format!("kubernetes_host={closed}"),
        "disable_local_ca_jwt=true",
        &format!("kubernetes_ca_cert={}", world.k8s.ca_pem),
    ]);
    let fresh = serve_webchat(&world, &world.worker_env());
    world.bao.suspend();
    readyz_until(&gtc, "the timeout", not_ready("timeout")).await;
    world.bao.resume();
    readyz_until(&fresh, "the failed login", not_ready("login")).await;
    readyz_until(&gtc, "ready again", |status, _| status == 200).await;

    // Sealed, under the running worker.
    world.bao.cli_ok(&["operator", "seal"]);
    readyz_until(&gtc, "sealed", not_ready("sealed")).await;
}

#[tokio::test]
async fn vault_side_counts_by_kind_match_one_login_and_one_fetch_per_secret() {
    // The proxy's count is what the fleet benchmark reports: checked here against
    // a known sequence, so the benchmark's numbers mean what they say.
    let world = VaultWorld::start("20m", "1h");
    world.put(SECRET_PATH, SECRET);
    let proxy = VaultProxy::start(&world.bao.addr, Mode::Forward);
    let gtc = serve_webchat(&world, &env_via(&world, &proxy.addr, &[]));
    readyz_until(&gtc, "ready", |status, _| status == 200).await;
    for _ in 0..20 {
        assert_eq!(timed_webhook(&gtc).await.0, 200);
    }
    let tally = proxy.tally();
    assert_eq!(
        Tally { other: 0, ..tally },
        Tally {
            login: 1,
            kv_read: 1,
            decrypt: 1,
            ..Tally::default()
        },
        "start-up: one login, one KV read and one decrypt for the one declared secret"
    );
    // At most an idle heartbeat besides.
    assert!(tally.other <= 1, "{tally:?}");
}

/// A signed webhook through `router` → (status, Retry-After, body).
async fn router_post(router: &Router) -> (u16, Option<String>, String) {
    let body = r#"{"text":"via router"}"#;
    let response = client()
        .post(format!("{}/webhook", router.base))
        .header("x-greentic-signature", sign(SECRET, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry_after, response.text().await.unwrap())
}

#[tokio::test]
async fn while_vault_is_down_the_router_answers_503_with_retry_after_not_502() {
    let world = VaultWorld::start("20m", "1h");
    world.put(SECRET_PATH, SECRET);
    let proxy = VaultProxy::start(&world.bao.addr, Mode::Forward);
    let gtc = serve_webchat(&world, &env_via(&world, &proxy.addr, &[]));
    // The worker's Service (endpoint only while /readyz is 200), the router in front.
    let service = support::service::KubeService::start(&gtc.base);
    let router = Router::start_with_metrics(std::slice::from_ref(&service.addr));
    service.until_endpoint(true).await;
    assert_eq!(router_post(&router).await.0, 200);

    // Vault goes away: the worker turns unready, the Service loses its endpoint.
    proxy.set_mode(Mode::NoAccept);
    readyz_until(&gtc, "the timeout", not_ready("timeout")).await;
    service.until_endpoint(false).await;
    let (status, retry_after, body) = router_post(&router).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("5"), "{body}");
    assert!(body.contains("no_ready_worker"), "{body}");
    let metrics = client()
        .get(router.metrics.as_deref().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("gtc_route_upstream_failures_total{route=\"*\",cause=\"no_ready_worker\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gtc_route_responses_total{status=\"503\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("status=\"502\""), "{metrics}");

    // Vault is back: the worker is ready again and the router forwards.
    proxy.set_mode(Mode::Forward);
    service.until_endpoint(true).await;
    assert_eq!(router_post(&router).await.0, 200);
}
