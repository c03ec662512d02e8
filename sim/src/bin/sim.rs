//! `sim`: seeded fault-injection runs of the operator against fake Memgraph pods.
//!
//! With no arguments it sweeps a default set of seeds (about a minute on 2 cores) and prints a
//! summary; `--seed N` replays one run exactly and can print its timeline.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use sim::world::faults::{FaultClass, Schedule};
use sim::world::run::{RunConfig, RunReport, run};
use sim::world::shrink::shrink;

/// Deterministic simulation of memgraph-operator with injected faults.
#[derive(Parser, Debug)]
#[command(name = "sim", version, about)]
struct Cli {
    /// Replay one run with this seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Number of runs in a sweep (seeds start at --first-seed).
    #[arg(long, default_value_t = 96)]
    runs: u64,
    /// First seed of a sweep.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Fault classes to draw from, comma-separated (default: all). `--faults list` lists them.
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Use every listed fault class in each run instead of a random subset.
    #[arg(long)]
    every_class: bool,
    /// Turn failover on only in runs that may draw a fault class aimed at the MAIN (by default
    /// it is on in half the clusters of every run, drawn from the seed).
    #[arg(long)]
    no_failover: bool,
    /// Simulated seconds of faults per run.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Simulated seconds allowed for convergence after the faults stop.
    #[arg(long, default_value_t = 180)]
    heal: u64,
    /// Read replicas at the start.
    #[arg(long, default_value_t = 3)]
    replicas: i32,
    /// Print the timeline of a single run.
    #[arg(long)]
    timeline: bool,
    /// Print reports as JSON.
    #[arg(long)]
    json: bool,
    /// Run each seed twice and fail if the timelines differ.
    #[arg(long)]
    check_determinism: bool,
    /// On failure, shrink the fault schedule to a minimal failing one.
    #[arg(long)]
    shrink: bool,
    /// Replay a fault schedule from a JSON file (as printed by --shrink).
    #[arg(long)]
    schedule: Option<PathBuf>,
    /// Worker threads for a sweep (each run is single-threaded and deterministic).
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Clusters sharing the operator (default: 1, 2 or 3, drawn from the seed).
    #[arg(long)]
    clusters: Option<usize>,
    /// Draw a single run as an SVG picture into this file (lanes over simulated time).
    #[arg(long)]
    svg: Option<PathBuf>,
}

fn classes(cli: &Cli) -> Result<Vec<FaultClass>, String> {
    if cli.faults.is_empty() {
        return Ok(FaultClass::ALL.to_vec());
    }
    cli.faults.iter().map(|f| f.parse()).collect()
}

fn config(cli: &Cli, seed: u64, classes: &[FaultClass], schedule: Option<Schedule>) -> RunConfig {
    RunConfig {
        seed,
        duration: Duration::from_secs(cli.duration),
        heal: Duration::from_secs(cli.heal),
        replicas: cli.replicas,
        classes: classes.to_vec(),
        every_class: cli.every_class,
        schedule,
        clusters: cli.clusters,
        picture: cli.svg.is_some(),
        failover_everywhere: !cli.no_failover,
    }
}

fn replay_command(cli: &Cli, seed: u64) -> String {
    let mut cmd = format!(
        "cargo run --release -p sim -- --seed {seed} --duration {} --heal {} --replicas {}",
        cli.duration, cli.heal, cli.replicas
    );
    if !cli.faults.is_empty() {
        cmd.push_str(&format!(" --faults {}", cli.faults.join(",")));
    }
    if cli.every_class {
        cmd.push_str(" --every-class");
    }
    if cli.no_failover {
        cmd.push_str(" --no-failover");
    }
    if let Some(n) = cli.clusters {
        cmd.push_str(&format!(" --clusters {n}"));
    }
    cmd.push_str(&format!(" --timeline --svg seed-{seed}.svg"));
    cmd
}

fn stats(values: &[u64]) -> String {
    if values.is_empty() {
        return "-".to_owned();
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let mean = sorted.iter().sum::<u64>() as f64 / sorted.len() as f64;
    let p = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    format!(
        "mean {:.1} s, p50 {:.1} s, p95 {:.1} s, p99 {:.1} s, max {:.1} s",
        mean / 1000.0,
        p(0.5) as f64 / 1000.0,
        p(0.95) as f64 / 1000.0,
        p(0.99) as f64 / 1000.0,
        p(1.0) as f64 / 1000.0
    )
}

fn percent(fraction: f64) -> String {
    format!("{:.2}%", fraction * 100.0)
}

fn summary(reports: &[RunReport], wall: Duration, jobs: usize) {
    let simulated: u64 = reports.iter().map(|r| r.simulated_ms).sum();
    let mut injected: std::collections::BTreeMap<String, u64> = Default::default();
    for r in reports {
        for (k, v) in &r.injected {
            *injected.entry(k.clone()).or_insert(0) += v;
        }
    }
    let clusters: Vec<&sim::world::report::ClusterReport> = reports.iter().flat_map(|r| r.clusters.iter()).collect();
    let violations: usize = reports.iter().map(|r| r.violations.len()).sum();
    let failed: Vec<u64> = reports.iter().filter(|r| !r.violations.is_empty()).map(|r| r.seed).collect();
    let convergence: Vec<u64> = reports.iter().filter_map(|r| r.convergence_ms).collect();
    let delays: Vec<u64> = reports.iter().flat_map(|r| r.ready_to_routable_ms.iter().copied()).collect();
    let sum = |f: &dyn Fn(&sim::world::report::ClusterReport) -> (usize, usize)| {
        clusters.iter().map(|c| f(c)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let (writes, writes_ok) = sum(&|c| (c.writes.requests, c.writes.succeeded));
    let (reads, reads_ok) = sum(&|c| (c.reads.requests, c.reads.succeeded));
    let ratio = |ok: usize, all: usize| if all == 0 { 1.0 } else { ok as f64 / all as f64 };
    let p99s: Vec<u64> = clusters.iter().map(|c| c.freshness.p99_ms).collect();
    let p50s: Vec<u64> = clusters.iter().map(|c| c.freshness.p50_ms).collect();
    let max_stale = clusters.iter().map(|c| c.freshness.max_ms).max().unwrap_or(0);
    let reconciles: usize = clusters.iter().map(|c| c.cost.reconciles).sum();
    let api_writes: usize = clusters.iter().map(|c| c.cost.api_writes).sum();
    let self_triggered: usize = clusters.iter().map(|c| c.cost.self_triggered).sum();
    let calm_s: u64 = clusters.iter().map(|c| c.cost.calm_s).sum();
    let calm_writes: usize = clusters.iter().map(|c| c.cost.calm_writes).sum();
    let cluster_minutes: f64 = reports.iter().map(|r| r.simulated_ms as f64 / 60_000.0 * r.clusters.len() as f64).sum();
    let issued: u64 = clusters.iter().map(|c| c.snapshots.issued).sum();
    let ticks: usize = clusters.iter().map(|c| c.snapshots.ticks).sum();
    println!();
    println!("runs                      {} ({} clusters)", reports.len(), clusters.len());
    println!("simulated time            {:.1} min", simulated as f64 / 60_000.0);
    println!("wall time                 {:.1} s ({jobs} jobs)", wall.as_secs_f64());
    println!("speed-up over real time   {:.0}x", simulated as f64 / 1000.0 / wall.as_secs_f64().max(1e-9));
    println!("runs per minute           {:.1}", reports.len() as f64 * 60.0 / wall.as_secs_f64().max(1e-9));
    println!("convergence after heal    {}", stats(&convergence));
    println!("ready → routable delay    {}", stats(&delays));
    println!("write availability        {} of {writes} requests", percent(ratio(writes_ok, writes)));
    println!("read availability         {} of {reads} requests", percent(ratio(reads_ok, reads)));
    println!(
        "read staleness            p50 {:.1} s, p99 {:.1} s (median over clusters), max {:.1} s",
        median(&p50s) as f64 / 1000.0,
        median(&p99s) as f64 / 1000.0,
        max_stale as f64 / 1000.0
    );
    println!("acknowledged writes lost, by the mode each cluster started with:");
    for mode in ["ASYNC", "SYNC", "STRICT_SYNC"] {
        let of_mode: Vec<_> = clusters.iter().filter(|c| c.setup.mode == mode).collect();
        let acked: usize = of_mode.iter().map(|c| c.durability.acked).sum();
        let protected: usize = of_mode.iter().map(|c| c.durability.protected).sum();
        let lost: usize = of_mode.iter().map(|c| c.durability.lost).sum();
        let lost_protected: usize = of_mode.iter().map(|c| c.durability.lost_protected).sum();
        println!(
            "  {mode:<12} {lost} of {acked} ({lost_protected} of the {protected} acknowledged while a sync replica was in sync)"
        );
    }
    println!(
        "failover, by mode (RTO: from the loss of the MAIN to the next write acknowledged through the write Service, \
         over losses lasting {} s or more and every kill; RPO: acknowledged writes the final MAIN lacks; goals: RPO 0 for SYNC and \
         STRICT_SYNC, RTO within the detection delay + 2 s = {} s):",
        sim::world::clusters::FAILOVER_DELAY_SECONDS + 2,
        sim::world::clusters::FAILOVER_DELAY_SECONDS + 2
    );
    let long_ms = (sim::world::clusters::FAILOVER_DELAY_SECONDS + 2) * 1000;
    for failover in [true, false] {
        for mode in ["ASYNC", "SYNC", "STRICT_SYNC"] {
            let of_mode: Vec<_> =
                clusters.iter().filter(|c| c.setup.mode == mode && c.setup.failover == failover).collect();
            if of_mode.is_empty() {
                continue;
            }
            let lost: usize = of_mode.iter().map(|c| c.rpo.lost).sum();
            let window = of_mode.iter().map(|c| c.rpo.window_ms).max().unwrap_or(0);
            println!(
                "  {} {mode:<12} {} clusters; RPO {lost} writes, widest window {:.1} s",
                if failover { "failover on " } else { "failover off" },
                of_mode.len(),
                window as f64 / 1000.0
            );
            // Losses shorter than the detection delay recover by themselves; a MAIN cut off from
            // its clients but not from the operator cannot be told from a healthy one.
            for class in [
                "main-node-loss",
                "main-kill",
                "main-partition-replicas",
                "main-partition-all",
                "main-returns",
                "failover-crash",
                "failover-twice",
            ] {
                let instant = class == "main-kill" || class == "failover-crash";
                let needing: Vec<_> = of_mode
                    .iter()
                    .flat_map(|c| c.recoveries.iter())
                    .filter(|r| r.fault == class && (r.lasted_ms >= long_ms || instant))
                    .collect();
                if needing.is_empty() {
                    continue;
                }
                let rtos: Vec<u64> = needing.iter().filter_map(|r| r.rto_ms).collect();
                let failed_over = needing.iter().filter(|r| r.failed_over).count();
                // The failovers alone: what a failover costs, apart from the losses that waited
                // for the MAIN's return (blocked, ASYNC) or came back before the delay.
                let over: Vec<u64> = needing.iter().filter(|r| r.failed_over).filter_map(|r| r.rto_ms).collect();
                let over = if over.is_empty() {
                    String::new()
                } else {
                    let (p50, _, max) = sim::world::oracles::percentiles(&over);
                    format!("; failed over: p50 {:.1} s, max {:.1} s", p50 as f64 / 1000.0, max as f64 / 1000.0)
                };
                println!(
                    "      {class:<24} {} losses, {failed_over} failed over, {} never recovered; RTO {}{over}",
                    needing.len(),
                    needing.len() - rtos.len(),
                    stats(&rtos)
                );
            }
        }
    }
    println!(
        "reconcile economy         {:.1} reconciles per cluster-minute, {:.2} API writes per reconcile, {self_triggered} \
         self-triggered; {calm_writes} writes in {:.0} calm cluster-minutes",
        reconciles as f64 / cluster_minutes.max(1e-9),
        api_writes as f64 / (reconciles.max(1)) as f64,
        calm_s as f64 / 60.0
    );
    println!(
        "leader election           {} handovers of the Lease, {:.1} s without a leader, {} acts of two operators judged",
        reports.iter().map(|r| r.handovers).sum::<u64>(),
        reports.iter().map(|r| r.leaderless_ms).sum::<u64>() as f64 / 1000.0,
        reports.iter().map(|r| r.leader_acts).sum::<u64>()
    );
    println!("snapshots                 {issued} taken for {ticks} schedule ticks");
    let backups: Vec<_> = clusters.iter().filter_map(|c| c.backups.as_ref()).collect();
    println!(
        "backups                   {} completed, {} failed, {} deleted by retention, {} kept at the end, {} writes \
         checked in the newest ({} clusters)",
        backups.iter().map(|b| b.completed).sum::<usize>(),
        backups.iter().map(|b| b.failed).sum::<usize>(),
        backups.iter().map(|b| b.deleted).sum::<usize>(),
        backups.iter().map(|b| b.kept).sum::<usize>(),
        backups.iter().map(|b| b.writes_checked).sum::<usize>(),
        backups.len()
    );
    let boots: Vec<_> = reports.iter().filter_map(|r| r.bootstrap.as_ref()).collect();
    println!(
        "bootstraps from a backup  {} of {} runs, {} with a verified MAIN, {} writes checked",
        boots.len(),
        reports.len(),
        boots.iter().filter(|b| b.ready_ms.is_some()).count(),
        boots.iter().map(|b| b.writes_checked).sum::<usize>()
    );
    println!("faults injected:");
    for (class, n) in &injected {
        println!("  {class:<28} {n}");
    }
    println!(
        "violations                {violations}{}",
        if failed.is_empty() { String::new() } else { format!(" (seeds {failed:?})") }
    );
}

fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

fn print_report(report: &RunReport, cli: &Cli) {
    if cli.json {
        println!("{}", serde_json::to_string_pretty(report).unwrap_or_default());
        return;
    }
    if cli.timeline {
        print!("{}", report.trace.render());
    }
    println!(
        "seed {}: {} simulated s, converged {} after the faults, {} acked writes, digest {:016x}",
        report.seed,
        report.simulated_ms / 1000,
        report.convergence_ms.map_or("never".to_owned(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
        report.acked(),
        report.digest
    );
    for c in &report.clusters {
        println!(
            "  [{}] {} {} {}: writes {:.2}%, reads {:.2}%, staleness p99 {:.1} s, lost {} of {} acked, {} snapshots for {} ticks",
            c.setup.name,
            c.setup.version,
            c.setup.mode,
            c.setup.durability,
            c.writes.fraction() * 100.0,
            c.reads.fraction() * 100.0,
            c.freshness.p99_ms as f64 / 1000.0,
            c.durability.lost,
            c.durability.acked,
            c.snapshots.issued,
            c.snapshots.ticks
        );
        if let Some(b) = &c.backups {
            println!(
                "      backups: {} completed, {} failed, {} deleted, {} kept, {} writes checked in the newest",
                b.completed, b.failed, b.deleted, b.kept, b.writes_checked
            );
        }
    }
    if let Some(b) = &report.bootstrap {
        println!(
            "  bootstrap from backup {} of [{}]: MAIN verified after {}, {}",
            b.backup,
            b.source,
            b.ready_ms.map_or("never".to_owned(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
            if b.judged {
                format!("{} writes acknowledged before the snapshot all there", b.writes_checked)
            } else {
                "data not judged (the source lost its write volume)".to_owned()
            }
        );
    }
    for v in &report.violations {
        println!("  VIOLATION {v}");
    }
}

/// A progress bar on a terminal; elsewhere (CI logs) a plain line every tenth of the sweep.
fn progress(done: usize, total: usize, tty: bool) {
    if tty {
        let width = 30;
        let filled = done * width / total.max(1);
        eprint!("\r[{}{}] {done}/{total} runs", "#".repeat(filled), ".".repeat(width - filled));
        let _ = std::io::stderr().flush();
    } else if done == total || done.is_multiple_of((total / 10).max(1)) {
        eprintln!("{done}/{total} runs done");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.faults.iter().any(|f| f == "list") {
        for class in FaultClass::every() {
            println!("{class}");
        }
        return ExitCode::SUCCESS;
    }
    let classes = match classes(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: --faults: {e}");
            return ExitCode::FAILURE;
        }
    };
    let schedule = match &cli.schedule {
        None => None,
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("error: --schedule {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
    };

    if let Some(seed) = cli.seed {
        let config = config(&cli, seed, &classes, schedule);
        let report = run(&config);
        print_report(&report, &cli);
        if let (Some(path), Some(picture)) = (&cli.svg, &report.picture) {
            match std::fs::write(path, sim::world::picture::render_svg(picture)) {
                Ok(()) => println!("picture written to {}", path.display()),
                Err(e) => {
                    eprintln!("error: --svg {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
        let mut ok = report.violations.is_empty();
        if cli.check_determinism {
            let again = run(&config);
            if again.digest != report.digest {
                println!("NOT DETERMINISTIC: digests {:016x} and {:016x}", report.digest, again.digest);
                ok = false;
            } else {
                println!("deterministic: the replay produced the same timeline");
            }
        }
        if !ok && cli.shrink {
            let minimal = shrink(&config, &report.schedule);
            println!("minimal failing schedule ({} faults):", minimal.faults.len());
            println!("{}", serde_json::to_string_pretty(&minimal).unwrap_or_default());
            println!("save it to a file and replay with --seed {seed} --schedule FILE");
        }
        if !ok {
            println!("replay: {}", replay_command(&cli, seed));
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }

    // A sweep: seeds on worker threads, reports printed in seed order.
    let seeds: Vec<u64> = (cli.first_seed..cli.first_seed + cli.runs).collect();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<RunReport>>> = Mutex::new(vec![None; seeds.len()]);
    let started = Instant::now();
    let jobs = cli.jobs.max(1);
    let tty = std::io::stderr().is_terminal();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&seed) = seeds.get(i) else { break };
                    let mut report = run(&config(&cli, seed, &classes, None));
                    if cli.check_determinism {
                        let again = run(&config(&cli, seed, &classes, None));
                        if again.digest != report.digest {
                            report.violations.push(sim::world::oracles::Violation {
                                at_ms: 0,
                                cluster: String::new(),
                                what: format!(
                                    "not deterministic: digests {:016x} and {:016x}",
                                    report.digest, again.digest
                                ),
                            });
                        }
                    }
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(report);
                    }
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    progress(n, seeds.len(), tty);
                }
            });
        }
    });
    if tty {
        eprintln!();
    }
    let wall = started.elapsed();
    let reports: Vec<RunReport> = results.into_inner().unwrap_or_default().into_iter().flatten().collect();
    for report in &reports {
        if !report.violations.is_empty() || cli.json {
            print_report(report, &cli);
        }
    }
    summary(&reports, wall, jobs);
    let failed: Vec<&RunReport> = reports.iter().filter(|r| !r.violations.is_empty()).collect();
    if failed.is_empty() {
        return ExitCode::SUCCESS;
    }
    for report in failed {
        println!("replay: {}", replay_command(&cli, report.seed));
    }
    ExitCode::FAILURE
}
