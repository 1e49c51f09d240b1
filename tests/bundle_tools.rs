//! `gtc bundle check` and `gtc bundle compile`, through the real binary: one case
//! per class of problem an author can have, each asserting that the message names
//! the offending field or import, and the compile cache from `compile` to `serve`.

mod support;

use std::path::{Path, PathBuf};
use support::*;

fn check(dir: &Path) -> (i32, String) {
    let out = run_gtc(
        &[
            "bundle",
            "check",
            &dir.display().to_string(),
            "--no-compile-cache",
        ],
        &[],
        b"",
    );
    (out.status.code().unwrap_or(-1), text(&out))
}

#[test]
fn bundle_check_names_the_field_or_import_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let files = root.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let core_module = files.join("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    let unknown_package = renamed_guest(
        "greentic-component",
        "greentic:secrets-store",
        "acme:vaultlike-storage",
        &files.join("unknown-package.wasm"),
    );
    let newer_version = renamed_guest(
        "greentic-component",
        "secrets-store@1.0.0",
        "secrets-store@2.0.0",
        &files.join("newer.wasm"),
    );
    // Greentic's secrets-store@1.1.0 (get and put) imported under the 1.0.0 name:
    // a provided name and version whose types are not the host's (1.0.0 has no
    // `put`), as a component built from a drifted copy of the WIT would be.
    let wrong_types = renamed_guest(
        "greentic-component-v1-1",
        "secrets-store@1.1.0",
        "secrets-store@1.0.0",
        &files.join("wrong-types.wasm"),
    );
    let no_handler = renamed_guest(
        "hello",
        "wasi:http/incoming-handler",
        "wasi:http/incoming-handlex",
        &files.join("no-handler.wasm"),
    );
    let hello = guest("hello");

    // (id, component, extra manifest lines, exit code, what the output must name)
    let cases: Vec<(&str, PathBuf, &str, i32, Vec<&str>)> = vec![
        (
            "unknown-field",
            hello.clone(),
            "[limits]\nmemory_mb = 64",
            2,
            vec!["memory_mb", "bundle.toml"],
        ),
        (
            "bad-limit",
            hello.clone(),
            "[limits]\ntimeout_ms = 0",
            2,
            vec!["limits.timeout_ms must be 1..=600000"],
        ),
        (
            "bad-egress",
            hello.clone(),
            "[egress]\nallow = [\"user@api.example.com:443\"]",
            2,
            vec!["egress.allow", "user@api.example.com:443"],
        ),
        (
            "bad-secret-name",
            hello.clone(),
            "secrets = [\"Tokens/API Key\"]",
            2,
            vec!["declared name \"Tokens/API Key\" is invalid"],
        ),
        (
            "missing-file",
            files.join("nope.wasm"),
            "",
            2,
            vec!["nope.wasm does not exist"],
        ),
        (
            "core-module",
            core_module,
            "",
            2,
            vec![
                "core.wasm is a core WebAssembly module, not a component",
                "wasm32-wasip2",
            ],
        ),
        (
            "unknown-package",
            unknown_package,
            "",
            2,
            vec![
                "MISSING  acme:vaultlike-storage/secrets-store@1.0.0",
                "error: import acme:vaultlike-storage/secrets-store@1.0.0 is not provided by this host: \
                 no interface of package acme:vaultlike-storage is provided here",
            ],
        ),
        (
            "newer-version",
            newer_version,
            "",
            2,
            vec![
                "error: import greentic:secrets-store/secrets-store@2.0.0 is not provided",
                "version 2.0.0 is not one this host can satisfy (it provides \
                 greentic:secrets-store/secrets-store@1.0.x and \
                 greentic:secrets-store/secrets-store@1.1.x)",
            ],
        ),
        (
            "wrong-types",
            wrong_types,
            "",
            2,
            vec![
                "MISMATCH greentic:secrets-store/secrets-store@1.0.0",
                "error: import greentic:secrets-store/secrets-store@1.0.0 does not match \
                 what this host provides: component imports instance \
                 `greentic:secrets-store/secrets-store@1.0.0`",
                "`put`",
                "unchecked wasi:",
                "the imports marked `unchecked` are checked once that one is fixed",
            ],
        ),
        (
            "no-handler",
            no_handler,
            "",
            2,
            vec![
                "does not export wasi:http/incoming-handler@0.2.x",
                "wasi:http/incoming-handlex",
            ],
        ),
        (
            "sockets-and-files",
            guest("probe"),
            "secrets = [\"token\"]",
            0,
            vec![
                "sandbox  wasi:sockets/tcp@",
                "sandbox  wasi:filesystem/preopens@",
                "every socket is refused in the sandbox",
                "the sandbox has no directory",
                "ok: 0 error(s), 2 warning(s)",
            ],
        ),
        (
            "capped-limits",
            hello.clone(),
            "[limits]\nmemory_mib = 1024",
            0,
            vec!["warning: limits: memory 1024 MiB -> 512 MiB"],
        ),
    ];
    for (id, component, extra, code, wanted) in cases {
        let dir = bundle_with_component(root, id, &component, extra);
        let (status, output) = check(&dir);
        assert_eq!(status, code, "{id}: {output}");
        for w in wanted {
            assert!(output.contains(w), "{id}: wanted {w:?} in\n{output}");
        }
        assert!(!output.contains("panicked"), "{id}: {output}");
        if code != 0 {
            // An import the start would refuse is never listed as `ok`.
            assert!(!output.contains("ok       greentic:"), "{id}: {output}");
        }
    }

    // A good bundle: imports and exports listed, size, secrets, egress, limits.
    let good = bundle_with_component(
        root,
        "good",
        &guest("greentic-component"),
        "secrets = [\"token\"]\n[egress]\nallow = [\"api.example.com:443\"]",
    );
    let (status, output) = check(&good);
    assert_eq!(status, 0, "{output}");
    for wanted in [
        "ok       greentic:secrets-store/secrets-store@1.0.0",
        "exports (1):\n  wasi:http/incoming-handler@0.2.",
        "MiB, compiled in",
        "readable secrets token",
        "egress api.example.com:443",
        "limits memory 64 MiB, timeout 5000 ms",
        "ok: 0 error(s), 0 warning(s)",
    ] {
        assert!(output.contains(wanted), "wanted {wanted:?} in\n{output}");
    }

    // Several bundles at once: every one is reported, then what they would refuse
    // together (nothing here); the status counts failures.
    let out = run_gtc(
        &[
            "bundle",
            "check",
            "--no-compile-cache",
            &good.display().to_string(),
            &root.join("core-module").display().to_string(),
            &root.join("bad-limit").display().to_string(),
        ],
        &[],
        b"",
    );
    let output = text(&out);
    assert_eq!(out.status.code(), Some(2), "{output}");
    // Each bundle, then the three as one set (nothing wrong across them here).
    assert_eq!(output.matches("== ").count(), 4, "{output}");
    assert!(
        output.contains("== the 3 bundle(s) together\nok: 0 error(s), 0 warning(s)"),
        "{output}"
    );
    assert!(output.contains("2 bundle(s) would not start"), "{output}");
}

#[tokio::test]
async fn bundle_compile_fills_the_cache_that_serve_maps() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/_/probe/x", b"cached-compile-value");
    let probe = write_bundle(dir.path(), "probe", "probe", &["/p"], "secrets = [\"x\"]");
    let env = vec![
        ("GREENTIC_ENV", "dev".to_string()),
        ("GREENTIC_TENANT", "acme".to_string()),
        ("GREENTIC_DEV_STORE", store.display().to_string()),
    ];

    // Without a cache directory anywhere, compile refuses (exit 2) and says how.
    let out = run_gtc(
        &["bundle", "compile", &probe.display().to_string()],
        &[],
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--compile-cache DIR"), "{}", text(&out));

    let cache_flag = format!("--compile-cache={}", cache.display());
    let out = run_gtc(
        &[
            "bundle",
            "compile",
            &probe.display().to_string(),
            &cache_flag,
        ],
        &[],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("probe: 0.2 MiB component, compiled in"),
        "{}",
        text(&out)
    );
    let artifacts: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert_eq!(artifacts.len(), 1, "one artifact, no temporary file left");

    // serve with the same cache maps the artifact; the log says so.
    let gtc = Gtc::serve(
        &[format!("--bundle={}", probe.display()), cache_flag.clone()],
        &env,
    );
    let answer = client()
        .post(gtc.url("/p/get"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer
            .text()
            .await
            .unwrap()
            .contains("cached-compile-value")
    );
    let log = gtc.stop();
    assert!(
        log.contains("bundle component loaded from the compile cache"),
        "{log}"
    );
    assert!(!log.contains("compiling bundle component"), "{log}");

    // HOME gives the default location; --no-compile-cache turns it off, loudly.
    let home = dir.path().join("home");
    let mut home_env = env.clone();
    home_env.push(("HOME", home.display().to_string()));
    let gtc = Gtc::serve(&[format!("--bundle={}", probe.display())], &home_env);
    let log = gtc.stop();
    assert!(log.contains("compiling bundle component"), "{log}");
    assert!(log.contains("bundle component compiled"), "{log}");
    assert!(
        home.join(".cache/gtc/components")
            .read_dir()
            .unwrap()
            .count()
            == 1
    );
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}", probe.display()),
            "--no-compile-cache".into(),
        ],
        &home_env,
    );
    let log = gtc.stop();
    assert!(log.contains("the compile cache, which is off"), "{log}");
}

/// `gtc bundle check` over `bundles` (each `DIR[=TEAM]`): (exit status, output).
fn check_set(bundles: &[String]) -> (i32, String) {
    let mut args = vec!["bundle", "check", "--no-compile-cache"];
    args.extend(bundles.iter().map(String::as_str));
    let out = run_gtc(&args, &[], b"");
    (out.status.code().unwrap_or(-1), text(&out))
}

/// `gtc serve` over `bundles`, which must refuse to start: (exit status, output).
fn serve_refuses(root: &Path, bundles: &[String]) -> (i32, String) {
    let mut args = vec!["serve".to_string(), "--listen=127.0.0.1:0".to_string()];
    args.extend(bundles.iter().map(|b| format!("--bundle={b}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [(
        "GREENTIC_DEV_STORE",
        root.join("store.json").display().to_string(),
    )];
    let out = run_gtc(&args, &env, b"");
    (out.status.code().unwrap_or(-1), text(&out))
}

#[test]
fn bundle_check_refuses_every_set_serve_refuses_with_the_same_words() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let path = |p: &Path| p.display().to_string();
    let a = path(&write_bundle(root, "bot-a", "hello", &["/shared"], ""));
    let b = path(&write_bundle(root, "bot-b", "hello", &["/shared/"], ""));
    let reserved = path(&write_bundle(root, "bot-r", "hello", &["/healthz"], ""));
    let hello = path(&write_bundle(root, "hello", "hello", &["/hello"], ""));
    let hello_team = format!("{hello}=support");
    let conflict = "routes: \"/shared\" is claimed by both bot-a and bot-b";
    let healthz = "routes: \"/healthz\" of bundle bot-r is reserved by the host";
    let twice = "id: bundle id \"hello\" is given more than once";
    for (what, set, wanted) in [
        ("route conflict", vec![a.clone(), b.clone()], vec![conflict]),
        ("reserved route", vec![reserved.clone()], vec![healthz]),
        (
            "same bundle twice",
            vec![hello.clone(), hello_team.clone()],
            vec![twice],
        ),
        (
            "all at once",
            vec![
                a.clone(),
                reserved.clone(),
                hello.clone(),
                b.clone(),
                hello.clone(),
            ],
            vec![conflict, healthz, twice],
        ),
    ] {
        let (code, checked) = check_set(&set);
        assert_eq!(code, 2, "{what}: {checked}");
        let (code, served) = serve_refuses(root, &set);
        assert_eq!(code, 2, "{what}: {served}");
        for w in &wanted {
            assert!(
                checked.contains(w),
                "bundle check, {what}: wanted {w:?} in\n{checked}"
            );
            assert!(
                served.contains(w),
                "serve, {what}: wanted {w:?} in\n{served}"
            );
        }
        assert!(
            checked.contains(&format!("FAILED: {} error(s)", wanted.len())),
            "{what}: {checked}"
        );
        assert!(
            checked.contains("would not start together"),
            "{what}: {checked}"
        );
    }
    // A set serve accepts is one bundle check accepts.
    let (code, checked) = check_set(&[a.clone(), hello.clone()]);
    assert_eq!(code, 0, "{checked}");
    assert!(
        checked.contains("== the 2 bundle(s) together\nok: 0 error(s)"),
        "{checked}"
    );
}

#[test]
fn bundle_check_reports_every_manifest_problem_in_the_projects_words() {
    let dir = tempfile::tempdir().unwrap();
    let hello = guest("hello");
    let bad = bundle_with_component(dir.path(), "placeholder", &hello, "");
    // Every field wrong at once: a bad id, an unknown field, a route without '/',
    // secrets neither a list nor a table, a bad egress entry, a bad limit.
    std::fs::write(
        bad.join("bundle.toml"),
        format!(
            "id = \"Bad Id\"\ncomponent = {:?}\nroutes = [\"nope\"]\nsecrets = 5\n\
             colour = \"blue\"\n[egress]\nallow = [\"user@api.example.com:443\"]\n\
             [limits]\ntimeout_ms = 0\n",
            hello.display().to_string()
        ),
    )
    .unwrap();
    let (status, output) = check(&bad);
    assert_eq!(status, 2, "{output}");
    for wanted in [
        "unknown field `colour`",
        "id: \"Bad Id\" is not a valid bundle id",
        "routes: \"nope\" must be a path prefix starting with '/'",
        "secrets: must be a list of names (secrets = [\"name\"]) or a table",
        "egress.allow: \"user@api.example.com:443\"",
        "limits.timeout_ms must be 1..=600000",
        "FAILED: 6 error(s)",
    ] {
        assert!(output.contains(wanted), "wanted {wanted:?} in\n{output}");
    }
    for unwanted in [
        "untagged enum",
        "malformed secret name",
        "did not match any variant",
    ] {
        assert!(!output.contains(unwanted), "{unwanted:?} in\n{output}");
    }
    // The table form's own fields are named too (no serde "untagged" text).
    std::fs::write(
        bad.join("bundle.toml"),
        format!(
            "id = \"ok-id\"\ncomponent = {:?}\nroutes = [\"/x\"]\n[secrets]\nreed = [\"a\"]\n",
            hello.display().to_string()
        ),
    )
    .unwrap();
    let (status, output) = check(&bad);
    assert_eq!(status, 2, "{output}");
    assert!(
        output.contains("secrets: unknown field `reed`, expected `read` or `sealed`"),
        "{output}"
    );
    assert!(!output.contains("untagged"), "{output}");
}

#[test]
fn bundle_check_warns_when_every_get_would_be_denied() {
    let dir = tempfile::tempdir().unwrap();
    let undeclared = write_bundle(dir.path(), "reader", "greentic-component", &["/r"], "");
    let (status, output) = check(&undeclared);
    assert_eq!(status, 0, "{output}");
    assert!(
        output.contains(
            "warning: secrets: the component imports \
             greentic:secrets-store/secrets-store@1.0.0 but bundle.toml declares no secret, \
             so every get it makes will be denied"
        ),
        "{output}"
    );
    assert!(output.contains("ok: 0 error(s), 1 warning(s)"), "{output}");
    // Declared: no warning. A component that imports no secrets: no warning.
    let declared = write_bundle(
        dir.path(),
        "reader2",
        "greentic-component",
        &["/r2"],
        "secrets = [\"token\"]",
    );
    let (_, output) = check(&declared);
    assert!(output.contains("ok: 0 error(s), 0 warning(s)"), "{output}");
    let hello = write_bundle(dir.path(), "quiet", "hello", &["/q"], "");
    let (_, output) = check(&hello);
    assert!(output.contains("ok: 0 error(s), 0 warning(s)"), "{output}");
    // A component that checks signatures with `sealed`, but no sealed secret.
    let unsealed = write_bundle(
        dir.path(),
        "unsealed",
        "webchat-bot",
        &["/u"],
        "secrets = [\"settings\"]",
    );
    let (status, output) = check(&unsealed);
    assert_eq!(status, 0, "{output}");
    assert!(
        output.contains(
            "warning: secrets.sealed: the component imports greentic:secrets/sealed@1.1.0 \
             but bundle.toml declares no sealed secret"
        ),
        "{output}"
    );

    // `gtc serve` logs the same warning at start (one list for both commands).
    let store = dir.path().join("store.json");
    let gtc = Gtc::serve(
        &[format!("--bundle={}", undeclared.display())],
        &[("GREENTIC_DEV_STORE", store.display().to_string())],
    );
    let log = gtc.stop();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("bundle=reader")
            && l.contains("so every get it makes will be denied")),
        "{log}"
    );
}
