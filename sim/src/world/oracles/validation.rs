//! The live checks tell the truth (plan §4.6): a replica that stopped receiving the MAIN's
//! commits is not reported healthy, `WriteConnectivity` and `ReadConnectivity` match which
//! instances answer, an injected replication latency shows in the measured lag, and no test
//! node outlives its test.
//!
//! The operator learns these things only from checks it runs on a schedule, so their bounds
//! are the usual claim bound plus the schedule, each with its reason next to it.

use std::collections::VecDeque;
use std::time::Duration;

use memgraph_operator::api::ReplicationMode;
use memgraph_operator::reconcile::plan::validation::LAG_GIVE_UP;
use serde_json::Value;

use super::super::truth::{ClusterTruth, read_pod, write_pod};
use super::status::condition_is;
use super::{Conditions, Lagging, Violation, ms};

/// A replica that has missed a commit the MAIN made this long ago is cut off, whatever Memgraph
/// says: twice the replication test's 5 s limit, and longer than a restarted replica takes to
/// catch up in the simulation.
pub const CUT_OFF: Duration = Duration::from_secs(10);

/// Lag measured under ASYNC may be below the injected link latency by at most this: the write's
/// acknowledgement and the replica's copy travel different 1–2 ms links.
pub const LAG_BELOW: i64 = 5;

/// Validation checks of one cluster, with their memory between samples.
#[derive(Debug, Default)]
pub struct ValidationTruth {
    lagging: Lagging,
    /// The MAIN's commit timestamps and when each was first seen, oldest first.
    commits: VecDeque<(Duration, i64)>,
}

fn interval(spec: Option<&Value>, field: &str, default: u64) -> Duration {
    Duration::from_secs(spec.and_then(|s| s["validation"][field].as_u64()).unwrap_or(default))
}

impl ValidationTruth {
    /// Time the checks' claims lagged the truth.
    pub fn lag_time(&self) -> Duration {
        self.lagging.lag_time
    }

    /// How long ago the MAIN made the oldest commit a replica at `ts` lacks (zero when it has
    /// them all).
    fn missed_for(&self, now: Duration, ts: i64) -> Duration {
        self.commits.iter().find(|(_, t)| *t > ts).map_or(Duration::ZERO, |(at, _)| now.saturating_sub(*at))
    }

    fn note_commits(&mut self, now: Duration, truth: &ClusterTruth, cluster: &str) {
        let main = truth.write(cluster).filter(|p| p.role == Some(fake_memgraph::Role::Main) && p.ts > 0);
        let Some(main) = main else {
            // No MAIN to miss commits of: a replica is judged again once there is one.
            self.commits.clear();
            return;
        };
        if self.commits.back().is_some_and(|(_, t)| *t > main.ts) {
            // A MAIN with an older history (restored, or lost its data): start over.
            self.commits.clear();
        }
        if self.commits.back().is_none_or(|(_, t)| *t < main.ts) {
            self.commits.push_back((now, main.ts));
        }
        // What every replica already has is not needed to judge any of them.
        let oldest = (0..truth.desired())
            .map(|i| truth.pods.get(&read_pod(cluster, i)).map_or(0, |p| p.ts))
            .min()
            .unwrap_or(main.ts);
        while self.commits.len() > 1 && self.commits.get(1).is_some_and(|(_, t)| *t <= oldest) {
            self.commits.pop_front();
        }
    }

    /// Check one cluster's validation claims.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &mut self,
        cond: &Conditions,
        now: Duration,
        step: Duration,
        cluster: &str,
        truth: &ClusterTruth,
        operator_cut_off: bool,
    ) -> Vec<Violation> {
        self.note_commits(now, truth, cluster);
        let Some(status) = truth.status.as_ref().filter(|s| s.is_object()) else { return Vec::new() };
        let spec = truth.spec.as_ref();
        if spec.is_some_and(|s| s["validation"]["enabled"].as_bool() == Some(false)) {
            return Vec::new();
        }
        let mut out = Vec::new();
        // The operator sees a cut-off replica that Memgraph still calls ready only through its
        // lag measurement (every lag interval), which waits LAG_GIVE_UP for the test write.
        let replication_extra = interval(spec, "lagIntervalSeconds", 60) + LAG_GIVE_UP;
        let mut cut_off = Vec::new();
        for i in 0..truth.desired() {
            let pod = read_pod(cluster, i);
            let ts = truth.pods.get(&pod).map_or(0, |p| p.ts);
            let missed = self.missed_for(now, ts);
            let stale = missed > CUT_OFF;
            if stale {
                cut_off.push(format!("read-{i}"));
            }
            let name = format!("read-{i}");
            let says_healthy = status["validation"]["replicas"]
                .as_array()
                .and_then(|rs| rs.iter().find(|r| r["name"].as_str() == Some(&name)))
                .is_some_and(|r| r["healthy"].as_bool() == Some(true));
            out.extend(self.lagging.claim_within(
                cond,
                replication_extra,
                now,
                step,
                cluster,
                format!("validation {name} healthy"),
                says_healthy && stale,
                || {
                    format!(
                        "status.validation says {name} is healthy while it has missed commits for {} s",
                        missed.as_secs()
                    )
                },
            ));
        }
        out.extend(self.lagging.claim_within(
            cond,
            replication_extra,
            now,
            step,
            cluster,
            "ReplicationHealthy=True".into(),
            condition_is(status, "ReplicationHealthy", "True") && !cut_off.is_empty(),
            || {
                format!(
                    "ReplicationHealthy is True while {} missed commits for over {} s",
                    cut_off.join(", "),
                    CUT_OFF.as_secs()
                )
            },
        ));
        out.extend(self.connectivity(cond, now, step, cluster, truth, status, operator_cut_off));
        out
    }

    /// `WriteConnectivity` and `ReadConnectivity` against which instances answer queries.
    #[allow(clippy::too_many_arguments)]
    fn connectivity(
        &mut self,
        cond: &Conditions,
        now: Duration,
        step: Duration,
        cluster: &str,
        truth: &ClusterTruth,
        status: &Value,
        operator_cut_off: bool,
    ) -> Vec<Violation> {
        // A change shows at the next connectivity check (every connectivity interval), whose
        // `RETURN 1` to an instance that does not answer waits the probe timeout (5 s).
        let extra = interval(truth.spec.as_ref(), "connectivityIntervalSeconds", 30) + Duration::from_secs(5);
        // As the check asks: a pod that is not Ready is not asked (no Service routes to it), so
        // it does not answer, whatever its process would say.
        let answers = |pod: &str| truth.pods.get(pod).is_some_and(|p| p.role.is_some() && p.ready && !p.unreachable());
        let write_answers = answers(&write_pod(cluster));
        let silent: Vec<String> =
            (0..truth.desired()).filter(|i| !answers(&read_pod(cluster, *i))).map(|i| format!("read-{i}")).collect();
        let mut out = Vec::new();
        let mut claim = |lagging: &mut Lagging, subject: &str, wrong: bool, what: String| {
            out.extend(lagging.claim_within(cond, extra, now, step, cluster, subject.to_owned(), wrong, || what));
        };
        claim(
            &mut self.lagging,
            "WriteConnectivity=True",
            condition_is(status, "WriteConnectivity", "True") && !write_answers,
            "WriteConnectivity is True while the write instance does not answer".into(),
        );
        claim(
            &mut self.lagging,
            "ReadConnectivity=True",
            condition_is(status, "ReadConnectivity", "True") && !silent.is_empty(),
            format!("ReadConnectivity is True while {} do not answer", silent.join(", ")),
        );
        // False is a claim too, unless the operator is partitioned from the instances: then
        // they do not answer it, which is what the condition says.
        let (write_false, read_false) = (
            condition_is(status, "WriteConnectivity", "False") && write_answers,
            condition_is(status, "ReadConnectivity", "False") && silent.is_empty(),
        );
        if operator_cut_off {
            self.lagging.pause(cluster, "WriteConnectivity=False", step);
            self.lagging.pause(cluster, "ReadConnectivity=False", step);
        }
        claim(
            &mut self.lagging,
            "WriteConnectivity=False",
            write_false,
            "WriteConnectivity is False while the write instance answers".into(),
        );
        claim(
            &mut self.lagging,
            "ReadConnectivity=False",
            read_false,
            "ReadConnectivity is False while every read instance answers".into(),
        );
        out
    }
}

/// The link latency in force on a replica's link over all of `[start, end]`: the injected one,
/// the simulation's default (1–2 ms, reported as 0) when none overlaps, `None` when a window
/// began or ended inside the measurement.
pub fn latency_over(
    latencies: &[(String, Duration, Duration, Duration)],
    host: &str,
    start: Duration,
    end: Duration,
) -> Option<Duration> {
    let mut overlapping = latencies.iter().filter(|(h, _, from, to)| h == host && *from <= end && *to >= start);
    match (overlapping.next(), overlapping.next()) {
        (None, _) => Some(Duration::ZERO),
        (Some((_, l, from, to)), None) if *from <= start && *to >= end => Some(*l),
        _ => None,
    }
}

/// Judge one lag measurement: under ASYNC the replica receives the commit one link latency
/// after the MAIN made it, so the figure is at least the injected latency (less [`LAG_BELOW`]);
/// under SYNC and STRICT_SYNC the commit waited for the replica, so the figure says nothing
/// about the link and is not judged.
pub fn judge_lag(
    cluster: &str,
    at: Duration,
    pod: &str,
    mode: ReplicationMode,
    latency: Duration,
    lag_ms: i64,
) -> Option<Violation> {
    if mode != ReplicationMode::Async {
        return None;
    }
    let floor = i64::try_from(latency.as_millis()).unwrap_or(i64::MAX) - LAG_BELOW;
    (lag_ms < floor).then(|| Violation {
        at_ms: ms(at),
        cluster: cluster.to_owned(),
        what: format!(
            "the lag measured on {pod} was {lag_ms} ms while its link to the MAIN had {} ms of latency",
            latency.as_millis()
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fake_memgraph::Role;
    use serde_json::json;

    use super::super::super::truth::PodTruth;
    use super::*;

    fn pod(role: Role, ts: i64) -> PodTruth {
        PodTruth {
            label: None,
            ready: true,
            terminating: false,
            role: Some(role),
            follows_main: role == Role::Replica,
            hung: false,
            lost_node: false,
            cut_off: false,
            nodes: 1,
            ts,
            diverged: false,
            ahead: false,
            flapping: false,
        }
    }

    /// One replica; `main_ts` and `replica_ts` are the commit timestamps; the status says what
    /// the operator claims.
    fn truth(main_ts: i64, replica_ts: i64, status: Value) -> ClusterTruth {
        ClusterTruth {
            pods: BTreeMap::from([
                (write_pod("g"), pod(Role::Main, main_ts)),
                (read_pod("g", 0), pod(Role::Replica, replica_ts)),
            ]),
            rows: BTreeMap::new(),
            status: Some(status),
            spec: Some(json!({"read": {"replicas": 1}})),
            generation: 1,
            main: write_pod("g"),
        }
    }

    fn healthy_status() -> Value {
        json!({
            "validation": {"replicas": [{"name": "read-0", "healthy": true}]},
            "conditions": [
                {"type": "ReplicationHealthy", "status": "True"},
                {"type": "WriteConnectivity", "status": "True"},
                {"type": "ReadConnectivity", "status": "True"},
            ],
        })
    }

    fn cond() -> Conditions {
        Conditions { operator_up_since: Some(Duration::ZERO), ..Conditions::default() }
    }

    /// Samples every second from `from` to `to` s; the violations found.
    fn run(o: &mut ValidationTruth, from: u64, to: u64, t: impl Fn(u64) -> ClusterTruth, cut: bool) -> Vec<Violation> {
        let step = Duration::from_secs(1);
        (from..=to).flat_map(|s| o.check(&cond(), Duration::from_secs(s), step, "g", &t(s), cut)).collect()
    }

    #[test]
    fn a_replica_cut_off_must_not_stay_healthy_beyond_the_probe_schedule() {
        let mut o = ValidationTruth::default();
        // The replica stops at ts 10 at 0 s while the MAIN goes on committing.
        let t = |s: u64| truth(10 + s as i64, 10, healthy_status());
        // Cut off after CUT_OFF (10 s); the bound is 25 s + 60 s + 30 s from then.
        assert!(run(&mut o, 0, 120, t, false).is_empty());
        let found = run(&mut o, 121, 140, t, false);
        assert_eq!(found.len(), 2, "per-replica healthy and ReplicationHealthy: {found:?}");
        assert!(found[0].what.contains("read-0"), "{}", found[0].what);
    }

    #[test]
    fn a_replica_that_follows_or_is_reported_unhealthy_is_no_violation() {
        let mut o = ValidationTruth::default();
        let following = |s: u64| truth(10 + s as i64, 10 + s as i64, healthy_status());
        assert!(run(&mut o, 0, 300, following, false).is_empty());
        let mut told = healthy_status();
        told["validation"]["replicas"][0]["healthy"] = json!(false);
        told["conditions"][0]["status"] = json!("False");
        let mut o = ValidationTruth::default();
        assert!(run(&mut o, 0, 300, |s| truth(10 + s as i64, 10, told.clone()), false).is_empty());
    }

    #[test]
    fn connectivity_conditions_follow_who_answers() {
        let mut silent = healthy_status();
        silent["conditions"][2]["status"] = json!("False");
        // Every read instance answers, and ReadConnectivity says they do not.
        let t = |_: u64| truth(10, 10, silent.clone());
        let mut o = ValidationTruth::default();
        assert!(run(&mut o, 0, 60, t, false).is_empty(), "within 25 s + 35 s");
        assert_eq!(run(&mut o, 61, 62, t, false).len(), 1);
        // Not while the operator is partitioned from the instances: they do not answer it.
        let mut o = ValidationTruth::default();
        assert!(run(&mut o, 0, 200, t, true).is_empty());
        // A frozen replica that ReadConnectivity calls responding.
        let mut o = ValidationTruth::default();
        let hung = |_: u64| {
            let mut c = truth(10, 10, healthy_status());
            if let Some(p) = c.pods.get_mut(&read_pod("g", 0)) {
                p.hung = true;
            }
            c
        };
        let found = run(&mut o, 0, 62, hung, false);
        assert!(found.iter().any(|v| v.what.contains("ReadConnectivity is True")), "{found:?}");
    }

    #[test]
    fn an_async_lag_below_the_link_latency_is_a_violation() {
        let at = Duration::from_secs(1);
        let l = Duration::from_millis(300);
        assert!(judge_lag("g", at, "p", ReplicationMode::Async, l, 290).is_some());
        assert!(judge_lag("g", at, "p", ReplicationMode::Async, l, 296).is_none());
        assert!(judge_lag("g", at, "p", ReplicationMode::Sync, l, 20).is_none(), "SYNC waits for the replica");
    }

    #[test]
    fn the_latency_over_a_measurement_is_known_only_when_constant() {
        let s = Duration::from_secs;
        let windows = [("h".to_owned(), Duration::from_millis(200), s(10), s(20))];
        assert_eq!(latency_over(&windows, "h", s(11), s(12)), Some(Duration::from_millis(200)));
        assert_eq!(latency_over(&windows, "h", s(30), s(31)), Some(Duration::ZERO));
        assert_eq!(latency_over(&windows, "other", s(11), s(12)), Some(Duration::ZERO));
        assert_eq!(latency_over(&windows, "h", s(19), s(21)), None, "it ended during the measurement");
    }
}
