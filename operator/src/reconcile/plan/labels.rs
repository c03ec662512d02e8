//! Role labels: the Services route by them, so they follow evidence (see [`Route`]). `main`
//! goes only on the write pod verified as MAIN, `replica` only on replicas the MAIN reports in
//! sync; a label is removed only when something says routing to the pod is wrong, never because
//! the operator could not look. Removals come first so two pods never carry `main` at once.

use super::{Action, Facts, MainFacts, Planner, Route};
use crate::names::{Instance, ROLE_MAIN, ROLE_REPLICA};

/// What the label of the instance held as MAIN should be. While a failover is under way its
/// target is labelled only when the failover completes (every answering replica registered).
fn main_route(p: &Planner<'_>, main: &MainFacts) -> Route {
    let failing_over = p.failover.as_ref().and_then(|f| f.status.as_ref()).is_some_and(|s| s.intent.is_some());
    if failing_over {
        Route::No
    } else if main.verified() {
        Route::Yes
    } else if main.unroutable() {
        Route::No
    } else {
        Route::Unknown
    }
}

/// Plan the label changes.
pub(super) fn plan_labels(p: &mut Planner<'_>, facts: &Facts) {
    // A replica this plan registers again is not what was observed any more: it is labelled
    // only after a fresh look.
    let touched: Vec<Instance> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::SetReplicaRole(i)
            | Action::Promote { instance: i, .. }
            | Action::RegisterReplica { instance: i, .. } => Some(*i),
            Action::DropReplica { name, .. } => Instance::from_replica_name(name),
            _ => None,
        })
        .collect();
    // `main` goes on only once no other pod is seen carrying it: a removal planned beside it may
    // fail (an admission policy refusing the patch), and two pods would then take writes.
    let main_elsewhere = p
        .obs
        .pods
        .iter()
        .any(|(instance, pod)| *instance != facts.main_instance && pod.role_label.as_deref() == Some(ROLE_MAIN));
    let mut removals = Vec::new();
    let mut additions = Vec::new();
    for (instance, pod) in &p.obs.pods {
        let (route, role) = if *instance == facts.main_instance {
            (main_route(p, &facts.main), ROLE_MAIN)
        } else {
            (facts.replicas.get(instance).map_or(Route::No, |r| r.route), ROLE_REPLICA)
        };
        let route = if route == Route::Yes && touched.contains(instance) { Route::Unknown } else { route };
        let route = if role == ROLE_MAIN && main_elsewhere && pod.role_label.as_deref() != Some(ROLE_MAIN) {
            Route::Unknown
        } else {
            route
        };
        // A label verified on an earlier container of the pod says nothing about this one.
        let stamped = pod.verified_restarts == Some(pod.restarts);
        let wanted = match route {
            _ if pod.terminating => None,
            Route::Yes => Some(role),
            Route::No => None,
            // Only the label the pod may carry, verified on this container, is kept.
            Route::Unknown => pod.role_label.as_deref().filter(|l| *l == role && stamped),
        };
        if pod.role_label.as_deref() == wanted && (wanted.is_none() || stamped) {
            continue;
        }
        let action = Action::Label {
            pod: pod.name.clone(),
            uid: pod.uid.clone(),
            role: wanted.map(str::to_owned),
            restarts: pod.restarts,
        };
        if p.actions.contains(&action) {
            continue;
        }
        if wanted.is_none() { removals.push(action) } else { additions.push(action) }
    }
    p.actions.extend(removals);
    p.actions.extend(additions);
    // A replica in its grace is looked at again when the grace ends.
    let graces: Vec<_> = facts
        .replicas
        .values()
        .filter(|r| r.route == Route::Unknown)
        .filter_map(|r| r.unhealthy_since)
        .filter_map(|since| since.checked_add(super::ROUTE_GRACE).ok())
        .filter(|at| *at > p.now)
        .collect();
    for at in graces {
        p.due(at);
    }
}
