//! `observe`: read the cluster's objects and pods through `Kube` and ask each ready Memgraph
//! instance for its role (and, on the MAIN, `SHOW REPLICAS`) through `Bolt`. A healthy cluster
//! costs one query per instance plus one `SHOW REPLICAS`; more is asked only when something is
//! off.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::{Resource, ResourceExt};

use super::ReconcileError;
use super::desired::HASH_ANNOTATION;
use super::observed::{ClusterMeta, MemgraphState, ObjectKey, ObjectKind, Observed, PodState};
use crate::api::MemgraphCluster;
use crate::builders::STORAGE_ANNOTATION;
use crate::kube_api::{Kube, KubeObject};
use crate::memgraph::{self, Bolt, Role};
use crate::names::{
    ClusterNames, FINALIZER, Instance, LABEL_COMPONENT, LABEL_READ_INDEX, LABEL_ROLE, LABEL_VERIFIED_RESTARTS,
};
use crate::validate::secret_references;

fn cluster_meta(cluster: &MemgraphCluster) -> ClusterMeta {
    let finalizers = cluster.finalizers().to_vec();
    ClusterMeta {
        name: cluster.name_any(),
        namespace: cluster.namespace().unwrap_or_default(),
        uid: cluster.uid().unwrap_or_default(),
        generation: cluster.metadata.generation,
        resource_version: cluster.resource_version().unwrap_or_default(),
        deleting: cluster.metadata.deletion_timestamp.is_some(),
        has_finalizer: finalizers.iter().any(|f| f == FINALIZER),
        other_finalizers: finalizers.into_iter().filter(|f| f != FINALIZER).collect(),
        created: cluster.metadata.creation_timestamp.as_ref().map(|t| t.0),
        backup_request: cluster.annotations().get(crate::reconcile::plan::backup::BACKUP_REQUEST_ANNOTATION).cloned(),
        switchover_request: cluster.annotations().get(crate::reconcile::plan::switchover::ANNOTATION).cloned(),
        reference: cluster.object_ref(&()),
    }
}

async fn owned<T: KubeObject, K: Kube>(
    kube: &K,
    names: &ClusterNames,
    kind: ObjectKind,
    into: &mut BTreeMap<ObjectKey, Option<String>>,
) -> Result<(), ReconcileError> {
    for object in kube.list::<T>(&names.namespace, &names.common_labels()).await? {
        let hash = object.annotations().get(HASH_ANNOTATION).cloned();
        into.insert(ObjectKey::new(kind, object.name_any()), hash);
    }
    Ok(())
}

fn instance_of(pod: &Pod) -> Option<Instance> {
    let labels = pod.labels();
    match labels.get(LABEL_COMPONENT).map(String::as_str) {
        Some("write") => Some(Instance::Write),
        Some("read") => labels.get(LABEL_READ_INDEX)?.parse().ok().map(Instance::Read),
        _ => None,
    }
}

fn pod_state(pod: &Pod) -> PodState {
    let condition =
        pod.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let ready = condition.is_some_and(|c| c.status == "True");
    PodState {
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
        ready,
        not_ready_since: condition.filter(|_| !ready).and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        role_label: pod.labels().get(LABEL_ROLE).cloned(),
        restarts: crate::reconcile::guard::restarts(pod),
        verified_restarts: pod.labels().get(LABEL_VERIFIED_RESTARTS).and_then(|v| v.parse().ok()),
        memgraph: MemgraphState::NotAsked,
    }
}

async fn ask(
    bolt: &dyn Bolt,
    address: &str,
    role_within: std::time::Duration,
    rows_within: std::time::Duration,
) -> (MemgraphState, tokio::time::Instant) {
    let state = match memgraph::replication_role_within(bolt, address, role_within).await {
        Err(e) => MemgraphState::Unreachable(e.to_string()),
        Ok(Role::Replica) => MemgraphState::Replica { nodes: None },
        Ok(Role::Main) => {
            let replicas = memgraph::show_replicas_within(bolt, address, rows_within).await.map_err(|e| e.to_string());
            MemgraphState::Main { replicas: Some(replicas), nodes: None }
        }
    };
    (state, tokio::time::Instant::now())
}

/// How old the MAIN's `SHOW REPLICAS` may be when the last instance has answered (or timed
/// out) before it is read again: the plan acts on the registrations as they are at the end of
/// the look, not as they were before a hung instance's timeout (a replica stuck then may be
/// healthy by now, and dropping it would be wrong).
const ROWS_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Probe timeout for an instance a failover is about to replace or is replacing: the health
/// probe's (a healthy Memgraph answers its role in milliseconds), since every round of the
/// failover waits on it.
pub const SUSPECT_PROBE: std::time::Duration = crate::reconcile::main_probe::PROBE_TIMEOUT;

/// Observe a cluster; `probe` is what the health probe found about the MAIN its status holds.
pub async fn observe<K: Kube>(
    kube: &K,
    bolt: &dyn Bolt,
    cluster: &MemgraphCluster,
    probe: crate::reconcile::main_probe::ProbeView,
) -> Result<Observed, ReconcileError> {
    let meta = cluster_meta(cluster);
    let names = ClusterNames::new(meta.name.clone(), meta.namespace.clone());
    let spec = cluster.spec.clone();

    let mut objects = BTreeMap::new();
    let mut storage = BTreeMap::new();
    if !meta.deleting {
        for sts in kube.list::<StatefulSet>(&names.namespace, &names.common_labels()).await? {
            let annotations = sts.annotations();
            objects.insert(
                ObjectKey::new(ObjectKind::StatefulSet, sts.name_any()),
                annotations.get(HASH_ANNOTATION).cloned(),
            );
            if let Some(stored) = annotations.get(STORAGE_ANNOTATION).and_then(|a| serde_json::from_str(a).ok()) {
                storage.insert(sts.name_any(), stored);
            }
        }
        owned::<Service, K>(kube, &names, ObjectKind::Service, &mut objects).await?;
        owned::<PodDisruptionBudget, K>(kube, &names, ObjectKind::PodDisruptionBudget, &mut objects).await?;
    }

    let mut pods = BTreeMap::new();
    for pod in kube.list::<Pod>(&names.namespace, &names.cluster_selector()).await? {
        if let Some(instance) = instance_of(&pod) {
            pods.insert(instance, pod_state(&pod));
        }
    }

    let mut secrets = BTreeMap::new();
    if !meta.deleting {
        for reference in secret_references(&spec) {
            if let Some(secret) = kube.get::<Secret>(&names.namespace, &reference.name).await? {
                let keys: BTreeSet<String> = secret
                    .data
                    .iter()
                    .flat_map(|d| d.keys().cloned())
                    .chain(secret.string_data.iter().flat_map(|d| d.keys().cloned()))
                    .collect();
                secrets.insert(reference.name, keys);
            }
        }
    }

    let backups_on = spec.snapshot.s3.as_ref().is_some_and(|s3| s3.enabled);
    let agent_key_exists = backups_on
        && !meta.deleting
        && kube.get::<Secret>(&names.namespace, &names.backup_agent_secret()).await?.is_some();

    // Memgraph: every ready instance at once (only the write pod while deleting), so one that
    // hangs costs the reconcile one probe timeout, not one per instance. Read pods are asked
    // for their replicas only when they unexpectedly are MAIN.
    let status = cluster.status.clone().unwrap_or_default();
    let held_as_main = super::plan::main_instance_in(&status);
    let asked: Vec<(Instance, String)> = pods
        .iter()
        .filter(|(instance, pod)| pod.ready && !pod.terminating && (!meta.deleting || **instance == held_as_main))
        .map(|(instance, _)| (*instance, names.bolt_address(*instance)))
        .collect();
    let version = crate::version::MemgraphVersion::from_image(&spec.write.image);
    let rows_within = memgraph::show_replicas_timeout(bolt, version);
    // An instance already found down (by a look, or by the health probe) is asked with a
    // shorter timeout: a failover waits on it otherwise, every round, for the full probe timeout.
    let suspect = |instance: Instance| {
        (instance == held_as_main && probe.failing_since.is_some())
            || status.failover.as_ref().is_some_and(|f| {
                f.intent.as_ref().is_some_and(|i| i.from == instance.status_name())
                    || (f.main_down_since.is_some() && instance == held_as_main)
            })
    };
    let probe_timeout = bolt.timeouts().probe;
    let answered = futures::future::join_all(asked.iter().map(|(instance, address)| {
        let role_within = if suspect(*instance) { probe_timeout.min(SUSPECT_PROBE) } else { probe_timeout };
        ask(bolt, address, role_within, rows_within)
    }))
    .await;
    // The held MAIN's registrations, read again when a slower instance kept the look going.
    let mut answers: Vec<MemgraphState> = Vec::with_capacity(answered.len());
    for ((state, at), (instance, address)) in answered.into_iter().zip(&asked) {
        let stale = *instance == held_as_main && at.elapsed() > ROWS_FRESH;
        answers.push(match state {
            MemgraphState::Main { replicas: Some(Ok(_)), nodes } if stale => {
                let replicas =
                    memgraph::show_replicas_within(bolt, address, rows_within).await.map_err(|e| e.to_string());
                MemgraphState::Main { replicas: Some(replicas), nodes }
            }
            other => other,
        });
    }
    for ((instance, _), answer) in asked.into_iter().zip(answers) {
        if let Some(pod) = pods.get_mut(&instance) {
            pod.memgraph = answer;
        }
    }

    // A MAIN without registrations may be new, or may have lost its volume: tell them apart by
    // whether it and the replicas hold data. The same when its registrations cannot be read
    // (2.21–3.0 block `SHOW REPLICAS` on an unreachable replica): holding data is then what
    // shows it is not an empty MAIN.
    let main_without_replicas = matches!(
        pods.get(&held_as_main).map(|p| &p.memgraph),
        Some(MemgraphState::Main { replicas: Some(Ok(rows)), .. }) if rows.is_empty()
    ) || matches!(
        pods.get(&held_as_main).map(|p| &p.memgraph),
        Some(MemgraphState::Main { replicas: Some(Err(_)), .. })
    );
    // A write pod that cannot report on its replicas at all (not ready, not answering, not a
    // MAIN): the replicas' counts, compared with each other, still show one that stopped
    // following (see `progress`).
    let main_silent = !matches!(pods.get(&held_as_main).map(|p| &p.memgraph), Some(MemgraphState::Main { .. }));
    let read_pods = pods.keys().any(|i| *i != held_as_main);
    if (main_without_replicas || main_silent) && read_pods && !meta.deleting {
        let counted: Vec<Instance> = pods
            .iter()
            .filter(|(_, pod)| matches!(pod.memgraph, MemgraphState::Main { .. } | MemgraphState::Replica { .. }))
            .map(|(instance, _)| *instance)
            .collect();
        let addresses: Vec<String> = counted.iter().map(|instance| names.bolt_address(*instance)).collect();
        let counts = futures::future::join_all(addresses.iter().map(|a| memgraph::node_count(bolt, a))).await;
        for (instance, count) in counted.into_iter().zip(counts) {
            if let Some(MemgraphState::Main { nodes, .. } | MemgraphState::Replica { nodes }) =
                pods.get_mut(&instance).map(|p| &mut p.memgraph)
            {
                *nodes = count.ok();
            }
        }
    }

    Ok(Observed {
        cluster: meta,
        spec,
        status,
        objects,
        storage,
        pods,
        secrets,
        snapshot_running: false,
        validation_running: false,
        validation_done: None,
        fresh_test_id: String::new(),
        agent_key_exists,
        fresh_agent_key: String::new(),
        stalls: BTreeMap::new(),
        started: None,
        probe,
    })
}
