//! Two regions of three `shoal` processes, each node in its region's cluster and in a global
//! cluster, in network namespaces the test creates: another cluster's messages at a region's
//! port are refused and counted, regional counts stay in their region, a
//! revocation published in one region is enforced in the other, a global limit holds across
//! both, and while the regions are cut apart each keeps serving with its share.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_cluster::{Cluster, ClusterOptions, NodeIdentity, NodeMeta};
use shoal_config::{ClusterConfig, SecretKey};
use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

/// Requests a minute the global policy allows, across both regions.
const GLOBAL_LIMIT: u64 = 20;

const GLOBAL_POLICY: &str = r#"package global.limit

import future.keywords.if

pre_request := { "action": "block", "type": "global-limit" } if {
  input.bucket.global_access_count.last_minute > 20
}
"#;

const EU_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const US_KEY: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const GLOBAL_KEY: &str = "3333333333333333333333333333333333333333333333333333333333333333";

fn region(i: usize) -> &'static str {
    if i < 3 { "eu" } else { "us" }
}

/// Node `i`'s clusters: its region's on port 7946 (the region's three nodes as peers), the
/// global one on 7947 (all six), and which service runs where.
fn clusters_toml(net: &TestNetwork, i: usize) -> String {
    let peers = |port: u16, of: &dyn Fn(usize) -> bool| {
        (0..net.nodes())
            .filter(|&j| of(j))
            .map(|j| format!("\"{}:{port}\"", net.cluster_ip(j)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ip = net.cluster_ip(i);
    let me = region(i);
    format!(
        "[[clusters]]\nname = \"{me}\"\nbind = \"{ip}:7946\"\n{FAST_PROBES}\
         [clusters.discovery]\nmethod = \"static\"\npeers = [{regional}]\n\n\
         [[clusters]]\nname = \"global\"\nbind = \"{ip}:7947\"\n\
         probe_interval = \"400ms\"\nprobe_timeout = \"200ms\"\n\
         [clusters.discovery]\nmethod = \"static\"\npeers = [{global}]\n\n\
         [services]\ncounters = \"{me}\"\ncache = \"{me}\"\nevents = \"global\"\n\
         global_counters = \"global\"\n\n",
        regional = peers(7946, &|j| region(j) == me),
        global = peers(7947, &|_| true),
    )
}

/// Members of `cluster` in `state` as node `base` sees them.
async fn members_in(base: &str, cluster: &str, state: &str) -> Option<usize> {
    let status = cluster_status(base.to_string()).await?;
    let entry = status["clusters"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == cluster)?
        .clone();
    Some(
        entry["status"]["members"]
            .as_array()?
            .iter()
            .filter(|m| m["state"] == state)
            .count(),
    )
}

async fn total(api: &Api, subject: &str) -> u64 {
    let (_, body) = api
        .get(&format!(
            "/api/v1/state/counters?subject={subject}&resource=ledger&action=read"
        ))
        .await;
    body["access_count"]["last_minute"].as_u64().unwrap_or(0)
}

/// One request through node `i`'s data plane: its status.
async fn request(client: &reqwest::Client, net: &TestNetwork, i: usize, key: &str) -> u16 {
    client
        .get(format!("http://{}:9100/object", net.ip(i)))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `rounds` requests to each of `nodes` in turn; how many each admitted.
async fn offer(
    client: &reqwest::Client,
    net: &TestNetwork,
    nodes: &[usize],
    key: &str,
    rounds: usize,
) -> Vec<u64> {
    let mut admitted = vec![0; nodes.len()];
    for _ in 0..rounds {
        for (n, &i) in nodes.iter().enumerate() {
            let code = request(client, net, i, key).await;
            assert!(code == 200 || code == 403, "node {i}: {code}");
            admitted[n] += u64::from(code == 200);
        }
    }
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_regions_keep_counts_apart_share_revocations_and_a_global_limit() {
    let name = "regions::two_regions_keep_counts_apart_share_revocations_and_a_global_limit";
    if !in_private_namespaces(name) {
        return;
    }
    let db = database().await;
    let url = db
        .socket_url()
        .expect("a private PostgreSQL inside the namespace");
    let net = TestNetwork::new(6);
    let specs: Vec<NodeSpec> = (0..6)
        .map(|i| {
            let mut spec = NodeSpec::in_netns(&format!("{}{i}", region(i)), &net, i, &url);
            spec.clusters_toml = Some(clusters_toml(&net, i));
            spec.extra_toml = format!("[proxy]\naddress = \"{}\"\n", spec.ip);
            let regional = if region(i) == "eu" { EU_KEY } else { US_KEY };
            spec.env = vec![
                (
                    format!("SHOAL_CLUSTERS_{}_PSK", region(i).to_uppercase()),
                    regional.to_string(),
                ),
                ("SHOAL_CLUSTERS_GLOBAL_PSK".into(), GLOBAL_KEY.into()),
            ];
            spec
        })
        .collect();
    create_admin(&specs[0]);
    let mut nodes: Vec<Node> = specs.iter().map(NodeSpec::start).collect();
    let mut apis = Vec::new();
    for node in &mut nodes {
        let base = node.base_url().await;
        node.wait_ready_where("ready", WAIT, |s, _| s == 200).await;
        apis.push(Api::login(&base).await);
    }
    // Each node in two clusters: three alive in its region's, six in the global one.
    for api in &apis {
        wait_until("both clusters formed", WAIT, || async {
            let regional = members_in(&api.base, region_of(api, &apis), "alive").await?;
            let global = members_in(&api.base, "global", "alive").await?;
            (regional == 3 && global == 6).then_some(())
        })
        .await;
    }
    let status = cluster_status(apis[0].base.clone()).await.unwrap();
    let clusters: Vec<&Value> = status["clusters"].as_array().unwrap().iter().collect();
    assert_eq!(
        clusters[0]["name"], "eu",
        "the counters' cluster first: {status}"
    );
    assert_eq!(
        clusters[1]["services"],
        json!(["events", "global_counters"]),
        "{status}"
    );
    assert_ne!(
        clusters[0]["status"]["keyring"]["primary"], clusters[1]["status"]["keyring"]["primary"],
        "each cluster its own key: {status}"
    );

    // The console's overview: each cluster's health and each region's members.
    let overview = wait_until("both regions on the overview", WAIT, || async {
        let (_, body) = apis[0].get("/api/v1/overview").await;
        (body["regions"]
            == json!([
                {"name": "eu", "alive": 3, "members": 3},
                {"name": "us", "alive": 3, "members": 3}
            ]))
        .then_some(body)
    })
    .await;
    let names: Vec<&str> = overview["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eu", "global"], "{overview}");
    let (code, body) = apis[0].get("/api/v1/cluster/members?cluster=global").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["members"].as_array().unwrap().len(), 6, "{body}");
    let (code, body) = apis[0].get("/api/v1/cluster/members?cluster=apac").await;
    assert_eq!(code, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[eu, global]"),
        "{body}"
    );

    // The global cluster's key and name at eu's regional port: refused (each cluster
    // authenticates its own), counted, and the region's membership unchanged.
    let gossip_errors = |status: &Value| {
        status["gossip_errors"].as_array().map_or(0, |kinds| {
            kinds
                .iter()
                .map(|k| k["count"].as_u64().unwrap_or(0))
                .sum::<u64>()
        })
    };
    let before = gossip_errors(&cluster_status(apis[0].base.clone()).await.unwrap());
    let mut options = ClusterOptions::from_config(&ClusterConfig::default());
    options.name = "global".into();
    options.bind = "10.77.0.1:7947".parse().unwrap();
    options.keys = vec![SecretKey::parse(GLOBAL_KEY).unwrap()];
    let stray = Cluster::start(
        options,
        &NodeIdentity::random(),
        NodeMeta {
            node_name: "stray".into(),
            version: "test".into(),
            http: "10.77.0.1:1".into(),
            started_at_ms: 0,
            load: Default::default(),
            region: Some("eu".into()),
        },
    )
    .await
    .unwrap();
    let regional_port: std::net::SocketAddr =
        format!("{}:7946", net.cluster_ip(0)).parse().unwrap();
    let outcome = stray.join(&[regional_port]).await;
    assert!(outcome.joined.is_empty(), "{outcome:?}");
    wait_until("the stray messages counted", WAIT, || async {
        let status = cluster_status(apis[0].base.clone()).await?;
        (gossip_errors(&status) > before).then_some(())
    })
    .await;
    assert_eq!(members_in(&apis[0].base, "eu", "alive").await, Some(3));
    stray.shutdown().await;

    // Regional counts stay in their region: counted in eu, seen in eu, not in us, even after
    // a global event sent later has reached us.
    let (code, body) = apis[0]
        .post(
            "/api/v1/state/increment",
            json!({"subject": "erin", "resource": "ledger", "action": "read", "by": 5}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    for api in &apis[..3] {
        wait_until("eu counts 5", WAIT, || async {
            (total(api, "erin").await == 5).then_some(())
        })
        .await;
    }
    let (code, body) = apis[0]
        .post(
            "/api/v1/state/events",
            json!({"topic": "notice", "payload": "after the increment"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    for api in &apis[3..] {
        wait_until("the later event in us", WAIT, || async {
            let (_, events) = api.get("/api/v1/state/events").await;
            events["events"]
                .as_array()?
                .iter()
                .any(|e| e["payload"] == "after the increment")
                .then_some(())
        })
        .await;
        assert_eq!(total(api, "erin").await, 0, "an eu count crossed into us");
    }

    // A resource every node serves, and two users.
    let listener = tokio::net::TcpListener::bind("10.77.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    spawn(
        async move { axum::serve(listener, axum::Router::new().fallback(|| async { "ok" })).await },
    );
    let mallory = apis[0].user_with_api_key("mallory").await;
    let carol = apis[0].user_with_api_key("carol").await;
    let dave = apis[0].user_with_api_key("dave").await;
    apis[0]
        .http_resource("ledger", &format!("http://{upstream}"), 9100)
        .await;
    let (code, body) = apis[0]
        .put("/api/v1/policies/global", json!({"rego": GLOBAL_POLICY}))
        .await;
    assert_eq!(code, 200, "{body}");
    let revision = body["revision"].as_i64().unwrap();
    for node in &mut nodes {
        node.wait_data_plane(revision).await;
    }
    let client = reqwest::Client::new();

    // A revocation published in eu is enforced on every node of us.
    for i in 3..6 {
        assert_eq!(request(&client, &net, i, &mallory).await, 200);
    }
    let (code, body) = apis[1]
        .post(
            "/api/v1/state/events",
            json!({"topic": "revoke", "payload": "user=mallory"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    for i in 3..6 {
        wait_until("mallory refused in us", WAIT, || async {
            (request(&client, &net, i, &mallory).await == 403).then_some(())
        })
        .await;
    }
    let (code, body) = apis[1]
        .post(
            "/api/v1/state/events",
            json!({"topic": "revoke", "payload": "mallory"}),
        )
        .await;
    assert_eq!(code, 422, "a malformed revocation is refused: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("user=NAME"),
        "{body}"
    );

    // A global limit across both regions: every node asked in turn, ten rounds.
    let all: Vec<usize> = (0..6).collect();
    let admitted: u64 = offer(&client, &net, &all, &carol, 10).await.iter().sum();
    println!("global limit {GLOBAL_LIMIT}: {admitted} of 60 admitted across two regions");
    // The documented bound: each node may admit one request before its region's latest
    // count reaches it.
    assert!(
        (GLOBAL_LIMIT / 2..=GLOBAL_LIMIT + 6).contains(&admitted),
        "{admitted} admitted against a global limit of {GLOBAL_LIMIT}"
    );

    // The regions cut apart: each side sees the other's global members dead, keeps counting
    // in its region, and holds to half of the global limit.
    net.partition(&[0, 1, 2], &[3, 4, 5]);
    for api in &apis {
        wait_until("the other region dead", WAIT, || async {
            (members_in(&api.base, "global", "dead").await? == 3).then_some(())
        })
        .await;
    }
    let (_, overview) = apis[0].get("/api/v1/overview").await;
    assert_eq!(
        overview["regions"][1],
        json!({"name": "us", "alive": 0, "members": 3}),
        "{overview}"
    );
    let (code, _) = apis[3]
        .post(
            "/api/v1/state/increment",
            json!({"subject": "uma", "resource": "ledger", "action": "read", "by": 2}),
        )
        .await;
    assert_eq!(code, 200);
    wait_until("us counts during the split", WAIT, || async {
        (total(&apis[4], "uma").await == 2).then_some(())
    })
    .await;
    let eu: u64 = offer(&client, &net, &[0, 1, 2], &dave, 6)
        .await
        .iter()
        .sum();
    let us: u64 = offer(&client, &net, &[3, 4, 5], &dave, 6)
        .await
        .iter()
        .sum();
    println!("split: eu admitted {eu}, us admitted {us} against {GLOBAL_LIMIT}");
    assert!(eu > 0 && us > 0, "each region keeps serving: {eu} | {us}");
    assert!(
        eu + us <= GLOBAL_LIMIT + 6,
        "{eu} + {us} admitted by the two sides of a split against {GLOBAL_LIMIT}"
    );
    net.heal();
    for api in &apis {
        wait_until("the regions back together", WAIT, || async {
            (members_in(&api.base, "global", "alive").await? == 6).then_some(())
        })
        .await;
    }

    // Strict: the global key's owner counts, wherever it is, and every answer says the
    // decision waited for it; the limit is then exact.
    let (code, body) = apis[0]
        .put(
            "/api/v1/policies/global",
            json!({"rego": GLOBAL_POLICY, "enforcement": "strict"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let revision = body["revision"].as_i64().unwrap();
    for node in &mut nodes {
        node.wait_data_plane(revision).await;
    }
    let sam = apis[0].user_with_api_key("sam").await;
    let revision = apis[0].get("/api/v1/config").await.1["revision"]
        .as_i64()
        .unwrap();
    for node in &mut nodes {
        node.wait_data_plane(revision).await;
    }
    let mut admitted = 0;
    for n in 0..30 {
        let i = n % 6;
        let r = client
            .get(format!("http://{}:9100/object", net.ip(i)))
            .header("x-api-key", &sam)
            .send()
            .await
            .unwrap();
        let note = r.headers()["x-shoal-global-decision"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            note.starts_with("strict; decided_by=") && note.contains("cross_region_wait_ms="),
            "node {i}: {note}"
        );
        admitted += u64::from(r.status() == 200);
    }
    assert_eq!(admitted, GLOBAL_LIMIT, "a strict global limit is exact");
}

/// The region of the node `api` talks to.
fn region_of<'a>(api: &Api, apis: &'a [Api]) -> &'a str {
    let i = apis.iter().position(|a| a.base == api.base).unwrap();
    region(i)
}
