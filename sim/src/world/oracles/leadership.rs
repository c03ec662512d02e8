//! Leadership: two operators never act on a cluster in overlapping time. Every mutating API
//! call and every Bolt query an operator makes must come while the latest Lease write the API
//! server applied names that operator as holder, and no later than the lease duration after
//! that write.
//!
//! Why that bound and no other: a standby takes the Lease only after it has seen it unchanged
//! for the lease duration (or released), so until then the holder acts alone; the holder's own
//! renew deadline (shorter) makes it stop before. An act past the duration, or after another
//! operator's write, is an overlap the timings do not allow.

use std::collections::BTreeSet;
use std::time::Duration;

use memgraph_operator::leader::Timings;

use super::Violation;
use crate::world::operator::{GateLog, OPERATOR_HOSTS};

/// The oracle's memory between samples.
#[derive(Debug, Default)]
pub struct Leadership {
    /// The latest applied Lease write: the holder it names and when, in ms.
    latest: Option<(Option<String>, u64)>,
    /// The last holder named by any write.
    last_holder: Option<String>,
    /// (operator, time of the Lease write it was judged against) already reported, so one lapse
    /// is one violation.
    reported: BTreeSet<(usize, u64)>,
    /// Acts judged.
    pub acts: u64,
    /// Times the Lease changed hands (another holder than the last one named).
    pub handovers: u64,
    /// Holder changes for the timeline: (ms, words); the driver takes them.
    pub notes: Vec<(u64, String)>,
}

/// One thing an operator did.
struct Act<'a> {
    at_ms: u64,
    seq: u64,
    by: usize,
    cluster: &'a str,
    what: &'a str,
}

impl Leadership {
    /// Judge what the gates recorded since the last call, in time order.
    pub fn judge(&mut self, log: &GateLog) -> Vec<Violation> {
        let duration = Timings::default().lease_duration;
        let mut acts: Vec<Act<'_>> = log
            .writes
            .iter()
            .map(|w| Act { at_ms: w.at_ms, seq: w.seq, by: w.by, cluster: &w.cluster, what: &w.what })
            .chain(log.queries.iter().map(|q| Act {
                at_ms: q.at_ms,
                seq: q.seq,
                by: q.by,
                cluster: &q.cluster,
                what: &q.query,
            }))
            .collect();
        // In the order they happened: several share a millisecond (a reconcile's last status
        // write and the Lease's release, a takeover and the new leader's first look).
        acts.sort_by_key(|a| a.seq);
        let mut leases = log.leases.iter().peekable();
        let mut found = Vec::new();
        for act in acts {
            while let Some(lease) = leases.next_if(|l| l.seq < act.seq) {
                self.lease_written(lease.at_ms, lease.holder.clone());
            }
            self.acts += 1;
            if let Some(v) = self.judge_act(&act, duration) {
                found.push(v);
            }
        }
        for lease in leases {
            self.lease_written(lease.at_ms, lease.holder.clone());
        }
        found
    }

    fn lease_written(&mut self, at_ms: u64, holder: Option<String>) {
        let before = self.latest.as_ref().map(|(h, _)| h.clone());
        if before.as_ref() != Some(&holder) {
            // A handover: a holder other than the last one named (a release is not one).
            let named = holder.is_some() && self.last_holder.is_some() && self.last_holder != holder;
            self.handovers += u64::from(named);
            if holder.is_some() {
                self.last_holder.clone_from(&holder);
            }
            let words = match &holder {
                Some(h) => format!("the Lease names {h} as holder"),
                None => "the Lease is released".to_owned(),
            };
            self.notes.push((at_ms, words));
        }
        self.latest = Some((holder, at_ms));
    }

    fn judge_act(&mut self, act: &Act<'_>, duration: Duration) -> Option<Violation> {
        let me = OPERATOR_HOSTS.get(act.by).copied().unwrap_or("?");
        let (holder, written) = match &self.latest {
            Some((holder, at)) => (holder.as_deref(), *at),
            None => (None, 0),
        };
        let what = if holder != Some(me) {
            let held = holder.map_or_else(|| "nobody held the Lease".to_owned(), |h| format!("{h} held the Lease"));
            format!("{me} acted ({}) while {held} (its latest write at {:.3}s)", act.what, written as f64 / 1000.0)
        } else if act.at_ms > written + u64::try_from(duration.as_millis()).unwrap_or(u64::MAX) {
            format!(
                "{me} acted ({}) {:.3} s after it last wrote the Lease, beyond the {} s lease duration: a standby may lead by then",
                act.what,
                (act.at_ms - written) as f64 / 1000.0,
                duration.as_secs()
            )
        } else {
            return None;
        };
        if !self.reported.insert((act.by, written)) {
            return None;
        }
        Some(Violation { at_ms: act.at_ms, cluster: act.cluster.to_owned(), what: format!("leadership: {what}") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::operator::{LeaseWrite, QueryRecord, WriteRecord};

    fn lease(at_ms: u64, by: usize) -> LeaseWrite {
        LeaseWrite { at_ms, seq: at_ms * 10, by, holder: Some(OPERATOR_HOSTS[by].to_owned()) }
    }

    fn write(at_ms: u64, by: usize) -> WriteRecord {
        WriteRecord {
            at_ms,
            seq: at_ms * 10 + 1,
            by,
            cluster: "a".into(),
            what: "label a-read-0".into(),
            bookkeeping: false,
        }
    }

    fn query(at_ms: u64, by: usize) -> QueryRecord {
        QueryRecord {
            at_ms,
            seq: at_ms * 10 + 2,
            by,
            cluster: "a".into(),
            address: "a-write-0".into(),
            query: "SHOW REPLICAS".into(),
        }
    }

    #[test]
    fn a_holder_renewing_acts_alone_and_a_takeover_is_clean() {
        let mut oracle = Leadership::default();
        let log = GateLog {
            leases: vec![lease(0, 0), lease(2_000, 0), lease(30_000, 1)],
            writes: vec![write(1, 0), write(16_999, 0), write(30_000, 1)],
            queries: vec![query(500, 0), query(31_000, 1)],
            ..GateLog::default()
        };
        assert!(oracle.judge(&log).is_empty());
        assert_eq!((oracle.acts, oracle.handovers), (5, 1));
        assert_eq!(oracle.notes.len(), 2, "{:?}", oracle.notes);
    }

    #[test]
    fn an_old_leader_acting_after_the_takeover_is_an_overlap() {
        let mut oracle = Leadership::default();
        let log = GateLog {
            leases: vec![lease(0, 0), lease(20_000, 1)],
            queries: vec![query(20_000, 0), query(20_500, 0)],
            ..GateLog::default()
        };
        let found = oracle.judge(&log);
        assert_eq!(found.len(), 1, "one lapse, one violation: {found:?}");
        assert!(
            found[0].what.contains("operator-0 acted (SHOW REPLICAS) while operator-1 held the Lease"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn acting_past_the_lease_duration_is_an_overlap_even_unchallenged() {
        let mut oracle = Leadership::default();
        let log = GateLog { leases: vec![lease(0, 0)], writes: vec![write(15_001, 0)], ..GateLog::default() };
        let found = oracle.judge(&log);
        assert_eq!(found.len(), 1);
        assert!(found[0].what.contains("beyond the 15 s lease duration"), "{}", found[0]);
    }

    #[test]
    fn acting_before_any_lease_or_after_a_release_is_an_overlap() {
        let mut oracle = Leadership::default();
        let log = GateLog { writes: vec![write(5, 1)], ..GateLog::default() };
        assert_eq!(oracle.judge(&log).len(), 1);
        let released = LeaseWrite { at_ms: 10, seq: 100, by: 0, holder: None };
        let log = GateLog { leases: vec![lease(6, 0), released], queries: vec![query(11, 0)], ..GateLog::default() };
        let found = oracle.judge(&log);
        assert!(found.len() == 1 && found[0].what.contains("nobody held the Lease"), "{found:?}");
    }

    #[test]
    fn the_order_within_a_millisecond_decides() {
        let mut oracle = Leadership::default();
        // The last status write of a reconcile, then the release, in the same millisecond.
        let released = LeaseWrite { at_ms: 500, seq: 52, by: 0, holder: None };
        let last = WriteRecord { seq: 51, ..write(500, 0) };
        let log = GateLog { leases: vec![lease(0, 0), released], writes: vec![last], ..GateLog::default() };
        assert!(oracle.judge(&log).is_empty());
        // A write after the release in that millisecond is an overlap.
        let mut oracle = Leadership::default();
        let released = LeaseWrite { at_ms: 500, seq: 51, by: 0, holder: None };
        let late = WriteRecord { seq: 52, ..write(500, 0) };
        let log = GateLog { leases: vec![lease(0, 0), released], writes: vec![late], ..GateLog::default() };
        assert_eq!(oracle.judge(&log).len(), 1);
    }

    #[test]
    fn records_split_across_samples_are_judged_the_same() {
        let mut oracle = Leadership::default();
        assert!(oracle.judge(&GateLog { leases: vec![lease(0, 0)], ..GateLog::default() }).is_empty());
        assert!(oracle.judge(&GateLog { writes: vec![write(14_000, 0)], ..GateLog::default() }).is_empty());
        assert_eq!(oracle.judge(&GateLog { writes: vec![write(16_000, 0)], ..GateLog::default() }).len(), 1);
    }
}
