//! Sliding-window rate counters that merge exactly.
//!
//! A counter has one ring of sub-window buckets per window (e.g. last minute: 60 buckets of 1 s;
//! last hour: 60 buckets of 1 min). Each bucket is a G-counter: one count per origin node, only
//! ever raised by that origin. A replica learns an origin's count for a bucket as an absolute
//! value ([`BucketDelta`]) and keeps the maximum it has seen, so the merge is
//!
//! - commutative and associative: deltas can arrive in any order;
//! - idempotent: a delta delivered twice (replay, anti-entropy, a healed partition) changes
//!   nothing the second time;
//!
//! and the total of a window is the sum over its live buckets of the sum over origins: exact once
//! every origin's latest values have arrived, never counting one increment twice.
//!
//! Time is passed in (Unix milliseconds) rather than read from a clock, so behaviour at window
//! boundaries is deterministic and testable.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// A cluster node as counters know it: a stable 64-bit value derived from its node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Origin(pub u64);

impl Origin {
    /// FNV-1a of the node id: stable across processes and versions, cheap, and 64 bits make a
    /// collision between the few hundred nodes of a cluster negligible.
    pub fn from_node_id(id: &str) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in id.as_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Origin(hash)
    }
}

/// SplitMix64's finalizer: a cheap, well-spread 64-bit mix for digests and hashing.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One window: its length and how many buckets it is cut into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    pub length: Duration,
    pub buckets: u32,
}

impl WindowSpec {
    /// Last minute in 1 s buckets and last hour in 1 min buckets.
    pub const DEFAULTS: [WindowSpec; 2] = [
        WindowSpec {
            length: Duration::from_secs(60),
            buckets: 60,
        },
        WindowSpec {
            length: Duration::from_secs(3600),
            buckets: 60,
        },
    ];

    fn bucket_ms(&self) -> u64 {
        (self.length.as_millis() as u64 / u64::from(self.buckets)).max(1)
    }

    /// The bucket that time `now_ms` falls in.
    fn bucket_of(&self, now_ms: u64) -> u64 {
        now_ms / self.bucket_ms()
    }

    /// Whether a replica whose clock is a little ahead may already have rotated `bucket` out:
    /// the oldest live bucket. Digests leave it out so clock skew is not mistaken for missing
    /// data.
    fn is_oldest(&self, bucket: u64, now_ms: u64) -> bool {
        self.bucket_of(now_ms) - bucket + 1 >= u64::from(self.buckets)
    }

    /// Whether bucket `bucket` still counts at `now_ms`: the window is the current bucket and
    /// the `buckets - 1` before it.
    fn is_live(&self, bucket: u64, now_ms: u64) -> bool {
        let current = self.bucket_of(now_ms);
        bucket <= current && current - bucket < u64::from(self.buckets)
    }
}

/// "Origin `origin` has counted `value` in bucket `bucket` of window `window`" — an absolute
/// value, so applying it is idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketDelta {
    pub window: u8,
    pub bucket: u64,
    pub origin: Origin,
    pub value: u64,
}

/// What merging a delta did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merged {
    /// The value was new and raised the origin's count.
    Applied,
    /// Already known (duplicate or older value): nothing changed.
    Known,
    /// The bucket is outside the window (too old, or from the future): ignored.
    OutOfWindow,
    /// No such window in this counter's configuration: ignored.
    UnknownWindow,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    id: u64,
    /// Sorted by origin; a handful of entries (one per node that counted here).
    /// Inline while one origin counted here (the common case): no allocation per bucket.
    counts: SmallVec<[(Origin, u64); 1]>,
}

impl Bucket {
    fn total(&self) -> u64 {
        self.counts
            .iter()
            .fold(0u64, |t, (_, c)| t.saturating_add(*c))
    }
}

/// One window's buckets, sparse: only buckets that hold a count, oldest first, at most
/// `spec.buckets` of them. Most keys are touched in a few buckets, so a key costs what it
/// counted, not a full ring (a million keys counted once each held 4.8 GB with full rings).
#[derive(Debug, Clone)]
struct Ring {
    spec: WindowSpec,
    slots: Vec<Bucket>,
}

impl Ring {
    fn new(spec: WindowSpec) -> Self {
        Self {
            spec,
            slots: Vec::new(),
        }
    }

    /// The bucket `bucket`, created if new; `None` if a bucket a whole window newer is held
    /// (so `bucket` has already expired here). Buckets a newer one pushes out of the window
    /// are dropped.
    fn slot(&mut self, bucket: u64) -> Option<&mut Bucket> {
        let span = u64::from(self.spec.buckets.max(1));
        let newest = self.slots.last().map_or(0, |b| b.id);
        if newest >= bucket.saturating_add(span) {
            return None;
        }
        let index = match self.slots.binary_search_by_key(&bucket, |b| b.id) {
            Ok(i) => i,
            Err(i) => {
                // Grown one at a time: a Vec's first growth would reserve four buckets, and
                // most keys only ever need one or two.
                self.slots.reserve_exact(1);
                self.slots.insert(
                    i,
                    Bucket {
                        id: bucket,
                        counts: SmallVec::new(),
                    },
                );
                let expired = self
                    .slots
                    .iter()
                    .take_while(|b| b.id.saturating_add(span) <= bucket)
                    .count();
                self.slots.drain(..expired);
                i - expired
            }
        };
        Some(&mut self.slots[index])
    }

    /// Raises `origin`'s count in `bucket` to at least `value`; true if it changed.
    fn raise(&mut self, bucket: u64, origin: Origin, value: u64) -> Option<bool> {
        let slot = self.slot(bucket)?;
        Some(
            match slot.counts.binary_search_by_key(&origin, |(o, _)| *o) {
                Ok(i) if slot.counts[i].1 >= value => false,
                Ok(i) => {
                    slot.counts[i].1 = value;
                    true
                }
                Err(i) => {
                    slot.counts.insert(i, (origin, value));
                    true
                }
            },
        )
    }

    fn live(&self, now_ms: u64) -> impl Iterator<Item = &Bucket> {
        self.slots
            .iter()
            .filter(move |b| !b.counts.is_empty() && self.spec.is_live(b.id, now_ms))
    }
}

/// One rate counter (one key) across all its windows.
#[derive(Debug, Clone)]
pub struct Counter {
    rings: Vec<Ring>,
}

impl Counter {
    pub fn new(windows: &[WindowSpec]) -> Self {
        Self {
            rings: windows.iter().copied().map(Ring::new).collect(),
        }
    }

    /// Counts `by` events at `now_ms` for `origin` (this node) and returns the new absolute
    /// values to send to the other nodes, one per window.
    pub fn increment(&mut self, origin: Origin, now_ms: u64, by: u64) -> Vec<BucketDelta> {
        let mut deltas = Vec::with_capacity(self.rings.len());
        for (window, ring) in self.rings.iter_mut().enumerate() {
            let bucket = ring.spec.bucket_of(now_ms);
            let Some(slot) = ring.slot(bucket) else {
                continue;
            };
            let value = match slot.counts.binary_search_by_key(&origin, |(o, _)| *o) {
                Ok(i) => {
                    slot.counts[i].1 = slot.counts[i].1.saturating_add(by);
                    slot.counts[i].1
                }
                Err(i) => {
                    slot.counts.insert(i, (origin, by));
                    by
                }
            };
            deltas.push(BucketDelta {
                window: window as u8,
                bucket,
                origin,
                value,
            });
        }
        deltas
    }

    /// Merges another node's value (see the module docs for why this is exact).
    pub fn merge(&mut self, delta: &BucketDelta, now_ms: u64) -> Merged {
        let Some(ring) = self.rings.get_mut(usize::from(delta.window)) else {
            return Merged::UnknownWindow;
        };
        if !ring.spec.is_live(delta.bucket, now_ms) {
            return Merged::OutOfWindow;
        }
        match ring.raise(delta.bucket, delta.origin, delta.value) {
            Some(true) => Merged::Applied,
            Some(false) => Merged::Known,
            None => Merged::OutOfWindow,
        }
    }

    /// Events counted in window `window` as of `now_ms`, all origins together.
    pub fn total(&self, window: usize, now_ms: u64) -> u64 {
        self.rings.get(window).map_or(0, |ring| {
            ring.live(now_ms)
                .fold(0u64, |t, b| t.saturating_add(b.total()))
        })
    }

    /// When this counter last counted anything (the start of its newest bucket): what
    /// eviction under the key limit goes by.
    pub fn last_counted_ms(&self) -> u64 {
        self.rings
            .iter()
            .filter_map(|ring| ring.slots.last().map(|b| b.id * ring.spec.bucket_ms()))
            .max()
            .unwrap_or(0)
    }

    /// Whether nothing is left to count at `now_ms` (every bucket has expired): the counter
    /// can be dropped.
    pub fn is_idle(&self, now_ms: u64) -> bool {
        self.rings
            .iter()
            .all(|ring| ring.live(now_ms).next().is_none())
    }

    /// An order-independent hash of every (window, bucket, origin, value) live at `now_ms`,
    /// the oldest bucket of each window excepted; two replicas holding the same counts agree
    /// on it. `seed` mixes in the key.
    pub fn digest(&self, seed: u64, now_ms: u64) -> u64 {
        let mut sum = 0u64;
        for (window, ring) in self.rings.iter().enumerate() {
            for bucket in ring.live(now_ms) {
                if ring.spec.is_oldest(bucket.id, now_ms) {
                    continue;
                }
                for (origin, value) in &bucket.counts {
                    sum = sum.wrapping_add(mix(
                        seed ^ mix(window as u64 ^ mix(bucket.id ^ mix(origin.0 ^ mix(*value))))
                    ));
                }
            }
        }
        sum
    }

    /// Each origin's share of `total(window, now_ms)`, sorted by origin (for the console).
    pub fn contributions(&self, window: usize, now_ms: u64) -> Vec<(Origin, u64)> {
        let mut by_origin: Vec<(Origin, u64)> = Vec::new();
        if let Some(ring) = self.rings.get(window) {
            for bucket in ring.live(now_ms) {
                for (origin, count) in &bucket.counts {
                    match by_origin.binary_search_by_key(origin, |(o, _)| *o) {
                        Ok(i) => by_origin[i].1 = by_origin[i].1.saturating_add(*count),
                        Err(i) => by_origin.insert(i, (*origin, *count)),
                    }
                }
            }
        }
        by_origin
    }

    /// Every live value this counter holds, as deltas: what a full-state sync sends.
    pub fn snapshot(&self, now_ms: u64) -> Vec<BucketDelta> {
        let mut out = Vec::new();
        for (window, ring) in self.rings.iter().enumerate() {
            for bucket in ring.live(now_ms) {
                for (origin, value) in &bucket.counts {
                    out.push(BucketDelta {
                        window: window as u8,
                        bucket: bucket.id,
                        origin: *origin,
                        value: *value,
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MINUTE: usize = 0;
    const HOUR: usize = 1;

    fn counter() -> Counter {
        Counter::new(&WindowSpec::DEFAULTS)
    }

    #[test]
    fn window_boundaries_are_exact() {
        let a = Origin(1);
        let mut c = counter();
        c.increment(a, 0, 1); // bucket 0 of the minute window
        c.increment(a, 59_999, 2); // bucket 59
        assert_eq!(c.total(MINUTE, 59_999), 3);
        // At 60.000 s the window is buckets 1..=60: bucket 0 has left it.
        assert_eq!(c.total(MINUTE, 60_000), 2);
        assert_eq!(c.total(MINUTE, 119_999), 0);
        // The hour window still holds both.
        assert_eq!(c.total(HOUR, 119_999), 3);
        assert_eq!(c.total(HOUR, 3_600_000), 0);
    }

    #[test]
    fn old_and_future_deltas_are_ignored_and_reused_slots_reset() {
        let (a, b) = (Origin(1), Origin(2));
        let mut c = counter();
        c.increment(a, 0, 5);
        let later = 61_000; // bucket 0 has left the minute window by now
        assert_eq!(
            c.merge(
                &BucketDelta {
                    window: 0,
                    bucket: 0,
                    origin: b,
                    value: 9
                },
                later
            ),
            Merged::OutOfWindow
        );
        assert_eq!(
            c.merge(
                &BucketDelta {
                    window: 0,
                    bucket: 1_000,
                    origin: b,
                    value: 9
                },
                later
            ),
            Merged::OutOfWindow,
            "a bucket from the future"
        );
        assert_eq!(
            c.merge(
                &BucketDelta {
                    window: 9,
                    bucket: 61,
                    origin: b,
                    value: 9
                },
                later
            ),
            Merged::UnknownWindow
        );
        c.increment(a, later, 1);
        assert_eq!(c.total(MINUTE, later), 1, "only bucket 61 is live");
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let a = Origin(1);
        let mut c = counter();
        c.increment(a, 0, u64::MAX - 1);
        c.increment(a, 0, 10);
        c.merge(
            &BucketDelta {
                window: 0,
                bucket: 0,
                origin: Origin(2),
                value: u64::MAX,
            },
            0,
        );
        assert_eq!(c.total(MINUTE, 0), u64::MAX);
    }

    #[test]
    fn origin_ids_are_stable() {
        assert_eq!(Origin::from_node_id("abc"), Origin::from_node_id("abc"));
        assert_ne!(Origin::from_node_id("abc"), Origin::from_node_id("abd"));
    }

    /// (origin, time in ms within ~3 minutes, count).
    fn increments() -> impl Strategy<Value = Vec<(u64, u64, u64)>> {
        prop::collection::vec((0u64..4, 0u64..180_000, 1u64..5), 1..80)
    }

    proptest! {
        /// Any interleaving, duplication and reordering of every origin's deltas gives every
        /// replica the exact true totals, in every window.
        #[test]
        fn replicas_converge_to_the_exact_totals(
            mut events in increments(),
            shuffle_seed in any::<u64>(),
            duplicates in 0usize..3,
            read_offset in 0u64..200_000,
        ) {
            events.sort_by_key(|e| e.1);
            let now = events.last().unwrap().1 + read_offset;
            // Each origin counts its own increments and emits absolute deltas.
            let mut sources: Vec<Counter> = (0..4).map(|_| counter()).collect();
            let mut deltas = Vec::new();
            for &(origin, at, by) in &events {
                deltas.extend(sources[origin as usize].increment(Origin(origin), at, by));
            }
            // Deliver them to a replica shuffled, with duplicates.
            let mut delivered: Vec<BucketDelta> = Vec::new();
            for _ in 0..=duplicates {
                delivered.extend(deltas.iter().copied());
            }
            crate::shuffle(&mut delivered, shuffle_seed);
            let mut replica = counter();
            for d in &delivered {
                replica.merge(d, now);
            }
            for (window, spec) in WindowSpec::DEFAULTS.iter().enumerate() {
                let truth: u64 = events
                    .iter()
                    .filter(|e| spec.is_live(spec.bucket_of(e.1), now))
                    .map(|e| e.2)
                    .sum();
                prop_assert_eq!(replica.total(window, now), truth);
                let by_origin: u64 = replica.contributions(window, now).iter().map(|c| c.1).sum();
                prop_assert_eq!(by_origin, truth);
            }
        }

        /// Merging is idempotent and order-free: a second replica fed the first one's snapshot
        /// in reverse ends identical, and feeding the snapshot again changes nothing.
        #[test]
        fn snapshot_merge_is_idempotent(events in increments()) {
            let now = 180_000;
            let mut source = counter();
            let mut peer = counter();
            for &(origin, at, by) in &events {
                for d in source.increment(Origin(origin), at, by) {
                    peer.merge(&d, at);
                }
            }
            let mut copy = counter();
            for d in peer.snapshot(now).iter().rev() {
                copy.merge(d, now);
            }
            for d in peer.snapshot(now) {
                prop_assert_ne!(copy.merge(&d, now), Merged::Applied);
            }
            for window in 0..2 {
                prop_assert_eq!(copy.total(window, now), peer.total(window, now));
                prop_assert_eq!(copy.total(window, now), source.total(window, now));
            }
        }
    }
}
