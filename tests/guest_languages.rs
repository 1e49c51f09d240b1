//! Guest languages end to end, as a new author meets them: the real `gtc new`
//! writes a bundle, the bundle's own `build.sh` builds it with the pinned
//! toolchain (installed by tests/install-tools.sh), and the real `gtc serve` runs
//! it: 200 with a seeded secret (whose value the bundle never echoes), the
//! template's not-found answer without one, 503 with the secrets backend down.
//!
//! One test per language, from one line each in `guest_language!` below.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// What a language's `build.sh` needs from this repository: environment
/// variables naming the toolchain that tests/install-tools.sh installed, as
/// (variable, path relative to the repository root).
type Toolchain = &'static [(&'static str, &'static str)];

/// Rust needs only rustup's wasm32-wasip2 target (rust-toolchain.toml names it); a
/// target directory of its own under target/ keeps the SDK's dependencies compiled
/// between runs.
const RUST: Toolchain = &[("CARGO_TARGET_DIR", "target/guest-languages")];
const PYTHON: Toolchain = &[("COMPONENTIZE_PY", ".venv/bin/componentize-py")];
const JS: Toolchain = &[(
    "COMPONENTIZE_JS",
    ".tools/node/node_modules/.bin/componentize-js",
)];

/// A bundle per language: scaffold, build, serve (200, not found, 503).
macro_rules! guest_language {
    ($test:ident, $lang:literal, $toolchain:expr) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $test() {
            scaffold_build_and_serve($lang, $toolchain).await;
        }
    };
}

guest_language!(a_rust_bundle_builds_and_serves, "rust", RUST);
guest_language!(a_python_bundle_builds_and_serves, "python", PYTHON);
guest_language!(a_javascript_bundle_builds_and_serves, "js", JS);

/// How long the first `gtc serve` of a freshly built bundle may take to listen: it
/// compiles a component of 13–18 MB (seconds with the dev profile's optimised
/// cranelift; generous for a loaded 2-core machine).
const FIRST_START: Duration = Duration::from_secs(300);

/// Runs the bundle's own build script with the repository's toolchain.
fn build(bundle: &Path, toolchain: Toolchain) -> Duration {
    let root = vault::root();
    let mut command = Command::new(bundle.join("build.sh"));
    for (var, path) in toolchain {
        let tool = root.join(path);
        if *var == "CARGO_TARGET_DIR" {
            std::fs::create_dir_all(&tool).unwrap();
        }
        assert!(
            tool.exists(),
            "{} is missing: run tests/install-tools.sh",
            tool.display()
        );
        command.env(var, tool);
    }
    let started = Instant::now();
    let out = command.output().expect("run build.sh");
    let took = started.elapsed();
    assert!(out.status.success(), "build.sh failed:\n{}", text(&out));
    took
}

async fn scaffold_build_and_serve(lang: &str, toolchain: Toolchain) {
    let root = tempfile::tempdir().unwrap();
    let id = format!("hello-{lang}");
    let out = run_gtc(
        &[
            "new",
            "--lang",
            lang,
            &id,
            "--dir",
            &root.path().display().to_string(),
        ],
        &[],
        b"",
    );
    assert!(out.status.success(), "gtc new: {}", text(&out));
    let bundle = root.path().join(&id);
    assert!(text(&out).contains("gtc op secrets put"), "{}", text(&out));

    let build_time = build(&bundle, toolchain);
    let component = bundle.join(format!("{id}.wasm"));
    let size = std::fs::metadata(&component).unwrap().len();
    eprintln!(
        "{lang}: build.sh took {build_time:.1?}, component {:.1} MB",
        size as f64 / 1e6
    );

    // Seeded: 200, and the answer tells the value's length, never the value.
    let value = format!("greeting seeded for the {lang} test");
    let store = root.path().join("store.json");
    dev_put(&store, &format!("local/_/{id}/greeting"), value.as_bytes());
    let cache = root.path().join("compile-cache");
    let serve_args = vec![
        "--bundle".to_string(),
        bundle.display().to_string(),
        "--compile-cache".to_string(),
        cache.display().to_string(),
    ];
    let started = Instant::now();
    let gtc = Gtc::serve_within(
        &serve_args,
        &[("GREENTIC_DEV_STORE", store.display().to_string())],
        FIRST_START,
    );
    eprintln!(
        "{lang}: first gtc serve listened after {:.1?} (compiling the component)",
        started.elapsed()
    );
    let (status, body) = gtc.get(&format!("/{id}")).await;
    assert_eq!(status, 200, "{body}\n{}", gtc.log());
    assert!(body.contains(&format!("({} bytes)", value.len())), "{body}");
    assert!(
        !body.contains(&value),
        "the template echoed the secret: {body}"
    );
    drop(gtc);

    // Not seeded (the store holds another bundle's secret only): the template's 404.
    let other = root.path().join("other.json");
    dev_put(
        &other,
        "local/_/someone-else/greeting",
        b"not this bundle's",
    );
    let gtc = Gtc::serve(
        &serve_args,
        &[("GREENTIC_DEV_STORE", other.display().to_string())],
    );
    let (status, body) = gtc.get(&format!("/{id}")).await;
    assert_eq!(status, 404, "{body}\n{}", gtc.log());
    assert!(body.contains("not found"), "{body}");
    drop(gtc);

    // The secrets backend is down (a Vault where nothing listens): 503.
    let token = root.path().join("sa-token");
    std::fs::write(&token, "not-a-real-service-account-token").unwrap();
    let vault_down = [
        ("GREENTIC_SECRETS_BACKEND", "vault".to_string()),
        ("GREENTIC_ENV", "dev".to_string()),
        ("GREENTIC_TENANT", "local".to_string()),
        ("VAULT_ADDR", format!("http://127.0.0.1:{}", free_port())),
        ("VAULT_K8S_ROLE", "gtc-worker-dev-local".to_string()),
        ("VAULT_K8S_TOKEN_PATH", token.display().to_string()),
        ("GREENTIC_STARTUP_JITTER", "0".to_string()),
    ];
    let gtc = Gtc::serve(&serve_args, &vault_down);
    let (status, body) = gtc.get(&format!("/{id}")).await;
    assert_eq!(status, 503, "{body}\n{}", gtc.log());
    assert!(body.contains("unavailable"), "{body}");
}

#[test]
fn gtc_new_refuses_a_bad_name_and_a_non_empty_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().display().to_string();
    let new =
        |lang: &str, name: &str| run_gtc(&["new", "--lang", lang, name, "--dir", &dir], &[], b"");

    for bad in ["Hello", "../escape", "a/b", "_underscore", "white space"] {
        let out = new("python", bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("{bad:?} is not a valid bundle id")),
            "{bad:?}: {}",
            text(&out)
        );
    }
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        0,
        "a refused name wrote nothing"
    );

    // An empty directory is fine; one with anything in it is refused, untouched.
    std::fs::create_dir(root.path().join("empty-one")).unwrap();
    let out = new("js", "empty-one");
    assert!(out.status.success(), "{}", text(&out));
    let taken = root.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("notes.txt"), b"mine").unwrap();
    let out = new("python", "taken");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{} already exists", taken.display()))
            && text(&out).contains("not an empty directory"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_dir(&taken).unwrap().count(), 1);
    assert_eq!(std::fs::read(taken.join("notes.txt")).unwrap(), b"mine");
    // A file in the way is refused too.
    std::fs::write(root.path().join("a-file"), b"x").unwrap();
    let out = new("python", "a-file");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("already exists"), "{}", text(&out));
}
