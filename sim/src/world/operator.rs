//! The operator as a turmoil host: the real reconcile behind a small work queue with the
//! controller runtime's guarantees (one reconcile per cluster at a time, clusters reconciled
//! concurrently, requeue-after, the production backoff, triggers from watch notifications).
//! Crashing the host loses the queue and all memory.
//!
//! A gate wraps its API and Bolt access. It records every query and mutating call, judges each
//! label, status and `DROP REPLICA` at the instant it is made (the strict checks of
//! [`claims`](super::oracles::claims)), and can freeze the operator right after its Nth
//! mutating call, so a crash can be injected exactly between two actions.
//!
//! Two operator hosts run, as two replicas of the Deployment would: each takes part in the
//! production leader election on a Lease in the fake API server and reconciles only while it
//! leads. Each has its own gate (its own crash and freeze, its own link to the API server that a
//! fault can cut); the gates share one log, every record tagged with who made it, so the
//! driver can judge that two operators never act in overlapping time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::api::core::v1::Pod;
use memgraph_operator::api::{MemgraphCluster, MemgraphClusterStatus};
use memgraph_operator::controller;
use memgraph_operator::kube_api::{ClusterEvent, Kube, KubeError, KubeObject, LabelPatch};
use memgraph_operator::leader::{
    Elector, LeaseApi, LeaseRecord, StoredLease, Timings, from_spec, to_spec, until_leading,
};
use memgraph_operator::memgraph::{Bolt, BoltError, BoltValue, QueryResult, Timeouts};
use memgraph_operator::names::{LABEL_INSTANCE, LABEL_ROLE};
use memgraph_operator::reconcile::guard::guard;
use memgraph_operator::reconcile::main_probe;
use memgraph_operator::reconcile::snapshot_job::run as run_snapshot;
use memgraph_operator::reconcile::validation_job::run as run_validation;
use memgraph_operator::reconcile::{Memory, reconcile};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use turmoil::Sim;

use super::bolt::TurmoilBolt;
use super::oracles::claims;
use super::time::SimClock;
use super::truth::{ClusterTruth, TruthSource};
use crate::apiserver::{ApiServer, Key};

/// Host names of the operators (the pods of a two-replica Deployment); each is also the
/// operator's identity in the leader election.
pub const OPERATOR_HOSTS: [&str; 2] = ["operator-0", "operator-1"];
/// The Lease the operators contend for (the chart's default name).
pub const LEASE_NAME: &str = "memgraph-operator";
/// How long a request to an API server the operator is cut off from waits before it fails (a
/// client's connect timeout); it goes through if the link heals first.
pub const CUT_TIMEOUT: Duration = Duration::from_secs(10);
/// Retry delay of the route guard (the production controller's error policy).
const GUARD_RETRY: Duration = Duration::from_secs(2);

/// A query the operator sent.
#[derive(Debug, Clone)]
pub struct QueryRecord {
    /// When, in simulated ms.
    pub at_ms: u64,
    /// Its place among every record of the shared log (within one drain).
    pub seq: u64,
    /// Which operator (index into [`OPERATOR_HOSTS`]).
    pub by: usize,
    /// The cluster whose instance it went to.
    pub cluster: String,
    /// `host:port`.
    pub address: String,
    /// The query text.
    pub query: String,
}

/// A mutating API call of the operator.
#[derive(Debug, Clone)]
pub struct WriteRecord {
    /// When, in simulated ms.
    pub at_ms: u64,
    /// Its place among every record of the shared log (within one drain).
    pub seq: u64,
    /// Which operator (index into [`OPERATOR_HOSTS`]).
    pub by: usize,
    /// The cluster it concerns.
    pub cluster: String,
    /// What it was.
    pub what: String,
    /// A status patch that changed only snapshot bookkeeping (scheduled work).
    pub bookkeeping: bool,
}

/// Why a reconcile ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The operator (re)started.
    Start,
    /// Its requeue-after or backoff elapsed.
    Timer,
    /// A notification of a change someone else made.
    Change,
    /// Only notifications of the operator's own writes.
    OwnWrite,
    /// The health probe found the MAIN silent.
    Probe,
}

/// One reconcile.
#[derive(Debug, Clone)]
pub struct ReconcileRecord {
    /// When it started, in simulated ms.
    pub start_ms: u64,
    /// Which operator (index into [`OPERATOR_HOSTS`]).
    pub by: usize,
    /// The cluster.
    pub cluster: String,
    /// Why it ran.
    pub trigger: Trigger,
}

/// A claim the operator wrote that was already false (the strict check).
#[derive(Debug, Clone)]
pub struct FalseWrite {
    /// When, in simulated ms.
    pub at_ms: u64,
    /// The cluster.
    pub cluster: String,
    /// What was false.
    pub what: String,
}

/// One replica's part of a finished lag measurement.
#[derive(Debug, Clone)]
pub struct LagRecord {
    /// The cluster.
    pub cluster: String,
    /// The replica's pod.
    pub pod: String,
    /// When the job started and ended, in simulated ms.
    pub start_ms: u64,
    /// See `start_ms`.
    pub end_ms: u64,
    /// The lag measured, when the replica served the test write.
    pub lag_ms: Option<i64>,
    /// The mode the probe ran under.
    pub mode: memgraph_operator::api::ReplicationMode,
}

/// Everything the gate recorded; the driver drains it.
#[derive(Debug, Default)]
pub struct GateLog {
    /// Queries, in order.
    pub queries: Vec<QueryRecord>,
    /// Mutating API calls, in order.
    pub writes: Vec<WriteRecord>,
    /// Reconciles, in order of start.
    pub reconciles: Vec<ReconcileRecord>,
    /// Reconciles that returned an error: (when they ended, cluster).
    pub failed_reconciles: Vec<(u64, String)>,
    /// Claims written while already false.
    pub false_writes: Vec<FalseWrite>,
    /// Answers to `SHOW REPLICAS` on a cluster's write pod: (cluster, when the query was sent, in
    /// ms, whether it timed out).
    pub rows_answers: Vec<(String, u64, bool)>,
    /// Lag measurements, by replica.
    pub lags: Vec<LagRecord>,
    /// Lease writes the API server applied, in order.
    pub leases: Vec<LeaseWrite>,
    /// The last sequence number given to a query, write or Lease write: several happen in the
    /// same simulated millisecond, and their order decides who acted while holding the Lease.
    pub seq: u64,
}

impl GateLog {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

/// A write of the election's Lease that the API server applied (whatever the writer was told).
#[derive(Debug, Clone)]
pub struct LeaseWrite {
    /// When, in simulated ms.
    pub at_ms: u64,
    /// Its place among every record of the shared log (within one drain).
    pub seq: u64,
    /// Which operator wrote it.
    pub by: usize,
    /// The holder it names (`None`: released).
    pub holder: Option<String>,
}

/// The log the operators' gates share.
pub type SharedLog = Arc<Mutex<GateLog>>;

/// Take what every gate recorded since the last call.
pub fn drain(log: &SharedLog) -> GateLog {
    std::mem::take(&mut *lock(log))
}

/// Shared between one operator host and the driver.
pub struct Gate {
    /// Which operator (index into [`OPERATOR_HOSTS`]).
    pub by: usize,
    writes: AtomicU64,
    crash_after: Mutex<Option<u64>>,
    /// Armed by `failover-crash`: the cluster, and how many more of its steps (mutating API
    /// calls and replication commands) the operator takes before it freezes.
    crash_after_steps: Mutex<Option<(String, u64)>>,
    /// The step the operator froze after, for the timeline.
    last_step: Mutex<Option<String>>,
    frozen: AtomicBool,
    truth: TruthSource,
    /// Per cluster: the truth at the instants the operator looked in its current round (when it
    /// read the cluster, and when its latest answer to `SHOW REPLICAS` came), and the spec it read.
    rounds: Mutex<BTreeMap<String, (Vec<ClusterTruth>, Value)>>,
    log: SharedLog,
    /// The operator's link to the API server is cut.
    cut: AtomicBool,
    /// The operator's elector says it leads.
    leading: AtomicBool,
    /// The operator lost the Lease: the process has exited (everything it does hangs until the
    /// driver crashes and restarts the host, as the kubelet restarts the container).
    exited: AtomicBool,
    /// The process got SIGTERM (a rollout): it finishes its reconciles, releases the Lease and
    /// exits.
    terminating: AtomicBool,
    stop: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u64 {
    turmoil::sim_elapsed().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Gate {
    /// The gate of operator `by`, judging against `truth`, recording into `log`.
    pub fn new(truth: TruthSource, by: usize, log: SharedLog) -> Self {
        Self {
            by,
            writes: AtomicU64::new(0),
            crash_after: Mutex::new(None),
            crash_after_steps: Mutex::new(None),
            last_step: Mutex::new(None),
            frozen: AtomicBool::new(false),
            truth,
            rounds: Mutex::default(),
            log,
            cut: AtomicBool::new(false),
            leading: AtomicBool::new(false),
            exited: AtomicBool::new(false),
            terminating: AtomicBool::new(false),
            stop: tokio::sync::Notify::new(),
        }
    }

    /// Send the process SIGTERM.
    pub fn terminate(&self) {
        self.terminating.store(true, Ordering::SeqCst);
        self.stop.notify_one();
    }

    /// Whether the process got SIGTERM.
    pub fn terminating(&self) -> bool {
        self.terminating.load(Ordering::SeqCst)
    }

    /// Cut (or heal) the operator's link to the API server.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    /// Whether the operator's link to the API server is cut.
    pub fn cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    /// Whether the operator leads (and so reconciles).
    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// Whether the operator lost the Lease and exited.
    pub fn exited(&self) -> bool {
        self.exited.load(Ordering::SeqCst)
    }

    /// The process lost the Lease and exits: nothing it does gets through any more.
    fn exit(&self) {
        self.leading.store(false, Ordering::SeqCst);
        self.exited.store(true, Ordering::SeqCst);
        self.frozen.store(true, Ordering::SeqCst);
    }

    fn record_lease(&self, holder: Option<String>) {
        let mut log = lock(&self.log);
        let seq = log.next_seq();
        log.leases.push(LeaseWrite { at_ms: now_ms(), seq, by: self.by, holder });
    }

    /// Wait for the API server as a request of this operator would: held while frozen; while
    /// the link is cut, waiting up to [`CUT_TIMEOUT`] for it to heal, then failing without
    /// reaching the server.
    async fn reach(&self, operation: &'static str, kind: &str, namespace: &str, name: &str) -> Result<(), KubeError> {
        self.hold().await;
        let start = tokio::time::Instant::now();
        while self.cut() && start.elapsed() < CUT_TIMEOUT {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.hold().await;
        if self.cut() {
            return Err(KubeError {
                operation,
                kind: kind.to_owned(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                error: memgraph_operator::kube_api::KubeErrorKind::Transport,
                message: "the API server did not answer (the simulated link is cut)".to_owned(),
            });
        }
        Ok(())
    }

    /// Freeze the operator right after its `n`th further mutating API call.
    pub fn crash_after(&self, n: u64) {
        let base = self.writes.load(Ordering::SeqCst);
        *lock(&self.crash_after) = Some(base + n);
    }

    /// Freeze the operator right after its `n`th further step for `cluster`: a mutating API call
    /// or a replication command (`SET REPLICATION ROLE`, `REGISTER`, `DROP REPLICA`), so that
    /// over many seeds a crash lands on every step of a failover.
    pub fn crash_after_steps(&self, cluster: &str, n: u64) {
        *lock(&self.crash_after_steps) = Some((cluster.to_owned(), n));
    }

    /// The step a `failover-crash` froze the operator after (taken once).
    pub fn take_crash_step(&self) -> Option<String> {
        lock(&self.last_step).take()
    }

    fn stepped(&self, cluster: &str, what: &str) {
        let mut armed = lock(&self.crash_after_steps);
        let Some((c, left)) = armed.as_mut() else { return };
        if c != cluster {
            return;
        }
        *left = left.saturating_sub(1);
        if *left == 0 {
            *armed = None;
            *lock(&self.last_step) = Some(what.to_owned());
            self.frozen.store(true, Ordering::SeqCst);
        }
    }

    /// Whether the operator is frozen, waiting to be crashed.
    pub fn frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Clear the freeze and the exit (after the crash) and forget per-round memory, as the
    /// process does. The link to the API server stays as the faults left it.
    pub fn reset(&self) {
        *lock(&self.crash_after) = None;
        *lock(&self.crash_after_steps) = None;
        self.frozen.store(false, Ordering::SeqCst);
        self.leading.store(false, Ordering::SeqCst);
        self.exited.store(false, Ordering::SeqCst);
        self.terminating.store(false, Ordering::SeqCst);
        lock(&self.rounds).clear();
    }

    /// Cancel a pending crash-after-write without forgetting what the running operator looked
    /// at (the heal: the process keeps running).
    pub fn cancel_crash(&self) {
        *lock(&self.crash_after) = None;
        *lock(&self.crash_after_steps) = None;
    }

    async fn hold(&self) {
        if self.frozen() {
            std::future::pending::<()>().await;
        }
    }

    fn wrote(&self) {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if lock(&self.crash_after).is_some_and(|at| n >= at) {
            self.frozen.store(true, Ordering::SeqCst);
        }
    }

    fn cluster_of(&self, name: &str) -> String {
        self.truth
            .clusters()
            .iter()
            .find(|c| name == c.as_str() || name.starts_with(&format!("{c}-")))
            .cloned()
            .unwrap_or_default()
    }

    /// The lag figures of a finished validation job, for the lag oracle.
    fn record_lags(
        &self,
        cluster: &str,
        start_ms: u64,
        done: Option<memgraph_operator::reconcile::plan::validation::ValidationDone>,
    ) {
        let Some(probe) = done.and_then(|d| d.probe).filter(|p| p.claim.lag) else { return };
        let end_ms = now_ms();
        let mut log = lock(&self.log);
        for seen in &probe.seen {
            let memgraph_operator::names::Instance::Read(i) = seen.instance else { continue };
            log.lags.push(LagRecord {
                cluster: cluster.to_owned(),
                pod: super::truth::read_pod(cluster, i),
                start_ms,
                end_ms,
                lag_ms: seen.seen_after_ms,
                mode: probe.claim.mode,
            });
        }
    }

    fn record_write(&self, cluster: &str, what: String, bookkeeping: bool) {
        let mut log = lock(&self.log);
        let seq = log.next_seq();
        log.writes.push(WriteRecord {
            at_ms: now_ms(),
            seq,
            by: self.by,
            cluster: cluster.to_owned(),
            what,
            bookkeeping,
        });
    }

    /// The strict check: false now and at every instant the operator looked in this round. A
    /// fact that held at any of them (the pod answered before it crashed, say) could have been
    /// what the operator saw.
    fn judge(&self, cluster: &str, false_in: impl Fn(&ClusterTruth, Option<&Value>) -> Option<String>) {
        let now = self.truth.cluster(cluster);
        let Some(what) = ({
            let rounds = lock(&self.rounds);
            let acted = rounds.get(cluster).map(|(_, spec)| spec);
            false_in(&now, acted)
        }) else {
            return;
        };
        let was_false = lock(&self.rounds)
            .get(cluster)
            .is_none_or(|(looks, spec)| looks.iter().all(|t| false_in(t, Some(spec)).is_some()));
        if was_false {
            lock(&self.log).false_writes.push(FalseWrite { at_ms: now_ms(), cluster: cluster.to_owned(), what });
        }
    }
}

/// `Kube` through the gate.
pub struct GatedKube {
    inner: ApiServer,
    gate: Arc<Gate>,
}

/// What a status patch changes, in words: top-level fields, conditions, replicas.
fn status_changes(old: &Value, new: &Value) -> String {
    let mut changed = Vec::new();
    let keys: std::collections::BTreeSet<&String> =
        old.as_object().into_iter().chain(new.as_object()).flat_map(|m| m.keys()).collect();
    for key in keys {
        if old[key] == new[key] {
            continue;
        }
        match key.as_str() {
            "conditions" => {
                for c in new[key].as_array().into_iter().flatten() {
                    let before = old[key].as_array().into_iter().flatten().find(|o| o["type"] == c["type"]);
                    if before != Some(c) {
                        let field = |v: Option<&Value>, k: &str| v.map(|v| v[k].clone()).unwrap_or_default();
                        let what: Vec<&str> =
                            ["status", "reason", "message", "lastTransitionTime", "observedGeneration"]
                                .into_iter()
                                .filter(|k| field(before, k) != c[*k])
                                .collect();
                        changed.push(format!(
                            "condition {} {}",
                            c["type"].as_str().unwrap_or_default(),
                            what.join("/")
                        ));
                    }
                }
            }
            "validation" => {
                for r in new[key]["replicas"].as_array().into_iter().flatten() {
                    let before = old[key]["replicas"].as_array().into_iter().flatten().find(|o| o["name"] == r["name"]);
                    if before != Some(r) {
                        changed.push(format!("replica {}", r["name"].as_str().unwrap_or_default()));
                    }
                }
            }
            other => changed.push(other.to_owned()),
        }
    }
    changed.join(", ")
}

/// Status fields that are snapshot bookkeeping: a patch changing only these is scheduled work.
fn without_bookkeeping(status: &Value) -> Value {
    let mut s = status.clone();
    if let Some(map) = s.as_object_mut() {
        for field in ["lastSnapshotTime", "snapshot", "backups", "lastS3BackupTime"] {
            map.remove(field);
        }
        // The live checks' start times and figures (lag, test times): scheduled work. Who
        // answers and the verdicts are not.
        if let Some(v) = map.get_mut("validation").and_then(Value::as_object_mut) {
            for field in ["lastConnectivityTest", "lastReplicationTest", "lastLagMeasurement", "replicationLagMs"] {
                v.remove(field);
            }
            for r in v.get_mut("replicas").and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(r) = r.as_object_mut() {
                    for field in ["lagMs", "lastTestTime", "testMessage"] {
                        r.remove(field);
                    }
                }
            }
        }
        // The lag verdict is the scheduled lag measurement's result: a replica that really lags
        // past the threshold for a moment (Memgraph flips replicas to `invalid` now and then and
        // they catch up within seconds) turns it False and back, as it should (seed 21).
        if let Some(conditions) = map.get_mut("conditions").and_then(Value::as_array_mut) {
            conditions.retain(|c| c["type"] != "ReplicationLagAcceptable");
        }
    }
    s
}

#[async_trait]
impl Kube for GatedKube {
    async fn get<T: KubeObject>(&self, namespace: &str, name: &str) -> Result<Option<T>, KubeError> {
        self.gate.reach("get", &T::kind(&()), namespace, name).await?;
        let result = self.inner.get::<T>(namespace, name).await;
        if T::kind(&()) == "MemgraphCluster"
            && let Ok(Some(object)) = &result
        {
            // A round starts by reading the cluster: remember what it read and the truth then.
            let object = serde_json::to_value(object).unwrap_or_default();
            let mut spec = object["spec"].clone();
            // Beside the spec, what else the round acts on: a pending switchover's target,
            // whose registration may change mode for it.
            if let Some(request) = claims::pending_switchover(&object) {
                spec[claims::SWITCHOVER_TARGET] = serde_json::json!(request.split('/').next().unwrap_or(request));
            }
            let truth = self.gate.truth.cluster(name);
            lock(&self.gate.rounds).insert(name.to_owned(), (vec![truth], spec));
        }
        result
    }
    async fn list<T: KubeObject>(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<T>, KubeError> {
        self.gate.reach("list", &T::kind(&()), namespace, "").await?;
        self.inner.list(namespace, labels).await
    }
    async fn apply<T: KubeObject>(&self, object: &T) -> Result<T, KubeError> {
        let name = object.meta().name.clone().unwrap_or_default();
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        self.gate.reach("apply", &T::kind(&()), &namespace, &name).await?;
        let cluster = object
            .meta()
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_INSTANCE).cloned())
            .unwrap_or_else(|| self.gate.cluster_of(&name));
        let what = format!("apply {} {name}", T::kind(&()));
        self.gate.record_write(&cluster, what.clone(), false);
        let result = self.inner.as_operator(self.inner.apply(object)).await;
        self.gate.wrote();
        self.gate.stepped(&cluster, &what);
        result
    }
    async fn delete<T: KubeObject>(&self, namespace: &str, name: &str) -> Result<(), KubeError> {
        self.gate.reach("delete", &T::kind(&()), namespace, name).await?;
        self.gate.record_write(&self.gate.cluster_of(name), format!("delete {} {name}", T::kind(&())), false);
        let result = self.inner.as_operator(self.inner.delete::<T>(namespace, name)).await;
        self.gate.wrote();
        result
    }
    async fn delete_pod(&self, namespace: &str, pod: &str, uid: &str) -> Result<(), KubeError> {
        self.gate.reach("delete", "Pod", namespace, pod).await?;
        let cluster = self.gate.cluster_of(pod);
        let what = format!("stop pod {pod}");
        self.gate.record_write(&cluster, what.clone(), false);
        let result = self.inner.as_operator(self.inner.delete_pod(namespace, pod, uid)).await;
        self.gate.wrote();
        self.gate.stepped(&cluster, &what);
        result
    }
    async fn patch_status(
        &self,
        namespace: &str,
        name: &str,
        status: &MemgraphClusterStatus,
        resource_version: Option<&str>,
    ) -> Result<(), KubeError> {
        self.gate.reach("patch status", "MemgraphCluster", namespace, name).await?;
        let new = serde_json::to_value(status).unwrap_or_default();
        let old = self.inner.get_json(&Key::new("MemgraphCluster", namespace, name)).map(|c| c["status"].clone());
        let bookkeeping = old.as_ref().is_some_and(|old| without_bookkeeping(old) == without_bookkeeping(&new));
        let changed = old.as_ref().map(|old| status_changes(old, &new)).unwrap_or_default();
        self.gate.record_write(name, format!("patch status (phase {:?}; {changed})", status.phase), bookkeeping);
        self.gate.judge(name, |truth, acted| claims::status_false(truth, name, &new, acted));
        let result = self.inner.as_operator(self.inner.patch_status(namespace, name, status, resource_version)).await;
        self.gate.wrote();
        self.gate.stepped(name, "patch status");
        result
    }
    async fn patch_pod_labels(
        &self,
        namespace: &str,
        pod: &str,
        uid: &str,
        labels: &LabelPatch,
    ) -> Result<(), KubeError> {
        self.gate.reach("patch labels", "Pod", namespace, pod).await?;
        let cluster = self.gate.cluster_of(pod);
        let role = labels.get(LABEL_ROLE).cloned().flatten();
        self.gate.record_write(&cluster, format!("label {pod} {role:?}"), false);
        if let Some(role) = &role {
            self.gate.judge(&cluster, |truth, acted| claims::label_false(truth, &cluster, pod, role, acted));
        }
        let result = self.inner.as_operator(self.inner.patch_pod_labels(namespace, pod, uid, labels)).await;
        self.gate.wrote();
        self.gate.stepped(&cluster, &format!("label {pod} {role:?}"));
        result
    }
    async fn set_finalizers(
        &self,
        namespace: &str,
        name: &str,
        finalizers: &[String],
        resource_version: &str,
    ) -> Result<(), KubeError> {
        self.gate.reach("set finalizers", "MemgraphCluster", namespace, name).await?;
        self.gate.record_write(name, "set finalizers".to_owned(), false);
        let result =
            self.inner.as_operator(self.inner.set_finalizers(namespace, name, finalizers, resource_version)).await;
        self.gate.wrote();
        result
    }
    async fn publish_event(&self, event: &ClusterEvent) -> Result<(), KubeError> {
        self.gate.reach("create", "Event", "", "").await?;
        self.inner.publish_event(event).await
    }
}

/// `Bolt` through the gate, recording every query.
pub struct GatedBolt {
    inner: TurmoilBolt,
    gate: Arc<Gate>,
}

#[async_trait]
impl Bolt for GatedBolt {
    async fn run_within(
        &self,
        address: &str,
        query: &str,
        params: BTreeMap<String, BoltValue>,
        timeout: Duration,
    ) -> Result<QueryResult, BoltError> {
        self.gate.hold().await;
        let cluster = self.gate.cluster_of(address);
        if let Some(name) = query.strip_prefix("DROP REPLICA ") {
            let acted = lock(&self.gate.rounds).get(&cluster).map(|(_, spec)| spec.clone());
            if let Some(acted) = acted {
                let truth = self.gate.truth.cluster(&cluster);
                if let Some(what) = claims::drop_wrong(&truth, &cluster, name, &acted) {
                    lock(&self.gate.log).false_writes.push(FalseWrite {
                        at_ms: now_ms(),
                        cluster: cluster.clone(),
                        what,
                    });
                }
            }
        }
        let sent_ms = now_ms();
        {
            let mut log = lock(&self.gate.log);
            let seq = log.next_seq();
            log.queries.push(QueryRecord {
                at_ms: sent_ms,
                seq,
                by: self.gate.by,
                cluster: cluster.clone(),
                address: address.to_owned(),
                query: query.to_owned(),
            });
        }
        let result = self.inner.run_within(address, query, params, timeout).await;
        if ["SET REPLICATION ROLE", "REGISTER REPLICA", "DROP REPLICA"].iter().any(|c| query.starts_with(c)) {
            let host = address.split('.').next().unwrap_or(address);
            self.gate.stepped(&cluster, &format!("{query} on {host}"));
        }
        if query == "SHOW REPLICAS" && address.starts_with(&format!("{cluster}-write-")) {
            let timed_out = matches!(result, Err(BoltError::Timeout { .. }));
            lock(&self.gate.log).rows_answers.push((cluster.clone(), sent_ms, timed_out));
        }
        // What the operator has seen of the registrations is what it had when this answer came.
        if query == "SHOW REPLICAS" && result.is_ok() {
            let truth = self.gate.truth.cluster(&cluster);
            if let Some((looks, _)) = lock(&self.gate.rounds).get_mut(&cluster) {
                looks.truncate(1);
                looks.push(truth);
            }
        }
        result
    }
}

/// What a finished reconcile task reports to the queue.
struct Done {
    key: (String, String),
    ok: Option<Duration>,
}

/// The operator's queue state (lost when the host crashes).
#[derive(Default)]
struct Queue {
    /// Cluster → when it is due, and why.
    due: BTreeMap<(String, String), (Duration, Trigger)>,
    running: std::collections::BTreeSet<(String, String)>,
    failures: BTreeMap<(String, String), u32>,
}

impl Queue {
    fn trigger(&mut self, key: (String, String), at: Duration, trigger: Trigger) {
        let entry = self.due.entry(key).or_insert((at, trigger));
        if at < entry.0 || (at == entry.0 && trigger == Trigger::Change) {
            *entry = (at, trigger);
        }
    }
}

fn cluster_of_change(change: &crate::apiserver::Change) -> Option<String> {
    if change.key.kind == "MemgraphCluster" {
        return Some(change.key.name.clone());
    }
    change
        .labels
        .get(LABEL_INSTANCE)
        .cloned()
        .or_else(|| change.owner.as_ref().filter(|(k, _)| k == "MemgraphCluster").map(|(_, n)| n.clone()))
}

/// Install operator host `by` (of [`OPERATOR_HOSTS`]). Its software takes part in the leader
/// election with the production elector; once it leads it starts by reconciling every cluster,
/// then follows watch notifications and requeues, reconciling different clusters concurrently,
/// while the elector renews beside it. When the elector says the Lease is lost the process
/// exits at once, as `memgraph-operator run` does: the gate stops everything it was doing.
pub fn install(
    sim: &mut Sim<'_>,
    api: ApiServer,
    clock: SimClock,
    gate: Arc<Gate>,
    backups: memgraph_operator::reconcile::backup_job::BackupContext,
) {
    let host = OPERATOR_HOSTS[gate.by];
    sim.host(host, move || {
        let (api, clock, gate, backups) = (api.clone(), clock.clone(), gate.clone(), backups.clone());
        async move {
            let leases = SimLeases { api: api.clone(), gate: gate.clone() };
            let elector = Elector::new(leases, clock.clone(), host.to_owned(), Timings::default());
            let mut state = elector.subscribe();
            let election = elector.run();
            tokio::pin!(election);
            let leads = tokio::select! {
                biased;
                _ = &mut election => false,
                () = gate.stop.notified() => false,
                leading = until_leading(&mut state) => leading,
            };
            if leads {
                gate.leading.store(true, Ordering::SeqCst);
                let stopped = tokio::select! {
                    biased;
                    _ = &mut election => false,
                    () = operate(api, clock, gate.clone(), backups) => true,
                };
                if stopped {
                    // SIGTERM, the reconciles done: give the Lease up, as `run` does, so the
                    // standby takes over at its next look. If that fails the Lease expires.
                    let _ = elector.release().await;
                }
            }
            gate.exit();
            std::future::pending::<()>().await;
            Ok(())
        }
    });
}

/// The Lease through the gate: cut with the operator's link to the API server, every applied
/// write recorded for the overlap oracle.
struct SimLeases {
    api: ApiServer,
    gate: Arc<Gate>,
}

impl SimLeases {
    fn key() -> Key {
        Key::new("Lease", super::run::NAMESPACE, LEASE_NAME)
    }

    fn object(record: &LeaseRecord) -> Value {
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": super::run::NAMESPACE},
            "spec": serde_json::to_value(to_spec(record)).unwrap_or_default(),
        })
    }

    async fn write(&self, record: &LeaseRecord, expected: Option<&str>) -> Result<String, KubeError> {
        let operation = if expected.is_some() { "replace" } else { "create" };
        self.gate.reach(operation, "Lease", super::run::NAMESPACE, LEASE_NAME).await?;
        let (applied, result) = self.api.write_spec(Self::object(record), expected);
        if applied {
            self.gate.record_lease(record.holder.clone());
        }
        result
    }
}

#[async_trait]
impl LeaseApi for SimLeases {
    async fn get(&self) -> Result<Option<StoredLease>, KubeError> {
        self.gate.reach("get", "Lease", super::run::NAMESPACE, LEASE_NAME).await?;
        Ok(self.api.get_json(&Self::key()).map(|v| {
            let spec: Option<LeaseSpec> = serde_json::from_value(v["spec"].clone()).ok();
            StoredLease {
                record: from_spec(spec.as_ref()),
                version: v["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_owned(),
            }
        }))
    }

    async fn create(&self, record: &LeaseRecord) -> Result<String, KubeError> {
        self.write(record, None).await
    }

    async fn replace(&self, record: &LeaseRecord, version: &str) -> Result<String, KubeError> {
        self.write(record, Some(version)).await
    }
}

/// Tasks an operator started beside its reconciles.
type Tasks = Arc<Mutex<Vec<tokio::task::AbortHandle>>>;

fn keep(tasks: &Tasks, handle: tokio::task::AbortHandle) {
    let mut tasks = lock(tasks);
    tasks.retain(|t| !t.is_finished());
    tasks.push(handle);
}

/// The leader's work: the controller's queue over every cluster. Returns on SIGTERM once the
/// running reconciles are done, after stopping the jobs started beside them (as `run` does).
async fn operate(
    api: ApiServer,
    clock: SimClock,
    gate: Arc<Gate>,
    backups: memgraph_operator::reconcile::backup_job::BackupContext,
) {
    let kube = Arc::new(GatedKube { inner: api.clone(), gate: gate.clone() });
    let bolt = Arc::new(GatedBolt { inner: TurmoilBolt::new(Timeouts::default()), gate: gate.clone() });
    let memory = Arc::new(Memory::default());
    let mut changes = api.subscribe();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    let mut queue = Queue::default();
    let mut missed = false;
    // Tasks started beside the reconciles (route guard, checks, snapshots), stopped on SIGTERM.
    let tasks: Tasks = Arc::default();
    // The MAIN health probe, on connections of its own as in production.
    let probe_bolt: Arc<dyn Bolt> =
        Arc::new(GatedBolt { inner: TurmoilBolt::new(Timeouts::default()), gate: gate.clone() });
    let (wake_tx, mut wake_rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    {
        let (memory, clock) = (memory.clone(), clock.clone());
        let probe = tokio::task::spawn_local(async move {
            main_probe::run(&memory.main_probes, &clock, |t| {
                let _ = wake_tx.send((t.namespace, t.name));
            })
            .await;
        });
        keep(&tasks, probe.abort_handle());
    }
    for (key, _) in api.all_of_kind("MemgraphCluster") {
        queue.trigger((key.namespace, key.name), Duration::ZERO, Trigger::Start);
    }
    loop {
        let terminating = gate.terminating();
        if terminating && queue.running.is_empty() {
            for task in lock(&tasks).drain(..) {
                task.abort();
            }
            return;
        }
        let now = clock.elapsed();
        // Terminating, nothing new starts: only the running reconciles are waited for.
        let next =
            queue.due.iter().filter(|(k, _)| !queue.running.contains(*k) && !terminating).map(|(_, (at, _))| *at).min();
        let wait = next.map_or(Duration::from_secs(3600), |at| at.saturating_sub(now));
        let mut triggered = Vec::new();
        let mut finished = Vec::new();
        let mut woken = Vec::new();
        if !wait.is_zero() {
            tokio::select! {
                biased;
                done = done_rx.recv() => finished.extend(done),
                wake = wake_rx.recv() => woken.extend(wake),
                () = gate.stop.notified(), if !terminating => {}
                change = changes.recv() => triggered.push(change),
                () = tokio::time::sleep(wait) => {}
            }
        }
        while let Ok(done) = done_rx.try_recv() {
            finished.push(done);
        }
        while let Ok(wake) = wake_rx.try_recv() {
            woken.push(wake);
        }
        loop {
            match changes.try_recv() {
                Ok(change) => triggered.push(Ok(change)),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                    triggered.push(Err(RecvError::Lagged(n)))
                }
                Err(_) => break,
            }
        }
        // Cut off from the API server, the watch delivers nothing; once the link is
        // back the watch restarts and relists, as kube-runtime's watcher does.
        if gate.cut() {
            missed |= !triggered.is_empty();
            triggered.clear();
        } else if std::mem::take(&mut missed) {
            triggered.push(Err(RecvError::Lagged(0)));
        }
        let now = clock.elapsed();
        for done in finished {
            queue.running.remove(&done.key);
            let (at, trigger) = match done.ok {
                Some(requeue) => {
                    queue.failures.remove(&done.key);
                    (now + requeue, Trigger::Timer)
                }
                None => {
                    let n = queue.failures.entry(done.key.clone()).or_insert(0);
                    *n += 1;
                    (now + controller::backoff(*n), Trigger::Timer)
                }
            };
            queue.trigger(done.key, at, trigger);
        }
        for key in woken {
            queue.trigger(key, now, Trigger::Probe);
        }
        for change in triggered {
            match change {
                // The route guard looks at a changed pod at once, beside the queue.
                Ok(change) if change.key.kind == "Pod" && !change.by_operator => {
                    let kube = kube.clone();
                    let key = change.key.clone();
                    // Like the controller's error policy, a failed removal is retried.
                    let guard_task = tokio::task::spawn_local(async move {
                        for _ in 0..5 {
                            let Ok(Some(pod)) = kube.get::<Pod>(&key.namespace, &key.name).await else { break };
                            let Some(patch) = guard(&pod) else { break };
                            let uid = pod.metadata.uid.clone().unwrap_or_default();
                            if kube.patch_pod_labels(&key.namespace, &key.name, &uid, &patch).await.is_ok() {
                                break;
                            }
                            tokio::time::sleep(GUARD_RETRY).await;
                        }
                    });
                    keep(&tasks, guard_task.abort_handle());
                    if let Some(name) = cluster_of_change(&change) {
                        queue.trigger((change.key.namespace.clone(), name), now, Trigger::Change);
                    }
                }
                Ok(change) => {
                    if let Some(name) = cluster_of_change(&change) {
                        let trigger = if change.by_operator { Trigger::OwnWrite } else { Trigger::Change };
                        queue.trigger((change.key.namespace.clone(), name), now, trigger);
                    }
                }
                // Missed notifications: like a watch restart, look at everything.
                Err(_) => {
                    for (key, _) in api.all_of_kind("MemgraphCluster") {
                        queue.trigger((key.namespace, key.name), now, Trigger::Change);
                    }
                }
            }
        }
        let ready: Vec<((String, String), Trigger)> = queue
            .due
            .iter()
            .filter(|(k, (at, _))| *at <= now && !queue.running.contains(*k) && !gate.terminating())
            .map(|(k, (_, t))| (k.clone(), *t))
            .collect();
        for (key, trigger) in ready {
            queue.due.remove(&key);
            queue.running.insert(key.clone());
            lock(&gate.log).reconciles.push(ReconcileRecord {
                start_ms: now_ms(),
                by: gate.by,
                cluster: key.1.clone(),
                trigger,
            });
            let (kube, bolt, probe_bolt, memory, clock, gate, done_tx, backups, tasks) = (
                kube.clone(),
                bolt.clone(),
                probe_bolt.clone(),
                memory.clone(),
                clock.clone(),
                gate.clone(),
                done_tx.clone(),
                backups.clone(),
                tasks.clone(),
            );
            tokio::task::spawn_local(async move {
                let ok = match kube.get::<MemgraphCluster>(&key.0, &key.1).await {
                    Ok(Some(cluster)) => {
                        let result = reconcile(&cluster, kube.as_ref(), bolt.as_ref(), &clock, &memory).await;
                        if let Ok(outcome) = &result {
                            let uid = cluster.metadata.uid.clone().unwrap_or_default();
                            memory.main_probes.watch(&uid, outcome.probe.clone(), probe_bolt);
                        }
                        if let Ok(Some(job)) = result.as_ref().map(|o| o.validation.clone()) {
                            let (bolt, memory, clock, gate) =
                                (bolt.clone(), memory.clone(), clock.clone(), gate.clone());
                            let check = tokio::task::spawn_local(async move {
                                let (uid, start_ms) = (job.cluster.clone(), now_ms());
                                let cluster = job.names.cluster.clone();
                                run_validation(bolt.as_ref(), &memory.validation, &clock, job).await;
                                gate.record_lags(&cluster, start_ms, memory.validation.finished(&uid));
                            });
                            keep(&tasks, check.abort_handle());
                        }
                        if let Ok(Some(job)) = result.as_ref().map(|o| o.snapshot.clone()) {
                            let (bolt, memory, clock) = (bolt.clone(), memory.clone(), clock.clone());
                            let snapshot = tokio::task::spawn_local(async move {
                                run_snapshot(bolt.as_ref(), &memory.snapshots, &clock, &backups, job).await;
                            });
                            keep(&tasks, snapshot.abort_handle());
                        }
                        result.ok().map(|outcome| outcome.requeue_after)
                    }
                    // Deleted: nothing to do (nor to probe) until it comes back.
                    Ok(None) => {
                        memory
                            .main_probes
                            .retain(|namespace, name| (namespace, name) != (key.0.as_str(), key.1.as_str()));
                        Some(Duration::from_secs(3600))
                    }
                    Err(_) => None,
                };
                if ok.is_none() {
                    lock(&gate.log).failed_reconciles.push((now_ms(), key.1.clone()));
                }
                let _ = done_tx.send(Done { key, ok });
            });
        }
    }
}
