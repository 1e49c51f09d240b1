//! The Vault backend against a real OpenBao: the demo's bootstrap, `gtc op secrets
//! put`, `gtc serve` logging in with a ServiceAccount token, and what Vault itself
//! enforces. The TokenReview endpoint is a loopback stand-in (see support/vault.rs).

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::vault::*;
use support::*;

const SECRET: &[u8] = b"vault-held-signing-key-5f2a9c";
const SECRET_PATH: &str = "acme/support/webchat-bot/webhook-secret";

fn serve_webchat(world: &VaultWorld, extra_env: &[(&'static str, String)]) -> Gtc {
    let bundle = webchat_bundle(world.dir.path());
    let mut env = world.worker_env();
    env.extend_from_slice(extra_env);
    Gtc::serve(&[format!("--bundle={}=support", bundle.display())], &env)
}

#[tokio::test]
async fn live_demo_bootstrap_seed_serve_and_audit_chain() {
    let world = VaultWorld::start("20m", "1h");
    // The bootstrap is idempotent: a second run succeeds and changes nothing.
    let policy_before = world.bao.cli_ok(&["policy", "read", "gtc-read-dev-acme"]);
    let role_before = world.bao.cli_ok(&[
        "read",
        "-format=json",
        &format!("auth/kubernetes/role/{ROLE}"),
    ]);
    let again = world.bootstrap("20m", "1h");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        world.bao.cli_ok(&["policy", "read", "gtc-read-dev-acme"]),
        policy_before
    );
    let role_after = world.bao.cli_ok(&[
        "read",
        "-format=json",
        &format!("auth/kubernetes/role/{ROLE}"),
    ]);
    let strip = |text: &str| {
        let mut v: Value = serde_json::from_str(text).unwrap();
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(strip(&role_after), strip(&role_before));
    assert!(
        policy_before.contains("secret/data/greentic/dev/acme/*")
            && policy_before.contains("transit/decrypt/greentic-dev-acme\"")
            && policy_before.contains("auth/token/renew-self")
    );
    let role: Value = serde_json::from_str(&role_before).unwrap();
    assert_eq!(role["data"]["token_no_default_policy"], true, "{role}");
    assert_eq!(
        role["data"]["bound_service_account_names"],
        json!([SERVICE_ACCOUNT])
    );

    world.put(SECRET_PATH, SECRET);

    // KV storage holds no plaintext: the raw entry, read with the admin token.
    let (status, raw) = world
        .bao
        .api(
            "GET",
            "secret/data/greentic/dev/acme/support/webchat-bot/webhook-secret",
            Some(ROOT_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let raw_text = raw.to_string();
    assert_eq!(raw["data"]["data"]["format"], "greentic.secrets.envelope");
    // Envelope v2: names the tenant's transit key and the KV version it was written as.
    assert_eq!(raw["data"]["data"]["version"], 2);
    assert_eq!(raw["data"]["data"]["transit_key"], "greentic-dev-acme");
    assert_eq!(
        raw["data"]["data"]["kv_version"],
        raw["data"]["metadata"]["version"]
    );
    assert!(
        raw["data"]["data"]["wrapped_dek"]
            .as_str()
            .unwrap()
            .starts_with("vault:v1:")
    );
    let secret_text = std::str::from_utf8(SECRET).unwrap();
    for window in 0..secret_text.len() - 6 {
        assert!(
            !raw_text.contains(&secret_text[window..window + 6]),
            "KV holds plaintext"
        );
    }

    // `op secrets ls` lists names only.
    let listing = run_gtc(&["op", "secrets", "ls", "acme"], &world.admin_env(), b"");
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout).trim(),
        "secrets://dev/acme/support/webchat-bot/webhook-secret"
    );

    let gtc = serve_webchat(&world, &[]);
    let (status, body) = webhook(&gtc, SECRET, r#"{"text":"from vault"}"#).await;
    assert_eq!(status, 200, "{body}\n{}", gtc.log());
    let (status, _) = webhook(&gtc, b"not-the-key", r#"{"text":"x"}"#).await;
    assert_eq!(status, 401);
    let ready = client().get(gtc.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let log = gtc.stop();
    assert!(!log.contains(secret_text), "log leaked the secret");

    // The audit log shows login → KV read → transit decrypt, all by the worker's token.
    let audit = world.bao.audit();
    let login = audit
        .iter()
        .find(|e| {
            e["type"] == "response"
                && e["request"]["path"] == "auth/kubernetes/login"
                && e["response"]["auth"]["client_token"].is_string()
        })
        .expect("a login in the audit log");
    let worker_token = login["response"]["auth"]["client_token"].as_str().unwrap();
    let position = |path: &str| {
        audit.iter().position(|e| {
            e["type"] == "request"
                && e["request"]["path"] == path
                && e["auth"]["client_token"] == worker_token
        })
    };
    let login_at = audit.iter().position(|e| std::ptr::eq(e, login)).unwrap();
    let read_at = position("secret/data/greentic/dev/acme/support/webchat-bot/webhook-secret")
        .expect("KV read by the worker");
    let decrypt_at =
        position("transit/decrypt/greentic-dev-acme").expect("transit decrypt by the worker");
    assert!(
        login_at < read_at && read_at < decrypt_at,
        "{login_at} {read_at} {decrypt_at}"
    );
    // Only the scope's policy: no `default` policy.
    assert_eq!(
        login["auth"]["policies"],
        json!(["gtc-read-dev-acme"]),
        "{login}"
    );
}

#[tokio::test]
async fn vault_enforces_the_boundary_and_refuses_other_service_accounts() {
    let world = VaultWorld::start("20m", "1h");
    let globex = world.run_bootstrap(&[("GREENTIC_TENANT", "globex")]);
    assert!(globex.status.success());
    world.put(SECRET_PATH, SECRET);
    world.put(
        "globex/_/webchat-bot/webhook-secret",
        b"other-tenant-secret",
    );
    let jwt = world.k8s.mint(
        WORKER_NAMESPACE,
        SERVICE_ACCOUNT,
        "vault",
        Duration::from_secs(600),
    );
    let (status, login) = world.worker_login(&jwt).await;
    assert_eq!(status, 200, "{login}");
    let token = login["auth"]["client_token"].as_str().unwrap().to_string();
    let token = Some(token.as_str());

    let own = "secret/data/greentic/dev/acme/support/webchat-bot/webhook-secret";
    assert_eq!(world.bao.api("GET", own, token, None).await.0, 200);
    for (method, path, body) in [
        (
            "GET",
            "secret/data/greentic/dev/globex/_/webchat-bot/webhook-secret",
            None,
        ),
        (
            "GET",
            "secret/data/greentic/prod/acme/support/webchat-bot/webhook-secret",
            None,
        ),
        ("POST", own, Some(json!({"data": {"x": "y"}}))),
        ("DELETE", own, None),
        (
            "DELETE",
            "secret/metadata/greentic/dev/acme/support/webchat-bot/webhook-secret",
            None,
        ),
        ("LIST", "secret/metadata/greentic/dev/acme", None),
        (
            "POST",
            "transit/encrypt/greentic-dev-acme",
            Some(json!({"plaintext": "eA=="})),
        ),
        ("POST", "transit/keys/greentic-dev-acme/rotate", None),
        ("GET", "sys/policies/acl/gtc-read-dev-acme", None),
        // No `default` policy: no token lookup, cubbyhole or response wrapping.
        ("GET", "auth/token/lookup-self", None),
        ("GET", "cubbyhole/anything", None),
        ("POST", "sys/wrapping/wrap", Some(json!({"x": "y"}))),
    ] {
        let (status, _) = world.bao.api(method, path, token, body).await;
        assert_eq!(status, 403, "{method} {path} should be denied");
    }

    // The generic name `gtc-worker` is not this scope's identity: refused at login.
    let generic = world.k8s.mint(
        WORKER_NAMESPACE,
        "gtc-worker",
        "vault",
        Duration::from_secs(600),
    );
    assert_eq!(world.worker_login(&generic).await.0, 403);
    // A pod under the `default` ServiceAccount is refused by Vault at login...
    let default_jwt = world.k8s.mint(
        WORKER_NAMESPACE,
        "default",
        "vault",
        Duration::from_secs(600),
    );
    let (status, _) = world.worker_login(&default_jwt).await;
    assert_eq!(status, 403);
    // ...and the host says so clearly, and answers 503 rather than 401.
    world.set_sa_token("default");
    let gtc = serve_webchat(&world, &[]);
    let ready = client().get(gtc.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let reasons = ready.text().await.unwrap();
    assert!(
        reasons.contains("403") && reasons.contains("gtc-worker"),
        "{reasons}"
    );
    let (status, _) = webhook(&gtc, SECRET, "{}").await;
    assert_eq!(status, 503);
    let log = gtc.stop();
    assert!(
        log.contains("Vault refused the pod's ServiceAccount token"),
        "{log}"
    );
}

#[tokio::test]
async fn envelopes_are_bound_to_their_path_and_tampering_is_caught() {
    let world = VaultWorld::start("20m", "1h");
    world.put("acme/team-a/probe/key", b"team-a-value");
    let read = |path: &str| {
        let bao = &world.bao;
        let path = format!("secret/data/greentic/dev/acme/{path}");
        async move { bao.api("GET", &path, Some(ROOT_TOKEN), None).await.1["data"]["data"].clone() }
    };
    let write = |path: &str, data: Value| {
        let bao = &world.bao;
        let path = format!("secret/data/greentic/dev/acme/{path}");
        async move {
            assert_eq!(
                bao.api("POST", &path, Some(ROOT_TOKEN), Some(json!({"data": data})))
                    .await
                    .0,
                200
            )
        }
    };
    let envelope = read("team-a/probe/key").await;
    // Copied to another team's path: the AAD (the URI) no longer matches.
    write("team-b/probe/key", envelope.clone()).await;
    // Tampered ciphertext.
    let mut tampered = envelope.clone();
    let ct = tampered["ciphertext"].as_str().unwrap().to_string();
    let flipped = match ct.strip_prefix('A') {
        Some(rest) => format!("B{rest}"),
        None => format!("A{}", &ct[1..]),
    };
    tampered["ciphertext"] = json!(flipped);
    write("team-a/probe/tampered", tampered).await;
    // A raw `kv put` stores plaintext: refused.
    write("team-a/probe/raw", json!({"value": "plaintext-value"})).await;

    let reads = r#"secrets = ["probe/key", "probe/tampered", "probe/raw", "probe/absent"]"#;
    let a = write_bundle(world.dir.path(), "probe-a", "probe", &["/p"], reads);
    let b = write_bundle(world.dir.path(), "probe-b", "probe", &["/q"], reads);
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}=team-a", a.display()),
            format!("--bundle={}=team-b", b.display()),
        ],
        &world.worker_env(),
    );
    assert_eq!(
        probe_get(&gtc, "/p", b"probe/key").await["value"],
        "team-a-value"
    );
    let copied = probe_get(&gtc, "/q", b"probe/key").await;
    assert_eq!(copied["error"], "internal", "{copied}");
    assert_eq!(
        probe_get(&gtc, "/p", b"probe/tampered").await["error"],
        "internal"
    );
    assert_eq!(
        probe_get(&gtc, "/p", b"probe/raw").await["error"],
        "internal"
    );
    assert_eq!(
        probe_get(&gtc, "/p", b"probe/absent").await["error"],
        "not-found"
    );
    // A deleted latest version reads as absent (Vault answers 404 with a body).
    assert_eq!(
        world
            .bao
            .api(
                "DELETE",
                "secret/data/greentic/dev/acme/team-a/probe/key",
                Some(ROOT_TOKEN),
                None
            )
            .await
            .0,
        204
    );
    let log_before = gtc.log();
    let gtc_log = {
        // Fresh process: nothing cached.
        drop(gtc);
        let gtc = Gtc::serve(
            &[format!("--bundle={}=team-a", a.display())],
            &world.worker_env(),
        );
        assert_eq!(
            probe_get(&gtc, "/p", b"probe/key").await["error"],
            "not-found"
        );
        gtc.stop()
    };
    assert!(
        log_before.contains("does not decrypt for this secret's URI"),
        "{log_before}"
    );
    assert!(
        log_before.contains("not a greentic envelope"),
        "{log_before}"
    );
    assert!(!log_before.contains("plaintext-value") && !gtc_log.contains("team-a-value"));
}

#[tokio::test]
async fn short_lived_tokens_renew_and_relogin_without_failures() {
    // Tokens live 3 s and cannot be renewed past 7 s: over 14 s the worker renews
    // and logs in again several times.
    let world = VaultWorld::start("3s", "7s");
    world.put(SECRET_PATH, SECRET);
    let gtc = serve_webchat(&world, &[("GREENTIC_SECRETS_CACHE_TTL", "200ms".into())]);
    let started = Instant::now();
    let mut sent = 0;
    let mut replaced_jti = None;
    while started.elapsed() < Duration::from_secs(14) {
        let (status, body) = webhook(&gtc, SECRET, r#"{"text":"tick"}"#).await;
        assert_eq!(
            status,
            200,
            "request {sent} failed after {:?}: {body}\n{}",
            started.elapsed(),
            gtc.log()
        );
        sent += 1;
        if replaced_jti.is_none() && started.elapsed() > Duration::from_secs(6) {
            // The kubelet rotates the projected token: the next login must use it.
            replaced_jti = Some(jti_of(&world.set_sa_token(SERVICE_ACCOUNT)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent > 50);
    let metrics = gtc.metrics().await;
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(counter("gtc_vault_logins_total") >= 2, "{metrics}");
    assert!(counter("gtc_vault_renewals_total") >= 1, "{metrics}");
    let replaced = replaced_jti.unwrap();
    assert!(
        world.k8s.reviewed().contains(&replaced),
        "the new SA token was never used to log in"
    );
}

#[tokio::test]
async fn rotation_is_served_after_one_ttl_without_restart() {
    let world = VaultWorld::start("20m", "1h");
    world.put(SECRET_PATH, b"first-version-key");
    let gtc = serve_webchat(&world, &[("GREENTIC_SECRETS_CACHE_TTL", "1s".into())]);
    assert_eq!(webhook(&gtc, b"first-version-key", "{}").await.0, 200);
    world.put(SECRET_PATH, b"second-version-key");
    // The cached first version expires after its TTL (1 s): from then on the new
    // version signs, without a restart. Waited for, with a generous deadline.
    let deadline = Instant::now() + Duration::from_secs(30);
    while webhook(&gtc, b"second-version-key", "{}").await.0 != 200 {
        assert!(Instant::now() < deadline, "never rotated:\n{}", gtc.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(webhook(&gtc, b"first-version-key", "{}").await.0, 401);
}

#[tokio::test]
async fn openbao_down_serves_stale_within_bound_then_503_then_recovers() {
    let world = VaultWorld::start("20m", "1h");
    world.put(SECRET_PATH, SECRET);
    let gtc = serve_webchat(
        &world,
        &[
            ("GREENTIC_SECRETS_CACHE_TTL", "300ms".into()),
            ("GREENTIC_SECRETS_STALE_FOR", "4s".into()),
            ("GREENTIC_VAULT_TIMEOUT", "700ms".into()),
        ],
    );
    assert_eq!(webhook(&gtc, SECRET, "{}").await.0, 200);
    world.bao.suspend();
    let down_at = Instant::now();
    // Within the stale bound: still answered from the cache.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = webhook(&gtc, SECRET, "{}").await;
    assert_eq!(status, 200, "{body}");
    // Past TTL + stale bound (4.3 s): unavailable, the bot answers 503. Waited
    // for; it must not come before the bound.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = webhook(&gtc, SECRET, "{}").await;
        if status == 503 {
            assert!(
                down_at.elapsed() >= Duration::from_secs(4),
                "503 after {:?}, within the stale bound",
                down_at.elapsed()
            );
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(Instant::now() < deadline, "never 503:\n{}", gtc.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    world.bao.resume();
    // Back: recovery without restarting gtc.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = webhook(&gtc, SECRET, "{}").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery:\n{}", gtc.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = gtc.stop();
    assert!(log.contains("serving a stale cached secret"), "{log}");
    assert!(log.contains("unreachable (request timeout)"), "{log}");
    // The backend is described with the transit key this worker uses, not the
    // template it is derived from.
    assert!(log.contains("transit transit/greentic-dev-acme)"), "{log}");
    assert!(!log.contains("greentic-<env>-<tenant>"), "{log}");
}

#[tokio::test]
async fn a_vault_namespace_is_honoured_end_to_end() {
    // Auth, engines, policy, role and the secret all live in namespace `tenants`
    // (created with `bao namespace create`; the bootstrap runs inside it).
    let world = VaultWorld::start_in_namespace("tenants");
    world.put(SECRET_PATH, b"namespaced-signing-key");
    // Through a counting proxy: its `other` requests are the worker's `sys/health`
    // heartbeats (every 5 s of idleness), which Vault serves only in the root
    // namespace.
    let proxy = support::proxy::VaultProxy::start(&world.bao.addr, support::proxy::Mode::Forward);
    let env = with_env(&world.worker_env(), "VAULT_ADDR", Some(&proxy.addr));
    let bundle = webchat_bundle(world.dir.path());
    let gtc = Gtc::serve(&[format!("--bundle={}=support", bundle.display())], &env);
    assert_eq!(webhook(&gtc, b"namespaced-signing-key", "{}").await.0, 200);
    assert_eq!(gtc.get("/readyz").await.0, 200);
    // Two heartbeats sent: the first one's answer has been taken in.
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.tally().other < 2 {
        assert!(Instant::now() < deadline, "no heartbeat:\n{}", gtc.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The heartbeat left the backend healthy (a refused one makes it "degraded",
    // and "down" after three).
    let (status, body) = gtc.get("/readyz").await;
    assert_eq!(status, 200, "{body}\n{}", gtc.log());
    let readyz: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        readyz["backend"]["state"],
        "healthy",
        "{body}\n{}",
        gtc.log()
    );
    assert_eq!(webhook(&gtc, b"namespaced-signing-key", "{}").await.0, 200);
    // The doctor walks the same path (health, login, read, decrypt) in the namespace.
    let doctor = run_gtc(
        &["doctor", &format!("--bundle={}=support", bundle.display())],
        &world.worker_env(),
        b"",
    );
    let report = text(&doctor);
    assert_eq!(doctor.status.code(), Some(0), "{report}");
    assert!(!report.contains("[FAIL]"), "{report}");
    let log = gtc.stop();
    assert!(!log.contains("Vault backend is down"), "{log}");
    drop(proxy);
    // The same worker without VAULT_NAMESPACE finds no such role in the root namespace.
    let bundle = webchat_bundle(world.dir.path());
    let env = with_env(&world.worker_env(), "VAULT_NAMESPACE", None);
    let gtc = Gtc::serve(&[format!("--bundle={}=support", bundle.display())], &env);
    assert_eq!(webhook(&gtc, b"namespaced-signing-key", "{}").await.0, 503);
}

#[tokio::test]
async fn an_external_vault_logs_workers_in_with_the_rendered_reviewer_and_not_without_it() {
    // The render for an external Vault emits the reviewer ServiceAccount and its
    // system:auth-delegator binding; the TokenReview stand-in grants exactly that
    // binding to that account (what `kubectl apply` of the render does), and the
    // bootstrap is given its token (`kubectl create token`).
    let out = run_gtc(
        &[
            "deploy",
            "render",
            "--env",
            "dev",
            "--tenant",
            "acme",
            "--namespace",
            WORKER_NAMESPACE,
            "--image",
            "registry.example/gtc:0.1.0",
            "--bundle",
            "webchat-bot=support",
            "--vault-addr",
            "https://vault.example.com",
            "--vault-mode",
            "external",
            "--vault-cidr",
            "203.0.113.10/32",
        ],
        &[],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out));
    let yaml = String::from_utf8(out.stdout).unwrap();
    let binding: Value = {
        use serde::Deserialize as _;
        serde_norway::Deserializer::from_str(&yaml)
            .map(|doc| Value::deserialize(doc).unwrap())
            .find(|doc| doc["kind"] == "ClusterRoleBinding")
            .expect("no ClusterRoleBinding in the external render")
    };
    assert_eq!(binding["roleRef"]["name"], "system:auth-delegator");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": REVIEWER_SERVICE_ACCOUNT, "namespace": WORKER_NAMESPACE}])
    );
    assert!(yaml.contains(&format!(
        "name: {REVIEWER_SERVICE_ACCOUNT}\n  namespace: {WORKER_NAMESPACE}"
    )));

    // With the reviewer (VaultWorld bootstraps with it): login works.
    let world = VaultWorld::start("20m", "1h");
    world.put(SECRET_PATH, b"reviewed-signing-key");
    let gtc = serve_webchat(&world, &[]);
    assert_eq!(webhook(&gtc, b"reviewed-signing-key", "{}").await.0, 200);
    drop(gtc);
    assert!(
        world.k8s.refused_callers().is_empty(),
        "{:?}",
        world.k8s.refused_callers()
    );

    // Vault refusing the bootstrap's own token is exit 1 (not the CLI's 2).
    let out = world.run_bootstrap(&[("VAULT_TOKEN", "not-a-token")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("Vault refused it or could not be reached"),
        "{}",
        text(&out)
    );
    // An external bootstrap with no reviewer identity at all is refused (exit 2).
    let out = world.run_bootstrap(&[("TOKEN_REVIEWER_JWT_FILE", "")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("TOKEN_REVIEWER_JWT_FILE") && said.contains("USE_CLIENT_JWT_AS_REVIEWER"),
        "{said}"
    );
    // The client's own JWT as the reviewer: Vault sends the worker's token (audience
    // `vault`) as its bearer; the API server refuses it, and so every login fails.
    let out = world.run_bootstrap(&[
        ("TOKEN_REVIEWER_JWT_FILE", ""),
        ("USE_CLIENT_JWT_AS_REVIEWER", "true"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let bundle = webchat_bundle(world.dir.path());
    let doctor = run_gtc(
        &["doctor", &format!("--bundle={}=support", bundle.display())],
        &world.worker_env(),
        b"",
    );
    let report = text(&doctor);
    assert_eq!(doctor.status.code(), Some(1), "{report}");
    let fail = report
        .lines()
        .find(|l| l.starts_with("[FAIL]"))
        .unwrap_or_default();
    assert!(fail.contains("login"), "{report}");
    assert!(
        fail.contains("reviewer") && fail.contains("system:auth-delegator"),
        "{report}"
    );
    let refused = world.k8s.refused_callers();
    assert!(
        refused
            .iter()
            .any(|r| r.starts_with("401") && r.contains("\"vault\"")),
        "{refused:?}"
    );
    // Giving the reviewer back makes the same worker identity log in again.
    assert!(world.run_bootstrap(&[]).status.success());
    let gtc = serve_webchat(&world, &[]);
    assert_eq!(webhook(&gtc, b"reviewed-signing-key", "{}").await.0, 200);
}
