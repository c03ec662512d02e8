//! One reconcile of one `MemgraphCluster`: observe → plan → act (DESIGN §3).

pub mod act;
pub mod desired;
pub mod observe;
pub mod observed;
pub mod plan;

use std::time::Duration;

use kube::ResourceExt;
use thiserror::Error;

use crate::api::MemgraphCluster;
use crate::clock::Clock;
use crate::kube_api::{Kube, KubeError};
use crate::memgraph::{Bolt, BoltError};

pub use act::act;
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Reconcile again after this long, unless something triggers it earlier.
    pub requeue_after: Duration,
    /// observe → plan → act rounds run (a round that changed replication is followed by another
    /// so that new replicas are verified and labelled in the same reconcile).
    pub rounds: usize,
    /// Actions executed, events included.
    pub actions: usize,
}

/// Most rounds per reconcile: register, verify and label, and a few short looks while new or
/// restarted replicas come in sync.
pub const MAX_ROUNDS: usize = 6;
/// Pause before looking again at a replica that is expected to come in sync.
pub const SETTLE_DELAY: Duration = Duration::from_millis(250);

/// Reconcile one cluster: observe → plan → act, repeated within the same reconcile while it just
/// changed replication or a replica is about to come in sync, so that a pod that became ready is
/// registered and labelled by the reconcile its readiness triggered.
pub async fn reconcile<K: Kube>(
    cluster: &MemgraphCluster,
    kube: &K,
    bolt: &dyn Bolt,
    clock: &dyn Clock,
) -> Result<Outcome, ReconcileError> {
    let mut current = cluster.clone();
    let mut executed = 0;
    let mut round = 1;
    loop {
        let observed = observe(kube, bolt, &current).await?;
        let plan = plan(&current.spec, &observed, clock.now());
        let changed = plan.actions.iter().any(Action::changes_replication);
        let look_again = round < MAX_ROUNDS && (changed || plan.settling);
        if !look_again {
            executed += act(kube, bolt, &observed, &plan.actions).await?;
            return Ok(Outcome { requeue_after: plan.requeue_after, rounds: round, actions: executed });
        }
        // The status and the events announcing its changes are written once, from the last round.
        let actions: Vec<Action> = plan
            .actions
            .into_iter()
            .filter(|a| !matches!(a, Action::PatchStatus(_)) && !matches!(a, Action::Event(e) if e.condition))
            .collect();
        executed += act(kube, bolt, &observed, &actions).await?;
        if !changed {
            tokio::time::sleep(SETTLE_DELAY).await;
        }
        let namespace = current.namespace().unwrap_or_default();
        match kube.get::<MemgraphCluster>(&namespace, &current.name_any()).await? {
            Some(fresh) => current = fresh,
            None => return Ok(Outcome { requeue_after: plan.requeue_after, rounds: round, actions: executed }),
        }
        round += 1;
    }
}
