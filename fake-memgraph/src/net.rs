//! The network abstraction: the server and the replication client only see these traits, so the same
//! code runs on real loopback TCP ([`TokioNet`]) and inside a turmoil simulation ([`TurmoilNet`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};

/// A bidirectional byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A type-erased stream.
pub type BoxStream = Box<dyn Stream>;

/// A listening socket.
pub trait Listener: Send + 'static {
    /// Accepted connection type.
    type Stream: Stream;
    /// Waits for the next connection; returns it and the peer address.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, String)>> + Send;
    /// The port actually bound.
    fn local_port(&self) -> u16;
}

/// Binding and connecting.
pub trait Network: Clone + Send + Sync + 'static {
    /// Connection type.
    type Stream: Stream;
    /// Listener type.
    type Listener: Listener<Stream = Self::Stream>;
    /// Listens on `port` (all interfaces of this host, or as the implementation maps it).
    fn bind(&self, port: u16) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Connects to `"host:port"`.
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Object-safe listener used inside the server.
pub(crate) trait DynListener: Send {
    fn accept(&mut self) -> BoxFut<'_, io::Result<(BoxStream, String)>>;
    fn local_port(&self) -> u16;
}

impl<L: Listener> DynListener for L {
    fn accept(&mut self) -> BoxFut<'_, io::Result<(BoxStream, String)>> {
        Box::pin(async move {
            let (s, peer) = Listener::accept(self).await?;
            Ok((Box::new(s) as BoxStream, peer))
        })
    }

    fn local_port(&self) -> u16 {
        Listener::local_port(self)
    }
}

/// Object-safe network used inside the server, so server code is not generic.
pub(crate) trait DynNetwork: Send + Sync {
    fn bind(&self, port: u16) -> BoxFut<'_, io::Result<Box<dyn DynListener>>>;
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFut<'a, io::Result<BoxStream>>;
}

impl<N: Network> DynNetwork for N {
    fn bind(&self, port: u16) -> BoxFut<'_, io::Result<Box<dyn DynListener>>> {
        Box::pin(async move {
            let l = Network::bind(self, port).await?;
            Ok(Box::new(l) as Box<dyn DynListener>)
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFut<'a, io::Result<BoxStream>> {
        Box::pin(async move { Ok(Box::new(Network::connect(self, addr).await?) as BoxStream) })
    }
}

/// Real TCP on this machine.
///
/// Binds on `127.0.0.1` by default. `bind_map` remaps requested ports (0 = let the OS choose) so
/// several instances, each believing it listens on 7687 and 10000, can share one machine; `route`
/// makes names such as `c-read-0-0.c-read-0.ns.svc.cluster.local:10000` reach a real address.
/// Clones share the route table, so a test can add routes after learning the bound ports.
#[derive(Debug, Clone)]
pub struct TokioNet {
    inner: Arc<TokioNetInner>,
}

#[derive(Debug)]
struct TokioNetInner {
    bind_ip: IpAddr,
    ephemeral: bool,
    ports: BTreeMap<u16, u16>,
    routes: Mutex<BTreeMap<String, SocketAddr>>,
}

impl Default for TokioNet {
    fn default() -> Self {
        TokioNet::new()
    }
}

impl TokioNet {
    /// Binds requested ports as they are, on 127.0.0.1.
    pub fn new() -> Self {
        TokioNet {
            inner: Arc::new(TokioNetInner {
                bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                ephemeral: false,
                ports: BTreeMap::new(),
                routes: Mutex::default(),
            }),
        }
    }

    /// Every bind gets an OS-chosen port; read the real one from the listener / server handle.
    pub fn ephemeral() -> Self {
        let mut n = TokioNet::new();
        if let Some(inner) = Arc::get_mut(&mut n.inner) {
            inner.ephemeral = true;
        }
        n
    }

    fn edit(self, f: impl FnOnce(&mut TokioNetInner)) -> Self {
        let routes = self.inner.routes.lock().map(|r| r.clone()).unwrap_or_default();
        let mut inner = TokioNetInner {
            bind_ip: self.inner.bind_ip,
            ephemeral: self.inner.ephemeral,
            ports: self.inner.ports.clone(),
            routes: Mutex::new(routes),
        };
        f(&mut inner);
        TokioNet { inner: Arc::new(inner) }
    }

    /// Binds on `ip` instead of 127.0.0.1 (e.g. 0.0.0.0 for the binary).
    pub fn bind_ip(self, ip: IpAddr) -> Self {
        self.edit(|i| i.bind_ip = ip)
    }

    /// Binds requested port `from` on port `to` (0 = OS-chosen).
    pub fn bind_map(self, from: u16, to: u16) -> Self {
        self.edit(|i| {
            i.ports.insert(from, to);
        })
    }

    /// Routes `name` (`"host:port"`, or `"host"` for every port) to `addr`. For a bare host only
    /// the IP of `addr` is used and the requested port is kept.
    pub fn route(&self, name: impl Into<String>, addr: SocketAddr) {
        if let Ok(mut r) = self.inner.routes.lock() {
            r.insert(name.into(), addr);
        }
    }

    /// Builder form of [`TokioNet::route`].
    pub fn with_route(self, name: impl Into<String>, addr: SocketAddr) -> Self {
        self.route(name, addr);
        self
    }

    fn resolve(&self, addr: &str) -> Option<SocketAddr> {
        let routes = self.inner.routes.lock().ok()?;
        if let Some(a) = routes.get(addr) {
            return Some(*a);
        }
        let (host, port) = addr.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        routes.get(host).map(|a| SocketAddr::new(a.ip(), port))
    }
}

/// A tokio listener plus its bound port.
#[derive(Debug)]
pub struct TokioListener {
    inner: tokio::net::TcpListener,
    port: u16,
}

impl Listener for TokioListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, String)> {
        let (s, peer) = self.inner.accept().await?;
        // Bolt and replication are request/response: small writes must not wait for Nagle.
        let _ = s.set_nodelay(true);
        Ok((s, peer.to_string()))
    }

    fn local_port(&self) -> u16 {
        self.port
    }
}

impl Network for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = TokioListener;

    async fn bind(&self, port: u16) -> io::Result<TokioListener> {
        let real = if self.inner.ephemeral { 0 } else { self.inner.ports.get(&port).copied().unwrap_or(port) };
        let inner = tokio::net::TcpListener::bind(SocketAddr::new(self.inner.bind_ip, real)).await?;
        let port = inner.local_addr()?.port();
        Ok(TokioListener { inner, port })
    }

    async fn connect(&self, addr: &str) -> io::Result<tokio::net::TcpStream> {
        let s = match self.resolve(addr) {
            Some(a) => tokio::net::TcpStream::connect(a).await?,
            None => tokio::net::TcpStream::connect(addr).await?,
        };
        let _ = s.set_nodelay(true);
        Ok(s)
    }
}

/// turmoil's simulated TCP: binds `0.0.0.0:port` in the current host, connects by host name.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilNet;

/// A turmoil listener.
pub struct TurmoilListener {
    inner: turmoil::net::TcpListener,
    port: u16,
}

impl Listener for TurmoilListener {
    type Stream = turmoil::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, String)> {
        let (s, peer) = self.inner.accept().await?;
        Ok((s, peer.to_string()))
    }

    fn local_port(&self) -> u16 {
        self.port
    }
}

impl Network for TurmoilNet {
    type Stream = turmoil::net::TcpStream;
    type Listener = TurmoilListener;

    async fn bind(&self, port: u16) -> io::Result<TurmoilListener> {
        let inner = turmoil::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).await?;
        let port = inner.local_addr()?.port();
        Ok(TurmoilListener { inner, port })
    }

    async fn connect(&self, addr: &str) -> io::Result<turmoil::net::TcpStream> {
        turmoil::net::TcpStream::connect(addr.to_string()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn tokio_net_maps_ports_and_routes_names() {
        let net = TokioNet::ephemeral();
        let mut l = Network::bind(&net, 10000).await.unwrap();
        let port = Listener::local_port(&l);
        assert_ne!(port, 10000);
        net.route("replica.example:10000", SocketAddr::from(([127, 0, 0, 1], port)));
        let accept = tokio::spawn(async move {
            let (mut s, _) = Listener::accept(&mut l).await.unwrap();
            s.write_all(b"hi").await.unwrap();
        });
        let mut c = Network::connect(&net, "replica.example:10000").await.unwrap();
        let mut buf = [0u8; 2];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        accept.await.unwrap();
        assert!(Network::connect(&net, "unrouted.invalid:1").await.is_err());
    }

    #[tokio::test]
    async fn host_only_routes_keep_the_port() {
        let net = TokioNet::ephemeral().with_route("db", SocketAddr::from(([127, 0, 0, 1], 1)));
        assert_eq!(net.resolve("db:4242"), Some(SocketAddr::from(([127, 0, 0, 1], 4242))));
        assert_eq!(net.resolve("other:4242"), None);
    }
}
