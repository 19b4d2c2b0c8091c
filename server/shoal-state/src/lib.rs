//! Shared cluster state: what every node must agree on to answer "how often did U touch B in
//! the last minute, across the cluster" exactly.
//!
//! - `counter`: sliding-window rate counters built from per-origin G-counter buckets; the merge
//!   is commutative, associative and idempotent (proved by property tests).
//! - `clock`: Lamport stamps, the total order of updates (time, then node).
//! - `replay`: the bounded buffer of recent updates a joining node is replayed from.
//! - `cache`: TTL entries, last writer wins by Lamport stamp, tombstones, size-bounded.
//! - `events`: the broadcast event channel, delivered once per node, size-limited.
//! - `revocation`: what a `revoke` event says (a user or a key, for how long).
//!
//! - `key`: what a counter counts, (subject, resource, action), and its hash.
//! - `ring`: the consistent-hash ring naming each key's owner in strict mode.
//! - `relay`: the relay ring large clusters pass batches along (log2(N) fingers per node).
//! - `wire`: the messages nodes exchange about state, and their encoding.
//! - `replica`: this node's copy and every merge rule (no I/O).
//! - `regions` (feature `testsuite`): regional and global clusters on the simulator, deciding
//!   against a global limit as the data plane does.
//! - `sim` (feature `testsuite`): the deterministic network simulator the scenarios run on;
//!   `sim_tests` (tests only): the scenarios.
//! - `transport`: [`Transport`], all shared state needs of the cluster (implemented by
//!   `shoal-cluster`, and by the simulator).
//! - `node`: [`SharedState`], the replica plus the tasks that share it over the cluster, one
//!   module per task (`flush`, `receive`, `anti_entropy`, `membership`, `strict`).
//! - `services`: [`Services`], which shared state each service uses on a node in several
//!   clusters.
//! - `instruments`: keys held, batches and bytes exchanged, repairs and degraded strict
//!   checks as metrics.
//! - `fuzzing` (`--cfg fuzzing` only): the entry points of the fuzz targets in `fuzz/`.

#![forbid(unsafe_code)]

mod cache;
mod clock;
mod counter;
mod events;
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
mod instruments;
mod key;
mod node;
#[cfg(any(test, feature = "testsuite"))]
pub mod regions;
#[cfg(test)]
mod regions_tests;
mod relay;
mod replay;
mod replica;
mod revocation;
mod ring;
mod services;
#[cfg(any(test, feature = "testsuite"))]
pub mod sim;
#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "a test's tasks end with its runtime"
)]
mod sim_tests;
mod transport;
mod wire;

pub use cache::{Cache, CacheLimits, CacheMerge, CacheUpdate};
pub use clock::{LamportClock, MAX_CLOCK_JUMP, Stamp};
pub use counter::{BucketDelta, Counter, Merged, Origin, WindowSpec};
pub use events::{Accepted, Event, EventChannel, EventLimits};
pub use instruments::register_metrics;
pub use key::{CounterKey, MAX_KEY_PART_BYTES};
#[cfg(any(test, feature = "testsuite"))]
pub use node::SyncView;
pub use node::{
    Contribution, Decision, Limit, Mode, REGION_MEMORY, Reach, ReplayStatus, SharedState,
    StateOptions, StateStatus,
};
pub use replay::{Pushed, Replay, ReplayBuffer};
pub use revocation::{DEFAULT_REVOCATION, MAX_REVOCATION, REVOKE_TOPIC, Revocation, Revoked};
pub use services::{GlobalCounts, SHARE_SETTLE, Services};
pub use transport::{Peer, PeerChange, PeerState, Sent, Transport};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("invalid counter key: {0}")]
    InvalidKey(String),
    #[error("cache write refused: {0}")]
    Cache(String),
    #[error("event refused: {0}")]
    Event(String),
}

/// Shared by the property tests: a deterministic shuffle (Fisher-Yates on an LCG), so a failing
/// case replays exactly from proptest's seed.
#[cfg(test)]
pub(crate) fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = seed;
    for i in (1..items.len()).rev() {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        items.swap(i, (rng >> 33) as usize % (i + 1));
    }
}
