//! `plan`: the pure heart of the operator. From the spec, what was observed and the time, it
//! decides the actions to take, in order, the status to write, and when to look again. No I/O,
//! no clock, no randomness; everything it must remember between reconciles is in the cluster's
//! status.
//!
//! One module per idea: [`facts`] (what is true), [`objects`] (what to apply and delete),
//! [`replication`] (registrations and modes), [`labels`] (routing), [`snapshot`] (the schedule),
//! [`backup`] (backups and their health), [`validation`] (the live checks), [`failures`] (backoff and reporting of actions that keep failing), [`status`] (the truth
//! in words).

pub mod backup;
mod bootstrap;
mod facts;
pub mod failover;
pub mod failures;
mod labels;
mod objects;
mod replication;
mod snapshot;
mod status;
pub mod switchover;
pub mod validation;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::desired::DesiredObject;
use super::observed::{ObjectKey, Observed};
use crate::api::{MemgraphClusterSpec, MemgraphClusterStatus, ReplicationMode};
use crate::kube_api::EventType;
use crate::names::{ClusterNames, FINALIZER, Instance};
use crate::validate::{SpecError, validate_secrets, validate_spec};

pub use facts::{Facts, MainFacts, ReplicaFacts, Route, main_instance, main_instance_in};
pub use status::{ACTIONS_SUCCEEDING, REPLICATION_HEALTHY, WRITE_READY};

/// How long a registered replica may stay `invalid` while its pod is ready before the operator
/// drops and registers it again. Memgraph retries on its own every second; this only catches
/// replicas it cannot recover by itself.
pub const INVALID_GRACE: Duration = Duration::from_secs(60);
/// How long a labelled replica the MAIN reports out of sync keeps its label. Memgraph marks a
/// replica `invalid` for a missed transaction or a heartbeat blip and recovers it within a
/// second or two; removing the label at once would make reads flap.
pub const ROUTE_GRACE: Duration = Duration::from_secs(3);
/// How long a replica's node count may stand still while the MAIN's moves, with the MAIN unable
/// to report on it, before its label goes. A healthy replica follows within milliseconds; the
/// grace spans at least two looks, so one count taken mid-transaction is not enough.
pub const STALL_GRACE: Duration = Duration::from_secs(10);
/// Least requeue for work due now or already overdue (no busy loop).
const MIN_REQUEUE_MS: u64 = 250;
/// Requeue while the cluster is converging.
pub const REQUEUE_BUSY: Duration = Duration::from_secs(5);
/// Upper bound on the requeue of a healthy cluster. `SHOW REPLICAS` is the only way to see a
/// replica fall out of sync (nothing in Kubernetes changes), and from Memgraph 3.1 it is served
/// from a cache, so polling it this often is cheap.
pub const REQUEUE_IDLE: Duration = Duration::from_secs(10);

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
    /// Announces a condition change (published after the status is written), rather than an
    /// action.
    pub condition: bool,
    /// The subject of the action it announces: published only if that action succeeded.
    pub subject: Option<String>,
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
    /// `SET REPLICATION ROLE TO MAIN` on the replica a failover promotes, only after the intent
    /// naming it is written in status; with `demote`, that MAIN is set to REPLICA first, and
    /// the promotion is made only if that succeeded (never two MAINs taking writes).
    Promote {
        /// The replica to promote.
        instance: Instance,
        /// A MAIN that still answers, demoted first.
        demote: Option<Instance>,
    },
    /// `REGISTER REPLICA` of an instance on the MAIN.
    RegisterReplica {
        /// The MAIN it is registered on.
        main: Instance,
        /// The replica.
        instance: Instance,
        /// Its mode.
        mode: ReplicationMode,
    },
    /// `DROP REPLICA` on the MAIN.
    DropReplica {
        /// The MAIN it is dropped from.
        main: Instance,
        /// Name as registered.
        name: String,
    },
    /// Set or remove a pod's `memgraph.io/role` label, only if the pod still has `uid`. A role
    /// is set together with the container restart count it was verified at.
    Label {
        /// Pod name.
        pod: String,
        /// Pod uid it was observed with.
        uid: String,
        /// New value; `None` removes the label (and its restart stamp).
        role: Option<String>,
        /// The container restart count the role was verified at.
        restarts: i64,
    },
    /// Delete a pod, only if it is still the pod with `uid`: the old MAIN a failover fences
    /// when it is Ready but does not answer (its kubelet stops the process; the StatefulSet
    /// then recreates it, and it is demoted when it answers).
    StopPod {
        /// Pod name.
        pod: String,
        /// Pod uid it was observed with.
        uid: String,
    },
    /// `CREATE SNAPSHOT` on the MAIN for a schedule tick, run only after the status claiming
    /// that tick is written.
    CreateSnapshot {
        /// The tick.
        tick: Timestamp,
    },
    /// Create the Secret holding the backup agent's request-signing key (only when it is
    /// missing; its key was drawn by the reconcile, see `Observed::fresh_agent_key`).
    CreateAgentKey(Box<k8s_openapi::api::core::v1::Secret>),
    /// Publish an event.
    Event(PlannedEvent),
}

/// How the subjects of replicas' registrations, roles and objects start.
pub const REPLICA_SUBJECT_PREFIX: &str = "replica ";

/// The subject of the replica named `name`: its registration, role and objects.
fn replica_subject(name: &str) -> String {
    format!("{REPLICA_SUBJECT_PREFIX}{name}")
}

impl Action {
    /// Whether the action changes replication in Memgraph (so a fresh look is worth taking).
    pub fn changes_replication(&self) -> bool {
        matches!(
            self,
            Action::SetReplicaRole(_)
                | Action::Promote { .. }
                | Action::RegisterReplica { .. }
                | Action::DropReplica { .. }
        )
    }

    /// What the action acts on. Actions on one subject depend on each other (a registration
    /// after its drop, a deletion after its drop): when one fails the later ones are skipped,
    /// and a subject that keeps failing is retried with backoff. Actions on different
    /// subjects never wait for each other.
    pub fn subject(&self) -> Option<String> {
        match self {
            Action::SetFinalizers { .. } => Some("finalizers".to_owned()),
            Action::Apply(o) => Some(format!("{:?} {}", o.key().kind, o.key().name)),
            Action::Delete(key) => Some(objects::read_index_of(key).map_or_else(
                || format!("{:?} {}", key.kind, key.name),
                |i| replica_subject(&Instance::Read(i).replica_name()),
            )),
            Action::SetReplicaRole(i)
            | Action::Promote { instance: i, .. }
            | Action::RegisterReplica { instance: i, .. } => Some(replica_subject(&i.replica_name())),
            Action::DropReplica { name, .. } => Some(replica_subject(name)),
            Action::Label { pod, .. } => Some(format!("label {pod}")),
            Action::StopPod { pod, .. } => Some(format!("stop {pod}")),
            Action::CreateSnapshot { .. } => Some(failures::SNAPSHOT_SUBJECT.to_owned()),
            Action::CreateAgentKey(_) => Some("backup agent key".to_owned()),
            Action::Event(e) => e.subject.clone(),
        }
    }
}

/// The result of planning: what to do, in order, what the status should say, and when to
/// reconcile again.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Actions in execution order.
    pub actions: Vec<Action>,
    /// The status to write (before the outcome of this plan's actions is added to it).
    pub status: Box<MemgraphClusterStatus>,
    /// Whether `status` differs from the observed one.
    pub status_changed: bool,
    /// Subjects whose actions were held back because they are backing off after failures.
    pub held: Vec<String>,
    /// When to reconcile again if nothing else triggers it.
    pub requeue_after: Duration,
    /// A registered replica whose pod is ready is expected to come in sync shortly (Memgraph
    /// reconnects within a few heartbeats): worth looking again within this reconcile.
    pub settling: bool,
    /// Checks claimed in `status`: run beside the reconciles once it is written.
    pub validation: Option<validation::ValidationClaim>,
    /// The finished checks of `Observed::validation_done` are written in `status`; otherwise
    /// they wait for a later write (nothing in them is worth one).
    pub validation_merged: bool,
    /// A failover intent is new in `status`: it must be written before any replication command
    /// runs, so this reconcile writes its status now rather than looking again first.
    pub record_first: bool,
}

impl Plan {
    /// Whether the plan does nothing but wait.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && !self.status_changed
    }
}

/// Builder shared by the planning steps.
pub(crate) struct Planner<'a> {
    pub spec: &'a MemgraphClusterSpec,
    pub obs: &'a Observed,
    pub now: Timestamp,
    pub names: ClusterNames,
    pub actions: Vec<Action>,
    /// Earliest time something is scheduled (snapshots, graces, retries).
    pub next_due: Option<Timestamp>,
    /// Storage changes Kubernetes cannot apply to existing StatefulSets, in words.
    pub storage_pending: Vec<String>,
    /// The schedule tick this plan takes, if any.
    pub snapshot_tick: Option<Timestamp>,
    /// `status.backups` as this plan leaves it.
    pub backups: Option<crate::api::BackupsStatus>,
    /// `status.bootstrap` as this plan leaves it.
    pub bootstrap: Option<crate::api::BootstrapStatus>,
    /// Checks this plan claims (see [`validation`]).
    pub validation_claim: Option<validation::ValidationClaim>,
    /// Whether the finished checks in `obs.validation_done` are written by this plan.
    pub validation_merge: bool,
    /// What the failover planning decided (see [`failover`]).
    pub failover: Option<failover::FailoverPlan>,
}

impl<'a> Planner<'a> {
    fn new(spec: &'a MemgraphClusterSpec, obs: &'a Observed, now: Timestamp) -> Self {
        let names = ClusterNames::new(obs.cluster.name.clone(), obs.cluster.namespace.clone());
        Self {
            spec,
            obs,
            now,
            names,
            actions: Vec::new(),
            next_due: None,
            storage_pending: Vec::new(),
            snapshot_tick: None,
            backups: None,
            bootstrap: None,
            validation_claim: None,
            validation_merge: false,
            failover: None,
        }
    }

    pub fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// Look again no later than `at`.
    pub fn due(&mut self, at: Timestamp) {
        self.next_due = Some(self.next_due.map_or(at, |d| d.min(at)));
    }

    /// An event announcing the action just pushed.
    pub fn event(&mut self, type_: EventType, reason: &str, action: &str, note: String) {
        let subject = self.actions.last().and_then(Action::subject);
        self.actions.push(Action::Event(PlannedEvent {
            type_,
            reason: reason.to_owned(),
            action: action.to_owned(),
            note,
            condition: false,
            subject,
        }));
    }

    pub fn condition_event(&mut self, type_: EventType, reason: &str, note: String) {
        self.actions.push(Action::Event(PlannedEvent {
            type_,
            reason: reason.to_owned(),
            action: "Check".to_owned(),
            note,
            condition: true,
            subject: None,
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
        return Plan {
            actions: p.actions,
            status: Box::new(obs.status.clone()),
            status_changed: false,
            held: Vec::new(),
            requeue_after: REQUEUE_BUSY,
            settling: false,
            validation: None,
            validation_merged: false,
            record_first: false,
        };
    }
    let errors = spec_errors(spec, obs);
    let facts = Facts::derive(&p, errors.is_empty());
    if errors.is_empty() {
        if !obs.cluster.has_finalizer {
            let mut finalizers = obs.cluster.other_finalizers.clone();
            finalizers.push(FINALIZER.to_owned());
            p.push(Action::SetFinalizers { finalizers, resource_version: obs.cluster.resource_version.clone() });
        }
        bootstrap::plan_bootstrap(&mut p, &facts);
        objects::plan_objects(&mut p, &facts);
        let failover = failover::plan_failover(&mut p, &facts);
        // A failover that starts, moves to another target or rolls back changes which instance is
        // the MAIN: replication is planned by the next look, from the recorded decision.
        let moves =
            failover.status.as_ref().map(failover::held_main) != Some(facts.main_instance) && failover.status.is_some();
        p.failover = Some(failover);
        if !moves {
            replication::plan_replication(&mut p, &facts);
        }
        objects::plan_removals(&mut p, &facts);
    }
    // Labels follow verified truth even while the spec is invalid: they protect clients.
    labels::plan_labels(&mut p, &facts);
    if errors.is_empty() {
        snapshot::plan_snapshot(&mut p, &facts);
    }
    if !errors.is_empty() {
        p.bootstrap = obs.status.bootstrap.clone();
    }
    let mut held = failures::hold_back(&mut p);
    // A refusal that showed a replica diverged stays recorded while it does: it is the only
    // sign of the divergence (the row has no state), and the replica waits for a person.
    let refused: Vec<String> = facts
        .replicas
        .iter()
        .filter(|(_, r)| r.diverged && r.row.as_ref().is_some_and(|row| row.data.is_none()))
        .map(|(i, _)| replica_subject(&i.replica_name()))
        .filter(|s| !held.contains(s))
        .collect();
    held.extend(refused);
    // After the backoff: a backup starts only with a snapshot that is really taken.
    if errors.is_empty() {
        backup::plan_backup(&mut p, &facts);
    } else {
        p.backups = obs.status.backups.clone();
    }
    if errors.is_empty() {
        validation::plan_validation(&mut p, &facts);
    }
    let (status, converged) = status::plan_status(&mut p, &facts, &errors);
    let status_changed = status != obs.status;
    let busy = !converged || p.actions.iter().any(|a| !matches!(a, Action::Event(_)));
    let mut requeue_after = if busy { REQUEUE_BUSY } else { idle_requeue(spec) };
    if let Some(due) = p.next_due {
        // To the millisecond: a look due in 1.9 s that came after 1 s would find it not due yet
        // and wait another round (a failover's confirming look is one).
        let until = u64::try_from(due.duration_since(now).as_millis()).unwrap_or(0).max(MIN_REQUEUE_MS);
        requeue_after = requeue_after.min(Duration::from_millis(until));
    }
    let settling = facts.main.rows().is_some()
        && facts
            .replicas
            .values()
            .any(|r| r.desired && r.ready_replica && r.row.is_some() && !r.in_sync && !r.diverged);
    let record_first = p.failover.as_ref().is_some_and(|f| f.record_first);
    Plan {
        actions: p.actions,
        status: Box::new(status),
        status_changed,
        held,
        requeue_after,
        settling,
        validation: p.validation_claim,
        validation_merged: p.validation_merge,
        record_first,
    }
}

fn idle_requeue(spec: &MemgraphClusterSpec) -> Duration {
    // With failover on, a lost MAIN is noticed by the health probe beside the reconciles
    // (`main_probe`), which wakes the reconcile: the idle poll need not be the detection delay.
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
        let main = facts::main_instance(p.obs);
        for row in rows {
            p.push(Action::DropReplica { main, name: row.name.clone() });
        }
    }
    p.push(Action::SetFinalizers {
        finalizers: p.obs.cluster.other_finalizers.clone(),
        resource_version: p.obs.cluster.resource_version.clone(),
    });
}

#[cfg(test)]
mod tests;
