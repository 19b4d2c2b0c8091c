//! Faults under load, on real processes: partitions (3|2 and 2|1) and packet loss (10% and
//! 30%) inside network namespaces the test creates (iptables in each node's namespace drops
//! the packets, silently, as a real network does), and SIGKILL of 1 of 3 and 2 of 5 nodes on
//! loopback while requests flow through the data plane.
//!
//! Each scenario prints `FIGURE <name> <value> <unit>` lines (time to detect, time to
//! converge, requests and audit rows lost) that docs/reliability.md records; durations are
//! bounded for CI and set longer by scripts/chaos through `SHOAL_CHAOS_*` variables.
//! tc's netem qdisc (latency, reordering) is not in this machine's kernel, so loss is
//! injected with iptables' `statistic` match and latency is not injected at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_testkit::counting::*;
use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

/// A duration from `SHOAL_CHAOS_<NAME>` in seconds (scripts/chaos), else the CI default.
fn chaos_secs(name: &str, default: u64) -> Duration {
    let secs = std::env::var(format!("SHOAL_CHAOS_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Duration::from_secs(secs)
}

fn figure(name: &str, value: impl std::fmt::Display, unit: &str) {
    println!("FIGURE {name} {value} {unit}");
}

/// Drops `percent` of the packets each node receives on the cluster network.
fn lose(net: &TestNetwork, percent: u32) {
    let probability = format!("{:.2}", f64::from(percent) / 100.0);
    for i in 0..net.nodes() {
        net.iptables(
            i,
            &[
                "-A",
                "INPUT",
                "-s",
                "10.77.0.0/24",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
                "-j",
                "DROP",
            ],
        );
    }
}

/// A partition of `nodes` into a majority and `minority` nodes under load, then the heal:
/// both sides keep counting, the majority sees the minority dead, and after the heal every
/// node converges to exactly the acknowledged total.
async fn partition_under_load(test: &str, nodes: usize, minority: usize) {
    let db = database().await;
    let url = db
        .socket_url()
        .expect("a private PostgreSQL inside the namespace");
    let net = TestNetwork::new(nodes);
    let (_nodes, apis) = start_netns_cluster(&net, &url).await;
    let majority: Vec<usize> = (0..nodes - minority).collect();
    let cut: Vec<usize> = (nodes - minority..nodes).collect();
    let cut_ids: Vec<String> = {
        let mut ids = Vec::new();
        for &i in &cut {
            let s = cluster_status(apis[i].base.clone()).await.unwrap();
            ids.push(s["cluster"]["local_id"].as_str().unwrap().to_string());
        }
        ids
    };
    let load = Load::start(&apis);
    wait_until("increments acknowledged before the cut", WAIT, || async {
        (load.acked.load(Ordering::Relaxed) >= 20).then_some(())
    })
    .await;

    net.partition(&majority, &cut);
    let cut_at = Instant::now();
    let detected = wait_until("the minority dead on the majority side", WAIT, || async {
        let s = cluster_status(apis[0].base.clone()).await?;
        let states = member_states(&s);
        cut_ids
            .iter()
            .all(|id| states.iter().any(|(m, st)| m == id && st == "dead"))
            .then(|| cut_at.elapsed())
    })
    .await;
    let hold = chaos_secs("PARTITION_SECS", 5);
    if let Some(rest) = hold.checked_sub(cut_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    net.heal();
    let healed_at = Instant::now();
    let rejoined = wait_until("every member alive again everywhere", WAIT, || async {
        for api in &apis {
            let s = cluster_status(api.base.clone()).await?;
            let states = member_states(&s);
            if states.len() != nodes || states.iter().any(|(_, st)| st != "alive") {
                return None;
            }
        }
        Some(healed_at.elapsed())
    })
    .await;
    let (acked, failed) = load.finish().await;
    let exact = converge(&apis, acked).await + healed_at.elapsed() - rejoined;
    assert_eq!(failed, 0, "both sides keep serving increments");
    for api in &apis {
        assert_eq!(total(api).await, Some(acked), "nothing lost, nothing twice");
    }
    let tag = format!("partition_{}_{}", nodes - minority, minority);
    println!("{test}: {acked} increments acknowledged during a {hold:?} partition");
    figure(&format!("{tag}_detect_dead_ms"), detected.as_millis(), "ms");
    figure(&format!("{tag}_rejoin_ms"), rejoined.as_millis(), "ms");
    figure(
        &format!("{tag}_exact_after_heal_ms"),
        exact.as_millis(),
        "ms",
    );
    figure(&format!("{tag}_increments_lost"), 0, "increments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_two_partition_under_load_heals_to_exact_counts() {
    let name = "faults::a_three_two_partition_under_load_heals_to_exact_counts";
    if in_private_namespaces(name) {
        partition_under_load(name, 5, 2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_one_partition_under_load_heals_to_exact_counts() {
    let name = "faults::a_two_one_partition_under_load_heals_to_exact_counts";
    if in_private_namespaces(name) {
        partition_under_load(name, 3, 1).await;
    }
}

/// The limit of [`SPLIT_POLICY`]: more than this many requests a minute are blocked.
const SPLIT_LIMIT: u64 = 30;

const SPLIT_POLICY: &str = r#"package split.limit

import future.keywords.if

pre_request := { "action": "block", "type": "limit" } if {
  input.bucket.access_count.last_minute > 30
}
"#;

/// What one node's data plane admits for `user` from now until its first refusal; the
/// refusals' status codes.
async fn admit_until_refused(url: &str, key: &str) -> (u64, u16) {
    let client = reqwest::Client::new();
    let mut admitted = 0;
    loop {
        let r = client
            .get(url)
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => admitted += 1,
            code => return (admitted, code),
        }
        assert!(admitted <= 10 * SPLIT_LIMIT, "{url} never refuses");
    }
}

/// The user's last-minute count of accesses to the resource, as node `api` sees it.
async fn split_count(api: &Api) -> Option<u64> {
    let (code, body) = api
        .get("/api/v1/state/counters?subject=pat&resource=limited&action=access")
        .await;
    (code == 200).then(|| body["access_count"]["last_minute"].as_u64())?
}

/// A 2|1 partition with a rate limit whose policy has `on_unreachable = choice`: once both
/// sides see the other dead, every node is sent requests until it refuses (node 1 after it
/// has node 0's counts, so only the split shows). Returns what the cluster admitted.
async fn admitted_during_split(choice: &str) -> u64 {
    let db = database().await;
    let url = db
        .socket_url()
        .expect("a private PostgreSQL inside the namespace");
    let net = TestNetwork::new(3);
    let (mut nodes, apis) = start_netns_cluster(&net, &url).await;
    // The upstream on the bridge, which the partition (between nodes) leaves reachable.
    let listener = tokio::net::TcpListener::bind("10.77.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    spawn(
        async move { axum::serve(listener, axum::Router::new().fallback(|| async { "ok" })).await },
    );
    let key = apis[0].user_with_api_key("pat").await;
    apis[0]
        .http_resource("limited", &format!("http://{upstream}"), 9100)
        .await;
    let (code, body) = apis[0]
        .put(
            "/api/v1/policies/limit",
            serde_json::json!({"rego": SPLIT_POLICY, "on_unreachable": choice}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let revision = body["revision"].as_i64().unwrap();
    for node in &mut nodes {
        node.wait_data_plane(revision).await;
    }
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for api in &apis {
            let s = cluster_status(api.base.clone()).await.unwrap();
            ids.push(s["cluster"]["local_id"].as_str().unwrap().to_string());
        }
        ids
    };
    net.partition(&[0, 1], &[2]);
    for (i, others) in [(0, vec![2]), (1, vec![2]), (2, vec![0, 1])] {
        wait_until("the other side dead", WAIT, || async {
            let states = member_states(&cluster_status(apis[i].base.clone()).await?);
            others
                .iter()
                .all(|&o| states.iter().any(|(m, st)| *m == ids[o] && st == "dead"))
                .then_some(())
        })
        .await;
    }
    let data = |i: usize| format!("http://{}:9100/object", net.ip(i));
    let (on_0, refused_0) = admit_until_refused(&data(0), &key).await;
    let seen = split_count(&apis[0]).await.unwrap();
    wait_until("node 1 has node 0's counts", WAIT, || async {
        (split_count(&apis[1]).await? >= seen).then_some(())
    })
    .await;
    let (on_1, refused_1) = admit_until_refused(&data(1), &key).await;
    let (on_2, refused_2) = admit_until_refused(&data(2), &key).await;
    let refusals = [refused_0, refused_1, refused_2];
    let expected_refusal = if choice == "deny" { 503 } else { 403 };
    assert_eq!(refusals, [expected_refusal; 3], "{choice}");
    let admitted = on_0 + on_1 + on_2;
    // Every request decided during the split is audited with it (and the refusals' outcome).
    let audited = wait_until("the split's requests audited", WAIT, || async {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&url).await.ok()?;
        let (rows, refused): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE outcome <> 'allowed') FROM audit_log
              WHERE action = 'request' AND detail->'cluster_split'->>'members' = '3'",
        )
        .fetch_one(&mut conn)
        .await
        .ok()?;
        (rows >= admitted as i64 + 3).then_some((rows, refused))
    })
    .await;
    assert_eq!(audited, (admitted as i64 + 3, 3), "{choice}");
    println!("on_unreachable = {choice}: admitted {on_0} + {on_1} (majority) + {on_2} (minority)");
    figure(
        &format!("split_2_1_{choice}_admitted"),
        admitted,
        "requests",
    );
    figure(
        &format!("split_2_1_{choice}_over_admission"),
        admitted.saturating_sub(SPLIT_LIMIT),
        "requests",
    );
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_with_local_counts_admits_the_limit_on_each_side() {
    let name = "faults::split_with_local_counts_admits_the_limit_on_each_side";
    if in_private_namespaces(name) {
        assert_eq!(admitted_during_split("local").await, 2 * SPLIT_LIMIT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_with_deny_admits_nothing_anywhere() {
    let name = "faults::split_with_deny_admits_nothing_anywhere";
    if in_private_namespaces(name) {
        assert_eq!(admitted_during_split("deny").await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_with_shares_admits_the_limit_across_both_sides() {
    let name = "faults::split_with_shares_admits_the_limit_across_both_sides";
    if in_private_namespaces(name) {
        // 2/3 of 30 on the majority side, 1/3 on the minority: 30 in all, none over.
        assert_eq!(admitted_during_split("share").await, SPLIT_LIMIT);
    }
}

/// Failure detection for lossy links (docs/reliability.md): slower probes and a longer
/// suspicion, so a member must miss many more acks before it is declared dead.
const LOSSY_PROBES: &str =
    "probe_interval = \"1s\"\nprobe_timeout = \"500ms\"\nsuspicion_multiplier = 6\n";

/// 10% of every node's incoming cluster packets dropped with the shipped failure-detection
/// settings, then 30% with the lossy-link settings, under load: no live node is ever declared
/// dead, every suspicion is refuted, and the counts stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_loss_never_declares_a_live_node_dead() {
    if !in_private_namespaces("faults::packet_loss_never_declares_a_live_node_dead") {
        return;
    }
    let net = TestNetwork::new(3);
    let hold = chaos_secs("LOSS_SECS", 15);
    for (percent, probes, profile) in [(10, "", "shipped"), (30, LOSSY_PROBES, "lossy")] {
        let db = database().await;
        let url = db
            .socket_url()
            .expect("a private PostgreSQL inside the namespace");
        let (nodes, apis) = start_netns_cluster_with(&net, &url, probes).await;
        let load = Load::start(&apis);
        lose(&net, percent);
        let started = Instant::now();
        let mut samples = 0;
        while started.elapsed() < hold {
            for (i, api) in apis.iter().enumerate() {
                if let Some(s) = cluster_status(api.base.clone()).await {
                    let dead: Vec<_> = member_states(&s)
                        .into_iter()
                        .filter(|(_, st)| st == "dead")
                        .collect();
                    assert!(
                        dead.is_empty(),
                        "{percent}% loss ({profile} settings): node {i} declared live members dead: {dead:?}"
                    );
                    samples += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        net.heal();
        let (acked, failed) = load.finish().await;
        assert_eq!(failed, 0);
        let exact = converge(&apis, acked).await;
        // Every suspicion raised during the loss is refuted once it ends.
        let mut raised = 0;
        for (i, api) in apis.iter().enumerate() {
            let r = wait_until("suspicions settled", WAIT, || async {
                let s = cluster_status(api.base.clone()).await?;
                let (r, f) = suspicions(&s);
                let alive = member_states(&s).iter().all(|(_, st)| st == "alive");
                (alive && r == f).then_some(r)
            })
            .await;
            println!("node {i}: {r} suspicions raised and refuted");
            raised += r;
        }
        println!(
            "{percent}% loss for {hold:?} ({profile} settings): {samples} status samples, no member dead"
        );
        figure(&format!("loss_{percent}pct_false_dead"), 0, "members");
        figure(
            &format!("loss_{percent}pct_suspicions_per_node_minute"),
            format!(
                "{:.1}",
                raised as f64 / apis.len() as f64 / (hold.as_secs_f64() / 60.0)
            ),
            "suspicions",
        );
        figure(
            &format!("loss_{percent}pct_exact_after_ms"),
            exact.as_millis(),
            "ms",
        );
        drop(nodes);
    }
}

fn suspicions(status: &Value) -> (u64, u64) {
    let c = &status["cluster"];
    (
        c["suspicions_raised"].as_u64().unwrap_or(0),
        c["suspicions_refuted"].as_u64().unwrap_or(0),
    )
}

/// Requests through every node's data plane, round robin over the nodes still meant to be up;
/// per node: answered 200, failed.
struct Traffic {
    stop: Arc<AtomicBool>,
    up: Arc<Vec<AtomicBool>>,
    ok: Arc<Vec<AtomicU64>>,
    failed: Arc<Vec<AtomicU64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(urls: Vec<String>, key: String) -> Self {
        let n = urls.len();
        let stop = Arc::new(AtomicBool::new(false));
        let up: Arc<Vec<AtomicBool>> = Arc::new((0..n).map(|_| AtomicBool::new(true)).collect());
        let ok: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let failed: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let task = spawn({
            let (stop, up, ok, failed) = (stop.clone(), up.clone(), ok.clone(), failed.clone());
            async move {
                let client = reqwest::Client::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i = (i + 1) % n;
                    if !up[i].load(Ordering::Relaxed) {
                        continue;
                    }
                    let sent = client
                        .get(&urls[i])
                        .header("x-api-key", &key)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    match sent {
                        // An answer counts even from a node killed meanwhile: the client has
                        // it, so its audit row must exist.
                        Ok(r) if r.status().as_u16() == 200 => {
                            ok[i].fetch_add(1, Ordering::Relaxed);
                        }
                        // A node marked down meanwhile may have been killed mid-request: only
                        // failures of nodes meant to be up count.
                        _ if up[i].load(Ordering::Relaxed) => {
                            failed[i].fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            }
        });
        Self {
            stop,
            up,
            ok,
            failed,
            task,
        }
    }

    /// Waits until every node meant to be up has answered `more` requests beyond now.
    async fn wait_each_served(&self, more: u64) {
        let start: Vec<u64> = self.ok.iter().map(|o| o.load(Ordering::Relaxed)).collect();
        wait_until("requests answered by every node up", WAIT, || async {
            (0..start.len())
                .filter(|&i| self.up[i].load(Ordering::Relaxed))
                .all(|i| self.ok[i].load(Ordering::Relaxed) >= start[i] + more)
                .then_some(())
        })
        .await;
    }

    fn take_down(&self, i: usize) {
        self.up[i].store(false, Ordering::Relaxed);
    }

    async fn finish(self) -> Vec<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.ok
            .iter()
            .zip(self.failed.iter())
            .map(|(o, f)| (o.load(Ordering::Relaxed), f.load(Ordering::Relaxed)))
            .collect()
    }
}

/// An HTTP resource `objects` in front of an `ok` upstream on every node, the seed policy in
/// strict mode, and `user` with an API key: (key, data-plane port, config revision).
async fn serve_objects(
    apis: &[Api],
    nodes: &mut [Node],
    ip: &str,
    user: &str,
) -> (String, u16, i64) {
    let upstream = ok_upstream().await;
    let key = apis[0].user_with_api_key(user).await;
    let port = free_port(ip);
    apis[0]
        .http_resource("objects", &format!("http://{upstream}"), port)
        .await;
    let revision = apis[0].put_seed_policy_strict().await;
    for node in nodes.iter_mut() {
        node.wait_data_plane(revision).await;
    }
    (key, port, revision)
}

async fn audited_requests(url: &str, node: &str) -> i64 {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE node = $1 AND action = 'request' AND outcome = 'allowed'",
    )
    .bind(node)
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

/// SIGKILL of `kill` of `ips.len()` nodes while requests flow through every data plane: the
/// survivors detect the loss, answer every request sent to them, and audit every one.
async fn kill_under_load(ips: &[&str], kill: usize) {
    let db = database().await;
    let (c, apis) = start_ready_cluster(&db.url, ips).await;
    let mut nodes = c.nodes;
    let (key, port, _) = serve_objects(&apis, &mut nodes, ips[0], "kim").await;
    let n = ips.len();
    let ids: Vec<String> = {
        let mut v = Vec::new();
        for b in &c.bases {
            let s = cluster_status(b.clone()).await.unwrap();
            v.push(s["cluster"]["local_id"].as_str().unwrap().to_string());
        }
        v
    };
    let urls = ips
        .iter()
        .map(|ip| format!("http://{ip}:{port}/object"))
        .collect();
    let traffic = Traffic::start(urls, key);
    traffic.wait_each_served(10).await;

    let victims: Vec<usize> = (n - kill..n).collect();
    for &v in &victims {
        traffic.take_down(v);
        nodes[v].signal("KILL");
    }
    let killed_at = Instant::now();
    let survivors: Vec<usize> = (0..n - kill).collect();
    // Polled by hand (not `wait_until`): the first time each state is seen is the figure.
    let mut suspect_ms = Vec::new();
    let mut dead_ms = Vec::new();
    for &s in &survivors {
        let (mut suspect, mut dead) = (None, None);
        while dead.is_none() {
            assert!(killed_at.elapsed() < WAIT, "victims not dead on node {s}");
            if let Some(status) = cluster_status(c.bases[s].clone()).await {
                let states = member_states(&status);
                let state_of = |v: usize| {
                    states
                        .iter()
                        .find(|(m, _)| *m == ids[v])
                        .map(|(_, st)| st.clone())
                };
                let all = |want: &[&str]| {
                    victims
                        .iter()
                        .all(|&v| state_of(v).is_some_and(|st| want.contains(&st.as_str())))
                };
                if suspect.is_none() && all(&["suspect", "dead"]) {
                    suspect = Some(killed_at.elapsed());
                }
                if all(&["dead"]) {
                    dead = Some(killed_at.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        suspect_ms.push(suspect.unwrap_or_default().as_millis());
        dead_ms.push(dead.unwrap_or_default().as_millis());
    }
    // The survivors keep serving after the deaths are known.
    traffic.wait_each_served(10).await;
    let counts = traffic.finish().await;
    let tag = format!("kill_{kill}_of_{n}");
    for &s in &survivors {
        let (ok, failed) = counts[s];
        assert!(ok > 0, "node {s} served nothing");
        assert_eq!(failed, 0, "node {s} failed requests while others died");
        let name = format!("n{s}");
        let rows = wait_until("every answered request audited", WAIT, || async {
            let rows = audited_requests(&db.url, &name).await;
            (rows >= ok as i64).then_some(rows)
        })
        .await;
        assert_eq!(
            rows, ok as i64,
            "node {s}: one audit row per answered request"
        );
    }
    // Every answer a victim gave was journaled before it left: restarted on the same data
    // directory, the victim ships what the kill kept from PostgreSQL. The one request in
    // flight at the kill may have been journaled without its answer arriving.
    let mut shipped_after_restart = 0;
    for &v in &victims {
        let name = format!("n{v}");
        let before = audited_requests(&db.url, &name).await;
        nodes[v] = c.specs[v].start();
        nodes[v]
            .wait_ready_where("victim restarted", WAIT, |s, _| s == 200)
            .await;
        let answered = counts[v].0 as i64;
        let rows = wait_until("the victim's journal shipped", WAIT, || async {
            let rows = audited_requests(&db.url, &name).await;
            (rows >= answered).then_some(rows)
        })
        .await;
        assert!(
            rows <= answered + 1,
            "victim {v}: {rows} audit rows for {answered} answers (at most one more in flight)"
        );
        let (_, ready) = nodes[v]
            .wait_ready_where("journal caught up", WAIT, |_, r| {
                r["audit"]["spool_bytes"] == 0
            })
            .await;
        assert_eq!(ready["audit"]["damaged"], 0, "{ready}");
        shipped_after_restart += rows - before;
    }
    figure(
        &format!("{tag}_suspect_ms"),
        suspect_ms.iter().max().unwrap(),
        "ms",
    );
    figure(
        &format!("{tag}_dead_ms"),
        dead_ms.iter().max().unwrap(),
        "ms",
    );
    figure(&format!("{tag}_survivor_requests_failed"), 0, "requests");
    figure(&format!("{tag}_survivor_audit_rows_lost"), 0, "rows");
    figure(&format!("{tag}_killed_nodes_audit_rows_lost"), 0, "rows");
    figure(
        &format!("{tag}_killed_nodes_rows_shipped_after_restart"),
        shipped_after_restart,
        "rows",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_under_load_loses_no_survivor_request() {
    kill_under_load(&["127.0.0.111", "127.0.0.112", "127.0.0.113"], 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_two_of_five_under_load_loses_no_survivor_request() {
    kill_under_load(
        &[
            "127.0.0.114",
            "127.0.0.115",
            "127.0.0.116",
            "127.0.0.117",
            "127.0.0.118",
        ],
        2,
    )
    .await;
}

/// Every node of three restarted in turn (SIGTERM, wait for exit 0, start again, wait ready)
/// while clients send requests through nginx in front of the data planes: no client request
/// fails, because a draining node stops accepting and finishes what it has, and nginx moves
/// to the next node on a refused connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_nginx_fails_no_client_request() {
    let ips = ["127.0.0.121", "127.0.0.122", "127.0.0.123"];
    let db = database().await;
    let (c, apis) = start_ready_cluster(&db.url, &ips).await;
    let (specs, mut nodes) = (c.specs, c.nodes);
    let (key, port, revision) = serve_objects(&apis, &mut nodes, ips[0], "rory").await;
    let data_planes: Vec<std::net::SocketAddr> = ips
        .iter()
        .map(|ip| format!("{ip}:{port}").parse().unwrap())
        .collect();
    let (_nginx, nginx_port) = start_nginx(
        &data_planes,
        "proxy_next_upstream error timeout http_502 http_503; proxy_next_upstream_tries 3; \
         proxy_connect_timeout 5s;",
    );
    let url = format!("http://127.0.0.1:{nginx_port}/object");
    wait_until("nginx answering", WAIT, || async {
        let r = reqwest::Client::new()
            .get(&url)
            .header("x-api-key", &key)
            .send()
            .await
            .ok()?;
        (r.status().as_u16() == 200).then_some(())
    })
    .await;

    let before = wait_until("the probe audited", WAIT, || async {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.ok()?;
        let rows: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_log WHERE action = 'request' AND actor = 'user:rory'",
        )
        .fetch_one(&mut conn)
        .await
        .ok()?;
        (rows > 0).then_some(rows)
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            let (url, key) = (url.clone(), key.clone());
            spawn(async move {
                let client = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let answer = client
                        .get(&url)
                        .header("x-api-key", &key)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    match answer {
                        Ok(r) if r.status().as_u16() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(r) => {
                            let status = r.status();
                            let body = r.text().await.unwrap_or_default();
                            eprintln!(
                                "client got {status}: {}",
                                body.chars().take(200).collect::<String>()
                            );
                            failures.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => {
                            eprintln!("client error: {e}");
                            failures.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();

    let started = Instant::now();
    let answered_more = |more: u64| {
        let (ok, from) = (ok.clone(), ok.load(Ordering::Relaxed));
        async move {
            wait_until("clients answered meanwhile", WAIT, || async {
                (ok.load(Ordering::Relaxed) >= from + more).then_some(())
            })
            .await;
        }
    };
    for (i, spec) in specs.iter().enumerate() {
        answered_more(100).await;
        nodes[i].signal("TERM");
        assert_eq!(nodes[i].wait_exit(WAIT).await, Some(0), "node {i} drained");
        nodes[i] = spec.start();
        nodes[i]
            .wait_ready_where("ready again", WAIT, |s, _| s == 200)
            .await;
        nodes[i].wait_data_plane(revision).await;
    }
    answered_more(100).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let (ok, failures) = (ok.load(Ordering::Relaxed), failures.load(Ordering::Relaxed));
    println!(
        "rolling restart of 3 nodes in {:.1} s: {ok} requests answered",
        started.elapsed().as_secs_f64()
    );
    assert!(ok > 0);
    assert_eq!(
        failures, 0,
        "client requests failed during the rolling restart"
    );
    // Every answered request was audited by the node that decided it (written within the
    // flush interval); a request nginx sent twice (the first node closed the connection after
    // deciding) is audited twice.
    let rows = wait_until("every answer audited", WAIT, || async {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.ok()?;
        let rows: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_log WHERE action = 'request' AND outcome = 'allowed' \
             AND actor = 'user:rory'",
        )
        .fetch_one(&mut conn)
        .await
        .ok()?;
        (rows - before >= ok as i64).then_some(rows - before)
    })
    .await;
    figure("rolling_restart_failed_requests", failures, "requests");
    figure("rolling_restart_audit_rows_lost", 0, "rows");
    figure(
        "rolling_restart_requests_decided_twice",
        rows - ok as i64,
        "requests",
    );
}
