//! The data plane's request figures, recorded as requests go: what they cost, how they were
//! decided, how long the policies took, how often the upstream failed. Names follow the
//! OpenTelemetry semantic conventions where one exists (`http.server.request.duration`). The
//! failed policy evaluations are counted by the data plane and read when a reader collects.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use shoal_telemetry::{Counter, Histogram, KeyValue, Meter};

/// Request durations: from 1 ms (a decision answered from memory) to a minute (a large
/// object streamed).
const REQUEST_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 10.0, 60.0,
];

/// Policy evaluations: microseconds normally, a slow rule shows up in the upper buckets.
const POLICY_BUCKETS: [f64; 12] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.1,
];

pub(crate) struct Instruments {
    request_duration: Histogram<f64>,
    decisions: Counter<u64>,
    policy_duration: Histogram<f64>,
    unreachable: Counter<u64>,
    would_block: Counter<u64>,
    upstream_errors: Counter<u64>,
}

impl Instruments {
    /// The request instruments, and the failed policy evaluations as an observable counter
    /// reading `policy_errors` when a reader collects.
    pub(crate) fn new(
        meter: &Meter,
        policy_errors: Arc<AtomicU64>,
        connections: Arc<shoal_http::ConnectionLimit>,
    ) -> Self {
        meter
            .u64_observable_counter("shoal.proxy.policy_errors")
            .with_unit("{evaluation}")
            .with_description("Policy evaluations that failed (each refused its request)")
            .with_callback(move |obs| obs.observe(policy_errors.load(Ordering::Relaxed), &[]))
            .build();
        let refused = connections.clone();
        meter
            .u64_observable_counter("shoal.proxy.connections.refused")
            .with_unit("{connection}")
            .with_description(
                "Client connections answered 503 and closed, by reason (limit: [proxy] max_connections reached)",
            )
            .with_callback(move |obs| {
                obs.observe(refused.refused(), &[KeyValue::new("reason", "limit")]);
            })
            .build();
        meter
            .u64_observable_gauge("shoal.proxy.connections.open")
            .with_unit("{connection}")
            .with_description("Client connections open on the resource ports")
            .with_callback(move |obs| obs.observe(connections.open() as u64, &[]))
            .build();
        Self {
            request_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Data-plane requests, until the response headers are sent")
                .with_boundaries(REQUEST_BUCKETS.to_vec())
                .build(),
            decisions: meter
                .u64_counter("shoal.rate.decisions")
                .with_unit("{decision}")
                .with_description("Requests decided, by outcome and counting mode")
                .build(),
            policy_duration: meter
                .f64_histogram("shoal.policy.evaluation.duration")
                .with_unit("s")
                .with_description("One policy evaluated on one request, by policy and result")
                .with_boundaries(POLICY_BUCKETS.to_vec())
                .build(),
            unreachable: meter
                .u64_counter("shoal.policy.unreachable")
                .with_unit("{evaluation}")
                .with_description(
                    "Policies applied while cluster members were unreachable, by policy and on_unreachable",
                )
                .build(),
            would_block: meter
                .u64_counter("shoal.policy.would_block")
                .with_unit("{request}")
                .with_description(
                    "Requests a policy in shadow mode would have refused (not refused), by policy and why",
                )
                .build(),
            upstream_errors: meter
                .u64_counter("shoal.proxy.upstream.errors")
                .with_unit("{error}")
                .with_description("Requests the upstream did not answer (timeout or failure)")
                .build(),
        }
    }

    pub(crate) fn request(
        &self,
        resource: &str,
        method: &Method,
        status: StatusCode,
        took: Duration,
    ) {
        self.request_duration.record(
            took.as_secs_f64(),
            &[
                KeyValue::new("shoal.resource", resource.to_string()),
                KeyValue::new("http.request.method", method_label(method)),
                KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
            ],
        );
    }

    pub(crate) fn decision(&self, outcome: &'static str, strict: bool) {
        self.decisions.add(
            1,
            &[
                KeyValue::new("outcome", outcome),
                KeyValue::new("mode", if strict { "strict" } else { "eventual" }),
            ],
        );
    }

    pub(crate) fn policy(&self, policy: &str, result: &'static str, took: Duration) {
        self.policy_duration.record(
            took.as_secs_f64(),
            &[
                KeyValue::new("shoal.policy.name", policy.to_string()),
                KeyValue::new("result", result),
            ],
        );
    }

    pub(crate) fn unreachable(&self, policy: &str, behaviour: &'static str) {
        self.unreachable.add(
            1,
            &[
                KeyValue::new("shoal.policy.name", policy.to_string()),
                KeyValue::new("on_unreachable", behaviour),
            ],
        );
    }

    /// A shadow policy's refusal, recorded instead of enforced; `why` is the outcome it would
    /// have had (blocked, policy_error, unreachable).
    pub(crate) fn would_block(&self, policy: &str, why: &'static str) {
        self.would_block.add(
            1,
            &[
                KeyValue::new("shoal.policy.name", policy.to_string()),
                KeyValue::new("outcome", why),
            ],
        );
    }

    pub(crate) fn upstream_error(&self, resource: &str, status: StatusCode) {
        // A path that cannot be forwarded is the caller's error, not the upstream's.
        if status == StatusCode::BAD_REQUEST {
            return;
        }
        let kind = if status == StatusCode::GATEWAY_TIMEOUT {
            "timeout"
        } else {
            "failed"
        };
        self.upstream_errors.add(
            1,
            &[
                KeyValue::new("shoal.resource", resource.to_string()),
                KeyValue::new("error.type", kind),
            ],
        );
    }
}

/// The method as the semantic conventions want it: known methods by name, anything else
/// `_OTHER`, so a client inventing methods cannot grow the metric without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}
