//! Status: the truth about the cluster in words a person can act on, written only when it
//! changes. Condition transitions become events.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::{Facts, MainFacts, Planner};
use crate::api::{MemgraphClusterStatus, Phase, ReplicaValidation, ValidationStatus};
use crate::kube_api::EventType;
use crate::names::{Instance, selector_string};
use crate::reconcile::observed::MemgraphState;
use crate::validate::SpecError;

/// Condition types.
pub const WRITE_READY: &str = "WriteReady";
/// All wanted replicas are registered and in sync.
pub const REPLICAS_READY: &str = "ReplicasReady";
/// Every registered replica is in sync.
pub const REPLICATION_HEALTHY: &str = "ReplicationHealthy";
/// The spec failed a check.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// A replica or the MAIN holds data the other does not.
pub const DATA_DIVERGENCE: &str = "DataDivergence";
/// Every StatefulSet's volume claims match the spec.
pub const STORAGE_IN_SYNC: &str = "StorageInSync";
/// No action is failing repeatedly (set with the outcome of the actions, see `failures`).
pub const ACTIONS_SUCCEEDING: &str = "ActionsSucceeding";

struct Verdict {
    type_: &'static str,
    status: &'static str,
    reason: &'static str,
    message: String,
}

fn verdict(type_: &'static str, ok: bool, good: (&'static str, String), bad: (&'static str, String)) -> Verdict {
    let (status, (reason, message)) = if ok { ("True", good) } else { ("False", bad) };
    Verdict { type_, status, reason, message }
}

/// Whether a condition in this state is a problem.
fn is_problem(type_: &str, status: &str) -> bool {
    match type_ {
        INVALID_SPEC | DATA_DIVERGENCE | super::failover::FAILOVER_BLOCKED => status == "True",
        _ => status == "False",
    }
}

/// Build the status and plan the events of its condition changes. Returns the status and
/// whether the cluster is fully converged (phase Running).
pub(super) fn plan_status(p: &mut Planner<'_>, facts: &Facts, errors: &[SpecError]) -> (MemgraphClusterStatus, bool) {
    let old = &p.obs.status;
    let desired = u32::try_from(p.spec.read.replicas).unwrap_or(0);
    let wanted: Vec<(Instance, &super::ReplicaFacts)> =
        facts.replicas.iter().filter(|(_, r)| r.desired).map(|(i, r)| (*i, r)).collect();
    let ready = wanted.iter().filter(|(_, r)| r.in_sync).count();
    let registered = wanted.iter().filter(|(_, r)| r.row.is_some()).count();
    let write_pod = p.names.pod(facts.main_instance);

    let previous_replicas: Vec<ReplicaValidation> = old.validation.iter().flat_map(|v| v.replicas.clone()).collect();
    let replicas: Vec<ReplicaValidation> = wanted
        .iter()
        .map(|(i, r)| {
            let name = i.status_name();
            let before = previous_replicas.iter().find(|v| v.name == name);
            // `replicating` is `ready` with a transaction in flight: under load the MAIN reports
            // either on every look, and the status must not change with every write.
            let state = r.row.as_ref().and_then(|row| row.data.as_ref()).map(|d| match d.status {
                crate::memgraph::ReplicaStatus::Replicating => "ready".to_owned(),
                ref other => other.as_str().to_owned(),
            });
            // A registration this plan makes (again) starts the clock afresh: `unhealthy_since`
            // times *this* registration, or the next look would find the new one already past
            // INVALID_GRACE and drop it before Memgraph could recover it.
            let registers =
                p.actions.iter().any(|a| matches!(a, super::Action::RegisterReplica { instance, .. } if instance == i));
            let unhealthy_since = if registers { r.unhealthy_since.map(|_| p.now) } else { r.unhealthy_since };
            ReplicaValidation {
                name,
                healthy: r.in_sync,
                state,
                // A new registration is tested afresh.
                lag_ms: before.filter(|_| !registers).and_then(|b| b.lag_ms),
                last_test_time: before.filter(|_| !registers).and_then(|b| b.last_test_time.clone()),
                replication_test: before.filter(|_| !registers).and_then(|b| b.replication_test.clone()),
                test_message: before.filter(|_| !registers).and_then(|b| b.test_message.clone()),
                unhealthy_since: unhealthy_since.map(Time),
                out_of_sync_since: r.out_of_sync_since.map(Time),
                message: r.problem.clone(),
            }
        })
        .collect();
    let old_validation = old.validation.clone().unwrap_or_default();
    let mut validation = ValidationStatus { replicas, ..old_validation };
    let threshold = p.spec.validation.lag_threshold_ms;
    let merged_done = p.obs.validation_done.as_ref().filter(|_| p.validation_merge);
    if let Some(done) = merged_done {
        let (merged, events) =
            super::validation::merge(&validation, done, &super::validation::strict_unconfirmed(facts), threshold);
        validation = merged;
        for e in events {
            p.condition_event(e.type_, e.reason, e.note);
        }
    }
    if let Some(claim) = &p.validation_claim {
        super::validation::record_claim(&mut validation, claim);
    }
    // A replica that failed its last replication test is not healthy, whatever SHOW REPLICAS says.
    for r in &mut validation.replicas {
        r.healthy &= r.replication_test.as_deref() != Some(super::validation::FAILED);
    }
    validation.all_replicas_healthy = validation.replicas.iter().all(|r| r.healthy);
    let failed_tests: Vec<String> = validation
        .replicas
        .iter()
        .filter(|r| r.replication_test.as_deref() == Some(super::validation::FAILED))
        .map(|r| format!("{} {}", r.name, r.test_message.clone().unwrap_or_default()))
        .collect();

    let problems = |filter: &dyn Fn(&super::ReplicaFacts) -> bool| -> String {
        wanted
            .iter()
            .filter(|(_, r)| filter(r))
            .map(|(i, r)| format!("{}: {}", i.status_name(), r.problem.clone().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("; ")
    };

    let mut verdicts = vec![if errors.is_empty() {
        Verdict {
            type_: INVALID_SPEC,
            status: "False",
            reason: "SpecValid",
            message: "The spec passed every check".to_owned(),
        }
    } else {
        Verdict {
            type_: INVALID_SPEC,
            status: "True",
            reason: "InvalidSpec",
            message: format!(
                "{}. Nothing in the cluster is changed until the spec is fixed",
                errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            ),
        }
    }];
    let (write_status, write_reason, write_message) = match &facts.main {
        MainFacts::Verified { rows: Ok(_), .. } => ("True", "MainVerified", format!("{write_pod} is a verified MAIN")),
        MainFacts::Verified { rows: Err(_), holds_data: true } => (
            "True",
            "MainVerified",
            format!("{write_pod} is a MAIN holding data; its registrations cannot be read now"),
        ),
        MainFacts::Verified { rows: Err(e), holds_data: false } => (
            "Unknown",
            "ReplicasUnreadable",
            format!(
                "{write_pod} answers as a MAIN but SHOW REPLICAS failed ({e}); its label is left as it is until it can be \
                 checked"
            ),
        ),
        MainFacts::NotReady(m) => ("False", "PodNotReady", m.clone()),
        // The operator cannot see: that says nothing about the pod, and its label is left alone.
        MainFacts::Unreachable(m) => (
            "Unknown",
            "Unreachable",
            format!(
                "Memgraph on {write_pod} does not answer the operator ({m}); its label is left as it is, since that \
                 is no evidence that the pod is down"
            ),
        ),
        MainFacts::NotMain => (
            "False",
            "NotMain",
            format!(
                "{write_pod} is a REPLICA. The operator does not promote it by itself; if it holds the newest data run \
                 SET REPLICATION ROLE TO MAIN on it"
            ),
        ),
        MainFacts::LostData(m) => ("False", "DataLossRisk", m.clone()),
    };
    verdicts.push(Verdict { type_: WRITE_READY, status: write_status, reason: write_reason, message: write_message });
    let replicas_unknown = matches!(facts.main, MainFacts::Unreachable(_) | MainFacts::Verified { rows: Err(_), .. });
    verdicts.push(if replicas_unknown {
        Verdict {
            type_: REPLICAS_READY,
            status: "Unknown",
            reason: "MainNotVerified",
            message:
                "Replicas cannot be checked until the MAIN answers SHOW REPLICAS; their labels are left as they are"
                    .to_owned(),
        }
    } else {
        verdict(
            REPLICAS_READY,
            ready == wanted.len(),
            ("AllReplicasReady", format!("{ready} of {desired} replicas are registered and in sync")),
            (
                "ReplicasNotReady",
                format!("{ready} of {desired} replicas are registered and in sync; {}", problems(&|r| !r.in_sync)),
            ),
        )
    });
    let healthy = match facts.main.rows() {
        None => Verdict {
            type_: REPLICATION_HEALTHY,
            status: "Unknown",
            reason: "MainNotVerified",
            message: "Replication cannot be checked until the MAIN is verified".to_owned(),
        },
        Some(_) => {
            let unhealthy = wanted.iter().any(|(_, r)| {
                r.row
                    .as_ref()
                    .is_some_and(|row| !row.data.as_ref().is_some_and(|d| d.status.is_healthy()) || !r.address_ok)
            });
            if !unhealthy && facts.unwanted_rows.is_empty() && !failed_tests.is_empty() {
                Verdict {
                    type_: REPLICATION_HEALTHY,
                    status: "False",
                    reason: "ReplicationTestFailed",
                    message: format!(
                        "The MAIN reports every replica in sync, but the replication test found: {}",
                        failed_tests.join("; ")
                    ),
                }
            } else {
                verdict(
                    REPLICATION_HEALTHY,
                    !unhealthy && facts.unwanted_rows.is_empty(),
                    ("Healthy", format!("All {registered} registered replicas are in sync")),
                    ("ReplicaUnhealthy", {
                        let list = problems(&|r| r.row.is_some() && !r.in_sync);
                        let extra: Vec<&str> = facts.unwanted_rows.iter().map(|r| r.name.as_str()).collect();
                        if extra.is_empty() {
                            list
                        } else {
                            format!("{list}; unwanted registrations: {}", extra.join(", "))
                        }
                    }),
                )
            }
        }
    };
    verdicts.push(healthy);
    let diverged: Vec<String> = wanted.iter().filter(|(_, r)| r.diverged).map(|(i, _)| i.status_name()).collect();
    let previous_divergence = old.conditions.iter().find(|c| c.type_ == DATA_DIVERGENCE);
    // The write pod answered as an empty MAIN with no registrations, but read pods could not be
    // counted: whether it lost its data is not known, so nothing found before still holds.
    let empty_main_uncounted = matches!(facts.main, MainFacts::Unreachable(_))
        && p.obs
            .pods
            .get(&facts.main_instance)
            .is_some_and(|w| matches!(w.memgraph, MemgraphState::Main { nodes: Some(0), .. }));
    let divergence = if let MainFacts::LostData(m) = &facts.main {
        Verdict { type_: DATA_DIVERGENCE, status: "True", reason: "MainLostData", message: m.clone() }
    } else if let (true, MainFacts::Unreachable(m)) = (empty_main_uncounted, &facts.main) {
        Verdict {
            type_: DATA_DIVERGENCE,
            status: "Unknown",
            reason: "DataUncounted",
            message: format!("{m}; until then it is not known whether the MAIN lost data"),
        }
    } else if let (None, Some(c)) = (facts.main.rows(), previous_divergence) {
        // The MAIN cannot be looked at: what was found before still stands.
        let (status, reason) = match c.reason.as_str() {
            "MainLostData" => ("True", "MainLostData"),
            "ReplicaDiverged" => ("True", "ReplicaDiverged"),
            "DataUncounted" => ("Unknown", "DataUncounted"),
            _ => ("False", "NoDivergence"),
        };
        Verdict { type_: DATA_DIVERGENCE, status, reason, message: c.message.clone() }
    } else if !diverged.is_empty() {
        Verdict {
            type_: DATA_DIVERGENCE,
            status: "True",
            reason: "ReplicaDiverged",
            message: format!(
                "{} diverged from the MAIN: they hold writes the MAIN does not have. Nothing is overwritten; to rejoin, \
                 back up what you need from them, then delete their PersistentVolumeClaims and pods",
                diverged.join(", ")
            ),
        }
    } else {
        Verdict {
            type_: DATA_DIVERGENCE,
            status: "False",
            reason: "NoDivergence",
            message: "No divergence found".to_owned(),
        }
    };
    // Who holds what the MAIN lost, as last counted: kept while the loss stands and the MAIN
    // or a holder cannot be counted, forgotten once it is resolved.
    let lost_data_holders = if divergence.reason != "MainLostData" {
        std::collections::BTreeMap::new()
    } else if let (MainFacts::LostData(_), Some(held)) =
        (&facts.main, p.obs.pods.get(&facts.main_instance).and_then(|w| w.memgraph.nodes()))
    {
        let reads = || super::facts::data_peers(p.obs).map(|(_, pod)| pod);
        let mut holders = old.lost_data_holders.clone();
        holders.retain(|name, n| *n > held && !reads().any(|pod| &pod.name == name && pod.memgraph.nodes().is_some()));
        holders.extend(
            reads().filter_map(|pod| pod.memgraph.nodes().filter(|n| *n > held).map(|n| (pod.name.clone(), n))),
        );
        holders
    } else {
        old.lost_data_holders.clone()
    };
    verdicts.push(divergence);
    let failover = p.failover.clone().and_then(|f| f.status.map(|s| (s, f.blocked)));
    if let Some((_, blocked)) = &failover
        && (p.spec.failover.enabled || blocked.is_some())
    {
        verdicts.push(match blocked {
            Some(why) => Verdict {
                type_: super::failover::FAILOVER_BLOCKED,
                status: "True",
                reason: "NoSafeCandidate",
                message: why.clone(),
            },
            None => Verdict {
                type_: super::failover::FAILOVER_BLOCKED,
                status: "False",
                reason: "NotBlocked",
                message: "No failover is needed, or it can be made".to_owned(),
            },
        });
    }
    // Only with a valid spec were the objects planned; otherwise keep what is known.
    if facts.spec_valid {
        verdicts.push(if p.storage_pending.is_empty() {
            Verdict {
                type_: STORAGE_IN_SYNC,
                status: "True",
                reason: "StorageMatchesSpec",
                message: "Volume claims match the spec".to_owned(),
            }
        } else {
            Verdict {
                type_: STORAGE_IN_SYNC,
                status: "False",
                reason: "StorageChangeRefused",
                message: p.storage_pending.join("; "),
            }
        });
    } else if let Some(previous) = old.conditions.iter().find(|c| c.type_ == STORAGE_IN_SYNC) {
        let (status, reason) =
            if previous.status == "True" { ("True", "StorageMatchesSpec") } else { ("False", "StorageChangeRefused") };
        verdicts.push(Verdict { type_: STORAGE_IN_SYNC, status, reason, message: previous.message.clone() });
    }

    let generation = p.obs.cluster.generation;
    let now = Time(p.now);
    let mut conditions = Vec::new();
    for v in &verdicts {
        let previous = old.conditions.iter().find(|c| c.type_ == v.type_);
        let changed = previous.is_none_or(|c| c.status != v.status || c.reason != v.reason);
        let transition = match previous {
            Some(c) if c.status == v.status => c.last_transition_time.clone(),
            _ => now.clone(),
        };
        conditions.push(Condition {
            type_: v.type_.to_owned(),
            status: v.status.to_owned(),
            reason: v.reason.to_owned(),
            message: v.message.clone(),
            last_transition_time: transition,
            observed_generation: generation,
        });
        // Problems are announced when they appear or change; first sightings of routine
        // start-up states are not.
        let routine_start = previous.is_none() && matches!(v.type_, WRITE_READY | REPLICAS_READY);
        if changed && !routine_start && v.status != "Unknown" {
            if is_problem(v.type_, v.status) {
                p.condition_event(EventType::Warning, v.reason, v.message.clone());
            } else if previous.is_some_and(|c| is_problem(&c.type_, &c.status)) {
                p.condition_event(EventType::Normal, v.reason, v.message.clone());
            }
        }
    }

    // The live checks' conditions, announced by their per-instance events.
    let checks = if p.spec.validation.enabled {
        let reads = u32::try_from(p.spec.read.replicas).unwrap_or(0);
        super::validation::conditions(&old.conditions, merged_done, &validation, reads, threshold, p.now, generation)
    } else {
        Vec::new()
    };
    // An instance that does not answer degrades the cluster; a high lag does not: reads and
    // writes are served, and the lag has its own condition, column, event and alert.
    let checks_ok = checks
        .iter()
        .filter(|c| c.type_ != super::validation::REPLICATION_LAG_ACCEPTABLE)
        .all(|c| !is_problem(&c.type_, &c.status));
    conditions.extend(checks);
    // ActionsSucceeding is decided by the outcome of the actions (see `failures::record`).
    conditions.extend(old.conditions.iter().filter(|c| c.type_ == ACTIONS_SUCCEEDING).cloned());
    // BackupsHealthy is decided last, from the backups as this plan leaves them.
    conditions.extend(old.conditions.iter().filter(|c| c.type_ == super::backup::BACKUPS_HEALTHY).cloned());

    let lost = verdicts.iter().any(|v| v.type_ == DATA_DIVERGENCE && v.reason == "MainLostData");
    let failed = !errors.is_empty() || lost || matches!(facts.main, MainFacts::NotMain | MainFacts::LostData(_));
    let phase = if failed {
        Phase::Failed
    } else if !facts.main.routable() {
        if matches!(old.phase, Phase::Pending) { Phase::Pending } else { Phase::Degraded }
    } else if ready == wanted.len()
        // A storage change that waits for a person does not degrade a working cluster.
        && verdicts.iter().filter(|v| v.type_ != STORAGE_IN_SYNC).all(|v| !is_problem(v.type_, v.status))
        && checks_ok
    {
        Phase::Running
    } else {
        Phase::Degraded
    };

    let status = MemgraphClusterStatus {
        phase,
        observed_generation: generation,
        write_ready: facts.main.verified(),
        main_pod: facts.main.verified().then(|| write_pod.clone()),
        ready_replicas: i32::try_from(ready).unwrap_or(i32::MAX),
        registered_replicas: i32::try_from(registered).unwrap_or(i32::MAX),
        read_selector: Some(selector_string(&p.names.read_selector())),
        last_snapshot_time: old.last_snapshot_time.clone(),
        last_snapshot_tick: p.snapshot_tick.map(Time).or_else(|| old.last_snapshot_tick.clone()),
        snapshot_schedule: if p.snapshot_tick.is_some() {
            Some(p.spec.snapshot.schedule.clone())
        } else {
            old.snapshot_schedule.clone()
        },
        last_s3_backup_time: old.last_s3_backup_time.clone(),
        backups: p.backups.clone(),
        bootstrap: p.bootstrap.clone(),
        lost_data_holders,
        validation: Some(validation),
        // Not planned (the spec is invalid): the record of who is the MAIN stays as it is. Losing
        // it would hand the MAIN back to the write pod.
        failover: match (failover, p.failover.is_some()) {
            (Some((mut s, _)), _) => {
                super::failover::record_seen(p, facts, &mut s);
                Some(s)
            }
            (None, true) => None,
            (None, false) => old.failover.clone(),
        },
        failing_actions: old.failing_actions.clone(),
        conditions,
    };
    let mut status = status;
    if let Some((state, reason, message)) = super::backup::set_health(p.spec, &mut status, p.now, generation) {
        let type_ = if state == "False" { EventType::Warning } else { EventType::Normal };
        p.condition_event(type_, reason, message);
    }
    (status, phase == Phase::Running)
}
