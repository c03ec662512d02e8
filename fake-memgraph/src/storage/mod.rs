//! The in-memory graph, its commits, and durability (snapshots + WAL) on a [`DataDir`].
//!
//! [`DataDir`]: crate::datadir::DataDir

pub mod durability;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::value::{Node, Value};

/// A stored node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeData {
    /// Labels.
    pub labels: Vec<String>,
    /// Properties.
    pub properties: BTreeMap<String, Value>,
}

/// One change inside a transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// A node was created with this id.
    CreateNode {
        /// Node id.
        id: i64,
        /// Labels.
        labels: Vec<String>,
        /// Properties.
        properties: BTreeMap<String, Value>,
    },
    /// A node was deleted.
    DeleteNode {
        /// Node id.
        id: i64,
    },
}

/// A committed write transaction, as written to the WAL and shipped to replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    /// Durable timestamp before this commit.
    pub prev_ts: i64,
    /// Commit timestamp.
    pub ts: i64,
    /// Epoch in which it was committed.
    pub epoch: String,
    /// Changes.
    pub ops: Vec<Op>,
}

/// Nodes keyed by id. Changed only through [`Graph::apply`] and [`Graph::from_nodes`], which
/// keep its digest up to date.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    /// Nodes.
    pub nodes: BTreeMap<i64, NodeData>,
    /// Next id to hand out.
    pub next_id: i64,
    /// Sum of the nodes' fingerprints, kept as nodes come and go.
    digest: u64,
    /// Nodes per label, kept as nodes come and go.
    labelled: BTreeMap<String, usize>,
}

/// FNV-1a over the canonical JSON of one node.
fn node_digest(id: i64, n: &NodeData) -> u64 {
    let text = serde_json::to_string(&(id, n)).unwrap_or_default();
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3))
}

impl Graph {
    /// A graph holding `nodes`.
    pub fn from_nodes(nodes: BTreeMap<i64, NodeData>, next_id: i64) -> Self {
        let digest = nodes.iter().fold(0u64, |d, (id, n)| d.wrapping_add(node_digest(*id, n)));
        let mut graph = Graph { nodes: BTreeMap::new(), next_id, digest, labelled: BTreeMap::new() };
        for n in nodes.values() {
            graph.count(n, true);
        }
        graph.nodes = nodes;
        graph
    }

    fn count(&mut self, n: &NodeData, add: bool) {
        for label in &n.labels {
            if add {
                *self.labelled.entry(label.clone()).or_default() += 1;
            } else if let Some(c) = self.labelled.get_mut(label) {
                *c -= 1;
                // No zero entries: graphs with equal nodes compare equal.
                if *c == 0 {
                    self.labelled.remove(label);
                }
            }
        }
    }

    /// Nodes carrying `label`. Kept up to date by every change, so asking is free.
    pub fn labelled(&self, label: &str) -> usize {
        self.labelled.get(label).copied().unwrap_or(0)
    }

    /// Applies one change.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::CreateNode { id, labels, properties } => {
                let data = NodeData { labels: labels.clone(), properties: properties.clone() };
                self.digest = self.digest.wrapping_add(node_digest(*id, &data));
                self.count(&data, true);
                if let Some(old) = self.nodes.insert(*id, data) {
                    self.digest = self.digest.wrapping_sub(node_digest(*id, &old));
                    self.count(&old, false);
                }
                self.next_id = self.next_id.max(id + 1);
            }
            Op::DeleteNode { id } => {
                if let Some(old) = self.nodes.remove(id) {
                    self.digest = self.digest.wrapping_sub(node_digest(*id, &old));
                    self.count(&old, false);
                }
            }
        }
    }

    /// The node as a client sees it.
    pub fn node(&self, id: i64) -> Option<Node> {
        self.nodes.get(&id).map(|d| to_node(id, d))
    }

    /// An order-independent fingerprint of the data: equal data, equal digest. Kept up to date
    /// by every change, so asking is free.
    pub fn digest(&self) -> u64 {
        self.digest
    }
}

/// Builds a client node from stored data.
pub fn to_node(id: i64, d: &NodeData) -> Node {
    Node { id, labels: d.labels.clone(), properties: d.properties.clone() }
}

/// The database of one instance: graph plus the replication-relevant durable metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Storage {
    /// The data.
    pub graph: Graph,
    /// Last committed (durable) timestamp; 0 for a fresh database.
    pub ts: i64,
    /// Current epoch id.
    pub epoch: String,
    /// Earlier epochs with the last timestamp of each, oldest first.
    pub history: Vec<(String, i64)>,
    /// The default database's UUID (a replica adopts its MAIN's when it is clean).
    pub db_uuid: String,
}

impl Storage {
    /// A fresh, empty database.
    pub fn fresh(epoch: String, db_uuid: String) -> Self {
        Storage { graph: Graph::default(), ts: 0, epoch, history: Vec::new(), db_uuid }
    }

    /// Whether nothing was ever committed (Memgraph's "clean" storage).
    pub fn is_clean(&self) -> bool {
        self.ts == 0 && self.graph.nodes.is_empty()
    }

    /// Applies a commit received from (or made as) MAIN, adopting its epoch.
    pub fn apply_commit(&mut self, c: &Commit) {
        if c.epoch != self.epoch {
            self.switch_epoch(c.epoch.clone());
        }
        for op in &c.ops {
            self.graph.apply(op);
        }
        self.ts = c.ts;
    }

    /// Starts `epoch`, keeping the current one (and its last timestamp) in the history.
    pub fn switch_epoch(&mut self, epoch: String) {
        let old = std::mem::replace(&mut self.epoch, epoch);
        // An epoch in which nothing was ever committed has no history worth keeping.
        if self.ts != 0 && !self.history.iter().any(|(e, _)| *e == old) {
            self.history.push((old, self.ts));
        }
    }

    /// A full image for snapshot files and snapshot transfer.
    pub fn image(&self, created_micros: i64) -> SnapshotImage {
        SnapshotImage {
            ts: self.ts,
            epoch: self.epoch.clone(),
            history: self.history.clone(),
            db_uuid: self.db_uuid.clone(),
            next_id: self.graph.next_id,
            nodes: self.graph.nodes.iter().map(|(k, v)| (*k, v.clone())).collect(),
            created_micros,
        }
    }

    /// Replaces everything with an image.
    pub fn load_image(&mut self, img: &SnapshotImage) {
        self.graph = Graph::from_nodes(img.nodes.iter().cloned().collect(), img.next_id);
        self.ts = img.ts;
        self.epoch = img.epoch.clone();
        self.history = img.history.clone();
        self.db_uuid = img.db_uuid.clone();
    }
}

/// The content of a snapshot file, also sent whole to replicas that need a full resync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotImage {
    /// Durable timestamp covered.
    pub ts: i64,
    /// Epoch at the time.
    pub epoch: String,
    /// Epoch history at the time.
    pub history: Vec<(String, i64)>,
    /// Database UUID.
    pub db_uuid: String,
    /// Next node id.
    pub next_id: i64,
    /// Nodes.
    pub nodes: Vec<(i64, NodeData)>,
    /// Creation time (Unix µs).
    pub created_micros: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(id: i64) -> Op {
        Op::CreateNode { id, labels: vec!["L".into()], properties: BTreeMap::from([("k".to_string(), Value::Int(id))]) }
    }

    #[test]
    fn commits_adopt_epochs_and_keep_history() {
        let mut s = Storage::fresh("e1".into(), "db".into());
        s.apply_commit(&Commit { prev_ts: 0, ts: 2, epoch: "e1".into(), ops: vec![create(0), create(1)] });
        s.apply_commit(&Commit { prev_ts: 2, ts: 4, epoch: "e2".into(), ops: vec![Op::DeleteNode { id: 0 }] });
        assert_eq!(s.ts, 4);
        assert_eq!(s.epoch, "e2");
        assert_eq!(s.history, vec![("e1".to_string(), 2)]);
        assert_eq!(s.graph.nodes.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(s.graph.next_id, 2);
    }

    #[test]
    fn images_round_trip_and_digests_track_content() {
        let mut s = Storage::fresh("e".into(), "db".into());
        s.graph.apply(&create(3));
        s.ts = 2;
        let img = s.image(5);
        let mut t = Storage::fresh("x".into(), "y".into());
        t.load_image(&img);
        assert_eq!(s, t);
        assert_eq!(s.graph.digest(), t.graph.digest());
        t.graph.apply(&Op::DeleteNode { id: 3 });
        assert_ne!(s.graph.digest(), t.graph.digest());
        assert!(!s.is_clean());
        assert!(Storage::fresh("e".into(), "d".into()).is_clean());
    }
}
