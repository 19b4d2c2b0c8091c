//! Shared cluster state: what every node must agree on to answer "how often did U touch B in
//! the last minute, across the cluster" exactly.
//!
//! - `counter`: sliding-window rate counters built from per-origin G-counter buckets; the merge
//!   is commutative, associative and idempotent (proved by property tests).
//!
//! Built in steps (issue 5): the cache, the event channel, the Lamport-ordered replay buffer,
//! anti-entropy and strict mode come next, on top of these types.

#![forbid(unsafe_code)]

mod counter;

pub use counter::{BucketDelta, Counter, Merged, Origin, WindowSpec};
