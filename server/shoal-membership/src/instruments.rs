//! Discovery as metrics: observable counters read when a reader collects.

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use crate::JoinState;

/// Registers the discovery instruments; they read `join` for as long as the meter lives.
pub fn register_metrics(meter: &Meter, join: &Arc<JoinState>, cluster_name: &str) {
    // Every series carries the cluster it is about: a node in several registers once per
    // cluster, and the series stay apart by this label.
    let label = KeyValue::new("cluster", cluster_name.to_string());
    let runs = join.clone();
    let l = label.clone();
    meter
        .u64_observable_counter("shoal.discovery.runs")
        .with_unit("{run}")
        .with_description("Discovery rounds run")
        .with_callback(move |obs| {
            let d = runs.discovery();
            obs.observe(d.runs, &[KeyValue::new("method", d.method), l.clone()]);
        })
        .build();
    let failures = join.clone();
    let l = label.clone();
    meter
        .u64_observable_counter("shoal.discovery.failures")
        .with_unit("{run}")
        .with_description("Discovery rounds that failed")
        .with_callback(move |obs| {
            let d = failures.discovery();
            obs.observe(d.failures, &[KeyValue::new("method", d.method), l.clone()]);
        })
        .build();
}
