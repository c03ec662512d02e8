//! Which backups to delete: those older than `retentionDays` by their manifest's start time
//! (never by object modification time), except the newest good backup, which is kept whatever
//! its age; and orphaned prefixes (no manifest) older than the backup deadline, which no
//! running upload can still own. Deletion removes the manifest first, so an interrupted
//! deletion leaves an orphan, never something that looks like a backup.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::catalog::{self, Entry};
use super::manifest::MANIFEST;
use super::store::{ObjectStore, StoreError};

/// One prefix to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The backup id.
    pub id: String,
    /// Keys in deletion order: the manifest first.
    pub keys: Vec<String>,
    /// Why, in words.
    pub reason: String,
}

/// The deletions retention wants. `running` is a backup in progress, never touched.
pub fn plan(
    entries: &[Entry],
    now: Timestamp,
    retention_days: i32,
    orphan_age: Duration,
    running: Option<&str>,
) -> Vec<Deletion> {
    let keep = catalog::newest_good(entries).map(|e| e.id.clone());
    let max_age = Duration::from_secs(u64::try_from(retention_days.max(1)).unwrap_or(1) * 86_400);
    let older_than =
        |e: &Entry, age: Duration| e.started().is_some_and(|t| now.duration_since(t).unsigned_abs() > age && t < now);
    let mut out = Vec::new();
    for entry in entries {
        if Some(entry.id.as_str()) == running || Some(&entry.id) == keep.as_ref() {
            continue;
        }
        let reason = if entry.manifest.is_some() || entry.manifest_error.is_some() {
            if !older_than(entry, max_age) {
                continue;
            }
            format!("older than spec.snapshot.s3.retentionDays ({retention_days} days)")
        } else {
            // An id that is not ours is not ours to delete.
            if entry.started().is_none() || !older_than(entry, orphan_age) {
                continue;
            }
            "no manifest: an upload that failed or was cut off".to_owned()
        };
        let mut keys: Vec<String> = entry.objects.iter().map(|o| o.key.clone()).collect();
        keys.sort_by_key(|k| !k.ends_with(&format!("/{MANIFEST}")));
        out.push(Deletion { id: entry.id.clone(), keys, reason });
    }
    out
}

/// Carry out deletions, in order; stops at the first failure (the rest waits for the next
/// pass). Returns the ids fully deleted.
pub async fn apply(store: &dyn ObjectStore, deletions: &[Deletion]) -> Result<Vec<String>, StoreError> {
    let mut done = Vec::new();
    for deletion in deletions {
        for key in &deletion.keys {
            store.delete(key).await?;
        }
        tracing::info!(backup = %deletion.id, reason = %deletion.reason, "deleted a backup");
        done.push(deletion.id.clone());
    }
    Ok(done)
}
