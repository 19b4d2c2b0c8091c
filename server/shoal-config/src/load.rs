use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::{DiscoveryMethod, LogFormat, NodeConfig, duration_str};
use crate::secret::{Secret, SecretKey};

/// Where a config value came from, so an error points at the place to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File { path: PathBuf, line: usize },
    Env(String),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// One thing wrong with a config value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}` {}", self.origin, self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// Every problem found, not just the first, so one edit-check cycle fixes them all.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
}

impl ConfigError {
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            ConfigError::Invalid(issues) => issues,
            _ => &[],
        }
    }
}

type Apply = fn(&mut NodeConfig, &str) -> Result<(), String>;

/// A non-secret environment override: variable, the key it replaces, how to parse it.
pub struct EnvOverride {
    pub var: &'static str,
    pub key: &'static str,
    apply: Apply,
}

/// Secret values come only from these variables or from the `*_file` keys.
const SECRET_ENV: [(&str, &str); 4] = [
    ("SHOAL_DATABASE_URL", "control_plane.database_url_file"),
    ("SHOAL_CLUSTER_PSK", "cluster.psk_file"),
    ("SHOAL_SECRETS_KEY", "control_plane.secrets_key_file"),
    (
        "SHOAL_TELEMETRY_OTLP_HEADERS",
        "telemetry.otlp_headers_file",
    ),
];

/// Every `SHOAL_*` variable that overrides a file key (secrets are listed in the docs).
pub const ENV_OVERRIDES: &[EnvOverride] = &[
    EnvOverride {
        var: "SHOAL_NODE_NAME",
        key: "node_name",
        apply: |c, v| {
            c.node_name = v.to_string();
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_DATA_DIR",
        key: "data_dir",
        apply: |c, v| {
            c.data_dir = PathBuf::from(v);
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_HTTP_LISTEN",
        key: "http.listen",
        apply: |c, v| parse_addr(v).map(|a| c.http.listen = a),
    },
    EnvOverride {
        var: "SHOAL_HTTP_SHUTDOWN_GRACE",
        key: "http.shutdown_grace",
        apply: |c, v| duration_str::parse(v).map(|d| c.http.shutdown_grace = d),
    },
    EnvOverride {
        var: "SHOAL_HTTP_COOKIE_SECURE",
        key: "http.cookie_secure",
        apply: |c, v| v.parse().map(|s| c.http.cookie_secure = s),
    },
    EnvOverride {
        var: "SHOAL_DATABASE_URL_FILE",
        key: "control_plane.database_url_file",
        apply: |c, v| {
            c.control_plane.database_url_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_SECRETS_KEY_FILE",
        key: "control_plane.secrets_key_file",
        apply: |c, v| {
            c.control_plane.secrets_key_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_CONTROL_PLANE_POLL_INTERVAL",
        key: "control_plane.poll_interval",
        apply: |c, v| duration_str::parse(v).map(|d| c.control_plane.poll_interval = d),
    },
    EnvOverride {
        var: "SHOAL_CONTROL_PLANE_MIGRATE_ON_START",
        key: "control_plane.migrate_on_start",
        apply: |c, v| {
            c.control_plane.migrate_on_start = match v {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(format!("must be true or false, got {v:?}")),
            };
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_CLUSTER_NAME",
        key: "cluster.name",
        apply: |c, v| {
            c.cluster.name = v.to_string();
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_CLUSTER_BIND",
        key: "cluster.bind",
        apply: |c, v| parse_addr(v).map(|a| c.cluster.bind = a),
    },
    EnvOverride {
        var: "SHOAL_CLUSTER_ADVERTISE",
        key: "cluster.advertise",
        apply: |c, v| parse_addr(v).map(|a| c.cluster.advertise = Some(a)),
    },
    EnvOverride {
        var: "SHOAL_CLUSTER_PSK_FILE",
        key: "cluster.psk_file",
        apply: |c, v| {
            c.cluster.psk_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_NODE_KEY_FILE",
        key: "cluster.node_key_file",
        apply: |c, v| {
            c.cluster.node_key_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_DISCOVERY_STATIC_PEERS",
        key: "discovery.peers",
        apply: |c, v| {
            c.discovery.method = DiscoveryMethod::Static;
            c.discovery.peers = v
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_DISCOVERY_DNS_SRV",
        key: "discovery.name",
        apply: |c, v| {
            c.discovery.method = DiscoveryMethod::DnsSrv;
            c.discovery.name = Some(v.trim().to_string());
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_DISCOVERY_DNS_A",
        key: "discovery.name",
        apply: |c, v| {
            c.discovery.method = DiscoveryMethod::DnsA;
            c.discovery.name = Some(v.trim().to_string());
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_DISCOVERY_METHOD",
        key: "discovery.method",
        apply: |c, v| {
            c.discovery.method = match v.trim() {
                "none" => DiscoveryMethod::None,
                "static" => DiscoveryMethod::Static,
                "dns-srv" => DiscoveryMethod::DnsSrv,
                "dns-a" => DiscoveryMethod::DnsA,
                "ecs" => DiscoveryMethod::Ecs,
                "kubernetes" => DiscoveryMethod::Kubernetes,
                "etcd" => DiscoveryMethod::Etcd,
                "consul" => DiscoveryMethod::Consul,
                "udp" => DiscoveryMethod::Udp,
                "mdns" => DiscoveryMethod::Mdns,
                other => {
                    return Err(format!(
                        "must be none, static, dns-srv, dns-a, ecs, kubernetes, etcd, consul, \
                         udp or mdns, got {other:?}"
                    ));
                }
            };
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_DISCOVERY_KUBERNETES_NAMESPACE",
        key: "discovery.kubernetes.namespace",
        apply: |c, v| {
            c.discovery.kubernetes.namespace = Some(v.trim().to_string());
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_DISCOVERY_KUBERNETES_LABEL_SELECTOR",
        key: "discovery.kubernetes.label_selector",
        apply: |c, v| {
            c.discovery.kubernetes.label_selector = Some(v.trim().to_string());
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_TELEMETRY_PROMETHEUS",
        key: "telemetry.prometheus",
        apply: |c, v| match v.trim() {
            "true" => {
                c.telemetry.prometheus = true;
                Ok(())
            }
            "false" => {
                c.telemetry.prometheus = false;
                Ok(())
            }
            other => Err(format!("must be true or false, got {other:?}")),
        },
    },
    EnvOverride {
        var: "SHOAL_TELEMETRY_OTLP_ENDPOINT",
        key: "telemetry.otlp_endpoint",
        apply: |c, v| {
            c.telemetry.otlp_endpoint = Some(v.trim().to_string()).filter(|v| !v.is_empty());
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_TELEMETRY_OTLP_PROTOCOL",
        key: "telemetry.otlp_protocol",
        apply: |c, v| {
            c.telemetry.otlp_protocol = v.trim().parse()?;
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_TELEMETRY_TRACE_SAMPLE_RATIO",
        key: "telemetry.trace_sample_ratio",
        apply: |c, v| {
            c.telemetry.trace_sample_ratio = v
                .trim()
                .parse()
                .map_err(|_| format!("must be a number from 0 to 1, got {v:?}"))?;
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_DISCOVERY_ETCD_ENDPOINTS",
        key: "discovery.etcd.endpoints",
        apply: |c, v| {
            c.discovery.etcd.endpoints = v
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_string)
                .collect();
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_DISCOVERY_CONSUL_ADDRESS",
        key: "discovery.consul.address",
        apply: |c, v| {
            c.discovery.consul.address = Some(v.trim().to_string());
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_DISCOVERY_CONSUL_SERVICE",
        key: "discovery.consul.service",
        apply: |c, v| {
            c.discovery.consul.service = Some(v.trim().to_string());
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_DISCOVERY_ECS_CLUSTER",
        key: "discovery.ecs.cluster",
        apply: |c, v| {
            c.discovery.ecs.cluster = Some(v.trim().to_string());
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_DISCOVERY_ECS_SERVICE",
        key: "discovery.ecs.service",
        apply: |c, v| {
            c.discovery.ecs.service = Some(v.trim().to_string());
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_DISCOVERY_ECS_REGION",
        key: "discovery.ecs.region",
        apply: |c, v| {
            c.discovery.ecs.region = Some(v.trim().to_string());
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_DISCOVERY_ECS_ENDPOINT",
        key: "discovery.ecs.endpoint",
        apply: |c, v| {
            c.discovery.ecs.endpoint = Some(v.trim().to_string());
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_DISCOVERY_SERVER",
        key: "discovery.server",
        apply: |c, v| parse_addr(v).map(|a| c.discovery.server = Some(a)),
    },
    EnvOverride {
        var: "SHOAL_DISCOVERY_ALLOWED_ADDRESS_SPACE",
        key: "discovery.allowed_address_space",
        apply: |c, v| {
            c.discovery.allowed_address_space = v
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse()
                        .map_err(|_| format!("{p:?} is not a CIDR block like 10.0.0.0/8"))
                })
                .collect::<Result<_, _>>()?;
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_PROXY_ADDRESS",
        key: "proxy.address",
        apply: |c, v| {
            c.proxy.address = v
                .trim()
                .parse()
                .map_err(|_| format!("must be an IP address, got {v:?}"))?;
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_LOG_FORMAT",
        key: "log.format",
        apply: |c, v| {
            c.log.format = match v {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(format!("must be \"text\" or \"json\", got {v:?}")),
            };
            Ok(())
        },
    },
    EnvOverride {
        var: "SHOAL_LOG_LEVEL",
        key: "log.level",
        apply: |c, v| {
            c.log.level = v.to_string();
            Ok(())
        },
    },
];

fn parse_addr(v: &str) -> Result<SocketAddr, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("must be an IP:PORT socket address, got {v:?}"))
}

/// Loads the config file (optional: a container may configure everything by env), applies
/// `SHOAL_*` overrides from the process environment, reads secrets and validates.
pub fn load(path: Option<&Path>) -> Result<NodeConfig, ConfigError> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
            path: p.to_path_buf(),
            source,
        })?,
        None => String::new(),
    };
    let env = shoal_env(std::env::vars_os())?;
    load_from_str(&text, path.unwrap_or(Path::new("<no file>")), &env)
}

/// The `SHOAL_*` variables of an environment. Read as raw bytes: `std::env::vars` panics on
/// any variable that is not UTF-8, ours or not, and a node must exit 78 with the reason
/// instead; a `SHOAL_*` one that is not UTF-8 is refused by name (its value is not shown: it
/// may be a secret).
fn shoal_env(
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

/// The pure core of [`load`], with the environment passed in so tests stay hermetic.
pub fn load_from_str(
    text: &str,
    path: &Path,
    env: &BTreeMap<String, String>,
) -> Result<NodeConfig, ConfigError> {
    let mut config: NodeConfig = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: with_secret_hint(e.message()),
        }
    })?;
    let origins = Origins::new(text, path);
    let mut issues = Vec::new();
    let mut env_keys = BTreeMap::new();
    for o in ENV_OVERRIDES {
        if let Some(value) = env.get(o.var) {
            env_keys.insert(o.key, o.var);
            if let Err(message) = (o.apply)(&mut config, value) {
                issues.push(ConfigIssue {
                    key: o.key.to_string(),
                    origin: Origin::Env(o.var.to_string()),
                    message,
                });
            }
        }
    }
    let origin_of = |key: &str| match env_keys.get(key) {
        Some(var) => Origin::Env(var.to_string()),
        None => origins.of(key),
    };
    resolve_secrets(&mut config, env, &origin_of, &mut issues);
    validate(&config, &origin_of, &mut issues);
    if issues.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(issues))
    }
}

fn with_secret_hint(message: &str) -> String {
    let inline_secret = ["`database_url`", "`psk`", "`secrets_key`"]
        .iter()
        .any(|k| message.contains(&format!("unknown field {k}")));
    if inline_secret {
        format!(
            "{}\nsecrets are never written inline: use the matching `*_file` key or env var ({})",
            message.trim_end(),
            SECRET_ENV.map(|(var, _)| var).join(", ")
        )
    } else {
        message.trim_end().to_string()
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Line numbers of the keys present in the file, by dotted path.
struct Origins {
    path: PathBuf,
    lines: BTreeMap<String, usize>,
}

impl Origins {
    fn new(text: &str, path: &Path) -> Self {
        let mut lines = BTreeMap::new();
        if let Ok(table) = toml::de::DeTable::parse(text) {
            collect_lines(text, "", table.get_ref(), &mut lines);
        }
        Self {
            path: path.to_path_buf(),
            lines,
        }
    }

    fn of(&self, key: &str) -> Origin {
        match self.lines.get(key) {
            Some(&line) => Origin::File {
                path: self.path.clone(),
                line,
            },
            None => Origin::Default,
        }
    }
}

fn collect_lines(
    text: &str,
    prefix: &str,
    table: &toml::de::DeTable<'_>,
    out: &mut BTreeMap<String, usize>,
) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        out.insert(path.clone(), line_col(text, key.span().start).0);
        if let toml::de::DeValue::Table(inner) = value.get_ref() {
            collect_lines(text, &path, inner, out);
        }
    }
}

fn read_secret_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn resolve_secrets(
    config: &mut NodeConfig,
    env: &BTreeMap<String, String>,
    origin_of: &dyn Fn(&str) -> Origin,
    issues: &mut Vec<ConfigIssue>,
) {
    let mut issue = |key: &str, origin: Origin, message: String| {
        issues.push(ConfigIssue {
            key: key.to_string(),
            origin,
            message,
        })
    };
    // Database URL: env first, then the file.
    let url = match (
        env.get("SHOAL_DATABASE_URL"),
        &config.control_plane.database_url_file,
    ) {
        (Some(url), _) => Some((url.clone(), Origin::Env("SHOAL_DATABASE_URL".into()))),
        (None, Some(file)) => {
            let key = "control_plane.database_url_file";
            match read_secret_file(file) {
                Ok(url) => Some((url.trim().to_string(), origin_of(key))),
                Err(e) => {
                    issue(key, origin_of(key), e);
                    None
                }
            }
        }
        (None, None) => {
            issue(
                "control_plane.database_url_file",
                Origin::Default,
                "is missing: set it to a file holding the PostgreSQL URL, or set SHOAL_DATABASE_URL"
                    .into(),
            );
            None
        }
    };
    if let Some((url, origin)) = url {
        match check_database_url(&url) {
            Ok(()) => config.control_plane.database_url = Some(Secret::new(url)),
            Err(e) => issue("control_plane.database_url_file", origin, e),
        }
    }

    // OTLP headers: env first, then the file.
    let headers = match (
        env.get("SHOAL_TELEMETRY_OTLP_HEADERS"),
        &config.telemetry.otlp_headers_file,
    ) {
        (Some(text), _) => Some((
            text.clone(),
            Origin::Env("SHOAL_TELEMETRY_OTLP_HEADERS".into()),
        )),
        (None, Some(file)) => {
            let key = "telemetry.otlp_headers_file";
            match read_secret_file(file) {
                Ok(text) => Some((text, origin_of(key))),
                Err(e) => {
                    issue(key, origin_of(key), e);
                    None
                }
            }
        }
        (None, None) => None,
    };
    if let Some((text, origin)) = headers {
        match parse_otlp_headers(&text) {
            Ok(h) => config.telemetry.otlp_headers = h,
            Err(e) => issue("telemetry.otlp_headers_file", origin, e),
        }
    }

    if let Some(file) = config.proxy.upstream_ca_file.clone() {
        let key = "proxy.upstream_ca_file";
        match std::fs::read_to_string(&file) {
            Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => {
                config.proxy.upstream_ca_pem = Some(text);
            }
            Ok(_) => issue(
                key,
                origin_of(key),
                format!(
                    "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    file.display()
                ),
            ),
            Err(e) => issue(
                key,
                origin_of(key),
                format!("cannot read {}: {e}", file.display()),
            ),
        }
    }
    // Both keys: env first, then the file; the text is parsed by `parse`.
    let mut read_keys = |var: &str,
                         file: &Option<PathBuf>,
                         key: &str,
                         parse: &dyn Fn(&str) -> Result<Vec<SecretKey>, String>|
     -> Option<Vec<SecretKey>> {
        let (text, origin) = match (env.get(var), file) {
            (Some(v), _) => (v.clone(), Origin::Env(var.into())),
            (None, Some(f)) => match read_secret_file(f) {
                Ok(t) => (t, origin_of(key)),
                Err(e) => {
                    issue(key, origin_of(key), e);
                    return None;
                }
            },
            (None, None) => return None,
        };
        parse(&text)
            .map_err(|e| issue(key, origin, format!("key {e}")))
            .ok()
    };
    let psk_file = config.cluster.psk_file.clone();
    let psk = read_keys(
        "SHOAL_CLUSTER_PSK",
        &psk_file,
        "cluster.psk_file",
        &SecretKey::parse_list,
    );
    let secrets_file = config.control_plane.secrets_key_file.clone();
    let secrets = read_keys(
        "SHOAL_SECRETS_KEY",
        &secrets_file,
        "control_plane.secrets_key_file",
        &|t| SecretKey::parse(t).map(|k| vec![k]),
    );
    config.cluster.keys = psk.unwrap_or_default();
    config.cluster.keys_from_env = env.contains_key("SHOAL_CLUSTER_PSK");
    config.control_plane.secrets_key = secrets.and_then(|mut k| k.pop());
    let psk_given = env.contains_key("SHOAL_CLUSTER_PSK") || config.cluster.psk_file.is_some();
    if !psk_given {
        issue(
            "cluster.psk_file",
            Origin::Default,
            "is missing: gossip is always encrypted, so set it to a file holding a 32-byte key \
             (64 hex characters or base64), or set SHOAL_CLUSTER_PSK"
                .into(),
        );
    }
}

/// `key=value` pairs, comma- or line-separated (the `OTEL_EXPORTER_OTLP_HEADERS` form, values
/// percent-decoded). Errors name the pair by position, never its value: values are secrets.
fn parse_otlp_headers(text: &str) -> Result<Vec<(String, Secret<String>)>, String> {
    let mut out = Vec::new();
    for (i, pair) in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with('#'))
        .enumerate()
    {
        let n = i + 1;
        let Some((name, value)) = pair.split_once('=') else {
            return Err(format!("header {n} is not key=value"));
        };
        let name = name.trim().to_ascii_lowercase();
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            return Err(format!("header {n} has an invalid name {name:?}"));
        }
        let value = percent_decode(value.trim())
            .filter(|v| !v.is_empty() && v.chars().all(|c| c == ' ' || c.is_ascii_graphic()))
            .ok_or_else(|| {
                format!(
                    "header {name:?} has an invalid value (printable ASCII after percent-decoding)"
                )
            })?;
        out.push((name, Secret::new(value)));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Checks shape only; whether the database answers is the control plane's job.
fn check_database_url(url: &str) -> Result<(), String> {
    let scheme = url.split("://").next().unwrap_or_default();
    if !url.contains("://") || !matches!(scheme, "postgres" | "postgresql") {
        return Err(
            "holds a URL that is not a PostgreSQL URL: expected postgres://USER:PASSWORD@HOST:PORT/DB"
                .into(),
        );
    }
    Ok(())
}

fn validate_state(st: &crate::StateConfig, check: &mut dyn FnMut(bool, &str, String)) {
    check(
        (1..=8).contains(&st.windows.len()),
        "state.windows",
        format!("must list 1 to 8 windows, got {}", st.windows.len()),
    );
    for (i, w) in st.windows.iter().enumerate() {
        let key = format!("state.windows[{i}]");
        let name_ok = !w.name.is_empty()
            && w.name.len() <= 64
            && w.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && st.windows.iter().filter(|o| o.name == w.name).count() == 1;
        check(
            name_ok,
            &format!("{key}.name"),
            format!(
                "must be a unique name of 1-64 lowercase letters, digits or '_', got {:?}",
                w.name
            ),
        );
        let ms = w.length.as_millis() as u64;
        check(
            (1..=10_000).contains(&w.buckets)
                && ms >= u64::from(w.buckets)
                && ms.is_multiple_of(u64::from(w.buckets.max(1))),
            &format!("{key}.buckets"),
            format!(
                "must be 1-10000 and divide the window length ({}) into whole milliseconds, got {}",
                humantime::format_duration(w.length),
                w.buckets
            ),
        );
        check(
            (1_000..=7 * 86_400_000).contains(&ms),
            &format!("{key}.length"),
            format!(
                "must be between 1s and 7days, got {}",
                humantime::format_duration(w.length)
            ),
        );
    }
    for (key, value, min, max) in [
        ("state.replay_capacity", st.replay_capacity, 100, 10_000_000),
        ("state.max_keys", st.max_keys, 1_000, 100_000_000),
        ("state.relay_above", st.relay_above, 1, 1_000_000),
        (
            "state.cache_max_entries",
            st.cache_max_entries,
            1,
            100_000_000,
        ),
        (
            "state.cache_max_value_bytes",
            st.cache_max_value_bytes,
            1,
            16 * 1024 * 1024,
        ),
        (
            "state.event_max_payload_bytes",
            st.event_max_payload_bytes,
            1,
            16 * 1024 * 1024,
        ),
    ] {
        check(
            (min..=max).contains(&value),
            key,
            format!("must be between {min} and {max}, got {value}"),
        );
    }
}

/// A registration must outlive at least two discovery rounds (it is renewed once per round),
/// or a node would vanish from its peers' lists between renewals.
fn registration_ttl(
    check: &mut impl FnMut(bool, &str, String),
    key: &str,
    ttl: Option<Duration>,
    interval: Duration,
) {
    if let Some(ttl) = ttl {
        check(
            ttl >= interval * 2 && ttl <= Duration::from_secs(3600),
            key,
            format!(
                "must be at least twice discovery.interval ({}) and at most 1h, got {}",
                humantime::format_duration(interval),
                humantime::format_duration(ttl)
            ),
        );
    }
}

fn validate(config: &NodeConfig, origin_of: &dyn Fn(&str) -> Origin, out: &mut Vec<ConfigIssue>) {
    let mut check = |ok: bool, key: &str, message: String| {
        if !ok {
            out.push(ConfigIssue {
                key: key.to_string(),
                origin: origin_of(key),
                message,
            });
        }
    };
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
    let cp = &config.control_plane;
    let c = &config.cluster;
    let d = &config.discovery;
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
        ("cluster.probe_interval", c.probe_interval, 50, 60_000),
        ("cluster.probe_timeout", c.probe_timeout, 10, 60_000),
        ("cluster.gossip_interval", c.gossip_interval, 10, 60_000),
        (
            "cluster.push_pull_interval",
            c.push_pull_interval,
            100,
            3_600_000,
        ),
        (
            "cluster.dead_node_reap",
            c.dead_node_reap,
            1_000,
            86_400_000,
        ),
        (
            "cluster.key_reload_interval",
            c.key_reload_interval,
            100,
            3_600_000,
        ),
        ("discovery.interval", d.interval, 100, 3_600_000),
        ("discovery.timeout", d.timeout, 10, 3_600_000),
        ("discovery.join_timeout", d.join_timeout, 100, 3_600_000),
    ] {
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
    validate_state(st, &mut check);
    check(
        config.audit.spool_max_bytes >= 1 << 20,
        "audit.spool_max_bytes",
        format!(
            "must be at least 1048576 (1 MiB), got {}",
            config.audit.spool_max_bytes
        ),
    );
    check(
        (8 * 1024..=1024 * 1024).contains(&config.proxy.max_header_bytes),
        "proxy.max_header_bytes",
        format!(
            "must be between 8192 and 1048576, got {}",
            config.proxy.max_header_bytes
        ),
    );
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
        !config.cluster.name.is_empty() && config.cluster.name.len() <= 64,
        "cluster.name",
        format!("must be 1-64 characters, got {:?}", config.cluster.name),
    );
    if let Some(adv) = config.cluster.advertise {
        check(
            !adv.ip().is_unspecified() && adv.port() != 0,
            "cluster.advertise",
            format!("must be a concrete address peers can reach, got {adv}"),
        );
    }
    if let Some(endpoint) = &config.telemetry.otlp_endpoint {
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
    let ratio = config.telemetry.trace_sample_ratio;
    check(
        (0.0..=1.0).contains(&ratio),
        "telemetry.trace_sample_ratio",
        format!("must be from 0 to 1, got {ratio}"),
    );
    let method = d.method.as_str();
    let uses = |key: &str| match d.method {
        DiscoveryMethod::None => false,
        DiscoveryMethod::Static => matches!(key, "peers" | "server"),
        DiscoveryMethod::DnsSrv => matches!(key, "name" | "server"),
        DiscoveryMethod::DnsA => matches!(key, "name" | "port" | "server"),
        DiscoveryMethod::Ecs => matches!(key, "port" | "ecs"),
        DiscoveryMethod::Kubernetes => matches!(key, "port" | "kubernetes"),
        DiscoveryMethod::Etcd => key == "etcd",
        DiscoveryMethod::Consul => key == "consul",
        DiscoveryMethod::Udp => key == "udp",
        DiscoveryMethod::Mdns => false,
    };
    let set = [
        ("peers", !d.peers.is_empty()),
        ("name", d.name.is_some()),
        ("server", d.server.is_some()),
        ("ecs", d.ecs != Default::default()),
        ("kubernetes", d.kubernetes != Default::default()),
        ("etcd", d.etcd != Default::default()),
        ("consul", d.consul != Default::default()),
        ("udp", d.udp != Default::default()),
    ];
    for (key, present) in set {
        check(
            !present || uses(key),
            &format!("discovery.{key}"),
            format!("is not used by discovery method {method:?}"),
        );
    }
    match d.method {
        DiscoveryMethod::None => {}
        DiscoveryMethod::Static => {
            check(
                !d.peers.is_empty(),
                "discovery.peers",
                "must list at least one peer as host:port for method \"static\"".into(),
            );
            for peer in &d.peers {
                let ok = peer.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                });
                check(
                    ok,
                    "discovery.peers",
                    format!("entries must be host:port, got {peer:?}"),
                );
            }
        }
        DiscoveryMethod::Ecs => {
            let e = &d.ecs;
            for (key, value) in [
                ("cluster", &e.cluster),
                ("service", &e.service),
                ("region", &e.region),
            ] {
                if let Some(v) = value {
                    check(
                        !v.is_empty() && v.len() <= 255 && v.bytes().all(|b| b.is_ascii_graphic()),
                        &format!("discovery.ecs.{key}"),
                        format!("must be 1-255 visible characters, got {v:?}"),
                    );
                }
            }
            if let Some(endpoint) = &e.endpoint {
                check(
                    endpoint.starts_with("http://") || endpoint.starts_with("https://"),
                    "discovery.ecs.endpoint",
                    format!("must be an http:// or https:// URL, got {endpoint:?}"),
                );
            }
        }
        DiscoveryMethod::Kubernetes => {
            let k = &d.kubernetes;
            if let Some(ns) = &k.namespace {
                // RFC 1123 label: what Kubernetes accepts as a namespace name.
                let ok = !ns.is_empty()
                    && ns.len() <= 63
                    && ns
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !ns.starts_with('-')
                    && !ns.ends_with('-');
                check(
                    ok,
                    "discovery.kubernetes.namespace",
                    format!(
                        "must be a namespace name (lower-case letters, digits, '-'), got {ns:?}"
                    ),
                );
            }
            let selector_ok = k.label_selector.as_deref().is_some_and(|s| {
                !s.trim().is_empty() && s.len() <= 1024 && !s.contains(char::is_control)
            });
            check(
                selector_ok,
                "discovery.kubernetes.label_selector",
                format!(
                    "must select the peer pods for method \"kubernetes\" (e.g. \
                     \"app.kubernetes.io/name=shoal\"), got {:?}",
                    k.label_selector
                ),
            );
        }
        DiscoveryMethod::Etcd => {
            let e = &d.etcd;
            check(
                !e.endpoints.is_empty(),
                "discovery.etcd.endpoints",
                "must list at least one etcd client URL for method \"etcd\"".into(),
            );
            for url in &e.endpoints {
                check(
                    url.starts_with("http://") && url.len() > 7,
                    "discovery.etcd.endpoints",
                    format!(
                        "entries must be http:// URLs (TLS to etcd is not supported yet), got {url:?}"
                    ),
                );
            }
            if let Some(prefix) = &e.prefix {
                check(
                    prefix.starts_with('/') && prefix.ends_with('/') && prefix.len() <= 256,
                    "discovery.etcd.prefix",
                    format!("must start and end with '/', got {prefix:?}"),
                );
            }
            registration_ttl(&mut check, "discovery.etcd.ttl", e.ttl, d.interval);
        }
        DiscoveryMethod::Consul => {
            let c = &d.consul;
            if let Some(address) = &c.address {
                check(
                    address.starts_with("http://") && address.len() > 7,
                    "discovery.consul.address",
                    format!(
                        "must be an http:// URL (TLS to the agent is not supported yet; use the \
                         local agent), got {address:?}"
                    ),
                );
            }
            if let Some(service) = &c.service {
                check(
                    !service.is_empty()
                        && service.len() <= 63
                        && service
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                    "discovery.consul.service",
                    format!("must be 1-63 letters, digits or '-', got {service:?}"),
                );
            }
            registration_ttl(&mut check, "discovery.consul.ttl", c.ttl, d.interval);
        }
        DiscoveryMethod::Mdns => {}
        DiscoveryMethod::Udp => {
            check(
                !d.udp.broadcast.is_empty() && d.udp.broadcast.len() <= 16,
                "discovery.udp.broadcast",
                "must list 1 to 16 broadcast addresses with their port".into(),
            );
            for target in &d.udp.broadcast {
                check(
                    target.port() > 0 && target.is_ipv4(),
                    "discovery.udp.broadcast",
                    format!("entries must be IPv4 broadcast addresses with a port, got {target}"),
                );
            }
            check(
                d.udp.listen.port() > 0,
                "discovery.udp.listen",
                format!("must have a port, got {}", d.udp.listen),
            );
        }
        DiscoveryMethod::DnsSrv | DiscoveryMethod::DnsA => {
            let name_ok = d.name.as_deref().is_some_and(|n| {
                !n.is_empty() && n.len() <= 253 && !n.contains(char::is_whitespace)
            });
            check(
                name_ok,
                "discovery.name",
                format!("must be a DNS name for method {method:?}, got {:?}", d.name),
            );
        }
    }
    check(
        d.port > 0,
        "discovery.port",
        "must be a port number between 1 and 65535".into(),
    );
    // Field values as literals, not regular expressions: the automaton of a pattern such as
    // `[{f=.*a................}]` doubles with each dot (here 45 s, 400 MB; found by fuzzing).
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_regex(false)
        .parse(&config.log.level);
    check(
        filter.is_ok(),
        "log.level",
        format!(
            "must be a level (error, warn, info, debug, trace) or a filter like \
             \"info,shoal_control_plane=debug\", got {:?}",
            config.log.level
        ),
    );
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    const PSK_HEX: &str = "0101010101010101010101010101010101010101010101010101010101010101";

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn base_env() -> BTreeMap<String, String> {
        env(&[
            (
                "SHOAL_DATABASE_URL",
                "postgres://shoal:pw@127.0.0.1:5432/shoal",
            ),
            ("SHOAL_CLUSTER_PSK", PSK_HEX),
        ])
    }

    fn load(text: &str, env: &BTreeMap<String, String>) -> Result<NodeConfig, ConfigError> {
        load_from_str(text, Path::new("shoal.toml"), env)
    }

    #[test]
    fn defaults_are_valid_with_secrets_from_env() {
        let c = load("", &base_env()).unwrap();
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.control_plane.poll_interval, Duration::from_secs(5));
        assert_eq!(c.cluster.keys()[0].expose(), &[1u8; 32]);
        assert_eq!(
            c.control_plane.database_url().expose(),
            "postgres://shoal:pw@127.0.0.1:5432/shoal"
        );
        assert!(
            !format!("{c:?}").contains("pw@"),
            "secret leaked into Debug"
        );
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let text = "node_name = \"a\"\n[http]\nlisten = 8080\n";
        let err = load(text, &base_env()).unwrap_err();
        let ConfigError::Syntax { line, message, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(*line, 3, "{err}");
        assert!(message.contains("invalid"), "{err}");
        assert!(err.to_string().starts_with("shoal.toml:3:"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected_with_the_allowed_ones() {
        let err = load("[http]\nlisen = \"127.0.0.1:1\"\n", &base_env()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unknown field `lisen`"), "{text}");
        assert!(text.contains("listen"), "{text}");
        assert!(text.starts_with("shoal.toml:2:"), "{text}");
    }

    #[test]
    fn inline_secret_gets_a_hint() {
        let err = load(
            "[control_plane]\ndatabase_url = \"postgres://x\"\n",
            &base_env(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("SHOAL_DATABASE_URL"), "{err}");
    }

    #[test]
    fn malformed_toml_is_a_syntax_error_with_position() {
        let err = load("[http\nlisten = 1", &base_env()).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { line: 1, .. }), "{err}");
    }

    #[test]
    fn missing_secrets_are_each_reported() {
        let err = load("", &BTreeMap::new()).unwrap_err();
        let keys: Vec<_> = err.issues().iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            ["control_plane.database_url_file", "cluster.psk_file"],
            "{err}"
        );
        assert!(err.to_string().contains("SHOAL_CLUSTER_PSK"), "{err}");
    }

    #[test]
    fn psk_file_of_wrong_length_names_the_key_file_and_line() {
        let mut psk = tempfile::NamedTempFile::new().unwrap();
        writeln!(psk, "{}", "ab".repeat(20)).unwrap();
        let text = format!(
            "node_name = \"n1\"\n\n[cluster]\npsk_file = \"{}\"\n",
            psk.path().display()
        );
        let env = env(&[("SHOAL_DATABASE_URL", "postgres://a@b/c")]);
        let err = load(&text, &env).unwrap_err();
        let issue = &err.issues()[0];
        assert_eq!(issue.key, "cluster.psk_file");
        assert_eq!(
            issue.origin,
            Origin::File {
                path: "shoal.toml".into(),
                line: 4
            }
        );
        assert!(issue.message.contains("20 bytes"), "{err}");
    }

    #[test]
    fn unreadable_secret_file_is_reported() {
        let text = "[control_plane]\ndatabase_url_file = \"/nonexistent/db-url\"\n";
        let mut e = base_env();
        e.remove("SHOAL_DATABASE_URL");
        let err = load(text, &e).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("shoal.toml:2: `control_plane.database_url_file` cannot read"),
            "{err}"
        );
    }

    #[test]
    fn env_overrides_win_and_bad_env_values_name_the_variable() {
        let mut e = base_env();
        e.insert("SHOAL_HTTP_LISTEN".into(), "127.0.0.9:9000".into());
        e.insert("SHOAL_PROXY_ADDRESS".into(), "127.0.0.10".into());
        let c = load("[http]\nlisten = \"127.0.0.1:1\"\n", &e).unwrap();
        assert_eq!(c.http.listen.to_string(), "127.0.0.9:9000");
        assert_eq!(c.proxy.address.to_string(), "127.0.0.10");
        e.insert("SHOAL_PROXY_ADDRESS".into(), "10.0.0.1:80".into());
        let err = load("", &e).unwrap_err();
        assert!(err.to_string().contains("SHOAL_PROXY_ADDRESS"), "{err}");
        assert!(err.to_string().contains("must be an IP address"), "{err}");
        e.remove("SHOAL_PROXY_ADDRESS");

        e.insert("SHOAL_CONTROL_PLANE_POLL_INTERVAL".into(), "soon".into());
        let err = load("", &e).unwrap_err();
        assert_eq!(
            err.issues()[0].origin,
            Origin::Env("SHOAL_CONTROL_PLANE_POLL_INTERVAL".into())
        );
        assert!(
            err.to_string().contains("invalid duration \"soon\""),
            "{err}"
        );
    }

    #[test]
    fn environment_variables_that_are_not_utf8_never_panic() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt as _;
        let raw = |k: &[u8], v: &[u8]| {
            (
                OsString::from_vec(k.to_vec()),
                OsString::from_vec(v.to_vec()),
            )
        };
        let env = shoal_env(
            [
                raw(b"UNRELATED", b"\xff\xfe"),
                raw(b"\xffODD", b"x"),
                raw(b"SHOAL_NODE_NAME", b"n1"),
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(env.len(), 1, "only ours, whatever the others hold");
        assert_eq!(env["SHOAL_NODE_NAME"], "n1");

        let err = shoal_env([raw(b"SHOAL_CLUSTER_PSK", b"secret\xff")].into_iter()).unwrap_err();
        let text = err.to_string();
        assert_eq!(
            text,
            "env SHOAL_CLUSTER_PSK: `SHOAL_CLUSTER_PSK` is not valid UTF-8 (the value is not shown)"
        );
        assert!(!text.contains("secret"));
    }

    #[test]
    fn dns_a_discovery_is_configured_by_env() {
        let mut e = base_env();
        e.insert("SHOAL_DISCOVERY_DNS_A".into(), " shoal-nodes ".into());
        let c = load("", &e).unwrap();
        assert_eq!(c.discovery.method, DiscoveryMethod::DnsA);
        assert_eq!(c.discovery.name.as_deref(), Some("shoal-nodes"));

        e.insert("SHOAL_DISCOVERY_DNS_A".into(), "".into());
        let err = load("", &e).unwrap_err().to_string();
        assert!(err.contains("discovery.name"), "{err}");
    }

    #[test]
    fn ecs_discovery_is_configured_by_file_or_env_and_checked() {
        let mut e = base_env();
        e.insert("SHOAL_DISCOVERY_METHOD".into(), "ecs".into());
        e.insert("SHOAL_DISCOVERY_ECS_CLUSTER".into(), "prod".into());
        let c = load("", &e).unwrap();
        assert_eq!(c.discovery.method, DiscoveryMethod::Ecs);
        assert_eq!(c.discovery.ecs.cluster.as_deref(), Some("prod"));
        assert_eq!(
            c.discovery.ecs.service, None,
            "from the task metadata at run time"
        );

        let text = "[discovery]\nmethod = \"ecs\"\n[discovery.ecs]\nendpoint = \"ecs.local\"\n";
        let err = load(text, &base_env()).unwrap_err().to_string();
        assert!(
            err.contains("`discovery.ecs.endpoint` must be an http:// or https:// URL"),
            "{err}"
        );

        let text = "[discovery]\nmethod = \"static\"\npeers = [\"a:7946\"]\n[discovery.ecs]\ncluster = \"prod\"\n";
        let err = load(text, &base_env()).unwrap_err().to_string();
        assert!(
            err.contains("`discovery.ecs` is not used by discovery method \"static\""),
            "{err}"
        );

        let mut e = base_env();
        e.insert("SHOAL_DISCOVERY_METHOD".into(), "zookeeper".into());
        let err = load("", &e).unwrap_err().to_string();
        assert!(err.contains("SHOAL_DISCOVERY_METHOD"), "{err}");
        assert!(err.contains("got \"zookeeper\""), "{err}");
    }

    #[test]
    fn registry_and_platform_discovery_settings_are_checked_by_key() {
        let refused = |text: &str, key: &str, says: &str| {
            let err = load(text, &base_env()).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
            assert!(err.contains(says), "{key}: {err}");
        };
        refused(
            "[discovery]\nmethod = \"kubernetes\"\n",
            "discovery.kubernetes.label_selector",
            "must select the peer pods",
        );
        refused(
            "[discovery]\nmethod = \"kubernetes\"\n[discovery.kubernetes]\nlabel_selector = \"a=b\"\nnamespace = \"Bad_NS\"\n",
            "discovery.kubernetes.namespace",
            "got \"Bad_NS\"",
        );
        refused(
            "[discovery]\nmethod = \"etcd\"\n",
            "discovery.etcd.endpoints",
            "at least one",
        );
        refused(
            "[discovery]\nmethod = \"etcd\"\ninterval = \"10s\"\n[discovery.etcd]\nendpoints = [\"http://e:2379\"]\nttl = \"15s\"\n",
            "discovery.etcd.ttl",
            "at least twice discovery.interval (10s)",
        );
        refused(
            "[discovery]\nmethod = \"etcd\"\n[discovery.etcd]\nendpoints = [\"https://e:2379\"]\n",
            "discovery.etcd.endpoints",
            "TLS to etcd is not supported yet",
        );
        refused(
            "[discovery]\nmethod = \"consul\"\n[discovery.consul]\nservice = \"no spaces\"\n",
            "discovery.consul.service",
            "got \"no spaces\"",
        );
        refused(
            "[discovery]\nmethod = \"udp\"\n[discovery.udp]\nbroadcast = [\"[ff02::1]:7947\"]\n",
            "discovery.udp.broadcast",
            "IPv4 broadcast",
        );
        refused(
            "[discovery]\nmethod = \"static\"\npeers = [\"a:1\"]\n[discovery.etcd]\nendpoints = [\"http://e:2379\"]\n",
            "discovery.etcd",
            "is not used by discovery method \"static\"",
        );
        refused(
            "[telemetry]\notlp_endpoint = \"collector:4318\"\n",
            "telemetry.otlp_endpoint",
            "must be an http:// or https:// URL",
        );
        refused(
            "[telemetry]\ntrace_sample_ratio = 1.5\n",
            "telemetry.trace_sample_ratio",
            "must be from 0 to 1, got 1.5",
        );
        let err = load("[telemetry]\notlp_protocol = \"thrift\"\n", &base_env())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("shoal.toml:2") && err.contains("`thrift`"),
            "{err}"
        );
        refused(
            "[telemetry]\notlp_interval = \"10ms\"\n",
            "telemetry.otlp_interval",
            "must be between",
        );
        refused(
            "[http]\nsession_ttl = \"10s\"\n",
            "http.session_ttl",
            "must be between",
        );
        let err = load("[http]\ncookie_secure = \"sometimes\"\n", &base_env())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("shoal.toml:2") && err.contains("`sometimes`") && err.contains("`always`"),
            "{err}"
        );
        let mut e = base_env();
        e.insert("SHOAL_HTTP_COOKIE_SECURE".into(), "maybe".into());
        let err = load("", &e).unwrap_err().to_string();
        assert!(
            err.contains("SHOAL_HTTP_COOKIE_SECURE") && err.contains("\"maybe\""),
            "{err}"
        );
        let mut e = base_env();
        e.insert("SHOAL_DISCOVERY_METHOD".into(), "kubernetes".into());
        e.insert(
            "SHOAL_DISCOVERY_KUBERNETES_LABEL_SELECTOR".into(),
            "app=shoal".into(),
        );
        let c = load("", &e).unwrap();
        assert_eq!(c.discovery.method, DiscoveryMethod::Kubernetes);
        assert_eq!(
            c.discovery.kubernetes.label_selector.as_deref(),
            Some("app=shoal")
        );
        let mut e = base_env();
        e.insert("SHOAL_DISCOVERY_METHOD".into(), "etcd".into());
        e.insert(
            "SHOAL_DISCOVERY_ETCD_ENDPOINTS".into(),
            "http://a:2379, http://b:2379".into(),
        );
        let c = load("", &e).unwrap();
        assert_eq!(
            c.discovery.etcd.endpoints,
            ["http://a:2379", "http://b:2379"]
        );
    }

    #[test]
    fn otlp_headers_come_from_the_environment_or_a_file_and_errors_never_echo_values() {
        let mut e = base_env();
        e.insert(
            "SHOAL_TELEMETRY_OTLP_HEADERS".into(),
            "Authorization=Bearer%20s3cret, x-tenant = blue".into(),
        );
        e.insert("SHOAL_TELEMETRY_OTLP_PROTOCOL".into(), "grpc".into());
        let c = load("", &e).unwrap();
        assert_eq!(c.telemetry.otlp_protocol, crate::OtlpProtocol::Grpc);
        let h: Vec<(&str, &str)> = c
            .telemetry
            .otlp_headers()
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose().as_str()))
            .collect();
        assert_eq!(
            h,
            [("authorization", "Bearer s3cret"), ("x-tenant", "blue")]
        );
        assert!(!format!("{:?}", c.telemetry).contains("s3cret"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("otlp-headers");
        std::fs::write(&file, "# collector key\napi-key=k1\nbroken-pair-s3cret\n").unwrap();
        let text = format!(
            "[telemetry]\notlp_headers_file = {:?}\n",
            file.display().to_string()
        );
        let err = load(&text, &base_env()).unwrap_err().to_string();
        assert!(
            err.contains("telemetry.otlp_headers_file")
                && err.contains("header 2 is not key=value"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        std::fs::write(&file, "api-key=k1\n").unwrap();
        let c = load(&text, &base_env()).unwrap();
        assert_eq!(c.telemetry.otlp_headers()[0].1.expose(), "k1");
        let err = load("[telemetry]\notlp_headers = \"a=b\"\n", &base_env())
            .unwrap_err()
            .to_string();
        assert!(err.contains("otlp_headers"), "{err}");
    }

    #[test]
    fn upstream_ca_file_must_hold_a_pem_certificate() {
        let dir = std::env::temp_dir().join(format!("shoal-ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (good, bad) = (dir.join("ca.pem"), dir.join("not-a-cert.txt"));
        std::fs::write(
            &good,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(&bad, "hello\n").unwrap();
        let with = |path: &std::path::Path| {
            load(
                &format!("[proxy]\nupstream_ca_file = \"{}\"\n", path.display()),
                &base_env(),
            )
        };
        let c = with(&good).unwrap();
        assert!(
            c.proxy
                .upstream_ca_pem()
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        let err = with(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with("shoal.toml:2: `proxy.upstream_ca_file`"),
            "{err}"
        );
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let err = with(&dir.join("missing.pem")).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn out_of_range_values_name_key_line_and_value() {
        let text = "[control_plane]\npoll_interval = \"10ms\"\nreconnect_min = \"40s\"\nreconnect_max = \"20s\"\n";
        let err = load(text, &base_env()).unwrap_err();
        let lines: Vec<String> = err.issues().iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("shoal.toml:2: `control_plane.poll_interval` must be between"),
            "{lines:?}"
        );
        assert!(lines[0].ends_with("got 10ms"), "{lines:?}");
        assert!(lines[1].contains("`control_plane.reconnect_min` must not exceed"));
    }

    #[test]
    fn a_pool_too_small_for_the_listener_and_a_migration_is_rejected() {
        let text = "[control_plane]\nmax_connections = 2\n";
        let err = load(text, &base_env()).unwrap_err();
        let lines: Vec<String> = err.issues().iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            ["shoal.toml:2: `control_plane.max_connections` must be between 3 and 100, got 2"]
        );
        let text = "[control_plane]\nmax_connections = 3\n";
        assert_eq!(
            load(text, &base_env())
                .unwrap()
                .control_plane
                .max_connections,
            3
        );
    }

    #[test]
    fn bad_database_url_and_log_level_are_rejected() {
        let mut e = base_env();
        e.insert("SHOAL_DATABASE_URL".into(), "mysql://x/y".into());
        e.insert("SHOAL_LOG_LEVEL".into(), "info,[=".into());
        let err = load("", &e).unwrap_err();
        let keys: Vec<_> = err.issues().iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            ["control_plane.database_url_file", "log.level"],
            "{err}"
        );
        assert!(!err.to_string().contains("mysql://x"), "URL echoed: {err}");
    }

    /// Found by fuzzing (fuzz/fuzz_targets/config.rs): a span field value compiled as a regular
    /// expression made validation build an exponential automaton (45 s and 400 MB for this one).
    #[test]
    fn log_level_field_values_are_not_compiled_as_regular_expressions() {
        let mut e = base_env();
        let level = format!("[{{f=.*a{}}}]", ".".repeat(16));
        e.insert("SHOAL_LOG_LEVEL".into(), level.clone());
        let started = std::time::Instant::now();
        let c = load("", &e).unwrap();
        assert_eq!(c.log.level, level);
        // Not a speed goal: the compiled pattern took 45 s, the literal takes microseconds,
        // so the bound only catches the blow-up coming back.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn state_max_keys_is_bounded_and_named() {
        assert_eq!(load("", &base_env()).unwrap().state.max_keys, 1_000_000);
        let err = load("[state]\nmax_keys = 10\n", &base_env()).unwrap_err();
        assert!(
            err.to_string().contains("state.max_keys") && err.to_string().contains("10"),
            "{err}"
        );
    }

    #[test]
    fn audit_fsync_is_a_policy_and_its_interval_is_bounded() {
        let c = load(
            "[audit]\nfsync = \"batch\"\nfsync_interval = \"250ms\"\n",
            &base_env(),
        )
        .unwrap();
        assert_eq!(c.audit.fsync, crate::AuditFsync::Batch);
        assert_eq!(c.audit.fsync_interval, Duration::from_millis(250));
        assert_eq!(
            load("", &base_env()).unwrap().audit.fsync,
            crate::AuditFsync::Interval
        );

        let err = load("[audit]\nfsync = \"sometimes\"\n", &base_env()).unwrap_err();
        let text = err.to_string();
        // Where (the `fsync` line), what was given, and what is accepted.
        assert!(
            text.contains("shoal.toml:2:") && text.contains("sometimes") && text.contains("batch"),
            "{text}"
        );
        let err = load("[audit]\nfsync_interval = \"2m\"\n", &base_env()).unwrap_err();
        assert!(err.to_string().contains("audit.fsync_interval"), "{err}");
    }

    #[test]
    fn discovery_keys_are_checked_against_the_method() {
        let text = "[discovery]\nmethod = \"static\"\npeers = [\"127.0.0.2:7946\", \"node-2.shoal:7946\"]\nallowed_address_space = [\"127.0.0.0/8\"]\n";
        let c = load(text, &base_env()).unwrap();
        assert_eq!(c.discovery.method, DiscoveryMethod::Static);
        assert_eq!(c.discovery.peers.len(), 2);
        assert!(
            c.discovery.allowed_address_space[0]
                .contains(&"127.0.0.9".parse::<std::net::IpAddr>().unwrap())
        );

        let err = load("[discovery]\nmethod = \"carrier-pigeon\"\n", &base_env()).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");

        let err = load(
            "[discovery]\nmethod = \"dns-srv\"\npeers = [\"a:1\"]\n",
            &base_env(),
        )
        .unwrap_err();
        let lines: Vec<String> = err.issues().iter().map(ToString::to_string).collect();
        assert!(
            lines[0].contains("`discovery.peers` is not used by discovery method \"dns-srv\""),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("`discovery.name` must be a DNS name"),
            "{lines:?}"
        );

        let err = load(
            "[discovery]\nmethod = \"static\"\npeers = [\"no-port\"]\n",
            &base_env(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("entries must be host:port, got \"no-port\""),
            "{err}"
        );
    }

    #[test]
    fn cidr_that_does_not_parse_names_the_key() {
        let err = load(
            "[discovery]\nallowed_address_space = [\"10.0.0.0/33\"]\n",
            &base_env(),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("shoal.toml:2:"), "{err}");

        let mut e = base_env();
        e.insert(
            "SHOAL_DISCOVERY_ALLOWED_ADDRESS_SPACE".into(),
            "10.0.0.0/8, nope".into(),
        );
        let err = load("", &e).unwrap_err();
        assert_eq!(
            err.issues()[0].origin,
            Origin::Env("SHOAL_DISCOVERY_ALLOWED_ADDRESS_SPACE".into())
        );
        assert!(
            err.to_string().contains("\"nope\" is not a CIDR block"),
            "{err}"
        );
    }
}
