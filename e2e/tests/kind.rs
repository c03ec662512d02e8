//! The operator on a kind cluster, installed with its Helm chart, driving a real
//! `MemgraphCluster` through failures and changes.
//!
//! Needs `docker` (with a daemon), `kind`, `kubectl` and `helm` on `PATH`; without them every
//! test is reported as ignored, naming what is missing (`MGO_E2E_REQUIRE=1`: a failure).
//!
//! One cluster, `mgo-e2e`, for the whole suite, deleted at the end unless `MGO_E2E_KEEP=1`. The
//! first test that needs it creates it, builds the operator image (`deploy/Dockerfile`), loads
//! it into kind and installs the chart; a cluster kept from an earlier run is reused. The tests
//! run one at a time, in the order below; each starts by waiting for the `MemgraphCluster` to be
//! Running as the earlier tests left it (creating it if missing), so a test can also run alone.
//!
//! Kubernetes objects are read with the `kube` client; Memgraph is reached through
//! `kubectl port-forward` to localhost with the operator's own Bolt driver. Backups go to an
//! S3-compatible server (moto) run in the cluster, and are restored into a second cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use e2e::{block_on, wait_for};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use libtest_mimic::{Failed, Trial};
use memgraph_operator::api::{MemgraphCluster, Phase, ReplicationMode};
use memgraph_operator::memgraph::{self, Bolt, BoltValue, Neo4rsBolt, ReplicaStatus, Timeouts};
use memgraph_operator::names::{LABEL_INSTANCE, LABEL_ROLE, ROLE_MAIN, ROLE_REPLICA};
use tokio::io::{AsyncBufReadExt, BufReader};

const KIND_CLUSTER: &str = "mgo-e2e";
/// The operator and the MemgraphCluster share a namespace, so the test holds whether the chart
/// watches all namespaces or only its own.
const NAMESPACE: &str = "mgo-e2e";
const RELEASE: &str = "memgraph-operator";
const CHART: &str = "deploy/helm/memgraph-operator";
const OPERATOR_IMAGE: &str = "memgraph-operator:e2e";
const CLUSTER: &str = "e2e";
/// Nodes written through the write Service right after the cluster is Running.
const SEED_NODES: i64 = 100;
/// How long a cluster may take to settle after a change (pods start, volumes bind, replicas
/// catch up).
const SETTLE: Duration = Duration::from_secs(300);

type TestFn = fn() -> Result<(), Failed>;

const TESTS: &[(&str, TestFn)] = &[
    ("t01_operator_installs", operator_installs),
    ("t02_cluster_reaches_running", cluster_reaches_running),
    ("t03_writes_and_reads_through_services", writes_and_reads_through_services),
    ("t04_write_pod_killed", write_pod_killed),
    ("t05_read_pod_killed", read_pod_killed),
    ("t06_read_replicas_scaled_up_and_down", read_replicas_scaled_up_and_down),
    ("t07_replication_mode_changed", replication_mode_changed),
    ("t08_operator_failover", operator_failover),
    ("t09_backup_to_s3_and_restore", backup_to_s3_and_restore),
    ("t10_cluster_deleted", cluster_deleted),
];

fn main() -> std::process::ExitCode {
    let args = e2e::arguments();
    if args.list {
        let trials = TESTS.iter().map(|(name, _)| Trial::test(*name, || Ok(()))).collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }
    let missing = preflight();
    let trials = TESTS
        .iter()
        .map(|(name, test)| match &missing {
            Some(reason) => e2e::unavailable(*name, reason),
            None => Trial::test(*name, *test),
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if missing.is_none() {
        teardown();
    }
    conclusion.exit_code()
}

/// What is missing to run the suite, if anything: the programs not on `PATH`, else a docker
/// daemon that does not answer.
fn preflight() -> Option<String> {
    let absent: Vec<&str> =
        ["docker", "kind", "kubectl", "helm"].into_iter().filter(|p| e2e::find_on_path(p).is_none()).collect();
    if !absent.is_empty() {
        return Some(format!("{} not on PATH", absent.join(", ")));
    }
    let host = e2e::docker_host();
    e2e::runtime().block_on(e2e::docker_ping(&host)).err()
}

// ---------------------------------------------------------------------------------------------
// The cluster, made once

struct Env {
    kubeconfig: PathBuf,
    client: kube::Client,
}

static ENV: OnceLock<Result<Env, String>> = OnceLock::new();
/// Whether this run created the kind cluster (and so deletes it).
static CREATED: Mutex<bool> = Mutex::new(false);
/// User nodes the cluster must hold, once written.
static EXPECTED_NODES: Mutex<Option<i64>> = Mutex::new(None);

fn env() -> Result<&'static Env, String> {
    // Setup runs on the shared runtime but not inside a test's task, so a failure is remembered
    // and reported by every later test instead of being retried.
    ENV.get_or_init(|| e2e::runtime().block_on(setup())).as_ref().map_err(|e| format!("setup failed: {e}"))
}

fn expected_nodes() -> Option<i64> {
    EXPECTED_NODES.lock().ok().and_then(|n| *n)
}

fn set_expected_nodes(n: i64) {
    if let Ok(mut e) = EXPECTED_NODES.lock() {
        *e = Some(n);
    }
}

async fn setup() -> Result<Env, String> {
    let root = e2e::workspace_root();
    let clusters = command("kind", &["get", "clusters"], None).await?;
    if clusters.lines().any(|c| c.trim() == KIND_CLUSTER) {
        println!("reusing the kind cluster {KIND_CLUSTER}");
    } else {
        command("kind", &["create", "cluster", "--name", KIND_CLUSTER, "--wait", "180s"], None).await?;
        if let Ok(mut c) = CREATED.lock() {
            *c = true;
        }
    }
    let kubeconfig = std::env::temp_dir().join(format!("mgo-e2e-kubeconfig-{}", std::process::id()));
    let config = command("kind", &["get", "kubeconfig", "--name", KIND_CLUSTER], None).await?;
    std::fs::write(&kubeconfig, config).map_err(|e| format!("cannot write {}: {e}", kubeconfig.display()))?;

    // The operator image, as a release would build it.
    let root_str = root.to_string_lossy().into_owned();
    command("docker", &["build", "-f", "deploy/Dockerfile", "-t", OPERATOR_IMAGE, &root_str], Some(&root)).await?;
    command("kind", &["load", "docker-image", OPERATOR_IMAGE, "--name", KIND_CLUSTER], None).await?;
    // Memgraph itself: pulled once here and loaded, rather than by every node. A failed pull is
    // not fatal; the nodes then pull it themselves.
    let memgraph_image = memgraph_operator::api::DEFAULT_IMAGE;
    if command("docker", &["pull", memgraph_image], None).await.is_ok() {
        command("kind", &["load", "docker-image", memgraph_image, "--name", KIND_CLUSTER], None).await?;
    }

    // The CRD: from the chart when it ships it (crds/ or a template), else from deploy/crds.
    let chart = root.join(CHART);
    if !chart_ships_crd(&chart) {
        kubectl(&kubeconfig, &["apply", "-f", &root.join("deploy/crds/memgraphcluster.yaml").to_string_lossy()])
            .await?;
    }
    let chart_str = chart.to_string_lossy().into_owned();
    helm(
        &kubeconfig,
        &[
            "upgrade",
            "--install",
            RELEASE,
            &chart_str,
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            "--set",
            "image.repository=memgraph-operator,image.tag=e2e,image.pullPolicy=Never",
            "--wait",
            "--timeout",
            "5m",
        ],
    )
    .await?;

    let kube_config = Kubeconfig::read_from(&kubeconfig).map_err(|e| format!("kind's kubeconfig: {e}"))?;
    let config = kube::Config::from_custom_kubeconfig(kube_config, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("kind's kubeconfig: {e}"))?;
    let client = kube::Client::try_from(config).map_err(|e| format!("kube client: {e}"))?;
    Ok(Env { kubeconfig, client })
}

fn chart_ships_crd(chart: &std::path::Path) -> bool {
    if chart.join("crds").is_dir() {
        return true;
    }
    let Ok(entries) = std::fs::read_dir(chart.join("templates")) else { return false };
    entries
        .flatten()
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("kind: CustomResourceDefinition")))
}

fn teardown() {
    if e2e::keep() {
        println!("{}=1: leaving the kind cluster {KIND_CLUSTER} running", e2e::KEEP_VAR);
        return;
    }
    let created = CREATED.lock().is_ok_and(|c| *c);
    let reused = matches!(ENV.get(), Some(Ok(_))) && !created;
    if created || reused {
        let result = e2e::runtime().block_on(command("kind", &["delete", "cluster", "--name", KIND_CLUSTER], None));
        if let Err(e) = result {
            eprintln!("could not delete the kind cluster {KIND_CLUSTER}: {e}");
        }
    }
    if let Some(Ok(env)) = ENV.get() {
        let _ = std::fs::remove_file(&env.kubeconfig);
    }
}

/// Runs a program to completion (bounded at 20 minutes: an image build from scratch) and
/// returns its standard output; a failure carries the command and the end of its stderr.
async fn command_env(
    program: &str,
    args: &[&str],
    dir: Option<&std::path::Path>,
    kubeconfig: Option<&std::path::Path>,
) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    if let Some(kubeconfig) = kubeconfig {
        cmd.env("KUBECONFIG", kubeconfig);
    }
    let shown = format!("{program} {}", args.join(" "));
    let output = match tokio::time::timeout(Duration::from_secs(1200), cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(format!("{shown}: {e}")),
        Err(_) => return Err(format!("{shown}: still running after 20 minutes")),
    };
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!("{shown} exited with {}:\n{}", output.status, tail.join("\n")))
    }
}

async fn command(program: &str, args: &[&str], dir: Option<&std::path::Path>) -> Result<String, String> {
    command_env(program, args, dir, None).await
}

async fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> Result<String, String> {
    command_env("kubectl", args, None, Some(kubeconfig)).await
}

async fn helm(kubeconfig: &std::path::Path, args: &[&str]) -> Result<String, String> {
    command_env("helm", args, None, Some(kubeconfig)).await
}

// ---------------------------------------------------------------------------------------------
// Reaching Memgraph: kubectl port-forward to localhost

struct PortForward {
    _child: tokio::process::Child,
    address: String,
}

/// `kubectl port-forward <target> :7687` (a Service picks one of its pods when it starts, so
/// each use opens a new one).
async fn port_forward(env: &Env, target: &str) -> Result<PortForward, String> {
    port_forward_to(env, target, 7687).await
}

/// `kubectl port-forward <target> :<port>`.
async fn port_forward_to(env: &Env, target: &str, port: u16) -> Result<PortForward, String> {
    let remote = format!(":{port}");
    let mut child = tokio::process::Command::new("kubectl")
        .args(["port-forward", "-n", NAMESPACE, "--address", "127.0.0.1", target, &remote])
        .env("KUBECONFIG", &env.kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("kubectl port-forward {target}: {e}"))?;
    let stdout = child.stdout.take().ok_or("port-forward has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // "Forwarding from 127.0.0.1:41234 -> 7687"
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:")
                && let Some((port, _)) = rest.split_once(' ')
            {
                return Some(port.to_owned());
            }
        }
        None
    })
    .await;
    match port {
        Ok(Some(port)) => {
            // Keep draining stdout so kubectl never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Ok(PortForward { _child: child, address: format!("127.0.0.1:{port}") })
        }
        _ => {
            let _ = child.start_kill();
            let stderr = match child.wait_with_output().await {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            Err(format!("kubectl port-forward {target} did not start forwarding within 30 s: {}", stderr.trim()))
        }
    }
}

fn bolt() -> Neo4rsBolt {
    Neo4rsBolt::new(Timeouts::default())
}

/// User nodes through `target` (`svc/e2e-write`, `pod/e2e-read-0-0`, ...).
async fn count_via(env: &Env, target: &str) -> Result<i64, String> {
    let pf = port_forward(env, target).await?;
    memgraph::node_count(&bolt(), &pf.address).await.map_err(|e| format!("node count through {target}: {e}"))
}

async fn eventually_count(env: &Env, target: &str, want: i64) -> Result<(), String> {
    wait_for(
        &format!("{want} user nodes through {target}"),
        Duration::from_secs(120),
        Duration::from_secs(2),
        || async {
            match count_via(env, target).await {
                Ok(n) if n == want => Ok(()),
                Ok(n) => Err(format!("{n} nodes")),
                Err(e) => Err(e),
            }
        },
    )
    .await
}

/// Writes `n` nodes through the write Service; returns the new expected total.
async fn write_nodes(env: &Env, n: i64) -> Result<i64, String> {
    let pf = port_forward(env, &format!("svc/{CLUSTER}-write")).await?;
    let bolt = bolt();
    let before = memgraph::node_count(&bolt, &pf.address).await.map_err(|e| format!("count before writing: {e}"))?;
    for i in 0..n {
        let params = BTreeMap::from([("i".to_owned(), BoltValue::Int(i))]);
        bolt.run(&pf.address, "CREATE (:E2E {i: $i})", params).await.map_err(|e| format!("write {i}: {e}"))?;
    }
    let total = before + n;
    set_expected_nodes(total);
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// Observing the cluster

fn clusters(env: &Env) -> Api<MemgraphCluster> {
    Api::namespaced(env.client.clone(), NAMESPACE)
}

fn pods(env: &Env) -> Api<Pod> {
    Api::namespaced(env.client.clone(), NAMESPACE)
}

/// What a settled cluster looks like.
#[derive(Clone, Copy)]
struct Want {
    replicas: i32,
    mode: ReplicationMode,
}

/// One look at everything the tests assert on, with a readable summary for timeout messages.
async fn look(env: &Env, want: Want) -> Result<(), String> {
    let mgc = clusters(env).get_opt(CLUSTER).await.map_err(|e| format!("get mgc: {e}"))?;
    let Some(mgc) = mgc else { return Err(format!("MemgraphCluster {CLUSTER} does not exist")) };
    let status = mgc.status.clone().unwrap_or_default();
    let conditions: Vec<String> =
        status.conditions.iter().map(|c| format!("{}={}({})", c.type_, c.status, c.reason)).collect();
    let summary = format!(
        "phase {:?}, observedGeneration {:?} of {:?}, registered {}, ready {}, conditions [{}]",
        status.phase,
        status.observed_generation,
        mgc.metadata.generation,
        status.registered_replicas,
        status.ready_replicas,
        conditions.join(", ")
    );
    let settled = status.phase == Phase::Running
        && status.observed_generation == mgc.metadata.generation
        && status.write_ready
        && status.registered_replicas == want.replicas
        && status.ready_replicas == want.replicas;
    if !settled {
        return Err(summary);
    }
    for wanted in ["WriteReady", "ReplicasReady", "ReplicationHealthy"] {
        let ok = status.conditions.iter().any(|c| c.type_ == wanted && c.status == "True");
        if !ok {
            return Err(format!("condition {wanted} is not True; {summary}"));
        }
    }

    // Role labels: the write pod is the one main, each wanted read pod a replica.
    let list = pods(env)
        .list(&ListParams::default().labels(&format!("{LABEL_INSTANCE}={CLUSTER}")))
        .await
        .map_err(|e| format!("list pods: {e}"))?;
    let roles: BTreeMap<String, String> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let name = p.metadata.name.clone()?;
            let role = p.metadata.labels.as_ref().and_then(|l| l.get(LABEL_ROLE)).cloned().unwrap_or_default();
            Some((name, role))
        })
        .collect();
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    expected.insert(format!("{CLUSTER}-write-0"), ROLE_MAIN.to_owned());
    for i in 0..want.replicas {
        expected.insert(format!("{CLUSTER}-read-{i}-0"), ROLE_REPLICA.to_owned());
    }
    let labelled: BTreeMap<String, String> =
        roles.iter().filter(|(_, r)| !r.is_empty()).map(|(n, r)| (n.clone(), r.clone())).collect();
    if labelled != expected {
        return Err(format!("pod roles {roles:?}, expected {expected:?}; {summary}"));
    }

    // Registrations, as the write pod itself reports them.
    let pf = port_forward(env, &format!("pod/{CLUSTER}-write-0")).await?;
    let rows = memgraph::show_replicas(&bolt(), &pf.address).await.map_err(|e| format!("SHOW REPLICAS: {e}"))?;
    let seen: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.sync_mode, r.data.as_ref().map_or("{}", |d| d.status.as_str())))
        .collect();
    let mode = want.mode.as_cypher().to_ascii_lowercase();
    let names: Vec<String> = (0..want.replicas).map(|i| format!("read_{i}")).collect();
    let mut got_names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    got_names.sort();
    let all_ready =
        rows.iter().all(|r| r.sync_mode == mode && r.data.as_ref().is_some_and(|d| d.status == ReplicaStatus::Ready));
    if got_names != names || !all_ready {
        return Err(format!("SHOW REPLICAS on the write pod: {seen:?}, expected {names:?} {mode} ready; {summary}"));
    }
    Ok(())
}

async fn wait_settled(env: &Env, want: Want, after: &str) -> Result<(), String> {
    let what = format!(
        "the cluster to be Running with {} read replica(s) registered {} after {after}",
        want.replicas,
        want.mode.as_cypher()
    );
    wait_for(&what, SETTLE, Duration::from_secs(3), || look(env, want)).await
}

/// The cluster's current spec, as the next test should expect it settled.
async fn wanted(env: &Env) -> Result<Option<Want>, String> {
    let mgc = clusters(env).get_opt(CLUSTER).await.map_err(|e| format!("get mgc: {e}"))?;
    Ok(mgc.map(|m| Want { replicas: m.spec.read.replicas, mode: m.spec.replication.mode }))
}

/// The cluster as the earlier tests left it, Running, with data written: created and seeded
/// when missing.
async fn ready_cluster(env: &Env) -> Result<Want, String> {
    let want = match wanted(env).await? {
        Some(w) => w,
        None => {
            create_cluster(env).await?;
            Want { replicas: 2, mode: ReplicationMode::Async }
        }
    };
    wait_settled(env, want, "the previous test").await?;
    match expected_nodes() {
        Some(n) => eventually_count(env, &format!("svc/{CLUSTER}-write"), n).await?,
        None => {
            write_nodes(env, SEED_NODES).await?;
        }
    }
    Ok(want)
}

async fn create_cluster(env: &Env) -> Result<(), String> {
    let mgc: MemgraphCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "memgraph.io/v1alpha1",
        "kind": "MemgraphCluster",
        "metadata": {"name": CLUSTER, "namespace": NAMESPACE},
        "spec": {
            "write": {
                "storage": {"size": "1Gi"},
                // fsync every transaction: a killed write pod keeps every acknowledged write,
                // so the tests can kill it and still expect all the data.
                "config": {"walFlushEveryNTx": 1}
            },
            "read": {"replicas": 2, "storage": {"size": "1Gi"}, "pvcRetention": "Delete"},
            "replication": {"mode": "ASYNC"}
        }
    }))
    .map_err(|e| format!("the test's MemgraphCluster does not parse: {e}"))?;
    clusters(env).create(&PostParams::default(), &mgc).await.map_err(|e| format!("create mgc: {e}"))?;
    Ok(())
}

async fn patch_spec(env: &Env, spec: serde_json::Value) -> Result<(), String> {
    let patch = serde_json::json!({ "spec": spec });
    clusters(env)
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
        .map_err(|e| format!("patch mgc {patch}: {e}"))
}

async fn pod_uid(env: &Env, name: &str) -> Result<Option<String>, String> {
    Ok(pods(env).get_opt(name).await.map_err(|e| format!("get pod {name}: {e}"))?.and_then(|p| p.metadata.uid))
}

/// Deletes pod `name` at once (no grace period: a crash, not a shutdown) and waits for its
/// StatefulSet to start a new one.
async fn kill_pod(env: &Env, name: &str) -> Result<(), String> {
    let old = pod_uid(env, name).await?.ok_or_else(|| format!("pod {name} does not exist"))?;
    let params = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
    pods(env).delete(name, &params).await.map_err(|e| format!("delete pod {name}: {e}"))?;
    wait_for(&format!("a new pod {name}"), Duration::from_secs(120), Duration::from_secs(1), || async {
        match pod_uid(env, name).await? {
            Some(uid) if uid != old => Ok(()),
            Some(_) => Err("the old pod is still there".to_owned()),
            None => Err("no pod yet".to_owned()),
        }
    })
    .await
}

/// The data check after every change: the expected count through the write Service, and
/// through the read Service (eventually, for ASYNC).
async fn data_is_there(env: &Env) -> Result<(), String> {
    let n = expected_nodes().ok_or("no data was written yet")?;
    eventually_count(env, &format!("svc/{CLUSTER}-write"), n).await?;
    eventually_count(env, &format!("svc/{CLUSTER}-read"), n).await
}

fn test(work: impl std::future::Future<Output = Result<(), String>> + Send + 'static) -> Result<(), Failed> {
    env()?;
    block_on(work)
}

// ---------------------------------------------------------------------------------------------
// The tests, in order

fn operator_installs() -> Result<(), Failed> {
    test(async {
        let env = env()?;
        let out = kubectl(&env.kubeconfig, &["-n", NAMESPACE, "get", "deployments", "-o", "name"]).await?;
        let deployment = out.lines().find(|l| l.contains("memgraph-operator")).ok_or_else(|| {
            format!("the chart installed no memgraph-operator Deployment in {NAMESPACE}; deployments: {out:?}")
        })?;
        kubectl(&env.kubeconfig, &["-n", NAMESPACE, "rollout", "status", deployment, "--timeout=180s"]).await?;
        Ok(())
    })
}

fn cluster_reaches_running() -> Result<(), Failed> {
    test(async {
        let env = env()?;
        if wanted(env).await?.is_none() {
            create_cluster(env).await?;
        }
        wait_settled(env, Want { replicas: 2, mode: ReplicationMode::Async }, "creation").await?;
        let mgc = clusters(env).get(CLUSTER).await.map_err(|e| e.to_string())?;
        let status = mgc.status.unwrap_or_default();
        if status.main_pod.as_deref() != Some(&format!("{CLUSTER}-write-0")) {
            return Err(format!("status.mainPod is {:?}", status.main_pod));
        }
        // The Services the README promises.
        let services: Api<Service> = Api::namespaced(env.client.clone(), NAMESPACE);
        for name in [format!("{CLUSTER}-write"), format!("{CLUSTER}-read")] {
            services.get(&name).await.map_err(|e| format!("Service {name}: {e}"))?;
        }
        Ok(())
    })
}

fn writes_and_reads_through_services() -> Result<(), Failed> {
    test(async {
        let env = env()?;
        ready_cluster(env).await?;
        let total = write_nodes(env, 10).await?;
        eventually_count(env, &format!("svc/{CLUSTER}-read"), total).await?;
        // Writes through the read Service are refused: it routes to replicas only.
        let pf = port_forward(env, &format!("svc/{CLUSTER}-read")).await?;
        match bolt().run(&pf.address, "CREATE (:NotHere)", BTreeMap::new()).await {
            Err(e) if e.is_query_error() => Ok(()),
            other => Err(format!("a write through the read Service must be refused by a replica, got {other:?}")),
        }
    })
}

fn write_pod_killed() -> Result<(), Failed> {
    test(async {
        let env = env()?;
        let want = ready_cluster(env).await?;
        kill_pod(env, &format!("{CLUSTER}-write-0")).await?;
        wait_settled(env, want, "the write pod was killed").await?;
        data_is_there(env).await
    })
}

fn read_pod_killed() -> Result<(), Failed> {
    test(async {
        let env = env()?;
        let want = ready_cluster(env).await?;
        let last = want.replicas - 1;
        kill_pod(env, &format!("{CLUSTER}-read-{last}-0")).await?;
        wait_settled(env, want, "a read pod was killed").await?;
        data_is_there(env).await?;
        eventually_count(env, &format!("pod/{CLUSTER}-read-{last}-0"), expected_nodes().unwrap_or_default()).await
    })
}

fn read_replicas_scaled_up_and_down() -> Result<(), Failed> {
    test(async {
        let env = env()?;
        let want = ready_cluster(env).await?;
        let up = Want { replicas: want.replicas + 1, ..want };
        patch_spec(env, serde_json::json!({"read": {"replicas": up.replicas}})).await?;
        wait_settled(env, up, "scaling up").await?;
        // The new replica got the data from the MAIN.
        let newest = format!("pod/{CLUSTER}-read-{}-0", up.replicas - 1);
        eventually_count(env, &newest, expected_nodes().unwrap_or_default()).await?;

        let down = Want { replicas: 1, ..want };
        patch_spec(env, serde_json::json!({"read": {"replicas": down.replicas}})).await?;
        wait_settled(env, down, "scaling down").await?;
        let sets: Api<StatefulSet> = Api::namespaced(env.client.clone(), NAMESPACE);
        for i in down.replicas..up.replicas {
            let name = format!("{CLUSTER}-read-{i}");
            wait_for(
                &format!("StatefulSet {name} to be removed"),
                Duration::from_secs(120),
                Duration::from_secs(2),
                || async {
                    match sets.get_opt(&name).await {
                        Ok(None) => Ok(()),
                        Ok(Some(_)) => Err("still there".to_owned()),
                        Err(e) => Err(e.to_string()),
                    }
                },
            )
            .await?;
        }
        data_is_there(env).await
    })
}

fn replication_mode_changed() -> Result<(), Failed> {
    test(async {
        let env = env()?;
        let want = ready_cluster(env).await?;
        let sync = Want { mode: ReplicationMode::Sync, ..want };
        patch_spec(env, serde_json::json!({"replication": {"mode": "SYNC"}})).await?;
        wait_settled(env, sync, "changing the replication mode to SYNC").await?;
        let total = write_nodes(env, 10).await?;
        // SYNC: the replicas have it when the write returns.
        let n = count_via(env, &format!("svc/{CLUSTER}-read")).await?;
        if n != total {
            return Err(format!("right after a SYNC write the read Service shows {n} nodes, expected {total}"));
        }
        patch_spec(env, serde_json::json!({"replication": {"mode": "ASYNC"}})).await?;
        wait_settled(env, want, "changing the replication mode back to ASYNC").await
    })
}

fn operator_failover() -> Result<(), Failed> {
    test(async {
        let env = env()?;
        let want = ready_cluster(env).await?;
        let chart = e2e::workspace_root().join(CHART).to_string_lossy().into_owned();
        helm(
            &env.kubeconfig,
            &[
                "upgrade",
                RELEASE,
                &chart,
                "--namespace",
                NAMESPACE,
                "--reuse-values",
                "--set",
                "replicaCount=2",
                "--wait",
                "--timeout",
                "5m",
            ],
        )
        .await?;
        let leases: Api<Lease> = Api::namespaced(env.client.clone(), NAMESPACE);
        let leader = wait_for(
            "an operator pod to hold the Lease memgraph-operator",
            Duration::from_secs(60),
            Duration::from_secs(1),
            || async {
                let lease = leases.get_opt("memgraph-operator").await.map_err(|e| e.to_string())?;
                let holder = lease.and_then(|l| l.spec).and_then(|s| s.holder_identity).filter(|h| !h.is_empty());
                holder.ok_or_else(|| "no holder".to_owned())
            },
        )
        .await?;
        pods(env)
            .delete(&leader, &DeleteParams::default())
            .await
            .map_err(|e| format!("delete the leader {leader}: {e}"))?;
        // The other replica takes over and applies a change made right after the leader went.
        let more = Want { replicas: want.replicas + 1, ..want };
        patch_spec(env, serde_json::json!({"read": {"replicas": more.replicas}})).await?;
        let sets: Api<StatefulSet> = Api::namespaced(env.client.clone(), NAMESPACE);
        let name = format!("{CLUSTER}-read-{}", more.replicas - 1);
        wait_for(
            &format!("StatefulSet {name} within 60 s of deleting the leading operator pod {leader}"),
            Duration::from_secs(60),
            Duration::from_secs(1),
            || async {
                match sets.get_opt(&name).await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("not created".to_owned()),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await?;
        wait_settled(env, more, "the operator failover").await?;
        data_is_there(env).await
    })
}

// ---------------------------------------------------------------------------------------------
// Backups: an S3-compatible server in the cluster

/// The S3-compatible server: moto, the release the S3 tests of `operator/tests/s3_store.rs`
/// pass with (`.ci/run` pins the same), installed from PyPI into a stock Python image.
const S3_SERVICE: &str = "s3";
const S3_PORT: u16 = 5000;
const S3_IMAGE: &str = "python:3.12-slim";
const MOTO: &str = "moto[server]==5.2.5";
const BUCKET: &str = "mgo-e2e-backups";
const S3_SECRET: &str = "e2e-s3";
const RESTORED: &str = "e2e-restored";

/// The moto Deployment, its Service and the credentials Secret (moto accepts any keys).
async fn install_s3(env: &Env) -> Result<(), String> {
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": S3_SERVICE, "namespace": NAMESPACE},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": S3_SERVICE}},
                    "template": {
                        "metadata": {"labels": {"app": S3_SERVICE}},
                        "spec": {"containers": [{
                            "name": "moto",
                            "image": S3_IMAGE,
                            "command": ["sh", "-c", format!(
                                "pip install --quiet --disable-pip-version-check '{MOTO}' && exec moto_server -H 0.0.0.0 -p {S3_PORT}"
                            )],
                            "ports": [{"containerPort": S3_PORT}],
                            "readinessProbe": {"tcpSocket": {"port": S3_PORT}, "periodSeconds": 2}
                        }]}
                    }
                }
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": S3_SERVICE, "namespace": NAMESPACE},
                "spec": {"selector": {"app": S3_SERVICE}, "ports": [{"port": S3_PORT, "targetPort": S3_PORT}]}
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": S3_SECRET, "namespace": NAMESPACE},
                "stringData": {"access-key-id": "e2e", "secret-access-key": "e2e-secret"}
            }
        ]
    });
    let file = std::env::temp_dir().join(format!("mgo-e2e-s3-{}.json", std::process::id()));
    std::fs::write(&file, manifest.to_string()).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let applied = kubectl(&env.kubeconfig, &["apply", "-f", &file.to_string_lossy()]).await;
    let _ = std::fs::remove_file(&file);
    applied?;
    kubectl(
        &env.kubeconfig,
        &["-n", NAMESPACE, "rollout", "status", &format!("deploy/{S3_SERVICE}"), "--timeout=300s"],
    )
    .await?;
    // The bucket, with one unsigned PUT (moto does not check signatures).
    let pf = port_forward_to(env, &format!("svc/{S3_SERVICE}"), S3_PORT).await?;
    let status = http_put(&pf.address, &format!("/{BUCKET}")).await?;
    if !status.contains(" 200 ") {
        return Err(format!("creating the bucket {BUCKET} answered {status:?}"));
    }
    Ok(())
}

/// `PUT <path>` with an empty body over plain HTTP; returns the status line.
async fn http_put(address: &str, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| format!("PUT {path} to {address}: no answer within 30 s"))?
        .map_err(|e| format!("PUT {path} to {address}: {e}"))?;
    Ok(String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned())
}

fn store_spec(prefix: &str) -> serde_json::Value {
    serde_json::json!({
        "bucket": BUCKET,
        "region": "us-east-1",
        "endpoint": format!("http://{S3_SERVICE}.{NAMESPACE}.svc:{S3_PORT}"),
        "prefix": prefix,
        "secretRef": {"name": S3_SECRET}
    })
}

/// Backups on, one requested now; it must complete, and a new cluster bootstrapped from it must
/// come up as a MAIN holding every node written before it.
fn backup_to_s3_and_restore() -> Result<(), Failed> {
    test(async {
        let env = env()?;
        let want = ready_cluster(env).await?;
        install_s3(env).await?;
        let nodes = expected_nodes().ok_or("no data was written yet")?;
        let mut s3 = store_spec("clusters/e2e");
        s3["enabled"] = serde_json::json!(true);
        patch_spec(env, serde_json::json!({"snapshot": {"s3": s3}})).await?;
        // The write pod restarts with the backup agent beside it.
        wait_settled(env, want, "turning backups on").await?;
        let mut annotations = serde_json::Map::new();
        annotations.insert(
            memgraph_operator::reconcile::plan::backup::BACKUP_REQUEST_ANNOTATION.to_owned(),
            serde_json::json!("e2e-1"),
        );
        let request = serde_json::json!({"metadata": {"annotations": annotations}});
        clusters(env)
            .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&request))
            .await
            .map_err(|e| format!("annotate for a backup: {e}"))?;
        let backup = wait_for(
            "status.backups.lastSuccessful after a requested backup",
            Duration::from_secs(300),
            Duration::from_secs(3),
            || async {
                let mgc = clusters(env).get(CLUSTER).await.map_err(|e| e.to_string())?;
                let backups = mgc.status.and_then(|s| s.backups).unwrap_or_default();
                match (backups.last_successful, backups.last_failed) {
                    (Some(done), _) => Ok(done),
                    (None, Some(failed)) => Err(format!("failed: {failed:?}")),
                    (None, None) => Err(format!("running: {:?}", backups.running)),
                }
            },
        )
        .await?;
        if backup.size_bytes <= 0 {
            return Err(format!("the backup {} claims {} bytes", backup.id, backup.size_bytes));
        }

        let mut source = store_spec("clusters/e2e");
        source["backupId"] = serde_json::json!(backup.id);
        let restored: MemgraphCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "memgraph.io/v1alpha1",
            "kind": "MemgraphCluster",
            "metadata": {"name": RESTORED, "namespace": NAMESPACE},
            "spec": {
                "write": {"storage": {"size": "1Gi"}},
                "read": {"replicas": 1, "storage": {"size": "1Gi"}, "pvcRetention": "Delete"},
                "bootstrap": {"fromBackup": source}
            }
        }))
        .map_err(|e| format!("the restored MemgraphCluster does not parse: {e}"))?;
        clusters(env).create(&PostParams::default(), &restored).await.map_err(|e| format!("create {RESTORED}: {e}"))?;
        wait_for(&format!("{RESTORED} to be Running"), SETTLE, Duration::from_secs(3), || async {
            let mgc = clusters(env).get(RESTORED).await.map_err(|e| e.to_string())?;
            let status = mgc.status.unwrap_or_default();
            if status.phase == Phase::Running && status.write_ready && status.ready_replicas == 1 {
                Ok(())
            } else {
                Err(format!(
                    "phase {:?}, writeReady {}, ready {}",
                    status.phase, status.write_ready, status.ready_replicas
                ))
            }
        })
        .await?;
        eventually_count(env, &format!("svc/{RESTORED}-write"), nodes).await?;
        eventually_count(env, &format!("svc/{RESTORED}-read"), nodes).await?;
        clusters(env)
            .delete(RESTORED, &DeleteParams::default())
            .await
            .map_err(|e| format!("delete {RESTORED}: {e}"))?;
        data_is_there(env).await
    })
}

fn cluster_deleted() -> Result<(), Failed> {
    test(async {
        let env = env()?;
        if wanted(env).await?.is_none() {
            create_cluster(env).await?;
        }
        clusters(env).delete(CLUSTER, &DeleteParams::default()).await.map_err(|e| format!("delete mgc: {e}"))?;
        wait_for(
            "the MemgraphCluster to be gone (its finalizer done)",
            Duration::from_secs(300),
            Duration::from_secs(2),
            || async {
                match clusters(env).get_opt(CLUSTER).await {
                    Ok(None) => Ok(()),
                    Ok(Some(m)) => Err(format!("still there, finalizers {:?}", m.metadata.finalizers)),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await?;
        let selector = ListParams::default().labels(&format!("{LABEL_INSTANCE}={CLUSTER}"));
        let sets: Api<StatefulSet> = Api::namespaced(env.client.clone(), NAMESPACE);
        let services: Api<Service> = Api::namespaced(env.client.clone(), NAMESPACE);
        wait_for(
            "the cluster's StatefulSets, Services and pods to be gone",
            Duration::from_secs(300),
            Duration::from_secs(2),
            || async {
                let s = sets.list(&selector).await.map_err(|e| e.to_string())?.items.len();
                let v = services.list(&selector).await.map_err(|e| e.to_string())?.items.len();
                let p = pods(env).list(&selector).await.map_err(|e| e.to_string())?.items.len();
                if s + v + p == 0 { Ok(()) } else { Err(format!("{s} StatefulSets, {v} Services, {p} pods")) }
            },
        )
        .await?;
        if let Ok(mut e) = EXPECTED_NODES.lock() {
            *e = None;
        }
        Ok(())
    })
}
