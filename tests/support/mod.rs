//! Test harness shared by the integration tests: runs the real `gtc` binary on
//! 127.0.0.1 with a port it picks itself, writes bundle directories around the
//! guests the build compiled, and signs webhooks. Every process started here is
//! killed when its handle drops, also when a test fails.

#![allow(dead_code)]

pub mod k8s_api;
pub mod neighbours;
pub mod proxy;
pub mod service;
pub mod upstream;
pub mod vault;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Secret material registered by the tests (values, data keys, tokens): no log,
/// command output, metric or readiness answer may contain any of it, as it is or
/// encoded the ways a JSON log or an HTTP body carries bytes (base64, base64url,
/// hex). Every `gtc` process started through this harness is scanned when it stops.
static FORBIDDEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The shortest secret the scan accepts: a shorter one would match innocent text
/// (a route, a log word), so a test that registers one is refused loudly rather
/// than scanned for nothing.
pub const MIN_FORBIDDEN_LEN: usize = 8;

/// Registers secret material that must never appear in any output: its raw text
/// (when it is UTF-8) and its base64, base64url and hex forms.
pub fn forbid(secret: &[u8]) {
    use base64::Engine as _;
    assert!(
        secret.len() >= MIN_FORBIDDEN_LEN,
        "the leak scan cannot look for a {}-byte secret (at least {MIN_FORBIDDEN_LEN} bytes: a \
         shorter one matches innocent text); seed a longer test value",
        secret.len()
    );
    let mut forms = vec![
        base64::engine::general_purpose::STANDARD.encode(secret),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        hex::encode(secret),
    ];
    if let Ok(text) = std::str::from_utf8(secret) {
        forms.push(text.to_string());
    }
    // Padding is what a longer encoding would not share: scan without it.
    for form in &mut forms {
        while form.ends_with('=') {
            form.pop();
        }
    }
    FORBIDDEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(forms);
}

/// How many forms of secret material the scan looks for right now.
pub fn forbidden_count() -> usize {
    FORBIDDEN.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// Vault/OpenBao service tokens (`hvs.…`, `s.` + 24 characters) and JWTs.
fn looks_like_credential(text: &str) -> Option<String> {
    if let Some(at) = text.find("eyJhbGciOi") {
        return Some(text[at..].chars().take(40).collect());
    }
    for prefix in ["hvs.", "s."] {
        let mut from = 0;
        while let Some(found) = text[from..].find(prefix) {
            let start = from + found;
            let boundary = start == 0 || !text.as_bytes()[start - 1].is_ascii_alphanumeric();
            let run = text[start + prefix.len()..]
                .bytes()
                .take_while(u8::is_ascii_alphanumeric)
                .count();
            if boundary && run >= 24 {
                return Some(text[start..start + prefix.len() + run].to_string());
            }
            from = start + prefix.len();
        }
    }
    None
}

/// Panics if `text` holds registered secret material or a credential.
pub fn assert_no_leaks(context: &str, text: &str) {
    for secret in FORBIDDEN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        assert!(
            !text.contains(secret.as_str()),
            "{context} leaked a registered secret value"
        );
    }
    if let Some(credential) = looks_like_credential(text) {
        panic!("{context} leaked something that looks like a credential: {credential}");
    }
}

/// A plain blocking GET of the host's own endpoints, for the leak scan on stop.
/// A scan that cannot read its input panics: an empty answer would pass every
/// scan and prove nothing.
pub fn blocking_get(base: &str, path: &str) -> String {
    try_blocking_get(base, path).unwrap_or_else(|why| panic!("{why}"))
}

/// [`blocking_get`], with the reason it could not read an answer.
fn try_blocking_get(base: &str, path: &str) -> Result<String, String> {
    use std::io::Read;
    let addr = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("leak scan of {path}: {base:?} is not an http:// address"))?;
    let mut stream = std::net::TcpStream::connect(addr)
        .map_err(|e| format!("leak scan of {path}: cannot connect to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nhost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| format!("leak scan of {path}: cannot send the request: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("leak scan of {path}: cannot read the answer: {e}"))?;
    if answer.starts_with("HTTP/1.") {
        Ok(answer)
    } else {
        Err(format!("leak scan of {path}: no HTTP answer ({answer:?})"))
    }
}

/// A loopback port that was free a moment ago (for servers that must be told
/// their port before they start, and for "nothing listens here").
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `gtc` binary under test.
pub fn gtc_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gtc")
}

/// A guest component compiled by host/build.rs, e.g. `guest("probe")`.
pub fn guest(name: &str) -> PathBuf {
    Path::new(env!("GTC_GUESTS_DIR")).join(format!("{}.wasm", name.replace('-', "_")))
}

/// Writes `root/<id>/bundle.toml` for a built guest and returns the directory.
pub fn write_bundle(
    root: &Path,
    id: &str,
    guest_name: &str,
    routes: &[&str],
    extra: &str,
) -> PathBuf {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let routes: Vec<String> = routes.iter().map(|r| format!("{r:?}")).collect();
    let manifest = format!(
        "id = {id:?}\ncomponent = {:?}\nroutes = [{}]\n{extra}\n",
        guest(guest_name).display().to_string(),
        routes.join(", ")
    );
    std::fs::write(dir.join("bundle.toml"), manifest).unwrap();
    dir
}

/// Writes `root/<id>/bundle.toml` naming `component` (any path, maybe missing)
/// with `extra` manifest lines; returns the directory.
pub fn bundle_with_component(root: &Path, id: &str, component: &Path, extra: &str) -> PathBuf {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bundle.toml"),
        format!(
            "id = {id:?}\ncomponent = {:?}\nroutes = [\"/{id}\"]\n{extra}\n",
            component.display().to_string()
        ),
    )
    .unwrap();
    dir
}

/// Writes to `out` a built guest with every occurrence of `from` replaced by `to`
/// (same length, so the component stays well formed): an import or export renamed.
pub fn renamed_guest(guest_name: &str, from: &str, to: &str, out: &Path) -> PathBuf {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(guest(guest_name)).unwrap();
    let mut count = 0;
    let mut at = 0;
    while let Some(pos) = bytes[at..]
        .windows(from.len())
        .position(|w| w == from.as_bytes())
    {
        bytes[at + pos..at + pos + from.len()].copy_from_slice(to.as_bytes());
        at += pos + from.len();
        count += 1;
    }
    assert!(count > 0, "{guest_name} contains {from}");
    std::fs::write(out, bytes).unwrap();
    out.to_path_buf()
}

/// The base environment of a `gtc` process: nothing inherited from the test's own
/// environment except PATH, so no stray Kubernetes or Vault variable changes it.
/// `gtc ARGS` in the base environment plus `env`, not started (for tests that
/// wire its standard streams themselves).
pub fn gtc_command(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut command = base_command(env);
    command.args(args);
    command
}

fn base_command(env: &[(&str, String)]) -> Command {
    command_for(Command::new(gtc_bin()), env)
}

/// `command` with the base environment of a `gtc` process.
fn command_for(mut command: Command, env: &[(&str, String)]) -> Command {
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.env("RUST_LOG", "info");
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// A finished command's stdout and stderr, as one text (for assertions).
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `gtc` to completion with `stdin` as input.
pub fn run_gtc(args: &[&str], env: &[(&str, String)], stdin: &[u8]) -> Output {
    let mut child = base_command(env)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gtc");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_no_leaks(
        &format!("gtc {args:?} stdout"),
        &String::from_utf8_lossy(&out.stdout),
    );
    assert_no_leaks(
        &format!("gtc {args:?} stderr"),
        &String::from_utf8_lossy(&out.stderr),
    );
    out
}

/// Runs a `gtc` command that is expected to end by itself (e.g. a `serve` that
/// must refuse its configuration); panics, after killing it, if it is still
/// running after `limit` (a guard against a hung test, not a latency bound).
pub fn run_gtc_to_end(args: &[&str], env: &[(&str, String)], limit: Duration) -> Output {
    let mut child = base_command(env)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gtc");
    let deadline = std::time::Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait for gtc").is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect gtc");
            panic!(
                "gtc {args:?} did not end by itself: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect gtc");
    assert_no_leaks(&format!("gtc {args:?} output"), &text(&out));
    out
}

/// A running `gtc serve`.
pub struct Gtc {
    child: Child,
    pub base: String,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
    /// The stop-time leak scan has run (once per process).
    scanned: bool,
}

impl Gtc {
    /// Starts `gtc serve --listen 127.0.0.1:0 ARGS` and waits until it listens.
    pub fn serve(args: &[String], env: &[(&str, String)]) -> Gtc {
        Self::spawn(base_command(env), args, Duration::from_secs(60))
    }

    /// [`Gtc::serve`] waiting up to `start` for it to listen (a large component
    /// compiles for a while before the host listens).
    pub fn serve_within(args: &[String], env: &[(&str, String)], start: Duration) -> Gtc {
        Self::spawn(base_command(env), args, start)
    }

    /// [`Gtc::serve_within`] run from the directory `cwd` (relative paths in
    /// `args`, and the default dev store `.greentic/`, are relative to it).
    pub fn serve_in(cwd: &Path, args: &[String], env: &[(&str, String)], start: Duration) -> Gtc {
        let mut command = base_command(env);
        command.current_dir(cwd);
        Self::spawn(command, args, start)
    }

    /// [`Gtc::serve`] with the process's open-file limit lowered to `nofile`.
    pub fn serve_with_fd_limit(args: &[String], env: &[(&str, String)], nofile: u32) -> Gtc {
        let mut command = command_for(Command::new("bash"), env);
        command.args([
            "-c",
            "ulimit -n \"$0\" && exec \"$@\"",
            &nofile.to_string(),
            gtc_bin(),
        ]);
        Self::spawn(command, args, Duration::from_secs(60))
    }

    /// [`Gtc::serve`], or the log of a start that failed (e.g. the port was
    /// taken between picking it and binding it).
    pub fn try_serve(args: &[String], env: &[(&str, String)]) -> Result<Gtc, String> {
        Self::try_spawn(base_command(env), args, Duration::from_secs(60))
    }

    fn spawn(command: Command, args: &[String], start: Duration) -> Gtc {
        Self::try_spawn(command, args, start)
            .unwrap_or_else(|log| panic!("gtc serve did not start; log:\n{log}"))
    }

    fn try_spawn(mut command: Command, args: &[String], start: Duration) -> Result<Gtc, String> {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("gtc.log");
        command.arg("serve");
        if !args.iter().any(|a| a.starts_with("--listen")) {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn gtc serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent && let Some(addr) = line.strip_prefix("gtc listening on ") {
                    let _ = tx.send(addr.to_string());
                    sent = true;
                }
            }
        });
        let base = match rx.recv_timeout(start) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::fs::read_to_string(&log).unwrap_or_default());
            }
        };
        Ok(Gtc {
            child,
            base,
            log,
            _log_dir: log_dir,
            scanned: false,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`: (status, body text).
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = client().get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// The host's `/metrics` text.
    pub async fn metrics(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident memory, in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> u64 {
        rss_kib_of(self.pid())
    }

    /// The process's CPU time so far (user + system), from `/proc`.
    pub fn cpu_time(&self) -> Duration {
        cpu_time_of(self.pid())
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The file the process logs to (for reading a large log piecewise).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Stops the process as Kubernetes does (SIGTERM), waits for it to exit
    /// (at most 30 s, then SIGKILL) and returns its exit code and log; `/metrics`
    /// and `/readyz` (while it still runs) and the log are scanned for leaks.
    pub fn terminate(mut self) -> (Option<i32>, String) {
        if self.child.try_wait().ok().flatten().is_none() {
            assert_no_leaks("/metrics", &blocking_get(&self.base, "/metrics"));
            assert_no_leaks("/readyz", &blocking_get(&self.base, "/readyz"));
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let code = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.log();
        assert_no_leaks("the gtc log", &log);
        self.scanned = true;
        (code, log)
    }

    /// Stops the process as Kubernetes does (SIGTERM, then SIGKILL after 5 s) and
    /// returns its log, after scanning the log, `/metrics` and `/readyz` for leaks.
    /// SIGTERM lets the audit writer drain its queue, so the log holds every record.
    pub fn stop(mut self) -> String {
        self.shut_down();
        self.log()
    }

    fn shut_down(&mut self) {
        if self.scanned {
            return;
        }
        self.scanned = true;
        let running = self.child.try_wait().ok().flatten().is_none();
        // Read while it serves; judged after the kill, so a failed read never
        // leaves the process behind.
        let answers = running.then(|| {
            (
                try_blocking_get(&self.base, "/metrics"),
                try_blocking_get(&self.base, "/readyz"),
            )
        });
        if running {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while self.child.try_wait().ok().flatten().is_none()
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            return;
        }
        if let Some((metrics, ready)) = answers {
            assert_no_leaks("/metrics", &metrics.unwrap_or_else(|why| panic!("{why}")));
            assert_no_leaks("/readyz", &ready.unwrap_or_else(|why| panic!("{why}")));
        }
        assert_no_leaks("the gtc log", &self.log());
    }
}

impl Drop for Gtc {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A process's resident memory, in KiB (Linux `/proc`; zero if it is gone).
pub fn rss_kib_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A process's CPU time so far (user + system), from `/proc` (zero if it is gone).
pub fn cpu_time_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line, in clock ticks (100 per second).
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// `sha256=<hex>` HMAC signature of `body` with `secret`, as webchat-bot expects.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// An HTTP client that never uses a proxy (all traffic stays on loopback). Its
/// pooled connections idle at most 5 s, below the host's keep-alive idle timeout
/// (the header-read timeout, 10 s by default), as a router's must: otherwise a
/// request can go out on a connection the host is closing at that moment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Posts a signed webhook to webchat-bot; returns status and body.
pub async fn webhook(gtc: &Gtc, secret: &[u8], body: &str) -> (u16, String) {
    let response = client()
        .post(gtc.url("/webhook"))
        .header("x-greentic-signature", sign(secret, body.as_bytes()))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Seeds the dev store at `store` through the real `gtc op secrets put`; the value
/// is registered with the leak scan.
pub fn dev_put(store: &Path, path: &str, value: &[u8]) {
    forbid(value);
    dev_put_shipped(store, path, value);
}

/// Seeds a dev store that a `--backend dev-store` render ships in its Kubernetes
/// Secret, by design (the dev store is for development clusters): the value is
/// expected in that render's output, so it is not registered with the leak scan.
/// Everything else seeds with [`dev_put`].
pub fn dev_put_shipped(store: &Path, path: &str, value: &[u8]) {
    let out = run_gtc(
        &["op", "secrets", "put", path],
        &[("GREENTIC_DEV_STORE", store.display().to_string())],
        value,
    );
    assert!(
        out.status.success(),
        "put failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The calls an audit line stands for: its `count=` for an aggregate (repeated
/// refusals, cache hits), else 1.
pub fn calls_in(line: &str) -> u64 {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("count="))
        .map_or(1, |n| {
            n.parse()
                .unwrap_or_else(|_| panic!("a bad count in {line}"))
        })
}

/// The value of a metric line `name{labels} value` (panics if it is absent).
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name_and_labels} is absent:\n{text}"))
}

/// Polls `/metrics` until `name_and_labels` satisfies `done` (at most 30 s);
/// returns the last value.
pub async fn metric_until(gtc: &Gtc, name_and_labels: &str, done: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = gtc.metrics().await;
        let value = metric(&text, name_and_labels);
        if done(value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{name_and_labels} stayed at {value}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running `gtc route` in front of a worker. Its log goes to a file that is
/// scanned for leaks when it stops, as a worker's is.
pub struct Router {
    child: Child,
    pub base: String,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
    /// The router's own `/metrics` URL, when started with `--metrics-listen`.
    pub metrics: Option<String>,
}

impl Router {
    pub fn start(upstream: &str) -> Router {
        Self::start_with(&[upstream.to_string()])
    }

    /// `gtc route` with several `--upstream [PREFIX=]URL`.
    pub fn start_with(upstreams: &[String]) -> Router {
        Self::start_full(upstreams, false)
    }

    /// `gtc route` serving its own metrics on a second loopback port.
    pub fn start_with_metrics(upstreams: &[String]) -> Router {
        Self::start_full(upstreams, true)
    }

    fn start_full(upstreams: &[String], metrics: bool) -> Router {
        let mut args = vec!["route".to_string(), "--listen=127.0.0.1:0".to_string()];
        if metrics {
            args.push("--metrics-listen=127.0.0.1:0".to_string());
        }
        args.extend(upstreams.iter().map(|u| format!("--upstream={u}")));
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("route.log");
        let mut child = base_command(&[])
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn gtc route");
        let stdout = child.stdout.take().unwrap();
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("gtc route listening on ")
            .unwrap_or_else(|| panic!("unexpected router output {line:?}"))
            .to_string();
        let metrics = metrics.then(|| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix("gtc route metrics on ")
                .unwrap_or_else(|| panic!("unexpected router output {line:?}"))
                .to_string()
        });
        Router {
            child,
            base,
            log,
            _log_dir: log_dir,
            metrics,
        }
    }

    /// Everything the router logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            assert_no_leaks("the gtc route log", &self.log());
        }
    }
}

/// A loopback HTTP server that answers 200 to its first `connections`
/// connections (egress tests); it ends with the test process.
pub fn tiny_http_server(connections: usize) -> std::net::SocketAddr {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    addr
}

/// A loopback TCP server that accepts every connection and never answers (a
/// frozen or overloaded peer); it ends with the test process.
pub fn silent_tcp_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}

/// `env` with `key` removed and, if given, set to `value`.
pub fn with_env(
    env: &[(&'static str, String)],
    key: &'static str,
    value: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut out: Vec<_> = env.iter().filter(|(k, _)| *k != key).cloned().collect();
    if let Some(value) = value {
        out.push((key, value.to_string()));
    }
    out
}

/// `GET url`, answered 200 with a JSON body: the body.
pub async fn get_json(url: String) -> serde_json::Value {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Asks the `probe` guest mounted at `prefix` for secret `name` (sent verbatim):
/// `{"value": ...}` or `{"error": kind, "detail": ...}`.
pub async fn probe_get(gtc: &Gtc, prefix: &str, name: &[u8]) -> serde_json::Value {
    probe_get_at(&gtc.base, prefix, name).await
}

/// [`probe_get`] through any base URL (e.g. a router in front of workers).
pub async fn probe_get_at(base: &str, prefix: &str, name: &[u8]) -> serde_json::Value {
    let response = client()
        .post(format!("{base}{prefix}/get"))
        .body(name.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Asserts that the probe mounted at `prefix` is `denied` every one of `names`.
pub async fn assert_denied(gtc: &Gtc, prefix: &str, names: &[&[u8]]) {
    for name in names {
        let answer = probe_get(gtc, prefix, name).await;
        assert_eq!(
            answer["error"],
            "denied",
            "{}: {answer}",
            String::from_utf8_lossy(name)
        );
    }
}

/// The webchat-bot bundle, with its `webhook-secret` sealed (signature checks
/// only), written into `dir`.
pub fn webchat_bundle(dir: &Path) -> PathBuf {
    write_bundle(
        dir,
        "webchat-bot",
        "webchat-bot",
        &["/webhook"],
        WEBCHAT_SECRETS,
    )
}

/// webchat-bot's manifest lines declaring its sealed webhook secret.
pub const WEBCHAT_SECRETS: &str = "[[secrets.sealed]]\nname = \"webhook-secret\"";

/// Validates a manifest file with kubernetes-validate (strict) for a version.
pub fn kubernetes_validate(file: &Path, version: &str) -> Output {
    Command::new(vault::root().join(".venv/bin/kubernetes-validate"))
        .args(["--strict", "--quiet", "-k", version])
        .arg(file)
        .output()
        .expect("kubernetes-validate is installed by tests/install-tools.sh")
}

/// The Kubernetes versions manifests are validated for.
pub const KUBERNETES_VERSIONS: [&str; 3] = ["1.33.0", "1.35.0", "1.37.0"];
