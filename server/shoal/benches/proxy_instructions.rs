//! `scripts/bench proxy` (second part): the instructions one data-plane request costs the node,
//! counted by valgrind's callgrind. Unlike time on this machine, which drifts several times
//! over within an hour, an instruction count is the same from run to run for the same binary
//! and the same requests, so it shows what a change to the request path saved.
//!
//! One `shoal serve` node as shipped (Prometheus on, seed policy in force, counting, the
//! durable audit journal) runs under callgrind with collection off. After a warm-up, collection
//! is switched on for `--requests` sequential keep-alive GETs through an HTTP resource and off
//! again; the node's instructions in that window (every thread: the request's own work, the
//! audit journal's writer and shipper, gossip and timers) divided by the requests is the
//! figure. The profile is left in `--out` (default `target/callgrind.proxy.out`) for
//! `callgrind_annotate --inclusive=yes`. `SHOAL_BENCH_INSTRUCTIONS_BASELINE_BIN` names
//! another build to measure the same way, for a before and after in one run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shoal_testkit::*;

/// A node under callgrind starts some fifty times slower than alone.
const START: Duration = Duration::from_secs(600);

fn callgrind_control(args: &[&str]) {
    let out = Command::new("callgrind_control")
        .args(args)
        .output()
        .expect("callgrind_control (Debian's valgrind)");
    assert!(
        out.status.success(),
        "callgrind_control {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A script that runs `binary` under callgrind, collection off, writing its profile to `out`.
fn wrapper(dir: &Path, binary: &Path, out: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let script = dir.join("shoal-under-callgrind");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no --dump-instr=no \
             --callgrind-out-file={} {} \"$@\"\n",
            out.display(),
            binary.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The `totals:` line of a callgrind profile: instructions executed while collecting (its
/// `summary:` line counts from the start, collecting or not, and is 0 here).
fn total_instructions(profile: &Path) -> u64 {
    let text = std::fs::read_to_string(profile).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("totals: "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no totals in {}", profile.display()))
}

/// Instructions per request of the node built as `binary`, its profile written to `out`.
async fn measure(
    db_url: &str,
    ip: &str,
    binary: &Path,
    out: &Path,
    requests: usize,
    name: &str,
) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = NodeSpec::new(name, ip, db_url);
    spec.extra_toml = format!("[proxy]\naddress = \"{ip}\"\n");
    spec.binary = binary.to_path_buf();
    create_admin(&spec);
    spec.binary = wrapper(dir.path(), binary, out);
    let _ = std::fs::remove_file(out);
    let mut node = spec.start();
    node.wait_for_log("http listening", START).await;
    let base = node.base_url().await;
    let api = Api::login(&base).await;
    let key = api.user_with_api_key("bench").await;
    let upstream = ok_upstream().await;
    let port = free_port(ip);
    api.http_resource("bench", &format!("http://{upstream}"), port)
        .await;
    let revision = api.put_seed_policy().await;
    poll_revision(base.clone(), name, revision, START).await;
    // The revision is applied before its listener is bound (slowly, under callgrind).
    wait_listening(&format!("{ip}:{port}"), START).await;
    let url = format!("http://{ip}:{port}/object");
    let client = reqwest::Client::new();
    let get = || async {
        let resp = client
            .get(&url)
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        resp.bytes().await.unwrap();
    };
    for _ in 0..200 {
        get().await;
    }
    let pid = node.pid().to_string();
    callgrind_control(&["--instr=on", &pid]);
    for _ in 0..requests {
        get().await;
    }
    callgrind_control(&["--instr=off", &pid]);
    // The profile is written as the process exits: a clean stop, not the drop's kill.
    node.signal("TERM");
    node.wait_exit(START).await;
    total_instructions(out) as f64 / requests as f64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let requests = arg("--requests", 2000);
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("..");
    let out = std::env::args()
        .skip_while(|a| a != "--out")
        .nth(1)
        .map_or_else(|| target.join("callgrind.proxy.out"), PathBuf::from);
    let this = PathBuf::from(env!("CARGO_BIN_EXE_shoal"));
    let db = database().await;
    let per_request = measure(&db.url, "127.0.0.157", &this, &out, requests, "profiled").await;
    println!(
        "profile: {} (callgrind_annotate --inclusive=yes {})",
        out.display(),
        out.display()
    );
    if let Some(baseline) = std::env::var_os("SHOAL_BENCH_INSTRUCTIONS_BASELINE_BIN") {
        let baseline_out = out.with_extension("baseline.out");
        let db = database().await;
        let before = measure(
            &db.url,
            "127.0.0.158",
            Path::new(&baseline),
            &baseline_out,
            requests,
            "profiled-baseline",
        )
        .await;
        println!("RESULT instructions_per_request_baseline {before:.0} instructions");
    }
    println!("RESULT instructions_per_request {per_request:.0} instructions");
}
