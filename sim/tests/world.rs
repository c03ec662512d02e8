//! Bounded sweeps of the turmoil world in `cargo test`: every fault class meets every other
//! class in some run, every run must satisfy every oracle, and a replayed seed must produce the
//! same timeline.

use std::collections::BTreeSet;
use std::time::Duration;

use sim::world::faults::FaultClass;
use sim::world::run::{RunConfig, run};

mod support;

fn config(seed: u64, classes: Vec<FaultClass>) -> RunConfig {
    RunConfig {
        seed,
        duration: Duration::from_secs(150),
        heal: Duration::from_secs(150),
        replicas: 3,
        classes,
        every_class: true,
        ..RunConfig::default()
    }
}

/// The classes in four blocks of seven (the last shorter); a run takes two blocks, so the six pairs of blocks put
/// every pair of classes in the same run.
fn blocks() -> Vec<Vec<FaultClass>> {
    FaultClass::ALL.chunks(7).map(<[_]>::to_vec).collect()
}

fn block_pair(a: usize, b: usize) -> Vec<FaultClass> {
    let blocks = blocks();
    blocks[a].iter().chain(&blocks[b]).copied().collect()
}

/// Seeds per pair of blocks (two, so that a class the first seed never got a target for still
/// meets the others).
const SEEDS: [u64; 2] = [1, 2];

/// Runs every seed of a pair of blocks; returns the classes injected together.
fn sweep(a: usize, b: usize) -> Vec<BTreeSet<String>> {
    SEEDS
        .iter()
        .map(|seed| {
            let config = config(*seed + 10 * (a as u64 * 4 + b as u64), block_pair(a, b));
            let report = run(&config);
            support::assert_passes(&report, &config);
            report.injected.keys().cloned().collect()
        })
        .collect()
}

#[test]
fn blocks_cover_every_pair() {
    let blocks = blocks();
    assert_eq!(blocks.len(), 4);
    for x in FaultClass::ALL {
        for y in FaultClass::ALL {
            let together =
                (0..4).any(|a| (a + 1..4).any(|b| block_pair(a, b).contains(&x) && block_pair(a, b).contains(&y)));
            assert!(together, "{x} never meets {y}");
        }
    }
}

macro_rules! pair_test {
    ($name:ident, $a:expr, $b:expr) => {
        #[test]
        fn $name() {
            let injected = sweep($a, $b);
            let mut missing = Vec::new();
            for x in block_pair($a, $b) {
                for y in block_pair($a, $b) {
                    let met = injected.iter().any(|s| s.contains(x.name()) && s.contains(y.name()));
                    if !met {
                        missing.push(format!("{x}+{y}"));
                    }
                }
            }
            assert!(missing.is_empty(), "pairs never injected together: {missing:?}");
        }
    };
}

pair_test!(blocks_0_and_1, 0, 1);
pair_test!(blocks_0_and_2, 0, 2);
pair_test!(blocks_0_and_3, 0, 3);
pair_test!(blocks_1_and_2, 1, 2);
pair_test!(blocks_1_and_3, 1, 3);
pair_test!(blocks_2_and_3, 2, 3);

#[test]
fn a_seed_replays_exactly() {
    let config = RunConfig { clusters: Some(2), ..config(42, FaultClass::ALL.to_vec()) };
    let first = run(&config);
    let second = run(&config);
    assert!(!first.trace.entries.is_empty());
    assert_eq!(first.digest, second.digest, "same seed, different timelines");
    assert_eq!(first.trace.entries, second.trace.entries);
    let other = run(&RunConfig { seed: 43, ..config });
    assert_ne!(first.digest, other.digest, "different seeds should differ");
}

/// Two operators contend for the Lease: the leader is crashed and cut off from the API server
/// (it still reaches every pod), the Lease changes hands, and no two operators act in
/// overlapping time (the leadership oracle, in `assert_passes`).
#[test]
fn the_lease_changes_hands_without_overlap() {
    let classes = vec![FaultClass::OperatorApiPartition, FaultClass::OperatorCrash, FaultClass::PodKill];
    let config = RunConfig { duration: Duration::from_secs(240), ..config(5, classes) };
    let report = run(&config);
    support::assert_passes(&report, &config);
    assert!(report.handovers >= 1, "the Lease never changed hands:\n{}", report.trace.render());
    assert!(report.leader_acts > 100, "only {} acts judged", report.leader_acts);
    assert!(
        report.trace.render().contains("lost the lease and exited"),
        "no leader cut off from the API server stepped down:\n{}",
        report.trace.render()
    );
}

/// Failover and planned switchover: every class aimed at the MAIN (kills, node losses, the two
/// partitions, requested switchovers) with operator crashes, which land on any step of a
/// failover, and pod kills. Failover is on in the clusters these seeds draw it for; the run must
/// satisfy every oracle (one MAIN acknowledging, no promotion of a healthy MAIN, no acknowledged
/// write lost, the write pod the MAIN again after the heal), and must have promoted and switched.
#[test]
fn failover_and_switchover_through_the_faults_aimed_at_the_main() {
    let mut classes = FaultClass::FAILOVER.to_vec();
    classes.extend([FaultClass::OperatorCrash, FaultClass::PodKill]);
    for seed in [6, 8] {
        let config = RunConfig { duration: Duration::from_secs(240), ..config(seed, classes.clone()) };
        let report = run(&config);
        support::assert_passes(&report, &config);
        let trace = report.trace.render();
        assert!(trace.contains("SET REPLICATION ROLE TO MAIN on"), "seed {seed}: nothing was promoted");
        assert!(trace.contains("request a switchover to"), "seed {seed}: no switchover was requested");
        assert!(trace.contains("PausedByFailover"), "seed {seed}: no read pod became the MAIN");
    }
}

/// The failover classes that need the operator to fence and to cope with a MAIN that comes back
/// mid-failover: a MAIN partitioned from everyone, one that returns right after the failover's
/// intent is recorded, two failovers in a row, flapping readiness, and an operator crash after
/// each step of a failover. Seeds 11 and 16 (240 s) must satisfy every oracle, and must have
/// promoted, stopped a silent old MAIN, crashed the operator on a failover step, and seen an old
/// MAIN return during a failover.
#[test]
fn the_old_main_is_fenced_and_may_return_while_it_is_replaced() {
    let classes = vec![
        FaultClass::MainPartitionAll,
        FaultClass::MainFlap,
        FaultClass::FailoverCrash,
        FaultClass::MainReturns,
        FaultClass::FailoverTwice,
    ];
    for seed in [11, 16] {
        let config = RunConfig { duration: Duration::from_secs(240), ..config(seed, classes.clone()) };
        let report = run(&config);
        support::assert_passes(&report, &config);
        let trace = report.trace.render();
        assert!(trace.contains("SET REPLICATION ROLE TO MAIN on"), "seed {seed}: nothing was promoted");
        assert!(trace.contains(": stop pod"), "seed {seed}: no old MAIN was stopped");
        assert!(trace.contains("crashed right after a failover step"), "seed {seed}: no crash on a failover step");
        assert!(trace.contains("returns during the failover"), "seed {seed}: no old MAIN returned mid-failover");
    }
}
