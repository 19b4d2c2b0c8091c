//! Request traces. The proxy makes `tracing` spans under [`TRACE_TARGET`]; when traces are on,
//! a layer filtered to that target turns them into OpenTelemetry spans and a batch processor
//! exports them. When traces are off no layer wants that target, so the spans are disabled at
//! their call sites and the request path pays a cached branch for them.
//!
//! Sampling is parent-based: a request whose W3C `traceparent` says "sampled" is recorded,
//! one that says "not sampled" is not, and a new trace is recorded with the configured ratio.

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;

/// The target of every span that becomes part of a trace (`tracing::info_span!(target:
/// shoal_telemetry::TRACE_TARGET, ...)` needs the literal, hence a constant to check against).
pub const TRACE_TARGET: &str = "shoal::trace";

/// How often the batch processor exports finished spans.
const EXPORT_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) fn provider(
    resource: Resource,
    ratio: f64,
    exporter: opentelemetry_otlp::SpanExporter,
) -> SdkTracerProvider {
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(EXPORT_DELAY)
                .build(),
        )
        .build();
    SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_span_processor(processor)
        .build()
}

pub(crate) fn layer<S>(
    provider: &SdkTracerProvider,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("shoal"))
        .with_location(false)
        .with_target(false)
        .with_threads(false)
        .with_level(false)
        .with_tracked_inactivity(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.target() == TRACE_TARGET
        }))
        .boxed()
}

/// Makes `span` a child of the caller's trace when the request carries a valid
/// `traceparent`; otherwise the span starts a trace of its own.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only when the span was already started, which a fresh span never is.
    let _ = span.set_parent(parent);
}

/// Writes `span`'s W3C trace context (`traceparent`, `tracestate`) into `headers`, replacing
/// the caller's, so the upstream's spans hang under this hop. Without a recorded span the
/// caller's headers pass through untouched.
pub fn inject_trace_context(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}

/// Marks `span` failed with `message` (OpenTelemetry's error status).
pub fn record_error(span: &tracing::Span, message: &str) {
    if !span.is_disabled() {
        span.set_status(Status::error(message.to_string()));
    }
}
