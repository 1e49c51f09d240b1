//! Sealed secrets end to end through the real `gtc` binary: the manifest's sealed
//! list, what an operator sees of it (`gtc bundle inspect`), `get` refusing sealed
//! values, and readiness counting them.

mod support;

use std::path::Path;
use support::*;

const TOKEN: &[u8] = b"sealed-bot-token-7f3a9c2e11";
const KEY: &[u8] = b"sealed-api-key-0b9d4e81c6a2";

fn env_for(store: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("GREENTIC_ENV", "dev".to_string()),
        ("GREENTIC_TENANT", "acme".to_string()),
        ("GREENTIC_DEV_STORE", store.display().to_string()),
    ]
}

/// A probe bundle with `probe/token` sealed to `to` (also its egress allowlist).
fn sealed_probe(root: &Path, to: &str) -> std::path::PathBuf {
    write_bundle(
        root,
        "probe",
        "probe",
        &["/p"],
        &format!(
            "[secrets]\nread = [\"probe/plain\"]\n[[secrets.sealed]]\nname = \"probe/token\"\n\
             to = [\"{to}\"]\n[egress]\nallow = [\"{to}\"]"
        ),
    )
}

#[test]
fn operators_see_every_sealed_secret_and_where_it_may_travel() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = sealed_probe(dir.path(), "api.telegram.org:443");
    let out = run_gtc(&["bundle", "inspect", bundle.to_str().unwrap()], &[], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let review = String::from_utf8_lossy(&out.stdout);
    assert!(review.contains("bundle probe"), "{review}");
    assert!(review.contains("readable secrets probe/plain"), "{review}");
    // No `inject` in this manifest: the migration default place, and a warning.
    assert!(
        review.contains(
            "sealed secret probe/token may travel to https://api.telegram.org:443 \
             in header:authorization=Bearer {}"
        ),
        "{review}"
    );
    let out = run_gtc(&["bundle", "check", bundle.to_str().unwrap()], &[], b"");
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("warning: secrets.sealed \"probe/token\": no `inject`"),
        "{report}"
    );
    // A place that is not one is a bad manifest.
    let manifest = std::fs::read_to_string(bundle.join("bundle.toml")).unwrap();
    std::fs::write(
        bundle.join("bundle.toml"),
        manifest.replace("to = [", "inject = \"query:t={}\"\nto = ["),
    )
    .unwrap();
    let out = run_gtc(&["bundle", "inspect", bundle.to_str().unwrap()], &[], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("inject \"query:t={}\""));
    // A sealed destination outside the egress allowlist is a bad manifest.
    std::fs::write(
        bundle.join("bundle.toml"),
        "id = \"probe\"\ncomponent = \"x.wasm\"\nroutes = [\"/p\"]\n\
         [[secrets.sealed]]\nname = \"token\"\nto = [\"evil.example:443\"]",
    )
    .unwrap();
    let out = run_gtc(&["bundle", "inspect", bundle.to_str().unwrap()], &[], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[egress].allow"));

    // Operator settings for sealed egress are configuration: a bad one is exit 2.
    let hello = write_bundle(dir.path(), "hello", "hello", &["/hello"], "");
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    for (flag, needle) in [
        (
            format!("--egress-ca-file={}", not_pem.display()),
            "--egress-ca-file",
        ),
        (
            "--sealed-allow-http=user@evil:80".to_string(),
            "--sealed-allow-http",
        ),
    ] {
        let out = run_gtc(
            &[
                "serve",
                "--listen=127.0.0.1:0",
                &format!("--bundle={}", hello.display()),
                &flag,
            ],
            &[],
            b"",
        );
        assert_eq!(out.status.code(), Some(2), "{flag}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{flag}"
        );
    }
}

#[tokio::test]
async fn get_never_returns_a_sealed_value_and_readiness_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/_/probe/plain", b"plain-value");
    let bundle = sealed_probe(dir.path(), "api.telegram.org:443");
    let gtc = Gtc::serve(
        &[format!("--bundle={}", bundle.display())],
        &env_for(&store),
    );
    // Sealed, but not seeded yet: not ready, and the reason names it.
    let ready = client().get(gtc.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("probe/token"));
    drop(gtc);
    dev_put(&store, "acme/_/probe/token", TOKEN);
    let gtc = Gtc::serve(
        &[format!("--bundle={}", bundle.display())],
        &env_for(&store),
    );
    let ready = client().get(gtc.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    assert_eq!(
        probe_get(&gtc, "/p", b"probe/plain").await["value"],
        "plain-value"
    );
    assert_denied(
        &gtc,
        "/p",
        &[
            b"probe/token",
            b"token",
            b"secrets://dev/acme/_/probe/token",
        ],
    )
    .await;
    let log = gtc.stop();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("no `inject`") && l.contains("bundle=probe")),
        "{log}"
    );
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("gtc::audit") && l.contains("probe/token"))
        .collect();
    // Three refusals of one secret: the first a record of its own, the others
    // counted in one aggregate.
    assert_eq!(refused.iter().map(|l| calls_in(l)).sum::<u64>(), 3, "{log}");
    assert!(
        refused
            .iter()
            .all(|l| l.contains("denied") && l.contains("sealed")),
        "{log}"
    );
}

#[tokio::test]
async fn components_of_both_package_versions_serve_side_by_side() {
    // legacy-v1 is built against greentic:secrets@1.0.0 with its own bindings,
    // webchat-bot against 1.1.0 through the SDK (its webhook key sealed, checked by
    // the host).
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/_/webchat-bot/webhook-secret", TOKEN);
    dev_put(&store, "acme/_/legacy/plain", b"plain-value");
    let webchat = webchat_bundle(dir.path());
    let legacy = write_bundle(
        dir.path(),
        "legacy",
        "legacy-v1",
        &["/legacy"],
        r#"secrets = ["plain"]"#,
    );
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}", webchat.display()),
            format!("--bundle={}", legacy.display()),
        ],
        &env_for(&store),
    );
    assert_eq!(
        gtc.get("/legacy?name=plain").await,
        (200, "plain-value".into())
    );
    let (status, body) = webhook(&gtc, TOKEN, r#"{"text":"sealed hi"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("you said: sealed hi"), "{body}");
    assert_eq!(webhook(&gtc, b"not-the-key", "{}").await.0, 401);
    // Cache hits are audited as an aggregate, written at the latest at shutdown.
    let (_, log) = gtc.terminate();
    assert!(
        log.lines().any(|l| l.contains("sealed.verify-hmac-sha256")
            && l.contains("secrets://dev/acme/_/webchat-bot/webhook-secret")
            && l.contains("outcome=\"ok\"")),
        "{log}"
    );
}

/// Asks sealed-probe to send one request; returns what the guest saw.
async fn send(
    gtc: &Gtc,
    scheme: &str,
    authority: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> serde_json::Value {
    let mut request = client()
        .post(gtc.url("/s/send"))
        .header("x-scheme", scheme)
        .header("x-authority", authority)
        .header("x-path", path)
        .body(body.to_string());
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    // Whatever the guest saw is guest-visible: it must never hold the value.
    assert_no_leaks("a guest-visible response", &text);
    serde_json::from_str(&text).unwrap()
}

fn denied(answer: &serde_json::Value) -> bool {
    answer["sent"] == false
        && answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("HttpRequestDenied"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_guest_cannot_obtain_its_sealed_token() {
    use support::upstream::{Answer, TestCa, Upstream};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/_/probe/token", TOKEN);
    dev_put(&store, "acme/_/probe/key", KEY);
    let ca = TestCa::new(dir.path());
    let listed = Upstream::tls(&ca, Answer::Echo);
    let other_port = Upstream::tls(&ca, Answer::Echo);
    let unlisted = Upstream::plain(Answer::Echo);
    let redirector = Upstream::tls(&ca, Answer::RedirectTo(other_port.addr));
    let http_marked = Upstream::plain(Answer::Echo);
    let (l, o, u, r, h) = (
        listed.addr,
        other_port.addr,
        unlisted.addr,
        redirector.addr,
        http_marked.addr,
    );
    let bundle = write_bundle(
        dir.path(),
        "probe",
        "sealed-probe",
        &["/s"],
        &format!(
            "[[secrets.sealed]]\nname = \"probe/token\"\nto = [\"{l}\", \"{r}\", \"{h}\"]\n\
             inject = \"path:/bot{{}}/\"\n\
             [[secrets.sealed]]\nname = \"probe/key\"\nto = [\"{l}\"]\n\
             inject = \"header:authorization=Bearer {{}}\"\n\
             [egress]\nallow = [\"{l}\", \"{o}\", \"{u}\", \"{r}\", \"{h}\", \"localhost:{}\"]",
            l.port()
        ),
    );
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}", bundle.display()),
            "--egress-allow-loopback".into(),
            format!("--egress-ca-file={}", ca.pem_file.display()),
            format!("--sealed-allow-http={h}"),
        ],
        &env_for(&store),
    );
    let token = std::str::from_utf8(TOKEN).unwrap();
    let key = std::str::from_utf8(KEY).unwrap();
    let placeholder = "{{secret:probe/token}}";
    let key_placeholder = "{{secret:probe/key}}";
    let (l, o, u, r, h) = (
        l.to_string(),
        o.to_string(),
        u.to_string(),
        r.to_string(),
        h.to_string(),
    );

    // get: denied.
    let answer = probe_get(&gtc, "/s", b"probe/token").await;
    assert_eq!(answer["error"], "denied", "{answer}");

    // The allowed use: https to a listed authority, each value in the place its
    // manifest names (the token as the path prefix, the key as the bearer
    // header). The upstream received the values; it echoes them back in headers
    // and in a body sent in 7-byte chunks, and the guest sees only placeholders.
    let auth = format!("Bearer {key_placeholder}");
    let answer = send(
        &gtc,
        "https",
        &l,
        &format!("/bot{placeholder}/sendMessage"),
        &[("x-auth", &auth)],
        &format!("body keeps {placeholder}"),
    )
    .await;
    assert_eq!(answer["status"], 200, "{answer}");
    let received = listed.requests();
    assert_eq!(received.len(), 1);
    assert!(received[0].starts_with(&format!("POST /bot{token}/sendMessage ")));
    assert!(received[0].contains(&format!("authorization: Bearer {key}")));
    // Placeholders in a body are not substituted.
    assert!(
        received[0].ends_with(&format!("body keeps {placeholder}")),
        "{}",
        received[0]
    );
    let seen = format!("{}\n{}", answer["headers"], answer["body"]);
    assert!(
        seen.contains(&format!("x-echo-path: /bot{placeholder}/sendMessage")),
        "{seen}"
    );
    assert!(
        seen.contains(&format!("x-echo-authorization: Bearer {key_placeholder}")),
        "{seen}"
    );
    assert!(
        answer["body"]
            .as_str()
            .unwrap()
            .contains(&format!("/bot{placeholder}/"))
    );
    let listed_connections = listed.connections();

    // Refused before anything is sent: another port of the listed host, an
    // unlisted authority, the listed authority over http, a name spelled another
    // way (authority spoofing), a placeholder naming no sealed secret.
    let path = format!("/bot{placeholder}/");
    for (scheme, authority, path) in [
        ("https", o.as_str(), path.as_str()),
        ("http", u.as_str(), path.as_str()),
        ("http", l.as_str(), path.as_str()),
        (
            "https",
            &format!("localhost:{}", listed.addr.port()),
            path.as_str(),
        ),
        ("https", l.as_str(), "/{{secret:probe/other}}"),
        ("https", l.as_str(), "/{{secret:probe/token"),
    ] {
        let answer = send(&gtc, scheme, authority, path, &[], "").await;
        assert!(denied(&answer), "{scheme}://{authority}{path}: {answer}");
    }
    // Stored reflection: the value parked where a listed API stores and shows
    // it back (a query parameter, a later path segment, another header, another
    // header format) is refused, whatever the destination; the place is the
    // manifest's, not the guest's.
    let wrong_places: [(String, Vec<(&str, String)>); 8] = [
        (format!("/sendMessage?text={placeholder}"), vec![]),
        (
            format!("/bot{placeholder}/sendMessage?text={placeholder}"),
            vec![],
        ),
        (format!("/x/bot{placeholder}/"), vec![]),
        (format!("/bot/{placeholder}"), vec![]),
        (format!("/bot{key_placeholder}/"), vec![]),
        (
            "/x".into(),
            vec![("x-auth", format!("Bearer {placeholder}"))],
        ),
        ("/x".into(), vec![("x-auth", key_placeholder.to_string())]),
        (
            "/x".into(),
            vec![("x-send-x-note", format!("Bearer {key_placeholder}"))],
        ),
    ];
    let before = listed.connections();
    for (path, headers) in &wrong_places {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let answer = send(&gtc, "https", &l, path, &headers, "").await;
        assert!(denied(&answer), "{path} {headers:?}: {answer}");
    }
    assert_eq!(listed.connections(), before, "a misplaced value was sent");
    // A Host header cannot be set at all (wasi-http forbids it).
    let answer = send(&gtc, "https", &l, "/x", &[("x-host", "evil.example")], "").await;
    assert_eq!(answer["host_refused"], true, "{answer}");
    assert_eq!(other_port.connections(), 0);
    assert_eq!(unlisted.connections(), 0);
    // The refused http attempt and the spoofed name never reached the listed
    // host either (only the plain /x request above did).
    assert_eq!(listed.connections(), listed_connections + 1);
    assert!(listed.requests().iter().skip(1).all(|r| !r.contains(token)));

    // A redirect is not followed, and its Location comes back scrubbed.
    let answer = send(&gtc, "https", &r, &format!("/bot{placeholder}/go"), &[], "").await;
    assert_eq!(answer["status"], 302, "{answer}");
    let location = answer["headers"].as_str().unwrap();
    assert!(
        location.contains(&format!("/stolen?/bot{placeholder}/go")),
        "{location}"
    );
    assert!(redirector.requests()[0].contains(token));
    assert_eq!(other_port.connections(), 0, "the redirect was followed");

    // Plain http where the operator marked the authority.
    let answer = send(&gtc, "http", &h, &format!("/bot{placeholder}/x"), &[], "").await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert!(http_marked.requests()[0].starts_with(&format!("POST /bot{token}/x ")));

    // Signatures: only with a sealed key of this bundle, and no MAC comes back.
    let mac = |key: &[u8]| sign(key, b"message")["sha256=".len()..].to_string();
    let verify = |name: &'static str, mac: String| {
        let request = client()
            .post(gtc.url("/s/verify"))
            .header("x-name", name)
            .header("x-mac", mac)
            .body("message");
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(verify("probe/token", mac(TOKEN)).await["valid"], true);
    assert_eq!(verify("probe/token", mac(b"guess")).await["valid"], false);
    assert_eq!(verify("probe/other", mac(TOKEN)).await["error"], "denied");

    // Every refusal before sending is counted for the bundle (6 destinations or
    // names, 8 places); 4 values went out (token and key, redirect, http).
    let metrics = gtc.metrics().await;
    for line in [
        "gtc_sealed_refusals_total{bundle=\"probe\",stage=\"request\"} 14",
        "gtc_sealed_injections_total{bundle=\"probe\"} 4",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }

    let log = gtc.stop();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("sealed.inject") && l.contains("refused"))
        .collect();
    // Every refusal the metric counted is in the audit trail (a record of its
    // own, or counted in the aggregate of its secret, reason and destination),
    // and each record names the bundle, the secret's URI and the destination it
    // was refused for.
    let audited: Vec<&&str> = refusals
        .iter()
        .filter(|l| l.contains("gtc::audit"))
        .collect();
    assert_eq!(
        audited.iter().map(|l| calls_in(l)).sum::<u64>(),
        14,
        "{log}"
    );
    for line in &audited {
        // A malformed placeholder names no secret it could resolve; every other
        // refusal names the one it refused.
        let names_secret = line.contains("secret=\"secrets://dev/acme/")
            || (line.contains("secret=\"\"")
                && line.contains("a malformed {{secret:...}} placeholder"));
        assert!(
            line.contains("bundle=probe") && names_secret && line.contains("destination="),
            "a refusal record without its bundle, URI or destination: {line}"
        );
    }
    assert!(
        audited
            .iter()
            .filter(|l| l.contains("secret=\"secrets://dev/acme/"))
            .map(|l| calls_in(l))
            .sum::<u64>()
            >= 10,
        "{log}"
    );
    assert!(
        refusals
            .iter()
            .any(|line| line.contains("secrets://dev/acme/_/probe/key")
                && line.contains("not where the manifest's `inject` puts this secret")),
        "{log}"
    );
    assert!(
        refusals
            .iter()
            .any(|line| line.contains("secrets://dev/acme/_/probe/token")
                && line.contains(&format!("destination={o}"))
                && line.contains("bundle=probe")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("sealed.inject") && l.contains("outcome=\"injected\"")),
        "{log}"
    );
    // The upstreams' own logs hold the value only where it was allowed to go.
    for other in [&other_port, &unlisted] {
        assert!(other.requests().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_telegram_example_answers_through_the_api_with_an_injected_token() {
    use support::upstream::{Answer, TestCa, Upstream};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    let ca = TestCa::new(dir.path());
    // The "Bot API": a loopback TLS server that logs what it receives and echoes it.
    let api = Upstream::tls(&ca, Answer::Echo);
    let token = b"123456789:AAH-sealed_telegram-token";
    dev_put(&store, "acme/support/telegram/bot-token", token);
    // A setting, not a secret (so not registered with the leak scan).
    let put = run_gtc(
        &[
            "op",
            "secrets",
            "put",
            "acme/support/telegram-bot/api-authority",
        ],
        &env_for(&store),
        api.addr.to_string().as_bytes(),
    );
    assert!(put.status.success());
    // The example's manifest, with the API's authority swapped for the loopback one.
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/telegram-bot/bundle.toml"),
    )
    .unwrap();
    let manifest: String = example
        .lines()
        .filter(|l| !l.starts_with("component"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("api.telegram.org:443", &api.addr.to_string());
    let bundle = dir.path().join("telegram-bot");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(
        bundle.join("bundle.toml"),
        format!(
            "component = {:?}\n{manifest}",
            guest("telegram-bot").display().to_string()
        ),
    )
    .unwrap();
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}=support", bundle.display()),
            "--egress-allow-loopback".into(),
            format!("--egress-ca-file={}", ca.pem_file.display()),
        ],
        &env_for(&store),
    );
    let update = r#"{"update_id":1,"message":{"chat":{"id":4242},"text":"hello bot"}}"#;
    let response = client()
        .post(gtc.url("/telegram"))
        .body(update)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reply = response.text().await.unwrap();
    assert_no_leaks("the bot's reply", &reply);
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["api_status"], 200, "{reply}");
    // The provider received the token where Telegram wants it...
    let received = api.requests();
    assert_eq!(received.len(), 1);
    let token = std::str::from_utf8(token).unwrap();
    assert!(
        received[0].starts_with(&format!("POST /bot{token}/sendMessage ")),
        "{}",
        received[0]
    );
    assert!(received[0].contains(r#"{"chat_id":4242,"text":"you said: hello bot"}"#));
    // ...and its echo came back to the bot with the placeholder instead.
    let echoed = reply["api_answer"].as_str().unwrap();
    assert!(
        echoed.starts_with("POST /bot{{secret:telegram/bot-token}}/sendMessage "),
        "{echoed}"
    );
    gtc.stop();

    // The shipped example manifest is what an operator reviews.
    let out = run_gtc(&["bundle", "inspect", "../examples/telegram-bot"], &[], b"");
    let review = String::from_utf8_lossy(&out.stdout);
    assert!(
        review.contains(
            "sealed secret telegram/bot-token may travel to https://api.telegram.org:443"
        ),
        "{review}"
    );
}

#[tokio::test]
async fn a_sealed_value_has_one_owner_bundle_on_a_host() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/_/probe/token", TOKEN);
    dev_put(&store, "acme/support/probe/token", TOKEN);
    // The owner seals its own `token` (bare name: category = its id, `probe`).
    let owner = write_bundle(
        dir.path(),
        "probe",
        "sealed-probe",
        &["/s"],
        "[[secrets.sealed]]\nname = \"token\"",
    );
    let owner_arg = format!("--bundle={}=support", owner.display());
    let cache = format!("--compile-cache={}", dir.path().join("cc").display());
    // A second bundle claims the same value in every name form, sealed (with its
    // own destination) or readable, from the same team or another one.
    let thief_to = "[egress]\nallow = [\"thief.example:443\"]";
    let claims = [
        (
            "sealed, same name, same team",
            "probe/token",
            true,
            "support",
        ),
        (
            "sealed, another team (tenant-wide value)",
            "probe/token",
            true,
            "sales",
        ),
        ("sealed, tenant-wide bundle", "probe/token", true, "_"),
        (
            "sealed, full team URI",
            "secrets://dev/acme/support/probe/token",
            true,
            "support",
        ),
        (
            "sealed, full tenant-wide URI",
            "secrets://dev/acme/_/probe/token",
            true,
            "sales",
        ),
        ("readable, same team", "probe/token", false, "support"),
        ("readable, another team", "probe/token", false, "sales"),
    ];
    for (what, name, sealed, team) in claims {
        let declaration = if sealed {
            format!(
                "[[secrets.sealed]]\nname = \"{name}\"\nto = [\"thief.example:443\"]\n{thief_to}"
            )
        } else {
            format!("secrets = [\"{name}\"]")
        };
        let thief = write_bundle(dir.path(), "thief", "sealed-probe", &["/t"], &declaration);
        let out = run_gtc_to_end(
            &[
                "serve",
                "--listen=127.0.0.1:0",
                &owner_arg,
                &format!("--bundle={}={team}", thief.display()),
                &cache,
            ],
            &env_for(&store),
            std::time::Duration::from_secs(60),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains("sealed secret probe/token has two owners")
                && stderr.contains(&format!("bundle probe ({})", owner.display()))
                && stderr.contains(&format!("bundle thief ({})", thief.display())),
            "{what}: {stderr}"
        );
        // `bundle check` says the same across the bundles it is given.
        let out = run_gtc_to_end(
            &[
                "bundle",
                "check",
                owner.to_str().unwrap(),
                thief.to_str().unwrap(),
                &cache,
            ],
            &[],
            std::time::Duration::from_secs(120),
        );
        let report = text(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {report}");
        assert!(
            report.contains("error: sealed secret probe/token has two owners"),
            "{what}: {report}"
        );
    }

    // A neighbour sealing a value of its own is no claim on the owner's; the
    // owner still works (signature checks with its key).
    let neighbour = write_bundle(
        dir.path(),
        "thief",
        "sealed-probe",
        &["/t"],
        "[[secrets.sealed]]\nname = \"thief/token\"",
    );
    let neighbour_arg = format!("--bundle={}=support", neighbour.display());
    let out = run_gtc_to_end(
        &[
            "bundle",
            "check",
            owner.to_str().unwrap(),
            neighbour.to_str().unwrap(),
            &cache,
        ],
        &[],
        std::time::Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", text(&out));
    let gtc = Gtc::serve(
        &[owner_arg.clone(), neighbour_arg, cache.clone()],
        &env_for(&store),
    );
    let mac = sign(TOKEN, b"message")["sha256=".len()..].to_string();
    let verify = |prefix: &str| {
        client()
            .post(gtc.url(&format!("{prefix}/verify")))
            .header("x-name", "probe/token")
            .header("x-mac", mac.clone())
            .body("message")
            .send()
    };
    let answer: serde_json::Value = verify("/s").await.unwrap().json().await.unwrap();
    assert_eq!(answer["valid"], true, "{answer}");
    let answer: serde_json::Value = verify("/t").await.unwrap().json().await.unwrap();
    assert_eq!(answer["error"], "denied", "{answer}");
    gtc.stop();

    // Sharing is the operator's explicit choice, logged at start.
    let second = write_bundle(
        dir.path(),
        "second",
        "sealed-probe",
        &["/two"],
        "[[secrets.sealed]]\nname = \"probe/token\"",
    );
    let gtc = Gtc::serve(
        &[
            owner_arg,
            format!("--bundle={}=support", second.display()),
            "--share-sealed=probe/token".into(),
            cache,
        ],
        &env_for(&store),
    );
    let log = gtc.stop();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("--share-sealed")
            && l.contains("secret=probe/token")
            && l.contains("probe (")
            && l.contains("second (")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_guest_cannot_decode_around_the_scrubber() {
    use support::upstream::{Answer, TestCa, Upstream, reflections};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    let token: &[u8] = b"123456789:AAH-reflect_token-x9Qz";
    dev_put(&store, "acme/_/probe/token", token);
    let ca = TestCa::new(dir.path());
    let reflect = Upstream::tls(&ca, Answer::Reflect);
    let compress = Upstream::tls(&ca, Answer::EncodesIfAsked);
    let encoded = Upstream::tls(&ca, Answer::AlwaysEncoded);
    let ranges = Upstream::tls(&ca, Answer::RangesIfAsked);
    let partial = Upstream::tls(&ca, Answer::AlwaysPartial);
    let cut = Upstream::tls(&ca, Answer::CutShort);
    let all = [&reflect, &compress, &encoded, &ranges, &partial, &cut];
    let list: Vec<String> = all.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    let list = list.join(", ");
    let bundle = write_bundle(
        dir.path(),
        "probe",
        "sealed-probe",
        &["/s"],
        &format!(
            "[[secrets.sealed]]\nname = \"probe/token\"\nto = [{list}]\n\
             inject = \"path:/bot{{}}/\"\n[egress]\nallow = [{list}]"
        ),
    );
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}", bundle.display()),
            "--egress-allow-loopback".into(),
            format!("--egress-ca-file={}", ca.pem_file.display()),
        ],
        &env_for(&store),
    );
    let text = std::str::from_utf8(token).unwrap();
    let path = "/bot{{secret:probe/token}}/";
    let sent_path = format!("/bot{text}/");
    // What the guest must never see: the value in any encoding, reversed, or
    // cut short.
    let mut forbidden = reflections(text);
    forbidden.push(text.chars().rev().collect());
    forbidden.push(text[..text.len() - 1].to_string());
    let never_seen = |what: &str, answer: &serde_json::Value| {
        let seen = answer.to_string();
        for form in &forbidden {
            assert!(!seen.contains(form.as_str()), "{what}: {form} in {seen}");
        }
    };

    // Other encodings: every form comes back as the placeholder, in the body
    // (streamed in 7-byte chunks) and in a header.
    let answer = send(&gtc, "https", &reflect.addr.to_string(), path, &[], "").await;
    assert_eq!(answer["status"], 200, "{answer}");
    never_seen("reflect", &answer);
    let body = answer["body"].as_str().unwrap();
    assert_eq!(
        body.lines().count(),
        reflections(&sent_path).len(),
        "{body}"
    );
    assert!(
        body.lines().all(|l| l.contains("{{secret:probe/token}}")),
        "{body}"
    );
    assert!(reflect.requests()[0].contains(&sent_path), "the API got it");

    // Compression: the guest asks for gzip, the host asks for identity, and the
    // API answers plain.
    let gzip = [("x-send-accept-encoding", "gzip")];
    let answer = send(&gtc, "https", &compress.addr.to_string(), path, &gzip, "").await;
    assert_eq!(answer["status"], 200, "{answer}");
    never_seen("compress", &answer);
    let received = &compress.requests()[0];
    assert!(received.contains("accept-encoding: identity"), "{received}");
    assert!(!received.contains("gzip"), "{received}");
    // An API that encodes anyway: refused, nothing of the body reaches the guest.
    let answer = send(&gtc, "https", &encoded.addr.to_string(), path, &gzip, "").await;
    assert_eq!(answer["sent"], false, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("ContentCoding"),
        "{answer}"
    );
    never_seen("encoded", &answer);

    // Partial responses: the guest's range is not forwarded, so the whole
    // (scrubbed) path comes back; a 206 nobody asked for is refused.
    let range = [("x-send-range", "bytes=4-30"), ("x-send-if-range", "\"x\"")];
    let answer = send(&gtc, "https", &ranges.addr.to_string(), path, &range, "").await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["body"], path, "{answer}");
    let received = &ranges.requests()[0];
    assert!(
        !received.contains("range:") && !received.contains("if-range"),
        "{received}"
    );
    let answer = send(&gtc, "https", &partial.addr.to_string(), path, &[], "").await;
    assert_eq!(answer["sent"], false, "{answer}");
    never_seen("partial", &answer);
    // A body cut short inside the value: the cut value is not released.
    let answer = send(&gtc, "https", &cut.addr.to_string(), path, &[], "").await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["body"], "/bot{{secret:probe/token}}", "{answer}");
    never_seen("cut", &answer);

    // Per-bundle counters: six values injected, two responses refused.
    let metrics = gtc.metrics().await;
    for line in [
        "gtc_sealed_injections_total{bundle=\"probe\"} 6",
        "gtc_sealed_refusals_total{bundle=\"probe\",stage=\"request\"} 0",
        "gtc_sealed_refusals_total{bundle=\"probe\",stage=\"response\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    let log = gtc.stop();
    assert!(
        log.lines()
            .filter(|l| l.contains("the response to a request carrying a sealed secret was refused"))
            .count()
            >= 2,
        "{log}"
    );
    // Each upstream received the value (it was listed), and only once each.
    for upstream in all {
        let requests = upstream.requests();
        assert_eq!(requests.len(), 1);
        assert!(requests[0].contains(&sent_path));
    }
}

/// A non-loopback address of this machine (from the kernel's table).
fn own_interface_address() -> String {
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap();
    let mut last = "";
    for line in trie.lines().map(str::trim_start) {
        if let Some(addr) = line.strip_prefix("|-- ") {
            last = addr.trim();
        } else if line.starts_with("/32 host LOCAL") && !last.starts_with("127.") {
            return last.to_string();
        }
    }
    panic!("this machine has no non-loopback address to listen on: {trie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_is_never_a_destination_on_any_of_its_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/_/probe/token", TOKEN);
    // The host listens on every interface (a wildcard bind, as in a pod); a bundle
    // lists exactly its non-loopback address and port (as an ingress in front of
    // the host would be listed). The test itself talks to the host over loopback
    // only, and a correct guard refuses before any connection is made, so nothing
    // is sent to the non-loopback address.
    // The port is picked before the host binds it (the manifest names it): if
    // another process takes it in between, pick another.
    let mut attempts = 0;
    let (mut gtc, port, own) = loop {
        let port = free_port();
        let own = format!("{}:{port}", own_interface_address());
        let bundle = write_bundle(
            dir.path(),
            "probe",
            "sealed-probe",
            &["/s"],
            &format!(
                "[[secrets.sealed]]\nname = \"probe/token\"\nto = [\"{own}\"]\n\
                 inject = \"path:/bot{{}}/\"\n[egress]\nallow = [\"{own}\"]"
            ),
        );
        match Gtc::try_serve(
            &[
                format!("--listen=0.0.0.0:{port}"),
                format!("--bundle={}", bundle.display()),
                format!("--sealed-allow-http={own}"),
            ],
            &env_for(&store),
        ) {
            Ok(gtc) => break (gtc, port, own),
            Err(log) if log.contains("Address already in use") && attempts < 5 => attempts += 1,
            Err(log) => panic!("gtc serve did not start; log:\n{log}"),
        }
    };
    gtc.base = format!("http://127.0.0.1:{port}");
    // Plain egress back into the host, and a sealed request that would re-enter
    // the same bundle and read the value in its own path: both refused.
    for path in ["/s/get", "/bot{{secret:probe/token}}/s/get"] {
        let answer = send(&gtc, "http", &own, path, &[], "probe/plain").await;
        assert_eq!(answer["sent"], false, "{path}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("DestinationIpProhibited"),
            "{path}: {answer}"
        );
    }
    let log = gtc.stop();
    assert!(
        log.contains(
            "outgoing HTTP denied by the operator's egress policy: the host's own listener"
        ),
        "{log}"
    );
    // Refused before the value was read: no injection was audited.
    assert_eq!(log.matches("sealed.inject").count(), 0, "{log}");
}

#[tokio::test]
async fn verify_over_its_per_request_limit_is_an_error_the_guest_handles() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/_/probe/token", TOKEN);
    let bundle = write_bundle(
        dir.path(),
        "probe",
        "sealed-probe",
        &["/s"],
        "[[secrets.sealed]]\nname = \"probe/token\"",
    );
    let gtc = Gtc::serve(
        &[format!("--bundle={}", bundle.display())],
        &env_for(&store),
    );
    let mac = sign(TOKEN, b"message")["sha256=".len()..].to_string();
    let verify = |times: u32| {
        client()
            .post(gtc.url("/s/verify"))
            .header("x-name", "probe/token")
            .header("x-mac", mac.clone())
            .header("x-repeat", times.to_string())
            .body("message")
            .send()
    };
    // 1000 checks in one request (the limit) all answer; the 1001st is an
    // error the guest reads (and answers 200 with), not a request ended by 500.
    let response = verify(1000).await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["valid"], true, "{answer}");
    assert_eq!(answer["calls"], 1000, "{answer}");
    let response = verify(1001).await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "unavailable", "{answer}");
    assert_eq!(answer["calls"], 1001, "{answer}");
    // The next request has its own budget.
    let answer: serde_json::Value = verify(1).await.unwrap().json().await.unwrap();
    assert_eq!(answer["valid"], true, "{answer}");
    // Sealed values must be high-entropy: `op secrets put` warns for a short one.
    for (value, warned) in [(&b"short-key"[..], true), (TOKEN, false)] {
        let out = run_gtc(
            &["op", "secrets", "put", "acme/_/probe/token"],
            &env_for(&store),
            value,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(
            stderr.contains(&format!(
                "warning: the value is {} bytes: if a bundle seals this secret",
                value.len()
            )),
            warned,
            "{stderr}"
        );
    }
    let log = gtc.stop();
    assert_eq!(
        log.matches("sealed.verify-hmac-sha256 over the per-request limit")
            .count(),
        1,
        "{log}"
    );
}

/// Each bundle's signature checks are bounded by its own rate: past it a check is
/// an error the guest handles (`unavailable`), counted per bundle; a neighbour's
/// checks go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_checks_are_rate_limited_per_bundle_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/_/probe/token", TOKEN);
    dev_put(&store, "acme/_/neighbour/token", TOKEN);
    let probe = write_bundle(
        dir.path(),
        "probe",
        "sealed-probe",
        &["/s"],
        "[[secrets.sealed]]\nname = \"probe/token\"",
    );
    let neighbour = write_bundle(
        dir.path(),
        "neighbour",
        "sealed-probe",
        &["/n"],
        "[[secrets.sealed]]\nname = \"neighbour/token\"",
    );
    // 30 checks at once, then (practically) none: the test cannot race a refill.
    let mut env = env_for(&store);
    env.push(("GREENTIC_BUNDLE_VERIFY_RATE", "0.001".to_string()));
    env.push(("GREENTIC_BUNDLE_VERIFY_BURST", "30".to_string()));
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}", probe.display()),
            format!("--bundle={}", neighbour.display()),
        ],
        &env,
    );
    let mac = sign(TOKEN, b"message")["sha256=".len()..].to_string();
    let verify = |route: &str, name: &str, mac: &str, times: u32| {
        client()
            .post(gtc.url(&format!("{route}/verify")))
            .header("x-name", name)
            .header("x-mac", mac)
            .header("x-repeat", times.to_string())
            .body("message")
            .send()
    };
    let answer = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 200);
        response.json::<serde_json::Value>().await.unwrap()
    };
    let first = answer(verify("/s", "probe/token", &mac, 20).await.unwrap()).await;
    assert_eq!(
        (first["valid"].clone(), first["calls"].clone()),
        (true.into(), 20.into()),
        "{first}"
    );
    // 10 more fit the burst; the 11th is refused, and the guest reads why.
    let second = answer(verify("/s", "probe/token", &mac, 20).await.unwrap()).await;
    assert_eq!(second["error"], "unavailable", "{second}");
    assert_eq!(second["calls"], 11, "{second}");
    // The neighbour's bucket is its own.
    let theirs = answer(verify("/n", "neighbour/token", &mac, 20).await.unwrap()).await;
    assert_eq!(theirs["valid"], true, "{theirs}");
    let wrong = "00".repeat(32);
    let theirs = answer(verify("/n", "neighbour/token", &wrong, 1).await.unwrap()).await;
    assert_eq!(theirs["valid"], false, "{theirs}");
    let metrics = gtc.metrics().await;
    for line in [
        "gtc_sealed_verify_total{bundle=\"probe\",outcome=\"valid\"} 30",
        "gtc_sealed_verify_total{bundle=\"probe\",outcome=\"invalid\"} 0",
        "gtc_sealed_verify_total{bundle=\"probe\",outcome=\"limited\"} 1",
        "gtc_sealed_verify_total{bundle=\"neighbour\",outcome=\"valid\"} 20",
        "gtc_sealed_verify_total{bundle=\"neighbour\",outcome=\"invalid\"} 1",
        "gtc_sealed_verify_total{bundle=\"neighbour\",outcome=\"limited\"} 0",
    ] {
        assert!(metrics.contains(line), "no `{line}` in:\n{metrics}");
    }
    let log = gtc.stop();
    let limited: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("exceeded its budget of sealed.verify-hmac-sha256 checks"))
        .collect();
    assert_eq!(limited.len(), 1, "{log}");
    assert!(limited[0].contains("probe"), "{}", limited[0]);
}

/// Issue 22, item 3: a sealed injection is a disclosure, and one whose audit
/// record cannot be queued is not sent (the guest hears
/// `destination-unavailable`, the upstream sees nothing). The audit writer is
/// held with the test hook `GTC_TEST_AUDIT_HOLD`; `--audit-queue=4` leaves one
/// place for a disclosure.
#[tokio::test]
async fn a_sealed_injection_that_cannot_be_audited_is_not_sent() {
    use support::upstream::{Answer, Upstream};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    dev_put(&store, "acme/_/probe/token", TOKEN);
    let upstream = Upstream::plain(Answer::Echo);
    let h = upstream.addr.to_string();
    let bundle = write_bundle(
        dir.path(),
        "probe",
        "sealed-probe",
        &["/s"],
        &format!(
            "[[secrets.sealed]]\nname = \"probe/token\"\nto = [\"{h}\"]\n\
             inject = \"path:/bot{{}}/\"\n[egress]\nallow = [\"{h}\"]"
        ),
    );
    let hold = dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let mut env = env_for(&store);
    env.push(("GTC_TEST_AUDIT_HOLD", hold.display().to_string()));
    let gtc = Gtc::serve(
        &[
            format!("--bundle={}", bundle.display()),
            "--egress-allow-loopback".into(),
            format!("--sealed-allow-http={h}"),
            "--audit-queue=4".into(),
        ],
        &env,
    );
    let path = "/bot{{secret:probe/token}}/x";
    // The first injection takes the one place; its record waits for the writer.
    assert_eq!(send(&gtc, "http", &h, path, &[], "").await["status"], 200);
    let refused = send(&gtc, "http", &h, path, &[], "").await;
    assert_eq!(refused["sent"], false, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("DestinationUnavailable")),
        "{refused}"
    );
    assert_eq!(
        upstream.requests().len(),
        1,
        "an unaudited injection was sent"
    );
    let metrics = gtc.metrics().await;
    for (line, value) in [
        ("gtc_audit_disclosures_refused_total{bundle=\"probe\"}", 1.0),
        (
            "gtc_sealed_refusals_total{bundle=\"probe\",stage=\"request\"}",
            1.0,
        ),
        ("gtc_sealed_injections_total{bundle=\"probe\"}", 1.0),
    ] {
        assert_eq!(metric(&metrics, line), value, "{line}: {metrics}");
    }
    // The writer catches up: injections are audited and sent again.
    std::fs::remove_file(&hold).unwrap();
    metric_until(
        &gtc,
        "gtc_audit_records_written_total{bundle=\"probe\"}",
        |n| n >= 1.0,
    )
    .await;
    assert_eq!(send(&gtc, "http", &h, path, &[], "").await["status"], 200);
    assert_eq!(upstream.requests().len(), 2);
    let log = gtc.stop();
    let injected = log
        .lines()
        .filter(|l| {
            l.contains("gtc::audit")
                && l.contains("sealed.inject")
                && l.contains("outcome=\"injected\"")
        })
        .count();
    assert_eq!(injected, 2, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("disclosures refused") && l.contains("refused=1")),
        "{log}"
    );
}
