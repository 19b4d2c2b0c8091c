//! DNS discovery against a real DNS server: dnsmasq on a loopback port, started per test.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use shoal_discovery::testsuite::Dnsmasq;
use shoal_discovery::{Discover, DiscoveryError, DnsA, DnsSrv, StaticPeers};

const TIMEOUT: Duration = Duration::from_millis(500);

fn sorted(mut v: Vec<SocketAddr>) -> Vec<String> {
    v.sort();
    v.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn srv_records_give_each_target_with_its_port() {
    let dns = Dnsmasq::start(&[
        "--host-record=n1.shoal.test,127.0.0.2",
        "--host-record=n2.shoal.test,127.0.0.3",
        "--srv-host=_gossip._tcp.shoal.test,n1.shoal.test,7946",
        "--srv-host=_gossip._tcp.shoal.test,n2.shoal.test,7947",
        // A target without an address is skipped, not fatal for the others.
        "--srv-host=_gossip._tcp.shoal.test,gone.shoal.test,7948",
    ]);
    let srv = DnsSrv::new("_gossip._tcp.shoal.test".into(), Some(dns.addr), TIMEOUT).unwrap();
    let found = srv.discover().await.unwrap();
    assert_eq!(sorted(found), ["127.0.0.2:7946", "127.0.0.3:7947"]);
}

#[tokio::test]
async fn a_records_use_the_configured_port_and_names_in_static_peers_resolve() {
    let dns = Dnsmasq::start(&[
        "--host-record=peers.shoal.test,127.0.0.4",
        "--host-record=peers.shoal.test,127.0.0.5",
        "--host-record=one.shoal.test,127.0.0.6",
    ]);
    let a = DnsA::new("peers.shoal.test".into(), 7000, Some(dns.addr), TIMEOUT).unwrap();
    assert_eq!(
        sorted(a.discover().await.unwrap()),
        ["127.0.0.4:7000", "127.0.0.5:7000"]
    );

    let peers = StaticPeers::new(
        vec![
            "one.shoal.test:7946".into(),
            "127.0.0.9:7950".into(),
            "missing.shoal.test:7946".into(),
        ],
        Some(dns.addr),
        TIMEOUT,
    )
    .unwrap();
    // The unresolvable name does not hide the others.
    assert_eq!(
        sorted(peers.discover().await.unwrap()),
        ["127.0.0.6:7946", "127.0.0.9:7950"]
    );
}

#[tokio::test]
async fn unknown_names_and_srv_targets_without_addresses_are_errors_naming_them() {
    let dns = Dnsmasq::start(&["--srv-host=_gossip._tcp.shoal.test,ghost.shoal.test,7946"]);
    let srv = DnsSrv::new("_gossip._tcp.shoal.test".into(), Some(dns.addr), TIMEOUT).unwrap();
    let err = srv.discover().await.unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::Resolve { name, .. } if name.starts_with("ghost.shoal.test")),
        "{err}"
    );
    // A name with no records (a headless Service before any pod is ready) is "nobody yet".
    let missing = DnsSrv::new("_none._tcp.shoal.test".into(), Some(dns.addr), TIMEOUT).unwrap();
    assert_eq!(missing.discover().await.unwrap(), Vec::<SocketAddr>::new());
}

#[tokio::test]
async fn a_dns_server_that_never_answers_times_out_within_the_bound() {
    // A real socket that receives the queries and never answers: hickory reports it as a
    // timeout or as a failed lookup, never hangs (each lookup is bounded).
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let srv = DnsSrv::new(
        "_gossip._tcp.shoal.test".into(),
        Some(silent.local_addr().unwrap()),
        Duration::from_millis(200),
    )
    .unwrap();
    let err = srv.discover().await.unwrap_err();
    assert!(
        matches!(
            err,
            DiscoveryError::Timeout { .. } | DiscoveryError::Resolve { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("_gossip._tcp.shoal.test"), "{err}");
}
