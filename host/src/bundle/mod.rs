//! The bundle wing: what a bundle is and how it is checked before it runs.
//!
//! [`manifest`] parses `bundle.toml` and the operator's `--bundle DIR[=TEAM]`
//! assignments; [`authority`] parses and compares the network authorities a
//! manifest names (egress allowlist, sealed destinations); [`component_check`]
//! says whether a file is a component this host can run and what it imports;
//! [`compile_cache`] keeps compiled components between starts; [`fleet`] holds
//! the rules across the bundles one host serves together (routes, ids), for
//! `gtc serve` and `gtc bundle check` alike; [`ownership`] gives each sealed value
//! one owner bundle (also checked by both); [`check`] is `gtc bundle check`
//! (everything a start would refuse, reported at once);
//! [`scaffold`] is `gtc new`; [`commands`] holds the bodies of `gtc bundle …` and
//! `gtc new`.
//!
//! Imports: the secrets wing (names and scopes) only. The engine that compiles
//! and links a component belongs to `serve`; [`check`] reaches it through the
//! [`check::ComponentHost`] trait that `serve::runtime::Runtime` implements.

pub mod authority;
pub mod check;
pub mod commands;
pub mod compile_cache;
pub mod component_check;
pub mod fleet;
pub mod manifest;
pub mod ownership;
pub mod scaffold;
