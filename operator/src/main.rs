use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use clap::{Parser, Subcommand};
use memgraph_operator::controller::RunConfig;
use memgraph_operator::memgraph::Timeouts;
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
        /// Watch only this namespace (default: all namespaces).
        #[arg(long, env = "WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Address of the /healthz and /readyz endpoint.
        #[arg(long, default_value = "0.0.0.0:8080")]
        health_addr: String,
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
        /// Log as JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Run {
        namespace,
        health_addr,
        bolt_connect_timeout,
        bolt_probe_timeout,
        bolt_query_timeout,
        snapshot_timeout,
        log_json,
    } = cli.command
    {
        return run_controller(
            RunConfig {
                namespace,
                health_addr,
                timeouts: Timeouts {
                    connect: Duration::from_secs(bolt_connect_timeout),
                    probe: Duration::from_secs(bolt_probe_timeout),
                    command: Duration::from_secs(bolt_query_timeout),
                    snapshot: Duration::from_secs(snapshot_timeout),
                },
                instance: std::env::var("POD_NAME").ok(),
            },
            log_json,
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

fn run_controller(config: RunConfig, json: bool) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Logging starts after the preflight so a failed start is one line on stderr.
        let client = memgraph_operator::controller::connect(&config).await?;
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        if json {
            subscriber.json().init()
        } else {
            subscriber.init()
        }
        memgraph_operator::controller::run(client, config).await
    });
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
