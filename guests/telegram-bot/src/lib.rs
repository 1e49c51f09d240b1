//! The example Telegram bot: answers each webhook update by calling the Bot API's
//! `sendMessage` with its bot token, which it never sees.
//!
//! The token is sealed in the manifest (`telegram/bot-token`, allowed to travel
//! to the API's authority only). The bot writes the placeholder
//! `{{secret:telegram/bot-token}}` where Telegram wants the token (in the path:
//! `/bot<token>/sendMessage`); the host substitutes it after the request has left
//! the guest and scrubs it out of the answer.
//!
//! The API authority is a readable setting, `telegram-bot/api-authority` (e.g.
//! `api.telegram.org` — not a secret; the tests point it at a loopback server).

use greentic_guest::http::{json_escape, read_body, respond_json};
use greentic_guest::wasi::http::outgoing_handler;
use greentic_guest::wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use greentic_guest::{Guest, IncomingRequest, ResponseOutparam, secrets};

const MAX_BODY: usize = 64 * 1024;
const SEND_MESSAGE: &str = "/bot{{secret:telegram/bot-token}}/sendMessage";

struct TelegramBot;

impl Guest for TelegramBot {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let update = match read_body(&request, MAX_BODY) {
            Ok(body) => String::from_utf8_lossy(&body).into_owned(),
            Err(why) => return respond_json(out, why.http_status(), &error_json(&why.to_string())),
        };
        let (Some(chat), Some(text)) = (number_after(&update, "\"id\""), text_of(&update)) else {
            // Not a message update: nothing to answer.
            return respond_json(out, 200, "{\"ok\":true,\"sent\":false}");
        };
        let authority = match secrets::get_string("api-authority") {
            Ok(value) => value.expose().to_string(),
            Err(error) => {
                let status = error.http_status();
                return respond_json(out, status, &error_json("api-authority not usable"));
            }
        };
        let message = format!(
            "{{\"chat_id\":{chat},\"text\":\"you said: {}\"}}",
            json_escape(&text)
        );
        match send_message(&authority, message.as_bytes()) {
            Ok((status, answer)) => respond_json(
                out,
                200,
                &format!(
                    "{{\"ok\":true,\"sent\":true,\"api_status\":{status},\"api_answer\":\"{}\"}}",
                    json_escape(&answer)
                ),
            ),
            Err(error) => respond_json(out, 502, &error_json(&error)),
        }
    }
}

/// POSTs `body` to the Bot API's sendMessage; the status and answer text.
fn send_message(authority: &str, body: &[u8]) -> Result<(u16, String), String> {
    let headers = Fields::new();
    let _ = headers.append("content-type", b"application/json");
    let request = OutgoingRequest::new(headers);
    let _ = request.set_method(&Method::Post);
    let _ = request.set_scheme(Some(&Scheme::Https));
    request
        .set_authority(Some(authority))
        .map_err(|()| "bad api-authority".to_string())?;
    request
        .set_path_with_query(Some(SEND_MESSAGE))
        .map_err(|()| "bad path".to_string())?;
    let outgoing = request.body().map_err(|()| "no body".to_string())?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    if let Ok(stream) = outgoing.write() {
        let _ = stream.blocking_write_and_flush(body);
        drop(stream);
    }
    let _ = OutgoingBody::finish(outgoing, None);
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(format!("{code:?}")),
        _ => return Err("no response".into()),
    };
    let mut answer = Vec::new();
    if let Ok(incoming) = response.consume()
        && let Ok(stream) = incoming.stream()
    {
        while let Ok(chunk) = stream.blocking_read(MAX_BODY as u64) {
            answer.extend_from_slice(&chunk);
            if answer.len() > MAX_BODY {
                break;
            }
        }
    }
    Ok((
        response.status(),
        String::from_utf8_lossy(&answer).into_owned(),
    ))
}

fn error_json(message: &str) -> String {
    format!("{{\"ok\":false,\"error\":\"{}\"}}", json_escape(message))
}

/// The integer after `key` (e.g. the chat id), found without a JSON parser.
fn number_after(json: &str, key: &str) -> Option<i64> {
    let rest = json[json.find(key)? + key.len()..]
        .trim_start()
        .strip_prefix(':')?;
    let rest = rest.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The message's `text` (escapes kept as sent).
fn text_of(json: &str) -> Option<String> {
    let rest = json[json.find("\"text\"")? + 6..]
        .trim_start()
        .strip_prefix(':')?;
    let rest = rest.trim_start().strip_prefix('"')?;
    let bytes = rest.as_bytes();
    let mut end = 0;
    while end < bytes.len() && bytes[end] != b'"' {
        end += if bytes[end] == b'\\' { 2 } else { 1 };
    }
    rest.get(..end.min(rest.len())).map(str::to_string)
}

greentic_guest::bindings::export_bot!(TelegramBot);
