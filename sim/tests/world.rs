//! Bounded sweeps of the turmoil world in `cargo test`: every fault class is exercised, every run
//! must satisfy the oracles, and a replayed seed must produce the same timeline.

use std::collections::BTreeSet;
use std::time::Duration;

use sim::world::faults::FaultClass;
use sim::world::run::{RunConfig, RunReport, run};

fn config(seed: u64, classes: Vec<FaultClass>) -> RunConfig {
    RunConfig {
        seed,
        duration: Duration::from_secs(120),
        heal: Duration::from_secs(120),
        replicas: 3,
        classes,
        every_class: true,
        schedule: None,
    }
}

fn check(report: &RunReport) {
    assert!(
        report.violations.is_empty(),
        "seed {} violated: {:#?}\nreplay: cargo run --release -p sim -- --seed {} --duration 120 --heal 120 --every-class --faults {} --timeline\n{}",
        report.seed,
        report.violations,
        report.seed,
        report.schedule.counts().keys().map(|c| c.name()).collect::<Vec<_>>().join(","),
        report.trace.render()
    );
}

/// Each seed runs every class of its group; the groups together cover every class.
#[test]
fn bounded_sweep_covers_every_fault_class() {
    let groups: Vec<Vec<FaultClass>> = FaultClass::ALL.chunks(4).map(<[_]>::to_vec).collect();
    let mut exercised = BTreeSet::new();
    for seed in 1..=24u64 {
        let group = groups[(seed as usize) % groups.len()].clone();
        let report = run(&config(seed, group));
        check(&report);
        exercised.extend(report.injected.keys().cloned());
        assert!(report.convergence_ms.is_some());
    }
    for class in FaultClass::ALL {
        assert!(exercised.contains(class.name()), "{class} was never injected");
    }
}

#[test]
fn a_seed_replays_exactly() {
    let config = config(42, FaultClass::ALL.to_vec());
    let first = run(&config);
    let second = run(&config);
    assert!(!first.trace.entries.is_empty());
    assert_eq!(first.digest, second.digest, "same seed, different timelines");
    assert_eq!(first.trace.entries, second.trace.entries);
    let other = run(&RunConfig { seed: 43, ..config });
    assert_ne!(first.digest, other.digest, "different seeds should differ");
}

/// Seeds that once failed, kept so their scenarios stay covered:
/// - 15: a read pod lost its volume and came back as a new MAIN while the MAIN's cached row still
///   said `ready`; dropping that row is right (the oracle now checks which MAIN a replica follows);
/// - 95: with a stale API view, every status write woke the operator again (the simulated API
///   server now treats writes that change nothing as no-ops, as Kubernetes does, so no watch
///   event and no reconcile storm).
#[test]
fn regression_seeds() {
    // The first 16 classes were all there were when these seeds failed: the same classes give
    // the same fault schedule.
    for seed in [15, 95] {
        let report = run(&RunConfig {
            seed,
            duration: Duration::from_secs(600),
            heal: Duration::from_secs(180),
            classes: FaultClass::ALL[..16].to_vec(),
            ..RunConfig::default()
        });
        check(&report);
    }
}
