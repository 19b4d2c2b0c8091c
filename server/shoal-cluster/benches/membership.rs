//! `scripts/bench membership`: failure detection of the gossip layer with Shoal's default
//! settings, every node a separate OS process on its own 127.0.0.x address.
//!
//! For each cluster size (3 and 25), each round starts a fresh cluster, waits until every
//! node sees every other alive, SIGKILLs one node and records, on every other node, when it
//! first marked the victim suspect and dead (wall-clock milliseconds, one machine, one clock).
//! "Everywhere" is the last observer of a round. Then a busy-node run: one node shares its
//! process with CPU-burning threads while the cluster runs for a while; any suspicion of it
//! (or of anyone) is a false suspicion.
//!
//! Baseline in the same run: the same rounds with memberlist's own LAN defaults (probe every
//! 1 s, 500 ms probe timeout, 200 ms gossip, suspicion up to 6x), the reference the issue
//! compares against.
//!
//! The same binary is the node: `membership node IP PORT SEED PROFILE [busy]` runs one gossip
//! node and prints its membership events as JSON lines.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shoal_cluster::{Cluster, ClusterChange, ClusterOptions, MemberState, NodeIdentity, NodeMeta};
use shoal_config::{ClusterConfig, SecretKey};

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("node") {
        run_node(
            &args[2],
            args[3].parse().unwrap(),
            &args[4],
            &args[5],
            args.get(6).map(String::as_str),
        );
        return;
    }
    let arg = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rounds_small = arg("--rounds", 20);
    let rounds_large = arg("--rounds-large", 20);
    let busy_secs = arg("--busy-seconds", 30);

    let mut results = Vec::new();
    let runs = [
        ("shoal", 3usize, rounds_small),
        ("shoal", 25, rounds_large),
        ("memberlist", 3, rounds_small.div_ceil(2)),
        ("memberlist", 25, rounds_large.div_ceil(2)),
    ];
    for (profile, size, rounds) in runs {
        let mut suspect_everywhere = Vec::new();
        let mut dead_everywhere = Vec::new();
        let mut dead_each = Vec::new();
        for round in 0..rounds {
            let r = kill_round(size, profile);
            println!(
                "{profile} {size} nodes, round {round}: suspect everywhere {:.0} ms, dead everywhere {:.0} ms (observers: dead {:.0}-{:.0} ms)",
                r.suspect_everywhere,
                r.dead_everywhere,
                r.dead_each.iter().copied().fold(f64::INFINITY, f64::min),
                r.dead_each.iter().copied().fold(0.0, f64::max),
            );
            suspect_everywhere.push(r.suspect_everywhere);
            dead_everywhere.push(r.dead_everywhere);
            dead_each.extend(r.dead_each);
        }
        let summary = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            (
                percentile(&v, 0.5),
                percentile(&v, 0.99),
                v[0],
                v[v.len() - 1],
            )
        };
        let (s50, s99, smin, smax) = summary(&suspect_everywhere);
        let (d50, d99, dmin, dmax) = summary(&dead_everywhere);
        let (e50, e99, _, _) = summary(&dead_each);
        println!(
            "{profile} {size} nodes over {rounds} rounds: suspect everywhere p50 {s50:.0} p99 {s99:.0} (range {smin:.0}-{smax:.0}) ms; \
             dead everywhere p50 {d50:.0} p99 {d99:.0} (range {dmin:.0}-{dmax:.0}) ms; per observer dead p50 {e50:.0} p99 {e99:.0} ms"
        );
        let suffix = if profile == "shoal" {
            ""
        } else {
            "_memberlist_defaults"
        };
        results.push(format!(
            "RESULT suspect_everywhere_p50_{size}_nodes{suffix}_ms {s50:.0} ms"
        ));
        results.push(format!(
            "RESULT suspect_everywhere_p99_{size}_nodes{suffix}_ms {s99:.0} ms"
        ));
        results.push(format!(
            "RESULT dead_everywhere_p50_{size}_nodes{suffix}_ms {d50:.0} ms"
        ));
        results.push(format!(
            "RESULT dead_everywhere_p99_{size}_nodes{suffix}_ms {d99:.0} ms"
        ));
    }
    let busy = busy_round(5, Duration::from_secs(busy_secs as u64), None);
    println!("busy node (2 spinning threads): {busy} suspicion(s) in {busy_secs} s");
    results.push(format!("RESULT false_suspicions_busy {busy} count"));
    // Starved: the busy node also capped at 25% of one CPU by a cgroup, so it runs 25 ms of
    // every 100 ms (what CPU throttling does to a container). Needs a writable cgroup v1 cpu
    // controller; without one the figure is the busy one.
    let starved = busy_round(5, Duration::from_secs(busy_secs as u64), Some(25));
    if starved == usize::MAX {
        println!("no writable cgroup cpu controller: starved run skipped");
        results.push(format!("RESULT false_suspicions_cpu_starved {busy} count"));
    } else {
        println!("starved node (25% CPU quota): {starved} suspicion(s) in {busy_secs} s");
        results.push(format!(
            "RESULT false_suspicions_cpu_starved {starved} count"
        ));
    }
    for line in results {
        println!("{line}");
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One node: gossip with Shoal's defaults (or memberlist's); prints `ready`, then every
/// change as JSON.
fn run_node(ip: &str, port: u16, seed: &str, profile: &str, mode: Option<&str>) {
    if mode == Some("busy") {
        // Two spinning threads on a 2-core machine: this node is never idle.
        for _ in 0..2 {
            std::thread::spawn(|| {
                let mut x: u64 = 0;
                loop {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            });
        }
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut options = ClusterOptions::from_config(&ClusterConfig::default());
        options.bind = format!("{ip}:{port}").parse().unwrap();
        options.keys = vec![SecretKey::new([7; 32])];
        if profile == "memberlist" {
            options.probe_interval = Duration::from_secs(1);
            options.probe_timeout = Duration::from_millis(500);
            options.gossip_interval = Duration::from_millis(200);
            options.gossip_nodes = 3;
            options.suspicion_multiplier = 4;
            options.suspicion_max_timeout_multiplier = 6;
            options.retransmit_multiplier = 4;
            options.push_pull_interval = Duration::from_secs(30);
        }
        let meta = NodeMeta {
            node_name: ip.to_string(),
            version: "bench".into(),
            http: "127.0.0.1:1".into(),
            started_at_ms: 0,
            load: Default::default(),
            region: None,
        };
        let cluster = Cluster::start(options, &NodeIdentity::random(), meta)
            .await
            .unwrap();
        let mut changes = cluster.subscribe();
        if seed != "-" {
            let seed: SocketAddr = seed.parse().unwrap();
            while cluster.join(&[seed]).await.joined.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        println!(
            "{{\"ev\":\"ready\",\"id\":\"{}\",\"t\":{}}}",
            cluster.local_id(),
            now_ms()
        );
        loop {
            let change = match changes.recv().await {
                Ok(c) => c,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            let (member, state) = match &change {
                ClusterChange::Joined(m) => (m, m.state),
                ClusterChange::StateChanged { member, .. } => (member, member.state),
                _ => continue,
            };
            let state = match state {
                MemberState::Alive => "alive",
                MemberState::Suspect => "suspect",
                MemberState::Dead => "dead",
                MemberState::Left => "left",
            };
            println!(
                "{{\"ev\":\"state\",\"of\":\"{}\",\"state\":\"{state}\",\"t\":{}}}",
                member.id,
                now_ms()
            );
        }
    });
}

struct Proc {
    child: Child,
    id: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An event from one child: (child index, parsed JSON).
type Events = mpsc::Receiver<(usize, serde_json::Value)>;

fn free_port(ip: &str) -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(format!("{ip}:{port}")).is_ok() {
            return port;
        }
    }
}

/// Starts `size` nodes (index `busy` spinning CPU, if any) and waits until all see all alive.
fn start_cluster(size: usize, profile: &str, busy: Option<usize>) -> (Vec<Proc>, Events) {
    let exe = std::env::current_exe().unwrap();
    let (tx, rx) = mpsc::channel();
    let mut procs = Vec::new();
    let mut seed = "-".to_string();
    for i in 0..size {
        let ip = format!("127.0.1.{}", 10 + i);
        let port = free_port(&ip);
        let mut cmd = Command::new(&exe);
        cmd.args(["node", &ip, &port.to_string(), &seed, profile]);
        if busy == Some(i) {
            cmd.arg("busy");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let tx = tx.clone();
        let (id_tx, id_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if v["ev"] == "ready" {
                    let _ = id_tx.send(v["id"].as_str().unwrap().to_string());
                }
                if tx.send((i, v)).is_err() {
                    return;
                }
            }
        });
        let id = id_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("node ready");
        procs.push(Proc { child, id });
        if i == 0 {
            seed = format!("{ip}:{port}");
        }
    }
    // Wait until every node has seen size-1 others alive.
    let mut alive: Vec<std::collections::HashSet<String>> = vec![Default::default(); size];
    let deadline = Instant::now() + Duration::from_secs(60);
    while alive.iter().any(|s| s.len() < size - 1) {
        let (i, v) = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("cluster converges");
        if v["ev"] == "state" {
            let of = v["of"].as_str().unwrap().to_string();
            if v["state"] == "alive" {
                alive[i].insert(of);
            } else {
                alive[i].remove(&of);
            }
        }
    }
    (procs, rx)
}

struct KillResult {
    suspect_everywhere: f64,
    dead_everywhere: f64,
    dead_each: Vec<f64>,
}

fn kill_round(size: usize, profile: &str) -> KillResult {
    let (mut procs, rx) = start_cluster(size, profile, None);
    let victim = size - 1;
    let victim_id = procs[victim].id.clone();
    let killed_at = now_ms();
    procs[victim].child.kill().unwrap();
    let _ = procs[victim].child.wait();
    let mut suspect: HashMap<usize, f64> = HashMap::new();
    let mut dead: HashMap<usize, f64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while dead.len() < size - 1 {
        let (i, v) = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("victim declared dead everywhere");
        if v["ev"] != "state" || v["of"] != victim_id.as_str() {
            continue;
        }
        let at = v["t"].as_f64().unwrap() - killed_at;
        match v["state"].as_str() {
            Some("suspect") => {
                suspect.entry(i).or_insert(at);
            }
            Some("dead") => {
                dead.entry(i).or_insert(at);
                // A node may learn "dead" before it ever saw "suspect": it was suspect
                // (to the cluster) no later than that.
                suspect.entry(i).or_insert(at);
            }
            _ => {}
        }
    }
    drop(procs);
    KillResult {
        suspect_everywhere: suspect.values().copied().fold(0.0, f64::max),
        dead_everywhere: dead.values().copied().fold(0.0, f64::max),
        dead_each: dead.values().copied().collect(),
    }
}

/// A cgroup (v1 cpu controller) limiting one process to a share of one CPU; removed on drop.
struct CpuCap(std::path::PathBuf);

impl CpuCap {
    fn new(pid: u32, percent: u32) -> std::io::Result<Self> {
        let dir = std::path::PathBuf::from(format!(
            "/sys/fs/cgroup/cpu/shoal-bench-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        let cap = Self(dir);
        std::fs::write(cap.0.join("cpu.cfs_period_us"), "100000")?;
        std::fs::write(cap.0.join("cpu.cfs_quota_us"), (percent * 1000).to_string())?;
        std::fs::write(cap.0.join("cgroup.procs"), pid.to_string())?;
        Ok(cap)
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        // The process has exited by now (the cluster is dropped first); an empty cgroup can go.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            #[expect(
                clippy::disallowed_methods,
                reason = "the pause of a bounded retry in a synchronous drop"
            )]
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs `size` nodes with node 0 busy (and, with `quota_percent`, CPU-capped) for `duration`;
/// counts suspicions of anyone. `usize::MAX` if the CPU cap could not be set up.
fn busy_round(size: usize, duration: Duration, quota_percent: Option<u32>) -> usize {
    let (procs, rx) = start_cluster(size, "shoal", Some(0));
    let _cgroup = match quota_percent {
        Some(percent) => match CpuCap::new(procs[0].child.id(), percent) {
            Ok(cap) => Some(cap),
            Err(e) => {
                println!("cannot cap CPU: {e}");
                return usize::MAX;
            }
        },
        None => None,
    };
    let end = Instant::now() + duration;
    let mut suspicions = 0;
    while let Ok((i, v)) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
        if v["ev"] == "state" && (v["state"] == "suspect" || v["state"] == "dead") {
            println!("node {i} saw {} as {}", v["of"], v["state"]);
            suspicions += 1;
        }
        if Instant::now() >= end {
            break;
        }
    }
    drop(procs);
    suspicions
}
