//! The fleet benchmark: what N workers ask of one Vault.
//!
//! `cargo bench -p gtc --bench fleet` (after `tests/install-tools.sh`). One
//! OpenBao behind the counting proxy of the test suite (tests/support/proxy.rs);
//! for N = 1, 10 and 40 `gtc serve` processes, each serving a bundle that
//! declares SECRETS secrets, it counts the requests reaching Vault by kind
//! (login, renewal, KV read, transit decrypt, other = sys/health heartbeats):
//!
//! 1. **simultaneous start**: all N processes spawned at once, with
//!    GREENTIC_STARTUP_JITTER; total and peak rate (over a quarter of the jitter
//!    window) against N × (1 login + SECRETS reads + SECRETS decrypts) spread
//!    evenly over the window;
//! 2. **steady state** under light guest traffic, per worker per minute (a short
//!    cache TTL and token TTL so that a "minute" can be measured over
//!    STEADY seconds and scaled: the target is SECRETS ÷ TTL fetches plus the
//!    renewals);
//! 3. **outage**: the proxy drops everything silently (blackhole) for OUTAGE
//!    seconds: requests the fleet still sends (probes), per worker per minute;
//! 4. **after recovery**: the RECOVERY seconds after traffic flows again,
//!    scaled to a minute, and how long until every worker is ready again.
//!
//! It also measures the local OpenBao's own capacity (logins/s, KV reads/s,
//! decrypts/s, 8 concurrent clients, direct) and extrapolates to 1,000 workers ×
//! 20 secrets. Writes target/fleet-report.md. GTC_FLEET_QUICK=1: N = 1, 4 only,
//! shorter phases.

#[path = "../../tests/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::proxy::{Mode, Tally, VaultProxy};
use support::vault::{ROOT_TOKEN, SERVICE_ACCOUNT, VaultWorld, WORKER_NAMESPACE};
use support::*;

/// Declared secrets per worker.
const SECRETS: u64 = 5;
/// Cache TTL of the workers: short, so that a minute is measurable in seconds,
/// and longer than the start window, so the first refresh is not counted as
/// start-up load.
const CACHE_TTL: Duration = Duration::from_secs(15);
/// Token TTL of the role (renewed at 55–70 % of it): the first renewals come
/// after the start window too.
const TOKEN_TTL: Duration = Duration::from_secs(24);
/// GREENTIC_STARTUP_JITTER of the workers.
const JITTER: Duration = Duration::from_secs(8);

fn quick() -> bool {
    std::env::var_os("GTC_FLEET_QUICK").is_some()
}

fn steady() -> Duration {
    Duration::from_secs(if quick() { 12 } else { 30 })
}

fn outage() -> Duration {
    Duration::from_secs(if quick() { 8 } else { 15 })
}

fn recovery() -> Duration {
    Duration::from_secs(if quick() { 12 } else { 30 })
}

/// Tally samples every 100 ms, for peak rates.
struct Sampler {
    samples: Arc<std::sync::Mutex<Vec<(Instant, Tally)>>>,
    stop: Arc<AtomicBool>,
}

impl Sampler {
    fn start(proxy: &Arc<VaultProxy>) -> Sampler {
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (proxy, into, stopped) = (proxy.clone(), samples.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                into.lock().unwrap().push((Instant::now(), proxy.tally()));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Sampler { samples, stop }
    }

    /// The most requests of the kinds `count` picks forwarded in any `window`
    /// between `from` and `to`.
    fn peak(&self, from: Instant, to: Instant, window: Duration, count: fn(&Tally) -> u64) -> u64 {
        let samples = self.samples.lock().unwrap();
        let inside: Vec<_> = samples
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .collect();
        let mut peak = 0;
        for (i, (start, first)) in inside.iter().enumerate() {
            for (at, later) in &inside[i..] {
                if at.duration_since(*start) > window {
                    break;
                }
                peak = peak.max(count(later) - count(first));
            }
        }
        peak
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn fleet_env(world: &VaultWorld, proxy: &VaultProxy) -> Vec<(&'static str, String)> {
    let mut env = with_env(&world.worker_env(), "VAULT_ADDR", Some(&proxy.addr));
    for (key, value) in [
        ("GREENTIC_STARTUP_JITTER", format!("{}s", JITTER.as_secs())),
        (
            "GREENTIC_SECRETS_CACHE_TTL",
            format!("{}s", CACHE_TTL.as_secs()),
        ),
        ("GREENTIC_SECRETS_STALE_FOR", "5m".into()),
        ("GREENTIC_VAULT_BACKOFF_MAX", "10s".into()),
        ("RUST_LOG", "warn".into()),
    ] {
        env = with_env(&env, key, Some(&value));
    }
    env
}

/// Spawns `n` workers at once (one thread each) and returns them when all listen.
fn start_fleet(world: &VaultWorld, proxy: &VaultProxy, n: usize) -> Vec<Gtc> {
    let declared: Vec<String> = (0..SECRETS).map(|i| format!("\"s{i}\"")).collect();
    let bundle = write_bundle(
        world.dir.path(),
        "probe",
        "probe",
        &["/p"],
        &format!("secrets = [{}]", declared.join(", ")),
    );
    let env = fleet_env(world, proxy);
    let args = [format!("--bundle={}", bundle.display())];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| scope.spawn(|| Gtc::serve(&args, &env)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

async fn all_ready(workers: &[Gtc], limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let client = client();
    loop {
        let mut ready = 0;
        for gtc in workers {
            if let Ok(response) = client.get(gtc.url("/readyz")).send().await
                && response.status() == 200
            {
                ready += 1;
            }
        }
        if ready == workers.len() {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Light guest traffic (each worker's guest reads a declared secret every
/// ~100 ms) until `stop`; returns (answers 200, others).
fn traffic(workers: &[Gtc], stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, u64)> {
    let urls: Vec<String> = workers.iter().map(|g| g.url("/p/get")).collect();
    tokio::spawn(async move {
        let client = client();
        let (ok, other) = (AtomicU64::new(0), AtomicU64::new(0));
        while !stop.load(Ordering::Relaxed) {
            for url in &urls {
                match client.post(url).body("s0").send().await {
                    Ok(r) if r.status() == 200 => {
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        let counter = if body["value"].is_string() {
                            &ok
                        } else {
                            &other
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        other.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (ok.into_inner(), other.into_inner())
    })
}

/// Per worker per minute, by kind.
fn per_worker_minute(tally: &Tally, workers: usize, over: Duration) -> [f64; 6] {
    let scale = 60.0 / over.as_secs_f64() / workers as f64;
    [
        tally.login as f64 * scale,
        tally.renew as f64 * scale,
        tally.kv_read as f64 * scale,
        tally.decrypt as f64 * scale,
        tally.other as f64 * scale,
        tally.swallowed as f64 * scale,
    ]
}

fn row(label: &str, n: usize, values: [f64; 6]) -> String {
    format!(
        "| {n} | {label} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        values[0], values[1], values[2], values[3], values[4], values[5]
    )
}

struct FleetResult {
    rows: Vec<String>,
    start: String,
}

async fn run_fleet(world: &VaultWorld, n: usize) -> FleetResult {
    let proxy = Arc::new(VaultProxy::start(&world.bao.addr, Mode::Forward));
    let sampler = Sampler::start(&proxy);
    let mut rows = Vec::new();

    // 1. Simultaneous start.
    let spawned = Instant::now();
    let workers = start_fleet(world, &proxy, n);
    let spawn_took = spawned.elapsed();
    let ready_after = all_ready(&workers, JITTER + Duration::from_secs(30)).await;
    let start_end = spawned + JITTER + spawn_took + Duration::from_secs(2);
    if let Some(wait) = start_end.checked_duration_since(Instant::now()) {
        tokio::time::sleep(wait).await;
    }
    let start_tally = proxy.tally();
    let window = JITTER / 4;
    // Logins and secret fetches: what a start costs (heartbeats are not).
    let peak = sampler.peak(spawned, start_end, window, |t| {
        t.login + t.kv_read + t.decrypt
    });
    let per_worker = 1 + 2 * SECRETS;
    let even = (n as u64 * per_worker) as f64 * window.as_secs_f64() / JITTER.as_secs_f64();
    let (ratio, uniform) = if n == 1 {
        ("n/a".to_string(), "n/a".to_string())
    } else {
        (
            format!("{:.2}×", peak as f64 / even),
            format!("{:.2}×", uniform_jitter_peak_ratio(n)),
        )
    };
    let start_note = format!(
        "| {n} | {:.1} s | {} | {} | {} | {} | {:.0} | {peak} | {even:.1} | {ratio} | {uniform} | {} |",
        spawn_took.as_secs_f64(),
        start_tally.login,
        start_tally.kv_read,
        start_tally.decrypt,
        start_tally.forwarded(),
        (n as u64 * per_worker) as f64,
        ready_after.map_or("—".into(), |d| format!("{:.1} s", d.as_secs_f64()))
    );
    eprintln!("start: {start_note}");

    // 2. Steady state, with guest traffic.
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(&workers, stop.clone());
    let before = proxy.tally();
    tokio::time::sleep(steady()).await;
    let steady_tally = proxy.tally().since(&before);
    stop.store(true, Ordering::Relaxed);
    let (ok, other) = load.await.unwrap();
    rows.push(row(
        &format!(
            "steady state ({} s, {ok} guest requests answered 200, {other} not)",
            steady().as_secs()
        ),
        n,
        per_worker_minute(&steady_tally, n, steady()),
    ));

    // 3. Outage: everything dropped silently.
    proxy.set_mode(Mode::Blackhole);
    let before = proxy.tally();
    tokio::time::sleep(outage()).await;
    let outage_tally = proxy.tally().since(&before);
    rows.push(row(
        &format!("Vault dropped silently ({} s)", outage().as_secs()),
        n,
        per_worker_minute(&outage_tally, n, outage()),
    ));

    // 4. Recovery.
    proxy.set_mode(Mode::Forward);
    let recovered = Instant::now();
    let before = proxy.tally();
    let ready_again = all_ready(&workers, recovery()).await;
    if let Some(wait) = (recovered + recovery()).checked_duration_since(Instant::now()) {
        tokio::time::sleep(wait).await;
    }
    let recovery_tally = proxy.tally().since(&before);
    let recovery_peak = sampler.peak(
        recovered,
        recovered + recovery(),
        Duration::from_secs(1),
        Tally::forwarded,
    );
    rows.push(row(
        &format!(
            "after recovery ({} s; all ready again after {}; peak {} requests/s)",
            recovery().as_secs(),
            ready_again.map_or("—".into(), |d| format!("{:.1} s", d.as_secs_f64())),
            recovery_peak
        ),
        n,
        per_worker_minute(&recovery_tally, n, recovery()),
    ));
    for row in &rows {
        eprintln!("{row}");
    }
    drop(workers);
    FleetResult {
        rows,
        start: start_note,
    }
}

/// What independent uniform jitter alone gives: the expected most starts in any
/// window of a quarter of the jitter, for `n` workers, over the even share
/// (`n / 4`). Monte Carlo, 4000 draws.
fn uniform_jitter_peak_ratio(n: usize) -> f64 {
    use rand::Rng as _;
    let mut rng = rand::thread_rng();
    let trials = 4000;
    let mut total = 0usize;
    for _ in 0..trials {
        let mut starts: Vec<f64> = (0..n).map(|_| rng.gen_range(0.0..1.0)).collect();
        starts.sort_by(f64::total_cmp);
        let mut most = 0;
        for (i, first) in starts.iter().enumerate() {
            let inside = starts[i..]
                .iter()
                .take_while(|s| **s - first <= 0.25)
                .count();
            most = most.max(inside);
        }
        total += most;
    }
    total as f64 / trials as f64 / (n as f64 / 4.0)
}

/// Completed calls per second of `call`, 8 at a time for `over`.
async fn rate<F, Fut>(over: Duration, call: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (call, done) = (call.clone(), done.clone());
            tokio::spawn(async move {
                while started.elapsed() < over {
                    if call().await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// The local OpenBao's capacity, in calls per second.
#[derive(Debug, Clone, Copy)]
struct Capacity {
    logins: f64,
    reads: f64,
    decrypts: f64,
    health: f64,
}

/// The local OpenBao's capacity (8 concurrent clients, direct).
async fn capacity(world: &VaultWorld) -> Capacity {
    let over = Duration::from_secs(if quick() { 2 } else { 5 });
    let jwt = world.k8s.mint(
        WORKER_NAMESPACE,
        SERVICE_ACCOUNT,
        "vault",
        Duration::from_secs(3600),
    );
    let (status, login) = world.worker_login(&jwt).await;
    assert_eq!(status, 200, "{login}");
    let token = login["auth"]["client_token"].as_str().unwrap().to_string();
    let base = world.bao.addr.clone();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let (h, b, j) = (http.clone(), base.clone(), jwt.clone());
    let logins = rate(over, move || {
        let (h, b, j) = (h.clone(), b.clone(), j.clone());
        async move {
            h.post(format!("{b}/v1/auth/kubernetes/login"))
                .json(&json!({"role": support::vault::ROLE, "jwt": j}))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    let kv = format!("{base}/v1/secret/data/greentic/dev/acme/_/probe/s0");
    let (h, t, u) = (http.clone(), token.clone(), kv.clone());
    let reads = rate(over, move || {
        let (h, t, u) = (h.clone(), t.clone(), u.clone());
        async move {
            h.get(&u)
                .header("X-Vault-Token", &t)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    let (_, entry) = world
        .bao
        .api(
            "GET",
            "secret/data/greentic/dev/acme/_/probe/s0",
            Some(ROOT_TOKEN),
            None,
        )
        .await;
    let wrapped = entry["data"]["data"]["wrapped_dek"]
        .as_str()
        .unwrap()
        .to_string();
    // The tenant's own key, which the envelope names (v2).
    let key = entry["data"]["data"]["transit_key"].as_str().unwrap();
    let decrypt = format!("{base}/v1/transit/decrypt/{key}");
    let (h, u) = (http.clone(), format!("{base}/v1/sys/health?standbyok=true"));
    let health = rate(over, move || {
        let (h, u) = (h.clone(), u.clone());
        async move { h.get(&u).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    let (h, t) = (http.clone(), token.clone());
    let decrypts = rate(over, move || {
        let (h, t, u, w) = (h.clone(), t.clone(), decrypt.clone(), wrapped.clone());
        async move {
            h.post(&u)
                .header("X-Vault-Token", &t)
                .json(&json!({"ciphertext": w}))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    Capacity {
        logins,
        reads,
        decrypts,
        health,
    }
}

/// 1,000 workers × 20 secrets, at cache TTL `ttl`: requests/s by kind and the
/// share of the measured capacity.
fn extrapolate(report: &mut String, capacity: Capacity, renewals_per_worker_min: f64) {
    let Capacity {
        logins,
        reads,
        decrypts,
        health,
    } = capacity;
    let (workers, secrets) = (1000.0, 20.0);
    let _ = writeln!(
        report,
        "\n### Extrapolation: 1,000 workers × 20 secrets (capacity measured above)\n"
    );
    let _ = writeln!(
        report,
        "| cache TTL | KV reads/s | decrypts/s | renewals/s | sys/health/s (at most) | share of capacity |"
    );
    let _ = writeln!(report, "|---|---:|---:|---:|---:|---:|");
    let mut recommended = None;
    for ttl in [10.0, 30.0, 60.0, 120.0, 300.0] {
        let fetches = workers * secrets / ttl;
        let renew = workers * renewals_per_worker_min / 60.0;
        // At most one heartbeat per 5 s without another call: between refreshes.
        let heartbeats = workers * ((ttl / 5.0).ceil() - 1.0).max(0.0) / ttl;
        // Reads, decrypts, renewals (costing about a login, or less) and
        // heartbeats share one server: their shares of capacity add up.
        let share = fetches / reads + fetches / decrypts + renew / logins + heartbeats / health;
        if recommended.is_none() && share <= 0.25 {
            recommended = Some(ttl);
        }
        let _ = writeln!(
            report,
            "| {ttl:.0} s | {fetches:.0} | {fetches:.0} | {renew:.1} | {heartbeats:.0} | {:.0} % |",
            share * 100.0
        );
    }
    // A start: each worker's login and first fetches, spread over the jitter J:
    // (workers / J) × (1/logins + secrets/reads + secrets/decrypts) of capacity.
    let start_requests = workers * (1.0 + 2.0 * secrets);
    let per_worker_share = 1.0 / logins + secrets / reads + secrets / decrypts;
    let jitter_for_half = workers * per_worker_share / 0.5;
    let _ = writeln!(
        report,
        "\nA fleet start: 1,000 × (1 login + 20 reads + 20 decrypts) = {start_requests:.0} requests. \
         Spread over GREENTIC_STARTUP_JITTER = J, that is {:.0} % of this capacity ÷ J (in \
         seconds): J ≥ {jitter_for_half:.0} s keeps a simultaneous start of the whole fleet under \
         half of it (a rolling update, which starts a few pods at a time, needs far less).",
        workers * per_worker_share * 100.0
    );
    let _ = writeln!(
        report,
        "Smallest TTL in this table that keeps the steady load within 25 % of capacity: {}.",
        recommended.map_or("none of them".into(), |t| format!("{t:.0} s"))
    );
}

#[tokio::main]
async fn main() {
    let token_ttl = format!("{}s", TOKEN_TTL.as_secs());
    let world = VaultWorld::start(&token_ttl, "1h");
    for i in 0..SECRETS {
        world.put(
            &format!("acme/_/probe/s{i}"),
            format!("fleet-value-{i}").as_bytes(),
        );
    }
    let capacity = capacity(&world).await;
    eprintln!("capacity (logins/s, reads/s, decrypts/s): {capacity:?}");
    let sizes: &[usize] = if quick() { &[1, 4] } else { &[1, 10, 40] };
    let mut results = Vec::new();
    for &n in sizes {
        results.push(run_fleet(&world, n).await);
    }

    let mut report = String::new();
    let _ = writeln!(
        report,
        "## Fleet (`cargo bench -p gtc --bench fleet`)\n\n\
         {SECRETS} declared secrets per worker, cache TTL {} s, token TTL {} s (renewed at 55–70 %), \
         start-up jitter {} s, back-off cap 10 s; OpenBao 2.7.2 behind the counting proxy.\n",
        CACHE_TTL.as_secs(),
        TOKEN_TTL.as_secs(),
        JITTER.as_secs(),
    );
    let Capacity {
        logins,
        reads,
        decrypts,
        health,
    } = capacity;
    let _ = writeln!(
        report,
        "Local OpenBao capacity (direct, 8 concurrent clients): {logins:.0} logins/s \
         (each with a TokenReview to the loopback stand-in), {reads:.0} KV reads/s, \
         {decrypts:.0} transit decrypts/s, {health:.0} sys/health/s.\n"
    );
    let _ = writeln!(
        report,
        "### Simultaneous start\n\n\
         | workers | spawning took | logins | KV reads | decrypts | total (with heartbeats) | \
         N × (1 + 2 × {SECRETS}) | peak logins + reads + decrypts in {:.0} s | even spread in {:.0} s | \
         peak ÷ even | that ratio from uniform random jitter alone | all ready after |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        JITTER.as_secs_f64() / 4.0,
        JITTER.as_secs_f64() / 4.0
    );
    for result in &results {
        let _ = writeln!(report, "{}", result.start);
    }
    let _ = writeln!(
        report,
        "\n### Requests per worker per minute (measured over the stated seconds, scaled)\n\n\
         Target in steady state: {SECRETS} secrets ÷ {} s TTL = {:.0} KV reads and as many decrypts, \
         plus renewals ({:.1}–{:.1} per minute at 55–70 % of a {} s token).\n\n\
         | workers | phase | logins | renewals | KV reads | decrypts | other (sys/health) | dropped (during the outage) |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|",
        CACHE_TTL.as_secs(),
        SECRETS as f64 * 60.0 / CACHE_TTL.as_secs_f64(),
        60.0 / (TOKEN_TTL.as_secs_f64() * 0.70),
        60.0 / (TOKEN_TTL.as_secs_f64() * 0.55),
        TOKEN_TTL.as_secs()
    );
    for result in &results {
        for row in &result.rows {
            let _ = writeln!(report, "{row}");
        }
    }
    // Renewals of a production token (1 h TTL): ~1 per 40 min per worker.
    extrapolate(&mut report, capacity, 60.0 / (3600.0 * 0.625));
    let path = support::vault::root().join("target/fleet-report.md");
    std::fs::write(&path, &report).unwrap();
    println!("{report}\n(written to {})", path.display());
}
