//! The shared cache: small values with a TTL (job ids, tokens), last writer wins by Lamport
//! stamp, bounded in size.
//!
//! Every write, delete included, is an update stamped with (Lamport time, node). A replica keeps
//! the update with the highest stamp, so updates can arrive in any order or twice and every
//! replica ends with the same entry. A delete leaves a tombstone until the entry would have
//! expired, so a late, older write cannot bring a deleted key back. Expiry uses the absolute
//! time the writer set; nodes' clocks should be NTP-close.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::Stamp;

/// A cache write or delete, as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheUpdate {
    pub key: String,
    /// `None` deletes.
    pub value: Option<Vec<u8>>,
    pub stamp: Stamp,
    /// Unix milliseconds after which the entry (or tombstone) is gone.
    pub expires_at_ms: u64,
}

/// What applying an update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMerge {
    Applied,
    /// A newer (or the same) update for this key is already held.
    Older,
    /// Already expired when it arrived.
    Expired,
    /// Key or value over the configured limits.
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    pub max_entries: usize,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_key_bytes: 256,
            max_value_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Cache {
    limits: CacheLimits,
    entries: HashMap<String, CacheUpdate>,
}

impl Cache {
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
        }
    }

    /// The live value of `key` at `now_ms`.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<&[u8]> {
        self.entries
            .get(key)
            .filter(|e| e.expires_at_ms > now_ms)
            .and_then(|e| e.value.as_deref())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies a local or remote update under last-writer-wins.
    pub fn merge(&mut self, update: CacheUpdate, now_ms: u64) -> CacheMerge {
        let too_large = update.key.len() > self.limits.max_key_bytes
            || update
                .value
                .as_ref()
                .is_some_and(|v| v.len() > self.limits.max_value_bytes);
        if too_large {
            return CacheMerge::TooLarge;
        }
        if update.expires_at_ms <= now_ms {
            return CacheMerge::Expired;
        }
        if let Some(held) = self.entries.get(&update.key)
            && held.stamp >= update.stamp
            && held.expires_at_ms > now_ms
        {
            return CacheMerge::Older;
        }
        self.entries.insert(update.key.clone(), update);
        if self.entries.len() > self.limits.max_entries {
            self.evict(now_ms);
        }
        CacheMerge::Applied
    }

    /// Drops expired entries, then, while still over the limit, those expiring soonest.
    fn evict(&mut self, now_ms: u64) {
        self.entries.retain(|_, e| e.expires_at_ms > now_ms);
        let excess = self.entries.len().saturating_sub(self.limits.max_entries);
        if excess == 0 {
            return;
        }
        let mut by_expiry: Vec<(u64, Stamp, String)> = self
            .entries
            .iter()
            .map(|(k, e)| (e.expires_at_ms, e.stamp, k.clone()))
            .collect();
        by_expiry.sort();
        for (_, _, key) in by_expiry.into_iter().take(excess) {
            self.entries.remove(&key);
        }
    }

    /// Live entries and tombstones, borrowed (digests and partial syncs filter them).
    pub fn iter_live(&self, now_ms: u64) -> impl Iterator<Item = &CacheUpdate> {
        self.entries
            .values()
            .filter(move |e| e.expires_at_ms > now_ms)
    }

    /// Every live entry and tombstone, for a full state sync.
    pub fn snapshot(&self, now_ms: u64) -> Vec<CacheUpdate> {
        self.entries
            .values()
            .filter(|e| e.expires_at_ms > now_ms)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::Origin;

    fn update(key: &str, value: Option<&str>, time: u64, origin: u64, expires: u64) -> CacheUpdate {
        CacheUpdate {
            key: key.into(),
            value: value.map(|v| v.as_bytes().to_vec()),
            stamp: Stamp {
                time,
                origin: Origin(origin),
            },
            expires_at_ms: expires,
        }
    }

    #[test]
    fn last_writer_wins_and_tombstones_block_older_writes() {
        let mut cache = Cache::new(CacheLimits::default());
        assert_eq!(
            cache.merge(update("job", Some("a"), 2, 1, 1000), 0),
            CacheMerge::Applied
        );
        assert_eq!(
            cache.merge(update("job", Some("old"), 1, 2, 1000), 0),
            CacheMerge::Older
        );
        assert_eq!(cache.get("job", 0), Some(&b"a"[..]));
        assert_eq!(
            cache.merge(update("job", None, 3, 2, 1000), 0),
            CacheMerge::Applied
        );
        assert_eq!(cache.get("job", 0), None);
        // A write older than the delete arrives late: it stays deleted.
        assert_eq!(
            cache.merge(update("job", Some("zombie"), 2, 9, 1000), 0),
            CacheMerge::Older
        );
        assert_eq!(cache.get("job", 0), None);
    }

    #[test]
    fn ttl_and_limits() {
        let mut cache = Cache::new(CacheLimits {
            max_entries: 2,
            max_key_bytes: 8,
            max_value_bytes: 4,
        });
        assert_eq!(
            cache.merge(update("k", Some("v"), 1, 1, 100), 200),
            CacheMerge::Expired
        );
        assert_eq!(
            cache.merge(update("k", Some("12345"), 1, 1, 900), 0),
            CacheMerge::TooLarge
        );
        assert_eq!(
            cache.merge(update("a-long-key", Some("v"), 1, 1, 900), 0),
            CacheMerge::TooLarge
        );
        cache.merge(update("a", Some("1"), 1, 1, 500), 0);
        cache.merge(update("b", Some("2"), 2, 1, 300), 0);
        assert_eq!(cache.get("b", 299), Some(&b"2"[..]));
        assert_eq!(cache.get("b", 300), None, "expired at its deadline");
        // A third entry evicts the one expiring soonest.
        cache.merge(update("c", Some("3"), 3, 1, 900), 0);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("b", 0), None);
        assert_eq!(cache.get("a", 0), Some(&b"1"[..]));
    }

    proptest! {
        /// Replicas fed the same updates in any order, with duplicates, hold the same values.
        #[test]
        fn replicas_converge(
            updates in prop::collection::vec(
                (0u8..4, prop::option::of(0u8..100), 1u64..50, 0u64..3),
                1..60,
            ),
            seed in any::<u64>(),
        ) {
            // Stamps are unique, as a node's Lamport clock makes them.
            let updates: Vec<CacheUpdate> = updates
                .into_iter()
                .enumerate()
                .map(|(i, (k, v, t, o))| update(
                    &format!("k{k}"),
                    v.map(|v| v.to_string()).as_deref(),
                    t * 1000 + i as u64,
                    o,
                    10_000,
                ))
                .collect();
            let mut shuffled: Vec<CacheUpdate> = updates.iter().chain(updates.iter()).cloned().collect();
            crate::shuffle(&mut shuffled, seed);
            let mut a = Cache::new(CacheLimits::default());
            let mut b = Cache::new(CacheLimits::default());
            for u in updates {
                a.merge(u, 0);
            }
            for u in shuffled {
                b.merge(u, 0);
            }
            for k in 0..4 {
                let key = format!("k{k}");
                prop_assert_eq!(a.get(&key, 0), b.get(&key, 0));
            }
        }
    }
}
