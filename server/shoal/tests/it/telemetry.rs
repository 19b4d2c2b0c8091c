//! Telemetry against real parsers and a real collector: `/metrics` parsed by the reference
//! client's parser (prometheus_client) with the resource (version, node id) in `target_info`;
//! metrics and traces received by rotel's OTLP receiver over HTTP and gRPC; W3C trace context
//! carried from the client through the policy to the upstream; the log level changed at run
//! time through the admin API.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;
use shoal_testkit::*;

/// The families of a `/metrics` answer, as prometheus_client parses them.
fn parse(text: &str) -> Value {
    let mut child = Command::new(python())
        .arg(fixture("parse_prometheus.py"))
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
    let cluster = Sandbox::cluster(&url, &["127.0.0.97", "127.0.0.98"]).await;
    let base = &cluster.nodes[0].base_url();
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
    let c = Sandbox::start(&url, &["127.0.0.99"], |_, spec, _| {
        spec.env
            .push(("SHOAL_TELEMETRY_PROMETHEUS".into(), "false".into()));
    })
    .await;
    let resp = reqwest::get(format!("{}/metrics", c.nodes[0].base_url()))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_reach_a_real_otlp_receiver_with_the_version_and_node_id() {
    let rotel = Rotel::start(true);
    rotel.wait_listening().await;
    let pg = TestPostgres::start();
    let url = pg.create_database().await;
    let endpoint = rotel.endpoint.clone();
    let c = Sandbox::start(&url, &["127.0.0.100"], |_, spec, _| {
        spec.env
            .push(("SHOAL_TELEMETRY_OTLP_ENDPOINT".into(), endpoint.clone()));
        spec.extra_toml = "\n[telemetry]\notlp_interval = \"500ms\"\n".into();
    })
    .await;
    let status = cluster_status(c.nodes[0].base_url()).await.unwrap();
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
    let rotel = Rotel::start(true);
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

/// An upstream that answers with the W3C trace context it received.
async fn trace_echo_upstream() -> std::net::SocketAddr {
    async fn echo(req: axum::extract::Request) -> axum::Json<Value> {
        let h = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        axum::Json(serde_json::json!({ "traceparent": h("traceparent") }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    spawn(async move { axum::serve(listener, axum::Router::new().fallback(echo)).await });
    addr
}

/// Over gRPC this time: a request through the proxy that carries a caller's `traceparent`
/// becomes a trace at the collector (request, count, policy and upstream spans under the
/// caller's trace id), the upstream receives the upstream span's context, and the request
/// figures reach `/metrics` and the collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_request_is_traced_through_the_policy_to_the_upstream() {
    let rotel = Rotel::start(true);
    rotel.wait_listening().await;
    let pg = TestPostgres::start();
    let url = pg.create_database().await;
    let grpc = rotel.grpc_endpoint.clone();
    let ip = "127.0.0.102";
    // A process: spans are recorded through the log subscriber's trace layer, which a node
    // running as tasks of the test process does not own.
    let c = start_nodes(&url, &[ip], |_, spec, _| {
        spec.env
            .push(("SHOAL_TELEMETRY_OTLP_ENDPOINT".into(), grpc.clone()));
        spec.env
            .push(("SHOAL_TELEMETRY_OTLP_PROTOCOL".into(), "grpc".into()));
        spec.extra_toml =
            format!("\n[telemetry]\notlp_interval = \"500ms\"\n[proxy]\naddress = \"{ip}\"\n");
    })
    .await;
    let mut node = c.nodes.into_iter().next().unwrap();
    let base = c.bases[0].clone();
    node.wait_ready_where("ready", WAIT_METRICS, |s, _| s == 200)
        .await;
    let api = Api::login(&base).await;
    let key = api.user_with_api_key("tracy").await;
    let upstream = trace_echo_upstream().await;
    let port = free_port(ip);
    api.http_resource("traced", &format!("http://{upstream}"), port)
        .await;
    let revision = api.put_seed_policy_strict().await;
    node.wait_data_plane(revision).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let resp = reqwest::Client::new()
        .get(format!("http://{ip}:{port}/things"))
        .header("x-api-key", &key)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let echoed: Value = resp.json().await.unwrap();
    let upstream_parent = echoed["traceparent"]
        .as_str()
        .expect("traceparent upstream");
    let parts: Vec<&str> = upstream_parent.split('-').collect();
    assert_eq!(parts.len(), 4, "{upstream_parent}");
    assert_eq!(
        parts[1], trace_id,
        "the upstream continues the caller's trace"
    );
    assert_ne!(
        parts[2], caller_span,
        "the upstream's parent is this hop's span"
    );
    assert_eq!(parts[3], "01");

    // rotel's detailed log prints each span as `Span #n` with its trace id, parent id, id,
    // name, kind and attributes.
    let received = wait_until("the trace at the receiver", WAIT_METRICS, || async {
        let out = rotel.output();
        let spans: Vec<String> = out
            .split("Span #")
            .skip(1)
            .filter(|s| s.contains(trace_id))
            .map(str::to_string)
            .collect();
        (spans.len() == 4).then_some(spans)
    })
    .await;
    let span = |name: &str, kind: &str| {
        received
            .iter()
            .find(|s| s.contains(&format!("Name           : {name}\n")) && s.contains(kind))
            .unwrap_or_else(|| panic!("no {kind} span {name:?} in {received:#?}"))
    };
    let server = span("GET", "SPAN_KIND_SERVER");
    assert!(
        server.contains(&format!("Parent ID      : {caller_span}")),
        "{server}"
    );
    assert!(server.contains("shoal.resource: Str(traced)"), "{server}");
    assert!(server.contains("shoal.outcome: Str(allowed)"), "{server}");
    assert!(
        server.contains("http.response.status_code: Int(200)"),
        "{server}"
    );
    let server_id = server
        .lines()
        .find_map(|l| l.trim().strip_prefix("ID             : "))
        .unwrap()
        .to_string();
    let child_of_server = format!("Parent ID      : {server_id}");
    let policy = span("policy seed", "SPAN_KIND_INTERNAL");
    assert!(policy.contains(&child_of_server), "{policy}");
    assert!(
        policy.contains("shoal.policy.result: Str(allow)")
            && policy.contains("shoal.policy.stage: Str(request)"),
        "{policy}"
    );
    let count = span("count", "SPAN_KIND_INTERNAL");
    assert!(count.contains("shoal.rate.mode: Str(strict)"), "{count}");
    let client = span("GET", "SPAN_KIND_CLIENT");
    assert!(client.contains(&child_of_server), "{client}");
    assert!(
        client.contains(&format!("ID             : {}", parts[2])),
        "the upstream's traceparent names the client span: {client}"
    );

    // The same request in the figures, at the collector and in /metrics.
    wait_until("request metrics at the receiver", WAIT_METRICS, || async {
        let out = rotel.output();
        (out.contains("Name: http.server.request.duration")
            && out.contains("Name: shoal.policy.evaluation.duration"))
        .then_some(())
    })
    .await;
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let families = parse(&text);
    let duration = sample(
        &families,
        "http_server_request_duration_seconds",
        Some(("shoal_resource", "traced")),
    );
    assert_eq!(duration["labels"]["http_response_status_code"], "200");
    let decisions = sample(
        &families,
        "shoal_rate_decisions",
        Some(("outcome", "allowed")),
    );
    assert_eq!(decisions["labels"]["mode"], "strict");
    assert_eq!(decisions["value"], 1.0);
    let policy = sample(
        &families,
        "shoal_policy_evaluation_duration_seconds",
        Some(("shoal_policy_name", "seed")),
    );
    assert_eq!(policy["labels"]["result"], "allow");
    for name in [
        "shoal_gossip_suspicions",
        "shoal_audit_flush_lag_seconds",
        "shoal_audit_journaled",
        "shoal_audit_damaged",
        "shoal_state_io_bytes",
    ] {
        assert!(families.get(name).is_some(), "{name} missing: {families}");
    }
}

/// The log level follows the admin API at run time: debug lines appear without a restart, a
/// directive that does not parse is refused with the reason and changes nothing, and the
/// change is in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_level_changes_at_run_time_through_the_admin_api() {
    let pg = TestPostgres::start();
    let url = pg.create_database().await;
    let c = start_nodes(&url, &["127.0.0.103"], |_, _, _| {}).await;
    let node = &c.nodes[0];
    let api = Api::login(&c.bases[0]).await;
    let debug_lines = || {
        node.log_events()
            .iter()
            .filter(|e| e["level"] == "DEBUG")
            .count()
    };
    assert_eq!(debug_lines(), 0, "the node starts at info");
    let (code, body) = api.get("/api/v1/log-level").await;
    assert_eq!(
        (code, body["level"].as_str()),
        (200, Some("info,sqlx=warn")),
        "{body}"
    );

    let (code, body) = api
        .put(
            "/api/v1/log-level",
            serde_json::json!({"level": "info,shoal=loud"}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("invalid log level"), "{message}");
    assert_eq!(
        api.get("/api/v1/log-level").await.1["level"],
        "info,sqlx=warn"
    );

    let (code, body) = api
        .put("/api/v1/log-level", serde_json::json!({"level": "debug"}))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["previous"], "info,sqlx=warn");
    // Any debug line will do: the node's own loops log at debug as they run.
    wait_until("debug lines in the log", WAIT_METRICS, || async {
        (debug_lines() > 0).then_some(())
    })
    .await;
    let (code, body) = api
        .put("/api/v1/log-level", serde_json::json!({"level": "warn"}))
        .await;
    assert_eq!(code, 200, "{body}");
    let audited = wait_until("the change in the audit log", WAIT_METRICS, || async {
        let (_, body) = api.get("/api/v1/audit?action=log_level.set").await;
        let entries = body["entries"].as_array()?.clone();
        (entries.len() == 2).then_some(entries)
    })
    .await;
    assert!(
        audited
            .iter()
            .all(|e| e["actor"].as_str().is_some_and(|a| a.starts_with("admin:"))),
        "{audited:?}"
    );
}
