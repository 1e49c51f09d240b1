//! A real OpenBao (`bao server -dev`, from `.venv`, installed by
//! tests/install-tools.sh) on 127.0.0.1 with a file audit device, plus the
//! TokenReview stand-in (k8s_api.rs). Both stop when their handles drop.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `bao` binary installed by tests/install-tools.sh.
pub fn bao_bin() -> PathBuf {
    let bin = root().join(".venv/bin/bao");
    assert!(
        bin.exists(),
        "{} is missing: run tests/install-tools.sh (the README's test command does)",
        bin.display()
    );
    bin
}

/// A running OpenBao dev server.
pub struct Bao {
    child: Child,
    pub addr: String,
    pub audit_log: PathBuf,
    /// The CA of the server's certificate, when it serves TLS.
    pub ca_cert: Option<PathBuf>,
    dir: tempfile::TempDir,
}

pub const ROOT_TOKEN: &str = "root";

impl Bao {
    pub fn start() -> Bao {
        Self::start_with(false)
    }

    /// `tls`: serve HTTPS with a generated CA (`-dev-tls`).
    pub fn start_with(tls: bool) -> Bao {
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
        let port = super::free_port();
        let scheme = if tls { "https" } else { "http" };
        let addr = format!("{scheme}://127.0.0.1:{port}");
        let tls_dir = dir.path().join("tls");
        let mut args = vec![
            "server".to_string(),
            "-dev".to_string(),
            format!("-dev-root-token-id={ROOT_TOKEN}"),
            format!("-dev-listen-address=127.0.0.1:{port}"),
            format!("-config={}", config.display()),
        ];
        if tls {
            std::fs::create_dir_all(&tls_dir).unwrap();
            args.push("-dev-tls".into());
            args.push(format!("-dev-tls-cert-dir={}", tls_dir.display()));
        }
        let child = Command::new(bao_bin())
            .args(&args)
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
            ca_cert: tls.then(|| tls_dir.join("vault-ca.pem")),
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
        let mut command = Command::new(bao_bin());
        command
            .args(args)
            .env_clear()
            .env("HOME", self.dir.path())
            .env("VAULT_ADDR", &self.addr)
            .env("VAULT_TOKEN", ROOT_TOKEN);
        if let Some(ca) = &self.ca_cert {
            command.env("VAULT_CACERT", ca);
        }
        command.output().unwrap()
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

pub use super::k8s_api::*;

/// OpenBao + TokenReview stand-in, bootstrapped with the demo's own
/// vault-bootstrap.sh for env `dev`, tenant `acme`.
pub struct VaultWorld {
    pub bao: Bao,
    pub k8s: K8sApi,
    pub dir: tempfile::TempDir,
    /// The worker's projected token file (replaceable mid-run).
    pub sa_token: PathBuf,
    /// The Vault namespace everything lives in (`None`: the root namespace).
    pub namespace: Option<String>,
}

pub const ROLE: &str = "gtc-worker-dev-acme";
/// The worker's ServiceAccount the bootstrap binds by default (= the role's name).
pub const SERVICE_ACCOUNT: &str = "gtc-worker-dev-acme";
/// The reviewer ServiceAccount `gtc deploy render --vault-mode external` emits for
/// dev/acme (bound to `system:auth-delegator`).
pub const REVIEWER_SERVICE_ACCOUNT: &str = "gtc-vault-reviewer-dev-acme";

impl VaultWorld {
    /// Starts both servers and runs the bootstrap with the given token TTLs.
    pub fn start(token_ttl: &str, token_max_ttl: &str) -> VaultWorld {
        Self::start_with(token_ttl, token_max_ttl, false)
    }

    /// `tls`: OpenBao serves HTTPS with its own CA; every client is given VAULT_CACERT.
    pub fn start_with(token_ttl: &str, token_max_ttl: &str, tls: bool) -> VaultWorld {
        Self::start_full(token_ttl, token_max_ttl, tls, None)
    }

    /// Everything (auth, engines, policy, role, secrets) inside Vault namespace `namespace`.
    pub fn start_in_namespace(namespace: &str) -> VaultWorld {
        Self::start_full("20m", "1h", false, Some(namespace))
    }

    fn start_full(
        token_ttl: &str,
        token_max_ttl: &str,
        tls: bool,
        namespace: Option<&str>,
    ) -> VaultWorld {
        let bao = Bao::start_with(tls);
        if let Some(namespace) = namespace {
            bao.cli_ok(&["namespace", "create", namespace]);
        }
        let k8s = K8sApi::start();
        let dir = tempfile::tempdir().unwrap();
        let sa_token = dir.path().join("sa-token");
        let world = VaultWorld {
            bao,
            k8s,
            dir,
            sa_token,
            namespace: namespace.map(str::to_string),
        };
        let out = world.bootstrap(token_ttl, token_max_ttl);
        assert!(
            out.status.success(),
            "bootstrap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        world.set_sa_token(SERVICE_ACCOUNT);
        world
    }

    /// Runs examples/k8s-vault-demo/vault-bootstrap.sh with the bao CLI.
    pub fn bootstrap(&self, token_ttl: &str, token_max_ttl: &str) -> Output {
        self.run_bootstrap(&[("TOKEN_TTL", token_ttl), ("TOKEN_MAX_TTL", token_max_ttl)])
    }

    /// Runs the bootstrap for env `dev`, tenant `acme` in namespace
    /// [`WORKER_NAMESPACE`], with `vars` added or overriding (e.g. another
    /// GREENTIC_TENANT, TEAMS, WORKER_SERVICE_ACCOUNT).
    pub fn run_bootstrap(&self, vars: &[(&str, &str)]) -> Output {
        let ca = self.dir.path().join("k8s-ca.pem");
        std::fs::write(&ca, &self.k8s.ca_pem).unwrap();
        // Vault runs "outside the cluster" here: it reviews tokens with the
        // reviewer's JWT, as the rendered reviewer identity provides it.
        let reviewer = self.dir.path().join("reviewer-jwt");
        std::fs::write(
            &reviewer,
            self.k8s
                .mint_reviewer(WORKER_NAMESPACE, REVIEWER_SERVICE_ACCOUNT),
        )
        .unwrap();
        let path = format!(
            "{}:{}",
            bao_bin().parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new("bash");
        command
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
            .env("TOKEN_REVIEWER_JWT_FILE", &reviewer);
        if let Some(ca) = &self.bao.ca_cert {
            command.env("VAULT_CACERT", ca);
        }
        if let Some(namespace) = &self.namespace {
            command.env("VAULT_NAMESPACE", namespace);
        }
        for (key, value) in vars {
            command.env(key, value);
        }
        command.output().unwrap()
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
        let mut env = vec![
            ("GREENTIC_SECRETS_BACKEND", "vault".into()),
            ("GREENTIC_ENV", "dev".into()),
            ("GREENTIC_TENANT", "acme".into()),
            ("VAULT_ADDR", self.bao.addr.clone()),
            ("VAULT_K8S_ROLE", ROLE.into()),
            ("VAULT_K8S_TOKEN_PATH", self.sa_token.display().to_string()),
            // Tests start one worker at a time: no need to spread start-up load.
            ("GREENTIC_STARTUP_JITTER", "0".into()),
        ];
        if let Some(ca) = &self.bao.ca_cert {
            env.push(("VAULT_CACERT", ca.display().to_string()));
        }
        if let Some(namespace) = &self.namespace {
            env.push(("VAULT_NAMESPACE", namespace.clone()));
        }
        env
    }

    /// Environment of an operator (`gtc op secrets`) with the admin token.
    pub fn admin_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("GREENTIC_SECRETS_BACKEND", "vault".into()),
            ("GREENTIC_ENV", "dev".into()),
            ("VAULT_ADDR", self.bao.addr.clone()),
            ("VAULT_TOKEN", ROOT_TOKEN.into()),
        ];
        if let Some(ca) = &self.bao.ca_cert {
            env.push(("VAULT_CACERT", ca.display().to_string()));
        }
        if let Some(namespace) = &self.namespace {
            env.push(("VAULT_NAMESPACE", namespace.clone()));
        }
        env
    }

    /// `gtc op secrets put PATH` with `value` on stdin. The value and the data key
    /// the envelope was sealed with are registered with the leak scan.
    pub fn put(&self, path: &str, value: &[u8]) {
        super::forbid(value);
        let out = super::run_gtc(&["op", "secrets", "put", path], &self.admin_env(), value);
        assert!(
            out.status.success(),
            "put {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        super::forbid(&self.data_key_of(path));
    }

    /// The plaintext data key of the envelope stored at `path` (TENANT/TEAM/CATEGORY/NAME
    /// in env `dev`), unwrapped with the root token. Callable from sync and async
    /// tests alike: the requests run on a thread of their own.
    pub fn data_key_of(&self, path: &str) -> Vec<u8> {
        use base64::Engine as _;
        let (addr, namespace, ca) = (
            self.bao.addr.clone(),
            self.namespace.clone(),
            self.bao.ca_cert.clone(),
        );
        let kv_path = format!("secret/data/greentic/dev/{path}");
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async move {
                        let mut builder = reqwest::Client::builder().no_proxy();
                        if let Some(ca) = &ca {
                            let pem = std::fs::read(ca).unwrap();
                            builder = builder.add_root_certificate(
                                reqwest::Certificate::from_pem(&pem).unwrap(),
                            );
                        }
                        let client = builder.build().unwrap();
                        let call = |method: reqwest::Method, api: String| {
                            let mut request = client
                                .request(method, format!("{addr}/v1/{api}"))
                                .header("X-Vault-Token", ROOT_TOKEN);
                            if let Some(namespace) = &namespace {
                                request = request.header("X-Vault-Namespace", namespace);
                            }
                            request
                        };
                        let entry: Value = call(reqwest::Method::GET, kv_path.clone())
                            .send()
                            .await
                            .unwrap()
                            .json()
                            .await
                            .unwrap();
                        let data = &entry["data"]["data"];
                        let key = data["transit_key"]
                            .as_str()
                            .unwrap_or_else(|| panic!("{kv_path}: not an envelope v2: {entry}"));
                        let wrapped = data["wrapped_dek"].as_str().unwrap();
                        let opened: Value =
                            call(reqwest::Method::POST, format!("transit/decrypt/{key}"))
                                .json(&json!({ "ciphertext": wrapped }))
                                .send()
                                .await
                                .unwrap()
                                .json()
                                .await
                                .unwrap();
                        base64::engine::general_purpose::STANDARD
                            .decode(opened["data"]["plaintext"].as_str().unwrap())
                            .unwrap()
                    })
                })
                .join()
                .unwrap()
        })
    }

    /// Logs in as the worker would (for boundary tests); returns the client token.
    pub async fn worker_login(&self, jwt: &str) -> (u16, Value) {
        self.login(ROLE, jwt).await
    }

    /// Logs in to `role` with `jwt`: (status, body).
    pub async fn login(&self, role: &str, jwt: &str) -> (u16, Value) {
        self.bao
            .api(
                "POST",
                "auth/kubernetes/login",
                None,
                Some(json!({"role": role, "jwt": jwt})),
            )
            .await
    }
}
