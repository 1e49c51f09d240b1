//! A hostile test guest: it holds placeholders of sealed secrets and tries every
//! way it has to learn their values (tests/sealed.rs drives it).
//!
//! Routes (the last path segment; all answer JSON):
//! - `POST …/get` — the body is a secret name for `secrets.get` (1.0.0 import);
//!   `{"value":"..."}` or `{"error":"<kind>"}`.
//! - `POST …/send` — sends one outgoing request built from the incoming headers:
//!   `x-scheme` (`http`/`https`), `x-authority`, `x-path` (path and query),
//!   optional `x-auth` (sent as `authorization`), optional `x-host` (an attempt
//!   to set `host`), any `x-send-NAME: V` (sent as `NAME: V`), and the incoming
//!   body as the outgoing body. Answers
//!   `{"sent":true,"status":N,"headers":"...","body":"...","host_refused":B}` or
//!   `{"sent":false,"error":"..."}`: everything the guest could see.
//! - `POST …/verify` — `verify-hmac-sha256(x-name, body, hex(x-mac))`, `x-repeat`
//!   times (default 1, stopping at the first error): `{"valid":B,"calls":N}` or
//!   `{"error":"<kind>","calls":N}`.

use greentic_guest::http::{decode_hex, header, json_escape, path, read_body, respond_json};
use greentic_guest::wasi::http::outgoing_handler;
use greentic_guest::wasi::http::types::{Fields, OutgoingBody, OutgoingRequest, Scheme};
use greentic_guest::{Guest, IncomingRequest, ResponseOutparam, sealed, secrets};

struct SealedProbe;

impl Guest for SealedProbe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let full = path(&request);
        let json = match full.rsplit('/').next().unwrap_or_default() {
            "get" => get(&request),
            "send" => send(&request),
            "verify" => verify(&request),
            _ => return respond_json(out, 404, "{\"error\":\"no such route\"}"),
        };
        respond_json(out, 200, &json);
    }
}

fn get(request: &IncomingRequest) -> String {
    let name = read_body(request, 4096).unwrap_or_default();
    match secrets::get(&String::from_utf8_lossy(&name)) {
        Ok(value) => format!(
            "{{\"value\":\"{}\"}}",
            json_escape(&String::from_utf8_lossy(value.expose()))
        ),
        Err(error) => format!("{{\"error\":\"{}\"}}", error.kind()),
    }
}

fn verify(request: &IncomingRequest) -> String {
    let name = header(request, "x-name").unwrap_or_default();
    let mac = decode_hex(&header(request, "x-mac").unwrap_or_default()).unwrap_or_default();
    let message = read_body(request, 64 * 1024).unwrap_or_default();
    let times: u32 = header(request, "x-repeat")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut answered = 0;
    let mut last = sealed::verify_hmac_sha256(&name, &message, &mac);
    while answered + 1 < times && last.is_ok() {
        answered += 1;
        last = sealed::verify_hmac_sha256(&name, &message, &mac);
    }
    match last {
        Ok(valid) => format!("{{\"valid\":{valid},\"calls\":{}}}", answered + 1),
        Err(error) => format!(
            "{{\"error\":\"{}\",\"calls\":{}}}",
            error.kind(),
            answered + 1
        ),
    }
}

fn send(request: &IncomingRequest) -> String {
    let scheme = match header(request, "x-scheme").as_deref() {
        Some("http") => Scheme::Http,
        _ => Scheme::Https,
    };
    let authority = header(request, "x-authority").unwrap_or_default();
    let target = header(request, "x-path").unwrap_or_else(|| "/".to_string());
    let body = read_body(request, 64 * 1024).unwrap_or_default();
    let fields = Fields::new();
    if let Some(auth) = header(request, "x-auth") {
        let _ = fields.append("authorization", auth.as_bytes());
    }
    for (name, value) in request.headers().entries() {
        if let Some(name) = name.strip_prefix("x-send-") {
            let _ = fields.append(name, &value);
        }
    }
    let host_refused = match header(request, "x-host") {
        Some(host) => fields.append("host", host.as_bytes()).is_err(),
        None => false,
    };
    let outgoing = OutgoingRequest::new(fields);
    let _ = outgoing.set_method(&greentic_guest::wasi::http::types::Method::Post);
    let _ = outgoing.set_scheme(Some(&scheme));
    if outgoing.set_authority(Some(&authority)).is_err() {
        return "{\"sent\":false,\"error\":\"authority refused by wasi-http\"}".to_string();
    }
    if outgoing.set_path_with_query(Some(&target)).is_err() {
        return "{\"sent\":false,\"error\":\"path refused by wasi-http\"}".to_string();
    }
    let Ok(outgoing_body) = outgoing.body() else {
        return "{\"sent\":false,\"error\":\"no body\"}".to_string();
    };
    let future = match outgoing_handler::handle(outgoing, None) {
        Ok(future) => future,
        Err(code) => return failed(&format!("{code:?}"), host_refused),
    };
    if let Ok(stream) = outgoing_body.write() {
        for chunk in body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        drop(stream);
    }
    let _ = OutgoingBody::finish(outgoing_body, None);
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return failed(&format!("{code:?}"), host_refused),
        _ => return failed("no response", host_refused),
    };
    let headers: Vec<String> = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(&value)))
        .collect();
    let mut text = Vec::new();
    if let Ok(incoming) = response.consume()
        && let Ok(stream) = incoming.stream()
    {
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            text.extend_from_slice(&chunk);
        }
    }
    format!(
        "{{\"sent\":true,\"status\":{},\"headers\":\"{}\",\"body\":\"{}\",\"host_refused\":{host_refused}}}",
        response.status(),
        json_escape(&headers.join("\n")),
        json_escape(&String::from_utf8_lossy(&text)),
    )
}

fn failed(error: &str, host_refused: bool) -> String {
    format!(
        "{{\"sent\":false,\"error\":\"{}\",\"host_refused\":{host_refused}}}",
        json_escape(error)
    )
}

greentic_guest::bindings::export_bot!(SealedProbe);
