//! Builds the example and test guests (WebAssembly components, `wasm32-wasip2`) so that
//! `cargo build`, `cargo run` and `cargo test` always serve freshly built components and
//! no `.wasm` binary is ever committed.
//!
//! The guests live in their own workspace (`guests/`) and are built into
//! `<target>/guests`, a separate target directory, so the nested cargo never waits on
//! the outer one's lock. `GTC_GUESTS_DIR` tells tests and examples where they are.
//! Set `GTC_SKIP_GUEST_BUILD=1` to build the host alone (e.g. in a container image),
//! `GTC_GUESTS_LOCKED=1` to build the guests `--locked`.

use std::path::PathBuf;
use std::process::Command;

#[path = "build/embed.rs"]
mod embed;

fn main() {
    println!("cargo:rerun-if-env-changed=GTC_SKIP_GUEST_BUILD");
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace root")
        .to_path_buf();
    let target_root = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let guests_target = target_root.join("guests");
    let out = guests_target.join("wasm32-wasip2").join("release");
    println!("cargo:rustc-env=GTC_GUESTS_DIR={}", out.display());
    // `gtc new`'s templates and the trees they attach (wit/), embedded in the binary.
    embed::generate(&root);

    if std::env::var_os("GTC_SKIP_GUEST_BUILD").is_some_and(|v| v == "1") {
        return;
    }
    for watched in [
        "guests/Cargo.toml",
        "guests/Cargo.lock",
        "guests/sdk",
        "guests/hello",
        "guests/webchat-bot",
        "guests/probe",
        "guests/hostile",
        "guests/sealed-probe",
        "guests/telegram-bot",
        "guests/legacy-v1",
        "guests/greentic-component",
        "guests/greentic-component-v1-1",
        "guests/greentic-wit",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    // GTC_GUESTS_LOCKED=1 (the image build sets it): the guests' Cargo.lock is
    // used as is, as `--locked` does for the host.
    println!("cargo:rerun-if-env-changed=GTC_GUESTS_LOCKED");
    let locked = std::env::var_os("GTC_GUESTS_LOCKED").is_some_and(|v| v == "1");
    let status = Command::new(cargo)
        .current_dir(root.join("guests"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&guests_target)
        .args(locked.then_some("--locked"))
        // What the outer build sets for the host target must not leak into the guests.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_MAKEFLAGS")
        .status()
        .expect("failed to run cargo for the guests");
    if !status.success() {
        panic!(
            "building the guests for wasm32-wasip2 failed ({status}); the target is named in \
             rust-toolchain.toml, so rustup installs it: run `rustup target add wasm32-wasip2` \
             if this toolchain was installed without it"
        );
    }
}
