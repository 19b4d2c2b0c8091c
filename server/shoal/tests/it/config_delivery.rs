//! Config delivery from PostgreSQL to running nodes: NOTIFY, the revision poll, validation at
//! load, and what happens while the control plane is away. The nodes run in this process.

use std::time::Duration;

use serde_json::json;
use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(20);

async fn node_with_admin(url: &str, ip: &str) -> (NodeSpec, InProcessNode, Api) {
    let spec = NodeSpec::new("n1", ip, url);
    create_admin_in_process(&spec).await;
    let node = spec.start_in_process();
    node.wait_ready(WAIT).await;
    let api = Api::login(&node.base_url()).await;
    (spec, node, api)
}

fn insert_policy_sql(name: &str, rego: &str) -> String {
    format!("INSERT INTO policies (name, rego) VALUES ('{name}', $rego${rego}$rego$)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_inserted_changed_deleted_in_sql_is_applied() {
    let db = database().await;
    let (_spec, node, api) = node_with_admin(&db.url, "127.0.0.2").await;

    sql(&db.url, &insert_policy_sql("seed", SEED_POLICY)).await;
    let rev = head_revision(&db.url).await;
    let ready = node.wait_revision(rev, WAIT).await;
    assert_eq!(ready["config"]["applied_via"], "notification");
    assert_eq!(api.policies_in_force().await, ["seed"]);

    let changed = SEED_POLICY.replace("> 5", "> 7");
    sql(
        &db.url,
        &format!("UPDATE policies SET rego = $rego${changed}$rego$ WHERE name = 'seed'"),
    )
    .await;
    node.wait_revision(rev + 1, WAIT).await;
    let (_, config) = api.get("/api/v1/config").await;
    assert!(
        config["policies"][0]["rego"]
            .as_str()
            .unwrap()
            .contains("> 7")
    );

    sql(&db.url, "DELETE FROM policies WHERE name = 'seed'").await;
    node.wait_revision(rev + 2, WAIT).await;
    assert!(api.policies_in_force().await.is_empty());

    // Hand-written changes are attributed to the database role in the revision history.
    let (_, revisions) = api.get("/api/v1/revisions?limit=1").await;
    assert_eq!(revisions[0]["actor"], "sql:postgres");
    assert_eq!(revisions[0]["summary"], "DELETE policies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_writes_are_validated_stored_once_and_audited() {
    let db = database().await;
    let (_spec, node, api) = node_with_admin(&db.url, "127.0.0.3").await;

    let (status, body) = api
        .put(
            "/api/v1/policies/seed",
            json!({ "rego": SEED_POLICY, "enforcement": "strict" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rev = body["revision"].as_i64().unwrap();
    node.wait_revision(rev, WAIT).await;
    let (_, config) = api.get("/api/v1/config").await;
    assert_eq!(config["policies"][0]["enforcement"], "strict");
    assert_eq!(
        config["policies"][0]["on_unreachable"], "local",
        "the default"
    );

    // on_unreachable is stored, read back and delivered like the other settings.
    let (status, body) = api
        .put(
            "/api/v1/policies/seed",
            json!({ "rego": SEED_POLICY, "enforcement": "strict", "on_unreachable": "share" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rev = body["revision"].as_i64().unwrap();
    let (_, stored) = api.get("/api/v1/policies/seed").await;
    assert_eq!(stored["on_unreachable"], "share", "{stored}");
    node.wait_revision(rev, WAIT).await;
    let (_, config) = api.get("/api/v1/config").await;
    assert_eq!(config["policies"][0]["on_unreachable"], "share");

    // A policy that does not compile: rejected with the compiler's message, nothing stored.
    let (status, body) = api
        .put(
            "/api/v1/policies/broken",
            json!({ "rego": "package p\npre_request := {\n" }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("does not compile") && message.contains("broken.rego:"),
        "{message}"
    );
    assert_eq!(head_revision(&db.url).await, rev);

    // Unknown field, bad enforcement, bad on_unreachable, bad endpoint: each named, nothing
    // stored.
    for (path, body, named) in [
        (
            "/api/v1/policies/x",
            json!({ "rego": SEED_POLICY, "enforcment": "strict" }),
            "enforcment",
        ),
        (
            "/api/v1/policies/x",
            json!({ "rego": SEED_POLICY, "enforcement": "sometimes" }),
            "sometimes",
        ),
        (
            "/api/v1/policies/x",
            json!({ "rego": SEED_POLICY, "on_unreachable": "partial" }),
            "on_unreachable: unknown variant `partial`",
        ),
        (
            "/api/v1/resources/store",
            json!({ "kind": "s3", "endpoint": "ftp://x" }),
            "endpoint",
        ),
    ] {
        let (status, reply) = api.put(path, body).await;
        assert_eq!(status, 422, "{reply}");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{path}: {reply}");
    }
    assert_eq!(head_revision(&db.url).await, rev);

    // A resource and a user with both credential kinds.
    let (status, body) = api
        .put(
            "/api/v1/resources/store",
            json!({ "kind": "s3", "endpoint": "http://127.0.0.1:9000", "region": "eu-west-1" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(api.put("/api/v1/users/alice", json!({})).await.0, 200);
    for kind in ["api_key", "s3"] {
        let (status, body) = api
            .request(
                reqwest::Method::POST,
                "/api/v1/users/alice/credentials",
                Some(json!({ "kind": kind })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert!(body["secret"].as_str().unwrap().len() >= 32);
    }
    let head = head_revision(&db.url).await;
    node.wait_revision(head, WAIT).await;
    let (_, config) = api.get("/api/v1/config").await;
    assert_eq!(
        config["users"][0]["credentials"].as_array().unwrap().len(),
        2
    );
    assert_eq!(config["resources"][0]["spec"]["region"], "eu-west-1");

    // Every write is in the audit log with its actor.
    let (_, audit) = api.get("/api/v1/audit?limit=100").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["actor"] == "admin:ops")
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for expected in [
        "policy.put",
        "resource.put",
        "user.put",
        "credential.create",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }

    // No token, bad token: 401.
    let anonymous = reqwest::get(format!("{}/api/v1/policies", api.base))
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_row_written_in_sql_is_refused_and_previous_config_stays() {
    let db = database().await;
    let (_spec, node, api) = node_with_admin(&db.url, "127.0.0.4").await;
    sql(&db.url, &insert_policy_sql("good", SEED_POLICY)).await;
    let good_rev = head_revision(&db.url).await;
    node.wait_revision(good_rev, WAIT).await;

    sql(
        &db.url,
        &insert_policy_sql("bad", "package bad\npre_request := {\n"),
    )
    .await;
    let bad_rev = head_revision(&db.url).await;
    let refused = format!("revision {bad_rev} refused");
    let (status, ready) = node
        .wait_ready_where("refusal of the policy row", WAIT, |_, body| {
            body["warnings"][0]
                .as_str()
                .is_some_and(|w| w.contains(&refused))
        })
        .await;
    assert_eq!(status, 200, "previous config still in force: {ready}");
    assert_eq!(ready["config"]["revision"], good_rev);
    let warning = ready["warnings"][0].as_str().unwrap();
    assert!(warning.contains("policy \"bad\""), "{warning}");
    assert_eq!(api.policies_in_force().await, ["good"]);

    // A row the schema would accept but the model refuses (unknown spec field).
    sql(
        &db.url,
        "INSERT INTO resources (name, kind, spec) VALUES ('r1', 'http', '{\"upstream\": \"http://127.0.0.1:1\", \"typo\": 1}')",
    )
    .await;
    let rev = head_revision(&db.url).await;
    node.wait_ready_where("refusal of the resource row", WAIT, |_, body| {
        body["warnings"][0].as_str().is_some_and(|w| {
            w.contains(&format!("revision {rev} refused")) && w.contains("resource \"r1\"")
        })
    })
    .await;

    // Fixing both rows makes the next revision apply whole.
    sql(
        &db.url,
        "DELETE FROM policies WHERE name = 'bad'; DELETE FROM resources WHERE name = 'r1'",
    )
    .await;
    let fixed = head_revision(&db.url).await;
    let ready = node.wait_revision(fixed, WAIT).await;
    assert_eq!(ready["warnings"].as_array().unwrap().len(), 0, "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_notifications_are_caught_by_the_revision_poll() {
    let db = database().await;
    let (_spec, node, api) = node_with_admin(&db.url, "127.0.0.5").await;

    // A change whose NOTIFY never happens: triggers off, revision bumped by hand.
    sql(
        &db.url,
        &format!(
            "BEGIN;
             ALTER TABLE policies DISABLE TRIGGER policies_revision;
             {};
             UPDATE config_head SET revision = revision + 1;
             ALTER TABLE policies ENABLE TRIGGER policies_revision;
             COMMIT;",
            insert_policy_sql("silent", SEED_POLICY)
        ),
    )
    .await;
    let rev = head_revision(&db.url).await;
    let ready = node.wait_revision(rev, WAIT).await;
    assert_eq!(ready["config"]["applied_via"], "poll");
    assert_eq!(api.policies_in_force().await, ["silent"]);

    // The LISTEN connection killed: the node notices, reconnects and catches up.
    sql(
        &db.url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%'",
    )
    .await;
    sql(&db.url, &insert_policy_sql("after-kill", SEED_POLICY)).await;
    node.wait_revision(rev + 1, WAIT).await;
    assert_eq!(api.policies_in_force().await, ["after-kill", "silent"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_can_never_go_backwards() {
    let db = database().await;
    let spec = NodeSpec::new("n1", "127.0.0.6", &db.url);
    create_admin_in_process(&spec).await;
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(insert_policy_sql("p", SEED_POLICY)))
        .execute(&mut conn)
        .await
        .unwrap();
    let err = sqlx::query("UPDATE config_head SET revision = revision - 1")
        .execute(&mut conn)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("config revision must increase"), "{err}");
}
