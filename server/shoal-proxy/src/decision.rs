//! What every resource kind does once it knows who is asking: count, evaluate the policies,
//! write the audit line. Kinds differ only in how they identify the caller and how they say
//! no (JSON for HTTP APIs, S3's XML for object stores), so a refusal here is kind-neutral.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, Method, Response, StatusCode, header};
use serde::Serialize;
use serde_json::json;
use shoal_model::{AuditDetail, AuditEntry, AuditSink, OnError, OnUnreachable};
use shoal_policy::{
    Input, NodeFacts, PolicyError, RequestFacts, ResponseFacts, Stage, Subject, Verdict,
};
use shoal_state::{CounterKey, Limit, Mode, Reach, Revoked, Services, SharedState};
use tracing::Instrument as _;

use crate::forward::Upstreams;
use crate::instruments::Instruments;
use crate::revocations::Revocations;
use crate::routes::{Route, RoutePolicy, Routes};

/// The action every request counts under: policies read how often a user accessed a resource.
const ACTION: &str = "access";

/// The actions body bytes count under, when a policy reads them: what responses carried to
/// the caller and what uploads carried upstream.
const BYTES_READ: &str = "bytes_read";
const BYTES_WRITTEN: &str = "bytes_written";

/// What deciding uses of the node, and nothing else of the data plane's state: the cluster's
/// counters, where audit lines go, and the figures a decision records.
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    pub state: &'a SharedState,
    pub services: &'a Services,
    /// `input.node`.
    pub facts: &'a NodeFacts,
    pub revocations: &'a Revocations,
    pub audit: &'a dyn AuditSink,
    pub instruments: &'a Instruments,
    /// Policy evaluations that failed, for the data plane's status.
    pub policy_errors: &'a AtomicU64,
}

/// One request's surroundings, the same for every kind.
pub(crate) struct Ctx<'a> {
    pub node: Node<'a>,
    /// Where an allowed request is forwarded, and how long the upstream may stay silent.
    pub upstreams: &'a Upstreams,
    pub upstream_timeout: Duration,
    pub routes: &'a Routes,
    pub route: &'a Route,
    /// The caller's address, as text.
    pub peer_ip: &'a str,
    pub request_id: &'a str,
    pub started: Instant,
    /// The cluster as this node reaches it, read once: deciding and auditing agree on it.
    pub reach: Reach,
    /// How a strict global count was decided, for the answer's `x-shoal-global-decision`.
    pub global_note: std::sync::OnceLock<String>,
    /// What shadow policies would have refused, for the audit line.
    pub would_block: std::sync::Mutex<Vec<serde_json::Value>>,
}

/// The key every region counts a strict global check under, at its owner in the global
/// cluster.
const ALL_REGIONS: &str = "*";

/// What the request is, for counting, policies and the audit line.
pub(crate) struct Facts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// `input.bucket.name`: S3's bucket; for an HTTP API, the resource.
    pub bucket: Option<&'a str>,
    /// The counter's resource part: the resource, or `resource/bucket` for S3, so the seed
    /// policy's "accesses to this bucket by this user" is what is counted.
    pub counted: &'a str,
    pub key: Option<&'a str>,
    pub operation: Option<&'a str>,
    /// `bucket/key` a copy reads from.
    pub copy_source: Option<&'a str>,
    /// What policies see as `input.request.headers` and `.body_size`, once the credentials are
    /// left out (`secret_header`: the HTTP kind's API key header).
    pub headers: &'a HeaderMap,
    pub secret_header: Option<&'a HeaderName>,
    /// The raw query string, for `input.request.query`.
    pub query: Option<&'a str>,
}

/// Why a request is not forwarded. `outcome` is what the audit line records.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub outcome: &'static str,
    pub status: StatusCode,
    /// The code in the kind's error body (S3 clients act on theirs, e.g. `AccessDenied`).
    pub code: &'static str,
    pub message: String,
    pub policy: Option<String>,
    /// The block `type` a policy gave.
    pub kind: Option<String>,
}

impl Refusal {
    pub(crate) fn new(
        outcome: &'static str,
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            outcome,
            status,
            code,
            message: message.into(),
            policy: None,
            kind: None,
        }
    }
}

/// The codes a kind's error bodies use for each way of saying no.
#[derive(Clone, Copy)]
pub(crate) struct Codes {
    pub blocked: &'static str,
    pub policy_error: &'static str,
    /// A policy with `on_unreachable = deny` while members are unreachable.
    pub unreachable: &'static str,
}

/// Who is asking, once identified.
pub(crate) struct Caller<'a> {
    /// The user's name; `anonymous` for a caller without credentials.
    pub user: &'a str,
    /// The API key id or S3 access key id it presented (empty when anonymous).
    pub key_id: &'a str,
    pub subject: &'a Subject,
    /// Whose counts the request adds to: the user's, or an anonymous caller's address's, so
    /// one busy address does not use up every anonymous caller's limit.
    pub counted_as: &'a str,
    pub anonymous: bool,
}

/// What an anonymous caller's counts are kept under: its address, so one busy address does
/// not use up every anonymous caller's limit.
pub(crate) fn anonymous_subject(ctx: &Ctx<'_>) -> String {
    format!("{}:{}", shoal_model::ANONYMOUS, ctx.peer_ip)
}

impl Caller<'_> {
    /// The user an audit line names (`user:NAME`); none for an anonymous caller.
    pub(crate) fn audited_as(&self) -> Option<&str> {
        (!self.anonymous).then_some(self.user)
    }
}

/// What an allowed request leaves for its response: the input the response stage extends, and
/// the counters its body bytes go to.
pub(crate) struct Decided {
    /// Built when the revision has a response stage.
    input: Option<Input>,
    mode: Mode,
    /// `bytes_read` for this (user, resource or bucket), when a policy reads byte counts.
    read: Option<CounterKey>,
    /// `bytes_written`, when a policy reads byte counts and the upload declared no size: its
    /// body is counted as it streams.
    unsized_upload: Option<CounterKey>,
}

impl Decided {
    /// The request body, counted as it streams when its size was not declared.
    pub(crate) fn upload(&self, node: Node<'_>, body: Body) -> Body {
        match &self.unsized_upload {
            Some(key) => Body::new(CountedBody::new(body, node.state.clone(), key.clone())),
            None => body,
        }
    }
}

fn is_upload(method: &str) -> bool {
    matches!(method, "PUT" | "POST" | "PATCH")
}

/// Counts the request for (user, `facts.counted`, `access`), then runs every enabled policy
/// on the counts. While members are unreachable each policy's `on_unreachable` applies: the
/// local counts as they are, a refusal, or the counts scaled to this side's share.
pub(crate) async fn decide(
    ctx: &Ctx<'_>,
    caller: &Caller<'_>,
    facts: &Facts<'_>,
    codes: Codes,
) -> Result<Decided, Refusal> {
    let Ctx {
        node,
        routes,
        route,
        request_id,
        ..
    } = *ctx;
    if let Some(revoked) = node.revocations.revoked(caller.user, caller.key_id) {
        let what = match revoked {
            Revoked::User(u) => format!("user {u:?}"),
            Revoked::Key(k) => format!("key {k:?}"),
        };
        tracing::info!(request_id, user = %caller.user, "request refused: {what} is revoked");
        return Err(Refusal::new(
            "revoked",
            StatusCode::FORBIDDEN,
            codes.blocked,
            format!("{what} is revoked"),
        ));
    }
    if let Some(policy) = routes.broken.first() {
        let mut refusal = Refusal::new(
            "policy_error",
            StatusCode::FORBIDDEN,
            codes.policy_error,
            format!("policy {policy:?} could not be compiled on this node; requests are refused"),
        );
        refusal.policy = Some(policy.clone());
        return Err(refusal);
    }
    let Ok(counter) = CounterKey::new(caller.counted_as, facts.counted, ACTION) else {
        return Err(Refusal::new(
            "invalid",
            StatusCode::BAD_REQUEST,
            "invalid",
            "the user or resource name cannot be counted",
        ));
    };
    let mode = if routes.strict {
        Mode::Strict
    } else {
        Mode::Eventual
    };
    // Counting first: the request being decided is one of the accesses the policy sees.
    let counted = node
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
        .instrument(tracing::info_span!(
            target: "shoal::trace",
            "count",
            shoal.rate.mode = if routes.strict { "strict" } else { "eventual" },
        ))
        .await;
    let reach = ctx.reach;
    // This side's share: counts scaled by members / reachable, so a policy's "more than N"
    // admits at most N * reachable / members here (fewer, since the counts from before the
    // split are scaled too).
    let scaled: Option<Vec<u64>> = (reach.split()
        && routes
            .policies
            .iter()
            .any(|p| p.on_unreachable == OnUnreachable::Share))
    .then(|| {
        counted
            .totals
            .iter()
            .map(|&t| share_scaled(t, reach))
            .collect()
    });
    // Global counts, only when a policy reads them: each region held to its share of a
    // global limit from its own counts (no wait on another region); a strict policy has the
    // global key's owner count, wherever it is, and the answer says it waited for it.
    let global: Option<Vec<u64>> = if !routes.global {
        None
    } else if routes.strict && node.services.global_apart() {
        let asked = Instant::now();
        let decided = node
            .services
            .global_counters
            .check(
                &counter.in_region(ALL_REGIONS),
                Limit {
                    window: 0,
                    max: u64::MAX,
                    mode: Mode::Strict,
                },
                1,
            )
            .instrument(tracing::info_span!(
                target: "shoal::trace",
                "count global",
                shoal.rate.mode = "strict",
            ))
            .await;
        let waited = asked.elapsed().as_millis();
        let note = match &decided.degraded {
            None => format!(
                "strict; decided_by={}; cross_region_wait_ms={waited}",
                decided.decided_by
            ),
            Some(why) => format!("degraded; waited_ms={waited}; reason={why}"),
        };
        let _ = ctx.global_note.set(note);
        Some(decided.totals)
    } else {
        Some(node.services.count_global(&counter, &counted.totals).totals)
    };
    // Byte counts only for revisions whose policies read them. An upload's declared size is
    // counted before the policies run, as the request itself is (strict: at the key's owner,
    // so the upload that would cross a budget sees it crossed); one without a declared size
    // is counted as its body streams.
    let byte_key = |action| CounterKey::new(caller.counted_as, facts.counted, action).ok();
    let (read, written, unsized_upload) = if routes.bytes {
        let read = byte_key(BYTES_READ);
        let written_key = byte_key(BYTES_WRITTEN);
        // A copy's PUT carries no body (its source is read upstream): nothing to count.
        let declared = declared_size(facts.headers).filter(|&n| n > 0 && is_upload(facts.method));
        let written = match (&written_key, declared) {
            (Some(key), Some(size)) => Some(count(node, key, mode, size).await),
            (Some(key), None) => Some(node.state.totals(key)),
            (None, _) => None,
        };
        let unsized_upload = written_key.filter(|_| {
            is_upload(facts.method) && facts.copy_source.is_none() && declared.is_none()
        });
        let read = read.map(|k| {
            let totals = node.state.totals(&k);
            (k, totals)
        });
        (read, written, unsized_upload)
    } else {
        (None, None, None)
    };
    // Headers and parameters only for revisions whose policies mention them: building them is
    // the one part of the input that grows with the request.
    let (headers, query) = if routes.request_detail {
        (policy_headers(facts), policy_query(facts.query))
    } else {
        (Vec::new(), Vec::new())
    };
    let query: Vec<(&str, &str)> = query.iter().map(|(n, v)| (&**n, &**v)).collect();
    let facts_with = |counts| RequestFacts {
        headers: &headers,
        query: &query,
        body_size: declared_size(facts.headers),
        node: node.facts,
        bucket: facts.bucket,
        key: facts.key,
        windows: &routes.windows,
        counts,
        global_counts: global.as_deref(),
        user: caller.subject,
        method: facts.method,
        path: facts.path,
        operation: facts.operation,
        source_ip: Some(ctx.peer_ip),
        resource: &route.target,
        bytes_read: read.as_ref().map(|(_, totals)| totals.as_slice()),
        bytes_written: written.as_deref(),
    };
    let parts = routes.input_parts;
    let (own, shared) = (
        facts_with(&counted.totals),
        scaled.as_deref().map(facts_with),
    );
    // The input is built only for a policy the facts cannot decide natively, and for the
    // response stage.
    let input = std::cell::OnceCell::new();
    let shared_input = std::cell::OnceCell::new();
    for p in &routes.policies {
        let policy = &p.compiled;
        if !policy.defines(Stage::Request) {
            continue;
        }
        let (facts, input) = if reach.split() {
            node.instruments
                .unreachable(policy.name(), p.on_unreachable.as_str());
            match p.on_unreachable {
                OnUnreachable::Local => (&own, &input),
                OnUnreachable::Share => match &shared {
                    Some(scaled) => (scaled, &shared_input),
                    None => (&own, &input),
                },
                OnUnreachable::Deny => {
                    if !p.shadow {
                        tracing::info!(
                            request_id,
                            policy = policy.name(),
                            reachable = reach.reachable,
                            members = reach.members,
                            "request refused: members unreachable (on_unreachable = deny)"
                        );
                    }
                    let mut refusal = Refusal::new(
                        "unreachable",
                        StatusCode::SERVICE_UNAVAILABLE,
                        codes.unreachable,
                        format!(
                            "policy {:?} refuses requests while {} of {} cluster members are unreachable",
                            policy.name(),
                            reach.members - reach.reachable,
                            reach.members
                        ),
                    );
                    refusal.policy = Some(policy.name().to_string());
                    enforce(ctx, p.shadow, refusal)?;
                    continue;
                }
            }
        } else {
            (&own, &input)
        };
        run_policy(ctx, caller, p, Stage::Request, codes, || {
            policy.decide_request(facts).unwrap_or_else(|| {
                policy.evaluate(input.get_or_init(|| Input::request_parts(facts, parts)))
            })
        })?;
    }
    let input = routes.response_stage.then(|| {
        input
            .into_inner()
            .unwrap_or_else(|| Input::request_parts(&own, parts))
    });
    Ok(Decided {
        input,
        mode,
        read: read.map(|(key, _)| key),
        unsized_upload,
    })
}

/// One policy's rule for `stage`, `evaluate`d, traced and measured; its block or failure
/// (after `on_error`) as the refusal, recorded instead for a shadow policy.
fn run_policy(
    ctx: &Ctx<'_>,
    caller: &Caller<'_>,
    p: &RoutePolicy,
    stage: Stage,
    codes: Codes,
    evaluate: impl FnOnce() -> Result<Verdict, PolicyError>,
) -> Result<(), Refusal> {
    let (node, request_id, policy) = (ctx.node, ctx.request_id, &p.compiled);
    let span = tracing::info_span!(
        target: "shoal::trace",
        "policy",
        otel.name = %format_args!("policy {}", policy.name()),
        shoal.policy.name = policy.name(),
        shoal.policy.stage = stage.as_str(),
        shoal.policy.result = tracing::field::Empty,
    );
    let evaluated = span.in_scope(|| {
        let started = Instant::now();
        let verdict = evaluate();
        let result = match &verdict {
            Ok(Verdict::Allow) => "allow",
            Ok(Verdict::Block { .. }) => "block",
            Err(_) => "error",
        };
        span.record("shoal.policy.result", result);
        node.instruments
            .policy(policy.name(), result, started.elapsed());
        verdict
    });
    if let Err(e) = &evaluated {
        shoal_telemetry::record_error(&span, &e.to_string());
    }
    let what = stage.as_str();
    match evaluated {
        Ok(Verdict::Allow) => Ok(()),
        Ok(Verdict::Block { kind, message }) => {
            if !p.shadow {
                tracing::info!(
                    request_id,
                    user = %caller.user,
                    resource = %ctx.route.name,
                    policy = policy.name(),
                    kind = %kind,
                    "{what} blocked"
                );
            }
            let message = message.unwrap_or_else(|| format!("blocked by policy {}", policy.name()));
            let mut refusal =
                Refusal::new("blocked", StatusCode::FORBIDDEN, codes.blocked, message);
            refusal.policy = Some(policy.name().to_string());
            refusal.kind = Some(kind);
            enforce(ctx, p.shadow, refusal)
        }
        Err(e) => {
            node.policy_errors.fetch_add(1, Ordering::Relaxed);
            let skip = p.on_error == OnError::Allow;
            let consequence = match (skip, p.shadow) {
                (true, _) => "policy skipped (on_error = allow)".to_string(),
                (false, false) => format!("{what} refused (fail closed)"),
                (false, true) => format!("shadow policy: the {what} would have been refused"),
            };
            tracing::warn!(request_id, policy = policy.name(), "{e}; {consequence}");
            if skip {
                return Ok(());
            }
            let mut refusal = Refusal::new(
                "policy_error",
                StatusCode::FORBIDDEN,
                codes.policy_error,
                format!("policy {:?} failed; the {what} is refused", policy.name()),
            );
            refusal.policy = Some(policy.name().to_string());
            enforce(ctx, p.shadow, refusal)
        }
    }
}

/// Counts `cost` under `key` in the revision's mode (strict: at the key's owner, so two nodes
/// never both see room that only one of them has); every window's total after it.
async fn count(node: Node<'_>, key: &CounterKey, mode: Mode, cost: u64) -> Vec<u64> {
    let limit = Limit {
        window: 0,
        max: u64::MAX,
        mode,
    };
    node.state
        .check(key, limit, cost)
        .instrument(tracing::info_span!(
            target: "shoal::trace",
            "count bytes",
            shoal.rate.mode = if mode == Mode::Strict { "strict" } else { "eventual" },
        ))
        .await
        .totals
}

/// The response stage: once the upstream's status and headers are in, its body bytes are
/// counted (a known size before any of it is passed on, so a read that would cross a budget
/// sees the budget crossed; an unknown one as it streams) and every policy's `pre_response`
/// runs. `Err` is the refusal the caller answers instead of the body; what the stage refused
/// or would have refused (shadow) gets an audit line of its own, after the request's.
pub(crate) async fn respond(
    ctx: &Ctx<'_>,
    caller: &Caller<'_>,
    facts: &Facts<'_>,
    decided: &Decided,
    response: Response<Body>,
    codes: Codes,
) -> Result<Response<Body>, Refusal> {
    let routes = ctx.routes;
    if !routes.response_stage && decided.read.is_none() {
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let size = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    // What the caller receives of the object: a successful answer's body, not a HEAD's
    // (which has none) and not an error document.
    let carries_data = parts.status.is_success() && facts.method != Method::HEAD.as_str();
    let read = decided.read.as_ref().filter(|_| carries_data);
    let (read_totals, body) = match (read, size) {
        (Some(key), Some(size)) => (Some(count(ctx.node, key, decided.mode, size).await), body),
        (Some(key), None) => (
            Some(ctx.node.state.totals(key)),
            Body::new(CountedBody::new(body, ctx.node.state.clone(), key.clone())),
        ),
        (None, _) => (None, body),
    };
    if routes.response_stage {
        let Some(request_input) = &decided.input else {
            return Err(Refusal::new(
                "policy_error",
                StatusCode::FORBIDDEN,
                codes.policy_error,
                "the response stage has no request input on this node; the response is refused",
            ));
        };
        // Cookies the upstream sets are the caller's session, not the object's description.
        let headers = first_values(&parts.headers, |name| name == header::SET_COOKIE);
        let metadata: Vec<(&str, &str)> = headers
            .iter()
            .filter_map(|(name, value)| Some((name.strip_prefix(METADATA_PREFIX)?, *value)))
            .collect();
        let input = request_input.response(
            &routes.windows,
            &ResponseFacts {
                status: parts.status.as_u16(),
                size,
                content_type: parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
                headers: &headers,
                metadata: &metadata,
                bytes_read: read_totals.as_deref(),
            },
        );
        let refused = routes
            .policies
            .iter()
            .filter(|p| p.compiled.defines(Stage::Response))
            .try_for_each(|p| {
                run_policy(ctx, caller, p, Stage::Response, codes, || {
                    p.compiled.evaluate_at(Stage::Response, &input)
                })
            });
        let shadowed = !ctx.would_block.lock().expect("would_block").is_empty();
        if refused.is_err() || shadowed {
            let seen = Seen {
                status: parts.status.as_u16(),
                size,
            };
            audit_at(
                ctx,
                caller.audited_as(),
                facts,
                refused.as_ref().err(),
                Some(seen),
            )
            .await?;
        }
        refused?;
    }
    Ok(Response::from_parts(parts, body))
}

/// S3's user metadata headers, which policies read without the prefix.
const METADATA_PREFIX: &str = "x-amz-meta-";

/// A body counted under a key as it streams: what a response of unknown length carries to the
/// caller, or an upload of undeclared size carries upstream. Counted per frame (locally, shared
/// by gossip), so bytes already passed on are counted even if the transfer breaks.
struct CountedBody {
    body: Body,
    state: SharedState,
    key: CounterKey,
}

impl CountedBody {
    fn new(body: Body, state: SharedState, key: CounterKey) -> Self {
        Self { body, state, key }
    }
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        let this = &mut *self;
        let frame = std::pin::Pin::new(&mut this.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(f))) = &frame
            && let Some(data) = f.data_ref()
            && !data.is_empty()
        {
            this.state.increment(&this.key, data.len() as u64);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Headers no policy sees: credentials, signatures and session tokens, in any kind.
const HIDDEN_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// Query parameters no policy sees: a presigned URL's credential and signature.
const HIDDEN_PARAMETERS: [&str; 3] = [
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
];

/// The request's headers as policies see them: lower-cased names (HTTP's own), UTF-8 values,
/// the first of repeated ones, credentials and signatures left out.
fn policy_headers<'a>(facts: &'a Facts<'_>) -> Vec<(&'a str, &'a str)> {
    first_values(facts.headers, |name| {
        HIDDEN_HEADERS.contains(&name.as_str()) || Some(name) == facts.secret_header
    })
}

/// `headers` as policies see them, less the `hidden` ones: lower-cased names (HTTP's own),
/// UTF-8 values, the first of repeated ones.
fn first_values(headers: &HeaderMap, hidden: impl Fn(&HeaderName) -> bool) -> Vec<(&str, &str)> {
    let mut seen = std::collections::HashSet::new();
    headers
        .iter()
        .filter(|(name, _)| !hidden(name))
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .filter(|(name, _)| seen.insert(*name))
        .collect()
}

/// The query's parameters, decoded, the first value of each name, a presigned URL's
/// signature left out.
fn policy_query(query: Option<&str>) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(name, _)| !HIDDEN_PARAMETERS.contains(&name.to_ascii_lowercase().as_str()))
        .filter(|(name, _)| seen.insert(name.clone()))
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect()
}

/// What the caller says the upload weighs: S3's decoded length of a chunk-signed body, else
/// `Content-Length`.
fn declared_size(headers: &HeaderMap) -> Option<u64> {
    // Names made once: looking a header up by `&str` parses the name on every request.
    const DECODED_LENGTH: HeaderName = HeaderName::from_static("x-amz-decoded-content-length");
    [DECODED_LENGTH, header::CONTENT_LENGTH]
        .iter()
        .find_map(|h| headers.get(h)?.to_str().ok()?.parse().ok())
}

/// A count as this side's share of the limit sees it: `count * members / reachable`, rounded
/// up so the share is never exceeded.
fn share_scaled(count: u64, reach: Reach) -> u64 {
    let (members, reachable) = (reach.members.max(1) as u128, reach.reachable.max(1) as u128);
    u64::try_from((u128::from(count) * members).div_ceil(reachable)).unwrap_or(u64::MAX)
}

/// A policy's refusal: returned, or for a shadow policy recorded for the audit line and the
/// metrics (`shoal.policy.would_block`) while the request goes on.
fn enforce(ctx: &Ctx<'_>, shadow: bool, refusal: Refusal) -> Result<(), Refusal> {
    if !shadow {
        return Err(refusal);
    }
    let policy = refusal.policy.as_deref().unwrap_or_default();
    ctx.node.instruments.would_block(policy, refusal.outcome);
    tracing::info!(
        request_id = ctx.request_id,
        policy,
        outcome = refusal.outcome,
        "shadow policy would have refused the request: {}",
        refusal.message
    );
    ctx.would_block.lock().expect("would_block").push(json!({
        "policy": policy,
        "outcome": refusal.outcome,
        "type": refusal.kind,
        "message": refusal.message,
    }));
    Ok(())
}

/// Queues the request's audit line (`refusal`: none if allowed). `Err` means it cannot be
/// kept and the request must be refused: nothing is served unaudited.
pub(crate) async fn audit(
    ctx: &Ctx<'_>,
    user: Option<&str>,
    facts: &Facts<'_>,
    refusal: Option<&Refusal>,
) -> Result<(), Refusal> {
    audit_at(ctx, user, facts, refusal, None).await
}

/// What the response stage saw of the upstream's answer, for its audit line.
#[derive(Clone, Copy)]
struct Seen {
    status: u16,
    size: Option<u64>,
}

/// A data-plane audit line's detail, serialized straight from the request's facts. A fact
/// the request does not have is left out rather than written as `null`: PostgreSQL parses
/// every key of every stored line into `jsonb`, and half of a plain request's keys were nulls
/// (its CPU per stored line: about a quarter less, measured).
#[derive(Serialize)]
struct RequestDetail<'a> {
    request_id: &'a str,
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    bucket: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operation: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    copy_source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    source_ip: &'a str,
    decision_us: u64,
    /// Decided while members were unreachable: each policy's on_unreachable applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_split: Option<Reach>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_size: Option<u64>,
    /// What shadow policies would have refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    would_block: Vec<serde_json::Value>,
}

/// [`audit`] for either stage: a response stage's line (`seen`) is action `response`, with
/// the upstream's status and size.
async fn audit_at(
    ctx: &Ctx<'_>,
    user: Option<&str>,
    facts: &Facts<'_>,
    refusal: Option<&Refusal>,
    seen: Option<Seen>,
) -> Result<(), Refusal> {
    let Ctx {
        node,
        route,
        request_id,
        ..
    } = *ctx;
    let (outcome, policy, kind) = match refusal {
        None => ("allowed", None, None),
        Some(r) => (r.outcome, r.policy.as_deref(), r.kind.as_deref()),
    };
    node.instruments.decision(outcome, ctx.routes.strict);
    let reach = ctx.reach;
    tracing::Span::current().record("shoal.outcome", outcome);
    let would_block = std::mem::take(&mut *ctx.would_block.lock().expect("would_block"));
    let detail = RequestDetail {
        request_id,
        method: facts.method,
        path: facts.path,
        bucket: facts.bucket,
        key: facts.key,
        operation: facts.operation,
        copy_source: facts.copy_source,
        policy,
        kind,
        source_ip: ctx.peer_ip,
        decision_us: ctx.started.elapsed().as_micros() as u64,
        cluster_split: reach.split().then_some(reach),
        upstream_status: seen.map(|s| s.status),
        upstream_size: seen.and_then(|s| s.size),
        would_block,
    };
    let entry = AuditEntry {
        // Time-ordered (v7): each line's id lands at the end of the `event_id` index, not
        // at a random page of it (PostgreSQL's CPU per stored line: 17% less, measured).
        event_id: uuid::Uuid::now_v7(),
        at: chrono::Utc::now(),
        actor: user.map_or_else(|| "anonymous".to_string(), |u| ["user:", u].concat()),
        action: if seen.is_some() {
            "response"
        } else {
            "request"
        }
        .into(),
        target: route.name.clone(),
        outcome: outcome.into(),
        detail: AuditDetail::of(&detail),
    };
    node.audit.record(entry).await.map_err(|e| {
        tracing::error!(request_id, resource = %route.name, "audit: {e}; request refused");
        Refusal::new(
            "audit_unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the request cannot be audited right now; try again later",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(reachable: usize, members: usize) -> Reach {
        Reach { reachable, members }
    }

    fn facts<'a>(headers: &'a HeaderMap, secret: Option<&'a HeaderName>) -> Facts<'a> {
        Facts {
            method: "GET",
            path: "/",
            bucket: None,
            counted: "r",
            key: None,
            operation: None,
            copy_source: None,
            headers,
            secret_header: secret,
            query: None,
        }
    }

    #[test]
    fn policies_never_see_credentials_or_signatures() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("Authorization", "AWS4-HMAC-SHA256 Credential=..."),
            ("X-Api-Key", "shoal_k_secret"),
            ("Cookie", "session=1"),
            ("X-Amz-Security-Token", "token"),
            ("X-Tenant", "acme"),
            ("x-tenant", "second value, ignored"),
            ("Content-Length", "42"),
        ] {
            headers.append(HeaderName::try_from(name).unwrap(), value.parse().unwrap());
        }
        let secret = HeaderName::from_static("x-api-key");
        let facts = facts(&headers, Some(&secret));
        assert_eq!(
            policy_headers(&facts),
            [("x-tenant", "acme"), ("content-length", "42")]
        );
        assert_eq!(declared_size(&headers), Some(42));
        let query = policy_query(Some(
            "X-Amz-Signature=abc&X-Amz-Credential=AKIA%2F&list-type=2&prefix=a%20b&prefix=second",
        ));
        assert_eq!(
            query,
            [
                ("list-type".to_string(), "2".to_string()),
                ("prefix".to_string(), "a b".to_string())
            ]
        );
    }

    #[test]
    fn a_share_holds_each_side_to_its_part_of_the_limit() {
        let limit = 30;
        // The most a side admits under "count > limit blocks", counting from zero.
        let admitted = |r: Reach| (1..).take_while(|&c| share_scaled(c, r) <= limit).count();
        assert_eq!(admitted(reach(3, 3)), 30);
        assert_eq!(admitted(reach(2, 3)), 20);
        assert_eq!(admitted(reach(1, 3)), 10);
        // Sides that do not divide the limit evenly round down, never over it together.
        assert_eq!(admitted(reach(3, 7)) + admitted(reach(4, 7)), 12 + 17);
        assert_eq!(share_scaled(u64::MAX, reach(1, 1000)), u64::MAX);
    }
}
