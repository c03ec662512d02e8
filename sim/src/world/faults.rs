//! Faults: each a class with its own counter. A run picks a subset of classes and an intensity
//! from its seed and precomputes a schedule (so a failing schedule can be shrunk by removing
//! entries and replaying); targets are picked when a fault fires, from what exists then.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rng::Rng;

/// Fault classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultClass {
    /// Crash a pod's container (unflushed WAL lost; restarted by the kubelet).
    PodKill,
    /// Delete a pod gracefully (preStop and on-exit snapshot; recreated by its StatefulSet).
    PodDelete,
    /// Lose a read replica's volume, then crash it.
    VolumeLoss,
    /// Lose the write pod's volume, then crash it (a person restores it later, as the
    /// `DataDivergence` condition says).
    WriteVolumeLoss,
    /// Lose a pod's node: the pod stays Running on an unreachable node, turns NotReady after the
    /// node-monitor grace, and is replaced only once the node is gone.
    NodeLoss,
    /// Freeze a pod's Memgraph: it accepts TCP and answers nothing.
    Hung,
    /// Snapshots and recovery take time that grows with the data (for the whole run).
    SlowDisk,
    /// Block a replica's replication port (a NetworkPolicy): every REGISTER of it fails.
    BlockedReplication,
    /// An admission policy refuses every change to one object for a while.
    AdmissionRefusal,
    /// Apply an invalid spec, then fix it.
    InvalidSpec,
    /// Partition the operator from a pod, both ways.
    PartitionOperator,
    /// Partition the MAIN from a replica, both ways.
    PartitionReplication,
    /// A one-way partition between two of operator, MAIN and a replica.
    PartitionOneWay,
    /// Latency on a replication link.
    Latency,
    /// Crash the operator at a random moment.
    OperatorCrash,
    /// Crash the operator right after its Nth mutating API call.
    OperatorCrashAfterWrite,
    /// A rollout: the leading operator gets SIGTERM, finishes its reconciles, releases the
    /// Lease and exits; it comes back 2 s later as the standby.
    OperatorRollout,
    /// Cut an operator (usually the leader) off from the API server: its requests time out, its
    /// watch is silent, it cannot renew its Lease; it still reaches every pod.
    OperatorApiPartition,
    /// Serve the operator an old view of the API.
    StaleView,
    /// Drop watch notifications.
    DroppedNotifications,
    /// Fail the operator's API writes (conflict, server error, timeout).
    ApiErrors,
    /// Scale the read replicas up or down.
    Scale,
    /// Change the replication mode.
    ModeChange,
    /// Change the snapshot schedule.
    ScheduleChange,
    /// Change the image (a rolling restart).
    ImageChange,
    /// Change the read replicas' volume size (Kubernetes refuses it for existing StatefulSets).
    StorageChange,
    /// The object store is unreachable, slow, loses parts or refuses the credentials.
    StoreFault,
    /// Kill the write pod's backup agent (mid-upload, if one runs); its container restarts.
    AgentKill,
    /// Crash the MAIN's container (the write pod, or the replica a failover promoted).
    MainKill,
    /// Lose the MAIN's node (as `node-loss`, aimed at the MAIN): what failover is for.
    MainNodeLoss,
    /// Partition the operators from the MAIN only: clients and replicas still reach it.
    MainPartitionOperator,
    /// Partition the MAIN from every other pod (its replicas and the clients) while the
    /// operators still reach it.
    MainPartitionReplicas,
    /// Partition the MAIN from everyone: the operators, its replicas and the clients. Its pod
    /// stays Ready (its own kubelet still sees it).
    MainPartitionAll,
    /// The MAIN's readiness flaps: NotReady for 1 to 3 s, Ready for 1 to 4 s, over and over,
    /// while its Memgraph answers. Each NotReady stretch is shorter than the detection delay, so
    /// nothing may be promoted.
    MainFlap,
    /// Kill the MAIN and crash the leading operator right after its Nth further step for the
    /// cluster (a mutating API call or a replication command, N from 1 to 12): over many seeds,
    /// a crash at every step of the failover that follows.
    FailoverCrash,
    /// Partition the MAIN from everyone, and end the partition soon after the operator records
    /// its failover's intent: the old MAIN returns during the failover.
    MainReturns,
    /// Lose the MAIN's node and, once a failover has replaced it, the new MAIN's node too: two
    /// failovers in a row.
    FailoverTwice,
    /// A person requests a planned switchover (the `memgraph.io/switchover` annotation) to
    /// another instance, under load; at the heal, one back to the write pod.
    Switchover,
}

impl FaultClass {
    /// The classes of the default sweep and of the tests' sweeps.
    pub const ALL: [FaultClass; 28] = [
        FaultClass::PodKill,
        FaultClass::PodDelete,
        FaultClass::VolumeLoss,
        FaultClass::PartitionOperator,
        FaultClass::PartitionReplication,
        FaultClass::PartitionOneWay,
        FaultClass::Latency,
        FaultClass::OperatorCrash,
        FaultClass::OperatorCrashAfterWrite,
        FaultClass::StaleView,
        FaultClass::DroppedNotifications,
        FaultClass::ApiErrors,
        FaultClass::Scale,
        FaultClass::ModeChange,
        FaultClass::ScheduleChange,
        FaultClass::ImageChange,
        FaultClass::StorageChange,
        FaultClass::WriteVolumeLoss,
        FaultClass::NodeLoss,
        FaultClass::Hung,
        FaultClass::SlowDisk,
        FaultClass::BlockedReplication,
        FaultClass::AdmissionRefusal,
        FaultClass::InvalidSpec,
        FaultClass::StoreFault,
        FaultClass::AgentKill,
        FaultClass::OperatorApiPartition,
        FaultClass::OperatorRollout,
    ];

    /// The classes aimed at the MAIN that failover is judged by, run with `--faults`: not yet in
    /// the default sweep, whose runs they still fail in (see the README's known limits).
    pub const FAILOVER: [FaultClass; 10] = [
        FaultClass::MainKill,
        FaultClass::MainNodeLoss,
        FaultClass::MainPartitionOperator,
        FaultClass::MainPartitionReplicas,
        FaultClass::MainPartitionAll,
        FaultClass::MainFlap,
        FaultClass::FailoverCrash,
        FaultClass::MainReturns,
        FaultClass::FailoverTwice,
        FaultClass::Switchover,
    ];

    /// Every class there is.
    pub fn every() -> impl Iterator<Item = FaultClass> {
        Self::ALL.into_iter().chain(Self::FAILOVER)
    }

    /// Command-line name (`pod-kill`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FaultClass::PodKill => "pod-kill",
            FaultClass::PodDelete => "pod-delete",
            FaultClass::VolumeLoss => "volume-loss",
            FaultClass::WriteVolumeLoss => "write-volume-loss",
            FaultClass::NodeLoss => "node-loss",
            FaultClass::Hung => "hung",
            FaultClass::SlowDisk => "slow-disk",
            FaultClass::BlockedReplication => "blocked-replication",
            FaultClass::AdmissionRefusal => "admission-refusal",
            FaultClass::InvalidSpec => "invalid-spec",
            FaultClass::PartitionOperator => "partition-operator",
            FaultClass::PartitionReplication => "partition-replication",
            FaultClass::PartitionOneWay => "partition-one-way",
            FaultClass::Latency => "latency",
            FaultClass::OperatorCrash => "operator-crash",
            FaultClass::OperatorCrashAfterWrite => "operator-crash-after-write",
            FaultClass::OperatorApiPartition => "operator-api-partition",
            FaultClass::OperatorRollout => "operator-rollout",
            FaultClass::StaleView => "stale-view",
            FaultClass::DroppedNotifications => "dropped-notifications",
            FaultClass::ApiErrors => "api-errors",
            FaultClass::Scale => "scale",
            FaultClass::ModeChange => "mode-change",
            FaultClass::ScheduleChange => "schedule-change",
            FaultClass::ImageChange => "image-change",
            FaultClass::StorageChange => "storage-change",
            FaultClass::StoreFault => "store-fault",
            FaultClass::AgentKill => "agent-kill",
            FaultClass::MainKill => "main-kill",
            FaultClass::MainNodeLoss => "main-node-loss",
            FaultClass::MainPartitionOperator => "main-partition-operator",
            FaultClass::MainPartitionReplicas => "main-partition-replicas",
            FaultClass::MainPartitionAll => "main-partition-all",
            FaultClass::MainFlap => "main-flap",
            FaultClass::FailoverCrash => "failover-crash",
            FaultClass::MainReturns => "main-returns",
            FaultClass::FailoverTwice => "failover-twice",
            FaultClass::Switchover => "switchover",
        }
    }
}

impl fmt::Display for FaultClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultClass {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultClass::every().find(|c| c.name() == s).ok_or_else(|| {
            let names: Vec<&str> = FaultClass::every().map(|c| c.name()).collect();
            format!("unknown fault class '{s}'; known classes: {}", names.join(", "))
        })
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// When it fires, in simulated time.
    pub at: Duration,
    /// Its class.
    pub class: FaultClass,
    /// Random number that picks targets and variants when it fires.
    pub pick: u64,
    /// How long it lasts (windows: partitions, latency, API faults, operator downtime).
    pub lasts: Duration,
}

/// A run's faults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// In firing order.
    pub faults: Vec<Fault>,
}

impl Schedule {
    /// Draw a schedule over `duration` from `rng`: a random non-empty subset of `allowed` (all
    /// of them when `every_class`) and a random intensity.
    pub fn generate(rng: &mut Rng, duration: Duration, allowed: &[FaultClass], every_class: bool) -> Schedule {
        let mut classes: Vec<FaultClass> =
            if every_class { allowed.to_vec() } else { allowed.iter().copied().filter(|_| rng.chance(0.5)).collect() };
        if classes.is_empty() && !allowed.is_empty() {
            let i = usize::try_from(rng.below(allowed.len() as u64)).unwrap_or(0);
            classes.push(allowed[i]);
        }
        // Mean gap between faults: 3 s (intense) to 20 s (calm), but dense enough that a run
        // asked for every class has room for each of them at least once.
        let mut mean_gap_ms = 3_000 + rng.below(17_000);
        if every_class {
            let room = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).saturating_sub(10_000);
            mean_gap_ms = mean_gap_ms.min((room / (classes.len() as u64 + 1)).max(1_000));
        }
        let mut faults = Vec::new();
        // Slow disks are a property of the whole run, set from the start.
        if classes.contains(&FaultClass::SlowDisk) {
            faults.push(Fault {
                at: Duration::ZERO,
                class: FaultClass::SlowDisk,
                pick: rng.next_u64(),
                lasts: duration,
            });
        }
        let recurring: Vec<FaultClass> = classes.iter().copied().filter(|c| *c != FaultClass::SlowDisk).collect();
        let mut at = Duration::from_millis(5_000 + rng.below(5_000));
        // With every class asked for, the first faults are each class once in a random order.
        let mut first_round: Vec<FaultClass> = if every_class { recurring.clone() } else { Vec::new() };
        while at < duration && !recurring.is_empty() {
            let class = if first_round.is_empty() {
                recurring[usize::try_from(rng.below(recurring.len() as u64)).unwrap_or(0)]
            } else {
                first_round.swap_remove(usize::try_from(rng.below(first_round.len() as u64)).unwrap_or(0))
            };
            // A lost node stays lost for up to two minutes, readiness flaps for up to 40 s; other
            // windows last 1 to 16 s.
            // A MAIN that returns is healed at the failover's intent, so it is cut off for long.
            let lasts = match class {
                FaultClass::NodeLoss
                | FaultClass::MainNodeLoss
                | FaultClass::FailoverTwice
                | FaultClass::MainReturns => Duration::from_millis(20_000 + rng.below(100_000)),
                FaultClass::MainFlap => Duration::from_millis(10_000 + rng.below(30_000)),
                _ => Duration::from_millis(1_000 + rng.below(15_000)),
            };
            faults.push(Fault { at, class, pick: rng.next_u64(), lasts });
            at += Duration::from_millis(mean_gap_ms / 2 + rng.below(mean_gap_ms));
        }
        Schedule { faults }
    }

    /// Faults per class.
    pub fn counts(&self) -> BTreeMap<FaultClass, u64> {
        let mut counts = BTreeMap::new();
        for fault in &self.faults {
            *counts.entry(fault.class).or_insert(0) += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for class in FaultClass::every() {
            assert_eq!(class.name().parse::<FaultClass>(), Ok(class));
        }
        assert!("nonsense".parse::<FaultClass>().unwrap_err().contains("pod-kill"));
    }

    #[test]
    fn schedules_are_deterministic_and_ordered() {
        let a = Schedule::generate(&mut Rng::new(3), Duration::from_secs(600), &FaultClass::ALL, false);
        let b = Schedule::generate(&mut Rng::new(3), Duration::from_secs(600), &FaultClass::ALL, false);
        assert_eq!(a, b);
        assert!(!a.faults.is_empty());
        assert!(a.faults.windows(2).all(|w| w[0].at < w[1].at));
        let every = Schedule::generate(&mut Rng::new(3), Duration::from_secs(3600), &FaultClass::ALL, true);
        assert!(every.counts().len() > 10, "{:?}", every.counts());
    }
}
