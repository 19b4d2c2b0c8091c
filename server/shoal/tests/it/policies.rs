//! What policies can say beyond the seed policy, through a node of this process: shadow mode
//! (evaluated and audited as "would block", never enforced, until switched off).

use std::time::Duration;

use axum::Router;
use serde_json::{Value, json};
use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

const NO_EVE: &str = r#"package shadow.eve

import future.keywords.if

pre_request := {"action": "block", "type": "user", "message": "eve is not allowed"} if {
  input.user.id == "eve"
}
"#;

/// An upstream answering `ok` to everything.
async fn upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    spawn(async move { axum::serve(listener, Router::new().fallback(|| async { "ok" })).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_policy_audits_what_it_would_block_and_blocks_once_enforced() {
    let db = database().await;
    let ip = "127.0.0.141";
    let (sandbox, api, base) = sandbox_proxy_node(&db.url, ip, "").await;
    let node = &sandbox.nodes[0];
    let eve = api.user_with_api_key("eve").await;
    let bob = api.user_with_api_key("bob").await;
    let port = free_port(ip);
    api.http_resource("ledger", &format!("http://{}", upstream().await), port)
        .await;
    let (code, body) = api
        .put(
            "/api/v1/policies/no-eve",
            json!({"rego": NO_EVE, "shadow": true}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    node.wait_data_plane(body["revision"].as_i64().unwrap())
        .await;
    let (_, listed) = api.get("/api/v1/policies/no-eve").await;
    assert_eq!(listed["shadow"], true, "{listed}");

    let client = reqwest::Client::new();
    let get = |key: &str| {
        client
            .get(format!("http://{ip}:{port}/entries"))
            .header("x-api-key", key)
            .send()
    };
    for _ in 0..3 {
        let r = get(&eve).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "shadow mode never refuses");
    }
    assert_eq!(get(&bob).await.unwrap().status().as_u16(), 200);

    // Every request audited as allowed; eve's with what the shadow policy would have done,
    // and only those under the "would have blocked" filter.
    wait_until("four request lines", WAIT, || async {
        let (_, page) = api.get("/api/v1/audit?action=request&q=ledger").await;
        (page["entries"].as_array()?.len() == 4).then_some(())
    })
    .await;
    let (_, page) = api.get("/api/v1/audit?would_block=1&q=ledger").await;
    let lines = page["entries"].as_array().unwrap();
    assert_eq!(lines.len(), 3, "{page}");
    for line in lines {
        assert_eq!(line["outcome"], "allowed", "{line}");
        assert_eq!(line["actor"], "user:eve", "{line}");
        assert_eq!(
            line["detail"]["would_block"],
            json!([{
                "policy": "no-eve",
                "outcome": "blocked",
                "type": "user",
                "message": "eve is not allowed",
            }]),
            "{line}"
        );
    }
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("shoal_policy_would_block_total") && l.contains("no-eve"))
        .unwrap_or_else(|| panic!("no would-block series in\n{metrics}"));
    assert!(counted.ends_with(" 3"), "{counted}");

    // Switched to enforcing: the same request is refused, naming the policy.
    let (code, body) = api
        .put(
            "/api/v1/policies/no-eve",
            json!({"rego": NO_EVE, "shadow": false}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    node.wait_data_plane(body["revision"].as_i64().unwrap())
        .await;
    let r = get(&eve).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let refusal: Value = r.json().await.unwrap();
    assert_eq!(refusal["error"]["policy"], "no-eve", "{refusal}");
}

const FINANCE_ONLY: &str = r#"package finance.only

import future.keywords.if
import future.keywords.in

default pre_request := {"action": "block", "type": "default-deny", "message": "finance only"}

pre_request := {"action": "allow"} if {
  "finance" in input.user.groups
  input.user.type == "human"
  endswith(input.user.email, "@example.com")
  input.user.attributes.clearance >= 3
  input.resource.environment == "prod"
  input.resource.tags.team == "ledger"
  input.request.headers["x-purpose"] == "audit"
  input.request.query.view == "summary"
  not input.request.headers.authorization
  not input.request.headers["x-api-key"]
  input.node.name != ""
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_deny_policy_allows_a_group_on_what_users_resources_and_requests_carry() {
    let db = database().await;
    let ip = "127.0.0.142";
    let (sandbox, api, _) = sandbox_proxy_node(&db.url, ip, "").await;
    let node = &sandbox.nodes[0];
    let ana = api.user_with_api_key("ana").await;
    let bob = api.user_with_api_key("bob").await;
    let (code, body) = api
        .put(
            "/api/v1/users/ana",
            json!({"email": "ana@example.com", "type": "human", "groups": ["finance"],
                   "attributes": {"clearance": 4}}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = api
        .put(
            "/api/v1/users/bob",
            json!({"email": "bob@example.com", "groups": ["sales"], "attributes": {"clearance": 4}}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = api
        .put("/api/v1/users/eve", json!({"email": "eve at example"}))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("email"),
        "{body}"
    );
    let port = free_port(ip);
    let (code, body) = api
        .put(
            "/api/v1/resources/ledger",
            json!({"kind": "http", "upstream": format!("http://{}", upstream().await),
                   "port": port, "environment": "prod", "tags": {"team": "ledger"}}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = api
        .put(
            "/api/v1/policies/finance-only",
            json!({"rego": FINANCE_ONLY}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    node.wait_data_plane(body["revision"].as_i64().unwrap())
        .await;
    let (_, users) = api.get("/api/v1/users").await;
    let listed = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "ana")
        .unwrap();
    assert_eq!(listed["profile"]["groups"], json!(["finance"]), "{users}");

    let client = reqwest::Client::new();
    let get = |key: &str, purpose: &str| {
        client
            .get(format!("http://{ip}:{port}/books?view=summary"))
            .header("x-api-key", key)
            .header("x-purpose", purpose)
            .send()
    };
    assert_eq!(get(&ana, "audit").await.unwrap().status().as_u16(), 200);
    for (key, purpose, who) in [
        (&ana, "export", "ana, another purpose"),
        (&bob, "audit", "bob"),
    ] {
        let r = get(key, purpose).await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "{who}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "default-deny", "{who}: {body}");
    }
}

const ALLOWLISTED: &str = r#"package tiers.gate

import future.keywords.if
import future.keywords.in

pre_request := {"action": "block", "type": "not-allowlisted"} if {
  not input.user.id in data.allowlist.users
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_document_changed_at_run_time_takes_effect_on_every_node() {
    let db = database().await;
    let ips = ["127.0.0.143", "127.0.0.144", "127.0.0.145"];
    let c = Sandbox::cluster(&db.url, &ips).await;
    let api = &c.apis[0];
    let ana = api.user_with_api_key("ana").await;
    let bob = api.user_with_api_key("bob").await;
    let port = free_port(ips[0]);
    api.http_resource("ledger", &format!("http://{}", upstream().await), port)
        .await;
    let (code, body) = api
        .put(
            "/api/v1/data/allowlist",
            json!({"document": {"users": ["ana"]}, "description": "who may read"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = api
        .put("/api/v1/policies/gate", json!({"rego": ALLOWLISTED}))
        .await;
    assert_eq!(code, 200, "{body}");
    let revision = body["revision"].as_i64().unwrap();
    for node in &c.nodes {
        node.wait_data_plane(revision).await;
    }
    let client = reqwest::Client::new();
    let status = |ip: &str, key: &str| {
        client
            .get(format!("http://{ip}:{port}/books"))
            .header("x-api-key", key)
            .send()
    };
    for ip in ips {
        assert_eq!(
            status(ip, &ana).await.unwrap().status().as_u16(),
            200,
            "{ip}"
        );
        assert_eq!(
            status(ip, &bob).await.unwrap().status().as_u16(),
            403,
            "{ip}"
        );
    }

    // Bob added: every node allows him once it applies the revision the change made.
    let (code, body) = api
        .put(
            "/api/v1/data/allowlist",
            json!({"document": {"users": ["ana", "bob"]}}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let revision = body["revision"].as_i64().unwrap();
    for (node, ip) in c.nodes.iter().zip(ips) {
        node.wait_data_plane(revision).await;
        assert_eq!(
            status(ip, &bob).await.unwrap().status().as_u16(),
            200,
            "{ip}"
        );
    }

    // Refused at write time, with the reason, and nothing changes.
    for (name, body, words) in [
        (
            "huge",
            json!({"document": "x".repeat(1024 * 1024 + 1)}),
            "the limit is 1048576",
        ),
        ("Bad-Name", json!({"document": {}}), "lower-case letters"),
        (
            "tiers",
            json!({"document": {}}),
            "policy \"gate\" has its package under data.tiers",
        ),
    ] {
        let (code, refused) = api.put(&format!("/api/v1/data/{name}"), body).await;
        assert_eq!(code, 422, "{name}: {refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{name}: {message}");
    }
    let (code, refused) = api
        .request_raw(
            reqwest::Method::PUT,
            "/api/v1/data/broken",
            "{\"document\": {\"users\": [\"ana\"",
        )
        .await;
    assert_eq!(code, 422, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("document.users: EOF while parsing a list"),
        "{refused}"
    );
    let (_, listed) = api.get("/api/v1/data").await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["allowlist"]);
}

/// An S3 resource `objects` in front of moto on `port`, and a user with an S3 key pair: the
/// key as the API gave it.
async fn s3_resource_and_user(
    api: &Api,
    moto: &Moto,
    upstream_keys: &Value,
    port: u16,
    user: &str,
) -> Value {
    let (code, body) = api
        .put(
            "/api/v1/resources/objects",
            moto.resource_spec(upstream_keys, port),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    api.user_with_s3_key(user).await
}

const DOWNLOAD_RULES: &str = r#"package downloads

import rego.v1

pre_response := {"action": "block", "type": "too_large", "message": "downloads stop at 4 KiB"} if {
  input.request.operation == "GetObject"
  input.response.size > 4096
}

pre_response := {"action": "block", "type": "file_type", "message": "database files stay inside"} if {
  input.request.operation == "GetObject"
  input.response.content_type == "application/vnd.sqlite3"
}

pre_response := {"action": "block", "type": "classified", "message": "classified objects stay inside"} if {
  input.request.operation == "GetObject"
  input.response.metadata.classification == "secret"
}

pre_response := {"action": "block", "type": "plain_text", "message": "notes are not served as text"} if {
  input.resource.kind == "http"
  input.request.path == "/notes"
  startswith(input.response.content_type, "text/plain")
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_stage_blocks_downloads_by_size_type_and_metadata_before_the_body() {
    let db = database().await;
    let ip = "127.0.0.146";
    let (_sandbox, api, _) = sandbox_proxy_node(&db.url, ip, "").await;
    let node = &_sandbox.nodes[0];
    let (moto, upstream_keys) = Moto::start().await;
    let port = free_port(ip);
    let key = s3_resource_and_user(&api, &moto, &upstream_keys, port, "rita").await;
    // An HTTP API too: the same stage, refused in the kind's JSON.
    let http_port = free_port(ip);
    api.http_resource("notes", &format!("http://{}", upstream().await), http_port)
        .await;
    let hank = api.user_with_api_key("hank").await;
    let (code, body) = api
        .put(
            "/api/v1/policies/downloads",
            json!({"rego": DOWNLOAD_RULES}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    // A response rule that fails follows on_error as a request rule does: block refuses.
    let failing = r#"package odd
import rego.v1
pre_response := 42 if {
  input.request.operation == "GetObject"
  input.request.key == "odd.txt"
}
"#;
    let (code, body) = api
        .put(
            "/api/v1/policies/odd",
            json!({"rego": failing, "on_error": "block"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    node.wait_data_plane(body["revision"].as_i64().unwrap())
        .await;

    let put = |name: &str, bytes: u64, extra: Value| {
        let mut step = json!({"step": format!("put {name}"), "do": "put", "bucket": "reports", "key": name, "bytes": bytes});
        step.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        step
    };
    let get = |name: &str| json!({"step": format!("get {name}"), "do": "round_robin_gets", "bucket": "reports", "key": name, "count": 1});
    let results = run_steps(json!({
        "endpoints": [format!("http://{ip}:{port}")],
        "access_key_id": key["key_id"],
        "secret_access_key": key["secret"],
        "steps": [
            put("small.txt", 1000, json!({"content_type": "text/plain"})),
            put("big.bin", 10_000, json!({})),
            put("app.db", 1000, json!({"content_type": "application/vnd.sqlite3"})),
            put("plan.txt", 1000, json!({"metadata": {"classification": "secret"}})),
            put("odd.txt", 10, json!({})),
            get("small.txt"), get("big.bin"), get("app.db"), get("plan.txt"), get("odd.txt"),
        ],
    }))
    .await;
    for name in ["small.txt", "big.bin", "app.db", "plan.txt", "odd.txt"] {
        assert_eq!(results[&format!("put {name}")]["ok"], true, "{results:?}");
    }
    let client = reqwest::Client::new();
    let http_get = |path: &str| {
        client
            .get(format!("http://{ip}:{http_port}{path}"))
            .header("x-api-key", &hank)
            .send()
    };
    let notes = http_get("/notes").await.unwrap();
    assert_eq!(notes.status().as_u16(), 403);
    let refused: Value = notes.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "blocked", "{refused}");
    assert_eq!(refused["error"]["type"], "plain_text", "{refused}");
    assert_eq!(refused["error"]["policy"], "downloads", "{refused}");
    let other = http_get("/other").await.unwrap();
    assert_eq!(other.status().as_u16(), 200);
    assert_eq!(other.text().await.unwrap(), "ok");
    assert_eq!(results["get small.txt:1"]["bytes"], 1000, "{results:?}");
    for (name, message) in [
        ("big.bin", "downloads stop at 4 KiB"),
        ("app.db", "database files stay inside"),
        ("plan.txt", "classified objects stay inside"),
        ("odd.txt", "policy \"odd\" failed; the response is refused"),
    ] {
        let got = &results[&format!("get {name}:1")];
        assert_eq!(got["ok"], false, "{name}: {got}");
        assert_eq!(got["status"], 403, "{name}: {got}");
        assert_eq!(got["code"], "AccessDenied", "{name}: {got}");
        assert_eq!(got["message"], message, "{name}: {got}");
    }

    // Each refused download has a response line of its own after its request's, naming the
    // policy, the block type and what the upstream answered.
    let lines = wait_until("four response lines", WAIT, || async {
        let (_, page) = api.get("/api/v1/audit?action=response&q=objects").await;
        let lines = page["entries"].as_array()?.clone();
        (lines.len() == 4).then_some(lines)
    })
    .await;
    let by_key = |key: &str| {
        lines
            .iter()
            .find(|l| l["detail"]["key"] == key)
            .unwrap_or_else(|| panic!("no response line for {key}: {lines:?}"))
    };
    let big = by_key("big.bin");
    assert_eq!(big["outcome"], "blocked", "{big}");
    assert_eq!(big["actor"], "user:rita", "{big}");
    assert_eq!(big["detail"]["policy"], "downloads", "{big}");
    assert_eq!(big["detail"]["type"], "too_large", "{big}");
    assert_eq!(big["detail"]["upstream_status"], 200, "{big}");
    assert_eq!(big["detail"]["upstream_size"], 10_000, "{big}");
    assert_eq!(by_key("app.db")["detail"]["type"], "file_type");
    assert_eq!(by_key("plan.txt")["detail"]["type"], "classified");
    assert_eq!(by_key("odd.txt")["outcome"], "policy_error");
    // The request stage allowed each of them: its line says so.
    let (_, requests) = api.get("/api/v1/audit?action=request&q=big.bin").await;
    let outcomes: Vec<&str> = requests["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["detail"]["operation"] == "GetObject")
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["allowed"], "{requests}");
}

const BYTE_BUDGET: &str = r#"package budget

import rego.v1

pre_response := {"action": "block", "type": "byte_budget", "message": "1 MiB a minute"} if {
  input.request.operation == "GetObject"
  input.bucket.bytes_read.last_minute > 1048576
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_budget_across_three_nodes_blocks_the_read_that_would_cross_it() {
    let db = database().await;
    let ips = ["127.0.0.147", "127.0.0.148", "127.0.0.149"];
    let c = Sandbox::cluster(&db.url, &ips).await;
    let api = &c.apis[0];
    let (moto, upstream_keys) = Moto::start().await;
    let port = free_port(ips[0]);
    let sam = s3_resource_and_user(api, &moto, &upstream_keys, port, "sam").await;
    let object = 307_200u64; // 300 KiB: three fit in 1 MiB, the fourth crosses it
    let budget = 1_048_576u64;
    let nodes = &c.nodes;
    let set_policy = |enforcement: &'static str| async move {
        let (code, body) = api
            .put(
                "/api/v1/policies/budget",
                json!({"rego": BYTE_BUDGET, "enforcement": enforcement}),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        let revision = body["revision"].as_i64().unwrap();
        for node in nodes {
            node.wait_data_plane(revision).await;
        }
    };
    set_policy("strict").await;
    let endpoints: Vec<String> = ips.iter().map(|ip| format!("http://{ip}:{port}")).collect();
    let reads = |key: &Value, count: u64| {
        let (endpoints, key) = (endpoints.clone(), key.clone());
        async move {
            let results = run_steps(json!({
                "endpoints": endpoints,
                "access_key_id": key["key_id"],
                "secret_access_key": key["secret"],
                "steps": [
                    {"step": "put", "bucket": "reports", "key": "part.bin", "bytes": object},
                    {"step": "get", "do": "round_robin_gets", "bucket": "reports", "key": "part.bin", "count": count},
                ],
            }))
            .await;
            assert_eq!(results["put"]["ok"], true, "{results:?}");
            (1..=count)
                .map(|i| results[&format!("get:{i}")].clone())
                .collect::<Vec<Value>>()
        }
    };

    // Strict: each read's size is counted at the key's owner before any of it is sent, so
    // exactly the reads that fit are served, wherever they land.
    let outcomes = reads(&sam, 6).await;
    let served: Vec<bool> = outcomes.iter().map(|o| o["ok"] == true).collect();
    assert_eq!(
        served,
        [true, true, true, false, false, false],
        "{outcomes:?}"
    );
    for refused in &outcomes[3..] {
        assert_eq!(refused["code"], "AccessDenied", "{refused}");
        assert_eq!(refused["message"], "1 MiB a minute", "{refused}");
    }
    assert_eq!(outcomes[0]["bytes"], object);
    // Every node's counters show the bytes: the refused reads' sizes too, as refused requests
    // count against a request limit.
    for api in &c.apis {
        let counted = wait_until("the bytes on every node", WAIT, || async {
            let (_, counter) = api
                .get(
                    "/api/v1/state/counters?subject=sam&resource=objects/reports&action=bytes_read",
                )
                .await;
            let total = counter["access_count"]["last_minute"].as_u64()?;
            (total == 6 * object).then_some(total)
        })
        .await;
        assert_eq!(counted, 6 * object);
    }
    // The upload counted too, by its declared size.
    wait_until("the upload's bytes", WAIT, || async {
        let (_, written) = api
            .get("/api/v1/state/counters?subject=sam&resource=objects/reports&action=bytes_written")
            .await;
        (written["access_count"]["last_minute"] == object).then_some(())
    })
    .await;

    // Eventual: each node decides from its own view, which gossip brings up to date within
    // the flush interval; the documented bound is the reads the other nodes served in that
    // interval, here at most one each.
    set_policy("eventual").await;
    let eva = api.user_with_s3_key("eva").await;
    let outcomes = reads(&eva, 8).await;
    let served = outcomes.iter().filter(|o| o["ok"] == true).count() as u64;
    assert!(served * object >= budget - budget % object, "{outcomes:?}");
    assert!(
        served * object <= budget + (ips.len() as u64 - 1) * object,
        "served {served} reads: {outcomes:?}"
    );
    assert!(
        outcomes.iter().rev().take(2).all(|o| o["ok"] == false),
        "the last reads are refused once every node has seen the others' counts: {outcomes:?}"
    );
}
