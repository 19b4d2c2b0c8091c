//! Clusters on distinct 127.0.0.x addresses: formed through static peers and DNS SRV as nodes
//! in this process; killed, stopped, restarted and re-keyed as real `shoal` processes.

use std::time::Duration;

use serde_json::Value;
use shoal_discovery::testsuite::Dnsmasq;
use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

fn member_state(status: &Value, id: &str) -> Option<String> {
    status["cluster"]["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == id)
        .map(|m| m["state"].as_str().unwrap_or_default().to_string())
}

/// Members dead or left (a moment of suspicion under load is not a loss).
fn lost(status: &Value) -> usize {
    status["cluster"]["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter(|m| m["state"] == "dead" || m["state"] == "left")
                .count()
        })
        .unwrap_or(0)
}

fn alive(status: &Value) -> usize {
    status["cluster"]["members"]
        .as_array()
        .map(|ms| ms.iter().filter(|m| m["state"] == "alive").count())
        .unwrap_or(0)
}

/// Waits until `check` accepts the node's cluster status.
async fn wait_status(base: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let base = base.to_string();
    wait_until(what, WAIT, || {
        let base = base.clone();
        let check = &check;
        async move { cluster_status(base).await.filter(|s| check(s)) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_cluster_detects_kill_and_leave_and_reaps() {
    let db = database().await;
    let mut c = start_nodes(
        &db.url,
        &["127.0.0.61", "127.0.0.62", "127.0.0.63", "127.0.0.64"],
        |_, spec, all| {
            spec.cluster_toml = "dead_node_reap = \"3s\"\n".into();
            spec.extra_toml = static_peers(all);
        },
    )
    .await;
    for (i, node) in c.nodes.iter_mut().enumerate() {
        node.wait_ready_where("ready after join", WAIT, |s, _| s == 200)
            .await;
        wait_status(&c.bases[i], "4 alive", |s| alive(s) == 4).await;
    }
    let status = cluster_status(c.bases[0].clone()).await.unwrap();
    assert_eq!(status["cluster"]["health"], "HEALTHY");
    let members = status["cluster"]["members"].as_array().unwrap();
    let peer = members.iter().find(|m| m["local"] == false).unwrap();
    assert_eq!(peer["meta"]["v"], env!("CARGO_PKG_VERSION"));
    assert!(peer["meta"]["h"].as_str().unwrap().starts_with("127.0.0.6"));
    assert!(peer["incarnation"].is_u64());
    assert_eq!(
        status["cluster"]["keyring"]["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Whoever came first was joined by the others; at least one node did the joining.
    c.nodes[0].wait_for_log("discovered 3 nodes", WAIT).await;
    let joined: usize = c
        .nodes
        .iter()
        .map(|n| n.count_messages("successfully joined"))
        .sum();
    assert!(joined >= 1);

    // SIGKILL node 3: suspect, then dead, everywhere else; then reaped.
    let killed_id = member_id(&c.bases[3]).await;
    c.nodes[3].signal("KILL");
    for base in &c.bases[..3] {
        wait_status(base, "killed node dead", |s| {
            member_state(s, &killed_id).as_deref() == Some("dead")
        })
        .await;
    }
    c.nodes[0].wait_for_log("marked as suspect", WAIT).await;
    let status = cluster_status(c.bases[0].clone()).await.unwrap();
    assert_eq!(status["cluster"]["health"], "NOT_HEALTHY");

    // SIGTERM node 2: `left`, not `dead`.
    let left_id = member_id(&c.bases[2]).await;
    c.nodes[2].signal("TERM");
    assert_eq!(c.nodes[2].wait_exit(WAIT).await, Some(0));
    for base in &c.bases[..2] {
        let s = wait_status(base, "left node", |s| {
            member_state(s, &left_id).is_some_and(|st| st != "alive")
        })
        .await;
        assert_eq!(member_state(&s, &left_id).as_deref(), Some("left"));
    }
    // Both reaped after dead_node_reap.
    wait_status(&c.bases[0], "reaped", |s| {
        member_state(s, &killed_id).is_none() && member_state(s, &left_id).is_none()
    })
    .await;
    let status = wait_status(&c.bases[0], "healthy again", |s| {
        s["cluster"]["health"] == "HEALTHY"
    })
    .await;
    assert_eq!(alive(&status), 2);
    drop(c.specs);
}

async fn member_id(base: &str) -> String {
    let s = cluster_status(base.to_string()).await.unwrap();
    s["cluster"]["local_id"].as_str().unwrap().to_string()
}

/// Starts one node per IP in this process, found through `method` ("static" or "dns-srv"
/// served by dnsmasq), and waits until every node sees all of them alive and its discovery
/// reports the others found by that method.
async fn form_cluster(ips: &[&str], method: &str) {
    let db = database().await;
    let gossip: Vec<std::net::SocketAddr> = ips.iter().map(|ip| free_gossip_addr(ip)).collect();
    let mut records = Vec::new();
    for (i, addr) in gossip.iter().enumerate() {
        records.push(format!("--host-record=n{i}.shoal.test,{}", addr.ip()));
        records.push(format!(
            "--srv-host=_gossip._udp.shoal.test,n{i}.shoal.test,{}",
            addr.port()
        ));
    }
    let dns = Dnsmasq::start(&records);
    let server = dns.addr;
    let c = Sandbox::start(&db.url, ips, |i, spec, _| {
        spec.gossip = gossip[i];
        spec.extra_toml = if method == "static" {
            static_peers(&gossip)
        } else {
            format!(
                "\n[discovery]\nmethod = \"dns-srv\"\nname = \"_gossip._udp.shoal.test\"\nserver = \"{server}\"\ninterval = \"1s\"\n"
            )
        };
    })
    .await;
    for node in &c.nodes {
        let status = wait_status(&node.base_url(), "all alive", |s| {
            alive(s) == ips.len() && s["discovery"]["last_found"] == ips.len() - 1
        })
        .await;
        assert_eq!(status["discovery"]["method"], method, "{status}");
        assert_eq!(status["joined"], true, "{status}");
    }
    c.stop().await;
    drop(dns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_form_one_cluster_through_dns_srv() {
    form_cluster(
        &[
            "127.0.0.71",
            "127.0.0.72",
            "127.0.0.73",
            "127.0.0.74",
            "127.0.0.75",
        ],
        "dns-srv",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_one_cluster_through_dns_srv() {
    form_cluster(&["127.0.0.76", "127.0.0.77", "127.0.0.78"], "dns-srv").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_form_one_cluster_through_static_peers() {
    form_cluster(
        &[
            "127.0.0.111",
            "127.0.0.112",
            "127.0.0.113",
            "127.0.0.114",
            "127.0.0.115",
        ],
        "static",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_one_cluster_through_static_peers() {
    form_cluster(&["127.0.0.116", "127.0.0.117", "127.0.0.118"], "static").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_keeps_its_id_and_cidr_filter_drops_outsiders() {
    let db = database().await;
    // n0 and n1 inside 127.0.0.80/30; n2 at .90 is listed but outside the allowed space.
    let mut c = start_nodes(
        &db.url,
        &["127.0.0.81", "127.0.0.82", "127.0.0.90"],
        |i, spec, all| {
            let key = spec.dir.path().join("node.key");
            spec.cluster_toml = format!("node_key_file = \"{}\"\n", key.display());
            if i < 2 {
                spec.extra_toml = format!(
                    "{}allowed_address_space = [\"127.0.0.80/30\"]\n",
                    static_peers(all)
                );
            }
        },
    )
    .await;
    for (i, node) in c.nodes.iter_mut().enumerate().take(2) {
        node.wait_ready_where("ready", WAIT, |s, _| s == 200).await;
        wait_status(&c.bases[i], "2 alive", |s| alive(s) == 2).await;
    }
    let event = c.nodes[0].wait_for_log("discovered 1 nodes", WAIT).await;
    assert_eq!(event["outside_allowed_space"], 1);
    let outsider = member_id(&c.bases[2]).await;
    let status = cluster_status(c.bases[0].clone()).await.unwrap();
    assert_eq!(member_state(&status, &outsider), None, "never joined");

    // n1 restarts (same node-key file): same id, seen alive again by n0.
    let id_before = member_id(&c.bases[1]).await;
    c.nodes[1].signal("TERM");
    assert_eq!(c.nodes[1].wait_exit(WAIT).await, Some(0));
    wait_status(&c.bases[0], "n1 left", |s| {
        member_state(s, &id_before).as_deref() == Some("left")
    })
    .await;
    let mut restarted = c.specs[1].start();
    let base = restarted.base_url().await;
    assert_eq!(member_id(&base).await, id_before);
    wait_status(&c.bases[0], "n1 alive again", |s| {
        member_state(s, &id_before).as_deref() == Some("alive")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_discovery_fails_starts_alone_after_the_join_timeout() {
    let db = database().await;
    // A DNS server that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = silent.local_addr().unwrap();
    let mut c = start_nodes(&db.url, &["127.0.0.95"], |_, spec, _| {
        spec.extra_toml = format!(
            "\n[discovery]\nmethod = \"dns-srv\"\nname = \"_gossip._udp.shoal.test\"\nserver = \"{server}\"\ninterval = \"1s\"\ntimeout = \"100ms\"\njoin_timeout = \"1s\"\n"
        );
    })
    .await;
    let (_, body) = c.nodes[0]
        .wait_ready_where("503 while discovery fails", WAIT, |s, b| {
            s == 503 && b["missing"].to_string().contains("discovery failed")
        })
        .await;
    assert!(
        body["missing"]
            .to_string()
            .contains("_gossip._udp.shoal.test"),
        "{body}"
    );
    let (_, body) = c.nodes[0]
        .wait_ready_where("ready alone after join_timeout", WAIT, |s, _| s == 200)
        .await;
    assert!(
        body["cluster"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("running alone after"),
        "{body}"
    );
    c.nodes[0]
        .wait_for_log("running alone and still trying", WAIT)
        .await;
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_key_file_on_a_running_cluster_loses_no_member() {
    let db = database().await;
    let k1 = "11".repeat(32);
    let k2 = "22".repeat(32);
    let mut c = start_nodes(
        &db.url,
        &["127.0.0.91", "127.0.0.92", "127.0.0.93"],
        |_, spec, all| {
            let psk = spec.dir.path().join("psk");
            std::fs::write(&psk, format!("{k1}\n")).unwrap();
            spec.cluster_toml = format!(
                "psk_file = \"{}\"\nkey_reload_interval = \"200ms\"\n",
                psk.display()
            );
            spec.psk_from_file = true;
            spec.extra_toml = static_peers(all);
        },
    )
    .await;
    for (i, node) in c.nodes.iter_mut().enumerate() {
        node.wait_ready_where("ready", WAIT, |s, _| s == 200).await;
        wait_status(&c.bases[i], "3 alive", |s| alive(s) == 3).await;
    }
    let fingerprint = |hex: &str| shoal_config::SecretKey::parse(hex).unwrap().fingerprint();
    for step in [
        vec![k1.clone(), k2.clone()],
        vec![k2.clone(), k1.clone()],
        vec![k2.clone()],
    ] {
        for spec in &c.specs {
            std::fs::write(spec.dir.path().join("psk"), step.join("\n")).unwrap();
        }
        for base in &c.bases {
            wait_status(base, "keyring step applied", |s| {
                s["cluster"]["keyring"]["primary"] == fingerprint(&step[0])
                    && s["cluster"]["keyring"]["keys"].as_array().map(Vec::len) == Some(step.len())
            })
            .await;
        }
        // Traffic under the new keys: every node gets fresh acks from every peer after the
        // step was in force everywhere.
        let applied = std::time::Instant::now();
        for base in &c.bases {
            let s = wait_status(base, "acks after the step", |s| {
                let since = applied.elapsed().as_millis() as u64;
                s["cluster"]["members"].as_array().is_some_and(|ms| {
                    ms.iter().filter(|m| m["local"] == false).all(|m| {
                        m["last_heartbeat_ms"]
                            .as_u64()
                            .is_some_and(|age| age < since)
                    })
                })
            })
            .await;
            assert_eq!(lost(&s), 0, "no member lost during rotation");
        }
    }
    for node in &c.nodes {
        assert_eq!(node.count_messages("marked as dead"), 0);
    }
    // A broken key file keeps the keys in force and says why.
    std::fs::write(c.specs[0].dir.path().join("psk"), "not-a-key\n").unwrap();
    c.nodes[0]
        .wait_for_log("keeping the keys in force", WAIT)
        .await;
    let s = cluster_status(c.bases[0].clone()).await.unwrap();
    assert_eq!(s["cluster"]["keyring"]["primary"], fingerprint(&k2));
}
