//! One hostile bundle must not hurt its neighbours or the host. Each test runs the
//! `hostile` guest (written for these attacks, not the repository's probe) beside
//! `hello` on one `gtc serve`, measures hello before and during the attack in the
//! same run, and asserts that the neighbour keeps ≥ 99 % success with its median
//! within 3× of its own baseline — and that the client, the log and `/metrics` each
//! show what the host did about the attack.
//!
//! The tests take turns (one lock): each loads the machine on purpose, and a
//! neighbour measured while another test attacks would measure that test.

mod support;

use std::time::{Duration, Instant};
use support::neighbours::{Attack, Fared, attack, neighbour};
use support::upstream::read_message;
use support::*;

static TAKE_TURNS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// ≥ 99 % success and a median within 3× of the baseline (never asked to beat
/// 5 ms: sub-millisecond baselines are noise on a shared machine).
fn assert_unhurt(baseline: &Fared, under_attack: &Fared) {
    assert!(
        under_attack.ok * 100 >= under_attack.total * 99,
        "neighbour success {}/{} under attack",
        under_attack.ok,
        under_attack.total
    );
    let allowed = (baseline.median * 3).max(Duration::from_millis(5));
    assert!(
        under_attack.median <= allowed,
        "neighbour median {:?} under attack vs baseline {:?}",
        under_attack.median,
        baseline.median
    );
    eprintln!("neighbour: baseline {baseline:?}, under attack {under_attack:?}");
}

/// A host with `hostile` (manifest `extra`) at `/h` and `hello` at `/hello`.
fn host(dir: &std::path::Path, extra: &str, flags: &[&str]) -> Gtc {
    let hostile = write_bundle(dir, "hostile", "hostile", &["/h"], extra);
    let hello = write_bundle(dir, "hello", "hello", &["/hello"], "");
    let mut args = vec![
        format!("--bundle={}", hostile.display()),
        format!("--bundle={}", hello.display()),
    ];
    args.extend(flags.iter().map(|f| f.to_string()));
    Gtc::serve(&args, &[])
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// Finding 1: a slot is held until the instance is gone, not until the head is
/// sent. Once with a tiny pool (2 per bundle), once at the default pool (256)
/// with 300 head-then-hang requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_are_held_until_the_instance_is_gone() {
    let _turn = TAKE_TURNS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let gtc = host(
        dir.path(),
        "[limits]\ntimeout_ms = 3000",
        &["--max-instances=4"],
    );
    neighbour(&gtc.base, 5).await;
    let baseline = neighbour(&gtc.base, 40).await;

    let hanging = attack(&gtc.base, "/h/head-hang", 6);
    // The attack holds the bundle's whole cap (2) before the neighbour is measured.
    metric_until(
        &gtc,
        "gtc_bundle_instances_in_use{bundle=\"hostile\"}",
        |held| held >= 2.0,
    )
    .await;
    let metrics = gtc.metrics().await;
    assert_eq!(
        metric(&metrics, "gtc_bundle_instances_in_use{bundle=\"hostile\"}"),
        2.0,
        "never more than the cap: {metrics}"
    );
    let during = neighbour(&gtc.base, 50).await;
    let outcomes = hanging.await.unwrap();
    assert_unhurt(&baseline, &during);
    let held: Vec<_> = outcomes.iter().filter(|(s, _, _)| *s == 200).collect();
    let refused: Vec<_> = outcomes.iter().filter(|(s, _, _)| *s == 503).collect();
    assert_eq!(held.len(), 2, "{outcomes:?}");
    assert!(
        held.iter().all(|(_, _, complete)| !complete),
        "{outcomes:?}"
    );
    assert_eq!(refused.len(), 4, "{outcomes:?}");
    assert!(refused.iter().all(|(_, retry, _)| *retry), "{outcomes:?}");
    let metrics = gtc.metrics().await;
    assert_eq!(
        metric(&metrics, "gtc_bundle_instances_in_use{bundle=\"hostile\"}"),
        0.0
    );
    assert_eq!(
        metric(
            &metrics,
            "gtc_requests_total{bundle=\"hostile\",status=\"503\"}"
        ),
        4.0
    );
    let log = gtc.stop();
    assert!(
        log.contains("request queued: the bundle's concurrency cap of 2"),
        "{log}"
    );
    assert!(log.contains("no instance free within"), "{log}");

    // The default pool: 300 head-then-hang requests.
    let gtc = host(dir.path(), "[limits]\ntimeout_ms = 2000", &[]);
    neighbour(&gtc.base, 5).await;
    let baseline = neighbour(&gtc.base, 40).await;
    let hanging = attack(&gtc.base, "/h/head-hang", 300);
    metric_until(
        &gtc,
        "gtc_bundle_instances_in_use{bundle=\"hostile\"}",
        |held| held >= 128.0,
    )
    .await;
    let during = neighbour(&gtc.base, 100).await;
    let outcomes = hanging.await.unwrap();
    assert_unhurt(&baseline, &during);
    let held = outcomes.iter().filter(|(s, _, _)| *s == 200).count();
    assert_eq!(held, 128, "the hostile bundle holds exactly its fair share");
    // Every other request was refused properly: a 503 with Retry-After, never a
    // failed connection (status 0) or a completed body.
    let refused = outcomes
        .iter()
        .filter(|(s, retry, _)| *s == 503 && *retry)
        .count();
    assert_eq!(held + refused, 300, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|(s, _, complete)| *s != 200 || !complete),
        "a held request completed: {outcomes:?}"
    );
}

/// Finding 2: a trap, a hang or a time-out after the head aborts the response (the
/// client cannot mistake it for a complete body), is logged once, and is counted
/// as `status="aborted"`; a slow but finished stream stays a 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_after_the_head_abort_the_response() {
    let _turn = TAKE_TURNS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let gtc = host(dir.path(), "[limits]\ntimeout_ms = 1000", &[]);
    neighbour(&gtc.base, 5).await;
    let baseline = neighbour(&gtc.base, 30).await;
    let trap = attack(&gtc.base, "/h/head-trap", 1);
    let hang = attack(&gtc.base, "/h/head-hang", 1);
    let cut = attack(&gtc.base, "/h/trickle?n=100&ms=50", 1);
    let slow = attack(&gtc.base, "/h/trickle?n=3&ms=200", 1);
    let during = neighbour(&gtc.base, 30).await;
    for (name, outcome) in [
        ("trap", trap.await.unwrap()),
        ("hang", hang.await.unwrap()),
        ("cut", cut.await.unwrap()),
    ] {
        // The head may or may not reach the client before the abort (a trap right
        // after it races the write); either way the client never sees a complete
        // response.
        assert!(
            matches!(outcome[..], [(200 | 0, false, false)]),
            "{name}: the response must fail, got {outcome:?}"
        );
    }
    assert_eq!(slow.await.unwrap(), vec![(200, false, true)]);
    assert_unhurt(&baseline, &during);
    // A HEAD request gets no body; it still counts as the 200 it was.
    let head = client().head(gtc.url("/hello")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    // Counted when its (empty) body ends, just after the answer.
    metric_until(
        &gtc,
        "gtc_requests_total{bundle=\"hello\",status=\"200\"}",
        |count| count >= 66.0,
    )
    .await;
    let metrics = gtc.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "gtc_requests_total{bundle=\"hello\",status=\"200\"}"
        ),
        66.0,
        "{metrics}"
    );
    assert!(!metrics.contains("status=\"499\""), "{metrics}");
    assert_eq!(
        metric(
            &metrics,
            "gtc_requests_total{bundle=\"hostile\",status=\"aborted\"}"
        ),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "gtc_requests_total{bundle=\"hostile\",status=\"200\"}"
        ),
        1.0,
        "{metrics}"
    );
    let log = gtc.stop();
    assert_eq!(
        count(&log, "response head was sent; response aborted"),
        3,
        "{log}"
    );
    assert_eq!(count(&log, "wasm trap"), 1, "{log}");
    assert_eq!(count(&log, "exceeded its time limit"), 2, "{log}");
}

/// Finding 3 (and issue 22, item 2): header maps built on the guest's behalf are
/// counted in bytes against a per-request budget (a quarter of its memory limit)
/// and a per-bundle one (twice its memory limit) over its running requests; the
/// host's RSS stays within twice the running bundles' memory limits under the
/// attack. Each map is kept just under the per-map size limit (32 KiB), as the
/// original attack did with wasmtime's 128 KiB default; 24 at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_memory_stays_bounded_under_a_header_map_flood() {
    let _turn = TAKE_TURNS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let gtc = host(
        dir.path(),
        "[limits]\ntimeout_ms = 5000\nmemory_mib = 32",
        &[],
    );
    neighbour(&gtc.base, 5).await;
    let baseline = neighbour(&gtc.base, 30).await;
    let before = gtc.rss_kib();
    let mut peak = before;
    // Two at a time (each stopped by its own budget), then 24 at a time (the
    // bundle's budget stops them together). Beside both the neighbour's success
    // is asserted; its latency is the bench's, in a release build (BENCHMARKS.md,
    // "Neighbour under attack": 0.9 ms median beside 6 and 24 at a time). In this
    // debug build, with wasmtime unoptimised, the guests' 2 ms slices make every
    // yield costly, and the neighbour's median beside two floods was 3–11 ms
    // against a 2.5 ms baseline: too noisy to assert.
    for (at_once, rounds) in [(2, 3), (24, 2)] {
        let mut during = Vec::new();
        for _ in 0..rounds {
            let flood = attack(&gtc.base, "/h/fields?n=100000&size=30000", at_once);
            while !flood.is_finished() {
                peak = peak.max(gtc.rss_kib());
                during.push(neighbour(&gtc.base, 5).await);
            }
            // Stopped by a budget (500), or by the time limit (504) when many
            // share one bundle's turns.
            let outcomes = flood.await.unwrap();
            assert!(
                outcomes.iter().all(|(s, _, _)| [500, 504].contains(s)),
                "{outcomes:?}"
            );
            assert!(outcomes.iter().any(|(s, _, _)| *s == 500), "{outcomes:?}");
        }
        let during = Fared {
            ok: during.iter().map(|f| f.ok).sum(),
            total: during.iter().map(|f| f.total).sum(),
            median: {
                let mut medians: Vec<_> = during.iter().map(|f| f.median).collect();
                medians.sort();
                medians[medians.len() / 2]
            },
            times: Vec::new(),
        };
        eprintln!(
            "{at_once} at a time: neighbour {during:?} (baseline {baseline:?}); RSS before {} MiB, peak {} MiB",
            before / 1024,
            peak / 1024
        );
        assert_eq!(during.ok, during.total, "{during:?}");
    }
    // hostile 32 MiB + hello 64 MiB (the default).
    let limits_mib = 32 + 64;
    assert!(
        peak / 1024 <= 2 * limits_mib,
        "the host reached {} MiB (before: {} MiB)",
        peak / 1024,
        before / 1024
    );
    let log = gtc.stop();
    assert!(
        log.contains(
            "exceeded its host resource budget of 8388608 bytes (the request's header maps)"
        ),
        "{log}"
    );
    assert!(
        log.contains(
            "exceeded its host resource budget of 67108864 bytes (the bundle's header maps \
             over its running requests)"
        ),
        "{log}"
    );
}

/// Finding 4: what the host logs on a guest's behalf is rate-limited: a million
/// denied requests and a million malformed ones write a bounded log, with a
/// "suppressed" summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_rate_limited() {
    let _turn = TAKE_TURNS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let gtc = host(
        dir.path(),
        "[egress]\nallow = [\"127.0.0.1:9\"]\n[limits]\ntimeout_ms = 2000",
        &[],
    );
    neighbour(&gtc.base, 5).await;
    let baseline = neighbour(&gtc.base, 30).await;
    let no_path = attack(&gtc.base, "/h/no-path?authority=127.0.0.1:9&n=1000000", 2);
    let denied = attack(&gtc.base, "/h/denied?n=1000000", 2);
    // All four attackers run before the neighbour is measured.
    metric_until(
        &gtc,
        "gtc_bundle_instances_in_use{bundle=\"hostile\"}",
        |running| running >= 4.0,
    )
    .await;
    let during = neighbour(&gtc.base, 30).await;
    no_path.await.unwrap();
    denied.await.unwrap();
    // A later line of each kind carries the summary of what was dropped.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    attack(&gtc.base, "/h/denied?n=1", 1).await.unwrap();
    attack(&gtc.base, "/h/no-path?authority=127.0.0.1:9&n=1", 1)
        .await
        .unwrap();
    assert_unhurt(&baseline, &during);
    let metrics = gtc.metrics().await;
    // How many attempts fit in the time limit depends on the machine and on the
    // bundle's CPU share (119 to ~600 lines suppressed seen); the limiter must have
    // dropped some, and the log's size is bounded below.
    assert!(
        metric(
            &metrics,
            "gtc_log_lines_suppressed_total{bundle=\"hostile\"}"
        ) > 0.0,
        "{metrics}"
    );
    let log = gtc.stop();
    let denied_lines = count(&log, "not in the bundle's egress allowlist");
    let request_errors = count(&log, "http request error");
    eprintln!(
        "log: {} bytes, {denied_lines} denial lines, {request_errors} request-error lines",
        log.len()
    );
    assert!(denied_lines <= 100, "{denied_lines} denial lines");
    assert!(
        request_errors <= 100,
        "{request_errors} request-error lines"
    );
    assert!(log.len() < 256 << 10, "the log grew to {} bytes", log.len());
    assert!(
        log.contains("similar log lines about bundle hostile suppressed"),
        "{log}"
    );
    assert!(log.contains("similar log lines from wasmtime"), "{log}");
}

/// Finding 5: a bundle holds at most its share of the pool, the operator caps the
/// time limit a manifest may ask, and requests past the share get 503 +
/// Retry-After after a bounded wait — with a log line while they queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bundle_cannot_hold_every_slot() {
    let _turn = TAKE_TURNS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let gtc = host(
        dir.path(),
        "[limits]\ntimeout_ms = 600000",
        &[
            "--max-instances=8",
            "--max-timeout=2s",
            "--queue-timeout=500ms",
        ],
    );
    neighbour(&gtc.base, 5).await;
    let baseline = neighbour(&gtc.base, 30).await;
    let started = Instant::now();
    let hanging = attack(&gtc.base, "/h/head-hang", 40);
    metric_until(
        &gtc,
        "gtc_bundle_instances_in_use{bundle=\"hostile\"}",
        |held| held >= 4.0,
    )
    .await;
    let during = neighbour(&gtc.base, 50).await;
    let outcomes = hanging.await.unwrap();
    let took = started.elapsed();
    assert_unhurt(&baseline, &during);
    assert_eq!(outcomes.iter().filter(|(s, _, _)| *s == 200).count(), 4);
    assert_eq!(
        outcomes
            .iter()
            .filter(|(s, retry, _)| *s == 503 && *retry)
            .count(),
        36
    );
    assert!(
        took < Duration::from_secs(10),
        "capped at 2 s, took {took:?}"
    );
    let log = gtc.stop();
    assert!(
        log.contains("asks more than the operator allows; capped: timeout"),
        "{log}"
    );
    assert!(log.contains("request queued"), "{log}");
}

/// Sends `count` half-written request heads and keeps the connections open.
async fn idle_connections(base: &str, count: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt as _;
    let addr = base.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..count {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await {
            let _ = stream
                .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n")
                .await;
            held.push(stream);
        }
    }
    held
}

/// How many of `streams` the server has closed (EOF or an answer and EOF).
async fn closed_by_server(streams: &mut [tokio::net::TcpStream]) -> usize {
    use tokio::io::AsyncReadExt as _;
    let mut closed = 0;
    for stream in streams.iter_mut() {
        let mut buf = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_millis(20), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        closed += usize::from(read.unwrap_or(false));
    }
    closed
}

/// Finding 6: idle, half-sent connections cannot shut the host out: a connection
/// cap answers 503 past it, the header-read timeout frees the slots, and when
/// the process runs out of file descriptors the accept loop backs off instead of
/// spinning and flooding the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_shut_the_host_out() {
    let _turn = TAKE_TURNS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let gtc = host(
        dir.path(),
        "",
        &["--max-connections=100", "--header-read-timeout=3s"],
    );
    neighbour(&gtc.base, 5).await;
    let baseline = neighbour(&gtc.base, 30).await;
    // The neighbour keeps one connection open (as a router does) while 300 idle
    // connections arrive.
    let client = client();
    let keep = tokio::spawn({
        let base = gtc.base.clone();
        async move { neighbour(&base, 60).await }
    });
    let mut idle = idle_connections(&gtc.base, 300).await;
    let refused_now = closed_by_server(&mut idle).await;
    let during = keep.await.unwrap();
    assert!(
        refused_now >= 190,
        "only {refused_now} of 300 refused at the cap"
    );
    assert_unhurt(&baseline, &during);
    // The header-read timeout frees the slots the idle connections held.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let closed = closed_by_server(&mut idle).await;
        if closed == idle.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{closed} of {} idle connections closed",
            idle.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = client.get(gtc.url("/hello")).send().await.unwrap();
    assert_eq!(fresh.status(), 200);
    let metrics = gtc.metrics().await;
    assert!(
        metric(&metrics, "gtc_connections_refused_total") >= 190.0,
        "{metrics}"
    );
    let log = gtc.stop();
    assert!(
        log.contains("connection refused: the connection cap is reached"),
        "{log}"
    );
    // Rate-limited: at most 20 lines per 1 s window of the limiter, however many
    // connections were refused (~200 here); a loaded machine can spread the
    // refusals over more than one window.
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection refused: the connection cap"))
        .collect();
    let seconds = |line: &str| -> f64 {
        // `2026-12-04T22:16:39.814024Z …`: seconds within the day.
        let time = line.get(11..26).unwrap_or("00:00:00.000000");
        let parts: Vec<f64> = time.split(':').filter_map(|p| p.parse().ok()).collect();
        parts.iter().fold(0.0, |total, part| total * 60.0 + part)
    };
    let span =
        refusals.last().map_or(0.0, |l| seconds(l)) - refusals.first().map_or(0.0, |l| seconds(l));
    let windows = 1 + span.max(0.0).ceil() as usize;
    assert!(
        !refusals.is_empty() && refusals.len() <= 20 * windows,
        "{} refusal lines over {span:.2} s:\n{log}",
        refusals.len()
    );
    drop(idle);

    // Out of file descriptors: the accept loop backs off, says so a few times,
    // and recovers once the idle connections time out.
    let hostile = dir.path().join("hostile");
    let hello = dir.path().join("hello");
    let gtc = Gtc::serve_with_fd_limit(
        &[
            format!("--bundle={}", hostile.display()),
            format!("--bundle={}", hello.display()),
            "--header-read-timeout=1s".into(),
        ],
        &[],
        128,
    );
    let cpu_before = gtc.cpu_time();
    let idle = idle_connections(&gtc.base, 300).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let cpu = gtc.cpu_time() - cpu_before;
    drop(idle);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fresh = client.get(gtc.url("/hello")).send().await.unwrap();
    assert_eq!(fresh.status(), 200);
    let log = gtc.stop();
    let accept_lines = count(&log, "accept failed");
    eprintln!("out of descriptors: {accept_lines} accept lines, {cpu:?} CPU in 2 s");
    assert!(accept_lines >= 1, "{log}");
    assert!(accept_lines <= 50, "{accept_lines} accept lines");
    assert!(
        cpu < Duration::from_millis(1500),
        "the accept loop spun: {cpu:?}"
    );
}

/// The operator's egress guard: a manifest may list metadata addresses, loopback,
/// the host's own port or the secrets backend, and requests there are refused
/// all the same; malformed allowlist entries stop the start with exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_forbids_destinations_no_manifest_can_allow() {
    let _turn = TAKE_TURNS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let sink = tiny_http_server(16);
    let vault_stand_in = tiny_http_server(16);
    let own_port = free_port();
    let allow = format!(
        "[egress]\nallow = [\"169.254.169.254:80\", \"{sink}\", \"127.0.0.1:{own_port}\", \
         \"localhost:{own_port}\", \"{vault_stand_in}\"]"
    );
    let hostile = write_bundle(dir.path(), "hostile", "hostile", &["/h"], &allow);
    let outgoing = |gtc: &Gtc, authority: String| {
        let url = gtc.url(&format!("/h/outgoing?authority={authority}"));
        async move {
            client()
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let prohibited =
        serde_json::json!({"sent": false, "error": "ErrorCode::DestinationIpProhibited"});

    // Loopback not allowed (the default).
    let gtc = Gtc::serve(&[format!("--bundle={}", hostile.display())], &[]);
    assert_eq!(outgoing(&gtc, sink.to_string()).await, prohibited);
    assert_eq!(
        outgoing(&gtc, "169.254.169.254:80".into()).await,
        prohibited
    );
    let log = gtc.stop();
    assert!(
        log.contains("egress.allow names a destination the operator forbids"),
        "{log}"
    );
    assert!(
        log.contains("loopback (the operator has not allowed it)"),
        "{log}"
    );

    // Loopback allowed: the sink answers; the host's own port and the (Vault)
    // backend address stay forbidden, by address and by name.
    let env = [
        ("GREENTIC_SECRETS_BACKEND", "vault".to_string()),
        ("VAULT_ADDR", format!("http://{vault_stand_in}")),
        ("VAULT_K8S_ROLE", "gtc-worker".to_string()),
        (
            "VAULT_K8S_TOKEN_PATH",
            dir.path().join("no-token").display().to_string(),
        ),
    ];
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}", hostile.display()),
            format!("--listen=127.0.0.1:{own_port}"),
            "--egress-allow-loopback".into(),
        ],
        &env,
    );
    assert_eq!(outgoing(&gtc, sink.to_string()).await["status"], 200);
    for forbidden in [
        format!("127.0.0.1:{own_port}"),
        format!("localhost:{own_port}"),
        vault_stand_in.to_string(),
        "169.254.169.254:80".into(),
    ] {
        assert_eq!(
            outgoing(&gtc, forbidden.clone()).await,
            prohibited,
            "{forbidden}"
        );
    }
    let log = gtc.stop();
    assert!(log.contains("the host's own listener"), "{log}");
    assert!(log.contains("the secrets backend"), "{log}");

    // Malformed allowlist entries: user-info, an impossible port.
    for (entry, says) in [
        ("user@example.com:443", "user-info"),
        ("example.com:99999", "port must be a number"),
    ] {
        let bad = write_bundle(
            dir.path(),
            "bad",
            "hello",
            &["/b"],
            &format!("[egress]\nallow = [\"{entry}\"]"),
        );
        let out = run_gtc(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--bundle",
                bad.to_str().unwrap(),
            ],
            &[],
            b"",
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

/// Issue 22, item 1: CPU is shared per bundle, not per request. A bundle running
/// eight spinning requests and a bundle running one get about the same CPU time
/// (per request, tokio alone would give the one 1/9 of it), and a neighbour's
/// short requests are read and run within a slice, not after a round of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_is_shared_per_bundle_not_per_request() {
    let _turn = TAKE_TURNS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let spin = "[limits]\ntimeout_ms = 3000";
    let many = write_bundle(dir.path(), "many", "probe", &["/many"], spin);
    let one = write_bundle(dir.path(), "one", "probe", &["/one"], spin);
    let hello = write_bundle(dir.path(), "hello", "hello", &["/hello"], "");
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}", many.display()),
            format!("--bundle={}", one.display()),
            format!("--bundle={}", hello.display()),
            "--max-instances-per-bundle=16".into(),
            "--worker-threads=2".into(),
        ],
        &[],
    );
    neighbour(&gtc.base, 5).await;
    let baseline = neighbour(&gtc.base, 30).await;
    let cpu = |text: &str, bundle: &str| {
        metric(
            text,
            &format!("gtc_bundle_cpu_seconds_total{{bundle=\"{bundle}\"}}"),
        )
    };
    let before = gtc.metrics().await;
    let spinning_many = attack(&gtc.base, "/many/loop", 8);
    let spinning_one = attack(&gtc.base, "/one/loop", 1);
    metric_until(&gtc, "gtc_bundle_instances_in_use{bundle=\"many\"}", |n| {
        n >= 8.0
    })
    .await;
    let during = neighbour(&gtc.base, 30).await;
    let (many_out, one_out) = (spinning_many.await.unwrap(), spinning_one.await.unwrap());
    assert!(
        many_out.iter().chain(&one_out).all(|(s, _, _)| *s == 504),
        "{many_out:?} {one_out:?}"
    );
    let after = gtc.metrics().await;
    let (ran_many, ran_one) = (
        cpu(&after, "many") - cpu(&before, "many"),
        cpu(&after, "one") - cpu(&before, "one"),
    );
    eprintln!(
        "CPU seconds: many {ran_many:.3}, one {ran_one:.3}; neighbour {baseline:?} -> {during:?}"
    );
    assert!(ran_many > 1.0, "the spinning bundle barely ran: {ran_many}");
    assert!(
        ran_one >= 0.6 * ran_many,
        "one request's bundle got {ran_one:.3} s of CPU against {ran_many:.3} s for eight"
    );
    let waited = metric(&after, "gtc_bundle_cpu_wait_seconds_total{bundle=\"many\"}");
    assert!(
        waited > 1.0,
        "eight spinners on two turns waited {waited} s"
    );
    assert!(during.ok == during.total, "{during:?}");
    // The neighbour's request is read between the spinners' slices (tokio polls
    // for I/O before it runs the guest a turn was passed to) and, its bundle
    // holding no turn, ends their slices at once: in a debug build its 90th
    // percentile was 6–9 ms here, against 0.4–0.6 s when the spinners' slices
    // ran back to back and the host read new requests only every 61 polls.
    let allowed = (baseline.median * 5).max(Duration::from_millis(25));
    assert!(
        during.median <= allowed,
        "neighbour median {:?} beside the spinners vs baseline {:?}",
        during.median,
        baseline.median
    );
    let p90 = during.times[during.times.len() * 9 / 10];
    assert!(
        p90 <= allowed,
        "neighbour 90th percentile {p90:?} beside the spinners vs baseline {:?}: {:?}",
        baseline.median,
        during.times
    );
    gtc.stop();
}

/// A test knob for measurements: `name` parsed, or `default`.
fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seconds within the day of a log line (`2026-12-04T22:16:39.814024Z …`).
fn seconds_of(line: &str) -> f64 {
    let time = line.get(11..26).unwrap_or("00:00:00.000000");
    let parts: Vec<f64> = time.split(':').filter_map(|p| p.parse().ok()).collect();
    parts.iter().fold(0.0, |total, part| total * 60.0 + part)
}

/// Issue 22, item 5: one log budget for the host. Twelve bundles flood guest
/// output at once; the lines about bundles stay within the host's budget
/// (`--max-log-lines-per-second`, 100 here) whatever the number of bundles, one
/// line per window says how many the budget held back, and a quiet neighbour's
/// own lines still appear (each bundle is guaranteed a part of the budget).
/// Before: 16 bundles flooding → 11k lines in 20 s, growing with the bundles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_bundles_flooding_output_stay_within_the_host_log_budget() {
    let _turn = TAKE_TURNS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let flooders: usize = knob("GTC_LOG_FLOOD_BUNDLES", 12);
    let budget: u32 = knob("GTC_LOG_FLOOD_BUDGET", 100);
    let flood_for = Duration::from_secs(knob("GTC_LOG_FLOOD_SECONDS", 3));
    let mut args = vec![format!("--max-log-lines-per-second={budget}")];
    for i in 0..flooders {
        let id = format!("hostile-{i}");
        let bundle = write_bundle(dir.path(), &id, "hostile", &[&format!("/h{i}")], "");
        args.push(format!("--bundle={}", bundle.display()));
    }
    let quiet = write_bundle(dir.path(), "quiet", "probe", &["/q"], "");
    args.push(format!("--bundle={}", quiet.display()));
    let gtc = Gtc::serve(&args, &[]);
    let started = Instant::now();
    let mut flood = Attack::new();
    for i in 0..flooders {
        let path = format!("/h{i}/print?n=5000");
        flood.repeat(&gtc.base, "print", move || path.clone());
    }
    // The flood is on: lines are held back.
    metric_until(
        &gtc,
        "gtc_log_lines_suppressed_total{bundle=\"hostile-0\"}",
        |n| n >= 500.0,
    )
    .await;
    let printed = get_json(gtc.url("/q/print")).await;
    assert_eq!(printed["printed"], true);
    tokio::time::sleep(flood_for.saturating_sub(started.elapsed())).await;
    let requests: u64 = flood.stop().await.values().sum();
    let flooded = started.elapsed();
    // The summary of what the budget held back comes with the first line of a
    // later window: the quiet bundle prints until it is there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gtc.log().contains("log lines about bundles suppressed") {
        assert!(Instant::now() < deadline, "no host summary:\n{}", gtc.log());
        let _ = client().get(gtc.url("/q/print")).send().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = gtc.metrics().await;
    assert_eq!(
        metric(&metrics, "gtc_log_lines_suppressed_total{bundle=\"quiet\"}"),
        0.0,
        "{metrics}"
    );
    let held_back = metric(&metrics, "gtc_log_host_budget_suppressed_total");
    let log = gtc.stop();
    // The quiet bundle's lines were written during the flood.
    assert!(log.contains("probe says hello on stdout"), "{log}");
    assert!(log.contains("probe says hello on stderr"), "{log}");
    // Every line about a bundle (guest output, its warnings, the bundles'
    // summaries), over the whole run: at most the budget per window.
    let about: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("gtc::guest") || l.contains("similar log lines about bundle"))
        .collect();
    let span =
        about.last().map_or(0.0, |l| seconds_of(l)) - about.first().map_or(0.0, |l| seconds_of(l));
    let windows = span.max(0.0).ceil() as usize + 1;
    let host_summaries = count(&log, "log lines about bundles suppressed");
    eprintln!(
        "{flooders} bundles flooding output for {flooded:.1?} ({requests} requests): {} lines \
         about bundles over {span:.1} s ({windows} windows of {budget}), {held_back} held back, \
         {host_summaries} host summary lines; log {} bytes",
        about.len(),
        log.len()
    );
    assert!(
        about.len() <= budget as usize * windows,
        "{} lines about bundles over {span:.2} s",
        about.len()
    );
    assert!(held_back > 0.0);
}

/// A response written in pieces (head and first chunk, then the rest 2 ms apart)
/// reaches the client as written. With Nagle's algorithm on the accepted socket, a
/// later piece waited for the client's delayed ACK (40 ms on Linux once a
/// keep-alive connection trades requests and answers): about every other such
/// request took ≥ 40 ms, which is what made `hello`'s p99 at c8 with instance
/// reuse 23–32 ms in the bench, against 0.4–2 ms for `wasmtime serve`. Counted over
/// 20 requests on one connection: a busy machine may slow a few past 40 ms, the
/// held pieces slowed about 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_written_in_pieces_is_not_held_back() {
    let _turn = TAKE_TURNS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let gtc = host(dir.path(), "", &[]);
    let client = client();
    let mut times = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let response = client
            .get(gtc.url("/h/trickle?n=3&ms=2"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.bytes().await.unwrap().as_ref(), b"xxx");
        times.push(started.elapsed());
    }
    let held = times
        .iter()
        .filter(|t| **t >= Duration::from_millis(40))
        .count();
    eprintln!("20 responses in 3 pieces, 2 ms apart: {times:?}");
    assert!(
        held <= 4,
        "{held} of 20 responses written in pieces took ≥ 40 ms ({times:?}): the host holds small writes back"
    );
}

/// The head deadline follows a keep-alive connection's last request, not its
/// first: a client that sends a request every 0.6 s on one connection, with a 1 s
/// header-read timeout, is never cut off, and once it falls silent the
/// connection is closed one timeout after its last request (each connection has
/// one timer, re-armed when it fires early; `serve::head_deadline`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_deadline_follows_a_keep_alive_connections_last_request() {
    use tokio::io::AsyncWriteExt as _;
    let _turn = TAKE_TURNS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let gtc = host(dir.path(), "", &["--header-read-timeout=1s"]);
    let addr = gtc.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut last = Instant::now();
    for request in 0..5 {
        if request > 0 {
            // The gap is the input: each one is past half the timeout, so
            // the third request already comes after the first deadline.
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        last = Instant::now();
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let response = read_message(&mut stream).await;
        let status = response.as_ref().and_then(|(head, _)| head.lines().next());
        assert_eq!(
            status,
            Some("HTTP/1.1 200 OK"),
            "request {request} on the kept-alive connection"
        );
    }
    // Silent now: closed one timeout after the last request, not before it
    // (the server cannot start that deadline before it has the request) and
    // not much after it.
    let closed = tokio::time::timeout(Duration::from_secs(10), read_message(&mut stream)).await;
    let after = last.elapsed();
    assert!(
        matches!(closed, Ok(None)),
        "the idle connection was not closed: {closed:?}"
    );
    assert!(
        after >= Duration::from_secs(1),
        "closed {after:?} after its last request was sent, within the 1 s timeout"
    );
    assert!(
        after < Duration::from_secs(5),
        "closed {after:?} after its last request was sent"
    );
    gtc.stop();
}
