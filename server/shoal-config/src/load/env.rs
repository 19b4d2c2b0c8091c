use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::error::{ConfigError, ConfigIssue};
use crate::model::{
    CookieSecure, DiscoveryMethod, LogFormat, NodeConfig, OtlpProtocol, duration_str,
};
use crate::origin::Origin;

/// A non-secret environment override: variable, the key it replaces, how to parse it.
pub struct EnvOverride {
    pub var: &'static str,
    pub key: &'static str,
    apply: fn(&mut NodeConfig, &str) -> Result<(), String>,
}

/// One row per variable, `VAR => key.path: parser`: the key an error names is the path of the
/// field the row writes, so the two cannot drift apart. `selects METHOD` also switches
/// discovery to the method whose one setting the variable gives.
macro_rules! env_overrides {
    ($($var:literal => $first:ident $(.$rest:ident)* : $parse:path
        $(, selects $method:ident)?;)*) => {
        &[$(EnvOverride {
            var: $var,
            key: concat!(stringify!($first) $(, ".", stringify!($rest))*),
            apply: |config, value| {
                $(config.discovery.method = DiscoveryMethod::$method;)?
                store(&mut config.$first $(.$rest)*, $parse(value)?);
                Ok(())
            },
        }),*]
    };
}

/// Every `SHOAL_*` variable that overrides a file key (secrets are listed in the docs). Applied
/// in this order, so `SHOAL_DISCOVERY_METHOD` wins over the method a variable above selects.
pub const ENV_OVERRIDES: &[EnvOverride] = env_overrides![
    "SHOAL_NODE_NAME" => node_name: text;
    "SHOAL_DATA_DIR" => data_dir: path;
    "SHOAL_HTTP_LISTEN" => http.listen: addr;
    "SHOAL_HTTP_SHUTDOWN_GRACE" => http.shutdown_grace: duration_str::parse;
    "SHOAL_HTTP_COOKIE_SECURE" => http.cookie_secure: str::parse::<CookieSecure>;
    "SHOAL_DATABASE_URL_FILE" => control_plane.database_url_file: path;
    "SHOAL_SECRETS_KEY_FILE" => control_plane.secrets_key_file: path;
    "SHOAL_CONTROL_PLANE_POLL_INTERVAL" => control_plane.poll_interval: duration_str::parse;
    "SHOAL_CONTROL_PLANE_MIGRATE_ON_START" => control_plane.migrate_on_start: bool_or_digit;
    "SHOAL_CLUSTER_NAME" => cluster.name: text;
    "SHOAL_CLUSTER_BIND" => cluster.bind: addr;
    "SHOAL_CLUSTER_ADVERTISE" => cluster.advertise: addr;
    "SHOAL_CLUSTER_PSK_FILE" => cluster.psk_file: path;
    "SHOAL_NODE_KEY_FILE" => cluster.node_key_file: path;
    "SHOAL_DISCOVERY_STATIC_PEERS" => discovery.peers: list, selects Static;
    "SHOAL_DISCOVERY_DNS_SRV" => discovery.name: trimmed, selects DnsSrv;
    "SHOAL_DISCOVERY_DNS_A" => discovery.name: trimmed, selects DnsA;
    "SHOAL_DISCOVERY_METHOD" => discovery.method: discovery_method;
    "SHOAL_DISCOVERY_KUBERNETES_NAMESPACE" => discovery.kubernetes.namespace: trimmed;
    "SHOAL_DISCOVERY_KUBERNETES_LABEL_SELECTOR" => discovery.kubernetes.label_selector: trimmed;
    "SHOAL_TELEMETRY_PROMETHEUS" => telemetry.prometheus: true_or_false;
    "SHOAL_TELEMETRY_OTLP_ENDPOINT" => telemetry.otlp_endpoint: unless_empty;
    "SHOAL_TELEMETRY_OTLP_PROTOCOL" => telemetry.otlp_protocol: otlp_protocol;
    "SHOAL_TELEMETRY_TRACE_SAMPLE_RATIO" => telemetry.trace_sample_ratio: ratio;
    "SHOAL_DISCOVERY_ETCD_ENDPOINTS" => discovery.etcd.endpoints: list;
    "SHOAL_DISCOVERY_CONSUL_ADDRESS" => discovery.consul.address: trimmed;
    "SHOAL_DISCOVERY_CONSUL_SERVICE" => discovery.consul.service: trimmed;
    "SHOAL_DISCOVERY_ECS_CLUSTER" => discovery.ecs.cluster: trimmed;
    "SHOAL_DISCOVERY_ECS_SERVICE" => discovery.ecs.service: trimmed;
    "SHOAL_DISCOVERY_ECS_REGION" => discovery.ecs.region: trimmed;
    "SHOAL_DISCOVERY_ECS_ENDPOINT" => discovery.ecs.endpoint: trimmed;
    "SHOAL_DISCOVERY_SERVER" => discovery.server: addr;
    "SHOAL_DISCOVERY_ALLOWED_ADDRESS_SPACE" => discovery.allowed_address_space: cidrs;
    "SHOAL_PROXY_ADDRESS" => proxy.address: ip;
    "SHOAL_LOG_FORMAT" => log.format: log_format;
    "SHOAL_LOG_LEVEL" => log.level: text;
];

/// Applies the overrides `env` sets, each bad value an issue named by its variable, and returns
/// the keys they set with the variable that set each.
pub(super) fn apply(
    config: &mut NodeConfig,
    env: &BTreeMap<String, String>,
    issues: &mut Vec<ConfigIssue>,
) -> BTreeMap<&'static str, &'static str> {
    let mut env_keys = BTreeMap::new();
    for o in ENV_OVERRIDES {
        if let Some(value) = env.get(o.var) {
            env_keys.insert(o.key, o.var);
            if let Err(message) = (o.apply)(config, value) {
                issues.push(ConfigIssue {
                    key: o.key.to_string(),
                    origin: Origin::Env(o.var.to_string()),
                    message,
                });
            }
        }
    }
    env_keys
}

/// The `SHOAL_*` variables of an environment. Read as raw bytes: `std::env::vars` panics on
/// any variable that is not UTF-8, ours or not, and a node must exit 78 with the reason
/// instead; a `SHOAL_*` one that is not UTF-8 is refused by name (its value is not shown: it
/// may be a secret).
pub(super) fn shoal_env(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    use std::os::unix::ffi::OsStrExt as _;
    let mut env = BTreeMap::new();
    let mut issues = Vec::new();
    for (key, value) in vars {
        if !key.as_bytes().starts_with(b"SHOAL_") {
            continue;
        }
        let name = key.to_string_lossy().into_owned();
        match (key.into_string(), value.into_string()) {
            (Ok(key), Ok(value)) => {
                env.insert(key, value);
            }
            _ => issues.push(ConfigIssue {
                key: name.clone(),
                origin: Origin::Env(name),
                message: "is not valid UTF-8 (the value is not shown)".into(),
            }),
        }
    }
    if issues.is_empty() {
        Ok(env)
    } else {
        Err(ConfigError::Invalid(issues))
    }
}

/// An optional key takes the parsed value as `Some`, any other key as it is.
fn store<T, F: From<T>>(field: &mut F, value: T) {
    *field = F::from(value);
}

fn text(v: &str) -> Result<String, String> {
    Ok(v.to_string())
}

fn trimmed(v: &str) -> Result<String, String> {
    Ok(v.trim().to_string())
}

/// Empty means "no endpoint", so a template can leave the variable set but blank.
fn unless_empty(v: &str) -> Result<Option<String>, String> {
    Ok(Some(v.trim().to_string()).filter(|v| !v.is_empty()))
}

pub(super) fn path(v: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(v))
}

/// Comma-separated, blanks between commas skipped.
fn list(v: &str) -> Result<Vec<String>, String> {
    Ok(v.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect())
}

pub(super) fn addr(v: &str) -> Result<SocketAddr, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("must be an IP:PORT socket address, got {v:?}"))
}

fn ip(v: &str) -> Result<IpAddr, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("must be an IP address, got {v:?}"))
}

fn cidrs(v: &str) -> Result<Vec<ipnet::IpNet>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .map_err(|_| format!("{p:?} is not a CIDR block like 10.0.0.0/8"))
        })
        .collect()
}

pub(super) fn bool_or_digit(v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("must be true or false, got {v:?}")),
    }
}

fn true_or_false(v: &str) -> Result<bool, String> {
    match v.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("must be true or false, got {other:?}")),
    }
}

fn ratio(v: &str) -> Result<f64, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("must be a number from 0 to 1, got {v:?}"))
}

fn otlp_protocol(v: &str) -> Result<OtlpProtocol, String> {
    v.trim().parse()
}

fn discovery_method(v: &str) -> Result<DiscoveryMethod, String> {
    let v = v.trim();
    DiscoveryMethod::ALL
        .into_iter()
        .find(|m| m.as_str() == v)
        .ok_or_else(|| {
            let names = DiscoveryMethod::ALL.map(DiscoveryMethod::as_str);
            let (last, rest) = names.split_last().expect("ALL is not empty");
            format!("must be {} or {last}, got {v:?}", rest.join(", "))
        })
}

fn log_format(v: &str) -> Result<LogFormat, String> {
    match v {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("must be \"text\" or \"json\", got {v:?}")),
    }
}
