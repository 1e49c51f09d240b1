//! `gtc bundle check`: everything `gtc serve` would refuse about a bundle, and what
//! it would only warn about, said before a worker is deployed.
//!
//! The checks are those of a start (the same manifest parser, file check, compiler,
//! linker and operator maxima), run without a backend, a scope or a listener, and
//! reported all at once rather than stopping at the first: an author fixes a bundle
//! in one round. Every problem names the field or import at fault and what to do.
//!
//! Rules across the bundles given together (routes, ids) are `fleet`'s, run by
//! `commands::check_all` over every report's manifest, as `gtc serve` runs them.
//!
//! The engine, linker and operator settings are the request path's
//! (`serve::runtime::Runtime`); this wing sits below it and sees them through the
//! [`ComponentHost`] trait, so the checks are the start's own, not a copy.

use crate::bundle::authority::Authority;
use crate::bundle::compile_cache::{Loaded, Origin};
use crate::bundle::component_check::{self, ImportStatus};
use crate::bundle::manifest::{BundleError, Limits, MANIFEST_FILE, Manifest};
use crate::secrets::scope::RequestedName;
use std::fmt::Write as _;
use std::path::Path;
use wasmtime::component::Component;

/// What checking a bundle needs of the host that would run it: the same engine,
/// linker, compile cache and operator settings as a start.
pub trait ComponentHost {
    /// Why a component could not be compiled, as a start would report it.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The file check and compile (or compile-cache load) a start does first.
    fn compile(&self, manifest: &Manifest) -> Result<Loaded, Self::Error>;
    /// Links `component` against the host's imports and checks its export, as a
    /// start does.
    fn link_check(&self, component: &Component) -> Result<(), LinkFailure>;
    /// The engine components are compiled for.
    fn engine(&self) -> &wasmtime::Engine;
    /// The operator's maxima for what a manifest may ask.
    fn maxima(&self) -> &Limits;
    /// Why the operator's guard refuses `authority` as written, if it does.
    fn refuses_destination(&self, authority: &Authority) -> Option<&'static str>;
    /// The compile cache's directory, when one is set.
    fn compile_cache_dir(&self) -> Option<&Path>;
}

/// Why a component does not link, as the host's linker says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkFailure {
    /// An import the linker cannot satisfy: its name, when the linker names it,
    /// and the linker's reason (e.g. "instance export `get` has the wrong type").
    /// The linker stops at the first such import.
    Import {
        import: Option<String>,
        reason: String,
    },
    /// Every import links; the export is not what the host calls.
    Export(String),
}

/// The outcome of checking one bundle directory.
#[derive(Debug, Default)]
pub struct Report {
    /// What was found, line by line, for the author to read.
    pub lines: Vec<String>,
    /// What stops `gtc serve` (exit 2).
    pub errors: Vec<String>,
    /// What `gtc serve` accepts but the author should know.
    pub warnings: Vec<String>,
    /// The manifest, when it parsed: the checks across bundles need it.
    pub manifest: Option<Manifest>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// The report as printed by `gtc bundle check`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            let _ = writeln!(out, "{line}");
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        for error in &self.errors {
            let _ = writeln!(out, "error: {error}");
        }
        let _ = writeln!(
            out,
            "{}: {} error(s), {} warning(s)",
            if self.ok() { "ok" } else { "FAILED" },
            self.errors.len(),
            self.warnings.len()
        );
        out
    }
}

/// Checks the bundle in `dir` (or the manifest file `dir` names) with `host`'s
/// engine, linker and compile cache.
pub fn check(path: &Path, host: &impl ComponentHost) -> Report {
    let mut report = Report::default();
    let dir = bundle_dir(path);
    let manifest = match Manifest::load(dir) {
        Ok(manifest) => manifest,
        Err(BundleError::Invalid { path, problems }) => {
            // Every problem on its own line, each naming its field.
            for problem in problems {
                report.errors.push(format!("{}: {problem}", path.display()));
            }
            return report;
        }
        Err(error) => {
            report.errors.push(error.to_string());
            return report;
        }
    };
    report.lines.push(format!(
        "manifest {}: valid",
        dir.join(MANIFEST_FILE).display()
    ));
    check_declarations(&manifest, &mut report);
    report.warnings.extend(manifest.warnings());
    check_limits(&manifest, host.maxima(), &mut report);
    for authority in &manifest.egress_allow {
        if let Some(why) = host.refuses_destination(authority) {
            report.warnings.push(format!(
                "egress.allow {authority}: the host refuses this destination ({why}); \
                 requests to it will fail"
            ));
        }
    }
    check_component(&manifest, host, &mut report);
    report.lines.push(manifest.review().trim_end().to_string());
    report.manifest = Some(manifest);
    report
}

/// The imports through which a guest reads secrets with `get`.
const GET_IMPORTS: [&str; 2] = [
    "greentic:secrets/secrets@",
    "greentic:secrets-store/secrets-store@",
];

/// What a component's code can only have denied, given its manifest: it imports
/// a way to read secrets (`get`) while the manifest declares no secret, or
/// `sealed` while it declares no sealed secret, so every such call is refused. `gtc bundle check` reports these as warnings and `gtc serve`
/// logs them at start: one list for both.
pub fn only_denied(manifest: &Manifest, imports: &[String]) -> Vec<String> {
    let mut warnings = Vec::new();
    let declares_any = manifest.declared_names().next().is_some();
    for import in imports {
        if !declares_any && GET_IMPORTS.iter().any(|prefix| import.starts_with(prefix)) {
            warnings.push(format!(
                "secrets: the component imports {import} but bundle.toml declares no \
                 secret, so every get it makes will be denied (audit reason \
                 \"undeclared\"): list the names it reads in `secrets = [...]` (or \
                 `[secrets] read`)"
            ));
        }
        if manifest.sealed.is_empty() && import.starts_with("greentic:secrets/sealed@") {
            warnings.push(format!(
                "secrets.sealed: the component imports {import} but bundle.toml declares \
                 no sealed secret, so every verify-hmac-sha256 it makes will be denied: \
                 declare the key under [[secrets.sealed]]"
            ));
        }
    }
    warnings
}

/// The bundle directory `path` names: itself, or the directory of a manifest file.
pub fn bundle_dir(path: &Path) -> &Path {
    if path.is_file() {
        path.parent().unwrap_or(Path::new("."))
    } else {
        path
    }
}

/// Declared names must be valid names (the grammar `secrets.get` parses); the
/// scope itself is the operator's and is checked when the bundle is served.
fn check_declarations(manifest: &Manifest, report: &mut Report) {
    for name in manifest.declared_names() {
        if let Err(error) = RequestedName::parse(name) {
            report.errors.push(format!(
                "secrets: declared name {name:?} is invalid: {error}"
            ));
        }
    }
}

fn check_limits(manifest: &Manifest, maxima: &Limits, report: &mut Report) {
    let (_, capped) = manifest.limits.capped(maxima);
    for what in capped {
        report.warnings.push(format!(
            "limits: {what} (the operator's default maximum; `gtc serve --max-*` raises it)"
        ));
    }
}

fn check_component(manifest: &Manifest, host: &impl ComponentHost, report: &mut Report) {
    let path = &manifest.component;
    // The start's own first step (file check, then compile or the cache), so the
    // messages are those `gtc serve` would print.
    let loaded = match host.compile(manifest) {
        Ok(loaded) => loaded,
        Err(error) => {
            report.errors.push(error.to_string());
            return;
        }
    };
    report.lines.push(format!(
        "component {}: {:.1} MiB, {} in {:.2} s{}",
        path.display(),
        loaded.size as f64 / (1 << 20) as f64,
        match loaded.origin {
            Origin::Cached => "loaded from the compile cache",
            Origin::Shared => "shared with a bundle checked before it",
            Origin::Compiled { .. } => "compiled",
        },
        loaded.elapsed.as_secs_f64(),
        match host.compile_cache_dir() {
            Some(dir) => format!(" (compile cache {})", dir.display()),
            None => " (compile cache off)".to_string(),
        }
    ));
    let (imports, exports) = component_check::interfaces(host.engine(), &loaded.component);
    report.warnings.extend(only_denied(manifest, &imports));
    // The link check decides what an import's line says: an import is `ok` only
    // when the linker accepted it, so the listing and the link check never
    // disagree. The linker stops at the first import it cannot satisfy, so when
    // it fails the other provided imports are `unchecked`, not `ok`.
    let link = host.link_check(&loaded.component);
    let failed_import = match &link {
        Err(LinkFailure::Import { import, .. }) => Some(import.as_deref()),
        _ => None,
    };
    report.lines.push(format!("imports ({}):", imports.len()));
    let mut unchecked = false;
    for import in &imports {
        match component_check::classify(import) {
            ImportStatus::Missing(hint) => {
                report.lines.push(format!("  MISSING  {import}"));
                report.errors.push(format!(
                    "import {import} is not provided by this host: {hint}"
                ));
            }
            _ if failed_import == Some(Some(import.as_str())) => {
                report.lines.push(format!("  MISMATCH {import}"));
                if let Err(LinkFailure::Import { reason, .. }) = &link {
                    report.errors.push(format!(
                        "import {import} does not match what this host provides: {reason} — \
                         rebuild against the WIT the host links (the project's wit/ \
                         directory; greentic:secrets-store exactly as Greentic publishes it)"
                    ));
                }
            }
            _ if failed_import.is_some() => {
                unchecked = true;
                report.lines.push(format!("  unchecked {import}"));
            }
            ImportStatus::Provided => report.lines.push(format!("  ok       {import}")),
            ImportStatus::Sandboxed(_) => report.lines.push(format!("  sandbox  {import}")),
        }
    }
    if unchecked {
        report.lines.push(
            "  (the link check stops at the first import it cannot satisfy: the imports \
             marked `unchecked` are checked once that one is fixed)"
                .to_string(),
        );
    }
    if let Err(LinkFailure::Import {
        import: None,
        reason,
    }) = &link
    {
        report
            .errors
            .push(format!("the component cannot be linked: {reason}"));
    }
    for (why, names) in component_check::sandboxed(&imports) {
        report
            .warnings
            .push(format!("imports {}: {why}", names.join(", ")));
    }
    report.lines.push(format!("exports ({}):", exports.len()));
    for export in &exports {
        report.lines.push(format!("  {export}"));
    }
    if !exports
        .iter()
        .any(|e| component_check::is_required_export(e))
    {
        report.errors.push(format!(
            "the component does not export {}: a bundle is a wasi:http handler \
             (world greentic:secrets/bot, or wasi:http/proxy)",
            component_check::REQUIRED_EXPORT
        ));
    } else if let Err(LinkFailure::Export(reason)) = &link {
        report
            .errors
            .push(format!("the component cannot be linked: {reason}"));
    }
}
