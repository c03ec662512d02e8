//! Economy: a calm, converged cluster costs no mutating API call and no reconcile triggered by
//! the operator's own writes; reconciles per simulated minute and API writes per reconcile are
//! reported for every run, and a storm of reconciles is a violation.
//!
//! Calm: the cluster has looked converged for [`SETTLE`] (write pod usable and labelled, every
//! wanted replica usable and labelled, phase Running), no fault that concerns it is active or
//! ended within [`QUIET`], and no snapshot tick is within [`QUIET`] (its bookkeeping is
//! scheduled work, not churn).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::super::truth::ClusterTruth;
use super::{Violation, ms};

/// How long a cluster must have looked converged.
pub const SETTLE: Duration = Duration::from_secs(30);
/// Quiet time needed after any fault and around snapshot ticks.
pub const QUIET: Duration = Duration::from_secs(60);
/// Most reconciles a calm cluster may run in a simulated minute: its idle poll gives six.
pub const STORM: usize = 12;

/// Economy of one cluster.
#[derive(Debug, Default)]
pub struct Economy {
    converged_since: Option<Duration>,
    calm_since: Option<Duration>,
    /// Simulated time spent calm.
    pub calm: Duration,
    /// Reconcile start times while calm.
    calm_reconciles: Vec<Duration>,
    reported_storm: bool,
}

/// Economy figures of one cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cost {
    /// Reconciles run.
    pub reconciles: usize,
    /// Reconciles triggered only by notifications of the operator's own writes.
    pub self_triggered: usize,
    /// Mutating API calls.
    pub api_writes: usize,
    /// Simulated seconds the cluster was calm.
    pub calm_s: u64,
    /// Mutating API calls while calm (not counting snapshot bookkeeping).
    pub calm_writes: usize,
}

/// Whether the cluster looks converged: what a fresh deploy would look like to a client.
pub fn looks_converged(cluster: &str, truth: &ClusterTruth) -> bool {
    let phase_running = truth.status.as_ref().is_some_and(|s| s["phase"].as_str() == Some("Running"));
    let write_labelled = truth.write(cluster).is_some_and(|p| p.label.as_deref() == Some("main"));
    let names = memgraph_operator::names::ClusterNames::new(cluster, super::super::run::NAMESPACE);
    let replicas = truth.replica_instances(cluster).into_iter().all(|i| {
        truth.instance_usable(cluster, i)
            && truth.pods.get(&names.pod(i)).is_some_and(|p| p.label.as_deref() == Some("replica"))
    });
    // A read pod that is the MAIN after a failover is switched back to the write pod later
    // (scheduled work, as a snapshot tick is): the cluster is not settled until then.
    let settled = truth.main_pod(cluster) == super::super::truth::write_pod(cluster);
    phase_running && write_labelled && truth.write_usable(cluster) && replicas && settled
}

impl Economy {
    /// Whether the cluster is calm now.
    pub fn is_calm(&self) -> bool {
        self.calm_since.is_some()
    }

    /// Advance to `now`. `quiet` is whether no fault concerning the cluster and no snapshot tick
    /// is within [`QUIET`] of now.
    pub fn sample(&mut self, now: Duration, step: Duration, cluster: &str, truth: &ClusterTruth, quiet: bool) {
        if looks_converged(cluster, truth) {
            self.converged_since.get_or_insert(now);
        } else {
            self.converged_since = None;
        }
        let calm = quiet && self.converged_since.is_some_and(|since| now.saturating_sub(since) >= SETTLE);
        if calm {
            self.calm_since.get_or_insert(now);
            self.calm += step;
        } else {
            self.calm_since = None;
        }
    }

    /// A mutating API call at `now`; a violation when the cluster is calm.
    pub fn api_write(&mut self, now: Duration, cluster: &str, what: &str, bookkeeping: bool) -> Option<Violation> {
        (self.is_calm() && !bookkeeping).then(|| Violation {
            at_ms: ms(now),
            cluster: cluster.to_owned(),
            what: format!("the operator wrote to the API in a calm steady state: {what}"),
        })
    }

    /// A reconcile started at `now`; a violation on a storm (more than [`STORM`] in a calm
    /// minute) or when a calm cluster's reconcile was triggered only by the operator's writes.
    pub fn reconcile(&mut self, now: Duration, cluster: &str, self_triggered: bool) -> Option<Violation> {
        if !self.is_calm() {
            return None;
        }
        if self_triggered {
            return Some(Violation {
                at_ms: ms(now),
                cluster: cluster.to_owned(),
                what: "a calm cluster was reconciled because of the operator's own write".to_owned(),
            });
        }
        self.calm_reconciles.push(now);
        let minute_ago = now.saturating_sub(Duration::from_secs(60));
        let recent = self.calm_reconciles.iter().filter(|t| **t >= minute_ago).count();
        if recent > STORM && !self.reported_storm {
            self.reported_storm = true;
            return Some(Violation {
                at_ms: ms(now),
                cluster: cluster.to_owned(),
                what: format!("reconcile storm: {recent} reconciles of a calm cluster within a minute"),
            });
        }
        None
    }
}

/// Count a cluster's reconciles per simulated minute over a run.
pub fn per_minute(count: usize, simulated: Duration) -> f64 {
    count as f64 * 60.0 / simulated.as_secs_f64().max(1.0)
}

/// Costs by cluster.
pub type Costs = BTreeMap<String, Cost>;
