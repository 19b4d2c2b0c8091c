//! The node's side of clustering: start gossip, keep discovering and joining peers, reload the
//! key file for rotation, and refresh the load figures other nodes see.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use shoal_cluster::{
    Cluster, ClusterOptions, GossipErrors, Load, MemberState, NodeIdentity, NodeMeta,
};
use shoal_config::{NodeConfig, SecretKey};
use shoal_state::SharedState;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::http::DrainGate;

/// Until the first successful join, discovery retries this often (then at its interval).
const EARLY_RETRY: Duration = Duration::from_secs(1);

/// How often held-back gossip error lines are summarized.
const GOSSIP_ERROR_SUMMARY: Duration = Duration::from_secs(10);

/// How often the load figures in this node's metadata are refreshed.
const LOAD_REFRESH: Duration = Duration::from_secs(2);

/// Whether this node has joined its cluster, or knows it is alone; `/ready` waits for it.
pub(crate) struct JoinState {
    ready: std::sync::atomic::AtomicBool,
    detail: Mutex<String>,
    /// Told when the node runs alone, so it stops waiting for a state replay.
    state: SharedState,
    discovery: Mutex<DiscoveryStats>,
}

/// Discovery rounds as `/cluster/status` reports them (until telemetry exports them).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct DiscoveryStats {
    pub method: &'static str,
    pub runs: u64,
    pub failures: u64,
    /// Peers the last successful round found (this node excluded).
    pub last_found: Option<usize>,
    /// The cause of the last failed round, cleared by the next successful one.
    pub last_error: Option<String>,
}

impl JoinState {
    pub(crate) fn new(state: SharedState) -> Self {
        Self {
            ready: Default::default(),
            detail: Mutex::default(),
            state,
            discovery: Mutex::default(),
        }
    }

    pub(crate) fn discovery(&self) -> DiscoveryStats {
        self.discovery.lock().expect("discovery stats").clone()
    }

    fn record_round(&self, method: &'static str, outcome: Result<usize, &str>) {
        let mut d = self.discovery.lock().expect("discovery stats");
        d.method = method;
        d.runs += 1;
        match outcome {
            Ok(found) => {
                d.last_found = Some(found);
                d.last_error = None;
            }
            Err(e) => {
                d.failures += 1;
                d.last_error = Some(e.to_string());
            }
        }
    }

    fn set_alone(&self, detail: String) {
        self.set(true, detail);
        self.state.settle_alone();
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn detail(&self) -> String {
        self.detail.lock().expect("join state").clone()
    }

    fn set(&self, ready: bool, detail: String) {
        *self.detail.lock().expect("join state") = detail;
        if ready {
            self.ready.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// The node's id: kept in the node-key file when one is configured (a rescheduled node rejoins
/// as itself), random otherwise.
pub(crate) fn identity(config: &NodeConfig) -> anyhow::Result<NodeIdentity> {
    Ok(match &config.cluster.node_key_file {
        Some(path) => NodeIdentity::load_or_create(path)?,
        None => NodeIdentity::random(),
    })
}

/// Starts gossip and the background loops; they stop when `stop` fires.
pub(crate) async fn start(
    config: &NodeConfig,
    identity: &NodeIdentity,
    http: SocketAddr,
    gate: Arc<DrainGate>,
    join: Arc<JoinState>,
    gossip_errors: GossipErrors,
    stop: CancellationToken,
) -> anyhow::Result<(Cluster, JoinSet<()>)> {
    // The shared state the join is for: attached to the cluster here.
    let state = join.state.clone();
    let options = ClusterOptions::from_config(&config.cluster);
    let started_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let meta = NodeMeta {
        node_name: config.node_name.clone(),
        version: crate::VERSION.to_string(),
        http: advertised_http(
            http,
            config.cluster.advertise.unwrap_or(config.cluster.bind),
        )
        .to_string(),
        started_at_ms,
        load: Load::default(),
    };
    let cluster = Cluster::start(options, identity, meta)
        .await
        .with_context(|| {
            format!(
                "cannot start gossip on {} (cluster.bind)",
                config.cluster.bind
            )
        })?;
    tracing::info!(
        node_id = cluster.local_id(),
        persisted_id = identity.persisted(),
        "cluster node identity"
    );

    let mut tasks = JoinSet::new();
    state.attach(Arc::new(cluster.clone()), stop.clone(), &mut tasks);
    let me = shoal_discovery::Announce {
        id: cluster.local_id().to_string(),
        cluster: config.cluster.name.clone(),
        addr: cluster.advertise_address(),
        key: config
            .cluster
            .keys()
            .first()
            .cloned()
            .context("cluster.psk: no key configured")?,
    };
    match shoal_discovery::from_config(&config.discovery, me)? {
        Some(provider) => {
            tasks.spawn(discover_and_join(
                cluster.clone(),
                provider,
                config.discovery.clone(),
                join,
                stop.clone(),
            ));
        }
        None => join.set_alone("discovery method none: running alone until peers join".into()),
    }
    if config.cluster.keys_reloadable()
        && let Some(path) = config.cluster.psk_file.clone()
    {
        tasks.spawn(reload_keys(
            cluster.clone(),
            path,
            config.cluster.key_reload_interval,
            config.cluster.keys().to_vec(),
            stop.clone(),
        ));
    }
    tasks.spawn(summarize_gossip_errors(gossip_errors, stop.clone()));
    tasks.spawn(refresh_load(cluster.clone(), gate, state.clone(), stop));
    Ok((cluster, tasks))
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

/// Bound on removing this node's registration (etcd, Consul) when it stops; it must fit the
/// background loops' stop grace.
const LEAVE_GRACE: Duration = Duration::from_millis(1500);

async fn discover_and_join(
    cluster: Cluster,
    provider: Box<dyn shoal_discovery::Discover>,
    config: shoal_config::DiscoveryConfig,
    join: Arc<JoinState>,
    stop: CancellationToken,
) {
    discover_until_stopped(cluster, provider.as_ref(), config, join, stop).await;
    if tokio::time::timeout(LEAVE_GRACE, provider.leave())
        .await
        .is_err()
    {
        tracing::warn!(
            method = provider.method(),
            "discovery registration not removed in time; it expires on its own"
        );
    }
}

async fn discover_until_stopped(
    cluster: Cluster,
    provider: &dyn shoal_discovery::Discover,
    config: shoal_config::DiscoveryConfig,
    join: Arc<JoinState>,
    stop: CancellationToken,
) {
    let method = provider.method();
    let started = std::time::Instant::now();
    let mut last_error: Option<String> = None;
    let mut last_join_error: Option<String> = None;
    let mut last_found: Option<BTreeSet<SocketAddr>> = None;
    loop {
        let round = tokio::select! {
            _ = stop.cancelled() => return,
            found = provider.discover() => found,
        };
        let found = match round {
            Ok(found) => found,
            Err(e) => {
                let message = e.to_string();
                join.record_round(method, Err(&message));
                if last_error.as_ref() != Some(&message) {
                    tracing::warn!(method, "discovery failed: {message}");
                }
                if !join.is_ready() {
                    join.set(false, format!("discovery failed: {message}"));
                }
                last_error = Some(message);
                give_up_waiting(&join, started, &config, method);
                if sleep_or_stop(&stop, retry_delay(&join, config.interval)).await {
                    return;
                }
                continue;
            }
        };
        last_error = None;
        let outside = |a: &SocketAddr| {
            !config.allowed_address_space.is_empty()
                && !config
                    .allowed_address_space
                    .iter()
                    .any(|net| net.contains(&a.ip()))
        };
        let dropped = found.iter().filter(|a| outside(a)).count();
        let allowed = shoal_discovery::filter_allowed(found, &config.allowed_address_space);
        let own = cluster.advertise_address();
        let peers: BTreeSet<SocketAddr> = allowed.into_iter().filter(|a| *a != own).collect();
        join.record_round(method, Ok(peers.len()));
        if last_found.as_ref() != Some(&peers) {
            tracing::info!(
                method,
                nodes = peers.len(),
                outside_allowed_space = dropped,
                peers = ?peers,
                "discovered {} nodes",
                peers.len()
            );
            last_found = Some(peers.clone());
        }
        let alive: BTreeSet<SocketAddr> = cluster
            .members()
            .into_iter()
            .filter(|m| !m.local && m.state == MemberState::Alive)
            .map(|m| m.address)
            .collect();
        let new: Vec<SocketAddr> = peers.difference(&alive).copied().collect();
        if peers.is_empty() && provider.settled() {
            join.set_alone(format!(
                "{method} discovery found no other node: running alone"
            ));
        } else if peers.is_empty() {
            join.set(
                false,
                format!("{method} discovery: still listening for peers"),
            );
            give_up_waiting(&join, started, &config, method);
        } else if !new.is_empty() {
            let outcome = tokio::select! {
                _ = stop.cancelled() => return,
                outcome = cluster.join(&new) => outcome,
            };
            if !outcome.joined.is_empty() {
                tracing::info!(
                    method,
                    joined = outcome.joined.len(),
                    "successfully joined {} peers",
                    outcome.joined.len()
                );
                join.set(true, format!("joined {} peers", outcome.joined.len()));
            }
            if let Some(e) = &outcome.error {
                // Once per distinct failure: a listed peer that stays down is not news.
                if last_join_error.as_ref() != Some(e) {
                    tracing::warn!(method, tried = ?new, "could not join some peers: {e}");
                }
                if !join.is_ready() {
                    join.set(false, format!("could not join any of {new:?}: {e}"));
                }
            }
            last_join_error = outcome.error;
        } else {
            join.set(true, format!("joined; {} peers alive", alive.len()));
        }
        give_up_waiting(&join, started, &config, method);
        if sleep_or_stop(&stop, retry_delay(&join, config.interval)).await {
            return;
        }
    }
}

/// After `join_timeout` without a join, the node reports ready alone (and keeps trying), so a
/// node whose peers are all gone, or whose discovery is down, can still start.
fn give_up_waiting(
    join: &JoinState,
    started: std::time::Instant,
    config: &shoal_config::DiscoveryConfig,
    method: &str,
) {
    if !join.is_ready() && started.elapsed() >= config.join_timeout {
        let why = join.detail();
        tracing::warn!(
            method,
            waited_s = config.join_timeout.as_secs_f64(),
            "no peer could be joined ({why}); running alone and still trying"
        );
        join.set_alone(format!("running alone after {why}"));
    }
}

/// The next round's delay, spread by ±20% so that nodes started together (a rollout, a
/// scale-up) do not all ask the platform's API in the same instant.
fn retry_delay(join: &JoinState, interval: Duration) -> Duration {
    let base = if join.is_ready() {
        interval
    } else {
        interval.min(EARLY_RETRY)
    };
    base.mul_f64(rand::random_range(0.8..1.2))
}

/// Sleeps; `true` if the node is stopping.
async fn sleep_or_stop(stop: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

/// Re-reads the key file so keys rotate without restarts. A file that does not parse keeps
/// the current keys in force and is reported once per distinct problem.
async fn reload_keys(
    cluster: Cluster,
    path: std::path::PathBuf,
    interval: Duration,
    mut current: Vec<SecretKey>,
    stop: CancellationToken,
) {
    let mut last_error: Option<String> = None;
    loop {
        if sleep_or_stop(&stop, interval).await {
            return;
        }
        let read = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|text| SecretKey::parse_list(&text).map_err(|e| format!("key {e}")));
        match read {
            Ok(keys) if keys != current => match cluster.set_keys(&keys) {
                Ok(_) => {
                    current = keys;
                    last_error = None;
                }
                Err(e) => tracing::error!(path = %path.display(), "cannot apply the new keys: {e}"),
            },
            Ok(_) => last_error = None,
            Err(e) => {
                if last_error.as_ref() != Some(&e) {
                    tracing::error!(
                        path = %path.display(),
                        "cluster.psk_file {e}; keeping the keys in force"
                    );
                }
                last_error = Some(e);
            }
        }
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

/// Publishes CPU, memory, in-flight requests, keys held and replay progress, only when they
/// changed noticeably.
async fn refresh_load(
    cluster: Cluster,
    gate: Arc<DrainGate>,
    state: SharedState,
    stop: CancellationToken,
) {
    let mut cpu = CpuSampler::default();
    let mut published = Load::default();
    // The first figures go out at once, so peers never show a fresh node with empty load.
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) && sleep_or_stop(&stop, LOAD_REFRESH).await {
            return;
        }
        let load = Load {
            cpu_percent: cpu.sample().unwrap_or(0.0),
            memory_bytes: resident_bytes().unwrap_or(0),
            in_flight: gate.in_flight() as u64,
            keys: state.status().keys as u64,
            replayed: state.replay().done,
        };
        let changed = (load.cpu_percent - published.cpu_percent).abs() >= 5.0
            || load.memory_bytes.abs_diff(published.memory_bytes) > published.memory_bytes / 10
            || load.in_flight != published.in_flight
            || load.keys.abs_diff(published.keys) > published.keys / 10
            || load.replayed != published.replayed;
        if changed {
            match cluster.update_meta(|m| m.load = load.clone()).await {
                Ok(()) => published = load,
                Err(e) => tracing::debug!("load refresh not broadcast: {e}"),
            }
        }
    }
}

/// Linux clock ticks per second for /proc CPU times (USER_HZ, 100 on every mainstream arch).
const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_BYTES: u64 = 4096;

#[derive(Default)]
struct CpuSampler {
    last: Option<(std::time::Instant, u64)>,
}

impl CpuSampler {
    /// Percent of one core used since the previous sample.
    fn sample(&mut self) -> Option<f32> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may contain spaces) start after ") ".
        let rest = stat.rsplit_once(") ")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let now = std::time::Instant::now();
        let percent = self.last.map(|(at, before)| {
            let secs = now.duration_since(at).as_secs_f64().max(0.001);
            (ticks.saturating_sub(before) as f64 / TICKS_PER_SECOND / secs * 100.0) as f32
        });
        self.last = Some((now, ticks));
        percent
    }
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    Some(statm.split_whitespace().nth(1)?.parse::<u64>().ok()? * PAGE_BYTES)
}
