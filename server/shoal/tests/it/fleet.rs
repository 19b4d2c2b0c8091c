//! Whole nodes coming and going, as containers of the real image with an address each, the
//! way a fleet lives in production: a container killed, a container cut off its network and
//! reconnected, every node replaced one by one by a new container at a new address while a
//! user is held at the seed policy's limit, and a node restarted with its key volume at a new
//! address.
//!
//! Each node is on two podman networks: the cluster network (gossip, DNS-A discovery of the
//! `shoal-nodes` alias, PostgreSQL, the upstream) and an internal one the test reaches it
//! through, which stays when the node is cut from the cluster network. Figures are printed
//! as `FIGURE` lines (scripts/bench fleet).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use shoal_testkit::containers::{
    Container, HARDENED, NGINX_IMAGE, Net, image, node_env, pg_url, podman_ok,
};
use shoal_testkit::counting::{Load, converge, member_states, total};
use shoal_testkit::{
    ADMIN, ADMIN_PASSWORD, Api, PSK_HEX, SECRETS_KEY_HEX, cluster_status, get_ready, shoal_bin,
    spawn, wait_until,
};

const WAIT: Duration = Duration::from_secs(90);
/// The data-plane port of the limited resource.
const PORT: u16 = 9001;
/// The seed policy refuses the sixth access to `sensitive-bucket` in a minute.
const LIMIT: usize = 5;

struct Fleet {
    // Dropped in this order: the containers (tracked by `cluster`), then the networks.
    cluster: Net,
    mgmt: Net,
    pg: Container,
    upstream: Container,
    next: AtomicU8,
}

/// One node container.
struct FleetNode {
    c: Container,
    /// Its address on the cluster network (gossip, advertised).
    ip: String,
    /// `http://<management address>:8080`.
    base: String,
    /// `SHOAL_NODE_NAME`.
    name: String,
}

impl FleetNode {
    async fn id(&self) -> String {
        let s = cluster_status(self.base.clone()).await.expect("status");
        s["cluster"]["local_id"].as_str().unwrap().to_string()
    }

    fn data_url(&self) -> String {
        self.base.replace(":8080", &format!(":{PORT}"))
    }
}

impl Fleet {
    /// The networks, PostgreSQL on both (a cut node keeps its control plane: the partition
    /// is between nodes), an nginx upstream, and the test's admin.
    async fn new(test: &str) -> Fleet {
        let cluster = Net::new(test);
        let mgmt = Net::internal(&format!("{test}-mgmt"));
        let also_mgmt = format!("--network={}", mgmt.name);
        let pg = cluster.postgres_with(&[&also_mgmt]).await;
        let upstream = cluster.run("upstream", &[&also_mgmt, NGINX_IMAGE]);
        // The admin, created (and the schema migrated) by this build's CLI from the host.
        let password = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(password.path(), ADMIN_PASSWORD).unwrap();
        let host_url = format!(
            "postgres://shoal:{}@{}:5432/shoal",
            shoal_testkit::containers::PG_PASSWORD,
            pg.ip_on(&cluster)
        );
        let out = std::process::Command::new(shoal_bin())
            .args(["admin", "create", "--username", ADMIN, "--password-file"])
            .arg(password.path())
            .env_clear()
            .env("SHOAL_DATABASE_URL", host_url)
            .env("SHOAL_CLUSTER_PSK", PSK_HEX)
            .env("SHOAL_SECRETS_KEY", SECRETS_KEY_HEX)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "admin create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Fleet {
            cluster,
            mgmt,
            pg,
            upstream,
            next: AtomicU8::new(1),
        }
    }

    /// Starts a node container named `name` (its `SHOAL_NODE_NAME`) with its data on
    /// `volume`, at the next unused address.
    fn start(&self, name: &str, volume: &str) -> FleetNode {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let ip = self.cluster.ip(100 + n);
        let network = format!("{}:ip={ip},alias=shoal-nodes", self.cluster.name);
        let mgmt = format!("--network={}", self.mgmt.name);
        let data = format!("{volume}:/var/lib/shoal");
        // Discovery asks the cluster network's DNS server only: the management network's
        // server knows no `shoal-nodes`, and an answer from it would leave the node alone.
        let dns = format!("SHOAL_DISCOVERY_SERVER={}:53", self.cluster.ip(1));
        // PostgreSQL by its management address: a node cut from the cluster network keeps
        // its control plane (and the sessions the test's admin API calls need).
        let env = node_env(name, Some(&ip), &pg_url(&self.pg.ip_on(&self.mgmt)));
        let mut args = HARDENED.to_vec();
        args.extend(env.iter().map(String::as_str));
        args.extend_from_slice(&[
            &mgmt,
            "-v",
            &data,
            "-e",
            "SHOAL_DISCOVERY_DNS_A=shoal-nodes",
            "-e",
            &dns,
            image(),
        ]);
        let c = self
            .cluster
            .run_attached(&format!("node-{n}"), &network, &args);
        let base = format!("http://{}:8080", c.ip_on(&self.mgmt));
        FleetNode {
            c,
            ip,
            base,
            name: name.to_string(),
        }
    }

    /// `count` nodes, each with a fresh volume, all ready and each seeing all alive.
    async fn start_cluster(&self, count: usize) -> Vec<FleetNode> {
        let nodes: Vec<FleetNode> = (1..=count)
            .map(|i| {
                let name = format!("shoal-{i}");
                let volume = self.cluster.volume(&format!("data-{name}"));
                self.start(&name, &volume)
            })
            .collect();
        for node in &nodes {
            wait_ready(node).await;
        }
        wait_alive_everywhere(&nodes, count).await;
        nodes
    }

    /// The limited resource in front of the nginx upstream, the seed policy in strict mode
    /// and `user` with an API key; waits until every node serves it.
    async fn limited_resource(&self, api: &Api, nodes: &[FleetNode], user: &str) -> String {
        let key = api.user_with_api_key(user).await;
        let upstream = format!("http://{}:80", self.upstream.ip_on(&self.cluster));
        api.http_resource("sensitive-bucket", &upstream, PORT).await;
        let revision = api.put_seed_policy_strict().await;
        for node in nodes {
            wait_revision(node, revision).await;
        }
        key
    }
}

/// Polls the node's `/ready` until `accept` takes (status, body), as `Node::wait_ready_where`
/// does for processes.
async fn wait_ready_where(node: &FleetNode, what: &str, accept: impl Fn(u16, &Value) -> bool) {
    let base = node.base.clone();
    wait_until(&format!("{} {what}", node.c.name), WAIT, || {
        let base = base.clone();
        let accept = &accept;
        async move {
            let (status, body) = get_ready(base).await;
            accept(status, &body).then_some(())
        }
    })
    .await;
}

async fn wait_ready(node: &FleetNode) {
    wait_ready_where(node, "ready", |status, _| status == 200).await;
}

async fn wait_revision(node: &FleetNode, revision: i64) {
    wait_ready_where(node, &format!("on revision {revision}"), |_, body| {
        body["data_plane"]["revision"].as_i64() >= Some(revision)
    })
    .await;
}

/// Waits until each node sees `count` members alive (nodes replaced meanwhile stay listed as
/// left until they are reaped).
async fn wait_alive_everywhere(nodes: &[FleetNode], count: usize) -> Duration {
    let started = Instant::now();
    for node in nodes {
        let base = node.base.clone();
        wait_until(
            &format!("{} to see {count} members alive", node.c.name),
            WAIT,
            || {
                let base = base.clone();
                async move {
                    let states = member_states(&cluster_status(base).await?);
                    let alive = states.iter().filter(|(_, s)| s == "alive").count();
                    (alive == count && !states.iter().any(|(_, s)| s == "suspect")).then_some(())
                }
            },
        )
        .await;
    }
    started.elapsed()
}

/// The state of member `id` as `node` sees it.
async fn state_of(node: &FleetNode, id: &str) -> Option<String> {
    let s = cluster_status(node.base.clone()).await?;
    member_states(&s)
        .into_iter()
        .find(|(m, _)| m == id)
        .map(|(_, st)| st)
}

async fn logins(nodes: &[FleetNode]) -> Vec<Api> {
    let mut apis = Vec::new();
    for node in nodes {
        apis.push(Api::login(&node.base).await);
    }
    apis
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_container_is_dead_everywhere_and_its_counts_stay() {
    let fleet = Fleet::new("fleet-kill").await;
    let nodes = fleet.start_cluster(3).await;
    let apis = logins(&nodes).await;
    let load = Load::start(&apis);
    wait_until("increments acknowledged on every node", WAIT, || async {
        (load.acked.load(Ordering::Relaxed) >= 30).then_some(())
    })
    .await;
    let (before, failed) = load.finish().await;
    assert_eq!(failed, 0);
    converge(&apis, before).await;

    let victim = nodes[2].id().await;
    let killed = Instant::now();
    podman_ok(&["kill", &nodes[2].c.name]);
    for node in &nodes[..2] {
        wait_until(&format!("{victim} dead on {}", node.name), WAIT, || async {
            (state_of(node, &victim).await.as_deref() == Some("dead")).then_some(())
        })
        .await;
    }
    let detected = killed.elapsed();
    println!(
        "FIGURE container_kill_dead_everywhere_ms {} ms",
        detected.as_millis()
    );
    for api in &apis[..2] {
        assert_eq!(
            total(api).await,
            Some(before),
            "the dead node's counts stay in the survivors' totals"
        );
    }
    // The survivors go on counting from there.
    let load = Load::start(&apis[..2]);
    wait_until("increments on the survivors", WAIT, || async {
        (load.acked.load(Ordering::Relaxed) >= 10).then_some(())
    })
    .await;
    let (after, failed) = load.finish().await;
    assert_eq!(failed, 0);
    converge(&apis[..2], before + after).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_its_network_serves_on_both_sides_and_heals_exactly() {
    let fleet = Fleet::new("fleet-cut").await;
    let nodes = fleet.start_cluster(3).await;
    let apis = logins(&nodes).await;
    let ids = [nodes[0].id().await, nodes[2].id().await];
    let load = Load::start(&apis);
    wait_until("increments before the cut", WAIT, || async {
        (load.acked.load(Ordering::Relaxed) >= 20).then_some(())
    })
    .await;

    podman_ok(&[
        "network",
        "disconnect",
        &fleet.cluster.name,
        &nodes[2].c.name,
    ]);
    let cut = Instant::now();
    // The majority sees the node dead. The node itself sees its peers alive still: its sends
    // fail at once with "network unreachable" (the interface is gone, nothing times out),
    // and gossip does not blame peers for a local send error; it decides alone meanwhile.
    wait_until("the cut node dead on the majority side", WAIT, || async {
        (state_of(&nodes[0], &ids[1]).await.as_deref() == Some("dead")).then_some(())
    })
    .await;
    let detected = cut.elapsed();
    let during = load.acked.load(Ordering::Relaxed);
    wait_until("both sides count while cut", WAIT, || async {
        (load.acked.load(Ordering::Relaxed) >= during + 30).then_some(())
    })
    .await;

    let ip = format!("--ip={}", nodes[2].ip);
    podman_ok(&[
        "network",
        "connect",
        &ip,
        "--alias=shoal-nodes",
        &fleet.cluster.name,
        &nodes[2].c.name,
    ]);
    let healed = Instant::now();
    let rejoined = wait_alive_everywhere(&nodes, 3).await;
    let (acked, failed) = load.finish().await;
    assert_eq!(failed, 0, "both sides kept serving increments");
    converge(&apis, acked).await;
    for api in &apis {
        assert_eq!(total(api).await, Some(acked), "nothing lost, nothing twice");
    }
    println!("FIGURE container_cut_detect_ms {} ms", detected.as_millis());
    println!("FIGURE container_cut_rejoin_ms {} ms", rejoined.as_millis());
    println!(
        "FIGURE container_cut_exact_after_reconnect_ms {} ms",
        healed.elapsed().as_millis()
    );
}

/// One user's requests, one at a time, round robin over the nodes in `live`: the times of
/// the admitted ones, and how many were refused by the policy or failed.
struct Held {
    live: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    admitted: Arc<Mutex<Vec<Instant>>>,
    refused: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Held {
    fn start(urls: Vec<String>, key: String) -> Held {
        let live = Arc::new(Mutex::new(urls));
        let stop = Arc::new(AtomicBool::new(false));
        let admitted = Arc::new(Mutex::new(Vec::new()));
        let (refused, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let task = spawn({
            let (live, stop, admitted, refused, failed) = (
                live.clone(),
                stop.clone(),
                admitted.clone(),
                refused.clone(),
                failed.clone(),
            );
            async move {
                let client = reqwest::Client::new();
                // About 50 requests a second: a steady user, not a flood of audit lines.
                let mut pace = tokio::time::interval(Duration::from_millis(20));
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    pace.tick().await;
                    let url = {
                        let live = live.lock().unwrap();
                        i = (i + 1) % live.len();
                        live[i].clone()
                    };
                    let sent = client
                        .get(&url)
                        .header("x-api-key", &key)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => admitted.lock().unwrap().push(Instant::now()),
                        Ok(r) if r.status() == 403 => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        other => {
                            // The first few, for the test's log: what a failure was.
                            if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                                let what = match other {
                                    Ok(r) => format!(
                                        "{} {}",
                                        r.status(),
                                        r.text().await.unwrap_or_default()
                                    ),
                                    // The whole chain: reqwest's own text names neither
                                    // a refused connect nor a reset.
                                    Err(e) => {
                                        let mut what = e.to_string();
                                        let mut source = std::error::Error::source(&e);
                                        while let Some(cause) = source {
                                            what = format!("{what}: {cause}");
                                            source = cause.source();
                                        }
                                        what
                                    }
                                };
                                eprintln!("request to {url} failed: {what}");
                            }
                        }
                    }
                }
            }
        });
        Held {
            live,
            stop,
            admitted,
            refused,
            failed,
            task,
        }
    }

    fn admitted(&self) -> usize {
        self.admitted.lock().unwrap().len()
    }

    fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Sends to `url` too from now on.
    fn add(&self, url: String) {
        self.live.lock().unwrap().push(url);
    }

    /// Stops sending to `url`; the request to it in flight, if any, completes first.
    async fn remove(&self, url: &str) {
        self.live.lock().unwrap().retain(|u| u != url);
        let sent = self.admitted() as u64 + self.refused() + self.failed.load(Ordering::Relaxed);
        wait_until("the request in flight answered", WAIT, || async {
            let now = self.admitted() as u64 + self.refused() + self.failed.load(Ordering::Relaxed);
            (now > sent).then_some(())
        })
        .await;
    }

    /// Stops; the admission times, refusals and failures.
    async fn finish(self) -> (Vec<Instant>, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let admitted = self.admitted.lock().unwrap().clone();
        (
            admitted,
            self.refused.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Admissions beyond the limit in any window the policy sees: for each admitted request,
/// those admitted in the 58 s before it (the minute is counted in whole seconds, so a count
/// may leave the window up to 2 s early), minus the limit.
fn over_admission(admitted: &[Instant]) -> usize {
    let window = Duration::from_secs(58);
    admitted
        .iter()
        .map(|&t| {
            admitted
                .iter()
                .filter(|&&a| a <= t && t.duration_since(a) < window)
                .count()
        })
        .max()
        .unwrap_or(0)
        .saturating_sub(LIMIT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_every_node_at_new_addresses_keeps_a_user_at_the_limit() {
    let fleet = Fleet::new("fleet-replace").await;
    let mut nodes = fleet.start_cluster(3).await;
    let api = Api::login(&nodes[0].base).await;
    let key = fleet.limited_resource(&api, &nodes, "alice").await;
    let urls = nodes.iter().map(FleetNode::data_url).collect();
    let held = Held::start(urls, key);
    wait_until("the user at the limit", WAIT, || async {
        (held.admitted() >= LIMIT && held.refused() >= 3).then_some(())
    })
    .await;
    let started = Instant::now();

    // Each node in turn: a new container at a new address with a new volume (a new pod),
    // ready, then the old one stopped as an orchestrator does (SIGTERM, drain, leave).
    for (slot, node) in nodes.iter_mut().enumerate() {
        let name = format!("shoal-{}", slot + 4);
        let volume = fleet.cluster.volume(&format!("data-{name}"));
        let new = fleet.start(&name, &volume);
        wait_ready(&new).await;
        held.add(new.data_url());
        let old = std::mem::replace(node, new);
        held.remove(&old.data_url()).await;
        podman_ok(&["stop", "-t", "40", &old.c.name]);
        assert_eq!(old.c.wait_exit(WAIT).await, 0, "{}", old.c.logs());
    }
    let replaced = started.elapsed();
    wait_alive_everywhere(&nodes, 3).await;
    let more = held.refused();
    wait_until("requests after the last replacement", WAIT, || async {
        (held.refused() >= more + 9).then_some(())
    })
    .await;
    let (admitted, refused, failed) = held.finish().await;
    let over = over_admission(&admitted);
    println!(
        "replaced 3 nodes in {replaced:?}: {} admitted, {refused} refused, {failed} failed",
        admitted.len()
    );
    println!("FIGURE replace_all_nodes_over_admission {over} requests");
    println!("FIGURE replace_all_nodes_s {:.1} s", replaced.as_secs_f64());
    assert_eq!(failed, 0, "no request to a node in service failed");
    assert_eq!(over, 0, "admitted beyond the limit: {admitted:?}");

    // Every decision is counted once on every new node, though none of the nodes that made
    // the first ones is left.
    let decided = admitted.len() as u64 + refused;
    let path = "/api/v1/state/counters?subject=alice&resource=sensitive-bucket&action=access";
    for node in &nodes {
        let api = Api::login(&node.base).await;
        let counted = wait_until(
            &format!("{} counts every decision", node.name),
            WAIT,
            || {
                let api = api.clone();
                async move {
                    let (_, body) = api.get(path).await;
                    let hour = body["access_count"]["last_hour"].as_u64()?;
                    (hour >= decided).then_some(hour)
                }
            },
        )
        .await;
        assert_eq!(counted, decided, "{}: nothing counted twice", node.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_at_a_new_address_with_its_key_keeps_its_id() {
    let fleet = Fleet::new("fleet-rejoin").await;
    let mut nodes = fleet.start_cluster(3).await;
    let id = nodes[2].id().await;
    let old_ip = nodes[2].ip.clone();
    let volume = fleet.cluster.scoped("data-shoal-3");

    podman_ok(&["stop", "-t", "40", &nodes[2].c.name]);
    let restarted = fleet.start("shoal-3", &volume);
    assert_ne!(restarted.ip, old_ip);
    wait_ready(&restarted).await;
    let new_ip = restarted.ip.clone();
    nodes[2] = restarted;
    let same_id = nodes[2].id().await == id;

    // Every node lists three members, the restarted one once, alive at its new address.
    let mut stale = Vec::new();
    wait_alive_everywhere(&nodes, 3).await;
    for node in &nodes {
        let s: Value = cluster_status(node.base.clone()).await.unwrap();
        let members = s["cluster"]["members"].as_array().unwrap().clone();
        let mine: Vec<&Value> = members.iter().filter(|m| m["id"] == id).collect();
        assert_eq!(mine.len(), 1, "{}: {s}", node.name);
        assert_eq!(
            mine[0]["address"].as_str(),
            Some(format!("{new_ip}:7946").as_str()),
            "{}",
            node.name
        );
        stale.extend(
            members
                .iter()
                .filter(|m| m["address"].as_str() == Some(&format!("{old_ip}:7946")))
                .cloned(),
        );
    }
    println!(
        "FIGURE rejoin_new_ip_same_id {} bool",
        u8::from(same_id && stale.is_empty())
    );
    assert!(same_id, "the node key on the volume keeps the id");
    assert!(stale.is_empty(), "stale members: {stale:?}");
}
