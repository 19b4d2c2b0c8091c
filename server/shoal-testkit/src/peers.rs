//! The real third-party peers the tests run: an upstream, moto's S3, s3rver, boto3 and awscli,
//! etcd, rotel, nginx, and the fake servers in `scripts/fixtures`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{containers, path_str, wait_until};

/// `scripts/fixtures/<name>`: the fake servers and clients the tests run.
pub fn fixture(name: &str) -> PathBuf {
    containers::repo().join("scripts/fixtures").join(name)
}

/// An upstream HTTP server on 127.0.0.1 answering `ok` to everything.
pub async fn ok_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(|| async { "ok" })).await
    });
    addr
}

/// A port free on `ip` right now.
pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts TCP connections at `addr` (`ip:port`).
pub async fn wait_listening(addr: &str, timeout: Duration) {
    wait_until(&format!("{addr} listening"), timeout, || async {
        tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
    })
    .await;
}

/// The Python that has boto3, awscli and moto: `SHOAL_TEST_PYTHON`, or the `.venv` that
/// `scripts/test` and `scripts/bench` make at the repository root. Missing is a failure, not a
/// skip.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with boto3/moto: run scripts/test or scripts/bench (they make .venv) or set SHOAL_TEST_PYTHON"
    );
    venv
}

/// Runs the steps through `s3_client.py run` (real boto3 clients); the outcome of each step
/// by name.
pub async fn run_steps(spec: Value) -> std::collections::HashMap<String, Value> {
    let out = tokio::task::spawn_blocking(move || s3_client(&["run", &spec.to_string()]))
        .await
        .unwrap();
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (v["step"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// Runs `scripts/fixtures/s3_client.py` with `args`; its standard output, or a panic with its
/// errors.
pub fn s3_client(args: &[&str]) -> String {
    let script = fixture("s3_client.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("run s3_client.py");
    assert!(
        out.status.success(),
        "s3_client.py {:?} failed:\n{}",
        args.first(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An S3 resource's spec served on `port` in front of `endpoint`, re-signing with
/// `upstream_keys` (`access_key_id`, `secret_access_key`).
pub fn s3_resource_spec(endpoint: &str, upstream_keys: &Value, port: u16) -> Value {
    serde_json::json!({
        "kind": "s3",
        "endpoint": endpoint,
        "port": port,
        "upstream_credentials": {
            "access_key_id": upstream_keys["access_key_id"],
            "secret_access_key": upstream_keys["secret_access_key"],
        },
    })
}

/// moto's server on loopback as a signature-checking S3 upstream, stopped on drop.
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
}

impl Moto {
    /// An S3 resource's spec served on `port` in front of this moto, re-signing with its IAM
    /// user's key pair (`upstream_keys`, as [`Moto::start`] gave them).
    pub fn resource_spec(&self, upstream_keys: &Value, port: u16) -> Value {
        s3_resource_spec(&self.endpoint, upstream_keys, port)
    }

    /// Starts moto and lets `s3_client.py upstream` create the IAM user (moto enforces SigV4
    /// once its three unauthenticated calls are used) and the test buckets. Returns the
    /// upstream key pair too.
    pub async fn start() -> (Moto, Value) {
        Self::start_with(true).await
    }

    /// Starts moto (`scripts/fixtures/moto_server.py`: moto with its ECS answers in the API's
    /// types) checking signatures (`enforce`), or not at all: its own check fails on chunk-signed
    /// bodies even from AWS's SDKs, so tests of those use an open moto.
    pub async fn start_with(enforce: bool) -> (Moto, Value) {
        let allowance = if enforce { "3" } else { "1000000" };
        let port = free_port("127.0.0.1");
        let server = fixture("moto_server.py");
        let child = Command::new(python())
            .arg(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", allowance)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        wait_until("moto answers", Duration::from_secs(60), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        let endpoint = moto.endpoint.clone();
        let keys = tokio::task::spawn_blocking(move || s3_client(&["upstream", &endpoint]))
            .await
            .unwrap();
        (moto, serde_json::from_str(&keys).unwrap())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// s3rver (npm) on 127.0.0.1 with one bucket, its objects in a directory of its own: an S3
/// backend that streams bodies to and from files, for throughput, where moto (Python, bodies
/// in memory) would be the bottleneck. It does not check signatures; requests to it are
/// signed all the same. Stopped, and its files removed, on drop.
pub struct S3rver {
    pub child: Child,
    pub endpoint: String,
    /// Where its objects live.
    pub dir: tempfile::TempDir,
}

impl S3rver {
    /// s3rver's one built-in key pair.
    pub const ACCESS_KEY_ID: &str = "S3RVER";
    pub const SECRET_ACCESS_KEY: &str = "S3RVER";

    /// Starts `S3RVER` (the executable scripts/bench installs), else `s3rver` on `PATH`, with
    /// `bucket` made, its data in a new directory under `parent`; returns once it answers.
    pub async fn start(parent: &Path, bucket: &str) -> Self {
        let dir = tempfile::tempdir_in(parent).unwrap();
        let port = free_port("127.0.0.1");
        let child = Command::new(std::env::var_os("S3RVER").unwrap_or("s3rver".into()))
            .arg("-d")
            .arg(dir.path())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--silent"])
            .args(["--configure-bucket", bucket])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("s3rver (npm s3rver; scripts/bench installs it and sets S3RVER)");
        let s3rver = S3rver {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            dir,
        };
        wait_listening(&format!("127.0.0.1:{port}"), Duration::from_secs(60)).await;
        s3rver
    }

    /// An S3 resource's spec served on `port` in front of this s3rver, re-signing with its key.
    pub fn resource_spec(&self, port: u16) -> Value {
        let keys = serde_json::json!({
            "access_key_id": Self::ACCESS_KEY_ID,
            "secret_access_key": Self::SECRET_ACCESS_KEY,
        });
        s3_resource_spec(&self.endpoint, &keys, port)
    }
}

impl Drop for S3rver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A helper process that prints `listening on HOST:PORT` as its first line (the fake
/// Kubernetes apiserver, the Consul agent fixture), killed when dropped.
pub struct ListeningProcess {
    child: Child,
    /// `http://HOST:PORT`.
    pub url: String,
}

impl ListeningProcess {
    /// Runs `scripts/fixtures/<script>` with the test Python and `args`.
    pub fn python_script(script: &str, args: &[&str]) -> Self {
        let path = fixture(script);
        let mut child = Command::new(python())
            .arg(path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {script}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{script}: unexpected first line {line:?}"))
            .to_string();
        Self {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for ListeningProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real etcd (Debian's etcd-server) on loopback with its own data directory, stopped and
/// removed on drop.
pub struct Etcd {
    child: Child,
    _dir: tempfile::TempDir,
    pub url: String,
}

impl Etcd {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let client = free_port("127.0.0.1");
        let peer = free_port("127.0.0.1");
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(std::env::var("ETCD").unwrap_or("etcd".into()))
            .args([
                "--name",
                "test",
                "--data-dir",
                path_str(&dir.path().join("data")),
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &format!("test={peer_url}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian's etcd-server; scripts/test installs it)");
        let etcd = Etcd {
            child,
            _dir: dir,
            url,
        };
        let http = reqwest::Client::new();
        wait_until("etcd to answer", Duration::from_secs(30), || async {
            let resp = http
                .post(format!("{}/v3/kv/range", etcd.url))
                .json(&serde_json::json!({"key": "AA=="}))
                .send()
                .await
                .ok()?;
            resp.status().is_success().then_some(())
        })
        .await;
        etcd
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// rotel's OTLP receiver (PyPI `rotel`, the `rotel-agent` binary), printing what it receives.
pub struct Rotel {
    child: std::process::Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
    pub endpoint: String,
    pub grpc_endpoint: String,
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rotel {
    pub fn start(debug: bool) -> Self {
        let agent = std::env::var_os("ROTEL_AGENT").map_or_else(
            || {
                let out = Command::new(python())
                    .args([
                        "-c",
                        "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
                    ])
                    .output()
                    .expect("find rotel-agent");
                std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
            },
            std::path::PathBuf::from,
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("rotel.log");
        let port = free_port("127.0.0.1");
        let grpc = free_port("127.0.0.1");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(agent)
            .args([
                "start",
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{port}"),
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc}"),
                "--exporter",
                "blackhole",
            ])
            .args(if debug {
                &[
                    "--debug-log",
                    "metrics",
                    "--debug-log",
                    "traces",
                    "--debug-log-verbosity",
                    "detailed",
                ][..]
            } else {
                &[][..]
            })
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start rotel-agent (PyPI rotel; scripts/test installs it)");
        Rotel {
            child,
            log,
            _dir: dir,
            endpoint: format!("http://127.0.0.1:{port}"),
            grpc_endpoint: format!("http://127.0.0.1:{grpc}"),
        }
    }

    pub async fn wait_listening(&self) {
        for endpoint in [&self.endpoint, &self.grpc_endpoint] {
            wait_until("rotel to listen", Duration::from_secs(30), || async {
                let port: u16 = endpoint.rsplit(':').next()?.parse().ok()?;
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            })
            .await;
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// nginx from Debian and its prefix directory, both gone on drop.
pub struct Nginx {
    pub child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    /// Asks the master to stop, which stops its workers and waits for them: killed outright,
    /// the master left its two workers running (orphans, 40 of them after a day's benchmarks).
    fn drop(&mut self) {
        let asked = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while asked && std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx on 127.0.0.1 proxying to `upstreams` with upstream keep-alive, no access log;
/// `location_extra`: more directives for `location /`. Returns it and its port.
pub fn start_nginx(upstreams: &[std::net::SocketAddr], location_extra: &str) -> (Nginx, u16) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port("127.0.0.1");
    let servers: String = upstreams
        .iter()
        // Never marked down: a refused connection moves the request to the next server, and
        // with every server marked down nginx would fail requests outright.
        .map(|u| format!("server {u} max_fails=0; "))
        .collect();
    let conf = format!(
        "daemon off;\nworker_processes auto;\nworker_rlimit_nofile 16384;\npid {dir}/nginx.pid;\n\
         error_log {dir}/error.log warn;\nevents {{ worker_connections 16000; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
           fastcgi_temp_path {dir}/fcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
           upstream up {{ {servers}keepalive 64; }}\n\
           server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://up; \
           proxy_http_version 1.1; proxy_set_header Connection \"\"; {location_extra} }} }}\n}}\n",
        dir = dir.path().display()
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (scripts/test and scripts/bench install it)");
    (Nginx { child, _dir: dir }, port)
}
