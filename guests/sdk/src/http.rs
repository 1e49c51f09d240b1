//! A small synchronous HTTP layer over `wasi:http`.
//!
//! [`Request`] reads what a bot needs (method, path, query, headers, a bounded body);
//! [`Response`] is built in memory and sent whole. Guests that stream use the raw
//! bindings ([`crate::wasi::http::types`]) and the free functions here.

use crate::bindings::wasi::http::types::{
    Fields, IncomingBody, Method, OutgoingBody, OutgoingResponse,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::{IncomingRequest, ResponseOutparam};

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The body is longer than the limit the handler gave.
    TooLarge,
    /// The body was already read.
    AlreadyRead,
    /// The client's stream failed (e.g. the connection closed mid-body).
    ReadFailed,
}

impl BodyError {
    /// The status to answer with: 413 for a body over the limit, 400 otherwise.
    pub fn http_status(self) -> u16 {
        match self {
            BodyError::TooLarge => 413,
            BodyError::AlreadyRead | BodyError::ReadFailed => 400,
        }
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BodyError::TooLarge => "body too large",
            BodyError::AlreadyRead => "body already consumed",
            BodyError::ReadFailed => "body read failed",
        })
    }
}

impl std::error::Error for BodyError {}

/// An incoming request.
pub struct Request {
    inner: IncomingRequest,
}

impl Request {
    /// Wraps the raw request (what [`crate::bundle!`] does for you).
    pub fn new(inner: IncomingRequest) -> Self {
        Request { inner }
    }

    /// The raw request, for what this layer does not cover.
    pub fn raw(&self) -> &IncomingRequest {
        &self.inner
    }

    /// The method, upper case (`GET`, `POST`, …).
    pub fn method(&self) -> String {
        match self.inner.method() {
            Method::Get => "GET".into(),
            Method::Head => "HEAD".into(),
            Method::Post => "POST".into(),
            Method::Put => "PUT".into(),
            Method::Delete => "DELETE".into(),
            Method::Connect => "CONNECT".into(),
            Method::Options => "OPTIONS".into(),
            Method::Trace => "TRACE".into(),
            Method::Patch => "PATCH".into(),
            Method::Other(other) => other,
        }
    }

    /// The path without its query string.
    pub fn path(&self) -> String {
        path(&self.inner)
    }

    /// The value of a query parameter (not percent-decoded).
    pub fn query(&self, key: &str) -> Option<String> {
        query_param(&self.inner, key)
    }

    /// The first value of a header, as text (`None` if absent or not UTF-8).
    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.inner, name)
    }

    /// The whole body, refusing more than `limit` bytes. Can be called once.
    pub fn body(&self, limit: usize) -> Result<Vec<u8>, BodyError> {
        read_body(&self.inner, limit)
    }
}

/// A response, sent whole by [`Response::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, text: &str) -> Self {
        Response::new(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(text.as_bytes().to_vec())
    }

    /// An `application/json` response; `json` must already be JSON.
    pub fn json(status: u16, json: &str) -> Self {
        Response::new(status)
            .with_header("content-type", "application/json")
            .with_body(json.as_bytes().to_vec())
    }

    /// The answer for a secret the handler cannot do without:
    /// `{"ok":false,"error":"<kind>"}` with [`crate::secrets::Error::http_status`].
    /// The message names the kind of failure only, never the secret.
    pub fn error(error: &crate::secrets::Error) -> Self {
        Response::json(
            error.http_status(),
            &format!("{{\"ok\":false,\"error\":\"{}\"}}", error.kind()),
        )
    }

    /// Adds a header (a header may appear more than once).
    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Sends the response. A header the host refuses (e.g. a forbidden name) is
    /// dropped; a status outside 100–999 becomes 500.
    pub fn send(self, out: ResponseOutparam) {
        let headers = Fields::new();
        for (name, value) in &self.headers {
            let _ = headers.append(name, value);
        }
        send(out, headers, self.status, &self.body);
    }
}

/// Reads the whole request body, refusing more than `limit` bytes.
pub fn read_body(request: &IncomingRequest, limit: usize) -> Result<Vec<u8>, BodyError> {
    let body = request.consume().map_err(|()| BodyError::AlreadyRead)?;
    let stream = body.stream().map_err(|()| BodyError::AlreadyRead)?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                if out.len() + chunk.len() > limit {
                    return Err(BodyError::TooLarge);
                }
                out.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(_)) => return Err(BodyError::ReadFailed),
        }
    }
    drop(stream);
    let _trailers = IncomingBody::finish(body);
    Ok(out)
}

/// The first value of a request header, as text.
pub fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    let values = request.headers().get(name);
    values
        .into_iter()
        .next()
        .and_then(|value| String::from_utf8(value).ok())
}

/// The request's path without its query string.
pub fn path(request: &IncomingRequest) -> String {
    let full = request.path_with_query().unwrap_or_default();
    match full.split_once('?') {
        Some((path, _)) => path.to_string(),
        None => full,
    }
}

/// The value of a query parameter (no percent-decoding).
pub fn query_param(request: &IncomingRequest, key: &str) -> Option<String> {
    let full = request.path_with_query()?;
    let (_, query) = full.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| v.to_string())
    })
}

/// Sends a complete response with one `content-type`.
pub fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[content_type.as_bytes().to_vec()]);
    send(out, headers, status, body);
}

/// Sends a complete JSON response.
pub fn respond_json(out: ResponseOutparam, status: u16, json: &str) {
    respond(out, status, "application/json", json.as_bytes());
}

fn send(out: ResponseOutparam, headers: Fields, status: u16, body: &[u8]) {
    let response = OutgoingResponse::new(headers);
    if response.set_status_code(status).is_err() {
        let _ = response.set_status_code(500);
    }
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        // blocking-write-and-flush takes at most 4096 bytes per call.
        for chunk in body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        drop(stream);
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

/// Escapes text for a JSON string literal.
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
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}
