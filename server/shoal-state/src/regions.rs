//! Regions on the simulator: nodes each in a regional cluster (LAN) and one global cluster
//! (LAN inside a region, WAN between regions), deciding requests against a global limit the
//! way the data plane does. Shared by the scenarios and `scripts/bench regions`.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::sim::{Link, SimNet, SimTransport};
use crate::{CounterKey, Limit, Mode, Services, StateOptions};

/// A WAN between regions as the profile: 50 ms plus up to 100 ms, 1% loss.
pub const INTER_REGION: Link = Link {
    latency: std::time::Duration::from_millis(50),
    jitter: std::time::Duration::from_millis(100),
    loss: 0.01,
    duplicate: 0.0,
};

/// One node: its services (regional counters, global counts and events).
pub struct RegionNode {
    pub region: String,
    pub services: Services,
    pub global: Arc<SimTransport>,
    _stop: tokio_util::sync::DropGuard,
    _tasks: JoinSet<()>,
}

/// Every region's nodes; `global` is the one network every node is in.
pub struct Fleet {
    pub nodes: Vec<RegionNode>,
    pub global: SimNet,
    pub regional: Vec<SimNet>,
}

/// `per_region` nodes in each of `regions`, regional networks on `inside` links, the global
/// one on `inside` within a region and `between` across.
pub fn fleet(seed: u64, regions: &[&str], per_region: usize, inside: Link, between: Link) -> Fleet {
    let global = SimNet::new(seed, inside);
    global.between_regions(between);
    let mut regional = Vec::new();
    let mut nodes = Vec::new();
    for (r, region) in regions.iter().enumerate() {
        let net = SimNet::new(seed.wrapping_add(r as u64 + 1), inside);
        for i in 0..per_region {
            let id = format!("{region}-{i}");
            let stop = CancellationToken::new();
            let mut tasks = JoinSet::new();
            let local = net.join(&id);
            let counters = local.state(StateOptions::default());
            counters.attach(local, stop.clone(), &mut tasks);
            let g = global.join_in_region(&id, region);
            let global_counters = g.state(StateOptions::default());
            global_counters.attach(g.clone(), stop.clone(), &mut tasks);
            nodes.push(RegionNode {
                region: (*region).to_string(),
                services: Services {
                    region: (*region).to_string(),
                    counters: counters.clone(),
                    cache: counters,
                    events: global_counters.clone(),
                    global_counters,
                },
                global: g,
                _stop: stop.drop_guard(),
                _tasks: tasks,
            });
        }
        regional.push(net);
    }
    Fleet {
        nodes,
        global,
        regional,
    }
}

impl RegionNode {
    /// One request under a policy `global_access_count.<window 0> > max`, decided as the data
    /// plane does: counted in the region, then judged on the global figure. Whether admitted.
    pub async fn offer(&self, key: &CounterKey, max: u64) -> bool {
        let counted = self
            .services
            .counters
            .check(
                key,
                Limit {
                    window: 0,
                    max: u64::MAX,
                    mode: Mode::Eventual,
                },
                1,
            )
            .await;
        let global = self.services.count_global(key, &counted.totals);
        global.totals[0] <= max
    }
}
