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
//!   both count, then healed: time until every node shows every key's true total. Meanwhile,
//!   every 250 ms of simulated time, a diagnostic line (not a RESULT) counts the nodes not
//!   exact yet (those missing some origin's batches, those holding every batch yet short) and
//!   what the cluster-wide counters did since the last line (send errors, full outbound
//!   queues, full inboxes, relay drops, repairs, anti-entropy rounds, digests, sync replies
//!   and gap requests received); from 1 s on, the last three nodes describe themselves: the
//!   keys they are short of and whose contribution differs, the origins whose batches they
//!   lack, and the messages they received since the heal.
//!
//! Sizes default to 10, 100 and 1,000 (`--sizes`), links to both profiles (`--links lan,wan`;
//! 1,000 nodes take some 25 minutes a profile on one core). `--relay-above N` overrides
//! `state.relay_above` (`--relay-above 100000`: direct sends at every size, for comparison).

#[path = "support/args.rs"]
mod args;

use std::collections::HashMap;
use std::time::Duration;

use shoal_state::SyncView;
use shoal_state::sim::{Link, SimNet};
use shoal_state::{CounterKey, Limit, Mode, Origin, SharedState, StateOptions};
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

/// How often, after the heal, the nodes still not exact are counted (simulated time).
const REPORT_EVERY: Duration = Duration::from_millis(250);
/// At most this many nodes still not exact are described one by one (`--stragglers`)...
const STRAGGLERS: &str = "3";
/// ...once this long after the heal (the usual heal takes about a second;
/// `--stragglers-after-ms`).
const STRAGGLERS_AFTER_MS: &str = "1000";

/// Cluster-wide sums of the status counters that tell a slow heal's story.
#[derive(Clone, Copy, Default)]
struct Counters {
    send_errors: u64,
    queue_full: u64,
    inbox_dropped: u64,
    relay_dropped: u64,
    repairs: u64,
    anti_entropy_rounds: u64,
    batches_relayed: u64,
    duplicates: u64,
    digests: u64,
    sync_replies: u64,
    missing: u64,
    shards: u64,
}

impl Counters {
    fn of(nodes: &[SharedState], net: &SimNet) -> Self {
        let mut c = Counters {
            inbox_dropped: net.inbox_dropped(),
            ..Counters::default()
        };
        for node in nodes {
            let s = node.status();
            let v = node.sync_view();
            let got = |kind: &str| {
                v.received
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map_or(0, |r| r.1)
            };
            c.send_errors += s.send_errors;
            c.queue_full += v.queue_full;
            c.relay_dropped += s.relay_dropped;
            c.repairs += s.repairs;
            c.anti_entropy_rounds += s.anti_entropy_rounds;
            c.batches_relayed += s.batches_relayed;
            c.duplicates += s.duplicates;
            c.digests += got("digest");
            c.sync_replies += got("sync reply");
            c.missing += got("missing");
            c.shards += got("shards");
        }
        c
    }

    fn minus(&self, o: &Counters) -> Counters {
        Counters {
            send_errors: self.send_errors - o.send_errors,
            queue_full: self.queue_full - o.queue_full,
            inbox_dropped: self.inbox_dropped - o.inbox_dropped,
            relay_dropped: self.relay_dropped - o.relay_dropped,
            repairs: self.repairs - o.repairs,
            anti_entropy_rounds: self.anti_entropy_rounds - o.anti_entropy_rounds,
            batches_relayed: self.batches_relayed - o.batches_relayed,
            duplicates: self.duplicates - o.duplicates,
            digests: self.digests - o.digests,
            sync_replies: self.sync_replies - o.sync_replies,
            missing: self.missing - o.missing,
            shards: self.shards - o.shards,
        }
    }
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "send errors {} (queue full {}), inbox drops {}, relay dropped {}, repairs {}, \
             anti-entropy rounds {}, relayed {}, duplicates {}, received: digests {} sync \
             replies {} gap requests {} shard states {}",
            self.send_errors,
            self.queue_full,
            self.inbox_dropped,
            self.relay_dropped,
            self.repairs,
            self.anti_entropy_rounds,
            self.batches_relayed,
            self.duplicates,
            self.digests,
            self.sync_replies,
            self.missing,
            self.shards,
        )
    }
}

/// Diagnostic lines after the heal (not RESULT lines).
struct Watch {
    at_heal: Counters,
    last: Counters,
    /// Per node, the messages it had received at the heal, by kind.
    received_at_heal: Vec<Vec<(&'static str, u64)>>,
}

impl Watch {
    fn report(
        &mut self,
        nodes: &[SharedState],
        net: &SimNet,
        healed: Instant,
        waiting: &[usize],
        last_seq: &HashMap<Origin, (usize, u64)>,
    ) {
        let now = Counters::of(nodes, net);
        // Of the nodes not exact, those still missing some origin's batches (and how many
        // origins in all), the rest holding every batch yet short of some key's total.
        let (mut behind, mut pairs) = (0, 0);
        for &i in waiting {
            let v = nodes[i].sync_view();
            let have: HashMap<Origin, u64> = v.seen.iter().map(|s| (s.0, s.1)).collect();
            let missing = last_seq
                .iter()
                .filter(|(o, (_, seq))| **o != v.origin && have.get(o).copied().unwrap_or(0) < *seq)
                .count();
            if missing > 0 {
                behind += 1;
                pairs += missing;
            }
        }
        println!(
            "  heal +{} ms: {} nodes not exact ({behind} missing batches of {pairs} origins in \
             all, {} holding every batch); meanwhile {}",
            healed.elapsed().as_millis(),
            waiting.len(),
            waiting.len() - behind,
            now.minus(&self.last)
        );
        self.last = now;
    }

    /// What node `i` still lacks: keys short of their total, origins whose batches it does
    /// not have up to their last, and what it received since first described.
    #[expect(clippy::too_many_arguments, reason = "a diagnostic's inputs")]
    fn straggler(
        &self,
        nodes: &[SharedState],
        views: &[SyncView],
        load: &Load,
        last_seq: &HashMap<Origin, (usize, u64)>,
        i: usize,
        side: impl Fn(usize) -> char,
        waiting: &[usize],
    ) {
        let v = &views[i];
        let short: Vec<(usize, u64, u64)> = load
            .keys
            .iter()
            .zip(&load.counted)
            .enumerate()
            .filter_map(|(k, (key, &counted))| {
                let total = nodes[i].totals(key)[1];
                (total != counted).then_some((k, total, counted))
            })
            .collect();
        let seen: HashMap<Origin, (u64, usize, u64)> =
            v.seen.iter().map(|&(o, c, a, l)| (o, (c, a, l))).collect();
        let mut behind: Vec<String> = last_seq
            .iter()
            .filter(|(o, _)| **o != v.origin)
            .filter_map(|(o, &(j, seq))| {
                let (have, above, last) = seen.get(o).copied().unwrap_or_default();
                (have < seq).then(|| {
                    // Who holds every batch of it: whom a digest could get it from.
                    let holders: Vec<usize> = (0..views.len())
                        .filter(|&h| {
                            let w = &views[h];
                            w.origin == *o
                                || w.seen
                                    .binary_search_by_key(o, |s| s.0)
                                    .is_ok_and(|at| w.seen[at].1 >= seq)
                        })
                        .collect();
                    let on_a = holders.iter().filter(|&&h| side(h) == 'a').count();
                    format!(
                        "n{j}({}) {have} of {seq} (+{above} past a gap, last {} ms ago; held \
                         by {} nodes, {on_a} on side a)",
                        side(j),
                        v.now_ms.saturating_sub(last),
                        holders.len(),
                    )
                })
            })
            .collect();
        behind.sort();
        // Per key short, whose contribution differs from an exact node's.
        let exact = (0..nodes.len()).find(|j| !waiting.contains(j));
        let whose: Vec<String> = short
            .iter()
            .take(3)
            .map(|&(k, total, counted)| {
                let mine = nodes[i].contributions(&load.keys[k], 1);
                let diff: Vec<String> = exact
                    .map(|j| nodes[j].contributions(&load.keys[k], 1))
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|c| {
                        let here = mine
                            .iter()
                            .find(|m| m.node == c.node)
                            .map_or(0, |m| m.count);
                        (here != c.count).then(|| format!("{} {here} of {}", c.node, c.count))
                    })
                    .collect();
                format!("u{k} {total} of {counted} [{}]", diff.join(", "))
            })
            .collect();
        let at_heal = &self.received_at_heal[i];
        let received: Vec<String> = v
            .received
            .iter()
            .zip(at_heal.iter())
            .filter(|((_, now), (_, then))| now > then)
            .map(|((k, now), (_, then))| format!("{k} {}", now - then))
            .collect();
        println!(
            "    straggler n{i}({}): {} keys short ({}); {} origins behind ({}); fresh backs {}, \
             replay log {}, queue full {}; received since the heal: {}",
            side(i),
            short.len(),
            whose.join("; "),
            behind.len(),
            behind
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            v.fresh_backs,
            v.replay_log,
            v.queue_full,
            received.join(", ")
        );
    }
}

struct Run {
    n: usize,
    link: Link,
    rate: u64,
    seconds: u64,
    partition_seconds: u64,
    seed: u64,
    relay_above: usize,
    clock_base_ms: i64,
    clock_spread_ms: i64,
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
        clock_base_ms,
        clock_spread_ms,
    } = run;
    let net = SimNet::new(seed, link);
    let net_started = Instant::now();
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    // Node i's clock `clock_base_ms + i * clock_spread_ms / n` ahead of the simulated one (what
    // unpinned clocks, read from the machine as each node was made, used to do).
    let transports: Vec<_> = (0..n)
        .map(|i| {
            let skew = clock_base_ms + (i as i64) * clock_spread_ms / n as i64;
            net.join_skewed(&format!("n{i}"), skew)
        })
        .collect();
    let making = std::time::Instant::now();
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
    println!(
        "  {n} nodes made and attached in {:.1} s of real time",
        making.elapsed().as_secs_f64()
    );
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
    println!(
        "  healed at {} ms of simulated time",
        healed.duration_since(net_started).as_millis()
    );
    let side = |i: usize| if i < n / 2 { 'a' } else { 'b' };
    let mut watch = Watch {
        at_heal: Counters::of(&nodes, &net),
        last: Counters::of(&nodes, &net),
        received_at_heal: nodes.iter().map(|s| s.sync_view().received).collect(),
    };
    let mut next_report = healed + REPORT_EVERY;
    let stragglers: usize = arg("--stragglers", STRAGGLERS)
        .parse()
        .expect("--stragglers: a number");
    let stragglers_after = Duration::from_millis(
        arg("--stragglers-after-ms", STRAGGLERS_AFTER_MS)
            .parse()
            .expect("--stragglers-after-ms: a number"),
    );
    let mut waiting: Vec<usize> = (0..n).collect();
    while !waiting.is_empty() {
        // Checking a thousand nodes' thousand keys costs more than the simulation between.
        tokio::time::sleep(Duration::from_millis(if n >= 500 { 50 } else { 10 })).await;
        not_exact(&nodes, &load, &mut waiting);
        if Instant::now() >= next_report && !waiting.is_empty() {
            next_report += REPORT_EVERY;
            // Each origin's last batch number (what was counted just before the heal may
            // leave in a batch just after it).
            let views: Vec<SyncView> = nodes.iter().map(SharedState::sync_view).collect();
            let last_seq: HashMap<Origin, (usize, u64)> = views
                .iter()
                .enumerate()
                .map(|(i, v)| (v.origin, (i, v.seq)))
                .collect();
            watch.report(&nodes, &net, healed, &waiting, &last_seq);
            // The last few left explain themselves: what they lack and what they received.
            if waiting.len() <= stragglers && healed.elapsed() >= stragglers_after {
                for &i in &waiting {
                    watch.straggler(&nodes, &views, &load, &last_seq, i, side, &waiting);
                }
            }
        }
        assert!(
            healed.elapsed() < Duration::from_secs(120),
            "{} nodes not exact 120 s after the heal (seed {seed})",
            waiting.len()
        );
    }
    let total = Counters::of(&nodes, &net).minus(&watch.at_heal);
    println!(
        "  healed in {:.0} ms; since the heal: {total}",
        healed.elapsed().as_secs_f64() * 1000.0
    );
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
    let clock_base_ms: i64 = arg("--clock-base-ms", "0")
        .parse()
        .expect("--clock-base-ms: a number");
    let clock_spread_ms: i64 = arg("--clock-spread-ms", "0")
        .parse()
        .expect("--clock-spread-ms: a number");
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
                clock_base_ms,
                clock_spread_ms,
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
