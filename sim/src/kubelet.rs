//! A kubelet for loopback tests: runs a fake-memgraph server for every pod on real TCP, keeps
//! each claim's data in memory across restarts, reports readiness, restarts crashed servers and
//! stops deleted pods gracefully (running the preStop snapshot through the on-exit snapshot).

use std::collections::BTreeMap;
use std::sync::Mutex;

use fake_memgraph::{Config, IdSource, MemDataDir, ServerHandle, SystemClock};
use serde_json::{Value, json};

use crate::apiserver::{ApiServer, Key};
use crate::controllers::sync_statefulsets;
use crate::net::{LoopbackNet, Routes};

struct Running {
    uid: String,
    handle: ServerHandle,
    host: String,
}

/// The loopback kubelet.
pub struct LoopbackKubelet {
    api: ApiServer,
    routes: Routes,
    volumes: Mutex<BTreeMap<Key, MemDataDir>>,
    running: tokio::sync::Mutex<BTreeMap<Key, Running>>,
    extra_args: Vec<String>,
}

/// The Memgraph version a fake should emulate for an image such as `memgraph/memgraph:3.5.1`.
pub fn version_of_image(image: &str) -> Option<String> {
    memgraph_operator::version::MemgraphVersion::from_image(image).map(|v| format!("{}.{}", v.major, v.minor))
}

/// The Memgraph command line of a pod: its container's args, the version its image names (for
/// the fake), then `extra` knobs.
pub fn memgraph_command_line(pod: &Value, extra: &[String]) -> Vec<String> {
    let container = &pod["spec"]["containers"][0];
    let mut args: Vec<String> =
        container["args"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_owned)).collect();
    if let Some(version) = container["image"].as_str().and_then(version_of_image) {
        args.push(format!("--memgraph-version={version}"));
    }
    args.extend(extra.iter().cloned());
    args
}

/// The pod's DNS name: `HOSTNAME.SUBDOMAIN.NAMESPACE.svc.cluster.local`.
pub fn pod_host(pod: &Value, key: &Key) -> String {
    let subdomain = pod["spec"]["subdomain"].as_str().unwrap_or_default();
    format!("{}.{subdomain}.{}.svc.cluster.local", key.name, key.namespace)
}

impl LoopbackKubelet {
    /// A kubelet for `api`, publishing pod addresses in `routes`. `extra_args` are appended to
    /// every Memgraph command line (fake-only knobs such as a faster heartbeat).
    pub fn new(api: ApiServer, routes: Routes, extra_args: Vec<String>) -> Self {
        Self { api, routes, volumes: Mutex::default(), running: tokio::sync::Mutex::default(), extra_args }
    }

    fn volume(&self, claim: &Key) -> MemDataDir {
        let mut volumes = self.volumes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        volumes.entry(claim.clone()).or_insert_with(|| MemDataDir::new("/var/lib/memgraph")).clone()
    }

    /// The running server of a pod.
    pub async fn server(&self, namespace: &str, pod: &str) -> Option<ServerHandle> {
        self.running.lock().await.get(&Key::new("Pod", namespace, pod)).map(|r| r.handle.clone())
    }

    /// Crash a pod's server. A real kubelet reports a dead container not ready at once (its
    /// lifecycle event, not a probe, tells it); it restarts it on the next sync.
    pub async fn kill(&self, namespace: &str, pod: &str) -> bool {
        let key = Key::new("Pod", namespace, pod);
        let killed = match self.running.lock().await.get(&key) {
            Some(r) => {
                r.handle.kill();
                true
            }
            None => false,
        };
        if killed {
            self.set_ready(&key, false, None);
        }
        killed
    }

    /// Lose a claim's data.
    pub fn wipe(&self, namespace: &str, claim: &str) {
        self.volume(&Key::new("PersistentVolumeClaim", namespace, claim)).wipe();
    }

    fn set_ready(&self, key: &Key, ready: bool, restarts: Option<i64>) {
        self.api.update(key, |pod| {
            pod["status"]["phase"] = json!(if ready { "Running" } else { "Pending" });
            pod["status"]["conditions"] = json!([{"type": "Ready", "status": if ready { "True" } else { "False" }}]);
            if let Some(restarts) = restarts {
                pod["status"]["containerStatuses"] =
                    json!([{"name": "memgraph", "restartCount": restarts, "ready": ready}]);
            }
        });
    }

    async fn start(&self, key: &Key, pod: &Value) -> Result<(ServerHandle, String), String> {
        let args = memgraph_command_line(pod, &self.extra_args);
        let config = Config::parse_args(args).map_err(|e| e.to_string())?;
        let claim = Key::new("PersistentVolumeClaim", &key.namespace, &format!("data-{}", key.name));
        let host = pod_host(pod, key);
        let net = LoopbackNet::new(host.clone(), self.routes.clone());
        let restarts = pod["status"]["containerStatuses"][0]["restartCount"].as_u64().unwrap_or(0);
        let seed = key.name.bytes().fold(restarts, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let handle =
            fake_memgraph::Server::start(config, net, self.volume(&claim), SystemClock, IdSource::seeded(seed))
                .await
                .map_err(|e| e.to_string())?;
        Ok((handle, host))
    }

    /// One pass: StatefulSets → pods and claims, pods → servers, deleted pods stopped.
    pub async fn sync(&self) {
        sync_statefulsets(&self.api);
        let pods = self.api.all_of_kind("Pod");
        let mut running = self.running.lock().await;
        // Stop servers of pods that are gone or were replaced by a new pod of the same name.
        let gone: Vec<Key> = running
            .iter()
            .filter(|(k, r)| {
                !pods.iter().any(|(pk, p)| pk == *k && p["metadata"]["uid"].as_str() == Some(r.uid.as_str()))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some(r) = running.remove(&key) {
                r.handle.kill();
                self.routes.remove_host(&r.host);
            }
        }
        for (key, pod) in pods {
            let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
            if !pod["metadata"]["deletionTimestamp"].is_null() {
                // Graceful deletion: preStop and on-exit snapshot happen in shutdown.
                if let Some(r) = running.remove(&key) {
                    r.handle.shutdown().await;
                    self.routes.remove_host(&r.host);
                }
                self.api.remove(&key);
                continue;
            }
            let crashed = running.get(&key).is_some_and(|r| !r.handle.is_running());
            if crashed {
                if let Some(r) = running.remove(&key) {
                    self.routes.remove_host(&r.host);
                }
                let restarts = pod["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(0) + 1;
                self.set_ready(&key, false, Some(restarts));
            }
            if running.contains_key(&key) {
                continue;
            }
            let pod = self.api.get_json(&key).unwrap_or(pod);
            match self.start(&key, &pod).await {
                Ok((handle, host)) => {
                    running.insert(key.clone(), Running { uid, handle, host });
                    let restarts = pod["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(0);
                    self.set_ready(&key, true, Some(restarts));
                }
                Err(e) => {
                    tracing::warn!(pod = %key.name, error = %e, "container failed to start");
                    self.set_ready(&key, false, None);
                }
            }
        }
        // Claims that no longer exist take their data with them.
        let claims: Vec<Key> = self.api.all_of_kind("PersistentVolumeClaim").into_iter().map(|(k, _)| k).collect();
        self.volumes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|k, _| claims.contains(k));
    }
}
