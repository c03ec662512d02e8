//! Oracles: what a client or a person running the cluster would see, judged continuously
//! against the ground truth, plus liveness after the heal phase.
//!
//! - [`routing`]: at most one `main`; Services route only to instances that are what their
//!   label says.
//! - [`availability`]: a usable instance is never kept out of its Service.
//! - [`status`]: the status and conditions tell the truth.
//! - [`validation`]: the live checks tell the truth: replication health, who answers, the lag;
//!   no test node outlives its test.
//! - [`claims`]: the operator never writes a label or status that is already false.
//! - [`reads`]: reads never come from another history, and are fresh on routed replicas.
//! - [`writes`]: acknowledged writes survive where the mode promises.
//! - [`snapshots`]: one `CREATE SNAPSHOT` per schedule tick.
//! - [`backups`]: claimed backups exist and match; none stuck; retention keeps the newest; the
//!   newest holds what was acknowledged before it.
//! - [`economy`]: a calm cluster costs no API writes and no reconcile storm.
//! - [`convergence`]: after the heal phase the cluster equals a fresh deploy of its final spec.

pub mod availability;
pub mod backups;
pub mod claims;
pub mod convergence;
pub mod economy;
pub mod failover;
pub mod leadership;
pub mod reads;
pub mod routing;
pub mod snapshots;
pub mod status;
pub mod validation;
pub mod writes;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use super::faults::FaultClass;

/// How long a claim (a label, the status) may lag the truth when nothing in the run gets in the
/// operator's way: its idle poll (10 s), the grace before a replica seen out of sync loses its
/// label (3 s), Memgraph's own detection (3 missed 1 s heartbeats) and a reconcile whose probe
/// of a frozen instance may take its timeout.
pub const TIGHT: Duration = Duration::from_secs(25);
/// The bound while a fault that slows the operator down is active or was just before: a view
/// up to 10 s old, lost notifications, failed API writes with backoff, no route to an instance.
pub const LOOSE: Duration = Duration::from_secs(45);
/// A fault window this close before an episode started still justifies the loose bound.
const JUSTIFY_MARGIN: Duration = Duration::from_secs(10);

/// Fault classes that slow the operator's view or its writes, and so justify [`LOOSE`].
pub fn justifies_loose(class: FaultClass) -> bool {
    matches!(
        class,
        FaultClass::StaleView
            | FaultClass::DroppedNotifications
            | FaultClass::ApiErrors
            | FaultClass::PartitionOperator
            | FaultClass::PartitionOneWay
            | FaultClass::Hung
            // An instance on a lost node answers nothing, like a hung one: every probe and
            // command sent to it waits its full timeout (a replication command 15 s) before
            // the operator can look again.
            | FaultClass::NodeLoss
            | FaultClass::MainNodeLoss
            | FaultClass::FailoverTwice
            | FaultClass::MainPartitionOperator
            | FaultClass::MainPartitionAll
            | FaultClass::MainReturns
            | FaultClass::AdmissionRefusal
            // The leader cannot read or write until the link heals or it exits and the
            // standby takes over (its wait for the Lease is operator downtime, not counted).
            | FaultClass::OperatorApiPartition
    )
}

/// One violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// When, in simulated ms.
    pub at_ms: u64,
    /// The cluster it concerns (empty for the world).
    pub cluster: String,
    /// What was wrong.
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.cluster.is_empty() {
            write!(f, "{:.3}s {}", self.at_ms as f64 / 1000.0, self.what)
        } else {
            write!(f, "{:.3}s [{}] {}", self.at_ms as f64 / 1000.0, self.cluster, self.what)
        }
    }
}

/// What the oracles know about the run's conditions at an instant.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    /// Fault windows so far: (class, start, end); an open window ends at `Duration::MAX`.
    pub windows: Vec<(FaultClass, Duration, Duration)>,
    /// Since when the operator has been running; `None` while it is down.
    pub operator_up_since: Option<Duration>,
    /// Stretches in which the MAIN did not answer `SHOW REPLICAS` in time (2.21–3.0 wait on
    /// every unreachable replica): the operator's every look then takes its longest timeout.
    pub slow_main: Vec<(Duration, Duration)>,
}

impl Conditions {
    /// The bound for an episode that started at `since` and is still going at `now`, and the
    /// fault that justified the loose bound, if any.
    pub fn bound(&self, since: Duration, now: Duration) -> (Duration, Option<FaultClass>) {
        let from = since.saturating_sub(JUSTIFY_MARGIN);
        let loose =
            self.windows.iter().find(|(class, start, end)| justifies_loose(*class) && *start <= now && *end >= from);
        match loose {
            Some((class, _, _)) => (LOOSE, Some(*class)),
            None if self.slow_main.iter().any(|(start, end)| *start <= now && *end >= from) => (LOOSE, None),
            None => (TIGHT, None),
        }
    }

    /// Words for a violation: which bound applied and why.
    pub fn describe(&self, since: Duration, now: Duration) -> String {
        match self.bound(since, now) {
            (b, Some(class)) => format!("{} s, loose bound: {class} during the episode", b.as_secs()),
            (b, None) if b == LOOSE => {
                format!("{} s, loose bound: the MAIN did not answer SHOW REPLICAS in time", b.as_secs())
            }
            (b, None) => format!("{} s, tight bound: no fault that slows the operator", b.as_secs()),
        }
    }
}

/// Claims that must catch up with the truth within the bound. The clock of an episode runs
/// only while the operator runs: nothing corrects a label while it is down.
#[derive(Debug, Default)]
pub struct Lagging {
    since: BTreeMap<String, Duration>,
    reported: BTreeSet<String>,
    /// Total time claims lagged the truth, summed over subjects.
    pub lag_time: Duration,
}

impl Lagging {
    /// Stop the clock of `subject`'s episode for `step`, if one is running: the claim is wrong,
    /// but for a reason the bound does not hold against the operator (the caller says which).
    pub fn pause(&mut self, cluster: &str, subject: &str, step: Duration) {
        if let Some(since) = self.since.get_mut(&format!("{cluster}/{subject}")) {
            *since += step;
        }
        self.lag_time += step;
    }

    /// Judge one claim at `now`. Returns a violation the first time `subject` has been wrong for
    /// longer than its bound.
    #[allow(clippy::too_many_arguments)]
    pub fn claim(
        &mut self,
        cond: &Conditions,
        now: Duration,
        step: Duration,
        cluster: &str,
        subject: String,
        wrong: bool,
        what: impl FnOnce() -> String,
    ) -> Option<Violation> {
        self.claim_within(cond, Duration::ZERO, now, step, cluster, subject, wrong, what)
    }

    /// [`Self::claim`] for a claim the operator can only correct by a check it runs on a
    /// schedule: its bound is the usual one plus `extra` (the caller says why).
    #[allow(clippy::too_many_arguments)]
    pub fn claim_within(
        &mut self,
        cond: &Conditions,
        extra: Duration,
        now: Duration,
        step: Duration,
        cluster: &str,
        subject: String,
        wrong: bool,
        what: impl FnOnce() -> String,
    ) -> Option<Violation> {
        let key = format!("{cluster}/{subject}");
        if !wrong {
            self.since.remove(&key);
            self.reported.remove(&key);
            return None;
        }
        self.lag_time += step;
        let started = *self.since.entry(key.clone()).or_insert(now);
        let up = cond.operator_up_since?;
        let clock_from = started.max(up);
        let (bound, _) = cond.bound(started, now);
        if now.saturating_sub(clock_from) > bound + extra && self.reported.insert(key) {
            let schedule = if extra.is_zero() {
                String::new()
            } else {
                format!(" + {} s for the check's schedule", extra.as_secs())
            };
            return Some(Violation {
                at_ms: ms(now),
                cluster: cluster.to_owned(),
                what: format!("{} for more than {}{schedule}", what(), cond.describe(started, now)),
            });
        }
        None
    }
}

/// Milliseconds of a duration.
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// p50, p99 and max of values (0 when empty).
pub fn percentiles(values: &[u64]) -> (u64, u64, u64) {
    if values.is_empty() {
        return (0, 0, 0);
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), at(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tight_bound_applies_without_a_justifying_fault() {
        let s = Duration::from_secs;
        let mut cond = Conditions {
            windows: vec![(FaultClass::PodKill, s(10), s(10))],
            operator_up_since: Some(s(0)),
            ..Conditions::default()
        };
        assert_eq!(cond.bound(s(50), s(60)).0, TIGHT);
        cond.windows.push((FaultClass::StaleView, s(30), s(45)));
        assert_eq!(cond.bound(s(50), s(60)), (LOOSE, Some(FaultClass::StaleView)), "ended 5 s before the episode");
        assert_eq!(cond.bound(s(80), s(90)).0, TIGHT, "long over");
    }

    #[test]
    fn lagging_claims_pause_while_the_operator_is_down() {
        let s = Duration::from_secs;
        let mut lag = Lagging::default();
        let mut cond = Conditions::default();
        let step = Duration::from_millis(100);
        for t in 0..60 {
            assert!(lag.claim(&cond, s(t), step, "g", "x".into(), true, String::new).is_none(), "operator down");
        }
        cond.operator_up_since = Some(s(60));
        assert!(lag.claim(&cond, s(80), step, "g", "x".into(), true, String::new).is_none());
        let v = lag.claim(&cond, s(86), step, "g", "x".into(), true, || "wrong".into());
        assert!(v.is_some_and(|v| v.what.contains("tight")), "26 s after the restart");
        assert!(lag.claim(&cond, s(87), step, "g", "x".into(), true, String::new).is_none(), "one report per episode");
        assert!(lag.claim(&cond, s(88), step, "g", "x".into(), false, String::new).is_none());
    }
}
