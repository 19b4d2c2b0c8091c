mod cluster;
mod discovery;
mod state;

use std::time::Duration;

use crate::error::ConfigIssue;
use crate::model::{
    AuditConfig, ControlPlaneConfig, LogConfig, NodeConfig, ProxyConfig, TelemetryConfig,
};
use crate::origin::Origin;

/// Records an issue for `key` unless `ok`.
type Check<'a> = dyn FnMut(bool, &str, String) + 'a;

/// Every issue, not just the first. The duration ranges come first, from one table, then each
/// section's own rules and the checks across its keys: the order the issues are listed in.
/// `set_under(section)`: the keys set under `section` (file or environment).
pub(crate) fn validate(
    config: &NodeConfig,
    origin_of: &dyn Fn(&str) -> Origin,
    set_under: &dyn Fn(&str) -> Vec<String>,
    out: &mut Vec<ConfigIssue>,
) {
    let mut check = |ok: bool, key: &str, message: String| {
        if !ok {
            out.push(ConfigIssue {
                key: key.to_string(),
                origin: origin_of(key),
                message,
            });
        }
    };
    node(config, &mut check);
    durations(config, &mut check);
    state::validate(&config.state, &mut check);
    audit(&config.audit, &mut check);
    proxy(&config.proxy, &mut check);
    control_plane(&config.control_plane, &mut check);
    cluster::validate(config, set_under, &mut check);
    telemetry(&config.telemetry, &mut check);
    log(&config.log, &mut check);
}

fn node(config: &NodeConfig, check: &mut Check) {
    let name_ok = !config.node_name.is_empty()
        && config.node_name.len() <= 128
        && config
            .node_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    check(
        name_ok,
        "node_name",
        format!(
            "must be 1-128 characters of letters, digits, '-', '_' or '.', got {:?}",
            config.node_name
        ),
    );
    check(
        config.data_dir.is_absolute() || config.data_dir.starts_with("."),
        "data_dir",
        format!(
            "must be an absolute path (or start with ./), got {:?}",
            config.data_dir
        ),
    );
}

fn durations(config: &NodeConfig, check: &mut Check) {
    let cp = &config.control_plane;
    let st = &config.state;
    // Every duration key with its allowed range, in milliseconds.
    for (key, value, min, max) in [
        ("state.flush_interval", st.flush_interval, 1, 1_000),
        (
            "audit.flush_interval",
            config.audit.flush_interval,
            1,
            10_000,
        ),
        (
            "audit.fsync_interval",
            config.audit.fsync_interval,
            1,
            60_000,
        ),
        (
            "proxy.upstream_connect_timeout",
            config.proxy.upstream_connect_timeout,
            10,
            300_000,
        ),
        (
            "proxy.upstream_timeout",
            config.proxy.upstream_timeout,
            100,
            3_600_000,
        ),
        (
            "state.anti_entropy_interval",
            st.anti_entropy_interval,
            50,
            600_000,
        ),
        ("state.strict_timeout", st.strict_timeout, 10, 10_000),
        (
            "state.global_strict_timeout",
            st.global_strict_timeout,
            10,
            30_000,
        ),
        (
            "telemetry.otlp_interval",
            config.telemetry.otlp_interval,
            100,
            3_600_000,
        ),
        (
            "http.shutdown_grace",
            config.http.shutdown_grace,
            0,
            3_600_000,
        ),
        (
            "http.session_ttl",
            config.http.session_ttl,
            60_000,
            30 * 86_400_000,
        ),
        (
            "control_plane.poll_interval",
            cp.poll_interval,
            100,
            3_600_000,
        ),
        (
            "control_plane.connect_timeout",
            cp.connect_timeout,
            100,
            300_000,
        ),
        ("control_plane.reconnect_min", cp.reconnect_min, 10, 60_000),
        ("control_plane.reconnect_max", cp.reconnect_max, 10, 600_000),
    ] {
        range(check, key, value, (min, max));
    }
}

/// `value` within `min..=max` milliseconds.
fn range(check: &mut Check, key: &str, value: Duration, (min, max): (u64, u64)) {
    let (min, max) = (Duration::from_millis(min), Duration::from_millis(max));
    check(
        value >= min && value <= max,
        key,
        format!(
            "must be between {} and {}, got {}",
            humantime::format_duration(min),
            humantime::format_duration(max),
            humantime::format_duration(value)
        ),
    );
}

fn audit(a: &AuditConfig, check: &mut Check) {
    check(
        a.spool_max_bytes >= 1 << 20,
        "audit.spool_max_bytes",
        format!(
            "must be at least 1048576 (1 MiB), got {}",
            a.spool_max_bytes
        ),
    );
}

fn proxy(p: &ProxyConfig, check: &mut Check) {
    check(
        (8 * 1024..=1024 * 1024).contains(&p.max_header_bytes),
        "proxy.max_header_bytes",
        format!(
            "must be between 8192 and 1048576, got {}",
            p.max_header_bytes
        ),
    );
    check(
        (1..=1_000_000).contains(&p.max_connections),
        "proxy.max_connections",
        format!("must be between 1 and 1000000, got {}", p.max_connections),
    );
}

fn control_plane(cp: &ControlPlaneConfig, check: &mut Check) {
    check(
        cp.reconnect_min <= cp.reconnect_max,
        "control_plane.reconnect_min",
        format!(
            "must not exceed control_plane.reconnect_max ({}), got {}",
            humantime::format_duration(cp.reconnect_max),
            humantime::format_duration(cp.reconnect_min)
        ),
    );
    // The change listener holds one connection for good, and migrating at start holds the
    // advisory lock on a second while it migrates on a third: with two, start-up waits out
    // pool time-outs (45 s seen with ten nodes starting together).
    check(
        (3..=100).contains(&cp.max_connections),
        "control_plane.max_connections",
        format!("must be between 3 and 100, got {}", cp.max_connections),
    );
}

fn telemetry(t: &TelemetryConfig, check: &mut Check) {
    if let Some(endpoint) = &t.otlp_endpoint {
        let rest = endpoint
            .strip_prefix("http://")
            .or_else(|| endpoint.strip_prefix("https://"));
        check(
            rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace)),
            "telemetry.otlp_endpoint",
            format!(
                "must be an http:// or https:// URL of an OTLP collector (4318 for \
                 http/protobuf, 4317 for grpc), got {endpoint:?}"
            ),
        );
    }
    let ratio = t.trace_sample_ratio;
    check(
        (0.0..=1.0).contains(&ratio),
        "telemetry.trace_sample_ratio",
        format!("must be from 0 to 1, got {ratio}"),
    );
}

fn log(log: &LogConfig, check: &mut Check) {
    // Field values as literals, not regular expressions: the automaton of a pattern such as
    // `[{f=.*a................}]` doubles with each dot (here 45 s, 400 MB; found by fuzzing).
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_regex(false)
        .parse(&log.level);
    check(
        filter.is_ok(),
        "log.level",
        format!(
            "must be a level (error, warn, info, debug, trace) or a filter like \
             \"info,shoal_control_plane=debug\", got {:?}",
            log.level
        ),
    );
}
