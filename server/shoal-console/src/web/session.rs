//! Console sessions: the same PostgreSQL sessions as the API, carried in a cookie, plus the
//! CSRF token derived from them.
//!
//! The CSRF token is a hash of the session token, so every node can check it without storing
//! anything and it changes with every login; a page from another site can neither read the
//! cookie (HttpOnly, SameSite=Strict) nor compute the token.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use shoal_config::CookieSecure;
use subtle::ConstantTimeEq;

use crate::api::ApiState;
use crate::web::error_page;

pub(crate) const SESSION_COOKIE: &str = "shoal_session";
pub(crate) const LOGIN_CSRF_COOKIE: &str = "shoal_login_csrf";
pub(crate) const CSRF_FIELD: &str = "_csrf";
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Largest console form accepted (a policy may be 256 KiB, percent-encoded).
pub(crate) const FORM_LIMIT: usize = 1024 * 1024;

/// Where the data document form posts.
pub(crate) const DOCUMENT_FORM_PATH: &str = "/console/data";

/// Largest data document form: room for a document just over the control plane's limit,
/// percent-encoded, so that it reaches the store and comes back refused with the store's
/// message next to the form, not as a bare 413.
pub(crate) const DOCUMENT_FORM_LIMIT: usize = 4 * shoal_model::MAX_DOCUMENT_BYTES;

fn form_limit(path: &str) -> usize {
    if path == DOCUMENT_FORM_PATH {
        DOCUMENT_FORM_LIMIT
    } else {
        FORM_LIMIT
    }
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

pub(crate) fn csrf_for(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"shoal-console-csrf\0");
    h.update(session_token.as_bytes());
    hex::encode(h.finalize())
}

pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether cookies set in answer to this request carry `Secure` (see `http.cookie_secure`).
fn secure(mode: CookieSecure, headers: &HeaderMap) -> bool {
    match mode {
        CookieSecure::Always => true,
        CookieSecure::Never => false,
        CookieSecure::Auto => {
            let forwarded_https = headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("https"));
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            forwarded_https || !is_loopback_host(host)
        }
    }
}

fn is_loopback_host(host: &str) -> bool {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A `Set-Cookie` value: HttpOnly and SameSite=Strict always; `Secure` per the node's setting;
/// `max_age` 0 deletes the cookie.
pub(crate) fn set_cookie(
    state: &ApiState,
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age_s: u64,
) -> HeaderValue {
    let secure = if secure(state.cookie_secure, headers) {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .expect("cookie values are token characters")
}

/// The logged-in admin of a console request; extracting it is what makes a page require a
/// login. Pages redirect to the login form, htmx fragments answer 401 with `HX-Redirect`.
pub(crate) struct ConsoleAdmin {
    pub username: String,
    pub csrf: String,
}

impl ConsoleAdmin {
    pub(crate) fn actor(&self) -> String {
        format!("admin:{}", self.username)
    }
}

impl FromRequestParts<ApiState> for ConsoleAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Response> {
        let to_login = |parts: &Parts| {
            if parts.headers.contains_key("hx-request") {
                (
                    StatusCode::UNAUTHORIZED,
                    [("hx-redirect", "/console/login")],
                    "session expired",
                )
                    .into_response()
            } else if parts.method == Method::GET {
                let next = parts
                    .uri
                    .path_and_query()
                    .map_or("/console/", |p| p.as_str());
                let encoded: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
                Redirect::to(&format!("/console/login?next={encoded}")).into_response()
            } else {
                Redirect::to("/console/login").into_response()
            }
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login(parts));
        };
        match state.store.session(token).await {
            Ok(Some(identity)) => Ok(ConsoleAdmin {
                username: identity.username,
                csrf: csrf_for(token),
            }),
            Ok(None) => Err(to_login(parts)),
            Err(e) => {
                tracing::warn!("console session could not be checked: {e}");
                Err(error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Your session cannot be checked right now: the control plane is unavailable.",
                ))
            }
        }
    }
}

/// Refuses every state-changing console request (anything but GET/HEAD under `/console`,
/// the login form excepted: it has its own token) whose CSRF token is missing or wrong. The
/// token comes from the `X-CSRF-Token` header (htmx) or the `_csrf` form field; the body is
/// read here (bounded) and handed on unchanged.
pub(crate) async fn csrf_guard(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) || req.uri().path() == "/console/login" {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let refuse = |why: &str| {
        tracing::warn!(path = %path, "console request refused: {why}");
        error_page(
            StatusCode::FORBIDDEN,
            &format!("This form was refused: {why}. Reload the page and try again."),
        )
    };
    let Some(expected) = cookie(req.headers(), SESSION_COOKIE).map(csrf_for) else {
        return refuse("you are not logged in");
    };
    if let Some(sent) = req.headers().get(CSRF_HEADER) {
        if sent.to_str().is_ok_and(|s| same_secret(s, &expected)) {
            return next.run(req).await;
        }
        return refuse("the CSRF token is wrong");
    }
    let limit = form_limit(&path);
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            let mut res = error_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "This form is larger than {} KiB; nothing was changed.",
                    limit / 1024
                ),
            );
            // The rest of the body is not read: the connection cannot carry another request.
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return res;
        }
    };
    let sent = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    match sent {
        Some(s) if same_secret(&s, &expected) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Some(_) => refuse("the CSRF token is wrong"),
        None => refuse("the CSRF token is missing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.11:8080",
            "[::1]:80",
            "::1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "shoal.example.com",
            "10.0.0.5:8080",
            "[2001:db8::1]:443",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_compare_exactly() {
        let a = csrf_for("session-a");
        assert_eq!(a, csrf_for("session-a"));
        assert_ne!(a, csrf_for("session-b"));
        assert!(same_secret(&a, &csrf_for("session-a")));
        assert!(!same_secret(&a, &a[..a.len() - 1]));
        assert!(!same_secret(&a, &csrf_for("session-b")));
    }

    #[test]
    fn cookies_are_secure_unless_the_console_is_reached_over_plain_loopback() {
        let headers = |host: &str, proto: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            if let Some(p) = proto {
                h.insert("x-forwarded-proto", HeaderValue::from_str(p).unwrap());
            }
            h
        };
        let local = headers("127.0.0.1:8080", None);
        let remote = headers("shoal.example.com", None);
        let proxied_local = headers("localhost:8080", Some("HTTPS"));
        assert!(!secure(CookieSecure::Auto, &local));
        assert!(secure(CookieSecure::Auto, &remote));
        assert!(secure(CookieSecure::Auto, &proxied_local));
        assert!(secure(CookieSecure::Always, &local));
        assert!(!secure(CookieSecure::Never, &remote));
    }

    /// The guard in front of a handler that echoes the body it was handed.
    async fn guarded(req: Request) -> (StatusCode, HeaderMap, String) {
        use tower::ServiceExt as _;
        let app = axum::Router::new()
            .route(
                "/console/{*rest}",
                axum::routing::any(|body: axum::body::Bytes| async move { body }),
            )
            .layer(axum::middleware::from_fn(csrf_guard));
        let res = app.oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into(),
        )
    }

    fn post(path: &str, session: Option<&str>, header_token: Option<&str>, body: &str) -> Request {
        let mut req = Request::post(path);
        if let Some(s) = session {
            req = req.header(header::COOKIE, format!("{SESSION_COOKIE}={s}"));
        }
        if let Some(t) = header_token {
            req = req.header(CSRF_HEADER, t);
        }
        req.body(axum::body::Body::from(body.to_string())).unwrap()
    }

    #[tokio::test]
    async fn csrf_guard_passes_only_the_sessions_own_token() {
        let token = csrf_for("tok");
        let form = format!("name=p1&{CSRF_FIELD}={token}&rego=x");

        let (status, _, body) = guarded(post("/console/policies", Some("tok"), None, &form)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, form, "the form reaches the handler unchanged");
        let (status, _, _) =
            guarded(post("/console/policies", Some("tok"), Some(&token), "x=1")).await;
        assert_eq!(status, StatusCode::OK, "htmx sends the token as a header");

        for (req, why) in [
            (
                post("/console/policies", None, None, &form),
                "not logged in",
            ),
            (
                post("/console/policies", Some("other"), None, &form),
                "CSRF token is wrong",
            ),
            (
                post("/console/policies", Some("tok"), Some("nope"), &form),
                "CSRF token is wrong",
            ),
            (
                post("/console/policies", Some("tok"), None, "name=p1"),
                "CSRF token is missing",
            ),
        ] {
            let (status, _, body) = guarded(req).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{why}");
            assert!(body.contains(why), "{why}: {body}");
        }
    }

    #[tokio::test]
    async fn csrf_guard_lets_reads_and_the_login_form_through_and_bounds_forms() {
        let read = Request::get("/console/policies")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(guarded(read).await.0, StatusCode::OK);
        let login = post("/console/login", None, None, "username=a");
        assert_eq!(
            guarded(login).await.0,
            StatusCode::OK,
            "it has its own token"
        );

        let huge = "x".repeat(FORM_LIMIT + 1);
        let (status, headers, body) =
            guarded(post("/console/policies", Some("tok"), None, &huge)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(headers[header::CONNECTION], "close");
        assert!(body.contains("nothing was changed"), "{body}");

        // A data document just over the store's limit still reaches the handler (the store
        // refuses it with its reason); four times that does not.
        let token = csrf_for("tok");
        let document = |size: usize| format!("{CSRF_FIELD}={token}&document={}", "x".repeat(size));
        let over_store_limit = document(shoal_model::MAX_DOCUMENT_BYTES + 1);
        let (status, _, body) = guarded(post(
            DOCUMENT_FORM_PATH,
            Some("tok"),
            None,
            &over_store_limit,
        ))
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.len(), over_store_limit.len());
        let (status, _, body) = guarded(post(
            DOCUMENT_FORM_PATH,
            Some("tok"),
            None,
            &document(DOCUMENT_FORM_LIMIT),
        ))
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("larger than 4096 KiB"), "{body}");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; shoal_session=tok; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "missing"), None);
    }
}
