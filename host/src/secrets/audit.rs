//! The audit trail: what the host did with which secret, for whom, written off the
//! request path.
//!
//! Three kinds of event, three rules:
//!
//! - **Disclosures** — a value fetched from the backend and handed to a guest (or
//!   used for its signature check), a stale value served, a sealed value injected
//!   into an outgoing request — get a record each, and that record is never
//!   dropped: if it cannot be queued for the writer, the call is refused (the
//!   guest hears `unavailable` and never gets the value), as Vault refuses a
//!   request it cannot audit ([`BundleAudit::disclose`]).
//! - **Cache hits** (a `secrets.get`, a `secrets-store.get` or a
//!   `sealed.verify-hmac-sha256` answered from the cache) only repeat what the
//!   fetch already said; at tens of thousands of requests a second one line per
//!   hit is a volume no log pipeline wants. So hits are counted per bundle,
//!   secret URI, operation and outcome (three atomic operations, no lock, no
//!   allocation), and written as one aggregate record (count, first and last
//!   time) every [`AuditConfig::flush_every`] and at shutdown, unless the
//!   operator asks for one record per hit (`gtc serve --audit-every-hit`).
//! - **Refusals and failures** (denied, invalid name, not found, unavailable,
//!   internal; a sealed injection refused) are aggregated per bundle, secret (or
//!   name), operation, outcome and reason ([`BundleAudit::record`]): the first of
//!   a key in each flush window is written at once, so an operator sees it
//!   promptly; the repeats are counted and written as one aggregate record
//!   (`count`, `first`, `last`) at the end of the window. A bundle has at most
//!   [`MAX_KEYS_PER_BUNDLE`] keys per window; past them its refusals fold into one
//!   `"(other names)"` aggregate per operation, outcome and reason (at most
//!   [`MAX_OTHER_KEYS_PER_BUNDLE`] of those; past them a record is dropped and
//!   counted). A thousand distinct undeclared names per request are therefore a
//!   bounded number of lines and a bounded table, never one line each.
//!
//! Records go through one queue to one writer thread, which formats them (as
//! `tracing` events, target `gtc::audit`, so they land in the log stream in its
//! format). The queue is shared out: a quarter of [`AuditConfig::queue`] is
//! reserved for disclosures, and each bundle may have at most its equal share of
//! each part queued and not yet written. A request never waits for the writer.
//! When a bundle's share of records is used up, its refusal is counted into the
//! aggregate instead (written at the end of the window); when its share of
//! disclosures is used up, its disclosure is refused. One bundle's flood can
//! therefore neither push out a neighbour's records nor make a neighbour's
//! disclosures fail: every share, table and count is the bundle's own. Each
//! bundle's records written, aggregated and dropped, and its disclosures refused,
//! are counted for `/metrics`, and the writer logs what was dropped or refused
//! as soon as it catches up.
//!
//! At shutdown ([`shutdown`]) the writer drains the queue and flushes every
//! pending aggregate before the process exits; records that race with the end are
//! written by the caller itself.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// How the audit trail is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// One record per cache hit instead of aggregates (`--audit-every-hit`).
    pub every_hit: bool,
    /// How often aggregates are written (`--audit-flush`): also the window in
    /// which refusals of one key are aggregated.
    pub flush_every: Duration,
    /// Records the queue holds for all bundles together (`--audit-queue`): a
    /// quarter is reserved for disclosures, and each bundle may use its equal
    /// share of each part.
    pub queue: usize,
    /// Test hook (`GTC_TEST_AUDIT_HOLD`): while this file exists the writer
    /// writes nothing, as when the log cannot be written.
    pub hold: Option<PathBuf>,
}

/// Default interval between aggregate records.
pub const DEFAULT_FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Default queue length: a burst of this many records can wait for the writer.
pub const DEFAULT_QUEUE: usize = 16_384;
/// Distinct refusal keys (secret, operation, outcome, reason) a bundle may have
/// in one flush window; past them its refusals fold into `"(other names)"`.
pub const MAX_KEYS_PER_BUNDLE: usize = 256;
/// `"(other names)"` aggregates (one per operation, outcome and reason) a
/// bundle may have in one flush window; past them a refusal is dropped (counted).
pub const MAX_OTHER_KEYS_PER_BUNDLE: usize = 32;
/// The secret of an aggregate of names past [`MAX_KEYS_PER_BUNDLE`].
pub const OTHER_NAMES: &str = "(other names)";
/// The destination of a `sealed.inject` aggregate folded into [`OTHER_NAMES`].
pub const OTHER_DESTINATIONS: &str = "(other destinations)";

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            every_hit: false,
            flush_every: DEFAULT_FLUSH_EVERY,
            queue: DEFAULT_QUEUE,
            hold: None,
        }
    }
}

impl AuditConfig {
    /// Each bundle's share of the queue when `bundles` bundles are audited:
    /// (records, disclosures), each at least one.
    pub fn shares(&self, bundles: usize) -> (usize, usize) {
        let bundles = bundles.max(1);
        let reserve = (self.queue / 4).max(1);
        let records = self.queue.saturating_sub(reserve).max(1);
        ((records / bundles).max(1), (reserve / bundles).max(1))
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

/// Refusals or failures of one key in one window that have no record of their
/// own: `record` is the first of them (its latency and name length are not
/// written), `count` how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeats {
    pub record: Record,
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
    Repeats(Box<Repeats>),
    /// A bundle's records dropped since the last such record.
    Dropped {
        bundle: Arc<str>,
        count: u64,
    },
    /// A bundle's disclosures refused since the last such record, because their
    /// records could not be queued.
    Refused {
        bundle: Arc<str>,
        count: u64,
    },
}

impl Record {
    /// Whether the record reports a value leaving the backend or the cache for a
    /// guest's use: fetched (`miss`) or served stale, or injected into a request.
    pub fn is_disclosure(&self) -> bool {
        match self {
            Record::Call(call) => call.outcome == "ok" && matches!(call.cache, "miss" | "stale"),
            Record::Inject(inject) => inject.outcome == "injected",
            _ => false,
        }
    }

    /// What refusals and failures are aggregated by.
    fn key(&self) -> Option<Key> {
        match self {
            Record::Call(call) => Some(Key {
                operation: call.operation,
                secret: call.secret.clone(),
                outcome: call.outcome,
                cache: call.cache,
                reason: call
                    .refusal
                    .as_ref()
                    .map(|r| r.reason.clone())
                    .unwrap_or_default(),
                destination: String::new(),
            }),
            Record::Inject(inject) => Some(Key {
                operation: "sealed.inject",
                secret: inject.secret.clone(),
                outcome: inject.outcome,
                cache: "",
                reason: inject.reason.clone(),
                destination: inject.destination.clone(),
            }),
            _ => None,
        }
    }

    /// This record as the first of an `"(other names)"` aggregate.
    fn folded(mut self) -> Record {
        match &mut self {
            Record::Call(call) => {
                call.secret = OTHER_NAMES.to_string();
                if let Some(refusal) = &mut call.refusal {
                    refusal.name_len = 0;
                }
            }
            Record::Inject(inject) => {
                inject.secret = OTHER_NAMES.to_string();
                inject.destination = OTHER_DESTINATIONS.to_string();
            }
            _ => {}
        }
        self
    }
}

/// Operation, secret, outcome, cache use, reason and destination of a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    operation: &'static str,
    secret: String,
    outcome: &'static str,
    cache: &'static str,
    reason: String,
    destination: String,
}

impl Key {
    fn other(self) -> Key {
        Key {
            secret: OTHER_NAMES.to_string(),
            destination: String::new(),
            ..self
        }
    }
}

/// A key's refusals in this window; times in ms since the auditor's base.
#[derive(Debug)]
struct Pending {
    record: Record,
    /// Refusals without a record of their own.
    count: u64,
    /// When the first and last of those happened.
    first: u64,
    last: u64,
}

/// One bundle's refusal keys in this window.
#[derive(Debug, Default)]
struct Table {
    keys: HashMap<Key, Pending>,
    others: HashMap<Key, Pending>,
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
    bundle: Arc<BundleState>,
    secret: Arc<str>,
    /// On the auditor's list of counters to flush.
    listed: AtomicBool,
    windows: [Window; 2 * AGGREGATED.len()],
}

impl HitCounter {
    pub fn new(bundle: &BundleAudit, secret: &str) -> Arc<Self> {
        Arc::new(Self {
            bundle: bundle.state.clone(),
            secret: secret.into(),
            listed: AtomicBool::new(false),
            windows: Default::default(),
        })
    }
}

/// Counts of what the writer did for all bundles, for `/metrics`.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Records written (aggregates count once).
    pub written: AtomicU64,
    /// Cache hits counted into aggregates.
    pub hits_aggregated: AtomicU64,
    /// Refusals and failures counted into aggregates.
    pub refusals_aggregated: AtomicU64,
    /// Records dropped (see [`BundleAuditStats::dropped`]).
    pub dropped: AtomicU64,
    /// Disclosures refused because their records could not be queued.
    pub disclosures_refused: AtomicU64,
}

/// Counts of one bundle's audit records, for `/metrics`.
#[derive(Debug, Default)]
pub struct BundleAuditStats {
    /// Records written about the bundle (an aggregate counts once).
    pub written: AtomicU64,
    /// Calls counted into aggregates instead of a record of their own: cache
    /// hits (when their aggregate is written) and refusals.
    pub aggregated: AtomicU64,
    /// Refusals neither written nor counted: past the bundle's
    /// [`MAX_OTHER_KEYS_PER_BUNDLE`] in a window.
    pub dropped: AtomicU64,
    /// Disclosures refused (the guest heard `unavailable`) because the bundle's
    /// share of the queue was full.
    pub disclosures_refused: AtomicU64,
}

/// One bundle's part of the audit trail.
#[derive(Debug)]
struct BundleState {
    name: Arc<str>,
    /// Refusal records queued and not yet written.
    queued: AtomicUsize,
    /// Disclosure records queued and not yet written.
    queued_disclosures: AtomicUsize,
    table: Mutex<Table>,
    stats: BundleAuditStats,
    /// Drops and refused disclosures already reported in the log.
    reported_dropped: AtomicU64,
    reported_refused: AtomicU64,
}

/// Operation, bundle, secret and outcome of aggregated hits.
type HitKey = (&'static str, Arc<str>, Arc<str>, &'static str);

enum Message {
    Record {
        bundle: Arc<BundleState>,
        record: Record,
        disclosure: bool,
    },
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
    /// Every audited bundle, in registration order.
    bundles: Mutex<Vec<Arc<BundleState>>>,
    bundle_count: AtomicUsize,
    base: Instant,
    base_wall: SystemTime,
    sink: Sink,
    sender: Sender<Message>,
    receiver: Mutex<Receiver<Message>>,
}

/// The audit trail's queue, hit counters, refusal tables and writer thread.
pub struct Auditor {
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// One bundle's handle on the audit trail: how its records are written.
#[derive(Clone)]
pub struct BundleAudit {
    shared: Arc<Shared>,
    state: Arc<BundleState>,
}

impl std::fmt::Debug for BundleAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleAudit")
            .field("bundle", &self.state.name)
            .finish_non_exhaustive()
    }
}

/// A disclosure whose record could not be queued: the value must not be handed
/// out (the guest hears `unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the audit trail cannot take the record of this disclosure now")]
pub struct Unaudited;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Auditor {
    /// Starts the writer thread. If the thread cannot be started, records are
    /// written by their callers (slower, never lost).
    pub fn start(config: AuditConfig, sink: Sink) -> Self {
        let (sender, receiver) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared {
            config,
            closed: AtomicBool::new(false),
            dirty: Mutex::new(Vec::new()),
            stats: AuditStats::default(),
            bundles: Mutex::new(Vec::new()),
            bundle_count: AtomicUsize::new(0),
            base: Instant::now(),
            base_wall: SystemTime::now(),
            sink,
            sender,
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
            writer: Mutex::new(writer),
        }
    }

    pub fn config(&self) -> &AuditConfig {
        &self.shared.config
    }

    pub fn stats(&self) -> &AuditStats {
        &self.shared.stats
    }

    /// The handle of bundle `name`, registered on first use (the queue is shared
    /// out between the bundles registered).
    pub fn bundle(&self, name: &str) -> BundleAudit {
        let mut bundles = lock(&self.shared.bundles);
        let state = match bundles.iter().find(|b| &*b.name == name) {
            Some(state) => state.clone(),
            None => {
                let state = Arc::new(BundleState {
                    name: name.into(),
                    queued: AtomicUsize::new(0),
                    queued_disclosures: AtomicUsize::new(0),
                    table: Mutex::new(Table::default()),
                    stats: BundleAuditStats::default(),
                    reported_dropped: AtomicU64::new(0),
                    reported_refused: AtomicU64::new(0),
                });
                bundles.push(state.clone());
                self.shared
                    .bundle_count
                    .store(bundles.len(), Ordering::Relaxed);
                state
            }
        };
        BundleAudit {
            shared: self.shared.clone(),
            state,
        }
    }

    /// Calls `each` with every registered bundle's name and counts.
    pub fn each_bundle(&self, mut each: impl FnMut(&str, &BundleAuditStats)) {
        let bundles = lock(&self.shared.bundles).clone();
        for bundle in &bundles {
            each(&bundle.name, &bundle.stats);
        }
    }

    /// Writes every pending aggregate now (the writer does it every
    /// `flush_every`).
    pub fn flush(&self) {
        self.shared.flush();
    }

    /// Drains the queue, flushes every aggregate and stops the writer; later
    /// records are written by their callers. Idempotent.
    pub fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            let _ = self.shared.sender.send(Message::Stop);
            let _ = writer.join();
        }
        // Records queued by callers that raced with `closed`.
        let leftovers: Vec<Message> = lock(&self.shared.receiver).try_iter().collect();
        for message in leftovers {
            self.shared.take(message);
        }
        self.shared.flush();
    }
}

impl BundleAudit {
    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn stats(&self) -> &BundleAuditStats {
        &self.state.stats
    }

    /// Whether a cache hit should be counted with [`BundleAudit::hit`] (otherwise
    /// it gets a record of its own, [`BundleAudit::hit_record`]).
    pub fn aggregates_hits(&self) -> bool {
        !self.shared.config.every_hit && !self.shared.closed.load(Ordering::Relaxed)
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

    /// A cache hit's own record (`--audit-every-hit`); when the bundle's share
    /// of the queue is full it is counted into the hit's aggregate instead.
    pub fn hit_record(
        &self,
        record: Record,
        counter: &Arc<HitCounter>,
        kind: HitKind,
        at: Instant,
    ) {
        if self.shared.closed.load(Ordering::Relaxed) {
            self.shared.write(Some(&self.state), &record);
        } else if !self.try_queue(record, false) {
            self.hit(counter, kind, at);
        }
    }

    /// Records a refusal or failure; never blocks, never fails. The first of
    /// its key in this window is queued (or, past the bundle's share, counted);
    /// repeats are counted and written as one aggregate at the end of the window.
    pub fn record(&self, record: Record) {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Relaxed) {
            shared.write(Some(&self.state), &record);
            return;
        }
        let Some(key) = record.key() else {
            if !self.try_queue(record, false) {
                self.dropped();
            }
            return;
        };
        let now = shared.now_ms();
        let mut table = lock(&self.state.table);
        if let Some(pending) = table.keys.get_mut(&key) {
            // The aggregate's times are those of the calls it counts.
            if pending.count == 0 {
                pending.first = now;
            }
            pending.count += 1;
            pending.last = pending.last.max(now);
            drop(table);
            self.aggregated();
            return;
        }
        if table.keys.len() < MAX_KEYS_PER_BUNDLE {
            // The first of its key in this window: written at once when the
            // bundle's share of the queue has room, else in the aggregate.
            let count = u64::from(!self.try_queue(record.clone(), false));
            table.keys.insert(
                key,
                Pending {
                    record,
                    count,
                    first: now,
                    last: now,
                },
            );
            drop(table);
            if count > 0 {
                self.aggregated();
            }
            return;
        }
        let key = key.other();
        if let Some(pending) = table.others.get_mut(&key) {
            pending.count += 1;
            pending.last = pending.last.max(now);
        } else if table.others.len() < MAX_OTHER_KEYS_PER_BUNDLE {
            table.others.insert(
                key,
                Pending {
                    record: record.folded(),
                    count: 1,
                    first: now,
                    last: now,
                },
            );
        } else {
            drop(table);
            self.dropped();
            return;
        }
        drop(table);
        self.aggregated();
    }

    /// Queues the record of a disclosure, or refuses it: `Err` means the value
    /// must not be handed out. Never blocks.
    pub fn disclose(&self, record: Record) -> Result<(), Unaudited> {
        if self.shared.closed.load(Ordering::Relaxed) {
            self.shared.write(Some(&self.state), &record);
            return Ok(());
        }
        if self.try_queue(record, true) {
            return Ok(());
        }
        self.state
            .stats
            .disclosures_refused
            .fetch_add(1, Ordering::Relaxed);
        self.shared
            .stats
            .disclosures_refused
            .fetch_add(1, Ordering::Relaxed);
        Err(Unaudited)
    }

    /// Queues `record` if the bundle's share of its part of the queue has room.
    fn try_queue(&self, record: Record, disclosure: bool) -> bool {
        let (records, disclosures) = self
            .shared
            .config
            .shares(self.shared.bundle_count.load(Ordering::Relaxed));
        let (queued, share) = if disclosure {
            (&self.state.queued_disclosures, disclosures)
        } else {
            (&self.state.queued, records)
        };
        if queued.fetch_add(1, Ordering::AcqRel) >= share {
            queued.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let message = Message::Record {
            bundle: self.state.clone(),
            record,
            disclosure,
        };
        if let Err(std::sync::mpsc::SendError(message)) = self.shared.sender.send(message) {
            // No receiver (cannot happen while the auditor lives): written here.
            self.shared.take(message);
        }
        true
    }

    fn aggregated(&self) {
        self.state.stats.aggregated.fetch_add(1, Ordering::Relaxed);
        self.shared
            .stats
            .refusals_aggregated
            .fetch_add(1, Ordering::Relaxed);
    }

    fn dropped(&self) {
        self.state.stats.dropped.fetch_add(1, Ordering::Relaxed);
        self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl Shared {
    fn run(&self) {
        let receiver = lock(&self.receiver);
        let mut next_flush = Instant::now() + self.config.flush_every;
        loop {
            let wait = next_flush.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(wait) {
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(message) => self.take(message),
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now >= next_flush {
                self.flush();
                next_flush = now + self.config.flush_every;
            }
        }
        for message in receiver.try_iter() {
            self.take(message);
        }
    }

    /// Writes a queued record and frees its place in its bundle's share.
    fn take(&self, message: Message) {
        if let Message::Record {
            bundle,
            record,
            disclosure,
        } = message
        {
            self.write(Some(&bundle), &record);
            let queued = if disclosure {
                &bundle.queued_disclosures
            } else {
                &bundle.queued
            };
            queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn write(&self, bundle: Option<&BundleState>, record: &Record) {
        if let Some(hold) = &self.config.hold {
            while hold.exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        (self.sink)(record);
        self.stats.written.fetch_add(1, Ordering::Relaxed);
        if let Some(bundle) = bundle {
            bundle.stats.written.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn now_ms(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.base)
            .as_millis() as u64
    }

    fn wall(&self, ms: u64) -> SystemTime {
        self.base_wall + Duration::from_millis(ms)
    }

    fn flush(&self) {
        self.flush_hits();
        self.flush_refusals();
        self.report();
    }

    /// Writes what each bundle dropped or refused since the last report.
    fn report(&self) {
        let bundles = lock(&self.bundles).clone();
        for bundle in &bundles {
            let dropped = bundle.stats.dropped.load(Ordering::Relaxed);
            let reported = bundle.reported_dropped.swap(dropped, Ordering::Relaxed);
            if dropped > reported {
                self.write(
                    Some(bundle),
                    &Record::Dropped {
                        bundle: bundle.name.clone(),
                        count: dropped - reported,
                    },
                );
            }
            let refused = bundle.stats.disclosures_refused.load(Ordering::Relaxed);
            let reported = bundle.reported_refused.swap(refused, Ordering::Relaxed);
            if refused > reported {
                self.write(
                    Some(bundle),
                    &Record::Refused {
                        bundle: bundle.name.clone(),
                        count: refused - reported,
                    },
                );
            }
        }
    }

    /// Ends every bundle's refusal window: writes the aggregates of keys with
    /// repeats (and of the names folded into `"(other names)"`).
    fn flush_refusals(&self) {
        let bundles = lock(&self.bundles).clone();
        for bundle in &bundles {
            let table = std::mem::take(&mut *lock(&bundle.table));
            let mut pending: Vec<Pending> = table
                .keys
                .into_values()
                .chain(table.others.into_values())
                .filter(|p| p.count > 0)
                .collect();
            pending.sort_by_key(|p| p.first);
            for Pending {
                record,
                count,
                first,
                last,
            } in pending
            {
                self.write(
                    Some(bundle),
                    &Record::Repeats(Box::new(Repeats {
                        record,
                        count,
                        first: self.wall(first),
                        last: self.wall(last),
                    })),
                );
            }
        }
    }

    fn flush_hits(&self) {
        let counters = std::mem::take(&mut *lock(&self.dirty));
        if counters.is_empty() {
            return;
        }
        let now = self.now_ms();
        // Counters of one URI held for several spellings of its name merge here.
        let mut merged: BTreeMap<HitKey, (u64, u64, u64, Arc<BundleState>)> = BTreeMap::new();
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
                        counter.bundle.name.clone(),
                        counter.secret.clone(),
                        kind.outcome(),
                    ))
                    .or_insert((0, u64::MAX, 0, counter.bundle.clone()));
                entry.0 += count;
                entry.1 = entry.1.min(first);
                entry.2 = entry.2.max(last);
            }
        }
        for ((operation, bundle, secret, outcome), (count, first, last, state)) in merged {
            self.stats
                .hits_aggregated
                .fetch_add(count, Ordering::Relaxed);
            state.stats.aggregated.fetch_add(count, Ordering::Relaxed);
            self.write(
                Some(&state),
                &Record::Hits(Hits {
                    operation,
                    bundle,
                    secret,
                    outcome,
                    count,
                    first: self.wall(first),
                    last: self.wall(last),
                }),
            );
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
        Record::Repeats(repeats) => {
            let (count, first, last) = (
                repeats.count,
                rfc3339_millis(repeats.first),
                rfc3339_millis(repeats.last),
            );
            match &repeats.record {
                Record::Call(call) => match &call.refusal {
                    None => tracing::info!(
                        target: "gtc::audit",
                        bundle = %call.bundle,
                        secret = call.secret.as_str(),
                        outcome = call.outcome,
                        cache = call.cache,
                        count,
                        first = %first,
                        last = %last,
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
                        outcome = call.outcome,
                        cache = call.cache,
                        reason = refusal.reason.as_str(),
                        count,
                        first = %first,
                        last = %last,
                        "{}",
                        call.operation
                    ),
                },
                Record::Inject(inject) => tracing::info!(
                    target: "gtc::audit",
                    bundle = %inject.bundle,
                    secret = inject.secret.as_str(),
                    destination = %inject.destination,
                    outcome = inject.outcome,
                    reason = inject.reason.as_str(),
                    count,
                    first = %first,
                    last = %last,
                    "sealed.inject"
                ),
                _ => {}
            }
        }
        Record::Dropped { bundle, count } => tracing::warn!(
            target: "gtc::audit",
            bundle = %bundle,
            dropped = count,
            "audit records dropped: the bundle's refusals had more distinct reasons than \
             its aggregates hold in one window; see gtc_audit_records_dropped_total"
        ),
        Record::Refused { bundle, count } => tracing::warn!(
            target: "gtc::audit",
            bundle = %bundle,
            refused = count,
            "disclosures refused (the guest heard unavailable): their audit records could \
             not be queued, the log is written more slowly than they happen; see \
             gtc_audit_disclosures_refused_total"
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

    type Records = Arc<Mutex<Vec<Record>>>;

    /// An auditor whose writer blocks in its sink while the returned gate is held.
    fn gated(config: AuditConfig) -> (Auditor, Arc<Mutex<()>>, Records) {
        let gate = Arc::new(Mutex::new(()));
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let (gate, records) = (gate.clone(), records.clone());
            Arc::new(move |r: &Record| {
                let _wait = lock(&gate);
                lock(&records).push(r.clone());
            }) as Sink
        };
        (Auditor::start(config, sink), gate, records)
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

    fn fetched(bundle: &str, secret: &str) -> Record {
        Record::Call(Call {
            operation: "secrets.get",
            bundle: bundle.into(),
            secret: secret.into(),
            outcome: "ok",
            cache: "miss",
            latency_us: 7,
            refusal: None,
        })
    }

    fn call(secret: &str) -> Record {
        fetched("bot", secret)
    }

    fn denied(bundle: &str, secret: &str, reason: &str) -> Record {
        Record::Call(Call {
            operation: "secrets.get",
            bundle: bundle.into(),
            secret: secret.into(),
            outcome: "denied",
            cache: "none",
            latency_us: 3,
            refusal: Some(Box::new(Refusal {
                env: "dev".into(),
                tenant: "acme".into(),
                team: "_".into(),
                name_len: secret.len(),
                reason: reason.into(),
            })),
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

    /// The refusals of `bundle` the records account for: a record of its own
    /// counts one, an aggregate its count.
    fn refusals_of(records: &[Record], bundle: &str) -> u64 {
        records
            .iter()
            .map(|r| match r {
                Record::Call(c) if c.bundle == bundle && c.outcome != "ok" => 1,
                Record::Repeats(r) => match &r.record {
                    Record::Call(c) if c.bundle == bundle => r.count,
                    _ => 0,
                },
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn hits_are_aggregated_per_secret_kind_and_flushed_at_shutdown() {
        let (auditor, records) = collecting(slow());
        let bot = auditor.bundle("bot");
        let a = HitCounter::new(&bot, "secrets://dev/acme/_/bot/a");
        // The same URI reached through another spelling of its name.
        let a_again = HitCounter::new(&bot, "secrets://dev/acme/_/bot/a");
        let b = HitCounter::new(&bot, "secrets://dev/acme/_/bot/b");
        let start = Instant::now();
        for i in 0..1000 {
            bot.hit(&a, get(true), start + Duration::from_millis(i));
        }
        bot.hit(&a_again, get(true), start);
        bot.hit(&b, get(false), start);
        bot.hit(&b, verify(true), start);
        bot.disclose(call("secrets://dev/acme/_/bot/c")).unwrap();
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
        assert_eq!(bot.stats().aggregated.load(Ordering::Relaxed), 1003);
        assert_eq!(bot.stats().written.load(Ordering::Relaxed), 4);
        // After shutdown, records are written by the caller.
        assert!(!bot.aggregates_hits());
        bot.disclose(call("late")).unwrap();
        assert_eq!(lock(&records).last(), Some(&call("late")));
    }

    #[test]
    fn each_window_is_flushed_once_and_hits_between_flushes_are_kept() {
        let (auditor, records) = collecting(slow());
        let bot = auditor.bundle("bot");
        let a = HitCounter::new(&bot, "secrets://dev/acme/_/bot/a");
        let now = Instant::now();
        for _ in 0..3 {
            bot.hit(&a, get(true), now);
        }
        auditor.flush();
        auditor.flush(); // nothing new: nothing written
        for _ in 0..4 {
            bot.hit(&a, get(true), now);
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
        let bot = auditor.bundle("bot");
        let a = HitCounter::new(&bot, "secrets://dev/acme/_/bot/a");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (bot, a) = (bot.clone(), a.clone());
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        bot.hit(&a, get(true), Instant::now());
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
    fn refusals_are_written_once_per_key_and_window_then_counted() {
        let (auditor, records) = collecting(slow());
        let bot = auditor.bundle("bot");
        bot.record(denied("bot", "secrets://dev/acme/_/bot/x", "undeclared"));
        // The repeats come a few ms later (the auditor's clock counts whole ms).
        let ms = Duration::from_millis(1);
        std::thread::sleep(5 * ms);
        let before_repeats = SystemTime::now() - ms;
        for _ in 0..999 {
            bot.record(denied("bot", "secrets://dev/acme/_/bot/x", "undeclared"));
        }
        // Another reason is another key.
        bot.record(denied("bot", "secrets://dev/acme/_/bot/x", "sealed"));
        auditor.flush();
        // A new window: the first is written at once again.
        bot.record(denied("bot", "secrets://dev/acme/_/bot/x", "undeclared"));
        auditor.shutdown();
        let written = lock(&records).clone();
        let own: Vec<&Record> = written
            .iter()
            .filter(|r| matches!(r, Record::Call(_)))
            .collect();
        assert_eq!(own.len(), 3, "{written:?}");
        let repeats: Vec<(u64, String)> = written
            .iter()
            .filter_map(|r| match r {
                Record::Repeats(r) => match &r.record {
                    Record::Call(c) => Some((r.count, c.refusal.as_ref().unwrap().reason.clone())),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert_eq!(repeats, vec![(999, "undeclared".to_string())]);
        // The aggregate's times are those of the calls it counts.
        let Some(Record::Repeats(repeated)) =
            written.iter().find(|r| matches!(r, Record::Repeats(_)))
        else {
            panic!()
        };
        assert!(repeated.first >= before_repeats, "{repeated:?}");
        assert_eq!(refusals_of(&written, "bot"), 1002);
        assert_eq!(bot.stats().aggregated.load(Ordering::Relaxed), 999);
        assert_eq!(bot.stats().dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn distinct_names_past_the_cap_fold_into_one_aggregate() {
        let (auditor, records) = collecting(slow());
        let bot = auditor.bundle("bot");
        let n = 10_000;
        for i in 0..n {
            bot.record(denied(
                "bot",
                &format!("secrets://dev/acme/_/bot/n{i}"),
                "undeclared",
            ));
        }
        auditor.shutdown();
        let written = lock(&records).clone();
        // The first MAX_KEYS_PER_BUNDLE names have a record each, the rest one
        // aggregate.
        assert_eq!(written.len(), MAX_KEYS_PER_BUNDLE + 1, "{}", written.len());
        let Some(Record::Repeats(other)) = written.last() else {
            panic!("{:?}", written.last())
        };
        assert_eq!(other.count, (n - MAX_KEYS_PER_BUNDLE) as u64);
        let Record::Call(first) = &other.record else {
            panic!()
        };
        assert_eq!(first.secret, OTHER_NAMES);
        assert_eq!(refusals_of(&written, "bot"), n as u64);
        // Distinct reasons past the second cap are dropped, and counted.
        let (auditor, records) = collecting(slow());
        let bot = auditor.bundle("bot");
        for i in 0..MAX_KEYS_PER_BUNDLE {
            bot.record(denied("bot", &format!("n{i}"), "undeclared"));
        }
        for i in 0..MAX_OTHER_KEYS_PER_BUNDLE + 5 {
            bot.record(denied("bot", "x", &format!("reason {i}")));
        }
        auditor.shutdown();
        assert_eq!(bot.stats().dropped.load(Ordering::Relaxed), 5);
        assert_eq!(auditor.stats().dropped.load(Ordering::Relaxed), 5);
        let written = lock(&records).clone();
        assert!(
            written.contains(&Record::Dropped {
                bundle: "bot".into(),
                count: 5
            }),
            "{written:?}"
        );
    }

    #[test]
    fn one_bundles_flood_cannot_push_out_a_neighbours_records() {
        // The writer is stuck: nothing is written until the gate opens.
        let (auditor, gate, records) = gated(AuditConfig {
            queue: 64,
            ..slow()
        });
        let held = lock(&gate);
        let flooder = auditor.bundle("flooder");
        let neighbour = auditor.bundle("neighbour");
        // Shares: (64 - 16) / 2 = 24 records, 16 / 2 = 8 disclosures each.
        assert_eq!(auditor.config().shares(2), (24, 8));
        let started = Instant::now();
        for i in 0..100_000 {
            flooder.record(denied("flooder", &format!("n{}", i % 5000), "undeclared"));
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "record() blocked"
        );
        for i in 0..20 {
            neighbour.record(denied("neighbour", &format!("m{i}"), "undeclared"));
        }
        for _ in 0..30 {
            neighbour.record(denied("neighbour", "m0", "undeclared"));
        }
        // The flooder discloses until its own share is used up.
        let mut refused = 0;
        for i in 0..100 {
            if flooder
                .disclose(fetched("flooder", &format!("v{i}")))
                .is_err()
            {
                refused += 1;
            }
        }
        assert_eq!(refused, 100 - 8);
        // The flooder's full shares make neither the neighbour's refusals nor
        // its disclosures fail.
        for i in 0..8 {
            neighbour
                .disclose(fetched("neighbour", &format!("v{i}")))
                .unwrap();
        }
        drop(held);
        auditor.shutdown();
        let written = lock(&records).clone();
        assert_eq!(refusals_of(&written, "neighbour"), 50);
        assert_eq!(refusals_of(&written, "flooder"), 100_000);
        // Each of the neighbour's names had its record written at once (not
        // only in an aggregate at the end of the window).
        let own = |bundle: &str, outcome: &str| {
            written
                .iter()
                .filter(
                    |r| matches!(r, Record::Call(c) if c.bundle == bundle && c.outcome == outcome),
                )
                .count()
        };
        assert_eq!(own("neighbour", "denied"), 20);
        assert_eq!(own("neighbour", "ok"), 8);
        assert_eq!(own("flooder", "ok"), 8);
        assert_eq!(own("flooder", "denied"), 24);
        assert_eq!(neighbour.stats().dropped.load(Ordering::Relaxed), 0);
        assert_eq!(flooder.stats().dropped.load(Ordering::Relaxed), 0);
        assert_eq!(
            neighbour
                .stats()
                .disclosures_refused
                .load(Ordering::Relaxed),
            0
        );
        assert_eq!(
            flooder.stats().disclosures_refused.load(Ordering::Relaxed),
            92
        );
        // The flooder's volume is bounded: at most its keys' own records and
        // aggregates, and one "(other names)" aggregate.
        let flooder_lines = written
            .iter()
            .filter(|r| match r {
                Record::Call(c) => c.bundle == "flooder",
                Record::Repeats(r) => matches!(&r.record, Record::Call(c) if c.bundle == "flooder"),
                _ => false,
            })
            .count();
        assert!(
            flooder_lines <= 2 * MAX_KEYS_PER_BUNDLE + 1,
            "{flooder_lines}"
        );
        assert!(flooder.stats().aggregated.load(Ordering::Relaxed) >= 100_000 - 24);
    }

    #[test]
    fn a_disclosure_that_cannot_be_queued_is_refused_without_blocking() {
        let (auditor, gate, records) = gated(AuditConfig { queue: 8, ..slow() });
        let held = lock(&gate);
        let bot = auditor.bundle("bot");
        // One bundle: 8 / 4 = 2 places for disclosures.
        assert_eq!(auditor.config().shares(1), (6, 2));
        assert_eq!(bot.disclose(call("a")), Ok(()));
        assert_eq!(bot.disclose(call("b")), Ok(()));
        let started = Instant::now();
        assert_eq!(bot.disclose(call("c")), Err(Unaudited));
        assert!(started.elapsed() < Duration::from_secs(1), "blocked");
        // Refusals go on: counted, not lost.
        for _ in 0..100 {
            bot.record(denied("bot", "x", "undeclared"));
        }
        assert_eq!(bot.stats().disclosures_refused.load(Ordering::Relaxed), 1);
        drop(held);
        // Once the writer has caught up (a, b and the first refusal written), a
        // disclosure is taken again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while bot.stats().written.load(Ordering::Relaxed) < 3 {
            assert!(Instant::now() < deadline, "the queue never drained");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(bot.disclose(call("d")), Ok(()));
        auditor.shutdown();
        let written = lock(&records).clone();
        let secrets: Vec<&str> = written
            .iter()
            .filter_map(|r| match r {
                Record::Call(c) if c.outcome == "ok" => Some(c.secret.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(secrets, ["a", "b", "d"]);
        assert!(written.contains(&Record::Refused {
            bundle: "bot".into(),
            count: 1
        }));
        assert_eq!(refusals_of(&written, "bot"), 100);
    }

    #[test]
    fn every_hit_records_past_the_share_are_counted_not_lost() {
        let (auditor, gate, records) = gated(AuditConfig {
            every_hit: true,
            queue: 8,
            ..slow()
        });
        let held = lock(&gate);
        let bot = auditor.bundle("bot");
        assert!(!bot.aggregates_hits());
        let a = HitCounter::new(&bot, "secrets://dev/acme/_/bot/a");
        let hit = Record::Call(Call {
            cache: "hit",
            ..match call("secrets://dev/acme/_/bot/a") {
                Record::Call(c) => c,
                _ => unreachable!(),
            }
        });
        for _ in 0..100 {
            bot.hit_record(hit.clone(), &a, get(true), Instant::now());
        }
        drop(held);
        auditor.shutdown();
        let written = lock(&records).clone();
        let own = written.iter().filter(|r| **r == hit).count() as u64;
        let counted: u64 = hits(&written).iter().map(|h| h.3).sum();
        assert_eq!(own + counted, 100);
        assert!(counted >= 100 - 6, "{own} + {counted}");
    }

    #[test]
    fn the_writer_flushes_on_its_own_every_interval() {
        let (auditor, records) = collecting(AuditConfig {
            flush_every: Duration::from_millis(20),
            ..AuditConfig::default()
        });
        let bot = auditor.bundle("bot");
        let a = HitCounter::new(&bot, "secrets://dev/acme/_/bot/a");
        bot.hit(&a, get(true), Instant::now());
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
