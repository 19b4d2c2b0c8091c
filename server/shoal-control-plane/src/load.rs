//! Reading one consistent revision of the whole config out of PostgreSQL.

use std::collections::BTreeMap;

use sqlx::PgPool;

use shoal_model::{
    ConfigSnapshot, Credential, DataDocument, Enforcement, OnError, OnUnreachable, Policy,
    Resource, ResourceAttributes, ResourceSpec, User, UserKind, UserProfile,
};

use crate::ControlPlaneError;

/// The `resources` columns [`ResourceRow`] reads, shared by the loader and the store.
macro_rules! resource_columns {
    () => {
        "name, kind, spec, enabled, description, environment, tags"
    };
}
pub(crate) use resource_columns;

/// The `policies` columns [`PolicyRow`] reads, shared by the loader and the store.
macro_rules! policy_columns {
    () => {
        "name, rego, enforcement, on_error, on_unreachable, shadow, enabled, description"
    };
}
pub(crate) use policy_columns;

/// The revision PostgreSQL is at now: the cheap query behind the poll.
pub async fn head_revision(pool: &PgPool) -> Result<i64, ControlPlaneError> {
    Ok(sqlx::query_scalar("SELECT revision FROM config_head")
        .fetch_one(pool)
        .await?)
}

/// Reads every config table inside one repeatable-read transaction, so the result is exactly
/// one revision, then validates it. Rows that fail validation are all named in the error.
pub async fn load_config(pool: &PgPool) -> Result<ConfigSnapshot, ControlPlaneError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let revision: i64 = sqlx::query_scalar("SELECT revision FROM config_head")
        .fetch_one(&mut *tx)
        .await?;
    let resource_rows: Vec<Row<ResourceRow>> = sqlx::query_as(concat!(
        "SELECT id, ",
        resource_columns!(),
        " FROM resources ORDER BY name"
    ))
    .fetch_all(&mut *tx)
    .await?;
    let policy_rows: Vec<Row<PolicyRow>> = sqlx::query_as(concat!(
        "SELECT id, ",
        policy_columns!(),
        " FROM policies ORDER BY name"
    ))
    .fetch_all(&mut *tx)
    .await?;
    type UserRow = (
        i64,
        String,
        bool,
        Option<String>,
        String,
        Vec<String>,
        serde_json::Value,
    );
    let user_rows: Vec<UserRow> = sqlx::query_as(
        "SELECT id, name, enabled, email, type, groups, attributes FROM users ORDER BY name",
    )
    .fetch_all(&mut *tx)
    .await?;
    let document_rows: Vec<(String, serde_json::Value, String)> =
        sqlx::query_as("SELECT name, document, description FROM data_documents ORDER BY name")
            .fetch_all(&mut *tx)
            .await?;
    type CredRow = (
        i64,
        i64,
        String,
        String,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        bool,
    );
    let cred_rows: Vec<CredRow> = sqlx::query_as(
        "SELECT id, user_id, kind, key_id, secret_sha256, secret_ciphertext, enabled
           FROM user_credentials
          ORDER BY key_id",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    let mut errors = Vec::new();
    let mut resources = Vec::with_capacity(resource_rows.len());
    for Row { id, row } in resource_rows {
        let name = row.name.clone();
        match row.into_resource() {
            Ok(r) => resources.push(r),
            Err(e) => errors.push(format!("resource {name:?} (id {id}): {e}")),
        }
    }
    let mut policies = Vec::with_capacity(policy_rows.len());
    for Row { id, row } in policy_rows {
        let name = row.name.clone();
        match row.into_policy() {
            Ok(p) => policies.push(p),
            Err(e) => errors.push(format!("policy {name:?} (id {id}): {e}")),
        }
    }
    let mut credentials: BTreeMap<i64, Vec<Credential>> = BTreeMap::new();
    for (id, user_id, kind, key_id, sha, sealed, enabled) in cred_rows {
        let credential = match (kind.as_str(), sha, sealed) {
            ("api_key", Some(secret_sha256), None) => Credential::ApiKey {
                key_id,
                secret_sha256,
                enabled,
            },
            ("s3", None, Some(secret_ciphertext)) => Credential::S3 {
                access_key_id: key_id,
                secret_ciphertext,
                enabled,
            },
            _ => {
                errors.push(format!(
                    "credential {key_id:?} (id {id}): kind {kind:?} with the wrong secret columns"
                ));
                continue;
            }
        };
        credentials.entry(user_id).or_default().push(credential);
    }
    let mut users = Vec::with_capacity(user_rows.len());
    for (id, name, enabled, email, kind, groups, attributes) in user_rows {
        match user_profile(email, &kind, groups, attributes) {
            Ok(profile) => users.push(User {
                name,
                enabled,
                credentials: credentials.remove(&id).unwrap_or_default(),
                profile,
            }),
            Err(e) => errors.push(format!("user {name:?} (id {id}): {e}")),
        }
    }

    let documents = document_rows
        .into_iter()
        .map(|(name, document, description)| DataDocument {
            name,
            document,
            description,
        })
        .collect();
    let snapshot = ConfigSnapshot {
        revision,
        resources,
        policies,
        users,
        documents,
    };
    // Compiling every policy is CPU work: keep it off the async workers.
    tokio::task::spawn_blocking(move || snapshot.validate_with(errors).map(|()| snapshot))
        .await
        .map_err(|e| ControlPlaneError::Database(format!("config validation task failed: {e}")))?
        // Validation refuses a revision only as invalid.
        .map_err(|e| ControlPlaneError::Invalid(e.to_string()))
}

/// A resource's attributes from their columns.
pub(crate) fn resource_attributes(
    environment: Option<String>,
    tags: serde_json::Value,
) -> Result<ResourceAttributes, String> {
    Ok(ResourceAttributes {
        environment,
        tags: serde_json::from_value(tags).map_err(|e| format!("tags: {e}"))?,
    })
}

/// A user's profile from its columns.
pub(crate) fn user_profile(
    email: Option<String>,
    kind: &str,
    groups: Vec<String>,
    attributes: serde_json::Value,
) -> Result<UserProfile, String> {
    Ok(UserProfile {
        email,
        kind: UserKind::parse(kind)?,
        groups,
        attributes: match attributes {
            serde_json::Value::Object(map) => map,
            other => return Err(format!("attributes must be a JSON object, got {other}")),
        },
    })
}

/// A row with its id, for messages naming the row.
#[derive(sqlx::FromRow)]
struct Row<T> {
    id: i64,
    #[sqlx(flatten)]
    row: T,
}

/// A `resources` row ([`resource_columns`]).
#[derive(sqlx::FromRow)]
pub(crate) struct ResourceRow {
    pub(crate) name: String,
    kind: String,
    spec: serde_json::Value,
    enabled: bool,
    description: String,
    environment: Option<String>,
    tags: serde_json::Value,
}

impl ResourceRow {
    pub(crate) fn into_resource(self) -> Result<Resource, String> {
        Ok(Resource {
            spec: ResourceSpec::from_parts(&self.kind, self.spec)?,
            attributes: resource_attributes(self.environment, self.tags)?,
            name: self.name,
            enabled: self.enabled,
            description: self.description,
        })
    }
}

/// A `policies` row ([`policy_columns`]).
#[derive(sqlx::FromRow)]
pub(crate) struct PolicyRow {
    pub(crate) name: String,
    rego: String,
    enforcement: String,
    on_error: String,
    on_unreachable: String,
    shadow: bool,
    enabled: bool,
    description: String,
}

impl PolicyRow {
    pub(crate) fn into_policy(self) -> Result<Policy, String> {
        Ok(Policy {
            enforcement: Enforcement::parse(&self.enforcement)?,
            on_error: OnError::parse(&self.on_error)?,
            on_unreachable: OnUnreachable::parse(&self.on_unreachable)?,
            name: self.name,
            rego: self.rego,
            shadow: self.shadow,
            enabled: self.enabled,
            description: self.description,
        })
    }
}
