//! The replica's side: the replication server on `SET REPLICATION ROLE TO REPLICA WITH PORT n`.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::rpc::{self, ReplicaInfo, Request, Response};
use crate::engine::{Instance, RoleState};
use crate::net::{BoxStream, DynListener};
use crate::storage::Storage;

/// What the replica reports of its storage. An epoch in which it committed nothing (it was
/// promoted and demoted again with no write) is reported as the one before, where its data
/// ends: such a promotion is reversible, and the next MAIN finds it continuous (inferred,
/// memgraph-behaviour.md §11).
fn info(s: &Storage) -> ReplicaInfo {
    let epoch = match s.history.last() {
        Some((previous, last)) if *last == s.ts => previous.clone(),
        _ => s.epoch.clone(),
    };
    ReplicaInfo { ts: s.ts, epoch, history: s.history.clone() }
}

/// Accepts MAIN connections until aborted (promotion, kill, shutdown); dropping this future drops
/// every connection task with it. Accepting goes on while the process is hung (the kernel
/// completes the TCP handshake); a blocked port closes each connection at once.
pub(crate) async fn serve(inst: Arc<Instance>, mut listener: Box<dyn DynListener>) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, peer)) if inst.is_replication_blocked() => {
                tracing::debug!(%peer, "replication port blocked: dropping the connection");
                drop(stream);
            }
            Ok((stream, peer)) => {
                tracing::debug!(%peer, "replication connection");
                conns.spawn(connection(inst.clone(), stream));
            }
            Err(e) => {
                tracing::warn!(error = %e, "replication accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves one MAIN connection; it is closed (dropped) as soon as the port gets blocked.
async fn connection(inst: Arc<Instance>, mut stream: BoxStream) {
    let mut blocked = inst.watch_replication_blocked();
    loop {
        let req: Request = tokio::select! {
            biased;
            _ = blocked.wait_for(|b| *b) => return,
            read = rpc::read_frame(&mut stream) => match read {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "closing a malformed replication connection");
                    return;
                }
            },
        };
        // A frozen process handles nothing: the request is answered once it resumes.
        tokio::select! {
            biased;
            _ = blocked.wait_for(|b| *b) => return,
            () = inst.thawed() => {}
        }
        let resp = handle(&inst, req);
        if rpc::write_frame(&mut stream, &resp).await.is_err() {
            return;
        }
    }
}

fn refuse(reason: String, s: Option<&Storage>) -> Response {
    tracing::warn!(%reason, "refusing a replication request");
    Response::Failed { reason, info: s.map(info) }
}

fn sender(req: &Request) -> (&'static str, &str) {
    match req {
        Request::SwapMainUuid { main_uuid } => ("SwapMainUUID", main_uuid),
        Request::SystemRecovery { main_uuid, .. } => ("SystemRecovery", main_uuid),
        Request::Heartbeat { main_uuid, .. } => ("Heartbeat", main_uuid),
        Request::AppendCommit { main_uuid, .. } => ("PrepareCommit", main_uuid),
        Request::PrepareCommit { main_uuid, .. } => ("PrepareCommit", main_uuid),
        Request::FinalizeCommit { main_uuid, .. } => ("FinalizeCommit", main_uuid),
        Request::Snapshot { main_uuid, .. } => ("Snapshot", main_uuid),
    }
}

/// Handles one request atomically under the instance lock.
pub(crate) fn handle(inst: &Instance, req: Request) -> Response {
    let now = inst.now();
    let mut core = inst.core();
    if core.dead {
        return refuse("instance is shutting down".into(), None);
    }
    let core = &mut *core;
    let RoleState::Replica(role) = &mut core.role else {
        return refuse("instance is not a replica".into(), None);
    };
    let (rpc_name, from) = sender(&req);
    if let Request::SwapMainUuid { main_uuid } = &req {
        tracing::info!(main = %main_uuid, "following a new MAIN");
        role.main_uuid = main_uuid.clone();
        inst.persist_role(core);
        return Response::Ok(info(&core.storage));
    }
    if from != role.main_uuid {
        return refuse(
            format!("Received {rpc_name} with main_id: {from} != current_main_uuid: {}", role.main_uuid),
            Some(&core.storage),
        );
    }
    let storage = &mut core.storage;
    match req {
        Request::SwapMainUuid { .. } => Response::Ok(info(storage)),
        Request::SystemRecovery { db_uuid, .. } => {
            if storage.db_uuid != db_uuid {
                if !storage.is_clean() {
                    return refuse(
                        format!("Default storage is not clean, cannot update UUID to {db_uuid}..."),
                        Some(storage),
                    );
                }
                storage.db_uuid = db_uuid;
                if let Err(e) = core.durability.store_db_uuid(&storage.db_uuid) {
                    tracing::error!(error = %e, "couldn't persist the database UUID");
                }
            }
            Response::Ok(info(storage))
        }
        Request::Heartbeat { db_uuid, .. } => {
            if db_uuid != storage.db_uuid {
                return refuse(format!("No database with UUID {db_uuid} on replica!"), Some(storage));
            }
            Response::Ok(info(storage))
        }
        Request::AppendCommit { db_uuid, commit, .. } => {
            if db_uuid != storage.db_uuid {
                return refuse(format!("No database with UUID {db_uuid} on replica!"), Some(storage));
            }
            if commit.prev_ts != storage.ts {
                return refuse(
                    format!(
                        "Replica is out of sync: it is at {} but the transaction follows {}",
                        storage.ts, commit.prev_ts
                    ),
                    Some(storage),
                );
            }
            storage.apply_commit(&commit);
            if let Err(e) = core.durability.log_commit(&commit, now) {
                tracing::error!(error = %e, "couldn't write the WAL");
            }
            let resp = Response::Ok(info(storage));
            core.push_log(commit);
            resp
        }
        Request::PrepareCommit { db_uuid, commit, .. } => {
            if db_uuid != storage.db_uuid {
                return refuse(format!("No database with UUID {db_uuid} on replica!"), Some(storage));
            }
            if commit.prev_ts != storage.ts {
                return refuse("Replica is out of sync".into(), Some(storage));
            }
            let resp = Response::Ok(info(storage));
            role.staged = Some(commit);
            resp
        }
        Request::FinalizeCommit { ts, commit, .. } => {
            if let Some(staged) = role.staged.take()
                && staged.ts == ts
                && commit
                && staged.prev_ts == storage.ts
            {
                storage.apply_commit(&staged);
                if let Err(e) = core.durability.log_commit(&staged, now) {
                    tracing::error!(error = %e, "couldn't write the WAL");
                }
                core.push_log(staged);
            }
            Response::Ok(info(&core.storage))
        }
        Request::Snapshot { image, .. } => {
            storage.load_image(&image);
            core.log.clear();
            if let Err(e) = core.durability.install_snapshot(&image, now) {
                tracing::error!(error = %e, "couldn't store the received snapshot");
            }
            if let Err(e) = core.durability.store_db_uuid(&image.db_uuid) {
                tracing::error!(error = %e, "couldn't persist the database UUID");
            }
            tracing::info!(ts = image.ts, "replaced storage with the MAIN's snapshot");
            Response::Ok(info(&core.storage))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::main_side::diverged;

    #[test]
    fn a_promotion_that_committed_nothing_is_reversible() {
        // Both followed epoch e0 to ts 10; `a` was promoted (e1) and demoted, `b` promoted (e2).
        let mut a = Storage::fresh("e0".into(), "db".into());
        a.ts = 10;
        let mut b = a.clone();
        a.switch_epoch("e1".into());
        b.switch_epoch("e2".into());
        assert_eq!(info(&a).epoch, "e0");
        assert!(!diverged(&b, &info(&a)), "nothing was committed in e1");
        // Once `a` commits in its own epoch, it has diverged from `b`.
        a.ts = 12;
        assert_eq!(info(&a).epoch, "e1");
        assert!(diverged(&b, &info(&a)));
    }
}
