//! Registry discovery: etcd (a real etcd from Debian's etcd-server) and Consul (a fixture built
//! from Consul's documented HTTP API, `scripts/fixtures/fake_consul_agent.py`: no Consul installs
//! here). Nodes register themselves, list each other, drop out when they leave or stop renewing,
//! and every failure is an error that names its cause.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use shoal_discovery::{Announce, Discover};
use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

fn me(i: usize) -> Announce {
    Announce {
        id: format!("node-{i}"),
        cluster: "test".into(),
        addr: format!("127.0.0.{}:79{i:02}", 90 + i).parse().unwrap(),
        key: shoal_config::SecretKey::parse(PSK_HEX).unwrap(),
    }
}

async fn sorted(p: &dyn Discover) -> Vec<SocketAddr> {
    let mut v = p.discover().await.unwrap();
    v.sort();
    v
}

fn etcd_config(url: &str, ttl: Option<Duration>) -> shoal_config::EtcdDiscovery {
    shoal_config::EtcdDiscovery {
        endpoints: vec![url.to_string()],
        prefix: None,
        ttl,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_nodes_register_list_each_other_and_drop_out_when_gone() {
    let etcd = Etcd::start().await;
    let timeout = Duration::from_secs(5);
    let nodes: Vec<shoal_discovery::Etcd> = (0..3)
        .map(|i| shoal_discovery::Etcd::new(&etcd_config(&etcd.url, None), me(i), timeout, timeout))
        .collect();
    assert_eq!(nodes[0].method(), "etcd");
    for n in &nodes {
        n.discover().await.unwrap();
    }
    let all: Vec<SocketAddr> = (0..3).map(|i| me(i).addr).collect();
    for n in &nodes {
        assert_eq!(sorted(n).await, all, "every node lists all three");
    }
    // Renewing (a later round) keeps the same registration: still three, no duplicates.
    assert_eq!(sorted(&nodes[1]).await, all);

    // A node that leaves revokes its lease: the others stop listing it at once.
    nodes[2].leave().await;
    assert_eq!(sorted(&nodes[0]).await, all[..2].to_vec());

    // A node that vanishes without leaving drops out when its lease expires.
    let short = shoal_discovery::Etcd::new(
        &etcd_config(&etcd.url, Some(Duration::from_secs(2))),
        me(7),
        timeout,
        timeout,
    );
    short.discover().await.unwrap();
    assert!(sorted(&nodes[0]).await.contains(&me(7).addr));
    drop(short);
    wait_until("the vanished node's lease to expire", WAIT, || async {
        (!sorted(&nodes[0]).await.contains(&me(7).addr)).then_some(())
    })
    .await;

    // A registration that is not host:port (written by hand) is skipped, not fatal.
    let http = reqwest::Client::new();
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let resp = http
        .post(format!("{}/v3/kv/put", etcd.url))
        .json(&json!({"key": b64("/shoal/test/nodes/garbage"), "value": b64("not an address")}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert_eq!(sorted(&nodes[0]).await, all[..2].to_vec());

    // No etcd at all: a clear error naming the endpoint.
    let closed = format!("http://127.0.0.1:{}", free_port("127.0.0.1"));
    let err = shoal_discovery::Etcd::new(&etcd_config(&closed, None), me(8), timeout, timeout)
        .discover()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("etcd discovery: no etcd endpoint answered") && err.contains(&closed),
        "{err}"
    );
    // The second endpoint answers when the first does not.
    let mut both = etcd_config(&closed, None);
    both.endpoints.push(etcd.url.clone());
    let fallback = shoal_discovery::Etcd::new(&both, me(9), timeout, timeout);
    assert!(sorted(&fallback).await.contains(&me(9).addr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_from_etcd_discovery_alone() {
    let etcd = Etcd::start().await;
    let pg = TestPostgres::start();
    let url = pg.create_database().await;
    let c = start_nodes(
        &url,
        &["127.0.0.94", "127.0.0.95", "127.0.0.96"],
        |_, spec, _| {
            spec.env
                .push(("SHOAL_DISCOVERY_ETCD_ENDPOINTS".into(), etcd.url.clone()));
            spec.extra_toml = "\n[discovery]\nmethod = \"etcd\"\ninterval = \"1s\"\n\
                           [discovery.etcd]\nttl = \"5s\"\n"
                .into();
        },
    )
    .await;
    let mut nodes = c.nodes;
    for (node, base) in nodes.iter_mut().zip(&c.bases) {
        node.wait_ready_where("ready", Duration::from_secs(60), |s, _| s == 200)
            .await;
        wait_until("three alive members", Duration::from_secs(60), || async {
            let status = cluster_status(base.clone()).await?;
            (status["cluster"]["healthy"] == 3).then_some(())
        })
        .await;
    }
    // A node that stops removes its registration on the way out.
    let http = reqwest::Client::new();
    let registrations = || async {
        use base64::Engine as _;
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let body: Value = http
            .post(format!("{}/v3/kv/range", etcd.url))
            .json(&json!({"key": b64(b"/shoal/shoal/nodes/"), "range_end": b64(b"/shoal/shoal/nodes0")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["kvs"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(registrations().await, 3);
    nodes[2].signal("TERM");
    nodes[2].wait_exit(Duration::from_secs(60)).await;
    assert_eq!(registrations().await, 2, "the stopped node deregistered");
}

fn consul_config(url: &str) -> shoal_config::ConsulDiscovery {
    shoal_config::ConsulDiscovery {
        address: Some(url.to_string()),
        service: Some("shoal".into()),
        ttl: Some(Duration::from_secs(2)),
        token_file: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_nodes_register_with_a_ttl_check_and_list_the_passing_ones() {
    let agent = ListeningProcess::python_script("fake_consul_agent.py", &["--port", "0"]);
    let timeout = Duration::from_secs(5);
    let nodes: Vec<shoal_discovery::Consul> = (0..3)
        .map(|i| {
            shoal_discovery::Consul::new(&consul_config(&agent.url), me(i), timeout, timeout)
                .unwrap()
        })
        .collect();
    assert_eq!(nodes[0].method(), "consul");
    for n in &nodes {
        n.discover().await.unwrap();
    }
    let all: Vec<SocketAddr> = (0..3).map(|i| me(i).addr).collect();
    assert_eq!(sorted(&nodes[0]).await, all);
    // A node of another cluster registered as the same service: neither side lists the other.
    let mut stranger = me(5);
    stranger.cluster = "other".into();
    let other =
        shoal_discovery::Consul::new(&consul_config(&agent.url), stranger, timeout, timeout)
            .unwrap();
    assert_eq!(sorted(&other).await, vec![me(5).addr]);
    assert_eq!(sorted(&nodes[0]).await, all);

    // Node 2 stops passing its check: after the TTL it is no longer listed.
    wait_until("node 2's check to turn critical", WAIT, || async {
        for n in &nodes[..2] {
            n.discover().await.unwrap();
        }
        (sorted(&nodes[0]).await == all[..2]).then_some(())
    })
    .await;
    // It comes back by passing its check again.
    nodes[2].discover().await.unwrap();
    assert_eq!(sorted(&nodes[0]).await, all);

    // The agent restarts and forgets everything: each node registers again on its next round.
    reqwest::Client::new()
        .post(format!("{}/_test/forget", agent.url))
        .send()
        .await
        .unwrap();
    for n in &nodes {
        n.discover().await.unwrap();
    }
    assert_eq!(sorted(&nodes[1]).await, all);

    // Leaving deregisters at once.
    nodes[1].leave().await;
    let services: Value = reqwest::get(format!("{}/_test/services", agent.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(services.get("node-1").is_none(), "{services}");
    assert_eq!(sorted(&nodes[0]).await, vec![all[0], all[2]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_errors_name_the_cause() {
    let agent = ListeningProcess::python_script(
        "fake_consul_agent.py",
        &["--port", "0", "--token", "s3cret-token"],
    );
    let timeout = Duration::from_secs(5);
    // Without the ACL token: refused, and the message says which permissions are needed.
    let err = shoal_discovery::Consul::new(&consul_config(&agent.url), me(0), timeout, timeout)
        .unwrap()
        .discover()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("consul discovery:"), "{err}");
    assert!(
        err.contains("permission denied") && err.contains("service:write"),
        "{err}"
    );
    // With the token from token_file it works.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let mut with_token = consul_config(&agent.url);
    with_token.token_file = Some(token);
    let ok = shoal_discovery::Consul::new(&with_token, me(0), timeout, timeout).unwrap();
    assert_eq!(sorted(&ok).await, vec![me(0).addr]);
    // An unreadable token file is refused when the provider is made.
    let mut missing = consul_config(&agent.url);
    missing.token_file = Some("/nonexistent/token".into());
    let err = shoal_discovery::Consul::new(&missing, me(0), timeout, timeout)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("cannot read token_file /nonexistent/token"),
        "{err}"
    );
    // No agent: the address is named.
    let closed = format!("http://127.0.0.1:{}", free_port("127.0.0.1"));
    let err = shoal_discovery::Consul::new(&consul_config(&closed), me(0), timeout, timeout)
        .unwrap()
        .discover()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("agent {closed} did not answer")),
        "{err}"
    );
}
