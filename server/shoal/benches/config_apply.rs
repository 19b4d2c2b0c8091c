//! `scripts/bench config`: time from a change committed in PostgreSQL to that change being in
//! force on each of 3 nodes, next to the floor set by PostgreSQL itself (a bare LISTEN/NOTIFY
//! round trip on the same server, measured in the same run).
//!
//! Each sample: three long-polls (`/api/v1/config/wait`) are opened on the nodes, the clock
//! starts just before the change's INSERT is sent, and stops when each node answers that it
//! has applied the new revision. Prints `RESULT` lines; `--rounds` and `--changes` set the size.

use std::time::{Duration, Instant};

use shoal_testkit::*;
use sqlx::Connection as _;

const WAIT: Duration = Duration::from_secs(30);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = arg("--rounds", 5);
    let changes = arg("--changes", 40);
    let pg = TestPostgres::start();
    let url = pg.create_database().await;
    let specs: Vec<NodeSpec> = ["127.0.0.21", "127.0.0.22", "127.0.0.23"]
        .iter()
        .enumerate()
        .map(|(i, ip)| NodeSpec::new(&format!("bench{i}"), ip, &url))
        .collect();
    create_admin(&specs[0]);
    let mut nodes: Vec<Node> = specs.iter().map(NodeSpec::start).collect();
    let mut apis = Vec::new();
    for node in &mut nodes {
        node.wait_ready_where("ready", WAIT, |s, _| s == 200).await;
        apis.push(Api::login(&node.base_url().await).await);
    }
    let apis: Vec<std::sync::Arc<Api>> = apis.into_iter().map(std::sync::Arc::new).collect();
    let mut writer = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut listener = sqlx::postgres::PgListener::connect(&url).await.unwrap();
    listener.listen("bench_floor").await.unwrap();

    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut floor_p99s = Vec::new();
    for round in 0..rounds {
        let mut samples = Vec::new();
        let mut floor = Vec::new();
        for i in 0..changes {
            // Floor: NOTIFY committed by one connection, received by another.
            let start = Instant::now();
            sqlx::query("SELECT pg_notify('bench_floor', 'x')")
                .execute(&mut writer)
                .await
                .unwrap();
            listener.recv().await.unwrap();
            floor.push(start.elapsed().as_secs_f64() * 1000.0);

            let next: i64 = sqlx::query_scalar("SELECT revision + 1 FROM config_head")
                .fetch_one(&mut writer)
                .await
                .unwrap();
            let waits: Vec<_> = apis
                .iter()
                .map(|api| {
                    let api = api.clone();
                    let path = format!("/api/v1/config/wait?revision={next}&timeout_ms=30000");
                    spawn(async move {
                        let (status, _) = api.get(&path).await;
                        assert_eq!(status, 200);
                        Instant::now()
                    })
                })
                .collect();
            // Let the long-polls reach the nodes before the clock starts.
            for node in &mut nodes {
                node.wait_ready_where("wait in flight", WAIT, |_, b| b["in_flight"] == 1)
                    .await;
            }
            let rego = SEED_POLICY.replace("> 5", &format!("> {}", 5 + i));
            let start = Instant::now();
            sqlx::query(
                "INSERT INTO policies (name, rego) VALUES ('bench', $1)
                 ON CONFLICT (name) DO UPDATE SET rego = EXCLUDED.rego",
            )
            .bind(rego)
            .execute(&mut writer)
            .await
            .unwrap();
            for wait in waits {
                let done = wait.await.unwrap();
                samples.push(done.duration_since(start).as_secs_f64() * 1000.0);
            }
        }
        samples.sort_by(f64::total_cmp);
        floor.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
        let floor_p99 = percentile(&floor, 0.99);
        println!(
            "round {round}: {} samples  apply p50 {p50:.2} ms  p99 {p99:.2} ms  max {:.2} ms  | notify floor p50 {:.2} ms p99 {floor_p99:.2} ms",
            samples.len(),
            samples[samples.len() - 1],
            percentile(&floor, 0.5),
        );
        p50s.push(p50);
        p99s.push(p99);
        floor_p99s.push(floor_p99);
    }
    let spread = |v: &[f64]| {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        format!("{min:.2}-{max:.2}")
    };
    println!(
        "over {rounds} rounds of {changes} changes x 3 nodes: p99 spread {} ms, p50 spread {} ms",
        spread(&p99s),
        spread(&p50s)
    );
    println!("RESULT config_apply_p50_ms {:.2} ms", median(p50s));
    println!("RESULT config_apply_p99_ms {:.2} ms", median(p99s.clone()));
    println!("RESULT pg_notify_floor_p99_ms {:.2} ms", median(floor_p99s));
    drop(nodes);
}
