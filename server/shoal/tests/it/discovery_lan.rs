//! Local-network discovery (UDP broadcast, mDNS) on a real (virtual) LAN: nodes in network
//! namespaces made by the test, one bridge between them. In each test a host with another key
//! takes part too and is never joined.

use std::time::Duration;

use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

const UDP_TOML: &str = "\n[discovery]\nmethod = \"udp\"\ninterval = \"1s\"\n\
                        [discovery.udp]\nbroadcast = [\"10.77.0.255:7947\"]\n";
const MDNS_TOML: &str = "\n[discovery]\nmethod = \"mdns\"\ninterval = \"1s\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_find_each_other_by_signed_udp_broadcast() {
    if !in_private_namespaces("discovery_lan::nodes_find_each_other_by_signed_udp_broadcast") {
        return;
    }
    three_nodes_and_a_stranger(
        UDP_TOML,
        "udp discovery: ignoring a datagram: bad signature",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_find_each_other_by_mdns() {
    if !in_private_namespaces("discovery_lan::nodes_find_each_other_by_mdns") {
        return;
    }
    three_nodes_and_a_stranger(MDNS_TOML, "mdns discovery: ignoring an instance").await;
}

/// Three nodes and a fourth with another cluster key, all with the same discovery settings:
/// the three form a cluster from discovery alone, the stranger is refused (`refused` is in
/// the log) and never joined.
async fn three_nodes_and_a_stranger(toml: &str, refused: &str) {
    let db = database().await;
    let url = db
        .socket_url()
        .expect("a private PostgreSQL inside the namespace");
    let net = TestNetwork::new(4);
    let mut specs: Vec<NodeSpec> = (0..4)
        .map(|i| NodeSpec::in_netns(&format!("u{i}"), &net, i, &url))
        .collect();
    for spec in &mut specs {
        spec.extra_toml = toml.to_string();
    }
    // The fourth host broadcasts with another cluster key.
    specs[3].env.push((
        "SHOAL_CLUSTER_PSK".into(),
        "5151515151515151515151515151515151515151515151515151515151515151".into(),
    ));
    create_admin(&specs[0]);
    let mut nodes: Vec<Node> = specs.iter().map(NodeSpec::start).collect();
    let mut bases = Vec::new();
    for node in &mut nodes {
        bases.push(node.base_url().await);
    }
    for base in &bases[..3] {
        wait_until("three alive members", WAIT, || async {
            let status = cluster_status(base.clone()).await?;
            (status["cluster"]["healthy"] == 3).then_some(())
        })
        .await;
    }
    // The stranger's announcements are refused for their signature, and it is never joined.
    nodes[0].wait_for_log(refused, WAIT).await;
    // Every node found both others by itself (a cluster can form from one side's finds).
    for base in &bases[..3] {
        wait_until("both peers discovered", WAIT, || async {
            let status = cluster_status(base.clone()).await?;
            (status["discovery"]["last_found"] == 2).then_some(())
        })
        .await;
    }
    let status = cluster_status(bases[0].clone()).await.unwrap();
    assert_eq!(
        status["cluster"]["members"].as_array().unwrap().len(),
        3,
        "{status}"
    );
    let alone = cluster_status(bases[3].clone()).await.unwrap();
    assert_eq!(alone["cluster"]["healthy"], 1, "{alone}");
}
