//! The shared state on a running node: the local [`Replica`] plus the tasks that move its
//! updates over the cluster's encrypted node-to-node messages.
//!
//! - flush: every `flush_interval`, this node's coalesced updates go out as one numbered batch,
//!   straight to every peer (one datagram each; a stream when too big for one). Above
//!   `relay_above` nodes, batches travel the relay ring instead (`relay`): each node sends only
//!   to its log2(N) fingers, one bundle per finger per flush, passing on what it received.
//! - receive: batches are applied once; a gap in an origin's numbers asks the node that sent
//!   the batch past it for the rest.
//! - anti-entropy: every `anti_entropy_interval`, a digest (what was seen, shard hashes) goes to
//!   one peer; it answers with what the sender lacks, asks for what it lacks, or exchanges the
//!   shards that differ. A peer that (re)appears gets a digest at once.
//! - replay: on start, the node asks one peer for everything; `/ready` waits for the answer.
//! - strict checks: forwarded to the key's owner on the ring, batched per owner; no answer in
//!   `strict_timeout` and the node decides locally, saying so.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
// Tokio's clock: the same as std's in production, paused and advanced in the simulator.
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::relay::{self, RelayRing};
use crate::replica::{Applied, Replica};
use crate::ring::Ring;
use crate::transport::{PeerChange, PeerState, Transport};
use crate::wire::{self, Batch, Check, Compact, Gap, Msg, Span, Verdict};
use shoal_config::StateConfig;

use crate::{CacheLimits, CounterKey, Event, EventLimits, Origin, StateError, WindowSpec};

/// How often the peer list is refreshed besides on membership events (which the membership
/// layer sends for every change, a lagging subscriber included): a fallback, and each refresh
/// walks every member.
const PEER_REFRESH: Duration = Duration::from_secs(1);

/// How long an origin stays in digests after its last batch beyond the longest window (its
/// counts have expired by then; the margin covers clocks apart and batches late in flight).
const RETIRE_GRACE: Duration = Duration::from_secs(300);

fn retire_after(options: &StateOptions) -> Duration {
    options
        .windows
        .iter()
        .map(|w| w.length)
        .max()
        .unwrap_or_default()
        + RETIRE_GRACE
}

/// How long after the strict timeout an owner's late answer is still waited for, as a multiple
/// of `state.strict_timeout`: past it, the request is counted here.
const LATE_ANSWER_TIMEOUTS: u32 = 4;

/// How often idle counters are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How long a peer may take to answer the start-up sync before another is asked.
const SYNC_TIMEOUT: Duration = Duration::from_secs(3);

/// Batches resent for one gap request at most (anti-entropy repairs larger holes).
const MISSING_RESENT_MAX: usize = 256;

/// Gaps named in one request at most (one per origin; a request names those of one sender).
const MISSING_GAPS_MAX: usize = 256;

/// How long a gap may stay open before its batches are asked for: a batch overtaken by the
/// next one on a jittery link arrives within it (measured on the simulator's WAN profile,
/// 20 ms with 10 ms of jitter: repair traffic halved; docs/benchmarks.md, "scale"). The gaps
/// of one sender that open meanwhile go in the same request.
const GAP_GRACE: Duration = Duration::from_millis(20);

/// Received batches waiting to be passed on along the relay ring before more are dropped
/// (the gaps they leave are repaired like any loss).
const RELAY_QUEUE: usize = 65_536;

/// How often members declared dead (not yet reaped) get a small digest, and at most how many.
const DEAD_PROBE_EVERY: Duration = Duration::from_millis(100);
const DEAD_PROBE_MAX: usize = 16;

/// Room a batch's header and the message envelope take besides its counter updates: a batch
/// of `packet_max - BATCH_OVERHEAD` encoded updates fits one datagram.
const BATCH_OVERHEAD: usize = 200;

/// Messages waiting for one peer before new ones are dropped.
const OUTBOUND_QUEUE: usize = 4096;

/// How old a batch must be before a digest that lacks it gets it replayed: younger ones are
/// most likely still in flight. Relayed batches take up to log2(N) hops, each this long.
const IN_FLIGHT: Duration = Duration::from_millis(50);

/// Relaying, the digests sent at once to peers that came back (the rest wait for
/// anti-entropy's rounds), and the dead members probed per round.
const BACK_DIGESTS: usize = 3;

/// Relaying, how long this node's newest batch waits for a successor before it is resent
/// along the ring (see [`Span::again`]), and how often: a second time four times as long
/// later, in case the first was lost near the origin (half the ring would miss it). A node
/// that keeps counting resends nothing.
const TAIL_RESEND: Duration = Duration::from_millis(250);
const TAIL_RESENDS: u32 = 2;

/// How long a peer that came back is preferred by anti-entropy and served batches however
/// young: what it lacks was not on its way to it.
const BACK_FRESH: Duration = Duration::from_secs(3);
const RELAY_DEAD_PROBE_MAX: usize = 2;

/// Largest cost one strict check may carry (the API allows the same).
const MAX_CHECK_COST: u64 = 1_000_000;

/// Bound on one send (a stream to a peer that stopped answering).
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Log lines about refused peer input: at most this many per reason and window.
const REJECT_LOG_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct StateOptions {
    pub windows: Vec<WindowSpec>,
    /// One per window: how policies and the API name it (`last_minute`).
    pub window_names: Vec<String>,
    /// Batches kept for replay to nodes that join or come back (all origins together).
    pub replay_capacity: usize,
    pub flush_interval: Duration,
    pub anti_entropy_interval: Duration,
    pub strict_timeout: Duration,
    pub cache: CacheLimits,
    pub events: EventLimits,
    /// Counter keys held before idle and then least recently counted ones are evicted.
    pub max_keys: usize,
    /// Clusters of more nodes than this pass batches along the relay ring instead of sending
    /// each to every node.
    pub relay_above: usize,
}

impl StateOptions {
    pub fn from_config(c: &StateConfig) -> Self {
        Self {
            windows: c
                .windows
                .iter()
                .map(|w| WindowSpec {
                    length: w.length,
                    buckets: w.buckets,
                })
                .collect(),
            window_names: c.windows.iter().map(|w| w.name.clone()).collect(),
            replay_capacity: c.replay_capacity,
            flush_interval: c.flush_interval,
            anti_entropy_interval: c.anti_entropy_interval,
            strict_timeout: c.strict_timeout,
            cache: CacheLimits {
                max_entries: c.cache_max_entries,
                max_value_bytes: c.cache_max_value_bytes,
                ..CacheLimits::default()
            },
            events: EventLimits {
                max_payload_bytes: c.event_max_payload_bytes,
                replay_capacity: c.replay_capacity,
                ..EventLimits::default()
            },
            max_keys: c.max_keys,
            relay_above: c.relay_above,
        }
    }
}

impl Default for StateOptions {
    fn default() -> Self {
        Self::from_config(&StateConfig::default())
    }
}

/// How a rule's limit is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// From this node's merged counts: microseconds, a few extra may pass while an increment
    /// propagates.
    Eventual,
    /// By the key's owner: none extra while the owner answers.
    Strict,
}

/// A limit to check a request against.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Index into the configured windows (0: last minute by default).
    pub window: usize,
    pub max: u64,
    pub mode: Mode,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// The window's total after this request (or as it stood, when refused).
    pub count: u64,
    /// How it was decided: a strict check whose owner did not answer says `eventual`.
    pub mode: Mode,
    /// Who decided (strict mode).
    pub decided_by: String,
    /// Why a strict check was decided locally instead.
    pub degraded: Option<String>,
    /// The key's total in every window after the decision (what a policy then reads).
    pub totals: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplayStatus {
    pub done: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateStatus {
    pub origin: String,
    pub keys: usize,
    pub cache_entries: usize,
    pub replay_buffer: usize,
    pub replay: ReplayStatus,
    pub peers: usize,
    pub batches_sent: u64,
    pub batches_received: u64,
    /// Peers' batches passed on along the relay ring (once per finger sent to).
    pub batches_relayed: u64,
    /// Peers' batches not passed on because the relay queue was full.
    pub relay_dropped: u64,
    pub duplicates: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub anti_entropy_rounds: u64,
    pub repairs: u64,
    pub strict_forwarded: u64,
    pub strict_degraded: u64,
    /// Degraded strict checks whose owner answered late, having counted the request: counted
    /// once, there, and not here too.
    pub strict_late: u64,
    pub rejected: u64,
    /// Counter keys evicted to stay under `state.max_keys`.
    pub evicted_keys: u64,
    pub send_errors: u64,
    pub messages_dropped: u64,
}

/// How much of the cluster this node can count with: a request decided while `reachable <
/// members` misses what the unreachable members admit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reach {
    /// This node and its alive or suspect peers (a suspect may only be slow).
    pub reachable: usize,
    /// This node and every member that has not left: a failed one counts until the
    /// membership forgets it (`cluster.dead_node_reap`).
    pub members: usize,
}

impl Reach {
    pub fn split(self) -> bool {
        self.reachable < self.members
    }
}

/// Per-node share of a key's count, for the console.
#[derive(Debug, Clone, Serialize)]
pub struct Contribution {
    pub node: String,
    pub count: u64,
}

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
}

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
    /// [`LATE_ANSWER_TIMEOUTS`]); meanwhile this node's own decisions count them as pending.
    late: Mutex<HashMap<u64, LateCheck>>,
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
    /// Per sender, origins with a gap waiting out [`GAP_GRACE`] before they are asked for,
    /// with the limit the sender gave for them.
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
    fn new() -> Self {
        Self {
            wall_at_start: wall_ms(),
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
        let origin = Origin(rand::random::<u64>() | 1);
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
                clock: NodeClock::new(),
                cluster: OnceLock::new(),
                node: OnceLock::new(),
                peers: RwLock::new(Peers::default()),
                pending: Mutex::new(HashMap::new()),
                late: Mutex::new(HashMap::new()),
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
        let pending: u64 = (inner.late.lock().expect("late").values())
            .filter(|l| &l.key == key)
            .map(|l| l.cost)
            .sum();
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

    async fn forward_check(
        &self,
        key: &CounterKey,
        window: usize,
        limit: Limit,
        cost: u64,
        owner: String,
        addr: SocketAddr,
    ) -> Decision {
        let id = self.inner.next_check.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner.pending.lock().expect("pending").insert(id, tx);
        let check = Check {
            id,
            key: key.clone(),
            window: window as u8,
            limit: limit.max,
            cost,
        };
        self.inner
            .stats
            .strict_forwarded
            .fetch_add(1, Ordering::Relaxed);
        let sent = self.inner.forward.send((addr, check)).is_ok();
        let mut rx = rx;
        let answer = if sent {
            tokio::time::timeout(self.inner.options.strict_timeout, &mut rx)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        // Sent and unanswered: the owner may have counted it and only be late to say so.
        let owner_may_count = sent && answer.is_none();
        if !owner_may_count {
            self.inner.pending.lock().expect("pending").remove(&id);
        }
        let why = match answer {
            Some(Some(v)) => {
                return Decision {
                    allowed: v.allowed,
                    count: v.count,
                    mode: Mode::Strict,
                    decided_by: owner,
                    degraded: None,
                    totals: v.totals,
                };
            }
            Some(None) => {
                format!(
                    "owner {owner} is still replaying the cluster's state; decided from local counts"
                )
            }
            None => format!(
                "owner {owner} did not answer within {} ms; decided from local counts",
                self.inner.options.strict_timeout.as_millis()
            ),
        };
        self.inner
            .stats
            .strict_degraded
            .fetch_add(1, Ordering::Relaxed);
        note_rejection(&self.inner, "strict check degraded to eventual", &why);
        let (allowed, count, totals) =
            self.decide_here(key, window, limit.max, cost, !owner_may_count);
        if owner_may_count {
            if allowed {
                self.await_late_answer(id, key, cost, rx);
            } else {
                self.inner.pending.lock().expect("pending").remove(&id);
            }
        }
        Decision {
            allowed,
            count,
            mode: Mode::Eventual,
            decided_by: self.node_id(),
            degraded: Some(why),
            totals,
        }
    }

    /// Holds an admitted check whose owner was too slow as pending until the owner's answer
    /// says whether it counted the request; without an answer, counts it here (a lost answer
    /// may so count a request twice, never not at all).
    fn await_late_answer(
        &self,
        id: u64,
        key: &CounterKey,
        cost: u64,
        rx: oneshot::Receiver<Option<Verdict>>,
    ) {
        let inner = self.inner.clone();
        let at_ms = inner.clock.now_ms();
        let late = LateCheck {
            key: key.clone(),
            cost,
            at_ms,
        };
        inner.late.lock().expect("late").insert(id, late);
        let wait = inner.options.strict_timeout * LATE_ANSWER_TIMEOUTS;
        tokio::spawn(async move {
            let answer = tokio::time::timeout(wait, rx).await;
            inner.pending.lock().expect("pending").remove(&id);
            let owner_counted = matches!(answer, Ok(Ok(Some(ref v))) if v.allowed);
            let Some(late) = inner.late.lock().expect("late").remove(&id) else {
                return;
            };
            if owner_counted {
                inner.stats.strict_late.fetch_add(1, Ordering::Relaxed);
            } else {
                inner.replica.increment(&late.key, late.cost, late.at_ms);
            }
        });
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

    /// Sends an event to every node's subscribers (this node's at once).
    pub fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<Event, StateError> {
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

/// Runs every [`PEER_REFRESH`] and on every membership change, on fleets of a thousand
/// members: what depends on the member set is rebuilt only when it changed.
fn refresh_peers(inner: &Shared, cluster: &dyn Transport) {
    let members = cluster.members();
    let me = cluster.local_id();
    let mut by_id = HashMap::new();
    let mut known = HashMap::new();
    let mut dead = HashMap::new();
    for m in members.iter().filter(|m| !m.local) {
        if m.state != PeerState::Left {
            known.insert(m.id.clone(), m.state);
        }
        if m.state == PeerState::Dead {
            dead.insert(m.id.clone(), m.address);
        }
        if matches!(m.state, PeerState::Alive | PeerState::Suspect) {
            by_id.insert(m.id.clone(), m.address);
        }
    }
    let mut peers = inner.peers.write().expect("peers lock");
    let first = peers.relay.is_none();
    if first || peers.by_id != by_id {
        peers.ring = Ring::new(
            std::iter::once(me.clone())
                .chain(by_id.keys().cloned())
                .collect(),
        );
        peers.relay = Some(Arc::new(RelayRing::new(
            relay::position(&me),
            by_id.iter().map(|(id, a)| (relay::position(id), *a)),
        )));
    }
    if first || peers.by_id != by_id || peers.dead != dead {
        // Queues to addresses no longer reachable members end (their sender tasks with them).
        let reachable: HashSet<&SocketAddr> = by_id.values().chain(dead.values()).collect();
        inner
            .outbound
            .lock()
            .expect("outbound")
            .retain(|addr, _| reachable.contains(addr));
    }
    if first || peers.known != known {
        inner
            .replica
            .set_members(known.keys().cloned().chain(std::iter::once(me)).collect());
    }
    peers.by_id = by_id;
    peers.known = known;
    peers.dead = dead;
}

fn encode(inner: &Shared, msg: Msg) -> Bytes {
    let me = inner.node.get().map(String::as_str).unwrap_or_default();
    Bytes::from(wire::encode(me, msg))
}

fn send(inner: &Arc<Shared>, to: SocketAddr, msg: Msg) {
    send_bytes(inner, to, encode(inner, msg), false);
}

/// Sends as a stream even when it would fit a datagram: repairs, whose loss would leave a gap
/// open until the next digest.
fn send_reliably(inner: &Arc<Shared>, to: SocketAddr, msg: Msg) {
    send_bytes(inner, to, encode(inner, msg), true);
}

/// A message on its way to one peer; `reliable` forces a stream.
struct Outgoing {
    bytes: Bytes,
    reliable: bool,
}

/// Queues a message for `to`. Each peer has its own queue and sender task, so messages to one
/// peer leave in order (no false gaps) and a peer that stopped answering (a stream connect
/// hanging on a partition) holds up nobody else; a full queue drops (anti-entropy repairs).
fn send_bytes(inner: &Arc<Shared>, to: SocketAddr, bytes: Bytes, reliable: bool) {
    let Some(cluster) = inner.cluster.get() else {
        return;
    };
    inner
        .stats
        .bytes_sent
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    let mut queues = inner.outbound.lock().expect("outbound");
    let queue = queues.entry(to).or_insert_with(|| {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        tokio::spawn(send_queue(cluster.clone(), to, rx, inner.stats.clone()));
        tx
    });
    if queue.try_send(Outgoing { bytes, reliable }).is_err() {
        inner.stats.send_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends one peer's messages in order: one datagram when it fits, an encrypted stream when it
/// does not (or must arrive), each bounded by [`SEND_TIMEOUT`]. Ends when the queue is dropped.
async fn send_queue(
    cluster: Arc<dyn Transport>,
    to: SocketAddr,
    mut queue: mpsc::Receiver<Outgoing>,
    stats: Arc<Stats>,
) {
    while let Some(Outgoing { bytes, reliable }) = queue.recv().await {
        let sending = async {
            if !reliable && bytes.len() <= cluster.packet_max() {
                cluster.send(to, bytes).await
            } else {
                cluster.send_reliable(to, bytes).await
            }
        };
        let failed = match tokio::time::timeout(SEND_TIMEOUT, sending).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("send to {to} timed out")),
        };
        if let Some(e) = failed {
            stats.send_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("shared state: {e}");
        }
    }
}

/// Counts every late strict check still waiting for its owner's answer: the node is stopping,
/// and counting one twice beats losing it.
fn count_late_checks(inner: &Shared) {
    let late = std::mem::take(&mut *inner.late.lock().expect("late"));
    for (_, l) in late {
        inner.replica.increment(&l.key, l.cost, l.at_ms);
    }
}

/// Sleeps while nothing is pending (an idle node wakes for nothing), and flushes at most once
/// per `flush_interval` once something is: this node's new batches and the peers' batches it
/// passes on along the relay ring.
async fn flush_loop(inner: Arc<Shared>, stop: CancellationToken) {
    let interval = inner.options.flush_interval;
    let mut last_flush = Instant::now() - interval;
    // Relaying: this node's newest batch, when its next resend is due, and how many went.
    let mut tail: Option<(Arc<Batch>, Instant, u32)> = None;
    loop {
        let tail_at = tail.as_ref().map_or(last_flush, |(_, at, _)| *at);
        let mut tail_due = false;
        let mut stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = inner.replica.dirtied() => false,
            _ = inner.relay_ready.notified() => false,
            _ = tokio::time::sleep_until(tail_at), if tail.is_some() => {
                tail_due = true;
                false
            }
        };
        if !stopping && !tail_due {
            // Gathers what else arrives until the interval since the last flush is up.
            stopping = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep_until(last_flush + interval) => false,
            };
        }
        last_flush = Instant::now();
        if stopping {
            count_late_checks(&inner);
        }
        // The last flush still goes out: what was counted up to shutdown reaches the peers.
        let budget = bundle_budget(&inner);
        let batches = if tail_due {
            Vec::new()
        } else {
            inner.replica.take_batches(budget)
        };
        let relayed = std::mem::take(&mut *inner.relay_out.lock().expect("relay queue"));
        if stopping && batches.is_empty() && relayed.is_empty() {
            return;
        }
        let (targets, ring) = {
            let peers = inner.peers.read().expect("peers");
            let targets: Vec<SocketAddr> = peers.by_id.values().copied().collect();
            (targets, peers.relay.clone())
        };
        let Some(ring) = ring else { continue };
        inner
            .stats
            .batches_sent
            .fetch_add(batches.len() as u64, Ordering::Relaxed);
        let mut bundles: HashMap<SocketAddr, Bundle> = HashMap::new();
        // Queues `batch` for the next hops; how many.
        let mut route = |batch: &Arc<Batch>, limit: Option<u64>, again: bool| -> u64 {
            let routes = ring.routes(limit);
            let hops = routes.len() as u64;
            for (to, sub) in routes {
                bundles
                    .entry(to)
                    .or_default()
                    .entry((sub, again))
                    .or_default()
                    .push(batch.clone());
            }
            hops
        };
        if tail_due {
            if let Some((newest, _, resends)) = tail.take() {
                route(&newest, None, true);
                if resends + 1 < TAIL_RESENDS {
                    tail = Some((newest, Instant::now() + TAIL_RESEND * 4, resends + 1));
                }
            }
        } else if ring.len() > inner.options.relay_above {
            for batch in &batches {
                route(batch, None, false);
            }
            if let Some(newest) = batches.last() {
                tail = Some((newest.clone(), Instant::now() + TAIL_RESEND, 0));
            }
        } else {
            for batch in batches {
                let bytes = encode(&inner, Msg::Batch(Batch::clone(&batch)));
                for to in &targets {
                    send_bytes(&inner, *to, bytes.clone(), false);
                }
            }
        }
        // A sender that relays is honoured whatever this node's own view of the size.
        let passed_on: u64 = relayed
            .iter()
            .map(|(limit, again, batch)| route(batch, Some(*limit), *again))
            .sum();
        inner
            .stats
            .batches_relayed
            .fetch_add(passed_on, Ordering::Relaxed);
        for (to, spans) in bundles {
            send_spans(&inner, to, spans, budget, false);
        }
        if stopping {
            return;
        }
    }
}

/// Peers that came back within [`BACK_FRESH`].
fn fresh_backs(inner: &Shared) -> HashSet<SocketAddr> {
    let mut back = inner.came_back.lock().expect("came back");
    back.retain(|_, at| at.elapsed() < BACK_FRESH);
    back.keys().copied().collect()
}

/// Whether batches travel the relay ring (the cluster is larger than `relay_above`).
fn relaying(inner: &Shared) -> bool {
    inner
        .peers
        .read()
        .expect("peers")
        .relay
        .as_ref()
        .is_some_and(|r| r.len() > inner.options.relay_above)
}

/// How long a batch may be on its way: a direct send, or one relay hop per doubling of the
/// cluster.
fn in_flight(inner: &Shared) -> Duration {
    let peers = inner.peers.read().expect("peers");
    match &peers.relay {
        Some(r) if r.len() > inner.options.relay_above => {
            IN_FLIGHT * (usize::BITS - r.len().leading_zeros())
        }
        _ => IN_FLIGHT,
    }
}

/// Encoded bytes a batch's counter updates, or a bundle of batches, may take so the message
/// fits one datagram.
fn bundle_budget(inner: &Shared) -> usize {
    inner.cluster.get().map_or(1000, |c| {
        c.packet_max().saturating_sub(BATCH_OVERHEAD).max(1)
    })
}

/// Batches bound for one peer, by the (limit, again) of the span they travel in.
type Bundle = BTreeMap<(u64, bool), Vec<Arc<Batch>>>;

/// Sends batches to one peer as relay spans, as few messages as fit a datagram each (a batch
/// larger than one goes alone, over a stream).
fn send_spans(inner: &Arc<Shared>, to: SocketAddr, spans: Bundle, budget: usize, reliable: bool) {
    /// A span's limit, flag and the length prefix of its batches.
    const SPAN_OVERHEAD: usize = 13;
    let mut message: Vec<Span> = Vec::new();
    let mut size = 0;
    for ((limit, again), batches) in spans {
        for batch in batches {
            let compact = Compact::from(&*batch);
            let len = postcard::experimental::serialized_size(&compact).unwrap_or(budget);
            let same_span = |m: &[Span]| {
                m.last()
                    .is_some_and(|s| s.limit == limit && s.again == again)
            };
            let add = len
                + if same_span(&message) {
                    0
                } else {
                    SPAN_OVERHEAD
                };
            if size + add > budget && !message.is_empty() {
                let full = std::mem::take(&mut message);
                send_bytes(inner, to, encode(inner, Msg::Relay(full)), reliable);
                size = 0;
            }
            if !same_span(&message) {
                size += SPAN_OVERHEAD;
                message.push(Span {
                    limit,
                    again,
                    batches: Vec::new(),
                });
            }
            size += len;
            message.last_mut().expect("a span").batches.push(compact);
        }
    }
    if !message.is_empty() {
        send_bytes(inner, to, encode(inner, Msg::Relay(message)), reliable);
    }
}

/// Queues peers' batches for the next flush to pass on.
fn queue_relay(inner: &Shared, fresh: Vec<(u64, bool, Arc<Batch>)>) {
    if fresh.is_empty() {
        return;
    }
    let mut queue = inner.relay_out.lock().expect("relay queue");
    let room = RELAY_QUEUE.saturating_sub(queue.len());
    let dropped = fresh.len().saturating_sub(room);
    if dropped > 0 {
        inner
            .stats
            .relay_dropped
            .fetch_add(dropped as u64, Ordering::Relaxed);
    }
    queue.extend(fresh.into_iter().take(room));
    drop(queue);
    inner.relay_ready.notify_one();
}

async fn receive_loop(
    inner: Arc<Shared>,
    mut inbox: mpsc::Receiver<Bytes>,
    stop: CancellationToken,
) {
    loop {
        let bytes = tokio::select! {
            _ = stop.cancelled() => return,
            b = inbox.recv() => match b { Some(b) => b, None => return },
        };
        inner
            .stats
            .bytes_received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let envelope = match wire::decode(&bytes) {
            Ok(e) => e,
            Err(why) => {
                note_rejection(&inner, "undecodable state message", &why);
                continue;
            }
        };
        let from = envelope.from;
        let (addr, member) = {
            let peers = inner.peers.read().expect("peers");
            (
                peers.by_id.get(&from).copied(),
                peers.known.contains_key(&from),
            )
        };
        if !member {
            note_rejection(
                &inner,
                "state message from a non-member",
                &format!("dropped a state message from {from:?}, which is not a current member"),
            );
            continue;
        }
        handle(&inner, &from, addr, envelope.msg);
    }
}

fn handle(inner: &Arc<Shared>, from: &str, addr: Option<SocketAddr>, msg: Msg) {
    let now = inner.clock.now_ms();
    match msg {
        Msg::Batch(batch) => {
            inner.stats.batches_received.fetch_add(1, Ordering::Relaxed);
            // Nodes send their own batches; others' come only inside sync replies.
            if batch.node != from {
                note_rejection(
                    inner,
                    "batch of another node",
                    &format!(
                        "{from:?} sent a batch claiming node {:?}; dropped",
                        batch.node
                    ),
                );
                return;
            }
            if let Some(why) = inner
                .replica
                .distrust_watermark_past(batch.origin, batch.seq)
            {
                note_rejection(inner, "implausible watermark", &why);
            }
            let origin = batch.origin;
            let applied = inner.replica.apply_batch(batch, now);
            let gap = applied.gap;
            absorb(inner, applied);
            if gap && let Some(addr) = addr {
                // Sent straight to this node: it passes nothing on (a limit at itself).
                let mine =
                    relay::position(inner.node.get().map(String::as_str).unwrap_or_default());
                ask_for_gap(inner, from, addr, origin, mine);
            }
        }
        Msg::Digest(digest) => {
            let Some(addr) = addr else { return };
            let diff = inner.replica.compare(&digest);
            if diff.they_lack {
                // Batches younger than their way round the cluster are most likely still on it,
                // unless the peer was cut off until lately.
                let min_age = if fresh_backs(inner).contains(&addr) {
                    Duration::ZERO
                } else {
                    in_flight(inner)
                };
                let (reply, notes) = inner.replica.serve_sync(&digest.have, now, min_age);
                for note in notes {
                    note_rejection(inner, "future watermark", &note);
                }
                if !reply.batches.is_empty() || reply.full.is_some() {
                    inner.stats.repairs.fetch_add(1, Ordering::Relaxed);
                    send(inner, addr, Msg::SyncReply(reply));
                }
            }
            // Relaying, what this node lacks is mostly still on its way (many hops): only the
            // origins it has heard nothing from for as long are asked for, by their gaps.
            if diff.we_lack && relaying(inner) {
                let mine =
                    relay::position(inner.node.get().map(String::as_str).unwrap_or_default());
                // Nothing from across a healed cut is on its way.
                let quiet = if fresh_backs(inner).contains(&addr) {
                    Duration::ZERO
                } else {
                    in_flight(inner)
                };
                let gaps: Vec<Gap> = inner
                    .replica
                    .stuck_behind(&digest.have, now, quiet)
                    .into_iter()
                    .map(|(origin, after, before)| Gap {
                        origin,
                        after,
                        before,
                        limit: mine,
                    })
                    .collect();
                for chunk in chunks(gaps, MISSING_GAPS_MAX) {
                    send_reliably(inner, addr, Msg::Missing(chunk));
                }
            } else if diff.we_lack {
                send(
                    inner,
                    addr,
                    Msg::SyncRequest {
                        have: inner.replica.have(),
                    },
                );
            }
            if !diff.shards.is_empty() {
                inner.stats.repairs.fetch_add(1, Ordering::Relaxed);
                let state = inner.replica.shard_state(&diff.shards, now, true);
                send(inner, addr, Msg::Shards(state));
            }
        }
        Msg::SyncRequest { have } => {
            let Some(addr) = addr else { return };
            let (reply, notes) = inner.replica.serve_sync(&have, now, Duration::ZERO);
            for note in notes {
                note_rejection(inner, "future watermark", &note);
            }
            send(inner, addr, Msg::SyncReply(reply));
        }
        Msg::SyncReply(reply) => {
            let batches = reply.batches.len();
            let full = reply.full.is_some();
            let applied = inner.replica.apply_sync_reply(reply, now);
            absorb(inner, applied);
            let mut replay = inner.replay.lock().expect("replay");
            // Only the answer of the peer asked completes the start-up replay (another
            // peer's repair may cover only part of the state).
            if matches!(&*replay, ReplayPhase::Asked { peer, .. } if peer == from) {
                let detail = format!(
                    "replayed {batches} batches from {from}{}",
                    if full {
                        " plus a full state transfer"
                    } else {
                        ""
                    }
                );
                tracing::info!(peer = from, batches, full, "shared state replay done");
                *replay = ReplayPhase::Done(detail);
                inner.replayed_from_peer.store(true, Ordering::SeqCst);
                inner.replay_done.store(true, Ordering::SeqCst);
            }
        }
        Msg::Shards(state) => {
            let pull = state.pull;
            let shards = state.shards.clone();
            for why in inner.replica.apply_shards(state, now) {
                note_rejection(inner, "invalid shard state", &why);
            }
            if pull && let Some(addr) = addr {
                let mine = inner.replica.shard_state(&shards, now, false);
                send(inner, addr, Msg::Shards(mine));
            }
        }
        Msg::Checks(checks) => {
            let Some(addr) = addr else { return };
            // Until its start-up replay is in, this node's counts may miss most of what the
            // cluster counted (a new node taking over keys as the fleet is replaced): deciding
            // from them would admit requests the limit refuses.
            if !inner.replay_done.load(Ordering::SeqCst) {
                let ids: Vec<u64> = checks.iter().map(|c| c.id).collect();
                for chunk in chunks(ids, 512) {
                    send(inner, addr, Msg::Deferred(chunk));
                }
                return;
            }
            let verdicts: Vec<Verdict> = checks
                .into_iter()
                .filter_map(|c| {
                    if let Err(why) = c.key.check() {
                        note_rejection(inner, "invalid strict check", &why);
                        return None;
                    }
                    if c.cost == 0 || c.cost > MAX_CHECK_COST {
                        note_rejection(
                            inner,
                            "invalid strict check",
                            &format!("strict check cost {} outside 1-{MAX_CHECK_COST}", c.cost),
                        );
                        return None;
                    }
                    let window = usize::from(c.window).min(inner.options.windows.len() - 1);
                    let (allowed, count) = inner
                        .replica
                        .decide(&c.key, window, c.limit, c.cost, now, true);
                    Some(Verdict {
                        id: c.id,
                        allowed,
                        count,
                        totals: inner.replica.totals(&c.key, now),
                    })
                })
                .collect();
            for chunk in chunks(verdicts, 40) {
                send(inner, addr, Msg::Verdicts(chunk));
            }
        }
        Msg::Verdicts(verdicts) => {
            let mut pending = inner.pending.lock().expect("pending");
            for v in verdicts {
                if let Some(tx) = pending.remove(&v.id) {
                    let _ = tx.send(Some(v));
                }
            }
        }
        Msg::Missing(gaps) => {
            let Some(addr) = addr else { return };
            if gaps.len() > MISSING_GAPS_MAX {
                note_rejection(
                    inner,
                    "oversized gap request",
                    &format!(
                        "{from:?} asked for {} gaps at once (at most {MISSING_GAPS_MAX}); \
                         the first {MISSING_GAPS_MAX} answered",
                        gaps.len()
                    ),
                );
            }
            let mut left = MISSING_RESENT_MAX;
            let mut spans = Bundle::new();
            for gap in gaps.iter().take(MISSING_GAPS_MAX) {
                let found = inner
                    .replica
                    .logged_batches(gap.origin, gap.after, gap.before, left);
                left -= found.len();
                spans.entry((gap.limit, false)).or_default().extend(found);
                if left == 0 {
                    break;
                }
            }
            if left < MISSING_RESENT_MAX {
                inner.stats.repairs.fetch_add(1, Ordering::Relaxed);
                send_spans(inner, addr, spans, bundle_budget(inner), true);
            }
        }
        Msg::Relay(spans) => {
            let mine = relay::position(inner.node.get().map(String::as_str).unwrap_or_default());
            let mut fresh = Vec::new();
            let mut gaps = Vec::new();
            for span in spans {
                for batch in span.batches {
                    let batch = Batch::from(batch);
                    inner.stats.batches_received.fetch_add(1, Ordering::Relaxed);
                    // The origin's own node sends its newest batch: a watermark far past it
                    // was never real. Relays pass on others', which prove nothing of the kind.
                    if batch.node == from
                        && let Some(why) = inner
                            .replica
                            .distrust_watermark_past(batch.origin, batch.seq)
                    {
                        note_rejection(inner, "implausible watermark", &why);
                    }
                    let origin = batch.origin;
                    let again = span.again.then(|| Arc::new(batch.clone()));
                    let mut applied = inner.replica.apply_batch(batch, now);
                    if applied.gap {
                        gaps.push((origin, span.limit));
                    }
                    let pass_on = match (applied.fresh.take(), again) {
                        (Some(batch), _) => Some(batch),
                        (None, Some(batch)) if applied.duplicate => Some(batch),
                        _ => None,
                    };
                    if let Some(batch) = pass_on
                        && span.limit != mine
                    {
                        fresh.push((span.limit, span.again, batch));
                    }
                    absorb(inner, applied);
                }
            }
            queue_relay(inner, fresh);
            if let Some(addr) = addr {
                for (origin, limit) in gaps {
                    ask_for_gap(inner, from, addr, origin, limit);
                }
            }
        }
        Msg::Deferred(ids) => {
            let mut pending = inner.pending.lock().expect("pending");
            for id in ids {
                if let Some(tx) = pending.remove(&id) {
                    let _ = tx.send(None);
                }
            }
        }
    }
}

fn chunks<T>(mut items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    while items.len() > size {
        let rest = items.split_off(size);
        out.push(items);
        items = rest;
    }
    if !items.is_empty() {
        out.push(items);
    }
    out
}

fn absorb(inner: &Shared, applied: Applied) {
    if applied.duplicate {
        inner.stats.duplicates.fetch_add(1, Ordering::Relaxed);
    }
    for why in applied.rejected {
        note_rejection(inner, "invalid batch", &why);
    }
    for event in applied.events {
        let _ = inner.events.send(event);
    }
}

/// A gap is most often a batch overtaken in flight (jittery links reorder): the request for
/// the missing batches goes out only if the gap is still open after [`GAP_GRACE`], together
/// with every other gap the same sender showed meanwhile.
fn ask_for_gap(inner: &Arc<Shared>, from: &str, addr: SocketAddr, origin: Origin, limit: u64) {
    {
        let mut pending = inner.gap_pending.lock().expect("gap");
        if let Some(origins) = pending.get_mut(from) {
            origins.insert(origin, limit);
            return;
        }
        pending.insert(from.to_string(), HashMap::from([(origin, limit)]));
    }
    let inner = inner.clone();
    let from = from.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(GAP_GRACE).await;
        let origins = inner
            .gap_pending
            .lock()
            .expect("gap")
            .remove(&from)
            .unwrap_or_default();
        let gaps: Vec<Gap> = origins
            .into_iter()
            .filter_map(|(origin, limit)| {
                let (after, before) = inner.replica.gap(origin)?;
                Some(Gap {
                    origin,
                    after,
                    before,
                    limit,
                })
            })
            .collect();
        for chunk in chunks(gaps, MISSING_GAPS_MAX) {
            send_reliably(&inner, addr, Msg::Missing(chunk));
        }
    });
}

async fn anti_entropy_loop(inner: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(inner.options.anti_entropy_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe = tokio::time::interval(DEAD_PROBE_EVERY);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep = Instant::now();
    let mut evicted_before = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                // Peers that came back lately first: across a healed partition is where the
                // differences are, and a random pick finds the other side only half the time.
                let back: Vec<SocketAddr> = fresh_backs(&inner).into_iter().collect();
                let peer = if back.is_empty() {
                    let peers = inner.peers.read().expect("peers");
                    let addrs: Vec<SocketAddr> = peers.by_id.values().copied().collect();
                    (!addrs.is_empty()).then(|| addrs[rand::random_range(0..addrs.len())])
                } else {
                    Some(back[rand::random_range(0..back.len())])
                };
                if let Some(addr) = peer {
                    inner.stats.anti_entropy_rounds.fetch_add(1, Ordering::Relaxed);
                    send(&inner, addr, Msg::Digest(inner.replica.digest(inner.clock.now_ms())));
                }
                if last_sweep.elapsed() >= SWEEP_EVERY {
                    let now = inner.clock.now_ms();
                    inner.replica.sweep(now);
                    let members: HashSet<String> = {
                        let peers = inner.peers.read().expect("peers");
                        peers.known.keys().cloned().chain(inner.node.get().cloned()).collect()
                    };
                    inner
                        .replica
                        .retire_origins(now, retire_after(&inner.options), &members);
                    let evicted = inner.replica.evicted();
                    if evicted > evicted_before {
                        tracing::warn!(
                            evicted = evicted - evicted_before,
                            max_keys = inner.options.max_keys,
                            "shared state: counter keys evicted to stay under state.max_keys; \
                             their counts on this node are gone (raise it, or give the node \
                             more memory)"
                        );
                        evicted_before = evicted;
                    }
                    last_sweep = Instant::now();
                }
            }
            _ = probe.tick() => {
                // Members declared dead may only be cut off: a small digest (what we have
                // seen, no shard hashes) tells them, the moment the network heals, that
                // there is something to exchange.
                let most = if relaying(&inner) { RELAY_DEAD_PROBE_MAX } else { DEAD_PROBE_MAX };
                let dead: Vec<SocketAddr> = {
                    let peers = inner.peers.read().expect("peers");
                    peers.dead.values().copied().take(most).collect()
                };
                if !dead.is_empty() {
                    let digest = encode(
                        &inner,
                        Msg::Digest(crate::wire::Digest {
                            now_ms: inner.clock.now_ms(),
                            have: inner.replica.have(),
                            shards: Vec::new(),
                        }),
                    );
                    for addr in dead {
                        send_bytes(&inner, addr, digest.clone(), false);
                    }
                }
            }
        }
    }
}

/// Follows membership: keeps the peer list and ring current, sends a digest to a peer that
/// appears or comes back, and drives the start-up replay.
async fn membership_loop(inner: Arc<Shared>, cluster: Arc<dyn Transport>, stop: CancellationToken) {
    let mut changes = cluster.subscribe();
    let mut subscribed = true;
    let mut tick = tokio::time::interval(PEER_REFRESH);
    loop {
        let mut back: Vec<SocketAddr> = Vec::new();
        let mut change = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => None,
            change = changes.recv(), if subscribed => Some(change),
        };
        // Everything that changed meanwhile is taken at once (a healed partition brings back
        // half the cluster): one refresh, not one per peer.
        while let Some(next) = change {
            match next {
                Some(PeerChange::Back(address)) => back.push(address),
                Some(PeerChange::Changed) => {}
                // The membership layer stopped: the timer alone refreshes from now on.
                None => subscribed = false,
            }
            change = match changes.try_recv() {
                Ok(c) => Some(Some(c)),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => subscribed.then_some(None),
            };
        }
        refresh_peers(&inner, cluster.as_ref());
        if !back.is_empty() {
            let now = Instant::now();
            inner
                .came_back
                .lock()
                .expect("came back")
                .extend(back.iter().map(|a| (*a, now)));
            // In a large cluster a few of them suffice to start the exchange; anti-entropy
            // reaches the rest.
            if relaying(&inner) && back.len() > BACK_DIGESTS {
                rand::seq::SliceRandom::shuffle(back.as_mut_slice(), &mut rand::rng());
                back.truncate(BACK_DIGESTS);
            }
            let digest = encode(
                &inner,
                Msg::Digest(inner.replica.digest(inner.clock.now_ms())),
            );
            for addr in back {
                send_bytes(&inner, addr, digest.clone(), false);
            }
        }
        let ask = {
            let peers = inner.peers.read().expect("peers");
            let mut replay = inner.replay.lock().expect("replay");
            let pick = peers.by_id.iter().next().map(|(id, a)| (id.clone(), *a));
            let due = match &*replay {
                ReplayPhase::Waiting => true,
                ReplayPhase::Asked { at, .. } => at.elapsed() >= SYNC_TIMEOUT,
                // Settled alone, and now there are peers: what they counted is not here.
                ReplayPhase::Done(_) => {
                    let rejoined =
                        pick.is_some() && !inner.replayed_from_peer.load(Ordering::SeqCst);
                    if rejoined {
                        tracing::info!(
                            "peers appeared after this node ran alone: replaying their state \
                             before deciding the strict checks it owns"
                        );
                        inner.replay_done.store(false, Ordering::SeqCst);
                    }
                    rejoined
                }
            };
            match (due, pick) {
                (true, Some((id, addr))) => {
                    *replay = ReplayPhase::Asked {
                        peer: id,
                        at: Instant::now(),
                    };
                    Some(addr)
                }
                _ => None,
            }
        };
        if let Some(addr) = ask {
            send(
                &inner,
                addr,
                Msg::SyncRequest {
                    have: inner.replica.have(),
                },
            );
        }
    }
}

/// Sends queued strict checks, all those waiting for one owner in as few messages as fit.
async fn forward_loop(
    inner: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<(SocketAddr, Check)>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            c = rx.recv() => match c { Some(c) => c, None => return },
        };
        let mut by_owner: HashMap<SocketAddr, Vec<Check>> = HashMap::new();
        by_owner.entry(first.0).or_default().push(first.1);
        while let Ok((addr, check)) = rx.try_recv() {
            by_owner.entry(addr).or_default().push(check);
        }
        for (addr, checks) in by_owner {
            for chunk in chunks(checks, 8) {
                send(&inner, addr, Msg::Checks(chunk));
            }
        }
    }
}
