//! A fake Memgraph: a Bolt server with Memgraph's replication, snapshot and durability behaviour,
//! for deterministic simulation and integration tests.
//!
//! Entry points: [`Server::start`] (returns a [`ServerHandle`]), [`client::Client`], the network
//! ([`net::TokioNet`], [`net::TurmoilNet`]), data directories ([`datadir::FsDataDir`],
//! [`datadir::MemDataDir`]), clocks and ids ([`clock`]) and [`Config`]. [`scenarios`] holds
//! query scripts run both against the fake and, in the `e2e` crate, against real Memgraph.

pub mod bolt;
pub mod client;
pub mod clock;
pub mod config;
pub mod cypher;
pub mod datadir;
mod engine;
pub mod net;
pub mod packstream;
pub mod query;
pub mod replication;
pub mod scenarios;
pub mod server;
pub mod storage;
pub mod value;
pub mod version;

pub use client::{Client, ClientError, QueryResult};
pub use clock::{Clock, FnClock, IdSource, ManualClock, SystemClock};
pub use config::Config;
pub use cypher::SyncMode;
pub use datadir::{DataDir, FsDataDir, MemDataDir};
pub use net::{Network, TokioNet, TurmoilNet};
pub use replication::{ReplicaState, ReplicaStatus, Role};
pub use server::{Server, ServerHandle, StartError};
pub use value::{Node, Relationship, Value};
pub use version::MgVersion;
