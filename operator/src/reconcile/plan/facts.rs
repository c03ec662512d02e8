//! Facts: what is true about the cluster, derived from the observation once, so that every
//! planning step judges the same way.

use std::collections::BTreeMap;

use super::{INVALID_GRACE, Planner};
use crate::memgraph::{ReplicaRow, ReplicaStatus};
use crate::names::Instance;
use crate::reconcile::observed::{MemgraphState, Observed, PodState};

/// The write instance.
#[derive(Debug, Clone, PartialEq)]
pub enum MainFacts {
    /// No pod, or the pod is not ready.
    NotReady(String),
    /// Ready but Memgraph did not answer.
    Unreachable(String),
    /// Answered, but is a REPLICA.
    NotMain,
    /// Verified MAIN. `rows` is its `SHOW REPLICAS` (Err when that failed).
    Verified {
        /// Registered replicas.
        rows: Result<Vec<ReplicaRow>, String>,
    },
    /// MAIN, but it came back empty while replicas hold data: never route writes to it.
    LostData(String),
}

impl MainFacts {
    /// Whether clients may write to the write pod.
    pub fn routable(&self) -> bool {
        matches!(self, MainFacts::Verified { .. })
    }

    /// Registered replicas, when the MAIN is verified and answered `SHOW REPLICAS`.
    pub fn rows(&self) -> Option<&[ReplicaRow]> {
        match self {
            MainFacts::Verified { rows: Ok(rows) } => Some(rows),
            _ => None,
        }
    }
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
    /// Clients may read from it: desired, ready REPLICA, registered, in sync, right address.
    pub routable: bool,
    /// Why it is not routable, for status and events.
    pub problem: Option<String>,
    /// It has been `invalid` longer than the grace period (from status) while its pod is ready.
    pub stuck: bool,
    /// It diverged from the MAIN.
    pub diverged: bool,
}

/// Everything the planning steps judge by.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The spec passed every check.
    pub spec_valid: bool,
    /// The write instance.
    pub main: MainFacts,
    /// Read replicas by index: every desired one, and any that still exists or is registered.
    pub replicas: BTreeMap<u32, ReplicaFacts>,
    /// Rows on the MAIN whose names are not replicas this cluster wants.
    pub unwanted_rows: Vec<ReplicaRow>,
}

/// `SHOW REPLICAS` of the write pod when it is a reachable MAIN.
pub fn main_rows(obs: &Observed) -> Option<&[ReplicaRow]> {
    let pod = obs.pods.get(&Instance::Write).filter(|p| pod_ready(Some(p)))?;
    match &pod.memgraph {
        MemgraphState::Main { replicas: Some(Ok(rows)), .. } => Some(rows),
        _ => None,
    }
}

fn pod_ready(pod: Option<&PodState>) -> bool {
    pod.is_some_and(|p| p.ready && !p.terminating)
}

impl Facts {
    /// Derive the facts of an observation.
    pub(crate) fn derive(p: &Planner<'_>, spec_valid: bool) -> Self {
        let obs = p.obs;
        let desired = u32::try_from(p.spec.read.replicas).unwrap_or(0);
        let main = main_facts(obs);
        let rows: &[ReplicaRow] = main.rows().unwrap_or(&[]);

        let mut indices: Vec<u32> = (0..desired).collect();
        indices.extend(obs.pods.keys().filter_map(|i| match i {
            Instance::Read(n) => Some(*n),
            Instance::Write => None,
        }));
        indices.extend(rows.iter().filter_map(|r| match Instance::from_replica_name(&r.name) {
            Some(Instance::Read(n)) => Some(n),
            _ => None,
        }));
        indices.sort_unstable();
        indices.dedup();

        let previous: BTreeMap<&str, &crate::api::ReplicaValidation> =
            obs.status.validation.iter().flat_map(|v| v.replicas.iter()).map(|r| (r.name.as_str(), r)).collect();

        let mut replicas = BTreeMap::new();
        for index in indices {
            let instance = Instance::Read(index);
            let pod = obs.pods.get(&instance);
            let ready = pod_ready(pod);
            let state = pod.map(|p| &p.memgraph);
            let row = rows.iter().find(|r| r.name == instance.replica_name()).cloned();
            let address_ok = row.as_ref().is_some_and(|r| r.socket_address == p.names.replication_address(instance));
            let mode_ok = row.as_ref().is_some_and(|r| r.sync_mode == p.spec.replication.mode.as_show_replicas());
            let ready_replica = ready && matches!(state, Some(MemgraphState::Replica { .. }));
            let ready_main = ready && matches!(state, Some(MemgraphState::Main { .. }));
            let status = row.as_ref().and_then(|r| r.data.as_ref()).map(|d| &d.status);
            let desired_here = index < desired;
            let routable = desired_here
                && main.routable()
                && ready_replica
                && address_ok
                && status.is_some_and(ReplicaStatus::is_healthy);
            let problem = if routable {
                None
            } else {
                Some(replica_problem(desired_here, pod, ready, state, row.as_ref(), address_ok, &main))
            };
            let unhealthy_since =
                previous.get(instance.status_name().as_str()).and_then(|v| v.unhealthy_since.as_ref()).map(|t| t.0);
            // Only `invalid` is repaired by re-registering: `recovery` may legitimately take long
            // on large graphs, and `diverged` needs a person.
            let stuck = ready_replica
                && status == Some(&ReplicaStatus::Invalid)
                && unhealthy_since
                    .is_some_and(|since| p.now.duration_since(since).as_secs() >= INVALID_GRACE.as_secs() as i64);
            let diverged = status == Some(&ReplicaStatus::Diverged);
            replicas.insert(
                index,
                ReplicaFacts {
                    desired: desired_here,
                    row,
                    address_ok,
                    mode_ok,
                    ready_replica,
                    ready_main,
                    routable,
                    problem,
                    stuck,
                    diverged,
                },
            );
        }
        let unwanted_rows = rows
            .iter()
            .filter(|r| !matches!(Instance::from_replica_name(&r.name), Some(Instance::Read(n)) if n < desired))
            .cloned()
            .collect();
        Self { spec_valid, main, replicas, unwanted_rows }
    }
}

fn main_facts(obs: &Observed) -> MainFacts {
    let Some(pod) = obs.pods.get(&Instance::Write) else {
        return MainFacts::NotReady("the write pod does not exist yet".to_owned());
    };
    if !pod_ready(Some(pod)) {
        let why = if pod.terminating { "is terminating" } else { "is not ready" };
        return MainFacts::NotReady(format!("the write pod {} {why}", pod.name));
    }
    match &pod.memgraph {
        MemgraphState::NotAsked => MainFacts::NotReady(format!("the write pod {} was not checked", pod.name)),
        MemgraphState::Unreachable(e) => MainFacts::Unreachable(e.clone()),
        MemgraphState::Replica { .. } => MainFacts::NotMain,
        MemgraphState::Main { replicas, nodes } => {
            let rows = match replicas {
                Some(r) => r.clone(),
                None => Err("SHOW REPLICAS was not asked".to_owned()),
            };
            if let Ok(rows) = &rows
                && rows.is_empty()
                && *nodes == Some(0)
            {
                let holding: Vec<String> = obs
                    .pods
                    .iter()
                    .filter(|(i, p)| matches!(i, Instance::Read(_)) && p.memgraph.nodes().is_some_and(|n| n > 0))
                    .map(|(_, p)| p.name.clone())
                    .collect();
                if !holding.is_empty() {
                    return MainFacts::LostData(format!(
                        "the write pod {} is an empty MAIN with no replicas while {} hold data; its volume was probably lost. \
                         The operator will not route writes to it or register replicas on it. Recover the data (restore a \
                         backup into the write volume, or copy a replica's data directory to it) and delete the write pod",
                        pod.name,
                        holding.join(", ")
                    ));
                }
            }
            MainFacts::Verified { rows }
        }
    }
}

fn replica_problem(
    desired: bool,
    pod: Option<&PodState>,
    ready: bool,
    state: Option<&MemgraphState>,
    row: Option<&ReplicaRow>,
    address_ok: bool,
    main: &MainFacts,
) -> String {
    if !desired {
        return "no longer wanted; being removed".to_owned();
    }
    let Some(pod) = pod else { return "pod does not exist yet".to_owned() };
    if !ready {
        return format!("pod {} is not ready", pod.name);
    }
    match state {
        Some(MemgraphState::Unreachable(e)) => return format!("Memgraph on {} does not answer: {e}", pod.name),
        Some(MemgraphState::Main { .. }) => return format!("{} is a MAIN, not a REPLICA", pod.name),
        Some(MemgraphState::NotAsked) | None => return format!("{} was not checked", pod.name),
        Some(MemgraphState::Replica { .. }) => {}
    }
    if !main.routable() {
        return "the MAIN is not verified, so registration cannot be checked".to_owned();
    }
    let Some(row) = row else { return "not registered on the MAIN".to_owned() };
    if !address_ok {
        return format!("registered at the wrong address {}", row.socket_address);
    }
    match &row.data {
        None => "registration is incomplete (empty data_info)".to_owned(),
        Some(d) if d.status == ReplicaStatus::Diverged => {
            "diverged from the MAIN: it holds writes the MAIN does not have; it needs a clean volume".to_owned()
        }
        Some(d) => format!("replication state is {} ({} behind)", d.status.as_str(), -d.behind),
    }
}
