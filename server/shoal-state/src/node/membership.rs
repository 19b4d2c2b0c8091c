use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::flush::relaying;
use super::send::{encode, send, send_bytes};
use super::{REGION_MEMORY, RegionSeen, ReplayPhase, SYNC_TIMEOUT, Shared};
use crate::relay::{self, RelayRing};
use crate::ring::Ring;
use crate::transport::{PeerChange, PeerState, Transport};
use crate::wire::Msg;

/// How often the peer list is refreshed besides on membership events (which the membership
/// layer sends for every change, a lagging subscriber included): a fallback, and each refresh
/// walks every member.
const PEER_REFRESH: Duration = Duration::from_secs(1);

/// Relaying, the digests sent at once to peers that came back (the rest wait for
/// anti-entropy's rounds).
const BACK_DIGESTS: usize = 3;

/// Runs every [`PEER_REFRESH`] and on every membership change, on fleets of a thousand
/// members: what depends on the member set is rebuilt only when it changed.
pub(super) fn refresh_peers(inner: &Shared, cluster: &dyn Transport) {
    let members = cluster.members();
    let me = cluster.local_id();
    let mut by_id = HashMap::new();
    let mut known = HashMap::new();
    let mut dead = HashMap::new();
    for m in members.iter().filter(|m| !m.local) {
        if m.state != PeerState::Left {
            known.insert(m.id.clone(), m.state);
        }
        if m.state == PeerState::Dead {
            dead.insert(m.id.clone(), m.address);
        }
        if matches!(m.state, PeerState::Alive | PeerState::Suspect) {
            by_id.insert(m.id.clone(), m.address);
        }
    }
    let mut peers = inner.peers.write().expect("peers lock");
    let first = peers.relay.is_none();
    if first || peers.by_id != by_id {
        peers.ring = Ring::new(
            std::iter::once(me.clone())
                .chain(by_id.keys().cloned())
                .collect(),
        );
        peers.relay = Some(Arc::new(RelayRing::new(
            relay::position(&me),
            by_id.iter().map(|(id, a)| (relay::position(id), *a)),
        )));
    }
    if first || peers.by_id != by_id || peers.dead != dead {
        // Queues to addresses no longer reachable members end (their sender tasks with them).
        let reachable: HashSet<&SocketAddr> = by_id.values().chain(dead.values()).collect();
        inner
            .outbound
            .lock()
            .expect("outbound")
            .retain(|addr, _| reachable.contains(addr));
    }
    if first || peers.known != known {
        inner
            .replica
            .set_members(known.keys().cloned().chain(std::iter::once(me)).collect());
    }
    peers.by_id = by_id;
    peers.known = known;
    peers.dead = dead;
    let now = Instant::now();
    for seen in peers.regions.values_mut() {
        seen.reachable = false;
    }
    for m in members.iter().filter(|m| !m.local) {
        if let Some(region) = &m.region {
            let reachable = matches!(m.state, PeerState::Alive | PeerState::Suspect);
            let seen = peers.regions.entry(region.clone()).or_insert(RegionSeen {
                reachable,
                last_reachable: now,
            });
            if reachable {
                seen.reachable = true;
                seen.last_reachable = now;
            }
        }
    }
    peers
        .regions
        .retain(|_, seen| seen.reachable || now - seen.last_reachable < REGION_MEMORY);
}

/// Follows membership: keeps the peer list and ring current, sends a digest to a peer that
/// appears or comes back, and drives the start-up replay.
pub(super) async fn membership_loop(
    inner: Arc<Shared>,
    cluster: Arc<dyn Transport>,
    stop: CancellationToken,
) {
    let mut changes = cluster.subscribe();
    let mut subscribed = true;
    let mut tick = tokio::time::interval(PEER_REFRESH);
    loop {
        let mut back: Vec<SocketAddr> = Vec::new();
        let mut change = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => None,
            change = changes.recv(), if subscribed => Some(change),
        };
        // Everything that changed meanwhile is taken at once (a healed partition brings back
        // half the cluster): one refresh, not one per peer.
        while let Some(next) = change {
            match next {
                Some(PeerChange::Back(address)) => back.push(address),
                Some(PeerChange::Changed) => {}
                // The membership layer stopped: the timer alone refreshes from now on.
                None => subscribed = false,
            }
            change = match changes.try_recv() {
                Ok(c) => Some(Some(c)),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => subscribed.then_some(None),
            };
        }
        refresh_peers(&inner, cluster.as_ref());
        if !back.is_empty() {
            let now = Instant::now();
            inner
                .came_back
                .lock()
                .expect("came back")
                .extend(back.iter().map(|a| (*a, now)));
            // In a large cluster a few of them suffice to start the exchange; anti-entropy
            // reaches the rest.
            if relaying(&inner) && back.len() > BACK_DIGESTS {
                rand::seq::SliceRandom::shuffle(back.as_mut_slice(), &mut rand::rng());
                back.truncate(BACK_DIGESTS);
            }
            let digest = encode(
                &inner,
                Msg::Digest(inner.replica.digest(inner.clock.now_ms())),
            );
            for addr in back {
                send_bytes(&inner, addr, digest.clone(), false);
            }
        }
        let ask = {
            let peers = inner.peers.read().expect("peers");
            let mut replay = inner.replay.lock().expect("replay");
            let pick = peers.by_id.iter().next().map(|(id, a)| (id.clone(), *a));
            let due = match &*replay {
                ReplayPhase::Waiting => true,
                ReplayPhase::Asked { at, .. } => at.elapsed() >= SYNC_TIMEOUT,
                // Settled alone, and now there are peers: what they counted is not here.
                ReplayPhase::Done(_) => {
                    let rejoined =
                        pick.is_some() && !inner.replayed_from_peer.load(Ordering::SeqCst);
                    if rejoined {
                        tracing::info!(
                            "peers appeared after this node ran alone: replaying their state \
                             before deciding the strict checks it owns"
                        );
                        inner.replay_done.store(false, Ordering::SeqCst);
                    }
                    rejoined
                }
            };
            match (due, pick) {
                (true, Some((id, addr))) => {
                    *replay = ReplayPhase::Asked {
                        peer: id,
                        at: Instant::now(),
                    };
                    Some(addr)
                }
                _ => None,
            }
        };
        if let Some(addr) = ask {
            send(
                &inner,
                addr,
                Msg::SyncRequest {
                    have: inner.replica.have(),
                },
            );
        }
    }
}
