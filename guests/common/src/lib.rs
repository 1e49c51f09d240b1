//! Bindings of the `greentic:secrets/bot` world (generated from `wit/`) and the few
//! HTTP helpers every example guest needs: read a request body, send a response.
//!
//! Guests depend on this crate instead of generating bindings themselves so that all
//! of them bind against exactly the WIT the host implements.

// The existing guests bind against `greentic:secrets@1.0.0` (kept in
// wit/deps/greentic-secrets-1.0.0): they are the proof that components built
// against 1.0.0 keep running on a host that also provides 1.1.0.
wit_bindgen::generate!({
    path: "../../wit",
    world: "greentic:secrets/bot@1.0.0",
    generate_all,
    pub_export_macro: true,
    export_macro_name: "export_bot",
    default_bindings_module: "guest_common",
});

pub use wit_bindgen;

/// Generates `mod sealed` in the calling guest: bindings of
/// `greentic:secrets/sealed@1.1.0` (signature checks with a sealed key).
///
/// A macro, not a module of this crate: when two versions of the package meet in
/// one crate, wit-component links the newest, so a module here would turn every
/// guest into a 1.1.0 component. Only the guests that use `sealed` call it.
#[macro_export]
macro_rules! sealed_bindings {
    () => {
        pub mod sealed {
            $crate::wit_bindgen::generate!({
                inline: "
                    package greentic:guest-sealed;
                    world sealed-imports { import greentic:secrets/sealed@1.1.0; }
                ",
                path: "../../wit",
                world: "greentic:guest-sealed/sealed-imports",
                runtime_path: "guest_common::wit_bindgen::rt",
                generate_all,
            });
            pub use greentic::secrets1_1_0::sealed::verify_hmac_sha256;
            pub use greentic::secrets1_1_0::secrets::Error;

            /// The kebab-case name of an error, as guests report it.
            pub fn error_kind(error: &Error) -> &'static str {
                match error {
                    Error::NotFound => "not-found",
                    Error::Denied => "denied",
                    Error::InvalidName(_) => "invalid-name",
                    Error::Unavailable => "unavailable",
                    Error::Internal => "internal",
                }
            }
        }
    };
}

pub use exports::wasi::http::incoming_handler::{Guest, IncomingRequest, ResponseOutparam};
pub use greentic::secrets1_0_0::secrets::{self as secrets, Error as SecretError};
use wasi::http::types::{Fields, OutgoingBody, OutgoingResponse};

/// Reads the whole request body, refusing more than `limit` bytes.
pub fn read_body(request: &IncomingRequest, limit: usize) -> Result<Vec<u8>, &'static str> {
    let body = request.consume().map_err(|()| "body already consumed")?;
    let stream = body.stream().map_err(|()| "body stream unavailable")?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                if out.len() + chunk.len() > limit {
                    return Err("body too large");
                }
                out.extend_from_slice(&chunk);
            }
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(wasi::io::streams::StreamError::LastOperationFailed(_)) => {
                return Err("body read failed");
            }
        }
    }
    drop(stream);
    let _trailers = wasi::http::types::IncomingBody::finish(body);
    Ok(out)
}

/// The first value of a request header, as text.
pub fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    let values = request.headers().get(name);
    values
        .first()
        .and_then(|v| String::from_utf8(v.clone()).ok())
}

/// The request's path without its query string.
pub fn path(request: &IncomingRequest) -> String {
    let full = request.path_with_query().unwrap_or_default();
    match full.split_once('?') {
        Some((path, _)) => path.to_string(),
        None => full,
    }
}

/// The value of a query parameter (no percent-decoding: callers pass plain names).
pub fn query_param(request: &IncomingRequest, key: &str) -> Option<String> {
    let full = request.path_with_query()?;
    let (_, query) = full.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| v.to_string())
    })
}

/// Sends a complete response.
pub fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[content_type.as_bytes().to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        drop(stream);
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

/// Sends a JSON response.
pub fn respond_json(out: ResponseOutparam, status: u16, json: &str) {
    respond(out, status, "application/json", json.as_bytes());
}

/// Escapes text for inclusion in a JSON string literal.
pub fn json_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            c if (c as u32) < 0x20 => escaped.push_str(&format!("\\u{:04x}", c as u32)),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Bytes from hex text (e.g. a signature header); `None` if it is not hex.
pub fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The kebab-case name of a secrets error, as guests report it.
pub fn error_kind(error: &SecretError) -> &'static str {
    match error {
        SecretError::NotFound => "not-found",
        SecretError::Denied => "denied",
        SecretError::InvalidName(_) => "invalid-name",
        SecretError::Unavailable => "unavailable",
        SecretError::Internal => "internal",
    }
}
