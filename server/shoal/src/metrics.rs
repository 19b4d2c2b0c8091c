//! The node's instruments: observable gauges and counters that read each subsystem's status
//! when a reader collects (a `/metrics` scrape), so the request path pays nothing for them.
//! The data plane records its own request figures (`shoal_proxy`'s instruments).

use std::sync::Arc;

use shoal_cluster::{Cluster, MemberState};
use shoal_control_plane::AuditLog;
use shoal_model::ConfigHandle;
use shoal_state::SharedState;
use shoal_telemetry::{KeyValue, Meter};

use crate::http::DrainGate;
use crate::membership::JoinState;

/// What the instruments read.
pub(crate) struct Sources {
    pub cluster: Cluster,
    pub state: SharedState,
    pub config: ConfigHandle,
    pub audit: AuditLog,
    pub join: Arc<JoinState>,
    pub gate: Arc<DrainGate>,
    pub data_plane: shoal_proxy::DataPlane,
}

/// Instruments live as long as this value does (the node keeps it until it stops).
pub(crate) struct Instruments {
    _keep: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

pub(crate) fn register(meter: &Meter, s: Sources) -> Instruments {
    let s = Arc::new(s);
    let mut keep: Vec<Box<dyn std::any::Any + Send + Sync>> = Vec::new();
    // One observable instrument: `$kind` is the meter's constructor (gauge or counter), the
    // callback reads the sources when a reader collects.
    macro_rules! observe {
        ($kind:ident, $name:expr, $unit:expr, $desc:expr, |$src:ident, $obs:ident| $body:block) => {{
            let src = s.clone();
            keep.push(Box::new(
                meter
                    .$kind($name)
                    .with_unit($unit)
                    .with_description($desc)
                    .with_callback(move |$obs| {
                        let $src = &src;
                        $body
                    })
                    .build(),
            ));
        }};
    }
    macro_rules! gauge {
        ($($t:tt)*) => { observe!(u64_observable_gauge, $($t)*) };
    }
    macro_rules! counter {
        ($($t:tt)*) => { observe!(u64_observable_counter, $($t)*) };
    }
    macro_rules! seconds {
        ($($t:tt)*) => { observe!(f64_observable_gauge, $($t)*) };
    }
    gauge!(
        "shoal.cluster.members",
        "{member}",
        "Cluster members as this node sees them, by state",
        |src, obs| {
            let members = src.cluster.members();
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
                obs.observe(n, &[KeyValue::new("state", name)]);
            }
        }
    );
    gauge!(
        "shoal.cluster.local_health",
        "{score}",
        "Lifeguard's local health score: 0 is healthy",
        |src, obs| { obs.observe(src.cluster.status().local_health_score as u64, &[]) }
    );
    seconds!(
        "shoal.gossip.probe.rtt",
        "s",
        "Round trip of this node's last probe of each member",
        |src, obs| {
            for m in src.cluster.members() {
                if let Some(rtt) = m.rtt_ms {
                    obs.observe(rtt / 1000.0, &[KeyValue::new("shoal.peer.id", m.id)]);
                }
            }
        }
    );
    seconds!(
        "shoal.gossip.heartbeat.age",
        "s",
        "Time since the last ack from each live member: a growing value is a heartbeat gap",
        |src, obs| {
            for m in src.cluster.members() {
                if let (Some(age), MemberState::Alive | MemberState::Suspect) =
                    (m.last_heartbeat_ms, m.state)
                {
                    obs.observe(age as f64 / 1000.0, &[KeyValue::new("shoal.peer.id", m.id)]);
                }
            }
        }
    );
    counter!(
        "shoal.gossip.suspicions",
        "{suspicion}",
        "Members seen turning suspect (raised) and proving alive again (refuted)",
        |src, obs| {
            let st = src.cluster.status();
            obs.observe(st.suspicions_raised, &[KeyValue::new("result", "raised")]);
            obs.observe(st.suspicions_refuted, &[KeyValue::new("result", "refuted")]);
        }
    );
    counter!(
        "shoal.discovery.runs",
        "{run}",
        "Discovery rounds run",
        |src, obs| {
            let d = src.join.discovery();
            obs.observe(d.runs, &[KeyValue::new("method", d.method)]);
        }
    );
    counter!(
        "shoal.discovery.failures",
        "{run}",
        "Discovery rounds that failed",
        |src, obs| {
            let d = src.join.discovery();
            obs.observe(d.failures, &[KeyValue::new("method", d.method)]);
        }
    );
    gauge!(
        "shoal.control_plane.connected",
        "{connected}",
        "1 while the node reaches PostgreSQL",
        |src, obs| { obs.observe(u64::from(src.config.status().connected), &[]) }
    );
    gauge!(
        "shoal.config.revision",
        "{revision}",
        "The configuration revision in force on this node",
        |src, obs| {
            if let Some(r) = src.config.status().revision {
                obs.observe(u64::try_from(r).unwrap_or(0), &[]);
            }
        }
    );
    gauge!(
        "shoal.audit.spool.size",
        "By",
        "Bytes of the on-disk audit journal not yet stored in PostgreSQL",
        |src, obs| { obs.observe(src.audit.status().spool_bytes, &[]) }
    );
    gauge!(
        "shoal.audit.spool.decisions",
        "{decision}",
        "Decisions journaled on disk not yet stored in PostgreSQL",
        |src, obs| { obs.observe(src.audit.status().spooled, &[]) }
    );
    counter!(
        "shoal.audit.journaled",
        "{decision}",
        "Decisions written to the on-disk audit journal before their answer",
        |src, obs| { obs.observe(src.audit.status().journaled, &[]) }
    );
    counter!(
        "shoal.audit.damaged",
        "{record}",
        "Journal records skipped because they were damaged on disk",
        |src, obs| { obs.observe(src.audit.status().damaged, &[]) }
    );
    seconds!(
        "shoal.audit.flush.lag",
        "s",
        "How long decisions have waited for PostgreSQL (0 when none wait)",
        |src, obs| { obs.observe(src.audit.status().flush_lag_ms as f64 / 1000.0, &[]) }
    );
    counter!(
        "shoal.audit.written",
        "{decision}",
        "Decisions written to the audit log",
        |src, obs| { obs.observe(src.audit.status().written, &[]) }
    );
    gauge!(
        "shoal.state.keys",
        "{key}",
        "Rate-limit keys held in shared state",
        |src, obs| { obs.observe(src.state.status().keys as u64, &[]) }
    );
    counter!(
        "shoal.state.batches",
        "{batch}",
        "State batches sent to and received from peers",
        |src, obs| {
            let st = src.state.status();
            obs.observe(st.batches_sent, &[KeyValue::new("direction", "sent")]);
            obs.observe(
                st.batches_received,
                &[KeyValue::new("direction", "received")],
            );
        }
    );
    counter!(
        "shoal.state.io",
        "By",
        "Bytes of state messages sent to and received from peers",
        |src, obs| {
            let st = src.state.status();
            obs.observe(st.bytes_sent, &[KeyValue::new("direction", "sent")]);
            obs.observe(st.bytes_received, &[KeyValue::new("direction", "received")]);
        }
    );
    counter!(
        "shoal.state.repairs",
        "{repair}",
        "Anti-entropy replies that replayed batches a peer had missed",
        |src, obs| { obs.observe(src.state.status().repairs, &[]) }
    );
    counter!(
        "shoal.state.strict.degraded",
        "{check}",
        "Strict checks decided locally because the key's owner did not answer",
        |src, obs| { obs.observe(src.state.status().strict_degraded, &[]) }
    );
    counter!(
        "shoal.state.strict.late",
        "{check}",
        "Degraded strict checks whose owner answered late having counted them (counted once)",
        |src, obs| { obs.observe(src.state.status().strict_late, &[]) }
    );
    counter!(
        "shoal.proxy.policy_errors",
        "{evaluation}",
        "Policy evaluations that failed (each refused its request)",
        |src, obs| { obs.observe(src.data_plane.status().policy_errors, &[]) }
    );
    gauge!(
        "shoal.http.in_flight",
        "{request}",
        "Admin and console requests being served",
        |src, obs| { obs.observe(src.gate.in_flight() as u64, &[]) }
    );
    Instruments { _keep: keep }
}
