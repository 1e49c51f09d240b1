//! A loopback TCP proxy between `gtc` and OpenBao that counts the Vault requests
//! it forwards, by kind, and can drop traffic silently the way a NetworkPolicy
//! does:
//!
//! - [`Mode::Forward`]: forwards every request (and counts it).
//! - [`Mode::Blackhole`]: connections are accepted and requests are read, but
//!   nothing is forwarded and nothing is answered; connections already open stall
//!   too. What a dropped packet looks like to a client that is already connected.
//! - [`Mode::NoAccept`]: the listener stops accepting and its backlog is filled,
//!   so the kernel drops new SYNs: a client's connect times out. What a
//!   NetworkPolicy drop looks like to a new connection.
//!
//! Requests are framed by their `Content-Length` (gtc's client sends no chunked
//! bodies), so keep-alive connections are counted request by request.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward = 0,
    Blackhole = 1,
    NoAccept = 2,
}

impl Mode {
    fn from_u8(value: u8) -> Mode {
        match value {
            1 => Mode::Blackhole,
            2 => Mode::NoAccept,
            _ => Mode::Forward,
        }
    }
}

/// What kind of Vault request a request line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Login,
    Renew,
    KvRead,
    Decrypt,
    Other,
}

impl Kind {
    pub fn of(method: &str, path: &str) -> Kind {
        let path = path.split('?').next().unwrap_or(path);
        if path == "/v1/auth/token/renew-self" {
            Kind::Renew
        } else if path.starts_with("/v1/auth/") && path.ends_with("/login") {
            Kind::Login
        } else if method == "GET" && path.contains("/data/") {
            Kind::KvRead
        } else if path.contains("/decrypt/") {
            Kind::Decrypt
        } else {
            Kind::Other
        }
    }
}

#[derive(Default)]
struct Counters {
    login: AtomicU64,
    renew: AtomicU64,
    kv_read: AtomicU64,
    decrypt: AtomicU64,
    other: AtomicU64,
    /// Requests read but never forwarded (blackhole).
    swallowed: AtomicU64,
}

impl Counters {
    fn of(&self, kind: Kind) -> &AtomicU64 {
        match kind {
            Kind::Login => &self.login,
            Kind::Renew => &self.renew,
            Kind::KvRead => &self.kv_read,
            Kind::Decrypt => &self.decrypt,
            Kind::Other => &self.other,
        }
    }
}

/// Requests forwarded to Vault, by kind (and those swallowed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub login: u64,
    pub renew: u64,
    pub kv_read: u64,
    pub decrypt: u64,
    pub other: u64,
    pub swallowed: u64,
}

impl Tally {
    /// Requests that reached Vault.
    pub fn forwarded(&self) -> u64 {
        self.login + self.renew + self.kv_read + self.decrypt + self.other
    }

    /// `self - earlier`, kind by kind.
    pub fn since(&self, earlier: &Tally) -> Tally {
        Tally {
            login: self.login - earlier.login,
            renew: self.renew - earlier.renew,
            kv_read: self.kv_read - earlier.kv_read,
            decrypt: self.decrypt - earlier.decrypt,
            other: self.other - earlier.other,
            swallowed: self.swallowed - earlier.swallowed,
        }
    }
}

/// The proxy; it stops when dropped.
pub struct VaultProxy {
    /// `http://127.0.0.1:PORT`, to be used as gtc's VAULT_ADDR.
    pub addr: String,
    port: u16,
    mode: Arc<AtomicU8>,
    /// The mode the accept loop has acted on (it stores it each time round).
    applied: Arc<AtomicU8>,
    wake: tokio::sync::watch::Sender<u8>,
    counters: Arc<Counters>,
    /// Connections made to fill the backlog in `NoAccept` mode.
    fillers: Mutex<Vec<std::net::TcpStream>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The accept queue's length: large enough for a fleet starting at once, small
/// enough to fill quickly in `NoAccept` mode.
const BACKLOG: u32 = 256;

impl VaultProxy {
    /// A proxy in front of `upstream` (`http://127.0.0.1:PORT`), in `mode`.
    pub fn start(upstream: &str, mode: Mode) -> VaultProxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("the proxy forwards plain HTTP")
            .to_string();
        let port = super::free_port();
        let mode_flag = Arc::new(AtomicU8::new(mode as u8));
        let applied = Arc::new(AtomicU8::new(mode as u8));
        let counters = Arc::new(Counters::default());
        let (wake, mut woken) = tokio::sync::watch::channel(mode as u8);
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (flag, counts, acted) = (mode_flag.clone(), counters.clone(), applied.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.set_reuseaddr(true).unwrap();
                socket
                    .bind(format!("127.0.0.1:{port}").parse().unwrap())
                    .unwrap();
                let listener = socket.listen(BACKLOG).unwrap();
                ready_tx.send(()).unwrap();
                loop {
                    let now = flag.load(Ordering::SeqCst);
                    acted.store(now, Ordering::SeqCst);
                    let accepting = Mode::from_u8(now) != Mode::NoAccept;
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        _ = woken.changed() => continue,
                        accepted = listener.accept(), if accepting => {
                            let Ok((stream, _)) = accepted else { continue };
                            tokio::spawn(connection(
                                stream,
                                upstream.clone(),
                                flag.clone(),
                                counts.clone(),
                            ));
                        }
                    }
                }
            });
        });
        ready_rx.recv().unwrap();
        let proxy = VaultProxy {
            addr: format!("http://127.0.0.1:{port}"),
            port,
            mode: mode_flag,
            applied,
            wake,
            counters,
            fillers: Mutex::new(Vec::new()),
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        if mode == Mode::NoAccept {
            proxy.fill_backlog();
        }
        proxy
    }

    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::SeqCst))
    }

    /// Switches mode; returns once the proxy acts on it.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
        let _ = self.wake.send(mode as u8);
        // The accept loop must have acted on the change before the backlog is
        // filled (or before the test relies on the new mode).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.applied.load(Ordering::SeqCst) != mode as u8 {
            assert!(
                std::time::Instant::now() < deadline,
                "the proxy never switched to {mode:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        if mode == Mode::NoAccept {
            self.fill_backlog();
        } else {
            self.fillers.lock().unwrap().clear();
        }
    }

    /// Fills the accept queue with connections of our own: the kernel then
    /// drops new SYNs, so a client's connect times out.
    fn fill_backlog(&self) {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let mut fillers = self.fillers.lock().unwrap();
        for _ in 0..(BACKLOG as usize + 64) {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
                Ok(stream) => fillers.push(stream),
                Err(_) => return,
            }
        }
        panic!("the proxy's backlog did not fill: connects still complete");
    }

    /// Requests forwarded so far, by kind.
    pub fn tally(&self) -> Tally {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Tally {
            login: load(&c.login),
            renew: load(&c.renew),
            kv_read: load(&c.kv_read),
            decrypt: load(&c.decrypt),
            other: load(&c.other),
            swallowed: load(&c.swallowed),
        }
    }
}

impl Drop for VaultProxy {
    fn drop(&mut self) {
        self.fillers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Request line and Content-Length of a request head.
fn parse_head(head: &[u8]) -> (String, String, usize) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    (method, path, length)
}

async fn connection(
    client: TcpStream,
    upstream: String,
    mode: Arc<AtomicU8>,
    counts: Arc<Counters>,
) {
    let forwarding = || Mode::from_u8(mode.load(Ordering::SeqCst)) == Mode::Forward;
    let (mut from_client, to_client) = client.into_split();
    let mut to_client = Some(to_client);
    let mut to_upstream: Option<tokio::net::tcp::OwnedWriteHalf> = None;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        // One request: its head, then its body.
        let head_end = loop {
            if let Some(at) = find(&buf, b"\r\n\r\n") {
                break at + 4;
            }
            match from_client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let (method, path, length) = parse_head(&buf[..head_end]);
        while buf.len() < head_end + length {
            match from_client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let request: Vec<u8> = buf.drain(..head_end + length).collect();
        if !forwarding() {
            // Swallow this and everything after it; never answer, never close.
            counts.swallowed.fetch_add(1, Ordering::SeqCst);
            let _held = (to_client.take(), to_upstream.take());
            while let Ok(n) = from_client.read(&mut chunk).await {
                if n == 0 {
                    return;
                }
            }
            return;
        }
        counts
            .of(Kind::of(&method, &path))
            .fetch_add(1, Ordering::SeqCst);
        if to_upstream.is_none() {
            let Ok(stream) = TcpStream::connect(&upstream).await else {
                return;
            };
            let (mut from_upstream, writer) = stream.into_split();
            to_upstream = Some(writer);
            let Some(mut to_client) = to_client.take() else {
                return;
            };
            let mode = mode.clone();
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 16 * 1024];
                let stalled = || Mode::from_u8(mode.load(Ordering::SeqCst)) != Mode::Forward;
                loop {
                    let read = from_upstream.read(&mut chunk).await;
                    if stalled() {
                        // Dropped traffic: hold the client's connection open, silent,
                        // even if Vault closes its side.
                        std::future::pending::<()>().await;
                    }
                    match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if to_client.write_all(&chunk[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
        let Some(writer) = to_upstream.as_mut() else {
            return;
        };
        if writer.write_all(&request).await.is_err() {
            return;
        }
    }
}
