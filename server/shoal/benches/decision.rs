//! `scripts/bench decision`: the local decision (read the key's cluster-wide counts, evaluate the
//! seed policy, count the request if allowed) next to one Redis INCR round trip on loopback
//! (redis-server from Debian, started by this benchmark), alternated in rounds so drift hits
//! both alike. Target: the decision at least 30x faster than the round trip.
//!
//! The decision is measured single-threaded, on the production types: `SharedState` counts
//! and `shoal_policy::Policy` (the compiled RVM program), the input built by
//! `Input::request` as the data plane will. Prints `RESULT` lines; `--rounds` and `--ops` set the size.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shoal_policy::{Input, Policy, RequestFacts, Subject, Target, Verdict, Windows};
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
    let mut blocked = 0usize;
    let samples = (0..ops)
        .map(|i| {
            let (key, user) = (&keys[i % keys.len()], &subjects[i % keys.len()]);
            let start = Instant::now();
            let counts = state.totals(key);
            let input = Input::request(&RequestFacts {
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
            });
            match policy.evaluate(&input).unwrap() {
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
}
