//! Helpers shared by the integration tests: instances on loopback with ephemeral ports.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use fake_memgraph::{
    Client, ClientError, Config, IdSource, ManualClock, MemDataDir, QueryResult, Server, ServerHandle, TokioNet, Value,
};
use tokio::net::TcpStream;

/// Fast timing knobs so replication tests take milliseconds, plus durable defaults.
pub const FAST: &[&str] =
    &["--fake-replica-check-frequency-ms=20", "--fake-rpc-timeout-ms=500", "--storage-wal-file-flush-every-n-tx=1"];

/// Parses flags on top of [`FAST`].
pub fn config(extra: &[&str]) -> Config {
    Config::parse_args(FAST.iter().chain(extra).copied()).expect("valid flags")
}

/// One instance with its volume, restartable with the same data.
pub struct Instance {
    pub name: String,
    pub net: TokioNet,
    pub dir: MemDataDir,
    pub flags: Vec<String>,
    pub seed: u64,
    pub handle: ServerHandle,
}

impl Instance {
    /// Starts an instance named `name` (its replication address is `<name>:10000`).
    pub async fn start(net: &TokioNet, name: &str, flags: &[&str], seed: u64) -> Instance {
        let dir = MemDataDir::default();
        let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        let handle = boot(net, &dir, &flags, seed).await;
        let inst = Instance { name: name.to_string(), net: net.clone(), dir, flags, seed, handle };
        inst.publish_route();
        inst
    }

    /// Makes `<name>:10000` reach this instance's replication port, if it has one.
    pub fn publish_route(&self) {
        if let Some(p) = self.handle.replication_port() {
            self.net.route(format!("{}:10000", self.name), SocketAddr::from(([127, 0, 0, 1], p)));
        }
    }

    /// The address to register this instance under.
    pub fn address(&self) -> String {
        format!("{}:10000", self.name)
    }

    pub async fn client(&self) -> Client<TcpStream> {
        connect(self.handle.bolt_port()).await
    }

    /// Runs a query on a fresh connection.
    pub async fn run(&self, q: &str) -> Result<QueryResult, ClientError> {
        self.client().await.query(q).await
    }

    /// Runs a query that must succeed.
    pub async fn ok(&self, q: &str) -> QueryResult {
        match self.run(q).await {
            Ok(r) => r,
            Err(e) => panic!("{} failed on {}: {e}", q, self.name),
        }
    }

    /// Kills and starts again on the same volume.
    pub async fn crash_restart(&mut self) {
        self.handle.kill();
        self.handle = boot(&self.net, &self.dir, &self.flags, self.seed + 1000).await;
        self.publish_route();
    }

    /// Stops gracefully and starts again on the same volume.
    pub async fn graceful_restart(&mut self) {
        self.handle.shutdown().await;
        self.handle = boot(&self.net, &self.dir, &self.flags, self.seed + 2000).await;
        self.publish_route();
    }

    /// Makes this instance a replica on (logical) port 10000.
    pub async fn make_replica(&self) {
        self.ok("SET REPLICATION ROLE TO REPLICA WITH PORT 10000").await;
        self.publish_route();
    }
}

pub async fn boot(net: &TokioNet, dir: &MemDataDir, flags: &[String], seed: u64) -> ServerHandle {
    let cfg = config(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    Server::start(cfg, net.clone(), dir.clone(), ManualClock::new(1_700_000_000_000_000), IdSource::seeded(seed))
        .await
        .expect("server starts")
}

pub async fn connect(port: u16) -> Client<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp connect");
    Client::connect(s, None).await.expect("bolt connect")
}

/// Polls `f` until it is true, failing the test after `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn params(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// `data_info.memgraph.status` of a `SHOW REPLICAS` row by name.
pub fn status_of(r: &QueryResult, name: &str) -> Option<String> {
    let row = r.rows.iter().find(|row| row[0].as_str() == Some(name))?;
    let info = row[4].as_map()?.get("memgraph")?.as_map()?;
    info.get("status")?.as_str().map(str::to_owned)
}
