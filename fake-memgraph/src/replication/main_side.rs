//! The MAIN's side: RPC calls to replicas, registration, the frequent check, catch-up and shipping.

use std::sync::Arc;
use std::time::Duration;

use super::rpc::{self, ReplicaInfo, Request, Response};
use super::{ReplicaClient, ReplicaState};
use crate::cypher::SyncMode;
use crate::engine::{Instance, RoleState};
use crate::net::BoxStream;
use crate::query::messages::{self, RegisterError, reason};
use crate::query::{Notification, QueryError, QueryOutput};
use crate::storage::{Commit, Storage};
use crate::value::Value;

/// Why an RPC failed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RpcFailure {
    /// No connection could be made.
    Connect(String),
    /// An established connection broke (the replica restarted or the link failed).
    Lost(String),
    /// No answer in time.
    Timeout,
    /// The replica answered with a refusal.
    Refused { reason: String, info: Option<ReplicaInfo> },
}

async fn with_timeout<T>(t: Option<Duration>, f: impl Future<Output = T>) -> Option<T> {
    match t {
        Some(d) => tokio::time::timeout(d, f).await.ok(),
        None => Some(f.await),
    }
}

/// One RPC over the client's connection (caller holds the RPC lock via `conn`). Every outgoing
/// RPC (heartbeats, shipping, catch-up, registration, live `SHOW REPLICAS`) passes here, so a
/// frozen MAIN sends nothing and handles no answer until it resumes.
pub(crate) async fn rpc(
    inst: &Instance,
    client: &ReplicaClient,
    conn: &mut Option<BoxStream>,
    req: &Request,
    timeout: Option<Duration>,
) -> Result<ReplicaInfo, RpcFailure> {
    inst.thawed().await;
    let out = rpc_inner(inst, client, conn, req, timeout).await;
    inst.thawed().await;
    out
}

async fn rpc_inner(
    inst: &Instance,
    client: &ReplicaClient,
    conn: &mut Option<BoxStream>,
    req: &Request,
    timeout: Option<Duration>,
) -> Result<ReplicaInfo, RpcFailure> {
    let fresh = conn.is_none();
    if fresh {
        let connect = inst.net.connect(&client.endpoint);
        match tokio::time::timeout(inst.connect_timeout(), connect).await {
            Ok(Ok(s)) => *conn = Some(s),
            Ok(Err(e)) => return Err(RpcFailure::Connect(e.to_string())),
            Err(_) => return Err(RpcFailure::Connect("connect timed out".into())),
        }
    }
    let Some(stream) = conn.as_mut() else {
        return Err(RpcFailure::Connect("no connection".into()));
    };
    let exchange = async {
        rpc::write_frame(stream, req).await?;
        rpc::read_frame::<_, Response>(stream).await
    };
    let result = with_timeout(timeout, exchange).await;
    let broken = |msg: String| {
        if fresh { RpcFailure::Connect(msg) } else { RpcFailure::Lost(msg) }
    };
    let out = match result {
        None => Err(RpcFailure::Timeout),
        Some(Err(e)) => Err(broken(e.to_string())),
        Some(Ok(None)) => Err(broken("connection closed".into())),
        Some(Ok(Some(Response::Ok(info)))) => return Ok(info),
        Some(Ok(Some(Response::Failed { reason, info }))) => return Err(RpcFailure::Refused { reason, info }),
    };
    *conn = None;
    out
}

/// Takes the RPC lock and makes one call.
pub(crate) async fn call(
    inst: &Instance,
    client: &ReplicaClient,
    req: &Request,
    timeout: Option<Duration>,
) -> Result<ReplicaInfo, RpcFailure> {
    let mut conn = client.conn.lock().await;
    rpc(inst, client, &mut conn, req, timeout).await
}

/// How a replica's history stands to a MAIN's, by Memgraph's divergence test
/// (`UpdateReplicaState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lineage {
    /// On the MAIN's epoch, empty, or behind on an epoch of its history: it can catch up.
    Continuous,
    /// On an epoch of the MAIN's history, past its recorded end: it holds commits the MAIN
    /// was promoted without (an old MAIN's last writes).
    Ahead,
    /// On an epoch the MAIN does not know.
    Foreign,
}

/// Only a replica on another epoch with data can diverge; it has if its epoch is unknown to
/// this MAIN or it went past the recorded end of it.
pub(crate) fn lineage(main: &Storage, info: &ReplicaInfo) -> Lineage {
    if info.epoch == main.epoch || info.ts == 0 {
        return Lineage::Continuous;
    }
    match main.history.iter().rev().find(|(e, _)| *e == info.epoch) {
        None => Lineage::Foreign,
        Some((_, last)) if info.ts > *last => Lineage::Ahead,
        Some(_) => Lineage::Continuous,
    }
}

/// Memgraph's divergence test: the replica's history is not continuous with the MAIN's.
pub(crate) fn diverged(main: &Storage, info: &ReplicaInfo) -> bool {
    lineage(main, info) != Lineage::Continuous
}

fn main_ids(inst: &Instance) -> Option<(String, String)> {
    let core = inst.core();
    match &core.role {
        RoleState::Main { main_uuid, .. } if !core.dead => Some((main_uuid.clone(), core.storage.db_uuid.clone())),
        _ => None,
    }
}

fn still_registered(inst: &Instance, client: &Arc<ReplicaClient>) -> bool {
    let core = inst.core();
    match &core.role {
        RoleState::Main { replicas, .. } => replicas.iter().any(|r| Arc::ptr_eq(r, client)),
        RoleState::Replica(_) => false,
    }
}

/// Ships one commit to a replica (SYNC inline, ASYNC from a task). Returns the failure reason.
pub(crate) async fn ship(
    inst: &Instance,
    client: &ReplicaClient,
    commit: &Commit,
    main_uuid: &str,
    db_uuid: &str,
) -> Result<(), String> {
    let mut conn = client.conn.lock().await;
    {
        let mut st = client.status();
        if st.ts >= commit.ts {
            // Catch-up delivered it while we waited for the RPC lock.
            if st.state == ReplicaState::Replicating {
                st.state = ReplicaState::Ready;
            }
            return Ok(());
        }
        if !matches!(st.state, ReplicaState::Ready | ReplicaState::Replicating) {
            return Err(reason::NOT_READY.to_string());
        }
    }
    let req = Request::AppendCommit {
        main_uuid: main_uuid.to_string(),
        db_uuid: db_uuid.to_string(),
        commit: commit.clone(),
    };
    let res = rpc(inst, client, &mut conn, &req, inst.timeouts().map(|t| t.commit)).await;
    let mut st = client.status();
    match res {
        Ok(info) => {
            st.ts = info.ts;
            if st.state == ReplicaState::Replicating {
                st.state = ReplicaState::Ready;
            }
            Ok(())
        }
        Err(f) => {
            if st.state != ReplicaState::Diverged {
                st.state = ReplicaState::Invalid;
            }
            tracing::warn!(replica = %client.name, failure = ?f, "couldn't replicate a transaction");
            Err(crate::engine::failure_reason(&f))
        }
    }
}

/// `REGISTER REPLICA`: persist the row first, then swap the MAIN UUID, align the database UUID and
/// check the replica's history. Failures after the first step leave the (stale) row in place.
pub(crate) async fn register(
    inst: &Arc<Instance>,
    name: &str,
    mode: SyncMode,
    address: &Value,
) -> Result<QueryOutput, QueryError> {
    let v = inst.version;
    let client = {
        let mut core = inst.core();
        let RoleState::Main { replicas, .. } = &mut core.role else {
            return Err(QueryError::client(messages::REGISTER_ON_REPLICA));
        };
        let Some(endpoint) = address.as_str().and_then(super::parse_socket_address) else {
            return Err(QueryError::client(messages::invalid_socket_address(v)));
        };
        if replicas.iter().any(|r| r.name == name) {
            return Err(QueryError::client(messages::register_failed(v, name, RegisterError::NameExists)));
        }
        if replicas.iter().any(|r| r.endpoint == endpoint) {
            return Err(QueryError::client(messages::register_failed(v, name, RegisterError::EndpointExists)));
        }
        let client = ReplicaClient::new(name.to_string(), mode, endpoint, false);
        replicas.push(client.clone());
        inst.persist_role(&core);
        client
    };
    let fail = |e: RegisterError| QueryError::client(messages::register_failed(v, name, e));
    let Some((main_uuid, db_uuid)) = main_ids(inst) else {
        return Err(fail(RegisterError::ErrorAcceptingMain));
    };
    let timeouts = inst.timeouts();
    let mut conn = client.conn.lock().await;
    let swap = Request::SwapMainUuid { main_uuid: main_uuid.clone() };
    if let Err(f) = rpc(inst, &client, &mut conn, &swap, timeouts.map(|t| t.swap_uuid)).await {
        tracing::error!(replica = %name, failure = ?f, "replica didn't accept this MAIN");
        return Err(fail(RegisterError::ErrorAcceptingMain));
    }
    let sys = Request::SystemRecovery { main_uuid: main_uuid.clone(), db_uuid: db_uuid.clone() };
    if let Err(f) = rpc(inst, &client, &mut conn, &sys, timeouts.map(|t| t.system_recovery)).await {
        tracing::warn!(replica = %name, failure = ?f, "system recovery of the replica failed");
    }
    let hb = Request::Heartbeat { main_uuid, db_uuid };
    match rpc(inst, &client, &mut conn, &hb, timeouts.map(|t| t.heartbeat)).await {
        Ok(info) => {
            let core = inst.core();
            if diverged(&core.storage, &info) {
                tracing::error!(
                    "You cannot register Replica {name} to this Main because at one point Replica {name} acted as the Main instance. Both the Main and Replica {name} now hold unique data. Please resolve data conflicts and start the replication on a clean instance."
                );
                return Err(fail(RegisterError::ConnectionFailed));
            }
            let mut st = client.status();
            st.ts = info.ts;
            if info.ts >= core.storage.ts {
                st.state = ReplicaState::Ready;
            }
        }
        Err(f) => tracing::warn!(replica = %name, failure = ?f, "replica check failed after registration"),
    }
    drop(conn);
    client.status().active = true;
    start_checks(inst, &client);
    Ok(QueryOutput {
        notifications: vec![Notification::info("RegisterReplica", format!("Replica {name} is registered."))],
        ..QueryOutput::default()
    })
}

/// Starts the frequent check of a replica (no-op when checks are disabled).
pub(crate) fn start_checks(inst: &Arc<Instance>, client: &Arc<ReplicaClient>) {
    let period = inst.cfg.replica_check_frequency;
    if period.is_zero() {
        return;
    }
    let (i, c) = (inst.clone(), client.clone());
    let handle = inst.spawn(async move {
        loop {
            // A frozen MAIN sends no heartbeats.
            i.thawed().await;
            if !still_registered(&i, &c) {
                return;
            }
            check_once(&i, &c).await;
            tokio::time::sleep(period).await;
        }
    });
    client.stop_checks();
    *client.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handle);
}

/// One frequent check: heartbeat, then state transition and catch-up if needed.
pub(crate) async fn check_once(inst: &Arc<Instance>, client: &Arc<ReplicaClient>) {
    let Some((main_uuid, db_uuid)) = main_ids(inst) else { return };
    let mut conn = client.conn.lock().await;
    let fresh = conn.is_none();
    let hb = Request::Heartbeat { main_uuid, db_uuid };
    let res = rpc(inst, client, &mut conn, &hb, inst.timeouts().map(|t| t.heartbeat)).await;
    let (info, recheck) = match res {
        Err(f) => {
            let mut st = client.status();
            st.failures += 1;
            let immediate = matches!(f, RpcFailure::Lost(_) | RpcFailure::Refused { .. });
            let threshold = inst.version.cached_replica_state() && st.failures >= 3;
            if st.state != ReplicaState::Diverged && (immediate || threshold) {
                st.state = ReplicaState::Invalid;
            }
            tracing::debug!(replica = %client.name, failure = ?f, failures = st.failures, "replica check failed");
            return;
        }
        Ok(info) => {
            let mut st = client.status();
            // A reconnect after failures means the replica may have restarted: re-check it.
            let recheck = fresh && st.failures > 0;
            st.failures = 0;
            st.ts = info.ts;
            (info, recheck)
        }
    };
    let full = {
        let core = inst.core();
        let mut st = client.status();
        if st.force_full {
            st.state = ReplicaState::Recovery;
            Some(true)
        } else if st.state == ReplicaState::Diverged {
            None
        } else if matches!(st.state, ReplicaState::Invalid | ReplicaState::Recovery)
            || (st.state == ReplicaState::Ready && recheck)
        {
            if diverged(&core.storage, &info) {
                st.state = ReplicaState::Diverged;
                tracing::error!(replica = %client.name, "replica has diverged from main");
                None
            } else if info.ts < core.storage.ts {
                st.state = ReplicaState::Recovery;
                Some(false)
            } else {
                st.state = ReplicaState::Ready;
                None
            }
        } else {
            None
        }
    };
    if let Some(full) = full
        && let Err(f) = recover(inst, client, &mut conn, info.ts, full).await
    {
        tracing::warn!(replica = %client.name, failure = ?f, "replica recovery failed");
        let mut st = client.status();
        if st.state != ReplicaState::Diverged {
            st.state = ReplicaState::Invalid;
        }
    }
}

enum Step {
    Deltas(Vec<Commit>),
    Full(Box<crate::storage::SnapshotImage>),
}

/// Catch-up: commits from the in-memory log when it covers the gap, otherwise a full snapshot.
/// Marks the replica ready, atomically with respect to new commits, once it has everything.
async fn recover(
    inst: &Arc<Instance>,
    client: &ReplicaClient,
    conn: &mut Option<BoxStream>,
    mut replica_ts: i64,
    mut full: bool,
) -> Result<(), RpcFailure> {
    let timeouts = inst.timeouts();
    loop {
        let (step, main_uuid, db_uuid) = {
            let core = inst.core();
            let RoleState::Main { main_uuid, .. } = &core.role else {
                return Err(RpcFailure::Connect("not main".into()));
            };
            if core.dead {
                return Err(RpcFailure::Connect("shut down".into()));
            }
            if !full && replica_ts >= core.storage.ts {
                let mut st = client.status();
                st.state = ReplicaState::Ready;
                st.ts = replica_ts;
                return Ok(());
            }
            let from_log = (!full).then(|| core.log.iter().position(|c| c.prev_ts == replica_ts)).flatten();
            let step = match from_log {
                Some(i) => Step::Deltas(core.log.range(i..).take(256).cloned().collect()),
                None => Step::Full(Box::new(core.storage.image(inst.now()))),
            };
            (step, main_uuid.clone(), core.storage.db_uuid.clone())
        };
        match step {
            Step::Deltas(commits) => {
                for commit in commits {
                    let req = Request::AppendCommit { main_uuid: main_uuid.clone(), db_uuid: db_uuid.clone(), commit };
                    let info = rpc(inst, client, conn, &req, timeouts.map(|t| t.commit)).await?;
                    replica_ts = info.ts;
                    client.status().ts = replica_ts;
                }
            }
            Step::Full(image) => {
                let req = Request::Snapshot { main_uuid: main_uuid.clone(), image: *image };
                let info = rpc(inst, client, conn, &req, timeouts.map(|t| t.snapshot)).await?;
                replica_ts = info.ts;
                full = false;
                let mut st = client.status();
                st.ts = replica_ts;
                st.force_full = false;
            }
        }
    }
}

/// `SHOW REPLICAS` rows. 3.1+ reads cached state; 2.21–3.0 asks every replica for its timestamp,
/// flipping it to `invalid` on failure or any difference.
pub(crate) async fn show_replicas(inst: &Arc<Instance>) -> Result<QueryOutput, QueryError> {
    let (replicas, ids) = {
        let core = inst.core();
        match &core.role {
            RoleState::Main { replicas, main_uuid } => {
                (replicas.clone(), (main_uuid.clone(), core.storage.db_uuid.clone()))
            }
            RoleState::Replica(_) => {
                return Err(QueryError::client(messages::show_replicas_on_replica(inst.version)));
            }
        }
    };
    // 2.21–3.0: an unreachable replica is shown with ts 0, behind 0.
    let mut unreachable = std::collections::BTreeSet::new();
    if !inst.version.cached_replica_state() {
        for r in replicas.iter().filter(|r| r.status().active) {
            let hb = Request::Heartbeat { main_uuid: ids.0.clone(), db_uuid: ids.1.clone() };
            let res = call(inst, r, &hb, inst.timeouts().map(|t| t.heartbeat)).await;
            let main_ts = inst.core().storage.ts;
            let mut st = r.status();
            let in_sync = matches!(&res, Ok(info) if info.ts == main_ts);
            match res {
                Ok(info) => st.ts = info.ts,
                Err(_) => {
                    unreachable.insert(r.name.clone());
                }
            }
            if !in_sync && st.state != ReplicaState::Diverged {
                st.state = ReplicaState::Invalid;
            }
        }
    }
    let main_ts = inst.core().storage.ts;
    let rows = replicas
        .iter()
        .map(|r| {
            let st = r.status().clone();
            let (ts, behind) = if unreachable.contains(&r.name) { (0, 0) } else { (st.ts, st.ts - main_ts) };
            let data_info = if st.active {
                crate::value::map([(
                    "memgraph",
                    crate::value::map([
                        ("ts", Value::Int(ts)),
                        ("behind", Value::Int(behind)),
                        ("status", Value::from(st.state.as_str())),
                    ]),
                )])
            } else {
                Value::Map(Default::default())
            };
            vec![
                Value::from(r.name.as_str()),
                Value::from(r.endpoint.as_str()),
                Value::from(r.mode.as_str()),
                Value::Null,
                data_info,
            ]
        })
        .collect();
    Ok(QueryOutput { rows, ..QueryOutput::default() })
}
