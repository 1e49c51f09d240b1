//! The `{{bundle_id}}` bundle: answers HTTP on the routes of bundle.toml and reads
//! one secret, `greeting`, from its own scope (category `{{bundle_id}}`, the bundle
//! id) through the gtc guest SDK (`greentic-guest`, copied into this directory).
//! It never echoes the value — a real bot must not either — so the answer only
//! says how long it is.
//!
//! How a secrets error arrives: `secrets::get` returns `Err(secrets::Error::…)`:
//! `NotFound` (not seeded yet), `Unavailable` (the backend is down and nothing
//! usable is cached: answer 503 so the client retries), `Denied` (not declared in
//! bundle.toml, or outside the scope), `InvalidName(why)`, `Internal`. A real bot
//! that cannot work without the secret answers `Response::error(&error)`:
//! `{"ok":false,"error":"<kind>"}` with `error.http_status()` (503 for
//! `Unavailable`, 500 otherwise); this template spells the cases out instead.

use greentic_guest::http::{Request, Response};
use greentic_guest::secrets::{self, Error};
use greentic_guest::Handler;

/// The secret this bundle reads: declared in bundle.toml's `secrets` list (a `get`
/// of an undeclared name is `Denied`).
const SECRET: &str = "greeting";

struct Bundle;

impl Handler for Bundle {
    fn handle(_request: Request) -> Response {
        match secrets::get(SECRET) {
            Ok(value) => Response::text(
                200,
                &format!(
                    "{{bundle_id}}: secret {SECRET:?} is set ({} bytes)\n",
                    value.expose().len()
                ),
            ),
            Err(Error::NotFound) => Response::text(
                404,
                &format!("secret {SECRET:?} not found: seed it (see README.md)\n"),
            ),
            Err(Error::Unavailable) => {
                Response::text(503, "secrets are unavailable right now; retry later\n")
            }
            Err(other) => Response::text(500, &format!("secret {SECRET:?}: {other}\n")),
        }
    }
}

greentic_guest::bundle!(Bundle);
