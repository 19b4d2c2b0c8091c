//! The control plane: PostgreSQL as the source of truth for node configuration.
//!
//! - `db`: connection pool and migrations (once across N nodes, behind an advisory lock).
//! - `model`: the node-visible config ([`ConfigSnapshot`]) and its validation rules.
//! - `load`: reading one consistent revision out of the database.
//! - `store`: validated writes for the admin API and CLI, one transaction each.
//! - `admin`: admin accounts (argon2id) and database-backed sessions.
//! - `watcher`: follows changes (LISTEN/NOTIFY + revision poll), swaps configs atomically,
//!   reconnects with backoff, falls back to the local snapshot.
//! - `snapshot`: the last good config on disk, written atomically.
//! - `crypto`: hashing and sealing of credential secrets.

#![forbid(unsafe_code)]

mod admin;
mod audit;
mod crypto;
mod db;
mod error;
mod load;
mod model;
mod snapshot;
mod store;
#[cfg(feature = "testsuite")]
pub mod testsuite;
mod watcher;

pub use admin::{AdminIdentity, AdminSummary, MIN_PASSWORD_LEN, Session};
pub use audit::{AuditEntry, AuditLog, AuditOptions, AuditRefused, AuditStatus, Fsync};
pub use crypto::open as open_sealed_secret;
pub use db::{describe_url, known_migrations, migrate, pool};
pub use error::ControlPlaneError;
pub use load::{head_revision, load_config};
pub use model::{
    Addressing, ConfigSnapshot, Credential, Enforcement, HttpSpec, OnError, OnUnreachable, Policy,
    Resource, ResourceSpec, S3Spec, UpstreamCredentials, User,
};
pub use store::{
    AuditPage, AuditQuery, AuditRecord, CredentialSummary, NewCredential, RevisionRecord, Store,
    UserSummary,
};
pub use watcher::{
    ConfigHandle, ConfigSource, ControlPlaneStatus, Rejection, Trigger, WatcherOptions, spawn,
};
