//! Console pages and their live fragments. Data comes from `views` (the same structs the JSON
//! twins return) or straight from the `AdminStore`.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use shoal_model::{AuditPage, ModelError, Policy, Resource, UserSummary};

use crate::api::{ApiState, AuditFilter};
use crate::views::{
    self, CounterHistory, CountersView, DocumentRow, EventView, InstancesView, OverviewView,
    SAMPLE_INPUT,
};
use crate::web::session::ConsoleAdmin;
use crate::web::{Page, error_page, fragment};

fn page<'a>(
    state: &'a ApiState,
    admin: &'a ConsoleAdmin,
    active: &'static str,
    title: &'a str,
) -> Page<'a> {
    Page {
        state,
        admin,
        active,
        title,
        notice: None,
    }
}

/// `?saved=<revision>`, set by the redirect after a successful change.
#[derive(Deserialize)]
pub(crate) struct Saved {
    saved: Option<i64>,
}

impl Saved {
    fn notice(&self) -> Option<String> {
        self.saved.map(|r| {
            format!(
                "Saved as configuration revision {r}. Every node applies it within about a \
                 second of PostgreSQL's notification."
            )
        })
    }
}

/// Renders a store error as the page's message (the store's messages name what is wrong).
pub(crate) fn store_failure(e: ModelError) -> Response {
    let status = match &e {
        ModelError::NotFound(_) => StatusCode::NOT_FOUND,
        ModelError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ModelError::Conflict(_) => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    error_page(status, &e.to_string())
}

#[derive(Template)]
#[template(path = "fragments/overview.html")]
struct OverviewFragment {
    v: OverviewView,
}

#[derive(Template)]
#[template(path = "live.html")]
struct LiveTpl<'a> {
    heading: &'a str,
    intro: &'a str,
    source: String,
    every: &'a str,
    content: String,
}

fn live(
    heading: &str,
    intro: &str,
    source: String,
    every: &str,
    content: &impl Template,
) -> Result<String, askama::Error> {
    LiveTpl {
        heading,
        intro,
        source,
        every,
        content: content.render()?,
    }
    .render()
}

/// A page made of one live fragment that htmx refreshes in place.
fn live_page(
    p: Page<'_>,
    intro: &str,
    source: String,
    every: &str,
    content: &impl Template,
) -> Response {
    match live(p.title, intro, source, every, content) {
        Ok(html) => p.render(StatusCode::OK, &Raw { html }),
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Already-rendered HTML handed to the layout.
#[derive(Template)]
#[template(source = "{{ html|safe }}", ext = "html")]
struct Raw {
    html: String,
}

pub(crate) async fn overview(State(s): State<ApiState>, admin: ConsoleAdmin) -> Response {
    live_page(
        page(&s, &admin, "overview", "Overview"),
        "Cluster health, members, control plane and audit spool, as this node sees them.",
        "/console/fragments/overview".into(),
        "every 2s",
        &OverviewFragment {
            v: views::overview(&s),
        },
    )
}

pub(crate) async fn overview_fragment(State(s): State<ApiState>, _a: ConsoleAdmin) -> Response {
    fragment(&OverviewFragment {
        v: views::overview(&s),
    })
}

#[derive(Template)]
#[template(path = "fragments/instances.html")]
struct InstancesFragment {
    v: InstancesView,
}

#[derive(serde::Deserialize)]
pub(crate) struct ClusterChoice {
    cluster: Option<String>,
}

/// The members of the cluster `?cluster=` names (the counters' by default); 404 for a
/// cluster the node is not in.
pub(crate) async fn instances(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Query(q): Query<ClusterChoice>,
) -> Response {
    let Some(v) = views::instances_of(&s, q.cluster.as_deref()) else {
        return no_such_cluster(&q);
    };
    let fragment = match &q.cluster {
        Some(c) => format!(
            "/console/fragments/instances?cluster={}",
            utf8_percent_encode(c, NON_ALPHANUMERIC)
        ),
        None => "/console/fragments/instances".into(),
    };
    live_page(
        page(&s, &admin, "instances", "Connected instances"),
        "Every member this node knows, refreshed every second. States come from gossip: a \
         member that stops answering probes turns suspect, then dead.",
        fragment,
        "every 1s",
        &InstancesFragment { v },
    )
}

pub(crate) async fn instances_fragment(
    State(s): State<ApiState>,
    _a: ConsoleAdmin,
    Query(q): Query<ClusterChoice>,
) -> Response {
    match views::instances_of(&s, q.cluster.as_deref()) {
        Some(v) => fragment(&InstancesFragment { v }),
        None => no_such_cluster(&q),
    }
}

fn no_such_cluster(q: &ClusterChoice) -> Response {
    (
        axum::http::StatusCode::NOT_FOUND,
        format!(
            "this node is in no cluster {:?}",
            q.cluster.as_deref().unwrap_or_default()
        ),
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "fragments/events.html")]
struct EventsFragment {
    events: Vec<EventView>,
}

pub(crate) async fn events(State(s): State<ApiState>, admin: ConsoleAdmin) -> Response {
    live_page(
        page(&s, &admin, "events", "Membership events"),
        "Joins, suspicions, deaths and departures seen by this node since it started, newest \
         first.",
        "/console/fragments/events".into(),
        "every 2s",
        &EventsFragment {
            events: views::events(&s),
        },
    )
}

pub(crate) async fn events_fragment(State(s): State<ApiState>, _a: ConsoleAdmin) -> Response {
    fragment(&EventsFragment {
        events: views::events(&s),
    })
}

#[derive(Deserialize)]
pub(crate) struct CounterFilter {
    #[serde(default)]
    q: String,
}

#[derive(Template)]
#[template(path = "fragments/counters.html")]
struct CountersFragment {
    v: CountersView,
}

#[derive(Template)]
#[template(path = "counters.html")]
struct CountersTpl {
    filter: String,
    source: String,
    content: String,
}

fn filter_text(q: &str) -> String {
    q.chars().take(200).collect()
}

fn counters_source(filter: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    format!("/console/fragments/counters?q={encoded}")
}

pub(crate) async fn counters(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Extension(history): Extension<CounterHistory>,
    Query(f): Query<CounterFilter>,
) -> Response {
    let filter = filter_text(&f.q);
    let content = match (CountersFragment {
        v: views::counters(&s, &history, &filter),
    })
    .render()
    {
        Ok(c) => c,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    page(&s, &admin, "counters", "Rate counters").render(
        StatusCode::OK,
        &CountersTpl {
            source: counters_source(&filter),
            filter,
            content,
        },
    )
}

pub(crate) async fn counters_fragment(
    State(s): State<ApiState>,
    _a: ConsoleAdmin,
    Extension(history): Extension<CounterHistory>,
    Query(f): Query<CounterFilter>,
) -> Response {
    fragment(&CountersFragment {
        v: views::counters(&s, &history, &filter_text(&f.q)),
    })
}

pub(crate) struct PolicyRow {
    pub p: Policy,
    /// Whether this node enforces exactly this text and settings right now.
    pub in_force: &'static str,
}

#[derive(Template)]
#[template(path = "policies.html")]
struct PoliciesTpl {
    rows: Vec<PolicyRow>,
    csrf: String,
    revision: String,
}

pub(crate) async fn policies(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Query(saved): Query<Saved>,
) -> Response {
    let list = match s.store.list_policies().await {
        Ok(l) => l,
        Err(e) => return store_failure(e),
    };
    let current = s.config.current();
    let rows = list
        .into_iter()
        .map(|p| {
            let live = current
                .as_ref()
                .and_then(|c| c.policies.iter().find(|q| q.name == p.name));
            let in_force = match live {
                Some(q) if *q == p => "in force",
                Some(_) => "older version in force",
                None if p.enabled => "not applied yet",
                None => "disabled",
            };
            PolicyRow { p, in_force }
        })
        .collect();
    let notice = saved.notice();
    let mut p = page(&s, &admin, "policies", "Policies");
    p.notice = notice.as_deref();
    p.render(
        StatusCode::OK,
        &PoliciesTpl {
            rows,
            csrf: admin.csrf.clone(),
            revision: s
                .config
                .status()
                .revision
                .map_or_else(|| "none".into(), |r| r.to_string()),
        },
    )
}

/// The policy editor, also re-rendered with the submitted values and the error when a save is
/// refused.
#[derive(Template)]
#[template(path = "policy_edit.html")]
pub(crate) struct PolicyEditTpl {
    pub creating: bool,
    pub name: String,
    pub rego: String,
    pub enforcement: String,
    pub on_error: String,
    pub on_unreachable: String,
    pub enabled: bool,
    pub shadow: bool,
    pub description: String,
    pub error: Option<String>,
    pub csrf: String,
    pub sample: &'static str,
}

const NEW_POLICY: &str = "package shoal.example\n\n# Allow by default; block a user over 100 requests a minute.\ndefault pre_request := {\"action\": \"allow\"}\n\npre_request := {\"action\": \"block\", \"type\": \"rate_limit\", \"message\": \"over 100 requests a minute\"} if {\n    input.bucket.access_count.last_minute > 100\n}\n";

pub(crate) async fn new_policy(State(s): State<ApiState>, admin: ConsoleAdmin) -> Response {
    page(&s, &admin, "policies", "New policy").render(
        StatusCode::OK,
        &PolicyEditTpl {
            creating: true,
            name: String::new(),
            rego: NEW_POLICY.into(),
            enforcement: "eventual".into(),
            on_error: "block".into(),
            on_unreachable: "local".into(),
            enabled: true,
            shadow: false,
            description: String::new(),
            error: None,
            csrf: admin.csrf.clone(),
            sample: SAMPLE_INPUT,
        },
    )
}

pub(crate) async fn edit_policy(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Path(name): Path<String>,
) -> Response {
    let list = match s.store.list_policies().await {
        Ok(l) => l,
        Err(e) => return store_failure(e),
    };
    let Some(p) = list.into_iter().find(|p| p.name == name) else {
        return error_page(StatusCode::NOT_FOUND, &format!("policy {name:?} not found"));
    };
    let title = format!("Policy {}", p.name);
    page(&s, &admin, "policies", &title).render(
        StatusCode::OK,
        &PolicyEditTpl {
            creating: false,
            enforcement: p.enforcement.as_str().into(),
            on_error: p.on_error.as_str().into(),
            on_unreachable: p.on_unreachable.as_str().into(),
            name: p.name,
            rego: p.rego,
            enabled: p.enabled,
            shadow: p.shadow,
            description: p.description,
            error: None,
            csrf: admin.csrf.clone(),
            sample: SAMPLE_INPUT,
        },
    )
}

#[derive(Template)]
#[template(path = "data.html")]
struct DocumentsTpl {
    rows: Vec<DocumentRow>,
    csrf: String,
    limit: String,
}

pub(crate) async fn documents(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Query(saved): Query<Saved>,
) -> Response {
    let list = match s.store.list_documents().await {
        Ok(l) => l,
        Err(e) => return store_failure(e),
    };
    let notice = saved.notice();
    let mut p = page(&s, &admin, "data", "Data documents");
    p.notice = notice.as_deref();
    p.render(
        StatusCode::OK,
        &DocumentsTpl {
            rows: views::document_rows(list),
            csrf: admin.csrf.clone(),
            limit: views::document_limit(),
        },
    )
}

/// The data document editor (and its view), also re-rendered with the submitted values and the
/// store's reason when a save is refused.
#[derive(Template)]
#[template(path = "data_edit.html")]
pub(crate) struct DocumentEditTpl {
    pub creating: bool,
    pub name: String,
    pub document: String,
    pub description: String,
    pub error: Option<String>,
    pub csrf: String,
    pub limit: String,
}

const NEW_DOCUMENT: &str = "{\n  \"users\": [\"alice\"]\n}";

pub(crate) async fn new_document(State(s): State<ApiState>, admin: ConsoleAdmin) -> Response {
    page(&s, &admin, "data", "New data document").render(
        StatusCode::OK,
        &DocumentEditTpl {
            creating: true,
            name: String::new(),
            document: NEW_DOCUMENT.into(),
            description: String::new(),
            error: None,
            csrf: admin.csrf.clone(),
            limit: views::document_limit(),
        },
    )
}

pub(crate) async fn edit_document(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Path(name): Path<String>,
) -> Response {
    let list = match s.store.list_documents().await {
        Ok(l) => l,
        Err(e) => return store_failure(e),
    };
    let Some(d) = list.into_iter().find(|d| d.document.name == name) else {
        return error_page(
            StatusCode::NOT_FOUND,
            &format!("data document {name:?} not found"),
        );
    };
    let title = format!("Data document {name}");
    page(&s, &admin, "data", &title).render(
        StatusCode::OK,
        &DocumentEditTpl {
            creating: false,
            document: serde_json::to_string_pretty(&d.document.document).unwrap_or_default(),
            name: d.document.name,
            description: d.document.description,
            error: None,
            csrf: admin.csrf.clone(),
            limit: views::document_limit(),
        },
    )
}

pub(crate) struct ResourceRow {
    pub r: Resource,
    pub kind: &'static str,
    pub summary: String,
}

#[derive(Template)]
#[template(path = "resources.html")]
struct ResourcesTpl {
    rows: Vec<ResourceRow>,
    csrf: String,
}

pub(crate) async fn resources(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Query(saved): Query<Saved>,
) -> Response {
    let list = match s.store.list_resources().await {
        Ok(l) => l,
        Err(e) => return store_failure(e),
    };
    let rows = list
        .into_iter()
        .map(|r| {
            let spec = serde_json::to_value(&r.spec).unwrap_or_default();
            let kind = if spec.get("kind").and_then(|k| k.as_str()) == Some("s3") {
                "s3"
            } else {
                "http"
            };
            let summary = ["port", "upstream"]
                .iter()
                .filter_map(|k| spec.get(*k).map(|v| format!("{k}: {v}")))
                .collect::<Vec<_>>()
                .join(" · ");
            ResourceRow { r, kind, summary }
        })
        .collect();
    let notice = saved.notice();
    let mut p = page(&s, &admin, "resources", "Resources");
    p.notice = notice.as_deref();
    p.render(
        StatusCode::OK,
        &ResourcesTpl {
            rows,
            csrf: admin.csrf.clone(),
        },
    )
}

#[derive(Template)]
#[template(path = "resource_edit.html")]
pub(crate) struct ResourceEditTpl {
    pub creating: bool,
    pub name: String,
    pub kind: String,
    pub spec: String,
    pub enabled: bool,
    pub description: String,
    pub error: Option<String>,
    pub csrf: String,
}

const NEW_RESOURCE_SPEC: &str =
    "{\n  \"port\": 9100,\n  \"upstream\": \"http://127.0.0.1:8081\"\n}";

pub(crate) async fn new_resource(State(s): State<ApiState>, admin: ConsoleAdmin) -> Response {
    page(&s, &admin, "resources", "New resource").render(
        StatusCode::OK,
        &ResourceEditTpl {
            creating: true,
            name: String::new(),
            kind: "http".into(),
            spec: NEW_RESOURCE_SPEC.into(),
            enabled: true,
            description: String::new(),
            error: None,
            csrf: admin.csrf.clone(),
        },
    )
}

pub(crate) async fn edit_resource(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Path(name): Path<String>,
) -> Response {
    let list = match s.store.list_resources().await {
        Ok(l) => l,
        Err(e) => return store_failure(e),
    };
    let Some(r) = list.into_iter().find(|r| r.name == name) else {
        return error_page(
            StatusCode::NOT_FOUND,
            &format!("resource {name:?} not found"),
        );
    };
    let mut spec = serde_json::to_value(&r.spec).unwrap_or_default();
    let kind = spec
        .as_object_mut()
        .and_then(|o| o.remove("kind"))
        .and_then(|k| k.as_str().map(str::to_string))
        .unwrap_or_else(|| "http".into());
    let title = format!("Resource {}", r.name);
    page(&s, &admin, "resources", &title).render(
        StatusCode::OK,
        &ResourceEditTpl {
            creating: false,
            name: r.name,
            kind,
            spec: serde_json::to_string_pretty(&spec).unwrap_or_default(),
            enabled: r.enabled,
            description: r.description,
            error: None,
            csrf: admin.csrf.clone(),
        },
    )
}

#[derive(Template)]
#[template(path = "users.html")]
pub(crate) struct UsersTpl {
    pub users: Vec<UserSummary>,
    pub csrf: String,
    pub error: Option<String>,
    pub new_name: String,
    pub new_description: String,
}

pub(crate) async fn users_page(
    s: &ApiState,
    admin: &ConsoleAdmin,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
    new_name: String,
    new_description: String,
) -> Response {
    let users = match s.store.list_users().await {
        Ok(u) => u,
        Err(e) => return store_failure(e),
    };
    let mut p = page(s, admin, "users", "Users & keys");
    p.notice = notice.as_deref();
    p.render(
        status,
        &UsersTpl {
            users,
            csrf: admin.csrf.clone(),
            error,
            new_name,
            new_description,
        },
    )
}

pub(crate) async fn users(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Query(saved): Query<Saved>,
) -> Response {
    users_page(
        &s,
        &admin,
        StatusCode::OK,
        saved.notice(),
        None,
        String::new(),
        String::new(),
    )
    .await
}

pub(crate) struct AdminRow {
    pub username: String,
    pub disabled: bool,
    pub sessions: i64,
    pub failures: u64,
    pub created: String,
    pub me: bool,
}

#[derive(Template)]
#[template(path = "admins.html")]
pub(crate) struct AdminsTpl {
    pub admins: Vec<AdminRow>,
    pub csrf: String,
    pub error: Option<String>,
    pub new_name: String,
    pub max_failures: u64,
}

pub(crate) async fn admins_page(
    s: &ApiState,
    admin: &ConsoleAdmin,
    status: StatusCode,
    error: Option<String>,
    new_name: String,
) -> Response {
    let list = match s.store.list_admins().await {
        Ok(l) => l,
        Err(e) => return store_failure(e),
    };
    let admins = list
        .into_iter()
        .map(|a| AdminRow {
            failures: crate::login::failures(s, &a.username),
            me: a.username == admin.username,
            created: a.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            username: a.username,
            disabled: a.disabled,
            sessions: a.sessions,
        })
        .collect();
    page(s, admin, "admins", "Admin accounts").render(
        status,
        &AdminsTpl {
            admins,
            csrf: admin.csrf.clone(),
            error,
            new_name,
            max_failures: crate::login::MAX_FAILURES,
        },
    )
}

pub(crate) async fn admins(State(s): State<ApiState>, admin: ConsoleAdmin) -> Response {
    admins_page(&s, &admin, StatusCode::OK, None, String::new()).await
}

pub(crate) struct AuditRow {
    pub at: String,
    pub node: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditTpl {
    actor: String,
    action: String,
    outcome: String,
    q: String,
    would_block: bool,
    rows: Vec<AuditRow>,
    next: Option<String>,
    error: Option<String>,
}

pub(crate) async fn audit(
    State(s): State<ApiState>,
    admin: ConsoleAdmin,
    Query(f): Query<AuditFilter>,
) -> Response {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let (page_data, error) = match f.query() {
        Ok(q) => match s.store.list_audit(&q).await {
            Ok(p) => (p, None),
            Err(e) => return store_failure(e),
        },
        Err(e) => (
            AuditPage {
                entries: vec![],
                next_before_id: None,
            },
            Some(e.to_string()),
        ),
    };
    let next = page_data.next_before_id.map(|id| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("actor", &f.actor),
            ("action", &f.action),
            ("outcome", &f.outcome),
            ("q", &f.q),
            ("would_block", &f.would_block),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                query.append_pair(k, v);
            }
        }
        query.append_pair("before_id", &id.to_string());
        format!("/console/audit?{}", query.finish())
    });
    let rows = page_data
        .entries
        .into_iter()
        .map(|r| AuditRow {
            at: r.at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            node: r.node,
            actor: r.actor,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            detail: if r.detail.as_object().is_some_and(|o| o.is_empty()) {
                String::new()
            } else {
                r.detail.to_string()
            },
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    page(&s, &admin, "audit", "Audit log").render(
        status,
        &AuditTpl {
            actor: text(&f.actor),
            action: text(&f.action),
            outcome: text(&f.outcome),
            q: text(&f.q),
            would_block: f.would_block.is_some(),
            rows,
            next,
            error,
        },
    )
}
