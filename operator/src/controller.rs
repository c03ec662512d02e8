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
use crate::health::{self, Readiness, Ready};
use crate::kube_api::{Kube, KubeClient};
use crate::leader::{self, Elector, KubeLeases, Leadership};
use crate::memgraph::{Credentials, Neo4rsBolt, Timeouts};
use crate::names::{FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY};
use crate::reconcile::{self, ReconcileError};
use crate::telemetry::{self, Metrics};

/// Settings of `memgraph-operator run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Watch only these namespaces; all namespaces when empty.
    pub namespaces: Vec<String>,
    /// Address of the health endpoint.
    pub health_addr: String,
    /// Address of the Prometheus `/metrics` endpoint.
    pub metrics_addr: String,
    /// How long to wait on Memgraph.
    pub timeouts: Timeouts,
    /// Name of this operator instance for events (the pod name).
    pub instance: Option<String>,
    /// Leader election; `None` reconciles at once (one replica only).
    pub leader: Option<LeaderConfig>,
}

/// Where the leader Lease lives and who this process is.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This process's identity in the Lease (the pod name).
    pub identity: String,
    /// Lease timings.
    pub timings: leader::Timings,
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
    /// This process led and lost the Lease: it stops so that it cannot act beside the new
    /// leader (Kubernetes restarts it as a standby).
    #[error("lost leadership: {0}; exiting so that only the new leader acts")]
    LeadershipLost(leader::LostLease),
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
    /// The health probe's own connections (see `reconcile::main_probe`): a probe waiting out
    /// its second never holds up a reconcile's query, nor one the probe.
    probe_bolt: Neo4rsBolt,
    backups: reconcile::backup_job::BackupContext,
    memory: Arc<reconcile::Memory>,
    failures: Mutex<BTreeMap<String, u32>>,
    metrics: Arc<Metrics>,
    /// The validation and snapshot jobs started beside the reconciles, so that they stop with
    /// the reconciles (before the Lease is released) and never act for a process that no longer
    /// leads.
    jobs: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Context {
    /// Start `job` beside the reconciles.
    fn start_job(&self, job: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(job).abort_handle();
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.retain(|j| !j.is_finished());
            jobs.push(handle);
        }
    }

    /// Stop every job still running (a claimed check or snapshot that does not finish is done
    /// again by the next leader: its claim has a deadline).
    fn stop_jobs(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            for job in jobs.drain(..) {
                job.abort();
            }
        }
    }
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
    let credentials = credentials(&ctx.kube, cluster).await?;
    let bolt = ctx.bolt.clone().with_credentials(credentials.clone());
    let outcome = reconcile::reconcile(cluster, &ctx.kube, &bolt, &SystemClock, &ctx.memory).await?;
    ctx.memory.main_probes.watch(
        &cluster.uid().unwrap_or_default(),
        outcome.probe.clone(),
        Arc::new(ctx.probe_bolt.clone().with_credentials(credentials)),
    );
    if let Some(job) = outcome.validation.clone() {
        // Beside the reconciles: a slow replica must not hold up labels and status.
        let (memory, bolt) = (ctx.memory.clone(), bolt.clone());
        ctx.start_job(
            async move { reconcile::validation_job::run(&bolt, &memory.validation, &SystemClock, job).await },
        );
    }
    if let Some(job) = outcome.snapshot.clone() {
        // Beside the reconciles: a long snapshot must not hold up labels and status.
        let memory = ctx.memory.clone();
        let backups = ctx.backups.clone();
        ctx.start_job(async move {
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

/// SIGTERM or Ctrl-C, shared by everything that stops on it.
type Shutdown = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

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

/// Drop the series and the health probes of clusters no longer in the controller's cache. A
/// cluster deleted without our finalizer (or while the operator was down) gets no last
/// reconcile that could forget it.
async fn forget_deleted(
    stores: Vec<kube::runtime::reflector::Store<MemgraphCluster>>,
    metrics: Arc<Metrics>,
    memory: Arc<reconcile::Memory>,
) {
    // Before the first list the cache is empty, and every cluster would look deleted.
    for store in &stores {
        if store.wait_until_ready().await.is_err() {
            return;
        }
    }
    loop {
        tokio::time::sleep(FORGET_INTERVAL).await;
        let cached = |namespace: &str, name: &str| {
            let key = ObjectRef::<MemgraphCluster>::new(name).within(namespace);
            stores.iter().any(|store| store.get(&key).is_some())
        };
        metrics.retain_clusters(cached);
        // The same for the MAINs the health probe asks every second.
        memory.main_probes.retain(cached);
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

/// Connect to the API server and check it is usable (in every watched namespace).
pub async fn connect(config: &RunConfig) -> Result<Client, RunError> {
    let client = Client::try_default().await.map_err(|e| RunError::Config(e.to_string()))?;
    if config.namespaces.is_empty() {
        preflight(&client, None, Duration::from_secs(10)).await?;
    }
    for namespace in &config.namespaces {
        preflight(&client, Some(namespace), Duration::from_secs(10)).await?;
    }
    Ok(client)
}

/// Run the controller on a connected client until SIGTERM or Ctrl-C. With leader election,
/// stand by until this process holds the Lease, reconcile while it does, release it on SIGTERM,
/// and return [`RunError::LeadershipLost`] the moment it is lost.
pub async fn run(client: Client, config: RunConfig) -> Result<(), RunError> {
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
    let shutdown: Shutdown = shutdown_signal().boxed().shared();

    let result = match &config.leader {
        None => {
            tracing::warn!("leader election is off: run exactly one replica of the operator");
            readiness.set(Ready::Leading);
            metrics.set_leader(true);
            reconcile_until(&client, &config, metrics.clone(), shutdown).await;
            Ok(())
        }
        Some(lease) => lead_then_reconcile(&client, &config, lease, &readiness, metrics.clone(), shutdown).await,
    };
    readiness.set(Ready::No);
    health.abort();
    metrics_server.abort();
    tracing::info!("stopped");
    result
}

/// The election around the controllers.
async fn lead_then_reconcile(
    client: &Client,
    config: &RunConfig,
    lease: &LeaderConfig,
    readiness: &Readiness,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    let elector = Elector::new(
        KubeLeases::new(client.clone(), &lease.namespace, &lease.name),
        SystemClock,
        lease.identity.clone(),
        lease.timings,
    );
    tracing::info!(lease = %format!("{}/{}", lease.namespace, lease.name), identity = %lease.identity,
        "taking part in leader election");
    let mut state = elector.subscribe();
    let follow = {
        let (readiness, metrics, mut state) = (readiness.clone(), metrics.clone(), state.clone());
        tokio::spawn(async move {
            loop {
                let now = state.borrow_and_update().clone();
                readiness.set(match now {
                    Leadership::Leading => Ready::Leading,
                    Leadership::Standby { .. } => Ready::Standby,
                    Leadership::Starting | Leadership::Lost => Ready::No,
                });
                metrics.set_leader(now == Leadership::Leading);
                if state.changed().await.is_err() {
                    break;
                }
            }
        })
    };
    let election = elector.run();
    tokio::pin!(election);
    let outcome = tokio::select! {
        biased;
        lost = &mut election => Err(RunError::LeadershipLost(lost)),
        () = shutdown.clone() => Ok(false),
        leading = leader::until_leading(&mut state) => Ok(leading),
    };
    let result = match outcome {
        Ok(true) => {
            // The election keeps renewing beside the controllers; losing it drops them at once.
            tokio::select! {
                biased;
                lost = &mut election => Err(RunError::LeadershipLost(lost)),
                () = reconcile_until(client, config, metrics, shutdown) => {
                    if let Err(e) = elector.release().await {
                        tracing::warn!(error = %e, "could not release the lease; a standby takes over when it expires");
                    }
                    Ok(())
                }
            }
        }
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    };
    follow.abort();
    result
}

/// The controllers (one per watched namespace, or one for all) until `shutdown`, which lets
/// running reconciles finish.
async fn reconcile_until(client: &Client, config: &RunConfig, metrics: Arc<Metrics>, shutdown: Shutdown) {
    let ctx = Arc::new(Context {
        kube: KubeClient::new(client.clone(), config.instance.clone()),
        bolt: Neo4rsBolt::new(config.timeouts),
        probe_bolt: Neo4rsBolt::new(config.timeouts),
        backups: backup_context(),
        memory: Arc::default(),
        failures: Mutex::new(BTreeMap::new()),
        metrics: metrics.clone(),
        jobs: Mutex::default(),
    });
    let scopes: Vec<Option<&str>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    let mut stores = Vec::new();
    let mut running = Vec::new();
    // The health probe wakes a cluster's reconcile when its MAIN stops answering; every scope's
    // controller hears it (one outside the cluster's scope finds nothing to reconcile).
    let mut wakes = Vec::new();
    for namespace in scopes {
        tracing::info!(namespace = namespace.unwrap_or("<all>"), "watching MemgraphClusters");
        let (wake, woken) = futures::channel::mpsc::unbounded::<ObjectRef<MemgraphCluster>>();
        wakes.push(wake);
        let controller =
            Controller::new(api::<MemgraphCluster>(client, namespace), watcher::Config::default()).reconcile_on(woken);
        stores.push(controller.store());
        running.push(controllers(client, namespace, controller, ctx.clone(), shutdown.clone()).boxed());
    }
    let memory = ctx.memory.clone();
    ctx.start_job(async move {
        let clock = SystemClock;
        reconcile::main_probe::run(&memory.main_probes, &clock, |target| {
            let cluster = ObjectRef::<MemgraphCluster>::new(&target.name).within(&target.namespace);
            for wake in &wakes {
                let _ = wake.unbounded_send(cluster.clone());
            }
        })
        .await;
    });
    let pruning = tokio::spawn(forget_deleted(stores, metrics, ctx.memory.clone()));
    futures::future::join_all(running).await;
    ctx.stop_jobs();
    pruning.abort();
}

/// The cluster controller and the route guard of one scope.
async fn controllers(
    client: &Client,
    namespace: Option<&str>,
    controller: Controller<MemgraphCluster>,
    ctx: Arc<Context>,
    shutdown: Shutdown,
) {
    let owned = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"));
    let pods = owned.clone();
    // The route guard runs beside the cluster reconciles, so a label a pod no longer deserves
    // goes at once, whatever the cluster's reconcile is waiting for.
    let guard = Controller::new(api::<Pod>(client, namespace), pods.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(guard_pod, guard_error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "route guard event");
            }
        });
    let clusters = controller
        .owns(api::<StatefulSet>(client, namespace), owned.clone())
        .owns(api::<Service>(client, namespace), owned.clone())
        .owns(api::<PodDisruptionBudget>(client, namespace), owned)
        // Pods are not owned by the cluster (their StatefulSet is): map them by instance label.
        .watches(api::<Pod>(client, namespace), pods, |pod: Pod| {
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
