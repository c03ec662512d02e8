//! The RBAC manifests grant exactly what the operator uses: every API call of `KubeClient` and
//! the controller's watches, and nothing more.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml::Value;

/// (API group, resource, verb) of every request the operator makes:
/// - the controller watches clusters, StatefulSets, Services, PDBs and pods (list + watch);
/// - reconcile reads a cluster (get), sets finalizers (patch), applies status (patch on status);
/// - server-side apply of owned objects (create when missing, patch); StatefulSets and Services
///   of removed replicas are deleted (the PodDisruptionBudget never is);
/// - pod role labels (patch); Secrets named in the spec (get); events (create, patch for series).
const USED: &[(&str, &str, &str)] = &[
    ("memgraph.io", "memgraphclusters", "get"),
    ("memgraph.io", "memgraphclusters", "list"),
    ("memgraph.io", "memgraphclusters", "watch"),
    ("memgraph.io", "memgraphclusters", "patch"),
    ("memgraph.io", "memgraphclusters/status", "patch"),
    ("apps", "statefulsets", "list"),
    ("apps", "statefulsets", "watch"),
    ("apps", "statefulsets", "create"),
    ("apps", "statefulsets", "patch"),
    ("apps", "statefulsets", "delete"),
    ("", "services", "list"),
    ("", "services", "watch"),
    ("", "services", "create"),
    ("", "services", "patch"),
    ("", "services", "delete"),
    ("policy", "poddisruptionbudgets", "list"),
    ("policy", "poddisruptionbudgets", "watch"),
    ("policy", "poddisruptionbudgets", "create"),
    ("policy", "poddisruptionbudgets", "patch"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "pods", "patch"),
    ("", "secrets", "get"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
];

fn granted(file: &str, kind: &str) -> BTreeSet<(String, String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac").join(file);
    let text = std::fs::read_to_string(&path).expect("rbac file");
    let mut out = BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc = Value::deserialize(doc).expect("yaml");
        if doc["kind"].as_str() != Some(kind) {
            continue;
        }
        for rule in doc["rules"].as_sequence().expect("rules") {
            let list = |key: &str| -> Vec<String> {
                rule[key].as_sequence().expect(key).iter().map(|v| v.as_str().expect("string").to_owned()).collect()
            };
            for group in list("apiGroups") {
                for resource in list("resources") {
                    for verb in list("verbs") {
                        assert_ne!(verb, "*", "no wildcards");
                        out.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn roles_grant_exactly_what_is_used() {
    let used: BTreeSet<(String, String, String)> =
        USED.iter().map(|(g, r, v)| ((*g).to_owned(), (*r).to_owned(), (*v).to_owned())).collect();
    assert_eq!(granted("cluster-role.yaml", "ClusterRole"), used);
    assert_eq!(granted("namespaced-role.yaml", "Role"), used);
}
