//! Hostile input on the gossip port of a running node: random and truncated datagrams and
//! streams, traffic under a wrong key, a node of another cluster with the right key, replayed
//! and tampered traffic. The node must keep running, keep its membership, count what it
//! rejected and log it at a bounded rate.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use serde_json::Value;
use shoal_cluster::{Cluster, ClusterOptions, NodeIdentity, NodeMeta};
use shoal_config::{ClusterConfig, SecretKey};
use shoal_testkit::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const WAIT: Duration = Duration::from_secs(30);

async fn status(base: &str) -> Value {
    reqwest::get(format!("{base}/cluster/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn in_process_node(ip: &str, key: [u8; 32]) -> (ClusterOptions, NodeMeta) {
    let mut options = ClusterOptions::from_config(&ClusterConfig::default());
    options.bind = free_gossip_addr(ip);
    options.keys = vec![SecretKey::new(key)];
    let meta = NodeMeta {
        node_name: "probe".into(),
        version: "test".into(),
        http: "127.0.0.1:1".into(),
        started_at_ms: 0,
        load: Default::default(),
        region: None,
    };
    (options, meta)
}

/// A TCP forwarder that records what the client sent.
async fn recording_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let sink = recorded.clone();
    spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let sink = sink.clone();
            spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let upload = async {
                    let mut sent = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        sent.extend_from_slice(&buf[..n]);
                    }
                    let _ = sw.shutdown().await;
                    sink.lock().unwrap().push(sent);
                };
                let download = tokio::io::copy(&mut sr, &mut cw);
                let _ = tokio::join!(upload, download);
            });
        }
    });
    (addr, recorded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_wrong_keys_and_replays_never_break_a_node() {
    let db = database().await;
    let mut specs = vec![
        NodeSpec::new("n0", "127.0.0.101", &db.url),
        NodeSpec::new("n1", "127.0.0.102", &db.url),
    ];
    let peers = format!("\"{}\", \"{}\"", specs[0].gossip, specs[1].gossip);
    for spec in &mut specs {
        spec.extra_toml = format!("\n[discovery]\nmethod = \"static\"\npeers = [{peers}]\n");
    }
    create_admin(&specs[0]);
    let mut nodes: Vec<Node> = specs.iter().map(NodeSpec::start).collect();
    let mut bases = Vec::new();
    for node in &mut nodes {
        bases.push(node.base_url().await);
        node.wait_ready_where("ready", WAIT, |s, _| s == 200).await;
    }
    let target = specs[0].gossip;
    wait_until("2 alive", WAIT, || {
        let base = bases[0].clone();
        async move {
            let s = status(&base).await;
            (s["cluster"]["healthy"] == 2).then_some(())
        }
    })
    .await;

    // 0. A stream that carries the cluster's (public) label and announces a 4 GiB encrypted
    //    message: refused from the header, before anything is allocated or authenticated.
    let label = b"shoal";
    let mut header = vec![12u8, label.len() as u8];
    header.extend_from_slice(label);
    header.extend_from_slice(&[15, 1]);
    header.extend_from_slice(&u32::MAX.to_be_bytes());
    let mut stream = tokio::net::TcpStream::connect(target).await.unwrap();
    stream.write_all(&header).await.unwrap();
    let mut rest = Vec::new();
    // The node closes the stream instead of waiting for 4 GiB.
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("closed");
    wait_until("oversized message refused", WAIT, || {
        let seen = nodes[0]
            .logs()
            .iter()
            .any(|l| l.contains("exceeds the 67108864 byte limit"));
        async move { seen.then_some(()) }
    })
    .await;

    // 1. Random and truncated datagrams, every size class, from a fixed seed.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let udp = UdpSocket::bind("127.0.0.103:0").unwrap();
    for i in 0..3000 {
        let len = match i % 4 {
            0 => rng.random_range(0..16),
            1 => rng.random_range(16..200),
            2 => rng.random_range(200..1400),
            _ => rng.random_range(1400..9000),
        };
        let mut packet = vec![0u8; len];
        rng.fill(&mut packet[..]);
        // Some start with plausible message-type bytes, to get past the first check.
        if i % 3 == 0 && len > 0 {
            packet[0] = (i % 16) as u8;
        }
        let _ = udp.send_to(&packet, target);
    }

    // 2. Random, truncated and oversized TCP streams.
    for i in 0..200usize {
        let Ok(mut stream) = tokio::net::TcpStream::connect(target).await else {
            continue;
        };
        let len = [0, 1, 5, 64, 4096, 70_000][i % 6];
        let mut data = vec![0u8; len];
        rng.fill(&mut data[..]);
        if i % 7 == 0 && len >= 5 {
            data[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        }
        let _ = stream.write_all(&data).await;
        let _ = stream.shutdown().await;
    }

    // 3. A node with the wrong key tries to join: refused.
    let (options, meta) = in_process_node("127.0.0.104", [0x99; 32]);
    let intruder = Cluster::start(options, &NodeIdentity::random(), meta)
        .await
        .unwrap();
    assert!(intruder.join(&[target]).await.joined.is_empty());
    intruder.shutdown().await;

    // 4. A legitimate join recorded through a proxy, then replayed many times.
    let psk = SecretKey::parse(PSK_HEX).unwrap();
    let (proxy, recorded) = recording_proxy(target).await;
    let (mut options, meta) = in_process_node("127.0.0.105", *psk.expose());
    options.name = "shoal".into();
    let guest = Cluster::start(options, &NodeIdentity::random(), meta)
        .await
        .unwrap();
    assert_eq!(guest.join(&[proxy]).await.joined.len(), 1);
    guest.leave().await;
    let streams = wait_until("recorded join", WAIT, || {
        let recorded = recorded.clone();
        async move {
            let r = recorded.lock().unwrap().clone();
            r.iter().any(|s| !s.is_empty()).then_some(r)
        }
    })
    .await;
    for _ in 0..50 {
        for bytes in &streams {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(target).await {
                let _ = stream.write_all(bytes).await;
                let _ = stream.shutdown().await;
            }
        }
    }

    // 5. The same recorded streams with one byte flipped past the header: the encryption's
    //    authentication tag no longer matches.
    for (i, bytes) in streams.iter().filter(|b| b.len() > 32).enumerate() {
        for offset in [bytes.len() / 2, bytes.len() - 1, 24] {
            let mut tampered = bytes.clone();
            tampered[offset] ^= 0x5a + i as u8;
            if let Ok(mut stream) = tokio::net::TcpStream::connect(target).await {
                let _ = stream.write_all(&tampered).await;
                let _ = stream.shutdown().await;
            }
        }
    }

    // 6. A node with the right key but another cluster's name: its label does not match, so
    //    it is refused too.
    let (mut options, meta) = in_process_node("127.0.0.106", *psk.expose());
    options.name = "another-cluster".into();
    let neighbour = Cluster::start(options, &NodeIdentity::random(), meta)
        .await
        .unwrap();
    assert!(neighbour.join(&[target]).await.joined.is_empty());
    neighbour.shutdown().await;

    // The node is still up, still sees its peer alive, and its peer sees it alive.
    let n1_id = status(&bases[1]).await["cluster"]["local_id"].clone();
    let n0_id = status(&bases[0]).await["cluster"]["local_id"].clone();
    let proof = wait_until("gossip errors counted", WAIT, || {
        let base = bases[0].clone();
        async move {
            let s = status(&base).await;
            let total: u64 = s["gossip_errors"]
                .as_array()?
                .iter()
                .map(|e| e["count"].as_u64().unwrap_or(0))
                .sum();
            (total >= 100).then_some(s)
        }
    })
    .await;
    let member = |s: &Value, id: &Value| {
        s["cluster"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| &m["id"] == id)
            .map(|m| m["state"].clone())
    };
    // Still members of each other (a moment of suspicion under a flood is not a loss).
    for (s, id) in [(proof.clone(), &n1_id), (status(&bases[1]).await, &n0_id)] {
        let state = member(&s, id).expect("still a member");
        assert!(state == "alive" || state == "suspect", "{state}");
    }
    // Suspicion timing under load is a benchmark matter; what must never happen is a death.
    assert_eq!(nodes[0].count_messages("marked as dead"), 0);
    assert_eq!(nodes[1].count_messages("marked as dead"), 0);

    // Logged at a bounded rate: a few lines per kind, the rest summarized.
    let gossip_lines = nodes[0]
        .log_events()
        .iter()
        .filter(|e| {
            e["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("memberlist"))
        })
        .filter(|e| matches!(e["level"].as_str(), Some("ERROR" | "WARN")))
        .count();
    let kinds = proof["gossip_errors"].as_array().unwrap().len();
    assert!(
        gossip_lines <= 5 * kinds * 2,
        "{gossip_lines} gossip lines for {kinds} kinds"
    );
    nodes[0]
        .wait_for_log("more gossip errors like this one were not logged", WAIT)
        .await;
    let (status_code, _) = nodes[0].ready().await;
    assert_eq!(status_code, 200);
}
