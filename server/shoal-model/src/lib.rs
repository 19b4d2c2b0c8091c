//! What the data plane and the admin surface share with the control plane, without the
//! database: `shoal-proxy` and `shoal-console` depend on this crate, not on
//! `shoal-control-plane`, so neither compiles sqlx and each sees only the contract it uses.
//!
//! - `config`: one config revision ([`ConfigSnapshot`]: resources, policies, users) and the
//!   rules every row must satisfy, checked before a write and again when a node loads it.
//! - `cors`: a resource's CORS rules ([`CorsRule`], S3's shape) and their checks.
//! - `handle`: the live config as readers follow it ([`ConfigHandle`]: the revision in force,
//!   the control plane's status, waiting for a revision).
//! - `sealed`: the sealed form of S3 secrets, sealed by the control plane, opened by the data
//!   plane.
//! - `audit`: audit lines and the [`AuditSink`] they are queued in.
//! - `admin`: the [`AdminStore`] the console calls and the records it returns.
//! - `error`: [`ModelError`], the few outcomes a caller acts on.

#![forbid(unsafe_code)]

mod admin;
mod audit;
mod config;
mod cors;
mod error;
mod handle;
mod sealed;

pub use admin::{
    AdminIdentity, AdminStore, AdminSummary, AuditPage, AuditQuery, AuditRecord, CredentialSummary,
    DocumentRecord, NewCredential, RevisionRecord, Session, UserSummary,
};
pub use audit::{AuditBacklog, AuditDetail, AuditEntry, AuditQueue, AuditSink};
pub use config::{
    ANONYMOUS, Addressing, AnonymousAccess, ConfigSnapshot, Credential, DataDocument, Enforcement,
    HttpSpec, MAX_ATTRIBUTES_BYTES, MAX_DOCUMENT_BYTES, MAX_GROUPS, OnError, OnUnreachable, Policy,
    Resource, ResourceAttributes, ResourceSpec, S3Spec, UpstreamCredentials, User, UserKind,
    UserProfile, check_admin_name, check_description, check_user_name, package_root,
};
pub use cors::{CORS_METHODS, CorsRule, MAX_CORS_MAX_AGE, MAX_CORS_RULES};
pub use error::ModelError;
pub use handle::{ConfigHandle, ConfigSource, ControlPlaneStatus, Rejection, Trigger};
pub use sealed::{open as open_sealed_secret, seal as seal_secret};
