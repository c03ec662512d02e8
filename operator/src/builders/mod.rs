//! Desired state: pure functions from a `MemgraphCluster` to the Kubernetes objects the operator
//! creates (DESIGN §2). No I/O; the reconcile applies what these return.

pub mod agent;
mod pdb;
mod pod;
mod services;
mod statefulset;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use thiserror::Error;

use crate::api::{MemgraphCluster, MemgraphClusterSpec};
use crate::names::{ClusterNames, Instance};

pub use pdb::read_pdb;
pub use pod::{SYSCTL_IMAGE, memgraph_args, pod_template};
pub use services::{headless_service, read_service, write_service};
pub use statefulset::{STORAGE_ANNOTATION, statefulset, statefulset_with_storage, storage_of};

/// Why objects could not be built for a cluster.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BuildError {
    /// The custom resource has no namespace (it is namespaced).
    #[error("MemgraphCluster '{0}' has no metadata.namespace")]
    MissingNamespace(String),
    /// The custom resource has no uid, so owner references cannot point at it.
    #[error("MemgraphCluster '{0}' has no metadata.uid; objects are built only for clusters read from the API server")]
    MissingUid(String),
}

/// What every builder needs: the spec, the names and the owner reference.
#[derive(Debug, Clone)]
pub struct BuildContext<'a> {
    /// The cluster's spec.
    pub spec: &'a MemgraphClusterSpec,
    /// Names of the cluster's objects.
    pub names: ClusterNames,
    /// Controller owner reference to the cluster, so garbage collection removes its objects.
    pub owner: OwnerReference,
    /// The write pod restores `spec.bootstrap.fromBackup` before Memgraph starts (a new cluster
    /// whose bootstrap is not completed).
    pub restore: bool,
}

impl<'a> BuildContext<'a> {
    /// Context for a cluster read from the API server.
    pub fn new(cluster: &'a MemgraphCluster) -> Result<Self, BuildError> {
        let name = cluster.name_any();
        let namespace = cluster.namespace().ok_or_else(|| BuildError::MissingNamespace(name.clone()))?;
        let mut owner = cluster.controller_owner_ref(&()).ok_or_else(|| BuildError::MissingUid(name.clone()))?;
        owner.block_owner_deletion = Some(true);
        // A cluster read as a file (render) is new: it would be restored.
        let restore = cluster.spec.bootstrap.as_ref().is_some_and(|b| b.from_backup.is_some())
            && cluster.status.as_ref().and_then(|s| s.bootstrap.as_ref()).is_none_or(|b| b.state == "Restoring");
        Ok(Self { spec: &cluster.spec, names: ClusterNames::new(name, namespace), owner, restore })
    }

    /// Context from its parts, for callers that already hold the names and owner reference.
    pub fn from_parts(spec: &'a MemgraphClusterSpec, names: ClusterNames, owner: OwnerReference) -> Self {
        Self { spec, names, owner, restore: false }
    }

    /// Metadata of an owned object: name, namespace, labels and the owner reference.
    pub(crate) fn metadata(&self, name: String, labels: std::collections::BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.names.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.owner.clone()]),
            ..Default::default()
        }
    }

    /// Instances the spec wants: the write instance and read replicas `0..replicas`.
    pub fn desired_instances(&self) -> Vec<Instance> {
        let reads = u32::try_from(self.spec.read.replicas).unwrap_or(0);
        std::iter::once(Instance::Write).chain((0..reads).map(Instance::Read)).collect()
    }
}

/// Every object of a cluster, in the order the operator creates them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DesiredObjects {
    /// Write StatefulSet first, then one per read replica in index order.
    pub statefulsets: Vec<StatefulSet>,
    /// Write, write-hl, read, then the per-replica headless Services.
    pub services: Vec<Service>,
    /// The read PodDisruptionBudget.
    pub pdbs: Vec<PodDisruptionBudget>,
}

/// Build every object the spec asks for.
pub fn desired_objects(cluster: &MemgraphCluster) -> Result<DesiredObjects, BuildError> {
    let ctx = BuildContext::new(cluster)?;
    let instances = ctx.desired_instances();
    let mut services = vec![write_service(&ctx), headless_service(&ctx, Instance::Write), read_service(&ctx)];
    services.extend(instances.iter().filter(|i| matches!(i, Instance::Read(_))).map(|&i| headless_service(&ctx, i)));
    Ok(DesiredObjects {
        statefulsets: instances.iter().map(|&i| statefulset(&ctx, i)).collect(),
        services,
        pdbs: vec![read_pdb(&ctx)],
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// A cluster as the API server would return it, after `change` is applied to the default spec.
    pub fn cluster_with(change: impl FnOnce(&mut MemgraphClusterSpec)) -> MemgraphCluster {
        let mut spec = MemgraphClusterSpec::default();
        change(&mut spec);
        let mut cluster = MemgraphCluster::new("c", spec);
        cluster.metadata.namespace = Some("ns".into());
        cluster.metadata.uid = Some("uid-1".into());
        cluster
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::cluster_with;
    use super::*;

    fn names<T: Resource>(objects: &[T]) -> Vec<String> {
        objects.iter().map(|o| o.meta().name.clone().unwrap_or_default()).collect()
    }

    #[test]
    fn every_object_of_design_section_2() {
        let objects = desired_objects(&cluster_with(|s| s.read.replicas = 3)).expect("build");
        assert_eq!(names(&objects.statefulsets), ["c-write", "c-read-0", "c-read-1", "c-read-2"]);
        assert_eq!(names(&objects.services), ["c-write", "c-write-hl", "c-read", "c-read-0", "c-read-1", "c-read-2"]);
        assert_eq!(names(&objects.pdbs), ["c-read"]);
        for meta in objects
            .statefulsets
            .iter()
            .map(|o| &o.metadata)
            .chain(objects.services.iter().map(|o| &o.metadata))
            .chain(objects.pdbs.iter().map(|o| &o.metadata))
        {
            assert_eq!(meta.namespace.as_deref(), Some("ns"));
            let owners = meta.owner_references.as_ref().expect("owner references");
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0].kind, "MemgraphCluster");
            assert_eq!(owners[0].api_version, "memgraph.io/v1alpha1");
            assert_eq!(owners[0].uid, "uid-1");
            assert_eq!(owners[0].controller, Some(true));
            assert_eq!(owners[0].block_owner_deletion, Some(true));
            let labels = meta.labels.as_ref().expect("labels");
            assert_eq!(labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some("memgraph-operator"));
            assert_eq!(labels.get("app.kubernetes.io/instance").map(String::as_str), Some("c"));
        }
    }

    #[test]
    fn replica_count_decides_read_objects() {
        for (replicas, sts, services) in [(0, 1, 3), (1, 2, 4), (5, 6, 8)] {
            let objects = desired_objects(&cluster_with(|s| s.read.replicas = replicas)).expect("build");
            assert_eq!(objects.statefulsets.len(), sts, "replicas={replicas}");
            assert_eq!(objects.services.len(), services, "replicas={replicas}");
            assert_eq!(objects.pdbs.len(), 1);
        }
    }

    #[test]
    fn refuses_clusters_without_namespace_or_uid() {
        let mut cluster = cluster_with(|_| {});
        cluster.metadata.uid = None;
        assert_eq!(desired_objects(&cluster), Err(BuildError::MissingUid("c".into())));
        cluster.metadata.namespace = None;
        assert_eq!(desired_objects(&cluster), Err(BuildError::MissingNamespace("c".into())));
    }
}
