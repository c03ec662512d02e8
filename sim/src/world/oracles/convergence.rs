//! Liveness after the heal phase: the cluster must equal a fresh deploy of its final spec.

use std::collections::{BTreeMap, BTreeSet};

use fake_memgraph::Role;
use memgraph_operator::api::{MemgraphCluster, StorageSpec};
use memgraph_operator::builders::{self, BuildContext, STORAGE_ANNOTATION};
use memgraph_operator::names::{ClusterNames, Instance, LABEL_INSTANCE};
use memgraph_operator::reconcile::desired::{DesiredObject, HASH_ANNOTATION};

use super::super::run::NAMESPACE;
use super::super::truth::{ClusterTruth, read_index};
use crate::apiserver::{ApiServer, Key};

/// Why the cluster is not (yet) converged, or `Ok` when it is: the state must equal a fresh
/// deploy of the final spec.
pub fn converged(
    api: &ApiServer,
    cluster_name: &str,
    truth: &ClusterTruth,
    failed_over: bool,
    digest: impl Fn(&str) -> Option<u64>,
) -> Result<(), String> {
    let value = api.get_json(&Key::new("MemgraphCluster", NAMESPACE, cluster_name)).ok_or("the cluster is gone")?;
    let cluster: MemgraphCluster = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let status = cluster.status.clone().unwrap_or_default();
    let desired = usize::try_from(cluster.spec.read.replicas).unwrap_or(0);
    if format!("{:?}", status.phase) != "Running" {
        return Err(format!("phase {:?}", status.phase));
    }
    if status.observed_generation != cluster.metadata.generation {
        return Err("status describes an older generation".into());
    }
    let wanted = truth.replica_instances(cluster_name).len() as i32;
    if status.ready_replicas != wanted || status.registered_replicas != wanted {
        return Err(format!(
            "status counts {} ready / {} registered, want {wanted}",
            status.ready_replicas, status.registered_replicas
        ));
    }
    // Claim storage of existing StatefulSets, which Kubernetes never changes.
    let mine = BTreeMap::from([(LABEL_INSTANCE.to_owned(), cluster_name.to_owned())]);
    let stored: BTreeMap<String, StorageSpec> = api
        .list_json("StatefulSet", NAMESPACE, &mine)
        .iter()
        .filter_map(|s| {
            let name = s["metadata"]["name"].as_str()?.to_owned();
            let storage = serde_json::from_str(s["metadata"]["annotations"][STORAGE_ANNOTATION].as_str()?).ok()?;
            Some((name, storage))
        })
        .collect();
    let names = ClusterNames::new(cluster_name, NAMESPACE);
    let pending = std::iter::once(Instance::Write)
        .chain((0..u32::try_from(desired).unwrap_or(0)).map(Instance::Read))
        .any(|i| stored.get(&names.statefulset(i)).is_some_and(|s| s != builders::storage_of(&cluster.spec, i)));
    for c in &status.conditions {
        let good = match c.type_.as_str() {
            "InvalidSpec" | "DataDivergence" | "FailoverBlocked" => c.status == "False",
            // False exactly while a refused storage change is pending.
            "StorageInSync" => (c.status == "False") == pending,
            // A backup that failed during the faults is retried at the next schedule tick, which
            // may come after the run: until then False is the truth, and the backup oracle
            // judges that it is (a fresh deploy has no backups to compare with).
            // Backups pause while a read pod is the MAIN: after a failover and the switch back
            // the next one comes at the schedule's next tick, which may come after the run too.
            "BackupsHealthy" => {
                c.status == "True" || c.reason == "LastBackupFailed" || (failed_over && c.reason == "BackupOverdue")
            }
            _ => c.status == "True",
        };
        if !good {
            return Err(format!("condition {} is {}: {}", c.type_, c.status, c.message));
        }
    }
    // As in a fresh deploy, the write pod is the MAIN: a failover's switch back has happened.
    let write = truth.main_pod(cluster_name);
    if write != ClusterNames::new(cluster_name, NAMESPACE).pod(Instance::Write) {
        return Err(format!("{write} is still the MAIN: the switch back to the write pod has not happened"));
    }
    let main = truth.pods.get(&write).ok_or("no MAIN pod")?;
    if main.role != Some(Role::Main) || main.label.as_deref() != Some("main") || !main.routable() {
        return Err(format!("MAIN {write}: {main:?}"));
    }
    let replicas: Vec<Instance> = truth.replica_instances(cluster_name);
    let want_rows: BTreeSet<String> = replicas.iter().map(|i| i.replica_name()).collect();
    let rows: BTreeSet<String> = truth.rows.keys().cloned().collect();
    if rows != want_rows {
        return Err(format!("registered {rows:?}, want {want_rows:?}"));
    }
    let mode = cluster.spec.replication.mode.as_show_replicas();
    for (name, row) in &truth.rows {
        if !row.healthy() || row.mode != mode {
            return Err(format!("{name}: {:?} in {}", row.state, row.mode));
        }
    }
    let want_pods: BTreeSet<String> =
        std::iter::once(write.clone()).chain(replicas.iter().map(|i| names.pod(*i))).collect();
    let pods: BTreeSet<String> = truth.pods.keys().cloned().collect();
    if pods != want_pods {
        return Err(format!("pods {pods:?}"));
    }
    for name in replicas.iter().map(|i| names.pod(*i)) {
        let pod = &truth.pods[&name];
        if pod.label.as_deref() != Some("replica") || !pod.routable() || pod.role != Some(Role::Replica) {
            return Err(format!("{name}: {pod:?}"));
        }
        if digest(&name) != digest(&write) {
            return Err(format!("{name} has not caught up with the MAIN"));
        }
    }
    // Owned objects equal a fresh deploy of the final spec (same names, same applied content).
    let ctx = BuildContext::new(&cluster).map_err(|e| e.to_string())?;
    let mut want: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
    let mut add = |kind: &str, object: DesiredObject| {
        want.insert((kind.to_owned(), object.key().name), object.hash().map(str::to_owned));
    };
    let sts = |instance: Instance| {
        let storage = stored.get(&names.statefulset(instance)).unwrap_or(builders::storage_of(&cluster.spec, instance));
        DesiredObject::statefulset(builders::statefulset_with_storage(&ctx, instance, storage))
    };
    add("StatefulSet", sts(Instance::Write));
    add("Service", DesiredObject::service(builders::headless_service(&ctx, Instance::Write)));
    add("Service", DesiredObject::service(builders::write_service(&ctx)));
    add("Service", DesiredObject::service(builders::read_service(&ctx)));
    add("PodDisruptionBudget", DesiredObject::pdb(builders::read_pdb(&ctx)));
    // The read pods the spec wants, and a promoted one beyond them, which stays as the MAIN.
    let mut reads: Vec<Instance> = (0..u32::try_from(desired).unwrap_or(0)).map(Instance::Read).collect();
    if let Some(i) = read_index(cluster_name, &write).filter(|i| *i as usize >= desired) {
        reads.push(Instance::Read(i));
    }
    for i in reads {
        add("StatefulSet", sts(i));
        add("Service", DesiredObject::service(builders::headless_service(&ctx, i)));
    }
    let mut have = BTreeMap::new();
    for kind in ["StatefulSet", "Service", "PodDisruptionBudget"] {
        for object in api.list_json(kind, NAMESPACE, &mine) {
            let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            let hash = object["metadata"]["annotations"][HASH_ANNOTATION].as_str().map(str::to_owned);
            have.insert((kind.to_owned(), name), hash);
        }
    }
    if have != want {
        let extra: Vec<_> = have.keys().filter(|k| !want.contains_key(*k)).collect();
        let missing: Vec<_> = want.keys().filter(|k| !have.contains_key(*k)).collect();
        let stale: Vec<_> =
            want.iter().filter(|(k, v)| have.get(*k).is_some_and(|h| h != *v)).map(|(k, _)| k).collect();
        return Err(format!(
            "objects differ from a fresh deploy: extra {extra:?}, missing {missing:?}, stale {stale:?}"
        ));
    }
    Ok(())
}
