//! The operator's telemetry against real consumers:
//!
//! - `/metrics` as served by the code `memgraph-operator run` uses, scraped over TCP and parsed
//!   by Prometheus's own `promtool check metrics`. Without `promtool` on PATH that test is
//!   reported as ignored with the reason; with `MGO_REQUIRE_PROMTOOL=1` (CI) it fails instead.
//! - Spans exported over OTLP gRPC by the operator's pipeline to a real gRPC receiver
//!   (`fake-opentelemetry-collector`), with their parents and attributes.
//! - Log lines written inside a traced span carrying that span's trace id.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use memgraph_operator::api::{MemgraphClusterSpec, MemgraphClusterStatus, Phase};
use memgraph_operator::kube_api::{Kube, KubeClient};
use memgraph_operator::memgraph::{Bolt, BoltError, BoltValue, Neo4rsBolt, Timeouts};
use memgraph_operator::reconcile::ReconcileError;
use memgraph_operator::telemetry::{self, LogFormat, Metrics, TelemetryConfig, pipeline};
use tracing::Instrument;
use tracing::instrument::WithSubscriber;

const PROMTOOL_SKIP: &str = "skipped: promtool not found (apt-get download prometheus; dpkg -x; see .ci/run)";

/// Gauges that carry `_total` in their names because the plan (and the alerts) name them so:
/// promtool's lint notes them, and nothing else may be noted.
const GAUGES_NAMED_TOTAL: &[&str] = &["memgraph_clusters_total", "memgraph_read_replicas_total"];

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let required = std::env::var("MGO_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1");
    let promtool = find_on_path("promtool");
    let promtool_trial = match promtool {
        Some(path) => Trial::test("metrics_scrape_passes_promtool", move || metrics_pass_promtool(&path)),
        None if required => Trial::test("metrics_scrape_passes_promtool", || {
            Err("promtool not found on PATH, and MGO_REQUIRE_PROMTOOL=1 requires the check to run".into())
        }),
        None => Trial::ignorable_test("metrics_scrape_passes_promtool", || Ok(Completion::ignored_with(PROMTOOL_SKIP))),
    };
    let trials = vec![
        promtool_trial,
        Trial::test("metrics_scrape_has_every_metric", metrics_have_every_name),
        Trial::test("spans_reach_a_real_otlp_receiver", spans_reach_the_receiver),
        Trial::test("text_log_lines_carry_the_trace_id", text_logs_carry_trace_ids),
        Trial::test("without_an_endpoint_nothing_is_exported", without_endpoint),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// A `Metrics` holding a series of every kind: a cluster observed, every measurement variant,
/// a success and a failure of a reconcile, one running and one waiting.
fn metrics_with_everything() -> Metrics {
    let metrics = Metrics::new();
    let mut spec = MemgraphClusterSpec::default();
    spec.read.replicas = 2;
    let status = MemgraphClusterStatus { phase: Phase::Running, ready_replicas: 2, ..Default::default() };
    metrics.observe_cluster("prod", "graph", &spec, Some(&status));
    metrics.record_all("prod", "graph", &telemetry::metrics::sample_measurements());
    let error = ReconcileError::Bolt(BoltError::Timeout { address: "graph-write-0:7687".into(), seconds: 5 });
    metrics.reconcile_done("prod", "graph", Duration::from_millis(40), Ok(()));
    metrics.reconcile_done("prod", "graph", Duration::from_secs(3), Err(&error));
    metrics.requeue_at("prod", "graph", tokio::time::Instant::now());
    metrics
}

/// `/metrics` as the operator serves it, over real TCP.
fn scrape() -> Result<String, Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let metrics = Arc::new(metrics_with_everything());
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    // Held in flight while scraped, so the gauge reads 1.
    let _running = metrics.reconcile_started("prod", "other");
    let server = runtime.spawn(telemetry::server::serve(listener, metrics.clone()));
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: operator\r\nAccept: text/plain;version=0.0.4\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    server.abort();
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no end of the response head")?;
    check(head.starts_with("HTTP/1.1 200 OK"), &format!("status line of {head:?}"))?;
    check(
        head.lines().any(|l| l.eq_ignore_ascii_case("content-type: text/plain; version=0.0.4; charset=utf-8")),
        &format!("text format 0.0.4 content type in {head:?}"),
    )?;
    Ok(body.to_owned())
}

fn metrics_have_every_name() -> Result<(), Failed> {
    let body = scrape()?;
    let documented = common::documented_metrics();
    for name in documented.all() {
        check(body.contains(&format!("# HELP {name} ")), &format!("HELP of {name}"))?;
        let sample = body.lines().any(|l| {
            l.strip_prefix(name).is_some_and(|rest| {
                rest.starts_with('{')
                    || rest.starts_with(' ')
                    || rest.starts_with("_bucket{")
                    || rest.starts_with("_count")
            })
        });
        check(sample, &format!("a sample of {name} in\n{body}"))?;
    }
    check(body.contains("memgraph_reconcile_in_flight 1\n"), "one reconcile in flight")?;
    check(body.contains("memgraph_reconcile_queue_depth 1\n"), "one cluster due")?;
    check(!body.contains("# EOF"), "no OpenMetrics end marker")?;
    Ok(())
}

fn metrics_pass_promtool(promtool: &Path) -> Result<(), Failed> {
    let body = scrape()?;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().ok_or("no stdin")?.write_all(body.as_bytes())?;
    let out = child.wait_with_output()?;
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    match out.status.code() {
        Some(0) => Ok(()),
        // 3: lint problems only. The gauges named `_total` are expected; anything else is not.
        Some(3) => {
            let problems: Vec<&str> = report.lines().filter(|l| !l.trim().is_empty()).collect();
            let unexpected: Vec<&&str> = problems
                .iter()
                .filter(|l| !GAUGES_NAMED_TOTAL.iter().any(|g| l.starts_with(&format!("{g} "))))
                .collect();
            check(
                unexpected.is_empty(),
                &format!("only the gauges named _total are linted; promtool said:\n{report}"),
            )?;
            Ok(())
        }
        code => Err(format!("promtool check metrics exited {code:?} (1 is a parse error):\n{report}\n{body}").into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Traces and logs

/// Log lines written by the pipeline under test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).lines().map(str::to_owned).collect()
    }
}

/// Spans as the operator makes them: a `reconcile` with an `observe` child that queries an
/// instance nobody listens on (so the query fails at once) and an API call to an API server
/// that is not there; and a log line inside the reconcile.
async fn instrumented_reconcile() -> Result<(), Failed> {
    let timeouts = Timeouts {
        connect: Duration::from_secs(2),
        probe: Duration::from_secs(2),
        command: Duration::from_secs(2),
        snapshot: Duration::from_secs(2),
    };
    let bolt = Neo4rsBolt::new(timeouts);
    let config = kube::Config::new("http://127.0.0.1:1".parse()?);
    let kube = KubeClient::new(kube::Client::try_from(config)?, None);
    async {
        tracing::info!(phase = "start", "reconciling");
        let params = [("secret_param".to_owned(), BoltValue::String("do-not-export".into()))].into();
        let result = bolt
            .run_within("127.0.0.1:1", "MATCH (n) WHERE n.id = $secret_param RETURN n", params, timeouts.probe)
            .instrument(tracing::info_span!("observe"))
            .await;
        check(result.is_err(), "nothing listens on port 1")?;
        let pod = kube.get::<k8s_openapi::api::core::v1::Pod>("prod", "graph-write-0").await;
        check(pod.is_err(), "no API server on port 1")?;
        Ok::<_, Failed>(())
    }
    .instrument(telemetry::reconcile_span("prod", "graph"))
    .await
}

/// Run the instrumented reconcile through a pipeline exporting to a fresh receiver; the spans
/// it received and the log lines.
fn traced_run(format: LogFormat) -> Result<(Vec<ExportedSpan>, Vec<String>), Failed> {
    // Multi-threaded: the exporter's connection runs on the workers while the test thread
    // waits for the flush.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let mut collector = FakeCollectorServer::start().await.map_err(|e| e.to_string())?;
        let config = TelemetryConfig {
            log_format: format,
            otlp_endpoint: Some(collector.endpoint()),
            service_name: "telemetry-test".into(),
            filter: Some("info".into()),
        };
        let logs = Captured::default();
        let writer = logs.clone();
        let (subscriber, mut exporter) = pipeline::build(&config, move || writer.clone())?;
        check(exporter.exporting(), "an exporter is installed")?;
        let dispatch = tracing::Dispatch::new(subscriber);
        instrumented_reconcile().with_subscriber(dispatch).await?;
        tokio::task::block_in_place(|| exporter.shutdown())?;
        let spans = collector.exported_spans(4, Duration::from_secs(10)).await;
        collector.abort();
        Ok((spans, logs.lines()))
    })
}

fn span<'a>(spans: &'a [ExportedSpan], name: &str) -> Result<&'a ExportedSpan, Failed> {
    spans.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        format!("no span {name:?} among {names:?}").into()
    })
}

/// The attribute's string value as the receiver shows it.
fn has_attribute(span: &ExportedSpan, key: &str, value: &str) -> Result<(), Failed> {
    let got = span.attributes.get(key);
    check(
        got.is_some_and(|v| v.contains(&format!("StringValue({value:?})"))),
        &format!("{}: {key} = {value:?}, got {got:?}", span.name),
    )
}

fn spans_reach_the_receiver() -> Result<(), Failed> {
    let (spans, logs) = traced_run(LogFormat::Json)?;
    let reconcile = span(&spans, "reconcile")?;
    let observe = span(&spans, "observe")?;
    let query = span(&spans, "memgraph.query")?;
    let api = span(&spans, "kube.api")?;

    check(reconcile.parent_span_id.is_empty(), "reconcile is the root")?;
    check_eq(&observe.parent_span_id, &reconcile.span_id, "parent of observe")?;
    check_eq(&query.parent_span_id, &observe.span_id, "parent of memgraph.query")?;
    check_eq(&api.parent_span_id, &reconcile.span_id, "parent of kube.api")?;
    for s in [observe, query, api] {
        check_eq(&s.trace_id, &reconcile.trace_id, &format!("trace of {}", s.name))?;
    }

    has_attribute(reconcile, "cluster.name", "graph")?;
    has_attribute(reconcile, "cluster.namespace", "prod")?;

    has_attribute(query, "db.system", "memgraph")?;
    has_attribute(query, "server.address", "127.0.0.1:1")?;
    has_attribute(query, "db.query.text", "MATCH (n) WHERE n.id = $secret_param RETURN n")?;
    check(query.attributes.contains_key("error"), "the failed query has an error attribute")?;
    check_eq(query.kind.as_str(), "SPAN_KIND_CLIENT", "kind of memgraph.query")?;
    check(
        query.status.as_ref().is_some_and(|s| s.code == "STATUS_CODE_ERROR"),
        &format!("memgraph.query status: {:?}", query.status),
    )?;
    let exported = format!("{spans:?}");
    check(!exported.contains("do-not-export"), "query parameters are not exported")?;

    has_attribute(api, "http.method", "GET")?;
    has_attribute(api, "k8s.verb", "get")?;
    has_attribute(api, "k8s.resource.kind", "Pod")?;
    has_attribute(api, "k8s.namespace", "prod")?;
    has_attribute(api, "k8s.object.name", "graph-write-0")?;
    check(api.attributes.contains_key("error"), "the failed call has an error attribute")?;

    // The JSON line written inside the reconcile span names its trace and span.
    let line = logs.iter().find(|l| l.contains("reconciling")).ok_or_else(|| format!("no log line in {logs:?}"))?;
    let json: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
    check_eq(json["trace_id"].as_str(), Some(reconcile.trace_id.as_str()), "trace_id of the log line")?;
    check_eq(json["span_id"].as_str(), Some(reconcile.span_id.as_str()), "span_id of the log line")?;
    check_eq(json["fields"]["message"].as_str(), Some("reconciling"), "message")?;
    check_eq(json["span"]["cluster.name"].as_str(), Some("graph"), "span fields in the log line")?;
    for line in &logs {
        serde_json::from_str::<serde_json::Value>(line).map_err(|e| format!("not a JSON line ({e}): {line}"))?;
    }
    Ok(())
}

fn text_logs_carry_trace_ids() -> Result<(), Failed> {
    let (spans, logs) = traced_run(LogFormat::Text)?;
    let reconcile = span(&spans, "reconcile")?;
    let line = logs.iter().find(|l| l.contains("reconciling")).ok_or_else(|| format!("no log line in {logs:?}"))?;
    let suffix = format!(" trace_id={} span_id={}", reconcile.trace_id, reconcile.span_id);
    check(line.ends_with(&suffix), &format!("{line:?} ends with {suffix:?}"))?;
    check(line.contains("INFO"), "a text line")?;
    check(!line.contains('\u{1b}'), "no colour codes")?;
    Ok(())
}

fn without_endpoint() -> Result<(), Failed> {
    let config = TelemetryConfig { log_format: LogFormat::Json, filter: Some("info".into()), ..Default::default() };
    let logs = Captured::default();
    let writer = logs.clone();
    let (subscriber, exporter) = pipeline::build(&config, move || writer.clone())?;
    check(!exporter.exporting(), "no exporter")?;
    tracing::subscriber::with_default(subscriber, || {
        let _span = telemetry::reconcile_span("prod", "graph").entered();
        tracing::info!("reconciling");
    });
    let lines = logs.lines();
    check_eq(lines.len(), 1, "one log line")?;
    let json: serde_json::Value = serde_json::from_str(&lines[0])?;
    check(json.get("trace_id").is_none(), &format!("no trace id without an exporter: {}", lines[0]))?;
    check_eq(json["span"]["name"].as_str(), Some("reconcile"), "the span is still logged")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

fn check(condition: bool, what: &str) -> Result<(), Failed> {
    if condition { Ok(()) } else { Err(format!("check failed: {what}").into()) }
}

fn check_eq<T: PartialEq + std::fmt::Debug>(got: T, want: T, what: &str) -> Result<(), Failed> {
    if got == want { Ok(()) } else { Err(format!("{what}: got {got:?}, want {want:?}").into()) }
}
