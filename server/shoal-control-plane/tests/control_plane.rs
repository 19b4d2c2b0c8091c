//! The watcher and the audit writer in-process against a real PostgreSQL server of their
//! own, which a test stops and starts to make the outages a node lives through.

use std::time::Duration;

use serde_json::json;
use shoal_control_plane::testsuite::TestPostgres;
use shoal_control_plane::{AuditLog, AuditOptions, Fsync, Store, WatcherOptions, migrate};
use shoal_lifecycle::Supervisor;
use shoal_model::{
    AuditEntry, AuditSink as _, ConfigHandle, ConfigSource, HttpSpec, ModelError, Resource,
    ResourceSpec, Trigger,
};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// Long enough for a loaded machine; every wait ends as soon as its condition holds.
const WAIT: Duration = Duration::from_secs(30);

async fn server() -> (TestPostgres, PgPool) {
    let server = TestPostgres::start();
    let url = server.create_database().await;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&url)
        .unwrap();
    migrate(&pool).await.unwrap();
    (server, pool)
}

fn options(dir: &tempfile::TempDir) -> WatcherOptions {
    WatcherOptions {
        // Long: a change must arrive by its notification, not by the poll.
        poll_interval: Duration::from_secs(3600),
        connect_timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        migrate_on_start: false,
        snapshot_path: dir.path().join("config-snapshot.json"),
    }
}

fn resource(name: &str, port: u16) -> Resource {
    Resource {
        name: name.into(),
        enabled: true,
        description: String::new(),
        spec: ResourceSpec::Http(HttpSpec {
            upstream: "http://127.0.0.1:9".into(),
            api_key_header: "x-api-key".into(),
            port: Some(port),
            cors: Vec::new(),
            anonymous: Default::default(),
        }),
        attributes: Default::default(),
    }
}

/// Stops what `supervisor` runs; every task must have ended by its deadline, none aborted.
async fn stop(supervisor: Supervisor) {
    for report in supervisor.shutdown().await {
        assert!(
            report.aborted.is_empty() && report.panicked.is_empty(),
            "{report:?}"
        );
    }
}

/// One stage, as the node runs the control plane's tasks in.
fn supervised() -> (Supervisor, shoal_lifecycle::Stage) {
    let mut supervisor = Supervisor::new();
    let stage = supervisor.stage("control plane", Duration::from_secs(10));
    (supervisor, stage)
}

async fn wait_status(
    handle: &ConfigHandle,
    what: &str,
    ok: impl Fn(&shoal_model::ControlPlaneStatus) -> bool,
) {
    let mut rx = handle.subscribe();
    tokio::time::timeout(WAIT, rx.wait_for(|s| ok(s)))
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}; status {:?}", handle.status()))
        .unwrap();
}

#[tokio::test]
async fn the_watcher_follows_changes_keeps_its_config_through_an_outage_and_refuses_bad_revisions()
{
    let (mut pg, pool) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(pool.clone(), None, "test");
    let (supervisor, stage) = supervised();
    let handle = shoal_control_plane::spawn(pool.clone(), options(&dir), &stage);
    wait_status(&handle, "connected", |s| {
        s.connected && s.revision.is_some()
    })
    .await;

    // A write is applied by its notification and written to the snapshot file.
    let revision = store
        .put_resource("admin:t", &resource("api", 18080))
        .await
        .unwrap();
    assert_eq!(
        handle.wait_for_revision(revision, WAIT).await,
        Some(revision)
    );
    let status = handle.status();
    assert_eq!(status.applied_via, Some(Trigger::Notification));
    assert_eq!(status.source, Some(ConfigSource::Database));
    assert!(dir.path().join("config-snapshot.json").exists());
    assert_eq!(handle.current().unwrap().resources[0].name, "api");

    // A row written by hand that fails validation: the whole revision is refused, naming it,
    // and the previous config stays in force.
    sqlx::query("INSERT INTO resources (name, kind, spec) VALUES ('bad', 'http', $1)")
        .bind(json!({"upstream": "not a url"}))
        .execute(&pool)
        .await
        .unwrap();
    wait_status(&handle, "the bad revision refused", |s| {
        s.rejected.is_some()
    })
    .await;
    let rejected = handle.status().rejected.unwrap();
    assert!(rejected.revision > revision);
    assert!(
        rejected.error.contains("resource \"bad\""),
        "{}",
        rejected.error
    );
    assert_eq!(handle.current().unwrap().revision, revision);
    sqlx::query("DELETE FROM resources WHERE name = 'bad'")
        .execute(&pool)
        .await
        .unwrap();
    wait_status(&handle, "the fixed revision applied", |s| {
        s.rejected.is_none()
    })
    .await;

    // PostgreSQL goes away: the node says so and keeps serving what it has.
    let before = handle.current().unwrap().revision;
    pg.stop();
    wait_status(&handle, "the outage noticed", |s| {
        !s.connected && s.disconnected_since.is_some() && s.last_error.is_some()
    })
    .await;
    assert_eq!(handle.current().unwrap().revision, before);

    // Back: reconnected within the backoff, and a change made then arrives.
    pg.restart();
    wait_status(&handle, "reconnected", |s| {
        s.connected && s.last_error.is_none()
    })
    .await;
    let revision = store
        .put_resource("admin:t", &resource("api2", 18081))
        .await
        .unwrap();
    assert_eq!(
        handle.wait_for_revision(revision, WAIT).await,
        Some(revision)
    );
    stop(supervisor).await;

    // A node starting while PostgreSQL is away serves the snapshot the last run wrote.
    pg.stop();
    let (supervisor, stage) = supervised();
    let handle = shoal_control_plane::spawn(pool.clone(), options(&dir), &stage);
    wait_status(&handle, "the snapshot served", |s| {
        s.source == Some(ConfigSource::Snapshot)
    })
    .await;
    assert_eq!(handle.current().unwrap().revision, revision);
    assert!(!handle.status().connected);
    stop(supervisor).await;
}

fn entry(i: usize) -> AuditEntry {
    AuditEntry {
        event_id: uuid::Uuid::new_v4(),
        at: chrono::Utc::now(),
        actor: "user:alice".into(),
        action: "access".into(),
        target: format!("bucket/key-{i}"),
        outcome: "allowed".into(),
        detail: json!({"i": i}).into(),
    }
}

fn audit_options(dir: &std::path::Path, spool_max_bytes: u64) -> AuditOptions {
    AuditOptions {
        node: "node-a".into(),
        journal_dir: dir.to_path_buf(),
        legacy_spool: None,
        fsync: Fsync::EachBatch,
        spool_max_bytes,
        batch_max: 50,
        flush_interval: Duration::from_millis(20),
        retry_interval: Duration::from_millis(50),
    }
}

async fn stored(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT target FROM audit_log WHERE node = 'node-a' ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn wait_audit(
    log: &AuditLog,
    what: &str,
    ok: impl Fn(&shoal_control_plane::AuditStatus) -> bool,
) {
    tokio::time::timeout(WAIT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while !ok(&log.status()) {
            tick.tick().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}; status {:?}", log.status()));
}

/// A data-plane core: many requests under way on one thread, each letting the others' lines
/// join its write; one of them dropped (its caller gone) after its line was staged.
#[tokio::test]
async fn lines_staged_by_a_busy_thread_are_all_stored_even_when_their_request_is_dropped() {
    let (_pg, pool) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let (supervisor, stage) = supervised();
    let mut options = audit_options(dir.path(), 1 << 30);
    options.fsync = Fsync::Every(Duration::from_secs(1));
    let log = std::sync::Arc::new(AuditLog::spawn(pool.clone(), options, &stage));
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..20 {
        let log = log.clone();
        requests.spawn(async move { log.record(entry(i)).await });
    }
    while let Some(recorded) = requests.join_next().await {
        recorded.unwrap().unwrap();
    }
    {
        let mut dropped = std::pin::pin!(log.record(entry(20)));
        let first = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(dropped.as_mut().poll(cx).is_pending())
        })
        .await;
        assert!(first, "the line waits for the thread's other requests");
    }
    wait_audit(&log, "every line stored", |s| s.written == 21).await;
    let mut got = stored(&pool).await;
    got.sort_by_key(|t| t["bucket/key-".len()..].parse::<usize>().unwrap());
    let want: Vec<String> = (0..21).map(|i| format!("bucket/key-{i}")).collect();
    assert_eq!(got, want);
    stop(supervisor).await;
}

#[tokio::test]
async fn audit_lines_wait_in_the_journal_through_an_outage_and_are_stored_once_in_order() {
    let (mut pg, pool) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let (supervisor, stage) = supervised();
    let log = AuditLog::spawn(pool.clone(), audit_options(dir.path(), 1 << 30), &stage);
    for i in 0..10 {
        log.record(entry(i)).await.unwrap();
    }
    wait_audit(&log, "the first lines stored", |s| s.written == 10).await;

    pg.stop();
    for i in 10..30 {
        log.record(entry(i)).await.unwrap();
    }
    wait_audit(&log, "spooling noticed", |s| s.spooling && s.spooled == 20).await;
    pg.restart();
    wait_audit(&log, "the journal shipped", |s| {
        !s.spooling && s.written == 30
    })
    .await;
    let want: Vec<String> = (0..30).map(|i| format!("bucket/key-{i}")).collect();
    assert_eq!(stored(&pool).await, want);

    // Lines written while PostgreSQL is away at shutdown stay on disk for the next run.
    pg.stop();
    for i in 30..35 {
        log.record(entry(i)).await.unwrap();
    }
    stop(supervisor).await;
    pg.restart();
    let (supervisor, stage) = supervised();
    let log = AuditLog::spawn(pool.clone(), audit_options(dir.path(), 1 << 30), &stage);
    wait_audit(&log, "the last run's lines shipped", |s| s.written == 5).await;
    let want: Vec<String> = (0..35).map(|i| format!("bucket/key-{i}")).collect();
    assert_eq!(stored(&pool).await, want, "each once, in order");
    stop(supervisor).await;
}

/// A record PostgreSQL can never store (text cannot hold a NUL) is set aside in a file, and
/// the records after it are stored: from memory (this run's) and from the files (the last
/// run's, shipped after a restart).
#[tokio::test]
async fn a_record_postgresql_refuses_is_set_aside_and_the_records_after_it_are_stored() {
    let (mut pg, pool) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = |i| AuditEntry {
        actor: "user:nul\u{0}byte".into(),
        ..entry(i)
    };
    let set_aside = || -> Vec<serde_json::Value> {
        let path = dir.path().join(shoal_control_plane::AUDIT_SET_ASIDE);
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (supervisor, stage) = supervised();
    let log = AuditLog::spawn(pool.clone(), audit_options(dir.path(), 1 << 30), &stage);
    let refused = bad(1);
    for e in [entry(0), refused.clone(), entry(2)] {
        log.record(e).await.unwrap();
    }
    wait_audit(&log, "two stored, one set aside", |s| {
        s.written == 2 && s.set_aside == 1 && s.spooled == 0
    })
    .await;
    assert_eq!(stored(&pool).await, ["bucket/key-0", "bucket/key-2"]);
    let kept = set_aside();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["node"], "node-a");
    assert!(!kept[0]["error"].as_str().unwrap().is_empty(), "{kept:?}");
    let record: AuditEntry = serde_json::from_value(kept[0]["record"].clone()).unwrap();
    assert_eq!(record, refused, "kept as it was recorded");

    pg.stop();
    for e in [entry(3), bad(4), entry(5)] {
        log.record(e).await.unwrap();
    }
    stop(supervisor).await;
    pg.restart();
    let (supervisor, stage) = supervised();
    let log = AuditLog::spawn(pool.clone(), audit_options(dir.path(), 1 << 30), &stage);
    wait_audit(&log, "the last run's records shipped", |s| {
        s.written == 2 && s.set_aside == 1 && s.spool_bytes == 0
    })
    .await;
    let want = [
        "bucket/key-0",
        "bucket/key-2",
        "bucket/key-3",
        "bucket/key-5",
    ];
    assert_eq!(stored(&pool).await, want);
    assert_eq!(set_aside().len(), 2);
    assert_eq!(set_aside()[1]["record"]["target"], "bucket/key-4");
    stop(supervisor).await;
}

#[tokio::test]
async fn audit_text_with_copy_delimiters_and_escapes_is_stored_as_recorded() {
    let (_pg, pool) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let (supervisor, stage) = supervised();
    let log = AuditLog::spawn(pool.clone(), audit_options(dir.path(), 1 << 30), &stage);
    let awkward = [
        "tab\there",
        "line\nbreak\r\n",
        "back\\slash \\. \\N \\t",
        "\\.",
        "quote \" and ' and \u{1} and \u{7f}",
        "ünïcødé ✓ 𝄞",
        "",
    ];
    let entries: Vec<AuditEntry> = awkward
        .iter()
        .map(|text| AuditEntry {
            actor: format!("user:{text}"),
            target: (*text).to_string(),
            detail: json!({"text": text, "nested": {"list": [text, 1.5, null, true]}}).into(),
            ..entry(0)
        })
        .collect();
    for e in &entries {
        log.record(e.clone()).await.unwrap();
    }
    wait_audit(&log, "every line stored", |s| {
        s.written == entries.len() as u64
    })
    .await;
    let rows: Vec<(String, String, String, sqlx::types::Json<serde_json::Value>)> =
        sqlx::query_as("SELECT event_id::text, actor, target, detail FROM audit_log ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let want: Vec<_> = entries
        .iter()
        .map(|e| {
            let detail = serde_json::to_value(&e.detail).unwrap();
            (
                e.event_id.to_string(),
                e.actor.clone(),
                e.target.clone(),
                detail,
            )
        })
        .collect();
    let got: Vec<_> = rows
        .into_iter()
        .map(|(i, a, t, d)| (i, a, t, d.0))
        .collect();
    assert_eq!(got, want);
    stop(supervisor).await;
}

#[tokio::test]
async fn audit_lines_already_stored_are_skipped_and_the_rest_stored_in_order() {
    let (_pg, pool) = server().await;
    let dir = tempfile::tempdir().unwrap();
    // A line stored by an earlier run that crashed before saving its journal cursor.
    let shipped_before = entry(2);
    sqlx::query(
        "INSERT INTO audit_log (event_id, at, node, actor, action, target, outcome)
         VALUES ($1::uuid, now(), 'node-a', 'user:alice', 'access', 'stored before', 'allowed')",
    )
    .bind(shipped_before.event_id.to_string())
    .execute(&pool)
    .await
    .unwrap();
    let (supervisor, stage) = supervised();
    let log = AuditLog::spawn(pool.clone(), audit_options(dir.path(), 1 << 30), &stage);
    for i in 0..6 {
        let e = if i == 2 {
            shipped_before.clone()
        } else {
            entry(i)
        };
        log.record(e).await.unwrap();
    }
    wait_audit(&log, "the batch shipped", |s| {
        s.written == 6 && s.spooled == 0
    })
    .await;
    assert_eq!(
        stored(&pool).await,
        [
            "stored before",
            "bucket/key-0",
            "bucket/key-1",
            "bucket/key-3",
            "bucket/key-4",
            "bucket/key-5"
        ]
    );
    assert_eq!(log.status().last_error, None);
    stop(supervisor).await;
}

#[tokio::test]
async fn audit_lines_are_refused_not_dropped_when_they_cannot_be_kept() {
    let (mut pg, pool) = server().await;
    pg.stop();
    let dir = tempfile::tempdir().unwrap();
    let (supervisor, stage) = supervised();
    // A spool of a few hundred bytes: full after a line or two while PostgreSQL is away.
    let log = AuditLog::spawn(pool.clone(), audit_options(dir.path(), 300), &stage);
    let mut kept = 0;
    let refused = loop {
        match log.record(entry(kept)).await {
            Ok(()) => kept += 1,
            Err(e) => break e,
        }
        assert!(kept < 100, "the spool limit never refused a line");
    };
    let ModelError::AuditRefused(why) = refused else {
        panic!("refused as an audit refusal: {refused:?}");
    };
    assert!(why.contains("spool"), "{why}");
    assert!(kept >= 1);
    stop(supervisor).await;

    // A journal directory that cannot be opened refuses every line.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let (supervisor, stage) = supervised();
    let log = AuditLog::spawn(pool, audit_options(&file, 1 << 30), &stage);
    let refused = log.record(entry(0)).await.unwrap_err();
    assert!(
        matches!(&refused, ModelError::AuditRefused(why) if why.contains("not-a-dir")),
        "{refused:?}"
    );
    stop(supervisor).await;
}
