//! Acknowledged writes survive where the mode promises. At the end of a run every acknowledged
//! write must be on the final MAIN and on every replica in sync with it. A write acknowledged
//! while an in-sync SYNC or STRICT_SYNC replica existed ("protected") may never be lost, not
//! even with the write pod's volume; an unprotected one (ASYNC, or no sync replica in sync) may
//! be lost only with the write pod's volume, and that loss is measured and reported.

use std::collections::BTreeSet;

use serde::Serialize;

use super::super::workload::Ledger;
use super::Violation;

/// What happened to one cluster's acknowledged writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Durability {
    /// Writes acknowledged.
    pub acked: usize,
    /// Of those, acknowledged while a sync replica was in sync.
    pub protected: usize,
    /// Acknowledged writes missing from the final MAIN.
    pub lost: usize,
    /// Of those, protected ones (each a violation).
    pub lost_protected: usize,
}

/// One replica at the end of the run: its name and the write ids it holds.
pub struct Holder<'a> {
    /// Pod name.
    pub pod: &'a str,
    /// Write ids it holds.
    pub ids: &'a BTreeSet<i64>,
}

/// Judge a cluster's acknowledged writes against the final MAIN and the replicas in sync.
/// `volume_lost` says whether the write pod lost its volume during the run.
pub fn judge(
    cluster: &str,
    end_ms: u64,
    ledger: &Ledger,
    main: Option<Holder<'_>>,
    in_sync: &[Holder<'_>],
    volume_lost: bool,
) -> (Durability, BTreeSet<i64>, Vec<Violation>) {
    let mut d = Durability {
        acked: ledger.acked.len(),
        protected: ledger.acked.iter().filter(|a| a.protected).count(),
        ..Durability::default()
    };
    let mut out = Vec::new();
    let violation = |what: String| Violation { at_ms: end_ms, cluster: cluster.to_owned(), what };
    let Some(main) = main else {
        if !ledger.acked.is_empty() {
            out.push(violation("there is no MAIN at the end to hold the acknowledged writes".to_owned()));
        }
        return (d, BTreeSet::new(), out);
    };
    let lost: BTreeSet<i64> = ledger.acked.iter().map(|a| a.id).filter(|id| !main.ids.contains(id)).collect();
    d.lost = lost.len();
    let protected_lost: Vec<i64> =
        ledger.acked.iter().filter(|a| a.protected && lost.contains(&a.id)).map(|a| a.id).collect();
    d.lost_protected = protected_lost.len();
    if !protected_lost.is_empty() {
        // When and by whom the first was acknowledged: what a replay needs to find the cause.
        let first = ledger.acked.iter().find(|a| a.id == protected_lost[0]);
        let by = first.map(|a| format!(" (the first acknowledged by {} at {:.3} s)", a.pod, a.at_ms as f64 / 1000.0));
        out.push(violation(format!(
            "{} writes acknowledged while a sync replica was in sync are missing from {}, first ids {:?}{}",
            protected_lost.len(),
            main.pod,
            &protected_lost[..protected_lost.len().min(5)],
            by.unwrap_or_default()
        )));
    } else if !lost.is_empty() && !volume_lost {
        let first: Vec<&i64> = lost.iter().take(5).collect();
        out.push(violation(format!(
            "{} acknowledged writes are missing from {} although its volume was never lost, first ids {first:?}",
            lost.len(),
            main.pod
        )));
    }
    for replica in in_sync {
        let missing: Vec<i64> =
            ledger.acked.iter().map(|a| a.id).filter(|id| main.ids.contains(id) && !replica.ids.contains(id)).collect();
        if !missing.is_empty() {
            out.push(violation(format!(
                "{} acknowledged writes on {} are missing from {}, which is registered in sync, first ids {:?}",
                missing.len(),
                main.pod,
                replica.pod,
                &missing[..missing.len().min(5)]
            )));
        }
    }
    (d, lost, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::workload::Ack;

    fn ledger() -> Ledger {
        Ledger {
            acked: (1..=6).map(|id| Ack { id, at_ms: 0, pod: "w".into(), protected: id > 3 }).collect(),
            ..Ledger::default()
        }
    }

    #[test]
    fn unprotected_losses_are_measured_only_with_the_volume_gone() {
        let on_main: BTreeSet<i64> = [1, 4, 5, 6].into();
        let main = || Some(Holder { pod: "w", ids: &on_main });
        let (d, lost, v) = judge("g", 0, &ledger(), main(), &[], true);
        assert_eq!((d.lost, d.lost_protected, v.len()), (2, 0, 0));
        assert_eq!(lost, [2, 3].into());
        let (_, _, v) = judge("g", 0, &ledger(), main(), &[], false);
        assert_eq!(v.len(), 1, "no volume was lost: any loss is a bug");
        let without_protected: BTreeSet<i64> = [1, 2, 3, 4].into();
        let (d, _, v) = judge("g", 0, &ledger(), Some(Holder { pod: "w", ids: &without_protected }), &[], true);
        assert_eq!((d.lost_protected, v.len()), (2, 1));
    }

    #[test]
    fn in_sync_replicas_hold_what_the_main_holds() {
        let all: BTreeSet<i64> = (1..=6).collect();
        let behind: BTreeSet<i64> = (1..=5).collect();
        let (_, _, v) = judge(
            "g",
            0,
            &ledger(),
            Some(Holder { pod: "w", ids: &all }),
            &[Holder { pod: "r0", ids: &all }, Holder { pod: "r1", ids: &behind }],
            false,
        );
        assert_eq!(v.len(), 1);
        assert!(v[0].what.contains("r1"));
    }
}
