//! Real Memgraph in containers (testcontainers, `memgraph/memgraph` images), at the operator's
//! default version and the oldest it supports.
//!
//! Two kinds of tests, for each version:
//! - `typed_queries`: the operator's production Bolt implementation (`Neo4rsBolt` through the
//!   `Bolt` trait) runs every typed query the operator sends, on three containers sharing a
//!   user-defined docker network (replicas are registered by container name): roles, REGISTER
//!   REPLICA in each mode, DROP REPLICA, SHOW REPLICAS in each state the test can produce,
//!   CREATE SNAPSHOT and the snapshot check, and the validation queries.
//! - `scenario::*`: each script of `fake_memgraph::scenarios` (the ones fake-memgraph's own
//!   tests run) against real Memgraph and against the fake; any difference between the two
//!   transcripts fails the test with both outputs, step by step.
//!
//! Before anything, a preflight asks the docker daemon for `/_ping` and makes sure each image
//! is there (pulling it if not). Without a daemon, or without an image, the tests are reported
//! as ignored with the reason; `MGO_E2E_REQUIRE=1` makes that a failure.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use e2e::{block_on, wait_for};
use fake_memgraph::scenarios::{self, FakeTarget, Outcome, Scenario, Target};
use fake_memgraph::{MgVersion, Value};
use libtest_mimic::{Failed, Trial};
use memgraph_operator::api::ReplicationMode;
use memgraph_operator::memgraph::{
    self, Bolt, BoltError, BoltValue, Neo4rsBolt, ReplicaRow, ReplicaStatus, Role, SnapshotOutcome, Timeouts,
};
use memgraph_operator::version::MemgraphVersion;
use testcontainers::bollard;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

const REPOSITORY: &str = "memgraph/memgraph";

/// The images: the operator's default (`api::DEFAULT_IMAGE`) and the oldest release it supports
/// (the oldest the fake emulates, 2.21: DESIGN, seed plan).
fn images() -> Vec<String> {
    let oldest = fake_memgraph::version::OLDEST;
    vec![memgraph_operator::api::DEFAULT_IMAGE.to_owned(), format!("{REPOSITORY}:{}.{}.0", oldest.major, oldest.minor)]
}

fn tag_of(image: &str) -> &str {
    image.rsplit_once(':').map_or("latest", |(_, t)| t)
}

fn fake_version(image: &str) -> Result<MgVersion, String> {
    MgVersion::parse(tag_of(image)).ok_or_else(|| format!("{image}: the fake does not emulate this version"))
}

fn operator_version(image: &str) -> Result<MemgraphVersion, String> {
    MemgraphVersion::from_image(image).ok_or_else(|| format!("{image}: no version in the tag"))
}

/// `v3_12` for test names.
fn version_label(image: &str) -> String {
    let mut parts = tag_of(image).split('.');
    format!("v{}_{}", parts.next().unwrap_or("x"), parts.next().unwrap_or("x"))
}

fn main() -> std::process::ExitCode {
    let args = e2e::arguments();
    let mut tests: Vec<(String, String, Kind)> = Vec::new();
    for image in images() {
        let label = version_label(&image);
        tests.push((format!("typed_queries::{label}"), image.clone(), Kind::Typed));
        let scenarios = fake_version(&image).map(scenarios::all).unwrap_or_default();
        for scenario in scenarios {
            tests.push((format!("scenario::{}::{label}", scenario.name), image.clone(), Kind::Scenario(scenario)));
        }
    }
    if args.list {
        let trials = tests.into_iter().map(|(name, _, _)| Trial::test(name, || Ok(()))).collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }

    let host = e2e::docker_host();
    let daemon = e2e::runtime().block_on(e2e::docker_ping(&host));
    // Only the images of tests that are going to run are pulled.
    let mut image_ok: BTreeMap<String, Result<(), String>> = BTreeMap::new();
    let mut trials = Vec::new();
    for (name, image, kind) in tests {
        if let Err(reason) = &daemon {
            trials.push(e2e::unavailable(name, reason));
            continue;
        }
        let probe = Trial::test(name.clone(), || Ok(()));
        if args.is_filtered_out(&probe) {
            trials.push(probe);
            continue;
        }
        let ready = image_ok.entry(image.clone()).or_insert_with(|| e2e::runtime().block_on(ensure_image(&image)));
        match ready {
            Err(reason) => trials.push(e2e::unavailable(name, reason)),
            Ok(()) => trials.push(match kind {
                Kind::Typed => Trial::test(name, move || typed_queries(image)),
                Kind::Scenario(scenario) => Trial::test(name, move || scenario_against_real(image, scenario)),
            }),
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}

enum Kind {
    Typed,
    Scenario(Scenario),
}

/// Makes sure `image` is in the daemon: inspect, else pull (bounded).
async fn ensure_image(image: &str) -> Result<(), String> {
    use futures::StreamExt;
    let docker = bollard::Docker::connect_with_defaults()
        .map_err(|e| format!("cannot talk to the docker daemon at {}: {e}", e2e::docker_host()))?;
    if docker.inspect_image(image).await.is_ok() {
        return Ok(());
    }
    let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let options = bollard::query_parameters::CreateImageOptions {
        from_image: Some(repo.to_owned()),
        tag: Some(tag.to_owned()),
        ..Default::default()
    };
    let pull = async {
        let mut progress = docker.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            step.map_err(|e| e.to_string())?;
        }
        Ok::<(), String>(())
    };
    match tokio::time::timeout(Duration::from_secs(900), pull).await {
        Ok(Ok(())) => docker.inspect_image(image).await.map(drop).map_err(|e| format!("pulled {image}, but: {e}")),
        Ok(Err(e)) => Err(format!("image {image} is not present and cannot be pulled: {e}")),
        Err(_) => Err(format!("image {image} is not present and pulling it took more than 15 minutes")),
    }
}

// ---------------------------------------------------------------------------------------------
// Memgraph containers

/// Runs of this process, so names never clash between tests (or with another run).
static RUN: AtomicU32 = AtomicU32::new(0);

struct Instance {
    container: ContainerAsync<GenericImage>,
    /// `<container name>:10000`, what the MAIN dials.
    replication: String,
    /// Bolt, as reached from here (the mapped port; it changes when the container restarts).
    bolt: SocketAddr,
}

/// Memgraph containers on one user-defined network, named `mgo-e2e-<pid>-<n>-<instance>`.
struct DockerTarget {
    image: String,
    instances: BTreeMap<String, Instance>,
}

impl DockerTarget {
    async fn start(image: &str, names: &[&str]) -> Result<DockerTarget, String> {
        let run = RUN.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("mgo-e2e-{}-{run}", std::process::id());
        let network = format!("{prefix}-net");
        let mut instances = BTreeMap::new();
        for name in names {
            let container_name = format!("{prefix}-{name}");
            let container = GenericImage::new(REPOSITORY, tag_of(image))
                .with_exposed_port(7687.tcp())
                // Readiness is a Bolt query that answers (memgraph-behaviour §12), not a log line.
                .with_wait_for(WaitFor::Nothing)
                .with_network(network.as_str())
                .with_container_name(container_name.as_str())
                .with_cmd(["--telemetry-enabled=false"])
                .with_startup_timeout(Duration::from_secs(120))
                .start()
                .await
                .map_err(|e| format!("cannot start {image} as {container_name}: {e}"))?;
            let bolt = bolt_address(&container).await?;
            wait_until_answering(bolt, &container_name).await?;
            instances.insert(
                (*name).to_owned(),
                Instance { container, replication: format!("{container_name}:10000"), bolt },
            );
        }
        Ok(DockerTarget { image: image.to_owned(), instances })
    }

    fn instance(&self, name: &str) -> Result<&Instance, String> {
        self.instances.get(name).ok_or_else(|| format!("no instance {name}"))
    }

    /// Bolt address (`host:port`) of `name` for the operator's driver.
    fn bolt(&self, name: &str) -> String {
        self.instances.get(name).map_or_else(|| format!("{name}-missing:1"), |i| i.bolt.to_string())
    }

    /// Removes every container (and with the last one, the network).
    async fn remove(self) {
        for (_, inst) in self.instances {
            let _ = inst.container.rm().await;
        }
    }
}

async fn bolt_address(container: &ContainerAsync<GenericImage>) -> Result<SocketAddr, String> {
    let port = container.get_host_port_ipv4(7687).await.map_err(|e| format!("no mapped Bolt port: {e}"))?;
    let host = container.get_host().await.map_err(|e| format!("no docker host: {e}"))?.to_string();
    // The docker host may be a name; dial the IPv4 address, where the port is mapped.
    let addrs =
        tokio::net::lookup_host((host.as_str(), port)).await.map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut addrs: Vec<SocketAddr> = addrs.collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs.into_iter().next().ok_or_else(|| format!("{host} resolves to nothing"))
}

async fn wait_until_answering(bolt: SocketAddr, name: &str) -> Result<(), String> {
    wait_for(
        &format!("{name} to answer RETURN 1 on {bolt}"),
        Duration::from_secs(90),
        Duration::from_millis(250),
        || async {
            match scenarios::run_on(bolt, "RETURN 1 AS ping", BTreeMap::new()).await {
                Outcome::Rows { .. } => Ok(()),
                other => Err(other.to_string()),
            }
        },
    )
    .await
}

impl Target for DockerTarget {
    fn address(&self, name: &str) -> String {
        self.instances.get(name).map_or_else(|| format!("{name}:10000"), |i| i.replication.clone())
    }

    async fn run(&mut self, name: &str, query: &str, params: BTreeMap<String, Value>) -> Outcome {
        match self.instance(name) {
            Ok(inst) => scenarios::run_on(inst.bolt, query, params).await,
            Err(e) => Outcome::Harness(e),
        }
    }

    async fn stop(&mut self, name: &str) -> Result<(), String> {
        // `docker stop`: SIGTERM, then Memgraph shuts down gracefully (snapshot on exit, as the
        // image's config has it), like the fake's graceful stop.
        self.instance(name)?.container.stop().await.map_err(|e| format!("docker stop {name}: {e}"))
    }

    async fn restart(&mut self, name: &str) -> Result<(), String> {
        let inst = self.instances.get_mut(name).ok_or_else(|| format!("no instance {name}"))?;
        inst.container.start().await.map_err(|e| format!("docker start {name}: {e}"))?;
        inst.bolt = bolt_address(&inst.container).await?;
        let bolt = inst.bolt;
        wait_until_answering(bolt, name).await
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios: the fake held to the real thing

fn scenario_against_real(image: String, scenario: Scenario) -> Result<(), Failed> {
    block_on(async move {
        let version = fake_version(&image)?;
        let mut fake = FakeTarget::start(version, &scenario.instances).await?;
        let fake_run = scenarios::run(&scenario, &mut fake).await;
        fake.kill_all();
        let mut real = DockerTarget::start(&image, &scenario.instances).await?;
        let real_run = scenarios::run(&scenario, &mut real).await;
        let image = real.image.clone();
        real.remove().await;
        scenarios::compare(&fake_run, &real_run, &image)
    })
}

// ---------------------------------------------------------------------------------------------
// The operator's typed queries through its production driver

fn typed_queries(image: String) -> Result<(), Failed> {
    block_on(async move {
        let target = DockerTarget::start(&image, &["main", "r1", "r2"]).await?;
        let result = typed_queries_on(&image, &target).await;
        target.remove().await;
        result
    })
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// `SHOW REPLICAS` with the timeout the operator uses for this version.
async fn replicas(bolt: &dyn Bolt, main: &str, version: MemgraphVersion) -> Result<Vec<ReplicaRow>, String> {
    let timeout = memgraph::show_replicas_timeout(bolt, Some(version));
    let rows = memgraph::show_replicas_within(bolt, main, timeout).await.map_err(|e| e.to_string())?;
    // What the operator relies on: `behind` is 0 in sync and negative when behind, never positive.
    for row in &rows {
        if let Some(data) = &row.data {
            check(data.behind <= 0, || format!("{}: behind is {} (positive) in {rows:?}", row.name, data.behind))?;
            check(!matches!(data.status, ReplicaStatus::Other(_)), || {
                format!("{}: a state the operator does not know: {:?}", row.name, data.status)
            })?;
        }
    }
    Ok(rows)
}

/// Waits until replica `name` is in `want`; returns every state seen on the way, in order.
async fn wait_status(
    bolt: &dyn Bolt,
    main: &str,
    version: MemgraphVersion,
    name: &str,
    want: ReplicaStatus,
) -> Result<Vec<String>, String> {
    let mut seen: Vec<String> = Vec::new();
    let limit = Duration::from_secs(60);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let rows = replicas(bolt, main, version).await;
        let state = match &rows {
            Ok(rows) => match rows.iter().find(|r| r.name == name) {
                Some(ReplicaRow { data: Some(d), .. }) => d.status.as_str().to_owned(),
                Some(_) => "data_info {}".to_owned(),
                None => "not registered".to_owned(),
            },
            Err(e) => format!("SHOW REPLICAS failed: {e}"),
        };
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == want.as_str() {
            return Ok(seen);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "timed out after {} s waiting for replica {name} to be {}; states seen: {seen:?}",
                limit.as_secs(),
                want.as_str()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn eventually_count(bolt: &dyn Bolt, address: &str, want: i64) -> Result<(), String> {
    wait_for(
        &format!("{want} user nodes on {address}"),
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            match memgraph::node_count(bolt, address).await {
                Ok(n) if n == want => Ok(()),
                Ok(n) => Err(format!("{n} nodes")),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
}

async fn eventually_test_node(bolt: &dyn Bolt, address: &str, id: &str, present: bool) -> Result<(), String> {
    let what = format!("test node {id} to be {} on {address}", if present { "present" } else { "gone" });
    wait_for(&what, Duration::from_secs(60), Duration::from_millis(50), || async {
        match memgraph::has_test_node(bolt, address, id).await {
            Ok(p) if p == present => Ok(()),
            Ok(p) => Err(format!("present: {p}")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

fn mode_word(mode: ReplicationMode) -> String {
    mode.as_cypher().to_ascii_lowercase()
}

async fn typed_queries_on(image: &str, t: &DockerTarget) -> Result<(), String> {
    let version = operator_version(image)?;
    let bolt = Neo4rsBolt::new(Timeouts::default());
    let bolt: &dyn Bolt = &bolt;
    let (main, r1, r2) = (t.bolt("main"), t.bolt("r1"), t.bolt("r2"));
    let (r1_repl, r2_repl) = (t.address("r1"), t.address("r2"));
    let e = |what: &str| {
        let what = what.to_owned();
        move |err: BoltError| format!("{what}: {err}")
    };

    // Connectivity and roles.
    for address in [&main, &r1, &r2] {
        memgraph::ping(bolt, address).await.map_err(e("RETURN 1"))?;
        let role = memgraph::replication_role(bolt, address).await.map_err(e("SHOW REPLICATION ROLE"))?;
        check(role == Role::Main, || format!("a fresh instance at {address} is {role:?}, not MAIN"))?;
    }
    for address in [&r1, &r2] {
        memgraph::set_replica_role(bolt, address, 10000).await.map_err(e("SET REPLICATION ROLE TO REPLICA"))?;
        let role = memgraph::replication_role(bolt, address).await.map_err(e("SHOW REPLICATION ROLE"))?;
        check(role == Role::Replica, || format!("{address} is {role:?} after the demotion"))?;
    }
    match memgraph::set_replica_role(bolt, &r1, 10000).await {
        Err(BoltError::Query { message, .. }) if message == "Couldn't set role to replica!" => {}
        other => {
            return Err(format!("demoting a REPLICA again: expected Couldn't set role to replica!, got {other:?}"));
        }
    }
    match memgraph::show_replicas(bolt, &r1).await {
        Err(err) if err.is_query_error() => {}
        other => return Err(format!("SHOW REPLICAS on a REPLICA must be refused, got {other:?}")),
    }

    // REGISTER REPLICA in each mode the version has, then DROP REPLICA.
    let mut modes = vec![ReplicationMode::Async, ReplicationMode::Sync];
    if version.supports_strict_sync() {
        modes.push(ReplicationMode::StrictSync);
    } else {
        match memgraph::register_replica(bolt, &main, "read_0", ReplicationMode::StrictSync, &r1_repl).await {
            Err(err) if err.is_query_error() => {}
            other => return Err(format!("STRICT_SYNC on {version} must be refused, got {other:?}")),
        }
    }
    for mode in modes {
        memgraph::register_replica(bolt, &main, "read_0", mode, &r1_repl)
            .await
            .map_err(e(&format!("REGISTER REPLICA read_0 {}", mode.as_cypher())))?;
        wait_status(bolt, &main, version, "read_0", ReplicaStatus::Ready).await?;
        let rows = replicas(bolt, &main, version).await?;
        check(
            rows.len() == 1
                && rows[0].name == "read_0"
                && rows[0].socket_address == r1_repl
                && rows[0].sync_mode == mode_word(mode),
            || format!("after REGISTER REPLICA read_0 {} TO {r1_repl}: {rows:?}", mode.as_cypher()),
        )?;
        memgraph::drop_replica(bolt, &main, "read_0").await.map_err(e("DROP REPLICA read_0"))?;
        let rows = replicas(bolt, &main, version).await?;
        check(rows.is_empty(), || format!("after DROP REPLICA: {rows:?}"))?;
    }
    match memgraph::drop_replica(bolt, &main, "read_0").await {
        Err(err) if err.is_query_error() => {}
        other => return Err(format!("dropping an unknown replica must be refused, got {other:?}")),
    }

    // The topology the operator builds: read_0 SYNC, read_1 ASYNC.
    memgraph::register_replica(bolt, &main, "read_0", ReplicationMode::Sync, &r1_repl).await.map_err(e("REGISTER"))?;
    memgraph::register_replica(bolt, &main, "read_1", ReplicationMode::Async, &r2_repl).await.map_err(e("REGISTER"))?;
    wait_status(bolt, &main, version, "read_0", ReplicaStatus::Ready).await?;
    wait_status(bolt, &main, version, "read_1", ReplicaStatus::Ready).await?;

    // User data and the validation queries.
    for i in 0..10 {
        let params = BTreeMap::from([("i".to_owned(), BoltValue::Int(i))]);
        bolt.run(&main, "CREATE (:E2E {i: $i})", params).await.map_err(e("CREATE"))?;
    }
    memgraph::write_test_node(bolt, &main, "e2e-1").await.map_err(e("the test write"))?;
    check(memgraph::node_count(bolt, &main).await.map_err(e("node count"))? == 10, || {
        "the node count must leave out test nodes".to_owned()
    })?;
    for replica in [&r1, &r2] {
        eventually_test_node(bolt, replica, "e2e-1", true).await?;
        eventually_count(bolt, replica, 10).await?;
    }
    memgraph::remove_test_nodes(bolt, &main).await.map_err(e("the test cleanup"))?;
    for replica in [&r1, &r2] {
        eventually_test_node(bolt, replica, "e2e-1", false).await?;
    }

    // Snapshots: CREATE SNAPSHOT and the check the snapshot job makes after it.
    let started = k8s_openapi::jiff::Timestamp::now();
    let outcome = memgraph::create_snapshot(bolt, &main).await.map_err(e("CREATE SNAPSHOT"))?;
    let path = match (&outcome, version >= MemgraphVersion::new(3, 5, 0)) {
        (SnapshotOutcome::Created(Some(path)), true) if path.starts_with("/var/lib/memgraph/snapshots/") => {
            Some(path.clone())
        }
        (SnapshotOutcome::Created(None), false) => None,
        _ => return Err(format!("CREATE SNAPSHOT on {version} gave {outcome:?}")),
    };
    let verified =
        memgraph_operator::reconcile::snapshot_job::verify(bolt, &main, Some(version), path.as_deref(), started)
            .await
            .map_err(|err| format!("the snapshot check after CREATE SNAPSHOT: {err}"))?;
    println!("{image}: {verified}");

    // States: an ASYNC replica stopped turns invalid, and after its restart it catches up
    // (recovery on the way, when the test is quick enough to see it).
    t.instance("r2")?.container.stop().await.map_err(|err| format!("docker stop r2: {err}"))?;
    let seen = wait_status(bolt, &main, version, "read_1", ReplicaStatus::Invalid).await?;
    println!("{image}: read_1 after its container stopped: {seen:?}");
    for i in 10..30 {
        let params = BTreeMap::from([("i".to_owned(), BoltValue::Int(i))]);
        bolt.run(&main, "CREATE (:E2E {i: $i})", params).await.map_err(e("CREATE with an ASYNC replica down"))?;
    }
    let rows = replicas(bolt, &main, version).await?;
    println!("{image}: SHOW REPLICAS with read_1 down: {rows:?}");
    let r2_container = &t.instance("r2")?.container;
    r2_container.start().await.map_err(|err| format!("docker start r2: {err}"))?;
    // The mapped port changes with the restart.
    let r2_now = bolt_address(r2_container).await?.to_string();
    let seen = wait_status(bolt, &main, version, "read_1", ReplicaStatus::Ready).await?;
    println!("{image}: read_1 after its restart: {seen:?}");
    eventually_count(bolt, &r2_now, 30).await?;
    let role = memgraph::replication_role(bolt, &r2_now).await.map_err(e("SHOW REPLICATION ROLE"))?;
    check(role == Role::Replica, || format!("r2 came back as {role:?}"))?;

    // A SYNC replica down: the test write commits on the MAIN and reports a replication error,
    // which the validation job tells from other failures by its text.
    t.instance("r1")?.container.stop().await.map_err(|err| format!("docker stop r1: {err}"))?;
    wait_status(bolt, &main, version, "read_0", ReplicaStatus::Invalid).await?;
    match memgraph::write_test_node(bolt, &main, "e2e-2").await {
        Err(BoltError::Query { message, .. }) if message.contains("Replication Exception") => {}
        other => {
            return Err(format!("a write with the SYNC replica down: expected a Replication Exception, got {other:?}"));
        }
    }
    check(memgraph::has_test_node(bolt, &main, "e2e-2").await.map_err(e("read on MAIN"))?, || {
        "the write that reported the SYNC error is not on the MAIN".to_owned()
    })?;
    memgraph::remove_test_nodes(bolt, &main).await.map_err(e("the test cleanup"))?;
    let rows = replicas(bolt, &main, version).await?;
    check(rows.iter().any(|r| r.name == "read_0" && r.sync_mode == "sync"), || format!("{rows:?}"))?;
    memgraph::drop_replica(bolt, &main, "read_0").await.map_err(e("DROP REPLICA of a stopped replica"))?;
    let rows = replicas(bolt, &main, version).await?;
    check(rows.len() == 1 && rows[0].name == "read_1", || format!("after dropping read_0: {rows:?}"))?;
    Ok(())
}
