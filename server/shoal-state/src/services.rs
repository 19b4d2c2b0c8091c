//! Which shared state each service uses when a node is in several clusters (counters in its
//! region's, events and global counts in the global one), and the global counts policies
//! read.
//!
//! A global limit must hold across regions without a WAN round trip on the request path, so
//! each region is held to a share of it, decided from its own (LAN-exact) count: a policy's
//! `global_access_count > N` refuses once this region's count passes `share x N`. Shares
//! come from each region's demand in the global counters, read only from buckets at least
//! [`SHARE_SETTLE`] old: every region has those counts, so every region computes the same
//! shares and they sum to one. While a region is unreachable the shares stop following
//! demand: each of the K regions seen is held to 1/K, so the sides of a split together still
//! stay within the limit.

use std::time::Duration;

use crate::{CounterKey, SharedState};

/// How old demand must be to decide shares: past the WAN's latency, a flush and a repair
/// round, so every region holds it.
pub const SHARE_SETTLE: Duration = Duration::from_secs(2);

/// The part of a global limit spread evenly over the regions, whatever their demand: a
/// region that was idle can still admit at once.
const SHARE_FLOOR: f64 = 0.1;

/// The shared state behind each service; clones of one [`SharedState`] where services share
/// a cluster. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    /// The region this node counts in: its counters' cluster.
    pub region: String,
    /// Rate counters and strict owners: `input.bucket.access_count`.
    pub counters: SharedState,
    pub cache: SharedState,
    /// Broadcast events, revocations among them.
    pub events: SharedState,
    /// Counts across every region: `input.bucket.global_access_count` and the shares of
    /// global limits.
    pub global_counters: SharedState,
}

/// What a policy reads as `input.bucket.global_access_count`, and how it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalCounts {
    /// Per window: this region's count over its share, what the fleet's count would be if
    /// every region counted like this one (so the policy's limit holds across regions).
    pub totals: Vec<u64>,
    /// Per window: this region's share of a global limit.
    pub shares: Vec<f64>,
    /// The regions sharing, this one included.
    pub regions: usize,
    /// A region is unreachable: every region holds 1/`regions`.
    pub split: bool,
}

impl Services {
    /// Whether global counts come from a cluster of their own; else they are the counters'.
    pub fn global_apart(&self) -> bool {
        !self.global_counters.same_as(&self.counters)
    }

    /// Counts one request for `key` in the global counters (under this region's name) and
    /// returns the global figures for `regional`, the key's counts in this region (this
    /// request included). With no global cluster of its own, the regional counts are global.
    pub fn count_global(&self, key: &CounterKey, regional: &[u64]) -> GlobalCounts {
        if !self.global_apart() {
            return GlobalCounts {
                totals: regional.to_vec(),
                shares: vec![1.0; regional.len()],
                regions: 1,
                split: false,
            };
        }
        let mine = regional_key(key, &self.region);
        self.global_counters.increment(&mine, 1);
        let seen = self.global_counters.regions();
        let others: Vec<&(String, bool)> = seen.iter().filter(|(r, _)| r != &self.region).collect();
        let regions = others.len() + 1;
        let split = others.iter().any(|(_, reachable)| !reachable);
        let shares: Vec<f64> = if split {
            vec![1.0 / regions as f64; regional.len()]
        } else {
            let demand_of = |region: &str| {
                self.global_counters
                    .settled_totals(&regional_key(key, region), SHARE_SETTLE)
            };
            let own = demand_of(&self.region);
            let all: Vec<Vec<u64>> = others.iter().map(|(r, _)| demand_of(r)).collect();
            (0..regional.len())
                .map(|w| {
                    let own = own.get(w).copied().unwrap_or(0);
                    let total = own
                        + all
                            .iter()
                            .map(|d| d.get(w).copied().unwrap_or(0))
                            .sum::<u64>();
                    share(own, total, regions)
                })
                .collect()
        };
        let totals = regional
            .iter()
            .zip(&shares)
            .map(|(&count, &share)| (count as f64 / share).ceil() as u64)
            .collect();
        GlobalCounts {
            totals,
            shares,
            regions,
            split,
        }
    }
}

/// A region's share of a global limit from its settled demand `own` out of `total`, among
/// `regions` regions.
fn share(own: u64, total: u64, regions: usize) -> f64 {
    let even = 1.0 / regions as f64;
    if total == 0 {
        return even;
    }
    SHARE_FLOOR * even + (1.0 - SHARE_FLOOR) * own as f64 / total as f64
}

/// The global counters' key for `key` counted in `region`.
fn regional_key(key: &CounterKey, region: &str) -> CounterKey {
    key.in_region(region)
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_follow_demand_above_an_even_floor_and_sum_to_one() {
        assert_eq!(share(0, 0, 2), 0.5);
        let (a, b) = (share(800, 1000, 2), share(200, 1000, 2));
        assert!((a + b - 1.0).abs() < 1e-12);
        assert!((a - 0.77).abs() < 1e-12, "{a}");
        assert!(share(0, 1000, 4) > 0.0, "an idle region can still admit");
        let three: f64 = [100, 0, 900].iter().map(|&d| share(d, 1000, 3)).sum();
        assert!((three - 1.0).abs() < 1e-12);
    }
}
