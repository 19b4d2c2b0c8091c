use std::time::Duration;

use super::Check;
use crate::model::{DiscoveryConfig, DiscoveryMethod};

/// `p`: where the section is, `discovery` or `clusters[N].discovery`.
pub(super) fn validate(d: &DiscoveryConfig, p: &str, check: &mut Check) {
    let k = |key: &str| format!("{p}.{key}");
    let method = d.method.as_str();
    let uses = |key: &str| match d.method {
        DiscoveryMethod::None => false,
        DiscoveryMethod::Static => matches!(key, "peers" | "server"),
        DiscoveryMethod::DnsSrv => matches!(key, "name" | "server"),
        DiscoveryMethod::DnsA => matches!(key, "name" | "port" | "server"),
        DiscoveryMethod::Ecs => matches!(key, "port" | "ecs"),
        DiscoveryMethod::Kubernetes => matches!(key, "port" | "kubernetes"),
        DiscoveryMethod::Etcd => key == "etcd",
        DiscoveryMethod::Consul => key == "consul",
        DiscoveryMethod::Udp => key == "udp",
        DiscoveryMethod::Mdns => false,
    };
    let set = [
        ("peers", !d.peers.is_empty()),
        ("name", d.name.is_some()),
        ("server", d.server.is_some()),
        ("ecs", d.ecs != Default::default()),
        ("kubernetes", d.kubernetes != Default::default()),
        ("etcd", d.etcd != Default::default()),
        ("consul", d.consul != Default::default()),
        ("udp", d.udp != Default::default()),
    ];
    for (key, present) in set {
        check(
            !present || uses(key),
            &k(key),
            format!("is not used by discovery method {method:?}"),
        );
    }
    match d.method {
        DiscoveryMethod::None => {}
        DiscoveryMethod::Static => {
            check(
                !d.peers.is_empty(),
                &k("peers"),
                "must list at least one peer as host:port for method \"static\"".into(),
            );
            for peer in &d.peers {
                let ok = peer.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                });
                check(
                    ok,
                    &k("peers"),
                    format!("entries must be host:port, got {peer:?}"),
                );
            }
        }
        DiscoveryMethod::Ecs => {
            let e = &d.ecs;
            for (key, value) in [
                ("cluster", &e.cluster),
                ("service", &e.service),
                ("region", &e.region),
            ] {
                if let Some(v) = value {
                    check(
                        !v.is_empty() && v.len() <= 255 && v.bytes().all(|b| b.is_ascii_graphic()),
                        &k(&format!("ecs.{key}")),
                        format!("must be 1-255 visible characters, got {v:?}"),
                    );
                }
            }
            if let Some(endpoint) = &e.endpoint {
                check(
                    endpoint.starts_with("http://") || endpoint.starts_with("https://"),
                    &k("ecs.endpoint"),
                    format!("must be an http:// or https:// URL, got {endpoint:?}"),
                );
            }
        }
        DiscoveryMethod::Kubernetes => {
            let kube = &d.kubernetes;
            if let Some(ns) = &kube.namespace {
                // RFC 1123 label: what Kubernetes accepts as a namespace name.
                let ok = !ns.is_empty()
                    && ns.len() <= 63
                    && ns
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !ns.starts_with('-')
                    && !ns.ends_with('-');
                check(
                    ok,
                    &k("kubernetes.namespace"),
                    format!(
                        "must be a namespace name (lower-case letters, digits, '-'), got {ns:?}"
                    ),
                );
            }
            let selector_ok = kube.label_selector.as_deref().is_some_and(|s| {
                !s.trim().is_empty() && s.len() <= 1024 && !s.contains(char::is_control)
            });
            check(
                selector_ok,
                &k("kubernetes.label_selector"),
                format!(
                    "must select the peer pods for method \"kubernetes\" (e.g. \
                     \"app.kubernetes.io/name=shoal\"), got {:?}",
                    kube.label_selector
                ),
            );
        }
        DiscoveryMethod::Etcd => {
            let e = &d.etcd;
            check(
                !e.endpoints.is_empty(),
                &k("etcd.endpoints"),
                "must list at least one etcd client URL for method \"etcd\"".into(),
            );
            for url in &e.endpoints {
                check(
                    url.starts_with("http://") && url.len() > 7,
                    &k("etcd.endpoints"),
                    format!(
                        "entries must be http:// URLs (TLS to etcd is not supported yet), got {url:?}"
                    ),
                );
            }
            if let Some(prefix) = &e.prefix {
                check(
                    prefix.starts_with('/') && prefix.ends_with('/') && prefix.len() <= 256,
                    &k("etcd.prefix"),
                    format!("must start and end with '/', got {prefix:?}"),
                );
            }
            registration_ttl(check, p, "etcd.ttl", e.ttl, d.interval);
        }
        DiscoveryMethod::Consul => {
            let c = &d.consul;
            if let Some(address) = &c.address {
                check(
                    address.starts_with("http://") && address.len() > 7,
                    &k("consul.address"),
                    format!(
                        "must be an http:// URL (TLS to the agent is not supported yet; use the \
                         local agent), got {address:?}"
                    ),
                );
            }
            if let Some(service) = &c.service {
                check(
                    !service.is_empty()
                        && service.len() <= 63
                        && service
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                    &k("consul.service"),
                    format!("must be 1-63 letters, digits or '-', got {service:?}"),
                );
            }
            registration_ttl(check, p, "consul.ttl", c.ttl, d.interval);
        }
        DiscoveryMethod::Mdns => {}
        DiscoveryMethod::Udp => {
            check(
                !d.udp.broadcast.is_empty() && d.udp.broadcast.len() <= 16,
                &k("udp.broadcast"),
                "must list 1 to 16 broadcast addresses with their port".into(),
            );
            for target in &d.udp.broadcast {
                check(
                    target.port() > 0 && target.is_ipv4(),
                    &k("udp.broadcast"),
                    format!("entries must be IPv4 broadcast addresses with a port, got {target}"),
                );
            }
            check(
                d.udp.listen.port() > 0,
                &k("udp.listen"),
                format!("must have a port, got {}", d.udp.listen),
            );
        }
        DiscoveryMethod::DnsSrv | DiscoveryMethod::DnsA => {
            let name_ok = d.name.as_deref().is_some_and(|n| {
                !n.is_empty() && n.len() <= 253 && !n.contains(char::is_whitespace)
            });
            check(
                name_ok,
                &k("name"),
                format!("must be a DNS name for method {method:?}, got {:?}", d.name),
            );
        }
    }
    check(
        d.port > 0,
        &k("port"),
        "must be a port number between 1 and 65535".into(),
    );
}

/// A registration must outlive at least two discovery rounds (it is renewed once per round),
/// or a node would vanish from its peers' lists between renewals.
fn registration_ttl(
    check: &mut Check,
    p: &str,
    key: &str,
    ttl: Option<Duration>,
    interval: Duration,
) {
    if let Some(ttl) = ttl {
        check(
            ttl >= interval * 2 && ttl <= Duration::from_secs(3600),
            &format!("{p}.{key}"),
            format!(
                "must be at least twice {p}.interval ({}) and at most 1h, got {}",
                humantime::format_duration(interval),
                humantime::format_duration(ttl)
            ),
        );
    }
}
