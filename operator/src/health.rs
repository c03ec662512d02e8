//! A minimal HTTP endpoint for Kubernetes probes: `/healthz` (the process runs) and `/readyz`
//! (the controller leads or stands by). Hand-written to keep the dependency set small.
//!
//! A standby is Ready: it is ready to take over, and a rolling update whose new pod waited to
//! lead would wait forever for the old pod, which holds the Lease until it is stopped. The body
//! says which (`leading` or `standby`), so `kubectl exec`/`curl` tell the leader apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What `/readyz` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Ready {
    /// Starting, or shutting down: 503.
    #[default]
    No = 0,
    /// Watching nothing yet, ready to take over the Lease: 200 `standby`.
    Standby = 1,
    /// Holding the Lease and reconciling: 200 `leading`.
    Leading = 2,
}

/// Readiness shared with the controller.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicU8>);

impl Readiness {
    /// Set the state.
    pub fn set(&self, ready: Ready) {
        self.0.store(ready as u8, Ordering::SeqCst);
    }

    /// The state.
    pub fn get(&self) -> Ready {
        match self.0.load(Ordering::SeqCst) {
            1 => Ready::Standby,
            2 => Ready::Leading,
            _ => Ready::No,
        }
    }
}

/// The response to a request line such as `GET /readyz HTTP/1.1`.
pub fn respond(request_line: &str, ready: Ready) -> (u16, &'static str) {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path) {
        ("GET", "/healthz") => (200, "ok\n"),
        ("GET", "/readyz") if ready == Ready::Leading => (200, "leading\n"),
        ("GET", "/readyz") if ready == Ready::Standby => (200, "standby\n"),
        ("GET", "/readyz") => (503, "not ready\n"),
        ("GET", _) => (404, "not found\n"),
        _ => (405, "method not allowed\n"),
    }
}

/// Serve probes on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, readiness: Readiness) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let head = String::from_utf8_lossy(&buf[..n]);
            let (code, body) = respond(head.lines().next().unwrap_or(""), readiness.get());
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                405 => "Method Not Allowed",
                _ => "Service Unavailable",
            };
            let response = format!(
                "HTTP/1.1 {code} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(respond("GET /healthz HTTP/1.1", Ready::No).0, 200);
        assert_eq!(respond("GET /readyz HTTP/1.1", Ready::No).0, 503);
        assert_eq!(respond("GET /readyz HTTP/1.1", Ready::Standby), (200, "standby\n"));
        assert_eq!(respond("GET /readyz HTTP/1.1", Ready::Leading), (200, "leading\n"));
        assert_eq!(respond("GET /other HTTP/1.1", Ready::Leading).0, 404);
        assert_eq!(respond("POST /healthz HTTP/1.1", Ready::Leading).0, 405);
        assert_eq!(respond("", Ready::Leading).0, 405);
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let readiness = Readiness::default();
        let server = tokio::spawn(serve(listener, readiness.clone()));
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        };
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        readiness.set(Ready::Standby);
        assert!(get("/readyz").await.ends_with("standby\n"));
        readiness.set(Ready::Leading);
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/healthz").await.ends_with("ok\n"));
        server.abort();
    }
}
