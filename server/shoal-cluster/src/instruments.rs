//! Membership as metrics: observable instruments that read the member table when a reader
//! collects, so gossip pays nothing for them in between.

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use crate::{Cluster, MemberState};

/// Registers the cluster's instruments; they read `cluster` for as long as the meter lives.
pub fn register_metrics(meter: &Meter, cluster: &Cluster, cluster_name: &str) {
    // Every series carries the cluster it is about: a node in several registers once per
    // cluster, and the series stay apart by this label.
    let label = KeyValue::new("cluster", cluster_name.to_string());
    let c = cluster.clone();
    let l = label.clone();
    meter
        .u64_observable_gauge("shoal.cluster.members")
        .with_unit("{member}")
        .with_description("Cluster members as this node sees them, by state")
        .with_callback(move |obs| {
            let members = c.members();
            for state in [
                MemberState::Alive,
                MemberState::Suspect,
                MemberState::Dead,
                MemberState::Left,
            ] {
                let n = members.iter().filter(|m| m.state == state).count() as u64;
                let name = serde_json::to_value(state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                obs.observe(n, &[KeyValue::new("state", name), l.clone()]);
            }
        })
        .build();
    let c = cluster.clone();
    let l = label.clone();
    meter
        .u64_observable_gauge("shoal.cluster.local_health")
        .with_unit("{score}")
        .with_description("Lifeguard's local health score: 0 is healthy")
        .with_callback(move |obs| {
            obs.observe(
                c.status().local_health_score as u64,
                std::slice::from_ref(&l),
            )
        })
        .build();
    let c = cluster.clone();
    let l = label.clone();
    meter
        .f64_observable_gauge("shoal.gossip.probe.rtt")
        .with_unit("s")
        .with_description("Round trip of this node's last probe of each member")
        .with_callback(move |obs| {
            for m in c.members() {
                if let Some(rtt) = m.rtt_ms {
                    obs.observe(
                        rtt / 1000.0,
                        &[KeyValue::new("shoal.peer.id", m.id), l.clone()],
                    );
                }
            }
        })
        .build();
    let c = cluster.clone();
    let l = label.clone();
    meter
        .f64_observable_gauge("shoal.gossip.heartbeat.age")
        .with_unit("s")
        .with_description(
            "Time since the last ack from each live member: a growing value is a heartbeat gap",
        )
        .with_callback(move |obs| {
            for m in c.members() {
                if let (Some(age), MemberState::Alive | MemberState::Suspect) =
                    (m.last_heartbeat_ms, m.state)
                {
                    obs.observe(
                        age as f64 / 1000.0,
                        &[KeyValue::new("shoal.peer.id", m.id), l.clone()],
                    );
                }
            }
        })
        .build();
    let c = cluster.clone();
    let l = label.clone();
    meter
        .u64_observable_counter("shoal.gossip.suspicions")
        .with_unit("{suspicion}")
        .with_description("Members seen turning suspect (raised) and proving alive again (refuted)")
        .with_callback(move |obs| {
            let st = c.status();
            obs.observe(
                st.suspicions_raised,
                &[KeyValue::new("result", "raised"), l.clone()],
            );
            obs.observe(
                st.suspicions_refuted,
                &[KeyValue::new("result", "refuted"), l.clone()],
            );
        })
        .build();
}
