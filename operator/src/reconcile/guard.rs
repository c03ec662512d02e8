//! The route guard: removes a role label the moment a pod stops deserving it because its
//! container is not what was verified (not ready, terminating, or restarted since), without
//! waiting for the cluster's reconcile, which may be busy for seconds with a slow query. A
//! container that restarted on an emptied volume is a fresh MAIN; it must not take writes
//! through a label verified on its predecessor.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::kube_api::LabelPatch;
use crate::names::{LABEL_ROLE, LABEL_VERIFIED_RESTARTS};

/// Name of the Memgraph container in the pods the operator creates.
pub const CONTAINER: &str = "memgraph";

/// Restarts of the Memgraph container of `pod`.
pub fn restarts(pod: &Pod) -> i64 {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter(|c| c.name == CONTAINER)
        .map(|c| i64::from(c.restart_count))
        .sum()
}

/// The labels that set (or, with `None`, remove) a verified role.
pub fn role_labels(role: Option<&str>, restarts: i64) -> LabelPatch {
    LabelPatch::from([
        (LABEL_ROLE.to_owned(), role.map(str::to_owned)),
        (LABEL_VERIFIED_RESTARTS.to_owned(), role.map(|_| restarts.to_string())),
    ])
}

/// The patch that removes `pod`'s role label, if it carries one it no longer deserves:
/// the pod is not Ready, is terminating, or its container restarted since the role was verified.
pub fn guard(pod: &Pod) -> Option<LabelPatch> {
    pod.labels().get(LABEL_ROLE)?;
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let verified = pod.labels().get(LABEL_VERIFIED_RESTARTS).and_then(|v| v.parse::<i64>().ok());
    let stale = !ready || pod.metadata.deletion_timestamp.is_some() || verified != Some(restarts(pod));
    stale.then(|| role_labels(None, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: serde_json::Value, ready: bool, restarts: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "c-write-0", "labels": labels},
            "status": {
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": [{"name": "memgraph", "restartCount": restarts, "ready": ready, "image": "", "imageID": ""}]
            }
        }))
        .expect("pod")
    }

    #[test]
    fn labels_verified_on_this_container_of_a_ready_pod_stay() {
        let labelled = json!({"memgraph.io/role": "main", "memgraph.io/verified-restarts": "2"});
        assert_eq!(guard(&pod(labelled.clone(), true, 2)), None);
        assert_eq!(guard(&pod(json!({"other": "x"}), false, 0)), None, "nothing to remove");
        for (why, p) in [
            ("not ready", pod(labelled.clone(), false, 2)),
            ("restarted since", pod(labelled.clone(), true, 3)),
            ("never stamped", pod(json!({"memgraph.io/role": "replica"}), true, 0)),
        ] {
            let patch = guard(&p).unwrap_or_else(|| panic!("{why}: the label must go"));
            assert_eq!(patch.get(LABEL_ROLE), Some(&None), "{why}");
            assert_eq!(patch.get(LABEL_VERIFIED_RESTARTS), Some(&None), "{why}");
        }
    }
}
