//! Neighbour under attack (issue 22): does a well-behaved bundle keep its speed and
//! its audit trail while a hostile bundle on the same host attacks?
//!
//! `cargo bench -p gtc --bench neighbours` (about 4 minutes; `GTC_BENCH_QUICK=1` for a
//! short smoke run; `GTC_BENCH_ONLY=headers-6,headers-24,spinners,names,output,mix` for
//! some rows). Writes target/neighbours-report.md. Everything runs on 127.0.0.1.
//!
//! Each row starts a fresh release `gtc serve` with default flags (so the attacker
//! holds at most its fair share of the instance pool) and its own empty dev store,
//! then, in the same run:
//! 1. samples the neighbour alone for the row's window (the baseline): one keep-alive
//!    connection, sequential requests 10 ms apart, measured on a thread of its own;
//! 2. starts the attack, waits a moment for it to ramp up, and samples the neighbour
//!    again for the same window while the attack runs;
//! 3. reads `/metrics`, stops the attack and the host (SIGTERM, so the audit queue is
//!    drained into the log) and reads the log.
//!
//! Host RSS is sampled every 20 ms; its peak under attack is compared with twice
//! the sum of the bundles' memory limits (as the host logged them at load). The
//! neighbour targets: p50 ≤ 3× and p99 ≤ 10× its own baseline, ≥ 99 % answered 200;
//! in the audit row the neighbour's own refusals (20 `get`s of undeclared names,
//! spread over the attack) must all be in the audit trail.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, Read as _, Seek as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::neighbours::{Attack, Fared, NeighbourRequest, Until, hello_request, sample_apart};
use support::*;

fn quick() -> bool {
    std::env::var_os("GTC_BENCH_QUICK").is_some()
}

/// How long the neighbour is sampled, alone and then under attack.
fn window(full_seconds: u64) -> Duration {
    Duration::from_secs(if quick() { 3 } else { full_seconds })
}

/// The pause between two of the neighbour's requests.
const PAUSE: Duration = Duration::from_millis(10);
/// The neighbour's own refused `get`s in the audit row.
const REFUSALS: u64 = 20;
/// webchat-bot's signing key in the dev store.
const WEBHOOK_KEY: &[u8] = b"neighbour-bench-webhook-key";

/// The peak resident memory of a process, sampled every 20 ms on a thread of its own.
struct RssWatch {
    pid: u32,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let peak = Arc::new(AtomicU64::new(rss_kib_of(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib_of(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssWatch { pid, peak, stop }
    }

    /// The peak since the last call, in MiB; a new peak starts from now.
    fn take_mib(&self) -> f64 {
        let now = rss_kib_of(self.pid);
        self.peak.swap(now, Ordering::Relaxed).max(now) as f64 / 1024.0
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What a row shows in its audit/log column, besides the log's rate.
#[derive(Clone, Copy, PartialEq)]
enum Show {
    /// The attacker's answers by status.
    Answers,
    /// The attacker's CPU time and its wait for a turn, over the attack window.
    Cpu,
    /// Audit lines and bytes, records dropped, the neighbour's refusals recorded.
    Audit,
    /// Guest output lines per second and log lines suppressed.
    GuestOutput,
    /// Log lines suppressed by the per-bundle limiters.
    Suppressed,
}

/// The well-behaved bundle measured beside the attack.
struct Neighbour {
    /// Its name in the table.
    label: &'static str,
    /// Its bundle id (for its metrics).
    bundle: &'static str,
    /// Its request, for a host's base URL.
    request: Box<dyn Fn(&str) -> NeighbourRequest>,
}

/// One row of the bench.
struct Scenario {
    key: &'static str,
    /// What the attack is (the table's first column).
    attack: String,
    /// `--bundle` directories.
    bundles: Vec<std::path::PathBuf>,
    /// The attacking bundles' ids (for their cap, instances and CPU).
    attackers: Vec<String>,
    neighbour: Neighbour,
    seconds: u64,
    /// The `neighbour` probe (at `/n`) makes 20 refused `get`s during the attack.
    refusals: bool,
    start: Box<dyn FnOnce(&str) -> Attack>,
    show: Vec<Show>,
}

/// One measured row.
struct Row {
    key: &'static str,
    attack: String,
    neighbour: &'static str,
    baseline: Fared,
    during: Fared,
    rss_baseline_mib: f64,
    rss_peak_mib: f64,
    limits_mib: u64,
    figures: Vec<String>,
    /// In the audit row: (the neighbour's refusals in the audit trail, made).
    refusals: Option<(u64, u64)>,
    load: String,
}

impl Row {
    fn p50_ratio(&self) -> f64 {
        ratio(self.during.median, self.baseline.median)
    }

    fn p99_ratio(&self) -> f64 {
        ratio(self.during.p99(), self.baseline.p99())
    }

    /// The targets this row misses (empty: all met).
    fn missed(&self) -> Vec<String> {
        let mut missed = Vec::new();
        if self.p50_ratio() > 3.0 {
            missed.push(format!("p50 {:.1}× > 3×", self.p50_ratio()));
        }
        if self.p99_ratio() > 10.0 {
            missed.push(format!("p99 {:.1}× > 10×", self.p99_ratio()));
        }
        if self.during.ok * 100 < self.during.total * 99 {
            missed.push(format!(
                "{} of {} answered",
                self.during.ok, self.during.total
            ));
        }
        if self.rss_peak_mib > 2.0 * self.limits_mib as f64 {
            missed.push(format!(
                "RSS {:.0} > {} MiB",
                self.rss_peak_mib,
                2 * self.limits_mib
            ));
        }
        if let Some((recorded, made)) = self.refusals
            && recorded < made
        {
            missed.push(format!("{} of {made} refusals audited", recorded));
        }
        missed
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// The first metric line `name_and_labels value`, or 0.
fn metric_or_zero(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The sum of every metric line whose name and labels start with `prefix`.
fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .sum()
}

/// The number after `key=` in a log line.
fn field(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Lines of `path` from byte `from` to byte `to`: (all, those containing `needle`).
fn lines_between(path: &Path, from: u64, to: u64, needle: &str) -> (u64, u64) {
    let mut file = std::fs::File::open(path).unwrap();
    file.seek(std::io::SeekFrom::Start(from)).unwrap();
    let reader = std::io::BufReader::new(file.take(to.saturating_sub(from)));
    let (mut all, mut matching) = (0, 0);
    for line in reader.split(b'\n').map_while(Result::ok) {
        all += 1;
        if memchr_find(&line, needle.as_bytes()) {
            matching += 1;
        }
    }
    (all, matching)
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The time now, `2026-12-05 01:02:03 UTC`.
fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A dev store in `dir` holding webchat-bot's signing key.
fn dev_store(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("store.json");
    if !store.exists() {
        dev_put(&store, "local/_/webchat-bot/webhook-secret", WEBHOOK_KEY);
    }
    store
}

async fn run(dir: &Path, scenario: Scenario) -> Row {
    eprintln!("\n== {} ({})", scenario.attack, scenario.key);
    let load = load_average();
    let store = dev_store(dir);
    let mut args: Vec<String> = scenario
        .bundles
        .iter()
        .map(|b| format!("--bundle={}", b.display()))
        .collect();
    if scenario.refusals {
        // The neighbour that makes refused gets (it declares no secret).
        let refuser = write_bundle(dir, "neighbour", "probe", &["/n"], "");
        args.push(format!("--bundle={}", refuser.display()));
    }
    let gtc = Gtc::serve_within(
        &args,
        &[("GREENTIC_DEV_STORE", store.display().to_string())],
        Duration::from_secs(120),
    );
    let request = (scenario.neighbour.request)(&gtc.base);
    let window = window(scenario.seconds);
    let rss = RssWatch::start(gtc.pid());

    // Warm up, then the baseline.
    sample_apart(Until::Count(20), PAUSE, request.clone())
        .join()
        .unwrap();
    rss.take_mib();
    let baseline = sample_apart(Until::Elapsed(window), PAUSE, request.clone())
        .join()
        .unwrap();
    let rss_baseline_mib = rss.take_mib();
    eprintln!("baseline: {baseline:?}, RSS peak {rss_baseline_mib:.0} MiB");

    // The attack.
    let before = gtc.metrics().await;
    let log_from = std::fs::metadata(gtc.log_path()).unwrap().len();
    let attack_started = Instant::now();
    let attack = (scenario.start)(&gtc.base);
    tokio::time::sleep(if quick() {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(1)
    })
    .await;
    let refusals = scenario.refusals.then(|| {
        let url = gtc.url("/n/get-names?n=1&from=");
        let every = window / REFUSALS as u32;
        tokio::spawn(async move {
            let client = client();
            let mut denied = 0u64;
            for i in 0..REFUSALS {
                if let Ok(response) = client
                    .get(format!("{url}{}", 1_000_000_000 + i))
                    .send()
                    .await
                    && let Ok(text) = response.text().await
                    && text.contains("\"denied\":1")
                {
                    denied += 1;
                }
                tokio::time::sleep(every).await;
            }
            denied
        })
    });
    let during = sample_apart(Until::Elapsed(window), PAUSE, request.clone());
    let during = tokio::task::spawn_blocking(move || during.join().unwrap())
        .await
        .unwrap();
    let refused = match refusals {
        Some(task) => Some(task.await.unwrap()),
        None => None,
    };
    let after = gtc.metrics().await;
    let attack_window = attack_started.elapsed();
    let log_to = std::fs::metadata(gtc.log_path()).unwrap().len();
    let rss_peak_mib = rss.take_mib();
    let answers = attack.stop_within(Some(Duration::from_secs(1))).await;
    eprintln!("under attack: {during:?}, RSS peak {rss_peak_mib:.0} MiB");
    let (window_lines, guest_lines) =
        lines_between(gtc.log_path(), log_from, log_to, " gtc::guest: ");
    drop(rss);
    let log = gtc.stop();

    let limits_mib: u64 = log
        .lines()
        .filter(|l| l.contains("bundle loaded"))
        .filter_map(|l| field(l, "memory_mib"))
        .sum();
    let mut figures = vec![format!(
        "log {:.0} lines/s",
        window_lines as f64 / attack_window.as_secs_f64()
    )];
    // Where the neighbour's time under attack went: waiting for a CPU turn.
    let own_wait = format!(
        "gtc_bundle_cpu_wait_seconds_total{{bundle=\"{}\"}}",
        scenario.neighbour.bundle
    );
    figures.push(format!(
        "neighbour waited for CPU turns {:.2} ms per request",
        (metric_or_zero(&after, &own_wait) - metric_or_zero(&before, &own_wait)) * 1e3
            / during.total.max(1) as f64
    ));
    let mut refusals = None;
    for show in &scenario.show {
        match show {
            Show::Answers => figures.push(format!("attacker: {}", compact(&answers))),
            Show::Cpu => {
                let (mut ran, mut waited) = (0.0, 0.0);
                for bundle in &scenario.attackers {
                    let cpu = format!("gtc_bundle_cpu_seconds_total{{bundle=\"{bundle}\"}}");
                    let wait = format!("gtc_bundle_cpu_wait_seconds_total{{bundle=\"{bundle}\"}}");
                    ran += metric_or_zero(&after, &cpu) - metric_or_zero(&before, &cpu);
                    waited += metric_or_zero(&after, &wait) - metric_or_zero(&before, &wait);
                }
                figures.push(format!(
                    "attacker CPU {ran:.1} s, waited {waited:.1} s in {:.0} s",
                    attack_window.as_secs_f64()
                ));
                figures.push(format!("attacker: {}", compact(&answers)));
            }
            Show::Audit => {
                let audit: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains(" gtc::audit: "))
                    .collect();
                let bytes: usize = audit.iter().map(|l| l.len() + 1).sum();
                let dropped_logged: u64 = audit
                    .iter()
                    .filter(|l| l.contains("audit records dropped"))
                    .filter_map(|l| field(l, "dropped"))
                    .sum();
                let recorded: u64 = audit
                    .iter()
                    .filter(|l| {
                        l.contains(" bundle=neighbour ") && l.contains("outcome=\"denied\"")
                    })
                    .map(|l| field(l, "count").unwrap_or(1))
                    .sum();
                figures.push(format!(
                    "audit: {} lines / {:.1} MB in the log, {} records dropped ({} by /metrics at the end of the attack)",
                    audit.len(),
                    bytes as f64 / 1e6,
                    dropped_logged,
                    metric_or_zero(&after, "gtc_audit_events_dropped_total") as u64
                ));
                let made = refused.unwrap_or(0);
                figures.push(format!(
                    "neighbour's refusals in the audit trail: {recorded} of {made}"
                ));
                refusals = Some((recorded, made));
            }
            Show::GuestOutput => {
                figures.push(format!(
                    "guest output {:.0} lines/s",
                    guest_lines as f64 / attack_window.as_secs_f64()
                ));
                figures.push(suppressed(&before, &after));
            }
            Show::Suppressed => figures.push(suppressed(&before, &after)),
        }
    }
    if scenario.attackers.len() == 1 {
        let bundle = &scenario.attackers[0];
        let cap = metric_or_zero(
            &after,
            &format!("gtc_bundle_instances_cap{{bundle=\"{bundle}\"}}"),
        );
        figures.push(format!("attacker's cap {cap:.0} instances"));
    }
    for figure in &figures {
        eprintln!("  {figure}");
    }
    Row {
        key: scenario.key,
        attack: scenario.attack,
        neighbour: scenario.neighbour.label,
        baseline,
        during,
        rss_baseline_mib,
        rss_peak_mib,
        limits_mib,
        figures,
        refusals,
        load,
    }
}

fn suppressed(before: &str, after: &str) -> String {
    let prefix = "gtc_log_lines_suppressed_total{";
    format!(
        "{:.0} log lines suppressed",
        metric_sum(after, prefix) - metric_sum(before, prefix)
    )
}

/// `label status ×count` for the attacker's answers.
fn compact(answers: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = answers
        .iter()
        .map(|(what, count)| format!("{what} ×{count}"))
        .collect();
    if parts.is_empty() {
        "none answered".into()
    } else {
        parts.join(", ")
    }
}

fn hello_neighbour() -> Neighbour {
    Neighbour {
        label: "hello",
        bundle: "hello",
        request: Box::new(hello_request),
    }
}

/// webchat-bot's signed POST, as in the README.
fn webchat_neighbour() -> Neighbour {
    Neighbour {
        label: "webchat-bot (signed POST)",
        bundle: "webchat-bot",
        request: Box::new(|base: &str| {
            let url = format!("{base}/webhook");
            let body = r#"{"text":"hello bot"}"#;
            let signature = sign(WEBHOOK_KEY, body.as_bytes());
            let request: NeighbourRequest = Arc::new(move |client: &reqwest::Client| {
                client
                    .post(&url)
                    .header("x-greentic-signature", &signature)
                    .body(body)
            });
            request
        }),
    }
}

fn scenarios(dir: &Path) -> Vec<Scenario> {
    let hello = write_bundle(dir, "hello", "hello", &["/hello"], "");
    // As tests/hostile_neighbours.rs's header-map test: 32 MiB, so 1024 handles.
    let fields_host = write_bundle(
        dir,
        "hostile",
        "hostile",
        &["/h"],
        "[limits]\ntimeout_ms = 5000\nmemory_mib = 32",
    );
    let headers = |key: &'static str, n: usize| Scenario {
        key,
        attack: format!(
            "header maps just under the 32 KiB per-map limit (`hostile` at 32 MiB), {n} requests at a time"
        ),
        bundles: vec![fields_host.clone(), hello.clone()],
        attackers: vec!["hostile".into()],
        neighbour: hello_neighbour(),
        seconds: 15,
        refusals: false,
        start: Box::new(move |base: &str| {
            let mut attack = Attack::new();
            for _ in 0..n {
                attack.repeat(base, "fields", || "/h/fields?n=100000&size=30000".into());
            }
            attack
        }),
        show: vec![Show::Answers],
    };
    let spin = write_bundle(dir, "spin", "probe", &["/s"], "");
    let names = write_bundle(dir, "names", "probe", &["/a"], "");
    let mut flooders = Vec::new();
    for i in 0..16 {
        flooders.push(write_bundle(
            dir,
            &format!("out{i}"),
            "probe",
            &[&format!("/o{i}")],
            "",
        ));
    }
    let webchat = webchat_bundle(dir);
    // As the soak's: egress to the discard port allowed (for the malformed requests).
    let mixed = write_bundle(
        dir,
        "hostile-mix",
        "hostile",
        &["/h"],
        "[egress]\nallow = [\"127.0.0.1:9\"]\n[limits]\ntimeout_ms = 1000\nmemory_mib = 32",
    );
    vec![
        headers("headers-6", 6),
        headers("headers-24", 24),
        Scenario {
            key: "spinners",
            attack: "8 requests spinning on the CPU (`probe/loop`, each ended by the 5 s time limit)".into(),
            bundles: vec![spin, hello.clone()],
            attackers: vec!["spin".into()],
            neighbour: hello_neighbour(),
            seconds: 15,
            refusals: false,
            start: Box::new(|base: &str| {
                let mut attack = Attack::new();
                for _ in 0..8 {
                    attack.repeat(base, "loop", || "/s/loop".into());
                }
                attack
            }),
            show: vec![Show::Cpu],
        },
        Scenario {
            key: "names",
            attack: "8 requests at a time × 1000 distinct undeclared names each".into(),
            bundles: vec![names, hello.clone()],
            attackers: vec!["names".into()],
            neighbour: hello_neighbour(),
            seconds: 12,
            refusals: true,
            start: Box::new(|base: &str| {
                let next = Arc::new(AtomicU64::new(0));
                let mut attack = Attack::new();
                for _ in 0..8 {
                    let next = next.clone();
                    attack.repeat(base, "get-names", move || {
                        let from = next.fetch_add(1000, Ordering::Relaxed);
                        format!("/a/get-names?n=1000&from={from}")
                    });
                }
                attack
            }),
            show: vec![Show::Audit, Show::Answers],
        },
        Scenario {
            key: "output",
            attack: "16 bundles flooding guest output (`probe/print`, 2 requests at a time each)".into(),
            bundles: flooders.iter().cloned().chain([hello.clone()]).collect(),
            attackers: (0..16).map(|i| format!("out{i}")).collect(),
            neighbour: hello_neighbour(),
            seconds: 20,
            refusals: false,
            start: Box::new(|base: &str| {
                let mut attack = Attack::new();
                for i in 0..16 {
                    for _ in 0..2 {
                        attack.repeat(base, "print", move || format!("/o{i}/print"));
                    }
                }
                attack
            }),
            show: vec![Show::GuestOutput],
        },
        Scenario {
            key: "mix",
            attack: "the soak's hostile mix (12 attackers: hangs, traps, cut bodies, header maps, denied and malformed egress; 50 idle connections/s)".into(),
            bundles: vec![webchat, mixed],
            attackers: vec!["hostile-mix".into()],
            neighbour: webchat_neighbour(),
            seconds: 15,
            refusals: false,
            start: Box::new(|base: &str| Attack::hostile_mix(base)),
            show: vec![Show::Suppressed, Show::Answers],
        },
    ]
}

fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| attack | neighbour | p50 alone → under attack | p99 alone → under attack | max under attack; answered | host RSS peak (alone → attack) vs 2× limits | audit / log | target met? |\n|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let missed = row.missed();
        let _ = writeln!(
            out,
            "| {} | {} | {} → {} ({:.1}×) | {} → {} ({:.1}×) | {}; {}/{} | {:.0} → {:.0} MiB vs {} MiB | {} | {} |",
            row.attack,
            row.neighbour,
            ms(row.baseline.median),
            ms(row.during.median),
            row.p50_ratio(),
            ms(row.baseline.p99()),
            ms(row.during.p99()),
            row.p99_ratio(),
            ms(row.during.max()),
            row.during.ok,
            row.during.total,
            row.rss_baseline_mib,
            row.rss_peak_mib,
            2 * row.limits_mib,
            row.figures.join("; "),
            if missed.is_empty() {
                "yes".to_string()
            } else {
                format!("no: {}", missed.join(", "))
            }
        );
    }
    out
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let only = std::env::var("GTC_BENCH_ONLY").ok();
    let wanted = |key: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|w| w == key))
    };
    let started = Instant::now();
    let load_before = load_average();
    let started_at = utc_now();
    eprintln!(
        "neighbour under attack (quick={}), load average {load_before}",
        quick()
    );
    // The bundle directories and the dev store live as long as the rows run.
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for scenario in scenarios(dir.path()) {
        if wanted(scenario.key) {
            rows.push(runtime.block_on(run(dir.path(), scenario)));
        }
    }
    let mut report = format!(
        "Neighbour under attack: release `gtc serve`, default flags, one fresh host per row; \
         the neighbour sampled alone, then under attack, for the same window in the same run \
         (one keep-alive connection, sequential requests 10 ms apart). quick={}; load average \
         {load_before} at the start, {} at the end; {:.0} s; started {}.\n\n",
        quick(),
        load_average(),
        started.elapsed().as_secs_f64(),
        started_at
    );
    report.push_str(&markdown(&rows));
    report.push_str("\nLoad average at the start of each row: ");
    let loads: Vec<String> = rows
        .iter()
        .map(|r| format!("{}: {}", r.key, r.load))
        .collect();
    report.push_str(&loads.join("; "));
    report.push('\n');
    println!("\n{report}");
    let path = support::vault::root().join("target/neighbours-report.md");
    std::fs::write(&path, &report).unwrap();
    eprintln!("written: {}", path.display());
}
