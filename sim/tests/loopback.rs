//! The real reconcile against fake-memgraph pods on loopback TCP, through the production neo4rs
//! driver, with the in-memory API server and a simulated StatefulSet controller and kubelet.
//! One cluster goes through creation, pod kills, volume loss, a write-pod restart, scaling
//! 3→5→1→0→2, a mode change and deletion; after each step it must converge and stay cheap.
//!
//! Real time is used (the servers run on real sockets). The harness polls every 50 ms and
//! requeues reconciles after at most one second, instead of the operator's 5 s, to keep the test
//! short; watch notifications trigger reconciles exactly as the controller runtime does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use fake_memgraph::{Client, ReplicaState, Role, Value as FakeValue};
use k8s_openapi::api::core::v1::Pod;
use memgraph_operator::api::{MemgraphCluster, Phase};
use memgraph_operator::clock::SystemClock;
use memgraph_operator::kube_api::Kube;
use memgraph_operator::memgraph::{Neo4rsBolt, Timeouts};
use memgraph_operator::reconcile::{Memory, Outcome, reconcile};
use serde_json::json;
use sim::apiserver::{ApiServer, Change, Key};
use sim::bolt::CountingBolt;
use sim::kubelet::LoopbackKubelet;
use sim::net::Routes;
use tokio::sync::broadcast;
use tokio::time::Instant;

const NS: &str = "ns";
const NAME: &str = "c";

struct World {
    api: ApiServer,
    routes: Routes,
    kubelet: LoopbackKubelet,
    bolt: CountingBolt<Neo4rsBolt>,
    changes: broadcast::Receiver<Change>,
    next_reconcile: Instant,
    reconciles: usize,
    memory: Memory,
}

fn cluster_key() -> Key {
    Key::new("MemgraphCluster", NS, NAME)
}

impl World {
    fn new() -> Self {
        let api = ApiServer::new(Arc::new(SystemClock));
        let routes = Routes::default();
        let kubelet = LoopbackKubelet::new(
            api.clone(),
            routes.clone(),
            vec!["--fake-replica-check-frequency-ms=100".into(), "--fake-rpc-timeout-ms=1000".into()],
        );
        let resolver_routes = routes.clone();
        let bolt = CountingBolt::new(
            Neo4rsBolt::new(Timeouts {
                connect: Duration::from_secs(2),
                probe: Duration::from_secs(2),
                command: Duration::from_secs(5),
                snapshot: Duration::from_secs(5),
            })
            .with_resolver(Arc::new(move |address: &str| resolver_routes.dial(address))),
        );
        let changes = api.subscribe();
        Self {
            api,
            routes,
            kubelet,
            bolt,
            changes,
            next_reconcile: Instant::now(),
            reconciles: 0,
            memory: Memory::default(),
        }
    }

    fn create_cluster(&self, spec: serde_json::Value) {
        self.api
            .create(json!({
                "apiVersion": "memgraph.io/v1alpha1",
                "kind": "MemgraphCluster",
                "metadata": {"name": NAME, "namespace": NS},
                "spec": spec,
            }))
            .expect("create cluster");
    }

    fn edit_spec(&self, change: impl FnOnce(&mut serde_json::Value)) {
        self.api.update(&cluster_key(), |v| {
            change(&mut v["spec"]);
            let generation = v["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            v["metadata"]["generation"] = json!(generation);
        });
    }

    async fn cluster(&self) -> Option<MemgraphCluster> {
        self.api.get::<MemgraphCluster>(NS, NAME).await.expect("get cluster")
    }

    async fn reconcile(&mut self) -> Option<Outcome> {
        let cluster = self.cluster().await?;
        self.reconciles += 1;
        match reconcile(&cluster, &self.api, &self.bolt, &SystemClock, &self.memory).await {
            Ok(outcome) => Some(outcome),
            Err(e) => {
                // The controller runtime retries with backoff; so does the harness.
                eprintln!("reconcile failed (will retry): {e}");
                None
            }
        }
    }

    async fn step(&mut self) {
        self.kubelet.sync().await;
        let mut triggered = false;
        while let Ok(change) = self.changes.try_recv() {
            triggered |= change.key.namespace == NS;
        }
        if triggered || Instant::now() >= self.next_reconcile {
            let requeue = match self.reconcile().await {
                Some(outcome) => outcome.requeue_after.min(Duration::from_secs(1)),
                None => Duration::from_millis(500),
            };
            self.next_reconcile = Instant::now() + requeue;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    async fn converge(&mut self, what: &str, desired: usize, mode: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            self.step().await;
            match self.check(desired, mode).await {
                Ok(()) => {
                    eprintln!("converged: {what} after {} reconciles", self.reconciles);
                    return;
                }
                Err(why) => last = why,
            }
        }
        let status = self.cluster().await.and_then(|c| c.status);
        panic!("{what}: did not converge within 60 s: {last}\nstatus: {status:#?}");
    }

    fn pod_labels(&self) -> BTreeMap<String, Option<String>> {
        self.api
            .list_json("Pod", NS, &BTreeMap::new())
            .into_iter()
            .map(|p| {
                (
                    p["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
                    p["metadata"]["labels"]["memgraph.io/role"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    /// Everything a converged cluster must satisfy.
    async fn check(&self, desired: usize, mode: &str) -> Result<(), String> {
        let cluster = self.cluster().await.ok_or("cluster is gone")?;
        let status = cluster.status.clone().unwrap_or_default();
        if status.phase != Phase::Running {
            return Err(format!("phase {:?}", status.phase));
        }
        if status.observed_generation != cluster.metadata.generation {
            return Err("status is for an older generation".into());
        }
        if status.ready_replicas != desired as i32 || status.registered_replicas != desired as i32 {
            return Err(format!(
                "status says {} ready, {} registered",
                status.ready_replicas, status.registered_replicas
            ));
        }
        let mut want_labels = BTreeMap::from([("c-write-0".to_owned(), Some("main".to_owned()))]);
        for i in 0..desired {
            want_labels.insert(format!("c-read-{i}-0"), Some("replica".to_owned()));
        }
        let labels = self.pod_labels();
        if labels != want_labels {
            return Err(format!("labels {labels:?}"));
        }
        let main = self.kubelet.server(NS, "c-write-0").await.ok_or("no write server")?;
        if main.role() != Role::Main {
            return Err("write pod is not MAIN".into());
        }
        let rows = main.replicas();
        let names: BTreeSet<String> = rows.iter().map(|r| r.name.clone()).collect();
        let want: BTreeSet<String> = (0..desired).map(|i| format!("read_{i}")).collect();
        if names != want {
            return Err(format!("registered {names:?}"));
        }
        for row in &rows {
            if !matches!(row.state, Some(ReplicaState::Ready)) {
                return Err(format!("{} is {:?}", row.name, row.state));
            }
            if format!("{:?}", row.mode).to_lowercase().replace("strictsync", "strict_sync") != mode {
                return Err(format!("{} is {:?} not {mode}", row.name, row.mode));
            }
        }
        for i in 0..desired {
            let server = self.kubelet.server(NS, &format!("c-read-{i}-0")).await.ok_or("no read server")?;
            if server.role() != Role::Replica {
                return Err(format!("read-{i} is not a REPLICA"));
            }
            if server.digest() != main.digest() {
                return Err(format!("read-{i} has not caught up"));
            }
        }
        let statefulsets: BTreeSet<String> = self
            .api
            .list_json("StatefulSet", NS, &BTreeMap::new())
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap_or("").to_owned())
            .collect();
        let mut want_sts: BTreeSet<String> = (0..desired).map(|i| format!("c-read-{i}")).collect();
        want_sts.insert("c-write".into());
        if statefulsets != want_sts {
            return Err(format!("statefulsets {statefulsets:?}"));
        }
        Ok(())
    }

    /// A healthy reconcile writes nothing to the API server and asks each instance one
    /// question, plus one SHOW REPLICAS on the MAIN.
    async fn assert_cheap(&mut self, desired: usize) {
        self.bolt.take();
        let (_, writes_before) = self.api.request_counts();
        let events_before = self.api.events().len();
        let outcome = self.reconcile().await.expect("reconcile");
        let (_, writes_after) = self.api.request_counts();
        assert_eq!(writes_after, writes_before, "a healthy reconcile must not write to the API server");
        assert_eq!(self.api.events().len(), events_before, "nor publish events");
        assert_eq!(outcome.rounds, 1);
        let counts = self.bolt.take();
        let mut per_address: BTreeMap<String, u64> = BTreeMap::new();
        for ((address, query), n) in &counts {
            if query != "SHOW REPLICAS" {
                *per_address.entry(address.clone()).or_default() += n;
            }
        }
        assert_eq!(per_address.len(), desired + 1, "{counts:?}");
        assert!(per_address.values().all(|n| *n == 1), "one query per instance: {counts:?}");
        let show: u64 = counts.iter().filter(|((_, q), _)| q == "SHOW REPLICAS").map(|(_, n)| n).sum();
        assert_eq!(show, 1, "{counts:?}");
    }

    /// Crash a read pod (optionally losing its volume), let the operator see it down, bring it
    /// back, and check that the one reconcile its readiness triggers registers and labels it.
    async fn restart_read_pod(&mut self, index: usize, lose_volume: bool) {
        let pod = format!("c-read-{index}-0");
        if lose_volume {
            self.kubelet.wipe(NS, &format!("data-{pod}"));
        }
        assert!(self.kubelet.kill(NS, &pod).await);
        self.reconcile().await.expect("reconcile while the pod is down");
        assert_eq!(self.pod_labels().get(&pod), Some(&None), "an unreachable replica loses its label");
        self.kubelet.sync().await;
        while self.changes.try_recv().is_ok() {}
        let outcome = self.reconcile().await.expect("reconcile after the pod is ready");
        assert_eq!(
            self.pod_labels().get(&pod),
            Some(&Some("replica".to_owned())),
            "registered and labelled by the first reconcile after readiness ({} rounds)",
            outcome.rounds
        );
    }

    async fn client(&self, pod: &str, service: &str) -> Client<tokio::net::TcpStream> {
        let address = self.routes.dial(&format!("{pod}.{service}.{NS}.svc.cluster.local:7687"));
        let stream = tokio::net::TcpStream::connect(address).await.expect("connect");
        Client::connect(stream, None).await.expect("bolt")
    }

    async fn write_nodes(&self, from: i64, to: i64) {
        let mut client = self.client("c-write-0", "c-write-hl").await;
        for id in from..to {
            let params = BTreeMap::from([("id".to_owned(), FakeValue::Int(id))]);
            client.run("CREATE (n:Item {id: $id}) RETURN n", params).await.expect("write");
        }
    }

    async fn count_on(&self, pod: &str, service: &str) -> i64 {
        let mut client = self.client(pod, service).await;
        let result = client.run("MATCH (n:Item) RETURN count(n) AS c", BTreeMap::new()).await.expect("count");
        match result.single() {
            Some(FakeValue::Int(n)) => *n,
            other => panic!("count returned {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_keeps_a_cluster_converged_through_restarts_scaling_and_deletion() {
    let mut world = World::new();
    world.create_cluster(json!({"read": {"replicas": 3}}));
    world.converge("create 1+3", 3, "async").await;
    world.assert_cheap(3).await;
    world.write_nodes(0, 20).await;
    world.converge("replicate 20 writes", 3, "async").await;
    assert_eq!(world.count_on("c-read-2-0", "c-read-2").await, 20);

    // A replica crashes and restarts with its volume.
    world.restart_read_pod(1, false).await;
    world.converge("replica restart", 3, "async").await;

    // A replica loses its volume: it comes back as an empty MAIN and must be re-registered.
    world.restart_read_pod(2, true).await;
    world.converge("replica volume loss", 3, "async").await;
    assert_eq!(world.count_on("c-read-2-0", "c-read-2").await, 20, "recovered from the MAIN");

    // The write pod is deleted and recreated: it recovers its data and its replicas.
    world.api.delete_key(&Key::new("Pod", NS, "c-write-0"));
    world.converge("write pod restart", 3, "async").await;
    assert_eq!(world.count_on("c-write-0", "c-write-hl").await, 20, "the MAIN kept its data");
    world.write_nodes(20, 25).await;

    for replicas in [5usize, 1, 0, 2] {
        world.edit_spec(|spec| spec["read"]["replicas"] = json!(replicas));
        world.converge(&format!("scale to {replicas}"), replicas, "async").await;
        world.assert_cheap(replicas).await;
    }
    assert_eq!(world.count_on("c-read-1-0", "c-read-1").await, 25);

    world.edit_spec(|spec| spec["replication"] = json!({"mode": "SYNC"}));
    world.converge("mode change to SYNC", 2, "sync").await;
    world.write_nodes(25, 30).await;
    world.converge("sync writes", 2, "sync").await;

    // Deletion: the finalizer drops the registrations, then garbage collection removes the rest.
    let main = world.kubelet.server(NS, "c-write-0").await.expect("main");
    world.api.delete_key(&cluster_key());
    let deadline = Instant::now() + Duration::from_secs(30);
    while world.cluster().await.is_some() && Instant::now() < deadline {
        world.step().await;
    }
    assert!(world.cluster().await.is_none(), "the cluster was not released");
    assert!(main.replicas().is_empty(), "registrations were dropped before deletion");
    for _ in 0..5 {
        world.step().await;
    }
    let left: Vec<Key> = world.api.keys().into_iter().filter(|k| k.kind != "PersistentVolumeClaim").collect();
    assert!(left.is_empty(), "garbage collection left {left:?}");
    let pods: Vec<Pod> = world.api.list(NS, &BTreeMap::new()).await.expect("pods");
    assert!(pods.is_empty());
}
