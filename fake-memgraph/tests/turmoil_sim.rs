//! The unchanged server on turmoil's simulated TCP with in-memory volumes: a MAIN and a SYNC
//! replica, a replica crash while writes continue, and recovery. Run twice from the same seed, the
//! trace must be identical.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_memgraph::clock::turmoil_clock;
use fake_memgraph::{Client, Config, IdSource, MemDataDir, Server, ServerHandle, TurmoilNet, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Running,
    CrashReplica,
    ReplicaDown,
    BounceReplica,
    ReplicaUp,
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn connect(addr: &str) -> Result<Client<turmoil::net::TcpStream>, Box<dyn Error>> {
    let s = turmoil::net::TcpStream::connect(addr).await?;
    Ok(Client::connect(s, None).await?)
}

async fn wait_phase(phase: &Shared<Phase>, want: Phase) {
    while *lock(phase) != want {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn describe(r: Result<fake_memgraph::QueryResult, fake_memgraph::ClientError>) -> String {
    match r {
        Ok(r) => format!("ok {:?}", r.rows),
        Err(e) => format!("err {e}"),
    }
}

fn scenario(seed: u64) -> Vec<String> {
    let trace: Shared<Vec<String>> = Arc::default();
    let phase: Shared<Phase> = Arc::new(Mutex::new(Phase::Running));
    let handles: Shared<BTreeMap<&'static str, ServerHandle>> = Arc::default();
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .tick_duration(Duration::from_millis(1))
        .simulation_duration(Duration::from_secs(120))
        .build();

    for (name, id_seed) in [("main", 1u64), ("replica", 2u64)] {
        // The volume lives outside the host, so it survives crashes.
        let dir = MemDataDir::default();
        let boots = Arc::new(AtomicU64::new(0));
        let handles = handles.clone();
        sim.host(name, move || {
            let (dir, handles) = (dir.clone(), handles.clone());
            let boot = boots.fetch_add(1, Ordering::SeqCst);
            async move {
                let cfg = Config::parse_args([
                    "--fake-replica-check-frequency-ms=100",
                    "--fake-rpc-timeout-ms=500",
                    "--storage-wal-file-flush-every-n-tx=1",
                ])?;
                let ids = IdSource::seeded(seed ^ (id_seed * 1_000 + boot));
                let h = Server::start(cfg, TurmoilNet, dir, turmoil_clock(1_700_000_000_000_000), ids).await?;
                lock(&handles).insert(name, h);
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }

    let (t, p) = (trace.clone(), phase.clone());
    sim.client("driver", async move {
        let log = |s: String| lock(&t).push(s);
        let mut replica = connect("replica:7687").await?;
        log(describe(replica.query("SET REPLICATION ROLE TO REPLICA WITH PORT 10000").await));
        let mut main = connect("main:7687").await?;
        log(describe(main.query("REGISTER REPLICA r SYNC TO \"replica:10000\"").await));
        for i in 0..3 {
            let params = BTreeMap::from([("i".to_string(), Value::Int(i))]);
            log(describe(main.run("CREATE (n:S {i: $i}) RETURN n.i", params).await));
        }
        log(describe(replica.query("MATCH (n:S) RETURN count(n)").await));

        *lock(&p) = Phase::CrashReplica;
        wait_phase(&p, Phase::ReplicaDown).await;
        // SYNC replica down: the write errors but stays committed on MAIN.
        tokio::time::sleep(Duration::from_millis(400)).await;
        log(describe(main.query("CREATE (:S {i: 99})").await));
        log(describe(main.query("SHOW REPLICAS").await));

        *lock(&p) = Phase::BounceReplica;
        wait_phase(&p, Phase::ReplicaUp).await;
        loop {
            let r = main.query("SHOW REPLICAS").await?;
            let status = r.rows[0][4]
                .as_map()
                .and_then(|m| m.get("memgraph"))
                .and_then(Value::as_map)
                .and_then(|m| m.get("status"))
                .cloned();
            if status == Some(Value::from("ready")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        log(format!("ready at {:?}", turmoil::elapsed()));
        let mut replica = connect("replica:7687").await?;
        log(describe(replica.query("MATCH (n:S) RETURN n.i ORDER BY n.i").await));
        log(describe(replica.query("SHOW REPLICATION ROLE").await));
        Ok(())
    });

    loop {
        let done = match sim.step() {
            Ok(d) => d,
            Err(e) => panic!("simulation failed: {e}"),
        };
        if done {
            break;
        }
        let current = *lock(&phase);
        match current {
            Phase::CrashReplica => {
                // Mark the old server dead so nothing reads it as alive, then crash the host.
                if let Some(h) = lock(&handles).get("replica") {
                    h.kill();
                }
                sim.crash("replica");
                lock(&trace).push(format!("crash at {:?}", sim.elapsed()));
                *lock(&phase) = Phase::ReplicaDown;
            }
            Phase::BounceReplica => {
                sim.bounce("replica");
                lock(&trace).push(format!("bounce at {:?}", sim.elapsed()));
                *lock(&phase) = Phase::ReplicaUp;
            }
            _ => {}
        }
    }
    let hs = lock(&handles);
    let mut out = lock(&trace).clone();
    for (name, h) in hs.iter() {
        out.push(format!(
            "{name}: role {:?} ts {} digest {:x} epoch {} uuid {}",
            h.role(),
            h.timestamp(),
            h.digest(),
            h.epoch(),
            h.db_uuid()
        ));
    }
    out
}

#[test]
fn replication_runs_unchanged_on_turmoil_and_replays_from_the_seed() {
    let first = scenario(42);
    let second = scenario(42);
    assert_eq!(first, second, "same seed, same run");

    let text = first.join("\n");
    assert!(text.contains("Failed to replicate to SYNC replica 'r'"), "{text}");
    assert!(text.contains("ok [[Int(0)], [Int(1)], [Int(2)], [Int(99)]]"), "{text}");
    let main = first.iter().find(|l| l.starts_with("main:")).expect("main line");
    let replica = first.iter().find(|l| l.starts_with("replica:")).expect("replica line");
    // Same timestamp, digest, epoch and database UUID: the replica converged.
    assert_eq!(main["main:".len()..].replace("Main", "X"), replica["replica:".len()..].replace("Replica", "X"));

    let other = scenario(43);
    assert_ne!(
        first.iter().find(|l| l.starts_with("main:")),
        other.iter().find(|l| l.starts_with("main:")),
        "ids come from the seed"
    );
}

/// What the stall scenario observed.
#[derive(Debug, PartialEq)]
struct Stall {
    /// How long after the link stalled the MAIN marked the replica invalid.
    invalid_after: Option<Duration>,
    /// Whether `SHOW REPLICAS` during the stall failed to answer within 2 s.
    show_replicas_blocked: bool,
    /// Status once the link is healthy again.
    final_status: Option<Value>,
}

/// MAIN + ASYNC replica; the link between them stalls (messages held) for 4 s, then recovers.
fn stall(version: &str) -> Stall {
    let phase: Shared<Phase> = Arc::new(Mutex::new(Phase::Running));
    let handles: Shared<BTreeMap<&'static str, ServerHandle>> = Arc::default();
    let result: Shared<(bool, Option<Value>)> = Arc::default();
    let mut sim = turmoil::Builder::new()
        .rng_seed(5)
        .tick_duration(Duration::from_millis(1))
        .simulation_duration(Duration::from_secs(120))
        .build();
    let mut flags = vec![format!("--memgraph-version={version}"), "--fake-replica-check-frequency-ms=100".to_string()];
    // 2.21/2.22 have no RPC timeouts at all; keep the version's behaviour there.
    if version >= "3.0" {
        flags.push("--fake-rpc-timeout-ms=500".to_string());
    }
    for (name, id_seed) in [("main", 1u64), ("replica", 2u64)] {
        let (dir, handles, flags) = (MemDataDir::default(), handles.clone(), flags.clone());
        sim.host(name, move || {
            let (dir, handles, flags) = (dir.clone(), handles.clone(), flags.clone());
            async move {
                let cfg = Config::parse_args(flags)?;
                let h = Server::start(cfg, TurmoilNet, dir, turmoil_clock(0), IdSource::seeded(id_seed)).await?;
                lock(&handles).insert(name, h);
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
    let (p, res) = (phase.clone(), result.clone());
    sim.client("driver", async move {
        connect("replica:7687").await?.query("SET REPLICATION ROLE TO REPLICA WITH PORT 10000").await?;
        let mut main = connect("main:7687").await?;
        main.query("REGISTER REPLICA r ASYNC TO \"replica:10000\"").await?;
        main.query("CREATE (:Before)").await?;
        // Let the ASYNC commit arrive first: a failed commit marks the replica invalid at once,
        // and this scenario is about heartbeats.
        tokio::time::sleep(Duration::from_millis(300)).await;
        *lock(&p) = Phase::CrashReplica;
        wait_phase(&p, Phase::ReplicaDown).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut probe = connect("main:7687").await?;
        let blocked = tokio::time::timeout(Duration::from_secs(2), probe.query("SHOW REPLICAS")).await.is_err();
        lock(&res).0 = blocked;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        *lock(&p) = Phase::BounceReplica;
        wait_phase(&p, Phase::ReplicaUp).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let r = connect("main:7687").await?.query("SHOW REPLICAS").await?;
        lock(&res).1 = r.rows[0][4]
            .as_map()
            .and_then(|m| m.get("memgraph"))
            .and_then(Value::as_map)
            .and_then(|m| m.get("status"))
            .cloned();
        Ok(())
    });
    let mut stalled_at = None;
    let mut invalid_after = None;
    loop {
        if sim.step().unwrap_or_else(|e| panic!("simulation failed: {e}")) {
            break;
        }
        let current = *lock(&phase);
        match current {
            Phase::CrashReplica => {
                sim.hold("main", "replica");
                stalled_at = Some(sim.elapsed());
                *lock(&phase) = Phase::ReplicaDown;
            }
            Phase::BounceReplica => {
                sim.release("main", "replica");
                *lock(&phase) = Phase::ReplicaUp;
            }
            Phase::ReplicaDown if invalid_after.is_none() => {
                let state = lock(&handles).get("main").and_then(|h| h.replica_state("r"));
                if state == Some(fake_memgraph::ReplicaState::Invalid) {
                    invalid_after = stalled_at.map(|t| sim.elapsed() - t);
                }
            }
            _ => {}
        }
    }
    let (show_replicas_blocked, final_status) = lock(&result).clone();
    Stall { invalid_after, show_replicas_blocked, final_status }
}

#[test]
fn heartbeat_threshold_and_blocking_show_replicas_per_version() {
    // 3.12: three missed heartbeats (each waiting out its timeout) before `invalid`; SHOW REPLICAS
    // answers from cached state, and the replica is ready again after the stall.
    let new = stall("3.12");
    let after = new.invalid_after.expect("marked invalid during the stall");
    assert!(after >= Duration::from_millis(1200) && after < Duration::from_secs(3), "{after:?}");
    assert!(!new.show_replicas_blocked);
    assert_eq!(new.final_status, Some(Value::from("ready")));

    // 2.22: no RPC timeouts, so the check and SHOW REPLICAS hang on the stalled link.
    let old = stall("2.22");
    assert_eq!(old.invalid_after, None);
    assert!(old.show_replicas_blocked);
    assert_eq!(old.final_status, Some(Value::from("ready")));
}
