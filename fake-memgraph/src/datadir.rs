//! A tiny filesystem abstraction for the data directory, so a simulation can keep a volume outside
//! the server (surviving restarts) and tests can lose it on purpose.
//!
//! Paths are relative, `/`-separated (`snapshots/2024…_timestamp_4`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// File operations on one data directory.
pub trait DataDir: Send + Sync + 'static {
    /// Contents of `path`, or `None` if it does not exist.
    fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>>;
    /// Creates or replaces `path` (atomically where the backend can).
    fn write(&self, path: &str, data: &[u8]) -> io::Result<()>;
    /// Appends to `path`, creating it if needed.
    fn append(&self, path: &str, data: &[u8]) -> io::Result<()>;
    /// Names of the regular files directly inside `dir`, sorted.
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    /// Removes `path` (missing is not an error).
    fn remove(&self, path: &str) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Size of `path` in bytes, if it exists.
    fn size(&self, path: &str) -> io::Result<Option<u64>> {
        Ok(self.read(path)?.map(|d| d.len() as u64))
    }
    /// How `path` is shown to users (e.g. `SHOW SNAPSHOTS`): an absolute path.
    fn display_path(&self, path: &str) -> String;
}

fn check(path: &str) -> io::Result<()> {
    // Keep every access inside the directory.
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad data-dir path {path:?}")));
    }
    Ok(())
}

/// A real directory on disk.
#[derive(Debug, Clone)]
pub struct FsDataDir {
    root: PathBuf,
}

impl FsDataDir {
    /// Uses (and creates) `root`.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        let root = std::fs::canonicalize(&root)?;
        Ok(FsDataDir { root })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> io::Result<PathBuf> {
        check(path)?;
        Ok(self.root.join(path))
    }

    fn ensure_parent(p: &Path) -> io::Result<()> {
        match p.parent() {
            Some(parent) => std::fs::create_dir_all(parent),
            None => Ok(()),
        }
    }
}

impl DataDir for FsDataDir {
    fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.full(path)?) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write(&self, path: &str, data: &[u8]) -> io::Result<()> {
        let full = self.full(path)?;
        Self::ensure_parent(&full)?;
        let tmp = full.with_extension("fake-tmp");
        std::fs::write(&tmp, data)?;
        std::fs::rename(&tmp, &full)
    }

    fn append(&self, path: &str, data: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let full = self.full(path)?;
        Self::ensure_parent(&full)?;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(full)?;
        f.write_all(data)
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let full = self.full(dir)?;
        let entries = match std::fs::read_dir(full) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e?;
            if e.file_type()?.is_file()
                && let Some(name) = e.file_name().to_str()
                && !name.ends_with(".fake-tmp")
            {
                out.push(name.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        match std::fs::remove_file(self.full(path)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let to = self.full(to)?;
        Self::ensure_parent(&to)?;
        std::fs::rename(self.full(from)?, to)
    }

    fn size(&self, path: &str) -> io::Result<Option<u64>> {
        match std::fs::metadata(self.full(path)?) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn display_path(&self, path: &str) -> String {
        self.root.join(path).display().to_string()
    }
}

/// An in-memory directory. Clones share the same files, so a simulation can keep one clone as the
/// pod's volume while servers come and go.
#[derive(Debug, Clone)]
pub struct MemDataDir {
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    root: String,
}

impl Default for MemDataDir {
    fn default() -> Self {
        MemDataDir::new("/var/lib/memgraph")
    }
}

impl MemDataDir {
    /// An empty volume shown to users as mounted at `root`.
    pub fn new(root: impl Into<String>) -> Self {
        MemDataDir { files: Arc::default(), root: root.into() }
    }

    /// Loses every file (volume loss).
    pub fn wipe(&self) {
        self.lock().clear();
    }

    /// Every file path, sorted (for assertions).
    pub fn paths(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// A copy of every file (for digests and assertions).
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl DataDir for MemDataDir {
    fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        check(path)?;
        Ok(self.lock().get(path).cloned())
    }

    fn write(&self, path: &str, data: &[u8]) -> io::Result<()> {
        check(path)?;
        self.lock().insert(path.to_string(), data.to_vec());
        Ok(())
    }

    fn append(&self, path: &str, data: &[u8]) -> io::Result<()> {
        check(path)?;
        self.lock().entry(path.to_string()).or_default().extend_from_slice(data);
        Ok(())
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        check(dir)?;
        let prefix = format!("{dir}/");
        Ok(self
            .lock()
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|rest| !rest.contains('/'))
            .map(str::to_owned)
            .collect())
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        check(path)?;
        self.lock().remove(path);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        check(from)?;
        check(to)?;
        let mut files = self.lock();
        let data = files.remove(from).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, from.to_string()))?;
        files.insert(to.to_string(), data);
        Ok(())
    }

    fn size(&self, path: &str) -> io::Result<Option<u64>> {
        check(path)?;
        Ok(self.lock().get(path).map(|d| d.len() as u64))
    }

    fn display_path(&self, path: &str) -> String {
        format!("{}/{}", self.root.trim_end_matches('/'), path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(d: &dyn DataDir) {
        assert_eq!(d.read("wal/a").unwrap(), None);
        d.append("wal/a", b"x").unwrap();
        d.append("wal/a", b"y").unwrap();
        d.write("wal/b", b"z").unwrap();
        d.write("wal/.old/c", b"old").unwrap();
        assert_eq!(d.read("wal/a").unwrap().as_deref(), Some(&b"xy"[..]));
        assert_eq!(d.list("wal").unwrap(), vec!["a".to_string(), "b".to_string()]);
        d.rename("wal/a", "snapshots/a").unwrap();
        assert_eq!(d.list("wal").unwrap(), vec!["b".to_string()]);
        assert_eq!(d.size("snapshots/a").unwrap(), Some(2));
        d.remove("wal/b").unwrap();
        d.remove("wal/b").unwrap();
        assert!(d.list("wal").unwrap().is_empty());
        assert!(d.list("nothing").unwrap().is_empty());
        assert!(d.read("../escape").is_err());
        assert!(d.write("/abs", b"").is_err());
    }

    #[test]
    fn memory_dir_behaves_like_a_directory() {
        let m = MemDataDir::default();
        exercise(&m);
        assert_eq!(m.display_path("snapshots/a"), "/var/lib/memgraph/snapshots/a");
        m.wipe();
        assert!(m.paths().is_empty());
    }

    #[test]
    fn fs_dir_behaves_like_a_directory() {
        let root = std::env::temp_dir().join(format!("fake-mg-datadir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let d = FsDataDir::new(&root).unwrap();
        exercise(&d);
        assert!(d.display_path("snapshots/a").ends_with("snapshots/a"));
        let _ = std::fs::remove_dir_all(&root);
    }
}
