//! The kubelet of the simulation: every pod is a turmoil host named by its DNS name, running
//! fake-memgraph on turmoil's TCP with its volume kept outside the host so it survives restarts.
//! Pods have a startup delay, readiness, restart counts, graceful deletion within the grace
//! period (the write pod's preStop snapshot is fake-memgraph's snapshot on exit), and crashes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_memgraph::{Config, IdSource, MemDataDir, ServerHandle, TurmoilNet};
use memgraph_operator::backup::store::MemStore;
use memgraph_operator::builders::agent::{AGENT_CONTAINER, RESTORE_CONTAINER};
use serde_json::{Value, json};
use tokio::sync::Notify;
use turmoil::Sim;

use super::rng::Rng;
use super::time::SimClock;
use super::trace::Trace;
use super::truth::Servers;
use crate::apiserver::{ApiServer, Key};
use crate::controllers::sync_statefulsets;
use crate::kubelet::{memgraph_command_line, pod_host};

/// What a pod's host needs to start Memgraph.
#[derive(Clone)]
struct Launch {
    args: Vec<String>,
    volume: MemDataDir,
    seed: u64,
    startup_delay: Duration,
    /// The backup agent sidecar: its signing key and the store.
    agent: Option<(Vec<u8>, MemStore)>,
    /// The restore init container: prefix, backup, Memgraph version; and the store.
    restore: Option<(String, String, Option<String>, MemStore)>,
}

/// Shared between the kubelet (driver side) and a pod's host software.
#[derive(Default)]
struct Slot {
    launch: Option<Launch>,
    handle: Option<ServerHandle>,
    stop: Arc<Notify>,
    start_error: Option<String>,
    /// Kills the backup agent sidecar (its container restarts).
    agent_kill: Arc<Notify>,
}

type Slots = Arc<Mutex<BTreeMap<String, Slot>>>;

fn lock(slots: &Slots) -> std::sync::MutexGuard<'_, BTreeMap<String, Slot>> {
    slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Kubelet state of one pod object.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Host software started (or starting) for this pod uid.
    Running { uid: String },
    /// Crashed; restart at this elapsed time.
    CrashLoop { uid: String, restart_at: Duration },
    /// Graceful stop requested at this elapsed time.
    Stopping { since: Duration, grace: Duration },
}

/// What the kubelet needs of a pod object.
struct PodView {
    key: Key,
    host: String,
    uid: String,
    restarts: i64,
    ready: bool,
    terminating: bool,
    grace: u64,
}

/// The simulated kubelet.
pub struct Kubelet {
    seen_version: u64,
    api: ApiServer,
    clock: SimClock,
    slots: Slots,
    phases: BTreeMap<Key, Phase>,
    hosts: BTreeMap<String, bool>,
    volumes: BTreeMap<Key, MemDataDir>,
    extra_args: Vec<String>,
    rng: Rng,
    /// Pods on lost nodes, since when (shared with the truth: clients cannot reach them).
    lost: LostNodes,
    /// Pods whose readiness flaps (shared with the truth).
    flaps: Flaps,
    /// Startup delay range of Memgraph in a pod.
    pub startup: (Duration, Duration),
    /// The release an image tagged `latest` really is (an image older than its tag says).
    pub latest: Option<String>,
    /// The object store backup agents upload to.
    pub store: MemStore,
}

/// Pods on lost nodes, since when.
pub type LostNodes = Arc<Mutex<BTreeMap<String, Duration>>>;

/// A pod whose readiness probe fails and passes in turn (a probe on an overloaded process):
/// NotReady for `down`, then Ready for `up`, and so on from `start` until `until`, while its
/// Memgraph keeps answering.
#[derive(Debug, Clone, Copy)]
pub struct Flap {
    /// When the first NotReady stretch begins.
    pub start: Duration,
    /// When the flapping stops (Ready again for good).
    pub until: Duration,
    /// Each NotReady stretch.
    pub down: Duration,
    /// Each Ready stretch between them.
    pub up: Duration,
}

impl Flap {
    /// Whether the readiness probe fails at `now`.
    pub fn unready(&self, now: Duration) -> bool {
        if now < self.start || now >= self.until {
            return false;
        }
        let cycle = (self.down + self.up).as_millis().max(1);
        (now - self.start).as_millis() % cycle < self.down.as_millis()
    }
}

/// Pods whose readiness flaps.
pub type Flaps = Arc<Mutex<BTreeMap<String, Flap>>>;

/// How long the node controller waits for a silent node before it marks its pods NotReady
/// (Kubernetes' node-monitor grace period).
pub const NODE_GRACE: Duration = Duration::from_secs(40);

fn host_of(key: &Key, pod: &Value) -> String {
    pod_host(pod, key)
}

impl Kubelet {
    /// A kubelet for `api`. `extra_args` are appended to every Memgraph command line.
    pub fn new(api: ApiServer, clock: SimClock, extra_args: Vec<String>, seed: u64) -> Self {
        Self {
            seen_version: u64::MAX,
            api,
            clock,
            slots: Arc::default(),
            phases: BTreeMap::new(),
            hosts: BTreeMap::new(),
            volumes: BTreeMap::new(),
            extra_args,
            rng: Rng::new(seed),
            lost: LostNodes::default(),
            flaps: Flaps::default(),
            startup: (Duration::from_millis(500), Duration::from_secs(3)),
            latest: None,
            store: MemStore::new(),
        }
    }

    /// Look up running servers from anywhere in the world.
    pub fn servers(&self) -> Servers {
        let slots = self.slots.clone();
        Arc::new(move |pod: &str| lock(&slots).get(pod).and_then(|s| s.handle.clone()).filter(ServerHandle::is_running))
    }

    /// The pods on lost nodes, shared.
    pub fn lost_nodes(&self) -> LostNodes {
        self.lost.clone()
    }

    fn lost(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Duration>> {
        self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The pods whose readiness flaps, shared.
    pub fn flaps(&self) -> Flaps {
        self.flaps.clone()
    }

    /// Make the readiness of `pod` flap (or stop it, with `None`).
    pub fn set_flap(&mut self, pod: &str, flap: Option<Flap>) {
        let mut flaps = self.flaps.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match flap {
            Some(f) => flaps.insert(pod.to_owned(), f),
            None => flaps.remove(pod),
        };
    }

    /// Whether the readiness of `pod` flaps now.
    pub fn flapping(&self, pod: &str) -> bool {
        self.flaps.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(pod)
    }

    fn flapped_unready(&self, pod: &str, now: Duration) -> bool {
        let flaps = self.flaps.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        flaps.get(pod).is_some_and(|f| f.unready(now))
    }

    /// The node of `pod` stops answering: its kubelet no longer reports anything.
    pub fn lose_node(&mut self, pod: &str) {
        let now = self.clock.elapsed();
        self.lost().insert(pod.to_owned(), now);
    }

    /// Whether `pod` is on a lost node.
    pub fn on_lost_node(&self, pod: &str) -> bool {
        self.lost().contains_key(pod)
    }

    /// The lost node of `pod` answers again.
    pub fn restore_node(&mut self, pod: &str) {
        self.lost().remove(pod);
    }

    /// The lost node of `pod` is deleted: its processes are gone and so is the pod object, which
    /// the StatefulSet then recreates elsewhere with the same claim.
    pub fn remove_lost_node(&mut self, sim: &mut Sim<'_>, namespace: &str, pod: &str, trace: &mut Trace) {
        if self.lost().remove(pod).is_none() {
            return;
        }
        let key = Key::new("Pod", namespace, pod);
        if let Some(value) = self.api.get_json(&key) {
            let host = host_of(&key, &value);
            if let Some(handle) = lock(&self.slots).get_mut(pod).and_then(|s| s.handle.take()) {
                handle.kill();
            }
            if self.hosts.contains_key(&host) && sim.is_host_running(host.clone()) {
                sim.crash(host);
            }
        }
        self.phases.remove(&key);
        self.api.remove(&key);
        trace.record(self.clock.elapsed(), format!("node of {pod} deleted; pod {pod} removed"));
    }

    /// The running server of a pod, if it is up.
    pub fn server(&self, pod: &str) -> Option<ServerHandle> {
        lock(&self.slots).get(pod).and_then(|s| s.handle.clone()).filter(ServerHandle::is_running)
    }

    /// The DNS names of every pod host ever started.
    pub fn hosts(&self) -> Vec<String> {
        self.hosts.keys().cloned().collect()
    }

    /// The volume of a claim.
    pub fn volume(&mut self, namespace: &str, claim: &str) -> MemDataDir {
        self.volumes
            .entry(Key::new("PersistentVolumeClaim", namespace, claim))
            .or_insert_with(|| MemDataDir::new("/var/lib/memgraph"))
            .clone()
    }

    fn set_status(&mut self, key: &Key, ready: bool, restarts: i64) {
        // Only real changes are written: every write is a watch notification.
        let Some(pod) = self.api.get_json(key) else { return };
        let ready_now = pod["status"]["conditions"][0]["status"].as_str() == Some("True");
        let restarts_now = pod["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(-1);
        if ready_now == ready && restarts_now == restarts {
            return;
        }
        // As Kubernetes writes it: to the second, and only when the status changes.
        let transition = if ready_now == ready && !pod["status"]["conditions"][0]["lastTransitionTime"].is_null() {
            pod["status"]["conditions"][0]["lastTransitionTime"].clone()
        } else {
            let now = memgraph_operator::clock::Clock::now(&self.clock);
            json!(k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now).to_string())
        };
        self.api.update(key, |pod| {
            pod["status"]["phase"] = json!(if ready { "Running" } else { "Pending" });
            pod["status"]["conditions"] = json!([{
                "type": "Ready",
                "status": if ready { "True" } else { "False" },
                "lastTransitionTime": transition,
            }]);
            pod["status"]["containerStatuses"] =
                json!([{"name": "memgraph", "restartCount": restarts, "ready": ready}]);
        });
    }

    /// The backup agent's key, when the pod has the sidecar: `Err` while its Secret does not
    /// exist (the kubelet cannot mount it, so the pod does not start).
    fn agent_key(&self, key: &Key, pod: &Value) -> Result<Option<Vec<u8>>, ()> {
        let containers = pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
        if !containers.iter().any(|c| c["name"].as_str() == Some(AGENT_CONTAINER)) {
            return Ok(None);
        }
        let volumes = pod["spec"]["volumes"].as_array().cloned().unwrap_or_default();
        let Some(secret) = volumes.iter().find_map(|v| v["secret"]["secretName"].as_str().map(str::to_owned)) else {
            return Err(());
        };
        let value = self.api.get_json(&Key::new("Secret", &key.namespace, &secret)).ok_or(())?;
        // The operator writes the key as stringData; the simulated API server keeps it so.
        let token = value["stringData"]["token"].as_str().map(str::to_owned);
        token.map(|t| Some(t.trim().as_bytes().to_vec())).ok_or(())
    }

    /// Kill the backup agent of `pod` (its container restarts after a moment).
    pub fn kill_agent(&mut self, pod: &str, trace: &mut Trace) -> bool {
        let slots = lock(&self.slots);
        let Some(slot) = slots.get(pod).filter(|s| s.launch.as_ref().is_some_and(|l| l.agent.is_some())) else {
            return false;
        };
        slot.agent_kill.notify_one();
        trace.record(self.clock.elapsed(), format!("backup agent of {pod} killed"));
        true
    }

    fn launch(&mut self, key: &Key, pod: &Value) -> Launch {
        let mut args = memgraph_command_line(pod, &self.extra_args);
        if let Some(version) = &self.latest
            && pod["spec"]["containers"][0]["image"].as_str().is_some_and(|i| i.ends_with(":latest"))
        {
            args.push(format!("--memgraph-version={version}"));
        }
        let volume = self.volume(&key.namespace, &format!("data-{}", key.name));
        let (low, high) = self.startup;
        let spread = u64::try_from(high.saturating_sub(low).as_millis()).unwrap_or(0);
        let startup_delay = low + Duration::from_millis(self.rng.below(spread + 1));
        let agent = self.agent_key(key, pod).ok().flatten().map(|k| (k, self.store.clone()));
        let restore = pod["spec"]["initContainers"].as_array().and_then(|inits| {
            let init = inits.iter().find(|c| c["name"].as_str() == Some(RESTORE_CONTAINER))?;
            let args: Vec<String> =
                init["args"].as_array()?.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect();
            let arg = |name: &str| args.iter().find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_owned));
            Some((
                arg("prefix")?,
                arg("backup").unwrap_or_else(|| "latest".to_owned()),
                arg("memgraph-version"),
                self.store.clone(),
            ))
        });
        Launch { args, volume, seed: self.rng.next_u64(), startup_delay, agent, restore }
    }

    fn start_host(&mut self, sim: &mut Sim<'_>, pod: &str, host: &str, launch: Launch) {
        {
            let mut slots = lock(&self.slots);
            let slot = slots.entry(pod.to_owned()).or_default();
            slot.launch = Some(launch);
            slot.handle = None;
            slot.start_error = None;
            slot.stop = Arc::new(Notify::new());
            slot.agent_kill = Arc::new(Notify::new());
        }
        if self.hosts.contains_key(host) {
            sim.bounce(host.to_owned());
        } else {
            let slots = self.slots.clone();
            let clock = self.clock.clone();
            let name = pod.to_owned();
            sim.host(host.to_owned(), move || {
                let slots = slots.clone();
                let clock = clock.clone();
                let name = name.clone();
                async move {
                    let (launch, stop, agent_kill) = {
                        let slots = lock(&slots);
                        let slot = slots.get(&name);
                        (
                            slot.and_then(|s| s.launch.clone()),
                            slot.map(|s| s.stop.clone()),
                            slot.map(|s| s.agent_kill.clone()),
                        )
                    };
                    let (Some(launch), Some(stop), Some(agent_kill)) = (launch, stop, agent_kill) else {
                        return Ok(());
                    };
                    if let Some((key, store)) = launch.agent.clone() {
                        // The sidecar: its own container, restarted when killed.
                        let (volume, clock) = (launch.volume.clone(), clock.clone());
                        tokio::task::spawn_local(async move {
                            loop {
                                let agent = tokio::task::spawn_local(super::backups::run_agent(
                                    volume.clone(),
                                    store.clone(),
                                    clock.clone(),
                                    key.clone(),
                                ));
                                agent_kill.notified().await;
                                agent.abort();
                                tokio::time::sleep(Duration::from_secs(2)).await;
                            }
                        });
                    }
                    tokio::time::sleep(launch.startup_delay).await;
                    // The restore init container runs first; its failure keeps Memgraph from starting.
                    let restored = match launch.restore.clone() {
                        Some((prefix, backup, version, store)) => {
                            use memgraph_operator::backup::restore::{Selector, restore};
                            let version =
                                version.as_deref().and_then(memgraph_operator::version::MemgraphVersion::parse);
                            let volume = super::backups::SimVolume(launch.volume.clone());
                            let now = memgraph_operator::clock::Clock::now(&clock);
                            restore(&store, &volume, &prefix, &Selector::parse(&backup), version, now)
                                .await
                                .map(|_| ())
                                .map_err(|e| format!("init container restore failed: {e}"))
                        }
                        None => Ok(()),
                    };
                    let started = match restored
                        .and_then(|()| Config::parse_args(launch.args.clone()).map_err(|e| e.to_string()))
                    {
                        Ok(config) => fake_memgraph::Server::start(
                            config,
                            TurmoilNet,
                            launch.volume.clone(),
                            clock,
                            IdSource::seeded(launch.seed),
                        )
                        .await
                        .map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    };
                    match started {
                        Ok(handle) => {
                            if let Some(slot) = lock(&slots).get_mut(&name) {
                                slot.handle = Some(handle.clone());
                            }
                            stop.notified().await;
                            handle.shutdown().await;
                        }
                        Err(e) => {
                            // Like a container that exits: the kubelet sees it never became ready.
                            if let Some(slot) = lock(&slots).get_mut(&name) {
                                slot.start_error = Some(e);
                            }
                            std::future::pending::<()>().await;
                        }
                    }
                    Ok(())
                }
            });
            self.hosts.insert(host.to_owned(), true);
        }
    }

    /// Crash a pod's container: Memgraph dies without flushing; the kubelet restarts it.
    pub fn crash(&mut self, sim: &mut Sim<'_>, namespace: &str, pod: &str, trace: &mut Trace) -> bool {
        let key = Key::new("Pod", namespace, pod);
        let Some(value) = self.api.get_json(&key) else { return false };
        let Some(Phase::Running { uid }) = self.phases.get(&key).cloned() else { return false };
        let host = host_of(&key, &value);
        if let Some(handle) = lock(&self.slots).get_mut(pod).and_then(|s| s.handle.take()) {
            handle.kill();
        }
        sim.crash(host);
        let restart_at = self.clock.elapsed() + Duration::from_millis(500 + self.rng.below(2000));
        self.phases.insert(key.clone(), Phase::CrashLoop { uid, restart_at });
        let restarts = value["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(0);
        self.set_status(&key, false, restarts + 1);
        trace.record(self.clock.elapsed(), format!("pod {pod} crashed"));
        true
    }

    /// One kubelet pass: StatefulSets → pods and claims; pods → hosts; readiness; deletions.
    pub fn sync(&mut self, sim: &mut Sim<'_>, trace: &mut Trace) {
        // The StatefulSet controller only has work when some object changed.
        let version = self.api.version();
        if version != self.seen_version {
            sync_statefulsets(&self.api);
            self.seen_version = self.api.version();
        }
        let now = self.clock.elapsed();
        let pods: Vec<PodView> = self.api.scan("Pod", |key, pod| {
            Some(PodView {
                key: key.clone(),
                host: host_of(key, pod),
                uid: pod["metadata"]["uid"].as_str().unwrap_or_default().to_owned(),
                restarts: pod["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(0),
                ready: pod["status"]["conditions"][0]["status"].as_str() == Some("True"),
                terminating: !pod["metadata"]["deletionTimestamp"].is_null(),
                grace: pod["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap_or(30),
            })
        });
        for view in &pods {
            let PodView { key, host, uid, restarts, ready: ready_now, terminating, grace } = view;
            let (host, uid, restarts) = (host.clone(), uid.clone(), *restarts);
            // A lost node reports nothing; after the grace the node controller marks its pods
            // NotReady, and nothing stops or replaces them until the node is gone.
            let lost_since = self.lost().get(&key.name).copied();
            if let Some(since) = lost_since {
                if *ready_now && now >= since + NODE_GRACE {
                    self.set_status(key, false, restarts);
                    trace.record(now, format!("node of {} NotReady: pod {} marked NotReady", key.name, key.name));
                }
                continue;
            }
            match self.phases.get(key).cloned() {
                _ if *terminating => {
                    let phase = self.phases.get(key).cloned();
                    match phase {
                        Some(Phase::Stopping { since, grace }) => {
                            let finished = !sim.is_host_running(host.clone());
                            if finished || now >= since + grace {
                                if !finished {
                                    sim.crash(host.clone());
                                }
                                if let Some(slot) = lock(&self.slots).get_mut(&key.name) {
                                    slot.handle = None;
                                }
                                self.phases.remove(key);
                                self.api.remove(key);
                                trace.record(now, format!("pod {} deleted", key.name));
                            }
                        }
                        Some(Phase::Running { .. }) => {
                            if let Some(slot) = lock(&self.slots).get(&key.name) {
                                slot.stop.notify_one();
                            }
                            self.phases.insert(
                                key.clone(),
                                Phase::Stopping { since: now, grace: Duration::from_secs(*grace) },
                            );
                            self.set_status(key, false, restarts);
                        }
                        _ => {
                            if self.hosts.contains_key(&host) && sim.is_host_running(host.clone()) {
                                sim.crash(host.clone());
                            }
                            self.phases.remove(key);
                            self.api.remove(key);
                            trace.record(now, format!("pod {} deleted", key.name));
                        }
                    }
                }
                None => {
                    let Some(pod) = self.api.get_json(key) else { continue };
                    if self.agent_key(key, &pod).is_err() {
                        continue;
                    }
                    let launch = self.launch(key, &pod);
                    self.start_host(sim, &key.name, &host, launch);
                    self.phases.insert(key.clone(), Phase::Running { uid });
                }
                Some(Phase::CrashLoop { restart_at, .. }) if now >= restart_at => {
                    let Some(pod) = self.api.get_json(key) else { continue };
                    let launch = self.launch(key, &pod);
                    self.start_host(sim, &key.name, &host, launch);
                    self.phases.insert(key.clone(), Phase::Running { uid });
                    trace.record(now, format!("pod {} restarted", key.name));
                }
                Some(Phase::Running { .. }) => {
                    let (running, failed) = {
                        let slots = lock(&self.slots);
                        let slot = slots.get(&key.name);
                        (
                            slot.and_then(|s| s.handle.as_ref()).is_some_and(ServerHandle::is_running),
                            slot.and_then(|s| s.start_error.clone()),
                        )
                    };
                    let ready = running && !self.flapped_unready(&key.name, now);
                    if let Some(error) = failed {
                        trace.record(now, format!("pod {} failed to start: {error}", key.name));
                        sim.crash(host.clone());
                        let restart_at = now + Duration::from_secs(10);
                        self.phases.insert(key.clone(), Phase::CrashLoop { uid, restart_at });
                        self.set_status(key, false, restarts + 1);
                    } else if ready != *ready_now {
                        self.set_status(key, ready, restarts);
                    }
                }
                Some(_) => {}
            }
        }
        // Forget pods that no longer exist.
        self.phases.retain(|k, _| pods.iter().any(|p| &p.key == k));
        // Claims that were deleted take their data with them.
        let claims: Vec<Key> = self.api.scan("PersistentVolumeClaim", |k, _| Some(k.clone()));
        self.volumes.retain(|k, _| claims.contains(k));
    }
}
