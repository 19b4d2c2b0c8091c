//! `scripts/bench keys`: what one counter key costs a node. One `SharedState` attached to a
//! one-node simulated cluster (so its flusher ships and clears what it counted, as on a
//! running node): `--keys` (default 1,000,000) distinct keys counted once each, as a burst of
//! distinct users would; resident memory before and after, per key.

#[path = "support/args.rs"]
mod args;

use shoal_state::sim::{Link, SimNet};
use shoal_state::{CounterKey, Limit, Mode, SharedState, StateOptions};
use tokio_util::sync::CancellationToken;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let keys: usize = args::arg("--keys", "1000000")
        .parse()
        .expect("--keys: a number");
    let state = SharedState::new(StateOptions::default());
    let net = SimNet::new(1, Link::IDEAL);
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    state.attach(net.join("n0"), stop.clone(), &mut tasks);
    let limit = Limit {
        window: 0,
        max: u64::MAX,
        mode: Mode::Eventual,
    };
    let before = rss_kib();
    for i in 0..keys {
        // Realistic names: a user id, a resource with a bucket, the action.
        let key = CounterKey::new(format!("user-{i:08}"), "s3-prod/customer-data", "access")
            .expect("a valid key");
        state.check(&key, limit, 1).await;
        if i % 10_000 == 0 {
            // The flusher's turn (every 5 ms on a running node).
            tokio::time::sleep(std::time::Duration::from_millis(6)).await;
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let counted = rss_kib();
    let held = state.status().keys;
    let per_key = (counted.saturating_sub(before) * 1024) as f64 / keys as f64;
    println!(
        "{held} keys: RSS {:.1} MiB before, {:.1} MiB after ({per_key:.0} bytes per key)",
        before as f64 / 1024.0,
        counted as f64 / 1024.0
    );
    println!(
        "RESULT rss_1m_counter_keys_mb {:.1} MiB",
        counted.saturating_sub(before) as f64 / 1024.0 * 1_000_000.0 / keys as f64
    );
    println!("RESULT bytes_per_counter_key {per_key:.0} bytes");
}
