//! `gtc`: the Greentic worker host.
//!
//! Runs bot bundles (WebAssembly components for the `greentic:secrets/bot` world)
//! sandboxed, answers their `secrets.get` read-only within their scope, and fetches
//! values from the configured backend (a dev store, or Vault/OpenBao).
//!
//! The crate is four wings and the wiring above them. A wing imports only the
//! wings below it, never one above (no cycles):
//!
//! | layer | module | what lives there |
//! |---|---|---|
//! | 6 | [`app`] (and `main.rs`) | the wiring: `serve` and `route` built from the typed configuration, logging, exit statuses |
//! | 5 | [`cli`] | the command line and the conversion of flags into each wing's own settings |
//! | 4 | [`ops`] | operator commands: `deploy render`, `doctor`, `op secrets` |
//! | 3 | [`serve`] | the request path: connections, ingress, runtime, egress, sealed injection, `gtc route` |
//! | 2 | [`metrics`] | Prometheus counters, rendered from the wings' own counters |
//! | 2 | [`config`] | the pod's environment, parsed once into types |
//! | 1 | [`bundle`] | manifests, network authorities, component checks, the rules across the bundles served together (`fleet`), the compile cache, `bundle check`, `gtc new` |
//! | 0 | [`secrets`] | the capability and everything behind it: scope, cache, envelope, audit, backends, the Vault client |
//!
//! `serve` and `ops` do not import each other; `config` and `metrics` import only
//! `secrets` and `bundle`; [`fuzz_checks`] (hidden) serves the fuzz targets. Each
//! wing's `mod.rs` says what it holds and what it may import; `tests/layout.rs`
//! holds the tree to this table.

pub mod app;
pub mod bundle;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod metrics;
pub mod ops;
pub mod secrets;
pub mod serve;
