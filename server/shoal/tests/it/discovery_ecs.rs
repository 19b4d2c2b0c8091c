//! ECS discovery against moto's server (an ECS API emulator, started here on loopback) with a
//! cluster of awsvpc tasks made by `scripts/fixtures/moto_ecs.py`: the provider must return exactly
//! the private IPs of the RUNNING tasks. moto hands out random 10.x addresses that are not on
//! this machine: the tests compare them and never connect to them (a node started with ECS
//! discovery keeps only 127.0.0.0/8, so it joins none of them).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use shoal_discovery::Discover as _;
use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

/// moto with an ECS cluster of `running` RUNNING and `stopped` STOPPED tasks.
async fn ecs_cluster(running: usize, stopped: usize) -> (Moto, Value) {
    let (moto, _) = Moto::start_with(false).await;
    let endpoint = moto.endpoint.clone();
    let out = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(python())
            .arg(fixture("moto_ecs.py"))
            .args([
                "setup",
                &endpoint,
                &running.to_string(),
                &stopped.to_string(),
            ])
            .output()
            .expect("run moto_ecs.py");
        assert!(
            out.status.success(),
            "moto_ecs.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    })
    .await
    .unwrap();
    (moto, serde_json::from_slice(&out).unwrap())
}

fn ips(list: &Value, port: u16) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| SocketAddr::new(ip.as_str().unwrap().parse().unwrap(), port))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_discovery_returns_exactly_the_running_tasks() {
    // More than one DescribeTasks batch (100) of RUNNING tasks, and some STOPPED ones.
    let (moto, cluster) = ecs_cluster(105, 5).await;
    let config = shoal_config::EcsDiscovery {
        cluster: Some(cluster["cluster"].as_str().unwrap().to_string()),
        service: Some(cluster["service"].as_str().unwrap().to_string()),
        region: Some("us-east-1".into()),
        endpoint: Some(moto.endpoint.clone()),
    };
    let provider = shoal_discovery::Ecs::new(&config, 7946, Duration::from_secs(20))
        .with_credentials("testing", "testing");
    assert_eq!(provider.method(), "ecs");
    let mut found = provider.discover().await.unwrap();
    found.sort();
    assert_eq!(found, ips(&cluster["running"], 7946));
    for stopped in ips(&cluster["stopped"], 7946) {
        assert!(!found.contains(&stopped), "{stopped} is STOPPED");
    }

    // A cluster that does not exist is an error that says what failed.
    let missing = shoal_config::EcsDiscovery {
        cluster: Some("no-such-cluster".into()),
        ..config
    };
    let err = shoal_discovery::Ecs::new(&missing, 7946, Duration::from_secs(20))
        .with_credentials("testing", "testing")
        .discover()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("ecs discovery: error listing tasks"),
        "{err}"
    );
}

/// A stand-in for the ECS agent's task metadata endpoint v4 (no agent runs here), answering
/// `/task` with the documented `Cluster` and `ServiceName` fields.
async fn metadata_endpoint(cluster: &str, service: &str) -> SocketAddr {
    let task = serde_json::json!({"Cluster": cluster, "ServiceName": service, "TaskARN": "arn:aws:ecs:us-east-1:123456789012:task/shoal/0"});
    let app = axum::Router::new().route(
        "/v4/self/task",
        axum::routing::get(move || async move { axum::Json(task) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_finds_its_service_from_the_task_metadata_and_keeps_to_its_address_space() {
    let (moto, cluster) = ecs_cluster(7, 2).await;
    let metadata = metadata_endpoint(
        cluster["cluster"].as_str().unwrap(),
        cluster["service"].as_str().unwrap(),
    )
    .await;
    let db = database().await;
    let ip = "127.0.0.106";
    let endpoint = moto.endpoint.clone();
    let c = start_nodes(&db.url, &[ip], |_, spec, _| {
        spec.extra_toml = format!(
            "[discovery]\nmethod = \"ecs\"\ninterval = \"1s\"\nallowed_address_space = [\"127.0.0.0/8\"]\n\
             [discovery.ecs]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\n"
        );
        spec.env.push(("ECS_CONTAINER_METADATA_URI_V4".into(), format!("http://{metadata}/v4/self")));
        spec.env.push(("AWS_ACCESS_KEY_ID".into(), "testing".into()));
        spec.env.push(("AWS_SECRET_ACCESS_KEY".into(), "testing".into()));
    })
    .await;
    let node = &c.nodes[0];
    // Seven RUNNING tasks found, all outside 127.0.0.0/8: none joined.
    let line = wait_until("the discovery log line", WAIT, || async {
        node.log_events()
            .into_iter()
            .find(|e| e["message"] == "discovered 0 nodes" && e["method"] == "ecs")
    })
    .await;
    assert_eq!(line["outside_allowed_space"], 7, "{line}");
}
