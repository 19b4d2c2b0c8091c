//! This node's copy of the shared state, and every rule for merging a peer's: pure data and
//! locks, no I/O (the `node` module moves the messages), so it is tested without sockets.
//!
//! Locks: 64 key shards (the request path takes one) and one `sync` lock for everything else.
//! `sync` may be held while a shard is taken, never the other way round.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

// Tokio's clock: std's in production, paused in the simulator.
use tokio::time::Instant;

use crate::counter::mix;
use crate::key::{CounterKey, SHARDS, cache_shard, fnv1a};
use crate::wire::{Batch, CounterUpdate, Digest, ShardState, SyncReply};
use crate::{
    Accepted, BucketDelta, Cache, CacheLimits, CacheMerge, CacheUpdate, Counter, Event,
    EventChannel, EventLimits, LamportClock, Merged, Origin, Stamp, WindowSpec,
};

/// A bucket count no real origin reaches (2^48 requests in one bucket); anything above is a
/// corrupt or hostile delta and is refused rather than allowed to saturate a total.
pub(crate) const MAX_BUCKET_VALUE: u64 = 1 << 48;

/// Longest node id a batch may carry.
const MAX_NODE_ID_BYTES: usize = 256;

/// Process runs tracked per member: a restart every 15 s within the retention (the longest
/// window plus 5 minutes) stays under it.
const MAX_ORIGINS_PER_NODE: usize = 256;

/// Process runs tracked of nodes that are not (or no longer) members, all together: a whole
/// fleet replaced within the retention stays under it.
const MAX_ORIGINS_UNKNOWN: usize = 4096;

/// Counters compared when one must be evicted under the key limit.
const EVICTION_SAMPLE: usize = 16;

/// Delivered events kept for inspection (the API lists them).
const DELIVERED_KEPT: usize = 1000;

#[derive(Debug, Default)]
struct Shard {
    counters: HashMap<CounterKey, Counter, KeyHasher>,
    /// When this shard last dropped its idle counters to make room (this node's clock).
    swept_ms: u64,
    /// This node's increments not yet flushed, coalesced: one entry per (key, window, bucket).
    pending: HashMap<CounterKey, Vec<BucketDelta>, KeyHasher>,
}

/// The shards' maps hash keys with foldhash, seeded per process: a request looks its key up
/// three times, and SipHash (the standard maps' hasher) cost about 300 instructions a look.
/// Keys' parts are user names, addresses and configured resources, not text a caller can
/// shape freely, so the seeded hash's weaker resistance to flooding is enough.
type KeyHasher = foldhash::fast::RandomState;

/// How far a real watermark can be ahead of the batch its origin sends now: batches overtaken
/// in flight by a sync reply, at one flush every few milliseconds, are far fewer.
const PLAUSIBLY_AHEAD: u64 = 10_000;

/// Batches of one origin remembered past a gap in its numbers (a real gap is repaired within
/// a few flushes: at most a few hundred batches arrive meanwhile).
const MAX_ABOVE_GAP: usize = 4096;

/// Which of an origin's batches this node has applied.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// Every batch up to here.
    contiguous: u64,
    /// Applied batches beyond a gap.
    above: BTreeSet<u64>,
    /// This node's clock when the origin's last batch arrived.
    last_ms: u64,
}

impl Seen {
    fn has(&self, seq: u64) -> bool {
        seq <= self.contiguous || self.above.contains(&seq)
    }

    fn add(&mut self, seq: u64) {
        self.above.insert(seq);
        self.close_gaps();
        // A peer may send any numbers: past the cap the highest are forgotten, so they would
        // apply again (merges are idempotent) rather than grow this set without bound.
        while self.above.len() > MAX_ABOVE_GAP {
            self.above.pop_last();
        }
    }

    fn raise_to(&mut self, seq: u64) {
        if seq > self.contiguous {
            self.contiguous = seq;
            self.above.retain(|s| *s > seq);
            self.close_gaps();
        }
    }

    /// Moves the watermark over the batches applied right after it. Peers send the numbers
    /// (batches, sync replies), so one may be `u64::MAX`: the watermark stops there.
    fn close_gaps(&mut self) {
        while let Some(next) = self.contiguous.checked_add(1)
            && self.above.remove(&next)
        {
            self.contiguous = next;
        }
    }
}

struct SyncState {
    node: String,
    seq: u64,
    seen: HashMap<Origin, Seen>,
    /// Origins retired (silent past every window), with when: their late batches and the
    /// peers' digests naming them are ignored until they are forgotten in turn.
    retired: HashMap<Origin, u64>,
    /// Each batch with when this node got it.
    log: BTreeMap<(Origin, u64), (Arc<Batch>, Instant)>,
    order: VecDeque<(Origin, u64)>,
    capacity: usize,
    nodes: HashMap<Origin, String>,
    /// Tracked runs per node id ("" where the node is unknown): rebuilt from `seen` and
    /// `nodes` after anything but a new run changed them (`None`), kept current as new runs
    /// arrive, so checking a new run against the caps is a lookup rather than a walk over
    /// every run (a node joining a thousand-node cluster meets a thousand new runs).
    runs: Option<HashMap<String, usize>>,
    cache: Cache,
    events: EventChannel,
    outbox_cache: Vec<CacheUpdate>,
    outbox_events: Vec<Event>,
    delivered: VecDeque<Event>,
}

impl SyncState {
    fn remember(&mut self, batch: Arc<Batch>) {
        let at = (batch.origin, batch.seq);
        if self.log.insert(at, (batch, Instant::now())).is_none() {
            self.order.push_back(at);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.log.remove(&old);
            }
        }
    }

    fn deliver(&mut self, event: Event) -> Option<Event> {
        match self.events.accept(event.clone()) {
            Accepted::Deliver => {
                if self.delivered.len() == DELIVERED_KEPT {
                    self.delivered.pop_front();
                }
                self.delivered.push_back(event.clone());
                Some(event)
            }
            _ => None,
        }
    }
}

/// What applying a peer's batch did.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub duplicate: bool,
    /// The origin's earlier batches are missing here: ask the sender for them.
    pub gap: bool,
    /// New events, to hand to local subscribers.
    pub events: Vec<Event>,
    /// Parts refused, with the reason (logged, counted).
    pub rejected: Vec<String>,
    /// The batch, when it was new here and applied (what a relay passes on).
    pub fresh: Option<Arc<Batch>>,
}

/// What a digest from a peer calls for.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct DigestDiff {
    /// The peer misses batches this node has: send them.
    pub they_lack: bool,
    /// This node misses batches the peer has: ask for them.
    pub we_lack: bool,
    /// Both saw the same batches, yet these shards differ: exchange them whole.
    pub shards: Vec<u16>,
}

pub(crate) struct Replica {
    origin: Origin,
    windows: Vec<WindowSpec>,
    clock: LamportClock,
    shards: Box<[Mutex<Shard>]>,
    sync: Mutex<SyncState>,
    /// Signalled when something new waits to be flushed.
    dirty: tokio::sync::Notify,
    /// Current members' ids (this node's included).
    members: Mutex<HashSet<String>>,
    /// Counters held per shard before one is evicted to make room (`state.max_keys` / 64).
    max_keys_per_shard: AtomicUsize,
    /// Counters evicted to stay under the limit.
    evicted: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a state lock leaves plain data behind, never a broken invariant
    // worth stopping the node for (every update is a monotone merge).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Replica {
    pub(crate) fn new(
        origin: Origin,
        windows: Vec<WindowSpec>,
        replay_capacity: usize,
        cache: CacheLimits,
        events: EventLimits,
    ) -> Self {
        Self {
            origin,
            clock: LamportClock::new(origin),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            sync: Mutex::new(SyncState {
                node: String::new(),
                seq: 0,
                seen: HashMap::new(),
                retired: HashMap::new(),
                log: BTreeMap::new(),
                order: VecDeque::new(),
                capacity: replay_capacity.max(1),
                nodes: HashMap::new(),
                runs: None,
                cache: Cache::new(cache),
                events: EventChannel::new(events),
                outbox_cache: Vec::new(),
                outbox_events: Vec::new(),
                delivered: VecDeque::new(),
            }),
            windows,
            dirty: tokio::sync::Notify::new(),
            members: Mutex::default(),
            max_keys_per_shard: AtomicUsize::new(usize::MAX),
            evicted: AtomicU64::new(0),
        }
    }

    /// Resolves once something waits to be flushed (at once if something came meanwhile).
    pub(crate) async fn dirtied(&self) {
        self.dirty.notified().await;
    }

    pub(crate) fn origin(&self) -> Origin {
        self.origin
    }

    pub(crate) fn windows(&self) -> &[WindowSpec] {
        &self.windows
    }

    pub(crate) fn set_node(&self, node: &str) {
        let mut sync = lock(&self.sync);
        sync.node = node.to_string();
        sync.nodes.insert(self.origin, node.to_string());
        sync.runs = None;
    }

    fn shard(&self, key: &CounterKey) -> MutexGuard<'_, Shard> {
        lock(&self.shards[key.shard()])
    }

    /// Counts `cost` for `key` if the window's total stays within `limit` (and `count`: a
    /// request someone else may count is only judged); the total after (or as it stands, when
    /// refused). One shard lock: the decision is atomic on this node.
    pub(crate) fn decide(
        &self,
        key: &CounterKey,
        window: usize,
        limit: u64,
        cost: u64,
        now_ms: u64,
        count: bool,
    ) -> (bool, u64) {
        let mut shard = self.shard(key);
        let current = shard
            .counters
            .get(key)
            .map_or(0, |c| c.total(&self.windows, window, now_ms));
        if current.saturating_add(cost) > limit {
            return (false, current);
        }
        if count {
            self.count_locked(&mut shard, key, cost, now_ms);
        }
        (true, current.saturating_add(cost))
    }

    pub(crate) fn increment(&self, key: &CounterKey, by: u64, now_ms: u64) {
        let mut shard = self.shard(key);
        self.count_locked(&mut shard, key, by, now_ms);
    }

    /// At most `max_keys` counters are held (spread over the shards); past it a new key
    /// first drops the idle ones, then evicts the least recently counted of a sample.
    pub(crate) fn set_max_keys(&self, max_keys: usize) {
        self.max_keys_per_shard
            .store((max_keys / SHARDS).max(1), Ordering::Relaxed);
    }

    /// Counters evicted so far to stay under the key limit.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Makes room for one new counter in `shard`. Idle counters go first (at most one full
    /// pass a second per shard); if the shard is still full, the least recently counted of
    /// [`EVICTION_SAMPLE`] counters not waiting to be flushed is evicted: its counts leave
    /// this node (the others still hold theirs).
    fn make_room(&self, shard: &mut Shard, now_ms: u64) {
        let max = self.max_keys_per_shard.load(Ordering::Relaxed);
        if shard.counters.len() < max {
            return;
        }
        if now_ms.saturating_sub(shard.swept_ms) >= 1000 {
            shard.swept_ms = now_ms;
            let Shard {
                counters, pending, ..
            } = shard;
            counters.retain(|k, c| pending.contains_key(k) || !c.is_idle(&self.windows, now_ms));
        }
        while shard.counters.len() >= max {
            let victim = shard
                .counters
                .iter()
                .filter(|(k, _)| !shard.pending.contains_key(*k))
                .take(EVICTION_SAMPLE)
                .min_by_key(|(_, c)| c.last_counted_ms(&self.windows))
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { return };
            shard.counters.remove(&victim);
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keys are cloned only when first seen: this runs on every admitted request.
    fn count_locked(&self, shard: &mut Shard, key: &CounterKey, by: u64, now_ms: u64) {
        // Looked up once when the key is there (the common case), not checked and then taken.
        let deltas = match shard.counters.get_mut(key) {
            Some(counter) => counter.increment(&self.windows, self.origin, now_ms, by),
            None => {
                self.make_room(shard, now_ms);
                let mut counter = Counter::default();
                let deltas = counter.increment(&self.windows, self.origin, now_ms, by);
                shard.counters.insert(key.clone(), counter);
                deltas
            }
        };
        let pending = match shard.pending.get_mut(key) {
            Some(pending) => pending,
            None => {
                self.dirty.notify_one();
                shard.pending.entry(key.clone()).or_default()
            }
        };
        for d in deltas {
            match pending
                .iter_mut()
                .find(|p| p.window == d.window && p.bucket == d.bucket)
            {
                Some(p) => p.value = d.value,
                None => pending.push(d),
            }
        }
    }

    /// The key's total in each window.
    pub(crate) fn totals(&self, key: &CounterKey, now_ms: u64) -> Vec<u64> {
        self.per_window(key, |c, w| c.total(&self.windows, w, now_ms))
    }

    /// Every window's total from buckets that ended `settle_ms` before `now_ms` or earlier.
    pub(crate) fn settled_totals(&self, key: &CounterKey, now_ms: u64, settle_ms: u64) -> Vec<u64> {
        self.per_window(key, |c, w| {
            c.settled_total(&self.windows, w, now_ms, settle_ms)
        })
    }

    /// `figure` of the key's counter in every window (0 for a key not held).
    fn per_window(&self, key: &CounterKey, figure: impl Fn(&Counter, usize) -> u64) -> Vec<u64> {
        let shard = self.shard(key);
        let counter = shard.counters.get(key);
        (0..self.windows.len())
            .map(|w| counter.map_or(0, |c| figure(c, w)))
            .collect()
    }

    /// Per-node shares of the key's total in `window` (node ids where known).
    pub(crate) fn contributions(
        &self,
        key: &CounterKey,
        window: usize,
        now_ms: u64,
    ) -> Vec<(String, u64)> {
        let by_origin = self
            .shard(key)
            .counters
            .get(key)
            .map(|c| c.contributions(&self.windows, window, now_ms))
            .unwrap_or_default();
        let sync = lock(&self.sync);
        by_origin
            .into_iter()
            .map(|(o, n)| {
                let node = sync
                    .nodes
                    .get(&o)
                    .cloned()
                    .unwrap_or_else(|| format!("origin-{:016x}", o.0));
                (node, n)
            })
            .collect()
    }

    /// Every key with live counts, with its totals (for the console and the API).
    pub(crate) fn keys(&self, now_ms: u64, limit: usize) -> Vec<(CounterKey, Vec<u64>)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for (key, c) in &shard.counters {
                if out.len() == limit {
                    return out;
                }
                let totals = (0..self.windows.len())
                    .map(|w| c.total(&self.windows, w, now_ms))
                    .collect();
                out.push((key.clone(), totals));
            }
        }
        out
    }

    pub(crate) fn key_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).counters.len()).sum()
    }

    /// Drops counters with nothing left in any window.
    pub(crate) fn sweep(&self, now_ms: u64) -> usize {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let before = shard.counters.len();
            let Shard {
                counters, pending, ..
            } = &mut *shard;
            counters.retain(|k, c| pending.contains_key(k) || !c.is_idle(&self.windows, now_ms));
            dropped += before - shard.counters.len();
        }
        dropped
    }

    /// Forgets the origins of departed process runs: silent for longer than `after` (past
    /// every window, so their counts have expired everywhere) and either of a node that is no
    /// longer a member or of a node heard from since under a newer origin (it restarted). A
    /// fleet that restarts keeps digests the size of its live runs, not of its history; a run
    /// that is merely idle keeps its place. Returns how many were retired.
    pub(crate) fn retire_origins(
        &self,
        now_ms: u64,
        after: Duration,
        members: &HashSet<String>,
    ) -> usize {
        let after = after.as_millis() as u64;
        let mut sync = lock(&self.sync);
        let SyncState {
            seen,
            retired,
            nodes,
            log,
            order,
            runs,
            ..
        } = &mut *sync;
        // Retired ones are forgotten after as long again: by then no peer names them.
        retired.retain(|_, at| now_ms.saturating_sub(*at) < after);
        let mut newest: HashMap<&str, u64> = HashMap::new();
        for (origin, node) in nodes.iter() {
            let last = seen.get(origin).map_or(0, |s| s.last_ms);
            let entry = newest.entry(node.as_str()).or_default();
            *entry = (*entry).max(last);
        }
        let departed: Vec<Origin> = seen
            .iter()
            .filter(|(origin, s)| {
                let node = nodes.get(origin).map(String::as_str);
                let replaced =
                    node.is_some_and(|n| newest.get(n).is_some_and(|&last| last > s.last_ms));
                let gone = node.is_none_or(|n| !members.contains(n));
                now_ms.saturating_sub(s.last_ms) > after && (gone || replaced)
            })
            .map(|(o, _)| *o)
            .collect();
        for origin in &departed {
            seen.remove(origin);
            nodes.remove(origin);
            retired.insert(*origin, now_ms);
        }
        if !departed.is_empty() {
            *runs = None;
            log.retain(|(o, _), _| !retired.contains_key(o));
            order.retain(|(o, _)| !retired.contains_key(o));
        }
        departed.len()
    }

    /// Why a new origin claimed by `node` is one too many, if it is: a member may have at most
    /// [`MAX_ORIGINS_PER_NODE`] runs tracked, and nodes that are not members together
    /// [`MAX_ORIGINS_UNKNOWN`], so a peer inventing origins cannot grow digests without bound.
    fn origin_over_limit(&self, sync: &mut SyncState, node: &str) -> Option<String> {
        let members = lock(&self.members);
        let SyncState {
            seen, nodes, runs, ..
        } = sync;
        // An origin whose node is not known counts as a non-member's.
        let runs = runs.get_or_insert_with(|| count_runs(seen, nodes));
        if members.contains(node) {
            let runs = runs.get(node).copied().unwrap_or(0);
            (runs >= MAX_ORIGINS_PER_NODE).then(|| {
                format!(
                    "node {node:?} already has {runs} process runs tracked (at most \
                     {MAX_ORIGINS_PER_NODE}); batch of a new one dropped"
                )
            })
        } else {
            let runs: usize = runs
                .iter()
                .filter(|(n, _)| !members.contains(*n))
                .map(|(_, c)| c)
                .sum();
            (runs >= MAX_ORIGINS_UNKNOWN).then(|| {
                format!(
                    "{runs} process runs of nodes that are not members are tracked (at most \
                     {MAX_ORIGINS_UNKNOWN}); batch of a new one from {node:?} dropped"
                )
            })
        }
    }

    /// The current members' ids, for the per-node origin limits.
    pub(crate) fn set_members(&self, members: HashSet<String>) {
        *lock(&self.members) = members;
    }

    /// The origin's missing batch numbers, as (last contiguous, first applied past the gap),
    /// if some arrived past one still missing.
    pub(crate) fn gap(&self, origin: Origin) -> Option<(u64, u64)> {
        let sync = lock(&self.sync);
        let seen = sync.seen.get(&origin)?;
        Some((seen.contiguous, *seen.above.first()?))
    }

    /// Where a peer's digest (`theirs`) is ahead of this node for an origin none of whose
    /// batches arrived here for `quiet`: batches that are not on their way but lost, as
    /// (origin, last contiguous here, first past the peer's). Retired origins are left out.
    pub(crate) fn stuck_behind(
        &self,
        theirs: &[(Origin, u64)],
        now_ms: u64,
        quiet: Duration,
    ) -> Vec<(Origin, u64, u64)> {
        let quiet = quiet.as_millis() as u64;
        let sync = lock(&self.sync);
        theirs
            .iter()
            .filter(|(o, _)| *o != self.origin && !sync.retired.contains_key(o))
            .filter_map(|&(origin, seq)| {
                let seen = sync.seen.get(&origin);
                let have = seen.map_or(0, |s| s.contiguous);
                let silent = seen.is_none_or(|s| now_ms.saturating_sub(s.last_ms) >= quiet);
                (seq > have && silent).then(|| (origin, have, seq.saturating_add(1)))
            })
            .collect()
    }

    /// `origin`'s batches numbered after `after` and before `before`, at most `max`, that the
    /// replay log still holds (this node's own, or others' it applied).
    pub(crate) fn logged_batches(
        &self,
        origin: Origin,
        after: u64,
        before: u64,
        max: usize,
    ) -> Vec<Arc<Batch>> {
        if before <= after.saturating_add(1) {
            return Vec::new();
        }
        lock(&self.sync)
            .log
            .range((origin, after + 1)..(origin, before))
            .take(max)
            .map(|(_, (b, _))| b.clone())
            .collect()
    }

    /// This node's last batch number and, per origin it tracks: every batch up to, how many
    /// applied past a gap, when the last arrived (this node's clock).
    #[cfg(any(test, feature = "testsuite"))]
    pub(crate) fn seen_view(&self) -> (u64, Vec<(Origin, u64, usize, u64)>) {
        let sync = lock(&self.sync);
        let mut seen: Vec<_> = sync
            .seen
            .iter()
            .map(|(o, s)| (*o, s.contiguous, s.above.len(), s.last_ms))
            .collect();
        seen.sort();
        (sync.seq, seen)
    }

    /// Origins this node tracks (digest entries).
    pub(crate) fn origins(&self) -> usize {
        lock(&self.sync).seen.len()
    }

    pub(crate) fn cache_get(&self, key: &str, now_ms: u64) -> Option<Vec<u8>> {
        lock(&self.sync).cache.get(key, now_ms).map(<[u8]>::to_vec)
    }

    /// A local cache write (`None` deletes); shipped with the next batch.
    pub(crate) fn cache_put(
        &self,
        key: String,
        value: Option<Vec<u8>>,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<Stamp, String> {
        let stamp = self.clock.tick();
        let update = CacheUpdate {
            key,
            value,
            stamp,
            expires_at_ms,
        };
        let mut sync = lock(&self.sync);
        match sync.cache.merge(update.clone(), now_ms) {
            CacheMerge::Applied => {
                sync.outbox_cache.push(update);
                self.dirty.notify_one();
                Ok(stamp)
            }
            CacheMerge::TooLarge => Err("cache key or value over the configured limit".into()),
            CacheMerge::Expired => Err("the entry would already be expired".into()),
            CacheMerge::Older => Err("a newer write for this key is already held".into()),
        }
    }

    /// A local event: delivered here now, shipped with the next batch.
    pub(crate) fn publish(&self, topic: String, payload: Vec<u8>) -> Result<Event, String> {
        let event = Event {
            stamp: self.clock.tick(),
            topic,
            payload,
        };
        let mut sync = lock(&self.sync);
        match sync.events.accept(event.clone()) {
            Accepted::Deliver => {
                if sync.delivered.len() == DELIVERED_KEPT {
                    sync.delivered.pop_front();
                }
                sync.delivered.push_back(event.clone());
                sync.outbox_events.push(event.clone());
                self.dirty.notify_one();
                Ok(event)
            }
            Accepted::Rejected(why) => Err(why),
            Accepted::Duplicate => Err("duplicate event stamp".into()),
        }
    }

    pub(crate) fn delivered(&self) -> Vec<Event> {
        lock(&self.sync).delivered.iter().cloned().collect()
    }

    /// Everything counted or written here since the last flush, as numbered batches (also
    /// kept for replay) whose counter updates stay under `budget` encoded bytes each, so each
    /// fits one datagram; empty when there is nothing.
    pub(crate) fn take_batches(&self, budget: usize) -> Vec<Arc<Batch>> {
        let mut chunks: Vec<Vec<CounterUpdate>> = vec![Vec::new()];
        let mut size = 0;
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            for (key, deltas) in shard.pending.drain() {
                let update = CounterUpdate { key, deltas };
                let len = postcard::experimental::serialized_size(&update).unwrap_or(budget);
                if size + len > budget && size > 0 {
                    chunks.push(Vec::new());
                    size = 0;
                }
                size += len;
                chunks.last_mut().expect("one chunk").push(update);
            }
        }
        let mut sync = lock(&self.sync);
        let mut cache = std::mem::take(&mut sync.outbox_cache);
        let mut events = std::mem::take(&mut sync.outbox_events);
        let mut out = Vec::new();
        for counters in chunks {
            if counters.is_empty() && cache.is_empty() && events.is_empty() {
                continue;
            }
            sync.seq += 1;
            let batch = Arc::new(Batch {
                origin: self.origin,
                node: sync.node.clone(),
                seq: sync.seq,
                stamp: self.clock.tick(),
                counters,
                cache: std::mem::take(&mut cache),
                events: std::mem::take(&mut events),
            });
            let seq = sync.seq;
            if !sync.seen.contains_key(&self.origin) {
                sync.runs = None;
            }
            sync.seen.entry(self.origin).or_default().add(seq);
            sync.remember(batch.clone());
            out.push(batch);
        }
        out
    }

    /// Applies a peer's batch: exactly once, whatever order and however often it arrives.
    /// A batch its origin's own node sends is that origin's newest, give or take the few still
    /// in flight; a watermark far past it was never real (a peer's sync reply may carry any
    /// number, and would make this node ignore the origin until anti-entropy repaired it). The
    /// watermark drops to nothing, so the batch applies and its gap asks the origin for the
    /// rest; merges are idempotent, so batches already applied change nothing.
    pub(crate) fn distrust_watermark_past(&self, origin: Origin, seq: u64) -> Option<String> {
        let mut sync = lock(&self.sync);
        let seen = sync.seen.get_mut(&origin)?;
        if seen.contiguous <= seq.saturating_add(PLAUSIBLY_AHEAD) {
            return None;
        }
        let was = seen.contiguous;
        *seen = Seen::default();
        Some(format!(
            "watermark {was} of origin {} is past its own node's batch {seq}; reset",
            origin.0
        ))
    }

    pub(crate) fn apply_batch(&self, batch: Batch, now_ms: u64) -> Applied {
        let mut out = Applied::default();
        if batch.origin == self.origin {
            out.duplicate = true;
            return out;
        }
        let mut sync = lock(&self.sync);
        if sync.retired.contains_key(&batch.origin) {
            out.duplicate = true;
            return out;
        }
        let known = sync.seen.get(&batch.origin);
        if batch.seq == 0 || known.is_some_and(|s| s.has(batch.seq)) {
            out.duplicate = batch.seq != 0;
            if batch.seq == 0 {
                out.rejected.push("batch sequence number 0".into());
            }
            return out;
        }
        out.gap = batch.seq > known.map_or(0, |s| s.contiguous) + 1;
        let new_run = known.is_none();
        if new_run && let Some(why) = self.origin_over_limit(&mut sync, &batch.node) {
            out.rejected.push(why);
            return out;
        }
        if !self.clock.observe(batch.stamp) {
            out.rejected.push(format!(
                "batch stamp {} is implausibly far ahead of this node's clock {}; batch dropped",
                batch.stamp.time,
                self.clock.now()
            ));
            return out;
        }
        if batch.node.len() > MAX_NODE_ID_BYTES {
            out.rejected.push("batch node id over 256 bytes".into());
            return out;
        }
        // Every check before anything is applied: a batch is taken whole or not at all.
        for update in &batch.counters {
            if let Err(why) = self.check_update(update, Some(batch.origin)) {
                out.rejected.push(why);
                return out;
            }
        }
        let seen = sync.seen.entry(batch.origin).or_default();
        seen.add(batch.seq);
        seen.last_ms = now_ms;
        let before = if batch.node.is_empty() {
            sync.nodes.get(&batch.origin).cloned()
        } else {
            sync.nodes.insert(batch.origin, batch.node.clone())
        };
        let node = sync.nodes.get(&batch.origin).cloned().unwrap_or_default();
        match (&mut sync.runs, new_run) {
            (Some(runs), true) => *runs.entry(node).or_default() += 1,
            // A run now claimed by another node than before: recount.
            (runs, false) if before.is_some_and(|b| b != node) => *runs = None,
            _ => {}
        }
        self.merge_counters(&batch.counters, now_ms);
        for update in &batch.cache {
            if sync.cache.merge(update.clone(), now_ms) == CacheMerge::TooLarge {
                out.rejected.push(format!(
                    "cache update for a {}-byte key over the size limits",
                    update.key.len()
                ));
            }
        }
        for event in &batch.events {
            if let Some(e) = sync.deliver(event.clone()) {
                out.events.push(e);
            } else if let Accepted::Rejected(why) = sync.events.accept(event.clone()) {
                out.rejected.push(why);
            }
        }
        let batch = Arc::new(batch);
        sync.remember(batch.clone());
        out.fresh = Some(batch);
        out
    }

    /// `origin`: the only origin a batch may raise (a node counts for itself only).
    fn check_update(&self, update: &CounterUpdate, origin: Option<Origin>) -> Result<(), String> {
        update.key.check()?;
        for d in &update.deltas {
            if usize::from(d.window) >= self.windows.len() {
                return Err(format!(
                    "counter delta for window {} but this cluster has {} windows",
                    d.window,
                    self.windows.len()
                ));
            }
            if d.value > MAX_BUCKET_VALUE {
                return Err(format!(
                    "counter delta value {} would overflow (limit {MAX_BUCKET_VALUE})",
                    d.value
                ));
            }
            if origin.is_some_and(|o| o != d.origin) {
                return Err("batch raises another origin's count".into());
            }
        }
        Ok(())
    }

    fn merge_counters(&self, updates: &[CounterUpdate], now_ms: u64) {
        for update in updates {
            let mut shard = self.shard(&update.key);
            if !shard.counters.contains_key(&update.key) {
                self.make_room(&mut shard, now_ms);
            }
            let counter = shard.counters.entry(update.key.clone()).or_default();
            for d in &update.deltas {
                let _: Merged = counter.merge(&self.windows, d, now_ms);
            }
        }
    }

    /// Per origin, the last batch this node has together with all before it.
    pub(crate) fn have(&self) -> Vec<(Origin, u64)> {
        let sync = lock(&self.sync);
        let mut have: Vec<(Origin, u64)> = sync
            .seen
            .iter()
            .filter(|(_, s)| s.contiguous > 0)
            .map(|(o, s)| (*o, s.contiguous))
            .collect();
        have.sort();
        have
    }

    /// Answers "send me what I lack after `have`": the buffered batches held for at least
    /// `min_age`, or the full state when the buffer no longer holds them all. A watermark
    /// beyond what exists is clamped.
    pub(crate) fn serve_sync(
        &self,
        have: &[(Origin, u64)],
        now_ms: u64,
        min_age: Duration,
    ) -> (SyncReply, Vec<String>) {
        let mut notes = Vec::new();
        let theirs: HashMap<Origin, u64> = have.iter().copied().collect();
        let sync = lock(&self.sync);
        if let Some(claimed) = theirs.get(&self.origin)
            && *claimed > sync.seq
        {
            notes.push(format!(
                "sync request claims batch {claimed} of this node, which has only sent {}; clamped",
                sync.seq
            ));
        }
        // Per origin, only the log's own entries are walked (never every sequence number
        // ever sent); a gap is a first entry past `from + 1` or fewer entries than numbers.
        let mut wanted: Vec<(Origin, u64, u64)> = Vec::new();
        let mut gap = false;
        for (origin, seen) in &sync.seen {
            let from = theirs.get(origin).copied().unwrap_or(0);
            if from >= seen.contiguous {
                continue;
            }
            let first = from.saturating_add(1);
            let held = sync
                .log
                .range((*origin, first)..=(*origin, seen.contiguous))
                .count() as u64;
            if held < seen.contiguous - from {
                gap = true;
            }
            wanted.push((*origin, first, seen.contiguous));
        }
        // With a full state in the reply, every held batch goes too (young ones included), so
        // the watermark the reply reports matches what it carries.
        let min_age = if gap { Duration::ZERO } else { min_age };
        let mut batches = Vec::new();
        for (origin, first, last) in wanted {
            for ((_, _), (b, at)) in sync.log.range((origin, first)..=(origin, last)) {
                if at.elapsed() < min_age {
                    break;
                }
                batches.push(Batch::clone(b));
            }
        }
        let mut reply_have: Vec<(Origin, u64)> =
            sync.seen.iter().map(|(o, s)| (*o, s.contiguous)).collect();
        reply_have.sort();
        drop(sync);
        batches.sort_by_key(|b| (b.origin, b.seq));
        let full = gap.then(|| self.shard_state(&all_shards(), now_ms, false));
        (
            SyncReply {
                batches,
                full,
                have: reply_have,
            },
            notes,
        )
    }

    /// Applies a sync reply; returns what applying its batches did, merged.
    pub(crate) fn apply_sync_reply(&self, reply: SyncReply, now_ms: u64) -> Applied {
        let mut out = Applied::default();
        for batch in reply.batches {
            let applied = self.apply_batch(batch, now_ms);
            out.events.extend(applied.events);
            out.rejected.extend(applied.rejected);
        }
        if let Some(full) = reply.full {
            out.rejected.extend(self.apply_shards(full, now_ms));
            // The full state covers every batch the peer had applied.
            let mut sync = lock(&self.sync);
            for (origin, seq) in reply.have {
                if origin != self.origin && !sync.retired.contains_key(&origin) {
                    if !sync.seen.contains_key(&origin) {
                        sync.runs = None;
                    }
                    let seen = sync.seen.entry(origin).or_default();
                    seen.raise_to(seq);
                    seen.last_ms = seen.last_ms.max(now_ms);
                }
            }
        }
        out
    }

    /// Order-independent hashes of each shard's counters and cache entries at `now_ms`.
    pub(crate) fn shard_hashes(&self, now_ms: u64) -> Vec<u64> {
        let mut hashes = vec![0u64; SHARDS];
        for (i, shard) in self.shards.iter().enumerate() {
            let shard = lock(shard);
            for (key, c) in &shard.counters {
                hashes[i] = hashes[i].wrapping_add(c.digest(&self.windows, key.hash64(), now_ms));
            }
        }
        let sync = lock(&self.sync);
        for e in sync.cache.iter_live(now_ms) {
            let h = mix(fnv1a(&[e.key.as_bytes()])
                ^ mix(e.stamp.time ^ mix(e.stamp.origin.0 ^ mix(e.expires_at_ms))));
            let shard = cache_shard(&e.key);
            hashes[shard] = hashes[shard].wrapping_add(h);
        }
        hashes
    }

    pub(crate) fn digest(&self, now_ms: u64) -> Digest {
        Digest {
            now_ms,
            have: self.have(),
            shards: self.shard_hashes(now_ms),
        }
    }

    pub(crate) fn compare(&self, digest: &Digest) -> DigestDiff {
        let mine: HashMap<Origin, u64> = self.have().into_iter().collect();
        let theirs: HashMap<Origin, u64> = digest.have.iter().copied().collect();
        let they_lack = mine
            .iter()
            .any(|(o, s)| theirs.get(o).copied().unwrap_or(0) < *s);
        let retired: HashSet<Origin> = lock(&self.sync).retired.keys().copied().collect();
        let we_lack = theirs.iter().any(|(o, s)| {
            *o != self.origin && !retired.contains(o) && mine.get(o).copied().unwrap_or(0) < *s
        });
        let mut diff = DigestDiff {
            they_lack,
            we_lack,
            shards: Vec::new(),
        };
        if !they_lack && !we_lack && digest.shards.len() == SHARDS {
            diff.shards = self
                .shard_hashes(digest.now_ms)
                .iter()
                .zip(&digest.shards)
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .map(|(i, _)| i as u16)
                .collect();
        }
        diff
    }

    /// The whole state of `shards` (counters of every origin, cache entries and tombstones).
    pub(crate) fn shard_state(&self, shards: &[u16], now_ms: u64, pull: bool) -> ShardState {
        let wanted: BTreeSet<usize> = shards.iter().map(|s| usize::from(*s)).collect();
        let mut counters = Vec::new();
        for &i in &wanted {
            let Some(shard) = self.shards.get(i) else {
                continue;
            };
            let shard = lock(shard);
            for (key, c) in &shard.counters {
                let deltas = c.snapshot(&self.windows, now_ms);
                if !deltas.is_empty() {
                    counters.push(CounterUpdate {
                        key: key.clone(),
                        deltas,
                    });
                }
            }
        }
        let sync = lock(&self.sync);
        let cache = sync
            .cache
            .iter_live(now_ms)
            .filter(|e| wanted.contains(&cache_shard(&e.key)))
            .cloned()
            .collect();
        let nodes = sync.nodes.iter().map(|(o, n)| (*o, n.clone())).collect();
        ShardState {
            now_ms,
            shards: shards.to_vec(),
            counters,
            cache,
            nodes,
            pull,
        }
    }

    /// Merges a peer's shard state; the reasons for anything refused.
    pub(crate) fn apply_shards(&self, state: ShardState, now_ms: u64) -> Vec<String> {
        let mut rejected = Vec::new();
        let valid: Vec<CounterUpdate> = state
            .counters
            .into_iter()
            .filter(|u| match self.check_update(u, None) {
                Ok(()) => true,
                Err(why) => {
                    rejected.push(why);
                    false
                }
            })
            .collect();
        self.merge_counters(&valid, now_ms);
        let mut sync = lock(&self.sync);
        for update in state.cache {
            if sync.cache.merge(update, now_ms) == CacheMerge::TooLarge {
                rejected.push("cache entry over the size limits in shard state".into());
            }
        }
        for (origin, node) in state.nodes {
            if origin != self.origin
                && node.len() <= MAX_NODE_ID_BYTES
                && !sync.nodes.contains_key(&origin)
            {
                sync.nodes.insert(origin, node);
                if sync.seen.contains_key(&origin) {
                    sync.runs = None;
                }
            }
        }
        rejected
    }

    pub(crate) fn replay_log_len(&self) -> usize {
        lock(&self.sync).log.len()
    }

    pub(crate) fn cache_len(&self) -> usize {
        lock(&self.sync).cache.len()
    }
}

/// Tracked runs per node id ("" where the node is unknown).
fn count_runs(
    seen: &HashMap<Origin, Seen>,
    nodes: &HashMap<Origin, String>,
) -> HashMap<String, usize> {
    let mut runs: HashMap<String, usize> = HashMap::new();
    for origin in seen.keys() {
        let node = nodes.get(origin).map_or("", String::as_str);
        *runs.entry(node.to_string()).or_default() += 1;
    }
    runs
}

pub(crate) fn all_shards() -> Vec<u16> {
    (0..SHARDS as u16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn replica(origin: u64, capacity: usize) -> Replica {
        let r = Replica::new(
            Origin(origin),
            WindowSpec::DEFAULTS.to_vec(),
            capacity,
            CacheLimits::default(),
            EventLimits::default(),
        );
        r.set_node(&format!("node-{origin}"));
        r
    }

    fn key(i: usize) -> CounterKey {
        CounterKey::new(format!("user-{i}"), "bucket", "read").unwrap()
    }

    #[test]
    fn batches_apply_once_and_gaps_are_reported() {
        let a = replica(1, 100);
        let b = replica(2, 100);
        a.increment(&key(0), 2, NOW);
        let first = a.take_batches(usize::MAX).pop().unwrap();
        a.increment(&key(0), 3, NOW);
        let second = a.take_batches(usize::MAX).pop().unwrap();
        assert!(
            a.take_batches(usize::MAX).is_empty(),
            "nothing new, nothing sent"
        );
        let applied = b.apply_batch(Batch::clone(&second), NOW);
        assert!(applied.gap && !applied.duplicate);
        assert_eq!(
            b.totals(&key(0), NOW),
            vec![5, 5],
            "absolute values: 5 already"
        );
        assert!(!b.apply_batch(Batch::clone(&first), NOW).gap);
        assert!(b.apply_batch(Batch::clone(&first), NOW).duplicate);
        assert_eq!(b.totals(&key(0), NOW), vec![5, 5]);
        assert_eq!(b.have(), vec![(Origin(1), 2)]);
        assert_eq!(
            b.contributions(&key(0), 0, NOW),
            vec![("node-1".to_string(), 5)]
        );
    }

    /// The per-node run counts kept as runs arrive match a recount, whatever renames them.
    #[test]
    fn run_counts_kept_on_the_way_match_a_recount() {
        let b = replica(2, 100);
        b.set_members(["node-2", "n1", "n2"].map(String::from).into());
        let batch = |origin: u64, node: &str| Batch::empty(origin, node, 1);
        let check = |b: &Replica| {
            let mut sync = lock(&b.sync);
            b.origin_over_limit(&mut sync, "n1");
            let kept = sync.runs.clone().expect("counted");
            assert_eq!(kept, count_runs(&sync.seen, &sync.nodes));
        };
        for o in 10..20 {
            b.apply_batch(batch(o, if o % 2 == 0 { "n1" } else { "n2" }), NOW);
            check(&b);
        }
        // A later batch of a run claims another node; one arrives with no node at all.
        b.apply_batch(
            Batch {
                seq: 2,
                ..batch(10, "n2")
            },
            NOW,
        );
        b.apply_batch(batch(30, ""), NOW);
        check(&b);
        assert_eq!(lock(&b.sync).runs.as_ref().unwrap()["n2"], 6);
    }

    #[test]
    fn numbers_past_a_gap_are_remembered_up_to_a_bound() {
        let a = replica(1, 100);
        let b = replica(2, 100);
        a.increment(&key(0), 1, NOW);
        let first = a.take_batches(usize::MAX).pop().unwrap();
        b.apply_batch(Batch::clone(&first), NOW);
        for seq in 0..3 * MAX_ABOVE_GAP as u64 {
            let forged = Batch {
                seq: u64::MAX - seq,
                ..Batch::clone(&first)
            };
            assert!(b.apply_batch(forged, NOW).gap);
        }
        let above = lock(&b.sync).seen[&Origin(1)].above.len();
        assert_eq!(
            above, MAX_ABOVE_GAP,
            "past a gap, at most {MAX_ABOVE_GAP} held"
        );
        assert_eq!(
            b.gap(Origin(1)),
            Some((1, u64::MAX - 3 * MAX_ABOVE_GAP as u64 + 1))
        );
        // The forgotten ones apply again (idempotently): the count is unchanged.
        assert_eq!(b.totals(&key(0), NOW), vec![1, 1]);
    }

    #[test]
    fn hostile_batches_are_refused_whole() {
        let b = replica(2, 100);
        let forged = |deltas: Vec<BucketDelta>| Batch {
            origin: Origin(1),
            node: "node-1".into(),
            seq: 1,
            stamp: Stamp {
                time: 1,
                origin: Origin(1),
            },
            counters: vec![CounterUpdate {
                key: key(0),
                deltas,
            }],
            cache: Vec::new(),
            events: Vec::new(),
        };
        let delta = |window, origin, value| BucketDelta {
            window,
            bucket: NOW / 1000,
            origin: Origin(origin),
            value,
        };
        for (deltas, why) in [
            (vec![delta(0, 1, u64::MAX)], "overflow"),
            (vec![delta(9, 1, 1)], "window 9"),
            (vec![delta(0, 1, 1), delta(0, 3, 7)], "another origin"),
        ] {
            let applied = b.apply_batch(forged(deltas), NOW);
            assert!(applied.rejected[0].contains(why), "{:?}", applied.rejected);
            assert_eq!(b.totals(&key(0), NOW), vec![0, 0], "nothing half-applied");
        }
        let mut far = forged(vec![delta(0, 1, 1)]);
        far.stamp.time = u64::MAX;
        assert!(b.apply_batch(far, NOW).rejected[0].contains("far ahead"));
    }

    #[test]
    fn sync_replays_the_buffer_or_falls_back_to_full_state() {
        let a = replica(1, 3);
        for i in 0..5 {
            a.increment(&key(i), 1, NOW);
            a.take_batches(usize::MAX);
        }
        let fresh = replica(2, 100);
        // Batches 4 and 5 are buffered; 1-3 are gone, so the reply carries the full state.
        let (reply, notes) = a.serve_sync(&[(Origin(1), 1)], NOW, Duration::ZERO);
        assert!(notes.is_empty());
        assert_eq!(reply.batches.len(), 3, "seq 3, 4, 5 buffered");
        assert!(reply.full.is_some());
        fresh.apply_sync_reply(reply, NOW);
        for i in 0..5 {
            assert_eq!(fresh.totals(&key(i), NOW)[0], 1, "key {i}");
        }
        assert_eq!(fresh.have(), vec![(Origin(1), 5)]);
        // Only what is missed: from 4 on, two batches and no full state.
        let (reply, _) = a.serve_sync(&[(Origin(1), 3)], NOW, Duration::ZERO);
        assert_eq!(reply.batches.len(), 2);
        assert!(reply.full.is_none());
        // Batches younger than the in-flight allowance wait for the next round.
        let (reply, _) = a.serve_sync(&[(Origin(1), 3)], NOW, Duration::from_secs(60));
        assert!(reply.batches.is_empty() && reply.full.is_none());
        // A watermark in the future is clamped and said.
        let (reply, notes) = a.serve_sync(&[(Origin(1), u64::MAX)], NOW, Duration::ZERO);
        assert!(reply.batches.is_empty());
        assert!(notes[0].contains("clamped"), "{notes:?}");
    }

    #[test]
    fn digests_find_exactly_the_differing_shards() {
        let a = replica(1, 100);
        let b = replica(2, 100);
        for i in 0..50 {
            a.increment(&key(i), 1, NOW);
        }
        let batch = a.take_batches(usize::MAX).pop().unwrap();
        b.apply_batch(Batch::clone(&batch), NOW);
        let d = a.digest(NOW);
        assert_eq!(b.compare(&d), DigestDiff::default());
        // Same batches seen, but b lost a key's counts (as if state were damaged).
        let shard = key(7).shard();
        lock(&b.shards[shard]).counters.remove(&key(7));
        let diff = b.compare(&d);
        assert_eq!(diff.shards, vec![shard as u16]);
        b.apply_shards(a.shard_state(&diff.shards, NOW, false), NOW);
        assert_eq!(b.compare(&d), DigestDiff::default());
        assert_eq!(b.totals(&key(7), NOW)[0], 1);
        // A peer that is behind is told so.
        let c = replica(3, 100);
        assert!(b.compare(&c.digest(NOW)).they_lack);
        assert!(c.compare(&b.digest(NOW)).we_lack);
    }

    #[test]
    fn large_flushes_split_into_datagram_sized_batches() {
        let a = replica(1, 100);
        let b = replica(2, 100);
        for i in 0..200 {
            a.increment(&key(i), 1, NOW);
        }
        let batches = a.take_batches(1000);
        assert!(batches.len() > 1);
        for batch in &batches {
            let bytes = crate::wire::encode("node-1", crate::wire::Msg::Batch(Batch::clone(batch)));
            assert!(bytes.len() < 1200, "{} bytes", bytes.len());
            b.apply_batch(Batch::clone(batch), NOW);
        }
        for i in 0..200 {
            assert_eq!(b.totals(&key(i), NOW)[0], 1);
        }
        assert_eq!(b.have(), vec![(Origin(1), batches.len() as u64)]);
    }

    /// Found by fuzzing (fuzz/fuzz_targets/gossip_state_message.rs): a sync reply whose
    /// watermark was `u64::MAX` overflowed `Seen::raise_to`, a panic in debug builds.
    /// A full-state sync reply holding nothing but a watermark for origin 1: what a peer (or a
    /// forger) can claim without sending any counts.
    fn watermark_only(seq: u64) -> SyncReply {
        SyncReply {
            batches: Vec::new(),
            full: Some(ShardState {
                now_ms: NOW,
                shards: Vec::new(),
                counters: Vec::new(),
                cache: Vec::new(),
                nodes: Vec::new(),
                pull: false,
            }),
            have: vec![(Origin(1), seq)],
        }
    }

    #[test]
    fn sequence_numbers_at_the_top_of_the_range_do_not_overflow() {
        let b = replica(2, 100);
        assert!(
            b.apply_sync_reply(watermark_only(u64::MAX), NOW)
                .rejected
                .is_empty()
        );
        assert_eq!(b.have(), vec![(Origin(1), u64::MAX)]);
        let mut seen = Seen::default();
        seen.raise_to(u64::MAX - 1);
        seen.add(u64::MAX);
        assert_eq!(seen.contiguous, u64::MAX);
        assert!(seen.has(u64::MAX) && seen.above.is_empty());
    }

    #[test]
    fn a_watermark_far_past_the_origins_own_batch_is_dropped() {
        let origin = replica(1, 100);
        let b = replica(2, 100);
        b.apply_sync_reply(watermark_only(u64::MAX), NOW);
        origin.increment(&key(0), 3, NOW);
        let batch = Batch::clone(&origin.take_batches(usize::MAX).pop().unwrap());
        assert!(
            b.apply_batch(batch.clone(), NOW).duplicate,
            "ignored while trusted"
        );
        assert_eq!(
            b.distrust_watermark_past(Origin(2), 1),
            None,
            "unknown origin"
        );
        let note = b.distrust_watermark_past(Origin(1), batch.seq).unwrap();
        assert!(note.contains(&u64::MAX.to_string()), "{note}");
        assert!(!b.apply_batch(batch.clone(), NOW).duplicate);
        assert_eq!(b.totals(&key(0), NOW)[0], 3);
        assert_eq!(
            b.distrust_watermark_past(Origin(1), batch.seq),
            None,
            "now plausible"
        );
        // A watermark some batches ahead (a sync reply overtook them in flight) stands.
        b.apply_sync_reply(watermark_only(batch.seq + 500), NOW);
        assert_eq!(b.distrust_watermark_past(Origin(1), batch.seq + 1), None);
        assert_eq!(b.have(), vec![(Origin(1), batch.seq + 500)]);
    }

    #[test]
    fn decisions_are_exact_on_one_node() {
        let a = replica(1, 100);
        let passed = (0..20)
            .filter(|_| a.decide(&key(0), 0, 5, 1, NOW, true).0)
            .count();
        assert_eq!(passed, 5);
        assert_eq!(a.totals(&key(0), NOW)[0], 5);
    }

    #[test]
    fn events_and_cache_travel_in_batches_once() {
        let a = replica(1, 100);
        let b = replica(2, 100);
        a.publish("revoke".into(), b"alice".to_vec()).unwrap();
        a.cache_put("job".into(), Some(b"42".to_vec()), NOW + 60_000, NOW)
            .unwrap();
        let batch = a.take_batches(usize::MAX).pop().unwrap();
        let applied = b.apply_batch(Batch::clone(&batch), NOW);
        assert_eq!(applied.events.len(), 1);
        assert!(b.apply_batch(Batch::clone(&batch), NOW).events.is_empty());
        assert_eq!(b.delivered().len(), 1);
        assert_eq!(b.cache_get("job", NOW).as_deref(), Some(&b"42"[..]));
        let big = vec![0u8; EventLimits::default().max_payload_bytes + 1];
        assert!(a.publish("t".into(), big).unwrap_err().contains("exceeds"));
    }

    #[test]
    fn the_key_limit_evicts_idle_then_least_recently_counted_keys() {
        let r = replica(1, 16);
        r.set_max_keys(640); // 10 a shard
        let key = |i: usize| CounterKey::new(format!("u{i}"), "b", "read").unwrap();
        let now = 10_000_000;
        // Keys counted an hour and more ago are idle: they go first, whole.
        for i in 0..300 {
            r.increment(&key(i), 1, now - 4_000_000);
        }
        r.take_batches(usize::MAX);
        for i in 300..5_300 {
            r.increment(&key(i), 1, now + i as u64);
            r.take_batches(usize::MAX);
        }
        assert!(r.key_count() <= 640, "{} keys held", r.key_count());
        assert!(r.evicted() >= 5_300 - 640 - 300, "{} evicted", r.evicted());
        assert_eq!(
            r.totals(&key(5_299), now + 5_299)[0],
            1,
            "the newest key kept"
        );
        // Peers' keys are held to the same limit.
        let peer = replica(2, 16);
        for i in 0..2_000 {
            peer.increment(&key(100_000 + i), 1, now);
        }
        for b in peer.take_batches(usize::MAX) {
            r.apply_batch(Arc::unwrap_or_clone(b), now);
        }
        assert!(
            r.key_count() <= 640,
            "{} keys held after a peer's",
            r.key_count()
        );
    }
}
