//! The discover-and-join loop and the decision `/ready` waits for: joined, or alone.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_cluster::{Cluster, JoinOutcome, MemberState};
use shoal_discovery::Discover;
use shoal_state::SharedState;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Until the first successful join, discovery retries this often (then at its interval).
const EARLY_RETRY: Duration = Duration::from_secs(1);

/// Whether this node has joined its cluster, or knows it is alone; `/ready` waits for it.
pub struct JoinState {
    ready: std::sync::atomic::AtomicBool,
    detail: Mutex<String>,
    /// Told when the node runs alone, so it stops waiting for a state replay.
    state: SharedState,
    discovery: Mutex<DiscoveryStats>,
}

/// Discovery rounds, as `/cluster/status` and the discovery metrics report them.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DiscoveryStats {
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

    pub fn discovery(&self) -> DiscoveryStats {
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

    pub(crate) fn set_alone(&self, detail: String) {
        self.set(true, detail);
        self.state.settle_alone();
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn detail(&self) -> String {
        self.detail.lock().expect("join state").clone()
    }

    fn set(&self, ready: bool, detail: String) {
        *self.detail.lock().expect("join state") = detail;
        if ready {
            self.ready.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// What the join loop needs of gossip; the cluster in a node, a stand-in in tests.
pub(crate) trait Gossip: Send + Sync + 'static {
    /// This node's own gossip address (discovery may list it).
    fn own_address(&self) -> SocketAddr;
    /// The gossip addresses of the other members alive now.
    fn alive_peers(&self) -> BTreeSet<SocketAddr>;
    fn join(&self, addrs: &[SocketAddr]) -> impl Future<Output = JoinOutcome> + Send;
}

impl Gossip for Cluster {
    fn own_address(&self) -> SocketAddr {
        self.advertise_address()
    }

    fn alive_peers(&self) -> BTreeSet<SocketAddr> {
        self.members()
            .into_iter()
            .filter(|m| !m.local && m.state == MemberState::Alive)
            .map(|m| m.address)
            .collect()
    }

    fn join(&self, addrs: &[SocketAddr]) -> impl Future<Output = JoinOutcome> + Send {
        Cluster::join(self, addrs)
    }
}

/// Bound on removing this node's registration (etcd, Consul) when it stops; it must fit the
/// background loops' stop grace.
const LEAVE_GRACE: Duration = Duration::from_millis(1500);

/// Discovers and joins peers until `stop`, then removes this node's registration (etcd,
/// Consul).
pub(crate) async fn discover_and_join(
    cluster: impl Gossip,
    provider: Box<dyn Discover>,
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
    cluster: impl Gossip,
    provider: &dyn Discover,
    config: shoal_config::DiscoveryConfig,
    join: Arc<JoinState>,
    stop: CancellationToken,
) {
    let method = provider.method();
    let started = Instant::now();
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
        let own = cluster.own_address();
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
        let alive = cluster.alive_peers();
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
    started: Instant,
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
pub(crate) async fn sleep_or_stop(stop: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "the loop under test runs as a task of the paused test runtime"
)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, Ordering};

    use shoal_config::DiscoveryConfig;
    use shoal_discovery::DiscoveryError;
    use shoal_state::StateOptions;

    use super::*;

    const OWN: &str = "10.0.0.1:7946";
    const PEER: &str = "10.0.0.2:7946";

    fn addr(a: &str) -> SocketAddr {
        a.parse().unwrap()
    }

    type Round = Result<Vec<SocketAddr>, DiscoveryError>;

    /// A provider that answers from a script (the last answer repeats) and notes when it was
    /// asked.
    struct Scripted {
        rounds: Mutex<VecDeque<Round>>,
        asked: Arc<Mutex<Vec<Instant>>>,
        settled: bool,
        left: Arc<AtomicBool>,
    }

    impl Discover for Scripted {
        fn method(&self) -> &'static str {
            "scripted"
        }

        fn discover(&self) -> Pin<Box<dyn Future<Output = Round> + Send + '_>> {
            self.asked.lock().unwrap().push(Instant::now());
            let mut rounds = self.rounds.lock().unwrap();
            let round = if rounds.len() > 1 {
                rounds.pop_front().unwrap()
            } else {
                rounds[0].clone()
            };
            Box::pin(async move { round })
        }

        fn settled(&self) -> bool {
            self.settled
        }

        fn leave(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            self.left.store(true, Ordering::SeqCst);
            Box::pin(async {})
        }
    }

    fn failed() -> Round {
        Err(DiscoveryError::Invalid {
            method: "scripted",
            message: "the registry is down".into(),
        })
    }

    /// Gossip whose peers answer a join (they become alive) or never do.
    #[derive(Clone)]
    struct FakeGossip {
        answering: bool,
        alive: Arc<Mutex<BTreeSet<SocketAddr>>>,
        joins: Arc<Mutex<Vec<Vec<SocketAddr>>>>,
    }

    impl Gossip for FakeGossip {
        fn own_address(&self) -> SocketAddr {
            addr(OWN)
        }

        fn alive_peers(&self) -> BTreeSet<SocketAddr> {
            self.alive.lock().unwrap().clone()
        }

        async fn join(&self, addrs: &[SocketAddr]) -> JoinOutcome {
            self.joins.lock().unwrap().push(addrs.to_vec());
            if self.answering {
                self.alive.lock().unwrap().extend(addrs);
                JoinOutcome {
                    joined: addrs.to_vec(),
                    error: None,
                }
            } else {
                JoinOutcome {
                    joined: Vec::new(),
                    error: Some("connection refused".into()),
                }
            }
        }
    }

    struct Run {
        join: Arc<JoinState>,
        gossip: FakeGossip,
        asked: Arc<Mutex<Vec<Instant>>>,
        left: Arc<AtomicBool>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
    const INTERVAL: Duration = Duration::from_secs(30);

    fn run(rounds: Vec<Round>, settled: bool, answering: bool) -> Run {
        let join = Arc::new(JoinState::new(SharedState::new(StateOptions::default())));
        let gossip = FakeGossip {
            answering,
            alive: Arc::default(),
            joins: Arc::default(),
        };
        let asked = Arc::new(Mutex::new(Vec::new()));
        let left = Arc::new(AtomicBool::new(false));
        let provider = Scripted {
            rounds: Mutex::new(rounds.into()),
            asked: asked.clone(),
            settled,
            left: left.clone(),
        };
        let config = DiscoveryConfig {
            interval: INTERVAL,
            join_timeout: JOIN_TIMEOUT,
            ..DiscoveryConfig::default()
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(discover_and_join(
            gossip.clone(),
            Box::new(provider),
            config,
            join.clone(),
            stop.clone(),
        ));
        Run {
            join,
            gossip,
            asked,
            left,
            stop,
            task,
        }
    }

    /// Lets the loop run until `at` after the test started (paused time).
    async fn until(start: Instant, at: Duration) {
        tokio::time::sleep_until(start + at).await;
    }

    /// Lets the loop run until the provider has been asked `n` times.
    async fn until_asked(asked: &Mutex<Vec<Instant>>, n: usize) {
        while asked.lock().unwrap().len() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn gaps(asked: &Mutex<Vec<Instant>>) -> Vec<Duration> {
        let asked = asked.lock().unwrap();
        asked.windows(2).map(|w| w[1] - w[0]).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn peers_that_answer_are_joined_and_the_node_is_ready() {
        let start = Instant::now();
        let r = run(vec![Ok(vec![addr(OWN), addr(PEER)])], true, true);
        until(start, Duration::from_millis(1)).await;
        assert!(r.join.is_ready());
        assert_eq!(r.join.detail(), "joined 1 peers");
        assert_eq!(
            *r.gossip.joins.lock().unwrap(),
            [vec![addr(PEER)]],
            "this node's own address is not joined"
        );
        assert!(
            !r.join.state.replay().done,
            "a joined node waits for its replay"
        );

        // The next round finds the peer alive already: nothing to join again.
        until(start, INTERVAL.mul_f64(1.3)).await;
        assert_eq!(r.asked.lock().unwrap().len(), 2);
        assert_eq!(r.gossip.joins.lock().unwrap().len(), 1);
        assert_eq!(r.join.detail(), "joined; 1 peers alive");
        let stats = r.join.discovery();
        assert_eq!(
            (stats.method, stats.runs, stats.last_found),
            ("scripted", 2, Some(1))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_whose_peers_never_answer_runs_alone_after_the_join_timeout() {
        let start = Instant::now();
        let r = run(vec![Ok(vec![addr(PEER)])], true, false);
        until(start, JOIN_TIMEOUT - Duration::from_secs(1)).await;
        assert!(!r.join.is_ready());
        assert!(
            r.join
                .detail()
                .starts_with("could not join any of [10.0.0.2:7946]"),
            "{}",
            r.join.detail()
        );

        // The first round past the timeout gives up waiting (rounds are about 1 s apart).
        until(start, JOIN_TIMEOUT + EARLY_RETRY.mul_f64(1.25)).await;
        assert!(r.join.is_ready());
        assert!(
            r.join
                .detail()
                .starts_with("running alone after could not join"),
            "{}",
            r.join.detail()
        );
        assert!(r.join.state.replay().done, "alone: no replay to wait for");

        // And it keeps trying, now at the interval.
        let tries = r.gossip.joins.lock().unwrap().len();
        until(start, JOIN_TIMEOUT + INTERVAL.mul_f64(1.3)).await;
        assert!(r.gossip.joins.lock().unwrap().len() > tries);
        assert!(r.gossip.alive.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn failed_rounds_are_retried_early_then_at_the_interval_once_joined() {
        let r = run(
            vec![failed(), failed(), failed(), Ok(vec![addr(PEER)])],
            true,
            true,
        );
        until_asked(&r.asked, 3).await;
        assert!(!r.join.is_ready());
        assert_eq!(
            r.join.detail(),
            "discovery failed: scripted discovery: the registry is down"
        );
        let stats = r.join.discovery();
        assert_eq!((stats.runs, stats.failures), (3, 3));
        assert!(stats.last_error.is_some());

        until_asked(&r.asked, 5).await;
        assert!(r.join.is_ready());
        let stats = r.join.discovery();
        assert_eq!((stats.runs, stats.failures, stats.last_error), (5, 3, None));
        let gaps = gaps(&r.asked);
        assert_eq!(gaps.len(), 4);
        let within =
            |gap: Duration, base: Duration| gap >= base.mul_f64(0.8) && gap <= base.mul_f64(1.2);
        assert!(
            gaps[..3].iter().all(|g| within(*g, EARLY_RETRY)),
            "retried early while not joined: {gaps:?}"
        );
        assert!(
            within(gaps[3], INTERVAL),
            "at the interval once joined: {gaps:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_answer_means_alone_only_from_a_settled_provider() {
        let start = Instant::now();
        let listening = run(vec![Ok(Vec::new())], false, true);
        let settled = run(vec![Ok(vec![addr(OWN)])], true, true);
        until(start, Duration::from_millis(1)).await;
        assert!(!listening.join.is_ready());
        assert_eq!(
            listening.join.detail(),
            "scripted discovery: still listening for peers"
        );
        assert!(settled.join.is_ready());
        assert_eq!(
            settled.join.detail(),
            "scripted discovery found no other node: running alone"
        );
        // The listening one gives up at the join timeout like any other.
        until(start, JOIN_TIMEOUT + EARLY_RETRY.mul_f64(1.25)).await;
        assert!(listening.join.is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_ends_the_loop_and_removes_the_registration() {
        let start = Instant::now();
        let r = run(vec![Ok(vec![addr(PEER)])], true, true);
        until(start, Duration::from_secs(1)).await;
        r.stop.cancel();
        r.task.await.unwrap();
        assert!(r.left.load(Ordering::SeqCst));
    }
}
