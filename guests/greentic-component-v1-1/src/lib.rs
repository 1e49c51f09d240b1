//! A component as written for Greentic's runner against
//! `greentic:secrets-store/secrets-store@1.1.0`: 1.0.0's `get`, plus
//! `put(key, value)` with no error result. Its bindings come from
//! `guests/greentic-wit/`, written to match Greentic's published package type for
//! type. gtc answers its `get` as for 1.0.0 and refuses its `put` (a read-only
//! host): the guest is stopped with a message that says so.
//!
//! `GET …?key=KEY` answers as `greentic-component` does (200 with the value, 404
//! `none`, or the error's case with 500). `GET …?put=KEY` calls `put(KEY, b"x")`
//! and, if `put` ever returned, would answer 201 `stored`.

wit_bindgen::generate!({
    inline: "
        package greentic:runner-component-v1-1;
        world component {
            import greentic:secrets-store/secrets-store@1.1.0;
            include wasi:http/proxy@0.2.12;
        }
    ",
    // WASI first (each package after those it uses), then Greentic's package.
    path: [
        "../../wit/deps/io.wit",
        "../../wit/deps/clocks.wit",
        "../../wit/deps/random.wit",
        "../../wit/deps/filesystem.wit",
        "../../wit/deps/sockets.wit",
        "../../wit/deps/cli.wit",
        "../../wit/deps/http.wit",
        "../greentic-wit/secrets-store@1.1.0/package.wit",
    ],
    world: "greentic:runner-component-v1-1/component",
    generate_all,
});

use exports::wasi::http::incoming_handler::{Guest, IncomingRequest, ResponseOutparam};
use greentic::secrets_store::secrets_store::{SecretsError, get, put};
use wasi::http::types::{Fields, OutgoingBody, OutgoingResponse};

struct RunnerComponent;

impl Guest for RunnerComponent {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let query = request.path_with_query().unwrap_or_default();
        let (status, body) = if let Some((_, key)) = query.split_once("?put=") {
            put(key, b"x");
            (201, b"stored".to_vec())
        } else {
            let key = query
                .split_once("?key=")
                .map(|(_, key)| key.to_string())
                .unwrap_or_default();
            match get(&key) {
                Ok(Some(value)) => (200, value),
                Ok(None) => (404, b"none".to_vec()),
                Err(SecretsError::NotFound) => (500, b"not-found".to_vec()),
                Err(SecretsError::Denied) => (500, b"denied".to_vec()),
                Err(SecretsError::InvalidKey) => (500, b"invalid-key".to_vec()),
                Err(SecretsError::Internal) => (500, b"internal".to_vec()),
            }
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

export!(RunnerComponent);
