use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::dns::Lookups;
use crate::{Discover, DiscoveryError};

/// A fixed list of `host:port` peers. Literal addresses are used as they are; names are
/// resolved at every round, so a peer that moves (a new pod IP) is found again.
pub struct StaticPeers {
    peers: Vec<(String, u16)>,
    lookups: Lookups,
}

impl StaticPeers {
    pub fn new(
        peers: Vec<String>,
        server: Option<SocketAddr>,
        timeout: Duration,
    ) -> Result<Self, DiscoveryError> {
        let peers = peers
            .into_iter()
            .map(|p| {
                let (host, port) = p.rsplit_once(':').ok_or_else(|| invalid(&p))?;
                let port = port.parse::<u16>().map_err(|_| invalid(&p))?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Ok((host.to_string(), port))
            })
            .collect::<Result<_, DiscoveryError>>()?;
        Ok(Self {
            peers,
            lookups: Lookups::new("static", server, timeout)?,
        })
    }
}

fn invalid(peer: &str) -> DiscoveryError {
    DiscoveryError::Invalid {
        method: "static",
        message: format!("peer {peer:?} is not host:port"),
    }
}

impl Discover for StaticPeers {
    fn method(&self) -> &'static str {
        "static"
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<SocketAddr>, DiscoveryError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut last_error = None;
            for (host, port) in &self.peers {
                if let Ok(ip) = host.parse() {
                    out.push(SocketAddr::new(ip, *port));
                    continue;
                }
                // One peer's name failing must not hide the others.
                match self.lookups.ips(host).await {
                    Ok(ips) => out.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, *port))),
                    Err(e) => last_error = Some(e),
                }
            }
            match (out.is_empty(), last_error) {
                (true, Some(e)) => Err(e),
                _ => Ok(out),
            }
        })
    }
}
