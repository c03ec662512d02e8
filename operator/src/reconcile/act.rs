//! `act`: carry out a plan in order, stopping at the first failure. Every action is safe to
//! repeat; the controller runtime requeues with backoff on error.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use super::ReconcileError;
use super::desired::DesiredObject;
use super::observed::{ObjectKind, Observed};
use super::plan::Action;
use crate::kube_api::{ClusterEvent, Kube};
use crate::memgraph::{self, Bolt};
use crate::names::{ClusterNames, Instance, LABEL_ROLE, REPLICATION_PORT};

/// Execute `actions`. Returns how many ran; stops at the first failure. Failing to publish an
/// event is logged and does not stop the plan.
pub async fn act<K: Kube>(
    kube: &K,
    bolt: &dyn Bolt,
    obs: &Observed,
    actions: &[Action],
) -> Result<usize, ReconcileError> {
    let names = ClusterNames::new(obs.cluster.name.clone(), obs.cluster.namespace.clone());
    let ns = names.namespace.as_str();
    let main = names.bolt_address(Instance::Write);
    for (done, action) in actions.iter().enumerate() {
        let result = match action {
            Action::SetFinalizers { finalizers, resource_version } => {
                kube.set_finalizers(ns, &names.cluster, finalizers, resource_version).await.map_err(Into::into)
            }
            Action::Apply(DesiredObject::StatefulSet(o)) => kube.apply(o.as_ref()).await.map(drop).map_err(Into::into),
            Action::Apply(DesiredObject::Service(o)) => kube.apply(o.as_ref()).await.map(drop).map_err(Into::into),
            Action::Apply(DesiredObject::PodDisruptionBudget(o)) => {
                kube.apply(o.as_ref()).await.map(drop).map_err(Into::into)
            }
            Action::Delete(key) => match key.kind {
                ObjectKind::StatefulSet => kube.delete::<StatefulSet>(ns, &key.name).await,
                ObjectKind::Service => kube.delete::<Service>(ns, &key.name).await,
                ObjectKind::PodDisruptionBudget => kube.delete::<PodDisruptionBudget>(ns, &key.name).await,
            }
            .map_err(Into::into),
            Action::SetReplicaRole(instance) => {
                memgraph::set_replica_role(bolt, &names.bolt_address(*instance), REPLICATION_PORT)
                    .await
                    .map_err(Into::into)
            }
            Action::RegisterReplica { instance, mode } => memgraph::register_replica(
                bolt,
                &main,
                &instance.replica_name(),
                *mode,
                &names.replication_address(*instance),
            )
            .await
            .map_err(Into::into),
            Action::DropReplica { name } => memgraph::drop_replica(bolt, &main, name).await.map_err(Into::into),
            Action::Label { pod, uid, role } => {
                let labels = BTreeMap::from([(LABEL_ROLE.to_owned(), role.clone())]);
                kube.patch_pod_labels(ns, pod, uid, &labels).await.map_err(Into::into)
            }
            Action::CreateSnapshot => memgraph::create_snapshot(bolt, &main).await.map(drop).map_err(Into::into),
            Action::PatchStatus(status) => kube.patch_status(ns, &names.cluster, status).await.map_err(Into::into),
            Action::Event(event) => {
                let event = ClusterEvent {
                    regarding: obs.cluster.reference.clone(),
                    type_: event.type_,
                    reason: event.reason.clone(),
                    action: event.action.clone(),
                    note: event.note.clone(),
                };
                if let Err(e) = kube.publish_event(&event).await {
                    tracing::warn!(error = %e, reason = %event.reason, "could not publish event");
                }
                Ok(())
            }
        };
        if let Err(error) = result {
            tracing::warn!(cluster = %names.cluster, action = ?ActionName(action), %error, "action failed");
            return Err(error);
        }
        tracing::debug!(cluster = %names.cluster, action = ?ActionName(action), step = done, "done");
    }
    Ok(actions.len())
}

/// Short description of an action for logs (objects are not dumped whole).
struct ActionName<'a>(&'a Action);

impl std::fmt::Debug for ActionName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Action::Apply(o) => write!(f, "Apply({:?})", o.key()),
            Action::PatchStatus(s) => write!(f, "PatchStatus({:?})", s.phase),
            other => write!(f, "{other:?}"),
        }
    }
}
