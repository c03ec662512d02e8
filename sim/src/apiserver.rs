//! An in-memory Kubernetes API server: objects stored as JSON with resourceVersion, generation,
//! uids, owner references and garbage collection, label selectors, finalizers, and change
//! notifications that wake the operator. It implements the operator's `Kube` trait, so the real
//! reconcile runs against it.
//!
//! Everything is deterministic: uids and resource versions come from counters, time from the
//! injected clock, and maps are ordered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use memgraph_operator::api::{MemgraphCluster, MemgraphClusterStatus};
use memgraph_operator::clock::Clock;
use memgraph_operator::kube_api::{ClusterEvent, Kube, KubeError, KubeErrorKind, KubeObject, LabelPatch};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::world::rng::Rng;

/// Stored objects by key, each shared with the past views of stale reads until it changes.
type Objects = BTreeMap<Key, Arc<Value>>;

/// Identity of a stored object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Kind, as in `kind:` (`Pod`, `StatefulSet`, ...).
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl Key {
    /// Key of an object.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        Self { kind: kind.to_owned(), namespace: namespace.to_owned(), name: name.to_owned() }
    }
}

/// A change to an object, sent to watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The object.
    pub key: Key,
    /// Its labels after the change (before, for deletions).
    pub labels: BTreeMap<String, String>,
    /// Its controller owner (kind, name), if any.
    pub owner: Option<(String, String)>,
    /// Made by the operator's own request.
    pub by_operator: bool,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// When.
    pub time: Timestamp,
    /// What.
    pub event: ClusterEvent,
}

/// Faults the API server can inject into the operator's requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiFaults {
    /// Serve reads from a view this old.
    pub stale: Option<std::time::Duration>,
    /// Probability that a change notification is dropped.
    pub drop_notifications: f64,
    /// Probability that a write fails (conflict, server error, or a timeout after it was applied).
    pub write_errors: f64,
}

#[derive(Default)]
struct State {
    /// Objects by key, shared with the past views of stale reads until they change.
    objects: Objects,
    faults: ApiFaults,
    rng: Rng,
    /// Views of the past for stale reads: (elapsed ms, objects), oldest first.
    history: std::collections::VecDeque<(u64, Arc<Objects>)>,
    /// Counters of injected API faults.
    pub injected: BTreeMap<&'static str, u64>,
    next_uid: u64,
    next_version: u64,
    events: Vec<RecordedEvent>,
    /// Mutating requests served (events excluded), for efficiency checks.
    writes: u64,
    /// Read requests served.
    reads: u64,
    /// A request of the operator is being served (its changes are tagged).
    operator_request: bool,
    /// Objects an admission policy refuses every change to, with the policy's message.
    refused: BTreeMap<Key, String>,
}

/// The API server. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct ApiServer {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
    changes: broadcast::Sender<Change>,
}

fn labels_of(value: &Value) -> BTreeMap<String, String> {
    value["metadata"]["labels"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned()))).collect())
        .unwrap_or_default()
}

fn controller_of(value: &Value) -> Option<(String, String)> {
    value["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == json!(true))
        .map(|o| (o["kind"].as_str().unwrap_or_default().to_owned(), o["name"].as_str().unwrap_or_default().to_owned()))
}

fn matches(value: &Value, selector: &BTreeMap<String, String>) -> bool {
    let labels = labels_of(value);
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn error(operation: &'static str, key: &Key, error: KubeErrorKind, message: impl Into<String>) -> KubeError {
    KubeError {
        operation,
        kind: key.kind.clone(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        error,
        message: message.into(),
    }
}

impl ApiServer {
    /// An empty API server reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let (changes, _) = broadcast::channel(4096);
        Self { state: Arc::default(), clock, changes }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in the simulation itself.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Subscribe to changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    fn notify(&self, key: &Key, value: &Value) {
        {
            let mut state = self.lock();
            let p = state.faults.drop_notifications;
            if p > 0.0 && state.rng.chance(p) {
                *state.injected.entry("dropped notification").or_insert(0) += 1;
                return;
            }
        }
        let by_operator = self.lock().operator_request;
        let _ = self.changes.send(Change {
            key: key.clone(),
            labels: labels_of(value),
            owner: controller_of(value),
            by_operator,
        });
    }

    /// Serve `request` as the operator's: the notifications it causes say so.
    pub async fn as_operator<F: std::future::Future>(&self, request: F) -> F::Output {
        self.lock().operator_request = true;
        let result = request.await;
        self.lock().operator_request = false;
        result
    }

    /// Make an admission policy refuse (or, with `None`, allow again) every change the operator
    /// requests to `key`.
    pub fn set_refused(&self, key: &Key, message: Option<String>) {
        let mut state = self.lock();
        match message {
            Some(m) => state.refused.insert(key.clone(), m),
            None => state.refused.remove(key),
        };
    }

    fn refusal(&self, operation: &'static str, key: &Key) -> Result<(), KubeError> {
        let state = self.lock();
        match state.refused.get(key) {
            Some(message) => Err(error(
                operation,
                key,
                KubeErrorKind::Api(403),
                format!("admission webhook denied the request: {message}"),
            )),
            None => Ok(()),
        }
    }

    /// Set the faults served to the operator; `seed` seeds their randomness.
    pub fn set_faults(&self, faults: ApiFaults, seed: u64) {
        let mut state = self.lock();
        state.faults = faults;
        state.rng = Rng::new(seed);
    }

    /// Counters of injected faults.
    pub fn injected(&self) -> BTreeMap<&'static str, u64> {
        self.lock().injected.clone()
    }

    /// Remember the current view for stale reads (the driver calls this periodically).
    pub fn checkpoint(&self, elapsed_ms: u64) {
        let mut state = self.lock();
        let view = Arc::new(state.objects.clone());
        state.history.push_back((elapsed_ms, view));
        while state.history.len() > 64 {
            state.history.pop_front();
        }
    }

    /// Run `read` on the view reads are served from: the current objects, or a past view while
    /// stale reads are injected.
    fn with_view<R>(&self, read: impl FnOnce(&Objects) -> R) -> R {
        let now = self.clock_elapsed_ms();
        let mut state = self.lock();
        state.reads += 1;
        if let Some(lag) = state.faults.stale {
            let lag = u64::try_from(lag.as_millis()).unwrap_or(0);
            let past = state.history.iter().rev().find(|(at, _)| at + lag <= now).map(|(_, v)| v.clone());
            if let Some(view) = past {
                *state.injected.entry("stale read").or_insert(0) += 1;
                drop(state);
                return read(&view);
            }
        }
        read(&state.objects)
    }

    fn clock_elapsed_ms(&self) -> u64 {
        let micros = self.clock.now().as_microsecond() - crate::world::time::EPOCH_SECONDS * 1_000_000;
        u64::try_from(micros / 1000).unwrap_or(0)
    }

    /// Decide whether an operator write fails, and how. `Some(true)`: the write is applied but
    /// the response is lost (a timeout); `Some(false)`: refused; `None`: no fault.
    fn write_fault(&self, operation: &'static str, key: &Key) -> Result<Option<KubeError>, ()> {
        let mut state = self.lock();
        let p = state.faults.write_errors;
        if p <= 0.0 || !state.rng.chance(p) {
            return Ok(None);
        }
        let which = state.rng.below(3);
        let (name, err) = match which {
            0 => ("api conflict", error(operation, key, KubeErrorKind::Conflict, "injected conflict")),
            1 => ("api server error", error(operation, key, KubeErrorKind::Api(500), "injected internal error")),
            _ => ("api timeout", error(operation, key, KubeErrorKind::Transport, "injected timeout after the write")),
        };
        *state.injected.entry(name).or_insert(0) += 1;
        if which == 2 { Err(()) } else { Ok(Some(err)) }
    }

    fn now(&self) -> String {
        self.clock.now().to_string()
    }

    /// Create an object from JSON (used by the simulated controllers and tests). Fills uid,
    /// resourceVersion, generation and creationTimestamp.
    pub fn create(&self, mut value: Value) -> Result<Value, KubeError> {
        let key = Key::new(
            value["kind"].as_str().unwrap_or_default(),
            value["metadata"]["namespace"].as_str().unwrap_or_default(),
            value["metadata"]["name"].as_str().unwrap_or_default(),
        );
        let now = self.now();
        let stored = {
            let mut state = self.lock();
            if state.objects.contains_key(&key) {
                return Err(error("create", &key, KubeErrorKind::Conflict, "already exists"));
            }
            state.next_uid += 1;
            state.next_version += 1;
            state.writes += 1;
            let meta = &mut value["metadata"];
            meta["uid"] = json!(format!("uid-{:06}", state.next_uid));
            meta["resourceVersion"] = json!(state.next_version.to_string());
            meta["generation"] = json!(1);
            meta["creationTimestamp"] = json!(now);
            state.objects.insert(key.clone(), Arc::new(value.clone()));
            value
        };
        self.notify(&key, &stored);
        Ok(stored)
    }

    /// Create (`expected` `None`) or replace (`expected`: the resourceVersion it must still
    /// have) an object whose `spec` is all that changes, as the leader election writes its
    /// Lease. Reads for it are direct GETs ([`get_json`](Self::get_json)), never a stale view:
    /// client-go reads a Lease from the API server, not from a cache. Injected write errors
    /// apply, including a timeout after the write was applied. Returns whether the write was
    /// applied, and what the client is told.
    pub fn write_spec(&self, value: Value, expected: Option<&str>) -> (bool, Result<String, KubeError>) {
        let key = Key::new(
            value["kind"].as_str().unwrap_or_default(),
            value["metadata"]["namespace"].as_str().unwrap_or_default(),
            value["metadata"]["name"].as_str().unwrap_or_default(),
        );
        let operation = if expected.is_some() { "replace" } else { "create" };
        let current = self.get_json(&key).map(|v| v["metadata"]["resourceVersion"].clone());
        let conflict = match (expected, &current) {
            (None, Some(_)) => Some("already exists"),
            (Some(_), None) => Some("not found"),
            (Some(rv), Some(now)) if now.as_str() != Some(rv) => Some("the object has been modified"),
            _ => None,
        };
        if let Some(message) = conflict {
            let kind = if current.is_none() { KubeErrorKind::NotFound } else { KubeErrorKind::Conflict };
            return (false, Err(error(operation, &key, kind, message)));
        }
        let fault = self.write_fault(operation, &key);
        if let Ok(Some(e)) = fault {
            return (false, Err(e));
        }
        let version = if expected.is_some() {
            self.lock().writes += 1;
            let spec = value["spec"].clone();
            self.update(&key, |v| v["spec"] = spec);
            self.get_json(&key).map(|v| v["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_owned())
        } else {
            self.create(value).ok().map(|v| v["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_owned())
        };
        match (fault, version) {
            (Err(()), _) => {
                (true, Err(error(operation, &key, KubeErrorKind::Transport, "injected timeout after the write")))
            }
            (_, Some(version)) => (true, Ok(version)),
            (_, None) => (false, Err(error(operation, &key, KubeErrorKind::NotFound, "not found"))),
        }
    }

    /// Read an object as JSON.
    pub fn get_json(&self, key: &Key) -> Option<Value> {
        self.lock().objects.get(key).map(|v| (**v).clone())
    }

    /// Look at an object without copying it.
    pub fn with_object<R>(&self, key: &Key, f: impl FnOnce(&Value) -> R) -> Option<R> {
        self.lock().objects.get(key).map(|v| f(v))
    }

    /// Every object of a kind in a namespace whose labels include `selector`.
    pub fn list_json(&self, kind: &str, namespace: &str, selector: &BTreeMap<String, String>) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|(k, v)| k.kind == kind && k.namespace == namespace && matches(v, selector))
            .map(|(_, v)| (**v).clone())
            .collect()
    }

    /// Change an object in place. Like the real API server, a change that changes nothing is a
    /// no-op: no new resourceVersion and no watch notification. Returns false when the object
    /// does not exist.
    pub fn update(&self, key: &Key, change: impl FnOnce(&mut Value)) -> bool {
        let stored = {
            let mut state = self.lock();
            let Some(value) = state.objects.get_mut(key).map(Arc::make_mut) else { return false };
            let before = value.clone();
            change(value);
            if *value == before {
                return true;
            }
            let value = value.clone();
            state.next_version += 1;
            let version = state.next_version;
            let Some(stored) = state.objects.get_mut(key).map(Arc::make_mut) else { return false };
            *stored = value;
            stored["metadata"]["resourceVersion"] = json!(version.to_string());
            stored.clone()
        };
        self.notify(key, &stored);
        true
    }

    /// Delete an object: mark it when it has finalizers, else remove it and garbage-collect
    /// what it owns (background propagation).
    pub fn delete_key(&self, key: &Key) {
        let now = self.now();
        let mut removed = Vec::new();
        let mut marked = None;
        {
            let mut state = self.lock();
            state.writes += 1;
            state.next_version += 1;
            let version = state.next_version;
            let Some(value) = state.objects.get_mut(key).map(Arc::make_mut) else { return };
            let has_finalizers = value["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
            // Pods are deleted gracefully: the kubelet stops them and then removes the object.
            if has_finalizers || key.kind == "Pod" {
                if value["metadata"]["deletionTimestamp"].is_null() {
                    value["metadata"]["deletionTimestamp"] = json!(now);
                    value["metadata"]["resourceVersion"] = json!(version.to_string());
                }
                marked = Some(value.clone());
            } else {
                Self::remove_cascading(&mut state, key, &mut removed, &now);
            }
        }
        if let Some(value) = marked {
            self.notify(key, &value);
        }
        for (key, value) in removed {
            self.notify(&key, &value);
        }
    }

    fn remove_cascading(state: &mut State, key: &Key, removed: &mut Vec<(Key, Value)>, now: &str) {
        let Some(value) = state.objects.remove(key).map(|v| (*v).clone()) else { return };
        let uid = value["metadata"]["uid"].clone();
        removed.push((key.clone(), value));
        let dependents: Vec<Key> = state
            .objects
            .iter()
            .filter(|(_, v)| {
                v["metadata"]["ownerReferences"].as_array().is_some_and(|os| os.iter().any(|o| o["uid"] == uid))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for dependent in dependents {
            // Dependents with finalizers (or pods, which the kubelet stops gracefully) are
            // marked rather than removed.
            let graceful = dependent.kind == "Pod"
                || state.objects[&dependent]["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
            if graceful {
                if let Some(v) = state.objects.get_mut(&dependent).map(Arc::make_mut)
                    && v["metadata"]["deletionTimestamp"].is_null()
                {
                    v["metadata"]["deletionTimestamp"] = json!(now);
                }
                let v = (*state.objects[&dependent]).clone();
                removed.push((dependent, v));
            } else {
                Self::remove_cascading(state, &dependent, removed, now);
            }
        }
    }

    /// Remove an object outright (the kubelet, once a pod has stopped).
    pub fn remove(&self, key: &Key) {
        let mut removed = Vec::new();
        let now = self.now();
        {
            let mut state = self.lock();
            Self::remove_cascading(&mut state, key, &mut removed, &now);
        }
        for (key, value) in removed {
            self.notify(&key, &value);
        }
    }

    /// Events published so far.
    pub fn events(&self) -> Vec<RecordedEvent> {
        self.lock().events.clone()
    }

    /// (reads, writes) served so far; events are not counted.
    pub fn request_counts(&self) -> (u64, u64) {
        let state = self.lock();
        (state.reads, state.writes)
    }

    /// A number that changes whenever any object changes.
    pub fn version(&self) -> u64 {
        self.lock().next_version
    }

    /// Call `f` on every object of a kind, in every namespace, without copying them.
    pub fn scan<R>(&self, kind: &str, mut f: impl FnMut(&Key, &Value) -> Option<R>) -> Vec<R> {
        self.lock().objects.iter().filter(|(k, _)| k.kind == kind).filter_map(|(k, v)| f(k, v)).collect()
    }

    /// Every object of a kind, in every namespace.
    pub fn all_of_kind(&self, kind: &str) -> Vec<(Key, Value)> {
        self.lock().objects.iter().filter(|(k, _)| k.kind == kind).map(|(k, v)| (k.clone(), (**v).clone())).collect()
    }

    /// Every stored key.
    pub fn keys(&self) -> Vec<Key> {
        self.lock().objects.keys().cloned().collect()
    }
}

fn key_of<T: KubeObject>(namespace: &str, name: &str) -> Key {
    Key::new(&T::kind(&()), namespace, name)
}

fn decode<T: KubeObject>(key: &Key, value: Value) -> Result<T, KubeError> {
    serde_json::from_value(value).map_err(|e| error("decode", key, KubeErrorKind::Invalid, e.to_string()))
}

/// Server-side apply, as far as the operator relies on it: the applied manifest owns labels,
/// annotations, owner references and every top-level field except metadata and status.
fn merge_apply(existing: &mut Value, applied: &Value) -> bool {
    let mut spec_changed = false;
    if let (Some(target), Some(source)) = (existing.as_object_mut(), applied.as_object()) {
        for (field, value) in source {
            if matches!(field.as_str(), "metadata" | "status" | "apiVersion" | "kind") {
                continue;
            }
            if target.get(field) != Some(value) {
                spec_changed = true;
                target.insert(field.clone(), value.clone());
            }
        }
    }
    for field in ["labels", "annotations", "ownerReferences"] {
        let value = applied["metadata"][field].clone();
        if !value.is_null() {
            existing["metadata"][field] = value;
        }
    }
    spec_changed
}

#[async_trait]
impl Kube for ApiServer {
    async fn get<T: KubeObject>(&self, namespace: &str, name: &str) -> Result<Option<T>, KubeError> {
        let key = key_of::<T>(namespace, name);
        let value = self.with_view(|objects| objects.get(&key).map(|v| (**v).clone()));
        value.map(|v| decode(&key, v)).transpose()
    }

    async fn list<T: KubeObject>(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<T>, KubeError> {
        let kind = T::kind(&());
        let selected: Vec<(Key, Value)> = self.with_view(|objects| {
            objects
                .iter()
                .filter(|(k, v)| k.kind == kind && k.namespace == namespace && matches(v, labels))
                .map(|(k, v)| (k.clone(), (**v).clone()))
                .collect()
        });
        selected.into_iter().map(|(key, v)| decode(&key, v)).collect()
    }

    async fn apply<T: KubeObject>(&self, object: &T) -> Result<T, KubeError> {
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        let name = object.meta().name.clone().unwrap_or_default();
        let key = key_of::<T>(&namespace, &name);
        let mut applied =
            serde_json::to_value(object).map_err(|e| error("apply", &key, KubeErrorKind::Invalid, e.to_string()))?;
        applied["apiVersion"] = json!(T::api_version(&()));
        applied["kind"] = json!(T::kind(&()));
        if let Some(meta) = applied["metadata"].as_object_mut() {
            for server_owned in ["uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"] {
                meta.remove(server_owned);
            }
        }
        if let Some(map) = applied.as_object_mut() {
            map.remove("status");
        }
        self.refusal("apply", &key)?;
        let lost_response = match self.write_fault("apply", &key) {
            Ok(Some(e)) => return Err(e),
            Ok(None) => false,
            Err(()) => true,
        };
        let exists = self.lock().objects.contains_key(&key);
        let stored = if exists {
            let stored = {
                let mut state = self.lock();
                state.writes += 1;
                state.next_version += 1;
                let version = state.next_version;
                let Some(existing) = state.objects.get_mut(&key).map(Arc::make_mut) else {
                    return Err(error("apply", &key, KubeErrorKind::Conflict, "deleted concurrently"));
                };
                // As in Kubernetes, a StatefulSet's volume claim templates never change.
                if key.kind == "StatefulSet"
                    && existing["spec"]["volumeClaimTemplates"] != applied["spec"]["volumeClaimTemplates"]
                {
                    return Err(error(
                        "apply",
                        &key,
                        KubeErrorKind::Api(422),
                        "StatefulSet.apps is invalid: spec: Forbidden: updates to statefulset spec for fields other than \
                         'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and \
                         'minReadySeconds' are forbidden",
                    ));
                }
                let before = existing.clone();
                if merge_apply(existing, &applied) {
                    let generation = existing["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                    existing["metadata"]["generation"] = json!(generation);
                }
                if *existing == before {
                    // An apply that changes nothing is a no-op, as in Kubernetes.
                    (existing.clone(), false)
                } else {
                    existing["metadata"]["resourceVersion"] = json!(version.to_string());
                    (existing.clone(), true)
                }
            };
            let (stored, changed) = stored;
            if changed {
                self.notify(&key, &stored);
            }
            stored
        } else {
            self.create(applied)?
        };
        if lost_response {
            return Err(error("apply", &key, KubeErrorKind::Transport, "injected timeout after the write"));
        }
        decode(&key, stored)
    }

    async fn delete<T: KubeObject>(&self, namespace: &str, name: &str) -> Result<(), KubeError> {
        let key = key_of::<T>(namespace, name);
        self.refusal("delete", &key)?;
        let fault = self.write_fault("delete", &key);
        if let Ok(Some(e)) = fault {
            return Err(e);
        }
        self.delete_key(&key);
        match fault {
            Err(()) => Err(error("delete", &key, KubeErrorKind::Transport, "injected timeout after the write")),
            _ => Ok(()),
        }
    }

    async fn delete_pod(&self, namespace: &str, pod: &str, uid: &str) -> Result<(), KubeError> {
        let key = Key::new("Pod", namespace, pod);
        self.refusal("delete", &key)?;
        let fault = self.write_fault("delete", &key);
        if let Ok(Some(e)) = fault {
            return Err(e);
        }
        if self.get_json(&key).is_some_and(|p| p["metadata"]["uid"].as_str() == Some(uid)) {
            self.delete_key(&key);
        }
        match fault {
            Err(()) => Err(error("delete", &key, KubeErrorKind::Transport, "injected timeout after the write")),
            _ => Ok(()),
        }
    }

    async fn patch_status(
        &self,
        namespace: &str,
        name: &str,
        status: &MemgraphClusterStatus,
        resource_version: Option<&str>,
    ) -> Result<(), KubeError> {
        let key = key_of::<MemgraphCluster>(namespace, name);
        let status = serde_json::to_value(status)
            .map_err(|e| error("patch status", &key, KubeErrorKind::Invalid, e.to_string()))?;
        if let Some(rv) = resource_version {
            let current = self.get_json(&key).map(|v| v["metadata"]["resourceVersion"].clone());
            if current.as_ref().and_then(Value::as_str) != Some(rv) {
                return Err(error("patch status", &key, KubeErrorKind::Conflict, "the object has been modified"));
            }
        }
        let fault = self.write_fault("patch status", &key);
        if let Ok(Some(e)) = fault {
            return Err(e);
        }
        self.lock().writes += 1;
        if !self.update(&key, |v| v["status"] = status) {
            return Err(error("patch status", &key, KubeErrorKind::NotFound, "not found"));
        }
        match fault {
            Err(()) => Err(error("patch status", &key, KubeErrorKind::Transport, "injected timeout after the write")),
            _ => Ok(()),
        }
    }

    async fn patch_pod_labels(
        &self,
        namespace: &str,
        pod: &str,
        uid: &str,
        labels: &LabelPatch,
    ) -> Result<(), KubeError> {
        let key = Key::new("Pod", namespace, pod);
        self.refusal("label", &key)?;
        let current_uid = self.get_json(&key).map(|v| v["metadata"]["uid"].clone());
        match current_uid {
            None => return Err(error("label", &key, KubeErrorKind::NotFound, "not found")),
            Some(u) if u != json!(uid) => {
                return Err(error(
                    "label",
                    &key,
                    KubeErrorKind::Conflict,
                    "Precondition failed: UID in precondition does not match",
                ));
            }
            Some(_) => {}
        }
        let fault = self.write_fault("label", &key);
        if let Ok(Some(e)) = fault {
            return Err(e);
        }
        self.lock().writes += 1;
        self.update(&key, |v| {
            if !v["metadata"]["labels"].is_object() {
                v["metadata"]["labels"] = Value::Object(Map::new());
            }
            if let Some(map) = v["metadata"]["labels"].as_object_mut() {
                for (k, value) in labels {
                    match value {
                        Some(value) => {
                            map.insert(k.clone(), json!(value));
                        }
                        None => {
                            map.remove(k);
                        }
                    }
                }
            }
        });
        match fault {
            Err(()) => Err(error("label", &key, KubeErrorKind::Transport, "injected timeout after the write")),
            _ => Ok(()),
        }
    }

    async fn set_finalizers(
        &self,
        namespace: &str,
        name: &str,
        finalizers: &[String],
        resource_version: &str,
    ) -> Result<(), KubeError> {
        let key = key_of::<MemgraphCluster>(namespace, name);
        let Some(current) = self.get_json(&key) else {
            return Err(error("set finalizers of", &key, KubeErrorKind::NotFound, "not found"));
        };
        if current["metadata"]["resourceVersion"] != json!(resource_version) {
            return Err(error("set finalizers of", &key, KubeErrorKind::Conflict, "the object has been modified"));
        }
        if let Ok(Some(e)) = self.write_fault("set finalizers of", &key) {
            return Err(e);
        }
        self.lock().writes += 1;
        let deleting = !current["metadata"]["deletionTimestamp"].is_null();
        if deleting && finalizers.is_empty() {
            self.remove(&key);
        } else {
            self.update(&key, |v| v["metadata"]["finalizers"] = json!(finalizers));
        }
        Ok(())
    }

    async fn publish_event(&self, event: &ClusterEvent) -> Result<(), KubeError> {
        let time = self.clock.now();
        self.lock().events.push(RecordedEvent { time, event: event.clone() });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::Pod;
    use memgraph_operator::clock::SystemClock;

    fn server() -> ApiServer {
        ApiServer::new(Arc::new(SystemClock))
    }

    fn sts(name: &str, labels: Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "labels": labels},
            "spec": {"selector": {}, "serviceName": "x", "template": {}}
        }))
        .expect("sts")
    }

    #[tokio::test]
    async fn apply_creates_then_updates_with_generations() {
        let api = server();
        let first = api.apply(&sts("a", json!({"x": "1"}))).await.expect("create");
        assert_eq!(first.metadata.generation, Some(1));
        let uid = first.metadata.uid.clone();
        let same = api.apply(&sts("a", json!({"x": "1"}))).await.expect("same");
        assert_eq!(same.metadata.generation, Some(1), "no spec change, no new generation");
        let mut changed = sts("a", json!({"x": "2"}));
        if let Some(spec) = changed.spec.as_mut() {
            spec.service_name = Some("y".into());
        }
        let updated = api.apply(&changed).await.expect("update");
        assert_eq!(updated.metadata.generation, Some(2));
        assert_eq!(updated.metadata.uid, uid);
        assert_eq!(updated.metadata.labels.and_then(|l| l.get("x").cloned()).as_deref(), Some("2"));
    }

    #[tokio::test]
    async fn lists_by_label_and_collects_garbage() {
        let api = server();
        let owner = api.apply(&sts("owner", json!({"app": "m"}))).await.expect("owner");
        api.apply(&sts("other", json!({"app": "n"}))).await.expect("other");
        let selected: Vec<StatefulSet> =
            api.list("ns", &BTreeMap::from([("app".to_owned(), "m".to_owned())])).await.expect("list");
        assert_eq!(selected.len(), 1);
        api.create(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "owned", "namespace": "ns", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "owner", "uid": owner.metadata.uid, "controller": true}
            ]}
        }))
        .expect("owned");
        api.delete::<StatefulSet>("ns", "owner").await.expect("delete");
        assert!(api.get_json(&Key::new("Service", "ns", "owned")).is_none(), "garbage collected");
        assert!(api.get_json(&Key::new("StatefulSet", "ns", "other")).is_some());
    }

    #[tokio::test]
    async fn label_patches_check_the_uid() {
        let api = server();
        let pod = api.create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "1"}}})).expect("pod");
        let uid = pod["metadata"]["uid"].as_str().expect("uid").to_owned();
        let patch = BTreeMap::from([("role".to_owned(), Some("main".to_owned())), ("a".to_owned(), None)]);
        let err = api.patch_pod_labels("ns", "p", "someone-else", &patch).await.expect_err("stale uid");
        assert!(err.is_conflict());
        api.patch_pod_labels("ns", "p", &uid, &patch).await.expect("label");
        let pod: Pod = api.get("ns", "p").await.expect("get").expect("exists");
        assert_eq!(pod.metadata.labels, Some(BTreeMap::from([("role".to_owned(), "main".to_owned())])));
    }

    #[tokio::test]
    async fn finalizers_hold_deletion_until_released() {
        let api = server();
        let created = api
            .create(json!({"apiVersion": "memgraph.io/v1alpha1", "kind": "MemgraphCluster",
                "metadata": {"name": "c", "namespace": "ns", "finalizers": ["memgraph.io/finalizer"]}, "spec": {}}))
            .expect("cluster");
        let key = Key::new("MemgraphCluster", "ns", "c");
        api.delete_key(&key);
        let marked = api.get_json(&key).expect("still there");
        assert!(!marked["metadata"]["deletionTimestamp"].is_null());
        let stale = created["metadata"]["resourceVersion"].as_str().expect("rv");
        assert!(api.set_finalizers("ns", "c", &[], stale).await.expect_err("stale rv").is_conflict());
        let rv = marked["metadata"]["resourceVersion"].as_str().expect("rv");
        api.set_finalizers("ns", "c", &[], rv).await.expect("release");
        assert!(api.get_json(&key).is_none());
    }
}
