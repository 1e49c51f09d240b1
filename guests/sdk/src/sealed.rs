//! Secrets the bundle uses without ever seeing them (`greentic:secrets/sealed`).
//!
//! A secret declared under `[[secrets.sealed]]` in `bundle.toml` is never returned by
//! [`crate::secrets::get`] (it answers `Denied`). The host uses it for the bundle:
//! it checks inbound signatures ([`verify_hmac_sha256`], constant time) and replaces
//! `{{secret:NAME}}` placeholders in outgoing https requests to the authorities the
//! manifest lists for it.

use crate::bindings::greentic::secrets1_1_0::sealed as wit;
use crate::secrets::Error;

/// Whether `mac` is the HMAC-SHA256 of `message` keyed with the sealed secret `name`.
/// There is deliberately no function that returns a MAC.
pub fn verify_hmac_sha256(name: &str, message: &[u8], mac: &[u8]) -> Result<bool, Error> {
    wit::verify_hmac_sha256(name, message, mac).map_err(Error::from)
}

/// The placeholder the host replaces with the sealed secret `name` in the path or a
/// header value of an outgoing https request.
pub fn placeholder(name: &str) -> String {
    format!("{{{{secret:{name}}}}}")
}
