//! Handlers of the replication queries (run at PULL time, errors as ClientError).

use std::sync::Arc;

use super::{Instance, ReplicaRole, RoleState};
use crate::cypher::ast::ReplicationQuery;
use crate::query::messages;
use crate::query::{Notification, QueryError, QueryOutput};
use crate::replication::{main_side, replica_side};
use crate::value::Value;

pub(super) async fn run(inst: &Arc<Instance>, q: &ReplicationQuery) -> Result<QueryOutput, QueryError> {
    match q {
        ReplicationQuery::ShowRole => {
            let role = inst.core().role();
            Ok(QueryOutput { rows: vec![vec![Value::from(role.as_str())]], ..QueryOutput::default() })
        }
        ReplicationQuery::SetRoleMain => set_main(inst),
        ReplicationQuery::SetRoleReplica { port } => set_replica(inst, port.as_ref()).await,
        ReplicationQuery::Register { name, mode, address } => main_side::register(inst, name, *mode, address).await,
        ReplicationQuery::Drop { name } => drop_replica(inst, name),
        ReplicationQuery::ShowReplicas => main_side::show_replicas(inst).await,
    }
}

fn set_main(inst: &Arc<Instance>) -> Result<QueryOutput, QueryError> {
    let now = inst.now();
    let mut core = inst.core();
    let RoleState::Replica(r) = &core.role else {
        return Err(QueryError::client(messages::SET_MAIN_FAILED));
    };
    r.server.abort();
    // Promotion: a new epoch, the old one (and its last timestamp) kept in the history.
    let epoch = inst.ids.uuid();
    core.storage.switch_epoch(epoch);
    let storage = core.storage.clone();
    if let Err(e) = core.durability.log_epoch(&storage, now) {
        tracing::error!(error = %e, "couldn't persist the new epoch");
    }
    core.role = RoleState::Main { main_uuid: inst.ids.uuid(), replicas: Vec::new() };
    inst.persist_role(&core);
    tracing::info!(epoch = %core.storage.epoch, "promoted to MAIN");
    Ok(QueryOutput {
        notifications: vec![Notification::info("SetReplica", "Replica role set to MAIN.")],
        ..QueryOutput::default()
    })
}

async fn set_replica(inst: &Arc<Instance>, port: Option<&Value>) -> Result<QueryOutput, QueryError> {
    let port = match port {
        Some(Value::Int(p)) => u16::try_from(*p).map_err(|_| QueryError::client(messages::PORT_INVALID))?,
        _ => return Err(QueryError::client(messages::PORT_INVALID)),
    };
    if inst.core().role() == crate::replication::Role::Replica {
        return Err(QueryError::client(messages::SET_REPLICA_FAILED));
    }
    // A commit in flight holds the replication state: the demotion fails rather than cut it
    // between its local commit and its replicas' (Memgraph answers a busy replication-state lock
    // with the same error; inferred that a commit holds it). Held to the end, so no commit can
    // start on a MAIN half demoted.
    let Ok(_serial) = inst.commit_lock.try_lock() else {
        return Err(QueryError::client(messages::SET_REPLICA_FAILED));
    };
    let listener = match inst.net.bind(port).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(port, error = %e, "couldn't bind the replication port");
            return Err(QueryError::client(messages::SET_REPLICA_FAILED));
        }
    };
    let bound_port = listener.local_port();
    let server = inst.spawn(replica_side::serve(inst.clone(), listener));
    {
        let mut core = inst.core();
        let RoleState::Main { replicas, .. } = &core.role else {
            server.abort();
            return Err(QueryError::client(messages::SET_REPLICA_FAILED));
        };
        // Demotion forgets (and un-persists) the replica list.
        for r in replicas {
            r.stop();
        }
        core.role =
            RoleState::Replica(ReplicaRole { port, bound_port, main_uuid: inst.ids.uuid(), server, staged: None });
        inst.persist_role(&core);
    }
    tracing::info!(port, bound_port, "demoted to REPLICA");
    let mut notifications = Vec::new();
    if port == 7687 {
        notifications.push(Notification {
            severity: "WARNING",
            code: "ReplicaPortWarning",
            title: messages::REPLICA_PORT_WARNING.into(),
        });
    }
    notifications.push(Notification::info("SetReplica", "Replica role set to REPLICA."));
    Ok(QueryOutput { notifications, ..QueryOutput::default() })
}

fn drop_replica(inst: &Arc<Instance>, name: &str) -> Result<QueryOutput, QueryError> {
    let mut core = inst.core();
    let RoleState::Main { replicas, .. } = &mut core.role else {
        return Err(QueryError::client(messages::drop_on_replica(inst.version)));
    };
    let Some(i) = replicas.iter().position(|r| r.name == name) else {
        return Err(QueryError::client(messages::drop_unknown(inst.version, name)));
    };
    let r = replicas.remove(i);
    r.stop();
    inst.persist_role(&core);
    Ok(QueryOutput {
        notifications: vec![Notification::info("DropReplica", format!("Replica {name} is dropped."))],
        ..QueryOutput::default()
    })
}
