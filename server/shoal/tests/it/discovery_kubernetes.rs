//! Kubernetes discovery against `scripts/fixtures/fake_kube_apiserver.py`: no kube-apiserver can
//! run on these machines, so an HTTP server shaped like one (PodList, watch streams, 403 Status,
//! every object validated against the real schemas with kubernetes-validate) stands in, and
//! Debian's `kubectl` reads the same lists as a second, independent client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use shoal_discovery::Discover as _;
use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(30);
const NS: &str = "shoal";
const SELECTOR: &str = "app.kubernetes.io/name=shoal";

/// The fake apiserver, with a kubeconfig that points at it.
struct FakeApiserver {
    _process: ListeningProcess,
    url: String,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl FakeApiserver {
    fn start() -> Self {
        let process = ListeningProcess::python_script(
            "fake_kube_apiserver.py",
            &["--host", "127.0.0.1", "--port", "0"],
        );
        let url = process.url.clone();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: fake\n  \
                 cluster:\n    server: {url}\nusers:\n- name: shoal\n  user:\n    token: \
                 test-token\ncontexts:\n- name: test\n  context:\n    cluster: fake\n    user: \
                 shoal\n    namespace: {NS}\n"
            ),
        )
        .unwrap();
        Self {
            _process: process,
            url,
            kubeconfig,
            _dir: dir,
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    async fn add(&self, pod: Value) {
        self.post("/_test/pods", pod).await;
    }

    async fn delete(&self, name: &str) {
        let resp = self
            .http
            .delete(format!("{}/_test/pods/{NS}/{name}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }

    async fn mode(&self, namespace: &str, mode: &str) {
        self.post("/_test/mode", json!({"namespace": namespace, "mode": mode}))
            .await;
    }

    async fn requests(&self) -> Vec<Value> {
        let body: Value = self
            .http
            .get(format!("{}/_test/requests", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body.as_array().unwrap().clone()
    }

    fn config(&self, namespace: &str) -> shoal_config::KubernetesDiscovery {
        shoal_config::KubernetesDiscovery {
            namespace: Some(namespace.into()),
            label_selector: Some(SELECTOR.into()),
            kubeconfig: Some(self.kubeconfig.clone()),
        }
    }
}

/// A pod as the apiserver returns it. `gossip`: a container port named `gossip`.
fn pod(
    name: &str,
    namespace: &str,
    app: &str,
    phase: &str,
    ip: Option<&str>,
    ready: bool,
) -> Value {
    let mut status = json!({
        "phase": phase,
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
    });
    if let Some(ip) = ip {
        status["podIP"] = ip.into();
        status["podIPs"] = json!([{ "ip": ip }]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": { "app.kubernetes.io/name": app },
        },
        "spec": { "containers": [{ "name": "shoal", "image": "shoal:test" }] },
        "status": status,
    })
}

fn with_gossip_port(mut pod: Value, port: u16) -> Value {
    pod["spec"]["containers"][0]["ports"] = json!([
        { "name": "http", "containerPort": 8080, "protocol": "TCP" },
        { "name": "gossip", "containerPort": port, "protocol": "TCP" },
        { "name": "gossip-udp", "containerPort": port, "protocol": "UDP" }
    ]);
    pod
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = list.iter().map(|a| a.parse().unwrap()).collect();
    v.sort();
    v
}

async fn discover_sorted(p: &shoal_discovery::Kubernetes) -> Vec<SocketAddr> {
    let mut v = p.discover().await.unwrap();
    v.sort();
    v
}

/// `kubectl get pods` against the fake apiserver: the names and IPs it lists.
fn kubectl_pods(kubeconfig: &Path) -> Vec<(String, Option<String>)> {
    let kubectl = std::env::var("KUBECTL").unwrap_or("kubectl".into());
    let out = Command::new(&kubectl)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["get", "pods", "-n", NS, "-l", SELECTOR, "-o", "json"])
        .output()
        .expect("kubectl (Debian's kubernetes-client; scripts/test installs it)");
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    let mut pods: Vec<(String, Option<String>)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["status"]["podIP"].as_str().map(str::to_string),
            )
        })
        .collect();
    pods.sort();
    pods
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_discovery_follows_the_running_pods_of_its_selector_and_namespace() {
    let api = FakeApiserver::start();
    for p in [
        pod("shoal-0", NS, "shoal", "Running", Some("10.1.0.1"), true),
        with_gossip_port(
            pod("shoal-1", NS, "shoal", "Running", Some("10.1.0.2"), true),
            7950,
        ),
        // Running but not Ready yet: a starting Shoal pod, which must be found.
        pod("shoal-2", NS, "shoal", "Running", Some("10.1.0.3"), false),
        pod("shoal-pending", NS, "shoal", "Pending", None, false),
        pod(
            "shoal-done",
            NS,
            "shoal",
            "Succeeded",
            Some("10.1.0.9"),
            false,
        ),
        pod(
            "shoal-failed",
            NS,
            "shoal",
            "Failed",
            Some("10.1.0.8"),
            false,
        ),
        pod("web-0", NS, "web", "Running", Some("10.1.0.4"), true),
        pod(
            "shoal-0",
            "elsewhere",
            "shoal",
            "Running",
            Some("10.2.0.1"),
            true,
        ),
    ] {
        api.add(p).await;
    }
    let provider = shoal_discovery::Kubernetes::new(&api.config(NS), 7946, WAIT);
    assert_eq!(provider.method(), "kubernetes");
    assert_eq!(
        discover_sorted(&provider).await,
        addrs(&["10.1.0.1:7946", "10.1.0.2:7950", "10.1.0.3:7946"])
    );

    // kubectl, a second client, reads the same pods from the same server.
    let kubeconfig = api.kubeconfig.clone();
    let listed = tokio::task::spawn_blocking(move || kubectl_pods(&kubeconfig))
        .await
        .unwrap();
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "shoal-0",
            "shoal-1",
            "shoal-2",
            "shoal-done",
            "shoal-failed",
            "shoal-pending"
        ]
    );

    // Changes arrive by the watch: a pod started, one stopped, one deleted.
    api.add(pod(
        "shoal-3",
        NS,
        "shoal",
        "Running",
        Some("10.1.0.5"),
        false,
    ))
    .await;
    api.add(pod(
        "shoal-2",
        NS,
        "shoal",
        "Succeeded",
        Some("10.1.0.3"),
        false,
    ))
    .await;
    api.delete("shoal-0").await;
    let expected = addrs(&["10.1.0.2:7950", "10.1.0.5:7946"]);
    wait_until("the watch to deliver the changes", WAIT, || async {
        (discover_sorted(&provider).await == expected).then_some(())
    })
    .await;
    let requests = api.requests().await;
    // kubectl sends no token over plain HTTP: Shoal's requests are the ones that carry it.
    let pod_requests: Vec<&Value> = requests
        .iter()
        .filter(|r| r["path"] == format!("/api/v1/namespaces/{NS}/pods"))
        .filter(|r| r["auth"] == "Bearer test-token")
        .collect();
    let lists = pod_requests
        .iter()
        .filter(|r| r["query"]["watch"].is_null())
        .count();
    let watches = pod_requests
        .iter()
        .filter(|r| r["query"]["watch"] == "true")
        .count();
    assert_eq!(
        lists, 1,
        "one list, then a watch, no polling: {pod_requests:?}"
    );
    assert!(watches >= 1, "{pod_requests:?}");
    for r in &pod_requests {
        assert_eq!(r["query"]["labelSelector"], SELECTOR);
    }

    // The watch is cut and the permission is gone: the last good view is kept, the cause is
    // reported, and the view follows again once the permission is back.
    api.mode(NS, "forbidden").await;
    api.post("/_test/drop-watches", json!({})).await;
    api.delete("shoal-3").await;
    wait_until("the watch to hit the 403", WAIT, || async {
        let forbidden = api
            .requests()
            .await
            .iter()
            .skip(requests.len())
            .any(|r| r["path"] == format!("/api/v1/namespaces/{NS}/pods"));
        forbidden.then_some(())
    })
    .await;
    assert_eq!(discover_sorted(&provider).await, expected, "last good view");
    api.mode(NS, "ok").await;
    let recovered = addrs(&["10.1.0.2:7950"]);
    wait_until("the view to follow again", WAIT, || async {
        (discover_sorted(&provider).await == recovered).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_discovery_errors_name_the_cause_and_the_missing_permission() {
    let api = FakeApiserver::start();
    api.mode("locked", "forbidden").await;
    api.mode("broken", "garbage").await;
    // How long discovery waits for a first good list before it reports the last error. The
    // forbidden case needs the apiserver's 403 to have arrived by then: 5 s was not enough
    // once on a loaded machine.
    let short = Duration::from_secs(5);
    let answers = Duration::from_secs(15);

    let locked = shoal_discovery::Kubernetes::new(&api.config("locked"), 7946, answers);
    let err = locked.discover().await.unwrap_err().to_string();
    assert!(
        err.starts_with("kubernetes discovery: error listing pods in namespace locked: forbidden"),
        "{err}"
    );
    assert!(
        err.contains("needs get, list and watch on pods in namespace locked"),
        "{err}"
    );
    assert!(
        err.contains("cannot list resource \"pods\""),
        "the apiserver's words: {err}"
    );

    let broken = shoal_discovery::Kubernetes::new(&api.config("broken"), 7946, short);
    let err = broken.discover().await.unwrap_err().to_string();
    assert!(
        err.starts_with("kubernetes discovery: error listing pods in namespace broken:"),
        "{err}"
    );

    // kubectl sees the same refusal.
    let out = Command::new(std::env::var("KUBECTL").unwrap_or("kubectl".into()))
        .arg(format!("--kubeconfig={}", api.kubeconfig.display()))
        .args(["get", "pods", "-n", "locked", "-l", SELECTOR])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Forbidden"));

    // No API server at all: a clear error, no hang beyond the timeout.
    let mut nowhere = api.config(NS);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    let closed = free_port("127.0.0.1");
    std::fs::write(
        &path,
        std::fs::read_to_string(&api.kubeconfig)
            .unwrap()
            .replace(&api.url, &format!("http://127.0.0.1:{closed}")),
    )
    .unwrap();
    nowhere.kubeconfig = Some(path);
    let err = shoal_discovery::Kubernetes::new(&nowhere, 7946, short)
        .discover()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("error listing pods in namespace shoal"),
        "{err}"
    );

    // A kubeconfig that does not exist is named.
    let mut missing = api.config(NS);
    missing.kubeconfig = Some("/nonexistent/kubeconfig".into());
    let err = shoal_discovery::Kubernetes::new(&missing, 7946, short)
        .discover()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot read kubeconfig /nonexistent/kubeconfig"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_from_kubernetes_discovery_alone() {
    let api = FakeApiserver::start();
    let pg = TestPostgres::start();
    let url = pg.create_database().await;
    let ips = ["127.0.0.84", "127.0.0.85", "127.0.0.86"];
    let kubeconfig = api.kubeconfig.clone();
    let c = start_nodes(&url, &ips, |_, spec, _| {
        spec.extra_toml = format!(
            "\n[discovery]\nmethod = \"kubernetes\"\ninterval = \"1s\"\n\
             [discovery.kubernetes]\nnamespace = \"{NS}\"\nlabel_selector = \"{SELECTOR}\"\n\
             kubeconfig = \"{}\"\n",
            kubeconfig.display()
        );
    })
    .await;
    // The pods' addresses are the nodes' own loopback addresses and gossip ports.
    for (i, spec) in c.specs.iter().enumerate() {
        api.add(with_gossip_port(
            pod(
                &format!("shoal-{i}"),
                NS,
                "shoal",
                "Running",
                Some(&spec.gossip.ip().to_string()),
                false,
            ),
            spec.gossip.port(),
        ))
        .await;
    }
    let mut nodes = c.nodes;
    for (node, base) in nodes.iter_mut().zip(&c.bases) {
        node.wait_ready_where("ready", Duration::from_secs(60), |s, _| s == 200)
            .await;
        wait_until("three alive members", Duration::from_secs(60), || async {
            let status = cluster_status(base.clone()).await?;
            (status["cluster"]["healthy"] == 3).then_some(())
        })
        .await;
    }
    // Each node found the two others (itself is left out), and says so in its status.
    nodes[0].wait_for_log("discovered 2 nodes", WAIT).await;
    let status = cluster_status(c.bases[0].clone()).await.unwrap();
    let d = &status["discovery"];
    assert_eq!(d["method"], "kubernetes", "{d}");
    assert_eq!(d["last_found"], 2, "{d}");
    assert!(d["runs"].as_u64().unwrap() >= 1, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_pod_permissions_says_which_it_needs() {
    let api = FakeApiserver::start();
    api.mode("locked", "forbidden").await;
    let pg = TestPostgres::start();
    let url = pg.create_database().await;
    let kubeconfig = api.kubeconfig.clone();
    let mut c = start_nodes(&url, &["127.0.0.87"], |_, spec, _| {
        spec.env
            .push(("SHOAL_DISCOVERY_METHOD".into(), "kubernetes".into()));
        spec.env.push((
            "SHOAL_DISCOVERY_KUBERNETES_NAMESPACE".into(),
            "locked".into(),
        ));
        spec.env.push((
            "SHOAL_DISCOVERY_KUBERNETES_LABEL_SELECTOR".into(),
            SELECTOR.into(),
        ));
        spec.extra_toml = format!(
            "\n[discovery]\ninterval = \"1s\"\njoin_timeout = \"2s\"\n\
             [discovery.kubernetes]\nkubeconfig = \"{}\"\n",
            kubeconfig.display()
        );
    })
    .await;
    let line = c.nodes[0]
        .wait_for_log(
            "needs get, list and watch on pods in namespace locked",
            WAIT,
        )
        .await;
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains("error listing pods in namespace locked: forbidden"),
        "{line}"
    );
    // The node still starts, alone, once the join timeout passes, and its status counts the
    // failed rounds with their cause.
    c.nodes[0]
        .wait_ready_where("ready alone", Duration::from_secs(60), |s, _| s == 200)
        .await;
    let status = cluster_status(c.bases[0].clone()).await.unwrap();
    let d = &status["discovery"];
    assert!(d["failures"].as_u64().unwrap() >= 1, "{d}");
    assert!(
        d["last_error"].as_str().unwrap().contains("forbidden"),
        "{d}"
    );
}
