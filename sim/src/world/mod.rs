//! The seeded turmoil world: pods as turmoil hosts running fake-memgraph, the operator as a host
//! running the real reconcile, a client workload per cluster, faults and oracles.

pub mod backups;
pub mod bolt;
pub mod clusters;
pub mod driver;
pub mod faults;
pub mod inject;
pub mod operator;
pub mod oracles;
pub mod picture;
pub mod pods;
pub mod report;
pub mod rng;
pub mod run;
pub mod shrink;
pub mod time;
pub mod trace;
pub mod truth;
pub mod workload;
