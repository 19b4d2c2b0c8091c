//! The load figures in this node's gossiped metadata.

use std::sync::Arc;
use std::time::Duration;

use shoal_cluster::{Cluster, Load};
use shoal_state::SharedState;
use tokio_util::sync::CancellationToken;

use crate::join::sleep_or_stop;

/// How often the load figures in this node's metadata are refreshed.
const LOAD_REFRESH: Duration = Duration::from_secs(2);

/// Linux clock ticks per second for /proc CPU times (USER_HZ, 100 on every mainstream arch).
const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_BYTES: u64 = 4096;

/// Publishes CPU, memory, in-flight requests, keys held and replay progress, only when they
/// changed noticeably.
pub(crate) async fn refresh_load(
    cluster: Cluster,
    in_flight: Arc<dyn Fn() -> usize + Send + Sync>,
    state: SharedState,
    stop: CancellationToken,
) {
    let mut cpu = CpuSampler::default();
    let mut published = Load::default();
    // The first figures go out at once, so peers never show a fresh node with empty load.
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) && sleep_or_stop(&stop, LOAD_REFRESH).await {
            return;
        }
        let load = Load {
            cpu_percent: cpu.sample().unwrap_or(0.0),
            memory_bytes: resident_bytes().unwrap_or(0),
            in_flight: in_flight() as u64,
            keys: state.status().keys as u64,
            replayed: state.replay().done,
        };
        let changed = (load.cpu_percent - published.cpu_percent).abs() >= 5.0
            || load.memory_bytes.abs_diff(published.memory_bytes) > published.memory_bytes / 10
            || load.in_flight != published.in_flight
            || load.keys.abs_diff(published.keys) > published.keys / 10
            || load.replayed != published.replayed;
        if changed {
            match cluster.update_meta(|m| m.load = load.clone()).await {
                Ok(()) => published = load,
                Err(e) => tracing::debug!("load refresh not broadcast: {e}"),
            }
        }
    }
}

#[derive(Default)]
struct CpuSampler {
    last: Option<(std::time::Instant, u64)>,
}

impl CpuSampler {
    /// Percent of one core used since the previous sample.
    fn sample(&mut self) -> Option<f32> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may contain spaces) start after ") ".
        let rest = stat.rsplit_once(") ")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let now = std::time::Instant::now();
        let percent = self.last.map(|(at, before)| {
            let secs = now.duration_since(at).as_secs_f64().max(0.001);
            (ticks.saturating_sub(before) as f64 / TICKS_PER_SECOND / secs * 100.0) as f32
        });
        self.last = Some((now, ticks));
        percent
    }
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    Some(statm.split_whitespace().nth(1)?.parse::<u64>().ok()? * PAGE_BYTES)
}
