//! Metrics: one OpenTelemetry meter provider per node, with the resource every data point
//! carries (`service.name`, `service.version`, `service.instance.id`, cluster, platform), and
//! a Prometheus text rendering of the same instruments for `/metrics`.
//!
//! Instruments are registered by whoever owns the figures (the binary wires observable
//! instruments that read each subsystem's status when a reader collects), so nothing is
//! computed between collections and the request path pays nothing for them.
//!
//! The same instruments are pushed over OTLP (HTTP/protobuf) when an endpoint is configured,
//! by a periodic reader on its own thread; shutting down flushes what it still holds.
//!
//! Not yet: OTLP over gRPC, traces, and run-time log levels (docs/operations.md says what is
//! planned).

#![forbid(unsafe_code)]

/// What instruments are made from and labelled with, so callers need no OpenTelemetry
/// dependency of their own.
pub use opentelemetry::KeyValue;
pub use opentelemetry::metrics::Meter;
use opentelemetry::metrics::MeterProvider as _;
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

/// Where metrics are pushed over OTLP/HTTP, and how often.
#[derive(Debug, Clone)]
pub struct OtlpMetrics {
    /// The collector's base URL (`http://collector:4318`); `/v1/metrics` is appended.
    pub endpoint: String,
    pub interval: std::time::Duration,
    /// Bound on one export.
    pub timeout: std::time::Duration,
}

/// The node's meter provider and, when enabled, the Prometheus registry it feeds.
pub struct Telemetry {
    provider: SdkMeterProvider,
    registry: Option<prometheus::Registry>,
}

impl Telemetry {
    pub fn start(
        identity: &Identity,
        prometheus: bool,
        otlp: Option<&OtlpMetrics>,
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
        let mut builder = SdkMeterProvider::builder().with_resource(resource);
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
        if let Some(o) = otlp {
            use opentelemetry_otlp::WithExportConfig as _;
            let endpoint = format!("{}/v1/metrics", o.endpoint.trim_end_matches('/'));
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_endpoint(endpoint.clone())
                .with_timeout(o.timeout)
                .build()
                .map_err(|e| TelemetryError::Otlp {
                    endpoint,
                    message: e.to_string(),
                })?;
            let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
                .with_interval(o.interval)
                .build();
            builder = builder.with_reader(reader);
        }
        Ok(Self {
            provider: builder.build(),
            registry,
        })
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

    /// Flushes what readers still hold; part of graceful shutdown.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("telemetry did not shut down cleanly: {e}");
        }
    }
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
