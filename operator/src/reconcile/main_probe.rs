//! The MAIN health probe: beside the reconciles, every second, the MAIN of every cluster with
//! failover on is asked its replication role with a 1 s deadline (the health check of
//! Memgraph's own coordinators: every 1 s, down after 5 s without an answer).
//!
//! The probe decides nothing. It wakes the cluster's reconcile the moment its MAIN stops
//! answering (instead of the next poll, up to 10 s later, whose own probe then waits out its
//! 5 s timeout), and it tells the failover plan since when the MAIN has not answered, so the
//! detection delay counts from the first unanswered probe. The plan still wants a fresh look
//! of its own, begun after the whole delay, before it promotes anything (see
//! `plan::failover`), and an answer to any probe restarts the count: a blip shorter than the
//! delay changes nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::clock::Clock;
use crate::memgraph::{self, Bolt};
use crate::names::Instance;

/// How often each MAIN is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a probe waits for the MAIN's answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The MAIN a reconcile wants probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The cluster's namespace.
    pub namespace: String,
    /// The cluster's name.
    pub name: String,
    /// The instance held as MAIN.
    pub instance: Instance,
    /// Its Bolt address.
    pub address: String,
}

/// What a reconcile wants probed after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeWanted {
    /// As before (the reconcile ended before it could tell).
    Keep,
    /// Nothing: failover is off, or the cluster is being deleted.
    Stop,
    /// This MAIN.
    Probe(ProbeTarget),
}

/// What the probes found about one cluster's MAIN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeView {
    /// When the first probe that went unanswered since the last answer was sent; `None` while
    /// the MAIN answers.
    pub failing_since: Option<Timestamp>,
    /// When the MAIN last answered a probe.
    pub last_answer: Option<Timestamp>,
}

struct Watched {
    target: ProbeTarget,
    bolt: Arc<dyn Bolt>,
    view: ProbeView,
}

/// The MAINs probed, by cluster uid (lost with the process, like every memory: the status
/// keeps what the failover needs across a restart).
#[derive(Default)]
pub struct MainProbes {
    watched: Mutex<BTreeMap<String, Watched>>,
}

impl std::fmt::Debug for MainProbes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let targets: Vec<String> =
            self.watched.lock().map(|w| w.values().map(|w| w.target.address.clone()).collect()).unwrap_or_default();
        f.debug_struct("MainProbes").field("targets", &targets).finish()
    }
}

impl MainProbes {
    /// Probe what a reconcile of cluster `uid` wants through `bolt` (its credentials). A new
    /// MAIN starts a new count.
    pub fn watch(&self, uid: &str, wanted: ProbeWanted, bolt: Arc<dyn Bolt>) {
        let Ok(mut watched) = self.watched.lock() else { return };
        match wanted {
            ProbeWanted::Keep => {}
            ProbeWanted::Stop => {
                watched.remove(uid);
            }
            ProbeWanted::Probe(target) => {
                let view = watched.get(uid).filter(|w| w.target == target).map(|w| w.view).unwrap_or_default();
                watched.insert(uid.to_owned(), Watched { target, bolt, view });
            }
        }
    }

    /// Stop probing the clusters `keep` says are gone (by namespace and name): one deleted
    /// without the operator's finalizer, or while it was down, gets no last reconcile to stop it.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        if let Ok(mut watched) = self.watched.lock() {
            watched.retain(|_, w| keep(&w.target.namespace, &w.target.name));
        }
    }

    /// What the probes found about `instance` as the MAIN of cluster `uid` (nothing when it is
    /// not the MAIN probed).
    pub fn view(&self, uid: &str, instance: Instance) -> ProbeView {
        self.watched
            .lock()
            .ok()
            .and_then(|w| w.get(uid).filter(|w| w.target.instance == instance).map(|w| w.view))
            .unwrap_or_default()
    }

    /// Probe every MAIN once, all at once; returns the clusters whose MAIN just stopped
    /// answering.
    pub async fn round(&self, clock: &dyn Clock) -> Vec<ProbeTarget> {
        let targets: Vec<(String, ProbeTarget, Arc<dyn Bolt>)> = match self.watched.lock() {
            Ok(w) => w.iter().map(|(uid, w)| (uid.clone(), w.target.clone(), w.bolt.clone())).collect(),
            Err(_) => return Vec::new(),
        };
        let sent = clock.now();
        let answers = futures::future::join_all(
            targets.iter().map(|(_, t, bolt)| memgraph::replication_role_within(&**bolt, &t.address, PROBE_TIMEOUT)),
        )
        .await;
        let answered_at = clock.now();
        let mut woken = Vec::new();
        let Ok(mut watched) = self.watched.lock() else { return woken };
        for ((uid, target, _), answer) in targets.into_iter().zip(answers) {
            // A target replaced while the probe ran is judged by its next probe.
            let Some(w) = watched.get_mut(&uid).filter(|w| w.target == target) else { continue };
            let next = judge(w.view, answer.is_ok(), sent, answered_at);
            if w.view.failing_since.is_none() && next.failing_since.is_some() {
                woken.push(target);
            }
            w.view = next;
        }
        woken
    }
}

/// The view after one probe sent at `sent` that was (or was not) answered by `answered_at`.
fn judge(view: ProbeView, answered: bool, sent: Timestamp, answered_at: Timestamp) -> ProbeView {
    if answered {
        ProbeView { failing_since: None, last_answer: Some(answered_at) }
    } else {
        ProbeView { failing_since: view.failing_since.or(Some(sent)), last_answer: view.last_answer }
    }
}

/// Probe every watched MAIN each [`PROBE_INTERVAL`] until dropped, calling `wake` with each
/// cluster whose MAIN just stopped answering.
pub async fn run(probes: &MainProbes, clock: &dyn Clock, wake: impl Fn(ProbeTarget)) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        for target in probes.round(clock).await {
            tracing::info!(cluster = %format!("{}/{}", target.namespace, target.name), main = %target.address,
                "the MAIN did not answer its health probe; reconciling");
            wake(target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn the_count_starts_at_the_first_unanswered_probe_and_an_answer_restarts_it() {
        let mut view = ProbeView::default();
        view = judge(view, true, at(0), at(0));
        assert_eq!(view, ProbeView { failing_since: None, last_answer: Some(at(0)) });
        view = judge(view, false, at(1), at(2));
        view = judge(view, false, at(3), at(4));
        assert_eq!(view.failing_since, Some(at(1)), "the first unanswered probe, not the latest");
        assert_eq!(view.last_answer, Some(at(0)));
        view = judge(view, true, at(5), at(5));
        assert_eq!(view, ProbeView { failing_since: None, last_answer: Some(at(5)) });
    }

    /// Answers `SHOW REPLICATION ROLE` as MAIN while `up`.
    struct Main {
        up: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl Bolt for Main {
        async fn run_within(
            &self,
            address: &str,
            _: &str,
            _: BTreeMap<String, memgraph::BoltValue>,
            _: Duration,
        ) -> Result<memgraph::QueryResult, memgraph::BoltError> {
            if self.up.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(memgraph::QueryResult {
                    columns: vec!["replication role".into()],
                    rows: vec![vec![memgraph::BoltValue::String("main".into())]],
                })
            } else {
                Err(memgraph::BoltError::Timeout { address: address.to_owned(), seconds: 1 })
            }
        }
    }

    struct Fixed;

    impl Clock for Fixed {
        fn now(&self) -> Timestamp {
            at(0)
        }

        fn fill_random(&self, buf: &mut [u8]) {
            buf.fill(7);
        }
    }

    fn target(instance: Instance) -> ProbeTarget {
        ProbeTarget { namespace: "ns".into(), name: "g".into(), instance, address: "g-write-0:7687".into() }
    }

    #[tokio::test]
    async fn a_main_that_stops_answering_wakes_its_reconcile_once() {
        let probes = MainProbes::default();
        let main = Arc::new(Main { up: true.into() });
        probes.watch("uid", ProbeWanted::Probe(target(Instance::Write)), main.clone());
        assert!(probes.round(&Fixed).await.is_empty());
        assert_eq!(probes.view("uid", Instance::Write).last_answer, Some(at(0)));
        main.up.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(probes.round(&Fixed).await, vec![target(Instance::Write)], "woken when it stops answering");
        assert!(probes.round(&Fixed).await.is_empty(), "not again while it stays silent");
        assert_eq!(probes.view("uid", Instance::Write).failing_since, Some(at(0)));
        assert_eq!(
            probes.view("uid", Instance::Read(0)),
            ProbeView::default(),
            "another instance is not the one probed"
        );
        // The same target keeps its count; a new MAIN starts afresh; no target, no probe.
        probes.watch("uid", ProbeWanted::Probe(target(Instance::Write)), main.clone());
        assert_eq!(probes.view("uid", Instance::Write).failing_since, Some(at(0)));
        probes.watch("uid", ProbeWanted::Probe(target(Instance::Read(0))), main.clone());
        assert_eq!(probes.view("uid", Instance::Read(0)), ProbeView::default());
        probes.watch("uid", ProbeWanted::Keep, main.clone());
        assert_eq!(probes.round(&Fixed).await, vec![target(Instance::Read(0))], "kept, and counted afresh");
        probes.watch("uid", ProbeWanted::Stop, main.clone());
        assert!(probes.round(&Fixed).await.is_empty());
        // A cluster gone from the cache is no longer probed.
        probes.watch("uid", ProbeWanted::Probe(target(Instance::Write)), main);
        probes.retain(|_, name| name != "g");
        assert!(probes.round(&Fixed).await.is_empty());
    }
}
