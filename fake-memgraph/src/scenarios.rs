//! Scenarios: short scripts of queries against a few named instances, each step with the answer
//! Memgraph gives (memgraph-behaviour.md). They are data, so the same script runs against the
//! fake (its own test suite, `tests/scenarios.rs`, real loopback TCP) and against real Memgraph
//! in containers (the `e2e` crate, wherever docker exists), and the two transcripts are compared
//! step by step: the fake is held to the real thing.
//!
//! A [`Target`] runs the steps: [`FakeTarget`] here, a container-backed one in `e2e`. Both use
//! this crate's [`Client`] (Bolt 4, RUN + PULL, column order and notifications kept), so any
//! difference comes from the server, not from the driver.
//!
//! Queries name instances as `{name}`: the target replaces that with the instance's replication
//! address (`name:10000` on the fake, the container's DNS name in docker) and the runner puts
//! `{name}` back into every answer, so transcripts of different targets are comparable.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::client::Client;
use crate::clock::{IdSource, SystemClock};
use crate::config::Config;
use crate::datadir::MemDataDir;
use crate::net::TokioNet;
use crate::server::{Server, ServerHandle};
use crate::value::Value;
use crate::version::MgVersion;

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run an auto-commit query on an instance.
    Run {
        /// Instance name.
        on: &'static str,
        /// The query; `{name}` stands for the replication address of instance `name`.
        query: String,
        /// Parameters.
        params: BTreeMap<String, Value>,
    },
    /// Stop an instance gracefully (SIGTERM: `docker stop`, a pod deletion).
    Stop(&'static str),
    /// Start a stopped instance again on the same data.
    Restart(&'static str),
}

/// Text of an answer: exactly, or by its start (for parser messages whose position and token list
/// are better compared fake against real than written down here).
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    /// Exactly this.
    Is(String),
    /// Starts with this.
    Prefix(String),
}

impl Text {
    fn matches(&self, s: &str) -> bool {
        match self {
            Text::Is(t) => s == t,
            Text::Prefix(p) => s.starts_with(p.as_str()),
        }
    }
}

/// A pattern for one value.
#[derive(Debug, Clone, PartialEq)]
pub enum Pat {
    /// Exactly this value.
    Is(Value),
    /// Any integer.
    Int,
    /// A string matching the text.
    Str(Text),
    /// A map with exactly these keys, each matching its pattern.
    Map(Vec<(&'static str, Pat)>),
    /// Anything.
    Any,
}

impl Pat {
    fn matches(&self, v: &Value) -> bool {
        match (self, v) {
            (Pat::Any, _) => true,
            (Pat::Is(want), got) => want == got,
            (Pat::Int, Value::Int(_)) => true,
            (Pat::Str(t), Value::String(s)) => t.matches(s),
            (Pat::Map(fields), Value::Map(m)) => {
                m.len() == fields.len() && fields.iter().all(|(k, p)| m.get(*k).is_some_and(|v| p.matches(v)))
            }
            _ => false,
        }
    }
}

/// Memgraph's error classes: the second part of a FAILURE code
/// (`Memgraph.ClientError.MemgraphError.MemgraphError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// `ClientError`: the query was wrong for this instance; retrying does not help.
    Client,
    /// `TransientError`: drivers retry these.
    Transient,
    /// `DatabaseError`.
    Database,
}

impl ErrorClass {
    fn of(code: &str) -> Option<ErrorClass> {
        match code.split('.').nth(1)? {
            "ClientError" => Some(ErrorClass::Client),
            "TransientError" => Some(ErrorClass::Transient),
            "DatabaseError" => Some(ErrorClass::Database),
            _ => None,
        }
    }
}

/// The answer a step expects.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// Success with these columns and rows. Notifications are not part of the expectation; they
    /// are in the transcript and so compared fake against real.
    Rows {
        /// Column names in order.
        columns: Vec<&'static str>,
        /// Rows in order.
        rows: Vec<Vec<Pat>>,
    },
    /// A FAILURE of this class and text.
    Error(ErrorClass, Text),
    /// The instance cannot be reached.
    Unreachable,
    /// A [`Action::Stop`] or [`Action::Restart`] that worked.
    Done,
}

impl Expect {
    fn check(&self, got: &Outcome) -> Result<(), String> {
        let ok = match (self, got) {
            (Expect::Rows { columns, rows }, Outcome::Rows { columns: c, rows: r, .. }) => {
                columns == c
                    && rows.len() == r.len()
                    && rows
                        .iter()
                        .zip(r)
                        .all(|(want, got)| want.len() == got.len() && want.iter().zip(got).all(|(p, v)| p.matches(v)))
            }
            (Expect::Error(class, text), Outcome::Error { code, message }) => {
                ErrorClass::of(code) == Some(*class) && text.matches(message)
            }
            (Expect::Unreachable, Outcome::Unreachable(_)) | (Expect::Done, Outcome::Done) => true,
            _ => false,
        };
        if ok { Ok(()) } else { Err(format!("expected {self:?}")) }
    }
}

/// One step: an action and what it must give. With `within`, the action is repeated until the
/// answer matches or the time is up (replication states take Memgraph a few heartbeats).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// What to do.
    pub action: Action,
    /// The expected answer.
    pub expect: Expect,
    /// Retry until this much time has passed.
    pub within: Option<Duration>,
}

/// A named script over named instances, all started fresh (empty, MAIN) before the first step.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name, used as the test name.
    pub name: &'static str,
    /// Instances, in start order.
    pub instances: Vec<&'static str>,
    /// Steps, in order.
    pub steps: Vec<Step>,
}

/// What a step produced, normalised (see [`normalise`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Success: columns, rows and notification codes.
    Rows {
        /// Column names.
        columns: Vec<String>,
        /// Rows.
        rows: Vec<Vec<Value>>,
        /// Codes of the notifications in the summary.
        notifications: Vec<String>,
    },
    /// A FAILURE.
    Error {
        /// Memgraph's code.
        code: String,
        /// Memgraph's message.
        message: String,
    },
    /// No connection (the text is the OS's and is not compared).
    Unreachable(String),
    /// A stop or restart worked.
    Done,
    /// A stop or restart failed (a harness problem, not an answer).
    Harness(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Rows { columns, rows, notifications } => {
                write!(f, "columns {columns:?} rows [")?;
                for (i, row) in rows.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "[")?;
                    for (j, v) in row.iter().enumerate() {
                        if j > 0 {
                            write!(f, ", ")?;
                        }
                        show(v, f)?;
                    }
                    write!(f, "]")?;
                }
                write!(f, "]")?;
                if !notifications.is_empty() {
                    write!(f, " notifications {notifications:?}")?;
                }
                Ok(())
            }
            Outcome::Error { code, message } => write!(f, "error {code}: {message}"),
            Outcome::Unreachable(why) => write!(f, "unreachable ({why})"),
            Outcome::Done => write!(f, "done"),
            Outcome::Harness(why) => write!(f, "harness failure: {why}"),
        }
    }
}

fn show(v: &Value, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match v {
        Value::Null => write!(f, "null"),
        Value::Bool(b) => write!(f, "{b}"),
        Value::Int(i) => write!(f, "{i}"),
        Value::Float(x) => write!(f, "{x}"),
        Value::String(s) => write!(f, "{s:?}"),
        Value::List(items) => {
            write!(f, "[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                show(item, f)?;
            }
            write!(f, "]")
        }
        Value::Map(m) => {
            write!(f, "{{")?;
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                write!(f, "{k}: ")?;
                show(item, f)?;
            }
            write!(f, "}}")
        }
        other => write!(f, "{other:?}"),
    }
}

/// Runs steps against some set of instances.
pub trait Target: Send {
    /// The replication address to register instance `name` under (`host:port`).
    fn address(&self, name: &str) -> String;
    /// Run one auto-commit query on instance `name`.
    fn run(&mut self, name: &str, query: &str, params: BTreeMap<String, Value>)
    -> impl Future<Output = Outcome> + Send;
    /// Stop instance `name` gracefully.
    fn stop(&mut self, name: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// Start instance `name` again on its data.
    fn restart(&mut self, name: &str) -> impl Future<Output = Result<(), String>> + Send;
}

/// Runs `query` on a fresh connection to `addr` with this crate's client.
pub async fn run_on(addr: SocketAddr, query: &str, params: BTreeMap<String, Value>) -> Outcome {
    let stream = match tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Outcome::Unreachable(e.to_string()),
        Err(_) => return Outcome::Unreachable("connect timed out".into()),
    };
    let work = async {
        let mut client = Client::connect(stream, None).await?;
        client.run(query, params).await
    };
    match tokio::time::timeout(Duration::from_secs(60), work).await {
        Ok(Ok(r)) => {
            let notifications = r.notification_codes();
            Outcome::Rows { columns: r.fields, rows: r.rows, notifications }
        }
        Ok(Err(crate::ClientError::Server { code, message })) => Outcome::Error { code, message },
        Ok(Err(e)) => Outcome::Unreachable(e.to_string()),
        Err(_) => Outcome::Unreachable("no answer within 60 s".into()),
    }
}

/// One step as it ran.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// The step, as text.
    pub what: String,
    /// Its (last) outcome, normalised.
    pub outcome: Outcome,
    /// Whether the outcome matched the expectation.
    pub matched: Result<(), String>,
}

/// A scenario as it ran on one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The scenario.
    pub scenario: &'static str,
    /// The steps.
    pub steps: Vec<StepRecord>,
}

impl Transcript {
    /// `Ok` when every step matched its expectation, else a report of the whole run.
    pub fn check(&self) -> Result<(), String> {
        if self.steps.iter().all(|s| s.matched.is_ok()) {
            return Ok(());
        }
        let mut out = format!("scenario {}: answers differ from the expected ones\n", self.scenario);
        for (i, s) in self.steps.iter().enumerate() {
            let mark = if s.matched.is_ok() { "  " } else { "✗ " };
            out.push_str(&format!("{mark}{i:>2} {}\n      got: {}\n", s.what, s.outcome));
            if let Err(e) = &s.matched {
                out.push_str(&format!("      {e}\n"));
            }
        }
        Err(out)
    }
}

/// Compares two transcripts of the same scenario step by step. `Ok` when every step gave the
/// same normalised outcome on both; otherwise a report naming both outputs of every step.
pub fn compare(fake: &Transcript, real: &Transcript, real_name: &str) -> Result<(), String> {
    let same = fake.steps.len() == real.steps.len()
        && fake
            .steps
            .iter()
            .zip(&real.steps)
            .all(|(f, r)| f.outcome == r.outcome && f.matched.is_ok() && r.matched.is_ok());
    if same {
        return Ok(());
    }
    let mut out = format!(
        "scenario {}: fake-memgraph and {real_name} differ (✗ marks the steps; 'fake' is what the fake \
         answered and its tests expect)\n",
        fake.scenario
    );
    for i in 0..fake.steps.len().max(real.steps.len()) {
        let f = fake.steps.get(i);
        let r = real.steps.get(i);
        let differs = f.map(|s| &s.outcome) != r.map(|s| &s.outcome)
            || f.is_some_and(|s| s.matched.is_err())
            || r.is_some_and(|s| s.matched.is_err());
        let what = f.or(r).map_or("", |s| s.what.as_str());
        out.push_str(&format!("{}{i:>2} {what}\n", if differs { "✗ " } else { "  " }));
        out.push_str(&format!("      fake: {}\n", f.map_or("(not run)".into(), |s| s.outcome.to_string())));
        out.push_str(&format!("      real: {}\n", r.map_or("(not run)".into(), |s| s.outcome.to_string())));
        if let Some(Err(e)) = f.map(|s| &s.matched) {
            out.push_str(&format!("      fake does not match the scenario: {e}\n"));
        }
        if let Some(Err(e)) = r.map(|s| &s.matched) {
            out.push_str(&format!("      real does not match the scenario: {e}\n"));
        }
    }
    Err(out)
}

/// How often a `within` step asks again.
const POLL: Duration = Duration::from_millis(100);

/// Runs `scenario` on `target`. Every step runs, also after a mismatch, so a report shows the
/// whole script.
pub async fn run<T: Target>(scenario: &Scenario, target: &mut T) -> Transcript {
    let addresses: Vec<(String, String)> =
        scenario.instances.iter().map(|n| (target.address(n), format!("{{{n}}}"))).collect();
    let mut steps = Vec::with_capacity(scenario.steps.len());
    for step in &scenario.steps {
        let deadline = step.within.map(|w| tokio::time::Instant::now() + w);
        let (what, outcome) = loop {
            let (what, raw) = match &step.action {
                Action::Run { on, query, params } => {
                    let mut q = query.clone();
                    for (addr, placeholder) in &addresses {
                        q = q.replace(placeholder.as_str(), addr);
                    }
                    let what = if params.is_empty() {
                        format!("on {on}: {query}")
                    } else {
                        format!("on {on}: {query} with {params:?}")
                    };
                    (what, target.run(on, &q, params.clone()).await)
                }
                Action::Stop(on) => {
                    (format!("stop {on}"), target.stop(on).await.map_or_else(Outcome::Harness, |()| Outcome::Done))
                }
                Action::Restart(on) => (
                    format!("restart {on}"),
                    target.restart(on).await.map_or_else(Outcome::Harness, |()| Outcome::Done),
                ),
            };
            let outcome = normalise(raw, &addresses);
            match deadline {
                Some(d) if step.expect.check(&outcome).is_err() && tokio::time::Instant::now() < d => {
                    tokio::time::sleep(POLL).await;
                }
                _ => break (what, outcome),
            }
        };
        let what = match step.within {
            Some(w) => format!("{what} (until it matches, up to {} s)", w.as_secs()),
            None => what,
        };
        let matched = step.expect.check(&outcome);
        steps.push(StepRecord { what, outcome, matched });
    }
    Transcript { scenario: scenario.name, steps }
}

/// Removes from an outcome what must differ between targets, and only that:
/// - replication addresses: each target has its own host names (a container's DNS name, a
///   loopback route); they are written back as `{name}`;
/// - snapshot file names start with the wall-clock time of their creation
///   (`20231117101508851236_timestamp_374`): the 20 digits become `<time>`; the durable
///   timestamp after them is kept;
/// - `SHOW SNAPSHOTS`' `creation_time` (wall clock) and `size` (bytes of Memgraph's on-disk
///   format, which the fake does not reproduce byte for byte) become `<time>` and `<size>`;
/// - the OS's text of a failed connection.
pub fn normalise(outcome: Outcome, addresses: &[(String, String)]) -> Outcome {
    match outcome {
        Outcome::Rows { columns, rows, notifications } => {
            let rows = rows
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .zip(&columns)
                        .map(|(v, column)| match (column.as_str(), v) {
                            ("creation_time", Value::String(_)) => Value::from("<time>"),
                            ("size", Value::String(_)) => Value::from("<size>"),
                            (_, v) => normalise_value(v, addresses),
                        })
                        .collect()
                })
                .collect();
            Outcome::Rows { columns, rows, notifications }
        }
        Outcome::Error { code, message } => Outcome::Error { code, message: normalise_text(&message, addresses) },
        Outcome::Unreachable(_) => Outcome::Unreachable(String::new()),
        other => other,
    }
}

fn normalise_value(v: Value, addresses: &[(String, String)]) -> Value {
    match v {
        Value::String(s) => Value::String(normalise_text(&s, addresses)),
        Value::List(items) => Value::List(items.into_iter().map(|v| normalise_value(v, addresses)).collect()),
        Value::Map(m) => Value::Map(m.into_iter().map(|(k, v)| (k, normalise_value(v, addresses))).collect()),
        other => other,
    }
}

fn normalise_text(s: &str, addresses: &[(String, String)]) -> String {
    let mut s = s.to_owned();
    // Longest first, so `a:10000` inside `aa:10000` is not replaced by the shorter one.
    let mut by_len: Vec<&(String, String)> = addresses.iter().collect();
    by_len.sort_by_key(|(a, _)| std::cmp::Reverse(a.len()));
    for (addr, placeholder) in by_len {
        s = s.replace(addr.as_str(), placeholder);
    }
    const MARK: &str = "_timestamp_";
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(at) = rest.find(MARK) {
        let head = &rest[..at];
        let digits = head.bytes().rev().take_while(u8::is_ascii_digit).count();
        if digits == 20 {
            out.push_str(&head[..head.len() - 20]);
            out.push_str("<time>");
        } else {
            out.push_str(head);
        }
        out.push_str(MARK);
        rest = &rest[at + MARK.len()..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------------
// The fake as a target

/// Timing knobs of the fake in scenarios: heartbeats every 20 ms instead of 1 s, RPCs give up
/// after 500 ms. Steps that depend on timing poll (`within`), so only the run time differs.
pub const FAST_FLAGS: &[&str] = &["--fake-replica-check-frequency-ms=20", "--fake-rpc-timeout-ms=500"];

struct FakeInstance {
    dir: MemDataDir,
    handle: Option<ServerHandle>,
    seed: u64,
}

/// Fake instances on loopback TCP, each reachable for replication as `name:10000`.
pub struct FakeTarget {
    net: TokioNet,
    version: MgVersion,
    instances: BTreeMap<String, FakeInstance>,
}

impl FakeTarget {
    /// Starts one empty instance per name, emulating `version`.
    pub async fn start(version: MgVersion, names: &[&str]) -> Result<FakeTarget, String> {
        let mut target = FakeTarget { net: TokioNet::ephemeral(), version, instances: BTreeMap::new() };
        for (i, name) in names.iter().enumerate() {
            let dir = MemDataDir::default();
            let seed = 1 + i as u64;
            let handle = target.boot(&dir, seed).await?;
            target.instances.insert((*name).to_owned(), FakeInstance { dir, handle: Some(handle), seed });
        }
        Ok(target)
    }

    async fn boot(&self, dir: &MemDataDir, seed: u64) -> Result<ServerHandle, String> {
        let version = format!("--memgraph-version={}.{}", self.version.major, self.version.minor);
        let flags = FAST_FLAGS.iter().copied().chain([version.as_str()]);
        let config = Config::parse_args(flags).map_err(|e| e.to_string())?;
        Server::start(config, self.net.clone(), dir.clone(), SystemClock, IdSource::seeded(seed))
            .await
            .map_err(|e| e.to_string())
    }

    /// Makes `name:10000` reach each replica's replication port (bound when it becomes one).
    fn publish_routes(&self) {
        for (name, inst) in &self.instances {
            if let Some(port) = inst.handle.as_ref().and_then(ServerHandle::replication_port) {
                self.net.route(format!("{name}:10000"), SocketAddr::from(([127, 0, 0, 1], port)));
            }
        }
    }

    /// The running instance `name`.
    pub fn handle(&self, name: &str) -> Option<&ServerHandle> {
        self.instances.get(name)?.handle.as_ref()
    }

    /// Stops every instance (crash; nothing is kept).
    pub fn kill_all(&mut self) {
        for inst in self.instances.values_mut() {
            if let Some(h) = inst.handle.take() {
                h.kill();
            }
        }
    }
}

impl Drop for FakeTarget {
    fn drop(&mut self) {
        self.kill_all();
    }
}

impl Target for FakeTarget {
    fn address(&self, name: &str) -> String {
        format!("{name}:10000")
    }

    async fn run(&mut self, name: &str, query: &str, params: BTreeMap<String, Value>) -> Outcome {
        let Some(port) = self.handle(name).map(ServerHandle::bolt_port) else {
            return Outcome::Unreachable(format!("{name} is stopped"));
        };
        let outcome = run_on(SocketAddr::from(([127, 0, 0, 1], port)), query, params).await;
        self.publish_routes();
        outcome
    }

    async fn stop(&mut self, name: &str) -> Result<(), String> {
        let handle = self.instances.get_mut(name).ok_or(format!("no instance {name}"))?.handle.take();
        match handle {
            Some(h) => {
                h.shutdown().await;
                Ok(())
            }
            None => Err(format!("{name} is already stopped")),
        }
    }

    async fn restart(&mut self, name: &str) -> Result<(), String> {
        let (dir, seed) = match self.instances.get(name) {
            Some(FakeInstance { handle: Some(_), .. }) => return Err(format!("{name} is running")),
            Some(inst) => (inst.dir.clone(), inst.seed + 1000),
            None => return Err(format!("no instance {name}")),
        };
        let handle = self.boot(&dir, seed).await?;
        if let Some(inst) = self.instances.get_mut(name) {
            inst.handle = Some(handle);
            inst.seed = seed;
        }
        self.publish_routes();
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The scenarios

fn q(on: &'static str, query: &str, expect: Expect) -> Step {
    Step { action: Action::Run { on, query: query.to_owned(), params: BTreeMap::new() }, expect, within: None }
}

fn run_with(on: &'static str, query: &str, params: &[(&str, Value)], expect: Expect) -> Step {
    let params = params.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    Step { action: Action::Run { on, query: query.to_owned(), params }, expect, within: None }
}

/// Replication settles within this on real Memgraph: 1 s heartbeats, 3 misses to `invalid`,
/// recovery of a small graph.
const SETTLE: Duration = Duration::from_secs(60);

fn until(step: Step) -> Step {
    Step { within: Some(SETTLE), ..step }
}

fn ok() -> Expect {
    Expect::Rows { columns: vec![], rows: vec![] }
}

fn rows(columns: &[&'static str], rows: Vec<Vec<Pat>>) -> Expect {
    Expect::Rows { columns: columns.to_vec(), rows }
}

fn one(column: &'static str, value: impl Into<Value>) -> Expect {
    rows(&[column], vec![vec![Pat::Is(value.into())]])
}

fn client_error(text: impl Into<String>) -> Expect {
    Expect::Error(ErrorClass::Client, Text::Is(text.into()))
}

fn syntax_error() -> Expect {
    Expect::Error(ErrorClass::Client, Text::Prefix("Error on line 1 position ".into()))
}

fn s(text: &str) -> Value {
    Value::from(text)
}

const SHOW_REPLICAS: &[&str] = &["name", "socket_address", "sync_mode", "system_info", "data_info"];

/// A `SHOW REPLICAS` row of a registered replica in `status`, registered as `{name}`.
fn replica_row(name: &'static str, mode: &str, status: &str) -> Vec<Pat> {
    vec![
        Pat::Is(s(name)),
        Pat::Is(Value::String(format!("{{{name}}}"))),
        Pat::Is(s(mode)),
        // Without an Enterprise licence.
        Pat::Is(Value::Null),
        Pat::Map(vec![(
            "memgraph",
            Pat::Map(vec![("ts", Pat::Int), ("behind", Pat::Int), ("status", Pat::Is(s(status)))]),
        )]),
    ]
}

fn show_replicas_until(main: &'static str, replicas: Vec<Vec<Pat>>) -> Step {
    until(q(main, "SHOW REPLICAS", rows(SHOW_REPLICAS, replicas)))
}

fn make_replica(on: &'static str) -> Step {
    q(on, "SET REPLICATION ROLE TO REPLICA WITH PORT 10000", ok())
}

fn count(on: &'static str, label: &str, n: i64) -> Step {
    q(on, &format!("MATCH (n:{label}) RETURN count(n) AS c"), one("c", n))
}

fn v(major: u8, minor: u8) -> MgVersion {
    MgVersion::new(major, minor)
}

/// The scenarios, with the answers `version` gives.
pub fn all(version: MgVersion) -> Vec<Scenario> {
    vec![
        roles(version),
        register_each_mode_and_drop(version),
        replicate_sync_and_async(version),
        failed_registration_leaves_a_row(version),
        snapshots(version),
        validation_queries(version),
        failover_and_rejoin(version),
    ]
}

/// A failover as the operator makes it (§11): promote a SYNC replica, register the other replica
/// on it (which cuts it off from the old MAIN), demote the old MAIN and register it on the new
/// one. An old MAIN that committed nothing after the promotion rejoins; an instance that took a
/// write the MAIN never had has diverged.
fn failover_and_rejoin(version: MgVersion) -> Scenario {
    let numbered = version >= v(3, 5);
    let diverged = if numbered { "Couldn't register replica old. Error: 3" } else { "Couldn't register replica old." };
    let ready = |name| replica_row(name, "sync", "ready");
    Scenario {
        name: "failover_and_rejoin",
        instances: vec!["main", "r1", "r2", "old"],
        steps: vec![
            make_replica("r1"),
            make_replica("r2"),
            make_replica("old"),
            q("main", "REGISTER REPLICA r1 SYNC TO \"{r1}\"", ok()),
            q("main", "REGISTER REPLICA r2 SYNC TO \"{r2}\"", ok()),
            show_replicas_until("main", vec![ready("r1"), ready("r2")]),
            q("main", "CREATE (:Item {i: 1})", ok()),
            q("main", "CREATE (:Item {i: 2})", ok()),
            count("r1", "Item", 2),
            count("r2", "Item", 2),
            // The failover: r1 takes over; registering r2 on it makes r2 refuse the old MAIN.
            q("r1", "SET REPLICATION ROLE TO MAIN", ok()),
            q("r1", "REGISTER REPLICA r2 SYNC TO \"{r2}\"", ok()),
            show_replicas_until("r1", vec![ready("r2")]),
            q("r1", "CREATE (:Item {i: 3})", ok()),
            count("r2", "Item", 3),
            // The old MAIN still says MAIN ("role = main" is data, not authority) ...
            q("main", "SHOW REPLICATION ROLE", one("replication role", "main")),
            // ... and is demoted and registered on the new one: it committed nothing since, so
            // it catches up.
            make_replica("main"),
            q("r1", "REGISTER REPLICA main SYNC TO \"{main}\"", ok()),
            show_replicas_until("r1", vec![ready("r2"), ready("main")]),
            until(count("main", "Item", 3)),
            // An instance promoted while another MAIN goes on (a split brain), that takes a
            // write the MAIN never has, has diverged: its registration fails (before 3.5 the
            // text has no number; inferred from the source, compared with the real thing by
            // the e2e suite).
            q("old", "SHOW REPLICATION ROLE", one("replication role", "replica")),
            q("r1", "REGISTER REPLICA old SYNC TO \"{old}\"", ok()),
            until(count("old", "Item", 3)),
            q("old", "SET REPLICATION ROLE TO MAIN", ok()),
            q("r1", "DROP REPLICA old", ok()),
            q("old", "CREATE (:Item {i: 99})", ok()),
            q("r1", "CREATE (:Item {i: 4})", ok()),
            make_replica("old"),
            q("r1", "REGISTER REPLICA old SYNC TO \"{old}\"", client_error(diverged)),
            count("old", "Item", 4),
            // Its history holds a write the new MAIN never had: nothing may take it back.
            count("r1", "Item", 4),
        ],
    }
}

/// Role changes and the errors of every replication query on the wrong role (§1.1–§1.6).
fn roles(version: MgVersion) -> Scenario {
    let long = version >= v(3, 1);
    let write_on_replica = if long {
        "Write queries are forbidden on the replica instance. Replica instances accept only read queries, while the main instance accepts read and write queries. Please retry your query on the main instance."
    } else {
        "Write query forbidden on the replica!"
    };
    let show_on_replica = if long {
        "Show replicas query should only be run on the main instance."
    } else {
        "Replica can't show registered replicas (it shouldn't have any)!"
    };
    let drop_on_replica = if long {
        "Replica can't unregister a replica! Please rerun the query on main in order to unregister a replica from the cluster."
    } else {
        "Replica can't unregister a replica!"
    };
    Scenario {
        name: "roles",
        instances: vec!["main", "other"],
        steps: vec![
            q("main", "SHOW REPLICATION ROLE", one("replication role", "main")),
            q("main", "SET REPLICATION ROLE TO MAIN", client_error("Couldn't set replication role to main!")),
            q("main", "SET REPLICATION ROLE TO REPLICA", client_error("Port number invalid!")),
            q("main", "SHOW REPLICAS", rows(SHOW_REPLICAS, vec![])),
            make_replica("other"),
            q("other", "SHOW REPLICATION ROLE", one("replication role", "replica")),
            q(
                "other",
                "SET REPLICATION ROLE TO REPLICA WITH PORT 10000",
                client_error("Couldn't set role to replica!"),
            ),
            q("other", "CREATE (:Nope)", client_error(write_on_replica)),
            q("other", "MATCH (n) RETURN count(n) AS c", one("c", 0)),
            q("other", "SHOW REPLICAS", client_error(show_on_replica)),
            q(
                "other",
                "REGISTER REPLICA x SYNC TO \"{main}\"",
                client_error("Replica can't register another replica!"),
            ),
            q("other", "DROP REPLICA x", client_error(drop_on_replica)),
            q("other", "SET REPLICATION ROLE TO MAIN", ok()),
            q("other", "SHOW REPLICATION ROLE", one("replication role", "main")),
            q("other", "CREATE (:Yes)", ok()),
            count("other", "Yes", 1),
        ],
    }
}

/// `REGISTER REPLICA` in each mode the version has, `SHOW REPLICAS` of each, `DROP REPLICA`, and
/// their errors (§1.4–§1.6).
fn register_each_mode_and_drop(version: MgVersion) -> Scenario {
    let numbered = version >= v(3, 5);
    let duplicate = if numbered { "Couldn't register replica r1. Error: 1" } else { "Couldn't register replica r1." };
    let drop_unknown =
        if version >= v(3, 1) { "Failed to unregister the replica r1." } else { "Couldn't unregister the replica r1." };
    let mut steps = vec![
        make_replica("r1"),
        q("main", "REGISTER REPLICA r1 ASYNC TO \"{r1}\"", ok()),
        show_replicas_until("main", vec![replica_row("r1", "async", "ready")]),
        q("main", "REGISTER REPLICA r1 ASYNC TO \"{r1}\"", client_error(duplicate)),
        q("main", "DROP REPLICA r1", ok()),
        q("main", "SHOW REPLICAS", rows(SHOW_REPLICAS, vec![])),
        q("main", "DROP REPLICA r1", client_error(drop_unknown)),
        q("main", "REGISTER REPLICA r1 SYNC TO \"{r1}\"", ok()),
        show_replicas_until("main", vec![replica_row("r1", "sync", "ready")]),
        q("main", "DROP REPLICA r1", ok()),
    ];
    if version >= v(3, 5) {
        steps.extend([
            q("main", "REGISTER REPLICA r1 STRICT_SYNC TO \"{r1}\"", ok()),
            show_replicas_until("main", vec![replica_row("r1", "strict_sync", "ready")]),
            q("main", "DROP REPLICA r1", ok()),
        ]);
    } else {
        steps.push(q("main", "REGISTER REPLICA r1 STRICT_SYNC TO \"{r1}\"", syntax_error()));
    }
    steps.extend([
        // Hyphens are not allowed in a symbolic name; the operator uses read_N.
        q("main", "REGISTER REPLICA r-1 SYNC TO \"{r1}\"", syntax_error()),
        q("main", "SHOW REPLICAS", rows(SHOW_REPLICAS, vec![])),
        // Data written while no replica is registered reaches one registered later.
        q("main", "CREATE (:Early)", ok()),
        q("main", "REGISTER REPLICA r1 ASYNC TO \"{r1}\"", ok()),
        show_replicas_until("main", vec![replica_row("r1", "async", "ready")]),
        until(count("r1", "Early", 1)),
    ]);
    Scenario { name: "register_each_mode_and_drop", instances: vec!["main", "r1"], steps }
}

/// A SYNC and an ASYNC replica: writes reach both, a stopped replica turns `invalid` and catches
/// up after its restart, a write with the SYNC replica down reports an error but commits (§2.1,
/// §2.2).
fn replicate_sync_and_async(version: MgVersion) -> Scenario {
    let sync_down = if version >= v(3, 10) {
        Expect::Error(
            ErrorClass::Client,
            Text::Is("Replication Exception: Failed to replicate to SYNC replica 'r1': replica is not reachable or not in sync with the main. Replica will be recovered automatically. Transaction is still committed on the main instance and other alive replicas. Check the status of the replicas using 'SHOW REPLICAS' query.".into()),
        )
    } else {
        // TransientError for auto-commit queries up to 3.7 (§5).
        let class = if version >= v(3, 8) { ErrorClass::Client } else { ErrorClass::Transient };
        Expect::Error(
            class,
            Text::Is("Replication Exception: At least one SYNC replica has not confirmed committing last transaction. Check the status of the replicas using 'SHOW REPLICAS' query.".into()),
        )
    };
    let both_ready = || vec![replica_row("r1", "sync", "ready"), replica_row("r2", "async", "ready")];
    Scenario {
        name: "replicate_sync_and_async",
        instances: vec!["main", "r1", "r2"],
        steps: vec![
            make_replica("r1"),
            make_replica("r2"),
            q("main", "REGISTER REPLICA r1 SYNC TO \"{r1}\"", ok()),
            q("main", "REGISTER REPLICA r2 ASYNC TO \"{r2}\"", ok()),
            show_replicas_until("main", both_ready()),
            q("main", "CREATE (:Item {i: 1})", ok()),
            q("main", "CREATE (:Item {i: 2})", ok()),
            q("main", "CREATE (:Item {i: 3})", ok()),
            // SYNC: on the replica when the commit returns.
            count("r1", "Item", 3),
            until(count("r2", "Item", 3)),
            // In sync again: the timestamps the MAIN reports are compared fake against real.
            show_replicas_until("main", both_ready()),
            Step { action: Action::Stop("r2"), expect: Expect::Done, within: None },
            q("r2", "RETURN 1 AS ping", Expect::Unreachable),
            show_replicas_until(
                "main",
                vec![replica_row("r1", "sync", "ready"), replica_row("r2", "async", "invalid")],
            ),
            // ASYNC down: the MAIN commits without an error.
            q("main", "CREATE (:Item {i: 4})", ok()),
            Step { action: Action::Restart("r2"), expect: Expect::Done, within: None },
            until(q("r2", "SHOW REPLICATION ROLE", one("replication role", "replica"))),
            show_replicas_until("main", both_ready()),
            until(count("r2", "Item", 4)),
            Step { action: Action::Stop("r1"), expect: Expect::Done, within: None },
            show_replicas_until(
                "main",
                vec![replica_row("r1", "sync", "invalid"), replica_row("r2", "async", "ready")],
            ),
            q("main", "CREATE (:Item {i: 5})", sync_down),
            // ... committed on the MAIN and the ASYNC replica all the same.
            count("main", "Item", 5),
            until(count("r2", "Item", 5)),
            Step { action: Action::Restart("r1"), expect: Expect::Done, within: None },
            show_replicas_until("main", both_ready()),
            until(count("r1", "Item", 5)),
        ],
    }
}

/// Registering an instance that is not a replica fails and leaves a row with `data_info` `{}`
/// that blocks the name until dropped (§1.4, inferred from the source there: this scenario is
/// what checks it against the real thing).
fn failed_registration_leaves_a_row(version: MgVersion) -> Scenario {
    let numbered = version >= v(3, 5);
    let failed = if numbered { "Couldn't register replica r1. Error: 5" } else { "Couldn't register replica r1." };
    let duplicate = if numbered { "Couldn't register replica r1. Error: 1" } else { "Couldn't register replica r1." };
    let stale = vec![
        Pat::Is(s("r1")),
        Pat::Is(s("{r1}")),
        Pat::Is(s("sync")),
        Pat::Is(Value::Null),
        Pat::Is(Value::Map(BTreeMap::new())),
    ];
    Scenario {
        name: "failed_registration_leaves_a_row",
        instances: vec!["main", "r1"],
        steps: vec![
            // r1 is still a MAIN: nothing listens on its replication port.
            q("main", "REGISTER REPLICA r1 SYNC TO \"{r1}\"", client_error(failed)),
            q("main", "SHOW REPLICAS", rows(SHOW_REPLICAS, vec![stale])),
            make_replica("r1"),
            q("main", "REGISTER REPLICA r1 SYNC TO \"{r1}\"", client_error(duplicate)),
            q("main", "DROP REPLICA r1", ok()),
            q("main", "SHOW REPLICAS", rows(SHOW_REPLICAS, vec![])),
            q("main", "REGISTER REPLICA r1 SYNC TO \"{r1}\"", ok()),
            show_replicas_until("main", vec![replica_row("r1", "sync", "ready")]),
        ],
    }
}

/// `CREATE SNAPSHOT` and `SHOW SNAPSHOTS` as each version has them, on a MAIN and on a replica
/// (§4).
fn snapshots(version: MgVersion) -> Scenario {
    let path = || Pat::Str(Text::Prefix("/var/lib/memgraph/snapshots/".into()));
    let created = if version >= v(3, 5) { rows(&["path"], vec![vec![path()]]) } else { ok() };
    let mut steps = vec![
        q("main", "CREATE (:S {i: 1})", ok()),
        q("main", "CREATE (:S {i: 2})", ok()),
        q("main", "CREATE SNAPSHOT", created.clone()),
    ];
    if version >= v(2, 22) {
        let file = vec![path(), Pat::Int, Pat::Is(s("<time>")), Pat::Is(s("<size>"))];
        let mut listed = vec![file];
        if version < v(3, 5) {
            // The next scheduled snapshot: the snapshot directory, timestamp 0.
            listed.push(vec![path(), Pat::Is(Value::Int(0)), Pat::Is(s("<time>")), Pat::Any]);
        }
        steps.push(q("main", "SHOW SNAPSHOTS", rows(&["path", "timestamp", "creation_time", "size"], listed)));
    } else {
        steps.push(q("main", "SHOW SNAPSHOTS", syntax_error()));
    }
    steps.extend([
        make_replica("r1"),
        q("main", "REGISTER REPLICA r1 ASYNC TO \"{r1}\"", ok()),
        show_replicas_until("main", vec![replica_row("r1", "async", "ready")]),
        until(count("r1", "S", 2)),
    ]);
    if version >= v(3, 8) {
        steps.push(q("r1", "CREATE SNAPSHOT", created));
    } else {
        steps.push(q(
            "r1",
            "CREATE SNAPSHOT",
            Expect::Error(
                ErrorClass::Transient,
                Text::Is("Failed to create a snapshot. Replica instances are not allowed to create them.".into()),
            ),
        ));
    }
    Scenario { name: "snapshots", instances: vec!["main", "r1"], steps }
}

/// The operator's live checks (memgraph-operator `memgraph::queries`): ping, the test node
/// written on the MAIN and read on a replica, the user node count, the cleanup.
fn validation_queries(_version: MgVersion) -> Scenario {
    const WRITE: &str = "CREATE (n:_OperatorTest {id: $id, ts: timestamp()})";
    const READ: &str = "MATCH (n:_OperatorTest {id: $id}) RETURN n.id AS id";
    const COUNT: &str = "MATCH (n) WHERE NOT n:_OperatorTest RETURN count(n) AS nodes";
    const CLEANUP: &str = "MATCH (n:_OperatorTest) DELETE n";
    let id = [("id", s("probe-1"))];
    Scenario {
        name: "validation_queries",
        instances: vec!["main", "r1"],
        steps: vec![
            make_replica("r1"),
            q("main", "REGISTER REPLICA r1 ASYNC TO \"{r1}\"", ok()),
            show_replicas_until("main", vec![replica_row("r1", "async", "ready")]),
            q("main", "RETURN 1 AS ping", one("ping", 1)),
            q("r1", "RETURN 1 AS ping", one("ping", 1)),
            q("main", "CREATE (:User {k: 1})", ok()),
            run_with("main", WRITE, &id, ok()),
            until(run_with("r1", READ, &id, one("id", "probe-1"))),
            q("main", COUNT, one("nodes", 1)),
            until(q("r1", COUNT, one("nodes", 1))),
            q("main", CLEANUP, ok()),
            run_with("main", READ, &id, rows(&["id"], vec![])),
            until(run_with("r1", READ, &id, rows(&["id"], vec![]))),
            q("r1", COUNT, one("nodes", 1)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_keeps_what_may_not_differ() {
        let addrs = vec![("mgo-e2e-1-r1:10000".to_owned(), "{r1}".to_owned())];
        assert_eq!(
            normalise_text("/var/lib/memgraph/snapshots/20231117101508851236_timestamp_374", &addrs),
            "/var/lib/memgraph/snapshots/<time>_timestamp_374"
        );
        assert_eq!(normalise_text("x_timestamp_1", &addrs), "x_timestamp_1", "not a 20-digit stamp");
        assert_eq!(normalise_text("replica at mgo-e2e-1-r1:10000", &addrs), "replica at {r1}");
        let rows = Outcome::Rows {
            columns: vec!["path".into(), "creation_time".into(), "size".into()],
            rows: vec![vec![s("a"), s("2024-01-01T00:00:00+00:00"), s("1.2KiB")]],
            notifications: vec![],
        };
        assert_eq!(
            normalise(rows, &addrs),
            Outcome::Rows {
                columns: vec!["path".into(), "creation_time".into(), "size".into()],
                rows: vec![vec![s("a"), s("<time>"), s("<size>")]],
                notifications: vec![],
            }
        );
    }

    #[test]
    fn comparison_names_both_outputs() {
        let step = |outcome| StepRecord { what: "on main: RETURN 1".into(), outcome, matched: Ok(()) };
        let fake = Transcript { scenario: "x", steps: vec![step(Outcome::Done)] };
        let real = Transcript { scenario: "x", steps: vec![step(Outcome::Unreachable(String::new()))] };
        let report = compare(&fake, &real, "memgraph/memgraph:3.12.0").unwrap_err();
        assert!(report.contains("fake: done"), "{report}");
        assert!(report.contains("real: unreachable"), "{report}");
        assert!(compare(&fake, &fake, "same").is_ok());
    }
}
