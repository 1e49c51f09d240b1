//! The bodies of `gtc bundle inspect | check | compile` and `gtc new`: what each
//! prints, and the error that decides its exit status. The host that compiles and
//! links (`serve::runtime::Runtime`) is handed in as a [`ComponentHost`].

use crate::bundle::check::{self, ComponentHost};
use crate::bundle::compile_cache::Origin;
use crate::bundle::manifest::Manifest;
use crate::bundle::ownership::{self, Claims};
use crate::bundle::scaffold;
use std::path::{Path, PathBuf};

/// `gtc bundle check` or `compile` cannot do its work (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum BundleCommandError {
    #[error("{0} bundle(s) would not start; see the errors above")]
    WouldNotStart(usize),
    #[error(
        "gtc bundle compile needs a compile cache: pass --compile-cache DIR \
         (or set GTC_COMPILE_CACHE, XDG_CACHE_HOME or HOME)"
    )]
    NoCache,
    /// The artifact could not be written (exit status 1: the machine, not the bundle).
    #[error("bundle {0}: compiled, but the artifact could not be stored (see the log)")]
    NotStored(String),
}

impl BundleCommandError {
    /// Whether the operator's input is at fault (exit status 2).
    pub fn is_configuration(&self) -> bool {
        !matches!(self, Self::NotStored(_))
    }
}

/// `gtc bundle inspect DIR`: the manifest as the host reads it.
pub fn inspect(dir: &Path) -> anyhow::Result<()> {
    let manifest = Manifest::load(dir)?;
    print!("{}", manifest.review());
    Ok(())
}

/// `gtc bundle check DIR...`: a report per bundle, then what the bundles would
/// refuse together (a sealed secret claimed by two of them, unless `shared`);
/// fails when any would not start.
pub fn check_all(
    dirs: &[PathBuf],
    host: &impl ComponentHost,
    shared: &[String],
) -> anyhow::Result<()> {
    let mut failed = 0;
    let mut claims = Vec::new();
    for dir in dirs {
        let report = check::check(dir, host);
        println!("== {}", dir.display());
        print!("{}", report.render());
        if !report.ok() {
            failed += 1;
        }
        let dir = check::bundle_dir(dir);
        if let Ok(manifest) = Manifest::load(dir) {
            claims.push(Claims::of(&manifest, dir, None));
        }
    }
    if dirs.len() > 1 {
        let (conflicts, sharing) = ownership::conflicts(&claims, shared);
        println!("== across the {} bundles", dirs.len());
        for shared in &sharing {
            println!(
                "warning: sealed secret {} is shared by {} (--share-sealed)",
                shared.key,
                shared.bundles.join(", ")
            );
        }
        for conflict in &conflicts {
            println!("error: {conflict}");
        }
        println!(
            "{}: {} error(s), {} warning(s)",
            if conflicts.is_empty() { "ok" } else { "FAILED" },
            conflicts.len(),
            sharing.len()
        );
        failed += conflicts.len();
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(BundleCommandError::WouldNotStart(failed).into())
    }
}

/// `gtc bundle compile DIR...`: fills the compile cache `host` was built with.
pub fn compile_all(dirs: &[PathBuf], host: &impl ComponentHost) -> anyhow::Result<()> {
    if host.compile_cache_dir().is_none() {
        return Err(BundleCommandError::NoCache.into());
    }
    for dir in dirs {
        let manifest = Manifest::load(dir)?;
        let loaded = host.compile(&manifest)?;
        let stored = match (loaded.origin, &loaded.artifact) {
            (Origin::Compiled { stored: false }, _) | (_, None) => {
                return Err(BundleCommandError::NotStored(manifest.id.to_string()).into());
            }
            (_, Some(artifact)) => artifact.clone(),
        };
        println!(
            "{}: {:.1} MiB component, {} in {:.2} s -> {}",
            manifest.id,
            loaded.size as f64 / (1 << 20) as f64,
            match loaded.origin {
                Origin::Cached => "already compiled",
                Origin::Compiled { .. } => "compiled",
            },
            loaded.elapsed.as_secs_f64(),
            stored.display()
        );
    }
    Ok(())
}

/// `gtc new`: writes the bundle and says what to run next.
pub fn new(lang: scaffold::Language, name: &str, dir: Option<&Path>) -> anyhow::Result<()> {
    let created = scaffold::create(lang, name, dir)?;
    println!(
        "created {} ({}, {} files); next, in that directory:",
        created.dir.display(),
        created.description,
        created.files
    );
    for line in created.next_steps() {
        println!("  {line}");
    }
    Ok(())
}
