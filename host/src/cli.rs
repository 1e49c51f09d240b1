//! The `gtc` command line: `serve` (the worker pod's entrypoint) and `op` (operator
//! tools). Secret values are read from stdin or a file, never from arguments, so
//! they never show up in `ps` or shell history.

use crate::bundle::BundleSpec;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// The worker's base URL, e.g. http://gtc-worker.greentic.svc:8080
    #[arg(long)]
    pub upstream: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
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
    /// Namespace of Vault's pods, for the worker's egress policy.
    #[arg(long, default_value = "vault")]
    pub vault_namespace: String,
    #[arg(long, default_value = "secret")]
    pub kv_mount: String,
    #[arg(long, default_value = "greentic")]
    pub kv_prefix: String,
    #[arg(long, default_value = "transit")]
    pub transit_mount: String,
    #[arg(long, default_value = "greentic")]
    pub transit_key: String,
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
    /// Requests that may run at once; more wait for a free instance.
    #[arg(long, default_value_t = 256)]
    pub max_instances: u32,
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
    },
}
