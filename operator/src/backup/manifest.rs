//! A backup in the store: the prefix `<prefix>/<backup-id>/` holding the snapshot file and a
//! `manifest.json` written last. The manifest is the commit marker: a prefix without one is
//! not a backup, whatever else it holds.

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Name of the commit marker inside a backup's prefix.
pub const MANIFEST: &str = "manifest.json";
/// The manifest format this operator writes.
pub const FORMAT: u32 = 1;

/// The cluster a backup was taken of.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`: which cluster owns a prefix.
    pub uid: String,
}

/// The snapshot file of a backup.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRef {
    /// File name as Memgraph wrote it (`<stamp>_timestamp_<ts>`); kept on restore, since
    /// recovery orders files by name.
    pub name: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// SHA-256 of the file, hex, computed while uploading.
    pub sha256: String,
    /// Memgraph's durable timestamp of the snapshot (from its name).
    pub durable_timestamp: i64,
    /// Snapshot format version from the header.
    pub format_version: u64,
}

/// The manifest of a finished backup.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Manifest format.
    pub format: u32,
    /// The backup id (its prefix under the cluster's prefix).
    pub backup_id: String,
    /// The cluster.
    pub cluster: ClusterRef,
    /// Memgraph version that wrote the snapshot (an older Memgraph cannot load it).
    pub memgraph_version: String,
    /// The snapshot file.
    pub snapshot: SnapshotRef,
    /// When the backup started.
    pub started_at: Timestamp,
    /// When the snapshot was uploaded (just before the manifest).
    pub finished_at: Timestamp,
}

/// A backup id for a backup started at `at`: sortable by time, unique per cluster (one backup
/// of a cluster runs at a time, and each starts at least a millisecond after the last).
pub fn backup_id(at: Timestamp) -> String {
    at.strftime("%Y%m%dT%H%M%S%3fZ").to_string()
}

/// When a backup of this id started, if it is one of ours.
pub fn id_time(id: &str) -> Option<Timestamp> {
    let (date, rest) = id.split_once('T')?;
    let rest = rest.strip_suffix('Z')?;
    if date.len() != 8 || rest.len() != 9 || !date.bytes().chain(rest.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:{}.{}Z",
        &date[..4],
        &date[4..6],
        &date[6..],
        &rest[..2],
        &rest[2..4],
        &rest[4..6],
        &rest[6..]
    );
    text.parse().ok()
}

/// The key prefix of a backup.
pub fn backup_prefix(prefix: &str, id: &str) -> String {
    format!("{}/{id}/", prefix.trim_end_matches('/'))
}

/// The key of a backup's manifest.
pub fn manifest_key(prefix: &str, id: &str) -> String {
    format!("{}{MANIFEST}", backup_prefix(prefix, id))
}

/// The key of a backup's snapshot file.
pub fn snapshot_key(prefix: &str, id: &str, snapshot: &str) -> String {
    format!("{}{snapshot}", backup_prefix(prefix, id))
}

/// The durable timestamp in a snapshot file name (`<stamp>_timestamp_<ts>`).
pub fn durable_timestamp(name: &str) -> Option<i64> {
    let (stamp, ts) = name.split_once("_timestamp_")?;
    if stamp.len() != 20 || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ts.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_read_back() {
        let a: Timestamp = "2026-12-02T05:00:00.007Z".parse().unwrap_or_default();
        let b: Timestamp = "2026-12-02T05:00:01Z".parse().unwrap_or_default();
        assert_eq!(backup_id(a), "20261202T050000007Z");
        assert!(backup_id(a) < backup_id(b));
        assert_eq!(id_time(&backup_id(a)), Some(a));
        assert_eq!(id_time("not-an-id"), None);
        assert_eq!(manifest_key("mg/snap/", "X"), "mg/snap/X/manifest.json");
    }

    #[test]
    fn snapshot_names_give_their_durable_timestamp() {
        assert_eq!(durable_timestamp("20231117101508851236_timestamp_374"), Some(374));
        assert_eq!(durable_timestamp("x_timestamp_1"), None);
        assert_eq!(durable_timestamp("20231117101508851236_current"), None);
    }
}
