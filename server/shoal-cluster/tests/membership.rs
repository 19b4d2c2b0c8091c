//! Membership with real sockets: several nodes in this process, each with its own gossip
//! socket on its own 127.0.0.x address.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shoal_cluster::{Cluster, ClusterOptions, MemberState, NodeIdentity, NodeMeta};
use shoal_config::SecretKey;

const WAIT: Duration = Duration::from_secs(20);

fn key(byte: u8) -> SecretKey {
    SecretKey::new([byte; 32])
}

fn options(ip: &str, keys: Vec<SecretKey>) -> ClusterOptions {
    ClusterOptions {
        name: "test-cluster".into(),
        bind: format!("{ip}:0")
            .parse()
            .unwrap_or_else(|_| format!("[{ip}]:0").parse().unwrap()),
        advertise: None,
        keys,
        probe_interval: Duration::from_millis(200),
        probe_timeout: Duration::from_millis(100),
        suspicion_multiplier: 4,
        suspicion_max_timeout_multiplier: 3,
        awareness_max_multiplier: 8,
        gossip_interval: Duration::from_millis(50),
        gossip_nodes: 4,
        retransmit_multiplier: 4,
        push_pull_interval: Duration::from_secs(2),
        dead_node_reap: Duration::from_secs(3),
    }
}

fn meta(name: &str) -> NodeMeta {
    NodeMeta {
        node_name: name.into(),
        version: "0.0.0-test".into(),
        http: "127.0.0.1:1".into(),
        started_at_ms: 1,
        load: Default::default(),
        region: None,
    }
}

async fn start(ip: &str, keys: Vec<SecretKey>) -> Cluster {
    Cluster::start(options(ip, keys), &NodeIdentity::random(), meta(ip))
        .await
        .expect("start gossip")
}

async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn state_of(cluster: &Cluster, id: &str) -> Option<MemberState> {
    cluster
        .members()
        .into_iter()
        .find(|m| m.id == id)
        .map(|m| m.state)
}

fn alive_count(cluster: &Cluster) -> usize {
    cluster
        .members()
        .iter()
        .filter(|m| m.state == MemberState::Alive)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_fail_leave_and_are_reaped() {
    let a = start("127.0.0.31", vec![key(1)]).await;
    let b = start("127.0.0.32", vec![key(1)]).await;
    let c = start("127.0.0.33", vec![key(1)]).await;
    let d = start("127.0.0.34", vec![key(1)]).await;
    for n in [&b, &c, &d] {
        let outcome = n.join(&[a.advertise_address()]).await;
        assert_eq!(outcome.joined, vec![a.advertise_address()], "{outcome:?}");
    }
    for n in [&a, &b, &c, &d] {
        wait_for("4 alive everywhere", || (alive_count(n) == 4).then_some(())).await;
    }
    let members = a.members();
    let b_seen = members.iter().find(|m| m.id == b.local_id()).unwrap();
    assert_eq!(b_seen.meta.as_ref().unwrap().node_name, "127.0.0.32");
    assert!(members.iter().find(|m| m.local).unwrap().id == a.local_id());

    // Metadata updates reach the others.
    b.update_meta(|m| m.load.in_flight = 7).await.unwrap();
    wait_for("meta update on a", || {
        let m = a.members().into_iter().find(|m| m.id == b.local_id())?;
        (m.meta?.load.in_flight == 7).then_some(())
    })
    .await;

    // A node that stops without a goodbye: suspect, then dead, then reaped.
    let mut changes = a.subscribe();
    let c_id = c.local_id().to_string();
    c.shutdown().await;
    for n in [&a, &b, &d] {
        wait_for("c dead", || {
            (state_of(n, &c_id) == Some(MemberState::Dead)).then_some(())
        })
        .await;
    }
    let mut seen = Vec::new();
    while let Ok(change) = changes.try_recv() {
        if let shoal_cluster::ClusterChange::StateChanged { member, .. } = change
            && member.id == c_id
        {
            seen.push(member.state);
        }
    }
    assert_eq!(seen, [MemberState::Suspect, MemberState::Dead]);

    // A node that leaves is `left`, never `dead`.
    let d_id = d.local_id().to_string();
    d.leave().await;
    for n in [&a, &b] {
        wait_for("d left", || {
            (state_of(n, &d_id) == Some(MemberState::Left)).then_some(())
        })
        .await;
    }

    // Both are removed after dead_node_reap (3 s here).
    wait_for("reaped", || {
        (state_of(&a, &c_id).is_none() && state_of(&a, &d_id).is_none()).then_some(())
    })
    .await;
    assert_eq!(a.status().members.len(), 2);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_key_cannot_join_or_be_seen() {
    let a = start("127.0.0.41", vec![key(1)]).await;
    let b = start("127.0.0.42", vec![key(1)]).await;
    b.join(&[a.advertise_address()]).await;
    wait_for("2 alive", || (alive_count(&a) == 2).then_some(())).await;

    let intruder = start("127.0.0.43", vec![key(9)]).await;
    let outcome = intruder.join(&[a.advertise_address()]).await;
    assert!(outcome.joined.is_empty(), "{outcome:?}");
    let error = outcome.error.expect("join error");
    assert!(error.contains("decrypt"), "{error}");
    // What the intruder observes: only itself. What the cluster observes: never the intruder.
    wait_for("intruder's own table", || {
        (!intruder.members().is_empty()).then_some(())
    })
    .await;
    let wrong_label = Cluster::start(
        ClusterOptions {
            name: "other-cluster".into(),
            ..options("127.0.0.44", vec![key(1)])
        },
        &NodeIdentity::random(),
        meta("other"),
    )
    .await
    .unwrap();
    let outcome = wrong_label.join(&[a.advertise_address()]).await;
    assert!(outcome.joined.is_empty(), "{outcome:?}");
    assert!(outcome.error.unwrap().contains("label"));
    // Proof that gossip kept flowing after the attempts: b's new metadata reaches a.
    b.update_meta(|m| m.load.in_flight = 42).await.unwrap();
    wait_for("gossip after the attempts", || {
        let m = a.members().into_iter().find(|m| m.id == b.local_id())?;
        (m.meta?.load.in_flight == 42).then_some(())
    })
    .await;
    let intruder_view: Vec<String> = intruder.members().into_iter().map(|m| m.id).collect();
    assert_eq!(intruder_view, [intruder.local_id().to_string()]);
    for n in [&a, &b] {
        let ids: Vec<String> = n.members().into_iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(!ids.contains(&intruder.local_id().to_string()));
        assert!(!ids.contains(&wrong_label.local_id().to_string()));
    }
    for n in [a, b, intruder, wrong_label] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_across_a_running_cluster_without_losing_a_member() {
    let nodes = [
        start("127.0.0.51", vec![key(1)]).await,
        start("127.0.0.52", vec![key(1)]).await,
        start("127.0.0.53", vec![key(1)]).await,
    ];
    let seed: SocketAddr = nodes[0].advertise_address();
    for n in &nodes[1..] {
        n.join(&[seed]).await;
    }
    for n in &nodes {
        wait_for("3 alive", || (alive_count(n) == 3).then_some(())).await;
    }
    let mut changes: Vec<_> = nodes.iter().map(Cluster::subscribe).collect();
    let steps = [vec![key(1), key(2)], vec![key(2), key(1)], vec![key(2)]];
    // One node at a time, proving gossip after each change: the mixed keyrings in between
    // are exactly what the three steps must survive.
    let mut marker = 0u64;
    for step in steps {
        for changed in &nodes {
            assert!(changed.set_keys(&step).unwrap());
            marker += 1;
            changed
                .update_meta(|m| m.load.in_flight = marker)
                .await
                .unwrap();
            let id = changed.local_id().to_string();
            for n in &nodes {
                wait_for("marker under mixed keyrings", || {
                    let m = n.members().into_iter().find(|m| m.id == id)?;
                    (m.meta?.load.in_flight == marker).then_some(())
                })
                .await;
                // Nobody lost: a moment of suspicion under load is not a loss, death is.
                let lost = n
                    .members()
                    .iter()
                    .filter(|m| matches!(m.state, MemberState::Dead | MemberState::Left))
                    .count();
                assert_eq!((n.members().len(), lost), (3, 0));
            }
        }
        for n in &nodes {
            assert_eq!(n.keyring().primary, step[0].fingerprint());
            assert_eq!(n.keyring().keys.len(), step.len());
        }
    }
    for rx in &mut changes {
        while let Ok(change) = rx.try_recv() {
            let lost = matches!(
                &change,
                shoal_cluster::ClusterChange::StateChanged { member, .. }
                    if matches!(member.state, MemberState::Dead | MemberState::Left)
            );
            assert!(!lost, "no member was lost during rotation: {change:?}");
        }
    }
    // The old key alone no longer gets in.
    let stale = start("127.0.0.54", vec![key(1)]).await;
    assert!(stale.join(&[seed]).await.joined.is_empty());
    // Removing every key is refused.
    assert!(nodes[0].set_keys(&[]).is_err());
    for n in nodes {
        n.shutdown().await;
    }
    stale.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_works_over_ipv6() {
    let a = Cluster::start(
        options("::1", vec![key(3)]),
        &NodeIdentity::random(),
        meta("a6"),
    )
    .await
    .unwrap();
    let b = Cluster::start(
        options("::1", vec![key(3)]),
        &NodeIdentity::random(),
        meta("b6"),
    )
    .await
    .unwrap();
    assert!(a.advertise_address().is_ipv6());
    assert_eq!(b.join(&[a.advertise_address()]).await.joined.len(), 1);
    wait_for("2 alive over IPv6", || {
        (alive_count(&a) == 2 && alive_count(&b) == 2).then_some(())
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

/// The member table changes only when a member does, yet the ages it reports keep counting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_ages_keep_counting_between_changes() {
    let a = start("127.0.0.71", vec![key(1)]).await;
    let b = start("127.0.0.72", vec![key(1)]).await;
    b.join(&[a.advertise_address()]).await;
    wait_for("2 alive on a", || (alive_count(&a) == 2).then_some(())).await;
    let age = || {
        a.members()
            .into_iter()
            .find(|m| m.id == b.local_id())
            .unwrap()
            .state_age_ms
    };
    let before = age();
    // The time that passes is what is measured.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = age();
    assert!(
        after >= before + 300 && after < before + 2_000,
        "age {before} ms, then {after} ms"
    );
}
