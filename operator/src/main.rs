use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

fn run(cli: Cli) -> Result<String, String> {
    match cli.command {
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
