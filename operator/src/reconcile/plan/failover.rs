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

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::{Action, Facts, MainFacts, Planner};
use crate::api::{CompletedFailover, FailoverIntent, FailoverStatus, ReplicationMode, SeenReplica};
use crate::kube_api::EventType;
use crate::memgraph::ReplicaStatus;
use crate::names::{Instance, ROLE_MAIN};
use crate::reconcile::observed::{MemgraphState, Observed};

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
    Some(before.and_then(|f| f.main_down_since.as_ref()).map_or(p.now, |t| t.0))
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

fn seen_of<'s>(seen: &'s [SeenReplica], instance: Instance) -> Option<&'s SeenReplica> {
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
    // Safe ones first, then caught up, then the most up to date, then the lowest name
    // (deterministic). The timestamps are as of each entry's last change, so being caught up
    // is the better measure.
    candidates.sort_by(|a, b| {
        b.safe
            .cmp(&a.safe)
            .then((b.behind == 0).cmp(&(a.behind == 0)))
            .then(b.ts.cmp(&a.ts))
            .then(a.instance.cmp(&b.instance))
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
        return FailoverPlan { status: Some(s), blocked: next.blocked, record_first };
    }
    let down_since = if enabled { detect(p, facts, before.as_ref()) } else { None };
    if enabled || before.is_some() {
        let s = status
            .get_or_insert_with(|| FailoverStatus { main: facts.main_instance.status_name(), ..Default::default() });
        s.main_down_since = down_since.map(Time);
    }
    let Some(since) = down_since else {
        return FailoverPlan { status, blocked: None, record_first: false };
    };
    let due = since.checked_add(detection_delay(p)).unwrap_or(since);
    if p.now < due {
        p.due(due);
        return FailoverPlan { status, blocked: None, record_first: false };
    }
    let seen = before.as_ref().map_or(&[][..], |f| &f.seen[..]);
    match choose(p, facts, seen, &[]) {
        Ok(c) => {
            let generation = before.as_ref().map_or(0, |f| f.generation) + 1;
            let why = main_problem(facts);
            let intent = start(p, facts, c, generation, &why);
            if let Some(s) = status.as_mut() {
                s.intent = Some(intent);
                s.main_down_since = None;
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
    };
    unlabel(p, from);
    p.push(Action::Promote(c.instance));
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

/// Remove the `main` label from `instance`'s pod, if it carries one.
fn unlabel(p: &mut Planner<'_>, instance: Instance) {
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
fn advance(p: &mut Planner<'_>, facts: &Facts, seen: &[SeenReplica], intent: FailoverIntent) -> (Next, bool) {
    let before = p.obs.status.failover.clone().unwrap_or_default();
    let target = facts.main_instance;
    let from = Instance::from_status_name(&intent.from).unwrap_or(Instance::Write);
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
    let target_replica =
        target_pod.is_some_and(|t| t.ready && !t.terminating && matches!(t.memgraph, MemgraphState::Replica { .. }));
    if target_replica {
        p.push(Action::Promote(target));
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
/// its mode, state or being caught up changes, so the status is not rewritten with every write.
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
        let same = |old: &SeenReplica| {
            old.mode == fresh.mode && old.state == fresh.state && (old.behind == 0) == (fresh.behind == 0)
        };
        seen.push(match seen_of(&status.seen, instance) {
            Some(old) if same(old) => old.clone(),
            _ => fresh,
        });
    }
    seen.sort_by(|a, b| a.name.cmp(&b.name));
    status.seen = seen;
}
