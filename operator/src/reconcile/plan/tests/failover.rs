//! Failover: detection, choice, the recorded intent and its steps, against the model of
//! `plan::tests` in which every action succeeds at once.

use super::*;
use crate::api::FailoverStatus;
use crate::reconcile::main_probe::ProbeView;

fn at(secs: i64) -> Timestamp {
    now().checked_add(std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0))).expect("time")
}

/// A converged SYNC cluster with failover on, `replicas` read pods, every replica seen ready.
fn sync_cluster(replicas: i32) -> (MemgraphClusterSpec, Observed) {
    let (mut spec, mut obs) = fresh(replicas);
    spec.replication.mode = ReplicationMode::Sync;
    spec.failover.enabled = true;
    obs.spec = spec.clone();
    converge(&spec, &mut obs, 12);
    (spec, obs)
}

fn failover(obs: &Observed) -> FailoverStatus {
    obs.status.failover.clone().expect("status.failover")
}

fn labelled(obs: &Observed, role: &str) -> Vec<String> {
    obs.pods.values().filter(|p| p.role_label.as_deref() == Some(role)).map(|p| p.name.clone()).collect()
}

/// Plan and apply at `when` until nothing changes, checking that no two pods are labelled `main`.
fn settle_at(spec: &MemgraphClusterSpec, obs: &mut Observed, when: Timestamp) {
    for _ in 0..12 {
        let plan = plan(spec, obs, when);
        if plan.is_empty() {
            return;
        }
        apply(spec, obs, &plan);
        assert!(labelled(obs, "main").len() <= 1, "two MAINs labelled: {:?}", labelled(obs, "main"));
    }
    panic!("no fixpoint: {:?}", kinds(&plan(spec, obs, when)));
}

fn set_rows(obs: &mut Observed, rows: &[(u32, &str, ReplicaStatus, i64)]) {
    let have = write_rows(obs).expect("rows");
    for (index, mode, status, ts) in rows {
        let row = have.iter_mut().find(|r| r.name == Instance::Read(*index).replica_name()).expect("row");
        row.sync_mode = (*mode).to_owned();
        row.data = Some(ReplicaData { ts: *ts, behind: 0, status: status.clone() });
    }
}

fn lose_write_pod(obs: &mut Observed) {
    obs.pods.get_mut(&Instance::Write).expect("write pod").memgraph = MemgraphState::Unreachable("timed out".into());
}

/// A converged SYNC cluster of two read pods whose write pod was just found not answering.
fn write_pod_found_down() -> (MemgraphClusterSpec, Observed) {
    let (spec, mut obs) = sync_cluster(2);
    lose_write_pod(&mut obs);
    let first = plan(&spec, &obs, now());
    apply(&spec, &mut obs, &first);
    (spec, obs)
}

#[test]
fn the_mains_view_of_its_replicas_is_kept_in_status() {
    let (_, obs) = sync_cluster(2);
    let f = failover(&obs);
    assert_eq!(f.main, "write");
    assert_eq!(f.generation, 0);
    let seen: Vec<(&str, &str, &str)> =
        f.seen.iter().map(|s| (s.name.as_str(), s.mode.as_str(), s.state.as_str())).collect();
    assert_eq!(seen, [("read-0", "sync", "ready"), ("read-1", "sync", "ready")]);
}

#[test]
fn a_blip_shorter_than_the_delay_promotes_nothing() {
    let (spec, mut obs) = sync_cluster(2);
    lose_write_pod(&mut obs);
    let first = plan(&spec, &obs, now());
    assert!(!kinds(&first).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&first));
    assert!(first.requeue_after <= std::time::Duration::from_secs(5), "looks again when the delay ends");
    apply(&spec, &mut obs, &first);
    assert_eq!(failover(&obs).main_down_since.map(|t| t.0), Some(now()));
    let later = plan(&spec, &obs, at(4));
    assert!(!kinds(&later).iter().any(|k| k.starts_with("Promote")), "4 s < 5 s delay");
    // It answers again: the clock stops.
    obs.pods.get_mut(&Instance::Write).expect("pod").memgraph =
        MemgraphState::Main { replicas: Some(Ok(obs_rows(&obs))), nodes: None };
    settle_at(&spec, &mut obs, at(4));
    assert_eq!(failover(&obs).main_down_since, None);
    let after = plan(&spec, &obs, at(30));
    assert!(!kinds(&after).iter().any(|k| k.starts_with("Promote")));
}

#[test]
fn the_delay_counts_from_the_health_probes_first_unanswered_probe() {
    let (spec, mut obs) = sync_cluster(2);
    lose_write_pod(&mut obs);
    // The probe beside the reconciles found the MAIN silent 3 s before this look.
    obs.probe = ProbeView { failing_since: Some(now()), last_answer: None };
    let first = plan(&spec, &obs, at(3));
    assert!(!kinds(&first).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&first));
    // The confirming look begins its 1 s query of the MAIN a second before the delay ends.
    assert_eq!(first.requeue_after, std::time::Duration::from_secs(1), "{:?}", first.requeue_after);
    apply(&spec, &mut obs, &first);
    assert_eq!(failover(&obs).main_down_since.map(|t| t.0), Some(now()));
    let confirm = plan(&spec, &obs, at(5));
    assert!(kinds(&confirm).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&confirm));
}

#[test]
fn the_confirming_look_spans_the_end_of_the_delay() {
    let (spec, mut obs) = sync_cluster(2);
    lose_write_pod(&mut obs);
    obs.probe = ProbeView { failing_since: Some(now()), last_answer: None };
    let first = plan(&spec, &obs, at(2));
    apply(&spec, &mut obs, &first);
    // Begun a second before the delay ends and over at once (the MAIN refused): not yet.
    obs.started = Some(at(4));
    let refused = plan(&spec, &obs, at(4));
    assert!(!kinds(&refused).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&refused));
    assert_eq!(refused.requeue_after, std::time::Duration::from_secs(1), "one more look when the delay ends");
    apply(&spec, &mut obs, &refused);
    // Begun before the first look ended: it is not a second look.
    obs.started = Some(at(1));
    let overlapping = plan(&spec, &obs, at(6));
    assert!(!kinds(&overlapping).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&overlapping));
    // Begun a second before the delay ends, its query of the MAIN unanswered past it: confirmed.
    obs.started = Some(at(4));
    let confirm = plan(&spec, &obs, at(5));
    assert!(kinds(&confirm).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&confirm));
}

#[test]
fn an_answer_to_the_health_probe_restarts_the_count() {
    let (spec, mut obs) = write_pod_found_down();
    assert_eq!(failover(&obs).main_down_since.map(|t| t.0), Some(now()));
    // Between two looks the MAIN answered a probe at 3 s and went silent again at 4 s.
    obs.probe = ProbeView { failing_since: Some(at(4)), last_answer: Some(at(3)) };
    let early = plan(&spec, &obs, at(6));
    assert!(!kinds(&early).iter().any(|k| k.starts_with("Promote")), "silent for 2 s only: {:?}", kinds(&early));
    apply(&spec, &mut obs, &early);
    assert_eq!(failover(&obs).main_down_since.map(|t| t.0), Some(at(4)));
    let due = plan(&spec, &obs, at(9));
    assert!(kinds(&due).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&due));
}

/// The write pod turns NotReady at `since` while its Memgraph still answers (the probe too).
fn write_pod_not_ready(obs: &mut Observed, since: Timestamp) {
    let pod = obs.pods.get_mut(&Instance::Write).expect("write pod");
    pod.ready = false;
    pod.not_ready_since = Some(since);
    obs.probe = ProbeView { failing_since: None, last_answer: Some(since) };
}

#[test]
fn a_main_not_ready_for_the_delay_is_failed_over_though_it_answers() {
    let (spec, mut obs) = sync_cluster(2);
    write_pod_not_ready(&mut obs, now());
    // It answers every probe: without the pod's own transition time each answer would restart
    // the count, and a MAIN no Service routes to would never be replaced.
    obs.probe.last_answer = Some(at(4));
    let early = plan(&spec, &obs, at(4));
    assert!(!kinds(&early).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&early));
    apply(&spec, &mut obs, &early);
    // Written in whole seconds, the transition may stand for any moment of its second.
    assert_eq!(failover(&obs).main_down_since.map(|t| t.0), Some(at(1)), "since the pod turned NotReady");
    obs.probe.last_answer = Some(at(6));
    let due = plan(&spec, &obs, at(6));
    assert!(kinds(&due).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&due));
}

#[test]
fn flapping_readiness_in_stretches_shorter_than_the_delay_promotes_nothing() {
    let (spec, mut obs) = sync_cluster(2);
    // NotReady at 0 s: the look records it.
    write_pod_not_ready(&mut obs, now());
    let first = plan(&spec, &obs, at(1));
    apply(&spec, &mut obs, &first);
    assert_eq!(failover(&obs).main_down_since.map(|t| t.0), Some(at(1)));
    // Ready from 2 s to 4 s, which no look saw; NotReady again since 4 s. The recorded start
    // is older than the transition, so the pod was Ready between: the count starts at 4 s.
    write_pod_not_ready(&mut obs, at(4));
    let later = plan(&spec, &obs, at(6));
    assert!(!kinds(&later).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&later));
    apply(&spec, &mut obs, &later);
    assert_eq!(failover(&obs).main_down_since.map(|t| t.0), Some(at(5)));
}

#[test]
fn a_transition_time_in_whole_seconds_counts_from_the_end_of_its_second() {
    let (spec, mut obs) = sync_cluster(2);
    // NotReady at 0.6 s, written by the API server as 0 s.
    write_pod_not_ready(&mut obs, now());
    let first = plan(&spec, &obs, at(2));
    apply(&spec, &mut obs, &first);
    // At 5.5 s it has been NotReady for 4.9 s: less than the delay of 5 s.
    let early_at = at(5).checked_add(std::time::Duration::from_millis(500)).expect("time");
    let early = plan(&spec, &obs, early_at);
    assert!(!kinds(&early).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&early));
    apply(&spec, &mut obs, &early);
    let due = plan(&spec, &obs, at(6));
    assert!(kinds(&due).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&due));
}

#[test]
fn a_lost_node_counts_from_the_first_unanswered_probe_not_from_notready() {
    let (spec, mut obs) = sync_cluster(2);
    lose_write_pod(&mut obs);
    obs.probe = ProbeView { failing_since: Some(now()), last_answer: None };
    // The node controller marks the pod NotReady only after its grace, 40 s on.
    let pod = obs.pods.get_mut(&Instance::Write).expect("write pod");
    pod.ready = false;
    pod.not_ready_since = Some(at(40));
    let plan_at = plan(&spec, &obs, at(41));
    apply(&spec, &mut obs, &plan_at);
    assert_eq!(failover(&obs).main_down_since.map(|t| t.0), Some(now()));
}

fn obs_rows(obs: &Observed) -> Vec<ReplicaRow> {
    obs.status
        .failover
        .iter()
        .flat_map(|f| f.seen.iter())
        .filter_map(|s| Instance::from_status_name(&s.name))
        .map(|i| ReplicaRow {
            name: i.replica_name(),
            socket_address: names().replication_address(i),
            sync_mode: "sync".into(),
            data: Some(ReplicaData { ts: 10, behind: 0, status: ReplicaStatus::Ready }),
        })
        .collect()
}

#[test]
fn failover_is_off_unless_enabled() {
    let (mut spec, mut obs) = sync_cluster(2);
    spec.failover.enabled = false;
    lose_write_pod(&mut obs);
    for secs in [0, 10, 60] {
        let plan = plan(&spec, &obs, at(secs));
        assert!(!kinds(&plan).iter().any(|k| k.starts_with("Promote")));
        apply(&spec, &mut obs, &plan);
    }
    assert_eq!(failover(&obs).generation, 0);
}

#[test]
fn the_most_up_to_date_safe_replica_is_promoted_after_the_intent_is_recorded() {
    let (spec, mut obs) = sync_cluster(3);
    // read-0 was seen ASYNC (its mode switch pending), read-2 invalid: only read-1 is safe, even
    // though read-0 reported the higher timestamp.
    set_rows(
        &mut obs,
        &[
            (0, "async", ReplicaStatus::Ready, 14),
            (1, "sync", ReplicaStatus::Ready, 12),
            (2, "sync", ReplicaStatus::Invalid, 11),
        ],
    );
    let seen = plan(&spec, &obs, now());
    obs.status = (*seen.status).clone();
    obs.pods.get_mut(&Instance::Write).expect("pod").role_label = Some("main".into());
    lose_write_pod(&mut obs);
    let first = plan(&spec, &obs, now());
    apply(&spec, &mut obs, &first);
    let start = plan(&spec, &obs, at(5));
    let k = kinds(&start);
    assert!(start.record_first, "the intent is written before the promotion runs");
    assert!(k.contains(&"Promote read_1".to_owned()), "{k:?}");
    assert!(k.contains(&"Label c-write-0 -".to_owned()), "the old MAIN's label goes first: {k:?}");
    let intent = start.status.failover.as_ref().and_then(|f| f.intent.clone()).expect("intent");
    assert_eq!((intent.generation, intent.from.as_str(), intent.to.as_str()), (1, "write", "read-1"));
    assert!(!intent.may_lose_writes);
    // The promotion's subject is a replica's, so it runs after the status write.
    let promote = start.actions.iter().find(|a| matches!(a, Action::Promote { .. })).expect("promote");
    assert!(promote.subject().is_some_and(|s| s.starts_with(REPLICA_SUBJECT_PREFIX)));
}

/// The write pod, stopped by a failover, is recreated and answers as the MAIN it was, with its
/// old replica list.
fn old_main_returns(obs: &mut Observed) {
    let old_rows = obs_rows(obs);
    let pod = obs.pods.get_mut(&Instance::Write).expect("pod");
    (pod.uid, pod.terminating, pod.ready) = ("uid-recreated".into(), false, true);
    pod.memgraph = MemgraphState::Main { replicas: Some(Ok(old_rows)), nodes: Some(5) };
}

#[test]
fn an_old_main_that_is_ready_but_silent_is_stopped_once_after_the_intent_records_it() {
    let (spec, mut obs) = write_pod_found_down();
    let start = plan(&spec, &obs, at(5));
    let k = kinds(&start);
    assert!(k.contains(&"StopPod c-write-0".to_owned()), "{k:?}");
    assert!(start.record_first, "the stop is recorded before it is made");
    let intent = start.status.failover.as_ref().and_then(|f| f.intent.clone()).expect("intent");
    assert_eq!(intent.stopped.as_deref(), Some("uid-c-write-0"));
    // The stop runs after the status write, with the promotion.
    let stop = start.actions.iter().find(|a| matches!(a, Action::StopPod { .. })).expect("stop");
    assert!(!stop.subject().is_some_and(|s| s.starts_with(REPLICA_SUBJECT_PREFIX)), "its own subject");
    // Its StatefulSet recreates it (a new uid) and it is Ready and silent again: not stopped twice.
    apply(&spec, &mut obs, &start);
    let pod = obs.pods.get_mut(&Instance::Write).expect("pod");
    (pod.uid, pod.terminating, pod.ready) = ("uid-new".into(), false, true);
    let again = plan(&spec, &obs, at(6));
    assert!(!kinds(&again).iter().any(|k| k.starts_with("StopPod")), "{:?}", kinds(&again));
}

#[test]
fn an_old_main_that_is_not_ready_is_not_stopped() {
    let (spec, mut obs) = write_pod_found_down();
    // Crashed, or on a node marked NotReady: no Service routes to it and its kubelet restarts or
    // cannot reach it; there is nothing to fence.
    obs.pods.get_mut(&Instance::Write).expect("pod").ready = false;
    let start = plan(&spec, &obs, at(5));
    assert!(kinds(&start).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&start));
    assert!(!kinds(&start).iter().any(|k| k.starts_with("StopPod")), "{:?}", kinds(&start));
}

#[test]
fn a_failover_completes_and_the_old_main_rejoins_as_a_replica() {
    let (spec, mut obs) = write_pod_found_down();
    settle_at(&spec, &mut obs, at(6));
    let f = failover(&obs);
    assert_eq!((f.main.as_str(), f.generation, f.intent.is_none()), ("read-0", 1, true), "{f:?}");
    assert_eq!(labelled(&obs, "main"), ["c-read-0-0"]);
    assert_eq!(labelled(&obs, "replica"), ["c-read-1-0"]);
    let rows = rows_of(&mut obs, Instance::Read(0)).expect("new MAIN's rows").clone();
    assert_eq!(rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["read_1"]);
    // The old MAIN, stopped by the failover, comes back as a MAIN with its old replica list:
    // demoted, then registered.
    old_main_returns(&mut obs);
    let back = plan(&spec, &obs, at(20));
    let k = kinds(&back);
    assert!(k.contains(&"SetReplicaRole write".to_owned()), "{k:?}");
    assert!(!k.iter().any(|a| a == "Label c-write-0 main"), "never labelled because it says MAIN: {k:?}");
    settle_at(&spec, &mut obs, at(20));
    let rows = rows_of(&mut obs, Instance::Read(0)).expect("rows").clone();
    assert!(rows.iter().any(|r| r.name == "write"), "the write pod follows the new MAIN: {rows:?}");
    assert_eq!(labelled(&obs, "main"), ["c-read-0-0"]);
    assert!(labelled(&obs, "replica").contains(&"c-write-0".to_owned()));
    assert_eq!(obs.status.main_pod.as_deref(), Some("c-read-0-0"));
}

#[test]
fn the_new_main_is_labelled_only_once_the_old_mains_label_is_gone() {
    let (spec, mut obs) = write_pod_found_down();
    // An admission policy refuses every change to the old MAIN's pod: its `main` label stays.
    for _ in 0..8 {
        let plan = plan(&spec, &obs, at(6));
        apply(&spec, &mut obs, &plan);
        obs.pods.get_mut(&Instance::Write).expect("pod").role_label = Some("main".into());
        assert_eq!(labelled(&obs, "main"), ["c-write-0"], "{:?}", kinds(&plan));
        assert!(kinds(&plan).iter().all(|k| k != "Label c-read-0-0 main"), "{:?}", kinds(&plan));
    }
    assert!(kinds(&plan(&spec, &obs, at(6))).contains(&"Label c-write-0 -".to_owned()), "its removal is retried");
    // Once the removal goes through, the new MAIN is labelled.
    obs.pods.get_mut(&Instance::Write).expect("pod").role_label = None;
    settle_at(&spec, &mut obs, at(7));
    assert_eq!(labelled(&obs, "main"), ["c-read-0-0"]);
}

#[test]
fn with_no_replica_seen_in_sync_nothing_is_promoted_unless_loss_is_allowed() {
    let (mut spec, mut obs) = fresh(2);
    spec.failover.enabled = true;
    obs.spec = spec.clone();
    converge(&spec, &mut obs, 12);
    lose_write_pod(&mut obs);
    let first = plan(&spec, &obs, now());
    apply(&spec, &mut obs, &first);
    let blocked = plan(&spec, &obs, at(6));
    assert!(!kinds(&blocked).iter().any(|k| k.starts_with("Promote")));
    apply(&spec, &mut obs, &blocked);
    let c = condition(&obs, crate::reconcile::plan::failover::FAILOVER_BLOCKED);
    assert_eq!(c.status, "True");
    assert!(c.message.contains("allowDataLoss"), "{}", c.message);
    spec.failover.allow_data_loss = true;
    let allowed = plan(&spec, &obs, at(7));
    assert!(kinds(&allowed).contains(&"Promote read_0".to_owned()), "{:?}", kinds(&allowed));
    let intent = allowed.status.failover.as_ref().and_then(|f| f.intent.clone()).expect("intent");
    assert!(intent.may_lose_writes);
}

#[test]
fn a_replica_that_does_not_answer_is_not_chosen() {
    let (spec, mut obs) = sync_cluster(2);
    obs.pods.get_mut(&Instance::Read(0)).expect("pod").memgraph = MemgraphState::Unreachable("refused".into());
    lose_write_pod(&mut obs);
    let first = plan(&spec, &obs, now());
    apply(&spec, &mut obs, &first);
    let start = plan(&spec, &obs, at(6));
    assert!(kinds(&start).contains(&"Promote read_1".to_owned()), "{:?}", kinds(&start));
}

#[test]
fn an_interrupted_failover_is_finished_from_its_intent() {
    let (spec, mut obs) = write_pod_found_down();
    // The operator records the intent, then crashes before the promotion runs.
    let start = plan(&spec, &obs, at(6));
    obs.status = (*start.status).clone();
    let again = plan(&spec, &obs, at(8));
    assert!(kinds(&again).contains(&"Promote read_0".to_owned()), "promoted again: {:?}", kinds(&again));
    assert!(!again.record_first, "the same intent, already recorded");
    settle_at(&spec, &mut obs, at(8));
    assert_eq!(failover(&obs).main, "read-0");
}

#[test]
fn a_target_lost_before_completion_is_replaced_by_the_next_candidate() {
    let (spec, mut obs) = write_pod_found_down();
    let start = plan(&spec, &obs, at(6));
    obs.status = (*start.status).clone();
    obs.pods.get_mut(&Instance::Read(0)).expect("pod").ready = false;
    let next = plan(&spec, &obs, at(8));
    assert!(kinds(&next).contains(&"Promote read_1".to_owned()), "{:?}", kinds(&next));
    let intent = next.status.failover.as_ref().and_then(|f| f.intent.clone()).expect("intent");
    assert_eq!((intent.generation, intent.from.as_str(), intent.to.as_str()), (2, "write", "read-1"));
    assert!(next.record_first);
}

#[test]
fn a_failover_is_rolled_back_when_the_old_main_returns_before_the_target_answers() {
    let (spec, mut obs) = sync_cluster(1);
    lose_write_pod(&mut obs);
    let first = plan(&spec, &obs, now());
    apply(&spec, &mut obs, &first);
    let start = plan(&spec, &obs, at(6));
    obs.status = (*start.status).clone();
    obs.pods.get_mut(&Instance::Read(0)).expect("pod").ready = false;
    let rows = obs_rows(&obs);
    obs.pods.get_mut(&Instance::Write).expect("pod").memgraph =
        MemgraphState::Main { replicas: Some(Ok(rows)), nodes: Some(3) };
    let back = plan(&spec, &obs, at(8));
    let f = back.status.failover.clone().expect("failover");
    assert_eq!((f.main.as_str(), f.intent.is_none(), f.generation), ("write", true, 0), "{f:?}");
}

#[test]
fn the_main_moves_back_to_the_write_pod_once_it_has_been_in_sync() {
    let (spec, mut obs) = write_pod_found_down();
    settle_at(&spec, &mut obs, at(6));
    old_main_returns(&mut obs);
    settle_at(&spec, &mut obs, at(20));
    assert_eq!(failover(&obs).main, "read-0");
    // In sync for less than switchBackAfterSeconds: it stays.
    let early = plan(&spec, &obs, at(40));
    assert!(!kinds(&early).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&early));
    let back = plan(&spec, &obs, at(51));
    let k = kinds(&back);
    assert!(k.contains(&"Promote write after demoting read_0".to_owned()), "{k:?}");
    assert!(k.contains(&"Label c-read-0-0 -".to_owned()), "{k:?}");
    assert!(back.record_first);
    settle_at(&spec, &mut obs, at(51));
    let f = failover(&obs);
    assert_eq!((f.main.as_str(), f.generation), ("write", 2), "{f:?}");
    assert_eq!(labelled(&obs, "main"), ["c-write-0"]);
    let mut replicas = labelled(&obs, "replica");
    replicas.sort();
    assert_eq!(replicas, ["c-read-0-0", "c-read-1-0"]);
    // Without switchBack it stays on the replica.
    let (mut spec, mut obs) = sync_cluster(2);
    spec.failover.switch_back = false;
    lose_write_pod(&mut obs);
    let first = plan(&spec, &obs, now());
    apply(&spec, &mut obs, &first);
    settle_at(&spec, &mut obs, at(6));
    let old_rows = obs_rows(&obs);
    obs.pods.get_mut(&Instance::Write).expect("pod").memgraph =
        MemgraphState::Main { replicas: Some(Ok(old_rows)), nodes: Some(5) };
    settle_at(&spec, &mut obs, at(20));
    settle_at(&spec, &mut obs, at(500));
    assert_eq!(failover(&obs).main, "read-0");
}

#[test]
fn a_silent_main_whose_replicas_still_receive_data_is_not_replaced() {
    let (spec, mut obs) = write_pod_found_down();
    // read-0's data grew 8 s after the MAIN went silent: only a MAIN sends a replica data.
    let stall = crate::reconcile::progress::Stall {
        nodes: 12,
        since: at(8),
        main_then: 12,
        main_now: 12,
        peers: true,
        moved_at: Some(at(8)),
    };
    obs.stalls.insert(0, stall);
    let blocked = plan(&spec, &obs, at(10));
    assert!(!kinds(&blocked).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&blocked));
    apply(&spec, &mut obs, &blocked);
    let c = condition(&obs, crate::reconcile::plan::failover::FAILOVER_BLOCKED);
    assert!(c.message.contains("alive"), "{}", c.message);
    // Its data stood still for the detection delay since: the MAIN may have died after all.
    let later = plan(&spec, &obs, at(14));
    assert!(kinds(&later).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&later));
}

#[test]
fn a_second_failover_prefers_the_write_pod_among_the_replicas_seen_in_sync() {
    let (spec, mut obs) = write_pod_found_down();
    settle_at(&spec, &mut obs, at(6));
    old_main_returns(&mut obs);
    settle_at(&spec, &mut obs, at(20));
    assert_eq!(failover(&obs).main, "read-0");
    // The new MAIN is lost before the switch back; the write pod and read-1 were both seen in
    // sync on it, read-1 a little further on.
    if let Some(f) = obs.status.failover.as_mut() {
        for s in &mut f.seen {
            s.ts = if s.name == "read-1" { 50 } else { 40 };
        }
    }
    obs.pods.get_mut(&Instance::Read(0)).expect("pod").memgraph = MemgraphState::Unreachable("timed out".into());
    settle_at(&spec, &mut obs, at(22));
    settle_at(&spec, &mut obs, at(28));
    let f = failover(&obs);
    assert_eq!((f.main.as_str(), f.generation), ("write", 2), "the writes move once, to their home: {f:?}");
    assert_eq!(labelled(&obs, "main"), ["c-write-0"]);
}

#[test]
fn one_look_never_decides_alone_even_when_its_probe_waited_out_the_delay() {
    let (spec, mut obs) = sync_cluster(2);
    lose_write_pod(&mut obs);
    // The probe that found it down started 6 s ago and timed out just now.
    obs.started = Some(now() - std::time::Duration::from_secs(6));
    let first = plan(&spec, &obs, now());
    assert!(!kinds(&first).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&first));
    apply(&spec, &mut obs, &first);
    assert_eq!(failover(&obs).main_down_since.map(|t| t.0), obs.started);
    // A fresh look begun a second after that confirms it: the MAIN has been down for the delay.
    obs.started = Some(at(1));
    let again = plan(&spec, &obs, at(2));
    assert!(kinds(&again).contains(&"Promote read_0".to_owned()), "{:?}", kinds(&again));
}

fn request_switchover(obs: &mut Observed, value: &str) {
    obs.cluster.switchover_request = Some(value.to_owned());
}

#[test]
fn a_requested_switchover_demotes_first_then_promotes_the_caught_up_target() {
    let (spec, mut obs) = sync_cluster(2);
    request_switchover(&mut obs, "read-1");
    let first = plan(&spec, &obs, at(1));
    let k = kinds(&first);
    assert!(k.contains(&"Promote read_1 after demoting write".to_owned()), "{k:?}");
    assert!(k.contains(&"Label c-write-0 -".to_owned()), "the MAIN's label goes first: {k:?}");
    assert!(first.record_first, "the intent is written before the demotion");
    settle_at(&spec, &mut obs, at(1));
    let f = failover(&obs);
    assert_eq!((f.main.as_str(), f.generation, f.intent.is_none()), ("read-1", 1, true), "{f:?}");
    assert_eq!(f.last.as_ref().map(|l| l.kind.as_str()), Some("Switchover"));
    assert_eq!(f.last_switchover_request.as_deref(), Some("read-1"));
    assert_eq!(labelled(&obs, "main"), ["c-read-1-0"]);
    // Acted on once: the same value asks for nothing more, and a switchover is not undone by
    // switchBack, however long it has been in sync.
    settle_at(&spec, &mut obs, at(400));
    assert_eq!(failover(&obs).main, "read-1");
    // The same target again after a suffix, and back to the write pod.
    request_switchover(&mut obs, "write/2");
    settle_at(&spec, &mut obs, at(401));
    assert_eq!((failover(&obs).main.as_str(), failover(&obs).generation), ("write", 2));
    assert_eq!(labelled(&obs, "main"), ["c-write-0"]);
}

#[test]
fn a_switchover_waits_for_its_target_and_refuses_what_is_not_an_instance() {
    let (spec, mut obs) = sync_cluster(2);
    // Behind the MAIN: writes would be lost, so nothing moves; status says why.
    write_rows(&mut obs).expect("rows").iter_mut().find(|r| r.name == "read_0").expect("row").data =
        Some(ReplicaData { ts: 10, behind: -4, status: ReplicaStatus::Ready });
    request_switchover(&mut obs, "read-0");
    let waiting = plan(&spec, &obs, at(1));
    assert!(!kinds(&waiting).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&waiting));
    let f = waiting.status.failover.clone().expect("failover");
    assert!(f.switchover_waiting.as_deref().is_some_and(|w| w.contains("4 behind")), "{f:?}");
    assert_eq!(f.last_switchover_request, None, "still pending");
    for bad in ["read-7", "primary"] {
        request_switchover(&mut obs, bad);
        let refused = plan(&spec, &obs, at(1));
        assert!(!kinds(&refused).iter().any(|k| k.starts_with("Promote")), "{:?}", kinds(&refused));
        let refusal = |a: &Action| matches!(a, Action::Event(e) if e.reason == "SwitchoverRefused");
        assert!(refused.actions.iter().any(refusal), "{bad}");
        assert_eq!(refused.status.failover.and_then(|f| f.last_switchover_request).as_deref(), Some(bad));
    }
}

#[test]
fn in_an_async_cluster_the_target_is_registered_sync_before_writes_move() {
    let (mut spec, mut obs) = sync_cluster(2);
    spec.replication.mode = ReplicationMode::Async;
    obs.spec = spec.clone();
    converge(&spec, &mut obs, 12);
    request_switchover(&mut obs, "read-0");
    let first = plan(&spec, &obs, at(1));
    let k = kinds(&first);
    assert!(!k.iter().any(|a| a.starts_with("Promote")), "registered ASYNC: not yet {k:?}");
    assert!(k.iter().any(|a| a == "Register read_0 SYNC"), "{k:?}");
    settle_at(&spec, &mut obs, at(1));
    assert_eq!(failover(&obs).main, "read-0");
    // Once it is the MAIN, the old one follows it in the spec's mode.
    let rows = rows_of(&mut obs, Instance::Read(0)).expect("rows").clone();
    assert!(rows.iter().all(|r| r.sync_mode == "async"), "{rows:?}");
}

#[test]
fn before_memgraph_3_5_a_replica_refused_again_and_again_after_a_failover_is_probably_diverged() {
    let (spec, mut obs) = write_pod_found_down();
    settle_at(&spec, &mut obs, at(6));
    assert_eq!(failover(&obs).main, "read-0");
    // The old MAIN answers as a REPLICA; its registration left a row with no state and failed
    // with the words every failure has before 3.5.
    obs.pods.get_mut(&Instance::Write).expect("pod").memgraph = MemgraphState::Replica { nodes: Some(5) };
    rows_of(&mut obs, Instance::Read(0)).expect("rows").push(ReplicaRow {
        name: "write".into(),
        socket_address: names().replication_address(Instance::Write),
        sync_mode: "sync".into(),
        data: None,
    });
    let refused = |failures: i32| crate::api::ActionFailure {
        action: "RegisterReplica write SYNC on read_0".into(),
        subject: "replica write".into(),
        failures,
        since: Time(at(7)),
        retry_after: Time(at(8)),
        message: "refused the query: Couldn't register replica write.".into(),
    };
    let divergence = |obs: &Observed, when| {
        let plan = plan(&spec, obs, when);
        plan.status.conditions.iter().find(|c| c.type_ == "DataDivergence").map(|c| c.status.clone())
    };
    obs.status.failing_actions = vec![refused(1)];
    assert_eq!(divergence(&obs, at(9)).as_deref(), Some("False"), "one refusal is no evidence");
    obs.status.failing_actions = vec![refused(3)];
    assert_eq!(divergence(&obs, at(9)).as_deref(), Some("True"));
    let again = plan(&spec, &obs, at(9));
    assert!(!kinds(&again).iter().any(|k| k.starts_with("Register write")), "{:?}", kinds(&again));
}
