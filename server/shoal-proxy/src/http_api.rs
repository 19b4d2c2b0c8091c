//! The HTTP resource kind: the caller's API key names the user; every request is counted for
//! (user, resource, "access") and checked by every enabled policy before it is forwarded.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::decision::{
    Caller, Codes, Ctx, Facts, Refusal, anonymous_subject, audit, decide, respond,
};
use crate::forward::forward;
use crate::routes::{ApiKey, Routes};
use shoal_model::ANONYMOUS;

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
    bool::from(digest.as_slice().ct_eq(&entry.secret_sha256)).then_some(entry)
}

/// The path as policies see it: percent-decoded, so `/%61dmin` is `/admin` to a policy as it
/// is to the upstream. Paths that upstreams commonly normalize into another path (`.` and
/// `..` segments, empty segments) are refused instead of guessed at.
fn policy_path(raw: &str) -> Result<String, &'static str> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| "the request path is not UTF-8 once percent-decoded")?;
    let mut segments = decoded.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        if segment == "." || segment == ".." {
            return Err("the request path has '.' or '..' segments");
        }
        // A trailing slash is an empty last segment, and fine.
        if segment.is_empty() && segments.peek().is_some() {
            return Err("the request path has empty segments ('//')");
        }
    }
    Ok(decoded.into_owned())
}

/// Decides, audits, and forwards what is allowed. A request whose audit line cannot be kept
/// is refused, never served unaudited.
pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    (upstream, api_key_header): (&Uri, &HeaderName),
    mut req: Request<Body>,
) -> Response<Body> {
    let (routes, route, request_id) = (ctx.routes, ctx.route, ctx.request_id);
    let method = req.method().clone();
    let method = method.as_str();
    let (path, path_error) = match policy_path(req.uri().path()) {
        Ok(path) => (path, None),
        Err(e) => (req.uri().path().to_string(), Some(e)),
    };
    let query = req.uri().query().map(str::to_string);
    let facts = Facts {
        method,
        path: &path,
        bucket: Some(&route.name),
        counted: &route.name,
        key: None,
        operation: None,
        copy_source: None,
        headers: req.headers(),
        secret_header: Some(api_key_header),
        query: query.as_deref(),
    };
    let presented = req
        .headers()
        .get(api_key_header)
        .and_then(|v| v.to_str().ok());
    let key = presented.and_then(|p| identify(routes, p));
    // Only an anonymous caller is counted by address: a keyed request allocates nothing here.
    let anonymous_as = match presented {
        None => anonymous_subject(ctx),
        Some(_) => String::new(),
    };
    // Who is asking: the key's user, or, without a key where the resource allows the method,
    // an anonymous caller counted by its address.
    let caller = match (presented, key) {
        (None, _) if route.anonymous.allows(method) => Ok(Caller {
            user: ANONYMOUS,
            key_id: "",
            subject: &routes.anonymous,
            counted_as: &anonymous_as,
            anonymous: true,
        }),
        (None, _) if !route.anonymous.is_off() => Err(format!(
            "anonymous callers may only read resource {:?} (GET and HEAD); send your API key \
             in the {api_key_header} header to {method} it",
            route.name
        )),
        (None, _) => Err(format!("send your API key in the {api_key_header} header")),
        (Some(_), None) => Err("the API key is not valid".to_string()),
        (Some(_), Some(key)) => Ok(caller_of(key)),
    };
    let decision = match &caller {
        Err(message) => Err(Refusal::new(
            "unauthenticated",
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            message.clone(),
        )),
        Ok(_) if let Some(e) = path_error => Err(Refusal::new(
            "invalid",
            StatusCode::BAD_REQUEST,
            "invalid",
            e,
        )),
        Ok(caller) => decide(ctx, caller, &facts, CODES)
            .await
            .map(|decided| (decided, caller)),
    };
    let user = caller.as_ref().ok().and_then(Caller::audited_as);
    let audited = audit(ctx, user, &facts, decision.as_ref().err()).await;
    let (decided, caller) = match decision.and_then(|allowed| audited.map(|()| allowed)) {
        Ok(allowed) => allowed,
        Err(refusal) => return refusal_response(&refusal, request_id),
    };
    // The response stage's audit line names the request as the first did; the headers stay
    // with the request, which goes upstream.
    let no_headers = HeaderMap::new();
    let response_facts = Facts {
        method,
        path: &path,
        bucket: Some(&route.name),
        counted: &route.name,
        key: None,
        operation: None,
        copy_source: None,
        headers: &no_headers,
        secret_header: Some(api_key_header),
        query: query.as_deref(),
    };
    req.headers_mut().remove(api_key_header);
    let req = req.map(|body| decided.upload(ctx.node, body));
    let forwarded = forward(
        ctx.upstreams,
        upstream,
        req,
        request_id,
        ctx.peer_ip,
        ctx.upstream_timeout,
    )
    .await;
    let response = match forwarded {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(request_id, resource = %route.name, "{}", e.message);
            ctx.node.instruments.upstream_error(&route.name, e.status);
            return error(e.status, "upstream", &e.caller_message(), request_id);
        }
    };
    match respond(ctx, caller, &response_facts, &decided, response, CODES).await {
        Ok(response) => response,
        Err(refusal) => refusal_response(&refusal, request_id),
    }
}

/// How HTTP API callers are told no.
const CODES: Codes = Codes {
    blocked: "blocked",
    policy_error: "policy_error",
    unreachable: "unreachable",
};

fn caller_of(key: &ApiKey) -> Caller<'_> {
    Caller {
        user: &key.user,
        key_id: &key.key_id,
        subject: &key.subject,
        counted_as: &key.user,
        anonymous: false,
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
    fn policies_see_the_decoded_path_and_ambiguous_paths_are_refused() {
        for bad in [
            "/a/../b",
            "/./x",
            "/a/%2E%2e/b",
            "/a/.%2e",
            "/..",
            "//admin",
            "/a//b",
            "/a/%2F/b",
            "/%FF",
        ] {
            assert!(policy_path(bad).is_err(), "{bad}");
        }
        for (raw, seen) in [
            ("/a/b", "/a/b"),
            ("/%61dmin/x", "/admin/x"),
            ("/a/..b/c", "/a/..b/c"),
            ("/.well-known/x", "/.well-known/x"),
            ("/dir/", "/dir/"),
            ("/", "/"),
            ("/caf%C3%A9", "/café"),
        ] {
            assert_eq!(policy_path(raw).as_deref(), Ok(seen), "{raw}");
        }
    }
}
