//! The Shoal node as a library: [`prepare`] settles who the node is and starts its telemetry
//! (the log subscriber needs the trace layer), [`run`] starts every subsystem, serves until its
//! shutdown signal, then stops the stages of [`SHUTDOWN_ORDER`] one after the other. `main.rs`
//! only parses the CLI, sets up logging and turns signals into that future.
//!
//! - `http`: the admin port: health, readiness, the drain gate in front of everything else.

#![forbid(unsafe_code)]

mod http;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use shoal_config::{NodeConfig, Service};
use shoal_console::ApiState;
use shoal_control_plane::{AuditLog, AuditOptions, Fsync, Store, WatcherOptions};
use shoal_lifecycle::Supervisor;
use shoal_membership::{Membership, StartOptions};
use shoal_model::ConfigHandle;
use shoal_state::{Services, SharedState, StateOptions};
use tokio_util::sync::CancellationToken;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The order a node stops in, each stage with its deadline: a stage's tasks are told to stop
/// and awaited, up to the deadline (then aborted and named in the log), before the next stage
/// begins. Before the first, the node turns not ready and refuses new admin requests.
/// docs/ARCHITECTURE.md ("Lifecycle") states the same order.
pub const SHUTDOWN_ORDER: [StageSpec; 8] = [
    // Data-plane listeners stop accepting and finish their requests while admin requests
    // drain: one deadline for both, which must fit the orchestrator's kill timeout.
    ("drain", |c| c.http.shutdown_grace),
    // Discovery, key reload, load refresh, the shared state's tasks: they stop at their next
    // await point, and a stuck one must not delay the leave.
    ("background", |_| Duration::from_secs(2)),
    // Every decision made is journaled by now: ship what PostgreSQL takes before the pool
    // goes (what is left stays on disk).
    ("audit", |_| Duration::from_secs(10)),
    // Peers see `left`, not `dead` (the leave broadcast is bounded at 2 s itself).
    ("cluster leave", |_| Duration::from_secs(5)),
    // The last metrics and spans go out: one export per signal.
    ("telemetry flush", |_| {
        2 * OTLP_EXPORT_TIMEOUT + Duration::from_secs(1)
    }),
    // An apply in progress finishes, so the snapshot on disk matches what was served.
    ("config watcher", |_| Duration::from_secs(5)),
    ("database", |_| Duration::from_secs(5)),
    // `/health` and `/ready` answer until here; the listener bounds its own drain, this is
    // the backstop.
    ("admin http", |_| ADMIN_CLOSE_GRACE + Duration::from_secs(1)),
];

/// A shutdown stage: its name, and its deadline under the node's config.
pub type StageSpec = (&'static str, fn(&NodeConfig) -> Duration);

/// Decisions per audit insert, and how often a spool is retried while PostgreSQL is away.
const AUDIT_BATCH: usize = 500;
const AUDIT_RETRY: Duration = Duration::from_secs(1);

/// Bound on one OTLP export, so a collector that hangs never holds shutdown's flush long.
const OTLP_EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on closing the admin port's remaining connections, the last step.
const ADMIN_CLOSE_GRACE: Duration = Duration::from_secs(5);

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
    admin: std::net::TcpListener,
}

impl Prepared {
    /// Where the admin port listens: with port 0 in `http.listen`, the port the system chose.
    pub fn admin_addr(&self) -> std::net::SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The telemetry the log subscriber takes its trace layer from.
    pub fn telemetry(&self) -> &shoal_telemetry::Telemetry {
        &self.telemetry
    }

    /// The node once its log subscriber is up: what [`run`] takes. `gossip_errors` counts the
    /// gossip layer's warnings and errors the log filter held back (reported in
    /// `/cluster/status`, summarized in the log); `log_level` lets admins change the level at
    /// run time.
    pub fn with_logs(
        self,
        log_level: shoal_telemetry::LogLevel,
        gossip_errors: shoal_cluster::GossipErrors,
    ) -> Node {
        Node {
            identity: self.identity,
            telemetry: self.telemetry,
            admin: self.admin,
            log_level,
            gossip_errors,
        }
    }
}

/// A prepared node with its logs set up.
pub struct Node {
    identity: shoal_cluster::NodeIdentity,
    telemetry: Arc<shoal_telemetry::Telemetry>,
    admin: std::net::TcpListener,
    log_level: shoal_telemetry::LogLevel,
    gossip_errors: shoal_cluster::GossipErrors,
}

/// Loads the node's identity (its id is `service.instance.id` on every metric and span),
/// binds the admin port (so a port already taken fails before anything starts, and a caller
/// that asked for port 0 learns the port) and starts telemetry. Runs inside the Tokio
/// runtime: the gRPC exporter's channel lives there.
pub fn prepare(config: &NodeConfig) -> anyhow::Result<Prepared> {
    check_data_dir(&config.data_dir)?;
    let admin = std::net::TcpListener::bind(config.http.listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
    let identity = shoal_membership::identity(config).map_err(|e| Unusable(e.to_string()))?;
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
            cluster: config.cluster_for(Service::Counters).name.clone(),
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
        admin,
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

/// Runs a node until `shutdown` completes, then stops it in [`SHUTDOWN_ORDER`]. Every task
/// runs in one of those stages, by name.
pub async fn run(
    config: NodeConfig,
    node: Node,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let Node {
        identity,
        telemetry,
        admin: listener,
        log_level,
        gossip_errors,
    } = node;
    tracing::info!(
        version = VERSION,
        node = %config.node_name,
        http = %config.http.listen,
        database = %shoal_control_plane::describe_url(config.control_plane.database_url().expose()),
        "starting shoal node"
    );
    let listener = tokio::net::TcpListener::from_std(listener)
        .with_context(|| format!("cannot serve on {} (http.listen)", config.http.listen))?;
    let pool = shoal_control_plane::pool(
        &config.control_plane,
        &format!("shoal:{}", config.node_name),
    )?;
    let store = Store::new(
        pool.clone(),
        config.control_plane.secrets_key().cloned(),
        config.node_name.clone(),
    );
    let mut supervisor = Supervisor::new();
    let [
        drain,
        background,
        audit_stage,
        leave,
        flush,
        watcher,
        database,
        admin,
    ] = SHUTDOWN_ORDER.map(|(name, deadline)| supervisor.stage(name, deadline(&config)));
    let handle =
        shoal_control_plane::spawn(pool.clone(), WatcherOptions::from_config(&config), &watcher);
    let gate = Arc::new(http::DrainGate::default());
    let joined = join_clusters(
        &config,
        &identity,
        &listener,
        &gate,
        &gossip_errors,
        &background,
    )
    .await?;
    let services = services(&config, &joined);
    let primary = &joined[0];
    let audit = AuditLog::spawn(
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
        &audit_stage,
    );
    let meter = telemetry.meter();
    let data_plane = shoal_proxy::DataPlane::spawn(
        handle.clone(),
        services.clone(),
        Arc::new(audit.clone()),
        shoal_proxy::ProxyOptions::from_config(
            &config.proxy,
            config.http.shutdown_grace,
            config.control_plane.secrets_key().cloned(),
            &config.node_name,
        ),
        &meter,
        &drain,
    )
    .context("starting the data plane's threads")?;
    let api = shoal_console::router(ApiState {
        store: Arc::new(store),
        config: handle.clone(),
        state: services.counters.clone(),
        services: services.clone(),
        cluster: primary.cluster.clone(),
        clusters: joined
            .iter()
            .map(|j| shoal_console::NodeCluster {
                name: j.name.clone(),
                services: j.services.clone(),
                cluster: j.cluster.clone(),
                state: j.state.clone(),
            })
            .collect(),
        audit: Arc::new(audit.clone()),
        node: config.node_name.clone(),
        session_ttl: config.http.session_ttl,
        cookie_secure: config.http.cookie_secure,
        log_level,
    });
    for j in &joined {
        shoal_cluster::register_metrics(&meter, &j.cluster, &j.name);
        shoal_membership::register_metrics(&meter, &j.join, &j.name);
        shoal_state::register_metrics(&meter, &j.state, &j.name);
    }
    shoal_control_plane::register_metrics(&meter, &handle, &audit);
    gate.register_metrics(&meter);
    let health = http::HealthState {
        config: handle.clone(),
        gate: gate.clone(),
        node: config.node_name.clone(),
        clusters: Arc::new(joined.clone()),
        data_plane,
        audit,
        gossip_errors,
        telemetry: telemetry.clone(),
    };
    let app = http::app(health, api);

    let local = listener.local_addr()?;
    admin.spawn(
        "admin server",
        http::serve(listener, app, admin.token(), ADMIN_CLOSE_GRACE),
    );
    gate.listeners_started();
    tracing::info!(addr = %local, "http listening");
    background.spawn("ready log", log_when_ready(handle, background.token()));
    drain.on_stop("admin requests", {
        let gate = gate.clone();
        async move {
            gate.drained().await;
            tracing::info!("shutdown: in-flight requests drained");
        }
    });
    for j in joined {
        leave.on_stop(format!("leave {}", j.name), async move {
            j.cluster.leave().await
        });
    }
    flush.on_stop("flush", async move {
        // The exporters flush from a blocking thread of their own.
        if let Err(e) = tokio::task::spawn_blocking(move || telemetry.shutdown()).await {
            tracing::warn!("shutdown: telemetry flush failed: {e}");
        }
    });
    database.on_stop("close pool", async move {
        pool.close().await;
        tracing::info!("shutdown: control plane connections closed");
    });

    shutdown.await;
    tracing::info!("shutdown: no longer ready, refusing new requests");
    gate.start_draining();
    supervisor.shutdown().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// One cluster the node is in: its membership and the shared state that runs on it.
#[derive(Clone)]
pub(crate) struct Joined {
    pub name: String,
    /// The services (`[services]` keys) on this cluster.
    pub services: Vec<&'static str>,
    pub cluster: shoal_cluster::Cluster,
    pub join: Arc<shoal_membership::JoinState>,
    pub state: SharedState,
}

/// Joins every enabled cluster, each with a shared state of its own; the counters' cluster
/// comes first (what single-cluster views and `/cluster/status`'s top level show).
async fn join_clusters(
    config: &NodeConfig,
    identity: &shoal_cluster::NodeIdentity,
    listener: &tokio::net::TcpListener,
    gate: &Arc<http::DrainGate>,
    gossip_errors: &shoal_cluster::GossipErrors,
    stage: &shoal_lifecycle::Stage,
) -> anyhow::Result<Vec<Joined>> {
    let counters = &config.cluster_for(Service::Counters).name;
    let mut order: Vec<&shoal_config::ClusterConfig> = config.enabled_clusters().collect();
    order.sort_by_key(|c| &c.name != counters);
    let mut joined = Vec::new();
    for (i, c) in order.into_iter().enumerate() {
        let services: Vec<&'static str> = Service::ALL
            .into_iter()
            .filter(|s| config.cluster_for(*s).name == c.name)
            .map(Service::as_str)
            .collect();
        for s in Service::ALL {
            if let Some(named) = s.named_in(&config.services)
                && named == &c.name
                && config.cluster_for(s).name != c.name
            {
                tracing::warn!(
                    service = s.as_str(),
                    "services.{}: cluster {named:?} is disabled; the service runs on {:?}",
                    s.as_str(),
                    config.cluster_for(s).name
                );
            }
        }
        let mut options = StateOptions::from_config(&config.state);
        if services.contains(&Service::GlobalCounters.as_str())
            && !services.contains(&Service::Counters.as_str())
        {
            options.strict_timeout = config.state.global_strict_timeout;
        }
        let state = SharedState::new(options);
        let Membership { cluster, join } = shoal_membership::start(
            StartOptions {
                config,
                cluster: c,
                identity,
                version: VERSION,
                http: listener.local_addr()?,
                state: state.clone(),
                gossip_errors: (i == 0).then(|| gossip_errors.clone()),
                in_flight: {
                    let gate = gate.clone();
                    Arc::new(move || gate.in_flight())
                },
            },
            stage,
        )
        .await?;
        joined.push(Joined {
            name: c.name.clone(),
            services,
            cluster,
            join,
            state,
        });
    }
    Ok(joined)
}

/// The shared state each service uses, from `[services]`.
fn services(config: &NodeConfig, joined: &[Joined]) -> Services {
    let on = |s: Service| {
        let name = &config.cluster_for(s).name;
        joined
            .iter()
            .find(|j| &j.name == name)
            .expect("every enabled cluster is joined")
            .state
            .clone()
    };
    Services {
        region: config.cluster_for(Service::Counters).name.clone(),
        counters: on(Service::Counters),
        cache: on(Service::Cache),
        events: on(Service::Events),
        global_counters: on(Service::GlobalCounters),
    }
}

/// Logs `node ready` once the first config revision is in force.
async fn log_when_ready(config: ConfigHandle, stop: CancellationToken) {
    let mut status = config.subscribe();
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

#[cfg(test)]
mod tests {
    use super::SHUTDOWN_ORDER;

    #[test]
    fn the_architecture_page_states_the_shutdown_order() {
        let page = include_str!("../../../docs/ARCHITECTURE.md");
        let stated: Vec<&str> = page
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .filter(|name| !name.starts_with("server/"))
            .collect();
        let order: Vec<&str> = SHUTDOWN_ORDER.iter().map(|(name, _)| *name).collect();
        assert_eq!(stated, order);
    }
}
