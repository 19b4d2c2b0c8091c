//! Finding peers: a [`Discover`] trait, one provider per method, and the CIDR filter.
//!
//! Providers only answer "which gossip addresses exist right now"; joining, ignoring self and
//! re-running on an interval are the node's job. Adding a method (ECS, Kubernetes, Consul...)
//! means adding a provider here and a variant in `shoal_config::DiscoveryMethod`.
//!
//! - `dns`: SRV and A/AAAA lookups through hickory-resolver, optionally against a given server.
//! - `ecs`: the RUNNING tasks of an ECS service, by the ECS API.
//! - `etcd`, `consul`: registries each node registers itself in (lease / TTL check) and lists.
//! - `udp`: signed announcements broadcast on the local network.
//! - `mdns`: `_shoal._tcp.local.` instances published and browsed on the gossip interface.
//! - `kubernetes`: the running pods matching a label selector, followed with a watch.
//! - `static_peers`: a fixed `host:port` list, names resolved at every round.
//! - `testsuite` (feature): a real DNS server (dnsmasq) on a loopback port for the tests.

#![forbid(unsafe_code)]

mod consul;
mod dns;
mod ecs;
mod etcd;
mod kubernetes;
mod mdns;
mod static_peers;
#[cfg(feature = "testsuite")]
pub mod testsuite;
mod udp;

use std::net::SocketAddr;

use futures_util::future::BoxFuture;
use shoal_config::{DiscoveryConfig, DiscoveryMethod};

pub use consul::Consul;
pub use dns::{DnsA, DnsSrv};
pub use ecs::{ECS_IAM_ACTIONS, Ecs};
pub use etcd::Etcd;
pub use kubernetes::{KUBERNETES_POD_VERBS, Kubernetes};
pub use mdns::{MDNS_SERVICE, Mdns};
pub use static_peers::StaticPeers;
pub use udp::Udp;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    #[error("{method} discovery: cannot resolve {name:?}: {message}")]
    Resolve {
        method: &'static str,
        name: String,
        message: String,
    },
    #[error("{method} discovery: no answer for {name:?} within {timeout_ms} ms")]
    Timeout {
        method: &'static str,
        name: String,
        timeout_ms: u128,
    },
    #[error("{method} discovery: {message}")]
    Invalid {
        method: &'static str,
        message: String,
    },
}

/// A source of peer gossip addresses.
pub trait Discover: Send + Sync {
    /// The method name used in logs and status (`static`, `dns-srv`, ...).
    fn method(&self) -> &'static str;

    /// The addresses this source knows right now (may include this node itself). Providers
    /// backed by a registry (etcd, Consul) also renew this node's registration here.
    fn discover(&self) -> BoxFuture<'_, Result<Vec<SocketAddr>, DiscoveryError>>;

    /// Whether an empty answer can be believed. Providers that learn about peers by
    /// listening (UDP, mDNS) know nothing until they have listened for a while; until then
    /// the node must not conclude that it is alone.
    fn settled(&self) -> bool {
        true
    }

    /// Called once when the node leaves: registry providers remove its registration so peers
    /// stop listing it at once.
    fn leave(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// How this node presents itself to providers that announce it (etcd, Consul, UDP).
#[derive(Debug, Clone)]
pub struct Announce {
    /// The node id (stable across restarts): the registration's key.
    pub id: String,
    pub cluster: String,
    /// The gossip address peers should join.
    pub addr: SocketAddr,
    /// The cluster's primary key: UDP announcements are signed with it.
    pub key: shoal_config::SecretKey,
}

/// Builds the provider for the configured method; `None` for `method = "none"`.
pub fn from_config(
    config: &DiscoveryConfig,
    me: Announce,
) -> Result<Option<Box<dyn Discover>>, DiscoveryError> {
    let name = || config.name.clone().unwrap_or_default();
    Ok(match config.method {
        DiscoveryMethod::None => None,
        DiscoveryMethod::Static => Some(Box::new(StaticPeers::new(
            config.peers.clone(),
            config.server,
            config.timeout,
        )?)),
        DiscoveryMethod::DnsSrv => Some(Box::new(DnsSrv::new(
            name(),
            config.server,
            config.timeout,
        )?)),
        DiscoveryMethod::DnsA => Some(Box::new(DnsA::new(
            name(),
            config.port,
            config.server,
            config.timeout,
        )?)),
        DiscoveryMethod::Ecs => Some(Box::new(Ecs::new(&config.ecs, config.port, config.timeout))),
        DiscoveryMethod::Kubernetes => Some(Box::new(Kubernetes::new(
            &config.kubernetes,
            config.port,
            config.timeout,
        ))),
        DiscoveryMethod::Etcd => Some(Box::new(Etcd::new(
            &config.etcd,
            me,
            config.timeout,
            config.interval,
        ))),
        DiscoveryMethod::Udp => Some(Box::new(Udp::new(&config.udp, me, config.interval))),
        DiscoveryMethod::Mdns => Some(Box::new(Mdns::new(me))),
        DiscoveryMethod::Consul => Some(Box::new(Consul::new(
            &config.consul,
            me,
            config.timeout,
            config.interval,
        )?)),
    })
}

/// Keeps addresses inside the allowed CIDR blocks (all of them when the list is empty) and
/// drops duplicates, preserving order.
pub fn filter_allowed(addrs: Vec<SocketAddr>, allowed: &[ipnet::IpNet]) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let inside = allowed.is_empty() || allowed.iter().any(|net| net.contains(&addr.ip()));
        if inside && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_filter_drops_addresses_outside_the_allowed_space() {
        let addrs: Vec<SocketAddr> = [
            "10.1.2.3:7946",
            "192.168.1.5:7946",
            "10.1.2.3:7946",
            "[fd00::1]:7946",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let allowed: Vec<ipnet::IpNet> =
            vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        let kept = filter_allowed(addrs.clone(), &allowed);
        assert_eq!(kept, vec![addrs[0], addrs[3]]);
        assert_eq!(
            filter_allowed(addrs.clone(), &[]).len(),
            3,
            "empty list allows all, dedups"
        );
    }
}
