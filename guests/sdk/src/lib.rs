//! `greentic-guest`: write a gtc bundle in Rust.
//!
//! A bundle is a WebAssembly component for the world `greentic:secrets/bot@1.1.0`: it
//! exports a `wasi:http` handler and may import the host's read-only secrets. This
//! crate is everything an author needs on top of `wasm32-wasip2`:
//!
//! - [`secrets::get`] / [`secrets::get_string`]: a secret of the bundle's own scope,
//!   returned in a zeroizing type whose `Debug` prints no value;
//! - [`secrets::Error`]: why a `get` failed, with [`secrets::Error::http_status`] (503
//!   when the backend is unreachable, so "bad request" and "secrets are down" stay
//!   apart);
//! - [`sealed::verify_hmac_sha256`]: check a signature with a key the bundle never sees;
//! - [`http`]: a synchronous request/response layer, and [`bundle!`] to export a
//!   [`Handler`].
//!
//! ```ignore
//! use greentic_guest::{Handler, http::{Request, Response}, secrets};
//!
//! struct Bot;
//! impl Handler for Bot {
//!     fn handle(_request: Request) -> Response {
//!         match secrets::get_string("greeting") {
//!             Ok(greeting) => Response::text(200, &format!("{} bytes of greeting", greeting.expose().len())),
//!             Err(error) => Response::error(&error),
//!         }
//!     }
//! }
//! greentic_guest::bundle!(Bot);
//! ```
//!
//! Why not `wstd`: it brings an async executor and its own copy of the WASI bindings
//! (a second version next to the one this world binds). A bundle handles one request
//! per instance, so blocking calls cost nothing here, and one set of bindings keeps
//! components small and their imports exactly those of `wit/`.
//!
//! The generated bindings stay reachable ([`bindings`], [`wasi`], [`Guest`],
//! [`export_bot!`]) for guests that need raw streams.

/// The generated bindings of `greentic:secrets/bot@1.1.0` (from `wit/`).
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "greentic:secrets/bot@1.1.0",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export_bot",
        default_bindings_module: "greentic_guest::bindings",
    });
}

pub mod http;
pub mod sealed;
pub mod secrets;

pub use bindings::exports::wasi::http::incoming_handler::{
    Guest, IncomingRequest, ResponseOutparam,
};
pub use bindings::wasi;
#[doc(hidden)]
pub use wit_bindgen;

/// What a bundle does with one request. Export it with [`bundle!`].
pub trait Handler {
    /// Answers one request. Each request runs on a fresh instance: nothing done
    /// here is visible to the next request.
    fn handle(request: http::Request) -> http::Response;
}

/// Exports a [`Handler`] as the bundle's `wasi:http` incoming handler.
#[macro_export]
macro_rules! bundle {
    ($handler:ty) => {
        struct GreenticGuestBundle;

        impl $crate::Guest for GreenticGuestBundle {
            fn handle(request: $crate::IncomingRequest, out: $crate::ResponseOutparam) {
                let response =
                    <$handler as $crate::Handler>::handle($crate::http::Request::new(request));
                response.send(out);
            }
        }

        $crate::bindings::export_bot!(GreenticGuestBundle with_types_in $crate::bindings);
    };
}
