use std::net::SocketAddr;

use super::{Check, discovery, range};
use crate::model::{ClusterConfig, NodeConfig, Service};

/// The clusters one by one, then the rules between them (they must stay apart: own name, port
/// and keys), then which cluster each service uses. `set_under(section)` lists the keys set
/// under a section, from the file or the environment.
pub(super) fn validate(
    config: &NodeConfig,
    set_under: &dyn Fn(&str) -> Vec<String>,
    check: &mut Check,
) {
    let listed = config
        .clusters
        .first()
        .is_some_and(|c| c.key_path() != "cluster");
    shape(config, listed, set_under, check);
    for c in &config.clusters {
        // A list entry's messages name its cluster: `clusters[1]` alone is easy to misread.
        let mut named = |ok: bool, key: &str, message: String| {
            let message = if listed {
                format!("{message} (cluster {:?})", c.name)
            } else {
                message
            };
            check(ok, key, message)
        };
        one(c, listed, &mut named);
        let section = if listed {
            format!("{}.discovery", c.key_path())
        } else {
            "discovery".into()
        };
        discovery::validate(&c.discovery, &section, &mut named);
    }
    apart(config, check);
    services(config, check);
}

/// Which keys belong where: with `[[clusters]]`, `[cluster]` keeps only the node's identity
/// and `[discovery]` is per entry; without it, `[cluster]` takes no list-entry keys.
fn shape(
    config: &NodeConfig,
    listed: bool,
    set_under: &dyn Fn(&str) -> Vec<String>,
    check: &mut Check,
) {
    if listed {
        for key in set_under("cluster") {
            check(
                key == "cluster.node_key_file",
                &key,
                format!(
                    "belongs to one cluster: with [[clusters]] set it in each entry \
                     ({}), [cluster] keeps only node_key_file",
                    key.replacen("cluster.", "clusters[N].", 1)
                ),
            );
        }
        for key in set_under("discovery") {
            check(
                false,
                &key,
                format!(
                    "belongs to one cluster: with [[clusters]] each entry finds its peers under \
                     its own [clusters.discovery] ({})",
                    key.replacen("discovery.", "clusters[N].discovery.", 1)
                ),
            );
        }
        for c in &config.clusters {
            let key = format!("{}.node_key_file", c.key_path());
            check(
                c.node_key_file.is_none(),
                &key,
                "is the node's identity, one whatever it joins: set cluster.node_key_file".into(),
            );
        }
        check(
            config.enabled_clusters().next().is_some(),
            "clusters",
            "are all disabled: a node needs at least one cluster to join".into(),
        );
    } else {
        for key in set_under("cluster.discovery").into_iter().chain(
            set_under("cluster")
                .into_iter()
                .filter(|k| k == "cluster.disabled"),
        ) {
            check(
                false,
                &key,
                "is a [[clusters]] entry's key: the single cluster's peers are found under \
                 [discovery], and it is disabled by not configuring it"
                    .into(),
            );
        }
    }
}

fn one(c: &ClusterConfig, listed: bool, check: &mut Check) {
    let p = c.key_path();
    let k = |key: &str| format!("{p}.{key}");
    let dp = if listed {
        format!("{p}.discovery")
    } else {
        "discovery".into()
    };
    let d = &c.discovery;
    for (key, value, min, max) in [
        (k("probe_interval"), c.probe_interval, 50, 60_000),
        (k("probe_timeout"), c.probe_timeout, 10, 60_000),
        (k("gossip_interval"), c.gossip_interval, 10, 60_000),
        (
            k("push_pull_interval"),
            c.push_pull_interval,
            100,
            3_600_000,
        ),
        (k("dead_node_reap"), c.dead_node_reap, 1_000, 86_400_000),
        (
            k("key_reload_interval"),
            c.key_reload_interval,
            100,
            3_600_000,
        ),
        (format!("{dp}.interval"), d.interval, 100, 3_600_000),
        (format!("{dp}.timeout"), d.timeout, 10, 3_600_000),
        (format!("{dp}.join_timeout"), d.join_timeout, 100, 3_600_000),
    ] {
        range(check, &key, value, (min, max));
    }
    check(
        c.probe_timeout < c.probe_interval,
        &k("probe_timeout"),
        format!(
            "must be shorter than {p}.probe_interval ({}), got {}",
            humantime::format_duration(c.probe_interval),
            humantime::format_duration(c.probe_timeout)
        ),
    );
    for (key, value, max) in [
        ("suspicion_multiplier", c.suspicion_multiplier, 20),
        (
            "suspicion_max_timeout_multiplier",
            c.suspicion_max_timeout_multiplier,
            20,
        ),
        ("awareness_max_multiplier", c.awareness_max_multiplier, 20),
        ("gossip_nodes", c.gossip_nodes, 64),
        ("retransmit_multiplier", c.retransmit_multiplier, 20),
    ] {
        check(
            (1..=max).contains(&value),
            &k(key),
            format!("must be between 1 and {max}, got {value}"),
        );
    }
    if c.advertise.is_none() {
        check(
            !c.bind.ip().is_unspecified(),
            &k("advertise"),
            format!(
                "is required when {p}.bind is a wildcard address ({}): peers need an address they can reach",
                c.bind
            ),
        );
    }
    if listed {
        // List names appear in variable names (SHOAL_CLUSTERS_<NAME>_*), metric labels and
        // the console's URLs.
        let ok = !c.name.is_empty()
            && c.name.len() <= 64
            && c.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !c.name.starts_with('-');
        check(
            ok,
            &k("name"),
            format!(
                "must be 1-64 lower-case letters, digits or '-' (not first), got {:?}",
                c.name
            ),
        );
    } else {
        check(
            !c.name.is_empty() && c.name.len() <= 64,
            &k("name"),
            format!("must be 1-64 characters, got {:?}", c.name),
        );
    }
    if let Some(adv) = c.advertise {
        check(
            !adv.ip().is_unspecified() && adv.port() != 0,
            &k("advertise"),
            format!("must be a concrete address peers can reach, got {adv}"),
        );
    }
}

/// Two sockets that cannot both be bound: one port, and one address or a wildcard.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Clusters that must stay apart: each enabled one has its own name, port, advertised address
/// and keys, and no gossip port is the admin port. The later of two is the one named.
fn apart(config: &NodeConfig, check: &mut Check) {
    let enabled: Vec<&ClusterConfig> = config.enabled_clusters().collect();
    for (j, b) in enabled.iter().enumerate() {
        let key = |k: &str| format!("{}.{k}", b.key_path());
        check(
            !overlap(b.bind, config.http.listen),
            &key("bind"),
            format!(
                "{} is also the admin port (http.listen {}): give gossip a port of its own",
                b.bind, config.http.listen
            ),
        );
        for a in &enabled[..j] {
            let (other, named) = (a.key_path(), format!("cluster {:?}", a.name));
            check(
                a.name != b.name,
                &key("name"),
                format!(
                    "{:?} is also the name of {other}: names must differ",
                    b.name
                ),
            );
            check(
                !overlap(a.bind, b.bind),
                &key("bind"),
                format!(
                    "{} takes the port of {other}.bind ({}, {named}): each cluster needs a port \
                     of its own",
                    b.bind, a.bind
                ),
            );
            let (adv_a, adv_b) = (a.advertise.unwrap_or(a.bind), b.advertise.unwrap_or(b.bind));
            check(
                adv_a != adv_b || !overlap(a.bind, b.bind),
                &key("advertise"),
                format!("{adv_b} is also what {other} ({named}) advertises"),
            );
            let same_file = a.psk_file.is_some() && a.psk_file == b.psk_file;
            check(
                !same_file,
                &key("psk_file"),
                format!(
                    "is also {other}.psk_file ({named}): clusters that must stay apart need \
                     keys of their own"
                ),
            );
            let shared = b
                .keys()
                .iter()
                .any(|k| a.keys().iter().any(|o| o.expose() == k.expose()));
            check(
                same_file || !shared,
                &key("psk_file"),
                format!(
                    "holds a key that is also in the keys of {other} ({named}): clusters that must stay \
                     apart need keys of their own (one key would let one cluster's messages \
                     be read on the other's port)"
                ),
            );
        }
    }
}

/// Each service names a configured cluster; with several enabled, each is named; `counters`
/// runs on an enabled one.
fn services(config: &NodeConfig, check: &mut Check) {
    let names: Vec<&str> = config.clusters.iter().map(|c| c.name.as_str()).collect();
    let several = config.enabled_clusters().count() > 1;
    for service in Service::ALL {
        let key = format!("services.{}", service.as_str());
        match service.named_in(&config.services) {
            None => check(
                !several,
                &key,
                format!(
                    "is required when several clusters are enabled: name the cluster it runs \
                     on, one of [{}]",
                    names.join(", ")
                ),
            ),
            Some(name) => {
                let cluster = config.clusters.iter().find(|c| &c.name == name);
                check(
                    cluster.is_some(),
                    &key,
                    format!(
                        "names no configured cluster: {name:?} is not one of [{}]",
                        names.join(", ")
                    ),
                );
                if service == Service::Counters
                    && let Some(c) = cluster
                {
                    check(
                        !c.disabled,
                        &key,
                        format!(
                            "names {name:?}, which is disabled: counters need a cluster the \
                             node joins"
                        ),
                    );
                }
            }
        }
    }
}
