//! What the admin surface reads and writes: the [`AdminStore`] it calls, and the records that
//! come back. The control plane's `Store` implements it on PostgreSQL; the console sees only
//! this contract, so it compiles without the database crate.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{ModelError, Policy, Resource, ResourceSpec};

/// Sessions, config writes and the audit log, as the admin API and console use them. Every
/// write validates before storing and commits with its audit line; `actor` is recorded on
/// that line. Writes that change config return the revision they produced.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Checks a username and password and opens a session; `None` for bad credentials (the
    /// caller must not say which part was wrong). Both outcomes are audited.
    async fn login(
        &self,
        username: &str,
        password: &str,
        ttl: Duration,
    ) -> Result<Option<Session>, ModelError>;

    /// The admin a session token belongs to, if the session is live and the admin enabled.
    async fn session(&self, token: &str) -> Result<Option<AdminIdentity>, ModelError>;

    /// Ends the session; audited when the session existed.
    async fn logout(&self, token: &str) -> Result<(), ModelError>;

    /// Records an admin action that did not change config (a refused login).
    async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        outcome: &str,
        detail: serde_json::Value,
    ) -> Result<(), ModelError>;

    /// The newest config revisions, at most `limit`.
    async fn list_revisions(&self, limit: i64) -> Result<Vec<RevisionRecord>, ModelError>;

    /// One page of audit lines, newest first.
    async fn list_audit(&self, query: &AuditQuery) -> Result<AuditPage, ModelError>;

    async fn list_policies(&self) -> Result<Vec<Policy>, ModelError>;

    async fn put_policy(&self, actor: &str, policy: &Policy) -> Result<i64, ModelError>;

    /// Enables or disables a policy without touching its text.
    async fn set_policy_enabled(
        &self,
        actor: &str,
        name: &str,
        enabled: bool,
    ) -> Result<i64, ModelError>;

    async fn delete_policy(&self, actor: &str, name: &str) -> Result<i64, ModelError>;

    async fn list_documents(&self) -> Result<Vec<DocumentRecord>, ModelError>;

    async fn put_document(
        &self,
        actor: &str,
        document: &crate::DataDocument,
    ) -> Result<i64, ModelError>;

    async fn delete_document(&self, actor: &str, name: &str) -> Result<i64, ModelError>;

    async fn list_resources(&self) -> Result<Vec<Resource>, ModelError>;

    /// The typed spec of a resource from its `kind` and the kind's fields as received; a plain
    /// upstream secret in them is sealed, so only the sealed form goes on.
    fn resource_spec(
        &self,
        kind: &str,
        spec: serde_json::Value,
    ) -> Result<ResourceSpec, ModelError>;

    async fn put_resource(&self, actor: &str, resource: &Resource) -> Result<i64, ModelError>;

    async fn delete_resource(&self, actor: &str, name: &str) -> Result<i64, ModelError>;

    async fn list_users(&self) -> Result<Vec<UserSummary>, ModelError>;

    async fn put_user(
        &self,
        actor: &str,
        name: &str,
        enabled: bool,
        description: &str,
        profile: &crate::UserProfile,
    ) -> Result<i64, ModelError>;

    async fn set_user_enabled(
        &self,
        actor: &str,
        name: &str,
        enabled: bool,
    ) -> Result<i64, ModelError>;

    async fn delete_user(&self, actor: &str, name: &str) -> Result<i64, ModelError>;

    /// Issues an API key or an S3 key pair (`kind`: `api_key` or `s3`) for `user`; the secret
    /// is in the result only.
    async fn create_credential(
        &self,
        actor: &str,
        user: &str,
        kind: &str,
    ) -> Result<NewCredential, ModelError>;

    /// Replaces a credential by a new one of the same kind, in one revision.
    async fn rotate_credential(
        &self,
        actor: &str,
        key_id: &str,
    ) -> Result<NewCredential, ModelError>;

    async fn delete_credential(&self, actor: &str, key_id: &str) -> Result<i64, ModelError>;

    async fn list_admins(&self) -> Result<Vec<AdminSummary>, ModelError>;

    async fn create_admin(
        &self,
        actor: &str,
        username: &str,
        password: &str,
    ) -> Result<(), ModelError>;

    /// Disables (ending every session) or re-enables an admin; the last enabled admin cannot
    /// be disabled.
    async fn set_admin_disabled(
        &self,
        actor: &str,
        username: &str,
        disabled: bool,
    ) -> Result<(), ModelError>;
}

/// A logged-in admin, as the API sees it.
#[derive(Debug, Clone, Serialize)]
pub struct AdminIdentity {
    pub username: String,
}

/// An admin account as listings show it (never the hash).
#[derive(Debug, Clone, Serialize)]
pub struct AdminSummary {
    pub username: String,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    /// Live sessions.
    pub sessions: i64,
}

/// Returned by a successful login; the token is shown once and stored only as a hash.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub token: String,
    pub username: String,
    pub expires_at: DateTime<Utc>,
}

/// A user as the admin API lists it: credentials without any secret material.
#[derive(Debug, Clone, Serialize)]
pub struct UserSummary {
    pub name: String,
    pub enabled: bool,
    pub description: String,
    pub profile: crate::UserProfile,
    pub credentials: Vec<CredentialSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CredentialSummary {
    pub kind: String,
    pub key_id: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A data document as listings show it: with the time of its last change, which a config
/// snapshot leaves out (nodes do not need it, operators do).
#[derive(Debug, Clone, Serialize)]
pub struct DocumentRecord {
    #[serde(flatten)]
    pub document: crate::DataDocument,
    pub updated_at: DateTime<Utc>,
}

/// Returned once at creation; only a hash (API key) or a sealed copy (S3) is stored.
#[derive(Debug, Clone, Serialize)]
pub struct NewCredential {
    pub kind: &'static str,
    pub key_id: String,
    pub secret: String,
    pub revision: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RevisionRecord {
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub actor: String,
    pub summary: String,
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    /// Matched against the target and the detail.
    pub text: Option<String>,
    /// Only requests a shadow policy would have blocked.
    pub would_block: bool,
    pub before_id: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    pub entries: Vec<AuditRecord>,
    /// Pass as `before_id` for the next (older) page; `None` on the last page.
    pub next_before_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub node: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: serde_json::Value,
}
