//! Relayed dissemination for large clusters: a batch reaches every node exactly once, over at
//! most log2(N) hops, and each node only ever sends to its log2(N) fingers.
//!
//! Nodes sit on a ring ordered by a hash of their id. A node passing a batch on is responsible
//! for the nodes strictly between itself and a *limit* (a ring position); it hands the batch
//! to its fingers (the nodes 1, 2, 4, 8… places after it) that fall inside that range, giving
//! each the part of the range up to the next finger. The origin's range is the whole ring.
//! This is the broadcast of structured overlays (El-Ansary et al., "Efficient Broadcast in
//! Structured P2P Networks", 2003) over the full membership view every node already has.
//!
//! Why this and not an epidemic tree (Plumtree) or fanout gossip: our batches are small (a few
//! dozen bytes), so a per-message "I have" announcement to lazy peers costs nearly as much as
//! the batch, and fanout gossip delivers each batch several times; here each batch is sent
//! N-1 times cluster-wide, as with direct sends, but a node's messages are bounded by its
//! fingers, so a flush bundles everything bound for one finger into one message. The range
//! travels with the batch, so nodes whose membership views differ (a join not yet heard of
//! everywhere, a death not yet detected) still never cover a node twice: what they miss shows
//! up as a gap in an origin's numbers, asked of the node that sent the next batch, and
//! anti-entropy repairs whatever remains.

use std::net::SocketAddr;

use crate::counter::{Origin, mix};

/// A node's place on the relay ring: the same on every node, from its id alone.
pub(crate) fn position(node_id: &str) -> u64 {
    mix(Origin::from_node_id(node_id).0)
}

/// This node's view of the ring: every reachable member, itself included.
#[derive(Debug, Clone)]
pub(crate) struct RelayRing {
    /// (position, address), sorted by position.
    nodes: Vec<(u64, SocketAddr)>,
    /// This node's index in `nodes`.
    me: usize,
}

impl RelayRing {
    /// `others` are the members this node can reach (its own entry is added here).
    pub(crate) fn new(me: u64, others: impl IntoIterator<Item = (u64, SocketAddr)>) -> Self {
        let local: SocketAddr = ([0, 0, 0, 0], 0).into();
        let mut nodes: Vec<(u64, SocketAddr)> =
            others.into_iter().filter(|(p, _)| *p != me).collect();
        nodes.push((me, local));
        nodes.sort_unstable_by_key(|(p, _)| *p);
        nodes.dedup_by_key(|(p, _)| *p);
        let me = nodes.partition_point(|(p, _)| *p < me);
        Self { nodes, me }
    }

    /// Nodes on the ring, this one included.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    fn position_of(&self, offset: usize) -> (u64, SocketAddr) {
        self.nodes[(self.me + offset) % self.nodes.len()]
    }

    /// How many nodes lie strictly between this node and `limit`, going round the ring; a limit
    /// at this node's own position is an empty range.
    fn span(&self, limit: u64) -> usize {
        let mine = self.nodes[self.me].0;
        let end = limit.wrapping_sub(mine);
        let n = self.nodes.len();
        // Offsets of the nodes after this one grow with their distance round the ring.
        let (mut lo, mut hi) = (1, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.position_of(mid).0.wrapping_sub(mine) < end {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo - 1
    }

    /// Where a batch goes next, with the limit each receiver is given: for this node's own
    /// batches (`limit` `None`) the whole ring, for a relayed one the nodes up to `limit`.
    pub(crate) fn routes(&self, limit: Option<u64>) -> Vec<(SocketAddr, u64)> {
        let mine = self.nodes[self.me].0;
        let span = limit.map_or(self.nodes.len() - 1, |l| self.span(l));
        let mut out = Vec::new();
        let mut distance = 1;
        while distance <= span {
            let (_, to) = self.position_of(distance);
            let next = distance * 2;
            let sub = if next <= span {
                self.position_of(next).0
            } else {
                limit.unwrap_or(mine)
            };
            out.push((to, sub));
            distance = next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, VecDeque};

    use proptest::prelude::*;

    use super::*;

    fn addr(i: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7946))
    }

    fn rings(ids: &[usize]) -> HashMap<SocketAddr, RelayRing> {
        let all: Vec<(u64, SocketAddr)> = ids
            .iter()
            .map(|i| (position(&format!("node-{i}")), addr(*i)))
            .collect();
        all.iter()
            .map(|&(p, a)| (a, RelayRing::new(p, all.iter().copied())))
            .collect()
    }

    /// Follows one broadcast from `origin`: how often each node received it, and the hops of
    /// the longest path.
    fn broadcast(
        rings: &HashMap<SocketAddr, RelayRing>,
        origin: SocketAddr,
    ) -> (HashMap<SocketAddr, usize>, usize) {
        let mut received: HashMap<SocketAddr, usize> = HashMap::new();
        let mut queue: VecDeque<(SocketAddr, Option<u64>, usize)> =
            VecDeque::from([(origin, None, 0)]);
        let mut depth = 0;
        while let Some((at, limit, hops)) = queue.pop_front() {
            depth = depth.max(hops);
            for (to, sub) in rings[&at].routes(limit) {
                *received.entry(to).or_default() += 1;
                queue.push_back((to, Some(sub), hops + 1));
            }
        }
        (received, depth)
    }

    proptest! {
        /// Same views everywhere: every other node gets each batch exactly once, within
        /// ceil(log2 N) hops, and a node sends only to its log2 N fingers whatever the origin.
        #[test]
        fn every_node_receives_once_within_log_hops(n in 1usize..300, origin in 0usize..300) {
            let ids: Vec<usize> = (0..n).collect();
            let rings = rings(&ids);
            let origin = addr(origin % n);
            let (received, depth) = broadcast(&rings, origin);
            prop_assert_eq!(received.len(), n - 1);
            prop_assert!(received.values().all(|&c| c == 1));
            prop_assert!(!received.contains_key(&origin));
            let log2 = usize::BITS - (n.max(1) - 1).leading_zeros();
            prop_assert!(depth <= log2 as usize, "{} hops for {} nodes", depth, n);
        }

        /// Views that differ (some nodes do not know some others) never deliver twice.
        #[test]
        fn differing_views_never_deliver_twice(
            n in 2usize..120,
            unknown in prop::collection::vec((0usize..120, 0usize..120), 0..200),
            origin in 0usize..120,
        ) {
            let ids: Vec<usize> = (0..n).collect();
            let all: Vec<(u64, SocketAddr)> = ids
                .iter()
                .map(|i| (position(&format!("node-{i}")), addr(*i)))
                .collect();
            let rings: HashMap<SocketAddr, RelayRing> = all
                .iter()
                .enumerate()
                .map(|(i, &(p, a))| {
                    let view = all.iter().enumerate().filter(|(j, _)| {
                        !unknown.contains(&(i, *j))
                    }).map(|(_, e)| *e);
                    (a, RelayRing::new(p, view))
                })
                .collect();
            let (received, _) = broadcast(&rings, addr(origin % n));
            prop_assert!(received.values().all(|&c| c == 1));
        }
    }

    #[test]
    fn a_node_sends_only_to_its_fingers() {
        let ids: Vec<usize> = (0..1000).collect();
        let rings = rings(&ids);
        let mut targets: HashMap<SocketAddr, std::collections::HashSet<SocketAddr>> =
            HashMap::new();
        for origin in (0..1000).step_by(7) {
            let mut queue = VecDeque::from([(addr(origin), None)]);
            while let Some((at, limit)) = queue.pop_front() {
                for (to, sub) in rings[&at].routes(limit) {
                    targets.entry(at).or_default().insert(to);
                    queue.push_back((to, Some(sub)));
                }
            }
        }
        let most = targets.values().map(|t| t.len()).max().unwrap();
        assert!(most <= 10, "a node sent to {most} distinct peers");
    }

    #[test]
    fn a_limit_at_the_receiver_itself_goes_nowhere() {
        let rings = rings(&(0..50).collect::<Vec<_>>());
        let me = &rings[&addr(3)];
        let mine = position("node-3");
        assert!(me.routes(Some(mine)).is_empty());
        assert_eq!(me.routes(None).len(), 6);
        assert_eq!(RelayRing::new(mine, []).routes(None), vec![]);
    }
}
