use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::send::{encode, send_bytes};
use super::strict::count_late_checks;
use crate::wire::{Batch, Compact, Msg, Span};

/// Received batches waiting to be passed on along the relay ring before more are dropped
/// (the gaps they leave are repaired like any loss).
const RELAY_QUEUE: usize = 65_536;

/// Room a batch's header and the message envelope take besides its counter updates: a batch
/// of `packet_max - BATCH_OVERHEAD` encoded updates fits one datagram.
const BATCH_OVERHEAD: usize = 200;

/// How old a batch must be before a digest that lacks it gets it replayed: younger ones are
/// most likely still in flight. Relayed batches take up to log2(N) hops, each this long.
const IN_FLIGHT: Duration = Duration::from_millis(50);

/// Relaying, how long this node's newest batch waits for a successor before it is resent
/// along the ring (see [`Span::again`]), and how often: a second time four times as long
/// later, in case the first was lost near the origin (half the ring would miss it). A node
/// that keeps counting resends nothing.
const TAIL_RESEND: Duration = Duration::from_millis(250);
const TAIL_RESENDS: u32 = 2;

/// Sleeps while nothing is pending (an idle node wakes for nothing), and flushes at most once
/// per `flush_interval` once something is: this node's new batches and the peers' batches it
/// passes on along the relay ring.
pub(super) async fn flush_loop(inner: Arc<Shared>, stop: CancellationToken) {
    let interval = inner.options.flush_interval;
    let mut last_flush = Instant::now() - interval;
    // Relaying: this node's newest batch, when its next resend is due, and how many went.
    let mut tail: Option<(Arc<Batch>, Instant, u32)> = None;
    loop {
        let tail_at = tail.as_ref().map_or(last_flush, |(_, at, _)| *at);
        let mut tail_due = false;
        let mut stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = inner.replica.dirtied() => false,
            _ = inner.relay_ready.notified() => false,
            _ = tokio::time::sleep_until(tail_at), if tail.is_some() => {
                tail_due = true;
                false
            }
        };
        if !stopping && !tail_due {
            // Gathers what else arrives until the interval since the last flush is up.
            stopping = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep_until(last_flush + interval) => false,
            };
        }
        last_flush = Instant::now();
        if stopping {
            count_late_checks(&inner);
        }
        // The last flush still goes out: what was counted up to shutdown reaches the peers.
        let budget = bundle_budget(&inner);
        let batches = if tail_due {
            Vec::new()
        } else {
            inner.replica.take_batches(budget)
        };
        let relayed = std::mem::take(&mut *inner.relay_out.lock().expect("relay queue"));
        if stopping && batches.is_empty() && relayed.is_empty() {
            return;
        }
        let (targets, ring) = {
            let peers = inner.peers.read().expect("peers");
            let targets: Vec<SocketAddr> = peers.by_id.values().copied().collect();
            (targets, peers.relay.clone())
        };
        let Some(ring) = ring else { continue };
        inner
            .stats
            .batches_sent
            .fetch_add(batches.len() as u64, Ordering::Relaxed);
        let mut bundles: HashMap<SocketAddr, Bundle> = HashMap::new();
        // Queues `batch` for the next hops; how many.
        let mut route = |batch: &Arc<Batch>, limit: Option<u64>, again: bool| -> u64 {
            let routes = ring.routes(limit);
            let hops = routes.len() as u64;
            for (to, sub) in routes {
                bundles
                    .entry(to)
                    .or_default()
                    .entry((sub, again))
                    .or_default()
                    .push(batch.clone());
            }
            hops
        };
        if tail_due {
            if let Some((newest, _, resends)) = tail.take() {
                route(&newest, None, true);
                if resends + 1 < TAIL_RESENDS {
                    tail = Some((newest, Instant::now() + TAIL_RESEND * 4, resends + 1));
                }
            }
        } else if ring.len() > inner.options.relay_above {
            for batch in &batches {
                route(batch, None, false);
            }
            if let Some(newest) = batches.last() {
                tail = Some((newest.clone(), Instant::now() + TAIL_RESEND, 0));
            }
        } else {
            for batch in batches {
                let bytes = encode(&inner, Msg::Batch(Batch::clone(&batch)));
                for to in &targets {
                    send_bytes(&inner, *to, bytes.clone(), false);
                }
            }
        }
        // A sender that relays is honoured whatever this node's own view of the size.
        let passed_on: u64 = relayed
            .iter()
            .map(|(limit, again, batch)| route(batch, Some(*limit), *again))
            .sum();
        inner
            .stats
            .batches_relayed
            .fetch_add(passed_on, Ordering::Relaxed);
        for (to, spans) in bundles {
            send_spans(&inner, to, spans, budget, false);
        }
        if stopping {
            return;
        }
    }
}

/// Whether batches travel the relay ring (the cluster is larger than `relay_above`).
pub(super) fn relaying(inner: &Shared) -> bool {
    inner
        .peers
        .read()
        .expect("peers")
        .relay
        .as_ref()
        .is_some_and(|r| r.len() > inner.options.relay_above)
}

/// How long a batch may be on its way: a direct send, or one relay hop per doubling of the
/// cluster.
pub(super) fn in_flight(inner: &Shared) -> Duration {
    let peers = inner.peers.read().expect("peers");
    match &peers.relay {
        Some(r) if r.len() > inner.options.relay_above => {
            IN_FLIGHT * (usize::BITS - r.len().leading_zeros())
        }
        _ => IN_FLIGHT,
    }
}

/// Encoded bytes a batch's counter updates, or a bundle of batches, may take so the message
/// fits one datagram.
pub(super) fn bundle_budget(inner: &Shared) -> usize {
    inner.cluster.get().map_or(1000, |c| {
        c.packet_max().saturating_sub(BATCH_OVERHEAD).max(1)
    })
}

/// Batches bound for one peer, by the (limit, again) of the span they travel in.
pub(super) type Bundle = BTreeMap<(u64, bool), Vec<Arc<Batch>>>;

/// Sends batches to one peer as relay spans, as few messages as fit a datagram each (a batch
/// larger than one goes alone, over a stream).
pub(super) fn send_spans(
    inner: &Arc<Shared>,
    to: SocketAddr,
    spans: Bundle,
    budget: usize,
    reliable: bool,
) {
    /// A span's limit, flag and the length prefix of its batches.
    const SPAN_OVERHEAD: usize = 13;
    let mut message: Vec<Span> = Vec::new();
    let mut size = 0;
    for ((limit, again), batches) in spans {
        for batch in batches {
            let compact = Compact::from(&*batch);
            let len = postcard::experimental::serialized_size(&compact).unwrap_or(budget);
            let same_span = |m: &[Span]| {
                m.last()
                    .is_some_and(|s| s.limit == limit && s.again == again)
            };
            let add = len
                + if same_span(&message) {
                    0
                } else {
                    SPAN_OVERHEAD
                };
            if size + add > budget && !message.is_empty() {
                let full = std::mem::take(&mut message);
                send_bytes(inner, to, encode(inner, Msg::Relay(full)), reliable);
                size = 0;
            }
            if !same_span(&message) {
                size += SPAN_OVERHEAD;
                message.push(Span {
                    limit,
                    again,
                    batches: Vec::new(),
                });
            }
            size += len;
            message.last_mut().expect("a span").batches.push(compact);
        }
    }
    if !message.is_empty() {
        send_bytes(inner, to, encode(inner, Msg::Relay(message)), reliable);
    }
}

/// Queues peers' batches for the next flush to pass on.
pub(super) fn queue_relay(inner: &Shared, fresh: Vec<(u64, bool, Arc<Batch>)>) {
    if fresh.is_empty() {
        return;
    }
    let mut queue = inner.relay_out.lock().expect("relay queue");
    let room = RELAY_QUEUE.saturating_sub(queue.len());
    let dropped = fresh.len().saturating_sub(room);
    if dropped > 0 {
        inner
            .stats
            .relay_dropped
            .fetch_add(dropped as u64, Ordering::Relaxed);
    }
    queue.extend(fresh.into_iter().take(room));
    drop(queue);
    inner.relay_ready.notify_one();
}
