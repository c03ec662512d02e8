//! Replication repair on the verified MAIN: drop what should not be registered, register what
//! should, re-register what is broken, and change modes one replica at a time.

use super::{Action, Facts, Planner};
use crate::kube_api::EventType;
use crate::names::Instance;
use crate::reconcile::observed::MemgraphState;

fn drop_replica(p: &mut Planner<'_>, name: &str, why: &str) {
    p.push(Action::DropReplica { name: name.to_owned() });
    p.event(EventType::Normal, "ReplicaDropped", "DropReplica", format!("Dropped replica {name}: {why}"));
}

fn register(p: &mut Planner<'_>, index: u32) {
    let instance = Instance::Read(index);
    let mode = p.spec.replication.mode;
    p.push(Action::RegisterReplica { instance, mode });
    p.event(
        EventType::Normal,
        "ReplicaRegistered",
        "RegisterReplica",
        format!(
            "Registered {} as replica {} ({}) at {}",
            p.names.pod(instance),
            instance.replica_name(),
            mode.as_cypher(),
            p.names.replication_address(instance)
        ),
    );
}

/// Plan replication changes. Does nothing unless the write instance is a verified MAIN whose
/// `SHOW REPLICAS` was read: without that the operator cannot know what is registered.
pub(super) fn plan_replication(p: &mut Planner<'_>, facts: &Facts) {
    if facts.main.rows().is_none() {
        return;
    }
    for row in &facts.unwanted_rows {
        drop_replica(p, &row.name, "not a replica this cluster wants");
    }
    let mut mode_changes = Vec::new();
    for (&index, r) in &facts.replicas {
        if !r.desired {
            continue;
        }
        let instance = Instance::Read(index);
        let name = instance.replica_name();
        if r.ready_main {
            // A read pod that is MAIN came up without its replication state (new or wiped
            // volume). Demote it only if it has no replicas of its own: otherwise someone made
            // it a MAIN on purpose and a person must decide. Its old registration, if any, is
            // bound to the instance it replaced, so it is dropped and made again.
            let own_rows = p.obs.pods.get(&instance).and_then(|pod| match &pod.memgraph {
                MemgraphState::Main { replicas: Some(Ok(rows)), .. } => Some(rows.len()),
                _ => None,
            });
            if own_rows == Some(0) {
                p.push(Action::SetReplicaRole(instance));
                p.event(
                    EventType::Normal,
                    "ReplicaRoleSet",
                    "SetReplicaRole",
                    format!(
                        "Set {} to REPLICA (it started as a MAIN, probably with a new volume)",
                        p.names.pod(instance)
                    ),
                );
                if r.row.is_some() {
                    drop_replica(p, &name, "its pod came back as a new MAIN");
                }
                register(p, index);
            }
            continue;
        }
        match &r.row {
            Some(row) => {
                let why = if row.data.is_none() {
                    Some("the registration is incomplete (empty data_info)".to_owned())
                } else if !r.address_ok {
                    Some(format!(
                        "registered at {} instead of {}",
                        row.socket_address,
                        p.names.replication_address(instance)
                    ))
                } else if r.stuck {
                    Some(format!("invalid for more than {} s while its pod is ready", super::INVALID_GRACE.as_secs()))
                } else {
                    None
                };
                if let Some(why) = why {
                    drop_replica(p, &name, &why);
                    if r.ready_replica {
                        register(p, index);
                    }
                } else if !r.mode_ok && !r.diverged {
                    mode_changes.push(index);
                }
            }
            None if r.ready_replica => register(p, index),
            None => {}
        }
    }
    // A mode change re-registers one replica per reconcile, and only while every other desired
    // replica is in sync, so reads and durability never drop by more than one replica.
    if let Some(&index) = mode_changes.first() {
        let others_routable = facts.replicas.iter().filter(|(i, r)| r.desired && **i != index).all(|(_, r)| r.routable);
        let candidate = &facts.replicas[&index];
        if others_routable && candidate.ready_replica {
            let name = Instance::Read(index).replica_name();
            drop_replica(p, &name, &format!("changing its mode to {}", p.spec.replication.mode.as_cypher()));
            register(p, index);
        }
    }
}
