use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::ConfigIssue;
use crate::model::NodeConfig;
use crate::origin::Origin;
use crate::secret::{Secret, SecretKey};

/// Secret values come only from these variables or from the `*_file` keys: (variable, the key
/// of its file).
pub const SECRET_ENV: [(&str, &str); 4] = [
    ("SHOAL_DATABASE_URL", "control_plane.database_url_file"),
    ("SHOAL_CLUSTER_PSK", "cluster.psk_file"),
    ("SHOAL_SECRETS_KEY", "control_plane.secrets_key_file"),
    (
        "SHOAL_TELEMETRY_OTLP_HEADERS",
        "telemetry.otlp_headers_file",
    ),
];

fn read_secret_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

pub(super) fn resolve_secrets(
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
    for c in &mut config.clusters {
        let var = super::psk_var(c);
        let key = format!("{}.psk_file", c.key_path());
        c.keys = read_keys(&var, &c.psk_file, &key, &SecretKey::parse_list).unwrap_or_default();
        c.keys_from_env = env.contains_key(&var);
    }
    let secrets_file = config.control_plane.secrets_key_file.clone();
    let secrets = read_keys(
        "SHOAL_SECRETS_KEY",
        &secrets_file,
        "control_plane.secrets_key_file",
        &|t| SecretKey::parse(t).map(|k| vec![k]),
    );
    config.control_plane.secrets_key = secrets.and_then(|mut k| k.pop());
    let listed = config.clusters[0].key_path() != "cluster";
    if listed && env.contains_key("SHOAL_CLUSTER_PSK") {
        issue(
            "cluster.psk_file",
            Origin::Env("SHOAL_CLUSTER_PSK".into()),
            "is the single cluster's key: with [[clusters]] each cluster has keys of its own \
             (clusters[N].psk_file or SHOAL_CLUSTERS_<NAME>_PSK)"
                .into(),
        );
    }
    for c in config.clusters.iter().filter(|c| !c.disabled) {
        let var = super::psk_var(c);
        if !env.contains_key(&var) && c.psk_file.is_none() {
            let what = if listed {
                format!(" of cluster {:?}", c.name)
            } else {
                String::new()
            };
            issue(
                &format!("{}.psk_file", c.key_path()),
                Origin::Default,
                format!(
                    "is missing{what}: gossip is always encrypted, so set it to a file holding a \
                     32-byte key (64 hex characters or base64), or set {var}"
                ),
            );
        }
    }
    if !listed {
        config.cluster.keys = config.clusters[0].keys.clone();
        config.cluster.keys_from_env = config.clusters[0].keys_from_env;
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
