//! The consistent-hash ring that names each key's owner in strict mode.
//!
//! Every node is placed at [`VNODES`] points; a key belongs to the first point at or after its
//! hash. Nodes computing the ring from the same member list agree on every owner, and a member
//! joining or leaving moves only the keys next to its points (about 1/n of them).

use crate::counter::mix;
use crate::key::fnv1a;

/// Points per node: enough to keep the largest owner's share within a few percent of 1/n.
pub(crate) const VNODES: u32 = 128;

#[derive(Debug, Clone, Default)]
pub(crate) struct Ring {
    points: Vec<(u64, usize)>,
    nodes: Vec<String>,
}

impl Ring {
    pub(crate) fn new(mut nodes: Vec<String>) -> Self {
        nodes.sort();
        nodes.dedup();
        let mut points = Vec::with_capacity(nodes.len() * VNODES as usize);
        for (index, node) in nodes.iter().enumerate() {
            let base = fnv1a(&[node.as_bytes()]);
            for v in 0..VNODES {
                points.push((mix(base ^ mix(u64::from(v))), index));
            }
        }
        points.sort_unstable();
        Self { points, nodes }
    }

    pub(crate) fn owner(&self, key_hash: u64) -> Option<&str> {
        if self.points.is_empty() {
            return None;
        }
        let at = self.points.partition_point(|(p, _)| *p < key_hash);
        let (_, index) = self.points[at % self.points.len()];
        Some(&self.nodes[index])
    }

    /// The first owner of `key_hash` that is not `me`: who decides for a node that cannot.
    pub(crate) fn owner_other_than(&self, key_hash: u64, me: &str) -> Option<&str> {
        let at = self.points.partition_point(|(p, _)| *p < key_hash);
        (0..self.points.len())
            .map(|i| &self.nodes[self.points[(at + i) % self.points.len()].1])
            .find(|node| node.as_str() != me)
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: usize) -> Ring {
        Ring::new((0..n).map(|i| format!("node-{i}")).collect())
    }

    #[test]
    fn the_owner_other_than_a_node_is_its_successor_on_the_ring() {
        let r = ring(3);
        for key in (0..1000u64).map(mix) {
            let owner = r.owner(key).unwrap();
            assert_eq!(r.owner_other_than(key, "node-9"), Some(owner));
            let other = r.owner_other_than(key, owner).unwrap();
            assert_ne!(other, owner);
        }
        assert_eq!(ring(1).owner_other_than(1, "node-0"), None);
        assert_eq!(Ring::default().owner_other_than(1, "a"), None);
    }

    #[test]
    fn owners_are_balanced_and_order_independent() {
        let r = ring(5);
        let mut reversed: Vec<String> = (0..5).rev().map(|i| format!("node-{i}")).collect();
        reversed.push("node-0".into());
        let r2 = Ring::new(reversed);
        let mut counts = std::collections::HashMap::new();
        for k in 0..50_000u64 {
            let h = mix(k);
            let owner = r.owner(h).unwrap();
            assert_eq!(Some(owner), r2.owner(h));
            *counts.entry(owner.to_string()).or_insert(0usize) += 1;
        }
        for (node, n) in counts {
            assert!((7_000..13_000).contains(&n), "{node} owns {n} of 50000");
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let before = ring(5);
        let after = Ring::new((0..4).map(|i| format!("node-{i}")).collect());
        for k in 0..20_000u64 {
            let h = mix(k);
            let was = before.owner(h).unwrap();
            if was != "node-4" {
                assert_eq!(Some(was), after.owner(h));
            }
        }
        assert_eq!(Ring::new(Vec::new()).owner(1), None);
    }
}
