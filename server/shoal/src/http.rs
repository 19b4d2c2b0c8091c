//! The admin port: health and readiness, the gate that drains requests at shutdown, and the
//! limits its listener serves with.
//!
//! `/health` and `/ready` stay up until the very last shutdown step so orchestrators see the
//! node leave; every other route passes the [`DrainGate`], which refuses new requests once
//! shutdown begins and counts the in-flight ones so shutdown can wait for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use shoal_cluster::GossipErrors;
use shoal_model::ConfigHandle;
use tokio::sync::Notify;

/// A client has this long to send a request's headers: a slow client (slowloris) cannot hold
/// connections open by trickling bytes.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request head accepted (hyper answers 431 beyond it); bodies are capped by each
/// route (the console takes at most 1 MiB, the API axum's 2 MiB default).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The admin port is for operators, scrapers and probes, a few connections each: a flood of
/// connections to it is refused past this many, leaving the node its memory and descriptors.
const MAX_CONNECTIONS: usize = 1024;

/// Serves `app` on `listener` until `stop`, then lets open connections finish within
/// `drain_grace`. Unlike `axum::serve`, request heads have a read deadline and a size cap.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: tokio_util::sync::CancellationToken,
    drain_grace: Duration,
) {
    let limits = shoal_http::Limits {
        label: "http",
        header_read_timeout: HEADER_READ_TIMEOUT,
        max_head_bytes: MAX_HEAD_BYTES,
        max_header_list_bytes: MAX_HEAD_BYTES as u32,
        drain_grace,
        connections: Some(shoal_http::ConnectionLimit::new(MAX_CONNECTIONS)),
    };
    shoal_http::serve(listener, &limits, stop, None, |_peer| {
        let app = app.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let mut app = app.clone();
            async move {
                use tower::Service as _;
                app.call(req.map(axum::body::Body::new)).await
            }
        })
    })
    .await;
}

#[derive(Default)]
pub(crate) struct DrainGate {
    started: AtomicBool,
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

impl DrainGate {
    pub(crate) fn listeners_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.idle.notify_waiters();
    }

    /// Waits until no request is in flight (shutdown's stage deadline bounds the wait).
    pub(crate) async fn drained(&self) {
        loop {
            let idle = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// The admin requests in flight as a metric, read when a reader collects.
    pub(crate) fn register_metrics(self: &Arc<Self>, meter: &shoal_telemetry::Meter) {
        let gate = self.clone();
        meter
            .u64_observable_gauge("shoal.http.in_flight")
            .with_unit("{request}")
            .with_description("Admin and console requests being served")
            .with_callback(move |obs| obs.observe(gate.in_flight() as u64, &[]))
            .build();
    }
}

struct InFlight(Arc<DrainGate>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

async fn gate(State(gate): State<Arc<DrainGate>>, req: Request, next: Next) -> Response {
    gate.in_flight.fetch_add(1, Ordering::SeqCst);
    let guard = InFlight(gate.clone());
    if gate.draining.load(Ordering::SeqCst) {
        drop(guard);
        let body = json!({ "error": { "code": "shutting_down", "message": "node is shutting down; retry on another node" } });
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONNECTION, "close")],
            Json(body),
        )
            .into_response();
    }
    let response = next.run(req).await;
    drop(guard);
    response
}

#[derive(Clone)]
pub(crate) struct HealthState {
    pub config: ConfigHandle,
    pub gate: Arc<DrainGate>,
    pub node: String,
    /// The counters' cluster first.
    pub clusters: Arc<Vec<crate::Joined>>,
    pub data_plane: shoal_proxy::DataPlane,
    pub audit: shoal_control_plane::AuditLog,
    pub gossip_errors: GossipErrors,
    pub telemetry: Arc<shoal_telemetry::Telemetry>,
}

pub(crate) fn app(health: HealthState, api: Router) -> Router {
    let gate = health.gate.clone();
    let gated = api.layer(axum::middleware::from_fn_with_state(gate, self::gate));
    Router::new()
        .route("/health", get(health_check))
        .route("/ready", get(ready))
        .route("/cluster/status", get(cluster_status))
        .route("/metrics", get(prometheus_metrics))
        .with_state(health)
        .merge(gated)
}

/// Membership as this node sees it: the seed products' `/cluster/status`, on the health port
/// so that operators and orchestrators can read it without an admin session. It carries no
/// secret (keys appear as fingerprints).
async fn cluster_status(State(h): State<HealthState>) -> Json<serde_json::Value> {
    let primary = &h.clusters[0];
    let clusters: Vec<serde_json::Value> = h
        .clusters
        .iter()
        .map(|j| {
            json!({
                "name": j.name,
                "services": j.services,
                "joined": j.join.is_ready(),
                "discovery": j.join.discovery(),
                "status": j.cluster.status(),
                "state": { "replay": j.state.replay() },
            })
        })
        .collect();
    // The top level is the counters' cluster, as before nodes could be in several.
    Json(json!({
        "version": crate::VERSION,
        "node": h.node,
        "joined": primary.join.is_ready(),
        "discovery": primary.join.discovery(),
        "cluster": primary.cluster.status(),
        "clusters": clusters,
        "gossip_errors": h.gossip_errors.counts(),
    }))
}

/// The Prometheus text exposition of the node's instruments (`telemetry.prometheus`); 404
/// when it is off.
async fn prometheus_metrics(State(h): State<HealthState>) -> Response {
    match h.telemetry.prometheus_text() {
        None => (
            StatusCode::NOT_FOUND,
            "metrics are off on this node (telemetry.prometheus = false)",
        )
            .into_response(),
        Some(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Some(Err(e)) => {
            tracing::warn!("{e}");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}

async fn health_check(State(h): State<HealthState>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "version": crate::VERSION, "node": h.node }))
}

/// 200 once config is applied (from the database or the local snapshot) and listeners are
/// up; otherwise 503 with the list of what is missing.
async fn ready(State(h): State<HealthState>) -> Response {
    let status = h.config.status();
    let mut missing = Vec::new();
    if status.revision.is_none() {
        let why = match (&status.last_error, &status.snapshot_error) {
            (_, Some(snapshot)) => format!("control plane not reached; {snapshot}"),
            (Some(db), None) => format!("control plane not reached ({db}) and no config snapshot"),
            (None, None) => "control plane not reached yet".to_string(),
        };
        missing.push(format!("config: {why}"));
    }
    let several = h.clusters.len() > 1;
    for j in h.clusters.iter() {
        let (cluster, state) = if several {
            (format!("cluster {}", j.name), format!("state ({})", j.name))
        } else {
            ("cluster".to_string(), "state".to_string())
        };
        let replay = j.state.replay();
        if !j.join.is_ready() {
            missing.push(format!("{cluster}: not joined yet ({})", j.join.detail()));
        } else if !replay.done {
            missing.push(format!("{state}: {}", replay.detail));
        }
    }
    let primary = &h.clusters[0];
    if !h.gate.started.load(Ordering::SeqCst) {
        missing.push("listeners: not started".to_string());
    }
    if h.gate.draining.load(Ordering::SeqCst) {
        missing.push("node: shutting down".to_string());
    }
    let mut warnings = Vec::new();
    if status.revision.is_some() && !status.connected {
        warnings.push(format!(
            "control plane unreachable since {}: serving revision {} from {}",
            status
                .disconnected_since
                .map_or_else(|| "start".to_string(), |t| t.to_rfc3339()),
            status.revision.unwrap_or_default(),
            status.source.map_or("memory", |s| match s {
                shoal_model::ConfigSource::Database => "memory",
                shoal_model::ConfigSource::Snapshot => "the local snapshot",
            })
        ));
    }
    if let Some(snapshot) = status
        .snapshot_error
        .as_ref()
        .filter(|_| status.revision.is_some())
    {
        warnings.push(format!("config snapshot: {snapshot}"));
    }
    if let Some(rejected) = &status.rejected {
        warnings.push(format!(
            "revision {} refused: {}",
            rejected.revision, rejected.error
        ));
    }
    let audit = h.audit.status();
    if audit.spooling {
        warnings.push(format!(
            "audit: {} decisions wait in the local journal ({} bytes) until the control plane takes them",
            audit.spooled, audit.spool_bytes
        ));
    }
    if audit.set_aside > 0 {
        warnings.push(format!(
            "audit: {} records PostgreSQL refused for what they hold are kept in the journal directory's {}",
            audit.set_aside,
            shoal_control_plane::AUDIT_SET_ASIDE
        ));
    }
    let ready = missing.is_empty();
    let body = json!({
        "ready": ready,
        "version": crate::VERSION,
        "node": h.node,
        "missing": missing,
        "warnings": warnings,
        "config": {
            "revision": status.revision,
            "source": status.source,
            "applied_at": status.applied_at,
            "applied_via": status.applied_via,
        },
        "control_plane": { "connected": status.connected, "last_error": status.last_error },
        "in_flight": h.gate.in_flight.load(Ordering::SeqCst),
        "cluster": { "joined": primary.join.is_ready(), "detail": primary.join.detail() },
        "state": { "replay": primary.state.replay() },
        "clusters": h.clusters.iter().map(|j| json!({
            "name": j.name,
            "joined": j.join.is_ready(),
            "detail": j.join.detail(),
            "replay": j.state.replay(),
        })).collect::<Vec<_>>(),
        "data_plane": h.data_plane.status(),
        "audit": audit,
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}
