//! `scripts/bench proxy`, after the proxy benchmark: how fast a large object moves through an
//! S3 resource, next to the same backend reached directly in the same run (issue 23: a 1 GiB
//! object each way, goal >= 0.9 of the direct MB/s for GET and for PUT).
//!
//! Backend: s3rver (npm; `S3RVER` names the executable scripts/bench installs), which streams
//! bodies between the socket and its files. moto keeps bodies in Python memory and would be
//! the bottleneck. Shoal: one `shoal serve` of the release build with the shipped settings
//! (Prometheus on), an S3 resource re-signing for s3rver and the seed policy in force; the
//! bucket is not the seed's, so every request is counted, evaluated, journaled and allowed.
//! Client: curl, signing SigV4 itself with `UNSIGNED-PAYLOAD` (the body is not hashed on
//! either side), the upload read from a file and the download written to /dev/null.
//! Reference proxy: nginx (Debian's) passing the same requests to the same backend, streaming
//! both ways with 256 KiB buffers and no policy; it cannot re-sign, which s3rver lets pass as
//! it checks no signature. It shows what any proxy on this machine costs.
//!
//! Per round, PUT then GET of `--mib` MiB (default 1024) directly, through Shoal and through
//! nginx, the order rotated every round; MB/s is 10^6 bytes a second of curl's own transfer
//! time. The ratios are the medians' ratios. CPU time of Shoal, nginx, the backend and curl
//! comes from `/proc` around each transfer: on a small machine they share the cores, so the
//! through figures are partly how the cores are shared, and Shoal's CPU seconds per GiB is the
//! figure of its own cost.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(60);
const BUCKET: &str = "throughput";
const MIB: u64 = 1 << 20;
const GIB: f64 = (1u64 << 30) as f64;
/// No transfer here takes anywhere near this long, unless something is broken.
const TRANSFER_TIMEOUT_S: &str = "600";

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Put,
    Get,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Via {
    Direct,
    Shoal,
    Nginx,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Shoal => "through shoal",
            Via::Nginx => "through nginx",
        }
    }

    /// The object each path writes and reads back: no two share one, so a GET through Shoal
    /// reads what the PUT through Shoal stored.
    fn key(self) -> &'static str {
        match self {
            Via::Direct => "direct.bin",
            Via::Shoal => "through-shoal.bin",
            Via::Nginx => "through-nginx.bin",
        }
    }
}

/// One curl transfer and the CPU time each process used during it, in seconds per GiB.
struct Transfer {
    op: Op,
    via: Via,
    mb_s: f64,
    shoal_cpu: f64,
    nginx_cpu: f64,
    backend_cpu: f64,
    client_cpu: f64,
    secs: f64,
}

/// Where to send a request, signed as whom.
#[derive(Clone)]
struct Endpoint {
    base: String,
    key_id: String,
    secret: String,
}

impl Endpoint {
    /// curl with SigV4 for `base/BUCKET/key`, failing fast on a refused connection and
    /// bounded in time.
    fn curl(&self, key: &str) -> Command {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--connect-timeout", "10", "--max-time"])
            .arg(TRANSFER_TIMEOUT_S)
            .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
            .arg(format!("{}:{}", self.key_id, self.secret))
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
            .arg(format!("{}/{BUCKET}/{key}", self.base));
        cmd
    }
}

/// Runs curl for one transfer; (bytes moved, seconds) as curl measured them.
fn transfer(endpoint: &Endpoint, op: Op, key: &str, source: &Path, reply: &Path) -> (u64, f64) {
    // A failure's message shows this transfer's answer, never an earlier one.
    let _ = std::fs::remove_file(reply);
    let mut cmd = endpoint.curl(key);
    cmd.arg("-o").arg(match op {
        Op::Put => reply,
        Op::Get => Path::new("/dev/null"),
    });
    if op == Op::Put {
        cmd.arg("-T").arg(source);
    }
    cmd.args([
        "-w",
        "%{http_code} %{size_upload} %{size_download} %{time_total}",
    ]);
    let out = cmd.output().expect("curl");
    let written = String::from_utf8_lossy(&out.stdout).to_string();
    let fields: Vec<&str> = written.split_whitespace().collect();
    let reply = std::fs::read_to_string(reply).unwrap_or_default();
    assert!(
        out.status.success() && fields.first() == Some(&"200"),
        "{} {key} at {}: curl {} status {:?}\n{}{reply}",
        op.name(),
        endpoint.base,
        out.status,
        fields.first(),
        String::from_utf8_lossy(&out.stderr),
    );
    let bytes: u64 = fields[if op == Op::Put { 1 } else { 2 }].parse().unwrap();
    (bytes, fields[3].parse().unwrap())
}

/// The object's ETag and length as the backend itself reports them.
fn head(endpoint: &Endpoint, key: &str) -> (String, String) {
    let out = endpoint.curl(key).arg("-I").output().expect("curl -I");
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let header = |name: &str| {
        headers
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("HEAD {key}: no {name} in\n{headers}"))
    };
    (header("etag:"), header("content-length:"))
}

/// CPU ticks of a process and its children (nginx's master and workers).
fn tree_cpu_ticks(pid: u32) -> u64 {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    cpu_ticks(pid)
        + children
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .map(tree_cpu_ticks)
            .sum::<u64>()
}

/// Bytes free on the file system holding `dir`.
fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df's answer")
}

/// `mib` MiB of data that neither compresses nor repeats with a short period, written once;
/// the page cache then serves it to every upload.
fn write_source(path: &Path, mib: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut block = vec![0u8; MIB as usize];
    for _ in 0..mib {
        for chunk in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

fn spread(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::MAX, f64::min);
    let hi = v.iter().copied().fold(f64::MIN, f64::max);
    format!("{lo:.0}..{hi:.0}")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds = arg("--rounds", 3);
    let mib = arg("--mib", 1024) as u64;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    let work = tempfile::tempdir().unwrap();
    // The source file, and in s3rver's directory both objects plus one being written.
    let needed = 4 * mib * MIB + 512 * MIB;
    let free = free_bytes(work.path());
    assert!(
        free >= needed,
        "{}: {} MiB free, the benchmark needs {} MiB (set TMPDIR to a roomier place)",
        work.path().display(),
        free / MIB,
        needed / MIB
    );
    let source: PathBuf = work.path().join("source.bin");
    let reply = work.path().join("reply.xml");
    write_source(&source, mib);

    let backend = S3rver::start(work.path(), BUCKET).await;
    let backend_pid = backend.child.id();
    let db = database().await;
    let mut spec = NodeSpec::new("s3-throughput", "127.0.0.1", &db.url);
    spec.extra_toml = "[proxy]\naddress = \"127.0.0.1\"\n".into();
    create_admin(&spec);
    let mut node = spec.start();
    node.wait_ready_where("ready", WAIT, |s, _| s == 200).await;
    let api = Api::login(&node.base_url().await).await;
    let user = api.user_with_s3_key("bench").await;
    let port = free_port("127.0.0.1");
    api.resource("objects", backend.resource_spec(port)).await;
    node.wait_data_plane(api.put_seed_policy().await).await;
    wait_listening(&format!("127.0.0.1:{port}"), WAIT).await;
    let backend_addr = backend
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    // Streaming both ways, as Shoal does; the client's Host kept, which s3rver reads as
    // path-style addressing (a bare name would be taken for a bucket).
    let (nginx, nginx_port) = start_nginx(
        &[backend_addr],
        "proxy_set_header Host $http_host; proxy_buffering off; proxy_request_buffering off; \
         proxy_buffer_size 256k; proxy_buffers 4 256k; client_body_buffer_size 256k; client_max_body_size 0;",
    );
    let nginx_pid = nginx.child.id();
    wait_listening(&format!("127.0.0.1:{nginx_port}"), WAIT).await;

    let direct = Endpoint {
        base: backend.endpoint.clone(),
        key_id: S3rver::ACCESS_KEY_ID.into(),
        secret: S3rver::SECRET_ACCESS_KEY.into(),
    };
    let through = Endpoint {
        base: format!("http://127.0.0.1:{port}"),
        key_id: user["key_id"].as_str().unwrap().into(),
        secret: user["secret"].as_str().unwrap().into(),
    };
    let reference = Endpoint {
        base: format!("http://127.0.0.1:{nginx_port}"),
        ..direct.clone()
    };
    let shoal_pid = node.pid();
    let tick = clock_ticks_per_second();
    let gib = (mib * MIB) as f64 / GIB;
    println!(
        "{mib} MiB each way, {rounds} rounds, curl -> shoal (127.0.0.1:{port}) or nginx (127.0.0.1:{nginx_port}) -> s3rver ({}); {cores} cores",
        backend.endpoint
    );

    let mut transfers: Vec<Transfer> = Vec::new();
    for round in 0..rounds {
        let mut order = [Via::Direct, Via::Shoal, Via::Nginx];
        order.rotate_left(round % 3);
        for op in [Op::Put, Op::Get] {
            for via in order {
                let endpoint = match via {
                    Via::Direct => &direct,
                    Via::Shoal => &through,
                    Via::Nginx => &reference,
                };
                let before = (
                    cpu_ticks(shoal_pid),
                    cpu_ticks(backend_pid),
                    waited_children_cpu_ticks(),
                    tree_cpu_ticks(nginx_pid),
                );
                let (endpoint, source, reply) = (endpoint.clone(), source.clone(), reply.clone());
                let (bytes, secs) = tokio::task::spawn_blocking(move || {
                    transfer(&endpoint, op, via.key(), &source, &reply)
                })
                .await
                .unwrap();
                let used = |now: u64, then: u64| (now - then) as f64 / tick / gib;
                let t = Transfer {
                    op,
                    via,
                    mb_s: bytes as f64 / secs / 1e6,
                    shoal_cpu: used(cpu_ticks(shoal_pid), before.0),
                    nginx_cpu: used(tree_cpu_ticks(nginx_pid), before.3),
                    backend_cpu: used(cpu_ticks(backend_pid), before.1),
                    client_cpu: used(waited_children_cpu_ticks(), before.2),
                    secs,
                };
                assert_eq!(bytes, mib * MIB, "{} {}", op.name(), via.name());
                println!(
                    "round {round} {} {:<13}: {:>6.0} MB/s ({:.2} s); CPU s/GiB: shoal {:.2}, nginx {:.2}, s3rver {:.2}, curl {:.2}; cores busy {:.2}",
                    op.name(),
                    via.name(),
                    t.mb_s,
                    t.secs,
                    t.shoal_cpu,
                    t.nginx_cpu,
                    t.backend_cpu,
                    t.client_cpu,
                    (t.shoal_cpu + t.nginx_cpu + t.backend_cpu + t.client_cpu) * gib / t.secs,
                );
                transfers.push(t);
            }
            if round == 0 && op == Op::Put {
                // What went through the proxies arrived whole: the backend's own MD5 ETag and
                // length of the three uploads of the same file agree.
                let stored = order.map(|via| head(&direct, via.key()));
                assert!(
                    stored.iter().all(|s| *s == stored[0]),
                    "the uploads differ: {stored:?}"
                );
                println!("uploads agree: ETag {}, {} bytes", stored[0].0, stored[0].1);
            }
        }
    }

    let (_, ready) = node.ready().await;
    let journaled = ready["audit"]["journaled"].as_u64().unwrap_or(0);
    assert!(
        journaled >= 2 * rounds as u64,
        "every request through Shoal is journaled: {}",
        ready["audit"]
    );
    println!(
        "shoal: {journaled} requests journaled; peak RSS {:.1} MiB (s3rver {:.1} MiB): bodies stream, {mib} MiB never held",
        peak_rss_kib(shoal_pid) as f64 / 1024.0,
        peak_rss_kib(backend_pid) as f64 / 1024.0,
    );
    println!(
        "note: curl, the proxy and s3rver share these {cores} cores; through a proxy all three run at once, so the \
         ratios are partly how the cores are shared (\"cores busy\" above; other load on the machine counts too), \
         not Shoal's cost alone: shoal_cpu_s_per_gib is that, and nginx's ratio is what any proxy gets here"
    );

    let pick = |op: Op, via: Via, f: fn(&Transfer) -> f64| -> Vec<f64> {
        transfers
            .iter()
            .filter(|t| t.op == op && t.via == via)
            .map(f)
            .collect()
    };
    let mut results = Vec::new();
    for op in [Op::Get, Op::Put] {
        let name = op.name();
        let direct_mb_s = pick(op, Via::Direct, |t| t.mb_s);
        let through_mb_s = pick(op, Via::Shoal, |t| t.mb_s);
        let nginx_mb_s = pick(op, Via::Nginx, |t| t.mb_s);
        let pair_ratios: Vec<f64> = direct_mb_s
            .iter()
            .zip(&through_mb_s)
            .map(|(d, s)| s / d)
            .collect();
        let lo = pair_ratios.iter().copied().fold(f64::MAX, f64::min);
        let hi = pair_ratios.iter().copied().fold(f64::MIN, f64::max);
        println!(
            "{name}: direct {:.0} MB/s ({}), through shoal {:.0} MB/s ({}), through nginx {:.0} MB/s ({}), \
             shoal's per-round ratio {lo:.2}..{hi:.2}; CPU s/GiB: shoal {:.2} ({:.2}..{:.2}), nginx {:.2}, \
             s3rver {:.2} through shoal (direct {:.2}), curl {:.2} through shoal (direct {:.2})",
            median(direct_mb_s.clone()),
            spread(&direct_mb_s),
            median(through_mb_s.clone()),
            spread(&through_mb_s),
            median(nginx_mb_s.clone()),
            spread(&nginx_mb_s),
            median(pick(op, Via::Shoal, |t| t.shoal_cpu)),
            pick(op, Via::Shoal, |t| t.shoal_cpu)
                .into_iter()
                .fold(f64::MAX, f64::min),
            pick(op, Via::Shoal, |t| t.shoal_cpu)
                .into_iter()
                .fold(f64::MIN, f64::max),
            median(pick(op, Via::Nginx, |t| t.nginx_cpu)),
            median(pick(op, Via::Shoal, |t| t.backend_cpu)),
            median(pick(op, Via::Direct, |t| t.backend_cpu)),
            median(pick(op, Via::Shoal, |t| t.client_cpu)),
            median(pick(op, Via::Direct, |t| t.client_cpu)),
        );
        let (d, s, n) = (
            median(direct_mb_s),
            median(through_mb_s),
            median(nginx_mb_s),
        );
        results.push(format!("RESULT s3_{name}_mb_s_ratio {:.2} ratio", s / d));
        results.push(format!("RESULT s3_{name}_mb_s_direct {d:.0} MB/s"));
        results.push(format!("RESULT s3_{name}_mb_s_through_shoal {s:.0} MB/s"));
        results.push(format!("RESULT s3_{name}_mb_s_through_nginx {n:.0} MB/s"));
        results.push(format!(
            "RESULT s3_{name}_mb_s_ratio_nginx {:.2} ratio",
            n / d
        ));
    }
    for op in [Op::Get, Op::Put] {
        results.push(format!(
            "RESULT shoal_cpu_s_per_gib_{} {:.2} s",
            op.name(),
            median(pick(op, Via::Shoal, |t| t.shoal_cpu))
        ));
    }
    for op in [Op::Get, Op::Put] {
        results.push(format!(
            "RESULT nginx_cpu_s_per_gib_{} {:.2} s",
            op.name(),
            median(pick(op, Via::Nginx, |t| t.nginx_cpu))
        ));
    }
    for op in [Op::Get, Op::Put] {
        results.push(format!(
            "RESULT s3_backend_cpu_s_per_gib_{} {:.2} s",
            op.name(),
            median(pick(op, Via::Direct, |t| t.backend_cpu))
        ));
    }
    for line in results {
        println!("{line}");
    }
}
