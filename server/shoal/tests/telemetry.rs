//! `/metrics`: the node's instruments in Prometheus text format, parsed by the reference
//! client's parser (prometheus_client), with the resource (version, node id) in `target_info`.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// The families of a `/metrics` answer, as prometheus_client parses them.
fn parse(text: &str) -> Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/parse_prometheus.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run parse_prometheus.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample<'a>(families: &'a Value, family: &str, label: Option<(&str, &str)>) -> &'a Value {
    families[family]["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("no family {family} in {families}"))
        .iter()
        .find(|s| label.is_none_or(|(k, v)| s["labels"][k] == v))
        .unwrap_or_else(|| panic!("no sample {label:?} in {family}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_carry_the_version_and_node_id() {
    let pg = TestPostgres::start();
    let url = pg.create_database().await;
    let (cluster, _apis) = start_ready_cluster(&url, &["127.0.0.97", "127.0.0.98"]).await;
    let base = &cluster.bases[0];
    let status = cluster_status(base.clone()).await.unwrap();
    let node_id = status["cluster"]["local_id"].as_str().unwrap().to_string();
    let families = wait_until(
        "both members alive in the metrics",
        WAIT_METRICS,
        || async {
            let resp = reqwest::get(format!("{base}/metrics")).await.ok()?;
            assert!(
                resp.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/plain; version=0.0.4")
            );
            let families = parse(&resp.text().await.ok()?);
            (sample(&families, "shoal_cluster_members", Some(("state", "alive")))["value"] == 2.0)
                .then_some(families)
        },
    )
    .await;
    let target = sample(&families, "target_info", None);
    assert_eq!(target["labels"]["service_name"], "shoal");
    assert_eq!(
        target["labels"]["service_version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(target["labels"]["service_instance_id"], node_id.as_str());
    assert_eq!(target["labels"]["shoal_platform"], "host");
    assert_eq!(families["shoal_cluster_members"]["type"], "gauge");
    assert_eq!(families["shoal_discovery_runs"]["type"], "counter");
    assert!(
        sample(
            &families,
            "shoal_discovery_runs",
            Some(("method", "static"))
        )["value"]
            .as_f64()
            .unwrap()
            >= 1.0
    );
    assert_eq!(
        sample(&families, "shoal_control_plane_connected", None)["value"],
        1.0
    );
    for name in [
        "shoal_config_revision",
        "shoal_audit_spool_size_bytes",
        "shoal_state_keys",
        "shoal_state_batches",
        "shoal_http_in_flight",
    ] {
        assert!(families.get(name).is_some(), "{name} missing: {families}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_turned_off() {
    let pg = TestPostgres::start();
    let url = pg.create_database().await;
    let c = start_nodes(&url, &["127.0.0.99"], |_, spec, _| {
        spec.env
            .push(("SHOAL_TELEMETRY_PROMETHEUS".into(), "false".into()));
    })
    .await;
    let resp = reqwest::get(format!("{}/metrics", c.bases[0]))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("telemetry.prometheus = false")
    );
}

const WAIT_METRICS: std::time::Duration = std::time::Duration::from_secs(30);
