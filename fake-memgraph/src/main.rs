//! `fake-memgraph`: runs one instance on real TCP and a real data directory.

use std::process::ExitCode;

use fake_memgraph::config::{Config, ConfigError, PROGRAM_VERSION};
use fake_memgraph::{FsDataDir, IdSource, Server, SystemClock, TokioNet};

fn filter_for(level: &str) -> &'static str {
    match level {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARNING" => "warn",
        _ => "error",
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // The Docker image creates a user from these; mirror it.
    if let (Ok(u), Ok(p)) = (std::env::var("MEMGRAPH_USER"), std::env::var("MEMGRAPH_PASSWORD")) {
        args.insert(0, format!("--fake-user={u}"));
        args.insert(1, format!("--fake-password={p}"));
    }
    let config = match Config::parse_args(args) {
        Ok(c) => c,
        Err(ConfigError::VersionRequested) => {
            println!("fake-memgraph {PROGRAM_VERSION}");
            return ExitCode::SUCCESS;
        }
        Err(ConfigError::HelpRequested) => {
            println!("{}", Config::usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter_for(&config.log_level))),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("couldn't start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let dir = match FsDataDir::new(&config.data_directory) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(dir = %config.data_directory, error = %e, "couldn't open the data directory");
            return ExitCode::FAILURE;
        }
    };
    let bind_ip = config.bolt_address.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let net = TokioNet::new().bind_ip(bind_ip);
    // Ids only need to differ between runs here; the simulation seeds its own.
    let seed = std::process::id() as u64 ^ (fake_memgraph::Clock::now_unix_micros(&SystemClock) as u64);
    let handle = match Server::start(config, net, dir, SystemClock, IdSource::seeded(seed)).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "startup failed");
            return ExitCode::FAILURE;
        }
    };
    wait_for_signal().await;
    tracing::info!("received a termination signal; shutting down");
    handle.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    biased;
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
