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
        // A bucket a peer ahead has started is the newest, never the oldest.
        self.bucket_of(now_ms)
            .checked_sub(bucket)
            .is_some_and(|age| age + 1 >= u64::from(self.buckets))
    }

    /// Whether bucket `bucket` still counts at `now_ms`: the window is the current bucket and
    /// the `buckets - 1` before it.
    fn is_live(&self, bucket: u64, now_ms: u64) -> bool {
        let current = self.bucket_of(now_ms);
        bucket <= current && current - bucket < u64::from(self.buckets)
    }

    /// Whether a peer's value for `bucket` is kept and counted: a live bucket, or one a clock
    /// up to [`CLOCK_AHEAD_MS`] ahead of ours has started. Dropping it would lose the count on
    /// this node for good, as its batch is then seen (with a peer 5 ms ahead, the increments
    /// of every bucket's first 5 ms); holding it without counting it until our clock gets
    /// there would leave this node short of the cluster's total for as long as the clocks are
    /// apart, with every batch in hand (and leave it out of full-state transfers).
    fn accepts(&self, bucket: u64, now_ms: u64) -> bool {
        self.is_live(bucket, now_ms)
            || (bucket > self.bucket_of(now_ms)
                && bucket <= self.bucket_of(now_ms.saturating_add(CLOCK_AHEAD_MS)))
    }
}

/// How far ahead a peer's clock may be for its newest buckets to be kept (see
/// [`WindowSpec::accepts`]); nodes must be NTP-synchronised, far closer than this.
const CLOCK_AHEAD_MS: u64 = 5_000;

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

/// Bits of [`Bucket::at`] below the window index: bucket numbers fit until a node's clock
/// reads 2^56 ms (some two million years after 1970), whatever the bucket length.
const BUCKET_BITS: u32 = 56;

#[derive(Debug, Clone)]
struct Bucket {
    /// The window in the top byte, the bucket number below: one word rather than two in every
    /// bucket, and a counter's buckets sorted by it fall into one run per window, oldest first.
    at: u64,
    /// Sorted by origin; a handful of entries (one per node that counted here).
    /// Inline while one origin counted here (the common case): no allocation per bucket.
    counts: SmallVec<[(Origin, u64); 1]>,
}

impl Bucket {
    /// `None` where the window or the bucket number does not fit its bits (see
    /// [`BUCKET_BITS`]).
    fn at(window: usize, bucket: u64) -> Option<u64> {
        let window = u64::from(u8::try_from(window).ok()?);
        (bucket >> BUCKET_BITS == 0).then_some(window << BUCKET_BITS | bucket)
    }

    fn window(&self) -> usize {
        (self.at >> BUCKET_BITS) as usize
    }

    fn id(&self) -> u64 {
        self.at & ((1 << BUCKET_BITS) - 1)
    }

    fn total(&self) -> u64 {
        self.counts
            .iter()
            .fold(0u64, |t, (_, c)| t.saturating_add(*c))
    }
}

/// One rate counter (one key) across all its windows.
///
/// A node holds one per live key, so its size is most of what a key costs: every window's
/// buckets share one allocation, sparse (only buckets that hold a count, at most `buckets` per
/// window: most keys are touched in a few buckets, and a million keys counted once each held
/// 4.8 GB with full rings), in a boxed slice rather than a `Vec` (8 bytes less in each entry
/// of the key map). The window specs are the owner's, passed in: the same for every key.
#[derive(Debug, Clone, Default)]
pub struct Counter {
    /// Sorted by `at`.
    buckets: Box<[Bucket]>,
}

impl Counter {
    /// Where window `window`'s buckets are in `buckets`.
    fn run(&self, window: usize) -> std::ops::Range<usize> {
        let start = self.buckets.partition_point(|b| b.window() < window);
        let end = self.buckets.partition_point(|b| b.window() <= window);
        start..end
    }

    /// Window `window`'s buckets that hold a count live at `now_ms`, those a peer whose clock
    /// is a little ahead has started included (see [`WindowSpec::accepts`]).
    fn live(
        &self,
        windows: &[WindowSpec],
        window: usize,
        now_ms: u64,
    ) -> impl Iterator<Item = &Bucket> {
        let spec = windows.get(window).copied();
        let run = spec.map_or(0..0, |_| self.run(window));
        self.buckets[run].iter().filter(move |b| {
            !b.counts.is_empty() && spec.is_some_and(|s| s.accepts(b.id(), now_ms))
        })
    }

    /// Bucket `bucket` of window `window`, created if new; `None` if a bucket a whole window
    /// newer is held (so `bucket` has already expired here). Buckets of the window a newer
    /// one pushes out of it are dropped.
    fn slot(&mut self, window: usize, spec: &WindowSpec, bucket: u64) -> Option<&mut Bucket> {
        let at = Bucket::at(window, bucket)?;
        let span = u64::from(spec.buckets.max(1));
        let run = self.run(window);
        let newest = self.buckets[run.clone()].last().map_or(0, Bucket::id);
        if newest >= bucket.saturating_add(span) {
            return None;
        }
        let index = match self.buckets.binary_search_by_key(&at, |b| b.at) {
            Ok(i) => i,
            Err(i) => {
                // Grown one at a time: most keys only ever need one or two buckets a window.
                let mut buckets = std::mem::take(&mut self.buckets).into_vec();
                buckets.reserve_exact(1);
                buckets.insert(
                    i,
                    Bucket {
                        at,
                        counts: SmallVec::new(),
                    },
                );
                let expired = buckets[run.start..]
                    .iter()
                    .take_while(|b| b.id().saturating_add(span) <= bucket)
                    .count();
                buckets.drain(run.start..run.start + expired);
                self.buckets = buckets.into_boxed_slice();
                i - expired
            }
        };
        Some(&mut self.buckets[index])
    }

    /// Counts `by` events at `now_ms` for `origin` (this node) and returns the new absolute
    /// values to send to the other nodes, one per window.
    pub fn increment(
        &mut self,
        windows: &[WindowSpec],
        origin: Origin,
        now_ms: u64,
        by: u64,
    ) -> Vec<BucketDelta> {
        let mut deltas = Vec::with_capacity(windows.len());
        for (window, spec) in windows.iter().enumerate() {
            let bucket = spec.bucket_of(now_ms);
            let Some(slot) = self.slot(window, spec, bucket) else {
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
    pub fn merge(&mut self, windows: &[WindowSpec], delta: &BucketDelta, now_ms: u64) -> Merged {
        let window = usize::from(delta.window);
        let Some(spec) = windows.get(window) else {
            return Merged::UnknownWindow;
        };
        if !spec.accepts(delta.bucket, now_ms) {
            return Merged::OutOfWindow;
        }
        let Some(slot) = self.slot(window, spec, delta.bucket) else {
            return Merged::OutOfWindow;
        };
        match slot.counts.binary_search_by_key(&delta.origin, |(o, _)| *o) {
            Ok(i) if slot.counts[i].1 >= delta.value => Merged::Known,
            Ok(i) => {
                slot.counts[i].1 = delta.value;
                Merged::Applied
            }
            Err(i) => {
                slot.counts.insert(i, (delta.origin, delta.value));
                Merged::Applied
            }
        }
    }

    /// Events counted in window `window` as of `now_ms`, all origins together.
    pub fn total(&self, windows: &[WindowSpec], window: usize, now_ms: u64) -> u64 {
        self.live(windows, window, now_ms)
            .fold(0u64, |t, b| t.saturating_add(b.total()))
    }

    /// The window's total at `now_ms` from its buckets that ended `settle_ms` ago or earlier:
    /// counts every node has had time to receive, so nodes far apart compute the same figure
    /// from it (the shares of global limits).
    pub fn settled_total(
        &self,
        windows: &[WindowSpec],
        window: usize,
        now_ms: u64,
        settle_ms: u64,
    ) -> u64 {
        let Some(spec) = windows.get(window) else {
            return 0;
        };
        let cutoff = now_ms.saturating_sub(settle_ms);
        self.buckets[self.run(window)]
            .iter()
            .filter(|b| {
                spec.is_live(b.id(), now_ms)
                    && (b.id() + 1).saturating_mul(spec.bucket_ms()) <= cutoff
            })
            .fold(0u64, |t, b| t.saturating_add(b.total()))
    }

    /// When this counter last counted anything (the start of its newest bucket): what
    /// eviction under the key limit goes by.
    pub fn last_counted_ms(&self, windows: &[WindowSpec]) -> u64 {
        self.buckets
            .iter()
            .filter_map(|b| Some(b.id() * windows.get(b.window())?.bucket_ms()))
            .max()
            .unwrap_or(0)
    }

    /// Whether nothing is left to count at `now_ms` (every bucket has expired): the counter
    /// can be dropped.
    pub fn is_idle(&self, windows: &[WindowSpec], now_ms: u64) -> bool {
        (0..windows.len()).all(|window| self.live(windows, window, now_ms).next().is_none())
    }

    /// An order-independent hash of every (window, bucket, origin, value) live at `now_ms`,
    /// the oldest bucket of each window excepted; two replicas holding the same counts agree
    /// on it. `seed` mixes in the key.
    pub fn digest(&self, windows: &[WindowSpec], seed: u64, now_ms: u64) -> u64 {
        let mut sum = 0u64;
        for (window, spec) in windows.iter().enumerate() {
            for bucket in self.live(windows, window, now_ms) {
                if spec.is_oldest(bucket.id(), now_ms) {
                    continue;
                }
                for (origin, value) in &bucket.counts {
                    sum = sum
                        .wrapping_add(mix(seed
                            ^ mix(window as u64 ^ mix(bucket.id() ^ mix(origin.0 ^ mix(*value))))));
                }
            }
        }
        sum
    }

    /// Each origin's share of `total(window, now_ms)`, sorted by origin (for the console).
    pub fn contributions(
        &self,
        windows: &[WindowSpec],
        window: usize,
        now_ms: u64,
    ) -> Vec<(Origin, u64)> {
        let mut by_origin: Vec<(Origin, u64)> = Vec::new();
        for bucket in self.live(windows, window, now_ms) {
            for (origin, count) in &bucket.counts {
                match by_origin.binary_search_by_key(origin, |(o, _)| *o) {
                    Ok(i) => by_origin[i].1 = by_origin[i].1.saturating_add(*count),
                    Err(i) => by_origin.insert(i, (*origin, *count)),
                }
            }
        }
        by_origin
    }

    /// Every live value this counter holds, as deltas: what a full-state sync sends.
    pub fn snapshot(&self, windows: &[WindowSpec], now_ms: u64) -> Vec<BucketDelta> {
        let mut out = Vec::new();
        for window in 0..windows.len() {
            for bucket in self.live(windows, window, now_ms) {
                for (origin, value) in &bucket.counts {
                    out.push(BucketDelta {
                        window: window as u8,
                        bucket: bucket.id(),
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
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    const MINUTE: usize = 0;
    const HOUR: usize = 1;

    const W: &[WindowSpec] = &WindowSpec::DEFAULTS;

    fn counter() -> Counter {
        Counter::default()
    }

    #[test]
    fn window_boundaries_are_exact() {
        let a = Origin(1);
        let mut c = counter();
        c.increment(W, a, 0, 1); // bucket 0 of the minute window
        c.increment(W, a, 59_999, 2); // bucket 59
        assert_eq!(c.total(W, MINUTE, 59_999), 3);
        // At 60.000 s the window is buckets 1..=60: bucket 0 has left it.
        assert_eq!(c.total(W, MINUTE, 60_000), 2);
        assert_eq!(c.total(W, MINUTE, 119_999), 0);
        // The hour window still holds both.
        assert_eq!(c.total(W, HOUR, 119_999), 3);
        assert_eq!(c.total(W, HOUR, 3_600_000), 0);
    }

    #[test]
    fn old_and_future_deltas_are_ignored_and_reused_slots_reset() {
        let (a, b) = (Origin(1), Origin(2));
        let mut c = counter();
        c.increment(W, a, 0, 5);
        let later = 61_000; // bucket 0 has left the minute window by now
        assert_eq!(
            c.merge(
                W,
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
                W,
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
                W,
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
        c.increment(W, a, later, 1);
        assert_eq!(c.total(W, MINUTE, later), 1, "only bucket 61 is live");
    }

    /// A peer whose clock is a little ahead has started a bucket ours has not: its value is
    /// kept (dropped, it would be lost here) and counts at once, full-state transfers
    /// included (the increments have happened; only the clocks disagree on when).
    #[test]
    fn a_bucket_a_peer_slightly_ahead_started_counts_at_once() {
        let mut c = counter();
        let now = 60_990; // bucket 60 here; the peer, 20 ms ahead, is in bucket 61
        let ahead = BucketDelta {
            window: 0,
            bucket: 61,
            origin: Origin(2),
            value: 3,
        };
        assert_eq!(c.merge(W, &ahead, now), Merged::Applied);
        assert_eq!(
            c.total(W, MINUTE, now),
            3,
            "bucket 61 has not started here, yet it counts"
        );
        assert_eq!(c.contributions(W, MINUTE, now), vec![(Origin(2), 3)]);
        assert_eq!(c.snapshot(W, now), vec![ahead]);
        assert!(!c.is_idle(W, now));
        assert_ne!(
            c.digest(W, 7, now),
            counter().digest(W, 7, now),
            "a replica without it differs"
        );
        assert_eq!(c.total(W, MINUTE, 61_000), 3);
        let far = BucketDelta {
            bucket: 66,
            ..ahead
        };
        assert_eq!(
            c.merge(W, &far, now),
            Merged::OutOfWindow,
            "6 s ahead is not skew"
        );
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let a = Origin(1);
        let mut c = counter();
        c.increment(W, a, 0, u64::MAX - 1);
        c.increment(W, a, 0, 10);
        c.merge(
            W,
            &BucketDelta {
                window: 0,
                bucket: 0,
                origin: Origin(2),
                value: u64::MAX,
            },
            0,
        );
        assert_eq!(c.total(W, MINUTE, 0), u64::MAX);
    }

    #[test]
    fn a_window_wrapping_past_its_bucket_count_holds_at_most_that_many() {
        let a = Origin(1);
        let mut c = counter();
        for second in 0..150u64 {
            c.increment(W, a, second * 1000, 1);
            let minute = &c.buckets[c.run(MINUTE)];
            assert!(minute.len() <= 60, "{} buckets held", minute.len());
            assert_eq!(minute.last().unwrap().id(), second);
        }
        // Buckets 90..=149 are held; 0..=89 were pushed out as new ones came.
        assert_eq!(c.buckets[c.run(MINUTE)].first().unwrap().id(), 90);
        assert_eq!(c.total(W, MINUTE, 149_999), 60);
        assert_eq!(c.run(HOUR).len(), 3, "minutes 0, 1 and 2");
        assert_eq!(c.total(W, HOUR, 149_999), 150);
        assert_eq!(c.last_counted_ms(W), 149_000);
        // A bucket a whole window older than the newest held has expired here.
        let old = BucketDelta {
            window: 0,
            bucket: 89,
            origin: Origin(2),
            value: 1,
        };
        assert_eq!(c.merge(W, &old, 148_000), Merged::OutOfWindow);
        assert!(!c.is_idle(W, 149_999));
        assert!(c.is_idle(W, 150_000 + 3_600_000));
    }

    #[test]
    fn a_key_counted_by_many_origins_keeps_each_apart() {
        let mut c = counter();
        let delta = |window, bucket, origin, value| BucketDelta {
            window,
            bucket,
            origin: Origin(origin),
            value,
        };
        let now = 120_000;
        // Forty origins, newest first, in two buckets of each window.
        for origin in (0..40u64).rev() {
            for (window, bucket) in [(0, 118), (0, 119), (1, 0), (1, 1)] {
                let d = delta(window, bucket, origin, origin + 1);
                assert_eq!(c.merge(W, &d, now), Merged::Applied);
                assert_eq!(c.merge(W, &d, now), Merged::Known);
            }
        }
        assert_eq!(c.merge(W, &delta(0, 119, 7, 100), now), Merged::Applied);
        let sum: u64 = (1..=40).sum();
        assert_eq!(c.total(W, MINUTE, now), 2 * sum + 100 - 8);
        assert_eq!(c.total(W, HOUR, now), 2 * sum);
        let shares = c.contributions(W, MINUTE, now);
        assert_eq!(shares.len(), 40);
        assert_eq!(shares[7], (Origin(7), 8 + 100));
        assert!(shares.windows(2).all(|s| s[0].0 < s[1].0));
        // The snapshot lists window, bucket, then origin in order, and rebuilds the counter.
        let snapshot = c.snapshot(W, now);
        assert_eq!(snapshot.len(), 160);
        let order = |d: &BucketDelta| (d.window, d.bucket, d.origin);
        assert!(snapshot.windows(2).all(|p| order(&p[0]) < order(&p[1])));
        let mut copy = counter();
        for d in &snapshot {
            copy.merge(W, d, now);
        }
        assert_eq!(copy.digest(W, 9, now), c.digest(W, 9, now));
        assert_eq!(copy.snapshot(W, now), snapshot);
    }

    #[test]
    fn a_clock_past_the_bucket_bits_counts_nothing_and_breaks_nothing() {
        // 1 ms buckets: the bucket number is the time, past 2^56 at the far end of u64.
        let windows = [
            WindowSpec {
                length: Duration::from_secs(1),
                buckets: 1000,
            },
            WindowSpec::DEFAULTS[0],
        ];
        let now = u64::MAX - 1;
        let mut c = counter();
        let deltas = c.increment(&windows, Origin(1), now, 3);
        assert_eq!(deltas.len(), 1);
        assert_eq!(deltas[0].window, 1);
        let d = BucketDelta {
            window: 0,
            bucket: now,
            origin: Origin(2),
            value: 1,
        };
        assert_eq!(c.merge(&windows, &d, now), Merged::OutOfWindow);
        assert_eq!(c.total(&windows, 0, now), 0);
        assert_eq!(c.total(&windows, 1, now), 3);
    }

    /// What a key costs follows from these (`scripts/bench keys`); a dependency feature or a
    /// field dropped would silently grow every key.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_counter_and_its_buckets_stay_small() {
        assert_eq!(size_of::<Counter>(), 16);
        assert_eq!(size_of::<Bucket>(), 32);
    }

    #[test]
    fn origin_ids_are_stable() {
        assert_eq!(Origin::from_node_id("abc"), Origin::from_node_id("abc"));
        assert_ne!(Origin::from_node_id("abc"), Origin::from_node_id("abd"));
    }

    /// The counter as it was before its windows shared one allocation: per window, its
    /// buckets by number, each with its origins' counts.
    struct Model(Vec<BTreeMap<u64, BTreeMap<Origin, u64>>>);

    impl Model {
        fn new(windows: &[WindowSpec]) -> Self {
            Self(vec![BTreeMap::new(); windows.len()])
        }

        fn slot(
            &mut self,
            spec: &WindowSpec,
            window: usize,
            bucket: u64,
        ) -> Option<&mut BTreeMap<Origin, u64>> {
            let ring = &mut self.0[window];
            let span = u64::from(spec.buckets.max(1));
            if ring.keys().next_back().copied().unwrap_or(0) >= bucket.saturating_add(span) {
                return None;
            }
            if !ring.contains_key(&bucket) {
                ring.retain(|b, _| b.saturating_add(span) > bucket);
            }
            Some(ring.entry(bucket).or_default())
        }

        fn increment(
            &mut self,
            windows: &[WindowSpec],
            origin: Origin,
            now_ms: u64,
            by: u64,
        ) -> Vec<BucketDelta> {
            let mut deltas = Vec::new();
            for (window, spec) in windows.iter().enumerate() {
                let bucket = spec.bucket_of(now_ms);
                if let Some(slot) = self.slot(spec, window, bucket) {
                    let value = slot.entry(origin).or_default();
                    *value = value.saturating_add(by);
                    deltas.push(BucketDelta {
                        window: window as u8,
                        bucket,
                        origin,
                        value: *value,
                    });
                }
            }
            deltas
        }

        fn merge(&mut self, windows: &[WindowSpec], d: &BucketDelta, now_ms: u64) -> Merged {
            let window = usize::from(d.window);
            let Some(spec) = windows.get(window) else {
                return Merged::UnknownWindow;
            };
            if !spec.accepts(d.bucket, now_ms) {
                return Merged::OutOfWindow;
            }
            let Some(slot) = self.slot(spec, window, d.bucket) else {
                return Merged::OutOfWindow;
            };
            match slot.get_mut(&d.origin) {
                Some(v) if *v >= d.value => Merged::Known,
                Some(v) => {
                    *v = d.value;
                    Merged::Applied
                }
                None => {
                    slot.insert(d.origin, d.value);
                    Merged::Applied
                }
            }
        }

        fn snapshot(&self, windows: &[WindowSpec], now_ms: u64) -> Vec<BucketDelta> {
            let mut out = Vec::new();
            for (window, (spec, ring)) in windows.iter().zip(&self.0).enumerate() {
                for (bucket, counts) in ring.range(..) {
                    if spec.accepts(*bucket, now_ms) {
                        for (origin, value) in counts {
                            out.push(BucketDelta {
                                window: window as u8,
                                bucket: *bucket,
                                origin: *origin,
                                value: *value,
                            });
                        }
                    }
                }
            }
            out
        }

        fn last_counted_ms(&self, windows: &[WindowSpec]) -> u64 {
            windows
                .iter()
                .zip(&self.0)
                .filter_map(|(spec, ring)| Some(ring.keys().next_back()? * spec.bucket_ms()))
                .max()
                .unwrap_or(0)
        }
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
                deltas.extend(sources[origin as usize].increment(W, Origin(origin), at, by));
            }
            // Deliver them to a replica shuffled, with duplicates.
            let mut delivered: Vec<BucketDelta> = Vec::new();
            for _ in 0..=duplicates {
                delivered.extend(deltas.iter().copied());
            }
            crate::shuffle(&mut delivered, shuffle_seed);
            let mut replica = counter();
            for d in &delivered {
                replica.merge(W, d, now);
            }
            for (window, spec) in WindowSpec::DEFAULTS.iter().enumerate() {
                let truth: u64 = events
                    .iter()
                    .filter(|e| spec.is_live(spec.bucket_of(e.1), now))
                    .map(|e| e.2)
                    .sum();
                prop_assert_eq!(replica.total(W, window, now), truth);
                let by_origin: u64 = replica.contributions(W, window, now).iter().map(|c| c.1).sum();
                prop_assert_eq!(by_origin, truth);
            }
        }

        /// The cells behave exactly as separate per-window rings did, with time going back
        /// and forth, windows wrapping and deltas for windows that do not exist.
        #[test]
        fn cells_behave_as_per_window_rings(
            events in prop::collection::vec(
                (any::<bool>(), 0u64..4, 0u64..400_000, 0u64..5, 0u8..3, 0u64..30_000),
                1..120,
            ),
        ) {
            // Small windows wrap many times over the events' times.
            let windows = [
                WindowSpec { length: Duration::from_secs(10), buckets: 5 },
                WindowSpec { length: Duration::from_secs(120), buckets: 4 },
            ];
            let mut c = counter();
            let mut model = Model::new(&windows);
            for (merge, origin, at, value, window, wait) in events {
                let origin = Origin(origin);
                let now = at + wait;
                if merge {
                    let spec = windows[usize::from(window).min(1)];
                    let d = BucketDelta { window, bucket: spec.bucket_of(at), origin, value };
                    prop_assert_eq!(c.merge(&windows, &d, now), model.merge(&windows, &d, now));
                } else {
                    prop_assert_eq!(
                        c.increment(&windows, origin, now, value),
                        model.increment(&windows, origin, now, value)
                    );
                }
                for read in [now, at, now + 5_000] {
                    prop_assert_eq!(c.snapshot(&windows, read), model.snapshot(&windows, read));
                    let live = model.snapshot(&windows, read);
                    prop_assert_eq!(c.is_idle(&windows, read), live.is_empty());
                    for w in 0..windows.len() {
                        let truth: u64 = live.iter().filter(|d| usize::from(d.window) == w).map(|d| d.value).sum();
                        prop_assert_eq!(c.total(&windows, w, read), truth);
                    }
                }
                prop_assert_eq!(c.last_counted_ms(&windows), model.last_counted_ms(&windows));
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
                for d in source.increment(W, Origin(origin), at, by) {
                    peer.merge(W, &d, at);
                }
            }
            let mut copy = counter();
            for d in peer.snapshot(W, now).iter().rev() {
                copy.merge(W, d, now);
            }
            for d in peer.snapshot(W, now) {
                prop_assert_ne!(copy.merge(W, &d, now), Merged::Applied);
            }
            for window in 0..2 {
                prop_assert_eq!(copy.total(W, window, now), peer.total(W, window, now));
                prop_assert_eq!(copy.total(W, window, now), source.total(W, window, now));
            }
        }
    }
}
