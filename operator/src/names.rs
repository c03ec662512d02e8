//! Names, labels and addresses of everything the operator creates: the API contract of DESIGN §2.

use std::collections::BTreeMap;

/// Bolt port of every Memgraph container and client Service.
pub const BOLT_PORT: i32 = 7687;
/// Replication port every replica listens on (`SET REPLICATION ROLE TO REPLICA WITH PORT`).
pub const REPLICATION_PORT: i32 = 10000;
/// Mount point of the data volume, Memgraph's `--data-directory`.
pub const DATA_DIR: &str = "/var/lib/memgraph";
/// Name of the volumeClaimTemplate (so PVCs are `data-POD`).
pub const DATA_VOLUME: &str = "data";
/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "memgraph-operator";
/// Finalizer that lets the operator drop replica registrations before deletion.
pub const FINALIZER: &str = "memgraph.io/finalizer";

/// `app.kubernetes.io/name`: always `memgraph`.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the cluster's name.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: `write` or `read`.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by`: `memgraph-operator`.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `memgraph.io/read-index`: `N` on the pods of read replica N.
pub const LABEL_READ_INDEX: &str = "memgraph.io/read-index";
/// `memgraph.io/role`: `main` or `replica`, set on pods only after the role is verified.
pub const LABEL_ROLE: &str = "memgraph.io/role";
/// `memgraph.io/verified-restarts`: the container restart count of the pod when its role was
/// verified. A role label is good only for the process it was verified on: a container that
/// restarted since (perhaps on an emptied volume) has not been verified.
pub const LABEL_VERIFIED_RESTARTS: &str = "memgraph.io/verified-restarts";
/// Value of [`LABEL_ROLE`] on the pod verified as MAIN.
pub const ROLE_MAIN: &str = "main";
/// Value of [`LABEL_ROLE`] on pods verified as registered, healthy replicas.
pub const ROLE_REPLICA: &str = "replica";

/// Which StatefulSet an instance belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Instance {
    /// The write StatefulSet `NAME-write`.
    Write,
    /// Read replica `N`: StatefulSet `NAME-read-N`.
    Read(u32),
}

impl Instance {
    /// `write` or `read`, the component label value.
    pub fn component(self) -> &'static str {
        match self {
            Instance::Write => "write",
            Instance::Read(_) => "read",
        }
    }

    /// Kubernetes spelling used in status: `write`, `read-0`, ...
    pub fn status_name(self) -> String {
        match self {
            Instance::Write => "write".to_owned(),
            Instance::Read(n) => format!("read-{n}"),
        }
    }

    /// Parse a status name (`write`, `read-N`) back into an instance.
    pub fn from_status_name(name: &str) -> Option<Self> {
        if name == "write" {
            return Some(Instance::Write);
        }
        Self::from_replica_name(&name.replacen("read-", "read_", 1)).filter(|_| name.starts_with("read-"))
    }

    /// Name under which the instance is registered as a replica in Memgraph: `read_N`, or `write`
    /// (after a failover). Memgraph replica names cannot contain `-`.
    pub fn replica_name(self) -> String {
        match self {
            Instance::Write => "write".to_owned(),
            Instance::Read(n) => format!("read_{n}"),
        }
    }

    /// Parse a Memgraph replica name back into an instance, if it is one the operator uses.
    pub fn from_replica_name(name: &str) -> Option<Self> {
        if name == "write" {
            return Some(Instance::Write);
        }
        let index = name.strip_prefix("read_")?;
        // Reject forms like `read_01` or `read_+1` so the mapping stays one-to-one.
        if index.is_empty() || (index.len() > 1 && index.starts_with('0')) || !index.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        index.parse().ok().map(Instance::Read)
    }
}

/// Names and addresses of one cluster's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNames {
    /// Cluster (custom resource) name.
    pub cluster: String,
    /// Namespace of the cluster and everything it owns.
    pub namespace: String,
}

impl ClusterNames {
    /// Names for cluster `cluster` in `namespace`.
    pub fn new(cluster: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self { cluster: cluster.into(), namespace: namespace.into() }
    }

    /// StatefulSet of an instance: `NAME-write` or `NAME-read-N`.
    pub fn statefulset(&self, instance: Instance) -> String {
        match instance {
            Instance::Write => format!("{}-write", self.cluster),
            Instance::Read(n) => format!("{}-read-{n}", self.cluster),
        }
    }

    /// The instance's only pod: `NAME-write-0` or `NAME-read-N-0`.
    pub fn pod(&self, instance: Instance) -> String {
        format!("{}-0", self.statefulset(instance))
    }

    /// Secret holding the key that signs the operator's requests to the backup agent.
    pub fn backup_agent_secret(&self) -> String {
        format!("{}-backup-agent", self.cluster)
    }

    /// Headless Service giving the pod its DNS name: `NAME-write-hl` or `NAME-read-N`.
    pub fn headless_service(&self, instance: Instance) -> String {
        match instance {
            Instance::Write => format!("{}-write-hl", self.cluster),
            Instance::Read(_) => self.statefulset(instance),
        }
    }

    /// PersistentVolumeClaim of the instance's data: `data-NAME-write-0`, `data-NAME-read-N-0`.
    pub fn pvc(&self, instance: Instance) -> String {
        format!("{DATA_VOLUME}-{}", self.pod(instance))
    }

    /// Client Service for writes: `NAME-write`.
    pub fn write_service(&self) -> String {
        format!("{}-write", self.cluster)
    }

    /// Client Service for reads: `NAME-read`.
    pub fn read_service(&self) -> String {
        format!("{}-read", self.cluster)
    }

    /// PodDisruptionBudget of the read pods: `NAME-read`.
    pub fn read_pdb(&self) -> String {
        self.read_service()
    }

    /// Fully qualified DNS name of the instance's pod.
    pub fn pod_host(&self, instance: Instance) -> String {
        format!("{}.{}.{}.svc.cluster.local", self.pod(instance), self.headless_service(instance), self.namespace)
    }

    /// `host:7687` for Bolt connections to the pod.
    pub fn bolt_address(&self, instance: Instance) -> String {
        format!("{}:{BOLT_PORT}", self.pod_host(instance))
    }

    /// `host:10000`, the address the MAIN registers the replica at.
    pub fn replication_address(&self, instance: Instance) -> String {
        format!("{}:{REPLICATION_PORT}", self.pod_host(instance))
    }

    /// Labels every object of this cluster carries.
    pub fn common_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), "memgraph".to_owned()),
            (LABEL_INSTANCE.to_owned(), self.cluster.clone()),
            (LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned()),
        ])
    }

    /// Labels of an instance's StatefulSet and pod template.
    pub fn instance_labels(&self, instance: Instance) -> BTreeMap<String, String> {
        let mut labels = self.common_labels();
        labels.insert(LABEL_COMPONENT.to_owned(), instance.component().to_owned());
        if let Instance::Read(n) = instance {
            labels.insert(LABEL_READ_INDEX.to_owned(), n.to_string());
        }
        labels
    }

    /// Selector of an instance's pod (immutable once the StatefulSet exists).
    pub fn instance_selector(&self, instance: Instance) -> BTreeMap<String, String> {
        let mut selector = self.cluster_selector();
        selector.insert(LABEL_COMPONENT.to_owned(), instance.component().to_owned());
        if let Instance::Read(n) = instance {
            selector.insert(LABEL_READ_INDEX.to_owned(), n.to_string());
        }
        selector
    }

    /// Selector of every pod of the cluster.
    pub fn cluster_selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), "memgraph".to_owned()),
            (LABEL_INSTANCE.to_owned(), self.cluster.clone()),
        ])
    }

    /// Selector of all read pods.
    pub fn read_selector(&self) -> BTreeMap<String, String> {
        let mut selector = self.cluster_selector();
        selector.insert(LABEL_COMPONENT.to_owned(), "read".to_owned());
        selector
    }

    /// Selector of a client Service: the cluster's pods carrying a verified role label.
    pub fn role_selector(&self, role: &str) -> BTreeMap<String, String> {
        let mut selector = self.cluster_selector();
        selector.insert(LABEL_ROLE.to_owned(), role.to_owned());
        selector
    }
}

/// Render a label map as a selector string (`k=v,k=v`).
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let n = ClusterNames::new("c", "ns");
        let cases = [
            (Instance::Write, "c-write", "c-write-0", "c-write-hl", "data-c-write-0"),
            (Instance::Read(0), "c-read-0", "c-read-0-0", "c-read-0", "data-c-read-0-0"),
            (Instance::Read(12), "c-read-12", "c-read-12-0", "c-read-12", "data-c-read-12-0"),
        ];
        for (instance, sts, pod, hl, pvc) in cases {
            assert_eq!(n.statefulset(instance), sts);
            assert_eq!(n.pod(instance), pod);
            assert_eq!(n.headless_service(instance), hl);
            assert_eq!(n.pvc(instance), pvc);
        }
        assert_eq!(n.write_service(), "c-write");
        assert_eq!(n.read_service(), "c-read");
        assert_eq!(n.replication_address(Instance::Read(2)), "c-read-2-0.c-read-2.ns.svc.cluster.local:10000");
        assert_eq!(n.bolt_address(Instance::Write), "c-write-0.c-write-hl.ns.svc.cluster.local:7687");
    }

    #[test]
    fn replica_names_round_trip_and_reject_foreign_names() {
        for instance in [Instance::Write, Instance::Read(0), Instance::Read(7), Instance::Read(31)] {
            assert_eq!(Instance::from_replica_name(&instance.replica_name()), Some(instance));
            assert_eq!(Instance::from_status_name(&instance.status_name()), Some(instance));
        }
        for foreign in ["read_0", "read-", "read-01", "read-x", "main", "READ-1", "read-+1", ""] {
            assert_eq!(Instance::from_status_name(foreign), None, "{foreign}");
        }
        for foreign in ["read-0", "read_", "read_01", "read_x", "main", "READ_1", "read_+1", ""] {
            assert_eq!(Instance::from_replica_name(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn selectors_are_subsets_of_labels() {
        let n = ClusterNames::new("c", "ns");
        for instance in [Instance::Write, Instance::Read(3)] {
            let labels = n.instance_labels(instance);
            for (k, v) in n.instance_selector(instance) {
                assert_eq!(labels.get(&k), Some(&v));
            }
        }
        assert_eq!(
            selector_string(&n.read_selector()),
            "app.kubernetes.io/component=read,app.kubernetes.io/instance=c,app.kubernetes.io/name=memgraph"
        );
    }
}
