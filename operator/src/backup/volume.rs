//! The agent's and the restore's view of the data volume they share with Memgraph: its
//! `snapshots/` directory, and a small state directory of their own. A trait, so that the
//! simulation runs the same code against a fake pod's in-memory volume.

use std::io;
use std::path::PathBuf;

use async_trait::async_trait;

/// Memgraph's snapshot directory, relative to the data directory.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// The operator's own directory on the data volume (agent jobs, restore marker and staging).
/// Memgraph ignores directories it does not know.
pub const STATE_DIR: &str = ".memgraph-operator";

/// A file opened for reading. Once open it stays readable even if Memgraph's retention
/// deletes it meanwhile (an unlinked file lives on through its descriptor).
#[async_trait]
pub trait OpenFile: Send {
    /// Read up to `buf.len()` bytes; 0 at the end.
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// A file being written: appended to, then made durable and moved into place.
#[async_trait]
pub trait NewFile: Send {
    /// Append bytes.
    async fn write(&mut self, data: &[u8]) -> io::Result<()>;
    /// Flush to stable storage.
    async fn sync(&mut self) -> io::Result<()>;
}

/// Operations on the data volume.
#[async_trait]
pub trait Volume: Send + Sync {
    /// Names of the files in `snapshots/`, sorted.
    async fn snapshot_names(&self) -> io::Result<Vec<String>>;
    /// Open `snapshots/<name>`; `None` when it does not exist.
    async fn open_snapshot(&self, name: &str) -> io::Result<Option<Box<dyn OpenFile>>>;
    /// Whether the volume holds any Memgraph data (snapshots, WAL files or replication state).
    async fn holds_data(&self) -> io::Result<bool>;
    /// Read a file of the state directory; `None` when it does not exist.
    async fn read_state(&self, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// Write a file of the state directory, atomically (write and rename).
    async fn write_state(&self, name: &str, data: &[u8]) -> io::Result<()>;
    /// Remove a file of the state directory (missing is fine).
    async fn remove_state(&self, name: &str) -> io::Result<()>;
    /// Names of the files of the state directory with this prefix, sorted.
    async fn list_state(&self, prefix: &str) -> io::Result<Vec<String>>;
    /// Create (truncating) a staging file in the state directory.
    async fn create_staging(&self, name: &str) -> io::Result<Box<dyn NewFile>>;
    /// Move a staging file to `snapshots/<snapshot>` (creating `snapshots/`), with the owner
    /// Memgraph runs as.
    async fn install_snapshot(&self, staging: &str, snapshot: &str) -> io::Result<()>;
}

/// A real data directory (the pod's volume mounted at the same path as Memgraph's).
#[derive(Debug, Clone)]
pub struct FsVolume {
    root: PathBuf,
    /// uid and gid to give installed files (the official images run Memgraph as 101:103).
    pub owner: Option<(u32, u32)>,
}

impl FsVolume {
    /// The data directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), owner: None }
    }

    fn state_path(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad state file name {name:?}")));
        }
        Ok(self.root.join(STATE_DIR).join(name))
    }
}

fn snapshot_file_name(name: &str) -> io::Result<&str> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad snapshot file name {name:?}")));
    }
    Ok(name)
}

struct FsOpen(tokio::fs::File);

#[async_trait]
impl OpenFile for FsOpen {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        tokio::io::AsyncReadExt::read(&mut self.0, buf).await
    }
}

struct FsNew(tokio::fs::File);

#[async_trait]
impl NewFile for FsNew {
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        tokio::io::AsyncWriteExt::write_all(&mut self.0, data).await
    }
    async fn sync(&mut self) -> io::Result<()> {
        tokio::io::AsyncWriteExt::flush(&mut self.0).await?;
        self.0.sync_all().await
    }
}

async fn names_in(dir: PathBuf) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut entries = match tokio::fs::read_dir(&dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    while let Some(entry) = entries.next_entry().await? {
        if entry.file_type().await?.is_file()
            && let Some(name) = entry.file_name().to_str()
        {
            out.push(name.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

#[async_trait]
impl Volume for FsVolume {
    async fn snapshot_names(&self) -> io::Result<Vec<String>> {
        names_in(self.root.join(SNAPSHOT_DIR)).await
    }

    async fn open_snapshot(&self, name: &str) -> io::Result<Option<Box<dyn OpenFile>>> {
        let path = self.root.join(SNAPSHOT_DIR).join(snapshot_file_name(name)?);
        match tokio::fs::File::open(path).await {
            Ok(f) => Ok(Some(Box::new(FsOpen(f)))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn holds_data(&self) -> io::Result<bool> {
        for dir in [SNAPSHOT_DIR, "wal"] {
            if !names_in(self.root.join(dir)).await?.is_empty() {
                return Ok(true);
            }
        }
        Ok(tokio::fs::try_exists(self.root.join("replication")).await?)
    }

    async fn read_state(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match tokio::fs::read(self.state_path(name)?).await {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn write_state(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let path = self.state_path(name)?;
        tokio::fs::create_dir_all(self.root.join(STATE_DIR)).await?;
        let tmp = path.with_extension("tmp");
        tokio::fs::write(&tmp, data).await?;
        tokio::fs::rename(&tmp, &path).await
    }

    async fn remove_state(&self, name: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.state_path(name)?).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    async fn list_state(&self, prefix: &str) -> io::Result<Vec<String>> {
        Ok(names_in(self.root.join(STATE_DIR)).await?.into_iter().filter(|n| n.starts_with(prefix)).collect())
    }

    async fn create_staging(&self, name: &str) -> io::Result<Box<dyn NewFile>> {
        let path = self.state_path(name)?;
        tokio::fs::create_dir_all(self.root.join(STATE_DIR)).await?;
        Ok(Box::new(FsNew(tokio::fs::File::create(path).await?)))
    }

    async fn install_snapshot(&self, staging: &str, snapshot: &str) -> io::Result<()> {
        let from = self.state_path(staging)?;
        let dir = self.root.join(SNAPSHOT_DIR);
        tokio::fs::create_dir_all(&dir).await?;
        let to = dir.join(snapshot_file_name(snapshot)?);
        tokio::fs::rename(&from, &to).await?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
            std::os::unix::fs::chown(&to, Some(uid), Some(gid))?;
        }
        Ok(())
    }
}
