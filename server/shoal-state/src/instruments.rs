//! Shared state as metrics: observable instruments that read [`SharedState::status`] when a
//! reader collects, so the request path pays nothing for them.

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use crate::SharedState;

/// Registers the shared state's instruments; they read `state` for as long as the meter
/// lives.
pub fn register_metrics(meter: &Meter, state: &SharedState, cluster_name: &str) {
    // Every series carries the cluster it is about: a node in several registers once per
    // cluster, and the series stay apart by this label.
    let label = KeyValue::new("cluster", cluster_name.to_string());
    let s = state.clone();
    let l = label.clone();
    meter
        .u64_observable_gauge("shoal.state.keys")
        .with_unit("{key}")
        .with_description("Rate-limit keys held in shared state")
        .with_callback(move |obs| obs.observe(s.status().keys as u64, std::slice::from_ref(&l)))
        .build();
    let s = state.clone();
    let l = label.clone();
    meter
        .u64_observable_counter("shoal.state.batches")
        .with_unit("{batch}")
        .with_description("State batches sent to and received from peers")
        .with_callback(move |obs| {
            let st = s.status();
            obs.observe(
                st.batches_sent,
                &[KeyValue::new("direction", "sent"), l.clone()],
            );
            obs.observe(
                st.batches_received,
                &[KeyValue::new("direction", "received"), l.clone()],
            );
        })
        .build();
    let s = state.clone();
    let l = label.clone();
    meter
        .u64_observable_counter("shoal.state.io")
        .with_unit("By")
        .with_description("Bytes of state messages sent to and received from peers")
        .with_callback(move |obs| {
            let st = s.status();
            obs.observe(
                st.bytes_sent,
                &[KeyValue::new("direction", "sent"), l.clone()],
            );
            obs.observe(
                st.bytes_received,
                &[KeyValue::new("direction", "received"), l.clone()],
            );
        })
        .build();
    let s = state.clone();
    let l = label.clone();
    meter
        .u64_observable_counter("shoal.state.repairs")
        .with_unit("{repair}")
        .with_description("Anti-entropy replies that replayed batches a peer had missed")
        .with_callback(move |obs| obs.observe(s.status().repairs, std::slice::from_ref(&l)))
        .build();
    let s = state.clone();
    let l = label.clone();
    meter
        .u64_observable_counter("shoal.state.strict.degraded")
        .with_unit("{check}")
        .with_description("Strict checks decided locally because the key's owner did not answer")
        .with_callback(move |obs| obs.observe(s.status().strict_degraded, std::slice::from_ref(&l)))
        .build();
    let s = state.clone();
    let l = label.clone();
    meter
        .u64_observable_counter("shoal.state.strict.late")
        .with_unit("{check}")
        .with_description(
            "Degraded strict checks whose owner answered late having counted them (counted once)",
        )
        .with_callback(move |obs| obs.observe(s.status().strict_late, std::slice::from_ref(&l)))
        .build();
}
