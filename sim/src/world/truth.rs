//! Ground truth at one instant: what Kubernetes objects say (labels, readiness, status) next to
//! what each fake Memgraph actually is. Oracles compare the two.

use std::collections::BTreeMap;

use fake_memgraph::{ReplicaState, Role};
use serde_json::Value;

use super::pods::Kubelet;
use super::run::{CLUSTER, NAMESPACE};
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
}

impl PodTruth {
    /// Whether a Service selecting this pod's label routes to it.
    pub fn routable(&self) -> bool {
        self.ready && !self.terminating
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

/// The world at one instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Truth {
    /// Pods by name.
    pub pods: BTreeMap<String, PodTruth>,
    /// Registrations on the write pod when it runs as MAIN, by replica name.
    pub rows: BTreeMap<String, RowTruth>,
    /// The cluster's status, if the cluster exists.
    pub status: Option<Value>,
    /// The cluster's spec.
    pub spec: Option<Value>,
}

fn mode_name(mode: fake_memgraph::SyncMode) -> String {
    match mode {
        fake_memgraph::SyncMode::Sync => "sync",
        fake_memgraph::SyncMode::Async => "async",
        fake_memgraph::SyncMode::StrictSync => "strict_sync",
    }
    .to_owned()
}

/// Sample the truth.
pub fn sample(api: &ApiServer, kubelet: &Kubelet) -> Truth {
    let mut truth = Truth::default();
    let pods = api.scan("Pod", |key, pod| {
        (key.namespace == NAMESPACE).then(|| {
            (
                key.name.clone(),
                pod["metadata"]["labels"]["memgraph.io/role"].as_str().map(str::to_owned),
                pod["status"]["conditions"][0]["status"].as_str() == Some("True"),
                !pod["metadata"]["deletionTimestamp"].is_null(),
            )
        })
    });
    let main_uuid =
        kubelet.server(&format!("{CLUSTER}-write-0")).filter(|s| s.role() == Role::Main).map(|s| s.main_uuid());
    for (name, label, ready, terminating) in pods {
        let server = kubelet.server(&name);
        let follows_main = server
            .as_ref()
            .is_some_and(|s| s.role() == Role::Replica && main_uuid.as_deref() == Some(s.main_uuid().as_str()));
        truth.pods.insert(
            name,
            PodTruth {
                label,
                ready,
                terminating,
                role: server.as_ref().map(fake_memgraph::ServerHandle::role),
                follows_main,
            },
        );
    }
    let write = format!("{CLUSTER}-write-0");
    if let Some(main) = kubelet.server(&write).filter(|s| s.role() == Role::Main) {
        for row in main.replicas() {
            truth.rows.insert(
                row.name,
                RowTruth { address: row.socket_address, mode: mode_name(row.mode), state: row.state },
            );
        }
    }
    if let Some(cluster) = api.get_json(&Key::new("MemgraphCluster", NAMESPACE, CLUSTER)) {
        truth.status = Some(cluster["status"].clone());
        truth.spec = Some(cluster["spec"].clone());
    }
    truth
}
