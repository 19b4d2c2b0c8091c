//! Validated writes to the control plane, shared by the admin API and the CLI.
//!
//! Each write validates first, then stores in one transaction; the schema's triggers bump the
//! revision once for that transaction and notify every node. The same transaction writes the
//! audit line, so a change and its audit record are stored together or not at all.

use chrono::{DateTime, Utc};
use shoal_config::SecretKey;
use shoal_model::{
    AuditPage, AuditQuery, AuditRecord, CredentialSummary, DataDocument, DocumentRecord,
    NewCredential, Policy, Resource, ResourceSpec, RevisionRecord, UserProfile, UserSummary,
    check_description, check_user_name, package_root, seal_secret,
};
use sqlx::{PgPool, Postgres, Transaction};

use crate::load::{PolicyRow, ResourceRow, policy_columns, resource_columns};

use crate::ControlPlaneError;
use crate::crypto;

/// Handle for reads and validated writes; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    secrets_key: Option<SecretKey>,
    node: String,
}

impl Store {
    /// `node` is recorded on every audit line this store writes.
    pub fn new(pool: PgPool, secrets_key: Option<SecretKey>, node: impl Into<String>) -> Self {
        Self {
            pool,
            secrets_key,
            node: node.into(),
        }
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_change(
        &self,
        actor: &str,
        summary: &str,
    ) -> Result<Transaction<'static, Postgres>, ControlPlaneError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "SELECT set_config('shoal.actor', $1, true), set_config('shoal.summary', $2, true)",
        )
        .bind(actor)
        .bind(summary)
        .execute(&mut *tx)
        .await?;
        Ok(tx)
    }

    /// Writes the audit line, reads the revision this transaction produced, commits.
    async fn commit_change(
        &self,
        mut tx: Transaction<'static, Postgres>,
        actor: &str,
        action: &str,
        target: &str,
    ) -> Result<i64, ControlPlaneError> {
        let revision: Option<i64> = sqlx::query_scalar(
            "SELECT nullif(current_setting('shoal.revision', true), '')::bigint",
        )
        .fetch_one(&mut *tx)
        .await?;
        let revision = match revision {
            Some(r) => r,
            None => {
                sqlx::query_scalar("SELECT revision FROM config_head")
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        insert_audit(
            &mut tx,
            &self.node,
            actor,
            action,
            target,
            "ok",
            serde_json::json!({ "revision": revision }),
        )
        .await?;
        tx.commit().await?;
        Ok(revision)
    }

    /// Records an admin action that did not change config (login, a rejected write).
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        outcome: &str,
        detail: serde_json::Value,
    ) -> Result<(), ControlPlaneError> {
        let mut tx = self.pool.begin().await?;
        insert_audit(&mut tx, &self.node, actor, action, target, outcome, detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audits a write refused by validation, then returns the refusal.
    async fn refuse(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        error: String,
    ) -> ControlPlaneError {
        let detail = serde_json::json!({ "error": error });
        if let Err(e) = self.audit(actor, action, target, "rejected", detail).await {
            tracing::warn!("could not audit a rejected {action} of {target:?}: {e}");
        }
        ControlPlaneError::Invalid(error)
    }

    /// Deletes one named row in its own change; `NotFound` (and nothing committed) if absent.
    async fn delete_row(
        &self,
        actor: &str,
        what: &str,
        statement: &'static str,
        key: &str,
    ) -> Result<i64, ControlPlaneError> {
        let mut tx = self
            .begin_change(actor, &format!("delete {what} {key}"))
            .await?;
        let deleted = sqlx::query(statement)
            .bind(key)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(ControlPlaneError::NotFound(format!("{what} {key:?}")));
        }
        self.commit_change(tx, actor, &format!("{what}.delete"), key)
            .await
    }

    pub async fn put_policy(&self, actor: &str, policy: &Policy) -> Result<i64, ControlPlaneError> {
        let checked = policy.clone();
        let verdict = tokio::task::spawn_blocking(move || {
            check_description(&format!("policy {:?}", checked.name), &checked.description)
                .and_then(|()| checked.validate())
        })
        .await
        .map_err(|e| ControlPlaneError::Database(format!("policy check failed: {e}")))?;
        if let Err(error) = verdict {
            return Err(self.refuse(actor, "policy.put", &policy.name, error).await);
        }
        if let Some(root) = package_root(&policy.rego) {
            let hidden: Option<String> =
                sqlx::query_scalar("SELECT name FROM data_documents WHERE name = $1")
                    .bind(root)
                    .fetch_optional(&self.pool)
                    .await?;
            if let Some(doc) = hidden {
                let error = format!(
                    "policy {:?}: its package is under data.{root}, which is data document \
                     {doc:?}: rename one",
                    policy.name
                );
                return Err(self.refuse(actor, "policy.put", &policy.name, error).await);
            }
        }
        let mut tx = self
            .begin_change(actor, &format!("put policy {}", policy.name))
            .await?;
        sqlx::query(
            "INSERT INTO policies
                    (name, rego, enforcement, on_error, on_unreachable, shadow, enabled,
                     description)
             VALUES ($1, $2, $3, $6, $7, $8, $4, $5)
             ON CONFLICT (name) DO UPDATE
                SET rego = EXCLUDED.rego, enforcement = EXCLUDED.enforcement,
                    on_error = EXCLUDED.on_error, on_unreachable = EXCLUDED.on_unreachable,
                    shadow = EXCLUDED.shadow, enabled = EXCLUDED.enabled,
                    description = EXCLUDED.description, updated_at = now()",
        )
        .bind(&policy.name)
        .bind(&policy.rego)
        .bind(policy.enforcement.as_str())
        .bind(policy.enabled)
        .bind(&policy.description)
        .bind(policy.on_error.as_str())
        .bind(policy.on_unreachable.as_str())
        .bind(policy.shadow)
        .execute(&mut *tx)
        .await?;
        self.commit_change(tx, actor, "policy.put", &policy.name)
            .await
    }

    /// Enables or disables a policy without touching its text (a console switch must not
    /// overwrite an edit made meanwhile). Setting the state it already has is not an error.
    pub async fn set_policy_enabled(
        &self,
        actor: &str,
        name: &str,
        enabled: bool,
    ) -> Result<i64, ControlPlaneError> {
        self.set_enabled(actor, "policy", "policies", name, enabled)
            .await
    }

    pub async fn set_user_enabled(
        &self,
        actor: &str,
        name: &str,
        enabled: bool,
    ) -> Result<i64, ControlPlaneError> {
        self.set_enabled(actor, "user", "users", name, enabled)
            .await
    }

    async fn set_enabled(
        &self,
        actor: &str,
        what: &str,
        table: &'static str,
        name: &str,
        enabled: bool,
    ) -> Result<i64, ControlPlaneError> {
        let verb = if enabled { "enable" } else { "disable" };
        let mut tx = self
            .begin_change(actor, &format!("{verb} {what} {name}"))
            .await?;
        let statement = match table {
            "policies" => "UPDATE policies SET enabled = $2, updated_at = now() WHERE name = $1",
            _ => "UPDATE users SET enabled = $2, updated_at = now() WHERE name = $1",
        };
        let updated = sqlx::query(statement)
            .bind(name)
            .bind(enabled)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(ControlPlaneError::NotFound(format!("{what} {name:?}")));
        }
        self.commit_change(tx, actor, &format!("{what}.{verb}"), name)
            .await
    }

    pub async fn delete_policy(&self, actor: &str, name: &str) -> Result<i64, ControlPlaneError> {
        self.delete_row(
            actor,
            "policy",
            "DELETE FROM policies WHERE name = $1",
            name,
        )
        .await
    }

    pub async fn list_policies(&self) -> Result<Vec<Policy>, ControlPlaneError> {
        let rows: Vec<PolicyRow> = sqlx::query_as(concat!(
            "SELECT ",
            policy_columns!(),
            " FROM policies ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let name = row.name.clone();
                row.into_policy()
                    .map_err(|e| ControlPlaneError::Invalid(format!("policy {name:?}: {e}")))
            })
            .collect()
    }

    /// Stores a data document policies read as `data.<name>`; refused (and audited) when it
    /// is too large, badly named or would hide a policy's package.
    pub async fn put_document(
        &self,
        actor: &str,
        document: &DataDocument,
    ) -> Result<i64, ControlPlaneError> {
        let mut problem = check_description(
            &format!("data document {:?}", document.name),
            &document.description,
        )
        .and_then(|()| document.validate())
        .err();
        if problem.is_none() {
            let policies = self.list_policies().await?;
            if let Some(p) = policies
                .iter()
                .find(|p| package_root(&p.rego) == Some(document.name.as_str()))
            {
                problem = Some(format!(
                    "policy {:?} has its package under data.{}: rename one",
                    p.name, document.name
                ));
            }
        }
        if let Some(error) = problem {
            return Err(self.refuse(actor, "data.put", &document.name, error).await);
        }
        let mut tx = self
            .begin_change(actor, &format!("put data document {}", document.name))
            .await?;
        sqlx::query(
            "INSERT INTO data_documents (name, document, description) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
                SET document = EXCLUDED.document, description = EXCLUDED.description,
                    updated_at = now()",
        )
        .bind(&document.name)
        .bind(&document.document)
        .bind(&document.description)
        .execute(&mut *tx)
        .await?;
        self.commit_change(tx, actor, "data.put", &document.name)
            .await
    }

    pub async fn delete_document(&self, actor: &str, name: &str) -> Result<i64, ControlPlaneError> {
        self.delete_row(
            actor,
            "data",
            "DELETE FROM data_documents WHERE name = $1",
            name,
        )
        .await
    }

    pub async fn list_documents(&self) -> Result<Vec<DocumentRecord>, ControlPlaneError> {
        let rows: Vec<(String, serde_json::Value, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT name, document, description, updated_at FROM data_documents ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, document, description, updated_at)| DocumentRecord {
                document: DataDocument {
                    name,
                    document,
                    description,
                },
                updated_at,
            })
            .collect())
    }

    pub async fn put_resource(
        &self,
        actor: &str,
        resource: &Resource,
    ) -> Result<i64, ControlPlaneError> {
        if let Err(error) = check_description(
            &format!("resource {:?}", resource.name),
            &resource.description,
        )
        .and_then(|()| resource.validate())
        {
            return Err(self
                .refuse(actor, "resource.put", &resource.name, error)
                .await);
        }
        let mut tx = self
            .begin_change(actor, &format!("put resource {}", resource.name))
            .await?;
        // Serialized on config_head's row lock, so two writes cannot both take a port.
        if let Some(port) = resource.spec.port().filter(|_| resource.enabled) {
            sqlx::query("SELECT revision FROM config_head FOR UPDATE")
                .execute(&mut *tx)
                .await?;
            let taken: Option<String> = sqlx::query_scalar(
                "SELECT name FROM resources
                  WHERE name <> $1 AND enabled AND spec->>'port' = $2",
            )
            .bind(&resource.name)
            .bind(port.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(other) = taken {
                drop(tx);
                let error = format!("port {port} is already served by resource {other:?}");
                return Err(self
                    .refuse(actor, "resource.put", &resource.name, error)
                    .await);
            }
        }
        sqlx::query(
            "INSERT INTO resources (name, kind, spec, enabled, description, environment, tags)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (name) DO UPDATE
                SET kind = EXCLUDED.kind, spec = EXCLUDED.spec, enabled = EXCLUDED.enabled,
                    description = EXCLUDED.description, environment = EXCLUDED.environment,
                    tags = EXCLUDED.tags, updated_at = now()",
        )
        .bind(&resource.name)
        .bind(resource.spec.kind())
        .bind(resource.spec.spec_json())
        .bind(resource.enabled)
        .bind(&resource.description)
        .bind(&resource.attributes.environment)
        .bind(serde_json::json!(resource.attributes.tags))
        .execute(&mut *tx)
        .await?;
        self.commit_change(tx, actor, "resource.put", &resource.name)
            .await
    }

    pub async fn delete_resource(&self, actor: &str, name: &str) -> Result<i64, ControlPlaneError> {
        self.delete_row(
            actor,
            "resource",
            "DELETE FROM resources WHERE name = $1",
            name,
        )
        .await
    }

    pub async fn list_resources(&self) -> Result<Vec<Resource>, ControlPlaneError> {
        let rows: Vec<ResourceRow> = sqlx::query_as(concat!(
            "SELECT ",
            resource_columns!(),
            " FROM resources ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let name = row.name.clone();
                row.into_resource()
                    .map_err(|e| ControlPlaneError::Invalid(format!("resource {name:?}: {e}")))
            })
            .collect()
    }

    pub async fn put_user(
        &self,
        actor: &str,
        name: &str,
        enabled: bool,
        description: &str,
        profile: &UserProfile,
    ) -> Result<i64, ControlPlaneError> {
        check_user_name(name)
            .and_then(|()| check_description(&format!("user {name:?}"), description))
            .and_then(|()| {
                profile
                    .validate()
                    .map_err(|e| format!("user {name:?}: {e}"))
            })
            .map_err(ControlPlaneError::Invalid)?;
        let mut tx = self
            .begin_change(actor, &format!("put user {name}"))
            .await?;
        sqlx::query(
            "INSERT INTO users (name, enabled, description, email, type, groups, attributes)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (name) DO UPDATE
                SET enabled = EXCLUDED.enabled, description = EXCLUDED.description,
                    email = EXCLUDED.email, type = EXCLUDED.type, groups = EXCLUDED.groups,
                    attributes = EXCLUDED.attributes, updated_at = now()",
        )
        .bind(name)
        .bind(enabled)
        .bind(description)
        .bind(&profile.email)
        .bind(profile.kind.as_str())
        .bind(&profile.groups)
        .bind(serde_json::Value::Object(profile.attributes.clone()))
        .execute(&mut *tx)
        .await?;
        self.commit_change(tx, actor, "user.put", name).await
    }

    pub async fn delete_user(&self, actor: &str, name: &str) -> Result<i64, ControlPlaneError> {
        self.delete_row(actor, "user", "DELETE FROM users WHERE name = $1", name)
            .await
    }

    pub async fn list_users(&self) -> Result<Vec<UserSummary>, ControlPlaneError> {
        type Row = (
            i64,
            String,
            bool,
            String,
            Option<String>,
            String,
            Vec<String>,
            serde_json::Value,
        );
        let users: Vec<Row> = sqlx::query_as(
            "SELECT id, name, enabled, description, email, type, groups, attributes
               FROM users ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let creds: Vec<(i64, String, String, bool, DateTime<Utc>)> = sqlx::query_as(
            "SELECT user_id, kind, key_id, enabled, created_at FROM user_credentials ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        users
            .into_iter()
            .map(
                |(id, name, enabled, description, email, kind, groups, attributes)| {
                    let profile = crate::load::user_profile(email, &kind, groups, attributes)
                        .map_err(|e| ControlPlaneError::Invalid(format!("user {name:?}: {e}")))?;
                    Ok(UserSummary {
                        name,
                        enabled,
                        description,
                        profile,
                        credentials: creds
                            .iter()
                            .filter(|c| c.0 == id)
                            .map(|(_, kind, key_id, enabled, created_at)| CredentialSummary {
                                kind: kind.clone(),
                                key_id: key_id.clone(),
                                enabled: *enabled,
                                created_at: *created_at,
                            })
                            .collect(),
                    })
                },
            )
            .collect()
    }

    /// Issues an API key (`shoal_<key_id>_<secret>`) or an S3 key pair for `user`; the
    /// secret is in the result only.
    pub async fn create_credential(
        &self,
        actor: &str,
        user: &str,
        kind: &str,
    ) -> Result<NewCredential, ControlPlaneError> {
        let fresh = self.fresh_credential(kind)?;
        let mut tx = self
            .begin_change(
                actor,
                &format!("add {kind} credential {} to user {user}", fresh.key_id),
            )
            .await?;
        insert_credential_row(&mut tx, user, &fresh).await?;
        let revision = self
            .commit_change(tx, actor, "credential.create", &fresh.key_id)
            .await?;
        Ok(NewCredential {
            kind: fresh.kind,
            key_id: fresh.key_id,
            secret: fresh.secret,
            revision,
        })
    }

    /// An API key keeps only the SHA-256 of its secret (256 random bits, so a fast hash is
    /// enough and lookups stay cheap); an S3 secret is sealed with the secrets key because
    /// verifying a SigV4 signature needs the secret itself.
    fn fresh_credential(&self, kind: &str) -> Result<FreshCredential, ControlPlaneError> {
        match kind {
            "api_key" => {
                let key_id = crypto::random_alnum(16);
                let secret = crypto::random_token(32);
                Ok(FreshCredential {
                    kind: "api_key",
                    sha: Some(crypto::sha256(secret.as_bytes())),
                    sealed: None,
                    secret: format!("shoal_{key_id}_{secret}"),
                    key_id,
                })
            }
            "s3" => {
                let key = self.secrets_key()?;
                let key_id = format!("SHL{}", crypto::random_alnum(17).to_ascii_uppercase());
                let secret = crypto::random_alnum(40);
                Ok(FreshCredential {
                    kind: "s3",
                    sha: None,
                    sealed: Some(seal_secret(key, &key_id, secret.as_bytes())),
                    key_id,
                    secret,
                })
            }
            other => Err(ControlPlaneError::Invalid(format!(
                "credential kind must be \"api_key\" or \"s3\", got {other:?}"
            ))),
        }
    }

    fn secrets_key(&self) -> Result<&SecretKey, ControlPlaneError> {
        self.secrets_key.as_ref().ok_or_else(|| {
            ControlPlaneError::Invalid(
                "no secrets key configured: set control_plane.secrets_key_file or \
                 SHOAL_SECRETS_KEY to store S3 credentials"
                    .into(),
            )
        })
    }

    /// The typed spec of a resource as the admin API and CLI receive it (`kind` plus the
    /// kind's fields). An S3 resource's `upstream_credentials.secret_access_key`, given in plain
    /// text, is sealed here and only the sealed form goes on; the sealed form itself (as a
    /// listing shows it) is accepted too, so a resource can be edited without its secret.
    pub fn resource_spec(
        &self,
        kind: &str,
        mut spec: serde_json::Value,
    ) -> Result<ResourceSpec, ControlPlaneError> {
        if kind == "s3"
            && let Some(credentials) = spec
                .get_mut("upstream_credentials")
                .and_then(|c| c.as_object_mut())
            && let Some(secret) = credentials.remove("secret_access_key")
        {
            let (Some(secret), Some(key_id)) = (
                secret.as_str(),
                credentials.get("access_key_id").and_then(|k| k.as_str()),
            ) else {
                return Err(ControlPlaneError::Invalid(
                    "upstream_credentials needs access_key_id and secret_access_key as strings"
                        .into(),
                ));
            };
            if secret.is_empty() || secret.len() > 128 {
                return Err(ControlPlaneError::Invalid(format!(
                    "upstream_credentials.secret_access_key must be 1-128 characters, got {}",
                    secret.len()
                )));
            }
            let sealed = seal_secret(self.secrets_key()?, key_id, secret.as_bytes());
            credentials.insert("secret_sealed".into(), hex::encode(sealed).into());
        }
        ResourceSpec::from_parts(kind, spec).map_err(ControlPlaneError::Invalid)
    }

    pub async fn delete_credential(
        &self,
        actor: &str,
        key_id: &str,
    ) -> Result<i64, ControlPlaneError> {
        self.delete_row(
            actor,
            "credential",
            "DELETE FROM user_credentials WHERE key_id = $1",
            key_id,
        )
        .await
    }

    pub async fn list_revisions(
        &self,
        limit: i64,
    ) -> Result<Vec<RevisionRecord>, ControlPlaneError> {
        let rows: Vec<(i64, DateTime<Utc>, String, String)> = sqlx::query_as(
            "SELECT revision, created_at, actor, summary FROM config_revisions
              ORDER BY revision DESC LIMIT $1",
        )
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(revision, created_at, actor, summary)| RevisionRecord {
                revision,
                created_at,
                actor,
                summary,
            })
            .collect())
    }

    /// Audit lines newest first (by time, then id), filtered, one page at a time: `before_id`
    /// is the last line of the previous page. Text filters match as substrings, case-insensitively; they are
    /// bound parameters, so any character is safe in them.
    pub async fn list_audit(&self, query: &AuditQuery) -> Result<AuditPage, ControlPlaneError> {
        type Row = (
            i64,
            DateTime<Utc>,
            String,
            String,
            String,
            String,
            String,
            serde_json::Value,
        );
        let like = |v: &Option<String>| {
            v.as_deref().filter(|v| !v.is_empty()).map(|v| {
                format!(
                    "%{}%",
                    v.replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                )
            })
        };
        let limit = query.limit.clamp(1, 1000);
        let mut tx = self.pool.begin().await?;
        // A text filter scans the detail of every line; bound the time it may take.
        sqlx::query("SET LOCAL statement_timeout = '10s'")
            .execute(&mut *tx)
            .await?;
        let mut rows: Vec<Row> = sqlx::query_as(
            "SELECT id, at, node, actor, action, target, outcome, detail FROM audit_log
              WHERE ($1::bigint IS NULL
                     OR (at, id) < (SELECT at, id FROM audit_log WHERE id = $1))
                AND ($2::text IS NULL OR actor ILIKE $2)
                AND ($3::text IS NULL OR action ILIKE $3)
                AND ($4::text IS NULL OR outcome = $4)
                AND ($5::text IS NULL OR target ILIKE $5 OR detail::text ILIKE $5)
                AND (NOT $7 OR detail ? 'would_block')
              ORDER BY at DESC, id DESC LIMIT $6",
        )
        .bind(query.before_id)
        .bind(like(&query.actor))
        .bind(like(&query.action))
        .bind(query.outcome.as_deref().filter(|v| !v.is_empty()))
        .bind(like(&query.text))
        .bind(limit + 1)
        .bind(query.would_block)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_before_id = if more { rows.last().map(|r| r.0) } else { None };
        Ok(AuditPage {
            entries: rows
                .into_iter()
                .map(
                    |(id, at, node, actor, action, target, outcome, detail)| AuditRecord {
                        id,
                        at,
                        node,
                        actor,
                        action,
                        target,
                        outcome,
                        detail,
                    },
                )
                .collect(),
            next_before_id,
        })
    }

    /// Replaces a credential by a new one of the same kind for the same user, in one
    /// transaction: the old key stops working in the same revision the new one starts.
    pub async fn rotate_credential(
        &self,
        actor: &str,
        key_id: &str,
    ) -> Result<NewCredential, ControlPlaneError> {
        let found: Option<(String, String)> = sqlx::query_as(
            "SELECT c.kind, u.name FROM user_credentials c JOIN users u ON u.id = c.user_id
              WHERE c.key_id = $1",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((kind, user)) = found else {
            return Err(ControlPlaneError::NotFound(format!(
                "credential {key_id:?}"
            )));
        };
        let fresh = self.fresh_credential(&kind)?;
        let mut tx = self
            .begin_change(
                actor,
                &format!(
                    "rotate {kind} credential {key_id} of user {user} to {}",
                    fresh.key_id
                ),
            )
            .await?;
        let deleted = sqlx::query("DELETE FROM user_credentials WHERE key_id = $1")
            .bind(key_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(ControlPlaneError::NotFound(format!(
                "credential {key_id:?}"
            )));
        }
        insert_credential_row(&mut tx, &user, &fresh).await?;
        let revision = self
            .commit_change(tx, actor, "credential.rotate", key_id)
            .await?;
        Ok(NewCredential {
            kind: fresh.kind,
            key_id: fresh.key_id,
            secret: fresh.secret,
            revision,
        })
    }
}

/// A credential generated but not stored yet: what the caller is shown and what the row holds.
struct FreshCredential {
    kind: &'static str,
    key_id: String,
    secret: String,
    sha: Option<Vec<u8>>,
    sealed: Option<Vec<u8>>,
}

async fn insert_credential_row(
    tx: &mut Transaction<'static, Postgres>,
    user: &str,
    c: &FreshCredential,
) -> Result<(), ControlPlaneError> {
    let inserted = sqlx::query(
        "INSERT INTO user_credentials (user_id, kind, key_id, secret_sha256, secret_ciphertext)
         SELECT id, $2, $3, $4, $5 FROM users WHERE name = $1",
    )
    .bind(user)
    .bind(c.kind)
    .bind(&c.key_id)
    .bind(&c.sha)
    .bind(&c.sealed)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(ControlPlaneError::NotFound(format!("user {user:?}")));
    }
    Ok(())
}

pub(crate) async fn insert_audit(
    tx: &mut Transaction<'static, Postgres>,
    node: &str,
    actor: &str,
    action: &str,
    target: &str,
    outcome: &str,
    detail: serde_json::Value,
) -> Result<(), ControlPlaneError> {
    sqlx::query(
        "INSERT INTO audit_log (event_id, at, node, actor, action, target, outcome, detail)
         VALUES ($1::uuid, now(), $2, $3, $4, $5, $6, $7)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(node)
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(outcome)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
