//! Desired objects tagged with a hash of their content, so the operator applies only what
//! changed: a healthy cluster costs no API writes.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use super::observed::{ObjectKey, ObjectKind};

/// Annotation holding the hash of the desired state an object was last applied with.
pub const HASH_ANNOTATION: &str = "memgraph.io/applied-hash";

/// An object the operator wants to exist.
#[derive(Debug, Clone, PartialEq)]
pub enum DesiredObject {
    /// A StatefulSet.
    StatefulSet(Box<StatefulSet>),
    /// A Service.
    Service(Box<Service>),
    /// A PodDisruptionBudget.
    PodDisruptionBudget(Box<PodDisruptionBudget>),
}

/// 64-bit FNV-1a: stable across builds and platforms, unlike `std`'s hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn stamp<T: Serialize>(object: &T, meta: &mut ObjectMeta) -> String {
    // Serialization of these types is deterministic (struct field order, BTreeMap keys).
    let hash = format!("{:016x}", fnv1a(&serde_json::to_vec(object).unwrap_or_default()));
    meta.annotations.get_or_insert_with(Default::default).insert(HASH_ANNOTATION.to_owned(), hash.clone());
    hash
}

impl DesiredObject {
    /// Wrap a StatefulSet, stamping its hash.
    pub fn statefulset(mut object: StatefulSet) -> Self {
        let copy = object.clone();
        stamp(&copy, &mut object.metadata);
        DesiredObject::StatefulSet(Box::new(object))
    }

    /// Wrap a Service, stamping its hash.
    pub fn service(mut object: Service) -> Self {
        let copy = object.clone();
        stamp(&copy, &mut object.metadata);
        DesiredObject::Service(Box::new(object))
    }

    /// Wrap a PodDisruptionBudget, stamping its hash.
    pub fn pdb(mut object: PodDisruptionBudget) -> Self {
        let copy = object.clone();
        stamp(&copy, &mut object.metadata);
        DesiredObject::PodDisruptionBudget(Box::new(object))
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            DesiredObject::StatefulSet(o) => &o.metadata,
            DesiredObject::Service(o) => &o.metadata,
            DesiredObject::PodDisruptionBudget(o) => &o.metadata,
        }
    }

    /// Kind and name.
    pub fn key(&self) -> ObjectKey {
        let kind = match self {
            DesiredObject::StatefulSet(_) => ObjectKind::StatefulSet,
            DesiredObject::Service(_) => ObjectKind::Service,
            DesiredObject::PodDisruptionBudget(_) => ObjectKind::PodDisruptionBudget,
        };
        ObjectKey::new(kind, self.meta().name.clone().unwrap_or_default())
    }

    /// The hash stamped on it.
    pub fn hash(&self) -> Option<&str> {
        self.meta().annotations.as_ref()?.get(HASH_ANNOTATION).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::{BuildContext, statefulset, test_support::cluster_with};
    use crate::names::Instance;

    #[test]
    fn hash_changes_with_content_only() {
        let hash = |replicas_log: crate::api::LogLevel| {
            let cluster = cluster_with(|s| s.read.config.log_level = replicas_log);
            let ctx = BuildContext::new(&cluster).expect("context");
            DesiredObject::statefulset(statefulset(&ctx, Instance::Read(0))).hash().map(str::to_owned)
        };
        let a = hash(crate::api::LogLevel::Warning);
        assert_eq!(a, hash(crate::api::LogLevel::Warning));
        assert_ne!(a, hash(crate::api::LogLevel::Debug));
        assert_eq!(a.as_ref().map(String::len), Some(16));
    }
}
