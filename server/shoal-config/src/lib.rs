//! Bootstrap configuration: what a node needs before it can reach the control plane.
//!
//! Everything else (resources, policies, users) lives in PostgreSQL. This crate reads a TOML
//! file, applies `SHOAL_*` environment overrides, reads secrets from files or env only, and
//! validates the result. Every error names the key, where its value came from (file:line or
//! env var) and what is allowed, so an operator can fix a config without reading code.
//!
//! - `model`: the typed, documented config structs and their defaults.
//! - `load`: file + env loading, source tracking, validation.
//! - `secret`: a wrapper that keeps secret values out of `Debug` and logs.

#![forbid(unsafe_code)]

mod load;
mod model;
mod secret;

pub use load::{ConfigError, ConfigIssue, ENV_OVERRIDES, Origin, load, load_from_str};
pub use model::{
    AuditConfig, AuditFsync, ClusterConfig, ConsulDiscovery, ControlPlaneConfig, CookieSecure,
    DiscoveryConfig, DiscoveryMethod, EcsDiscovery, EtcdDiscovery, HttpConfig, KubernetesDiscovery,
    LogConfig, LogFormat, NodeConfig, OtlpProtocol, ProxyConfig, StateConfig, TelemetryConfig,
    UdpDiscovery, WindowConfig,
};
pub use secret::{Secret, SecretKey};
