//! `Bolt` over turmoil's simulated TCP through fake-memgraph's client: the operator's queries in
//! the simulation cross the same partitions and latency as replication does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use fake_memgraph::{Client, ClientError, Value};
use memgraph_operator::memgraph::{Bolt, BoltError, BoltValue, QueryResult, Timeouts};

type Connection = Arc<tokio::sync::Mutex<Option<Client<turmoil::net::TcpStream>>>>;

/// One cached connection per instance, with the operator's timeouts.
#[derive(Clone)]
pub struct TurmoilBolt {
    connections: Arc<Mutex<BTreeMap<String, Connection>>>,
    timeouts: Timeouts,
}

impl TurmoilBolt {
    /// A driver with the given timeouts.
    pub fn new(timeouts: Timeouts) -> Self {
        Self { connections: Arc::default(), timeouts }
    }

    /// The connection of an address, on the snapshot lane or the other: as in the production
    /// driver, a long snapshot never holds up a probe.
    fn slot(&self, address: &str, query: &str) -> Connection {
        let lane =
            if query.trim_start().to_ascii_uppercase().starts_with("CREATE SNAPSHOT") { "#snapshot" } else { "" };
        let mut connections = self.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        connections.entry(format!("{address}{lane}")).or_default().clone()
    }
}

/// fake-memgraph value → operator value.
pub fn to_operator(value: &Value) -> BoltValue {
    match value {
        Value::Null => BoltValue::Null,
        Value::Bool(b) => BoltValue::Bool(*b),
        Value::Int(i) => BoltValue::Int(*i),
        Value::Float(f) => BoltValue::Float(*f),
        Value::String(s) => BoltValue::String(s.clone()),
        Value::List(items) => BoltValue::List(items.iter().map(to_operator).collect()),
        Value::Map(map) => BoltValue::Map(map.iter().map(|(k, v)| (k.clone(), to_operator(v))).collect()),
        Value::Node(node) => BoltValue::Node {
            labels: node.labels.clone(),
            properties: node.properties.iter().map(|(k, v)| (k.clone(), to_operator(v))).collect(),
        },
        other => BoltValue::Other(format!("{other:?}")),
    }
}

/// operator value → fake-memgraph value.
pub fn to_fake(value: &BoltValue) -> Value {
    match value {
        BoltValue::Null | BoltValue::Other(_) | BoltValue::Node { .. } => Value::Null,
        BoltValue::Bool(b) => Value::Bool(*b),
        BoltValue::Int(i) => Value::Int(*i),
        BoltValue::Float(f) => Value::Float(*f),
        BoltValue::String(s) => Value::String(s.clone()),
        BoltValue::List(items) => Value::List(items.iter().map(to_fake).collect()),
        BoltValue::Map(map) => Value::Map(map.iter().map(|(k, v)| (k.clone(), to_fake(v))).collect()),
    }
}

#[async_trait]
impl Bolt for TurmoilBolt {
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
        let slot = self.slot(address, query);
        // Waiting for the connection counts against the query's time, as a pool wait does.
        let started = tokio::time::Instant::now();
        let Ok(mut guard) = tokio::time::timeout(timeout, slot.lock()).await else {
            return Err(BoltError::Timeout { address: address.to_owned(), seconds: timeout.as_secs() });
        };
        let deadline = timeout;
        let timeout = deadline.saturating_sub(started.elapsed());
        if guard.is_none() {
            let connect = async {
                let stream = turmoil::net::TcpStream::connect(address.to_owned()).await.map_err(ClientError::from)?;
                Client::connect(stream, None).await
            };
            // Connecting counts against the query's time too, as in the production driver,
            // where the whole exchange runs under the query's deadline.
            let connect_within = self.timeouts.connect.min(timeout);
            match tokio::time::timeout(connect_within, connect).await {
                Ok(Ok(client)) => *guard = Some(client),
                Ok(Err(e)) => {
                    return Err(BoltError::Unreachable { address: address.to_owned(), message: e.to_string() });
                }
                Err(_) => {
                    return Err(BoltError::Unreachable {
                        address: address.to_owned(),
                        message: "connect timed out".to_owned(),
                    });
                }
            }
        }
        let timeout = deadline.saturating_sub(started.elapsed());
        let Some(client) = guard.as_mut() else {
            return Err(BoltError::Unreachable { address: address.to_owned(), message: "no connection".to_owned() });
        };
        let params = params.iter().map(|(k, v)| (k.clone(), to_fake(v))).collect();
        match tokio::time::timeout(timeout, client.run(query, params)).await {
            Ok(Ok(result)) => Ok(QueryResult {
                columns: result.fields.clone(),
                rows: result.rows.iter().map(|row| row.iter().map(to_operator).collect()).collect(),
            }),
            Ok(Err(ClientError::Server { code, message })) => {
                Err(BoltError::Query { address: address.to_owned(), code, message })
            }
            Ok(Err(e)) => {
                *guard = None;
                Err(BoltError::Unreachable { address: address.to_owned(), message: e.to_string() })
            }
            Err(_) => {
                // The exchange may be half done; never reuse the connection.
                *guard = None;
                Err(BoltError::Timeout { address: address.to_owned(), seconds: timeout.as_secs() })
            }
        }
    }
}
