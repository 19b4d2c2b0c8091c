//! Shared by the integration tests and the config benchmark: real `shoal` processes on
//! 127.0.0.x, a real PostgreSQL, and polling with deadlines instead of sleeps.

#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod containers;
pub mod counting;

#[allow(unused_imports)]
pub use shoal_control_plane::testsuite::{TestPostgres, database, private_database};

pub const PSK_HEX: &str = "4242424242424242424242424242424242424242424242424242424242424242";
pub const SECRETS_KEY_HEX: &str =
    "0909090909090909090909090909090909090909090909090909090909090909";
/// Control-plane settings that make tests converge quickly.
pub const FAST_CONTROL_PLANE: &str = "poll_interval = \"300ms\"\nconnect_timeout = \"2s\"\nreconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\n";
/// Probe settings that make tests detect failures quickly.
pub const FAST_PROBES: &str = "probe_interval = \"200ms\"\nprobe_timeout = \"100ms\"\n";

pub const ADMIN: &str = "ops";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

pub const SEED_POLICY: &str = r#"package formal.v2

import future.keywords.if

pre_request := { "action": "block", "type": "block_with_formal_message" } if {
  input.bucket.name == "sensitive-bucket"
  input.bucket.access_count.last_minute > 5
}
"#;

pub fn shoal_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_shoal"))
}

/// `scripts/fixtures/<name>`: the fake servers and clients the tests run.
pub fn fixture(name: &str) -> PathBuf {
    containers::repo().join("scripts/fixtures").join(name)
}

/// Polls `check` until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything one node needs: its own data dir and config file.
pub struct NodeSpec {
    pub name: String,
    pub ip: String,
    pub database_url: String,
    /// Shared with the nodes started from it: a node's data dir outlives a dropped spec.
    pub dir: Arc<tempfile::TempDir>,
    pub data_dir: PathBuf,
    /// Gossip address (TCP and UDP), on the node's own loopback IP.
    pub gossip: std::net::SocketAddr,
    /// Failure-detection lines inside `[cluster]`: fast probes by default, so tests converge
    /// quickly; empty for the shipped defaults.
    pub probes: String,
    /// Extra lines inside `[cluster]`.
    pub cluster_toml: String,
    /// The lines of `[control_plane]`: short poll and backoff by default, so tests converge
    /// quickly; a benchmark of many nodes wants the shipped poll and a small pool.
    pub control_plane_toml: String,
    /// Extra sections after the generated ones (e.g. `[discovery]`).
    pub extra_toml: String,
    /// The PSK comes from `cluster.psk_file` in `cluster_toml` instead of the environment.
    pub psk_from_file: bool,
    /// Network namespace the node runs in (see [`TestNetwork`]).
    pub netns: Option<String>,
    /// More environment variables for the node (its environment is otherwise cleared).
    pub env: Vec<(String, String)>,
    /// The `shoal` executable (another build's, for a baseline in a benchmark).
    pub binary: PathBuf,
}

/// A port free for both TCP and UDP on `ip` right now.
pub fn free_gossip_addr(ip: &str) -> std::net::SocketAddr {
    loop {
        let tcp = std::net::TcpListener::bind(format!("{ip}:0")).expect("bind tcp");
        let addr = tcp.local_addr().unwrap();
        if std::net::UdpSocket::bind(addr).is_ok() {
            return addr;
        }
    }
}

impl NodeSpec {
    pub fn new(name: &str, ip: &str, database_url: &str) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("node dir"));
        Self {
            name: name.to_string(),
            ip: ip.to_string(),
            database_url: database_url.to_string(),
            data_dir: dir.path().join("data"),
            dir,
            gossip: free_gossip_addr(ip),
            probes: FAST_PROBES.to_string(),
            cluster_toml: String::new(),
            control_plane_toml: FAST_CONTROL_PLANE.to_string(),
            extra_toml: String::new(),
            psk_from_file: false,
            netns: None,
            env: Vec::new(),
            binary: shoal_bin(),
        }
    }

    /// A node in its own network namespace of a [`TestNetwork`] (any port is free there).
    pub fn in_netns(name: &str, net: &TestNetwork, index: usize, database_url: &str) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("node dir"));
        Self {
            name: name.to_string(),
            ip: net.ip(index),
            database_url: database_url.to_string(),
            data_dir: dir.path().join("data"),
            dir,
            gossip: format!("{}:7946", net.cluster_ip(index)).parse().unwrap(),
            probes: FAST_PROBES.to_string(),
            cluster_toml: String::new(),
            control_plane_toml: FAST_CONTROL_PLANE.to_string(),
            extra_toml: String::new(),
            psk_from_file: false,
            netns: Some(net.namespace(index)),
            env: Vec::new(),
            binary: shoal_bin(),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("shoal.toml")
    }

    /// Writes the config file.
    pub fn write_config(&self) {
        let toml = format!(
            "node_name = \"{name}\"\ndata_dir = \"{data}\"\n\n[http]\nlisten = \"{ip}:0\"\nshutdown_grace = \"20s\"\n\n\
             [control_plane]\n{control_plane}\n\
             [cluster]\nbind = \"{gossip}\"\n{probes}{cluster}\n\
             [log]\nformat = \"json\"\nlevel = \"info,sqlx=warn\"\n{extra}",
            name = self.name,
            data = self.data_dir.display(),
            ip = self.ip,
            gossip = self.gossip,
            probes = self.probes,
            control_plane = self.control_plane_toml,
            cluster = self.cluster_toml,
            extra = self.extra_toml,
        );
        std::fs::write(self.config_path(), toml).expect("write config");
    }

    /// A `shoal` command with this node's config and secrets in the environment.
    pub fn command(&self) -> Command {
        self.write_config();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.binary);
                c
            }
            None => Command::new(&self.binary),
        };
        cmd.arg("--config")
            .arg(self.config_path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SHOAL_DATABASE_URL", &self.database_url)
            .env("SHOAL_SECRETS_KEY", SECRETS_KEY_HEX);
        if !self.psk_from_file {
            cmd.env("SHOAL_CLUSTER_PSK", PSK_HEX);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs a CLI subcommand to completion.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run shoal cli")
    }

    pub fn start(&self) -> Node {
        let mut child = self
            .command()
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shoal serve");
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
            });
        }
        Node {
            name: self.name.clone(),
            child: Some(child),
            logs,
            base: None,
            _dir: self.dir.clone(),
        }
    }
}

/// A running node process, killed on drop so a failing test leaves nothing behind.
pub struct Node {
    pub name: String,
    child: Option<Child>,
    logs: Arc<Mutex<Vec<String>>>,
    base: Option<String>,
    /// The spec's directory, removed only once the process is killed and the spec dropped.
    _dir: Arc<tempfile::TempDir>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Node {
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The lines after the first `from`: a poller over many nodes keeps a cursor and reads
    /// each line once instead of copying the whole log every time.
    pub fn logs_since(&self, from: usize) -> Vec<String> {
        self.logs
            .lock()
            .unwrap()
            .get(from..)
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    }

    /// Parsed JSON log lines (non-JSON lines are skipped).
    pub fn log_events(&self) -> Vec<Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn count_messages(&self, message: &str) -> usize {
        self.log_events()
            .iter()
            .filter(|e| e["message"].as_str().is_some_and(|m| m.contains(message)))
            .count()
    }

    pub async fn wait_for_log(&self, message: &str, timeout: Duration) -> Value {
        wait_until(
            &format!("log {message:?} on {}", self.name),
            timeout,
            || async {
                self.log_events()
                    .into_iter()
                    .find(|e| e["message"].as_str().is_some_and(|m| m.contains(message)))
            },
        )
        .await
    }

    /// Base URL of the node's HTTP server, from its "http listening" log line.
    pub async fn base_url(&mut self) -> String {
        if let Some(b) = &self.base {
            return b.clone();
        }
        let event = self
            .wait_for_log("http listening", Duration::from_secs(30))
            .await;
        let base = format!("http://{}", event["addr"].as_str().expect("addr field"));
        self.base = Some(base.clone());
        base
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut().expect("running");
        let status = wait_until("node exit", timeout, || {
            let polled = child.try_wait().expect("try_wait");
            async move { polled }
        })
        .await;
        self.child = None;
        status.code()
    }

    /// GET /ready as (status, body).
    pub async fn ready(&mut self) -> (u16, Value) {
        get_ready(self.base_url().await).await
    }

    /// Polls /ready until `accept` takes the (status, body) pair.
    pub async fn wait_ready_where(
        &mut self,
        what: &str,
        timeout: Duration,
        accept: impl Fn(u16, &Value) -> bool,
    ) -> (u16, Value) {
        let base = self.base_url().await;
        wait_until(what, timeout, || {
            let base = base.clone();
            let accept = &accept;
            async move {
                let (status, body) = get_ready(base).await;
                accept(status, &body).then_some((status, body))
            }
        })
        .await
    }

    /// Waits until the node reports `revision` (or later) in force.
    /// Waits until the node's data plane serves config `revision` (or later).
    pub async fn wait_data_plane(&mut self, revision: i64) -> Value {
        self.wait_ready_where(
            "data plane on the revision",
            Duration::from_secs(60),
            |_, r| r["data_plane"]["revision"].as_i64() >= Some(revision),
        )
        .await
        .1
    }

    pub async fn wait_revision(&mut self, revision: i64, timeout: Duration) -> Value {
        let base = self.base_url().await;
        let name = self.name.clone();
        wait_until(&format!("revision {revision} on {name}"), timeout, || {
            let url = format!("{base}/ready");
            async move {
                let body: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
                (body["config"]["revision"].as_i64()? >= revision).then_some(body)
            }
        })
        .await
    }
}

/// GET {base}/ready as (status, body); a refused connection is status 0.
pub async fn get_ready(base: String) -> (u16, Value) {
    match reqwest::get(format!("{base}/ready")).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// An authenticated admin API client.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    client: reqwest::Client,
}

impl Api {
    pub async fn login(base: &str) -> Api {
        let client = reqwest::Client::new();
        let resp = client
            .post(format!("{base}/api/v1/login"))
            .json(&serde_json::json!({ "username": ADMIN, "password": ADMIN_PASSWORD }))
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status().as_u16(), 200, "login failed");
        let body: Value = resp.json().await.unwrap();
        Api {
            base: base.to_string(),
            token: body["token"].as_str().unwrap().to_string(),
            client,
        }
    }

    /// The same session on another node: sessions live in PostgreSQL, so one login serves
    /// every node (a hundred logins as one admin would meet the login throttle).
    pub fn at(&self, base: &str) -> Api {
        Api {
            base: base.to_string(),
            ..self.clone()
        }
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("api request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    /// Creates user `name` with an API key; returns the key.
    pub async fn user_with_api_key(&self, name: &str) -> String {
        let (code, body) = self
            .put(&format!("/api/v1/users/{name}"), serde_json::json!({}))
            .await;
        assert_eq!(code, 200, "{body}");
        let (code, key) = self
            .post(
                &format!("/api/v1/users/{name}/credentials"),
                serde_json::json!({"kind": "api_key"}),
            )
            .await;
        assert_eq!(code, 201, "{key}");
        key["secret"].as_str().unwrap().to_string()
    }

    /// Stores the seed policy, unchanged, in strict mode; returns the config revision.
    pub async fn put_seed_policy_strict(&self) -> i64 {
        let (code, body) = self
            .put(
                "/api/v1/policies/seed",
                serde_json::json!({"rego": SEED_POLICY, "enforcement": "strict"}),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        body["revision"].as_i64().unwrap()
    }

    /// Stores an HTTP resource served on `port`; returns the config revision.
    pub async fn http_resource(&self, name: &str, upstream: &str, port: u16) -> i64 {
        let (code, body) = self
            .put(
                &format!("/api/v1/resources/{name}"),
                serde_json::json!({"kind": "http", "upstream": upstream, "port": port}),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        body["revision"].as_i64().unwrap()
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::DELETE, path, None).await
    }

    /// Names of the policies the node has in force.
    pub async fn policies_in_force(&self) -> Vec<String> {
        let (_, body) = self.get("/api/v1/config").await;
        body["policies"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Creates the test admin through the CLI (which also migrates the database).
pub fn create_admin(spec: &NodeSpec) {
    let dir = spec.dir.path().join("admin-password");
    std::fs::write(&dir, ADMIN_PASSWORD).unwrap();
    let out = spec.cli(&[
        "admin",
        "create",
        "--username",
        ADMIN,
        "--password-file",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "admin create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs SQL against the test database.
pub async fn sql(url: &str, statement: &str) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("SQL failed: {e}\n{statement}"));
}

pub async fn head_revision(url: &str) -> i64 {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar("SELECT revision FROM config_head")
        .fetch_one(&mut conn)
        .await
        .expect("head revision")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A TCP forwarder between a node and PostgreSQL that a test can cut and restore: a real
/// network partition of the control plane, while the test itself still reaches the database.
pub struct Partition {
    pub addr: std::net::SocketAddr,
    open: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Partition {
    pub async fn new(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn({
            let open = open.clone();
            async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if !open.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let mut cuts = cuts.clone();
                    cuts.mark_unchanged();
                    tokio::spawn(async move {
                        let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cuts.changed() => {}
                        }
                    });
                }
            }
        });
        Self {
            addr,
            open,
            cut,
            task,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// `url` with its host and port replaced by this forwarder's.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme_user, rest) = url.split_once('@').expect("url with user");
        let path = &rest[rest.find('/').expect("url with database")..];
        format!("{scheme_user}@{}{path}", self.addr)
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn pg_addr(url: &str) -> std::net::SocketAddr {
    let rest = url.split_once('@').unwrap().1;
    rest[..rest.find('/').unwrap()].parse().unwrap()
}

/// GET /cluster/status of a node.
pub async fn cluster_status(base: String) -> Option<Value> {
    reqwest::get(format!("{base}/cluster/status"))
        .await
        .ok()?
        .json()
        .await
        .ok()
}

pub struct Started {
    pub specs: Vec<NodeSpec>,
    pub nodes: Vec<Node>,
    pub bases: Vec<String>,
}

/// Starts one node per IP, all on one database, each configured by `configure`.
pub async fn start_nodes(
    db_url: &str,
    ips: &[&str],
    configure: impl Fn(usize, &mut NodeSpec, &[std::net::SocketAddr]),
) -> Started {
    let mut specs: Vec<NodeSpec> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| NodeSpec::new(&format!("n{i}"), ip, db_url))
        .collect();
    let gossip: Vec<std::net::SocketAddr> = specs.iter().map(|s| s.gossip).collect();
    for (i, spec) in specs.iter_mut().enumerate() {
        configure(i, spec, &gossip);
    }
    create_admin(&specs[0]);
    let mut nodes: Vec<Node> = specs.iter().map(NodeSpec::start).collect();
    let mut bases = Vec::new();
    for node in &mut nodes {
        bases.push(node.base_url().await);
    }
    Started {
        specs,
        nodes,
        bases,
    }
}

pub fn static_peers(peers: &[std::net::SocketAddr]) -> String {
    let list: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "\n[discovery]\nmethod = \"static\"\npeers = [{}]\ninterval = \"1s\"\n",
        list.join(", ")
    )
}

/// Runs the calling test again inside a new network and mount namespace (its own loopback,
/// routes and `/run/netns`), so everything [`TestNetwork`] creates vanishes with it, even if
/// the test is killed. `test_name` is the test's full name (`module::name`). Returns true when
/// already inside; outside, waits for the inner run and fails if it failed.
pub fn in_private_namespaces(test_name: &str) -> bool {
    if std::env::var_os("SHOAL_IN_NETNS").is_some() {
        std::fs::create_dir_all("/run/netns").expect("mkdir /run/netns");
        run_ip(&["link", "set", "lo", "up"]);
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "shoal-test-netns", "/run/netns"])
            .status()
            .expect("run mount");
        assert!(mounted.success(), "mount a private /run/netns");
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    // A name that matches no test would make the inner run pass without testing anything.
    let listed = Command::new(&exe)
        .args(["--list", "--exact", test_name])
        .output()
        .expect("list the test binary's tests");
    let matching = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| l.ends_with(": test"))
        .count();
    assert_eq!(
        matching, 1,
        "{test_name:?} must be a test's full name (module::name)"
    );
    let status = Command::new("unshare")
        .args(["--net", "--mount", "--"])
        .arg(exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads", "1"])
        .env("SHOAL_IN_NETNS", "1")
        // The suite's PostgreSQL is on the host's loopback; inside, a private one starts.
        .env_remove("SHOAL_TEST_PG_URL")
        .status()
        .expect("run unshare (needs root or CAP_SYS_ADMIN)");
    assert!(status.success(), "{test_name} inside its namespaces failed");
    false
}

/// A benchmark's own namespaces: re-executes the benchmark under `unshare` with its
/// arguments. True inside; outside, waits for the inner run and fails if it failed.
pub fn in_private_namespaces_bench() -> bool {
    if std::env::var_os("SHOAL_IN_NETNS").is_some() {
        return in_private_namespaces("bench");
    }
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args(["--net", "--mount", "--"])
        .arg(exe)
        .args(std::env::args().skip(1))
        .env("SHOAL_IN_NETNS", "1")
        .env_remove("SHOAL_TEST_PG_URL")
        .status()
        .expect("run unshare (needs root or CAP_SYS_ADMIN)");
    assert!(status.success(), "the benchmark failed");
    false
}

/// Bytes sent on this namespace's loopback (`/proc/self/net/dev` is per namespace; `/sys`
/// would still show the host's).
pub fn lo_tx_bytes() -> u64 {
    let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap();
    let line = dev
        .lines()
        .find(|l| l.trim_start().starts_with("lo:"))
        .expect("lo in /proc/self/net/dev");
    let fields: Vec<&str> = line.split(':').nth(1).unwrap().split_whitespace().collect();
    fields[8].parse().unwrap()
}

pub fn run_ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Nodes in network namespaces of their own. Each has a cluster interface on one bridge
/// (10.77.0.0/24, gossip) and a management link to the test (10.78.i.0/24: HTTP API), so a
/// node can be cut off the cluster network while the test still reads its API. Cutting is a
/// bridge port going down: packets vanish silently, as in a real partition (neighbour entries
/// are permanent, so senders see no error either).
pub struct TestNetwork {
    nodes: usize,
}

impl TestNetwork {
    pub fn new(nodes: usize) -> Self {
        run_ip(&["link", "add", "shoalbr", "type", "bridge"]);
        run_ip(&["addr", "add", "10.77.0.1/24", "dev", "shoalbr"]);
        run_ip(&["link", "set", "shoalbr", "up"]);
        let net = Self { nodes };
        let mut macs = Vec::new();
        for i in 0..nodes {
            let ns = net.namespace(i);
            let (port, cluster) = (format!("sv{i}"), format!("sc{i}"));
            let (mgmt_host, mgmt) = (format!("mv{i}"), format!("mc{i}"));
            run_ip(&["netns", "add", &ns]);
            run_ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", &cluster,
            ]);
            run_ip(&["link", "set", &cluster, "netns", &ns]);
            run_ip(&["link", "set", &port, "master", "shoalbr", "up"]);
            run_ip(&[
                "link", "add", &mgmt_host, "type", "veth", "peer", "name", &mgmt,
            ]);
            run_ip(&["link", "set", &mgmt, "netns", &ns]);
            run_ip(&["addr", "add", &format!("10.78.{i}.1/24"), "dev", &mgmt_host]);
            run_ip(&["link", "set", &mgmt_host, "up"]);
            let cidr = format!("{}/24", net.cluster_ip(i));
            let mgmt_cidr = format!("{}/24", net.ip(i));
            for args in [
                vec!["addr", "add", cidr.as_str(), "dev", cluster.as_str()],
                vec!["link", "set", cluster.as_str(), "up"],
                vec!["addr", "add", mgmt_cidr.as_str(), "dev", mgmt.as_str()],
                vec!["link", "set", mgmt.as_str(), "up"],
                vec!["link", "set", "lo", "up"],
            ] {
                net.ip_in(i, &args);
            }
            let mac = Command::new("ip")
                .args(["netns", "exec", &ns, "cat"])
                .arg(format!("/sys/class/net/{cluster}/address"))
                .output()
                .expect("read mac");
            macs.push(String::from_utf8_lossy(&mac.stdout).trim().to_string());
        }
        for i in 0..nodes {
            for (j, mac) in macs.iter().enumerate().filter(|(j, _)| *j != i) {
                let (ip, dev) = (net.cluster_ip(j), format!("sc{i}"));
                net.ip_in(
                    i,
                    &[
                        "neigh",
                        "replace",
                        &ip,
                        "lladdr",
                        mac,
                        "dev",
                        &dev,
                        "nud",
                        "permanent",
                    ],
                );
            }
        }
        net
    }

    fn ip_in(&self, index: usize, args: &[&str]) {
        let ns = self.namespace(index);
        let mut full = vec!["netns", "exec", ns.as_str(), "ip"];
        full.extend(args);
        run_ip(&full);
    }

    pub fn namespace(&self, index: usize) -> String {
        format!("shoal-node-{index}")
    }

    /// The node's management address (HTTP), reachable from the test.
    pub fn ip(&self, index: usize) -> String {
        format!("10.78.{index}.2")
    }

    /// The node's cluster address (gossip).
    pub fn cluster_ip(&self, index: usize) -> String {
        format!("10.77.0.{}", 10 + index)
    }

    /// Cuts node `index` off the cluster network: nothing in, nothing out.
    pub fn isolate(&self, index: usize) {
        run_ip(&["link", "set", &format!("sv{index}"), "down"]);
    }

    pub fn reconnect(&self, index: usize) {
        run_ip(&["link", "set", &format!("sv{index}"), "up"]);
    }

    pub fn len(&self) -> usize {
        self.nodes
    }
}

/// A static-peers cluster on `ips`, every node ready, with an admin API client per node.
/// Each node's data plane listens on the node's own address.
pub async fn start_ready_cluster(db_url: &str, ips: &[&str]) -> (Started, Vec<Api>) {
    let mut c = start_nodes(db_url, ips, |_, spec, all| {
        spec.extra_toml = format!(
            "{}\n[proxy]\naddress = \"{}\"\n",
            static_peers(all),
            spec.ip
        );
    })
    .await;
    let mut apis = Vec::new();
    for (node, base) in c.nodes.iter_mut().zip(&c.bases) {
        node.wait_ready_where("ready", Duration::from_secs(60), |s, _| s == 200)
            .await;
        apis.push(Api::login(base).await);
    }
    (c, apis)
}

/// One node per namespace of `net`, static peers, every node ready, an API client per node.
pub async fn start_netns_cluster(net: &TestNetwork, db_url: &str) -> (Vec<Node>, Vec<Api>) {
    start_netns_cluster_with(net, db_url, FAST_PROBES).await
}

/// [`start_netns_cluster`] with other failure-detection settings (`probes`, `[cluster]` lines).
pub async fn start_netns_cluster_with(
    net: &TestNetwork,
    db_url: &str,
    probes: &str,
) -> (Vec<Node>, Vec<Api>) {
    let mut specs: Vec<NodeSpec> = (0..net.len())
        .map(|i| NodeSpec::in_netns(&format!("ns{i}"), net, i, db_url))
        .collect();
    for spec in &mut specs {
        spec.probes = probes.to_string();
    }
    let gossip: Vec<std::net::SocketAddr> = specs.iter().map(|s| s.gossip).collect();
    for spec in &mut specs {
        // Resource ports on the management address, where the test can reach them.
        spec.extra_toml = format!(
            "{}\n[proxy]\naddress = \"{}\"\n",
            static_peers(&gossip),
            spec.ip
        );
    }
    create_admin(&specs[0]);
    let mut nodes: Vec<Node> = specs.iter().map(NodeSpec::start).collect();
    let mut apis = Vec::new();
    for node in &mut nodes {
        let base = node.base_url().await;
        node.wait_ready_where("ready", Duration::from_secs(60), |s, _| s == 200)
            .await;
        apis.push(Api::login(&base).await);
    }
    (nodes, apis)
}

/// `--name N` from the command line (benchmarks).
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
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

/// The Python that has boto3, awscli and moto: `SHOAL_TEST_PYTHON`, or the `.venv` that
/// `scripts/test` makes at the repository root. Missing is a failure, not a skip.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with boto3/moto: run scripts/test (it makes .venv) or set SHOAL_TEST_PYTHON"
    );
    venv
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

/// moto's server on loopback as a signature-checking S3 upstream, stopped on drop.
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
}

impl Moto {
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

/// One node serving the data plane on `ip` (`proxy_toml`: more `[proxy]` lines), ready, with
/// an admin API client and its HTTP base URL.
pub async fn start_proxy_node(db_url: &str, ip: &str, proxy_toml: &str) -> (Node, Api, String) {
    let c = start_nodes(db_url, &[ip], |_, spec, _| {
        spec.extra_toml = format!("[proxy]\naddress = \"{ip}\"\n{proxy_toml}");
    })
    .await;
    let mut node = c.nodes.into_iter().next().unwrap();
    node.wait_ready_where("ready", Duration::from_secs(30), |s, _| s == 200)
        .await;
    let base = c.bases[0].clone();
    let api = Api::login(&base).await;
    (node, api, base)
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
    fn drop(&mut self) {
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

/// A process's resident memory in KiB; 0 once it is gone (an nginx worker may exit).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
