//! The secrets wing: the `greentic:secrets` capability and everything behind it.
//!
//! A guest's `secrets.get` enters at [`capability`], is resolved within the
//! bundle's scope by [`scope`], answered from [`cache`] (single flight,
//! stale-if-error) or fetched from a [`backend`] (the dev store, or Vault through
//! [`vault`]'s client, login session and shared health state), opened from its
//! [`envelope`], held in a [`secret_value`] that zeroizes on drop, and recorded by
//! [`audit`]. [`prefetch`] looks declared secrets up at start and keeps them fresh
//! for `/readyz`.
//!
//! Imports: nothing from the other wings (`bundle`, `serve`, `ops`) and nothing
//! from the top level (`config`, `metrics`, `app`, `cli`): this is the bottom of
//! the tree. What it counts, it counts in its own types, which `metrics` reads.

pub mod audit;
pub mod backend;
pub mod cache;
pub mod capability;
pub mod envelope;
pub mod prefetch;
pub mod scope;
pub mod secret_value;
pub mod vault;
