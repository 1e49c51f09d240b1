//! Compiled components on disk, so that a worker starts in well under a second.
//!
//! Compiling a component to native code is the slow part of a start: seconds for
//! the 13–18 MB components that componentize-py and componentize-js produce. The
//! cache keeps the compiled artifact of each component under a key made of the
//! component's SHA-256, the engine's compatibility hash (compiler, settings, target)
//! and gtc's version; a later start with the same bytes loads the artifact instead
//! of compiling. `gtc bundle compile` fills the cache ahead of time (an image build
//! ships it); `gtc serve` uses it by default.
//!
//! An artifact is native code that is run without further checks, so the cache
//! directory is the operator's, never the bundle's: its location comes from the
//! command line or the environment, and a bundle directory is never searched for
//! precompiled files. A corrupt, truncated or incompatible artifact is compiled
//! again and replaced.
//!
//! Location: `--compile-cache DIR` or `GTC_COMPILE_CACHE`, else
//! `$XDG_CACHE_HOME/gtc/components`, else `$HOME/.cache/gtc/components`;
//! `--no-compile-cache` turns it off. With none of these variables set (a pod
//! with a bare environment), compilation happens at every start and a log line
//! says so.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled artifacts live, if anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheSetting {
    /// Use this directory (created if missing).
    Dir(PathBuf),
    /// Compile at every start.
    Off,
}

impl CacheSetting {
    /// The operator's choice: an explicit directory, the switch that turns the cache
    /// off, or the default location derived from `var` (the process environment in
    /// production, a map in tests).
    pub fn choose(
        explicit: Option<PathBuf>,
        disabled: bool,
        var: impl Fn(&str) -> Option<String>,
    ) -> Self {
        if disabled {
            return Self::Off;
        }
        if let Some(dir) = explicit {
            return Self::Dir(dir);
        }
        let non_empty = |name: &str| var(name).filter(|value| !value.is_empty());
        if let Some(base) = non_empty("XDG_CACHE_HOME") {
            return Self::Dir(Path::new(&base).join("gtc").join("components"));
        }
        if let Some(home) = non_empty("HOME") {
            return Self::Dir(Path::new(&home).join(".cache/gtc/components"));
        }
        Self::Off
    }

    pub fn dir(&self) -> Option<&Path> {
        match self {
            Self::Dir(dir) => Some(dir),
            Self::Off => None,
        }
    }
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Mapped from the cache.
    Cached,
    /// Compiled now (and stored, when a cache is set and writable).
    Compiled { stored: bool },
    /// The same bytes were already loaded for another bundle of this process: that
    /// compiled copy is shared (one copy of the code in memory).
    Shared,
}

/// The components this process has loaded, by the SHA-256 of their bytes, so that
/// a component several bundles use is compiled (or read from the cache) once and
/// its code is in memory once, whatever the number of bundles.
#[derive(Default)]
pub struct LoadedComponents {
    by_digest: std::sync::Mutex<std::collections::HashMap<[u8; 32], (Component, String)>>,
}

impl LoadedComponents {
    /// Distinct components loaded so far.
    pub fn len(&self) -> usize {
        self.by_digest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A loaded component and what it took.
pub struct Loaded {
    pub component: Component,
    pub origin: Origin,
    pub elapsed: Duration,
    /// The component file's size in bytes.
    pub size: u64,
    /// The artifact's path in the cache, when a cache is set.
    pub artifact: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{0}")]
    Compile(String),
}

/// The cache key of the component whose SHA-256 is `digest`, for `engine`: a
/// file name (the same as before: the first 16 bytes of the digest, in hex).
fn artifact_name(engine: &Engine, digest: &[u8; 32]) -> String {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    env!("CARGO_PKG_VERSION").hash(&mut engine_hash);
    let digest: String = digest[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("{digest}-{:016x}.cwasm", engine_hash.finish())
}

/// Loads the component at `path` for `bundle`: from the cache when it holds an
/// artifact for these bytes and this engine, else by compiling it (and storing the
/// artifact). Logs what it did and how long it took, so a long first compile is
/// never mistaken for a hang.
pub fn load(
    engine: &Engine,
    path: &Path,
    cache: &CacheSetting,
    bundle: &str,
    loaded: &LoadedComponents,
) -> Result<Loaded, CompileError> {
    let started = Instant::now();
    let bytes = std::fs::read(path).map_err(|error| CompileError::Read {
        path: path.to_path_buf(),
        reason: error.to_string(),
    })?;
    let size = bytes.len() as u64;
    // One hash of the bytes: the in-memory key and the cache file's name.
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    let artifact = cache
        .dir()
        .map(|dir| dir.join(artifact_name(engine, &digest)));
    let shared = loaded
        .by_digest
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&digest)
        .cloned();
    if let Some((component, first)) = shared {
        tracing::info!(
            bundle,
            component = %path.display(),
            shared_with = %first,
            "bundle component already loaded for another bundle: one compiled copy, shared"
        );
        return Ok(Loaded {
            component,
            origin: Origin::Shared,
            elapsed: started.elapsed(),
            size,
            artifact,
        });
    }
    let remember = |component: &Component| {
        loaded
            .by_digest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest, (component.clone(), bundle.to_string()));
    };
    if let Some(artifact) = artifact.as_deref().filter(|a| a.is_file()) {
        // Read into memory rather than mapped: a file truncated or rewritten in
        // place later (by hand, by another tool) must not fault a running worker.
        let loaded = std::fs::read(artifact)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                // SAFETY: the artifact was written by `Component::serialize` of this
                // engine configuration into the operator's cache directory (see the
                // module docs: bundles cannot place files there); wasmtime still checks
                // its header and engine compatibility and fails cleanly if they differ.
                unsafe { Component::deserialize(engine, &bytes) }.map_err(|e| format!("{e:#}"))
            });
        match loaded {
            Ok(component) => {
                remember(&component);
                let elapsed = started.elapsed();
                tracing::info!(
                    bundle,
                    component = %path.display(),
                    size_mib = format!("{:.1}", size as f64 / (1 << 20) as f64),
                    elapsed_ms = elapsed.as_millis() as u64,
                    "bundle component loaded from the compile cache"
                );
                return Ok(Loaded {
                    component,
                    origin: Origin::Cached,
                    elapsed,
                    size,
                    artifact: Some(artifact.to_path_buf()),
                });
            }
            Err(error) => tracing::warn!(
                bundle,
                artifact = %artifact.display(),
                "compiled artifact unusable ({error}); compiling again"
            ),
        }
    }
    tracing::info!(
        bundle,
        component = %path.display(),
        size_mib = format!("{:.1}", size as f64 / (1 << 20) as f64),
        "compiling bundle component (seconds for a large one; later starts use the compile cache{})",
        if artifact.is_some() { "" } else { ", which is off" }
    );
    let component = Component::new(engine, &bytes)
        .map_err(|error| CompileError::Compile(format!("{error:#}")))?;
    remember(&component);
    let stored = match &artifact {
        Some(artifact) => store(&component, artifact),
        None => false,
    };
    let elapsed = started.elapsed();
    tracing::info!(
        bundle,
        component = %path.display(),
        elapsed_ms = elapsed.as_millis() as u64,
        stored,
        "bundle component compiled"
    );
    Ok(Loaded {
        component,
        origin: Origin::Compiled { stored },
        elapsed,
        size,
        artifact,
    })
}

/// Writes the artifact next to its final name and renames it into place, so a
/// concurrent start never reads a half-written file. A failure is logged, not fatal:
/// the worker runs, it just compiles again next time.
fn store(component: &Component, artifact: &Path) -> bool {
    let attempt = || -> Result<(), String> {
        let bytes = component.serialize().map_err(|e| format!("{e:#}"))?;
        let dir = artifact.parent().ok_or("the artifact has no directory")?;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let temp = artifact.with_extension(format!("tmp-{}", std::process::id()));
        let written = std::fs::write(&temp, &bytes).and_then(|()| std::fs::rename(&temp, artifact));
        if let Err(error) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(error.to_string());
        }
        Ok(())
    };
    match attempt() {
        Ok(()) => true,
        Err(why) => {
            tracing::warn!(
                artifact = %artifact.display(),
                "cannot store the compiled component in the compile cache: {why}"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_location_follows_xdg_then_home_and_can_be_turned_off() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            CacheSetting::choose(
                None,
                false,
                env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])
            ),
            CacheSetting::Dir("/x/gtc/components".into())
        );
        assert_eq!(
            CacheSetting::choose(None, false, env(&[("HOME", "/h")])),
            CacheSetting::Dir("/h/.cache/gtc/components".into())
        );
        assert_eq!(
            CacheSetting::choose(None, false, env(&[("HOME", "")])),
            CacheSetting::Off
        );
        assert_eq!(
            CacheSetting::choose(Some("/c".into()), false, env(&[("HOME", "/h")])),
            CacheSetting::Dir("/c".into())
        );
        assert_eq!(
            CacheSetting::choose(Some("/c".into()), true, env(&[("HOME", "/h")])),
            CacheSetting::Off
        );
    }

    #[test]
    fn a_cached_artifact_is_used_and_a_corrupt_one_is_replaced() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let wasm = Path::new(env!("GTC_GUESTS_DIR")).join("hello.wasm");
        let cache = CacheSetting::Dir(dir.path().join("cache"));
        // Each load as a new process would do it (nothing loaded yet).
        let fresh = LoadedComponents::default;
        let first = load(&engine, &wasm, &cache, "hello", &fresh()).unwrap();
        assert_eq!(first.origin, Origin::Compiled { stored: true });
        let artifact = first.artifact.clone().unwrap();
        assert!(artifact.is_file());
        let second = load(&engine, &wasm, &cache, "hello", &fresh()).unwrap();
        assert_eq!(second.origin, Origin::Cached);
        std::fs::write(&artifact, b"not an artifact").unwrap();
        let third = load(&engine, &wasm, &cache, "hello", &fresh()).unwrap();
        assert_eq!(third.origin, Origin::Compiled { stored: true });
        assert_eq!(
            load(&engine, &wasm, &cache, "hello", &fresh())
                .unwrap()
                .origin,
            Origin::Cached
        );
        // Other bytes, another key.
        let other = dir.path().join("hello-copy.wasm");
        let mut bytes = std::fs::read(&wasm).unwrap();
        bytes.extend_from_slice(&[0, 4, 3, b'n', b'o', b'p']); // an empty custom section
        std::fs::write(&other, bytes).unwrap();
        let copy = load(&engine, &other, &cache, "hello", &fresh()).unwrap();
        assert_ne!(copy.artifact, first.artifact);
    }

    #[test]
    fn one_process_loads_identical_bytes_once() {
        let engine = Engine::default();
        let wasm = Path::new(env!("GTC_GUESTS_DIR")).join("hello.wasm");
        let loaded = LoadedComponents::default();
        let first = load(&engine, &wasm, &CacheSetting::Off, "a", &loaded).unwrap();
        assert_eq!(first.origin, Origin::Compiled { stored: false });
        let second = load(&engine, &wasm, &CacheSetting::Off, "b", &loaded).unwrap();
        assert_eq!(second.origin, Origin::Shared);
        assert_eq!(loaded.len(), 1);
        let probe = Path::new(env!("GTC_GUESTS_DIR")).join("probe.wasm");
        let other = load(&engine, &probe, &CacheSetting::Off, "c", &loaded).unwrap();
        assert_eq!(other.origin, Origin::Compiled { stored: false });
        assert_eq!(loaded.len(), 2);
    }
}
