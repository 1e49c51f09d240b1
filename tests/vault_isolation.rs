//! Isolation that Vault itself enforces, on a real OpenBao: one identity per
//! (env, tenant) scope even when scopes share a Kubernetes namespace, the
//! bootstrap refusing an identity another scope already holds, team isolation
//! (render → bootstrap → router → per-team workers), least privilege measured with
//! `sys/capabilities`, the per-tenant transit key with the v1 → v2 migration
//! (`ls --check`, `rewrap`), and a rolled-back KV version refused.
//!
//! Cross-scope attempts call Vault directly with the worker's own token, so the
//! host's scope checks play no part in what is refused.

mod support;

use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;
use support::vault::*;
use support::*;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `gtc op secrets put --env ENV PATH` with `value` on stdin.
fn put_in(world: &VaultWorld, env: &str, path: &str, value: &[u8]) {
    let out = run_gtc(
        &["op", "secrets", "put", "--env", env, path],
        &world.admin_env(),
        value,
    );
    assert!(out.status.success(), "put {env}/{path}: {}", stderr(&out));
}

/// Logs `service_account` (in the workers' namespace) in to `role`.
async fn login_as(world: &VaultWorld, service_account: &str, role: &str) -> (u16, Option<String>) {
    let jwt = world.k8s.mint(
        WORKER_NAMESPACE,
        service_account,
        "vault",
        Duration::from_secs(600),
    );
    let (status, body) = world.login(role, &jwt).await;
    let token = body["auth"]["client_token"].as_str().map(str::to_string);
    (status, token)
}

/// Workers of one test share compiled components: only the first start compiles.
fn compile_cache(world: &VaultWorld) -> String {
    format!(
        "--compile-cache={}",
        world.dir.path().join("compiled").display()
    )
}

fn kv(env: &str, rest: &str) -> String {
    format!("secret/data/greentic/{env}/{rest}")
}

/// The capabilities `token` has on each of `paths`, as Vault computes them.
async fn capabilities(world: &VaultWorld, token: &str, paths: &[&str]) -> BTreeMap<String, Value> {
    let (status, body) = world
        .bao
        .api(
            "POST",
            "sys/capabilities",
            Some(ROOT_TOKEN),
            Some(json!({"token": token, "paths": paths})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    paths
        .iter()
        .map(|p| (p.to_string(), body["data"][*p].clone()))
        .collect()
}

fn assert_capabilities(actual: &BTreeMap<String, Value>, expected: &[(&str, &[&str])]) {
    for (path, caps) in expected {
        assert_eq!(actual[*path], json!(caps), "capabilities on {path}");
    }
}

/// What the probe bundles read: a bundle may `get` only what its manifest declares.
const PROBE_READS: &str = r#"secrets = ["probe/key", "probe/shared", "probe/legacy"]"#;

#[tokio::test]
async fn three_scopes_in_one_namespace_are_separated_by_vault_itself() {
    // dev/acme (bootstrapped by VaultWorld), dev/globex and prod/acme: all three
    // with the default WORKER_NAMESPACE shared, each with its own ServiceAccount.
    let world = VaultWorld::start("20m", "1h");
    for (env, tenant) in [("dev", "globex"), ("prod", "acme")] {
        let out = world.run_bootstrap(&[("GREENTIC_ENV", env), ("GREENTIC_TENANT", tenant)]);
        assert!(out.status.success(), "{env}/{tenant}: {}", stderr(&out));
    }
    let scopes = [("dev", "acme"), ("dev", "globex"), ("prod", "acme")];
    for (env, tenant) in scopes {
        put_in(
            &world,
            env,
            &format!("{tenant}/_/bot/key"),
            format!("value-of-{env}-{tenant}").as_bytes(),
        );
    }
    // Each scope's envelope, read by the operator: to try other scopes' keys on it.
    let mut wrapped = BTreeMap::new();
    for (env, tenant) in scopes {
        let (_, raw) = world
            .bao
            .api(
                "GET",
                &kv(env, &format!("{tenant}/_/bot/key")),
                Some(ROOT_TOKEN),
                None,
            )
            .await;
        let data = &raw["data"]["data"];
        assert_eq!(data["transit_key"], format!("greentic-{env}-{tenant}"));
        wrapped.insert(
            (env, tenant),
            data["wrapped_dek"].as_str().unwrap().to_string(),
        );
    }

    for (env, tenant) in scopes {
        let identity = format!("gtc-worker-{env}-{tenant}");
        let (status, token) = login_as(&world, &identity, &identity).await;
        assert_eq!(status, 200, "{identity} logs in to its own role");
        let token = token.unwrap();
        let token = Some(token.as_str());
        let own = kv(env, &format!("{tenant}/_/bot/key"));
        assert_eq!(world.bao.api("GET", &own, token, None).await.0, 200);
        // Transit decrypt with `key_of`'s key of `dek_of`'s wrapped data key.
        type Scope = (&'static str, &'static str);
        let decrypt = |key_of: Scope, dek_of: Scope| {
            let (bao, wrapped) = (&world.bao, &wrapped);
            async move {
                let key = format!("transit/decrypt/greentic-{}-{}", key_of.0, key_of.1);
                let body = json!({"ciphertext": wrapped[&dek_of]});
                bao.api("POST", &key, token, Some(body)).await.0
            }
        };
        let own_scope = (env, tenant);
        assert_eq!(
            decrypt(own_scope, own_scope).await,
            200,
            "{identity} unwraps its own data key"
        );
        for (other_env, other_tenant) in scopes {
            if (other_env, other_tenant) == (env, tenant) {
                continue;
            }
            let other = format!("gtc-worker-{other_env}-{other_tenant}");
            // Login to another scope's role: refused by Vault (the role does not bind us).
            assert_eq!(
                login_as(&world, &identity, &other).await.0,
                403,
                "{identity} must not log in to role {other}"
            );
            // Another scope's secret, and its transit key: 403.
            let path = kv(other_env, &format!("{other_tenant}/_/bot/key"));
            assert_eq!(
                world.bao.api("GET", &path, token, None).await.0,
                403,
                "{identity} read {path}"
            );
            let other_scope = (other_env, other_tenant);
            assert_eq!(
                decrypt(other_scope, other_scope).await,
                403,
                "{identity} decrypt with {other}'s key"
            );
            // And its own key cannot unwrap another scope's data key (keys per tenant).
            assert_eq!(
                decrypt(own_scope, other_scope).await,
                400,
                "{identity}'s key opened {other}'s data key"
            );
        }
    }

    // The ambiguous binding: another scope asking for dev/acme's identity is refused
    // before anything is written, and told how to fix it.
    let out = world.run_bootstrap(&[
        ("GREENTIC_TENANT", "initech"),
        ("WORKER_SERVICE_ACCOUNT", "gtc-worker-dev-acme"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("already bound by role gtc-worker-dev-acme")
            && message.contains("unset WORKER_SERVICE_ACCOUNT")
            && message.contains("WORKER_NAMESPACE"),
        "{message}"
    );
    let (status, _) = world
        .bao
        .api(
            "GET",
            "auth/kubernetes/role/gtc-worker-dev-initech",
            Some(ROOT_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 404, "the refused bootstrap wrote a role");
    assert_eq!(
        world
            .bao
            .api(
                "GET",
                "transit/keys/greentic-dev-initech",
                Some(ROOT_TOKEN),
                None
            )
            .await
            .0,
        404,
        "the refused bootstrap created a key"
    );

    // The generic `gtc-worker` keeps working for one tenant alone in a namespace...
    let out = world.run_bootstrap(&[
        ("GREENTIC_TENANT", "initech"),
        ("WORKER_SERVICE_ACCOUNT", "gtc-worker"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        login_as(&world, "gtc-worker", "gtc-worker-dev-initech")
            .await
            .0,
        200
    );
    // ...but a second tenant wanting the same (namespace, gtc-worker) is refused,
    let out = world.run_bootstrap(&[
        ("GREENTIC_TENANT", "hooli"),
        ("WORKER_SERVICE_ACCOUNT", "gtc-worker"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already bound by role gtc-worker-dev-initech"),
        "{}",
        stderr(&out)
    );
    // while in a namespace of its own it may use the name.
    let out = world.run_bootstrap(&[
        ("GREENTIC_TENANT", "hooli"),
        ("WORKER_SERVICE_ACCOUNT", "gtc-worker"),
        ("WORKER_NAMESPACE", "hooli-workers"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A hand-written role binding patterns counts too: it would admit the new scope's
    // worker, so the bootstrap refuses.
    world.bao.cli_ok(&[
        "write",
        "auth/kubernetes/role/hand-made",
        "bound_service_account_names=gtc-worker-*",
        "bound_service_account_namespaces=greentic-*",
        "token_policies=gtc-read-dev-acme",
    ]);
    let out = world.run_bootstrap(&[("GREENTIC_TENANT", "umbrella")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already bound by role hand-made"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn the_worker_token_holds_exactly_what_the_worker_uses() {
    let world = VaultWorld::start("20m", "1h");
    let (status, token) = login_as(&world, SERVICE_ACCOUNT, ROLE).await;
    assert_eq!(status, 200);
    let token = token.unwrap();
    let (_, lookup) = world
        .bao
        .api(
            "POST",
            "auth/token/lookup",
            Some(ROOT_TOKEN),
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(
        lookup["data"]["policies"],
        json!(["gtc-read-dev-acme"]),
        "{lookup}"
    );
    let caps = capabilities(
        &world,
        &token,
        &[
            "secret/data/greentic/dev/acme/support/bot/key",
            "secret/data/greentic/dev/acme/_/bot/key",
            "secret/metadata/greentic/dev/acme/support/bot/key",
            "secret/delete/greentic/dev/acme/support/bot/key",
            "secret/data/greentic/dev/globex/_/bot/key",
            "secret/data/greentic/prod/acme/_/bot/key",
            "transit/decrypt/greentic-dev-acme",
            "transit/decrypt/greentic",
            "transit/decrypt/greentic-dev-globex",
            "transit/encrypt/greentic-dev-acme",
            "transit/datakey/plaintext/greentic-dev-acme",
            "transit/keys/greentic-dev-acme",
            "auth/token/renew-self",
            "auth/token/lookup-self",
            "auth/token/revoke-self",
            "auth/token/create",
            "sys/capabilities-self",
            "cubbyhole/anything",
            "sys/wrapping/wrap",
            "identity/oidc/provider/any/authorize",
            "sys/policies/acl/gtc-read-dev-acme",
        ],
    )
    .await;
    let deny: &[&str] = &["deny"];
    assert_capabilities(
        &caps,
        &[
            ("secret/data/greentic/dev/acme/support/bot/key", &["read"]),
            ("secret/data/greentic/dev/acme/_/bot/key", &["read"]),
            ("transit/decrypt/greentic-dev-acme", &["update"]),
            ("auth/token/renew-self", &["update"]),
        ],
    );
    let granted = [
        "secret/data/greentic/dev/acme/support/bot/key",
        "secret/data/greentic/dev/acme/_/bot/key",
        "transit/decrypt/greentic-dev-acme",
        "auth/token/renew-self",
    ];
    for (path, caps) in &caps {
        if !granted.contains(&path.as_str()) {
            assert_eq!(caps, &json!(deny), "{path} must be denied");
        }
    }
    // What the worker does works; `default`-policy self-calls do not.
    let token = Some(token.as_str());
    let (status, _) = world
        .bao
        .api(
            "POST",
            "auth/token/renew-self",
            token,
            Some(json!({"increment": "60s"})),
        )
        .await;
    assert_eq!(status, 200);
    for (method, path) in [
        ("GET", "auth/token/lookup-self"),
        ("POST", "sys/capabilities-self"),
        ("GET", "cubbyhole/anything"),
    ] {
        let body = (method == "POST").then(|| json!({"paths": ["secret/data/x"]}));
        assert_eq!(
            world.bao.api(method, path, token, body).await.0,
            403,
            "{path}"
        );
    }
}

#[tokio::test]
async fn isolated_teams_render_bootstrap_route_and_are_enforced_by_vault() {
    let world = VaultWorld::start("20m", "1h");
    let bundles = world.dir.path().join("bundles");
    write_bundle(&bundles, "probe-a", "probe", &["/p"], PROBE_READS);
    write_bundle(&bundles, "probe-b", "probe", &["/q"], PROBE_READS);

    // The render: one worker, ServiceAccount and Service per team.
    let render = run_gtc(
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
            "registry.example/gtc:1",
            "--vault-addr",
            "http://vault.vault.svc:8200",
            "--bundle",
            "probe-a=team-a",
            "--bundle",
            "probe-b=team-b",
            "--bundles-dir",
            bundles.to_str().unwrap(),
            "--isolate-teams",
        ],
        &[],
        b"",
    );
    assert!(render.status.success(), "{}", stderr(&render));
    let yaml = stdout(&render);
    let file = world.dir.path().join("teams.yaml");
    std::fs::write(&file, &yaml).unwrap();
    for version in KUBERNETES_VERSIONS {
        let out = kubernetes_validate(&file, version);
        assert!(
            out.status.success(),
            "team render does not validate for {version}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    // The identities the render gives the workers, and the roles they log in to.
    let service_accounts: Vec<String> = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("serviceAccountName: "))
        .map(str::to_string)
        .collect();
    let roles: Vec<String> = yaml
        .split("name: VAULT_K8S_ROLE\n")
        .skip(1)
        .filter_map(|rest| rest.lines().next())
        .map(|l| l.trim().trim_start_matches("value: ").to_string())
        .collect();
    assert_eq!(
        service_accounts,
        ["gtc-worker-dev-acme-team-a", "gtc-worker-dev-acme-team-b"]
    );
    assert_eq!(roles, service_accounts);
    assert!(
        yaml.contains("--upstream=/p=http://gtc-worker-dev-acme-team-a.greentic-workers.svc:8080")
    );
    assert!(
        yaml.contains("--upstream=/q=http://gtc-worker-dev-acme-team-b.greentic-workers.svc:8080")
    );

    // The matching Vault side: a role + policy per team; the tenant-wide role goes.
    let out = world.run_bootstrap(&[("TEAMS", "team-a team-b")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("deleted the tenant-wide role gtc-worker-dev-acme"));
    assert_eq!(
        login_as(&world, SERVICE_ACCOUNT, ROLE).await.0,
        400,
        "the tenant-wide role is gone"
    );
    let policy = world
        .bao
        .cli_ok(&["policy", "read", "gtc-read-dev-acme-team-a"]);
    assert!(
        policy.contains("secret/data/greentic/dev/acme/team-a/*")
            && policy.contains("secret/data/greentic/dev/acme/_/*")
            && !policy.contains("team-b"),
        "{policy}"
    );
    world.put("acme/team-a/probe/key", b"team-a-value");
    world.put("acme/team-b/probe/key", b"team-b-value");
    world.put("acme/_/probe/shared", b"tenant-wide-value");

    // Team A's token, straight at Vault (no host in between): its own team and the
    // tenant-wide secrets, never team B's.
    let (status, token_a) = login_as(&world, &service_accounts[0], &roles[0]).await;
    assert_eq!(status, 200);
    let token_a = token_a.unwrap();
    let a = Some(token_a.as_str());
    for (rest, wanted) in [
        ("acme/team-a/probe/key", 200),
        ("acme/_/probe/shared", 200),
        ("acme/team-b/probe/key", 403),
    ] {
        let status = world.bao.api("GET", &kv("dev", rest), a, None).await.0;
        assert_eq!(status, wanted, "team A's token reading {rest}");
    }
    assert_eq!(
        login_as(&world, &service_accounts[0], &roles[1]).await.0,
        403
    );
    let caps = capabilities(
        &world,
        &token_a,
        &[
            "secret/data/greentic/dev/acme/team-a/probe/key",
            "secret/data/greentic/dev/acme/_/probe/shared",
            "secret/data/greentic/dev/acme/team-b/probe/key",
            "transit/decrypt/greentic-dev-acme",
            "auth/token/renew-self",
        ],
    )
    .await;
    assert_capabilities(
        &caps,
        &[
            ("secret/data/greentic/dev/acme/team-a/probe/key", &["read"]),
            ("secret/data/greentic/dev/acme/_/probe/shared", &["read"]),
            ("secret/data/greentic/dev/acme/team-b/probe/key", &["deny"]),
            ("transit/decrypt/greentic-dev-acme", &["update"]),
            ("auth/token/renew-self", &["update"]),
        ],
    );

    // The workers as rendered (one per team, each with its own token and role)
    // behind the router as rendered (each bundle's routes to its team's worker).
    let worker = |team: usize, bundle: &str, bundle_team: &str| {
        let token_file = world.dir.path().join(format!("sa-token-{team}"));
        let jwt = world.k8s.mint(
            WORKER_NAMESPACE,
            &service_accounts[team],
            "vault",
            Duration::from_secs(3600),
        );
        std::fs::write(&token_file, jwt).unwrap();
        let mut env = with_env(&world.worker_env(), "VAULT_K8S_ROLE", Some(&roles[team]));
        env = with_env(
            &env,
            "VAULT_K8S_TOKEN_PATH",
            Some(token_file.to_str().unwrap()),
        );
        Gtc::serve(
            &[
                format!("--bundle={}={bundle_team}", bundles.join(bundle).display()),
                compile_cache(&world),
            ],
            &env,
        )
    };
    let worker_a = worker(0, "probe-a", "team-a");
    let worker_b = worker(1, "probe-b", "team-b");
    let router = support::Router::start_with(&[
        format!("/p={}", worker_a.base),
        format!("/q={}", worker_b.base),
    ]);
    assert_eq!(
        probe_get_at(&router.base, "/p", b"probe/key").await["value"],
        "team-a-value"
    );
    assert_eq!(
        probe_get_at(&router.base, "/q", b"probe/key").await["value"],
        "team-b-value"
    );
    for prefix in ["/p", "/q"] {
        assert_eq!(
            probe_get_at(&router.base, prefix, b"probe/shared").await["value"],
            "tenant-wide-value"
        );
    }
    drop(router);
    drop(worker_b);
    // A host that wrongly let team A's worker serve a team-B bundle: its own scope
    // check passes, Vault still refuses (the guest gets `unavailable`, not the value).
    drop(worker_a);
    let misassigned = worker(0, "probe-b", "team-b");
    let answer = probe_get(&misassigned, "/q", b"probe/key").await;
    assert_eq!(answer["error"], "unavailable", "{answer}");
    let log = misassigned.stop();
    assert!(
        log.contains("403") && !log.contains("team-b-value"),
        "{log}"
    );

    // Team roles and env/tenant roles cannot be confused by name: tenant
    // `acme-team-a` would produce the names of team `team-a` of tenant `acme`.
    let out = world.run_bootstrap(&[("GREENTIC_TENANT", "acme-team-a")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("collide"), "{}", stderr(&out));
}

/// A v1 envelope, as `gtc` wrote them before v2, sealed under the shared key.
async fn write_v1_envelope(world: &VaultWorld, rest: &str, value: &[u8]) {
    let bao = &world.bao;
    let (status, _) = bao
        .api(
            "POST",
            "transit/keys/greentic",
            Some(ROOT_TOKEN),
            Some(json!({})),
        )
        .await;
    assert!(matches!(status, 200 | 204), "{status}");
    let (status, key) = bao
        .api(
            "POST",
            "transit/datakey/plaintext/greentic",
            Some(ROOT_TOKEN),
            Some(json!({"bits": 256})),
        )
        .await;
    assert_eq!(status, 200, "{key}");
    let dek = base64::engine::general_purpose::STANDARD
        .decode(key["data"]["plaintext"].as_str().unwrap())
        .unwrap();
    forbid(&dek);
    let uri = format!("secrets://dev/{rest}");
    let envelope = gtc::secrets::envelope::Envelope::seal_v1(
        value,
        &gtc::secrets::secret_value::SecretBytes::new(dek),
        key["data"]["ciphertext"].as_str().unwrap().to_string(),
        &uri,
    )
    .unwrap();
    let (status, _) = bao
        .api(
            "POST",
            &kv("dev", rest),
            Some(ROOT_TOKEN),
            Some(json!({"data": envelope.to_kv_data()})),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn v1_entries_migrate_and_a_rolled_back_version_is_refused() {
    let world = VaultWorld::start("20m", "1h");
    // Rollback: write v1, write v2, copy v1's envelope back as v3.
    let rolled = "acme/team-b/probe/key";
    world.put(rolled, b"first-value");
    world.put(rolled, b"second-value");
    let path = kv("dev", rolled);
    let (_, first) = world
        .bao
        .api("GET", &format!("{path}?version=1"), Some(ROOT_TOKEN), None)
        .await;
    let (status, _) = world
        .bao
        .api(
            "POST",
            &path,
            Some(ROOT_TOKEN),
            Some(json!({"data": first["data"]["data"].clone()})),
        )
        .await;
    assert_eq!(status, 200);
    // A legacy entry, as written before envelope v2 and per-tenant keys.
    let legacy = "acme/team-a/probe/legacy";
    write_v1_envelope(&world, legacy, b"legacy-value").await;
    world.put("acme/team-a/probe/key", b"current-value");

    let a = write_bundle(world.dir.path(), "probe-a", "probe", &["/p"], PROBE_READS);
    let b = write_bundle(world.dir.path(), "probe-b", "probe", &["/q"], PROBE_READS);
    let serve = |extra: &[(&'static str, String)]| {
        let mut env = world.worker_env();
        env.extend_from_slice(extra);
        Gtc::serve(
            &[
                format!("--bundle={}=team-a", a.display()),
                format!("--bundle={}=team-b", b.display()),
                compile_cache(&world),
            ],
            &env,
        )
    };
    let gtc = serve(&[]);
    let rolled_back = probe_get(&gtc, "/q", b"probe/key").await;
    assert_eq!(rolled_back["error"], "internal", "{rolled_back}");
    assert_eq!(
        probe_get(&gtc, "/p", b"probe/key").await["value"],
        "current-value"
    );
    // Without the legacy key, a v1 entry does not open (nor would a v1 copied back).
    assert_eq!(
        probe_get(&gtc, "/p", b"probe/legacy").await["error"],
        "internal"
    );
    let log = gtc.stop();
    assert!(
        log.contains("rolled back: KV version 3 holds the envelope written as version 1"),
        "{log}"
    );
    assert!(log.contains("a v1 envelope"), "{log}");
    assert!(!log.contains("first-value") && !log.contains("legacy-value"));

    // `ls --check` tells what is current, upgradable and unusable; nothing decrypted.
    let check = run_gtc(
        &["op", "secrets", "ls", "--check", "acme"],
        &world.admin_env(),
        b"",
    );
    assert!(check.status.success(), "{}", stderr(&check));
    let report = stdout(&check);
    let line = |uri: &str| {
        report
            .lines()
            .find(|l| l.starts_with(&format!("secrets://dev/{uri}\t")))
            .unwrap_or_else(|| panic!("{uri} missing: {report}"))
            .to_string()
    };
    assert!(line(legacy).contains("upgradable: envelope v1"), "{report}");
    assert!(
        line("acme/team-a/probe/key")
            .contains("current (envelope v2, transit key greentic-dev-acme)"),
        "{report}"
    );
    assert!(line(rolled).contains("UNUSABLE: rolled back"), "{report}");

    // Migration: grant the shared key while migrating; v1 still opens meanwhile.
    let out = world.run_bootstrap(&[("LEGACY_TRANSIT_KEY", "greentic")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let gtc = serve(&[("VAULT_TRANSIT_LEGACY_KEY", "greentic".into())]);
    assert_eq!(
        probe_get(&gtc, "/p", b"probe/legacy").await["value"],
        "legacy-value"
    );
    drop(gtc);
    let rewrap = run_gtc(
        &["op", "secrets", "rewrap", "acme/team-a"],
        &world.admin_env(),
        b"",
    );
    assert!(
        rewrap.status.success(),
        "{}{}",
        stdout(&rewrap),
        stderr(&rewrap)
    );
    let done = stdout(&rewrap);
    assert!(
        done.contains(&format!(
            "secrets://dev/{legacy}: rewrapped: envelope v1 (transit key greentic) -> v2 (transit key greentic-dev-acme), KV version 2"
        )),
        "{done}"
    );
    assert!(
        done.contains("secrets://dev/acme/team-a/probe/key: already current"),
        "{done}"
    );
    assert!(!done.contains("legacy-value") && !stderr(&rewrap).contains("legacy-value"));
    let (_, raw) = world
        .bao
        .api("GET", &kv("dev", legacy), Some(ROOT_TOKEN), None)
        .await;
    assert_eq!(raw["data"]["data"]["version"], 2);
    assert_eq!(raw["data"]["data"]["kv_version"], 2);
    assert_eq!(raw["data"]["data"]["transit_key"], "greentic-dev-acme");
    assert!(!raw.to_string().contains("legacy-value"));
    // A rolled-back entry is not laundered into a fresh version.
    let refused = run_gtc(
        &["op", "secrets", "rewrap", "acme/team-b"],
        &world.admin_env(),
        b"",
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stdout(&refused).contains("FAILED: rolled back"),
        "{}",
        stdout(&refused)
    );
    let (_, still) = world.bao.api("GET", &path, Some(ROOT_TOKEN), None).await;
    assert_eq!(still["data"]["metadata"]["version"], 3);

    // Migration done: drop the shared key's grant; the upgraded entry opens without it.
    let out = world.run_bootstrap(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let policy = world.bao.cli_ok(&["policy", "read", "gtc-read-dev-acme"]);
    assert!(!policy.contains("transit/decrypt/greentic\""), "{policy}");
    let gtc = serve(&[]);
    assert_eq!(
        probe_get(&gtc, "/p", b"probe/legacy").await["value"],
        "legacy-value"
    );
    let check = run_gtc(
        &["op", "secrets", "ls", "--check", "acme/team-a"],
        &world.admin_env(),
        b"",
    );
    assert!(check.status.success(), "{}", stderr(&check));
    let report = stdout(&check);
    // Every entry of team-a (the rewrapped legacy one and the current one) is
    // listed, and every one is current: an empty report fails here.
    assert!(report.lines().count() >= 2, "{report}");
    assert!(
        report.contains("secrets://dev/acme/team-a/probe/legacy\t"),
        "{report}"
    );
    assert!(
        report.lines().all(|l| l.contains("\tcurrent (envelope v2")),
        "{report}"
    );
}
