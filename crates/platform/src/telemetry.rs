//! Logs (JSON, or pretty on a terminal), OpenTelemetry traces (exported over OTLP when an endpoint
//! is configured) and W3C trace context carried through gRPC metadata, NATS headers and outbox rows.
use crate::config::{LogFormat, TelemetrySettings};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// Keeps the tracer provider alive; flushes spans when dropped.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber. Call once, from the binary. The tracer provider is always
/// installed (so trace ids exist and propagate); spans are exported only when an OTLP endpoint is
/// configured in settings or `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn init(settings: &TelemetrySettings) -> Result<TelemetryGuard, String> {
    let endpoint = settings
        .otlp_endpoint
        .clone()
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|e| !e.is_empty());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer("earlyhelp");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log_level))
        .map_err(|e| format!("telemetry.log_level: {e}"))?;
    let pretty = match settings.log_format {
        LogFormat::Pretty => true,
        LogFormat::Json => false,
        LogFormat::Auto => std::io::stderr().is_terminal(),
    };
    let fmt = if pretty {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed()
    };
    // The log filter applies to logs only: spans reach OpenTelemetry (and so trace context
    // propagates) whatever the log level.
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .try_init()
        .map_err(|e| format!("telemetry: {e}"))?;
    Ok(TelemetryGuard { provider })
}

/// Trace context headers (`traceparent`, `tracestate`) of the current span.
pub fn current_trace_headers() -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut MapInjector(&mut map));
    map
}

/// Makes `span` a child of the trace described by `headers` (when they carry one).
pub fn set_parent_from(span: &tracing::Span, header: impl Fn(&str) -> Option<String>) {
    let map: BTreeMap<String, String> = ["traceparent", "tracestate"]
        .iter()
        .filter_map(|k| header(k).map(|v| (k.to_string(), v)))
        .collect();
    let cx = TraceContextPropagator::new().extract(&MapExtractor(&map));
    let _ = span.set_parent(cx);
}

struct MapInjector<'a>(&'a mut BTreeMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

struct MapExtractor<'a>(&'a BTreeMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Extracts trace context from incoming gRPC metadata into the request's span.
pub fn set_parent_from_grpc(span: &tracing::Span, md: &tonic::metadata::MetadataMap) {
    set_parent_from(span, |k| {
        md.get(k).and_then(|v| v.to_str().ok()).map(String::from)
    });
}
