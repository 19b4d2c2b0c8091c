//! `scripts/bench scale` (the real part): a hundred `shoal` processes on this machine forming
//! one cluster, with the figures the simulator cannot give: CPU, memory and bytes of real
//! processes, and failure detection by real timers on two shared cores.
//!
//! The run re-executes itself in private network and mount namespaces (`unshare`), where every
//! node binds its own 127.0.0.x: the loopback counters see only this run and nothing outlives
//! it. The nodes find each other as a deployment would, through DNS: dnsmasq answers one name
//! with every node's address, as a Kubernetes headless Service does (`discovery.method =
//! "dns-a"`). PostgreSQL is one private server reached over its Unix socket, so its traffic
//! stays off the loopback counters. Every setting is the shipped default except a pool of three
//! PostgreSQL connections per node, the smallest allowed (a hundred default pools of eight
//! would not fit one server), and a node key file, so a restarted node keeps its id as a
//! replaced pod would.
//!
//! Phases, in order: the idle cluster (CPU, gossip and state bytes, memory), one increment
//! until every other node counts it, a load spread over every node until every node shows the
//! exact total, then SIGKILL of one node until every other node reports it dead (a different
//! victim each round, restarted before the next).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt as _};
use serde_json::{Value, json};
use shoal_discovery::testsuite::Dnsmasq;
use shoal_testkit::*;

/// Bound on every wait: a hundred nodes on two cores start slowly, but never this slowly.
const WAIT: Duration = Duration::from_secs(60);
const GOSSIP_PORT: u16 = 7946;
const DNS_NAME: &str = "nodes.shoal.test";
const RESOURCE: &str = "bucket";
const ACTION: &str = "read";

struct Options {
    nodes: usize,
    load_seconds: u64,
    /// Increments per second each node receives during the load.
    rate: u64,
    rounds: usize,
    propagation_rounds: usize,
    idle_seconds: u64,
}

fn summary(what: &str, mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
    println!(
        "{what}: n={} min {:.0} p50 {p50:.0} p99 {p99:.0} max {:.0}",
        v.len(),
        v[0],
        v[v.len() - 1]
    );
    (p50, p99)
}

fn unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn nft(args: &str) {
    let out = Command::new("nft").arg(args).output().expect("nft");
    assert!(
        out.status.success(),
        "nft {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Counts, in this namespace's output path, the bytes of packets to or from the gossip port
/// (gossip and state share it) and to or from the DNS server: the loopback counter alone
/// would mix discovery into the figure.
fn count_ports(dns: u16) {
    nft("add table inet bench");
    nft("add chain inet bench out { type filter hook output priority 0; policy accept; }");
    for port in [GOSSIP_PORT, dns] {
        // `accept` ends the chain, so a packet between two gossip ports counts once.
        nft(&format!(
            "add rule inet bench out meta l4proto {{ tcp, udp }} th dport {port} counter accept"
        ));
        nft(&format!(
            "add rule inet bench out meta l4proto {{ tcp, udp }} th sport {port} counter accept"
        ));
    }
}

/// (gossip-port bytes, DNS bytes) counted so far (IP packets, headers included).
fn port_bytes() -> (u64, u64) {
    let out = Command::new("nft")
        .args(["list", "chain", "inet", "bench", "out"])
        .output()
        .expect("nft list");
    let counters: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "bytes")?;
            words.get(at + 1)?.parse().ok()
        })
        .collect();
    assert_eq!(counters.len(), 4, "nft counters: {counters:?}");
    (counters[0] + counters[1], counters[2] + counters[3])
}

fn spec(index: usize, database_url: &str, dns: SocketAddr) -> NodeSpec {
    let ip = format!("127.0.0.{}", 10 + index);
    let mut spec = NodeSpec::new(&format!("s{index}"), &ip, database_url);
    spec.gossip = format!("{ip}:{GOSSIP_PORT}").parse().unwrap();
    spec.probes = String::new();
    spec.control_plane_toml = "max_connections = 3\n".into();
    spec.cluster_toml = format!(
        "node_key_file = \"{}\"\n",
        spec.dir.path().join("node.key").display()
    );
    spec.extra_toml = format!(
        "\n[discovery]\nmethod = \"dns-a\"\nname = \"{DNS_NAME}\"\nport = {GOSSIP_PORT}\nserver = \"{dns}\"\n\n[proxy]\naddress = \"{ip}\"\n"
    );
    spec
}

async fn counter(api: &Api, subject: &str) -> Option<u64> {
    let path =
        format!("/api/v1/state/counters?subject={subject}&resource={RESOURCE}&action={ACTION}");
    let (code, body) = api.get(&path).await;
    (code == 200).then(|| body["access_count"]["last_hour"].as_u64())?
}

async fn increment(api: &Api, subject: &str) -> bool {
    let body = json!({"subject": subject, "resource": RESOURCE, "action": ACTION, "by": 1});
    api.post("/api/v1/state/increment", body).await.0 == 200
}

/// Node `i`'s view, or `Null` while it does not answer.
async fn status(base: &str) -> Value {
    cluster_status(base.to_string())
        .await
        .unwrap_or(Value::Null)
}

/// Until each of `which` sees every node alive and its state layer has every peer replayed.
async fn wait_formed(c: &Cluster, which: &[usize]) {
    let n = c.bases.len() as u64;
    let since = Instant::now();
    loop {
        let alive: Vec<u64> = join_all(which.iter().map(|i| status(&c.bases[*i])))
            .await
            .iter()
            .map(|s| s["cluster"]["healthy"].as_u64().unwrap_or(0))
            .collect();
        if alive.iter().all(|a| *a == n) {
            break;
        }
        if since.elapsed() > WAIT {
            let (at, fewest) = alive.iter().enumerate().min_by_key(|(_, a)| **a).unwrap();
            let logs: Vec<String> = c.nodes[which[at]]
                .logs()
                .into_iter()
                .filter(|l| l.contains("join") || l.contains("discover"))
                .collect();
            panic!(
                "after {WAIT:?} the nodes see {fewest}..{} of {n} alive; s{} sees {fewest}, \
                 its joins:\n{}",
                alive.iter().max().unwrap(),
                which[at],
                logs[logs.len().saturating_sub(10)..].join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for &i in which {
        wait_until(
            &format!("s{i}'s state to have every peer"),
            WAIT,
            || async {
                let (_, s) = c.apis[i].get("/api/v1/state/status").await;
                (s["peers"].as_u64() == Some(n - 1) && s["replay"]["done"] == true).then_some(())
            },
        )
        .await;
    }
}

/// Until the node answers `/ready` with 200; on time-out, why not and its last log lines.
async fn wait_ready(node: &mut Node) -> String {
    let base = node.base_url().await;
    let since = Instant::now();
    loop {
        let (code, body) = get_ready(base.clone()).await;
        if code == 200 {
            return base;
        }
        if since.elapsed() > WAIT {
            let logs = node.logs();
            panic!(
                "{} not ready after {WAIT:?}: {code} {body}\nits last log lines:\n{}",
                node.name,
                logs[logs.len().saturating_sub(30)..].join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Cluster {
    specs: Vec<NodeSpec>,
    nodes: Vec<Node>,
    bases: Vec<String>,
    apis: Vec<Api>,
    /// Log lines of each node already read.
    cursors: Vec<usize>,
}

impl Cluster {
    async fn start(database_url: &str, dns: SocketAddr, n: usize) -> Self {
        let specs: Vec<NodeSpec> = (0..n).map(|i| spec(i, database_url, dns)).collect();
        create_admin(&specs[0]);
        let mut nodes: Vec<Node> = specs.iter().map(NodeSpec::start).collect();
        let mut bases = Vec::new();
        for node in &mut nodes {
            bases.push(wait_ready(node).await);
        }
        let session = Api::login(&bases[0]).await;
        let apis = bases.iter().map(|b| session.at(b)).collect();
        Self {
            specs,
            nodes,
            bases,
            apis,
            cursors: vec![0; n],
        }
    }

    /// New log events of node `i` (JSON lines only).
    fn new_events(&mut self, i: usize) -> Vec<Value> {
        let lines = self.nodes[i].logs_since(self.cursors[i]);
        self.cursors[i] += lines.len();
        lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(Node::pid).collect()
    }
}

/// A log event's own timestamp, in microseconds since the epoch.
fn event_us(event: &Value) -> i64 {
    let ts = event["timestamp"]
        .as_str()
        .expect("timestamp in a log line");
    chrono::DateTime::parse_from_rfc3339(ts)
        .expect("RFC 3339 timestamp")
        .timestamp_micros()
}

struct Idle {
    cpu_pct: f64,
    cpu_pct_max: f64,
    gossip_bytes_per_s: f64,
    rss_mb: f64,
}

async fn idle(c: &Cluster, seconds: u64) -> Idle {
    let n = c.nodes.len() as f64;
    let states = |apis: Vec<Api>| async move {
        join_all(apis.iter().map(|a| a.get("/api/v1/state/status"))).await
    };
    let suspicions = |bases: Vec<String>| async move {
        join_all(bases.iter().map(|b| status(b)))
            .await
            .iter()
            .map(|s| s["cluster"]["suspicions_raised"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let suspected_before = suspicions(c.bases.clone()).await;
    let state_before = states(c.apis.clone()).await;
    let state_since = Instant::now();

    let pids = c.pids();
    let ticks: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let (gossip, dns) = port_bytes();
    let lo = lo_tx_bytes();
    let since = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let secs = since.elapsed().as_secs_f64();
    let lo = lo_tx_bytes() - lo;
    let (gossip_after, dns_after) = port_bytes();
    let (gossip, dns) = (gossip_after - gossip, dns_after - dns);
    let used: Vec<f64> = pids
        .iter()
        .zip(&ticks)
        .map(|(p, t)| (cpu_ticks(*p) - t) as f64 / clock_ticks_per_second() / secs * 100.0)
        .collect();
    let rss: Vec<f64> = pids.iter().map(|p| rss_kib(*p) as f64 / 1024.0).collect();

    let state_after = states(c.apis.clone()).await;
    let state_secs = state_since.elapsed().as_secs_f64();
    let suspected = suspicions(c.bases.clone()).await - suspected_before;
    let state_bytes: u64 = state_before
        .iter()
        .zip(&state_after)
        .map(|((_, b), (_, a))| {
            a["bytes_sent"].as_u64().unwrap_or(0) - b["bytes_sent"].as_u64().unwrap_or(0)
        })
        .sum();

    let cpu_pct = used.iter().sum::<f64>() / n;
    let cpu_pct_max = used.iter().copied().fold(0.0, f64::max);
    let rss_max = rss.iter().copied().fold(0.0, f64::max);
    println!(
        "idle {secs:.1} s: CPU per node {cpu_pct:.2}% of a core (max {cpu_pct_max:.2}%, all nodes {:.0}%)",
        used.iter().sum::<f64>()
    );
    println!(
        "idle: loopback {:.0} B/s per node in all; gossip port {:.0} B/s per node, of which the \
         state layer's payloads {:.0}; DNS discovery {:.0} B/s per node",
        lo as f64 / secs / n,
        gossip as f64 / secs / n,
        state_bytes as f64 / state_secs / n,
        dns as f64 / secs / n
    );
    println!(
        "idle: RSS per node {:.1} MB (max {rss_max:.1}); suspicions raised anywhere: {suspected}",
        rss.iter().sum::<f64>() / n
    );
    Idle {
        cpu_pct,
        cpu_pct_max,
        gossip_bytes_per_s: gossip as f64 / secs / n,
        rss_mb: rss.iter().sum::<f64>() / n,
    }
}

/// Reads in flight at once while waiting for an increment: enough to read every node a few
/// times a second, few enough that the reads themselves (each one a session lookup in
/// PostgreSQL) do not take the cores the nodes need to pass the increment on.
const READS_IN_FLIGHT: usize = 8;

/// Median milliseconds of one counter read (of each node in turn) with nothing else in
/// flight: what a read costs on the loaded machine, next to what the propagation reads take.
async fn one_read_ms(c: &Cluster) -> f64 {
    let mut ms = Vec::new();
    for i in 0..50 {
        let start = Instant::now();
        counter(&c.apis[i % c.apis.len()], "prop-0").await;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    percentile(&ms, 0.5)
}

/// Per round, milliseconds from an increment on one node (its API call included) until every
/// other node counts it, as bounds: the last miss read before each node counted it was sent
/// (lower) and the first read that found it answered (upper).
async fn propagation(c: &Cluster, rounds: usize) -> (Vec<f64>, Vec<f64>) {
    let n = c.apis.len();
    let (mut lower, mut upper) = (Vec::new(), Vec::new());
    let (mut reads, mut read_ms) = (0usize, 0.0f64);
    for round in 0..rounds {
        let subject = format!("prop-{round}");
        let origin = (round * 7) % n;
        let start = Instant::now();
        assert!(
            increment(&c.apis[origin], &subject).await,
            "increment refused"
        );
        let mut pending: Vec<usize> = (0..n).filter(|i| *i != origin).collect();
        let mut missed_at = vec![0.0f64; n];
        let (mut low, mut high) = (0.0f64, 0.0f64);
        while !pending.is_empty() {
            let round_reads: Vec<(usize, f64, bool, f64)> = stream::iter(pending.clone())
                .map(|i| {
                    let subject = &subject;
                    async move {
                        let sent = start.elapsed().as_secs_f64() * 1000.0;
                        let counted = counter(&c.apis[i], subject).await.unwrap_or(0) >= 1;
                        (i, sent, counted, start.elapsed().as_secs_f64() * 1000.0)
                    }
                })
                .buffer_unordered(READS_IN_FLIGHT)
                .collect()
                .await;
            reads += round_reads.len();
            for (i, sent, counted, answered) in round_reads {
                read_ms += answered - sent;
                if counted {
                    pending.retain(|p| *p != i);
                    low = low.max(missed_at[i]);
                    high = high.max(answered);
                } else {
                    missed_at[i] = sent;
                }
            }
            assert!(
                start.elapsed() < WAIT,
                "round {round}: not counted on {pending:?}"
            );
        }
        lower.push(low);
        upper.push(high);
    }
    println!(
        "propagation: {reads} reads, {READS_IN_FLIGHT} at a time, {:.1} ms each on average; \
         one read alone {:.1} ms (median of 50)",
        read_ms / reads as f64,
        one_read_ms(c).await
    );
    (lower, upper)
}

struct Exactness {
    acked: u64,
    failed: u64,
    lost: u64,
    double: u64,
}

/// `rate` increments per second through each node's API for `seconds`, then every node's
/// total against what the nodes acknowledged.
async fn load(c: &Cluster, seconds: u64, rate: u64) -> Exactness {
    const SUBJECT: &str = "load";
    let (acked, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let period = Duration::from_secs(1) / rate as u32;
    let n = c.apis.len() as u32;
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = c
        .apis
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, api)| {
            let (acked, failed) = (acked.clone(), failed.clone());
            spawn(async move {
                // Nodes' ticks spread over one period: the load arrives evenly, not in bursts.
                let first = tokio::time::Instant::now() + period * i as u32 / n;
                let mut tick = tokio::time::interval_at(first, period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while Instant::now() < end {
                    tick.tick().await;
                    let done = if increment(&api, SUBJECT).await {
                        &acked
                    } else {
                        &failed
                    };
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (acked, failed) = (
        acked.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    let sent_secs = started.elapsed().as_secs_f64();
    // An increment refused with an error may still have been counted: a total in
    // [acked, acked + failed] is exact.
    let exact = |t: u64| t >= acked && t <= acked + failed;
    let since = Instant::now();
    let totals = loop {
        let totals: Vec<u64> = join_all(c.apis.iter().map(|a| counter(a, SUBJECT)))
            .await
            .into_iter()
            .map(|t| t.unwrap_or(0))
            .collect();
        if totals.iter().all(|t| exact(*t)) || since.elapsed() > Duration::from_secs(60) {
            break totals;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "load: {acked} increments acknowledged ({failed} failed) in {sent_secs:.1} s over {n} nodes \
         ({:.0}/s); every node exact {:.0} ms after the last: {}",
        acked as f64 / sent_secs,
        since.elapsed().as_secs_f64() * 1000.0,
        totals.iter().all(|t| exact(*t))
    );
    Exactness {
        acked,
        failed,
        lost: totals
            .iter()
            .map(|t| acked.saturating_sub(*t))
            .max()
            .unwrap_or(0),
        double: totals
            .iter()
            .map(|t| t.saturating_sub(acked + failed))
            .max()
            .unwrap_or(0),
    }
}

/// Per round: milliseconds from SIGKILL of one node until the last other node logged it dead
/// (the log line's own timestamp), and until the first one suspected it.
async fn kill_rounds(c: &mut Cluster, rounds: usize) -> Vec<f64> {
    let n = c.nodes.len();
    let mut samples = Vec::new();
    for round in 0..rounds {
        // A different victim each round (31 and the node count share no factor at 100).
        let victim = (5 + round * 31) % n;
        let needle = format!("node {} (", c.specs[victim].name);
        let others: Vec<usize> = (0..n).filter(|i| *i != victim).collect();
        for i in 0..n {
            c.new_events(i);
        }
        let killed_at = unix_us();
        c.nodes[victim].signal("KILL");
        let mut dead: BTreeMap<usize, i64> = BTreeMap::new();
        let mut first_suspect = i64::MAX;
        while dead.len() < others.len() {
            for &i in &others {
                for e in c.new_events(i) {
                    let message = e["message"].as_str().unwrap_or_default();
                    if !message.contains(&needle) {
                        continue;
                    }
                    if message.contains("marked as suspect") {
                        first_suspect = first_suspect.min(event_us(&e) - killed_at);
                    } else if message.contains("marked as dead") {
                        dead.entry(i).or_insert(event_us(&e) - killed_at);
                    }
                }
            }
            assert!(
                unix_us() - killed_at < WAIT.as_micros() as i64,
                "round {round}: s{victim} dead on only {} of {} nodes",
                dead.len(),
                others.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let everywhere = *dead.values().max().unwrap() as f64 / 1000.0;
        let first = *dead.values().min().unwrap() as f64 / 1000.0;
        println!(
            "kill round {round}: s{victim} first suspected after {:.0} ms, first dead {first:.0} ms, \
             dead everywhere {everywhere:.0} ms",
            first_suspect as f64 / 1000.0
        );
        samples.push(everywhere);

        c.nodes[victim].wait_exit(WAIT).await;
        let restarted = Instant::now();
        c.nodes[victim] = c.specs[victim].start();
        c.cursors[victim] = 0;
        let base = wait_ready(&mut c.nodes[victim]).await;
        c.apis[victim] = c.apis[victim].at(&base);
        c.bases[victim] = base;
        let mut back: Vec<bool> = vec![false; n];
        back[victim] = true;
        let since = Instant::now();
        while !back.iter().all(|b| *b) {
            for &i in &others {
                back[i] |= c.new_events(i).iter().any(|e| {
                    let m = e["message"].as_str().unwrap_or_default();
                    m.contains(&needle) && (m.contains("is alive again") || m.contains("joined"))
                });
            }
            assert!(
                since.elapsed() < WAIT,
                "s{victim} not alive again everywhere"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let alive_everywhere = restarted.elapsed().as_secs_f64();
        wait_formed(c, &[victim]).await;
        println!(
            "kill round {round}: s{victim} restarted, alive on every other node after \
             {alive_everywhere:.1} s, its state replayed after {:.1} s",
            restarted.elapsed().as_secs_f64()
        );
    }
    samples
}

async fn run(o: Options) {
    let started = Instant::now();
    println!(
        "{} nodes; load average at start: {}",
        o.nodes,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    // Each node: a pool of three (its listener among them); the benchmark's own on top.
    let db = private_database(o.nodes as u32 * 4 + 50).await;
    let url = db.socket_url().expect("a private PostgreSQL");
    let hosts = tempfile::NamedTempFile::new().unwrap();
    let lines: String = (0..o.nodes)
        .map(|i| format!("127.0.0.{} {DNS_NAME}\n", 10 + i))
        .collect();
    std::fs::write(hosts.path(), lines).unwrap();
    // The answer (every node's address) is too long for UDP, so every node asks again over
    // TCP and its resolver keeps that connection open: dnsmasq's default of 20 TCP
    // connections would leave the other nodes without an answer.
    let dns = Dnsmasq::start(&[
        format!("--addn-hosts={}", hosts.path().display()),
        format!("--max-tcp-connections={}", 2 * o.nodes),
    ]);
    count_ports(dns.addr.port());

    let mut c = Cluster::start(&url, dns.addr, o.nodes).await;
    println!(
        "{} nodes ready {:.1} s after the start",
        o.nodes,
        started.elapsed().as_secs_f64()
    );
    wait_formed(&c, &(0..o.nodes).collect::<Vec<_>>()).await;
    println!(
        "{} nodes formed one cluster through DNS in {:.1} s",
        o.nodes,
        started.elapsed().as_secs_f64()
    );

    let idle = idle(&c, o.idle_seconds).await;
    let (lower, upper) = propagation(&c, o.propagation_rounds).await;
    summary(
        &format!("propagation {} nodes, lower bound (ms)", o.nodes),
        lower,
    );
    let (_, propagation_p99) = summary(
        &format!("propagation {} nodes, upper bound (ms)", o.nodes),
        upper,
    );
    let exact = load(&c, o.load_seconds, o.rate).await;
    let (_, dead_p99) = summary(
        &format!("dead everywhere {} nodes (ms)", o.nodes),
        kill_rounds(&mut c, o.rounds).await,
    );
    println!(
        "whole run {:.0} s; load average at the end: {}",
        started.elapsed().as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    let n = o.nodes;
    println!("RESULT dead_everywhere_p99_{n}_nodes_ms {dead_p99:.0} ms");
    println!("RESULT propagation_p99_{n}_nodes_ms {propagation_p99:.0} ms");
    println!("RESULT idle_cpu_per_node_pct {:.2} %", idle.cpu_pct);
    println!("RESULT idle_cpu_per_node_max_pct {:.2} %", idle.cpu_pct_max);
    println!(
        "RESULT idle_traffic_per_node_bytes_per_s {:.0} B/s",
        idle.gossip_bytes_per_s
    );
    println!("RESULT rss_per_node_mb {:.1} MB", idle.rss_mb);
    println!(
        "exactness: {} acknowledged, {} failed; the most any node missed {}, counted beyond {}",
        exact.acked, exact.failed, exact.lost, exact.double
    );
    println!("RESULT lost_increments {} increments", exact.lost);
    println!("RESULT double_counted {} increments", exact.double);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !in_private_namespaces_bench() {
        return;
    }
    let options = Options {
        nodes: arg("--nodes", 100),
        load_seconds: arg("--load-seconds", 10) as u64,
        rate: arg("--load-rate", 5) as u64,
        rounds: arg("--rounds", 5),
        propagation_rounds: arg("--propagation-rounds", 30),
        idle_seconds: arg("--idle-seconds", 30) as u64,
    };
    assert!(
        (2..=240).contains(&options.nodes),
        "--nodes: 2 to 240 (one 127.0.0.x each)"
    );
    let budget = Duration::from_secs(arg("--budget-seconds", 1800) as u64);
    // On expiry the run is dropped: every node killed, dnsmasq and PostgreSQL stopped.
    if tokio::time::timeout(budget, run(options)).await.is_err() {
        panic!("the run did not finish within {budget:?}");
    }
}
