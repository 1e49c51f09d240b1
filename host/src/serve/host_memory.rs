//! Host memory a guest makes the host hold, counted in bytes.
//!
//! Why: a guest's own memory is bounded by its memory limit, but the header maps
//! it builds through `wasi:http/types` live in the host. A handle budget alone
//! (the resource table's capacity) let one request hold ~56 MiB of header maps
//! (2048 maps just under the 32 KiB per-map limit), and six such requests at once
//! slowed every neighbour. Here every byte a guest puts into a header map (names,
//! values, a per-entry overhead, a per-map overhead; a clone counts as a copy) is
//! charged against a per-request budget derived from the bundle's memory limit
//! ([`request_budget`]) and against the bundle's total over its running requests
//! ([`bundle_budget`]). Charges are cumulative within a request (a map dropped
//! does not give its bytes back: no honest handler builds megabytes of headers),
//! and returned to the bundle when the request ends. Past either budget the
//! request stops with the host resource budget error.
//!
//! The charging wraps `wasi:http/types`' `fields` constructor, `from-list`,
//! `set`, `append` and `clone`: the linker entries are shadowed by functions that
//! charge, then call wasmtime-wasi-http's own implementation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi_http::p2::bindings::http::types::{self as http_types, Host, HostFields};
use wasmtime_wasi_http::{FieldMap, WasiHttpView};

/// Charged per entry on top of its name and value (what a `HeaderMap` entry and
/// its `HeaderValue` cost the host).
const ENTRY_OVERHEAD: usize = 64;
/// Charged per header map.
const MAP_OVERHEAD: usize = 128;

/// Header-map bytes one request may add: a quarter of its memory limit.
pub fn request_budget(memory_bytes: usize) -> usize {
    (memory_bytes / 4).max(1 << 20)
}

/// Header-map bytes a bundle's running requests may hold together: twice its
/// memory limit (so the host holds at most that beyond its guests' memory).
pub fn bundle_budget(memory_bytes: usize) -> usize {
    memory_bytes.saturating_mul(2).max(2 << 20)
}

/// A request went past its budget or its bundle's; the request stops.
#[derive(Debug, thiserror::Error)]
#[error("host memory budget exceeded: {what} of {limit} bytes")]
pub struct OverBudget {
    pub what: &'static str,
    pub limit: usize,
}

/// One bundle's header-map bytes over its running requests.
#[derive(Debug)]
pub struct BundleBytes {
    used: AtomicUsize,
    limit: usize,
}

impl BundleBytes {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// One request's header-map bytes; gives them back to its bundle when the
/// request ends (dropped, or reset for the next request of a reused instance).
#[derive(Debug)]
pub struct HostBytes {
    used: usize,
    limit: usize,
    bundle: Arc<BundleBytes>,
}

impl HostBytes {
    pub fn new(limit: usize, bundle: Arc<BundleBytes>) -> Self {
        Self {
            used: 0,
            limit,
            bundle,
        }
    }

    /// Charges `bytes`, or says which budget it would exceed.
    pub fn charge(&mut self, bytes: usize) -> Result<(), OverBudget> {
        let used = self.used.saturating_add(bytes);
        if used > self.limit {
            return Err(OverBudget {
                what: "the request's header maps",
                limit: self.limit,
            });
        }
        let total = self.bundle.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total > self.bundle.limit {
            self.bundle.used.fetch_sub(bytes, Ordering::Relaxed);
            return Err(OverBudget {
                what: "the bundle's header maps over its running requests",
                limit: self.bundle.limit,
            });
        }
        self.used = used;
        Ok(())
    }

    /// Gives this request's bytes back (the next request starts at zero).
    pub fn reset(&mut self) {
        self.bundle
            .used
            .fetch_sub(std::mem::take(&mut self.used), Ordering::Relaxed);
    }
}

impl Drop for HostBytes {
    fn drop(&mut self) {
        self.reset();
    }
}

/// Per-request store data that counts header-map bytes.
pub trait HostMemoryView: WasiHttpView {
    fn host_bytes(&mut self) -> &mut HostBytes;
}

fn entry_bytes(name: &str, value: &[u8]) -> usize {
    name.len() + value.len() + ENTRY_OVERHEAD
}

fn charge<T: HostMemoryView>(state: &mut T, bytes: usize) -> wasmtime::Result<()> {
    state
        .host_bytes()
        .charge(bytes)
        .map_err(wasmtime::Error::new)
}

/// A header error (or trap) from wasmtime-wasi-http, in the WIT's terms.
fn lowered<T: HostMemoryView, R>(
    state: &mut T,
    result: wasmtime_wasi_http::p2::HeaderResult<R>,
) -> wasmtime::Result<Result<R, http_types::HeaderError>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(error) => Ok(Err(state.http().convert_header_error(error)?)),
    }
}

/// Replaces the header-map constructors and mutators of `wasi:http/types`
/// (already in `linker`) with ones that charge their bytes first.
pub fn add_to_linker<T: HostMemoryView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance("wasi:http/types@0.2.12")?;
    types.func_wrap(
        "[constructor]fields",
        |mut store: wasmtime::StoreContextMut<'_, T>, (): ()| {
            let state = store.data_mut();
            charge(state, MAP_OVERHEAD)?;
            Ok((HostFields::new(&mut state.http())?,))
        },
    )?;
    types.func_wrap(
        "[static]fields.from-list",
        |mut store: wasmtime::StoreContextMut<'_, T>, (entries,): (Vec<(String, Vec<u8>)>,)| {
            let state = store.data_mut();
            let bytes = entries
                .iter()
                .map(|(name, value)| entry_bytes(name, value))
                .sum::<usize>();
            charge(state, MAP_OVERHEAD + bytes)?;
            let made = HostFields::from_list(&mut state.http(), entries);
            Ok((lowered(state, made)?,))
        },
    )?;
    types.func_wrap(
        "[method]fields.set",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (fields, name, values): (Resource<FieldMap>, String, Vec<Vec<u8>>)| {
            let state = store.data_mut();
            let bytes = values.iter().map(|v| entry_bytes(&name, v)).sum::<usize>();
            charge(state, bytes)?;
            let set = HostFields::set(&mut state.http(), fields, name, values);
            Ok((lowered(state, set)?,))
        },
    )?;
    types.func_wrap(
        "[method]fields.append",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (fields, name, value): (Resource<FieldMap>, String, Vec<u8>)| {
            let state = store.data_mut();
            charge(state, entry_bytes(&name, &value))?;
            let appended = HostFields::append(&mut state.http(), fields, name, value);
            Ok((lowered(state, appended)?,))
        },
    )?;
    types.func_wrap(
        "[method]fields.clone",
        |mut store: wasmtime::StoreContextMut<'_, T>, (fields,): (Resource<FieldMap>,)| {
            let state = store.data_mut();
            let bytes = {
                let view = state.http();
                let map = view.table.get(&fields)?;
                map.iter()
                    .map(|(name, value)| entry_bytes(name.as_str(), value.as_bytes()))
                    .sum::<usize>()
            };
            charge(state, MAP_OVERHEAD + bytes)?;
            Ok((HostFields::clone(&mut state.http(), fields)?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_charged_alone_and_together_and_give_back_at_the_end() {
        let bundle = BundleBytes::new(250);
        let mut first = HostBytes::new(200, bundle.clone());
        let mut second = HostBytes::new(200, bundle.clone());
        first.charge(150).unwrap();
        let alone = first.charge(60).unwrap_err();
        assert_eq!(alone.limit, 200, "{alone}");
        second.charge(100).unwrap();
        let together = second.charge(10).unwrap_err();
        assert_eq!(together.limit, 250, "{together}");
        assert_eq!(bundle.used(), 250, "a refused charge takes nothing");
        first.reset();
        assert_eq!(bundle.used(), 100);
        second.charge(10).unwrap();
        drop(second);
        assert_eq!(bundle.used(), 0);
    }
}
