//! The `{{bundle_id}}` bundle: answers HTTP with something built from the secret
//! `greeting`, read from its own scope through the gtc guest SDK.
//!
//! What a secrets error looks like here: `secrets::get_string` returns
//! `Err(secrets::Error::NotFound)` (not seeded yet), `Err(Error::Unavailable)` (the
//! backend is down: answer 503 so the client retries), `Err(Error::Denied)` (not
//! declared in bundle.toml, or out of scope), `Err(Error::InvalidName(why))`,
//! `Err(Error::Internal)`. `Response::error(&e)` answers `{"ok":false,"error":"<kind>"}`
//! with `e.http_status()`: 503 for `Unavailable`, 500 for the rest.

use greentic_guest::http::{Request, Response};
use greentic_guest::{Handler, secrets};

struct Bundle;

impl Handler for Bundle {
    fn handle(request: Request) -> Response {
        match secrets::get_string("greeting") {
            // Never send a real credential back to a client: a greeting is a
            // harmless setting, so this template may show it.
            Ok(greeting) => Response::text(
                200,
                &format!("{}, {}\n", greeting.expose(), request.path()),
            ),
            Err(error) => Response::error(&error),
        }
    }
}

greentic_guest::bundle!(Bundle);
