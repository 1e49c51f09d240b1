//! Prometheus metrics, rendered in the text exposition format at `/metrics`.
//!
//! Counters are plain atomics updated on the request path; rendering takes a
//! snapshot. No label ever carries a secret name's value or a credential.

use crate::secrets::backend::SecretsBackend;
use crate::secrets::backend::budget::FetchBudget;
use crate::secrets::cache::SecretsService;
use crate::secrets::capability::GetCounters;
use crate::secrets::capability::VerifyChecks;
use crate::secrets::vault::session::SessionCounters;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// App-wide counters that are not owned by a more specific module.
#[derive(Default)]
pub struct Metrics {
    /// Each bundle's answered requests by status, in registration order.
    requests: Mutex<Vec<(String, Arc<RequestCounts>)>>,
    /// Requests that had to wait for an instance slot, by bundle.
    queued: Mutex<BTreeMap<String, u64>>,
    /// Connections refused at the connection cap.
    pub connections_refused: AtomicU64,
    /// Connections accepted and open right now.
    pub connections_open: AtomicU64,
    budgets: Mutex<Vec<Arc<FetchBudget>>>,
    /// Each bundle's sealed signature checks, in registration order.
    verify: Mutex<Vec<Arc<VerifyChecks>>>,
    /// Each bundle's sealed-secret outcomes, in registration order.
    sealed: Mutex<Vec<(String, Arc<SealedCounters>)>>,
    /// Each bundle's instances, in registration order.
    instances: Mutex<Vec<(String, Arc<InstanceCounts>)>>,
    /// Each bundle's CPU time and time waited for a turn.
    cpu: Mutex<Vec<(String, Arc<CpuCounts>)>>,
}

/// What `/metrics` shows of the host's log budget (implemented by the serve
/// wing's budget, which this module does not import).
pub trait HostLogStats {
    /// Lines held back so far.
    fn suppressed(&self) -> u64;
    /// The budget, in lines per second.
    fn per_second(&self) -> u32;
}

/// One bundle's sealed secrets on its outgoing requests (the log and the audit
/// trail say which secret and where; these say how many).
#[derive(Debug, Default)]
pub struct SealedCounters {
    /// Values put into requests that were sent.
    pub injected: AtomicU64,
    /// Requests refused before sending (placeholder, destination, place, the
    /// value unreadable).
    pub refused: AtomicU64,
    /// Responses refused (encoded or partial although asked not to be).
    pub response_refused: AtomicU64,
}

/// Why an instance left for good (the `reason` label of
/// `gtc_instances_retired_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retired {
    /// It served its `reuse` requests.
    Requests,
    /// It reached its maximum age.
    Age,
    /// It stayed idle past the idle timeout.
    Idle,
    /// A request found the pool full and took its slot.
    Evicted,
    /// Its request trapped, timed out, hit a limit or ended its response
    /// abnormally: the instance is not trusted with another request.
    Fault,
}

impl Retired {
    pub const ALL: [Retired; 5] = [
        Self::Requests,
        Self::Age,
        Self::Idle,
        Self::Evicted,
        Self::Fault,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Age => "age",
            Self::Idle => "idle",
            Self::Evicted => "evicted",
            Self::Fault => "fault",
        }
    }
}

/// One bundle's instance counts (`/metrics`): instances created against
/// requests served shows what reuse saves.
#[derive(Debug, Default)]
pub struct InstanceCounts {
    pub created: AtomicU64,
    /// Requests served by an instance that had served one before.
    pub reused: AtomicU64,
    /// Instances idle right now.
    pub idle: AtomicU64,
    retired: [AtomicU64; 5],
}

impl InstanceCounts {
    pub fn retire(&self, why: Retired) {
        self.retired[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn retired(&self, why: Retired) -> u64 {
        self.retired[why as usize].load(Ordering::Relaxed)
    }
}

/// One bundle's time on the host's threads and time waited for a turn
/// (`serve::cpu_share`).
#[derive(Debug, Default)]
pub struct CpuCounts {
    pub ran_nanos: AtomicU64,
    pub waited_nanos: AtomicU64,
}

/// How a request ended, for the `status` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Http(u16),
    Aborted,
}

/// One bundle's answered requests, by how they ended: an HTTP status, `aborted`
/// for a response that failed after its head was sent, or `499` when the client
/// left first. The bundle holds its own counters, so counting a request is no
/// lookup by name; 200, the usual answer, is one atomic add, and other statuses
/// take a read lock (a write lock only for a status not seen before), so requests
/// on different cores never wait for each other here.
#[derive(Debug, Default)]
pub struct RequestCounts {
    ok: AtomicU64,
    others: RwLock<BTreeMap<Status, AtomicU64>>,
}

impl RequestCounts {
    /// Counts one answered request.
    pub fn answered(&self, status: u16) {
        if status == 200 {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.count(Status::Http(status));
        }
    }

    /// Counts a request whose response failed after its head was sent.
    pub fn aborted(&self) {
        self.count(Status::Aborted);
    }

    fn count(&self, status: Status) {
        let others = self.others.read().unwrap_or_else(|e| e.into_inner());
        if let Some(counter) = others.get(&status) {
            counter.fetch_add(1, Ordering::Relaxed);
            return;
        }
        drop(others);
        self.others
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Every status counted so far, in order, with its count.
    fn snapshot(&self) -> Vec<(Status, u64)> {
        let mut counts: Vec<(Status, u64)> = self
            .others
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(status, count)| (*status, count.load(Ordering::Relaxed)))
            .collect();
        let ok = self.ok.load(Ordering::Relaxed);
        if ok > 0 {
            counts.push((Status::Http(200), ok));
            counts.sort_unstable_by_key(|(status, _)| *status);
        }
        counts
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(code) => write!(f, "{code}"),
            Self::Aborted => f.write_str("aborted"),
        }
    }
}

/// New counters of `bundle`, added to `list` (rendered from now on).
fn register<C: Default>(list: &Mutex<Vec<(String, Arc<C>)>>, bundle: &str) -> Arc<C> {
    let counts = Arc::new(C::default());
    list.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((bundle.to_string(), counts.clone()));
    counts
}

impl Metrics {
    /// The request counters of `bundle` (`gtc_requests_total`), rendered from now on.
    pub fn register_requests(&self, bundle: &str) -> Arc<RequestCounts> {
        register(&self.requests, bundle)
    }

    /// Counts a request that waited for an instance slot.
    pub fn queued(&self, bundle: &str) {
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        *queued.entry(bundle.to_string()).or_default() += 1;
    }

    /// Per-bundle gauges and counters of the runtime: instances in use, cap,
    /// queued requests, lines the log limiter dropped.
    pub fn render_bundles<'a>(
        &self,
        out: &mut String,
        host_log: &dyn HostLogStats,
        bundles: impl Iterator<Item = (&'a str, u32, u32, u64)> + Clone,
    ) {
        let _ = writeln!(
            out,
            "# HELP gtc_bundle_instances_in_use Instances a bundle holds right now."
        );
        let _ = writeln!(out, "# TYPE gtc_bundle_instances_in_use gauge");
        for (bundle, in_use, _, _) in bundles.clone() {
            let _ = writeln!(
                out,
                "gtc_bundle_instances_in_use{{bundle=\"{bundle}\"}} {in_use}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP gtc_bundle_instances_cap Instances a bundle may hold at once."
        );
        let _ = writeln!(out, "# TYPE gtc_bundle_instances_cap gauge");
        for (bundle, _, cap, _) in bundles.clone() {
            let _ = writeln!(out, "gtc_bundle_instances_cap{{bundle=\"{bundle}\"}} {cap}");
        }
        let _ = writeln!(
            out,
            "# HELP gtc_log_lines_suppressed_total Log lines about a bundle dropped by the rate limiter."
        );
        let _ = writeln!(out, "# TYPE gtc_log_lines_suppressed_total counter");
        for (bundle, _, _, dropped) in bundles {
            let _ = writeln!(
                out,
                "gtc_log_lines_suppressed_total{{bundle=\"{bundle}\"}} {dropped}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP gtc_log_host_budget_suppressed_total Log lines about bundles held back \
             by the host's budget for all bundles (also in each bundle's \
             gtc_log_lines_suppressed_total)."
        );
        let _ = writeln!(out, "# TYPE gtc_log_host_budget_suppressed_total counter");
        let _ = writeln!(
            out,
            "gtc_log_host_budget_suppressed_total {}",
            host_log.suppressed()
        );
        let _ = writeln!(
            out,
            "# HELP gtc_log_host_budget_lines_per_second Log lines about all bundles \
             together the host writes per second at most."
        );
        let _ = writeln!(out, "# TYPE gtc_log_host_budget_lines_per_second gauge");
        let _ = writeln!(
            out,
            "gtc_log_host_budget_lines_per_second {}",
            host_log.per_second()
        );
        let _ = writeln!(
            out,
            "# HELP gtc_requests_queued_total Requests that waited for an instance slot."
        );
        let _ = writeln!(out, "# TYPE gtc_requests_queued_total counter");
        for (bundle, count) in self.queued.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "gtc_requests_queued_total{{bundle=\"{bundle}\"}} {count}"
            );
        }
        for (name, help, kind, value) in [
            (
                "gtc_connections_open",
                "Client connections open right now.",
                "gauge",
                &self.connections_open,
            ),
            (
                "gtc_connections_refused_total",
                "Client connections refused at the connection cap.",
                "counter",
                &self.connections_refused,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
    }

    /// The sealed-secret counters of `bundle`, rendered from now on.
    pub fn register_sealed(&self, bundle: &str) -> Arc<SealedCounters> {
        register(&self.sealed, bundle)
    }

    /// The instance counters of `bundle`, rendered from now on.
    pub fn register_instances(&self, bundle: &str) -> Arc<InstanceCounts> {
        register(&self.instances, bundle)
    }

    /// The CPU counters of `bundle`, rendered from now on.
    pub fn register_cpu(&self, bundle: &str) -> Arc<CpuCounts> {
        register(&self.cpu, bundle)
    }

    fn render_cpu(&self, out: &mut String) {
        let cpu = self.cpu.lock().unwrap_or_else(|e| e.into_inner());
        for (name, help, nanos) in [
            (
                "gtc_bundle_cpu_seconds_total",
                "Time a bundle's guests ran on the host's threads.",
                (|c: &CpuCounts| c.ran_nanos.load(Ordering::Relaxed)) as fn(&CpuCounts) -> u64,
            ),
            (
                "gtc_bundle_cpu_wait_seconds_total",
                "Time a bundle's guests waited for a turn on the host's threads (its fair share was in use).",
                |c: &CpuCounts| c.waited_nanos.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (bundle, counts) in cpu.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{bundle=\"{bundle}\"}} {:.6}",
                    nanos(counts) as f64 / 1e9
                );
            }
        }
    }

    fn render_instances(&self, out: &mut String) {
        let instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        let per_bundle = |out: &mut String,
                          name: &str,
                          kind: &str,
                          help: &str,
                          value: &dyn Fn(&InstanceCounts) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (bundle, counts) in instances.iter() {
                let _ = writeln!(out, "{name}{{bundle=\"{bundle}\"}} {}", value(counts));
            }
        };
        per_bundle(
            out,
            "gtc_instances_created_total",
            "counter",
            "Instances created, by bundle (one per request unless the bundle reuses instances).",
            &|c| c.created.load(Ordering::Relaxed),
        );
        per_bundle(
            out,
            "gtc_instances_reused_total",
            "counter",
            "Requests served by an instance that had served one of the bundle's requests before.",
            &|c| c.reused.load(Ordering::Relaxed),
        );
        per_bundle(
            out,
            "gtc_instances_idle",
            "gauge",
            "Instances kept idle for the bundle's next request.",
            &|c| c.idle.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP gtc_instances_retired_total Reused instances retired, by bundle and reason."
        );
        let _ = writeln!(out, "# TYPE gtc_instances_retired_total counter");
        for (bundle, counts) in instances.iter() {
            for why in Retired::ALL {
                let _ = writeln!(
                    out,
                    "gtc_instances_retired_total{{bundle=\"{bundle}\",reason=\"{}\"}} {}",
                    why.label(),
                    counts.retired(why)
                );
            }
        }
    }

    /// Adds a bundle's signature checks to what `/metrics` reports.
    pub fn register_verify(&self, checks: Arc<VerifyChecks>) {
        self.verify
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(checks);
    }

    fn render_sealed(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP gtc_sealed_verify_total sealed.verify-hmac-sha256 checks, by bundle and \
             outcome (limited: refused by the bundle's rate, GREENTIC_BUNDLE_VERIFY_RATE)."
        );
        let _ = writeln!(out, "# TYPE gtc_sealed_verify_total counter");
        for checks in self.verify.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            for (outcome, count) in [
                ("valid", &checks.valid),
                ("invalid", &checks.invalid),
                ("limited", &checks.limited),
            ] {
                let _ = writeln!(
                    out,
                    "gtc_sealed_verify_total{{bundle=\"{}\",outcome=\"{outcome}\"}} {}",
                    checks.budget.owner(),
                    count.load(Ordering::Relaxed)
                );
            }
        }
        let sealed = self.sealed.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "# HELP gtc_sealed_injections_total Sealed values put into outgoing requests, by bundle."
        );
        let _ = writeln!(out, "# TYPE gtc_sealed_injections_total counter");
        for (bundle, counters) in sealed.iter() {
            let _ = writeln!(
                out,
                "gtc_sealed_injections_total{{bundle=\"{bundle}\"}} {}",
                counters.injected.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gtc_sealed_refusals_total Outgoing requests with sealed secrets refused, by \
             bundle and stage (request: before sending; response: encoded or partial)."
        );
        let _ = writeln!(out, "# TYPE gtc_sealed_refusals_total counter");
        for (bundle, counters) in sealed.iter() {
            for (stage, count) in [
                ("request", &counters.refused),
                ("response", &counters.response_refused),
            ] {
                let _ = writeln!(
                    out,
                    "gtc_sealed_refusals_total{{bundle=\"{bundle}\",stage=\"{stage}\"}} {}",
                    count.load(Ordering::Relaxed)
                );
            }
        }
    }

    /// Adds a bundle's fetch budget to what `/metrics` reports.
    pub fn register_budget(&self, budget: Arc<FetchBudget>) {
        self.budgets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(budget);
    }

    /// The backend's health and the fetch budgets.
    fn render_backend(&self, service: &SecretsService, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP gtc_secrets_budget_refused_total Backend fetches refused because the bundle spent its budget."
        );
        let _ = writeln!(out, "# TYPE gtc_secrets_budget_refused_total counter");
        for budget in self
            .budgets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "gtc_secrets_budget_refused_total{{bundle=\"{}\"}} {}",
                budget.owner(),
                budget.refused.load(Ordering::Relaxed)
            );
        }
        let SecretsBackend::Vault(vault) = service.backend() else {
            return;
        };
        let health = vault.session().health();
        let state = health.snapshot().state;
        let _ = writeln!(
            out,
            "# HELP gtc_vault_backend_state The Vault backend's state (1 for the current one)."
        );
        let _ = writeln!(out, "# TYPE gtc_vault_backend_state gauge");
        for name in ["healthy", "degraded", "down"] {
            let _ = writeln!(
                out,
                "gtc_vault_backend_state{{state=\"{name}\"}} {}",
                u8::from(state.as_str() == name)
            );
        }
        for (name, help, counter) in [
            (
                "gtc_vault_fail_fast_total",
                "Backend calls refused at once because Vault is down.",
                &health.counters.fail_fast,
            ),
            (
                "gtc_vault_probes_total",
                "Calls let through to Vault while it was down.",
                &health.counters.probes,
            ),
            (
                "gtc_vault_state_changes_total",
                "Changes of the Vault backend's state.",
                &health.counters.transitions,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
        }
    }

    /// `gtc_requests_total`, by bundle name, then status.
    fn render_requests(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP gtc_requests_total HTTP requests answered, by bundle and status \
             (aborted: failed after the response head was sent; 499: the client left first)."
        );
        let _ = writeln!(out, "# TYPE gtc_requests_total counter");
        let requests: Vec<(String, Arc<RequestCounts>)> = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // One series per bundle name and status, should a name be registered twice.
        let mut by_bundle: BTreeMap<&str, BTreeMap<Status, u64>> = BTreeMap::new();
        for (bundle, counts) in &requests {
            let statuses = by_bundle.entry(bundle.as_str()).or_default();
            for (status, count) in counts.snapshot() {
                *statuses.entry(status).or_default() += count;
            }
        }
        for (bundle, statuses) in by_bundle {
            for (status, count) in statuses {
                let _ = writeln!(
                    out,
                    "gtc_requests_total{{bundle=\"{bundle}\",status=\"{status}\"}} {count}"
                );
            }
        }
    }

    /// Renders every metric.
    pub fn render(&self, service: &SecretsService, gets: &GetCounters) -> String {
        let mut out = String::new();
        self.render_requests(&mut out);
        let _ = writeln!(
            out,
            "# HELP gtc_secrets_get_total secrets.get calls, by outcome."
        );
        let _ = writeln!(out, "# TYPE gtc_secrets_get_total counter");
        for (outcome, counter) in [
            ("ok", &gets.ok),
            ("not-found", &gets.not_found),
            ("denied", &gets.denied),
            ("invalid-name", &gets.invalid_name),
            ("unavailable", &gets.unavailable),
            ("internal", &gets.internal),
        ] {
            let _ = writeln!(
                out,
                "gtc_secrets_get_total{{outcome=\"{outcome}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gtc_secrets_store_put_refused_total greentic:secrets-store@1.1.0 put calls, \
             each refused (the guest is stopped: this host is read-only)."
        );
        let _ = writeln!(out, "# TYPE gtc_secrets_store_put_refused_total counter");
        let _ = writeln!(
            out,
            "gtc_secrets_store_put_refused_total {}",
            gets.store_put_refused.load(Ordering::Relaxed)
        );
        let stats = service.stats();
        let _ = writeln!(
            out,
            "# HELP gtc_secrets_cache_total Secret look-ups by cache result."
        );
        let _ = writeln!(out, "# TYPE gtc_secrets_cache_total counter");
        for (result, counter) in [
            ("hit", &stats.hits),
            ("miss", &stats.misses),
            ("stale", &stats.stale_served),
        ] {
            let _ = writeln!(
                out,
                "gtc_secrets_cache_total{{result=\"{result}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        for (name, help, value) in [
            (
                "gtc_secrets_backend_errors_total",
                "Backend fetches that failed.",
                stats.backend_errors.load(Ordering::Relaxed),
            ),
            (
                "gtc_secrets_backend_fetch_seconds_total",
                "Time spent in backend fetches.",
                0,
            ),
            (
                "gtc_vault_logins_total",
                "Successful Vault logins.",
                session_count(service, |c| &c.logins),
            ),
            (
                "gtc_vault_login_failures_total",
                "Failed Vault logins.",
                session_count(service, |c| &c.login_failures),
            ),
            (
                "gtc_vault_renewals_total",
                "Successful Vault token renewals.",
                session_count(service, |c| &c.renewals),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            if name == "gtc_secrets_backend_fetch_seconds_total" {
                let micros = stats.backend_fetch_micros.load(Ordering::Relaxed);
                let _ = writeln!(out, "{name} {:.6}", micros as f64 / 1e6);
            } else {
                let _ = writeln!(out, "{name} {value}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP gtc_secrets_cached_entries Secret URIs currently cached."
        );
        let _ = writeln!(out, "# TYPE gtc_secrets_cached_entries gauge");
        let _ = writeln!(
            out,
            "gtc_secrets_cached_entries {}",
            service.cached_entries()
        );
        self.render_backend(service, &mut out);
        self.render_sealed(&mut out);
        self.render_instances(&mut out);
        self.render_cpu(&mut out);
        render_audit(crate::secrets::audit::global(), &mut out);
        out
    }
}

/// One of the Vault session's counters; 0 with a backend that has no session.
fn session_count(service: &SecretsService, pick: fn(&SessionCounters) -> &AtomicU64) -> u64 {
    match service.backend() {
        SecretsBackend::Vault(vault) => pick(vault.session().counters()).load(Ordering::Relaxed),
        SecretsBackend::DevStore(_) => 0,
    }
}

/// The audit trail's writer: records written, calls folded into aggregates,
/// records dropped (never silently: the log says so) and disclosures refused,
/// for all bundles and per bundle.
fn render_audit(auditor: &crate::secrets::audit::Auditor, out: &mut String) {
    let stats = auditor.stats();
    for (name, help, counter) in [
        (
            "gtc_audit_records_total",
            "Audit records written (an aggregate counts once).",
            &stats.written,
        ),
        (
            "gtc_audit_hits_aggregated_total",
            "Cache hits counted into aggregate audit records.",
            &stats.hits_aggregated,
        ),
        (
            "gtc_audit_events_dropped_total",
            "Audit records dropped, all bundles (see gtc_audit_records_dropped_total).",
            &stats.dropped,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
    }
    type Pick = fn(&crate::secrets::audit::BundleAuditStats) -> &AtomicU64;
    let per_bundle: [(&str, &str, Pick); 4] = [
        (
            "gtc_audit_records_written_total",
            "Audit records written about a bundle (an aggregate counts once).",
            |s| &s.written,
        ),
        (
            "gtc_audit_records_aggregated_total",
            "A bundle's calls counted into aggregate audit records instead of a record \
             of their own (cache hits, repeated refusals and failures).",
            |s| &s.aggregated,
        ),
        (
            "gtc_audit_records_dropped_total",
            "A bundle's refusal records neither written nor counted (more distinct \
             reasons in one window than its aggregates hold).",
            |s| &s.dropped,
        ),
        (
            "gtc_audit_disclosures_refused_total",
            "A bundle's disclosures refused (the guest heard unavailable) because their \
             audit records could not be queued.",
            |s| &s.disclosures_refused,
        ),
    ];
    for (name, help, pick) in per_bundle {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        auditor.each_bundle(|bundle, stats| {
            let _ = writeln!(
                out,
                "{name}{{bundle=\"{bundle}\"}} {}",
                pick(stats).load(Ordering::Relaxed)
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_rendered_once_per_bundle_and_status_in_order_with_200_among_them() {
        let metrics = Metrics::default();
        let zeta = metrics.register_requests("zeta");
        let alpha = metrics.register_requests("alpha");
        let _idle = metrics.register_requests("idle");
        let zeta_again = metrics.register_requests("zeta");
        zeta_again.answered(503);
        for _ in 0..3 {
            zeta.answered(200);
        }
        zeta.answered(503);
        zeta.aborted();
        alpha.answered(499);
        alpha.answered(200);
        alpha.answered(404);
        alpha.answered(404);
        let mut out = String::new();
        metrics.render_requests(&mut out);
        let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "gtc_requests_total{bundle=\"alpha\",status=\"200\"} 1",
                "gtc_requests_total{bundle=\"alpha\",status=\"404\"} 2",
                "gtc_requests_total{bundle=\"alpha\",status=\"499\"} 1",
                "gtc_requests_total{bundle=\"zeta\",status=\"200\"} 3",
                "gtc_requests_total{bundle=\"zeta\",status=\"503\"} 2",
                "gtc_requests_total{bundle=\"zeta\",status=\"aborted\"} 1",
            ],
            "{out}"
        );
    }
}
