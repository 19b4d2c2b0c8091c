//! The web console: server-rendered pages (askama templates from `web/templates`), live
//! fragments polled by htmx, and static assets embedded from `web/static` so a node serves
//! everything itself, offline.
//!
//! - `session`: cookie sessions, CSRF tokens and the guard every console POST passes.
//! - `pages`: what the console shows (pages and their live fragments).
//! - `forms`: what the console changes, through the same `AdminStore` calls as the API.

mod forms;
mod pages;
mod session;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::api::ApiState;
use session::ConsoleAdmin;

/// No inline script or style anywhere in the console: every script and stylesheet is a file
/// served by the node itself.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) fn routes() -> Router<ApiState> {
    let console = Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(pages::overview))
        .route("/console/login", get(forms::login_form).post(forms::login))
        .route("/console/logout", post(forms::logout))
        .route("/console/instances", get(pages::instances))
        .route("/console/events", get(pages::events))
        .route("/console/counters", get(pages::counters))
        .route(
            "/console/policies",
            get(pages::policies).post(forms::save_policy),
        )
        .route("/console/policies/new", get(pages::new_policy))
        .route(
            session::DOCUMENT_FORM_PATH,
            get(pages::documents)
                .post(forms::save_document)
                .layer(DefaultBodyLimit::max(session::DOCUMENT_FORM_LIMIT)),
        )
        .route("/console/data/new", get(pages::new_document))
        .route("/console/data/{name}", get(pages::edit_document))
        .route("/console/data/{name}/delete", post(forms::delete_document))
        .route("/console/policy-test", post(forms::test_policy))
        .route("/console/policies/{name}", get(pages::edit_policy))
        .route(
            "/console/policies/{name}/enabled",
            post(forms::set_policy_enabled),
        )
        .route(
            "/console/policies/{name}/delete",
            post(forms::delete_policy),
        )
        .route(
            "/console/resources",
            get(pages::resources).post(forms::save_resource),
        )
        .route("/console/resources/new", get(pages::new_resource))
        .route("/console/resources/{name}", get(pages::edit_resource))
        .route(
            "/console/resources/{name}/delete",
            post(forms::delete_resource),
        )
        .route("/console/users", get(pages::users).post(forms::create_user))
        .route(
            "/console/users/{name}/enabled",
            post(forms::set_user_enabled),
        )
        .route("/console/users/{name}/delete", post(forms::delete_user))
        .route("/console/users/{name}/keys", post(forms::create_key))
        .route("/console/keys/{key_id}/rotate", post(forms::rotate_key))
        .route("/console/keys/{key_id}/revoke", post(forms::revoke_key))
        .route(
            "/console/admins",
            get(pages::admins).post(forms::create_admin),
        )
        .route(
            "/console/admins/{name}/enabled",
            post(forms::set_admin_enabled),
        )
        .route("/console/audit", get(pages::audit))
        .route("/console/fragments/overview", get(pages::overview_fragment))
        .route(
            "/console/fragments/instances",
            get(pages::instances_fragment),
        )
        .route("/console/fragments/events", get(pages::events_fragment))
        .route("/console/fragments/counters", get(pages::counters_fragment))
        .layer(middleware::from_fn(session::csrf_guard))
        .layer(middleware::from_fn(console_headers));
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console/static/{*path}", get(static_file))
        .merge(console)
}

/// Headers every admin response carries (API included).
pub(crate) async fn common_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

/// Console pages: the CSP, and never cached (they carry a CSRF token and live data).
async fn console_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[derive(rust_embed::Embed)]
#[folder = "../../web/static/"]
struct Assets;

async fn static_file(Path(path): Path<String>) -> Response {
    let Some(file) = Assets::get(&path) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let kind = match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        file.data,
    )
        .into_response()
}

/// Navigation entries: (path, label, key used to mark the current page).
const NAV: [(&str, &str, &str); 10] = [
    ("/console/", "Overview", "overview"),
    ("/console/instances", "Instances", "instances"),
    ("/console/events", "Membership events", "events"),
    ("/console/counters", "Rate counters", "counters"),
    ("/console/policies", "Policies", "policies"),
    ("/console/data", "Data documents", "data"),
    ("/console/resources", "Resources", "resources"),
    ("/console/users", "Users & keys", "users"),
    ("/console/admins", "Admins", "admins"),
    ("/console/audit", "Audit log", "audit"),
];

struct NavItem {
    href: &'static str,
    label: &'static str,
    current: bool,
}

#[derive(Template)]
#[template(path = "layout.html")]
struct LayoutTpl<'a> {
    title: &'a str,
    nav: Vec<NavItem>,
    username: &'a str,
    csrf: &'a str,
    node: &'a str,
    version: &'static str,
    notice: Option<&'a str>,
    body: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTpl<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

/// A standalone page for refusals that happen before or outside a normal page (CSRF, body
/// too large, unreadable form, control plane down).
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let tpl = ErrorTpl {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("Error"),
        message,
    };
    match tpl.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => render_failed(&e),
    }
}

fn render_failed(e: &askama::Error) -> Response {
    tracing::error!("console template failed to render: {e}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the page could not be rendered",
    )
        .into_response()
}

/// Wraps a rendered page body in the layout.
pub(crate) struct Page<'a> {
    pub state: &'a ApiState,
    pub admin: &'a ConsoleAdmin,
    pub active: &'static str,
    pub title: &'a str,
    pub notice: Option<&'a str>,
}

impl Page<'_> {
    pub(crate) fn render(&self, status: StatusCode, body: &impl Template) -> Response {
        let body = match body.render() {
            Ok(b) => b,
            Err(e) => return render_failed(&e),
        };
        let tpl = LayoutTpl {
            title: self.title,
            nav: NAV
                .iter()
                .map(|&(href, label, key)| NavItem {
                    href,
                    label,
                    current: key == self.active,
                })
                .collect(),
            username: &self.admin.username,
            csrf: &self.admin.csrf,
            node: &self.state.node,
            version: env!("CARGO_PKG_VERSION"),
            notice: self.notice,
            body,
        };
        match tpl.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => render_failed(&e),
        }
    }
}

/// A fragment (htmx swaps it into a page), rendered without the layout.
pub(crate) fn fragment(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => render_failed(&e),
    }
}

/// A form body whose decoding errors come back as a page that names the problem.
pub(crate) struct FormData<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for FormData<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(FormData(v)),
            Err(e) => {
                let status = match e.status() {
                    StatusCode::BAD_REQUEST => StatusCode::UNPROCESSABLE_ENTITY,
                    other => other,
                };
                Err(error_page(
                    status,
                    &format!("The form could not be read: {}", e.body_text()),
                ))
            }
        }
    }
}
