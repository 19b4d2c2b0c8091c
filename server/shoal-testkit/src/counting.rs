//! A steady stream of counter increments through the admin API of several nodes, and what
//! the nodes count: the fault and fleet scenarios check that nothing acknowledged is lost or
//! counted twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Api, wait_until};

/// The subject every increment of [`Load`] counts for.
pub const SUBJECT: &str = "erin";

pub fn counter_path() -> String {
    format!("/api/v1/state/counters?subject={SUBJECT}&resource=bucket&action=read")
}

/// The key's last-hour total on one node (the hour outlasts every scenario).
pub async fn total(api: &Api) -> Option<u64> {
    let (code, body) = api.get(&counter_path()).await;
    (code == 200).then(|| body["access_count"]["last_hour"].as_u64())?
}

/// Increments through every node's API until stopped; counts what each node acknowledged.
pub struct Load {
    pub acked: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(apis: &[Api]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (acked, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let tasks = apis
            .iter()
            .cloned()
            .map(|api| {
                let (stop, acked, failed) = (stop.clone(), acked.clone(), failed.clone());
                tokio::spawn(async move {
                    let body = json!({"subject": SUBJECT, "resource": "bucket", "action": "read", "by": 1});
                    while !stop.load(Ordering::Relaxed) {
                        let (code, answer) =
                            api.post("/api/v1/state/increment", body.clone()).await;
                        if code == 200 {
                            acked.fetch_add(1, Ordering::Relaxed);
                        } else {
                            eprintln!("increment through {} failed: {code} {answer}", api.base);
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            acked,
            failed,
            tasks,
        }
    }

    /// Stops the load; (acknowledged, failed).
    pub async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.acked.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Waits until every node counts exactly `expected`; how long that took.
pub async fn converge(apis: &[Api], expected: u64) -> Duration {
    let started = Instant::now();
    for (i, api) in apis.iter().enumerate() {
        wait_until(
            &format!("node {i} to count exactly {expected}"),
            Duration::from_secs(60),
            || async move { (total(api).await == Some(expected)).then_some(()) },
        )
        .await;
    }
    started.elapsed()
}

pub fn member_states(status: &Value) -> Vec<(String, String)> {
    status["cluster"]["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .map(|m| {
                    (
                        m["id"].as_str().unwrap_or_default().to_string(),
                        m["state"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
