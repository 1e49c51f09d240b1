//! `gtc`: the Greentic worker host.
//!
//! Runs bot bundles (WebAssembly components for the `greentic:secrets/bot` world)
//! sandboxed, answers their `secrets.get` read-only within their scope, and fetches
//! values from the configured backend (a dev store, or Vault/OpenBao).
//!
//! Module map, one concern each:
//! - [`scope`]: names, scopes, canonical `secrets://` URIs.
//! - [`secret_value`]: the zeroizing, redacted holder of secret bytes.
//! - [`backend`]: where values live (dev store, Vault), per-bundle fetch budgets.
//! - [`vault`]: the Vault/OpenBao HTTP client, the worker's login session and the
//!   backend health state shared by all callers.
//! - [`envelope`]: envelope v1 (transit-wrapped AES-256-GCM) stored in KV-v2.
//! - [`cache`]: the app-wide secrets service (cache, single-flight, stale-if-error).
//! - [`prefetch`]: start-up prefetch of declared secrets, kept fresh for `/readyz`.
//! - [`capability`]: the `greentic:secrets` host imports (and Greentic's
//!   `greentic:secrets-store`); [`audit`]: their audit trail (aggregated cache
//!   hits, a writer off the request path).
//! - [`bundle`]: bundle manifests and operator bundle assignments.
//! - [`runtime`]: the Wasm engine, pre-instantiation, per-request sandbox;
//!   [`component_check`]: is a file a component this host can run, and what a
//!   bundle imports (`gtc bundle check`); [`compile_cache`]: compiled components
//!   kept between starts.
//! - [`egress`], [`guest_log`], [`response_limit`]: outgoing-HTTP allowlist and the
//!   operator's forbidden destinations; guest output to the log; response body cap.
//! - [`log_limit`]: rate limits on what the host logs on a guest's behalf.
//! - [`ingress`]: the HTTP server, routing, health, readiness, metrics.
//! - [`config`]: the pod's environment contract.
//! - [`deploy`]: Kubernetes manifests (`gtc deploy render`); [`route`]: the router.
//! - [`doctor`]: step-by-step diagnosis of the path to the secrets.
//! - [`metrics`]: Prometheus counters.
//! - [`app`], [`cli`], [`op`]: wiring, command line, operator commands.
//! - [`scaffold`]: `gtc new`, a bundle for a guest language from the embedded templates.

pub mod app;
pub mod audit;
pub mod backend;
pub mod bundle;
pub mod bundle_check;
pub mod cache;
pub mod capability;
pub mod cli;
pub mod compile_cache;
pub mod component_check;
pub mod config;
pub mod deploy;
pub mod doctor;
pub mod egress;
pub mod envelope;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod guest_log;
pub mod ingress;
pub mod log_limit;
pub mod metrics;
pub mod op;
pub mod prefetch;
pub mod response_limit;
pub mod route;
pub mod runtime;
pub mod scaffold;
pub mod scope;
pub mod sealed;
pub mod secret_value;
pub mod vault;
