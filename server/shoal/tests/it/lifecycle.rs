//! Node lifecycle: readiness, control-plane outages, the local snapshot, graceful shutdown,
//! concurrent migration.

use std::time::Duration;

use serde_json::Value;
use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

fn policy_sql(name: &str) -> String {
    format!("INSERT INTO policies (name, rego) VALUES ('{name}', $rego${SEED_POLICY}$rego$)")
}

// Multi-threaded: the partition forwarder must keep running while the test blocks on the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_until_the_control_plane_is_reached_then_200() {
    let db = database().await;
    let link = Partition::new(pg_addr(&db.url)).await;
    let admin_spec = NodeSpec::new("setup", "127.0.0.1", &db.url);
    create_admin(&admin_spec);
    link.cut();

    let spec = NodeSpec::new("n1", "127.0.0.7", &link.url_for(&db.url));
    let mut node = spec.start();
    let (status, body) = node
        .wait_ready_where("503 naming the missing config", WAIT, |s, b| {
            s == 503 && b["control_plane"]["last_error"].is_string()
        })
        .await;
    assert_eq!(status, 503);
    let missing = body["missing"][0].as_str().unwrap();
    assert!(
        missing.starts_with("config: control plane not reached"),
        "{body}"
    );
    assert!(missing.contains("no config snapshot"), "{body}");
    let health = reqwest::get(format!("{}/health", node.base_url().await))
        .await
        .unwrap();
    assert_eq!(
        health.status().as_u16(),
        200,
        "liveness is independent of config"
    );

    link.restore();
    let (_, body) = node
        .wait_ready_where("200 once connected", WAIT, |s, _| s == 200)
        .await;
    assert_eq!(body["config"]["source"], "database");
    assert_eq!(body["missing"].as_array().unwrap().len(), 0);
    // The outage was logged once, not once per retry.
    assert_eq!(node.count_messages("control plane unreachable, serving"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_node_keeps_serving_and_catches_up_with_changes_made_meanwhile() {
    let db = database().await;
    let link = Partition::new(pg_addr(&db.url)).await;
    let spec = NodeSpec::new("n1", "127.0.0.8", &link.url_for(&db.url));
    create_admin(&spec);
    sql(&db.url, &policy_sql("before")).await;
    let mut node = spec.start();
    let rev = head_revision(&db.url).await;
    node.wait_revision(rev, WAIT).await;

    link.cut();
    node.wait_ready_where("disconnected but ready", WAIT, |s, b| {
        s == 200 && b["control_plane"]["connected"] == false
    })
    .await;
    // Changes made while the node cannot see the database.
    sql(&db.url, &policy_sql("during-1")).await;
    sql(&db.url, "DELETE FROM policies WHERE name = 'before'").await;
    let (status, body) = node.ready().await;
    assert_eq!(status, 200);
    assert_eq!(
        body["config"]["revision"], rev,
        "nothing applied while cut off"
    );
    assert!(
        body["warnings"][0]
            .as_str()
            .unwrap()
            .contains("unreachable since")
    );

    link.restore();
    let body = node.wait_revision(rev + 2, WAIT).await;
    assert_eq!(body["control_plane"]["connected"], true);
    let api = Api::login(&node.base_url().await).await;
    assert_eq!(api.policies_in_force().await, ["during-1"]);
    node.wait_for_log("control plane reachable again", WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_behind_the_node_is_reported_not_followed_until_the_operator_says_so() {
    let db = database().await;
    let link = Partition::new(pg_addr(&db.url)).await;
    let spec = NodeSpec::new("n1", "127.0.0.14", &link.url_for(&db.url));
    create_admin(&spec);
    sql(&db.url, &policy_sql("p1")).await;
    sql(&db.url, &policy_sql("p2")).await;
    let rev = head_revision(&db.url).await;
    let mut node = spec.start();
    node.wait_revision(rev, WAIT).await;

    // While the node is cut off, the database goes back in time (an older backup restored).
    link.cut();
    node.wait_ready_where("disconnected", WAIT, |_, b| {
        b["control_plane"]["connected"] == false
    })
    .await;
    sql(
        &db.url,
        "ALTER TABLE config_head DISABLE TRIGGER config_head_monotonic;
         DELETE FROM policies WHERE name = 'p2';
         UPDATE config_head SET revision = 1;
         ALTER TABLE config_head ENABLE TRIGGER config_head_monotonic;",
    )
    .await;
    link.restore();
    let (status, body) = node
        .wait_ready_where("revision-behind warning", WAIT, |_, b| {
            b["warnings"].to_string().contains("behind revision")
        })
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["config"]["revision"], rev,
        "the node kept its revision"
    );
    let warning = body["warnings"].to_string();
    let fix = format!("UPDATE config_head SET revision = {}", rev + 1);
    assert!(warning.contains(&fix), "{warning}");

    // The operator acknowledges: the database's config is applied.
    sql(&db.url, &fix).await;
    node.wait_revision(rev + 1, WAIT).await;
    let api = Api::login(&node.base_url().await).await;
    assert_eq!(api.policies_in_force().await, ["p1"]);
}

#[tokio::test]
async fn postgres_down_keeps_last_config_and_restart_starts_from_snapshot() {
    let mut pg = TestPostgres::start();
    let url = pg.create_database().await;
    let spec = NodeSpec::new("n1", "127.0.0.9", &url);
    create_admin(&spec);
    sql(&url, &policy_sql("kept")).await;
    let rev = head_revision(&url).await;
    let mut node = spec.start();
    node.wait_revision(rev, WAIT).await;
    let snapshot = spec.data_dir.join("config-snapshot.json");
    // Written right after the swap, so it may trail the revision in /ready by a moment.
    wait_until("snapshot file", WAIT, || {
        let exists = snapshot.exists();
        async move { exists.then_some(()) }
    })
    .await;

    // PostgreSQL stops: the node keeps its config and stays ready.
    pg.stop();
    node.wait_ready_where("disconnected but still ready", WAIT, |s, b| {
        s == 200 && b["control_plane"]["connected"] == false && b["config"]["revision"] == rev
    })
    .await;

    // PostgreSQL comes back: the node reconnects and follows new changes.
    pg.restart();
    node.wait_ready_where("reconnected", WAIT, |_, b| {
        b["control_plane"]["connected"] == true
    })
    .await;
    sql(&url, &policy_sql("after-restart")).await;
    node.wait_revision(rev + 1, WAIT).await;

    // Restarted while PostgreSQL is down: starts from the snapshot, says so, and is ready.
    node.signal("TERM");
    assert_eq!(node.wait_exit(WAIT).await, Some(0));
    pg.stop();
    let mut node = spec.start();
    let (_, body) = node
        .wait_ready_where("ready from snapshot", WAIT, |s, _| s == 200)
        .await;
    assert_eq!(body["config"]["source"], "snapshot");
    assert_eq!(body["config"]["revision"], rev + 1);
    assert!(
        body["warnings"][0]
            .as_str()
            .unwrap()
            .contains("the local snapshot"),
        "{body}"
    );
    node.wait_for_log("serving the config snapshot", WAIT).await;

    // And it switches to the database once it is back.
    pg.restart();
    node.wait_ready_where("source database", WAIT, |_, b| {
        b["config"]["source"] == "database"
    })
    .await;
    let api = Api::login(&node.base_url().await).await;
    assert_eq!(api.policies_in_force().await, ["after-restart", "kept"]);
}

#[tokio::test]
async fn a_snapshot_that_cannot_be_written_is_a_warning_not_an_outage() {
    let db = database().await;
    let spec = NodeSpec::new("n1", "127.0.0.15", &db.url);
    // The data directory is writable (a node refuses to start otherwise), but the snapshot's
    // own path is taken by a directory, so every save fails as a full or broken disk would.
    std::fs::create_dir_all(spec.data_dir.join("config-snapshot.json")).unwrap();
    create_admin(&spec);
    let mut node = spec.start();
    let (status, body) = node
        .wait_ready_where("snapshot warning", WAIT, |_, b| {
            b["warnings"].to_string().contains("config snapshot")
        })
        .await;
    assert_eq!(status, 200);
    assert!(
        body["warnings"].to_string().contains("cannot write"),
        "{body}"
    );
}

/// At start, though, a data directory the node cannot write is a configuration error: the
/// audit spool lives there, and serving without it would lose decisions later.
#[tokio::test]
async fn an_unwritable_data_directory_stops_the_node_at_start_with_exit_78() {
    let db = database().await;
    let mut spec = NodeSpec::new("n1", "127.0.0.15", &db.url);
    let blocker = spec.dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    spec.data_dir = blocker.join("data");
    let mut node = spec.start();
    assert_eq!(node.wait_exit(WAIT).await, Some(78));
    let reason = format!(
        "data directory {} (data_dir, SHOAL_DATA_DIR) cannot be created",
        spec.data_dir.display()
    );
    wait_until("the reason on stderr", WAIT, || {
        let found = node.logs().iter().any(|l| l.contains(&reason));
        async move { found.then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request_before_exiting_zero() {
    let db = database().await;
    let spec = NodeSpec::new("n1", "127.0.0.10", &db.url);
    create_admin(&spec);
    let mut node = spec.start();
    node.wait_ready_where("ready", WAIT, |s, _| s == 200).await;
    let base = node.base_url().await;
    let api = Api::login(&base).await;
    let next = head_revision(&db.url).await + 1;

    // A slow request: long-poll for a revision that does not exist yet.
    let slow = spawn({
        let path = format!("/api/v1/config/wait?revision={next}&timeout_ms=30000");
        async move { api.get(&path).await }
    });
    node.wait_ready_where("request in flight", WAIT, |_, b| b["in_flight"] == 1)
        .await;

    node.signal("TERM");
    let (status, body) = node
        .wait_ready_where("not ready while draining", WAIT, |s, _| s == 503)
        .await;
    assert!(
        body["missing"].to_string().contains("shutting down"),
        "{body}"
    );
    // New requests are refused while the old one drains.
    let refused = reqwest::get(format!("{base}/api/v1/status")).await.unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(status, 503);
    assert!(!slow.is_finished());

    // The change arrives; the in-flight request completes, then the node exits 0.
    sql(&db.url, &policy_sql("late")).await;
    let (status, body): (u16, Value) = slow.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revision"], next);
    assert_eq!(node.wait_exit(WAIT).await, Some(0));
    let messages: Vec<String> = node
        .log_events()
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect();
    let pos = |m: &str| {
        messages
            .iter()
            .position(|x| x.contains(m))
            .unwrap_or_else(|| panic!("{m} not logged: {messages:?}"))
    };
    assert!(pos("shutdown requested") < pos("in-flight requests drained"));
    assert!(pos("in-flight requests drained") < pos("control plane connections closed"));
    assert!(pos("control plane connections closed") < pos("shutdown complete"));
}

#[tokio::test]
async fn three_nodes_starting_together_migrate_an_empty_database_once() {
    let db = database().await;
    let specs: Vec<NodeSpec> = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
        .iter()
        .enumerate()
        .map(|(i, ip)| NodeSpec::new(&format!("n{i}"), ip, &db.url))
        .collect();
    let mut nodes: Vec<Node> = specs.iter().map(NodeSpec::start).collect();
    for node in &mut nodes {
        node.wait_ready_where("ready", WAIT, |s, _| s == 200).await;
    }
    let applied: usize = nodes
        .iter()
        .map(|n| n.count_messages("applied database migrations"))
        .sum();
    let up_to_date: usize = nodes
        .iter()
        .map(|n| n.count_messages("database schema up to date"))
        .sum();
    assert_eq!((applied, up_to_date), (1, 2));

    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows as usize, shoal_control_plane::known_migrations());
}

/// The in-process tier stops a node the way a signal does: every stage in order, `run`
/// returns cleanly, and the ports it held are free again (nothing of the node lingers in
/// the test process to disturb the next scenario).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_node_stops_in_order_and_frees_its_ports() {
    let db = database().await;
    let spec = NodeSpec::new("n1", "127.0.0.8", &db.url);
    create_admin_in_process(&spec).await;
    let node = spec.start_in_process();
    let ready = node.wait_ready(WAIT).await;
    assert!(ready["config"]["revision"].is_i64(), "{ready}");
    let admin: std::net::SocketAddr = node.base_url()["http://".len()..].parse().unwrap();
    node.stop().await.expect("the node stops without an error");
    std::net::TcpListener::bind(admin).expect("the admin port is free once the node stopped");
    std::net::UdpSocket::bind(spec.gossip).expect("the gossip port is free once it stopped");
}
