//! The shared scenarios (`fake_memgraph::scenarios`) against the fake on loopback TCP, one test
//! per scenario and emulated version. The `e2e` crate runs the same scripts against real
//! Memgraph in containers and compares the two transcripts step by step.

use fake_memgraph::MgVersion;
use fake_memgraph::scenarios::{self, FakeTarget};
use fake_memgraph::version::{NEWEST, OLDEST};
use libtest_mimic::{Arguments, Failed, Trial};

/// The versions the e2e suite runs real Memgraph at: the operator's default and the oldest it
/// supports.
const VERSIONS: [MgVersion; 2] = [NEWEST, OLDEST];

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for version in VERSIONS {
        for scenario in scenarios::all(version) {
            let name = format!("{}::v{}_{}", scenario.name, version.major, version.minor);
            trials.push(Trial::test(name, move || run(version, &scenario)));
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}

fn run(version: MgVersion, scenario: &scenarios::Scenario) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let mut target = FakeTarget::start(version, &scenario.instances).await?;
        let transcript = scenarios::run(scenario, &mut target).await;
        target.kill_all();
        transcript.check().map_err(Failed::from)
    })
}
