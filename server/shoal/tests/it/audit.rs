//! The decision audit log: PostgreSQL stops in the middle of a load and comes back; the audit
//! table ends with exactly one row per request, in the order the node decided them.

use std::time::Duration;

use serde_json::json;
use shoal_testkit::*;
use sqlx::Connection as _;

const WAIT: Duration = Duration::from_secs(60);

/// (rows, distinct event ids, distinct request ids, rows whose `at` goes backwards by id).
async fn audit_rows(url: &str) -> Option<(i64, i64, i64, i64)> {
    let mut conn = sqlx::PgConnection::connect(url).await.ok()?;
    sqlx::query_as(
        "SELECT count(*), count(DISTINCT event_id), count(DISTINCT detail->>'request_id'),
                count(*) FILTER (WHERE at < prev)
           FROM (SELECT event_id, detail, at, lag(at) OVER (ORDER BY id) AS prev
                   FROM audit_log WHERE action = 'request') r",
    )
    .fetch_one(&mut conn)
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_decision_is_lost_or_duplicated_when_postgres_goes_away() {
    let mut pg = TestPostgres::start();
    let url = pg.create_database().await;
    let mut spec = NodeSpec::new("a0", "127.0.0.95", &url);
    spec.extra_toml =
        // Each batch flushed to the device before its answers: the `batch` policy's path.
        "[proxy]\naddress = \"127.0.0.95\"\n[audit]\nflush_interval = \"20ms\"\nfsync = \"batch\"\n"
            .into();
    create_admin(&spec);
    let mut node = spec.start();
    let base = node.base_url().await;
    node.wait_ready_where("ready", WAIT, |s, _| s == 200).await;
    let api = Api::login(&base).await;
    let port = free_port("127.0.0.95");
    let upstream = ok_upstream().await;
    let key = api.user_with_api_key("carol").await;
    let revision = api
        .http_resource("api", &format!("http://{upstream}"), port)
        .await;
    node.wait_data_plane(revision).await;
    let client = reqwest::Client::new();
    let url_of = |i: usize| format!("http://127.0.0.95:{port}/item/{i}");
    let send = |range: std::ops::Range<usize>| {
        let (client, key) = (client.clone(), key.clone());
        async move {
            for i in range {
                let resp = client
                    .get(url_of(i))
                    .header("x-api-key", &key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 200, "request {i}");
            }
        }
    };

    send(0..20).await;
    pg.stop();
    // 30 requests while PostgreSQL is away, or as many as `SHOAL_CHAOS_PG_DOWN_SECS` takes
    // (scripts/chaos keeps it down for 60 s).
    let down_for = std::env::var("SHOAL_CHAOS_PG_DOWN_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let down_at = std::time::Instant::now();
    let mut sent = 20;
    while sent < 50 || down_at.elapsed() < down_for {
        send(sent..sent + 10).await;
        sent += 10;
    }
    let (_, ready) = node
        .wait_ready_where("audit spooling", WAIT, |_, r| {
            r["audit"]["spooling"] == true
        })
        .await;
    assert!(ready["audit"]["spooled"].as_u64().unwrap() >= 1, "{ready}");
    println!("FIGURE pg_down_requests_served {} requests", sent - 20);
    pg.restart();
    send(sent..sent + 10).await;
    let total = (sent + 10) as i64;
    let rows = wait_until("every audit row", WAIT, || async {
        audit_rows(&url).await.filter(|r| r.0 >= total)
    })
    .await;
    assert_eq!(
        rows,
        (total, total, total, 0),
        "exactly one row per request, in order"
    );
    println!("FIGURE pg_down_audit_rows_lost 0 rows");
    let (_, ready) = node
        .wait_ready_where("spool emptied", WAIT, |_, r| {
            r["audit"]["spooling"] == false
        })
        .await;
    assert_eq!(ready["audit"]["spool_bytes"], 0);
    // Nothing more arrives later (no duplicate from a second replay).
    node.signal("TERM");
    assert_eq!(node.wait_exit(WAIT).await, Some(0));
    assert_eq!(audit_rows(&url).await.unwrap().0, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_left_by_a_crash_is_replayed_at_start_skipping_only_broken_lines() {
    let db = database().await;
    let spec = NodeSpec::new("a1", "127.0.0.96", &db.url);
    std::fs::create_dir_all(&spec.data_dir).unwrap();
    let entry = |i: u32| {
        json!({
            "event_id": format!("00000000-0000-4000-8000-00000000000{i}"),
            "at": "2026-11-25T10:00:00Z", "actor": "user:x", "action": "request",
            "target": "api", "outcome": "allowed", "detail": {"request_id": format!("r{i}")},
        })
        .to_string()
    };
    let mut spool = Vec::new();
    spool.extend_from_slice(format!("{}\n", entry(1)).as_bytes());
    spool.extend_from_slice(b"{\"event_id\": not json\n");
    spool.extend_from_slice(b"\xff\xfe\x00 not utf-8\n");
    spool.extend_from_slice(format!("{}\n", entry(2)).as_bytes());
    spool.extend_from_slice(b"{\"event_id\": \"0000"); // torn by a crash mid-append
    std::fs::write(spec.data_dir.join("audit-spool.jsonl"), spool).unwrap();
    create_admin(&spec);
    let mut node = spec.start();
    let rows = wait_until("the two readable lines stored", WAIT, || async {
        audit_rows(&db.url).await.filter(|r| r.0 >= 2)
    })
    .await;
    assert_eq!(rows, (2, 2, 2, 0));
    let (_, ready) = node
        .wait_ready_where("spool emptied", WAIT, |_, r| {
            r["audit"]["spooling"] == false
        })
        .await;
    assert_eq!(ready["audit"]["spool_bytes"], 0);
    wait_until("three skipped lines logged", WAIT, || async {
        (node.count_messages("unreadable spool line skipped") >= 3).then_some(())
    })
    .await;
}

/// One journal line as the node writes it: the JSON's CRC-32 in hex, a space, the JSON.
fn journal_line(value: &serde_json::Value) -> Vec<u8> {
    let json = value.to_string();
    format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes())).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_journal_never_stops_a_node_and_its_intact_records_are_shipped_once() {
    let db = database().await;
    let spec = NodeSpec::new("a2", "127.0.0.97", &db.url);
    let journal = spec.data_dir.join("audit");
    std::fs::create_dir_all(&journal).unwrap();
    let header = |node: &str| {
        journal_line(&json!({"journal": "shoal-audit-journal", "version": 1, "node": node}))
    };
    let record = |i: u32| {
        journal_line(&json!({
            "event_id": format!("00000000-0000-4000-8000-00000000010{i}"),
            "at": "2026-11-25T10:00:00Z", "actor": "user:x", "action": "request",
            "target": "api", "outcome": "allowed", "detail": {"request_id": format!("j{i}")},
        }))
    };
    let mut flipped = record(2);
    flipped[40] ^= 0x04;
    let mut first = [header("a2"), record(1)].concat();
    let garbage_at = first.len();
    first.extend_from_slice(b"\x00\x00\x00 power loss left zeros\n");
    let flipped_at = first.len();
    first.extend_from_slice(&flipped);
    let torn_at = first.len();
    first.extend_from_slice(&record(3)[..25]);
    std::fs::write(journal.join("00000000000000000001.log"), &first).unwrap();
    // A segment another node wrote (a volume moved between nodes): shipped under its name.
    std::fs::write(
        journal.join("00000000000000000002.log"),
        [header("old-node"), record(4)].concat(),
    )
    .unwrap();
    create_admin(&spec);
    let mut node = spec.start();
    let (_, ready) = node
        .wait_ready_where("journal shipped", WAIT, |s, r| {
            s == 200 && r["audit"]["spool_bytes"] == 0
        })
        .await;
    assert_eq!(ready["audit"]["damaged"], 3, "{ready}");
    let shipped = || async {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_as::<_, (String, String)>(
            "SELECT node, detail->>'request_id' FROM audit_log WHERE action = 'request' ORDER BY id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
    };
    let expected = vec![
        ("a2".to_string(), "j1".to_string()),
        ("old-node".to_string(), "j4".to_string()),
    ];
    assert_eq!(shipped().await, expected);
    for at in [garbage_at, flipped_at, torn_at] {
        assert!(
            node.log_events().iter().any(|e| e["message"]
                .as_str()
                .is_some_and(|m| m.contains("damaged journal record skipped"))
                && e["offset"] == at),
            "damage at offset {at} reported"
        );
    }
    // A restart ships nothing again.
    node.signal("TERM");
    assert_eq!(node.wait_exit(WAIT).await, Some(0));
    let mut node = spec.start();
    node.wait_ready_where("ready again", WAIT, |s, r| {
        s == 200 && r["audit"]["spool_bytes"] == 0
    })
    .await;
    assert_eq!(shipped().await, expected);
}
