//! End to end through real HTTP: the `gtc` binary serving real guest components with
//! the dev-store backend. Covers the webhook story (200 / 401 / 503), team scoping,
//! the hostile-name table, the sandbox and backend selection.

mod support;

use serde_json::Value;
use std::path::Path;
use support::*;

const SECRET: &[u8] = b"webhook-signing-key-0123456789";

fn env_for(store: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("GREENTIC_ENV", "dev".to_string()),
        ("GREENTIC_TENANT", "acme".to_string()),
        ("GREENTIC_DEV_STORE", store.display().to_string()),
    ]
}

fn seed(store: &Path, path: &str, value: &[u8]) {
    forbid(value);
    let out = run_gtc(&["op", "secrets", "put", path], &env_for(store), value);
    assert!(
        out.status.success(),
        "put failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr)
            .contains(std::str::from_utf8(value).unwrap_or("\u{0}"))
    );
}

#[tokio::test]
async fn webhook_signed_unsigned_and_backend_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    seed(&store, "acme/support/webchat-bot/webhook-secret", SECRET);
    let bundle = webchat_bundle(dir.path());
    let gtc = Gtc::serve(
        &[format!("--bundle={}=support", bundle.display())],
        &env_for(&store),
    );

    let (status, body) = webhook(&gtc, SECRET, r#"{"text":"hello bot"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("you said: hello bot"), "{body}");

    let (status, _) = webhook(&gtc, b"wrong-key", r#"{"text":"x"}"#).await;
    assert_eq!(status, 401);
    let unsigned = client()
        .post(gtc.url("/webhook"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);

    let ready = client().get(gtc.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // Cache hits are audited as an aggregate, written at the latest at shutdown.
    let (_, log) = gtc.terminate();
    assert!(
        log.contains("gtc::audit")
            && log.contains("secrets://dev/acme/support/webchat-bot/webhook-secret"),
        "{log}"
    );
    assert!(
        !log.contains(std::str::from_utf8(SECRET).unwrap()),
        "the log leaked the secret"
    );

    // The backend is unavailable (the dev store file is gone): 503, not 401.
    let missing = dir.path().join("nowhere.json");
    let gtc = Gtc::serve(
        &[format!("--bundle={}=support", bundle.display())],
        &env_for(&missing),
    );
    let (status, body) = webhook(&gtc, SECRET, r#"{"text":"x"}"#).await;
    assert_eq!(status, 503, "{body}");
    let ready = client().get(gtc.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let reasons = ready.text().await.unwrap();
    assert!(reasons.contains("webhook-secret"), "{reasons}");
}

#[tokio::test]
async fn teams_see_their_own_and_tenant_wide_secrets_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    seed(&store, "acme/team-a/probe/mine", b"team-a-value");
    seed(&store, "acme/team-b/probe/only-b", b"team-b-value");
    seed(&store, "acme/_/probe/shared", b"shared-value");
    seed(&store, "acme/team-b/probe/shared", b"b-override");
    seed(&store, "other/_/probe/shared", b"other-tenant");
    let a = write_bundle(
        dir.path(),
        "probe-a",
        "probe",
        &["/a"],
        r#"secrets = ["probe/mine", "probe/shared", "probe/only-b"]"#,
    );
    let b = write_bundle(
        dir.path(),
        "probe-b",
        "probe",
        &["/b"],
        r#"secrets = ["probe/shared", "probe/only-b"]"#,
    );
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}=team-a", a.display()),
            format!("--bundle={}=team-b", b.display()),
        ],
        &env_for(&store),
    );
    let value = |v: &Value| v["value"].as_str().map(str::to_string);
    let error = |v: &Value| v["error"].as_str().map(str::to_string);

    assert_eq!(
        value(&probe_get(&gtc, "/a", b"probe/mine").await).as_deref(),
        Some("team-a-value")
    );
    // Team A falls back to the tenant-wide secret, team B has its own.
    assert_eq!(
        value(&probe_get(&gtc, "/a", b"probe/shared").await).as_deref(),
        Some("shared-value")
    );
    assert_eq!(
        value(&probe_get(&gtc, "/b", b"probe/shared").await).as_deref(),
        Some("b-override")
    );
    // Team B's secret is invisible to team A by name, and denied by full URI.
    assert_eq!(
        error(&probe_get(&gtc, "/a", b"probe/only-b").await).as_deref(),
        Some("not-found")
    );
    assert_eq!(
        error(&probe_get(&gtc, "/a", b"secrets://dev/acme/team-b/probe/only-b").await).as_deref(),
        Some("denied")
    );
    assert_eq!(
        value(&probe_get(&gtc, "/b", b"probe/only-b").await).as_deref(),
        Some("team-b-value")
    );
    // A full URI of the bundle's own scope works, exactly.
    assert_eq!(
        value(&probe_get(&gtc, "/a", b"secrets://dev/acme/_/probe/shared").await).as_deref(),
        Some("shared-value")
    );
    // Bare names use the bundle id as category: `probe-a/mine` is not declared.
    assert_eq!(
        error(&probe_get(&gtc, "/a", b"mine").await).as_deref(),
        Some("denied")
    );
    // Another tenant's secret can never be reached.
    assert_eq!(
        error(&probe_get(&gtc, "/a", b"secrets://dev/other/_/probe/shared").await).as_deref(),
        Some("denied")
    );
}

#[tokio::test]
async fn hostile_names_are_rejected_with_the_right_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    seed(&store, "acme/team-a/probe/x", b"the-x-value");
    let a = write_bundle(
        dir.path(),
        "probe",
        "probe",
        &["/p"],
        r#"secrets = ["probe/x"]"#,
    );
    let gtc = Gtc::serve(
        &[format!("--bundle={}=team-a", a.display())],
        &env_for(&store),
    );

    let long_segment = "a".repeat(65);
    let one_mib = "a".repeat(1 << 20);
    let malformed: Vec<&[u8]> = vec![
        b"",
        b".",
        b"..",
        b"../x",
        b"probe/..",
        b"probe/../x",
        b"%2e%2e",
        b"%2e%2e/x",
        b"probe%2fx",
        b"/x",
        b"x/",
        b"probe//x",
        b"a/b/c",
        b"X",
        b"Probe/x",
        b"x y",
        b" x",
        b"x ",
        b"x\t",
        b"x\n",
        b"x\0",
        b"\0",
        b"-x",
        b"_x",
        b".hidden",
        b"x:y",
        b"x\\y",
        "é".as_bytes(),
        b"\xff\xfe",
        long_segment.as_bytes(),
        one_mib.as_bytes(),
        b"secrets://",
        b"secrets://dev/acme/team-a/probe",
        b"secrets://dev/acme/team-a/probe/x/y",
        b"secrets://dev/acme/team-a//x",
        b"secrets://dev/acme/TEAM-A/probe/x",
        b"SECRETS://dev/acme/team-a/probe/x",
        b"secrets:/dev/acme/team-a/probe/x",
        b"secrets://dev/acme/team-a/probe/../x",
        b"secrets://dev/acme/team-a/probe/%78",
        b"probe/x?y",
        b"probe/x#y",
        b"probe/*",
    ];
    let denied: Vec<&[u8]> = vec![
        b"secrets://dev/acme/team-b/probe/x",
        b"secrets://prod/acme/team-a/probe/x",
        b"secrets://dev/globex/team-a/probe/x",
        b"secrets://dev/globex/_/probe/x",
    ];
    assert!(malformed.len() + denied.len() >= 30);
    for name in &malformed {
        let answer = probe_get(&gtc, "/p", name).await;
        assert_eq!(
            answer["error"],
            "invalid-name",
            "{:?} -> {answer}",
            String::from_utf8_lossy(&name[..name.len().min(80)])
        );
        // The explanation never echoes the name back: short, and without the
        // name (or its first 16 bytes, for the long ones) in it.
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(!detail.is_empty() && detail.len() < 100, "{detail}");
        let shown = String::from_utf8_lossy(&name[..name.len().min(16)]);
        if shown.len() >= 6 {
            assert!(
                !detail.contains(shown.as_ref()),
                "{shown:?} echoed back: {detail}"
            );
        }
    }
    for name in &denied {
        let answer = probe_get(&gtc, "/p", name).await;
        assert_eq!(
            answer["error"],
            "denied",
            "{:?} -> {answer}",
            String::from_utf8_lossy(name)
        );
    }
    // The well-formed control still works.
    assert_eq!(
        probe_get(&gtc, "/p", b"probe/x").await["value"],
        "the-x-value"
    );
    let log = gtc.stop();
    assert!(
        !log.contains(&one_mib[..1000]),
        "a hostile name was logged verbatim"
    );
}

#[tokio::test]
async fn sandbox_gives_nothing_and_limits_hold() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    seed(&store, "acme/_/probe/x", b"the-x-value");
    let allowed = tiny_http_server(16);
    let denied = tiny_http_server(16);
    let probe = write_bundle(
        dir.path(),
        "probe",
        "probe",
        &["/p"],
        &format!(
            "secrets = [\"probe/x\"]\n[egress]\nallow = [\"{allowed}\"]\n\
             [limits]\ntimeout_ms = 500\nmemory_mib = 16"
        ),
    );
    let hello = write_bundle(dir.path(), "hello", "hello", &["/hello"], "");
    let mut env = env_for(&store);
    // Things a careless host would pass through to the guest.
    env.push(("VAULT_TOKEN_FOR_TEST_ONLY", "must-not-leak".into()));
    env.push(("HOME", "/root".into()));
    // The egress test servers listen on loopback, which the operator must allow.
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}", probe.display()),
            format!("--bundle={}", hello.display()),
            "--egress-allow-loopback".to_string(),
        ],
        &env,
    );

    let seen = get_json(gtc.url("/p/env")).await;
    assert_eq!(seen["vars"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["args"], 0, "{seen}");
    let files = get_json(gtc.url("/p/fs")).await;
    assert_eq!(files["readable"], serde_json::json!([]), "{files}");
    let socket = get_json(gtc.url(&format!("/p/socket?addr={allowed}"))).await;
    assert_eq!(
        socket,
        serde_json::json!({"connected": false, "listened": false, "udp": false})
    );

    let out = get_json(gtc.url(&format!("/p/outgoing?authority={allowed}"))).await;
    assert_eq!(out["status"], 200, "{out}");
    let out = get_json(gtc.url(&format!("/p/outgoing?authority={denied}"))).await;
    assert_eq!(out["sent"], false, "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap_or_default()
            .contains("HttpRequestDenied"),
        "{out}"
    );

    let printed = get_json(gtc.url("/p/print")).await;
    assert_eq!(printed["printed"], true);

    // A guest that spins forever is stopped by its time limit; the host keeps serving.
    let started = std::time::Instant::now();
    let spun = client().get(gtc.url("/p/loop")).send().await.unwrap();
    assert_eq!(spun.status(), 504);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // A guest that allocates without bound hits its memory limit.
    let grown = client().get(gtc.url("/p/alloc")).send().await.unwrap();
    assert_eq!(grown.status(), 500);
    let hello = client().get(gtc.url("/hello")).send().await.unwrap();
    assert_eq!(hello.status(), 200);
    assert_eq!(
        probe_get(&gtc, "/p", b"probe/x").await["value"],
        "the-x-value"
    );

    let log = gtc.stop();
    assert!(
        log.contains("probe says hello on stdout") && log.contains("stream=\"stdout\""),
        "{log}"
    );
    assert!(log.contains("probe says hello on stderr"), "{log}");
    assert!(log.contains("exceeded its time limit"), "{log}");
    assert!(log.contains("exceeded its memory limit"), "{log}");
    assert!(log.contains("outgoing HTTP denied"), "{log}");
}

#[test]
fn unknown_backend_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(dir.path(), "hello", "hello", &["/hello"], "");
    let arg = format!("--bundle={}", bundle.display());
    let out = run_gtc(
        &["serve", "--listen", "127.0.0.1:0", &arg],
        &[(
            "GREENTIC_SECRETS_BACKEND",
            "greentic.secrets.k8s".to_string(),
        )],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("GREENTIC_SECRETS_BACKEND") && stderr.contains("dev-store, vault"),
        "{stderr}"
    );

    // Inside a pod, unset is an error too.
    let out = run_gtc(
        &["serve", "--listen", "127.0.0.1:0", &arg],
        &[("KUBERNETES_SERVICE_HOST", "10.96.0.1".to_string())],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("GREENTIC_SECRETS_BACKEND is not set") && stderr.contains("pod"),
        "{stderr}"
    );
}

#[test]
fn op_secrets_put_and_ls_never_show_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    let env = env_for(&store);
    // Registered first: run_gtc scans put's own stdout and stderr for them.
    forbid(b"value-from-stdin");
    forbid(b"value-from-file");
    let out = run_gtc(
        &["op", "secrets", "put", "acme/_/bot/api-key"],
        &env,
        b"value-from-stdin",
    );
    assert!(out.status.success());
    let said = text(&out);
    assert!(
        said.contains("stored secrets://dev/acme/_/bot/api-key in dev store"),
        "{said}"
    );
    assert!(!said.contains("value-from"), "{said}");
    let value_file = dir.path().join("value");
    std::fs::write(&value_file, b"value-from-file").unwrap();
    let out = run_gtc(
        &[
            "op",
            "secrets",
            "put",
            "acme/ops/bot/token",
            "--from-file",
            value_file.to_str().unwrap(),
        ],
        &env,
        b"",
    );
    assert!(out.status.success());
    let said = text(&out);
    assert!(
        said.contains("stored secrets://dev/acme/ops/bot/token"),
        "{said}"
    );
    assert!(!said.contains("value-from"), "{said}");
    let out = run_gtc(&["op", "secrets", "ls", "acme"], &env, b"");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        [
            "secrets://dev/acme/_/bot/api-key",
            "secrets://dev/acme/ops/bot/token"
        ]
    );
    assert!(!listing.contains("value-from"));
    let out = run_gtc(&["op", "secrets", "ls", "acme/ops"], &env, b"");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    // Bad paths and empty values are refused.
    for (path, input) in [
        ("acme/../bot/x", &b"v"[..]),
        ("acme/_/bot", b"v"),
        ("acme/_/bot/x", b""),
    ] {
        let out = run_gtc(&["op", "secrets", "put", path], &env, input);
        assert_eq!(out.status.code(), Some(2), "{path}");
    }
}

#[tokio::test]
async fn compiled_component_cache_serves_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    seed(&store, "acme/_/webchat-bot/webhook-secret", SECRET);
    seed(&store, "acme/_/probe/x", b"cache-check-value");
    let webchat = webchat_bundle(dir.path());
    let probe = write_bundle(dir.path(), "probe", "probe", &["/p"], r#"secrets = ["x"]"#);
    let cache = dir.path().join("compiled");
    let args = [
        format!("--bundle={}", webchat.display()),
        format!("--bundle={}", probe.display()),
        format!("--compile-cache={}", cache.display()),
    ];
    let mut answers = Vec::new();
    let mut logs = Vec::new();
    for _run in 0..2 {
        // First run compiles and fills the cache; the second loads from it.
        let gtc = Gtc::serve(&args, &env_for(&store));
        let signed = webhook(&gtc, SECRET, r#"{"text":"same"}"#).await;
        let unsigned = webhook(&gtc, b"bad", r#"{"text":"same"}"#).await;
        let value = probe_get(&gtc, "/p", b"x").await;
        let env = get_json(gtc.url("/p/env")).await;
        answers.push((signed, unsigned, value, env));
        logs.push(gtc.stop());
    }
    // The first start compiled both components, the second compiled nothing and
    // loaded both from the cache: the answers compared are a cached start's.
    let count = |log: &str, what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(
        count(&logs[0], "bundle component compiled"),
        2,
        "{}",
        logs[0]
    );
    assert_eq!(
        count(&logs[0], "loaded from the compile cache"),
        0,
        "{}",
        logs[0]
    );
    assert_eq!(
        count(&logs[1], "bundle component compiled"),
        0,
        "{}",
        logs[1]
    );
    assert_eq!(
        count(&logs[1], "loaded from the compile cache"),
        2,
        "{}",
        logs[1]
    );
    assert!(
        std::fs::read_dir(&cache).unwrap().next().is_some(),
        "nothing was cached"
    );
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0.0, 200);
    assert_eq!(answers[0].2["value"], "cache-check-value");
}

#[tokio::test]
async fn a_bundle_reads_only_the_secrets_its_manifest_declares() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    seed(&store, "acme/support/webchat-bot/webhook-secret", SECRET);
    seed(&store, "acme/support/probe/own", b"probe-own-value");
    seed(
        &store,
        "acme/support/other-bot/api-key",
        b"other-bot-api-key",
    );
    let webchat = webchat_bundle(dir.path());
    // A hostile bundle of the same team, declaring only its own secret.
    let probe = write_bundle(
        dir.path(),
        "probe",
        "probe",
        &["/p"],
        r#"secrets = ["own"]"#,
    );
    let bundles = [
        format!("--bundle={}=support", webchat.display()),
        format!("--bundle={}=support", probe.display()),
    ];
    let gtc = Gtc::serve(&bundles, &env_for(&store));
    assert_eq!(
        probe_get(&gtc, "/p", b"own").await["value"],
        "probe-own-value"
    );
    assert_denied(
        &gtc,
        "/p",
        &[
            b"webchat-bot/webhook-secret",
            b"secrets://dev/acme/support/webchat-bot/webhook-secret",
            b"secrets://dev/acme/_/webchat-bot/webhook-secret",
        ],
    )
    .await;
    // The owner still reads it.
    assert_eq!(webhook(&gtc, SECRET, r#"{"text":"hi"}"#).await.0, 200);
    let log = gtc.stop();
    let refused = log
        .lines()
        .find(|line| {
            line.contains("gtc::audit")
                && line.contains("bundle=probe")
                && line.contains("webchat-bot/webhook-secret")
        })
        .unwrap_or_else(|| panic!("no audit line for the refused get: {log}"));

    assert!(
        refused.contains("outcome=\"denied\"") && refused.contains("sealed"),
        "webchat-bot seals its key: {refused}"
    );
    let undeclared = log
        .lines()
        .find(|line| line.contains("gtc::audit") && line.contains("other-bot/api-key"));
    assert!(undeclared.is_none(), "not asked yet");

    // The operator's migration switch restores the old behaviour for that bundle
    // only, and never for a value another bundle sealed.
    let mut migrating = bundles.to_vec();
    migrating.push("--allow-undeclared-secrets=probe".into());
    let gtc = Gtc::serve(&migrating, &env_for(&store));
    let answer = probe_get(&gtc, "/p", b"other-bot/api-key").await;
    assert_eq!(answer["value"], "other-bot-api-key");
    let answer = probe_get(&gtc, "/p", b"webchat-bot/webhook-secret").await;
    assert_eq!(answer["error"], "denied", "{answer}");
    let log = gtc.stop();
    assert!(log.contains("--allow-undeclared-secrets"), "{log}");
    let gtc = Gtc::serve(&bundles, &env_for(&store));
    let answer = probe_get(&gtc, "/p", b"other-bot/api-key").await;
    assert_eq!(answer["error"], "denied", "{answer}");
    let log = gtc.stop();
    assert!(
        log.lines().any(|line| line.contains("gtc::audit")
            && line.contains("other-bot/api-key")
            && line.contains("undeclared")),
        "{log}"
    );

    // A switch naming no served bundle is a configuration error.
    let out = run_gtc(
        &[
            "serve",
            "--listen=127.0.0.1:0",
            &bundles[1],
            "--allow-undeclared-secrets=nobody",
        ],
        &env_for(&store),
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
}

#[tokio::test]
async fn bundles_sharing_a_component_share_one_compiled_copy() {
    // Three bundles of one component and one of another: two compiles, two
    // shared copies, and every bundle answers from its own route and scope.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    seed(&store, "acme/_/probe/x", b"shared-copy-value");
    let mut args = Vec::new();
    for (id, route) in [("hello-a", "/a"), ("hello-b", "/b"), ("hello-c", "/c")] {
        let bundle = write_bundle(dir.path(), id, "hello", &[route], "");
        args.push(format!("--bundle={}", bundle.display()));
    }
    let probe = write_bundle(dir.path(), "probe", "probe", &["/p"], r#"secrets = ["x"]"#);
    args.push(format!("--bundle={}", probe.display()));
    let gtc = Gtc::serve(&args, &env_for(&store));
    for route in ["/a", "/b", "/c"] {
        let response = client().get(gtc.url(route)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{route}");
    }
    assert_eq!(
        probe_get(&gtc, "/p", b"x").await["value"],
        "shared-copy-value"
    );
    let log = gtc.stop();
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(count("compiling bundle component"), 2, "{log}");
    assert_eq!(count("one compiled copy, shared"), 2, "{log}");
    assert!(
        log.lines().any(|l| l.contains("bundles loaded")
            && l.contains("bundles=4")
            && l.contains("distinct_components=2")),
        "{log}"
    );
}
