//! The strict check beside the bounded ones: at the instant the operator writes a label or a
//! status (or drops a registration), is what it writes already false? Only facts the operator
//! observes directly in Memgraph are judged here (roles, registrations, which MAIN a replica
//! follows, an empty MAIN); readiness reaches it through the API, whose lag the bounded oracles
//! allow for.
//!
//! A claim counts as "already false" when it is false at the write and was false when the
//! operator last looked (read the cluster, or got its answer to `SHOW REPLICAS`), so a change in
//! the few milliseconds between looking and writing is not blamed on the operator.

use fake_memgraph::Role;
use memgraph_operator::names::{ClusterNames, Instance};
use serde_json::Value;

use super::super::run::NAMESPACE;
use super::super::truth::ClusterTruth;

/// Why labelling `pod` with `role` is false in `truth`, if it is. Which pods are the cluster's
/// replicas is judged by the spec the operator acted on (`acted`), as for drops: a view the
/// operator was handed late (a stale read, a scale-down a moment after it read) is not its claim.
pub fn label_false(
    truth: &ClusterTruth,
    cluster: &str,
    pod: &str,
    role: &str,
    acted: Option<&Value>,
) -> Option<String> {
    let p = truth.pods.get(pod);
    match role {
        "main" => {
            if pod != truth.main_pod(cluster) {
                return Some(format!("labelled {pod} main, which is not the MAIN the cluster's status holds"));
            }
            match p.and_then(|p| p.role) {
                Some(Role::Main) if truth.main_lost_data(cluster) => {
                    Some(format!("labelled {pod} main while it is an empty MAIN and replicas hold data"))
                }
                Some(Role::Main) => None,
                other => Some(format!("labelled {pod} main while it is {other:?}")),
            }
        }
        "replica" => {
            let names = ClusterNames::new(cluster, NAMESPACE);
            let desired = acted.and_then(|s| s["read"]["replicas"].as_u64()).map(|n| u32::try_from(n).unwrap_or(0));
            let Some(instance) =
                truth.replica_instances_of(cluster, desired).into_iter().find(|i| names.pod(*i) == pod)
            else {
                return Some(format!("labelled {pod} replica, which is not one of the cluster's replicas"));
            };
            let row = truth.rows.get(&instance.replica_name());
            let in_sync = row.is_some_and(|r| r.healthy() && r.address == names.replication_address(instance));
            if p.is_some_and(|p| p.follows_main) && in_sync {
                None
            } else {
                Some(format!(
                    "labelled {pod} replica while it is {:?} (follows the MAIN: {}), registration {:?}",
                    p.and_then(|p| p.role),
                    p.is_some_and(|p| p.follows_main),
                    row.map(|r| r.state)
                ))
            }
        }
        other => Some(format!("labelled {pod} with unknown role {other}")),
    }
}

fn replicas_in_sync(truth: &ClusterTruth, cluster: &str, desired: u32) -> u32 {
    let names = ClusterNames::new(cluster, NAMESPACE);
    let main = truth.main_pod(cluster);
    std::iter::once(Instance::Write)
        .chain((0..desired).map(Instance::Read))
        .filter(|i| names.pod(*i) != main)
        .filter(|instance| {
            let instance = *instance;
            truth.pods.get(&names.pod(instance)).is_some_and(|p| p.follows_main)
                && truth
                    .rows
                    .get(&instance.replica_name())
                    .is_some_and(|r| r.healthy() && r.address == names.replication_address(instance))
        })
        .count() as u32
}

/// Why a status is false in `truth`, if it is. `acted` is the spec the operator read in the
/// round that wrote it (the status describes that generation).
pub fn status_false(truth: &ClusterTruth, cluster: &str, status: &Value, acted: Option<&Value>) -> Option<String> {
    let write = truth.main_pod(cluster);
    let main_ok = truth.write(cluster).is_some_and(|p| p.role == Some(Role::Main)) && !truth.main_lost_data(cluster);
    if status["writeReady"].as_bool() == Some(true) && !main_ok {
        return Some(format!("status says writeReady while {write} is not a MAIN with its data"));
    }
    if let Some(main) = status["mainPod"].as_str()
        && (main != write || !main_ok)
    {
        return Some(format!("status names {main} the MAIN while it is not a MAIN with its data"));
    }
    let desired = acted
        .and_then(|s| s["read"]["replicas"].as_u64())
        .map_or_else(|| truth.desired(), |n| u32::try_from(n).unwrap_or(0));
    let in_sync = replicas_in_sync(truth, cluster, desired);
    let claimed = status["readyReplicas"].as_u64().unwrap_or(0);
    if claimed > u64::from(in_sync) {
        return Some(format!("status claims {claimed} ready replicas while {in_sync} are in sync"));
    }
    if status["phase"].as_str() == Some("Running") && (!main_ok || in_sync < desired) {
        return Some(format!(
            "status says Running while the MAIN is ok: {main_ok}, {in_sync} of {desired} replicas in sync"
        ));
    }
    None
}

/// Key of the acted spec (not a spec field) naming the target of a pending switchover.
pub const SWITCHOVER_TARGET: &str = "_switchoverTarget";

/// The `memgraph.io/switchover` request of a cluster object the operator has not acted on yet.
pub fn pending_switchover(object: &Value) -> Option<&str> {
    object["metadata"]["annotations"][memgraph_operator::reconcile::plan::switchover::ANNOTATION]
        .as_str()
        .filter(|r| object["status"]["failover"]["lastSwitchoverRequest"].as_str() != Some(*r))
}

/// Why `DROP REPLICA name` drops a wanted, healthy replica registered as the acted spec asks,
/// judged at the instant it is sent.
pub fn drop_wrong(truth: &ClusterTruth, cluster: &str, name: &str, acted: &Value) -> Option<String> {
    let instance = Instance::from_replica_name(name)?;
    // The target of a requested switchover is registered SYNC in an ASYNC cluster first.
    if acted[SWITCHOVER_TARGET].as_str() == Some(instance.status_name().as_str()) {
        return None;
    }
    // So is the write pod while a read pod is the MAIN and switch back is on: it is to take the
    // MAIN back (whether a failover or a switchover put the read pod there is the status's to
    // say, and the oracle does not read it: a looser check here, for this one registration).
    let names = ClusterNames::new(cluster, NAMESPACE);
    let switch_back = acted["failover"]["enabled"].as_bool() == Some(true)
        && acted["failover"]["switchBack"].as_bool() != Some(false)
        && truth.main_pod(cluster) != names.pod(Instance::Write);
    if instance == Instance::Write && switch_back {
        return None;
    }
    let desired = acted["read"]["replicas"].as_u64().map_or(3, |n| u32::try_from(n).unwrap_or(0));
    let mode = acted["replication"]["mode"].as_str().unwrap_or("ASYNC").to_ascii_lowercase();
    let wanted = match instance {
        Instance::Read(index) => index < desired,
        Instance::Write => true,
    } && names.pod(instance) != truth.main_pod(cluster);
    let row = truth.rows.get(name)?;
    let pod = truth.pods.get(&names.pod(instance))?;
    let as_specified = row.healthy() && row.address == names.replication_address(instance) && row.mode == mode;
    (wanted && as_specified && pod.routable() && pod.follows_main)
        .then(|| format!("dropped {name} while wanted ({desired} replicas) and healthy in {mode}"))
}
