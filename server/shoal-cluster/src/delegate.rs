//! memberlist callbacks. They run inside memberlist's tasks (some under its member-list lock),
//! so they only copy data in or out, never call back into memberlist.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memberlist::bytes::Bytes;
use memberlist::delegate::{NodeDelegate, PingDelegate};
use memberlist::proto::{Meta, NodeState};
use smol_str::SmolStr;
use tokio::sync::mpsc;

/// Hands memberlist this node's current metadata (encoded, size already checked) and passes
/// user messages (already decrypted and authenticated by memberlist) to the inbox.
#[derive(Clone)]
pub(crate) struct MetaDelegate {
    pub(crate) encoded: Arc<Mutex<Vec<u8>>>,
    pub(crate) inbox: mpsc::Sender<Bytes>,
    /// Messages dropped because the inbox was full (the reader fell behind).
    pub(crate) inbox_dropped: Arc<AtomicU64>,
}

impl NodeDelegate for MetaDelegate {
    async fn notify_message(&self, msg: Cow<'_, [u8]>) {
        // Runs in memberlist's receive loop: never wait here; a reader that fell behind
        // loses messages, which the state layer's anti-entropy repairs.
        if self.inbox.try_send(Bytes::copy_from_slice(&msg)).is_err() {
            self.inbox_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn node_meta(&self, limit: usize) -> Meta {
        let bytes = self.encoded.lock().expect("meta lock").clone();
        // `NodeMeta::encode` enforces the same limit, so this fallback is never expected;
        // an empty meta is safer than memberlist's panic on oversize.
        if bytes.len() > limit {
            return Meta::empty();
        }
        Meta::try_from(bytes).unwrap_or_else(|_| Meta::empty())
    }
}

/// When each peer last answered a probe, and how long it took.
#[derive(Clone, Default)]
pub(crate) struct HeartbeatDelegate {
    pub(crate) seen: Arc<Mutex<HashMap<SmolStr, Heartbeat>>>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Heartbeat {
    pub(crate) at: Instant,
    pub(crate) rtt: Duration,
}

impl PingDelegate for HeartbeatDelegate {
    type Id = SmolStr;
    type Address = SocketAddr;

    async fn ack_payload(&self) -> Bytes {
        Bytes::new()
    }

    async fn notify_ping_complete(
        &self,
        node: Arc<NodeState<SmolStr, SocketAddr>>,
        rtt: Duration,
        _payload: Bytes,
    ) {
        self.seen.lock().expect("heartbeat lock").insert(
            node.id().clone(),
            Heartbeat {
                at: Instant::now(),
                rtt,
            },
        );
    }
}
