use super::Check;
use crate::model::ClusterConfig;

pub(super) fn validate(c: &ClusterConfig, check: &mut Check) {
    check(
        c.probe_timeout < c.probe_interval,
        "cluster.probe_timeout",
        format!(
            "must be shorter than cluster.probe_interval ({}), got {}",
            humantime::format_duration(c.probe_interval),
            humantime::format_duration(c.probe_timeout)
        ),
    );
    for (key, value, max) in [
        ("cluster.suspicion_multiplier", c.suspicion_multiplier, 20),
        (
            "cluster.suspicion_max_timeout_multiplier",
            c.suspicion_max_timeout_multiplier,
            20,
        ),
        (
            "cluster.awareness_max_multiplier",
            c.awareness_max_multiplier,
            20,
        ),
        ("cluster.gossip_nodes", c.gossip_nodes, 64),
        ("cluster.retransmit_multiplier", c.retransmit_multiplier, 20),
    ] {
        check(
            (1..=max).contains(&value),
            key,
            format!("must be between 1 and {max}, got {value}"),
        );
    }
    if c.advertise.is_none() {
        check(
            !c.bind.ip().is_unspecified(),
            "cluster.advertise",
            format!(
                "is required when cluster.bind is a wildcard address ({}): peers need an address they can reach",
                c.bind
            ),
        );
    }
    check(
        !c.name.is_empty() && c.name.len() <= 64,
        "cluster.name",
        format!("must be 1-64 characters, got {:?}", c.name),
    );
    if let Some(adv) = c.advertise {
        check(
            !adv.ip().is_unspecified() && adv.port() != 0,
            "cluster.advertise",
            format!("must be a concrete address peers can reach, got {adv}"),
        );
    }
}
