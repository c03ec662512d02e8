//! The write commit path: STRICT_SYNC two-phase commit, local commit + WAL, SYNC and ASYNC shipping.

use std::sync::Arc;

use super::{Instance, RoleState};
use crate::cypher::SyncMode;
use crate::query::messages::{self, reason};
use crate::query::{ErrorClass, QueryError};
use crate::replication::main_side::{self, RpcFailure};
use crate::replication::rpc::Request;
use crate::replication::{ReplicaClient, ReplicaState};
use crate::storage::{Commit, Op};

/// Timestamps advance by two per write transaction (start + commit), as Memgraph's e2e tests see.
const TS_STEP: i64 = 2;

impl Instance {
    fn replication_error(&self, message: String, explicit: bool) -> QueryError {
        let class = if !explicit && self.version.sync_failure_transient_in_autocommit() {
            ErrorClass::Transient
        } else {
            ErrorClass::Client
        };
        QueryError { class, message }
    }

    /// Commits `ops` as one transaction on this MAIN and replicates it.
    pub(crate) async fn commit(self: &Arc<Self>, ops: Vec<Op>, explicit: bool) -> Result<(), QueryError> {
        let _serial = self.commit_lock.lock().await;

        // Phase A: build the commit and find STRICT_SYNC replicas; any that is not ready aborts.
        let (commit, main_uuid, db_uuid, strict) = {
            let core = self.core();
            if core.dead {
                return Err(QueryError::unknown("instance is shutting down"));
            }
            let RoleState::Main { main_uuid, replicas } = &core.role else {
                return Err(QueryError::client(messages::NOT_MAIN_ANYMORE));
            };
            let commit = Commit {
                prev_ts: core.storage.ts,
                ts: core.storage.ts + TS_STEP,
                epoch: core.storage.epoch.clone(),
                ops,
            };
            let strict: Vec<Arc<ReplicaClient>> =
                replicas.iter().filter(|r| r.mode == SyncMode::StrictSync && r.status().active).cloned().collect();
            let not_ready: Vec<(String, String)> = strict
                .iter()
                .filter_map(|r| {
                    let st = r.status();
                    (st.state != ReplicaState::Ready).then(|| (r.name.clone(), state_reason(st.state)))
                })
                .collect();
            if !not_ready.is_empty() {
                return Err(self.replication_error(messages::strict_sync_failure(self.version, &not_ready), explicit));
            }
            (commit, main_uuid.clone(), core.storage.db_uuid.clone(), strict)
        };

        // Phase B: STRICT_SYNC prepare on every strict replica.
        let mut prepared = Vec::new();
        let mut failures = Vec::new();
        for r in &strict {
            let req = Request::PrepareCommit {
                main_uuid: main_uuid.clone(),
                db_uuid: db_uuid.clone(),
                commit: commit.clone(),
            };
            match main_side::call(self, r, &req, self.timeouts().map(|t| t.commit)).await {
                Ok(_) => prepared.push(r.clone()),
                Err(f) => {
                    r.status().state = ReplicaState::Invalid;
                    failures.push((r.name.clone(), failure_reason(&f)));
                }
            }
        }
        if !failures.is_empty() {
            self.finalize_strict(&prepared, &main_uuid, &db_uuid, commit.ts, false).await;
            return Err(self.replication_error(messages::strict_sync_failure(self.version, &failures), explicit));
        }

        // Phase C: commit locally, then decide who gets the commit.
        let mut sync_targets = Vec::new();
        let mut async_targets = Vec::new();
        let mut sync_failures = Vec::new();
        let still_main = 'local: {
            let mut core = self.core();
            if !matches!(core.role, RoleState::Main { .. }) || core.dead {
                break 'local false;
            }
            core.storage.apply_commit(&commit);
            let now = self.now();
            if let Err(e) = core.durability.log_commit(&commit, now) {
                tracing::error!(error = %e, "couldn't write the WAL");
            }
            core.push_log(commit.clone());
            if let RoleState::Main { replicas, .. } = &core.role {
                for r in replicas {
                    let mut st = r.status();
                    if !st.active {
                        continue;
                    }
                    match (r.mode, st.state) {
                        (SyncMode::StrictSync, _) => {}
                        (SyncMode::Sync, ReplicaState::Ready) => sync_targets.push(r.clone()),
                        (SyncMode::Sync, state) => {
                            sync_failures.push((r.name.clone(), state_reason(state)));
                        }
                        (SyncMode::Async, ReplicaState::Ready) => {
                            st.state = ReplicaState::Replicating;
                            async_targets.push(r.clone());
                        }
                        (SyncMode::Async, ReplicaState::Replicating) => {
                            // The previous transaction is still in flight: this one is missed.
                            st.state = if self.version.missed_txn_marks_invalid() {
                                ReplicaState::Invalid
                            } else {
                                ReplicaState::Recovery
                            };
                        }
                        (SyncMode::Async, _) => {}
                    }
                }
            }
            true
        };
        if !still_main {
            self.finalize_strict(&prepared, &main_uuid, &db_uuid, commit.ts, false).await;
            return Err(QueryError::client(messages::NOT_MAIN_ANYMORE));
        }

        // Phase D: finalize STRICT_SYNC (failures are not reported), ship to SYNC, hand off ASYNC.
        self.finalize_strict(&prepared, &main_uuid, &db_uuid, commit.ts, true).await;
        for r in sync_targets {
            if let Err(why) = main_side::ship(self, &r, &commit, &main_uuid, &db_uuid).await {
                sync_failures.push((r.name.clone(), why));
            }
        }
        for r in async_targets {
            let inst = self.clone();
            let (commit, main_uuid, db_uuid) = (commit.clone(), main_uuid.clone(), db_uuid.clone());
            self.spawn(async move {
                let _ = main_side::ship(&inst, &r, &commit, &main_uuid, &db_uuid).await;
            });
        }
        if sync_failures.is_empty() {
            Ok(())
        } else {
            Err(self.replication_error(messages::sync_failure(self.version, &sync_failures), explicit))
        }
    }

    async fn finalize_strict(
        self: &Arc<Self>,
        replicas: &[Arc<ReplicaClient>],
        main_uuid: &str,
        db_uuid: &str,
        ts: i64,
        commit: bool,
    ) {
        for r in replicas {
            let req =
                Request::FinalizeCommit { main_uuid: main_uuid.to_string(), db_uuid: db_uuid.to_string(), ts, commit };
            match main_side::call(self, r, &req, self.timeouts().map(|t| t.finalize)).await {
                Ok(info) if commit => r.status().ts = info.ts,
                Ok(_) => {}
                Err(_) => r.status().state = ReplicaState::Invalid,
            }
        }
    }
}

fn state_reason(s: ReplicaState) -> String {
    match s {
        ReplicaState::Diverged => reason::DIVERGED,
        _ => reason::NOT_READY,
    }
    .to_string()
}

/// The 3.10+ reason text for a failed RPC.
pub(crate) fn failure_reason(f: &RpcFailure) -> String {
    match f {
        RpcFailure::Connect(_) | RpcFailure::Refused { .. } => reason::NOT_READY,
        RpcFailure::Lost(_) => reason::RPC_ERROR,
        RpcFailure::Timeout => reason::TIMEOUT,
    }
    .to_string()
}
