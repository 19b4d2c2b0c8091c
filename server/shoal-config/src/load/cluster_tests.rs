//! `[[clusters]]`: the list, its variables, and every way two clusters could run into each
//! other refused with the keys named.

use std::io::Write as _;

use super::*;
use crate::model::{DiscoveryMethod, Service};

const KEY_A: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const KEY_B: &str = "0202020202020202020202020202020202020202020202020202020202020202";

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut e: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    e.insert("SHOAL_DATABASE_URL".into(), "postgres://a@b/c".into());
    e
}

fn two_regions_env() -> BTreeMap<String, String> {
    env(&[
        ("SHOAL_CLUSTERS_EU_WEST_PSK", KEY_A),
        ("SHOAL_CLUSTERS_GLOBAL_PSK", KEY_B),
    ])
}

const TWO: &str = r#"
[http]
listen = "10.0.0.5:8080"

[[clusters]]
name = "eu-west"
bind = "10.0.0.5:7946"
probe_interval = "300ms"
[clusters.discovery]
method = "dns-srv"
name = "_gossip._tcp.eu.shoal.internal"

[[clusters]]
name = "global"
bind = "10.0.0.5:7947"
probe_interval = "1s"
probe_timeout = "500ms"
[clusters.discovery]
method = "static"
peers = ["10.1.0.5:7947"]

[services]
counters = "eu-west"
cache = "eu-west"
events = "global"
global_counters = "global"
"#;

fn load(text: &str, env: &BTreeMap<String, String>) -> Result<NodeConfig, ConfigError> {
    load_from_str(text, Path::new("shoal.toml"), env)
}

/// The issues as `key: message`, for asserting on both at once.
fn issues(err: &ConfigError) -> Vec<String> {
    err.issues()
        .iter()
        .map(|i| format!("{}: {}", i.key, i.message))
        .collect()
}

fn has(err: &ConfigError, key: &str, words: &str) -> bool {
    err.issues()
        .iter()
        .any(|i| i.key == key && i.message.contains(words))
}

#[test]
fn the_single_cluster_of_today_becomes_the_lists_one_entry() {
    let e = env(&[("SHOAL_CLUSTER_PSK", KEY_A)]);
    let c = load(
        "[cluster]\nname = \"prod\"\nbind = \"127.0.0.2:7000\"\n[discovery]\nmethod = \"static\"\npeers = [\"127.0.0.3:7000\"]\n",
        &e,
    )
    .unwrap();
    assert_eq!(c.clusters.len(), 1);
    let only = &c.clusters[0];
    assert_eq!(
        (only.name.as_str(), only.key_path(), only.bind.port()),
        ("prod", "cluster", 7000)
    );
    assert_eq!(only.discovery.method, DiscoveryMethod::Static);
    assert_eq!(only.keys()[0].expose(), &[1u8; 32]);
    for service in Service::ALL {
        assert_eq!(c.cluster_for(service).name, "prod");
    }
}

#[test]
fn two_clusters_load_with_their_own_discovery_keys_and_variables() {
    let mut e = two_regions_env();
    e.insert(
        "SHOAL_CLUSTERS_GLOBAL_ADVERTISE".into(),
        "203.0.113.5:7947".into(),
    );
    let c = load(TWO, &e).unwrap();
    let names: Vec<&str> = c.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["eu-west", "global"]);
    let global = c.cluster_for(Service::Events);
    assert_eq!(global.name, "global");
    assert_eq!(global.key_path(), "clusters[1]");
    assert_eq!(global.advertise.unwrap().to_string(), "203.0.113.5:7947");
    assert_eq!(global.keys()[0].expose(), &[2u8; 32]);
    assert_eq!(global.discovery.peers, ["10.1.0.5:7947"]);
    let regional = c.cluster_for(Service::Counters);
    assert_eq!(regional.keys()[0].expose(), &[1u8; 32]);
    assert_eq!(regional.discovery.method, DiscoveryMethod::DnsSrv);
    assert_eq!(c.cluster_for(Service::GlobalCounters).name, "global");
}

#[test]
fn a_service_on_a_disabled_cluster_runs_on_the_counters_cluster() {
    let mut e = two_regions_env();
    e.insert("SHOAL_CLUSTERS_GLOBAL_DISABLED".into(), "true".into());
    let c = load(TWO, &e).unwrap();
    assert_eq!(c.enabled_clusters().count(), 1);
    assert_eq!(c.cluster_for(Service::Events).name, "eu-west");
    // A disabled cluster needs no keys.
    let mut e = env(&[("SHOAL_CLUSTERS_EU_WEST_PSK", KEY_A)]);
    e.insert("SHOAL_CLUSTERS_GLOBAL_DISABLED".into(), "1".into());
    load(TWO, &e).unwrap();
}

#[test]
fn clusters_that_would_run_into_each_other_are_refused_with_both_named() {
    let text = TWO
        .replace("name = \"global\"", "name = \"eu-west\"")
        .replace("10.0.0.5:7947", "0.0.0.0:7946");
    let mut e = env(&[("SHOAL_CLUSTERS_EU_WEST_PSK", KEY_A)]);
    e.insert(
        "SHOAL_CLUSTERS_EU_WEST_ADVERTISE".into(),
        "10.0.0.5:7946".into(),
    );
    let err = load(&text, &e).unwrap_err();
    assert!(
        has(&err, "clusters[1].name", "also the name of clusters[0]"),
        "{err}"
    );
    assert!(
        has(&err, "clusters[1].bind", "takes the port of clusters[0]"),
        "{err}"
    );
    let issue = err
        .issues()
        .iter()
        .find(|i| i.key == "clusters[1].bind")
        .unwrap();
    assert_eq!(
        issue.origin,
        Origin::File {
            path: "shoal.toml".into(),
            line: 15
        },
        "{err}"
    );
}

#[test]
fn one_key_file_or_one_key_for_two_clusters_is_refused() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "{KEY_A}").unwrap();
    let path = file.path().display().to_string();
    let text = TWO.replace(
        "probe_interval = \"300ms\"",
        &format!("probe_interval = \"300ms\"\npsk_file = \"{path}\""),
    );
    let shared_file = text.replace(
        "probe_interval = \"1s\"",
        &format!("probe_interval = \"1s\"\npsk_file = \"{path}\""),
    );
    let err = load(&shared_file, &env(&[])).unwrap_err();
    assert!(
        has(&err, "clusters[1].psk_file", "is also clusters[0].psk_file"),
        "{err}"
    );
    // Another file, the same key inside (after rotation both lists hold it): refused too.
    let mut copy = tempfile::NamedTempFile::new().unwrap();
    writeln!(copy, "{KEY_B}\n{KEY_A}").unwrap();
    let shared_key = text.replace(
        "probe_interval = \"1s\"",
        &format!(
            "probe_interval = \"1s\"\npsk_file = \"{}\"",
            copy.path().display()
        ),
    );
    let err = load(&shared_key, &env(&[])).unwrap_err();
    assert!(
        has(
            &err,
            "clusters[1].psk_file",
            "holds a key that is also in the keys of clusters[0] (cluster \"eu-west\")"
        ),
        "{err}"
    );
}

#[test]
fn a_gossip_port_that_is_the_admin_port_is_refused() {
    let text = TWO.replace("10.0.0.5:7947", "0.0.0.0:8080");
    let err = load(&text, &two_regions_env()).unwrap_err();
    assert!(
        has(&err, "clusters[1].bind", "is also the admin port"),
        "{err}"
    );
}

#[test]
fn single_cluster_keys_beside_the_list_are_refused_with_where_they_go() {
    let mut e = two_regions_env();
    e.insert("SHOAL_CLUSTER_BIND".into(), "10.0.0.5:9000".into());
    e.insert("SHOAL_CLUSTER_PSK".into(), KEY_A.into());
    let text = format!(
        "[cluster]\nnode_key_file = \"/var/lib/shoal/node.key\"\n[discovery]\nmethod = \"none\"\n{TWO}"
    );
    let err = load(&text, &e).unwrap_err();
    let all = issues(&err);
    assert!(has(&err, "cluster.bind", "clusters[N].bind"), "{all:#?}");
    assert!(
        has(&err, "discovery.method", "[clusters.discovery]"),
        "{all:#?}"
    );
    assert!(
        has(&err, "cluster.psk_file", "SHOAL_CLUSTERS_<NAME>_PSK"),
        "{all:#?}"
    );
    assert!(
        !err.issues()
            .iter()
            .any(|i| i.key == "cluster.node_key_file"),
        "the node's identity stays in [cluster]: {all:#?}"
    );
    let entry_identity = TWO.replace(
        "probe_interval = \"1s\"",
        "probe_interval = \"1s\"\nnode_key_file = \"/k\"",
    );
    let err = load(&entry_identity, &two_regions_env()).unwrap_err();
    assert!(
        has(
            &err,
            "clusters[1].node_key_file",
            "set cluster.node_key_file"
        ),
        "{err}"
    );
}

#[test]
fn several_clusters_need_every_service_named_and_named_right() {
    let text = TWO
        .replace("events = \"global\"\n", "")
        .replace("cache = \"eu-west\"", "cache = \"us-east\"");
    let err = load(&text, &two_regions_env()).unwrap_err();
    assert!(
        has(&err, "services.events", "required when several clusters"),
        "{err}"
    );
    assert!(
        has(
            &err,
            "services.cache",
            "\"us-east\" is not one of [eu-west, global]"
        ),
        "{err}"
    );
    let mut e = two_regions_env();
    e.insert("SHOAL_CLUSTERS_EU_WEST_DISABLED".into(), "true".into());
    let err = load(TWO, &e).unwrap_err();
    assert!(has(&err, "services.counters", "which is disabled"), "{err}");
}

#[test]
fn list_entries_name_their_cluster_in_each_message() {
    let text = TWO
        .replace("probe_timeout = \"500ms\"", "probe_timeout = \"2s\"")
        .replace("name = \"global\"", "name = \"Global_1\"");
    let mut e = env(&[("SHOAL_CLUSTERS_EU_WEST_PSK", KEY_A)]);
    e.insert("SHOAL_CLUSTERS_GLOBAL_1_PSK".into(), KEY_B.into());
    let err = load(&text.replace("\"global\"", "\"Global_1\""), &e).unwrap_err();
    assert!(
        has(&err, "clusters[1].probe_timeout", "(cluster \"Global_1\")"),
        "{err}"
    );
    assert!(has(&err, "clusters[1].name", "lower-case letters"), "{err}");
}

#[test]
fn a_variable_naming_no_cluster_or_setting_is_refused_by_name() {
    let mut e = two_regions_env();
    e.insert("SHOAL_CLUSTERS_APAC_BIND".into(), "10.0.0.5:7948".into());
    e.insert("SHOAL_CLUSTERS_GLOBAL_PORT".into(), "7948".into());
    e.insert("SHOAL_CLUSTERS_GLOBAL_BIND".into(), "not an address".into());
    let err = load(TWO, &e).unwrap_err();
    let keys: Vec<&str> = err.issues().iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "SHOAL_CLUSTERS_APAC_BIND",
            "SHOAL_CLUSTERS_GLOBAL_BIND",
            "SHOAL_CLUSTERS_GLOBAL_PORT"
        ],
        "{err}"
    );
    assert!(err.to_string().contains("[EU_WEST, GLOBAL]"), "{err}");
}

#[test]
fn a_missing_key_names_the_cluster_and_its_variable() {
    let err = load(TWO, &env(&[("SHOAL_CLUSTERS_EU_WEST_PSK", KEY_A)])).unwrap_err();
    assert_eq!(
        issues(&err),
        [
            "clusters[1].psk_file: is missing of cluster \"global\": gossip is always encrypted, \
          so set it to a file holding a 32-byte key (64 hex characters or base64), or set \
          SHOAL_CLUSTERS_GLOBAL_PSK"
        ]
    );
}

#[test]
fn the_single_cluster_refuses_list_entry_keys() {
    let e = env(&[("SHOAL_CLUSTER_PSK", KEY_A)]);
    let err = load(
        "[cluster]\ndisabled = true\n[cluster.discovery]\nmethod = \"static\"\n",
        &e,
    )
    .unwrap_err();
    let keys: Vec<&str> = err.issues().iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        ["cluster.discovery.method", "cluster.disabled"],
        "{err}"
    );
}
