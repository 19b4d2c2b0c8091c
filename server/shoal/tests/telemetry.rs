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

/// rotel's OTLP receiver (PyPI `rotel`, the `rotel-agent` binary), printing what it receives.
struct Rotel {
    child: std::process::Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
    endpoint: String,
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rotel {
    fn start() -> Self {
        let agent = std::env::var_os("ROTEL_AGENT").map_or_else(
            || {
                let out = Command::new(python())
                    .args([
                        "-c",
                        "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
                    ])
                    .output()
                    .expect("find rotel-agent");
                std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
            },
            std::path::PathBuf::from,
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("rotel.log");
        let port = free_port("127.0.0.1");
        let grpc = free_port("127.0.0.1");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(agent)
            .args([
                "start",
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{port}"),
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc}"),
                "--exporter",
                "blackhole",
                "--debug-log",
                "metrics",
                "--debug-log-verbosity",
                "detailed",
            ])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start rotel-agent (PyPI rotel; scripts/test installs it)");
        Rotel {
            child,
            log,
            _dir: dir,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_reach_a_real_otlp_receiver_with_the_version_and_node_id() {
    let rotel = Rotel::start();
    wait_until("rotel to listen", WAIT_METRICS, || async {
        let port: u16 = rotel.endpoint.rsplit(':').next()?.parse().ok()?;
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let pg = TestPostgres::start();
    let url = pg.create_database().await;
    let endpoint = rotel.endpoint.clone();
    let c = start_nodes(&url, &["127.0.0.100"], |_, spec, _| {
        spec.env
            .push(("SHOAL_TELEMETRY_OTLP_ENDPOINT".into(), endpoint.clone()));
        spec.extra_toml = "\n[telemetry]\notlp_interval = \"500ms\"\n".into();
    })
    .await;
    let status = cluster_status(c.bases[0].clone()).await.unwrap();
    let node_id = status["cluster"]["local_id"].as_str().unwrap().to_string();
    // rotel's detailed debug log prints each resource attribute as `-> key: Str(value)` and
    // each metric as `-> Name: name`.
    let instance = format!("service.instance.id: Str({node_id})");
    let received = wait_until("metrics at the receiver", WAIT_METRICS, || async {
        let out = rotel.output();
        (out.contains("Name: shoal.cluster.members") && out.contains(&instance)).then_some(out)
    })
    .await;
    for expected in [
        format!("service.version: Str({})", env!("CARGO_PKG_VERSION")),
        "service.name: Str(shoal)".to_string(),
        "Name: shoal.discovery.runs".to_string(),
        "Name: shoal.config.revision".to_string(),
    ] {
        assert!(
            received.contains(&expected),
            "{expected} not received:\n{received}"
        );
    }
}

/// With an export interval far longer than the test, the only export is the flush that a
/// graceful shutdown makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_flushes_the_pending_metrics() {
    let rotel = Rotel::start();
    let pg = TestPostgres::start();
    let url = pg.create_database().await;
    let endpoint = rotel.endpoint.clone();
    let mut c = start_nodes(&url, &["127.0.0.101"], |_, spec, _| {
        spec.env
            .push(("SHOAL_TELEMETRY_OTLP_ENDPOINT".into(), endpoint.clone()));
        spec.extra_toml = "\n[telemetry]\notlp_interval = \"1h\"\n".into();
    })
    .await;
    c.nodes[0]
        .wait_ready_where("ready", WAIT_METRICS, |s, _| s == 200)
        .await;
    let status = cluster_status(c.bases[0].clone()).await.unwrap();
    let instance = format!(
        "service.instance.id: Str({})",
        status["cluster"]["local_id"].as_str().unwrap()
    );
    assert!(!rotel.output().contains(&instance), "nothing exported yet");
    c.nodes[0].signal("TERM");
    assert_eq!(c.nodes[0].wait_exit(WAIT_METRICS).await, Some(0));
    wait_until(
        "the flushed metrics at the receiver",
        WAIT_METRICS,
        || async { rotel.output().contains(&instance).then_some(()) },
    )
    .await;
}
