//! Properties: hostile bytes never panic the server; replication converges under random
//! write/restart interleavings.

mod common;

use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Instance, eventually, params};
use fake_memgraph::bolt::chunk::frame_into;
use fake_memgraph::bolt::handshake::MAGIC;
use fake_memgraph::bolt::message::{BoltVersion, Request};
use fake_memgraph::{ReplicaState, TokioNet, Value};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics on any thread, including inside the server's tasks (which tokio would swallow).
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[derive(Debug, Clone)]
enum Preamble {
    /// Bytes straight after connecting.
    Nothing,
    /// After a valid handshake.
    Handshake,
    /// After handshake and HELLO; the payloads are framed as chunks.
    Session,
}

fn preamble() -> impl Strategy<Value = Preamble> {
    prop_oneof![Just(Preamble::Nothing), Just(Preamble::Handshake), Just(Preamble::Session)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_server(
        pre in preamble(),
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 1..5),
        struct_like in any::<bool>(),
    ) {
        count_panics();
        let before = PANICS.load(Ordering::SeqCst);
        runtime().block_on(async {
            let net = TokioNet::ephemeral();
            let i = Instance::start(&net, "fuzz", &[], 1).await;
            let port = i.handle.bolt_port();
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let mut bytes = Vec::new();
            if !matches!(pre, Preamble::Nothing) {
                bytes.extend_from_slice(&MAGIC);
                bytes.extend_from_slice(&[0, 0, 4, 4, 0, 0, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
            }
            if matches!(pre, Preamble::Session) {
                let hello = Request::Hello { extra: Default::default() };
                frame_into(&hello.encode(BoltVersion::new(4, 4)), &mut bytes);
            }
            for p in &payloads {
                if matches!(pre, Preamble::Session) {
                    // Make many payloads look like a structure so decoding gets further.
                    let mut msg = p.clone();
                    if struct_like && !msg.is_empty() {
                        msg[0] = 0xB0 | (msg[0] & 0x0F);
                    }
                    frame_into(&msg, &mut bytes);
                } else {
                    bytes.extend_from_slice(p);
                }
            }
            let _ = s.write_all(&bytes).await;
            let mut sink = [0u8; 4096];
            // Read whatever comes back until the server closes or goes quiet.
            while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(50), s.read(&mut sink)).await {
                if n == 0 {
                    break;
                }
            }
            drop(s);
            let mut c = common::connect(port).await;
            let r = c.query("RETURN 1 AS ping").await.unwrap();
            assert_eq!(r.single(), Some(&Value::Int(1)));
        });
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), before);
    }
}

#[derive(Debug, Clone)]
enum Step {
    Write(i64),
    Delete(i64),
    CrashReplica(usize),
    StopReplica(usize),
    RestartMain,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0i64..6).prop_map(Step::Write),
        1 => (0i64..6).prop_map(Step::Delete),
        1 => (0usize..2).prop_map(Step::CrashReplica),
        1 => (0usize..2).prop_map(Step::StopReplica),
        1 => Just(Step::RestartMain),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn replication_converges(
        steps in proptest::collection::vec(step(), 1..14),
        sync_first in any::<bool>(),
        replica_flush in 1u64..4,
    ) {
        runtime().block_on(async {
            let net = TokioNet::ephemeral();
            let mut main = Instance::start(&net, "m", &[], 1).await;
            let flush = format!("--storage-wal-file-flush-every-n-tx={replica_flush}");
            let mut replicas = vec![
                Instance::start(&net, "r0", &[flush.as_str()], 2).await,
                Instance::start(&net, "r1", &[flush.as_str()], 3).await,
            ];
            let modes = if sync_first { ["SYNC", "ASYNC"] } else { ["ASYNC", "SYNC"] };
            for (r, mode) in replicas.iter().zip(modes) {
                r.make_replica().await;
                main.ok(&format!("REGISTER REPLICA {} {mode} TO \"{}\"", r.name, r.address())).await;
            }
            for s in &steps {
                match s {
                    Step::Write(k) => {
                        let res = main
                            .client()
                            .await
                            .run("CREATE (:P {k: $k})", params(&[("k", Value::Int(*k))]))
                            .await;
                        if let Err(e) = res {
                            // Only a SYNC replica being unavailable may fail a write (still committed).
                            let msg = e.server_message().unwrap_or_default();
                            assert!(msg.starts_with("Replication Exception"), "{msg}");
                        }
                    }
                    Step::Delete(k) => {
                        let res = main
                            .client()
                            .await
                            .run("MATCH (n:P {k: $k}) DELETE n", params(&[("k", Value::Int(*k))]))
                            .await;
                        if let Err(e) = res {
                            let msg = e.server_message().unwrap_or_default();
                            assert!(msg.starts_with("Replication Exception"), "{msg}");
                        }
                    }
                    Step::CrashReplica(i) => replicas[*i].crash_restart().await,
                    Step::StopReplica(i) => replicas[*i].graceful_restart().await,
                    Step::RestartMain => main.graceful_restart().await,
                }
            }
            for r in &replicas {
                let name = r.name.clone();
                eventually(10, &format!("{name} converges"), || async {
                    main.handle.replica_state(&name) == Some(ReplicaState::Ready)
                        && r.handle.digest() == main.handle.digest()
                        && r.handle.timestamp() == main.handle.timestamp()
                })
                .await;
            }
        });
    }
}
