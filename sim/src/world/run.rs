//! One simulated run: build the world from a seed, drive it step by step, inject faults, judge
//! it continuously, heal, wait for convergence, watch it calm for a while, then judge reads,
//! acknowledged writes and snapshots over the whole run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_memgraph::{Role, Value as FakeValue};
use serde::Serialize;

use super::clusters::{self, Setup};
use super::driver::World;
use super::faults::{FaultClass, Schedule};
use super::operator::{self, Gate};
use super::oracles::availability::{outages, served};
use super::oracles::{Violation, failover, ms, reads, writes};
use super::picture::{MarkKind, Picture};
use super::pods::Kubelet;
use super::report::ClusterReport;
use super::rng::Rng;
use super::time::SimClock;
use super::trace::Trace;
use super::truth::{TruthSource, write_pod};
use super::workload::{self, Kind, Ledger, SharedLedger};
use crate::apiserver::ApiServer;

/// Namespace of the simulated clusters.
pub const NAMESPACE: &str = "sim";
/// Simulated time per turmoil step. Network messages take 1–2 ms, so a round trip costs one
/// step; 10 ms keeps Memgraph's 1 s heartbeats and the operator's timeouts well resolved.
pub const TICK: Duration = Duration::from_millis(10);
/// How often the oracles sample the truth. Their bounds are tens of seconds; what happens
/// between samples is judged at the instant it happens (the gate's strict checks).
pub const CHECK_EVERY: Duration = Duration::from_millis(200);
/// How long a converged world is watched for economy and freshness before the run ends.
pub const CALM: Duration = Duration::from_secs(60);

/// Time a cluster bootstrapped from a backup after the run has to come up as a verified MAIN.
pub const BOOTSTRAP: Duration = Duration::from_secs(120);
/// Name of that cluster.
pub const RESTORED: &str = "r";

/// What the bootstrap after the run found.
#[derive(Debug, Clone, Serialize)]
pub struct BootstrapCheck {
    /// The cluster whose backup was restored.
    pub source: String,
    /// The backup.
    pub backup: String,
    /// Writes acknowledged before the backup's snapshot, all found on the restored MAIN.
    pub writes_checked: usize,
    /// Simulated ms until the restored cluster's MAIN was verified.
    pub ready_ms: Option<u64>,
    /// Whether its data was judged (not after the source lost its write volume).
    pub judged: bool,
}

/// After the run: create a cluster bootstrapped from the newest backup the run took of the
/// first cluster with backups, wait for its MAIN, and check that it holds every write
/// acknowledged before that backup's snapshot and nothing that was never written.
fn bootstrap_from_backup(
    world: &mut World<'_>,
    clock: &SimClock,
    setups: &[Setup],
    ledgers: &BTreeMap<String, SharedLedger>,
) -> Option<BootstrapCheck> {
    // The run is over for the clients: their writes stop here, and the judgement of every
    // cluster's acknowledged writes (after this phase) sees replication settled, not a write
    // in flight.
    for setup in setups {
        world.sim.crash(workload::host_name(&setup.name));
    }
    let settle = world.now() + Duration::from_secs(2);
    while world.now() < settle && world.sim.step().is_ok() {
        clock.set_elapsed(world.now());
    }
    let source = setups.iter().find(|s| s.backups)?;
    let prefix = format!("backups/{}", source.name);
    let store = world.kubelet.store.clone();
    let epoch = memgraph_operator::backup::manifest::backup_id(
        k8s_openapi::jiff::Timestamp::from_second(super::time::EPOCH_SECONDS).ok()?,
    );
    let entries = super::oracles::backups::entries(&store, &prefix);
    let entry = entries.iter().filter(|e| e.is_good() && e.id >= epoch).max_by_key(|e| e.id.clone())?;
    let snapshot = entry.manifest.as_ref()?.snapshot.name.clone();
    let taken_ms = super::oracles::backups::snapshot_taken_ms(&snapshot)?;
    let started = world.now();
    // The source's image now (an image change may have moved it on): an older one would be
    // refused the backup, rightly.
    let image = world
        .api
        .get_json(&crate::apiserver::Key::new("MemgraphCluster", NAMESPACE, &source.name))
        .and_then(|c| c["spec"]["write"]["image"].as_str().map(str::to_owned))
        .unwrap_or_else(|| clusters::image(&source.version));
    world.note(format!("bootstrap: cluster {RESTORED} is created from backup {} of {}", entry.id, source.name));
    let object = serde_json::json!({
        "apiVersion": "memgraph.io/v1alpha1",
        "kind": "MemgraphCluster",
        "metadata": {"name": RESTORED, "namespace": NAMESPACE},
        "spec": {
            "write": {"image": image},
            "read": {"replicas": 1},
            "bootstrap": {"fromBackup": {
                "bucket": super::backups::BUCKET,
                "prefix": prefix,
                "endpoint": "http://object-store.sim:9000",
                "secretRef": {"name": super::backups::CREDENTIALS_SECRET},
                "backupId": entry.id,
            }},
        },
    });
    world.api.create(object).ok();
    let write = write_pod(RESTORED);
    let mut steps: u64 = 0;
    let mut ready_ms = None;
    while world.now() < started + BOOTSTRAP {
        if world.sim.step().is_err() {
            break;
        }
        steps += 1;
        clock.set_elapsed(world.now());
        if steps.is_multiple_of(10) {
            world.kubelet.sync(&mut world.sim, &mut world.trace);
        }
        if steps.is_multiple_of(20) {
            let key = crate::apiserver::Key::new("MemgraphCluster", NAMESPACE, RESTORED);
            let done = world.api.get_json(&key).is_some_and(|c| c["status"]["bootstrap"]["state"] == "Completed");
            if done && world.source.server(&write).is_some_and(|s| s.role() == Role::Main) {
                ready_ms = Some(ms(world.now() - started));
                break;
            }
        }
    }
    let at_ms = ms(world.now());
    let mut check = BootstrapCheck {
        source: source.name.clone(),
        backup: entry.id.clone(),
        writes_checked: 0,
        ready_ms,
        judged: false,
    };
    let violation = |what: String| Violation { at_ms, cluster: RESTORED.to_owned(), what };
    if ready_ms.is_none() {
        world.violations.push(violation(format!(
            "the cluster bootstrapped from backup {} had no verified MAIN with its bootstrap completed after {} s",
            entry.id,
            BOOTSTRAP.as_secs()
        )));
        return Some(check);
    }
    // After the source lost its write volume a person restored its MAIN from a replica, and
    // under ASYNC acknowledged writes may be gone from the source itself (the writes oracle
    // measures that); what its backups hold is then not judged against every acknowledgement.
    if world.clusters.get(&source.name).is_some_and(|c| c.volume_lost) {
        return Some(check);
    }
    check.judged = true;
    let ids = world.source.server(&write).map(|s| written_ids(&s)).unwrap_or_default();
    let ledger = ledgers.get(&source.name).map(|l| l.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone());
    let judged = ledger
        .map(|l| super::oracles::backups::holds(&format!("the MAIN restored from {}", entry.id), &ids, &l, taken_ms));
    match judged {
        Some(Ok(n)) => check.writes_checked = n,
        Some(Err(e)) => world.violations.push(violation(e)),
        None => {}
    }
    Some(check)
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The seed: everything else follows from it.
    pub seed: u64,
    /// Simulated time with faults.
    pub duration: Duration,
    /// Simulated time allowed for convergence after the faults stop.
    pub heal: Duration,
    /// Read replicas of the first cluster at the start.
    pub replicas: i32,
    /// Fault classes a run may draw from.
    pub classes: Vec<FaultClass>,
    /// Use every class in `classes` instead of a random subset.
    pub every_class: bool,
    /// Replace the generated schedule (shrinking replays a reduced one).
    pub schedule: Option<Schedule>,
    /// How many clusters share the operator (`None`: drawn from the seed).
    pub clusters: Option<usize>,
    /// Draw the run as a picture.
    pub picture: bool,
    /// Turn failover on in half the clusters whatever the fault classes (the default); `false`:
    /// only in runs that may draw a class aimed at the MAIN.
    pub failover_everywhere: bool,
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
            clusters: None,
            picture: false,
            failover_everywhere: true,
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
    /// Time from the end of the faults until every cluster equalled a fresh deploy.
    pub convergence_ms: Option<u64>,
    /// Per cluster figures.
    pub clusters: Vec<ClusterReport>,
    /// Delays between a read pod becoming ready and being labelled, in ms.
    pub ready_to_routable_ms: Vec<u64>,
    /// Total time routing or status claims lagged the truth, in ms.
    pub claim_lag_ms: u64,
    /// Reconciles that returned an error.
    pub failed_reconciles: u64,
    /// Times the leader-election Lease changed hands.
    pub handovers: u64,
    /// Acts (API writes, Bolt queries) the leadership oracle judged.
    pub leader_acts: u64,
    /// Total time no operator led, in ms.
    pub leaderless_ms: u64,
    /// Violations.
    pub violations: Vec<Violation>,
    /// The timeline.
    pub trace: Trace,
    /// Digest of the timeline.
    pub digest: u64,
    /// The picture, when asked for.
    #[serde(skip)]
    pub picture: Option<Picture>,
    /// The bootstrap from a backup after the run, when a backup was taken.
    pub bootstrap: Option<BootstrapCheck>,
}

impl RunReport {
    /// Acknowledged writes over every cluster.
    pub fn acked(&self) -> usize {
        self.clusters.iter().map(|c| c.durability.acked).sum()
    }
}

/// Knobs of slow disks: µs per node for snapshots and for recovery at start-up.
fn slow_disk_args(schedule: &Schedule) -> Vec<String> {
    schedule
        .faults
        .iter()
        .find(|f| f.class == FaultClass::SlowDisk)
        .map(|f| {
            let snapshot = 500 + f.pick % 4_500;
            let recovery = 200 + (f.pick >> 16) % 1_800;
            vec![
                format!("--fake-snapshot-micros-per-node={snapshot}"),
                format!("--fake-recovery-micros-per-node={recovery}"),
            ]
        })
        .unwrap_or_default()
}

fn written_ids(server: &fake_memgraph::ServerHandle) -> BTreeSet<i64> {
    server
        .nodes()
        .iter()
        .filter(|n| n.labels.iter().any(|l| l == workload::LABEL))
        .filter_map(|n| match n.properties.get("id") {
            Some(FakeValue::Int(id)) => Some(*id),
            _ => None,
        })
        .collect()
}

/// Run one simulation.
pub fn run(config: &RunConfig) -> RunReport {
    let mut rng = Rng::new(config.seed);
    let schedule = config
        .schedule
        .clone()
        .unwrap_or_else(|| Schedule::generate(&mut rng.fork(1), config.duration, &config.classes, config.every_class));
    let mut setups = clusters::draw(&mut rng.fork(4), config.clusters, config.replicas);
    clusters::draw_backups(&mut rng.fork(5), &mut setups);
    // A stream of its own, not a fork of the run's (a fork advances it, and every seed's run,
    // the regression seeds' among them, would change).
    let aimed = config.failover_everywhere || config.classes.iter().any(|c| FaultClass::FAILOVER.contains(c));
    clusters::draw_failover(&mut Rng::new(config.seed ^ 0x6661_696c_6f76_6572), &mut setups, aimed);
    let clock = SimClock::default();
    let api = ApiServer::new(Arc::new(clock.clone()));
    let sim = turmoil::Builder::new()
        .simulation_duration(config.duration + config.heal + CALM + BOOTSTRAP + Duration::from_secs(60))
        .tick_duration(TICK)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(2))
        .rng_seed(config.seed)
        // A listen backlog like Linux's default (somaxconn 4096): a link held for minutes
        // delivers every connection attempt made across it at once when it heals (the health
        // probe makes one a second), which turmoil's default of 64 turns into a panic.
        .tcp_capacity(4096)
        .build();
    api.create(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": super::backups::CREDENTIALS_SECRET, "namespace": NAMESPACE},
        "stringData": {"access-key-id": super::backups::ACCESS_KEY, "secret-access-key": super::backups::SECRET_KEY},
    }))
    .ok();
    for setup in &setups {
        api.create(setup.object(NAMESPACE)).ok();
    }
    let store = memgraph_operator::backup::store::MemStore::new();
    for setup in setups.iter().filter(|s| s.backups) {
        let key = crate::apiserver::Key::new("MemgraphCluster", NAMESPACE, &setup.name);
        if let Some(uid) = api.get_json(&key).and_then(|c| c["metadata"]["uid"].as_str().map(str::to_owned)) {
            super::backups::seed_old_backups(&store, &setup.name, NAMESPACE, &uid);
        }
    }
    let mut args = vec!["--fake-replica-check-frequency-ms=1000".to_owned()];
    args.extend(slow_disk_args(&schedule));
    let mut kubelet = Kubelet::new(api.clone(), clock.clone(), args, rng.fork(2).next_u64());
    kubelet.store = store;
    let names: Vec<String> = setups.iter().map(|s| s.name.clone()).collect();
    let source = TruthSource::new(api.clone(), kubelet.servers(), kubelet.lost_nodes(), kubelet.flaps(), names);
    let log = super::operator::SharedLog::default();
    let gates: Vec<Arc<Gate>> =
        (0..operator::OPERATOR_HOSTS.len()).map(|by| Arc::new(Gate::new(source.clone(), by, log.clone()))).collect();
    let ledgers: BTreeMap<String, SharedLedger> =
        setups.iter().map(|s| (s.name.clone(), Arc::new(Mutex::new(Ledger::default())))).collect();
    let mut world =
        World::new(sim, api.clone(), kubelet, source, gates.clone(), log, rng.fork(3), setups.clone(), &ledgers);
    world.lanes.enabled = config.picture;
    world.note(format!(
        "clusters: {}; routing and status claims are judged with a {} s bound, {} s while a fault that slows the \
         operator is in force",
        setups
            .iter()
            .map(|s| format!(
                "{} ({}, {} {}, {} replicas, snapshots '{}'{})",
                s.name,
                s.version,
                s.mode,
                s.durability,
                s.replicas,
                s.schedule,
                if s.backups { ", backups" } else { "" }
            ))
            .collect::<Vec<_>>()
            .join("; "),
        super::oracles::TIGHT.as_secs(),
        super::oracles::LOOSE.as_secs()
    ));
    let backups = super::backups::context(&world.kubelet.store);
    for gate in gates {
        operator::install(&mut world.sim, api.clone(), clock.clone(), gate, backups.clone());
    }
    for setup in &setups {
        let seed = world.rng.next_u64();
        workload::install(&mut world.sim, api.clone(), &setup.name, ledgers[&setup.name].clone(), seed);
    }
    drive(&mut world, &schedule, config, &clock, &api);
    let bootstrap = bootstrap_from_backup(&mut world, &clock, &setups, &ledgers);
    let mut report = finish(world, config, schedule, &ledgers, &setups);
    report.bootstrap = bootstrap;
    report
}

fn drive(world: &mut World<'_>, schedule: &Schedule, config: &RunConfig, clock: &SimClock, api: &ApiServer) {
    let stale_views = schedule.faults.iter().any(|f| f.class == FaultClass::StaleView);
    let mut next_fault = 0;
    let mut steps: u64 = 0;
    let mut healed = false;
    let end = config.duration + config.heal;
    let check_every = CHECK_EVERY;
    let mut last_check = Duration::ZERO;
    let mut calm_until: Option<Duration> = None;
    loop {
        let now = world.now();
        if calm_until.is_some_and(|until| now >= until) || (calm_until.is_none() && now >= end) {
            break;
        }
        if let Err(e) = world.sim.step() {
            world.violations.push(Violation {
                at_ms: ms(now),
                cluster: String::new(),
                what: format!("simulation error: {e}"),
            });
            break;
        }
        steps += 1;
        let now = world.now();
        clock.set_elapsed(now);
        // Past views are only needed to serve stale reads.
        if stale_views && steps.is_multiple_of(50) {
            api.checkpoint(ms(now));
        }
        if steps.is_multiple_of(10) {
            world.kubelet.sync(&mut world.sim, &mut world.trace);
        }
        world.crash_if_frozen();
        world.follow_leadership();
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
                // A pending crash-after-write must not fire in the heal. The per-round looks
                // stay: a reconcile in flight across the heal still judges by what it saw
                // (`restart_operator` resets a gate itself when it restarts the process).
                world.restart_operators();
                world.note("heal: faults stop".to_owned());
                world.switch_back_requested();
            }
        } else {
            world.expire_windows(false);
        }
        if now >= last_check + check_every {
            let step = now - last_check;
            last_check = now;
            world.check(now, step);
            if healed
                && calm_until.is_none()
                && steps.is_multiple_of(100)
                && world.check_convergence(now, config.duration)
            {
                calm_until = Some(now + CALM);
                world.note(format!("every cluster converged; watching it calm for {} s", CALM.as_secs()));
            }
        }
    }
    // Whoever converged must still be converged after the calm watch. The workload keeps
    // writing, so a replica may be a transaction behind at any instant, and Memgraph itself
    // flips replicas to `invalid` now and then (2.21–3.0 on every `SHOW REPLICAS` that races a
    // commit) and recovers them within seconds, the status following within the claim bound:
    // the cluster must be converged again within that bound, with the world still running.
    if calm_until.is_some() {
        let first: Vec<Option<Duration>> = world.clusters.values().map(|c| c.converged_at).collect();
        let deadline = world.now() + super::oracles::TIGHT;
        loop {
            let now = world.now();
            if world.check_convergence(now, config.duration) {
                // Still converged: the time it first converged is what counts.
                for (c, at) in world.clusters.values_mut().zip(first) {
                    c.converged_at = at.or(c.converged_at);
                }
                break;
            }
            if now >= deadline {
                break;
            }
            for _ in 0..20 {
                if world.sim.step().is_err() {
                    break;
                }
                steps += 1;
                clock.set_elapsed(world.now());
                if steps.is_multiple_of(10) {
                    world.kubelet.sync(&mut world.sim, &mut world.trace);
                }
                world.crash_if_frozen();
                world.follow_leadership();
                world.expire_windows(false);
            }
            let now = world.now();
            world.check(now, now - last_check);
            last_check = now;
        }
    }
    leftover_test_nodes(world, clock, &mut steps);
}

/// Test nodes on `world`'s pods, by pod: (pod, ids).
fn test_nodes(world: &World<'_>) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for setup in &world.setups {
        let truth = world.source.cluster(&setup.name);
        for pod in truth.pods.keys() {
            let Some(server) = world.source.server(pod) else { continue };
            let ids: Vec<String> = server
                .nodes()
                .into_iter()
                .filter(|n| n.labels.iter().any(|l| l == memgraph_operator::memgraph::TEST_LABEL))
                .map(|n| format!("{:?}", n.properties.get("id")))
                .collect();
            if !ids.is_empty() {
                found.push((pod.clone(), ids));
            }
        }
    }
    found
}

/// No test node survives in user data: a node seen at the end must be gone once a test in
/// flight has ended (at most LAG_GIVE_UP) and the next one has removed what a crash left
/// (the lag measurement runs every minute), with the world still running.
fn leftover_test_nodes(world: &mut World<'_>, clock: &SimClock, steps: &mut u64) {
    let first = test_nodes(world);
    if first.is_empty() {
        return;
    }
    let deadline = world.now()
        + Duration::from_secs(60)
        + memgraph_operator::reconcile::plan::validation::LAG_GIVE_UP
        + Duration::from_secs(10);
    let mut left = first;
    while !left.is_empty() && world.now() < deadline {
        for _ in 0..200 {
            if world.sim.step().is_err() {
                break;
            }
            *steps += 1;
            clock.set_elapsed(world.now());
            if steps.is_multiple_of(10) {
                world.kubelet.sync(&mut world.sim, &mut world.trace);
            }
        }
        let now = test_nodes(world);
        // Only nodes that were there at the end count: a new test may have written its own.
        left.retain_mut(|(pod, ids)| {
            ids.retain(|id| now.iter().any(|(p, later)| p == pod && later.contains(id)));
            !ids.is_empty()
        });
    }
    for (pod, ids) in left {
        world.violations.push(Violation {
            at_ms: ms(world.now()),
            cluster: world
                .setups
                .iter()
                .find(|s| pod.starts_with(&format!("{}-", s.name)))
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            what: format!(
                "test nodes {} are still in {pod}'s data long after the tests that wrote them",
                ids.join(", ")
            ),
        });
    }
}

fn finish(
    mut world: World<'_>,
    config: &RunConfig,
    schedule: Schedule,
    ledgers: &BTreeMap<String, SharedLedger>,
    setups: &[Setup],
) -> RunReport {
    let end_ms = ms(world.now());
    let mut violations = std::mem::take(&mut world.violations);
    let mut clusters = Vec::new();
    let mut claim_lag = Duration::ZERO;
    for setup in setups {
        let name = &setup.name;
        let Some(state) = world.clusters.get(name) else { continue };
        let ledger = ledgers[name].lock().map(|l| l.clone()).unwrap_or_default();
        if state.converged_at.is_none() {
            violations.push(Violation {
                at_ms: end_ms,
                cluster: name.clone(),
                what: format!(
                    "liveness: not converged {} s after the faults stopped: {}",
                    config.heal.as_secs(),
                    state.not_converged
                ),
            });
        }
        // Acknowledged writes against the final MAIN and the replicas in sync with it.
        let truth = world.source.cluster(name);
        let write = truth.main_pod(name);
        let main_server = world.source.server(&write).filter(|s| s.role() == Role::Main);
        let main_ids = main_server.as_ref().map(written_ids);
        let names = memgraph_operator::names::ClusterNames::new(name.clone(), NAMESPACE);
        let replica_ids: Vec<(String, BTreeSet<i64>)> = truth
            .replica_instances(name)
            .into_iter()
            .filter(|i| truth.instance_usable(name, *i))
            .filter_map(|i| {
                let pod = names.pod(i);
                world.source.server(&pod).map(|s| (pod, written_ids(&s)))
            })
            .collect();
        let holders: Vec<writes::Holder<'_>> =
            replica_ids.iter().map(|(pod, ids)| writes::Holder { pod, ids }).collect();
        let main_holder = main_ids.as_ref().map(|ids| writes::Holder { pod: &write, ids });
        let (durability, lost, found) = writes::judge(name, end_ms, &ledger, main_holder, &holders, state.volume_lost);
        violations.extend(found);
        let cond = world.conditions(name);
        let excused = world.excused(name);
        // Every MAIN of the run wrote the cluster's history.
        let mut mains = state.mains.clone();
        mains.insert(write.clone());
        let mains: Vec<String> = mains.into_iter().collect();
        let (freshness, found) = reads::judge(name, &ledger, &mains, &lost, &cond, &excused, &world.starts);
        violations.extend(found);
        violations.extend(failover::split_brain(name, &ledger.acked, &state.failover.promotions));
        violations.extend(failover::strict_second_main(name, &ledger.acked, &state.failover));
        let losses: Vec<(String, Duration, Duration)> = world
            .history
            .iter()
            .filter(|(class, _, _, t)| {
                matches!(
                    class,
                    FaultClass::MainKill
                        | FaultClass::MainNodeLoss
                        | FaultClass::MainPartitionReplicas
                        | FaultClass::MainPartitionAll
                        | FaultClass::MainReturns
                        | FaultClass::FailoverCrash
                        | FaultClass::FailoverTwice
                ) && t.as_deref() == Some(name.as_str())
            })
            .map(|(class, start, end, _)| {
                let end = (*end).min(Duration::from_millis(end_ms));
                (class.name().to_owned(), *start, end.saturating_sub(*start))
            })
            .collect();
        let recoveries = failover::recoveries(&losses, &ledger.acked, &state.failover.promotions);
        let rpo = failover::rpo(&ledger.acked, &lost);
        let (snapshots, found) = state.snapshots.judge(name, end_ms);
        violations.extend(found);
        let backups = setup.backups.then(|| {
            let (count, found) = state.backups.judge(
                Duration::from_millis(end_ms),
                name,
                &world.kubelet.store,
                &format!("backups/{name}"),
                &ledger,
                state.volume_lost,
            );
            violations.extend(found);
            count
        });
        let found_outages: Vec<_> = [Kind::Write, Kind::Read]
            .into_iter()
            .flat_map(|k| outages(&ledger, k, end_ms, Duration::from_secs(1)))
            .collect();
        for o in &found_outages {
            world.trace.record(
                Duration::from_millis(o.start_ms),
                format!(
                    "[{name}] {}s unavailable {:.1} s: {}",
                    o.kind,
                    (o.end_ms - o.start_ms) as f64 / 1000.0,
                    o.cause
                ),
            );
            world.lanes.mark(format!("{name} {}s", o.kind), o.start_ms, o.cause.clone(), MarkKind::Unavailable);
        }
        claim_lag += state.routing.lag_time() + state.status.lag_time();
        clusters.push(ClusterReport {
            setup: setup.clone(),
            writes: served(&ledger, Kind::Write),
            reads: served(&ledger, Kind::Read),
            outages: found_outages,
            freshness,
            durability,
            snapshots,
            backups,
            cost: economy_cost(state),
            convergence_ms: state.converged_at.map(ms),
            recoveries,
            rpo,
        });
    }
    violations.sort_by_key(|v| v.at_ms);
    for (name, n) in world.api.injected() {
        *world.injected.entry(name.to_owned()).or_insert(0) += n;
    }
    let convergence_ms =
        clusters.iter().map(|c| c.convergence_ms).collect::<Option<Vec<u64>>>().and_then(|v| v.into_iter().max());
    let failed_reconciles = world.failed_reconciles;
    let digest = world.trace.digest();
    let picture = config.picture.then(|| {
        let title = format!("seed {}: {} violations", config.seed, violations.len());
        let bands = world.bands.clone();
        std::mem::take(&mut world.lanes).picture(title, end_ms, &bands)
    });
    RunReport {
        seed: config.seed,
        schedule,
        injected: world.injected,
        simulated_ms: end_ms,
        convergence_ms,
        clusters,
        ready_to_routable_ms: world.ready_to_routable,
        claim_lag_ms: ms(claim_lag),
        failed_reconciles,
        handovers: world.leadership.handovers,
        leader_acts: world.leadership.acts,
        leaderless_ms: world.downtime.iter().map(|(s, e)| ms(e.saturating_sub(*s))).sum(),
        violations,
        trace: world.trace,
        digest,
        picture,
        bootstrap: None,
    }
}

fn economy_cost(state: &super::driver::ClusterState) -> super::oracles::economy::Cost {
    let mut cost = state.cost.clone();
    cost.calm_s = state.economy.calm.as_secs();
    cost
}
