//! Several nodes on one database and static peers, each ready with a logged-in API client.

use std::time::Duration;

use crate::{
    Api, FAST_PROBES, InProcessNode, Node, NodeSpec, TestNetwork, create_admin,
    create_admin_in_process,
};

pub struct Started {
    pub specs: Vec<NodeSpec>,
    pub nodes: Vec<Node>,
    pub bases: Vec<String>,
}

/// A node's index, its spec, and every node's gossip address: what a test sets per node.
pub type Configure<'a> = &'a dyn Fn(usize, &mut NodeSpec, &[std::net::SocketAddr]);

/// One spec per IP (nodes `n0`, `n1`, ...), all on one database, each set by `configure`.
fn specs(db_url: &str, ips: &[&str], configure: Configure) -> Vec<NodeSpec> {
    let mut specs: Vec<NodeSpec> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| NodeSpec::new(&format!("n{i}"), ip, db_url))
        .collect();
    let gossip: Vec<std::net::SocketAddr> = specs.iter().map(|s| s.gossip).collect();
    for (i, spec) in specs.iter_mut().enumerate() {
        configure(i, spec, &gossip);
    }
    specs
}

/// No peers, and the data plane on the node's own address with more `[proxy]` lines.
fn proxy_only(spec: &mut NodeSpec, proxy_toml: &str) {
    spec.extra_toml = format!("[proxy]\naddress = \"{}\"\n{proxy_toml}", spec.ip);
}

/// Static peers, and the data plane on the node's own address.
fn peers_and_proxy(_: usize, spec: &mut NodeSpec, all: &[std::net::SocketAddr]) {
    spec.extra_toml = format!(
        "{}\n[proxy]\naddress = \"{}\"\n",
        static_peers(all),
        spec.ip
    );
}

/// Starts one node process per IP, all on one database, each configured by `configure`.
pub async fn start_nodes(
    db_url: &str,
    ips: &[&str],
    configure: impl Fn(usize, &mut NodeSpec, &[std::net::SocketAddr]),
) -> Started {
    let specs = specs(db_url, ips, &configure);
    create_admin(&specs[0]);
    let mut nodes: Vec<Node> = specs.iter().map(NodeSpec::start).collect();
    let mut bases = Vec::new();
    for node in &mut nodes {
        bases.push(node.base_url().await);
    }
    Started {
        specs,
        nodes,
        bases,
    }
}

pub fn static_peers(peers: &[std::net::SocketAddr]) -> String {
    let list: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "\n[discovery]\nmethod = \"static\"\npeers = [{}]\ninterval = \"1s\"\n",
        list.join(", ")
    )
}

/// A static-peers cluster on `ips`, every node ready, with an admin API client per node.
/// Each node's data plane listens on the node's own address.
pub async fn start_ready_cluster(db_url: &str, ips: &[&str]) -> (Started, Vec<Api>) {
    let mut c = start_nodes(db_url, ips, peers_and_proxy).await;
    let mut apis = Vec::new();
    for (node, base) in c.nodes.iter_mut().zip(&c.bases) {
        node.wait_ready_where("ready", Duration::from_secs(60), |s, _| s == 200)
            .await;
        apis.push(Api::login(base).await);
    }
    (c, apis)
}

/// One node per namespace of `net`, static peers, every node ready, an API client per node.
pub async fn start_netns_cluster(net: &TestNetwork, db_url: &str) -> (Vec<Node>, Vec<Api>) {
    start_netns_cluster_with(net, db_url, FAST_PROBES).await
}

/// [`start_netns_cluster`] with other failure-detection settings (`probes`, `[cluster]` lines).
pub async fn start_netns_cluster_with(
    net: &TestNetwork,
    db_url: &str,
    probes: &str,
) -> (Vec<Node>, Vec<Api>) {
    let mut specs: Vec<NodeSpec> = (0..net.nodes())
        .map(|i| NodeSpec::in_netns(&format!("ns{i}"), net, i, db_url))
        .collect();
    for spec in &mut specs {
        spec.probes = probes.to_string();
    }
    let gossip: Vec<std::net::SocketAddr> = specs.iter().map(|s| s.gossip).collect();
    for (i, spec) in specs.iter_mut().enumerate() {
        // Resource ports on the management address, where the test can reach them.
        peers_and_proxy(i, spec, &gossip);
    }
    create_admin(&specs[0]);
    let mut nodes: Vec<Node> = specs.iter().map(NodeSpec::start).collect();
    let mut apis = Vec::new();
    for node in &mut nodes {
        let base = node.base_url().await;
        node.wait_ready_where("ready", Duration::from_secs(60), |s, _| s == 200)
            .await;
        apis.push(Api::login(&base).await);
    }
    (nodes, apis)
}

/// One node serving the data plane on `ip` (`proxy_toml`: more `[proxy]` lines), ready, with
/// an admin API client and its HTTP base URL.
pub async fn start_proxy_node(db_url: &str, ip: &str, proxy_toml: &str) -> (Node, Api, String) {
    let c = start_nodes(db_url, &[ip], |_, spec, _| proxy_only(spec, proxy_toml)).await;
    let mut node = c.nodes.into_iter().next().unwrap();
    node.wait_ready_where("ready", Duration::from_secs(30), |s, _| s == 200)
        .await;
    let base = c.bases[0].clone();
    let api = Api::login(&base).await;
    (node, api, base)
}

/// Nodes running in this process ([`InProcessNode`]), each ready, with an admin API client
/// per node.
pub struct Sandbox {
    pub specs: Vec<NodeSpec>,
    pub nodes: Vec<InProcessNode>,
    pub apis: Vec<Api>,
}

impl Sandbox {
    /// One node per IP on one database, each configured by `configure`.
    pub async fn start(
        db_url: &str,
        ips: &[&str],
        configure: impl Fn(usize, &mut NodeSpec, &[std::net::SocketAddr]),
    ) -> Sandbox {
        let specs = specs(db_url, ips, &configure);
        create_admin_in_process(&specs[0]).await;
        let nodes: Vec<InProcessNode> = specs.iter().map(NodeSpec::start_in_process).collect();
        let mut apis = Vec::new();
        for node in &nodes {
            node.wait_ready(Duration::from_secs(60)).await;
            apis.push(Api::login(&node.base_url()).await);
        }
        Sandbox { specs, nodes, apis }
    }

    /// A static-peers cluster as [`start_ready_cluster`] starts, in this process.
    pub async fn cluster(db_url: &str, ips: &[&str]) -> Sandbox {
        Self::start(db_url, ips, peers_and_proxy).await
    }

    /// Stops every node in its shutdown order; panics naming a node whose run failed.
    pub async fn stop(self) {
        for node in self.nodes {
            let name = node.name.clone();
            if let Err(e) = node.stop().await {
                panic!("{name} stopped with an error: {e:#}");
            }
        }
    }
}

/// [`start_proxy_node`] in this process.
pub async fn sandbox_proxy_node(
    db_url: &str,
    ip: &str,
    proxy_toml: &str,
) -> (Sandbox, Api, String) {
    let c = Sandbox::start(db_url, &[ip], |_, spec, _| proxy_only(spec, proxy_toml)).await;
    let api = c.apis[0].clone();
    let base = c.nodes[0].base_url();
    (c, api, base)
}
