//! Loopback upstreams for the sealed-secrets tests: a test CA, TLS (or plain)
//! HTTP/1.1 servers that keep their own log of every connection and request they
//! received, and answer by echoing what they got (the request head and body, in
//! the response headers and in a body sent in 7-byte chunks, so a value is split
//! across chunks) or with a redirect. Their logs are the proof of what was sent
//! where.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A certificate authority for loopback TLS; its PEM is written to a file that
/// `gtc serve --egress-ca-file` can trust.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pub pem_file: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gtc test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        let pem_file = dir.join("test-ca.pem");
        std::fs::write(&pem_file, ca.pem()).unwrap();
        TestCa {
            issuer: ca,
            pem_file,
        }
    }

    /// A server certificate for 127.0.0.1 signed by this CA.
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        Arc::new(config)
    }
}

/// How an upstream answers.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// 200, echoing the request head and body (headers: `x-echo-path`,
    /// `x-echo-authorization`; body in 7-byte chunks).
    Echo,
    /// 302 to `Location: https://<to>/stolen?<the request path>`.
    RedirectTo(SocketAddr),
    /// 200, the request path in every encoding a reflecting API might use
    /// (percent-encoded in both cases, form, JSON and HTML escapes, base64,
    /// base64url, hex), body in 7-byte chunks; `x-echo-b64` holds it in base64.
    Reflect,
    /// Like an API that compresses when asked: with `accept-encoding` naming
    /// gzip, the echo comes back `content-encoding: gzip` (its bytes reversed:
    /// any coding the scrubber cannot read through); else a plain echo.
    EncodesIfAsked,
    /// `content-encoding: gzip` (reversed bytes) whatever was asked.
    AlwaysEncoded,
    /// Honours `range: bytes=A-B` on the request path (206 with that slice);
    /// without one, 200 with the whole path.
    RangesIfAsked,
    /// 206 with the first half of the request path, whatever was asked.
    AlwaysPartial,
    /// 200 with the request path cut two bytes short.
    CutShort,
}

/// The request path in the encodings [`Answer::Reflect`] hands back, one a line.
pub fn reflections(path: &str) -> Vec<String> {
    use base64::Engine as _;
    let every = |upper: bool| -> String {
        path.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else if upper {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect()
    };
    vec![
        every(true),
        every(false),
        every(false).replace("%20", "+"),
        path.replace('/', "\\/"),
        path.replace(':', "&#58;").replace('/', "&#x2F;"),
        base64::engine::general_purpose::STANDARD.encode(path),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(path),
        path.bytes().map(|b| format!("{b:02x}")).collect(),
    ]
}

/// A chunked response (7-byte chunks) with `status` and extra header lines.
fn chunked_response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\n{headers}\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(7) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A loopback upstream and its own log.
pub struct Upstream {
    pub addr: SocketAddr,
    connections: Arc<Mutex<usize>>,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    /// A TLS upstream with a certificate for 127.0.0.1 from `ca`.
    pub fn tls(ca: &TestCa, answer: Answer) -> Upstream {
        Self::start(Some(ca.server_config()), answer)
    }

    /// A plain-HTTP upstream.
    pub fn plain(answer: Answer) -> Upstream {
        Self::start(None, answer)
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>, answer: Answer) -> Upstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (seen_connections, seen_requests) = (connections.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let accepted = tokio::select! {
                        _ = &mut stop_rx => return,
                        accepted = listener.accept() => accepted,
                    };
                    let Ok((tcp, _)) = accepted else { continue };
                    *seen_connections.lock().unwrap() += 1;
                    let requests = seen_requests.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            Some(config) => {
                                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                                if let Ok(stream) = acceptor.accept(tcp).await {
                                    serve_one(stream, requests, answer).await;
                                }
                            }
                            None => serve_one(tcp, requests, answer).await,
                        }
                    });
                }
            });
        });
        Upstream {
            addr,
            connections,
            requests,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// TCP connections accepted so far (whether or not a request followed).
    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    /// Every request received: head and body, as text.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The data of a chunked body (no extensions, no trailers: what hyper sends).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let end = (start + size).min(body.len());
        out.extend_from_slice(&body[start..end]);
        body = &body[(end + 2).min(body.len())..];
    }
    out
}

/// One HTTP/1.1 message (a request or a response) read off `stream`: its head, up
/// to and including the blank line, and its body (dechunked if it was chunked),
/// by its `content-length` or up to the last chunk. `None` if the stream ended
/// before the head did; a stream that ends in the body gives what came.
pub async fn read_message<S: AsyncRead + Unpin>(stream: &mut S) -> Option<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    loop {
        let body = &data[head_end..];
        let complete = if chunked {
            body.starts_with(b"0\r\n\r\n") || body.windows(7).any(|w| w == b"\r\n0\r\n\r\n")
        } else {
            body.len() >= length
        };
        if complete {
            break;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let body = data.split_off(head_end);
    Some((head, if chunked { dechunk(&body) } else { body }))
}

async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    requests: Arc<Mutex<Vec<String>>>,
    answer: Answer,
) {
    let Some((head, body)) = read_message(&mut stream).await else {
        return;
    };
    let received = format!("{head}{}", String::from_utf8_lossy(&body));
    requests.lock().unwrap().push(received.clone());
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    let response = match answer {
        Answer::Echo => {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-echo-path: {path}\r\n\
                 x-echo-authorization: {}\r\ntransfer-encoding: chunked\r\n\
                 connection: close\r\n\r\n",
                header("authorization")
            )
            .into_bytes();
            for chunk in received.as_bytes().chunks(7) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            out
        }
        Answer::Reflect => {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&path);
            let body = reflections(&path).join("\n");
            chunked_response("200 OK", &format!("x-echo-b64: {b64}\r\n"), body.as_bytes())
        }
        Answer::EncodesIfAsked | Answer::AlwaysEncoded => {
            let asked = header("accept-encoding").contains("gzip");
            if asked || matches!(answer, Answer::AlwaysEncoded) {
                let reversed: Vec<u8> = received.bytes().rev().collect();
                chunked_response("200 OK", "content-encoding: gzip\r\n", &reversed)
            } else {
                chunked_response("200 OK", "", received.as_bytes())
            }
        }
        Answer::RangesIfAsked | Answer::AlwaysPartial => {
            let bytes = path.as_bytes();
            let range = header("range");
            let asked = range.strip_prefix("bytes=").and_then(|r| {
                let (a, b) = r.split_once('-')?;
                Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
            });
            let slice = match (asked, answer) {
                (Some((a, b)), _) if a <= b && b < bytes.len() => Some((a, b)),
                (_, Answer::AlwaysPartial) => Some((0, bytes.len() / 2)),
                _ => None,
            };
            match slice {
                Some((a, b)) => chunked_response(
                    "206 Partial Content",
                    &format!("content-range: bytes {a}-{b}/{}\r\n", bytes.len()),
                    &bytes[a..=b],
                ),
                None => chunked_response("200 OK", "", bytes),
            }
        }
        Answer::CutShort => {
            let bytes = path.as_bytes();
            chunked_response("200 OK", "", &bytes[..bytes.len().saturating_sub(2)])
        }
        Answer::RedirectTo(to) => format!(
            "HTTP/1.1 302 Found\r\nlocation: https://{to}/stolen?{path}\r\n\
             content-length: 0\r\nconnection: close\r\n\r\n"
        )
        .into_bytes(),
    };
    // Small writes, so the chunks also arrive separately.
    for piece in response.chunks(64) {
        if stream.write_all(piece).await.is_err() {
            return;
        }
        let _ = stream.flush().await;
    }
    let _ = stream.shutdown().await;
}
