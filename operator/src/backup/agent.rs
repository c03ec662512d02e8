//! The backup agent: a sidecar of the write pod (`memgraph-operator agent`) that shares the
//! data volume and uploads snapshot files when the operator asks.
//!
//! Protocol: HTTP/1.1, one request per connection, on [`AGENT_PORT`].
//! - `PUT /v1/backups/<id>` with a [`BackupRequest`] starts a backup (repeating it is
//!   harmless: a known id just answers its state);
//! - `GET /v1/backups/<id>` answers its [`JobState`], 404 when unknown;
//! - `GET /healthz` answers 200 (unauthenticated, for probes).
//!
//! Every other request carries `Authorization: MGO-HMAC <hex>`, the HMAC-SHA256 of
//! `METHOD\nPATH\nBODY` under the key in the cluster's agent Secret, which only the operator and
//! the agent can read. The key never crosses the network; a replayed request can only repeat a
//! backup request, which is idempotent.
//!
//! Restarts: the agent writes each request to the volume's state directory before it answers,
//! and its result when done, so an agent that restarts mid-upload starts the upload again
//! (the aborted one's parts are removed by retention) and still answers for it; an operator
//! that restarts asks again by the id recorded in the cluster's status.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ring::hmac;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::manifest::Manifest;
use super::store::ObjectStore;
use super::upload::{self, BackupRequest};
use super::volume::Volume;
use crate::clock::Clock;

/// The agent's port.
pub const AGENT_PORT: u16 = 9102;
/// Job records kept on the volume.
const KEEP_RECORDS: usize = 20;
const JOB_PREFIX: &str = "backup-";
const MAX_HEAD: usize = 8 * 1024;
const MAX_BODY: usize = 256 * 1024;

/// Where a backup stands, as the agent knows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum JobState {
    /// Uploading.
    Running,
    /// Uploaded, manifest written.
    Completed {
        /// The manifest written.
        manifest: Box<Manifest>,
    },
    /// Failed; nothing that looks like a backup was left.
    Failed {
        /// Why, in words.
        error: String,
    },
}

#[derive(Serialize, Deserialize, Clone, Debug)]
struct JobRecord {
    request: BackupRequest,
    state: JobState,
}

/// Failures talking to the agent.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AgentError {
    /// The agent could not be reached.
    #[error("backup agent at {host} unreachable: {message}")]
    Unreachable {
        /// Pod address.
        host: String,
        /// What the network said.
        message: String,
    },
    /// The agent answered with an error.
    #[error("backup agent answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// The answer made no sense.
    #[error("backup agent sent a malformed answer: {0}")]
    Protocol(String),
}

/// The MAC of a request.
pub fn sign(key: &[u8], method: &str, path: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(method.as_bytes());
    ctx.update(b"\n");
    ctx.update(path.as_bytes());
    ctx.update(b"\n");
    ctx.update(body);
    upload::hex(ctx.sign().as_ref())
}

fn verify(key: &[u8], method: &str, path: &str, body: &[u8], tag_hex: &str) -> bool {
    let Some(tag) = unhex(tag_hex) else { return false };
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut msg = Vec::with_capacity(method.len() + path.len() + body.len() + 2);
    msg.extend_from_slice(method.as_bytes());
    msg.push(b'\n');
    msg.extend_from_slice(path.as_bytes());
    msg.push(b'\n');
    msg.extend_from_slice(body);
    hmac::verify(&key, &msg, &tag).is_ok()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// The agent of one pod.
pub struct Agent {
    store: Arc<dyn ObjectStore>,
    volume: Arc<dyn Volume>,
    clock: Arc<dyn Clock>,
    key: Vec<u8>,
    part_size: usize,
    jobs: Mutex<BTreeMap<String, JobState>>,
}

impl Agent {
    /// An agent uploading to `store` from `volume`, accepting requests signed with `key`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        volume: Arc<dyn Volume>,
        clock: Arc<dyn Clock>,
        key: Vec<u8>,
        part_size: usize,
    ) -> Arc<Self> {
        Arc::new(Self { store, volume, clock, key, part_size, jobs: Mutex::new(BTreeMap::new()) })
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, JobState>> {
        self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Load the job records of the volume; start again the uploads a restart cut off.
    pub async fn resume(self: &Arc<Self>) -> std::io::Result<()> {
        for name in self.volume.list_state(JOB_PREFIX).await? {
            let Some(data) = self.volume.read_state(&name).await? else { continue };
            let Ok(record) = serde_json::from_slice::<JobRecord>(&data) else {
                tracing::warn!(file = %name, "ignoring an unreadable backup job record");
                continue;
            };
            let id = record.request.id.clone();
            self.jobs().insert(id.clone(), record.state.clone());
            if record.state == JobState::Running {
                tracing::info!(backup = %id, "resuming a backup cut off by a restart");
                self.spawn(record.request);
            }
        }
        Ok(())
    }

    /// The state of a backup, if the agent knows it.
    pub fn state(&self, id: &str) -> Option<JobState> {
        self.jobs().get(id).cloned()
    }

    /// Start a backup (recorded on the volume first), or answer the state of a known one.
    pub async fn start(self: &Arc<Self>, request: BackupRequest) -> std::io::Result<JobState> {
        if let Some(state) = self.state(&request.id) {
            return Ok(state);
        }
        let record = JobRecord { request: request.clone(), state: JobState::Running };
        self.volume.write_state(&record_name(&request.id), &serde_json::to_vec(&record)?).await?;
        self.jobs().insert(request.id.clone(), JobState::Running);
        self.spawn(request);
        Ok(JobState::Running)
    }

    fn spawn(self: &Arc<Self>, request: BackupRequest) {
        let agent = self.clone();
        tokio::spawn(async move { agent.run(request).await });
    }

    async fn run(self: Arc<Self>, request: BackupRequest) {
        let result =
            upload::upload(self.store.as_ref(), self.volume.as_ref(), self.clock.as_ref(), &request, self.part_size)
                .await;
        let state = match result {
            Ok(manifest) => {
                tracing::info!(backup = %request.id, snapshot = %manifest.snapshot.name, bytes = manifest.snapshot.size_bytes, "backup uploaded");
                JobState::Completed { manifest: Box::new(manifest) }
            }
            Err(e) => {
                tracing::warn!(backup = %request.id, error = %e, "backup failed");
                JobState::Failed { error: e.to_string() }
            }
        };
        self.jobs().insert(request.id.clone(), state.clone());
        let record = JobRecord { request: request.clone(), state };
        match serde_json::to_vec(&record) {
            Ok(data) => {
                if let Err(e) = self.volume.write_state(&record_name(&request.id), &data).await {
                    tracing::warn!(backup = %request.id, error = %e, "could not record the backup's result");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not encode a backup record"),
        }
        self.prune().await;
    }

    async fn prune(&self) {
        let Ok(mut names) = self.volume.list_state(JOB_PREFIX).await else { return };
        names.sort();
        while names.len() > KEEP_RECORDS {
            let name = names.remove(0);
            let id = name.trim_start_matches(JOB_PREFIX).trim_end_matches(".json").to_owned();
            if self.state(&id) == Some(JobState::Running) {
                continue;
            }
            self.jobs().remove(&id);
            let _ = self.volume.remove_state(&name).await;
        }
    }

    /// Answer one HTTP request on `stream`.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(self: &Arc<Self>, mut stream: S) {
        let (status, body) = match read_request(&mut stream).await {
            Ok(request) => self.handle(request).await,
            Err(message) => (400, error_body(&message)),
        };
        let _ = write_response(&mut stream, status, &body).await;
    }

    async fn handle(self: &Arc<Self>, request: HttpRequest) -> (u16, Vec<u8>) {
        if request.method == "GET" && request.path == "/healthz" {
            return (200, b"{}".to_vec());
        }
        let authorized = request
            .authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("MGO-HMAC "))
            .is_some_and(|tag| verify(&self.key, &request.method, &request.path, &request.body, tag.trim()));
        if !authorized {
            return (401, error_body("missing or wrong request signature"));
        }
        let Some(id) = request.path.strip_prefix("/v1/backups/").filter(|id| valid_id(id)) else {
            return (404, error_body("no such resource"));
        };
        match request.method.as_str() {
            "GET" => match self.state(id) {
                Some(state) => (200, serde_json::to_vec(&state).unwrap_or_default()),
                None => (404, error_body("unknown backup")),
            },
            "PUT" => {
                let parsed: BackupRequest = match serde_json::from_slice(&request.body) {
                    Ok(r) => r,
                    Err(e) => return (400, error_body(&format!("bad backup request: {e}"))),
                };
                if parsed.id != id {
                    return (400, error_body("the body's id differs from the path's"));
                }
                match self.start(parsed).await {
                    Ok(state) => (200, serde_json::to_vec(&state).unwrap_or_default()),
                    Err(e) => (500, error_body(&format!("could not record the backup on the volume: {e}"))),
                }
            }
            _ => (405, error_body("method not allowed")),
        }
    }
}

fn record_name(id: &str) -> String {
    format!("{JOB_PREFIX}{id}.json")
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn error_body(message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default()
}

struct HttpRequest {
    method: String,
    path: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

/// Read the head (up to the blank line) and the body of `Content-Length`.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(String, Vec<u8>), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec()).map_err(|_| "head is not UTF-8".to_owned())?;
            return Ok((head, buf[end + 4..].to_vec()));
        }
        if buf.len() > MAX_HEAD {
            return Err("head too long".to_owned());
        }
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the end of the head".to_owned());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn read_body<S: AsyncRead + Unpin>(stream: &mut S, head: &str, mut body: Vec<u8>) -> Result<Vec<u8>, String> {
    let length: usize =
        header(head, "content-length").map_or(Ok(0), |v| v.parse().map_err(|_| "bad Content-Length"))?;
    if length > MAX_BODY {
        return Err("body too large".to_owned());
    }
    let mut chunk = [0u8; 4096];
    while body.len() < length {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the end of the body".to_owned());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(body)
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<HttpRequest, String> {
    let (head, rest) = read_head(stream).await?;
    let mut first = head.lines().next().unwrap_or_default().split(' ');
    let (Some(method), Some(path)) = (first.next(), first.next()) else { return Err("bad request line".to_owned()) };
    let (method, path) = (method.to_owned(), path.to_owned());
    let authorization = header(&head, "authorization").map(str::to_owned);
    let body = read_body(stream, &head, rest).await?;
    Ok(HttpRequest { method, path, authorization, body })
}

async fn write_response<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, body: &[u8]) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    stream.shutdown().await
}

/// Send one signed request on `stream` and read the answer: (status, body).
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin + Send>(
    mut stream: S,
    key: &[u8],
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let tag = sign(key, method, path, body);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: agent\r\nAuthorization: MGO-HMAC {tag}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
    stream.write_all(body).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let (head, rest) = read_head(&mut stream).await?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("bad status line")?;
    let body = read_body(&mut stream, &head, rest).await?;
    Ok((status, body))
}

/// How the operator reaches agents: a transport for [`exchange`].
#[async_trait]
pub trait AgentApi: Send + Sync {
    /// One signed request to the agent of the pod at `host` (its DNS name).
    async fn call(
        &self,
        host: &str,
        key: &[u8],
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), AgentError>;
}

/// Ask the agent at `host` to take a backup (or for the state of the one of that id).
pub async fn start_backup(
    api: &dyn AgentApi,
    host: &str,
    key: &[u8],
    request: &BackupRequest,
) -> Result<JobState, AgentError> {
    let body = serde_json::to_vec(request).map_err(|e| AgentError::Protocol(e.to_string()))?;
    let (status, answer) = api.call(host, key, "PUT", &format!("/v1/backups/{}", request.id), &body).await?;
    parse_state(status, &answer)?.ok_or_else(|| AgentError::Status { status, message: "unknown backup".to_owned() })
}

/// The state of backup `id` at the agent of `host`; `None` when it does not know it.
pub async fn backup_state(
    api: &dyn AgentApi,
    host: &str,
    key: &[u8],
    id: &str,
) -> Result<Option<JobState>, AgentError> {
    let (status, answer) = api.call(host, key, "GET", &format!("/v1/backups/{id}"), b"").await?;
    parse_state(status, &answer)
}

fn parse_state(status: u16, body: &[u8]) -> Result<Option<JobState>, AgentError> {
    match status {
        200 => serde_json::from_slice(body).map(Some).map_err(|e| AgentError::Protocol(e.to_string())),
        404 => Ok(None),
        _ => {
            let message = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            Err(AgentError::Status { status, message })
        }
    }
}

/// One signed exchange over the stream `connect` opens, within `timeout`; any failure to get
/// an answer is `Unreachable`. The transports (real TCP, the simulation's) differ only in
/// `connect`.
pub async fn call_over<S, F>(
    host: &str,
    timeout: std::time::Duration,
    connect: F,
    key: &[u8],
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), AgentError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    F: std::future::Future<Output = std::io::Result<S>>,
{
    let unreachable = |message: String| AgentError::Unreachable { host: host.to_owned(), message };
    let work = async {
        let stream = connect.await.map_err(|e| unreachable(e.to_string()))?;
        exchange(stream, key, method, path, body).await.map_err(unreachable)
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| unreachable("timed out".to_owned()))?
}

/// The production transport: plain TCP to the pod's agent port, with a timeout.
#[derive(Debug, Clone)]
pub struct TcpAgentApi {
    /// Limit on one exchange.
    pub timeout: std::time::Duration,
}

#[async_trait]
impl AgentApi for TcpAgentApi {
    async fn call(
        &self,
        host: &str,
        key: &[u8],
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), AgentError> {
        let connect = tokio::net::TcpStream::connect((host, AGENT_PORT));
        call_over(host, self.timeout, connect, key, method, path, body).await
    }
}

/// Serve agent requests on `listener` until the process stops (one task per connection).
pub async fn serve_tcp(agent: Arc<Agent>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let agent = agent.clone();
        tokio::spawn(async move {
            // A client that stops sending does not hold a task forever.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(60), agent.serve(stream)).await;
        });
    }
}
