//! Secrets of the bundle's own scope, read-only.
//!
//! The host decides the scope (environment, tenant, team) from its deployment; the
//! bundle only names a secret: `name` (category = the bundle's id), `category/name`,
//! or a full `secrets://env/tenant/team-or-_/category/name` URI of its own scope.
//! A name must also be declared in the bundle's `bundle.toml` (`secrets = [...]`).
//!
//! Values come back in [`Secret`] / [`SecretString`]: the bytes are wiped when the
//! value is dropped and `Debug` never prints them, so a stray `{:?}` in a log line
//! does not leak a credential.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use crate::bindings::greentic::secrets1_1_0::secrets as wit;

/// Why a secret could not be read.
#[derive(Clone, PartialEq, Eq)]
pub enum Error {
    /// No secret of that name exists for the team nor tenant-wide: an operator has
    /// not seeded it yet. Retrying will not help until then.
    NotFound,
    /// The name is outside the bundle's scope, not declared in its manifest, or
    /// declared sealed. Final.
    Denied,
    /// The name is malformed; the text is the host's fixed explanation. Final.
    InvalidName(String),
    /// The secrets backend cannot be reached and no usable cached value exists.
    /// Answer 503 and let the client retry.
    Unavailable,
    /// The host failed while resolving the secret (e.g. a corrupt entry); the
    /// operator's log says what happened.
    Internal,
    /// The value is not UTF-8 ([`get_string`] only).
    NotUtf8,
}

impl Error {
    /// The kebab-case name of the case, as the WIT spells it (`not-found`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound => "not-found",
            Error::Denied => "denied",
            Error::InvalidName(_) => "invalid-name",
            Error::Unavailable => "unavailable",
            Error::Internal => "internal",
            Error::NotUtf8 => "not-utf8",
        }
    }

    /// The HTTP status a handler should answer with when it cannot do its work
    /// without this secret: 503 for [`Error::Unavailable`] (temporary: the client
    /// retries), 500 for everything else — a missing, denied or malformed secret is
    /// the bundle's or the operator's configuration, not the client's request.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::Unavailable => 503,
            _ => 500,
        }
    }

    /// Whether retrying later can succeed without an operator's action.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Error::Unavailable)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("secret not found (not seeded for this scope)"),
            Error::Denied => f.write_str("secret not readable by this bundle"),
            Error::InvalidName(why) => write!(f, "invalid secret name: {why}"),
            Error::Unavailable => f.write_str("secrets backend unavailable, retry later"),
            Error::Internal => f.write_str("the host failed to resolve the secret"),
            Error::NotUtf8 => f.write_str("secret value is not UTF-8"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({})", self.kind())
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(error: wit::Error) -> Self {
        match error {
            wit::Error::NotFound => Error::NotFound,
            wit::Error::Denied => Error::Denied,
            wit::Error::InvalidName(why) => Error::InvalidName(why),
            wit::Error::Unavailable => Error::Unavailable,
            wit::Error::Internal => Error::Internal,
        }
    }
}

/// A secret's bytes, wiped on drop, never printed.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// The value. Keep the borrow short and never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A UTF-8 secret, wiped on drop, never printed.
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// The value. Keep the borrow short and never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// Reads a secret of the bundle's scope.
pub fn get(name: &str) -> Result<Secret, Error> {
    wit::get(name)
        .map(|bytes| Secret(Zeroizing::new(bytes)))
        .map_err(Error::from)
}

/// Reads a secret that must be UTF-8 text (a token, a password).
pub fn get_string(name: &str) -> Result<SecretString, Error> {
    let Secret(mut bytes) = get(name)?;
    let owned = std::mem::take(&mut *bytes);
    match String::from_utf8(owned) {
        Ok(text) => Ok(SecretString(Zeroizing::new(text))),
        Err(not_text) => {
            not_text.into_bytes().zeroize();
            Err(Error::NotUtf8)
        }
    }
}
