//! `/api/v1/state`: the shared cluster state as operators and tests see it: counters with
//! per-node contributions, a rate-limit check (what the data plane does per request), the
//! cache and the event channel.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use shoal_state::{CounterKey, Limit, Mode};

use crate::ApiError;
use crate::api::{Admin, ApiState, JsonBody};
use crate::views::{self, CounterHistory};

/// Longest cache TTL the API accepts.
const MAX_TTL: Duration = Duration::from_secs(7 * 86_400);

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/state/status", get(status))
        .route("/api/v1/state/counters", get(counters))
        .route("/api/v1/state/top", get(top))
        .route("/api/v1/state/check", post(check))
        .route("/api/v1/state/increment", post(increment))
        .route(
            "/api/v1/state/cache/{key}",
            get(cache_get).put(cache_put).delete(cache_delete),
        )
        .route("/api/v1/state/events", get(events).post(publish))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyQuery {
    subject: Option<String>,
    resource: Option<String>,
    action: Option<String>,
}

fn key(subject: &str, resource: &str, action: &str) -> Result<CounterKey, ApiError> {
    CounterKey::new(subject, resource, action).map_err(|e| ApiError::Invalid(e.to_string()))
}

async fn status(State(state): State<ApiState>, _admin: Admin) -> Json<Value> {
    Json(json!(state.state.status()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopQuery {
    #[serde(default)]
    q: String,
}

/// The counters page's twin: the busiest keys matching `q` with per-node contributions, the
/// per-window sums and the chart's samples.
async fn top(
    State(state): State<ApiState>,
    _admin: Admin,
    axum::Extension(history): axum::Extension<CounterHistory>,
    Query(q): Query<TopQuery>,
) -> Result<Json<Value>, ApiError> {
    if q.q.chars().count() > 200 {
        return Err(ApiError::Invalid(
            "filter `q` is longer than 200 characters".into(),
        ));
    }
    Ok(Json(json!(views::counters(&state, &history, &q.q))))
}

/// One key (with contributions and owner) when all three parts are given, else every key.
async fn counters(
    State(state): State<ApiState>,
    _admin: Admin,
    Query(q): Query<KeyQuery>,
) -> Result<Json<Value>, ApiError> {
    let names = state.state.window_names();
    let named = |totals: &[u64]| -> Value {
        names
            .iter()
            .zip(totals)
            .map(|(n, t)| (n.clone(), json!(t)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    match (q.subject, q.resource, q.action) {
        (Some(s), Some(r), Some(a)) => {
            let k = key(&s, &r, &a)?;
            let contributions: serde_json::Map<String, Value> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), json!(state.state.contributions(&k, i))))
                .collect();
            Ok(Json(json!({
                "key": k,
                "access_count": state.state.access_count(&k),
                "contributions": contributions,
                "owner": state.state.owner(&k),
            })))
        }
        (None, None, None) => {
            let list: Vec<Value> = state
                .state
                .counters(1000)
                .into_iter()
                .map(|(k, totals)| json!({"key": k, "access_count": named(&totals)}))
                .collect();
            Ok(Json(json!({ "counters": list })))
        }
        _ => Err(ApiError::Invalid(
            "give all of subject, resource and action, or none".into(),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    subject: String,
    resource: String,
    action: String,
    #[serde(default = "default_window")]
    window: String,
    limit: u64,
    #[serde(default = "default_mode")]
    mode: Mode,
    #[serde(default = "one")]
    cost: u64,
}

fn default_window() -> String {
    "last_minute".into()
}
fn default_mode() -> Mode {
    Mode::Eventual
}
fn one() -> u64 {
    1
}

/// How many requests one call may count.
fn amount(field: &str, value: u64) -> Result<u64, ApiError> {
    if (1..=1_000_000).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::Invalid(format!(
            "{field} must be between 1 and 1000000, got {value}"
        )))
    }
}

fn window(state: &ApiState, name: &str) -> Result<usize, ApiError> {
    state.state.window_index(name).ok_or_else(|| {
        ApiError::Invalid(format!(
            "window {name:?} is not configured; windows: {}",
            state.state.window_names().join(", ")
        ))
    })
}

/// Counts one request against a limit and says whether it passes (what the data plane does).
async fn check(
    State(state): State<ApiState>,
    _admin: Admin,
    JsonBody(body): JsonBody<CheckBody>,
) -> Result<Json<Value>, ApiError> {
    let k = key(&body.subject, &body.resource, &body.action)?;
    let window = window(&state, &body.window)?;
    amount("cost", body.cost)?;
    let limit = Limit {
        window,
        max: body.limit,
        mode: body.mode,
    };
    Ok(Json(json!(state.state.check(&k, limit, body.cost).await)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncrementBody {
    subject: String,
    resource: String,
    action: String,
    #[serde(default = "one")]
    by: u64,
}

async fn increment(
    State(state): State<ApiState>,
    _admin: Admin,
    JsonBody(body): JsonBody<IncrementBody>,
) -> Result<Json<Value>, ApiError> {
    let k = key(&body.subject, &body.resource, &body.action)?;
    amount("by", body.by)?;
    state.state.increment(&k, body.by);
    Ok(Json(json!({ "key": k, "totals": state.state.totals(&k) })))
}

async fn cache_get(
    State(state): State<ApiState>,
    _admin: Admin,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.services.cache.cache_get(&key) {
        Some(v) => Ok(Json(json!({
            "key": key,
            "value": String::from_utf8_lossy(&v),
        }))),
        None => Err(ApiError::NotFound(format!("cache key {key:?} not found"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CachePut {
    value: String,
    ttl_ms: u64,
}

async fn cache_put(
    State(state): State<ApiState>,
    _admin: Admin,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<CachePut>,
) -> Result<StatusCode, ApiError> {
    let ttl = ttl(body.ttl_ms)?;
    state
        .services
        .cache
        .cache_put(&key, body.value.into_bytes(), ttl)
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

fn ttl(ms: u64) -> Result<Duration, ApiError> {
    let ttl = Duration::from_millis(ms);
    if ms == 0 || ttl > MAX_TTL {
        return Err(ApiError::Invalid(format!(
            "ttl_ms must be between 1 and {}, got {ms}",
            MAX_TTL.as_millis()
        )));
    }
    Ok(ttl)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheDelete {
    #[serde(default = "default_tombstone_ms")]
    ttl_ms: u64,
}

fn default_tombstone_ms() -> u64 {
    3_600_000
}

async fn cache_delete(
    State(state): State<ApiState>,
    _admin: Admin,
    Path(key): Path<String>,
    Query(q): Query<CacheDelete>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .cache
        .cache_delete(&key, ttl(q.ttl_ms)?)
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    topic: String,
    payload: String,
}

async fn publish(
    State(state): State<ApiState>,
    admin: Admin,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Json<Value>, ApiError> {
    let event = state
        .services
        .events
        .publish(&body.topic, body.payload.into_bytes())
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    tracing::info!(
        admin = %admin.0.username,
        topic = %event.topic,
        stamp = event.stamp.time,
        "cluster event published"
    );
    Ok(Json(json!({ "stamp": event.stamp })))
}

/// Tells every node of the events' cluster that `key_id` is revoked, once the control plane
/// has removed it: nodes whose database or watcher lags (another region's) refuse the key at
/// once instead of at their next revision. The stored change stands if this fails.
pub(crate) fn announce_revoked_key(state: &ApiState, key_id: &str) {
    let revocation = shoal_state::Revocation {
        revoked: shoal_state::Revoked::Key(key_id.to_string()),
        lasts: shoal_state::DEFAULT_REVOCATION,
    };
    if let Err(e) = state
        .services
        .events
        .publish(shoal_state::REVOKE_TOPIC, revocation.payload().into_bytes())
    {
        tracing::warn!(key_id, "revocation event not published: {e}");
    }
}

/// Events delivered on this node, oldest first.
async fn events(State(state): State<ApiState>, _admin: Admin) -> Json<Value> {
    let list: Vec<Value> = state
        .services
        .events
        .delivered()
        .into_iter()
        .map(|e| {
            json!({
                "stamp": e.stamp,
                "topic": e.topic,
                "payload": String::from_utf8_lossy(&e.payload),
            })
        })
        .collect();
    Json(json!({ "events": list }))
}
