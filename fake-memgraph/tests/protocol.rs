//! Bolt protocol behaviour seen by a raw client: handshake, versions, failure handling, garbage.

mod common;

use std::collections::BTreeMap;

use common::Instance;
use fake_memgraph::bolt::chunk::{frame_into, read_message};
use fake_memgraph::bolt::handshake::{MAGIC, proposal};
use fake_memgraph::bolt::message::{BoltVersion, Request, Response};
use fake_memgraph::{Client, TokioNet, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a connection and handshakes with `proposals`; returns the server's 4-byte answer.
async fn handshake(port: u16, proposals: [[u8; 4]; 4]) -> (TcpStream, [u8; 4]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut hs = MAGIC.to_vec();
    for p in proposals {
        hs.extend_from_slice(&p);
    }
    s.write_all(&hs).await.unwrap();
    let mut ans = [0u8; 4];
    s.read_exact(&mut ans).await.unwrap();
    (s, ans)
}

struct Raw {
    s: TcpStream,
    v: BoltVersion,
}

impl Raw {
    async fn send(&mut self, reqs: &[Request]) {
        let mut out = Vec::new();
        for r in reqs {
            frame_into(&r.encode(self.v), &mut out);
        }
        self.s.write_all(&out).await.unwrap();
    }

    async fn recv(&mut self) -> Response {
        let m = read_message(&mut self.s).await.unwrap().expect("a message");
        Response::decode(&m).unwrap()
    }

    async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b).await, Ok(0) | Err(_))
    }
}

fn hello(extra: &[(&str, &str)]) -> Request {
    Request::Hello { extra: extra.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect() }
}

fn run(q: &str) -> Request {
    Request::Run { query: q.into(), params: BTreeMap::new(), extra: BTreeMap::new() }
}

/// Whether the server closed the connection (EOF or reset).
async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 8];
    matches!(s.read(&mut b).await, Ok(0) | Err(_))
}

const PULL_ALL: Request = Request::Pull { n: -1, qid: -1 };

const NEO4RS: [[u8; 4]; 4] = [[0, 0, 4, 4], [0, 0, 3, 4], [0, 0, 1, 4], [0, 0, 0, 4]];

#[tokio::test]
async fn version_negotiation_per_memgraph_release() {
    let net = TokioNet::ephemeral();
    let new = Instance::start(&net, "new", &[], 1).await;
    let old = Instance::start(&net, "old", &["--memgraph-version=3.11"], 2).await;
    assert_eq!(handshake(new.handle.bolt_port(), NEO4RS).await.1, [0, 0, 4, 4]);
    assert_eq!(handshake(old.handle.bolt_port(), NEO4RS).await.1, [0, 0, 3, 4]);
    let ranged = [proposal(5, 4, 4), proposal(4, 4, 4), [0; 4], [0; 4]];
    assert_eq!(handshake(new.handle.bolt_port(), ranged).await.1, [0, 0, 2, 5]);
    let v1 = [proposal(1, 0, 0), [0; 4], [0; 4], [0; 4]];
    assert_eq!(handshake(new.handle.bolt_port(), v1).await.1, [0, 0, 0, 1]);
    let (mut s, ans) = handshake(new.handle.bolt_port(), [proposal(3, 0, 0), proposal(5, 8, 2), [0; 4], [0; 4]]).await;
    assert_eq!(ans, [0; 4]);
    assert!(closed(&mut s).await, "closed after a failed negotiation");
}

#[tokio::test]
async fn hello_metadata_failure_ignored_reset() {
    let net = TokioNet::ephemeral();
    let i = Instance::start(&net, "i", &[], 1).await;
    let (s, _) = handshake(i.handle.bolt_port(), NEO4RS).await;
    let mut c = Raw { s, v: BoltVersion::new(4, 4) };
    c.send(&[hello(&[("user_agent", "raw/1"), ("scheme", "none")])]).await;
    let Response::Success(meta) = c.recv().await else { panic!("HELLO failed") };
    assert_eq!(meta["server"], Value::from("Neo4j/v5.11.0 compatible graph database server - Memgraph"));
    assert_eq!(meta["connection_id"], Value::from("bolt-1"));

    // A syntax error fails RUN; the pipelined PULL and everything after are IGNORED until RESET.
    c.send(&[run("MERGE (n)"), PULL_ALL, run("RETURN 1")]).await;
    let Response::Failure { code, message } = c.recv().await else { panic!("no failure") };
    assert_eq!(code, "Memgraph.ClientError.MemgraphError.MemgraphError");
    assert_eq!(
        message,
        "Error on line 1 position 1. The underlying parsing error is no viable alternative at input 'MERGE'"
    );
    assert_eq!(c.recv().await, Response::Ignored);
    assert_eq!(c.recv().await, Response::Ignored);
    c.send(&[Request::Reset, run("RETURN 1 AS ping"), PULL_ALL]).await;
    assert!(matches!(c.recv().await, Response::Success(_)));
    let Response::Success(run_meta) = c.recv().await else { panic!("RUN failed") };
    assert_eq!(run_meta["fields"], Value::List(vec![Value::from("ping")]));
    assert!(run_meta.contains_key("t_first"));
    assert_eq!(c.recv().await, Response::Record(vec![Value::Int(1)]));
    assert!(matches!(c.recv().await, Response::Success(_)));

    // PULL {n} streams in batches with has_more.
    c.send(&[run("RETURN 1 AS a"), Request::Pull { n: 0, qid: -1 }]).await;
    c.recv().await;
    let Response::Success(m) = c.recv().await else { panic!("PULL 0 failed") };
    assert_eq!(m.get("has_more"), Some(&Value::Bool(true)));
    c.send(&[Request::Pull { n: 5, qid: -1 }]).await;
    assert_eq!(c.recv().await, Response::Record(vec![Value::Int(1)]));
    let Response::Success(m) = c.recv().await else { panic!("PULL failed") };
    assert_eq!(m.get("has_more"), Some(&Value::Bool(false)));

    // Replication errors arrive on PULL, not on RUN.
    c.send(&[run("SET REPLICATION ROLE TO MAIN"), PULL_ALL]).await;
    assert!(matches!(c.recv().await, Response::Success(_)));
    let Response::Failure { message, .. } = c.recv().await else { panic!("no failure") };
    assert_eq!(message, "Couldn't set replication role to main!");
    c.send(&[Request::Reset]).await;
    c.recv().await;

    // Transactions driven by BEGIN/COMMIT query strings, as Memgraph allows.
    for q in ["BEGIN", "CREATE (:Tx)", "COMMIT"] {
        c.send(&[run(q), PULL_ALL]).await;
        assert!(matches!(c.recv().await, Response::Success(_)), "{q}");
        assert!(matches!(c.recv().await, Response::Success(_)), "{q}");
    }
    assert_eq!(i.handle.node_count(), 1);
    c.send(&[Request::Goodbye]).await;
    assert!(c.closed().await);
}

#[tokio::test]
async fn bolt5_needs_logon_and_carries_element_ids() {
    let net = TokioNet::ephemeral();
    let i = Instance::start(&net, "i", &["--fake-user=u", "--fake-password=p"], 1).await;
    let (s, ans) = handshake(i.handle.bolt_port(), [proposal(5, 2, 0), [0; 4], [0; 4], [0; 4]]).await;
    assert_eq!(ans, [0, 0, 2, 5]);
    let mut c = Raw { s, v: BoltVersion::new(5, 2) };
    c.send(&[hello(&[("user_agent", "raw/5")])]).await;
    assert!(matches!(c.recv().await, Response::Success(_)));
    let auth = |pw: &str| Request::Logon {
        auth: [("scheme", "basic"), ("principal", "u"), ("credentials", pw)]
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect(),
    };
    c.send(&[auth("p")]).await;
    assert!(matches!(c.recv().await, Response::Success(_)));
    c.send(&[run("CREATE (n:B5 {k: 1}) RETURN n"), PULL_ALL]).await;
    c.recv().await;
    let raw = read_message(&mut c.s).await.unwrap().unwrap();
    // RECORD [ Node with 4 fields (id, labels, props, element_id) ]: B1 71 91 B4 4E ...
    assert_eq!(&raw[..5], &[0xB1, 0x71, 0x91, 0xB4, 0x4E]);
    assert!(matches!(c.recv().await, Response::Success(_)));

    // A bad LOGON is answered with Unauthenticated and the connection is closed.
    let (s, _) = handshake(i.handle.bolt_port(), [proposal(5, 2, 0), [0; 4], [0; 4], [0; 4]]).await;
    let mut c = Raw { s, v: BoltVersion::new(5, 2) };
    c.send(&[hello(&[("user_agent", "raw/5")]), auth("wrong")]).await;
    c.recv().await;
    let Response::Failure { code, message } = c.recv().await else { panic!("bad login accepted") };
    assert_eq!(code, "Memgraph.ClientError.Security.Unauthenticated");
    assert_eq!(message, "Authentication failure");
    assert!(c.closed().await);

    // The library client puts credentials in HELLO (Bolt 4).
    let tcp = TcpStream::connect(("127.0.0.1", i.handle.bolt_port())).await.unwrap();
    let e = Client::connect(tcp, Some(("u", "nope"))).await.err().expect("rejected");
    assert_eq!(e.server_code(), Some("Memgraph.ClientError.Security.Unauthenticated"));
    let tcp = TcpStream::connect(("127.0.0.1", i.handle.bolt_port())).await.unwrap();
    let mut ok = Client::connect(tcp, Some(("u", "p"))).await.unwrap();
    assert_eq!(ok.bolt_version(), BoltVersion::new(4, 4));
    assert_eq!(ok.query("MATCH (n:B5) RETURN count(n)").await.unwrap().single(), Some(&Value::Int(1)));
}

#[tokio::test]
async fn bolt1_init_pull_all_and_ack_failure() {
    let net = TokioNet::ephemeral();
    let i = Instance::start(&net, "i", &[], 1).await;
    let (s, _) = handshake(i.handle.bolt_port(), [proposal(1, 0, 0), [0; 4], [0; 4], [0; 4]]).await;
    let mut c = Raw { s, v: BoltVersion::new(1, 0) };
    c.send(&[hello(&[("user_agent", "old/1"), ("scheme", "none")])]).await;
    assert!(matches!(c.recv().await, Response::Success(_)));
    c.send(&[run("RETURN nosuch(1)"), PULL_ALL]).await;
    let Response::Failure { message, .. } = c.recv().await else { panic!("no failure") };
    assert_eq!(message, "Function 'nosuch' doesn't exist.");
    assert_eq!(c.recv().await, Response::Ignored);
    c.send(&[Request::AckFailure, run("SHOW REPLICATION ROLE"), PULL_ALL]).await;
    assert!(matches!(c.recv().await, Response::Success(_)));
    assert!(matches!(c.recv().await, Response::Success(_)));
    assert_eq!(c.recv().await, Response::Record(vec![Value::from("main")]));
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let net = TokioNet::ephemeral();
    let i = Instance::start(&net, "i", &[], 1).await;
    let port = i.handle.bolt_port();
    let mut healthy = common::connect(port).await;

    // Wrong magic.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(closed(&mut s).await);

    // A bad PackStream marker after a good handshake.
    let (mut s, _) = handshake(port, NEO4RS).await;
    s.write_all(&[0x00, 0x02, 0xB1, 0xC7, 0x00, 0x00]).await.unwrap();
    assert!(closed(&mut s).await);

    // An unknown message signature.
    let (mut s, _) = handshake(port, NEO4RS).await;
    s.write_all(&[0x00, 0x02, 0xB0, 0x55, 0x00, 0x00]).await.unwrap();
    assert!(closed(&mut s).await);

    // A truncated chunk followed by a close.
    let (mut s, _) = handshake(port, NEO4RS).await;
    s.write_all(&[0x00, 0x10, 0xB1]).await.unwrap();
    drop(s);

    // Absurdly nested queries are refused, not a stack overflow.
    let deep = format!("RETURN {}1{}", "(".repeat(20_000), ")".repeat(20_000));
    let e = healthy.query(&deep).await.unwrap_err();
    assert!(e.server_message().unwrap().contains("maximum nesting depth exceeded"));

    assert_eq!(healthy.query("RETURN 1 AS ping").await.unwrap().single(), Some(&Value::Int(1)));
}

#[tokio::test]
async fn explicit_transactions_refuse_replication_queries_with_version_texts() {
    let net = TokioNet::ephemeral();
    for (version, text) in [
        ("3.0", "Replication clause not allowed in multicommand transactions."),
        (
            "3.12",
            "Managing replication is not allowed in multicommand transactions. A multicommand transaction, also known as an explicit transaction, groups multiple commands into a single atomic operation. Instead, please use an implicit transaction, also knwon as an auto committing transaction, in order to execute this particular query. For more details, visit https://memgraph.com/docs.",
        ),
    ] {
        let i = Instance::start(&net, "i", &[&format!("--memgraph-version={version}")], 1).await;
        let mut c = i.client().await;
        c.begin().await.unwrap();
        let e = c.query("SHOW REPLICAS").await.unwrap_err();
        assert_eq!(e.server_message(), Some(text), "{version}");
        // The client RESETs after a failure, so the connection keeps working.
        assert_eq!(c.query("RETURN 2 AS two").await.unwrap().single(), Some(&Value::Int(2)));
        let r = c.query("SHOW REPLICATION ROLE").await.unwrap();
        assert_eq!(r.fields, ["replication role"]);
    }
}
