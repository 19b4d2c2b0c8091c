//! `scripts/bench regions`: two regions of three nodes on the simulator, each node in its
//! region's cluster (LAN) and the global one (LAN inside a region, the WAN profile between:
//! 50 ms plus up to 100 ms, 1% loss). Figures:
//! - `global_event_p99_ms`: an event published on a node of one region until each node of the
//!   other has it (p99 over `--events`, simulated time; goal <= 1000);
//! - `global_limit_over_admission`: requests admitted over a global limit of N a minute
//!   (N = `--limit`, default 600) at a steady ten times that rate for one window, as a
//!   percentage of N, median over `--runs` seeds (default 20; goal <= 1%), and the largest;
//! - `regional_decision_added_us`: a regional decision (count in the region's cluster) on a
//!   node that is also in a global cluster, against the same decision on a node in one
//!   cluster, both in wall-clock time on this machine, alternating rounds (goal 0 within
//!   noise); `global_decision_added_us` is what counting globally adds when a policy reads
//!   the global figure.

#[path = "support/args.rs"]
mod args;

use std::time::{Duration, Instant};

use shoal_state::regions::{INTER_REGION, fleet};
use shoal_state::sim::{Link, SimNet};
use shoal_state::{CounterKey, Limit, Mode, SharedState, StateOptions};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

fn number(name: &str, default: &str) -> u64 {
    args::arg(name, default)
        .parse()
        .unwrap_or_else(|_| panic!("{name}: a number"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let runs = number("--runs", "20");
    let limit = number("--limit", "600");
    let events = number("--events", "200");
    let rounds = number("--rounds", "7");
    let paused = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
    };

    let delays = paused().block_on(event_delays(events));
    println!(
        "RESULT global_event_p99_ms {:.0} ms",
        percentile(&delays, 0.99)
    );
    println!(
        "RESULT global_event_p50_ms {:.0} ms",
        percentile(&delays, 0.5)
    );

    let mut over: Vec<f64> = (1..=runs)
        .map(|seed| {
            let admitted = paused().block_on(limit_run(seed, limit));
            let pct = (admitted as f64 - limit as f64).max(0.0) / limit as f64 * 100.0;
            eprintln!("seed {seed}: {admitted} admitted against {limit}");
            pct
        })
        .collect();
    over.sort_by(f64::total_cmp);
    println!(
        "RESULT global_limit_over_admission {:.2} %",
        percentile(&over, 0.5)
    );
    println!(
        "RESULT global_limit_over_admission_max {:.2} %",
        over[over.len() - 1]
    );

    let live = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (regional, global) = live.block_on(decision_costs(rounds));
    println!("RESULT regional_decision_added_us {regional:.2} us");
    println!("RESULT global_decision_added_us {global:.2} us");
}

/// Delivery delays (ms of simulated time) from a node of `eu` to every node of `us`.
async fn event_delays(events: u64) -> Vec<f64> {
    let fleet = fleet(42, &["eu", "us"], 3, Link::LAN, INTER_REGION);
    // Measured once every node sees both regions in the global cluster.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !fleet
        .nodes
        .iter()
        .all(|n| n.services.global_counters.regions().len() == 2)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the regions did not see each other within a simulated minute"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut delays = Vec::new();
    let (eu, us): (Vec<_>, Vec<_>) = fleet.nodes.iter().partition(|n| n.region == "eu");
    let mut receivers: Vec<_> = us.iter().map(|n| n.services.events.subscribe()).collect();
    for i in 0..events {
        let sent = tokio::time::Instant::now();
        let payload = format!("user=u{i}").into_bytes();
        eu[i as usize % eu.len()]
            .services
            .events
            .publish("revoke", payload.clone())
            .expect("publish");
        for rx in &mut receivers {
            loop {
                let e = rx.recv().await.expect("event");
                if e.payload == payload {
                    break;
                }
            }
            delays.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    delays.sort_by(f64::total_cmp);
    delays
}

/// One window at ten times the global limit, spread over every node: how many were admitted.
async fn limit_run(seed: u64, limit: u64) -> u64 {
    let fleet = fleet(seed, &["eu", "us"], 3, Link::LAN, INTER_REGION);
    let key = CounterKey::new("alice", "reports/sensitive", "access").expect("key");
    let per_second = limit * 10 / 60;
    let step = Duration::from_micros(1_000_000 / per_second);
    let mut admitted = 0;
    for i in 0..per_second * 60 {
        let node = &fleet.nodes[i as usize % fleet.nodes.len()];
        admitted += u64::from(node.offer(&key, limit).await);
        tokio::time::sleep(step).await;
    }
    admitted
}

const COUNT: Limit = Limit {
    window: 0,
    max: u64::MAX,
    mode: Mode::Eventual,
};

/// Median per-decision cost differences over `rounds` alternating rounds of 20,000 decisions
/// on 1,000 keys: (regional decision on a node with a global cluster − on a node without,
/// global counting's cost on top).
async fn decision_costs(rounds: u64) -> (f64, f64) {
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let single_net = SimNet::new(1, Link::IDEAL);
    let single = SharedState::new(StateOptions::default());
    single.attach(single_net.join("s0"), stop.clone(), &mut tasks);
    let region_net = SimNet::new(2, Link::IDEAL);
    let global_net = SimNet::new(3, Link::IDEAL);
    let regional = SharedState::new(StateOptions::default());
    regional.attach(region_net.join("r0"), stop.clone(), &mut tasks);
    let global = SharedState::new(StateOptions::default());
    global.attach(
        global_net.join_in_region("r0", "eu"),
        stop.clone(),
        &mut tasks,
    );
    let services = shoal_state::Services {
        region: "eu".into(),
        counters: regional.clone(),
        cache: regional.clone(),
        events: global.clone(),
        global_counters: global,
    };
    let keys: Vec<CounterKey> = (0..1000)
        .map(|i| CounterKey::new(format!("u{i}"), "bucket", "access").expect("key"))
        .collect();
    let per_round = 20_000usize;
    let time = |f: &dyn Fn(&CounterKey) -> u64| {
        let started = Instant::now();
        let mut sink = 0u64;
        for i in 0..per_round {
            sink = sink.wrapping_add(f(&keys[i % keys.len()]));
        }
        std::hint::black_box(sink);
        started.elapsed().as_secs_f64() * 1e6 / per_round as f64
    };
    let mut added = Vec::new();
    let mut global_added = Vec::new();
    for _ in 0..rounds {
        let mut one = 0.0;
        let mut two = 0.0;
        let mut with_global = 0.0;
        // The decision is synchronous for eventual counts: `check` completes at once.
        let decide = |state: &SharedState, key: &CounterKey| {
            futures_lite_block(state.check(key, COUNT, 1)).totals[0]
        };
        one += time(&|k| decide(&single, k));
        two += time(&|k| decide(&services.counters, k));
        with_global += time(&|k| {
            let totals = futures_lite_block(services.counters.check(k, COUNT, 1)).totals;
            services.count_global(k, &totals).totals[0]
        });
        added.push(two - one);
        global_added.push(with_global - two);
        tokio::task::yield_now().await;
    }
    stop.cancel();
    added.sort_by(f64::total_cmp);
    global_added.sort_by(f64::total_cmp);
    (percentile(&added, 0.5), percentile(&global_added, 0.5))
}

/// Polls a future that completes without waiting (an eventual check) to its end.
fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("an eventual check waited"),
    }
}
