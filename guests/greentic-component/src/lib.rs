//! A component as written for Greentic's runner: it reads secrets through
//! `greentic:secrets-store/secrets-store@1.0.0` (`get(key) ->
//! result<option<list<u8>>, secrets-error>`, `secrets-error` an `enum`) and knows
//! nothing of gtc's own WIT. Its bindings come from `guests/greentic-wit/`, written
//! to match Greentic's published package type for type, not from the host's copy
//! in `wit/deps/`: gtc serves that interface on the same scoped resolution, so it
//! runs unchanged, and a host copy that drifted from Greentic's shape would fail
//! to link it.
//!
//! `GET …?key=KEY` answers 200 with the value, 404 `none` for `ok(none)`, or the
//! error's case (`not-found`, `denied`, `invalid-key`, `internal`) with 500.

wit_bindgen::generate!({
    inline: "
        package greentic:runner-component;
        world component {
            import greentic:secrets-store/secrets-store@1.0.0;
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
        "../greentic-wit/secrets-store@1.0.0/package.wit",
    ],
    world: "greentic:runner-component/component",
    generate_all,
});

use exports::wasi::http::incoming_handler::{Guest, IncomingRequest, ResponseOutparam};
use greentic::secrets_store::secrets_store::{SecretsError, get};
use wasi::http::types::{Fields, OutgoingBody, OutgoingResponse};

struct RunnerComponent;

impl Guest for RunnerComponent {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let query = request.path_with_query().unwrap_or_default();
        let key = query
            .split_once("?key=")
            .map(|(_, key)| key.to_string())
            .unwrap_or_default();
        let (status, body) = match get(&key) {
            Ok(Some(value)) => (200, value),
            Ok(None) => (404, b"none".to_vec()),
            Err(SecretsError::NotFound) => (500, b"not-found".to_vec()),
            Err(SecretsError::Denied) => (500, b"denied".to_vec()),
            Err(SecretsError::InvalidKey) => (500, b"invalid-key".to_vec()),
            Err(SecretsError::Internal) => (500, b"internal".to_vec()),
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
