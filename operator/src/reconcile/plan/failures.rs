//! Actions that keep failing. A failed action is remembered in `status.failingActions` by its
//! subject; the subject's actions are held back until its backoff has passed (so a registration
//! that always fails is not dropped and made again in a loop), and from the second failure in a
//! row the `ActionsSucceeding` condition and a Warning event name the cause and the fix. When the
//! subject's action succeeds, or is no longer needed, the record goes.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::{Action, PlannedEvent, Planner};
use crate::api::{ActionFailure, MemgraphClusterStatus};
use crate::kube_api::EventType;

/// The subject of scheduled snapshots.
pub const SNAPSHOT_SUBJECT: &str = "snapshot";
/// Failures in a row after which a failure is reported as a condition and an event.
pub const REPEATED: i32 = 2;
/// First retry delay; it doubles with every failure in a row.
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// Longest retry delay.
const LONGEST_RETRY: Duration = Duration::from_secs(300);

/// Delay before retrying after `failures` failures in a row.
pub fn retry_delay(failures: i32) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(LONGEST_RETRY)
}

/// Longest retry delay of a label: routing is what clients feel, and a label patch is cheap.
const LONGEST_LABEL_RETRY: Duration = Duration::from_secs(10);

/// Longest retry delay of a promotion: it runs while no MAIN is labelled, so writes wait for
/// it, and a demotion Memgraph refused because a commit was in flight succeeds a moment later.
const LONGEST_PROMOTE_RETRY: Duration = Duration::from_secs(1);

/// Delay before retrying `action` on `subject` after `failures` failures in a row.
pub fn retry_delay_for(subject: &str, action: &str, failures: i32) -> Duration {
    let delay = retry_delay(failures);
    if subject.starts_with("label ") {
        delay.min(LONGEST_LABEL_RETRY)
    } else if action.starts_with("Promote") {
        delay.min(LONGEST_PROMOTE_RETRY)
    } else {
        delay
    }
}

/// Remove the actions (and their events) of subjects still backing off; returns those subjects.
pub(super) fn hold_back(p: &mut Planner<'_>) -> Vec<String> {
    let now = p.now;
    let waiting: Vec<(String, Timestamp)> = p
        .obs
        .status
        .failing_actions
        .iter()
        .filter(|f| f.retry_after.0 > now)
        .map(|f| (f.subject.clone(), f.retry_after.0))
        .collect();
    let mut held = Vec::new();
    p.actions.retain(|a| {
        let Some(subject) = a.subject() else { return true };
        let hold = waiting.iter().any(|(s, _)| *s == subject);
        if hold && !held.contains(&subject) {
            held.push(subject);
        }
        !hold
    });
    for (subject, at) in waiting {
        if held.contains(&subject) {
            p.due(at);
        }
    }
    if held.iter().any(|s| s == SNAPSHOT_SUBJECT) {
        // The tick stays unclaimed until the snapshot may be tried again.
        p.snapshot_tick = None;
    }
    held
}

/// What happened to one action of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The action's subject.
    pub subject: String,
    /// The action, for people (`RegisterReplica read_1`).
    pub action: String,
    /// Why it failed, with what to do about it; `None` when it succeeded.
    pub error: Option<String>,
}

/// Record the outcomes of a plan's actions in `status`: new and repeated failures, cleared
/// successes, and the `ActionsSucceeding` condition. Records of subjects for which `keep` holds
/// (held back, or not part of these outcomes) stay as they were in `old`; every other record
/// goes. Returns the events to publish with the status.
pub fn record(
    status: &mut MemgraphClusterStatus,
    old: &MemgraphClusterStatus,
    outcomes: &[Outcome],
    keep: impl Fn(&str) -> bool,
    now: Timestamp,
) -> Vec<PlannedEvent> {
    let mut events = Vec::new();
    let mut records: Vec<ActionFailure> = Vec::new();
    for outcome in outcomes {
        let Some(error) = &outcome.error else { continue };
        if records.iter().any(|r| r.subject == outcome.subject) {
            continue;
        }
        let before = old.failing_actions.iter().find(|f| f.subject == outcome.subject);
        let failures = before.map_or(1, |f| f.failures.saturating_add(1));
        let retry = retry_delay_for(&outcome.subject, &outcome.action, failures);
        if failures == REPEATED {
            events.push(PlannedEvent {
                type_: EventType::Warning,
                reason: "ActionFailing".to_owned(),
                action: outcome.action.clone(),
                note: format!("{} failed {failures} times in a row: {error}", outcome.action),
                condition: true,
                subject: None,
            });
        }
        records.push(ActionFailure {
            action: outcome.action.clone(),
            subject: outcome.subject.clone(),
            failures,
            since: before.map_or_else(|| Time(now), |f| f.since.clone()),
            retry_after: Time(now.checked_add(retry).unwrap_or(now)),
            message: error.clone(),
        });
    }
    let failed_now: Vec<String> = records.iter().map(|r| r.subject.clone()).collect();
    records
        .extend(old.failing_actions.iter().filter(|f| !failed_now.contains(&f.subject) && keep(&f.subject)).cloned());
    records.sort_by(|a, b| a.subject.cmp(&b.subject));
    status.failing_actions = records;
    events.extend(condition(status, old, now));
    events
}

/// The `ActionsSucceeding` condition from the records in `status`.
fn condition(status: &mut MemgraphClusterStatus, old: &MemgraphClusterStatus, now: Timestamp) -> Option<PlannedEvent> {
    let repeated: Vec<&ActionFailure> = status.failing_actions.iter().filter(|f| f.failures >= REPEATED).collect();
    let (value, reason, message) = if repeated.is_empty() {
        ("True", "Succeeding", "No action is failing repeatedly".to_owned())
    } else {
        let list: Vec<String> = repeated
            .iter()
            .map(|f| format!("{} failed {} times since {}: {}", f.action, f.failures, f.since.0, f.message))
            .collect();
        ("False", "ActionFailing", format!("{}. Retried with backoff", list.join("; ")))
    };
    let previous = old.conditions.iter().find(|c| c.type_ == super::ACTIONS_SUCCEEDING);
    let transition = match previous {
        Some(c) if c.status == value => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let generation = status.observed_generation;
    let new = Condition {
        type_: super::ACTIONS_SUCCEEDING.to_owned(),
        status: value.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: transition,
        observed_generation: generation,
    };
    status.conditions.retain(|c| c.type_ != super::ACTIONS_SUCCEEDING);
    status.conditions.push(new);
    // Recovery is announced; the failure itself already was, by its ActionFailing event.
    (previous.is_some_and(|c| c.status == "False") && value == "True").then(|| PlannedEvent {
        type_: EventType::Normal,
        reason: "ActionsSucceeding".to_owned(),
        action: "Check".to_owned(),
        note: "Actions that were failing succeed again".to_owned(),
        condition: true,
        subject: None,
    })
}

/// What to do about a failed action, for the record and the condition.
pub fn hint(action: &Action) -> &'static str {
    match action {
        Action::RegisterReplica { .. } => {
            "check that the replica's pod is reachable from the write pod on port 10000 (a NetworkPolicy may block \
             it) and that its image supports the replication mode (STRICT_SYNC needs Memgraph 3.5 or later)"
        }
        Action::DropReplica { .. } | Action::SetReplicaRole(_) => {
            "check the MAIN's log; the operator retries with backoff"
        }
        Action::Promote { .. } => {
            "check the promoted replica's log; the failover is recorded in status.failover.intent and the operator \
             retries it, or promotes another replica if this one is lost"
        }
        Action::Apply(_) | Action::Delete(_) | Action::SetFinalizers { .. } => {
            "the API server refused the change: check admission policies and the operator's RBAC"
        }
        Action::Label { .. } => "the API server refused the label: check admission policies and the operator's RBAC",
        Action::StopPod { .. } => {
            "the API server refused to delete the old MAIN's pod: check admission policies and the operator's RBAC \
             (delete on pods); until it is stopped, clients still connected to it may write to it"
        }
        Action::CreateSnapshot { .. } => {
            "check the write pod's disk space and log; the next scheduled tick tries again"
        }
        Action::CreateAgentKey(_) => "the operator needs RBAC to create Secrets in the cluster's namespace",
        Action::Event(_) => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn failed(subject: &str) -> Outcome {
        Outcome { subject: subject.into(), action: format!("Register {subject}"), error: Some("refused".into()) }
    }

    #[test]
    fn retries_back_off_and_are_capped() {
        let delays: Vec<u64> = (1..=10).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(&delays[..4], &[5, 10, 20, 40]);
        assert_eq!(delays[9], 300);
        assert_eq!(retry_delay_for("label c-write-0", "Label", 6).as_secs(), 10, "routing is retried soon");
        assert_eq!(retry_delay_for("replica read_1", "RegisterReplica read_1", 6).as_secs(), 160);
        let promote = retry_delay_for("replica read_1", "Promote read_1 after demoting write", 6);
        assert_eq!(promote.as_secs(), 1, "writes wait for a promotion");
    }

    #[test]
    fn a_repeated_failure_becomes_a_condition_and_clears_on_success() {
        let t0 = ts("2026-06-01T12:00:00Z");
        let mut first = MemgraphClusterStatus::default();
        let none = |_: &str| false;
        let events = record(&mut first, &MemgraphClusterStatus::default(), &[failed("replica read_1")], none, t0);
        assert_eq!(first.failing_actions.len(), 1);
        assert!(events.is_empty(), "one failure is not yet worth a warning: {events:?}");
        let c = first.conditions.iter().find(|c| c.type_ == super::super::ACTIONS_SUCCEEDING).expect("condition");
        assert_eq!(c.status, "True");

        let t1 = ts("2026-06-01T12:00:06Z");
        let mut second = first.clone();
        let events = record(&mut second, &first, &[failed("replica read_1")], none, t1);
        assert_eq!(second.failing_actions[0].failures, 2);
        assert_eq!(second.failing_actions[0].since.0, t0, "the run of failures started at the first");
        assert_eq!(second.failing_actions[0].retry_after.0, ts("2026-06-01T12:00:16Z"));
        assert!(events.iter().any(|e| e.reason == "ActionFailing" && e.type_ == EventType::Warning));
        let c = second.conditions.iter().find(|c| c.type_ == super::super::ACTIONS_SUCCEEDING).expect("condition");
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "ActionFailing"));
        assert!(c.message.contains("refused"), "{}", c.message);

        let mut held = second.clone();
        record(&mut held, &second, &[], |s| s == "replica read_1", t1);
        assert_eq!(held.failing_actions, second.failing_actions, "held back: the record stays");

        let mut healed = second.clone();
        let ok = Outcome { error: None, ..failed("replica read_1") };
        let events = record(&mut healed, &second, &[ok], none, t1);
        assert!(healed.failing_actions.is_empty());
        assert!(events.iter().any(|e| e.reason == "ActionsSucceeding"));
    }
}
