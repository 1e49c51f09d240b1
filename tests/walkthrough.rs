//! README's "Write a bundle", followed literally for Rust, Python and JavaScript:
//! the commands are parsed out of README.md's first `sh` block in that section and
//! run one by one (`sh -c`, from the directory the block `cd`s into, with the real
//! `gtc` first on PATH), so a README that drifts from what works fails here.
//!
//! What the test cannot do literally, it checks instead: it does not contact PyPI
//! or npm, so `pip install componentize-py==V` is checked against the
//! componentize-py tests/install-tools.sh installed (same version, put on PATH),
//! and `npm install` against the componentize-js installed there (the version the
//! bundle's package.json pins, linked in as `node_modules`). A Rust build shares
//! `target/guest-languages` with tests/guest_languages.rs, so the SDK's
//! dependencies are not compiled again on every run. `gtc serve` listens on a free
//! port instead of 8080, and the README's `curl` path is asked of it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// The languages' builds are heavy: one at a time (held across the requests too,
/// so an async-aware lock).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the first `gtc serve` may take to listen (a 13–18 MB component is
/// compiled, unless `gtc bundle check` already put it in the compile cache).
const FIRST_START: Duration = Duration::from_secs(300);

/// One line of the walkthrough: the command and its comment.
struct Step {
    command: String,
    comment: String,
}

/// The walkthrough block of README.md: the first ```sh block after the heading
/// "### Write a bundle".
fn walkthrough() -> Vec<Step> {
    let readme = std::fs::read_to_string(vault::root().join("README.md")).unwrap();
    let section = readme
        .split_once("### Write a bundle")
        .expect("README.md has the section \"Write a bundle\"")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the section has a ```sh block")
        .1
        .split_once("```")
        .expect("the block ends")
        .0;
    block
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (command, comment) = line.split_once(" #").unwrap_or((line, ""));
            Step {
                command: command.trim().to_string(),
                comment: comment.trim().to_string(),
            }
        })
        .collect()
}

/// Runs `command` with `sh -c` in `cwd`; the output, or a failure naming the line.
fn sh(command: &str, cwd: &Path, path: &str, cache: &Path, lang: &str) -> String {
    let mut sh = Command::new("sh");
    sh.args(["-c", command])
        .current_dir(cwd)
        .env("PATH", path)
        .env("XDG_CACHE_HOME", cache);
    // Nothing of the test's own environment decides the backend or the scope.
    for (var, _) in std::env::vars() {
        if var.starts_with("GREENTIC_") || var.starts_with("VAULT_") || var.starts_with("GTC_") {
            sh.env_remove(var);
        }
    }
    if lang == "rust" {
        let target = vault::root().join("target/guest-languages");
        std::fs::create_dir_all(&target).unwrap();
        sh.env("CARGO_TARGET_DIR", target);
    }
    let out = sh.output().expect("run sh");
    assert!(
        out.status.success(),
        "{lang}: README line `{command}` failed in {}:\n{}",
        cwd.display(),
        text(&out)
    );
    text(&out)
}

/// The version a `name==V` pin or a `"name": "V"` entry gives.
fn pinned<'a>(text: &'a str, after: &str) -> &'a str {
    text.split_once(after)
        .unwrap_or_else(|| panic!("{after:?} in {text}"))
        .1
        .trim_start_matches([' ', '"', ':'])
        .split(['"', ' ', ',', '\n'])
        .next()
        .unwrap()
}

async fn follow_the_readme(lang: &str) {
    let _one = ONE_AT_A_TIME.lock().await;
    let root = vault::root();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let gtc_dir = Path::new(gtc_bin()).parent().unwrap().to_path_buf();
    let mut path = vec![gtc_dir];
    let mut cwd: PathBuf = work.path().join("home");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut done = Vec::new();
    for step in walkthrough() {
        let only = step
            .comment
            .split_once(" only")
            .map(|(lang, _)| lang.trim());
        if let Some(only) = only
            && only != lang
        {
            assert!(
                ["python", "js"].contains(&only),
                "a step for an unknown language: {}",
                step.comment
            );
            continue;
        }
        let joined = || {
            std::env::join_paths(
                path.iter()
                    .cloned()
                    .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
            )
            .unwrap()
            .into_string()
            .unwrap()
        };
        let command = step.command.as_str();
        if let Some(rest) = command.strip_prefix("gtc new ") {
            // The README shows `--lang rust` and names the others in its comment.
            assert!(
                step.comment.contains("--lang python | js"),
                "{}",
                step.comment
            );
            let rest = rest.replace("--lang rust", &format!("--lang {lang}"));
            let out = sh(&format!("gtc new {rest}"), &cwd, &joined(), &cache, lang);
            // What `gtc new` prints is what the README says to run.
            for printed in ["./build.sh", "gtc op secrets put", "gtc serve --bundle ."] {
                assert!(out.contains(printed), "{lang}: {out}");
            }
            if lang == "python" {
                assert!(out.contains("pip install componentize-py=="), "{out}");
            }
            if lang == "js" {
                assert!(out.contains("npm install"), "{out}");
            }
            done.push("new");
        } else if let Some(dir) = command.strip_prefix("cd ") {
            cwd = cwd.join(dir.trim());
            assert!(cwd.is_dir(), "{lang}: `{command}`: no such directory");
            done.push("cd");
        } else if let Some(pin) = command.strip_prefix("pip install componentize-py==") {
            let tool = root.join(".venv/bin/componentize-py");
            let out = Command::new(&tool).arg("--version").output().unwrap();
            assert!(
                text(&out).trim().ends_with(&format!(" {pin}")),
                "README pins componentize-py {pin}; tests/install-tools.sh installed {}",
                text(&out)
            );
            path.insert(0, root.join(".venv/bin"));
            done.push("toolchain");
        } else if command == "npm install" {
            let wanted = std::fs::read_to_string(cwd.join("package.json")).unwrap();
            let wanted = pinned(&wanted, "\"@bytecodealliance/componentize-js\"");
            let modules = root.join(".tools/node/node_modules");
            let installed = std::fs::read_to_string(
                modules.join("@bytecodealliance/componentize-js/package.json"),
            )
            .unwrap();
            assert_eq!(
                pinned(&installed, "\"version\""),
                wanted,
                "package.json's pin and the componentize-js tests/install-tools.sh installed"
            );
            std::os::unix::fs::symlink(&modules, cwd.join("node_modules")).unwrap();
            done.push("toolchain");
        } else if let Some(args) = command.strip_prefix("gtc serve ") {
            let url = step
                .comment
                .split_once("curl -i http://127.0.0.1:8080")
                .expect("the serve line says what to curl")
                .1
                .trim();
            let args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
            let gtc = Gtc::serve_in(
                &cwd,
                &args,
                &[("XDG_CACHE_HOME", cache.display().to_string())],
                FIRST_START,
            );
            let (status, body) = gtc.get(url).await;
            // The seeded `Hello`: 200 with its length, never the value itself.
            assert_eq!(status, 200, "{lang}: {body}\n{}", gtc.log());
            assert!(body.contains("(5 bytes)"), "{lang}: {body}");
            assert!(!body.contains("Hello"), "{lang}: {body}");
            done.push("serve");
        } else {
            let started = Instant::now();
            sh(command, &cwd, &joined(), &cache, lang);
            if command == "./build.sh" {
                eprintln!("{lang}: ./build.sh took {:.1?}", started.elapsed());
                done.push("build");
            } else {
                done.push("other");
            }
        }
    }
    let mut wanted = vec!["new", "cd", "build", "other", "other", "serve"];
    if lang != "rust" {
        wanted.insert(2, "toolchain");
    }
    assert_eq!(done, wanted, "{lang}: the steps run");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_walkthrough_works_for_rust() {
    follow_the_readme("rust").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_walkthrough_works_for_python() {
    follow_the_readme("python").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_walkthrough_works_for_javascript() {
    follow_the_readme("js").await;
}

/// The README's promise for a fresh directory: no dev store file yet is `503`
/// (nothing to look in), and once the first `gtc op secrets put` has created it,
/// a name not in it is `404`.
#[tokio::test]
async fn a_fresh_dev_store_answers_503_until_the_first_put_creates_it() {
    let work = tempfile::tempdir().unwrap();
    let bundle = write_bundle(
        work.path(),
        "legacy",
        "legacy-v1",
        &["/legacy"],
        r#"secrets = ["greeting", "other"]"#,
    );
    let gtc = Gtc::serve_in(
        work.path(),
        &["--bundle".to_string(), bundle.display().to_string()],
        &[],
        Duration::from_secs(60),
    );
    assert!(!work.path().join(".greentic").exists());
    assert_eq!(
        gtc.get("/legacy?name=greeting").await,
        (503, "unavailable".to_string())
    );
    let path = std::env::join_paths(
        std::iter::once(Path::new(gtc_bin()).parent().unwrap().to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap()
    .into_string()
    .unwrap();
    sh(
        "printf 'Hi' | gtc op secrets put local/_/legacy/other",
        work.path(),
        &path,
        &work.path().join("cache"),
        "none",
    );
    assert!(work.path().join(".greentic/dev-store.json").is_file());
    // The backend's health state may still hold the failure for a moment: wait
    // for the condition, not for a fixed time.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = gtc.get("/legacy?name=greeting").await;
        if answer == (404, "not-found".to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "still {answer:?}\n{}", gtc.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gtc.get("/legacy?name=other").await, (200, "Hi".to_string()));
}
