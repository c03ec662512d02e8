//! Snapshots and write-ahead log in Memgraph's directory layout.
//!
//! - `snapshots/<YYYYmmddHHMMSSffffff>_timestamp_<ts>` — Memgraph's header (`MGsn`, format
//!   version, section offsets) followed by a JSON [`SnapshotImage`]. While a slow
//!   snapshot is being written the file already has its final name but holds only
//!   [`PARTIAL_SNAPSHOT`], which nothing accepts (as in Memgraph, where the header's offsets are
//!   still zero); a crash leaves it like that, and listing and recovery skip it.
//! - `wal/<stamp>_current` while written, `wal/<stamp>_from_<a>_to_<b>` once finalized — JSON lines of
//!   [`WalRecord`]s. Records are buffered and appended every `flush_every_n_tx` transactions, so a
//!   crash loses the unflushed tail while a graceful stop flushes it.
//! - `databases/memgraph/uuid` — the default database's UUID, which survives data wipes by
//!   `--data-recovery-on-startup=false` (it is the lineage marker replicas are checked against).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Commit, SnapshotImage, Storage};
use crate::clock::{IdSource, file_stamp};
use crate::datadir::DataDir;

/// Snapshot directory.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// WAL directory.
pub const WAL_DIR: &str = "wal";
/// Where the database UUID is kept.
pub const DB_UUID_FILE: &str = "databases/memgraph/uuid";
/// Snapshot format version the fake writes. Memgraph's is 21 in 2.21–2.22, 22 in 3.0, 27 in
/// 3.4 and higher later; nothing in the fake or the operator depends on its value beyond it
/// being one Memgraph reads (14 or more).
pub const SNAPSHOT_FORMAT: u64 = 27;
/// Section offsets in a snapshot header, each a type marker and a little-endian u64.
const HEADER_OFFSETS: usize = 8;
/// Memgraph's `Marker::TYPE_INT`, written before each encoded unsigned integer.
const INT_MARKER: u8 = 0x12;
/// Length of the header: magic, version, offsets. The fake's body (JSON) follows it.
pub const SNAPSHOT_HEADER_LEN: usize = 12 + HEADER_OFFSETS * 9;
/// Contents of a snapshot file that is still being written: Memgraph's magic and version with
/// the section offsets still zero (they are written last).
pub const PARTIAL_SNAPSHOT: &[u8] = &partial_header();

const fn partial_header() -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut h = [0u8; SNAPSHOT_HEADER_LEN];
    h[0] = b'M';
    h[1] = b'G';
    h[2] = b's';
    h[3] = b'n';
    let v = SNAPSHOT_FORMAT.to_le_bytes();
    let mut i = 0;
    while i < 8 {
        h[4 + i] = v[i];
        i += 1;
    }
    let mut k = 0;
    while k < HEADER_OFFSETS {
        h[12 + k * 9] = INT_MARKER;
        k += 1;
    }
    h
}

/// A finished snapshot file: the header with its offsets set, then the image.
pub fn encode_snapshot(img: &SnapshotImage) -> std::io::Result<Vec<u8>> {
    let body = serde_json::to_vec(img).map_err(std::io::Error::other)?;
    let mut out = PARTIAL_SNAPSHOT.to_vec();
    // Every section points at the body (the fake has one section); the edge offsets stay 0 as
    // in Memgraph without properties on edges.
    for k in [1usize, 2, 3, 4, 5, 7] {
        out[12 + k * 9 + 1..12 + k * 9 + 9].copy_from_slice(&(SNAPSHOT_HEADER_LEN as u64).to_le_bytes());
    }
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decode a snapshot file; `Err` says why it is not one.
pub fn decode_snapshot(data: &[u8]) -> Result<SnapshotImage, String> {
    if data.len() < SNAPSHOT_HEADER_LEN || &data[..4] != b"MGsn" {
        return Err("not a snapshot file (no MGsn header)".to_owned());
    }
    if data[12..SNAPSHOT_HEADER_LEN].chunks(9).all(|f| f[1..].iter().all(|b| *b == 0)) {
        return Err("incomplete snapshot (section offsets are zero)".to_owned());
    }
    serde_json::from_slice(&data[SNAPSHOT_HEADER_LEN..]).map_err(|e| e.to_string())
}

/// What "nothing has been written since the last snapshot" compares (Memgraph's `SnapshotDigest`):
/// a promotion or a new database identity counts as a change even at the same timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SnapshotDigest {
    epoch: String,
    history: Vec<(String, i64)>,
    db_uuid: String,
    ts: i64,
}

impl SnapshotDigest {
    fn of(s: &Storage) -> Self {
        SnapshotDigest { epoch: s.epoch.clone(), history: s.history.clone(), db_uuid: s.db_uuid.clone(), ts: s.ts }
    }
}

/// A snapshot being written: its file exists under the final name but is not complete yet.
#[derive(Debug)]
pub struct PendingSnapshot {
    rel: String,
    data: Vec<u8>,
    ts: i64,
    digest: SnapshotDigest,
}

impl PendingSnapshot {
    /// Path of the file relative to the data directory.
    pub fn rel_path(&self) -> &str {
        &self.rel
    }
}

/// Why a slow snapshot could not be finished.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotWriteError {
    /// Another operation replaced the durability files (or the instance stopped) while it was written.
    #[error("the snapshot was aborted")]
    Aborted,
    /// The data directory failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Durability settings (from [`crate::config::Config`]).
#[derive(Debug, Clone)]
pub struct DurabilityConfig {
    /// `--storage-wal-enabled`.
    pub wal_enabled: bool,
    /// `--storage-wal-file-flush-every-n-tx`.
    pub flush_every_n_tx: u64,
    /// `--storage-wal-file-size-kib` in bytes.
    pub wal_file_size: u64,
    /// `--storage-snapshot-retention-count`.
    pub retention: usize,
}

/// One line of a WAL file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WalRecord {
    /// A committed transaction.
    Commit(Commit),
    /// A new epoch started at durable timestamp `ts` (promotion to MAIN).
    Epoch {
        /// Timestamp when the epoch started.
        ts: i64,
        /// The new epoch.
        epoch: String,
        /// History including the previous epoch.
        history: Vec<(String, i64)>,
    },
    /// First line of every WAL file: the database UUID the file belongs to (Memgraph's WAL
    /// header carries it). Recovery skips files of another UUID than the newest snapshot's.
    Database {
        /// The storage UUID when the file was started.
        db_uuid: String,
    },
}

impl WalRecord {
    fn order_key(&self) -> (i64, u8) {
        match self {
            WalRecord::Commit(c) => (c.ts, 0),
            WalRecord::Epoch { ts, .. } => (*ts, 1),
            WalRecord::Database { .. } => (i64::MIN, 2),
        }
    }
}

/// A snapshot file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// File name.
    pub name: String,
    /// Path relative to the data directory.
    pub rel_path: String,
    /// Creation stamp from the name.
    pub stamp: String,
    /// Durable timestamp from the name.
    pub ts: i64,
    /// Size in bytes.
    pub size: u64,
}

/// Parses `<stamp>_timestamp_<ts>`.
pub fn parse_snapshot_name(name: &str) -> Option<(String, i64)> {
    let (stamp, ts) = name.split_once("_timestamp_")?;
    (stamp.len() == 20 && stamp.bytes().all(|b| b.is_ascii_digit())).then_some(())?;
    Some((stamp.to_string(), ts.parse().ok()?))
}

/// Parses a WAL name into `(stamp, Some((from, to)))` for finalized files, `(stamp, None)` for current.
pub fn parse_wal_name(name: &str) -> Option<(String, Option<(i64, i64)>)> {
    let (stamp, rest) = name.split_at_checked(20)?;
    if !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if rest == "_current" {
        return Some((stamp.to_string(), None));
    }
    let (from, to) = rest.strip_prefix("_from_")?.split_once("_to_")?;
    Some((stamp.to_string(), Some((from.parse().ok()?, to.parse().ok()?))))
}

/// Why recovery failed (fatal at startup, as in Memgraph without `--storage-allow-recovery-failure`).
#[derive(Debug, thiserror::Error)]
pub enum DurabilityError {
    /// The data directory failed.
    #[error("data directory error: {0}")]
    Io(#[from] std::io::Error),
    /// A snapshot file could not be decoded.
    #[error("couldn't recover from snapshot {name}: {reason}")]
    BadSnapshot {
        /// File name.
        name: String,
        /// Decoder message.
        reason: String,
    },
}

#[derive(Debug)]
struct CurrentWal {
    stamp: String,
    from_ts: i64,
    to_ts: i64,
    pending: Vec<u8>,
    pending_tx: u64,
    written: u64,
    has_records: bool,
}

impl CurrentWal {
    fn path(&self) -> String {
        format!("{WAL_DIR}/{}_current", self.stamp)
    }
}

/// What recovery produced.
#[derive(Debug)]
pub struct Recovered {
    /// The database.
    pub storage: Storage,
    /// Commits replayed from the WAL, oldest first (MAIN serves catch-up from these).
    pub log: Vec<Commit>,
    /// Whether any durable data was found.
    pub found_data: bool,
}

/// Durability state of one instance.
pub struct Durability {
    dir: Arc<dyn DataDir>,
    cfg: DurabilityConfig,
    current: Option<CurrentWal>,
    last_snapshot_ts: Option<i64>,
    /// What the last snapshot written by this process covered; `None` after start, like Memgraph,
    /// so the first snapshot after a restart is never "nothing new".
    last_digest: Option<SnapshotDigest>,
    /// The partial file of the snapshot being written.
    in_progress: Option<String>,
    dead: bool,
    /// The database UUID new WAL files are tagged with.
    db_uuid: String,
}

impl Durability {
    /// Durability over `dir`.
    pub fn new(dir: Arc<dyn DataDir>, cfg: DurabilityConfig) -> Self {
        Durability {
            dir,
            cfg,
            current: None,
            last_snapshot_ts: None,
            last_digest: None,
            in_progress: None,
            dead: false,
            db_uuid: String::new(),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Arc<dyn DataDir> {
        &self.dir
    }

    /// Timestamp of the newest snapshot written or recovered.
    pub fn last_snapshot_ts(&self) -> Option<i64> {
        self.last_snapshot_ts
    }

    /// The partial file of the snapshot being written, if one is.
    pub fn snapshot_in_progress(&self) -> Option<&str> {
        self.in_progress.as_deref()
    }

    /// Crash: forget the unflushed tail and never write again. A snapshot being written stays
    /// behind as a partial file.
    pub fn kill(&mut self) {
        self.current = None;
        self.in_progress = None;
        self.dead = true;
    }

    /// Loads snapshot + WAL (`recover`), or moves old files to `.backup/` and starts empty.
    pub fn recover(&mut self, recover: bool, ids: &IdSource) -> Result<Recovered, DurabilityError> {
        let db_uuid = match self.dir.read(DB_UUID_FILE)? {
            Some(b) => String::from_utf8_lossy(&b).trim().to_string(),
            None => String::new(),
        };
        let mut storage = Storage::fresh(ids.uuid(), db_uuid);
        let mut log = Vec::new();
        let mut found_data = false;
        if recover {
            let mut from_snapshot = false;
            if let Some(best) = self.snapshots()?.into_iter().next() {
                let img = self.read_snapshot(&best.rel_path)?.ok_or_else(|| DurabilityError::BadSnapshot {
                    name: best.name.clone(),
                    reason: "file vanished".into(),
                })?;
                storage.load_image(&img);
                self.last_snapshot_ts = Some(img.ts);
                found_data = true;
                from_snapshot = true;
            }
            // Memgraph's `RecoverData`: the newest snapshot sets the storage UUID (without one, the
            // newest WAL file does) and WAL files of another UUID are skipped.
            let mut files: Vec<(String, Option<String>, Vec<WalRecord>)> = Vec::new();
            let mut names: Vec<String> =
                self.dir.list(WAL_DIR)?.into_iter().filter(|n| parse_wal_name(n).is_some()).collect();
            names.sort();
            for name in names {
                let path = format!("{WAL_DIR}/{name}");
                let data = self.dir.read(&path)?.unwrap_or_default();
                let mut tag = None;
                let mut file_records = Vec::new();
                for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    match serde_json::from_slice::<WalRecord>(line) {
                        Ok(WalRecord::Database { db_uuid }) => tag = Some(db_uuid),
                        Ok(r) => file_records.push(r),
                        Err(e) => {
                            // A torn last write: the rest of this file is unusable.
                            tracing::warn!(file = %name, error = %e, "ignoring the corrupt tail of a WAL file");
                            break;
                        }
                    }
                }
                files.push((name, tag, file_records));
            }
            if !from_snapshot && let Some(last) = files.iter().rev().find_map(|(_, tag, _)| tag.clone()) {
                storage.db_uuid = last;
            }
            let mut records = Vec::new();
            for (name, tag, file_records) in files {
                if tag.as_ref().is_some_and(|t| *t != storage.db_uuid) {
                    tracing::warn!(file = %name, "the WAL file isn't related to the storage UUID; skipping it");
                    continue;
                }
                records.extend(file_records);
                found_data = true;
            }
            records.sort_by_key(WalRecord::order_key);
            for r in records {
                match r {
                    WalRecord::Commit(c) if c.ts > storage.ts && c.prev_ts == storage.ts => {
                        storage.apply_commit(&c);
                        log.push(c);
                    }
                    WalRecord::Commit(c) if c.ts > storage.ts => {
                        tracing::warn!(at = storage.ts, next = c.prev_ts, "gap in the WAL; recovery stops here");
                        break;
                    }
                    WalRecord::Epoch { ts, epoch, history } if ts >= storage.ts && epoch != storage.epoch => {
                        storage.epoch = epoch;
                        storage.history = history;
                    }
                    _ => {}
                }
            }
            self.finalize_leftovers()?;
        } else {
            for d in [SNAPSHOT_DIR, WAL_DIR] {
                for name in self.dir.list(d)? {
                    self.dir.rename(&format!("{d}/{name}"), &format!(".backup/{d}/{name}"))?;
                }
            }
        }
        if storage.db_uuid.is_empty() {
            storage.db_uuid = ids.uuid();
        }
        self.store_db_uuid(&storage.db_uuid)?;
        Ok(Recovered { storage, log, found_data })
    }

    /// Persists the database UUID (after a replica adopts its MAIN's).
    pub fn store_db_uuid(&mut self, uuid: &str) -> std::io::Result<()> {
        if self.dead {
            return Ok(());
        }
        if self.db_uuid != uuid {
            // Later records belong to the new UUID: they go to a new file tagged with it.
            self.finalize_wal()?;
            self.db_uuid = uuid.to_owned();
        }
        self.dir.write(DB_UUID_FILE, uuid.as_bytes())
    }

    /// Renames `_current` files left by a crash to their finalized names.
    fn finalize_leftovers(&mut self) -> std::io::Result<()> {
        for name in self.dir.list(WAL_DIR)? {
            let Some((stamp, None)) = parse_wal_name(&name) else { continue };
            let path = format!("{WAL_DIR}/{name}");
            let data = self.dir.read(&path)?.unwrap_or_default();
            let commits: Vec<i64> = data
                .split(|b| *b == b'\n')
                .filter_map(|l| match serde_json::from_slice::<WalRecord>(l) {
                    Ok(WalRecord::Commit(c)) => Some(c.ts),
                    _ => None,
                })
                .collect();
            match (commits.iter().min(), commits.iter().max()) {
                (Some(from), Some(to)) => self.dir.rename(&path, &format!("{WAL_DIR}/{stamp}_from_{from}_to_{to}"))?,
                _ if data.is_empty() => self.dir.remove(&path)?,
                // Only epoch records: keep them under a finalized name covering no commits.
                _ => self.dir.rename(&path, &format!("{WAL_DIR}/{stamp}_from_0_to_0"))?,
            }
        }
        Ok(())
    }

    fn append_record(&mut self, r: &WalRecord, ts: i64, now_micros: i64, force_flush: bool) -> std::io::Result<()> {
        if self.dead || !self.cfg.wal_enabled {
            return Ok(());
        }
        let db_uuid = self.db_uuid.clone();
        let cur = self.current.get_or_insert_with(|| {
            let mut pending = Vec::new();
            if !db_uuid.is_empty()
                && let Ok(mut header) = serde_json::to_vec(&WalRecord::Database { db_uuid })
            {
                header.push(b'\n');
                pending = header;
            }
            CurrentWal {
                stamp: file_stamp(now_micros),
                from_ts: ts,
                to_ts: ts,
                pending,
                pending_tx: 0,
                written: 0,
                has_records: false,
            }
        });
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        cur.pending.extend_from_slice(&line);
        cur.has_records = true;
        if matches!(r, WalRecord::Commit(_)) {
            cur.pending_tx += 1;
            cur.to_ts = ts;
        }
        if force_flush || cur.pending_tx >= self.cfg.flush_every_n_tx {
            self.flush()?;
        }
        let too_big = self.current.as_ref().is_some_and(|c| c.written >= self.cfg.wal_file_size);
        if too_big {
            self.finalize_wal()?;
        }
        Ok(())
    }

    /// Records a commit (buffered until the flush threshold).
    pub fn log_commit(&mut self, c: &Commit, now_micros: i64) -> std::io::Result<()> {
        self.append_record(&WalRecord::Commit(c.clone()), c.ts, now_micros, false)
    }

    /// Records a new epoch and flushes immediately.
    pub fn log_epoch(&mut self, s: &Storage, now_micros: i64) -> std::io::Result<()> {
        let r = WalRecord::Epoch { ts: s.ts, epoch: s.epoch.clone(), history: s.history.clone() };
        self.append_record(&r, s.ts, now_micros, true)
    }

    /// Appends buffered records to the current WAL file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.dead {
            return Ok(());
        }
        let Some(cur) = self.current.as_mut() else { return Ok(()) };
        if cur.pending.is_empty() {
            return Ok(());
        }
        let path = cur.path();
        self.dir.append(&path, &cur.pending)?;
        cur.written += cur.pending.len() as u64;
        cur.pending.clear();
        cur.pending_tx = 0;
        Ok(())
    }

    /// Flushes and closes the current WAL file under its finalized name.
    pub fn finalize_wal(&mut self) -> std::io::Result<()> {
        self.flush()?;
        let Some(cur) = self.current.take() else { return Ok(()) };
        if !cur.has_records || self.dead {
            return Ok(());
        }
        self.dir.rename(&cur.path(), &format!("{WAL_DIR}/{}_from_{}_to_{}", cur.stamp, cur.from_ts, cur.to_ts))
    }

    /// Whether anything changed since the last snapshot this process wrote (always true before
    /// the first one).
    pub fn changed_since_snapshot(&self, s: &Storage) -> bool {
        self.last_digest.as_ref() != Some(&SnapshotDigest::of(s))
    }

    fn prepare_snapshot(&self, s: &Storage, now_micros: i64) -> std::io::Result<PendingSnapshot> {
        if self.dead {
            return Err(std::io::Error::other("instance is shut down"));
        }
        let img = s.image(now_micros);
        let rel = format!("{SNAPSHOT_DIR}/{}_timestamp_{}", file_stamp(now_micros), s.ts);
        let data = encode_snapshot(&img)?;
        Ok(PendingSnapshot { rel, data, ts: s.ts, digest: SnapshotDigest::of(s) })
    }

    fn complete_snapshot(&mut self, p: PendingSnapshot) -> std::io::Result<String> {
        self.dir.write(&p.rel, &p.data)?;
        self.last_snapshot_ts = Some(p.ts);
        self.last_digest = Some(p.digest);
        self.finalize_wal()?;
        self.apply_retention()?;
        Ok(p.rel)
    }

    /// Writes a snapshot of `s` at once, finalizes the WAL and applies retention. Returns the
    /// relative path.
    pub fn create_snapshot(&mut self, s: &Storage, now_micros: i64) -> std::io::Result<String> {
        let p = self.prepare_snapshot(s, now_micros)?;
        self.complete_snapshot(p)
    }

    /// Starts a slow snapshot of `s` as it is now: its file appears under the final name holding
    /// only [`PARTIAL_SNAPSHOT`] until [`Durability::finish_snapshot`].
    pub fn begin_snapshot(&mut self, s: &Storage, now_micros: i64) -> std::io::Result<PendingSnapshot> {
        let p = self.prepare_snapshot(s, now_micros)?;
        self.dir.write(&p.rel, PARTIAL_SNAPSHOT)?;
        self.in_progress = Some(p.rel.clone());
        Ok(p)
    }

    /// Completes a snapshot from [`Durability::begin_snapshot`], unless it was aborted meanwhile.
    pub fn finish_snapshot(&mut self, p: PendingSnapshot) -> Result<String, SnapshotWriteError> {
        if self.dead || self.in_progress.as_deref() != Some(p.rel.as_str()) {
            return Err(SnapshotWriteError::Aborted);
        }
        self.in_progress = None;
        Ok(self.complete_snapshot(p)?)
    }

    /// Aborts the snapshot being written, deleting its partial file (Memgraph deletes an aborted
    /// snapshot's file).
    pub fn abort_snapshot(&mut self) -> std::io::Result<()> {
        match self.in_progress.take() {
            Some(rel) if !self.dead => self.dir.remove(&rel),
            _ => Ok(()),
        }
    }

    fn apply_retention(&mut self) -> std::io::Result<()> {
        let mut snaps = self.snapshots()?;
        // Newest first: drop the tail beyond the retention count.
        while snaps.len() > self.cfg.retention {
            if let Some(old) = snaps.pop() {
                self.dir.remove(&old.rel_path)?;
            }
        }
        let Some(oldest) = snaps.last() else { return Ok(()) };
        for name in self.dir.list(WAL_DIR)? {
            if let Some((_, Some((_, to)))) = parse_wal_name(&name)
                && to <= oldest.ts
            {
                self.dir.remove(&format!("{WAL_DIR}/{name}"))?;
            }
        }
        Ok(())
    }

    /// Finished snapshot files, newest first (by durable timestamp, then creation stamp). Partial
    /// files (being written, or left by a crash) are skipped, as Memgraph skips files whose header
    /// does not parse.
    pub fn snapshots(&self) -> std::io::Result<Vec<SnapshotFile>> {
        let mut out = Vec::new();
        for name in self.dir.list(SNAPSHOT_DIR)? {
            let Some((stamp, ts)) = parse_snapshot_name(&name) else { continue };
            let rel_path = format!("{SNAPSHOT_DIR}/{name}");
            let size = self.dir.size(&rel_path)?.unwrap_or(0);
            // Only a file of exactly the marker's size can be partial: avoids reading every snapshot.
            if size == PARTIAL_SNAPSHOT.len() as u64 && self.dir.read(&rel_path)?.is_some_and(|d| d == PARTIAL_SNAPSHOT)
            {
                tracing::debug!(file = %name, "skipping an incomplete snapshot file");
                continue;
            }
            out.push(SnapshotFile { name, rel_path, stamp, ts, size });
        }
        out.sort_by(|a, b| (b.ts, &b.stamp).cmp(&(a.ts, &a.stamp)));
        Ok(out)
    }

    /// Reads and decodes a snapshot file.
    pub fn read_snapshot(&self, rel: &str) -> Result<Option<SnapshotImage>, DurabilityError> {
        let Some(data) = self.dir.read(rel)? else { return Ok(None) };
        decode_snapshot(&data)
            .map(Some)
            .map_err(|reason| DurabilityError::BadSnapshot { name: rel.to_string(), reason })
    }

    /// Moves every snapshot and WAL file to `snapshots/.old/` and `wal/.old/` (before a forced
    /// recovery replaces the storage).
    pub fn move_to_old(&mut self) -> std::io::Result<()> {
        if self.dead {
            return Ok(());
        }
        // Replacing the storage aborts a snapshot being written (Memgraph's `TakeSnapshotLock`).
        self.abort_snapshot()?;
        self.flush()?;
        self.current = None;
        for d in [SNAPSHOT_DIR, WAL_DIR] {
            for name in self.dir.list(d)? {
                self.dir.rename(&format!("{d}/{name}"), &format!("{d}/.old/{name}"))?;
            }
        }
        self.last_snapshot_ts = None;
        self.last_digest = None;
        Ok(())
    }

    /// Replaces all durability files with one snapshot of `img` (full resync from MAIN, or
    /// `RECOVER SNAPSHOT`). Returns the relative path written.
    pub fn install_snapshot(&mut self, img: &SnapshotImage, now_micros: i64) -> std::io::Result<String> {
        self.move_to_old()?;
        if self.dead {
            return Err(std::io::Error::other("instance is shut down"));
        }
        let rel = format!("{SNAPSHOT_DIR}/{}_timestamp_{}", file_stamp(now_micros), img.ts);
        let data = encode_snapshot(img)?;
        self.dir.write(&rel, &data)?;
        self.last_snapshot_ts = Some(img.ts);
        Ok(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datadir::MemDataDir;
    use crate::storage::Op;
    use std::collections::BTreeMap;

    fn cfg(flush: u64) -> DurabilityConfig {
        DurabilityConfig { wal_enabled: true, flush_every_n_tx: flush, wal_file_size: 1 << 20, retention: 2 }
    }

    fn commit(s: &mut Storage, id: i64) -> Commit {
        let c = Commit {
            prev_ts: s.ts,
            ts: s.ts + 2,
            epoch: s.epoch.clone(),
            ops: vec![Op::CreateNode { id, labels: vec![], properties: BTreeMap::new() }],
        };
        s.apply_commit(&c);
        c
    }

    #[test]
    fn names() {
        assert_eq!(
            parse_snapshot_name("20231117101508851236_timestamp_374"),
            Some(("20231117101508851236".into(), 374))
        );
        assert_eq!(parse_snapshot_name("x_timestamp_1"), None);
        assert_eq!(
            parse_wal_name("20231117101508851236_from_2_to_8"),
            Some(("20231117101508851236".into(), Some((2, 8))))
        );
        assert_eq!(parse_wal_name("20231117101508851236_current"), Some(("20231117101508851236".into(), None)));
    }

    #[test]
    fn crash_loses_only_the_unflushed_tail() {
        let dir = MemDataDir::default();
        let ids = IdSource::seeded(1);
        let mut d = Durability::new(Arc::new(dir.clone()), cfg(2));
        let mut s = d.recover(true, &ids).unwrap().storage;
        for id in 0..5 {
            let c = commit(&mut s, id);
            d.log_commit(&c, 1).unwrap();
        }
        // 5 commits with flush every 2: the fifth is still buffered.
        d.kill();
        let mut d2 = Durability::new(Arc::new(dir.clone()), cfg(2));
        let r = d2.recover(true, &ids).unwrap();
        assert_eq!(r.storage.ts, 8);
        assert_eq!(r.storage.graph.nodes.len(), 4);
        assert_eq!(r.log.len(), 4);
        assert_eq!(r.storage.db_uuid, s.db_uuid);
        assert!(dir.paths().iter().any(|p| p.starts_with("wal/") && p.contains("_from_2_to_8")));
    }

    #[test]
    fn snapshot_plus_wal_and_retention() {
        let dir = MemDataDir::default();
        let ids = IdSource::seeded(2);
        let mut d = Durability::new(Arc::new(dir.clone()), cfg(1));
        let mut s = d.recover(true, &ids).unwrap().storage;
        for round in 0..3 {
            let c = commit(&mut s, round);
            d.log_commit(&c, 100 + round).unwrap();
            d.create_snapshot(&s, 200 + round).unwrap();
        }
        let c = commit(&mut s, 10);
        d.log_commit(&c, 300).unwrap();
        d.finalize_wal().unwrap();
        let snaps = d.snapshots().unwrap();
        assert_eq!(snaps.iter().map(|s| s.ts).collect::<Vec<_>>(), vec![6, 4]);
        // WAL covered by the oldest retained snapshot is gone.
        assert!(!dir.paths().iter().any(|p| p.ends_with("_to_2")));
        let r = Durability::new(Arc::new(dir.clone()), cfg(1)).recover(true, &ids).unwrap();
        assert_eq!(r.storage.graph, s.graph);
        assert_eq!(r.storage.ts, 8);
        assert_eq!(r.log.iter().map(|c| c.ts).collect::<Vec<_>>(), vec![8]);
    }

    #[test]
    fn recovery_off_moves_files_to_backup_and_keeps_the_uuid() {
        let dir = MemDataDir::default();
        let ids = IdSource::seeded(3);
        let mut d = Durability::new(Arc::new(dir.clone()), cfg(1));
        let mut s = d.recover(true, &ids).unwrap().storage;
        let c = commit(&mut s, 0);
        d.log_commit(&c, 1).unwrap();
        d.create_snapshot(&s, 2).unwrap();
        let r = Durability::new(Arc::new(dir.clone()), cfg(1)).recover(false, &ids).unwrap();
        assert!(r.storage.is_clean());
        assert_eq!(r.storage.db_uuid, s.db_uuid);
        assert!(dir.paths().iter().any(|p| p.starts_with(".backup/snapshots/")));
        assert!(!dir.paths().iter().any(|p| p.starts_with("snapshots/")));
    }

    #[test]
    fn epochs_survive_restart() {
        let dir = MemDataDir::default();
        let ids = IdSource::seeded(4);
        let mut d = Durability::new(Arc::new(dir.clone()), cfg(100));
        let mut s = d.recover(true, &ids).unwrap().storage;
        let c = commit(&mut s, 0);
        d.log_commit(&c, 1).unwrap();
        s.switch_epoch("promoted".into());
        d.log_epoch(&s, 2).unwrap();
        d.kill();
        let r = Durability::new(Arc::new(dir), cfg(100)).recover(true, &ids).unwrap();
        assert_eq!(r.storage.epoch, "promoted");
        assert_eq!(r.storage.history, s.history);
        assert_eq!(r.storage.ts, 2);
    }

    #[test]
    fn a_slow_snapshot_is_partial_until_finished_and_a_crash_leaves_it_unlisted() {
        let dir = MemDataDir::default();
        let ids = IdSource::seeded(6);
        let mut d = Durability::new(Arc::new(dir.clone()), cfg(1));
        let mut s = d.recover(true, &ids).unwrap().storage;
        let c = commit(&mut s, 0);
        d.log_commit(&c, 1).unwrap();
        let first = d.create_snapshot(&s, 10).unwrap();
        let c = commit(&mut s, 1);
        d.log_commit(&c, 11).unwrap();

        let p = d.begin_snapshot(&s, 20).unwrap();
        let rel = p.rel_path().to_string();
        assert_eq!(d.snapshot_in_progress(), Some(rel.as_str()));
        // The file has its final name but only the marker, and it is not listed.
        assert_eq!(dir.snapshot().get(&rel).map(Vec::as_slice), Some(PARTIAL_SNAPSHOT));
        let listed: Vec<String> = d.snapshots().unwrap().into_iter().map(|f| f.rel_path).collect();
        assert_eq!(listed, std::slice::from_ref(&first));
        assert_eq!(d.finish_snapshot(p).unwrap(), rel);
        assert_eq!(d.snapshots().unwrap()[0].rel_path, rel);
        assert_eq!(d.snapshot_in_progress(), None);

        // Crash in the middle: the partial file stays, recovery and listing skip it.
        let c = commit(&mut s, 2);
        d.log_commit(&c, 21).unwrap();
        let p = d.begin_snapshot(&s, 30).unwrap();
        let partial = p.rel_path().to_string();
        d.kill();
        assert!(matches!(d.finish_snapshot(p), Err(SnapshotWriteError::Aborted)));
        let mut d2 = Durability::new(Arc::new(dir.clone()), cfg(1));
        let r = d2.recover(true, &ids).unwrap();
        assert_eq!(r.storage.graph, s.graph, "the previous snapshot plus the WAL");
        assert!(dir.paths().contains(&partial));
        assert_eq!(d2.snapshots().unwrap().iter().map(|f| f.rel_path.clone()).collect::<Vec<_>>(), [rel, first]);
    }

    #[test]
    fn an_aborted_snapshot_is_deleted_and_cannot_finish() {
        let dir = MemDataDir::default();
        let ids = IdSource::seeded(7);
        let mut d = Durability::new(Arc::new(dir.clone()), cfg(1));
        let mut s = d.recover(true, &ids).unwrap().storage;
        let c = commit(&mut s, 0);
        d.log_commit(&c, 1).unwrap();
        let p = d.begin_snapshot(&s, 5).unwrap();
        let rel = p.rel_path().to_string();
        d.abort_snapshot().unwrap();
        assert!(!dir.paths().contains(&rel));
        assert!(matches!(d.finish_snapshot(p), Err(SnapshotWriteError::Aborted)));
        // Replacing the storage aborts a snapshot being written, too.
        let p = d.begin_snapshot(&s, 6).unwrap();
        let img = s.image(7);
        d.install_snapshot(&img, 8).unwrap();
        assert!(matches!(d.finish_snapshot(p), Err(SnapshotWriteError::Aborted)));
        assert_eq!(d.snapshots().unwrap().len(), 1);
    }

    #[test]
    fn nothing_new_is_judged_by_the_digest_of_this_process() {
        let dir = MemDataDir::default();
        let ids = IdSource::seeded(8);
        let mut d = Durability::new(Arc::new(dir.clone()), cfg(1));
        let mut s = d.recover(true, &ids).unwrap().storage;
        assert!(d.changed_since_snapshot(&s), "no snapshot yet");
        let c = commit(&mut s, 0);
        d.log_commit(&c, 1).unwrap();
        d.create_snapshot(&s, 2).unwrap();
        assert!(!d.changed_since_snapshot(&s));
        // A promotion is a change even without a commit.
        s.switch_epoch("promoted".into());
        assert!(d.changed_since_snapshot(&s));
        d.create_snapshot(&s, 3).unwrap();
        assert!(!d.changed_since_snapshot(&s));
        // After a restart the first snapshot is never "nothing new", as in Memgraph.
        let mut d2 = Durability::new(Arc::new(dir), cfg(1));
        let r = d2.recover(true, &ids).unwrap();
        assert_eq!(d2.last_snapshot_ts(), Some(2));
        assert!(d2.changed_since_snapshot(&r.storage));
    }

    #[test]
    fn wal_disabled_writes_nothing() {
        let dir = MemDataDir::default();
        let ids = IdSource::seeded(5);
        let mut d = Durability::new(Arc::new(dir.clone()), DurabilityConfig { wal_enabled: false, ..cfg(1) });
        let mut s = d.recover(true, &ids).unwrap().storage;
        let c = commit(&mut s, 0);
        d.log_commit(&c, 1).unwrap();
        assert!(!dir.paths().iter().any(|p| p.starts_with("wal/")));
    }
}
