//! The Shoal node as a library: [`prepare`] settles who the node is and starts its telemetry
//! (the log subscriber needs the trace layer), [`run`] serves until its shutdown token fires,
//! then shuts down in the documented order. `main.rs` only parses the CLI, sets up logging and
//! turns signals into that token.
//!
//! - `http`: health, readiness, and the drain gate in front of everything else.

#![forbid(unsafe_code)]

mod http;
mod membership;
mod metrics;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use shoal_config::NodeConfig;
use shoal_console::ApiState;
use shoal_control_plane::{AuditLog, AuditOptions, Fsync, Store, WatcherOptions};
use shoal_state::{SharedState, StateOptions};
use tokio_util::sync::CancellationToken;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Bound on stopping the membership loops (discovery, key reload, load refresh).
const BACKGROUND_STOP_GRACE: Duration = Duration::from_secs(2);

/// Bound on stopping the control-plane watcher (it finishes an apply in progress).
const WATCHER_STOP_GRACE: Duration = Duration::from_secs(5);

/// Decisions per audit insert, and how often a spool is retried while PostgreSQL is away.
const AUDIT_BATCH: usize = 500;
const AUDIT_RETRY: Duration = Duration::from_secs(1);

/// Bound on shipping the last journaled decisions at shutdown (they stay on disk past it).
const AUDIT_STOP_GRACE: Duration = Duration::from_secs(10);

/// Bound on one OTLP export, so a collector that hangs never holds shutdown's flush long.
const OTLP_EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on the final step: closing the health server's remaining connections.
const HEALTH_STOP_GRACE: Duration = Duration::from_secs(5);

/// A node cannot start on this machine as configured (its data directory or node-key file
/// cannot be written): an operator's fix, not a crash, so `main` exits 78 (EX_CONFIG) with
/// this one line instead of retrying into a crash loop with no reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(String);

/// What a node settles before it serves.
pub struct Prepared {
    identity: shoal_cluster::NodeIdentity,
    telemetry: Arc<shoal_telemetry::Telemetry>,
}

impl Prepared {
    pub fn telemetry(&self) -> &shoal_telemetry::Telemetry {
        &self.telemetry
    }
}

/// Loads the node's identity (its id is `service.instance.id` on every metric and span) and
/// starts telemetry. Runs inside the Tokio runtime: the gRPC exporter's channel lives there.
pub fn prepare(config: &NodeConfig) -> anyhow::Result<Prepared> {
    check_data_dir(&config.data_dir)?;
    let identity = membership::identity(config).map_err(|e| Unusable(format!("{e:#}")))?;
    let t = &config.telemetry;
    let otlp = t
        .otlp_endpoint
        .as_ref()
        .map(|endpoint| shoal_telemetry::Otlp {
            endpoint: endpoint.clone(),
            protocol: match t.otlp_protocol {
                shoal_config::OtlpProtocol::HttpProtobuf => shoal_telemetry::Protocol::HttpProtobuf,
                shoal_config::OtlpProtocol::Grpc => shoal_telemetry::Protocol::Grpc,
            },
            headers: t
                .otlp_headers()
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().clone()))
                .collect(),
            metrics_interval: t.otlp_interval,
            timeout: OTLP_EXPORT_TIMEOUT,
            trace_sample_ratio: t.trace_sample_ratio,
        });
    let telemetry = shoal_telemetry::Telemetry::start(
        &shoal_telemetry::Identity {
            service_version: VERSION.to_string(),
            instance_id: identity.id().to_string(),
            node_name: config.node_name.clone(),
            cluster: config.cluster.name.clone(),
            platform: shoal_telemetry::Identity::detect_platform(|k| std::env::var(k).ok())
                .to_string(),
        },
        t.prometheus,
        otlp.as_ref(),
    )
    .context("cannot start telemetry")?;
    Ok(Prepared {
        identity,
        telemetry: Arc::new(telemetry),
    })
}

/// The audit spool and the config snapshot live in the data directory, and a container whose
/// volume the node's user cannot write would otherwise serve until the first spooled decision
/// is lost: so a node proves it can create and remove a file there before anything starts.
fn check_data_dir(dir: &std::path::Path) -> Result<(), Unusable> {
    let uid = || {
        std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m).to_string())
            .unwrap_or_else(|_| "?".into())
    };
    let fail = |what: &str, e: std::io::Error| {
        Unusable(format!(
            "data directory {} (data_dir, SHOAL_DATA_DIR) {what} by uid {}: {e}; mount a \
             volume the node's user can write there",
            dir.display(),
            uid()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("cannot be created", e))?;
    let probe = dir.join(format!(".write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| fail("is not writable", e))?;
    std::fs::remove_file(&probe).map_err(|e| fail("does not let files be removed", e))
}

/// Runs a node until `shutdown` is cancelled, then shuts down in order:
/// not ready and refuse new requests, drain in-flight requests (bounded by
/// `http.shutdown_grace`), leave the cluster, write the last decisions, flush telemetry, stop
/// following the control plane, stop the health server.
///
/// `gossip_errors` counts the gossip layer's warnings and errors (see `main`'s log setup); it is
/// reported in `/cluster/status` and summarized in the log when lines were held back.
/// `log_level` lets admins change the level at run time.
pub async fn run(
    config: NodeConfig,
    prepared: Prepared,
    log_level: shoal_telemetry::LogLevel,
    shutdown: CancellationToken,
    gossip_errors: shoal_cluster::GossipErrors,
) -> anyhow::Result<()> {
    let Prepared {
        identity,
        telemetry,
    } = prepared;
    tracing::info!(
        version = VERSION,
        node = %config.node_name,
        http = %config.http.listen,
        database = %shoal_control_plane::describe_url(config.control_plane.database_url().expose()),
        "starting shoal node"
    );
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
    let pool = shoal_control_plane::pool(
        &config.control_plane,
        &format!("shoal:{}", config.node_name),
    )?;
    let store = Store::new(
        pool.clone(),
        config.control_plane.secrets_key().cloned(),
        config.node_name.clone(),
    );
    let watcher_stop = CancellationToken::new();
    let (handle, watcher) = shoal_control_plane::spawn(
        pool.clone(),
        WatcherOptions::from_config(&config),
        watcher_stop.clone(),
    );
    let gate = Arc::new(http::DrainGate::default());
    let state = SharedState::new(StateOptions::from_config(&config.state));
    let join = Arc::new(membership::JoinState::new(state.clone()));
    let background_stop = CancellationToken::new();
    let (cluster, mut background) = membership::start(
        &config,
        &identity,
        listener.local_addr()?,
        gate.clone(),
        join.clone(),
        gossip_errors.clone(),
        background_stop.clone(),
    )
    .await?;
    let audit_stop = CancellationToken::new();
    let (audit, audit_writer) = AuditLog::spawn(
        pool.clone(),
        AuditOptions {
            node: config.node_name.clone(),
            journal_dir: config.data_dir.join("audit"),
            legacy_spool: Some(config.data_dir.join("audit-spool.jsonl")),
            fsync: match config.audit.fsync {
                shoal_config::AuditFsync::Batch => Fsync::EachBatch,
                shoal_config::AuditFsync::Interval => Fsync::Every(config.audit.fsync_interval),
            },
            spool_max_bytes: config.audit.spool_max_bytes,
            batch_max: AUDIT_BATCH,
            flush_interval: config.audit.flush_interval,
            retry_interval: AUDIT_RETRY,
        },
        audit_stop.clone(),
    );
    let proxy_stop = CancellationToken::new();
    let mut proxy_tasks = tokio::task::JoinSet::new();
    let data_plane = shoal_proxy::DataPlane::spawn(
        handle.clone(),
        state.clone(),
        Arc::new(audit.clone()),
        shoal_proxy::ProxyOptions::from_config(
            &config.proxy,
            config.http.shutdown_grace,
            config.control_plane.secrets_key().cloned(),
        ),
        &telemetry.meter(),
        proxy_stop.clone(),
        &mut proxy_tasks,
    );
    let api = shoal_console::router(ApiState {
        store: Arc::new(store),
        config: handle.clone(),
        state: state.clone(),
        cluster: cluster.clone(),
        audit: Arc::new(audit.clone()),
        node: config.node_name.clone(),
        session_ttl: config.http.session_ttl,
        cookie_secure: config.http.cookie_secure,
        log_level,
    });
    let _instruments = metrics::register(
        &telemetry.meter(),
        metrics::Sources {
            cluster: cluster.clone(),
            state: state.clone(),
            config: handle.clone(),
            audit: audit.clone(),
            join: join.clone(),
            gate: gate.clone(),
            data_plane: data_plane.clone(),
        },
    );
    let health = http::HealthState {
        config: handle.clone(),
        gate: gate.clone(),
        node: config.node_name.clone(),
        cluster: cluster.clone(),
        join,
        state,
        data_plane,
        audit,
        gossip_errors,
        telemetry: telemetry.clone(),
    };
    let app = http::app(health, api);

    let local = listener.local_addr()?;
    let health_stop = CancellationToken::new();
    let server = tokio::spawn({
        let stop = health_stop.clone();
        async move { http::serve(listener, app, stop).await }
    });
    gate.listeners_started();
    tracing::info!(addr = %local, "http listening");
    tokio::spawn({
        let mut status = handle.subscribe();
        let stop = shutdown.clone();
        async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                first = status.wait_for(|s| s.revision.is_some()) => if let Ok(s) = first {
                    tracing::info!(
                        version = VERSION,
                        revision = s.revision,
                        source = ?s.source,
                        "node ready"
                    );
                }
            }
        }
    });

    shutdown.cancelled().await;
    tracing::info!("shutdown: no longer ready, refusing new requests");
    gate.start_draining();
    // Data-plane listeners stop accepting and finish their requests within the same grace.
    proxy_stop.cancel();
    // One deadline for both: admin requests drain while the data plane does, and the whole
    // drain must fit the orchestrator's kill timeout (grace plus a margin).
    let grace = config.http.shutdown_grace;
    let deadline = tokio::time::Instant::now() + grace;
    if tokio::time::timeout_at(deadline, async {
        while proxy_tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        proxy_tasks.abort_all();
        tracing::warn!("shutdown: data-plane requests still running after the grace; aborted");
    }
    match gate
        .drained(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        Ok(()) => tracing::info!("shutdown: in-flight requests drained"),
        Err(left) => tracing::warn!(
            in_flight = left,
            grace_s = grace.as_secs_f64(),
            "shutdown: drain deadline passed with requests still in flight"
        ),
    }
    background_stop.cancel();
    // The loops stop at their next await point; a stuck one must not delay the leave.
    if tokio::time::timeout(BACKGROUND_STOP_GRACE, async {
        while background.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        background.abort_all();
    }
    // Every decision made is now journaled: ship what PostgreSQL takes before the pool goes.
    audit_stop.cancel();
    if tokio::time::timeout(AUDIT_STOP_GRACE, audit_writer)
        .await
        .is_err()
    {
        tracing::error!("shutdown: the audit writer did not finish in time");
    }
    cluster.leave().await;
    // The last metrics and spans go out (OTLP flush) from a blocking thread, bounded like
    // every step: one export per signal.
    let flushing = telemetry.clone();
    if tokio::time::timeout(
        2 * OTLP_EXPORT_TIMEOUT + Duration::from_secs(1),
        tokio::task::spawn_blocking(move || flushing.shutdown()),
    )
    .await
    .is_err()
    {
        tracing::warn!("shutdown: telemetry did not flush in time");
    }
    watcher_stop.cancel();
    // An apply in progress finishes (so the snapshot on disk matches what was served); a
    // database that hangs mid-query does not hold shutdown up beyond the bound.
    let watcher_abort = watcher.abort_handle();
    if tokio::time::timeout(WATCHER_STOP_GRACE, watcher)
        .await
        .is_err()
    {
        watcher_abort.abort();
        tracing::warn!("shutdown: control plane watcher did not stop in time; aborted");
    }
    pool.close().await;
    tracing::info!("shutdown: control plane connections closed");
    health_stop.cancel();
    match tokio::time::timeout(HEALTH_STOP_GRACE, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!("health server stopped with an error: {e}"),
        Ok(Err(e)) => tracing::warn!("health server task failed: {e}"),
        Err(_) => tracing::warn!("health server did not stop in time"),
    }
    tracing::info!("shutdown complete");
    Ok(())
}
