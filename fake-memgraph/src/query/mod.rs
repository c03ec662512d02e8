//! Query results and errors as Memgraph reports them, and the Cypher executor.

pub mod exec;
pub mod messages;

use std::collections::BTreeMap;

use crate::value::Value;

/// The three Bolt error classes Memgraph uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// `Memgraph.ClientError.MemgraphError.MemgraphError` (query errors).
    Client,
    /// `Memgraph.TransientError.MemgraphError.MemgraphError` (engine errors; drivers retry these).
    Transient,
    /// `Memgraph.DatabaseError.MemgraphError.MemgraphError` (unexpected failures).
    Database,
    /// `Memgraph.ClientError.Security.Unauthenticated`.
    Unauthenticated,
}

/// A query failure, sent to the client as FAILURE `{code, message}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// Error class (selects the code).
    pub class: ErrorClass,
    /// Message text.
    pub message: String,
}

impl QueryError {
    /// A ClientError.
    pub fn client(message: impl Into<String>) -> Self {
        QueryError { class: ErrorClass::Client, message: message.into() }
    }

    /// A TransientError.
    pub fn transient(message: impl Into<String>) -> Self {
        QueryError { class: ErrorClass::Transient, message: message.into() }
    }

    /// A DatabaseError with Memgraph's generic text (details go to the log).
    pub fn unknown(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error while executing a query");
        QueryError { class: ErrorClass::Database, message: messages::UNKNOWN.into() }
    }

    /// The Bolt error code.
    pub fn code(&self) -> &'static str {
        match self.class {
            ErrorClass::Client => "Memgraph.ClientError.MemgraphError.MemgraphError",
            ErrorClass::Transient => "Memgraph.TransientError.MemgraphError.MemgraphError",
            ErrorClass::Database => "Memgraph.DatabaseError.MemgraphError.MemgraphError",
            ErrorClass::Unauthenticated => "Memgraph.ClientError.Security.Unauthenticated",
        }
    }
}

/// A notification in the PULL summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// `INFO` or `WARNING`.
    pub severity: &'static str,
    /// e.g. `SetReplica`, `RegisterReplica`, `DropReplica`, `ReplicaPortWarning`.
    pub code: &'static str,
    /// Title text.
    pub title: String,
}

impl Notification {
    /// An INFO notification.
    pub fn info(code: &'static str, title: impl Into<String>) -> Self {
        Notification { severity: "INFO", code, title: title.into() }
    }

    /// The Bolt map form `{severity, code, title, description}`.
    pub fn to_value(&self) -> Value {
        Value::Map(BTreeMap::from([
            ("severity".to_string(), Value::from(self.severity)),
            ("code".to_string(), Value::from(self.code)),
            ("title".to_string(), Value::from(self.title.as_str())),
            ("description".to_string(), Value::from("")),
        ]))
    }
}

/// What an executed query produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryOutput {
    /// Result rows.
    pub rows: Vec<Vec<Value>>,
    /// Notifications for the summary.
    pub notifications: Vec<Notification>,
    /// Statistics (`nodes-created`, `nodes-deleted`).
    pub stats: BTreeMap<String, i64>,
}
