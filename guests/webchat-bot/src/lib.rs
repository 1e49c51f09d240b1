//! The example webchat bot: verifies that a webhook was signed with the bundle's
//! `webhook-secret` and answers with a JSON reply.
//!
//! The secret is sealed (its manifest says so): the bot never holds it. The host
//! checks the signature with `greentic:secrets/sealed.verify-hmac-sha256`, in
//! constant time. The signature is
//! `x-greentic-signature: sha256=<hex HMAC-SHA256 of the body>`.
//! A missing or wrong signature is 401; if the secret cannot be fetched because the
//! secrets backend is down, the answer is 503, so an operator can tell "bad request"
//! from "secrets are down".

use greentic_guest::http::{decode_hex, header, json_escape, read_body, respond_json};
use greentic_guest::sealed::verify_hmac_sha256;
use greentic_guest::secrets::Error as SecretError;
use greentic_guest::{Guest, IncomingRequest, ResponseOutparam};

const SIGNATURE_HEADER: &str = "x-greentic-signature";
const MAX_BODY: usize = 256 * 1024;

struct WebchatBot;

impl Guest for WebchatBot {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let signature = header(&request, SIGNATURE_HEADER);
        let body = match read_body(&request, MAX_BODY) {
            Ok(body) => body,
            Err(why) => return respond_json(out, why.http_status(), &error_json(&why.to_string())),
        };
        let Some(mac) = signature.as_deref().and_then(parse_signature) else {
            return respond_json(out, 401, &error_json("bad signature"));
        };
        let valid = match verify_hmac_sha256("webhook-secret", &body, &mac) {
            Ok(valid) => valid,
            Err(SecretError::Unavailable) => {
                return respond_json(
                    out,
                    503,
                    &error_json("secrets backend unavailable, retry later"),
                );
            }
            Err(other) => {
                let message = format!("webhook secret not usable: {}", other.kind());
                return respond_json(out, 500, &error_json(&message));
            }
        };
        if !valid {
            return respond_json(out, 401, &error_json("bad signature"));
        }
        let text = extract_text(&body).unwrap_or_default();
        let reply = format!(
            "{{\"ok\":true,\"reply\":\"you said: {}\"}}",
            json_escape(&text)
        );
        respond_json(out, 200, &reply);
    }
}

fn error_json(message: &str) -> String {
    format!("{{\"ok\":false,\"error\":\"{}\"}}", json_escape(message))
}

/// The MAC bytes of `sha256=<hex>`.
fn parse_signature(signature: &str) -> Option<Vec<u8>> {
    decode_hex(signature.strip_prefix("sha256=")?.trim())
}

/// The `text` field of a JSON body such as `{"text":"hi"}`, found without a JSON
/// parser (the reply only echoes it; escapes are kept as they were sent).
fn extract_text(body: &[u8]) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    let start = body.find("\"text\"")? + "\"text\"".len();
    let rest = body[start..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let mut end = 0;
    let bytes = rest.as_bytes();
    while end < bytes.len() {
        match bytes[end] {
            b'\\' => end += 2,
            b'"' => break,
            _ => end += 1,
        }
    }
    rest.get(..end.min(rest.len()))
        .map(|s| s.replace("\\\"", "\""))
}

greentic_guest::bindings::export_bot!(WebchatBot);
