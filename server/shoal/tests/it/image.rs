//! The container image every deployment runs, built from the Dockerfile users build and
//! started the way the Helm chart, compose and ECS start it: non-root, no capabilities, a
//! read-only root, the data directory on a fresh volume, secrets as files or environment
//! values. Misconfigured containers must exit 78 with the reason.

use std::os::unix::fs::{PermissionsExt as _, chown};
use std::time::{Duration, Instant};

use shoal_testkit::containers::{
    HARDENED, Net, S3_IMAGE, base, image, node_env, pg_url, podman, podman_ok, wait_healthy,
};
use shoal_testkit::{PSK_HEX, SECRETS_KEY_HEX, get_ready, wait_until};

const WAIT: Duration = Duration::from_secs(90);

/// The Helm chart's secret volume: a directory of files readable by group 10001 only (the
/// chart's `defaultMode: 0440` with `fsGroup: 10001`).
fn secret_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, value).unwrap();
        chown(&path, Some(0), Some(10001)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
    }
    chown(dir.path(), Some(0), Some(10001)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    dir
}

/// A field of `/proc/1/status` inside the container (the node is PID 1).
fn proc_status(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/1/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_hardened_healthy_ready_and_drains_on_stop() {
    let image = image();
    let net = Net::new("image");
    let pg = net.postgres().await;
    let secrets = secret_dir(&[
        ("database-url", &pg_url(&pg.name)),
        ("cluster-psk", PSK_HEX),
        ("secrets-key", SECRETS_KEY_HEX),
    ]);
    let data = net.volume("data");
    let ip = net.ip(100);
    let mount = format!("{}:/run/secrets/shoal:ro", secrets.path().display());
    let volume = format!("{data}:/var/lib/shoal");
    let advertise = format!("SHOAL_CLUSTER_ADVERTISE={ip}:7946");
    let mut args = HARDENED.to_vec();
    args.extend_from_slice(&[
        // As Kubernetes runs it: no tmpfs anywhere, only the data volume is writable.
        "--read-only-tmpfs=false",
        "--ip",
        &ip,
        "-v",
        &mount,
        "-v",
        &volume,
        "-e",
        "SHOAL_DATABASE_URL_FILE=/run/secrets/shoal/database-url",
        "-e",
        "SHOAL_CLUSTER_PSK_FILE=/run/secrets/shoal/cluster-psk",
        "-e",
        "SHOAL_SECRETS_KEY_FILE=/run/secrets/shoal/secrets-key",
        "-e",
        "SHOAL_NODE_KEY_FILE=/var/lib/shoal/node.key",
        "-e",
        "SHOAL_CLUSTER_BIND=0.0.0.0:7946",
        "-e",
        &advertise,
        "-e",
        "SHOAL_DISCOVERY_METHOD=none",
        image,
    ]);
    let node = net.run("node", &args);

    wait_healthy(&node, WAIT).await;
    let url = base(&node);
    let (code, ready) = wait_until("/ready 200 against PostgreSQL in a container", WAIT, || {
        let url = url.clone();
        async move {
            let (code, body) = get_ready(url).await;
            (code == 200).then_some((code, body))
        }
    })
    .await;
    assert_eq!(code, 200, "{ready}");

    let status = String::from_utf8(node.exec(&["cat", "/proc/1/status"]).stdout).unwrap();
    assert_eq!(proc_status(&status, "Uid"), "10001 10001 10001 10001");
    assert_eq!(proc_status(&status, "Gid"), "10001 10001 10001 10001");
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(proc_status(&status, caps), "0000000000000000", "{caps}");
    }
    assert_eq!(proc_status(&status, "NoNewPrivs"), "1");

    // The fresh named volume took the image's ownership, and the node wrote its key there.
    let key = node.exec(&["stat", "-c", "%u:%g %a %s", "/var/lib/shoal/node.key"]);
    let key = String::from_utf8_lossy(&key.stdout).trim().to_string();
    assert!(key.starts_with("10001:10001 600 "), "node.key: {key}");
    assert_ne!(key.rsplit(' ').next(), Some("0"), "node.key is empty");
    let root = node.exec(&["touch", "/usr/local/bin/x"]);
    assert!(
        !root.status.success(),
        "the root filesystem must be read-only"
    );
    assert!(
        String::from_utf8_lossy(&root.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&root.stderr)
    );

    // SIGTERM: not ready, drain, leave, exit 0 within the grace period compose and the chart
    // give (40 s / terminationGracePeriodSeconds).
    let started = Instant::now();
    podman_ok(&["stop", "-t", "40", &node.name]);
    let took = started.elapsed();
    let code = node.wait_exit(WAIT).await;
    let logs = node.logs();
    assert_eq!(code, 0, "exit code after SIGTERM; logs:\n{logs}");
    assert!(took < Duration::from_secs(40), "stop took {took:?}");
    assert!(logs.contains("shutdown complete"), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
    println!("FIGURE image_stop_ms {} ms", took.as_millis());
}

/// The ECS entrypoint fills in the advertise address from the task metadata endpoint, here a
/// stand-in container serving the v4 container metadata document on the same network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ecs_entrypoint_advertises_the_address_from_task_metadata() {
    let image = image();
    let net = Net::new("ecs");
    let pg = net.postgres().await;
    let ip = net.ip(101);
    let doc = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(doc.path().join("v4")).unwrap();
    std::fs::write(
        doc.path().join("v4/container-1"),
        serde_json::json!({
            "DockerId": "container-1",
            "Name": "shoal",
            "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": [ip]}],
        })
        .to_string(),
    )
    .unwrap();
    std::fs::set_permissions(doc.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let srv = format!("{}:/srv:ro", doc.path().display());
    let metadata = net.run(
        "metadata",
        &[
            "-v",
            &srv,
            "--entrypoint",
            "python3",
            S3_IMAGE,
            "-m",
            "http.server",
            "80",
            "-d",
            "/srv",
        ],
    );
    let uri = format!(
        "ECS_CONTAINER_METADATA_URI_V4=http://{}/v4/container-1",
        metadata.name
    );
    let mut args = HARDENED.to_vec();
    // No advertise address: the entrypoint must find it.
    let env = node_env("task-1", None, &pg_url(&pg.name));
    args.extend(env.iter().map(String::as_str));
    args.extend_from_slice(&[
        "--ip",
        &ip,
        "-e",
        &uri,
        "-e",
        "SHOAL_DISCOVERY_METHOD=none",
        "--entrypoint",
        "shoal-ecs-entrypoint",
        image,
    ]);
    let node = net.run("task", &args);
    let url = base(&node);
    let status = wait_until("the task's node in /cluster/status", WAIT, || {
        let url = url.clone();
        async move { shoal_testkit::cluster_status(url).await }
    })
    .await;
    let logs = node.logs();
    assert!(
        logs.contains(&format!(
            "SHOAL_CLUSTER_ADVERTISE={ip}:7946 (from the task metadata endpoint)"
        )),
        "{logs}"
    );
    let members = status["cluster"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{status}");
    assert_eq!(
        members[0]["address"].as_str(),
        Some(format!("{ip}:7946").as_str()),
        "{status}"
    );
}

/// A container that cannot work (no database URL, no PSK, a data volume its user cannot
/// write) exits 78 with the reason, instead of crash-looping without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misconfigured_container_exits_78_naming_what_is_missing() {
    let image = image();
    let net = Net::new("badinput");
    let pg = pg_url("nowhere");
    let psk = format!("SHOAL_CLUSTER_PSK={PSK_HEX}");
    let key = format!("SHOAL_SECRETS_KEY={SECRETS_KEY_HEX}");
    let db = format!("SHOAL_DATABASE_URL={pg}");
    let root_owned = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root_owned.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let unwritable = format!("{}:/var/lib/shoal", root_owned.path().display());
    let cases: [(&str, Vec<&str>, &[&str]); 3] = [
        (
            "no-database-url",
            vec!["-e", &psk, "-e", &key],
            &[
                "`control_plane.database_url_file` is missing",
                "SHOAL_DATABASE_URL",
            ],
        ),
        (
            "no-psk",
            vec!["-e", &db, "-e", &key],
            &["`cluster.psk_file` is missing", "SHOAL_CLUSTER_PSK"],
        ),
        (
            "unwritable-data",
            vec!["-e", &db, "-e", &psk, "-e", &key, "-v", &unwritable],
            &[
                "data directory /var/lib/shoal",
                "is not writable by uid 10001",
                "Permission denied",
            ],
        ),
    ];
    for (name, env, says) in cases {
        let mut args = HARDENED.to_vec();
        args.extend_from_slice(&env);
        args.push(image);
        let c = net.run(name, &args);
        let code = c.wait_exit(WAIT).await;
        let logs = c.logs();
        assert_eq!(code, 78, "{name}: exit code; logs:\n{logs}");
        for s in says {
            assert!(logs.contains(s), "{name}: {s:?} not in:\n{logs}");
        }
        let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            lines.len() <= 2,
            "{name}: the reason, not a log dump:\n{logs}"
        );
        assert!(!logs.contains("panicked"), "{name}:\n{logs}");
        let restarts = podman(&["inspect", "--format", "{{.RestartCount}}", &c.name]);
        assert_eq!(String::from_utf8_lossy(&restarts.stdout).trim(), "0");
    }
}
