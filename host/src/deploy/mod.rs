//! `gtc deploy render`: the Kubernetes manifests of one environment + tenant.
//!
//! With the vault backend the output holds no `Secret` object at all: the worker
//! runs as ServiceAccount `gtc-worker` with a short-lived projected token whose
//! audience is Vault, and fetches every value at run time. Only the worker gets a
//! token; the router (`gtc route`, which forwards webhooks to the worker) runs
//! without one. NetworkPolicies deny everything but DNS, router → worker and
//! worker → Vault (and, when asked, Prometheus → worker and worker → the CIDR
//! blocks of bundles' egress destinations). With the dev-store backend, the dev
//! store travels in a `gtc-dev-secrets` Secret, as before; that backend is for
//! development only.
//!
//! Submodules: [`k8s`] the object types, [`network`] Vault/DNS/metrics/egress
//! rules, [`scale`] PDB/HPA/spread/resources, [`validate`] the argument checks.

pub mod k8s;
pub mod network;
pub mod scale;
pub mod validate;

use crate::config::BackendKind;
use crate::scope::{Segment, TeamSlot};
use k8s::*;
use std::collections::BTreeMap;

pub const WORKER: &str = "gtc-worker";
pub const ROUTER: &str = "gtc-router";
pub const DEV_SECRET: &str = "gtc-dev-secrets";
const PORT: i32 = 8080;
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
        let why = |e: crate::scope::NameError| match e {
            crate::scope::NameError::Malformed(why) => why.to_string(),
            other => other.to_string(),
        };
        Ok(Self {
            name: Segment::parse(name).map_err(|e| bad(format!("bundle name: {}", why(e))))?,
            team: TeamSlot::parse(team).map_err(|e| bad(format!("team: {}", why(e))))?,
        })
    }
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
    /// Where Vault is, for the worker's egress policy (in the cluster or not).
    pub vault_network: network::VaultNetworkFlags,
    /// A ConfigMap holding the CA of Vault's certificate: mounted, `VAULT_CACERT`.
    pub vault_ca: Option<VaultCa>,
    /// A Vault Enterprise / OpenBao namespace: `VAULT_NAMESPACE`.
    pub vault_enterprise_namespace: Option<String>,
    pub layout: crate::backend::VaultLayout,
    pub bundles: Vec<DeployedBundle>,
    pub replicas: i32,
    /// Dev store content for the dev-store backend (a dev-store JSON document).
    pub dev_store: Option<String>,
    pub dns: network::DnsFlags,
    pub metrics: network::MetricsFlags,
    /// CIDR blocks for bundles' egress destinations.
    pub egress: Vec<network::EgressGrant>,
    /// Each deployed bundle's `egress.allow`, when the operator pointed at the
    /// manifests (`--bundle-manifests`): every entry must then have a block.
    pub egress_allowlists: Vec<(String, Vec<crate::egress::Authority>)>,
    pub scale: scale::ScaleFlags,
    /// `None`: Kubernetes' default (IfNotPresent for a tag or digest).
    pub image_pull_policy: Option<PullPolicy>,
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

fn labels(component: &str) -> Labels {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), component.to_string()),
        (
            "app.kubernetes.io/part-of".to_string(),
            "greentic".to_string(),
        ),
    ])
}

fn selector(component: &str) -> LabelSelector {
    LabelSelector {
        match_labels: BTreeMap::from([(
            "app.kubernetes.io/name".to_string(),
            component.to_string(),
        )]),
    }
}

fn meta(config: &DeployConfig, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.to_string(),
        namespace: config.namespace.clone(),
        labels: labels(component),
        annotations: BTreeMap::new(),
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
    name: &str,
    replicas: Option<i32>,
    pod: PodSpec,
) -> Deployment {
    Deployment {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        metadata: meta(config, name, name),
        spec: DeploymentSpec {
            replicas,
            selector: selector(name),
            template: PodTemplate {
                metadata: TemplateMeta {
                    labels: labels(name),
                },
                spec: pod,
            },
        },
    }
}

fn service(config: &DeployConfig, name: &str) -> Service {
    Service {
        api_version: "v1".into(),
        kind: "Service".into(),
        metadata: meta(config, name, name),
        spec: ServiceSpec {
            selector: selector(name).match_labels,
            ports: vec![ServicePort {
                name: "http".into(),
                port: PORT,
                target_port: "http".into(),
                protocol: "TCP".into(),
            }],
        },
    }
}

fn policy(config: &DeployConfig, name: &str, spec: NetworkPolicySpec) -> Object {
    Object::NetworkPolicy(NetworkPolicy {
        api_version: "networking.k8s.io/v1".into(),
        kind: "NetworkPolicy".into(),
        metadata: meta(config, name, "gtc-network"),
        spec,
    })
}

fn pods(component: &str) -> PolicyPeer {
    PolicyPeer {
        pod_selector: Some(selector(component)),
        ..PolicyPeer::default()
    }
}

fn tcp(port: i32) -> PolicyPort {
    PolicyPort {
        protocol: "TCP".into(),
        port,
    }
}

fn network_policies(
    config: &DeployConfig,
    vault: Option<&network::VaultNetwork>,
) -> Result<Vec<Object>, RenderError> {
    let both = |types: &[&str]| types.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    let mut out = vec![
        policy(
            config,
            "default-deny-all",
            NetworkPolicySpec {
                pod_selector: LabelSelector::default(),
                policy_types: both(&["Ingress", "Egress"]),
                ingress: vec![],
                egress: vec![],
            },
        ),
        policy(
            config,
            "allow-dns-egress",
            NetworkPolicySpec {
                pod_selector: LabelSelector::default(),
                policy_types: both(&["Egress"]),
                ingress: vec![],
                egress: vec![network::dns_rule(&config.dns)?],
            },
        ),
        policy(
            config,
            "allow-webhooks-to-router",
            NetworkPolicySpec {
                pod_selector: selector(ROUTER),
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
            "allow-router-to-worker",
            NetworkPolicySpec {
                pod_selector: selector(ROUTER),
                policy_types: both(&["Egress"]),
                ingress: vec![],
                egress: vec![PolicyRule {
                    to: Some(vec![pods(WORKER)]),
                    ports: vec![tcp(PORT)],
                    ..PolicyRule::default()
                }],
            },
        ),
        policy(
            config,
            "allow-worker-ingress-from-router",
            NetworkPolicySpec {
                pod_selector: selector(WORKER),
                policy_types: both(&["Ingress"]),
                ingress: vec![PolicyRule {
                    from: Some(vec![pods(ROUTER)]),
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
            "allow-worker-egress-to-vault",
            NetworkPolicySpec {
                pod_selector: selector(WORKER),
                policy_types: both(&["Egress"]),
                ingress: vec![],
                egress: vec![network::vault_rule(vault)],
            },
        ));
    }
    out.extend(network::metrics_objects(config, PORT)?);
    out.extend(network::bundle_egress_policy(
        config,
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
        ("transit-key", &config.layout.transit_key),
    ] {
        validate::vault_path(flag, value)?;
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

/// Renders every object, in apply order.
pub fn render(config: &DeployConfig) -> Result<Vec<Object>, RenderError> {
    if config.bundles.is_empty() {
        return Err(RenderError::Invalid(
            "at least one --bundle NAME[=TEAM] is required".into(),
        ));
    }
    check_arguments(config)?;
    let mut objects = Vec::new();
    let mut vault_network = None;
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
            vault_network = Some(config.vault_network.resolve(&url)?);
            let role = config
                .vault_role
                .clone()
                .unwrap_or_else(|| format!("{WORKER}-{}-{}", config.env, config.tenant));
            worker_env.push(env("GREENTIC_SECRETS_BACKEND", "vault"));
            worker_env.push(env("VAULT_ADDR", addr.clone()));
            worker_env.push(env("VAULT_K8S_ROLE", role));
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
            let defaults = crate::backend::VaultLayout::default();
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
                (
                    "VAULT_TRANSIT_KEY",
                    &config.layout.transit_key,
                    &defaults.transit_key,
                ),
            ] {
                if value != default {
                    worker_env.push(env(var, value.clone()));
                }
            }
            objects.push(Object::ServiceAccount(ServiceAccount {
                api_version: "v1".into(),
                kind: "ServiceAccount".into(),
                metadata: meta(config, WORKER, WORKER),
                // The API token is never mounted; only the Vault-audience projection.
                automount_service_account_token: false,
            }));
            service_account = Some(WORKER.to_string());
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
            let store = config.dev_store.clone().unwrap_or_else(|| {
                "{\"format\":\"greentic-dev-store\",\"version\":1,\"secrets\":{}}".to_string()
            });
            objects.push(Object::Secret(Secret {
                api_version: "v1".into(),
                kind: "Secret".into(),
                metadata: meta(config, DEV_SECRET, WORKER),
                type_: "Opaque".into(),
                string_data: BTreeMap::from([("dev-store.json".to_string(), store)]),
            }));
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
                    secret_name: DEV_SECRET.into(),
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
    for bundle in &config.bundles {
        worker_args.push(format!(
            "--bundle={BUNDLES_DIR}/{}={}",
            bundle.name,
            bundle.team.as_str()
        ));
    }
    let worker = container(
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
        WORKER,
        scale::replicas(config),
        PodSpec {
            service_account_name: service_account,
            automount_service_account_token: false,
            security_context: pod_security(),
            containers: vec![worker],
            volumes,
            topology_spread_constraints: scale::spread(config, WORKER),
        },
    )));
    objects.push(Object::Service(service(config, WORKER)));
    objects.extend(scale::objects(config, WORKER));

    let router_args = vec![
        "route".to_string(),
        format!("--upstream=http://{WORKER}.{}.svc:{PORT}", config.namespace),
        format!("--listen=0.0.0.0:{PORT}"),
    ];
    let router = container(
        ROUTER,
        &config.image,
        config.image_pull_policy,
        router_args,
        vec![env("GTC_LOG_FORMAT", "json")],
        config.scale.router.resources("router")?,
        vec![],
    );
    objects.push(Object::Deployment(deployment(
        config,
        ROUTER,
        scale::replicas(config),
        PodSpec {
            service_account_name: None,
            automount_service_account_token: false,
            security_context: pod_security(),
            containers: vec![router],
            volumes: vec![],
            topology_spread_constraints: scale::spread(config, ROUTER),
        },
    )));
    objects.push(Object::Service(service(config, ROUTER)));
    objects.extend(scale::objects(config, ROUTER));
    objects.extend(network_policies(config, vault_network.as_ref())?);
    Ok(objects)
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
            vault_network: network::VaultNetworkFlags::default(),
            vault_ca: None,
            vault_enterprise_namespace: None,
            layout: crate::backend::VaultLayout::default(),
            bundles: vec!["webchat-bot=support".parse().unwrap()],
            replicas: 2,
            dev_store: None,
            dns: network::DnsFlags::default(),
            metrics: network::MetricsFlags::default(),
            egress: Vec::new(),
            egress_allowlists: Vec::new(),
            scale: scale::ScaleFlags::default(),
            image_pull_policy: None,
        }
    }

    #[test]
    fn vault_render_has_no_secret_and_token_only_for_worker() {
        let objects = render(&config(BackendKind::Vault)).unwrap();
        assert!(objects.iter().all(|o| o.kind() != "Secret"));
        let yaml = to_yaml(&objects).unwrap();
        assert!(yaml.contains("VAULT_K8S_ROLE") && yaml.contains("gtc-worker-prod-acme"));
        assert!(
            !yaml.contains("VAULT_KV_MOUNT"),
            "defaults are not repeated"
        );
        let mut custom = config(BackendKind::Vault);
        custom.layout.kv_prefix = "other".into();
        assert!(
            to_yaml(&render(&custom).unwrap())
                .unwrap()
                .contains("VAULT_KV_PREFIX")
        );
    }

    #[test]
    fn dev_store_render_keeps_its_secret_and_vault_needs_an_address() {
        let objects = render(&config(BackendKind::DevStore)).unwrap();
        assert!(
            objects
                .iter()
                .any(|o| o.kind() == "Secret" && o.name() == DEV_SECRET)
        );
        assert!(objects.iter().all(|o| o.kind() != "ServiceAccount"));
        let mut no_addr = config(BackendKind::Vault);
        no_addr.vault_addr = None;
        assert!(render(&no_addr).is_err());
    }
}
