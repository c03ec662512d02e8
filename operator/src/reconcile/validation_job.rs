//! The live checks a reconcile claimed, run beside the reconciles: a replica that is slow to
//! show the test write, or an instance that does not answer, holds up neither this cluster's
//! labels and status nor any other cluster. Every query has a deadline; at most one job runs
//! per cluster; the next reconcile writes the result (see `plan::validation`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use super::measure::{Measurement, TestKind};
use super::plan::validation::{ProbeClaim, ProbeDone, ReplicaSeen, ValidationClaim, ValidationDone, WriteOutcome};
use crate::api::ReplicationMode;
use crate::clock::Clock;
use crate::memgraph::{self, Bolt, BoltError};
use crate::names::ClusterNames;

/// Reads of the test write on a replica: often at first, so a lag of a few milliseconds is
/// measured as such, then less often.
const FAST_POLL: Duration = Duration::from_millis(10);
const FAST_FOR: Duration = Duration::from_secs(1);
const SLOW_POLL: Duration = Duration::from_millis(200);
/// Tries at removing the test node before leaving it to the next test.
const CLEANUP_TRIES: u32 = 3;
/// Later jobs (a connectivity check every 30 s by default) that try again to remove a test node
/// a job may have left behind.
const OWED_CLEANUPS: u32 = 10;

/// Checks claimed for one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationJob {
    /// The cluster's uid.
    pub cluster: String,
    /// Its names (for instance addresses).
    pub names: ClusterNames,
    /// What was claimed.
    pub claim: ValidationClaim,
}

/// Jobs running and finished, by cluster uid, and measurements not yet handed out.
#[derive(Debug, Default)]
pub struct ValidationJobs {
    running: Mutex<BTreeSet<String>>,
    finished: Mutex<BTreeMap<String, ValidationDone>>,
    measured: Mutex<BTreeMap<String, Vec<Measurement>>>,
    /// A test node left behind that a later job removes: the MAIN's address, and how many
    /// more jobs try.
    owed: Mutex<BTreeMap<String, (String, u32)>>,
}

impl ValidationJobs {
    /// Whether a job of `cluster` is running.
    pub fn running(&self, cluster: &str) -> bool {
        self.running.lock().is_ok_and(|r| r.contains(cluster))
    }

    /// The finished result of `cluster`, left in place until [`Self::written`].
    pub fn finished(&self, cluster: &str) -> Option<ValidationDone> {
        self.finished.lock().ok().and_then(|f| f.get(cluster).cloned())
    }

    /// The result claimed at `claimed` is in the status now.
    pub fn written(&self, cluster: &str, claimed: k8s_openapi::jiff::Timestamp) {
        if let Ok(mut f) = self.finished.lock()
            && f.get(cluster).is_some_and(|d| d.claimed == claimed)
        {
            f.remove(cluster);
        }
    }

    /// Mark a job of `cluster` as running; false when one already is.
    pub fn start(&self, cluster: &str) -> bool {
        self.running.lock().is_ok_and(|mut r| r.insert(cluster.to_owned()))
    }

    /// Measurements of `cluster` since the last call.
    pub fn take_measurements(&self, cluster: &str) -> Vec<Measurement> {
        self.measured.lock().ok().and_then(|mut m| m.remove(cluster)).unwrap_or_default()
    }

    fn finish(&self, cluster: &str, done: ValidationDone, measurements: Vec<Measurement>) {
        if let Ok(mut f) = self.finished.lock() {
            f.insert(cluster.to_owned(), done);
        }
        if let Ok(mut m) = self.measured.lock() {
            m.entry(cluster.to_owned()).or_default().extend(measurements);
        }
        if let Ok(mut r) = self.running.lock() {
            r.remove(cluster);
        }
    }
}

fn elapsed_ms(since: tokio::time::Instant) -> i64 {
    i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// How Memgraph answered the test write (memgraph-behaviour §2.2): SYNC commits and then
/// reports replicas that did not confirm; STRICT_SYNC aborts everywhere.
fn write_outcome(result: Result<(), BoltError>, mode: ReplicationMode) -> WriteOutcome {
    match result {
        Ok(()) => WriteOutcome::Committed,
        // The instance is a REPLICA by now (a failover or switchover moved the MAIN since the
        // check was claimed): nothing was written, so no replica will ever see it.
        Err(e @ BoltError::Query { .. }) if refused_as_not_main(&e) => WriteOutcome::Failed(e.to_string()),
        Err(BoltError::Query { message, .. })
            if message.contains("replica") || message.contains("Replication Exception") =>
        {
            if mode == ReplicationMode::StrictSync || message.contains("aborted") {
                WriteOutcome::Aborted(message)
            } else {
                WriteOutcome::CommittedWithError(message)
            }
        }
        Err(e) => WriteOutcome::Failed(e.to_string()),
    }
}

/// Memgraph refused the write because the instance is not a MAIN (any release's words).
fn refused_as_not_main(e: &BoltError) -> bool {
    matches!(e, BoltError::Query { message, .. }
        if message.contains("forbidden on the replica") || message.contains("not main anymore"))
}

async fn read_until_seen(
    bolt: &dyn Bolt,
    address: &str,
    id: &str,
    started: tokio::time::Instant,
    give_up: Duration,
) -> (Option<i64>, bool, Option<String>) {
    let mut answered = false;
    let mut error = None;
    loop {
        match memgraph::has_test_node(bolt, address, id).await {
            Ok(true) => return (Some(elapsed_ms(started)), true, None),
            Ok(false) => answered = true,
            Err(e) => error = Some(e.to_string()),
        }
        let spent = started.elapsed();
        if spent >= give_up {
            return (None, answered, error);
        }
        let pause = if spent < FAST_FOR { FAST_POLL } else { SLOW_POLL };
        tokio::time::sleep(pause.min(give_up - spent)).await;
    }
}

async fn probe(bolt: &dyn Bolt, names: &ClusterNames, claim: &ProbeClaim) -> (ProbeDone, Option<String>) {
    let main = names.bolt_address(claim.main);
    // Test nodes a crash left behind go first; failures here are retried at the end.
    let _ = memgraph::remove_test_nodes(bolt, &main).await;
    let write = write_outcome(memgraph::write_test_node(bolt, &main, &claim.id).await, claim.mode);
    // The lag clock starts when the MAIN acknowledged the write: the figure is how stale a read
    // on the replica can be right after a client's write returned (under SYNC the commit
    // itself waited for the replicas, so it is near zero there).
    let started = tokio::time::Instant::now();
    let seen = match write {
        WriteOutcome::Committed | WriteOutcome::CommittedWithError(_) => {
            let addresses: Vec<String> = claim.replicas.iter().map(|i| names.bolt_address(*i)).collect();
            let reads = addresses.iter().map(|a| read_until_seen(bolt, a, &claim.id, started, claim.give_up));
            futures::future::join_all(reads)
                .await
                .into_iter()
                .zip(&claim.replicas)
                .map(|((seen_after_ms, answered, error), instance)| ReplicaSeen {
                    instance: *instance,
                    seen_after_ms,
                    answered,
                    error,
                })
                .collect()
        }
        // Nothing was written: each replica is reported as answering, unseen.
        WriteOutcome::Aborted(_) => claim
            .replicas
            .iter()
            .map(|i| ReplicaSeen { instance: *i, seen_after_ms: None, answered: true, error: None })
            .collect(),
        WriteOutcome::Failed(_) => Vec::new(),
    };
    let mut cleaned = false;
    for attempt in 0..CLEANUP_TRIES {
        match memgraph::remove_test_nodes(bolt, &main).await {
            Ok(()) => {
                cleaned = true;
                break;
            }
            Err(e) => {
                tracing::debug!(%main, error = %e, attempt, "removing the test node failed; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    // A write that failed may still commit after its client gave up (a SYNC commit waiting on
    // a replica): the node it leaves behind is removed by a later job of this cluster.
    let owed = (!cleaned || matches!(write, WriteOutcome::Failed(_))).then_some(main);
    (ProbeDone { claim: claim.clone(), write, seen }, owed)
}

/// Remove the test node a job of `cluster` may have left on `main` (see [`probe`]); kept owed
/// for later jobs while it fails, up to [`OWED_CLEANUPS`] of them.
async fn settle_owed_cleanup(bolt: &dyn Bolt, jobs: &ValidationJobs, cluster: &str) {
    let Some((main, tries)) = jobs.owed.lock().ok().and_then(|mut o| o.remove(cluster)) else { return };
    if let Err(e) = memgraph::remove_test_nodes(bolt, &main).await {
        tracing::debug!(%main, error = %e, "removing a test node left behind failed; a later check tries again");
        if tries > 1
            && let Ok(mut owed) = jobs.owed.lock()
        {
            owed.entry(cluster.to_owned()).or_insert((main, tries - 1));
        }
    }
}

/// Run a claimed job and keep its result for the next reconcile.
pub async fn run(bolt: &dyn Bolt, jobs: &ValidationJobs, clock: &dyn Clock, job: ValidationJob) {
    let mut measurements = Vec::new();
    let started = tokio::time::Instant::now();
    let pings = job.claim.ping.iter().map(|(_, i)| {
        let address = job.names.bolt_address(*i);
        async move {
            let at = tokio::time::Instant::now();
            (memgraph::ping(bolt, &address).await.map_err(|e| e.to_string()), at.elapsed())
        }
    });
    let answers = futures::future::join_all(pings).await;
    settle_owed_cleanup(bolt, jobs, &job.cluster).await;
    let mut ping = Vec::new();
    for ((name, _), (result, took)) in job.claim.ping.iter().zip(answers) {
        measurements.push(Measurement::Validation {
            test: TestKind::Connectivity,
            instance: Some(name.clone()),
            passed: result.is_ok(),
            duration: took,
        });
        ping.push((name.clone(), result));
    }
    for name in &job.claim.skipped {
        ping.push((name.clone(), Err("its pod is not Ready".to_owned())));
    }
    // A MAIN that did not answer its ping can only time out the probe's every query, and the
    // pings' verdicts (the connectivity conditions) would wait for it: the probe is skipped and
    // waits for its next turn (its claim is recorded, so it is not made again at once).
    let main_silent = |claim: &ProbeClaim| {
        let main = claim.main.status_name();
        ping.iter().any(|(name, result)| *name == main && result.is_err())
    };
    let probe = match &job.claim.probe {
        Some(claim) if main_silent(claim) => {
            tracing::debug!(cluster = %job.names.cluster, "the MAIN did not answer its ping; no replication probe");
            None
        }
        Some(claim) => {
            let at = tokio::time::Instant::now();
            let (done, owed) = probe(bolt, &job.names, claim).await;
            if let Some(main) = owed
                && let Ok(mut o) = jobs.owed.lock()
            {
                o.insert(job.cluster.clone(), (main, OWED_CLEANUPS));
            }
            let took = at.elapsed();
            let limit = i64::try_from(claim.limit.as_millis()).unwrap_or(i64::MAX);
            for seen in &done.seen {
                let replica = seen.instance.status_name();
                let passed = seen.seen_after_ms.is_some_and(|ms| ms <= limit);
                if claim.replication_test {
                    measurements.push(Measurement::Validation {
                        test: TestKind::Replication,
                        instance: Some(replica.clone()),
                        passed,
                        duration: took,
                    });
                    if !passed && seen.answered {
                        measurements
                            .push(Measurement::ReplicationError { replica: replica.clone(), kind: "test_failed" });
                    }
                }
                if claim.lag && (seen.seen_after_ms.is_some() || seen.answered) {
                    if let Some(ms) = seen.seen_after_ms {
                        measurements.push(Measurement::Lag { replica: replica.clone(), seconds: ms as f64 / 1000.0 });
                    }
                    measurements.push(Measurement::Validation {
                        test: TestKind::Lag,
                        instance: Some(replica),
                        passed: seen.seen_after_ms.is_some(),
                        duration: took,
                    });
                }
            }
            match &done.write {
                WriteOutcome::Failed(error) => {
                    tracing::warn!(cluster = %job.names.cluster, %error, "the test write failed")
                }
                other => {
                    tracing::debug!(cluster = %job.names.cluster, write = ?other, seen = ?done.seen, "replication probe done")
                }
            }
            Some(done)
        }
        None => None,
    };
    tracing::debug!(cluster = %job.names.cluster, took_ms = elapsed_ms(started), "validation done");
    let skipped = job.claim.skipped.clone();
    let done = ValidationDone { claimed: job.claim.at, finished: clock.now(), ping, skipped, probe };
    jobs.finish(&job.cluster, done, measurements);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(message: &str) -> Result<(), BoltError> {
        Err(BoltError::Query {
            address: "g-read-2-0:7687".into(),
            code: "Memgraph.ClientError.MemgraphError.MemgraphError".into(),
            message: message.into(),
        })
    }

    #[test]
    fn a_write_refused_by_a_replica_wrote_nothing() {
        // Both releases' words: the probe must not wait 30 s for replicas to see a node that
        // was never written.
        for message in [
            "Write query forbidden on the replica!",
            "Write queries are forbidden on the replica instance. Replica instances accept only read queries, while \
             the main instance accepts read and write queries. Please retry your query on the main instance.",
            "Cannot commit because instance is not main anymore.",
        ] {
            assert!(
                matches!(write_outcome(refused(message), ReplicationMode::Sync), WriteOutcome::Failed(_)),
                "{message}"
            );
        }
        // A replica that did not confirm a SYNC commit: committed on the MAIN all the same.
        let unconfirmed = refused("At least one SYNC replica has not confirmed committing last transaction.");
        assert!(matches!(write_outcome(unconfirmed, ReplicationMode::Sync), WriteOutcome::CommittedWithError(_)));
    }
}
