//! Fault knobs: a hung process (`ServerHandle::set_hung`), a blocked replication port
//! (`ServerHandle::set_replication_blocked`), and snapshots and start-up recovery that take time in
//! proportion to the data (`--fake-snapshot-micros-per-node`, `--fake-recovery-micros-per-node`).
//! Timing matters in most of these, so they run on turmoil's simulated time with the versions'
//! real timeouts; the blocked port runs on loopback.

mod common;

use std::collections::BTreeMap;
use std::error::Error;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Instance, eventually, status_of};
use fake_memgraph::clock::turmoil_clock;
use fake_memgraph::storage::durability::PARTIAL_SNAPSHOT;
use fake_memgraph::{
    Client, ClientError, Config, IdSource, MemDataDir, QueryResult, ReplicaState, Server, ServerHandle, TokioNet,
    TurmoilNet, Value,
};
use tokio::sync::Notify;

type Shared<T> = Arc<Mutex<T>>;
type TClient = Client<turmoil::net::TcpStream>;
type Res<T> = Result<T, Box<dyn Error>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn sim<'a>(secs: u64) -> turmoil::Sim<'a> {
    turmoil::Builder::new()
        .rng_seed(11)
        .tick_duration(Duration::from_millis(1))
        // Fixed latency: these tests measure durations.
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(1))
        .simulation_duration(Duration::from_secs(secs))
        .build()
}

/// The current handle of every host and how many times it started.
#[derive(Clone, Default)]
struct Handles(Shared<BTreeMap<&'static str, (u64, ServerHandle)>>);

impl Handles {
    /// Waits until `name` has started more than `after` times; returns that boot's handle.
    async fn boot(&self, name: &str, after: u64) -> ServerHandle {
        loop {
            if let Some((boots, h)) = lock(&self.0).get(name)
                && *boots > after
            {
                return h.clone();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// One instance per host on a volume outside it; each `restart.notify_one()` kills the
/// instance and starts it again on the same volume.
fn host(
    sim: &mut turmoil::Sim<'_>,
    name: &'static str,
    flags: &[&str],
    handles: &Handles,
) -> (MemDataDir, Arc<Notify>) {
    let dir = MemDataDir::default();
    let restart = Arc::new(Notify::new());
    let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    let (d, r, handles) = (dir.clone(), restart.clone(), handles.clone());
    let seed = name.bytes().map(u64::from).sum::<u64>();
    sim.host(name, move || {
        let (dir, restart, handles, flags) = (d.clone(), r.clone(), handles.clone(), flags.clone());
        async move {
            let mut boots = 0;
            loop {
                let cfg = Config::parse_args(flags.clone())?;
                let ids = IdSource::seeded(seed * 100 + boots);
                let h = Server::start(cfg, TurmoilNet, dir.clone(), turmoil_clock(1_700_000_000_000_000), ids).await?;
                boots += 1;
                lock(&handles.0).insert(name, (boots, h.clone()));
                restart.notified().await;
                h.kill();
                // Let the aborted tasks drop their listeners before the ports are bound again.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    (dir, restart)
}

async fn connect(addr: &str) -> Res<TClient> {
    let s = turmoil::net::TcpStream::connect(addr).await?;
    Ok(Client::connect(s, None).await?)
}

fn now() -> Duration {
    turmoil::elapsed()
}

/// Polls `f` every 10 ms until it holds; returns how long that took (`None` after `limit`).
async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = now();
    while now() - start <= limit {
        if f() {
            return Some(now() - start);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Runs `q` on its own task, reporting when it was answered.
fn spawn_query(
    mut c: TClient,
    q: &'static str,
) -> tokio::task::JoinHandle<(Result<QueryResult, ClientError>, Duration, TClient)> {
    tokio::spawn(async move {
        let r = c.query(q).await;
        (r, now(), c)
    })
}

/// Sets up `replica` as a replica of `main` under the name `r`.
async fn replicate(mode: &str) -> Res<(TClient, TClient)> {
    let mut replica = connect("replica:7687").await?;
    replica.query("SET REPLICATION ROLE TO REPLICA WITH PORT 10000").await?;
    let mut main = connect("main:7687").await?;
    main.query(&format!("REGISTER REPLICA r {mode} TO \"replica:10000\"")).await?;
    Ok((main, replica))
}

fn data_info(r: &QueryResult) -> BTreeMap<String, Value> {
    r.rows[0][4].as_map().and_then(|m| m.get("memgraph")).and_then(Value::as_map).cloned().unwrap_or_default()
}

fn run_sim(mut sim: turmoil::Sim<'_>, driver: impl Future<Output = Res<()>> + 'static) {
    sim.client("driver", driver);
    if let Err(e) = sim.run() {
        panic!("simulation failed: {e}");
    }
}

#[test]
fn a_hung_replica_accepts_connections_but_answers_nothing_until_resumed() {
    let mut sim = sim(300);
    let handles = Handles::default();
    host(&mut sim, "main", &[], &handles);
    host(&mut sim, "replica", &[], &handles);
    let hs = handles.clone();
    run_sim(sim, async move {
        let (mut main, replica_conn) = replicate("ASYNC").await?;
        let (main_h, replica_h) = (hs.boot("main", 0).await, hs.boot("replica", 0).await);
        main.query("CREATE (:Before)").await?;
        wait_until(Duration::from_secs(5), || replica_h.node_count() == 1).await.expect("replicated");

        replica_h.set_hung(true);
        let hung_at = now();
        assert!(replica_h.is_running() && replica_h.is_hung(), "the process exists");
        // An open session gets no answer; neither does a new connection's handshake, although
        // the TCP connection itself is accepted.
        let open = spawn_query(replica_conn, "RETURN 1 AS x");
        let tcp = turmoil::net::TcpStream::connect("replica:7687").await?;
        let handshake = tokio::spawn(async move { Client::connect(tcp, None).await.map(|_| now()) });

        // 3.12: each heartbeat waits out its 10 s timeout; the third failure in a row marks the
        // replica invalid.
        let invalid_after =
            wait_until(Duration::from_secs(60), || main_h.replica_state("r") == Some(ReplicaState::Invalid))
                .await
                .expect("marked invalid while hung");
        assert!(
            invalid_after >= Duration::from_secs(30) && invalid_after < Duration::from_secs(34),
            "{invalid_after:?}"
        );
        // ASYNC writes go on; the replica applies nothing while hung.
        main.query("CREATE (:During)").await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!open.is_finished() && !handshake.is_finished(), "nothing answered while hung");
        assert_eq!(replica_h.node_count(), 1);

        replica_h.set_hung(false);
        let resumed_at = now();
        let (answer, answered_at, _) = open.await?;
        assert_eq!(answer?.rows, [[Value::Int(1)]], "the query sent while hung is answered");
        assert!(answered_at >= resumed_at);
        assert!(handshake.await?? >= resumed_at);
        // The MAIN finds it again and catches it up.
        wait_until(Duration::from_secs(10), || main_h.replica_state("r") == Some(ReplicaState::Ready))
            .await
            .expect("ready again");
        assert_eq!(replica_h.digest(), main_h.digest());
        assert!(now() - hung_at > Duration::from_secs(30));
        Ok(())
    });
}

/// What `SHOW REPLICAS` on the MAIN did while its SYNC replica was hung for 50 s.
#[derive(Debug)]
struct HungShow {
    /// How long it took, if it was answered during the hang.
    during: Option<Duration>,
    /// `data_info.memgraph` of the answer.
    info: BTreeMap<String, Value>,
    /// What a SYNC write sent during the hang returned, if it returned during the hang.
    write_during_hang: Option<Result<QueryResult, ClientError>>,
}

fn show_replicas_while_replica_hung(version: &'static str) -> HungShow {
    let out: Shared<Option<HungShow>> = Arc::default();
    let mut sim = sim(300);
    let handles = Handles::default();
    let flags = [format!("--memgraph-version={version}")];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    host(&mut sim, "main", &flags, &handles);
    host(&mut sim, "replica", &flags, &handles);
    let (hs, o) = (handles.clone(), out.clone());
    run_sim(sim, async move {
        let (mut main, _replica) = replicate("SYNC").await?;
        let (main_h, replica_h) = (hs.boot("main", 0).await, hs.boot("replica", 0).await);
        main.query("CREATE (:Before)").await?;
        wait_until(Duration::from_secs(5), || main_h.replica_state("r") == Some(ReplicaState::Ready))
            .await
            .expect("ready");

        let hang = Duration::from_secs(50);
        let show_conn = connect("main:7687").await?;
        replica_h.set_hung(true);
        let hung_at = now();
        let show = spawn_query(show_conn, "SHOW REPLICAS");
        let write = spawn_query(main, "CREATE (:During)");
        let during = wait_until(hang, || show.is_finished()).await;
        let write_returned = wait_until(hang.saturating_sub(now() - hung_at), || write.is_finished()).await.is_some();
        replica_h.set_hung(false);
        let (shown, _, _) = show.await?;
        let (written, _, _) = write.await?;
        // Committed on the MAIN whatever the client was told.
        assert_eq!(main_h.node_count(), 2, "{version}: {written:?}");
        wait_until(Duration::from_secs(60), || replica_h.digest() == main_h.digest()).await.expect("converges");
        let write_during_hang = write_returned.then_some(written);
        *lock(&o) = Some(HungShow { during, info: data_info(&shown?), write_during_hang });
        Ok(())
    });
    lock(&out).take().expect("the driver finished")
}

#[test]
fn show_replicas_makes_a_live_call_to_a_hung_replica_before_3_1() {
    // 2.21: no RPC timeouts, so SHOW REPLICAS (and the SYNC write) wait for the replica.
    let v221 = show_replicas_while_replica_hung("2.21");
    assert_eq!(v221.during, None, "{v221:?}");
    assert!(v221.write_during_hang.is_none(), "{v221:?}");

    // 3.0: the live heartbeat times out after 10 s (maybe after the frequent check's own 10 s);
    // the replica is then shown invalid with ts 0, behind 0.
    let v30 = show_replicas_while_replica_hung("3.0");
    assert_eq!(format!("{v30:?}"), format!("{:?}", show_replicas_while_replica_hung("3.0")), "replays exactly");
    let took = v30.during.expect("answered during the hang");
    assert!(took >= Duration::from_secs(10) && took < Duration::from_secs(21), "{v30:?}");
    assert_eq!(v30.info.get("status"), Some(&Value::from("invalid")), "{v30:?}");
    assert_eq!((v30.info.get("ts"), v30.info.get("behind")), (Some(&Value::Int(0)), Some(&Value::Int(0))));

    // 3.1+: served from cached state at once.
    for version in ["3.4", "3.12"] {
        let r = show_replicas_while_replica_hung(version);
        assert!(r.during.is_some_and(|d| d < Duration::from_millis(100)), "{version}: {r:?}");
        // The SYNC write waits out a heartbeat's 10 s for the RPC lock, then its own 30 s commit
        // timeout, and fails — still within the hang.
        let e = r.write_during_hang.as_ref().expect("returned").as_ref().expect_err("failed");
        assert!(e.server_message().unwrap_or_default().starts_with("Replication Exception:"), "{version}: {e}");
    }
}

#[test]
fn a_hung_main_pauses_its_heartbeats_and_periodic_snapshots() {
    let mut sim = sim(120);
    let handles = Handles::default();
    let flags = [
        "--memgraph-version=3.2",
        "--storage-snapshot-interval-sec=1",
        "--storage-snapshot-retention-count=1000",
        "--fake-replica-check-frequency-ms=100",
        "--fake-rpc-timeout-ms=500",
    ];
    let (main_dir, _) = host(&mut sim, "main", &flags, &handles);
    host(&mut sim, "replica", &flags, &handles);
    let hs = handles.clone();
    let snapshots = move || main_dir.paths().iter().filter(|p| p.starts_with("snapshots/")).count();
    run_sim(sim, async move {
        let (mut main, _replica) = replicate("ASYNC").await?;
        let (main_h, replica_h) = (hs.boot("main", 0).await, hs.boot("replica", 0).await);
        main.query("CREATE (:Before)").await?;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(main_h.replica_state("r"), Some(ReplicaState::Ready));
        assert!(snapshots() >= 2, "3.2 writes one every second, changed or not");

        let probe = connect("main:7687").await?;
        main_h.set_hung(true);
        let frozen = snapshots();
        replica_h.kill();
        let probe = spawn_query(probe, "SHOW REPLICATION ROLE");
        tokio::time::sleep(Duration::from_secs(5)).await;
        // No heartbeat noticed the dead replica, no snapshot was taken, no query answered.
        assert_eq!(main_h.replica_state("r"), Some(ReplicaState::Ready));
        assert_eq!(snapshots(), frozen);
        assert!(!probe.is_finished());
        assert!(main_h.is_running());

        main_h.set_hung(false);
        let noticed =
            wait_until(Duration::from_secs(3), || main_h.replica_state("r") == Some(ReplicaState::Invalid)).await;
        assert!(noticed.is_some_and(|d| d < Duration::from_secs(2)), "{noticed:?}");
        assert_eq!(probe.await?.0?.single(), Some(&Value::from("main")));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(snapshots() > frozen, "snapshots resume");
        Ok(())
    });
}

/// What happened around one slow snapshot.
#[derive(Debug)]
struct Slow {
    /// The first CREATE SNAPSHOT: when it returned (from its start) and its result.
    first: (Duration, Result<QueryResult, ClientError>),
    /// A second CREATE SNAPSHOT sent 100 ms later.
    second: (Duration, Result<QueryResult, ClientError>),
    /// SHOW SNAPSHOTS sent 100 ms later (2.22+).
    show: Option<(Duration, QueryResult)>,
    /// The file seen in `snapshots/` 50 ms into the first snapshot was the partial marker.
    partial_while_writing: bool,
    /// After a kill in the middle of a third snapshot: listed snapshots before and after.
    listed_before_crash: usize,
    listed_after_crash: usize,
    /// How long after the restart Bolt accepted a query (20 nodes recovered).
    ready_after_restart: Duration,
    /// Nodes after the restart (21).
    nodes_after_restart: usize,
    /// How long a graceful stop with a snapshot on exit took.
    shutdown_took: Duration,
}

/// 20 nodes at 100 ms each: every snapshot takes 2 s; one more node before the crash, so recovery
/// and the snapshot on exit take 2.1 s.
fn slow_snapshots(version: &'static str) -> Slow {
    let out: Shared<Option<Slow>> = Arc::default();
    let mut sim = sim(120);
    let handles = Handles::default();
    let flags = [
        format!("--memgraph-version={version}"),
        "--storage-snapshot-interval-sec=3600".into(),
        "--storage-snapshot-retention-count=10".into(),
        "--fake-snapshot-micros-per-node=100000".into(),
        "--fake-recovery-micros-per-node=100000".into(),
        // The write just before the crash must survive it.
        "--storage-wal-file-flush-every-n-tx=1".into(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (dir, restart) = host(&mut sim, "db", &flags, &handles);
    let (hs, o, files) = (handles.clone(), out.clone(), dir.clone());
    let has_show = version != "2.21";
    run_sim(sim, async move {
        let mut c = connect("db:7687").await?;
        let nodes: Vec<String> = (0..20).map(|i| format!("(:N {{i: {i}}})")).collect();
        c.query(&format!("CREATE {}", nodes.join(", "))).await?;

        let t0 = now();
        let first = spawn_query(c, "CREATE SNAPSHOT");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let files: Vec<Vec<u8>> =
            files.snapshot().into_iter().filter(|(p, _)| p.starts_with("snapshots/")).map(|(_, d)| d).collect();
        let partial_while_writing = files.len() == 1 && files[0] == PARTIAL_SNAPSHOT;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = spawn_query(connect("db:7687").await?, "CREATE SNAPSHOT");
        let show = if has_show { Some(spawn_query(connect("db:7687").await?, "SHOW SNAPSHOTS")) } else { None };
        let (r, at, mut c) = first.await?;
        let first = (at - t0, r);
        let (r, at, _) = second.await?;
        let second = (at - t0, r);
        let show = match show {
            Some(s) => {
                let (r, at, _) = s.await?;
                Some((at - t0, r?))
            }
            None => None,
        };

        // A kill in the middle leaves no finished snapshot.
        let listed_before_crash = if has_show { listed(&mut c).await? } else { 0 };
        // Something new, so 3.3–3.4 do not refuse it as "nothing new".
        c.query("CREATE (:M)").await?;
        let third = spawn_query(c, "CREATE SNAPSHOT");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let restarted_at = now();
        restart.notify_one();
        assert!(third.await?.0.is_err(), "the connection died with the process");
        let h = hs.boot("db", 1).await;
        let ready_after_restart = now() - restarted_at;
        let mut c = connect("db:7687").await?;
        let listed_after_crash = if has_show { listed(&mut c).await? } else { 0 };
        let nodes_after_restart = h.node_count();

        let t = now();
        h.shutdown().await;
        let shutdown_took = now() - t;
        *lock(&o) = Some(Slow {
            first,
            second,
            show,
            partial_while_writing,
            listed_before_crash,
            listed_after_crash,
            ready_after_restart,
            nodes_after_restart,
            shutdown_took,
        });
        Ok(())
    });
    let slow = lock(&out).take().expect("the driver finished");
    // Every finished file parses, the partial one left by the kill is there too.
    let files = dir.snapshot();
    let snaps: Vec<&Vec<u8>> = files.iter().filter(|(p, _)| p.starts_with("snapshots/")).map(|(_, d)| d).collect();
    assert_eq!(snaps.iter().filter(|d| d.as_slice() == PARTIAL_SNAPSHOT).count(), 1, "{version}: one partial file");
    slow
}

/// Finished snapshots listed by SHOW SNAPSHOTS (without the ≤3.4 "next snapshot" row).
async fn listed(c: &mut TClient) -> Res<usize> {
    Ok(c.query("SHOW SNAPSHOTS").await?.rows.iter().filter(|row| row[1] != Value::Int(0)).count())
}

fn close_to(d: Duration, secs: f64) -> bool {
    (d.as_secs_f64() - secs).abs() < 0.2
}

#[test]
fn snapshots_take_time_per_node_and_only_one_runs_at_a_time() {
    for (version, text) in [
        ("3.12", "Another snapshot creation is already in progress"),
        ("3.4", "Another snapshot creation is already in progress."),
    ] {
        let s = slow_snapshots(version);
        assert_eq!(format!("{s:?}"), format!("{:?}", slow_snapshots(version)), "{version} replays exactly");
        assert!(s.partial_while_writing, "{version}: {s:?}");
        assert!(close_to(s.first.0, 2.0) && s.first.1.is_ok(), "{version}: {s:?}");
        // 3.3+: the second request fails at once with a TransientError.
        let e = s.second.1.as_ref().expect_err("refused");
        assert!(close_to(s.second.0, 0.1), "{version}: {s:?}");
        assert_eq!(e.server_code(), Some("Memgraph.TransientError.MemgraphError.MemgraphError"));
        assert_eq!(e.server_message(), Some(text));
        // SHOW SNAPSHOTS waits for the lock and then lists only the finished file.
        let (took, shown) = s.show.as_ref().expect("2.22+");
        assert!(close_to(*took, 2.0), "{version}: {s:?}");
        let listed: Vec<&Value> = shown.rows.iter().filter(|r| r[1] != Value::Int(0)).map(|r| &r[0]).collect();
        assert_eq!(listed.len(), 1, "{version}: {shown:?}");
        if version == "3.12" {
            assert_eq!(s.first.1.as_ref().ok().and_then(QueryResult::single), Some(listed[0]));
        }
        check_crash_and_recovery(version, &s, 1);
    }

    // Before 3.3 a second CREATE SNAPSHOT waits for the first, then writes its own; SHOW
    // SNAPSHOTS queues behind both.
    let s = slow_snapshots("3.2");
    assert!(close_to(s.first.0, 2.0) && s.first.1.is_ok(), "{s:?}");
    assert!(close_to(s.second.0, 4.0) && s.second.1.is_ok(), "{s:?}");
    let (took, shown) = s.show.as_ref().expect("2.22+");
    assert!(close_to(*took, 4.0), "{s:?}");
    assert_eq!(shown.rows.iter().filter(|r| r[1] != Value::Int(0)).count(), 2, "{shown:?}");
    check_crash_and_recovery("3.2", &s, 2);

    // 2.21 has no SHOW SNAPSHOTS but the same waiting.
    let s = slow_snapshots("2.21");
    assert!(close_to(s.second.0, 4.0) && s.second.1.is_ok(), "{s:?}");
}

fn check_crash_and_recovery(version: &str, s: &Slow, finished: usize) {
    assert_eq!(s.listed_before_crash, finished, "{version}: {s:?}");
    assert_eq!(s.listed_after_crash, finished, "{version}: the killed snapshot is not listed");
    assert_eq!(s.nodes_after_restart, 21);
    // 21 nodes at 100 ms each before the Bolt port is bound (plus the restart itself).
    assert!(s.ready_after_restart >= Duration::from_millis(2100), "{version}: {s:?}");
    assert!(s.ready_after_restart < Duration::from_millis(2300), "{version}: {s:?}");
    // The snapshot on exit takes its 2.1 s too.
    assert!(close_to(s.shutdown_took, 2.1), "{version}: {s:?}");
}

#[tokio::test]
async fn a_blocked_replication_port_fails_registration_and_heartbeats_until_unblocked() {
    for (version, unreachable) in [
        ("3.12", "Couldn't register replica b. Error: 5"),
        ("3.4", "Couldn't register replica b."),
        ("2.21", "Couldn't register replica b."),
    ] {
        let net = TokioNet::ephemeral();
        let flags = [format!("--memgraph-version={version}")];
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let a = Instance::start(&net, "a", &flags, 1).await;
        let b = Instance::start(&net, "b", &flags, 2).await;
        b.make_replica().await;
        b.handle.set_replication_blocked(true);
        assert!(b.handle.is_replication_blocked());

        // Unreachable: ERROR_ACCEPTING_MAIN, and the stale row stays.
        let e = a.run("REGISTER REPLICA b SYNC TO \"b:10000\"").await.expect_err("unreachable");
        assert_eq!(e.server_message(), Some(unreachable), "{version}");
        let r = a.ok("SHOW REPLICAS").await;
        assert_eq!(r.rows.len(), 1, "{version}");
        assert_eq!(r.rows[0][4], Value::Map(Default::default()), "{version}: data_info {{}}");
        // Bolt is not affected.
        assert_eq!(b.ok("SHOW REPLICATION ROLE").await.single(), Some(&Value::from("replica")));

        // After the network fix the stale row still has to be dropped; then it registers.
        b.handle.set_replication_blocked(false);
        a.ok("DROP REPLICA b").await;
        a.ok("REGISTER REPLICA b SYNC TO \"b:10000\"").await;
        eventually(10, "b ready", || async {
            status_of(&a.ok("SHOW REPLICAS").await, "b").as_deref() == Some("ready")
        })
        .await;
        a.ok("CREATE (:Kept)").await;
        assert_eq!(b.handle.node_count(), 1);

        // Blocked while registered: the connection is closed and heartbeats fail.
        b.handle.set_replication_blocked(true);
        eventually(10, "b invalid", || async { a.handle.replica_state("b") == Some(ReplicaState::Invalid) }).await;
        let e = a.run("CREATE (:Lost)").await.expect_err("SYNC replica unreachable");
        assert!(e.server_message().unwrap_or_default().starts_with("Replication Exception:"), "{version}: {e}");
        assert_eq!(a.handle.node_count(), 2, "committed on the MAIN anyway");
        assert_eq!(b.handle.node_count(), 1);
        // Unblocked: the row recovers by itself.
        b.handle.set_replication_blocked(false);
        eventually(10, "b ready again", || async { a.handle.replica_state("b") == Some(ReplicaState::Ready) }).await;
        assert_eq!(b.handle.digest(), a.handle.digest(), "{version}");
        a.handle.kill();
        b.handle.kill();
    }
}

#[tokio::test]
async fn a_hung_instance_stops_gracefully_only_once_resumed_but_can_be_killed() {
    let net = TokioNet::ephemeral();
    let a = Instance::start(&net, "a", &[], 1).await;
    a.ok("CREATE (:Kept)").await;
    a.handle.set_hung(true);
    let h = a.handle.clone();
    let stop = tokio::spawn(async move { h.shutdown().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!stop.is_finished(), "SIGTERM waits for SIGCONT");
    assert!(a.handle.is_running());
    a.handle.set_hung(false);
    stop.await.expect("shutdown");
    assert!(!a.handle.is_running());
    assert!(a.dir.paths().iter().any(|p| p.starts_with("snapshots/")), "the snapshot on exit was taken");

    let b = Instance::start(&net, "b", &[], 2).await;
    b.handle.set_hung(true);
    b.handle.kill();
    assert!(!b.handle.is_running());
}
