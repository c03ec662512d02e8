//! Starting, observing and stopping an instance.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{AbortHandle, JoinSet};

use crate::bolt::session;
use crate::clock::{Clock, IdSource};
use crate::config::Config;
use crate::datadir::DataDir;
use crate::engine::{Core, Instance, ReplicaRole, RoleState, SnapshotFailure, Trigger};
use crate::net::{DynListener, DynNetwork, Network};
use crate::replication::{
    PersistedRole, ReplicaClient, ReplicaState, ReplicaStatus, Role, load_state, main_side, replica_side,
};
use crate::storage::durability::{Durability, DurabilityConfig, DurabilityError};
use crate::value::Node;

/// Why an instance did not start (Memgraph exits in these cases).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A fatal startup check.
    #[error("{0}")]
    Config(String),
    /// Snapshot/WAL recovery failed.
    #[error(transparent)]
    Recovery(#[from] DurabilityError),
    /// The Bolt port could not be bound.
    #[error("couldn't bind the Bolt port {port}: {source}")]
    BoltBind {
        /// Requested port.
        port: u16,
        /// Cause.
        source: std::io::Error,
    },
    /// A restored REPLICA could not bind its replication port (fatal in community mode).
    #[error("couldn't bind the replication port {port}: {source}")]
    ReplicationBind {
        /// Requested port.
        port: u16,
        /// Cause.
        source: std::io::Error,
    },
}

/// Entry point.
pub struct Server;

impl Server {
    /// Starts an instance on the current tokio runtime: runs the startup checks, recovers data and
    /// replication state, binds the Bolt port and spawns the server tasks. Returns once bound.
    pub async fn start<N, D, C>(
        config: Config,
        net: N,
        datadir: D,
        clock: C,
        ids: IdSource,
    ) -> Result<ServerHandle, StartError>
    where
        N: Network,
        D: DataDir,
        C: Clock,
    {
        startup_checks(&config)?;
        let dir: Arc<dyn DataDir> = Arc::new(datadir);
        let net: Arc<dyn DynNetwork> = Arc::new(net);
        let clock: Arc<dyn Clock> = Arc::new(clock);

        let mut durability = Durability::new(
            dir.clone(),
            DurabilityConfig {
                wal_enabled: config.wal_enabled,
                flush_every_n_tx: config.wal_flush_every_n_tx,
                wal_file_size: config.wal_file_size_kib.saturating_mul(1024),
                retention: config.snapshot_retention_count as usize,
            },
        );
        let recovered = durability.recover(config.data_recovery_on_startup, &ids)?;
        let persisted = if config.restore_replication_state {
            load_state(dir.as_ref())
        } else {
            tracing::warn!(
                "Replication configuration will NOT be stored. When the server restarts, replication state will be forgotten."
            );
            None
        };
        tracing::info!(
            version = %config.memgraph_version,
            ts = recovered.storage.ts,
            nodes = recovered.storage.graph.nodes.len(),
            "recovered storage"
        );
        // Loading a big graph takes a while, and nothing listens until it is done.
        let nodes = recovered.storage.graph.nodes.len() as u64;
        let recovery_time = Duration::from_micros(config.recovery_micros_per_node.saturating_mul(nodes));
        if !recovery_time.is_zero() {
            tracing::info!(?recovery_time, nodes, "recovery takes a while");
            tokio::time::sleep(recovery_time).await;
        }

        let bolt = net
            .bind(config.bolt_port)
            .await
            .map_err(|source| StartError::BoltBind { port: config.bolt_port, source })?;
        let bolt_port = bolt.local_port();

        // A restored replica needs its replication port before anything else runs.
        let mut repl_listener: Option<(Box<dyn DynListener>, u16, String)> = None;
        let mut main_state: Option<(String, Vec<Arc<ReplicaClient>>)> = None;
        match persisted {
            Some(PersistedRole::Replica { port, main_uuid }) => {
                let l = net.bind(port).await.map_err(|source| StartError::ReplicationBind { port, source })?;
                repl_listener = Some((l, port, main_uuid));
            }
            Some(PersistedRole::Main { main_uuid, mut replicas }) => {
                // The store is keyed by name, so replicas come back sorted by name.
                replicas.sort_by(|a, b| a.name.cmp(&b.name));
                let clients =
                    replicas.into_iter().map(|r| ReplicaClient::new(r.name, r.mode, r.endpoint, true)).collect();
                main_state = Some((main_uuid, clients));
            }
            None => {}
        }
        let placeholder_role = RoleState::Main { main_uuid: String::new(), replicas: Vec::new() };
        let core = Core {
            storage: recovered.storage,
            durability,
            role: placeholder_role,
            log: VecDeque::from(recovered.log),
            dead: false,
            next_snapshot_micros: None,
        };
        let inst = Instance::new(config, clock, ids, net, core);

        let role = match (repl_listener, main_state) {
            (Some((listener, port, main_uuid)), _) => {
                let bound_port = listener.local_port();
                let server = inst.spawn(replica_side::serve(inst.clone(), listener));
                RoleState::Replica(ReplicaRole { port, bound_port, main_uuid, server, staged: None })
            }
            (None, Some((main_uuid, replicas))) => RoleState::Main { main_uuid, replicas },
            (None, None) => RoleState::Main { main_uuid: inst.ids.uuid(), replicas: Vec::new() },
        };
        let clients = match &role {
            RoleState::Main { replicas, .. } => replicas.clone(),
            RoleState::Replica(_) => Vec::new(),
        };
        {
            let mut core = inst.core();
            core.role = role;
            inst.persist_role(&core);
        }
        for c in &clients {
            main_side::start_checks(&inst, c);
        }
        if inst.cfg.snapshot_interval_sec > 0 {
            let i = inst.clone();
            inst.spawn(periodic_snapshots(i));
        }
        let bolt_task = inst.spawn(accept_bolt(inst.clone(), bolt));
        tracing::info!(bolt_port, "fake Memgraph {} is ready", inst.version);
        Ok(ServerHandle { inst, bolt_port, bolt_task })
    }
}

fn startup_checks(c: &Config) -> Result<(), StartError> {
    if c.wal_enabled && c.snapshot_interval_sec == 0 {
        return Err(StartError::Config(
            "In order to use write-ahead-logging you must enable periodic snapshots by setting the snapshot interval to a value larger than 0".into(),
        ));
    }
    if c.management_port != 0 && !c.wal_enabled && c.memgraph_version >= crate::version::NEWEST {
        return Err(StartError::Config(
            "High availability data instances must run with --storage-wal-enabled=true".into(),
        ));
    }
    Ok(())
}

async fn accept_bolt(inst: Arc<Instance>, mut listener: Box<dyn DynListener>) {
    let mut sessions = JoinSet::new();
    loop {
        while sessions.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, peer)) => {
                sessions.spawn(session::serve(inst.clone(), stream, peer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "bolt accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn periodic_snapshots(inst: Arc<Instance>) {
    let interval = Duration::from_secs(inst.cfg.snapshot_interval_sec);
    loop {
        let due = inst.now() + i64::try_from(interval.as_micros()).unwrap_or(i64::MAX / 2);
        inst.core().next_snapshot_micros = Some(due);
        tokio::time::sleep(interval).await;
        // A frozen process's scheduler does not fire.
        inst.thawed().await;
        if inst.core().dead {
            return;
        }
        match inst.write_snapshot(Trigger::Periodic).await {
            Ok(rel) => tracing::info!(file = %rel, "periodic snapshot written"),
            Err(SnapshotFailure::DisabledForReplica) => tracing::warn!("Snapshots are disabled for replicas"),
            Err(SnapshotFailure::NothingNew) => {
                tracing::info!("Skipping snapshot creation. Nothing has been written since the last snapshot.");
            }
            Err(SnapshotFailure::AlreadyRunning) => {
                tracing::info!("Skipping snapshot creation. Another snapshot creation is already in progress.");
            }
            Err(SnapshotFailure::ShutDown) => return,
            Err(e) => tracing::error!(error = %e, "periodic snapshot failed"),
        }
    }
}

/// A running instance: its ports, state for tests and oracles, and stop controls.
#[derive(Clone)]
pub struct ServerHandle {
    inst: Arc<Instance>,
    bolt_port: u16,
    bolt_task: AbortHandle,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("bolt_port", &self.bolt_port)
            .field("role", &self.role())
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The Bolt port actually bound.
    pub fn bolt_port(&self) -> u16 {
        self.bolt_port
    }

    /// The replication port actually bound, when the instance is a REPLICA.
    pub fn replication_port(&self) -> Option<u16> {
        match &self.inst.core().role {
            RoleState::Replica(r) => Some(r.bound_port),
            RoleState::Main { .. } => None,
        }
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.inst.core().role()
    }

    /// Last committed (durable) timestamp.
    pub fn timestamp(&self) -> i64 {
        self.inst.core().storage.ts
    }

    /// Current epoch id.
    pub fn epoch(&self) -> String {
        self.inst.core().storage.epoch.clone()
    }

    /// Epoch history `(epoch, last ts)`, oldest first.
    pub fn epoch_history(&self) -> Vec<(String, i64)> {
        self.inst.core().storage.history.clone()
    }

    /// How this instance's data stands to `main`'s, by Memgraph's own test on registration: it
    /// diverged (anything but `Continuous`) on another epoch, with data, unknown to `main`
    /// (`Foreign`) or past the end `main` recorded for it (`Ahead`: an old MAIN's last writes
    /// that `main` was promoted without). What a registration would find, also when no
    /// `SHOW REPLICAS` row says so (a refused one shows an empty `data_info`).
    pub fn lineage_to(&self, main: &ServerHandle) -> main_side::Lineage {
        let info = {
            let core = self.inst.core();
            crate::replication::rpc::ReplicaInfo {
                ts: core.storage.ts,
                epoch: core.storage.epoch.clone(),
                history: core.storage.history.clone(),
            }
        };
        main_side::lineage(&main.inst.core().storage, &info)
    }

    /// The default database's UUID.
    pub fn db_uuid(&self) -> String {
        self.inst.core().storage.db_uuid.clone()
    }

    /// The UUID of the MAIN this instance follows (replica) or is (main).
    pub fn main_uuid(&self) -> String {
        match &self.inst.core().role {
            RoleState::Main { main_uuid, .. } => main_uuid.clone(),
            RoleState::Replica(r) => r.main_uuid.clone(),
        }
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.inst.core().storage.graph.nodes.len()
    }

    /// Number of nodes without `label` (what a client's data is, beside an operator's test
    /// nodes).
    pub fn node_count_without(&self, label: &str) -> usize {
        let core = self.inst.core();
        core.storage.graph.nodes.len().saturating_sub(core.storage.graph.labelled(label))
    }

    /// Order-independent fingerprint of the data; equal digests mean equal data.
    pub fn digest(&self) -> u64 {
        self.inst.core().storage.graph.digest()
    }

    /// Every node, by id.
    pub fn nodes(&self) -> Vec<Node> {
        let core = self.inst.core();
        core.storage.graph.nodes.keys().filter_map(|id| core.storage.graph.node(*id)).collect()
    }

    /// The registered replicas as this MAIN sees them (empty on a REPLICA).
    pub fn replicas(&self) -> Vec<ReplicaStatus> {
        let core = self.inst.core();
        let RoleState::Main { replicas, .. } = &core.role else {
            return Vec::new();
        };
        replicas
            .iter()
            .map(|r| {
                let st = r.status();
                ReplicaStatus {
                    name: r.name.clone(),
                    socket_address: r.endpoint.clone(),
                    mode: r.mode,
                    state: st.active.then_some(st.state),
                    ts: st.ts,
                }
            })
            .collect()
    }

    /// The state of one replica by name (`None` if not registered or a stale row).
    pub fn replica_state(&self, name: &str) -> Option<ReplicaState> {
        self.replicas().into_iter().find(|r| r.name == name).and_then(|r| r.state)
    }

    /// Whether the instance is still running (not killed or shut down). A hung instance is
    /// running: the process exists.
    pub fn is_running(&self) -> bool {
        !self.inst.core().dead
    }

    /// Freezes (`true`) or resumes (`false`) the whole process, like SIGSTOP/SIGCONT or a stalled
    /// disk. While hung, the Bolt and replication listeners still accept TCP connections (the
    /// kernel does that) but no Bolt message (handshake included) and no replication RPC is
    /// answered; the instance's own heartbeats, ASYNC shipping, catch-up, periodic snapshots and
    /// a snapshot being written pause. Resuming continues every one of them where it stopped.
    /// Timers keep running meanwhile, so RPC timeouts of a hung MAIN may expire. Per process: an
    /// instance started again is not hung.
    pub fn set_hung(&self, hung: bool) {
        self.inst.set_hung(hung);
        tracing::info!(hung, "process frozen state changed");
    }

    /// Whether the process is frozen by [`ServerHandle::set_hung`].
    pub fn is_hung(&self) -> bool {
        self.inst.is_hung()
    }

    /// Emulates a network policy dropping traffic to this instance's replication port (`true`)
    /// or its removal (`false`). While blocked, the replication server closes every new
    /// connection at once without an answer and closes the ones it has, so a MAIN's `REGISTER
    /// REPLICA` of it fails (stale row with `data_info` `{}`) and its heartbeats fail; Bolt and
    /// this instance's own outgoing replication are unaffected. Per process: re-apply it after a
    /// restart.
    pub fn set_replication_blocked(&self, blocked: bool) {
        self.inst.set_replication_blocked(blocked);
        tracing::info!(blocked, "replication port block changed");
    }

    /// Whether the replication port is blocked by [`ServerHandle::set_replication_blocked`].
    pub fn is_replication_blocked(&self) -> bool {
        self.inst.is_replication_blocked()
    }

    /// Graceful stop: stop serving and replicating, take the on-exit snapshot if configured
    /// (after a snapshot being written ends; without it that snapshot is aborted), finalize the
    /// WAL, then end every task. A hung instance acts on the stop only once resumed, like a
    /// frozen process on SIGTERM; use [`ServerHandle::kill`] to end it at once.
    pub async fn shutdown(&self) {
        self.inst.thawed().await;
        self.bolt_task.abort();
        let _serial = self.inst.commit_lock.lock().await;
        {
            let mut core = self.inst.core();
            if core.dead {
                return;
            }
            // Replication stops first, as in Memgraph's storage destructor.
            stop_replica_clients(&core);
            if !self.inst.cfg.snapshot_on_exit
                && let Err(e) = core.durability.abort_snapshot()
            {
                tracing::error!(error = %e, "couldn't remove an aborted snapshot");
            }
        }
        if self.inst.cfg.snapshot_on_exit {
            match self.inst.write_snapshot(Trigger::Exit).await {
                Ok(_) | Err(SnapshotFailure::DisabledForReplica | SnapshotFailure::NothingNew) => {}
                Err(e) => tracing::error!(error = %e, "snapshot on exit failed"),
            }
        }
        {
            let mut core = self.inst.core();
            if core.dead {
                return;
            }
            if let Err(e) = core.durability.finalize_wal() {
                tracing::error!(error = %e, "couldn't finalize the WAL");
            }
            core.dead = true;
            core.durability.kill();
        }
        self.inst.abort_all();
        tracing::info!("shut down");
    }

    /// Crash: drop unflushed WAL records, take no snapshot, end every task now.
    pub fn kill(&self) {
        {
            let mut core = self.inst.core();
            core.dead = true;
            core.durability.kill();
            stop_replica_clients(&core);
        }
        self.inst.abort_all();
        tracing::info!("killed");
    }
}

fn stop_replica_clients(core: &Core) {
    match &core.role {
        RoleState::Main { replicas, .. } => replicas.iter().for_each(|r| r.stop()),
        RoleState::Replica(r) => r.server.abort(),
    }
}
