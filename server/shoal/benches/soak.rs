//! `scripts/bench soak`: sustained requests through the data planes of three nodes for
//! `--seconds` (default 600), with every node's RSS and open file descriptors and the
//! requests' latency sampled each second. What it shows: whether memory or descriptors grow
//! once warm (a leak) and whether the tail latency drifts, next to the first minute.
//!
//! Load: `--concurrency` client connections (default 8), round robin over the three nodes,
//! each request counted and decided by the seed policy and audited, as in production.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shoal_testkit::*;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// One second of the run: RSS (MiB, sum of the nodes), descriptors (sum), requests done,
/// p50 and p99 latency (us) of that second's requests.
struct Sample {
    rss_mib: f64,
    fds: usize,
    requests: usize,
    p50_us: f64,
    p99_us: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = arg("--seconds", 600);
    let concurrency = arg("--concurrency", 8);
    let ips = ["127.0.0.131", "127.0.0.132", "127.0.0.133"];
    let db = database().await;
    let (c, apis) = start_ready_cluster(&db.url, &ips).await;
    let mut nodes = c.nodes;
    let upstream = ok_upstream().await;
    let key = apis[0].user_with_api_key("soak").await;
    let port = free_port(ips[0]);
    apis[0]
        .http_resource("soak", &format!("http://{upstream}"), port)
        .await;
    let revision = apis[0].put_seed_policy_strict().await;
    for node in &mut nodes {
        node.wait_data_plane(revision).await;
    }
    let pids: Vec<u32> = nodes.iter().map(Node::pid).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let mut clients = Vec::new();
    for c in 0..concurrency {
        let (stop, failed, latencies, key) =
            (stop.clone(), failed.clone(), latencies.clone(), key.clone());
        let urls: Vec<String> = ips
            .iter()
            .map(|ip| format!("http://{ip}:{port}/object"))
            .collect();
        clients.push(spawn(async move {
            let client = reqwest::Client::new();
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                i = (i + 1) % urls.len();
                let started = Instant::now();
                let ok = match client.get(&urls[i]).header("x-api-key", &key).send().await {
                    Ok(r) => r.status().as_u16() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    let us = started.elapsed().as_secs_f64() * 1e6;
                    latencies.lock().unwrap().push(us);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    let mut samples = Vec::with_capacity(seconds);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    for s in 0..seconds {
        tick.tick().await;
        let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
        lat.sort_by(f64::total_cmp);
        let (p50, p99) = if lat.is_empty() {
            (0.0, 0.0)
        } else {
            (percentile(&lat, 0.5), percentile(&lat, 0.99))
        };
        let sample = Sample {
            rss_mib: pids.iter().map(|p| rss_kib(*p)).sum::<u64>() as f64 / 1024.0,
            fds: pids.iter().map(|p| open_fds(*p)).sum(),
            requests: lat.len(),
            p50_us: p50,
            p99_us: p99,
        };
        if s % 30 == 0 {
            println!(
                "t={s:>4}s rss {:.1} MiB fds {} req/s {} p50 {:.0} us p99 {:.0} us",
                sample.rss_mib, sample.fds, sample.requests, sample.p50_us, sample.p99_us
            );
        }
        samples.push(sample);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    // Warm-up: the first minute (or the first tenth of a shorter run).
    let warm = (seconds / 10).clamp(1, 60);
    let window = warm.min(samples.len() - warm);
    let first = &samples[warm..warm + window];
    let last = &samples[samples.len() - window..];
    let avg = |w: &[Sample], f: fn(&Sample) -> f64| w.iter().map(f).sum::<f64>() / w.len() as f64;
    let rss_growth = avg(last, |s| s.rss_mib) - avg(first, |s| s.rss_mib);
    let fd_growth = avg(last, |s| s.fds as f64) - avg(first, |s| s.fds as f64);
    let p99_first = median(first.iter().map(|s| s.p99_us).collect());
    let p99_last = median(last.iter().map(|s| s.p99_us).collect());
    let total: usize = samples.iter().map(|s| s.requests).sum();
    println!(
        "{total} requests in {seconds} s, {} failed; after a {warm} s warm-up, windows of {window} s compared",
        failed.load(Ordering::Relaxed)
    );
    println!(
        "RESULT soak_requests_per_s {:.0} requests/s",
        total as f64 / seconds as f64
    );
    println!(
        "RESULT soak_failed_requests {} requests",
        failed.load(Ordering::Relaxed)
    );
    println!(
        "RESULT soak_rss_after_warmup_mib {:.1} MiB",
        avg(first, |s| s.rss_mib)
    );
    println!("RESULT soak_rss_growth_mib {rss_growth:.1} MiB");
    println!("RESULT soak_fd_growth {fd_growth:.1} descriptors");
    println!("RESULT soak_p99_first_window_us {p99_first:.0} us");
    println!("RESULT soak_p99_last_window_us {p99_last:.0} us");
    println!(
        "RESULT soak_p99_drift_ratio {:.2} ratio",
        p99_last / p99_first.max(1.0)
    );
}
