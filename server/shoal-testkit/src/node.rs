//! Nodes as real `shoal` processes: the config file and environment a node starts with,
//! its logs, signals and exit code; what a process uses (memory, CPU time).

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::{
    ADMIN, ADMIN_PASSWORD, FAST_CONTROL_PLANE, FAST_PROBES, PSK_HEX, SECRETS_KEY_HEX, TestNetwork,
    get_ready, poll_data_plane, poll_ready, poll_revision, wait_until,
};

/// The `shoal` executable cargo built beside the running test or benchmark: they run from
/// `target/<profile>/deps`, the binary is `target/<profile>/shoal`.
pub fn shoal_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable's path");
    let mut dir = exe
        .parent()
        .expect("an executable's directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("shoal");
    assert!(
        bin.exists(),
        "{} not found: build the shoal package's tests or benches, which build the binary",
        bin.display()
    );
    bin
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
    /// `[[clusters]]` entries (and `[services]`) in place of `[cluster]`: a node in several
    /// clusters, whose keys come in [`NodeSpec::env`] (`SHOAL_CLUSTERS_<NAME>_PSK`).
    pub clusters_toml: Option<String>,
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
            clusters_toml: None,
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
            clusters_toml: None,
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
        let clusters = match &self.clusters_toml {
            Some(listed) => listed.clone(),
            None => format!(
                "[cluster]\nbind = \"{gossip}\"\n{probes}{cluster}\n",
                gossip = self.gossip,
                probes = self.probes,
                cluster = self.cluster_toml,
            ),
        };
        let toml = format!(
            "node_name = \"{name}\"\ndata_dir = \"{data}\"\n\n[http]\nlisten = \"{ip}:0\"\nshutdown_grace = \"20s\"\n\n\
             [control_plane]\n{control_plane}\n\
             {clusters}\
             [log]\nformat = \"json\"\nlevel = \"info,sqlx=warn\"\n{extra}",
            name = self.name,
            data = self.data_dir.display(),
            ip = self.ip,
            control_plane = self.control_plane_toml,
            extra = self.extra_toml,
        );
        std::fs::write(self.config_path(), toml).expect("write config");
    }

    /// The environment the node gets, beyond `PATH`: its database, secrets key and PSK, and
    /// [`NodeSpec::env`].
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("SHOAL_DATABASE_URL".to_string(), self.database_url.clone()),
            ("SHOAL_SECRETS_KEY".to_string(), SECRETS_KEY_HEX.to_string()),
        ];
        if !self.psk_from_file && self.clusters_toml.is_none() {
            env.push(("SHOAL_CLUSTER_PSK".to_string(), PSK_HEX.to_string()));
        }
        env.extend(self.env.iter().cloned());
        env
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
            .envs(self.environment());
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
        poll_ready(self.base_url().await, what, timeout, accept).await
    }

    /// Waits until the node's data plane serves config `revision` (or later).
    pub async fn wait_data_plane(&mut self, revision: i64) -> Value {
        poll_data_plane(self.base_url().await, revision).await
    }

    /// Waits until the node reports `revision` (or later) in force.
    pub async fn wait_revision(&mut self, revision: i64, timeout: Duration) -> Value {
        poll_revision(self.base_url().await, &self.name, revision, timeout).await
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

/// A process's resident memory in KiB; 0 once it is gone (an nginx worker may exit).
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A process's peak resident memory in KiB; 0 once it is gone.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// A `... kB` line of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces, so fields
/// are counted after its closing parenthesis): `state` is index 0.
fn stat_fields(pid: &str) -> Vec<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

/// CPU time a process has used, in clock ticks (utime + stime of `/proc/<pid>/stat`); 0
/// once it is gone.
pub fn cpu_ticks(pid: u32) -> u64 {
    let fields = stat_fields(&pid.to_string());
    fields.get(11).unwrap_or(&0) + fields.get(12).unwrap_or(&0)
}

/// CPU time of this process's children that have been waited for, in clock ticks (cutime +
/// cstime): a short-lived client's cost is the difference around its run.
pub fn waited_children_cpu_ticks() -> u64 {
    let fields = stat_fields("self");
    fields.get(13).unwrap_or(&0) + fields.get(14).unwrap_or(&0)
}

pub fn clock_ticks_per_second() -> f64 {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
