//! Bundles: a directory holding a manifest (`bundle.toml`) and a component.
//!
//! The manifest is the bundle author's: its id, its component, the HTTP routes it
//! serves, the secrets it declares it needs (checked by `/readyz`), its outgoing
//! HTTP allowlist and its resource limits. It has no say over its scope: the team is
//! assigned by the operator when the bundle is deployed (`gtc serve --bundle
//! DIR=TEAM`), env and tenant come from the pod.
//!
//! ```toml
//! id = "webchat-bot"
//! component = "webchat_bot.wasm"      # relative to the manifest
//! routes = ["/webhook"]               # path prefixes
//! secrets = ["webhook-secret"]
//! [egress]
//! allow = ["api.example.com:443"]     # host:port pairs; empty = no outgoing HTTP
//! [limits]
//! memory_mib = 64
//! timeout_ms = 5000
//! response_mib = 16
//! [instances]                         # optional: reuse an instance (see InstanceReuse)
//! reuse = 1000                        # requests per instance (1: fresh, the default)
//! idle_timeout_ms = 10000
//! max_age_s = 30
//! ```
//!
//! A bundle with sealed secrets (values the host uses for it but `get` never
//! returns) writes its readable names under `[secrets] read` instead, because TOML
//! cannot make `secrets` both a list and a table:
//!
//! ```toml
//! [secrets]
//! read = ["settings"]
//! [[secrets.sealed]]
//! name = "telegram/bot-token"         # resolved like `get` (team, then `_`)
//! to = ["api.telegram.org:443"]       # where it may travel; each also in [egress].allow
//! inject = "path:/bot{}/"             # the one place it travels in (see below)
//! [[secrets.sealed]]
//! name = "webhook-secret"             # no `to`: signature checks only
//! ```
//!
//! `inject` binds the value's place in a request, as an outgoing-credential
//! injector does, so the guest cannot choose a place the destination stores and
//! shows back (a query parameter of a message API, another header):
//! `header:NAME=FORMAT` (the header's whole value is FORMAT with `{}` replaced,
//! e.g. `header:authorization=Bearer {}`) or `path:PREFIX` (the path begins with
//! PREFIX, e.g. `/bot{}/`). A sealed secret with a `to` and no `inject` gets the
//! migration default [`DEFAULT_INJECT`] and a warning.

use crate::secrets::scope::{Segment, TeamSlot};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const MANIFEST_FILE: &str = "bundle.toml";
const MAX_MEMORY_MIB: u64 = 4096;
/// The largest memory any bundle may ask for; the pooling allocator is sized for it.
pub const MAX_MEMORY_BYTES: usize = (MAX_MEMORY_MIB as usize) << 20;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read bundle manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every problem found in the manifest, each naming its field.
    #[error("bundle manifest {path} is invalid: {}", .problems.join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("bad --bundle argument {arg:?}: {reason}")]
    Argument { arg: String, reason: String },
}

/// The top-level fields of `bundle.toml`, in the order the README lists them.
const FIELDS: [&str; 7] = [
    "id",
    "component",
    "routes",
    "secrets",
    "egress",
    "limits",
    "instances",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsTable {
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    sealed: Vec<SealedFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedFile {
    name: String,
    #[serde(default)]
    to: Vec<String>,
    inject: Option<String>,
}

/// A sealed secret: a name the guest may use only as a placeholder in outgoing
/// requests to `to`, in the one place `inject` names (and for signature checks),
/// never read. An empty `to` means it travels nowhere: signature checks only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub name: String,
    pub to: Vec<crate::bundle::authority::Authority>,
    /// Where the value goes in a request (`None` when it travels nowhere).
    pub inject: Option<Placement>,
    /// The manifest named no place: [`DEFAULT_INJECT`] applies (warned about).
    pub inject_defaulted: bool,
}

/// The place an injected value is bound to for existing manifests that name
/// none: one header, whole value, the common API-key form. A guest can put the
/// placeholder nowhere else, which is what makes the default safe.
pub const DEFAULT_INJECT: &str = "header:authorization=Bearer {}";

/// Where a sealed value travels in a request: the text around the placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The whole value of header `name` (lower case) is `before` + value + `after`.
    Header {
        name: String,
        before: String,
        after: String,
    },
    /// The path begins with `before` + value + `after`.
    PathPrefix { before: String, after: String },
}

impl Placement {
    /// Parses `header:NAME=FORMAT` or `path:PREFIX`, each with one `{}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let split = |template: &str| -> Result<(String, String), String> {
            let (before, after) = template
                .split_once("{}")
                .ok_or("must contain `{}` where the value goes")?;
            if after.contains("{}") {
                return Err("must contain `{}` once".into());
            }
            if template.contains("{{") {
                return Err("must not contain a placeholder".into());
            }
            Ok((before.to_string(), after.to_string()))
        };
        if let Some(rest) = text.strip_prefix("header:") {
            let (name, format) = rest
                .split_once('=')
                .ok_or("header:NAME=FORMAT, e.g. header:authorization=Bearer {}")?;
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{name:?} is not a header name"))?;
            if name == http::header::HOST {
                return Err("the host header cannot carry a value".into());
            }
            if !format
                .bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
            {
                return Err("the header format must be visible ASCII".into());
            }
            let (before, after) = split(format)?;
            return Ok(Self::Header {
                name: name.as_str().to_string(),
                before,
                after,
            });
        }
        if let Some(prefix) = text.strip_prefix("path:") {
            if !prefix.starts_with('/') || prefix.contains(['?', '#', ' ', '%']) {
                return Err(
                    "path:PREFIX must start with '/' and hold no '?', '#', '%' or space, \
                     e.g. path:/bot{}/"
                        .into(),
                );
            }
            let (before, after) = split(prefix)?;
            return Ok(Self::PathPrefix { before, after });
        }
        Err("must be header:NAME=FORMAT or path:PREFIX".into())
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Header {
                name,
                before,
                after,
            } => write!(f, "header:{name}={before}{{}}{after}"),
            Self::PathPrefix { before, after } => write!(f, "path:{before}{{}}{after}"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EgressFile {
    #[serde(default)]
    allow: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    memory_mib: Option<u64>,
    timeout_ms: Option<u64>,
    response_mib: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstancesFile {
    reuse: Option<u32>,
    idle_timeout_ms: Option<u64>,
    max_age_s: Option<u64>,
}

/// Whether one instance of a bundle may serve several of its requests
/// (`[instances]`), and for how long.
///
/// Fresh instances (`requests == 1`, the default) are the sandbox's strongest
/// form: nothing a request leaves in guest memory reaches the next. A bundle
/// author who knows the component keeps no request's data in globals may opt in
/// to reuse, which skips instantiation (BENCHMARKS.md). An instance only ever
/// serves requests of its own bundle (same scope, same declared secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceReuse {
    /// Requests one instance serves before it is retired (1: a fresh instance
    /// per request).
    pub requests: u32,
    /// An idle instance is retired after this long without a request.
    pub idle_timeout: std::time::Duration,
    /// An instance is retired once this old, whatever it served (so that a value
    /// a guest keeps in memory is refreshed: the host caps it at the secrets
    /// cache's TTL).
    pub max_age: std::time::Duration,
}

impl Default for InstanceReuse {
    fn default() -> Self {
        Self {
            requests: 1,
            idle_timeout: std::time::Duration::from_secs(10),
            max_age: std::time::Duration::from_secs(30),
        }
    }
}

impl InstanceReuse {
    /// The operator's default maxima (`gtc serve --max-instance-reuse`,
    /// `--max-instance-idle`, `--max-instance-age`).
    pub const OPERATOR_DEFAULT_MAXIMA: Self = Self {
        requests: 10_000,
        idle_timeout: std::time::Duration::from_secs(60),
        max_age: std::time::Duration::from_secs(300),
    };

    /// Whether an instance serves more than one request.
    pub fn enabled(&self) -> bool {
        self.requests > 1
    }

    /// This setting within the operator's `maxima`; names what was capped (an
    /// operator maximum of one request turns reuse off without a word per bundle).
    pub fn capped(self, maxima: &InstanceReuse) -> (InstanceReuse, Vec<String>) {
        let mut capped = Vec::new();
        let mut reuse = self;
        if reuse.requests > maxima.requests {
            if maxima.requests > 1 {
                capped.push(format!(
                    "instances.reuse {} -> {}",
                    reuse.requests, maxima.requests
                ));
            }
            reuse.requests = maxima.requests.max(1);
        }
        if reuse.idle_timeout > maxima.idle_timeout {
            capped.push(format!(
                "instances.idle_timeout {:?} -> {:?}",
                reuse.idle_timeout, maxima.idle_timeout
            ));
            reuse.idle_timeout = maxima.idle_timeout;
        }
        if reuse.max_age > maxima.max_age {
            capped.push(format!(
                "instances.max_age {:?} -> {:?}",
                reuse.max_age, maxima.max_age
            ));
            reuse.max_age = maxima.max_age;
        }
        if !reuse.enabled() {
            capped.retain(|what| what.starts_with("instances.reuse"));
        }
        (reuse, capped)
    }
}

/// Default response body limit (`[limits].response_mib`).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 << 20;

/// Resource limits of one bundle's requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: usize,
    pub timeout: std::time::Duration,
    pub response_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            timeout: std::time::Duration::from_secs(5),
            response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// A parsed, validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub id: Segment,
    pub component: PathBuf,
    pub routes: Vec<String>,
    /// Names the guest may read with `get`.
    pub secrets: Vec<String>,
    /// Names the host uses on the guest's behalf; `get` never returns them.
    pub sealed: Vec<SealedSecret>,
    pub egress_allow: Vec<crate::bundle::authority::Authority>,
    pub limits: Limits,
    /// `[instances]`: whether an instance serves several requests.
    pub instances: InstanceReuse,
}

impl Manifest {
    /// Reads `dir/bundle.toml`; the component path is resolved against `dir`.
    pub fn load(dir: &Path) -> Result<Self, BundleError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| BundleError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text, dir).map_err(|problems| BundleError::Invalid { path, problems })
    }

    /// Parses manifest text; `dir` anchors the relative component path. Every
    /// problem is reported, each naming its field in the manifest's own words (a
    /// TOML syntax error alone stops the parse: nothing after it can be read).
    pub fn parse(text: &str, dir: &Path) -> Result<Self, Vec<String>> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| vec![syntax_error(&e)])?;
        let mut problems = Vec::new();
        let mut unknown: Vec<&String> = table
            .keys()
            .filter(|key| !FIELDS.contains(&key.as_str()))
            .collect();
        unknown.sort();
        for key in unknown {
            problems.push(format!(
                "unknown field `{key}` (a manifest has {})",
                FIELDS.join(", ")
            ));
        }
        let id = match table.remove("id") {
            None => {
                problems.push("id: missing (the bundle's id, e.g. id = \"webchat-bot\")".into());
                None
            }
            Some(toml::Value::String(id)) => match Segment::parse(&id) {
                Ok(id) => Some(id),
                Err(e) => {
                    problems.push(format!(
                        "id: {id:?} is not a valid bundle id ({}; it is also the default \
                         secret category)",
                        e.reason()
                    ));
                    None
                }
            },
            Some(other) => {
                problems.push(format!("id: must be a string, not {}", other.type_str()));
                None
            }
        };
        let component = match table.remove("component") {
            None => {
                problems
                    .push("component: missing (the .wasm file, relative to bundle.toml)".into());
                None
            }
            Some(toml::Value::String(path)) => Some(dir.join(path)),
            Some(other) => {
                problems.push(format!(
                    "component: must be a string (the .wasm file), not {}",
                    other.type_str()
                ));
                None
            }
        };
        let routes = match table.remove("routes").map(string_list) {
            None => {
                problems.push("routes: missing (at least one path prefix, e.g. [\"/bot\"])".into());
                Vec::new()
            }
            Some(Err(why)) => {
                problems.push(format!("routes: {why}"));
                Vec::new()
            }
            Some(Ok(routes)) => {
                if routes.is_empty() {
                    problems.push("routes: at least one route prefix is required".into());
                }
                for route in &routes {
                    if !route.starts_with('/') || route.contains(['?', '#', ' ']) {
                        problems.push(format!(
                            "routes: {route:?} must be a path prefix starting with '/'"
                        ));
                    }
                }
                routes
            }
        };
        let egress: EgressFile = section(&mut table, "egress", &mut problems);
        let limits_file: LimitsFile = section(&mut table, "limits", &mut problems);
        let instances_file: InstancesFile = section(&mut table, "instances", &mut problems);
        let mut egress_allow = Vec::new();
        for text in &egress.allow {
            match crate::bundle::authority::Authority::parse(text) {
                Ok(authority) => egress_allow.push(authority),
                Err(why) => {
                    problems.push(format!("egress.allow: {text:?} must be host:port: {why}"))
                }
            }
        }
        let (secrets, sealed_entries) = match table.remove("secrets") {
            None => (Vec::new(), Vec::new()),
            Some(toml::Value::Array(items)) => match string_list(toml::Value::Array(items)) {
                Ok(read) => (read, Vec::new()),
                Err(why) => {
                    problems.push(format!("secrets: {why}"));
                    (Vec::new(), Vec::new())
                }
            },
            Some(toml::Value::Table(t)) => match toml::Value::Table(t).try_into::<SecretsTable>() {
                Ok(table) => (table.read, table.sealed),
                Err(e) => {
                    problems.push(format!("secrets: {}", e.message().trim()));
                    (Vec::new(), Vec::new())
                }
            },
            Some(other) => {
                problems.push(format!(
                    "secrets: must be a list of names (secrets = [\"name\"]) or a table \
                     ([secrets] read = [...] with [[secrets.sealed]] entries), not {}",
                    other.type_str()
                ));
                (Vec::new(), Vec::new())
            }
        };
        let mut sealed = Vec::new();
        for entry in sealed_entries {
            match sealed_secret(entry, &egress_allow) {
                Ok(secret) => sealed.push(secret),
                Err(why) => problems.push(why),
            }
        }
        for name in &secrets {
            if sealed.iter().any(|s: &SealedSecret| &s.name == name) {
                problems.push(format!(
                    "secrets: {name:?} is both readable and sealed; a sealed secret is never readable"
                ));
            }
        }
        let mut limits = Limits::default();
        let mut bounded = |value: Option<u64>, max: u64, field: &str, note: &str| {
            value.filter(|v| {
                let ok = (1..=max).contains(v);
                if !ok {
                    problems.push(format!("{field} must be 1..={max}{note}"));
                }
                ok
            })
        };
        if let Some(mib) = bounded(
            limits_file.memory_mib,
            MAX_MEMORY_MIB,
            "limits.memory_mib",
            "",
        ) {
            limits.memory_bytes = (mib << 20) as usize;
        }
        if let Some(ms) = bounded(limits_file.timeout_ms, 600_000, "limits.timeout_ms", "") {
            limits.timeout = std::time::Duration::from_millis(ms);
        }
        if let Some(mib) = bounded(limits_file.response_mib, 1024, "limits.response_mib", "") {
            limits.response_bytes = mib << 20;
        }
        let mut instances = InstanceReuse::default();
        let reuse = instances_file.reuse.map(u64::from);
        let note = " (requests per instance; 1: fresh)";
        if let Some(requests) = bounded(reuse, 1_000_000, "instances.reuse", note) {
            instances.requests = requests as u32;
        }
        let idle = instances_file.idle_timeout_ms;
        if let Some(ms) = bounded(idle, 3_600_000, "instances.idle_timeout_ms", "") {
            instances.idle_timeout = std::time::Duration::from_millis(ms);
        }
        if let Some(seconds) = bounded(instances_file.max_age_s, 86_400, "instances.max_age_s", "")
        {
            instances.max_age = std::time::Duration::from_secs(seconds);
        }
        match (id, component) {
            (Some(id), Some(component)) if problems.is_empty() => Ok(Self {
                id,
                component,
                routes,
                secrets,
                sealed,
                egress_allow,
                limits,
                instances,
            }),
            _ => Err(problems),
        }
    }
}

/// A TOML syntax error, with its line, column and what was expected.
fn syntax_error(error: &toml::de::Error) -> String {
    error.to_string().trim().to_string()
}

/// A list of strings, or why the value is not one.
fn string_list(value: toml::Value) -> Result<Vec<String>, String> {
    let toml::Value::Array(items) = value else {
        return Err(format!(
            "must be a list of strings, not {}",
            value.type_str()
        ));
    };
    items
        .into_iter()
        .map(|item| match item {
            toml::Value::String(text) => Ok(text),
            other => Err(format!(
                "must be a list of strings; one entry is {}",
                other.type_str()
            )),
        })
        .collect()
}

/// The table `name` (absent: its defaults); a problem is named `name: ...`.
fn section<T: serde::de::DeserializeOwned + Default>(
    table: &mut toml::Table,
    name: &str,
    problems: &mut Vec<String>,
) -> T {
    match table.remove(name) {
        None => T::default(),
        Some(value @ toml::Value::Table(_)) => {
            value.try_into().unwrap_or_else(|e: toml::de::Error| {
                problems.push(format!("{name}: {}", e.message().trim()));
                T::default()
            })
        }
        Some(other) => {
            problems.push(format!(
                "{name}: must be a table ([{name}]), not {}",
                other.type_str()
            ));
            T::default()
        }
    }
}

fn sealed_secret(
    entry: SealedFile,
    egress_allow: &[crate::bundle::authority::Authority],
) -> Result<SealedSecret, String> {
    let name = entry.name;
    let to = entry
        .to
        .iter()
        .map(|text| {
            let authority = crate::bundle::authority::Authority::parse(text).map_err(|why| {
                format!("secrets.sealed {name:?}: to {text:?} must be host:port: {why}")
            })?;
            if !egress_allow.contains(&authority) {
                return Err(format!(
                    "secrets.sealed {name:?}: {authority} must also be in [egress].allow"
                ));
            }
            Ok(authority)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (inject, inject_defaulted) = match (entry.inject, to.is_empty()) {
        (Some(_), true) => {
            return Err(format!(
                "secrets.sealed {name:?}: inject without `to`: it travels nowhere"
            ));
        }
        (None, true) => (None, false),
        (Some(text), false) => (
            Some(
                Placement::parse(&text)
                    .map_err(|why| format!("secrets.sealed {name:?}: inject {text:?}: {why}"))?,
            ),
            false,
        ),
        (None, false) => (Some(Placement::parse(DEFAULT_INJECT)?), true),
    };
    Ok(SealedSecret {
        name,
        to,
        inject,
        inject_defaulted,
    })
}

impl Manifest {
    /// What a start accepts but logs as a warning (and `bundle check` reports):
    /// the migration default of a sealed secret's place.
    pub fn warnings(&self) -> Vec<String> {
        self.sealed
            .iter()
            .filter(|s| s.inject_defaulted)
            .map(|s| {
                format!(
                    "secrets.sealed {:?}: no `inject`, so it travels only as `{DEFAULT_INJECT}` \
                     (the migration default); say where it goes, e.g. inject = \"path:/bot{{}}/\" \
                     or inject = \"header:x-api-key={{}}\"",
                    s.name
                )
            })
            .collect()
    }

    /// Every declared name, readable then sealed: what must resolve for the
    /// bundle to be ready.
    pub fn declared_names(&self) -> impl Iterator<Item = &str> {
        let sealed = self.sealed.iter().map(|s| s.name.as_str());
        self.secrets.iter().map(String::as_str).chain(sealed)
    }

    /// What an operator reviews before deploying a bundle (`gtc bundle inspect`):
    /// everything the bundle may use and where its sealed secrets may travel.
    pub fn review(&self) -> String {
        let list = |items: Vec<String>| {
            if items.is_empty() {
                "(none)".to_string()
            } else {
                items.join(", ")
            }
        };
        let mut out = format!(
            "bundle {}\ncomponent {}\nroutes {}\nreadable secrets {}\n",
            self.id,
            self.component.display(),
            list(self.routes.clone()),
            list(self.secrets.clone()),
        );
        if self.sealed.is_empty() {
            out.push_str("sealed secrets (none)\n");
        }
        for sealed in &self.sealed {
            let to = if sealed.to.is_empty() {
                "travels nowhere (signature checks only)".to_string()
            } else {
                let to: Vec<String> = sealed.to.iter().map(|a| format!("https://{a}")).collect();
                let place = sealed
                    .inject
                    .as_ref()
                    .map(|p| format!(" in {p}"))
                    .unwrap_or_default();
                format!("may travel to {}{place}", to.join(", "))
            };
            out.push_str(&format!("sealed secret {} {to}\n", sealed.name));
        }
        out.push_str(&format!(
            "egress {}\nlimits memory {} MiB, timeout {} ms, response {} MiB\n",
            list(self.egress_allow.iter().map(ToString::to_string).collect()),
            self.limits.memory_bytes >> 20,
            self.limits.timeout.as_millis(),
            self.limits.response_bytes >> 20,
        ));
        let reuse = &self.instances;
        out.push_str(&if reuse.enabled() {
            format!(
                "instances reused for up to {} requests each (idle timeout {} ms, max age {} s)\n",
                reuse.requests,
                reuse.idle_timeout.as_millis(),
                reuse.max_age.as_secs()
            )
        } else {
            "instances fresh for every request\n".to_string()
        });
        out
    }
}

impl Limits {
    /// These limits, each capped at the operator's `maxima`; names what was capped.
    pub fn capped(self, maxima: &Limits) -> (Limits, Vec<String>) {
        let mut capped = Vec::new();
        let mut limits = self;
        if limits.memory_bytes > maxima.memory_bytes {
            capped.push(format!(
                "memory {} MiB -> {} MiB",
                limits.memory_bytes >> 20,
                maxima.memory_bytes >> 20
            ));
            limits.memory_bytes = maxima.memory_bytes;
        }
        if limits.timeout > maxima.timeout {
            capped.push(format!(
                "timeout {:?} -> {:?}",
                limits.timeout, maxima.timeout
            ));
            limits.timeout = maxima.timeout;
        }
        if limits.response_bytes > maxima.response_bytes {
            capped.push(format!(
                "response {} MiB -> {} MiB",
                limits.response_bytes >> 20,
                maxima.response_bytes >> 20
            ));
            limits.response_bytes = maxima.response_bytes;
        }
        (limits, capped)
    }

    /// The operator's default maxima for what a manifest may ask.
    pub fn operator_default_maxima() -> Limits {
        Limits {
            memory_bytes: 512 << 20,
            timeout: std::time::Duration::from_secs(30),
            response_bytes: 64 << 20,
        }
    }
}

/// One `--bundle DIR[=TEAM]` argument: where the bundle is and the team the operator
/// assigns it (`_`, the default, means tenant-wide only).
#[derive(Debug, Clone)]
pub struct BundleSpec {
    pub dir: PathBuf,
    pub team: TeamSlot,
}

impl std::str::FromStr for BundleSpec {
    type Err = BundleError;

    fn from_str(arg: &str) -> Result<Self, Self::Err> {
        let (dir, team) = match arg.rsplit_once('=') {
            Some((dir, team)) => (dir, team),
            None => (arg, "_"),
        };
        let team = TeamSlot::parse(team).map_err(|e| BundleError::Argument {
            arg: arg.to_string(),
            reason: format!("team: {e}"),
        })?;
        if dir.is_empty() {
            return Err(BundleError::Argument {
                arg: arg.to_string(),
                reason: "empty bundle directory".into(),
            });
        }
        Ok(Self {
            dir: PathBuf::from(dir),
            team,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_out_of_range_are_named() {
        let base = "id = \"bot\"\ncomponent = \"bot.wasm\"\nroutes = [\"/bot\"]\n";
        let text =
            format!("{base}[instances]\nreuse = 0\nidle_timeout_ms = 3600001\nmax_age_s = 86401\n");
        let problems = Manifest::parse(&text, Path::new(".")).unwrap_err();
        assert_eq!(
            problems,
            [
                "instances.reuse must be 1..=1000000 (requests per instance; 1: fresh)",
                "instances.idle_timeout_ms must be 1..=3600000",
                "instances.max_age_s must be 1..=86400",
            ]
        );
        let text = format!("{base}[instances]\nreuse = 5\nidle_timeout_ms = 200\nmax_age_s = 7\n");
        let instances = Manifest::parse(&text, Path::new(".")).unwrap().instances;
        assert_eq!(
            (
                instances.requests,
                instances.idle_timeout.as_millis(),
                instances.max_age.as_secs()
            ),
            (5, 200, 7)
        );
    }

    #[test]
    fn parses_a_full_manifest() {
        let m = Manifest::parse(
            r#"
            id = "webchat-bot"
            component = "bot.wasm"
            routes = ["/webhook"]
            secrets = ["webhook-secret"]
            [egress]
            allow = ["api.example.com:443"]
            [limits]
            memory_mib = 32
            timeout_ms = 250
            "#,
            Path::new("/b"),
        )
        .unwrap();
        assert_eq!(m.id.as_str(), "webchat-bot");
        assert_eq!(m.component, Path::new("/b/bot.wasm"));
        assert_eq!(m.limits.memory_bytes, 32 << 20);
        assert_eq!(m.limits.timeout.as_millis(), 250);
    }

    #[test]
    fn rejects_bad_manifests() {
        for bad in [
            "id = \"Bad\"\ncomponent = \"x.wasm\"\nroutes = [\"/\"]",
            "id = \"ok\"\ncomponent = \"x.wasm\"\nroutes = []",
            "id = \"ok\"\ncomponent = \"x.wasm\"\nroutes = [\"nope\"]",
            "id = \"ok\"\ncomponent = \"x.wasm\"\nroutes = [\"/\"]\nteam = \"a\"",
            "id = \"ok\"\ncomponent = \"x.wasm\"\nroutes = [\"/\"]\n[egress]\nallow = [\"evil\"]",
            "id = \"ok\"\ncomponent = \"x.wasm\"\nroutes = [\"/\"]\n[egress]\nallow = [\"u@evil:80\"]",
            "id = \"ok\"\ncomponent = \"x.wasm\"\nroutes = [\"/\"]\n[egress]\nallow = [\"evil:99999\"]",
            "id = \"ok\"\ncomponent = \"x.wasm\"\nroutes = [\"/\"]\n[limits]\nmemory_mib = 0",
        ] {
            assert!(Manifest::parse(bad, Path::new(".")).is_err(), "{bad}");
        }
    }

    #[test]
    fn sealed_secrets_need_destinations_in_the_egress_allowlist() {
        let base = "id = \"tg\"\ncomponent = \"x.wasm\"\nroutes = [\"/\"]\n";
        let good = format!(
            "{base}[secrets]\nread = [\"settings\"]\n[[secrets.sealed]]\n\
             name = \"telegram/bot-token\"\nto = [\"API.telegram.org:443\"]\n\
             [egress]\nallow = [\"api.telegram.org:443\"]"
        );
        let m = Manifest::parse(&good, Path::new(".")).unwrap();
        assert_eq!(m.secrets, ["settings"]);
        assert_eq!(m.sealed.len(), 1);
        assert_eq!(m.sealed[0].name, "telegram/bot-token");
        assert_eq!(m.sealed[0].to[0].to_string(), "api.telegram.org:443");
        // No `inject`: the migration default, warned about.
        assert_eq!(
            m.sealed[0]
                .inject
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some(DEFAULT_INJECT)
        );
        assert_eq!(m.warnings().len(), 1);
        let placed = good.replace("to = [", "inject = \"path:/bot{}/\"\nto = [");
        let m = Manifest::parse(&placed, Path::new(".")).unwrap();
        assert_eq!(
            m.sealed[0].inject,
            Some(Placement::PathPrefix {
                before: "/bot".into(),
                after: "/".into()
            })
        );
        assert!(m.warnings().is_empty());
        for bad in [
            // not in [egress].allow
            "[[secrets.sealed]]\nname = \"k\"\nto = [\"a.example:443\"]",
            // no port
            "[[secrets.sealed]]\nname = \"k\"\nto = [\"a.example\"]\n[egress]\nallow = [\"a.example:443\"]",
            // both readable and sealed
            "[secrets]\nread = [\"k\"]\n[[secrets.sealed]]\nname = \"k\"\nto = [\"a.example:443\"]\n\
             [egress]\nallow = [\"a.example:443\"]",
            // unknown key
            "[[secrets.sealed]]\nname = \"k\"\nto = [\"a.example:443\"]\nscheme = \"http\"\n\
             [egress]\nallow = [\"a.example:443\"]",
            // a place for a value that travels nowhere
            "[[secrets.sealed]]\nname = \"k\"\ninject = \"path:/{}/\"",
        ] {
            let text = format!("{base}{bad}");
            assert!(Manifest::parse(&text, Path::new(".")).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_place_is_one_header_or_a_path_prefix_with_one_slot() {
        for good in [
            "header:authorization=Bearer {}",
            "header:X-Api-Key={}",
            "path:/bot{}/",
            "path:/v1/{}",
        ] {
            assert!(Placement::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "header:authorization=Bearer",
            "header:authorization={}{}",
            "header:host={}",
            "header:bad name={}",
            "header:authorization",
            "path:bot{}/",
            "path:/x?t={}",
            "path:/{}/{{secret:x}}",
            "query:t={}",
            "",
        ] {
            assert!(Placement::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn operator_maxima_cap_what_a_manifest_asks() {
        let asked = Limits {
            memory_bytes: 4096 << 20,
            timeout: std::time::Duration::from_secs(600),
            response_bytes: 16 << 20,
        };
        let (limits, capped) = asked.capped(&Limits::operator_default_maxima());
        assert_eq!(limits.memory_bytes, 512 << 20);
        assert_eq!(limits.timeout, std::time::Duration::from_secs(30));
        assert_eq!(limits.response_bytes, 16 << 20);
        assert_eq!(
            capped,
            ["memory 4096 MiB -> 512 MiB", "timeout 600s -> 30s"]
        );
        let (same, none) = Limits::default().capped(&Limits::operator_default_maxima());
        assert!(none.is_empty());
        assert_eq!(same.timeout, Limits::default().timeout);
    }

    #[test]
    fn bundle_spec_assigns_team() {
        let spec: BundleSpec = "examples/webchat-bot=support".parse().unwrap();
        assert_eq!(spec.team, TeamSlot::parse("support").unwrap());
        let spec: BundleSpec = "examples/webchat-bot".parse().unwrap();
        assert_eq!(spec.team, TeamSlot::TenantWide);
        assert!("x=Bad".parse::<BundleSpec>().is_err());
    }
}
