//! Replication repair on the verified MAIN: drop what should not be registered, register what
//! should, re-register what is broken, and switch modes one replica at a time.
//!
//! In SYNC and STRICT_SYNC a replica that is catching up makes Memgraph refuse every write, so
//! a new or re-registered replica is registered ASYNC while another replica keeps the writes
//! durable (always, with `dataDurability: Preferred`), and switched to the spec's mode once it
//! has caught up. With `Preferred`, a sync replica out of sync for `degradeAfterSeconds` is
//! registered ASYNC until it has caught up again.

use super::{Action, Facts, Planner};
use crate::api::{DataDurability, ReplicationMode};
use crate::kube_api::EventType;
use crate::names::Instance;
use crate::reconcile::observed::MemgraphState;

fn drop_replica(p: &mut Planner<'_>, facts: &Facts, name: &str, why: &str) {
    p.push(Action::DropReplica { main: facts.main_instance, name: name.to_owned() });
    p.event(EventType::Normal, "ReplicaDropped", "DropReplica", format!("Dropped replica {name}: {why}"));
}

fn register(p: &mut Planner<'_>, facts: &Facts, instance: Instance, mode: ReplicationMode) {
    p.push(Action::RegisterReplica { main: facts.main_instance, instance, mode });
    let wanted = super::switchover::wanted_mode(p.spec, p.obs, instance);
    let catching_up = if mode == wanted {
        String::new()
    } else {
        format!("; it becomes {} once it has caught up", wanted.as_cypher())
    };
    p.event(
        EventType::Normal,
        "ReplicaRegistered",
        "RegisterReplica",
        format!(
            "Registered {} as replica {} ({}) at {}{catching_up}",
            p.names.pod(instance),
            instance.replica_name(),
            mode.as_cypher(),
            p.names.replication_address(instance)
        ),
    );
}

/// The mode to register `instance` in now: its final mode, unless it must catch up as
/// ASYNC first.
fn register_mode(p: &Planner<'_>, facts: &Facts, instance: Instance) -> ReplicationMode {
    let mode = super::switchover::wanted_mode(p.spec, p.obs, instance);
    let catch_up_async = match p.spec.replication.data_durability {
        DataDurability::Preferred => true,
        // Durability first: catch up as ASYNC only while another replica keeps writes durable.
        DataDurability::Required => facts.durable_without(instance),
    };
    if mode != ReplicationMode::Async && catch_up_async { ReplicationMode::Async } else { mode }
}

/// An instance that should be a replica says it is a MAIN. A read pod that came up without its
/// replication state (new or wiped volume) has no replicas of its own; a MAIN a failover
/// replaced comes back with its old ones. Either is demoted and registered again. A read pod
/// that is a MAIN with replicas and was never replaced by a failover was made one by someone on
/// purpose: a person must decide. Its old registration, if any, is bound to the instance it
/// replaced, so it is dropped and made again.
fn demote_stray_main(p: &mut Planner<'_>, facts: &Facts, instance: Instance) {
    let own_rows = p.obs.pods.get(&instance).and_then(|pod| match &pod.memgraph {
        MemgraphState::Main { replicas: Some(Ok(rows)), .. } => Some(rows.len()),
        _ => None,
    });
    let replaced = super::failover::replaced_main(p.obs, instance);
    if own_rows != Some(0) && !replaced {
        return;
    }
    // The failover's promotion demotes it first.
    if p.actions.iter().any(|a| matches!(a, Action::Promote { demote: Some(d), .. } if *d == instance)) {
        return;
    }
    p.push(Action::SetReplicaRole(instance));
    let why = if replaced {
        format!("it was the MAIN before failover generation {}", super::failover::generation(p.obs))
    } else {
        "it started as a MAIN, probably with a new volume".to_owned()
    };
    p.event(
        EventType::Normal,
        "ReplicaRoleSet",
        "SetReplicaRole",
        format!("Set {} to REPLICA ({why})", p.names.pod(instance)),
    );
    if facts.replicas[&instance].row.is_some() {
        drop_replica(p, facts, &instance.replica_name(), "its pod came back as a MAIN");
    }
    let mode = register_mode(p, facts, instance);
    register(p, facts, instance, mode);
}

/// Why an existing registration must be dropped and made again, if it must.
fn broken(p: &Planner<'_>, facts: &Facts, instance: Instance) -> Option<String> {
    let r = &facts.replicas[&instance];
    let row = r.row.as_ref()?;
    if row.data.is_none() {
        Some("the registration is incomplete (empty data_info)".to_owned())
    } else if !r.address_ok {
        Some(format!("registered at {} instead of {}", row.socket_address, p.names.replication_address(instance)))
    } else if r.stuck {
        Some(format!("invalid for more than {} s while its pod is ready", super::INVALID_GRACE.as_secs()))
    } else {
        None
    }
}

/// Plan replication changes. Does nothing unless the write instance is a verified MAIN whose
/// `SHOW REPLICAS` was read: without that the operator cannot know what is registered.
pub(super) fn plan_replication(p: &mut Planner<'_>, facts: &Facts) {
    if facts.main.rows().is_none() {
        return;
    }
    for row in &facts.unwanted_rows {
        drop_replica(p, facts, &row.name, "not a replica this cluster wants");
    }
    let mut switches = Vec::new();
    for (&instance, r) in &facts.replicas {
        if !r.desired {
            continue;
        }
        let name = instance.replica_name();
        if r.ready_main {
            demote_stray_main(p, facts, instance);
            continue;
        }
        match (&r.row, broken(p, facts, instance)) {
            // A diverged replica waits for a person (`DataDivergence` says what to do): dropping
            // and registering it again would only be refused again.
            (Some(_), _) if r.diverged => {}
            (Some(_), Some(why)) => {
                drop_replica(p, facts, &name, &why);
                if r.ready_replica {
                    let mode = register_mode(p, facts, instance);
                    register(p, facts, instance, mode);
                }
            }
            (Some(_), None) if r.degrade => switches.push((instance, ReplicationMode::Async)),
            (Some(row), None) => {
                let caught_up = r.in_sync && row.data.as_ref().is_some_and(|d| d.behind == 0);
                // Towards a stricter mode only once caught up (or every write would fail while
                // it catches up); towards ASYNC at once, so a down replica stops blocking writes.
                let wanted = super::switchover::wanted_mode(p.spec, p.obs, instance);
                let to_async = wanted == ReplicationMode::Async;
                if !r.mode_ok && !r.diverged && (caught_up || to_async) {
                    switches.push((instance, wanted));
                }
            }
            (None, _) if r.ready_replica => {
                let mode = register_mode(p, facts, instance);
                register(p, facts, instance, mode);
            }
            (None, _) => {}
        }
    }
    // One replica switches mode per reconcile, and only while no other running replica is
    // catching up (a dead or diverged one does not hold the others back), so durability and
    // reads never drop by more than one replica at a time.
    let catching_up = |instance: Instance| {
        facts.replicas.iter().any(|(i, r)| *i != instance && r.desired && r.ready_replica && !r.in_sync && !r.diverged)
    };
    if let Some(&(instance, mode)) = switches.iter().find(|(instance, _)| !catching_up(*instance)) {
        let name = instance.replica_name();
        let why = if mode == super::switchover::wanted_mode(p.spec, p.obs, instance) {
            format!("switching it to {} now that it is in sync", mode.as_cypher())
        } else {
            format!(
                "registering it ASYNC: out of sync for more than {} s and dataDurability is Preferred",
                p.spec.replication.degrade_after_seconds
            )
        };
        drop_replica(p, facts, &name, &why);
        register(p, facts, instance, mode);
    }
    // Graces end: look again then.
    let timers: Vec<_> = facts
        .replicas
        .values()
        .filter(|r| r.desired)
        .flat_map(|r| {
            let invalid = r.unhealthy_since.and_then(|t| t.checked_add(super::INVALID_GRACE).ok());
            let degrade = (p.spec.replication.data_durability == DataDurability::Preferred)
                .then_some(r.out_of_sync_since)
                .flatten()
                .and_then(|t| {
                    t.checked_add(std::time::Duration::from_secs(
                        u64::try_from(p.spec.replication.degrade_after_seconds.max(1)).unwrap_or(30),
                    ))
                    .ok()
                });
            [invalid, degrade]
        })
        .flatten()
        .filter(|at| *at > p.now)
        .collect();
    for at in timers {
        p.due(at);
    }
}
