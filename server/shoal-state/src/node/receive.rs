use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::anti_entropy::fresh_backs;
use super::flush::{Bundle, bundle_budget, in_flight, queue_relay, relaying, send_spans};
use super::send::{chunks, send, send_reliably};
use super::{ReplayPhase, Shared, note_rejection};
use crate::Origin;
use crate::relay;
use crate::replica::Applied;
use crate::wire::{self, Batch, Gap, Msg, Verdict};

/// Batches resent for one gap request at most (anti-entropy repairs larger holes).
const MISSING_RESENT_MAX: usize = 256;

/// Gaps named in one request at most (one per origin; a request names those of one sender).
const MISSING_GAPS_MAX: usize = 256;

/// How long a gap may stay open before its batches are asked for: a batch overtaken by the
/// next one on a jittery link arrives within it (measured on the simulator's WAN profile,
/// 20 ms with 10 ms of jitter: repair traffic halved; docs/benchmarks.md, "scale"). The gaps
/// of one sender that open meanwhile go in the same request.
const GAP_GRACE: Duration = Duration::from_millis(20);

/// Largest cost one strict check may carry (the API allows the same).
const MAX_CHECK_COST: u64 = 1_000_000;

pub(super) async fn receive_loop(
    inner: Arc<Shared>,
    mut inbox: mpsc::Receiver<Bytes>,
    stop: CancellationToken,
) {
    loop {
        let bytes = tokio::select! {
            _ = stop.cancelled() => return,
            b = inbox.recv() => match b { Some(b) => b, None => return },
        };
        inner
            .stats
            .bytes_received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let envelope = match wire::decode(&bytes) {
            Ok(e) => e,
            Err(why) => {
                inner.stats.received[Msg::KINDS.len() - 1].fetch_add(1, Ordering::Relaxed);
                note_rejection(&inner, "undecodable state message", &why);
                continue;
            }
        };
        inner.stats.received[envelope.msg.kind()].fetch_add(1, Ordering::Relaxed);
        let from = envelope.from;
        let (addr, member) = {
            let peers = inner.peers.read().expect("peers");
            (
                peers.by_id.get(&from).copied(),
                peers.known.contains_key(&from),
            )
        };
        if !member {
            note_rejection(
                &inner,
                "state message from a non-member",
                &format!("dropped a state message from {from:?}, which is not a current member"),
            );
            continue;
        }
        handle(&inner, &from, addr, envelope.msg);
    }
}

fn handle(inner: &Arc<Shared>, from: &str, addr: Option<SocketAddr>, msg: Msg) {
    let now = inner.clock.now_ms();
    match msg {
        Msg::Batch(batch) => {
            inner.stats.batches_received.fetch_add(1, Ordering::Relaxed);
            // Nodes send their own batches; others' come only inside sync replies.
            if batch.node != from {
                note_rejection(
                    inner,
                    "batch of another node",
                    &format!(
                        "{from:?} sent a batch claiming node {:?}; dropped",
                        batch.node
                    ),
                );
                return;
            }
            if let Some(why) = inner
                .replica
                .distrust_watermark_past(batch.origin, batch.seq)
            {
                note_rejection(inner, "implausible watermark", &why);
            }
            let origin = batch.origin;
            let applied = inner.replica.apply_batch(batch, now);
            let gap = applied.gap;
            absorb(inner, applied);
            if gap && let Some(addr) = addr {
                // Sent straight to this node: it passes nothing on (a limit at itself).
                let mine =
                    relay::position(inner.node.get().map(String::as_str).unwrap_or_default());
                ask_for_gap(inner, from, addr, origin, mine);
            }
        }
        Msg::Digest(digest) => {
            let Some(addr) = addr else { return };
            let diff = inner.replica.compare(&digest);
            if diff.they_lack {
                // Batches younger than their way round the cluster are most likely still on it,
                // unless the peer was cut off until lately.
                let min_age = if fresh_backs(inner).contains(&addr) {
                    Duration::ZERO
                } else {
                    in_flight(inner)
                };
                let (reply, notes) = inner.replica.serve_sync(&digest.have, now, min_age);
                for note in notes {
                    note_rejection(inner, "future watermark", &note);
                }
                if !reply.batches.is_empty() || reply.full.is_some() {
                    inner.stats.repairs.fetch_add(1, Ordering::Relaxed);
                    send(inner, addr, Msg::SyncReply(reply));
                }
            }
            // Relaying, what this node lacks is mostly still on its way (many hops): only the
            // origins it has heard nothing from for as long are asked for, by their gaps.
            if diff.we_lack && relaying(inner) {
                let mine =
                    relay::position(inner.node.get().map(String::as_str).unwrap_or_default());
                // Nothing from across a healed cut is on its way.
                let quiet = if fresh_backs(inner).contains(&addr) {
                    Duration::ZERO
                } else {
                    in_flight(inner)
                };
                let gaps: Vec<Gap> = inner
                    .replica
                    .stuck_behind(&digest.have, now, quiet)
                    .into_iter()
                    .map(|(origin, after, before)| Gap {
                        origin,
                        after,
                        before,
                        limit: mine,
                    })
                    .collect();
                for chunk in chunks(gaps, MISSING_GAPS_MAX) {
                    send_reliably(inner, addr, Msg::Missing(chunk));
                }
            } else if diff.we_lack {
                send(
                    inner,
                    addr,
                    Msg::SyncRequest {
                        have: inner.replica.have(),
                    },
                );
            }
            if !diff.shards.is_empty() {
                inner.stats.repairs.fetch_add(1, Ordering::Relaxed);
                let state = inner.replica.shard_state(&diff.shards, now, true);
                send(inner, addr, Msg::Shards(state));
            }
        }
        Msg::SyncRequest { have } => {
            let Some(addr) = addr else { return };
            let (reply, notes) = inner.replica.serve_sync(&have, now, Duration::ZERO);
            for note in notes {
                note_rejection(inner, "future watermark", &note);
            }
            send(inner, addr, Msg::SyncReply(reply));
        }
        Msg::SyncReply(reply) => {
            let batches = reply.batches.len();
            let full = reply.full.is_some();
            let applied = inner.replica.apply_sync_reply(reply, now);
            absorb(inner, applied);
            let mut replay = inner.replay.lock().expect("replay");
            // Only the answer of the peer asked completes the start-up replay (another
            // peer's repair may cover only part of the state).
            if matches!(&*replay, ReplayPhase::Asked { peer, .. } if peer == from) {
                let detail = format!(
                    "replayed {batches} batches from {from}{}",
                    if full {
                        " plus a full state transfer"
                    } else {
                        ""
                    }
                );
                tracing::info!(peer = from, batches, full, "shared state replay done");
                *replay = ReplayPhase::Done(detail);
                inner.replayed_from_peer.store(true, Ordering::SeqCst);
                inner.replay_done.store(true, Ordering::SeqCst);
            }
        }
        Msg::Shards(state) => {
            let pull = state.pull;
            let shards = state.shards.clone();
            for why in inner.replica.apply_shards(state, now) {
                note_rejection(inner, "invalid shard state", &why);
            }
            if pull && let Some(addr) = addr {
                let mine = inner.replica.shard_state(&shards, now, false);
                send(inner, addr, Msg::Shards(mine));
            }
        }
        Msg::Checks(checks) => {
            let Some(addr) = addr else { return };
            // Until its start-up replay is in, this node's counts may miss most of what the
            // cluster counted (a new node taking over keys as the fleet is replaced): deciding
            // from them would admit requests the limit refuses.
            if !inner.replay_done.load(Ordering::SeqCst) {
                let ids: Vec<u64> = checks.iter().map(|c| c.id).collect();
                for chunk in chunks(ids, 512) {
                    send(inner, addr, Msg::Deferred(chunk));
                }
                return;
            }
            let verdicts: Vec<Verdict> = checks
                .into_iter()
                .filter_map(|c| {
                    if let Err(why) = c.key.check() {
                        note_rejection(inner, "invalid strict check", &why);
                        return None;
                    }
                    if c.cost == 0 || c.cost > MAX_CHECK_COST {
                        note_rejection(
                            inner,
                            "invalid strict check",
                            &format!("strict check cost {} outside 1-{MAX_CHECK_COST}", c.cost),
                        );
                        return None;
                    }
                    let window = usize::from(c.window).min(inner.options.windows.len() - 1);
                    let (allowed, count) = inner
                        .replica
                        .decide(&c.key, window, c.limit, c.cost, now, true);
                    Some(Verdict {
                        id: c.id,
                        allowed,
                        count,
                        totals: inner.replica.totals(&c.key, now),
                    })
                })
                .collect();
            for chunk in chunks(verdicts, 40) {
                send(inner, addr, Msg::Verdicts(chunk));
            }
        }
        Msg::Verdicts(verdicts) => {
            let mut pending = inner.pending.lock().expect("pending");
            for v in verdicts {
                if let Some(tx) = pending.remove(&v.id) {
                    let _ = tx.send(Some(v));
                }
            }
        }
        Msg::Missing(gaps) => {
            let Some(addr) = addr else { return };
            if gaps.len() > MISSING_GAPS_MAX {
                note_rejection(
                    inner,
                    "oversized gap request",
                    &format!(
                        "{from:?} asked for {} gaps at once (at most {MISSING_GAPS_MAX}); \
                         the first {MISSING_GAPS_MAX} answered",
                        gaps.len()
                    ),
                );
            }
            let mut left = MISSING_RESENT_MAX;
            let mut spans = Bundle::new();
            for gap in gaps.iter().take(MISSING_GAPS_MAX) {
                let found = inner
                    .replica
                    .logged_batches(gap.origin, gap.after, gap.before, left);
                left -= found.len();
                spans.entry((gap.limit, false)).or_default().extend(found);
                if left == 0 {
                    break;
                }
            }
            if left < MISSING_RESENT_MAX {
                inner.stats.repairs.fetch_add(1, Ordering::Relaxed);
                send_spans(inner, addr, spans, bundle_budget(inner), true);
            }
        }
        Msg::Relay(spans) => {
            let mine = relay::position(inner.node.get().map(String::as_str).unwrap_or_default());
            let mut fresh = Vec::new();
            let mut gaps = Vec::new();
            for span in spans {
                for batch in span.batches {
                    let batch = Batch::from(batch);
                    inner.stats.batches_received.fetch_add(1, Ordering::Relaxed);
                    // The origin's own node sends its newest batch: a watermark far past it
                    // was never real. Relays pass on others', which prove nothing of the kind.
                    if batch.node == from
                        && let Some(why) = inner
                            .replica
                            .distrust_watermark_past(batch.origin, batch.seq)
                    {
                        note_rejection(inner, "implausible watermark", &why);
                    }
                    let origin = batch.origin;
                    let again = span.again.then(|| Arc::new(batch.clone()));
                    let mut applied = inner.replica.apply_batch(batch, now);
                    if applied.gap {
                        gaps.push((origin, span.limit));
                    }
                    let pass_on = match (applied.fresh.take(), again) {
                        (Some(batch), _) => Some(batch),
                        (None, Some(batch)) if applied.duplicate => Some(batch),
                        _ => None,
                    };
                    if let Some(batch) = pass_on
                        && span.limit != mine
                    {
                        fresh.push((span.limit, span.again, batch));
                    }
                    absorb(inner, applied);
                }
            }
            queue_relay(inner, fresh);
            if let Some(addr) = addr {
                for (origin, limit) in gaps {
                    ask_for_gap(inner, from, addr, origin, limit);
                }
            }
        }
        Msg::Deferred(ids) => {
            let mut pending = inner.pending.lock().expect("pending");
            for id in ids {
                if let Some(tx) = pending.remove(&id) {
                    let _ = tx.send(None);
                }
            }
        }
    }
}

fn absorb(inner: &Shared, applied: Applied) {
    if applied.duplicate {
        inner.stats.duplicates.fetch_add(1, Ordering::Relaxed);
    }
    for why in applied.rejected {
        note_rejection(inner, "invalid batch", &why);
    }
    for event in applied.events {
        let _ = inner.events.send(event);
    }
}

/// A gap is most often a batch overtaken in flight (jittery links reorder): the request for
/// the missing batches goes out only if the gap is still open after [`GAP_GRACE`], together
/// with every other gap the same sender showed meanwhile.
fn ask_for_gap(inner: &Arc<Shared>, from: &str, addr: SocketAddr, origin: Origin, limit: u64) {
    {
        let mut pending = inner.gap_pending.lock().expect("gap");
        if let Some(origins) = pending.get_mut(from) {
            origins.insert(origin, limit);
            return;
        }
        pending.insert(from.to_string(), HashMap::from([(origin, limit)]));
    }
    let inner = inner.clone();
    let from = from.to_string();
    #[expect(
        clippy::disallowed_methods,
        reason = "a timer of one request: ends after GAP_GRACE and one send"
    )]
    tokio::spawn(async move {
        tokio::time::sleep(GAP_GRACE).await;
        let origins = inner
            .gap_pending
            .lock()
            .expect("gap")
            .remove(&from)
            .unwrap_or_default();
        let gaps: Vec<Gap> = origins
            .into_iter()
            .filter_map(|(origin, limit)| {
                let (after, before) = inner.replica.gap(origin)?;
                Some(Gap {
                    origin,
                    after,
                    before,
                    limit,
                })
            })
            .collect();
        for chunk in chunks(gaps, MISSING_GAPS_MAX) {
            send_reliably(&inner, addr, Msg::Missing(chunk));
        }
    });
}
