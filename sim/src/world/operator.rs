//! The operator as a turmoil host: the real reconcile behind a small work queue with the
//! controller runtime's guarantees (one reconcile per cluster at a time, clusters reconciled
//! concurrently, requeue-after, the production backoff, triggers from watch notifications).
//! Crashing the host loses the queue and all memory.
//!
//! A gate wraps its API and Bolt access. It records every query and mutating call, judges each
//! label, status and `DROP REPLICA` at the instant it is made (the strict checks of
//! [`claims`](super::oracles::claims)), and can freeze the operator right after its Nth
//! mutating call, so a crash can be injected exactly between two actions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use memgraph_operator::api::{MemgraphCluster, MemgraphClusterStatus};
use memgraph_operator::controller;
use memgraph_operator::kube_api::{ClusterEvent, Kube, KubeError, KubeObject, LabelPatch};
use memgraph_operator::memgraph::{Bolt, BoltError, BoltValue, QueryResult, Timeouts};
use memgraph_operator::names::{LABEL_INSTANCE, LABEL_ROLE};
use memgraph_operator::reconcile::guard::guard;
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

/// Host name of the operator.
pub const OPERATOR_HOST: &str = "operator";
/// Retry delay of the route guard (the production controller's error policy).
const GUARD_RETRY: Duration = Duration::from_secs(2);

/// A query the operator sent.
#[derive(Debug, Clone)]
pub struct QueryRecord {
    /// When, in simulated ms.
    pub at_ms: u64,
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
}

/// One reconcile.
#[derive(Debug, Clone)]
pub struct ReconcileRecord {
    /// When it started, in simulated ms.
    pub start_ms: u64,
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
}

/// Shared between the operator host and the driver.
pub struct Gate {
    writes: AtomicU64,
    crash_after: Mutex<Option<u64>>,
    frozen: AtomicBool,
    truth: TruthSource,
    /// Per cluster: the truth at the instants the operator looked in its current round (when it
    /// read the cluster, and when its latest answer to `SHOW REPLICAS` came), and the spec it read.
    rounds: Mutex<BTreeMap<String, (Vec<ClusterTruth>, Value)>>,
    log: Mutex<GateLog>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u64 {
    turmoil::sim_elapsed().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Gate {
    /// A gate that judges against `truth`.
    pub fn new(truth: TruthSource) -> Self {
        Self {
            writes: AtomicU64::new(0),
            crash_after: Mutex::new(None),
            frozen: AtomicBool::new(false),
            truth,
            rounds: Mutex::default(),
            log: Mutex::default(),
        }
    }

    /// Freeze the operator right after its `n`th further mutating API call.
    pub fn crash_after(&self, n: u64) {
        let base = self.writes.load(Ordering::SeqCst);
        *lock(&self.crash_after) = Some(base + n);
    }

    /// Whether the operator is frozen, waiting to be crashed.
    pub fn frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Clear the freeze (after the crash) and forget per-round memory, as the process does.
    pub fn reset(&self) {
        *lock(&self.crash_after) = None;
        self.frozen.store(false, Ordering::SeqCst);
        lock(&self.rounds).clear();
    }

    /// Cancel a pending crash-after-write without forgetting what the running operator looked
    /// at (the heal: the process keeps running).
    pub fn cancel_crash(&self) {
        *lock(&self.crash_after) = None;
    }

    /// Take what was recorded since the last call.
    pub fn drain(&self) -> GateLog {
        std::mem::take(&mut *lock(&self.log))
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
        lock(&self.log).writes.push(WriteRecord { at_ms: now_ms(), cluster: cluster.to_owned(), what, bookkeeping });
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
        if let Some(conditions) = map.get_mut("conditions").and_then(Value::as_array_mut) {
            for c in conditions.iter_mut().filter(|c| c["type"] == "ReplicationLagAcceptable") {
                if let Some(c) = c.as_object_mut() {
                    c.remove("message");
                }
            }
        }
    }
    s
}

#[async_trait]
impl Kube for GatedKube {
    async fn get<T: KubeObject>(&self, namespace: &str, name: &str) -> Result<Option<T>, KubeError> {
        self.gate.hold().await;
        let result = self.inner.get::<T>(namespace, name).await;
        if T::kind(&()) == "MemgraphCluster"
            && let Ok(Some(object)) = &result
        {
            // A round starts by reading the cluster: remember what it read and the truth then.
            let spec = serde_json::to_value(object).map(|v| v["spec"].clone()).unwrap_or_default();
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
        self.gate.hold().await;
        self.inner.list(namespace, labels).await
    }
    async fn apply<T: KubeObject>(&self, object: &T) -> Result<T, KubeError> {
        self.gate.hold().await;
        let name = object.meta().name.clone().unwrap_or_default();
        let cluster = object
            .meta()
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_INSTANCE).cloned())
            .unwrap_or_else(|| self.gate.cluster_of(&name));
        self.gate.record_write(&cluster, format!("apply {} {name}", T::kind(&())), false);
        let result = self.inner.as_operator(self.inner.apply(object)).await;
        self.gate.wrote();
        result
    }
    async fn delete<T: KubeObject>(&self, namespace: &str, name: &str) -> Result<(), KubeError> {
        self.gate.hold().await;
        self.gate.record_write(&self.gate.cluster_of(name), format!("delete {} {name}", T::kind(&())), false);
        let result = self.inner.as_operator(self.inner.delete::<T>(namespace, name)).await;
        self.gate.wrote();
        result
    }
    async fn patch_status(
        &self,
        namespace: &str,
        name: &str,
        status: &MemgraphClusterStatus,
        resource_version: Option<&str>,
    ) -> Result<(), KubeError> {
        self.gate.hold().await;
        let new = serde_json::to_value(status).unwrap_or_default();
        let old = self.inner.get_json(&Key::new("MemgraphCluster", namespace, name)).map(|c| c["status"].clone());
        let bookkeeping = old.as_ref().is_some_and(|old| without_bookkeeping(old) == without_bookkeeping(&new));
        let changed = old.as_ref().map(|old| status_changes(old, &new)).unwrap_or_default();
        self.gate.record_write(name, format!("patch status (phase {:?}; {changed})", status.phase), bookkeeping);
        self.gate.judge(name, |truth, acted| claims::status_false(truth, name, &new, acted));
        let result = self.inner.as_operator(self.inner.patch_status(namespace, name, status, resource_version)).await;
        self.gate.wrote();
        result
    }
    async fn patch_pod_labels(
        &self,
        namespace: &str,
        pod: &str,
        uid: &str,
        labels: &LabelPatch,
    ) -> Result<(), KubeError> {
        self.gate.hold().await;
        let cluster = self.gate.cluster_of(pod);
        let role = labels.get(LABEL_ROLE).cloned().flatten();
        self.gate.record_write(&cluster, format!("label {pod} {role:?}"), false);
        if let Some(role) = &role {
            self.gate.judge(&cluster, |truth, _| claims::label_false(truth, &cluster, pod, role));
        }
        let result = self.inner.as_operator(self.inner.patch_pod_labels(namespace, pod, uid, labels)).await;
        self.gate.wrote();
        result
    }
    async fn set_finalizers(
        &self,
        namespace: &str,
        name: &str,
        finalizers: &[String],
        resource_version: &str,
    ) -> Result<(), KubeError> {
        self.gate.hold().await;
        self.gate.record_write(name, "set finalizers".to_owned(), false);
        let result =
            self.inner.as_operator(self.inner.set_finalizers(namespace, name, finalizers, resource_version)).await;
        self.gate.wrote();
        result
    }
    async fn publish_event(&self, event: &ClusterEvent) -> Result<(), KubeError> {
        self.gate.hold().await;
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
        lock(&self.gate.log).queries.push(QueryRecord {
            at_ms: sent_ms,
            cluster: cluster.clone(),
            address: address.to_owned(),
            query: query.to_owned(),
        });
        let result = self.inner.run_within(address, query, params, timeout).await;
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

/// Install the operator host. Its software starts by reconciling every cluster, then follows
/// watch notifications and requeues, reconciling different clusters concurrently.
pub fn install(
    sim: &mut Sim<'_>,
    api: ApiServer,
    clock: SimClock,
    gate: Arc<Gate>,
    backups: memgraph_operator::reconcile::backup_job::BackupContext,
) {
    sim.host(OPERATOR_HOST, move || {
        let api = api.clone();
        let clock = clock.clone();
        let gate = gate.clone();
        let backups = backups.clone();
        async move {
            let kube = Arc::new(GatedKube { inner: api.clone(), gate: gate.clone() });
            let bolt = Arc::new(GatedBolt { inner: TurmoilBolt::new(Timeouts::default()), gate: gate.clone() });
            let memory = Arc::new(Memory::default());
            let mut changes = api.subscribe();
            let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
            let mut queue = Queue::default();
            for (key, _) in api.all_of_kind("MemgraphCluster") {
                queue.trigger((key.namespace, key.name), Duration::ZERO, Trigger::Start);
            }
            loop {
                let now = clock.elapsed();
                let next = queue.due.iter().filter(|(k, _)| !queue.running.contains(*k)).map(|(_, (at, _))| *at).min();
                let wait = next.map_or(Duration::from_secs(3600), |at| at.saturating_sub(now));
                let mut triggered = Vec::new();
                let mut finished = Vec::new();
                if !wait.is_zero() {
                    tokio::select! {
                        biased;
                        done = done_rx.recv() => finished.extend(done),
                        change = changes.recv() => triggered.push(change),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                while let Ok(done) = done_rx.try_recv() {
                    finished.push(done);
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
                for change in triggered {
                    match change {
                        // The route guard looks at a changed pod at once, beside the queue.
                        Ok(change) if change.key.kind == "Pod" && !change.by_operator => {
                            let kube = kube.clone();
                            let key = change.key.clone();
                            // Like the controller's error policy, a failed removal is retried.
                            tokio::task::spawn_local(async move {
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
                    .filter(|(k, (at, _))| *at <= now && !queue.running.contains(*k))
                    .map(|(k, (_, t))| (k.clone(), *t))
                    .collect();
                for (key, trigger) in ready {
                    queue.due.remove(&key);
                    queue.running.insert(key.clone());
                    lock(&gate.log).reconciles.push(ReconcileRecord {
                        start_ms: now_ms(),
                        cluster: key.1.clone(),
                        trigger,
                    });
                    let (kube, bolt, memory, clock, gate, done_tx, backups) = (
                        kube.clone(),
                        bolt.clone(),
                        memory.clone(),
                        clock.clone(),
                        gate.clone(),
                        done_tx.clone(),
                        backups.clone(),
                    );
                    tokio::task::spawn_local(async move {
                        let ok = match kube.get::<MemgraphCluster>(&key.0, &key.1).await {
                            Ok(Some(cluster)) => {
                                let result = reconcile(&cluster, kube.as_ref(), bolt.as_ref(), &clock, &memory).await;
                                if let Ok(Some(job)) = result.as_ref().map(|o| o.validation.clone()) {
                                    let (bolt, memory, clock, gate) =
                                        (bolt.clone(), memory.clone(), clock.clone(), gate.clone());
                                    tokio::task::spawn_local(async move {
                                        let (uid, start_ms) = (job.cluster.clone(), now_ms());
                                        let cluster = job.names.cluster.clone();
                                        run_validation(bolt.as_ref(), &memory.validation, &clock, job).await;
                                        gate.record_lags(&cluster, start_ms, memory.validation.finished(&uid));
                                    });
                                }
                                if let Ok(Some(job)) = result.as_ref().map(|o| o.snapshot.clone()) {
                                    let (bolt, memory, clock) = (bolt.clone(), memory.clone(), clock.clone());
                                    tokio::task::spawn_local(async move {
                                        run_snapshot(bolt.as_ref(), &memory.snapshots, &clock, &backups, job).await;
                                    });
                                }
                                result.ok().map(|outcome| outcome.requeue_after)
                            }
                            // Deleted: nothing to do until it comes back.
                            Ok(None) => Some(Duration::from_secs(3600)),
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
    });
}
