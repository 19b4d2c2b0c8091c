//! Two regions of three nodes on the simulator, each node in its region's cluster and the
//! global one (WAN between regions): global limits, global events, a split between regions.

use std::time::Duration;

use crate::regions::{Fleet, INTER_REGION, fleet};
use crate::sim::Link;
use crate::{CounterKey, REVOKE_TOPIC};

fn key() -> CounterKey {
    CounterKey::new("alice", "reports/sensitive", "access").unwrap()
}

/// Polls `done` every 10 ms of simulated time, for at most a simulated minute.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within a simulated minute"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Offers `per_second` requests a second spread over every node for `seconds`, each decided
/// against `global_access_count > max`; returns how many were admitted.
async fn load(fleet: &Fleet, max: u64, per_second: u64, seconds: u64) -> u64 {
    let key = key();
    let step = Duration::from_micros(1_000_000 / per_second);
    let mut admitted = 0;
    for i in 0..per_second * seconds {
        let node = &fleet.nodes[i as usize % fleet.nodes.len()];
        admitted += u64::from(node.offer(&key, max).await);
        tokio::time::sleep(step).await;
    }
    admitted
}

#[tokio::test(start_paused = true)]
async fn a_global_limit_holds_across_regions_at_ten_times_its_rate() {
    for seed in 1..=3 {
        let fleet = fleet(seed, &["eu", "us"], 3, Link::LAN, INTER_REGION);
        // N = 600 a minute, offered 6,000 a minute for one window.
        let admitted = load(&fleet, 600, 100, 60).await;
        assert!(
            (540..=606).contains(&admitted),
            "seed {seed}: {admitted} admitted against a global limit of 600"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn shares_follow_demand_once_it_settles_and_still_sum_to_the_limit() {
    let fleet = fleet(7, &["eu", "us"], 3, Link::LAN, INTER_REGION);
    let key = key();
    // Europe asks four times as often as the US, for a minute.
    let mut admitted = [0u64; 2];
    for i in 0..6000u64 {
        let region = usize::from(i % 5 == 4);
        let node = &fleet.nodes[region * 3 + (i as usize / 5) % 3];
        admitted[region] += u64::from(node.offer(&key, 600).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = admitted[0] + admitted[1];
    assert!(total <= 606, "{admitted:?}: over the global limit of 600");
    assert!(
        admitted[0] > admitted[1] * 2,
        "the busier region got the larger share: {admitted:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn split_regions_each_keep_an_even_share_so_the_limit_still_holds() {
    let fleet = fleet(11, &["eu", "us"], 3, Link::LAN, INTER_REGION);
    let (eu, us): (Vec<_>, Vec<_>) = fleet
        .nodes
        .iter()
        .map(|n| (n.region.clone(), n.global.address))
        .partition(|(r, _)| r == "eu");
    let eu: Vec<_> = eu.into_iter().map(|(_, a)| a).collect();
    let us: Vec<_> = us.into_iter().map(|(_, a)| a).collect();
    // Both regions seen first, then cut apart.
    let first = &fleet.nodes[0].services.global_counters;
    until("both regions seen", || first.regions().len() == 2).await;
    fleet.global.partition(&eu, &us);
    until("the split seen", || {
        first.regions().iter().any(|(_, reachable)| !reachable)
    })
    .await;
    let global = fleet.nodes[0].services.count_global(&key(), &[0, 0]);
    assert!(global.split, "{global:?}");
    assert_eq!(global.shares, vec![0.5, 0.5]);
    let admitted = load(&fleet, 600, 100, 60).await;
    assert!(
        admitted <= 606,
        "{admitted} admitted by the two sides of a split against a global limit of 600"
    );
    // Each side still serves: its half of the limit.
    assert!(admitted >= 540, "{admitted}");
}

#[tokio::test(start_paused = true)]
async fn a_revocation_published_in_one_region_reaches_every_node_of_the_other_once() {
    let fleet = fleet(5, &["eu", "us"], 3, Link::LAN, INTER_REGION);
    let mut receivers: Vec<_> = fleet
        .nodes
        .iter()
        .map(|n| n.services.events.subscribe())
        .collect();
    fleet.nodes[0]
        .services
        .events
        .publish(REVOKE_TOPIC, b"user=mallory".to_vec())
        .unwrap();
    // A liveness bound, not the goal: a lost datagram waits for anti-entropy's rounds (the
    // delivery time is `scripts/bench regions`' figure).
    for (node, rx) in fleet.nodes.iter().zip(&mut receivers) {
        let event = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: no revocation within 30 s of simulated time (seed {})",
                    node.region, fleet.global.seed
                )
            })
            .unwrap();
        assert_eq!(event.payload, b"user=mallory");
    }
    // Anti-entropy brings it again: delivered once all the same.
    let rounds = |n: &crate::regions::RegionNode| n.services.events.status().anti_entropy_rounds;
    let before: Vec<u64> = fleet.nodes.iter().map(rounds).collect();
    until("five anti-entropy rounds on every node", || {
        fleet
            .nodes
            .iter()
            .zip(&before)
            .all(|(n, b)| rounds(n) >= b + 5)
    })
    .await;
    for node in &fleet.nodes {
        let delivered = node.services.events.delivered();
        assert_eq!(delivered.len(), 1, "{}: {delivered:?}", node.region);
    }
}
