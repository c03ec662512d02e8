//! Failover as clients see it: when a MAIN is lost and a replica takes over, at most one MAIN
//! acknowledges writes, no promotion replaces a MAIN the operator could see was healthy, and the
//! time from the loss to the first acknowledged write again (RTO) and the acknowledged writes
//! lost (RPO) are measured per replication mode.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use super::super::truth::ClusterTruth;
use super::super::workload::Ack;
use super::{Violation, ms};

/// How stale the health of the MAIN being replaced may be at its promotion: the truth is
/// sampled every 100 ms and the failover's intent (which moves the held MAIN to its target) is
/// written just before the promotion is sent.
const HEALTH_SAMPLE_SLACK: Duration = Duration::from_millis(500);
/// A switchover's demotion and promotion are one action: the promotion is sent as soon as the
/// demotion returned, within the replication query timeout (15 s) at most.
const SWITCHOVER_GAP_MS: u64 = 15_000;

/// Per pod: since when it has been the held MAIN, healthy and observable by the operators, and
/// when it was last seen so.
#[derive(Debug, Default)]
pub struct FailoverTruth {
    healthy: BTreeMap<String, (Duration, Duration)>,
    /// Promotions the operator sent: when, and to which pod.
    pub promotions: Vec<(u64, String)>,
    /// Demotions the operator sent: when, and to which pod.
    pub demotions: Vec<(u64, String)>,
    judged: usize,
    /// Stretches in which a pod was the held MAIN and answered as a MAIN: (pod, from, to).
    pub reigns: Vec<(String, Duration, Duration)>,
    /// Stretches in which the spec asked for STRICT_SYNC: (from, to).
    pub strict: Vec<(Duration, Duration)>,
}

/// How long an acknowledgement may trail the commit it reports, and a sample the truth: a
/// STRICT_SYNC commit completed on the old MAIN just before the promotion may be acknowledged
/// just after it (samples are 100 ms apart, the client's link 1 to 2 ms).
const ACK_IN_FLIGHT: Duration = Duration::from_millis(500);
/// How long STRICT_SYNC must have been asked for before an acknowledgement is judged by it: a
/// mode change re-registers the replicas over a few reconciles.
const STRICT_SETTLED: Duration = Duration::from_secs(30);

/// Extend the last stretch in `stretches` to `now`, or start one (a gap of a sample or more
/// starts a new one).
fn extend(stretches: &mut Vec<(Duration, Duration)>, now: Duration) {
    match stretches.last_mut() {
        Some(last) if now.saturating_sub(last.1) <= Duration::from_millis(250) => last.1 = now,
        _ => stretches.push((now, now)),
    }
}

impl FailoverTruth {
    /// Sample the held MAIN's health. `operator_cut_off`: a partition between the operators and
    /// the cluster's pods is in force (the operator cannot see the MAIN then).
    pub fn sample(&mut self, now: Duration, cluster: &str, truth: &ClusterTruth, operator_cut_off: bool) {
        let main = truth.main_pod(cluster);
        if truth.write(cluster).is_some_and(|p| p.role == Some(fake_memgraph::Role::Main)) {
            match self.reigns.last_mut() {
                Some(last) if last.0 == main && now.saturating_sub(last.2) <= Duration::from_millis(250) => {
                    last.2 = now
                }
                _ => self.reigns.push((main.clone(), now, now)),
            }
        }
        if truth.mode() == "strict_sync" {
            extend(&mut self.strict, now);
        }
        // A MAIN still being promoted (the intent stands) is not labelled: no client writes to
        // it, so finishing, replacing or undoing the promotion on a sign that it failed (its pod
        // not Ready) loses nothing; what it does to writes is judged by the writes and
        // split-brain oracles. Only an established MAIN must be down for the delay first.
        let promoting = truth.status.as_ref().is_some_and(|s| !s["failover"]["intent"].is_null());
        // A MAIN whose readiness flaps (`main-flap`) is healthy through its NotReady stretches:
        // each is shorter than the detection delay, so none justifies a promotion.
        let up = |p: &super::super::truth::PodTruth| p.usable() || (p.flapping && !p.terminating && !p.unreachable());
        let healthy = !operator_cut_off
            && !promoting
            && truth.write(cluster).is_some_and(|p| up(p) && p.role == Some(fake_memgraph::Role::Main))
            && !truth.main_lost_data(cluster);
        if healthy {
            let entry = self.healthy.entry(main).or_insert((now, now));
            // A gap in health starts the episode again.
            if now.saturating_sub(entry.1) > Duration::from_millis(250) {
                entry.0 = now;
            }
            entry.1 = now;
        }
    }

    /// Judge the promotions sent since the last call: none may replace a MAIN that was healthy
    /// and observable for the whole detection delay before it, unless that MAIN was demoted just
    /// before (a planned switchover, which demotes first and promotes only then).
    pub fn judge_promotions(&mut self, cluster: &str, delay: Duration) -> Vec<Violation> {
        let mut out = Vec::new();
        for (at_ms, target) in &self.promotions[self.judged..] {
            let at = Duration::from_millis(*at_ms);
            for (pod, (since, last)) in &self.healthy {
                let demoted =
                    self.demotions.iter().any(|(d, p)| p == pod && *d <= *at_ms && at_ms - d <= SWITCHOVER_GAP_MS);
                if pod != target && !demoted && *since + delay <= at && *last + HEALTH_SAMPLE_SLACK >= at {
                    out.push(Violation {
                        at_ms: *at_ms,
                        cluster: cluster.to_owned(),
                        what: format!(
                            "promoted {target} while the MAIN {pod} was healthy and reachable by the operator \
                             since {:.1} s, longer than the detection delay",
                            since.as_secs_f64()
                        ),
                    });
                }
            }
        }
        self.judged = self.promotions.len();
        out
    }
}

/// At most one MAIN acknowledges writes: once a MAIN acknowledged a write after a promotion of
/// it, a MAIN it replaced acknowledging another is two MAINs taking writes from clients (a
/// split brain), unless that one was promoted again since.
pub fn split_brain(cluster: &str, acks: &[Ack], promotions: &[(u64, String)]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut current: Option<(&str, u64)> = None;
    let mut reported = BTreeSet::new();
    for ack in acks {
        match current {
            None => current = Some((&ack.pod, 0)),
            Some((pod, _)) if pod == ack.pod => {}
            Some((pod, since)) => {
                // The newest promotion of the acknowledging pod since the current MAIN took over.
                let promoted = promotions
                    .iter()
                    .filter(|(at, p)| *p == ack.pod && *at >= since && *at <= ack.at_ms)
                    .map(|(at, _)| *at)
                    .next_back();
                match promoted {
                    Some(at) => current = Some((&ack.pod, at)),
                    None => {
                        if reported.insert(ack.pod.clone()) {
                            out.push(Violation {
                                at_ms: ack.at_ms,
                                cluster: cluster.to_owned(),
                                what: format!(
                                    "{} acknowledged write {} after {pod} had taken over as MAIN: two MAINs took \
                                     writes from clients",
                                    ack.pod, ack.id
                                ),
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

/// Under STRICT_SYNC no MAIN but the one held acknowledges a write once that one is promoted
/// and answers as MAIN: the promoted replica no longer confirms the old MAIN's commits, so they
/// abort (the issue's "none at all"). An acknowledgement by another pod while a different
/// pod has reigned for [`ACK_IN_FLIGHT`], in a stretch STRICT_SYNC has been asked for since
/// [`STRICT_SETTLED`] before, is a violation.
pub fn strict_second_main(cluster: &str, acks: &[Ack], truth: &FailoverTruth) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut reported = BTreeSet::new();
    for ack in acks {
        let at = Duration::from_millis(ack.at_ms);
        let strict = truth.strict.iter().any(|(from, to)| *from + STRICT_SETTLED <= at && at <= *to);
        let other =
            truth.reigns.iter().find(|(pod, from, to)| *pod != ack.pod && *from + ACK_IN_FLIGHT <= at && at <= *to);
        if let (true, Some((pod, from, _))) = (strict, other)
            && reported.insert(ack.pod.clone())
        {
            out.push(Violation {
                at_ms: ack.at_ms,
                cluster: cluster.to_owned(),
                what: format!(
                    "under STRICT_SYNC {} acknowledged write {} while {pod} was the MAIN (since {:.1} s)",
                    ack.pod,
                    ack.id,
                    from.as_secs_f64()
                ),
            });
        }
    }
    out
}

/// One loss of the MAIN and how clients got their writes back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recovery {
    /// The fault that took the MAIN away.
    pub fault: String,
    /// When, in simulated ms.
    pub at_ms: u64,
    /// How long the fault lasted.
    pub lasted_ms: u64,
    /// Time to the first write acknowledged after it, if any came.
    pub rto_ms: Option<u64>,
    /// The pod that acknowledged it.
    pub by: Option<String>,
    /// A replica was promoted in between.
    pub failed_over: bool,
}

/// The recoveries from `losses` (fault name, start, length) of one cluster.
pub fn recoveries(
    losses: &[(String, Duration, Duration)],
    acks: &[Ack],
    promotions: &[(u64, String)],
) -> Vec<Recovery> {
    losses
        .iter()
        .map(|(fault, start, lasted)| {
            let at_ms = ms(*start);
            let first = acks.iter().find(|a| a.at_ms >= at_ms);
            let failed_over = promotions.iter().any(|(at, _)| *at >= at_ms && first.is_none_or(|a| *at <= a.at_ms));
            Recovery {
                fault: fault.clone(),
                at_ms,
                lasted_ms: ms(*lasted),
                rto_ms: first.map(|a| a.at_ms - at_ms),
                by: first.map(|a| a.pod.clone()),
                failed_over,
            }
        })
        .collect()
}

/// Acknowledged writes lost: how many, and over what stretch of time they were acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rpo {
    /// Acknowledged writes missing from the final MAIN.
    pub lost: usize,
    /// From the first to the last of them being acknowledged, in ms.
    pub window_ms: u64,
}

/// The RPO of a cluster from its acknowledged writes and the ids the final MAIN lacks.
pub fn rpo(acks: &[Ack], lost: &BTreeSet<i64>) -> Rpo {
    let times: Vec<u64> = acks.iter().filter(|a| lost.contains(&a.id)).map(|a| a.at_ms).collect();
    let window_ms = match (times.iter().min(), times.iter().max()) {
        (Some(a), Some(b)) => b - a,
        _ => 0,
    };
    Rpo { lost: times.len(), window_ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: i64, at_ms: u64, pod: &str) -> Ack {
        Ack { id, at_ms, pod: pod.to_owned(), protected: true }
    }

    #[test]
    fn a_replaced_main_that_acknowledges_again_is_a_split_brain() {
        let acks = [ack(1, 100, "w"), ack(2, 9_000, "r0"), ack(3, 9_100, "w"), ack(4, 9_200, "r0")];
        let promotions = [(8_000, "r0".to_owned())];
        let found = split_brain("g", &acks, &promotions);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].what.contains("w acknowledged write 3"), "{}", found[0].what);
        // The same MAIN throughout, or a change with its promotion: nothing to report.
        assert!(split_brain("g", &acks[..2], &promotions).is_empty());
        assert!(split_brain("g", &[ack(1, 100, "w"), ack(2, 200, "w")], &[]).is_empty());
        // A change of MAIN without a promotion is one too.
        assert_eq!(split_brain("g", &acks[..2], &[]).len(), 1);
        // Back to the old MAIN once it is promoted again.
        let back = [ack(1, 100, "w"), ack(2, 9_000, "r0"), ack(3, 20_000, "w")];
        assert!(split_brain("g", &back, &[(8_000, "r0".to_owned()), (19_000, "w".to_owned())]).is_empty());
    }

    #[test]
    fn under_strict_sync_an_old_main_acknowledges_nothing_once_the_new_one_reigns() {
        let secs = Duration::from_secs;
        let truth = FailoverTruth {
            reigns: vec![("w".into(), secs(0), secs(50)), ("r0".into(), secs(50), secs(100))],
            strict: vec![(secs(0), secs(100))],
            ..FailoverTruth::default()
        };
        // The new MAIN has not acknowledged anything yet: the old one's write counts all the same.
        let found = strict_second_main("g", &[ack(1, 40_000, "w"), ack(2, 60_000, "w")], &truth);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].what.contains("w acknowledged write 2 while r0"), "{}", found[0].what);
        // In flight across the promotion, or not STRICT_SYNC: nothing.
        assert!(strict_second_main("g", &[ack(3, 50_300, "w")], &truth).is_empty());
        let sync = FailoverTruth { strict: vec![(secs(0), secs(55))], ..truth };
        assert!(strict_second_main("g", &[ack(2, 60_000, "w")], &sync).is_empty());
    }

    #[test]
    fn a_promotion_is_judged_by_the_health_of_the_main_it_replaces() {
        let mut f = FailoverTruth::default();
        let truth = ClusterTruth::default();
        // No pods in the truth: never healthy.
        f.sample(Duration::from_secs(1), "g", &truth, false);
        f.promotions.push((10_000, "r".into()));
        assert!(f.judge_promotions("g", Duration::from_secs(5)).is_empty());
        f.healthy.insert("w".into(), (Duration::from_secs(1), Duration::from_millis(19_900)));
        f.promotions.push((20_000, "r".into()));
        assert_eq!(f.judge_promotions("g", Duration::from_secs(5)).len(), 1, "healthy for 19 s up to the promotion");
        f.healthy.insert("w".into(), (Duration::from_secs(1), Duration::from_secs(12)));
        f.promotions.push((20_000, "r".into()));
        assert!(f.judge_promotions("g", Duration::from_secs(5)).is_empty(), "down for 8 s before it");
    }

    #[test]
    fn rto_runs_from_the_loss_to_the_next_acknowledged_write() {
        let acks = [ack(1, 100, "w"), ack(2, 7_500, "r0")];
        let losses = [("main-node-loss".to_owned(), Duration::from_secs(1), Duration::from_secs(60))];
        let found = recoveries(&losses, &acks, &[(6_000, "r0".into())]);
        assert_eq!(found[0].rto_ms, Some(6_500));
        assert!(found[0].failed_over);
        assert_eq!(rpo(&acks, &BTreeSet::from([1])), Rpo { lost: 1, window_ms: 0 });
    }
}
