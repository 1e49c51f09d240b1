//! The bodies of `gtc bundle inspect | check | compile` and `gtc new`: what each
//! prints, and the error that decides its exit status. The host that compiles and
//! links (`serve::runtime::Runtime`) is handed in as a [`ComponentHost`].

use crate::bundle::check::{self, ComponentHost};
use crate::bundle::compile_cache::Origin;
use crate::bundle::fleet::{self, Member};
use crate::bundle::manifest::{BundleSpec, Manifest};
use crate::bundle::ownership::{self, Claims};
use crate::bundle::scaffold;
use std::path::{Path, PathBuf};

/// `gtc bundle check` or `compile` cannot do its work (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum BundleCommandError {
    #[error("{0} bundle(s) would not start; see the errors above")]
    WouldNotStart(usize),
    #[error("these bundles would not start together; see the errors above")]
    WouldNotStartTogether,
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
pub fn inspect(dir: &Path) -> anyhow::Result<String> {
    let manifest = Manifest::load(dir)?;
    Ok(manifest.review())
}

/// `gtc bundle check DIR[=TEAM]...`: a report per bundle, then the bundles as one
/// set (the rules of [`fleet::check`] and of sealed ownership, which `gtc serve`
/// runs too; a sealed secret claimed by two bundles is refused unless `shared`),
/// for the caller to write to stdout; fails when any bundle, or the set, would not
/// start.
pub fn check_all(
    specs: &[BundleSpec],
    host: &impl ComponentHost,
    shared: &[String],
) -> (String, anyhow::Result<()>) {
    use std::fmt::Write as _;
    let mut failed = 0;
    let mut reports = Vec::new();
    let mut text = String::new();
    for spec in specs {
        let report = check::check(&spec.dir, host);
        let _ = write!(text, "== {}\n{}", spec.dir.display(), report.render());
        if !report.ok() {
            failed += 1;
        }
        reports.push(report);
    }
    let members: Vec<Member<'_>> = specs
        .iter()
        .zip(&reports)
        .filter_map(|(spec, report)| {
            report.manifest.as_ref().map(|manifest| Member {
                manifest,
                dir: &spec.dir,
                team: &spec.team,
            })
        })
        .collect();
    // A bundle given without `=TEAM` may be deployed in any team: its relative
    // names are compared as if in any team (what could collide is reported).
    let claims: Vec<Claims> = members
        .iter()
        .map(|member| {
            let team = match member.team {
                crate::secrets::scope::TeamSlot::TenantWide => None,
                team => Some(team),
            };
            Claims::of(member.manifest, check::bundle_dir(member.dir), team)
        })
        .collect();
    let (conflicts, sharing) = ownership::conflicts(&claims, shared);
    let mut together: Vec<String> = fleet::check(&members)
        .iter()
        .map(ToString::to_string)
        .collect();
    together.extend(conflicts.iter().map(ToString::to_string));
    if specs.len() > 1 || !together.is_empty() {
        let _ = writeln!(text, "== the {} bundle(s) together", specs.len());
        for seal in &sharing {
            let _ = writeln!(
                text,
                "warning: sealed secret {} is shared by {} (--share-sealed)",
                seal.key,
                seal.bundles.join(", ")
            );
        }
        for problem in &together {
            let _ = writeln!(text, "error: {problem}");
        }
        let _ = writeln!(
            text,
            "{}: {} error(s), {} warning(s)",
            if together.is_empty() { "ok" } else { "FAILED" },
            together.len(),
            sharing.len()
        );
    }
    let outcome = if failed > 0 {
        Err(BundleCommandError::WouldNotStart(failed).into())
    } else if !together.is_empty() {
        Err(BundleCommandError::WouldNotStartTogether.into())
    } else {
        Ok(())
    };
    (text, outcome)
}

/// `gtc bundle compile DIR...`: fills the compile cache `host` was built with;
/// a line per bundle (for the caller to write to stdout), then the outcome.
pub fn compile_all(dirs: &[PathBuf], host: &impl ComponentHost) -> (String, anyhow::Result<()>) {
    let mut text = String::new();
    let outcome = compile_into(dirs, host, &mut text);
    (text, outcome)
}

fn compile_into(
    dirs: &[PathBuf],
    host: &impl ComponentHost,
    text: &mut String,
) -> anyhow::Result<()> {
    use std::fmt::Write as _;
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
        let _ = writeln!(
            text,
            "{}: {:.1} MiB component, {} in {:.2} s -> {}",
            manifest.id,
            loaded.size as f64 / (1 << 20) as f64,
            match loaded.origin {
                Origin::Cached | Origin::Shared => "already compiled",
                Origin::Compiled { .. } => "compiled",
            },
            loaded.elapsed.as_secs_f64(),
            stored.display()
        );
    }
    Ok(())
}

/// `gtc new`: writes the bundle; returns what to run next, for the caller to
/// write to stdout.
pub fn new(lang: scaffold::Language, name: &str, dir: Option<&Path>) -> anyhow::Result<String> {
    let created = scaffold::create(lang, name, dir)?;
    let mut text = format!(
        "created {} ({}, {} files); next, in that directory:\n",
        created.dir.display(),
        created.description,
        created.files
    );
    for line in created.next_steps() {
        text.push_str(&format!("  {line}\n"));
    }
    Ok(text)
}
