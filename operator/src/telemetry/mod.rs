//! Observability of the operator process: Prometheus metrics ([`metrics::Metrics`], served on
//! `/metrics` by [`server`]), OTLP traces and the log format ([`pipeline`]). See
//! `docs/observability.md` for what is exported.
//!
//! Nothing here is global: the controller owns one [`metrics::Metrics`], and the simulation can
//! make one per simulated world.

pub mod metrics;
pub mod pipeline;
pub mod server;

pub use metrics::Metrics;
pub use pipeline::{LogFormat, Telemetry, TelemetryConfig, TelemetryError};

/// The span of one reconcile of one cluster; the spans of observe, plan, act and of every API
/// call and Memgraph query made on its behalf are its children.
pub fn reconcile_span(namespace: &str, name: &str) -> tracing::Span {
    tracing::info_span!("reconcile", cluster.name = %name, cluster.namespace = %namespace)
}
