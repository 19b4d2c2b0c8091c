//! What the console changes. Every change goes through the same `AdminStore` call as the API
//! (so the same validation, the same single transaction, the same audit line), with the admin
//! as the actor; a refused change re-renders its form with the submitted values and the
//! reason.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use shoal_model::{
    DataDocument, Enforcement, ModelError, NewCredential, OnError, OnUnreachable, Policy, Resource,
};
use shoal_policy::Stage;

use crate::api::ApiState;
use crate::login::{self, LoginOutcome};
use crate::views::{self, SAMPLE_INPUT, TrialView};
use crate::web::pages::{
    DocumentEditTpl, PolicyEditTpl, ResourceEditTpl, admins_page, store_failure, users_page,
};
use crate::web::session::{
    ConsoleAdmin, LOGIN_CSRF_COOKIE, SESSION_COOKIE, cookie, same_secret, set_cookie,
};
use crate::web::{FormData, Page, error_page, fragment};

/// Where to go after logging in: only console paths, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with("/console/")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/console/",
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginTpl<'a> {
    csrf: &'a str,
    next: &'a str,
    username: &'a str,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

/// The login form carries a random token that must match a cookie set with it (the session
/// CSRF token does not exist yet), so another site cannot log a browser into its account.
fn login_page(
    state: &ApiState,
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    username: &str,
    error: Option<&str>,
) -> Response {
    let token = hex::encode(rand::random::<[u8; 32]>());
    let html = match (LoginTpl {
        csrf: &token,
        next: safe_next(Some(next)),
        username,
        error,
    })
    .render()
    {
        Ok(h) => h,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    (
        status,
        [(
            header::SET_COOKIE,
            set_cookie(state, headers, LOGIN_CSRF_COOKIE, &token, 3600),
        )],
        axum::response::Html(html),
    )
        .into_response()
}

pub(crate) async fn login_form(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    login_page(
        &s,
        &headers,
        StatusCode::OK,
        q.next.as_deref().unwrap_or("/console/"),
        "",
        None,
    )
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    username: String,
    password: String,
    #[serde(rename = "_csrf")]
    csrf: String,
    #[serde(default)]
    next: String,
}

pub(crate) async fn login(
    State(s): State<ApiState>,
    headers: HeaderMap,
    FormData(f): FormData<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    if expected.is_empty() || !same_secret(expected, &f.csrf) {
        return login_page(
            &s,
            &headers,
            StatusCode::FORBIDDEN,
            &f.next,
            "",
            Some("The login form expired or was not sent by this site. Try again."),
        );
    }
    let username: String = f.username.chars().take(200).collect();
    match login::attempt(&s, &username, &f.password).await {
        Ok(LoginOutcome::LoggedIn(session)) => {
            let ttl = s.session_ttl.as_secs();
            let mut res = Redirect::to(safe_next(Some(&f.next))).into_response();
            let h = res.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(&s, &headers, SESSION_COOKIE, &session.token, ttl),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(&s, &headers, LOGIN_CSRF_COOKIE, "", 0),
            );
            res
        }
        Ok(LoginOutcome::Denied) => login_page(
            &s,
            &headers,
            StatusCode::UNAUTHORIZED,
            &f.next,
            &username,
            Some("Wrong username or password."),
        ),
        Ok(LoginOutcome::LockedOut { window, .. }) => login_page(
            &s,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            &f.next,
            &username,
            Some(&format!(
                "Too many failed logins for this account in {window}. Wait a minute and try \
                 again."
            )),
        ),
        Err(e) => {
            tracing::warn!("console login could not be checked: {e}");
            login_page(
                &s,
                &headers,
                StatusCode::SERVICE_UNAVAILABLE,
                &f.next,
                &username,
                Some("Logins cannot be checked right now: the control plane is unavailable."),
            )
        }
    }
}

/// Ends the session in PostgreSQL, so it is refused on every node from the next request.
pub(crate) async fn logout(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = s.store.logout(token).await
    {
        return store_failure(e);
    }
    let mut res = Redirect::to("/console/login").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&s, &headers, SESSION_COOKIE, "", 0),
    );
    res
}

/// After a successful change: back to the list, with the revision in the address so the page
/// can say what happened.
fn saved(to: &str, revision: i64) -> Response {
    Redirect::to(&format!("{to}?saved={revision}")).into_response()
}

/// The answer to a change that has no form to re-render: the list it belongs to, or why not.
fn after_change(to: &str, result: Result<i64, ModelError>) -> Response {
    match result {
        Ok(revision) => saved(to, revision),
        Err(e) => store_failure(e),
    }
}

fn checkbox(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|v| v == "on" || v == "true")
}

#[derive(Deserialize)]
pub(crate) struct PolicyForm {
    name: String,
    rego: String,
    enforcement: String,
    on_error: String,
    on_unreachable: String,
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    shadow: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    creating: Option<String>,
}

pub(crate) async fn save_policy(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    FormData(f): FormData<PolicyForm>,
) -> Response {
    let creating = checkbox(&f.creating);
    let enabled = checkbox(&f.enabled);
    let shadow = checkbox(&f.shadow);
    let parsed = Enforcement::parse(&f.enforcement)
        .map_err(|e| format!("enforcement: {e}"))
        .and_then(|enforcement| {
            OnError::parse(&f.on_error)
                .map(|on_error| (enforcement, on_error))
                .map_err(|e| format!("on error: {e}"))
        })
        .and_then(|(enforcement, on_error)| {
            OnUnreachable::parse(&f.on_unreachable)
                .map(|on_unreachable| (enforcement, on_error, on_unreachable))
                .map_err(|e| format!("on unreachable: {e}"))
        });
    let result = match parsed {
        Err(e) => Err(ModelError::Invalid(e)),
        Ok(_) if creating && exists_policy(&s, &f.name).await => Err(ModelError::Invalid(format!(
            "a policy named {:?} already exists; edit it instead",
            f.name
        ))),
        Ok((enforcement, on_error, on_unreachable)) => {
            let policy = Policy {
                name: f.name.clone(),
                rego: f.rego.clone(),
                enforcement,
                on_error,
                on_unreachable,
                shadow,
                enabled,
                description: f.description.clone(),
            };
            s.store.put_policy(&admin.actor(), &policy).await
        }
    };
    match result {
        Ok(revision) => saved("/console/policies", revision),
        Err(ModelError::Invalid(error)) => {
            let title = if creating {
                "New policy".to_string()
            } else {
                format!("Policy {}", f.name)
            };
            Page {
                state: &s,
                admin: &admin,
                active: "policies",
                title: &title,
                notice: None,
            }
            .render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &PolicyEditTpl {
                    creating,
                    name: f.name,
                    rego: f.rego,
                    enforcement: f.enforcement,
                    on_error: f.on_error,
                    on_unreachable: f.on_unreachable,
                    enabled,
                    shadow,
                    description: f.description,
                    error: Some(error),
                    csrf: admin.csrf.clone(),
                    sample: SAMPLE_INPUT,
                },
            )
        }
        Err(e) => store_failure(e),
    }
}

async fn exists_policy(s: &ApiState, name: &str) -> bool {
    s.store
        .list_policies()
        .await
        .is_ok_and(|l| l.iter().any(|p| p.name == name))
}

/// The state the admin asked for (not "flip it"), so a double click or two admins at once
/// cannot undo each other.
#[derive(Deserialize)]
pub(crate) struct EnabledForm {
    enabled: bool,
}

pub(crate) async fn set_policy_enabled(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Path(name): Path<String>,
    FormData(f): FormData<EnabledForm>,
) -> Response {
    after_change(
        "/console/policies",
        s.store
            .set_policy_enabled(&admin.actor(), &name, f.enabled)
            .await,
    )
}

pub(crate) async fn delete_policy(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Path(name): Path<String>,
) -> Response {
    after_change(
        "/console/policies",
        s.store.delete_policy(&admin.actor(), &name).await,
    )
}

#[derive(Template)]
#[template(path = "fragments/trial.html")]
struct TrialFragment {
    t: TrialView,
}

#[derive(Deserialize)]
pub(crate) struct TrialForm {
    rego: String,
    input: String,
    #[serde(
        default = "views::request_stage",
        deserialize_with = "views::trial_stage"
    )]
    stage: Stage,
}

/// "Test this policy": evaluates the editor's text at the chosen stage on the sample input,
/// with the data documents this node enforces; stores nothing.
pub(crate) async fn test_policy(
    State(s): State<ApiState>,
    _admin: ConsoleAdmin,
    FormData(f): FormData<TrialForm>,
) -> Response {
    let documents = views::documents_in_force(&s);
    fragment(&TrialFragment {
        t: views::trial(f.rego, f.input, f.stage, documents).await,
    })
}

#[derive(Deserialize)]
pub(crate) struct DocumentForm {
    name: String,
    document: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    creating: Option<String>,
}

/// Stores a data document through the same store call as the API, which refuses a bad name,
/// an oversize document or one that would hide a policy's package; the form comes back with
/// the reason and nothing is stored.
pub(crate) async fn save_document(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    FormData(f): FormData<DocumentForm>,
) -> Response {
    let creating = checkbox(&f.creating);
    let exists = || async {
        s.store
            .list_documents()
            .await
            .is_ok_and(|l| l.iter().any(|d| d.document.name == f.name))
    };
    let result = match serde_json::from_str::<serde_json::Value>(&f.document) {
        Err(e) => Err(ModelError::Invalid(format!(
            "the document is not valid JSON: {e}"
        ))),
        Ok(_) if creating && exists().await => Err(ModelError::Invalid(format!(
            "a data document named {:?} already exists; edit it instead",
            f.name
        ))),
        Ok(document) => {
            let document = DataDocument {
                name: f.name.clone(),
                document,
                description: f.description.clone(),
            };
            s.store.put_document(&admin.actor(), &document).await
        }
    };
    match result {
        Ok(revision) => saved("/console/data", revision),
        Err(ModelError::Invalid(error) | ModelError::Conflict(error)) => {
            let title = if creating {
                "New data document".to_string()
            } else {
                format!("Data document {}", f.name)
            };
            Page {
                state: &s,
                admin: &admin,
                active: "data",
                title: &title,
                notice: None,
            }
            .render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &DocumentEditTpl {
                    creating,
                    name: f.name,
                    document: f.document,
                    description: f.description,
                    error: Some(error),
                    csrf: admin.csrf.clone(),
                    limit: views::document_limit(),
                },
            )
        }
        Err(e) => store_failure(e),
    }
}

pub(crate) async fn delete_document(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Path(name): Path<String>,
) -> Response {
    after_change(
        "/console/data",
        s.store.delete_document(&admin.actor(), &name).await,
    )
}

#[derive(Deserialize)]
pub(crate) struct ResourceForm {
    name: String,
    kind: String,
    spec: String,
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    creating: Option<String>,
}

pub(crate) async fn save_resource(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    FormData(f): FormData<ResourceForm>,
) -> Response {
    let creating = checkbox(&f.creating);
    let enabled = checkbox(&f.enabled);
    let exists = || async {
        s.store
            .list_resources()
            .await
            .is_ok_and(|l| l.iter().any(|r| r.name == f.name))
    };
    let result = match serde_json::from_str::<serde_json::Value>(&f.spec) {
        Err(e) => Err(ModelError::Invalid(format!(
            "settings are not valid JSON: {e}"
        ))),
        Ok(v) if !v.is_object() => {
            Err(ModelError::Invalid("settings must be a JSON object".into()))
        }
        Ok(_) if creating && exists().await => Err(ModelError::Invalid(format!(
            "a resource named {:?} already exists; edit it instead",
            f.name
        ))),
        Ok(v) => match s.store.resource_spec(&f.kind, v) {
            Ok(spec) => {
                // The form does not show attributes (the API sets them): an edit keeps them.
                let attributes = s
                    .store
                    .list_resources()
                    .await
                    .ok()
                    .and_then(|l| l.into_iter().find(|r| r.name == f.name))
                    .map(|r| r.attributes)
                    .unwrap_or_default();
                let resource = Resource {
                    name: f.name.clone(),
                    enabled,
                    description: f.description.clone(),
                    spec,
                    attributes,
                };
                s.store.put_resource(&admin.actor(), &resource).await
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(revision) => saved("/console/resources", revision),
        Err(ModelError::Invalid(error) | ModelError::Conflict(error)) => {
            let title = if creating {
                "New resource".to_string()
            } else {
                format!("Resource {}", f.name)
            };
            Page {
                state: &s,
                admin: &admin,
                active: "resources",
                title: &title,
                notice: None,
            }
            .render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &ResourceEditTpl {
                    creating,
                    name: f.name,
                    kind: f.kind,
                    spec: f.spec,
                    enabled,
                    description: f.description,
                    error: Some(error),
                    csrf: admin.csrf.clone(),
                },
            )
        }
        Err(e) => store_failure(e),
    }
}

pub(crate) async fn delete_resource(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Path(name): Path<String>,
) -> Response {
    after_change(
        "/console/resources",
        s.store.delete_resource(&admin.actor(), &name).await,
    )
}

#[derive(Deserialize)]
pub(crate) struct UserForm {
    name: String,
    #[serde(default)]
    description: String,
}

pub(crate) async fn create_user(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    FormData(f): FormData<UserForm>,
) -> Response {
    let exists = s
        .store
        .list_users()
        .await
        .is_ok_and(|l| l.iter().any(|u| u.name == f.name));
    let result = if exists {
        Err(ModelError::Invalid(format!(
            "a user named {:?} already exists",
            f.name
        )))
    } else {
        s.store
            .put_user(
                &admin.actor(),
                &f.name,
                true,
                &f.description,
                &Default::default(),
            )
            .await
    };
    match result {
        Ok(revision) => saved("/console/users", revision),
        Err(ModelError::Invalid(e)) => {
            users_page(
                &s,
                &admin,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some(e),
                f.name,
                f.description,
            )
            .await
        }
        Err(e) => store_failure(e),
    }
}

pub(crate) async fn set_user_enabled(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Path(name): Path<String>,
    FormData(f): FormData<EnabledForm>,
) -> Response {
    after_change(
        "/console/users",
        s.store
            .set_user_enabled(&admin.actor(), &name, f.enabled)
            .await,
    )
}

pub(crate) async fn delete_user(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Path(name): Path<String>,
) -> Response {
    after_change(
        "/console/users",
        s.store.delete_user(&admin.actor(), &name).await,
    )
}

#[derive(Template)]
#[template(path = "secret.html")]
struct SecretTpl {
    user: String,
    kind: String,
    key_id: String,
    secret: String,
    replaced: Option<String>,
    revision: i64,
}

#[derive(Deserialize)]
pub(crate) struct KeyForm {
    kind: String,
}

/// The new secret is shown on this one page and never again (only its hash or sealed form is
/// stored).
fn show_secret(
    s: &ApiState,
    admin: &ConsoleAdmin,
    user: String,
    created: NewCredential,
    replaced: Option<String>,
) -> Response {
    Page {
        state: s,
        admin,
        active: "users",
        title: "New key",
        notice: None,
    }
    .render(
        StatusCode::CREATED,
        &SecretTpl {
            user,
            kind: created.kind.to_string(),
            key_id: created.key_id,
            secret: created.secret,
            replaced,
            revision: created.revision,
        },
    )
}

pub(crate) async fn create_key(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Path(name): Path<String>,
    FormData(f): FormData<KeyForm>,
) -> Response {
    match s
        .store
        .create_credential(&admin.actor(), &name, &f.kind)
        .await
    {
        Ok(created) => show_secret(&s, &admin, name, created, None),
        Err(ModelError::Invalid(e)) => {
            users_page(
                &s,
                &admin,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some(e),
                String::new(),
                String::new(),
            )
            .await
        }
        Err(e) => store_failure(e),
    }
}

pub(crate) async fn rotate_key(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Path(key_id): Path<String>,
) -> Response {
    let user = s.store.list_users().await.ok().and_then(|users| {
        users
            .into_iter()
            .find(|u| u.credentials.iter().any(|c| c.key_id == key_id))
            .map(|u| u.name)
    });
    match s.store.rotate_credential(&admin.actor(), &key_id).await {
        Ok(created) => show_secret(&s, &admin, user.unwrap_or_default(), created, Some(key_id)),
        Err(e) => store_failure(e),
    }
}

pub(crate) async fn revoke_key(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Path(key_id): Path<String>,
) -> Response {
    let deleted = s.store.delete_credential(&admin.actor(), &key_id).await;
    if deleted.is_ok() {
        crate::state_api::announce_revoked_key(&s, &key_id);
    }
    after_change("/console/users", deleted)
}

#[derive(Deserialize)]
pub(crate) struct AdminForm {
    username: String,
    password: String,
    confirm: String,
}

pub(crate) async fn create_admin(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    FormData(f): FormData<AdminForm>,
) -> Response {
    let result = if f.password != f.confirm {
        Err(ModelError::Invalid("the two passwords differ".to_string()))
    } else {
        s.store
            .create_admin(&admin.actor(), &f.username, &f.password)
            .await
    };
    match result {
        Ok(()) => Redirect::to("/console/admins?created=1").into_response(),
        Err(ModelError::Invalid(e) | ModelError::Conflict(e)) => {
            admins_page(
                &s,
                &admin,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(e),
                f.username.chars().take(64).collect(),
            )
            .await
        }
        Err(e) => store_failure(e),
    }
}

pub(crate) async fn set_admin_enabled(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Path(name): Path<String>,
    FormData(f): FormData<EnabledForm>,
) -> Response {
    let enabled = f.enabled;
    match s
        .store
        .set_admin_disabled(&admin.actor(), &name, !enabled)
        .await
    {
        Ok(()) => Redirect::to("/console/admins").into_response(),
        Err(ModelError::Conflict(e)) => {
            admins_page(&s, &admin, StatusCode::CONFLICT, Some(e), String::new()).await
        }
        Err(e) => store_failure(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_login_only_console_paths_are_followed() {
        for ok in [
            "/console/",
            "/console/policies?q=a%20b",
            "/console/users/alice",
        ] {
            assert_eq!(safe_next(Some(ok)), ok);
        }
        for bad in [
            None,
            Some(""),
            Some("https://evil.example/console/"),
            Some("//evil.example/console/"),
            Some("/console\\..\\evil"),
            Some("/console/\\evil.example"),
            Some("/metrics"),
            Some("/console/a b"),
            Some("/console/\u{7f}"),
            Some("/console/é"),
        ] {
            assert_eq!(safe_next(bad), "/console/", "{bad:?}");
        }
    }

    #[test]
    fn checkboxes_are_on_only_when_checked() {
        assert!(checkbox(&Some("on".into())));
        assert!(checkbox(&Some("true".into())));
        for off in [
            None,
            Some(String::new()),
            Some("off".into()),
            Some("1".into()),
        ] {
            assert!(!checkbox(&off), "{off:?}");
        }
    }
}
