//! The data plane: every node serves each resource on its own port, identifies the caller,
//! evaluates the operator's policies on cluster-wide counts, and forwards or blocks.
//!
//! - `routes`: what one config revision means for the data plane (ports, upstreams, compiled
//!   policies, credential index), rebuilt and swapped whole on every revision.
//! - `listeners`: one listener per resource port, started and drained as revisions come.
//! - `http_api`: the HTTP resource kind: API-key identity, decision, forwarding.
//! - `forward`: the pooled upstream client; bodies stream both ways, never buffered.

#![forbid(unsafe_code)]

mod forward;
mod http_api;
mod listeners;
mod routes;

pub use listeners::{DataPlane, DataPlaneStatus, ProxyOptions};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr} for resource {resource:?}: {message}")]
    Bind {
        addr: std::net::SocketAddr,
        resource: String,
        message: String,
    },
}
