//! What the simulation's integration tests share: the verdict on one run.

use sim::world::run::{RunConfig, RunReport};

/// Fail unless the run satisfied every oracle and converged, printing the command that replays
/// it and its timeline.
pub fn assert_passes(report: &RunReport, config: &RunConfig) {
    let classes: Vec<&str> = config.classes.iter().map(|c| c.name()).collect();
    assert!(
        report.violations.is_empty(),
        "seed {} violated: {:#?}\nreplay: cargo run --release -p sim -- --seed {} --duration {} --heal {}{} --faults {} --timeline --svg seed.svg\n{}",
        report.seed,
        report.violations,
        report.seed,
        config.duration.as_secs(),
        config.heal.as_secs(),
        if config.every_class { " --every-class" } else { "" },
        classes.join(","),
        report.trace.render()
    );
    assert!(report.convergence_ms.is_some(), "seed {} never converged", report.seed);
}
