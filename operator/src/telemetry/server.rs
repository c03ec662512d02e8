//! The `/metrics` endpoint: `GET /metrics` answers [`Metrics::encode`] in the Prometheus text
//! format 0.0.4. Hand-written like the health endpoint, to keep the dependency set small: a
//! scrape is one short request on a connection that is closed after the answer.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::metrics::{CONTENT_TYPE, Metrics};

/// Longest request head read; a scrape's is a few hundred bytes.
const MAX_HEAD: usize = 8192;
/// Time a client gets to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Status, content type and body of the answer to a request line such as
/// `GET /metrics HTTP/1.1`.
pub fn respond(request_line: &str, metrics: &Metrics) -> (u16, &'static str, String) {
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // Prometheus may add query parameters; they select nothing here.
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => (200, CONTENT_TYPE, metrics.encode()),
        ("GET", _) => (404, "text/plain", "not found; metrics are at /metrics\n".to_owned()),
        _ => (405, "text/plain", "method not allowed\n".to_owned()),
    }
}

/// Serve `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let Some(head) = read_head(&mut stream).await else { return };
            let (code, content_type, body) = respond(head.lines().next().unwrap_or(""), &metrics);
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                _ => "Method Not Allowed",
            };
            let response = format!(
                "HTTP/1.1 {code} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// The request head (up to the blank line), or `None` when the client sends none in time.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = async {
        // Read up to the end of the head: answering before it is all read would reset the
        // connection on some clients when the unread rest arrives.
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(())
    };
    tokio::time::timeout(READ_TIMEOUT, read).await.ok()??;
    (!head.is_empty()).then(|| String::from_utf8_lossy(&head).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let metrics = Metrics::new();
        let (code, content_type, body) = respond("GET /metrics HTTP/1.1", &metrics);
        assert_eq!((code, content_type), (200, "text/plain; version=0.0.4; charset=utf-8"));
        assert!(body.contains("# TYPE memgraph_reconcile_in_flight gauge"), "{body}");
        assert_eq!(respond("GET /metrics?x=1 HTTP/1.1", &metrics).0, 200);
        assert_eq!(respond("GET / HTTP/1.1", &metrics).0, 404);
        assert_eq!(respond("POST /metrics HTTP/1.1", &metrics).0, 405);
        assert_eq!(respond("", &metrics).0, 405);
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Arc::new(Metrics::new());
        metrics.reconcile_done("ns", "c", Duration::from_millis(3), Ok(()));
        let server = tokio::spawn(serve(listener, metrics));
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\naccept: text/plain\r\n\r\n").await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains(r#"memgraph_reconcile_total{namespace="ns",cluster="c",result="success"} 1"#), "{out}");
        server.abort();
    }
}
