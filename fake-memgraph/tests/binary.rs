//! The `fake-memgraph` binary: flags, startup failures, serving, graceful stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use fake_memgraph::{Client, Value};

const BIN: &str = env!("CARGO_BIN_EXE_fake-memgraph");

fn run_to_end(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts the binary and waits for its "ready" log line; returns the child and its Bolt port.
fn serve(dir: &std::path::Path) -> (Child, u16) {
    let mut child = Command::new(BIN)
        .args(["--bolt-port", "0", "--log-level=INFO", "--data-directory"])
        .arg(dir)
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let port = loop {
        let line = lines.next().expect("ready line").expect("readable log");
        if let Some(rest) = line.split("bolt_port=").nth(1) {
            break rest.trim().parse().expect("port number");
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, port)
}

fn terminate(mut child: Child) -> i32 {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    child.wait().expect("child exits").code().unwrap_or(-1)
}

async fn count(port: u16) -> Value {
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut c = Client::connect(s, None).await.unwrap();
    c.query("MATCH (n) RETURN count(n)").await.unwrap().single().cloned().unwrap()
}

#[test]
fn flags_and_startup_failures() {
    let (code, out, _) = run_to_end(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("fake-memgraph {}", env!("CARGO_PKG_VERSION")));
    let (code, _, err) = run_to_end(&["--bolt-port=1", "--no-such-flag=1"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown command line flag 'no-such-flag'"), "{err}");
    let (code, _, err) = run_to_end(&[
        "--storage-wal-enabled=true",
        "--storage-snapshot-interval-sec=0",
        "--data-directory=/tmp/fake-mg-never-used",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("In order to use write-ahead-logging"), "{err}");
}

#[test]
fn serves_bolt_and_stops_gracefully_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("fake-mg-bin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let (child, port) = serve(&dir);
    rt.block_on(async {
        let s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut c = Client::connect(s, None).await.unwrap();
        c.query("CREATE (:FromBinary)").await.unwrap();
    });
    assert_eq!(terminate(child), 0);
    let snapshots = std::fs::read_dir(dir.join("snapshots")).unwrap().count();
    assert_eq!(snapshots, 1, "packaged defaults snapshot on exit");

    let (child, port) = serve(&dir);
    assert_eq!(rt.block_on(count(port)), Value::Int(1));
    assert_eq!(terminate(child), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
