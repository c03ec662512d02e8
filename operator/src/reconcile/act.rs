//! `act`: carry out a plan. Actions on different subjects never wait for each other: a failed
//! one skips only the later actions on its own subject (a registration after its drop), and its
//! failure is recorded in the status so it is retried with backoff and reported. The status is
//! written after the other actions, with their outcome; a scheduled snapshot runs only after the
//! status claiming its tick is written, in the background, and its result is written by a later
//! reconcile.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::ReconcileError;
use super::desired::DesiredObject;
use super::observed::{ObjectKind, Observed};
use super::plan::failures::{self, Outcome, SNAPSHOT_SUBJECT};
use super::plan::{Action, Plan, PlannedEvent};
use super::snapshot_job::SnapshotDone;
use crate::api::MemgraphClusterStatus;
use crate::clock::Clock;
use crate::kube_api::{ClusterEvent, EventType, Kube};
use crate::memgraph::{self, Bolt, SnapshotOutcome};
use crate::names::{ClusterNames, REPLICATION_PORT};
use k8s_openapi::jiff::Timestamp;

/// What `act` did.
#[derive(Debug, Default)]
pub struct Report {
    /// Actions executed (events included), successful or not.
    pub executed: usize,
    /// The outcome of every action that ran.
    pub outcomes: Vec<Outcome>,
}

async fn execute<K: Kube>(
    kube: &K,
    bolt: &dyn Bolt,
    names: &ClusterNames,
    action: &Action,
) -> Result<(), ReconcileError> {
    let ns = names.namespace.as_str();
    match action {
        Action::SetFinalizers { finalizers, resource_version } => {
            kube.set_finalizers(ns, &names.cluster, finalizers, resource_version).await?;
        }
        Action::Apply(DesiredObject::StatefulSet(o)) => drop(kube.apply(o.as_ref()).await?),
        Action::Apply(DesiredObject::Service(o)) => drop(kube.apply(o.as_ref()).await?),
        Action::Apply(DesiredObject::PodDisruptionBudget(o)) => drop(kube.apply(o.as_ref()).await?),
        Action::Delete(key) => match key.kind {
            ObjectKind::StatefulSet => kube.delete::<StatefulSet>(ns, &key.name).await?,
            ObjectKind::Service => kube.delete::<Service>(ns, &key.name).await?,
            ObjectKind::PodDisruptionBudget => kube.delete::<PodDisruptionBudget>(ns, &key.name).await?,
        },
        Action::SetReplicaRole(instance) => {
            memgraph::set_replica_role(bolt, &names.bolt_address(*instance), REPLICATION_PORT).await?;
        }
        Action::Promote { instance, demote } => {
            if let Some(old) = demote {
                memgraph::set_replica_role(bolt, &names.bolt_address(*old), REPLICATION_PORT).await?;
            }
            memgraph::set_main_role(bolt, &names.bolt_address(*instance)).await?;
        }
        Action::RegisterReplica { main, instance, mode } => {
            let address = names.replication_address(*instance);
            let main = names.bolt_address(*main);
            memgraph::register_replica(bolt, &main, &instance.replica_name(), *mode, &address).await?;
        }
        Action::DropReplica { main, name } => memgraph::drop_replica(bolt, &names.bolt_address(*main), name).await?,
        Action::StopPod { pod, uid } => kube.delete_pod(ns, pod, uid).await?,
        Action::Label { pod, uid, role, restarts } => {
            let labels = crate::reconcile::guard::role_labels(role.as_deref(), *restarts);
            kube.patch_pod_labels(ns, pod, uid, &labels).await?;
        }
        Action::CreateAgentKey(secret) => drop(kube.apply(secret.as_ref()).await?),
        // Run by `write_status`, after the tick is claimed; events by `publish`.
        Action::CreateSnapshot { .. } | Action::Event(_) => {}
    }
    Ok(())
}

/// Whether a failure only means the world moved on since it was observed (a pod recreated, an
/// object changed): the next look decides again, with no backoff.
fn moved_on(error: &ReconcileError) -> bool {
    matches!(error, ReconcileError::Kube(e) if e.is_conflict() || e.is_not_found())
}

async fn publish<K: Kube>(kube: &K, obs: &Observed, event: &PlannedEvent) {
    let event = ClusterEvent {
        regarding: obs.cluster.reference.clone(),
        type_: event.type_,
        reason: event.reason.clone(),
        action: event.action.clone(),
        note: event.note.clone(),
    };
    if let Err(e) = kube.publish_event(&event).await {
        tracing::warn!(error = %e, reason = %event.reason, "could not publish event");
    }
}

/// Which actions a call of [`act`] executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Kubernetes changes: objects, labels, finalizers. Quick, and what clients depend on.
    Kubernetes,
    /// Replication commands, and what depends on them (a replica's deletion after its drop):
    /// they may wait seconds on Memgraph's RPCs. Also the old MAIN's stop, which its intent
    /// records first, so it runs after the status write as a promotion does.
    Replication,
    /// Both, in that order.
    All,
}

impl Phase {
    fn includes(self, action: &Action, subject: Option<&str>) -> bool {
        let replication = matches!(action, Action::StopPod { .. })
            || subject.is_some_and(|s| s.starts_with(super::plan::REPLICA_SUBJECT_PREFIX));
        match self {
            Phase::Kubernetes => !replication,
            Phase::Replication => replication,
            Phase::All => true,
        }
    }
}

/// Execute the `actions` of `phase` other than the snapshot. Condition events are left for
/// [`write_status`]; other events are published only if the action they announce succeeded.
pub async fn act<K: Kube>(kube: &K, bolt: &dyn Bolt, obs: &Observed, actions: &[Action], phase: Phase) -> Report {
    if phase == Phase::All {
        let mut report = Box::pin(act(kube, bolt, obs, actions, Phase::Kubernetes)).await;
        let more = Box::pin(act(kube, bolt, obs, actions, Phase::Replication)).await;
        report.executed += more.executed;
        report.outcomes.extend(more.outcomes);
        return report;
    }
    let names = ClusterNames::new(obs.cluster.name.clone(), obs.cluster.namespace.clone());
    let mut report = Report::default();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    for action in actions {
        let subject = action.subject();
        if !phase.includes(action, subject.as_deref()) {
            continue;
        }
        match action {
            Action::Event(e) if e.condition => continue,
            Action::Event(e) => {
                if !e.subject.as_ref().is_some_and(|s| failed.contains(s)) {
                    publish(kube, obs, e).await;
                    report.executed += 1;
                }
                continue;
            }
            Action::CreateSnapshot { .. } => continue,
            _ => {}
        }
        let subject = subject.unwrap_or_default();
        if failed.contains(&subject) {
            tracing::debug!(cluster = %names.cluster, action = ?ActionName(action), "skipped: an earlier action on its subject failed");
            continue;
        }
        report.executed += 1;
        let error = match execute(kube, bolt, &names, action).await {
            Ok(()) => {
                tracing::debug!(cluster = %names.cluster, action = ?ActionName(action), "done");
                None
            }
            Err(error) => {
                tracing::warn!(cluster = %names.cluster, action = ?ActionName(action), %error, "action failed");
                failed.insert(subject.clone());
                (!moved_on(&error)).then(|| format!("{error}; {}", failures::hint(action)))
            }
        };
        report.outcomes.push(Outcome { subject, action: format!("{:?}", ActionName(action)), error });
    }
    report
}

/// Write the planned status with the outcome of this reconcile's actions (`held`: subjects held
/// back) and of a snapshot that finished since, and publish the condition events. Returns the
/// number of actions executed and the tick of a snapshot the written status claims, which the
/// caller runs in the background ([`super::snapshot_job`]); a failed status write is the
/// reconcile's error (the controller retries with backoff).
pub async fn write_status<K: Kube>(
    kube: &K,
    obs: &Observed,
    plan: &Plan,
    outcomes: &[Outcome],
    held: &[String],
    finished: Option<&SnapshotDone>,
    clock: &dyn Clock,
) -> Result<(usize, Option<Timestamp>, MemgraphClusterStatus), ReconcileError> {
    let names = ClusterNames::new(obs.cluster.name.clone(), obs.cluster.namespace.clone());
    let ns = names.namespace.as_str();
    let mut status = (*plan.status).clone();
    // A condition transitions when its status differs from the stored one (rounds of this
    // reconcile may have passed through other states that were never written).
    for c in &mut status.conditions {
        if let Some(stored) = obs.status.conditions.iter().find(|s| s.type_ == c.type_ && s.status == c.status) {
            c.last_transition_time = stored.last_transition_time.clone();
        }
    }
    if let Some(failover) = status.failover.as_mut() {
        super::plan::failover::keep_stored_seen(failover, obs.status.failover.as_ref());
    }
    let mut events = failures::record(&mut status, &obs.status, outcomes, |s| held.iter().any(|h| h == s), clock.now());
    if let Some(done) = finished {
        events.extend(merge_snapshot(&mut status, done, clock.now()));
        if let Some((state, reason, message)) =
            super::plan::backup::set_health(&obs.spec, &mut status, clock.now(), obs.cluster.generation)
        {
            let type_ = if state == "False" { EventType::Warning } else { EventType::Normal };
            events.push(PlannedEvent {
                type_,
                reason: reason.to_owned(),
                action: "Check".to_owned(),
                note: message,
                condition: true,
                subject: None,
            });
        }
    }
    // A backup is recorded only with the snapshot it uploads: if that snapshot was held back
    // (its subject failed earlier in this reconcile), so is the backup.
    let running = |s: &MemgraphClusterStatus| s.backups.as_ref().and_then(|b| b.running.clone());
    let snapshots = plan.actions.iter().any(|a| matches!(a, Action::CreateSnapshot { .. }));
    if !snapshots && running(&status).is_some() && running(&status) != running(&obs.status) {
        let before = obs.status.backups.clone().unwrap_or_default();
        if let Some(b) = status.backups.as_mut() {
            b.running = before.running;
            b.last_request = before.last_request;
        }
    }
    // Claiming a tick or recording a backup is scheduled work: it must not happen twice.
    // So is a failover's step: two operators' views must not record two different intents.
    let failover_step = |s: &MemgraphClusterStatus| {
        s.failover.as_ref().map(|f| (f.generation, f.main.clone(), f.intent.as_ref().map(|i| i.generation)))
    };
    let claims_tick = status.last_snapshot_tick != obs.status.last_snapshot_tick
        || status.backups.as_ref().and_then(|b| b.running.as_ref())
            != obs.status.backups.as_ref().and_then(|b| b.running.as_ref())
        || failover_step(&status) != failover_step(&obs.status);
    let mut executed = 0;
    if status != obs.status {
        // A status claiming a tick or recording a backup is written only over the view it was
        // planned from. (Other writes cannot put back older bookkeeping either: the reconcile
        // refuses a view older than one this process wrote, see `Memory::accept`.)
        let guard = claims_tick.then_some(obs.cluster.resource_version.as_str());
        kube.patch_status(ns, &names.cluster, &status, guard).await?;
        executed += 1;
    }
    events.splice(
        0..0,
        plan.actions.iter().filter_map(|a| match a {
            Action::Event(e) if e.condition => Some(e.clone()),
            _ => None,
        }),
    );
    for event in &events {
        publish(kube, obs, event).await;
        executed += 1;
    }
    let job = plan.actions.iter().find_map(|a| match a {
        Action::CreateSnapshot { tick } if claims_tick => Some(*tick),
        _ => None,
    });
    Ok((executed, job, status))
}

/// After the replication commands of a reconcile whose status is already written: record the
/// commands' failures (and clear the records of those that succeeded) with one more patch, only
/// if that changes anything.
pub async fn write_replication_outcomes<K: Kube>(
    kube: &K,
    obs: &Observed,
    written: &MemgraphClusterStatus,
    outcomes: &[Outcome],
    clock: &dyn Clock,
) -> Result<usize, ReconcileError> {
    let names = ClusterNames::new(obs.cluster.name.clone(), obs.cluster.namespace.clone());
    let mut status = written.clone();
    let ran = |s: &str| outcomes.iter().any(|o| o.subject == s);
    let events = failures::record(&mut status, written, outcomes, |s| !ran(s), clock.now());
    let mut executed = 0;
    if status != *written {
        kube.patch_status(&names.namespace, &names.cluster, &status, None).await?;
        executed += 1;
    }
    for event in &events {
        publish(kube, obs, event).await;
        executed += 1;
    }
    Ok(executed)
}

/// The events and failure outcome of a finished snapshot, to be written with the status.
fn snapshot_result(tick: Timestamp, result: &Result<SnapshotOutcome, String>) -> (PlannedEvent, Option<Outcome>) {
    let event = |type_, reason: &str, note: String| PlannedEvent {
        type_,
        reason: reason.to_owned(),
        action: "CreateSnapshot".to_owned(),
        note,
        condition: false,
        subject: None,
    };
    match result {
        Ok(SnapshotOutcome::Created(path)) => (
            event(
                EventType::Normal,
                "SnapshotCreated",
                format!(
                    "Created the scheduled snapshot of {}{}",
                    tick,
                    path.as_deref().map(|p| format!(": {p}")).unwrap_or_default()
                ),
            ),
            Some(Outcome { subject: SNAPSHOT_SUBJECT.to_owned(), action: "CreateSnapshot".to_owned(), error: None }),
        ),
        Ok(SnapshotOutcome::Unchanged) => (
            event(
                EventType::Normal,
                "SnapshotSkipped",
                format!("Nothing changed since the last snapshot, so Memgraph wrote none for the tick of {}", tick),
            ),
            Some(Outcome { subject: SNAPSHOT_SUBJECT.to_owned(), action: "CreateSnapshot".to_owned(), error: None }),
        ),
        Err(e) => (
            event(
                EventType::Warning,
                "SnapshotFailed",
                format!("The snapshot of {tick} failed: {e}. The next tick tries again"),
            ),
            Some(Outcome {
                subject: SNAPSHOT_SUBJECT.to_owned(),
                action: "CreateSnapshot".to_owned(),
                error: Some(format!("{e}; {}", failures::hint(&Action::CreateSnapshot { tick }))),
            }),
        ),
    }
}

/// Add a finished snapshot to the status being written: its time, its events, and its failure
/// (recorded like any failing action); then its backup, if it had one.
pub fn merge_snapshot(
    status: &mut crate::api::MemgraphClusterStatus,
    done: &SnapshotDone,
    now: k8s_openapi::jiff::Timestamp,
) -> Vec<PlannedEvent> {
    let mut events = Vec::new();
    if let (Some(tick), Some(result)) = (done.tick, &done.result) {
        // Only a snapshot confirmed to exist is recorded as taken.
        if matches!(result, Ok(SnapshotOutcome::Created(_))) && done.verified.as_ref().is_none_or(Result::is_ok) {
            status.last_snapshot_time = Some(Time(done.finished));
        }
        if let Some(verified) = &done.verified {
            events.extend(record_snapshot_check(status, verified, now));
        }
        let (event, outcome) = snapshot_result(tick, result);
        let before = status.clone();
        events.push(event);
        events.extend(failures::record(
            status,
            &before,
            &outcome.into_iter().collect::<Vec<_>>(),
            |s| s != SNAPSHOT_SUBJECT,
            now,
        ));
    }
    if let Some(backup) = &done.backup {
        let (warning, reason, note) = super::plan::backup::record_result(status, backup, done.finished);
        events.push(PlannedEvent {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.to_owned(),
            action: "Backup".to_owned(),
            note,
            condition: false,
            subject: None,
        });
    }
    events
}

/// Condition of the check of each snapshot taken (see [`super::snapshot_job::verify`]).
pub const SNAPSHOTS_VERIFIED: &str = "SnapshotsVerified";

/// Set `SnapshotsVerified` from the check of the snapshot just taken; an event when it fails,
/// or passes again after failing.
fn record_snapshot_check(
    status: &mut crate::api::MemgraphClusterStatus,
    verified: &Result<String, String>,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<PlannedEvent> {
    let (state, reason, message) = match verified {
        Ok(m) => ("True", "SnapshotVerified", m.clone()),
        Err(e) => (
            "False",
            "SnapshotValidationFailed",
            format!("{e}. status.lastSnapshotTime is not advanced; check the write pod's disk and Memgraph's log"),
        ),
    };
    let previous = status.conditions.iter().position(|c| c.type_ == SNAPSHOTS_VERIFIED);
    let was = previous.map(|i| status.conditions[i].status.clone());
    let transition = match previous.map(|i| &status.conditions[i]) {
        Some(c) if c.status == state => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        type_: SNAPSHOTS_VERIFIED.to_owned(),
        status: state.to_owned(),
        reason: reason.to_owned(),
        message: message.clone(),
        last_transition_time: transition,
        observed_generation: status.observed_generation,
    };
    match previous {
        Some(i) => status.conditions[i] = condition,
        None => status.conditions.push(condition),
    }
    let event = |type_| PlannedEvent {
        type_,
        reason: reason.to_owned(),
        action: "ValidateSnapshot".to_owned(),
        note: message.clone(),
        condition: true,
        subject: None,
    };
    match (state, was.as_deref()) {
        ("False", _) => Some(event(EventType::Warning)),
        ("True", Some("False")) => Some(event(EventType::Normal)),
        _ => None,
    }
}

/// Short description of an action for logs and failure records (objects are not dumped whole).
struct ActionName<'a>(&'a Action);

impl std::fmt::Debug for ActionName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Action::Apply(o) => write!(f, "Apply {:?} {}", o.key().kind, o.key().name),
            Action::Delete(k) => write!(f, "Delete {:?} {}", k.kind, k.name),
            Action::SetReplicaRole(i) => write!(f, "SetReplicaRole {}", i.replica_name()),
            Action::Promote { instance, demote: None } => write!(f, "Promote {}", instance.replica_name()),
            Action::Promote { instance, demote: Some(old) } => {
                write!(f, "Promote {} after demoting {}", instance.replica_name(), old.replica_name())
            }
            Action::RegisterReplica { main, instance, mode } => {
                write!(f, "RegisterReplica {} {} on {}", instance.replica_name(), mode.as_cypher(), main.replica_name())
            }
            Action::DropReplica { main, name } => write!(f, "DropReplica {name} on {}", main.replica_name()),
            Action::Label { pod, role, .. } => write!(f, "Label {pod} {}", role.as_deref().unwrap_or("(none)")),
            Action::StopPod { pod, .. } => write!(f, "StopPod {pod}"),
            Action::SetFinalizers { .. } => write!(f, "SetFinalizers"),
            Action::CreateSnapshot { .. } => write!(f, "CreateSnapshot"),
            Action::CreateAgentKey(_) => write!(f, "CreateAgentKey"),
            Action::Event(e) => write!(f, "Event {}", e.reason),
        }
    }
}
