//! Logs and traces of `memgraph-operator run`: one `tracing` subscriber that filters by
//! `RUST_LOG` (default `info`), writes text or JSON lines, and, when an OTLP endpoint is given
//! (and the `otlp` feature is built), exports spans over OTLP gRPC. With an exporter, log lines
//! written inside a span carry its trace and span ids.
//!
//! Without an endpoint no exporter, no OpenTelemetry layer and no id lookup is installed: spans
//! cost what `tracing` spans cost for the log formatter.

use thiserror::Error;
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

/// Default `service.name` of exported spans (`OTEL_SERVICE_NAME` overrides it).
pub const DEFAULT_SERVICE_NAME: &str = "memgraph-operator";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What [`init`] installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// Text or JSON lines.
    pub log_format: LogFormat,
    /// OTLP gRPC endpoint spans are exported to; `None` exports nothing.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// A `RUST_LOG`-style filter; `None` reads `RUST_LOG` (and uses `info` when it is unset or
    /// invalid, so a typo there never stops the operator).
    pub filter: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            filter: None,
        }
    }
}

/// Why logging or tracing could not be set up.
#[derive(Debug, Error)]
pub enum TelemetryError {
    /// The filter given is not a valid `RUST_LOG` directive list.
    #[error("invalid log filter {filter:?}: {message}")]
    Filter {
        /// The filter.
        filter: String,
        /// Why.
        message: String,
    },
    /// The OTLP endpoint cannot be used.
    #[error("invalid OTLP endpoint {endpoint:?}: {message}")]
    Endpoint {
        /// The endpoint.
        endpoint: String,
        /// Why, and what to give instead.
        message: String,
    },
    /// An endpoint was given to a build without the `otlp` feature.
    #[error("cannot export traces to {0}: this operator was built without the otlp feature")]
    NoOtlp(String),
    /// The exporter needs a running Tokio runtime.
    #[error("the OTLP exporter must be built inside a Tokio runtime")]
    NoRuntime,
    /// A global subscriber was installed before.
    #[error("cannot install the log subscriber: {0}")]
    Install(String),
}

/// The endpoint spans go to: `--otlp-endpoint` when given, else the standard environment
/// variables, the traces-specific one first (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, then
/// `OTEL_EXPORTER_OTLP_ENDPOINT`). Empty values count as unset.
pub fn resolve_endpoint(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Option<String> {
    let set = |v: &str| !v.trim().is_empty();
    flag.filter(|v| set(v)).map(str::to_owned).or_else(|| {
        ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
            .into_iter()
            .find_map(|name| env(name).filter(|v| set(v)))
    })
}

/// The endpoint as the exporter takes it. The OTLP library reads an endpoint without a scheme
/// as `https://`, which this build cannot speak (it has no TLS for OTLP): one without a scheme
/// is taken as plain `http://`, and `https://` is refused with a message saying so rather than
/// failing at every export.
pub fn normalize_endpoint(endpoint: &str) -> Result<String, TelemetryError> {
    let endpoint = endpoint.trim();
    let refuse =
        |message: &str| TelemetryError::Endpoint { endpoint: endpoint.to_owned(), message: message.to_owned() };
    match endpoint.split_once("://") {
        None => Ok(format!("http://{endpoint}")),
        Some(("http", rest)) if !rest.is_empty() => Ok(endpoint.to_owned()),
        Some(("https", _)) => Err(refuse(
            "OTLP over TLS is not built in; give the collector's plain gRPC port, such as http://otel-collector:4317",
        )),
        Some(_) => Err(refuse("expected http://HOST:PORT (OTLP over gRPC)")),
    }
}

/// What has to outlive the subscriber: the span exporter, flushed by [`Telemetry::shutdown`]
/// (also on drop).
#[derive(Debug, Default)]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        #[cfg(feature = "otlp")]
        {
            self.provider.is_some()
        }
        #[cfg(not(feature = "otlp"))]
        {
            false
        }
    }

    /// Export the spans still buffered and stop the exporter. Call it while the Tokio runtime
    /// the exporter was built in still runs (its connection lives there), and not from a
    /// thread that runtime needs: the call blocks until the export ends or times out.
    pub fn shutdown(&mut self) -> Result<(), String> {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take() {
            return provider
                .shutdown_with_timeout(std::time::Duration::from_secs(5))
                .map_err(|e| format!("cannot flush the spans: {e}"));
        }
        Ok(())
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn env_filter(config: &TelemetryConfig) -> Result<EnvFilter, TelemetryError> {
    match &config.filter {
        Some(filter) => EnvFilter::try_new(filter)
            .map_err(|e| TelemetryError::Filter { filter: filter.clone(), message: e.to_string() }),
        None => Ok(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))),
    }
}

/// The subscriber of `config` writing log lines to `writer`, and what must outlive it. Needs a
/// running Tokio runtime when an OTLP endpoint is set. [`init`] installs it process-wide;
/// tests use it with `tracing::subscriber::with_default`.
pub fn build<W>(
    config: &TelemetryConfig,
    writer: W,
) -> Result<(impl Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static, Telemetry), TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = env_filter(config)?;
    #[cfg(feature = "otlp")]
    {
        let exporter = match &config.otlp_endpoint {
            Some(endpoint) => Some(otlp::provider(endpoint, &config.service_name)?),
            None => None,
        };
        let slot = otlp::DispatchSlot::default();
        let ids = exporter.is_some().then(|| slot.clone());
        let otel = exporter.as_ref().map(|provider| otlp::layer(provider));
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(fmt_layer(config.log_format, writer, ids))
            .with(otel)
            .with(slot);
        Ok((subscriber, Telemetry { provider: exporter }))
    }
    #[cfg(not(feature = "otlp"))]
    {
        if let Some(endpoint) = &config.otlp_endpoint {
            return Err(TelemetryError::NoOtlp(endpoint.clone()));
        }
        let subscriber = tracing_subscriber::registry().with(filter).with(fmt_layer(config.log_format, writer));
        Ok((subscriber, Telemetry::default()))
    }
}

/// Install the subscriber of `config` for the whole process, writing to stderr (and capturing
/// `log` records of dependencies). Needs a running Tokio runtime when an OTLP endpoint is set.
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    use tracing_subscriber::util::SubscriberInitExt;
    let (subscriber, telemetry) = build(config, std::io::stderr)?;
    subscriber.try_init().map_err(|e| TelemetryError::Install(e.to_string()))?;
    Ok(telemetry)
}

/// The log formatter. No ANSI colours: the operator's logs go to container logs, where escape
/// codes are noise, and lines that carry trace ids are assembled in a buffer that has none.
#[cfg(feature = "otlp")]
fn fmt_layer<S, W>(
    format: LogFormat,
    writer: W,
    ids: Option<otlp::DispatchSlot>,
) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(false);
    match (format, ids) {
        (LogFormat::Text, None) => Box::new(layer),
        (LogFormat::Json, None) => Box::new(layer.json()),
        (LogFormat::Text, Some(slot)) => {
            Box::new(layer.event_format(otlp::WithTraceIds::new(tracing_subscriber::fmt::format(), slot, false)))
        }
        (LogFormat::Json, Some(slot)) => Box::new(layer.json().event_format(otlp::WithTraceIds::new(
            tracing_subscriber::fmt::format().json(),
            slot,
            true,
        ))),
    }
}

/// The log formatter (see the `otlp` build's for why there are no colours).
#[cfg(not(feature = "otlp"))]
fn fmt_layer<S, W>(format: LogFormat, writer: W) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(false);
    match format {
        LogFormat::Text => Box::new(layer),
        LogFormat::Json => Box::new(layer.json()),
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    //! The OTLP exporter, its `tracing` layer, and trace ids in log lines.

    use std::sync::{Arc, OnceLock};

    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing::dispatcher::WeakDispatch;
    use tracing::{Dispatch, Event, Subscriber};
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{FilterFn, Filtered};
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
    use tracing_subscriber::registry::LookupSpan;

    use super::{TelemetryError, normalize_endpoint};

    /// Targets whose spans are never exported. The exporter's own transport (tonic, h2, hyper,
    /// tower) would otherwise trace its own exports at debug level, and every export would
    /// make more spans to export. kube-runtime's `reconciling object` span ends as soon as the
    /// reconcile's future is created, before the reconcile runs: exported, it would be an empty
    /// trace per reconcile beside the operator's own `reconcile` span.
    const NOT_EXPORTED: [&str; 9] = [
        "h2",
        "hyper",
        "hyper_util",
        "tonic",
        "tower",
        "opentelemetry",
        "opentelemetry_sdk",
        "opentelemetry_otlp",
        "kube_runtime",
    ];

    fn exported(target: &str) -> bool {
        !NOT_EXPORTED.iter().any(|t| target == *t || target.strip_prefix(t).is_some_and(|rest| rest.starts_with("::")))
    }

    fn exported_span(meta: &tracing::Metadata<'_>) -> bool {
        exported(meta.target())
    }

    /// The tracer provider exporting to `endpoint` in batches.
    pub(super) fn provider(endpoint: &str, service_name: &str) -> Result<SdkTracerProvider, TelemetryError> {
        let endpoint = normalize_endpoint(endpoint)?;
        // tonic starts its connection's task on the current runtime: without one it panics.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TelemetryError::NoRuntime);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| TelemetryError::Endpoint { endpoint, message: e.to_string() })?;
        let resource = opentelemetry_sdk::Resource::builder().with_service_name(service_name.to_owned()).build();
        Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
    }

    /// The OpenTelemetry layer behind its filter of targets.
    pub(super) type OtelLayer<S> = Filtered<
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
        FilterFn<fn(&tracing::Metadata<'_>) -> bool>,
        S,
    >;

    /// The layer turning `tracing` spans into exported OpenTelemetry spans.
    pub(super) fn layer<S>(provider: &SdkTracerProvider) -> OtelLayer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let tracer = provider.tracer(super::DEFAULT_SERVICE_NAME);
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(tracing_subscriber::filter::filter_fn(exported_span as fn(&tracing::Metadata<'_>) -> bool))
    }

    /// Remembers the dispatcher the subscriber is installed as. A formatter cannot ask for
    /// the current dispatcher while it formats (tracing hands out none inside an event), and
    /// the OpenTelemetry context of a span is found through the dispatcher.
    #[derive(Clone, Default)]
    pub(super) struct DispatchSlot(Arc<OnceLock<WeakDispatch>>);

    impl<S: Subscriber> Layer<S> for DispatchSlot {
        fn on_register_dispatch(&self, subscriber: &Dispatch) {
            let _ = self.0.set(subscriber.downgrade());
        }
    }

    /// A log formatter adding the trace and span ids of the event's span: JSON lines get
    /// `trace_id` and `span_id` fields, text lines end with `trace_id=… span_id=…`.
    pub(super) struct WithTraceIds<F> {
        inner: F,
        slot: DispatchSlot,
        json: bool,
    }

    impl<F> WithTraceIds<F> {
        pub(super) fn new(inner: F, slot: DispatchSlot, json: bool) -> Self {
            Self { inner, slot, json }
        }

        fn ids<S, N>(&self, ctx: &FmtContext<'_, S, N>) -> Option<(String, String)>
        where
            S: Subscriber + for<'a> LookupSpan<'a>,
            N: for<'a> FormatFields<'a> + 'static,
        {
            // The span reference is dropped at once: the context lookup takes the span's
            // extensions again.
            let id = ctx.parent_span()?.id();
            let dispatch = self.slot.0.get()?.upgrade()?;
            let context = tracing_opentelemetry::get_otel_context(&id, &dispatch)?;
            let span = context.span();
            let span_context = span.span_context();
            span_context.is_valid().then(|| (span_context.trace_id().to_string(), span_context.span_id().to_string()))
        }
    }

    impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
        F: FormatEvent<S, N>,
    {
        fn format_event(
            &self,
            ctx: &FmtContext<'_, S, N>,
            mut writer: Writer<'_>,
            event: &Event<'_>,
        ) -> std::fmt::Result {
            let Some((trace_id, span_id)) = self.ids(ctx) else {
                return self.inner.format_event(ctx, writer, event);
            };
            let mut line = String::new();
            self.inner.format_event(ctx, Writer::new(&mut line), event)?;
            let body = line.strip_suffix('\n').unwrap_or(&line);
            match body.strip_suffix('}').filter(|_| self.json) {
                // Hex ids need no JSON escaping.
                Some(object) => writeln!(writer, "{object},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"),
                None if self.json => writer.write_str(&line),
                None => writeln!(writer, "{body} trace_id={trace_id} span_id={span_id}"),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn transport_targets_are_not_exported() {
            assert!(!exported("h2"));
            assert!(!exported("h2::codec"));
            assert!(!exported("tonic::transport"));
            assert!(!exported("kube_runtime::controller"));
            assert!(exported("memgraph_operator::controller"));
            assert!(exported("kube_client::client"));
            assert!(exported("h2o"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_traces_variable() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        let both = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
        ]);
        assert_eq!(resolve_endpoint(Some("http://flag:4317"), both).as_deref(), Some("http://flag:4317"));
        assert_eq!(resolve_endpoint(None, both).as_deref(), Some("http://traces:4317"));
        assert_eq!(resolve_endpoint(Some(""), both).as_deref(), Some("http://traces:4317"));
        let general =
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")]);
        assert_eq!(resolve_endpoint(None, general).as_deref(), Some("http://general:4317"));
        assert_eq!(resolve_endpoint(None, env(&[])), None);
    }

    #[test]
    fn endpoints_without_a_scheme_are_plain_grpc() {
        assert_eq!(normalize_endpoint("collector:4317").ok().as_deref(), Some("http://collector:4317"));
        assert_eq!(normalize_endpoint(" http://c:4317 ").ok().as_deref(), Some("http://c:4317"));
        assert!(matches!(normalize_endpoint("https://c:4317"), Err(TelemetryError::Endpoint { .. })));
        assert!(matches!(normalize_endpoint("ftp://c"), Err(TelemetryError::Endpoint { .. })));
        assert!(matches!(normalize_endpoint("http://"), Err(TelemetryError::Endpoint { .. })));
    }

    #[test]
    fn a_bad_filter_is_refused() {
        let config = TelemetryConfig { filter: Some("info,[".into()), ..Default::default() };
        assert!(matches!(build(&config, std::io::sink), Err(TelemetryError::Filter { .. })));
    }

    #[cfg(feature = "otlp")]
    #[test]
    fn an_exporter_outside_a_runtime_is_refused() {
        let config = TelemetryConfig { otlp_endpoint: Some("http://127.0.0.1:1".into()), ..Default::default() };
        assert!(matches!(build(&config, std::io::sink), Err(TelemetryError::NoRuntime)));
    }
}
