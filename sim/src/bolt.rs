//! A `Bolt` wrapper that counts queries per instance, so tests can check how much a reconcile
//! asks of Memgraph.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use memgraph_operator::memgraph::{Bolt, BoltError, BoltValue, QueryResult, Timeouts};

/// Counts every query by (address, query text).
pub struct CountingBolt<B> {
    inner: B,
    counts: Mutex<BTreeMap<(String, String), u64>>,
}

impl<B> CountingBolt<B> {
    /// Wrap `inner`.
    pub fn new(inner: B) -> Self {
        Self { inner, counts: Mutex::default() }
    }

    /// Counts so far, and reset them.
    pub fn take(&self) -> BTreeMap<(String, String), u64> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

#[async_trait]
impl<B: Bolt> Bolt for CountingBolt<B> {
    fn timeouts(&self) -> Timeouts {
        self.inner.timeouts()
    }

    async fn run_within(
        &self,
        address: &str,
        query: &str,
        params: BTreeMap<String, BoltValue>,
        timeout: std::time::Duration,
    ) -> Result<QueryResult, BoltError> {
        *self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((address.to_owned(), query.to_owned()))
            .or_insert(0) += 1;
        self.inner.run_within(address, query, params, timeout).await
    }
}
