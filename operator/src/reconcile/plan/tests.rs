//! Table and property tests of `plan`, against a small model of the world in which every action
//! succeeds at once.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{MemgraphClusterStatus, ReplicationMode};
use crate::builders::{self, BuildContext};
use crate::memgraph::{ReplicaData, ReplicaRow, ReplicaStatus};
use crate::names::{ClusterNames, Instance};
use crate::reconcile::desired::DesiredObject;
use crate::reconcile::observed::{ClusterMeta, MemgraphState, ObjectKey, Observed, PodState};

pub(crate) fn t(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn now() -> Timestamp {
    t("2026-06-01T12:07:00Z")
}

fn names() -> ClusterNames {
    ClusterNames::new("c", "ns")
}

fn meta() -> ClusterMeta {
    ClusterMeta {
        name: "c".into(),
        namespace: "ns".into(),
        uid: "uid-1".into(),
        generation: Some(1),
        resource_version: "1".into(),
        deleting: false,
        has_finalizer: true,
        other_finalizers: vec![],
        created: Some(t("2026-06-01T12:00:00Z")),
        backup_request: None,
        switchover_request: None,
        reference: ObjectReference::default(),
    }
}

fn pod(instance: Instance, memgraph: MemgraphState) -> PodState {
    PodState {
        name: names().pod(instance),
        uid: format!("uid-{}", names().pod(instance)),
        ready: true,
        terminating: false,
        role_label: None,
        restarts: 0,
        verified_restarts: None,
        not_ready_since: None,
        memgraph,
    }
}

fn row(index: u32, status: ReplicaStatus) -> ReplicaRow {
    ReplicaRow {
        name: Instance::Read(index).replica_name(),
        socket_address: names().replication_address(Instance::Read(index)),
        sync_mode: "async".into(),
        data: Some(ReplicaData { ts: 10, behind: 0, status }),
    }
}

fn spec(replicas: i32) -> MemgraphClusterSpec {
    let mut spec = MemgraphClusterSpec::default();
    spec.read.replicas = replicas;
    spec
}

/// The objects the spec wants, with their hashes.
fn desired_objects(spec: &MemgraphClusterSpec, meta: &ClusterMeta) -> BTreeMap<ObjectKey, Option<String>> {
    let ctx = BuildContext::from_parts(spec, names(), meta.owner_reference());
    let mut objects = vec![
        DesiredObject::statefulset(builders::statefulset(&ctx, Instance::Write)),
        DesiredObject::service(builders::headless_service(&ctx, Instance::Write)),
        DesiredObject::service(builders::write_service(&ctx)),
        DesiredObject::service(builders::read_service(&ctx)),
        DesiredObject::pdb(builders::read_pdb(&ctx)),
    ];
    for i in 0..u32::try_from(spec.read.replicas).unwrap_or(0) {
        objects.push(DesiredObject::statefulset(builders::statefulset(&ctx, Instance::Read(i))));
        objects.push(DesiredObject::service(builders::headless_service(&ctx, Instance::Read(i))));
    }
    objects.into_iter().map(|o| (o.key(), o.hash().map(str::to_owned))).collect()
}

/// An observation where every pod is up and nothing is registered yet.
fn fresh(replicas: i32) -> (MemgraphClusterSpec, Observed) {
    let spec = spec(replicas);
    let mut pods = BTreeMap::new();
    pods.insert(
        Instance::Write,
        pod(Instance::Write, MemgraphState::Main { replicas: Some(Ok(vec![])), nodes: Some(0) }),
    );
    for i in 0..u32::try_from(replicas).unwrap_or(0) {
        pods.insert(
            Instance::Read(i),
            pod(Instance::Read(i), MemgraphState::Main { replicas: Some(Ok(vec![])), nodes: Some(0) }),
        );
    }
    let obs = Observed {
        cluster: meta(),
        spec: spec.clone(),
        status: MemgraphClusterStatus::default(),
        objects: BTreeMap::new(),
        storage: BTreeMap::new(),
        pods,
        secrets: BTreeMap::new(),
        snapshot_running: false,
        validation_running: false,
        validation_done: None,
        fresh_test_id: String::new(),
        agent_key_exists: false,
        fresh_agent_key: "ab".repeat(32),
        stalls: BTreeMap::new(),
        started: None,
        probe: Default::default(),
    };
    (spec, obs)
}

fn write_rows(obs: &mut Observed) -> Option<&mut Vec<ReplicaRow>> {
    rows_of(obs, Instance::Write)
}

fn rows_of(obs: &mut Observed, main: Instance) -> Option<&mut Vec<ReplicaRow>> {
    match &mut obs.pods.get_mut(&main)?.memgraph {
        MemgraphState::Main { replicas: Some(Ok(rows)), .. } => Some(rows),
        _ => None,
    }
}

/// The model: apply a plan as if each action succeeded at once, then write its status.
fn apply(spec: &MemgraphClusterSpec, obs: &mut Observed, plan: &Plan) {
    apply_actions(spec, obs, &plan.actions);
    let mut status = (*plan.status).clone();
    if plan.actions.iter().any(|a| matches!(a, Action::CreateSnapshot { .. })) {
        status.last_snapshot_time = status.last_snapshot_tick.clone();
    }
    failures::record(&mut status, &obs.status, &[], |s| plan.held.iter().any(|h| h == s), now());
    obs.status = status;
}

fn apply_actions(spec: &MemgraphClusterSpec, obs: &mut Observed, actions: &[Action]) {
    for action in actions {
        match action {
            Action::SetFinalizers { finalizers, .. } => {
                obs.cluster.has_finalizer = finalizers.iter().any(|f| f == crate::names::FINALIZER);
            }
            Action::Apply(o) => {
                obs.objects.insert(o.key(), o.hash().map(str::to_owned));
                if let DesiredObject::StatefulSet(sts) = o {
                    let stored = sts
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(crate::builders::STORAGE_ANNOTATION))
                        .and_then(|a| serde_json::from_str(a).ok());
                    // Kubernetes never changes an existing claim template.
                    if let Some(stored) = stored {
                        obs.storage.entry(o.key().name).or_insert(stored);
                    }
                }
            }
            Action::Delete(key) => {
                obs.objects.remove(key);
                obs.storage.remove(&key.name);
            }
            Action::SetReplicaRole(i) => {
                if let Some(p) = obs.pods.get_mut(i) {
                    p.memgraph = MemgraphState::Replica { nodes: p.memgraph.nodes() };
                }
            }
            Action::Promote { instance: i, demote } => {
                if let Some(old) = demote {
                    let p = obs.pods.get_mut(old).expect("demote a pod");
                    p.memgraph = MemgraphState::Replica { nodes: p.memgraph.nodes() };
                }
                let p = obs.pods.get_mut(i).expect("promote a pod");
                assert!(matches!(p.memgraph, MemgraphState::Replica { .. }), "promoted a non-replica");
                p.memgraph = MemgraphState::Main { replicas: Some(Ok(vec![])), nodes: p.memgraph.nodes() };
            }
            Action::RegisterReplica { main, instance, mode } => {
                let r = ReplicaRow {
                    name: instance.replica_name(),
                    socket_address: names().replication_address(*instance),
                    sync_mode: mode.as_show_replicas().to_owned(),
                    data: Some(ReplicaData { ts: 10, behind: 0, status: ReplicaStatus::Ready }),
                };
                rows_of(obs, *main).expect("register on a MAIN").push(r);
            }
            Action::DropReplica { main, name } => {
                rows_of(obs, *main).expect("drop on a MAIN").retain(|r| &r.name != name);
            }
            Action::Label { pod, role, restarts, .. } => {
                for p in obs.pods.values_mut().filter(|p| &p.name == pod) {
                    p.role_label = role.clone();
                    p.verified_restarts = role.as_ref().map(|_| *restarts);
                }
            }
            Action::StopPod { pod, uid } => {
                // Deleted gracefully: terminating, then stopped by its kubelet.
                for p in obs.pods.values_mut().filter(|p| &p.name == pod && &p.uid == uid) {
                    p.terminating = true;
                    p.ready = false;
                }
            }
            Action::CreateAgentKey(_) => obs.agent_key_exists = true,
            Action::CreateSnapshot { .. } | Action::Event(_) => {}
        }
    }
    obs.spec = spec.clone();
}

/// Plan and apply until the plan is empty; returns the number of rounds.
fn converge(spec: &MemgraphClusterSpec, obs: &mut Observed, max: usize) -> usize {
    for round in 0..max {
        let plan = plan(spec, obs, now());
        if plan.is_empty() {
            return round;
        }
        apply(spec, obs, &plan);
    }
    panic!("no fixpoint after {max} rounds: {:?}", plan(spec, obs, now()).actions)
}

fn healthy(replicas: i32) -> (MemgraphClusterSpec, Observed) {
    let (spec, mut obs) = fresh(replicas);
    converge(&spec, &mut obs, 10);
    (spec, obs)
}

fn kinds(plan: &Plan) -> Vec<String> {
    let mut kinds: Vec<String> = plan
        .actions
        .iter()
        .filter(|a| !matches!(a, Action::Event(_)))
        .map(|a| match a {
            Action::SetFinalizers { .. } => "SetFinalizers".to_owned(),
            Action::Apply(o) => format!("Apply {}", o.key().name),
            Action::Delete(k) => format!("Delete {}", k.name),
            Action::SetReplicaRole(i) => format!("SetReplicaRole {}", i.replica_name()),
            Action::Promote { instance, demote: None } => format!("Promote {}", instance.replica_name()),
            Action::Promote { instance, demote: Some(old) } => {
                format!("Promote {} after demoting {}", instance.replica_name(), old.replica_name())
            }
            Action::RegisterReplica { main, instance, mode } => {
                let on = if *main == Instance::Write { String::new() } else { format!(" on {}", main.replica_name()) };
                format!("Register {} {}{on}", instance.replica_name(), mode.as_cypher())
            }
            Action::DropReplica { main, name } => {
                let on = if *main == Instance::Write { String::new() } else { format!(" on {}", main.replica_name()) };
                format!("Drop {name}{on}")
            }
            Action::Label { pod, role, .. } => format!("Label {pod} {}", role.as_deref().unwrap_or("-")),
            Action::StopPod { pod, .. } => format!("StopPod {pod}"),
            Action::CreateSnapshot { .. } => "CreateSnapshot".to_owned(),
            Action::CreateAgentKey(_) => "CreateAgentKey".to_owned(),
            Action::Event(_) => unreachable!(),
        })
        .collect();
    if plan.status_changed {
        kinds.push("PatchStatus".to_owned());
    }
    kinds
}

fn condition<'a>(obs: &'a Observed, type_: &str) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    obs.status.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no condition {type_}"))
}

#[test]
fn a_new_cluster_creates_objects_then_registers_then_labels() {
    let (spec, mut obs) = fresh(2);
    obs.cluster.has_finalizer = false;
    let first = plan(&spec, &obs, now());
    let k = kinds(&first);
    assert_eq!(k[0], "SetFinalizers", "finalizer before anything is created");
    assert!(k.contains(&"Apply c-write".to_owned()));
    assert!(k.contains(&"Apply c-read-1".to_owned()));
    // The pods exist (model) and the read pods are fresh MAINs: demote and register in order.
    let set = k.iter().position(|a| a == "SetReplicaRole read_0").expect("demote read_0");
    let reg = k.iter().position(|a| a == "Register read_0 ASYNC").expect("register read_0");
    assert!(set < reg);
    // Nothing is labelled before it is verified.
    assert!(k.iter().all(|a| !a.starts_with("Label c-read")), "{k:?}");
    apply(&spec, &mut obs, &first);
    let second = kinds(&plan(&spec, &obs, now()));
    assert!(second.contains(&"Label c-read-0-0 replica".to_owned()), "{second:?}");
    assert!(second.contains(&"Label c-read-1-0 replica".to_owned()));
    let (_, healthy) = healthy(2);
    assert_eq!(healthy.status.phase, crate::api::Phase::Running);
    assert_eq!(healthy.status.ready_replicas, 2);
    assert_eq!(healthy.status.main_pod.as_deref(), Some("c-write-0"));
}

#[test]
fn read_replicas_are_created_after_the_write_instance_is_verified() {
    let (spec, mut obs) = fresh(2);
    obs.pods.clear();
    let k = kinds(&plan(&spec, &obs, now()));
    assert!(k.contains(&"Apply c-write".to_owned()) && k.contains(&"Apply c-write-hl".to_owned()), "{k:?}");
    assert!(!k.iter().any(|a| a.starts_with("Apply c-read-")), "no read replica before the MAIN: {k:?}");
    let (_, ready) = fresh(2);
    obs.pods.insert(Instance::Write, ready.pods[&Instance::Write].clone());
    let k = kinds(&plan(&spec, &obs, now()));
    assert!(k.contains(&"Apply c-read-0".to_owned()) && k.contains(&"Apply c-read-1".to_owned()), "{k:?}");
}

#[test]
fn a_healthy_cluster_plans_nothing() {
    for replicas in [0, 1, 3, 5] {
        let (spec, obs) = healthy(replicas);
        let plan = plan(&spec, &obs, now());
        assert!(plan.is_empty(), "replicas={replicas}: {:?}", kinds(&plan));
        assert_eq!(plan.requeue_after, REQUEUE_IDLE);
    }
}

#[test]
fn table_of_replica_repairs() {
    type Case = (&'static str, fn(&mut Observed), &'static [&'static str], &'static [&'static str]);
    let cases: Vec<Case> = vec![
        (
            "read pod came back empty as MAIN",
            |o| {
                write_rows(o).expect("rows").retain(|r| r.name != "read_1");
                o.pods.get_mut(&Instance::Read(1)).expect("pod").memgraph =
                    MemgraphState::Main { replicas: Some(Ok(vec![])), nodes: Some(0) };
            },
            &["SetReplicaRole read_1", "Register read_1 ASYNC", "Label c-read-1-0 -"],
            &[],
        ),
        (
            "read pod is a MAIN with replicas of its own",
            |o| {
                write_rows(o).expect("rows").retain(|r| r.name != "read_1");
                o.pods.get_mut(&Instance::Read(1)).expect("pod").memgraph =
                    MemgraphState::Main { replicas: Some(Ok(vec![row(0, ReplicaStatus::Ready)])), nodes: Some(5) };
            },
            &["Label c-read-1-0 -"],
            &["SetReplicaRole read_1", "Register read_1 ASYNC"],
        ),
        (
            "half-failed registration",
            |o| write_rows(o).expect("rows")[1].data = None,
            &["Drop read_1", "Register read_1 ASYNC", "Label c-read-1-0 -"],
            &[],
        ),
        (
            "wrong address",
            |o| write_rows(o).expect("rows")[2].socket_address = "10.0.0.9:10000".into(),
            &["Drop read_2", "Register read_2 ASYNC"],
            &[],
        ),
        (
            "replica missing from MAIN after MAIN restart",
            |o| write_rows(o).expect("rows").retain(|r| r.name != "read_0"),
            &["Register read_0 ASYNC", "Label c-read-0-0 -"],
            &[],
        ),
        (
            "invalid within the grace periods keeps its label and registration",
            |o| write_rows(o).expect("rows")[0].data.as_mut().expect("data").status = ReplicaStatus::Invalid,
            &[],
            &["Drop read_0", "Label c-read-0-0 -"],
        ),
        (
            "out of sync beyond the label grace loses its label, not its registration",
            |o| {
                write_rows(o).expect("rows")[0].data.as_mut().expect("data").status = ReplicaStatus::Invalid;
                let since = Time(now() - std::time::Duration::from_secs(ROUTE_GRACE.as_secs() + 1));
                for r in o.status.validation.iter_mut().flat_map(|v| v.replicas.iter_mut()) {
                    if r.name == "read-0" {
                        r.unhealthy_since = Some(since.clone());
                    }
                }
            },
            &["Label c-read-0-0 -"],
            &["Drop read_0"],
        ),
        (
            "recovering replica is left alone",
            |o| write_rows(o).expect("rows")[0].data.as_mut().expect("data").status = ReplicaStatus::Recovery,
            &[],
            &["Drop read_0", "Register read_0 ASYNC", "Label c-read-0-0 -"],
        ),
        (
            "diverged replica is never touched",
            |o| write_rows(o).expect("rows")[1].data.as_mut().expect("data").status = ReplicaStatus::Diverged,
            &["Label c-read-1-0 -"],
            &["Drop read_1", "Register read_1 ASYNC"],
        ),
        (
            "foreign registration is dropped",
            |o| {
                let mut extra = row(0, ReplicaStatus::Ready);
                extra.name = "backup".into();
                extra.socket_address = "backup:10000".into();
                write_rows(o).expect("rows").push(extra);
            },
            &["Drop backup"],
            &[],
        ),
        (
            "read pod not ready loses its label but keeps its registration",
            |o| o.pods.get_mut(&Instance::Read(2)).expect("pod").ready = false,
            &["Label c-read-2-0 -"],
            &["Drop read_2"],
        ),
        (
            "unreachable MAIN: the operator's blindness moves no label, nothing is registered or dropped",
            |o| o.pods.get_mut(&Instance::Write).expect("pod").memgraph = MemgraphState::Unreachable("timeout".into()),
            &[],
            &["Label c-write-0 -", "Label c-read-0-0 -", "Drop read_0", "Register read_0 ASYNC"],
        ),
        (
            "SHOW REPLICAS fails or times out: replica labels stay",
            |o| {
                o.pods.get_mut(&Instance::Write).expect("pod").memgraph =
                    MemgraphState::Main { replicas: Some(Err("timed out".into())), nodes: None }
            },
            &[],
            &["Label c-write-0 -", "Label c-read-0-0 -", "Label c-read-1-0 -", "Drop read_0"],
        ),
        (
            "a replica the operator cannot reach but the MAIN reports in sync keeps its label",
            |o| {
                o.pods.get_mut(&Instance::Read(1)).expect("pod").memgraph = MemgraphState::Unreachable("refused".into())
            },
            &[],
            &["Label c-read-1-0 -", "Drop read_1", "Register read_1 ASYNC"],
        ),
        (
            "the write pod not ready loses main, replicas keep theirs",
            |o| o.pods.get_mut(&Instance::Write).expect("pod").ready = false,
            &["Label c-write-0 -"],
            &["Label c-read-0-0 -", "Label c-read-1-0 -"],
        ),
        (
            "the write pod says REPLICA: main goes",
            |o| o.pods.get_mut(&Instance::Write).expect("pod").memgraph = MemgraphState::Replica { nodes: None },
            &["Label c-write-0 -"],
            &["Register read_0 ASYNC"],
        ),
        (
            "a read pod wrongly labelled main",
            |o| o.pods.get_mut(&Instance::Read(0)).expect("pod").role_label = Some("main".into()),
            &["Label c-read-0-0 replica"],
            &[],
        ),
    ];
    for (name, change, want, never) in cases {
        let (spec, mut obs) = healthy(3);
        change(&mut obs);
        let k = kinds(&plan(&spec, &obs, now()));
        for w in want {
            assert!(k.contains(&(*w).to_owned()), "{name}: missing {w} in {k:?}");
        }
        for n in never {
            assert!(!k.contains(&(*n).to_owned()), "{name}: must not {n}: {k:?}");
        }
        // Whatever the repair, the model reaches a state where nothing more is planned.
        converge(&spec, &mut obs, 10);
    }
}

#[test]
fn invalid_replicas_are_re_registered_after_the_grace_period() {
    let (spec, mut obs) = healthy(2);
    write_rows(&mut obs).expect("rows")[0].data.as_mut().expect("data").status = ReplicaStatus::Invalid;
    let first = plan(&spec, &obs, now());
    apply(&spec, &mut obs, &first);
    // The row stays invalid: status remembered since when.
    write_rows(&mut obs).expect("rows")[0].data.as_mut().expect("data").status = ReplicaStatus::Invalid;
    let within = kinds(&plan(&spec, &obs, now() + std::time::Duration::from_secs(59)));
    assert!(!within.contains(&"Drop read_0".to_owned()), "{within:?}");
    let after = kinds(&plan(&spec, &obs, now() + std::time::Duration::from_secs(61)));
    assert!(
        after.contains(&"Drop read_0".to_owned()) && after.contains(&"Register read_0 ASYNC".to_owned()),
        "{after:?}"
    );
}

#[test]
fn diverged_replicas_raise_a_condition_and_a_warning() {
    let (spec, mut obs) = healthy(2);
    write_rows(&mut obs).expect("rows")[1].data.as_mut().expect("data").status = ReplicaStatus::Diverged;
    let plan = plan(&spec, &obs, now());
    apply(&spec, &mut obs, &plan);
    let c = condition(&obs, "DataDivergence");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "ReplicaDiverged"));
    assert!(c.message.contains("read-1"));
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::Event(e) if e.type_ == EventType::Warning && e.reason == "ReplicaDiverged"))
    );
    assert_eq!(obs.status.phase, crate::api::Phase::Degraded);
}

#[test]
fn an_empty_main_is_never_used_while_replicas_hold_data() {
    let (spec, mut obs) = healthy(2);
    // The write volume was lost: an empty MAIN with no registrations; replicas hold data.
    obs.pods.get_mut(&Instance::Write).expect("pod").memgraph =
        MemgraphState::Main { replicas: Some(Ok(vec![])), nodes: Some(0) };
    obs.pods.get_mut(&Instance::Read(0)).expect("pod").memgraph = MemgraphState::Replica { nodes: Some(120) };
    let plan = plan(&spec, &obs, now());
    let k = kinds(&plan);
    assert!(k.contains(&"Label c-write-0 -".to_owned()), "{k:?}");
    assert!(
        !k.iter().any(|a| a.starts_with("Register") || a.starts_with("SetReplicaRole") || a == "CreateSnapshot"),
        "{k:?}"
    );
    apply(&spec, &mut obs, &plan);
    assert_eq!(obs.status.phase, crate::api::Phase::Failed);
    assert_eq!(condition(&obs, "DataDivergence").reason, "MainLostData");
    assert_eq!(condition(&obs, "WriteReady").reason, "DataLossRisk");
}

/// The write volume was lost while the operator was down, and clients wrote to the empty MAIN
/// before its label could go (seed 1008): it holds data, but less than a replica.
#[test]
fn a_main_without_registrations_holding_less_than_a_replica_lost_data() {
    let (spec, mut obs) = healthy(2);
    obs.pods.get_mut(&Instance::Write).expect("pod").memgraph =
        MemgraphState::Main { replicas: Some(Ok(vec![])), nodes: Some(3) };
    obs.pods.get_mut(&Instance::Read(0)).expect("pod").memgraph = MemgraphState::Replica { nodes: Some(480) };
    obs.pods.get_mut(&Instance::Read(1)).expect("pod").memgraph = MemgraphState::Replica { nodes: Some(2) };
    let plan = plan(&spec, &obs, now());
    let k = kinds(&plan);
    assert!(k.contains(&"Label c-write-0 -".to_owned()), "{k:?}");
    assert!(!k.iter().any(|a| a.starts_with("Register")), "{k:?}");
    apply(&spec, &mut obs, &plan);
    assert_eq!(condition(&obs, "DataDivergence").reason, "MainLostData");
    assert!(condition(&obs, "DataDivergence").message.contains("c-read-0-0"));
}

/// Scaling up from no replicas: a MAIN with data and no registrations, whose new read pods
/// cannot be counted yet, keeps taking writes.
#[test]
fn a_main_with_data_does_not_wait_for_uncounted_read_pods() {
    let (spec, mut obs) = healthy(2);
    obs.pods.get_mut(&Instance::Write).expect("pod").memgraph =
        MemgraphState::Main { replicas: Some(Ok(vec![])), nodes: Some(50) };
    for i in 0..2 {
        obs.pods.get_mut(&Instance::Read(i)).expect("pod").memgraph = MemgraphState::Replica { nodes: None };
    }
    let plan = plan(&spec, &obs, now());
    let k = kinds(&plan);
    assert!(!k.contains(&"Label c-write-0 -".to_owned()), "{k:?}");
    assert!(k.iter().any(|a| a.starts_with("Register read_0")), "{k:?}");
}

/// A read pod that does not exist (deleted, not yet recreated) may hold the data an empty MAIN
/// lost: its StatefulSet keeps the claim (seed 21).
#[test]
fn an_empty_main_waits_for_a_read_pod_that_does_not_exist() {
    let (spec, mut obs) = healthy(2);
    obs.objects = desired_objects(&spec, &obs.cluster);
    obs.pods.get_mut(&Instance::Write).expect("pod").memgraph =
        MemgraphState::Main { replicas: Some(Ok(vec![])), nodes: Some(0) };
    obs.pods.get_mut(&Instance::Read(0)).expect("pod").memgraph = MemgraphState::Replica { nodes: Some(0) };
    obs.pods.remove(&Instance::Read(1));
    let waiting = plan(&spec, &obs, now());
    let k = kinds(&waiting);
    assert!(!k.iter().any(|a| a.starts_with("Register") || a == "CreateSnapshot"), "{k:?}");
    apply(&spec, &mut obs, &waiting);
    let c = condition(&obs, "WriteReady");
    assert_ne!(c.status, "True", "{}", c.message);
    assert!(c.message.contains("c-read-1-0"), "{}", c.message);

    // A loss found before stands while that pod is away, even though every pod seen is empty.
    let (spec, mut obs) = healthy(2);
    obs.objects = desired_objects(&spec, &obs.cluster);
    obs.pods.get_mut(&Instance::Write).expect("pod").memgraph =
        MemgraphState::Main { replicas: Some(Ok(vec![])), nodes: Some(0) };
    obs.pods.get_mut(&Instance::Read(0)).expect("pod").memgraph = MemgraphState::Replica { nodes: Some(90) };
    let found = plan(&spec, &obs, now());
    apply(&spec, &mut obs, &found);
    assert_eq!(condition(&obs, "DataDivergence").reason, "MainLostData");
    obs.pods.remove(&Instance::Read(0));
    obs.pods.get_mut(&Instance::Read(1)).expect("pod").memgraph = MemgraphState::Replica { nodes: Some(0) };
    let later = plan(&spec, &obs, now());
    apply(&spec, &mut obs, &later);
    assert_eq!(condition(&obs, "DataDivergence").reason, "MainLostData");
    assert!(!kinds(&later).iter().any(|a| a.starts_with("Register")));
}

/// 2.21–3.0 block `SHOW REPLICAS` on a stuck replica: the node counts show which replica stopped
/// following the MAIN, and only its label goes.
#[test]
fn a_replica_that_stopped_following_loses_its_label_while_the_main_cannot_say() {
    let (spec, mut obs) = healthy(2);
    assert_eq!(obs.pods[&Instance::Read(1)].role_label.as_deref(), Some("replica"));
    obs.pods.get_mut(&Instance::Write).expect("pod").memgraph =
        MemgraphState::Main { replicas: Some(Err("timed out".into())), nodes: Some(100) };
    obs.pods.get_mut(&Instance::Read(0)).expect("pod").memgraph = MemgraphState::Replica { nodes: Some(100) };
    obs.pods.get_mut(&Instance::Read(1)).expect("pod").memgraph = MemgraphState::Replica { nodes: Some(60) };
    let stall = crate::reconcile::progress::Stall {
        nodes: 60,
        since: now() - std::time::Duration::from_secs(5),
        main_then: 60,
        main_now: 100,
        peers: false,
        moved_at: None,
    };
    obs.stalls.insert(1, stall.clone());
    let early = kinds(&plan(&spec, &obs, now()));
    assert!(!early.iter().any(|a| a.starts_with("Label")), "within the grace: {early:?}");
    obs.stalls.insert(1, crate::reconcile::progress::Stall { since: now() - STALL_GRACE * 2, ..stall });
    let k = kinds(&plan(&spec, &obs, now()));
    assert!(k.contains(&"Label c-read-1-0 -".to_owned()), "{k:?}");
    assert!(!k.iter().any(|a| a == "Label c-read-0-0 -" || a == "Label c-write-0 -"), "{k:?}");
}

/// The MAIN vanished (its node was lost) right after acknowledging a write one replica never
/// got: the replicas' counts, compared with each other, show which one stopped following.
#[test]
fn a_replica_short_of_its_peers_loses_its_label_while_the_main_is_gone() {
    let (spec, mut obs) = healthy(3);
    obs.pods.get_mut(&Instance::Write).expect("pod").memgraph =
        MemgraphState::Unreachable("query timed out after 5 s".into());
    for (i, n) in [(0, 255), (1, 256), (2, 256)] {
        obs.pods.get_mut(&Instance::Read(i)).expect("pod").memgraph = MemgraphState::Replica { nodes: Some(n) };
    }
    let memory = crate::reconcile::progress::Progress::default();
    memory.note(&mut obs, now() - STALL_GRACE);
    let first = kinds(&plan(&spec, &obs, now() - STALL_GRACE));
    assert!(!first.iter().any(|a| a.starts_with("Label")), "one look is not enough: {first:?}");
    memory.note(&mut obs, now());
    assert!(obs.stalls[&0].peers, "{:?}", obs.stalls);
    let k = kinds(&plan(&spec, &obs, now()));
    assert!(k.contains(&"Label c-read-0-0 -".to_owned()), "{k:?}");
    assert!(!k.iter().any(|a| a == "Label c-read-1-0 -" || a == "Label c-read-2-0 -"), "{k:?}");
    // A quiet cluster whose replicas hold the same is no evidence, however long it lasts.
    obs.pods.get_mut(&Instance::Read(0)).expect("pod").memgraph = MemgraphState::Replica { nodes: Some(256) };
    let memory = crate::reconcile::progress::Progress::default();
    memory.note(&mut obs, now() - STALL_GRACE * 6);
    memory.note(&mut obs, now());
    let k = kinds(&plan(&spec, &obs, now()));
    assert!(!k.iter().any(|a| a.starts_with("Label")), "{k:?}");
}

#[test]
fn mode_changes_one_replica_at_a_time() {
    let (mut spec, mut obs) = healthy(3);
    spec.replication.mode = ReplicationMode::Sync;
    let k = kinds(&plan(&spec, &obs, now()));
    let registers: Vec<_> = k.iter().filter(|a| a.starts_with("Register")).collect();
    assert_eq!(registers, ["Register read_0 SYNC"], "{k:?}");
    assert!(k.contains(&"Drop read_0".to_owned()));
    // While read_0 catches up in the new mode, the next one waits.
    let next = plan(&spec, &obs, now());
    apply(&spec, &mut obs, &next);
    write_rows(&mut obs).expect("rows").iter_mut().filter(|r| r.name == "read_0").for_each(|r| {
        r.data.as_mut().expect("data").status = ReplicaStatus::Recovery;
    });
    let waiting = kinds(&plan(&spec, &obs, now()));
    assert!(!waiting.iter().any(|a| a.starts_with("Drop")), "{waiting:?}");
    write_rows(&mut obs)
        .expect("rows")
        .iter_mut()
        .for_each(|r| r.data.as_mut().expect("data").status = ReplicaStatus::Ready);
    converge(&spec, &mut obs, 12);
    assert!(write_rows(&mut obs).expect("rows").iter().all(|r| r.sync_mode == "sync"));
}

#[test]
fn scale_down_drops_before_deleting() {
    let (mut spec, mut obs) = healthy(3);
    spec.read.replicas = 1;
    let k = kinds(&plan(&spec, &obs, now()));
    for n in [1, 2] {
        let drop = k.iter().position(|a| *a == format!("Drop read_{n}")).expect("drop");
        let delete = k.iter().position(|a| *a == format!("Delete c-read-{n}")).expect("delete");
        assert!(drop < delete, "{k:?}");
    }
    assert!(!k.contains(&"Delete c-read-0".to_owned()));
    // With the MAIN unreachable nothing is deleted: the registrations cannot be dropped first.
    let (_, mut blind) = healthy(3);
    blind.pods.get_mut(&Instance::Write).expect("pod").memgraph = MemgraphState::Unreachable("down".into());
    let k = kinds(&plan(&spec, &blind, now()));
    assert!(!k.iter().any(|a| a.starts_with("Delete")), "{k:?}");
    converge(&spec, &mut obs, 10);
    assert_eq!(obs.status.ready_replicas, 1);
    // Scale to zero.
    spec.read.replicas = 0;
    converge(&spec, &mut obs, 10);
    assert!(write_rows(&mut obs).expect("rows").is_empty());
    assert!(!obs.objects.keys().any(|k| k.name.starts_with("c-read-")));
    assert_eq!(obs.status.phase, crate::api::Phase::Running);
}

#[test]
fn invalid_spec_changes_nothing_but_status() {
    let (mut spec, obs) = healthy(2);
    spec.snapshot.schedule = "every hour".into();
    spec.read.replicas = 5;
    let plan = plan(&spec, &obs, now());
    let k = kinds(&plan);
    assert_eq!(k, ["PatchStatus"], "{k:?}");
    let status = &plan.status;
    let c = status.conditions.iter().find(|c| c.type_ == "InvalidSpec").expect("condition");
    assert_eq!(c.status, "True");
    assert!(c.message.contains("spec.snapshot.schedule"), "{}", c.message);
    assert_eq!(status.phase, crate::api::Phase::Failed);
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::Event(e) if e.type_ == EventType::Warning && e.reason == "InvalidSpec"))
    );
}

#[test]
fn deletion_drops_registrations_then_releases() {
    let (spec, mut obs) = healthy(2);
    obs.cluster.deleting = true;
    assert_eq!(kinds(&plan(&spec, &obs, now())), ["Drop read_0", "Drop read_1", "SetFinalizers"]);
    obs.pods.get_mut(&Instance::Write).expect("pod").memgraph = MemgraphState::Unreachable("gone".into());
    assert_eq!(kinds(&plan(&spec, &obs, now())), ["SetFinalizers"], "unreachable pods do not block deletion");
    obs.cluster.has_finalizer = false;
    assert!(plan(&spec, &obs, now()).is_empty());
}

#[test]
fn read_statefulsets_roll_one_at_a_time() {
    let (mut spec, mut obs) = healthy(3);
    spec.read.config.log_level = crate::api::LogLevel::Debug;
    let k = kinds(&plan(&spec, &obs, now()));
    let updates: Vec<_> = k.iter().filter(|a| a.starts_with("Apply c-read-")).collect();
    assert_eq!(updates, ["Apply c-read-0"], "{k:?}");
    let next = plan(&spec, &obs, now());
    apply(&spec, &mut obs, &next);
    // read-0 restarts: the others wait until it is ready again.
    obs.pods.get_mut(&Instance::Read(0)).expect("pod").ready = false;
    let k = kinds(&plan(&spec, &obs, now()));
    assert!(!k.iter().any(|a| a.starts_with("Apply c-read-")), "{k:?}");
    obs.pods.get_mut(&Instance::Read(0)).expect("pod").ready = true;
    converge(&spec, &mut obs, 12);
}

#[test]
fn storage_changes_keep_existing_claims_and_say_so() {
    let (mut spec, mut obs) = healthy(2);
    spec.read.storage.size = k8s_openapi::apimachinery::pkg::api::resource::Quantity("50Gi".into());
    spec.read.replicas = 3;
    let plan = plan(&spec, &obs, now());
    // Existing read StatefulSets are applied with their old claims (a changed annotation is not
    // a change), the new replica gets the new size.
    let claim = |name: &str| {
        plan.actions.iter().find_map(|a| match a {
            Action::Apply(DesiredObject::StatefulSet(sts)) if sts.metadata.name.as_deref() == Some(name) => {
                sts.spec.as_ref().and_then(|s| s.volume_claim_templates.as_ref()).map(|t| {
                    t[0].spec
                        .as_ref()
                        .and_then(|c| c.resources.as_ref())
                        .and_then(|r| r.requests.as_ref())
                        .and_then(|r| r.get("storage"))
                        .map(|q| q.0.clone())
                })
            }
            _ => None,
        })
    };
    assert_eq!(claim("c-read-0"), None, "unchanged: not applied");
    assert_eq!(claim("c-read-2"), Some(Some("50Gi".to_owned())));
    spec.read.replicas = 2;
    let plan = super::plan(&spec, &obs, now());
    apply(&spec, &mut obs, &plan);
    converge(&spec, &mut obs, 10);
    let c = condition(&obs, "StorageInSync");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "StorageChangeRefused"));
    assert!(c.message.contains("c-read-0 keeps 10Gi") && c.message.contains("data-c-read-0-0"), "{}", c.message);
    assert_eq!(obs.status.phase, crate::api::Phase::Running, "the cluster still works");
    // Reverting the spec clears it.
    spec.read.storage.size = k8s_openapi::apimachinery::pkg::api::resource::Quantity("10Gi".into());
    converge(&spec, &mut obs, 10);
    assert_eq!(condition(&obs, "StorageInSync").status, "True");
}

#[test]
fn snapshots_follow_the_schedule() {
    let (spec, mut obs) = healthy(1);
    // healthy() converged at 12:07 after creation at 12:00: the 12:00 slot is not after creation,
    // so the first one is due at 12:15.
    assert!(obs.status.last_snapshot_time.is_none());
    let at = |s: &str| plan(&spec, &obs, t(s));
    assert!(!kinds(&at("2026-06-01T12:14:59Z")).contains(&"CreateSnapshot".to_owned()));
    assert_eq!(
        at("2026-06-01T12:14:50Z").requeue_after,
        std::time::Duration::from_secs(10),
        "wakes up for the snapshot"
    );
    let due = at("2026-06-01T12:15:00Z");
    assert!(kinds(&due).contains(&"CreateSnapshot".to_owned()));
    apply(&spec, &mut obs, &due);
    assert_eq!(obs.status.last_snapshot_time.as_ref().map(|t| t.0), Some(t("2026-06-01T12:15:00Z")));
    assert!(!kinds(&plan(&spec, &obs, t("2026-06-01T12:29:00Z"))).contains(&"CreateSnapshot".to_owned()));
}

// ---- properties over arbitrary observations ----

fn arb_status() -> impl Strategy<Value = Option<ReplicaStatus>> {
    prop_oneof![
        Just(None),
        Just(Some(ReplicaStatus::Ready)),
        Just(Some(ReplicaStatus::Replicating)),
        Just(Some(ReplicaStatus::Recovery)),
        Just(Some(ReplicaStatus::Invalid)),
        Just(Some(ReplicaStatus::Diverged)),
    ]
}

fn arb_row(index: u32) -> impl Strategy<Value = Option<ReplicaRow>> {
    (any::<bool>(), any::<bool>(), prop_oneof![Just("async"), Just("sync")], arb_status()).prop_map(
        move |(present, good_address, mode, status)| {
            present.then(|| ReplicaRow {
                name: Instance::Read(index).replica_name(),
                socket_address: if good_address {
                    names().replication_address(Instance::Read(index))
                } else {
                    "10.1.1.1:10000".to_owned()
                },
                sync_mode: mode.to_owned(),
                data: status.map(|status| ReplicaData { ts: 3, behind: 0, status }),
            })
        },
    )
}

fn arb_memgraph(rows: Vec<ReplicaRow>) -> impl Strategy<Value = MemgraphState> {
    let rows2 = rows.clone();
    prop_oneof![
        1 => Just(MemgraphState::NotAsked),
        1 => Just(MemgraphState::Unreachable("timeout".into())),
        3 => proptest::option::of(0i64..3).prop_map(|nodes| MemgraphState::Replica { nodes }),
        2 => (proptest::option::of(0i64..3), any::<bool>()).prop_map(move |(nodes, own)| MemgraphState::Main {
            replicas: Some(Ok(if own { rows2.clone() } else { vec![] })),
            nodes,
        }),
        1 => Just(MemgraphState::Main { replicas: Some(Err("failed".into())), nodes: None }),
        3 => Just(MemgraphState::Main { replicas: Some(Ok(rows)), nodes: Some(1) }),
    ]
}

fn arb_pod(instance: Instance, rows: Vec<ReplicaRow>) -> impl Strategy<Value = Option<PodState>> {
    (
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.1),
        prop_oneof![Just(None), Just(Some("main".to_owned())), Just(Some("replica".to_owned()))],
        arb_memgraph(rows),
        (0i64..3, prop_oneof![Just(None), (0i64..3).prop_map(Some)]),
    )
        .prop_map(move |(exists, ready, terminating, role_label, memgraph, (restarts, verified_restarts))| {
            exists.then(|| PodState {
                ready,
                terminating,
                role_label,
                restarts,
                verified_restarts,
                memgraph,
                ..pod(instance, MemgraphState::NotAsked)
            })
        })
}

/// Per read index: its pod (if any) and its row on the MAIN (if any).
fn arb_read(index: u32) -> impl Strategy<Value = (Option<PodState>, Option<ReplicaRow>)> {
    (arb_pod(Instance::Read(index), vec![]), arb_row(index))
}

prop_compose! {
    fn arb_world()(
        replicas in 0i32..5,
        mode in prop_oneof![Just(ReplicationMode::Async), Just(ReplicationMode::Sync)],
        reads in (0u32..6).map(arb_read).collect::<Vec<_>>(),
        foreign_row in prop::bool::weighted(0.1),
        write in arb_pod(Instance::Write, vec![]),
        seed_objects in any::<u64>(),
        deleting in prop::bool::weighted(0.1),
        has_finalizer in prop::bool::weighted(0.8),
    ) -> (MemgraphClusterSpec, Observed) {
        let mut spec = spec(replicas);
        spec.replication.mode = mode;
        let (_, mut obs) = fresh(0);
        obs.spec = spec.clone();
        obs.cluster.deleting = deleting;
        obs.cluster.has_finalizer = has_finalizer;
        obs.pods.clear();
        let mut rows = Vec::new();
        for (index, (pod, row)) in reads.into_iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(0);
            if let Some(p) = pod {
                obs.pods.insert(Instance::Read(index), p);
            }
            rows.extend(row);
        }
        if foreign_row {
            let mut extra = row(0, ReplicaStatus::Ready);
            extra.name = "backup".into();
            rows.push(extra);
        }
        if let Some(mut w) = write {
            // The write pod's SHOW REPLICAS shows the generated rows.
            if let MemgraphState::Main { replicas: Some(Ok(r)), .. } = &mut w.memgraph { *r = rows.clone(); }
            obs.pods.insert(Instance::Write, w);
        }
        // A pseudo-random subset of objects for up to 6 replicas, some with stale hashes.
        let mut all = spec.clone();
        all.read.replicas = 6;
        for (n, (key, hash)) in desired_objects(&all, &obs.cluster).into_iter().enumerate() {
            match (seed_objects >> ((2 * n) % 64)) & 3 {
                0 => {}
                1 => { obs.objects.insert(key, Some("stale".into())); }
                _ => { obs.objects.insert(key, hash); }
            }
        }
        (spec, obs)
    }
}

fn is_main(obs: &Observed) -> bool {
    obs.pods
        .get(&Instance::Write)
        .is_some_and(|p| p.ready && !p.terminating && matches!(p.memgraph, MemgraphState::Main { .. }))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn replication_changes_only_on_a_verified_main((spec, obs) in arb_world()) {
        let plan = plan(&spec, &obs, now());
        if plan.actions.iter().any(|a| matches!(a, Action::RegisterReplica { .. } | Action::DropReplica { .. })) {
            prop_assert!(is_main(&obs), "registered or dropped without a verified MAIN: {:?}", kinds(&plan));
        }
        if let Some(Action::SetReplicaRole(i)) = plan.actions.iter().find(|a| matches!(a, Action::SetReplicaRole(_))) {
            prop_assert!(matches!(i, Instance::Read(_)), "demoted the write instance");
        }
    }

    #[test]
    fn labels_only_verified_pods((spec, obs) in arb_world()) {
        let plan = plan(&spec, &obs, now());
        let rows: Vec<ReplicaRow> = match obs.pods.get(&Instance::Write).map(|p| &p.memgraph) {
            Some(MemgraphState::Main { replicas: Some(Ok(rows)), .. }) => rows.clone(),
            _ => vec![],
        };
        for action in &plan.actions {
            let Action::Label { pod, role: Some(role), .. } = action else { continue };
            let (instance, state) = obs.pods.iter().find(|(_, p)| &p.name == pod).expect("labelled pod exists");
            prop_assert!(state.ready && !state.terminating, "labelled a pod that is not ready: {pod}");
            match (instance, role.as_str()) {
                (Instance::Write, "main") => prop_assert!(is_main(&obs)),
                (Instance::Read(i), "replica") => {
                    prop_assert!(is_main(&obs));
                    let is_replica = matches!(state.memgraph, MemgraphState::Replica { .. });
                    prop_assert!(is_replica, "replica label on a non-replica");
                    prop_assert!(i32::try_from(*i).unwrap_or(i32::MAX) < spec.read.replicas);
                    let row = rows.iter().find(|r| r.name == instance.replica_name());
                    prop_assert!(row.is_some_and(|r| r.data.as_ref().is_some_and(|d| d.status.is_healthy())
                        && r.socket_address == names().replication_address(*instance)), "replica label on {pod} without a healthy row");
                }
                other => prop_assert!(false, "unexpected label {other:?}"),
            }
        }
        let mains = plan.actions.iter().filter(|a| matches!(a, Action::Label { role: Some(r), .. } if r == "main")).count();
        prop_assert!(mains <= 1);
    }

    #[test]
    fn never_drops_a_wanted_healthy_replica((spec, obs) in arb_world()) {
        let plan = plan(&spec, &obs, now());
        let rows: Vec<ReplicaRow> = match obs.pods.get(&Instance::Write).map(|p| &p.memgraph) {
            Some(MemgraphState::Main { replicas: Some(Ok(rows)), .. }) => rows.clone(),
            _ => vec![],
        };
        for action in &plan.actions {
            let Action::DropReplica { name, .. } = action else { continue };
            let Some(Instance::Read(i)) = Instance::from_replica_name(name) else { continue };
            if i32::try_from(i).unwrap_or(i32::MAX) >= spec.read.replicas || obs.cluster.deleting { continue }
            let row = rows.iter().find(|r| &r.name == name).expect("dropped row exists");
            let as_specified = row.socket_address == names().replication_address(Instance::Read(i))
                && row.sync_mode == spec.replication.mode.as_show_replicas();
            // Healthy: the MAIN says in sync, and the instance does not say it is a MAIN itself
            // (a pod that came back as a fresh MAIN is no replica, whatever the MAIN's cache says).
            let says_main = obs.pods.get(&Instance::Read(i)).is_some_and(|p| matches!(p.memgraph, MemgraphState::Main { .. }));
            let healthy = row.data.as_ref().is_some_and(|d| d.status.is_healthy()) && !says_main;
            prop_assert!(!(as_specified && healthy), "dropped healthy wanted replica {name}: {:?}", kinds(&plan));
        }
    }

    #[test]
    fn never_deletes_a_statefulset_before_dropping_its_registration((spec, obs) in arb_world()) {
        let plan = plan(&spec, &obs, now());
        let rows: Vec<String> = match obs.pods.get(&Instance::Write).map(|p| &p.memgraph) {
            Some(MemgraphState::Main { replicas: Some(Ok(rows)), .. }) => rows.iter().map(|r| r.name.clone()).collect(),
            _ => vec![],
        };
        for (pos, action) in plan.actions.iter().enumerate() {
            let Action::Delete(key) = action else { continue };
            let Some(index) = key.name.strip_prefix("c-read-").and_then(|n| n.parse::<u32>().ok()) else { continue };
            prop_assert!(is_main(&obs), "deleted {} without seeing the MAIN", key.name);
            let name = Instance::Read(index).replica_name();
            if rows.contains(&name) {
                let dropped_before = plan.actions[..pos].iter().any(|a| matches!(a, Action::DropReplica { name: n, .. } if *n == name));
                prop_assert!(dropped_before, "deleted {} while {name} is registered", key.name);
            }
        }
    }

    #[test]
    fn plans_reach_a_fixpoint_and_stay_there((spec, obs) in arb_world()) {
        let mut obs = obs;
        // Every action succeeds in the model: the plan must run dry, and then stay dry.
        converge(&spec, &mut obs, 16);
        let again = plan(&spec, &obs, now());
        prop_assert!(again.is_empty(), "{:?}", kinds(&again));
    }

    #[test]
    fn plans_are_deterministic((spec, obs) in arb_world()) {
        prop_assert_eq!(plan(&spec, &obs, now()), plan(&spec, &obs, now()));
    }
}

#[test]
fn secrets_are_checked_against_what_exists() {
    let (mut spec, mut obs) = healthy(1);
    spec.auth = Some(crate::api::AuthSpec {
        secret_ref: crate::api::SecretRef { name: "creds".into() },
        username_key: "username".into(),
        password_key: "password".into(),
    });
    assert_eq!(kinds(&plan(&spec, &obs, now())), ["PatchStatus"]);
    obs.secrets.insert("creds".into(), BTreeSet::from(["username".to_owned(), "password".to_owned()]));
    assert!(kinds(&plan(&spec, &obs, now())).iter().any(|a| a == "Apply c-write"), "auth changes the pod template");
}

/// Seed 1042: the write volume was refilled from an older replica while the newest one was
/// restarting. The loss stands while that replica cannot be counted (its absence is no evidence
/// that it holds less), and ends once the MAIN holds as much as it was last counted holding.
#[test]
fn a_refilled_main_waits_for_the_replica_last_counted_holding_more() {
    let (spec, mut obs) = healthy(2);
    obs.objects = desired_objects(&spec, &obs.cluster);
    obs.pods.get_mut(&Instance::Write).expect("pod").memgraph =
        MemgraphState::Main { replicas: Some(Ok(vec![])), nodes: Some(123) };
    obs.pods.get_mut(&Instance::Read(0)).expect("pod").memgraph = MemgraphState::Replica { nodes: Some(193) };
    obs.pods.get_mut(&Instance::Read(1)).expect("pod").memgraph = MemgraphState::Replica { nodes: Some(123) };
    let found = plan(&spec, &obs, now());
    apply(&spec, &mut obs, &found);
    assert_eq!(condition(&obs, "DataDivergence").reason, "MainLostData");
    assert_eq!(obs.status.lost_data_holders.get("c-read-0-0"), Some(&193));

    // The replica holding more restarts: the MAIN must not be used or get replicas meanwhile.
    let away = obs.pods.remove(&Instance::Read(0)).expect("pod");
    let later = plan(&spec, &obs, now());
    let k = kinds(&later);
    assert!(!k.iter().any(|a| a.starts_with("Register") || a == "Label c-write-0 main"), "{k:?}");
    apply(&spec, &mut obs, &later);
    assert_eq!(condition(&obs, "DataDivergence").reason, "MainLostData");

    // The newest data is put back; a replica that cannot be counted now but was last counted
    // holding no more than that does not hold the MAIN back.
    obs.pods.insert(Instance::Read(0), away);
    obs.pods.get_mut(&Instance::Write).expect("pod").memgraph =
        MemgraphState::Main { replicas: Some(Ok(vec![])), nodes: Some(193) };
    obs.pods.get_mut(&Instance::Read(0)).expect("pod").memgraph = MemgraphState::Replica { nodes: Some(193) };
    obs.pods.get_mut(&Instance::Read(1)).expect("pod").memgraph = MemgraphState::Replica { nodes: None };
    let restored = plan(&spec, &obs, now());
    let k = kinds(&restored);
    assert!(k.iter().any(|a| a.starts_with("Register read_0")), "{k:?}");
    apply(&spec, &mut obs, &restored);
    assert_eq!(condition(&obs, "DataDivergence").status, "False");
    assert!(obs.status.lost_data_holders.is_empty());
}

/// Seed 1166: an empty MAIN with no registrations while the only replica cannot be counted
/// claims nothing about divergence (the finding from before the volume loss is stale).
#[test]
fn an_empty_main_with_uncounted_replicas_makes_divergence_unknown() {
    let (spec, mut obs) = healthy(1);
    let first = plan(&spec, &obs, now());
    apply(&spec, &mut obs, &first);
    assert_eq!(condition(&obs, "DataDivergence").status, "False");
    obs.pods.get_mut(&Instance::Write).expect("pod").memgraph =
        MemgraphState::Main { replicas: Some(Ok(vec![])), nodes: Some(0) };
    obs.pods.get_mut(&Instance::Read(0)).expect("pod").memgraph =
        MemgraphState::Unreachable("connect timed out".into());
    let p = plan(&spec, &obs, now());
    assert!(!kinds(&p).iter().any(|a| a.starts_with("Register")));
    apply(&spec, &mut obs, &p);
    assert_eq!(condition(&obs, "DataDivergence").status, "Unknown");
    assert_ne!(condition(&obs, "WriteReady").status, "True");
}

// ---- live checks ----

fn secs_before(at: Timestamp, secs: i64) -> Option<Time> {
    Some(Time(at - k8s_openapi::jiff::SignedDuration::from_secs(secs)))
}

/// Every replica passed its test; the checks last ran this many seconds before `now()`.
fn checked(obs: &mut Observed, connectivity: i64, lag: i64, replication: i64) {
    let v = obs.status.validation.get_or_insert_default();
    v.last_connectivity_test = secs_before(now(), connectivity);
    v.last_lag_measurement = secs_before(now(), lag);
    v.last_replication_test = secs_before(now(), replication);
    for r in &mut v.replicas {
        r.replication_test = Some(validation::PASSED.to_owned());
    }
}

#[test]
fn checks_falling_due_close_together_share_one_claim() {
    let (spec, mut obs) = healthy(2);
    // Connectivity is due now, the lag measurement in 10 s, the replication test in 200 s.
    checked(&mut obs, 30, 50, 100);
    let plan = plan(&spec, &obs, now());
    let claim = plan.validation.clone().expect("a claim");
    assert_eq!(claim.ping.len(), 3, "every instance is pinged");
    let probe = claim.probe.expect("the lag measurement joins the connectivity check");
    assert!(probe.lag && !probe.replication_test, "{probe:?}");
    assert!(plan.status_changed, "the claim is recorded before the checks run");
    let v = plan.status.validation.clone().unwrap_or_default();
    assert_eq!(v.last_connectivity_test.map(|t| t.0), Some(now()));
    assert_eq!(v.last_lag_measurement.map(|t| t.0), Some(now()));
    assert_eq!(v.last_replication_test, secs_before(now(), 100), "not due within the window");
    // The next wake-up is the next check due: the replication test in 200 s is later than the
    // next connectivity check, so the plan wakes for the idle poll.
    assert!(plan.requeue_after <= REQUEUE_IDLE);
}

#[test]
fn nothing_due_claims_nothing_and_costs_no_extra_wake_up() {
    let (spec, mut obs) = healthy(1);
    checked(&mut obs, 25, 25, 25);
    let plan = plan(&spec, &obs, now());
    assert!(plan.validation.is_none());
    assert!(!plan.status_changed);
    assert_eq!(plan.requeue_after, REQUEUE_IDLE, "the idle poll picks up the connectivity check due in 5 s");
}

fn done_at(claimed: Timestamp, ping: &[(&str, bool)]) -> validation::ValidationDone {
    validation::ValidationDone {
        skipped: Vec::new(),
        claimed,
        finished: claimed,
        ping: ping
            .iter()
            .map(|(name, ok)| ((*name).to_owned(), if *ok { Ok(()) } else { Err("connection refused".to_owned()) }))
            .collect(),
        probe: None,
    }
}

#[test]
fn an_unchanged_result_waits_for_the_next_claim_and_a_changed_one_is_written_at_once() {
    let (spec, mut obs) = healthy(2);
    checked(&mut obs, 10, 10, 10);
    let claimed = now() - k8s_openapi::jiff::SignedDuration::from_secs(10);
    obs.validation_done = Some(done_at(claimed, &[("write", true), ("read-0", true), ("read-1", true)]));
    let first = plan(&spec, &obs, now());
    assert!(first.validation_merged && first.status_changed, "the first result creates the conditions");
    assert_eq!(
        first.status.conditions.iter().find(|c| c.type_ == "ReadConnectivity").map(|c| c.message.as_str()),
        Some("All 2 read instances responding")
    );
    apply(&spec, &mut obs, &first);
    let same = plan(&spec, &obs, now());
    assert!(!same.validation_merged && !same.status_changed, "everyone answered, as before: no write");

    obs.validation_done = Some(done_at(claimed, &[("write", true), ("read-0", true), ("read-1", false)]));
    let changed = plan(&spec, &obs, now());
    assert!(changed.validation_merged && changed.status_changed);
    let v = changed.status.validation.clone().unwrap_or_default();
    assert_eq!(v.unreachable, vec!["read-1".to_owned()]);
    let read = changed.status.conditions.iter().find(|c| c.type_ == "ReadConnectivity").expect("ReadConnectivity");
    assert_eq!(read.status, "False");
    assert!(read.message.contains("read-1"), "{}", read.message);
    let events: Vec<&str> = changed
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e.reason.as_str()),
            _ => None,
        })
        .collect();
    assert!(events.contains(&"ConnectivityLost"), "{events:?}");
}

mod failover;
