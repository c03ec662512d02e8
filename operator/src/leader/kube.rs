//! [`LeaseApi`] on a real API server: `coordination.k8s.io/v1` Leases through `kube::Api`.
//! Writes are `create` and `replace` (PUT with the resourceVersion read), so two candidates
//! racing for the same Lease cannot both succeed.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, Resource};

use super::{LeaseApi, LeaseRecord, StoredLease};
use crate::kube_api::KubeError;
use crate::names::FIELD_MANAGER;

/// The operator's Lease in its own namespace.
#[derive(Clone)]
pub struct KubeLeases {
    api: Api<Lease>,
    namespace: String,
    name: String,
}

impl KubeLeases {
    /// The Lease `name` in `namespace`.
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self { api: Api::namespaced(client, namespace), namespace: namespace.to_owned(), name: name.to_owned() }
    }

    fn fail(&self, operation: &'static str, error: kube::Error) -> KubeError {
        let (error, message) = crate::kube_api::classify(error);
        KubeError {
            operation,
            kind: Lease::kind(&()).into_owned(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            error,
            message,
        }
    }

    fn object(&self, record: &LeaseRecord, version: Option<&str>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version: version.map(str::to_owned),
                labels: Some([("app.kubernetes.io/managed-by".to_owned(), FIELD_MANAGER.to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(to_spec(record)),
        }
    }
}

/// The Lease spec of a record.
pub fn to_spec(record: &LeaseRecord) -> LeaseSpec {
    LeaseSpec {
        holder_identity: record.holder.clone(),
        lease_duration_seconds: Some(i32::try_from(record.duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: record.acquired.map(MicroTime),
        renew_time: record.renewed.map(MicroTime),
        lease_transitions: Some(record.transitions),
        ..LeaseSpec::default()
    }
}

/// The record of a Lease spec (a Lease without a spec reads as released).
pub fn from_spec(spec: Option<&LeaseSpec>) -> LeaseRecord {
    let spec = spec.cloned().unwrap_or_default();
    LeaseRecord {
        holder: spec.holder_identity.filter(|h| !h.is_empty()),
        duration: Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0)),
        acquired: spec.acquire_time.map(|t| t.0),
        renewed: spec.renew_time.map(|t| t.0),
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

fn stored(lease: Lease) -> StoredLease {
    StoredLease { record: from_spec(lease.spec.as_ref()), version: lease.metadata.resource_version.unwrap_or_default() }
}

#[async_trait]
impl LeaseApi for KubeLeases {
    async fn get(&self) -> Result<Option<StoredLease>, KubeError> {
        match self.api.get_opt(&self.name).await {
            Ok(lease) => Ok(lease.map(stored)),
            Err(e) => Err(self.fail("get", e)),
        }
    }

    async fn create(&self, record: &LeaseRecord) -> Result<String, KubeError> {
        let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
        match self.api.create(&params, &self.object(record, None)).await {
            Ok(lease) => Ok(lease.metadata.resource_version.unwrap_or_default()),
            Err(e) => Err(self.fail("create", e)),
        }
    }

    async fn replace(&self, record: &LeaseRecord, version: &str) -> Result<String, KubeError> {
        let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
        match self.api.replace(&self.name, &params, &self.object(record, Some(version))).await {
            Ok(lease) => Ok(lease.metadata.resource_version.unwrap_or_default()),
            Err(e) => Err(self.fail("replace", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn a_record_survives_the_lease_spec() {
        let record = LeaseRecord {
            holder: Some("memgraph-operator-7d9f-abc".into()),
            duration: Duration::from_secs(15),
            acquired: Some(Timestamp::UNIX_EPOCH),
            renewed: Timestamp::from_second(1_767_225_600).ok(),
            transitions: 3,
        };
        assert_eq!(from_spec(Some(&to_spec(&record))), record);
        let released = from_spec(Some(&LeaseSpec { holder_identity: Some(String::new()), ..LeaseSpec::default() }));
        assert_eq!(released.holder, None);
        assert_eq!(from_spec(None).holder, None);
    }
}
