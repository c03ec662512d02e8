//! Talking to Memgraph: the `Bolt` trait (one auto-commit query against one instance) and typed
//! calls on top of it (DESIGN §3). Replication and snapshot queries fail inside explicit
//! transactions, so nothing here ever opens one.

mod neo4rs_bolt;
mod queries;
mod replicas;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

pub use neo4rs_bolt::{Credentials, Neo4rsBolt, Resolver};
pub use queries::*;
pub use replicas::{ReplicaData, ReplicaRow, ReplicaStatus, parse_show_replicas};

/// A value in a query result or parameter (the PackStream types the operator uses).
#[derive(Debug, Clone, PartialEq)]
pub enum BoltValue {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    String(String),
    /// A list.
    List(Vec<BoltValue>),
    /// A map.
    Map(BTreeMap<String, BoltValue>),
    /// A node: labels and properties.
    Node {
        /// Node labels.
        labels: Vec<String>,
        /// Node properties.
        properties: BTreeMap<String, BoltValue>,
    },
    /// Any other structure (relationship, path, temporal); the operator never needs its contents.
    Other(String),
}

impl BoltValue {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            BoltValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            BoltValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The map, if this is one.
    pub fn as_map(&self) -> Option<&BTreeMap<String, BoltValue>> {
        match self {
            BoltValue::Map(m) => Some(m),
            _ => None,
        }
    }
}

impl From<&str> for BoltValue {
    fn from(s: &str) -> Self {
        BoltValue::String(s.to_owned())
    }
}

impl From<String> for BoltValue {
    fn from(s: String) -> Self {
        BoltValue::String(s)
    }
}

impl From<i64> for BoltValue {
    fn from(i: i64) -> Self {
        BoltValue::Int(i)
    }
}

/// Rows of a query result, with their column names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows; each has one value per column.
    pub rows: Vec<Vec<BoltValue>>,
}

impl QueryResult {
    /// The value of `column` in row `row`.
    pub fn get(&self, row: usize, column: &str) -> Option<&BoltValue> {
        let index = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row)?.get(index)
    }
}

/// Why a query did not produce rows.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BoltError {
    /// No connection could be made (refused, DNS, timeout, authentication).
    #[error("cannot connect to {address}: {message}")]
    Unreachable {
        /// The instance.
        address: String,
        /// Why.
        message: String,
    },
    /// The query did not finish in time.
    #[error("query on {address} timed out after {seconds} s")]
    Timeout {
        /// The instance.
        address: String,
        /// The timeout.
        seconds: u64,
    },
    /// Memgraph answered with a failure.
    #[error("{address} refused the query: {code}: {message}")]
    Query {
        /// The instance.
        address: String,
        /// Memgraph's error code, such as `Memgraph.ClientError.MemgraphError.MemgraphError`.
        code: String,
        /// Memgraph's message.
        message: String,
    },
    /// The answer did not have the expected shape.
    #[error("unexpected answer from {address}: {message}")]
    Protocol {
        /// The instance.
        address: String,
        /// What was wrong.
        message: String,
    },
}

impl BoltError {
    /// Whether Memgraph itself refused the query (as opposed to not being reached).
    pub fn is_query_error(&self) -> bool {
        matches!(self, BoltError::Query { .. })
    }
}

/// How long the operator waits on Memgraph. Probes (role, `SHOW REPLICAS`, counts) answer at
/// once on a healthy instance, so they give up early and a frozen instance costs a reconcile only
/// that long; commands may wait on Memgraph's own RPCs (`REGISTER REPLICA` waits up to 10 s for
/// the replica); a snapshot of a large graph takes longer still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a connection.
    pub connect: Duration,
    /// `SHOW REPLICATION ROLE`, `SHOW REPLICAS`, node counts.
    pub probe: Duration,
    /// Replication commands.
    pub command: Duration,
    /// `CREATE SNAPSHOT`.
    pub snapshot: Duration,
}

impl Default for Timeouts {
    /// The production defaults: 5 s to connect, 5 s per probe, 15 s per command, 60 s per
    /// snapshot. The simulation uses these same values.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            probe: Duration::from_secs(5),
            command: Duration::from_secs(15),
            snapshot: Duration::from_secs(60),
        }
    }
}

/// Runs one auto-commit query against one Memgraph instance.
#[async_trait]
pub trait Bolt: Send + Sync {
    /// Run `query` with `params` on the instance at `address` (`host:port`) and return all rows,
    /// giving up after `timeout`.
    async fn run_within(
        &self,
        address: &str,
        query: &str,
        params: BTreeMap<String, BoltValue>,
        timeout: Duration,
    ) -> Result<QueryResult, BoltError>;

    /// The timeouts the typed calls use.
    fn timeouts(&self) -> Timeouts {
        Timeouts::default()
    }

    /// Run a command within [`Timeouts::command`].
    async fn run(
        &self,
        address: &str,
        query: &str,
        params: BTreeMap<String, BoltValue>,
    ) -> Result<QueryResult, BoltError> {
        let timeout = self.timeouts().command;
        self.run_within(address, query, params, timeout).await
    }
}
