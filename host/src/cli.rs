//! The `gtc` command line: `serve` (the worker pod's entrypoint), `op` (operator
//! tools) and `new` (a bundle for guest authors). Secret values are read from stdin
//! or a file, never from arguments, so they never show up in `ps` or shell history.

use crate::bundle::manifest::{BundleSpec, InstanceReuse};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Shown under `gtc --help` (and each command's): the README's promises.
pub const EXIT_AND_ENV_HELP: &str = "\
Exit status: 0 ok, 1 runtime failure (Vault unreachable, a port taken, a doctor check
failed), 2 bad configuration (a flag, a variable, a bundle manifest, a component the
host cannot run, a route conflict, two bundles claiming one sealed secret).

Environment (non-secret values only):
  GREENTIC_SECRETS_BACKEND   dev-store | vault (required inside a pod)
  GREENTIC_ENV, GREENTIC_TENANT   the pod's scope (required inside a pod)
  GREENTIC_DEV_STORE         dev store file [.greentic/dev-store.json]
  GREENTIC_SECRETS_CACHE_TTL, GREENTIC_SECRETS_STALE_FOR   e.g. 30s, 5m (at most 8760h)
  GREENTIC_SECRETS_NOT_FOUND_TTL   how long a name found nowhere is remembered [2s]
  GREENTIC_SECRETS_CACHE_MAX_ENTRIES   bound on cached secrets [100000]
  VAULT_ADDR, VAULT_K8S_ROLE (worker), VAULT_TOKEN (operator commands only)
  VAULT_K8S_MOUNT, VAULT_K8S_TOKEN_PATH, VAULT_KV_MOUNT, VAULT_KV_PREFIX,
  VAULT_TRANSIT_MOUNT, VAULT_TRANSIT_KEY, VAULT_NAMESPACE, VAULT_CACERT
  GREENTIC_VAULT_TIMEOUT     per-request timeout to Vault [10s]
  GTC_LISTEN, GTC_COMPILE_CACHE, GTC_EGRESS_CA_FILE, GTC_LOG_FORMAT=json, RUST_LOG";

/// Shown under `gtc deploy render --help`.
pub const RENDER_HELP: &str = "\
Examples:
  in-cluster Vault:  --vault-addr http://vault.vault.svc:8200
  external Vault:    --vault-addr https://vault.example.com --vault-mode external \\
                     --vault-cidr 203.0.113.10/32 --vault-cacert-configmap vault-ca
  OpenShift DNS:     --dns-namespace openshift-dns \\
                     --dns-pod-label dns.operator.openshift.io/daemonset-dns=default --dns-port 5353
  NodeLocal DNS:     --dns-cidr 169.254.20.10/32
  Prometheus:        --metrics-from-namespace monitoring --prometheus-operator service-monitor
  one worker a team: --bundle webchat-bot=support --bundle hello=sales --bundles-dir ./bundles

Invalid arguments exit with status 2 and name the flag.";

#[derive(Debug, Parser)]
#[command(
    name = "gtc",
    version,
    about = "Run sandboxed bot bundles with scoped, read-only secrets",
    after_help = EXIT_AND_ENV_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve bundles over HTTP (the worker pod's entrypoint).
    #[command(after_help = EXIT_AND_ENV_HELP)]
    Serve(Box<ServeArgs>),
    /// Operator tools.
    Op {
        #[command(subcommand)]
        command: OpCommand,
    },
    /// Kubernetes deployment.
    Deploy {
        #[command(subcommand)]
        command: Box<DeployCommand>,
    },
    /// Forward webhooks to the worker (the router pod's entrypoint; holds no secrets).
    Route(RouteArgs),
    /// Check, step by step, that this pod can reach and read its secrets.
    #[command(after_help = EXIT_AND_ENV_HELP)]
    Doctor(DoctorArgs),
    /// Review bundles before deploying them.
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
    /// Write a new bundle for a guest language.
    ///
    /// Writes D/NAME: bundle.toml, the source, build.sh, a README (build, seed,
    /// serve) and the WIT the guest binds. Never overwrites: an existing path that
    /// is not an empty directory is refused (exit status 2).
    New(NewArgs),
}

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The guest language of the template.
    #[arg(long, value_enum)]
    pub lang: crate::bundle::scaffold::Language,
    /// The bundle id: also the directory's name and the category of its secrets
    /// (lower-case letters, digits, '.', '_' and '-').
    pub name: String,
    /// The directory to create the bundle in [default: the current directory].
    #[arg(long, value_name = "D")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Print what a bundle may use: routes, readable and sealed secrets (with the
    /// destinations each sealed secret may travel to and the place it travels in),
    /// egress and limits.
    Inspect {
        /// The bundle directory (holding bundle.toml).
        dir: PathBuf,
    },
    /// Check bundles as `gtc serve` would, without serving them: the manifest, the
    /// component file, compilation, every import (provided, sandboxed, missing or
    /// mismatched, with what to do), the wasi:http export, size, secrets, egress and
    /// limits; then the bundles given together as one `gtc serve` would take them
    /// (route conflicts, the host's reserved routes, duplicate ids, a sealed secret
    /// claimed by two of them). Exit status 2 if a bundle, or the set, would not
    /// start.
    Check {
        /// Bundle directories (holding bundle.toml), or their bundle.toml files,
        /// each with the team `gtc serve --bundle DIR=TEAM` would give it.
        #[arg(required = true, value_name = "DIR[=TEAM]")]
        dirs: Vec<crate::bundle::manifest::BundleSpec>,
        #[command(flatten)]
        compile: CompileCacheArgs,
        #[command(flatten)]
        share: ShareSealedArgs,
    },
    /// Compile bundles' components into the compile cache ahead of time (an image
    /// build runs this, so that a pod loads them instead of compiling: it starts in
    /// well under a second). Use the same --compile-cache as `gtc serve`.
    Compile {
        /// Bundle directories (holding bundle.toml).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        #[command(flatten)]
        compile: CompileCacheArgs,
    },
}

/// Where compiled components are kept between starts (see `compile_cache`).
#[derive(Debug, Clone, clap::Args)]
pub struct CompileCacheArgs {
    /// Directory for compiled components, so the next start loads them instead of
    /// compiling [default: $XDG_CACHE_HOME/gtc/components, else
    /// $HOME/.cache/gtc/components]. Only the operator may write there: its files
    /// are native code.
    #[arg(long, env = "GTC_COMPILE_CACHE", value_name = "DIR")]
    pub compile_cache: Option<PathBuf>,
    /// Compile every component at every start (wins over --compile-cache).
    #[arg(long)]
    pub no_compile_cache: bool,
}

impl CompileCacheArgs {
    pub fn setting(&self) -> crate::bundle::compile_cache::CacheSetting {
        crate::bundle::compile_cache::CacheSetting::choose(
            self.compile_cache.clone(),
            self.no_compile_cache,
            |name| std::env::var(name).ok(),
        )
    }
}

#[derive(Debug, clap::Args)]
pub struct RouteArgs {
    /// Where to forward: a worker's base URL for every path (e.g.
    /// http://gtc-worker-prod-acme.greentic.svc:8080), or PREFIX=URL for the paths
    /// under PREFIX (repeat; the longest matching prefix wins).
    #[arg(long = "upstream", value_name = "[PREFIX=]URL", required = true)]
    pub upstreams: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Where to serve the router's own Prometheus metrics (`/metrics`: answers by
    /// status, requests no worker answered by route and cause). Off by default;
    /// never served on the public --listen port.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// Client connection limits (`serve` and `route`).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Time a client has to send a complete request head; also the keep-alive
    /// idle timeout (a connection with no request in progress is closed after it).
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub header_read_timeout: Duration,
    /// Open client connections; past it a new connection gets 503 and is closed.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Largest request head (request line + headers) in bytes; past it 431.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1024..=1048576))]
    pub max_header_bytes: u32,
}

impl ConnectionArgs {
    pub fn limits(&self) -> crate::serve::connections::ConnectionLimits {
        crate::serve::connections::ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections as usize,
            max_header_bytes: self.max_header_bytes as usize,
        }
    }
}

/// Parses a duration flag (`250ms`, `10s`, `5m`).
fn duration(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration("the flag", text).map_err(|e| e.to_string())
}

/// [`duration`], refusing zero (a timeout of nothing).
fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        zero if zero.is_zero() => Err("must be more than 0".into()),
        positive => Ok(positive),
    }
}

/// A Prometheus duration (`30s`, `1m30s`, `500ms`): what a ServiceMonitor's
/// `interval` accepts; anything else would be refused only at scrape time.
fn prometheus_duration(text: &str) -> Result<String, String> {
    let mut rest = text;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|unit| rest[digits..].starts_with(unit));
        match unit {
            Some(unit) if digits > 0 => rest = &rest[digits + unit.len()..],
            _ => {
                return Err(format!(
                    "{text:?} is not a Prometheus duration (e.g. 30s, 1m, 1m30s, 500ms)"
                ));
            }
        }
        parts += 1;
    }
    if parts == 0 {
        return Err("empty: expected a Prometheus duration such as 30s".into());
    }
    Ok(text.to_string())
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Bundles whose declared secrets to read (DIR=TEAM), as for `serve`.
    #[arg(long = "bundle", value_name = "DIR[=TEAM]")]
    pub bundles: Vec<BundleSpec>,
}

#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Print the Kubernetes manifests (YAML) for an environment and tenant.
    Render(RenderArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = RENDER_HELP)]
pub struct RenderArgs {
    /// The environment (GREENTIC_ENV of the worker), e.g. prod.
    #[arg(long)]
    pub env: String,
    /// The tenant (GREENTIC_TENANT of the worker), e.g. acme.
    #[arg(long)]
    pub tenant: String,
    /// Kubernetes namespace of the worker and router (an RFC 1123 label).
    #[arg(long, default_value = "greentic")]
    pub namespace: String,
    /// The worker image, bundles baked in under /bundles/NAME. A digest pins it:
    /// REGISTRY/gtc@sha256:<64 hex> (or REGISTRY/gtc:TAG@sha256:...).
    #[arg(long)]
    pub image: String,
    /// The containers' imagePullPolicy [default: Kubernetes' own, IfNotPresent
    /// for a tag]. Always re-checks a tag at every start; a digest needs none.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub image_pull_policy: Option<crate::ops::deploy::PullPolicy>,
    /// Secrets backend of the worker: vault, or dev-store (development only).
    #[arg(long, default_value = "vault")]
    pub backend: String,
    /// Vault's address as the worker sees it (http:// or https://), e.g.
    /// http://vault.vault.svc:8200 or https://vault.example.com.
    #[arg(long)]
    pub vault_addr: Option<String>,
    /// Vault role of the worker. Default: gtc-worker-ENV-TENANT (what vault-bootstrap.sh creates).
    #[arg(long)]
    pub vault_role: Option<String>,
    /// The worker's ServiceAccount. Default: gtc-worker-ENV-TENANT (what
    /// vault-bootstrap.sh binds); `gtc-worker` for one tenant alone in a namespace.
    #[arg(long, value_name = "NAME")]
    pub service_account: Option<String>,
    /// One worker, ServiceAccount, Service and Vault role per team; the router sends
    /// each bundle's routes to its team's worker. Default when the bundles belong to
    /// more than one team. Needs --bundles-dir.
    #[arg(long, conflicts_with = "shared_worker")]
    pub isolate_teams: bool,
    /// One worker for the whole tenant, even when the bundles belong to several teams.
    #[arg(long)]
    pub shared_worker: bool,
    /// A local copy of the bundles baked into the image (DIR/NAME/bundle.toml): their
    /// routes tell the router which team's worker serves what.
    #[arg(long, value_name = "DIR")]
    pub bundles_dir: Option<PathBuf>,
    /// Where Vault runs, for the worker's egress policy: in-cluster (pods selected
    /// by namespace and labels) or external (CIDR blocks). Default: in-cluster for a
    /// NAME.NAMESPACE.svc address, external when --vault-cidr is given; any other
    /// address is refused until you say which.
    #[arg(long, value_enum)]
    pub vault_mode: Option<crate::ops::deploy::network::VaultMode>,
    /// In-cluster Vault: the Kubernetes namespace of its pods (default: the
    /// NAMESPACE of a NAME.NAMESPACE.svc address). Not VAULT_NAMESPACE: see
    /// --vault-enterprise-namespace.
    #[arg(long, value_name = "NAMESPACE")]
    pub vault_k8s_namespace: Option<String>,
    /// In-cluster Vault: a label of its pods, KEY=VALUE (repeat; default
    /// app.kubernetes.io/name=vault).
    #[arg(long = "vault-pod-label", value_name = "KEY=VALUE")]
    pub vault_pod_labels: Vec<String>,
    /// In-cluster Vault: the port its pods listen on, which the policy matches
    /// (not the Service's port) [default: 8200].
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub vault_target_port: Option<u16>,
    /// External Vault: a CIDR block of its addresses (repeat), e.g. 10.0.0.5/32.
    #[arg(long = "vault-cidr", value_name = "CIDR")]
    pub vault_cidrs: Vec<String>,
    /// External Vault: the port the worker connects to [default: the port of --vault-addr].
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub vault_port: Option<u16>,
    /// Renamed: --vault-k8s-namespace (Vault's Kubernetes namespace) or
    /// --vault-enterprise-namespace (VAULT_NAMESPACE).
    #[arg(long, hide = true)]
    pub vault_namespace: Option<String>,
    /// A ConfigMap holding the PEM CA of Vault's certificate: mounted into the
    /// worker, VAULT_CACERT points at it (https only).
    #[arg(long, value_name = "NAME")]
    pub vault_cacert_configmap: Option<String>,
    /// The key of the CA in that ConfigMap.
    #[arg(long, value_name = "KEY", default_value = "ca.crt")]
    pub vault_cacert_key: String,
    /// A Vault Enterprise / OpenBao namespace, rendered as VAULT_NAMESPACE.
    #[arg(long, value_name = "NAMESPACE")]
    pub vault_enterprise_namespace: Option<String>,
    /// KV-v2 mount (VAULT_KV_MOUNT; rendered only when not the default).
    #[arg(long, default_value = "secret")]
    pub kv_mount: String,
    /// Path prefix under the KV mount (VAULT_KV_PREFIX).
    #[arg(long, default_value = "greentic")]
    pub kv_prefix: String,
    /// Transit mount (VAULT_TRANSIT_MOUNT).
    #[arg(long, default_value = "transit")]
    pub transit_mount: String,
    /// Transit key that wraps data keys (VAULT_TRANSIT_KEY). Default: the
    /// tenant's own key, greentic-ENV-TENANT (what vault-bootstrap.sh creates).
    #[arg(long, value_name = "KEY")]
    pub transit_key: Option<String>,
    /// A transit key still accepted while migrating (VAULT_TRANSIT_LEGACY_KEY),
    /// e.g. the shared `greentic` of older deployments.
    #[arg(long, value_name = "KEY")]
    pub transit_legacy_key: Option<String>,
    /// A bundle baked into the image and its team: NAME=TEAM, or NAME alone for
    /// tenant-wide secrets only (repeat).
    #[arg(long = "bundle", value_name = "NAME[=TEAM]", required = true)]
    pub bundles: Vec<crate::ops::deploy::DeployedBundle>,
    /// A directory holding NAME/bundle.toml for each --bundle: every entry of their
    /// egress.allow must then be covered by --egress-cidr, or the render fails.
    #[arg(long, value_name = "DIR")]
    pub bundle_manifests: Option<PathBuf>,
    /// Objects already in the namespace, as YAML (`kubectl get
    /// deploy,svc,sa,secret,networkpolicy,pdb,hpa -n NS -o yaml`, or other scopes'
    /// renders; repeat): an object of the same kind and name that belongs to
    /// another scope (names join env, tenant and team with '-', so
    /// `prod/eu-acme` and `prod-eu/acme` collide) is refused, naming both (exit 2).
    #[arg(long = "existing", value_name = "FILE")]
    pub existing: Vec<PathBuf>,
    /// The address block a bundle's egress destination stands for, HOST:PORT=CIDR
    /// (repeat). NetworkPolicy cannot match host names: without a block, the
    /// default deny drops the bundle's outgoing calls.
    #[arg(long = "egress-cidr", value_name = "HOST:PORT=CIDR")]
    pub egress_cidrs: Vec<crate::ops::deploy::network::EgressGrant>,
    /// Replicas of the worker and of the router (the autoscaler's minimum with --autoscale-max).
    #[arg(long, default_value_t = 2, allow_negative_numbers = true)]
    pub replicas: i32,
    /// Render a HorizontalPodAutoscaler (autoscaling/v2, CPU) for worker and
    /// router, from --replicas up to this many pods (needs a metrics server).
    #[arg(long, value_name = "N")]
    pub autoscale_max: Option<i32>,
    /// The autoscaler's target CPU utilisation, percent of the CPU request
    /// (needs --autoscale-max: without it there is no autoscaler).
    #[arg(
        long,
        value_name = "PERCENT",
        default_value_t = 70,
        requires = "autoscale_max"
    )]
    pub autoscale_cpu_percent: i32,
    /// PodDisruptionBudget of worker and router: pods that may be down at once.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    pub pdb_max_unavailable: i32,
    /// Render no PodDisruptionBudget.
    #[arg(long, conflicts_with = "pdb_max_unavailable")]
    pub no_pdb: bool,
    /// Topology spread of the pods across zones and nodes.
    #[arg(long, value_enum, default_value = "preferred")]
    pub topology_spread: crate::ops::deploy::scale::Spread,
    /// The worker container's CPU request.
    #[arg(long, default_value = "250m")]
    pub worker_cpu_request: String,
    /// The worker container's memory request.
    #[arg(long, default_value = "128Mi")]
    pub worker_memory_request: String,
    /// The worker container's CPU limit (`none`: no limit, no throttling).
    #[arg(long, default_value = "2")]
    pub worker_cpu_limit: String,
    /// The worker container's memory limit (bundles' instances count against it).
    #[arg(long, default_value = "512Mi")]
    pub worker_memory_limit: String,
    /// The router container's CPU request.
    #[arg(long, default_value = "50m")]
    pub router_cpu_request: String,
    /// The router container's memory request.
    #[arg(long, default_value = "32Mi")]
    pub router_memory_request: String,
    /// The router container's CPU limit (`none`: no limit).
    #[arg(long, default_value = "1")]
    pub router_cpu_limit: String,
    /// The router container's memory limit.
    #[arg(long, default_value = "128Mi")]
    pub router_memory_limit: String,
    /// Namespace of cluster DNS, for every pod's DNS egress rule.
    #[arg(long, value_name = "NAMESPACE", default_value = "kube-system")]
    pub dns_namespace: String,
    /// A label of the DNS pods, KEY=VALUE (repeat) [default: k8s-app=kube-dns].
    #[arg(long = "dns-pod-label", value_name = "KEY=VALUE")]
    pub dns_pod_labels: Vec<String>,
    /// A DNS address block besides the DNS pods (repeat), e.g. NodeLocal
    /// DNSCache's 169.254.20.10/32.
    #[arg(long = "dns-cidr", value_name = "CIDR")]
    pub dns_cidrs: Vec<String>,
    /// The port DNS pods listen on (repeat) [default: 53; OpenShift: 5353].
    #[arg(long = "dns-port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub dns_ports: Vec<u16>,
    /// Admit Prometheus in this namespace to the worker's port (it serves
    /// /metrics; the router hides it from the outside).
    #[arg(long, value_name = "NAMESPACE")]
    pub metrics_from_namespace: Option<String>,
    /// Only Prometheus pods with this label, KEY=VALUE (repeat) [default: any pod
    /// of --metrics-from-namespace].
    #[arg(long = "metrics-from-pod-label", value_name = "KEY=VALUE")]
    pub metrics_from_pod_labels: Vec<String>,
    /// A label of the ServiceMonitor/PodMonitor, KEY=VALUE (repeat): what your
    /// Prometheus selects monitors by, e.g. release=kube-prometheus-stack
    /// (kube-prometheus-stack's serviceMonitorSelector). Needs --prometheus-operator.
    #[arg(
        long = "monitor-label",
        value_name = "KEY=VALUE",
        requires = "prometheus_operator"
    )]
    pub monitor_labels: Vec<String>,
    /// Also render a Prometheus Operator ServiceMonitor or PodMonitor for the
    /// worker (needs --metrics-from-namespace).
    #[arg(long, value_enum, value_name = "KIND", num_args = 0..=1, default_missing_value = "service-monitor")]
    pub prometheus_operator: Option<crate::ops::deploy::network::MonitorKind>,
    /// Scrape interval of the ServiceMonitor/PodMonitor (a Prometheus duration).
    #[arg(long, default_value = "30s", value_parser = prometheus_duration)]
    pub scrape_interval: String,
    /// dev-store backend only: the dev store file to ship in the gtc-dev-secrets Secret.
    #[arg(long)]
    pub dev_store: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A bundle directory and the team the operator assigns it: DIR=TEAM, or DIR
    /// alone for tenant-wide secrets only. Repeat for more bundles.
    #[arg(long = "bundle", value_name = "DIR[=TEAM]", required = true)]
    pub bundles: Vec<BundleSpec>,
    /// Address to listen on (port 0 picks a free port; the address is printed)
    /// [default: GTC_LISTEN when set, else 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Requests that may run at once (the instance pool); more wait for a free
    /// instance, at most --queue-timeout.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub max_instances: u32,
    /// Instances one bundle may hold at once. Default: a fair share of the pool
    /// (max-instances / number of bundles), so no bundle can starve another.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_instances_per_bundle: Option<u32>,
    /// How long a request waits for a free instance before it gets 503 + Retry-After.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub queue_timeout: Duration,
    /// The longest time limit a bundle manifest may ask (limits.timeout_ms is capped).
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub max_timeout: Duration,
    /// The most memory a bundle manifest may ask (limits.memory_mib is capped).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_memory_mib: u64,
    /// The largest response body a bundle manifest may ask (limits.response_mib is capped).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_response_mib: u64,
    /// The most requests one instance may serve, whatever a manifest's
    /// `[instances] reuse` asks (1: a fresh instance for every request, as with
    /// --no-instance-reuse).
    #[arg(long, default_value_t = InstanceReuse::OPERATOR_DEFAULT_MAXIMA.requests, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_instance_reuse: u32,
    /// The longest an idle instance may be kept (caps `instances.idle_timeout_ms`).
    #[arg(long, default_value = "60s", value_parser = positive_duration)]
    pub max_instance_idle: Duration,
    /// The oldest an instance may serve (caps `instances.max_age_s`; the secrets
    /// cache's TTL caps it too).
    #[arg(long, default_value = "300s", value_parser = positive_duration)]
    pub max_instance_age: Duration,
    /// Turn instance reuse off for every bundle: a fresh instance per request,
    /// whatever the manifests ask.
    #[arg(long)]
    pub no_instance_reuse: bool,
    /// Let bundles' egress reach loopback addresses (refused by default; the host's
    /// own listener and the secrets backend stay refused either way).
    #[arg(long)]
    pub egress_allow_loopback: bool,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    #[command(flatten)]
    pub compile: CompileCacheArgs,
    /// Migration switch: let the bundle with this id read secrets its manifest
    /// does not declare (by default a `get` of an undeclared name is denied).
    /// Sealed secrets stay sealed. Repeat for more bundles.
    #[arg(long, value_name = "BUNDLE_ID", value_parser = bundle_id)]
    pub allow_undeclared_secrets: Vec<crate::secrets::scope::Segment>,
    #[command(flatten)]
    pub share: ShareSealedArgs,
    /// Let sealed secrets travel over plain http to this authority (a local
    /// sidecar, tests); everywhere else they go over https only. Repeatable.
    #[arg(long, value_name = "HOST:PORT", value_parser = authority)]
    pub sealed_allow_http: Vec<crate::bundle::authority::Authority>,
    /// Extra CA certificates (PEM) trusted, besides the webpki roots, for
    /// outgoing https requests that carry sealed secrets (the host's own client).
    #[arg(long, value_name = "PEM_FILE", env = "GTC_EGRESS_CA_FILE")]
    pub egress_ca_file: Option<PathBuf>,
    /// Audit every cache hit with a record of its own. By default cache hits are
    /// counted per bundle and secret and written as one aggregate record (count,
    /// first and last time) every --audit-flush; fetches, stale answers and sealed
    /// injections always get a record each (refusals: the first of each kind per
    /// --audit-flush window, the repeats counted).
    #[arg(long)]
    pub audit_every_hit: bool,
    /// How often aggregated cache hits and repeated refusals are written to the
    /// audit trail (and at shutdown).
    #[arg(long, default_value = "5s", value_parser = audit_flush)]
    pub audit_flush: Duration,
    /// Audit records that may wait for the writer, all bundles together: a
    /// quarter is reserved for disclosures, and each bundle may use its equal
    /// share of each part. A disclosure whose record finds no place is refused
    /// (the guest hears unavailable); a refusal is counted into its aggregate.
    #[arg(long, default_value_t = crate::secrets::audit::DEFAULT_QUEUE, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(4..=16_777_216))]
    pub audit_queue: usize,
    /// Lines the host logs about all bundles together per second (guest output,
    /// egress denials, failures, queueing), on top of each bundle's own limits;
    /// each bundle is guaranteed an equal part of half of it.
    #[arg(long, default_value_t = crate::serve::log_limit::DEFAULT_HOST_LINES_PER_SECOND, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_log_lines_per_second: u32,
    /// Threads that run requests (guests run on them). Default: the CPUs the
    /// process may use (a cgroup CPU limit counts, rounded up).
    #[arg(long, env = "GTC_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
    /// KiB of each recycled instance slot's memory (and tables) wiped and kept
    /// mapped instead of returned to the kernel: a recycled slot then takes no
    /// page faults for that much (BENCHMARKS.md measures the trade-off).
    #[arg(long, default_value_t = gtc_keep_resident_kib(), value_parser = clap::value_parser!(u32).range(0..=65536))]
    pub keep_resident_kib: u32,
}

impl ServeArgs {
    /// The operator's maxima for `[instances]`.
    pub fn instance_reuse_maxima(&self) -> InstanceReuse {
        InstanceReuse {
            requests: if self.no_instance_reuse {
                1
            } else {
                self.max_instance_reuse
            },
            idle_timeout: self.max_instance_idle,
            max_age: self.max_instance_age,
        }
    }
}

fn gtc_keep_resident_kib() -> u32 {
    (crate::serve::runtime::KEEP_RESIDENT >> 10) as u32
}

fn audit_flush(text: &str) -> Result<Duration, String> {
    let every = duration(text)?;
    if every < Duration::from_millis(100) {
        return Err("at least 100ms".into());
    }
    Ok(every)
}

fn authority(text: &str) -> Result<crate::bundle::authority::Authority, String> {
    crate::bundle::authority::Authority::parse(text).map_err(|e| e.to_string())
}

/// Who may seal a value (`gtc serve` and `gtc bundle check` alike).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ShareSealedArgs {
    /// Let several bundles declare this sealed secret (`category/name`). By
    /// default a sealed value has one owner bundle on a host and a second bundle
    /// declaring it (sealed or readable, in any name form) stops the start with
    /// exit status 2; sharing is logged at start. Never makes a value readable.
    /// Repeatable.
    #[arg(long, value_name = "CATEGORY/NAME", value_parser = shared_name)]
    pub share_sealed: Vec<String>,
}

fn shared_name(text: &str) -> Result<String, String> {
    match crate::secrets::scope::RequestedName::parse(text).map_err(|e| e.to_string())? {
        crate::secrets::scope::RequestedName::Relative {
            category: Some(category),
            name,
        } => Ok(format!("{category}/{name}")),
        _ => Err("must be CATEGORY/NAME (the value's category and name)".into()),
    }
}

fn bundle_id(text: &str) -> Result<crate::secrets::scope::Segment, String> {
    crate::secrets::scope::Segment::parse(text).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum OpCommand {
    /// Manage secrets in the configured backend.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Store a secret: TENANT/TEAM|_/CATEGORY/NAME in the environment GREENTIC_ENV
    /// (or --env). The value is read from stdin (or --from-file), byte for byte.
    Put {
        /// TENANT/TEAM|_/CATEGORY/NAME
        path: String,
        /// Read the value from this file instead of stdin.
        #[arg(long)]
        from_file: Option<PathBuf>,
        /// The environment (default: GREENTIC_ENV, or `dev` outside a pod).
        #[arg(long)]
        env: Option<String>,
    },
    /// List secret names (never values) of a tenant, optionally one team.
    Ls {
        /// TENANT or TENANT/TEAM|_
        prefix: String,
        /// The environment (default: GREENTIC_ENV, or `dev` outside a pod).
        #[arg(long)]
        env: Option<String>,
        /// Vault: also say, per entry, whether its envelope is current (v2, the
        /// tenant's transit key) or upgradable by `rewrap` (nothing is decrypted).
        #[arg(long)]
        check: bool,
    },
    /// Vault: upgrade every entry of a tenant (optionally one team) to envelope v2
    /// under the tenant's own transit key, as new KV versions. Values are opened and
    /// sealed again inside this process only.
    Rewrap {
        /// TENANT or TENANT/TEAM|_
        prefix: String,
        /// The environment (default: GREENTIC_ENV, or `dev` outside a pod).
        #[arg(long)]
        env: Option<String>,
        /// The transit key that wrapped v1 envelopes (they do not name it).
        #[arg(long, value_name = "KEY", default_value = "greentic")]
        from_key: String,
    },
}

impl RenderArgs {
    /// The deploy configuration these flags describe; every error names its flag
    /// (exit status 2).
    pub fn into_config(
        self,
    ) -> Result<crate::ops::deploy::DeployConfig, crate::ops::deploy::RenderError> {
        let args = self;
        use crate::ops::deploy::RenderError;
        let segment = |flag: &str, value: &str| {
            crate::secrets::scope::Segment::parse(value).map_err(|e| {
                RenderError::Invalid(format!(
                    "--{flag} {value:?}: {} (lower-case letters, digits, '.', '_' and '-')",
                    e.reason()
                ))
            })
        };
        if let Some(old) = &args.vault_namespace {
            return Err(RenderError::Invalid(format!(
                "--vault-namespace {old:?}: this flag was renamed, because Vault's own namespaces \
             (VAULT_NAMESPACE) are something else: use --vault-k8s-namespace for the \
             Kubernetes namespace of Vault's pods, or --vault-enterprise-namespace for a \
             Vault Enterprise / OpenBao namespace"
            )));
        }
        let dev_store = match &args.dev_store {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    RenderError::Invalid(format!(
                        "--dev-store {}: cannot read it: {e}",
                        path.display()
                    ))
                })?;
                serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
                    RenderError::Invalid(format!(
                        "--dev-store {}: not a dev store (JSON): {e}",
                        path.display()
                    ))
                })?;
                Some(text)
            }
            None => None,
        };
        // The bundles' manifests, when a copy is at hand: --bundles-dir for the
        // router's per-team routes, --bundle-manifests for the egress allowlists.
        let manifests = |flag: &str, dir: &std::path::Path| {
            args.bundles
                .iter()
                .map(|bundle| {
                    crate::bundle::manifest::Manifest::load(&dir.join(bundle.name.as_str()))
                        .map(|manifest| (bundle.name.clone(), manifest))
                        .map_err(|e| RenderError::Invalid(format!("--{flag}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let existing = args
            .existing
            .iter()
            .map(|path| {
                std::fs::read_to_string(path)
                    .map(|text| crate::ops::deploy::existing::ExistingFile {
                        path: path.display().to_string(),
                        text,
                    })
                    .map_err(|e| {
                        RenderError::Invalid(format!("--existing {}: {e}", path.display()))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut egress_allowlists = Vec::new();
        if let Some(dir) = &args.bundle_manifests {
            for (name, manifest) in manifests("bundle-manifests", dir)? {
                egress_allowlists.push((name.to_string(), manifest.egress_allow));
            }
        }
        let mut routes = std::collections::BTreeMap::new();
        if let Some(dir) = &args.bundles_dir {
            for (name, manifest) in manifests("bundles-dir", dir)? {
                routes.insert(name, manifest.routes);
            }
        }
        let team_workers = if args.isolate_teams {
            crate::ops::deploy::TeamWorkers::Isolated
        } else if args.shared_worker {
            crate::ops::deploy::TeamWorkers::Shared
        } else {
            crate::ops::deploy::TeamWorkers::Auto
        };
        let limit = |value: String| (value != "none").then_some(value);
        let mut dns = crate::ops::deploy::network::DnsFlags {
            namespace: args.dns_namespace,
            ..Default::default()
        };
        if !args.dns_pod_labels.is_empty() {
            dns.pod_labels = args.dns_pod_labels;
        }
        dns.cidrs = args.dns_cidrs;
        if !args.dns_ports.is_empty() {
            dns.ports = args.dns_ports;
        }
        let config = crate::ops::deploy::DeployConfig {
            env: segment("env", &args.env)?,
            tenant: segment("tenant", &args.tenant)?,
            namespace: args.namespace,
            image: args.image,
            backend: crate::config::BackendKind::parse(&args.backend).map_err(|_| {
                RenderError::Invalid(format!(
                    "--backend {:?}: expected vault or dev-store",
                    args.backend
                ))
            })?,
            vault_addr: args.vault_addr,
            vault_role: args.vault_role,
            vault_network: crate::ops::deploy::network::VaultNetworkFlags {
                mode: args.vault_mode,
                k8s_namespace: args.vault_k8s_namespace,
                pod_labels: args.vault_pod_labels,
                target_port: args.vault_target_port,
                cidrs: args.vault_cidrs,
                port: args.vault_port,
            },
            vault_ca: args
                .vault_cacert_configmap
                .map(|config_map| crate::ops::deploy::VaultCa {
                    config_map,
                    key: args.vault_cacert_key,
                }),
            vault_enterprise_namespace: args.vault_enterprise_namespace,
            service_account: args.service_account,
            layout: crate::secrets::backend::VaultLayout {
                kv_mount: args.kv_mount,
                kv_prefix: args.kv_prefix,
                transit_mount: args.transit_mount,
                transit_key: args.transit_key,
                legacy_transit_key: args.transit_legacy_key,
            },
            bundles: args.bundles,
            routes,
            team_workers,
            replicas: args.replicas,
            dev_store,
            dns,
            metrics: crate::ops::deploy::network::MetricsFlags {
                from_namespace: args.metrics_from_namespace,
                from_pod_labels: args.metrics_from_pod_labels,
                monitor: args.prometheus_operator,
                interval: args.scrape_interval,
                monitor_labels: args.monitor_labels,
            },
            image_pull_policy: args.image_pull_policy,
            existing,
            egress: args.egress_cidrs,
            egress_allowlists,
            scale: crate::ops::deploy::scale::ScaleFlags {
                pdb_max_unavailable: (!args.no_pdb).then_some(args.pdb_max_unavailable),
                autoscale_max: args.autoscale_max,
                autoscale_cpu_percent: args.autoscale_cpu_percent,
                spread: args.topology_spread,
                worker: crate::ops::deploy::scale::ResourceFlags {
                    cpu_request: args.worker_cpu_request,
                    memory_request: args.worker_memory_request,
                    cpu_limit: limit(args.worker_cpu_limit),
                    memory_limit: args.worker_memory_limit,
                },
                router: crate::ops::deploy::scale::ResourceFlags {
                    cpu_request: args.router_cpu_request,
                    memory_request: args.router_memory_request,
                    cpu_limit: limit(args.router_cpu_limit),
                    memory_limit: args.router_memory_limit,
                },
            },
        };
        Ok(config)
    }
}
