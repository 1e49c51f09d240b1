//! `gtc deploy render`: the Kubernetes manifests of one environment + tenant.
//!
//! With the vault backend the output holds no `Secret` object at all: the worker
//! runs as its own ServiceAccount `gtc-worker-<env>-<tenant>` (the identity Vault
//! binds to this scope alone) with a short-lived projected token whose audience is
//! Vault, and fetches every value at run time. Only workers get a token; the router
//! (`gtc route`, which forwards webhooks to the workers) runs without one.
//! NetworkPolicies deny everything but DNS, router → worker and worker → Vault
//! (and, when asked, Prometheus → worker and worker → the CIDR blocks of bundles'
//! egress destinations). Every object carries env and tenant in its name and
//! labels (see `names`), so two scopes can share a namespace. With isolated teams
//! (`--isolate-teams`, the default when the bundles belong to more than one team)
//! each team gets its own worker, ServiceAccount, Service, Vault role, PDB and
//! HPA, and the router sends each bundle's routes to its team's worker. With the
//! dev-store backend, the dev store travels in a `gtc-dev-secrets-<env>-<tenant>`
//! Secret; that backend is for development only.
//!
//! Submodules: [`k8s`] the object types, [`names`] per-scope names and labels,
//! [`network`] Vault/DNS/metrics/egress rules, [`scale`] PDB/HPA/spread/resources,
//! [`validate`] the argument checks.

pub mod existing;
pub mod k8s;
pub mod names;
pub mod network;
pub mod scale;
pub mod validate;

use crate::config::BackendKind;
use crate::secrets::scope::{Segment, TeamSlot};
use k8s::*;
pub use names::{DEV_SECRET, ROUTER, ScopeNames, WORKER};
use std::collections::BTreeMap;
const PORT: i32 = 8080;
/// Where the rendered router serves its own `/metrics` (`gtc route --metrics-listen`).
pub const ROUTER_METRICS_PORT: i32 = 9091;
const RUN_AS: i64 = 65532;
/// Where the worker's projected Vault token is mounted.
pub const VAULT_TOKEN_DIR: &str = "/var/run/secrets/greentic/vault";
/// Where bundles live in the worker image.
pub const BUNDLES_DIR: &str = "/bundles";
const DEV_STORE_DIR: &str = "/var/run/secrets/greentic/dev-store";
/// The dev-store Secret's file mode: read for owner (root) and group (the pod's
/// fsGroup, which the worker runs as), nothing for others.
pub const DEV_STORE_MODE: i32 = 0o440;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot serialise the manifests: {0}")]
    Serialise(String),
}

/// A bundle baked into the image and the team the operator assigns it.
#[derive(Debug, Clone)]
pub struct DeployedBundle {
    pub name: Segment,
    pub team: TeamSlot,
}

impl std::str::FromStr for DeployedBundle {
    type Err = RenderError;

    fn from_str(arg: &str) -> Result<Self, Self::Err> {
        let (name, team) = arg.split_once('=').unwrap_or((arg, "_"));
        let bad = |why: String| RenderError::Invalid(format!("--bundle {arg:?}: {why}"));
        Ok(Self {
            name: Segment::parse(name).map_err(|e| bad(format!("bundle name: {}", e.reason())))?,
            team: TeamSlot::parse(team).map_err(|e| bad(format!("team: {}", e.reason())))?,
        })
    }
}

/// One worker per tenant, or one per team.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamWorkers {
    /// Isolated when the bundles belong to more than one team, else shared.
    Auto,
    /// One worker (and Vault identity) per team: `--isolate-teams`.
    Isolated,
    /// One worker for the whole tenant: `--shared-worker`.
    Shared,
}

/// Everything the manifests depend on. Non-secret values only.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    pub env: Segment,
    pub tenant: Segment,
    pub namespace: String,
    pub image: String,
    pub backend: BackendKind,
    pub vault_addr: Option<String>,
    pub vault_role: Option<String>,
    /// The shared worker's ServiceAccount (default `gtc-worker-<env>-<tenant>`;
    /// `gtc-worker` keeps a one-tenant namespace as it was).
    pub service_account: Option<String>,
    /// Where Vault is, for the worker's egress policy (in the cluster or not).
    pub vault_network: network::VaultNetworkFlags,
    /// A ConfigMap holding the CA of Vault's certificate: mounted, `VAULT_CACERT`.
    pub vault_ca: Option<VaultCa>,
    /// A Vault Enterprise / OpenBao namespace: `VAULT_NAMESPACE`.
    pub vault_enterprise_namespace: Option<String>,
    pub layout: crate::secrets::backend::VaultLayout,
    pub bundles: Vec<DeployedBundle>,
    /// Each bundle's route prefixes (from its manifest), needed to route teams.
    pub routes: BTreeMap<Segment, Vec<String>>,
    pub team_workers: TeamWorkers,
    pub replicas: i32,
    /// Dev store content for the dev-store backend (a dev-store JSON document).
    pub dev_store: Option<String>,
    pub dns: network::DnsFlags,
    pub metrics: network::MetricsFlags,
    /// CIDR blocks for bundles' egress destinations.
    pub egress: Vec<network::EgressGrant>,
    /// Each deployed bundle's `egress.allow`, when the operator pointed at the
    /// manifests (`--bundle-manifests`): every entry must then have a block.
    pub egress_allowlists: Vec<(String, Vec<crate::bundle::authority::Authority>)>,
    pub scale: scale::ScaleFlags,
    /// `None`: Kubernetes' default (IfNotPresent for a tag or digest).
    pub image_pull_policy: Option<PullPolicy>,
    /// Objects already in the namespace (`--existing`): a name another scope
    /// holds there is refused.
    pub existing: Vec<existing::ExistingFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// The ConfigMap (and key) holding the PEM CA of Vault's certificate.
#[derive(Debug, Clone)]
pub struct VaultCa {
    pub config_map: String,
    pub key: String,
}

/// Where the Vault CA ConfigMap is mounted in the worker.
pub const VAULT_CA_DIR: &str = "/var/run/secrets/greentic/vault-ca";

/// One worker to render: its name (= ServiceAccount = default Vault role), its
/// team (None: the whole tenant) and its bundles.
struct WorkerPlan<'a> {
    name: String,
    service_account: String,
    role: String,
    team: Option<Segment>,
    bundles: Vec<&'a DeployedBundle>,
}

/// An object's metadata; its full scope goes in the `greentic.ai/scope`
/// annotation (names and label values may be shortened, see `names`).
fn meta(config: &DeployConfig, name: &str, labels: Labels) -> ObjectMeta {
    let scope = match labels.get(names::LABEL_TEAM) {
        Some(team) => format!("{}/{}/{team}", config.env, config.tenant),
        None => format!("{}/{}", config.env, config.tenant),
    };
    ObjectMeta {
        name: name.to_string(),
        namespace: config.namespace.clone(),
        labels,
        annotations: BTreeMap::from([(names::ANNOTATION_SCOPE.to_string(), scope)]),
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: value.into(),
    }
}

fn probe(path: &str) -> Probe {
    Probe {
        http_get: HttpGetAction {
            path: path.to_string(),
            port: "http".to_string(),
        },
        period_seconds: 10,
        timeout_seconds: 3,
        failure_threshold: 3,
    }
}

fn container(
    name: &str,
    image: &str,
    pull_policy: Option<PullPolicy>,
    args: Vec<String>,
    env: Vec<EnvVar>,
    resources: Resources,
    mounts: Vec<VolumeMount>,
) -> Container {
    Container {
        name: name.to_string(),
        image: image.to_string(),
        image_pull_policy: pull_policy.map(|p| p.as_str().to_string()),
        args,
        ports: vec![ContainerPort {
            name: "http".into(),
            container_port: PORT,
            protocol: "TCP".into(),
        }],
        env,
        resources,
        security_context: SecurityContext {
            allow_privilege_escalation: false,
            read_only_root_filesystem: true,
            run_as_non_root: true,
            capabilities: Capabilities {
                drop: vec!["ALL".into()],
            },
        },
        liveness_probe: probe("/healthz"),
        readiness_probe: probe("/readyz"),
        volume_mounts: mounts,
    }
}

fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: true,
        run_as_user: RUN_AS,
        run_as_group: RUN_AS,
        fs_group: RUN_AS,
        seccomp_profile: SeccompProfile {
            type_: "RuntimeDefault".into(),
        },
    }
}

fn deployment(
    config: &DeployConfig,
    names: &ScopeNames,
    component: &str,
    name: &str,
    team: Option<&Segment>,
    pod: PodSpec,
) -> Deployment {
    let labels = names.labels(component, name, team);
    Deployment {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        metadata: meta(config, name, labels.clone()),
        spec: DeploymentSpec {
            replicas: scale::replicas(config),
            selector: names.instance(component, name),
            template: PodTemplate {
                metadata: TemplateMeta { labels },
                spec: pod,
            },
        },
    }
}

fn service(
    config: &DeployConfig,
    names: &ScopeNames,
    component: &str,
    name: &str,
    team: Option<&Segment>,
) -> Service {
    Service {
        api_version: "v1".into(),
        kind: "Service".into(),
        metadata: meta(config, name, names.labels(component, name, team)),
        spec: ServiceSpec {
            selector: names.instance(component, name).match_labels,
            ports: vec![ServicePort {
                name: "http".into(),
                port: PORT,
                target_port: "http".into(),
                protocol: "TCP".into(),
            }],
        },
    }
}

fn policy(
    config: &DeployConfig,
    names: &ScopeNames,
    what: &str,
    spec: NetworkPolicySpec,
) -> Object {
    let name = names.policy(what, None);
    Object::NetworkPolicy(NetworkPolicy {
        api_version: "networking.k8s.io/v1".into(),
        kind: "NetworkPolicy".into(),
        metadata: meta(config, &name, names.labels("gtc-network", &name, None)),
        spec,
    })
}

fn pods(selector: LabelSelector) -> PolicyPeer {
    PolicyPeer {
        pod_selector: Some(selector),
        ..PolicyPeer::default()
    }
}

fn tcp(port: i32) -> PolicyPort {
    PolicyPort {
        protocol: "TCP".into(),
        port,
    }
}

/// The scope's NetworkPolicies. Each selects only this scope's pods (by the env
/// and tenant labels), so a neighbour scope in the namespace is unaffected and
/// one scope's router cannot reach another scope's workers.
fn network_policies(
    config: &DeployConfig,
    names: &ScopeNames,
    workers: &[WorkerPlan<'_>],
    vault: Option<&network::VaultNetwork>,
) -> Result<Vec<Object>, RenderError> {
    let both = |types: &[&str]| types.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    let mut out = vec![
        policy(
            config,
            names,
            "default-deny-all",
            NetworkPolicySpec {
                pod_selector: names.all(),
                policy_types: both(&["Ingress", "Egress"]),
                ingress: vec![],
                egress: vec![],
            },
        ),
        policy(
            config,
            names,
            "allow-dns-egress",
            NetworkPolicySpec {
                pod_selector: names.all(),
                policy_types: both(&["Egress"]),
                ingress: vec![],
                egress: vec![network::dns_rule(&config.dns)?],
            },
        ),
        policy(
            config,
            names,
            "allow-webhooks-to-router",
            NetworkPolicySpec {
                pod_selector: names.component(ROUTER),
                policy_types: both(&["Ingress"]),
                ingress: vec![PolicyRule {
                    ports: vec![tcp(PORT)],
                    ..PolicyRule::default()
                }],
                egress: vec![],
            },
        ),
        policy(
            config,
            names,
            "allow-router-to-worker",
            NetworkPolicySpec {
                pod_selector: names.component(ROUTER),
                policy_types: both(&["Egress"]),
                ingress: vec![],
                egress: vec![PolicyRule {
                    to: Some(vec![pods(names.component(WORKER))]),
                    ports: vec![tcp(PORT)],
                    ..PolicyRule::default()
                }],
            },
        ),
        policy(
            config,
            names,
            "allow-worker-ingress-from-router",
            NetworkPolicySpec {
                pod_selector: names.component(WORKER),
                policy_types: both(&["Ingress"]),
                ingress: vec![PolicyRule {
                    from: Some(vec![pods(names.component(ROUTER))]),
                    ports: vec![tcp(PORT)],
                    ..PolicyRule::default()
                }],
                egress: vec![],
            },
        ),
    ];
    if let Some(vault) = vault {
        out.push(policy(
            config,
            names,
            "allow-worker-egress-to-vault",
            NetworkPolicySpec {
                pod_selector: names.component(WORKER),
                policy_types: both(&["Egress"]),
                ingress: vec![],
                egress: vec![network::vault_rule(vault)],
            },
        ));
    }
    out.extend(network::metrics_objects(config, names, PORT)?);
    out.extend(network::bundle_egress_policies(
        config,
        names,
        workers,
        &config.egress_allowlists,
    )?);
    Ok(out)
}

/// The checks that do not depend on the backend.
fn check_arguments(config: &DeployConfig) -> Result<(), RenderError> {
    validate::dns_label("namespace", &config.namespace)?;
    // env and tenant become a Vault role name and label values.
    validate::label_value("env", config.env.as_str())?;
    validate::label_value("tenant", config.tenant.as_str())?;
    validate::image(&config.image)?;
    scale::check(config)?;
    for (flag, value) in [
        ("kv-mount", &config.layout.kv_mount),
        ("kv-prefix", &config.layout.kv_prefix),
        ("transit-mount", &config.layout.transit_mount),
    ] {
        validate::vault_path(flag, value)?;
    }
    for (flag, value) in [
        ("transit-key", &config.layout.transit_key),
        ("transit-legacy-key", &config.layout.legacy_transit_key),
    ] {
        if let Some(value) = value {
            validate::vault_path(flag, value)?;
        }
    }
    // A team becomes a label value (and, with isolated teams, part of the
    // worker's name, checked by `names`).
    for bundle in &config.bundles {
        if let TeamSlot::Team(team) = &bundle.team {
            validate::label_value("bundle", team.as_str())?;
        }
    }
    if let Some(account) = &config.service_account {
        validate::dns_subdomain("service-account", account)?;
    }
    if let Some(role) = &config.vault_role {
        validate::vault_path("vault-role", role)?;
        if role.contains('/') {
            return Err(RenderError::Invalid(format!(
                "--vault-role {role:?}: a role name has no '/'"
            )));
        }
    }
    if let Some(namespace) = &config.vault_enterprise_namespace {
        validate::vault_path("vault-enterprise-namespace", namespace)?;
    }
    if let Some(ca) = &config.vault_ca {
        validate::dns_subdomain("vault-cacert-configmap", &ca.config_map)?;
        let key_ok = !ca.key.is_empty()
            && ca.key.len() <= 253
            && ca.key != "."
            && ca.key != ".."
            && ca
                .key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !key_ok {
            return Err(RenderError::Invalid(format!(
                "--vault-cacert-key {:?}: a ConfigMap key is letters, digits, '-', '_' and '.'",
                ca.key
            )));
        }
    }
    Ok(())
}

/// Decides the workers: one for the tenant, or one per team.
fn plan_workers<'a>(
    config: &'a DeployConfig,
    names: &ScopeNames,
) -> Result<Vec<WorkerPlan<'a>>, RenderError> {
    let mut teams: BTreeMap<&Segment, Vec<&DeployedBundle>> = BTreeMap::new();
    let mut tenant_wide = Vec::new();
    for bundle in &config.bundles {
        match &bundle.team {
            TeamSlot::Team(team) => teams.entry(team).or_default().push(bundle),
            TeamSlot::TenantWide => tenant_wide.push(bundle),
        }
    }
    let isolated = match config.team_workers {
        TeamWorkers::Isolated => true,
        TeamWorkers::Shared => false,
        TeamWorkers::Auto => teams.len() > 1,
    };
    if !isolated {
        let name = names.worker(None)?;
        let identity = names.identity(None)?;
        let service_account = config
            .service_account
            .clone()
            .unwrap_or_else(|| identity.clone());
        let role = config.vault_role.clone().unwrap_or(identity);
        return Ok(vec![WorkerPlan {
            name,
            service_account,
            role,
            team: None,
            bundles: config.bundles.iter().collect(),
        }]);
    }
    let why = if config.team_workers == TeamWorkers::Auto {
        "the bundles belong to more than one team, so each team gets its own worker and Vault \
         identity (pass --shared-worker to keep one worker for the tenant)"
    } else {
        "--isolate-teams gives each team its own worker and Vault identity"
    };
    if let Some(bundle) = tenant_wide.first() {
        return Err(RenderError::Invalid(format!(
            "--bundle {}: {why}; assign this bundle to a team (NAME=TEAM) — it still reads \
             the tenant-wide secrets (team `_`) from there",
            bundle.name
        )));
    }
    if config.vault_role.is_some() || config.service_account.is_some() {
        return Err(RenderError::Invalid(format!(
            "--vault-role / --service-account name one identity, but {why}: each team's worker \
             uses gtc-worker-ENV-TENANT-TEAM (what vault-bootstrap.sh writes with TEAMS)"
        )));
    }
    if config.routes.is_empty() {
        return Err(RenderError::Invalid(format!(
            "{why}, and the router must know which routes belong to which team: pass \
             --bundles-dir DIR (the bundles baked into the image, DIR/NAME/bundle.toml)"
        )));
    }
    teams
        .into_iter()
        .map(|(team, bundles)| {
            let name = names.worker(Some(team))?;
            let identity = names.identity(Some(team))?;
            Ok(WorkerPlan {
                service_account: identity.clone(),
                role: identity,
                name,
                team: Some(team.clone()),
                bundles,
            })
        })
        .collect()
}

/// `gtc route` arguments: one upstream for a shared worker, else each bundle's
/// route prefixes to its team's worker (a prefix claimed by two teams is refused).
fn router_upstreams(
    config: &DeployConfig,
    workers: &[WorkerPlan<'_>],
) -> Result<Vec<String>, RenderError> {
    let url =
        |worker: &WorkerPlan<'_>| format!("http://{}.{}.svc:{PORT}", worker.name, config.namespace);
    if let [only] = workers
        && only.team.is_none()
    {
        return Ok(vec![format!("--upstream={}", url(only))]);
    }
    let mut claimed: BTreeMap<&str, &str> = BTreeMap::new();
    let mut args = Vec::new();
    for worker in workers {
        for bundle in &worker.bundles {
            let routes = config.routes.get(&bundle.name).ok_or_else(|| {
                RenderError::Invalid(format!(
                    "--bundle {}: no bundle.toml for it under --bundles-dir",
                    bundle.name
                ))
            })?;
            for route in routes {
                if let Some(other) = claimed.insert(route, &worker.name) {
                    if other != worker.name {
                        return Err(RenderError::Invalid(format!(
                            "route {route:?} is served by bundles of two teams ({other} and {}); \
                             the router cannot split it",
                            worker.name
                        )));
                    }
                    continue;
                }
                args.push(format!("--upstream={route}={}", url(worker)));
            }
        }
    }
    Ok(args)
}

/// Renders every object, in apply order.
pub fn render(config: &DeployConfig) -> Result<Vec<Object>, RenderError> {
    if config.bundles.is_empty() {
        return Err(RenderError::Invalid(
            "at least one --bundle NAME[=TEAM] is required".into(),
        ));
    }
    check_arguments(config)?;
    let names = ScopeNames::new(&config.env, &config.tenant)?;
    let workers = plan_workers(config, &names)?;
    // Where Vault is decides the workers' egress rule (one for all of them).
    let vault_network = match config.backend {
        BackendKind::Vault => {
            if config.dev_store.is_some() {
                return Err(RenderError::Invalid(
                    "--dev-store is for --backend dev-store; with the vault backend no secret \
                     is shipped in the cluster: drop --dev-store (or pass --backend dev-store)"
                        .into(),
                ));
            }
            let addr = config.vault_addr.as_deref().ok_or_else(|| {
                RenderError::Invalid("--vault-addr is required with --backend vault".into())
            })?;
            Some(config.vault_network.resolve(&validate::vault_addr(addr)?)?)
        }
        BackendKind::DevStore => None,
    };
    let mut objects = Vec::new();
    if config.backend == BackendKind::DevStore {
        // Every worker of the scope mounts the same dev store (development only).
        let store = config.dev_store.clone().unwrap_or_else(|| {
            "{\"format\":\"greentic-dev-store\",\"version\":1,\"secrets\":{}}".to_string()
        });
        let secret_name = names.dev_secret();
        objects.push(Object::Secret(Secret {
            api_version: "v1".into(),
            kind: "Secret".into(),
            metadata: meta(
                config,
                &secret_name,
                names.labels(WORKER, &secret_name, None),
            ),
            type_: "Opaque".into(),
            string_data: BTreeMap::from([("dev-store.json".to_string(), store)]),
        }));
    }
    for worker in &workers {
        objects.extend(worker_objects(config, &names, worker)?);
    }

    let mut router_args = vec!["route".to_string()];
    router_args.extend(router_upstreams(config, &workers)?);
    router_args.push(format!("--listen=0.0.0.0:{PORT}"));
    // With a Prometheus to scrape it, the router serves its own metrics (503s for
    // routes with no ready worker, by cause) on a port of their own, never on
    // the public one.
    let router_metrics = config.metrics.from_namespace.is_some();
    if router_metrics {
        router_args.push(format!("--metrics-listen=0.0.0.0:{ROUTER_METRICS_PORT}"));
    }
    let router_name = names.router();
    let mut router = container(
        ROUTER,
        &config.image,
        config.image_pull_policy,
        router_args,
        vec![env("GTC_LOG_FORMAT", "json")],
        config.scale.router.resources("router")?,
        vec![],
    );
    if router_metrics {
        router.ports.push(ContainerPort {
            name: "metrics".into(),
            container_port: ROUTER_METRICS_PORT,
            protocol: "TCP".into(),
        });
    }
    objects.push(Object::Deployment(deployment(
        config,
        &names,
        ROUTER,
        &router_name,
        None,
        PodSpec {
            service_account_name: None,
            automount_service_account_token: false,
            security_context: pod_security(),
            containers: vec![router],
            volumes: vec![],
            topology_spread_constraints: scale::spread(
                config,
                names.instance(ROUTER, &router_name),
            ),
        },
    )));
    objects.push(Object::Service(service(
        config,
        &names,
        ROUTER,
        &router_name,
        None,
    )));
    objects.extend(scale::objects(config, &names, ROUTER, &router_name, None));
    objects.extend(network_policies(
        config,
        &names,
        &workers,
        vault_network.as_ref(),
    )?);
    if let Some(network::VaultNetwork::External { .. }) = &vault_network {
        objects.extend(reviewer_objects(config, &names));
    }
    existing::check(&objects, &config.existing)?;
    Ok(objects)
}

/// An external Vault's reviewer identity, as Vault's Kubernetes auth documents
/// it: a ServiceAccount of its own (no token mounted anywhere) bound to
/// `system:auth-delegator`, so that Vault's TokenReview calls authenticate as it
/// (`token_reviewer_jwt`, given to `vault-bootstrap.sh` as
/// `TOKEN_REVIEWER_JWT_FILE`). The worker's own token (audience `vault`) cannot
/// do it: the API server does not accept that audience.
fn reviewer_objects(config: &DeployConfig, names: &ScopeNames) -> Vec<Object> {
    let name = names.reviewer();
    let mut account = meta(config, &name, names.labels(names::REVIEWER, &name, None));
    account.annotations.insert(
        "greentic.ai/reviewer-token".into(),
        format!(
            "kubectl create token {name} -n {} --duration=8760h > reviewer.jwt; \
             vault-bootstrap.sh with TOKEN_REVIEWER_JWT_FILE=reviewer.jwt (renew it before it \
             expires; the API server may cap the duration)",
            config.namespace
        ),
    );
    let binding = names.reviewer_binding(&config.namespace);
    let mut binding_meta = meta(
        config,
        &binding,
        names.labels(names::REVIEWER, &binding, None),
    );
    binding_meta.namespace = String::new();
    vec![
        Object::ServiceAccount(ServiceAccount {
            api_version: "v1".into(),
            kind: "ServiceAccount".into(),
            metadata: account,
            automount_service_account_token: false,
        }),
        Object::ClusterRoleBinding(ClusterRoleBinding {
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: "ClusterRoleBinding".into(),
            metadata: binding_meta,
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: "system:auth-delegator".into(),
            },
            subjects: vec![Subject {
                kind: "ServiceAccount".into(),
                name,
                namespace: config.namespace.clone(),
            }],
        }),
    ]
}

/// One worker's objects: its ServiceAccount (vault) or dev-store Secret, its
/// Deployment and its Service.
fn worker_objects(
    config: &DeployConfig,
    names: &ScopeNames,
    worker: &WorkerPlan<'_>,
) -> Result<Vec<Object>, RenderError> {
    let team = worker.team.as_ref();
    let mut objects = Vec::new();
    let mut worker_env = vec![
        env("GREENTIC_ENV", config.env.as_str()),
        env("GREENTIC_TENANT", config.tenant.as_str()),
        env("GTC_LISTEN", format!("0.0.0.0:{PORT}")),
        env("GTC_LOG_FORMAT", "json"),
    ];
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    let mut service_account = None;
    match config.backend {
        BackendKind::Vault => {
            let addr = config.vault_addr.clone().ok_or_else(|| {
                RenderError::Invalid("--vault-addr is required with --backend vault".into())
            })?;
            let url = validate::vault_addr(&addr)?;
            worker_env.push(env("GREENTIC_SECRETS_BACKEND", "vault"));
            worker_env.push(env("VAULT_ADDR", addr.clone()));
            worker_env.push(env("VAULT_K8S_ROLE", worker.role.clone()));
            worker_env.push(env(
                "VAULT_K8S_TOKEN_PATH",
                format!("{VAULT_TOKEN_DIR}/token"),
            ));
            if let Some(namespace) = &config.vault_enterprise_namespace {
                worker_env.push(env("VAULT_NAMESPACE", namespace.clone()));
            }
            if let Some(ca) = &config.vault_ca {
                if url.scheme() != "https" {
                    return Err(RenderError::Invalid(format!(
                        "--vault-cacert-configmap is for an https:// Vault; --vault-addr is {addr}"
                    )));
                }
                worker_env.push(env("VAULT_CACERT", format!("{VAULT_CA_DIR}/{}", ca.key)));
                volumes.push(Volume {
                    name: "vault-ca".into(),
                    projected: None,
                    secret: None,
                    empty_dir: None,
                    config_map: Some(ConfigMapVolume {
                        name: ca.config_map.clone(),
                        items: vec![KeyToPath {
                            key: ca.key.clone(),
                            path: ca.key.clone(),
                        }],
                        default_mode: 0o444,
                    }),
                });
                mounts.push(VolumeMount {
                    name: "vault-ca".into(),
                    mount_path: VAULT_CA_DIR.into(),
                    read_only: true,
                });
            }
            let defaults = crate::secrets::backend::VaultLayout::default();
            for (var, value, default) in [
                (
                    "VAULT_KV_MOUNT",
                    &config.layout.kv_mount,
                    &defaults.kv_mount,
                ),
                (
                    "VAULT_KV_PREFIX",
                    &config.layout.kv_prefix,
                    &defaults.kv_prefix,
                ),
                (
                    "VAULT_TRANSIT_MOUNT",
                    &config.layout.transit_mount,
                    &defaults.transit_mount,
                ),
            ] {
                if value != default {
                    worker_env.push(env(var, value.clone()));
                }
            }
            for (var, value) in [
                ("VAULT_TRANSIT_KEY", &config.layout.transit_key),
                (
                    "VAULT_TRANSIT_LEGACY_KEY",
                    &config.layout.legacy_transit_key,
                ),
            ] {
                if let Some(value) = value {
                    worker_env.push(env(var, value.clone()));
                }
            }
            objects.push(Object::ServiceAccount(ServiceAccount {
                api_version: "v1".into(),
                kind: "ServiceAccount".into(),
                metadata: meta(
                    config,
                    &worker.service_account,
                    names.labels(WORKER, &worker.name, team),
                ),
                // The API token is never mounted; only the Vault-audience projection.
                automount_service_account_token: false,
            }));
            service_account = Some(worker.service_account.clone());
            volumes.push(Volume {
                name: "vault-token".into(),
                projected: Some(ProjectedVolume {
                    sources: vec![ProjectedSource {
                        service_account_token: ServiceAccountTokenProjection {
                            audience: "vault".into(),
                            expiration_seconds: 600,
                            path: "token".into(),
                        },
                    }],
                }),
                secret: None,
                empty_dir: None,
                config_map: None,
            });
            mounts.push(VolumeMount {
                name: "vault-token".into(),
                mount_path: VAULT_TOKEN_DIR.into(),
                read_only: true,
            });
        }
        BackendKind::DevStore => {
            worker_env.push(env("GREENTIC_SECRETS_BACKEND", "dev-store"));
            worker_env.push(env(
                "GREENTIC_DEV_STORE",
                format!("{DEV_STORE_DIR}/dev-store.json"),
            ));
            // Files of a Secret volume belong to root and the pod's fsGroup
            // (65532, the worker's group): group-read, nothing for others.
            volumes.push(Volume {
                name: "dev-store".into(),
                projected: None,
                secret: Some(SecretVolume {
                    secret_name: names.dev_secret(),
                    default_mode: DEV_STORE_MODE,
                }),
                empty_dir: None,
                config_map: None,
            });
            mounts.push(VolumeMount {
                name: "dev-store".into(),
                mount_path: DEV_STORE_DIR.into(),
                read_only: true,
            });
        }
    }
    volumes.push(Volume {
        name: "tmp".into(),
        projected: None,
        secret: None,
        empty_dir: Some(EmptyDir {
            size_limit: "64Mi".into(),
        }),
        config_map: None,
    });
    mounts.push(VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        read_only: false,
    });
    let mut worker_args = vec!["serve".to_string()];
    for bundle in &worker.bundles {
        worker_args.push(format!(
            "--bundle={BUNDLES_DIR}/{}={}",
            bundle.name,
            bundle.team.as_str()
        ));
    }
    let container = container(
        WORKER,
        &config.image,
        config.image_pull_policy,
        worker_args,
        worker_env,
        config.scale.worker.resources("worker")?,
        mounts,
    );
    objects.push(Object::Deployment(deployment(
        config,
        names,
        WORKER,
        &worker.name,
        team,
        PodSpec {
            service_account_name: service_account,
            automount_service_account_token: false,
            security_context: pod_security(),
            containers: vec![container],
            volumes,
            topology_spread_constraints: scale::spread(
                config,
                names.instance(WORKER, &worker.name),
            ),
        },
    )));
    objects.push(Object::Service(service(
        config,
        names,
        WORKER,
        &worker.name,
        team,
    )));
    objects.extend(scale::objects(config, names, WORKER, &worker.name, team));
    Ok(objects)
}

/// `gtc deploy render` as a command: the manifests as YAML on stdout.
/// The rendered manifests as YAML, for the caller to write (`main` writes it,
/// turning a closed pipe into an error rather than a panic).
pub fn render_yaml(config: &DeployConfig) -> Result<String, RenderError> {
    to_yaml(&render(config)?)
}

/// The objects as a multi-document YAML stream.
pub fn to_yaml(objects: &[Object]) -> Result<String, RenderError> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(
            &serde_norway::to_string(object).map_err(|e| RenderError::Serialise(e.to_string()))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(backend: BackendKind) -> DeployConfig {
        DeployConfig {
            env: Segment::parse("prod").unwrap(),
            tenant: Segment::parse("acme").unwrap(),
            namespace: "greentic".into(),
            image: "registry.example/gtc:1".into(),
            backend,
            vault_addr: Some("http://vault.vault.svc:8200".into()),
            vault_role: None,
            service_account: None,
            vault_network: network::VaultNetworkFlags::default(),
            vault_ca: None,
            vault_enterprise_namespace: None,
            layout: crate::secrets::backend::VaultLayout::default(),
            bundles: vec!["webchat-bot=support".parse().unwrap()],
            routes: BTreeMap::new(),
            team_workers: TeamWorkers::Auto,
            replicas: 2,
            dev_store: None,
            dns: network::DnsFlags::default(),
            metrics: network::MetricsFlags::default(),
            egress: Vec::new(),
            egress_allowlists: Vec::new(),
            scale: scale::ScaleFlags::default(),
            image_pull_policy: None,
            existing: Vec::new(),
        }
    }

    fn teams_config() -> DeployConfig {
        let mut config = config(BackendKind::Vault);
        config.bundles = vec![
            "webchat-bot=support".parse().unwrap(),
            "hello=sales".parse().unwrap(),
        ];
        for (bundle, route) in [("webchat-bot", "/webhook"), ("hello", "/hello")] {
            config
                .routes
                .insert(Segment::parse(bundle).unwrap(), vec![route.to_string()]);
        }
        config
    }

    #[test]
    fn vault_render_has_no_secret_and_token_only_for_worker() {
        let objects = render(&config(BackendKind::Vault)).unwrap();
        assert!(objects.iter().all(|o| o.kind() != "Secret"));
        let yaml = to_yaml(&objects).unwrap();
        assert!(yaml.contains("VAULT_K8S_ROLE") && yaml.contains("gtc-worker-prod-acme"));
        assert!(
            !yaml.contains("VAULT_KV_MOUNT") && !yaml.contains("VAULT_TRANSIT_KEY"),
            "defaults are not repeated"
        );
        // A token only for the worker: its pod mounts the Vault-audience projection
        // (never the API token); the router's pod mounts no token at all.
        let deployments: Vec<(String, String)> = objects
            .iter()
            .filter(|o| o.kind() == "Deployment")
            .map(|o| {
                (
                    o.name().to_string(),
                    to_yaml(std::slice::from_ref(o)).unwrap(),
                )
            })
            .collect();
        let worker = deployments
            .iter()
            .find(|(name, _)| name.starts_with("gtc-worker"))
            .map(|(_, yaml)| yaml)
            .expect("a worker Deployment");
        assert!(worker.contains("serviceAccountToken:"), "{worker}");
        assert!(
            worker.lines().any(|l| l.trim() == "audience: vault"),
            "{worker}"
        );
        assert!(
            worker.contains("automountServiceAccountToken: false"),
            "{worker}"
        );
        let router = deployments
            .iter()
            .find(|(name, _)| name.starts_with("gtc-router"))
            .map(|(_, yaml)| yaml)
            .expect("a router Deployment");
        assert!(!router.contains("serviceAccountToken:"), "{router}");
        assert!(!router.contains("audience:"), "{router}");
        assert!(
            router.contains("automountServiceAccountToken: false"),
            "{router}"
        );
        let mut custom = config(BackendKind::Vault);
        custom.layout.kv_prefix = "other".into();
        custom.layout.legacy_transit_key = Some("greentic".into());
        let yaml = to_yaml(&render(&custom).unwrap()).unwrap();
        assert!(yaml.contains("VAULT_KV_PREFIX") && yaml.contains("VAULT_TRANSIT_LEGACY_KEY"));
    }

    #[test]
    fn dev_store_render_keeps_its_secret_and_vault_needs_an_address() {
        let objects = render(&config(BackendKind::DevStore)).unwrap();
        assert!(
            objects
                .iter()
                .any(|o| o.kind() == "Secret" && o.name() == "gtc-dev-secrets-prod-acme")
        );
        assert!(objects.iter().all(|o| o.kind() != "ServiceAccount"));
        let mut no_addr = config(BackendKind::Vault);
        no_addr.vault_addr = None;
        assert!(render(&no_addr).is_err());
    }

    #[test]
    fn the_shared_worker_keeps_an_explicit_service_account() {
        let mut legacy = config(BackendKind::Vault);
        legacy.service_account = Some(WORKER.into());
        let objects = render(&legacy).unwrap();
        assert!(
            objects
                .iter()
                .any(|o| o.kind() == "ServiceAccount" && o.name() == WORKER)
        );
        let yaml = to_yaml(&objects).unwrap();
        assert!(yaml.contains("serviceAccountName: gtc-worker\n"));
        // Its Deployment and role still name the scope.
        assert!(
            yaml.contains("name: gtc-worker-prod-acme\n")
                && yaml.contains("value: gtc-worker-prod-acme\n")
        );
    }

    #[test]
    fn teams_get_their_own_worker_and_the_router_splits_routes() {
        let objects = render(&teams_config()).unwrap();
        let named = |kind: &str| -> Vec<String> {
            objects
                .iter()
                .filter(|o| o.kind() == kind)
                .map(|o| o.name().to_string())
                .collect()
        };
        assert_eq!(
            named("ServiceAccount"),
            ["gtc-worker-prod-acme-sales", "gtc-worker-prod-acme-support"]
        );
        assert_eq!(
            named("Deployment"),
            [
                "gtc-worker-prod-acme-sales",
                "gtc-worker-prod-acme-support",
                "gtc-router-prod-acme"
            ]
        );
        let yaml = to_yaml(&objects).unwrap();
        assert!(
            yaml.contains(
                "--upstream=/webhook=http://gtc-worker-prod-acme-support.greentic.svc:8080"
            )
        );
        assert!(
            yaml.contains("--upstream=/hello=http://gtc-worker-prod-acme-sales.greentic.svc:8080")
        );
        // Shared on request; refused without routes, with a tenant-wide bundle, or
        // with a route claimed by two teams.
        let mut shared = teams_config();
        shared.team_workers = TeamWorkers::Shared;
        assert_eq!(
            render(&shared)
                .unwrap()
                .iter()
                .filter(|o| o.kind() == "Deployment")
                .count(),
            2
        );
        let mut no_routes = teams_config();
        no_routes.routes.clear();
        let error = render(&no_routes).unwrap_err().to_string();
        assert!(error.contains("--bundles-dir"), "{error}");
        let mut tenant_wide = teams_config();
        tenant_wide.bundles.push("probe".parse().unwrap());
        let error = render(&tenant_wide).unwrap_err().to_string();
        assert!(error.contains("assign this bundle to a team"), "{error}");
        let mut clash = teams_config();
        clash
            .routes
            .insert(Segment::parse("hello").unwrap(), vec!["/webhook".into()]);
        let error = render(&clash).unwrap_err().to_string();
        assert!(error.contains("two teams"), "{error}");
        let mut role = teams_config();
        role.vault_role = Some("one-role".into());
        assert!(render(&role).is_err());
    }
}
