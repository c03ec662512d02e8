//! Reads are judged, not discarded: every read through the read Service recorded the highest
//! write id and the number of written nodes it saw. A read must show a prefix of the write pod's
//! history (never another history), and how far it lags the acknowledged writes is measured;
//! lagging by more than the bound on a routed replica is a violation.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use super::super::workload::Ledger;
use super::{Conditions, Violation, percentiles};

/// Read freshness of one cluster over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Freshness {
    /// Successful reads.
    pub reads: usize,
    /// Reads that missed at least one acknowledged write.
    pub stale: usize,
    /// Staleness p50, p99 and max over all reads, in ms.
    pub p50_ms: u64,
    /// p99.
    pub p99_ms: u64,
    /// Max.
    pub max_ms: u64,
    /// Reads that showed something no prefix of the write pod's history holds.
    pub wrong_history: usize,
}

/// Judge every read of a cluster. `mains` name the pods whose history is the cluster's (the
/// write pod, and every replica a failover promoted);
/// `lost` are acknowledged writes the final MAIN no longer has (measured elsewhere).
/// `downtime` are stretches not held against the operator (see `World::excused`).
/// `starts` are the times pods' Memgraph (re)started: a replica is stale no longer than since
/// it last started (an empty one restarted a second ago has been wrong for a second).
pub fn judge(
    cluster: &str,
    ledger: &Ledger,
    mains: &[String],
    lost: &BTreeSet<i64>,
    cond: &Conditions,
    downtime: &[(Duration, Duration)],
    starts: &[(String, Duration)],
) -> (Freshness, Vec<Violation>) {
    let write_pod = mains.join(" and ");
    let mut sent_to_main: Vec<i64> = ledger.sent.iter().filter(|(_, p)| mains.contains(p)).map(|(id, _)| *id).collect();
    sent_to_main.sort_unstable();
    let kept: Vec<(i64, u64)> = ledger
        .acked
        .iter()
        .filter(|a| mains.contains(&a.pod) && !lost.contains(&a.id))
        .map(|a| (a.id, a.at_ms))
        .collect();
    let mut staleness = Vec::with_capacity(ledger.reads.len());
    let mut out = Vec::new();
    let mut freshness = Freshness { reads: ledger.reads.len(), ..Freshness::default() };
    let mut reported_history = BTreeSet::new();
    let mut reported_stale = BTreeSet::new();
    for read in &ledger.reads {
        let m = read.max_id.unwrap_or(0);
        // A prefix of the history up to m holds every kept acknowledged write up to m and at
        // most the writes sent to the write pod up to m (a failed SYNC write may be committed).
        let at_least = kept.partition_point(|(id, _)| *id <= m) as i64;
        let at_most = sent_to_main.partition_point(|id| *id <= m) as i64;
        let known = read.max_id.is_none_or(|m| sent_to_main.binary_search(&m).is_ok());
        if !known || read.count < at_least || read.count > at_most {
            freshness.wrong_history += 1;
            if reported_history.insert(read.pod.clone()) {
                out.push(Violation {
                    at_ms: read.start_ms,
                    cluster: cluster.to_owned(),
                    what: format!(
                        "a read on {} saw {} writes up to id {m}, which is no prefix of {write_pod}'s history \
                         (it holds between {at_least} and {at_most} of them)",
                        read.pod, read.count
                    ),
                });
            }
            continue;
        }
        // Staleness: since when the oldest acknowledged write it missed was acknowledged.
        let missed = kept.get(kept.partition_point(|(id, _)| *id <= m)).filter(|(_, at)| *at < read.start_ms);
        let Some(&(_, acked_at)) = missed else {
            staleness.push(0);
            continue;
        };
        let lag = read.start_ms - acked_at;
        staleness.push(lag);
        freshness.stale += 1;
        let to = Duration::from_millis(read.start_ms);
        let started = starts.iter().filter(|(p, at)| *p == read.pod && *at <= to).map(|(_, at)| *at).max();
        let from = Duration::from_millis(acked_at).max(started.unwrap_or_default());
        // Time the operator was down, or the MAIN answered no one, cannot be held against it
        // (see `World::excused`).
        let down: Duration = downtime.iter().map(|(s, e)| (*e).min(to).saturating_sub((*s).max(from))).sum();
        let (bound, _) = cond.bound(from, to);
        if to.saturating_sub(from).saturating_sub(down) > bound && reported_stale.insert(read.pod.clone()) {
            out.push(Violation {
                at_ms: read.start_ms,
                cluster: cluster.to_owned(),
                what: format!(
                    "a read routed to {} was {:.1} s behind the acknowledged writes: it saw {} writes up to id {m} (bound {})",
                    read.pod,
                    lag as f64 / 1000.0,
                    read.count,
                    cond.describe(from, to)
                ),
            });
        }
    }
    (freshness.p50_ms, freshness.p99_ms, freshness.max_ms) = percentiles(&staleness);
    (freshness, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::workload::{Ack, ReadSeen};

    fn ledger(reads: Vec<(u64, Option<i64>, i64)>) -> Ledger {
        let acked: Vec<Ack> =
            (1..=10).map(|id| Ack { id, at_ms: id as u64 * 1_000, pod: "w".into(), protected: false }).collect();
        Ledger {
            sent: (1..=10).map(|id| (id, "w".to_owned())).chain([(11, "r".to_owned())]).collect(),
            acked,
            reads: reads
                .into_iter()
                .map(|(start_ms, max_id, count)| ReadSeen { start_ms, pod: "r".into(), max_id, count })
                .collect(),
            ..Ledger::default()
        }
    }

    #[test]
    fn staleness_is_measured_from_the_oldest_missed_acknowledgement() {
        let cond = Conditions { operator_up_since: Some(Duration::ZERO), ..Conditions::default() };
        let l = ledger(vec![(10_500, Some(10), 10), (10_500, Some(7), 7), (40_000, Some(3), 3)]);
        let (f, v) = judge("g", &l, &["w".to_owned()], &BTreeSet::new(), &cond, &[], &[]);
        assert_eq!(f.reads, 3);
        assert_eq!(f.stale, 2);
        assert_eq!(f.max_ms, 36_000, "missed write 4, acknowledged at 4 s");
        assert_eq!(v.len(), 1, "36 s is beyond the tight bound: {v:?}");
        let (_, v) = judge(
            "g",
            &l,
            &["w".to_owned()],
            &BTreeSet::new(),
            &cond,
            &[(Duration::from_secs(5), Duration::from_secs(30))],
            &[],
        );
        assert!(v.is_empty(), "the operator was down for 25 of those seconds");
        let restarted = [("r".to_owned(), Duration::from_secs(30))];
        let (_, v) = judge("g", &l, &["w".to_owned()], &BTreeSet::new(), &cond, &[], &restarted);
        assert!(v.is_empty(), "wrong for 10 s only: it restarted at 30 s");
    }

    #[test]
    fn reads_from_another_history_are_violations() {
        let cond = Conditions::default();
        for bad in [(5_000, Some(11), 11), (5_000, Some(5), 3), (5_000, Some(5), 6)] {
            let (f, v) = judge("g", &ledger(vec![bad]), &["w".to_owned()], &BTreeSet::new(), &cond, &[], &[]);
            assert_eq!((f.wrong_history, v.len()), (1, 1), "{bad:?}");
        }
        let (f, _) = judge("g", &ledger(vec![(5_000, None, 0)]), &["w".to_owned()], &BTreeSet::new(), &cond, &[], &[]);
        assert_eq!(f.wrong_history, 0, "an empty replica is stale, not wrong");
    }
}
