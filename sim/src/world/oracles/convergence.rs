//! Oracles: safety checked continuously, liveness after the heal phase.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fake_memgraph::{ReplicaState, Role};
use memgraph_operator::api::{MemgraphCluster, StorageSpec};
use memgraph_operator::builders::{self, BuildContext, STORAGE_ANNOTATION};
use memgraph_operator::names::{ClusterNames, Instance};
use memgraph_operator::reconcile::desired::{DesiredObject, HASH_ANNOTATION};

use super::run::{CLUSTER, NAMESPACE};
use super::truth::Truth;
use crate::apiserver::{ApiServer, Key};

/// How long a routing or status claim may lag the truth before it is a violation: the
/// operator's idle requeue (30 s) plus a reconcile, for notifications it never got.
pub const REACTION: Duration = Duration::from_secs(40);

fn healthy(state: Option<ReplicaState>) -> bool {
    matches!(state, Some(ReplicaState::Ready | ReplicaState::Replicating))
}

fn desired_replicas(truth: &Truth) -> usize {
    truth.spec.as_ref().and_then(|s| s["read"]["replicas"].as_u64()).map_or(3, |n| usize::try_from(n).unwrap_or(0))
}

fn spec_mode(truth: &Truth) -> String {
    truth.spec.as_ref().and_then(|s| s["replication"]["mode"].as_str()).unwrap_or("ASYNC").to_ascii_lowercase()
}

/// Continuous safety checks, with the state they need between checks.
#[derive(Debug, Default)]
pub struct Safety {
    /// Violations found, each with when.
    pub violations: Vec<String>,
    /// Since when a claim (routing or status) has disagreed with the truth, by subject.
    lagging: BTreeMap<String, Duration>,
    /// Subjects already reported, so one episode is one violation.
    reported: BTreeSet<String>,
    /// Total time claims lagged the truth (transient misroutes), summed over checks.
    pub lag_time: Duration,
}

impl Safety {
    fn violate(&mut self, now: Duration, subject: &str, what: String) {
        if self.reported.insert(subject.to_owned()) {
            self.violations.push(format!("{:.3}s {what}", now.as_secs_f64()));
        }
    }

    /// A claim that must catch up with the truth within [`REACTION`].
    fn lagging_claim(
        &mut self,
        now: Duration,
        step: Duration,
        subject: String,
        wrong: bool,
        what: impl FnOnce() -> String,
    ) {
        if !wrong {
            self.lagging.remove(&subject);
            self.reported.remove(&subject);
            return;
        }
        self.lag_time += step;
        let since = *self.lagging.entry(subject.clone()).or_insert(now);
        if now.saturating_sub(since) > REACTION {
            let what = what();
            self.violate(now, &subject, format!("{what} for more than {} s", REACTION.as_secs()));
        }
    }

    /// Check the truth at `now`; `step` is the time since the previous check; `queries` are the
    /// Memgraph queries the operator sent since then.
    pub fn check(&mut self, now: Duration, step: Duration, truth: &Truth, queries: &[(String, String)]) {
        // At most one pod labelled main.
        let mains: Vec<&String> =
            truth.pods.iter().filter(|(_, p)| p.label.as_deref() == Some("main")).map(|(n, _)| n).collect();
        if mains.len() > 1 {
            self.violate(now, "two-mains", format!("more than one pod labelled main: {mains:?}"));
        } else {
            self.reported.remove("two-mains");
        }
        for (name, pod) in &truth.pods {
            // Every write endpoint is a MAIN in Memgraph: no grace, the label persists only on
            // the write pod, whose role is kept on its volume.
            if pod.label.as_deref() == Some("main") && pod.routable() && pod.role == Some(Role::Replica) {
                self.violate(
                    now,
                    &format!("write-endpoint {name}"),
                    format!("write Service routes to {name}, which is a REPLICA"),
                );
            }
            // Every read endpoint is a registered replica in sync.
            let replica_name = name
                .strip_prefix(&format!("{CLUSTER}-read-"))
                .and_then(|rest| rest.strip_suffix("-0"))
                .map(|i| format!("read_{i}"));
            if pod.label.as_deref() == Some("replica") && pod.routable() {
                let row = replica_name.as_ref().and_then(|n| truth.rows.get(n));
                let wrong = !pod.follows_main || !row.is_some_and(|r| healthy(r.state));
                self.lagging_claim(now, step, format!("read-endpoint {name}"), wrong, || {
                    format!(
                        "read Service routes to {name} (role {:?}, registration {:?})",
                        pod.role,
                        row.map(|r| r.state)
                    )
                });
            } else {
                self.lagging_claim(now, step, format!("read-endpoint {name}"), false, String::new);
            }
        }
        // The status claims no more healthy replicas than there are.
        if let Some(status) = &truth.status {
            let claimed = status["readyReplicas"].as_u64().unwrap_or(0);
            let real = truth
                .rows
                .iter()
                .filter(|(n, r)| {
                    healthy(r.state)
                        && truth
                            .pods
                            .get(&format!("{CLUSTER}-read-{}-0", n.trim_start_matches("read_")))
                            .is_some_and(|p| p.routable() && p.follows_main)
                })
                .count() as u64;
            self.lagging_claim(now, step, "status".to_owned(), claimed > real, || {
                format!("status claims {claimed} ready replicas while {real} are")
            });
        }
        // The operator only asks what it may, and never drops a healthy wanted replica.
        for (address, query) in queries {
            let allowed = query == "SHOW REPLICATION ROLE"
                || query == "SHOW REPLICAS"
                || query == "CREATE SNAPSHOT"
                || query == "MATCH (n) RETURN count(n) AS nodes"
                || query.starts_with("REGISTER REPLICA read_")
                || query.starts_with("DROP REPLICA ")
                || (query == "SET REPLICATION ROLE TO REPLICA WITH PORT 10000"
                    && address.starts_with(&format!("{CLUSTER}-read-")));
            if !allowed {
                self.violate(now, &format!("query {query} {address}"), format!("operator sent '{query}' to {address}"));
            }
            if let Some(name) = query.strip_prefix("DROP REPLICA ") {
                let index = name.strip_prefix("read_").and_then(|i| i.parse::<usize>().ok());
                let wanted = index.is_some_and(|i| i < desired_replicas(truth));
                let pod = index.and_then(|i| truth.pods.get(&format!("{CLUSTER}-read-{i}-0")));
                let names = ClusterNames::new(CLUSTER, NAMESPACE);
                let as_specified = truth.rows.get(name).is_some_and(|r| {
                    index.is_some_and(|i| r.address == names.replication_address(Instance::Read(i as u32)))
                        && r.mode == spec_mode(truth)
                        && healthy(r.state)
                });
                if wanted && as_specified && pod.is_some_and(|p| p.routable() && p.follows_main) {
                    self.violate(
                        now,
                        &format!("drop {name} {}", now.as_millis()),
                        format!("operator dropped {name} while wanted and healthy"),
                    );
                }
            }
        }
    }
}

/// Why the cluster is not (yet) converged, or `Ok` when it is: the state must equal a fresh
/// deploy of the final spec.
pub fn converged(api: &ApiServer, truth: &Truth, digest: impl Fn(&str) -> Option<u64>) -> Result<(), String> {
    let value = api.get_json(&Key::new("MemgraphCluster", NAMESPACE, CLUSTER)).ok_or("the cluster is gone")?;
    let cluster: MemgraphCluster = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let status = cluster.status.clone().unwrap_or_default();
    let desired = usize::try_from(cluster.spec.read.replicas).unwrap_or(0);
    if format!("{:?}", status.phase) != "Running" {
        return Err(format!("phase {:?}", status.phase));
    }
    if status.observed_generation != cluster.metadata.generation {
        return Err("status describes an older generation".into());
    }
    if status.ready_replicas != desired as i32 || status.registered_replicas != desired as i32 {
        return Err(format!(
            "status counts {} ready / {} registered, want {desired}",
            status.ready_replicas, status.registered_replicas
        ));
    }
    // Claim storage of existing StatefulSets, which Kubernetes never changes.
    let stored: BTreeMap<String, StorageSpec> = api
        .list_json("StatefulSet", NAMESPACE, &BTreeMap::new())
        .iter()
        .filter_map(|s| {
            let name = s["metadata"]["name"].as_str()?.to_owned();
            let storage = serde_json::from_str(s["metadata"]["annotations"][STORAGE_ANNOTATION].as_str()?).ok()?;
            Some((name, storage))
        })
        .collect();
    let names = ClusterNames::new(CLUSTER, NAMESPACE);
    let pending = std::iter::once(Instance::Write)
        .chain((0..u32::try_from(desired).unwrap_or(0)).map(Instance::Read))
        .any(|i| stored.get(&names.statefulset(i)).is_some_and(|s| s != builders::storage_of(&cluster.spec, i)));
    for c in &status.conditions {
        let good = match c.type_.as_str() {
            "InvalidSpec" | "DataDivergence" => c.status == "False",
            // False exactly while a refused storage change is pending.
            "StorageInSync" => (c.status == "False") == pending,
            _ => c.status == "True",
        };
        if !good {
            return Err(format!("condition {} is {}: {}", c.type_, c.status, c.message));
        }
    }
    let write = format!("{CLUSTER}-write-0");
    let main = truth.pods.get(&write).ok_or("no write pod")?;
    if main.role != Some(Role::Main) || main.label.as_deref() != Some("main") || !main.routable() {
        return Err(format!("write pod: {main:?}"));
    }
    let want_rows: BTreeSet<String> = (0..desired).map(|i| format!("read_{i}")).collect();
    let rows: BTreeSet<String> = truth.rows.keys().cloned().collect();
    if rows != want_rows {
        return Err(format!("registered {rows:?}, want {want_rows:?}"));
    }
    let mode = cluster.spec.replication.mode.as_show_replicas();
    for (name, row) in &truth.rows {
        if !healthy(row.state) || row.mode != mode {
            return Err(format!("{name}: {:?} in {}", row.state, row.mode));
        }
    }
    let want_pods: BTreeSet<String> =
        std::iter::once(write.clone()).chain((0..desired).map(|i| format!("{CLUSTER}-read-{i}-0"))).collect();
    let pods: BTreeSet<String> = truth.pods.keys().cloned().collect();
    if pods != want_pods {
        return Err(format!("pods {pods:?}"));
    }
    for i in 0..desired {
        let name = format!("{CLUSTER}-read-{i}-0");
        let pod = &truth.pods[&name];
        if pod.label.as_deref() != Some("replica") || !pod.routable() || pod.role != Some(Role::Replica) {
            return Err(format!("{name}: {pod:?}"));
        }
        if digest(&name) != digest(&write) {
            return Err(format!("{name} has not caught up with the MAIN"));
        }
    }
    // Owned objects equal a fresh deploy of the final spec (same names, same applied content).
    let ctx = BuildContext::new(&cluster).map_err(|e| e.to_string())?;
    let mut want: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
    let mut add = |kind: &str, object: DesiredObject| {
        want.insert((kind.to_owned(), object.key().name), object.hash().map(str::to_owned));
    };
    let sts = |instance: Instance| {
        let storage = stored.get(&names.statefulset(instance)).unwrap_or(builders::storage_of(&cluster.spec, instance));
        DesiredObject::statefulset(builders::statefulset_with_storage(&ctx, instance, storage))
    };
    add("StatefulSet", sts(Instance::Write));
    add("Service", DesiredObject::service(builders::headless_service(&ctx, Instance::Write)));
    add("Service", DesiredObject::service(builders::write_service(&ctx)));
    add("Service", DesiredObject::service(builders::read_service(&ctx)));
    add("PodDisruptionBudget", DesiredObject::pdb(builders::read_pdb(&ctx)));
    for i in 0..u32::try_from(desired).unwrap_or(0) {
        add("StatefulSet", sts(Instance::Read(i)));
        add("Service", DesiredObject::service(builders::headless_service(&ctx, Instance::Read(i))));
    }
    let mut have = BTreeMap::new();
    for kind in ["StatefulSet", "Service", "PodDisruptionBudget"] {
        for object in api.list_json(kind, NAMESPACE, &BTreeMap::new()) {
            let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            let hash = object["metadata"]["annotations"][HASH_ANNOTATION].as_str().map(str::to_owned);
            have.insert((kind.to_owned(), name), hash);
        }
    }
    if have != want {
        let extra: Vec<_> = have.keys().filter(|k| !want.contains_key(*k)).collect();
        let missing: Vec<_> = want.keys().filter(|k| !have.contains_key(*k)).collect();
        let stale: Vec<_> =
            want.iter().filter(|(k, v)| have.get(*k).is_some_and(|h| h != *v)).map(|(k, _)| k).collect();
        return Err(format!(
            "objects differ from a fresh deploy: extra {extra:?}, missing {missing:?}, stale {stale:?}"
        ));
    }
    Ok(())
}
