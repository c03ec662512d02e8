//! The seeded turmoil world: pods as turmoil hosts running fake-memgraph, the operator as a host
//! running the real reconcile, a client workload, faults and oracles.

pub mod bolt;
pub mod faults;
pub mod operator;
pub mod oracles;
pub mod pods;
pub mod rng;
pub mod run;
pub mod shrink;
pub mod time;
pub mod trace;
pub mod truth;
pub mod workload;
