//! The control plane as metrics: observable instruments that read the watcher's status and
//! the audit writer's figures when a reader collects.

use opentelemetry::metrics::Meter;
use shoal_model::ConfigHandle;

use crate::AuditLog;

/// Registers the control plane's instruments; they read `config` (the watcher's handle) and
/// `audit` for as long as the meter lives.
pub fn register_metrics(meter: &Meter, config: &ConfigHandle, audit: &AuditLog) {
    let c = config.clone();
    meter
        .u64_observable_gauge("shoal.control_plane.connected")
        .with_unit("{connected}")
        .with_description("1 while the node reaches PostgreSQL")
        .with_callback(move |obs| obs.observe(u64::from(c.status().connected), &[]))
        .build();
    let c = config.clone();
    meter
        .u64_observable_gauge("shoal.config.revision")
        .with_unit("{revision}")
        .with_description("The configuration revision in force on this node")
        .with_callback(move |obs| {
            if let Some(r) = c.status().revision {
                obs.observe(u64::try_from(r).unwrap_or(0), &[]);
            }
        })
        .build();
    let a = audit.clone();
    meter
        .u64_observable_gauge("shoal.audit.spool.size")
        .with_unit("By")
        .with_description("Bytes of the on-disk audit journal not yet stored in PostgreSQL")
        .with_callback(move |obs| obs.observe(a.status().spool_bytes, &[]))
        .build();
    let a = audit.clone();
    meter
        .u64_observable_gauge("shoal.audit.spool.decisions")
        .with_unit("{decision}")
        .with_description("Decisions journaled on disk not yet stored in PostgreSQL")
        .with_callback(move |obs| obs.observe(a.status().spooled, &[]))
        .build();
    let a = audit.clone();
    meter
        .u64_observable_counter("shoal.audit.journaled")
        .with_unit("{decision}")
        .with_description("Decisions written to the on-disk audit journal before their answer")
        .with_callback(move |obs| obs.observe(a.status().journaled, &[]))
        .build();
    let a = audit.clone();
    meter
        .u64_observable_counter("shoal.audit.damaged")
        .with_unit("{record}")
        .with_description("Journal records skipped because they were damaged on disk")
        .with_callback(move |obs| obs.observe(a.status().damaged, &[]))
        .build();
    let a = audit.clone();
    meter
        .u64_observable_counter("shoal.audit.set_aside")
        .with_unit("{record}")
        .with_description(
            "Journal records PostgreSQL refused for what they hold, kept in the journal directory's set-aside file",
        )
        .with_callback(move |obs| obs.observe(a.status().set_aside, &[]))
        .build();
    let a = audit.clone();
    meter
        .f64_observable_gauge("shoal.audit.flush.lag")
        .with_unit("s")
        .with_description("How long decisions have waited for PostgreSQL (0 when none wait)")
        .with_callback(move |obs| obs.observe(a.status().flush_lag_ms as f64 / 1000.0, &[]))
        .build();
    let a = audit.clone();
    meter
        .u64_observable_counter("shoal.audit.written")
        .with_unit("{decision}")
        .with_description("Decisions written to the audit log")
        .with_callback(move |obs| obs.observe(a.status().written, &[]))
        .build();
}
