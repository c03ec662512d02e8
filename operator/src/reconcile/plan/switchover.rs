//! Planned switchover on request: the `memgraph.io/switchover` annotation names the instance
//! that should become the MAIN (`write` or `read-N`).
//!
//! Writes move only when no acknowledged write can be lost ([`ready_to_move`]): the target is a
//! ready REPLICA registered on the MAIN in a synchronous mode, in sync and caught up (`behind`
//! 0). In an ASYNC cluster the target is first registered as SYNC ([`wanted_mode`]) so that every
//! write acknowledged from then on is on it. The move itself is the failover's: the intent is
//! written first, the MAIN's label goes, the MAIN is demoted (which fails while a commit is in
//! flight, so none is cut in half) and the target promoted in one action, the replicas are
//! registered on it, and only then is it labelled.
//!
//! A request is acted on once: its value is kept in `status.failover.lastSwitchoverRequest`
//! when the switchover starts or is refused (a Warning event says why). Until then,
//! `status.failover.switchoverWaiting` says what it waits for.

use super::{Facts, Planner};
use crate::api::{FailoverIntent, FailoverStatus, ReplicationMode, SWITCHOVER_KIND};
use crate::kube_api::EventType;
use crate::names::Instance;

/// Annotation on a cluster requesting a switchover to the instance it names (`write`,
/// `read-0`, …). Any value other than the last one acted on is a new request; text after a `/`
/// is ignored, so the same target can be asked for again (`read-1/2`).
pub const ANNOTATION: &str = "memgraph.io/switchover";

/// The pending request's value: set, and not the last one acted on.
fn pending(obs: &crate::reconcile::observed::Observed) -> Option<&str> {
    let value = obs.cluster.switchover_request.as_deref()?;
    let last = obs.status.failover.as_ref().and_then(|f| f.last_switchover_request.as_deref());
    (last != Some(value)).then_some(value)
}

/// The instance a pending request names, if it names one.
pub fn requested_target(obs: &crate::reconcile::observed::Observed) -> Option<Instance> {
    pending(obs).and_then(|v| Instance::from_status_name(v.split('/').next().unwrap_or(v).trim()))
}

/// The mode `instance` is registered in: the spec's, except that in an ASYNC cluster the target
/// of a pending switchover, and the write pod while it waits to take the MAIN back after a
/// failover, are registered SYNC, so that each holds every acknowledged write by the time writes
/// move to it (an ASYNC replica never would, and the switch back would never come).
pub fn wanted_mode(
    spec: &crate::api::MemgraphClusterSpec,
    obs: &crate::reconcile::observed::Observed,
    instance: Instance,
) -> ReplicationMode {
    let mode = spec.replication.mode;
    let moving_to = requested_target(obs) == Some(instance)
        || (instance == Instance::Write && super::failover::switch_back_wanted(spec, obs));
    if mode == ReplicationMode::Async && moving_to { ReplicationMode::Sync } else { mode }
}

/// What the switchover planning decided.
#[derive(Debug, Default)]
pub(super) struct Decision {
    /// The intent to record (the move starts).
    pub intent: Option<FailoverIntent>,
    /// The request acted on (started or refused).
    pub handled: Option<String>,
    /// What a pending request waits for.
    pub waiting: Option<String>,
}

/// Act on a pending request, if there is one.
pub(super) fn plan_switchover(p: &mut Planner<'_>, facts: &Facts, before: &FailoverStatus) -> Decision {
    let Some(value) = pending(p.obs).map(str::to_owned) else { return Decision::default() };
    let refuse = |p: &mut Planner<'_>, why: String| {
        p.event(EventType::Warning, "SwitchoverRefused", "Switchover", format!("{ANNOTATION}={value:?}: {why}"));
        Decision { handled: Some(value.clone()), ..Decision::default() }
    };
    let Some(target) = requested_target(p.obs) else {
        let replicas = p.spec.read.replicas;
        return refuse(
            p,
            format!(
                "names no instance of this cluster; use write or read-0 … read-{}",
                replicas.saturating_sub(1).max(0)
            ),
        );
    };
    if target == facts.main_instance {
        p.event(
            EventType::Normal,
            "SwitchoverDone",
            "Switchover",
            format!("{} is the MAIN already", p.names.pod(target)),
        );
        return Decision { handled: Some(value), ..Decision::default() };
    }
    if !facts.replicas.get(&target).is_some_and(|r| r.desired) {
        return refuse(p, format!("{} is not a replica this cluster has (spec.read.replicas)", target.status_name()));
    }
    if let Some(why) = ready_to_move(p, facts, target) {
        // Looked at again soon: catching up is a matter of seconds.
        p.due(p.now.checked_add(super::REQUEUE_BUSY).unwrap_or(p.now));
        return Decision {
            waiting: Some(format!("switchover to {}: {why}", target.status_name())),
            ..Decision::default()
        };
    }
    let from = facts.main_instance;
    let generation = before.generation + 1;
    let reason = format!("requested with {ANNOTATION}={value:?}; {} is in sync and caught up", target.status_name());
    let intent = super::failover::start_planned(p, from, target, generation, reason, SWITCHOVER_KIND);
    Decision { intent: Some(intent), handled: Some(value), waiting: None }
}

/// Why writes cannot move to `target` yet without risking an acknowledged write, if they cannot.
fn ready_to_move(p: &Planner<'_>, facts: &Facts, target: Instance) -> Option<String> {
    if !facts.main.verified() {
        return Some("waiting for the MAIN to be verified".to_owned());
    }
    let r = facts.replicas.get(&target)?;
    if !r.ready_replica {
        return Some(format!("waiting for {} to be a ready REPLICA", p.names.pod(target)));
    }
    let Some(row) = r.row.as_ref() else { return Some("waiting for it to be registered on the MAIN".to_owned()) };
    if row.sync_mode == ReplicationMode::Async.as_show_replicas() {
        return Some(
            "registered ASYNC; it is registered SYNC once caught up, so that every write acknowledged from then on \
             is on it"
                .to_owned(),
        );
    }
    match row.data.as_ref() {
        Some(d) if !d.status.is_healthy() => Some(format!("its replication state is {}", d.status.as_str())),
        Some(d) if d.behind != 0 => Some(format!("it is {} behind the MAIN", d.behind.abs())),
        Some(_) if !r.in_sync => Some("waiting for it to be in sync".to_owned()),
        Some(_) => None,
        None => Some("its registration is incomplete".to_owned()),
    }
}
