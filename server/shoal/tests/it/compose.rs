//! `docker-compose.yml` as shipped, brought up with podman-compose: PostgreSQL, three nodes
//! finding each other by the names compose gives them, nginx in front, an S3 backend, the
//! admin bootstrap job; then the demo of docs/deploy-compose.md through the load balancer, and
//! the data-plane port checked to lead nowhere near the console or the admin API.
//!
//! The only changes are an override file written here: the test's image for the nodes, moto's
//! server in place of MinIO (which cannot be pulled here), and no ports published on the
//! host (the test reaches the containers on their network). podman-compose ignores
//! `condition: service_healthy`, so the test starts each tier after polling the health of the
//! one before, the order docker compose follows by itself.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use shoal_testkit::containers::{Container, S3_IMAGE, image, podman, repo, wait_healthy};
use shoal_testkit::{cluster_status, s3_client, wait_until};

const WAIT: Duration = Duration::from_secs(120);
const PROJECT: &str = "shoal-it-compose";
const NODES: [&str; 3] = ["shoal-1", "shoal-2", "shoal-3"];
/// The nodes' fixed addresses in docker-compose.yml.
const NODE_IPS: [&str; 3] = ["172.28.0.11", "172.28.0.12", "172.28.0.13"];

/// A copy of the shipped compose files in a scratch project directory, with its own secrets.
struct Compose {
    dir: tempfile::TempDir,
}

impl Compose {
    fn new(image: &str) -> Compose {
        let dir = tempfile::tempdir().unwrap();
        let root = repo();
        std::fs::create_dir_all(dir.path().join("deploy/compose")).unwrap();
        for file in [
            "docker-compose.yml",
            "deploy/compose/nginx.conf",
            "deploy/compose/make-secrets",
        ] {
            std::fs::copy(root.join(file), dir.path().join(file)).unwrap();
        }
        let out = Command::new(dir.path().join("deploy/compose/make-secrets"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let node_image = format!("    image: {image}\n");
        let mut overrides = String::from("services:\n");
        for service in NODES.iter().chain(&["admin-bootstrap"]) {
            overrides += &format!("  {service}:\n{node_image}");
        }
        overrides += &format!(
            "  nginx:\n    ports: !reset []\n  s3:\n    image: {S3_IMAGE}\n    command: [\"-p\", \"9000\"]\n    ports: !reset []\n    healthcheck:\n      test: !override [\"CMD\", \"python3\", \"-c\", \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:9000/')\"]\n"
        );
        std::fs::write(dir.path().join("override.yml"), overrides).unwrap();
        let compose = Compose { dir };
        // A run killed before its teardown leaves the project behind, with the fixed subnet.
        compose.cmd(&["down", "-v", "-t", "0"], None);
        compose
    }

    fn cmd(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(repo().join(".venv-containers/bin/podman-compose"))
            .args([
                "-p",
                PROJECT,
                "-f",
                "docker-compose.yml",
                "-f",
                "override.yml",
            ])
            .args(args)
            .current_dir(self.dir.path())
            .env(
                "CONTAINERS_CONF",
                repo().join(".containers/containers.conf"),
            )
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run podman-compose (scripts/containers setup installs it)");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, None)
    }

    fn ok_with(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let out = self.cmd(args, stdin);
        assert!(
            out.status.success(),
            "podman-compose {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A `shoal` CLI command in a one-off admin-bootstrap container, as the guide runs them.
    fn shoal(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let mut all = vec!["run", "--rm", "-T", "admin-bootstrap"];
        all.extend_from_slice(args);
        self.ok_with(&all, stdin)
    }

    fn container(&self, service: &str) -> Container {
        Container {
            name: format!("{PROJECT}_{service}_1"),
        }
    }

    fn secret(&self, name: &str) -> String {
        let path: PathBuf = self.dir.path().join("deploy/compose/secrets").join(name);
        std::fs::read_to_string(path).unwrap().trim().to_string()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        self.cmd(&["down", "-v", "-t", "0"], None);
    }
}

fn alive_names(status: &Value) -> Vec<String> {
    let mut names: Vec<String> = status["cluster"]["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["state"] == "alive")
        .filter_map(|m| m["meta"]["n"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_compose_file_runs_a_limited_cluster_behind_nginx() {
    let compose = Compose::new(image());

    let started = Instant::now();
    compose.ok(&["up", "-d", "postgres", "s3"]);
    wait_healthy(&compose.container("postgres"), WAIT).await;
    let mut tier = vec!["up", "-d"];
    tier.extend_from_slice(&NODES);
    tier.push("admin-bootstrap");
    compose.ok(&tier);
    for node in NODES {
        wait_healthy(&compose.container(node), WAIT).await;
    }
    compose.ok(&["up", "-d", "nginx"]);
    let lb = format!("http://{}", compose.container("nginx").ip());
    for ip in NODE_IPS {
        let url = format!("http://{ip}:8080");
        wait_until(&format!("{ip} sees all three nodes alive"), WAIT, || {
            let url = url.clone();
            async move {
                let s = cluster_status(url).await?;
                (alive_names(&s) == NODES).then_some(())
            }
        })
        .await;
    }
    wait_until("/ready through nginx", WAIT, || {
        let url = format!("{lb}:8080/ready");
        async move {
            let r = reqwest::get(url).await.ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    let up = started.elapsed();
    println!("FIGURE compose_up_to_ready_s {:.1} s", up.as_secs_f64());

    // The admin job printed the generated password once.
    let boot = compose.container("admin-bootstrap");
    assert_eq!(boot.wait_exit(WAIT).await, 0, "{}", boot.logs());
    let out = podman(&["logs", &boot.name]);
    let password = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(password.len() >= 16, "no password in {out:?}");

    // The guide's S3 demo: a bucket in the backend, the resource, the seed policy (strict),
    // a user with an S3 key pair; then reads through nginx's data-plane port.
    wait_healthy(&compose.container("s3"), WAIT).await;
    let backend = format!("http://{}:9000", compose.container("s3").ip());
    tokio::task::spawn_blocking(move || s3_client(&["upstream", &backend]))
        .await
        .unwrap();
    let spec = json!({
        "kind": "s3",
        "endpoint": "http://s3:9000",
        "port": 9001,
        "upstream_credentials": {
            "access_key_id": compose.secret("s3-root-user"),
            "secret_access_key": compose.secret("s3-root-password"),
        },
    })
    .to_string();
    compose.shoal(
        &["resource", "apply", "demo-s3", "--spec", "@-"],
        Some(spec.as_bytes()),
    );
    let rego = std::fs::read(repo().join("docs/examples/seed.rego")).unwrap();
    compose.shoal(
        &[
            "policy",
            "apply",
            "seed",
            "--file",
            "/dev/stdin",
            "--enforcement",
            "strict",
        ],
        Some(&rego),
    );
    compose.shoal(&["user", "apply", "alice"], None);
    let key: Value =
        serde_json::from_str(&compose.shoal(&["user", "add-key", "alice", "--kind", "s3"], None))
            .unwrap();
    let revision = key["revision"].as_i64().unwrap();
    for ip in NODE_IPS {
        let url = format!("http://{ip}:8080/ready");
        wait_until(&format!("{ip} serves revision {revision}"), WAIT, || {
            let url = url.clone();
            async move {
                let r: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
                (r["data_plane"]["revision"].as_i64()? >= revision).then_some(())
            }
        })
        .await;
    }
    let run = json!({
        "endpoints": [format!("{lb}:9001")],
        "access_key_id": key["key_id"],
        "secret_access_key": key["secret"],
        "steps": [{"step": "get", "do": "round_robin_gets", "bucket": "sensitive-bucket",
                   "key": "secret.txt", "count": 8, "new_connection": true}],
    })
    .to_string();
    let out = tokio::task::spawn_blocking(move || s3_client(&["run", &run]))
        .await
        .unwrap();
    let results: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let allowed = results.iter().filter(|r| r["ok"] == true).count();
    assert_eq!(allowed, 5, "five reads a minute, across the cluster: {out}");
    for r in &results[5..] {
        assert_eq!(r["code"], "AccessDenied", "{out}");
    }

    // Through nginx: the console's login page and the admin API; the decisions were spread
    // over all three nodes (nginx balances connections round robin).
    let client = reqwest::Client::new();
    let page = client
        .get(format!("{lb}:8080/console/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<form"));
    let login: Value = client
        .post(format!("{lb}:8080/api/v1/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"]
        .as_str()
        .expect("a session token")
        .to_string();
    let nodes = wait_until("eight decisions in the audit log", WAIT, || {
        let (client, token, lb) = (client.clone(), token.clone(), lb.clone());
        async move {
            let audit: Value = client
                .get(format!("{lb}:8080/api/v1/audit?action=request&limit=100"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let entries = audit["entries"].as_array()?;
            if entries.len() < 8 {
                return None;
            }
            let mut nodes: Vec<String> = entries
                .iter()
                .filter_map(|e| e["node"].as_str().map(str::to_string))
                .collect();
            nodes.sort();
            nodes.dedup();
            Some(nodes)
        }
    })
    .await;
    assert_eq!(nodes, NODES, "every node decided some of the reads");

    // The data-plane port is no way to the admin surface: nginx's stream server for 9001
    // reaches only the nodes' resource port, whose S3 resource refuses these unsigned requests
    // with its own error, never the console's page or a session token.
    let page = client
        .get(format!("{lb}:9001/console/login"))
        .send()
        .await
        .unwrap();
    assert!(page.status().is_client_error(), "{}", page.status());
    let body = page.text().await.unwrap();
    assert!(!body.contains("<form"), "the console through 9001: {body}");
    let login = client
        .post(format!("{lb}:9001/api/v1/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert!(login.status().is_client_error(), "{}", login.status());
    let body = login.text().await.unwrap();
    let token = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("token").cloned());
    assert!(token.is_none(), "a session through 9001: {body}");
}
