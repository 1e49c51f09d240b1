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
                 greentic:secrets-store/secrets-store@1.0.x)",
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
            "",
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
    assert_eq!(output.matches("== ").count(), 4, "{output}");
    assert!(
        output.contains("== across the 3 bundles\nok: 0 error(s), 0 warning(s)"),
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
