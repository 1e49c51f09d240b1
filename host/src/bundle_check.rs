//! `gtc bundle check`: everything `gtc serve` would refuse about a bundle, and what
//! it would only warn about, said before a worker is deployed.
//!
//! The checks are those of a start (the same manifest parser, file check, compiler,
//! linker and operator maxima), run without a backend, a scope or a listener, and
//! reported all at once rather than stopping at the first: an author fixes a bundle
//! in one round. Every problem names the field or import at fault and what to do.

use crate::bundle::{Limits, MANIFEST_FILE, Manifest};
use crate::compile_cache::Origin;
use crate::component_check::{self, ImportStatus};
use crate::runtime::Runtime;
use crate::scope::RequestedName;
use std::fmt::Write as _;
use std::path::Path;

/// The outcome of checking one bundle directory.
#[derive(Debug, Default)]
pub struct Report {
    /// What was found, line by line, for the author to read.
    pub lines: Vec<String>,
    /// What stops `gtc serve` (exit 2).
    pub errors: Vec<String>,
    /// What `gtc serve` accepts but the author should know.
    pub warnings: Vec<String>,
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

/// Checks the bundle in `dir` (or the manifest file `dir` names) with `runtime`'s
/// engine, linker and compile cache.
pub fn check(path: &Path, runtime: &Runtime) -> Report {
    let mut report = Report::default();
    let dir = if path.is_file() {
        path.parent().unwrap_or(Path::new("."))
    } else {
        path
    };
    let manifest = match Manifest::load(dir) {
        Ok(manifest) => manifest,
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
    check_limits(&manifest, &runtime.config().maxima, &mut report);
    for authority in &manifest.egress_allow {
        if let Some(why) = runtime.config().egress_guard.refuses_literal(authority) {
            report.warnings.push(format!(
                "egress.allow {authority}: the host refuses this destination ({why}); \
                 requests to it will fail"
            ));
        }
    }
    check_component(&manifest, runtime, &mut report);
    report.lines.push(manifest.review().trim_end().to_string());
    report
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

fn check_component(manifest: &Manifest, runtime: &Runtime, report: &mut Report) {
    let path = &manifest.component;
    // The start's own first step (file check, then compile or the cache), so the
    // messages are those `gtc serve` would print.
    let loaded = match runtime.compile(manifest) {
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
            Origin::Compiled { .. } => "compiled",
        },
        loaded.elapsed.as_secs_f64(),
        match runtime.config().compile_cache.dir() {
            Some(dir) => format!(" (compile cache {})", dir.display()),
            None => " (compile cache off)".to_string(),
        }
    ));
    let (imports, exports) = component_check::interfaces(runtime.engine(), &loaded.component);
    report.lines.push(format!("imports ({}):", imports.len()));
    let mut missing = false;
    for import in &imports {
        match component_check::classify(import) {
            ImportStatus::Provided => report.lines.push(format!("  ok       {import}")),
            ImportStatus::Sandboxed(_) => report.lines.push(format!("  sandbox  {import}")),
            ImportStatus::Missing(hint) => {
                missing = true;
                report.lines.push(format!("  MISSING  {import}"));
                report.errors.push(format!(
                    "import {import} is not provided by this host: {hint}"
                ));
            }
        }
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
    } else if !missing && let Err(reason) = runtime.link_check(&loaded.component) {
        report
            .errors
            .push(format!("the component cannot be linked: {reason}"));
    }
}
