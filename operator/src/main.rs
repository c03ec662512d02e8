use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use clap::{Parser, Subcommand};
use memgraph_operator::controller::{LeaderConfig, RunConfig, RunError};
use memgraph_operator::memgraph::Timeouts;
use memgraph_operator::telemetry::{LogFormat, TelemetryConfig, pipeline};
use tracing_subscriber::EnvFilter;

/// Kubernetes operator for Memgraph: one write instance (MAIN) and N read replicas.
#[derive(Parser, Debug)]
#[command(name = "memgraph-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the MemgraphCluster CustomResourceDefinition as YAML.
    Crd,
    /// Run the controller: reconcile every MemgraphCluster until SIGTERM.
    Run {
        /// Watch only these namespaces, comma-separated (default: all namespaces).
        #[arg(long, env = "WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Take part in leader election on a Lease, so that only one replica of the operator
        /// reconciles. `--leader-election=false` reconciles at once: run one replica only.
        #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
        leader_election: bool,
        /// Name of the Lease.
        #[arg(long, env = "LEASE_NAME", default_value = "memgraph-operator")]
        lease_name: String,
        /// Namespace of the Lease (default: POD_NAMESPACE, then the service account's namespace).
        #[arg(long, env = "POD_NAMESPACE")]
        lease_namespace: Option<String>,
        /// Seconds a standby waits, from when it last saw the Lease renewed, before taking it.
        #[arg(long, default_value_t = 15)]
        lease_duration_seconds: u64,
        /// Seconds a leader keeps reconciling without a successful renewal before it exits.
        #[arg(long, default_value_t = 10)]
        lease_renew_deadline_seconds: u64,
        /// Seconds between renewals (leader) and looks (standby).
        #[arg(long, default_value_t = 2)]
        lease_retry_period_seconds: u64,
        /// Address of the /healthz and /readyz endpoint.
        #[arg(long, default_value = "0.0.0.0:8080")]
        health_addr: String,
        /// Address of the Prometheus /metrics endpoint.
        #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9464")]
        metrics_addr: String,
        /// Seconds to wait for a Bolt connection to an instance.
        #[arg(long, default_value_t = Timeouts::default().connect.as_secs())]
        bolt_connect_timeout: u64,
        /// Seconds to wait for a probe (role, SHOW REPLICAS): a frozen instance costs a reconcile
        /// no more than this.
        #[arg(long, default_value_t = Timeouts::default().probe.as_secs())]
        bolt_probe_timeout: u64,
        /// Seconds to wait for a replication command (REGISTER REPLICA waits on the replica).
        #[arg(long, default_value_t = Timeouts::default().command.as_secs())]
        bolt_query_timeout: u64,
        /// Seconds to wait for CREATE SNAPSHOT.
        #[arg(long, default_value_t = Timeouts::default().snapshot.as_secs())]
        snapshot_timeout: u64,
        /// Log lines as text or as JSON objects.
        #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Same as `--log-format json` (the flag of earlier releases).
        #[arg(long, hide = true)]
        log_json: bool,
        /// Export spans over OTLP gRPC to this endpoint, such as http://otel-collector:4317
        /// (plain gRPC; a bare HOST:PORT means http://). Unset: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
        /// then OTEL_EXPORTER_OTLP_ENDPOINT; none of them set exports nothing.
        #[arg(long)]
        otlp_endpoint: Option<String>,
        /// `service.name` of the exported spans.
        #[arg(long, env = "OTEL_SERVICE_NAME", default_value = pipeline::DEFAULT_SERVICE_NAME)]
        otel_service_name: String,
    },
    /// The backup agent: the write pod's sidecar that uploads snapshot files when the operator
    /// asks (see `spec.snapshot.s3`). Store credentials come from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY (or the default AWS chain when unset).
    Agent {
        /// Memgraph's data directory (the shared volume).
        #[arg(long, default_value = "/var/lib/memgraph")]
        data_dir: PathBuf,
        /// Bucket.
        #[arg(long)]
        bucket: String,
        /// Region.
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// Endpoint of an S3-compatible store.
        #[arg(long)]
        endpoint: Option<String>,
        /// File with the key that signs the operator's requests.
        #[arg(long)]
        key_file: PathBuf,
        /// Multipart part size in MiB.
        #[arg(long, default_value_t = 16)]
        part_size_mib: usize,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:9102")]
        listen: String,
    },
    /// Restore a backup onto an empty data volume (the write pod's init container when the
    /// cluster is bootstrapped from a backup). Does nothing on a volume it restored before;
    /// fails without touching anything on a volume holding other data. Credentials come from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the default AWS chain).
    Restore {
        /// Memgraph's data directory.
        #[arg(long, default_value = "/var/lib/memgraph")]
        data_dir: PathBuf,
        /// Bucket.
        #[arg(long)]
        bucket: String,
        /// Key prefix of the source cluster's backups.
        #[arg(long)]
        prefix: String,
        /// Region.
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// Endpoint of an S3-compatible store.
        #[arg(long)]
        endpoint: Option<String>,
        /// `latest` or a backup id.
        #[arg(long, default_value = "latest")]
        backup: String,
        /// The Memgraph version that will load the snapshot: a backup by a newer one is refused.
        #[arg(long)]
        memgraph_version: Option<String>,
    },
    /// Backups in an object store.
    Backups {
        #[command(subcommand)]
        command: BackupsCommand,
    },
    /// Print every object the operator would create for a MemgraphCluster, as a YAML stream.
    Render {
        /// File with one MemgraphCluster; `-` reads standard input.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Namespace to assume when the file has none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
}

#[derive(Subcommand, Debug)]
enum BackupsCommand {
    /// List the backups of a cluster, newest first. Give `--cluster` to read the store and its
    /// credentials from the cluster's spec and Secret (needs a kubeconfig), or the store
    /// flags with credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    List {
        /// MemgraphCluster whose `spec.snapshot.s3` names the store.
        #[arg(long)]
        cluster: Option<String>,
        /// Its namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Bucket (without --cluster).
        #[arg(long)]
        bucket: Option<String>,
        /// Key prefix (without --cluster).
        #[arg(long, default_value = "memgraph/snapshots")]
        prefix: String,
        /// Region (without --cluster).
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// Endpoint of an S3-compatible store (without --cluster).
        #[arg(long)]
        endpoint: Option<String>,
        /// Read every snapshot and check its SHA-256 against the manifest.
        #[arg(long)]
        verify: bool,
    },
}

fn env_credentials() -> Option<memgraph_operator::backup::Credentials> {
    let access_key_id = std::env::var("AWS_ACCESS_KEY_ID").ok().filter(|v| !v.is_empty())?;
    let secret_access_key = std::env::var("AWS_SECRET_ACCESS_KEY").ok().filter(|v| !v.is_empty())?;
    Some(memgraph_operator::backup::Credentials { access_key_id, secret_access_key })
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

#[allow(clippy::too_many_arguments)]
fn run_agent(
    data_dir: PathBuf,
    bucket: String,
    region: String,
    endpoint: Option<String>,
    key_file: PathBuf,
    part_size_mib: usize,
    listen: String,
) -> Result<String, String> {
    use memgraph_operator::backup::{StoreLocation, agent, s3::S3Store, volume::FsVolume};
    let key = std::fs::read_to_string(&key_file)
        .map_err(|e| format!("cannot read the signing key {}: {e}", key_file.display()))?
        .trim()
        .as_bytes()
        .to_vec();
    if key.len() < 32 {
        return Err(format!("the signing key in {} is shorter than 32 bytes", key_file.display()));
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).json().init();
    runtime()?.block_on(async move {
        let location = StoreLocation { bucket, region, endpoint, prefix: String::new() };
        let store = S3Store::new(&location, env_credentials()).await.map_err(|e| e.to_string())?;
        let volume = FsVolume::new(data_dir);
        let part_size = part_size_mib.max(5) * 1024 * 1024;
        let clock = std::sync::Arc::new(memgraph_operator::clock::SystemClock);
        let agent = agent::Agent::new(std::sync::Arc::new(store), std::sync::Arc::new(volume), clock, key, part_size);
        agent.resume().await.map_err(|e| format!("cannot read the agent's records on the volume: {e}"))?;
        let listener =
            tokio::net::TcpListener::bind(&listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        tracing::info!(%listen, "backup agent ready");
        agent::serve_tcp(agent, listener).await.map_err(|e| format!("agent stopped: {e}"))?;
        Ok(String::new())
    })
}

#[allow(clippy::too_many_arguments)]
fn run_restore(
    data_dir: PathBuf,
    bucket: String,
    prefix: String,
    region: String,
    endpoint: Option<String>,
    backup: String,
    memgraph_version: Option<String>,
) -> Result<String, String> {
    use memgraph_operator::backup::restore::{self, Outcome, Selector};
    use memgraph_operator::backup::{StoreLocation, s3::S3Store, volume::FsVolume};
    let version = match memgraph_version.as_deref() {
        Some(v) => Some(
            memgraph_operator::version::MemgraphVersion::parse(v)
                .ok_or_else(|| format!("--memgraph-version {v:?} is not a version like 3.12.0"))?,
        ),
        None => None,
    };
    runtime()?.block_on(async move {
        let prefix = prefix.trim_end_matches('/').to_owned();
        let location = StoreLocation { bucket, region, endpoint, prefix: prefix.clone() };
        let store = S3Store::new(&location, env_credentials()).await.map_err(|e| e.to_string())?;
        let volume = FsVolume::new(data_dir);
        let now = k8s_openapi::jiff::Timestamp::now();
        match restore::restore(&store, &volume, &prefix, &Selector::parse(&backup), version, now).await {
            Ok(Outcome::Restored(m)) => Ok(format!(
                "restored backup {} (snapshot {}, SHA-256 {}) into the data directory\n",
                m.backup_id, m.snapshot, m.sha256
            )),
            Ok(Outcome::AlreadyRestored(m)) => {
                Ok(format!("the data directory was restored from backup {} before; nothing to do\n", m.backup_id))
            }
            Err(e) => Err(e.to_string()),
        }
    })
}

fn list_backups(command: BackupsCommand) -> Result<String, String> {
    use memgraph_operator::backup::{StoreLocation, listing, s3::S3Store};
    let BackupsCommand::List { cluster, namespace, bucket, prefix, region, endpoint, verify } = command;
    runtime()?.block_on(async move {
        let (location, credentials) = match cluster {
            Some(name) => {
                let client =
                    kube::Client::try_default().await.map_err(|e| format!("no Kubernetes configuration: {e}"))?;
                let kube = memgraph_operator::kube_api::KubeClient::new(client, None);
                let cluster = memgraph_operator::kube_api::Kube::get::<memgraph_operator::api::MemgraphCluster>(
                    &kube, &namespace, &name,
                )
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("MemgraphCluster {namespace}/{name} not found"))?;
                let location = memgraph_operator::reconcile::backup_job::location(&cluster.spec)
                    .ok_or_else(|| format!("{namespace}/{name} has no spec.snapshot.s3"))?;
                let credentials =
                    memgraph_operator::reconcile::backup_job::store_credentials(&kube, &namespace, &cluster.spec)
                        .await?;
                (location, credentials)
            }
            None => {
                let bucket = bucket.ok_or("give --cluster, or --bucket (and --prefix) of the store")?;
                (
                    StoreLocation { bucket, region, endpoint, prefix: prefix.trim_end_matches('/').to_owned() },
                    env_credentials(),
                )
            }
        };
        let store = S3Store::new(&location, credentials).await.map_err(|e| e.to_string())?;
        listing::table(&store, &location.prefix, verify).await.map_err(|e| format!("{e}; {}", e.hint()))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Run {
        namespace,
        leader_election,
        lease_name,
        lease_namespace,
        lease_duration_seconds,
        lease_renew_deadline_seconds,
        lease_retry_period_seconds,
        health_addr,
        metrics_addr,
        bolt_connect_timeout,
        bolt_probe_timeout,
        bolt_query_timeout,
        snapshot_timeout,
        log_format,
        log_json,
        otlp_endpoint,
        otel_service_name,
    } = cli.command
    {
        let telemetry = TelemetryConfig {
            log_format: if log_json { LogFormat::Json } else { log_format },
            otlp_endpoint: pipeline::resolve_endpoint(otlp_endpoint.as_deref(), |name| std::env::var(name).ok()),
            service_name: otel_service_name,
            filter: None,
        };
        let instance = std::env::var("POD_NAME").ok().filter(|n| !n.is_empty());
        let leader = if leader_election {
            let timings = match memgraph_operator::leader::Timings::from_secs(
                lease_duration_seconds,
                lease_renew_deadline_seconds,
                lease_retry_period_seconds,
            ) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // Unique is what matters: outside a pod (a laptop, a test) a random name will do.
            let identity = instance
                .clone()
                .or_else(|| std::env::var("HOSTNAME").ok().filter(|n| !n.is_empty()))
                .unwrap_or_else(|| {
                    let mut bytes = [0u8; 6];
                    memgraph_operator::clock::Clock::fill_random(&memgraph_operator::clock::SystemClock, &mut bytes);
                    format!("memgraph-operator-{}", memgraph_operator::backup::upload::hex(&bytes))
                });
            Some(LeaderConfig {
                namespace: lease_namespace_or_default(lease_namespace),
                name: lease_name,
                identity,
                timings,
            })
        } else {
            None
        };
        return run_controller(
            RunConfig {
                namespaces: watched_namespaces(namespace.as_deref()),
                leader,
                health_addr,
                metrics_addr,
                timeouts: Timeouts {
                    connect: Duration::from_secs(bolt_connect_timeout),
                    probe: Duration::from_secs(bolt_probe_timeout),
                    command: Duration::from_secs(bolt_query_timeout),
                    snapshot: Duration::from_secs(snapshot_timeout),
                },
                instance,
            },
            &telemetry,
        );
    }
    match run(cli) {
        Ok(output) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(output.as_bytes()).and_then(|()| stdout.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write output: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `a, b,` → `["a", "b"]`; unset or empty → all namespaces.
fn watched_namespaces(list: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> =
        list.unwrap_or("").split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
    out.sort();
    out.dedup();
    out
}

/// The Lease's namespace: the flag or POD_NAMESPACE, then the in-cluster service account's.
fn lease_namespace_or_default(given: Option<String>) -> String {
    given
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
        })
        .unwrap_or_else(|| "default".to_owned())
}

fn run_controller(config: RunConfig, telemetry: &TelemetryConfig) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A bad endpoint is refused before anything starts.
    if let Some(endpoint) = &telemetry.otlp_endpoint
        && let Err(e) = pipeline::normalize_endpoint(endpoint)
    {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let mut exporter = None;
    let result = runtime.block_on(async {
        // Logging starts after the preflight so a failed start is one line on stderr. The span
        // exporter is built here, inside the runtime its connection runs on.
        let client = memgraph_operator::controller::connect(&config).await.map_err(|e| e.to_string())?;
        exporter = Some(pipeline::init(telemetry).map_err(|e| e.to_string())?);
        match memgraph_operator::controller::run(client, config).await {
            // Exit at once: nothing this process still runs may act beside the new leader.
            Err(e @ RunError::LeadershipLost(_)) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
            other => other.map_err(|e| e.to_string()),
        }
    });
    // While the runtime still runs: the last spans are sent through it.
    if let Some(mut exporter) = exporter
        && let Err(e) = exporter.shutdown()
    {
        eprintln!("warning: {e}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<String, String> {
    match cli.command {
        Command::Run { .. } => Err("run is handled before".to_owned()),
        Command::Agent { data_dir, bucket, region, endpoint, key_file, part_size_mib, listen } => {
            run_agent(data_dir, bucket, region, endpoint, key_file, part_size_mib, listen)
        }
        Command::Backups { command } => list_backups(command),
        Command::Restore { data_dir, bucket, prefix, region, endpoint, backup, memgraph_version } => {
            run_restore(data_dir, bucket, prefix, region, endpoint, backup, memgraph_version)
        }
        Command::Crd => memgraph_operator::crd::crd_yaml().map_err(|e| format!("cannot serialize the CRD: {e}")),
        Command::Render { file, namespace } => {
            let yaml = if file.as_os_str() == "-" {
                let mut buf = String::new();
                std::io::stdin().read_to_string(&mut buf).map_err(|e| format!("cannot read standard input: {e}"))?;
                buf
            } else {
                std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?
            };
            memgraph_operator::render::render(&yaml, &namespace).map_err(|e| format!("{}: {e}", file.display()))
        }
    }
}
