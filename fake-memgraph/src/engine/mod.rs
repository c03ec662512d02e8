//! The instance: shared state, query preparation (RUN) and execution (PULL).

mod commit;

pub(crate) use commit::failure_reason;
mod repl_queries;
mod snapshot_queries;
mod snapshot_writer;

pub(crate) use snapshot_writer::{SnapshotFailure, Trigger};

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::{AbortHandle, JoinSet};

use crate::clock::{Clock, IdSource};
use crate::config::Config;
use crate::cypher::ast::{Expr, ReplicationQuery, SnapshotQuery, Statement};
use crate::cypher::{self, check_semantics, params_used};
use crate::net::DynNetwork;
use crate::query::exec::{self, ExecEnv, FUNCTIONS, TxState};
use crate::query::messages::{self, SnapshotKind};
use crate::query::{QueryError, QueryOutput};
use crate::replication::{PersistedRole, ReplicaClient, Role, store_state};
use crate::storage::durability::Durability;
use crate::storage::{Commit, Storage};
use crate::value::Value;
use crate::version::{MgVersion, RpcTimeouts};

/// Most commits kept in memory for delta catch-up (older gaps need a snapshot transfer).
pub(crate) const LOG_CAPACITY: usize = 10_000;

/// The replica-role specific state.
pub(crate) struct ReplicaRole {
    /// Port given in `SET REPLICATION ROLE TO REPLICA WITH PORT`.
    pub port: u16,
    /// Port actually bound (differs under port mapping).
    pub bound_port: u16,
    /// The MAIN this replica follows.
    pub main_uuid: String,
    /// The replication server task.
    pub server: AbortHandle,
    /// A STRICT_SYNC transaction staged by phase 1.
    pub staged: Option<Commit>,
}

/// Role plus role-specific state.
pub(crate) enum RoleState {
    Main { main_uuid: String, replicas: Vec<Arc<ReplicaClient>> },
    Replica(ReplicaRole),
}

/// Everything behind the instance lock (never held across an await).
pub(crate) struct Core {
    pub storage: Storage,
    pub durability: Durability,
    pub role: RoleState,
    /// Recent commits, oldest first, for delta catch-up of replicas.
    pub log: VecDeque<Commit>,
    /// Set by kill/shutdown: nothing may change any more.
    pub dead: bool,
    /// When the next periodic snapshot is due (Unix µs).
    pub next_snapshot_micros: Option<i64>,
}

impl Core {
    pub fn role(&self) -> Role {
        match self.role {
            RoleState::Main { .. } => Role::Main,
            RoleState::Replica(_) => Role::Replica,
        }
    }

    pub fn push_log(&mut self, c: Commit) {
        self.log.push_back(c);
        while self.log.len() > LOG_CAPACITY {
            self.log.pop_front();
        }
    }

    pub fn persisted_role(&self) -> PersistedRole {
        match &self.role {
            RoleState::Main { main_uuid, replicas } => PersistedRole::Main {
                main_uuid: main_uuid.clone(),
                replicas: replicas.iter().map(|r| r.persisted()).collect(),
            },
            RoleState::Replica(r) => PersistedRole::Replica { port: r.port, main_uuid: r.main_uuid.clone() },
        }
    }
}

/// One running instance.
pub(crate) struct Instance {
    pub cfg: Config,
    pub version: MgVersion,
    pub clock: Arc<dyn Clock>,
    pub ids: IdSource,
    pub net: Arc<dyn DynNetwork>,
    pub core: Mutex<Core>,
    /// Serialises write commits (including their SYNC replication), like Memgraph's commit lock.
    pub commit_lock: tokio::sync::Mutex<()>,
    /// Memgraph's `snapshot_lock_`: held while a snapshot is written; SHOW SNAPSHOTS, SHOW NEXT
    /// SNAPSHOT and RECOVER SNAPSHOT wait for it.
    pub snapshot_lock: Arc<tokio::sync::Mutex<()>>,
    /// Memgraph's `snapshot_running_` (3.3+): set before the lock is taken, so a second request
    /// fails at once instead of queueing behind the first.
    pub snapshot_running: Arc<std::sync::atomic::AtomicBool>,
    /// The process is frozen (SIGSTOP, a stalled disk): every session, replication handler and
    /// background loop waits in [`Instance::thawed`] before its next step.
    hung: tokio::sync::watch::Sender<bool>,
    /// A network policy drops traffic to the replication port: its connections are closed.
    repl_blocked: tokio::sync::watch::Sender<bool>,
    tasks: Mutex<JoinSet<()>>,
}

/// A query after RUN: parsed, checked, with its columns.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub stmt: Statement,
    pub fields: Vec<String>,
    /// `type` in the summary: `r`, `w`, `rw` or `s`.
    pub kind: &'static str,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Instance {
    pub fn new(cfg: Config, clock: Arc<dyn Clock>, ids: IdSource, net: Arc<dyn DynNetwork>, core: Core) -> Arc<Self> {
        Arc::new(Instance {
            version: cfg.memgraph_version,
            cfg,
            clock,
            ids,
            net,
            core: Mutex::new(core),
            commit_lock: tokio::sync::Mutex::new(()),
            snapshot_lock: Arc::new(tokio::sync::Mutex::new(())),
            snapshot_running: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            hung: tokio::sync::watch::Sender::new(false),
            repl_blocked: tokio::sync::watch::Sender::new(false),
            tasks: Mutex::new(JoinSet::new()),
        })
    }

    /// Freezes or resumes the process.
    pub fn set_hung(&self, hung: bool) {
        self.hung.send_replace(hung);
    }

    /// Whether the process is frozen.
    pub fn is_hung(&self) -> bool {
        *self.hung.borrow()
    }

    /// Returns at once unless the process is frozen; then waits until it is resumed. Every step
    /// that a frozen process could not take awaits this first.
    pub async fn thawed(&self) {
        if !self.is_hung() {
            return;
        }
        let mut rx = self.hung.subscribe();
        // The sender lives as long as `self`, so this only ends by the value turning false.
        let _ = rx.wait_for(|hung| !*hung).await;
    }

    /// Blocks or unblocks traffic to the replication port.
    pub fn set_replication_blocked(&self, blocked: bool) {
        self.repl_blocked.send_replace(blocked);
    }

    /// Whether traffic to the replication port is blocked.
    pub fn is_replication_blocked(&self) -> bool {
        *self.repl_blocked.borrow()
    }

    /// Follows the replication-port block (for closing connections when it starts).
    pub fn watch_replication_blocked(&self) -> tokio::sync::watch::Receiver<bool> {
        self.repl_blocked.subscribe()
    }

    pub fn core(&self) -> MutexGuard<'_, Core> {
        lock(&self.core)
    }

    pub fn now(&self) -> i64 {
        self.clock.now_unix_micros()
    }

    /// Spawns a task that kill/shutdown will abort.
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(&self, fut: F) -> AbortHandle {
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(fut)
    }

    /// Aborts every task.
    pub fn abort_all(&self) {
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        drop(tasks);
    }

    /// RPC timeouts in effect (`None` = wait forever, 2.21/2.22).
    pub fn timeouts(&self) -> Option<RpcTimeouts> {
        match self.cfg.rpc_timeout_override {
            Some(d) => Some(RpcTimeouts::uniform(d)),
            None => self.version.rpc_timeouts(),
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        self.cfg.rpc_timeout_override.unwrap_or_else(|| self.version.connect_timeout())
    }

    /// Writes the replication state if `--replication-restore-state-on-startup` asks for it.
    pub fn persist_role(&self, core: &Core) {
        if !self.cfg.restore_replication_state || core.dead {
            return;
        }
        if let Err(e) = store_state(core.durability.dir().as_ref(), &core.persisted_role()) {
            tracing::error!(error = %e, "couldn't persist the replication state");
        }
    }

    /// RUN: parse and check a query. Errors here are returned on RUN.
    pub fn prepare(
        &self,
        query: &str,
        params: &BTreeMap<String, Value>,
        in_explicit_tx: bool,
    ) -> Result<Prepared, QueryError> {
        let v = self.version;
        let stmt = cypher::parse(query, v).map_err(|e| QueryError::client(e.to_string()))?;
        let managed = self.cfg.management_port != 0;
        let (fields, kind): (Vec<&str>, &'static str) = match &stmt {
            Statement::Replication(r) => {
                if in_explicit_tx {
                    return Err(QueryError::client(messages::replication_in_tx(v)));
                }
                match r {
                    ReplicationQuery::SetRoleMain | ReplicationQuery::SetRoleReplica { .. } if managed => {
                        return Err(QueryError::client(messages::HA_SET_ROLE));
                    }
                    ReplicationQuery::Register { .. } if managed => {
                        return Err(QueryError::client(messages::HA_REGISTER));
                    }
                    ReplicationQuery::Drop { .. } if managed => {
                        return Err(QueryError::client(messages::HA_DROP));
                    }
                    ReplicationQuery::ShowRole => (vec!["replication role"], "r"),
                    ReplicationQuery::ShowReplicas => {
                        (vec!["name", "socket_address", "sync_mode", "system_info", "data_info"], "r")
                    }
                    _ => (vec![], "s"),
                }
            }
            Statement::Snapshot(s) => {
                let kind = match s {
                    SnapshotQuery::Create => SnapshotKind::Create,
                    SnapshotQuery::Show | SnapshotQuery::ShowNext => SnapshotKind::Show,
                    SnapshotQuery::Recover { .. } => SnapshotKind::Recover,
                };
                if in_explicit_tx {
                    return Err(QueryError::client(messages::snapshot_in_tx(v, kind)));
                }
                match s {
                    SnapshotQuery::Create if v.create_snapshot_returns_path() => (vec!["path"], "s"),
                    SnapshotQuery::Create | SnapshotQuery::Recover { .. } => (vec![], "s"),
                    SnapshotQuery::Show => (vec!["path", "timestamp", "creation_time", "size"], "r"),
                    SnapshotQuery::ShowNext => (vec!["path", "creation_time"], "r"),
                }
            }
            Statement::ShowStorageInfo => (vec!["storage info", "value"], "r"),
            Statement::Begin | Statement::Commit | Statement::Rollback => (vec![], "s"),
            Statement::Cypher(q) => {
                check_semantics(q).map_err(QueryError::client)?;
                check_functions(q)?;
                if let Some(p) = params_used(q).into_iter().find(|p| !params.contains_key(p)) {
                    return Err(QueryError::client(format!("Parameter ${p} not provided.")));
                }
                if q.is_write() {
                    match self.core().role() {
                        Role::Replica => return Err(QueryError::client(messages::write_on_replica(v))),
                        Role::Main if managed => {
                            return Err(QueryError::client(messages::write_on_unpromoted_main(v)));
                        }
                        Role::Main => {}
                    }
                }
                let kind = match (q.is_write(), q.fields().is_empty()) {
                    (true, true) => "w",
                    (true, false) => "rw",
                    _ => "r",
                };
                return Ok(Prepared { fields: q.fields(), stmt, kind });
            }
        };
        Ok(Prepared { fields: fields.into_iter().map(str::to_owned).collect(), stmt, kind })
    }

    /// PULL/DISCARD: execute a prepared query. In auto-commit mode (`tx` = `None`) writes are
    /// committed (and replicated) before this returns; in a transaction they stay in `tx`.
    pub async fn execute(
        self: &Arc<Self>,
        p: &Prepared,
        params: &BTreeMap<String, Value>,
        tx: Option<&mut TxState>,
    ) -> Result<QueryOutput, QueryError> {
        match &p.stmt {
            Statement::Cypher(q) => {
                let explicit = tx.is_some();
                let mut local = TxState::default();
                let txs = tx.unwrap_or(&mut local);
                let out = {
                    let mut core = self.core();
                    if core.dead {
                        return Err(QueryError::unknown("instance is shutting down"));
                    }
                    if q.is_write() && core.role() == Role::Replica {
                        return Err(QueryError::client(messages::write_on_replica(self.version)));
                    }
                    let now = self.now();
                    let mut env = ExecEnv { graph: &mut core.storage.graph, tx: txs, params, now_micros: now };
                    exec::run(q, &mut env)?
                };
                if !explicit && !txs.ops.is_empty() {
                    let ops = std::mem::take(&mut txs.ops);
                    self.commit(ops, false).await?;
                }
                Ok(out)
            }
            Statement::Replication(r) => repl_queries::run(self, r).await,
            Statement::Snapshot(s) => snapshot_queries::run(self, s).await,
            Statement::ShowStorageInfo => Ok(self.storage_info()),
            Statement::Begin | Statement::Commit | Statement::Rollback => Ok(QueryOutput::default()),
        }
    }

    /// Commits an explicit transaction's changes.
    pub async fn commit_tx(self: &Arc<Self>, tx: TxState) -> Result<(), QueryError> {
        if tx.ops.is_empty() {
            return Ok(());
        }
        self.commit(tx.ops, true).await
    }

    fn storage_info(&self) -> QueryOutput {
        let core = self.core();
        let s = &core.storage;
        let mut rows: Vec<(&str, Value)> = vec![("name", Value::from("memgraph"))];
        if self.version >= MgVersion::new(3, 5) {
            rows.push(("database_uuid", Value::from(s.db_uuid.as_str())));
        }
        rows.extend([
            ("vertex_count", Value::Int(s.graph.nodes.len() as i64)),
            ("edge_count", Value::Int(0)),
            ("average_degree", Value::Float(0.0)),
            ("memory_res", Value::from("0B")),
            ("disk_usage", Value::from("0B")),
            ("memory_tracked", Value::from("0B")),
            ("allocation_limit", Value::from("0B")),
            ("global_isolation_level", Value::from("SNAPSHOT_ISOLATION")),
            ("session_isolation_level", Value::from("")),
            ("next_session_isolation_level", Value::from("")),
            ("storage_mode", Value::from("IN_MEMORY_TRANSACTIONAL")),
        ]);
        QueryOutput { rows: rows.into_iter().map(|(k, v)| vec![Value::from(k), v]).collect(), ..QueryOutput::default() }
    }
}

fn check_functions(q: &cypher::ast::CypherQuery) -> Result<(), QueryError> {
    use cypher::ast::Clause;
    let mut bad = None;
    let mut visit = |e: &Expr| {
        fn walk(e: &Expr, bad: &mut Option<String>) {
            match e {
                Expr::Call { name, args, .. } => {
                    if !FUNCTIONS.contains(&name.as_str()) && bad.is_none() {
                        *bad = Some(name.clone());
                    }
                    args.iter().for_each(|a| walk(a, bad));
                }
                Expr::Prop(x, _) | Expr::Not(x) | Expr::Neg(x) | Expr::IsNull(x, _) | Expr::HasLabels(x, _) => {
                    walk(x, bad)
                }
                Expr::Binary(_, a, b) => {
                    walk(a, bad);
                    walk(b, bad);
                }
                Expr::List(items) => items.iter().for_each(|a| walk(a, bad)),
                Expr::Map(items) => items.iter().for_each(|(_, a)| walk(a, bad)),
                Expr::Literal(_) | Expr::Param(_) | Expr::Var(_) | Expr::CountStar => {}
            }
        }
        walk(e, &mut bad);
    };
    for c in &q.clauses {
        match c {
            Clause::Match { patterns, filter } => {
                patterns.iter().flat_map(|p| &p.props).for_each(|(_, e)| visit(e));
                filter.iter().for_each(&mut visit);
            }
            Clause::Create(patterns) => patterns.iter().flat_map(|p| &p.props).for_each(|(_, e)| visit(e)),
            Clause::Delete { exprs, .. } => exprs.iter().for_each(&mut visit),
            Clause::Return(r) => {
                r.items.iter().for_each(|i| visit(&i.expr));
                r.order_by.iter().for_each(|(e, _)| visit(e));
            }
        }
    }
    match bad {
        Some(name) => Err(QueryError::client(format!("Function '{name}' doesn't exist."))),
        None => Ok(()),
    }
}
