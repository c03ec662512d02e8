//! The StatefulSet controller, as far as the operator relies on it: one pod `NAME-0` per
//! StatefulSet with a PersistentVolumeClaim `data-NAME-0`, recreated after deletion, replaced
//! when the pod template changes, and claims owned by the StatefulSet when its retention policy
//! says `Delete`. Runtime-independent: it only edits API objects.

use serde_json::{Value, json};

use crate::apiserver::{ApiServer, Key};

/// Label carrying the template revision a pod was created from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Revision of a StatefulSet's pod template.
pub fn revision(sts: &Value) -> String {
    let template = serde_json::to_vec(&sts["spec"]["template"]).unwrap_or_default();
    format!("{}-{:010x}", sts["metadata"]["name"].as_str().unwrap_or_default(), fnv1a(&template) & 0xff_ffff_ffff)
}

fn owner_ref(sts: &Value, controller: bool) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": sts["metadata"]["name"],
        "uid": sts["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": true,
    })
}

/// Bring pods and claims in line with every StatefulSet. Returns how many objects changed.
pub fn sync_statefulsets(api: &ApiServer) -> usize {
    let mut changed = 0;
    for (key, sts) in api.all_of_kind("StatefulSet") {
        if !sts["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let pod_name = format!("{}-0", key.name);
        let revision = revision(&sts);
        let template = &sts["spec"]["template"];
        for claim in sts["spec"]["volumeClaimTemplates"].as_array().into_iter().flatten() {
            let claim_name = format!("{}-{pod_name}", claim["metadata"]["name"].as_str().unwrap_or("data"));
            if api.get_json(&Key::new("PersistentVolumeClaim", &key.namespace, &claim_name)).is_none() {
                let delete_with_sts =
                    sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"].as_str() == Some("Delete");
                let owners = if delete_with_sts { json!([owner_ref(&sts, false)]) } else { json!([]) };
                let created = api.create(json!({
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {
                        "name": claim_name,
                        "namespace": key.namespace,
                        "labels": claim["metadata"]["labels"],
                        "ownerReferences": owners,
                    },
                    "spec": claim["spec"],
                    "status": {"phase": "Bound"},
                }));
                changed += usize::from(created.is_ok());
            }
        }
        let pod_key = Key::new("Pod", &key.namespace, &pod_name);
        match api.get_json(&pod_key) {
            None => {
                let mut labels = template["metadata"]["labels"].clone();
                if !labels.is_object() {
                    labels = json!({});
                }
                labels[REVISION_LABEL] = json!(revision);
                // StatefulSet pods are named hosts under the governing headless Service.
                let mut spec = template["spec"].clone();
                spec["hostname"] = json!(pod_name);
                spec["subdomain"] = sts["spec"]["serviceName"].clone();
                let created = api.create(json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": pod_name,
                        "namespace": key.namespace,
                        "labels": labels,
                        "ownerReferences": [owner_ref(&sts, true)],
                    },
                    "spec": spec,
                    "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]},
                }));
                changed += usize::from(created.is_ok());
            }
            Some(pod) => {
                let stale = pod["metadata"]["labels"][REVISION_LABEL].as_str() != Some(revision.as_str());
                if stale && pod["metadata"]["deletionTimestamp"].is_null() {
                    // Rolling update of a one-pod StatefulSet: replace the pod.
                    api.delete_key(&pod_key);
                    changed += 1;
                }
            }
        }
    }
    changed
}
