//! The status tells the truth during the run: `phase`, `writeReady`, `mainPod`,
//! `readyReplicas` and the conditions the operator sets, each within the bound. A condition
//! that is `Unknown` claims nothing; the operator uses it when it cannot look.

use std::time::Duration;

use serde_json::Value;

use super::super::truth::ClusterTruth;
use super::{Conditions, Lagging, Violation};
use memgraph_operator::reconcile::plan::INVALID_GRACE;

/// Status checks with their memory between samples.
#[derive(Debug, Default)]
pub struct StatusTruth {
    lagging: Lagging,
    /// Clusters whose missed divergence began behind an `invalid` row: the operator's grace
    /// stays in the bound while it registers the replica again (the row is gone meanwhile).
    behind_invalid: std::collections::BTreeSet<String>,
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"].as_array()?.iter().find(|c| c["type"].as_str() == Some(type_))
}

/// Whether `status` has the condition `type_` with status `value`.
pub(super) fn condition_is(status: &Value, type_: &str, value: &str) -> bool {
    condition(status, type_).is_some_and(|c| c["status"].as_str() == Some(value))
}

impl StatusTruth {
    /// Time status claims lagged the truth.
    pub fn lag_time(&self) -> Duration {
        self.lagging.lag_time
    }

    /// Check one cluster's status. `spec_invalid` is the world's own knowledge that the spec
    /// asks for something that cannot be done.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &mut self,
        cond: &Conditions,
        now: Duration,
        step: Duration,
        cluster: &str,
        truth: &ClusterTruth,
        spec_invalid: bool,
    ) -> Vec<Violation> {
        let Some(status) = truth.status.as_ref().filter(|s| s.is_object()) else { return Vec::new() };
        let mut out = Vec::new();
        let mut claim = |subject: &str, wrong: bool, what: String| {
            out.extend(self.lagging.claim(cond, now, step, cluster, format!("status {subject}"), wrong, || what));
        };
        let usable = truth.write_usable(cluster);
        let ready_replicas = truth.usable_replicas(cluster) as u64;
        let desired = u64::from(truth.desired());
        let write = truth.write(cluster);
        let lost = truth.main_lost_data(cluster);

        // Every claim is judged on every sample (a claim not made now ends its episode).
        let says_write = status["writeReady"].as_bool() == Some(true);
        claim(
            "writeReady",
            says_write && !usable,
            "status says writeReady while the write pod cannot take writes".into(),
        );
        let main_pod = status["mainPod"].as_str();
        claim(
            "mainPod",
            main_pod.is_some_and(|m| m != truth.main_pod(cluster) || !usable),
            format!("status names {main_pod:?} the MAIN while it is not usable"),
        );
        // WriteReady False is a claim too: the write pod is not ready, not a MAIN, or empty.
        claim(
            "WriteReady=False",
            condition_is(status, "WriteReady", "False") && usable && !lost,
            "WriteReady is False while the write pod takes writes".into(),
        );
        claim(
            "WriteReady=True",
            condition_is(status, "WriteReady", "True") && !usable,
            "WriteReady is True while the write pod cannot take writes".into(),
        );
        let claimed = status["readyReplicas"].as_u64().unwrap_or(0);
        claim(
            "readyReplicas",
            claimed > ready_replicas,
            format!("status claims {claimed} ready replicas while {ready_replicas} are"),
        );
        claim(
            "ReplicasReady",
            condition_is(status, "ReplicasReady", "True") && ready_replicas < desired,
            format!("ReplicasReady is True while {ready_replicas} of {desired} are"),
        );
        let running = status["phase"].as_str() == Some("Running");
        claim(
            "phase",
            running && (!usable || ready_replicas < desired || spec_invalid),
            format!("phase Running while the MAIN is usable: {usable}, {ready_replicas} of {desired} replicas ready"),
        );
        // A refused registration leaves a row with an empty `data_info`, not a `diverged` one,
        // so the rows alone miss most divergence after a failover: the data tell. Saying
        // "diverged" is right while any pod's data diverged; saying "none" is wrong once a row
        // shows it or a ready REPLICA that the operator can register has diverged.
        let row_diverged = truth.rows.values().any(|r| r.state == Some(fake_memgraph::ReplicaState::Diverged));
        let any_diverged = row_diverged || truth.pods.values().any(|p| p.diverged);
        // A diverged ready REPLICA the operator can register, and so find diverged.
        let seen = |p: &super::super::truth::PodTruth| {
            p.diverged && p.usable() && p.role == Some(fake_memgraph::Role::Replica)
        };
        let seen_diverged = row_diverged || truth.pods.values().any(seen);
        // A diverged replica whose row on the MAIN is `invalid` (it obeys another MAIN's UUID:
        // its registration here failed, or a later MAIN registered it) shows nothing on that
        // row: the operator finds the divergence only by registering it again, which it does
        // once the row has been invalid for its grace (60 s, so a transient `invalid` is not
        // churned); the refusals that follow then tell. That grace is added to the bound.
        let behind_invalid_rows = !row_diverged
            && truth.pods.iter().filter(|(_, p)| seen(p)).all(|(name, _)| {
                let prefix = format!("{name}.");
                truth
                    .rows
                    .values()
                    .any(|r| r.address.starts_with(&prefix) && r.state == Some(fake_memgraph::ReplicaState::Invalid))
            });
        let divergence_true = condition_is(status, "DataDivergence", "True");
        // Divergence is found by looking at the MAIN: while it is frozen or on a lost node the
        // last finding stands, right or wrong.
        let observable = write.is_some_and(|p| !p.unreachable());
        // `Unknown` claims nothing (the operator could not count the read pods that would tell).
        let divergence_false = condition_is(status, "DataDivergence", "False");
        let says_invalid = condition_is(status, "InvalidSpec", "True");
        claim(
            "InvalidSpec",
            condition(status, "InvalidSpec").is_some() && says_invalid != spec_invalid,
            format!("InvalidSpec is {says_invalid} while the spec is invalid: {spec_invalid}"),
        );
        let missed = (seen_diverged || lost) && divergence_false;
        if !missed || lost {
            self.behind_invalid.remove(cluster);
        } else if behind_invalid_rows {
            self.behind_invalid.insert(cluster.to_owned());
        }
        let extra = if self.behind_invalid.contains(cluster) { INVALID_GRACE } else { Duration::ZERO };
        let what = format!(
            "DataDivergence is {divergence_true} while a replica diverged: {any_diverged} (seen: {seen_diverged}), the \
             MAIN lost its data: {lost}{}",
            if extra.is_zero() { "" } else { " (its row on the MAIN is invalid: found by registering it again)" }
        );
        out.extend(self.lagging.claim_within(
            cond,
            extra,
            now,
            step,
            cluster,
            "status DataDivergence".to_owned(),
            observable && (missed || !(any_diverged || lost) && divergence_true),
            || what,
        ));
        out
    }
}
