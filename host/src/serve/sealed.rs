//! Sealed secrets on the wire: a guest writes `{{secret:NAME}}` in the path or a
//! header value of an outgoing request, and the host puts the value there after
//! the request has left the guest, then scrubs the value out of what comes back.
//!
//! Why here and not in the guest: a bundle that holds its bot token can leak it
//! (log it, echo it, send it elsewhere); a bundle that only holds a placeholder
//! cannot. The rules, all checked before anything is sent:
//! - a placeholder must name a secret the bundle's manifest declares sealed;
//! - the request's authority must be in that secret's `to` list, and its scheme
//!   https (plain http only to an authority the operator marks with
//!   `--sealed-allow-http`);
//! - the placeholder stands exactly where the secret's manifest `inject` puts it
//!   (one header's whole value, or the start of the path), once per place;
//!   anywhere else (the query, a later path segment, another header) the request
//!   is refused, so a guest cannot park the value where the destination stores
//!   and shows it back; a placeholder in a body travels as the literal text;
//! - the host connects itself (to the address the egress guard checked), with
//!   its own TLS client: the webpki roots plus the operator's extra roots
//!   (`--egress-ca-file`), and follows no redirect.
//!
//! What comes back (response header values, body, trailers) has every occurrence
//! of an injected value (and of its percent-encoded form) replaced by the
//! placeholder again, streaming: the body is never buffered whole; the last
//! `longest value - 1` bytes of each chunk wait for the next one so that a value
//! split across chunks is still caught. The response's `content-length` is
//! dropped, since scrubbing may change the length.

use crate::bundle::authority::Authority;
use crate::bundle::manifest::{Placement, SealedSecret};
use bytes::Bytes;
use http_body::{Body, Frame};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions};
use zeroize::Zeroizing;

const OPEN: &[u8] = b"{{secret:";
const CLOSE: &[u8] = b"}}";
/// Longest name a placeholder may carry (as `get` accepts).
const MAX_NAME: usize = 400;
/// Connect and first-byte bounds when the guest sets none (its own time limit
/// still applies).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The operator's settings for requests that carry sealed secrets.
#[derive(Debug, Clone)]
pub struct SealedEgress {
    /// Authorities a sealed secret may reach over plain http (a local sidecar,
    /// loopback tests); https everywhere else.
    pub allow_http: Vec<Authority>,
    /// The TLS client: webpki roots plus the operator's extra roots.
    pub tls: Arc<rustls::ClientConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum SealedConfigError {
    #[error("--egress-ca-file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("TLS client set-up failed: {0}")]
    Tls(String),
}

impl SealedEgress {
    /// The settings with the webpki roots and the PEM certificates of `ca_file`.
    pub fn new(
        allow_http: Vec<Authority>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, SealedConfigError> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        if let Some(path) = ca_file {
            let error = |reason: String| SealedConfigError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| error(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error(e.to_string()))?;
            if certs.is_empty() {
                return Err(error("no PEM certificate in the file".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| error(e.to_string()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SealedConfigError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            allow_http,
            tls: Arc::new(tls),
        })
    }
}

/// Why a request with placeholders is refused (nothing has been sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `{{secret:` without a well-formed name and `}}`.
    Malformed,
    /// The name is not one of the bundle's sealed secrets.
    NotSealed(String),
    /// The destination is not one this secret may travel to.
    Destination { name: String, why: &'static str },
    /// The placeholder is not where the manifest's `inject` puts this secret.
    Placement { name: String, why: &'static str },
}

impl Refusal {
    /// The secret's name, when the refusal is about one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Refusal::Malformed => None,
            Refusal::NotSealed(name)
            | Refusal::Destination { name, .. }
            | Refusal::Placement { name, .. } => Some(name),
        }
    }

    /// A short, operator-facing reason (no value in it).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Malformed => "a malformed {{secret:...}} placeholder",
            Refusal::NotSealed(_) => "the placeholder names no sealed secret of this bundle",
            Refusal::Destination { why, .. } | Refusal::Placement { why, .. } => why,
        }
    }
}

/// Whether `text` contains a placeholder opening at all (the cheap pre-check).
pub fn mentions_placeholder(text: &[u8]) -> bool {
    text.windows(OPEN.len()).any(|w| w == OPEN)
}

/// The names of the placeholders in `text`, in order.
fn placeholder_names(text: &[u8]) -> Result<Vec<&str>, Refusal> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = find(rest, OPEN) {
        let after = &rest[at + OPEN.len()..];
        let end = find(after, CLOSE).ok_or(Refusal::Malformed)?;
        let name = std::str::from_utf8(&after[..end]).map_err(|_| Refusal::Malformed)?;
        let well_formed = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:".contains(&b));
        if !well_formed {
            return Err(Refusal::Malformed);
        }
        names.push(name);
        rest = &after[end + CLOSE.len()..];
    }
    Ok(names)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The sealed secrets a request uses, after checking every rule; `None` when it
/// has no placeholder. `https` is the request's scheme.
pub fn plan<'m, B>(
    request: &http::Request<B>,
    authority: &Authority,
    https: bool,
    sealed: &'m [SealedSecret],
    settings: &SealedEgress,
) -> Result<Option<Vec<&'m SealedSecret>>, Refusal> {
    let path = request
        .uri()
        .path_and_query()
        .map_or(&b""[..], |p| p.as_str().as_bytes());
    // Each placeholder with where it stands: the path (with its query) or a
    // header, by name, with the header's whole value.
    let mut found: Vec<(&str, Place<'_>)> = placeholder_names(path)?
        .into_iter()
        .map(|name| (name, Place::Path(path)))
        .collect();
    for (header, value) in request.headers() {
        for name in placeholder_names(value.as_bytes())? {
            found.push((name, Place::Header(header.as_str(), value.as_bytes())));
        }
    }
    if found.is_empty() {
        return Ok(None);
    }
    let mut used: Vec<&SealedSecret> = Vec::new();
    for (i, (name, place)) in found.iter().enumerate() {
        let secret = sealed
            .iter()
            .find(|s| s.name == *name)
            .ok_or_else(|| Refusal::NotSealed(name.to_string()))?;
        let refuse = |why| Refusal::Destination {
            name: name.to_string(),
            why,
        };
        if !secret.to.contains(authority) {
            return Err(refuse("the destination is not in this secret's `to` list"));
        }
        if !https && !settings.allow_http.contains(authority) {
            return Err(refuse(
                "plain http (the operator has not allowed it for this authority)",
            ));
        }
        // One placeholder per place: a second one in the same path or header
        // would be somewhere the manifest did not name.
        let alone = !found[..i].iter().any(|(_, other)| other.same(place));
        if !alone || !place.fits(secret, name) {
            return Err(Refusal::Placement {
                name: name.to_string(),
                why: "the placeholder is not where the manifest's `inject` puts this secret",
            });
        }
        if !used.iter().any(|u| u.name == secret.name) {
            used.push(secret);
        }
    }
    Ok(Some(used))
}

/// Where a placeholder stands in a request.
#[derive(Clone, Copy)]
enum Place<'r> {
    /// The path with its query.
    Path(&'r [u8]),
    /// A header (name, whole value).
    Header(&'r str, &'r [u8]),
}

impl Place<'_> {
    fn same(&self, other: &Place<'_>) -> bool {
        match (self, other) {
            (Place::Path(_), Place::Path(_)) => true,
            (Place::Header(a, x), Place::Header(b, y)) => a == b && x == y,
            _ => false,
        }
    }

    /// Whether the placeholder for `name` here is exactly where `secret`'s
    /// placement puts it.
    fn fits(&self, secret: &SealedSecret, name: &str) -> bool {
        let placeholder = |before: &str, after: &str| {
            let mut text = before.as_bytes().to_vec();
            text.extend_from_slice(OPEN);
            text.extend_from_slice(name.as_bytes());
            text.extend_from_slice(CLOSE);
            text.extend_from_slice(after.as_bytes());
            text
        };
        match (self, &secret.inject) {
            (Place::Path(path), Some(Placement::PathPrefix { before, after })) => {
                path.starts_with(&placeholder(before, after))
            }
            (
                Place::Header(header, value),
                Some(Placement::Header {
                    name: wanted,
                    before,
                    after,
                }),
            ) => header == wanted && *value == placeholder(before, after).as_slice(),
            _ => false,
        }
    }
}

/// A sealed value, ready to be put into a request and scrubbed out of a response.
pub struct Injected {
    placeholder: Vec<u8>,
    value: Zeroizing<Vec<u8>>,
    /// The value as it goes into a path (percent-encoded where needed).
    in_path: Zeroizing<Vec<u8>>,
}

impl Injected {
    pub fn new(name: &str, value: &[u8]) -> Self {
        let mut placeholder = OPEN.to_vec();
        placeholder.extend_from_slice(name.as_bytes());
        placeholder.extend_from_slice(CLOSE);
        Self {
            placeholder,
            value: Zeroizing::new(value.to_vec()),
            in_path: Zeroizing::new(percent_encode_path(value)),
        }
    }
}

impl std::fmt::Debug for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injected")
            .field("placeholder", &String::from_utf8_lossy(&self.placeholder))
            .field("value", &"[redacted]")
            .finish()
    }
}

fn percent_encode_path(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for &b in value {
        let plain = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b);
        if plain {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// A sealed value cannot be placed where it was asked for.
#[derive(Debug, thiserror::Error)]
#[error("the value of a sealed secret cannot be placed in {0} (characters a header cannot hold)")]
pub struct PlacementError(&'static str);

fn replace_all(text: &[u8], from: &[u8], to: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(text.len()));
    let mut rest = text;
    while let Some(at) = find(rest, from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Puts the values into the request's path and header values.
pub fn substitute<B>(
    request: &mut http::Request<B>,
    injected: &[Injected],
) -> Result<(), PlacementError> {
    if let Some(path) = request.uri().path_and_query() {
        let mut text = Zeroizing::new(path.as_str().as_bytes().to_vec());
        for one in injected {
            text = replace_all(&text, &one.placeholder, &one.in_path);
        }
        let path = http::uri::PathAndQuery::try_from(text.as_slice())
            .map_err(|_| PlacementError("the path"))?;
        let mut parts = request.uri().clone().into_parts();
        parts.path_and_query = Some(path);
        *request.uri_mut() =
            http::Uri::from_parts(parts).map_err(|_| PlacementError("the path"))?;
    }
    for value in request.headers_mut().values_mut() {
        if !mentions_placeholder(value.as_bytes()) {
            continue;
        }
        let mut text = Zeroizing::new(value.as_bytes().to_vec());
        for one in injected {
            text = replace_all(&text, &one.placeholder, &one.value);
        }
        let mut replaced =
            http::HeaderValue::from_bytes(&text).map_err(|_| PlacementError("a header"))?;
        replaced.set_sensitive(true);
        *value = replaced;
    }
    Ok(())
}

/// Replaces every occurrence of the injected values by their placeholders, in
/// whatever encoding a reflecting API plausibly hands them back:
/// - the value itself, and any mix of its bytes written as `%HH` (any case, any
///   character set), `+` for a space (form encoding), JSON escapes (`\/`, `\"`,
///   `\\`, `\uHHHH`) and HTML character references (`&#NN;`, `&#xHH;`, `&amp;`,
///   `&lt;`, `&gt;`, `&quot;`, `&apos;`): matched by decoding while comparing;
/// - base64 and base64url at each of the three byte alignments (so the value is
///   found inside a longer encoded text too), and hex in either case: matched as
///   literal texts.
///
/// A match that runs into the end of what is scrubbed (a body or header cut short)
/// is replaced as well: a held-back tail that begins a value is never released.
#[derive(Debug)]
pub struct Scrubber {
    /// (value, placeholder), matched through the decodings above.
    values: Vec<(Zeroizing<Vec<u8>>, Vec<u8>)>,
    /// (encoded text, placeholder), matched exactly.
    literals: Vec<(Zeroizing<Vec<u8>>, Vec<u8>)>,
    /// Bytes a match may begin with.
    starts: Box<[bool; 256]>,
    /// Two-byte pairs a match may begin with (a 65,536-bit set): the scan's
    /// filter, so that a byte that merely begins some encoding is not compared.
    pairs: Box<[u64; 1024]>,
    /// The longest text a match may span, less one: what a chunk holds back.
    keep: usize,
}

/// The longest encoding of one byte the decoding matcher accepts (`&#x003A;`
/// style references are bounded to this).
const MAX_UNIT: usize = 8;

/// How a comparison at one position ended.
enum Match {
    /// The whole value, spanning this many bytes.
    Whole(usize),
    /// The text ended after at least one byte of the value matched.
    CutShort,
    No,
}

/// One encoded byte at the start of `data`: (byte, length), `None` when `data`
/// does not begin with a complete encoding (or ends inside one).
fn decode_unit(data: &[u8]) -> Option<(u8, usize)> {
    let hex = |b: u8| (b as char).to_digit(16);
    match *data.first()? {
        b'+' => Some((b' ', 1)),
        b'%' => {
            let (h, l) = (hex(*data.get(1)?)?, hex(*data.get(2)?)?);
            Some(((h * 16 + l) as u8, 3))
        }
        b'\\' => match *data.get(1)? {
            b'/' => Some((b'/', 2)),
            b'"' => Some((b'"', 2)),
            b'\\' => Some((b'\\', 2)),
            b'u' => {
                let mut code = 0u32;
                for i in 2..6 {
                    code = code * 16 + hex(*data.get(i)?)?;
                }
                u8::try_from(code).ok().map(|b| (b, 6))
            }
            _ => None,
        },
        b'&' => {
            let end = data.iter().take(MAX_UNIT).position(|&b| b == b';')?;
            let entity = &data[1..end];
            let byte = match entity {
                b"amp" => b'&',
                b"lt" => b'<',
                b"gt" => b'>',
                b"quot" => b'"',
                b"apos" => b'\'',
                [b'#', b'x' | b'X', digits @ ..] if !digits.is_empty() => {
                    let text = std::str::from_utf8(digits).ok()?;
                    u8::try_from(u32::from_str_radix(text, 16).ok()?).ok()?
                }
                [b'#', digits @ ..] if !digits.is_empty() => {
                    let text = std::str::from_utf8(digits).ok()?;
                    text.parse::<u8>().ok()?
                }
                _ => return None,
            };
            Some((byte, end + 1))
        }
        _ => None,
    }
}

/// Compares `value` with the text at the start of `data`, decoding as it goes.
fn match_decoded(data: &[u8], value: &[u8]) -> Match {
    match_from(data, 0, value, 0)
}

/// [`match_decoded`] from `data[at..]` and `value[i..]`. Where a byte is both
/// the value's own byte and the start of an escape (`&` of `&amp;`), both readings
/// are tried.
fn match_from(data: &[u8], at: usize, value: &[u8], i: usize) -> Match {
    let Some(&want) = value.get(i) else {
        return Match::Whole(at);
    };
    let Some(&byte) = data.get(at) else {
        return if i > 0 { Match::CutShort } else { Match::No };
    };
    let mut result = Match::No;
    if b"%\\&+".contains(&byte) {
        match decode_unit(&data[at..]) {
            Some((decoded, len)) if decoded == want => {
                result = match_from(data, at + len, value, i + 1);
            }
            // An escape cut by the end of the text may still be the value.
            None if i > 0 && data.len() - at < MAX_UNIT && byte != b'+' => {
                result = Match::CutShort;
            }
            _ => {}
        }
        if matches!(result, Match::Whole(_)) {
            return result;
        }
    }
    if byte == want {
        match match_from(data, at + 1, value, i + 1) {
            Match::No => {}
            other => return other,
        }
    }
    result
}

/// base64 (standard and url-safe) at the three alignments, and hex: the parts of
/// the encoded text that depend on the value alone.
fn literal_encodings(value: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    use base64::Engine as _;
    let mut out = Vec::new();
    // The value alone, whole (its last characters included), with and without `=`.
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
    ] {
        let encoded = Zeroizing::new(engine.encode(value));
        let bare = encoded.trim_end_matches('=');
        out.push(Zeroizing::new(encoded.as_bytes().to_vec()));
        out.push(Zeroizing::new(bare.as_bytes().to_vec()));
    }
    for pad in 0..3usize {
        let mut padded = Zeroizing::new(vec![0u8; pad]);
        padded.extend_from_slice(value);
        // Characters that mix pad bits, and the last one mixing with what follows.
        let skip = [0, 2, 3][pad];
        let full = padded.len() * 8 / 6;
        for engine in [
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let encoded = Zeroizing::new(engine.encode(&padded[..]));
            if full > skip + 3 {
                out.push(Zeroizing::new(encoded.as_bytes()[skip..full].to_vec()));
            }
        }
    }
    for digits in [b"0123456789abcdef", b"0123456789ABCDEF"] {
        let hex: Vec<u8> = value
            .iter()
            .flat_map(|b| [digits[usize::from(b >> 4)], digits[usize::from(b & 15)]])
            .collect();
        out.push(Zeroizing::new(hex));
    }
    // Longest first: the whole encoding wins over the part inside it.
    out.sort_by_key(|literal| std::cmp::Reverse(literal.len()));
    let mut distinct: Vec<Zeroizing<Vec<u8>>> = Vec::with_capacity(out.len());
    for one in out {
        if !distinct.iter().any(|d| **d == *one) {
            distinct.push(one);
        }
    }
    distinct
}

impl Scrubber {
    pub fn new(injected: &[Injected]) -> Self {
        let mut starts = Box::new([false; 256]);
        let mut pairs = Box::new([0u64; 1024]);
        let mut pair = |a: u8, b: u8| {
            let k = usize::from(a) << 8 | usize::from(b);
            pairs[k >> 6] |= 1 << (k & 63);
        };
        let mut values = Vec::new();
        let mut literals = Vec::new();
        let mut keep = 0;
        for one in injected {
            let Some(&first) = one.value.first() else {
                continue;
            };
            // What may follow the first unit: the value's second byte, or an
            // escape of it (any byte when the value is one byte long).
            let seconds: Vec<u8> = match one.value.get(1) {
                Some(&second) => vec![second, b'%', b'\\', b'&', b'+'],
                None => (0..=255).collect(),
            };
            starts[usize::from(first)] = true;
            for &second in &seconds {
                pair(first, second);
            }
            for (escape, next) in [
                (b'%', &b"0123456789abcdefABCDEF"[..]),
                (b'\\', &b"/\"\\u"[..]),
                (b'&', &b"#algq"[..]),
            ] {
                starts[usize::from(escape)] = true;
                for &b in next {
                    pair(escape, b);
                }
            }
            if first == b' ' {
                starts[usize::from(b'+')] = true;
                for &second in &seconds {
                    pair(b'+', second);
                }
            }
            keep = keep.max(one.value.len() * MAX_UNIT);
            values.push((one.value.clone(), one.placeholder.clone()));
            for literal in literal_encodings(&one.value) {
                starts[usize::from(literal[0])] = true;
                if let Some(&second) = literal.get(1) {
                    pair(literal[0], second);
                }
                keep = keep.max(literal.len());
                literals.push((literal, one.placeholder.clone()));
            }
        }
        Self {
            values,
            literals,
            starts,
            pairs,
            keep: keep.saturating_sub(1),
        }
    }

    /// What is at `data[at..]`: a whole match (its length and placeholder), a
    /// match cut by the end of `data`, or nothing.
    fn match_at(&self, data: &[u8], at: usize) -> (Match, Option<&[u8]>) {
        let rest = &data[at..];
        let byte = data[at];
        let mut cut: Option<&[u8]> = None;
        // Only what can begin here is compared: the value's own first byte, an
        // escape, or a literal's first byte.
        let escape = matches!(byte, b'%' | b'\\' | b'&' | b'+');
        for (value, placeholder) in &self.values {
            if !escape && value.first() != Some(&byte) {
                continue;
            }
            match match_decoded(rest, value) {
                Match::Whole(len) => return (Match::Whole(len), Some(placeholder)),
                Match::CutShort => cut = cut.or(Some(placeholder)),
                Match::No => {}
            }
        }
        for (literal, placeholder) in &self.literals {
            if literal.first() != Some(&byte) {
                continue;
            }
            if rest.starts_with(literal) {
                return (Match::Whole(literal.len()), Some(placeholder));
            }
            if rest.len() < literal.len() && !rest.is_empty() && literal.starts_with(rest) {
                cut = cut.or(Some(placeholder));
            }
        }
        match cut {
            Some(placeholder) => (Match::CutShort, Some(placeholder)),
            None => (Match::No, None),
        }
    }

    /// Scrubs `data[..]`, writing finished bytes to `out`; returns how many bytes
    /// of `data` are finished (the rest may begin a value and waits, unless
    /// `last`: then a value cut short by the end is replaced too).
    fn scrub_into(&self, data: &[u8], last: bool, out: &mut Vec<u8>) -> usize {
        let keep = if last { 0 } else { self.keep };
        // Before `settled`, a whole match fits in `data`, so it is decided.
        let settled = data.len().saturating_sub(keep);
        let mut at = 0;
        loop {
            let Some(candidate) = self.next_start(&data[at..]).map(|i| at + i) else {
                out.extend_from_slice(&data[at..]);
                return data.len();
            };
            out.extend_from_slice(&data[at..candidate]);
            match self.match_at(data, candidate) {
                (Match::Whole(len), Some(placeholder)) => {
                    out.extend_from_slice(placeholder);
                    at = candidate + len;
                }
                (Match::CutShort, Some(_)) if !last => {
                    // The start of a value cut by the chunk's end: wait.
                    return candidate;
                }
                (Match::CutShort, Some(placeholder)) => {
                    // The text ends inside a value: never released.
                    out.extend_from_slice(placeholder);
                    return data.len();
                }
                _ if !last && candidate >= settled => return candidate,
                _ => {
                    out.push(data[candidate]);
                    at = candidate + 1;
                }
            }
        }
    }

    /// Where the next byte that may begin a match is: its pair with the next
    /// byte is one a match begins with (the last byte: the byte alone).
    fn next_start(&self, data: &[u8]) -> Option<usize> {
        let found = data.windows(2).position(|w| {
            let k = usize::from(w[0]) << 8 | usize::from(w[1]);
            self.pairs[k >> 6] >> (k & 63) & 1 == 1
        });
        found.or_else(|| {
            let last = data.len().checked_sub(1)?;
            self.starts[usize::from(data[last])].then_some(last)
        })
    }

    /// `data` with every value replaced (for header values and trailers).
    pub fn scrub(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        self.scrub_into(data, true, &mut out);
        out
    }

    /// Scrubs response headers in place: values are scrubbed, a header whose
    /// name holds a value is dropped (a name cannot hold the placeholder), and
    /// `content-length` is dropped (scrubbing may change the length).
    pub fn scrub_headers(&self, headers: &mut http::HeaderMap) {
        headers.remove(http::header::CONTENT_LENGTH);
        let named: Vec<http::HeaderName> = headers
            .keys()
            .filter(|name| self.scrub(name.as_str().as_bytes()) != name.as_str().as_bytes())
            .cloned()
            .collect();
        for name in named {
            headers.remove(name);
        }
        for value in headers.values_mut() {
            let scrubbed = self.scrub(value.as_bytes());
            if scrubbed != value.as_bytes() {
                // The placeholder is plain ASCII, so a valid value stays valid.
                if let Ok(clean) = http::HeaderValue::from_bytes(&scrubbed) {
                    *value = clean;
                } else {
                    *value = http::HeaderValue::from_static("");
                }
            }
        }
    }
}

/// Sets what a request carrying a sealed value asks of the response: no content
/// coding (`accept-encoding: identity`, no `te`), and the whole representation
/// (no `range`, `if-range`), so that what comes back can be scrubbed as it is.
pub fn ask_for_plain_response<B>(request: &mut http::Request<B>) {
    let headers = request.headers_mut();
    headers.insert(
        http::header::ACCEPT_ENCODING,
        http::HeaderValue::from_static("identity"),
    );
    for name in [
        http::header::RANGE,
        http::header::IF_RANGE,
        http::header::TE,
    ] {
        headers.remove(name);
    }
}

/// Why a response to a request carrying a sealed value cannot be scrubbed (and is
/// refused): it is encoded, or a part.
pub fn unscrubbable(parts: &http::response::Parts) -> Option<&'static str> {
    let coded = parts
        .headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if coded {
        return Some("the response is content-encoded although identity was asked for");
    }
    if parts.status == http::StatusCode::PARTIAL_CONTENT
        || parts.headers.contains_key(http::header::CONTENT_RANGE)
    {
        return Some("the response is a part (206 / content-range) although none was asked for");
    }
    None
}

/// A response body with the injected values scrubbed out, chunk by chunk.
pub struct ScrubbedBody<B> {
    inner: B,
    scrubber: Arc<Scrubber>,
    /// Bytes that may begin a value, held back until the next chunk.
    tail: Zeroizing<Vec<u8>>,
    /// Trailers that arrived while bytes were held back: sent after them.
    trailers: Option<http::HeaderMap>,
    ended: bool,
}

impl<B> ScrubbedBody<B> {
    pub fn new(inner: B, scrubber: Arc<Scrubber>) -> Self {
        Self {
            inner,
            scrubber,
            tail: Zeroizing::new(Vec::new()),
            trailers: None,
            ended: false,
        }
    }

    fn push(&mut self, chunk: &[u8], last: bool) -> Bytes {
        let mut data = Zeroizing::new(std::mem::take(&mut *self.tail));
        data.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(data.len());
        let done = self.scrubber.scrub_into(&data, last, &mut out);
        self.tail.extend_from_slice(&data[done..]);
        Bytes::from(out)
    }
}

impl<B> Body for ScrubbedBody<B>
where
    B: Body<Data = Bytes, Error = HttpError> + Unpin,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => {
                    this.ended = true;
                    if this.tail.is_empty() {
                        return Poll::Ready(None);
                    }
                    let rest = this.push(&[], true);
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(chunk) => {
                        let out = this.push(&chunk, false);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body: the held-back bytes go first.
                        let Ok(mut trailers) = frame.into_trailers() else {
                            continue;
                        };
                        this.scrubber.scrub_headers(&mut trailers);
                        this.ended = true;
                        if this.tail.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        this.trailers = Some(trailers);
                        let rest = this.push(&[], true);
                        return Poll::Ready(Some(Ok(Frame::data(rest))));
                    }
                },
            }
        }
    }
}

type Stream = Box<dyn StreamIo>;
trait StreamIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin> StreamIo for T {}

/// The response of a sent request and the future that drives its connection.
pub type Sent = (
    http::Response<hyper::body::Incoming>,
    Pin<Box<dyn Future<Output = Result<(), HttpError>> + Send>>,
);

/// Sends `request` to `addr` (checked by the egress guard) itself: TLS by the
/// authority's name for https, no redirect followed.
pub async fn send<B>(
    mut request: http::Request<B>,
    addr: SocketAddr,
    authority: &Authority,
    https: bool,
    tls: Arc<rustls::ClientConfig>,
    options: Option<RequestOptions>,
) -> Result<Sent, HttpError>
where
    B: Body<Data = Bytes, Error = HttpError> + Send + 'static,
{
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let tcp =
        match tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(error)) => return Err(HttpError::Connect(error)),
            Err(_) => return Err(HttpError::ConnectionTimeout),
        };
    let stream: Stream = if https {
        let name = match authority.host.parse::<std::net::IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(authority.host.clone())?,
        };
        let connector = tokio_rustls::TlsConnector::from(tls);
        match tokio::time::timeout(connect_timeout, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => Box::new(tls),
            Ok(Err(_)) => return Err(HttpError::TlsCertificateError),
            Err(_) => return Err(HttpError::ConnectionTimeout),
        }
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    // Origin form on the wire: the Host header (set by wasi-http) keeps the name.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let mut conn = Box::pin(conn);
    let mut response = Box::pin(tokio::time::timeout(
        first_byte_timeout,
        sender.send_request(request),
    ));
    let mut conn_done = false;
    let response = std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = response.as_mut().poll(cx) {
            return Poll::Ready(match result {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(error)) => Err(HttpError::from(error)),
                Err(_) => Err(HttpError::ConnectionReadTimeout),
            });
        }
        if !conn_done && let Poll::Ready(result) = conn.as_mut().poll(cx) {
            conn_done = true;
            if let Err(error) = result {
                return Poll::Ready(Err(HttpError::from(error)));
            }
        }
        Poll::Pending
    })
    .await?;
    let io: Pin<Box<dyn Future<Output = Result<(), HttpError>> + Send>> = if conn_done {
        Box::pin(async { Ok(()) })
    } else {
        Box::pin(async move { conn.await.map_err(HttpError::from) })
    };
    Ok((response, io))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(name: &str, to: &[&str], inject: &str) -> SealedSecret {
        SealedSecret {
            name: name.into(),
            to: to.iter().map(|t| Authority::parse(t).unwrap()).collect(),
            inject: Some(Placement::parse(inject).unwrap()),
            inject_defaulted: false,
        }
    }

    fn settings(allow_http: &[&str]) -> SealedEgress {
        SealedEgress::new(
            allow_http
                .iter()
                .map(|t| Authority::parse(t).unwrap())
                .collect(),
            None,
        )
        .unwrap()
    }

    fn request(uri: &str, header: Option<&str>) -> http::Request<()> {
        let mut builder = http::Request::builder().uri(uri);
        if let Some(value) = header {
            builder = builder.header("authorization", value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn placeholders_are_checked_against_the_sealed_list_and_destinations() {
        let list = [
            sealed("tg/token", &["api.telegram.org:443"], "path:/bot{}/"),
            sealed(
                "tg/key",
                &["api.telegram.org:443"],
                "header:authorization=Bearer {}",
            ),
        ];
        let tg = Authority::parse("api.telegram.org:443").unwrap();
        let evil = Authority::parse("evil.example:443").unwrap();
        let none = settings(&[]);
        let plain = request("https://api.telegram.org/bot/sendMessage", None);
        assert_eq!(plan(&plain, &tg, true, &list, &none), Ok(None));
        let path = request("https://api.telegram.org/bot{{secret:tg/token}}/send", None);
        assert_eq!(
            plan(&path, &tg, true, &list, &none).unwrap().unwrap().len(),
            1
        );
        let header = request("https://x/", Some("Bearer {{secret:tg/key}}"));
        assert!(plan(&header, &tg, true, &list, &none).unwrap().is_some());
        // Anywhere but the manifest's place: refused.
        for (uri, header) in [
            (
                "https://x/bot{{secret:tg/token}}/x?t={{secret:tg/token}}",
                None,
            ),
            ("https://x/send?text={{secret:tg/token}}", None),
            ("https://x/bot/{{secret:tg/token}}/", None),
            ("https://x/x/bot{{secret:tg/token}}/", None),
            ("https://x/bot{{secret:tg/key}}/", None),
            ("https://x/", Some("Bearer {{secret:tg/token}}")),
            ("https://x/", Some("{{secret:tg/key}}")),
            ("https://x/", Some("Bearer {{secret:tg/key}} x")),
            (
                "https://x/",
                Some("Bearer {{secret:tg/key}}{{secret:tg/key}}"),
            ),
        ] {
            assert!(
                matches!(
                    plan(&request(uri, header), &tg, true, &list, &none),
                    Err(Refusal::Placement { .. })
                ),
                "{uri} {header:?}"
            );
        }
        let mut other_header = request("https://x/", None);
        other_header
            .headers_mut()
            .insert("x-debug", "Bearer {{secret:tg/key}}".parse().unwrap());
        assert!(matches!(
            plan(&other_header, &tg, true, &list, &none),
            Err(Refusal::Placement { .. })
        ));
        assert!(matches!(
            plan(&path, &evil, true, &list, &none),
            Err(Refusal::Destination { .. })
        ));
        assert!(matches!(
            plan(&path, &tg, false, &list, &none),
            Err(Refusal::Destination { .. })
        ));
        assert!(
            plan(
                &path,
                &tg,
                false,
                &list,
                &settings(&["api.telegram.org:443"])
            )
            .is_ok()
        );
        let other = request("https://api.telegram.org/{{secret:tg/other}}", None);
        assert_eq!(
            plan(&other, &tg, true, &list, &none),
            Err(Refusal::NotSealed("tg/other".into()))
        );
        for bad in ["/{{secret:tg/token", "/{{secret:}}", "/{{secret:TG}}"] {
            let bad = request(&format!("https://api.telegram.org{bad}"), None);
            assert_eq!(plan(&bad, &tg, true, &list, &none), Err(Refusal::Malformed));
        }
    }

    #[test]
    fn values_go_into_paths_and_headers() {
        let injected = [Injected::new("tg/token", b"123:AB/C d")];
        let mut req = request(
            "https://api.telegram.org/bot{{secret:tg/token}}/x?a=1",
            Some("Bearer {{secret:tg/token}}"),
        );
        substitute(&mut req, &injected).unwrap();
        assert_eq!(
            req.uri().to_string(),
            "https://api.telegram.org/bot123:AB%2FC%20d/x?a=1"
        );
        assert_eq!(req.headers()["authorization"], "Bearer 123:AB/C d");
        let mut bad = request("https://x/", Some("{{secret:tg/token}}"));
        assert!(substitute(&mut bad, &[Injected::new("tg/token", b"a\r\nb")]).is_err());
    }

    #[test]
    fn scrubbing_catches_values_split_across_chunks() {
        let scrubber = Arc::new(Scrubber::new(&[Injected::new("k", b"s3cr3t/v")]));
        // A text cut one byte short of the value: the cut value is not released.
        let text = b"a s3cr3t/v b s3cr3t%2Fv c s3cr3t/".to_vec();
        let expected = b"a {{secret:k}} b {{secret:k}} c {{secret:k}}".to_vec();
        for split in 1..6 {
            let chunks: Vec<Bytes> = text.chunks(split).map(Bytes::copy_from_slice).collect();
            let mut body = ScrubbedBody::new(Chunks(chunks.into()), scrubber.clone());
            let mut out = Vec::new();
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
                out.extend_from_slice(&frame.unwrap().into_data().unwrap());
            }
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&expected)
            );
        }
        assert_eq!(scrubber.scrub(b"xs3cr3t/vx"), b"x{{secret:k}}x");
        // Every two-chunk cut of a text full of near misses.
        let text = b"ss3s3cs3cr3t/vs3cr3t/s3cr3t/vvs3cr3t%2Fvs".to_vec();
        let want = String::from_utf8_lossy(&scrubber.scrub(&text)).into_owned();
        assert!(
            want.starts_with("ss3s3c{{secret:k}}s3cr3t/{{secret:k}}v{{secret:k}}{{secret:k}}"),
            "{want}"
        );
        for cut in 0..=text.len() {
            let chunks = vec![
                Bytes::copy_from_slice(&text[..cut]),
                Bytes::copy_from_slice(&text[cut..]),
            ];
            let mut body = ScrubbedBody::new(Chunks(chunks.into()), scrubber.clone());
            let mut out = Vec::new();
            let mut cx = Context::from_waker(std::task::Waker::noop());
            while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
                out.extend_from_slice(&frame.unwrap().into_data().unwrap());
            }
            assert_eq!(String::from_utf8_lossy(&out), want, "cut at {cut}");
        }
    }

    #[test]
    fn scrubbing_catches_every_encoding_a_reflecting_api_uses() {
        use base64::Engine as _;
        let value = b"123456789:AAH-sealed/token+x y&z";
        let scrubber = Scrubber::new(&[Injected::new("k", value)]);
        let text = std::str::from_utf8(value).unwrap();
        let percent_all: String = value.iter().map(|b| format!("%{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(value);
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value);
        let forms = [
            text.to_string(),
            text.replace(':', "%3A")
                .replace('/', "%2f")
                .replace(' ', "%20"),
            text.replace(':', "%3a")
                .replace('+', "%2B")
                .replace(' ', "+"),
            percent_all.clone(),
            percent_all.to_uppercase(),
            text.replace('/', "\\/"),
            text.replace(':', "\\u003a").replace('/', "\\u002F"),
            text.replace('&', "&amp;")
                .replace(':', "&#58;")
                .replace('/', "&#x2f;"),
            b64.clone(),
            b64url,
            hex_of(value),
            hex_of(value).to_uppercase(),
        ];
        for form in &forms {
            for wrapped in [
                form.clone(),
                format!("{{\"echo\":\"{form}\"}}"),
                format!("<p>{form}</p>"),
            ] {
                let out = String::from_utf8(scrubber.scrub(wrapped.as_bytes())).unwrap();
                assert!(out.contains("{{secret:k}}"), "{wrapped} -> {out}");
                assert!(!out.contains(form.as_str()), "{wrapped} -> {out}");
            }
        }
        // Inside a longer base64 text, at every alignment.
        for pad in 0..3 {
            let mut padded = b"ab".to_vec();
            padded.truncate(pad);
            padded.extend_from_slice(value);
            padded.extend_from_slice(b"tail of the message");
            let encoded = base64::engine::general_purpose::STANDARD.encode(&padded);
            let out = String::from_utf8(scrubber.scrub(encoded.as_bytes())).unwrap();
            assert!(out.contains("{{secret:k}}"), "pad {pad}: {out}");
        }
        // Header names as well as values.
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::HeaderName::from_bytes(hex_of(value).as_bytes()).unwrap(),
            http::HeaderValue::from_static("x"),
        );
        headers.insert("x-echo", http::HeaderValue::from_str(&b64).unwrap());
        scrubber.scrub_headers(&mut headers);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["x-echo"], "{{secret:k}}");
        // Text that only looks like escapes passes unchanged.
        let plain = "100% sure & \\n ok +1 &#;";
        assert_eq!(scrubber.scrub(plain.as_bytes()), plain.as_bytes());
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn requests_ask_for_a_whole_plain_response_and_others_are_refused() {
        let mut req = http::Request::builder()
            .uri("https://x/")
            .header("accept-encoding", "gzip, br")
            .header("range", "bytes=0-5")
            .header("if-range", "\"e\"")
            .header("te", "gzip")
            .body(())
            .unwrap();
        ask_for_plain_response(&mut req);
        assert_eq!(req.headers()["accept-encoding"], "identity");
        for gone in ["range", "if-range", "te"] {
            assert!(!req.headers().contains_key(gone), "{gone}");
        }
        let parts = |status: u16, header: Option<(&str, &str)>| {
            let mut builder = http::Response::builder().status(status);
            if let Some((n, v)) = header {
                builder = builder.header(n, v);
            }
            builder.body(()).unwrap().into_parts().0
        };
        assert!(unscrubbable(&parts(200, None)).is_none());
        assert!(unscrubbable(&parts(200, Some(("content-encoding", "identity")))).is_none());
        assert!(unscrubbable(&parts(200, Some(("content-encoding", "gzip")))).is_some());
        assert!(unscrubbable(&parts(206, None)).is_some());
        assert!(unscrubbable(&parts(200, Some(("content-range", "bytes 0-5/9")))).is_some());
    }

    struct Chunks(std::collections::VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = HttpError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
            Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
        }
    }
}
