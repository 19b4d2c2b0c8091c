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
