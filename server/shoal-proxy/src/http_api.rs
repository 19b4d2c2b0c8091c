//! The HTTP resource kind: the caller's API key names the user; every request is counted for
//! (user, resource, "access") and checked by every enabled policy before it is forwarded.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use shoal_policy::{Input, RequestFacts, Verdict};
use shoal_state::{CounterKey, Limit, Mode};

use crate::forward::forward;
use crate::listeners::Shared;
use crate::routes::{ApiKey, Route, RouteKind, Routes};
use shoal_control_plane::{AuditEntry, OnError};

/// The action every request counts under: policies read how often a user accessed a resource.
const ACTION: &str = "access";

pub(crate) fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<Body> {
    let body = json!({"error": {"code": code, "message": message, "request_id": request_id}});
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    response
}

/// `shoal_<key_id>_<secret>` → the key's entry, if the secret matches.
fn identify<'a>(routes: &'a Routes, presented: &str) -> Option<&'a ApiKey> {
    let rest = presented.strip_prefix("shoal_")?;
    let (key_id, secret) = rest.split_once('_')?;
    let entry = routes.api_keys.get(key_id)?;
    let digest = Sha256::digest(secret.as_bytes());
    constant_time_eq(digest.as_slice(), &entry.secret_sha256).then_some(entry)
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a path has `.` or `..` segments (plain or percent-encoded): refused, so a policy
/// that reads the path sees the path the upstream will serve.
fn has_dot_segments(path: &str) -> bool {
    path.split('/').any(|segment| {
        let lower = segment.to_ascii_lowercase().replace("%2e", ".");
        lower == "." || lower == ".."
    })
}

/// What one request came to, for the audit log.
struct Decided {
    user: Option<String>,
    outcome: &'static str,
    policy: Option<String>,
    kind: Option<String>,
}

impl Decided {
    fn new(user: Option<&str>, outcome: &'static str) -> Self {
        Self {
            user: user.map(str::to_string),
            outcome,
            policy: None,
            kind: None,
        }
    }
}

/// Decides, audits, and forwards what is allowed. A request whose audit line cannot be kept
/// is refused, never served unaudited.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    routes: &Routes,
    route: &Route,
    req: Request<Body>,
    peer: SocketAddr,
    request_id: &str,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let (refusal, decided) = decide(
        shared,
        routes,
        route,
        (req.headers(), &method, &path),
        peer,
        request_id,
    )
    .await;
    let entry = AuditEntry {
        event_id: uuid::Uuid::new_v4(),
        at: chrono::Utc::now(),
        actor: decided
            .user
            .as_ref()
            .map_or_else(|| "anonymous".to_string(), |u| format!("user:{u}")),
        action: "request".into(),
        target: route.name.clone(),
        outcome: decided.outcome.into(),
        detail: json!({
            "request_id": request_id,
            "method": method,
            "path": path,
            "policy": decided.policy,
            "type": decided.kind,
            "source_ip": peer.ip().to_string(),
            "decision_us": started.elapsed().as_micros() as u64,
        }),
    };
    if let Err(e) = shared.audit.record(entry) {
        tracing::error!(request_id, resource = %route.name, "audit: {e}; request refused");
        if refusal.is_none() {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the request cannot be audited right now; try again later",
                request_id,
            );
        }
    }
    if let Some(response) = refusal {
        return response;
    }
    let RouteKind::Http {
        upstream,
        api_key_header,
    } = &route.kind;
    match forward(
        &shared.upstreams,
        upstream,
        req,
        api_key_header,
        request_id,
        peer,
        shared.options.upstream_timeout,
    )
    .await
    {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(request_id, resource = %route.name, "{}", e.message);
            error(e.status, "upstream", &e.message, request_id)
        }
    }
}

/// The refusal to send (`None`: forward), and what was decided.
async fn decide(
    shared: &Arc<Shared>,
    routes: &Routes,
    route: &Route,
    (headers, method, path): (&HeaderMap, &str, &str),
    peer: SocketAddr,
    request_id: &str,
) -> (Option<Response<Body>>, Decided) {
    let RouteKind::Http {
        api_key_header: credential_header,
        ..
    } = &route.kind;
    let presented = headers.get(credential_header).and_then(|v| v.to_str().ok());
    let refuse = |status, code, message: &str, user: Option<&str>| {
        (
            Some(error(status, code, message, request_id)),
            Decided::new(user, code),
        )
    };
    let Some(presented) = presented else {
        let message = format!("send your API key in the {credential_header} header");
        return refuse(StatusCode::UNAUTHORIZED, "unauthenticated", &message, None);
    };
    let Some(key) = identify(routes, presented) else {
        let message = "the API key is not valid";
        return refuse(StatusCode::UNAUTHORIZED, "unauthenticated", message, None);
    };
    let user = Some(key.user.as_str());
    if has_dot_segments(path) {
        let message = "the request path has '.' or '..' segments";
        return refuse(StatusCode::BAD_REQUEST, "invalid", message, user);
    }
    if let Some(policy) = routes.broken.first() {
        let message =
            format!("policy {policy:?} could not be compiled on this node; requests are refused");
        let (response, mut decided) = refuse(StatusCode::FORBIDDEN, "policy_error", &message, user);
        decided.policy = Some(policy.clone());
        return (response, decided);
    }
    let Ok(counter) = CounterKey::new(key.user.as_str(), route.name.as_str(), ACTION) else {
        let message = "the user or resource name cannot be counted";
        return refuse(StatusCode::BAD_REQUEST, "invalid", message, user);
    };
    let mode = if routes.strict {
        Mode::Strict
    } else {
        Mode::Eventual
    };
    // Counting first: the request being decided is one of the accesses the policy sees.
    let counted = shared
        .state
        .check(
            &counter,
            Limit {
                window: 0,
                max: u64::MAX,
                mode,
            },
            1,
        )
        .await;
    let input = Input::request(&RequestFacts {
        bucket: Some(&route.name),
        windows: &routes.windows,
        counts: &counted.totals,
        user: &key.subject,
        method,
        path,
        operation: None,
        source_ip: Some(&peer.ip().to_string()),
        resource: &route.target,
    });
    for (policy, on_error) in &routes.policies {
        match policy.evaluate(&input) {
            Ok(Verdict::Allow) => {}
            Ok(Verdict::Block { kind, message }) => {
                tracing::info!(
                    request_id,
                    user = %key.user,
                    resource = %route.name,
                    policy = policy.name(),
                    kind = %kind,
                    "request blocked"
                );
                let body = json!({"error": {
                    "code": "blocked",
                    "type": kind,
                    "message": message.unwrap_or_else(|| format!("blocked by policy {}", policy.name())),
                    "policy": policy.name(),
                    "request_id": request_id,
                }});
                let mut response = error(StatusCode::FORBIDDEN, "blocked", "", request_id);
                *response.body_mut() = Body::from(body.to_string());
                let mut decided = Decided::new(user, "blocked");
                decided.policy = Some(policy.name().to_string());
                decided.kind = Some(kind);
                return (Some(response), decided);
            }
            Err(e) => {
                shared
                    .policy_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let skip = *on_error == OnError::Allow;
                let consequence = if skip {
                    "policy skipped (on_error = allow)"
                } else {
                    "request refused (fail closed)"
                };
                tracing::warn!(request_id, policy = policy.name(), "{e}; {consequence}");
                if skip {
                    continue;
                }
                let response = error(
                    StatusCode::FORBIDDEN,
                    "policy_error",
                    &format!("policy {:?} failed; the request is refused", policy.name()),
                    request_id,
                );
                let mut decided = Decided::new(user, "policy_error");
                decided.policy = Some(policy.name().to_string());
                return (Some(response), decided);
            }
        }
    }
    (None, Decided::new(user, "allowed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_plain_and_encoded() {
        for bad in ["/a/../b", "/./x", "/a/%2E%2e/b", "/a/.%2e", "/.."] {
            assert!(has_dot_segments(bad), "{bad}");
        }
        for ok in ["/a/b", "/a/..b/c", "/.well-known/x", "/a/b.c"] {
            assert!(!has_dot_segments(ok), "{ok}");
        }
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
