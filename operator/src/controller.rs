//! `memgraph-operator run`: the reconcile wired into kube's controller runtime. Watches
//! MemgraphClusters, the StatefulSets, Services and PodDisruptionBudgets they own, and their
//! pods, so a pod restart triggers a reconcile at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action as RuntimeAction, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use thiserror::Error;
use tracing::Instrument;

use crate::api::MemgraphCluster;
use crate::clock::SystemClock;
use crate::health::{self, Readiness};
use crate::kube_api::{Kube, KubeClient};
use crate::memgraph::{Credentials, Neo4rsBolt, Timeouts};
use crate::names::{FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY};
use crate::reconcile::{self, ReconcileError};
use crate::telemetry::{self, Metrics};

/// Settings of `memgraph-operator run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Address of the health endpoint.
    pub health_addr: String,
    /// Address of the Prometheus `/metrics` endpoint.
    pub metrics_addr: String,
    /// How long to wait on Memgraph.
    pub timeouts: Timeouts,
    /// Name of this operator instance for events (the pod name).
    pub instance: Option<String>,
}

/// Why the operator could not start or stopped.
#[derive(Debug, Error)]
pub enum RunError {
    /// No kubeconfig or in-cluster configuration.
    #[error("no Kubernetes configuration: {0}")]
    Config(String),
    /// The API server did not answer.
    #[error("cannot reach the Kubernetes API server: {0}")]
    Unreachable(String),
    /// The CRD is missing.
    #[error("the MemgraphCluster CRD is not installed; run: kubectl apply -f deploy/crds/memgraphcluster.yaml")]
    CrdMissing,
    /// Not allowed to list clusters.
    #[error("the operator may not list MemgraphClusters ({0}); apply the RBAC in deploy/")]
    Forbidden(String),
    /// The health endpoint could not bind.
    #[error("cannot listen on {addr}: {error}")]
    Health {
        /// Address.
        addr: String,
        /// Cause.
        error: String,
    },
    /// The metrics endpoint could not bind.
    #[error("cannot serve metrics on {addr}: {error}")]
    Metrics {
        /// Address.
        addr: String,
        /// Cause.
        error: String,
    },
}

/// Shared state of the reconcilers.
struct Context {
    kube: KubeClient,
    bolt: Neo4rsBolt,
    backups: reconcile::backup_job::BackupContext,
    memory: Arc<reconcile::Memory>,
    failures: Mutex<BTreeMap<String, u32>>,
    metrics: Arc<Metrics>,
}

/// Opens S3 stores (or S3-compatible ones) for backup jobs.
struct S3Stores;

#[async_trait::async_trait]
impl reconcile::backup_job::StoreFactory for S3Stores {
    async fn open(
        &self,
        location: &crate::backup::StoreLocation,
        credentials: Option<crate::backup::Credentials>,
    ) -> Result<Arc<dyn crate::backup::store::ObjectStore>, crate::backup::store::StoreError> {
        #[cfg(feature = "s3")]
        {
            Ok(Arc::new(crate::backup::s3::S3Store::new(location, credentials).await?))
        }
        #[cfg(not(feature = "s3"))]
        {
            let _ = credentials;
            Err(crate::backup::store::StoreError::new(
                crate::backup::store::StoreErrorKind::Other,
                "open",
                &location.bucket,
                "this operator was built without the s3 feature",
            ))
        }
    }
}

fn backup_context() -> reconcile::backup_job::BackupContext {
    reconcile::backup_job::BackupContext {
        agents: Arc::new(crate::backup::agent::TcpAgentApi { timeout: Duration::from_secs(30) }),
        stores: Arc::new(S3Stores),
    }
}

fn key(cluster: &MemgraphCluster) -> String {
    format!("{}/{}", cluster.namespace().unwrap_or_default(), cluster.name_any())
}

async fn credentials(kube: &KubeClient, cluster: &MemgraphCluster) -> Result<Option<Credentials>, ReconcileError> {
    let Some(auth) = &cluster.spec.auth else { return Ok(None) };
    let namespace = cluster.namespace().unwrap_or_default();
    let Some(secret) = kube.get::<Secret>(&namespace, &auth.secret_ref.name).await? else { return Ok(None) };
    let read = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(k)).cloned())
    };
    Ok(read(&auth.username_key).zip(read(&auth.password_key)).map(|(user, password)| Credentials { user, password }))
}

async fn reconcile_one(cluster: Arc<MemgraphCluster>, ctx: Arc<Context>) -> Result<RuntimeAction, ReconcileError> {
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let metrics = &ctx.metrics;
    let _in_flight = metrics.reconcile_started(&namespace, &name);
    let started = tokio::time::Instant::now();
    let result =
        reconcile_and_start_jobs(&cluster, &ctx).instrument(telemetry::reconcile_span(&namespace, &name)).await;
    metrics.reconcile_done(&namespace, &name, started.elapsed(), result.as_ref().map(|_| ()));
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            // error_policy records the retry time.
            metrics.observe_cluster(&namespace, &name, &cluster.spec, cluster.status.as_ref());
            return Err(error);
        }
    };
    metrics.record_all(&namespace, &name, &outcome.measurements);
    if cluster.metadata.deletion_timestamp.is_some() {
        // The reconcile of a deleted cluster lets it go (removes the finalizer): its series go
        // with it, as no reconcile follows to update them.
        metrics.forget(&namespace, &name);
    } else {
        let status = outcome.status.as_ref().or(cluster.status.as_ref());
        metrics.observe_cluster(&namespace, &name, &cluster.spec, status);
        metrics.requeue_at(&namespace, &name, tokio::time::Instant::now() + outcome.requeue_after);
    }
    Ok(RuntimeAction::requeue(outcome.requeue_after))
}

/// The reconcile, and the jobs it hands over started beside it.
async fn reconcile_and_start_jobs(
    cluster: &MemgraphCluster,
    ctx: &Context,
) -> Result<reconcile::Outcome, ReconcileError> {
    let bolt = ctx.bolt.clone().with_credentials(credentials(&ctx.kube, cluster).await?);
    let outcome = reconcile::reconcile(cluster, &ctx.kube, &bolt, &SystemClock, &ctx.memory).await?;
    if let Some(job) = outcome.validation.clone() {
        // Beside the reconciles: a slow replica must not hold up labels and status.
        let (memory, bolt) = (ctx.memory.clone(), bolt.clone());
        tokio::spawn(async move { reconcile::validation_job::run(&bolt, &memory.validation, &SystemClock, job).await });
    }
    if let Some(job) = outcome.snapshot.clone() {
        // Beside the reconciles: a long snapshot must not hold up labels and status.
        let memory = ctx.memory.clone();
        let backups = ctx.backups.clone();
        tokio::spawn(async move {
            reconcile::snapshot_job::run(&bolt, &memory.snapshots, &SystemClock, &backups, job).await
        });
    }
    if let Ok(mut failures) = ctx.failures.lock() {
        failures.remove(&key(cluster));
    }
    tracing::info!(cluster = %key(cluster), rounds = outcome.rounds, actions = outcome.actions,
        requeue_s = outcome.requeue_after.as_secs(), "reconciled");
    Ok(outcome)
}

/// Remove a role label its pod no longer deserves (see [`reconcile::guard`]).
async fn guard_pod(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<RuntimeAction, ReconcileError> {
    if let Some(patch) = reconcile::guard::guard(&pod) {
        let namespace = pod.namespace().unwrap_or_default();
        ctx.kube.patch_pod_labels(&namespace, &pod.name_any(), &pod.uid().unwrap_or_default(), &patch).await?;
        tracing::info!(pod = %pod.name_any(), "removed a role label verified on an earlier container or a pod that is not ready");
    }
    Ok(RuntimeAction::await_change())
}

fn guard_error_policy(pod: Arc<Pod>, error: &ReconcileError, _: Arc<Context>) -> RuntimeAction {
    tracing::warn!(pod = %pod.name_any(), %error, "route guard failed; retrying");
    RuntimeAction::requeue(Duration::from_secs(2))
}

/// Exponential backoff per cluster: 2 s, 4 s, ... up to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(failures.min(9)).min(300))
}

fn error_policy(cluster: Arc<MemgraphCluster>, error: &ReconcileError, ctx: Arc<Context>) -> RuntimeAction {
    let failures = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key(&cluster)).or_insert(0);
            *n += 1;
            *n
        })
        .unwrap_or(1);
    let delay = backoff(failures);
    ctx.metrics.requeue_at(
        &cluster.namespace().unwrap_or_default(),
        &cluster.name_any(),
        tokio::time::Instant::now() + delay,
    );
    tracing::warn!(cluster = %key(&cluster), kind = error.kind(), %error, retry_s = delay.as_secs(), "reconcile failed");
    RuntimeAction::requeue(delay)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            biased;
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested; finishing running reconciles");
}

fn api<T>(client: &Client, namespace: Option<&str>) -> Api<T>
where
    T: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    T::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// How often the metrics of deleted clusters are looked for.
const FORGET_INTERVAL: Duration = Duration::from_secs(60);

/// Drop the series of clusters no longer in the controller's cache. A cluster deleted without
/// our finalizer (or while the operator was down) gets no last reconcile that could forget it.
async fn forget_deleted(store: kube::runtime::reflector::Store<MemgraphCluster>, metrics: Arc<Metrics>) {
    // Before the first list the cache is empty, and every cluster would look deleted.
    if store.wait_until_ready().await.is_err() {
        return;
    }
    loop {
        tokio::time::sleep(FORGET_INTERVAL).await;
        metrics.retain_clusters(|namespace, name| {
            store.get(&ObjectRef::<MemgraphCluster>::new(name).within(namespace)).is_some()
        });
    }
}

/// Check that the API server answers and the CRD is installed, within `timeout`.
pub async fn preflight(client: &Client, namespace: Option<&str>, timeout: Duration) -> Result<(), RunError> {
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Err(_) => return Err(RunError::Unreachable(format!("no answer within {} s", timeout.as_secs()))),
        Ok(Err(e)) => return Err(RunError::Unreachable(e.to_string())),
        Ok(Ok(_)) => {}
    }
    let clusters: Api<MemgraphCluster> = api(client, namespace);
    match tokio::time::timeout(timeout, clusters.list(&ListParams::default().limit(1))).await {
        Err(_) => Err(RunError::Unreachable(format!("no answer within {} s", timeout.as_secs()))),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => Err(RunError::CrdMissing),
        Ok(Err(kube::Error::Api(status))) if status.code == 403 => Err(RunError::Forbidden(status.message.clone())),
        Ok(Err(e)) => Err(RunError::Unreachable(e.to_string())),
    }
}

/// Connect to the API server and check it is usable.
pub async fn connect(config: &RunConfig) -> Result<Client, RunError> {
    let client = Client::try_default().await.map_err(|e| RunError::Config(e.to_string()))?;
    preflight(&client, config.namespace.as_deref(), Duration::from_secs(10)).await?;
    Ok(client)
}

/// Run the controller on a connected client until SIGTERM or Ctrl-C.
pub async fn run(client: Client, config: RunConfig) -> Result<(), RunError> {
    let namespace = config.namespace.as_deref();

    let readiness = Readiness::default();
    let listener = tokio::net::TcpListener::bind(&config.health_addr)
        .await
        .map_err(|e| RunError::Health { addr: config.health_addr.clone(), error: e.to_string() })?;
    let health = tokio::spawn(health::serve(listener, readiness.clone()));
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(&config.metrics_addr)
        .await
        .map_err(|e| RunError::Metrics { addr: config.metrics_addr.clone(), error: e.to_string() })?;
    tracing::info!(addr = %config.metrics_addr, "serving metrics on /metrics");
    let metrics_server = tokio::spawn(telemetry::server::serve(listener, metrics.clone()));

    let ctx = Arc::new(Context {
        kube: KubeClient::new(client.clone(), config.instance.clone()),
        bolt: Neo4rsBolt::new(config.timeouts),
        backups: backup_context(),
        memory: Arc::default(),
        failures: Mutex::new(BTreeMap::new()),
        metrics: metrics.clone(),
    });
    let owned = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"));
    let pods = owned.clone();
    tracing::info!(namespace = namespace.unwrap_or("<all>"), "watching MemgraphClusters");
    readiness.set(true);
    let shutdown = shutdown_signal().shared();
    // The route guard runs beside the cluster reconciles, so a label a pod no longer deserves
    // goes at once, whatever the cluster's reconcile is waiting for.
    let guard = Controller::new(api::<Pod>(&client, namespace), pods.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(guard_pod, guard_error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "route guard event");
            }
        });
    let controller = Controller::new(api::<MemgraphCluster>(&client, namespace), watcher::Config::default());
    let pruning = tokio::spawn(forget_deleted(controller.store(), metrics));
    let clusters = controller
        .owns(api::<StatefulSet>(&client, namespace), owned.clone())
        .owns(api::<Service>(&client, namespace), owned.clone())
        .owns(api::<PodDisruptionBudget>(&client, namespace), owned)
        // Pods are not owned by the cluster (their StatefulSet is): map them by instance label.
        .watches(api::<Pod>(&client, namespace), pods, |pod: Pod| {
            let namespace = pod.namespace();
            pod.labels()
                .get(LABEL_INSTANCE)
                .map(|name| match &namespace {
                    Some(ns) => ObjectRef::<MemgraphCluster>::new(name).within(ns),
                    None => ObjectRef::new(name),
                })
                .into_iter()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile_one, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        });
    futures::join!(clusters, guard);
    readiness.set(false);
    health.abort();
    metrics_server.abort();
    pruning.abort();
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let delays: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(&delays[..4], &[2, 4, 8, 16]);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*delays.last().unwrap_or(&0), 300);
    }
}
