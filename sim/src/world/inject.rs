//! Injecting faults into the world and undoing them when their window ends. Targets are picked
//! when a fault fires, from what exists then, by the fault's own random number.

use std::time::Duration;

use serde_json::{Value, json};

use super::clusters;
use super::driver::World;
use super::faults::{Fault, FaultClass};
use super::operator::OPERATOR_HOSTS;
use super::pods::Flap;
use super::run::NAMESPACE;
use super::truth::write_pod;
use super::workload;
use crate::apiserver::{ApiFaults, Key};
use memgraph_operator::backup::store::MemFaults;

/// Both operator hosts, as one end of a one-way partition.
const OPERATOR: &str = "operator";

/// A `main-returns` partition, ended soon after the cluster's failover intent is recorded.
#[derive(Debug, Clone)]
pub struct HealOnIntent {
    /// Its window (index in `history`).
    pub window: usize,
    /// The cluster.
    pub cluster: String,
    /// The MAIN cut off.
    pub pod: String,
    /// How long after the intent it ends.
    pub after: Duration,
    /// When the intent was first seen.
    pub intent_at: Option<Duration>,
}

/// The second loss of `failover-twice`: the next MAIN's node, `after` the first failover
/// completed.
#[derive(Debug, Clone)]
pub struct SecondLoss {
    /// The cluster.
    pub cluster: String,
    /// Its failover generation when the first MAIN was lost.
    pub generation: i64,
    /// The loss to inject (a `main-node-loss`).
    pub fault: Fault,
    /// How long after the first failover completed.
    pub after: Duration,
    /// When the first failover was seen completed.
    pub completed_at: Option<Duration>,
}

/// How to end a fault window.
#[derive(Debug, Clone)]
pub enum Undo {
    /// Heal a two-way partition.
    Repair(String, String),
    /// Heal a one-way partition.
    RepairOneWay(String, String),
    /// Deliver what a held link kept back.
    Release(String, String),
    /// Remove link latency.
    Latency(String, String),
    /// Stop the API server's faults.
    ApiFaults,
    /// Restart an operator host (by index).
    Operator(usize),
    /// Heal an operator's link to the API server (by index).
    Uncut(usize),
    /// Several at once.
    All(Vec<Undo>),
    /// Resume a frozen pod.
    Unhang(String),
    /// Unblock a pod's replication port.
    Unblock(String),
    /// Stop a pod's readiness flapping.
    Unflap(String),
    /// A pod partitioned from everyone is reachable again (for the truth).
    Reconnect(String),
    /// Let the admission policy accept changes to the object again.
    Admit(Key),
    /// Put back a spec field the invalid-spec fault changed.
    RestoreSpec {
        /// The cluster.
        cluster: String,
        /// Path of the field under `spec`.
        path: Vec<&'static str>,
        /// Its value before (`Null`: absent).
        value: Value,
    },
    /// A lost node answers again, or is deleted (its pod is then recreated elsewhere).
    NodeBack {
        /// The pod on it.
        pod: String,
        /// Its host.
        host: String,
        /// The other hosts it was cut off from.
        peers: Vec<String>,
        /// The node is deleted rather than coming back.
        gone: bool,
    },
    /// The object store works again.
    StoreHealthy,
    /// Nothing to undo.
    Nothing,
}

fn field<'a>(value: &'a mut Value, path: &[&str]) -> &'a mut Value {
    path.iter().fold(value, |v, key| &mut v[*key])
}

/// Whether ending `undo` changes the links of `host`.
fn touches(undo: &Undo, host: &str) -> bool {
    match undo {
        Undo::Repair(a, b) | Undo::RepairOneWay(a, b) | Undo::Release(a, b) => a == host || b == host,
        Undo::NodeBack { host: h, .. } => h == host,
        Undo::All(undos) => undos.iter().any(|u| touches(u, host)),
        _ => false,
    }
}

impl World<'_> {
    fn pick(items: &[String], pick: u64) -> Option<&String> {
        if items.is_empty() { None } else { items.get(usize::try_from(pick % items.len() as u64).unwrap_or(0)) }
    }

    /// Whether an open window cuts the links of `host` (a partition or a lost node): the links a
    /// second one would cut are healed when the first ends, so only one at a time.
    fn links_held(&self, host: &str) -> bool {
        self.windows.iter().any(|(_, _, undo)| touches(undo, host))
    }

    /// Inject one fault; returns whether it had a target.
    pub fn inject(&mut self, fault: &Fault) -> bool {
        let now = self.now();
        let until = now + fault.lasts;
        let cluster = self.cluster_for(fault.pick);
        let pick = fault.pick >> 4;
        let pods: Vec<String> = self.pods_of(&cluster).into_iter().filter(|p| !self.kubelet.on_lost_node(p)).collect();
        let reads: Vec<String> = pods.iter().filter(|p| p.contains("-read-")).cloned().collect();
        // The MAIN as the cluster holds it: the write pod, or the replica a failover promoted
        // (sampled only where failover is on: a run without it injects as it always did).
        let failover = self.clusters.get(&cluster).is_some_and(|c| c.setup.failover);
        let write = if failover { self.source.cluster(&cluster).main_pod(&cluster) } else { write_pod(&cluster) };
        let write_host = self.host(&write);
        // The replicas: after a failover a read pod may be the MAIN, and the write pod a replica.
        let reads: Vec<String> = if failover { pods.iter().filter(|p| **p != write).cloned().collect() } else { reads };
        // `main-returns`: how long after the failover's intent its partition ends.
        let mut returns = None;
        let (what, undo, target) = match fault.class {
            FaultClass::PodKill => {
                let Some(pod) = Self::pick(&pods, pick).cloned() else { return false };
                if !self.kubelet.crash(&mut self.sim, NAMESPACE, &pod, &mut self.trace) {
                    return false;
                }
                (format!("kill pod {pod}"), Undo::Nothing, Some(cluster.clone()))
            }
            FaultClass::PodDelete => {
                let Some(pod) = Self::pick(&pods, pick).cloned() else { return false };
                self.api.delete_key(&Key::new("Pod", NAMESPACE, &pod));
                (format!("delete pod {pod}"), Undo::Nothing, Some(cluster.clone()))
            }
            FaultClass::VolumeLoss => {
                let Some(pod) = Self::pick(&reads, pick).cloned() else { return false };
                // Never the last copy of the data: the MAIN must hold what this replica holds.
                let truth = self.source.cluster(&cluster);
                let main_ts = truth.write(&cluster).filter(|p| p.role == Some(fake_memgraph::Role::Main)).map(|p| p.ts);
                if main_ts.is_none_or(|ts| truth.pods.get(&pod).is_some_and(|p| p.ts > ts)) {
                    return false;
                }
                self.kubelet.volume(NAMESPACE, &format!("data-{pod}")).wipe();
                self.kubelet.crash(&mut self.sim, NAMESPACE, &pod, &mut self.trace);
                (format!("lose the volume of {pod}"), Undo::Nothing, Some(cluster.clone()))
            }
            FaultClass::WriteVolumeLoss => {
                if !pods.contains(&write) {
                    return false;
                }
                // Never the last copy: a replica must hold data, and with a sync mode everything
                // the MAIN has (under ASYNC the loss is what is measured).
                let truth = self.source.cluster(&cluster);
                let main_ts = truth.write(&cluster).map_or(0, |p| p.ts);
                let asynchronous = truth.mode() == "async";
                let copy = truth.pods.iter().any(|(name, p)| {
                    super::truth::read_index(&cluster, name).is_some()
                        && p.role == Some(fake_memgraph::Role::Replica)
                        && p.nodes > 0
                        && (asynchronous || p.ts >= main_ts)
                });
                if !copy {
                    return false;
                }
                self.kubelet.volume(NAMESPACE, &format!("data-{write}")).wipe();
                self.kubelet.crash(&mut self.sim, NAMESPACE, &write, &mut self.trace);
                if let Some(c) = self.clusters.get_mut(&cluster) {
                    c.volume_lost = true;
                }
                (format!("lose the volume of {write}"), Undo::Nothing, Some(cluster.clone()))
            }
            FaultClass::PartitionOperator => {
                let hosts = self.running_hosts(&pods);
                let Some(target) = Self::pick(&hosts, pick).cloned() else { return false };
                let mut undo = Vec::new();
                for host in OPERATOR_HOSTS {
                    self.sim.partition(host, target.clone());
                    undo.push(Undo::Repair(host.to_owned(), target.clone()));
                }
                let what = format!("partition the operators from {target} for {} s", fault.lasts.as_secs());
                (what, Undo::All(undo), Some(cluster.clone()))
            }
            FaultClass::PartitionReplication | FaultClass::Latency => {
                let hosts = self.running_hosts(&reads);
                let Some(target) = Self::pick(&hosts, pick).cloned() else { return false };
                if !self.kubelet.hosts().contains(&write_host) || self.kubelet.on_lost_node(&write) {
                    return false;
                }
                if fault.class == FaultClass::Latency {
                    // One latency per link at a time: the end of an earlier window would reset
                    // the link under a later one (and close the later one's record: seed 1071).
                    if self.latencies.iter().any(|l| l.0 == target && l.3 == Duration::MAX) {
                        return false;
                    }
                    let latency = Duration::from_millis(20 + pick % 480);
                    self.sim.set_link_latency(write_host.clone(), target.clone(), latency);
                    self.latencies.push((target.clone(), latency, now, Duration::MAX));
                    let what = format!(
                        "latency {} ms between MAIN and {target} for {} s",
                        latency.as_millis(),
                        fault.lasts.as_secs()
                    );
                    (what, Undo::Latency(write_host, target), Some(cluster.clone()))
                } else {
                    // Held, not dropped: TCP delivers what was sent once the network heals, so a
                    // blocked RPC completes then (turmoil's partition would lose it for good).
                    self.sim.hold(write_host.clone(), target.clone());
                    let what = format!("partition MAIN from {target} for {} s", fault.lasts.as_secs());
                    (what, Undo::Release(write_host, target), Some(cluster.clone()))
                }
            }
            FaultClass::PartitionOneWay => {
                // "operator" stands for both operator hosts: whichever leads is cut.
                let mut ends = vec![OPERATOR.to_owned()];
                ends.extend(self.running_hosts(&pods));
                if ends.len() < 2 {
                    return false;
                }
                let a = usize::try_from(pick % ends.len() as u64).unwrap_or(0);
                let b = (a + 1 + usize::try_from((pick >> 8) % (ends.len() as u64 - 1)).unwrap_or(0)) % ends.len();
                let (from, to) = (ends[a].clone(), ends[b].clone());
                if from != OPERATOR && to != OPERATOR {
                    // Between two pods runs replication over long-lived connections. turmoil drops
                    // a partitioned segment for good and never retransmits, so the stream would
                    // stall forever after the heal, which real TCP never does (and 2.21/2.22 have
                    // no RPC timeouts to notice). Hold instead, as PartitionReplication does: TCP
                    // delivers what was sent once the network heals.
                    self.sim.hold(from.clone(), to.clone());
                    let what = format!("one-way partition {from} -> {to} for {} s (held)", fault.lasts.as_secs());
                    (what, Undo::Release(from, to), Some(cluster.clone()))
                } else {
                    let mut undo = Vec::new();
                    for host in OPERATOR_HOSTS {
                        let (a, b) = if from == OPERATOR { (host, to.as_str()) } else { (from.as_str(), host) };
                        self.sim.partition_oneway(a, b);
                        undo.push(Undo::RepairOneWay(a.to_owned(), b.to_owned()));
                    }
                    let what = format!("one-way partition {from} -> {to} for {} s", fault.lasts.as_secs());
                    (what, Undo::All(undo), Some(cluster.clone()))
                }
            }
            FaultClass::OperatorCrash => {
                let Some(i) = self.leader() else { return false };
                self.crash_operator(i);
                let what = format!("crash the leading operator {} for {} s", OPERATOR_HOSTS[i], fault.lasts.as_secs());
                (what, Undo::Operator(i), None)
            }
            FaultClass::OperatorCrashAfterWrite => {
                let Some(i) = self.leader() else { return false };
                let n = 1 + pick % 6;
                self.operators[i].gate.crash_after(n);
                (
                    format!("crash the leading operator {} after its next {n} API writes", OPERATOR_HOSTS[i]),
                    Undo::Nothing,
                    None,
                )
            }
            FaultClass::OperatorRollout => {
                let Some(i) = self.leader() else { return false };
                if self.operators[i].gate.terminating() {
                    return false;
                }
                self.operators[i].gate.terminate();
                (format!("roll out: SIGTERM to the leading operator {}", OPERATOR_HOSTS[i]), Undo::Nothing, None)
            }
            FaultClass::OperatorApiPartition => {
                // Three times in four the leader, whose Lease is then at stake.
                let i = match self.leader() {
                    Some(leader) if !pick.is_multiple_of(4) => leader,
                    _ => usize::try_from(pick % OPERATOR_HOSTS.len() as u64).unwrap_or(0),
                };
                if self.operators[i].gate.cut() {
                    return false;
                }
                self.operators[i].gate.set_cut(true);
                let what = format!("cut {} off from the API server for {} s", OPERATOR_HOSTS[i], fault.lasts.as_secs());
                (what, Undo::Uncut(i), None)
            }
            FaultClass::StaleView | FaultClass::DroppedNotifications | FaultClass::ApiErrors => {
                let mut faults = ApiFaults::default();
                let what = match fault.class {
                    FaultClass::StaleView => {
                        let lag = Duration::from_millis(1_000 + pick % 9_000);
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
                self.api.set_faults(faults, pick);
                (format!("{what} for {} s", fault.lasts.as_secs()), Undo::ApiFaults, None)
            }
            FaultClass::Scale => {
                let replicas = pick % 5;
                self.edit_spec(&cluster, |s| s["read"]["replicas"] = json!(replicas));
                (format!("scale read replicas to {replicas}"), Undo::Nothing, Some(cluster.clone()))
            }
            FaultClass::ModeChange => {
                // Only modes the release has: asking 3.4 for STRICT_SYNC is the invalid-spec class.
                let spec = self.spec_of(&cluster);
                let version = spec["write"]["image"].as_str().and_then(clusters::version_of).unwrap_or("3.12.0");
                let mode = match pick % 3 {
                    0 => "ASYNC",
                    2 if clusters::has_strict_sync(version) => "STRICT_SYNC",
                    _ => "SYNC",
                };
                self.edit_spec(&cluster, |s| s["replication"]["mode"] = json!(mode));
                (format!("change replication mode to {mode}"), Undo::Nothing, Some(cluster.clone()))
            }
            FaultClass::ScheduleChange => {
                let schedule = clusters::SCHEDULES[usize::try_from(pick % 4).unwrap_or(0)];
                self.edit_spec(&cluster, |s| s["snapshot"]["schedule"] = json!(schedule));
                (format!("change snapshot schedule to '{schedule}'"), Undo::Nothing, Some(cluster.clone()))
            }
            FaultClass::StorageChange => {
                let size = ["10Gi", "20Gi", "50Gi"][usize::try_from(pick % 3).unwrap_or(0)];
                self.edit_spec(&cluster, |s| s["read"]["storage"] = json!({"size": size}));
                (format!("change read storage to {size}"), Undo::Nothing, Some(cluster.clone()))
            }
            FaultClass::ImageChange => {
                // Upgrades only: snapshot files are not readable by older releases.
                let spec = self.spec_of(&cluster);
                let current = spec["write"]["image"].as_str().and_then(clusters::version_of);
                let from = clusters::VERSIONS.iter().position(|v| Some(*v) == current).unwrap_or(0);
                let newer = &clusters::VERSIONS[from..];
                let version = newer[usize::try_from(pick % newer.len() as u64).unwrap_or(0)];
                let image = clusters::image(version);
                self.edit_spec(&cluster, |s| s["write"]["image"] = json!(image));
                (format!("change image to {image}"), Undo::Nothing, Some(cluster.clone()))
            }
            FaultClass::Switchover => {
                if !failover {
                    return false;
                }
                let desired = self.source.cluster(&cluster).desired();
                let names = memgraph_operator::names::ClusterNames::new(cluster.as_str(), NAMESPACE);
                use memgraph_operator::names::Instance;
                let targets: Vec<String> = std::iter::once(Instance::Write)
                    .chain((0..desired).map(Instance::Read))
                    .filter(|i| names.pod(*i) != write)
                    .map(|i| i.status_name())
                    .collect();
                let Some(to) = Self::pick(&targets, pick).cloned() else { return false };
                self.request_switchover(&cluster, &format!("{to}/{}", now.as_millis()));
                (format!("request a switchover to {to}"), Undo::Nothing, Some(cluster.clone()))
            }
            FaultClass::MainKill => {
                if !pods.contains(&write) || !self.kubelet.crash(&mut self.sim, NAMESPACE, &write, &mut self.trace) {
                    return false;
                }
                (format!("kill the MAIN {write}"), Undo::Nothing, Some(cluster.clone()))
            }
            FaultClass::MainPartitionOperator
            | FaultClass::MainPartitionReplicas
            | FaultClass::MainPartitionAll
            | FaultClass::MainReturns => {
                if !pods.contains(&write) || !self.kubelet.hosts().contains(&write_host) || self.links_held(&write_host)
                {
                    return false;
                }
                let operators = fault.class != FaultClass::MainPartitionReplicas;
                let others = fault.class != FaultClass::MainPartitionOperator;
                let mut undo = Vec::new();
                if operators {
                    for peer in OPERATOR_HOSTS {
                        // As `partition-operator`: the operators' probes fail.
                        self.sim.partition(write_host.clone(), peer.to_owned());
                        undo.push(Undo::Repair(write_host.clone(), peer.to_owned()));
                    }
                }
                if others {
                    let mut peers: Vec<String> = self.setups.iter().map(|s| workload::host_name(&s.name)).collect();
                    peers.extend(self.kubelet.hosts().into_iter().filter(|h| *h != write_host));
                    for peer in peers {
                        // Held, not dropped, as for the replication partitions: TCP delivers on heal.
                        self.sim.hold(write_host.clone(), peer.clone());
                        undo.push(Undo::Release(write_host.clone(), peer));
                    }
                }
                if operators && others {
                    self.source.set_cut_off(&write, true);
                    undo.push(Undo::Reconnect(write.clone()));
                }
                let whom = match (operators, others) {
                    (true, false) => "the operators",
                    (false, _) => "its replicas and the clients",
                    (true, true) => "everyone (operators, replicas, clients)",
                };
                let what = if fault.class == FaultClass::MainReturns {
                    // It comes back 0 to 3 s after the intent is recorded, or at the window's end.
                    let after = Duration::from_millis(500 * (pick % 7));
                    returns = Some(after);
                    format!(
                        "partition the MAIN {write} from {whom} until {} s after a failover's intent (at most {} s)",
                        after.as_secs_f64(),
                        fault.lasts.as_secs()
                    )
                } else {
                    format!("partition the MAIN {write} from {whom} for {} s", fault.lasts.as_secs())
                };
                (what, Undo::All(undo), Some(cluster.clone()))
            }
            FaultClass::MainFlap => {
                // One flap per pod at a time: a second would join its NotReady stretch to the
                // first's into one longer than the class promises (and the first's end would
                // stop the second).
                if !pods.contains(&write) || self.kubelet.flapping(&write) {
                    return false;
                }
                let down = Duration::from_millis(1_000 + pick % 2_000);
                let up = Duration::from_millis(1_000 + (pick >> 12) % 3_000);
                self.kubelet.set_flap(&write, Some(Flap { start: now, until, down, up }));
                let what = format!(
                    "the readiness of the MAIN {write} flaps for {} s: NotReady {:.1} s, Ready {:.1} s",
                    fault.lasts.as_secs(),
                    down.as_secs_f64(),
                    up.as_secs_f64()
                );
                (what, Undo::Unflap(write.clone()), Some(cluster.clone()))
            }
            FaultClass::FailoverCrash => {
                if !pods.contains(&write) || !self.kubelet.crash(&mut self.sim, NAMESPACE, &write, &mut self.trace) {
                    return false;
                }
                let n = 1 + (pick >> 8) % 12;
                let crash = match self.leader() {
                    Some(i) => {
                        self.operators[i].gate.crash_after_steps(&cluster, n);
                        format!(" and crash the leading operator {} after its next {n} steps for it", OPERATOR_HOSTS[i])
                    }
                    None => String::new(),
                };
                (format!("kill the MAIN {write}{crash}"), Undo::Nothing, Some(cluster.clone()))
            }
            FaultClass::NodeLoss | FaultClass::MainNodeLoss | FaultClass::FailoverTwice => {
                let at_main = fault.class != FaultClass::NodeLoss;
                let chosen = if at_main { Some(&write) } else { Self::pick(&pods, pick) };
                let Some(pod) = chosen.filter(|p| pods.contains(p)).cloned() else { return false };
                let host = self.host(&pod);
                if !self.kubelet.hosts().contains(&host) || self.links_held(&host) {
                    return false;
                }
                let mut peers: Vec<String> = OPERATOR_HOSTS.iter().map(|h| (*h).to_owned()).collect();
                peers.extend(self.setups.iter().map(|s| workload::host_name(&s.name)));
                peers.extend(self.kubelet.hosts().into_iter().filter(|h| *h != host));
                for peer in &peers {
                    self.sim.hold(host.clone(), peer.clone());
                }
                self.kubelet.lose_node(&pod);
                let gone = pick & 1 == 1;
                let end = if gone { "then is deleted" } else { "then comes back" };
                if fault.class == FaultClass::FailoverTwice {
                    // The second loss, of whichever MAIN replaced this one, as a node loss of its own.
                    let generation = self.api.with_object(&Key::new("MemgraphCluster", NAMESPACE, &cluster), |c| {
                        c["status"]["failover"]["generation"].as_i64().unwrap_or(0)
                    });
                    let second = Fault { class: FaultClass::MainNodeLoss, ..fault.clone() };
                    // 0 to 20 s after the first failover completed: before and after the new
                    // MAIN has reported a replica in sync (without one nothing can be promoted).
                    let after = Duration::from_millis(1_000 * ((pick >> 20) % 21));
                    self.after_failover.push(SecondLoss {
                        cluster: cluster.clone(),
                        generation: generation.unwrap_or(0),
                        fault: second,
                        after,
                        completed_at: None,
                    });
                }
                let then = if fault.class == FaultClass::FailoverTwice { "; the next MAIN's too" } else { "" };
                let what = format!("the node of {pod} stops answering for {} s, {end}{then}", fault.lasts.as_secs());
                (what, Undo::NodeBack { pod, host, peers, gone }, Some(cluster.clone()))
            }
            FaultClass::Hung => {
                let Some(pod) = Self::pick(&pods, pick).cloned() else { return false };
                let Some(server) = self.source.server(&pod) else { return false };
                server.set_hung(true);
                (
                    format!("freeze Memgraph on {pod} for {} s", fault.lasts.as_secs()),
                    Undo::Unhang(pod),
                    Some(cluster.clone()),
                )
            }
            FaultClass::SlowDisk => {
                // The kubelet was built with slow snapshots and recovery (see `run`).
                ("snapshots and recovery take time that grows with the data".to_owned(), Undo::Nothing, None)
            }
            FaultClass::BlockedReplication => {
                let Some(pod) = Self::pick(&reads, pick).cloned() else { return false };
                let Some(server) = self.source.server(&pod) else { return false };
                server.set_replication_blocked(true);
                let what = format!("block the replication port of {pod} for {} s", fault.lasts.as_secs());
                (what, Undo::Unblock(pod), Some(cluster.clone()))
            }
            FaultClass::AdmissionRefusal => {
                let replicas = self.spec_of(&cluster)["read"]["replicas"].as_u64().unwrap_or(0);
                let index = if replicas == 0 { 0 } else { pick % replicas };
                let key = match (pick >> 8) % 4 {
                    0 => Key::new("StatefulSet", NAMESPACE, &format!("{cluster}-read-{index}")),
                    1 => Key::new("Pod", NAMESPACE, &format!("{cluster}-read-{index}-0")),
                    2 => Key::new("Service", NAMESPACE, &format!("{cluster}-read")),
                    _ => Key::new("StatefulSet", NAMESPACE, &format!("{cluster}-write")),
                };
                self.api.set_refused(&key, Some(format!("policy refuses changes to {} {}", key.kind, key.name)));
                let what = format!(
                    "an admission policy refuses changes to {} {} for {} s",
                    key.kind,
                    key.name,
                    fault.lasts.as_secs()
                );
                (what, Undo::Admit(key), Some(cluster.clone()))
            }
            FaultClass::InvalidSpec => {
                // One at a time: a second one would save the first one's bad value as "before".
                if self
                    .windows
                    .iter()
                    .any(|(_, _, u)| matches!(u, Undo::RestoreSpec { cluster: c, .. } if *c == cluster))
                {
                    return false;
                }
                let (path, bad, words): (Vec<&'static str>, Value, &str) = match pick % 3 {
                    0 => (
                        vec!["snapshot", "schedule"],
                        json!("every five minutes"),
                        "a snapshot schedule that is not cron",
                    ),
                    1 => {
                        (vec!["write", "extraArgs"], json!(["--management-port=10011"]), "a flag the operator refuses")
                    }
                    _ => (
                        vec!["auth"],
                        json!({"secretRef": {"name": "missing-credentials"}}),
                        "a Secret that does not exist",
                    ),
                };
                let before = field(&mut self.spec_of(&cluster), &path).clone();
                self.edit_spec(&cluster, |s| *field(s, &path) = bad);
                let what = format!("apply an invalid spec ({words}) for {} s, then fix it", fault.lasts.as_secs());
                (what, Undo::RestoreSpec { cluster: cluster.clone(), path, value: before }, Some(cluster.clone()))
            }
            FaultClass::StoreFault => {
                if self.windows.iter().any(|(_, _, u)| matches!(u, Undo::StoreHealthy)) {
                    return false;
                }
                let (faults, words) = match pick % 4 {
                    0 => (MemFaults { unreachable: true, ..MemFaults::default() }, "unreachable".to_owned()),
                    1 => {
                        let latency = Duration::from_millis(2_000 + (pick >> 4) % 18_000);
                        (
                            MemFaults { latency, ..MemFaults::default() },
                            format!("{} ms per request", latency.as_millis()),
                        )
                    }
                    2 => {
                        let n = 1 + u32::try_from((pick >> 4) % 3).unwrap_or(0);
                        (MemFaults { fail_parts: n, ..MemFaults::default() }, format!("failing the next {n} parts"))
                    }
                    _ => (MemFaults { denied: true, ..MemFaults::default() }, "refusing the credentials".to_owned()),
                };
                self.kubelet.store.set_faults(faults);
                (format!("object store {words} for {} s", fault.lasts.as_secs()), Undo::StoreHealthy, None)
            }
            FaultClass::AgentKill => {
                // The drawn cluster's agent, else the next cluster's that has one.
                let names: Vec<String> = self.setups.iter().map(|s| s.name.clone()).collect();
                let start = names.iter().position(|n| *n == cluster).unwrap_or(0);
                let Some(victim) = (0..names.len())
                    .map(|i| names[(start + i) % names.len()].clone())
                    .find(|name| self.kubelet.kill_agent(&write_pod(name), &mut self.trace))
                else {
                    return false;
                };
                (format!("kill the backup agent of {}", write_pod(&victim)), Undo::Nothing, Some(victim))
            }
        };
        *self.injected.entry(fault.class.name().to_owned()).or_insert(0) += 1;
        let lasting = !matches!(undo, Undo::Nothing);
        let end = if lasting { until } else { now };
        self.history.push((fault.class, now, if lasting { Duration::MAX } else { now }, target));
        self.bands.push((now, end, what.clone()));
        if lasting {
            self.windows.push((until, self.history.len() - 1, undo));
        }
        if let Some(after) = returns {
            let window = self.history.len() - 1;
            self.heal_on_intent.push(HealOnIntent { window, cluster, pod: write, after, intent_at: None });
        }
        self.note(format!("fault: {what}"));
        true
    }

    /// End a fault window.
    pub fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Repair(a, b) => self.sim.repair(a, b),
            Undo::RepairOneWay(a, b) => self.sim.repair_oneway(a, b),
            Undo::Release(a, b) => self.sim.release(a, b),
            Undo::Latency(a, b) => {
                let now = self.now();
                if let Some(l) = self.latencies.iter_mut().rev().find(|l| l.0 == b && l.3 == Duration::MAX) {
                    l.3 = now;
                }
                self.sim.set_link_latency(a, b, Duration::from_millis(1));
            }
            Undo::ApiFaults => self.api.set_faults(ApiFaults::default(), 0),
            Undo::Operator(i) => self.restart_operator(i),
            Undo::Uncut(i) => {
                if let Some(o) = self.operators.get(i) {
                    o.gate.set_cut(false);
                }
            }
            Undo::All(undos) => {
                for undo in undos {
                    self.undo(undo);
                }
            }
            Undo::Unhang(pod) => {
                if let Some(server) = self.source.server(&pod) {
                    server.set_hung(false);
                }
            }
            Undo::Unblock(pod) => {
                if let Some(server) = self.source.server(&pod) {
                    server.set_replication_blocked(false);
                }
            }
            Undo::Unflap(pod) => self.kubelet.set_flap(&pod, None),
            Undo::Reconnect(pod) => self.source.set_cut_off(&pod, false),
            Undo::Admit(key) => self.api.set_refused(&key, None),
            Undo::RestoreSpec { cluster, path, value } => {
                self.edit_spec(&cluster, |s| {
                    if value.is_null() {
                        if let Some((last, parent)) = path.split_last()
                            && let Some(map) = field(s, parent).as_object_mut()
                        {
                            map.remove(*last);
                        }
                    } else {
                        *field(s, &path) = value;
                    }
                });
            }
            Undo::NodeBack { pod, host, peers, gone } => {
                if gone {
                    // Its processes are gone before anything held is delivered.
                    self.kubelet.remove_lost_node(&mut self.sim, NAMESPACE, &pod, &mut self.trace);
                }
                for peer in peers {
                    self.sim.release(host.clone(), peer);
                }
                if !gone {
                    self.kubelet.restore_node(&pod);
                    self.note(format!("the node of {pod} answers again"));
                }
            }
            Undo::StoreHealthy => self.kubelet.store.set_faults(MemFaults::default()),
            Undo::Nothing => {}
        }
    }

    /// Faults that wait on the operator: `main-returns` ends its partition soon after the
    /// failover's intent is recorded, `failover-twice` loses the next MAIN's node once a failover
    /// completed. Dropped at the heal.
    fn follow_failovers(&mut self, all: bool) {
        if all {
            self.heal_on_intent.clear();
            self.after_failover.clear();
            return;
        }
        let now = self.now();
        let failover_of = |api: &crate::apiserver::ApiServer, cluster: &str| {
            api.with_object(&Key::new("MemgraphCluster", NAMESPACE, cluster), |c| {
                let f = &c["status"]["failover"];
                (!f["intent"].is_null(), f["generation"].as_i64().unwrap_or(0))
            })
            .unwrap_or((false, 0))
        };
        let mut returning = Vec::new();
        for heal in &mut self.heal_on_intent {
            if heal.intent_at.is_none() && failover_of(&self.api, &heal.cluster).0 {
                heal.intent_at = Some(now);
            }
            if heal.intent_at.is_some_and(|at| at + heal.after <= now)
                && let Some(window) = self.windows.iter_mut().find(|w| w.1 == heal.window)
                && window.0 > now
            {
                window.0 = now;
                returning.push(heal.pod.clone());
            }
        }
        for pod in returning {
            self.note(format!("the old MAIN {pod} returns during the failover"));
        }
        let windows = &self.windows;
        self.heal_on_intent.retain(|h| windows.iter().any(|w| w.1 == h.window));
        for second in &mut self.after_failover {
            let (intent, generation) = failover_of(&self.api, &second.cluster);
            if second.completed_at.is_none() && !intent && generation > second.generation {
                second.completed_at = Some(now);
            }
        }
        let (due, waiting): (Vec<SecondLoss>, Vec<SecondLoss>) = std::mem::take(&mut self.after_failover)
            .into_iter()
            .partition(|s| s.completed_at.is_some_and(|at| at + s.after <= now));
        self.after_failover = waiting;
        for fault in due.into_iter().map(|s| s.fault) {
            self.inject(&fault);
        }
    }

    /// End the windows that are over (or all of them).
    pub fn expire_windows(&mut self, all: bool) {
        self.follow_failovers(all);
        let now = self.now();
        let (due, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.windows).into_iter().partition(|(end, _, _)| all || *end <= now);
        self.windows = keep;
        for (_, index, undo) in due {
            if let Some(entry) = self.history.get_mut(index) {
                entry.2 = now;
            }
            self.undo(undo);
        }
    }
}
