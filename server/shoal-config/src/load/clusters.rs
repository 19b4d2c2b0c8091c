use std::collections::BTreeMap;

use crate::error::ConfigIssue;
use crate::model::{ClusterConfig, NodeConfig};
use crate::origin::Origin;

/// `SHOAL_CLUSTERS_<NAME>_<SETTING>` sets one setting of the `[[clusters]]` entry `NAME`
/// (upper case, `-` as `_`): what a container sets per cluster from its environment, such as
/// the advertised address it only learns at start.
pub const CLUSTER_ENV_PREFIX: &str = "SHOAL_CLUSTERS_";

/// The settings a cluster takes from its variables; `PSK` is read with the secrets.
const SETTINGS: [&str; 5] = ["BIND", "ADVERTISE", "PSK_FILE", "DISABLED", "PSK"];

/// `NAME` in a cluster's variables.
pub(crate) fn env_name(cluster: &str) -> String {
    cluster.to_ascii_uppercase().replace('-', "_")
}

/// The variable holding the keys of `cluster` (the single cluster's is `SHOAL_CLUSTER_PSK`).
pub(crate) fn psk_var(cluster: &ClusterConfig) -> String {
    if cluster.key_path() == "cluster" {
        "SHOAL_CLUSTER_PSK".into()
    } else {
        format!("{CLUSTER_ENV_PREFIX}{}_PSK", env_name(&cluster.name))
    }
}

/// Applies every `SHOAL_CLUSTERS_*` variable to its entry, each bad value or unknown name an
/// issue named by the variable; returns the keys they set with the variable that set each.
pub(super) fn apply_env(
    config: &mut NodeConfig,
    env: &BTreeMap<String, String>,
    issues: &mut Vec<ConfigIssue>,
) -> BTreeMap<String, String> {
    let mut set = BTreeMap::new();
    for (var, value) in env.range(CLUSTER_ENV_PREFIX.to_string()..) {
        let Some(rest) = var.strip_prefix(CLUSTER_ENV_PREFIX) else {
            break;
        };
        let target = config.clusters.iter().enumerate().find_map(|(i, c)| {
            let setting = rest.strip_prefix(&format!("{}_", env_name(&c.name)))?;
            SETTINGS.contains(&setting).then_some((i, setting))
        });
        let mut issue = |message: String| {
            issues.push(ConfigIssue {
                key: var.clone(),
                origin: Origin::Env(var.clone()),
                message,
            })
        };
        let Some((i, setting)) = target else {
            let names: Vec<String> = config.clusters.iter().map(|c| env_name(&c.name)).collect();
            issue(format!(
                "names no setting of a [[clusters]] entry: expected {CLUSTER_ENV_PREFIX}<NAME>_\
                 <{}> with NAME one of [{}]",
                SETTINGS.join("|"),
                names.join(", ")
            ));
            continue;
        };
        let c = &mut config.clusters[i];
        let key = format!("clusters[{i}].{}", setting.to_ascii_lowercase());
        let applied = match setting {
            "BIND" => super::env::addr(value).map(|a| c.bind = a),
            "ADVERTISE" => super::env::addr(value).map(|a| c.advertise = Some(a)),
            "PSK_FILE" => super::env::path(value).map(|p| c.psk_file = Some(p)),
            "DISABLED" => super::env::bool_or_digit(value).map(|d| c.disabled = d),
            _ => Ok(()),
        };
        match applied {
            Ok(()) if setting != "PSK" => {
                set.insert(key, var.clone());
            }
            Ok(()) => {}
            Err(e) => issue(e),
        }
    }
    set
}

/// Gives every entry its key path, or makes the single `[cluster]` + `[discovery]` the list's
/// one entry: after `load`, `clusters` is what the node joins in either shape.
pub(super) fn normalize(config: &mut NodeConfig) {
    if config.clusters.is_empty() {
        let mut single = config.cluster.clone();
        single.discovery = config.discovery.clone();
        single.path = "cluster".into();
        config.clusters.push(single);
    } else {
        for (i, c) in config.clusters.iter_mut().enumerate() {
            c.path = format!("clusters[{i}]");
        }
    }
}
