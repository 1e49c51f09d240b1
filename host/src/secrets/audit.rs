//! The audit trail: what the host did with which secret, for whom, written off the
//! request path.
//!
//! Every event that tells an operator something new gets its own record: a
//! backend fetch (cache miss), a denial, an error, a stale serve, an injection of
//! a sealed value into an outgoing request. A *cache hit* (a `secrets.get`, a
//! `secrets-store.get` or a `sealed.verify-hmac-sha256` answered from the cache)
//! only repeats what the
//! fetch already said, and at tens of thousands of requests a second one line
//! per hit is a volume no log pipeline wants (and formatting it cost more than
//! the `get` itself). So hits are counted per bundle, secret URI, operation and
//! outcome, and written as one aggregate record (count, first and last time) every
//! [`AuditConfig::flush_every`] and at shutdown, unless the operator asks for one
//! record per hit (`gtc serve --audit-every-hit`).
//!
//! Records go through a bounded queue to one writer thread, which formats them
//! (as `tracing` events, target `gtc::audit`, so they land in the log stream in
//! its format). A request never waits for the writer: when the queue is full the
//! record is dropped and counted (`gtc_audit_events_dropped_total`), and the
//! writer logs how many were dropped as soon as it catches up. Counting a hit is
//! three atomic operations on the hit's own counter, no lock and no allocation.
//!
//! At shutdown ([`shutdown`]) the writer drains the queue and flushes every
//! pending aggregate before the process exits; records that race with the end are
//! written by the caller itself.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// How the audit trail is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditConfig {
    /// One record per cache hit instead of aggregates (`--audit-every-hit`).
    pub every_hit: bool,
    /// How often aggregated hits are written (`--audit-flush`).
    pub flush_every: Duration,
    /// Records the queue holds before new ones are dropped (and counted).
    pub queue: usize,
}

/// Default interval between aggregate records.
pub const DEFAULT_FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Default queue length: a burst of this many records can wait for the writer.
pub const DEFAULT_QUEUE: usize = 16_384;

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            every_hit: false,
            flush_every: DEFAULT_FLUSH_EVERY,
            queue: DEFAULT_QUEUE,
        }
    }
}

/// One call answered by the backend, refused or failed (or any call with
/// `--audit-every-hit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `secrets.get`, `secrets-store.get` or `sealed.verify-hmac-sha256`.
    pub operation: &'static str,
    pub bundle: String,
    /// The canonical URI (or the well-formed name that was out of scope).
    pub secret: String,
    pub outcome: &'static str,
    /// `hit`, `miss`, `stale` or `none`.
    pub cache: &'static str,
    pub latency_us: u64,
    /// Set for refusals and failures: the scope and why.
    pub refusal: Option<Box<Refusal>>,
}

/// The scope and reason of a refused or failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub env: String,
    pub tenant: String,
    pub team: String,
    /// The length of the name the guest asked for (a malformed one is not logged).
    pub name_len: usize,
    pub reason: String,
}

/// A sealed value injected into (or refused for) an outgoing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inject {
    pub bundle: String,
    pub secret: String,
    pub destination: String,
    /// `injected`, `unavailable` or `refused`.
    pub outcome: &'static str,
    pub reason: String,
    /// `None` when nothing was looked up (refused before).
    pub latency_us: Option<u64>,
}

/// Cache hits of one bundle, secret, operation and outcome in one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hits {
    pub operation: &'static str,
    pub bundle: Arc<str>,
    pub secret: Arc<str>,
    pub outcome: &'static str,
    pub count: u64,
    pub first: SystemTime,
    pub last: SystemTime,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Call(Call),
    Inject(Inject),
    Hits(Hits),
    /// Records dropped because the queue was full, since the last such record.
    Dropped(u64),
}

/// The operations whose cache hits are counted (any other gets a record per call).
const AGGREGATED: [&str; 3] = [
    "secrets.get",
    "secrets-store.get",
    "sealed.verify-hmac-sha256",
];

/// What a cache hit was: the operation and whether a value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HitKind {
    operation: usize,
    found: bool,
}

impl HitKind {
    /// The kind of a hit of `operation`, if its hits are aggregated.
    pub fn of(operation: &str, found: bool) -> Option<Self> {
        let operation = AGGREGATED.iter().position(|o| *o == operation)?;
        Some(Self { operation, found })
    }

    fn all() -> impl Iterator<Item = HitKind> {
        (0..AGGREGATED.len())
            .flat_map(|operation| [true, false].map(|found| HitKind { operation, found }))
    }

    fn index(self) -> usize {
        self.operation * 2 + usize::from(self.found)
    }

    fn operation(self) -> &'static str {
        AGGREGATED[self.operation]
    }

    fn outcome(self) -> &'static str {
        if self.found { "ok" } else { "not-found" }
    }
}

/// Hits of one kind since the last flush; times in ms since the auditor's base.
#[derive(Debug)]
struct Window {
    count: AtomicU64,
    first: AtomicU64,
    last: AtomicU64,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            count: AtomicU64::new(0),
            first: AtomicU64::new(u64::MAX),
            last: AtomicU64::new(0),
        }
    }
}

/// The hit counters of one bundle's secret URI, held by the capability next to
/// the resolved name, so counting a hit looks nothing up.
#[derive(Debug)]
pub struct HitCounter {
    bundle: Arc<str>,
    secret: Arc<str>,
    /// On the auditor's list of counters to flush.
    listed: AtomicBool,
    windows: [Window; 2 * AGGREGATED.len()],
}

impl HitCounter {
    pub fn new(bundle: &str, secret: &str) -> Arc<Self> {
        Arc::new(Self {
            bundle: bundle.into(),
            secret: secret.into(),
            listed: AtomicBool::new(false),
            windows: Default::default(),
        })
    }
}

/// Counts of what the writer did, for `/metrics`.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Records written (aggregates count once).
    pub written: AtomicU64,
    /// Cache hits counted into aggregates.
    pub hits_aggregated: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// Operation, bundle, secret and outcome of aggregated hits.
type HitKey = (&'static str, Arc<str>, Arc<str>, &'static str);

enum Message {
    Record(Record),
    Stop,
}

/// Where records end up (the log in production, a list in tests).
pub type Sink = Arc<dyn Fn(&Record) + Send + Sync>;

struct Shared {
    config: AuditConfig,
    /// After shutdown: records are written by the caller.
    closed: AtomicBool,
    dirty: Mutex<Vec<Arc<HitCounter>>>,
    stats: AuditStats,
    /// Dropped records already reported.
    reported_drops: AtomicU64,
    base: Instant,
    base_wall: SystemTime,
    sink: Sink,
    receiver: Mutex<Receiver<Message>>,
}

/// The audit trail's queue, hit counters and writer thread.
pub struct Auditor {
    shared: Arc<Shared>,
    sender: SyncSender<Message>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Auditor {
    /// Starts the writer thread. If the thread cannot be started, records are
    /// written by their callers (slower, never lost).
    pub fn start(config: AuditConfig, sink: Sink) -> Self {
        let (sender, receiver) = std::sync::mpsc::sync_channel(config.queue.max(1));
        let shared = Arc::new(Shared {
            config,
            closed: AtomicBool::new(false),
            dirty: Mutex::new(Vec::new()),
            stats: AuditStats::default(),
            reported_drops: AtomicU64::new(0),
            base: Instant::now(),
            base_wall: SystemTime::now(),
            sink,
            receiver: Mutex::new(receiver),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("gtc-audit".into())
                .spawn(move || shared.run())
        };
        let writer = match writer {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::warn!("audit writer thread not started ({error}); writing inline");
                shared.closed.store(true, Ordering::SeqCst);
                None
            }
        };
        Self {
            shared,
            sender,
            writer: Mutex::new(writer),
        }
    }

    pub fn config(&self) -> AuditConfig {
        self.shared.config
    }

    pub fn stats(&self) -> &AuditStats {
        &self.shared.stats
    }

    /// Whether a cache hit should be counted with [`Auditor::hit`] (otherwise it
    /// gets a record of its own).
    pub fn aggregates_hits(&self) -> bool {
        !self.shared.config.every_hit && !self.shared.closed.load(Ordering::Relaxed)
    }

    /// Queues one record; never blocks. A full queue drops it and counts it.
    pub fn record(&self, record: Record) {
        if self.shared.closed.load(Ordering::Relaxed) {
            self.shared.write(&record);
            return;
        }
        match self.sender.try_send(Message::Record(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(message)) => {
                if let Message::Record(record) = message {
                    self.shared.write(&record);
                }
            }
        }
    }

    /// Counts one cache hit that happened at `at`.
    pub fn hit(&self, counter: &Arc<HitCounter>, kind: HitKind, at: Instant) {
        let window = &counter.windows[kind.index()];
        let ms = at.saturating_duration_since(self.shared.base).as_millis() as u64;
        window.first.fetch_min(ms, Ordering::Relaxed);
        window.last.fetch_max(ms, Ordering::Relaxed);
        // SeqCst with the flush's `listed` store and `count` swap: a hit counted
        // after the swap sees `listed == false` and lists the counter again.
        window.count.fetch_add(1, Ordering::SeqCst);
        if !counter.listed.load(Ordering::SeqCst) && !counter.listed.swap(true, Ordering::SeqCst) {
            lock(&self.shared.dirty).push(counter.clone());
        }
    }

    /// Writes every pending aggregate now (the writer does it every
    /// `flush_every`).
    pub fn flush(&self) {
        self.shared.flush_hits();
    }

    /// Drains the queue, flushes every aggregate and stops the writer; later
    /// records are written by their callers. Idempotent.
    pub fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            // Blocks only while the writer drains a full queue.
            let _ = self.sender.send(Message::Stop);
            let _ = writer.join();
        }
        // Records queued by callers that raced with `closed`.
        let leftovers: Vec<Message> = lock(&self.shared.receiver).try_iter().collect();
        for message in leftovers {
            if let Message::Record(record) = message {
                self.shared.write(&record);
            }
        }
        self.shared.flush_hits();
        self.shared.report_drops();
    }
}

impl Shared {
    fn run(&self) {
        let receiver = lock(&self.receiver);
        let mut next_flush = Instant::now() + self.config.flush_every;
        loop {
            let wait = next_flush.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(wait) {
                Ok(Message::Record(record)) => self.write(&record),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now >= next_flush {
                self.flush_hits();
                self.report_drops();
                next_flush = now + self.config.flush_every;
            }
        }
        for message in receiver.try_iter() {
            if let Message::Record(record) = message {
                self.write(&record);
            }
        }
    }

    fn write(&self, record: &Record) {
        (self.sink)(record);
        self.stats.written.fetch_add(1, Ordering::Relaxed);
    }

    fn report_drops(&self) {
        let dropped = self.stats.dropped.load(Ordering::Relaxed);
        let reported = self.reported_drops.swap(dropped, Ordering::Relaxed);
        if dropped > reported {
            self.write(&Record::Dropped(dropped - reported));
        }
    }

    fn wall(&self, ms: u64) -> SystemTime {
        self.base_wall + Duration::from_millis(ms)
    }

    fn flush_hits(&self) {
        let counters = std::mem::take(&mut *lock(&self.dirty));
        if counters.is_empty() {
            return;
        }
        let now = Instant::now()
            .saturating_duration_since(self.base)
            .as_millis() as u64;
        // Counters of one URI held for several spellings of its name merge here.
        let mut merged: BTreeMap<HitKey, (u64, u64, u64)> = BTreeMap::new();
        for counter in &counters {
            counter.listed.store(false, Ordering::SeqCst);
            for kind in HitKind::all() {
                let window = &counter.windows[kind.index()];
                let count = window.count.swap(0, Ordering::SeqCst);
                if count == 0 {
                    continue;
                }
                // A hit racing with this flush may leave its time to the next
                // window: its time is then that of this flush.
                let first = window.first.swap(u64::MAX, Ordering::Relaxed).min(now);
                let last = window.last.swap(0, Ordering::Relaxed).max(first);
                let entry = merged
                    .entry((
                        kind.operation(),
                        counter.bundle.clone(),
                        counter.secret.clone(),
                        kind.outcome(),
                    ))
                    .or_insert((0, u64::MAX, 0));
                entry.0 += count;
                entry.1 = entry.1.min(first);
                entry.2 = entry.2.max(last);
            }
        }
        for ((operation, bundle, secret, outcome), (count, first, last)) in merged {
            self.stats
                .hits_aggregated
                .fetch_add(count, Ordering::Relaxed);
            self.write(&Record::Hits(Hits {
                operation,
                bundle,
                secret,
                outcome,
                count,
                first: self.wall(first),
                last: self.wall(last),
            }));
        }
    }
}

/// Writes a record as a `tracing` event, target `gtc::audit` (the log's format:
/// text or JSON).
pub fn to_log(record: &Record) {
    match record {
        Record::Call(call) => match &call.refusal {
            None => tracing::info!(
                target: "gtc::audit",
                bundle = %call.bundle,
                secret = call.secret.as_str(),
                outcome = call.outcome,
                cache = call.cache,
                latency_us = call.latency_us,
                "{}",
                call.operation
            ),
            Some(refusal) => tracing::info!(
                target: "gtc::audit",
                bundle = %call.bundle,
                env = %refusal.env,
                tenant = %refusal.tenant,
                team = refusal.team.as_str(),
                secret = call.secret.as_str(),
                name_len = refusal.name_len,
                outcome = call.outcome,
                cache = call.cache,
                latency_us = call.latency_us,
                reason = refusal.reason.as_str(),
                "{}",
                call.operation
            ),
        },
        // `latency_us` is left out when nothing was looked up.
        Record::Inject(inject) => tracing::info!(
            target: "gtc::audit",
            bundle = %inject.bundle,
            secret = inject.secret.as_str(),
            destination = %inject.destination,
            outcome = inject.outcome,
            reason = inject.reason.as_str(),
            latency_us = inject.latency_us,
            "sealed.inject"
        ),
        Record::Hits(hits) => tracing::info!(
            target: "gtc::audit",
            bundle = %hits.bundle,
            secret = &*hits.secret,
            outcome = hits.outcome,
            cache = "hit",
            count = hits.count,
            first = %rfc3339_millis(hits.first),
            last = %rfc3339_millis(hits.last),
            "{}",
            hits.operation
        ),
        Record::Dropped(count) => tracing::warn!(
            target: "gtc::audit",
            dropped = count,
            "audit records dropped: the audit queue was full (the log is written more \
             slowly than requests arrive); see gtc_audit_events_dropped_total"
        ),
    }
}

/// `2026-11-29T03:04:05.678Z`.
pub fn rfc3339_millis(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

static GLOBAL: OnceLock<Auditor> = OnceLock::new();

/// Sets the process's audit configuration; `false` if the trail was already in
/// use (then the first configuration stays).
pub fn install(config: AuditConfig) -> bool {
    let mut installed = false;
    GLOBAL.get_or_init(|| {
        installed = true;
        Auditor::start(config, Arc::new(to_log))
    });
    installed
}

/// The process's audit trail (started with the defaults on first use if
/// [`install`] was not called).
pub fn global() -> &'static Auditor {
    GLOBAL.get_or_init(|| Auditor::start(AuditConfig::default(), Arc::new(to_log)))
}

/// Flushes and stops the process's audit trail, if it was started.
pub fn shutdown() {
    if let Some(auditor) = GLOBAL.get() {
        auditor.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collecting(config: AuditConfig) -> (Auditor, Arc<Mutex<Vec<Record>>>) {
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let records = records.clone();
            Arc::new(move |r: &Record| lock(&records).push(r.clone())) as Sink
        };
        (Auditor::start(config, sink), records)
    }

    fn get(found: bool) -> HitKind {
        HitKind::of("secrets.get", found).unwrap()
    }

    fn verify(found: bool) -> HitKind {
        HitKind::of("sealed.verify-hmac-sha256", found).unwrap()
    }

    #[test]
    fn only_known_operations_are_aggregated() {
        assert!(HitKind::of("secrets-store.get", true).is_some());
        assert!(HitKind::of("sealed.inject", true).is_none());
        // Every kind has its own window.
        let mut kinds: Vec<usize> = HitKind::all().map(HitKind::index).collect();
        kinds.sort_unstable();
        assert_eq!(kinds, (0..2 * AGGREGATED.len()).collect::<Vec<_>>());
    }

    fn slow() -> AuditConfig {
        AuditConfig {
            flush_every: Duration::from_secs(3600),
            ..AuditConfig::default()
        }
    }

    fn call(secret: &str) -> Record {
        Record::Call(Call {
            operation: "secrets.get",
            bundle: "bot".into(),
            secret: secret.into(),
            outcome: "ok",
            cache: "miss",
            latency_us: 7,
            refusal: None,
        })
    }

    fn hits(records: &[Record]) -> Vec<(&'static str, String, &'static str, u64)> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Hits(h) => Some((h.operation, h.secret.to_string(), h.outcome, h.count)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn hits_are_aggregated_per_secret_kind_and_flushed_at_shutdown() {
        let (auditor, records) = collecting(slow());
        let a = HitCounter::new("bot", "secrets://dev/acme/_/bot/a");
        // The same URI reached through another spelling of its name.
        let a_again = HitCounter::new("bot", "secrets://dev/acme/_/bot/a");
        let b = HitCounter::new("bot", "secrets://dev/acme/_/bot/b");
        let start = Instant::now();
        for i in 0..1000 {
            auditor.hit(&a, get(true), start + Duration::from_millis(i));
        }
        auditor.hit(&a_again, get(true), start);
        auditor.hit(&b, get(false), start);
        auditor.hit(&b, verify(true), start);
        auditor.record(call("secrets://dev/acme/_/bot/c"));
        auditor.shutdown();
        let written = lock(&records).clone();
        assert_eq!(written[0], call("secrets://dev/acme/_/bot/c"));
        let mut found = hits(&written);
        found.sort();
        assert_eq!(
            found,
            vec![
                (
                    "sealed.verify-hmac-sha256",
                    "secrets://dev/acme/_/bot/b".into(),
                    "ok",
                    1
                ),
                (
                    "secrets.get",
                    "secrets://dev/acme/_/bot/a".into(),
                    "ok",
                    1001
                ),
                (
                    "secrets.get",
                    "secrets://dev/acme/_/bot/b".into(),
                    "not-found",
                    1
                ),
            ]
        );
        let Some(Record::Hits(a)) = written
            .iter()
            .find(|r| matches!(r, Record::Hits(h) if h.count == 1001))
        else {
            panic!("{written:?}")
        };
        let span = a.last.duration_since(a.first).unwrap();
        assert!(
            span >= Duration::from_millis(990) && span <= Duration::from_millis(1010),
            "{span:?}"
        );
        assert_eq!(
            auditor.stats().hits_aggregated.load(Ordering::Relaxed),
            1003
        );
        // After shutdown, records are written by the caller.
        assert!(!auditor.aggregates_hits());
        auditor.record(call("late"));
        assert_eq!(lock(&records).last(), Some(&call("late")));
    }

    #[test]
    fn each_window_is_flushed_once_and_hits_between_flushes_are_kept() {
        let (auditor, records) = collecting(slow());
        let a = HitCounter::new("bot", "secrets://dev/acme/_/bot/a");
        let now = Instant::now();
        for _ in 0..3 {
            auditor.hit(&a, get(true), now);
        }
        auditor.flush();
        auditor.flush(); // nothing new: nothing written
        for _ in 0..4 {
            auditor.hit(&a, get(true), now);
        }
        auditor.shutdown();
        let counts: Vec<u64> = hits(&lock(&records)).iter().map(|h| h.3).collect();
        assert_eq!(counts, vec![3, 4]);
    }

    #[test]
    fn concurrent_hits_are_all_counted() {
        let (auditor, records) = collecting(AuditConfig {
            flush_every: Duration::from_millis(1),
            ..AuditConfig::default()
        });
        let auditor = Arc::new(auditor);
        let a = HitCounter::new("bot", "secrets://dev/acme/_/bot/a");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (auditor, a) = (auditor.clone(), a.clone());
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        auditor.hit(&a, get(true), Instant::now());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        auditor.shutdown();
        let total: u64 = hits(&lock(&records)).iter().map(|h| h.3).sum();
        assert_eq!(total, 200_000);
    }

    #[test]
    fn a_full_queue_drops_counts_and_reports_without_blocking() {
        let gate = Arc::new(Mutex::new(()));
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let (gate, records) = (gate.clone(), records.clone());
            Arc::new(move |r: &Record| {
                let _wait = lock(&gate);
                lock(&records).push(r.clone());
            }) as Sink
        };
        let held = lock(&gate);
        let auditor = Auditor::start(AuditConfig { queue: 4, ..slow() }, sink);
        let started = Instant::now();
        for i in 0..100 {
            auditor.record(call(&format!("s{i}")));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "record() blocked"
        );
        // The writer holds at most one record, the queue four: the rest dropped.
        let dropped = auditor.stats().dropped.load(Ordering::Relaxed);
        assert!((95..=96).contains(&dropped), "{dropped}");
        drop(held);
        auditor.shutdown();
        let records = lock(&records).clone();
        let calls = records
            .iter()
            .filter(|r| matches!(r, Record::Call(_)))
            .count();
        assert_eq!(calls as u64 + dropped, 100);
        assert_eq!(records.last(), Some(&Record::Dropped(dropped)));
    }

    #[test]
    fn the_writer_flushes_on_its_own_every_interval() {
        let (auditor, records) = collecting(AuditConfig {
            flush_every: Duration::from_millis(20),
            ..AuditConfig::default()
        });
        let a = HitCounter::new("bot", "secrets://dev/acme/_/bot/a");
        auditor.hit(&a, get(true), Instant::now());
        let deadline = Instant::now() + Duration::from_secs(5);
        while hits(&lock(&records)).is_empty() {
            assert!(Instant::now() < deadline, "no flush");
            std::thread::sleep(Duration::from_millis(5));
        }
        auditor.shutdown();
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_921_445_678);
        assert_eq!(rfc3339_millis(at), "2026-11-29T03:04:05.678Z");
        assert_eq!(
            rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
