//! Backups in the simulation: one in-memory object store for the world (with faults), the
//! backup agent running on a write pod's host over turmoil's TCP with the pod's volume, and
//! the operator's ways to reach both. The agent and the job are the operator's own code; only
//! the transport and the store are the world's.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fake_memgraph::{DataDir, MemDataDir};
use memgraph_operator::backup::agent::{self, AGENT_PORT, Agent, AgentApi, AgentError};
use memgraph_operator::backup::store::{MemStore, ObjectStore, StoreError, StoreErrorKind};
use memgraph_operator::backup::volume::{NewFile, OpenFile, SNAPSHOT_DIR, STATE_DIR, Volume};
use memgraph_operator::backup::{Credentials, StoreLocation};
use memgraph_operator::reconcile::backup_job::{BackupContext, StoreFactory};

use super::time::SimClock;

/// Bucket of every simulated cluster.
pub const BUCKET: &str = "sim-backups";
/// Secret with the store credentials.
pub const CREDENTIALS_SECRET: &str = "s3-credentials";
/// The access key the store accepts.
pub const ACCESS_KEY: &str = "sim-access-key";
/// The secret key the store accepts.
pub const SECRET_KEY: &str = "sim-secret-key";
/// Part size the simulated agents upload with (small: the fake's snapshots are small, and
/// several parts per upload exercise the multipart path).
pub const PART_SIZE: usize = 4 * 1024;

/// A pod's volume as the agent sees it.
#[derive(Clone)]
pub struct SimVolume(pub MemDataDir);

struct Bytes(Vec<u8>, usize);

#[async_trait]
impl OpenFile for Bytes {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.0.len() - self.1);
        buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
        self.1 += n;
        Ok(n)
    }
}

struct Appender(MemDataDir, String);

#[async_trait]
impl NewFile for Appender {
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.append(&self.1, data)
    }
    async fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn state(name: &str) -> String {
    format!("{STATE_DIR}/{name}")
}

#[async_trait]
impl Volume for SimVolume {
    async fn snapshot_names(&self) -> io::Result<Vec<String>> {
        self.0.list(SNAPSHOT_DIR)
    }
    async fn open_snapshot(&self, name: &str) -> io::Result<Option<Box<dyn OpenFile>>> {
        // Reading it whole now is opening it: later deletions do not affect this copy.
        Ok(self.0.read(&format!("{SNAPSHOT_DIR}/{name}"))?.map(|d| Box::new(Bytes(d, 0)) as Box<dyn OpenFile>))
    }
    async fn holds_data(&self) -> io::Result<bool> {
        Ok(!self.0.list(SNAPSHOT_DIR)?.is_empty()
            || !self.0.list("wal")?.is_empty()
            || self.0.read(fake_memgraph::replication::STATE_FILE)?.is_some())
    }
    async fn read_state(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        self.0.read(&state(name))
    }
    async fn write_state(&self, name: &str, data: &[u8]) -> io::Result<()> {
        self.0.write(&state(name), data)
    }
    async fn remove_state(&self, name: &str) -> io::Result<()> {
        self.0.remove(&state(name))
    }
    async fn list_state(&self, prefix: &str) -> io::Result<Vec<String>> {
        Ok(self.0.list(STATE_DIR)?.into_iter().filter(|n| n.starts_with(prefix)).collect())
    }
    async fn create_staging(&self, name: &str) -> io::Result<Box<dyn NewFile>> {
        self.0.write(&state(name), &[])?;
        Ok(Box::new(Appender(self.0.clone(), state(name))))
    }
    async fn install_snapshot(&self, staging: &str, snapshot: &str) -> io::Result<()> {
        self.0.rename(&state(staging), &format!("{SNAPSHOT_DIR}/{snapshot}"))
    }
}

/// Start the backup agent of a pod on the current host: listen on the agent port and serve.
pub async fn run_agent(volume: MemDataDir, store: MemStore, clock: SimClock, key: Vec<u8>) -> io::Result<()> {
    let agent = Agent::new(Arc::new(store), Arc::new(SimVolume(volume)), Arc::new(clock), key, PART_SIZE);
    agent.resume().await?;
    let listener = turmoil::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, AGENT_PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let agent = agent.clone();
        tokio::task::spawn_local(async move {
            let _ = tokio::time::timeout(Duration::from_secs(60), agent.serve(stream)).await;
        });
    }
}

/// The operator reaches agents over turmoil's TCP.
pub struct TurmoilAgents;

#[async_trait]
impl AgentApi for TurmoilAgents {
    async fn call(
        &self,
        host: &str,
        key: &[u8],
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), AgentError> {
        let connect = turmoil::net::TcpStream::connect((host, AGENT_PORT));
        agent::call_over(host, Duration::from_secs(30), connect, key, method, path, body).await
    }
}

/// The world's store, for every location (one bucket), refusing wrong credentials.
pub struct SimStores(pub MemStore);

#[async_trait]
impl StoreFactory for SimStores {
    async fn open(
        &self,
        location: &StoreLocation,
        credentials: Option<Credentials>,
    ) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let right = credentials.is_some_and(|c| c.access_key_id == ACCESS_KEY && c.secret_access_key == SECRET_KEY);
        if !right {
            return Err(StoreError::new(
                StoreErrorKind::Denied,
                "open",
                &location.bucket,
                "InvalidAccessKeyId: the access key does not exist",
            ));
        }
        Ok(Arc::new(self.0.clone()))
    }
}

/// What the operator's backup jobs use in the world.
pub fn context(store: &MemStore) -> BackupContext {
    BackupContext { agents: Arc::new(TurmoilAgents), stores: Arc::new(SimStores(store.clone())) }
}

/// Put backups of `cluster` (uid `uid`) taken days before the run into the store, so that
/// retention has old backups to delete in a run of minutes.
pub fn seed_old_backups(store: &MemStore, cluster: &str, namespace: &str, uid: &str) {
    use memgraph_operator::backup::{header, manifest};
    let prefix = format!("backups/{cluster}");
    for days in [5u64, 3] {
        let started = k8s_openapi::jiff::Timestamp::from_second(
            super::time::EPOCH_SECONDS - i64::try_from(days * 86_400).unwrap_or(0),
        )
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let id = manifest::backup_id(started);
        let name = format!("{}_timestamp_{}", started.strftime("%Y%m%d%H%M%S000000"), 10 - days);
        let mut data = header::encode(27, [0, 84, 84, 84, 84, 84, 0, 84]);
        data.extend_from_slice(b"{}");
        let digest = ring::digest::digest(&ring::digest::SHA256, &data);
        let m = manifest::Manifest {
            format: manifest::FORMAT,
            backup_id: id.clone(),
            cluster: manifest::ClusterRef {
                name: cluster.to_owned(),
                namespace: namespace.to_owned(),
                uid: uid.to_owned(),
            },
            memgraph_version: "3.12.0".to_owned(),
            snapshot: manifest::SnapshotRef {
                name: name.clone(),
                size_bytes: data.len() as u64,
                sha256: memgraph_operator::backup::upload::hex(digest.as_ref()),
                durable_timestamp: i64::try_from(10 - days).unwrap_or(0),
                format_version: 27,
            },
            started_at: started,
            finished_at: started + Duration::from_secs(30),
        };
        store.insert(&manifest::snapshot_key(&prefix, &id, &name), bytes::Bytes::from(data));
        if let Ok(body) = serde_json::to_vec(&m) {
            store.insert(&manifest::manifest_key(&prefix, &id), bytes::Bytes::from(body));
        }
    }
}
