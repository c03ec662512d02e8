//! Backups (`spec.snapshot.s3`): when one starts, when one is given up, and the
//! `BackupsHealthy` condition. A backup starts with the snapshot of a schedule tick, or of a
//! request (the `memgraph.io/backup-request` annotation changed); it is recorded in
//! `status.backups.running` in the same status write that claims the snapshot, so no look at
//! the cluster can start it twice, and no second backup starts while one is recorded. The job
//! itself runs beside the reconciles (`reconcile::backup_job`) and its result is merged into the
//! status by [`record_result`].

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::{Action, Facts, Planner};
use crate::api::{
    BackupsStatus, CompletedBackup, FailedBackup, MemgraphClusterSpec, MemgraphClusterStatus, RunningBackup,
};
use crate::backup::manifest::{self, Manifest};
use crate::reconcile::backup_job::AGENT_KEY;
use crate::schedule::Schedule;

/// Annotation on a cluster that requests a backup now: any value other than the last one
/// acted on (`status.backups.lastRequest`).
pub const BACKUP_REQUEST_ANNOTATION: &str = "memgraph.io/backup-request";
/// Condition type.
pub const BACKUPS_HEALTHY: &str = "BackupsHealthy";
/// After a backup's deadline the job reports its own failure; if no result comes (the job
/// died with the operator process) the plan records the failure this much later.
pub const DEADLINE_SLACK: Duration = Duration::from_secs(30);

/// What a finished backup job found.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupResult {
    /// The backup id.
    pub id: String,
    /// Its manifest, or why it failed (with what to do).
    pub outcome: Result<Manifest, String>,
    /// Complete backups in the store after retention, when the store could be listed.
    pub kept: Option<i32>,
}

/// Plan the start and the deadline of backups. Runs after the snapshot schedule.
pub(super) fn plan_backup(p: &mut Planner<'_>, facts: &Facts) {
    let old = p.obs.status.backups.clone();
    let Some(s3) = p.spec.snapshot.s3.as_ref().filter(|s3| s3.enabled && p.spec.snapshot.enabled) else {
        p.backups = old;
        return;
    };
    if !p.obs.agent_key_exists {
        plan_agent_key(p);
    }
    let mut b = old.unwrap_or_default();
    b.enabled_since.get_or_insert(Time(p.now));
    if let Some(running) = b.running.clone() {
        let give_up = running.deadline.0 + DEADLINE_SLACK;
        if p.now > give_up && !p.obs.snapshot_running {
            b.last_failed = Some(FailedBackup {
                id: running.id.clone(),
                time: Time(p.now),
                error: format!(
                    "did not finish within spec.snapshot.s3.timeoutSeconds ({}s); no manifest was written, so it is \
                     not a backup. The next scheduled snapshot tries again",
                    s3.timeout_seconds
                ),
            });
            b.running = None;
        } else {
            p.due(give_up);
        }
    }
    let scheduled = p.actions.iter().any(|a| matches!(a, Action::CreateSnapshot { .. }));
    // The backup agent runs beside the write pod: after a failover to a read pod, its snapshots
    // are not there to upload, and backups wait until the write pod is the MAIN again.
    let agent_on_main = facts.main_instance == crate::names::Instance::Write;
    if b.running.is_none() && !p.obs.snapshot_running && agent_on_main {
        let request = p.obs.cluster.backup_request.clone().filter(|r| b.last_request.as_ref() != Some(r));
        let trigger = if scheduled {
            Some("schedule")
        } else if let Some(value) = request.filter(|_| facts.main.routable()) {
            // A backup now: its snapshot counts as the schedule's too.
            p.push(Action::CreateSnapshot { tick: p.now });
            p.snapshot_tick = Some(p.now);
            b.last_request = Some(value);
            Some("request")
        } else {
            None
        };
        if let Some(trigger) = trigger {
            let timeout = Duration::from_secs(u64::try_from(s3.timeout_seconds).unwrap_or(3600));
            let deadline = p.now + timeout;
            b.running = Some(RunningBackup {
                id: manifest::backup_id(p.now),
                started_at: Time(p.now),
                deadline: Time(deadline),
                trigger: trigger.to_owned(),
            });
            p.due(deadline + DEADLINE_SLACK);
        }
    }
    p.backups = Some(b);
}

/// Create the Secret with the agent's request-signing key. The key was drawn by the reconcile;
/// a key of zeros means the system had no randomness to give, and no Secret is better than a
/// guessable one (the backup then fails saying the Secret is missing).
fn plan_agent_key(p: &mut Planner<'_>) {
    let key = &p.obs.fresh_agent_key;
    if key.len() < 64 || key.bytes().all(|b| b == b'0') {
        return;
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(p.names.backup_agent_secret()),
            namespace: Some(p.names.namespace.clone()),
            labels: Some(p.names.common_labels()),
            owner_references: Some(vec![p.obs.cluster.owner_reference()]),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(AGENT_KEY.to_owned(), key.clone())])),
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    };
    p.push(Action::CreateAgentKey(Box::new(secret)));
}

/// Merge a finished backup into the status; returns the event to publish (reason, note,
/// warning?).
pub fn record_result(
    status: &mut MemgraphClusterStatus,
    result: &BackupResult,
    now: Timestamp,
) -> (bool, &'static str, String) {
    let b = status.backups.get_or_insert_with(BackupsStatus::default);
    if b.running.as_ref().is_some_and(|r| r.id == result.id) {
        b.running = None;
    }
    if let Some(kept) = result.kept {
        b.kept = Some(kept);
    }
    match &result.outcome {
        Ok(m) => {
            let duration = m.finished_at.duration_since(m.started_at).as_secs().max(0);
            b.last_successful = Some(CompletedBackup {
                id: m.backup_id.clone(),
                time: Time(m.finished_at),
                size_bytes: i64::try_from(m.snapshot.size_bytes).unwrap_or(i64::MAX),
                duration_seconds: duration,
                snapshot: m.snapshot.name.clone(),
                memgraph_version: m.memgraph_version.clone(),
            });
            status.last_s3_backup_time = Some(Time(m.finished_at));
            (
                false,
                "BackupCompleted",
                format!(
                    "Backup {} holds snapshot {} ({} bytes, SHA-256 {}) and its manifest",
                    m.backup_id, m.snapshot.name, m.snapshot.size_bytes, m.snapshot.sha256
                ),
            )
        }
        Err(error) => {
            b.last_failed = Some(FailedBackup { id: result.id.clone(), time: Time(now), error: error.clone() });
            (true, "BackupFailed", format!("Backup {} failed: {error}", result.id))
        }
    }
}

/// Length of one period of a schedule (between its next two ticks after `at`).
fn period(schedule: &str, at: Timestamp) -> Option<Duration> {
    let schedule = Schedule::parse(schedule).ok()?;
    let first = schedule.next_after(at)?;
    let second = schedule.next_after(first)?;
    Some(second.duration_since(first).unsigned_abs())
}

/// The `BackupsHealthy` condition as (status, reason, message), or `None` when backups are off.
pub fn health(
    spec: &MemgraphClusterSpec,
    status: &MemgraphClusterStatus,
    now: Timestamp,
) -> Option<(&'static str, &'static str, String)> {
    spec.snapshot.s3.as_ref().filter(|s3| s3.enabled && spec.snapshot.enabled)?;
    let b = status.backups.clone().unwrap_or_default();
    let last_ok = b.last_successful.as_ref().map(|s| s.time.0);
    if let Some(failed) = b.last_failed.as_ref().filter(|f| last_ok.is_none_or(|ok| f.time.0 > ok)) {
        return Some(("False", "LastBackupFailed", format!("Backup {} failed: {}", failed.id, failed.error)));
    }
    if status.failover.as_ref().is_some_and(|f| f.main != "write") {
        return Some((
            "False",
            "PausedByFailover",
            "Backups are paused: after a failover a read pod is the MAIN, and the backup agent runs beside the write \
             pod. They resume when the write pod is the MAIN again (spec.failover.switchBack moves it back once it \
             has caught up)"
                .to_owned(),
        ));
    }
    let since = last_ok.or(b.enabled_since.as_ref().map(|t| t.0)).unwrap_or(now);
    if let Some(period) = period(&spec.snapshot.schedule, since)
        && now.duration_since(since).unsigned_abs() > period * 2
        && b.running.is_none()
    {
        return Some((
            "False",
            "BackupOverdue",
            "No backup has succeeded within two schedule periods; check that the write pod is ready and its \
             backup-agent container is running, and see status.backups"
                .to_owned(),
        ));
    }
    Some(match &b.last_successful {
        Some(s) => ("True", "BackupsSucceeding", format!("The last backup, {}, completed", s.id)),
        None => ("True", "NoBackupYet", "No backup has been due yet".to_owned()),
    })
}

/// Set the `BackupsHealthy` condition of `status` (removing it when backups are off); returns
/// whether it changed status or reason.
pub fn set_health(
    spec: &MemgraphClusterSpec,
    status: &mut MemgraphClusterStatus,
    now: Timestamp,
    generation: Option<i64>,
) -> Option<(&'static str, &'static str, String)> {
    let verdict = health(spec, status, now);
    let previous = status.conditions.iter().position(|c| c.type_ == BACKUPS_HEALTHY);
    let Some((state, reason, message)) = verdict else {
        if let Some(i) = previous {
            status.conditions.remove(i);
        }
        return None;
    };
    let old = previous.map(|i| status.conditions.remove(i));
    let changed = old.as_ref().is_none_or(|c| c.status != state || c.reason != reason);
    let transition = match &old {
        Some(c) if c.status == state => c.last_transition_time.clone(),
        _ => Time(now),
    };
    status.conditions.push(Condition {
        type_: BACKUPS_HEALTHY.to_owned(),
        status: state.to_owned(),
        reason: reason.to_owned(),
        message: message.clone(),
        last_transition_time: transition,
        observed_generation: generation,
    });
    // Only a change to or from a problem is news.
    let was_problem = old.as_ref().is_some_and(|c| c.status == "False");
    (changed && (state == "False" || was_problem)).then_some((state, reason, message))
}
