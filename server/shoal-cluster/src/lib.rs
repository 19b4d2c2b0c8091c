//! Cluster membership: encrypted SWIM gossip (memberlist) behind Shoal's own types.
//!
//! Nothing outside this crate names a memberlist type. Callers get a [`Cluster`] handle to
//! join peers, read [`Member`]s, follow [`ClusterChange`]s, publish this node's [`NodeMeta`],
//! rotate keys and leave.
//!
//! - `identity`: the node id, persisted in a node-key file so a restarted node keeps it.
//! - `meta`: the metadata each node gossips (version, HTTP address, start time, load).
//! - `delegate`: memberlist callbacks: our metadata out, heartbeat times in.
//! - `log_limit`: counts memberlist's warnings and errors and caps how many reach the log.
//! - `state_transport`: the cluster as `shoal-state`'s transport (members, changes, sends).
//! - `cluster`: the handle, the member table and the loop that turns state changes into
//!   events and operator log lines.
//! - `instruments`: members by state, local health, probe round trips, heartbeat ages and
//!   suspicions as metrics.

#![forbid(unsafe_code)]

mod cluster;
mod delegate;
mod identity;
mod instruments;
mod log_limit;
mod meta;
mod state_transport;

pub use cluster::{
    Cluster, ClusterChange, ClusterHealth, ClusterOptions, ClusterStatus, JoinOutcome,
    KeyringStatus, Member, MemberState, MembershipEvent, MembershipEventKind, PACKET_MESSAGE_MAX,
    SuspicionTimeouts,
};
pub use identity::NodeIdentity;
pub use instruments::register_metrics;
pub use log_limit::{GossipErrorCount, GossipErrors, GossipLogFilter};
/// Message payloads, so callers need not name memberlist's re-export.
pub use memberlist::bytes::Bytes;
pub use meta::{Load, META_MAX_BYTES, NodeMeta};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("node key file {path}: {message}")]
    NodeKey { path: String, message: String },
    #[error("cannot start gossip on {bind}: {message}")]
    Start { bind: String, message: String },
    #[error("node metadata is {size} bytes; gossip allows at most {META_MAX_BYTES}")]
    MetaTooLarge { size: usize },
    #[error("keyring: {0}")]
    Keyring(String),
    #[error("{0}")]
    Gossip(String),
}
