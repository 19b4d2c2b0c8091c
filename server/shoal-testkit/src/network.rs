//! Networks the tests control: a private network and mount namespace per test, a bridge of
//! node namespaces that can cut one node off, and a TCP forwarder that cuts PostgreSQL.

use std::process::Command;
use std::sync::Arc;

/// A TCP forwarder between a node and PostgreSQL that a test can cut and restore: a real
/// network partition of the control plane, while the test itself still reaches the database.
pub struct Partition {
    pub addr: std::net::SocketAddr,
    open: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Partition {
    pub async fn new(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn({
            let open = open.clone();
            async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if !open.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let mut cuts = cuts.clone();
                    cuts.mark_unchanged();
                    tokio::spawn(async move {
                        let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cuts.changed() => {}
                        }
                    });
                }
            }
        });
        Self {
            addr,
            open,
            cut,
            task,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// `url` with its host and port replaced by this forwarder's.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme_user, rest) = url.split_once('@').expect("url with user");
        let path = &rest[rest.find('/').expect("url with database")..];
        format!("{scheme_user}@{}{path}", self.addr)
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn pg_addr(url: &str) -> std::net::SocketAddr {
    let rest = url.split_once('@').unwrap().1;
    rest[..rest.find('/').unwrap()].parse().unwrap()
}

/// Runs the calling test again inside a new network and mount namespace (its own loopback,
/// routes and `/run/netns`), so everything [`TestNetwork`] creates vanishes with it, even if
/// the test is killed. `test_name` is the test's full name (`module::name`). Returns true when
/// already inside; outside, waits for the inner run and fails if it failed.
pub fn in_private_namespaces(test_name: &str) -> bool {
    if std::env::var_os("SHOAL_IN_NETNS").is_some() {
        std::fs::create_dir_all("/run/netns").expect("mkdir /run/netns");
        run_ip(&["link", "set", "lo", "up"]);
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "shoal-test-netns", "/run/netns"])
            .status()
            .expect("run mount");
        assert!(mounted.success(), "mount a private /run/netns");
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    // A name that matches no test would make the inner run pass without testing anything.
    let listed = Command::new(&exe)
        .args(["--list", "--exact", test_name])
        .output()
        .expect("list the test binary's tests");
    let matching = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| l.ends_with(": test"))
        .count();
    assert_eq!(
        matching, 1,
        "{test_name:?} must be a test's full name (module::name)"
    );
    let status = Command::new("unshare")
        .args(["--net", "--mount", "--"])
        .arg(exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads", "1"])
        .env("SHOAL_IN_NETNS", "1")
        // The suite's PostgreSQL is on the host's loopback; inside, a private one starts.
        .env_remove("SHOAL_TEST_PG_URL")
        .status()
        .expect("run unshare (needs root or CAP_SYS_ADMIN)");
    assert!(status.success(), "{test_name} inside its namespaces failed");
    false
}

/// A benchmark's own namespaces: re-executes the benchmark under `unshare` with its
/// arguments. True inside; outside, waits for the inner run and fails if it failed.
pub fn in_private_namespaces_bench() -> bool {
    if std::env::var_os("SHOAL_IN_NETNS").is_some() {
        return in_private_namespaces("bench");
    }
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args(["--net", "--mount", "--"])
        .arg(exe)
        .args(std::env::args().skip(1))
        .env("SHOAL_IN_NETNS", "1")
        .env_remove("SHOAL_TEST_PG_URL")
        .status()
        .expect("run unshare (needs root or CAP_SYS_ADMIN)");
    assert!(status.success(), "the benchmark failed");
    false
}

/// Bytes sent on this namespace's loopback (`/proc/self/net/dev` is per namespace; `/sys`
/// would still show the host's).
pub fn lo_tx_bytes() -> u64 {
    let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap();
    let line = dev
        .lines()
        .find(|l| l.trim_start().starts_with("lo:"))
        .expect("lo in /proc/self/net/dev");
    let fields: Vec<&str> = line.split(':').nth(1).unwrap().split_whitespace().collect();
    fields[8].parse().unwrap()
}

pub fn run_ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Nodes in network namespaces of their own. Each has a cluster interface on one bridge
/// (10.77.0.0/24, gossip) and a management link to the test (10.78.i.0/24: HTTP API), so a
/// node can be cut off the cluster network while the test still reads its API. Cutting is a
/// bridge port going down: packets vanish silently, as in a real partition (neighbour entries
/// are permanent, so senders see no error either).
pub struct TestNetwork {
    nodes: usize,
}

impl TestNetwork {
    pub fn new(nodes: usize) -> Self {
        run_ip(&["link", "add", "shoalbr", "type", "bridge"]);
        run_ip(&["addr", "add", "10.77.0.1/24", "dev", "shoalbr"]);
        run_ip(&["link", "set", "shoalbr", "up"]);
        let net = Self { nodes };
        let mut macs = Vec::new();
        for i in 0..nodes {
            let ns = net.namespace(i);
            let (port, cluster) = (format!("sv{i}"), format!("sc{i}"));
            let (mgmt_host, mgmt) = (format!("mv{i}"), format!("mc{i}"));
            run_ip(&["netns", "add", &ns]);
            run_ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", &cluster,
            ]);
            run_ip(&["link", "set", &cluster, "netns", &ns]);
            run_ip(&["link", "set", &port, "master", "shoalbr", "up"]);
            run_ip(&[
                "link", "add", &mgmt_host, "type", "veth", "peer", "name", &mgmt,
            ]);
            run_ip(&["link", "set", &mgmt, "netns", &ns]);
            run_ip(&["addr", "add", &format!("10.78.{i}.1/24"), "dev", &mgmt_host]);
            run_ip(&["link", "set", &mgmt_host, "up"]);
            let cidr = format!("{}/24", net.cluster_ip(i));
            let mgmt_cidr = format!("{}/24", net.ip(i));
            for args in [
                vec!["addr", "add", cidr.as_str(), "dev", cluster.as_str()],
                vec!["link", "set", cluster.as_str(), "up"],
                vec!["addr", "add", mgmt_cidr.as_str(), "dev", mgmt.as_str()],
                vec!["link", "set", mgmt.as_str(), "up"],
                vec!["link", "set", "lo", "up"],
            ] {
                net.ip_in(i, &args);
            }
            let mac = Command::new("ip")
                .args(["netns", "exec", &ns, "cat"])
                .arg(format!("/sys/class/net/{cluster}/address"))
                .output()
                .expect("read mac");
            macs.push(String::from_utf8_lossy(&mac.stdout).trim().to_string());
        }
        for i in 0..nodes {
            for (j, mac) in macs.iter().enumerate().filter(|(j, _)| *j != i) {
                let (ip, dev) = (net.cluster_ip(j), format!("sc{i}"));
                net.ip_in(
                    i,
                    &[
                        "neigh",
                        "replace",
                        &ip,
                        "lladdr",
                        mac,
                        "dev",
                        &dev,
                        "nud",
                        "permanent",
                    ],
                );
            }
        }
        net
    }

    fn ip_in(&self, index: usize, args: &[&str]) {
        let ns = self.namespace(index);
        let mut full = vec!["netns", "exec", ns.as_str(), "ip"];
        full.extend(args);
        run_ip(&full);
    }

    pub fn namespace(&self, index: usize) -> String {
        format!("shoal-node-{index}")
    }

    /// The node's management address (HTTP), reachable from the test.
    pub fn ip(&self, index: usize) -> String {
        format!("10.78.{index}.2")
    }

    /// The node's cluster address (gossip).
    pub fn cluster_ip(&self, index: usize) -> String {
        format!("10.77.0.{}", 10 + index)
    }

    /// Cuts node `index` off the cluster network: nothing in, nothing out.
    pub fn isolate(&self, index: usize) {
        run_ip(&["link", "set", &format!("sv{index}"), "down"]);
    }

    pub fn reconnect(&self, index: usize) {
        run_ip(&["link", "set", &format!("sv{index}"), "up"]);
    }

    /// Runs iptables inside node `index`'s namespace.
    pub fn iptables(&self, index: usize, args: &[&str]) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.namespace(index), "iptables"])
            .args(args)
            .output()
            .expect("run iptables (scripts/test installs it)");
        assert!(
            out.status.success(),
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Drops every packet between the two groups' cluster addresses, both ways. Only on
    /// input: a DROP on output makes the sender's own `send` fail (EPERM), which no real
    /// partition does and which gossip treats as a local error rather than a silent peer.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        for (from, to) in [(a, b), (b, a)] {
            for &i in from {
                for &j in to {
                    let peer = self.cluster_ip(j);
                    self.iptables(i, &["-A", "INPUT", "-s", &peer, "-j", "DROP"]);
                }
            }
        }
    }

    /// Every rule [`TestNetwork::partition`] (or a test) added, gone.
    pub fn heal(&self) {
        for i in 0..self.nodes() {
            self.iptables(i, &["-F"]);
        }
    }

    pub fn nodes(&self) -> usize {
        self.nodes
    }
}
