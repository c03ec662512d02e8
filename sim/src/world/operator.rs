//! The operator as a turmoil host: the real reconcile behind a small work queue with the
//! controller runtime's guarantees (one reconcile per cluster at a time, requeue-after, backoff,
//! triggers from watch notifications). Crashing the host loses the queue and all memory.
//!
//! A gate wraps its API and Bolt access: it counts mutating API calls and can freeze the
//! operator right after the Nth one, so a crash can be injected exactly between two actions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use memgraph_operator::api::{MemgraphCluster, MemgraphClusterStatus};
use memgraph_operator::kube_api::{ClusterEvent, Kube, KubeError, KubeObject, LabelPatch};
use memgraph_operator::memgraph::{Bolt, BoltError, BoltValue, QueryResult};
use memgraph_operator::names::LABEL_INSTANCE;
use memgraph_operator::reconcile::reconcile;
use tokio::sync::broadcast::error::RecvError;
use turmoil::Sim;

use super::bolt::TurmoilBolt;
use super::time::SimClock;
use crate::apiserver::ApiServer;

/// Host name of the operator.
pub const OPERATOR_HOST: &str = "operator";

/// Shared between the operator host and the driver.
#[derive(Default)]
pub struct Gate {
    writes: AtomicU64,
    crash_after: Mutex<Option<u64>>,
    frozen: AtomicBool,
    /// Every Memgraph query the operator sent: (address, query).
    pub queries: Mutex<Vec<(String, String)>>,
    /// Reconciles completed, and failed.
    pub reconciles: AtomicU64,
    /// Reconciles that returned an error.
    pub failures: AtomicU64,
}

impl Gate {
    /// Freeze the operator right after its `n`th further mutating API call.
    pub fn crash_after(&self, n: u64) {
        let base = self.writes.load(Ordering::SeqCst);
        *self.crash_after.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(base + n);
    }

    /// Whether the operator is frozen, waiting to be crashed.
    pub fn frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Clear the freeze (after the crash).
    pub fn reset(&self) {
        *self.crash_after.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.frozen.store(false, Ordering::SeqCst);
    }

    async fn hold(&self) {
        if self.frozen() {
            std::future::pending::<()>().await;
        }
    }

    fn wrote(&self) {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if self.crash_after.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some_and(|at| n >= at) {
            self.frozen.store(true, Ordering::SeqCst);
        }
    }
}

/// `Kube` through the gate.
pub struct GatedKube {
    inner: ApiServer,
    gate: Arc<Gate>,
}

#[async_trait]
impl Kube for GatedKube {
    async fn get<T: KubeObject>(&self, namespace: &str, name: &str) -> Result<Option<T>, KubeError> {
        self.gate.hold().await;
        self.inner.get(namespace, name).await
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
        let result = self.inner.apply(object).await;
        self.gate.wrote();
        result
    }
    async fn delete<T: KubeObject>(&self, namespace: &str, name: &str) -> Result<(), KubeError> {
        self.gate.hold().await;
        let result = self.inner.delete::<T>(namespace, name).await;
        self.gate.wrote();
        result
    }
    async fn patch_status(&self, namespace: &str, name: &str, status: &MemgraphClusterStatus) -> Result<(), KubeError> {
        self.gate.hold().await;
        let result = self.inner.patch_status(namespace, name, status).await;
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
        let result = self.inner.patch_pod_labels(namespace, pod, uid, labels).await;
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
        let result = self.inner.set_finalizers(namespace, name, finalizers, resource_version).await;
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
    async fn run(
        &self,
        address: &str,
        query: &str,
        params: BTreeMap<String, BoltValue>,
    ) -> Result<QueryResult, BoltError> {
        self.gate.hold().await;
        self.gate
            .queries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((address.to_owned(), query.to_owned()));
        self.inner.run(address, query, params).await
    }
}

/// Backoff after failed reconciles: 1 s doubling to 60 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60))
}

/// Install the operator host. Its software starts by reconciling every cluster, then follows
/// watch notifications and requeues.
pub fn install(sim: &mut Sim<'_>, api: ApiServer, clock: SimClock, gate: Arc<Gate>) {
    sim.host(OPERATOR_HOST, move || {
        let api = api.clone();
        let clock = clock.clone();
        let gate = gate.clone();
        async move {
            let kube = GatedKube { inner: api.clone(), gate: gate.clone() };
            let bolt = GatedBolt {
                inner: TurmoilBolt::new(Duration::from_secs(2), Duration::from_secs(5)),
                gate: gate.clone(),
            };
            let mut changes = api.subscribe();
            // Cluster (namespace, name) → when it is due, in simulated time since start.
            let mut due: BTreeMap<(String, String), Duration> = BTreeMap::new();
            let mut failures: BTreeMap<(String, String), u32> = BTreeMap::new();
            for (key, _) in api.all_of_kind("MemgraphCluster") {
                due.insert((key.namespace, key.name), Duration::ZERO);
            }
            loop {
                let now = clock.elapsed();
                let next = due.values().min().copied();
                let wait = next.map_or(Duration::from_secs(3600), |at| at.saturating_sub(now));
                let mut triggered = Vec::new();
                if !wait.is_zero() {
                    tokio::select! {
                        biased;
                        change = changes.recv() => triggered.push(change),
                        () = tokio::time::sleep(wait) => {}
                    }
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
                for change in triggered {
                    match change {
                        Ok(change) => {
                            let cluster = if change.key.kind == "MemgraphCluster" {
                                Some(change.key.name.clone())
                            } else {
                                change.labels.get(LABEL_INSTANCE).cloned().or_else(|| {
                                    change
                                        .owner
                                        .as_ref()
                                        .filter(|(k, _)| k == "MemgraphCluster")
                                        .map(|(_, n)| n.clone())
                                })
                            };
                            if let Some(name) = cluster {
                                let key = (change.key.namespace.clone(), name);
                                let at = due.get(&key).copied().unwrap_or(now).min(now);
                                due.insert(key, at);
                            }
                        }
                        // Missed notifications: like a watch restart, look at everything.
                        Err(_) => {
                            for (key, _) in api.all_of_kind("MemgraphCluster") {
                                due.insert((key.namespace, key.name), now);
                            }
                        }
                    }
                }
                let ready: Vec<(String, String)> =
                    due.iter().filter(|(_, at)| **at <= now).map(|(k, _)| k.clone()).collect();
                for key in ready {
                    due.remove(&key);
                    let cluster = match kube.get::<MemgraphCluster>(&key.0, &key.1).await {
                        Ok(Some(cluster)) => cluster,
                        Ok(None) => continue,
                        Err(_) => {
                            due.insert(key, clock.elapsed() + backoff(1));
                            continue;
                        }
                    };
                    match reconcile(&cluster, &kube, &bolt, &clock).await {
                        Ok(outcome) => {
                            gate.reconciles.fetch_add(1, Ordering::SeqCst);
                            failures.remove(&key);
                            due.insert(key, clock.elapsed() + outcome.requeue_after);
                        }
                        Err(_) => {
                            gate.failures.fetch_add(1, Ordering::SeqCst);
                            let n = failures.entry(key.clone()).or_insert(0);
                            *n += 1;
                            due.insert(key, clock.elapsed() + backoff(*n));
                        }
                    }
                }
            }
        }
    });
}
