//! The client workload: one application per cluster that writes through the write Service and
//! reads through the read Service for the whole run, recording every request and what it saw.
//!
//! Services are resolved as Kubernetes does: the endpoints of a Service are the ready pods whose
//! labels match the selector of the Service object the operator created (no Service, no
//! endpoints).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_memgraph::{Client, Value};
use memgraph_operator::names::ClusterNames;
use turmoil::Sim;

use super::rng::Rng;
use super::run::NAMESPACE;
use crate::apiserver::{ApiServer, Key};

/// Label of the nodes the workload writes.
pub const LABEL: &str = "W";
/// A write every 300 to 600 ms: often enough to measure availability to the second, rarely
/// enough that the graph (which every read scans) stays small.
pub const WRITE_EVERY: Duration = Duration::from_millis(300);
/// A read every 400 to 800 ms.
pub const READ_EVERY: Duration = Duration::from_millis(400);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(0)
}

/// Which Service a request went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The write Service.
    Write,
    /// The read Service.
    Read,
}

/// One request and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// When it started, in simulated ms.
    pub start_ms: u64,
    /// Which Service.
    pub kind: Kind,
    /// The pod it went to; `None` when the Service had no endpoint.
    pub pod: Option<String>,
    /// `None` on success, else what the client saw.
    pub error: Option<String>,
}

/// An acknowledged write.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// Its id (ids grow by one per attempt).
    pub id: i64,
    /// When it was acknowledged, in simulated ms.
    pub at_ms: u64,
    /// The pod that acknowledged it.
    pub pod: String,
    /// When it was acknowledged the MAIN had an in-sync SYNC or STRICT_SYNC replica, so the
    /// write is on that replica too: no failure of the write pod may lose it.
    pub protected: bool,
}

/// A successful read through the read Service: what the replica held.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadSeen {
    /// When the read started, in simulated ms.
    pub start_ms: u64,
    /// The pod that answered.
    pub pod: String,
    /// Highest write id it held.
    pub max_id: Option<i64>,
    /// How many written nodes it held.
    pub count: i64,
}

/// What one cluster's workload did.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Every request, in order.
    pub attempts: Vec<Attempt>,
    /// Writes acknowledged, in order.
    pub acked: Vec<Ack>,
    /// Every write sent, acknowledged or not: (id, pod).
    pub sent: Vec<(i64, String)>,
    /// Successful reads.
    pub reads: Vec<ReadSeen>,
    /// Next write id (kept here so ids stay unique if the workload host restarts).
    pub next_id: i64,
    /// Set by the driver from its last sample: a write acknowledged now is protected.
    pub protected_now: bool,
}

impl Ledger {
    /// Requests of a kind, and how many failed.
    pub fn counts(&self, kind: Kind) -> (usize, usize) {
        let of_kind = self.attempts.iter().filter(|a| a.kind == kind);
        let failed = of_kind.clone().filter(|a| a.error.is_some()).count();
        (of_kind.count(), failed)
    }
}

/// Shared ledger of one cluster.
pub type SharedLedger = Arc<Mutex<Ledger>>;

fn lock(ledger: &SharedLedger) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The endpoints of a Service: (pod name, pod host) of every ready pod its selector matches.
pub fn endpoints(api: &ApiServer, service: &str) -> Vec<(String, String)> {
    let Some(selector) = api.with_object(&Key::new("Service", NAMESPACE, service), |svc| {
        svc["spec"]["selector"]
            .as_object()
            .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned()))).collect::<Vec<_>>())
    }) else {
        return Vec::new();
    };
    let Some(selector) = selector.filter(|s| !s.is_empty()) else { return Vec::new() };
    api.scan("Pod", |key, p| {
        let labels = &p["metadata"]["labels"];
        let selected = key.namespace == NAMESPACE && selector.iter().all(|(k, v)| labels[k].as_str() == Some(v));
        let ready = p["status"]["conditions"][0]["status"].as_str() == Some("True");
        (selected && ready && p["metadata"]["deletionTimestamp"].is_null()).then(|| {
            let host = format!(
                "{}.{}.{NAMESPACE}.svc.cluster.local",
                key.name,
                p["spec"]["subdomain"].as_str().unwrap_or_default()
            );
            (key.name.clone(), host)
        })
    })
}

type Connections = BTreeMap<String, Client<turmoil::net::TcpStream>>;

async fn query(
    connections: &mut Connections,
    host: &str,
    q: &str,
    params: BTreeMap<String, Value>,
) -> Result<Vec<Vec<Value>>, String> {
    if !connections.contains_key(host) {
        let connect = async {
            let stream = turmoil::net::TcpStream::connect(format!("{host}:7687")).await.map_err(|e| e.to_string())?;
            Client::connect(stream, None).await.map_err(|e| e.to_string())
        };
        let client = tokio::time::timeout(Duration::from_secs(2), connect)
            .await
            .map_err(|_| "connect timed out".to_owned())??;
        connections.insert(host.to_owned(), client);
    }
    let Some(client) = connections.get_mut(host) else { return Err("no connection".to_owned()) };
    match tokio::time::timeout(Duration::from_secs(3), client.run(q, params)).await {
        Ok(Ok(result)) => Ok(result.rows),
        Ok(Err(e)) => {
            if e.server_message().is_none() {
                connections.remove(host);
            }
            Err(e.server_message().map_or_else(|| e.to_string(), str::to_owned))
        }
        Err(_) => {
            connections.remove(host);
            Err("timed out".to_owned())
        }
    }
}

fn elapsed_ms() -> u64 {
    turmoil::sim_elapsed().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Host name of a cluster's workload.
pub fn host_name(cluster: &str) -> String {
    format!("workload-{cluster}")
}

async fn write(api: &ApiServer, names: &ClusterNames, ledger: &SharedLedger, connections: &mut Connections) {
    let start_ms = elapsed_ms();
    let Some((pod, host)) = endpoints(api, &names.write_service()).first().cloned() else {
        lock(ledger).attempts.push(Attempt {
            start_ms,
            kind: Kind::Write,
            pod: None,
            error: Some("no endpoint".into()),
        });
        return;
    };
    let id = {
        let mut l = lock(ledger);
        l.next_id += 1;
        let id = l.next_id;
        l.sent.push((id, pod.clone()));
        id
    };
    let params = BTreeMap::from([("id".to_owned(), Value::Int(id))]);
    let result = query(connections, &host, &format!("CREATE (n:{LABEL} {{id: $id}}) RETURN n.id"), params).await;
    let mut l = lock(ledger);
    if result.is_ok() {
        let protected = l.protected_now;
        l.acked.push(Ack { id, at_ms: elapsed_ms(), pod: pod.clone(), protected });
    }
    l.attempts.push(Attempt { start_ms, kind: Kind::Write, pod: Some(pod), error: result.err() });
}

async fn read(api: &ApiServer, names: &ClusterNames, ledger: &SharedLedger, connections: &mut Connections, pick: u64) {
    let start_ms = elapsed_ms();
    let readers = endpoints(api, &names.read_service());
    if readers.is_empty() {
        lock(ledger).attempts.push(Attempt {
            start_ms,
            kind: Kind::Read,
            pod: None,
            error: Some("no endpoint".into()),
        });
        return;
    }
    let (pod, host) = readers[usize::try_from(pick % readers.len() as u64).unwrap_or(0)].clone();
    let q = format!("MATCH (n:{LABEL}) RETURN max(n.id) AS id, count(n) AS c");
    let result = query(connections, &host, &q, BTreeMap::new()).await;
    let mut l = lock(ledger);
    if let Ok(rows) = &result {
        let row = rows.first();
        let max_id = match row.and_then(|r| r.first()) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        };
        let count = match row.and_then(|r| r.get(1)) {
            Some(Value::Int(c)) => *c,
            _ => 0,
        };
        l.reads.push(ReadSeen { start_ms, pod: pod.clone(), max_id, count });
    }
    l.attempts.push(Attempt { start_ms, kind: Kind::Read, pod: Some(pod), error: result.err() });
}

/// Install the workload host of `cluster`: a writer and a reader, each on its own connections,
/// so a slow write never delays a read.
pub fn install(sim: &mut Sim<'_>, api: ApiServer, cluster: &str, ledger: SharedLedger, seed: u64) {
    let names = ClusterNames::new(cluster, NAMESPACE);
    sim.host(host_name(cluster), move || {
        let api = api.clone();
        let ledger = ledger.clone();
        let names = names.clone();
        async move {
            let writer = async {
                let mut rng = Rng::new(seed);
                let mut connections = Connections::new();
                loop {
                    tokio::time::sleep(WRITE_EVERY + Duration::from_millis(rng.below(ms(WRITE_EVERY)))).await;
                    write(&api, &names, &ledger, &mut connections).await;
                }
            };
            let reader = async {
                let mut rng = Rng::new(seed ^ 0x5eed);
                let mut connections = Connections::new();
                loop {
                    tokio::time::sleep(READ_EVERY + Duration::from_millis(rng.below(ms(READ_EVERY)))).await;
                    let pick = rng.next_u64();
                    read(&api, &names, &ledger, &mut connections, pick).await;
                }
            };
            tokio::join!(writer, reader);
            Ok(())
        }
    });
}
