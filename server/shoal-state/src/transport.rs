//! What shared state needs from the cluster, and nothing more: who the members are and when
//! that changes, this node's id, and unreliable and reliable sends to a member's address.
//! `shoal-cluster` implements it over encrypted gossip; the simulator (feature `testsuite`)
//! over an in-memory network under paused time. Keeping the seam this small is what lets the
//! same state code run on three real processes and on a thousand simulated nodes.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;
use tokio::sync::mpsc;

/// A member's state as the membership layer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    Alive,
    /// Missed probes: maybe only slow, still sent to.
    Suspect,
    /// Declared failed, not yet forgotten: possibly just cut off.
    Dead,
    /// Left on purpose.
    Left,
}

/// One member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    pub address: SocketAddr,
    pub state: PeerState,
    /// This node itself.
    pub local: bool,
    /// The region the member counts in, when it is in several clusters (what shares of a
    /// global limit are split by).
    pub region: Option<String>,
}

/// A membership change worth acting on at once (the peer list is refreshed on a timer too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerChange {
    /// A member appeared or came back alive: it may have missed batches.
    Back(SocketAddr),
    /// Anything else (suspected, died, left, forgotten).
    Changed,
}

/// The outcome of a send: an error says why, for the log.
pub type Sent<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// The cluster as shared state uses it.
pub trait Transport: Send + Sync + 'static {
    /// This node's member id.
    fn local_id(&self) -> String;
    /// Every member this node knows, itself included.
    fn members(&self) -> Vec<Peer>;
    /// Membership changes from now on; called once.
    fn subscribe(&self) -> mpsc::UnboundedReceiver<PeerChange>;
    /// Messages other members sent this node; `None` once taken.
    fn take_inbox(&self) -> Option<mpsc::Receiver<Bytes>>;
    /// Received messages dropped because their reader fell behind.
    fn messages_dropped(&self) -> u64;
    /// The largest message [`Transport::send`] carries; larger ones go reliably.
    fn packet_max(&self) -> usize;
    /// Best effort, one datagram: cheap, for frequent messages whose loss is repaired.
    fn send(&self, to: SocketAddr, msg: Bytes) -> Sent<'_>;
    /// Delivered whole or failed, for messages larger than a datagram.
    fn send_reliable(&self, to: SocketAddr, msg: Bytes) -> Sent<'_>;
}
