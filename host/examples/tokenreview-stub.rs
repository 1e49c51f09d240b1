//! A stand-in for the Kubernetes TokenReview API, for running the Vault story on
//! one machine without a cluster (examples/k8s-vault-demo/local.sh).
//!
//! It mints a projected ServiceAccount token into `--jwt-out`, a token of the
//! reviewer ServiceAccount (`--reviewer`, bound to `system:auth-delegator`, with
//! the API server's audience) into `--reviewer-jwt-out` for Vault's
//! `token_reviewer_jwt`, writes a CA certificate for Vault's `kubernetes_ca_cert`
//! into `--ca-out`, prints
//! `tokenreview-stub listening on http://127.0.0.1:PORT`, and reviews tokens until
//! it is stopped. Test-only: it trusts nothing but the key it generated itself.

#[allow(dead_code)]
#[path = "../../tests/support/k8s_api.rs"]
mod k8s_api;

use std::time::Duration;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(jwt_out), Some(reviewer_out), Some(ca_out)) = (
        value("--jwt-out"),
        value("--reviewer-jwt-out"),
        value("--ca-out"),
    ) else {
        eprintln!(
            "usage: tokenreview-stub --jwt-out FILE --reviewer-jwt-out FILE --ca-out FILE \
             [--namespace NS] [--service-account SA] [--reviewer SA]"
        );
        return std::process::ExitCode::from(2);
    };
    let reviewer = value("--reviewer").unwrap_or_else(|| "gtc-vault-reviewer".to_string());
    let namespace = value("--namespace").unwrap_or_else(|| k8s_api::WORKER_NAMESPACE.to_string());
    let service_account = value("--service-account").unwrap_or_else(|| "gtc-worker".to_string());
    let api = k8s_api::K8sApi::start();
    let jwt = api.mint(
        &namespace,
        &service_account,
        "vault",
        Duration::from_secs(3600),
    );
    let reviewer_jwt = api.mint_reviewer(&namespace, &reviewer);
    if let Err(error) = std::fs::write(&jwt_out, jwt)
        .and_then(|()| std::fs::write(&reviewer_out, reviewer_jwt))
        .and_then(|()| std::fs::write(&ca_out, &api.ca_pem))
    {
        eprintln!("tokenreview-stub: cannot write outputs: {error}");
        return std::process::ExitCode::from(1);
    }
    println!("tokenreview-stub listening on {}", api.addr);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
