//! Starting the node's membership: gossip first, then its loops as named tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shoal_cluster::{Cluster, ClusterOptions, GossipErrors, Load, NodeIdentity, NodeMeta};
use shoal_config::{ClusterConfig, NodeConfig};
use shoal_lifecycle::Stage;
use shoal_state::SharedState;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::MembershipError;
use crate::join::{JoinState, discover_and_join, sleep_or_stop};
use crate::keys::reload_keys;
use crate::load::refresh_load;

/// How often held-back gossip error lines are summarized.
const GOSSIP_ERROR_SUMMARY: Duration = Duration::from_secs(10);

/// The node's id: kept in the node-key file when one is configured (a rescheduled node rejoins
/// as itself), random otherwise.
pub fn identity(config: &NodeConfig) -> Result<NodeIdentity, MembershipError> {
    match &config.cluster.node_key_file {
        Some(path) => NodeIdentity::load_or_create(path).map_err(MembershipError::NodeKey),
        None => Ok(NodeIdentity::random()),
    }
}

/// What starting the membership of one cluster takes besides the stage its loops run in.
pub struct StartOptions<'a> {
    pub config: &'a NodeConfig,
    /// The cluster to join: one of `config.clusters`.
    pub cluster: &'a ClusterConfig,
    pub identity: &'a NodeIdentity,
    /// The node's version, in its gossiped metadata.
    pub version: &'a str,
    /// Where the admin HTTP listener is bound (advertised in the metadata).
    pub http: SocketAddr,
    /// The shared state the join is for: attached to the cluster here.
    pub state: SharedState,
    /// The gossip layer's held-back warnings, summarized in the log (given to one cluster's
    /// start: the log filter holds them for the whole process).
    pub gossip_errors: Option<GossipErrors>,
    /// Requests in flight on the node, published in its load figures.
    pub in_flight: Arc<dyn Fn() -> usize + Send + Sync>,
}

/// The running membership.
pub struct Membership {
    pub cluster: Cluster,
    pub join: Arc<JoinState>,
}

/// Starts gossip, then the shared state's tasks, discovery, the key reload, the gossip error
/// summary and the load refresh as tasks of `stage`; they stop when it does. Tasks are named
/// after the cluster when the node is in several.
pub async fn start(o: StartOptions<'_>, stage: &Stage) -> Result<Membership, MembershipError> {
    let config = o.config;
    let cluster_config = o.cluster;
    let several = config.enabled_clusters().nth(1).is_some();
    let named = |task: &str| {
        if several {
            format!("{task} ({})", cluster_config.name)
        } else {
            task.to_string()
        }
    };
    let counters = &config.cluster_for(shoal_config::Service::Counters).name;
    let started_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let meta = NodeMeta {
        node_name: config.node_name.clone(),
        version: o.version.to_string(),
        http: advertised_http(
            o.http,
            cluster_config.advertise.unwrap_or(cluster_config.bind),
        )
        .to_string(),
        started_at_ms,
        load: Load::default(),
        region: several.then(|| counters.clone()),
    };
    let cluster = Cluster::start(
        ClusterOptions::from_config(cluster_config),
        o.identity,
        meta,
    )
    .await
    .map_err(|source| MembershipError::Gossip {
        bind: cluster_config.bind,
        key: format!("{}.bind", cluster_config.key_path()),
        source,
    })?;
    tracing::info!(
        cluster = %cluster_config.name,
        node_id = cluster.local_id(),
        persisted_id = o.identity.persisted(),
        "cluster node identity"
    );

    let stop = stage.token();
    let mut state_tasks = JoinSet::new();
    o.state
        .attach(Arc::new(cluster.clone()), stop.clone(), &mut state_tasks);
    stage.spawn_set(named("shared state"), state_tasks);
    let join = Arc::new(JoinState::new(o.state.clone()));
    let me = shoal_discovery::Announce {
        id: cluster.local_id().to_string(),
        cluster: cluster_config.name.clone(),
        addr: cluster.advertise_address(),
        key: cluster_config
            .keys()
            .first()
            .cloned()
            .ok_or(MembershipError::NoKey)?,
    };
    match shoal_discovery::from_config(&cluster_config.discovery, me)? {
        Some(provider) => stage.spawn(
            named("discovery"),
            discover_and_join(
                cluster.clone(),
                provider,
                cluster_config.discovery.clone(),
                join.clone(),
                stop.clone(),
            ),
        ),
        None => join.set_alone("discovery method none: running alone until peers join".into()),
    }
    if cluster_config.keys_reloadable()
        && let Some(path) = cluster_config.psk_file.clone()
    {
        stage.spawn(
            named("key reload"),
            reload_keys(
                cluster.clone(),
                path,
                cluster_config.key_reload_interval,
                cluster_config.keys().to_vec(),
                stop.clone(),
            ),
        );
    }
    if let Some(errors) = o.gossip_errors {
        stage.spawn(
            "gossip error summary",
            summarize_gossip_errors(errors, stop.clone()),
        );
    }
    stage.spawn(
        named("load refresh"),
        refresh_load(cluster.clone(), o.in_flight, o.state, stop),
    );
    Ok(Membership { cluster, join })
}

/// The HTTP address other nodes (and the console) should use for this node: the listen
/// address, or, when that is a wildcard, the gossip address's IP with the HTTP port.
fn advertised_http(http: SocketAddr, gossip: SocketAddr) -> SocketAddr {
    if http.ip().is_unspecified() {
        SocketAddr::new(gossip.ip(), http.port())
    } else {
        http
    }
}

/// One line per kind of gossip error held back by the log filter, every period.
async fn summarize_gossip_errors(errors: GossipErrors, stop: CancellationToken) {
    loop {
        if sleep_or_stop(&stop, GOSSIP_ERROR_SUMMARY).await {
            return;
        }
        for held in errors.take_suppressed() {
            tracing::warn!(
                suppressed = held.count,
                "{} more gossip errors like this one were not logged: {}",
                held.count,
                held.message
            );
        }
    }
}
