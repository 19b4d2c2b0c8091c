//! The shared state on a running node: the local [`Replica`] plus the tasks that move its
//! updates over the cluster's encrypted node-to-node messages.
//!
//! - flush (`flush`): every `flush_interval`, this node's coalesced updates go out as one
//!   numbered batch, straight to every peer (one datagram each; a stream when too big for
//!   one). Above `relay_above` nodes, batches travel the relay ring instead (`relay`): each
//!   node sends only to its log2(N) fingers, one bundle per finger per flush, passing on what
//!   it received.
//! - receive (`receive`): batches are applied once; a gap in an origin's numbers asks the node
//!   that sent the batch past it for the rest.
//! - anti-entropy (`anti_entropy`): every `anti_entropy_interval`, a digest (what was seen,
//!   shard hashes) goes to one peer; it answers with what the sender lacks, asks for what it
//!   lacks, or exchanges the shards that differ. A peer that (re)appears gets a digest at once
//!   (`membership`).
//! - replay: on start, the node asks one peer for everything (`membership`); `/ready` waits for
//!   the answer (`receive`).
//! - strict checks (`strict`): forwarded to the key's owner on the ring, batched per owner; no
//!   answer in `strict_timeout` and the node decides locally, saying so.
//!
//! `send` holds the per-peer outbound queues every task sends through, `types` the values the
//! [`SharedState`] facade takes and returns.

mod anti_entropy;
mod flush;
mod membership;
mod receive;
mod send;
mod strict;
mod types;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc, oneshot};
// Tokio's clock: the same as std's in production, paused and advanced in the simulator.
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::anti_entropy::anti_entropy_loop;
use self::flush::flush_loop;
use self::membership::{membership_loop, refresh_peers};
use self::receive::receive_loop;
use self::send::Outgoing;
use self::strict::forward_loop;
#[cfg(any(test, feature = "testsuite"))]
pub use self::types::SyncView;
pub use self::types::{
    Contribution, Decision, Limit, Mode, Reach, ReplayStatus, StateOptions, StateStatus,
};
use crate::relay::RelayRing;
use crate::replica::Replica;
use crate::ring::Ring;
use crate::transport::{PeerState, Transport};
use crate::wire::{Batch, Check, Msg, Verdict};
use crate::{CounterKey, Event, Origin, StateError, WindowSpec};

/// How long a peer may take to answer the start-up sync before another is asked.
const SYNC_TIMEOUT: Duration = Duration::from_secs(3);

/// Log lines about refused peer input: at most this many per reason and window.
const REJECT_LOG_WINDOW: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Stats {
    batches_sent: AtomicU64,
    batches_received: AtomicU64,
    batches_relayed: AtomicU64,
    relay_dropped: AtomicU64,
    duplicates: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    anti_entropy_rounds: AtomicU64,
    repairs: AtomicU64,
    strict_forwarded: AtomicU64,
    strict_degraded: AtomicU64,
    strict_late: AtomicU64,
    rejected: AtomicU64,
    send_errors: AtomicU64,
    /// Messages dropped because their peer's outbound queue was full (counted in
    /// `send_errors` too).
    queue_full: AtomicU64,
    /// Messages received, by [`Msg::KINDS`] (the simulator's benchmarks print them).
    received: [AtomicU64; Msg::KINDS.len()],
}

#[derive(Default)]
struct Peers {
    /// Alive or suspect peers, this node excluded.
    by_id: HashMap<String, SocketAddr>,
    /// Members that may send to us (not left, not reaped).
    known: HashMap<String, PeerState>,
    /// Members declared dead but not yet reaped: possibly just cut off. A digest now and then
    /// finds out when they are back sooner than gossip's refutation does.
    dead: HashMap<String, SocketAddr>,
    ring: Ring,
    /// The relay ring over this node and `by_id` (absent until attached).
    relay: Option<Arc<RelayRing>>,
    /// Every other region whose members this node has seen in the last [`REGION_MEMORY`],
    /// whether one of them is reachable now, and when one last was.
    regions: HashMap<String, RegionSeen>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct RegionSeen {
    pub reachable: bool,
    pub last_reachable: Instant,
}

/// How long a region stays counted in the shares of global limits after its last member was
/// reachable: a region cut off keeps its share (the sides together stay within a global
/// limit), and one retired for good gives it back after this.
pub const REGION_MEMORY: Duration = Duration::from_secs(3600);

enum ReplayPhase {
    Waiting,
    Asked { peer: String, at: Instant },
    Done(String),
}

struct Shared {
    replica: Replica,
    clock: NodeClock,
    options: StateOptions,
    cluster: OnceLock<Arc<dyn Transport>>,
    node: OnceLock<String>,
    peers: RwLock<Peers>,
    /// Strict checks waiting for their owner: a verdict, or `None` when the owner deferred.
    pending: Mutex<HashMap<u64, oneshot::Sender<Option<Verdict>>>>,
    /// Strict checks decided here because the owner did not answer in time, by check id: not
    /// counted yet, since the owner may have counted them and only its answer be late. Counted
    /// here once the owner says it did not, or when no answer came (see
    /// `strict::LATE_ANSWER_TIMEOUTS`); meanwhile this node's own decisions count them as
    /// pending.
    late: Mutex<HashMap<u64, LateCheck>>,
    /// Whether `late` holds anything: every decision reads it, so the usual empty case takes
    /// no lock on the request path. Set and cleared under `late`'s lock.
    any_late: AtomicBool,
    next_check: AtomicU64,
    forward: mpsc::UnboundedSender<(SocketAddr, Check)>,
    forward_rx: Mutex<Option<mpsc::UnboundedReceiver<(SocketAddr, Check)>>>,
    events: broadcast::Sender<Event>,
    replay: Mutex<ReplayPhase>,
    replay_done: AtomicBool,
    /// The replay came from a peer: a node that settled alone and meets peers later replays
    /// theirs then, since its own counts know nothing of what they counted.
    replayed_from_peer: AtomicBool,
    stats: Arc<Stats>,
    outbound: Mutex<HashMap<SocketAddr, mpsc::Sender<Outgoing>>>,
    reject_log: Mutex<HashMap<String, (Instant, u64)>>,
    /// Per sender, origins with a gap waiting out `receive::GAP_GRACE` before they are asked
    /// for, with the limit the sender gave for them.
    gap_pending: Mutex<HashMap<String, HashMap<Origin, u64>>>,
    /// Peers' batches to pass on at the next flush, with the limit each came with.
    relay_out: Mutex<Vec<(u64, bool, Arc<Batch>)>>,
    relay_ready: tokio::sync::Notify,
    /// Peers seen coming back (a healed partition, a restart), with when.
    came_back: Mutex<HashMap<SocketAddr, Instant>>,
}

struct LateCheck {
    key: CounterKey,
    cost: u64,
    at_ms: u64,
}

/// The node's handle on shared state; cheap to clone.
#[derive(Clone)]
pub struct SharedState {
    inner: Arc<Shared>,
}

/// Wall-clock milliseconds, read once per process run.
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A node's clock for windows and expiry: the wall clock when the state was created, advanced
/// by tokio's monotonic clock. A wall clock stepped later (NTP) moves no window backwards, and
/// under the simulator's paused time a simulated hour is an hour.
struct NodeClock {
    wall_at_start: u64,
    started: Instant,
}

impl NodeClock {
    fn starting_at(wall_at_start: u64) -> Self {
        Self {
            wall_at_start,
            started: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.wall_at_start + self.started.elapsed().as_millis() as u64
    }
}

impl SharedState {
    /// Local state only, until [`SharedState::attach`]. Each process run is its own origin (a
    /// random id), so a restarted node never collides with what it counted before.
    pub fn new(options: StateOptions) -> Self {
        Self::with_clock(options, Origin(rand::random::<u64>() | 1), wall_ms())
    }

    /// `wall_ms`: the wall clock now (the simulator's, for its nodes).
    pub(crate) fn with_clock(options: StateOptions, origin: Origin, wall_ms: u64) -> Self {
        let (forward, forward_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let replica = Replica::new(
            origin,
            options.windows.clone(),
            options.replay_capacity,
            options.cache,
            options.events,
        );
        replica.set_max_keys(options.max_keys);
        Self {
            inner: Arc::new(Shared {
                replica,
                options,
                clock: NodeClock::starting_at(wall_ms),
                cluster: OnceLock::new(),
                node: OnceLock::new(),
                peers: RwLock::new(Peers::default()),
                pending: Mutex::new(HashMap::new()),
                late: Mutex::new(HashMap::new()),
                any_late: AtomicBool::new(false),
                next_check: AtomicU64::new(1),
                forward,
                forward_rx: Mutex::new(Some(forward_rx)),
                events,
                replay: Mutex::new(ReplayPhase::Waiting),
                replay_done: AtomicBool::new(false),
                replayed_from_peer: AtomicBool::new(false),
                stats: Arc::default(),
                outbound: Mutex::new(HashMap::new()),
                reject_log: Mutex::new(HashMap::new()),
                gap_pending: Mutex::new(HashMap::new()),
                relay_out: Mutex::new(Vec::new()),
                relay_ready: tokio::sync::Notify::new(),
                came_back: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Starts sharing over `cluster`, its tasks in `tasks`; they stop when `stop` fires.
    /// Call once.
    pub fn attach(
        &self,
        cluster: Arc<dyn Transport>,
        stop: CancellationToken,
        tasks: &mut JoinSet<()>,
    ) {
        let node = cluster.local_id();
        self.inner.replica.set_node(&node);
        let _ = self.inner.node.set(node);
        let inbox = cluster.take_inbox();
        let _ = self.inner.cluster.set(cluster.clone());
        refresh_peers(&self.inner, cluster.as_ref());
        if let Some(inbox) = inbox {
            tasks.spawn(receive_loop(self.inner.clone(), inbox, stop.clone()));
        }
        tasks.spawn(flush_loop(self.inner.clone(), stop.clone()));
        tasks.spawn(anti_entropy_loop(self.inner.clone(), stop.clone()));
        tasks.spawn(membership_loop(self.inner.clone(), cluster, stop.clone()));
        let forward_rx = self.inner.forward_rx.lock().expect("forward lock").take();
        if let Some(rx) = forward_rx {
            tasks.spawn(forward_loop(self.inner.clone(), rx, stop));
        }
    }

    /// Decides whether one more request (costing `cost`) fits under `limit` and counts it if
    /// so. Strict limits ask the key's owner; see [`Mode`].
    pub async fn check(&self, key: &CounterKey, limit: Limit, cost: u64) -> Decision {
        let window = limit.window.min(self.inner.options.windows.len() - 1);
        let me = self.node_id();
        if limit.mode == Mode::Strict {
            // Until this node has the cluster's counts, the keys it owns are decided by the
            // next owner on the ring, which has them.
            let replayed = self.inner.replay_done.load(Ordering::SeqCst);
            let owner = {
                let peers = self.inner.peers.read().expect("peers lock");
                let owner = if replayed {
                    peers.ring.owner(key.hash64())
                } else {
                    peers.ring.owner_other_than(key.hash64(), &me)
                };
                owner
                    .map(str::to_string)
                    .and_then(|o| (o != me).then(|| peers.by_id.get(&o).map(|a| (o, *a))))
                    .flatten()
            };
            if let Some((owner, addr)) = owner {
                return self
                    .forward_check(key, window, limit, cost, owner, addr)
                    .await;
            }
        }
        let (allowed, count, totals) = self.decide_here(key, window, limit.max, cost, true);
        Decision {
            allowed,
            count,
            mode: limit.mode,
            decided_by: me,
            degraded: None,
            totals,
        }
    }

    /// Decides from this node's counts plus the late strict checks still pending here;
    /// `count`: whether to count the request now. The decision, the window's total and every
    /// window's total.
    fn decide_here(
        &self,
        key: &CounterKey,
        window: usize,
        max: u64,
        cost: u64,
        count: bool,
    ) -> (bool, u64, Vec<u64>) {
        let inner = &self.inner;
        let pending: u64 = if inner.any_late.load(Ordering::Acquire) {
            (inner.late.lock().expect("late").values())
                .filter(|l| &l.key == key)
                .map(|l| l.cost)
                .sum()
        } else {
            0
        };
        let now = inner.clock.now_ms();
        let limit = max.saturating_sub(pending);
        let (allowed, total) = inner.replica.decide(key, window, limit, cost, now, count);
        let totals = inner.replica.totals(key, now);
        (
            allowed,
            total.saturating_add(pending),
            totals.iter().map(|t| t.saturating_add(pending)).collect(),
        )
    }

    /// Counts without deciding (e.g. a request admitted by a policy without a limit).
    pub fn increment(&self, key: &CounterKey, by: u64) {
        self.inner
            .replica
            .increment(key, by, self.inner.clock.now_ms());
    }

    /// The key's totals, one per configured window (what policies see as
    /// `input.bucket.access_count`).
    pub fn totals(&self, key: &CounterKey) -> Vec<u64> {
        self.inner.replica.totals(key, self.inner.clock.now_ms())
    }

    /// The object policies read as `input.bucket.access_count`: the key's total per named
    /// window (`{"last_minute": 3, "last_hour": 12}`).
    pub fn access_count(&self, key: &CounterKey) -> BTreeMap<String, u64> {
        self.window_names()
            .iter()
            .cloned()
            .zip(self.totals(key))
            .collect()
    }

    pub fn contributions(&self, key: &CounterKey, window: usize) -> Vec<Contribution> {
        self.inner
            .replica
            .contributions(key, window, self.inner.clock.now_ms())
            .into_iter()
            .map(|(node, count)| Contribution { node, count })
            .collect()
    }

    /// Keys with live counts and their totals, at most `limit` of them.
    pub fn counters(&self, limit: usize) -> Vec<(CounterKey, Vec<u64>)> {
        self.inner.replica.keys(self.inner.clock.now_ms(), limit)
    }

    pub fn windows(&self) -> &[WindowSpec] {
        self.inner.replica.windows()
    }

    pub fn window_names(&self) -> &[String] {
        &self.inner.options.window_names
    }

    pub fn window_index(&self, name: &str) -> Option<usize> {
        self.inner
            .options
            .window_names
            .iter()
            .position(|n| n == name)
    }

    /// Which node owns `key` in strict mode, as this node sees the ring.
    pub fn owner(&self, key: &CounterKey) -> Option<String> {
        let peers = self.inner.peers.read().expect("peers lock");
        peers.ring.owner(key.hash64()).map(str::to_string)
    }

    pub fn cache_put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StateError> {
        self.cache_write(key, Some(value), ttl)
    }

    pub fn cache_delete(&self, key: &str, ttl: Duration) -> Result<(), StateError> {
        self.cache_write(key, None, ttl)
    }

    fn cache_write(
        &self,
        key: &str,
        value: Option<Vec<u8>>,
        ttl: Duration,
    ) -> Result<(), StateError> {
        if key.is_empty() {
            return Err(StateError::Cache("cache key must not be empty".into()));
        }
        let now = self.inner.clock.now_ms();
        let expires = now.saturating_add(ttl.as_millis() as u64);
        self.inner
            .replica
            .cache_put(key.to_string(), value, expires, now)
            .map(|_| ())
            .map_err(StateError::Cache)
    }

    pub fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
        self.inner.replica.cache_get(key, self.inner.clock.now_ms())
    }

    /// The regions of the members this node has seen in the last [`REGION_MEMORY`] (sorted),
    /// each with whether one of its members is reachable now.
    pub fn regions(&self) -> Vec<(String, bool)> {
        let peers = self.inner.peers.read().expect("peers lock");
        let mut regions: Vec<(String, bool)> = peers
            .regions
            .iter()
            .map(|(name, seen)| (name.clone(), seen.reachable))
            .collect();
        regions.sort();
        regions
    }

    /// `key`'s total in every window from the buckets that ended `settle` ago or earlier.
    pub fn settled_totals(&self, key: &CounterKey, settle: Duration) -> Vec<u64> {
        self.inner
            .replica
            .settled_totals(key, self.inner.clock.now_ms(), settle.as_millis() as u64)
    }

    /// Whether `other` is this very state (a clone of it), not another cluster's.
    pub fn same_as(&self, other: &SharedState) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Sends an event to every node's subscribers (this node's at once).
    /// A `revoke` event whose payload does not parse is refused here, before it travels.
    pub fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<Event, StateError> {
        if topic == crate::REVOKE_TOPIC {
            crate::Revocation::parse(&payload).map_err(StateError::Event)?;
        }
        let event = self
            .inner
            .replica
            .publish(topic.to_string(), payload)
            .map_err(StateError::Event)?;
        let _ = self.inner.events.send(event.clone());
        Ok(event)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The events delivered on this node, oldest first (bounded).
    pub fn delivered(&self) -> Vec<Event> {
        self.inner.replica.delivered()
    }

    /// Marks the start-up replay as not needed: the node runs alone (membership says so and
    /// no peer is in sight, or the peer asked went away).
    pub fn settle_alone(&self) {
        let no_peers = self.inner.peers.read().expect("peers").by_id.is_empty();
        let mut replay = self.inner.replay.lock().expect("replay");
        let pending = match &*replay {
            ReplayPhase::Waiting => true,
            ReplayPhase::Asked { at, .. } => at.elapsed() >= SYNC_TIMEOUT,
            ReplayPhase::Done(_) => false,
        };
        if no_peers && pending {
            *replay = ReplayPhase::Done("no peer to replay from".into());
            self.inner.replay_done.store(true, Ordering::SeqCst);
        }
    }

    pub fn replay(&self) -> ReplayStatus {
        let replay = self.inner.replay.lock().expect("replay");
        let (done, detail) = match &*replay {
            ReplayPhase::Waiting => (false, "waiting for a peer to replay from".to_string()),
            ReplayPhase::Asked { peer, at } => (
                false,
                format!(
                    "replaying from {peer} (asked {} ms ago)",
                    at.elapsed().as_millis()
                ),
            ),
            ReplayPhase::Done(d) => (true, d.clone()),
        };
        ReplayStatus { done, detail }
    }

    pub fn reach(&self) -> Reach {
        let peers = self.inner.peers.read().expect("peers lock");
        Reach {
            reachable: 1 + peers.by_id.len(),
            members: 1 + peers.known.len(),
        }
    }

    /// Origins (process runs) this node tracks: the size of its digests.
    pub fn origins(&self) -> usize {
        self.inner.replica.origins()
    }

    pub fn status(&self) -> StateStatus {
        let s = &self.inner.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StateStatus {
            origin: format!("{:016x}", self.inner.replica.origin().0),
            keys: self.inner.replica.key_count(),
            cache_entries: self.inner.replica.cache_len(),
            replay_buffer: self.inner.replica.replay_log_len(),
            replay: self.replay(),
            peers: self.inner.peers.read().expect("peers").by_id.len(),
            batches_sent: get(&s.batches_sent),
            batches_received: get(&s.batches_received),
            batches_relayed: get(&s.batches_relayed),
            relay_dropped: get(&s.relay_dropped),
            duplicates: get(&s.duplicates),
            bytes_sent: get(&s.bytes_sent),
            bytes_received: get(&s.bytes_received),
            anti_entropy_rounds: get(&s.anti_entropy_rounds),
            repairs: get(&s.repairs),
            strict_forwarded: get(&s.strict_forwarded),
            strict_degraded: get(&s.strict_degraded),
            strict_late: get(&s.strict_late),
            rejected: get(&s.rejected),
            evicted_keys: self.inner.replica.evicted(),
            send_errors: get(&s.send_errors),
            messages_dropped: self.inner.cluster.get().map_or(0, |c| c.messages_dropped()),
        }
    }

    /// What this node has seen and received (the simulator's diagnostics).
    #[cfg(any(test, feature = "testsuite"))]
    pub fn sync_view(&self) -> SyncView {
        let (seq, seen) = self.inner.replica.seen_view();
        let s = &self.inner.stats;
        SyncView {
            origin: self.inner.replica.origin(),
            seq,
            seen,
            now_ms: self.inner.clock.now_ms(),
            queue_full: s.queue_full.load(Ordering::Relaxed),
            received: Msg::KINDS
                .iter()
                .zip(&s.received)
                .map(|(k, n)| (*k, n.load(Ordering::Relaxed)))
                .collect(),
            fresh_backs: anti_entropy::fresh_backs(&self.inner).len(),
            replay_log: self.inner.replica.replay_log_len(),
        }
    }

    fn node_id(&self) -> String {
        self.inner.node.get().cloned().unwrap_or_default()
    }
}

/// Counts a refusal of peer input and logs it, rate-limited per reason.
fn note_rejection(inner: &Shared, reason: &str, detail: &str) {
    inner.stats.rejected.fetch_add(1, Ordering::Relaxed);
    let mut log = inner.reject_log.lock().expect("reject log");
    let entry = log
        .entry(reason.to_string())
        .or_insert((Instant::now() - REJECT_LOG_WINDOW, 0));
    if entry.0.elapsed() >= REJECT_LOG_WINDOW {
        let held = entry.1;
        *entry = (Instant::now(), 0);
        tracing::warn!(reason, held_back = held, "shared state: {detail}");
    } else {
        entry.1 += 1;
    }
}
