//! `scripts/bench decision`: the local decision (read the key's cluster-wide counts, evaluate the
//! seed policy, count the request if allowed) next to one Redis INCR round trip on loopback
//! (redis-server from Debian, started by this benchmark), alternated in rounds so drift hits
//! both alike. Target: the decision at least 30x faster than the round trip.
//!
//! The decision is measured single-threaded, on the production types: `SharedState` counts
//! and `shoal_policy::Policy`, decided as the data plane does: from the request's facts when
//! the policy's rule is native (the seed's is), else by the RVM on the input built by
//! `Input::request_parts`. Prints `RESULT` lines; `--rounds` and `--ops` set the size.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shoal_policy::{
    Input, InputParts, Policy, RequestFacts, ResponseFacts, Stage, Subject, Target, Verdict,
    Windows,
};
use shoal_state::{CounterKey, SharedState, StateOptions};
use shoal_testkit::{SEED_POLICY, arg, percentile};

struct Redis {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis() -> (Redis, TcpStream) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (scripts/bench installs it)");
    let redis = Redis { child, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(conn) = TcpStream::connect(("127.0.0.1", port)) {
            conn.set_nodelay(true).unwrap();
            return (redis, conn);
        }
        assert!(Instant::now() < deadline, "redis-server did not start");
        #[expect(
            clippy::disallowed_methods,
            reason = "the pause of a poll with a deadline, before any runtime starts"
        )]
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Microseconds per INCR round trip, each timed on its own.
fn redis_round(conn: &mut TcpStream, reader: &mut BufReader<TcpStream>, ops: usize) -> Vec<f64> {
    let command = b"*2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\n";
    let mut line = String::new();
    (0..ops)
        .map(|_| {
            let start = Instant::now();
            conn.write_all(command).unwrap();
            line.clear();
            reader.read_line(&mut line).unwrap();
            assert!(line.starts_with(':'), "INCR answered {line:?}");
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

/// Microseconds per decision, each timed on its own; checks the verdicts as it goes.
fn decision_round(state: &SharedState, policy: &Policy, round: usize, ops: usize) -> Vec<f64> {
    let keys: Vec<CounterKey> = (0..100)
        .map(|u| CounterKey::new(format!("user-{round}-{u}"), "sensitive-bucket", "read").unwrap())
        .collect();
    let subjects: Vec<Subject> = keys
        .iter()
        .map(|k| Subject::new(k.subject(), &[]))
        .collect();
    let (windows, target) = (
        Windows::new(state.window_names()),
        Target::new("reports", "s3"),
    );
    let node = shoal_policy::NodeFacts::new("bench", "shoal");
    // As the data plane builds it: only the parts the revision's policies name.
    let parts = InputParts::read_by([SEED_POLICY]);
    let mut blocked = 0usize;
    let samples = (0..ops)
        .map(|i| {
            let (key, user) = (&keys[i % keys.len()], &subjects[i % keys.len()]);
            let start = Instant::now();
            let counts = state.totals(key);
            let facts = RequestFacts {
                bucket: Some("sensitive-bucket"),
                windows: &windows,
                counts: &counts,
                global_counts: None,
                user,
                method: "GET",
                path: "/sensitive-bucket/report.csv",
                operation: Some("GetObject"),
                key: Some("reports/q3.csv"),
                source_ip: Some("127.0.0.1"),
                resource: &target,
                headers: &[],
                query: &[],
                body_size: None,
                node: &node,
                bytes_read: None,
                bytes_written: None,
            };
            // As the data plane decides: from the facts when the policy's rule is native,
            // else on the input built from them.
            let verdict = policy
                .decide_request(&facts)
                .unwrap_or_else(|| policy.evaluate(&Input::request_parts(&facts, parts)));
            match verdict.unwrap() {
                Verdict::Allow => state.increment(key, 1),
                Verdict::Block { .. } => blocked += 1,
            }
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    // Each user passes 6 times (the seed blocks once last_minute > 5), then is blocked.
    assert_eq!(blocked, ops - keys.len() * 6, "policy verdicts");
    samples
}

/// Twenty policies of the shapes security teams write, on the richer input: groups, email,
/// attributes, resource environment and tags, headers, query, body size, the node, a data
/// document allowlist, counts. Every one allows the benchmark's requests, so all twenty run.
fn twenty_policies() -> Vec<Policy> {
    let conditions = [
        r#""contractors" in input.user.groups"#,
        r#"input.user.type == "machine"; not input.request.headers["x-service"]"#,
        r#"not endswith(input.user.email, "@example.com")"#,
        r#"input.user.attributes.clearance < 2"#,
        r#"input.resource.environment == "prod"; input.request.headers["x-change"] == "freeze""#,
        r#"input.resource.tags.team == "ledger"; not "finance" in input.user.groups"#,
        r#"input.request.method == "DELETE""#,
        r#"input.request.query.debug == "1""#,
        r#"input.request.body_size > 104857600"#,
        r#"startswith(input.request.path, "/admin")"#,
        r#"not input.user.id in data.allowlist.users"#,
        r#"input.bucket.access_count.last_minute > 1000000"#,
        r#"input.bucket.access_count.last_hour > 10000000"#,
        r#"input.request.headers["user-agent"] == "curl/0.1""#,
        r#"input.node.cluster == "quarantine""#,
        r#"input.request.operation == "DeleteBucket""#,
        r#"contains(input.request.path, "..")"#,
        r#"input.request.headers["x-forwarded-for"] == "203.0.113.7""#,
        r#"count(input.user.groups) > 32"#,
        r#"input.resource.tags.classification == "secret"; input.user.attributes.clearance < 5"#,
    ];
    let data = shoal_policy::PolicyData::from_json(
        serde_json::json!({"allowlist": {"users": (0..100).map(|u| format!("user-{u}")).collect::<Vec<_>>()}})
            .as_object()
            .unwrap()
            .clone(),
    );
    conditions
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let body = c.replace("; ", "\n  ");
            let rego = format!(
                "package bench.p{i}\nimport future.keywords.if\nimport future.keywords.in\n\
                 pre_request := {{\"action\": \"block\", \"type\": \"p{i}\"}} if {{\n  {body}\n}}\n"
            );
            Policy::compile_with_data(&format!("p{i}"), &rego, data.clone()).unwrap()
        })
        .collect()
}

/// Microseconds per decision with [`twenty_policies`]: counts read, input built with
/// headers and query, every policy evaluated, the request counted.
fn twenty_round(state: &SharedState, policies: &[Policy], round: usize, ops: usize) -> Vec<f64> {
    let keys: Vec<CounterKey> = (0..100)
        .map(|u| CounterKey::new(format!("user-{u}"), format!("ledger-{round}"), "read").unwrap())
        .collect();
    let subjects: Vec<Subject> = keys
        .iter()
        .map(|k| {
            Subject::from_json(serde_json::json!({
                "id": k.subject(), "email": format!("{}@example.com", k.subject()),
                "type": "human", "groups": ["finance", "eu"], "attributes": {"clearance": 5},
            }))
        })
        .collect();
    let windows = Windows::new(state.window_names());
    let target = Target::from_json(serde_json::json!({
        "name": "ledger", "kind": "s3", "environment": "prod",
        "tags": {"team": "ledger", "classification": "internal"},
    }));
    let node = shoal_policy::NodeFacts::new("bench", "eu-west");
    let headers = [
        ("host", "ledger.example.com"),
        ("user-agent", "aws-sdk-rust/1.0"),
        ("x-amz-date", "20261207T000000Z"),
        ("x-forwarded-for", "10.0.0.7"),
        ("accept", "*/*"),
    ];
    let query = [("list-type", "2"), ("prefix", "2026/")];
    (0..ops)
        .map(|i| {
            let (key, user) = (&keys[i % keys.len()], &subjects[i % keys.len()]);
            let start = Instant::now();
            let counts = state.totals(key);
            let input = Input::request(&RequestFacts {
                bucket: Some("ledger"),
                windows: &windows,
                counts: &counts,
                global_counts: None,
                user,
                method: "GET",
                path: "/ledger/2026/report.csv",
                operation: Some("GetObject"),
                key: Some("2026/report.csv"),
                source_ip: Some("10.0.0.7"),
                resource: &target,
                headers: &headers,
                query: &query,
                body_size: None,
                node: &node,
                bytes_read: None,
                bytes_written: None,
            });
            for p in policies {
                assert_eq!(p.evaluate(&input).unwrap(), Verdict::Allow, "{}", p.name());
            }
            state.increment(key, 1);
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

/// A response-stage policy of the shape the docs show: a download size cap, a content type,
/// S3 metadata and a byte budget.
const RESPONSE_POLICY: &str = r#"package bench.response
import rego.v1
pre_response := {"action": "block", "type": "too_large"} if {
  input.request.operation == "GetObject"
  input.response.size > 1073741824
}
pre_response := {"action": "block", "type": "file_type"} if input.response.content_type == "application/vnd.sqlite3"
pre_response := {"action": "block", "type": "classified"} if input.response.metadata.classification == "secret"
pre_response := {"action": "block", "type": "byte_budget"} if input.bucket.bytes_read.last_hour > 10737418240
"#;

/// Microseconds the response stage adds to a request (the request stage is not timed): the
/// response's bytes counted, its input built from the request's with an S3 GetObject's
/// headers, and [`RESPONSE_POLICY`] evaluated.
fn response_round(state: &SharedState, policy: &Policy, round: usize, ops: usize) -> Vec<f64> {
    let keys: Vec<CounterKey> = (0..100)
        .map(|u| {
            CounterKey::new(
                format!("user-{u}"),
                format!("exports-{round}"),
                "bytes_read",
            )
            .unwrap()
        })
        .collect();
    let (user, target) = (Subject::new("user-1", &[]), Target::new("exports", "s3"));
    let windows = Windows::new(state.window_names());
    let node = shoal_policy::NodeFacts::new("bench", "eu-west");
    let counts = [1, 1, 1];
    let request = Input::request(&RequestFacts {
        bucket: Some("exports"),
        windows: &windows,
        counts: &counts,
        global_counts: None,
        user: &user,
        method: "GET",
        path: "/exports/2026/q3.parquet",
        operation: Some("GetObject"),
        key: Some("2026/q3.parquet"),
        source_ip: Some("10.0.0.7"),
        resource: &target,
        headers: &[],
        query: &[],
        body_size: None,
        node: &node,
        bytes_read: Some(&[0, 0, 0]),
        bytes_written: None,
    });
    let headers = [
        ("content-length", "1048576"),
        ("content-type", "application/octet-stream"),
        ("etag", "\"9b2cf535f27731c974343645a3985328\""),
        ("last-modified", "Mon, 07 Dec 2026 08:00:00 GMT"),
        ("accept-ranges", "bytes"),
        ("x-amz-request-id", "4442587FB7D0A2F9"),
        ("x-amz-meta-owner", "finance"),
        ("date", "Mon, 07 Dec 2026 08:00:01 GMT"),
    ];
    (0..ops)
        .map(|i| {
            let key = &keys[i % keys.len()];
            let start = Instant::now();
            state.increment(key, 1_048_576);
            let read = state.totals(key);
            let input = request.response(
                &windows,
                &ResponseFacts {
                    status: 200,
                    size: Some(1_048_576),
                    content_type: Some("application/octet-stream"),
                    headers: &headers,
                    metadata: &[("owner", "finance")],
                    bytes_read: Some(&read),
                },
            );
            let verdict = policy.evaluate_at(Stage::Response, &input).unwrap();
            let took = start.elapsed().as_secs_f64() * 1e6;
            assert_eq!(verdict, Verdict::Allow);
            took
        })
        .collect()
}

fn main() {
    let rounds = arg("--rounds", 5);
    let ops = arg("--ops", 20_000);
    let (_redis, mut conn) = start_redis();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let state = SharedState::new(StateOptions::default());
    let policy = Policy::compile("seed", SEED_POLICY).unwrap();
    redis_round(&mut conn, &mut reader, 1000);
    decision_round(&state, &policy, usize::MAX, 1000);
    let mut speedups = Vec::new();
    let mut decisions = Vec::new();
    let mut incrs = Vec::new();
    for round in 0..rounds {
        let mut r = redis_round(&mut conn, &mut reader, ops);
        let mut d = decision_round(&state, &policy, round, ops);
        r.sort_by(f64::total_cmp);
        d.sort_by(f64::total_cmp);
        let (r50, d50) = (percentile(&r, 0.5), percentile(&d, 0.5));
        println!(
            "round {round}: decision p50 {:.2} us p99 {:.2} us | redis INCR p50 {:.1} us p99 {:.1} us | speedup {:.0}x",
            d50,
            percentile(&d, 0.99),
            r50,
            percentile(&r, 0.99),
            r50 / d50
        );
        speedups.push(r50 / d50);
        decisions.push((d50, percentile(&d, 0.99)));
        incrs.push(r50);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    println!(
        "RESULT decision_p50_us {:.2} us",
        median(decisions.iter().map(|d| d.0).collect())
    );
    println!(
        "RESULT decision_p99_us {:.2} us",
        median(decisions.iter().map(|d| d.1).collect())
    );
    println!("RESULT redis_incr_p50_us {:.1} us", median(incrs));
    println!(
        "RESULT decision_speedup_vs_redis_incr {:.0} x",
        median(speedups)
    );
    let policies = twenty_policies();
    twenty_round(&state, &policies, usize::MAX, 500);
    let twenty: Vec<f64> = (0..rounds)
        .map(|round| {
            let mut d = twenty_round(&state, &policies, round, ops / 4);
            d.sort_by(f64::total_cmp);
            println!(
                "round {round}: 20 policies p50 {:.2} us p99 {:.2} us",
                percentile(&d, 0.5),
                percentile(&d, 0.99)
            );
            percentile(&d, 0.5)
        })
        .collect();
    println!(
        "RESULT decision_20_policies_p50_us {:.2} us",
        median(twenty)
    );
    let response = Policy::compile("response", RESPONSE_POLICY).unwrap();
    response_round(&state, &response, usize::MAX, 500);
    let added: Vec<f64> = (0..rounds)
        .map(|round| {
            let mut d = response_round(&state, &response, round, ops / 4);
            d.sort_by(f64::total_cmp);
            println!(
                "round {round}: response stage added p50 {:.2} us p99 {:.2} us",
                percentile(&d, 0.5),
                percentile(&d, 0.99)
            );
            percentile(&d, 0.5)
        })
        .collect();
    println!("RESULT response_stage_added_p50_us {:.2} us", median(added));
}
