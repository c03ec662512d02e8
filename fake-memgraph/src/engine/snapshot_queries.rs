//! Handlers of the snapshot queries (failures are TransientErrors, raised at PULL).

use std::sync::Arc;

use super::{Instance, RoleState, Trigger};
use crate::clock::{iso8601, stamp_to_micros};
use crate::cypher::ast::SnapshotQuery;
use crate::query::messages;
use crate::query::{QueryError, QueryOutput};
use crate::replication::{ReplicaState, Role};
use crate::storage::durability::SNAPSHOT_DIR;
use crate::value::Value;

pub(super) async fn run(inst: &Arc<Instance>, q: &SnapshotQuery) -> Result<QueryOutput, QueryError> {
    match q {
        SnapshotQuery::Create => create(inst).await,
        // The other three take Memgraph's snapshot lock, so they wait for a snapshot being
        // written (SHOW SNAPSHOTS therefore lists finished files only).
        SnapshotQuery::Show => {
            let _snapshot_lock = inst.snapshot_lock.lock().await;
            Ok(show(inst))
        }
        SnapshotQuery::ShowNext => {
            let _snapshot_lock = inst.snapshot_lock.lock().await;
            Ok(show_next(inst))
        }
        SnapshotQuery::Recover { path, force } => {
            let _snapshot_lock = inst.snapshot_lock.lock().await;
            recover(inst, path, *force)
        }
    }
}

/// Memgraph's `GetReadableSize`: `123B`, `1.21KiB`, `3.00MiB`, ...
pub(crate) fn readable_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2}{}", UNITS[unit])
}

async fn create(inst: &Arc<Instance>) -> Result<QueryOutput, QueryError> {
    let v = inst.version;
    let rel = inst.write_snapshot(Trigger::Manual).await.map_err(|e| e.to_query_error(v))?;
    let path = inst.core().durability.dir().display_path(&rel);
    tracing::info!(%path, "snapshot created");
    let rows = if v.create_snapshot_returns_path() { vec![vec![Value::from(path)]] } else { Vec::new() };
    Ok(QueryOutput { rows, ..QueryOutput::default() })
}

fn next_snapshot(inst: &Instance, next: Option<i64>) -> Option<i64> {
    let interval = inst.cfg.snapshot_interval_sec;
    (interval > 0).then(|| next.unwrap_or_else(|| inst.now() + interval as i64 * 1_000_000))
}

fn show(inst: &Arc<Instance>) -> QueryOutput {
    let core = inst.core();
    let dir = core.durability.dir().clone();
    let mut rows = Vec::new();
    if inst.version.show_snapshots_has_next_row()
        && let Some(next) = next_snapshot(inst, core.next_snapshot_micros)
    {
        rows.push(vec![
            Value::from(dir.display_path(SNAPSHOT_DIR)),
            Value::Int(0),
            Value::from(iso8601(next)),
            Value::from(readable_size(0)),
        ]);
    }
    for s in core.durability.snapshots().unwrap_or_default() {
        rows.push(vec![
            Value::from(dir.display_path(&s.rel_path)),
            Value::Int(s.ts),
            Value::from(iso8601(stamp_to_micros(&s.stamp).unwrap_or(0))),
            Value::from(readable_size(s.size)),
        ]);
    }
    QueryOutput { rows, ..QueryOutput::default() }
}

fn show_next(inst: &Arc<Instance>) -> QueryOutput {
    let core = inst.core();
    let rows = next_snapshot(inst, core.next_snapshot_micros)
        .map(|next| vec![Value::from(core.durability.dir().display_path(SNAPSHOT_DIR)), Value::from(iso8601(next))])
        .into_iter()
        .collect();
    QueryOutput { rows, ..QueryOutput::default() }
}

fn recover(inst: &Arc<Instance>, path: &Value, force: bool) -> Result<QueryOutput, QueryError> {
    let now = inst.now();
    let mut core = inst.core();
    if core.role() == Role::Replica {
        return Err(QueryError::transient(messages::RECOVER_ON_REPLICA));
    }
    let missing = || QueryError::transient(messages::RECOVER_MISSING);
    let path = path.as_str().ok_or_else(missing)?;
    let dir = core.durability.dir().clone();
    let prefix = dir.display_path("");
    let rel = match path.strip_prefix(&prefix) {
        Some(rel) => rel.to_string(),
        None if !path.contains('/') => format!("{SNAPSHOT_DIR}/{path}"),
        None => return Err(missing()),
    };
    let image = match core.durability.read_snapshot(&rel) {
        Ok(Some(img)) => img,
        Ok(None) => return Err(missing()),
        Err(e) => return Err(QueryError::transient(format!("Failed to recover a snapshot. {e}"))),
    };
    if !force && !core.storage.graph.nodes.is_empty() {
        return Err(QueryError::transient(messages::RECOVER_NOT_CLEAN));
    }
    // The instance keeps its database identity; old files move to `.old`.
    let db_uuid = core.storage.db_uuid.clone();
    core.durability
        .install_snapshot(&image, now)
        .map_err(|e| QueryError::transient(format!("Failed to recover a snapshot. {e}")))?;
    core.storage.load_image(&image);
    core.storage.db_uuid = db_uuid;
    core.log.clear();
    if let RoleState::Main { replicas, .. } = &core.role {
        for r in replicas {
            let mut st = r.status();
            st.force_full = true;
            if st.state != ReplicaState::Diverged {
                st.state = ReplicaState::Recovery;
            }
        }
    }
    tracing::info!(%path, ts = image.ts, "recovered from snapshot");
    Ok(QueryOutput::default())
}

#[cfg(test)]
mod tests {
    use super::readable_size;

    #[test]
    fn sizes() {
        assert_eq!(readable_size(0), "0B");
        assert_eq!(readable_size(1023), "1023B");
        assert_eq!(readable_size(1024), "1.00KiB");
        assert_eq!(readable_size(1_258_291), "1.20MiB");
    }
}
