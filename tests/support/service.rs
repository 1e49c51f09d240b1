//! A loopback stand-in for a Kubernetes Service in front of one worker, as
//! kube-proxy makes it: it probes the worker's `/readyz` the way the kubelet's
//! readiness probe does, and while the worker is not ready the Service has no
//! endpoint, so a new connection to it is refused (kube-proxy rejects it) and
//! the connections it forwarded are closed. While ready, connections are
//! forwarded byte for byte.
//!
//! The router tests use it to see what a caller sees when no worker of a route
//! is ready, without a cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the worker's `/readyz` is asked (a short readiness-probe period).
const PROBE_PERIOD: Duration = Duration::from_millis(100);

/// The Service; it stops when dropped.
pub struct KubeService {
    /// `http://127.0.0.1:PORT`: the Service's address, for the router's --upstream.
    pub addr: String,
    ready: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KubeService {
    /// A Service on a free loopback port in front of `worker` (`http://127.0.0.1:PORT`).
    pub fn start(worker: &str) -> KubeService {
        let worker = worker
            .strip_prefix("http://")
            .expect("the Service forwards plain HTTP")
            .trim_end_matches('/')
            .to_string();
        let port = super::free_port();
        let ready = Arc::new(AtomicBool::new(false));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let flag = ready.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut endpoint: Option<tokio::task::JoinHandle<()>> = None;
                loop {
                    let is_ready = probe(&worker).await;
                    match (is_ready, endpoint.is_some()) {
                        (true, false) => {
                            endpoint = Some(tokio::spawn(accept_loop(port, worker.clone())));
                        }
                        (false, true) => {
                            // Aborting the accept loop drops the listener (new
                            // connections are refused) and, through the JoinSet it
                            // owns, every forwarded connection.
                            if let Some(task) = endpoint.take() {
                                task.abort();
                                let _ = task.await;
                            }
                        }
                        _ => {}
                    }
                    flag.store(is_ready, Ordering::SeqCst);
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        () = tokio::time::sleep(PROBE_PERIOD) => {}
                    }
                }
                if let Some(task) = endpoint.take() {
                    task.abort();
                }
            });
        });
        KubeService {
            addr: format!("http://127.0.0.1:{port}"),
            ready,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Whether the Service has its endpoint (the worker's last probe was 200).
    pub fn has_endpoint(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Waits until the Service has (`true`) or has lost (`false`) its endpoint.
    pub async fn until_endpoint(&self, wanted: bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.has_endpoint() != wanted {
            assert!(
                std::time::Instant::now() < deadline,
                "the Service's endpoint never became {wanted}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One readiness probe: `GET /readyz` answered 200 within a second.
async fn probe(worker: &str) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(worker).await.ok()?;
        stream
            .write_all(
                format!("GET /readyz HTTP/1.1\r\nhost: {worker}\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Accepts on `port` and forwards each connection to `worker` until aborted.
async fn accept_loop(port: u16, worker: String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket
        .bind(format!("127.0.0.1:{port}").parse().unwrap())
        .unwrap();
    let listener = socket.listen(128).unwrap();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let worker = worker.clone();
        connections.spawn(async move {
            if let Ok(mut upstream) = tokio::net::TcpStream::connect(&worker).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

impl Drop for KubeService {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
