//! What is in the store under a cluster's prefix: the backups (prefixes with a manifest) and
//! the orphans (prefixes without one: an upload that failed or was cut off). Read by the
//! operator for retention and status, and by `memgraph-operator backups list`.

use std::collections::BTreeMap;

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;

use super::manifest::{self, MANIFEST, Manifest};
use super::store::{ObjectInfo, ObjectStore, StoreError};

/// One backup id's prefix in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The id (the prefix's last component).
    pub id: String,
    /// Its manifest, when there is one and it parses.
    pub manifest: Option<Manifest>,
    /// Why the manifest is unusable, when it exists but does not parse.
    pub manifest_error: Option<String>,
    /// Every object under the prefix.
    pub objects: Vec<ObjectInfo>,
}

impl Entry {
    /// A backup: a manifest whose snapshot object is there with the size the manifest says.
    pub fn is_good(&self) -> bool {
        self.manifest.as_ref().is_some_and(|m| {
            let key_end = format!("/{}/{}", self.id, m.snapshot.name);
            self.objects.iter().any(|o| o.key.ends_with(&key_end) && o.size == m.snapshot.size_bytes)
        })
    }

    /// When the backup started: by its manifest, else by its id (never by object times).
    pub fn started(&self) -> Option<Timestamp> {
        self.manifest.as_ref().map(|m| m.started_at).or_else(|| manifest::id_time(&self.id))
    }
}

/// Every prefix under `prefix`, oldest id first, with manifests read.
pub async fn read(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<Entry>, StoreError> {
    let objects = store.list(&root(prefix)).await?;
    let mut manifests = BTreeMap::new();
    for object in objects.iter().filter(|o| o.key.ends_with(&format!("/{MANIFEST}"))) {
        if let Some(body) = store.get(&object.key).await? {
            manifests.insert(object.key.clone(), body);
        }
    }
    Ok(build(prefix, objects, &manifests))
}

fn root(prefix: &str) -> String {
    format!("{}/", prefix.trim_end_matches('/'))
}

/// Group listed objects into entries; `manifests` holds the bodies of the manifest objects.
pub fn build(prefix: &str, objects: Vec<ObjectInfo>, manifests: &BTreeMap<String, Bytes>) -> Vec<Entry> {
    let root = root(prefix);
    let mut by_id: BTreeMap<String, Vec<ObjectInfo>> = BTreeMap::new();
    for object in objects {
        let Some(rest) = object.key.strip_prefix(&root) else { continue };
        let Some((id, _)) = rest.split_once('/') else { continue };
        by_id.entry(id.to_owned()).or_default().push(object);
    }
    by_id
        .into_iter()
        .map(|(id, objects)| {
            let (manifest, manifest_error) = match manifests.get(&manifest::manifest_key(prefix, &id)) {
                Some(body) => match serde_json::from_slice::<Manifest>(body) {
                    Ok(m) => (Some(m), None),
                    Err(e) => (None, Some(format!("manifest does not parse: {e}"))),
                },
                None => (None, None),
            };
            Entry { id, manifest, manifest_error, objects }
        })
        .collect()
}

/// The cluster (other than `uid`) whose backups are under the prefix, if any.
pub fn foreign_owner(entries: &[Entry], uid: &str) -> Option<String> {
    entries
        .iter()
        .filter_map(|e| e.manifest.as_ref())
        .find(|m| m.cluster.uid != uid)
        .map(|m| format!("{}/{} uid {}", m.cluster.namespace, m.cluster.name, m.cluster.uid))
}

/// The newest good backup.
pub fn newest_good(entries: &[Entry]) -> Option<&Entry> {
    entries.iter().filter(|e| e.is_good()).max_by_key(|e| (e.started(), e.id.clone()))
}
