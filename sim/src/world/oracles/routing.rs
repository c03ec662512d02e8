//! Routing: at most one pod labelled `main`, the write Service only reaches a MAIN, the read
//! Service only reaches registered, in-sync replicas of the MAIN, and the operator only sends
//! the queries it may.

use memgraph_operator::memgraph;
use std::collections::BTreeSet;
use std::time::Duration;

use fake_memgraph::Role;
use memgraph_operator::names::ClusterNames;

use super::super::run::NAMESPACE;
use super::super::truth::ClusterTruth;
use super::{Conditions, Lagging, Violation, ms};

/// Routing checks with their memory between samples.
#[derive(Debug, Default)]
pub struct Routing {
    lagging: Lagging,
    reported: BTreeSet<String>,
}

impl Routing {
    /// Time routing claims lagged the truth.
    pub fn lag_time(&self) -> Duration {
        self.lagging.lag_time
    }

    fn once(&mut self, now: Duration, cluster: &str, subject: &str, what: String) -> Option<Violation> {
        self.reported.insert(format!("{cluster}/{subject}")).then(|| Violation {
            at_ms: ms(now),
            cluster: cluster.to_owned(),
            what,
        })
    }

    /// Check one cluster's truth.
    pub fn check(
        &mut self,
        cond: &Conditions,
        now: Duration,
        step: Duration,
        cluster: &str,
        truth: &ClusterTruth,
    ) -> Vec<Violation> {
        let mut out = Vec::new();
        let mains: Vec<&String> =
            truth.pods.iter().filter(|(_, p)| p.label.as_deref() == Some("main")).map(|(n, _)| n).collect();
        if mains.len() > 1 {
            out.extend(self.once(now, cluster, "two-mains", format!("more than one pod labelled main: {mains:?}")));
        } else {
            self.reported.remove(&format!("{cluster}/two-mains"));
        }
        let names = ClusterNames::new(cluster, NAMESPACE);
        for (name, pod) in &truth.pods {
            // The write Service reaches only the MAIN the cluster's status holds (the write pod,
            // or the replica a failover promoted), and only while it is a MAIN with its data. A
            // pod keeps its labels across container restarts, so a MAIN that comes back empty or
            // demoted still carries `main` until the operator removes it: judged with the bound,
            // whose clock stops while the operator is down. An old MAIN a failover replaced keeps
            // its label only until the failover's first step, and the two-mains check above
            // catches it beside the new one.
            let write_routed = pod.label.as_deref() == Some("main") && pod.routable();
            let held = truth.main_pod(cluster);
            let stale_main = write_routed && *name != held;
            out.extend(self.lagging.claim(cond, now, step, cluster, format!("old-main {name}"), stale_main, || {
                format!("write Service routes to {name}, which is not the MAIN the cluster holds ({held})")
            }));
            let wrong_main = write_routed && (pod.role != Some(Role::Main) || truth.main_lost_data(cluster));
            out.extend(self.lagging.claim(
                cond,
                now,
                step,
                cluster,
                format!("write-endpoint {name}"),
                wrong_main,
                || {
                    format!(
                        "write Service routes to {name} (role {:?}, empty while replicas hold data: {})",
                        pod.role,
                        truth.main_lost_data(cluster)
                    )
                },
            ));
            // The read Service reaches only replicas that serve the MAIN's history: never a MAIN
            // or a diverged replica, and, while clients can write, only replicas registered on
            // this MAIN and in sync (one that misses the MAIN's writes falls behind them). While
            // no client can write, a replica of the last MAIN misses nothing acknowledged.
            let routed = pod.label.as_deref() == Some("replica") && pod.routable();
            let row =
                truth.replica_instances(cluster).into_iter().find(|i| names.pod(*i) == *name).and_then(|i| {
                    truth.rows.get(&i.replica_name()).filter(|r| r.address == names.replication_address(i))
                });
            let diverged = row.is_some_and(|r| r.state == Some(fake_memgraph::ReplicaState::Diverged));
            let behind = truth.write_usable(cluster) && !(pod.follows_main && row.is_some_and(|r| r.healthy()));
            let wrong = routed && (pod.role != Some(Role::Replica) || diverged || behind);
            // A pod on a lost node serves nobody (clients time out: availability measures that),
            // nobody can reach it to look, and Kubernetes keeps it Ready until the node-monitor
            // grace ends, when the route guard takes its label at once. The clock of an episode
            // stops meanwhile, and runs on if the node comes back with the replica still wrong.
            if wrong && (pod.lost_node || pod.cut_off) {
                self.lagging.pause(cluster, &format!("read-endpoint {name}"), step);
                continue;
            }
            out.extend(self.lagging.claim(cond, now, step, cluster, format!("read-endpoint {name}"), wrong, || {
                format!(
                    "read Service routes to {name} (role {:?}, follows the MAIN: {}, registration {:?})",
                    pod.role,
                    pod.follows_main,
                    row.map(|r| r.state)
                )
            }));
        }
        out
    }

    /// Judge the queries the operator sent to a cluster's instances. With failover on
    /// (`failover`), any instance may be promoted, demoted, registered and tested as the MAIN.
    pub fn queries(
        &mut self,
        now: Duration,
        cluster: &str,
        queries: &[(String, String)],
        failover: bool,
    ) -> Vec<Violation> {
        let mut out = Vec::new();
        let read_prefix = format!("{cluster}-read-");
        for (address, query) in queries {
            let roles = failover
                && (query == "SET REPLICATION ROLE TO MAIN"
                    || query == "SET REPLICATION ROLE TO REPLICA WITH PORT 10000"
                    || query.starts_with("REGISTER REPLICA write ")
                    || query == memgraph::TEST_WRITE_QUERY
                    || query == memgraph::TEST_CLEANUP_QUERY
                    || query == "SHOW SNAPSHOTS");
            let allowed = query == "SHOW REPLICATION ROLE"
                || query == "SHOW REPLICAS"
                || query == "CREATE SNAPSHOT"
                || (query == "SHOW SNAPSHOTS" && address.starts_with(&format!("{cluster}-write-")))
                || query == memgraph::NODE_COUNT_QUERY
                || query == memgraph::PING_QUERY
                || query == memgraph::TEST_READ_QUERY
                // The replication test writes and cleans up on the write instance only.
                || ((query == memgraph::TEST_WRITE_QUERY || query == memgraph::TEST_CLEANUP_QUERY)
                    && address.starts_with(&format!("{cluster}-write-")))
                || query.starts_with("REGISTER REPLICA read_")
                || query.starts_with("DROP REPLICA ")
                || (query == "SET REPLICATION ROLE TO REPLICA WITH PORT 10000" && address.starts_with(&read_prefix));
            if !allowed && !roles {
                out.extend(self.once(
                    now,
                    cluster,
                    &format!("query {query} {address}"),
                    format!("operator sent '{query}' to {address}"),
                ));
            }
        }
        out
    }
}
