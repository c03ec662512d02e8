//! Owned objects: apply what is missing or changed, roll read replicas one at a time, and remove
//! replicas that are no longer wanted only after their registration is gone.

use super::{Action, Facts, Planner};
use crate::builders::{self, BuildContext};
use crate::kube_api::EventType;
use crate::names::Instance;
use crate::reconcile::desired::DesiredObject;
use crate::reconcile::observed::{ObjectKey, ObjectKind};

fn kind_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::StatefulSet => "StatefulSet",
        ObjectKind::Service => "Service",
        ObjectKind::PodDisruptionBudget => "PodDisruptionBudget",
    }
}

/// Whether `desired` must be applied: it is missing or was applied with other content.
fn differs(p: &Planner<'_>, desired: &DesiredObject) -> Option<bool> {
    match p.obs.objects.get(&desired.key()) {
        None => Some(true),
        Some(hash) => (hash.as_deref() != desired.hash()).then_some(false),
    }
}

fn apply(p: &mut Planner<'_>, desired: DesiredObject, created: bool) {
    let key = desired.key();
    p.push(Action::Apply(desired));
    let verb = if created { "Created" } else { "Updated" };
    p.event(EventType::Normal, verb, "Apply", format!("{verb} {} {}", kind_name(key.kind), key.name));
}

/// The StatefulSet of an instance. An existing one keeps the volume claim storage it was created
/// with: Kubernetes refuses changes to claim templates, and one refused apply would stop every
/// other repair. The difference is reported instead.
fn statefulset(p: &mut Planner<'_>, ctx: &BuildContext<'_>, instance: Instance) -> DesiredObject {
    let wanted = builders::storage_of(p.spec, instance);
    let name = p.names.statefulset(instance);
    match p.obs.storage.get(&name).filter(|stored| *stored != wanted) {
        Some(stored) => {
            let field = match instance {
                Instance::Write => "spec.write.storage",
                Instance::Read(_) => "spec.read.storage",
            };
            let class =
                |s: &crate::api::StorageSpec| s.storage_class_name.clone().unwrap_or_else(|| "default".to_owned());
            p.storage_pending.push(format!(
                "{name} keeps {} ({}) although {field} asks for {} ({}): Kubernetes does not allow changing a \
                 StatefulSet's volume claims; expand the claim {} by hand, or delete the StatefulSet with \
                 --cascade=orphan so it is recreated",
                stored.size.0,
                class(stored),
                wanted.size.0,
                class(wanted),
                p.names.pvc(instance)
            ));
            DesiredObject::statefulset(builders::statefulset_with_storage(ctx, instance, stored))
        }
        None => DesiredObject::statefulset(builders::statefulset(ctx, instance)),
    }
}

/// Apply every desired object that is missing or changed. Read StatefulSets whose pods would
/// restart are updated one at a time, when every other read pod is ready.
pub(super) fn plan_objects(p: &mut Planner<'_>, facts: &Facts) {
    let mut ctx = BuildContext::from_parts(p.spec, p.names.clone(), p.obs.cluster.owner_reference());
    ctx.restore = super::bootstrap::restoring(p);
    let write = statefulset(p, &ctx, Instance::Write);
    let hold_write = super::bootstrap::hold_write(p);
    let mut always: Vec<DesiredObject> = (!hold_write).then_some(write).into_iter().collect();
    always.extend([
        DesiredObject::service(builders::headless_service(&ctx, Instance::Write)),
        DesiredObject::service(builders::write_service(&ctx)),
        DesiredObject::service(builders::read_service(&ctx)),
        DesiredObject::pdb(builders::read_pdb(&ctx)),
    ]);
    let mut rolling = Vec::new();
    // The read pod a failover promoted is kept and updated like the write pod: at once (it is
    // the MAIN, and no other pod can take its writes while it restarts).
    if let Instance::Read(_) = facts.main_instance {
        always.push(DesiredObject::service(builders::headless_service(&ctx, facts.main_instance)));
        always.push(statefulset(p, &ctx, facts.main_instance));
    }
    for (&instance, replica) in &facts.replicas {
        let Instance::Read(index) = instance else { continue };
        if !replica.desired {
            continue;
        }
        let sts = statefulset(p, &ctx, instance);
        // New read replicas are created once the write instance is a verified MAIN, so they
        // join a running primary; existing ones are kept up to date regardless.
        if differs(p, &sts) == Some(true) && !facts.main.routable() {
            continue;
        }
        always.push(DesiredObject::service(builders::headless_service(&ctx, instance)));
        match differs(p, &sts) {
            Some(false) => rolling.push((index, sts)),
            _ => always.push(sts),
        }
    }
    for desired in always {
        if let Some(created) = differs(p, &desired) {
            apply(p, desired, created);
        }
    }
    // One read pod restarts at a time, and the next only once the others are back in sync (not
    // merely ready: a SYNC replica still catching up refuses writes), so reads and durability
    // drop by one replica at most during an image or config change.
    let pending: Vec<Instance> = rolling.iter().map(|(i, _)| Instance::Read(*i)).collect();
    if let Some((index, sts)) = rolling.into_iter().next() {
        let others_in_sync = facts
            .replicas
            .iter()
            .filter(|(i, r)| r.desired && **i != Instance::Read(index) && !pending.contains(i))
            // A diverged replica waits for a person, not for time: it does not hold others up.
            .all(|(_, r)| r.in_sync || r.diverged);
        if others_in_sync {
            apply(p, sts, false);
        }
    }
}

/// The replica index of a per-replica object (`CLUSTER-read-N` StatefulSet or Service).
pub(super) fn read_index_of(key: &ObjectKey) -> Option<u32> {
    let (cluster, _) = key.name.rsplit_once("-read-")?;
    read_index(cluster, &key.name)
}

/// The index `N` of an object named `CLUSTER-read-N`.
fn read_index(cluster: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(cluster)?.strip_prefix("-read-")?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse().ok()
}

/// Delete the StatefulSets and headless Services of replicas no longer wanted, once the MAIN
/// shows no registration for them (or this plan drops it first).
pub(super) fn plan_removals(p: &mut Planner<'_>, facts: &Facts) {
    let Some(rows) = facts.main.rows() else { return };
    let desired = u32::try_from(p.spec.read.replicas).unwrap_or(0);
    let dropping: Vec<String> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::DropReplica { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let keys: Vec<ObjectKey> = p
        .obs
        .objects
        .keys()
        .filter(|k| matches!(k.kind, ObjectKind::StatefulSet | ObjectKind::Service))
        .filter(|k| read_index(&p.names.cluster, &k.name).is_some_and(|n| n >= desired))
        // The MAIN stays, whatever the spec's count of read replicas.
        .filter(|k| read_index(&p.names.cluster, &k.name).map(Instance::Read) != Some(facts.main_instance))
        .cloned()
        .collect();
    for key in keys {
        let Some(index) = read_index(&p.names.cluster, &key.name) else { continue };
        let name = Instance::Read(index).replica_name();
        let registered = rows.iter().any(|r| r.name == name);
        if registered && !dropping.contains(&name) {
            continue;
        }
        let note = format!("Deleted {} {} (scaled down)", kind_name(key.kind), key.name);
        p.push(Action::Delete(key));
        p.event(EventType::Normal, "Deleted", "Delete", note);
    }
}

#[cfg(test)]
mod tests {
    use super::read_index;

    #[test]
    fn read_indices_are_parsed_strictly() {
        for (name, want) in [
            ("c-read-0", Some(0)),
            ("c-read-12", Some(12)),
            ("c-read", None),
            ("c-read-", None),
            ("c-read-01", None),
            ("c-read-1-0", None),
            ("c-write", None),
            ("cc-read-1", None),
            ("c-read-x", None),
        ] {
            assert_eq!(read_index("c", name), want, "{name}");
        }
    }
}
