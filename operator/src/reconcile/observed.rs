//! What the operator saw: a plain value built by `observe`, read by `plan`. Unreachable
//! instances are data here, not errors.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;

use crate::api::{MemgraphClusterSpec, MemgraphClusterStatus, StorageSpec};
use crate::memgraph::ReplicaRow;
use crate::names::Instance;

/// Kinds of objects the operator owns and applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// v1 Service.
    Service,
    /// policy/v1 PodDisruptionBudget.
    PodDisruptionBudget,
}

/// Identity of an owned object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name.
    pub name: String,
}

impl ObjectKey {
    /// Key of kind `kind` named `name`.
    pub fn new(kind: ObjectKind, name: impl Into<String>) -> Self {
        Self { kind, name: name.into() }
    }
}

/// The cluster object itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterMeta {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `metadata.uid`, for owner references.
    pub uid: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `metadata.resourceVersion` (precondition for finalizer changes).
    pub resource_version: String,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// Our finalizer is present.
    pub has_finalizer: bool,
    /// The other finalizers, kept when ours is added or removed.
    pub other_finalizers: Vec<String>,
    /// `metadata.creationTimestamp`: the first snapshot is scheduled from it.
    pub created: Option<Timestamp>,
    /// The `memgraph.io/backup-request` annotation.
    pub backup_request: Option<String>,
    /// The `memgraph.io/switchover` annotation.
    pub switchover_request: Option<String>,
    /// Reference used for events.
    pub reference: ObjectReference,
}

impl ClusterMeta {
    /// Controller owner reference to the cluster.
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: format!("{}/{}", crate::api::GROUP, crate::api::VERSION),
            kind: "MemgraphCluster".to_owned(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// What Memgraph on one pod said.
#[derive(Debug, Clone, PartialEq)]
pub enum MemgraphState {
    /// Not asked: the pod is not ready (or is terminating).
    NotAsked,
    /// Asked, but no answer: connection or query failed.
    Unreachable(String),
    /// The instance is a MAIN. `replicas` is its `SHOW REPLICAS` (asked of the write pod, and of
    /// read pods only when they unexpectedly are MAIN); `nodes` is asked only when the operator
    /// must tell empty instances from ones holding data.
    Main {
        /// `SHOW REPLICAS`, or why it failed.
        replicas: Option<Result<Vec<ReplicaRow>, String>>,
        /// Node count, when asked.
        nodes: Option<i64>,
    },
    /// The instance is a REPLICA.
    Replica {
        /// Node count, when asked.
        nodes: Option<i64>,
    },
}

impl MemgraphState {
    /// Node count, if it was asked.
    pub fn nodes(&self) -> Option<i64> {
        match self {
            MemgraphState::Main { nodes, .. } | MemgraphState::Replica { nodes } => *nodes,
            _ => None,
        }
    }
}

/// One pod of the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct PodState {
    /// Pod name.
    pub name: String,
    /// Pod uid (precondition for label patches).
    pub uid: String,
    /// The `Ready` condition is True.
    pub ready: bool,
    /// When it is not Ready: since when, by the `Ready` condition's `lastTransitionTime` (it
    /// has been NotReady without a break since then).
    pub not_ready_since: Option<k8s_openapi::jiff::Timestamp>,
    /// `deletionTimestamp` is set.
    pub terminating: bool,
    /// Current value of the `memgraph.io/role` label.
    pub role_label: Option<String>,
    /// Restarts of its Memgraph container.
    pub restarts: i64,
    /// The restart count its role label was verified at (`memgraph.io/verified-restarts`).
    pub verified_restarts: Option<i64>,
    /// What Memgraph said.
    pub memgraph: MemgraphState,
}

/// Everything `plan` needs, gathered by `observe`.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The cluster object.
    pub cluster: ClusterMeta,
    /// Its spec.
    pub spec: MemgraphClusterSpec,
    /// Its current status.
    pub status: MemgraphClusterStatus,
    /// Owned objects that exist, with the desired-state hash they were applied with.
    pub objects: BTreeMap<ObjectKey, Option<String>>,
    /// Storage of the volume claim template of each existing StatefulSet, by name.
    pub storage: BTreeMap<String, StorageSpec>,
    /// Pods of the cluster by instance.
    pub pods: BTreeMap<Instance, PodState>,
    /// Secrets the spec refers to that exist, with their keys.
    pub secrets: BTreeMap<String, BTreeSet<String>>,
    /// A snapshot of this cluster is being taken.
    pub snapshot_running: bool,
    /// Live checks of this cluster are running (see `plan::validation`).
    pub validation_running: bool,
    /// Live checks that finished and whose result is not written yet.
    pub validation_done: Option<super::plan::validation::ValidationDone>,
    /// An id for a test node, in case a replication test is claimed (drawn by the reconcile,
    /// which holds the source of randomness; hex).
    pub fresh_test_id: String,
    /// Whether the backup agent's key Secret exists (looked for only with backups on).
    pub agent_key_exists: bool,
    /// A key drawn for the agent Secret, in case it must be created (filled by the reconcile,
    /// which holds the source of randomness; hex).
    pub fresh_agent_key: String,
    /// Replicas whose node count stood still while the MAIN could not report on them (filled
    /// by [`super::progress::Progress::note`]).
    pub stalls: BTreeMap<u32, super::progress::Stall>,
    /// When this observation started (set by the reconcile): an instance whose probe failed
    /// has not answered since then.
    pub started: Option<k8s_openapi::jiff::Timestamp>,
    /// What the health probe beside the reconciles found about the MAIN held in status.
    pub probe: crate::reconcile::main_probe::ProbeView,
}
