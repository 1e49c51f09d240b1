//! The ops wing: what an operator runs besides `gtc serve`.
//!
//! [`deploy`] renders the Kubernetes manifests of one environment and tenant
//! (`gtc deploy render`); [`doctor`] walks the path from the pod to its secrets
//! step by step (`gtc doctor`); [`secrets_admin`] writes, lists, checks and
//! rewraps envelopes (`gtc op secrets`).
//!
//! Imports: `config`, and the `secrets` and `bundle` wings; never `serve` (an
//! operator command does not run the request path) nor the wiring (`app`, `cli`).

pub mod deploy;
pub mod doctor;
pub mod secrets_admin;
