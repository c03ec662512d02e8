//! The world of one run between steps: its parts, the faults in force, and the oracles judging
//! every cluster every 100 ms of simulated time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fake_memgraph::{DataDir, Role};
use memgraph_operator::names::{ClusterNames, Instance};
use serde_json::{Value, json};
use turmoil::Sim;

use super::clusters::{self, Setup};
use super::faults::FaultClass;
use super::inject::Undo;
use super::operator::{Gate, OPERATOR_HOSTS, SharedLog, Trigger};
use super::oracles::availability::Availability;
use super::oracles::economy::{self, Cost, Economy};
use super::oracles::routing::Routing;
use super::oracles::snapshots::{Snapshots, step_minutes};
use super::oracles::status::StatusTruth;
use super::oracles::{Conditions, Violation, ms};
use super::pods::Kubelet;
use super::report::Lanes;
use super::rng::Rng;
use super::run::NAMESPACE;
use super::time::EPOCH_SECONDS;
use super::trace::Trace;
use super::truth::{ClusterTruth, Truth, TruthSource, read_index};
use super::workload::SharedLedger;
use crate::apiserver::{ApiServer, Key};

/// Queries that only look.
fn is_probe(query: &str) -> bool {
    use memgraph_operator::memgraph::{NODE_COUNT_QUERY, PING_QUERY, TEST_READ_QUERY};
    matches!(query, "SHOW REPLICATION ROLE" | "SHOW REPLICAS" | NODE_COUNT_QUERY | PING_QUERY | TEST_READ_QUERY)
}

/// How long a person takes to act on a `MainLostData` condition.
const PERSON_REACTS: Duration = Duration::from_secs(20);
/// No snapshot tick this close before now, for a cluster to count as calm.
const TICK_QUIET: Duration = Duration::from_secs(20);

/// How long the kubelet takes to restart an operator that exited on losing the Lease.
const EXIT_RESTART: Duration = Duration::from_secs(2);

/// One operator host, as the driver sees it.
pub struct OperatorSlot {
    /// Its gate.
    pub gate: Arc<Gate>,
    /// Crashed (or exited) and not restarted yet.
    pub down: bool,
    /// When the kubelet restarts it, after it exited on losing the Lease.
    pub restart_at: Option<Duration>,
}

/// One cluster's oracles and bookkeeping.
pub struct ClusterState {
    /// How it started.
    pub setup: Setup,
    /// Its workload's ledger.
    pub ledger: SharedLedger,
    /// Routing oracle.
    pub routing: Routing,
    /// Availability oracle.
    pub availability: Availability,
    /// Status oracle.
    pub status: StatusTruth,
    /// Validation oracle.
    pub validation: super::oracles::validation::ValidationTruth,
    /// Snapshot oracle.
    pub snapshots: Snapshots,
    /// Backup oracle.
    pub backups: super::oracles::backups::Backups,
    /// Economy oracle.
    pub economy: Economy,
    /// Cost figures.
    pub cost: Cost,
    /// The write pod lost its volume during the run.
    pub volume_lost: bool,
    /// Failover oracle: the MAIN's health and the promotions sent.
    pub failover: super::oracles::failover::FailoverTruth,
    /// Every pod that was the MAIN the cluster held during the run.
    pub mains: std::collections::BTreeSet<String>,
    /// Since when the status has said the MAIN lost its data.
    pub lost_data_since: Option<Duration>,
    /// Since when the status has said a replica diverged.
    pub diverged_since: Option<Duration>,
    /// A person is restoring the write volume from this replica (stopped, pod uid when stopped).
    pub restoring: Option<(String, Value)>,
    /// When it converged after the heal phase.
    pub converged_at: Option<Duration>,
    /// Why it had not converged at the last look.
    pub not_converged: String,
}

/// The world between steps.
pub struct World<'a> {
    /// The turmoil simulation.
    pub sim: Sim<'a>,
    /// The API server.
    pub api: ApiServer,
    /// The kubelet and StatefulSet controller.
    pub kubelet: Kubelet,
    /// Where the truth is sampled.
    pub source: TruthSource,
    /// The operator hosts, in the order of [`OPERATOR_HOSTS`].
    pub operators: Vec<OperatorSlot>,
    /// What their gates recorded.
    pub log: SharedLog,
    /// The operator whose elector leads, as last seen.
    pub leading: Option<usize>,
    /// Whether any operator has led yet.
    led_yet: bool,
    /// The leadership oracle.
    pub leadership: super::oracles::leadership::Leadership,
    /// The timeline.
    pub trace: Trace,
    /// The run's own randomness (delays).
    pub rng: Rng,
    /// The clusters, in order.
    pub setups: Vec<Setup>,
    /// Per cluster state.
    pub clusters: BTreeMap<String, ClusterState>,
    /// Open fault windows: (end, index in `history`, how to undo).
    pub windows: Vec<(Duration, usize, Undo)>,
    /// `main-returns` partitions waiting for a failover's intent.
    pub heal_on_intent: Vec<super::inject::HealOnIntent>,
    /// `failover-twice`: the loss of the next MAIN, injected once a failover completed.
    pub after_failover: Vec<super::inject::SecondLoss>,
    /// Every fault: (class, start, end, cluster it concerns or `None` for all); open windows
    /// end at `Duration::MAX` until undone.
    pub history: Vec<(FaultClass, Duration, Duration, Option<String>)>,
    /// Fault bands for the picture: (start, end, words).
    pub bands: Vec<(Duration, Duration, String)>,
    /// Since when an operator leads (reconciles); `None` while none does (crashed, exited, or
    /// still waiting out the Lease of one that is gone).
    pub operator_up_since: Option<Duration>,
    /// Periods no operator led.
    pub downtime: Vec<(Duration, Duration)>,
    down_since: Option<Duration>,
    /// Faults injected per class.
    pub injected: BTreeMap<String, u64>,
    last: Truth,
    ready_since: BTreeMap<String, Duration>,
    /// Delays between a read pod becoming ready and being labelled, in ms.
    pub ready_to_routable: Vec<u64>,
    /// When each pod's Memgraph (re)started, in order.
    pub starts: Vec<(String, Duration)>,
    /// Every violation.
    pub violations: Vec<Violation>,
    /// Reconciles that returned an error.
    pub failed_reconciles: u64,
    /// Clusters whose MAIN did not answer `SHOW REPLICAS` in time when last asked (2.21–3.0 wait
    /// on unreachable replicas): nobody can verify a replica of theirs then.
    pub rows_blocked: std::collections::BTreeSet<String>,
    /// Such stretches, by cluster: (start, end), `Duration::MAX` while open.
    pub slow_main: Vec<(String, Duration, Duration)>,
    /// The picture's lanes.
    pub lanes: Lanes,
    /// Latency injected on a MAIN's link to a replica: (replica host, latency, start, end),
    /// `Duration::MAX` while it lasts.
    pub latencies: Vec<(String, Duration, Duration, Duration)>,
    /// Stretches in which a cluster's write pod answered no one (frozen, or on a lost node):
    /// (cluster, start, end), `Duration::MAX` while open.
    pub main_unseen: Vec<(String, Duration, Duration)>,
}

impl<'a> World<'a> {
    /// Assemble a world.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sim: Sim<'a>,
        api: ApiServer,
        kubelet: Kubelet,
        source: TruthSource,
        gates: Vec<Arc<Gate>>,
        log: SharedLog,
        rng: Rng,
        setups: Vec<Setup>,
        ledgers: &BTreeMap<String, SharedLedger>,
    ) -> Self {
        let clusters = setups
            .iter()
            .map(|s| {
                let state = ClusterState {
                    setup: s.clone(),
                    ledger: ledgers[&s.name].clone(),
                    routing: Routing::default(),
                    availability: Availability::default(),
                    status: StatusTruth::default(),
                    validation: Default::default(),
                    snapshots: Snapshots::default(),
                    economy: Economy::default(),
                    cost: Cost::default(),
                    volume_lost: false,
                    failover: Default::default(),
                    mains: Default::default(),
                    backups: Default::default(),
                    lost_data_since: None,
                    diverged_since: None,
                    restoring: None,
                    converged_at: None,
                    not_converged: String::new(),
                };
                (s.name.clone(), state)
            })
            .collect();
        Self {
            sim,
            api,
            kubelet,
            source,
            operators: gates.into_iter().map(|gate| OperatorSlot { gate, down: false, restart_at: None }).collect(),
            log,
            leading: None,
            led_yet: false,
            leadership: Default::default(),
            trace: Trace::default(),
            rng,
            setups,
            clusters,
            windows: Vec::new(),
            heal_on_intent: Vec::new(),
            after_failover: Vec::new(),
            history: Vec::new(),
            bands: Vec::new(),
            operator_up_since: Some(Duration::ZERO),
            downtime: Vec::new(),
            down_since: None,
            injected: BTreeMap::new(),
            last: Truth::default(),
            ready_since: BTreeMap::new(),
            ready_to_routable: Vec::new(),
            starts: Vec::new(),
            violations: Vec::new(),
            failed_reconciles: 0,
            rows_blocked: std::collections::BTreeSet::new(),
            slow_main: Vec::new(),
            latencies: Vec::new(),
            main_unseen: Vec::new(),
            lanes: Lanes::default(),
        }
    }

    /// Simulated time.
    pub fn now(&self) -> Duration {
        self.sim.elapsed()
    }

    /// Add a line to the timeline.
    pub fn note(&mut self, what: String) {
        let now = self.now();
        self.trace.record(now, what);
    }

    /// The cluster a fault with random number `pick` targets.
    pub fn cluster_for(&self, pick: u64) -> String {
        let i = usize::try_from(pick % self.setups.len().max(1) as u64).unwrap_or(0);
        self.setups.get(i).map(|s| s.name.clone()).unwrap_or_default()
    }

    /// The pods of a cluster, by name.
    pub fn pods_of(&self, cluster: &str) -> Vec<String> {
        self.source.cluster(cluster).pods.keys().cloned().collect()
    }

    /// The DNS name (turmoil host) of a pod, by the operator's own naming.
    pub fn host(&self, pod: &str) -> String {
        let cluster =
            self.setups.iter().map(|s| s.name.as_str()).find(|c| pod.starts_with(&format!("{c}-"))).unwrap_or("");
        let names = ClusterNames::new(cluster, NAMESPACE);
        let instance = read_index(cluster, pod).map_or(Instance::Write, Instance::Read);
        names.pod_host(instance)
    }

    /// Hosts of `pods` that run now.
    pub fn running_hosts(&self, pods: &[String]) -> Vec<String> {
        let known = self.kubelet.hosts();
        pods.iter().map(|p| self.host(p)).filter(|h| known.contains(h)).collect()
    }

    /// The spec of a cluster.
    pub fn spec_of(&self, cluster: &str) -> Value {
        self.api
            .get_json(&Key::new("MemgraphCluster", NAMESPACE, cluster))
            .map(|c| c["spec"].clone())
            .unwrap_or_default()
    }

    /// Edit a cluster's spec as `kubectl edit` would (a new generation).
    pub fn edit_spec(&mut self, cluster: &str, change: impl FnOnce(&mut Value)) {
        self.api.update(&Key::new("MemgraphCluster", NAMESPACE, cluster), |v| {
            change(&mut v["spec"]);
            let generation = v["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            v["metadata"]["generation"] = json!(generation);
        });
    }

    /// A person asks for a switchover to `value` (`memgraph.io/switchover`).
    pub fn request_switchover(&mut self, cluster: &str, value: &str) {
        self.api.update(&Key::new("MemgraphCluster", NAMESPACE, cluster), |v| {
            v["metadata"]["annotations"][memgraph_operator::reconcile::plan::switchover::ANNOTATION] = json!(value);
        });
    }

    /// At the heal, a person moves writes back to the write pod where a requested switchover
    /// moved them away (a failover is moved back by `spec.failover.switchBack`).
    pub fn switch_back_requested(&mut self) {
        let names: Vec<String> = self.clusters.keys().cloned().collect();
        for cluster in names {
            let Some(object) = self.api.get_json(&Key::new("MemgraphCluster", NAMESPACE, &cluster)) else { continue };
            let f = &object["status"]["failover"];
            // A request not yet acted on is replaced by this one.
            let pending = super::oracles::claims::pending_switchover(&object).is_some();
            // Where the MAIN is, or is being moved to, by a switchover.
            let (kind, main) = if f["intent"].is_null() {
                (&f["last"]["kind"], &f["main"])
            } else {
                (&f["intent"]["kind"], &f["intent"]["to"])
            };
            if pending || kind == "Switchover" && main != "write" {
                self.request_switchover(&cluster, "write/heal");
                self.note(format!("[{cluster}] a person requests a switchover back to the write pod"));
            }
        }
    }

    /// The operator that leads now, if one does.
    pub fn leader(&self) -> Option<usize> {
        self.operators.iter().position(|o| !o.down && o.gate.leading())
    }

    /// Crash operator host `i`.
    pub fn crash_operator(&mut self, i: usize) {
        self.sim.crash(OPERATOR_HOSTS[i]);
        self.operators[i].down = true;
        self.follow_leadership();
    }

    /// Restart operator host `i` if it is down.
    pub fn restart_operator(&mut self, i: usize) {
        let Some(slot) = self.operators.get_mut(i).filter(|o| o.down) else { return };
        slot.gate.reset();
        slot.down = false;
        slot.restart_at = None;
        self.sim.bounce(OPERATOR_HOSTS[i]);
        self.note(format!("{} restarted", OPERATOR_HOSTS[i]));
    }

    /// Restart every operator host that is down, and cancel pending crashes (the heal).
    pub fn restart_operators(&mut self) {
        for i in 0..self.operators.len() {
            self.operators[i].gate.cancel_crash();
            self.restart_operator(i);
        }
    }

    /// Follow the election: a process that exited (it lost the Lease, or stopped on SIGTERM) is
    /// gone and restarted
    /// after [`EXIT_RESTART`], as the kubelet restarts a container; the operator counts as up
    /// while one of them leads.
    pub fn follow_leadership(&mut self) {
        let now = self.now();
        for (i, host) in OPERATOR_HOSTS.into_iter().enumerate() {
            let slot = &mut self.operators[i];
            if !slot.down && slot.gate.exited() {
                slot.down = true;
                slot.restart_at = Some(now + EXIT_RESTART);
                let why = if slot.gate.terminating() { "stopped on SIGTERM" } else { "lost the lease and exited" };
                self.sim.crash(host);
                self.note(format!("{host} {why}"));
            }
            if self.operators[i].restart_at.is_some_and(|at| at <= now) {
                self.restart_operator(i);
            }
        }
        let leader = self.leader();
        if leader == self.leading {
            return;
        }
        match leader {
            Some(i) => {
                if let Some(since) = self.down_since.take() {
                    self.downtime.push((since, now));
                }
                // The first leader has run since the start: the election takes no time then.
                if std::mem::replace(&mut self.led_yet, true) {
                    self.operator_up_since = Some(now);
                }
                self.note(format!("{} leads", OPERATOR_HOSTS[i]));
            }
            None => {
                self.operator_up_since = None;
                self.down_since = Some(now);
                self.note("no operator leads".to_owned());
            }
        }
        self.leading = leader;
    }

    /// The oracles' view of faults and operator uptime, for one cluster.
    pub fn conditions(&self, cluster: &str) -> Conditions {
        Conditions {
            windows: self
                .history
                .iter()
                .filter(|(_, _, _, target)| target.as_deref().is_none_or(|t| t == cluster))
                .map(|(class, start, end, _)| (*class, *start, *end))
                .collect(),
            operator_up_since: self.operator_up_since,
            slow_main: self.slow_main.iter().filter(|(c, _, _)| c == cluster).map(|(_, s, e)| (*s, *e)).collect(),
        }
    }

    /// Stretches the operator's lapses are not judged in, for `cluster`: it was down, or the
    /// cluster's MAIN answered no one (then only the MAIN could say a replica is behind, and the
    /// operator keeps a label it has no evidence against), merged and in order.
    pub fn excused(&self, cluster: &str) -> Vec<(Duration, Duration)> {
        let mut all: Vec<(Duration, Duration)> = self
            .downtime
            .iter()
            .copied()
            .chain(self.main_unseen.iter().filter(|(c, _, _)| c == cluster).map(|(_, s, e)| (*s, *e)))
            .collect();
        all.sort();
        let mut merged: Vec<(Duration, Duration)> = Vec::new();
        for (s, e) in all {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    /// Whether the world itself makes the cluster's spec invalid now: an invalid-spec fault is
    /// in force, or STRICT_SYNC is asked of a release without it.
    pub fn spec_invalid(&self, cluster: &str, truth: &ClusterTruth) -> bool {
        let injected = self.history.iter().any(|(class, _, end, target)| {
            *class == FaultClass::InvalidSpec && *end == Duration::MAX && target.as_deref() == Some(cluster)
        });
        let spec = truth.spec.as_ref();
        let strict = spec.and_then(|s| s["replication"]["mode"].as_str()) == Some("STRICT_SYNC");
        let version = spec.and_then(|s| s["write"]["image"].as_str()).and_then(clusters::version_of);
        injected || (strict && version.is_some_and(|v| !clusters::has_strict_sync(v)))
    }

    fn quiet(&self, cluster: &str, truth: &ClusterTruth, now: Duration) -> bool {
        let faults_quiet = self.history.iter().all(|(_, _, end, target)| {
            target.as_deref().is_some_and(|t| t != cluster) || end.saturating_add(economy::QUIET) < now
        });
        let step = truth.spec.as_ref().and_then(|s| s["snapshot"]["schedule"].as_str()).and_then(step_minutes);
        let since_tick = step.map(|step| {
            let t = u64::try_from(EPOCH_SECONDS).unwrap_or(0) + now.as_secs();
            Duration::from_secs(t % (step * 60)) + Duration::from_nanos(u64::from(now.subsec_nanos()))
        });
        faults_quiet && self.operator_up_since.is_some() && since_tick.is_none_or(|d| d >= TICK_QUIET)
    }

    /// Record what changed since the last sample: roles, labels, registrations, phase.
    fn record_changes(&mut self, truth: &Truth) {
        let now = self.now();
        let mut lines = Vec::new();
        for (cluster, c) in &truth.clusters {
            let before = self.last.clusters.get(cluster).cloned().unwrap_or_default();
            for (name, pod) in &c.pods {
                let was = before.pods.get(name);
                if was.map(|b| b.role) != Some(pod.role) {
                    lines.push(format!("{name} role {:?} ({} nodes, ts {})", pod.role, pod.nodes, pod.ts));
                    if was.is_none_or(|b| b.role.is_none()) && pod.role.is_some() {
                        self.starts.push((name.clone(), now));
                    }
                }
                if was.map(|b| b.label.clone()) != Some(pod.label.clone()) {
                    lines.push(format!("{name} label {:?}", pod.label));
                }
                if read_index(cluster, name).is_some() {
                    if pod.ready && !was.is_some_and(|b| b.ready) {
                        self.ready_since.insert(name.clone(), now);
                    }
                    if !pod.ready {
                        self.ready_since.remove(name);
                    }
                    if pod.label.as_deref() == Some("replica")
                        && was.is_some_and(|b| b.label.as_deref() != Some("replica"))
                        && let Some(since) = self.ready_since.remove(name)
                    {
                        self.ready_to_routable.push(ms(now.saturating_sub(since)));
                    }
                }
            }
            for name in before.pods.keys().filter(|n| !c.pods.contains_key(*n)) {
                lines.push(format!("{name} gone"));
            }
            // `ready` and `replicating` alternate with every write: only real changes count.
            let state =
                |r: &super::truth::RowTruth| if r.healthy() { "in sync".to_owned() } else { format!("{:?}", r.state) };
            for (name, row) in &c.rows {
                if before.rows.get(name).map(|r| (state(r), r.mode.clone())) != Some((state(row), row.mode.clone())) {
                    lines.push(format!("[{cluster}] registration {name} {} {}", state(row), row.mode));
                }
            }
            for name in before.rows.keys().filter(|n| !c.rows.contains_key(*n)) {
                lines.push(format!("[{cluster}] registration {name} dropped"));
            }
            let phase = |t: &ClusterTruth| t.status.as_ref().and_then(|s| s["phase"].as_str().map(str::to_owned));
            if phase(c) != phase(&before) {
                lines.push(format!("[{cluster}] phase {}", phase(c).unwrap_or_default()));
            }
            // Condition changes, with the words a person would read.
            let conditions = |t: &ClusterTruth| -> Vec<(String, String, String, String)> {
                t.status
                    .as_ref()
                    .and_then(|s| s["conditions"].as_array())
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
                        (text("type"), text("status"), text("reason"), text("message"))
                    })
                    .collect()
            };
            let old = conditions(&before);
            for (type_, status, reason, message) in conditions(c) {
                let same = old.iter().any(|(t, s, r, _)| *t == type_ && *s == status && *r == reason);
                if !same {
                    lines.push(format!("[{cluster}] condition {type_}={status} {reason}: {message}"));
                }
            }
        }
        for line in lines {
            self.trace.record(now, line);
        }
    }

    fn violate(&mut self, v: Violation) {
        self.trace.record(Duration::from_millis(v.at_ms), format!("VIOLATION {v}"));
        self.lanes.violation(&v);
        self.violations.push(v);
    }

    /// Judge what the gate recorded since the last sample.
    fn judge_gate(&mut self, now: Duration) {
        let log = super::operator::drain(&self.log);
        for v in self.leadership.judge(&log) {
            self.violate(v);
        }
        for (at_ms, what) in std::mem::take(&mut self.leadership.notes) {
            self.trace.record(Duration::from_millis(at_ms), what);
        }
        self.failed_reconciles += log.failed_reconciles.len() as u64;
        for (cluster, at_ms, timed_out) in &log.rows_answers {
            let at = Duration::from_millis(*at_ms);
            if *timed_out {
                if self.rows_blocked.insert(cluster.clone()) {
                    self.slow_main.push((cluster.clone(), at, Duration::MAX));
                }
            } else if self.rows_blocked.remove(cluster)
                && let Some(w) =
                    self.slow_main.iter_mut().rev().find(|(c, _, end)| c == cluster && *end == Duration::MAX)
            {
                w.2 = at;
            }
        }
        // The operator's own changes go into the timeline, in the order it made them.
        let mut acts: Vec<(u64, String)> = log
            .writes
            .iter()
            .filter(|w| !w.what.starts_with("patch status") || !w.bookkeeping)
            .map(|w| (w.at_ms, format!("[{}] {}: {}", w.cluster, OPERATOR_HOSTS[w.by], w.what)))
            .chain(log.queries.iter().filter(|q| !is_probe(&q.query)).map(|q| {
                (
                    q.at_ms,
                    format!(
                        "[{}] {}: {} on {}",
                        q.cluster,
                        OPERATOR_HOSTS[q.by],
                        q.query,
                        q.address.split('.').next().unwrap_or("")
                    ),
                )
            }))
            .collect();
        acts.sort_by_key(|(at, _)| *at);
        for (at, what) in acts {
            self.trace.record(Duration::from_millis(at), what);
        }
        let mut found = Vec::new();
        for lag in &log.lags {
            let host = self.host(&lag.pod);
            let (start, end) = (Duration::from_millis(lag.start_ms), Duration::from_millis(lag.end_ms));
            let Some(latency) = super::oracles::validation::latency_over(&self.latencies, &host, start, end) else {
                continue;
            };
            if let Some(lag_ms) = lag.lag_ms {
                found.extend(super::oracles::validation::judge_lag(
                    &lag.cluster,
                    end,
                    &lag.pod,
                    lag.mode,
                    latency,
                    lag_ms,
                ));
            }
        }
        for record in &log.false_writes {
            found.push(Violation {
                at_ms: record.at_ms,
                cluster: record.cluster.clone(),
                what: format!("the operator wrote a claim that was already false: {}", record.what),
            });
        }
        // Whether a fault concerning the cluster was in force within the quiet time before `at`
        // (the calm state itself is only sampled every few hundred milliseconds).
        let disturbed = |cluster: &str, at: Duration| {
            self.history.iter().any(|(_, start, end, target)| {
                target.as_deref().is_none_or(|t| t == cluster)
                    && *start <= at
                    && end.saturating_add(economy::QUIET) >= at
            })
        };
        let disturbed_at: BTreeMap<(String, u64), bool> = log
            .writes
            .iter()
            .map(|w| (w.cluster.clone(), w.at_ms))
            .chain(log.reconciles.iter().map(|r| (r.cluster.clone(), r.start_ms)))
            .map(|(c, at)| ((c.clone(), at), disturbed(&c, Duration::from_millis(at))))
            .collect();
        for (name, c) in &mut self.clusters {
            let queries: Vec<(String, String)> = log
                .queries
                .iter()
                .filter(|q| q.cluster == *name)
                .map(|q| (q.address.clone(), q.query.clone()))
                .collect();
            found.extend(c.routing.queries(now, name, &queries, c.setup.failover));
            for q in log.queries.iter().filter(|q| q.cluster == *name) {
                let pod = q.address.split('.').next().unwrap_or_default().to_owned();
                if q.query == "SET REPLICATION ROLE TO MAIN" {
                    c.failover.promotions.push((q.at_ms, pod));
                } else if q.query.starts_with("SET REPLICATION ROLE TO REPLICA") {
                    c.failover.demotions.push((q.at_ms, pod));
                }
            }
            let delay = Duration::from_secs(super::clusters::FAILOVER_DELAY_SECONDS);
            found.extend(c.failover.judge_promotions(name, delay));
            c.snapshots.issued += queries.iter().filter(|(_, q)| q == "CREATE SNAPSHOT").count() as u64;
            for write in log.writes.iter().filter(|w| w.cluster == *name) {
                c.cost.api_writes += 1;
                if disturbed_at.get(&(name.clone(), write.at_ms)).copied().unwrap_or(true) {
                    continue;
                }
                if !write.bookkeeping && c.economy.is_calm() {
                    c.cost.calm_writes += 1;
                }
                found.extend(c.economy.api_write(
                    Duration::from_millis(write.at_ms),
                    name,
                    &write.what,
                    write.bookkeeping,
                ));
            }
            for r in log.reconciles.iter().filter(|r| r.cluster == *name) {
                c.cost.reconciles += 1;
                let own = r.trigger == Trigger::OwnWrite;
                if own {
                    c.cost.self_triggered += 1;
                }
                // A status write of scheduled work (a claimed tick, a validation check's start
                // and result) is seen by the operator's own watch like any other: the reconcile
                // it triggers is the cost of the schedule, counted above, not churn.
                let after_bookkeeping = log
                    .writes
                    .iter()
                    .rfind(|w| w.cluster == *name && w.at_ms <= r.start_ms)
                    .is_some_and(|w| w.bookkeeping);
                if !disturbed_at.get(&(name.clone(), r.start_ms)).copied().unwrap_or(true) {
                    found.extend(c.economy.reconcile(
                        Duration::from_millis(r.start_ms),
                        name,
                        own && !after_bookkeeping,
                    ));
                }
            }
        }
        for v in found {
            self.violate(v);
        }
    }

    /// Sample the truth and run every continuous oracle.
    pub fn check(&mut self, now: Duration, step: Duration) {
        let truth = self.source.sample();
        self.record_changes(&truth);
        self.judge_gate(now);
        self.reapply_blocks();
        let names: Vec<String> = self.setups.iter().map(|s| s.name.clone()).collect();
        let mut found = Vec::new();
        for name in &names {
            let Some(c) = truth.clusters.get(name) else { continue };
            let unseen = c.write(name).is_some_and(super::truth::PodTruth::unreachable);
            let open = self.main_unseen.iter_mut().rev().find(|(n, _, end)| n == name && *end == Duration::MAX);
            match (unseen, open) {
                (true, None) => self.main_unseen.push((name.clone(), now, Duration::MAX)),
                (false, Some(w)) => w.2 = now,
                _ => {}
            }
            let cond = self.conditions(name);
            let invalid = self.spec_invalid(name, c);
            let quiet = self.quiet(name, c, now);
            let active = self
                .history
                .iter()
                .any(|(_, _, end, t)| *end == Duration::MAX && t.as_deref().is_none_or(|t| t == name));
            let operator_up = self.operator_up_since.is_some();
            let operator_cut_off = self.history.iter().any(|(class, _, end, t)| {
                matches!(
                    class,
                    FaultClass::PartitionOperator
                        | FaultClass::PartitionOneWay
                        | FaultClass::MainPartitionOperator
                        | FaultClass::MainPartitionAll
                        | FaultClass::MainReturns
                ) && *end == Duration::MAX
                    && t.as_deref().is_none_or(|t| t == name)
            });
            let Some(state) = self.clusters.get_mut(name) else { continue };
            state.failover.sample(now, name, c, operator_cut_off);
            state.mains.insert(c.main_pod(name));
            found.extend(state.routing.check(&cond, now, step, name, c));
            found.extend(state.availability.check(&cond, now, step, name, c, self.rows_blocked.contains(name)));
            found.extend(state.status.check(&cond, now, step, name, c, invalid));
            found.extend(state.validation.check(&cond, now, step, name, c, operator_cut_off));
            let enabled = c.spec.as_ref().is_none_or(|s| s["snapshot"]["enabled"].as_bool() != Some(false));
            // Every tick of the schedule in force counts (a tick missed while the spec was invalid
            // may be caught up after); only ticks with nothing in the way must be taken.
            let schedule = c.spec.as_ref().and_then(|s| s["snapshot"]["schedule"].as_str()).filter(|_| enabled);
            // A tick that comes while a backup uploads waits for it (two never run at once).
            let backup_running = c.status.as_ref().is_some_and(|s| !s["backups"]["running"].is_null());
            let takeable = c.write_usable(name) && !invalid && operator_up && !active && !backup_running;
            state.snapshots.sample(now.saturating_sub(step), now, schedule, takeable);
            state.economy.sample(now, step, name, c, quiet);
            if state.setup.backups {
                let prefix = format!("backups/{name}");
                found.extend(state.backups.check(
                    now,
                    name,
                    c.status.as_ref(),
                    &self.kubelet.store,
                    &prefix,
                    self.operator_up_since,
                ));
            }
            if let Ok(mut ledger) = state.ledger.lock() {
                ledger.protected_now = c.sync_protected();
            }
            let lost =
                c.status.as_ref().and_then(|s| s["conditions"].as_array()).is_some_and(|cs| {
                    cs.iter().any(|c| c["type"] == "DataDivergence" && c["reason"] == "MainLostData")
                });
            state.lost_data_since = if lost { state.lost_data_since.or(Some(now)) } else { None };
            self.lanes.sample(now, name, c, &state.ledger);
        }
        for v in found {
            self.violate(v);
        }
        self.restore_lost_mains(now, &truth);
        self.wipe_diverged(now, &truth);
        self.last = truth;
    }

    /// A NetworkPolicy outlives the pod: a blocked port stays blocked across restarts.
    fn reapply_blocks(&mut self) {
        for (_, _, undo) in &self.windows {
            if let Undo::Unblock(pod) = undo
                && let Some(server) = self.source.server(pod)
                && !server.is_replication_blocked()
            {
                server.set_replication_blocked(true);
            }
        }
    }

    /// What a person does about `ReplicaDiverged`, as the condition tells them (after a failover
    /// an old MAIN may hold writes its clients sent after the promotion, which no acknowledged
    /// write depends on): delete the diverged replica's volume and pod, so it starts empty and
    /// replicates from the MAIN.
    fn wipe_diverged(&mut self, now: Duration, truth: &Truth) {
        let names: Vec<String> = self.clusters.keys().cloned().collect();
        for cluster in names {
            let Some(c) = truth.clusters.get(&cluster) else { continue };
            let Some(state) = self.clusters.get_mut(&cluster) else { continue };
            let diverged =
                c.status.as_ref().and_then(|s| s["conditions"].as_array()).is_some_and(|cs| {
                    cs.iter().any(|c| c["type"] == "DataDivergence" && c["reason"] == "ReplicaDiverged")
                });
            state.diverged_since = if diverged { state.diverged_since.or(Some(now)) } else { None };
            if state.diverged_since.is_none_or(|s| now < s + PERSON_REACTS) {
                continue;
            }
            state.diverged_since = None;
            let names = ClusterNames::new(cluster.clone(), NAMESPACE);
            // The status names them (a refused registration leaves a row with no state to see).
            let pods: Vec<String> = c
                .status
                .as_ref()
                .and_then(|s| s["validation"]["replicas"].as_array())
                .into_iter()
                .flatten()
                .filter(|r| r["message"].as_str().is_some_and(|m| m.contains("diverged from the MAIN")))
                .filter_map(|r| r["name"].as_str().and_then(Instance::from_status_name).map(|i| names.pod(i)))
                .filter(|pod| !self.kubelet.on_lost_node(pod))
                .collect();
            for pod in pods {
                self.kubelet.volume(NAMESPACE, &format!("data-{pod}")).wipe();
                self.kubelet.crash(&mut self.sim, NAMESPACE, &pod, &mut self.trace);
                self.note(format!("a person deletes the volume of the diverged replica {pod} and restarts it"));
            }
        }
    }

    /// What a person does about `MainLostData`, as the condition tells them: stop the most
    /// advanced replica (its snapshot on exit then holds all it has), copy its data (not its
    /// replication state) into the write pod's volume, and restart the write pod.
    fn restore_lost_mains(&mut self, now: Duration, truth: &Truth) {
        let names: Vec<String> = self.clusters.keys().cloned().collect();
        for cluster in names {
            let Some(c) = truth.clusters.get(&cluster) else { continue };
            let Some(state) = self.clusters.get(&cluster) else { continue };
            // The MAIN that lost its data: the write pod, or the replica a failover promoted.
            let main = c.main_pod(&cluster);
            match state.restoring.clone() {
                // A person cannot restart a pod on a node that does not answer.
                None if state.volume_lost
                    && state.lost_data_since.is_some_and(|s| now >= s + PERSON_REACTS)
                    && !self.kubelet.on_lost_node(&main) =>
                {
                    let best = c
                        .pods
                        .iter()
                        .filter(|(name, p)| **name != main && p.role == Some(Role::Replica) && p.nodes > 0)
                        .max_by_key(|(name, p)| (p.ts, std::cmp::Reverse((*name).clone())))
                        .map(|(name, _)| name.clone());
                    let Some(source) = best else { continue };
                    let uid =
                        self.api.with_object(&Key::new("Pod", NAMESPACE, &source), |p| p["metadata"]["uid"].clone());
                    self.api.delete_key(&Key::new("Pod", NAMESPACE, &source));
                    let seen: Vec<String> = c
                        .pods
                        .iter()
                        .map(|(n, p)| format!("{n}: {:?} {} nodes ts {}", p.role, p.nodes, p.ts))
                        .collect();
                    self.note(format!(
                        "a person stops {source} to copy its data into the lost write volume (seen: {})",
                        seen.join(", ")
                    ));
                    if let Some(state) = self.clusters.get_mut(&cluster) {
                        state.restoring = Some((source, uid.unwrap_or_default()));
                    }
                }
                Some(_) if self.kubelet.on_lost_node(&main) => {}
                Some((source, uid)) => {
                    // Copied once the stopped pod is gone (or already replaced).
                    let current =
                        self.api.with_object(&Key::new("Pod", NAMESPACE, &source), |p| p["metadata"]["uid"].clone());
                    if current.as_ref() == Some(&uid) {
                        continue;
                    }
                    let write = main.clone();
                    let from = self.kubelet.volume(NAMESPACE, &format!("data-{source}")).snapshot();
                    let to = self.kubelet.volume(NAMESPACE, &format!("data-{write}"));
                    self.kubelet.crash(&mut self.sim, NAMESPACE, &write, &mut self.trace);
                    to.wipe();
                    for (path, bytes) in from.iter().filter(|(p, _)| !p.starts_with("replication")) {
                        if let Err(e) = to.write(path, bytes) {
                            self.note(format!("restore of {write}: cannot write {path}: {e}"));
                        }
                    }
                    if let Some(state) = self.clusters.get_mut(&cluster) {
                        state.restoring = None;
                        state.lost_data_since = None;
                    }
                    let ids = self.source.server(&source).map(|s| s.node_count());
                    self.note(format!(
                        "a person copies {source}'s data into the volume of {write} and restarts it ({:?}; the new {source} holds {ids:?} nodes)",
                        from.iter().map(|(p, b)| (p.clone(), b.len())).collect::<Vec<_>>()
                    ));
                }
                None => {}
            }
        }
    }

    /// After the heal phase: which clusters equal a fresh deploy of their final spec.
    pub fn check_convergence(&mut self, now: Duration, heal_started: Duration) -> bool {
        let truth = self.source.sample();
        let mut all = true;
        let names: Vec<String> = self.setups.iter().map(|s| s.name.clone()).collect();
        for name in names {
            let Some(c) = truth.clusters.get(&name) else { continue };
            let source = self.source.clone();
            let failed_over = self.clusters.get(&name).is_some_and(|s| s.mains.len() > 1);
            let result = super::oracles::convergence::converged(&self.api, &name, c, failed_over, |pod| {
                source.server(pod).map(|s| s.digest())
            });
            let Some(state) = self.clusters.get_mut(&name) else { continue };
            match result {
                Ok(()) => {
                    if state.converged_at.is_none() {
                        state.converged_at = Some(now.saturating_sub(heal_started));
                        self.trace
                            .record(now, format!("[{name}] converged: equal to a fresh deploy of the final spec"));
                    }
                }
                Err(e) => {
                    // A converged cluster that falls apart again counts as not converged.
                    if state.converged_at.is_some() {
                        self.trace.record(now, format!("[{name}] no longer converged: {e}"));
                    }
                    state.converged_at = None;
                    state.not_converged = e;
                    all = false;
                }
            }
        }
        all
    }

    /// Whether an operator is frozen after its Nth write: crash it and schedule its restart.
    pub fn crash_if_frozen(&mut self) {
        for (i, host) in OPERATOR_HOSTS.into_iter().enumerate() {
            let slot = &self.operators[i];
            if slot.down || !slot.gate.frozen() || slot.gate.exited() {
                continue;
            }
            let step = slot.gate.take_crash_step();
            self.crash_operator(i);
            match step {
                Some(step) => self.note(format!("{host} crashed right after a failover step: {step}")),
                None => self.note(format!("{host} crashed right after an API write")),
            }
            let restart = self.now() + Duration::from_millis(500 + self.rng.below(3000));
            self.history.push((FaultClass::OperatorCrashAfterWrite, self.now(), Duration::MAX, None));
            self.windows.push((restart, self.history.len() - 1, Undo::Operator(i)));
        }
    }
}
