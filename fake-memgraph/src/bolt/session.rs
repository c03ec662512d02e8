//! One Bolt connection on the server: handshake, then the request/response state machine.
//!
//! Malformed input (bad handshake, bad chunk, bad PackStream, unknown message) closes only this
//! connection, with the reason logged.
//!
//! While the process is hung ([`Instance::thawed`]) nothing is read, handled or answered: the
//! connection was accepted (by the kernel, in a real process), the client's bytes wait, and the
//! session carries on where it stopped once the process resumes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::chunk::{self, frame_into};
use super::handshake::{MAGIC, answer, negotiate};
use super::message::{BoltVersion, Request, Response};
use crate::cypher::Statement;
use crate::engine::{Instance, Prepared};
use crate::net::BoxStream;
use crate::query::exec::TxState;
use crate::query::messages;
use crate::query::{ErrorClass, QueryError, QueryOutput};
use crate::value::Value;

/// How long a client may take to send its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one client connection until it closes.
pub(crate) async fn serve(inst: Arc<Instance>, mut stream: BoxStream, peer: String) {
    // Before the handshake timeout starts: a frozen process does not time anyone out.
    inst.thawed().await;
    let version = match handshake(&inst, &mut stream).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            tracing::info!(%peer, "no common Bolt version; closing");
            return;
        }
        Err(why) => {
            tracing::warn!(%peer, %why, "closing connection during handshake");
            return;
        }
    };
    tracing::debug!(%peer, %version, "bolt session started");
    let mut session = Session::new(inst, version);
    loop {
        let msg = match chunk::read_message(&mut stream).await {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad framing");
                return;
            }
        };
        let req = match Request::decode(&msg) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: malformed message");
                return;
            }
        };
        tracing::trace!(%peer, ?req, "request");
        session.inst.thawed().await;
        let (responses, close) = session.handle(req).await;
        tracing::trace!(%peer, ?responses, "responses");
        // Freezing while the request ran (e.g. a commit waiting on a replica) holds the answer.
        session.inst.thawed().await;
        let mut out = Vec::new();
        for r in &responses {
            frame_into(&r.encode(version), &mut out);
        }
        if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
            return;
        }
        if close {
            return;
        }
    }
}

async fn handshake(inst: &Instance, stream: &mut BoxStream) -> Result<Option<BoltVersion>, String> {
    let mut buf = [0u8; 20];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.read_exact(&mut buf)).await {
        Err(_) => return Err("handshake timed out".into()),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(_)) => {}
    }
    inst.thawed().await;
    if buf[..4] != MAGIC {
        return Err(format!("bad magic {:02X?}", &buf[..4]));
    }
    let mut proposals = [[0u8; 4]; 4];
    for (i, p) in proposals.iter_mut().enumerate() {
        p.copy_from_slice(&buf[4 + 4 * i..8 + 4 * i]);
    }
    let v = negotiate(&proposals, &inst.version.bolt_versions());
    stream.write_all(&answer(v)).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    Ok(v)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for HELLO.
    Connected,
    /// Bolt 5.1+: HELLO done, waiting for LOGON.
    Authentication,
    Ready,
    /// After a FAILURE: everything is IGNORED until RESET (or ACK_FAILURE in Bolt 1).
    Failed,
}

struct Pending {
    prepared: Prepared,
    params: BTreeMap<String, Value>,
    rows: Option<VecDeque<Vec<Value>>>,
    summary: BTreeMap<String, Value>,
}

struct Session {
    inst: Arc<Instance>,
    version: BoltVersion,
    state: State,
    tx: Option<TxState>,
    pending: Option<Pending>,
    next_qid: i64,
}

type Reply = (Vec<Response>, bool);

fn one(r: Response) -> Reply {
    (vec![r], false)
}

fn success(m: BTreeMap<String, Value>) -> Reply {
    one(Response::Success(m))
}

impl Session {
    fn new(inst: Arc<Instance>, version: BoltVersion) -> Self {
        Session { inst, version, state: State::Connected, tx: None, pending: None, next_qid: 0 }
    }

    fn fail(&mut self, e: QueryError) -> Reply {
        tracing::debug!(code = e.code(), message = %e.message, "query failed");
        self.state = State::Failed;
        self.pending = None;
        let close = e.class == ErrorClass::Unauthenticated;
        (vec![Response::Failure { code: e.code().to_string(), message: e.message }], close)
    }

    fn protocol_violation(&mut self, what: &str) -> Reply {
        tracing::warn!(%what, "closing connection: protocol violation");
        let mut r = self.fail(QueryError::client(format!("Unexpected message {what}.")));
        r.1 = true;
        r
    }

    fn reset(&mut self) {
        self.pending = None;
        self.tx = None;
        self.state = State::Ready;
    }

    fn hello_metadata(&self) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("server".to_string(), Value::from(self.inst.cfg.server_name.as_str())),
            ("connection_id".to_string(), Value::from("bolt-1")),
        ])
    }

    fn authenticate(&mut self, auth: &BTreeMap<String, Value>) -> Reply {
        let ok = match &self.inst.cfg.auth {
            // No users: any credentials (or none) are accepted.
            None => true,
            Some((user, password)) => {
                let get = |k: &str| auth.get(k).and_then(Value::as_str);
                get("scheme") == Some("basic")
                    && get("principal") == Some(user.as_str())
                    && get("credentials") == Some(password.as_str())
            }
        };
        if ok {
            self.state = State::Ready;
            success(self.hello_metadata())
        } else {
            self.fail(QueryError { class: ErrorClass::Unauthenticated, message: messages::AUTH_FAILURE.into() })
        }
    }

    async fn handle(&mut self, req: Request) -> Reply {
        if req == Request::Goodbye {
            return (Vec::new(), true);
        }
        match self.state {
            State::Connected => match req {
                Request::Hello { .. } if self.version >= BoltVersion::new(5, 1) => {
                    self.state = State::Authentication;
                    success(self.hello_metadata())
                }
                Request::Hello { extra } => self.authenticate(&extra),
                other => self.protocol_violation(&format!("{other:?} before HELLO")),
            },
            State::Authentication => match req {
                Request::Logon { auth } => self.authenticate(&auth),
                other => self.protocol_violation(&format!("{other:?} before LOGON")),
            },
            State::Failed => match req {
                Request::Reset | Request::AckFailure => {
                    self.reset();
                    success(BTreeMap::new())
                }
                _ => one(Response::Ignored),
            },
            State::Ready => self.handle_ready(req).await,
        }
    }

    async fn handle_ready(&mut self, req: Request) -> Reply {
        match req {
            Request::Reset | Request::AckFailure => {
                self.reset();
                success(BTreeMap::new())
            }
            Request::Logoff => {
                self.reset();
                self.state = State::Authentication;
                success(BTreeMap::new())
            }
            Request::Run { query, params, .. } => self.run(&query, params).await,
            Request::Pull { n, .. } => self.pull(n, false).await,
            Request::Discard { .. } => self.pull(-1, true).await,
            Request::Begin { .. } => {
                if self.tx.is_some() {
                    return self.fail(QueryError::client(messages::NESTED_TX));
                }
                self.pending = None;
                self.tx = Some(TxState::default());
                success(BTreeMap::new())
            }
            Request::Commit => match self.tx.take() {
                None => self.fail(QueryError::client("No current transaction to commit.")),
                Some(tx) => {
                    self.pending = None;
                    match self.inst.commit_tx(tx).await {
                        Ok(()) => success(BTreeMap::new()),
                        Err(e) => self.fail(e),
                    }
                }
            },
            Request::Rollback => match self.tx.take() {
                None => self.fail(QueryError::client("No current transaction to rollback.")),
                Some(_) => {
                    self.pending = None;
                    success(BTreeMap::new())
                }
            },
            Request::Route => self.fail(QueryError::client("Route message is not supported in Memgraph!")),
            other @ (Request::Hello { .. } | Request::Logon { .. }) => {
                self.protocol_violation(&format!("{other:?} after authentication"))
            }
            Request::Goodbye => (Vec::new(), true),
        }
    }

    async fn run(&mut self, query: &str, params: BTreeMap<String, Value>) -> Reply {
        // A new auto-commit RUN replaces a result that was never pulled.
        self.pending = None;
        let prepared = match self.inst.prepare(query, &params, self.tx.is_some()) {
            Ok(p) => p,
            Err(e) => return self.fail(e),
        };
        match prepared.stmt {
            Statement::Begin => {
                if self.tx.is_some() {
                    return self.fail(QueryError::client(messages::NESTED_TX));
                }
                self.tx = Some(TxState::default());
            }
            Statement::Commit => match self.tx.take() {
                None => return self.fail(QueryError::client("No current transaction to commit.")),
                Some(tx) => {
                    if let Err(e) = self.inst.commit_tx(tx).await {
                        return self.fail(e);
                    }
                }
            },
            Statement::Rollback if self.tx.take().is_none() => {
                return self.fail(QueryError::client("No current transaction to rollback."));
            }
            _ => {}
        }
        let mut meta = BTreeMap::from([
            ("fields".to_string(), Value::List(prepared.fields.iter().map(|f| Value::from(f.as_str())).collect())),
            ("t_first".to_string(), Value::Int(0)),
        ]);
        if self.tx.is_some() && self.version.major >= 4 {
            meta.insert("qid".into(), Value::Int(self.next_qid));
            self.next_qid += 1;
        }
        self.pending = Some(Pending { prepared, params, rows: None, summary: BTreeMap::new() });
        success(meta)
    }

    async fn pull(&mut self, n: i64, discard: bool) -> Reply {
        let Some(mut p) = self.pending.take() else {
            return self.fail(QueryError::client("There is no result to pull or discard."));
        };
        if p.rows.is_none() {
            match self.inst.execute(&p.prepared, &p.params, self.tx.as_mut()).await {
                Ok(out) => {
                    p.summary = summary(&out, p.prepared.kind);
                    p.rows = Some(out.rows.into());
                }
                Err(e) => return self.fail(e),
            }
        }
        let mut rows = p.rows.take().unwrap_or_default();
        if discard {
            rows.clear();
        }
        let take = if n < 0 { rows.len() } else { (n as usize).min(rows.len()) };
        let mut out: Vec<Response> = rows.drain(..take).map(Response::Record).collect();
        if rows.is_empty() {
            out.push(Response::Success(std::mem::take(&mut p.summary)));
        } else {
            out.push(Response::Success(BTreeMap::from([("has_more".to_string(), Value::Bool(true))])));
            p.rows = Some(rows);
            self.pending = Some(p);
        }
        (out, false)
    }
}

fn summary(out: &QueryOutput, kind: &str) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::from([
        ("has_more".to_string(), Value::Bool(false)),
        ("type".to_string(), Value::from(kind)),
        ("t_last".to_string(), Value::Int(0)),
    ]);
    if !out.notifications.is_empty() {
        m.insert("notifications".into(), Value::List(out.notifications.iter().map(|n| n.to_value()).collect()));
    }
    if !out.stats.is_empty() {
        m.insert("stats".into(), Value::Map(out.stats.iter().map(|(k, v)| (k.clone(), Value::Int(*v))).collect()));
    }
    m
}
