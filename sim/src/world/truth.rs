//! Ground truth at one instant: what Kubernetes objects say (labels, readiness, status) next to
//! what each fake Memgraph actually is. Oracles compare the two.
//!
//! A [`TruthSource`] can be sampled from anywhere in the world (the driver every 100 ms, the
//! operator's gate at the moment it writes, the workload when a write is acknowledged), so a
//! claim can be judged at the instant it is made.

use std::collections::BTreeMap;
use std::sync::Arc;

use fake_memgraph::replication::main_side::Lineage;
use fake_memgraph::{ReplicaState, Role, ServerHandle};
use memgraph_operator::names::{ClusterNames, Instance, LABEL_INSTANCE};
use serde_json::Value;

use super::pods::{Flaps, LostNodes};
use super::run::NAMESPACE;
use crate::apiserver::{ApiServer, Key};

/// One pod as Kubernetes and Memgraph see it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodTruth {
    /// `memgraph.io/role` label.
    pub label: Option<String>,
    /// Ready condition.
    pub ready: bool,
    /// Being deleted.
    pub terminating: bool,
    /// Memgraph role, when its server runs.
    pub role: Option<Role>,
    /// A REPLICA that follows the write pod's MAIN (same main UUID): its registration there
    /// describes this very instance, not one it replaced.
    pub follows_main: bool,
    /// The process is frozen (accepts TCP, answers nothing).
    pub hung: bool,
    /// Its node is lost: nothing reaches it, clients included.
    pub lost_node: bool,
    /// Nodes it holds, the operator's test nodes not counted (0 when it does not run).
    pub nodes: usize,
    /// Its last commit timestamp (0 when it does not run).
    pub ts: i64,
    /// Its data diverged from the held MAIN's (it holds writes the MAIN does not have): what
    /// registering it there would find, whether or not a `SHOW REPLICAS` row says so.
    pub diverged: bool,
    /// It diverged by going on past the point the held MAIN was promoted from (writes of an
    /// old MAIN the new one never received), rather than the MAIN having lost data.
    pub ahead: bool,
    /// Its readiness flaps (the `main-flap` fault): NotReady stretches shorter than the
    /// detection delay while its Memgraph answers.
    pub flapping: bool,
    /// It is partitioned from everyone (`main-partition-all`, `main-returns`): like a lost node
    /// to the operators and the clients, though its kubelet still reports it Ready.
    pub cut_off: bool,
}

impl PodTruth {
    /// Whether a Service selecting this pod's label routes to it.
    pub fn routable(&self) -> bool {
        self.ready && !self.terminating
    }

    /// Whether clients routed to it are served: routable, reachable and answering.
    pub fn usable(&self) -> bool {
        self.routable() && !self.unreachable()
    }

    /// Nobody can reach it to ask: frozen, on a lost node, or partitioned from everyone.
    pub fn unreachable(&self) -> bool {
        self.hung || self.lost_node || self.cut_off
    }
}

/// A registration on the write pod's MAIN.
#[derive(Debug, Clone, PartialEq)]
pub struct RowTruth {
    /// Registered address.
    pub address: String,
    /// `sync`, `async`, `strict_sync`.
    pub mode: String,
    /// State, `None` for a half-failed registration.
    pub state: Option<ReplicaState>,
}

impl RowTruth {
    /// In sync: clients reading from it see what the MAIN has (a transaction may be in flight).
    pub fn healthy(&self) -> bool {
        matches!(self.state, Some(ReplicaState::Ready | ReplicaState::Replicating))
    }
}

/// One cluster at one instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterTruth {
    /// Pods by name.
    pub pods: BTreeMap<String, PodTruth>,
    /// Registrations on the write pod when it runs as MAIN, by replica name.
    pub rows: BTreeMap<String, RowTruth>,
    /// The cluster's status, if the cluster exists.
    pub status: Option<Value>,
    /// The cluster's spec.
    pub spec: Option<Value>,
    /// `metadata.generation` of the cluster.
    pub generation: i64,
    /// The pod whose Memgraph is the cluster's MAIN: the write pod, or the read pod a failover
    /// promotes or promoted (`status.failover`: the intent's target, else `main`). Its history
    /// is the cluster's; any other MAIN is an old one.
    pub main: String,
}

/// The world at one instant, by cluster name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Truth {
    /// Every cluster of the run.
    pub clusters: BTreeMap<String, ClusterTruth>,
}

/// Names of one cluster's pods, by the operator's own naming.
pub fn write_pod(cluster: &str) -> String {
    ClusterNames::new(cluster, NAMESPACE).pod(Instance::Write)
}

/// The read pod of replica `index`.
pub fn read_pod(cluster: &str, index: u32) -> String {
    ClusterNames::new(cluster, NAMESPACE).pod(Instance::Read(index))
}

/// The replica index of a read pod name of `cluster` (`g-read-3-0` → 3).
pub fn read_index(cluster: &str, pod: &str) -> Option<u32> {
    pod.strip_prefix(&format!("{cluster}-read-"))?.strip_suffix("-0")?.parse().ok()
}

impl ClusterTruth {
    /// The replica count the spec asks for.
    pub fn desired(&self) -> u32 {
        self.spec.as_ref().and_then(|s| s["read"]["replicas"].as_u64()).map_or(3, |n| u32::try_from(n).unwrap_or(0))
    }

    /// The spec's replication mode as `SHOW REPLICAS` spells it.
    pub fn mode(&self) -> String {
        self.spec.as_ref().and_then(|s| s["replication"]["mode"].as_str()).unwrap_or("ASYNC").to_ascii_lowercase()
    }

    /// The pod held as MAIN (see [`ClusterTruth::main`]), if it exists. Before the first
    /// sample of the cluster's status this is the write pod.
    pub fn write<'a>(&'a self, cluster: &str) -> Option<&'a PodTruth> {
        self.pods.get(&self.main_pod(cluster))
    }

    /// The name of the pod held as MAIN.
    pub fn main_pod(&self, cluster: &str) -> String {
        if self.main.is_empty() { write_pod(cluster) } else { self.main.clone() }
    }

    /// The instances that should be replicas: the wanted read pods and, after a failover, the
    /// write pod; never the MAIN.
    pub fn replica_instances(&self, cluster: &str) -> Vec<Instance> {
        self.replica_instances_of(cluster, None)
    }

    /// [`Self::replica_instances`] for `desired` read replicas (the spec's when `None`).
    pub fn replica_instances_of(&self, cluster: &str, desired: Option<u32>) -> Vec<Instance> {
        let names = ClusterNames::new(cluster, NAMESPACE);
        let main = self.main_pod(cluster);
        std::iter::once(Instance::Write)
            .chain((0..desired.unwrap_or_else(|| self.desired())).map(Instance::Read))
            .filter(|i| names.pod(*i) != main)
            .collect()
    }

    /// The MAIN is a MAIN with no registrations that holds less than another pod: its volume
    /// was lost (or refilled from an older copy), and routing writes to it would start a new
    /// history beside the one the other pod holds. Another MAIN's data does not count: a
    /// MAIN a failover replaced holds beyond the new one only what it took after (under SYNC
    /// reported to its clients as failed; what was acknowledged is judged by the writes oracle).
    pub fn main_lost_data(&self, cluster: &str) -> bool {
        let main_pod = self.main_pod(cluster);
        let Some(main) = self.pods.get(&main_pod).filter(|p| p.role == Some(Role::Main)) else { return false };
        // A replica ahead in the MAIN's own lineage holds an old MAIN's last writes (a MAIN just
        // promoted has no rows yet either): that is divergence, judged by the data elsewhere.
        self.rows.is_empty()
            && self
                .pods
                .iter()
                .any(|(name, p)| *name != main_pod && p.role != Some(Role::Main) && p.nodes > main.nodes && !p.ahead)
    }

    /// The MAIN can take writes with its data: ready, a running MAIN, not frozen, not empty
    /// while replicas hold data.
    pub fn write_usable(&self, cluster: &str) -> bool {
        self.write(cluster).is_some_and(|p| p.usable() && p.role == Some(Role::Main) && !self.main_lost_data(cluster))
    }

    /// Read pod `index` serves what the MAIN has (see [`ClusterTruth::instance_usable`]).
    pub fn replica_usable(&self, cluster: &str, index: u32) -> bool {
        index < self.desired() && self.instance_usable(cluster, Instance::Read(index))
    }

    /// `instance` serves what the MAIN has: not the MAIN, ready, a REPLICA of the MAIN,
    /// registered at its address and in sync.
    pub fn instance_usable(&self, cluster: &str, instance: Instance) -> bool {
        let names = ClusterNames::new(cluster, NAMESPACE);
        names.pod(instance) != self.main_pod(cluster)
            && self.pods.get(&names.pod(instance)).is_some_and(|p| p.usable() && p.follows_main)
            && self
                .rows
                .get(&instance.replica_name())
                .is_some_and(|r| r.healthy() && r.address == names.replication_address(instance))
    }

    /// Replicas that are usable right now.
    pub fn usable_replicas(&self, cluster: &str) -> usize {
        self.replica_instances(cluster).into_iter().filter(|i| self.instance_usable(cluster, *i)).count()
    }

    /// Whether some sync-mode registration is in sync: a write acknowledged now is on it too.
    pub fn sync_protected(&self) -> bool {
        self.rows.values().any(|r| r.healthy() && r.mode != "async")
    }
}

fn mode_name(mode: fake_memgraph::SyncMode) -> String {
    match mode {
        fake_memgraph::SyncMode::Sync => "sync",
        fake_memgraph::SyncMode::Async => "async",
        fake_memgraph::SyncMode::StrictSync => "strict_sync",
    }
    .to_owned()
}

/// The running fake-memgraph servers by pod name, shared with the kubelet that starts them.
pub type Servers = Arc<dyn Fn(&str) -> Option<ServerHandle> + Send + Sync>;

/// Samples the truth: the API server and the running servers.
#[derive(Clone)]
pub struct TruthSource {
    api: ApiServer,
    servers: Servers,
    lost: LostNodes,
    flaps: Flaps,
    /// Pods partitioned from everyone (operators, peers, clients) by a fault.
    cut_off: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    clusters: Arc<Vec<String>>,
}

impl TruthSource {
    /// A source over `api`, the running `servers` and the pods on `lost` nodes, for the named
    /// clusters.
    pub fn new(api: ApiServer, servers: Servers, lost: LostNodes, flaps: Flaps, clusters: Vec<String>) -> Self {
        Self { api, servers, lost, flaps, cut_off: Arc::default(), clusters: Arc::new(clusters) }
    }

    /// Mark `pod` as partitioned from everyone, or no longer.
    pub fn set_cut_off(&self, pod: &str, cut_off: bool) {
        let mut set = self.cut_off.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cut_off {
            set.insert(pod.to_owned());
        } else {
            set.remove(pod);
        }
    }

    /// The clusters of the run.
    pub fn clusters(&self) -> &[String] {
        &self.clusters
    }

    /// The running server of a pod.
    pub fn server(&self, pod: &str) -> Option<ServerHandle> {
        (self.servers)(pod)
    }

    /// Sample every cluster.
    pub fn sample(&self) -> Truth {
        let clusters = self.clusters.iter().map(|c| (c.clone(), self.cluster(c))).collect();
        Truth { clusters }
    }

    /// Sample one cluster.
    pub fn cluster(&self, cluster: &str) -> ClusterTruth {
        let mut truth = ClusterTruth::default();
        let pods = self.api.scan("Pod", |key, pod| {
            (key.namespace == NAMESPACE && pod["metadata"]["labels"][LABEL_INSTANCE].as_str() == Some(cluster)).then(
                || {
                    (
                        key.name.clone(),
                        pod["metadata"]["labels"]["memgraph.io/role"].as_str().map(str::to_owned),
                        pod["status"]["conditions"][0]["status"].as_str() == Some("True"),
                        !pod["metadata"]["deletionTimestamp"].is_null(),
                    )
                },
            )
        });
        self.api.with_object(&Key::new("MemgraphCluster", NAMESPACE, cluster), |object| {
            truth.status = Some(object["status"].clone());
            truth.spec = Some(object["spec"].clone());
            truth.generation = object["metadata"]["generation"].as_i64().unwrap_or(0);
        });
        // As the operator holds it: the target of a failover under way, else the last one's.
        let failover = truth.status.as_ref().map(|s| &s["failover"]);
        let held = failover
            .and_then(|f| f["intent"]["to"].as_str().or(f["main"].as_str()))
            .and_then(Instance::from_status_name);
        truth.main = ClusterNames::new(cluster, NAMESPACE).pod(held.unwrap_or(Instance::Write));
        let main = self.server(&truth.main).filter(|s| s.role() == Role::Main);
        let main_uuid = main.as_ref().map(ServerHandle::main_uuid);
        for (name, label, ready, terminating) in pods {
            let server = self.server(&name);
            let follows_main = server
                .as_ref()
                .is_some_and(|s| s.role() == Role::Replica && main_uuid.as_deref() == Some(s.main_uuid().as_str()));
            let hung = server.as_ref().is_some_and(ServerHandle::is_hung);
            let lost_node = self.lost.lock().map(|l| l.contains_key(&name)).unwrap_or(false);
            let flapping = self.flaps.lock().map(|f| f.contains_key(&name)).unwrap_or(false);
            let cut_off = self.cut_off.lock().map(|c| c.contains(&name)).unwrap_or(false);
            let lineage = server
                .as_ref()
                .zip(main.as_ref())
                .filter(|_| name != truth.main)
                .map_or(Lineage::Continuous, |(s, main)| s.lineage_to(main));
            let diverged = lineage != Lineage::Continuous;
            let ahead = lineage == Lineage::Ahead;
            truth.pods.insert(
                name,
                PodTruth {
                    label,
                    ready,
                    terminating,
                    role: server.as_ref().map(ServerHandle::role),
                    follows_main,
                    hung,
                    lost_node,
                    // The operator's test nodes are not data: a replica that kept one its
                    // cleanup did not reach holds no more than the MAIN.
                    nodes: server.as_ref().map_or(0, |s| s.node_count_without(memgraph_operator::memgraph::TEST_LABEL)),
                    ts: server.as_ref().map_or(0, ServerHandle::timestamp),
                    diverged,
                    ahead,
                    flapping,
                    cut_off,
                },
            );
        }
        if let Some(main) = main {
            for row in main.replicas() {
                truth.rows.insert(
                    row.name,
                    RowTruth { address: row.socket_address, mode: mode_name(row.mode), state: row.state },
                );
            }
        }
        truth
    }
}
