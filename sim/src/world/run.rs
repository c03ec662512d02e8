//! One simulated run: build the world from a seed, drive it step by step, inject faults, check
//! the oracles, heal, and check that the cluster converges to a fresh deploy of its final spec.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_memgraph::Role;
use memgraph_operator::names::{ClusterNames, Instance};
use serde::Serialize;
use serde_json::json;
use turmoil::Sim;

use super::faults::{Fault, FaultClass, Schedule};
use super::operator::{self, Gate, OPERATOR_HOST};
use super::oracles::{self, Safety};
use super::pods::Kubelet;
use super::rng::Rng;
use super::time::SimClock;
use super::trace::Trace;
use super::truth::{self, Truth};
use super::workload::{self, Ledger, SharedLedger};
use crate::apiserver::{ApiFaults, ApiServer, Key};

/// Namespace of the simulated cluster.
pub const NAMESPACE: &str = "sim";
/// Name of the simulated cluster.
pub const CLUSTER: &str = "g";
/// Simulated time per turmoil step. Network messages take 1–2 ms, so a round trip costs one
/// step; 10 ms keeps Memgraph's 1 s heartbeats and the operator's timeouts well resolved.
pub const TICK: Duration = Duration::from_millis(10);

/// Images a run switches between (the fake emulates each version).
pub const IMAGES: [&str; 3] = ["memgraph/memgraph:3.12.0", "memgraph/memgraph:3.11.0", "memgraph/memgraph:3.10.0"];

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The seed: everything else follows from it.
    pub seed: u64,
    /// Simulated time with faults.
    pub duration: Duration,
    /// Simulated time allowed for convergence after the faults stop.
    pub heal: Duration,
    /// Read replicas at the start.
    pub replicas: i32,
    /// Fault classes a run may draw from.
    pub classes: Vec<FaultClass>,
    /// Use every class in `classes` instead of a random subset.
    pub every_class: bool,
    /// Replace the generated schedule (shrinking replays a reduced one).
    pub schedule: Option<Schedule>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            duration: Duration::from_secs(300),
            heal: Duration::from_secs(180),
            replicas: 3,
            classes: FaultClass::ALL.to_vec(),
            every_class: false,
            schedule: None,
        }
    }
}

/// What a run found.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// The fault schedule that ran.
    pub schedule: Schedule,
    /// Faults actually injected, per class (a fault with no target is skipped).
    pub injected: BTreeMap<String, u64>,
    /// Simulated time covered.
    pub simulated_ms: u64,
    /// Time from the end of the faults until the cluster equalled a fresh deploy.
    pub convergence_ms: Option<u64>,
    /// Delays between a read pod becoming ready and being routable (labelled), in ms.
    pub ready_to_routable_ms: Vec<u64>,
    /// Total time routing or status claims lagged the truth, in ms.
    pub claim_lag_ms: u64,
    /// Writes acknowledged and failed, reads done and failed.
    pub workload: (usize, u64, u64, u64),
    /// Reconciles done and failed.
    pub reconciles: (u64, u64),
    /// Violations (safety during the run, liveness and lost writes at the end).
    pub violations: Vec<String>,
    /// The timeline.
    pub trace: Trace,
    /// Digest of the timeline.
    pub digest: u64,
}

enum Undo {
    Repair(String, String),
    RepairOneWay(String, String),
    Latency(String, String),
    ApiFaults,
    Operator,
}

struct World<'a> {
    sim: Sim<'a>,
    api: ApiServer,
    kubelet: Kubelet,
    gate: Arc<Gate>,
    trace: Trace,
    rng: Rng,
    windows: Vec<(Duration, Undo)>,
    operator_up: bool,
    injected: BTreeMap<String, u64>,
    last: Truth,
    ready_since: BTreeMap<String, Duration>,
    ready_to_routable: Vec<u64>,
}

/// The DNS name (turmoil host) of a pod of the simulated cluster, by the operator's own naming.
fn host(pod: &str) -> String {
    let names = ClusterNames::new(CLUSTER, NAMESPACE);
    let instance = pod
        .strip_prefix(&format!("{CLUSTER}-read-"))
        .and_then(|rest| rest.strip_suffix("-0"))
        .and_then(|n| n.parse().ok())
        .map_or(Instance::Write, Instance::Read);
    names.pod_host(instance)
}

impl World<'_> {
    fn now(&self) -> Duration {
        self.sim.elapsed()
    }

    fn note(&mut self, what: String) {
        let now = self.now();
        self.trace.record(now, what);
    }

    fn pods(&self) -> Vec<String> {
        self.api
            .list_json("Pod", NAMESPACE, &BTreeMap::new())
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    }

    fn pick<'b>(&self, items: &'b [String], pick: u64) -> Option<&'b String> {
        if items.is_empty() { None } else { items.get(usize::try_from(pick % items.len() as u64).unwrap_or(0)) }
    }

    fn edit_spec(&mut self, change: impl FnOnce(&mut serde_json::Value)) {
        self.api.update(&Key::new("MemgraphCluster", NAMESPACE, CLUSTER), |v| {
            change(&mut v["spec"]);
            let generation = v["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            v["metadata"]["generation"] = json!(generation);
        });
    }

    fn running_hosts(&self, pods: &[String]) -> Vec<String> {
        let known = self.kubelet.hosts();
        pods.iter().map(|p| host(p)).filter(|h| known.contains(h)).collect()
    }

    /// Inject one fault; returns whether it had a target.
    fn inject(&mut self, fault: &Fault) -> bool {
        let now = self.now();
        let until = now + fault.lasts;
        let pods = self.pods();
        let reads: Vec<String> = pods.iter().filter(|p| p.contains("-read-")).cloned().collect();
        let write = format!("{CLUSTER}-write-0");
        let what = match fault.class {
            FaultClass::PodKill => {
                let Some(pod) = self.pick(&pods, fault.pick).cloned() else { return false };
                if !self.kubelet.crash(&mut self.sim, NAMESPACE, &pod, &mut self.trace) {
                    return false;
                }
                format!("kill pod {pod}")
            }
            FaultClass::PodDelete => {
                let Some(pod) = self.pick(&pods, fault.pick).cloned() else { return false };
                self.api.delete_key(&Key::new("Pod", NAMESPACE, &pod));
                format!("delete pod {pod}")
            }
            FaultClass::VolumeLoss => {
                let Some(pod) = self.pick(&reads, fault.pick).cloned() else { return false };
                self.kubelet.volume(NAMESPACE, &format!("data-{pod}")).wipe();
                self.kubelet.crash(&mut self.sim, NAMESPACE, &pod, &mut self.trace);
                format!("lose the volume of {pod}")
            }
            FaultClass::PartitionOperator => {
                let hosts = self.running_hosts(&pods);
                let Some(target) = self.pick(&hosts, fault.pick).cloned() else { return false };
                self.sim.partition(OPERATOR_HOST, target.clone());
                self.windows.push((until, Undo::Repair(OPERATOR_HOST.to_owned(), target.clone())));
                format!("partition operator from {target} for {} s", fault.lasts.as_secs())
            }
            FaultClass::PartitionReplication | FaultClass::Latency => {
                let hosts = self.running_hosts(&reads);
                let Some(target) = self.pick(&hosts, fault.pick).cloned() else { return false };
                if !self.kubelet.hosts().contains(&host(&write)) {
                    return false;
                }
                if fault.class == FaultClass::Latency {
                    let latency = Duration::from_millis(20 + fault.pick % 480);
                    self.sim.set_link_latency(host(&write), target.clone(), latency);
                    self.windows.push((until, Undo::Latency(host(&write), target.clone())));
                    format!(
                        "latency {} ms between MAIN and {target} for {} s",
                        latency.as_millis(),
                        fault.lasts.as_secs()
                    )
                } else {
                    self.sim.partition(host(&write), target.clone());
                    self.windows.push((until, Undo::Repair(host(&write), target.clone())));
                    format!("partition MAIN from {target} for {} s", fault.lasts.as_secs())
                }
            }
            FaultClass::PartitionOneWay => {
                let mut ends = vec![OPERATOR_HOST.to_owned()];
                ends.extend(self.running_hosts(&pods));
                if ends.len() < 2 {
                    return false;
                }
                let a = usize::try_from(fault.pick % ends.len() as u64).unwrap_or(0);
                let b =
                    (a + 1 + usize::try_from((fault.pick >> 8) % (ends.len() as u64 - 1)).unwrap_or(0)) % ends.len();
                let (from, to) = (ends[a].clone(), ends[b].clone());
                self.sim.partition_oneway(from.clone(), to.clone());
                self.windows.push((until, Undo::RepairOneWay(from.clone(), to.clone())));
                format!("one-way partition {from} -> {to} for {} s", fault.lasts.as_secs())
            }
            FaultClass::OperatorCrash => {
                if !self.operator_up {
                    return false;
                }
                self.sim.crash(OPERATOR_HOST);
                self.operator_up = false;
                self.windows.push((until, Undo::Operator));
                format!("crash the operator for {} s", fault.lasts.as_secs())
            }
            FaultClass::OperatorCrashAfterWrite => {
                if !self.operator_up {
                    return false;
                }
                let n = 1 + fault.pick % 6;
                self.gate.crash_after(n);
                format!("crash the operator after its next {n} API writes")
            }
            FaultClass::StaleView | FaultClass::DroppedNotifications | FaultClass::ApiErrors => {
                let mut faults = ApiFaults::default();
                let what = match fault.class {
                    FaultClass::StaleView => {
                        let lag = Duration::from_millis(1_000 + fault.pick % 9_000);
                        faults.stale = Some(lag);
                        format!("serve the operator a view {} ms old", lag.as_millis())
                    }
                    FaultClass::DroppedNotifications => {
                        faults.drop_notifications = 0.5;
                        "drop half of the watch notifications".to_owned()
                    }
                    _ => {
                        faults.write_errors = 0.3;
                        "fail 30% of the operator's API writes".to_owned()
                    }
                };
                self.api.set_faults(faults, fault.pick);
                self.windows.push((until, Undo::ApiFaults));
                format!("{what} for {} s", fault.lasts.as_secs())
            }
            FaultClass::Scale => {
                let replicas = fault.pick % 5;
                self.edit_spec(|s| s["read"]["replicas"] = json!(replicas));
                format!("scale read replicas to {replicas}")
            }
            FaultClass::ModeChange => {
                let mode = ["ASYNC", "SYNC", "STRICT_SYNC"][usize::try_from(fault.pick % 3).unwrap_or(0)];
                self.edit_spec(|s| s["replication"] = json!({"mode": mode}));
                format!("change replication mode to {mode}")
            }
            FaultClass::ScheduleChange => {
                let schedule = ["*/5 * * * *", "*/10 * * * *", "*/15 * * * *", "0 * * * *"]
                    [usize::try_from(fault.pick % 4).unwrap_or(0)];
                self.edit_spec(|s| s["snapshot"] = json!({"schedule": schedule}));
                format!("change snapshot schedule to '{schedule}'")
            }
            FaultClass::StorageChange => {
                let size = ["10Gi", "20Gi", "50Gi"][usize::try_from(fault.pick % 3).unwrap_or(0)];
                self.edit_spec(|s| s["read"]["storage"] = json!({"size": size}));
                format!("change read storage to {size}")
            }
            FaultClass::ImageChange => {
                let image = IMAGES[usize::try_from(fault.pick % 3).unwrap_or(0)];
                self.edit_spec(|s| s["write"]["image"] = json!(image));
                format!("change image to {image}")
            }
        };
        *self.injected.entry(fault.class.name().to_owned()).or_insert(0) += 1;
        self.note(format!("fault: {what}"));
        true
    }

    fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Repair(a, b) => self.sim.repair(a, b),
            Undo::RepairOneWay(a, b) => self.sim.repair_oneway(a, b),
            Undo::Latency(a, b) => self.sim.set_link_latency(a, b, Duration::from_millis(1)),
            Undo::ApiFaults => self.api.set_faults(ApiFaults::default(), 0),
            Undo::Operator => {
                if !self.operator_up {
                    self.gate.reset();
                    self.sim.bounce(OPERATOR_HOST);
                    self.operator_up = true;
                    self.note("operator restarted".to_owned());
                }
            }
        }
    }

    fn expire_windows(&mut self, all: bool) {
        let now = self.now();
        let (due, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.windows).into_iter().partition(|(end, _)| all || *end <= now);
        self.windows = keep;
        for (_, undo) in due {
            self.undo(undo);
        }
    }

    /// Record what changed since the last sample: roles, labels, registrations, phase.
    fn record_changes(&mut self, truth: &Truth) {
        let now = self.now();
        let mut lines = Vec::new();
        for (name, pod) in &truth.pods {
            let before = self.last.pods.get(name);
            if before.map(|b| b.role) != Some(pod.role) {
                lines.push(format!("{name} role {:?}", pod.role));
            }
            if before.map(|b| b.label.clone()) != Some(pod.label.clone()) {
                lines.push(format!("{name} label {:?}", pod.label));
            }
            // Delay from readiness to routability, for read pods the spec wants.
            if name.contains("-read-") {
                if pod.ready && !before.is_some_and(|b| b.ready) {
                    self.ready_since.insert(name.clone(), now);
                }
                if !pod.ready {
                    self.ready_since.remove(name);
                }
                if pod.label.as_deref() == Some("replica")
                    && before.is_some_and(|b| b.label.as_deref() != Some("replica"))
                    && let Some(since) = self.ready_since.remove(name)
                {
                    self.ready_to_routable.push(u64::try_from(now.saturating_sub(since).as_millis()).unwrap_or(0));
                }
            }
        }
        for name in self.last.pods.keys() {
            if !truth.pods.contains_key(name) {
                lines.push(format!("{name} gone"));
            }
        }
        for (name, row) in &truth.rows {
            if self.last.rows.get(name).map(|r| (r.state, r.mode.clone())) != Some((row.state, row.mode.clone())) {
                lines.push(format!("registration {name} {:?} {}", row.state, row.mode));
            }
        }
        for name in self.last.rows.keys() {
            if !truth.rows.contains_key(name) {
                lines.push(format!("registration {name} dropped"));
            }
        }
        let phase = |t: &Truth| t.status.as_ref().and_then(|s| s["phase"].as_str().map(str::to_owned));
        if phase(truth) != phase(&self.last) {
            lines.push(format!("phase {}", phase(truth).unwrap_or_default()));
        }
        for line in lines {
            self.trace.record(now, line);
        }
    }
}

/// Run one simulation.
pub fn run(config: &RunConfig) -> RunReport {
    let mut rng = Rng::new(config.seed);
    let schedule = config
        .schedule
        .clone()
        .unwrap_or_else(|| Schedule::generate(&mut rng.fork(1), config.duration, &config.classes, config.every_class));
    let clock = SimClock::default();
    let api = ApiServer::new(Arc::new(clock.clone()));
    let sim = turmoil::Builder::new()
        .simulation_duration(config.duration + config.heal + Duration::from_secs(60))
        .tick_duration(TICK)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(2))
        .rng_seed(config.seed)
        .build();
    let gate = Arc::new(Gate::default());
    let ledger: SharedLedger = Arc::new(Mutex::new(Ledger::default()));
    // Every acknowledged write is durable on the MAIN (fsync per transaction), so any lost
    // acknowledged write is a real loss, not WAL batching.
    api.create(json!({
        "apiVersion": "memgraph.io/v1alpha1",
        "kind": "MemgraphCluster",
        "metadata": {"name": CLUSTER, "namespace": NAMESPACE},
        "spec": {"read": {"replicas": config.replicas}, "write": {"config": {"walFlushEveryNTx": 1}}},
    }))
    .ok();
    let kubelet = Kubelet::new(
        api.clone(),
        clock.clone(),
        vec!["--fake-replica-check-frequency-ms=1000".into()],
        rng.fork(2).next_u64(),
    );
    let mut world = World {
        sim,
        api: api.clone(),
        kubelet,
        gate: gate.clone(),
        trace: Trace::default(),
        rng: rng.fork(3),
        windows: Vec::new(),
        operator_up: true,
        injected: BTreeMap::new(),
        last: Truth::default(),
        ready_since: BTreeMap::new(),
        ready_to_routable: Vec::new(),
    };
    operator::install(&mut world.sim, api.clone(), clock.clone(), gate.clone());
    workload::install(&mut world.sim, api.clone(), ledger.clone(), world.rng.next_u64());

    let stale_views = schedule.faults.iter().any(|f| f.class == FaultClass::StaleView);
    let mut safety = Safety::default();
    let mut violations = Vec::new();
    let mut next_fault = 0;
    let mut steps: u64 = 0;
    let mut convergence = None;
    let mut healed = false;
    let end = config.duration + config.heal;
    let check_every = Duration::from_millis(100);
    let mut last_check = Duration::ZERO;
    let mut last_convergence_error = String::new();
    let mut queries_seen = 0;
    while world.now() < end {
        if let Err(e) = world.sim.step() {
            violations.push(format!("simulation error: {e}"));
            break;
        }
        steps += 1;
        let now = world.now();
        clock.set_elapsed(now);
        // Past views are only needed to serve stale reads.
        if stale_views && steps.is_multiple_of(50) {
            api.checkpoint(u64::try_from(now.as_millis()).unwrap_or(0));
        }
        if steps.is_multiple_of(10) {
            world.kubelet.sync(&mut world.sim, &mut world.trace);
        }
        if gate.frozen() && world.operator_up {
            world.sim.crash(OPERATOR_HOST);
            world.operator_up = false;
            world.note("operator crashed right after an API write".to_owned());
            let restart = now + Duration::from_millis(500 + world.rng.below(3000));
            world.windows.push((restart, Undo::Operator));
        }
        if !healed {
            while next_fault < schedule.faults.len() && schedule.faults[next_fault].at <= now {
                let fault = schedule.faults[next_fault].clone();
                world.inject(&fault);
                next_fault += 1;
            }
            world.expire_windows(false);
            if now >= config.duration {
                healed = true;
                world.expire_windows(true);
                world.gate.reset();
                if !world.operator_up {
                    world.undo(Undo::Operator);
                }
                world.note("heal: faults stop".to_owned());
            }
        } else {
            world.expire_windows(false);
        }
        if now >= last_check + check_every {
            let step = now - last_check;
            last_check = now;
            let truth = truth::sample(&api, &world.kubelet);
            world.record_changes(&truth);
            // Only the queries sent since the previous check.
            let queries: Vec<(String, String)> = gate
                .queries
                .lock()
                .map(|q| q.get(queries_seen..).map(<[_]>::to_vec).unwrap_or_default())
                .unwrap_or_default();
            queries_seen += queries.len();
            let before = safety.violations.len();
            safety.check(now, step, &truth, &queries);
            for v in &safety.violations[before..] {
                world.trace.record(now, format!("VIOLATION {v}"));
            }
            if healed && convergence.is_none() && steps.is_multiple_of(50) {
                let kubelet = &world.kubelet;
                match oracles::converged(&api, &truth, |pod| kubelet.server(pod).map(|s| s.digest())) {
                    Ok(()) => {
                        convergence = Some(now - config.duration);
                        world.note("converged: equal to a fresh deploy of the final spec".to_owned());
                    }
                    Err(e) => last_convergence_error = e,
                }
            }
            world.last = truth;
            if convergence.is_some() {
                break;
            }
        }
    }
    violations.extend(safety.violations.iter().cloned());
    if convergence.is_none() {
        violations.push(format!(
            "liveness: not converged {} s after the faults stopped: {last_convergence_error}",
            config.heal.as_secs()
        ));
    }
    // No acknowledged write may be missing from the MAIN (writes are fsynced per transaction).
    let ledger = ledger.lock().map(|l| l.clone()).unwrap_or_default();
    if let Some(main) = world.kubelet.server(&format!("{CLUSTER}-write-0")).filter(|s| s.role() == Role::Main) {
        let present: std::collections::BTreeSet<i64> = main
            .nodes()
            .iter()
            .filter(|n| n.labels.iter().any(|l| l == "W"))
            .filter_map(|n| match n.properties.get("id") {
                Some(fake_memgraph::Value::Int(id)) => Some(*id),
                _ => None,
            })
            .collect();
        let lost: Vec<i64> = ledger.acked.iter().map(|(id, _)| *id).filter(|id| !present.contains(id)).collect();
        if !lost.is_empty() {
            violations.push(format!(
                "{} acknowledged writes are missing from the MAIN, first ids {:?}",
                lost.len(),
                &lost[..lost.len().min(5)]
            ));
        }
    }
    for (name, n) in api.injected() {
        *world.injected.entry(name.to_owned()).or_insert(0) += n;
    }
    let digest = world.trace.digest();
    RunReport {
        seed: config.seed,
        schedule,
        injected: world.injected,
        simulated_ms: u64::try_from(world.sim.elapsed().as_millis()).unwrap_or(0),
        convergence_ms: convergence.map(|d| u64::try_from(d.as_millis()).unwrap_or(0)),
        ready_to_routable_ms: world.ready_to_routable,
        claim_lag_ms: u64::try_from(safety.lag_time.as_millis()).unwrap_or(0),
        workload: (ledger.acked.len(), ledger.failed_writes, ledger.reads, ledger.failed_reads),
        reconciles: (
            gate.reconciles.load(std::sync::atomic::Ordering::SeqCst),
            gate.failures.load(std::sync::atomic::Ordering::SeqCst),
        ),
        violations,
        trace: world.trace,
        digest,
    }
}
