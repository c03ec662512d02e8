//! Replication between fake instances on loopback (three instances, real TCP).

mod common;

use common::{Instance, eventually, params, status_of};
use fake_memgraph::{ReplicaState, Role, TokioNet, Value};

async fn count(i: &Instance) -> i64 {
    i.ok("MATCH (n) RETURN count(n) AS c").await.single().and_then(Value::as_int).unwrap_or(-1)
}

async fn wait_ready(main: &Instance, name: &str) {
    eventually(10, &format!("{name} ready"), || async {
        status_of(&main.ok("SHOW REPLICAS").await, name).as_deref() == Some("ready")
    })
    .await;
}

async fn error_of(i: &Instance, q: &str) -> (String, String) {
    match i.run(q).await {
        Ok(r) => panic!("{q} unexpectedly succeeded: {r:?}"),
        Err(e) => (e.server_code().unwrap_or_default().to_string(), e.server_message().unwrap_or_default().to_string()),
    }
}

/// MAIN `a`, SYNC replica `b`, ASYNC replica `c`.
async fn cluster(net: &TokioNet, version: &str) -> (Instance, Instance, Instance) {
    let flags = [format!("--memgraph-version={version}")];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let a = Instance::start(net, "a", &flags, 10).await;
    let b = Instance::start(net, "b", &flags, 20).await;
    let c = Instance::start(net, "c", &flags, 30).await;
    b.make_replica().await;
    c.make_replica().await;
    a.ok(&format!("REGISTER REPLICA b SYNC TO \"{}\"", b.address())).await;
    a.ok(&format!("REGISTER REPLICA c ASYNC TO \"{}\"", c.address())).await;
    (a, b, c)
}

#[tokio::test]
async fn register_write_on_main_read_on_replicas_and_show_replicas() {
    let net = TokioNet::ephemeral();
    let (a, b, c) = cluster(&net, "3.12").await;
    wait_ready(&a, "b").await;
    wait_ready(&a, "c").await;
    let r = a.ok("SHOW REPLICAS").await;
    assert_eq!(r.fields, ["name", "socket_address", "sync_mode", "system_info", "data_info"]);
    assert_eq!(r.rows[0][0], Value::from("b"));
    assert_eq!(r.rows[0][1], Value::from("b:10000"));
    assert_eq!(r.rows[0][2], Value::from("sync"));
    assert_eq!(r.rows[0][3], Value::Null);
    assert_eq!(r.rows[1][2], Value::from("async"));

    let mut client = a.client().await;
    for i in 0..5 {
        client.run("CREATE (n:Item {i: $i}) RETURN n", params(&[("i", Value::Int(i))])).await.unwrap();
    }
    // SYNC: visible on the replica as soon as the commit returned.
    assert_eq!(count(&b).await, 5);
    eventually(5, "async replica caught up", || async { c.handle.digest() == a.handle.digest() }).await;
    assert_eq!(b.handle.digest(), a.handle.digest());
    assert_eq!(b.handle.timestamp(), a.handle.timestamp());
    assert_eq!(a.handle.timestamp(), 10, "two per write transaction");

    let r = a.ok("SHOW REPLICAS").await;
    let info = r.rows[0][4].as_map().unwrap()["memgraph"].as_map().unwrap().clone();
    assert_eq!(info["ts"], Value::Int(10));
    assert_eq!(info["behind"], Value::Int(0));
    assert_eq!(info["status"], Value::from("ready"));

    let (code, msg) = error_of(&b, "CREATE (:X)").await;
    assert_eq!(code, "Memgraph.ClientError.MemgraphError.MemgraphError");
    assert!(msg.starts_with("Write queries are forbidden on the replica instance."));
    let (_, msg) = error_of(&b, "SHOW REPLICAS").await;
    assert_eq!(msg, "Show replicas query should only be run on the main instance.");
}

#[tokio::test]
async fn restarted_replica_recovers_automatically() {
    let net = TokioNet::ephemeral();
    let (a, mut b, _c) = cluster(&net, "3.12").await;
    wait_ready(&a, "b").await;
    a.ok("CREATE (:Before)").await;
    b.crash_restart().await;
    assert_eq!(b.handle.role(), Role::Replica, "role survives the restart");
    // Writes while b is being recovered may fail for SYNC; keep writing ASYNC-style until ready.
    let _ = a.run("CREATE (:During)").await;
    wait_ready(&a, "b").await;
    assert_eq!(b.handle.digest(), a.handle.digest());
    a.ok("CREATE (:After)").await;
    assert_eq!(b.handle.digest(), a.handle.digest());
    assert_eq!(count(&b).await, count(&a).await);
}

#[tokio::test]
async fn sync_replica_down_errors_but_data_stays_committed() {
    for (version, code, text) in [
        (
            "3.12",
            "Memgraph.ClientError.MemgraphError.MemgraphError",
            "Replication Exception: Failed to replicate to SYNC replica 'b': replica is not reachable or not in sync with the main. Replica will be recovered automatically. Transaction is still committed on the main instance and other alive replicas. Check the status of the replicas using 'SHOW REPLICAS' query.",
        ),
        (
            "3.7",
            "Memgraph.TransientError.MemgraphError.MemgraphError",
            "Replication Exception: At least one SYNC replica has not confirmed committing last transaction. Check the status of the replicas using 'SHOW REPLICAS' query.",
        ),
    ] {
        let net = TokioNet::ephemeral();
        let (a, mut b, c) = cluster(&net, version).await;
        wait_ready(&a, "b").await;
        b.handle.kill();
        eventually(5, "b seen invalid", || async { a.handle.replica_state("b") == Some(ReplicaState::Invalid) }).await;
        let (got_code, msg) = error_of(&a, "CREATE (:Lost {k: 1})").await;
        assert_eq!(got_code, code, "{version}");
        assert_eq!(msg, text, "{version}");
        // Committed on MAIN and on the other (async) replica anyway.
        assert_eq!(count(&a).await, 1);
        eventually(5, "async replica has it", || async { c.handle.node_count() == 1 }).await;

        // An explicit COMMIT gets a ClientError in every version.
        let mut client = a.client().await;
        client.begin().await.unwrap();
        client.query("CREATE (:Lost {k: 2})").await.unwrap();
        let e = client.commit().await.unwrap_err();
        assert_eq!(e.server_code(), Some("Memgraph.ClientError.MemgraphError.MemgraphError"));
        assert_eq!(count(&a).await, 2);

        b.crash_restart().await;
        wait_ready(&a, "b").await;
        a.ok("CREATE (:Back)").await;
        assert_eq!(b.handle.digest(), a.handle.digest());
    }
}

#[tokio::test]
async fn strict_sync_aborts_everywhere() {
    let net = TokioNet::ephemeral();
    let a = Instance::start(&net, "a", &[], 1).await;
    let b = Instance::start(&net, "b", &[], 2).await;
    let c = Instance::start(&net, "c", &[], 3).await;
    b.make_replica().await;
    c.make_replica().await;
    a.ok("REGISTER REPLICA b STRICT_SYNC TO \"b:10000\"").await;
    a.ok("REGISTER REPLICA c ASYNC TO \"c:10000\"").await;
    wait_ready(&a, "b").await;
    a.ok("CREATE (:Kept)").await;
    assert_eq!(b.handle.node_count(), 1);

    // Killed but not yet noticed: phase 1 fails and the transaction is aborted.
    b.handle.kill();
    let (code, msg) = error_of(&a, "CREATE (:Aborted)").await;
    assert_eq!(code, "Memgraph.ClientError.MemgraphError.MemgraphError");
    assert!(msg.starts_with("Replication Exception: Failed to replicate to STRICT_SYNC replica 'b':"), "{msg}");
    assert!(msg.contains("Transaction was aborted on all instances."), "{msg}");
    // Once invalid, the check fails before anything is sent.
    let (_, msg) = error_of(&a, "CREATE (:Aborted)").await;
    assert!(msg.contains("Transaction was aborted on all instances."), "{msg}");
    assert_eq!(count(&a).await, 1);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(c.handle.node_count(), 1);

    // STRICT_SYNC does not exist before 3.5: a syntax error (ClientError), nothing registered.
    for (version, seed) in [("2.21", 4), ("3.0", 5), ("3.4", 6)] {
        let old = Instance::start(&net, "old", &[&format!("--memgraph-version={version}")], seed).await;
        let (code, msg) = error_of(&old, "REGISTER REPLICA b STRICT_SYNC TO \"b:10000\"").await;
        assert_eq!(code, "Memgraph.ClientError.MemgraphError.MemgraphError", "{version}");
        assert!(msg.starts_with("Error on line 1 position "), "{version}: {msg}");
        assert!(msg.contains("mismatched input 'STRICT_SYNC' expecting {ASYNC, SYNC}"), "{version}: {msg}");
        assert!(old.ok("SHOW REPLICAS").await.rows.is_empty(), "{version}");
    }
    let v35 = Instance::start(&net, "v35", &["--memgraph-version=3.5"], 7).await;
    let (_, msg) = error_of(&v35, "REGISTER REPLICA b STRICT_SYNC TO \"nowhere:1\"").await;
    assert_eq!(msg, "Couldn't register replica b. Error: 5", "3.5 parses it");
}

#[tokio::test]
async fn old_main_with_extra_commits_is_diverged_until_wiped() {
    let net = TokioNet::ephemeral();
    let a = Instance::start(&net, "a", &[], 1).await;
    let b = Instance::start(&net, "b", &[], 2).await;
    b.make_replica().await;
    a.ok("REGISTER REPLICA b ASYNC TO \"b:10000\"").await;
    wait_ready(&a, "b").await;
    a.ok("CREATE (:Shared)").await;
    eventually(5, "b has the shared write", || async { b.handle.node_count() == 1 }).await;

    // Failover: b is promoted while a keeps running as MAIN and accepts a write (split brain).
    b.ok("SET REPLICATION ROLE TO MAIN").await;
    assert_eq!(b.handle.epoch_history().last(), Some(&(a.handle.epoch(), 2)));
    assert_ne!(b.handle.epoch(), a.handle.epoch());
    a.ok("CREATE (:OnlyOnOldMain)").await;
    b.ok("CREATE (:OnlyOnNewMain)").await;

    // Demote the old main and try to register it on the new one.
    let mut a = a;
    a.make_replica().await;
    let (_, msg) = error_of(&b, "REGISTER REPLICA a SYNC TO \"a:10000\"").await;
    assert_eq!(msg, "Couldn't register replica a. Error: 3");
    let r = b.ok("SHOW REPLICAS").await;
    assert_eq!(r.rows.len(), 1, "the failed registration leaves a row");
    assert_eq!(r.rows[0][4], Value::Map(Default::default()), "with data_info {{}}");
    let (_, msg) = error_of(&b, "REGISTER REPLICA a SYNC TO \"a:10000\"").await;
    assert_eq!(msg, "Couldn't register replica a. Error: 1");

    // Fix: drop, wipe the old main's storage (keeping its replica role), register again.
    b.ok("DROP REPLICA a").await;
    a.flags.push("--data-recovery-on-startup=false".into());
    a.graceful_restart().await;
    assert_eq!(a.handle.role(), Role::Replica);
    assert_eq!(a.handle.node_count(), 0);
    assert!(a.dir.paths().iter().any(|p| p.starts_with(".backup/")));
    b.ok("REGISTER REPLICA a SYNC TO \"a:10000\"").await;
    wait_ready(&b, "a").await;
    assert_eq!(a.handle.digest(), b.handle.digest());
    assert_eq!(count(&a).await, 2);
}

#[tokio::test]
async fn demoted_main_without_extra_commits_rejoins() {
    let net = TokioNet::ephemeral();
    let a = Instance::start(&net, "a", &[], 1).await;
    let b = Instance::start(&net, "b", &[], 2).await;
    b.make_replica().await;
    a.ok("REGISTER REPLICA b SYNC TO \"b:10000\"").await;
    wait_ready(&a, "b").await;
    a.ok("CREATE (:One)").await;
    b.ok("SET REPLICATION ROLE TO MAIN").await;
    b.ok("CREATE (:Two)").await;
    a.make_replica().await;
    let r = a.ok("SHOW REPLICATION ROLE").await;
    assert_eq!(r.single(), Some(&Value::from("replica")));
    b.ok("REGISTER REPLICA a SYNC TO \"a:10000\"").await;
    wait_ready(&b, "a").await;
    assert_eq!(a.handle.digest(), b.handle.digest());
    assert_eq!(a.handle.epoch(), b.handle.epoch());
}

#[tokio::test]
async fn failed_registration_leaves_a_stale_row_until_dropped() {
    let net = TokioNet::ephemeral();
    let a = Instance::start(&net, "a", &[], 1).await;
    let b = Instance::start(&net, "b", &[], 2).await;
    // b is still a MAIN: not a replica, and nothing listens on its replication port.
    let (code, msg) = error_of(&a, "REGISTER REPLICA b SYNC TO \"b:10000\"").await;
    assert_eq!(code, "Memgraph.ClientError.MemgraphError.MemgraphError");
    assert_eq!(msg, "Couldn't register replica b. Error: 5");
    let r = a.ok("SHOW REPLICAS").await;
    assert_eq!(r.rows.len(), 1);
    assert_eq!(r.rows[0][4], Value::Map(Default::default()));
    assert_eq!(a.handle.replicas()[0].state, None);
    // No checks run for it: making b a replica does not repair the row.
    b.make_replica().await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(a.ok("SHOW REPLICAS").await.rows[0][4], Value::Map(Default::default()));
    let (_, msg) = error_of(&a, "REGISTER REPLICA b SYNC TO \"b:10000\"").await;
    assert_eq!(msg, "Couldn't register replica b. Error: 1");
    let (_, msg) = error_of(&a, "REGISTER REPLICA other SYNC TO \"b:10000\"").await;
    assert_eq!(msg, "Couldn't register replica other. Error: 2");
    let r = a.ok("DROP REPLICA b").await;
    assert_eq!(r.notification_codes(), ["DropReplica"]);
    let r = a.ok("REGISTER REPLICA b SYNC TO \"b:10000\"").await;
    assert_eq!(r.notification_codes(), ["RegisterReplica"]);
    wait_ready(&a, "b").await;

    // Texts before 3.5 carry no error number.
    let old = Instance::start(&net, "old", &["--memgraph-version=3.4"], 5).await;
    let (_, msg) = error_of(&old, "REGISTER REPLICA x SYNC TO \"nowhere:1\"").await;
    assert_eq!(msg, "Couldn't register replica x.");
    let (_, msg) = error_of(&old, "REGISTER REPLICA y SYNC TO \"a:b:c\"").await;
    assert!(msg.starts_with("Invalid socket address. The socket address must be"), "{msg}");
}

#[tokio::test]
async fn replica_with_foreign_data_registers_but_stays_invalid() {
    let net = TokioNet::ephemeral();
    let a = Instance::start(&net, "a", &[], 1).await;
    let b = Instance::start(&net, "b", &[], 2).await;
    b.ok("CREATE (:Foreign)").await;
    b.make_replica().await;
    a.ok("CREATE (:Mine)").await;
    a.ok("REGISTER REPLICA b ASYNC TO \"b:10000\"").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = a.ok("SHOW REPLICAS").await;
    assert_eq!(status_of(&r, "b").as_deref(), Some("invalid"));
    a.ok("CREATE (:More)").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(a.handle.replica_state("b"), Some(ReplicaState::Invalid));
    assert_eq!(b.handle.node_count(), 1, "foreign data untouched");
}

#[tokio::test]
async fn last_main_to_register_owns_the_replica() {
    let net = TokioNet::ephemeral();
    let a = Instance::start(&net, "a", &[], 1).await;
    let d = Instance::start(&net, "d", &[], 4).await;
    let b = Instance::start(&net, "b", &[], 2).await;
    b.make_replica().await;
    a.ok("REGISTER REPLICA b ASYNC TO \"b:10000\"").await;
    wait_ready(&a, "b").await;
    d.ok("REGISTER REPLICA b ASYNC TO \"b:10000\"").await;
    wait_ready(&d, "b").await;
    assert_eq!(b.handle.main_uuid(), d.handle.main_uuid());
    eventually(5, "the first MAIN sees b invalid", || async {
        status_of(&a.ok("SHOW REPLICAS").await, "b").as_deref() == Some("invalid")
    })
    .await;
    d.ok("CREATE (:FromD)").await;
    eventually(5, "b follows d", || async { b.handle.digest() == d.handle.digest() }).await;
}

#[tokio::test]
async fn main_restart_keeps_its_replicas_only_when_state_is_restored() {
    let net = TokioNet::ephemeral();
    let (mut a, b, _c) = cluster(&net, "3.12").await;
    wait_ready(&a, "b").await;
    a.ok("CREATE (:Durable)").await;
    a.crash_restart().await;
    let r = a.ok("SHOW REPLICAS").await;
    let names: Vec<_> = r.rows.iter().map(|row| row[0].clone()).collect();
    assert_eq!(names, [Value::from("b"), Value::from("c")]);
    wait_ready(&a, "b").await;
    a.ok("CREATE (:AfterRestart)").await;
    assert_eq!(b.handle.digest(), a.handle.digest());

    a.flags.push("--replication-restore-state-on-startup=false".into());
    a.graceful_restart().await;
    assert_eq!(a.handle.role(), Role::Main);
    assert!(a.ok("SHOW REPLICAS").await.rows.is_empty());
}

#[tokio::test]
async fn role_changes_notifications_and_errors() {
    let net = TokioNet::ephemeral();
    let a = Instance::start(&net, "a", &[], 1).await;
    let b = Instance::start(&net, "b", &[], 2).await;
    b.make_replica().await;
    a.ok("REGISTER REPLICA b SYNC TO \"b:10000\"").await;

    let (_, msg) = error_of(&a, "SET REPLICATION ROLE TO REPLICA").await;
    assert_eq!(msg, "Port number invalid!");
    let (_, msg) = error_of(&a, "SET REPLICATION ROLE TO REPLICA WITH PORT '10000'").await;
    assert_eq!(msg, "Port number invalid!");
    let (_, msg) = error_of(&a, "SET REPLICATION ROLE TO REPLICA WITH PORT 70000").await;
    assert_eq!(msg, "Port number invalid!");

    // Demoting a MAIN forgets its replicas.
    let r = a.ok("SET REPLICATION ROLE TO REPLICA WITH PORT 7687").await;
    assert_eq!(r.notification_codes(), ["ReplicaPortWarning", "SetReplica"]);
    let r = a.ok("SET REPLICATION ROLE TO MAIN").await;
    assert_eq!(r.notification_codes(), ["SetReplica"]);
    assert!(a.ok("SHOW REPLICAS").await.rows.is_empty());
    let (_, msg) = error_of(&b, "REGISTER REPLICA x SYNC TO \"a\"").await;
    assert_eq!(msg, "Replica can't register another replica!");
    let (_, msg) = error_of(&b, "DROP REPLICA x").await;
    assert_eq!(
        msg,
        "Replica can't unregister a replica! Please rerun the query on main in order to unregister a replica from the cluster."
    );

    // An HA data instance refuses manual replication at RUN.
    let ha = Instance::start(&net, "ha", &["--management-port=10011"], 3).await;
    let (_, msg) = error_of(&ha, "SET REPLICATION ROLE TO REPLICA WITH PORT 10000").await;
    assert_eq!(msg, "Can't set role manually on instance with coordinator server port.");
    let (_, msg) = error_of(&ha, "REGISTER REPLICA x SYNC TO \"a\"").await;
    assert_eq!(msg, "Can't register replica manually on instance with coordinator server port.");
    let (_, msg) = error_of(&ha, "CREATE (:W)").await;
    assert!(msg.starts_with("Write queries currently forbidden on the main instance."), "{msg}");
}

#[tokio::test]
async fn old_versions_ask_replicas_live_in_show_replicas() {
    let net = TokioNet::ephemeral();
    let (a, mut b, _c) = cluster(&net, "2.21").await;
    wait_ready(&a, "b").await;
    b.handle.kill();
    let r = a.ok("SHOW REPLICAS").await;
    let info = r.rows[0][4].as_map().unwrap()["memgraph"].as_map().unwrap().clone();
    assert_eq!(info["status"], Value::from("invalid"));
    assert_eq!(info["ts"], Value::Int(0));
    assert_eq!(info["behind"], Value::Int(0));
    b.crash_restart().await;
    wait_ready(&a, "b").await;
    let (_, msg) = error_of(&b, "SHOW REPLICAS").await;
    assert_eq!(msg, "Replica can't show registered replicas (it shouldn't have any)!");
}

#[tokio::test]
async fn recover_snapshot_forces_a_full_resync() {
    let net = TokioNet::ephemeral();
    let (a, b, _c) = cluster(&net, "3.12").await;
    wait_ready(&a, "b").await;
    a.ok("CREATE (:Early)").await;
    let path = a.ok("CREATE SNAPSHOT").await.single().and_then(|v| v.as_str().map(str::to_owned)).unwrap();
    a.ok("CREATE (:Late)").await;
    assert_eq!(b.handle.node_count(), 2);
    let (code, msg) = error_of(&a, &format!("RECOVER SNAPSHOT \"{path}\"")).await;
    assert_eq!(code, "Memgraph.TransientError.MemgraphError.MemgraphError");
    assert_eq!(msg, "Failed to recover a snapshot. Storage is not clean. Try using FORCE.");
    a.ok(&format!("RECOVER SNAPSHOT \"{path}\" FORCE")).await;
    assert_eq!(a.handle.node_count(), 1);
    eventually(5, "replica resynced from scratch", || async { b.handle.digest() == a.handle.digest() }).await;
    wait_ready(&a, "b").await;
    let (_, msg) = error_of(&b, &format!("RECOVER SNAPSHOT \"{path}\"")).await;
    assert_eq!(msg, "Failed to recover a snapshot. Replica instances are not allowed to create them.");
}
