//! Prometheus metrics, rendered in the text exposition format at `/metrics`.
//!
//! Counters are plain atomics updated on the request path; rendering takes a
//! snapshot. No label ever carries a secret name's value or a credential.

use crate::cache::SecretsService;
use crate::capability::GetCounters;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// App-wide counters that are not owned by a more specific module.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    pub renewals: AtomicU64,
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, bundle: &str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((bundle.to_string(), status)).or_default() += 1;
    }

    /// Renders every metric.
    pub fn render(&self, service: &SecretsService, gets: &GetCounters) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP gtc_requests_total HTTP requests answered, by bundle and status."
        );
        let _ = writeln!(out, "# TYPE gtc_requests_total counter");
        for ((bundle, status), count) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "gtc_requests_total{{bundle=\"{bundle}\",status=\"{status}\"}} {count}"
            );
        }
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
                self.logins.load(Ordering::Relaxed),
            ),
            (
                "gtc_vault_login_failures_total",
                "Failed Vault logins.",
                self.login_failures.load(Ordering::Relaxed),
            ),
            (
                "gtc_vault_renewals_total",
                "Successful Vault token renewals.",
                self.renewals.load(Ordering::Relaxed),
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
        out
    }
}
