//! A well-behaved neighbour and the attacks on it: what `tests/hostile_neighbours.rs`
//! and the benches (`soak`, `neighbours`) share to measure one bundle beside a
//! hostile one on the same host.

use super::client;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the neighbour fared over one measurement.
pub struct Fared {
    pub ok: usize,
    pub total: usize,
    pub median: Duration,
    /// Every request's time, sorted (empty for a summary put together by hand).
    pub times: Vec<Duration>,
}

impl Fared {
    fn from(ok: usize, mut times: Vec<Duration>) -> Fared {
        times.sort();
        Fared {
            ok,
            total: times.len(),
            median: times.get(times.len() / 2).copied().unwrap_or_default(),
            times,
        }
    }

    /// The `q` quantile (0..=1) by nearest rank; the median for a summary without times.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.times.is_empty() {
            return self.median;
        }
        let rank = (q * self.times.len() as f64).ceil() as usize;
        self.times[rank.clamp(1, self.times.len()) - 1]
    }

    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    pub fn max(&self) -> Duration {
        self.times.last().copied().unwrap_or(self.median)
    }
}

impl std::fmt::Debug for Fared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fared")
            .field("ok", &self.ok)
            .field("total", &self.total)
            .field("median", &self.median)
            .field("p99", &self.p99())
            .field("max", &self.max())
            .finish()
    }
}

/// When a measurement of the neighbour ends.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    /// After this many requests.
    Count(usize),
    /// After this long (at least one request).
    Elapsed(Duration),
}

/// The neighbour's request, built on the measuring client.
pub type NeighbourRequest =
    Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync + 'static>;

/// The `hello` neighbour at `{base}/hello`.
pub fn hello_request(base: &str) -> NeighbourRequest {
    let url = format!("{base}/hello");
    Arc::new(move |client| client.get(&url))
}

/// `n` requests to the neighbour (`hello` at `/hello`), one at a time over one
/// keep-alive connection, 10 ms apart.
pub async fn neighbour(base: &str, n: usize) -> Fared {
    sample(
        Until::Count(n),
        Duration::from_millis(10),
        hello_request(base),
    )
    .await
}

/// Requests to a neighbour, one at a time over one keep-alive connection, `pause`
/// apart. A request counts as ok when it answers 200 with a complete body; its time
/// runs from sending to the end of the body.
pub async fn sample(until: Until, pause: Duration, request: NeighbourRequest) -> Fared {
    let client = client();
    let mut times = Vec::new();
    let mut ok = 0;
    let started = Instant::now();
    loop {
        match until {
            Until::Count(n) if times.len() >= n => break,
            Until::Elapsed(d) if !times.is_empty() && started.elapsed() >= d => break,
            _ => {}
        }
        let sent = Instant::now();
        let answered = match request(&client).send().await {
            Ok(response) => response.status() == 200 && response.bytes().await.is_ok(),
            Err(_) => false,
        };
        times.push(sent.elapsed());
        ok += usize::from(answered);
        tokio::time::sleep(pause).await;
    }
    Fared::from(ok, times)
}

/// [`sample`] on a thread of its own (a current-thread runtime), so that attackers
/// running on the caller's runtime do not delay the measuring client.
pub fn sample_apart(
    until: Until,
    pause: Duration,
    request: NeighbourRequest,
) -> std::thread::JoinHandle<Fared> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(sample(until, pause, request))
    })
}

/// Starts `n` concurrent GETs of `path`; each yields (head status, retry-after
/// present, body read completely).
pub fn attack(base: &str, path: &str, n: usize) -> tokio::task::JoinHandle<Vec<(u16, bool, bool)>> {
    let (base, path) = (base.to_string(), path.to_string());
    tokio::spawn(async move {
        let client = client();
        let requests = (0..n).map(|_| {
            let request = client.get(format!("{base}{path}")).send();
            async move {
                match request.await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let retry = response.headers().contains_key("retry-after");
                        let complete = response.bytes().await.is_ok();
                        (status, retry, complete)
                    }
                    Err(_) => (0, false, false),
                }
            }
        });
        join_all(requests).await
    })
}

/// Polls a set of futures to completion together; their outputs in order.
pub async fn join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut set = handles.into_iter().enumerate().collect::<Vec<_>>();
    let mut done: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        set.retain_mut(|(index, future)| match future.as_mut().poll(cx) {
            std::task::Poll::Ready(output) => {
                done[*index] = Some(output);
                false
            }
            std::task::Poll::Pending => true,
        });
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

/// A running attack: attackers that each repeat one request until stopped, and
/// maybe idle connections. Answers are counted by `label status` (status 0: no
/// answer, or the body failed).
pub struct Attack {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<BTreeMap<String, u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Default for Attack {
    fn default() -> Self {
        Self::new()
    }
}

impl Attack {
    /// No attacker yet.
    pub fn new() -> Attack {
        Attack {
            stop: Arc::new(AtomicBool::new(false)),
            answers: Arc::new(Mutex::new(BTreeMap::new())),
            tasks: Vec::new(),
        }
    }

    /// One more attacker: GET `{base}{path()}` (a new path for each request), the
    /// next as soon as the last is answered, until the attack stops.
    pub fn repeat(
        &mut self,
        base: &str,
        label: &str,
        path: impl Fn() -> String + Send + Sync + 'static,
    ) {
        let (base, label) = (base.to_string(), label.to_string());
        let (stop, answers) = (self.stop.clone(), self.answers.clone());
        self.tasks.push(tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::Relaxed) {
                let status = match client.get(format!("{base}{}", path())).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        if response.bytes().await.is_ok() {
                            status
                        } else {
                            0
                        }
                    }
                    Err(_) => 0,
                };
                *answers
                    .lock()
                    .unwrap()
                    .entry(format!("{label} {status}"))
                    .or_default() += 1;
            }
        }));
    }

    /// Idle, half-sent connections: `per_second` more every second, each held
    /// `hold` (past the host's header-read timeout, 10 s by default, when longer).
    pub fn idle_connections(&mut self, base: &str, per_second: usize, hold: Duration) {
        let addr = base.trim_start_matches("http://").to_string();
        let stop = self.stop.clone();
        self.tasks.push(tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            let mut held = std::collections::VecDeque::new();
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..per_second {
                    if let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await {
                        let _ = stream
                            .write_all(b"POST /webhook HTTP/1.1\r\nhost: x\r\n")
                            .await;
                        held.push_back((Instant::now(), stream));
                    }
                }
                while held.front().is_some_and(|(at, _)| at.elapsed() > hold) {
                    held.pop_front();
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }

    /// The `hostile` guest mounted at `/h` attacked with everything it has, as the
    /// soak does: two attackers each on head-then-hang, a trap after the head, a body
    /// cut by the time limit, header-map floods, a million denied and a million
    /// malformed outgoing requests (its manifest must allow `127.0.0.1:9`), and 50
    /// idle half-sent connections a second, each held 12 s.
    pub fn hostile_mix(base: &str) -> Attack {
        let routes = [
            "head-hang",
            "head-trap",
            "trickle?n=100&ms=50",
            "fields?n=100000&size=30000",
            "denied?n=1000000",
            "no-path?authority=127.0.0.1:9&n=1000000",
        ];
        let mut attack = Attack::new();
        for route in routes.iter().cycle().take(12) {
            let label = route.split('?').next().unwrap_or_default();
            let path = format!("/h/{route}");
            attack.repeat(base, label, move || path.clone());
        }
        attack.idle_connections(base, 50, Duration::from_secs(12));
        attack
    }

    /// The answers so far, by `label status`.
    pub fn answers(&self) -> BTreeMap<String, u64> {
        self.answers.lock().unwrap().clone()
    }

    /// Stops the attack: every attacker ends after its current request; returns the
    /// answers by `label status`.
    pub async fn stop(self) -> BTreeMap<String, u64> {
        self.stop_within(None).await
    }

    /// [`Attack::stop`], cutting off (dropping) requests still running after `grace`.
    pub async fn stop_within(self, grace: Option<Duration>) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = grace.map(|g| Instant::now() + g);
        for task in self.tasks {
            match deadline {
                None => {
                    let _ = task.await;
                }
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let abort = task.abort_handle();
                    if tokio::time::timeout(left, task).await.is_err() {
                        abort.abort();
                    }
                }
            }
        }
        self.answers.lock().unwrap().clone()
    }
}
