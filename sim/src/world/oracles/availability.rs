//! Availability: what clients got from the Services, and whether the operator kept a usable
//! instance out of its Service (whatever it could or could not see).

use std::time::Duration;

use serde::Serialize;

use memgraph_operator::names::ClusterNames;

use super::super::run::NAMESPACE;
use super::super::truth::ClusterTruth;
use super::super::workload::{Attempt, Kind, Ledger};
use super::{Conditions, Lagging, Violation};

/// A usable write pod without `main`, or a usable replica without `replica`, is a violation
/// once it lasts longer than the bound.
#[derive(Debug, Default)]
pub struct Availability {
    lagging: Lagging,
}

impl Availability {
    /// Check one cluster's truth. `rows_blocked`: the MAIN did not answer `SHOW REPLICAS` in time
    /// when last asked.
    pub fn check(
        &mut self,
        cond: &Conditions,
        now: Duration,
        step: Duration,
        cluster: &str,
        truth: &ClusterTruth,
        rows_blocked: bool,
    ) -> Vec<Violation> {
        let mut out = Vec::new();
        let write = truth.main_pod(cluster);
        let unrouted =
            truth.write_usable(cluster) && truth.write(cluster).is_some_and(|p| p.label.as_deref() != Some("main"));
        out.extend(self.lagging.claim(cond, now, step, cluster, format!("unrouted {write}"), unrouted, || {
            format!("{write} is Ready and a MAIN with its data, yet has no main label")
        }));
        // A replica can be verified only through its MAIN: while the MAIN is frozen, on a lost
        // node, or does not answer SHOW REPLICAS in time (2.21–3.0 wait on every unreachable
        // replica), nobody can tell whether a replica is in sync, so its label is not owed.
        let main_observable = truth.write(cluster).is_some_and(|p| !p.unreachable()) && !rows_blocked;
        let names = ClusterNames::new(cluster, NAMESPACE);
        for instance in truth.replica_instances(cluster) {
            let pod = names.pod(instance);
            let unrouted = main_observable
                && truth.instance_usable(cluster, instance)
                && truth.pods.get(&pod).is_some_and(|p| p.label.as_deref() != Some("replica"));
            out.extend(self.lagging.claim(cond, now, step, cluster, format!("unrouted {pod}"), unrouted, || {
                format!("{pod} is Ready, registered and in sync, yet has no replica label")
            }));
        }
        out
    }
}

/// A stretch of time in which every request of a kind failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outage {
    /// Write or read.
    pub kind: String,
    /// First failed request.
    pub start_ms: u64,
    /// First successful request after it (or the end of the run).
    pub end_ms: u64,
    /// What clients saw first.
    pub cause: String,
}

/// Availability of one kind of request in a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Served {
    /// Requests made.
    pub requests: usize,
    /// Requests that succeeded.
    pub succeeded: usize,
}

impl Served {
    /// Fraction that succeeded (1 when nothing was asked).
    pub fn fraction(&self) -> f64 {
        if self.requests == 0 { 1.0 } else { self.succeeded as f64 / self.requests as f64 }
    }
}

/// Stretches of at least `min` in which every request of `kind` failed.
pub fn outages(ledger: &Ledger, kind: Kind, end_ms: u64, min: Duration) -> Vec<Outage> {
    let name = match kind {
        Kind::Write => "write",
        Kind::Read => "read",
    };
    let mut out = Vec::new();
    let mut open: Option<&Attempt> = None;
    let attempts: Vec<&Attempt> = ledger.attempts.iter().filter(|a| a.kind == kind).collect();
    let close = |first: &Attempt, end: u64, out: &mut Vec<Outage>| {
        if end.saturating_sub(first.start_ms) >= u64::try_from(min.as_millis()).unwrap_or(0) {
            out.push(Outage {
                kind: name.to_owned(),
                start_ms: first.start_ms,
                end_ms: end,
                cause: match (&first.pod, &first.error) {
                    (Some(pod), Some(e)) => format!("{pod}: {e}"),
                    (None, Some(e)) => e.clone(),
                    (_, None) => String::new(),
                },
            });
        }
    };
    for a in attempts {
        match (a.error.is_some(), open) {
            (true, None) => open = Some(a),
            (false, Some(first)) => {
                close(first, a.start_ms, &mut out);
                open = None;
            }
            _ => {}
        }
    }
    if let Some(first) = open {
        close(first, end_ms, &mut out);
    }
    out
}

/// How many requests of a kind were made and succeeded.
pub fn served(ledger: &Ledger, kind: Kind) -> Served {
    let (requests, failed) = ledger.counts(kind);
    Served { requests, succeeded: requests - failed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(start_ms: u64, ok: bool) -> Attempt {
        Attempt { start_ms, kind: Kind::Write, pod: Some("p".into()), error: (!ok).then(|| "timed out".to_owned()) }
    }

    #[test]
    fn outages_are_runs_of_failures_longer_than_the_minimum() {
        let ledger = Ledger {
            attempts: vec![
                attempt(0, true),
                attempt(100, false),
                attempt(200, true),
                attempt(300, false),
                attempt(900, false),
                attempt(2_000, false),
                attempt(2_500, true),
                attempt(3_000, false),
            ],
            ..Ledger::default()
        };
        let found = outages(&ledger, Kind::Write, 5_000, Duration::from_secs(1));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].start_ms, found[0].end_ms), (300, 2_500));
        assert_eq!(found[0].cause, "p: timed out");
        assert_eq!((found[1].start_ms, found[1].end_ms), (3_000, 5_000), "still open at the end");
        let s = served(&ledger, Kind::Write);
        assert_eq!((s.requests, s.succeeded), (8, 3));
    }
}
