//! The client workload: writes through the write Service and reads through the read Service for
//! the whole run, as an application would, recording which writes were acknowledged.
//!
//! Services are resolved as Kubernetes does: the endpoints of a Service are the ready pods whose
//! labels match its selector (`memgraph.io/role=main` or `=replica`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_memgraph::{Client, Value};
use turmoil::Sim;

use super::rng::Rng;
use super::run::NAMESPACE;
use crate::apiserver::ApiServer;

/// Host name of the workload.
pub const WORKLOAD_HOST: &str = "workload";

/// What the workload saw.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Ids of acknowledged writes, in order, with the pod that acknowledged them.
    pub acked: Vec<(i64, String)>,
    /// Writes that failed (not acknowledged; they may or may not be committed).
    pub failed_writes: u64,
    /// Writes attempted while the write Service had no endpoint.
    pub no_write_endpoint: u64,
    /// Reads that succeeded.
    pub reads: u64,
    /// Reads that failed.
    pub failed_reads: u64,
    /// Next write id (kept here so ids stay unique if the workload host restarts).
    pub next_id: i64,
}

/// Shared ledger.
pub type SharedLedger = Arc<Mutex<Ledger>>;

fn endpoints(api: &ApiServer, role: &str) -> Vec<(String, String)> {
    let selector = BTreeMap::from([("memgraph.io/role".to_owned(), role.to_owned())]);
    api.list_json("Pod", NAMESPACE, &selector)
        .into_iter()
        .filter(|p| {
            p["status"]["conditions"][0]["status"].as_str() == Some("True")
                && p["metadata"]["deletionTimestamp"].is_null()
        })
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            let host =
                format!("{name}.{}.{NAMESPACE}.svc.cluster.local", p["spec"]["subdomain"].as_str().unwrap_or_default());
            (name, host)
        })
        .collect()
}

type Connections = BTreeMap<String, Client<turmoil::net::TcpStream>>;

async fn query(
    connections: &mut Connections,
    host: &str,
    q: &str,
    params: BTreeMap<String, Value>,
) -> Result<(), String> {
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
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            if e.server_message().is_none() {
                connections.remove(host);
            }
            Err(e.to_string())
        }
        Err(_) => {
            connections.remove(host);
            Err("timed out".to_owned())
        }
    }
}

/// Install the workload host.
pub fn install(sim: &mut Sim<'_>, api: ApiServer, ledger: SharedLedger, seed: u64) {
    sim.host(WORKLOAD_HOST, move || {
        let api = api.clone();
        let ledger = ledger.clone();
        async move {
            let mut rng = Rng::new(seed);
            let mut connections = Connections::new();
            loop {
                tokio::time::sleep(Duration::from_millis(150 + rng.below(150))).await;
                let writers = endpoints(&api, "main");
                if let Some((pod, host)) = writers.first().cloned() {
                    let id = ledger
                        .lock()
                        .map(|mut l| {
                            l.next_id += 1;
                            l.next_id
                        })
                        .unwrap_or(0);
                    let params = BTreeMap::from([("id".to_owned(), Value::Int(id))]);
                    let result = query(&mut connections, &host, "CREATE (n:W {id: $id}) RETURN n", params).await;
                    if let Ok(mut l) = ledger.lock() {
                        match result {
                            Ok(()) => l.acked.push((id, pod)),
                            Err(_) => l.failed_writes += 1,
                        }
                    }
                } else if let Ok(mut l) = ledger.lock() {
                    l.no_write_endpoint += 1;
                }
                let readers = endpoints(&api, "replica");
                let recent = ledger.lock().ok().and_then(|l| l.acked.last().map(|(id, _)| *id));
                if let (false, Some(id)) = (readers.is_empty(), recent) {
                    let pick = usize::try_from(rng.below(readers.len() as u64)).unwrap_or(0);
                    let (_, host) = readers[pick].clone();
                    let params = BTreeMap::from([("id".to_owned(), Value::Int(id))]);
                    let result = query(&mut connections, &host, "MATCH (n:W {id: $id}) RETURN n.id", params).await;
                    if let Ok(mut l) = ledger.lock() {
                        match result {
                            Ok(()) => l.reads += 1,
                            Err(_) => l.failed_reads += 1,
                        }
                    }
                }
            }
        }
    });
}
