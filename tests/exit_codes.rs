//! Exit codes keep the README's promise for every command: 0 ok, 1 runtime
//! failure, 2 bad configuration. One test per class of input, each through the
//! real `gtc` binary, with the message the operator gets.

mod support;

use std::path::{Path, PathBuf};
use support::*;

/// `gtc serve --bundle DIR...` that must fail before listening; returns (code, output).
fn serve_fails(bundles: &[&Path], env: &[(&str, String)]) -> (i32, String) {
    let mut args = vec!["serve".to_string(), "--listen=127.0.0.1:0".to_string()];
    args.extend(bundles.iter().map(|b| format!("--bundle={}", b.display())));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_gtc(&args, env, b"");
    (out.status.code().unwrap_or(-1), text(&out))
}

fn dev_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![(
        "GREENTIC_DEV_STORE",
        dir.join("store.json").display().to_string(),
    )]
}

#[test]
fn component_files_the_host_cannot_run_exit_2_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = files.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // A component importing an interface the host does not provide: the real
    // legacy-v1 guest (built against greentic:secrets@1.0.0) with its secrets import
    // renamed (same length, still valid).
    let kvstore = renamed_guest(
        "legacy-v1",
        "greentic:secrets/secrets",
        "greentic:secrets/kvstore",
        &files.join("kvstore.wasm"),
    );
    let cases: Vec<(&str, PathBuf, &[&str])> = vec![
        (
            "missing",
            files.join("nope.wasm"),
            &["does not exist", "bundle.toml"],
        ),
        ("directory", files.clone(), &["is a directory"]),
        (
            "empty",
            write("empty.wasm", b""),
            &["is empty", "wasm32-wasip2"],
        ),
        (
            "random",
            write(
                "random.wasm",
                &[0x13, 0x37, 0xc0, 0xde, 0xff, 0x00, 0x42, 0x99],
            ),
            &["not WebAssembly", "wasm32-wasip2"],
        ),
        (
            "core-module",
            write("core.wasm", b"\0asm\x01\0\0\0"),
            &[
                "core WebAssembly module",
                "wasm-tools component new",
                "wasm32-wasip2",
            ],
        ),
        (
            "truncated",
            write("truncated.wasm", b"\0asm\x0d\0\x01\0\x07garbage"),
            &["cannot load component"],
        ),
        (
            "incompatible",
            kvstore,
            &[
                "greentic:secrets/kvstore@1.0.0",
                "does not provide",
                "the host provides: greentic:secrets/secrets@1.0.x, greentic:secrets/secrets@1.1.x, \
                 greentic:secrets/sealed@1.1.x, greentic:secrets-store/secrets-store@1.0.x, \
                 greentic:secrets-store/secrets-store@1.1.x, wasi:http/outgoing-handler@0.2.x, wasi:http/types@0.2.x",
                "wasi:io/streams@0.2.x",
            ],
        ),
    ];
    for (id, component, wanted) in cases {
        let bundle = bundle_with_component(dir.path(), id, &component, "");
        let (code, output) = serve_fails(&[&bundle], &dev_env(dir.path()));
        assert_eq!(code, 2, "{id}: {output}");
        assert!(output.contains(&format!("bundle {id}:")), "{id}: {output}");
        assert_eq!(output.matches(wanted[0]).count(), 1, "said once: {output}");
        for w in wanted {
            assert!(output.contains(w), "{id}: wanted {w:?} in {output}");
        }
    }
}

#[test]
fn route_errors_and_bad_settings_exit_2_and_runtime_failures_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let env = dev_env(dir.path());
    let a = write_bundle(dir.path(), "bot-a", "hello", &["/shared"], "");
    let b = write_bundle(dir.path(), "bot-b", "hello", &["/shared/"], "");
    let reserved = write_bundle(dir.path(), "bot-r", "hello", &["/metrics"], "");
    let hello = write_bundle(dir.path(), "hello", "hello", &["/hello"], "");
    for (what, bundles, wanted) in [
        (
            "route conflict",
            vec![&a, &b],
            "claimed by both bot-a and bot-b",
        ),
        (
            "same bundle twice",
            vec![&hello, &hello],
            "bundle id \"hello\" is given more than once",
        ),
        ("reserved route", vec![&reserved], "reserved by the host"),
    ] {
        let bundles: Vec<&Path> = bundles.iter().map(|p| p.as_path()).collect();
        let (code, output) = serve_fails(&bundles, &env);
        assert_eq!(code, 2, "{what}: {output}");
        assert!(output.contains(wanted), "{what}: {output}");
    }
    // Two bad manifests: both named at once, each with every problem.
    let bad_one = write_bundle(dir.path(), "bad-one", "hello", &["nope"], "colour = 1");
    let bad_two = write_bundle(
        dir.path(),
        "bad-two",
        "hello",
        &["/two"],
        "[limits]\ntimeout_ms = 0",
    );
    let (code, output) = serve_fails(&[&bad_one, &hello, &bad_two], &env);
    assert_eq!(code, 2, "{output}");
    for wanted in [
        "bad-one/bundle.toml is invalid: unknown field `colour`",
        "routes: \"nope\" must be a path prefix starting with '/'",
        "bad-two/bundle.toml is invalid: limits.timeout_ms must be 1..=600000",
    ] {
        assert!(output.contains(wanted), "wanted {wanted:?} in\n{output}");
    }
    // A duration that overflows: refused, naming the variable.
    let mut overflow = env.clone();
    overflow.push(("GREENTIC_SECRETS_CACHE_TTL", "307445734561825861m".into()));
    let (code, output) = serve_fails(&[&hello], &overflow);
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("GREENTIC_SECRETS_CACHE_TTL") && output.contains("too long"),
        "{output}"
    );
    // A runtime failure: the port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = run_gtc(
        &[
            "serve",
            &format!("--listen=127.0.0.1:{port}"),
            &format!("--bundle={}", hello.display()),
        ],
        &env,
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cannot listen"), "{}", text(&out));
    // gtc route with an upstream that is not http(s): 2.
    let out = run_gtc(&["route", "--upstream", "ftp://worker:8080"], &[], b"");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A worker whose VAULT_ADDR is not a URL: 2, naming the variable.
    let mut bad_vault = env.clone();
    bad_vault.extend([
        ("GREENTIC_SECRETS_BACKEND", "vault".to_string()),
        ("VAULT_ADDR", "vault.vault.svc:8200".to_string()),
        ("VAULT_K8S_ROLE", "gtc-worker-dev-local".to_string()),
    ]);
    let (code, output) = serve_fails(&[&hello], &bad_vault);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("VAULT_ADDR"), "{output}");
    // doctor: a failed check (the dev store file is missing) is 1.
    let out = run_gtc(&["doctor"], &env, b"");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("[FAIL] file"), "{}", text(&out));
}

#[test]
fn op_secrets_exits_1_when_vault_is_unreachable_and_2_when_misconfigured() {
    let nowhere = free_port();
    let env = vec![
        ("GREENTIC_SECRETS_BACKEND", "vault".to_string()),
        ("VAULT_ADDR", format!("http://127.0.0.1:{nowhere}")),
        ("VAULT_TOKEN", "operator-token-for-exit-codes".to_string()),
        ("GREENTIC_VAULT_TIMEOUT", "2s".to_string()),
    ];
    for args in [
        vec!["op", "secrets", "put", "--env", "dev", "acme/_/bot/key"],
        vec!["op", "secrets", "ls", "--env", "dev", "acme"],
    ] {
        let out = run_gtc(&args, &env, b"value-that-goes-nowhere");
        let output = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {output}");
        assert!(
            output.contains("unreachable") && output.contains("check VAULT_ADDR"),
            "{args:?}: {output}"
        );
        // An operator at a terminal is not a worker pod behind a NetworkPolicy.
        assert!(
            !output.contains("worker pods") && !output.contains("NetworkPolicy"),
            "{args:?}: {output}"
        );
    }
    // Bad input or configuration: 2.
    let ls = |tenant: &str, env: &[(&str, String)]| {
        run_gtc(&["op", "secrets", "ls", "--env", "dev", tenant], env, b"")
    };
    let out = ls("acme", &with_env(&env, "VAULT_TOKEN", None));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("VAULT_TOKEN"), "{}", text(&out));
    let out = ls("Acme", &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = ls(
        "acme",
        &with_env(&env, "VAULT_ADDR", Some("ftp://vault.example.com")),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("http:// or https://"), "{}", text(&out));
}
