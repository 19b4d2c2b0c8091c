//! `scripts/bench scale` (simulated part): what shared state costs each node as the cluster
//! grows, on the deterministic simulator (`shoal_state::sim`), so sizes two cores could never
//! run as processes are measured side by side in one run.
//!
//! Per size: N members on LAN-like links (0.2 ms, 0.1 ms jitter, 1% loss) or WAN-like ones
//! (20 ms, 10 ms jitter, 1% loss); a fixed cluster-wide load of `--rate` increments/s (default
//! 10,000) over 1,000 keys, spread round robin over every node, for `--seconds` of simulated
//! time after a warm-up. Figures:
//! - bytes each node sends per simulated second (shared-state messages only: membership
//!   gossip is the cluster crate's and is not simulated);
//! - propagation: probes on their own key, one node increments, time until every node counts
//!   it (p99 over the probes);
//! - lost / double-counted increments: every node's total of every key after the load stops,
//!   against what was counted;
//! - heal to exact: the cluster cut in two halves for `--partition-seconds` (default 2) while
//!   both count, then healed: time until every node shows every key's true total.
//!
//! Sizes default to 10, 100 and 1,000 (`--sizes`), links to both profiles (`--links lan,wan`;
//! 1,000 nodes take some 25 minutes a profile on one core). `--relay-above N` overrides
//! `state.relay_above` (`--relay-above 100000`: direct sends at every size, for comparison).

#[path = "support/args.rs"]
mod args;

use std::time::Duration;

use shoal_state::sim::{Link, SimNet};
use shoal_state::{CounterKey, Limit, Mode, SharedState, StateOptions};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use args::arg;

const COUNT: Limit = Limit {
    window: 1,
    max: u64::MAX,
    mode: Mode::Eventual,
};

/// The steady load: round robin over nodes and keys, remembering what was counted.
struct Load {
    per_ms: u64,
    keys: Vec<CounterKey>,
    counted: Vec<u64>,
    next: usize,
}

impl Load {
    /// One millisecond's share of the cluster-wide rate.
    async fn one_ms(&mut self, nodes: &[SharedState]) {
        for _ in 0..self.per_ms {
            let k = self.next % self.keys.len();
            nodes[self.next % nodes.len()]
                .check(&self.keys[k], COUNT, 1)
                .await;
            self.counted[k] += 1;
            self.next += 1;
        }
    }
}

struct Figures {
    bytes_per_node_per_s: f64,
    propagation_p99_ms: f64,
    lost: u64,
    double_counted: u64,
    heal_ms: f64,
}

/// Nodes not yet showing the true total of every key (once exact, a node stays so while
/// nothing is counted).
fn not_exact(nodes: &[SharedState], load: &Load, waiting: &mut Vec<usize>) {
    waiting.retain(|&i| {
        load.keys
            .iter()
            .zip(&load.counted)
            .any(|(key, &counted)| nodes[i].totals(key)[1] != counted)
    });
}

struct Run {
    n: usize,
    link: Link,
    rate: u64,
    seconds: u64,
    partition_seconds: u64,
    seed: u64,
    relay_above: usize,
}

async fn measure(run: Run) -> Figures {
    let Run {
        n,
        link,
        rate,
        seconds,
        partition_seconds,
        seed,
        relay_above,
    } = run;
    let net = SimNet::new(seed, link);
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let transports: Vec<_> = (0..n).map(|i| net.join(&format!("n{i}"))).collect();
    let nodes: Vec<SharedState> = transports
        .iter()
        .map(|t| {
            let state = t.state(StateOptions {
                relay_above,
                ..StateOptions::default()
            });
            state.attach(t.clone(), stop.clone(), &mut tasks);
            state
        })
        .collect();
    let keys: Vec<CounterKey> = (0..1000)
        .map(|i| CounterKey::new(format!("u{i}"), "bucket", "read").unwrap())
        .collect();
    // Warm-up: start-up replays done.
    while !nodes.iter().all(|s| s.replay().done) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent_before: u64 = transports.iter().map(|t| net.bytes_sent(t.address)).sum();
    let started = Instant::now();
    let mut load = Load {
        per_ms: (rate / 1000).max(1),
        counted: vec![0; keys.len()],
        next: 0,
        keys,
    };
    let mut propagation = Vec::new();
    let probe_every = Duration::from_millis(50);
    let mut next_probe = started + probe_every;
    let mut probes = 0u64;
    let probe = CounterKey::new("probe", "bucket", "read").unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        load.one_ms(&nodes).await;
        if Instant::now() >= next_probe {
            next_probe += probe_every;
            probes += 1;
            let at = Instant::now();
            nodes[probes as usize % n].check(&probe, COUNT, 1).await;
            // Load keeps flowing while the probe travels: checked each millisecond.
            let mut waiting = true;
            while waiting {
                tick.tick().await;
                load.one_ms(&nodes).await;
                waiting = !nodes.iter().all(|s| s.totals(&probe)[1] >= probes);
                assert!(
                    at.elapsed() < Duration::from_secs(30),
                    "probe {probes} never arrived"
                );
            }
            propagation.push(at.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent: u64 = transports
        .iter()
        .map(|t| net.bytes_sent(t.address))
        .sum::<u64>()
        - sent_before;
    // Settle, then compare every node's totals with what was counted.
    let settle_until = Instant::now() + Duration::from_secs(10);
    let (lost, double) = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (mut l, mut d) = (0, 0);
        for s in &nodes {
            for (key, &counted) in load.keys.iter().zip(&load.counted) {
                let total = s.totals(key)[1];
                l += counted.saturating_sub(total);
                d += total.saturating_sub(counted);
            }
        }
        if (l == 0 && d == 0) || Instant::now() >= settle_until {
            break (l, d);
        }
    };
    // Heal: both halves count while cut off from each other, then the cut heals and the load
    // stops; every node must reach the true totals.
    let addresses: Vec<_> = transports.iter().map(|t| t.address).collect();
    let (a, b) = addresses.split_at(n / 2);
    net.partition(a, b);
    let cut_at = Instant::now();
    while cut_at.elapsed() < Duration::from_secs(partition_seconds) {
        tick.tick().await;
        load.one_ms(&nodes).await;
    }
    net.heal();
    let healed = Instant::now();
    let mut waiting: Vec<usize> = (0..n).collect();
    while !waiting.is_empty() {
        // Checking a thousand nodes' thousand keys costs more than the simulation between.
        tokio::time::sleep(Duration::from_millis(if n >= 500 { 50 } else { 10 })).await;
        not_exact(&nodes, &load, &mut waiting);
        assert!(
            healed.elapsed() < Duration::from_secs(120),
            "{} nodes not exact 120 s after the heal (seed {seed})",
            waiting.len()
        );
    }
    let heal_ms = healed.elapsed().as_secs_f64() * 1000.0;
    let statuses: Vec<_> = nodes.iter().map(SharedState::status).collect();
    let sum = |f: fn(&shoal_state::StateStatus) -> u64| statuses.iter().map(f).sum::<u64>();
    println!(
        "  cluster-wide: batches sent {} received {} relayed {} duplicates {} repairs {} \
         anti-entropy rounds {} rejected {} relay dropped {} send errors {}",
        sum(|s| s.batches_sent),
        sum(|s| s.batches_received),
        sum(|s| s.batches_relayed),
        sum(|s| s.duplicates),
        sum(|s| s.repairs),
        sum(|s| s.anti_entropy_rounds),
        sum(|s| s.rejected),
        sum(|s| s.relay_dropped),
        sum(|s| s.send_errors),
    );
    stop.cancel();
    propagation.sort_by(f64::total_cmp);
    let p99 = propagation[((propagation.len() as f64 - 1.0) * 0.99).round() as usize];
    Figures {
        bytes_per_node_per_s: sent as f64 / n as f64 / elapsed,
        propagation_p99_ms: p99,
        lost,
        double_counted: double,
        heal_ms,
    }
}

fn main() {
    let sizes: Vec<usize> = arg("--sizes", "10,100,1000")
        .split(',')
        .map(|s| s.parse().expect("--sizes: numbers separated by commas"))
        .collect();
    let rate: u64 = arg("--rate", "10000").parse().expect("--rate: a number");
    let seconds: u64 = arg("--seconds", "3").parse().expect("--seconds: a number");
    let seed: u64 = arg("--seed", "1").parse().expect("--seed: a number");
    let partition_seconds: u64 = arg("--partition-seconds", "2")
        .parse()
        .expect("--partition-seconds: a number");
    let relay_above: usize = arg(
        "--relay-above",
        &StateOptions::default().relay_above.to_string(),
    )
    .parse()
    .expect("--relay-above: a number");
    let (mut lost, mut double) = (0, 0);
    let links = arg("--links", "lan,wan");
    for (profile, link) in [("lan", Link::LAN), ("wan", Link::WAN)] {
        if !links.split(',').any(|l| l == profile) {
            continue;
        }
        for &n in &sizes {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap();
            let real = std::time::Instant::now();
            let f = runtime.block_on(measure(Run {
                n,
                link,
                rate,
                seconds,
                partition_seconds,
                seed,
                relay_above,
            }));
            println!(
                "{profile} {n} nodes ({}): {:.0} bytes/node/s, propagation p99 {:.1} ms, lost {}, double {}, heal {:.0} ms ({:.1} s to simulate, seed {seed})",
                if n > relay_above { "relay" } else { "direct" },
                f.bytes_per_node_per_s,
                f.propagation_p99_ms,
                f.lost,
                f.double_counted,
                f.heal_ms,
                real.elapsed().as_secs_f64()
            );
            let suffix = if profile == "lan" {
                String::new()
            } else {
                "_wan".into()
            };
            println!(
                "RESULT sim_bytes_per_node_per_s_{n}_nodes{suffix} {:.0} bytes/s",
                f.bytes_per_node_per_s
            );
            println!(
                "RESULT sim_propagation_p99_{n}_nodes_ms{suffix} {:.1} ms",
                f.propagation_p99_ms
            );
            println!(
                "RESULT sim_heal_to_exact_{n}_nodes_ms{suffix} {:.0} ms",
                f.heal_ms
            );
            lost += f.lost;
            double += f.double_counted;
        }
    }
    println!("RESULT sim_lost_increments {lost} increments");
    println!("RESULT sim_double_counted {double} increments");
}
