//! The node's side of clustering: start gossip, keep discovering and joining peers, decide
//! whether the node has joined or runs alone (what `/ready` waits for), reload the key file
//! for rotation, and publish the load figures other nodes see.
//!
//! - `start`: [`start`] (gossip, then every loop below as a named task of one shutdown stage)
//!   and [`identity`], the node id kept in the node-key file.
//! - `join`: the discover-and-join loop and [`JoinState`], joined or alone.
//! - `keys`: the key-file reload.
//! - `load`: CPU, memory, requests in flight and state figures in the node's metadata.
//! - `instruments`: discovery rounds and failures as metrics.

#![forbid(unsafe_code)]

mod instruments;
mod join;
mod keys;
mod load;
mod start;

pub use instruments::register_metrics;
pub use join::{DiscoveryStats, JoinState};
pub use start::{Membership, StartOptions, identity, start};

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("cannot start gossip on {bind} ({key})")]
    Gossip {
        bind: std::net::SocketAddr,
        key: String,
        #[source]
        source: shoal_cluster::ClusterError,
    },
    #[error(transparent)]
    NodeKey(shoal_cluster::ClusterError),
    #[error(transparent)]
    Discovery(#[from] shoal_discovery::DiscoveryError),
    #[error("cluster.psk: no key configured")]
    NoKey,
}
