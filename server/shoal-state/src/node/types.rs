use std::time::Duration;

use serde::Serialize;
use shoal_config::StateConfig;

use crate::{CacheLimits, EventLimits, WindowSpec};

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

/// What a node has seen and received, for the simulator's diagnostics (a benchmark's slow node
/// explaining itself).
#[cfg(any(test, feature = "testsuite"))]
#[derive(Debug, Clone)]
pub struct SyncView {
    pub origin: crate::Origin,
    /// This node's last batch number.
    pub seq: u64,
    /// Per origin tracked: every batch up to, how many applied past a gap, when the last
    /// arrived (`now_ms`'s clock).
    pub seen: Vec<(crate::Origin, u64, usize, u64)>,
    pub now_ms: u64,
    /// Messages dropped because their peer's outbound queue was full.
    pub queue_full: u64,
    /// Messages received, per kind.
    pub received: Vec<(&'static str, u64)>,
    /// Peers that came back lately (preferred by anti-entropy).
    pub fresh_backs: usize,
    /// Batches in the replay log.
    pub replay_log: usize,
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
