//! Bolt request and response messages and their PackStream form.

use std::collections::BTreeMap;

use crate::packstream::{DecodeError, Decoder, Encoder};
use crate::value::Value;

/// A negotiated Bolt protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BoltVersion {
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
}

impl BoltVersion {
    /// Builds a version.
    pub const fn new(major: u8, minor: u8) -> Self {
        BoltVersion { major, minor }
    }

    /// PackStream encoder for this version (Bolt 5 carries element ids).
    pub fn encoder(self) -> Encoder {
        Encoder { bolt5: self.major >= 5 }
    }
}

impl std::fmt::Display for BoltVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Message signatures.
pub mod sig {
    /// HELLO (INIT in Bolt 1).
    pub const HELLO: u8 = 0x01;
    /// GOODBYE.
    pub const GOODBYE: u8 = 0x02;
    /// ACK_FAILURE (Bolt 1 only).
    pub const ACK_FAILURE: u8 = 0x0E;
    /// RESET.
    pub const RESET: u8 = 0x0F;
    /// RUN.
    pub const RUN: u8 = 0x10;
    /// BEGIN.
    pub const BEGIN: u8 = 0x11;
    /// COMMIT.
    pub const COMMIT: u8 = 0x12;
    /// ROLLBACK.
    pub const ROLLBACK: u8 = 0x13;
    /// DISCARD (DISCARD_ALL in Bolt 1).
    pub const DISCARD: u8 = 0x2F;
    /// PULL (PULL_ALL in Bolt 1).
    pub const PULL: u8 = 0x3F;
    /// ROUTE.
    pub const ROUTE: u8 = 0x66;
    /// LOGON (Bolt 5.1+).
    pub const LOGON: u8 = 0x6A;
    /// LOGOFF (Bolt 5.1+).
    pub const LOGOFF: u8 = 0x6B;
    /// SUCCESS.
    pub const SUCCESS: u8 = 0x70;
    /// RECORD.
    pub const RECORD: u8 = 0x71;
    /// IGNORED.
    pub const IGNORED: u8 = 0x7E;
    /// FAILURE.
    pub const FAILURE: u8 = 0x7F;
}

/// A client request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// HELLO (or Bolt 1 INIT, whose user agent and auth token are merged into `extra`).
    Hello {
        /// Metadata including `user_agent` and, before 5.1, the auth fields.
        extra: BTreeMap<String, Value>,
    },
    /// LOGON with the auth token.
    Logon {
        /// `scheme`, `principal`, `credentials`.
        auth: BTreeMap<String, Value>,
    },
    /// LOGOFF.
    Logoff,
    /// GOODBYE.
    Goodbye,
    /// RESET.
    Reset,
    /// ACK_FAILURE (Bolt 1).
    AckFailure,
    /// RUN.
    Run {
        /// Query text.
        query: String,
        /// Parameters.
        params: BTreeMap<String, Value>,
        /// Extra metadata (`db`, `mode`, bookmarks...), ignored.
        extra: BTreeMap<String, Value>,
    },
    /// PULL / PULL_ALL.
    Pull {
        /// Records wanted; -1 = all.
        n: i64,
        /// Query id; -1 = last.
        qid: i64,
    },
    /// DISCARD / DISCARD_ALL.
    Discard {
        /// Records to discard; -1 = all.
        n: i64,
        /// Query id; -1 = last.
        qid: i64,
    },
    /// BEGIN.
    Begin {
        /// Transaction metadata, ignored.
        extra: BTreeMap<String, Value>,
    },
    /// COMMIT.
    Commit,
    /// ROLLBACK.
    Rollback,
    /// ROUTE (not served: Memgraph Community has no routing table).
    Route,
}

/// Why a message could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Bad PackStream.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A signature this server does not know.
    #[error("unknown message signature 0x{0:02X}")]
    UnknownSignature(u8),
    /// Wrong field count or types for a known message.
    #[error("malformed {0} message")]
    Malformed(&'static str),
}

fn as_map(v: Value, what: &'static str) -> Result<BTreeMap<String, Value>, MessageError> {
    match v {
        Value::Map(m) => Ok(m),
        Value::Null => Ok(BTreeMap::new()),
        _ => Err(MessageError::Malformed(what)),
    }
}

fn n_qid(fields: Vec<Value>) -> Result<(i64, i64), MessageError> {
    let Some(extra) = fields.into_iter().next() else {
        return Ok((-1, -1));
    };
    let m = as_map(extra, "PULL/DISCARD")?;
    let n = m.get("n").and_then(Value::as_int).unwrap_or(-1);
    let qid = m.get("qid").and_then(Value::as_int).unwrap_or(-1);
    Ok((n, qid))
}

impl Request {
    /// Decodes one request message.
    pub fn decode(bytes: &[u8]) -> Result<Request, MessageError> {
        let mut d = Decoder::new(bytes);
        let (n, tag) = d.struct_header()?;
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            fields.push(d.value()?);
        }
        if d.remaining() != 0 {
            return Err(DecodeError::Trailing(d.remaining()).into());
        }
        let mut it = fields.into_iter();
        let req = match tag {
            sig::HELLO => match (it.next(), it.next()) {
                // Bolt 1 INIT: user agent string and auth map.
                (Some(Value::String(agent)), auth) => {
                    let mut extra = auth.map(|a| as_map(a, "INIT")).transpose()?.unwrap_or_default();
                    extra.insert("user_agent".into(), Value::String(agent));
                    Request::Hello { extra }
                }
                (Some(extra), None) => Request::Hello { extra: as_map(extra, "HELLO")? },
                _ => return Err(MessageError::Malformed("HELLO")),
            },
            sig::LOGON => Request::Logon { auth: as_map(it.next().unwrap_or(Value::Null), "LOGON")? },
            sig::LOGOFF => Request::Logoff,
            sig::GOODBYE => Request::Goodbye,
            sig::RESET => Request::Reset,
            sig::ACK_FAILURE => Request::AckFailure,
            sig::RUN => {
                let query = match it.next() {
                    Some(Value::String(q)) => q,
                    _ => return Err(MessageError::Malformed("RUN")),
                };
                let params = as_map(it.next().unwrap_or(Value::Null), "RUN")?;
                let extra = as_map(it.next().unwrap_or(Value::Null), "RUN")?;
                Request::Run { query, params, extra }
            }
            sig::PULL => {
                let (n, qid) = n_qid(it.collect())?;
                Request::Pull { n, qid }
            }
            sig::DISCARD => {
                let (n, qid) = n_qid(it.collect())?;
                Request::Discard { n, qid }
            }
            sig::BEGIN => Request::Begin { extra: as_map(it.next().unwrap_or(Value::Null), "BEGIN")? },
            sig::COMMIT => Request::Commit,
            sig::ROLLBACK => Request::Rollback,
            sig::ROUTE => Request::Route,
            other => return Err(MessageError::UnknownSignature(other)),
        };
        Ok(req)
    }

    /// Encodes the request for `version` (used by the client).
    pub fn encode(&self, version: BoltVersion) -> Vec<u8> {
        let enc = version.encoder();
        let v1 = version.major < 3;
        let mut out = Vec::new();
        let extra_n_qid = |n: i64, qid: i64| {
            let mut m = BTreeMap::from([("n".to_string(), Value::Int(n))]);
            if qid != -1 {
                m.insert("qid".into(), Value::Int(qid));
            }
            Value::Map(m)
        };
        match self {
            Request::Hello { extra } => {
                if v1 {
                    let mut auth = extra.clone();
                    let agent = auth.remove("user_agent").unwrap_or(Value::from("fake-memgraph"));
                    enc.encode_struct(sig::HELLO, &[agent, Value::Map(auth)], &mut out)
                } else {
                    enc.encode_struct(sig::HELLO, &[Value::Map(extra.clone())], &mut out)
                }
            }
            Request::Logon { auth } => enc.encode_struct(sig::LOGON, &[Value::Map(auth.clone())], &mut out),
            Request::Logoff => enc.encode_struct(sig::LOGOFF, &[], &mut out),
            Request::Goodbye => enc.encode_struct(sig::GOODBYE, &[], &mut out),
            Request::Reset => enc.encode_struct(sig::RESET, &[], &mut out),
            Request::AckFailure => enc.encode_struct(sig::ACK_FAILURE, &[], &mut out),
            Request::Run { query, params, extra } => {
                let mut fields = vec![Value::from(query.as_str()), Value::Map(params.clone())];
                if !v1 {
                    fields.push(Value::Map(extra.clone()));
                }
                enc.encode_struct(sig::RUN, &fields, &mut out)
            }
            Request::Pull { n, qid } => {
                let fields = if v1 { vec![] } else { vec![extra_n_qid(*n, *qid)] };
                enc.encode_struct(sig::PULL, &fields, &mut out)
            }
            Request::Discard { n, qid } => {
                let fields = if v1 { vec![] } else { vec![extra_n_qid(*n, *qid)] };
                enc.encode_struct(sig::DISCARD, &fields, &mut out)
            }
            Request::Begin { extra } => enc.encode_struct(sig::BEGIN, &[Value::Map(extra.clone())], &mut out),
            Request::Commit => enc.encode_struct(sig::COMMIT, &[], &mut out),
            Request::Rollback => enc.encode_struct(sig::ROLLBACK, &[], &mut out),
            Request::Route => enc.encode_struct(
                sig::ROUTE,
                &[Value::Map(BTreeMap::new()), Value::List(vec![]), Value::Null],
                &mut out,
            ),
        }
        out
    }
}

/// A server response.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// SUCCESS with metadata.
    Success(BTreeMap<String, Value>),
    /// RECORD with one row.
    Record(Vec<Value>),
    /// IGNORED.
    Ignored,
    /// FAILURE with `code` and `message`.
    Failure {
        /// Error code, e.g. `Memgraph.ClientError.MemgraphError.MemgraphError`.
        code: String,
        /// Error message.
        message: String,
    },
}

impl Response {
    /// Encodes the response for `version`.
    pub fn encode(&self, version: BoltVersion) -> Vec<u8> {
        let enc = version.encoder();
        let mut out = Vec::new();
        match self {
            Response::Success(m) => enc.encode_struct(sig::SUCCESS, &[Value::Map(m.clone())], &mut out),
            Response::Record(row) => enc.encode_struct(sig::RECORD, &[Value::List(row.clone())], &mut out),
            Response::Ignored => enc.encode_struct(sig::IGNORED, &[], &mut out),
            Response::Failure { code, message } => {
                let m = BTreeMap::from([
                    ("code".to_string(), Value::from(code.as_str())),
                    ("message".to_string(), Value::from(message.as_str())),
                ]);
                enc.encode_struct(sig::FAILURE, &[Value::Map(m)], &mut out)
            }
        }
        out
    }

    /// Decodes a response (used by the client).
    pub fn decode(bytes: &[u8]) -> Result<Response, MessageError> {
        let mut d = Decoder::new(bytes);
        let (n, tag) = d.struct_header()?;
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            fields.push(d.value()?);
        }
        let mut it = fields.into_iter();
        Ok(match tag {
            sig::SUCCESS => Response::Success(as_map(it.next().unwrap_or(Value::Null), "SUCCESS")?),
            sig::RECORD => match it.next() {
                Some(Value::List(row)) => Response::Record(row),
                _ => return Err(MessageError::Malformed("RECORD")),
            },
            sig::IGNORED => Response::Ignored,
            sig::FAILURE => {
                let m = as_map(it.next().unwrap_or(Value::Null), "FAILURE")?;
                let get = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                Response::Failure { code: get("code"), message: get("message") }
            }
            other => return Err(MessageError::UnknownSignature(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_in_every_version() {
        let params = BTreeMap::from([("id".to_string(), Value::Int(5))]);
        let reqs = [
            Request::Run { query: "RETURN 1".into(), params: params.clone(), extra: BTreeMap::new() },
            Request::Pull { n: -1, qid: -1 },
            Request::Discard { n: -1, qid: -1 },
            Request::Reset,
            Request::Goodbye,
        ];
        for v in [BoltVersion::new(1, 0), BoltVersion::new(4, 3), BoltVersion::new(5, 2)] {
            for r in &reqs {
                assert_eq!(&Request::decode(&r.encode(v)).unwrap(), r, "version {v}");
            }
        }
        let pull = Request::Pull { n: 10, qid: 3 };
        assert_eq!(Request::decode(&pull.encode(BoltVersion::new(4, 4))).unwrap(), pull);
    }

    #[test]
    fn bolt1_init_merges_agent_and_auth() {
        let hello = Request::Hello {
            extra: BTreeMap::from([
                ("user_agent".to_string(), Value::from("x/1")),
                ("scheme".to_string(), Value::from("none")),
            ]),
        };
        assert_eq!(Request::decode(&hello.encode(BoltVersion::new(1, 0))).unwrap(), hello);
    }

    #[test]
    fn unknown_signature_is_an_error() {
        let mut out = Vec::new();
        Encoder::default().encode_struct(0x55, &[], &mut out);
        assert!(matches!(Request::decode(&out), Err(MessageError::UnknownSignature(0x55))));
    }
}
