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

#[test]
fn operator_configuration_errors_exit_2_naming_the_variable_or_flag() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-pem.crt");
    std::fs::write(&not_pem, "this is no certificate\n").unwrap();
    let not_json = dir.path().join("store.json");
    std::fs::write(&not_json, "{not json").unwrap();
    let bundle = webchat_bundle(dir.path());
    let vault_env = |extra: (&'static str, String)| {
        vec![
            ("GREENTIC_SECRETS_BACKEND", "vault".to_string()),
            ("VAULT_ADDR", "http://127.0.0.1:1".to_string()),
            ("VAULT_K8S_ROLE", "gtc-worker-dev-acme".to_string()),
            ("GREENTIC_ENV", "dev".to_string()),
            ("GREENTIC_TENANT", "acme".to_string()),
            extra,
        ]
    };
    let missing = dir.path().join("nope.crt").display().to_string();
    let dir_path = dir.path().display().to_string();
    let env_cases: Vec<((&'static str, String), &str)> = vec![
        (("VAULT_CACERT", missing.clone()), "no such file"),
        (("VAULT_CACERT", dir_path), "is a directory"),
        (
            ("VAULT_CACERT", not_pem.display().to_string()),
            "not a PEM certificate",
        ),
        (
            ("GREENTIC_VAULT_TIMEOUT", "0s".into()),
            "must be more than 0",
        ),
    ];
    for ((var, value), says) in env_cases {
        let env = vault_env((var, value.clone()));
        let (code, output) = serve_fails(&[&bundle], &env);
        assert_eq!(code, 2, "serve {var}={value}: {output}");
        assert!(output.contains(var) && output.contains(says), "{output}");
        // The OS error is said once, not twice.
        assert!(output.matches("os error").count() <= 1, "{output}");
        let doctor = run_gtc(&["doctor"], &env, b"");
        assert_eq!(
            doctor.status.code(),
            Some(2),
            "doctor {var}: {}",
            text(&doctor)
        );
        assert!(text(&doctor).contains(var), "{}", text(&doctor));
    }

    let render = |args: &[&str]| {
        let mut all = vec![
            "deploy",
            "render",
            "--env",
            "prod",
            "--tenant",
            "acme",
            "--image",
            "registry.example/gtc:0.1.0",
            "--bundle",
            "webchat-bot=support",
        ];
        all.extend_from_slice(args);
        let out = run_gtc(&all, &[], b"");
        (out.status.code().unwrap_or(-1), text(&out))
    };
    let vault = ["--vault-addr", "http://vault.vault.svc:8200"];
    let store = not_json.to_str().unwrap();
    let flag_cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            [
                &vault[..],
                &[
                    "--metrics-from-namespace",
                    "monitoring",
                    "--prometheus-operator",
                    "--scrape-interval",
                    "abc",
                ],
            ]
            .concat(),
            &["--scrape-interval", "not a Prometheus duration"],
        ),
        (
            vec!["--backend", "dev-store", "--dev-store", store],
            &["--dev-store", "not a dev store (JSON)"],
        ),
        (
            [&vault[..], &["--dev-store", &missing]].concat(),
            &["--dev-store"],
        ),
        (
            [&vault[..], &["--no-pdb", "--pdb-max-unavailable", "2"]].concat(),
            &["--no-pdb", "--pdb-max-unavailable"],
        ),
        (
            [&vault[..], &["--autoscale-cpu-percent", "50"]].concat(),
            &["--autoscale-max"],
        ),
    ];
    for (args, says) in flag_cases {
        let (code, output) = render(&args);
        assert_eq!(code, 2, "render {args:?}: {output}");
        for word in says {
            assert!(output.contains(word), "render {args:?}: {output}");
        }
    }
    // A dev store that is JSON, given with the vault backend: refused by name.
    let store = dir.path().join("good.json");
    dev_put(
        &store,
        "acme/_/webchat-bot/webhook-secret",
        b"render-dev-value-1",
    );
    let (code, output) = render(&[&vault[..], &["--dev-store", store.to_str().unwrap()]].concat());
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("--dev-store is for --backend dev-store"),
        "{output}"
    );
    // And the router's timeouts.
    let out = run_gtc(
        &[
            "route",
            "--upstream",
            "http://127.0.0.1:1",
            "--header-read-timeout",
            "0s",
        ],
        &[],
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--header-read-timeout"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_closed_pipe_or_a_full_disk_on_stdout_is_a_one_line_error_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(
        &store,
        "acme/_/webchat-bot/webhook-secret",
        b"closed-pipe-value-1",
    );
    let bundle = webchat_bundle(dir.path());
    let bundle_arg = format!("--bundle={}=support", bundle.display());
    let env = vec![
        ("GREENTIC_DEV_STORE", store.display().to_string()),
        ("GREENTIC_ENV", "dev".to_string()),
        ("GREENTIC_TENANT", "acme".to_string()),
    ];
    let bundle_dir = bundle.display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec![
            "deploy",
            "render",
            "--env",
            "prod",
            "--tenant",
            "acme",
            "--image",
            "registry.example/gtc:0.1.0",
            "--bundle",
            "webchat-bot=support",
            "--vault-addr",
            "http://vault.vault.svc:8200",
        ],
        vec!["bundle", "inspect", &bundle_dir],
        vec!["bundle", "check", &bundle_dir],
        vec!["op", "secrets", "ls", "acme", "--env", "dev"],
        vec!["doctor", &bundle_arg],
    ];
    for args in &commands {
        // Each command works with a reader at the other end...
        let ok = run_gtc(args, &env, b"");
        assert!(ok.status.success(), "{args:?}: {}", text(&ok));
        assert!(!ok.stdout.is_empty(), "{args:?}");
        // ...and with the reader gone (kubectl exited early) or the disk full, it
        // says so on one line and exits 1.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        for (what, stdout) in [
            ("closed pipe", std::process::Stdio::from(writer)),
            ("full disk", full.into()),
        ] {
            let out = gtc_command(args, &env)
                .stdout(stdout)
                .stderr(std::process::Stdio::piped())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?} {what}: {stderr}");
            assert!(!stderr.contains("panicked"), "{args:?} {what}: {stderr}");
            let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
            assert_eq!(errors.len(), 1, "{args:?} {what}: {stderr}");
            assert!(
                errors[0].contains("cannot write the output"),
                "{args:?} {what}: {stderr}"
            );
        }
    }
}

#[test]
fn messages_name_the_variable_the_user_set_and_say_an_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = webchat_bundle(dir.path());
    let bundle_arg = format!("--bundle={}", bundle.display());
    // GTC_LISTEN set to something that is no address: exit 2, naming GTC_LISTEN
    // (not --listen, which the user did not give).
    let mut env = dev_env(dir.path());
    env.push(("GTC_LISTEN", "notanaddr".into()));
    let out = run_gtc(&["serve", &bundle_arg], &env, b"");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let error = text(&out);
    let error = error
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(error.contains("GTC_LISTEN=\"notanaddr\""), "{error}");
    assert!(!error.contains("--listen"), "{error}");
    // A bad --listen names the flag.
    let out = run_gtc(
        &["serve", "--listen", "nope", &bundle_arg],
        &dev_env(dir.path()),
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--listen"), "{}", text(&out));
    // A missing bundle: the OS error once.
    let missing = dir.path().join("nope");
    let out = run_gtc(
        &[
            "serve",
            "--listen=127.0.0.1:0",
            &format!("--bundle={}", missing.display()),
        ],
        &dev_env(dir.path()),
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let error = text(&out);
    let error = error
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(error.contains("No such file or directory"), "{error}");
    assert_eq!(error.matches("os error 2").count(), 1, "{error}");
}
