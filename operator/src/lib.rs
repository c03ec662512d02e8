//! memgraph-operator: runs Memgraph as one write instance (replication MAIN) and N read
//! replicas on Kubernetes.
//!
//! The library holds all logic; the binary wires it up. Structure (DESIGN.md §3): observe the
//! cluster through the [`kube_api::Kube`] trait, plan with pure functions, act through the same
//! traits, so the simulation runs exactly this code.

pub mod api;
pub mod backup;
pub mod builders;
pub mod clock;
pub mod controller;
pub mod crd;
pub mod health;
pub mod kube_api;
pub mod leader;
pub mod memgraph;
pub mod names;
pub mod quantity;
pub mod reconcile;
pub mod render;
pub mod schedule;
pub mod telemetry;
pub mod validate;
pub mod version;
