//! Failover: when the MAIN is lost, promote the replica that the MAIN last reported in sync.
//!
//! Memgraph Community cannot say which replica is most up to date (only the MAIN's `SHOW
//! REPLICAS` knows), so the operator keeps the MAIN's last report of every replica in
//! `status.failover.seen`, and chooses from it once the MAIN is gone.
//!
//! The rules, each in its own function:
//! - [`detect`]: the MAIN is down when it has not answered, or its pod has not been Ready, for
//!   `detectionDelaySeconds`, and this reconcile's fresh look still finds it so.
//! - [`choose`]: only a replica last seen `ready` in SYNC or STRICT_SYNC mode that answers as a
//!   REPLICA now; with `allowDataLoss` any replica that answers, the best seen first.
//! - [`start`]: the intent (next generation, from, to) is written in status before any step;
//!   the old MAIN's label goes; then the promotion.
//! - [`advance`]: while an intent stands, the chosen replica is promoted (again, if it is still a
//!   REPLICA), the other replicas are registered on it by the replication plan (that is what
//!   cuts them off from the old MAIN), and the failover completes only when the new MAIN is
//!   verified with every answering replica registered; only then is it labelled `main`.
//!   A target lost before completion is replaced by another candidate (or the failover is rolled
//!   back when the old MAIN is verified again).
//! - An old MAIN that comes back is a stray MAIN: the replication plan demotes it and registers
//!   it on the new one ([`replaced_main`]).
//! - [`planned_moves`]: with the MAIN up, a switchover requested with an annotation (the rules
//!   are in `switchover`), else [`switch_back`] to the write pod after a failover. Both demote
//!   the MAIN first and promote in the same action; a lost target rolls back to it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::{Action, Facts, MainFacts, Planner};
use crate::api::{
    CompletedFailover, FAILOVER_KIND, FailoverIntent, FailoverStatus, ReplicationMode, SWITCH_BACK_KIND, SeenReplica,
};
use crate::kube_api::EventType;
use crate::memgraph::ReplicaStatus;
use crate::names::{Instance, ROLE_MAIN};
use crate::reconcile::main_probe::ProbeView;
use crate::reconcile::observed::{MemgraphState, Observed};

/// Least time between the end of the look that found the MAIN down and the end of the one that
/// confirms it: the replicas' data counts of the two are at least that far apart.
const CONFIRM_GAP: std::time::Duration = std::time::Duration::from_secs(1);
/// Condition: a failover is needed and cannot be made safely.
pub const FAILOVER_BLOCKED: &str = "FailoverBlocked";

/// The instance `status` holds as MAIN: the target of an intent, else `main`.
pub fn held_main(status: &FailoverStatus) -> Instance {
    let name = status.intent.as_ref().map_or(status.main.as_str(), |i| i.to.as_str());
    Instance::from_status_name(name).unwrap_or(Instance::Write)
}

/// The failover generation recorded in status (0: never failed over).
pub fn generation(obs: &Observed) -> i64 {
    obs.status.failover.as_ref().map_or(0, |f| f.intent.as_ref().map_or(f.generation, |i| i.generation))
}

/// Whether `instance`, found a MAIN while another instance is held as MAIN, was replaced by a
/// failover: once the operator has failed over, it alone decides roles, and any other MAIN is an
/// old one come back (with its old replica list and main UUID).
pub fn replaced_main(obs: &Observed, instance: Instance) -> bool {
    generation(obs) > 0 && instance != super::facts::main_instance(obs)
}

/// What the failover planning leaves for the status.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverPlan {
    /// `status.failover` as this plan leaves it.
    pub status: Option<FailoverStatus>,
    /// Why a needed failover cannot be made, for the `FailoverBlocked` condition.
    pub blocked: Option<String>,
    /// The intent is new: the status must be written before the replication commands run.
    pub record_first: bool,
}

/// Whether the MAIN is down now, and since when (kept in status).
fn detect(p: &Planner<'_>, facts: &Facts, before: Option<&FailoverStatus>) -> Option<Timestamp> {
    // A MAIN that came back without the data its replicas hold is lost as well: they have it.
    let down = matches!(facts.main, MainFacts::NotReady(_) | MainFacts::Unreachable(_) | MainFacts::LostData(_));
    if !down {
        return None;
    }
    let recorded = before.and_then(|f| f.main_down_since.as_ref()).map(|t| t.0);
    let look = p.obs.started.unwrap_or(p.now);
    let pod = p.obs.pods.get(&facts.main_instance).filter(|pod| !pod.ready);
    Some(match (matches!(facts.main, MainFacts::NotReady(_)), pod) {
        (true, Some(pod)) => not_ready_since(recorded, p.obs.probe, look, p.now, pod.not_ready_since),
        _ => down_since(recorded, p.obs.probe, look),
    })
}

/// Since when a MAIN whose pod is not Ready has been down. Its Memgraph may still answer the
/// probe (a readiness probe failing on a loaded process): it is down all the same, since the
/// write Service routes to no pod that is not Ready. The `Ready` condition's transition time
/// says since when it has been NotReady without a break; before that it was Ready, so an older
/// recorded start does not count unless the probe has gone unanswered since before it (a lost
/// node: unanswered first, marked NotReady later). Readiness that flaps in stretches shorter
/// than the delay so never fails over, even when a look missed the Ready stretches between.
/// The transition time is read as the latest moment it may stand for, so the count never starts
/// before the pod turned NotReady.
fn not_ready_since(
    recorded: Option<Timestamp>,
    probe: ProbeView,
    look: Timestamp,
    now: Timestamp,
    transition: Option<Timestamp>,
) -> Timestamp {
    let transition = transition.map(latest_within_its_second);
    match (probe.failing_since, transition) {
        (Some(failing), Some(t)) if failing <= t => down_since(recorded, probe, look),
        // Not after now: an API server whose clock runs ahead of the operator's. Not capped by
        // the look's start either, since the look may have begun before the pod turned NotReady.
        (_, Some(t)) => t.min(now),
        // No transition time: the looks' count, which answers to the probe do not restart.
        (_, None) => down_since(recorded, ProbeView { last_answer: None, ..probe }, look),
    }
}

/// The latest moment a transition time written in whole seconds may stand for. Kubernetes
/// writes a condition's `lastTransitionTime` truncated to the second, so the pod turned NotReady
/// up to a second after it: counting from the truncated time would fail over a MAIN that had
/// been NotReady for less than the delay. A time with a fraction is exact and kept.
fn latest_within_its_second(t: Timestamp) -> Timestamp {
    if t.subsec_nanosecond() == 0 { t.checked_add(std::time::Duration::from_secs(1)).unwrap_or(t) } else { t }
}

/// Since when a MAIN this look found down has not answered: since the look began, or the
/// first unanswered health probe if earlier, or what the status recorded; but never from
/// before an answer (a blip the reconciles missed and the probe saw restarts the count).
fn down_since(recorded: Option<Timestamp>, probe: ProbeView, look: Timestamp) -> Timestamp {
    // The recorded start comes from an earlier look, so it is never after this one.
    let seen = [recorded, probe.failing_since].into_iter().flatten().fold(look, Timestamp::min);
    match probe.last_answer {
        Some(answer) if answer >= seen => probe.failing_since.unwrap_or(look).min(look).max(answer),
        _ => seen,
    }
}

/// The delay after which a down MAIN is failed over.
fn detection_delay(p: &Planner<'_>) -> std::time::Duration {
    std::time::Duration::from_secs(u64::try_from(p.spec.failover.detection_delay_seconds.max(1)).unwrap_or(5))
}

/// A replica a failover may promote, with what makes it a good choice.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    instance: Instance,
    /// Last seen `ready` in SYNC or STRICT_SYNC: it holds every acknowledged write.
    safe: bool,
    /// Its last seen commit timestamp (higher is more up to date).
    ts: i64,
    /// Its last seen lag behind the MAIN (0: caught up).
    behind: i64,
}

fn seen_of(seen: &[SeenReplica], instance: Instance) -> Option<&SeenReplica> {
    seen.iter().find(|s| s.name == instance.status_name())
}

/// Whether the MAIN's last report shows `s` holding every acknowledged write: `ready` (or
/// `replicating`) in SYNC or STRICT_SYNC, where the MAIN fails every write such a replica did not
/// confirm.
fn safe(s: &SeenReplica) -> bool {
    let sync =
        s.mode == ReplicationMode::Sync.as_show_replicas() || s.mode == ReplicationMode::StrictSync.as_show_replicas();
    sync && s.state == ReplicaStatus::Ready.as_str()
}

/// The replica to promote, or why there is none.
fn choose(p: &Planner<'_>, facts: &Facts, seen: &[SeenReplica], exclude: &[Instance]) -> Result<Candidate, String> {
    let mut candidates: Vec<Candidate> = facts
        .replicas
        .iter()
        .filter(|(i, r)| r.desired && r.ready_replica && !exclude.contains(i))
        .map(|(i, _)| {
            let s = seen_of(seen, *i);
            Candidate {
                instance: *i,
                safe: s.is_some_and(safe),
                ts: s.map_or(i64::MIN, |s| s.ts),
                behind: s.map_or(i64::MIN, |s| s.behind),
            }
        })
        .filter(|c| c.safe || p.spec.failover.allow_data_loss)
        .collect();
    // Safe ones first (each holds every acknowledged write), then the write pod (the MAIN's
    // home: backups run beside it, and a switch back would move the writes to it a second
    // time), then the most up to date as last reported, then the lowest name.
    let write = |c: &Candidate| c.instance == Instance::Write;
    candidates.sort_by(|a, b| {
        b.safe.cmp(&a.safe).then(write(b).cmp(&write(a))).then(b.ts.cmp(&a.ts)).then(a.instance.cmp(&b.instance))
    });
    if let Some(best) = candidates.into_iter().next() {
        return Ok(best);
    }
    let answering: Vec<String> = facts
        .replicas
        .iter()
        .filter(|(i, r)| r.desired && r.ready_replica && !exclude.contains(i))
        .map(|(i, _)| i.status_name())
        .collect();
    let safe_seen: Vec<String> = seen.iter().filter(|s| safe(s)).map(|s| s.name.clone()).collect();
    Err(if answering.is_empty() {
        "no replica answers as a REPLICA now".to_owned()
    } else if safe_seen.is_empty() {
        format!(
            "the MAIN last reported no replica in sync in SYNC or STRICT_SYNC mode, so promoting any of {} may lose \
             acknowledged writes; set spec.failover.allowDataLoss: true to promote one anyway, or bring the MAIN back",
            answering.join(", ")
        )
    } else {
        format!(
            "the replicas last reported in sync ({}) do not answer now, and promoting {} may lose acknowledged \
             writes; bring one of them back, or set spec.failover.allowDataLoss: true",
            safe_seen.join(", "),
            answering.join(", ")
        )
    })
}

/// Plan failover: detection, the intent, and its steps. Returns what the status records.
pub(super) fn plan_failover(p: &mut Planner<'_>, facts: &Facts) -> FailoverPlan {
    let before = p.obs.status.failover.clone();
    let enabled = p.spec.failover.enabled;
    let mut status = before.clone();
    if let Some(intent) = before.as_ref().and_then(|f| f.intent.clone()) {
        let (next, record_first) = advance(p, facts, before.as_ref().map_or(&[][..], |f| &f.seen[..]), intent);
        let mut s = before.clone().unwrap_or_default();
        s.intent = next.intent;
        s.main = next.main;
        s.generation = next.generation;
        s.last = next.last.or(s.last);
        if next.completed {
            s.seen.clear();
        }
        s.main_down_since = None;
        s.main_down_noticed_at = None;
        return FailoverPlan { status: Some(s), blocked: next.blocked, record_first };
    }
    let down_since = if enabled { detect(p, facts, before.as_ref()) } else { None };
    if enabled || before.is_some() {
        let s = status
            .get_or_insert_with(|| FailoverStatus { main: facts.main_instance.status_name(), ..Default::default() });
        s.main_down_since = down_since.map(Time);
        let noticed = before.as_ref().and_then(|f| f.main_down_noticed_at.clone()).unwrap_or(Time(p.now));
        s.main_down_noticed_at = down_since.map(|_| noticed);
    }
    // Replicas that received data since the MAIN went silent got it from a MAIN: it is alive
    // and taking writes, only not from the operator. Promoting another now would race its
    // commits (a STRICT_SYNC commit whose second phase fails is still acknowledged).
    if let Some(since) = down_since
        && let Some((index, at)) = alive_evidence(p, since)
    {
        p.due(p.now.checked_add(super::REQUEUE_BUSY).unwrap_or(p.now));
        let blocked = format!(
            "The MAIN does not answer the operator ({}), but {} received data at {at}, after it went silent: the \
             MAIN is alive and its clients still write to it, so nothing is promoted. Check the network between \
             the operator and the MAIN's pod",
            main_problem(facts),
            p.names.pod(Instance::Read(index))
        );
        return FailoverPlan { status, blocked: Some(blocked), record_first: false };
    }
    let Some(since) = down_since else {
        return planned_moves(p, facts, before.as_ref(), status);
    };
    let due = since.checked_add(detection_delay(p)).unwrap_or(since);
    let noticed = before.as_ref().and_then(|f| f.main_down_noticed_at.as_ref()).map(|t| t.0);
    if let Err(next) = confirmed(p, due, noticed) {
        p.due(next);
        return FailoverPlan { status, blocked: None, record_first: false };
    }
    let seen = before.as_ref().map_or(&[][..], |f| &f.seen[..]);
    match choose(p, facts, seen, &[]) {
        Ok(c) => {
            let generation = before.as_ref().map_or(0, |f| f.generation) + 1;
            let why = main_problem(facts);
            let mut intent = start(p, facts, c, generation, &why);
            // Recorded with the intent, made after it is written.
            fence(p, &mut intent);
            if let Some(s) = status.as_mut() {
                s.intent = Some(intent);
                s.main_down_since = None;
                s.main_down_noticed_at = None;
            }
            FailoverPlan { status, blocked: None, record_first: true }
        }
        Err(why) => {
            // Look again soon: a replica may come back.
            p.due(p.now.checked_add(super::REQUEUE_BUSY).unwrap_or(p.now));
            FailoverPlan {
                status,
                blocked: Some(format!("The MAIN is down ({}), and {why}", main_problem(facts))),
                record_first: false,
            }
        }
    }
}

/// Whether this look confirms that a MAIN found down at `noticed` (the end of the first look
/// that found it so; `None` for this look) and due for a failover at `due` is down; else when
/// the confirming look should begin.
///
/// The look that first found it down never decides alone (its query may have waited out the
/// whole delay): a second look must find it down too, and between the two the replicas' data
/// counts can show a MAIN that is alive (see `alive_evidence`). The second look begins after
/// the first ended, counts at least [`CONFIRM_GAP`] after it, and spans the end of the delay: it
/// begins at most its timeout on a MAIN found down before `due`, so its own unanswered query
/// of the MAIN reaches past `due`, and it ends after `due`.
fn confirmed(p: &Planner<'_>, due: Timestamp, noticed: Option<Timestamp>) -> Result<(), Timestamp> {
    let after = |t: Timestamp, d: std::time::Duration| t.checked_add(d).unwrap_or(t);
    let earliest = due.checked_sub(crate::reconcile::observe::SUSPECT_PROBE).unwrap_or(due);
    let Some(noticed) = noticed else { return Err(earliest.max(p.now)) };
    let started = p.obs.started.unwrap_or(p.now);
    let begin = earliest.max(noticed);
    let end = due.max(after(noticed, CONFIRM_GAP));
    match (started >= begin, p.now >= end) {
        (true, true) => Ok(()),
        // Begun in time but ended too soon (the MAIN refused at once): one begun at the end.
        (true, false) => Err(end),
        (false, _) => Err(begin.max(p.now)),
    }
}

/// With the MAIN up: a requested switchover (see `switchover`), else the switch back to the
/// write pod after a failover.
fn planned_moves(
    p: &mut Planner<'_>,
    facts: &Facts,
    before: Option<&FailoverStatus>,
    mut status: Option<FailoverStatus>,
) -> FailoverPlan {
    let base = before
        .cloned()
        .unwrap_or_else(|| FailoverStatus { main: facts.main_instance.status_name(), ..Default::default() });
    let requested = super::switchover::plan_switchover(p, facts, &base);
    if requested.handled.is_some() || requested.waiting.is_some() {
        let s = status.get_or_insert(base);
        s.last_switchover_request = requested.handled.or(s.last_switchover_request.take());
        s.switchover_waiting = requested.waiting;
        let record_first = requested.intent.is_some();
        if requested.intent.is_some() {
            s.intent = requested.intent;
        }
        return FailoverPlan { status, blocked: None, record_first };
    }
    if let Some(s) = status.as_mut() {
        s.switchover_waiting = None;
        track_write_pod(p, facts, s);
    }
    if let Some(intent) = status.as_ref().and_then(|b| switch_back(p, facts, b))
        && let Some(s) = status.as_mut()
    {
        s.intent = Some(intent);
        return FailoverPlan { status, blocked: None, record_first: true };
    }
    FailoverPlan { status, blocked: None, record_first: false }
}

/// A read replica whose data grew since `since` (as counted while the MAIN was silent), within
/// the last detection delay: the MAIN may have died since an older sign of life.
fn alive_evidence(p: &Planner<'_>, since: Timestamp) -> Option<(u32, Timestamp)> {
    let recent = p.now.checked_sub(detection_delay(p)).unwrap_or(p.now);
    p.obs
        .stalls
        .iter()
        .find_map(|(index, s)| s.moved_at.filter(|at| *at > since && *at > recent).map(|at| (*index, at)))
}

fn main_problem(facts: &Facts) -> String {
    match &facts.main {
        MainFacts::NotReady(m) | MainFacts::Unreachable(m) | MainFacts::LostData(m) => m.clone(),
        _ => "not verified".to_owned(),
    }
}

/// Record the intent, remove the old MAIN's label and promote the chosen replica (after the
/// status is written: see `FailoverPlan::record_first`).
fn start(p: &mut Planner<'_>, facts: &Facts, c: Candidate, generation: i64, why: &str) -> FailoverIntent {
    let from = facts.main_instance;
    let reason = if c.safe {
        format!(
            "{why}; {} was last reported in sync in a synchronous mode (behind {})",
            c.instance.status_name(),
            c.behind
        )
    } else {
        format!(
            "{why}; {} was the best replica that answers, but was not last reported in sync in a synchronous mode, \
             so acknowledged writes may be lost (spec.failover.allowDataLoss is true)",
            c.instance.status_name()
        )
    };
    let intent = FailoverIntent {
        generation,
        from: from.status_name(),
        to: c.instance.status_name(),
        started_at: Time(p.now),
        reason: reason.clone(),
        may_lose_writes: !c.safe,
        kind: FAILOVER_KIND.to_owned(),
        stopped: None,
    };
    unlabel(p, from);
    promote(p, c.instance, from);
    p.event(
        if c.safe { EventType::Normal } else { EventType::Warning },
        "FailoverStarted",
        "Promote",
        format!(
            "Failover generation {generation}: promoting {} to MAIN in place of {}: {reason}",
            p.names.pod(c.instance),
            p.names.pod(from)
        ),
    );
    intent
}

/// Promote `target`; a `from` that still answers as a MAIN is demoted first, in the same action,
/// so the promotion happens only once it no longer takes writes.
pub(super) fn promote(p: &mut Planner<'_>, target: Instance, from: Instance) {
    let from_answers = answers_as(p, from, true);
    p.push(Action::Promote { instance: target, demote: from_answers.then_some(from) });
}

/// Whether `instance`'s pod is ready and Memgraph on it answers as a MAIN (`main`) or else as a
/// REPLICA.
fn answers_as(p: &Planner<'_>, instance: Instance, main: bool) -> bool {
    p.obs.pods.get(&instance).is_some_and(|pod| {
        pod.ready
            && !pod.terminating
            && match pod.memgraph {
                MemgraphState::Main { .. } => main,
                MemgraphState::Replica { .. } => !main,
                _ => false,
            }
    })
}

/// Whether the MAIN is to move back to the write pod once it has caught up: switch back is on,
/// a read pod is the MAIN, and a failover (not a requested switchover, which stays) put it there.
pub fn switch_back_wanted(spec: &crate::api::MemgraphClusterSpec, obs: &Observed) -> bool {
    let f = &spec.failover;
    let last = obs.status.failover.as_ref().and_then(|s| s.last.as_ref());
    f.enabled
        && f.switch_back
        && super::facts::main_instance(obs) != Instance::Write
        && last.is_none_or(|l| l.kind == FAILOVER_KIND)
}

/// A planned switchover back to the write pod, once it has been in sync in a synchronous mode
/// for `switchBackAfterSeconds` (as the MAIN's last report, kept in `seen`, says) and answers
/// as a REPLICA now: every acknowledged write is on it, and the current MAIN is demoted before
/// it is promoted, so none can be lost.
fn switch_back(p: &mut Planner<'_>, facts: &Facts, before: &FailoverStatus) -> Option<FailoverIntent> {
    let f = &p.spec.failover;
    if !switch_back_wanted(p.spec, p.obs) || !facts.main.verified() {
        return None;
    }
    let write = facts.replicas.get(&Instance::Write).filter(|r| r.ready_replica && r.in_sync && r.mode_ok)?;
    seen_of(&before.seen, Instance::Write).filter(|s| safe(s))?;
    let row = write.row.as_ref()?;
    let stable = std::time::Duration::from_secs(u64::try_from(f.switch_back_after_seconds.max(0)).unwrap_or(30));
    let since = before.write_pod_stable_since.as_ref()?.0;
    let due = since.checked_add(stable).unwrap_or(since);
    if p.now < due {
        p.due(due);
        return None;
    }
    if row.data.as_ref().is_none_or(|d| d.behind != 0) {
        return None;
    }
    let from = facts.main_instance;
    let generation = before.generation + 1;
    let reason = format!(
        "switching back to the write pod, in sync in {} mode for {} s or more",
        row.sync_mode,
        stable.as_secs()
    );
    Some(start_planned(p, from, Instance::Write, generation, reason, SWITCH_BACK_KIND))
}

/// Start a planned move from the MAIN `from` to `target`: its label goes, it is demoted and
/// `target` promoted in one action, and the intent to record is returned.
pub(super) fn start_planned(
    p: &mut Planner<'_>,
    from: Instance,
    target: Instance,
    generation: i64,
    reason: String,
    kind: &str,
) -> FailoverIntent {
    unlabel(p, from);
    promote(p, target, from);
    p.event(
        EventType::Normal,
        "SwitchoverStarted",
        "Promote",
        format!(
            "Switchover generation {generation}: demoting {} and promoting {}: {reason}",
            p.names.pod(from),
            p.names.pod(target)
        ),
    );
    FailoverIntent {
        generation,
        from: from.status_name(),
        to: target.status_name(),
        started_at: Time(p.now),
        reason,
        may_lose_writes: false,
        kind: kind.to_owned(),
        stopped: None,
    }
}

/// Keep since when the write pod has been a ready REPLICA in a synchronous mode without
/// restarting, while another instance is the MAIN: what `switchBackAfterSeconds` counts.
fn track_write_pod(p: &Planner<'_>, facts: &Facts, s: &mut FailoverStatus) {
    let pod = p.obs.pods.get(&Instance::Write);
    let registered_sync = facts.replicas.get(&Instance::Write).is_some_and(|r| {
        r.ready_replica && r.row.as_ref().is_some_and(|row| row.sync_mode != ReplicationMode::Async.as_show_replicas())
    });
    let Some(pod) = pod.filter(|_| registered_sync && facts.main_instance != Instance::Write) else {
        // Unknown while the MAIN cannot report: the clock neither runs on nor resets.
        if facts.main.rows().is_some() || facts.main_instance == Instance::Write {
            s.write_pod_stable_since = None;
            s.write_pod_stable_as = None;
        }
        return;
    };
    let id = format!("{}:{}", pod.uid, pod.restarts);
    if s.write_pod_stable_as.as_deref() != Some(id.as_str()) {
        s.write_pod_stable_since = Some(Time(p.now));
        s.write_pod_stable_as = Some(id);
    }
}

/// Remove the `main` label from `instance`'s pod, if it carries one.
pub(super) fn unlabel(p: &mut Planner<'_>, instance: Instance) {
    if let Some(pod) = p.obs.pods.get(&instance).filter(|pod| pod.role_label.as_deref() == Some(ROLE_MAIN)) {
        p.push(Action::Label { pod: pod.name.clone(), uid: pod.uid.clone(), role: None, restarts: pod.restarts });
    }
}

/// The failover state after one step of an intent.
struct Next {
    intent: Option<FailoverIntent>,
    main: String,
    generation: i64,
    last: Option<CompletedFailover>,
    completed: bool,
    blocked: Option<String>,
}

/// One step of the failover under way; returns the state and whether a new intent must be
/// written before the replication commands.
fn advance(p: &mut Planner<'_>, facts: &Facts, seen: &[SeenReplica], mut intent: FailoverIntent) -> (Next, bool) {
    let fenced = fence(p, &mut intent);
    let (next, record_first) = step(p, facts, seen, intent);
    // A stop is recorded in the intent before the pod is deleted.
    (next, record_first || fenced)
}

/// Fence the old MAIN of a failover that is Ready but does not answer: it cannot be demoted,
/// and its process may still serve clients connected to it (a partition between it and the
/// operator only), so its pod is deleted, once per failover. Its kubelet stops it if it can;
/// on a lost node the deletion waits, and takes effect if the node comes back. The StatefulSet
/// recreates the pod, and it is demoted when it answers. Returns whether the intent changed.
fn fence(p: &mut Planner<'_>, intent: &mut FailoverIntent) -> bool {
    if intent.kind != FAILOVER_KIND || intent.stopped.is_some() {
        return false;
    }
    let Some(from) = Instance::from_status_name(&intent.from) else { return false };
    let Some(pod) = p.obs.pods.get(&from) else { return false };
    if !pod.ready || pod.terminating || !matches!(pod.memgraph, MemgraphState::Unreachable(_)) {
        return false;
    }
    let (name, uid) = (pod.name.clone(), pod.uid.clone());
    intent.stopped = Some(uid.clone());
    p.push(Action::StopPod { pod: name.clone(), uid });
    p.event(
        EventType::Warning,
        "FailoverStep",
        "StopOldMain",
        format!(
            "Failover generation {}: deleting the pod {name} of the old MAIN, which is Ready but does not answer, so \
             that clients still connected to it cannot write to it",
            intent.generation
        ),
    );
    true
}

/// One step of the failover under way (see [`advance`]).
fn step(p: &mut Planner<'_>, facts: &Facts, seen: &[SeenReplica], intent: FailoverIntent) -> (Next, bool) {
    let before = p.obs.status.failover.clone().unwrap_or_default();
    let target = facts.main_instance;
    let from = Instance::from_status_name(&intent.from).unwrap_or(Instance::Write);
    // Each step is looked at again within a second: writes wait for it.
    p.due(p.now.checked_add(std::time::Duration::from_secs(1)).unwrap_or(p.now));
    let keep = |intent: FailoverIntent, blocked: Option<String>| Next {
        intent: Some(intent),
        main: before.main.clone(),
        generation: before.generation,
        last: None,
        completed: false,
        blocked,
    };
    // The old MAIN keeps no label while the failover runs, whatever it says.
    unlabel(p, from);
    let target_pod = p.obs.pods.get(&target);
    if answers_as(p, target, false) {
        promote(p, target, from);
        p.event(
            EventType::Normal,
            "FailoverStep",
            "Promote",
            format!("Failover generation {}: promoting {} to MAIN", intent.generation, p.names.pod(target)),
        );
        return (keep(intent, None), false);
    }
    if let Some(rows) = facts.main.rows() {
        // Every replica that answers is registered before writes are routed to the new MAIN: until
        // then it commits with no redundancy, whatever the mode.
        let waiting: Vec<String> = facts
            .replicas
            .iter()
            .filter(|(i, r)| r.desired && r.ready_replica && !rows.iter().any(|row| row.name == i.replica_name()))
            .map(|(i, _)| i.status_name())
            .collect();
        if !waiting.is_empty() {
            return (keep(intent, None), false);
        }
        let last = CompletedFailover {
            generation: intent.generation,
            from: intent.from.clone(),
            to: intent.to.clone(),
            started_at: intent.started_at.clone(),
            finished_at: Time(p.now),
            behind: seen_of(seen, target).map_or(0, |s| s.behind),
            kind: intent.kind.clone(),
        };
        p.condition_event(
            EventType::Normal,
            "FailoverCompleted",
            format!(
                "Failover generation {}: {} is the MAIN, verified, with {} replicas registered; writes go to it",
                intent.generation,
                p.names.pod(target),
                rows.len()
            ),
        );
        return (
            Next {
                intent: None,
                main: intent.to.clone(),
                generation: intent.generation,
                last: Some(last),
                completed: true,
                blocked: None,
            },
            false,
        );
    }
    if facts.main.routable() || matches!(facts.main, MainFacts::Unreachable(_)) && target_pod.is_some_and(|t| t.ready) {
        // Promoted, or answering slowly: wait for the next look.
        return (keep(intent, None), false);
    }
    // The target is gone before the failover completed. Back to the old MAIN if it is verified
    // again (a promotion nothing was written to is reversible: the target is demoted when it
    // returns); else to another candidate.
    let old_is_main = p.obs.pods.get(&from).is_some_and(|pod| {
        pod.ready && !pod.terminating && matches!(pod.memgraph, MemgraphState::Main { replicas: Some(Ok(_)), .. })
    });
    if old_is_main {
        p.condition_event(
            EventType::Warning,
            "FailoverRolledBack",
            format!(
                "Failover generation {}: {} was lost before it was verified as MAIN, and {} is a MAIN again; it stays \
                 the MAIN",
                intent.generation,
                p.names.pod(target),
                p.names.pod(from)
            ),
        );
        return (
            Next {
                intent: None,
                main: intent.from,
                generation: before.generation,
                last: None,
                completed: false,
                blocked: None,
            },
            false,
        );
    }
    // A planned move demoted the old MAIN first: it answers as a REPLICA with every write it
    // acknowledged, and goes back to being the MAIN.
    if intent.kind != FAILOVER_KIND && answers_as(p, from, false) {
        let generation = intent.generation + 1;
        promote(p, from, target);
        p.condition_event(
            EventType::Warning,
            "SwitchoverRolledBack",
            format!(
                "{} generation {}: {} was lost before it was verified as MAIN; {} (demoted for it, holding every \
                 acknowledged write) is promoted back",
                intent.kind,
                intent.generation,
                p.names.pod(target),
                p.names.pod(from)
            ),
        );
        let back = FailoverIntent {
            generation,
            from: intent.to.clone(),
            to: intent.from.clone(),
            started_at: Time(p.now),
            reason: format!("{} was lost before the {} to it completed", intent.to, intent.kind),
            may_lose_writes: false,
            kind: intent.kind.clone(),
            stopped: None,
        };
        return (keep(back, None), true);
    }
    match choose(p, facts, seen, &[target, from]) {
        Ok(c) => {
            let generation = intent.generation + 1;
            let why = format!("{} was lost before the failover to it completed", p.names.pod(target));
            let mut next = start(p, facts, c, generation, &why);
            // The MAIN being replaced is still the one before this failover.
            next.from = intent.from;
            (keep(next, None), true)
        }
        Err(why) => {
            p.due(p.now.checked_add(super::REQUEUE_BUSY).unwrap_or(p.now));
            let blocked = format!("The failover to {} cannot complete ({}), and {why}", intent.to, main_problem(facts));
            (keep(intent, Some(blocked)), false)
        }
    }
}

/// Keep the MAIN's report of its replicas (`status.failover.seen`): an entry changes only when
/// its mode or state changes (its `ts` and `behind` are as of then), so the status is not
/// rewritten with every write: under load `behind` moves with every commit.
/// A replica this plan drops or registers again leaves the view: what the MAIN said of its old
/// registration says nothing of the new one.
pub(super) fn record_seen(p: &Planner<'_>, facts: &Facts, status: &mut FailoverStatus) {
    let Some(rows) = facts.main.rows() else { return };
    if status.intent.is_some() {
        return;
    }
    let touched: Vec<String> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::DropReplica { name, .. } => Some(name.clone()),
            Action::RegisterReplica { instance, .. } => Some(instance.replica_name()),
            _ => None,
        })
        .collect();
    let mut seen = Vec::new();
    for row in rows {
        let (Some(instance), Some(data)) = (Instance::from_replica_name(&row.name), row.data.as_ref()) else {
            continue;
        };
        if touched.contains(&row.name) {
            continue;
        }
        // `replicating` is `ready` with a transaction in flight.
        let state = match data.status {
            ReplicaStatus::Replicating => ReplicaStatus::Ready.as_str().to_owned(),
            ref other => other.as_str().to_owned(),
        };
        let fresh = SeenReplica {
            name: instance.status_name(),
            mode: row.sync_mode.clone(),
            state,
            ts: data.ts,
            behind: data.behind,
            seen_at: Time(p.now),
        };
        let same = |old: &SeenReplica| old.mode == fresh.mode && old.state == fresh.state;
        seen.push(match seen_of(&status.seen, instance) {
            Some(old) if same(old) => old.clone(),
            _ => fresh,
        });
    }
    seen.sort_by(|a, b| a.name.cmp(&b.name));
    status.seen = seen;
}

/// Judge `status.failover.seen` against the stored status, not the previous round's: an entry
/// whose mode and state are as stored stays as stored (the rounds of one reconcile may pass
/// through a state that is never written, and a blip seen and gone within one reconcile is no
/// change to record).
pub fn keep_stored_seen(status: &mut FailoverStatus, stored: Option<&FailoverStatus>) {
    let Some(stored) = stored else { return };
    for entry in &mut status.seen {
        if let Some(old) =
            stored.seen.iter().find(|o| o.name == entry.name && o.mode == entry.mode && o.state == entry.state)
        {
            *entry = old.clone();
        }
    }
}
