//! Facts: what is true about the cluster, derived from the observation once, so that every
//! planning step judges the same way.
//!
//! Routing is decided on evidence. A label is added only on positive evidence that routing is
//! right (the operator verified the role, and the MAIN reports the replica in sync), removed only
//! on positive evidence that it is wrong (the pod is not Ready, Memgraph says it is something
//! else, the registration is missing, diverged, or out of sync beyond a grace), and left alone
//! when the operator cannot see: its own blindness is no evidence about the pod.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::{INVALID_GRACE, Planner, ROUTE_GRACE, STALL_GRACE};
use crate::api::{DataDurability, ReplicationMode};
use crate::memgraph::{ReplicaRow, ReplicaStatus};
use crate::names::{ClusterNames, Instance};
use crate::reconcile::observed::{MemgraphState, ObjectKey, ObjectKind, Observed, PodState};

/// The instance the operator holds as MAIN (the write pod, or the replica a failover promoted).
#[derive(Debug, Clone, PartialEq)]
pub enum MainFacts {
    /// No pod, or the pod is not ready or terminating.
    NotReady(String),
    /// Ready but Memgraph did not answer.
    Unreachable(String),
    /// Answered, but is a REPLICA.
    NotMain,
    /// Verified MAIN. `rows` is its `SHOW REPLICAS` (Err when that failed).
    Verified {
        /// Registered replicas.
        rows: Result<Vec<ReplicaRow>, String>,
        /// It was counted and holds data.
        holds_data: bool,
    },
    /// MAIN, but it came back empty while replicas hold data: never route writes to it.
    LostData(String),
}

impl MainFacts {
    /// Whether the write pod answered as a MAIN (its `SHOW REPLICAS` may have failed).
    pub fn routable(&self) -> bool {
        matches!(self, MainFacts::Verified { .. })
    }

    /// Whether the write pod is fully verified: a MAIN whose registrations were read, or that
    /// holds data, so an empty MAIN that lost its volume would have been told apart. Only this
    /// earns the `main` label.
    pub fn verified(&self) -> bool {
        matches!(self, MainFacts::Verified { rows: Ok(_), .. } | MainFacts::Verified { holds_data: true, .. })
    }

    /// Whether there is positive evidence that the write pod must not be routed to.
    pub fn unroutable(&self) -> bool {
        matches!(self, MainFacts::NotReady(_) | MainFacts::NotMain | MainFacts::LostData(_))
    }

    /// Registered replicas, when the MAIN is verified and answered `SHOW REPLICAS`.
    pub fn rows(&self) -> Option<&[ReplicaRow]> {
        match self {
            MainFacts::Verified { rows: Ok(rows), .. } => Some(rows),
            _ => None,
        }
    }
}

/// What to do with a pod's role label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Positive evidence that routing to it is right: label it.
    Yes,
    /// Positive evidence that routing to it is wrong: remove the label.
    No,
    /// No evidence either way (the operator cannot see, or a short grace runs): leave it.
    Unknown,
}

/// One read replica, desired or not.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaFacts {
    /// The spec wants it (index below `read.replicas`).
    pub desired: bool,
    /// Its row on the MAIN, if registered.
    pub row: Option<ReplicaRow>,
    /// The row is registered with the right address.
    pub address_ok: bool,
    /// The row is registered in the spec's mode.
    pub mode_ok: bool,
    /// The pod is ready and Memgraph says REPLICA.
    pub ready_replica: bool,
    /// The pod is ready and Memgraph says MAIN.
    pub ready_main: bool,
    /// Positive evidence that clients may read from it: desired, ready REPLICA, registered at
    /// the right address and in sync on a verified MAIN.
    pub in_sync: bool,
    /// In sync in the spec's mode and caught up (`behind` 0): it holds every write.
    pub caught_up: bool,
    /// What to do with its `replica` label.
    pub route: Route,
    /// Why it is not in sync, for status and events.
    pub problem: Option<String>,
    /// Since when the MAIN has reported it out of sync while its pod was ready (from status,
    /// or now when first seen).
    pub unhealthy_since: Option<Timestamp>,
    /// Since when the MAIN has reported its registration out of sync, pod ready or not.
    pub out_of_sync_since: Option<Timestamp>,
    /// It has been `invalid` longer than [`INVALID_GRACE`]: re-register it.
    pub stuck: bool,
    /// Registered SYNC or STRICT_SYNC and out of sync for longer than the spec's
    /// `degradeAfterSeconds`, with `dataDurability: Preferred`: register it ASYNC.
    pub degrade: bool,
    /// It diverged from the MAIN.
    pub diverged: bool,
}

/// Everything the planning steps judge by.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The spec passed every check.
    pub spec_valid: bool,
    /// The instance held as MAIN (see [`main_instance`]).
    pub main_instance: Instance,
    /// What it is.
    pub main: MainFacts,
    /// Every other instance by name: each desired replica (the read pods, and the write pod
    /// after a failover), and any read pod that still exists or is registered.
    pub replicas: BTreeMap<Instance, ReplicaFacts>,
    /// Rows on the MAIN whose names are not replicas this cluster wants.
    pub unwanted_rows: Vec<ReplicaRow>,
}

impl Facts {
    /// Whether some desired replica other than `index` is registered in the spec's (sync) mode
    /// and in sync: it keeps acknowledged writes durable while `index` catches up as ASYNC.
    pub fn durable_without(&self, instance: Instance) -> bool {
        self.replicas.iter().any(|(i, r)| *i != instance && r.desired && r.in_sync && r.mode_ok)
    }
}

/// The instance the operator holds as MAIN: the target of a failover under way, else the one
/// `status.failover.main` names, else the write pod.
pub fn main_instance(obs: &Observed) -> Instance {
    main_instance_in(&obs.status)
}

/// [`main_instance`] as `status` records it.
pub fn main_instance_in(status: &crate::api::MemgraphClusterStatus) -> Instance {
    status.failover.as_ref().map_or(Instance::Write, super::failover::held_main)
}

/// `SHOW REPLICAS` of the instance held as MAIN when it is a reachable MAIN.
pub fn main_rows(obs: &Observed) -> Option<&[ReplicaRow]> {
    let pod = obs.pods.get(&main_instance(obs)).filter(|p| pod_ready(Some(p)))?;
    match &pod.memgraph {
        MemgraphState::Main { replicas: Some(Ok(rows)), .. } => Some(rows),
        _ => None,
    }
}

fn pod_ready(pod: Option<&PodState>) -> bool {
    pod.is_some_and(|p| p.ready && !p.terminating)
}

fn elapsed(since: Option<Timestamp>, now: Timestamp, grace: Duration) -> bool {
    since.is_some_and(|since| now.duration_since(since).as_secs() >= i64::try_from(grace.as_secs()).unwrap_or(i64::MAX))
}

impl Facts {
    /// Derive the facts of an observation.
    pub(crate) fn derive(p: &Planner<'_>, spec_valid: bool) -> Self {
        let obs = p.obs;
        let main_instance = main_instance(obs);
        let main = main_facts(obs, main_instance);
        let rows: &[ReplicaRow] = main.rows().unwrap_or(&[]);
        let wanted = |i: Instance| wanted_replica(p, main_instance, i);

        let desired = u32::try_from(p.spec.read.replicas).unwrap_or(0);
        let mut instances: Vec<Instance> = (0..desired).map(Instance::Read).collect();
        instances.push(Instance::Write);
        instances.extend(obs.pods.keys().copied());
        instances.extend(rows.iter().filter_map(|r| Instance::from_replica_name(&r.name)));
        instances.sort_unstable();
        instances.dedup();
        instances.retain(|i| *i != main_instance && (*i != Instance::Write || wanted(*i)));

        let replicas = instances.into_iter().map(|i| (i, replica_facts(p, &main, i, wanted(i)))).collect();
        let unwanted_rows =
            rows.iter().filter(|r| !Instance::from_replica_name(&r.name).is_some_and(wanted)).cloned().collect();
        Self { spec_valid, main_instance, main, replicas, unwanted_rows }
    }
}

/// Whether `instance` should be a replica of `main`: a read pod the spec wants, or the write pod
/// once another instance is MAIN.
pub(super) fn wanted_replica(p: &Planner<'_>, main: Instance, instance: Instance) -> bool {
    let desired = u32::try_from(p.spec.read.replicas).unwrap_or(0);
    instance != main
        && match instance {
            Instance::Write => true,
            // A promoted read pod stays even if the spec scales below it: it holds the writes.
            Instance::Read(n) => n < desired,
        }
}

fn replica_facts(p: &Planner<'_>, main: &MainFacts, instance: Instance, desired: bool) -> ReplicaFacts {
    let obs = p.obs;
    let pod = obs.pods.get(&instance);
    let ready = pod_ready(pod);
    let state = pod.map(|p| &p.memgraph);
    let rows = main.rows();
    let row = rows.and_then(|rows| rows.iter().find(|r| r.name == instance.replica_name())).cloned();
    let address_ok = row.as_ref().is_some_and(|r| r.socket_address == p.names.replication_address(instance));
    let mode = super::switchover::wanted_mode(p.spec, obs, instance);
    let mode_ok = row.as_ref().is_some_and(|r| r.sync_mode == mode.as_show_replicas());
    let ready_replica = ready && matches!(state, Some(MemgraphState::Replica { .. }));
    let ready_main = ready && matches!(state, Some(MemgraphState::Main { .. }));
    let data = row.as_ref().and_then(|r| r.data.as_ref());
    let status = data.map(|d| &d.status);
    let healthy_row = address_ok && status.is_some_and(ReplicaStatus::is_healthy);
    let in_sync = desired && main.routable() && ready_replica && healthy_row;
    let caught_up = in_sync && mode_ok && data.is_some_and(|d| d.behind == 0);
    // Memgraph 3.5+ refuses to register a diverged replica with `Error: 3` and leaves its row
    // with an empty `data_info`: the refusal is the only sign of the divergence.
    let refused = refused_as_diverged(obs, instance);
    let diverged = status == Some(&ReplicaStatus::Diverged) || (refused && row.is_some());

    // Out of sync on positive evidence: the MAIN answered and reports it so. `unhealthy_since`
    // counts only while the pod is ready (it drives the label grace and re-registration);
    // `out_of_sync_since` counts whatever the pod does (a SYNC MAIN refuses writes either way).
    // Unknown (no rows) keeps the times from status.
    let previous =
        obs.status.validation.iter().flat_map(|v| v.replicas.iter()).find(|r| r.name == instance.status_name());
    let previous_unhealthy = previous.and_then(|r| r.unhealthy_since.as_ref()).map(|t| t.0);
    let previous_out_of_sync = previous.and_then(|r| r.out_of_sync_since.as_ref()).map(|t| t.0);
    let unhealthy_since = match rows {
        _ if !ready || in_sync => None,
        None => previous_unhealthy,
        Some(_) => previous_unhealthy.or(Some(p.now)),
    };
    let out_of_sync_since = match rows {
        None => previous_out_of_sync,
        Some(_) if row.is_none() || healthy_row => None,
        Some(_) => previous_out_of_sync.or(Some(p.now)),
    };
    let out_of_sync_for = |grace: Duration| elapsed(unhealthy_since, p.now, grace);

    let route = if !desired || !ready || matches!(state, Some(MemgraphState::Main { .. })) {
        Route::No
    } else if in_sync {
        Route::Yes
    } else if behind_peers(obs, main, instance, pod) {
        Route::No
    } else if rows.is_none() {
        // The MAIN says nothing new; what was last known still counts once its grace is over,
        // and so does a count that stood still while the MAIN's moved.
        if out_of_sync_for(ROUTE_GRACE) || stalled(p, instance, ready_replica) { Route::No } else { Route::Unknown }
    } else if row.is_none() && failing_over(obs) && !diverged {
        // A failover registers the replicas on the new MAIN before any write reaches it: until
        // then a replica of the old MAIN misses nothing acknowledged, and keeps serving reads.
        Route::Unknown
    } else if row.is_none() || !address_ok || data.is_none() || diverged {
        Route::No
    } else if healthy_row {
        // The MAIN reports it in sync, but the operator could not check the pod itself.
        Route::Unknown
    } else if out_of_sync_for(ROUTE_GRACE) {
        Route::No
    } else {
        Route::Unknown
    };

    // Only `invalid` is repaired by re-registering: `recovery` may legitimately take long on
    // large graphs, and `diverged` needs a person.
    let stuck = ready_replica && status == Some(&ReplicaStatus::Invalid) && out_of_sync_for(INVALID_GRACE);
    let sync_registered = row.as_ref().is_some_and(|r| r.sync_mode != ReplicationMode::Async.as_show_replicas());
    let degrade_after =
        Duration::from_secs(u64::try_from(p.spec.replication.degrade_after_seconds.max(1)).unwrap_or(30));
    let degrade = desired
        && p.spec.replication.data_durability == DataDurability::Preferred
        && sync_registered
        && !healthy_row
        && !diverged
        && data.is_some()
        && elapsed(out_of_sync_since, p.now, degrade_after);
    let stall = match instance {
        Instance::Read(index) => obs.stalls.get(&index),
        Instance::Write => None,
    };
    let problem = (!in_sync).then(|| match stalled(p, instance, ready_replica) {
        true if stall.is_some_and(|s| s.peers) => format!(
            "the MAIN cannot report on it, and for over {} s its node count stood still below another replica's: it stopped applying the MAIN's writes",
            STALL_GRACE.as_secs()
        ),
        true => format!(
            "the MAIN cannot report on it, and its node count stood still for over {} s while the MAIN's moved: it stopped applying the MAIN's writes",
            STALL_GRACE.as_secs()
        ),
        false => replica_problem(obs, instance, pod, ready, state, row.as_ref(), address_ok, main, desired),
    });
    ReplicaFacts {
        desired,
        row,
        address_ok,
        mode_ok,
        ready_replica,
        ready_main,
        in_sync,
        caught_up,
        route,
        problem,
        unhealthy_since,
        out_of_sync_since,
        stuck,
        degrade,
        diverged,
    }
}

/// Whether a failover is under way (its intent is recorded).
fn failing_over(obs: &Observed) -> bool {
    obs.status.failover.as_ref().is_some_and(|f| f.intent.is_some())
}

/// Whether the last registration of `instance` failed because it diverged (`Error: 3`, Memgraph
/// 3.5+), as recorded in `status.failingActions`.
fn refused_as_diverged(obs: &Observed, instance: Instance) -> bool {
    refusal(obs, instance).is_some_and(|f| f.message.contains(". Error: 3")) || probably_diverged(obs, instance)
}

/// The failing registration of `instance` recorded in `status.failingActions`, if any.
fn refusal(obs: &Observed, instance: Instance) -> Option<&crate::api::ActionFailure> {
    let subject = super::replica_subject(&instance.replica_name());
    obs.status.failing_actions.iter().find(|f| f.subject == subject && f.action.starts_with("RegisterReplica"))
}

/// Refusals of one registration after which, before Memgraph 3.5, divergence is inferred.
const REFUSALS_BEFORE_INFERRING: i32 = 3;

/// Memgraph before 3.5 refuses a diverged replica with the same words as any other failure
/// (`Couldn't register replica <name>.`, no code). After a failover, an instance that answers
/// the operator as a REPLICA and is still refused after several tries is almost surely an old
/// MAIN that took writes after it was replaced: nothing else in that text is more likely once
/// the MAIN can reach it (a NetworkPolicy on port 10000 would refuse every replica alike).
fn probably_diverged(obs: &Observed, instance: Instance) -> bool {
    let uncoded = |m: &str| m.contains("Couldn't register replica") && !m.contains(". Error: ");
    super::failover::generation(obs) > 0
        && obs.pods.get(&instance).is_some_and(|p| matches!(p.memgraph, MemgraphState::Replica { .. }))
        && refusal(obs, instance).is_some_and(|f| uncoded(&f.message) && f.failures >= REFUSALS_BEFORE_INFERRING)
}

/// The replica stopped applying the MAIN's writes, counted while the MAIN could not say so.
fn stalled(p: &Planner<'_>, instance: Instance, ready_replica: bool) -> bool {
    let Instance::Read(index) = instance else { return false };
    ready_replica && p.obs.stalls.get(&index).is_some_and(|s| s.stopped_following(p.now, STALL_GRACE))
}

/// While the MAIN has lost its data it cannot say which replica is in sync, but the replicas
/// were counted: one holding fewer nodes than another missed writes the other has.
fn behind_peers(obs: &Observed, main: &MainFacts, instance: Instance, pod: Option<&PodState>) -> bool {
    if !matches!(main, MainFacts::LostData(_)) {
        return false;
    }
    let most = data_peers(obs).filter(|(i, _)| **i != instance).filter_map(|(_, p)| p.memgraph.nodes()).max();
    pod.and_then(|p| p.memgraph.nodes()).zip(most).is_some_and(|(n, most)| n < most)
}

fn main_facts(obs: &Observed, main: Instance) -> MainFacts {
    let Some(pod) = obs.pods.get(&main) else {
        return MainFacts::NotReady(format!("the MAIN's pod ({}) does not exist yet", main.status_name()));
    };
    if !pod_ready(Some(pod)) {
        let why = if pod.terminating { "is terminating" } else { "is not ready" };
        return MainFacts::NotReady(format!("the MAIN's pod {} {why}", pod.name));
    }
    match &pod.memgraph {
        MemgraphState::NotAsked => MainFacts::Unreachable(format!("the write pod {} was not checked", pod.name)),
        MemgraphState::Unreachable(e) => MainFacts::Unreachable(e.clone()),
        MemgraphState::Replica { .. } => MainFacts::NotMain,
        MemgraphState::Main { replicas, nodes } => {
            let rows = match replicas {
                Some(r) => r.clone(),
                None => Err("SHOW REPLICAS was not asked".to_owned()),
            };
            let holds_data = nodes.is_some_and(|n| n > 0);
            // The replica a failover promotes has no registrations yet by construction; it was
            // chosen because it holds every acknowledged write.
            let promoting = obs.status.failover.as_ref().and_then(|f| f.intent.as_ref()).is_some();
            if promoting && rows.is_ok() {
                return MainFacts::Verified { rows, holds_data };
            }
            match &rows {
                // Whatever the spec asks now: the read pods that exist may hold the data.
                Ok(r) if r.is_empty() => {
                    empty_main(obs, pod, *nodes).unwrap_or(MainFacts::Verified { rows, holds_data })
                }
                // A MAIN found empty stays so until it holds data or can be looked at again.
                Err(e) if was_lost(obs) && !holds_data => MainFacts::LostData(format!(
                    "the write pod {} was found an empty MAIN while replicas hold data, and cannot be checked now \
                     ({e}); writes stay off it until it can",
                    pod.name
                )),
                Err(_) if *nodes == Some(0) || was_lost(obs) => {
                    empty_main(obs, pod, *nodes).unwrap_or(MainFacts::Verified { rows, holds_data })
                }
                _ => MainFacts::Verified { rows, holds_data },
            }
        }
    }
}

/// The pods whose data the MAIN's is measured against: all but the MAIN held, and but a MAIN
/// a failover replaced that answers as MAIN again. What such a MAIN holds beyond the new one is
/// writes it took after it was replaced (under SYNC committed locally and reported as failed),
/// never evidence that the new MAIN lost its volume.
pub(super) fn data_peers(obs: &Observed) -> impl Iterator<Item = (&Instance, &PodState)> {
    let held_as_main = main_instance(obs);
    obs.pods.iter().filter(move |(i, p)| {
        **i != held_as_main
            && !(matches!(p.memgraph, MemgraphState::Main { .. }) && super::failover::replaced_main(obs, **i))
    })
}

/// Whether the status says the MAIN was found to have lost its data.
fn was_lost(obs: &Observed) -> bool {
    obs.status.conditions.iter().any(|c| c.type_ == super::status::DATA_DIVERGENCE && c.reason == "MainLostData")
}

/// A MAIN with no replicas registered is new, or lost its volume: it may take writes only when
/// it holds data or no read pod does. Without counts there is no evidence either way, and a
/// loss once found stays found until the read pods are seen empty or the MAIN holds data again.
fn empty_main(obs: &Observed, pod: &PodState, nodes: Option<i64>) -> Option<MainFacts> {
    let reads: Vec<&PodState> = data_peers(obs).map(|(_, p)| p).collect();
    // A read StatefulSet without its pod (deleted, evicted, not yet scheduled) keeps its claim,
    // which may hold the data: it counts as a read pod that cannot be checked.
    let podless = podless_reads(obs);
    if reads.is_empty() && podless.is_empty() {
        return None;
    }
    let Some(held) = nodes else {
        return Some(MainFacts::Unreachable(format!(
            "could not count the data of {}, which has no replicas",
            pod.name
        )));
    };
    // A replica holding more than a MAIN that has no registrations has what the MAIN lost: its
    // volume went and it restarted, and clients may even have written to it before the
    // operator (down at the time) could take its label away.
    let holding: Vec<&str> =
        reads.iter().filter(|p| p.memgraph.nodes().is_some_and(|n| n > held)).map(|p| p.name.as_str()).collect();
    // Read pods whose data could not be counted: not ready, or not answering. Any of them may
    // hold the data the MAIN lost.
    let mut unknown: Vec<&str> =
        reads.iter().filter(|p| p.memgraph.nodes().is_none()).map(|p| p.name.as_str()).collect();
    unknown.extend(podless.iter().map(String::as_str));
    let was_lost = was_lost(obs);
    if held > 0 {
        if !holding.is_empty() {
            return Some(lost_data(pod, &holding.join(", ")));
        }
        // A read pod last counted holding more than this still does until it is counted again:
        // data put back into the write volume may be older than what it holds.
        let unseen = unseen_holders(obs, held);
        if was_lost && !unseen.is_empty() {
            return Some(lost_data(pod, &format!("{} (as last counted; cannot be checked now)", unseen.join(", "))));
        }
        return None;
    }
    if !holding.is_empty() {
        return Some(lost_data(pod, &holding.join(", ")));
    }
    // A loss found before stands until every read pod has been seen empty.
    let all_seen_empty = podless.is_empty() && reads.iter().all(|p| p.memgraph.nodes() == Some(0));
    if was_lost && !all_seen_empty {
        return Some(lost_data(pod, "read pods that cannot be checked now"));
    }
    if unknown.is_empty() {
        return None;
    }
    Some(MainFacts::Unreachable(format!(
        "{} is an empty MAIN with no replicas and {} could not be checked for data; writes wait until they can",
        pod.name,
        unknown.join(", ")
    )))
}

/// Read pods the status remembers holding more than `held` nodes that cannot be counted now.
pub(super) fn unseen_holders(obs: &Observed, held: i64) -> Vec<&str> {
    obs.status
        .lost_data_holders
        .iter()
        .filter(|(_, n)| **n > held)
        .filter(|(name, _)| !obs.pods.values().any(|p| &p.name == *name && p.memgraph.nodes().is_some()))
        .map(|(name, _)| name.as_str())
        .collect()
}

/// The MAIN lost data that `holders` have: what to tell the user.
fn lost_data(pod: &PodState, holders: &str) -> MainFacts {
    MainFacts::LostData(format!(
        "the MAIN's pod {0} is a MAIN with no replicas that holds less than {holders}; its volume was probably \
         lost. The operator will not route writes to it or register replicas on it. Recover the data: restore a \
         backup into its volume, or stop the most up-to-date replica (its snapshot on exit then holds all it has), \
         copy its data directory without replication/ into the volume of {0}, and delete the pod {0}",
        pod.name
    ))
}

/// Pods of desired read replicas whose StatefulSet exists but whose pod does not.
fn podless_reads(obs: &Observed) -> Vec<String> {
    let names = ClusterNames::new(obs.cluster.name.clone(), obs.cluster.namespace.clone());
    let desired = u32::try_from(obs.spec.read.replicas).unwrap_or(0);
    (0..desired)
        .map(Instance::Read)
        .filter(|i| *i != main_instance(obs) && !obs.pods.contains_key(i))
        .filter(|i| obs.objects.contains_key(&ObjectKey::new(ObjectKind::StatefulSet, names.statefulset(*i))))
        .map(|i| names.pod(i))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn replica_problem(
    obs: &Observed,
    instance: Instance,
    pod: Option<&PodState>,
    ready: bool,
    state: Option<&MemgraphState>,
    row: Option<&ReplicaRow>,
    address_ok: bool,
    main: &MainFacts,
    desired: bool,
) -> String {
    if !desired {
        return "no longer wanted; being removed".to_owned();
    }
    let Some(pod) = pod else { return "pod does not exist yet".to_owned() };
    if !ready {
        return format!("pod {} is not ready", pod.name);
    }
    match state {
        Some(MemgraphState::Unreachable(e)) if main.rows().is_none() => {
            return format!("Memgraph on {} does not answer: {e}", pod.name);
        }
        Some(MemgraphState::Main { .. }) => return format!("{} is a MAIN, not a REPLICA", pod.name),
        _ => {}
    }
    if main.rows().is_none() {
        return "the MAIN cannot be checked, so neither can its registration".to_owned();
    }
    let Some(row) = row else { return "not registered on the MAIN".to_owned() };
    if !address_ok {
        return format!("registered at the wrong address {}", row.socket_address);
    }
    match (&row.data, state) {
        (None, _) if probably_diverged(obs, instance) => {
            "probably diverged from the MAIN: since the failover its registration has been refused again and again \
             while it answers as a REPLICA, and Memgraph before 3.5 does not say why; if it holds writes the MAIN \
             does not have, it needs a clean volume"
                .to_owned()
        }
        (None, _) if refused_as_diverged(obs, instance) => {
            "diverged from the MAIN (its registration was refused with Error: 3): it holds writes the MAIN does not \
             have; it needs a clean volume"
                .to_owned()
        }
        (None, _) => "registration is incomplete (empty data_info)".to_owned(),
        (Some(d), _) if d.status == ReplicaStatus::Diverged => {
            "diverged from the MAIN: it holds writes the MAIN does not have; it needs a clean volume".to_owned()
        }
        (Some(d), Some(MemgraphState::Unreachable(e))) if d.status.is_healthy() => {
            format!("in sync on the MAIN, but Memgraph on {} does not answer the operator: {e}", pod.name)
        }
        // No counts here: `behind` changes with every write, and the status must not.
        (Some(d), _) => format!("replication state is {}", d.status.as_str()),
    }
}
