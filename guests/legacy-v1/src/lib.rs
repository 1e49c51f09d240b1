//! A bundle as an author wrote it against `greentic:secrets@1.0.0`, with bindings
//! generated from that WIT alone (no SDK): the host must keep running it.
//!
//! `GET …?name=NAME` answers 200 with the secret's bytes, or the error's kind
//! (`not-found`, `denied`, `invalid-name`, `unavailable`, `internal`) with 404, 403,
//! 400, 503 or 500.

wit_bindgen::generate!({
    path: "../../wit",
    world: "greentic:secrets/bot@1.0.0",
    generate_all,
});

use exports::wasi::http::incoming_handler::{Guest, IncomingRequest, ResponseOutparam};
use greentic::secrets1_0_0::secrets::{Error, get};
use wasi::http::types::{Fields, OutgoingBody, OutgoingResponse};

struct LegacyV1;

impl Guest for LegacyV1 {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let query = request.path_with_query().unwrap_or_default();
        let name = query
            .split_once("?name=")
            .map(|(_, name)| name.to_string())
            .unwrap_or_default();
        let (status, body) = match get(&name) {
            Ok(value) => (200, value),
            Err(Error::NotFound) => (404, b"not-found".to_vec()),
            Err(Error::Denied) => (403, b"denied".to_vec()),
            Err(Error::InvalidName(_)) => (400, b"invalid-name".to_vec()),
            Err(Error::Unavailable) => (503, b"unavailable".to_vec()),
            Err(Error::Internal) => (500, b"internal".to_vec()),
        };
        let response = OutgoingResponse::new(Fields::new());
        let _ = response.set_status_code(status);
        let Ok(outgoing) = response.body() else {
            return;
        };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = outgoing.write() {
            let _ = stream.blocking_write_and_flush(&body);
        }
        let _ = OutgoingBody::finish(outgoing, None);
    }
}

export!(LegacyV1);
