//! The `gtc` command line: `serve` (the worker pod's entrypoint) and `op` (operator
//! tools). Secret values are read from stdin or a file, never from arguments, so
//! they never show up in `ps` or shell history.

use crate::bundle::BundleSpec;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "gtc",
    version,
    about = "Run sandboxed bot bundles with scoped, read-only secrets"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve bundles over HTTP (the worker pod's entrypoint).
    Serve(ServeArgs),
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
    Doctor(DoctorArgs),
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
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// Client connection limits (`serve` and `route`).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Time a client has to send a complete request head; also the keep-alive
    /// idle timeout (a connection with no request in progress is closed after it).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub header_read_timeout: Duration,
    /// Open client connections; past it a new connection gets 503 and is closed.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Largest request head (request line + headers) in bytes; past it 431.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1024..=1048576))]
    pub max_header_bytes: u32,
}

impl ConnectionArgs {
    pub fn limits(&self) -> crate::ingress::ConnectionLimits {
        crate::ingress::ConnectionLimits {
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
pub struct RenderArgs {
    #[arg(long)]
    pub env: String,
    #[arg(long)]
    pub tenant: String,
    /// Kubernetes namespace of the worker and router.
    #[arg(long, default_value = "greentic")]
    pub namespace: String,
    /// The worker image (bundles baked in under /bundles/NAME).
    #[arg(long)]
    pub image: String,
    /// dev-store or vault.
    #[arg(long, default_value = "vault")]
    pub backend: String,
    #[arg(long)]
    pub vault_addr: Option<String>,
    /// Default: gtc-worker-ENV-TENANT (what vault-bootstrap.sh creates).
    #[arg(long)]
    pub vault_role: Option<String>,
    /// The worker's ServiceAccount. Default: gtc-worker-ENV-TENANT (what
    /// vault-bootstrap.sh binds); `gtc-worker` for one tenant alone in a namespace.
    #[arg(long)]
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
    #[arg(long)]
    pub bundles_dir: Option<PathBuf>,
    /// Namespace of Vault's pods, for the worker's egress policy.
    #[arg(long, default_value = "vault")]
    pub vault_namespace: String,
    #[arg(long, default_value = "secret")]
    pub kv_mount: String,
    #[arg(long, default_value = "greentic")]
    pub kv_prefix: String,
    #[arg(long, default_value = "transit")]
    pub transit_mount: String,
    /// Default: the tenant's own key, greentic-ENV-TENANT.
    #[arg(long)]
    pub transit_key: Option<String>,
    /// A transit key still accepted while migrating (e.g. the shared `greentic`).
    #[arg(long)]
    pub transit_legacy_key: Option<String>,
    /// A bundle baked into the image and its team: NAME=TEAM (repeat).
    #[arg(long = "bundle", value_name = "NAME[=TEAM]", required = true)]
    pub bundles: Vec<crate::deploy::DeployedBundle>,
    #[arg(long, default_value_t = 2)]
    pub replicas: i32,
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
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080", env = "GTC_LISTEN")]
    pub listen: SocketAddr,
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
    /// Let bundles' egress reach loopback addresses (refused by default; the host's
    /// own listener and the secrets backend stay refused either way).
    #[arg(long)]
    pub egress_allow_loopback: bool,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// Directory for compiled components, so the next start skips compilation.
    #[arg(long, env = "GTC_COMPILE_CACHE")]
    pub compile_cache: Option<PathBuf>,
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
