//! `gtc deploy render` for operators: every flag's render validated against the
//! oldest and newest Kubernetes schemas the suite knows (kubernetes-validate
//! --strict, 1.25 and 1.37), plus semantic checks of what the schemas cannot
//! judge: which pods and ports a policy admits, whether uid 65532 can read the
//! dev store, the ServiceMonitor's structure (a CRD: no schema to check it
//! against), argument validation with exit status 2. And static checks of the
//! demo and the image build, which cannot run here (no Docker engine, no kind).

mod support;

use serde_json::{Value, json};
use std::process::Command;
use support::vault::root;
use support::*;

const BASE: [&str; 6] = [
    "--env",
    "prod",
    "--tenant",
    "acme",
    "--bundle",
    "webchat-bot=support",
];

/// Runs `gtc deploy render BASE ARGS` (with a default `--image` unless ARGS
/// has one); returns (exit code, stdout, stderr).
fn render_raw(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["deploy", "render"];
    all.extend_from_slice(&BASE);
    if !args.contains(&"--image") {
        all.extend_from_slice(&["--image", "registry.example/gtc:0.1.0"]);
    }
    all.extend_from_slice(args);
    let out = run_gtc(&all, &[], b"");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a render that must be refused as bad configuration (exit 2); its stderr.
fn refused(args: &[&str]) -> String {
    let (code, _, stderr) = render_raw(args);
    assert_eq!(code, 2, "{args:?}: {stderr}");
    stderr
}

fn render(args: &[&str]) -> String {
    let (code, yaml, stderr) = render_raw(args);
    assert_eq!(code, 0, "render {args:?} failed: {stderr}");
    yaml
}

/// The documents of a rendered stream, as JSON values.
fn objects(yaml: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {objects:#?}"))
}

fn has(objects: &[Value], kind: &str, name: &str) -> bool {
    objects
        .iter()
        .any(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn env_of(deployment: &Value, var: &str) -> Option<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == var)
        .map(|e| e["value"].as_str().unwrap().to_string())
}

const VAULT_IN_CLUSTER: &str = "http://vault.vault.svc:8200";

/// The scope's worker and router (`--env prod --tenant acme`): every object is
/// named per scope.
const WORKER: &str = "gtc-worker-prod-acme";
const ROUTER: &str = "gtc-router-prod-acme";

/// A Vault outside the cluster, at two address blocks.
const VAULT_EXTERNAL: [&str; 8] = [
    "--vault-addr",
    "https://vault.example.com",
    "--vault-mode",
    "external",
    "--vault-cidr",
    "203.0.113.10/32",
    "--vault-cidr",
    "198.51.100.0/24",
];

/// OpenShift's DNS pods (port 5353) plus a NodeLocal DNSCache address.
const OPENSHIFT_DNS: [&str; 8] = [
    "--dns-namespace",
    "openshift-dns",
    "--dns-pod-label",
    "dns.operator.openshift.io/daemonset-dns=default",
    "--dns-port",
    "5353",
    "--dns-cidr",
    "169.254.20.10/32",
];

/// A dev-store render shipping a store with one (development) secret.
fn dev_store_render(value: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put_shipped(&store, "acme/_/webchat-bot/webhook-secret", value);
    render(&[
        "--backend",
        "dev-store",
        "--dev-store",
        store.to_str().unwrap(),
    ])
}

/// The renders exercised below, each validated on both schema versions.
fn every_render() -> Vec<(&'static str, String)> {
    let digest = format!(
        "registry.example/gtc@sha256:{}",
        "0123456789abcdef".repeat(4)
    );
    vec![
        ("in-cluster", render(&["--vault-addr", VAULT_IN_CLUSTER])),
        (
            "external",
            render(
                &[
                    &VAULT_EXTERNAL[..],
                    &[
                        "--vault-cacert-configmap",
                        "vault-ca",
                        "--vault-enterprise-namespace",
                        "team-a/prod",
                    ],
                ]
                .concat(),
            ),
        ),
        (
            "production",
            render(
                &[
                    "--vault-addr",
                    VAULT_IN_CLUSTER,
                    "--image",
                    &digest,
                    "--replicas",
                    "3",
                    "--autoscale-max",
                    "10",
                    "--topology-spread",
                    "required",
                    "--metrics-from-namespace",
                    "monitoring",
                    "--metrics-from-pod-label",
                    "app.kubernetes.io/name=prometheus",
                    "--prometheus-operator",
                    "service-monitor",
                    "--egress-cidr",
                    "api.example.com:443=203.0.113.0/24",
                    "--worker-cpu-limit",
                    "none",
                ]
                .into_iter()
                .chain(OPENSHIFT_DNS)
                .collect::<Vec<_>>(),
            ),
        ),
        (
            "minimal",
            render(&[
                "--vault-addr",
                VAULT_IN_CLUSTER,
                "--no-pdb",
                "--topology-spread",
                "off",
                "--replicas",
                "0",
            ]),
        ),
        ("dev-store", dev_store_render(b"render-dev-value")),
        (
            "long-scope",
            render_scope(
                "production",
                &"t".repeat(48),
                &[
                    "--vault-addr",
                    VAULT_IN_CLUSTER,
                    "--bundle",
                    "webchat-bot=support",
                ],
            ),
        ),
        (
            "isolated-teams",
            teams_render(&["--autoscale-max", "4", "--prometheus-operator"]),
        ),
    ]
}

/// A render with two teams (webchat-bot=support, hello=sales), so one worker per
/// team, plus metrics and bundle egress; ARGS are added.
fn teams_render(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), "webchat-bot", "webchat-bot", &["/webhook"], "");
    write_bundle(dir.path(), "hello", "hello", &["/hello"], "");
    let mut all = vec![
        "--vault-addr",
        VAULT_IN_CLUSTER,
        "--bundle",
        "hello=sales",
        "--bundles-dir",
        dir.path().to_str().unwrap(),
        "--metrics-from-namespace",
        "monitoring",
        "--egress-cidr",
        "api.example.com:443=203.0.113.0/24",
    ];
    all.extend_from_slice(args);
    render(&all)
}

fn validate(files: &[std::path::PathBuf], version: &str) -> std::process::Output {
    Command::new(root().join(".venv/bin/kubernetes-validate"))
        .args(["--strict", "-k", version])
        .args(files)
        .output()
        .expect("kubernetes-validate is installed by tests/install-tools.sh")
}

#[test]
fn every_render_validates_on_the_oldest_and_newest_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let renders = every_render();
    let files: Vec<_> = renders
        .iter()
        .map(|(name, yaml)| {
            let file = dir.path().join(format!("{name}.yaml"));
            std::fs::write(&file, yaml).unwrap();
            file
        })
        .collect();
    for version in ["1.25.0", "1.37.0"] {
        let out = validate(&files, version);
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{version}: {report}");
        // The one object the validator cannot know is the Prometheus Operator's
        // CRD: it says so (checked structurally below), and nothing else is skipped.
        for line in report
            .lines()
            .filter(|l| l.contains("Couldn't find schema"))
        {
            assert!(line.contains("ServiceMonitor"), "{version}: {line}");
        }
        assert!(report.contains("ServiceMonitor"), "{version}: {report}");
    }
}

/// The worker's egress rule to Vault in the render with `args`.
fn vault_rule(args: &[&str]) -> Value {
    let objs = objects(&render(args));
    find(
        &objs,
        "NetworkPolicy",
        "allow-worker-egress-to-vault-prod-acme",
    )["spec"]["egress"][0]
        .clone()
}

#[test]
fn vault_egress_targets_pods_in_cluster_and_cidrs_outside() {
    // In the cluster, https on the Service's 443: the policy matches the pod port.
    let rule = vault_rule(&["--vault-addr", "https://vault.secrets.svc"]);
    assert_eq!(
        rule["to"][0],
        json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "secrets"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "vault"}},
        })
    );
    assert_eq!(rule["ports"], json!([{"protocol": "TCP", "port": 8200}]));
    let rule = vault_rule(&[
        "--vault-addr",
        "http://vault.vault.svc:8200",
        "--vault-mode",
        "in-cluster",
        "--vault-k8s-namespace",
        "vault",
        "--vault-pod-label",
        "app=openbao",
        "--vault-pod-label",
        "component=server",
        "--vault-target-port",
        "8300",
    ]);
    assert_eq!(
        rule["to"][0]["podSelector"]["matchLabels"],
        json!({"app": "openbao", "component": "server"})
    );
    assert_eq!(rule["ports"][0]["port"], 8300);

    // Outside: the blocks given, on the address's port; no pod selector at all.
    let rule = vault_rule(&VAULT_EXTERNAL);
    assert_eq!(
        rule["to"],
        json!([{"ipBlock": {"cidr": "203.0.113.10/32"}}, {"ipBlock": {"cidr": "198.51.100.0/24"}}])
    );
    assert_eq!(rule["ports"], json!([{"protocol": "TCP", "port": 443}]));
    let rule = vault_rule(&[
        "--vault-addr",
        "http://10.0.0.5:8200",
        "--vault-cidr",
        "10.0.0.5/32",
        "--vault-port",
        "18200",
    ]);
    assert_eq!(rule["to"], json!([{"ipBlock": {"cidr": "10.0.0.5/32"}}]));
    assert_eq!(rule["ports"][0]["port"], 18200);

    // Refuse to guess: an address that is not a Service name, without a mode.
    for addr in ["https://vault.example.com", "http://10.0.0.5:8200"] {
        let stderr = refused(&["--vault-addr", addr]);
        assert!(
            stderr.contains("--vault-mode external --vault-cidr"),
            "{addr}: {stderr}"
        );
    }
    let stderr = refused(&[
        "--vault-addr",
        "https://vault.example.com",
        "--vault-mode",
        "external",
    ]);
    assert!(stderr.contains("host names"), "{stderr}");
    // The old flag is refused with its new names.
    let stderr = refused(&[
        "--vault-addr",
        VAULT_IN_CLUSTER,
        "--vault-namespace",
        "vault",
    ]);
    assert!(
        stderr.contains("--vault-k8s-namespace") && stderr.contains("--vault-enterprise-namespace"),
        "{stderr}"
    );
}

#[test]
fn vault_ca_and_enterprise_namespace_reach_the_worker() {
    let objs = objects(&render(&[
        "--vault-addr",
        "https://vault.example.com:8200",
        "--vault-cidr",
        "203.0.113.10/32",
        "--vault-cacert-configmap",
        "corp-ca",
        "--vault-cacert-key",
        "vault.pem",
        "--vault-enterprise-namespace",
        "team-a/prod",
    ]));
    let worker = find(&objs, "Deployment", WORKER);
    let cacert = env_of(worker, "VAULT_CACERT").expect("VAULT_CACERT");
    assert_eq!(
        env_of(worker, "VAULT_NAMESPACE").as_deref(),
        Some("team-a/prod")
    );
    let pod = &worker["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == "corp-ca")
        .expect("the CA ConfigMap is a volume");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("and it is mounted");
    assert_eq!(mount["readOnly"], true);
    // VAULT_CACERT names the file the ConfigMap's key becomes.
    let item = &volume["configMap"]["items"][0];
    assert_eq!(item["key"], "vault.pem");
    assert_eq!(
        cacert,
        format!(
            "{}/{}",
            mount["mountPath"].as_str().unwrap(),
            item["path"].as_str().unwrap()
        )
    );
    // Without these flags neither variable is rendered; a CA for http:// is refused.
    let plain = find(
        &objects(&render(&["--vault-addr", VAULT_IN_CLUSTER])),
        "Deployment",
        WORKER,
    )
    .clone();
    assert!(
        env_of(&plain, "VAULT_CACERT").is_none() && env_of(&plain, "VAULT_NAMESPACE").is_none()
    );
    refused(&[
        "--vault-addr",
        VAULT_IN_CLUSTER,
        "--vault-cacert-configmap",
        "corp-ca",
    ]);
}

/// Whether a file in a volume is readable by the pod's user, by the kubelet's
/// rules: Secret files belong to root and, with `fsGroup`, to that group; the
/// process runs as runAsUser with runAsGroup and fsGroup among its groups.
fn readable_by_pod(pod: &Value, mode: i64) -> bool {
    let ctx = &pod["securityContext"];
    let uid = ctx["runAsUser"].as_i64().unwrap();
    let mut groups = vec![ctx["runAsGroup"].as_i64().unwrap()];
    let file_group = ctx["fsGroup"].as_i64();
    groups.extend(file_group);
    let (owner, group) = (0, file_group.unwrap_or(0));
    (uid == owner && mode & 0o400 != 0)
        || (groups.contains(&group) && mode & 0o040 != 0)
        || mode & 0o004 != 0
}

#[test]
fn the_dev_store_secret_is_readable_by_the_worker_and_nobody_else() {
    let objs = objects(&dev_store_render(b"readable-dev-value"));
    let pod = &find(&objs, "Deployment", WORKER)["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == "gtc-dev-secrets-prod-acme")
        .unwrap();
    let mode = volume["secret"]["defaultMode"].as_i64().unwrap();
    assert!(
        readable_by_pod(pod, mode),
        "mode {mode:o} unreadable by uid 65532"
    );
    assert_eq!(mode & 0o007, 0, "others get nothing: {mode:o}");
    // The check itself: the old render (0400, root-owned, no fsGroup) fails it.
    let mut old = pod.clone();
    old["securityContext"]
        .as_object_mut()
        .unwrap()
        .remove("fsGroup");
    assert!(!readable_by_pod(&old, 0o400));
}

#[test]
fn prometheus_gets_a_policy_and_a_monitor_that_fits_the_service() {
    let objs = objects(&render(&[
        "--vault-addr",
        VAULT_IN_CLUSTER,
        "--metrics-from-namespace",
        "monitoring",
        "--prometheus-operator",
    ]));
    let policy = &find(
        &objs,
        "NetworkPolicy",
        "allow-metrics-scrape-to-worker-prod-acme",
    )["spec"];
    assert_eq!(
        policy["podSelector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "gtc-worker", "greentic.ai/env": "prod", "greentic.ai/tenant": "acme"})
    );
    let rule = &policy["ingress"][0];
    assert_eq!(
        rule["from"][0]["namespaceSelector"]["matchLabels"],
        json!({"kubernetes.io/metadata.name": "monitoring"})
    );
    let worker = find(&objs, "Deployment", WORKER);
    let container_port = &worker["spec"]["template"]["spec"]["containers"][0]["ports"][0];
    assert_eq!(rule["ports"][0]["port"], container_port["containerPort"]);

    // The ServiceMonitor (a CRD, so checked here rather than by the validator):
    // it selects the worker Service, in its namespace, on a port the Service has.
    let monitor = find(&objs, "ServiceMonitor", WORKER);
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let service = find(&objs, "Service", WORKER);
    let monitor_labels = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    // An empty selector would select every Service.
    assert!(!monitor_labels.is_empty(), "{monitor}");
    for (key, value) in monitor_labels {
        assert_eq!(&service["metadata"]["labels"][key], value, "{key}");
    }
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!([service["metadata"]["namespace"]])
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == endpoint["port"])
    );
    let keys: Vec<&String> = monitor["spec"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["endpoints", "namespaceSelector", "selector"]);

    // A PodMonitor names a container port of the worker's pods.
    let objs = objects(&render(&[
        "--vault-addr",
        VAULT_IN_CLUSTER,
        "--metrics-from-namespace",
        "monitoring",
        "--prometheus-operator",
        "pod-monitor",
    ]));
    let monitor = find(&objs, "PodMonitor", WORKER);
    assert_eq!(
        monitor["spec"]["podMetricsEndpoints"][0]["port"],
        container_port["name"]
    );
    // No policy without the flag; the monitor alone would be dropped: refused.
    assert!(!has(
        &objects(&render(&["--vault-addr", VAULT_IN_CLUSTER])),
        "NetworkPolicy",
        "allow-metrics-scrape-to-worker-prod-acme"
    ));
    let stderr = refused(&["--vault-addr", VAULT_IN_CLUSTER, "--prometheus-operator"]);
    assert!(stderr.contains("--metrics-from-namespace"), "{stderr}");
}

#[test]
fn bundle_egress_becomes_rules_for_the_blocks_the_operator_names() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(
        dir.path(),
        "webchat-bot",
        "webchat-bot",
        &["/webhook"],
        "[egress]\nallow = [\"api.example.com:443\", \"hooks.example.net:8443\"]",
    );
    let manifests = dir.path().to_str().unwrap();
    // A destination without a block: refused, saying why.
    let stderr = refused(&[
        "--vault-addr",
        VAULT_IN_CLUSTER,
        "--bundle-manifests",
        manifests,
        "--egress-cidr",
        "api.example.com:443=203.0.113.0/24",
    ]);
    assert!(
        stderr.contains("webchat-bot: hooks.example.net:8443") && stderr.contains("host names"),
        "{stderr}"
    );
    let objs = objects(&render(&[
        "--vault-addr",
        VAULT_IN_CLUSTER,
        "--bundle-manifests",
        manifests,
        "--egress-cidr",
        "api.example.com:443=203.0.113.0/24",
        "--egress-cidr",
        "api.example.com:443=2001:db8::/48",
        "--egress-cidr",
        "hooks.example.net:8443=198.51.100.7/32",
    ]));
    let policy = find(
        &objs,
        "NetworkPolicy",
        "allow-worker-egress-to-bundle-destinations-prod-acme",
    );
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "gtc-worker", "greentic.ai/env": "prod", "greentic.ai/tenant": "acme"})
    );
    assert_eq!(
        policy["spec"]["egress"],
        json!([
            {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}, {"ipBlock": {"cidr": "2001:db8::/48"}}],
             "ports": [{"protocol": "TCP", "port": 443}]},
            {"to": [{"ipBlock": {"cidr": "198.51.100.7/32"}}],
             "ports": [{"protocol": "TCP", "port": 8443}]},
        ])
    );
    let annotations = &policy["metadata"]["annotations"];
    assert!(
        annotations["greentic.ai/egress-destinations"]
            .as_str()
            .unwrap()
            .contains("api.example.com:443 -> 203.0.113.0/24 2001:db8::/48")
    );
    assert!(
        annotations["greentic.ai/egress-note"]
            .as_str()
            .unwrap()
            .contains("not host names")
    );
    // No grants, no bundle manifests: no policy (the default deny stays).
    assert!(!has(
        &objects(&render(&["--vault-addr", VAULT_IN_CLUSTER])),
        "NetworkPolicy",
        "allow-worker-egress-to-bundle-destinations-prod-acme"
    ));
}

#[test]
fn dns_selector_scale_and_resources_follow_the_flags() {
    let defaults = objects(&render(&["--vault-addr", VAULT_IN_CLUSTER]));
    let dns = &find(&defaults, "NetworkPolicy", "allow-dns-egress-prod-acme")["spec"]["egress"][0];
    assert_eq!(
        dns["to"],
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}])
    );
    assert_eq!(
        dns["ports"],
        json!([{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}])
    );
    // Production defaults: a PDB, spread, requests and limits, no HPA.
    for name in [WORKER, ROUTER] {
        let pdb = find(&defaults, "PodDisruptionBudget", name);
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"],
            find(&defaults, "Deployment", name)["spec"]["selector"]["matchLabels"]
        );
        let deployment = find(&defaults, "Deployment", name);
        assert_eq!(deployment["spec"]["replicas"], 2);
        let spread = &deployment["spec"]["template"]["spec"]["topologySpreadConstraints"];
        assert_eq!(spread.as_array().unwrap().len(), 2, "{name}");
        assert!(!has(&defaults, "HorizontalPodAutoscaler", name));
    }
    let worker = find(&defaults, "Deployment", WORKER);
    assert_eq!(
        worker["spec"]["template"]["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "512Mi"}})
    );

    let objs = objects(&render(
        &[
            &OPENSHIFT_DNS[..],
            &[
                "--vault-addr",
                VAULT_IN_CLUSTER,
                "--replicas",
                "3",
                "--autoscale-max",
                "12",
                "--autoscale-cpu-percent",
                "60",
                "--pdb-max-unavailable",
                "2",
                "--topology-spread",
                "required",
                "--worker-cpu-request",
                "500m",
                "--worker-memory-limit",
                "1Gi",
                "--worker-cpu-limit",
                "none",
            ],
        ]
        .concat(),
    ));
    let dns = &find(&objs, "NetworkPolicy", "allow-dns-egress-prod-acme")["spec"]["egress"][0];
    assert_eq!(
        dns["to"],
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openshift-dns"}},
                "podSelector": {"matchLabels": {"dns.operator.openshift.io/daemonset-dns": "default"}}},
               {"ipBlock": {"cidr": "169.254.20.10/32"}}])
    );
    assert_eq!(
        dns["ports"],
        json!([{"protocol": "UDP", "port": 5353}, {"protocol": "TCP", "port": 5353}])
    );
    let hpa = find(&objs, "HorizontalPodAutoscaler", WORKER);
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(
        hpa["spec"],
        json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": WORKER},
               "minReplicas": 3, "maxReplicas": 12,
               "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 60}}}]})
    );
    let worker = find(&objs, "Deployment", WORKER);
    // The autoscaler owns the count: re-applying must not reset it.
    assert!(worker["spec"].get("replicas").is_none());
    assert_eq!(
        find(&objs, "PodDisruptionBudget", WORKER)["spec"]["maxUnavailable"],
        2
    );
    let pod = &worker["spec"]["template"]["spec"];
    let hostname = pod["topologySpreadConstraints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["topologyKey"] == "kubernetes.io/hostname")
        .unwrap();
    assert_eq!(hostname["whenUnsatisfiable"], "DoNotSchedule");
    assert_eq!(
        pod["containers"][0]["resources"],
        json!({"requests": {"cpu": "500m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}})
    );
    let objs = objects(&render(&[
        "--vault-addr",
        VAULT_IN_CLUSTER,
        "--no-pdb",
        "--topology-spread",
        "off",
    ]));
    assert!(!has(&objs, "PodDisruptionBudget", WORKER));
    assert!(
        find(&objs, "Deployment", WORKER)["spec"]["template"]["spec"]
            .get("topologySpreadConstraints")
            .is_none()
    );
}

/// Whether `selector` (matchLabels) picks a pod labelled `labels`.
/// An empty selector (which would select every pod) fails the test.
fn selects(selector: &Value, labels: &Value) -> bool {
    let wanted = selector["matchLabels"].as_object().unwrap();
    assert!(!wanted.is_empty(), "an empty selector: {selector}");
    wanted.iter().all(|(key, value)| &labels[key] == value)
}

fn pod_labels(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["metadata"]["labels"]
}

#[test]
fn isolated_teams_get_their_own_pdb_hpa_and_spread_and_the_scope_policies_select_every_worker() {
    let objs = objects(&teams_render(&[
        "--autoscale-max",
        "4",
        "--prometheus-operator",
        "pod-monitor",
    ]));
    let router = find(&objs, "Deployment", ROUTER);
    let teams = ["sales", "support"];
    for team in teams {
        let name = format!("{WORKER}-{team}");
        let worker = find(&objs, "Deployment", &name);
        let selector = &worker["spec"]["selector"];
        assert_eq!(pod_labels(worker)["greentic.ai/team"], team);
        // Its PDB and HPA are named like it, carry its team and pick only its pods.
        let pdb = find(&objs, "PodDisruptionBudget", &name);
        assert_eq!(&pdb["spec"]["selector"], selector, "{name}");
        assert_eq!(pdb["metadata"]["labels"]["greentic.ai/team"], team);
        let hpa = find(&objs, "HorizontalPodAutoscaler", &name);
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], name.as_str());
        assert_eq!(hpa["metadata"]["labels"]["greentic.ai/team"], team);
        assert!(worker["spec"].get("replicas").is_none());
        let constraints = worker["spec"]["template"]["spec"]["topologySpreadConstraints"]
            .as_array()
            .unwrap();
        assert_eq!(constraints.len(), 2, "{name}: zone and host spread");
        for constraint in constraints {
            assert_eq!(&constraint["labelSelector"], selector, "{name}");
        }
        for other in teams.iter().filter(|t| **t != team) {
            let other = find(&objs, "Deployment", &format!("{WORKER}-{other}"));
            assert!(!selects(&pdb["spec"]["selector"], pod_labels(other)));
        }
        // The scope's policies reach every team's worker (and not the router).
        for policy in [
            "allow-worker-egress-to-vault-prod-acme",
            "allow-metrics-scrape-to-worker-prod-acme",
            "allow-worker-egress-to-bundle-destinations-prod-acme",
            "allow-worker-ingress-from-router-prod-acme",
        ] {
            let selector = &find(&objs, "NetworkPolicy", policy)["spec"]["podSelector"];
            assert!(selects(selector, pod_labels(worker)), "{policy} {name}");
            assert!(!selects(selector, pod_labels(router)), "{policy}");
        }
        let monitor = find(&objs, "PodMonitor", WORKER);
        assert!(selects(&monitor["spec"]["selector"], pod_labels(worker)));
        assert!(!selects(&monitor["spec"]["selector"], pod_labels(router)));
    }
    // The router's own PDB and HPA, per scope.
    assert_eq!(
        &find(&objs, "PodDisruptionBudget", ROUTER)["spec"]["selector"],
        &router["spec"]["selector"]
    );
    assert!(has(&objs, "HorizontalPodAutoscaler", ROUTER));
    // No object of the shared worker's name but the monitor; no unscoped names.
    assert!(!has(&objs, "Deployment", WORKER));
    assert!(
        objs.iter().all(|o| o["metadata"]["name"]
            .as_str()
            .unwrap()
            .contains("prod-acme")),
        "every name carries the scope"
    );
    // With the manifests at hand, each team's worker is admitted only to its own
    // bundles' destinations (hello=sales calls nothing: no policy for it).
    let dir = tempfile::tempdir().unwrap();
    write_bundle(
        dir.path(),
        "webchat-bot",
        "webchat-bot",
        &["/webhook"],
        "[egress]\nallow = [\"api.example.com:443\"]",
    );
    write_bundle(dir.path(), "hello", "hello", &["/hello"], "");
    let bundles = dir.path().to_str().unwrap();
    let with_manifests = |extra: &[&str]| {
        let mut args = vec![
            "--vault-addr",
            VAULT_IN_CLUSTER,
            "--bundle",
            "hello=sales",
            "--bundles-dir",
            bundles,
            "--bundle-manifests",
            bundles,
            "--egress-cidr",
            "api.example.com:443=203.0.113.0/24",
        ];
        args.extend_from_slice(extra);
        render_raw(&args)
    };
    let (code, yaml, stderr) = with_manifests(&[]);
    assert_eq!(code, 0, "{stderr}");
    let objs = objects(&yaml);
    let egress: Vec<&Value> = objs
        .iter()
        .filter(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("allow-worker-egress-to-bundle-destinations")
        })
        .collect();
    assert_eq!(egress.len(), 1, "{egress:#?}");
    assert_eq!(
        egress[0]["metadata"]["name"],
        "allow-worker-egress-to-bundle-destinations-prod-acme-support"
    );
    let support = find(&objs, "Deployment", &format!("{WORKER}-support"));
    let sales = find(&objs, "Deployment", &format!("{WORKER}-sales"));
    let selector = &egress[0]["spec"]["podSelector"];
    assert!(selects(selector, pod_labels(support)));
    assert!(!selects(selector, pod_labels(sales)));
    assert_eq!(
        egress[0]["spec"]["egress"],
        json!([{"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
                "ports": [{"protocol": "TCP", "port": 443}]}])
    );
    // A block for a destination no bundle lists would admit no one: refused.
    let (code, _, stderr) = with_manifests(&["--egress-cidr", "other.example.com:443=10.0.0.0/8"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--egress-cidr other.example.com:443=10.0.0.0/8"),
        "{stderr}"
    );

    // A team that cannot be part of an object name is refused, naming the flag.
    let stderr = refused(&[
        "--vault-addr",
        VAULT_IN_CLUSTER,
        "--bundle",
        "hello=sales.eu",
        "--bundles-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(stderr.contains("--bundle team \"sales.eu\""), "{stderr}");
}

#[test]
fn bad_arguments_exit_2_and_name_the_flag() {
    let long = "a".repeat(64);
    let long_env = "e".repeat(64);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--namespace", "my_ns"], "--namespace"),
        (vec!["--namespace", "a.b"], "--namespace"),
        (vec!["--namespace", &long], "--namespace"),
        (vec!["--replicas=-1"], "--replicas"),
        (vec!["--image", ""], "--image"),
        (vec!["--image", "Registry/GTC:1"], "--image"),
        (vec!["--image", "gtc@sha256:abc"], "--image"),
        (
            vec!["--vault-addr", "ftp://vault.vault.svc"],
            "--vault-addr",
        ),
        (vec!["--env", &long_env], "--env"),
        (vec!["--tenant", "Acme"], "--tenant"),
        (vec!["--vault-cidr", "10.0.0.5/24"], "--vault-cidr"),
        (vec!["--vault-port", "0"], "--vault-port"),
        (vec!["--dns-namespace", "Kube_System"], "--dns-namespace"),
        (vec!["--dns-pod-label", "k8s-app"], "--dns-pod-label"),
        (
            vec!["--worker-memory-limit", "10 Mi"],
            "--worker-memory-limit",
        ),
        (vec!["--worker-cpu-request", "4"], "--worker-cpu-request"),
        (
            vec!["--autoscale-max", "1", "--replicas", "2"],
            "--autoscale-max",
        ),
        (vec!["--pdb-max-unavailable", "0"], "--pdb-max-unavailable"),
        (vec!["--kv-prefix", "greentic/../x"], "--kv-prefix"),
        (
            vec!["--egress-cidr", "api.example.com=10.0.0.0/8"],
            "--egress-cidr",
        ),
        (
            vec!["--metrics-from-namespace", "Monitoring"],
            "--metrics-from-namespace",
        ),
        (
            vec!["--vault-cacert-configmap", "Bad_Name"],
            "--vault-cacert-configmap",
        ),
        (vec!["--bundle", "Web_Chat"], "--bundle"),
        (vec!["--service-account", "Bad_Name"], "--service-account"),
        (vec!["--transit-key", "greentic/../x"], "--transit-key"),
        (
            vec!["--transit-legacy-key", "greentic/../x"],
            "--transit-legacy-key",
        ),
    ];
    for (extra, flag) in cases {
        let mut args = vec!["--vault-addr", "https://vault.vault.svc"];
        args.extend(extra.iter().copied());
        let (code, _, stderr) = render_raw(&args);
        assert_eq!(code, 2, "{extra:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{extra:?} should name {flag}: {stderr}"
        );
        assert!(!stderr.contains("secret name"), "{extra:?}: {stderr}");
    }
    // A digest is fine.
    let digest = format!("registry.example/gtc:0.1@sha256:{}", "ab".repeat(32));
    let objs = objects(&render(&[
        "--vault-addr",
        VAULT_IN_CLUSTER,
        "--image",
        &digest,
        "--image-pull-policy",
        "always",
    ]));
    let container = &find(&objs, "Deployment", WORKER)["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], digest.as_str());
    assert_eq!(container["imagePullPolicy"], "Always");
}

#[test]
fn every_render_flag_has_help_and_help_names_exit_codes_and_variables() {
    let out = run_gtc(&["deploy", "render", "--help"], &[], b"");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    // Each `--flag` line is followed by its description (long help format).
    let lines: Vec<&str> = help.lines().map(str::trim_start).collect();
    let mut flags = 0;
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with("--") {
            continue;
        }
        flags += 1;
        let next = lines.get(i + 1).copied().unwrap_or_default();
        assert!(
            !next.is_empty() && !next.starts_with('-'),
            "no help text for {line:?}:\n{help}"
        );
    }
    assert!(flags >= 40, "{help}");
    assert!(
        !help.contains("--vault-namespace "),
        "the old flag is hidden"
    );
    let out = run_gtc(&["--help"], &[], b"");
    let top = String::from_utf8_lossy(&out.stdout);
    for wanted in [
        "Exit status: 0 ok, 1 runtime failure",
        "2 bad configuration",
        "GREENTIC_SECRETS_BACKEND",
        "VAULT_CACERT",
        "GREENTIC_VAULT_TIMEOUT",
    ] {
        assert!(top.contains(wanted), "{wanted}: {top}");
    }
}

/// The demo (deploy.sh) and the image build (Dockerfile) need Docker and kind,
/// which this machine lacks: these checks hold them to what they must do.
#[test]
fn demo_and_image_build_static_checks() {
    let read = |path: &str| std::fs::read_to_string(root().join(path)).unwrap();
    let ignore = read(".dockerignore");
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for wanted in ["target", ".venv", ".greentic", ".git"] {
        assert!(
            ignored
                .iter()
                .any(|l| l.trim_start_matches("**/").trim_end_matches('/') == wanted),
            ".dockerignore must exclude {wanted}: {ignored:?}"
        );
    }
    let dockerfile = read("examples/k8s-vault-demo/Dockerfile");
    assert!(dockerfile.contains("--locked"), "the image builds --locked");
    assert!(
        dockerfile.contains("strip") || dockerfile.contains("CARGO_PROFILE_RELEASE_STRIP"),
        "the image ships a stripped binary"
    );
    assert!(dockerfile.contains("USER 65532:65532"));
    assert!(
        dockerfile.contains("gtc bundle check --compile-cache /out/compile-cache")
            && dockerfile.contains("gtc bundle compile --compile-cache /out/compile-cache")
            && dockerfile.contains("COPY --from=build /out/compile-cache /var/cache/gtc")
            && dockerfile.contains("ENV GTC_COMPILE_CACHE=/var/cache/gtc"),
        "the image checks its bundles and ships them precompiled"
    );

    let deploy = read("examples/k8s-vault-demo/deploy.sh");
    let ok = Command::new("bash")
        .arg("-n")
        .arg(root().join("examples/k8s-vault-demo/deploy.sh"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "deploy.sh parses");
    assert!(
        !deploy.contains("sleep 2"),
        "no racing sleep after port-forward"
    );
    for (wanted, why) in [
        ("kind version", "checks the kind version"),
        ("0.24", "kind >= 0.24 enforces NetworkPolicy"),
        ("expect_status 200", "asserts the webhook's 200"),
        (
            "expect_status 503",
            "asserts the 503 without the Vault policy",
        ),
        (
            "delete networkpolicy allow-vault-ingress-from-workers",
            "removes the policy",
        ),
        ("gtc doctor", "shows the doctor's line"),
        (
            "install-tools.sh",
            "provides the bao CLI when neither vault nor bao is installed",
        ),
        (
            "--vault-mode in-cluster",
            "renders with an explicit Vault mode",
        ),
    ] {
        assert!(deploy.contains(wanted), "deploy.sh: {why} ({wanted:?})");
    }
    // Removing allow-vault-ingress-from-workers must cut the workers off: Vault's
    // pods stay isolated for ingress by another policy (a pod that no policy
    // selects accepts everything, and the demo would show nothing).
    let vault_objects = objects(&read("examples/k8s-vault-demo/vault.yaml"));
    let vault_labels =
        &find(&vault_objects, "Deployment", "vault")["spec"]["template"]["metadata"]["labels"];
    let isolating: Vec<&Value> = vault_objects
        .iter()
        .filter(|o| o["kind"] == "NetworkPolicy" && o["metadata"]["namespace"] == "vault")
        .filter(|o| o["metadata"]["name"] != "allow-vault-ingress-from-workers")
        .filter(|o| {
            let selects = o["spec"]["podSelector"]["matchLabels"]
                .as_object()
                .is_none_or(|wanted| wanted.iter().all(|(k, v)| &vault_labels[k] == v));
            let ingress_type = o["spec"]["policyTypes"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "Ingress"));
            selects && ingress_type
        })
        .collect();
    assert!(
        !isolating.is_empty(),
        "vault.yaml needs a default-deny ingress policy"
    );
    for policy in isolating {
        assert!(
            policy["spec"]["ingress"]
                .as_array()
                .is_none_or(Vec::is_empty),
            "without the workers' policy nothing may admit them: {policy}"
        );
    }
    // expect_status fails the script on any other status.
    let function = deploy
        .split("expect_status() {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("deploy.sh defines expect_status");
    assert!(
        function.contains("exit 1") && function.contains("%{http_code}"),
        "{function}"
    );
}

/// `gtc deploy render --env ENV --tenant TENANT ARGS` (an image added); the YAML.
fn render_scope(env: &str, tenant: &str, args: &[&str]) -> String {
    let mut all = vec![
        "deploy",
        "render",
        "--env",
        env,
        "--tenant",
        tenant,
        "--image",
        "registry.example/gtc:0.1.0",
    ];
    all.extend_from_slice(args);
    let out = run_gtc(&all, &[], b"");
    assert!(out.status.success(), "render {all:?}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Whether `name` is an RFC 1123 label of at most `limit` characters (dots
/// allowed for a subdomain).
fn rfc1123(name: &str, limit: usize, dots: bool) -> bool {
    let ok_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.');
    !name.is_empty()
        && name.len() <= limit
        && name.chars().all(ok_char)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Every name and label value of `objs` within the API server's limits: object
/// names DNS-1123 subdomains (253), Services DNS labels (63), every label value
/// (in metadata, selectors, pod templates, policy peers) at most 63 characters of
/// [A-Za-z0-9._-], alphanumeric at both ends. Returns the label values seen.
fn assert_within_api_limits(objs: &[Value]) -> Vec<String> {
    fn label_values(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    if key == "labels" || key == "matchLabels" {
                        for label in inner.as_object().into_iter().flat_map(|m| m.values()) {
                            out.push(label.as_str().unwrap().to_string());
                        }
                    } else {
                        label_values(inner, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| label_values(i, out)),
            _ => {}
        }
    }
    let mut values = Vec::new();
    for obj in objs {
        let name = obj["metadata"]["name"].as_str().unwrap();
        let limit = if obj["kind"] == "Service" { 63 } else { 253 };
        assert!(rfc1123(name, limit, limit == 253), "{} {name}", obj["kind"]);
        label_values(obj, &mut values);
    }
    for value in &values {
        assert!(
            value.len() <= 63
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                && value.starts_with(|c: char| c.is_ascii_alphanumeric())
                && value.ends_with(|c: char| c.is_ascii_alphanumeric()),
            "label value {value:?} ({} characters)",
            value.len()
        );
    }
    values
}

#[test]
fn long_scopes_render_names_and_labels_the_api_server_accepts_at_the_63_64_boundary() {
    let vault = [
        "--vault-addr",
        VAULT_IN_CLUSTER,
        "--bundle",
        "webchat-bot=support",
    ];
    // `gtc-worker-prod-` is 16 characters: a 47-character tenant makes a 63-character
    // worker name (kept), a 48-character one a 64-character name (shortened).
    let at_63 = "t".repeat(47);
    let objs = objects(&render_scope("prod", &at_63, &vault));
    assert_within_api_limits(&objs);
    let worker = format!("gtc-worker-prod-{at_63}");
    assert_eq!(worker.len(), 63);
    assert_eq!(
        find(&objs, "Service", &worker)["metadata"]["labels"]["app.kubernetes.io/instance"],
        worker.as_str()
    );
    assert!(has(&objs, "ServiceAccount", &worker));

    let at_64 = "t".repeat(48);
    let yaml = render_scope("prod", &at_64, &vault);
    let objs = objects(&yaml);
    let values = assert_within_api_limits(&objs);
    let full = format!("gtc-worker-prod-{at_64}");
    assert_eq!(full.len(), 64);
    let service = objs
        .iter()
        .find(|o| {
            o["kind"] == "Service"
                && o["metadata"]["labels"]["app.kubernetes.io/name"] == "gtc-worker"
        })
        .unwrap();
    let short = service["metadata"]["name"].as_str().unwrap();
    assert_eq!(short.len(), 63, "{short}");
    assert!(short.starts_with(&full[..50]), "{short}");
    // The same scope renders the same names; a different one (same first 54
    // characters) other names.
    assert_eq!(render_scope("prod", &at_64, &vault), yaml);
    let other = objects(&render_scope(
        "prod",
        &format!("{}u", "t".repeat(47)),
        &vault,
    ));
    assert!(!has(&other, "Service", short));
    // The ServiceAccount (= the Vault role, what the bootstrap binds) keeps the
    // full name; the Deployment runs under it and is found by the router.
    let deployment = find(&objs, "Deployment", short);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        full.as_str()
    );
    assert_eq!(
        env_of(deployment, "VAULT_K8S_ROLE").as_deref(),
        Some(full.as_str())
    );
    assert!(has(&objs, "ServiceAccount", &full));
    let router = objs
        .iter()
        .find(|o| {
            o["kind"] == "Deployment"
                && o["metadata"]["labels"]["app.kubernetes.io/name"] == "gtc-router"
        })
        .unwrap();
    let args = router["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains(&format!("http://{short}.")), "{args}");
    // The full scope is kept in an annotation on every object.
    for obj in &objs {
        assert_eq!(
            obj["metadata"]["annotations"]["greentic.ai/scope"],
            format!("prod/{at_64}").as_str(),
            "{}",
            obj["metadata"]["name"]
        );
    }
    // The issue's example: every policy's instance label fits, and the
    // router → worker policy still selects the worker's pods.
    let objs = objects(&render_scope(
        "production",
        "acme-corporation-europe",
        &vault,
    ));
    let values_issue = assert_within_api_limits(&objs);
    assert!(values.iter().chain(&values_issue).any(|v| v.len() == 63));
    let policy = find(
        &objs,
        "NetworkPolicy",
        "allow-worker-ingress-from-router-production-acme-corporation-europe",
    );
    let instance = policy["metadata"]["labels"]["app.kubernetes.io/instance"]
        .as_str()
        .unwrap();
    assert!(
        instance.len() == 63
            && instance.starts_with("allow-worker-ingress-from-router-production-acme"),
        "{instance}"
    );
    let worker = find(
        &objs,
        "Deployment",
        "gtc-worker-production-acme-corporation-europe",
    );
    assert!(selects(&policy["spec"]["podSelector"], pod_labels(worker)));
}

#[test]
fn a_long_team_gets_a_worker_and_an_egress_policy_within_the_limits() {
    // With isolated teams, `gtc-worker-prod-acme-` (21) + a 42-character team is 63
    // characters; 43 is 64. The per-team bundle egress policy's name goes past 63
    // and its instance label is shortened.
    let dir = tempfile::tempdir().unwrap();
    write_bundle(
        dir.path(),
        "webchat-bot",
        "webchat-bot",
        &["/webhook"],
        "[egress]\nallow = [\"api.example.com:443\"]",
    );
    write_bundle(dir.path(), "hello", "hello", &["/hello"], "");
    for (team, shortened) in [("s".repeat(42), false), ("s".repeat(43), true)] {
        let bundle = format!("webchat-bot={team}");
        let objs = objects(&render_scope(
            "prod",
            "acme",
            &[
                "--vault-addr",
                VAULT_IN_CLUSTER,
                "--bundle",
                &bundle,
                "--bundle",
                "hello=sales",
                "--bundles-dir",
                dir.path().to_str().unwrap(),
                "--bundle-manifests",
                dir.path().to_str().unwrap(),
                "--egress-cidr",
                "api.example.com:443=203.0.113.0/24",
            ],
        ));
        assert_within_api_limits(&objs);
        let full = format!("gtc-worker-prod-acme-{team}");
        let deployment = objs
            .iter()
            .find(|o| {
                o["kind"] == "Deployment" && pod_labels(o)["greentic.ai/team"] == team.as_str()
            })
            .unwrap();
        let name = deployment["metadata"]["name"].as_str().unwrap();
        assert_eq!(name == full, !shortened, "{name}");
        assert_eq!(
            deployment["spec"]["template"]["spec"]["serviceAccountName"],
            full.as_str()
        );
        let egress = objs
            .iter()
            .find(|o| {
                o["kind"] == "NetworkPolicy"
                    && o["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .starts_with("allow-worker-egress-to-bundle-destinations")
                    && o["metadata"]["labels"]["greentic.ai/team"] == team.as_str()
            })
            .unwrap_or_else(|| panic!("no egress policy for {team}"));
        assert!(egress["metadata"]["name"].as_str().unwrap().len() > 63);
        assert!(selects(
            &egress["spec"]["podSelector"],
            pod_labels(deployment)
        ));
        assert_eq!(
            egress["metadata"]["annotations"]["greentic.ai/scope"],
            format!("prod/acme/{team}").as_str()
        );
    }
}

/// `gtc deploy render --env ENV --tenant TENANT ARGS`: (exit code, stdout, stderr).
fn render_scope_raw(env: &str, tenant: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec![
        "deploy",
        "render",
        "--env",
        env,
        "--tenant",
        tenant,
        "--image",
        "registry.example/gtc:0.1.0",
    ];
    all.extend_from_slice(args);
    let out = run_gtc(&all, &[], b"");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn scopes_whose_names_collide_in_one_namespace_are_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let vault = ["--vault-addr", VAULT_IN_CLUSTER];
    let write = |name: &str, yaml: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        path.display().to_string()
    };
    // prod/eu-acme is in the namespace; prod-eu/acme would take its 13 names.
    let eu_acme = write(
        "eu-acme.yaml",
        &render_scope(
            "prod",
            "eu-acme",
            &[&vault[..], &["--bundle", "webchat-bot=support"]].concat(),
        ),
    );
    let (code, _, stderr) = render_scope_raw(
        "prod-eu",
        "acme",
        &[
            &vault[..],
            &["--bundle", "webchat-bot=support", "--existing", &eu_acme],
        ]
        .concat(),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("gtc-worker-prod-eu-acme")
            && stderr.contains("scope prod-eu/acme (this render)")
            && stderr.contains("scope prod/eu-acme"),
        "{stderr}"
    );
    // The same scope rendered again over itself is not a collision.
    assert_eq!(
        render_scope_raw(
            "prod",
            "eu-acme",
            &[
                &vault[..],
                &["--bundle", "webchat-bot=support", "--existing", &eu_acme]
            ]
            .concat(),
        )
        .0,
        0
    );
    // Team `support` of prod/acme (isolated teams) against tenant prod/acme-support,
    // given as `kubectl get -o yaml` prints it: a List.
    let support_tenant = objects(&render_scope(
        "prod",
        "acme-support",
        &[&vault[..], &["--bundle", "webchat-bot=support"]].concat(),
    ));
    let list = serde_norway::to_string(
        &json!({"apiVersion": "v1", "kind": "List", "items": support_tenant}),
    )
    .unwrap();
    let listed = write("namespace.yaml", &list);
    let bundles = tempfile::tempdir().unwrap();
    write_bundle(
        bundles.path(),
        "webchat-bot",
        "webchat-bot",
        &["/webhook"],
        "",
    );
    write_bundle(bundles.path(), "hello", "hello", &["/hello"], "");
    let teams = [
        "--bundle",
        "webchat-bot=support",
        "--bundle",
        "hello=sales",
        "--bundles-dir",
        bundles.path().to_str().unwrap(),
    ];
    let (code, _, stderr) = render_scope_raw(
        "prod",
        "acme",
        &[&vault[..], &teams[..], &["--existing", &listed]].concat(),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("gtc-worker-prod-acme-support")
            && stderr.contains("scope prod/acme/support (this render)")
            && stderr.contains("scope prod/acme-support"),
        "{stderr}"
    );
    // Without the other scope in the namespace, the same render is fine.
    assert_eq!(
        render_scope_raw("prod", "acme", &[&vault[..], &teams[..]].concat()).0,
        0
    );
    // An object of that name not rendered by gtc is refused too; a bad file is exit 2.
    let foreign = write(
        "foreign.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: gtc-router-prod-eu-acme\n",
    );
    let (code, _, stderr) = render_scope_raw(
        "prod-eu",
        "acme",
        &[
            &vault[..],
            &["--bundle", "webchat-bot=support", "--existing", &foreign],
        ]
        .concat(),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("Service gtc-router-prod-eu-acme") && stderr.contains("no gtc scope"),
        "{stderr}"
    );
    let (code, _, stderr) = render_scope_raw(
        "prod",
        "acme",
        &[
            &vault[..],
            &[
                "--bundle",
                "webchat-bot=support",
                "--existing",
                "/nonexistent/x.yaml",
            ],
        ]
        .concat(),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--existing /nonexistent/x.yaml"),
        "{stderr}"
    );
}

#[test]
fn monitor_labels_reach_the_service_monitor_and_pod_monitor() {
    for kind in ["service-monitor", "pod-monitor"] {
        let objs = objects(&render(&[
            "--vault-addr",
            VAULT_IN_CLUSTER,
            "--metrics-from-namespace",
            "monitoring",
            "--prometheus-operator",
            kind,
            "--monitor-label",
            "release=kube-prometheus-stack",
            "--monitor-label",
            "team.example.com/owner=platform",
        ]));
        let monitor = objs
            .iter()
            .find(|o| o["apiVersion"] == "monitoring.coreos.com/v1")
            .unwrap();
        let labels = &monitor["metadata"]["labels"];
        assert_eq!(labels["release"], "kube-prometheus-stack", "{kind}");
        assert_eq!(labels["team.example.com/owner"], "platform", "{kind}");
        // The render's own labels stay.
        assert_eq!(labels["greentic.ai/tenant"], "acme", "{kind}");
        // Only the monitor carries them.
        let worker = find(&objs, "Deployment", WORKER);
        assert!(worker["metadata"]["labels"].get("release").is_none());
    }
    // Refused: a malformed label, one that would override the render's, and the
    // flag without a monitor to put it on.
    for (args, says) in [
        (
            vec!["--prometheus-operator", "--monitor-label", "release"],
            "KEY=VALUE",
        ),
        (
            vec![
                "--prometheus-operator",
                "--monitor-label",
                "greentic.ai/tenant=other",
            ],
            "set by the render",
        ),
        (
            vec!["--monitor-label", "release=x"],
            "--prometheus-operator",
        ),
    ] {
        let stderr = refused(
            &[
                &[
                    "--vault-addr",
                    VAULT_IN_CLUSTER,
                    "--metrics-from-namespace",
                    "monitoring",
                ][..],
                &args,
            ]
            .concat(),
        );
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn with_a_prometheus_the_router_serves_its_metrics_on_a_port_only_prometheus_reaches() {
    let objs = objects(&render(&[
        "--vault-addr",
        VAULT_IN_CLUSTER,
        "--metrics-from-namespace",
        "monitoring",
        "--metrics-from-pod-label",
        "app.kubernetes.io/name=prometheus",
    ]));
    let router = find(&objs, "Deployment", ROUTER);
    let container = &router["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--metrics-listen=0.0.0.0:9091"), "{args:?}");
    assert!(args.contains(&"--listen=0.0.0.0:8080"), "{args:?}");
    assert!(
        container["ports"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "metrics", "containerPort": 9091, "protocol": "TCP"})),
        "{container}"
    );
    let policy = find(
        &objs,
        "NetworkPolicy",
        "allow-metrics-scrape-to-router-prod-acme",
    );
    assert!(selects(&policy["spec"]["podSelector"], pod_labels(router)));
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{
            "from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }],
            "ports": [{"protocol": "TCP", "port": 9091}],
        }])
    );
    // Without a Prometheus, no metrics port and no such policy.
    let objs = objects(&render(&["--vault-addr", VAULT_IN_CLUSTER]));
    let router = find(&objs, "Deployment", ROUTER);
    assert!(!router.to_string().contains("metrics-listen"));
    assert!(!has(
        &objs,
        "NetworkPolicy",
        "allow-metrics-scrape-to-router-prod-acme"
    ));
}
