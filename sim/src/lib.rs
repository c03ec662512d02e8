//! The simulation of memgraph-operator: an in-memory API server and simulated Kubernetes
//! controllers that run fake-memgraph pods, so the operator's real reconcile can be exercised
//! end to end, on loopback TCP or inside a seeded turmoil world.

pub mod apiserver;
pub mod bolt;
pub mod controllers;
pub mod kubelet;
pub mod net;
pub mod world;
