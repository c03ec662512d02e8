//! Snapshots, WAL, recovery and startup checks.

mod common;

use common::{Instance, config};
use fake_memgraph::{Config, FsDataDir, IdSource, ManualClock, MemDataDir, Server, StartError, TokioNet, Value};

async fn write(i: &Instance, n: i64) {
    let mut c = i.client().await;
    for k in 0..n {
        c.run("CREATE (:W {k: $k})", common::params(&[("k", Value::Int(k))])).await.unwrap();
    }
}

#[tokio::test]
async fn crash_loses_only_unflushed_wal_and_graceful_stop_keeps_everything() {
    let net = TokioNet::ephemeral();
    // Never snapshot on exit here: the WAL alone must carry the data.
    let flags = ["--storage-wal-file-flush-every-n-tx=3", "--storage-snapshot-on-exit=false"];
    let mut i = Instance::start(&net, "i", &flags, 1).await;
    write(&i, 5).await;
    i.crash_restart().await;
    assert_eq!(i.handle.node_count(), 3, "3 flushed, 2 lost");
    assert_eq!(i.handle.timestamp(), 6);
    write(&i, 2).await;
    i.graceful_restart().await;
    assert_eq!(i.handle.node_count(), 5, "a graceful stop flushes the WAL");
    assert!(i.dir.paths().iter().any(|p| p.starts_with("wal/") && p.contains("_from_")));
    assert!(!i.dir.paths().iter().any(|p| p.starts_with("snapshots/")));
}

#[tokio::test]
async fn snapshot_on_exit_only_on_graceful_stop() {
    let net = TokioNet::ephemeral();
    let flags = ["--storage-snapshot-on-exit=true", "--storage-wal-file-flush-every-n-tx=100000"];
    let mut i = Instance::start(&net, "i", &flags, 1).await;
    write(&i, 4).await;
    i.crash_restart().await;
    assert_eq!(i.handle.node_count(), 0, "nothing was flushed and no snapshot was taken");
    assert!(!i.dir.paths().iter().any(|p| p.starts_with("snapshots/")));
    write(&i, 4).await;
    i.graceful_restart().await;
    assert_eq!(i.handle.node_count(), 4);
    let snaps: Vec<String> = i.dir.paths().into_iter().filter(|p| p.starts_with("snapshots/")).collect();
    assert_eq!(snaps.len(), 1);
    // `<YYYYmmddHHMMSSffffff>_timestamp_<ts>`; the test clock is 2023-11-14T22:13:20Z.
    assert_eq!(snaps[0], "snapshots/20231114221320000000_timestamp_8");
}

#[tokio::test]
async fn recovery_disabled_moves_files_to_backup() {
    let net = TokioNet::ephemeral();
    let mut i = Instance::start(&net, "i", &["--storage-snapshot-on-exit=false"], 1).await;
    write(&i, 2).await;
    i.ok("CREATE SNAPSHOT").await;
    write(&i, 1).await;
    i.flags.push("--data-recovery-on-startup=false".into());
    i.graceful_restart().await;
    assert_eq!(i.handle.node_count(), 0);
    let paths = i.dir.paths();
    assert!(paths.iter().any(|p| p.starts_with(".backup/snapshots/")), "{paths:?}");
    assert!(paths.iter().any(|p| p.starts_with(".backup/wal/")), "{paths:?}");
}

#[tokio::test]
async fn startup_checks_are_fatal() {
    let cfg = config(&["--storage-wal-enabled=true", "--storage-snapshot-interval-sec=0"]);
    let err =
        Server::start(cfg, TokioNet::ephemeral(), MemDataDir::default(), ManualClock::new(0), IdSource::seeded(1))
            .await
            .unwrap_err();
    assert!(matches!(err, StartError::Config(_)));
    assert!(err.to_string().starts_with("In order to use write-ahead-logging you must enable periodic snapshots"));
    // A restored replica whose port is taken cannot start.
    let net = TokioNet::new();
    let blocker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = blocker.local_addr().unwrap().port();
    let dir = MemDataDir::default();
    let first = Server::start(
        config(&["--bolt-port=0"]),
        TokioNet::ephemeral(),
        dir.clone(),
        ManualClock::new(0),
        IdSource::seeded(2),
    )
    .await
    .unwrap();
    let mut c = common::connect(first.bolt_port()).await;
    c.query("SET REPLICATION ROLE TO REPLICA WITH PORT 0").await.unwrap();
    first.shutdown().await;
    let state = String::from_utf8(dir.snapshot()["replication/state.json"].clone()).unwrap();
    let state = state.replace("\"port\":0", &format!("\"port\":{port}"));
    fake_memgraph::DataDir::write(&dir, "replication/state.json", state.as_bytes()).unwrap();
    let err = Server::start(config(&["--bolt-port=0"]), net, dir, ManualClock::new(0), IdSource::seeded(3))
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::ReplicationBind { .. }), "{err}");
}

#[tokio::test]
async fn snapshot_queries_per_version() {
    let net = TokioNet::ephemeral();
    // 3.12: CREATE SNAPSHOT returns a path; retention keeps the newest two; newest first.
    let i = Instance::start(&net, "i", &["--storage-snapshot-retention-count=2"], 1).await;
    let mut paths = Vec::new();
    for _ in 0..3 {
        write(&i, 1).await;
        let r = i.ok("CREATE SNAPSHOT").await;
        assert_eq!(r.fields, ["path"]);
        paths.push(r.single().and_then(Value::as_str).unwrap().to_string());
    }
    let r = i.ok("SHOW SNAPSHOTS").await;
    assert_eq!(r.fields, ["path", "timestamp", "creation_time", "size"]);
    let listed: Vec<&str> = r.rows.iter().map(|row| row[0].as_str().unwrap()).collect();
    assert_eq!(listed, [paths[2].as_str(), paths[1].as_str()]);
    assert_eq!(r.rows[0][1], Value::Int(6));
    assert_eq!(r.rows[0][2], Value::from("2023-11-14T22:13:20.000000+00:00"));
    assert!(r.rows[0][3].as_str().unwrap().ends_with('B') || r.rows[0][3].as_str().unwrap().ends_with("KiB"));
    let r = i.ok("SHOW NEXT SNAPSHOT").await;
    assert_eq!(r.fields, ["path", "creation_time"]);
    assert_eq!(r.rows.len(), 1);
    // Manual snapshots are always written from 3.5.
    i.ok("CREATE SNAPSHOT").await;

    // 3.4: no columns, "nothing new" error, the extra "next" row in SHOW SNAPSHOTS.
    let old = Instance::start(&net, "old", &["--memgraph-version=3.4"], 2).await;
    write(&old, 1).await;
    let r = old.ok("CREATE SNAPSHOT").await;
    assert!(r.fields.is_empty() && r.rows.is_empty());
    let e = old.run("CREATE SNAPSHOT").await.unwrap_err();
    assert_eq!(e.server_code(), Some("Memgraph.TransientError.MemgraphError.MemgraphError"));
    assert_eq!(e.server_message(), Some("Nothing has been written since the last snapshot."));
    let r = old.ok("SHOW SNAPSHOTS").await;
    assert_eq!(r.rows.len(), 2);
    assert_eq!(r.rows[0][1], Value::Int(0), "the next scheduled snapshot comes first");
    assert!(old.run("SHOW NEXT SNAPSHOT").await.is_err());

    // Replicas may not snapshot before 3.8.
    let r37 = Instance::start(&net, "r37", &["--memgraph-version=3.7"], 3).await;
    r37.make_replica().await;
    let e = r37.run("CREATE SNAPSHOT").await.unwrap_err();
    assert_eq!(
        e.server_message(),
        Some("Failed to create a snapshot. Replica instances are not allowed to create them.")
    );
    let r38 = Instance::start(&net, "r38", &["--memgraph-version=3.8"], 4).await;
    r38.make_replica().await;
    r38.ok("CREATE SNAPSHOT").await;

    // 2.21 has no SHOW SNAPSHOTS at all.
    let v221 = Instance::start(&net, "v221", &["--memgraph-version=2.21"], 5).await;
    let e = v221.run("SHOW SNAPSHOTS").await.unwrap_err();
    assert!(e.server_message().unwrap().starts_with("Error on line 1 position 6."));

    // Snapshot queries are refused in explicit transactions.
    let mut c = i.client().await;
    c.begin().await.unwrap();
    let e = c.query("CREATE SNAPSHOT").await.unwrap_err();
    assert!(e.server_message().unwrap().starts_with("Creating snapshots is not allowed in multicommand transactions."));
}

#[tokio::test]
async fn nothing_new_refuses_manual_snapshots_on_3_3_and_3_4_only() {
    let net = TokioNet::ephemeral();
    for (version, refuses) in [("3.2", false), ("3.3", true), ("3.4", true), ("3.5", false), ("3.12", false)] {
        let flags = [format!("--memgraph-version={version}"), "--storage-snapshot-on-exit=false".into()];
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let mut i = Instance::start(&net, "i", &flags, 1).await;
        write(&i, 1).await;
        i.ok("CREATE SNAPSHOT").await;
        match i.run("CREATE SNAPSHOT").await {
            Ok(_) => assert!(!refuses, "{version}: a second snapshot with nothing new was written"),
            Err(e) => {
                assert!(refuses, "{version}: {e}");
                assert_eq!(e.server_code(), Some("Memgraph.TransientError.MemgraphError.MemgraphError"));
                assert_eq!(e.server_message(), Some("Nothing has been written since the last snapshot."));
            }
        }
        // Memgraph keeps the last snapshot's digest in memory only: after a restart the first
        // snapshot is written even with nothing new.
        i.crash_restart().await;
        i.ok("CREATE SNAPSHOT").await;
        i.handle.kill();
    }
}

#[tokio::test]
async fn the_snapshot_on_exit_is_skipped_when_nothing_changed_from_3_3() {
    for (version, extra) in [("3.2", 1), ("3.3", 0), ("3.12", 0)] {
        let clock = ManualClock::new(1_700_000_000_000_000);
        let dir = MemDataDir::default();
        let cfg = config(&["--storage-snapshot-on-exit=true", &format!("--memgraph-version={version}")]);
        let boot =
            || Server::start(cfg.clone(), TokioNet::ephemeral(), dir.clone(), clock.clone(), IdSource::seeded(1));
        let snapshots = || dir.paths().iter().filter(|p| p.starts_with("snapshots/")).count();
        let h = boot().await.unwrap();
        let mut c = common::connect(h.bolt_port()).await;
        c.query("CREATE (:P)").await.unwrap();
        c.query("CREATE SNAPSHOT").await.unwrap();
        // A later wall clock, so another snapshot would get another file name.
        clock.advance_micros(1_000_000);
        h.shutdown().await;
        assert_eq!(snapshots(), 1 + extra, "{version}: the exit snapshot is not forced");
        // After a restart nothing is known about earlier snapshots, so this one is written.
        let h = boot().await.unwrap();
        clock.advance_micros(1_000_000);
        h.shutdown().await;
        assert_eq!(snapshots(), 2 + extra, "{version}");
    }
}

#[tokio::test]
async fn recover_snapshot_replaces_storage() {
    let net = TokioNet::ephemeral();
    let i = Instance::start(&net, "i", &[], 1).await;
    write(&i, 2).await;
    let path = i.ok("CREATE SNAPSHOT").await.single().and_then(Value::as_str).unwrap().to_string();
    write(&i, 3).await;
    let e = i.run("RECOVER SNAPSHOT \"/var/lib/memgraph/snapshots/nope\"").await.unwrap_err();
    assert_eq!(e.server_message(), Some("Failed to find the defined snapshot file."));
    i.ok(&format!("RECOVER SNAPSHOT '{path}' FORCE")).await;
    assert_eq!(i.handle.node_count(), 2);
    assert!(i.dir.paths().iter().any(|p| p.starts_with("snapshots/.old/")));
    assert!(i.dir.paths().iter().any(|p| p.starts_with("wal/.old/")));
}

#[tokio::test]
async fn periodic_snapshots_run_and_skip_when_unchanged() {
    use std::time::Duration;
    for (version, expected_after_idle) in [("3.12", 1), ("3.2", 2)] {
        let clock = ManualClock::new(1_700_000_000_000_000);
        let dir = MemDataDir::default();
        let cfg = config(&["--storage-snapshot-interval-sec=1", &format!("--memgraph-version={version}")]);
        let h =
            Server::start(cfg, TokioNet::ephemeral(), dir.clone(), clock.clone(), IdSource::seeded(1)).await.unwrap();
        let snapshots = || dir.paths().into_iter().filter(|p| p.starts_with("snapshots/")).count();
        common::connect(h.bolt_port()).await.query("CREATE (:P)").await.unwrap();
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(snapshots(), 1, "{version}: first period writes a snapshot");
        // Move the wall clock so a second snapshot would get a new file name.
        clock.advance_micros(60_000_000);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(snapshots(), expected_after_idle, "{version}: idle period");
        h.kill();
    }
}

#[tokio::test]
async fn real_directory_round_trip() {
    let root = std::env::temp_dir().join(format!("fake-mg-fs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = FsDataDir::new(&root).unwrap();
    let cfg: Config = config(&["--bolt-port=0"]);
    let h = Server::start(
        cfg.clone(),
        TokioNet::new(),
        dir.clone(),
        ManualClock::new(1_700_000_000_000_000),
        IdSource::seeded(1),
    )
    .await
    .unwrap();
    let mut c = common::connect(h.bolt_port()).await;
    c.query("CREATE (:OnDisk {k: 1})").await.unwrap();
    let path = c.query("CREATE SNAPSHOT").await.unwrap().single().and_then(Value::as_str).unwrap().to_string();
    assert!(std::path::Path::new(&path).is_file(), "{path}");
    c.query("CREATE (:OnDisk {k: 2})").await.unwrap();
    h.shutdown().await;
    let h = Server::start(cfg, TokioNet::new(), dir, ManualClock::new(1_700_000_000_000_000), IdSource::seeded(2))
        .await
        .unwrap();
    assert_eq!(h.node_count(), 2);
    h.kill();
    let _ = std::fs::remove_dir_all(&root);
}
