//! [`Bolt`] on neo4rs: the production driver. One single-connection pool per instance, reused
//! across reconciles; every query is auto-commit (RUN + PULL, never BEGIN) and bounded by a
//! timeout, so an instance that hangs cannot stall the operator.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use neo4rs::{BoltList, BoltMap, BoltNull, BoltString, BoltType, ConfigBuilder, Graph};
use tracing::Instrument;

use super::{Bolt, BoltError, BoltValue, QueryResult, Timeouts};

/// Maps an instance address (`host:port`) to the address to dial; tests use it to reach
/// cluster DNS names on loopback.
pub type Resolver = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Credentials for instances that have users.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password (never logged).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

/// A connection pool per dialled address, login and lane (snapshots have their own connection,
/// so a snapshot that takes minutes never holds up a probe).
type PoolKey = (String, Option<(String, String)>, bool);

/// Whether a query goes on the snapshot lane.
pub(crate) fn snapshot_lane(query: &str) -> bool {
    query.trim_start().to_ascii_uppercase().starts_with("CREATE SNAPSHOT")
}

/// Production [`Bolt`].
#[derive(Clone)]
pub struct Neo4rsBolt {
    graphs: Arc<Mutex<BTreeMap<PoolKey, Graph>>>,
    credentials: Option<Credentials>,
    timeouts: Timeouts,
    resolver: Option<Resolver>,
}

impl Neo4rsBolt {
    /// A driver with the given timeouts and no credentials.
    pub fn new(timeouts: Timeouts) -> Self {
        Self { graphs: Arc::default(), credentials: None, timeouts, resolver: None }
    }

    /// Log in with these credentials.
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> Self {
        self.credentials = credentials;
        self
    }

    /// Dial resolved addresses instead of the ones given.
    pub fn with_resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = Some(resolver);
        self
    }

    fn graph(&self, address: &str, lane: bool) -> Result<Graph, BoltError> {
        let target = self.resolver.as_ref().map_or_else(|| address.to_owned(), |r| r(address));
        // Keyed by credentials too: a changed password must open a new connection.
        let key = (target.clone(), self.credentials.as_ref().map(|c| (c.user.clone(), c.password.clone())), lane);
        let mut graphs = self.graphs.lock().map_err(|_| unreachable_err(address, "driver cache poisoned"))?;
        if let Some(graph) = graphs.get(&key) {
            return Ok(graph.clone());
        }
        let (user, password) = match &self.credentials {
            Some(c) => (c.user.clone(), c.password.clone()),
            // Memgraph without users accepts any credentials.
            None => (String::new(), String::new()),
        };
        let config = ConfigBuilder::default()
            .uri(format!("bolt://{target}"))
            .user(user)
            .password(password)
            .max_connections(1)
            .fetch_size(1000)
            .connection_timeout(self.timeouts.connect)
            .build()
            .map_err(|e| unreachable_err(address, &e.to_string()))?;
        let graph = Graph::connect(config).map_err(|e| unreachable_err(address, &e.to_string()))?;
        graphs.insert(key, graph.clone());
        Ok(graph)
    }

    fn forget(&self, address: &str) {
        let target = self.resolver.as_ref().map_or_else(|| address.to_owned(), |r| r(address));
        if let Ok(mut graphs) = self.graphs.lock() {
            graphs.retain(|(t, _, _), _| *t != target);
        }
    }
}

fn unreachable_err(address: &str, message: &str) -> BoltError {
    BoltError::Unreachable { address: address.to_owned(), message: message.to_owned() }
}

fn to_bolt(value: &BoltValue) -> BoltType {
    match value {
        BoltValue::Null | BoltValue::Other(_) | BoltValue::Node { .. } => BoltType::Null(BoltNull),
        BoltValue::Bool(b) => BoltType::from(*b),
        BoltValue::Int(i) => BoltType::from(*i),
        BoltValue::Float(f) => BoltType::from(*f),
        BoltValue::String(s) => BoltType::from(s.as_str()),
        BoltValue::List(items) => BoltType::List(BoltList { value: items.iter().map(to_bolt).collect() }),
        BoltValue::Map(map) => {
            let mut out = BoltMap::new();
            for (k, v) in map {
                out.put(BoltString::from(k.as_str()), to_bolt(v));
            }
            BoltType::Map(out)
        }
    }
}

fn from_map(map: &BoltMap) -> BTreeMap<String, BoltValue> {
    map.value.iter().map(|(k, v)| (k.value.clone(), from_bolt(v))).collect()
}

fn from_bolt(value: &BoltType) -> BoltValue {
    match value {
        BoltType::Null(_) => BoltValue::Null,
        BoltType::Boolean(b) => BoltValue::Bool(b.value),
        BoltType::Integer(i) => BoltValue::Int(i.value),
        BoltType::Float(f) => BoltValue::Float(f.value),
        BoltType::String(s) => BoltValue::String(s.value.clone()),
        BoltType::List(l) => BoltValue::List(l.value.iter().map(from_bolt).collect()),
        BoltType::Map(m) => BoltValue::Map(from_map(m)),
        BoltType::Node(n) => BoltValue::Node {
            labels: n.labels.value.iter().filter_map(|l| from_bolt(l).as_str().map(str::to_owned)).collect(),
            properties: from_map(&n.properties),
        },
        other => BoltValue::Other(other.to_string()),
    }
}

fn classify(address: &str, error: neo4rs::Error) -> BoltError {
    match error {
        neo4rs::Error::Neo4j(e) => {
            BoltError::Query { address: address.to_owned(), code: e.code().to_owned(), message: e.message().to_owned() }
        }
        neo4rs::Error::AuthenticationError(m) => unreachable_err(address, &format!("authentication failed: {m}")),
        neo4rs::Error::IOError { detail } => unreachable_err(address, &detail.to_string()),
        neo4rs::Error::ConnectionError => unreachable_err(address, "connection error"),
        other => BoltError::Protocol { address: address.to_owned(), message: other.to_string() },
    }
}

#[async_trait]
impl Bolt for Neo4rsBolt {
    fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    async fn run_within(
        &self,
        address: &str,
        query: &str,
        params: BTreeMap<String, BoltValue>,
        timeout: Duration,
    ) -> Result<QueryResult, BoltError> {
        // The query text is recorded (the operator's queries hold no secrets: credentials go
        // in HELLO), its parameters are not.
        let span = tracing::info_span!(
            "memgraph.query",
            otel.kind = "client",
            db.system = "memgraph",
            server.address = %address,
            db.query.text = %query,
            error = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let result = self.run_untraced(address, query, params, timeout).instrument(span.clone()).await;
        if let Err(e) = &result {
            span.record("error", tracing::field::display(e));
            span.record("otel.status_code", "ERROR");
        }
        result
    }
}

impl Neo4rsBolt {
    async fn run_untraced(
        &self,
        address: &str,
        query: &str,
        params: BTreeMap<String, BoltValue>,
        timeout: Duration,
    ) -> Result<QueryResult, BoltError> {
        let graph = self.graph(address, snapshot_lane(query))?;
        let mut q = neo4rs::query(query);
        for (k, v) in &params {
            q = q.param(k, to_bolt(v));
        }
        let work = async {
            let mut stream = graph.execute(q).await.map_err(|e| classify(address, e))?;
            let mut result = QueryResult::default();
            while let Some(row) = stream.next().await.map_err(|e| classify(address, e))? {
                let mut keys: Vec<String> = row.keys().into_iter().map(|k| k.value.clone()).collect();
                // neo4rs keeps a row as a hash map; sort so results do not depend on hashing.
                keys.sort();
                if result.columns.is_empty() {
                    result.columns = keys.clone();
                }
                let values = result
                    .columns
                    .iter()
                    .map(|k| row.get::<BoltType>(k).map(|v| from_bolt(&v)).unwrap_or(BoltValue::Null))
                    .collect();
                result.rows.push(values);
            }
            Ok::<_, BoltError>(result)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => {
                if !e.is_query_error() {
                    self.forget(address);
                }
                Err(e)
            }
            Err(_) => {
                // The connection may be stuck mid-exchange; start afresh next time.
                self.forget(address);
                Err(BoltError::Timeout { address: address.to_owned(), seconds: timeout.as_secs() })
            }
        }
    }
}
