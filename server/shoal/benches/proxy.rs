//! `scripts/bench proxy`: what the data plane adds to a request, next to nginx (from Debian)
//! proxying the same upstream with no policy, in the same run; and what telemetry costs on
//! that path.
//!
//! Upstream: a minimal HTTP server in this process answering `ok`. Shoal: three `shoal serve`
//! nodes with an HTTP resource in front of it and the seed policy in force (the resource is
//! not the seed's bucket, so every request is counted and evaluated, and allowed): `bare`
//! with no metrics reader and no tracing, `metrics` as shipped (Prometheus on, no tracing:
//! the figures the issue compares with nginx), `traced` with metrics and every request traced
//! and exported over OTLP/gRPC to rotel's receiver. nginx: one `proxy_pass` with upstream
//! keep-alive, `worker_processes auto`, no access log.
//!
//! Latency: sequential requests over one kept-alive connection, directly, through nginx and
//! through each node, alternated per round; "added" is the proxy's percentile minus the
//! direct one, and the telemetry cost is one node's percentile minus the other's. Throughput:
//! wrk (one thread) with `--concurrency` connections for `--load-seconds` through each proxy,
//! so the load generator costs both sides the same and little; the ratio to nginx is the
//! median of `--rounds` pairs (the `metrics` node and nginx, alternating which goes first).
//! The same pairs against a second nginx that writes an access log line per request (the
//! nearest it comes to Shoal's audit line), and the CPU a request costs the node and
//! PostgreSQL against nginx's: on two shared cores the audit row's storage alone keeps the
//! plain ratio under 1.0 (docs/benchmarks.md), so these say how much of the gap is the audit.
//!
//! Memory: `--idle-connections` keep-alive connections, one request each, held idle, on the
//! `metrics` node and on nginx. Flood: `--flood` connection attempts, each sending a request,
//! at the `traced` node, whose limit is `--flood-limit` connections: the ones let in are
//! held, the rest must get the `503` refusal and be counted in its metrics, and the node's
//! memory is read before and after.
//!
//! Another build, optionally: `SHOAL_BENCH_BASELINE_BIN` names a binary run as a fourth node,
//! `baseline`, with the `metrics` node's settings; its cost is compared with the `metrics`
//! node's, latency per round and throughput in alternating pairs.

use std::time::{Duration, Instant};

use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

/// Microseconds per request, sequential, one kept-alive connection.
async fn latency(client: &reqwest::Client, url: &str, key: &str, n: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let resp = client
            .get(url)
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        resp.bytes().await.unwrap();
        v.push(start.elapsed().as_secs_f64() * 1e6);
    }
    v.sort_by(f64::total_cmp);
    v
}

/// Requests/s wrk measures through `url`, once the nodes' earlier audit lines are stored.
async fn throughput(shoal: &[Variant], url: &str, key: &str, connections: usize, secs: u64) -> f64 {
    drained(shoal).await;
    let (url, header) = (url.to_string(), format!("x-api-key: {key}"));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("wrk")
            .args(["-t1", &format!("-c{connections}"), &format!("-d{secs}s")])
            .args(["-H", &header, &url])
            .output()
            .expect("run wrk (scripts/bench installs it)")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk: {text}");
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "every request answered 200: {text}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output: {text}"))
}

/// Requests/s through `a` and through `b` in `rounds` pairs, alternating which goes first: one
/// run each drifts with the machine (nginx alone measured 23k to 40k requests/s within an hour
/// here). Each pair is printed, labelled `what`.
async fn pairs(
    shoal: &[Variant],
    (a, b): (&str, &str),
    what: &str,
    (key, connections, secs, rounds): (&str, usize, u64, usize),
) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let pair = if round % 2 == 0 {
            let first = throughput(shoal, a, key, connections, secs).await;
            (first, throughput(shoal, b, key, connections, secs).await)
        } else {
            let first = throughput(shoal, b, key, connections, secs).await;
            (throughput(shoal, a, key, connections, secs).await, first)
        };
        println!(
            "{what} pair {round}: {:.0}/s against {:.0}/s",
            pair.0, pair.1
        );
        out.push(pair);
    }
    out
}

/// The median of the ratios `a / b` over `pairs`, and their spread.
fn ratio(pairs: &[(f64, f64)]) -> (f64, f64, f64) {
    let mut ratios: Vec<f64> = pairs.iter().map(|(a, b)| a / b).collect();
    ratios.sort_by(f64::total_cmp);
    (
        percentile(&ratios, 0.5),
        ratios[0],
        ratios[ratios.len() - 1],
    )
}

/// A process and its children (nginx's workers).
fn tree_rss_kib(pid: u32) -> u64 {
    rss_kib(pid) + children(pid).map(tree_rss_kib).sum::<u64>()
}

fn children(pid: u32) -> impl Iterator<Item = u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect::<Vec<u32>>()
        .into_iter()
}

/// CPU seconds (user, system) from a `/proc/.../stat` file; zero when it is gone.
fn stat_cpu_s(path: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Clock ticks of 1/100 s (USER_HZ on Linux).
    (ticks(11) / 100.0, ticks(12) / 100.0)
}

/// CPU seconds (user, system) a process and its children have used, every thread counted.
fn tree_cpu_s(pid: u32) -> (f64, f64) {
    let own = stat_cpu_s(&format!("/proc/{pid}/stat"));
    children(pid)
        .map(tree_cpu_s)
        .fold(own, |(u, s), (cu, cs)| (u + cu, s + cs))
}

/// CPU seconds (user + system) every PostgreSQL process on the machine has used: the
/// benchmark's server shares the two cores with the proxies, storing Shoal's audit lines.
/// `scripts/bench` runs alone, so every such process is the benchmark's; one that exits
/// during a run (not the pool's connections, which stay) takes its ticks with it.
fn postgres_cpu_s() -> f64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|pid| {
            let (user, system) = stat_cpu_s(&format!("/proc/{pid}/stat"));
            user + system
        })
        .sum()
}

/// Under load: requests/s, the CPU microseconds (user, system) the proxy `pid` spent per
/// request, and PostgreSQL's per request.
struct Load {
    rps: f64,
    cpu: (f64, f64),
    postgres_us: f64,
    /// The proxy's CPU per request by thread name: how evenly the cores share the load.
    threads: std::collections::BTreeMap<String, f64>,
}

/// CPU seconds of each of `pid`'s threads, summed by thread name.
fn thread_cpu_s(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let (user, system) = stat_cpu_s(&path.join("stat").to_string_lossy());
        *by_name.entry(name.trim().to_string()).or_insert(0.0) += user + system;
    }
    by_name
}

/// [`throughput`], with the CPU the proxy `pid` and PostgreSQL spent per request.
async fn throughput_cpu(
    shoal: &[Variant],
    url: &str,
    key: &str,
    connections: usize,
    secs: u64,
    pid: u32,
) -> Load {
    drained(shoal).await;
    let (before, pg_before, threads_before) =
        (tree_cpu_s(pid), postgres_cpu_s(), thread_cpu_s(pid));
    let rps = throughput(&[], url, key, connections, secs).await;
    // The run's own audit lines, still being stored when wrk ends, are charged to it.
    drained(shoal).await;
    let (after, pg_after, threads_after) = (tree_cpu_s(pid), postgres_cpu_s(), thread_cpu_s(pid));
    let requests = rps * secs as f64;
    let per = |a: f64, b: f64| (a - b) * 1e6 / requests;
    let threads = threads_after
        .into_iter()
        .map(|(name, s)| {
            let was = threads_before.get(&name).copied().unwrap_or(0.0);
            (name, per(s, was))
        })
        .filter(|(_, us)| *us > 0.0)
        .collect();
    Load {
        rps,
        cpu: (per(after.0, before.0), per(after.1, before.1)),
        postgres_us: per(pg_after, pg_before),
        threads,
    }
}

/// Opens `n` connections to `addr`, sends one request on each and keeps them open, idle.
async fn hold_connections(addr: &str, key: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request = format!("GET /idle HTTP/1.1\r\nhost: bench\r\nx-api-key: {key}\r\n\r\n");
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        // Response head plus the 2-byte body "ok".
        while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"ok")) {
            let read = conn.read(&mut buf).await.unwrap();
            assert!(read > 0, "connection closed early");
            got.extend_from_slice(&buf[..read]);
        }
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        held.push(conn);
    }
    held
}

/// `n` connection attempts one after another, each sending a request: those answered `200`
/// are kept open, those refused must be answered `503` and closed by the node. Returns the
/// kept connections and the refusals.
async fn flood_connections(addr: &str, key: &str, n: usize) -> (Vec<tokio::net::TcpStream>, usize) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request = format!("GET /flood HTTP/1.1\r\nhost: bench\r\nx-api-key: {key}\r\n\r\n");
    let (mut held, mut refused) = (Vec::new(), 0);
    let mut buf = vec![0u8; 4096];
    for _ in 0..n {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let closed = loop {
            if got.starts_with(b"HTTP/1.1 200") && got.ends_with(b"\r\n\r\nok") {
                break false;
            }
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break true,
                Ok(read) => got.extend_from_slice(&buf[..read]),
            }
        };
        if closed {
            assert!(
                got.starts_with(b"HTTP/1.1 503"),
                "a refused connection gets the 503: {}",
                String::from_utf8_lossy(&got)
            );
            refused += 1;
        } else {
            held.push(conn);
        }
    }
    (held, refused)
}

/// One node of the benchmark: its process and resource URL.
struct Variant {
    node: Node,
    url: String,
    base: String,
}

/// Waits until every node has stored its audit lines in PostgreSQL, so that no run pays for
/// the lines of the one before it (PostgreSQL shares the two cores).
async fn drained(shoal: &[Variant]) {
    for v in shoal {
        poll_ready(v.base.clone(), "audit lines stored", WAIT, |_, r| {
            r["audit"]["spooled"] == 0
        })
        .await;
    }
}

/// p50 and p99 in one round of: direct, nginx, bare, metrics, traced.
type Round = [(f64, f64); 6];

/// A figure computed from one round.
type Figure<'a> = &'a dyn Fn(&Round) -> f64;

/// A node's name, loopback IP and extra environment.
type NodeSetup = (&'static str, &'static str, Vec<(String, String)>);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = arg("--rounds", 5);
    let requests = arg("--requests", 2000);
    let load_secs = arg("--load-seconds", 5) as u64;
    let connections = arg("--concurrency", 16);
    let idle = arg("--idle-connections", 10_000);
    let flood = arg("--flood", 50_000);
    let flood_limit = arg("--flood-limit", 2_000);

    let upstream = ok_upstream().await;
    let (nginx, nginx_port) = start_nginx(&[upstream], "");
    // The same nginx writing an access log line per request (its default: one `write` each),
    // the nearest nginx comes to Shoal's audit journal (which PostgreSQL then also stores).
    let access_log_dir = tempfile::tempdir().unwrap();
    let access_log = access_log_dir.path().join("access.log");
    let (nginx_logged, nginx_logged_port) = start_nginx(
        &[upstream],
        &format!("access_log {};", access_log.display()),
    );
    // Receives the traced node's metrics and spans without printing them.
    let rotel = Rotel::start(false);
    rotel.wait_listening().await;

    let baseline_bin = std::env::var_os("SHOAL_BENCH_BASELINE_BIN").map(std::path::PathBuf::from);
    let db = database().await;
    let mut variants: Vec<NodeSetup> = vec![
        (
            "bare",
            "127.0.0.95",
            vec![("SHOAL_TELEMETRY_PROMETHEUS".into(), "false".into())],
        ),
        ("metrics", "127.0.0.97", vec![]),
        (
            "traced",
            "127.0.0.96",
            vec![
                (
                    "SHOAL_TELEMETRY_OTLP_ENDPOINT".into(),
                    rotel.grpc_endpoint.clone(),
                ),
                ("SHOAL_TELEMETRY_OTLP_PROTOCOL".into(), "grpc".into()),
                ("SHOAL_TELEMETRY_TRACE_SAMPLE_RATIO".into(), "1".into()),
            ],
        ),
    ];
    if baseline_bin.is_some() {
        variants.push(("baseline", "127.0.0.98", vec![]));
    }
    let mut nodes = Vec::new();
    for (i, (name, ip, env)) in variants.into_iter().enumerate() {
        let mut spec = NodeSpec::new(name, ip, &db.url);
        spec.extra_toml = format!("[proxy]\naddress = \"{ip}\"\n");
        if name == "traced" {
            spec.extra_toml += &format!("max_connections = {flood_limit}\n");
        }
        spec.env = env;
        if let ("baseline", Some(bin)) = (name, &baseline_bin) {
            spec.binary = bin.clone();
        }
        if i == 0 {
            create_admin(&spec);
        }
        let mut node = spec.start();
        node.wait_ready_where("ready", WAIT, |s, _| s == 200).await;
        nodes.push((name, ip, node));
    }
    let base = nodes[1].2.base_url().await;
    let api = Api::login(&base).await;
    let key = api.user_with_api_key("bench").await;
    let port = free_port("127.0.0.97");
    api.http_resource("bench", &format!("http://{upstream}"), port)
        .await;
    let revision = api.put_seed_policy().await;
    let mut shoal = Vec::new();
    for (_, ip, mut node) in nodes {
        node.wait_data_plane(revision).await;
        wait_listening(&format!("{ip}:{port}"), WAIT).await;
        shoal.push(Variant {
            base: node.base_url().await,
            node,
            url: format!("http://{ip}:{port}/object"),
        });
    }
    let nginx_url = format!("http://127.0.0.1:{nginx_port}/object");
    let direct_url = format!("http://{upstream}/object");
    wait_listening(&format!("127.0.0.1:{nginx_port}"), WAIT).await;
    let nginx_logged_url = format!("http://127.0.0.1:{nginx_logged_port}/object");
    wait_listening(&format!("127.0.0.1:{nginx_logged_port}"), WAIT).await;

    let client = reqwest::Client::new();
    for url in [&direct_url, &nginx_url]
        .into_iter()
        .chain(shoal.iter().map(|v| &v.url))
    {
        latency(&client, url, &key, 200).await;
    }
    // Per round: p50 and p99 of direct, nginx, bare, metrics, traced.
    let mut rows: Vec<Round> = Vec::new();
    for round in 0..rounds {
        let mut row = [(0.0, 0.0); 6];
        for (i, url) in [&direct_url, &nginx_url]
            .into_iter()
            .chain(shoal.iter().map(|v| &v.url))
            .enumerate()
        {
            let v = latency(&client, url, &key, requests).await;
            row[i] = (percentile(&v, 0.5), percentile(&v, 0.99));
        }
        let names = ["nginx", "shoal bare", "metrics", "traced", "baseline"];
        let added: Vec<String> = names
            .iter()
            .zip(&row[1..=shoal.len() + 1])
            .map(|(name, (p50, p99))| {
                format!("{name} p50 {:.0} p99 {:.0}", p50 - row[0].0, p99 - row[0].1)
            })
            .collect();
        println!(
            "round {round}: direct p50 {:.0} us p99 {:.0} us | added (us) by {}",
            row[0].0,
            row[0].1,
            added.join(" | ")
        );
        rows.push(row);
    }
    let (mut rps, mut cpu, mut postgres_us) = (Vec::new(), Vec::new(), Vec::new());
    // The baseline build too when there is one: its CPU and PostgreSQL's beside this build's.
    for (v, name) in shoal.iter().zip(["bare", "metrics", "traced", "baseline"]) {
        let load = throughput_cpu(&shoal, &v.url, &key, connections, load_secs, v.node.pid()).await;
        let threads: Vec<String> = load
            .threads
            .iter()
            .map(|(thread, us)| format!("{thread} {us:.1}"))
            .collect();
        println!(
            "{name}: CPU per request by thread (us): {}",
            threads.join(", ")
        );
        rps.push(load.rps);
        cpu.push(load.cpu);
        postgres_us.push(load.postgres_us);
    }
    let load = (key.as_str(), connections, load_secs, rounds);
    // The other build against this one.
    let baseline_pairs = if shoal.len() > 3 {
        pairs(&shoal, (&shoal[1].url, &shoal[3].url), "baseline", load).await
    } else {
        Vec::new()
    };
    let Load {
        rps: nginx_once,
        cpu: nginx_cpu,
        ..
    } = throughput_cpu(
        &shoal,
        &nginx_url,
        &key,
        connections,
        load_secs,
        nginx.child.id(),
    )
    .await;
    let Load {
        cpu: nginx_logged_cpu,
        ..
    } = throughput_cpu(
        &shoal,
        &nginx_logged_url,
        &key,
        connections,
        load_secs,
        nginx_logged.child.id(),
    )
    .await;
    let nginx_pairs = pairs(&shoal, (&shoal[1].url, &nginx_url), "nginx", load).await;
    let logged_pairs = pairs(
        &shoal,
        (&shoal[1].url, &nginx_logged_url),
        "nginx with access log",
        load,
    )
    .await;
    let logged_lines = std::fs::read(&access_log)
        .map(|log| log.iter().filter(|b| **b == b'\n').count())
        .unwrap_or(0);
    let logged_requests: f64 = logged_pairs.iter().map(|p| p.1 * load_secs as f64).sum();
    assert!(
        logged_lines as f64 >= logged_requests * 0.9,
        "nginx logged every request: {logged_lines} lines for about {logged_requests:.0} requests"
    );
    let middle = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    let shoal_rps = middle(nginx_pairs.iter().map(|p| p.0).collect());
    let nginx_rps = middle(nginx_pairs.iter().map(|p| p.1).collect());
    let nginx_logged_rps = middle(logged_pairs.iter().map(|p| p.1).collect());
    println!(
        "CPU per request under load (user + system, us): shoal bare {:.1} + {:.1}, metrics {:.1} + {:.1}, traced {:.1} + {:.1}, nginx {:.1} + {:.1}",
        cpu[0].0, cpu[0].1, cpu[1].0, cpu[1].1, cpu[2].0, cpu[2].1, nginx_cpu.0, nginx_cpu.1
    );
    println!(
        "PostgreSQL's CPU per request under load (us, storing the audit lines): shoal bare {:.1}, metrics {:.1}, traced {:.1}",
        postgres_us[0], postgres_us[1], postgres_us[2]
    );
    if shoal.len() > 3 {
        println!(
            "baseline under load: {:.0}/s, CPU per request {:.1} + {:.1} us, PostgreSQL's {:.1} us",
            rps[3], cpu[3].0, cpu[3].1, postgres_us[3]
        );
    }
    println!(
        "throughput with {connections} connections, one run each: shoal bare {:.0}/s, metrics {:.0}/s, traced {:.0}/s, nginx {nginx_once:.0}/s",
        rps[0], rps[1], rps[2]
    );
    let (_, ready) = shoal[1].node.ready().await;
    println!("shoal audit: {}", ready["audit"]);
    assert!(
        ready["audit"]["journaled"].as_u64() > Some(0),
        "the measured node journals its decisions: {ready}"
    );
    let shipped = &shoal[1];

    // Idle keep-alive connections: memory each costs, Shoal and nginx side by side.
    let mut memory = Vec::new();
    for (name, addr, pid) in [
        ("shoal", format!("127.0.0.97:{port}"), shipped.node.pid()),
        ("nginx", format!("127.0.0.1:{nginx_port}"), nginx.child.id()),
    ] {
        let before = tree_rss_kib(pid);
        let held = hold_connections(&addr, &key, idle).await;
        let after = tree_rss_kib(pid);
        let per = (after.saturating_sub(before) * 1024) as f64 / idle as f64;
        println!(
            "{name}: RSS {:.1} MiB before, {:.1} MiB with {idle} idle connections ({per:.0} bytes each)",
            before as f64 / 1024.0,
            after as f64 / 1024.0
        );
        memory.push((after as f64 / 1024.0, per));
        drop(held);
    }

    // A flood of connection attempts past the traced node's limit.
    let flood_base = shoal[2].node.base_url().await;
    let flooded = &shoal[2];
    let refused_metric = || async {
        let text = reqwest::get(format!("{flood_base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| {
                l.starts_with("shoal_proxy_connections_refused_total{")
                    && l.contains("reason=\"limit\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0) as usize
    };
    let counted_before = refused_metric().await;
    let before = tree_rss_kib(flooded.node.pid());
    let started = Instant::now();
    let (held, refused) = flood_connections(&format!("127.0.0.96:{port}"), &key, flood).await;
    let after = tree_rss_kib(flooded.node.pid());
    let counted = refused_metric().await - counted_before;
    println!(
        "flood: {flood} attempts in {:.1} s, {} let in and held, {refused} refused with 503 ({counted} counted); RSS {:.1} MiB before, {:.1} MiB after",
        started.elapsed().as_secs_f64(),
        held.len(),
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
    assert_eq!(counted, refused, "every refusal counted");
    assert!(
        held.len() <= flood_limit && held.len() + 4 >= flood_limit,
        "about the limit let in: {}",
        held.len()
    );
    drop(held);
    // With the flood gone the node serves again.
    wait_until("the flooded node serves again", WAIT, || async {
        let r = reqwest::Client::new()
            .get(&flooded.url)
            .header("x-api-key", &key)
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    // Median over rounds of a per-round figure.
    let median = |f: Figure| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    let spread = |f: Figure| {
        let v: Vec<f64> = rows.iter().map(f).collect();
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        format!("{lo:.0}..{hi:.0}")
    };
    let mut figures: Vec<(&str, Figure)> = vec![
        ("added_latency_p50_us", &|r| r[3].0 - r[0].0),
        ("added_latency_p99_us", &|r| r[3].1 - r[0].1),
        ("nginx_added_latency_p50_us", &|r| r[1].0 - r[0].0),
        ("nginx_added_latency_p99_us", &|r| r[1].1 - r[0].1),
        ("telemetry_metrics_cost_p50_us", &|r| r[3].0 - r[2].0),
        ("telemetry_metrics_cost_p99_us", &|r| r[3].1 - r[2].1),
        ("telemetry_traces_cost_p50_us", &|r| r[4].0 - r[3].0),
        ("telemetry_traces_cost_p99_us", &|r| r[4].1 - r[3].1),
    ];
    if shoal.len() > 3 {
        figures.push(("added_over_baseline_p50_us", &|r| r[3].0 - r[5].0));
        figures.push(("added_over_baseline_p99_us", &|r| r[3].1 - r[5].1));
    }
    for (name, f) in &figures {
        println!("spread over rounds of {name}: {}", spread(*f));
    }
    for (name, f) in &figures {
        println!("RESULT {name} {:.0} us", median(*f));
    }
    println!("RESULT shoal_rps {shoal_rps:.0} requests/s");
    println!("RESULT shoal_bare_rps {:.0} requests/s", rps[0]);
    println!("RESULT shoal_traced_rps {:.0} requests/s", rps[2]);
    println!("RESULT nginx_rps {nginx_rps:.0} requests/s");
    println!("RESULT nginx_access_log_rps {nginx_logged_rps:.0} requests/s");
    for (name, pairs) in [
        ("rps_ratio_vs_nginx", &nginx_pairs),
        ("rps_ratio_vs_nginx_access_log", &logged_pairs),
    ] {
        let (median, lo, hi) = ratio(pairs);
        println!("spread over pairs of {name}: {lo:.2}..{hi:.2}");
        println!("RESULT {name} {median:.2} ratio");
    }
    println!("RESULT shoal_cpu_user_us_per_request {:.1} us", cpu[1].0);
    println!("RESULT shoal_cpu_system_us_per_request {:.1} us", cpu[1].1);
    println!(
        "RESULT postgres_cpu_us_per_request {:.1} us",
        postgres_us[1]
    );
    println!("RESULT nginx_cpu_user_us_per_request {:.1} us", nginx_cpu.0);
    println!(
        "RESULT nginx_cpu_system_us_per_request {:.1} us",
        nginx_cpu.1
    );
    println!(
        "RESULT nginx_access_log_cpu_user_us_per_request {:.1} us",
        nginx_logged_cpu.0
    );
    println!(
        "RESULT nginx_access_log_cpu_system_us_per_request {:.1} us",
        nginx_logged_cpu.1
    );
    // What a request costs the machine beyond the load generator and the upstream: the node's
    // and PostgreSQL's CPU against nginx's (lower is cheaper; 1.0 is nginx's cost).
    println!(
        "RESULT cpu_per_request_ratio_vs_nginx {:.2} ratio",
        (cpu[1].0 + cpu[1].1 + postgres_us[1]) / (nginx_cpu.0 + nginx_cpu.1)
    );
    if !baseline_pairs.is_empty() {
        let (median, lo, hi) = ratio(&baseline_pairs);
        println!("spread over pairs of rps_ratio_vs_baseline: {lo:.2}..{hi:.2}");
        println!("RESULT rps_ratio_vs_baseline {median:.2} ratio");
    }
    println!(
        "RESULT traced_rps_ratio_vs_metrics {:.2} ratio",
        rps[2] / rps[1]
    );
    println!("RESULT rss_10k_conns_mb {:.1} MiB", memory[0].0);
    println!("RESULT bytes_per_idle_conn {:.0} bytes", memory[0].1);
    println!("RESULT nginx_rss_10k_conns_mb {:.1} MiB", memory[1].0);
    println!("RESULT nginx_bytes_per_idle_conn {:.0} bytes", memory[1].1);
    println!("RESULT flood_attempts {flood} connections");
    println!("RESULT flood_refused {refused} connections");
    println!("RESULT flood_rss_mb {:.1} MiB", after as f64 / 1024.0);
    println!(
        "RESULT flood_rss_growth_mb {:.1} MiB",
        after.saturating_sub(before) as f64 / 1024.0
    );
}
