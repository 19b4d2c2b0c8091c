//! Shared state across real `shoal` processes: counters, cache and events reach every node,
//! a late joiner is replayed before it reports ready, strict mode admits exactly the limit, and
//! a partition heals to exact totals (inside a network namespace the test creates).

use std::time::Duration;

use serde_json::{Value, json};
use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

fn check_body(subject: &str, limit: u64, mode: &str) -> Value {
    json!({
        "subject": subject, "resource": "sensitive-bucket", "action": "read",
        "limit": limit, "mode": mode,
    })
}

fn counter_path(subject: &str) -> String {
    format!("/api/v1/state/counters?subject={subject}&resource=sensitive-bucket&action=read")
}

/// The key's last-minute total on one node.
async fn total(api: &Api, subject: &str) -> u64 {
    let (code, body) = api.get(&counter_path(subject)).await;
    assert_eq!(code, 200, "{body}");
    body["access_count"]["last_minute"].as_u64().unwrap()
}

/// Waits until every node reports `expected` for the key.
async fn wait_total_everywhere(apis: &[Api], subject: &str, expected: u64) {
    for (i, api) in apis.iter().enumerate() {
        wait_until(
            &format!("node {i} to count {expected} for {subject}"),
            WAIT,
            || async move { (total(api, subject).await == expected).then_some(()) },
        )
        .await;
    }
}

/// Waits until every node has run `rounds` more anti-entropy rounds than now, so duplicates
/// and repairs would have shown.
async fn let_anti_entropy_run(apis: &[Api], rounds: u64) {
    for api in apis {
        let start = api.get("/api/v1/state/status").await.1["anti_entropy_rounds"]
            .as_u64()
            .unwrap();
        wait_until("anti-entropy rounds", WAIT, || async move {
            let now = api.get("/api/v1/state/status").await.1["anti_entropy_rounds"]
                .as_u64()
                .unwrap();
            (now >= start + rounds).then_some(())
        })
        .await;
    }
}

fn occurrences(events: &Value, payload: &str) -> usize {
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["payload"] == payload)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_cache_and_events_reach_every_node_and_a_late_joiner() {
    let db = database().await;
    let c = Sandbox::cluster(&db.url, &["127.0.0.71", "127.0.0.72", "127.0.0.73"]).await;
    let apis = &c.apis;
    for api in apis {
        wait_until("3 peers in state", WAIT, || async move {
            (api.get("/api/v1/state/status").await.1["peers"] == 2).then_some(())
        })
        .await;
    }

    // Node i takes 2(i+1) requests: some through the check path, some as plain increments.
    for (i, api) in apis.iter().enumerate() {
        for _ in 0..(i + 1) {
            let (code, d) = api
                .post("/api/v1/state/check", check_body("alice", 1000, "eventual"))
                .await;
            assert_eq!(code, 200, "{d}");
            assert_eq!(d["allowed"], true);
        }
        let (code, body) = api
            .post(
                "/api/v1/state/increment",
                json!({"subject": "alice", "resource": "sensitive-bucket", "action": "read", "by": i + 1}),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
    wait_total_everywhere(apis, "alice", 12).await;
    let (_, body) = apis[0].get(&counter_path("alice")).await;
    assert_eq!(body["access_count"]["last_hour"], 12);
    let mut shares: Vec<u64> = body["contributions"]["last_minute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .collect();
    shares.sort();
    assert_eq!(shares, vec![2, 4, 6], "per-node contributions: {body}");

    // A cache entry and an event, each written on one node.
    let (code, body) = apis[0]
        .put(
            "/api/v1/state/cache/job-17",
            json!({"value": "running", "ttl_ms": 600000}),
        )
        .await;
    assert_eq!(code, 204, "{body}");
    let (code, body) = apis[1]
        .post(
            "/api/v1/state/events",
            json!({"topic": "revoke", "payload": "user=mallory"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    for api in apis {
        wait_until("cache entry everywhere", WAIT, || async move {
            let (code, body) = api.get("/api/v1/state/cache/job-17").await;
            (code == 200 && body["value"] == "running").then_some(())
        })
        .await;
        wait_until("event everywhere", WAIT, || async move {
            let (_, events) = api.get("/api/v1/state/events").await;
            (occurrences(&events, "user=mallory") > 0).then_some(())
        })
        .await;
    }

    // A fourth node joins late: it is ready only once replayed, and then already exact.
    let mut late = NodeSpec::new("n3", "127.0.0.74", &db.url);
    late.extra_toml = static_peers(&c.specs.iter().map(|s| s.gossip).collect::<Vec<_>>());
    let late_node = late.start_in_process();
    let ready = late_node.wait_ready(WAIT).await;
    let replay = &ready["state"]["replay"];
    assert_eq!(replay["done"], true, "{ready}");
    assert!(
        replay["detail"].as_str().unwrap().starts_with("replayed"),
        "{ready}"
    );
    let late_api = Api::login(&late_node.base_url()).await;
    assert_eq!(total(&late_api, "alice").await, 12, "replayed before ready");
    let (code, body) = late_api.get("/api/v1/state/cache/job-17").await;
    assert_eq!((code, &body["value"]), (200, &json!("running")));

    // Duplicated deliveries (anti-entropy, replay) changed nothing: exact totals, one event.
    let mut all = apis.to_vec();
    all.push(late_api);
    let_anti_entropy_run(&all, 4).await;
    for api in &all {
        assert_eq!(total(api, "alice").await, 12);
        let (_, events) = api.get("/api/v1/state/events").await;
        assert_eq!(occurrences(&events, "user=mallory"), 1, "{events}");
    }

    // Bad input is refused with what is wrong.
    let mut bad_window = check_body("bob", 5, "eventual");
    bad_window["window"] = json!("last_week");
    let big = "x".repeat(20_000);
    for (path, body, named) in [
        (
            "/api/v1/state/check",
            check_body("", 5, "eventual"),
            "subject",
        ),
        ("/api/v1/state/check", bad_window, "last_minute"),
        (
            "/api/v1/state/events",
            json!({"topic": "t", "payload": big}),
            "exceeds",
        ),
    ] {
        let (code, reply) = all[0].post(path, body).await;
        assert_eq!(code, 422, "{reply}");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{path}: {reply}");
    }

    // Four nodes in one process stop cleanly, each through its whole shutdown order.
    late_node.stop().await.expect("the late node stops cleanly");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_admits_exactly_the_limit_and_degrades_when_the_owner_dies() {
    let db = database().await;
    let (c, apis) = start_ready_cluster(&db.url, &["127.0.0.75", "127.0.0.76", "127.0.0.77"]).await;
    // Every node sees the same owner once all three are on each ring.
    let mut ids = Vec::new();
    for base in &c.bases {
        ids.push(cluster_status(base.clone()).await.unwrap()["cluster"]["local_id"].clone());
    }
    let owner = wait_until("one owner on every ring", WAIT, || async {
        let mut owners = Vec::new();
        for api in &apis {
            let peers = api.get("/api/v1/state/status").await.1["peers"].clone();
            if peers != 2 {
                return None;
            }
            owners.push(api.get(&counter_path("carol")).await.1["owner"].clone());
        }
        owners.dedup();
        (owners.len() == 1).then(|| owners[0].clone())
    })
    .await;
    let owner_index = ids.iter().position(|id| *id == owner).unwrap();

    // The seed policy's limit (5 per minute), requests round-robin over the three nodes.
    let mut passed = 0;
    for i in 0..15 {
        let (code, d) = apis[i % 3]
            .post("/api/v1/state/check", check_body("carol", 5, "strict"))
            .await;
        assert_eq!(code, 200, "{d}");
        assert_eq!(d["mode"], "strict", "{d}");
        assert_eq!(d["decided_by"], owner, "{d}");
        if d["allowed"] == true {
            passed += 1;
        }
    }
    assert_eq!(passed, 5, "strict mode admits exactly the limit");

    // Kill the owner: a strict check degrades to eventual and says so, then, once the owner is
    // declared dead, a new owner decides from the same counts (no reset).
    c.nodes[owner_index].signal("KILL");
    let other = (owner_index + 1) % 3;
    let degraded = wait_until("a degraded strict check", WAIT, || async {
        let (_, d) = apis[other]
            .post("/api/v1/state/check", check_body("carol", 5, "strict"))
            .await;
        d["degraded"].is_string().then_some(d)
    })
    .await;
    assert_eq!(degraded["mode"], "eventual");
    assert_eq!(degraded["allowed"], false, "{degraded}");
    assert!(
        degraded["degraded"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{degraded}"
    );
    let status = apis[other].get("/api/v1/state/status").await.1;
    assert!(status["strict_degraded"].as_u64().unwrap() >= 1);
    let handed_off = wait_until("a new owner", WAIT, || async {
        let (_, d) = apis[other]
            .post("/api/v1/state/check", check_body("carol", 5, "strict"))
            .await;
        (d["mode"] == "strict" && d["decided_by"] != owner).then_some(d)
    })
    .await;
    assert_eq!(handed_off["allowed"], false, "{handed_off}");
    assert_eq!(handed_off["count"], 5, "counts survive the handoff");
}

async fn increment(api: &Api, by: u64) {
    let body =
        json!({"subject": "dave", "resource": "sensitive-bucket", "action": "read", "by": by});
    let (code, b) = api.post("/api/v1/state/increment", body).await;
    assert_eq!(code, 200, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_heals_to_exact_totals() {
    if !in_private_namespaces("state::a_partition_heals_to_exact_totals") {
        return;
    }
    let db = database().await;
    let url = db
        .socket_url()
        .expect("a private PostgreSQL inside the namespace");
    let net = TestNetwork::new(3);
    let (_nodes, apis) = start_netns_cluster(&net, &url).await;
    let bases: Vec<String> = apis.iter().map(|a| a.base.clone()).collect();
    increment(&apis[0], 3).await;
    wait_total_everywhere(&apis, "dave", 3).await;

    // Node 2 loses the others; the majority declares it dead.
    net.isolate(2);
    let isolated_id = cluster_status(bases[2].clone()).await.unwrap()["cluster"]["local_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until("isolated node dead on the majority side", WAIT, || async {
        let s = cluster_status(bases[0].clone()).await?;
        let dead = s["cluster"]["members"]
            .as_array()?
            .iter()
            .any(|m| m["id"] == isolated_id.as_str() && m["state"] == "dead");
        dead.then_some(())
    })
    .await;
    // Both sides keep counting.
    for _ in 0..5 {
        increment(&apis[0], 2).await;
        increment(&apis[1], 1).await;
        increment(&apis[2], 1).await;
    }
    wait_total_everywhere(&apis[..2], "dave", 18).await;
    assert_eq!(
        total(&apis[2], "dave").await,
        8,
        "the isolated side counts alone"
    );

    net.reconnect(2);
    wait_total_everywhere(&apis, "dave", 23).await;
    let_anti_entropy_run(&apis, 4).await;
    for api in &apis {
        assert_eq!(
            total(api, "dave").await,
            23,
            "nothing lost, nothing counted twice"
        );
    }
}
