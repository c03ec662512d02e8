//! neo4rs (the operator's production driver) against the fake over loopback.

mod common;

use common::{Instance, status_of};
use fake_memgraph::TokioNet;
use neo4rs::{BoltType, ConfigBuilder, Graph, query};

fn graph(port: u16, user: &str, password: &str) -> Graph {
    let config = ConfigBuilder::default()
        .uri(format!("127.0.0.1:{port}"))
        .user(user)
        .password(password)
        // Result streams hold their connection until dropped; leave room for several.
        .max_connections(16)
        .build()
        .expect("config");
    Graph::connect(config).expect("graph")
}

async fn single_string(g: &Graph, q: &str, col: &str) -> String {
    let mut rows = g.execute(query(q)).await.expect("execute");
    let row = rows.next().await.expect("next").expect("a row");
    row.get::<String>(col).expect("column")
}

fn server_error(e: neo4rs::Error) -> (String, String) {
    match e {
        neo4rs::Error::Neo4j(e) => (e.code().to_string(), e.message().to_string()),
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// Runs a query that must fail and returns `(code, message)`.
///
/// Uses `execute`, not `run`: Memgraph reports most errors on PULL/DISCARD, and neo4rs' `run`
/// treats a failure after RUN's SUCCESS as retryable, retrying with backoff for about a minute.
async fn failure(g: &Graph, q: &str) -> (String, String) {
    let e = match g.execute(query(q)).await {
        Err(e) => e,
        Ok(mut rows) => match rows.next().await {
            Err(e) => e,
            Ok(r) => panic!("{q} succeeded: {r:?}"),
        },
    };
    server_error(e)
}

#[tokio::test]
async fn connect_ping_parameters_and_nodes() {
    let net = TokioNet::ephemeral();
    let main = Instance::start(&net, "main", &[], 1).await;
    let g = graph(main.handle.bolt_port(), "", "");

    let mut rows = g.execute(query("RETURN 1 AS ping")).await.unwrap();
    let row = rows.next().await.unwrap().unwrap();
    assert_eq!(row.get::<i64>("ping").unwrap(), 1);
    assert!(rows.next().await.unwrap().is_none());

    // `run` is RUN + DISCARD: the write must still happen.
    g.run(query("CREATE (n:_OperatorTest {id: $id, note: $note})").param("id", 7).param("note", "x")).await.unwrap();
    let mut rows =
        g.execute(query("MATCH (n:_OperatorTest {id: $id}) RETURN n, n.note AS note").param("id", 7)).await.unwrap();
    let row = rows.next().await.unwrap().unwrap();
    let node: neo4rs::Node = row.get("n").unwrap();
    assert_eq!(node.labels(), vec!["_OperatorTest"]);
    assert_eq!(node.get::<i64>("id").unwrap(), 7);
    assert_eq!(row.get::<String>("note").unwrap(), "x");

    let mut rows = g.execute(query("MATCH (n:_OperatorTest) RETURN count(n) AS c")).await.unwrap();
    assert_eq!(rows.next().await.unwrap().unwrap().get::<i64>("c").unwrap(), 1);
    g.run(query("MATCH (n:_OperatorTest) DETACH DELETE n")).await.unwrap();
    assert_eq!(main.handle.node_count(), 0);

    // A result larger than neo4rs' fetch size exercises PULL {n} / has_more.
    for i in 0..3 {
        g.run(query("CREATE (:Many {i: $i})").param("i", i)).await.unwrap();
    }
    let cfg = ConfigBuilder::default()
        .uri(format!("127.0.0.1:{}", main.handle.bolt_port()))
        .user("")
        .password("")
        .fetch_size(1)
        .build()
        .unwrap();
    let small = Graph::connect(cfg).unwrap();
    let mut rows = small.execute(query("MATCH (n:Many) RETURN n.i AS i ORDER BY i")).await.unwrap();
    let mut seen = Vec::new();
    while let Some(r) = rows.next().await.unwrap() {
        seen.push(r.get::<i64>("i").unwrap());
    }
    assert_eq!(seen, vec![0, 1, 2]);
}

#[tokio::test]
async fn transactions_commit_and_rollback() {
    let net = TokioNet::ephemeral();
    let main = Instance::start(&net, "main", &[], 2).await;
    let g = graph(main.handle.bolt_port(), "", "");
    let mut txn = g.start_txn().await.unwrap();
    txn.run(query("CREATE (:T {k: 1})")).await.unwrap();
    txn.commit().await.unwrap();
    let mut txn = g.start_txn().await.unwrap();
    txn.run(query("CREATE (:T {k: 2})")).await.unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(main.handle.node_count(), 1);

    // Replication queries are refused inside explicit transactions.
    let mut txn = g.start_txn().await.unwrap();
    let (code, message) = server_error(txn.run(query("SHOW REPLICATION ROLE")).await.unwrap_err());
    assert_eq!(code, "Memgraph.ClientError.MemgraphError.MemgraphError");
    assert!(message.starts_with("Managing replication is not allowed in multicommand transactions."), "{message}");
}

#[tokio::test]
async fn every_replication_query_through_neo4rs() {
    let net = TokioNet::ephemeral();
    let main = Instance::start(&net, "main", &[], 3).await;
    let replica = Instance::start(&net, "replica-0", &[], 4).await;
    let gm = graph(main.handle.bolt_port(), "", "");
    let gr = graph(replica.handle.bolt_port(), "", "");

    assert_eq!(single_string(&gm, "SHOW REPLICATION ROLE", "replication role").await, "main");
    gr.run(query("SET REPLICATION ROLE TO REPLICA WITH PORT 10000")).await.unwrap();
    replica.publish_route();
    assert_eq!(single_string(&gr, "SHOW REPLICATION ROLE", "replication role").await, "replica");
    let (_, message) = failure(&gr, "SET REPLICATION ROLE TO REPLICA WITH PORT 10000").await;
    assert_eq!(message, "Couldn't set role to replica!");

    gm.run(query("REGISTER REPLICA read_0 SYNC TO \"replica-0\"")).await.unwrap();
    let mut rows = gm.execute(query("SHOW REPLICAS")).await.unwrap();
    let row = rows.next().await.unwrap().unwrap();
    assert_eq!(row.get::<String>("name").unwrap(), "read_0");
    assert_eq!(row.get::<String>("socket_address").unwrap(), "replica-0:10000");
    assert_eq!(row.get::<String>("sync_mode").unwrap(), "sync");
    assert!(matches!(row.get::<BoltType>("system_info").unwrap(), BoltType::Null(_)));
    let BoltType::Map(info) = row.get::<BoltType>("data_info").unwrap() else { panic!("data_info is not a map") };
    let BoltType::Map(mg) = info.value.get("memgraph").expect("memgraph entry").clone() else {
        panic!("memgraph entry is not a map")
    };
    assert!(matches!(mg.value.get("status"), Some(BoltType::String(s)) if s.value == "ready"));
    assert!(matches!(mg.value.get("behind"), Some(BoltType::Integer(i)) if i.value == 0));

    // Parameters reach replicated writes.
    gm.run(query("CREATE (:V {v: $v})").param("v", 42)).await.unwrap();
    let mut rows = gr.execute(query("MATCH (n:V) RETURN n.v AS v")).await.unwrap();
    assert_eq!(rows.next().await.unwrap().unwrap().get::<i64>("v").unwrap(), 42);

    let (code, message) = failure(&gr, "CREATE (:Nope)").await;
    assert_eq!(code, "Memgraph.ClientError.MemgraphError.MemgraphError");
    assert!(message.starts_with("Write queries are forbidden on the replica instance."));

    let (_, message) = failure(&gm, "REGISTER REPLICA read-0 SYNC TO \"replica-0\"").await;
    assert_eq!(
        message,
        "Error on line 1 position 22. The underlying parsing error is mismatched input '-' expecting {ASYNC, STRICT_SYNC, SYNC}"
    );
    let (_, message) = failure(&gm, "REGISTER REPLICA read_0 ASYNC TO \"other\"").await;
    assert_eq!(message, "Couldn't register replica read_0. Error: 1");

    gm.run(query("DROP REPLICA read_0")).await.unwrap();
    let (_, message) = failure(&gm, "DROP REPLICA read_0").await;
    assert_eq!(message, "Failed to unregister the replica read_0.");
    let mut rows = gm.execute(query("SHOW REPLICAS")).await.unwrap();
    assert!(rows.next().await.unwrap().is_none());

    gr.run(query("SET REPLICATION ROLE TO MAIN")).await.unwrap();
    let (_, message) = failure(&gr, "SET REPLICATION ROLE TO MAIN").await;
    assert_eq!(message, "Couldn't set replication role to main!");

    let mut rows = gm.execute(query("CREATE SNAPSHOT")).await.unwrap();
    let path = rows.next().await.unwrap().unwrap().get::<String>("path").unwrap();
    assert!(path.starts_with("/var/lib/memgraph/snapshots/"), "{path}");
    let mut rows = gm.execute(query("SHOW SNAPSHOTS")).await.unwrap();
    let row = rows.next().await.unwrap().unwrap();
    assert_eq!(row.get::<String>("path").unwrap(), path);

    // Sanity of the helper used elsewhere.
    let r = main.ok("SHOW REPLICAS").await;
    assert_eq!(status_of(&r, "read_0"), None);
}

#[tokio::test]
async fn authentication_is_checked_only_when_a_user_exists() {
    let net = TokioNet::ephemeral();
    let open = Instance::start(&net, "open", &[], 5).await;
    let g = graph(open.handle.bolt_port(), "anyone", "anything");
    assert_eq!(single_string(&g, "SHOW REPLICATION ROLE", "replication role").await, "main");

    let locked = Instance::start(&net, "locked", &["--fake-user=admin", "--fake-password=s3cret"], 6).await;
    let bad = graph(locked.handle.bolt_port(), "admin", "wrong");
    match bad.run(query("RETURN 1")).await {
        Err(e) => assert!(e.to_string().contains("Authentication failure"), "{e}"),
        Ok(_) => panic!("a bad password was accepted"),
    }
    let good = graph(locked.handle.bolt_port(), "admin", "s3cret");
    assert_eq!(single_string(&good, "SHOW REPLICATION ROLE", "replication role").await, "main");
}
