//! Backups end to end against the in-memory store and volume.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;

use super::agent::{self, Agent, AgentApi, AgentError, JobState};
use super::catalog;
use super::header;
use super::manifest::{self, ClusterRef};
use super::retention;
use super::store::{MemFaults, MemStore, ObjectStore};
use super::upload::{self, BackupError, BackupRequest};
use super::volume::{NewFile, OpenFile, Volume};
use crate::clock::Clock;

/// A data volume in memory.
#[derive(Default, Clone)]
pub(crate) struct MemVolume {
    pub files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

struct MemOpen(Vec<u8>, usize);

#[async_trait]
impl OpenFile for MemOpen {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.0.len() - self.1);
        buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
        self.1 += n;
        Ok(n)
    }
}

struct MemNew(Arc<Mutex<BTreeMap<String, Vec<u8>>>>, String);

#[async_trait]
impl NewFile for MemNew {
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.lock().unwrap().entry(self.1.clone()).or_default().extend_from_slice(data);
        Ok(())
    }
    async fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MemVolume {
    fn names(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        self.files.lock().unwrap().keys().filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned)).collect()
    }
    pub fn put(&self, path: &str, data: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_owned(), data);
    }
}

#[async_trait]
impl Volume for MemVolume {
    async fn snapshot_names(&self) -> io::Result<Vec<String>> {
        Ok(self.names("snapshots"))
    }
    async fn open_snapshot(&self, name: &str) -> io::Result<Option<Box<dyn OpenFile>>> {
        let data = self.files.lock().unwrap().get(&format!("snapshots/{name}")).cloned();
        Ok(data.map(|d| Box::new(MemOpen(d, 0)) as Box<dyn OpenFile>))
    }
    async fn holds_data(&self) -> io::Result<bool> {
        Ok(!self.names("snapshots").is_empty() || !self.names("wal").is_empty())
    }
    async fn read_state(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.files.lock().unwrap().get(&format!("state/{name}")).cloned())
    }
    async fn write_state(&self, name: &str, data: &[u8]) -> io::Result<()> {
        self.put(&format!("state/{name}"), data.to_vec());
        Ok(())
    }
    async fn remove_state(&self, name: &str) -> io::Result<()> {
        self.files.lock().unwrap().remove(&format!("state/{name}"));
        Ok(())
    }
    async fn list_state(&self, prefix: &str) -> io::Result<Vec<String>> {
        Ok(self.names("state").into_iter().filter(|n| n.starts_with(prefix)).collect())
    }
    async fn create_staging(&self, name: &str) -> io::Result<Box<dyn NewFile>> {
        self.put(&format!("state/{name}"), Vec::new());
        Ok(Box::new(MemNew(self.files.clone(), format!("state/{name}"))))
    }
    async fn install_snapshot(&self, staging: &str, snapshot: &str) -> io::Result<()> {
        let mut files = self.files.lock().unwrap();
        let data = files.remove(&format!("state/{staging}")).ok_or(io::ErrorKind::NotFound)?;
        files.insert(format!("snapshots/{snapshot}"), data);
        Ok(())
    }
}

/// A clock that tokio's (paused) time moves.
pub(crate) struct TokioClock(pub Timestamp, pub tokio::time::Instant);

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.0 + self.1.elapsed()
    }
    fn fill_random(&self, buf: &mut [u8]) {
        buf.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    }
}

fn t(text: &str) -> Timestamp {
    text.parse().unwrap()
}

pub(crate) fn snapshot_bytes(body_len: usize) -> Vec<u8> {
    let mut data = header::encode(27, [0, 84, 90, 100, 110, 120, 0, 130]);
    data.extend((0..body_len).map(|i| (i % 251) as u8));
    data
}

const SNAP: &str = "20261202050000000000_timestamp_42";

fn request(id: &str, deadline: Timestamp) -> BackupRequest {
    BackupRequest {
        id: id.to_owned(),
        cluster: ClusterRef { name: "mg".into(), namespace: "ns".into(), uid: "uid-1".into() },
        memgraph_version: "3.12.0".into(),
        snapshot: None,
        prefix: "backups/mg".into(),
        started_at: t("2026-12-02T05:00:00Z"),
        deadline,
    }
}

#[tokio::test(start_paused = true)]
async fn a_backup_streams_in_parts_and_its_manifest_matches_the_data() {
    let store = MemStore::new();
    let volume = MemVolume::default();
    let data = snapshot_bytes(1000);
    volume.put(&format!("snapshots/{SNAP}"), data.clone());
    // A newer file still being written is not chosen.
    volume.put("snapshots/20261202050001000000_timestamp_43", header::encode(27, [0; 8]));
    let clock = TokioClock(t("2026-12-02T05:00:00Z"), tokio::time::Instant::now());
    let req = request("20261202T050000000Z", t("2026-12-02T06:00:00Z"));
    let manifest = upload::upload(&store, &volume, &clock, &req, 300).await.unwrap();
    assert_eq!(manifest.snapshot.name, SNAP);
    assert_eq!(manifest.snapshot.durable_timestamp, 42);
    assert_eq!(manifest.snapshot.size_bytes, data.len() as u64);
    let digest = ring::digest::digest(&ring::digest::SHA256, &data);
    assert_eq!(manifest.snapshot.sha256, upload::hex(digest.as_ref()));
    let objects = store.objects();
    assert_eq!(objects.get(&format!("backups/mg/{}/{SNAP}", req.id)).map(|b| b.to_vec()), Some(data));
    assert!(objects.contains_key(&manifest::manifest_key("backups/mg", &req.id)));
    assert_eq!(store.pending_uploads(), 0);
    let entries = catalog::read(&store, "backups/mg").await.unwrap();
    assert_eq!(entries.len(), 1);
    assert!(entries[0].is_good());
}

#[tokio::test(start_paused = true)]
async fn failures_leave_no_parts_and_no_manifest() {
    let store = MemStore::new();
    let volume = MemVolume::default();
    volume.put(&format!("snapshots/{SNAP}"), snapshot_bytes(1000));
    let clock = TokioClock(t("2026-12-02T05:00:00Z"), tokio::time::Instant::now());
    let mut req = request("20261202T050000000Z", t("2026-12-02T06:00:00Z"));
    store.set_faults(MemFaults { fail_parts: 1, ..MemFaults::default() });
    let err = upload::upload(&store, &volume, &clock, &req, 300).await.unwrap_err();
    assert!(matches!(err, BackupError::Store { .. }), "{err}");
    assert_eq!(store.pending_uploads(), 0, "the failed upload is aborted");
    assert!(store.objects().is_empty());

    // A partial snapshot named explicitly is refused before anything is uploaded.
    volume.put("snapshots/20261202050001000000_timestamp_43", header::encode(27, [0; 8]));
    req.snapshot = Some("20261202050001000000_timestamp_43".into());
    let err = upload::upload(&store, &volume, &clock, &req, 300).await.unwrap_err();
    assert!(err.to_string().contains("incomplete"), "{err}");

    // Wrong credentials say what to fix.
    req.snapshot = None;
    store.set_faults(MemFaults { denied: true, ..MemFaults::default() });
    let err = upload::upload(&store, &volume, &clock, &req, 300).await.unwrap_err();
    assert!(err.to_string().contains("secretRef"), "{err}");

    // A slow store that runs past the deadline writes no manifest.
    store.set_faults(MemFaults { latency: Duration::from_secs(20), ..MemFaults::default() });
    req.deadline = t("2026-12-02T05:01:00Z");
    let err = upload::upload(&store, &volume, &clock, &req, 300).await.unwrap_err();
    assert!(matches!(err, BackupError::Deadline(_)), "{err}");
    store.set_faults(MemFaults::default());
    let entries = catalog::read(&store, "backups/mg").await.unwrap();
    assert!(entries.iter().all(|e| e.manifest.is_none()));
}

async fn stored_backup(store: &MemStore, volume: &MemVolume, id: &str, at: &str) {
    let clock = TokioClock(t(at), tokio::time::Instant::now());
    let mut req = request(id, t(at) + Duration::from_secs(3600));
    req.started_at = t(at);
    volume.put(&format!("snapshots/{SNAP}"), snapshot_bytes(10));
    upload::upload(store, volume, &clock, &req, 1 << 20).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn retention_deletes_by_manifest_time_keeps_the_newest_good_and_removes_orphans() {
    let store = MemStore::new();
    let volume = MemVolume::default();
    stored_backup(&store, &volume, "20261101T000000000Z", "2026-11-01T00:00:00Z").await;
    stored_backup(&store, &volume, "20261120T000000000Z", "2026-11-20T00:00:00Z").await;
    stored_backup(&store, &volume, "20261201T000000000Z", "2026-12-01T00:00:00Z").await;
    store.put("backups/mg/20261201T100000000Z/junk", Bytes::from_static(b"x")).await.unwrap();
    store.put("backups/mg/20261202T045900000Z/part", Bytes::from_static(b"x")).await.unwrap();
    let entries = catalog::read(&store, "backups/mg").await.unwrap();
    let now = t("2026-12-02T05:00:00Z");
    let deletions = retention::plan(&entries, now, 7, Duration::from_secs(3600), None);
    let ids: Vec<&str> = deletions.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["20261101T000000000Z", "20261120T000000000Z", "20261201T100000000Z"]);
    assert!(deletions[0].keys[0].ends_with("manifest.json"), "manifest first: {:?}", deletions[0].keys);
    retention::apply(&store, &deletions).await.unwrap();
    let left = catalog::read(&store, "backups/mg").await.unwrap();
    assert_eq!(left.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["20261201T000000000Z", "20261202T045900000Z"]);

    // Long after, the newest good backup is still kept, whatever its age.
    let later = retention::plan(&left, t("2027-06-01T00:00:00Z"), 7, Duration::from_secs(3600), None);
    assert_eq!(later.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["20261202T045900000Z"]);
    // A running backup's prefix is never touched.
    assert!(
        retention::plan(&left, t("2027-06-01T00:00:00Z"), 7, Duration::ZERO, Some("20261202T045900000Z")).is_empty()
    );
    assert_eq!(catalog::foreign_owner(&left, "uid-1"), None);
    assert!(catalog::foreign_owner(&left, "uid-2").is_some_and(|o| o.contains("ns/mg uid uid-1")));
}

/// The agent reached in-process over an in-memory duplex stream.
struct Loop(Arc<Agent>);

#[async_trait]
impl AgentApi for Loop {
    async fn call(
        &self,
        _host: &str,
        key: &[u8],
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), AgentError> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let agent = self.0.clone();
        tokio::spawn(async move { agent.serve(server).await });
        agent::exchange(client, key, method, path, body)
            .await
            .map_err(|message| AgentError::Unreachable { host: "agent".into(), message })
    }
}

#[tokio::test(start_paused = true)]
async fn the_agent_needs_the_key_and_finishes_a_backup_a_restart_cut_off() {
    let store = MemStore::new();
    let volume = MemVolume::default();
    volume.put(&format!("snapshots/{SNAP}"), snapshot_bytes(1000));
    let clock: Arc<dyn Clock> = Arc::new(TokioClock(t("2026-12-02T05:00:00Z"), tokio::time::Instant::now()));
    let key = b"0123456789abcdef0123456789abcdef".to_vec();
    let agent = Agent::new(Arc::new(store.clone()), Arc::new(volume.clone()), clock.clone(), key.clone(), 300);
    let api = Loop(agent);
    let req = request("20261202T050000000Z", t("2026-12-02T06:00:00Z"));
    let wrong = agent::start_backup(&api, "h", b"wrong key", &req).await.unwrap_err();
    assert!(matches!(wrong, AgentError::Status { status: 401, .. }), "{wrong}");
    assert_eq!(agent::backup_state(&api, "h", &key, &req.id).await, Ok(None));

    // The store hangs: the agent is "killed" mid-upload (a new one on the same volume).
    store.set_faults(MemFaults { latency: Duration::from_secs(30), ..MemFaults::default() });
    assert_eq!(agent::start_backup(&api, "h", &key, &req).await, Ok(JobState::Running));
    tokio::time::sleep(Duration::from_secs(5)).await;
    store.set_faults(MemFaults::default());
    let again = Agent::new(Arc::new(store.clone()), Arc::new(volume.clone()), clock, key.clone(), 300);
    again.resume().await.unwrap();
    let api = Loop(again);
    let mut state = agent::backup_state(&api, "h", &key, &req.id).await.unwrap();
    for _ in 0..100 {
        if !matches!(state, Some(JobState::Running)) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        state = agent::backup_state(&api, "h", &key, &req.id).await.unwrap();
    }
    let Some(JobState::Completed { manifest }) = state else { panic!("not completed: {state:?}") };
    assert_eq!(manifest.backup_id, req.id);
    // Repeating the request answers the same state and starts nothing new.
    assert!(matches!(agent::start_backup(&api, "h", &key, &req).await, Ok(JobState::Completed { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_restore_installs_a_verified_backup_once_and_refuses_what_it_must() {
    use super::restore::{self, Outcome, RestoreError, Selector};
    use crate::version::MemgraphVersion;
    let store = MemStore::new();
    let source = MemVolume::default();
    stored_backup(&store, &source, "20261120T000000000Z", "2026-11-20T00:00:00Z").await;
    stored_backup(&store, &source, "20261201T000000000Z", "2026-12-01T00:00:00Z").await;
    let now = t("2026-12-02T00:00:00Z");
    let v3_12 = Some(MemgraphVersion::new(3, 12, 0));

    // Newer Memgraph than the image: refused, nothing written.
    let target = MemVolume::default();
    let err =
        restore::restore(&store, &target, "backups/mg", &Selector::Latest, Some(MemgraphVersion::new(3, 10, 0)), now)
            .await
            .unwrap_err();
    assert!(matches!(err, RestoreError::TooNew { .. }), "{err}");
    assert!(target.files.lock().unwrap().is_empty());

    // Latest: the newest, installed under its own name, marked.
    let Outcome::Restored(marker) =
        restore::restore(&store, &target, "backups/mg", &Selector::Latest, v3_12, now).await.unwrap()
    else {
        panic!("not restored")
    };
    assert_eq!(marker.backup_id, "20261201T000000000Z");
    assert_eq!(target.files.lock().unwrap().get(&format!("snapshots/{SNAP}")), Some(&snapshot_bytes(10)));
    // Again on the same volume: nothing happens.
    assert!(matches!(
        restore::restore(&store, &target, "backups/mg", &Selector::Latest, v3_12, now).await.unwrap(),
        Outcome::AlreadyRestored(_)
    ));
    // A volume holding other data is never touched.
    let busy = MemVolume::default();
    busy.put("wal/20261201000000000000_current", b"x".to_vec());
    let err = restore::restore(&store, &busy, "backups/mg", &Selector::Latest, v3_12, now).await.unwrap_err();
    assert!(matches!(err, RestoreError::VolumeNotEmpty), "{err}");
    assert_eq!(busy.files.lock().unwrap().len(), 1);

    // A corrupted object is refused and leaves nothing behind.
    let key = manifest::snapshot_key("backups/mg", "20261120T000000000Z", SNAP);
    let mut bad = snapshot_bytes(10);
    bad[90] ^= 0xff;
    store.corrupt(&key, Bytes::from(bad));
    let fresh = MemVolume::default();
    let id = Selector::Id("20261120T000000000Z".into());
    let err = restore::restore(&store, &fresh, "backups/mg", &id, v3_12, now).await.unwrap_err();
    assert!(err.to_string().contains("SHA-256"), "{err}");
    assert!(fresh.files.lock().unwrap().is_empty(), "{:?}", fresh.files.lock().unwrap().keys().collect::<Vec<_>>());
    let err =
        restore::restore(&store, &fresh, "backups/mg", &Selector::Id("nope".into()), v3_12, now).await.unwrap_err();
    assert!(matches!(err, RestoreError::NotFound(_)), "{err}");
}
