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

use guest_common::{
    Guest, IncomingRequest, ResponseOutparam, error_kind, json_escape, path, query_param,
    read_body, respond_json, secrets,
};
use guest_common::wasi::http::outgoing_handler;
use guest_common::wasi::http::types::{Fields, OutgoingRequest, Scheme};

struct Probe;

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
            json_escape(&String::from_utf8_lossy(&value))
        ),
        Err(error) => {
            let detail = match &error {
                guest_common::SecretError::InvalidName(why) => json_escape(why),
                _ => String::new(),
            };
            format!(
                "{{\"error\":\"{}\",\"detail\":\"{}\"}}",
                error_kind(&error),
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
        Err(code) => format!("{{\"sent\":false,\"error\":\"{}\"}}", json_escape(&format!("{code:?}"))),
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

guest_common::export_bot!(Probe);
