//! Loopback networking for simulated pods: each pod binds real ephemeral ports on 127.0.0.1 and
//! registers them under its cluster DNS name, so `c-read-0-0.c-read-0.ns.svc.cluster.local:10000`
//! reaches that pod's replication port. The operator's Bolt driver resolves through the same
//! table.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use fake_memgraph::net::{Listener, Network};

/// Shared name → address table.
#[derive(Debug, Clone, Default)]
pub struct Routes(Arc<Mutex<BTreeMap<String, SocketAddr>>>);

impl Routes {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SocketAddr>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where `host:port` is served, if anywhere.
    pub fn resolve(&self, address: &str) -> Option<SocketAddr> {
        self.lock().get(address).copied()
    }

    /// Forget every address of `host`.
    pub fn remove_host(&self, host: &str) {
        let prefix = format!("{host}:");
        self.lock().retain(|name, _| !name.starts_with(&prefix));
    }

    /// `host:port` → the dialable address, or a closed port when nothing serves it (so the
    /// connection is refused, as for a pod that is not running).
    pub fn dial(&self, address: &str) -> String {
        self.resolve(address).map_or_else(|| "127.0.0.1:1".to_owned(), |a| a.to_string())
    }
}

/// The network of one pod: binds ephemeral loopback ports and publishes them under `host`.
#[derive(Debug, Clone)]
pub struct LoopbackNet {
    host: String,
    routes: Routes,
}

impl LoopbackNet {
    /// Network of the pod whose DNS name is `host`.
    pub fn new(host: impl Into<String>, routes: Routes) -> Self {
        Self { host: host.into(), routes }
    }
}

/// A listener that unpublishes its address when dropped.
pub struct LoopbackListener {
    inner: tokio::net::TcpListener,
    port: u16,
    name: String,
    routes: Routes,
}

impl Drop for LoopbackListener {
    fn drop(&mut self) {
        let mut table = self.routes.lock();
        if table.get(&self.name).is_some_and(|a| a.port() == self.port) {
            table.remove(&self.name);
        }
    }
}

impl Listener for LoopbackListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, String)> {
        let (stream, peer) = self.inner.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer.to_string()))
    }

    fn local_port(&self) -> u16 {
        self.port
    }
}

impl Network for LoopbackNet {
    type Stream = tokio::net::TcpStream;
    type Listener = LoopbackListener;

    async fn bind(&self, port: u16) -> io::Result<LoopbackListener> {
        let inner = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let real = inner.local_addr()?;
        let name = format!("{}:{port}", self.host);
        self.routes.lock().insert(name.clone(), real);
        Ok(LoopbackListener { inner, port: real.port(), name, routes: self.routes.clone() })
    }

    async fn connect(&self, addr: &str) -> io::Result<tokio::net::TcpStream> {
        let Some(target) = self.routes.resolve(addr) else {
            return Err(io::Error::new(io::ErrorKind::ConnectionRefused, format!("nothing serves {addr}")));
        };
        let stream = tokio::net::TcpStream::connect(target).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}
