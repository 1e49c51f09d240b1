//! A real OpenBao (`bao server -dev`, from `.venv`, installed by
//! tests/install-openbao.sh) on 127.0.0.1 with a file audit device, and a loopback
//! stand-in for the one Kubernetes API endpoint Vault's Kubernetes auth calls
//! (TokenReview), which checks the test JWT's RS256 signature (key generated at
//! test time), expiry and audience. Both stop when their handles drop.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{SignatureEncoding as _, Signer as _, Verifier as _};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `bao` binary installed by tests/install-openbao.sh.
pub fn bao_bin() -> PathBuf {
    let bin = root().join(".venv/bin/bao");
    assert!(
        bin.exists(),
        "{} is missing: run tests/install-openbao.sh (the README's test command does)",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running OpenBao dev server.
pub struct Bao {
    child: Child,
    pub addr: String,
    pub audit_log: PathBuf,
    dir: tempfile::TempDir,
}

pub const ROOT_TOKEN: &str = "root";

impl Bao {
    pub fn start() -> Bao {
        let dir = tempfile::tempdir().unwrap();
        let audit_log = dir.path().join("audit.log");
        let config = dir.path().join("config.hcl");
        std::fs::write(
            &config,
            format!(
                "audit \"file\" \"test\" {{\n  options {{\n    file_path = {:?}\n  }}\n}}\n",
                audit_log.display().to_string()
            ),
        )
        .unwrap();
        let port = free_port();
        let addr = format!("http://127.0.0.1:{port}");
        let child = Command::new(bao_bin())
            .args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={ROOT_TOKEN}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
                &format!("-config={}", config.display()),
            ])
            .env_clear()
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("server.log")).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start bao");
        let bao = Bao {
            child,
            addr,
            audit_log,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && bao.cli(&["status"]).status.success();
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "OpenBao did not come up: {}",
                bao.server_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        bao
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs the `bao` CLI against this server with the root token.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bao_bin())
            .args(args)
            .env_clear()
            .env("HOME", self.dir.path())
            .env("VAULT_ADDR", &self.addr)
            .env("VAULT_TOKEN", ROOT_TOKEN)
            .output()
            .unwrap()
    }

    /// Like [`Bao::cli`] but asserts success and returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "bao {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One HTTP call to the API; returns (status, JSON body or Null).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let client = super::client();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client.request(method, format!("{}/v1/{path}", self.addr));
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Freezes the server process (SIGSTOP): it stops answering, connections hang.
    pub fn suspend(&self) {
        signal(self.child.id(), "-STOP");
    }

    /// Resumes a suspended server (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.id(), "-CONT");
    }

    /// The audit log, one JSON object per line.
    pub fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

impl Drop for Bao {
    fn drop(&mut self) {
        signal_quietly(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal_quietly(pid: u32) {
    let _ = Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status();
}

/// The stand-in for the Kubernetes API's TokenReview endpoint.
pub struct K8sApi {
    pub addr: String,
    key: RsaPrivateKey,
    /// `jti` of every token reviewed, in order.
    pub reviewed: Arc<Mutex<Vec<String>>>,
    pub ca_pem: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub const WORKER_NAMESPACE: &str = "greentic-workers";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl K8sApi {
    pub fn start() -> K8sApi {
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let public = RsaPublicKey::from(&key);
        let reviewed = Arc::new(Mutex::new(Vec::new()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let seen = reviewed.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve_token_reviews(listener, public, seen, stop_rx));
        });
        let ca =
            rcgen::generate_simple_self_signed(vec!["kubernetes.default.svc".to_string()]).unwrap();
        K8sApi {
            addr,
            key,
            reviewed,
            ca_pem: ca.cert.pem(),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// A projected ServiceAccount token, as the kubelet would mount it.
    pub fn mint(
        &self,
        namespace: &str,
        service_account: &str,
        audience: &str,
        ttl: Duration,
    ) -> String {
        let issued = now();
        let jti = format!("jti-{}", rand::random::<u64>());
        let claims = json!({
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
            "aud": [audience],
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl.as_secs(),
            "jti": jti,
            "kubernetes.io": {
                "namespace": namespace,
                "pod": {"name": "gtc-worker-0", "uid": "pod-uid-0"},
                "serviceaccount": {"name": service_account, "uid": sa_uid(namespace, service_account)},
            },
        });
        let header =
            B64URL.encode(json!({"alg": "RS256", "typ": "JWT", "kid": "test"}).to_string());
        let payload = B64URL.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let signature = SigningKey::<Sha256>::new(self.key.clone()).sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64URL.encode(signature.to_bytes()))
    }

    pub fn reviewed(&self) -> Vec<String> {
        self.reviewed.lock().unwrap().clone()
    }
}

/// The `jti` claim of a JWT (no verification: test bookkeeping only).
pub fn jti_of(jwt: &str) -> String {
    let payload = jwt.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&B64URL.decode(payload).unwrap()).unwrap();
    claims["jti"].as_str().unwrap().to_string()
}

fn sa_uid(namespace: &str, service_account: &str) -> String {
    format!("uid-{namespace}-{service_account}")
}

impl Drop for K8sApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Verifies a JWT: RS256 signature with `key`, not expired; returns its claims.
fn verify(jwt: &str, key: &RsaPublicKey) -> Result<Value, String> {
    let mut parts = jwt.split('.');
    let (Some(header_b64), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT".into());
    };
    let header: Value =
        serde_json::from_slice(&B64URL.decode(header_b64).map_err(|_| "bad header")?)
            .map_err(|_| "bad header")?;
    if header["alg"] != "RS256" {
        return Err("unsupported alg".into());
    }
    let signature = Signature::try_from(
        B64URL
            .decode(signature)
            .map_err(|_| "bad signature")?
            .as_slice(),
    )
    .map_err(|_| "bad signature")?;
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(format!("{header_b64}.{payload}").as_bytes(), &signature)
        .map_err(|_| "signature does not verify")?;
    let claims: Value = serde_json::from_slice(&B64URL.decode(payload).map_err(|_| "bad payload")?)
        .map_err(|_| "bad payload")?;
    if claims["exp"].as_u64().is_none_or(|exp| exp <= now()) {
        return Err("token has expired".into());
    }
    Ok(claims)
}

fn review(body: &[u8], key: &RsaPublicKey, seen: &Mutex<Vec<String>>) -> Value {
    let refused = |why: &str| {
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "status": {"authenticated": false, "error": why},
        })
    };
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return refused("bad request");
    };
    let token = request["spec"]["token"].as_str().unwrap_or_default();
    let claims = match verify(token, key) {
        Ok(claims) => claims,
        Err(why) => return refused(&why),
    };
    if let Some(jti) = claims["jti"].as_str() {
        seen.lock().unwrap().push(jti.to_string());
    }
    let token_audiences: Vec<String> = claims["aud"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let wanted: Vec<String> = request["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let audiences: Vec<String> = if wanted.is_empty() {
        token_audiences.clone()
    } else {
        wanted
            .iter()
            .filter(|a| token_audiences.contains(a))
            .cloned()
            .collect()
    };
    if audiences.is_empty() {
        return refused("token audiences do not match");
    }
    let namespace = claims["kubernetes.io"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let service_account = claims["kubernetes.io"]["serviceaccount"]["name"]
        .as_str()
        .unwrap_or_default();
    json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "status": {
            "authenticated": true,
            "user": {
                "username": format!("system:serviceaccount:{namespace}:{service_account}"),
                "uid": sa_uid(namespace, service_account),
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{namespace}"), "system:authenticated"],
            },
            "audiences": audiences,
        },
    })
}

async fn serve_token_reviews(
    listener: std::net::TcpListener,
    key: RsaPublicKey,
    seen: Arc<Mutex<Vec<String>>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    use http_body_util::{BodyExt as _, Full};
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted { Ok((s, _)) => s, Err(_) => continue },
            _ = &mut stop => return,
        };
        let (key, seen) = (key.clone(), seen.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let (key, seen) = (key.clone(), seen.clone());
                    async move {
                        let path = request.uri().path().to_string();
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let (status, answer) =
                            if path == "/apis/authentication.k8s.io/v1/tokenreviews" {
                                (201, review(&body, &key, &seen))
                            } else {
                                (404, json!({"kind": "Status", "code": 404}))
                            };
                        let mut response =
                            hyper::Response::new(Full::new(bytes::Bytes::from(answer.to_string())));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        response.headers_mut().insert(
                            "content-type",
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(response)
                    }
                },
            );
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// OpenBao + TokenReview stand-in, bootstrapped with the demo's own
/// vault-bootstrap.sh for env `dev`, tenant `acme`.
pub struct VaultWorld {
    pub bao: Bao,
    pub k8s: K8sApi,
    pub dir: tempfile::TempDir,
    /// The worker's projected token file (replaceable mid-run).
    pub sa_token: PathBuf,
}

pub const ROLE: &str = "gtc-worker-dev-acme";

impl VaultWorld {
    /// Starts both servers and runs the bootstrap with the given token TTLs.
    pub fn start(token_ttl: &str, token_max_ttl: &str) -> VaultWorld {
        let bao = Bao::start();
        let k8s = K8sApi::start();
        let dir = tempfile::tempdir().unwrap();
        let sa_token = dir.path().join("sa-token");
        let world = VaultWorld {
            bao,
            k8s,
            dir,
            sa_token,
        };
        let out = world.bootstrap(token_ttl, token_max_ttl);
        assert!(
            out.status.success(),
            "bootstrap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        world.set_sa_token("gtc-worker");
        world
    }

    /// Runs examples/k8s-vault-demo/vault-bootstrap.sh with the bao CLI.
    pub fn bootstrap(&self, token_ttl: &str, token_max_ttl: &str) -> Output {
        let ca = self.dir.path().join("k8s-ca.pem");
        std::fs::write(&ca, &self.k8s.ca_pem).unwrap();
        let path = format!(
            "{}:{}",
            bao_bin().parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("bash")
            .arg(root().join("examples/k8s-vault-demo/vault-bootstrap.sh"))
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("VAULT_CLI", "bao")
            .env("VAULT_ADDR", &self.bao.addr)
            .env("VAULT_TOKEN", ROOT_TOKEN)
            .env("GREENTIC_ENV", "dev")
            .env("GREENTIC_TENANT", "acme")
            .env("WORKER_NAMESPACE", WORKER_NAMESPACE)
            .env("K8S_HOST", &self.k8s.addr)
            .env("K8S_CA_CERT_FILE", &ca)
            .env("K8S_DISABLE_LOCAL_CA_JWT", "true")
            .env("TOKEN_TTL", token_ttl)
            .env("TOKEN_MAX_TTL", token_max_ttl)
            .output()
            .unwrap()
    }

    /// Writes a fresh projected token for `service_account` into the token file
    /// (atomically, as the kubelet does); returns it.
    pub fn set_sa_token(&self, service_account: &str) -> String {
        let jwt = self.k8s.mint(
            WORKER_NAMESPACE,
            service_account,
            "vault",
            Duration::from_secs(3600),
        );
        let tmp = self.dir.path().join("sa-token.tmp");
        std::fs::write(&tmp, &jwt).unwrap();
        std::fs::rename(&tmp, &self.sa_token).unwrap();
        jwt
    }

    /// Environment of a worker (`gtc serve`) using the vault backend.
    pub fn worker_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GREENTIC_SECRETS_BACKEND", "vault".into()),
            ("GREENTIC_ENV", "dev".into()),
            ("GREENTIC_TENANT", "acme".into()),
            ("VAULT_ADDR", self.bao.addr.clone()),
            ("VAULT_K8S_ROLE", ROLE.into()),
            ("VAULT_K8S_TOKEN_PATH", self.sa_token.display().to_string()),
        ]
    }

    /// Environment of an operator (`gtc op secrets`) with the admin token.
    pub fn admin_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GREENTIC_SECRETS_BACKEND", "vault".into()),
            ("GREENTIC_ENV", "dev".into()),
            ("VAULT_ADDR", self.bao.addr.clone()),
            ("VAULT_TOKEN", ROOT_TOKEN.into()),
        ]
    }

    /// `gtc op secrets put PATH` with `value` on stdin.
    pub fn put(&self, path: &str, value: &[u8]) {
        let out = super::run_gtc(&["op", "secrets", "put", path], &self.admin_env(), value);
        assert!(
            out.status.success(),
            "put {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Logs in as the worker would (for boundary tests); returns the client token.
    pub async fn worker_login(&self, jwt: &str) -> (u16, Value) {
        self.bao
            .api(
                "POST",
                "auth/kubernetes/login",
                None,
                Some(json!({"role": ROLE, "jwt": jwt})),
            )
            .await
    }
}
