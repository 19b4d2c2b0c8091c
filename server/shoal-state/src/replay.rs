//! The replay buffer: the last N updates in Lamport order, so a node that joins or comes back
//! gets only what it missed, or learns that it missed too much and needs a full state sync.

use std::collections::VecDeque;

use crate::Stamp;

/// What a node asking "everything after my watermark" gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay<T> {
    /// Every retained update newer than the watermark, oldest first.
    Updates(Vec<(Stamp, T)>),
    /// The watermark is older than the oldest retained update: some were dropped, so only a
    /// full state sync is exact.
    Gap,
    /// The watermark is ahead of anything this node has seen (the asker knows more, or is
    /// confused): nothing to send, and the caller should say so rather than trust it.
    Ahead,
}

/// What recording an update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Added,
    /// The same stamp is already held.
    Duplicate,
    /// Older than updates the buffer already dropped.
    TooOld,
}

/// A bounded buffer of the most recent updates.
#[derive(Debug, Clone)]
pub struct ReplayBuffer<T> {
    capacity: usize,
    entries: VecDeque<(Stamp, T)>,
    /// Newest stamp ever pushed (kept after the entry itself is evicted).
    newest: Option<Stamp>,
    /// Newest stamp evicted: a watermark before it means a gap.
    evicted: Option<Stamp>,
}

impl<T: Clone> ReplayBuffer<T> {
    /// `capacity` is at least 1 (the brief's default is 10,000).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: VecDeque::new(),
            newest: None,
            evicted: None,
        }
    }

    /// Records an update. Updates normally arrive in Lamport order; a late one is inserted
    /// at its place so replays stay ordered.
    pub fn push(&mut self, stamp: Stamp, update: T) -> Pushed {
        let at = self.entries.partition_point(|(s, _)| *s < stamp);
        if self.entries.get(at).is_some_and(|(s, _)| *s == stamp) {
            return Pushed::Duplicate;
        }
        if self.evicted.is_some_and(|e| stamp <= e) {
            // Older than what was already dropped: it may have been seen and dropped too.
            return Pushed::TooOld;
        }
        self.entries.insert(at, (stamp, update));
        if self.newest.is_none_or(|n| stamp > n) {
            self.newest = Some(stamp);
        }
        while self.entries.len() > self.capacity {
            if let Some((dropped, _)) = self.entries.pop_front() {
                self.evicted = Some(dropped);
            }
        }
        Pushed::Added
    }

    /// Everything after `watermark` (`None`: the asker has seen nothing).
    pub fn since(&self, watermark: Option<Stamp>) -> Replay<T> {
        match (watermark, self.newest) {
            (Some(w), Some(newest)) if w > newest => return Replay::Ahead,
            (Some(w), None) if w.time > 0 => return Replay::Ahead,
            _ => {}
        }
        match (watermark, self.evicted) {
            (None, Some(_)) => return Replay::Gap,
            (Some(w), Some(e)) if w < e => return Replay::Gap,
            _ => {}
        }
        let from = watermark.map_or(0, |w| self.entries.partition_point(|(s, _)| *s <= w));
        Replay::Updates(self.entries.range(from..).cloned().collect())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn newest(&self) -> Option<Stamp> {
        self.newest
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::Origin;

    fn stamp(time: u64) -> Stamp {
        Stamp {
            time,
            origin: Origin(1),
        }
    }

    #[test]
    fn a_node_that_missed_a_few_gets_only_those() {
        let mut buffer = ReplayBuffer::new(10);
        for t in 1..=5 {
            buffer.push(stamp(t), t);
        }
        assert_eq!(
            buffer.since(Some(stamp(3))),
            Replay::Updates(vec![(stamp(4), 4), (stamp(5), 5)])
        );
        assert_eq!(buffer.since(Some(stamp(5))), Replay::Updates(vec![]));
        assert_eq!(
            buffer.since(None),
            Replay::Updates((1..=5).map(|t| (stamp(t), t)).collect())
        );
    }

    #[test]
    fn a_gap_larger_than_the_buffer_asks_for_a_full_sync() {
        let mut buffer = ReplayBuffer::new(3);
        for t in 1..=5 {
            buffer.push(stamp(t), t);
        }
        assert_eq!(buffer.len(), 3);
        assert_eq!(buffer.since(Some(stamp(1))), Replay::Gap);
        assert_eq!(buffer.since(None), Replay::Gap);
        assert_eq!(
            buffer.since(Some(stamp(2))),
            Replay::Updates(vec![(stamp(3), 3), (stamp(4), 4), (stamp(5), 5)])
        );
    }

    #[test]
    fn a_watermark_in_the_future_is_reported_not_trusted() {
        let mut buffer = ReplayBuffer::new(3);
        assert_eq!(buffer.since(Some(stamp(7))), Replay::Ahead);
        buffer.push(stamp(1), 1);
        assert_eq!(buffer.since(Some(stamp(9))), Replay::Ahead);
    }

    proptest! {
        /// Whatever order and duplication updates arrive in, a replay is ordered, has no
        /// duplicates, and holds exactly the retained updates after the watermark.
        #[test]
        fn replays_are_ordered_complete_and_deduplicated(
            times in prop::collection::vec(1u64..200, 1..100),
            capacity in 1usize..50,
            watermark in 0u64..200,
        ) {
            let mut buffer = ReplayBuffer::new(capacity);
            for &t in &times {
                buffer.push(stamp(t), t);
            }
            match buffer.since(Some(stamp(watermark))) {
                Replay::Updates(updates) => {
                    prop_assert!(updates.windows(2).all(|w| w[0].0 < w[1].0));
                    prop_assert!(updates.iter().all(|(s, _)| s.time > watermark));
                    prop_assert!(buffer.len() <= capacity);
                }
                Replay::Gap | Replay::Ahead => {}
            }
        }

        /// In order and within capacity, a replay is exactly the updates after the watermark.
        #[test]
        fn in_order_replays_are_exact(count in 1u64..100, watermark in 0u64..100) {
            let mut buffer = ReplayBuffer::new(100);
            for t in 1..=count {
                buffer.push(stamp(t), t);
            }
            let expected: Vec<(Stamp, u64)> =
                (watermark + 1..=count).map(|t| (stamp(t), t)).collect();
            if watermark > count {
                prop_assert_eq!(buffer.since(Some(stamp(watermark))), Replay::Ahead);
            } else {
                prop_assert_eq!(buffer.since(Some(stamp(watermark))), Replay::Updates(expected));
            }
        }
    }
}
