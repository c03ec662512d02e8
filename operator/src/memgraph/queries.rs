//! Typed replication and snapshot calls, each one auto-commit query.

use std::collections::BTreeMap;

use super::{Bolt, BoltError, BoltValue, ReplicaRow, parse_show_replicas};
use crate::api::ReplicationMode;

/// An instance's replication role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Accepts writes and replicates them.
    Main,
    /// Follows a MAIN.
    Replica,
}

/// Quote a replica name as a Cypher symbolic name. Plain identifiers stay as they are; anything
/// else (including names someone registered by hand) is back-tick escaped.
pub fn quote_name(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain { name.to_owned() } else { format!("`{}`", name.replace('`', "``")) }
}

fn quote_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

async fn run(bolt: &dyn Bolt, address: &str, query: &str) -> Result<super::QueryResult, BoltError> {
    bolt.run(address, query, BTreeMap::new()).await
}

async fn probe(bolt: &dyn Bolt, address: &str, query: &str) -> Result<super::QueryResult, BoltError> {
    let timeout = bolt.timeouts().probe;
    bolt.run_within(address, query, BTreeMap::new(), timeout).await
}

fn protocol(address: &str, message: impl Into<String>) -> BoltError {
    BoltError::Protocol { address: address.to_owned(), message: message.into() }
}

/// `SHOW REPLICATION ROLE`.
pub async fn replication_role(bolt: &dyn Bolt, address: &str) -> Result<Role, BoltError> {
    replication_role_within(bolt, address, bolt.timeouts().probe).await
}

/// `SHOW REPLICATION ROLE`, waiting at most `timeout`.
pub async fn replication_role_within(
    bolt: &dyn Bolt,
    address: &str,
    timeout: std::time::Duration,
) -> Result<Role, BoltError> {
    let result = bolt.run_within(address, "SHOW REPLICATION ROLE", BTreeMap::new(), timeout).await?;
    let role = result.get(0, "replication role").and_then(BoltValue::as_str).map(str::to_ascii_lowercase);
    match role.as_deref() {
        Some("main") => Ok(Role::Main),
        Some("replica") => Ok(Role::Replica),
        other => Err(protocol(address, format!("SHOW REPLICATION ROLE returned {other:?}"))),
    }
}

/// `SET REPLICATION ROLE TO REPLICA WITH PORT <port>`.
pub async fn set_replica_role(bolt: &dyn Bolt, address: &str, port: i32) -> Result<(), BoltError> {
    run(bolt, address, &format!("SET REPLICATION ROLE TO REPLICA WITH PORT {port}")).await.map(drop)
}

/// `SET REPLICATION ROLE TO MAIN`: promotes a REPLICA (a new epoch and main UUID in Memgraph;
/// it takes writes at once, with no replicas until they are registered on it).
pub async fn set_main_role(bolt: &dyn Bolt, address: &str) -> Result<(), BoltError> {
    run(bolt, address, "SET REPLICATION ROLE TO MAIN").await.map(drop)
}

/// `REGISTER REPLICA <name> <mode> TO "<replica_address>"`, run on the MAIN.
pub async fn register_replica(
    bolt: &dyn Bolt,
    main: &str,
    name: &str,
    mode: ReplicationMode,
    replica_address: &str,
) -> Result<(), BoltError> {
    let query =
        format!("REGISTER REPLICA {} {} TO {}", quote_name(name), mode.as_cypher(), quote_string(replica_address));
    run(bolt, main, &query).await.map(drop)
}

/// `DROP REPLICA <name>`, run on the MAIN.
pub async fn drop_replica(bolt: &dyn Bolt, main: &str, name: &str) -> Result<(), BoltError> {
    run(bolt, main, &format!("DROP REPLICA {}", quote_name(name))).await.map(drop)
}

/// `SHOW REPLICAS`, run on the MAIN.
pub async fn show_replicas(bolt: &dyn Bolt, main: &str) -> Result<Vec<ReplicaRow>, BoltError> {
    show_replicas_within(bolt, main, bolt.timeouts().probe).await
}

/// How long `SHOW REPLICAS` may take: on 2.21–3.0 it waits on a live heartbeat per replica,
/// which 3.0 gives up after 10 s, so the probe waits a little longer there.
pub fn show_replicas_timeout(bolt: &dyn Bolt, version: Option<crate::version::MemgraphVersion>) -> std::time::Duration {
    let probe = bolt.timeouts().probe;
    if version.is_some_and(crate::version::MemgraphVersion::live_show_replicas) {
        probe.max(LIVE_SHOW_REPLICAS)
    } else {
        probe
    }
}

/// 3.0's heartbeat RPC timeout plus a margin.
const LIVE_SHOW_REPLICAS: std::time::Duration = std::time::Duration::from_secs(12);

/// `SHOW REPLICAS` within `timeout`.
pub async fn show_replicas_within(
    bolt: &dyn Bolt,
    main: &str,
    timeout: std::time::Duration,
) -> Result<Vec<ReplicaRow>, BoltError> {
    let result = bolt.run_within(main, "SHOW REPLICAS", BTreeMap::new(), timeout).await?;
    parse_show_replicas(&result).map_err(|e| protocol(main, e))
}

/// What `CREATE SNAPSHOT` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// A snapshot was written; its path where the version reports it (3.5+).
    Created(Option<String>),
    /// Memgraph 3.3–3.4 wrote none because nothing changed since the last one, which therefore
    /// still holds every write.
    Unchanged,
}

/// Memgraph 3.3–3.4's answer to a manual snapshot when nothing is new.
const NOTHING_NEW: &str = "Nothing has been written since the last snapshot";

/// `CREATE SNAPSHOT`, within [`Timeouts::snapshot`](super::Timeouts::snapshot).
pub async fn create_snapshot(bolt: &dyn Bolt, address: &str) -> Result<SnapshotOutcome, BoltError> {
    let timeout = bolt.timeouts().snapshot;
    match bolt.run_within(address, "CREATE SNAPSHOT", BTreeMap::new(), timeout).await {
        Ok(result) => {
            Ok(SnapshotOutcome::Created(result.get(0, "path").and_then(BoltValue::as_str).map(str::to_owned)))
        }
        Err(BoltError::Query { message, .. }) if message.contains(NOTHING_NEW) => Ok(SnapshotOutcome::Unchanged),
        Err(e) => Err(e),
    }
}

/// The label of the operator's replication test nodes.
pub const TEST_LABEL: &str = "_OperatorTest";

/// The node count query: user nodes only, since a replica may briefly hold a test node the
/// MAIN has deleted already, which must not look like data the MAIN lacks.
pub const NODE_COUNT_QUERY: &str = "MATCH (n) WHERE NOT n:_OperatorTest RETURN count(n) AS nodes";

/// The connectivity check.
pub const PING_QUERY: &str = "RETURN 1 AS ping";
/// The replication test's write, run on the MAIN only.
pub const TEST_WRITE_QUERY: &str = "CREATE (n:_OperatorTest {id: $id, ts: timestamp()})";
/// The replication test's read, run on each replica.
pub const TEST_READ_QUERY: &str = "MATCH (n:_OperatorTest {id: $id}) RETURN n.id AS id";
/// Removes every test node (this test's and any a crash left behind), on the MAIN only.
pub const TEST_CLEANUP_QUERY: &str = "MATCH (n:_OperatorTest) DELETE n";

/// `RETURN 1` within the probe timeout.
pub async fn ping(bolt: &dyn Bolt, address: &str) -> Result<(), BoltError> {
    probe(bolt, address, PING_QUERY).await.map(drop)
}

/// Write the test node `id` on the MAIN.
pub async fn write_test_node(bolt: &dyn Bolt, main: &str, id: &str) -> Result<(), BoltError> {
    let params = BTreeMap::from([("id".to_owned(), BoltValue::from(id))]);
    bolt.run_within(main, TEST_WRITE_QUERY, params, bolt.timeouts().probe).await.map(drop)
}

/// Whether the instance at `address` holds the test node `id`.
pub async fn has_test_node(bolt: &dyn Bolt, address: &str, id: &str) -> Result<bool, BoltError> {
    let params = BTreeMap::from([("id".to_owned(), BoltValue::from(id))]);
    let result = bolt.run_within(address, TEST_READ_QUERY, params, bolt.timeouts().probe).await?;
    Ok(!result.rows.is_empty())
}

/// Delete every test node on the MAIN.
pub async fn remove_test_nodes(bolt: &dyn Bolt, main: &str) -> Result<(), BoltError> {
    probe(bolt, main, TEST_CLEANUP_QUERY).await.map(drop)
}

/// Number of user nodes: tells an empty instance from one that holds data.
pub async fn node_count(bolt: &dyn Bolt, address: &str) -> Result<i64, BoltError> {
    let result = probe(bolt, address, NODE_COUNT_QUERY).await?;
    result.get(0, "nodes").and_then(BoltValue::as_int).ok_or_else(|| protocol(address, "count(n) returned no integer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memgraph::QueryResult;
    use async_trait::async_trait;
    use std::sync::Mutex;

    /// Records queries and answers from a script.
    struct Scripted {
        answers: Mutex<Vec<Result<QueryResult, BoltError>>>,
        seen: Mutex<Vec<(String, String)>>,
    }

    #[async_trait]
    impl Bolt for Scripted {
        async fn run_within(
            &self,
            address: &str,
            query: &str,
            _: BTreeMap<String, BoltValue>,
            _: std::time::Duration,
        ) -> Result<QueryResult, BoltError> {
            self.seen.lock().expect("lock").push((address.to_owned(), query.to_owned()));
            self.answers.lock().expect("lock").remove(0)
        }
    }

    fn scripted(answers: Vec<Result<QueryResult, BoltError>>) -> Scripted {
        Scripted { answers: Mutex::new(answers), seen: Mutex::new(Vec::new()) }
    }

    fn one(column: &str, value: BoltValue) -> QueryResult {
        QueryResult { columns: vec![column.to_owned()], rows: vec![vec![value]] }
    }

    #[test]
    fn names_are_quoted_only_when_needed() {
        for (name, quoted) in [
            ("read_0", "read_0"),
            ("write", "write"),
            ("_x", "_x"),
            ("read-0", "`read-0`"),
            ("0read", "`0read`"),
            ("we`ird", "`we``ird`"),
            ("", "``"),
        ] {
            assert_eq!(quote_name(name), quoted);
        }
    }

    #[tokio::test]
    async fn queries_have_memgraphs_grammar() {
        let bolt = scripted(vec![Ok(QueryResult::default()); 4]);
        register_replica(
            &bolt,
            "m:7687",
            "read_2",
            ReplicationMode::StrictSync,
            "c-read-2-0.c-read-2.ns.svc.cluster.local:10000",
        )
        .await
        .expect("register");
        register_replica(&bolt, "m:7687", "read_0", ReplicationMode::Async, "h:10000").await.expect("register");
        drop_replica(&bolt, "m:7687", "read-9").await.expect("drop");
        set_replica_role(&bolt, "r:7687", 10000).await.expect("role");
        let seen = bolt.seen.lock().expect("lock").clone();
        assert_eq!(
            seen,
            [
                ("m:7687", "REGISTER REPLICA read_2 STRICT_SYNC TO \"c-read-2-0.c-read-2.ns.svc.cluster.local:10000\""),
                ("m:7687", "REGISTER REPLICA read_0 ASYNC TO \"h:10000\""),
                ("m:7687", "DROP REPLICA `read-9`"),
                ("r:7687", "SET REPLICATION ROLE TO REPLICA WITH PORT 10000"),
            ]
            .map(|(a, q)| (a.to_owned(), q.to_owned()))
        );
    }

    #[tokio::test]
    async fn role_and_counts_are_read_from_their_columns() {
        let bolt = scripted(vec![
            Ok(one("replication role", "main".into())),
            Ok(one("replication role", "replica".into())),
            Ok(one("replication role", "coordinator".into())),
            Ok(one("nodes", BoltValue::Int(42))),
            Ok(one("path", "/var/lib/memgraph/snapshots/x".into())),
            Ok(QueryResult::default()),
            Err(BoltError::Query {
                address: "a".into(),
                code: "Memgraph.TransientError.MemgraphError.MemgraphError".into(),
                message: "Nothing has been written since the last snapshot.".into(),
            }),
            Err(BoltError::Query {
                address: "a".into(),
                code: "Memgraph.TransientError.MemgraphError.MemgraphError".into(),
                message: "Another snapshot creation is already in progress".into(),
            }),
        ]);
        assert_eq!(replication_role(&bolt, "a").await, Ok(Role::Main));
        assert_eq!(replication_role(&bolt, "a").await, Ok(Role::Replica));
        assert!(matches!(replication_role(&bolt, "a").await, Err(BoltError::Protocol { .. })));
        assert_eq!(node_count(&bolt, "a").await, Ok(42));
        assert_eq!(
            create_snapshot(&bolt, "a").await,
            Ok(SnapshotOutcome::Created(Some("/var/lib/memgraph/snapshots/x".into())))
        );
        assert_eq!(
            create_snapshot(&bolt, "a").await,
            Ok(SnapshotOutcome::Created(None)),
            "versions before 3.5 return no columns"
        );
        assert_eq!(create_snapshot(&bolt, "a").await, Ok(SnapshotOutcome::Unchanged), "3.3-3.4 with nothing new");
        assert!(create_snapshot(&bolt, "a").await.is_err(), "other failures stay failures");
    }
}
