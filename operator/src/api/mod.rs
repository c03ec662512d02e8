//! The `MemgraphCluster` API (`memgraph.io/v1alpha1`).
//!
//! Field documentation here becomes `kubectl explain` text, so it is written for the people who
//! deploy clusters. Rules the API server can check (bounds, enums, CEL) live in the schema;
//! rules it cannot (cron syntax, quantities, referenced Secrets) live in [`crate::validate`].

mod spec;
mod status;

pub use spec::*;
pub use status::*;

/// API group of every kind this operator defines.
pub const GROUP: &str = "memgraph.io";
/// API version of [`MemgraphCluster`].
pub const VERSION: &str = "v1alpha1";
