//! `plan`: the pure heart of the operator. From the spec, what was observed and the time, it
//! decides the actions to take, in order, and when to look again. No I/O, no clock, no
//! randomness; everything it must remember between reconciles is in the cluster's status.

mod facts;
mod objects;
mod replication;
mod status;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::desired::DesiredObject;
use super::observed::{ObjectKey, Observed};
use crate::api::{MemgraphClusterSpec, MemgraphClusterStatus, ReplicationMode};
use crate::kube_api::EventType;
use crate::names::{ClusterNames, FINALIZER, Instance, ROLE_MAIN, ROLE_REPLICA};
use crate::validate::{SpecError, validate_secrets, validate_spec};

pub use facts::{Facts, MainFacts, ReplicaFacts};

/// How long a registered replica may stay `invalid` while its pod is ready before the operator
/// drops and registers it again. Memgraph retries on its own every second; this only catches
/// replicas it cannot recover by itself.
pub const INVALID_GRACE: Duration = Duration::from_secs(60);
/// Requeue while the cluster is converging.
pub const REQUEUE_BUSY: Duration = Duration::from_secs(5);
/// Upper bound on the requeue of a healthy cluster.
pub const REQUEUE_IDLE: Duration = Duration::from_secs(30);

/// An event to publish about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    /// Normal or Warning.
    pub type_: EventType,
    /// PascalCase reason.
    pub reason: String,
    /// What the operator did or checked.
    pub action: String,
    /// Details for people.
    pub note: String,
    /// Announces a condition change (written together with the status), rather than an action.
    pub condition: bool,
}

/// One step of a plan. Every action is safe to repeat: the operator may crash after any of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set the cluster's finalizers (adding or removing ours), guarded by its resourceVersion.
    SetFinalizers {
        /// The complete new list.
        finalizers: Vec<String>,
        /// Precondition.
        resource_version: String,
    },
    /// Server-side apply an object.
    Apply(DesiredObject),
    /// Delete an object.
    Delete(ObjectKey),
    /// `SET REPLICATION ROLE TO REPLICA WITH PORT 10000` on an instance.
    SetReplicaRole(Instance),
    /// `REGISTER REPLICA` of an instance on the MAIN (the write instance).
    RegisterReplica {
        /// The replica.
        instance: Instance,
        /// Its mode.
        mode: ReplicationMode,
    },
    /// `DROP REPLICA` on the MAIN.
    DropReplica {
        /// Name as registered.
        name: String,
    },
    /// Set or remove a pod's `memgraph.io/role` label, only if the pod still has `uid`.
    Label {
        /// Pod name.
        pod: String,
        /// Pod uid it was observed with.
        uid: String,
        /// New value; `None` removes the label.
        role: Option<String>,
    },
    /// `CREATE SNAPSHOT` on the MAIN.
    CreateSnapshot,
    /// Replace the cluster's status.
    PatchStatus(Box<MemgraphClusterStatus>),
    /// Publish an event.
    Event(PlannedEvent),
}

impl Action {
    /// Whether the action changes replication in Memgraph (so a fresh look is worth taking).
    pub fn changes_replication(&self) -> bool {
        matches!(self, Action::SetReplicaRole(_) | Action::RegisterReplica { .. } | Action::DropReplica { .. })
    }
}

/// The result of planning: what to do, in order, and when to reconcile again.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Actions in execution order; execution stops at the first failure.
    pub actions: Vec<Action>,
    /// When to reconcile again if nothing else triggers it.
    pub requeue_after: Duration,
    /// A registered replica whose pod is ready is expected to come in sync shortly (Memgraph
    /// reconnects within a few heartbeats): worth looking again within this reconcile.
    pub settling: bool,
}

impl Plan {
    /// Whether the plan does nothing but wait.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Builder shared by the planning steps.
pub(crate) struct Planner<'a> {
    pub spec: &'a MemgraphClusterSpec,
    pub obs: &'a Observed,
    pub now: Timestamp,
    pub names: ClusterNames,
    pub actions: Vec<Action>,
    /// Earliest time something is scheduled (snapshots).
    pub next_due: Option<Timestamp>,
    /// Storage changes Kubernetes cannot apply to existing StatefulSets, in words.
    pub storage_pending: Vec<String>,
}

impl<'a> Planner<'a> {
    fn new(spec: &'a MemgraphClusterSpec, obs: &'a Observed, now: Timestamp) -> Self {
        let names = ClusterNames::new(obs.cluster.name.clone(), obs.cluster.namespace.clone());
        Self { spec, obs, now, names, actions: Vec::new(), next_due: None, storage_pending: Vec::new() }
    }

    pub fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    pub fn event(&mut self, type_: EventType, reason: &str, action: &str, note: String) {
        self.actions.push(Action::Event(PlannedEvent {
            type_,
            reason: reason.to_owned(),
            action: action.to_owned(),
            note,
            condition: false,
        }));
    }

    pub fn condition_event(&mut self, type_: EventType, reason: &str, note: String) {
        self.actions.push(Action::Event(PlannedEvent {
            type_,
            reason: reason.to_owned(),
            action: "Check".to_owned(),
            note,
            condition: true,
        }));
    }
}

/// Every spec problem: offline checks and referenced Secrets.
pub fn spec_errors(spec: &MemgraphClusterSpec, obs: &Observed) -> Vec<SpecError> {
    let mut errors = validate_spec(spec);
    errors.extend(validate_secrets(spec, &obs.cluster.namespace, &obs.secrets));
    errors
}

/// Decide what to do.
pub fn plan(spec: &MemgraphClusterSpec, obs: &Observed, now: Timestamp) -> Plan {
    let mut p = Planner::new(spec, obs, now);
    if obs.cluster.deleting {
        finalize(&mut p);
        return Plan { actions: p.actions, requeue_after: REQUEUE_BUSY, settling: false };
    }
    let errors = spec_errors(spec, obs);
    let facts = Facts::derive(&p, errors.is_empty());
    if errors.is_empty() {
        if !obs.cluster.has_finalizer {
            let mut finalizers = obs.cluster.other_finalizers.clone();
            finalizers.push(FINALIZER.to_owned());
            p.push(Action::SetFinalizers { finalizers, resource_version: obs.cluster.resource_version.clone() });
        }
        objects::plan_objects(&mut p, &facts);
        replication::plan_replication(&mut p, &facts);
        objects::plan_removals(&mut p, &facts);
    }
    // Labels follow verified truth even while the spec is invalid: they protect clients.
    plan_labels(&mut p, &facts);
    if errors.is_empty() {
        plan_snapshot(&mut p, &facts);
    }
    let converged = status::plan_status(&mut p, &facts, &errors);
    let busy = !converged || p.actions.iter().any(|a| !matches!(a, Action::PatchStatus(_) | Action::Event(_)));
    let mut requeue_after = if busy { REQUEUE_BUSY } else { idle_requeue(spec) };
    if let Some(due) = p.next_due {
        let until = due.duration_since(now).as_secs().max(1) as u64;
        requeue_after = requeue_after.min(Duration::from_secs(until));
    }
    let settling = facts.main.rows().is_some()
        && facts
            .replicas
            .values()
            .any(|r| r.desired && r.ready_replica && r.row.is_some() && !r.routable && !r.diverged);
    Plan { actions: p.actions, requeue_after, settling }
}

fn idle_requeue(spec: &MemgraphClusterSpec) -> Duration {
    let connectivity = u64::try_from(spec.validation.connectivity_interval_seconds).unwrap_or(30).max(1);
    REQUEUE_IDLE.min(Duration::from_secs(connectivity))
}

/// Deletion: drop the registrations while the MAIN can still be reached, then let go. Owned
/// objects are removed by garbage collection. Unreachable pods do not block deletion.
fn finalize(p: &mut Planner<'_>) {
    if !p.obs.cluster.has_finalizer {
        return;
    }
    if let Some(rows) = facts::main_rows(p.obs) {
        for row in rows {
            p.push(Action::DropReplica { name: row.name.clone() });
        }
    }
    p.push(Action::SetFinalizers {
        finalizers: p.obs.cluster.other_finalizers.clone(),
        resource_version: p.obs.cluster.resource_version.clone(),
    });
}

/// Role labels: `main` only on the pod verified as MAIN, `replica` only on replicas registered
/// and in sync. Removals come first so two pods never carry `main` at once.
fn plan_labels(p: &mut Planner<'_>, facts: &Facts) {
    let mut removals = Vec::new();
    let mut additions = Vec::new();
    for (instance, pod) in &p.obs.pods {
        let wanted: Option<&str> = match instance {
            Instance::Write => facts.main.routable().then_some(ROLE_MAIN),
            Instance::Read(i) => facts.replicas.get(i).filter(|r| r.routable).map(|_| ROLE_REPLICA),
        };
        let wanted = if pod.terminating { None } else { wanted };
        if pod.role_label.as_deref() == wanted {
            continue;
        }
        let action = Action::Label { pod: pod.name.clone(), uid: pod.uid.clone(), role: wanted.map(str::to_owned) };
        if wanted.is_none() { removals.push(action) } else { additions.push(action) }
    }
    p.actions.extend(removals);
    p.actions.extend(additions);
}

/// Scheduled `CREATE SNAPSHOT` on the MAIN, driven by `status.lastSnapshotTime`.
fn plan_snapshot(p: &mut Planner<'_>, facts: &Facts) {
    if !p.spec.snapshot.enabled || !facts.main.routable() {
        return;
    }
    let Ok(schedule) = crate::schedule::Schedule::parse(&p.spec.snapshot.schedule) else { return };
    let last = p.obs.status.last_snapshot_time.as_ref().map(|t| t.0).or(p.obs.cluster.created).unwrap_or(p.now);
    match schedule.next_after(last) {
        Some(due) if due <= p.now => {
            p.push(Action::CreateSnapshot);
            p.event(
                EventType::Normal,
                "SnapshotCreated",
                "CreateSnapshot",
                format!("scheduled snapshot ({})", p.spec.snapshot.schedule),
            );
            p.next_due = schedule.next_after(p.now);
        }
        Some(due) => p.next_due = Some(due),
        None => {}
    }
}

#[cfg(test)]
mod tests;
