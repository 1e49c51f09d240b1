//! The serve wing: the request path, from a client's connection to a guest and
//! out again.
//!
//! [`connections`] is the accept loop both HTTP servers share (connection cap,
//! header limits, back-off when out of descriptors; [`head_deadline`] is the
//! head timeout's timer, one per connection); [`ingress`] routes a request
//! to a bundle or answers the host's own endpoints; [`runtime`] owns the Wasm
//! engine, pre-instantiates components and runs each request in a fresh sandboxed
//! instance (or, for a bundle that opted in, a reused one from [`warm`]), in turns
//! that [`cpu_share`] hands out per bundle; [`egress`] guards a guest's outgoing HTTP and [`sealed`] injects
//! sealed secrets into it and scrubs them out of what comes back;
//! [`response_limit`] caps response bodies; [`guest_log`] takes guest output to
//! the host log and [`log_limit`] rate-limits what the host logs on a guest's
//! behalf; [`route`] is `gtc route`, the router in front of the workers.
//!
//! Imports: the `secrets` and `bundle` wings, and `metrics` for its counters;
//! never `ops` or the wiring above it (`app`, `cli`).

pub mod connections;
pub mod cpu_share;
pub mod egress;
pub mod guest_log;
pub mod head_deadline;
pub mod host_memory;
pub mod ingress;
pub mod log_limit;
pub mod response_limit;
pub mod route;
pub mod runtime;
pub mod sealed;
pub mod warm;
