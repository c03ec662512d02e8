//! Live validation (`spec.validation`, plan §4.6): which checks are due, from the times in
//! `status.validation` alone, and what a finished check means for the status, its conditions
//! and its events.
//!
//! A check is claimed in the status write of the reconcile that finds it due (its start time is
//! recorded before it runs, so a reconcile that looks twice, or an operator that restarts, never
//! runs it twice for one slot); it then runs beside the reconciles
//! ([`crate::reconcile::validation_job`]) and the next reconcile reads its result. A result that
//! changes nothing a person acts on (same instances answering, same verdicts, lag on the same
//! side of the threshold) waits for the next status write that happens anyway, at most one
//! connectivity interval later: a healthy cluster costs one status patch per interval and no
//! events.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::{Facts, Planner};
use crate::api::{ReplicationMode, ValidationStatus};
use crate::kube_api::EventType;
use crate::names::Instance;

/// How long an ASYNC replica may take to serve the test write (plan §4.6.1).
pub const TEST_LIMIT_ASYNC: Duration = Duration::from_secs(5);
/// How long a SYNC or STRICT_SYNC replica may take: it confirmed the commit already.
pub const TEST_LIMIT_SYNC: Duration = Duration::from_secs(2);
/// How long a lag measurement waits for a replica to see the test write (plan §4.6.3).
pub const LAG_GIVE_UP: Duration = Duration::from_secs(30);

/// Verdict of a replica that served the test write within the mode's limit.
pub const PASSED: &str = "Passed";
/// Verdict of a replica that did not.
pub const FAILED: &str = "Failed";

/// Checks a reconcile claimed: recorded in the status it writes, then run beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationClaim {
    /// When it was claimed (the time written to status).
    pub at: Timestamp,
    /// Instances to ask `RETURN 1`, by status name; empty when connectivity is not due.
    pub ping: Vec<(String, Instance)>,
    /// Instances not asked because their pod does not exist or is not Ready: they count as
    /// not responding, but Kubernetes already says why, so they get no event.
    pub skipped: Vec<String>,
    /// The write-then-read probe, when a replication test or a lag measurement is due.
    pub probe: Option<ProbeClaim>,
}

impl ValidationClaim {
    /// This claim with the checks an earlier round of the same reconcile claimed: the status
    /// this reconcile writes records both (each round plans from the status the one before
    /// planned), so both must run. The later round knows the replicas better.
    pub fn joined(self, earlier: &ValidationClaim) -> ValidationClaim {
        let (ping, skipped) = if self.ping.is_empty() && self.skipped.is_empty() {
            (earlier.ping.clone(), earlier.skipped.clone())
        } else {
            (self.ping, self.skipped)
        };
        let probe = match (self.probe, &earlier.probe) {
            (Some(now), Some(before)) => Some(ProbeClaim {
                replication_test: now.replication_test || before.replication_test,
                lag: now.lag || before.lag,
                give_up: now.give_up.max(before.give_up),
                ..now
            }),
            (now, before) => now.or_else(|| before.clone()),
        };
        ValidationClaim { at: self.at, ping, skipped, probe }
    }
}

/// One test write on the MAIN and reads of it on the replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeClaim {
    /// The test node's id (drawn from the injected source of randomness).
    pub id: String,
    /// The MAIN the test writes to.
    pub main: Instance,
    /// Replicas to read it on.
    pub replicas: Vec<Instance>,
    /// It counts as a replication test.
    pub replication_test: bool,
    /// It counts as a lag measurement.
    pub lag: bool,
    /// A replica that sees the write later than this failed the replication test.
    pub limit: Duration,
    /// How long the reads go on.
    pub give_up: Duration,
    /// The replication mode: under STRICT_SYNC a write that a replica does not confirm is
    /// aborted everywhere, which is that replica's problem, not the MAIN's.
    pub mode: ReplicationMode,
}

/// What became of the test write.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// Committed.
    Committed,
    /// SYNC: committed on the MAIN and the reachable replicas, with an error naming replicas.
    CommittedWithError(String),
    /// STRICT_SYNC: aborted on every instance because a replica did not confirm.
    Aborted(String),
    /// The MAIN did not take it (unreachable, refused): no verdict on any replica.
    Failed(String),
}

/// What one replica's reads found.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSeen {
    /// The replica.
    pub instance: Instance,
    /// Milliseconds from the write to the first read that saw it.
    pub seen_after_ms: Option<i64>,
    /// Some read was answered (an instance that never answered is no evidence either way).
    pub answered: bool,
    /// The last read error.
    pub error: Option<String>,
}

/// A finished probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeDone {
    /// What was claimed.
    pub claim: ProbeClaim,
    /// The write.
    pub write: WriteOutcome,
    /// The reads.
    pub seen: Vec<ReplicaSeen>,
}

/// A finished validation job.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationDone {
    /// When it was claimed.
    pub claimed: Timestamp,
    /// When it ended.
    pub finished: Timestamp,
    /// `RETURN 1` answers by instance status name (empty when connectivity was not checked),
    /// the skipped instances of the claim included as not responding.
    pub ping: Vec<(String, Result<(), String>)>,
    /// The claim's skipped instances.
    pub skipped: Vec<String>,
    /// The probe, when one ran.
    pub probe: Option<ProbeDone>,
}

fn after(t: Option<&Time>, interval: i32) -> Option<Timestamp> {
    let secs = i64::from(interval.max(1));
    t.and_then(|t| t.0.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(secs)).ok())
}

/// How far ahead a check that is not yet due joins one that is: every claim is a status patch,
/// so checks falling due close together share one (a 30 s connectivity check and a 60 s lag
/// measurement would otherwise drift apart and cost two patches a minute).
const COALESCE: k8s_openapi::jiff::SignedDuration = k8s_openapi::jiff::SignedDuration::from_secs(15);

/// When a check falls due: `None` when it is due now (never run, or its interval has passed).
fn due_at(now: Timestamp, t: Option<&Time>, interval: i32) -> Option<Timestamp> {
    after(t, interval).filter(|at| *at > now)
}

/// Which of the checks (each `Some(when it falls due)` or `None` for due now) run now: all of
/// them when one is due now and the rest fall due within [`COALESCE`]. No wake-up is set for
/// the others: the idle poll (at most `REQUEUE_IDLE`, never longer than the connectivity
/// interval) comes first, so a check runs at most that late and costs no reconcile of its own.
fn settle_due(p: &Planner<'_>, checks: &[Option<Option<Timestamp>>]) -> Vec<bool> {
    let any_now = checks.iter().any(|c| matches!(c, Some(None)));
    let soon = p.now.checked_add(COALESCE).unwrap_or(p.now);
    checks
        .iter()
        .map(|c| match c {
            None => false,
            Some(None) => true,
            Some(Some(at)) => any_now && *at <= soon,
        })
        .collect()
}

/// The replicas a probe reads from: wanted, ready REPLICAs registered on a verified MAIN that
/// reports them in sync.
fn probe_targets(facts: &Facts) -> Vec<Instance> {
    if !facts.main.verified() || facts.main.rows().is_none() {
        return Vec::new();
    }
    facts
        .replicas
        .iter()
        // A replica still catching up is neither routed nor in sync by Memgraph's own account:
        // its catch-up is not the lag clients see, and its state already says it is behind.
        .filter(|(_, r)| {
            r.desired
                && r.ready_replica
                && r.row.as_ref().is_some_and(|row| row.data.as_ref().is_some_and(|d| d.status.is_healthy()))
        })
        .map(|(i, _)| *i)
        .collect()
}

/// Replicas the MAIN does not report `ready`: under STRICT_SYNC the ones that can abort a write.
pub(super) fn strict_unconfirmed(facts: &Facts) -> Vec<String> {
    facts
        .replicas
        .iter()
        .filter(|(_, r)| r.row.as_ref().is_some_and(|row| !row.data.as_ref().is_some_and(|d| d.status.is_healthy())))
        .map(|(i, _)| i.status_name())
        .collect()
}

/// Decide which checks are due and claim them; keep or defer a finished result. Sets
/// `p.validation_claim` and `p.validation_merge`.
pub(super) fn plan_validation(p: &mut Planner<'_>, facts: &Facts) {
    let v = p.spec.validation.clone();
    if !v.enabled {
        return;
    }
    let old = p.obs.status.validation.clone().unwrap_or_default();
    // The result of a running check is picked up by the idle poll (at most REQUEUE_IDLE).
    let claim = if p.obs.validation_running { None } else { claim(p, facts, &old) };
    let unconfirmed = strict_unconfirmed(facts);
    // The first connectivity result creates its conditions: worth a write of its own.
    let first_ping = !p.obs.status.conditions.iter().any(|c| c.type_ == WRITE_CONNECTIVITY);
    let significant = p.obs.validation_done.as_ref().is_some_and(|done| {
        let merged = merge(&old, done, &unconfirmed, v.lag_threshold_ms).0;
        (first_ping && !done.ping.is_empty()) || view(&merged, v.lag_threshold_ms) != view(&old, v.lag_threshold_ms)
    });
    p.validation_merge = p.obs.validation_done.is_some() && (claim.is_some() || significant);
    p.validation_claim = claim;
}

fn claim(p: &Planner<'_>, facts: &Facts, old: &ValidationStatus) -> Option<ValidationClaim> {
    let v = p.spec.validation.clone();
    let now = p.now;
    let targets = probe_targets(facts);
    let verdict =
        |i: &Instance| old.replicas.iter().find(|r| r.name == i.status_name()).and_then(|r| r.replication_test.clone());
    let untested = targets.iter().any(|i| verdict(i).is_none());
    let failing = targets.iter().any(|i| verdict(i).as_deref() == Some(FAILED));
    // A failing replica is tested again at the connectivity interval, so its recovery shows.
    let interval = if failing { v.connectivity_interval_seconds } else { v.replication_test_interval_seconds };
    let probing = !targets.is_empty();
    // A lag over the threshold is measured again at the connectivity interval, so that its end
    // shows as soon as a replica's failure would.
    let lagging = old.replicas.iter().any(|r| r.lag_ms.is_some_and(|l| l > v.lag_threshold_ms));
    let lag_interval =
        if lagging { v.connectivity_interval_seconds.min(v.lag_interval_seconds) } else { v.lag_interval_seconds };
    // Connectivity is checked from the first verified MAIN on: a cluster still being created
    // has nothing to lose connectivity to.
    let started = facts.main.verified() || old.last_connectivity_test.is_some();
    let checks = [
        started.then(|| due_at(now, old.last_connectivity_test.as_ref(), v.connectivity_interval_seconds)),
        probing.then(|| if untested { None } else { due_at(now, old.last_replication_test.as_ref(), interval) }),
        probing.then(|| due_at(now, old.last_lag_measurement.as_ref(), lag_interval)),
    ];
    let [ping_due, replication_due, lag_due] = settle_due(p, &checks)[..] else { return None };
    if !(ping_due || replication_due || lag_due) {
        return None;
    }
    let mut ping = Vec::new();
    let mut skipped = Vec::new();
    if ping_due {
        let reads = (0..u32::try_from(p.spec.read.replicas).unwrap_or(0)).map(Instance::Read);
        // The write pod and the read pods, whichever of them is the MAIN.
        for i in std::iter::once(Instance::Write).chain(reads) {
            if p.obs.pods.get(&i).is_some_and(|pod| pod.ready && !pod.terminating) {
                ping.push((i.status_name(), i));
            } else {
                skipped.push(i.status_name());
            }
        }
    }
    let mode = p.spec.replication.mode;
    let limit = if mode == ReplicationMode::Async { TEST_LIMIT_ASYNC } else { TEST_LIMIT_SYNC };
    let probe = (replication_due || lag_due).then(|| ProbeClaim {
        id: p.obs.fresh_test_id.clone(),
        main: facts.main_instance,
        replicas: targets,
        replication_test: replication_due,
        lag: lag_due,
        limit,
        give_up: if lag_due { LAG_GIVE_UP } else { limit },
        mode,
    });
    Some(ValidationClaim { at: p.now, ping, skipped, probe })
}

/// `done` without its probe if the probe wrote to an instance that is no longer `main`, the
/// MAIN held now (a failover or switchover moved it while the probe ran): its replicas could
/// not have served a write to a demoted MAIN, which says nothing of their replication.
pub fn for_main(mut done: ValidationDone, main: Instance) -> ValidationDone {
    if done.probe.as_ref().is_some_and(|probe| probe.claim.main != main) {
        done.probe = None;
    }
    done
}

/// What a person acts on in `status.validation`: who answers, the verdicts, which side of
/// the threshold the lag is on. Times and figures alone do not make a result worth a write.
fn view(v: &ValidationStatus, threshold: i64) -> impl PartialEq {
    let replicas: Vec<(String, Option<String>, Option<bool>)> = v
        .replicas
        .iter()
        .map(|r| (r.name.clone(), r.replication_test.clone(), r.lag_ms.map(|l| l > threshold)))
        .collect();
    (v.unreachable.clone(), replicas, v.replication_lag_ms.is_some())
}

/// The claim recorded in the status: the start times of the checks it makes.
pub(super) fn record_claim(v: &mut ValidationStatus, claim: &ValidationClaim) {
    let at = Some(Time(claim.at));
    if !claim.ping.is_empty() || !claim.skipped.is_empty() {
        v.last_connectivity_test = at.clone();
    }
    if let Some(probe) = &claim.probe {
        if probe.replication_test {
            v.last_replication_test = at.clone();
        }
        if probe.lag {
            v.last_lag_measurement = at;
        }
    }
}

/// An event about one instance.
pub(super) struct InstanceEvent {
    /// Normal or Warning.
    pub type_: EventType,
    /// Reason.
    pub reason: &'static str,
    /// Words.
    pub note: String,
}

fn seen_verdict(seen: &ReplicaSeen, probe: &ProbeDone) -> Option<(&'static str, String)> {
    let limit = i64::try_from(probe.claim.limit.as_millis()).unwrap_or(i64::MAX);
    match (&probe.write, seen.seen_after_ms) {
        (WriteOutcome::Failed(_), _) => None,
        (WriteOutcome::Aborted(e), _) => Some((
            FAILED,
            format!(
                "the test write was aborted on every instance because a STRICT_SYNC replica did not confirm it: {e}"
            ),
        )),
        (_, Some(ms)) if ms <= limit => Some((PASSED, format!("served the test write after {ms}ms"))),
        (_, Some(ms)) => Some((FAILED, format!("served the test write only after {ms}ms (limit {limit}ms)"))),
        (_, None) if seen.answered => {
            let give_up = probe.claim.give_up.as_millis();
            Some((FAILED, format!("had not served the test write after {give_up}ms although it answered queries")))
        }
        // It never answered: the operator cannot see it, which is no evidence about replication.
        (_, None) => None,
    }
}

/// `old` with the results of `done`; `wanted` lists the replicas whose validation entries
/// exist (empty: only those already in `old`). Also the events the changes deserve.
pub(super) fn merge(
    old: &ValidationStatus,
    done: &ValidationDone,
    strict_unconfirmed: &[String],
    threshold: i64,
) -> (ValidationStatus, Vec<InstanceEvent>) {
    let mut v = old.clone();
    let mut events = Vec::new();
    if !done.ping.is_empty() {
        let unreachable: BTreeSet<String> =
            done.ping.iter().filter(|(_, r)| r.is_err()).map(|(name, _)| name.clone()).collect();
        for (name, result) in &done.ping {
            let was = old.unreachable.contains(name);
            match result {
                Err(e) if !was && !done.skipped.contains(name) => events.push(InstanceEvent {
                    type_: EventType::Warning,
                    reason: "ConnectivityLost",
                    note: format!("Lost connectivity to {name}: {e}"),
                }),
                Ok(()) if was => events.push(InstanceEvent {
                    type_: EventType::Normal,
                    reason: "ConnectivityRestored",
                    note: format!("{name} answers queries"),
                }),
                _ => {}
            }
        }
        v.unreachable = unreachable.into_iter().collect();
    }
    let Some(probe) = &done.probe else { return (v, events) };
    let mut worst: Option<i64> = None;
    for seen in &probe.seen {
        let name = seen.instance.status_name();
        let Some(entry) = v.replicas.iter_mut().find(|r| r.name == name) else { continue };
        // Under STRICT_SYNC an aborted write says nothing about a replica that confirms commits.
        if matches!(probe.write, WriteOutcome::Aborted(_)) && !strict_unconfirmed.contains(&name) {
            continue;
        }
        let Some((verdict, message)) = seen_verdict(seen, probe) else { continue };
        entry.last_test_time = Some(Time(done.claimed));
        if probe.claim.lag {
            let give_up = i64::try_from(probe.claim.give_up.as_millis()).unwrap_or(i64::MAX);
            let lag = seen.seen_after_ms.unwrap_or(give_up);
            if lag > threshold && entry.lag_ms.is_none_or(|l| l <= threshold) {
                events.push(InstanceEvent {
                    type_: EventType::Warning,
                    reason: "HighReplicationLag",
                    note: format!("Replica {name} lag is {lag}ms (threshold: {threshold}ms)"),
                });
            }
            entry.lag_ms = Some(lag);
            worst = Some(worst.map_or(lag, |w| w.max(lag)));
        }
        if probe.claim.replication_test || verdict == FAILED {
            let before = entry.replication_test.clone();
            if before.as_deref() != Some(verdict) {
                events.push(if verdict == PASSED {
                    InstanceEvent {
                        type_: EventType::Normal,
                        reason: "ReplicationTestPassed",
                        note: format!("Replica {name} passed replication validation: it {message}"),
                    }
                } else {
                    InstanceEvent {
                        type_: EventType::Warning,
                        reason: "ReplicationTestFailed",
                        note: format!("Replica {name} failed replication test: it {message}"),
                    }
                });
            }
            entry.replication_test = Some(verdict.to_owned());
            entry.test_message = Some(format!("it {message}"));
        }
    }
    if worst.is_some() {
        v.replication_lag_ms = worst;
    }
    (v, events)
}

/// Condition types set by the checks.
pub const WRITE_CONNECTIVITY: &str = "WriteConnectivity";
/// Every read instance answers `RETURN 1`.
pub const READ_CONNECTIVITY: &str = "ReadConnectivity";
/// The last lag measurement is within `spec.validation.lagThresholdMs`.
pub const REPLICATION_LAG_ACCEPTABLE: &str = "ReplicationLagAcceptable";

fn condition(
    old: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    now: Timestamp,
    generation: Option<i64>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let previous = old.iter().find(|c| c.type_ == type_);
    let last_transition_time = match previous {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

/// The connectivity and lag conditions. Connectivity follows `merged.unreachable` and the
/// read instances the spec asks for, in every plan (so a scale shows in the same write as the
/// rest of it), once a check has run; why an instance does not answer is in its
/// `ConnectivityLost` event. The lag is from `done` when its result is written now, as it was
/// otherwise.
pub(super) fn conditions(
    old: &[Condition],
    done: Option<&ValidationDone>,
    merged: &ValidationStatus,
    reads: u32,
    threshold: i64,
    now: Timestamp,
    generation: Option<i64>,
) -> Vec<Condition> {
    // A kept condition follows the spec's generation in the same write as the others, so a
    // spec change does not cost a second write later.
    let kept = |type_: &str| {
        old.iter().find(|c| c.type_ == type_).cloned().map(|c| Condition { observed_generation: generation, ..c })
    };
    let mut out = Vec::new();
    let checked = merged.last_connectivity_test.is_some()
        && (done.is_some_and(|d| !d.ping.is_empty()) || old.iter().any(|c| c.type_ == WRITE_CONNECTIVITY));
    if checked {
        let down = |name: &str| merged.unreachable.iter().any(|u| u == name);
        out.push(if down("write") {
            condition(
                old,
                WRITE_CONNECTIVITY,
                false,
                "NotResponding",
                "Write instance not responding".to_owned(),
                now,
                generation,
            )
        } else {
            condition(
                old,
                WRITE_CONNECTIVITY,
                true,
                "Responding",
                "Write instance responding to queries".to_owned(),
                now,
                generation,
            )
        });
        let failing: Vec<String> = (0..reads).map(|i| Instance::Read(i).status_name()).filter(|n| down(n)).collect();
        out.push(if failing.is_empty() {
            condition(
                old,
                READ_CONNECTIVITY,
                true,
                "Responding",
                format!("All {reads} read instances responding"),
                now,
                generation,
            )
        } else {
            condition(
                old,
                READ_CONNECTIVITY,
                false,
                "NotResponding",
                format!(
                    "{} of {reads} read instances responding; not responding: {}",
                    reads as usize - failing.len(),
                    failing.join(", ")
                ),
                now,
                generation,
            )
        });
    }
    let lag_measured = done.and_then(|d| d.probe.as_ref()).is_some_and(|p| p.claim.lag);
    match merged.replication_lag_ms.filter(|_| lag_measured) {
        Some(worst) => {
            let over: Vec<String> = merged
                .replicas
                .iter()
                .filter(|r| r.lag_ms.is_some_and(|l| l > threshold))
                .map(|r| format!("{} {}ms", r.name, r.lag_ms.unwrap_or_default()))
                .collect();
            out.push(if over.is_empty() {
                condition(
                    old,
                    REPLICATION_LAG_ACCEPTABLE,
                    true,
                    "LagAcceptable",
                    format!("Replication lag {worst}ms (threshold: {threshold}ms)"),
                    now,
                    generation,
                )
            } else {
                condition(
                    old,
                    REPLICATION_LAG_ACCEPTABLE,
                    false,
                    "HighReplicationLag",
                    format!("Replication lag {} (threshold: {threshold}ms)", over.join(", ")),
                    now,
                    generation,
                )
            });
        }
        None => out.extend(kept(REPLICATION_LAG_ACCEPTABLE)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ReplicaValidation;

    fn done(probe: Option<ProbeDone>, ping: Vec<(&str, Result<(), String>)>) -> ValidationDone {
        ValidationDone {
            skipped: Vec::new(),
            claimed: Timestamp::UNIX_EPOCH,
            finished: Timestamp::UNIX_EPOCH,
            ping: ping.into_iter().map(|(n, r)| (n.to_owned(), r)).collect(),
            probe,
        }
    }

    fn probe(write: WriteOutcome, seen: Vec<(u32, Option<i64>, bool)>) -> ProbeDone {
        ProbeDone {
            claim: ProbeClaim {
                main: Instance::Write,
                id: "t".into(),
                replicas: seen.iter().map(|(i, _, _)| Instance::Read(*i)).collect(),
                replication_test: true,
                lag: true,
                limit: TEST_LIMIT_ASYNC,
                give_up: LAG_GIVE_UP,
                mode: ReplicationMode::Async,
            },
            write,
            seen: seen
                .into_iter()
                .map(|(i, ms, answered)| ReplicaSeen {
                    instance: Instance::Read(i),
                    seen_after_ms: ms,
                    answered,
                    error: None,
                })
                .collect(),
        }
    }

    fn two() -> ValidationStatus {
        ValidationStatus {
            replicas: (0..2).map(|i| ReplicaValidation { name: format!("read-{i}"), ..Default::default() }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_replica_that_serves_the_write_in_time_passes_and_one_that_does_not_fails() {
        let (v, events) = merge(
            &two(),
            &done(Some(probe(WriteOutcome::Committed, vec![(0, Some(12), true), (1, None, true)])), vec![]),
            &[],
            1000,
        );
        assert_eq!(v.replicas[0].replication_test.as_deref(), Some(PASSED));
        assert_eq!(v.replicas[0].lag_ms, Some(12));
        assert_eq!(v.replicas[1].replication_test.as_deref(), Some(FAILED));
        assert_eq!(v.replicas[1].lag_ms, Some(30_000), "a replica that never saw it lags at least the give-up time");
        assert_eq!(v.replication_lag_ms, Some(30_000));
        let reasons: Vec<&str> = events.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["ReplicationTestPassed", "HighReplicationLag", "ReplicationTestFailed"]);
        // The same result again: no events (events are for changes).
        let (again, events) = merge(
            &v,
            &done(Some(probe(WriteOutcome::Committed, vec![(0, Some(15), true), (1, None, true)])), vec![]),
            &[],
            1000,
        );
        assert!(events.is_empty());
        assert!(view(&again, 1000) == view(&v, 1000), "only figures changed");
    }

    #[test]
    fn an_instance_the_operator_cannot_reach_gets_no_verdict() {
        let (v, _) =
            merge(&two(), &done(Some(probe(WriteOutcome::Committed, vec![(0, None, false)])), vec![]), &[], 1000);
        assert_eq!(v.replicas[0].replication_test, None);
        let (v, _) = merge(
            &two(),
            &done(Some(probe(WriteOutcome::Failed("down".into()), vec![(0, None, true)])), vec![]),
            &[],
            1000,
        );
        assert_eq!(v.replicas[0].replication_test, None, "a write the MAIN did not take says nothing about replicas");
    }

    #[test]
    fn a_strict_sync_abort_is_the_unconfirming_replicas_problem() {
        let aborted = probe(WriteOutcome::Aborted("no".into()), vec![(0, None, true), (1, None, true)]);
        let (v, _) = merge(&two(), &done(Some(aborted), vec![]), &["read-1".to_owned()], 1000);
        assert_eq!(v.replicas[0].replication_test, None);
        assert_eq!(v.replicas[1].replication_test.as_deref(), Some(FAILED));
    }

    #[test]
    fn connectivity_events_are_for_changes() {
        let (v, events) =
            merge(&two(), &done(None, vec![("write", Ok(())), ("read-0", Err("refused".into()))]), &[], 1000);
        assert_eq!(v.unreachable, ["read-0"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "ConnectivityLost");
        let (_, events) = merge(&v, &done(None, vec![("write", Ok(())), ("read-0", Err("refused".into()))]), &[], 1000);
        assert!(events.is_empty());
        let (v, events) = merge(&v, &done(None, vec![("write", Ok(())), ("read-0", Ok(()))]), &[], 1000);
        assert!(v.unreachable.is_empty());
        assert_eq!(events[0].reason, "ConnectivityRestored");
    }

    #[test]
    fn an_instance_whose_pod_is_not_ready_is_not_responding_without_an_event() {
        let mut d = done(None, vec![("write", Ok(())), ("read-0", Err("its pod is not Ready".into()))]);
        d.skipped = vec!["read-0".to_owned()];
        let (v, events) = merge(&two(), &d, &[], 1000);
        assert_eq!(v.unreachable, ["read-0"]);
        assert!(events.is_empty(), "Kubernetes already says the pod is not Ready");
    }

    fn claim(at: i64, ping: bool, probe: Option<(bool, bool)>) -> ValidationClaim {
        ValidationClaim {
            at: Timestamp::from_second(at).unwrap_or(Timestamp::UNIX_EPOCH),
            ping: if ping { vec![("write".to_owned(), Instance::Write)] } else { Vec::new() },
            skipped: Vec::new(),
            probe: probe.map(|(replication_test, lag)| ProbeClaim {
                main: Instance::Write,
                id: "t".into(),
                replicas: vec![Instance::Read(0)],
                replication_test,
                lag,
                limit: TEST_LIMIT_ASYNC,
                give_up: if lag { LAG_GIVE_UP } else { TEST_LIMIT_ASYNC },
                mode: ReplicationMode::Async,
            }),
        }
    }

    #[test]
    fn a_later_round_runs_what_an_earlier_round_of_the_same_reconcile_claimed() {
        // Round one claimed connectivity and the lag; round two, which found a new replica,
        // claims its replication test. The status written records all three: all three run.
        let joined = claim(20, false, Some((true, false))).joined(&claim(10, true, Some((false, true))));
        assert_eq!(joined.ping.len(), 1);
        let probe = joined.probe.expect("probe");
        assert!(probe.replication_test && probe.lag);
        assert_eq!(probe.give_up, LAG_GIVE_UP, "the lag measurement waits its longer give-up");
        let kept = claim(20, false, None).joined(&claim(10, false, Some((false, true))));
        assert!(kept.probe.is_some_and(|p| p.lag));
    }
}
