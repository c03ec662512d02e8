//! `spec.bootstrap`: decided once, when the cluster is created. A new cluster asking for a
//! backup is `Restoring` (its write pod gets the restore init container) until its MAIN is
//! verified, then `Completed` for good: the init container is removed (the write pod restarts
//! once) and nothing is restored again, even onto a volume recreated later. Asked for after
//! creation, it is `Ignored`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Facts, Planner};
use crate::api::BootstrapStatus;
use crate::kube_api::EventType;
use crate::names::Instance;
use crate::reconcile::observed::{ObjectKey, ObjectKind};

/// Plan `status.bootstrap`; runs before the objects, which depend on it.
pub(super) fn plan_bootstrap(p: &mut Planner<'_>, facts: &Facts) {
    let old = p.obs.status.bootstrap.clone();
    p.bootstrap = match old {
        Some(b) if b.state == "Restoring" && facts.main.verified() => {
            p.condition_event(
                EventType::Normal,
                "BootstrapCompleted",
                format!("The write instance was restored from {} and verified as MAIN", b.source),
            );
            Some(BootstrapStatus { state: "Completed".to_owned(), completed_at: Some(Time(p.now)), ..b })
        }
        Some(b) => Some(b),
        None => p.spec.bootstrap.as_ref().and_then(|b| b.from_backup.as_ref()).map(|source| {
            let write = ObjectKey::new(ObjectKind::StatefulSet, p.names.statefulset(Instance::Write));
            let new = !p.obs.objects.contains_key(&write);
            BootstrapStatus {
                state: if new { "Restoring" } else { "Ignored" }.to_owned(),
                source: format!("backup {} under s3://{}/{}", source.backup_id, source.bucket, source.prefix),
                completed_at: None,
            }
        }),
    };
}

/// Whether the write pod restores a backup before Memgraph starts.
pub(super) fn restoring(p: &Planner<'_>) -> bool {
    p.bootstrap.as_ref().is_some_and(|b| b.state == "Restoring")
}

/// Whether the write StatefulSet must wait: a bootstrap is decided but not yet recorded in the
/// status. It is created only once `Restoring` is stored, so that a status write that fails
/// cannot leave a restored cluster that the next look takes for one to ignore.
pub(super) fn hold_write(p: &Planner<'_>) -> bool {
    p.obs.status.bootstrap.is_none() && restoring(p)
}
