//! Replication: roles, the MAIN's replica clients and their state machine, the replica's RPC server,
//! and the persisted replication state.

pub mod main_side;
pub mod replica_side;
pub mod rpc;

use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::task::AbortHandle;

use crate::cypher::SyncMode;
use crate::datadir::DataDir;
use crate::net::BoxStream;

/// File holding the persisted replication state.
pub const STATE_FILE: &str = "replication/state.json";
/// Default replication port when an address has none.
pub const DEFAULT_REPLICATION_PORT: u16 = 10000;

/// An instance's replication role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts writes, ships them to replicas.
    Main,
    /// Read-only, follows one MAIN.
    Replica,
}

impl Role {
    /// `"main"` / `"replica"` as `SHOW REPLICATION ROLE` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Main => "main",
            Role::Replica => "replica",
        }
    }
}

/// A replica's state as its MAIN sees it (`data_info.memgraph.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// In sync.
    Ready,
    /// A transaction is in flight.
    Replicating,
    /// Catching up.
    Recovery,
    /// Maybe behind / unreachable (Memgraph's MAYBE_BEHIND).
    Invalid,
    /// Incompatible history; terminal until an operator intervenes.
    Diverged,
}

impl ReplicaState {
    /// The status string.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Ready => "ready",
            ReplicaState::Replicating => "replicating",
            ReplicaState::Recovery => "recovery",
            ReplicaState::Invalid => "invalid",
            ReplicaState::Diverged => "diverged",
        }
    }
}

/// A registered replica as reported by [`crate::server::ServerHandle::replicas`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Name.
    pub name: String,
    /// `host:port` as registered.
    pub socket_address: String,
    /// Mode.
    pub mode: SyncMode,
    /// `None` for a half-failed registration (`data_info` = `{}`).
    pub state: Option<ReplicaState>,
    /// Replica's last known durable timestamp.
    pub ts: i64,
}

/// Mutable per-replica state on the MAIN.
#[derive(Debug, Clone)]
pub(crate) struct ClientStatus {
    pub state: ReplicaState,
    pub ts: i64,
    pub failures: u32,
    pub force_full: bool,
    /// False for a stale row left by a failed registration: no checks, `data_info` `{}`.
    pub active: bool,
}

/// The MAIN's handle on one registered replica.
pub(crate) struct ReplicaClient {
    pub name: String,
    pub mode: SyncMode,
    pub endpoint: String,
    status: Mutex<ClientStatus>,
    /// The connection; holding this lock is Memgraph's per-replica "RPC lock".
    pub conn: tokio::sync::Mutex<Option<BoxStream>>,
    pub task: Mutex<Option<AbortHandle>>,
}

impl ReplicaClient {
    pub fn new(name: String, mode: SyncMode, endpoint: String, active: bool) -> Arc<Self> {
        Arc::new(ReplicaClient {
            name,
            mode,
            endpoint,
            status: Mutex::new(ClientStatus {
                state: ReplicaState::Invalid,
                ts: 0,
                failures: 0,
                force_full: false,
                active,
            }),
            conn: tokio::sync::Mutex::new(None),
            task: Mutex::new(None),
        })
    }

    pub fn status(&self) -> MutexGuard<'_, ClientStatus> {
        self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops the frequent check.
    pub fn stop_checks(&self) {
        let task = self.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(t) = task {
            t.abort();
        }
    }

    /// Stops the frequent check and, when no RPC holds it, closes the connection.
    pub fn stop(&self) {
        self.stop_checks();
        if let Ok(mut conn) = self.conn.try_lock() {
            *conn = None;
        }
    }

    pub fn persisted(&self) -> PersistedReplica {
        PersistedReplica { name: self.name.clone(), mode: self.mode, endpoint: self.endpoint.clone() }
    }
}

/// A replica entry in the persisted state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PersistedReplica {
    pub name: String,
    pub mode: SyncMode,
    pub endpoint: String,
}

/// Persisted replication state (`replication/state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum PersistedRole {
    Main { main_uuid: String, replicas: Vec<PersistedReplica> },
    Replica { port: u16, main_uuid: String },
}

/// Loads the persisted state; `None` if absent or unreadable (then the instance starts as a fresh MAIN).
pub(crate) fn load_state(dir: &dyn DataDir) -> Option<PersistedRole> {
    let data = dir.read(STATE_FILE).ok()??;
    match serde_json::from_slice(&data) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring unreadable replication state");
            None
        }
    }
}

/// Writes the persisted state.
pub(crate) fn store_state(dir: &dyn DataDir, s: &PersistedRole) -> std::io::Result<()> {
    let data = serde_json::to_vec(s).map_err(std::io::Error::other)?;
    dir.write(STATE_FILE, &data)
}

/// Parses a `REGISTER REPLICA` socket address: `"host"` or `"host:port"`, port defaulting to 10000.
pub fn parse_socket_address(s: &str) -> Option<String> {
    let (host, port) = match s.split_once(':') {
        None => (s, DEFAULT_REPLICATION_PORT),
        Some((h, p)) => {
            if p.contains(':') {
                return None;
            }
            (h, p.parse::<u16>().ok()?)
        }
    };
    let valid_host =
        !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
    valid_host.then(|| format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses() {
        assert_eq!(parse_socket_address("127.0.0.1"), Some("127.0.0.1:10000".into()));
        assert_eq!(
            parse_socket_address("c-read-0-0.c-read-0.ns.svc.cluster.local:10001"),
            Some("c-read-0-0.c-read-0.ns.svc.cluster.local:10001".into())
        );
        assert_eq!(parse_socket_address("a:b:c"), None);
        assert_eq!(parse_socket_address("host:port"), None);
        assert_eq!(parse_socket_address("host:70000"), None);
        assert_eq!(parse_socket_address(":10000"), None);
        assert_eq!(parse_socket_address("bad host:1"), None);
    }
}
