use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::future::BoxFuture;
use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use crate::{Discover, DiscoveryError};

/// A resolver bound to one discovery method, with its timeout and no answer cache: discovery
/// polls, and a cached answer would hide a node that just appeared or went away.
pub(crate) struct Lookups {
    method: &'static str,
    resolver: Resolver<TokioRuntimeProvider>,
    timeout: Duration,
}

impl Lookups {
    pub(crate) fn new(
        method: &'static str,
        server: Option<SocketAddr>,
        timeout: Duration,
    ) -> Result<Self, DiscoveryError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match server {
            Some(server) => {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut c| {
                        c.port = server.port();
                        c
                    })
                    .collect();
                let ns = NameServerConfig::new(server.ip(), true, connections);
                Resolver::builder_with_config(ResolverConfig::from_name_servers(vec![ns]), provider)
            }
            None => Resolver::builder(provider).map_err(|e| DiscoveryError::Invalid {
                method,
                message: format!("cannot read the system resolver configuration: {e}"),
            })?,
        };
        let options = builder.options_mut();
        options.timeout = timeout;
        options.attempts = 1;
        options.cache_size = 0;
        let resolver = builder.build().map_err(|e| DiscoveryError::Invalid {
            method,
            message: format!("cannot build a DNS resolver: {e}"),
        })?;
        Ok(Self {
            method,
            resolver,
            timeout,
        })
    }

    fn timeout_error(&self, name: &str) -> DiscoveryError {
        DiscoveryError::Timeout {
            method: self.method,
            name: name.to_string(),
            timeout_ms: self.timeout.as_millis(),
        }
    }

    fn resolve_error(&self, name: &str, e: impl std::fmt::Display) -> DiscoveryError {
        DiscoveryError::Resolve {
            method: self.method,
            name: name.to_string(),
            message: e.to_string(),
        }
    }

    /// A and AAAA records of `name`. The whole lookup is bounded, retries included.
    pub(crate) async fn ips(&self, name: &str) -> Result<Vec<IpAddr>, DiscoveryError> {
        let lookup = tokio::time::timeout(self.timeout * 2, self.resolver.lookup_ip(name))
            .await
            .map_err(|_| self.timeout_error(name))?
            .map_err(|e| self.resolve_error(name, e))?;
        Ok(lookup.iter().collect())
    }

    /// SRV or A/AAAA answers of `name`: an empty list when the name exists but has no records
    /// (a headless Service with no ready pod yet), an error for anything else.
    async fn answers<T>(
        &self,
        name: &str,
        lookup: impl std::future::Future<Output = Result<T, hickory_resolver::net::NetError>>,
    ) -> Result<Option<T>, DiscoveryError> {
        match tokio::time::timeout(self.timeout * 2, lookup).await {
            Err(_) => Err(self.timeout_error(name)),
            Ok(Err(e)) if e.is_no_records_found() => Ok(None),
            Ok(Err(e)) => Err(self.resolve_error(name, e)),
            Ok(Ok(answers)) => Ok(Some(answers)),
        }
    }

    /// SRV targets and ports of `name`, each target resolved to its addresses. A target that
    /// does not resolve is skipped (and reported only if no target resolves).
    async fn srv(&self, name: &str) -> Result<Vec<SocketAddr>, DiscoveryError> {
        let Some(lookup) = self.answers(name, self.resolver.srv_lookup(name)).await? else {
            return Ok(Vec::new());
        };
        let targets: BTreeSet<(String, u16)> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => Some((srv.target.to_ascii(), srv.port)),
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        let mut last_error = None;
        for (target, port) in targets {
            match self.ips(&target).await {
                Ok(ips) => out.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, port))),
                Err(e) => last_error = Some(e),
            }
        }
        match (out.is_empty(), last_error) {
            (true, Some(e)) => Err(e),
            _ => Ok(out),
        }
    }
}

/// Peers from DNS SRV records (the record's port is the gossip port).
pub struct DnsSrv {
    name: String,
    lookups: Lookups,
}

impl DnsSrv {
    pub fn new(
        name: String,
        server: Option<SocketAddr>,
        timeout: Duration,
    ) -> Result<Self, DiscoveryError> {
        Ok(Self {
            name,
            lookups: Lookups::new("dns-srv", server, timeout)?,
        })
    }
}

impl Discover for DnsSrv {
    fn method(&self) -> &'static str {
        "dns-srv"
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<SocketAddr>, DiscoveryError>> {
        Box::pin(self.lookups.srv(&self.name))
    }
}

/// Peers from DNS A/AAAA records, all on one gossip port.
pub struct DnsA {
    name: String,
    port: u16,
    lookups: Lookups,
}

impl DnsA {
    pub fn new(
        name: String,
        port: u16,
        server: Option<SocketAddr>,
        timeout: Duration,
    ) -> Result<Self, DiscoveryError> {
        Ok(Self {
            name,
            port,
            lookups: Lookups::new("dns-a", server, timeout)?,
        })
    }
}

impl Discover for DnsA {
    fn method(&self) -> &'static str {
        "dns-a"
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<SocketAddr>, DiscoveryError>> {
        Box::pin(async move {
            let lookup = self.lookups.resolver.lookup_ip(self.name.as_str());
            let Some(ips) = self.lookups.answers(&self.name, lookup).await? else {
                return Ok(Vec::new());
            };
            Ok(ips
                .iter()
                .map(|ip| SocketAddr::new(ip, self.port))
                .collect())
        })
    }
}
