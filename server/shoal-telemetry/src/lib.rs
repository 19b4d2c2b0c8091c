//! Telemetry: one OpenTelemetry meter provider and, when traces are on, one tracer provider
//! per node, both with the resource every data point and span carries (`service.name`,
//! `service.version`, `service.instance.id`, cluster, platform); a Prometheus rendering of the
//! same instruments for `/metrics`; and the node's log output with a level that can change at
//! run time.
//!
//! Instruments are registered by whoever owns the figures, on the meter the binary hands out:
//! each crate's `register_metrics` adds observable instruments that read its status when a
//! reader collects (they need only the OpenTelemetry API, not this crate), and the data plane
//! records its request figures (durations, decisions, policy evaluations) as they happen.
//!
//! Metrics and traces are pushed over OTLP (HTTP/protobuf or gRPC, TLS with `https://`) when an
//! endpoint is configured, by exporters on threads of their own; shutting down flushes what
//! they still hold.
//!
//! - `trace`: request spans, their sampling, and W3C trace context in and out of the proxy.
//! - `logs`: the log subscriber (text or JSON) and the run-time level.

#![forbid(unsafe_code)]

mod logs;
mod trace;

pub use logs::{LogLevel, LogOptions, init_logs};
pub use trace::{TRACE_TARGET, continue_trace, inject_trace_context, record_error};

/// What instruments are made from and labelled with, so callers need no OpenTelemetry
/// dependency of their own.
pub use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
pub use opentelemetry::metrics::{BoundCounter, BoundHistogram, Counter, Histogram, Meter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder as _, TextEncoder};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot set up the Prometheus exporter: {0}")]
    Prometheus(String),
    #[error("cannot set up the OTLP exporter for {endpoint}: {message}")]
    Otlp { endpoint: String, message: String },
    #[error("cannot render metrics: {0}")]
    Render(String),
    #[error("invalid log level {directives:?}: {message}")]
    LogLevel { directives: String, message: String },
}

/// Who this node is, as every metric says it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub service_version: String,
    /// The node id (stable across restarts).
    pub instance_id: String,
    pub node_name: String,
    pub cluster: String,
    /// Where the node runs: `aws_ecs`, `kubernetes` or `host`.
    pub platform: String,
}

impl Identity {
    /// The platform as the environment tells it: the ECS agent and the kubelet each set a
    /// variable of their own in every container.
    pub fn detect_platform(env: impl Fn(&str) -> Option<String>) -> &'static str {
        if env("ECS_CONTAINER_METADATA_URI_V4").is_some() {
            "aws_ecs"
        } else if env("KUBERNETES_SERVICE_HOST").is_some() {
            "kubernetes"
        } else {
            "host"
        }
    }
}

/// How OTLP travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    HttpProtobuf,
    Grpc,
}

/// Where metrics and traces are pushed over OTLP, and how.
#[derive(Clone)]
pub struct Otlp {
    /// The collector's base URL (`http://collector:4318`; for HTTP `/v1/metrics` and
    /// `/v1/traces` are appended).
    pub endpoint: String,
    pub protocol: Protocol,
    /// Sent with every export (collectors' API keys): never logged.
    pub headers: Vec<(String, String)>,
    pub metrics_interval: std::time::Duration,
    /// Bound on one export.
    pub timeout: std::time::Duration,
    /// Share of new traces recorded; 0 turns tracing off.
    pub trace_sample_ratio: f64,
}

impl std::fmt::Debug for Otlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otlp")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("metrics_interval", &self.metrics_interval)
            .field("trace_sample_ratio", &self.trace_sample_ratio)
            .finish()
    }
}

/// One OTLP exporter (`MetricExporter` or `SpanExporter`) for the configured transport,
/// headers and timeout. A macro because the two signals' builders share method names but no
/// trait.
macro_rules! otlp_exporter {
    ($exporter:ty, $o:expr, $signal:literal) => {{
        use opentelemetry_otlp::{
            WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _,
        };
        let o: &Otlp = $o;
        let base = o.endpoint.trim_end_matches('/');
        match o.protocol {
            Protocol::HttpProtobuf => {
                let endpoint = format!("{base}/v1/{}", $signal);
                <$exporter>::builder()
                    .with_http()
                    .with_endpoint(endpoint.clone())
                    .with_timeout(o.timeout)
                    .with_headers(o.headers.iter().cloned().collect())
                    .build()
                    .map_err(|e| otlp_error(&endpoint, $signal, &e))
            }
            Protocol::Grpc => {
                let mut builder = <$exporter>::builder()
                    .with_tonic()
                    .with_endpoint(base.to_string())
                    .with_timeout(o.timeout)
                    .with_metadata(grpc_metadata(o)?);
                if base.starts_with("https://") {
                    builder = builder.with_tls_config(
                        opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                            .with_enabled_roots(),
                    );
                }
                builder.build().map_err(|e| otlp_error(base, $signal, &e))
            }
        }
    }};
}
/// The node's meter provider and, when enabled, the Prometheus registry it feeds.
pub struct Telemetry {
    provider: SdkMeterProvider,
    tracer: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    registry: Option<prometheus::Registry>,
}

impl Telemetry {
    /// Starts the providers. With gRPC this must run inside a Tokio runtime: tonic's channel
    /// lives on it.
    pub fn start(
        identity: &Identity,
        prometheus: bool,
        otlp: Option<&Otlp>,
    ) -> Result<Self, TelemetryError> {
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", "shoal"),
                KeyValue::new("service.version", identity.service_version.clone()),
                KeyValue::new("service.instance.id", identity.instance_id.clone()),
                KeyValue::new("shoal.node.name", identity.node_name.clone()),
                KeyValue::new("shoal.cluster.name", identity.cluster.clone()),
                KeyValue::new("shoal.platform", identity.platform.clone()),
            ])
            .build();
        let mut builder = SdkMeterProvider::builder().with_resource(resource.clone());
        let registry = if prometheus {
            let registry = prometheus::Registry::new();
            let exporter = opentelemetry_prometheus::exporter()
                .with_registry(registry.clone())
                .build()
                .map_err(|e| TelemetryError::Prometheus(e.to_string()))?;
            builder = builder.with_reader(exporter);
            Some(registry)
        } else {
            None
        };
        let mut tracer = None;
        if let Some(o) = otlp {
            let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(otlp_exporter!(
                opentelemetry_otlp::MetricExporter,
                o,
                "metrics"
            )?)
            .with_interval(o.metrics_interval)
            .build();
            builder = builder.with_reader(reader);
            if o.trace_sample_ratio > 0.0 {
                tracer = Some(trace::provider(
                    resource.clone(),
                    o.trace_sample_ratio,
                    otlp_exporter!(opentelemetry_otlp::SpanExporter, o, "traces")?,
                ));
            }
        }
        Ok(Self {
            provider: builder.build(),
            tracer,
            registry,
        })
    }

    /// The layer that turns the proxy's request spans into OpenTelemetry spans; `None` when
    /// traces are off, so the request path then makes no spans at all.
    pub fn tracing_layer<S>(&self) -> Option<Box<dyn tracing_subscriber::Layer<S> + Send + Sync>>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        self.tracer.as_ref().map(trace::layer)
    }

    /// The meter Shoal's instruments are made from.
    pub fn meter(&self) -> Meter {
        self.provider.meter("shoal")
    }

    /// The Prometheus text exposition of every instrument; `None` when `/metrics` is off.
    pub fn prometheus_text(&self) -> Option<Result<String, TelemetryError>> {
        let registry = self.registry.as_ref()?;
        let mut out = Vec::new();
        Some(
            TextEncoder::new()
                .encode(&registry.gather(), &mut out)
                .map_err(|e| TelemetryError::Render(e.to_string()))
                .and_then(|()| {
                    String::from_utf8(out).map_err(|e| TelemetryError::Render(e.to_string()))
                }),
        )
    }

    /// Flushes what readers and the span processor still hold; part of graceful shutdown.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("telemetry: metrics did not shut down cleanly: {e}");
        }
        if let Some(t) = &self.tracer
            && let Err(e) = t.shutdown()
        {
            tracing::warn!("telemetry: traces did not shut down cleanly: {e}");
        }
    }
}

fn otlp_error(endpoint: &str, signal: &str, e: &dyn std::fmt::Display) -> TelemetryError {
    TelemetryError::Otlp {
        endpoint: endpoint.to_string(),
        message: format!("{signal}: {e}"),
    }
}

/// The export headers as gRPC metadata; errors name the header, never its value.
fn grpc_metadata(
    o: &Otlp,
) -> Result<opentelemetry_otlp::tonic_types::metadata::MetadataMap, TelemetryError> {
    let mut map = http::HeaderMap::new();
    for (k, v) in &o.headers {
        let bad = |what: &str| otlp_error(&o.endpoint, "headers", &format!("{k:?}: {what}"));
        let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad("bad name"))?;
        let value = http::HeaderValue::from_str(v).map_err(|_| bad("bad value"))?;
        map.insert(name, value);
    }
    Ok(opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            service_version: "1.2.3".into(),
            instance_id: "abc".into(),
            node_name: "n0".into(),
            cluster: "prod".into(),
            platform: "host".into(),
        }
    }

    #[test]
    fn instruments_render_as_prometheus_text_with_the_resource_in_target_info() {
        let t = Telemetry::start(&identity(), true, None).unwrap();
        let counter = t.meter().u64_counter("shoal.test.things").build();
        counter.add(3, &[KeyValue::new("kind", "a")]);
        let text = t.prometheus_text().unwrap().unwrap();
        assert!(
            text.contains("shoal_test_things_total{kind=\"a\""),
            "{text}"
        );
        assert!(text.contains("service_version=\"1.2.3\""), "{text}");
        assert!(text.contains("service_instance_id=\"abc\""), "{text}");
        assert!(
            Telemetry::start(&identity(), false, None)
                .unwrap()
                .prometheus_text()
                .is_none()
        );
    }

    #[test]
    fn the_platform_is_read_from_the_environment() {
        let none = |_: &str| None;
        assert_eq!(Identity::detect_platform(none), "host");
        let ecs = |k: &str| (k == "ECS_CONTAINER_METADATA_URI_V4").then(|| "x".to_string());
        assert_eq!(Identity::detect_platform(ecs), "aws_ecs");
        let k8s = |k: &str| (k == "KUBERNETES_SERVICE_HOST").then(|| "x".to_string());
        assert_eq!(Identity::detect_platform(k8s), "kubernetes");
    }
}
