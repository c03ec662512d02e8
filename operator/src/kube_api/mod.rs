//! The `Kube` trait: the operator's only way to the Kubernetes API (DESIGN §3).
//!
//! Production uses [`KubeClient`] on a `kube::Client`; the simulation implements the same trait
//! on an in-memory API server. Methods take plain values so that both sides stay small.

mod client;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::api::MemgraphClusterStatus;

pub use client::KubeClient;
pub(crate) use client::classify;

/// A namespaced Kubernetes kind the operator reads or writes (StatefulSet, Service, Pod,
/// PodDisruptionBudget, PersistentVolumeClaim, Secret, MemgraphCluster).
pub trait KubeObject:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<T> KubeObject for T where
    T: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + fmt::Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// What went wrong with an API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeErrorKind {
    /// The object does not exist.
    NotFound,
    /// A precondition (resourceVersion, uid) or a conflicting field owner refused the change.
    Conflict,
    /// The API server refused the request for another reason (HTTP status code).
    Api(u16),
    /// The API server could not be reached or did not answer in time.
    Transport,
    /// An object could not be encoded or decoded.
    Invalid,
}

/// A failed API call: the operation, the object and the cause.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{operation} {kind} {namespace}/{name}: {message}")]
pub struct KubeError {
    /// What was attempted (`get`, `apply`, `delete`, ...).
    pub operation: &'static str,
    /// Kind of the object.
    pub kind: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object (empty for lists).
    pub name: String,
    /// Classification of the failure.
    pub error: KubeErrorKind,
    /// The server's or transport's message.
    pub message: String,
}

impl KubeError {
    /// Whether the object did not exist.
    pub fn is_not_found(&self) -> bool {
        self.error == KubeErrorKind::NotFound
    }

    /// Whether a precondition or ownership conflict refused the change (retry after observing).
    pub fn is_conflict(&self) -> bool {
        self.error == KubeErrorKind::Conflict
    }
}

/// Severity of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum EventType {
    /// Something the operator did or saw that needs no attention.
    Normal,
    /// A problem a person may have to act on.
    Warning,
}

/// An event about a `MemgraphCluster` (shown by `kubectl describe` and `kubectl events`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterEvent {
    /// The cluster the event is about.
    #[serde(skip)]
    pub regarding: ObjectReference,
    /// Normal or Warning.
    pub type_: EventType,
    /// Short PascalCase reason, such as `ReplicaRegistered`.
    pub reason: String,
    /// What the operator did, such as `RegisterReplica`.
    pub action: String,
    /// Human-readable details.
    pub note: String,
}

/// Label changes for a pod: `Some(value)` sets a label, `None` removes it.
pub type LabelPatch = BTreeMap<String, Option<String>>;

/// Access to the Kubernetes API, as the operator needs it.
#[async_trait]
pub trait Kube: Send + Sync {
    /// Read one object; `Ok(None)` when it does not exist.
    async fn get<T: KubeObject>(&self, namespace: &str, name: &str) -> Result<Option<T>, KubeError>;

    /// List the objects of a kind whose labels include all of `labels`.
    async fn list<T: KubeObject>(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<T>, KubeError>;

    /// Create or update an object by server-side apply with field manager `memgraph-operator`,
    /// forcing ownership of the fields it sets. Returns the object as stored.
    async fn apply<T: KubeObject>(&self, object: &T) -> Result<T, KubeError>;

    /// Delete an object (background propagation). Deleting what does not exist succeeds.
    async fn delete<T: KubeObject>(&self, namespace: &str, name: &str) -> Result<(), KubeError>;

    /// Delete a pod gracefully, only if it is still the pod with `uid`: one recreated since it
    /// was observed is left alone. A pod that is gone, or replaced, counts as deleted.
    async fn delete_pod(&self, namespace: &str, pod: &str, uid: &str) -> Result<(), KubeError>;

    /// Replace the status of a `MemgraphCluster` (server-side apply on the status subresource).
    /// With `resource_version`, only if the cluster still has it: a status that claims
    /// scheduled work must not be written from an old view.
    async fn patch_status(
        &self,
        namespace: &str,
        name: &str,
        status: &MemgraphClusterStatus,
        resource_version: Option<&str>,
    ) -> Result<(), KubeError>;

    /// Change labels of a pod, but only if it is still the pod with `uid`: a pod recreated since
    /// it was observed must not inherit a role it was never verified for.
    async fn patch_pod_labels(
        &self,
        namespace: &str,
        pod: &str,
        uid: &str,
        labels: &LabelPatch,
    ) -> Result<(), KubeError>;

    /// Set the finalizers of a `MemgraphCluster`, only if it still has `resource_version`.
    async fn set_finalizers(
        &self,
        namespace: &str,
        name: &str,
        finalizers: &[String],
        resource_version: &str,
    ) -> Result<(), KubeError>;

    /// Publish an event about a cluster. Failing to publish is reported but never blocks work.
    async fn publish_event(&self, event: &ClusterEvent) -> Result<(), KubeError>;
}

/// The body of a pod label patch: a JSON merge patch carrying the uid precondition.
pub fn pod_label_patch_body(uid: &str, labels: &LabelPatch) -> serde_json::Value {
    serde_json::json!({"metadata": {"uid": uid, "labels": labels}})
}

/// The body of a finalizer patch: a JSON merge patch with the resourceVersion precondition.
pub fn finalizer_patch_body(finalizers: &[String], resource_version: &str) -> serde_json::Value {
    serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}})
}
