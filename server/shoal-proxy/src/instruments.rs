//! The data plane's request figures, recorded as requests go: what they cost, how they were
//! decided, how long the policies took, how often the upstream failed. Names follow the
//! OpenTelemetry semantic conventions where one exists (`http.server.request.duration`). The
//! failed policy evaluations are counted by the data plane and read when a reader collects.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use rustc_hash::FxBuildHasher;
use shoal_telemetry::{BoundCounter, BoundHistogram, Counter, Histogram, KeyValue, Meter};

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

/// Bound handles kept per instrument; values past them are recorded unbound (the SDK's own
/// cardinality limit is 2,000 series).
const MAX_BOUND: usize = 2_000;

type ByName<L, H> = HashMap<Box<str>, Vec<(L, H)>, FxBuildHasher>;

/// An instrument's handles bound to attribute values, found by a name (a resource or policy,
/// from the configuration) and a label of fixed values. Recording through a bound handle
/// skips the SDK's per-measurement work, hashing every attribute (its key and value) and
/// looking the set up: a request's three measurements took about 4,600 instructions that
/// way and take about 800 this way (callgrind).
struct Bound<L, H> {
    by_name: RwLock<ByName<L, H>>,
    count: AtomicUsize,
}

impl<L: Copy + PartialEq, H> Bound<L, H> {
    fn new() -> Self {
        Self {
            by_name: RwLock::new(HashMap::default()),
            count: AtomicUsize::new(0),
        }
    }

    /// Calls `record` with the handle for (`name`, `label`), bound by `bind` the first time;
    /// `false` (nothing recorded) once [`MAX_BOUND`] handles are kept.
    fn record(
        &self,
        name: &str,
        label: L,
        bind: impl FnOnce() -> H,
        record: impl FnOnce(&H),
    ) -> bool {
        {
            let map = self.by_name.read().unwrap_or_else(|e| e.into_inner());
            let handles = map.get(name).map_or(&[][..], Vec::as_slice);
            if let Some((_, handle)) = handles.iter().find(|(l, _)| *l == label) {
                record(handle);
                return true;
            }
        }
        if self.count.load(Ordering::Relaxed) >= MAX_BOUND {
            return false;
        }
        let mut map = self.by_name.write().unwrap_or_else(|e| e.into_inner());
        let handles = map.entry(name.into()).or_default();
        let at = match handles.iter().position(|(l, _)| *l == label) {
            Some(at) => at,
            None => {
                self.count.fetch_add(1, Ordering::Relaxed);
                handles.push((label, bind()));
                handles.len() - 1
            }
        };
        record(&handles[at].1);
        true
    }
}

pub(crate) struct Instruments {
    request_duration: Histogram<f64>,
    /// By resource, then method label and status.
    request_bound: Bound<(&'static str, u16), BoundHistogram<f64>>,
    decisions: Counter<u64>,
    /// By outcome, then counting mode (strict or not).
    decisions_bound: Bound<bool, BoundCounter<u64>>,
    policy_duration: Histogram<f64>,
    /// By policy, then result.
    policy_bound: Bound<&'static str, BoundHistogram<f64>>,
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
            request_bound: Bound::new(),
            decisions_bound: Bound::new(),
            policy_bound: Bound::new(),
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
        let (method, status) = (method_label(method), status.as_u16());
        let attributes = || {
            [
                KeyValue::new("shoal.resource", resource.to_string()),
                KeyValue::new("http.request.method", method),
                KeyValue::new("http.response.status_code", i64::from(status)),
            ]
        };
        let took = took.as_secs_f64();
        let bound = self.request_bound.record(
            resource,
            (method, status),
            || self.request_duration.bind(&attributes()),
            |h| h.record(took),
        );
        if !bound {
            self.request_duration.record(took, &attributes());
        }
    }

    pub(crate) fn decision(&self, outcome: &'static str, strict: bool) {
        let attributes = || {
            [
                KeyValue::new("outcome", outcome),
                KeyValue::new("mode", if strict { "strict" } else { "eventual" }),
            ]
        };
        let bound = self.decisions_bound.record(
            outcome,
            strict,
            || self.decisions.bind(&attributes()),
            |h| h.add(1),
        );
        if !bound {
            self.decisions.add(1, &attributes());
        }
    }

    pub(crate) fn policy(&self, policy: &str, result: &'static str, took: Duration) {
        let attributes = || {
            [
                KeyValue::new("shoal.policy.name", policy.to_string()),
                KeyValue::new("result", result),
            ]
        };
        let took = took.as_secs_f64();
        let bound = self.policy_bound.record(
            policy,
            result,
            || self.policy_duration.bind(&attributes()),
            |h| h.record(took),
        );
        if !bound {
            self.policy_duration.record(took, &attributes());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_and_label_binds_once_and_records_through_its_own_handle() {
        let bound: Bound<(&'static str, u16), AtomicU64> = Bound::new();
        let binds = AtomicUsize::new(0);
        let record = |name: &str, label| {
            bound.record(
                name,
                label,
                || {
                    binds.fetch_add(1, Ordering::Relaxed);
                    AtomicU64::new(0)
                },
                |h| {
                    h.fetch_add(1, Ordering::Relaxed);
                },
            )
        };
        for _ in 0..3 {
            assert!(record("photos", ("GET", 200)));
        }
        assert!(record("photos", ("GET", 404)));
        assert!(record("videos", ("GET", 200)));
        assert_eq!(binds.load(Ordering::Relaxed), 3);
        let map = bound.by_name.read().unwrap();
        let count = |name: &str, label| {
            map[name]
                .iter()
                .find(|(l, _)| *l == label)
                .map(|(_, h)| h.load(Ordering::Relaxed))
        };
        assert_eq!(count("photos", ("GET", 200)), Some(3));
        assert_eq!(count("photos", ("GET", 404)), Some(1));
        assert_eq!(count("videos", ("GET", 200)), Some(1));
    }

    #[test]
    fn past_the_bound_limit_nothing_more_is_bound_and_the_caller_records_unbound() {
        let bound: Bound<u16, ()> = Bound::new();
        for status in 0..MAX_BOUND as u16 {
            assert!(bound.record("r", status, || (), |()| {}));
        }
        let mut bound_again = false;
        assert!(!bound.record("r", u16::MAX, || bound_again = true, |()| {}));
        assert!(!bound_again);
        // Handles already bound keep recording.
        assert!(bound.record("r", 7, || (), |()| {}));
        assert_eq!(bound.count.load(Ordering::Relaxed), MAX_BOUND);
    }
}
