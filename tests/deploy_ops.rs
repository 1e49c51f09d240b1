//! Deployment and operations: rendered manifests validated against the official
//! Kubernetes schemas, `gtc doctor` verdicts, readiness, the router, and the
//! one-machine demo (local.sh) run to completion.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::vault::*;
use support::*;

fn render(args: &[&str]) -> String {
    let mut all = vec!["deploy", "render"];
    all.extend_from_slice(args);
    let out = run_gtc(&all, &[], b"");
    assert!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const VAULT_RENDER: [&str; 12] = [
    "--env",
    "prod",
    "--tenant",
    "acme",
    "--image",
    "registry.example/gtc:0.1.0",
    "--vault-addr",
    "https://vault.vault.svc:8200",
    "--bundle",
    "webchat-bot=support",
    "--bundle",
    "hello",
];

use support::kubernetes_validate as validate;

#[test]
fn rendered_manifests_validate_against_kubernetes_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put_shipped(
        &store,
        "acme/_/webchat-bot/webhook-secret",
        b"dev-only-value",
    );
    let vault = render(&VAULT_RENDER);
    let dev = render(&[
        "--env",
        "dev",
        "--tenant",
        "acme",
        "--image",
        "gtc:dev",
        "--backend",
        "dev-store",
        "--bundle",
        "webchat-bot=support",
        "--dev-store",
        store.to_str().unwrap(),
    ]);
    for (name, yaml) in [("vault.yaml", &vault), ("dev.yaml", &dev)] {
        let file = dir.path().join(name);
        std::fs::write(&file, yaml).unwrap();
        for version in KUBERNETES_VERSIONS {
            let out = validate(&file, version);
            assert!(
                out.status.success(),
                "{name} does not validate for {version}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // The demo's in-cluster Vault validates too.
    for version in ["1.33.0", "1.37.0"] {
        let out = validate(&root().join("examples/k8s-vault-demo/vault.yaml"), version);
        assert!(
            out.status.success(),
            "vault.yaml: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // Every shell script of the project at least parses.
    for script in [
        "examples/k8s-vault-demo/vault-bootstrap.sh",
        "examples/k8s-vault-demo/local.sh",
        "examples/k8s-vault-demo/deploy.sh",
        "examples/webchat-bot/run.sh",
        "tests/install-tools.sh",
        ".ci/run",
    ] {
        let ok = Command::new("bash")
            .arg("-n")
            .arg(root().join(script))
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script} does not parse");
    }
    // The validator is strict: a stray field is caught (so a pass means something).
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        vault.replacen(
            "automountServiceAccountToken: false",
            "automountServiceAccountToken: false\nbogusField: 1",
            1,
        ),
    )
    .unwrap();
    assert!(!validate(&bad, "1.35.0").status.success());
    // The dev-store render still ships its Secret.
    assert!(dev.contains("kind: Secret") && dev.contains("name: gtc-dev-secrets-dev-acme"));
}

/// Splits a rendered stream into (kind, name, document) triples.
fn documents(yaml: &str) -> Vec<(String, String, String)> {
    yaml.split("\n---\n")
        .map(|doc| doc.trim_start_matches("---\n").to_string())
        .filter(|doc| !doc.trim().is_empty())
        .map(|doc| {
            let field = |key: &str| {
                doc.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            let name = doc
                .lines()
                .find_map(|l| l.trim_start().strip_prefix("name: "))
                .unwrap_or_default()
                .to_string();
            (field("kind: "), name, doc)
        })
        .collect()
}

#[test]
fn vault_render_has_no_secret_and_only_the_worker_has_a_token() {
    // A dev store given to a vault render is refused (exit 2, naming the flag),
    // and its value is not printed.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(
        &store,
        "acme/_/webchat-bot/webhook-secret",
        b"must-not-appear-anywhere",
    );
    let mut args = vec!["deploy", "render"];
    args.extend_from_slice(&VAULT_RENDER);
    let store_arg = store.to_str().unwrap().to_string();
    args.extend_from_slice(&["--dev-store", &store_arg]);
    let refused = run_gtc(&args, &[], b"");
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("--dev-store"), "{}", text(&refused));
    assert!(!text(&refused).contains("must-not-appear-anywhere"));
    let yaml = render(&VAULT_RENDER);
    assert!(!yaml.contains("must-not-appear-anywhere"));
    assert!(
        !yaml.contains("VAULT_TOKEN") && !yaml.contains("hvs.") && !yaml.contains("stringData")
    );
    let docs = documents(&yaml);
    assert!(docs.iter().all(|(kind, _, _)| kind != "Secret"), "{yaml}");
    let kinds: Vec<&str> = docs.iter().map(|(k, _, _)| k.as_str()).collect();
    assert!(kinds.contains(&"ServiceAccount") && kinds.contains(&"NetworkPolicy"));
    for (kind, name, doc) in &docs {
        if kind != "Deployment" {
            continue;
        }
        assert!(
            doc.contains("automountServiceAccountToken: false"),
            "{name}"
        );
        assert!(doc.contains("readOnlyRootFilesystem: true") && doc.contains("runAsNonRoot: true"));
        assert!(doc.contains("path: /healthz") && doc.contains("path: /readyz"));
        // Env and tenant are in every name and in the labels.
        assert!(
            doc.contains("greentic.ai/env: prod") && doc.contains("greentic.ai/tenant: acme"),
            "{doc}"
        );
        match name.as_str() {
            "gtc-worker-prod-acme" => {
                assert!(doc.contains("serviceAccountName: gtc-worker-prod-acme\n"));
                assert!(doc.contains("serviceAccountToken:") && doc.contains("audience: vault"));
                assert!(doc.contains("expirationSeconds: 600"));
                assert!(doc.contains("GREENTIC_SECRETS_BACKEND") && doc.contains("value: vault"));
                assert!(doc.contains("gtc-worker-prod-acme"));
            }
            "gtc-router-prod-acme" => {
                assert!(!doc.contains("serviceAccountName"), "{doc}");
                assert!(!doc.contains("serviceAccountToken"), "{doc}");
                assert!(!doc.contains("VAULT_"), "{doc}");
            }
            other => panic!("unexpected deployment {other}"),
        }
    }
    let policies: Vec<&str> = docs
        .iter()
        .filter(|(k, _, _)| k == "NetworkPolicy")
        .map(|(_, n, _)| n.as_str())
        .collect();
    for wanted in [
        "default-deny-all",
        "allow-dns-egress",
        "allow-router-to-worker",
        "allow-worker-ingress-from-router",
        "allow-worker-egress-to-vault",
    ] {
        let wanted = format!("{wanted}-prod-acme");
        assert!(
            policies.contains(&wanted.as_str()),
            "{wanted} missing: {policies:?}"
        );
    }
}

fn doctor(env: &[(&'static str, String)], bundle: &std::path::Path) -> (i32, String) {
    let arg = format!("--bundle={}=support", bundle.display());
    let out = run_gtc(&["doctor", &arg], env, b"");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The step named by the `[FAIL]` line of a report.
fn failed_step(report: &str) -> Option<String> {
    fail_line(report)
        .split_whitespace()
        .nth(1)
        .map(str::to_string)
}

/// A real OpenBao with the webchat-bot secret seeded as `value`, the bundle, and the
/// worker's environment with a 1 s Vault timeout (the doctor tests' common start).
fn doctor_world(value: &[u8]) -> (VaultWorld, std::path::PathBuf, Vec<(&'static str, String)>) {
    let world = VaultWorld::start("20m", "1h");
    world.put("acme/support/webchat-bot/webhook-secret", value);
    let bundle = webchat_bundle(world.dir.path());
    let mut env = world.worker_env();
    env.push(("GREENTIC_VAULT_TIMEOUT", "1s".into()));
    (world, bundle, env)
}

#[tokio::test]
async fn doctor_gives_the_right_verdict_for_each_failure() {
    let (world, bundle, env) = doctor_world(b"doctor-checked-value");

    // Healthy: every step passes, exit 0.
    let (code, report) = doctor(&env, &bundle);
    assert_eq!(code, 0, "{report}");
    for step in ["config", "dns", "tcp", "vault", "login", "read", "decrypt"] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&format!("[PASS] {step}"))),
            "{step}: {report}"
        );
    }
    assert!(!report.contains("doctor-checked-value"));

    // Nothing listens at the address: TCP fails, with the next thing to check.
    let port = free_port();
    let nowhere = with_env(
        &env,
        "VAULT_ADDR",
        Some(&format!("http://127.0.0.1:{port}")),
    );
    let (code, report) = doctor(&nowhere, &bundle);
    assert_eq!(
        (code, failed_step(&report).as_deref()),
        (1, Some("tcp")),
        "{report}"
    );
    assert!(
        report.contains("NetworkPolicy") && report.contains("[SKIP] login"),
        "{report}"
    );

    // A wrong role: login fails and says what Vault answered.
    let wrong_role = with_env(&env, "VAULT_K8S_ROLE", Some("no-such-role"));
    let (code, report) = doctor(&wrong_role, &bundle);
    assert_eq!(
        (code, failed_step(&report).as_deref()),
        (1, Some("login")),
        "{report}"
    );
    assert!(
        report.contains("no-such-role") && report.contains("HTTP 4"),
        "{report}"
    );

    // A missing declared secret: the read step names it.
    let other = write_bundle(
        world.dir.path(),
        "other-bot",
        "webchat-bot",
        &["/x"],
        "secrets = [\"api-key\"]",
    );
    let (code, report) = doctor(&env, &other);
    assert_eq!(
        (code, failed_step(&report).as_deref()),
        (1, Some("read")),
        "{report}"
    );
    assert!(
        report.contains("other-bot:api-key") && report.contains("gtc op secrets put"),
        "{report}"
    );

    // OpenBao stopped (frozen): the connection opens but Vault never answers.
    world.bao.suspend();
    let (code, report) = doctor(&env, &bundle);
    world.bao.resume();
    assert_eq!(
        (code, failed_step(&report).as_deref()),
        (1, Some("vault")),
        "{report}"
    );
    assert!(
        report.contains("did not answer") && report.contains("network path is open"),
        "{report}"
    );
}

/// Runs doctor, asserts its exit code, its failing step and one line per check;
/// returns the report.
fn doctor_fails(
    env: &[(&'static str, String)],
    bundle: &std::path::Path,
    code: i32,
    step: &str,
) -> String {
    let (got, report) = doctor(env, bundle);
    assert_eq!(
        (got, failed_step(&report).as_deref()),
        (code, Some(step)),
        "{report}"
    );
    assert!(
        report
            .lines()
            .all(|l| l.starts_with('[') || l.starts_with("error:")),
        "every line is one check: {report:?}"
    );
    report
}

/// The `[FAIL]` line of a report.
fn fail_line(report: &str) -> &str {
    report
        .lines()
        .find(|l| l.starts_with("[FAIL]"))
        .unwrap_or_default()
}

#[tokio::test]
async fn doctor_names_each_cause_on_one_line_and_exits_by_class() {
    let (world, bundle, env) = doctor_world(b"doctor-causes-value");

    // Connected but no answer: a loopback server that accepts and never answers.
    let silent = silent_tcp_server();
    let quiet = with_env(&env, "VAULT_ADDR", Some(&format!("http://{silent}")));
    let report = doctor_fails(&quiet, &bundle, 1, "vault");
    let line = fail_line(&report);
    assert!(report.contains("[PASS] tcp"), "{report}");
    assert!(
        line.contains(&format!("connected to {silent} but Vault"))
            && line.contains("did not answer"),
        "{report}"
    );

    // https:// against a plain-HTTP Vault: a protocol mismatch, not "refused".
    let https = with_env(
        &env,
        "VAULT_ADDR",
        Some(&world.bao.addr.replace("http://", "https://")),
    );
    let report = doctor_fails(&https, &bundle, 1, "vault");
    assert!(
        fail_line(&report).contains("TLS/protocol mismatch"),
        "{report}"
    );
    assert!(!report.contains("refused"), "{report}");

    // A wrong KV prefix: Vault's multi-line "1 error occurred:\n\t* permission
    // denied" is folded into the one FAIL line, which names the variables.
    let prefix = with_env(&env, "VAULT_KV_PREFIX", Some("elsewhere"));
    let report = doctor_fails(&prefix, &bundle, 1, "read");
    let line = fail_line(&report);
    assert!(
        line.contains("permission denied")
            && line.contains("VAULT_KV_PREFIX (elsewhere)")
            && line.contains("VAULT_KV_MOUNT (secret)"),
        "{report}"
    );

    // A configuration error exits 2 (the pod is misconfigured), not 1.
    let bogus = with_env(&env, "GREENTIC_SECRETS_BACKEND", Some("vaultt"));
    doctor_fails(&bogus, &bundle, 2, "config");

    // Login timed out: Vault answers, but its own TokenReview call hangs.
    let hanging = silent_tcp_server();
    world.bao.cli_ok(&[
        "write",
        "auth/kubernetes/config",
        &format!("kubernetes_host=http://{hanging}"),
        &format!(
            "kubernetes_ca_cert=@{}",
            world.dir.path().join("k8s-ca.pem").display()
        ),
        "disable_local_ca_jwt=true",
    ]);
    let report = doctor_fails(&env, &bundle, 1, "login");
    let line = fail_line(&report);
    assert!(
        line.contains("login timed out") && line.contains("TokenReview"),
        "{report}"
    );

    // Sealed: said in so many words.
    world.bao.cli_ok(&["operator", "seal"]);
    let report = doctor_fails(&env, &bundle, 1, "vault");
    assert!(fail_line(&report).contains("is sealed"), "{report}");
    assert!(!report.contains("HTTP 503"), "{report}");
}

#[tokio::test]
async fn readyz_waits_for_login_and_every_declared_secret() {
    let world = VaultWorld::start("20m", "1h");
    let bundle = webchat_bundle(world.dir.path());
    let mut env = world.worker_env();
    env.push(("GREENTIC_SECRETS_CACHE_TTL", "300ms".into()));
    let gtc = Gtc::serve(&[format!("--bundle={}=support", bundle.display())], &env);
    // Not ready from the start; once the start-up fetch has run, the reason names
    // the missing secret.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = client().get(gtc.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 503);
        let reasons = ready.text().await.unwrap();
        assert!(reasons.contains("webhook-secret"), "{reasons}");
        if reasons.contains("not found") {
            break;
        }
        assert!(Instant::now() < deadline, "{reasons}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    world.put("acme/_/webchat-bot/webhook-secret", b"tenant-wide-key");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client()
            .get(gtc.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(webhook(&gtc, b"tenant-wide-key", "{}").await.0, 200);
    let metrics = gtc.metrics().await;
    assert!(
        metrics.contains("gtc_requests_total{bundle=\"webchat-bot\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gtc_secrets_get_total{outcome=\"ok\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("gtc_vault_logins_total 1"), "{metrics}");
    assert!(!metrics.contains("tenant-wide-key"));
}

#[tokio::test]
async fn router_forwards_webhooks_and_keeps_host_endpoints_internal() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "local/_/webchat-bot/webhook-secret", b"router-key");
    let bundle = webchat_bundle(dir.path());
    let worker = Gtc::serve(
        &[format!("--bundle={}", bundle.display())],
        &[("GREENTIC_DEV_STORE", store.display().to_string())],
    );
    let router = support::Router::start(&worker.base);
    let body = r#"{"text":"via router"}"#;
    let response = client()
        .post(format!("{}/webhook", router.base))
        .header("x-greentic-signature", sign(b"router-key", body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("via router"));
    let metrics = client()
        .get(format!("{}/metrics", router.base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 404);
    let too_big = client()
        .post(format!("{}/webhook", router.base))
        .body(vec![b'x'; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);
}

/// A loopback server that reads each request and closes the connection without
/// an answer (a worker that crashed mid-request); it ends with the test process.
fn connection_breaking_server() -> std::net::SocketAddr {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial");
        }
    });
    addr
}

#[tokio::test]
async fn the_router_says_503_for_a_refused_worker_and_502_only_for_a_broken_answer() {
    // Nothing listens on `refused` (a Service with no ready endpoint); `broken`
    // takes the request and closes before its body is complete.
    let refused = format!("http://127.0.0.1:{}", free_port());
    let broken = format!("http://{}", connection_breaking_server());
    let router = support::Router::start_with_metrics(&[
        format!("/down={refused}"),
        format!("/crash={broken}"),
    ]);
    let post = |path: &'static str| {
        let url = format!("{}{path}", router.base);
        async move { client().post(url).body("{}").send().await.unwrap() }
    };
    let down = post("/down/hook").await;
    assert_eq!(down.status(), 503);
    assert_eq!(down.headers()["retry-after"], "5");
    assert!(down.text().await.unwrap().contains("no_ready_worker"));
    let crash = post("/crash/hook").await;
    assert_eq!(crash.status(), 502);
    assert!(crash.headers().get("retry-after").is_none());
    assert!(crash.text().await.unwrap().contains("connection_broken"));
    let metrics = client()
        .get(router.metrics.as_deref().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "gtc_route_upstream_failures_total{route=\"/down\",cause=\"no_ready_worker\"} 1",
        "gtc_route_upstream_failures_total{route=\"/crash\",cause=\"connection_broken\"} 1",
        "gtc_route_responses_total{status=\"502\"} 1",
        "gtc_route_responses_total{status=\"503\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    // The public port still keeps /metrics to itself.
    assert_eq!(post("/metrics").await.status(), 404);
}

#[test]
fn local_demo_names_a_missing_prerequisite_and_exits_2() {
    // A PATH holding only some of the tools local.sh needs (it never reaches npm:
    // the bao CLI comes from `install-tools.sh --bao-only`).
    let bin = tempfile::tempdir().unwrap();
    let which = |tool: &str| {
        let out = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let link = |tools: &[&str]| {
        for tool in tools {
            let target = which(tool);
            assert!(!target.is_empty(), "{tool} is not installed here");
            let _ = std::os::unix::fs::symlink(&target, bin.path().join(tool));
        }
    };
    link(&["bash", "dirname", "curl"]);
    let run = |binaries: bool| {
        let mut command = Command::new(which("bash"));
        command
            .arg(root().join("examples/k8s-vault-demo/local.sh"))
            .env_clear()
            .env("PATH", bin.path());
        if binaries {
            command
                .env("GTC_BIN", gtc_bin())
                .env("TOKENREVIEW_STUB_BIN", "/nonexistent/tokenreview-stub");
        }
        command.output().unwrap()
    };
    let out = run(true);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("local.sh: openssl is required"),
        "{}",
        text(&out)
    );
    link(&["openssl"]);
    // Without prebuilt binaries it builds them: cargo is needed then.
    let out = run(false);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("local.sh: cargo is required"),
        "{}",
        text(&out)
    );
}

#[test]
fn local_demo_runs_to_completion() {
    let stub = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .map(|debug| debug.join("examples/tokenreview-stub"))
        .unwrap();
    assert!(
        stub.exists(),
        "{} is missing: run the suite with `cargo test --workspace`, which builds the examples",
        stub.display()
    );
    let out = Command::new("bash")
        .arg(root().join("examples/k8s-vault-demo/local.sh"))
        .env("GTC_BIN", gtc_bin())
        .env("TOKENREVIEW_STUB_BIN", &stub)
        .env_remove("VAULT_TOKEN")
        .env_remove("VAULT_ADDR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "local.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("webhook answered 200"), "{stdout}");
    assert!(
        stdout.contains("auth/kubernetes/login -> secret/data/greentic/dev/demo/support/webchat-bot/webhook-secret -> transit/decrypt/greentic-dev-demo"),
        "{stdout}"
    );
}

#[tokio::test]
async fn tls_with_a_custom_ca_works_and_doctor_names_a_missing_ca() {
    let world = VaultWorld::start_with("20m", "1h", true);
    assert!(world.bao.addr.starts_with("https://"));
    world.put(
        "acme/support/webchat-bot/webhook-secret",
        b"tls-held-signing-key",
    );
    let bundle = webchat_bundle(world.dir.path());
    let gtc = Gtc::serve(
        &[format!("--bundle={}=support", bundle.display())],
        &world.worker_env(),
    );
    assert_eq!(webhook(&gtc, b"tls-held-signing-key", "{}").await.0, 200);
    drop(gtc);
    let (code, report) = doctor(&world.worker_env(), &bundle);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("TLS handshake ok"), "{report}");
    // Without VAULT_CACERT, the certificate is not trusted: doctor says TLS.
    let no_ca = with_env(&world.worker_env(), "VAULT_CACERT", None);
    let (code, report) = doctor(&no_ca, &bundle);
    assert_eq!(
        (code, failed_step(&report).as_deref()),
        (1, Some("vault")),
        "{report}"
    );
    assert!(
        report.contains("TLS handshake failed") && report.contains("VAULT_CACERT"),
        "{report}"
    );
    // http:// against the TLS listener: a protocol mismatch, with the fix.
    let plain = with_env(
        &world.worker_env(),
        "VAULT_ADDR",
        Some(&world.bao.addr.replace("https://", "http://")),
    );
    let (code, report) = doctor(&plain, &bundle);
    assert_eq!(
        (code, failed_step(&report).as_deref()),
        (1, Some("vault")),
        "{report}"
    );
    assert!(
        report.contains("TLS/protocol mismatch") && report.contains("use https://"),
        "{report}"
    );
}

#[test]
fn two_tenants_render_into_one_namespace_without_overwriting_each_other() {
    let tenant = |env: &str, tenant: &str| {
        render(&[
            "--env",
            env,
            "--tenant",
            tenant,
            "--namespace",
            "shared",
            "--image",
            "registry.example/gtc:0.1.0",
            "--vault-addr",
            "https://vault.vault.svc:8200",
            "--bundle",
            "webchat-bot=support",
        ])
    };
    let renders = [
        ("prod", "acme", tenant("prod", "acme")),
        ("prod", "globex", tenant("prod", "globex")),
        ("dev", "acme", tenant("dev", "acme")),
    ];
    let mut seen = std::collections::BTreeMap::new();
    let mut own_selectors = 0;
    for (env, tenant, yaml) in &renders {
        for (kind, name, doc) in documents(yaml) {
            // Every object names its scope and is labelled with it.
            assert!(name.ends_with(&format!("-{env}-{tenant}")), "{kind} {name}");
            assert!(
                doc.contains(&format!("greentic.ai/env: {env}\n"))
                    && doc.contains(&format!("greentic.ai/tenant: {tenant}\n")),
                "{doc}"
            );
            if let Some(other) = seen.insert((kind.clone(), name.clone()), *tenant) {
                panic!("{kind} {name} rendered for {other} and {tenant}");
            }
            // Every selector (workloads, services, network policies) names the scope,
            // so one scope's policies never select another scope's pods.
            for selector in doc.split("matchLabels:").skip(1) {
                let block: String = selector.lines().take(6).collect::<Vec<_>>().join("\n");
                if block.contains("kubernetes.io/metadata.name") || block.contains("k8s-app") {
                    continue; // a namespace or kube-dns selector, not our pods
                }
                if block.contains("app.kubernetes.io/name: vault") {
                    continue;
                }
                own_selectors += 1;
                assert!(
                    block.contains(&format!("greentic.ai/tenant: {tenant}")),
                    "{kind} {name}: selector without the tenant:\n{block}"
                );
            }
        }
    }
    // Workloads, Services and NetworkPolicies of three scopes: many selectors
    // were checked, not none.
    assert!(
        own_selectors >= 30,
        "only {own_selectors} selectors checked"
    );

    // The three scopes' workers have three identities (what Vault binds).
    let accounts: Vec<String> = renders
        .iter()
        .flat_map(|(_, _, yaml)| {
            yaml.lines()
                .filter_map(|l| l.trim().strip_prefix("serviceAccountName: "))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        accounts,
        [
            "gtc-worker-prod-acme",
            "gtc-worker-prod-globex",
            "gtc-worker-dev-acme"
        ]
    );
    // Applied together, they are one valid stream.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shared.yaml");
    let all: String = renders.iter().map(|(_, _, yaml)| yaml.as_str()).collect();
    std::fs::write(&file, all).unwrap();
    for version in KUBERNETES_VERSIONS {
        let out = validate(&file, version);
        assert!(
            out.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // A name Kubernetes would refuse is refused with the reason, not rendered.
    let out = run_gtc(
        &[
            "deploy",
            "render",
            "--env",
            "prod",
            "--tenant",
            "acme.eu",
            "--image",
            "gtc:1",
            "--vault-addr",
            "http://vault:8200",
            "--bundle",
            "webchat-bot",
        ],
        &[],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be part of a Kubernetes object name"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_router_refuses_ambiguous_upstreams_as_bad_configuration() {
    for upstreams in [
        &["--upstream=/a=http://x:1", "--upstream=/a/=http://y:1"][..],
        &["--upstream=http://x:1", "--upstream=http://y:1"][..],
        &["--upstream=/a=ftp://x"][..],
    ] {
        let mut args = vec!["route", "--listen=127.0.0.1:0"];
        args.extend_from_slice(upstreams);
        let out = run_gtc(&args, &[], b"");
        assert_eq!(out.status.code(), Some(2), "{upstreams:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--upstream"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
