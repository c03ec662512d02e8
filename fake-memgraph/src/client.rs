//! A small Bolt client, generic over the stream, for the simulation (neo4rs cannot use turmoil).
//!
//! It speaks Bolt 4.x (proposing 4.4 down to 4.0), puts credentials in HELLO, runs every query as
//! RUN + PULL{n: -1}, and sends RESET after a FAILURE so the connection stays usable.

use std::collections::BTreeMap;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::bolt::chunk::{self, frame_into};
use crate::bolt::handshake::{MAGIC, proposal};
use crate::bolt::message::{BoltVersion, Request, Response};
use crate::value::Value;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered FAILURE.
    #[error("{code}: {message}")]
    Server {
        /// e.g. `Memgraph.ClientError.MemgraphError.MemgraphError`.
        code: String,
        /// Server message.
        message: String,
    },
    /// Socket failure or closed connection.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The server message, if this is a server error.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            ClientError::Server { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The server code, if this is a server error.
    pub fn server_code(&self) -> Option<&str> {
        match self {
            ClientError::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A query's complete result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    /// Column names.
    pub fields: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<Value>>,
    /// The final SUCCESS metadata (`type`, `notifications`, `stats`, ...).
    pub summary: BTreeMap<String, Value>,
}

impl QueryResult {
    /// The single value of a one-row, one-column result.
    pub fn single(&self) -> Option<&Value> {
        match self.rows.as_slice() {
            [row] => row.first(),
            _ => None,
        }
    }

    /// Notification codes in the summary, in order.
    pub fn notification_codes(&self) -> Vec<String> {
        self.summary
            .get("notifications")
            .and_then(Value::as_list)
            .unwrap_or_default()
            .iter()
            .filter_map(|n| n.as_map()?.get("code")?.as_str().map(str::to_owned))
            .collect()
    }
}

/// A Bolt client connection.
pub struct Client<S> {
    stream: S,
    version: BoltVersion,
    server: BTreeMap<String, Value>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Handshakes and sends HELLO (with basic auth when `user` is given).
    pub async fn connect(mut stream: S, user: Option<(&str, &str)>) -> Result<Self, ClientError> {
        let mut hs = MAGIC.to_vec();
        for p in [proposal(4, 4, 1), proposal(4, 1, 1), proposal(0, 0, 0), proposal(0, 0, 0)] {
            hs.extend_from_slice(&p);
        }
        stream.write_all(&hs).await?;
        stream.flush().await?;
        let mut ans = [0u8; 4];
        stream.read_exact(&mut ans).await?;
        if ans == [0; 4] {
            return Err(ClientError::Protocol("server supports none of the proposed versions".into()));
        }
        let version = BoltVersion::new(ans[3], ans[2]);
        let mut extra = BTreeMap::from([("user_agent".to_string(), Value::from("fake-memgraph-client/1"))]);
        match user {
            Some((u, p)) => {
                extra.insert("scheme".into(), Value::from("basic"));
                extra.insert("principal".into(), Value::from(u));
                extra.insert("credentials".into(), Value::from(p));
            }
            None => {
                extra.insert("scheme".into(), Value::from("none"));
            }
        }
        let mut c = Client { stream, version, server: BTreeMap::new() };
        c.send(&[Request::Hello { extra }]).await?;
        match c.recv().await? {
            Response::Success(m) => c.server = m,
            Response::Failure { code, message } => return Err(ClientError::Server { code, message }),
            other => return Err(ClientError::Protocol(format!("unexpected reply to HELLO: {other:?}"))),
        }
        Ok(c)
    }

    /// The negotiated Bolt version.
    pub fn bolt_version(&self) -> BoltVersion {
        self.version
    }

    /// HELLO's SUCCESS metadata (`server`, `connection_id`).
    pub fn server_info(&self) -> &BTreeMap<String, Value> {
        &self.server
    }

    async fn send(&mut self, reqs: &[Request]) -> Result<(), ClientError> {
        let mut out = Vec::new();
        for r in reqs {
            frame_into(&r.encode(self.version), &mut out);
        }
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        Ok(())
    }

    async fn recv(&mut self) -> Result<Response, ClientError> {
        let msg = chunk::read_message(&mut self.stream)
            .await
            .map_err(|e| match e {
                chunk::FrameError::Io(io) => ClientError::Io(io),
                other => ClientError::Protocol(other.to_string()),
            })?
            .ok_or_else(|| ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()))?;
        Response::decode(&msg).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// After a FAILURE: drain the replies to pipelined requests, then RESET.
    async fn recover(
        &mut self,
        ignored_expected: usize,
        code: String,
        message: String,
    ) -> Result<ClientError, ClientError> {
        for _ in 0..ignored_expected {
            self.recv().await?;
        }
        self.send(&[Request::Reset]).await?;
        match self.recv().await? {
            Response::Success(_) => Ok(ClientError::Server { code, message }),
            other => Err(ClientError::Protocol(format!("unexpected reply to RESET: {other:?}"))),
        }
    }

    /// Runs `query` (RUN + PULL all) and returns every row and the summary.
    pub async fn run(&mut self, query: &str, params: BTreeMap<String, Value>) -> Result<QueryResult, ClientError> {
        let run = Request::Run { query: query.to_string(), params, extra: BTreeMap::new() };
        self.send(&[run, Request::Pull { n: -1, qid: -1 }]).await?;
        let fields = match self.recv().await? {
            Response::Success(m) => m
                .get("fields")
                .and_then(Value::as_list)
                .unwrap_or_default()
                .iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect(),
            Response::Failure { code, message } => return Err(self.recover(1, code, message).await?),
            other => return Err(ClientError::Protocol(format!("unexpected reply to RUN: {other:?}"))),
        };
        let mut rows = Vec::new();
        loop {
            match self.recv().await? {
                Response::Record(r) => rows.push(r),
                Response::Success(summary) => {
                    return Ok(QueryResult { fields, rows, summary });
                }
                Response::Failure { code, message } => return Err(self.recover(0, code, message).await?),
                Response::Ignored => return Err(ClientError::Protocol("PULL was ignored".into())),
            }
        }
    }

    /// Runs a query without parameters.
    pub async fn query(&mut self, query: &str) -> Result<QueryResult, ClientError> {
        self.run(query, BTreeMap::new()).await
    }

    async fn simple(&mut self, req: Request, what: &str) -> Result<BTreeMap<String, Value>, ClientError> {
        self.send(&[req]).await?;
        match self.recv().await? {
            Response::Success(m) => Ok(m),
            Response::Failure { code, message } => Err(self.recover(0, code, message).await?),
            other => Err(ClientError::Protocol(format!("unexpected reply to {what}: {other:?}"))),
        }
    }

    /// BEGIN an explicit transaction.
    pub async fn begin(&mut self) -> Result<(), ClientError> {
        self.simple(Request::Begin { extra: BTreeMap::new() }, "BEGIN").await.map(drop)
    }

    /// COMMIT the explicit transaction.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        self.simple(Request::Commit, "COMMIT").await.map(drop)
    }

    /// ROLLBACK the explicit transaction.
    pub async fn rollback(&mut self) -> Result<(), ClientError> {
        self.simple(Request::Rollback, "ROLLBACK").await.map(drop)
    }

    /// RESET the connection.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        self.simple(Request::Reset, "RESET").await.map(drop)
    }

    /// Says GOODBYE and closes.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.send(&[Request::Goodbye]).await?;
        self.stream.shutdown().await?;
        Ok(())
    }
}
