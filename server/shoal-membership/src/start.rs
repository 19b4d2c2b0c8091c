//! Starting the node's membership: gossip first, then its loops as named tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shoal_cluster::{Cluster, ClusterOptions, GossipErrors, Load, NodeIdentity, NodeMeta};
use shoal_config::NodeConfig;
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

/// What starting the membership takes besides the stage its loops run in.
pub struct StartOptions<'a> {
    pub config: &'a NodeConfig,
    pub identity: &'a NodeIdentity,
    /// The node's version, in its gossiped metadata.
    pub version: &'a str,
    /// Where the admin HTTP listener is bound (advertised in the metadata).
    pub http: SocketAddr,
    /// The shared state the join is for: attached to the cluster here.
    pub state: SharedState,
    /// The gossip layer's held-back warnings, summarized in the log.
    pub gossip_errors: GossipErrors,
    /// Requests in flight on the node, published in its load figures.
    pub in_flight: Arc<dyn Fn() -> usize + Send + Sync>,
}

/// The running membership.
pub struct Membership {
    pub cluster: Cluster,
    pub join: Arc<JoinState>,
}

/// Starts gossip, then the shared state's tasks, discovery, the key reload, the gossip error
/// summary and the load refresh as tasks of `stage`; they stop when it does.
pub async fn start(o: StartOptions<'_>, stage: &Stage) -> Result<Membership, MembershipError> {
    let config = o.config;
    let started_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let meta = NodeMeta {
        node_name: config.node_name.clone(),
        version: o.version.to_string(),
        http: advertised_http(
            o.http,
            config.cluster.advertise.unwrap_or(config.cluster.bind),
        )
        .to_string(),
        started_at_ms,
        load: Load::default(),
    };
    let cluster = Cluster::start(
        ClusterOptions::from_config(&config.cluster),
        o.identity,
        meta,
    )
    .await
    .map_err(|source| MembershipError::Gossip {
        bind: config.cluster.bind,
        source,
    })?;
    tracing::info!(
        node_id = cluster.local_id(),
        persisted_id = o.identity.persisted(),
        "cluster node identity"
    );

    let stop = stage.token();
    let mut state_tasks = JoinSet::new();
    o.state
        .attach(Arc::new(cluster.clone()), stop.clone(), &mut state_tasks);
    stage.spawn_set("shared state", state_tasks);
    let join = Arc::new(JoinState::new(o.state.clone()));
    let me = shoal_discovery::Announce {
        id: cluster.local_id().to_string(),
        cluster: config.cluster.name.clone(),
        addr: cluster.advertise_address(),
        key: config
            .cluster
            .keys()
            .first()
            .cloned()
            .ok_or(MembershipError::NoKey)?,
    };
    match shoal_discovery::from_config(&config.discovery, me)? {
        Some(provider) => stage.spawn(
            "discovery",
            discover_and_join(
                cluster.clone(),
                provider,
                config.discovery.clone(),
                join.clone(),
                stop.clone(),
            ),
        ),
        None => join.set_alone("discovery method none: running alone until peers join".into()),
    }
    if config.cluster.keys_reloadable()
        && let Some(path) = config.cluster.psk_file.clone()
    {
        stage.spawn(
            "key reload",
            reload_keys(
                cluster.clone(),
                path,
                config.cluster.key_reload_interval,
                config.cluster.keys().to_vec(),
                stop.clone(),
            ),
        );
    }
    stage.spawn(
        "gossip error summary",
        summarize_gossip_errors(o.gossip_errors, stop.clone()),
    );
    stage.spawn(
        "load refresh",
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
