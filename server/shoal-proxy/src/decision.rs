//! What every resource kind does once it knows who is asking: count, evaluate the policies,
//! write the audit line. Kinds differ only in how they identify the caller and how they say
//! no (JSON for HTTP APIs, S3's XML for object stores), so a refusal here is kind-neutral.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::http::StatusCode;
use serde_json::json;
use shoal_control_plane::{AuditEntry, OnError};
use shoal_policy::{Input, RequestFacts, Subject, Verdict};
use shoal_state::{CounterKey, Limit, Mode};
use tracing::Instrument as _;

use crate::listeners::Shared;
use crate::routes::{Route, Routes};

/// The action every request counts under: policies read how often a user accessed a resource.
const ACTION: &str = "access";

/// One request's surroundings, the same for every kind.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub routes: &'a Routes,
    pub route: &'a Route,
    pub peer: SocketAddr,
    pub request_id: &'a str,
    pub started: Instant,
}

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

/// Who is asking, once identified.
pub(crate) struct Caller<'a> {
    pub user: &'a str,
    pub subject: &'a Subject,
}

/// Counts the request for (user, `facts.counted`, `access`), then runs every enabled policy
/// on the counts. `codes` names the kind's error codes for a block and a policy failure.
pub(crate) async fn decide(
    ctx: &Ctx<'_>,
    caller: &Caller<'_>,
    facts: &Facts<'_>,
    codes: (&'static str, &'static str),
) -> Result<(), Refusal> {
    let Ctx {
        shared,
        routes,
        route,
        request_id,
        ..
    } = *ctx;
    let (blocked_code, policy_error_code) = codes;
    if let Some(policy) = routes.broken.first() {
        let mut refusal = Refusal::new(
            "policy_error",
            StatusCode::FORBIDDEN,
            policy_error_code,
            format!("policy {policy:?} could not be compiled on this node; requests are refused"),
        );
        refusal.policy = Some(policy.clone());
        return Err(refusal);
    }
    let Ok(counter) = CounterKey::new(caller.user, facts.counted, ACTION) else {
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
        .instrument(tracing::info_span!(
            target: "shoal::trace",
            "count",
            shoal.rate.mode = if routes.strict { "strict" } else { "eventual" },
        ))
        .await;
    let source_ip = ctx.peer.ip().to_string();
    let input = Input::request(&RequestFacts {
        bucket: facts.bucket,
        key: facts.key,
        windows: &routes.windows,
        counts: &counted.totals,
        user: caller.subject,
        method: facts.method,
        path: facts.path,
        operation: facts.operation,
        source_ip: Some(&source_ip),
        resource: &route.target,
    });
    for (policy, on_error) in &routes.policies {
        let span = tracing::info_span!(
            target: "shoal::trace",
            "policy",
            otel.name = %format_args!("policy {}", policy.name()),
            shoal.policy.name = policy.name(),
            shoal.policy.result = tracing::field::Empty,
        );
        let evaluated = span.in_scope(|| {
            let started = Instant::now();
            let verdict = policy.evaluate(&input);
            let result = match &verdict {
                Ok(Verdict::Allow) => "allow",
                Ok(Verdict::Block { .. }) => "block",
                Err(_) => "error",
            };
            span.record("shoal.policy.result", result);
            shared
                .instruments
                .policy(policy.name(), result, started.elapsed());
            verdict
        });
        if let Err(e) = &evaluated {
            shoal_telemetry::record_error(&span, &e.to_string());
        }
        match evaluated {
            Ok(Verdict::Allow) => {}
            Ok(Verdict::Block { kind, message }) => {
                tracing::info!(
                    request_id,
                    user = %caller.user,
                    resource = %route.name,
                    policy = policy.name(),
                    kind = %kind,
                    "request blocked"
                );
                let message =
                    message.unwrap_or_else(|| format!("blocked by policy {}", policy.name()));
                let mut refusal =
                    Refusal::new("blocked", StatusCode::FORBIDDEN, blocked_code, message);
                refusal.policy = Some(policy.name().to_string());
                refusal.kind = Some(kind);
                return Err(refusal);
            }
            Err(e) => {
                shared.policy_errors.fetch_add(1, Ordering::Relaxed);
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
                let mut refusal = Refusal::new(
                    "policy_error",
                    StatusCode::FORBIDDEN,
                    policy_error_code,
                    format!("policy {:?} failed; the request is refused", policy.name()),
                );
                refusal.policy = Some(policy.name().to_string());
                return Err(refusal);
            }
        }
    }
    Ok(())
}

/// Queues the request's audit line (`refusal`: none if allowed). `Err` means it cannot be kept and the request must be
/// refused: nothing is served unaudited.
pub(crate) async fn audit(
    ctx: &Ctx<'_>,
    user: Option<&str>,
    facts: &Facts<'_>,
    refusal: Option<&Refusal>,
) -> Result<(), Refusal> {
    let Ctx {
        shared,
        route,
        request_id,
        ..
    } = *ctx;
    let (outcome, policy, kind) = match refusal {
        None => ("allowed", None, None),
        Some(r) => (r.outcome, r.policy.as_deref(), r.kind.as_deref()),
    };
    shared.instruments.decision(outcome, ctx.routes.strict);
    tracing::Span::current().record("shoal.outcome", outcome);
    let entry = AuditEntry {
        event_id: uuid::Uuid::new_v4(),
        at: chrono::Utc::now(),
        actor: user.map_or_else(|| "anonymous".to_string(), |u| format!("user:{u}")),
        action: "request".into(),
        target: route.name.clone(),
        outcome: outcome.into(),
        detail: json!({
            "request_id": request_id,
            "method": facts.method,
            "path": facts.path,
            "bucket": facts.bucket,
            "key": facts.key,
            "operation": facts.operation,
            "copy_source": facts.copy_source,
            "policy": policy,
            "type": kind,
            "source_ip": ctx.peer.ip().to_string(),
            "decision_us": ctx.started.elapsed().as_micros() as u64,
        }),
    };
    shared.audit.record(entry).await.map_err(|e| {
        tracing::error!(request_id, resource = %route.name, "audit: {e}; request refused");
        Refusal::new(
            "audit_unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the request cannot be audited right now; try again later",
        )
    })
}
