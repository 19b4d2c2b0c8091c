//! Bootstrap configuration: what a node needs before it can reach the control plane.
//!
//! Everything else (resources, policies, users) lives in PostgreSQL. This crate reads a TOML
//! file, applies `SHOAL_*` environment overrides, reads secrets from files or env only, and
//! validates the result. Every error names the key, where its value came from (file:line or
//! env var) and what is allowed, so an operator can fix a config without reading code.
//!
//! - `model`: the typed, documented config structs and their defaults.
//! - `load`: the pipeline (TOML file, then `env` overrides, then `secrets`, then validation);
//!   `load::env` is the table of `SHOAL_*` overrides, one row per variable, and
//!   `load::secrets` reads secret values from their files or variables.
//! - `origin`: where each key's value came from (`file:line`, `env VAR` or default).
//! - `validate`: the value checks, one function per config section.
//! - `error`: `ConfigError` and the `ConfigIssue`s it lists.
//! - `secret`: a wrapper that keeps secret values out of `Debug` and logs.
//! - `fuzzing`: the loader's fuzz entry point, and the replay of every fuzz target's inputs
//!   (and edits of them) that the crates' tests run.

#![forbid(unsafe_code)]

mod error;
#[cfg(any(fuzzing, test, feature = "testsuite"))]
pub mod fuzzing;
mod load;
mod model;
mod origin;
mod secret;
mod validate;

pub use error::{ConfigError, ConfigIssue};
pub use load::{CLUSTER_ENV_PREFIX, ENV_OVERRIDES, SECRET_ENV, load, load_from_str};
pub use model::{
    AuditConfig, AuditFsync, ClusterConfig, ConsulDiscovery, ControlPlaneConfig, CookieSecure,
    DiscoveryConfig, DiscoveryMethod, EcsDiscovery, EtcdDiscovery, HttpConfig, KubernetesDiscovery,
    LogConfig, LogFormat, NodeConfig, OtlpProtocol, ProxyConfig, Service, ServicesConfig,
    StateConfig, TelemetryConfig, UdpDiscovery, WindowConfig,
};
pub use origin::Origin;
pub use secret::{Secret, SecretKey};
