//! `scripts/bench state`: the shared state's figures, each next to what it is judged against.
//!
//! The whole run happens in a network and mount namespace of its own (the binary re-executes
//! itself under `unshare`), so the loopback byte counter sees only this benchmark's traffic
//! and the partition phase can cut links.
//!
//! - propagation: an increment on one node until every other node counts it, at 3 and 25
//!   nodes (each node a `Cluster` + `SharedState` on its own 127.0.0.x, one process).
//! - over-admission: the seed policy (5 per minute), requests round-robin over 3 nodes at a
//!   steady 20 per second, 20 runs in eventual and in strict mode.
//! - bytes per increment: loopback bytes during a sustained 10,000 increments/s over 3 nodes
//!   (1,000 keys), minus the idle gossip measured just before.
//! - local read cost: both cores reading totals of random keys at once.
//! - heal to exact: real `shoal` processes, one isolated on its own network namespace until
//!   the others declare it dead, both sides counting, then reconnected: time until every node
//!   shows the exact total.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use shoal_cluster::{Cluster, ClusterOptions, MemberState, NodeIdentity, NodeMeta};
use shoal_config::{ClusterConfig, SecretKey};
use shoal_state::{CounterKey, Limit, Mode, SharedState, StateOptions};
use shoal_testkit::*;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

fn summary(what: &str, mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
    println!(
        "{what}: n={} min {:.1} p50 {p50:.1} p99 {p99:.1} max {:.1}",
        v.len(),
        v[0],
        v[v.len() - 1]
    );
    (p50, p99)
}

struct InProcess {
    states: Vec<SharedState>,
    clusters: Vec<Cluster>,
    stop: CancellationToken,
    _tasks: Vec<JoinSet<()>>,
}

async fn start_cluster(size: usize) -> InProcess {
    let stop = CancellationToken::new();
    let mut states = Vec::new();
    let mut clusters = Vec::new();
    let mut tasks = Vec::new();
    let mut seed: Option<SocketAddr> = None;
    for i in 0..size {
        let mut options = ClusterOptions::from_config(&ClusterConfig::default());
        options.bind = format!("127.0.0.{}:7946", 10 + i).parse().unwrap();
        options.keys = vec![SecretKey::new([7; 32])];
        let meta = NodeMeta {
            node_name: format!("b{i}"),
            version: "bench".into(),
            http: "127.0.0.1:1".into(),
            started_at_ms: 0,
            load: Default::default(),
            region: None,
        };
        let cluster = Cluster::start(options, &NodeIdentity::random(), meta)
            .await
            .unwrap();
        let state = SharedState::new(StateOptions::default());
        let mut set = JoinSet::new();
        state.attach(std::sync::Arc::new(cluster.clone()), stop.clone(), &mut set);
        if let Some(seed) = seed {
            while cluster.join(&[seed]).await.joined.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            seed = Some(cluster.advertise_address());
            state.settle_alone();
        }
        states.push(state);
        clusters.push(cluster);
        tasks.push(set);
    }
    wait_until("every node sees all alive", WAIT, || async {
        clusters
            .iter()
            .all(|c| {
                c.members()
                    .iter()
                    .filter(|m| m.state == MemberState::Alive)
                    .count()
                    == size
            })
            .then_some(())
    })
    .await;
    wait_until("every node's state has all peers", WAIT, || async {
        states
            .iter()
            .all(|s| s.status().peers == size - 1 && s.replay().done)
            .then_some(())
    })
    .await;
    InProcess {
        states,
        clusters,
        stop,
        _tasks: tasks,
    }
}

impl InProcess {
    async fn shutdown(self) {
        self.stop.cancel();
        for c in &self.clusters {
            c.shutdown().await;
        }
    }
}

fn key(subject: String) -> CounterKey {
    CounterKey::new(subject, "sensitive-bucket", "read").unwrap()
}

/// Milliseconds from an increment on one node until every other node counts it.
async fn propagation(c: &InProcess, rounds: usize, label: &str) -> Vec<f64> {
    let mut samples = Vec::new();
    for round in 0..rounds {
        let k = key(format!("{label}-{round}"));
        let origin = round % c.states.len();
        let start = Instant::now();
        c.states[origin].increment(&k, 1);
        let mut pending: Vec<usize> = (0..c.states.len()).filter(|i| *i != origin).collect();
        while !pending.is_empty() {
            pending.retain(|i| c.states[*i].totals(&k)[0] < 1);
            if start.elapsed() > WAIT {
                panic!("increment not visible on {pending:?} after {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
        // Rounds apart, so one round's traffic does not queue behind the last.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    samples
}

/// Requests passed beyond the limit of 5, per run of 20 requests at 20/s round-robin.
async fn over_admission(c: &InProcess, mode: Mode, runs: usize) -> Vec<f64> {
    let mut extra = Vec::new();
    for run in 0..runs {
        let k = key(format!("over-{mode:?}-{run}"));
        let limit = Limit {
            window: 0,
            max: 5,
            mode,
        };
        let mut passed = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for i in 0..20 {
            tick.tick().await;
            if c.states[i % 3].check(&k, limit, 1).await.allowed {
                passed += 1;
            }
        }
        extra.push(passed.saturating_sub(5) as f64);
    }
    extra
}

/// Loopback bytes per increment at `rate` increments/s for `secs`, idle gossip subtracted.
async fn bytes_per_increment(c: &InProcess, rate: u64, secs: u64) -> f64 {
    let idle_start = lo_tx_bytes();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let idle = lo_tx_bytes() - idle_start;
    let keys: Vec<CounterKey> = (0..1000).map(|i| key(format!("load-{i}"))).collect();
    let start_bytes = lo_tx_bytes();
    let started = Instant::now();
    let per_tick = rate / 1000;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut n: u64 = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let due = (started.elapsed().as_millis() as u64 + 1) * per_tick;
        while n < due {
            let k = &keys[(rand::random::<u64>() % 1000) as usize];
            c.states[(n % 3) as usize].increment(k, 1);
            n += 1;
        }
    }
    // Until every node counts every increment: the last flushes have gone out.
    wait_until("every increment counted everywhere", WAIT, || async {
        c.states
            .iter()
            .all(|s| keys.iter().map(|k| s.totals(k)[0]).sum::<u64>() == n)
            .then_some(())
    })
    .await;
    let busy = lo_tx_bytes() - start_bytes;
    let elapsed = started.elapsed().as_secs_f64();
    let idle_share = idle as f64 * elapsed / secs as f64;
    println!(
        "bytes: {n} increments in {:.2} s ({:.0}/s); loopback {busy} B busy, {idle} B idle per {secs} s",
        started.elapsed().as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64()
    );
    (busy as f64 - idle_share).max(0.0) / n as f64
}

/// ns per totals() read, two threads on random keys at once.
fn local_read_ns(state: &SharedState) -> f64 {
    let keys: Arc<Vec<CounterKey>> =
        Arc::new((0..1000).map(|i| key(format!("load-{i}"))).collect());
    let go = Arc::new(AtomicBool::new(false));
    let reads = 500_000u64;
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (state, keys, go) = (state.clone(), keys.clone(), go.clone());
            std::thread::spawn(move || {
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                let start = Instant::now();
                let mut x = t as u64 + 1;
                for _ in 0..reads {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    std::hint::black_box(state.totals(&keys[(x >> 33) as usize % 1000]));
                }
                start.elapsed().as_nanos() as f64 / reads as f64
            })
        })
        .collect();
    go.store(true, Ordering::Release);
    let per: Vec<f64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    per.iter().sum::<f64>() / per.len() as f64
}

async fn total(api: &Api, subject: &str) -> Option<u64> {
    let path =
        format!("/api/v1/state/counters?subject={subject}&resource=sensitive-bucket&action=read");
    api.get(&path).await.1["access_count"]["last_minute"].as_u64()
}

async fn add(api: &Api, subject: &str, by: u64) {
    let body =
        json!({"subject": subject, "resource": "sensitive-bucket", "action": "read", "by": by});
    let (code, b) = api.post("/api/v1/state/increment", body).await;
    assert_eq!(code, 200, "{b}");
}

/// Milliseconds from reconnecting an isolated node until every node shows the exact total.
async fn heal_rounds(rounds: usize) -> Vec<f64> {
    let db = database().await;
    let url = db.socket_url().expect("private PostgreSQL");
    let net = TestNetwork::new(3);
    let (_nodes, apis) = start_netns_cluster(&net, &url).await;
    let isolated_id = cluster_status(apis[2].base.clone()).await.unwrap()["cluster"]["local_id"]
        .as_str()
        .unwrap()
        .to_string();
    let member_state = |status: serde_json::Value, id: &str| {
        status["cluster"]["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["id"] == id).cloned())
            .map(|m| m["state"].as_str().unwrap_or_default().to_string())
    };
    let mut samples = Vec::new();
    for round in 0..rounds {
        let subject = format!("heal-{round}");
        net.isolate(2);
        wait_until("isolated node dead", WAIT, || async {
            let s = cluster_status(apis[0].base.clone()).await?;
            (member_state(s, &isolated_id).as_deref() == Some("dead")).then_some(())
        })
        .await;
        for i in 0..10u64 {
            add(&apis[(i % 3) as usize], &subject, 1 + i % 2).await;
        }
        let expected = 15;
        let start = Instant::now();
        net.reconnect(2);
        let mut exact_at: Vec<Option<f64>> = vec![None; apis.len()];
        loop {
            for (i, api) in apis.iter().enumerate() {
                if exact_at[i].is_none() && total(api, &subject).await == Some(expected) {
                    exact_at[i] = Some(start.elapsed().as_secs_f64() * 1000.0);
                }
            }
            if exact_at.iter().all(Option::is_some) {
                break;
            }
            assert!(
                start.elapsed() < WAIT,
                "round {round}: not exact after heal"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        let each: Vec<String> = exact_at
            .iter()
            .map(|t| format!("{:.0}", t.unwrap_or_default()))
            .collect();
        println!(
            "heal round {round}: exact everywhere {ms:.0} ms after reconnecting (per node: {})",
            each.join(", ")
        );
        samples.push(ms);
        wait_until("all alive again", WAIT, || async {
            let s = cluster_status(apis[0].base.clone()).await?;
            (member_state(s, &isolated_id).as_deref() == Some("alive")).then_some(())
        })
        .await;
    }
    samples
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !in_private_namespaces_bench() {
        return;
    }
    let rounds = arg("--rounds", 200);
    let rounds_large = arg("--rounds-large", 100);
    let runs = arg("--runs", 20);
    let heal = arg("--heal-rounds", 5);

    let three = start_cluster(3).await;
    let (p50_3, p99_3) = summary(
        "propagation 3 nodes (ms)",
        propagation(&three, rounds, "p3").await,
    );
    let mut eventual = over_admission(&three, Mode::Eventual, runs).await;
    let strict = over_admission(&three, Mode::Strict, runs).await;
    summary("over-admission eventual", eventual.clone());
    summary("over-admission strict", strict.clone());
    eventual.sort_by(f64::total_cmp);
    let eventual_median = percentile(&eventual, 0.5);
    let strict_max = strict.iter().copied().fold(0.0, f64::max);
    let bytes = bytes_per_increment(&three, 10_000, 5).await;
    let read_ns = local_read_ns(&three.states[0]);
    three.shutdown().await;

    let large = start_cluster(25).await;
    let (p50_25, p99_25) = summary(
        "propagation 25 nodes (ms)",
        propagation(&large, rounds_large, "p25").await,
    );
    large.shutdown().await;

    let (heal_p50, heal_max) = {
        let s = heal_rounds(heal).await;
        let max = s.iter().copied().fold(0.0, f64::max);
        (summary("heal to exact (ms)", s).0, max)
    };

    println!("RESULT propagation_p50_3_nodes_ms {p50_3:.1} ms");
    println!("RESULT propagation_p99_3_nodes_ms {p99_3:.1} ms");
    println!("RESULT propagation_p50_25_nodes_ms {p50_25:.1} ms");
    println!("RESULT propagation_p99_25_nodes_ms {p99_25:.1} ms");
    println!("RESULT over_admission_eventual_median {eventual_median:.0} requests");
    println!("RESULT over_admission_strict_max {strict_max:.0} requests");
    println!("RESULT heal_to_exact_ms {heal_p50:.0} ms");
    println!("RESULT heal_to_exact_max_ms {heal_max:.0} ms");
    println!("RESULT bytes_per_increment {bytes:.1} bytes");
    println!("RESULT local_read_ns {read_ns:.0} ns");
}
