//! A test guest that probes the sandbox and the secrets capability from inside.
//!
//! Routes (the last path segment; all answer JSON):
//! - `POST …/get` — the body is the secret name, passed verbatim to `secrets.get`;
//!   answers `{"value":"..."}` or `{"error":"<kind>"}`.
//! - `GET …/env` — the environment variables and arguments the guest can see.
//! - `GET …/fs` — tries to read files, including the Kubernetes ServiceAccount token.
//! - `GET …/socket?addr=HOST:PORT` — tries to open a TCP socket.
//! - `GET …/outgoing?authority=HOST:PORT` — tries an outgoing HTTP request.
//! - `GET …/print` — writes to stdout and stderr.
//! - `GET …/loop` — spins forever (the host's time limit must stop it).
//! - `GET …/alloc` — allocates without bound (the host's memory limit must stop it).
//! - `GET …/recurse` — recurses without bound (the host's stack limit must stop it).
//! - `GET …/get-many?n=N` — calls `secrets.get` N times (default two million).
//! - `GET …/get-names?n=N&from=K` — calls `get("probe/n<i>")` for N distinct names
//!   (i = K…K+N-1) and counts the outcomes by kind.
//! - `GET …/bench-get?n=N&name=NAME` — calls `get(NAME)` N times and reports the
//!   guest-measured nanoseconds per call (monotonic clock).
//! - `GET …/flood?authority=HOST:PORT&n=N` — sends N outgoing requests.
//! - `GET …/sleep?ms=N` — waits N ms (an idle in-flight request).
//! - `GET …/huge` — streams a response body without end.
//! - `GET …/count` — counts the requests this instance has served: `{"count":N}`
//!   (1 on a fresh instance; more only where the host reuses instances).
//! - `POST …/get-once` — the body is a secret name: the first request of this
//!   instance reads it and keeps the value in memory; every later one answers
//!   that kept value (a guest that caches a secret across reused requests).
//! - `GET …/hoard` — keeps its response-outparam in a global and returns without
//!   answering (a guest that would leave its client waiting on a reused instance).

use greentic_guest::http::{json_escape, path, query_param, read_body, respond_json};
use greentic_guest::wasi::http::outgoing_handler;
use greentic_guest::wasi::http::types::{Fields, OutgoingRequest, Scheme};
use greentic_guest::{Guest, IncomingRequest, ResponseOutparam, secrets};

struct Probe;

/// Requests this instance has served through `count` (a guest global).
static SERVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
std::thread_local! {
    /// Response-outparams `hoard` kept instead of answering.
    static HOARD: std::cell::RefCell<Vec<ResponseOutparam>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The answer `get-once` kept from this instance's first read.
static KEPT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl Guest for Probe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        // Bundles mount the probe under a route prefix: dispatch on the last segment.
        let full = path(&request);
        let route = full.rsplit('/').next().unwrap_or_default();
        let json = match route {
            "get" => get_secret(&request),
            "env" => env(),
            "fs" => fs(),
            "socket" => socket(query_param(&request, "addr").unwrap_or_default()),
            "outgoing" => outgoing(query_param(&request, "authority").unwrap_or_default()),
            "print" => {
                println!("probe says hello on stdout");
                eprintln!("probe says hello on stderr");
                "{\"printed\":true}".to_string()
            }
            "loop" => spin(),
            "alloc" => alloc(),
            "recurse" => format!("{{\"depth\":{}}}", recurse(std::hint::black_box(1))),
            "get-many" => get_many(query_number(&request, "n").unwrap_or(2_000_000)),
            "get-names" => get_names(
                query_number(&request, "from").unwrap_or(0),
                query_number(&request, "n").unwrap_or(1000),
            ),
            "bench-get" => bench_get(&request),
            "flood" => flood(
                query_param(&request, "authority").unwrap_or_default(),
                query_number(&request, "n").unwrap_or(1000),
            ),
            "sleep" => {
                let ms = query_number(&request, "ms").unwrap_or(100);
                greentic_guest::wasi::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000)
                    .block();
                format!("{{\"slept_ms\":{ms}}}")
            }
            "huge" => return huge(out),
            "count" => {
                let count = SERVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                format!("{{\"count\":{count}}}")
            }
            "get-once" => KEPT.get_or_init(|| get_secret(&request)).clone(),
            "hoard" => {
                HOARD.with(|hoard| hoard.borrow_mut().push(out));
                return;
            }
            _ => return respond_json(out, 404, "{\"error\":\"no such route\"}"),
        };
        respond_json(out, 200, &json);
    }
}

fn get_secret(request: &IncomingRequest) -> String {
    let name = match read_body(request, 2 * 1024 * 1024) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(why) => return format!("{{\"error\":\"{why}\"}}"),
    };
    match secrets::get(&name) {
        Ok(value) => format!(
            "{{\"value\":\"{}\"}}",
            json_escape(&String::from_utf8_lossy(value.expose()))
        ),
        Err(error) => {
            let detail = match &error {
                secrets::Error::InvalidName(why) => json_escape(why),
                _ => String::new(),
            };
            format!(
                "{{\"error\":\"{}\",\"detail\":\"{}\"}}",
                error.kind(),
                detail
            )
        }
    }
}

fn env() -> String {
    let vars: Vec<String> = std::env::vars()
        .map(|(k, _)| format!("\"{}\"", json_escape(&k)))
        .collect();
    let args = std::env::args().count();
    let cwd = std::env::current_dir().is_ok();
    format!(
        "{{\"vars\":[{}],\"args\":{},\"cwd\":{}}}",
        vars.join(","),
        args,
        cwd
    )
}

fn fs() -> String {
    let paths = [
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "/etc/passwd",
        "/",
        ".",
        "/proc/self/environ",
    ];
    let found: Vec<String> = paths
        .iter()
        .filter(|p| std::fs::read(p).is_ok() || std::fs::read_dir(p).is_ok())
        .map(|p| format!("\"{p}\""))
        .collect();
    format!("{{\"readable\":[{}]}}", found.join(","))
}

fn socket(addr: String) -> String {
    let connected = std::net::TcpStream::connect(addr.as_str()).is_ok();
    let bound = std::net::TcpListener::bind("127.0.0.1:0").is_ok();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").is_ok();
    format!("{{\"connected\":{connected},\"listened\":{bound},\"udp\":{udp}}}")
}

fn outgoing(authority: String) -> String {
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(&authority));
    let _ = request.set_path_with_query(Some("/"));
    match outgoing_handler::handle(request, None) {
        Err(code) => format!(
            "{{\"sent\":false,\"error\":\"{}\"}}",
            json_escape(&format!("{code:?}"))
        ),
        Ok(future) => {
            future.subscribe().block();
            match future.get() {
                Some(Ok(Ok(response))) => {
                    format!("{{\"sent\":true,\"status\":{}}}", response.status())
                }
                Some(Ok(Err(code))) => format!(
                    "{{\"sent\":false,\"error\":\"{}\"}}",
                    json_escape(&format!("{code:?}"))
                ),
                _ => "{\"sent\":false,\"error\":\"no response\"}".to_string(),
            }
        }
    }
}

fn spin() -> String {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
        if counter == u64::MAX {
            break;
        }
    }
    format!("{{\"counter\":{counter}}}")
}

fn alloc() -> String {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1024 * 1024];
        block[0] = 1;
        blocks.push(std::hint::black_box(block));
        if blocks.len() == usize::MAX {
            break;
        }
    }
    format!("{{\"blocks\":{}}}", blocks.len())
}

greentic_guest::bindings::export_bot!(Probe);

fn query_number(request: &IncomingRequest, key: &str) -> Option<u64> {
    query_param(request, key)?.parse().ok()
}

/// Recursion that cannot become a loop: the second call keeps every frame alive.
#[allow(unconditional_recursion, clippy::only_used_in_recursion)]
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    recurse(depth + 1) ^ recurse(depth + 2)
}

fn get_many(n: u64) -> String {
    let mut ok = 0u64;
    for _ in 0..n {
        if secrets::get("probe/x").is_ok() {
            ok += 1;
        }
    }
    format!("{{\"ok\":{ok}}}")
}

fn get_names(from: u64, n: u64) -> String {
    let mut counts: Vec<(&'static str, u64)> = Vec::new();
    for i in from..from.saturating_add(n) {
        let kind = match secrets::get(&format!("probe/n{i}")) {
            Ok(_) => "ok",
            Err(error) => error.kind(),
        };
        match counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, count)) => *count += 1,
            None => counts.push((kind, 1)),
        }
    }
    let fields: Vec<String> = counts.iter().map(|(k, c)| format!("\"{k}\":{c}")).collect();
    format!("{{{}}}", fields.join(","))
}

fn bench_get(request: &IncomingRequest) -> String {
    use greentic_guest::wasi::clocks::monotonic_clock::now;
    let n = query_number(request, "n").unwrap_or(10_000).max(1);
    let name = query_param(request, "name").unwrap_or_else(|| "probe/x".to_string());
    let mut failures = 0u64;
    let started = now();
    for _ in 0..n {
        if std::hint::black_box(secrets::get(&name)).is_err() {
            failures += 1;
        }
    }
    let elapsed = now() - started;
    format!(
        "{{\"calls\":{n},\"failures\":{failures},\"ns_per_call\":{}}}",
        elapsed / n
    )
}

fn flood(authority: String, n: u64) -> String {
    let mut denied = 0u64;
    let mut sent = 0u64;
    for _ in 0..n {
        let answer = outgoing(authority.clone());
        if answer.contains("\"sent\":true") {
            sent += 1;
        } else {
            denied += 1;
        }
    }
    format!("{{\"sent\":{sent},\"denied\":{denied}}}")
}

fn huge(out: ResponseOutparam) {
    use greentic_guest::wasi::http::types::{Fields, OutgoingBody, OutgoingResponse};
    let response = OutgoingResponse::new(Fields::new());
    let Ok(body) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    let Ok(stream) = body.write() else { return };
    let chunk = vec![b'x'; 4096];
    while stream.blocking_write_and_flush(&chunk).is_ok() {}
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}
