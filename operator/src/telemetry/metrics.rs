//! The operator's Prometheus metrics. One [`Metrics`] per controller (or per simulated world):
//! there is no global registry, so two worlds in one process never mix their numbers.
//!
//! Encoded in the Prometheus text format 0.0.4 (what `promtool check metrics` and every
//! Prometheus parse), without exemplars. Counters are registered without their `_total`
//! suffix: prometheus-client adds it when encoding (and panics in debug builds when a
//! counter's registered name already ends in `_total`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::api::{MemgraphClusterSpec, MemgraphClusterStatus, Phase};
use crate::reconcile::ReconcileError;
use crate::reconcile::measure::Measurement;

/// The `Content-Type` of what [`Metrics::encode`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Buckets of `memgraph_reconcile_duration_seconds`: a reconcile takes milliseconds when
/// nothing changes and up to its settle budget plus slow Memgraph commands when it does.
const RECONCILE_BUCKETS: [f64; 13] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets of `memgraph_snapshot_duration_seconds`: `CREATE SNAPSHOT` takes from a fraction
/// of a second on a small graph to minutes on a large one (the default timeout is minutes).
const SNAPSHOT_BUCKETS: [f64; 12] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// Buckets of `memgraph_validation_duration_seconds`: a `RETURN 1` takes a millisecond, a lag
/// measurement waits up to its limit.
const VALIDATION_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Result label values.
const SUCCESS: &str = "success";
const FAILURE: &str = "failure";
const ERROR: &str = "error";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    namespace: String,
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    namespace: String,
    cluster: String,
    replica: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaKindLabels {
    namespace: String,
    cluster: String,
    replica: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TestLabels {
    namespace: String,
    cluster: String,
    test: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    namespace: String,
    cluster: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    namespace: String,
    cluster: String,
    kind: String,
}

type ClusterKey = (String, String);
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_BUCKETS)
}

fn snapshot_histogram() -> Histogram {
    Histogram::new(SNAPSHOT_BUCKETS)
}

fn validation_histogram() -> Histogram {
    Histogram::new(VALIDATION_BUCKETS)
}

/// What is known of one cluster besides its series: enough to compute the cluster gauges at
/// scrape time and to find every series of the cluster when it goes.
#[derive(Debug, Default)]
struct ClusterState {
    /// Its phase was last seen `Running`.
    ready: bool,
    /// When the reconcile it asked for (a requeue or a retry) is due; `None` while a
    /// reconcile runs and before the first one ended.
    requeue_at: Option<Instant>,
    /// Replica label values it has series for.
    replicas: BTreeSet<String>,
    /// `(replica, kind)` label values of its replication error counters.
    replica_errors: BTreeSet<(String, String)>,
    /// Test label values it has series for.
    tests: BTreeSet<String>,
    /// Reconcile error kinds it has counters for.
    error_kinds: BTreeSet<String>,
}

/// The operator's metrics and the registry they are encoded from.
pub struct Metrics {
    registry: Registry,
    clusters_total: Gauge,
    clusters_ready: Gauge,
    read_replicas_total: Family<ClusterLabels, Gauge>,
    read_replicas_ready: Family<ClusterLabels, Gauge>,
    replication_lag: Family<ReplicaLabels, Gauge<f64, AtomicU64>>,
    validation_passing: Family<TestLabels, Gauge>,
    backup_last_success: Family<ClusterLabels, Gauge>,
    reconcile_in_flight: Gauge,
    reconcile_queue_depth: Gauge,
    leader: Gauge,
    replication_errors: Family<ReplicaKindLabels, Counter>,
    snapshots: Family<ResultLabels, Counter>,
    s3_uploads: Family<ResultLabels, Counter>,
    s3_upload_errors: Family<ClusterLabels, Counter>,
    s3_upload_bytes: Family<ClusterLabels, Counter>,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_errors: Family<KindLabels, Counter>,
    validations: Family<TestLabels, Counter>,
    validation_failures: Family<TestLabels, Counter>,
    reconcile_duration: HistogramFamily<ClusterLabels>,
    snapshot_duration: HistogramFamily<ClusterLabels>,
    validation_duration: HistogramFamily<TestLabels>,
    clusters: Mutex<BTreeMap<ClusterKey, ClusterState>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Marks a reconcile as running; the `memgraph_reconcile_in_flight` gauge counts it until this
/// is dropped, also when the reconcile's future is dropped half-way (at shutdown).
#[must_use = "the reconcile counts as in flight only while this lives"]
pub struct InFlight<'a> {
    metrics: &'a Metrics,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.reconcile_in_flight.dec();
    }
}

impl Metrics {
    /// Every metric registered, with no series yet.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let clusters_total = Gauge::default();
        let clusters_ready = Gauge::default();
        let read_replicas_total = Family::default();
        let read_replicas_ready = Family::default();
        let replication_lag = Family::default();
        let validation_passing = Family::default();
        let backup_last_success = Family::default();
        let reconcile_in_flight = Gauge::default();
        let reconcile_queue_depth = Gauge::default();
        let leader = Gauge::default();
        let replication_errors = Family::default();
        let snapshots = Family::default();
        let s3_uploads = Family::default();
        let s3_upload_errors = Family::default();
        let s3_upload_bytes = Family::default();
        let reconciles = Family::default();
        let reconcile_errors = Family::default();
        let validations = Family::default();
        let validation_failures = Family::default();
        let reconcile_duration: HistogramFamily<ClusterLabels> = Family::new_with_constructor(reconcile_histogram);
        let snapshot_duration: HistogramFamily<ClusterLabels> = Family::new_with_constructor(snapshot_histogram);
        let validation_duration: HistogramFamily<TestLabels> = Family::new_with_constructor(validation_histogram);

        // Gauges. The two named `_total` carry the names the plan and the alerts use although
        // they are gauges (promtool's lint notes that; see docs/observability.md).
        registry.register(
            "memgraph_clusters_total",
            "MemgraphClusters this operator reconciles",
            clusters_total.clone(),
        );
        registry.register(
            "memgraph_clusters_ready",
            "MemgraphClusters this operator reconciles whose phase is Running",
            clusters_ready.clone(),
        );
        registry.register(
            "memgraph_read_replicas_total",
            "Read replicas the cluster asks for (spec.read.replicas)",
            read_replicas_total.clone(),
        );
        registry.register(
            "memgraph_read_replicas_ready",
            "Read replicas registered on the MAIN and in sync (status.readyReplicas)",
            read_replicas_ready.clone(),
        );
        registry.register(
            "memgraph_replication_lag_seconds",
            "Last measured replication lag of the replica: from the MAIN acknowledging a test write to the first read on the replica that saw it",
            replication_lag.clone(),
        );
        registry.register(
            "memgraph_validation_passing",
            "Whether the last run of the live check passed (1) or not (0)",
            validation_passing.clone(),
        );
        registry.register(
            "memgraph_backup_last_success_timestamp_seconds",
            "When the last backup whose manifest was written finished, as Unix seconds",
            backup_last_success.clone(),
        );
        registry.register("memgraph_reconcile_in_flight", "Reconciles running now", reconcile_in_flight.clone());
        registry.register(
            "memgraph_operator_leader",
            "1 while this operator process holds the leader Lease and reconciles, 0 while it stands by",
            leader.clone(),
        );
        registry.register(
            "memgraph_reconcile_queue_depth",
            "Clusters whose requested requeue or retry time has passed and whose reconcile has not started yet (reconciles triggered by watch events are not counted)",
            reconcile_queue_depth.clone(),
        );

        // Counters: registered without `_total`, which the encoder appends.
        registry.register(
            "memgraph_replication_errors",
            "Replication failures of a replica by kind: test_failed, diverged, invalid, register_failed",
            replication_errors.clone(),
        );
        registry.register(
            "memgraph_snapshots",
            "Scheduled snapshots finished, by result (success or failure)",
            snapshots.clone(),
        );
        registry.register(
            "memgraph_s3_uploads",
            "Backup uploads to the object store finished, by result (success or failure)",
            s3_uploads.clone(),
        );
        registry.register("memgraph_s3_upload_errors", "Backup uploads that failed", s3_upload_errors.clone());
        registry.register(
            "memgraph_s3_upload_bytes",
            "Bytes of snapshot files uploaded by backups that succeeded",
            s3_upload_bytes.clone(),
        );
        registry.register(
            "memgraph_reconcile",
            "Reconciles finished, by result (success or error)",
            reconciles.clone(),
        );
        registry.register(
            "memgraph_reconcile_errors",
            "Reconciles that failed, by kind of error (kube, conflict, bolt)",
            reconcile_errors.clone(),
        );
        registry.register("memgraph_validation", "Runs of a live check", validations.clone());
        registry.register(
            "memgraph_validation_failures",
            "Runs of a live check that did not pass",
            validation_failures.clone(),
        );

        // Histograms.
        registry.register(
            "memgraph_reconcile_duration_seconds",
            "Time one reconcile of the cluster took",
            reconcile_duration.clone(),
        );
        registry.register(
            "memgraph_snapshot_duration_seconds",
            "Time CREATE SNAPSHOT took, for every scheduled snapshot that finished",
            snapshot_duration.clone(),
        );
        registry.register(
            "memgraph_validation_duration_seconds",
            "Time one run of a live check took",
            validation_duration.clone(),
        );

        Self {
            registry,
            clusters_total,
            clusters_ready,
            read_replicas_total,
            read_replicas_ready,
            replication_lag,
            validation_passing,
            backup_last_success,
            reconcile_in_flight,
            reconcile_queue_depth,
            leader,
            replication_errors,
            snapshots,
            s3_uploads,
            s3_upload_errors,
            s3_upload_bytes,
            reconciles,
            reconcile_errors,
            validations,
            validation_failures,
            reconcile_duration,
            snapshot_duration,
            validation_duration,
            clusters: Mutex::new(BTreeMap::new()),
        }
    }

    fn clusters(&self) -> MutexGuard<'_, BTreeMap<ClusterKey, ClusterState>> {
        // A panic elsewhere while holding the lock leaves plain bookkeeping behind: go on with it.
        self.clusters.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Run `f` on the state of the cluster, adding it when new.
    fn with_state<R>(&self, namespace: &str, cluster: &str, f: impl FnOnce(&mut ClusterState) -> R) -> R {
        let mut clusters = self.clusters();
        f(clusters.entry((namespace.to_owned(), cluster.to_owned())).or_default())
    }

    /// Record the cluster as seen by a reconcile: its spec and the status written (or stored).
    pub fn observe_cluster(
        &self,
        namespace: &str,
        cluster: &str,
        spec: &MemgraphClusterSpec,
        status: Option<&MemgraphClusterStatus>,
    ) {
        let labels = cluster_labels(namespace, cluster);
        let wanted = i64::from(spec.read.replicas.max(0));
        self.read_replicas_total.get_or_create(&labels).set(wanted);
        // Replicas scaled away keep no series: a frozen lag would keep an alert firing.
        let gone: Vec<String> = self.with_state(namespace, cluster, |state| {
            if let Some(status) = status {
                state.ready = status.phase == Phase::Running;
            }
            let gone: Vec<String> =
                state.replicas.iter().filter(|r| replica_index(r).is_some_and(|i| i >= wanted)).cloned().collect();
            state.replicas.retain(|r| !gone.contains(r));
            let errors: Vec<(String, String)> =
                state.replica_errors.iter().filter(|(r, _)| gone.contains(r)).cloned().collect();
            for (replica, kind) in errors {
                self.replication_errors.remove(&replica_kind_labels(namespace, cluster, &replica, &kind));
                state.replica_errors.remove(&(replica, kind));
            }
            gone
        });
        for replica in gone {
            self.replication_lag.remove(&replica_labels(namespace, cluster, &replica));
        }
        let Some(status) = status else { return };
        self.read_replicas_ready.get_or_create(&labels).set(i64::from(status.ready_replicas.max(0)));
        // After an operator restart the gauge starts from the status, so "no backup for a day"
        // is seen without waiting for the next backup.
        let from_status = [
            status.backups.as_ref().and_then(|b| b.last_successful.as_ref()).map(|b| b.time.0.as_second()),
            status.last_s3_backup_time.as_ref().map(|t| t.0.as_second()),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(seconds) = from_status {
            let gauge = self.backup_last_success.get_or_create(&labels);
            if seconds > gauge.get() {
                gauge.set(seconds);
            }
        }
    }

    /// Record one measurement of a reconcile (see [`Measurement`]).
    pub fn record(&self, namespace: &str, cluster: &str, measurement: &Measurement) {
        match measurement {
            Measurement::Validation { test, passed, duration, .. } => {
                let labels = test_labels(namespace, cluster, test.as_str());
                self.with_state(namespace, cluster, |s| s.tests.insert(test.as_str().to_owned()));
                self.validations.get_or_create(&labels).inc();
                if !passed {
                    self.validation_failures.get_or_create(&labels).inc();
                }
                self.validation_passing.get_or_create(&labels).set(i64::from(*passed));
                self.validation_duration.get_or_create(&labels).observe(duration.as_secs_f64());
            }
            Measurement::Lag { replica, seconds } => {
                self.with_state(namespace, cluster, |s| s.replicas.insert(replica.clone()));
                self.replication_lag.get_or_create(&replica_labels(namespace, cluster, replica)).set(*seconds);
            }
            Measurement::ReplicationError { replica, kind } => {
                self.with_state(namespace, cluster, |s| {
                    s.replicas.insert(replica.clone());
                    s.replica_errors.insert((replica.clone(), (*kind).to_owned()))
                });
                self.replication_errors.get_or_create(&replica_kind_labels(namespace, cluster, replica, kind)).inc();
            }
            Measurement::Snapshot { success, duration } => {
                self.with_state(namespace, cluster, |_| ());
                let result = if *success { SUCCESS } else { FAILURE };
                self.snapshots.get_or_create(&result_labels(namespace, cluster, result)).inc();
                self.snapshot_duration
                    .get_or_create(&cluster_labels(namespace, cluster))
                    .observe(duration.as_secs_f64());
            }
            Measurement::Upload { success, bytes, finished_unix, .. } => {
                self.with_state(namespace, cluster, |_| ());
                let labels = cluster_labels(namespace, cluster);
                let result = if *success { SUCCESS } else { FAILURE };
                self.s3_uploads.get_or_create(&result_labels(namespace, cluster, result)).inc();
                // Both exist from the first upload on, so `increase()` sees the first error.
                let errors = self.s3_upload_errors.get_or_create(&labels);
                let uploaded = self.s3_upload_bytes.get_or_create(&labels);
                if *success {
                    uploaded.inc_by(*bytes);
                    let gauge = self.backup_last_success.get_or_create(&labels);
                    if *finished_unix > gauge.get() {
                        gauge.set(*finished_unix);
                    }
                } else {
                    errors.inc();
                }
            }
        }
    }

    /// Record what one reconcile measured. A check run on several instances in one batch
    /// (connectivity of each instance) counts as passing only when every run passed, so one
    /// healthy instance measured last does not hide a failing one.
    pub fn record_all(&self, namespace: &str, cluster: &str, measurements: &[Measurement]) {
        let mut passing: BTreeMap<&'static str, bool> = BTreeMap::new();
        for measurement in measurements {
            self.record(namespace, cluster, measurement);
            if let Measurement::Validation { test, passed, .. } = measurement {
                *passing.entry(test.as_str()).or_insert(true) &= *passed;
            }
        }
        for (test, passed) in passing {
            self.validation_passing.get_or_create(&test_labels(namespace, cluster, test)).set(i64::from(passed));
        }
    }

    /// A reconcile of the cluster starts: it is in flight until the returned guard is dropped,
    /// and no longer waiting in the queue.
    pub fn reconcile_started(&self, namespace: &str, cluster: &str) -> InFlight<'_> {
        self.with_state(namespace, cluster, |s| s.requeue_at = None);
        self.reconcile_in_flight.inc();
        InFlight { metrics: self }
    }

    /// A reconcile of the cluster ended after `duration`, successfully or with `result`'s error.
    pub fn reconcile_done(
        &self,
        namespace: &str,
        cluster: &str,
        duration: Duration,
        result: Result<(), &ReconcileError>,
    ) {
        let outcome = match result {
            Ok(()) => SUCCESS,
            Err(error) => {
                let kind = error.kind();
                self.with_state(namespace, cluster, |s| s.error_kinds.insert(kind.to_owned()));
                self.reconcile_errors.get_or_create(&kind_labels(namespace, cluster, kind)).inc();
                ERROR
            }
        };
        self.with_state(namespace, cluster, |_| ());
        self.reconciles.get_or_create(&result_labels(namespace, cluster, outcome)).inc();
        self.reconcile_duration.get_or_create(&cluster_labels(namespace, cluster)).observe(duration.as_secs_f64());
    }

    /// The controller asked for the next reconcile of the cluster at `deadline` (a requeue or a
    /// retry after an error): from then until it starts, the cluster counts in
    /// `memgraph_reconcile_queue_depth`.
    pub fn requeue_at(&self, namespace: &str, cluster: &str, deadline: Instant) {
        self.with_state(namespace, cluster, |s| s.requeue_at = Some(deadline));
    }

    /// Remove every series of the cluster (it was deleted).
    pub fn forget(&self, namespace: &str, cluster: &str) {
        let Some(state) = self.clusters().remove(&(namespace.to_owned(), cluster.to_owned())) else { return };
        let labels = cluster_labels(namespace, cluster);
        self.read_replicas_total.remove(&labels);
        self.read_replicas_ready.remove(&labels);
        self.backup_last_success.remove(&labels);
        self.s3_upload_errors.remove(&labels);
        self.s3_upload_bytes.remove(&labels);
        self.reconcile_duration.remove(&labels);
        self.snapshot_duration.remove(&labels);
        for result in [SUCCESS, FAILURE, ERROR] {
            let labels = result_labels(namespace, cluster, result);
            self.snapshots.remove(&labels);
            self.s3_uploads.remove(&labels);
            self.reconciles.remove(&labels);
        }
        for replica in &state.replicas {
            self.replication_lag.remove(&replica_labels(namespace, cluster, replica));
        }
        for (replica, kind) in &state.replica_errors {
            self.replication_errors.remove(&replica_kind_labels(namespace, cluster, replica, kind));
        }
        for test in &state.tests {
            let labels = test_labels(namespace, cluster, test);
            self.validation_passing.remove(&labels);
            self.validations.remove(&labels);
            self.validation_failures.remove(&labels);
            self.validation_duration.remove(&labels);
        }
        for kind in &state.error_kinds {
            self.reconcile_errors.remove(&kind_labels(namespace, cluster, kind));
        }
    }

    /// Forget every cluster for which `keep(namespace, name)` is false (those no longer in the
    /// controller's cache: deleted while the operator was not reconciling them).
    pub fn retain_clusters(&self, keep: impl Fn(&str, &str) -> bool) {
        let gone: Vec<ClusterKey> = self.clusters().keys().filter(|(ns, name)| !keep(ns, name)).cloned().collect();
        for (namespace, name) in gone {
            self.forget(&namespace, &name);
        }
    }

    /// The clusters known, as `(namespace, name)`.
    pub fn clusters_known(&self) -> Vec<(String, String)> {
        self.clusters().keys().cloned().collect()
    }

    /// Whether this process leads (holds the Lease) or stands by.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Every metric in the Prometheus text format 0.0.4, with the cluster gauges computed now.
    pub fn encode(&self) -> String {
        self.encode_at(Instant::now())
    }

    /// [`encode`](Self::encode) as of `now` (for the queue depth).
    pub fn encode_at(&self, now: Instant) -> String {
        let clusters = self.clusters();
        self.clusters_total.set(count(clusters.len()));
        self.clusters_ready.set(count(clusters.values().filter(|s| s.ready).count()));
        self.reconcile_queue_depth
            .set(count(clusters.values().filter(|s| s.requeue_at.is_some_and(|d| d <= now)).count()));
        let mut out = String::new();
        // Writing to a String cannot fail; a failure would only leave the output short.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        drop(clusters);
        out
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `N` of a replica label `read-N`.
fn replica_index(replica: &str) -> Option<i64> {
    replica.strip_prefix("read-")?.parse().ok()
}

fn cluster_labels(namespace: &str, cluster: &str) -> ClusterLabels {
    ClusterLabels { namespace: namespace.to_owned(), cluster: cluster.to_owned() }
}

fn replica_labels(namespace: &str, cluster: &str, replica: &str) -> ReplicaLabels {
    ReplicaLabels { namespace: namespace.to_owned(), cluster: cluster.to_owned(), replica: replica.to_owned() }
}

fn replica_kind_labels(namespace: &str, cluster: &str, replica: &str, kind: &str) -> ReplicaKindLabels {
    ReplicaKindLabels {
        namespace: namespace.to_owned(),
        cluster: cluster.to_owned(),
        replica: replica.to_owned(),
        kind: kind.to_owned(),
    }
}

fn test_labels(namespace: &str, cluster: &str, test: &str) -> TestLabels {
    TestLabels { namespace: namespace.to_owned(), cluster: cluster.to_owned(), test: test.to_owned() }
}

fn result_labels(namespace: &str, cluster: &str, result: &str) -> ResultLabels {
    ResultLabels { namespace: namespace.to_owned(), cluster: cluster.to_owned(), result: result.to_owned() }
}

fn kind_labels(namespace: &str, cluster: &str, kind: &str) -> KindLabels {
    KindLabels { namespace: namespace.to_owned(), cluster: cluster.to_owned(), kind: kind.to_owned() }
}

/// One of each [`Measurement`] variant, as the tests (here and in `tests/telemetry.rs`) record.
pub fn sample_measurements() -> Vec<Measurement> {
    use crate::reconcile::measure::TestKind;
    vec![
        Measurement::Validation {
            test: TestKind::Connectivity,
            instance: Some("write".into()),
            passed: true,
            duration: Duration::from_millis(2),
        },
        Measurement::Validation {
            test: TestKind::Replication,
            instance: Some("read-0".into()),
            passed: false,
            duration: Duration::from_millis(40),
        },
        Measurement::Lag { replica: "read-0".into(), seconds: 0.25 },
        Measurement::ReplicationError { replica: "read-1".into(), kind: "diverged" },
        Measurement::Snapshot { success: true, duration: Duration::from_millis(1500) },
        Measurement::Snapshot { success: false, duration: Duration::from_secs(3) },
        Measurement::Upload {
            success: true,
            bytes: 4096,
            duration: Duration::from_secs(2),
            finished_unix: 1_767_225_600,
        },
        Measurement::Upload {
            success: false,
            bytes: 0,
            duration: Duration::from_secs(1),
            finished_unix: 1_767_225_700,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::measure::TestKind;

    fn spec(replicas: i32) -> MemgraphClusterSpec {
        let mut spec = MemgraphClusterSpec::default();
        spec.read.replicas = replicas;
        spec
    }

    fn status(phase: Phase, ready: i32) -> MemgraphClusterStatus {
        MemgraphClusterStatus { phase, ready_replicas: ready, ..Default::default() }
    }

    /// The value of the series `series` (name and labels as encoded), if present.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    fn bolt_error() -> ReconcileError {
        ReconcileError::Bolt(crate::memgraph::BoltError::Timeout { address: "a:7687".into(), seconds: 3 })
    }

    #[test]
    fn every_measurement_is_encoded() {
        let metrics = Metrics::new();
        metrics.observe_cluster("ns", "c", &spec(2), Some(&status(Phase::Running, 1)));
        for m in sample_measurements() {
            metrics.record("ns", "c", &m);
        }
        metrics.reconcile_done("ns", "c", Duration::from_millis(20), Err(&bolt_error()));
        let text = metrics.encode();
        let c = r#"namespace="ns",cluster="c""#;
        assert_eq!(value(&text, "memgraph_clusters_total"), Some(1.0), "{text}");
        assert_eq!(value(&text, "memgraph_clusters_ready"), Some(1.0));
        assert_eq!(value(&text, &format!("memgraph_read_replicas_total{{{c}}}")), Some(2.0));
        assert_eq!(value(&text, &format!("memgraph_read_replicas_ready{{{c}}}")), Some(1.0));
        assert_eq!(value(&text, &format!(r#"memgraph_validation_total{{{c},test="connectivity"}}"#)), Some(1.0));
        assert_eq!(value(&text, &format!(r#"memgraph_validation_passing{{{c},test="connectivity"}}"#)), Some(1.0));
        assert_eq!(value(&text, &format!(r#"memgraph_validation_passing{{{c},test="replication"}}"#)), Some(0.0));
        assert_eq!(
            value(&text, &format!(r#"memgraph_validation_failures_total{{{c},test="replication"}}"#)),
            Some(1.0)
        );
        assert_eq!(
            value(&text, &format!(r#"memgraph_validation_duration_seconds_count{{{c},test="replication"}}"#)),
            Some(1.0)
        );
        assert_eq!(value(&text, &format!(r#"memgraph_replication_lag_seconds{{{c},replica="read-0"}}"#)), Some(0.25));
        assert_eq!(
            value(&text, &format!(r#"memgraph_replication_errors_total{{{c},replica="read-1",kind="diverged"}}"#)),
            Some(1.0)
        );
        assert_eq!(value(&text, &format!(r#"memgraph_snapshots_total{{{c},result="success"}}"#)), Some(1.0));
        assert_eq!(value(&text, &format!(r#"memgraph_snapshots_total{{{c},result="failure"}}"#)), Some(1.0));
        assert_eq!(value(&text, &format!("memgraph_snapshot_duration_seconds_count{{{c}}}")), Some(2.0));
        assert_eq!(value(&text, &format!("memgraph_snapshot_duration_seconds_sum{{{c}}}")), Some(4.5));
        assert_eq!(
            value(&text, &format!(r#"memgraph_snapshot_duration_seconds_bucket{{{c},le="2.5"}}"#)),
            Some(1.0),
            "{text}"
        );
        assert_eq!(value(&text, &format!(r#"memgraph_s3_uploads_total{{{c},result="success"}}"#)), Some(1.0));
        assert_eq!(value(&text, &format!(r#"memgraph_s3_uploads_total{{{c},result="failure"}}"#)), Some(1.0));
        assert_eq!(value(&text, &format!("memgraph_s3_upload_errors_total{{{c}}}")), Some(1.0));
        assert_eq!(value(&text, &format!("memgraph_s3_upload_bytes_total{{{c}}}")), Some(4096.0));
        assert_eq!(
            value(&text, &format!("memgraph_backup_last_success_timestamp_seconds{{{c}}}")),
            Some(1_767_225_600.0)
        );
        // Text format 0.0.4: no OpenMetrics end marker, no exemplars, every family has HELP
        // (a family without series is left out, as Prometheus's own clients do).
        assert!(!text.contains("# EOF"));
        assert!(!text.contains(" # {"));
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!((types, helps), (22, 22), "{text}");
        // Standing by until told otherwise: a process that never led must not claim to.
        assert_eq!(value(&text, "memgraph_operator_leader"), Some(0.0));
    }

    #[test]
    fn reconciles_errors_and_in_flight() {
        let metrics = Metrics::new();
        {
            let _running = metrics.reconcile_started("ns", "c");
            assert_eq!(value(&metrics.encode(), "memgraph_reconcile_in_flight"), Some(1.0));
            metrics.reconcile_done("ns", "c", Duration::from_millis(30), Ok(()));
        }
        metrics.reconcile_done("ns", "c", Duration::from_secs(2), Err(&bolt_error()));
        let text = metrics.encode();
        let c = r#"namespace="ns",cluster="c""#;
        assert_eq!(value(&text, "memgraph_reconcile_in_flight"), Some(0.0));
        assert_eq!(value(&text, &format!(r#"memgraph_reconcile_total{{{c},result="success"}}"#)), Some(1.0));
        assert_eq!(value(&text, &format!(r#"memgraph_reconcile_total{{{c},result="error"}}"#)), Some(1.0));
        assert_eq!(value(&text, &format!(r#"memgraph_reconcile_errors_total{{{c},kind="bolt"}}"#)), Some(1.0));
        assert_eq!(value(&text, &format!(r#"memgraph_reconcile_duration_seconds_bucket{{{c},le="0.05"}}"#)), Some(1.0));
        assert_eq!(value(&text, &format!(r#"memgraph_reconcile_duration_seconds_bucket{{{c},le="+Inf"}}"#)), Some(2.0));
    }

    #[test]
    fn queue_depth_counts_clusters_past_their_requeue_time() {
        let metrics = Metrics::new();
        let now = Instant::now();
        metrics.requeue_at("ns", "due", now - Duration::from_secs(1));
        metrics.requeue_at("ns", "later", now + Duration::from_secs(60));
        metrics.requeue_at("ns", "started", now - Duration::from_secs(5));
        let _running = metrics.reconcile_started("ns", "started");
        let text = metrics.encode_at(now);
        assert_eq!(value(&text, "memgraph_reconcile_queue_depth"), Some(1.0), "{text}");
        assert_eq!(
            value(&metrics.encode_at(now + Duration::from_secs(61)), "memgraph_reconcile_queue_depth"),
            Some(2.0)
        );
    }

    #[test]
    fn one_failing_instance_makes_the_check_fail() {
        let metrics = Metrics::new();
        let run = |instance: &str, passed| Measurement::Validation {
            test: TestKind::Connectivity,
            instance: Some(instance.into()),
            passed,
            duration: Duration::from_millis(1),
        };
        metrics.record_all("ns", "c", &[run("read-0", false), run("read-1", true)]);
        let text = metrics.encode();
        let c = r#"namespace="ns",cluster="c""#;
        assert_eq!(value(&text, &format!(r#"memgraph_validation_passing{{{c},test="connectivity"}}"#)), Some(0.0));
        assert_eq!(value(&text, &format!(r#"memgraph_validation_total{{{c},test="connectivity"}}"#)), Some(2.0));
    }

    #[test]
    fn forget_removes_every_series_of_the_cluster() {
        let metrics = Metrics::new();
        for cluster in ["c", "other"] {
            metrics.observe_cluster("ns", cluster, &spec(2), Some(&status(Phase::Running, 2)));
            metrics.record_all("ns", cluster, &sample_measurements());
            metrics.reconcile_done("ns", cluster, Duration::from_millis(5), Ok(()));
            metrics.reconcile_done("ns", cluster, Duration::from_millis(5), Err(&bolt_error()));
            metrics.requeue_at("ns", cluster, Instant::now());
        }
        metrics.forget("ns", "c");
        let text = metrics.encode();
        assert!(!text.contains(r#"cluster="c""#), "{text}");
        assert!(text.contains(r#"cluster="other""#));
        assert_eq!(value(&text, "memgraph_clusters_total"), Some(1.0));
        metrics.retain_clusters(|_, name| name != "other");
        let text = metrics.encode();
        assert!(!text.contains("cluster="), "{text}");
        assert_eq!(value(&text, "memgraph_clusters_total"), Some(0.0));
        // Families without series are left out; the process-wide gauges stay.
        assert!(!text.contains("memgraph_replication_lag_seconds"));
        assert!(text.contains("# TYPE memgraph_reconcile_in_flight gauge"));
    }

    #[test]
    fn replicas_scaled_away_lose_their_series() {
        let metrics = Metrics::new();
        metrics.observe_cluster("ns", "c", &spec(3), None);
        metrics.record("ns", "c", &Measurement::Lag { replica: "read-2".into(), seconds: 4.0 });
        metrics.record("ns", "c", &Measurement::ReplicationError { replica: "read-2".into(), kind: "invalid" });
        metrics.record("ns", "c", &Measurement::Lag { replica: "read-0".into(), seconds: 0.1 });
        metrics.observe_cluster("ns", "c", &spec(2), None);
        let text = metrics.encode();
        assert!(!text.contains(r#"replica="read-2""#), "{text}");
        assert!(text.contains(r#"replica="read-0""#));
    }

    #[test]
    fn the_status_seeds_the_last_backup_time() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let metrics = Metrics::new();
        let mut with_backup = status(Phase::Degraded, 0);
        with_backup.last_s3_backup_time = Some(Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap()));
        metrics.observe_cluster("ns", "c", &spec(1), Some(&with_backup));
        let text = metrics.encode();
        let series = r#"memgraph_backup_last_success_timestamp_seconds{namespace="ns",cluster="c"}"#;
        assert_eq!(value(&text, series), Some(1_700_000_000.0));
        assert_eq!(value(&text, "memgraph_clusters_ready"), Some(0.0));
    }
}
