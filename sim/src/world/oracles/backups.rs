//! Backups, as a person relying on them would judge them:
//! - every backup the status claims (`backups.lastSuccessful`, `lastS3BackupTime`) is in the
//!   store with a manifest whose checksum and size match the data;
//! - no backup stays recorded as running past its deadline (plus the operator's slack) while
//!   the operator runs;
//! - retention never deletes a backup unless a newer good one is kept;
//! - the newest backup taken in the run holds every write acknowledged before its snapshot was
//!   taken, and nothing that was never written (not judged after the write pod lost its
//!   volume, when a person restores the MAIN from a replica and ASYNC writes may be gone).

use std::collections::BTreeSet;
use std::time::Duration;

use fake_memgraph::Value as FakeValue;
use memgraph_operator::backup::catalog::{self, Entry};
use memgraph_operator::backup::manifest;
use memgraph_operator::backup::store::{MemStore, ObjectInfo};
use memgraph_operator::reconcile::plan::backup::DEADLINE_SLACK;
use serde::Serialize;
use serde_json::Value;

use super::super::time::EPOCH_SECONDS;
use super::super::workload::{LABEL, Ledger};
use super::{TIGHT, Violation, ms};

/// Backup figures of one cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BackupCount {
    /// Backups the status reported completed.
    pub completed: usize,
    /// Failures the status reported.
    pub failed: usize,
    /// Good backups in the store at the end.
    pub kept: usize,
    /// Backups deleted by retention (manifests deleted).
    pub deleted: usize,
    /// Writes checked in the newest backup.
    pub writes_checked: usize,
}

/// The oracle of one cluster.
#[derive(Debug, Default)]
pub struct Backups {
    claimed: BTreeSet<String>,
    failed: BTreeSet<String>,
    stuck: BTreeSet<String>,
}

fn elapsed_of(ts: &str) -> Option<Duration> {
    let t: k8s_openapi::jiff::Timestamp = ts.parse().ok()?;
    let secs = t.as_millisecond() - EPOCH_SECONDS * 1000;
    u64::try_from(secs).ok().map(Duration::from_millis)
}

fn verify(store: &MemStore, prefix: &str, id: &str) -> Result<(), String> {
    let objects = store.objects();
    let manifest = objects
        .get(&manifest::manifest_key(prefix, id))
        .ok_or_else(|| format!("backup {id} has no manifest in the store"))?;
    let m: manifest::Manifest =
        serde_json::from_slice(manifest).map_err(|e| format!("manifest of backup {id} does not parse: {e}"))?;
    let data = objects
        .get(&manifest::snapshot_key(prefix, id, &m.snapshot.name))
        .ok_or_else(|| format!("backup {id} has no snapshot object"))?;
    let digest = memgraph_operator::backup::upload::hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    if data.len() as u64 != m.snapshot.size_bytes || digest != m.snapshot.sha256 {
        return Err(format!("backup {id}: the snapshot object does not match its manifest's size and SHA-256"));
    }
    Ok(())
}

impl Backups {
    /// Judge the status now. `operator_up_since`: when the operator last started, if running.
    pub fn check(
        &mut self,
        now: Duration,
        cluster: &str,
        status: Option<&Value>,
        store: &MemStore,
        prefix: &str,
        operator_up_since: Option<Duration>,
    ) -> Vec<Violation> {
        let mut out = Vec::new();
        let Some(b) = status.map(|s| &s["backups"]) else { return out };
        let violation = |what: String| Violation { at_ms: ms(now), cluster: cluster.to_owned(), what };
        if let Some(id) = b["lastSuccessful"]["id"].as_str()
            && self.claimed.insert(id.to_owned())
            && let Err(e) = verify(store, prefix, id)
        {
            out.push(violation(format!("the status claims backup {id} completed, but {e}")));
        }
        if let Some(id) = b["lastFailed"]["id"].as_str() {
            self.failed.insert(id.to_owned());
        }
        if status.is_some_and(|s| !s["lastS3BackupTime"].is_null()) && b["lastSuccessful"].is_null() {
            out.push(violation("lastS3BackupTime is set with no completed backup in status.backups".to_owned()));
        }
        let running = &b["running"];
        if let (Some(id), Some(deadline)) = (running["id"].as_str(), running["deadline"].as_str().and_then(elapsed_of))
        {
            // The operator gives up a backup its slack after the deadline; it must say so within
            // the tight bound of that, or of its own start if it was down then (nobody else
            // writes the status).
            let give_up = deadline + DEADLINE_SLACK;
            let judged_from = operator_up_since.map(|since| since.max(give_up));
            if judged_from.is_some_and(|from| now > from + TIGHT) && self.stuck.insert(id.to_owned()) {
                out.push(violation(format!(
                    "backup {id} is still recorded as running {} s after its deadline",
                    (now - deadline).as_secs()
                )));
            }
        }
        out
    }

    /// Judge the store at the end of the run.
    pub fn judge(
        &self,
        now: Duration,
        cluster: &str,
        store: &MemStore,
        prefix: &str,
        ledger: &Ledger,
        volume_lost: bool,
    ) -> (BackupCount, Vec<Violation>) {
        let mut out = Vec::new();
        let violation = |what: String| Violation { at_ms: ms(now), cluster: cluster.to_owned(), what };
        let entries = entries(store, prefix);
        let good: Vec<&Entry> = entries.iter().filter(|e| e.is_good()).collect();
        // Replay the store's history: when a manifest was deleted, a newer one must have been
        // there (manifests are written only after their data is complete).
        let manifest_suffix = format!("/{}", manifest::MANIFEST);
        let root = format!("{prefix}/");
        let id_of = |key: &str| -> Option<String> {
            key.strip_prefix(&root)
                .filter(|_| key.ends_with(&manifest_suffix))
                .and_then(|r| r.split('/').next())
                .map(str::to_owned)
        };
        let mut present: BTreeSet<String> = BTreeSet::new();
        let mut deleted = Vec::new();
        for (written, key) in store.history() {
            let Some(id) = id_of(&key) else { continue };
            if written {
                present.insert(id);
                continue;
            }
            present.remove(&id);
            if present.iter().next_back().is_none_or(|newest| *newest < id) {
                out.push(violation(format!("retention deleted backup {id} while no newer backup was kept")));
            }
            deleted.push(id);
        }
        if !self.claimed.is_empty() && good.is_empty() {
            out.push(violation("backups completed during the run, but none is left in the store".to_owned()));
        }
        let mut count = BackupCount {
            completed: self.claimed.len(),
            failed: self.failed.len(),
            kept: good.len(),
            deleted: deleted.len(),
            writes_checked: 0,
        };
        // The newest backup taken in this run (pre-seeded ones are older than the epoch).
        let epoch_id = manifest::backup_id(
            k8s_openapi::jiff::Timestamp::from_second(EPOCH_SECONDS)
                .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        );
        if let Some(entry) = good.iter().filter(|e| e.id >= epoch_id).max_by_key(|e| e.id.clone())
            && !volume_lost
        {
            match holds_acked(store, prefix, entry, ledger) {
                Ok(n) => count.writes_checked = n,
                Err(e) => out.push(violation(e)),
            }
        }
        (count, out)
    }
}

/// What the store holds under `prefix`, read directly (bypassing faults).
pub fn entries(store: &MemStore, prefix: &str) -> Vec<Entry> {
    let objects = store.objects();
    let listed = objects
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{prefix}/")))
        .map(|(k, v)| ObjectInfo { key: k.clone(), size: v.len() as u64 })
        .collect();
    catalog::build(prefix, listed, &objects)
}

/// Check the newest backup's data against the ledger; the number of writes checked.
fn holds_acked(store: &MemStore, prefix: &str, entry: &Entry, ledger: &Ledger) -> Result<usize, String> {
    let Some(m) = &entry.manifest else { return Ok(0) };
    let objects = store.objects();
    let Some(data) = objects.get(&manifest::snapshot_key(prefix, &entry.id, &m.snapshot.name)) else { return Ok(0) };
    let image = fake_memgraph::storage::durability::decode_snapshot(data)
        .map_err(|e| format!("backup {}: its snapshot does not load: {e}", entry.id))?;
    let ids: BTreeSet<i64> = image
        .nodes
        .iter()
        .filter(|(_, n)| n.labels.iter().any(|l| l == LABEL))
        .filter_map(|(_, n)| match n.properties.get("id") {
            Some(FakeValue::Int(id)) => Some(*id),
            _ => None,
        })
        .collect();
    let taken_ms = snapshot_taken_ms(&m.snapshot.name)
        .ok_or_else(|| format!("backup {}: snapshot name {} has no time", entry.id, m.snapshot.name))?;
    holds(&format!("backup {}", entry.id), &ids, ledger, taken_ms)
}

/// When a snapshot file was taken, in simulated ms (from its name).
pub fn snapshot_taken_ms(name: &str) -> Option<u64> {
    let stamp = name.split('_').next()?;
    fake_memgraph::clock::stamp_to_micros(stamp)
        .map(|us| us / 1000 - EPOCH_SECONDS * 1000)
        .and_then(|v| u64::try_from(v).ok())
}

/// Whether `ids` (what a backup or a restored MAIN holds) has every write acknowledged before
/// `taken_ms` and nothing never sent; the number of writes checked.
pub fn holds(what: &str, ids: &BTreeSet<i64>, ledger: &Ledger, taken_ms: u64) -> Result<usize, String> {
    let sent: BTreeSet<i64> = ledger.sent.iter().map(|(id, _)| *id).collect();
    if let Some(stranger) = ids.iter().find(|id| !sent.contains(id)) {
        return Err(format!("{what} holds write {stranger}, which was never sent"));
    }
    let before: Vec<i64> = ledger.acked.iter().filter(|a| a.at_ms < taken_ms).map(|a| a.id).collect();
    let missing: Vec<&i64> = before.iter().filter(|id| !ids.contains(id)).collect();
    if let Some(first) = missing.first() {
        return Err(format!(
            "{what} lacks {} of the {} writes acknowledged before its snapshot was taken (first: {first})",
            missing.len(),
            before.len()
        ));
    }
    Ok(before.len())
}
