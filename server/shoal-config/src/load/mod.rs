#[cfg(test)]
mod cluster_tests;
mod clusters;
mod env;
mod secrets;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

pub use clusters::CLUSTER_ENV_PREFIX;
pub(crate) use clusters::psk_var;
pub use env::ENV_OVERRIDES;
pub use secrets::SECRET_ENV;

use crate::error::ConfigError;
use crate::model::NodeConfig;
use crate::origin::{Origin, Origins, line_col};
use crate::validate::validate;

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
    let env = env::shoal_env(std::env::vars_os())?;
    load_from_str(&text, path.unwrap_or(Path::new("<no file>")), &env)
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
    let mut env_keys: BTreeMap<String, String> = env::apply(&mut config, env, &mut issues)
        .into_iter()
        .map(|(key, var)| (key.to_string(), var.to_string()))
        .collect();
    env_keys.extend(clusters::apply_env(&mut config, env, &mut issues));
    clusters::normalize(&mut config);
    let origin_of = |key: &str| match env_keys.get(key) {
        Some(var) => Origin::Env(var.clone()),
        None => origins.of(key),
    };
    // The keys set under a section, from the file or the environment.
    let set_under = |section: &str| {
        let under = |key: &&String| {
            key.strip_prefix(section)
                .is_some_and(|r| r.starts_with('.'))
        };
        let mut keys: Vec<String> = origins
            .keys()
            .chain(env_keys.keys())
            .filter(under)
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        keys
    };
    secrets::resolve_secrets(&mut config, env, &origin_of, &mut issues);
    validate(&config, &origin_of, &set_under, &mut issues);
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
            secrets::SECRET_ENV.map(|(var, _)| var).join(", ")
        )
    } else {
        message.trim_end().to_string()
    }
}
