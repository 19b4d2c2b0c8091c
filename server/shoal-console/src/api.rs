use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use shoal_cluster::Cluster;
use shoal_config::CookieSecure;
use shoal_model::{
    AdminIdentity, AdminStore, AuditEntry, AuditQuery, AuditQueue, ConfigHandle, Credential,
    Enforcement, OnError, OnUnreachable, Policy, Resource, ResourceAttributes, UserKind,
    UserProfile,
};
use shoal_state::{Services, SharedState};

use crate::ApiError;
use crate::login::{self, LoginOutcome};
use crate::views::{self, CounterHistory};

/// What the API and console handlers share: handles on the node's subsystems.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn AdminStore>,
    pub config: ConfigHandle,
    /// The counters' shared state (`services.counters`).
    pub state: SharedState,
    /// The shared state each service uses (the cache's and the events' may be another
    /// cluster's).
    pub services: Services,
    /// The counters' cluster.
    pub cluster: Cluster,
    /// Every cluster the node is in, the counters' first.
    pub clusters: Vec<NodeCluster>,
    /// Node-local admin changes are audited here; its backlog shows on the overview.
    pub audit: Arc<dyn AuditQueue>,
    /// This node's name, shown as the node that answered.
    pub node: String,
    pub session_ttl: Duration,
    pub cookie_secure: CookieSecure,
    /// This node's log level, changeable at run time.
    pub log_level: shoal_telemetry::LogLevel,
}

/// One cluster the node is in, for the pages that show each.
#[derive(Clone)]
pub struct NodeCluster {
    pub name: String,
    /// The `[services]` keys on this cluster.
    pub services: Vec<&'static str>,
    pub cluster: Cluster,
    pub state: SharedState,
}

/// The admin API (`/api/v1`, bearer tokens) and the console (`/console`, cookie sessions with
/// CSRF tokens). All but the login routes require a session. Starts the counter-history
/// sampler, so call it from within the node's runtime.
pub fn router(state: ApiState) -> Router {
    let history = CounterHistory::spawn(state.state.clone());
    api_routes()
        .merge(crate::web::routes())
        .layer(axum::Extension(history))
        .layer(axum::middleware::from_fn(crate::web::common_headers))
        .with_state(state)
}

fn api_routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/status", get(status))
        .route("/api/v1/config", get(config_in_force))
        .route("/api/v1/config/wait", get(wait_for_revision))
        .route("/api/v1/revisions", get(revisions))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/policies", get(list_policies))
        .route(
            "/api/v1/policies/{name}",
            put(put_policy).get(get_policy).delete(delete_policy),
        )
        .route("/api/v1/data", get(list_documents))
        .route(
            "/api/v1/data/{name}",
            put(put_document).get(get_document).delete(delete_document),
        )
        .route("/api/v1/resources", get(list_resources))
        .route(
            "/api/v1/resources/{name}",
            put(put_resource).delete(delete_resource),
        )
        .route("/api/v1/users", get(list_users))
        .route("/api/v1/users/{name}", put(put_user).delete(delete_user))
        .route("/api/v1/users/{name}/credentials", post(create_credential))
        .route(
            "/api/v1/credentials/{key_id}",
            axum::routing::delete(delete_credential),
        )
        .route(
            "/api/v1/credentials/{key_id}/rotate",
            post(rotate_credential),
        )
        .route("/api/v1/policy-test", post(test_policy))
        .route("/api/v1/admins", get(list_admins))
        .route("/api/v1/admins/{name}", put(create_admin))
        .route("/api/v1/admins/{name}/disabled", put(set_admin_disabled))
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/log-level", get(get_log_level).put(put_log_level))
        .route("/api/v1/cluster/members", get(members))
        .route("/api/v1/cluster/events", get(membership_events))
        .merge(crate::state_api::routes())
}

/// A JSON body whose decoding errors come back as the API's JSON error, naming the field.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::Invalid(
                "request body must be JSON with `Content-Type: application/json`".into(),
            )),
            Err(e) => Err(ApiError::Invalid(format!(
                "invalid request body: {}",
                e.body_text()
            ))),
        }
    }
}

/// The logged-in admin; extracting it is what makes a handler require authentication.
pub(crate) struct Admin(pub(crate) AdminIdentity);

impl FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthenticated)?;
        match state.store.session(token).await? {
            Some(identity) => Ok(Admin(identity)),
            None => Err(ApiError::Unauthenticated),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn actor(admin: &Admin) -> String {
    format!("admin:{}", admin.0.username)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Json<Value>, ApiError> {
    match login::attempt(&state, &body.username, &body.password).await? {
        LoginOutcome::LoggedIn(session) => Ok(Json(json!(session))),
        refused => Err(refused.api_error()),
    }
}

async fn logout(State(state): State<ApiState>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    let token = bearer(&headers).ok_or(ApiError::Unauthenticated)?;
    state.store.logout(token).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn status(State(state): State<ApiState>, _admin: Admin) -> Json<Value> {
    let status = state.config.status();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "control_plane": status,
    }))
}

/// What this node enforces right now (which may lag the database, or come from the snapshot).
/// Credentials are listed by key id only.
async fn config_in_force(State(state): State<ApiState>, _admin: Admin) -> Json<Value> {
    let status = state.config.status();
    let Some(config) = state.config.current() else {
        return Json(json!({ "revision": null, "source": null }));
    };
    let users: Vec<Value> = config
        .users
        .iter()
        .map(|u| {
            let keys: Vec<&str> = u
                .credentials
                .iter()
                .map(|c| match c {
                    Credential::ApiKey { key_id, .. } => key_id.as_str(),
                    Credential::S3 { access_key_id, .. } => access_key_id.as_str(),
                })
                .collect();
            json!({ "name": u.name, "enabled": u.enabled, "credentials": keys })
        })
        .collect();
    Json(json!({
        "revision": config.revision,
        "source": status.source,
        "policies": config.policies,
        "resources": config.resources,
        "users": users,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    revision: i64,
    /// Milliseconds; capped so a forgotten client cannot hold a connection forever.
    #[serde(default = "default_wait_ms")]
    timeout_ms: u64,
}

fn default_wait_ms() -> u64 {
    10_000
}

/// Long-poll until this node applied `revision`: lets a client (the CLI, a deploy script, the
/// config benchmark) know a change is in force on a given node without polling.
async fn wait_for_revision(
    State(state): State<ApiState>,
    _admin: Admin,
    Query(q): Query<WaitQuery>,
) -> Result<Json<Value>, ApiError> {
    let timeout = Duration::from_millis(q.timeout_ms.min(60_000));
    match state.config.wait_for_revision(q.revision, timeout).await {
        Some(applied) => Ok(Json(json!({ "revision": applied }))),
        None => Err(ApiError::Timeout(format!(
            "revision {} not applied on this node within {} ms (in force: {:?})",
            q.revision,
            timeout.as_millis(),
            state.config.status().revision
        ))),
    }
}

#[derive(Deserialize)]
struct Limit {
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    100
}

async fn revisions(
    State(state): State<ApiState>,
    _admin: Admin,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.store.list_revisions(q.limit).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditFilter {
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub outcome: Option<String>,
    /// Substring of the target or the detail.
    #[serde(default)]
    pub q: Option<String>,
    /// Only requests a shadow policy would have blocked (`1`, `true` or a checked box).
    #[serde(default)]
    pub would_block: Option<String>,
    #[serde(default)]
    pub before_id: Option<i64>,
    #[serde(default = "default_limit")]
    pub limit: i64,
}

impl AuditFilter {
    pub(crate) fn query(&self) -> Result<AuditQuery, ApiError> {
        for (name, value) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("outcome", &self.outcome),
            ("q", &self.q),
        ] {
            if value.as_ref().is_some_and(|v| v.chars().count() > 200) {
                return Err(ApiError::Invalid(format!(
                    "audit filter `{name}` is longer than 200 characters"
                )));
            }
        }
        Ok(AuditQuery {
            actor: self.actor.clone(),
            action: self.action.clone(),
            outcome: self.outcome.clone(),
            text: self.q.clone(),
            would_block: self
                .would_block
                .as_deref()
                .is_some_and(|v| matches!(v, "1" | "true" | "on")),
            before_id: self.before_id,
            limit: self.limit,
        })
    }
}

/// Newest first, `limit` per page; `next_before_id` fetches the next (older) page.
async fn audit(
    State(state): State<ApiState>,
    _admin: Admin,
    Query(q): Query<AuditFilter>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.store.list_audit(&q.query()?).await?)))
}

async fn list_policies(
    State(state): State<ApiState>,
    _admin: Admin,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.store.list_policies().await?)))
}

async fn get_policy(
    State(state): State<ApiState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let policies = state.store.list_policies().await?;
    policies
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| Json(json!(p)))
        .ok_or_else(|| ApiError::NotFound(format!("policy {name:?} not found")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    rego: String,
    #[serde(default = "default_enforcement")]
    enforcement: Enforcement,
    #[serde(default)]
    on_error: OnError,
    #[serde(default)]
    on_unreachable: OnUnreachable,
    /// Evaluated and audited as "would block", never enforced.
    #[serde(default)]
    shadow: bool,
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default)]
    description: String,
}

fn default_enforcement() -> Enforcement {
    Enforcement::Eventual
}
fn default_true() -> bool {
    true
}

async fn put_policy(
    State(state): State<ApiState>,
    admin: Admin,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PolicyBody>,
) -> Result<Json<Value>, ApiError> {
    let policy = Policy {
        name,
        rego: body.rego,
        enforcement: body.enforcement,
        on_error: body.on_error,
        on_unreachable: body.on_unreachable,
        shadow: body.shadow,
        enabled: body.enabled,
        description: body.description,
    };
    let revision = state.store.put_policy(&actor(&admin), &policy).await?;
    Ok(Json(json!({ "revision": revision })))
}

async fn delete_policy(
    State(state): State<ApiState>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let revision = state.store.delete_policy(&actor(&admin), &name).await?;
    Ok(Json(json!({ "revision": revision })))
}

async fn list_documents(
    State(state): State<ApiState>,
    _admin: Admin,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.store.list_documents().await?)))
}

async fn get_document(
    State(state): State<ApiState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .store
        .list_documents()
        .await?
        .into_iter()
        .find(|d| d.document.name == name)
        .map(|d| Json(json!(d)))
        .ok_or_else(|| ApiError::NotFound(format!("data document {name:?} not found")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentBody {
    /// Any JSON: policies read it as `data.<name>`.
    document: Value,
    #[serde(default)]
    description: String,
}

async fn put_document(
    State(state): State<ApiState>,
    admin: Admin,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<DocumentBody>,
) -> Result<Json<Value>, ApiError> {
    let document = shoal_model::DataDocument {
        name,
        document: body.document,
        description: body.description,
    };
    let revision = state.store.put_document(&actor(&admin), &document).await?;
    Ok(Json(json!({ "revision": revision })))
}

async fn delete_document(
    State(state): State<ApiState>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let revision = state.store.delete_document(&actor(&admin), &name).await?;
    Ok(Json(json!({ "revision": revision })))
}

async fn list_resources(
    State(state): State<ApiState>,
    _admin: Admin,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.store.list_resources().await?)))
}

/// Kind-specific fields are flattened in; `ResourceSpec` rejects unknown ones.
#[derive(Deserialize)]
struct ResourceBody {
    #[serde(flatten)]
    spec: Value,
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default)]
    description: String,
    /// `input.resource.environment`.
    #[serde(default)]
    environment: Option<String>,
    /// `input.resource.tags`.
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
}

async fn put_resource(
    State(state): State<ApiState>,
    admin: Admin,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ResourceBody>,
) -> Result<Json<Value>, ApiError> {
    let mut spec = body.spec;
    let kind = spec
        .as_object_mut()
        .and_then(|o| o.remove("kind"))
        .and_then(|k| k.as_str().map(str::to_string))
        .ok_or_else(|| ApiError::Invalid("`kind` is required: \"s3\" or \"http\"".into()))?;
    let spec = state.store.resource_spec(&kind, spec)?;
    let resource = Resource {
        name,
        enabled: body.enabled,
        description: body.description,
        spec,
        attributes: ResourceAttributes {
            environment: body.environment,
            tags: body.tags,
        },
    };
    let revision = state.store.put_resource(&actor(&admin), &resource).await?;
    Ok(Json(json!({ "revision": revision })))
}

async fn delete_resource(
    State(state): State<ApiState>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let revision = state.store.delete_resource(&actor(&admin), &name).await?;
    Ok(Json(json!({ "revision": revision })))
}

async fn list_users(State(state): State<ApiState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.store.list_users().await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default)]
    description: String,
    /// `input.user.{email, type, groups, attributes}`; a PUT replaces them all.
    #[serde(default)]
    email: Option<String>,
    #[serde(default, rename = "type")]
    kind: UserKind,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    attributes: serde_json::Map<String, Value>,
}

async fn put_user(
    State(state): State<ApiState>,
    admin: Admin,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<UserBody>,
) -> Result<Json<Value>, ApiError> {
    let revision = state
        .store
        .put_user(
            &actor(&admin),
            &name,
            body.enabled,
            &body.description,
            &UserProfile {
                email: body.email,
                kind: body.kind,
                groups: body.groups,
                attributes: body.attributes,
            },
        )
        .await?;
    Ok(Json(json!({ "revision": revision })))
}

async fn delete_user(
    State(state): State<ApiState>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let revision = state.store.delete_user(&actor(&admin), &name).await?;
    Ok(Json(json!({ "revision": revision })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialBody {
    kind: String,
}

async fn create_credential(
    State(state): State<ApiState>,
    admin: Admin,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<CredentialBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let created = state
        .store
        .create_credential(&actor(&admin), &name, &body.kind)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(created))))
}

async fn delete_credential(
    State(state): State<ApiState>,
    admin: Admin,
    Path(key_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let revision = state
        .store
        .delete_credential(&actor(&admin), &key_id)
        .await?;
    crate::state_api::announce_revoked_key(&state, &key_id);
    Ok(Json(json!({ "revision": revision })))
}

/// A new secret for the same user and kind; the old key stops working in the same revision.
async fn rotate_credential(
    State(state): State<ApiState>,
    admin: Admin,
    Path(key_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let created = state
        .store
        .rotate_credential(&actor(&admin), &key_id)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(created))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrialBody {
    rego: String,
    input: Value,
    /// `request` (default) or `response`.
    #[serde(
        default = "views::request_stage",
        deserialize_with = "views::trial_stage"
    )]
    stage: shoal_policy::Stage,
}

/// Compiles a policy with the data documents this node enforces and evaluates it on a sample
/// input at one stage, storing nothing.
async fn test_policy(
    State(state): State<ApiState>,
    _admin: Admin,
    JsonBody(body): JsonBody<TrialBody>,
) -> Result<Json<Value>, ApiError> {
    let documents = views::documents_in_force(&state);
    Ok(Json(json!(
        views::trial(body.rego, body.input.to_string(), body.stage, documents).await
    )))
}

async fn list_admins(
    State(state): State<ApiState>,
    _admin: Admin,
) -> Result<Json<Value>, ApiError> {
    let admins: Vec<Value> = state
        .store
        .list_admins()
        .await?
        .into_iter()
        .map(|a| {
            let failures = login::failures(&state, &a.username);
            let mut v = json!(a);
            v["failed_logins"] = json!(failures);
            v
        })
        .collect();
    Ok(Json(json!(admins)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAdminBody {
    password: String,
}

async fn create_admin(
    State(state): State<ApiState>,
    admin: Admin,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<NewAdminBody>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .create_admin(&actor(&admin), &name, &body.password)
        .await?;
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisabledBody {
    disabled: bool,
}

async fn set_admin_disabled(
    State(state): State<ApiState>,
    admin: Admin,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<DisabledBody>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .set_admin_disabled(&actor(&admin), &name, body.disabled)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_log_level(State(state): State<ApiState>, _admin: Admin) -> Json<Value> {
    Json(json!({ "node": state.node, "level": state.log_level.current() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogLevelBody {
    level: String,
}

/// Changes this node's log level (only this node's: a problem is usually on one node, and
/// `debug` everywhere would bury it). The change is audited through the audit log, which
/// spools to disk while PostgreSQL is away, so it works during the incident it is for; a
/// change that cannot be audited is undone.
async fn put_log_level(
    State(state): State<ApiState>,
    admin: Admin,
    JsonBody(body): JsonBody<LogLevelBody>,
) -> Result<Json<Value>, ApiError> {
    let previous = state.log_level.current();
    state
        .log_level
        .set(&body.level)
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    let entry = AuditEntry {
        event_id: uuid::Uuid::new_v4(),
        at: chrono::Utc::now(),
        actor: actor(&admin),
        action: "log_level.set".into(),
        target: state.node.clone(),
        outcome: "ok".into(),
        detail: json!({ "level": body.level, "previous": previous }).into(),
    };
    if let Err(e) = state.audit.record(entry).await {
        let _ = state.log_level.set(&previous);
        return Err(ApiError::Unavailable(format!(
            "the change cannot be audited ({e}); the log level stays {previous:?}"
        )));
    }
    tracing::info!(
        admin = %admin.0.username,
        level = %body.level,
        previous = %previous,
        "log level changed"
    );
    Ok(Json(
        json!({ "node": state.node, "level": body.level, "previous": previous }),
    ))
}

async fn overview(State(state): State<ApiState>, _admin: Admin) -> Json<Value> {
    Json(json!(views::overview(&state)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterQuery {
    cluster: Option<String>,
}

/// `?cluster=NAME` picks one of the node's clusters (default: the counters').
async fn members(
    State(state): State<ApiState>,
    _admin: Admin,
    Query(q): Query<ClusterQuery>,
) -> Result<Json<Value>, ApiError> {
    views::instances_of(&state, q.cluster.as_deref())
        .map(|v| Json(json!(v)))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "this node is in no cluster {:?}; it is in [{}]",
                q.cluster.unwrap_or_default(),
                state
                    .clusters
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

async fn membership_events(State(state): State<ApiState>, _admin: Admin) -> Json<Value> {
    Json(json!({ "node": state.node, "events": views::events(&state) }))
}
