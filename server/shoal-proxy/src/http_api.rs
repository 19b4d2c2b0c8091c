//! The HTTP resource kind: the caller's API key names the user; every request is counted for
//! (user, resource, "access") and checked by every enabled policy before it is forwarded.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::decision::{Caller, Ctx, Facts, Refusal, audit, decide};
use crate::forward::forward;
use crate::routes::{ApiKey, Routes};
use crate::sigv4::constant_time_eq;

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

/// Whether a path has `.` or `..` segments (plain or percent-encoded): refused, so a policy
/// that reads the path sees the path the upstream will serve.
fn has_dot_segments(path: &str) -> bool {
    path.split('/').any(|segment| {
        let lower = segment.to_ascii_lowercase().replace("%2e", ".");
        lower == "." || lower == ".."
    })
}

/// Decides, audits, and forwards what is allowed. A request whose audit line cannot be kept
/// is refused, never served unaudited.
pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    (upstream, api_key_header): (&Uri, &HeaderName),
    mut req: Request<Body>,
) -> Response<Body> {
    let (routes, route, request_id) = (ctx.routes, ctx.route, ctx.request_id);
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let facts = Facts {
        method: &method,
        path: &path,
        bucket: Some(&route.name),
        counted: &route.name,
        key: None,
        operation: None,
        copy_source: None,
    };
    let presented = req
        .headers()
        .get(api_key_header)
        .and_then(|v| v.to_str().ok());
    let key = presented.and_then(|p| identify(routes, p));
    let decision = match (presented, key) {
        (None, _) => Err(Refusal::new(
            "unauthenticated",
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            format!("send your API key in the {api_key_header} header"),
        )),
        (Some(_), None) => Err(Refusal::new(
            "unauthenticated",
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the API key is not valid",
        )),
        (Some(_), Some(_)) if has_dot_segments(&path) => Err(Refusal::new(
            "invalid",
            StatusCode::BAD_REQUEST,
            "invalid",
            "the request path has '.' or '..' segments",
        )),
        (Some(_), Some(key)) => {
            let caller = Caller {
                user: &key.user,
                subject: &key.subject,
            };
            decide(ctx, &caller, &facts, ("blocked", "policy_error")).await
        }
    };
    let audited = audit(
        ctx,
        key.map(|k| k.user.as_str()),
        &facts,
        decision.as_ref().err(),
    );
    if let Err(refusal) = decision.and(audited) {
        return refusal_response(&refusal, request_id);
    }
    req.headers_mut().remove(api_key_header);
    let shared = ctx.shared;
    match forward(
        &shared.upstreams,
        upstream,
        req,
        request_id,
        ctx.peer,
        shared.options.upstream_timeout,
    )
    .await
    {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(request_id, resource = %route.name, "{}", e.message);
            error(e.status, "upstream", &e.caller_message(), request_id)
        }
    }
}

/// The JSON refusal; a block carries the policy's type and name.
fn refusal_response(refusal: &Refusal, request_id: &str) -> Response<Body> {
    let mut response = error(refusal.status, refusal.code, &refusal.message, request_id);
    if refusal.policy.is_some() {
        let body = json!({"error": {
            "code": refusal.code,
            "type": refusal.kind,
            "message": refusal.message,
            "policy": refusal.policy,
            "request_id": request_id,
        }});
        *response.body_mut() = Body::from(body.to_string());
    }
    response
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
}
