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
