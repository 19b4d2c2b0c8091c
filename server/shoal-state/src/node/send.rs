use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Shared, Stats};
use crate::transport::Transport;
use crate::wire::{self, Msg};

/// Messages waiting for one peer before new ones are dropped.
const OUTBOUND_QUEUE: usize = 4096;

/// Bound on one send (a stream to a peer that stopped answering).
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn encode(inner: &Shared, msg: Msg) -> Bytes {
    let me = inner.node.get().map(String::as_str).unwrap_or_default();
    Bytes::from(wire::encode(me, msg))
}

pub(super) fn send(inner: &Arc<Shared>, to: SocketAddr, msg: Msg) {
    send_bytes(inner, to, encode(inner, msg), false);
}

/// Sends as a stream even when it would fit a datagram: repairs, whose loss would leave a gap
/// open until the next digest.
pub(super) fn send_reliably(inner: &Arc<Shared>, to: SocketAddr, msg: Msg) {
    send_bytes(inner, to, encode(inner, msg), true);
}

/// A message on its way to one peer; `reliable` forces a stream.
pub(super) struct Outgoing {
    bytes: Bytes,
    reliable: bool,
}

/// Queues a message for `to`. Each peer has its own queue and sender task, so messages to one
/// peer leave in order (no false gaps) and a peer that stopped answering (a stream connect
/// hanging on a partition) holds up nobody else; a full queue drops (anti-entropy repairs).
pub(super) fn send_bytes(inner: &Arc<Shared>, to: SocketAddr, bytes: Bytes, reliable: bool) {
    let Some(cluster) = inner.cluster.get() else {
        return;
    };
    inner
        .stats
        .bytes_sent
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    let mut queues = inner.outbound.lock().expect("outbound");
    let queue = queues.entry(to).or_insert_with(|| {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        #[expect(
            clippy::disallowed_methods,
            reason = "one peer's queue: ends when its sender goes (peer gone or state stopped)"
        )]
        tokio::spawn(send_queue(cluster.clone(), to, rx, inner.stats.clone()));
        tx
    });
    if queue.try_send(Outgoing { bytes, reliable }).is_err() {
        inner.stats.send_errors.fetch_add(1, Ordering::Relaxed);
        inner.stats.queue_full.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends one peer's messages in order: one datagram when it fits, an encrypted stream when it
/// does not (or must arrive), each bounded by [`SEND_TIMEOUT`]. Ends when the queue is dropped.
async fn send_queue(
    cluster: Arc<dyn Transport>,
    to: SocketAddr,
    mut queue: mpsc::Receiver<Outgoing>,
    stats: Arc<Stats>,
) {
    while let Some(Outgoing { bytes, reliable }) = queue.recv().await {
        let sending = async {
            if !reliable && bytes.len() <= cluster.packet_max() {
                cluster.send(to, bytes).await
            } else {
                cluster.send_reliable(to, bytes).await
            }
        };
        let failed = match tokio::time::timeout(SEND_TIMEOUT, sending).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("send to {to} timed out")),
        };
        if let Some(e) = failed {
            stats.send_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("shared state: {e}");
        }
    }
}

pub(super) fn chunks<T>(mut items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    while items.len() > size {
        let rest = items.split_off(size);
        out.push(items);
        items = rest;
    }
    if !items.is_empty() {
        out.push(items);
    }
    out
}
