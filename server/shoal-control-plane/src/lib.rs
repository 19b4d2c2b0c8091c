//! The control plane: PostgreSQL as the source of truth for node configuration. The config
//! model, its validation and the contracts the data plane and console use live in
//! `shoal-model`; this crate implements them on the database.
//!
//! - `db`: connection pool and migrations (once across N nodes, behind an advisory lock).
//! - `load`: reading one consistent revision out of the database.
//! - `store`: validated writes for the admin API and CLI, one transaction each.
//! - `admin`: admin accounts (argon2id) and database-backed sessions.
//! - `admin_store`: the store as the console's `AdminStore`.
//! - `audit`: the decision audit log (on-disk journal, shipped to PostgreSQL), an `AuditSink`.
//! - `watcher`: follows changes (LISTEN/NOTIFY + revision poll), swaps configs atomically,
//!   reconnects with backoff, falls back to the local snapshot.
//! - `snapshot`: the last good config on disk, written atomically.
//! - `crypto`: hashing of tokens and credential secrets.
//! - `instruments`: connection, revision and audit journal figures as metrics.
//! - `error`: `ControlPlaneError`, by what the caller does next.
//! - `testsuite` (feature): a throwaway PostgreSQL for the tests and benchmarks.

#![forbid(unsafe_code)]

mod admin;
mod admin_store;
mod audit;
mod crypto;
mod db;
mod error;
mod instruments;
mod load;
mod snapshot;
mod store;
#[cfg(feature = "testsuite")]
pub mod testsuite;
mod watcher;

pub use admin::MIN_PASSWORD_LEN;
pub use audit::{AuditLog, AuditOptions, AuditStatus, Fsync, SET_ASIDE as AUDIT_SET_ASIDE};
pub use db::{describe_url, known_migrations, migrate, pool};
pub use error::ControlPlaneError;
pub use instruments::register_metrics;
pub use load::{head_revision, load_config};
pub use store::Store;
pub use watcher::{WatcherOptions, spawn};
