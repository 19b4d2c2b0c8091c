use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::flush::relaying;
use super::send::{encode, send, send_bytes};
use super::{Shared, StateOptions};
use crate::wire::Msg;

/// How long an origin stays in digests after its last batch beyond the longest window (its
/// counts have expired by then; the margin covers clocks apart and batches late in flight).
const RETIRE_GRACE: Duration = Duration::from_secs(300);

fn retire_after(options: &StateOptions) -> Duration {
    options
        .windows
        .iter()
        .map(|w| w.length)
        .max()
        .unwrap_or_default()
        + RETIRE_GRACE
}

/// How often idle counters are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How often members declared dead (not yet reaped) get a small digest, and at most how many.
const DEAD_PROBE_EVERY: Duration = Duration::from_millis(100);
const DEAD_PROBE_MAX: usize = 16;
/// Relaying, the dead members probed per round.
const RELAY_DEAD_PROBE_MAX: usize = 2;

/// How long a peer that came back is preferred by anti-entropy and served batches however
/// young: what it lacks was not on its way to it.
const BACK_FRESH: Duration = Duration::from_secs(3);

/// Peers that came back within [`BACK_FRESH`].
pub(super) fn fresh_backs(inner: &Shared) -> HashSet<SocketAddr> {
    let mut back = inner.came_back.lock().expect("came back");
    back.retain(|_, at| at.elapsed() < BACK_FRESH);
    back.keys().copied().collect()
}

pub(super) async fn anti_entropy_loop(inner: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(inner.options.anti_entropy_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe = tokio::time::interval(DEAD_PROBE_EVERY);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep = Instant::now();
    let mut evicted_before = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                // Peers that came back lately first: across a healed partition is where the
                // differences are, and a random pick finds the other side only half the time.
                let back: Vec<SocketAddr> = fresh_backs(&inner).into_iter().collect();
                let peer = if back.is_empty() {
                    let peers = inner.peers.read().expect("peers");
                    let addrs: Vec<SocketAddr> = peers.by_id.values().copied().collect();
                    (!addrs.is_empty()).then(|| addrs[rand::random_range(0..addrs.len())])
                } else {
                    Some(back[rand::random_range(0..back.len())])
                };
                if let Some(addr) = peer {
                    inner.stats.anti_entropy_rounds.fetch_add(1, Ordering::Relaxed);
                    send(&inner, addr, Msg::Digest(inner.replica.digest(inner.clock.now_ms())));
                }
                if last_sweep.elapsed() >= SWEEP_EVERY {
                    let now = inner.clock.now_ms();
                    inner.replica.sweep(now);
                    let members: HashSet<String> = {
                        let peers = inner.peers.read().expect("peers");
                        peers.known.keys().cloned().chain(inner.node.get().cloned()).collect()
                    };
                    inner
                        .replica
                        .retire_origins(now, retire_after(&inner.options), &members);
                    let evicted = inner.replica.evicted();
                    if evicted > evicted_before {
                        tracing::warn!(
                            evicted = evicted - evicted_before,
                            max_keys = inner.options.max_keys,
                            "shared state: counter keys evicted to stay under state.max_keys; \
                             their counts on this node are gone (raise it, or give the node \
                             more memory)"
                        );
                        evicted_before = evicted;
                    }
                    last_sweep = Instant::now();
                }
            }
            _ = probe.tick() => {
                // Members declared dead may only be cut off: a small digest (what we have
                // seen, no shard hashes) tells them, the moment the network heals, that
                // there is something to exchange.
                let most = if relaying(&inner) { RELAY_DEAD_PROBE_MAX } else { DEAD_PROBE_MAX };
                let dead: Vec<SocketAddr> = {
                    let peers = inner.peers.read().expect("peers");
                    peers.dead.values().copied().take(most).collect()
                };
                if !dead.is_empty() {
                    let digest = encode(
                        &inner,
                        Msg::Digest(crate::wire::Digest {
                            now_ms: inner.clock.now_ms(),
                            have: inner.replica.have(),
                            shards: Vec::new(),
                        }),
                    );
                    for addr in dead {
                        send_bytes(&inner, addr, digest.clone(), false);
                    }
                }
            }
        }
    }
}
