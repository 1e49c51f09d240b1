//! A hostile test guest: each route abuses the host in a way that once hurt the
//! neighbours of the bundle that did it (issue: "one hostile bundle must not hurt its
//! neighbours"). Tests run it beside a well-behaved bundle and measure that one.
//!
//! Routes (the last path segment):
//! - `head-hang` — sends its response head and one chunk, then waits forever.
//! - `head-trap` — sends its head and one chunk, then traps.
//! - `trickle?n=N&ms=M` — sends N one-byte chunks, M ms apart, then finishes.
//! - `fields?n=N&size=S` — builds N header maps of about S bytes each and keeps them.
//! - `no-path?authority=A&n=N` — sends N outgoing requests that have no path.
//! - `denied?n=N` — sends N outgoing requests to a destination outside its allowlist.
//! - `outgoing?authority=A` — one outgoing request; reports status or error code.
//! - `print?n=N` — prints N short lines to stdout (a guest output flood).
//! - anything else — a small 200.

use greentic_guest::http::{json_escape, path, query_param};
use greentic_guest::wasi::clocks::monotonic_clock::subscribe_duration;
use greentic_guest::wasi::http::outgoing_handler;
use greentic_guest::wasi::http::types::{
    Fields, OutgoingBody, OutgoingRequest, OutgoingResponse, Scheme,
};
use greentic_guest::{Guest, IncomingRequest, ResponseOutparam};

struct Hostile;

impl Guest for Hostile {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let full = path(&request);
        let route = full.rsplit('/').next().unwrap_or_default().to_string();
        let number = |key: &str, default: u64| {
            query_param(&request, key)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        match route.as_str() {
            "head-hang" => head_then(out, || {
                loop {
                    subscribe_duration(3_600_000_000_000).block();
                }
            }),
            "head-trap" => head_then(out, || std::process::abort()),
            "trickle" => trickle(out, number("n", 3), number("ms", 300)),
            "fields" => {
                let kept = fields(number("n", 100_000), number("size", 100_000));
                respond(out, &format!("{{\"fields\":{kept}}}"));
            }
            "no-path" => {
                let authority = query_param(&request, "authority").unwrap_or_default();
                let failed = no_path(&authority, number("n", 1_000_000));
                respond(out, &format!("{{\"failed\":{failed}}}"));
            }
            "denied" => {
                let mut denied = 0u64;
                for _ in 0..number("n", 1_000_000) {
                    if send("forbidden.invalid:80", Some("/")).is_err() {
                        denied += 1;
                    }
                }
                respond(out, &format!("{{\"denied\":{denied}}}"));
            }
            "outgoing" => {
                let authority = query_param(&request, "authority").unwrap_or_default();
                let answer = match send(&authority, Some("/")) {
                    Ok(status) => format!("{{\"sent\":true,\"status\":{status}}}"),
                    Err(code) => format!("{{\"sent\":false,\"error\":\"{}\"}}", json_escape(&code)),
                };
                respond(out, &answer);
            }
            "print" => {
                let n = number("n", 100_000);
                for i in 0..n {
                    println!("hostile output line {i}");
                }
                respond(out, &format!("{{\"printed\":{n}}}"));
            }
            _ => respond(out, "{\"ok\":true}"),
        }
    }
}

fn respond(out: ResponseOutparam, json: &str) {
    greentic_guest::http::respond_json(out, 200, json);
}

/// Sends a 200 head and the first chunk, then runs `then` with the body open.
fn head_then(out: ResponseOutparam, then: impl FnOnce()) {
    let response = OutgoingResponse::new(Fields::new());
    let Ok(body) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    let Ok(stream) = body.write() else { return };
    let _ = stream.blocking_write_and_flush(b"partial ");
    then();
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

fn trickle(out: ResponseOutparam, n: u64, ms: u64) {
    let response = OutgoingResponse::new(Fields::new());
    let Ok(body) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    let Ok(stream) = body.write() else { return };
    for _ in 0..n {
        if stream.blocking_write_and_flush(b"x").is_err() {
            return;
        }
        subscribe_duration(ms * 1_000_000).block();
    }
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

/// Builds header maps just under `size` bytes each and keeps every one alive.
fn fields(n: u64, size: u64) -> u64 {
    let value = vec![b'v'; 1000];
    let mut kept = Vec::new();
    for _ in 0..n {
        let map = Fields::new();
        let mut used = 0u64;
        let mut index = 0u32;
        while used + 1100 < size {
            if map.append(&format!("x-h{index}"), &value).is_err() {
                break;
            }
            used += 1100;
            index += 1;
        }
        kept.push(map);
    }
    kept.len() as u64
}

fn no_path(authority: &str, n: u64) -> u64 {
    let mut failed = 0u64;
    for _ in 0..n {
        if send(authority, None).is_err() {
            failed += 1;
        }
    }
    failed
}

/// One outgoing `GET http://{authority}{path}`: the status, or the error code.
fn send(authority: &str, path: Option<&str>) -> Result<u16, String> {
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(path);
    let future = outgoing_handler::handle(request, None).map_err(|code| format!("{code:?}"))?;
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => Ok(response.status()),
        Some(Ok(Err(code))) => Err(format!("{code:?}")),
        _ => Err("no response".into()),
    }
}

greentic_guest::bindings::export_bot!(Hostile);
