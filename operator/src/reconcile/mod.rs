//! One reconcile of one `MemgraphCluster`: observe → plan → act (DESIGN §3).

pub mod act;
pub mod backup_job;
pub mod desired;
pub mod guard;
pub mod main_probe;
pub mod measure;
pub mod observe;
pub mod observed;
pub mod plan;
pub mod progress;
pub mod snapshot_job;
pub mod validation_job;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::ResourceExt;
use thiserror::Error;
use tracing::Instrument;

use crate::api::MemgraphCluster;
use crate::clock::Clock;
use crate::kube_api::{Kube, KubeError};
use crate::memgraph::{Bolt, BoltError};

pub use act::{Phase, act, write_replication_outcomes, write_status};
pub use observe::observe;
pub use plan::{Action, Plan, plan};

/// Why a reconcile stopped early. The controller runtime retries with backoff.
#[derive(Debug, Error)]
pub enum ReconcileError {
    /// A Kubernetes API call failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// A Memgraph query failed.
    #[error(transparent)]
    Bolt(#[from] BoltError),
}

impl ReconcileError {
    /// Short machine-readable kind, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ReconcileError::Kube(e) if e.is_conflict() => "conflict",
            ReconcileError::Kube(_) => "kube",
            ReconcileError::Bolt(_) => "bolt",
        }
    }
}

/// What a reconcile did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Reconcile again after this long, unless something triggers it earlier.
    pub requeue_after: Duration,
    /// observe → plan → act rounds run (a round that changed replication is followed by another
    /// so that new replicas are verified and labelled in the same reconcile).
    pub rounds: usize,
    /// Actions executed, events included.
    pub actions: usize,
    /// A snapshot the written status claimed: the caller runs it with [`snapshot_job::run`].
    pub snapshot: Option<snapshot_job::SnapshotJob>,
    /// Live checks the written status claimed: the caller runs them with
    /// [`validation_job::run`].
    pub validation: Option<validation_job::ValidationJob>,
    /// What this reconcile measured, for metrics.
    pub measurements: Vec<measure::Measurement>,
    /// The status as written (or as stored when nothing needed writing), for metrics.
    pub status: Option<crate::api::MemgraphClusterStatus>,
    /// The MAIN to probe from now on: the caller hands it to
    /// [`main_probe::MainProbes::watch`] with the cluster's credentials.
    pub probe: main_probe::ProbeWanted,
}

impl Outcome {
    /// A reconcile that ends without starting work or writing a status.
    fn idle(requeue_after: Duration, rounds: usize, actions: usize) -> Self {
        Self {
            requeue_after,
            rounds,
            actions,
            snapshot: None,
            validation: None,
            measurements: Vec::new(),
            status: None,
            probe: main_probe::ProbeWanted::Keep,
        }
    }
}

/// Most rounds per reconcile: register, verify and label, and a few short looks while new or
/// restarted replicas come in sync.
pub const MAX_ROUNDS: usize = 6;
/// Pause before looking again at a replica that is expected to come in sync.
pub const SETTLE_DELAY: Duration = Duration::from_millis(250);
/// Time after which a reconcile stops looking again and writes what it has: a round that waits
/// on slow queries must not keep the status stale.
pub const SETTLE_BUDGET: Duration = Duration::from_secs(3);
/// Look again this soon after being handed a view older than one already acted on.
pub const STALE_RETRY: Duration = Duration::from_secs(1);

/// What the operator process remembers between reconciles. Nothing here is needed for
/// correctness after a restart (that lives in the status); it only lets the operator refuse a
/// view of a cluster older than one it has already acted on, as a watch cache or a lagging API
/// server may hand it.
#[derive(Debug, Default)]
pub struct Memory {
    newest: Mutex<BTreeMap<String, i64>>,
    /// The latest scheduled work (a claimed tick, a backup started or finished) each cluster's
    /// status was written with: a view without it is older than a write this process made.
    written: Mutex<BTreeMap<String, k8s_openapi::jiff::Timestamp>>,
    /// Snapshots running beside the reconciles, and their results.
    pub snapshots: snapshot_job::SnapshotJobs,
    /// Live checks running beside the reconciles, and their results.
    pub validation: validation_job::ValidationJobs,
    /// Node counts of replicas while the MAIN cannot report on them.
    pub progress: progress::Progress,
    /// The MAINs probed every second beside the reconciles (see [`main_probe`]).
    pub main_probes: main_probe::MainProbes,
}

impl Memory {
    /// Whether `cluster` is at least as new as every view of it acted on before, and its status
    /// holds the scheduled work this process last recorded; remembers it.
    pub fn accept(&self, cluster: &MemgraphCluster) -> bool {
        let (Some(uid), Some(generation)) = (cluster.uid(), cluster.metadata.generation) else { return true };
        if let (Ok(written), Some(stamp)) = (self.written.lock(), written_stamp(cluster.status.as_ref()))
            && written.get(&uid).is_some_and(|w| stamp < *w)
        {
            return false;
        }
        if written_stamp(cluster.status.as_ref()).is_none() && self.written.lock().is_ok_and(|w| w.contains_key(&uid)) {
            return false;
        }
        let Ok(mut newest) = self.newest.lock() else { return true };
        let seen = newest.entry(uid).or_insert(generation);
        if generation < *seen {
            return false;
        }
        *seen = generation;
        true
    }

    /// Remember the scheduled work a status this process wrote records.
    pub fn wrote(&self, uid: &str, status: &crate::api::MemgraphClusterStatus) {
        if let (Ok(mut written), Some(stamp)) = (self.written.lock(), written_stamp(Some(status))) {
            let entry = written.entry(uid.to_owned()).or_insert(stamp);
            *entry = (*entry).max(stamp);
        }
    }
}

/// Whether `status` records the claim of `claim`.
fn validation_recorded(status: &crate::api::MemgraphClusterStatus, claim: &plan::validation::ValidationClaim) -> bool {
    let at = Some(claim.at);
    status.validation.as_ref().is_some_and(|v| {
        [&v.last_connectivity_test, &v.last_replication_test, &v.last_lag_measurement]
            .into_iter()
            .any(|t| t.as_ref().map(|t| t.0) == at)
    })
}

/// The plan's actions split into the `main` label that completes a failover (run once the status
/// recording the completion is written) and the rest.
fn split_completing_label(stored: &crate::api::MemgraphClusterStatus, plan: &plan::Plan) -> (Vec<Action>, Vec<Action>) {
    let pending = |s: &crate::api::MemgraphClusterStatus| s.failover.as_ref().is_some_and(|f| f.intent.is_some());
    if !pending(stored) || pending(&plan.status) {
        return (Vec::new(), plan.actions.clone());
    }
    plan.actions
        .iter()
        .cloned()
        .partition(|a| matches!(a, Action::Label { role: Some(r), .. } if r == crate::names::ROLE_MAIN))
}

/// The MAIN to probe after a reconcile that wrote `status`: the one it holds, while failover is
/// on (only a failover acts on what the probe finds).
fn probe_wanted(observed: &observed::Observed, status: &crate::api::MemgraphClusterStatus) -> main_probe::ProbeWanted {
    if !observed.spec.failover.enabled || observed.cluster.deleting {
        return main_probe::ProbeWanted::Stop;
    }
    let instance = plan::main_instance_in(status);
    main_probe::ProbeWanted::Probe(main_probe::ProbeTarget {
        namespace: observed.cluster.namespace.clone(),
        name: observed.cluster.name.clone(),
        instance,
        address: observed_names(observed).bolt_address(instance),
    })
}

fn observed_names(observed: &observed::Observed) -> crate::names::ClusterNames {
    crate::names::ClusterNames::new(observed.cluster.name.clone(), observed.cluster.namespace.clone())
}

/// The latest scheduled work a status records.
fn written_stamp(status: Option<&crate::api::MemgraphClusterStatus>) -> Option<k8s_openapi::jiff::Timestamp> {
    let status = status?;
    let b = status.backups.as_ref();
    let v = status.validation.as_ref();
    [
        v.and_then(|v| v.last_connectivity_test.as_ref()).map(|t| t.0),
        v.and_then(|v| v.last_replication_test.as_ref()).map(|t| t.0),
        v.and_then(|v| v.last_lag_measurement.as_ref()).map(|t| t.0),
        status.last_snapshot_tick.as_ref().map(|t| t.0),
        b.and_then(|b| b.running.as_ref()).map(|r| r.started_at.0),
        b.and_then(|b| b.last_successful.as_ref()).map(|r| r.time.0),
        b.and_then(|b| b.last_failed.as_ref()).map(|r| r.time.0),
    ]
    .into_iter()
    .flatten()
    .max()
    // Stored times keep whole seconds only.
    .and_then(|t| k8s_openapi::jiff::Timestamp::from_second(t.as_second()).ok())
}

/// A view of `cluster` at least as new as any acted on before, reading it again once if the one
/// in hand is older; `None` when even a fresh read is older (or the cluster is gone).
async fn fresh_enough<K: Kube>(
    kube: &K,
    memory: &Memory,
    cluster: MemgraphCluster,
) -> Result<Option<MemgraphCluster>, ReconcileError> {
    if memory.accept(&cluster) {
        return Ok(Some(cluster));
    }
    let namespace = cluster.namespace().unwrap_or_default();
    let again = kube.get::<MemgraphCluster>(&namespace, &cluster.name_any()).await?;
    Ok(again.filter(|c| memory.accept(c)))
}

/// The job to run beside the reconciles, if any: the snapshot of a tick this reconcile claimed
/// (with its backup when one was recorded with it), or a backup recorded as running that no
/// job of this process is following (the process that started it died).
async fn start_job<K: Kube>(
    kube: &K,
    memory: &Memory,
    observed: &observed::Observed,
    written: &crate::api::MemgraphClusterStatus,
    tick: Option<k8s_openapi::jiff::Timestamp>,
    uid: &str,
) -> Option<snapshot_job::SnapshotJob> {
    let running = written.backups.as_ref().and_then(|b| b.running.as_ref());
    if (tick.is_none() && running.is_none()) || !memory.snapshots.start(uid) {
        return None;
    }
    let backup = match running {
        Some(r) => backup_job::prepare(kube, observed, r).await,
        None => None,
    };
    let names = crate::names::ClusterNames::new(observed.cluster.name.clone(), observed.cluster.namespace.clone());
    Some(snapshot_job::SnapshotJob {
        cluster: uid.to_owned(),
        address: names.bolt_address(plan::main_instance_in(written)),
        tick,
        backup,
        version: crate::version::MemgraphVersion::from_image(&observed.spec.write.image),
    })
}

/// Reconcile one cluster: observe → plan → act, repeated within the same reconcile while it just
/// changed replication or a replica is about to come in sync, so that a pod that became ready is
/// registered and labelled by the reconcile its readiness triggered. The status (and a
/// scheduled snapshot) is written once, from the last round, with the outcome of every round.
pub async fn reconcile<K: Kube>(
    cluster: &MemgraphCluster,
    kube: &K,
    bolt: &dyn Bolt,
    clock: &dyn Clock,
    memory: &Memory,
) -> Result<Outcome, ReconcileError> {
    let started = tokio::time::Instant::now();
    let mut next = Some(cluster.clone());
    // The status as stored, while the rounds plan from what the previous round found.
    let mut stored: Option<crate::api::MemgraphClusterStatus> = None;
    let mut outcomes: Vec<plan::failures::Outcome> = Vec::new();
    let mut executed = 0;
    let mut round = 0;
    let mut claimed_tick: Option<k8s_openapi::jiff::Timestamp> = None;
    let mut claimed_validation: Option<plan::validation::ValidationClaim> = None;
    while let Some(candidate) = next.take() {
        round += 1;
        let Some(current) = fresh_enough(kube, memory, candidate).await? else {
            tracing::info!(cluster = %cluster.name_any(), "handed an older view than one already acted on; looking again soon");
            return Ok(Outcome::idle(STALE_RETRY, round, executed));
        };
        let uid = current.uid().unwrap_or_default();
        let stored_now = stored.take().unwrap_or_else(|| current.status.clone().unwrap_or_default());
        let started_at = clock.now();
        let held = current.status.as_ref().map_or(crate::names::Instance::Write, plan::main_instance_in);
        let probe = memory.main_probes.view(&uid, held);
        let mut observed = observe(kube, bolt, &current, probe).instrument(tracing::info_span!("observe")).await?;
        observed.started = Some(started_at);
        observed.snapshot_running = memory.snapshots.running(&uid);
        observed.validation_running = memory.validation.running(&uid);
        // Planned as if the probe of a MAIN replaced since it ran had not been made.
        let main = plan::main_instance(&observed);
        observed.validation_done = memory.validation.finished(&uid).map(|done| plan::validation::for_main(done, main));
        let mut test_id = [0u8; 16];
        clock.fill_random(&mut test_id);
        observed.fresh_test_id = crate::backup::upload::hex(&test_id);
        if !observed.agent_key_exists {
            let mut key = [0u8; 32];
            clock.fill_random(&mut key);
            observed.fresh_agent_key = crate::backup::upload::hex(&key);
        }
        memory.progress.note(&mut observed, clock.now());
        let mut plan = {
            let _span = tracing::info_span!("plan").entered();
            plan(&current.spec, &observed, clock.now())
        };
        // Checks an earlier round claimed are this reconcile's to run when its status, which
        // carries their claim, is written.
        match (plan.validation.take(), &claimed_validation) {
            (Some(claim), Some(earlier)) => {
                let joined = claim.joined(earlier);
                claimed_validation = Some(joined.clone());
                plan.validation = Some(joined);
            }
            (Some(claim), None) => {
                claimed_validation = Some(claim.clone());
                plan.validation = Some(claim);
            }
            (None, Some(claim)) if validation_recorded(&plan.status, claim) => plan.validation = Some(claim.clone()),
            _ => {}
        }
        // What failed in an earlier round waits for its backoff like what failed before.
        let failed_before: Vec<String> =
            outcomes.iter().filter(|o| o.error.is_some()).map(|o| o.subject.clone()).collect();
        plan.actions.retain(|a| a.subject().is_none_or(|s| !failed_before.contains(&s)));
        // A round plans from the status the previous round planned: a tick an earlier round
        // claimed is still this reconcile's to take when the status is finally written.
        match plan.actions.iter().find_map(|a| match a {
            Action::CreateSnapshot { tick } => Some(*tick),
            _ => None,
        }) {
            Some(tick) => claimed_tick = Some(tick),
            None => {
                // ...unless the stored status has it already: the earlier round planned from
                // an old view, and the tick was taken before.
                if let Some(tick) = claimed_tick
                    && plan.status.last_snapshot_tick.as_ref().map(|t| t.0) == Some(tick)
                    && stored_now.last_snapshot_tick.as_ref().map(|t| t.0) != Some(tick)
                {
                    plan.actions.push(Action::CreateSnapshot { tick });
                }
            }
        }
        let changed = plan.actions.iter().any(Action::changes_replication);
        // A round that completes a failover is the last: its `main` label goes on only after
        // the status recording the completion (see `split_completing_label`).
        let (after_status, before_status) = split_completing_label(&stored_now, &plan);
        let completes = !after_status.is_empty();
        let last = round >= MAX_ROUNDS
            || !(changed || plan.settling)
            || started.elapsed() > SETTLE_BUDGET
            || plan.record_first
            || completes;
        if !last {
            let report =
                act(kube, bolt, &observed, &plan.actions, Phase::All).instrument(tracing::info_span!("act")).await;
            executed += report.executed;
            outcomes.extend(report.outcomes);
        } else {
            // Labels and objects, then the status, then the replication commands, which may
            // wait seconds on Memgraph: what clients and people see is never held up by them.
            // The `main` label that completes a failover waits for the status that records it
            // complete: with the label on and the intent still in status, a crash between the
            // two left a MAIN that took writes and a failover a later reconcile could roll back.
            let report = act(kube, bolt, &observed, &before_status, Phase::Kubernetes)
                .instrument(tracing::info_span!("act"))
                .await;
            executed += report.executed;
            outcomes.extend(report.outcomes);
            let mut held = plan.held.clone();
            held.extend(failed_before);
            // Records of the commands still to run stay until they have run.
            held.extend(
                plan.actions.iter().filter_map(Action::subject).filter(|s| s.starts_with(plan::REPLICA_SUBJECT_PREFIX)),
            );
            // What is written is compared with what is stored, not with what earlier rounds found.
            observed.status = stored_now;
            let finished = memory.snapshots.take_finished(&uid);
            let (written, tick, status) =
                match write_status(kube, &observed, &plan, &outcomes, &held, finished.as_ref(), clock).await {
                    Ok(done) => done,
                    Err(e) => {
                        if let Some(done) = finished {
                            memory.snapshots.put_back(&uid, done);
                        }
                        return Err(e);
                    }
                };
            executed += written;
            memory.wrote(&uid, &status);
            if plan.validation_merged
                && let Some(done) = &observed.validation_done
            {
                memory.validation.written(&uid, done.claimed);
            }
            let labelled = act(kube, bolt, &observed, &after_status, Phase::Kubernetes)
                .instrument(tracing::info_span!("act", phase = "main label"))
                .await;
            executed += labelled.executed;
            let mut commands = act(kube, bolt, &observed, &plan.actions, Phase::Replication)
                .instrument(tracing::info_span!("act", phase = "replication"))
                .await;
            executed += commands.executed;
            commands.outcomes.extend(labelled.outcomes);
            let failed_now = outcomes.iter().chain(&commands.outcomes).any(|o| o.error.is_some());
            executed += write_replication_outcomes(kube, &observed, &status, &commands.outcomes, clock).await?;
            let snapshot = start_job(kube, memory, &observed, &status, tick, &uid).await;
            // Marked running only now that nothing can fail before the caller runs it: a job
            // marked running and never run would stop every later check of the cluster.
            let validation = plan.validation.clone().filter(|_| memory.validation.start(&uid)).map(|claim| {
                validation_job::ValidationJob { cluster: uid.clone(), names: observed_names(&observed), claim }
            });
            let mut measurements = memory.validation.take_measurements(&uid);
            if let Some(done) = &finished {
                measurements.extend(snapshot_job::measurements(done));
            }
            let mut requeue_after = plan.requeue_after;
            // A failover's promotion just ran: look again at once, to register the replicas on
            // the new MAIN and route writes to it.
            if plan.record_first {
                requeue_after = requeue_after.min(SETTLE_DELAY);
            }
            if failed_now {
                requeue_after = requeue_after.min(plan::failures::retry_delay(1));
            }
            let probe = probe_wanted(&observed, &status);
            return Ok(Outcome {
                requeue_after,
                rounds: round,
                actions: executed,
                snapshot,
                validation,
                measurements,
                status: Some(status),
                probe,
            });
        }
        if !changed {
            tokio::time::sleep(SETTLE_DELAY).await;
        }
        let namespace = current.namespace().unwrap_or_default();
        next = kube.get::<MemgraphCluster>(&namespace, &current.name_any()).await?;
        // The status is written once, at the end: the next round judges by what this round
        // found (timers such as `outOfSyncSince`), not by the status of before the reconcile.
        if let Some(fresh) = next.as_mut() {
            stored = Some(fresh.status.replace((*plan.status).clone()).unwrap_or_default());
        }
    }
    Ok(Outcome::idle(plan::REQUEUE_BUSY, round, executed))
}
