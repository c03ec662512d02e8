use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::{BuildContext, pod_template};
use crate::api::{PvcRetention, StorageSpec};
use crate::names::{DATA_VOLUME, Instance};

fn data_claim(ctx: &BuildContext<'_>, instance: Instance, storage: &StorageSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            labels: Some(ctx.names.instance_labels(instance)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            // An empty class name would disable dynamic provisioning; the API documents empty as
            // "use the default class", so it is left out.
            storage_class_name: storage.storage_class_name.clone().filter(|c| !c.is_empty()),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), storage.size.clone())].into()),
                limits: None,
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// Annotation recording the storage a StatefulSet's volume claim template was created with:
/// Kubernetes never lets it change, so the operator must know it.
pub const STORAGE_ANNOTATION: &str = "memgraph.io/storage";

/// The storage the spec asks for an instance.
pub fn storage_of(spec: &crate::api::MemgraphClusterSpec, instance: Instance) -> &StorageSpec {
    match instance {
        Instance::Write => &spec.write.storage,
        Instance::Read(_) => &spec.read.storage,
    }
}

/// The StatefulSet of one instance: `NAME-write` or `NAME-read-N`, always one pod.
pub fn statefulset(ctx: &BuildContext<'_>, instance: Instance) -> StatefulSet {
    statefulset_with_storage(ctx, instance, storage_of(ctx.spec, instance))
}

/// The StatefulSet of one instance with the given volume claim storage (that of an existing
/// StatefulSet when the spec asks for a change Kubernetes would refuse).
pub fn statefulset_with_storage(ctx: &BuildContext<'_>, instance: Instance, storage: &StorageSpec) -> StatefulSet {
    let spec = ctx.spec;
    let when_deleted = match instance {
        // The MAIN's data is never deleted with its StatefulSet.
        Instance::Write => PvcRetention::Retain,
        Instance::Read(_) => spec.read.pvc_retention,
    };
    let when_deleted = match when_deleted {
        PvcRetention::Retain => "Retain",
        PvcRetention::Delete => "Delete",
    };
    let mut metadata = ctx.metadata(ctx.names.statefulset(instance), ctx.names.instance_labels(instance));
    metadata.annotations =
        Some([(STORAGE_ANNOTATION.to_owned(), serde_json::to_string(storage).unwrap_or_default())].into());
    StatefulSet {
        metadata,
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(ctx.names.headless_service(instance)),
            selector: LabelSelector {
                match_labels: Some(ctx.names.instance_selector(instance)),
                match_expressions: None,
            },
            template: pod_template(ctx, instance),
            volume_claim_templates: Some(vec![data_claim(ctx, instance, storage)]),
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(when_deleted.to_owned()),
                when_scaled: Some("Retain".to_owned()),
            }),
            pod_management_policy: Some("OrderedReady".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: None,
            }),
            revision_history_limit: Some(5),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MemgraphClusterSpec;
    use crate::builders::test_support::cluster_with;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn build(change: impl FnOnce(&mut MemgraphClusterSpec), instance: Instance) -> StatefulSetSpec {
        let cluster = cluster_with(change);
        let ctx = BuildContext::new(&cluster).expect("context");
        statefulset(&ctx, instance).spec.expect("spec")
    }

    fn claim(sts: &StatefulSetSpec) -> PersistentVolumeClaimSpec {
        let templates = sts.volume_claim_templates.clone().expect("claim templates");
        assert_eq!(templates.len(), 1);
        assert_eq!(templates[0].metadata.name.as_deref(), Some("data"));
        templates[0].spec.clone().expect("claim spec")
    }

    #[test]
    fn one_pod_per_statefulset_with_its_headless_service() {
        for (instance, service, selector_len) in
            [(Instance::Write, "c-write-hl", 3), (Instance::Read(4), "c-read-4", 4)]
        {
            let sts = build(|_| {}, instance);
            assert_eq!(sts.replicas, Some(1));
            assert_eq!(sts.service_name.as_deref(), Some(service));
            let selector = sts.selector.match_labels.clone().expect("selector");
            assert_eq!(selector.len(), selector_len);
            let pod_labels = sts.template.metadata.and_then(|m| m.labels).expect("labels");
            for (k, v) in &selector {
                assert_eq!(pod_labels.get(k), Some(v), "template must match selector");
            }
        }
        let read = build(|_| {}, Instance::Read(4));
        let pod_labels = read.template.metadata.and_then(|m| m.labels).expect("labels");
        assert_eq!(pod_labels.get("memgraph.io/read-index").map(String::as_str), Some("4"));
        assert_eq!(pod_labels.get("app.kubernetes.io/component").map(String::as_str), Some("read"));
    }

    #[test]
    fn storage_fields_shape_the_claim() {
        type Case = (fn(&mut MemgraphClusterSpec), Instance, &'static str, Option<&'static str>);
        let cases: Vec<Case> = vec![
            (|_| {}, Instance::Write, "10Gi", None),
            (|_| {}, Instance::Read(0), "10Gi", None),
            (|s| s.write.storage.size = Quantity("50Gi".into()), Instance::Write, "50Gi", None),
            (|s| s.write.storage.size = Quantity("50Gi".into()), Instance::Read(0), "10Gi", None),
            (
                |s| s.read.storage.storage_class_name = Some("fast-ssd".into()),
                Instance::Read(1),
                "10Gi",
                Some("fast-ssd"),
            ),
            (|s| s.read.storage.storage_class_name = Some("fast-ssd".into()), Instance::Write, "10Gi", None),
            (|s| s.write.storage.storage_class_name = Some(String::new()), Instance::Write, "10Gi", None),
        ];
        for (i, (change, instance, size, class)) in cases.into_iter().enumerate() {
            let claim = claim(&build(change, instance));
            let requested = claim.resources.and_then(|r| r.requests).and_then(|r| r.get("storage").cloned());
            assert_eq!(requested, Some(Quantity(size.into())), "case {i}");
            assert_eq!(claim.storage_class_name.as_deref(), class, "case {i}");
            assert_eq!(claim.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
        }
    }

    #[test]
    fn pvc_retention_applies_to_reads_only() {
        let policy = |change: fn(&mut MemgraphClusterSpec), instance| {
            build(change, instance)
                .persistent_volume_claim_retention_policy
                .and_then(|p| p.when_deleted)
                .expect("policy")
        };
        assert_eq!(policy(|_| {}, Instance::Read(0)), "Retain");
        assert_eq!(policy(|s| s.read.pvc_retention = PvcRetention::Delete, Instance::Read(0)), "Delete");
        assert_eq!(policy(|s| s.read.pvc_retention = PvcRetention::Delete, Instance::Write), "Retain");
    }
}
