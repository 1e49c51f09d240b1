//! The network side of a render: where Vault is (in the cluster, or outside it
//! behind CIDR blocks), where DNS is, who may scrape metrics, and which
//! destinations bundles may call.
//!
//! NetworkPolicy matches pods (by namespace and labels) and IP blocks, and ports
//! *as the pod sees them* (after a Service's port mapping). It cannot match host
//! names: a bundle's `[egress].allow = ["api.example.com:443"]` becomes a rule
//! only once the operator says which CIDR blocks that name stands for. The
//! renderer refuses to guess: an address that is not a cluster Service name
//! needs `--vault-mode external --vault-cidr ...` (or `--vault-mode in-cluster`).

use super::validate;
use super::{RenderError, ScopeNames, WORKER, policy, tcp};
use crate::bundle::authority::Authority;
use crate::ops::deploy::k8s::*;
use std::collections::BTreeMap;

/// Vault's standard listener port: the pod port behind a Service such as
/// `vault.vault.svc:8200` or `https://vault.vault.svc` (443 → 8200).
pub const VAULT_POD_PORT: u16 = 8200;
/// The label the demo's (and Vault's Helm chart's) pods carry.
pub const VAULT_POD_LABEL: &str = "app.kubernetes.io/name=vault";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VaultMode {
    /// Vault runs as pods in this cluster: the worker's egress rule selects them
    /// by namespace and labels, on their pod port.
    InCluster,
    /// Vault runs outside the cluster: the egress rule names its CIDR blocks.
    External,
}

/// The operator's flags about where Vault is, before they are checked.
#[derive(Debug, Clone, Default)]
pub struct VaultNetworkFlags {
    pub mode: Option<VaultMode>,
    /// In-cluster: the Kubernetes namespace of Vault's pods.
    pub k8s_namespace: Option<String>,
    /// In-cluster: labels of Vault's pods (`KEY=VALUE`).
    pub pod_labels: Vec<String>,
    /// In-cluster: the port Vault's pods listen on.
    pub target_port: Option<u16>,
    /// External: CIDR blocks of Vault's addresses.
    pub cidrs: Vec<String>,
    /// External: the port the worker connects to (default: the address's).
    pub port: Option<u16>,
}

/// Where Vault is, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultNetwork {
    InCluster {
        namespace: String,
        pod_labels: Labels,
        target_port: u16,
    },
    External {
        cidrs: Vec<String>,
        port: u16,
    },
}

/// `NAME.NAMESPACE.svc[.cluster.local]`: the namespace of a cluster Service name.
fn service_namespace(host: &str) -> Option<&str> {
    let host = host.trim_end_matches('.');
    let rest = host
        .strip_suffix(".svc")
        .or_else(|| host.strip_suffix(".svc.cluster.local"))?;
    let (_service, namespace) = rest.rsplit_once('.')?;
    (!namespace.is_empty()).then_some(namespace)
}

impl VaultNetworkFlags {
    /// Decides in-cluster or external from explicit flags, or from an address
    /// that is unmistakably a cluster Service name; anything else is an error.
    pub fn resolve(&self, addr: &reqwest::Url) -> Result<VaultNetwork, RenderError> {
        let host = addr.host_str().unwrap_or_default();
        let service_ns = service_namespace(host);
        let in_cluster_flags = self.k8s_namespace.is_some()
            || !self.pod_labels.is_empty()
            || self.target_port.is_some();
        let external_flags = !self.cidrs.is_empty() || self.port.is_some();
        let mode = match self.mode {
            Some(mode) => mode,
            None if !self.cidrs.is_empty() => VaultMode::External,
            None if service_ns.is_some() || self.k8s_namespace.is_some() => VaultMode::InCluster,
            None => {
                return Err(RenderError::Invalid(format!(
                    "--vault-addr {addr}: cannot tell whether this Vault runs in the cluster \
                     (its host is not a NAME.NAMESPACE.svc Service name); say so: \
                     --vault-mode external --vault-cidr CIDR [--vault-port PORT] for a Vault \
                     outside the cluster, or --vault-mode in-cluster --vault-k8s-namespace NS \
                     [--vault-pod-label KEY=VALUE] [--vault-target-port PORT] for Vault pods"
                )));
            }
        };
        match mode {
            VaultMode::InCluster => {
                if external_flags {
                    return Err(RenderError::Invalid(
                        "--vault-cidr and --vault-port are for --vault-mode external; an \
                         in-cluster Vault is selected by --vault-k8s-namespace, \
                         --vault-pod-label and --vault-target-port"
                            .into(),
                    ));
                }
                let namespace = match (&self.k8s_namespace, service_ns) {
                    (Some(flag), Some(from_host)) if flag != from_host => {
                        return Err(RenderError::Invalid(format!(
                            "--vault-k8s-namespace {flag:?} contradicts --vault-addr {addr}, \
                             a Service in namespace {from_host:?}"
                        )));
                    }
                    (Some(flag), _) => flag.clone(),
                    (None, Some(from_host)) => from_host.to_string(),
                    (None, None) => {
                        return Err(RenderError::Invalid(format!(
                            "--vault-mode in-cluster: pass --vault-k8s-namespace (the namespace \
                             of Vault's pods); {host:?} does not name it"
                        )));
                    }
                };
                validate::dns_label("vault-k8s-namespace", &namespace)?;
                let mut pod_labels = BTreeMap::new();
                let given = if self.pod_labels.is_empty() {
                    vec![VAULT_POD_LABEL.to_string()]
                } else {
                    self.pod_labels.clone()
                };
                for pair in &given {
                    let (key, value) = validate::label("vault-pod-label", pair)?;
                    pod_labels.insert(key, value);
                }
                Ok(VaultNetwork::InCluster {
                    namespace,
                    pod_labels,
                    target_port: self.target_port.unwrap_or(VAULT_POD_PORT),
                })
            }
            VaultMode::External => {
                if in_cluster_flags {
                    return Err(RenderError::Invalid(
                        "--vault-k8s-namespace, --vault-pod-label and --vault-target-port are \
                         for --vault-mode in-cluster; an external Vault is reached through \
                         --vault-cidr and --vault-port"
                            .into(),
                    ));
                }
                if self.cidrs.is_empty() {
                    return Err(RenderError::Invalid(format!(
                        "--vault-mode external needs --vault-cidr (repeatable): the address \
                         blocks {host} resolves to; a NetworkPolicy cannot match host names"
                    )));
                }
                let cidrs = self
                    .cidrs
                    .iter()
                    .map(|c| validate::cidr("vault-cidr", c))
                    .collect::<Result<Vec<_>, _>>()?;
                let port = match self.port.or(addr.port_or_known_default()) {
                    Some(port) => port,
                    None => {
                        return Err(RenderError::Invalid(format!(
                            "--vault-addr {addr} has no port: pass --vault-port"
                        )));
                    }
                };
                Ok(VaultNetwork::External { cidrs, port })
            }
        }
    }
}

fn match_labels(labels: Labels) -> LabelSelector {
    LabelSelector {
        match_labels: labels,
    }
}

fn namespace_named(namespace: &str) -> LabelSelector {
    match_labels(BTreeMap::from([(
        "kubernetes.io/metadata.name".to_string(),
        namespace.to_string(),
    )]))
}

fn ip_block(cidr: &str) -> PolicyPeer {
    PolicyPeer {
        ip_block: Some(IpBlock {
            cidr: cidr.to_string(),
        }),
        ..PolicyPeer::default()
    }
}

/// The worker's egress rule to Vault.
pub fn vault_rule(network: &VaultNetwork) -> PolicyRule {
    match network {
        VaultNetwork::InCluster {
            namespace,
            pod_labels,
            target_port,
        } => PolicyRule {
            to: Some(vec![PolicyPeer {
                namespace_selector: Some(namespace_named(namespace)),
                pod_selector: Some(match_labels(pod_labels.clone())),
                ip_block: None,
            }]),
            ports: vec![tcp(i32::from(*target_port))],
            ..PolicyRule::default()
        },
        VaultNetwork::External { cidrs, port } => PolicyRule {
            to: Some(cidrs.iter().map(|c| ip_block(c)).collect()),
            ports: vec![tcp(i32::from(*port))],
            ..PolicyRule::default()
        },
    }
}

/// Where cluster DNS answers: `--dns-namespace`, `--dns-pod-label`,
/// `--dns-cidr` (e.g. NodeLocal DNSCache's 169.254.20.10/32), `--dns-port`
/// (OpenShift's DNS pods listen on 5353).
#[derive(Debug, Clone)]
pub struct DnsFlags {
    pub namespace: String,
    pub pod_labels: Vec<String>,
    pub cidrs: Vec<String>,
    pub ports: Vec<u16>,
}

impl Default for DnsFlags {
    fn default() -> Self {
        Self {
            namespace: "kube-system".into(),
            pod_labels: vec!["k8s-app=kube-dns".into()],
            cidrs: Vec::new(),
            ports: vec![53],
        }
    }
}

/// Every pod's egress rule to DNS (UDP and TCP on each DNS port).
pub fn dns_rule(dns: &DnsFlags) -> Result<PolicyRule, RenderError> {
    validate::dns_label("dns-namespace", &dns.namespace)?;
    let mut pod_labels = BTreeMap::new();
    for pair in &dns.pod_labels {
        let (key, value) = validate::label("dns-pod-label", pair)?;
        pod_labels.insert(key, value);
    }
    let mut to = vec![PolicyPeer {
        namespace_selector: Some(namespace_named(&dns.namespace)),
        pod_selector: Some(match_labels(pod_labels)),
        ip_block: None,
    }];
    for cidr in &dns.cidrs {
        to.push(ip_block(&validate::cidr("dns-cidr", cidr)?));
    }
    if dns.ports.is_empty() {
        return Err(RenderError::Invalid(
            "--dns-port: at least one port is needed".into(),
        ));
    }
    let mut ports = Vec::new();
    for port in &dns.ports {
        ports.push(PolicyPort {
            protocol: "UDP".into(),
            port: i32::from(*port),
        });
        ports.push(tcp(i32::from(*port)));
    }
    Ok(PolicyRule {
        to: Some(to),
        ports,
        ..PolicyRule::default()
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MonitorKind {
    /// A `ServiceMonitor` selecting the worker's Service.
    ServiceMonitor,
    /// A `PodMonitor` selecting the worker's pods.
    PodMonitor,
}

/// Who scrapes the worker's `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct MetricsFlags {
    /// The namespace Prometheus runs in: admitted to the worker's port.
    pub from_namespace: Option<String>,
    /// Prometheus pods' labels in that namespace (`KEY=VALUE`); none = any pod.
    pub from_pod_labels: Vec<String>,
    /// Render a Prometheus Operator object too.
    pub monitor: Option<MonitorKind>,
    pub interval: String,
    /// Extra labels of the ServiceMonitor/PodMonitor (`KEY=VALUE`), e.g. the
    /// `release` label kube-prometheus-stack's Prometheus selects monitors by.
    pub monitor_labels: Vec<String>,
}

/// The ingress policy admitting Prometheus to the worker's port, and the
/// ServiceMonitor/PodMonitor when asked for.
/// Both select every worker of the scope (one per team with isolated teams).
pub fn metrics_objects(
    config: &super::DeployConfig,
    names: &ScopeNames,
    port: i32,
) -> Result<Vec<Object>, RenderError> {
    let metrics = &config.metrics;
    let Some(namespace) = &metrics.from_namespace else {
        if metrics.monitor.is_some() {
            return Err(RenderError::Invalid(
                "--prometheus-operator needs --metrics-from-namespace NS (where Prometheus runs): \
                 without it the default-deny policy drops every scrape"
                    .into(),
            ));
        }
        return Ok(Vec::new());
    };
    validate::dns_label("metrics-from-namespace", namespace)?;
    let mut pod_labels = BTreeMap::new();
    for pair in &metrics.from_pod_labels {
        let (key, value) = validate::label("metrics-from-pod-label", pair)?;
        pod_labels.insert(key, value);
    }
    let scrape = |component: &str, port: i32| NetworkPolicySpec {
        pod_selector: names.component(component),
        policy_types: vec!["Ingress".into()],
        ingress: vec![PolicyRule {
            from: Some(vec![PolicyPeer {
                namespace_selector: Some(namespace_named(namespace)),
                pod_selector: Some(match_labels(pod_labels.clone())),
                ip_block: None,
            }]),
            ports: vec![tcp(port)],
            ..PolicyRule::default()
        }],
        egress: vec![],
    };
    let mut out = vec![
        policy(
            config,
            names,
            "allow-metrics-scrape-to-worker",
            scrape(WORKER, port),
        ),
        // The router's own metrics port (its public port stays closed to them).
        policy(
            config,
            names,
            "allow-metrics-scrape-to-router",
            scrape(super::ROUTER, super::ROUTER_METRICS_PORT),
        ),
    ];
    if let Some(kind) = metrics.monitor {
        let endpoint = MonitorEndpoint {
            port: "http".into(),
            path: "/metrics".into(),
            interval: metrics.interval.clone(),
            scheme: "http".into(),
        };
        let (kind_name, endpoints, pod_endpoints) = match kind {
            MonitorKind::ServiceMonitor => ("ServiceMonitor", Some(vec![endpoint]), None),
            MonitorKind::PodMonitor => ("PodMonitor", None, Some(vec![endpoint])),
        };
        // Named like the scope's (shared) worker; selects all its workers.
        let name = names.worker(None)?;
        let mut labels = names.labels(WORKER, &name, None);
        for pair in &metrics.monitor_labels {
            let (key, value) = validate::label("monitor-label", pair)?;
            if labels.contains_key(&key) {
                return Err(RenderError::Invalid(format!(
                    "--monitor-label {pair:?}: {key} is set by the render (it selects this \
                     scope's objects); choose another label"
                )));
            }
            labels.insert(key, value);
        }
        out.push(Object::Monitor(Monitor {
            api_version: "monitoring.coreos.com/v1".into(),
            kind: kind_name.into(),
            metadata: super::meta(config, &name, labels),
            spec: MonitorSpec {
                selector: names.component(WORKER),
                namespace_selector: MonitorNamespaces {
                    match_names: vec![config.namespace.clone()],
                },
                endpoints,
                pod_metrics_endpoints: pod_endpoints,
            },
        }));
    }
    Ok(out)
}

/// `HOST:PORT=CIDR`: the CIDR block a bundle's egress destination resolves to.
/// The authority is parsed and normalised as the host parses `egress.allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressGrant {
    pub authority: Authority,
    pub cidr: String,
}

impl std::str::FromStr for EgressGrant {
    type Err = RenderError;

    fn from_str(arg: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| RenderError::Invalid(format!("--egress-cidr {arg:?}: {why}"));
        let (authority, cidr) = arg.rsplit_once('=').ok_or_else(|| {
            bad("expected HOST:PORT=CIDR, e.g. api.example.com:443=203.0.113.0/24")
        })?;
        let authority = Authority::parse(authority).map_err(|e| {
            bad(&format!(
                "{e} (HOST:PORT before '=', as in the bundle's egress.allow)"
            ))
        })?;
        Ok(Self {
            authority,
            cidr: validate::cidr("egress-cidr", cidr)?,
        })
    }
}

/// What NetworkPolicy cannot express, said where the operator looks.
pub const HOSTNAME_NOTE: &str = "NetworkPolicy matches IP blocks, not host names: each rule \
     admits the CIDR blocks given for a bundle's egress.allow entry (--egress-cidr HOST:PORT=CIDR). \
     If the name's addresses change (CDNs, cloud APIs) the rule goes stale; the host still \
     enforces the allowlist by name, so a wider block (or an egress proxy) only loosens layer 4.";

/// The workers' egress policies for bundles' outgoing HTTP, one rule per
/// destination; the annotation records which host each block stands for.
/// With `allowlists` (every deployed bundle's `egress.allow`, when the
/// operator pointed at the manifests), every entry must have a block, and with
/// one worker per team each team's worker gets its own policy admitting only the
/// destinations its bundles list. Otherwise one policy admits every worker of
/// the scope to every block.
pub(super) fn bundle_egress_policies(
    config: &super::DeployConfig,
    names: &ScopeNames,
    workers: &[super::WorkerPlan<'_>],
    allowlists: &[(String, Vec<Authority>)],
) -> Result<Vec<Object>, RenderError> {
    let grants = &config.egress;
    let mut uncovered = Vec::new();
    for (bundle, allow) in allowlists {
        for entry in allow {
            if !grants.iter().any(|g| g.authority == *entry) {
                uncovered.push(format!("{bundle}: {entry}"));
            }
        }
    }
    if !uncovered.is_empty() {
        return Err(RenderError::Invalid(format!(
            "bundles may call {} but no --egress-cidr HOST:PORT=CIDR says which address blocks \
             that is; a NetworkPolicy cannot match host names, and without a rule the default \
             deny drops these calls",
            uncovered.join(", ")
        )));
    }
    if grants.is_empty() {
        return Ok(Vec::new());
    }
    let per_team = !allowlists.is_empty() && workers.iter().any(|w| w.team.is_some());
    if !per_team {
        let name = names.policy(EGRESS_POLICY, None);
        let all: Vec<&EgressGrant> = grants.iter().collect();
        return Ok(vec![egress_policy(
            config,
            &name,
            names.labels("gtc-network", &name, None),
            names.component(WORKER),
            &all,
        )]);
    }
    let mut out = Vec::new();
    let mut used = vec![false; grants.len()];
    for worker in workers {
        let allowed: Vec<&Authority> = allowlists
            .iter()
            .filter(|(bundle, _)| worker.bundles.iter().any(|b| b.name.as_str() == bundle))
            .flat_map(|(_, allow)| allow)
            .collect();
        let mut mine = Vec::new();
        for (grant, used) in grants.iter().zip(used.iter_mut()) {
            if allowed.contains(&&grant.authority) {
                mine.push(grant);
                *used = true;
            }
        }
        if mine.is_empty() {
            continue;
        }
        let team = worker.team.as_ref();
        let name = names.policy(EGRESS_POLICY, team);
        out.push(egress_policy(
            config,
            &name,
            names.labels("gtc-network", &name, team),
            names.instance(WORKER, &worker.name),
            &mine,
        ));
    }
    if let Some((grant, _)) = grants.iter().zip(&used).find(|(_, used)| !**used) {
        return Err(RenderError::Invalid(format!(
            "--egress-cidr {}={}: no deployed bundle's egress.allow lists {}; with one worker \
             per team, each worker is admitted only to its own bundles' destinations",
            grant.authority, grant.cidr, grant.authority
        )));
    }
    Ok(out)
}

const EGRESS_POLICY: &str = "allow-worker-egress-to-bundle-destinations";

/// One egress policy admitting the pods `selector` picks to `grants`' blocks.
fn egress_policy(
    config: &super::DeployConfig,
    name: &str,
    labels: Labels,
    selector: LabelSelector,
    grants: &[&EgressGrant],
) -> Object {
    // One rule per destination (host:port), with all of its blocks.
    let mut by_authority: BTreeMap<(String, u16), Vec<&str>> = BTreeMap::new();
    for grant in grants {
        by_authority
            .entry((grant.authority.to_string(), grant.authority.port))
            .or_default()
            .push(grant.cidr.as_str());
    }
    let rules = by_authority
        .iter()
        .map(|((_, port), cidrs)| PolicyRule {
            to: Some(cidrs.iter().map(|c| ip_block(c)).collect()),
            ports: vec![tcp(i32::from(*port))],
            ..PolicyRule::default()
        })
        .collect();
    let mapping = by_authority
        .iter()
        .map(|((authority, _), cidrs)| format!("{authority} -> {}", cidrs.join(" ")))
        .collect::<Vec<_>>()
        .join("; ");
    let mut metadata = super::meta(config, name, labels);
    metadata.annotations.extend([
        ("greentic.ai/egress-destinations".to_string(), mapping),
        (
            "greentic.ai/egress-note".to_string(),
            HOSTNAME_NOTE.to_string(),
        ),
    ]);
    Object::NetworkPolicy(NetworkPolicy {
        api_version: "networking.k8s.io/v1".into(),
        kind: "NetworkPolicy".into(),
        metadata,
        spec: NetworkPolicySpec {
            pod_selector: selector,
            policy_types: vec!["Egress".into()],
            ingress: vec![],
            egress: rules,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    #[test]
    fn a_service_name_is_in_cluster_and_its_namespace_is_taken_from_it() {
        let flags = VaultNetworkFlags::default();
        let VaultNetwork::InCluster {
            namespace,
            pod_labels,
            target_port,
        } = flags.resolve(&url("https://vault.secrets.svc")).unwrap()
        else {
            panic!("in-cluster expected")
        };
        assert_eq!(namespace, "secrets");
        assert_eq!(pod_labels["app.kubernetes.io/name"], "vault");
        // The pod port, not the URL's 443.
        assert_eq!(target_port, VAULT_POD_PORT);
        assert!(
            flags
                .resolve(&url("http://vault.vault.svc.cluster.local:8200"))
                .is_ok()
        );
    }

    #[test]
    fn an_external_looking_address_is_refused_without_a_mode() {
        for addr in [
            "https://vault.example.com",
            "http://10.0.0.5:8200",
            "http://vault:8200",
        ] {
            let err = VaultNetworkFlags::default()
                .resolve(&url(addr))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("--vault-mode external --vault-cidr") && err.contains("in-cluster"),
                "{addr}: {err}"
            );
        }
        let external = VaultNetworkFlags {
            cidrs: vec!["10.0.0.5/32".into()],
            ..Default::default()
        };
        assert_eq!(
            external.resolve(&url("http://10.0.0.5:8200")).unwrap(),
            VaultNetwork::External {
                cidrs: vec!["10.0.0.5/32".into()],
                port: 8200
            }
        );
        let explicit = VaultNetworkFlags {
            mode: Some(VaultMode::External),
            ..Default::default()
        };
        assert!(explicit.resolve(&url("https://vault.example.com")).is_err());
        let mixed = VaultNetworkFlags {
            mode: Some(VaultMode::InCluster),
            k8s_namespace: Some("vault".into()),
            cidrs: vec!["10.0.0.0/8".into()],
            ..Default::default()
        };
        assert!(mixed.resolve(&url("http://vault:8200")).is_err());
        let contradiction = VaultNetworkFlags {
            k8s_namespace: Some("other".into()),
            ..Default::default()
        };
        assert!(
            contradiction
                .resolve(&url("http://vault.vault.svc:8200"))
                .is_err()
        );
    }

    #[test]
    fn egress_grants_parse_and_cover_allowlists() {
        let grant: EgressGrant = "API.example.com:443=203.0.113.0/24".parse().unwrap();
        assert_eq!(grant.authority.to_string(), "api.example.com:443");
        assert_eq!(grant.authority.port, 443);
        for bad in [
            "api.example.com=203.0.113.0/24",
            "api.example.com:443",
            "api.example.com:0=10.0.0.0/8",
            "api.example.com:443=10.0.0.1/8",
            ":443=10.0.0.0/8",
        ] {
            assert!(bad.parse::<EgressGrant>().is_err(), "{bad}");
        }
    }
}
