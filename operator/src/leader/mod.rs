//! Leader election on a Kubernetes Lease: only the process holding the Lease reconciles, so a
//! rolling update or a second replica never races another operator on `DROP`/`REGISTER`.
//!
//! The rules are pure ([`decide`]); the Lease is reached through the small [`LeaseApi`] trait
//! (production: [`KubeLeases`]; the simulation: its fake API server), so the simulation runs
//! this same elector. Timings are client-go's defaults (15 s / 10 s / 2 s):
//! - a leader renews every retry period and stops (the process exits) when no renewal attempt
//!   started within the renew deadline has succeeded;
//! - a standby takes the Lease when it has seen it unchanged for the lease duration, or at once
//!   when it was released;
//! - on SIGTERM the leader finishes its reconciles and releases the Lease, so a rollout hands
//!   over within one retry period.

pub mod decide;
mod kube;

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::kube_api::KubeError;

pub use self::decide::{Decision, decide};
pub use self::kube::{KubeLeases, from_spec, to_spec};

/// How long a Lease lasts and how often it is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// How long a standby waits, from when it last saw the Lease change, before taking it.
    pub lease_duration: Duration,
    /// How long a leader keeps leading without a successful renewal (shorter than the
    /// duration: the difference is the margin for requests still in flight when it stops).
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby looks.
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Lease timings that cannot keep two leaders apart.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimingsError {
    /// The deadline must end before another process may take the Lease.
    #[error(
        "--lease-renew-deadline-seconds ({renew}) must be shorter than --lease-duration-seconds ({lease}): a leader must stop before a standby may take over"
    )]
    DeadlineNotShorter {
        /// Renew deadline, seconds.
        renew: u64,
        /// Lease duration, seconds.
        lease: u64,
    },
    /// At least one renewal must fit in the deadline.
    #[error(
        "--lease-retry-period-seconds ({retry}) must be at least 1 and shorter than --lease-renew-deadline-seconds ({renew})"
    )]
    RetryNotShorter {
        /// Retry period, seconds.
        retry: u64,
        /// Renew deadline, seconds.
        renew: u64,
    },
}

impl Timings {
    /// Timings from whole seconds, checked.
    pub fn from_secs(lease: u64, renew: u64, retry: u64) -> Result<Self, TimingsError> {
        if renew >= lease {
            return Err(TimingsError::DeadlineNotShorter { renew, lease });
        }
        if retry == 0 || retry >= renew {
            return Err(TimingsError::RetryNotShorter { retry, renew });
        }
        Ok(Self {
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(renew),
            retry_period: Duration::from_secs(retry),
        })
    }
}

/// The parts of a Lease the election uses (`coordination.k8s.io/v1` `LeaseSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Who holds it; `None` (or empty) when released.
    pub holder: Option<String>,
    /// `leaseDurationSeconds`.
    pub duration: Duration,
    /// When the holder acquired it.
    pub acquired: Option<Timestamp>,
    /// When the holder last renewed it (informational: takeovers count on the local clock).
    pub renewed: Option<Timestamp>,
    /// How many times it changed hands.
    pub transitions: i32,
}

/// A Lease as read: the record and the resourceVersion a write must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLease {
    /// The record.
    pub record: LeaseRecord,
    /// `metadata.resourceVersion`.
    pub version: String,
}

/// One Lease object in the API server.
#[async_trait]
pub trait LeaseApi: Send + Sync {
    /// Read the Lease; `None` when it does not exist.
    async fn get(&self) -> Result<Option<StoredLease>, KubeError>;
    /// Create it; a Conflict when it exists. Returns the new resourceVersion.
    async fn create(&self, record: &LeaseRecord) -> Result<String, KubeError>;
    /// Replace it if its resourceVersion is still `version`; a Conflict otherwise. Returns the
    /// new resourceVersion.
    async fn replace(&self, record: &LeaseRecord, version: &str) -> Result<String, KubeError>;
}

/// This process's part in the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// Not looked at the Lease yet.
    Starting,
    /// Another process leads (or nobody could be seen to): ready to take over.
    Standby {
        /// The holder last seen, if any.
        holder: Option<String>,
    },
    /// This process holds the Lease and may reconcile.
    Leading,
    /// This process led and must stop: its Lease may be taken by another.
    Lost,
}

/// Why a leader stopped leading.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LostLease {
    /// No renewal succeeded within the deadline (the API server was unreachable or slow).
    #[error("no renewal of the lease succeeded for {0:?} (the renew deadline)")]
    NotRenewed(Duration),
    /// Another process holds the Lease now.
    #[error("the lease is held by {0} now")]
    TakenBy(String),
}

/// What a successful look at the Lease found.
enum Look {
    Leads,
    Follows(String),
}

struct Memory {
    /// The version last seen and when this process first saw it.
    seen: Option<(String, Instant)>,
    /// When the last successful renewal attempt started, while leading.
    renewed_at: Option<Instant>,
}

/// Runs the election for one identity on one Lease.
pub struct Elector<A, C> {
    api: A,
    clock: C,
    identity: String,
    timings: Timings,
    state: watch::Sender<Leadership>,
    memory: Mutex<Memory>,
}

impl<A: LeaseApi, C: Clock> Elector<A, C> {
    /// An elector for `identity` (the pod name): unique per process that may lead.
    pub fn new(api: A, clock: C, identity: String, timings: Timings) -> Self {
        let (state, _) = watch::channel(Leadership::Starting);
        Self { api, clock, identity, timings, state, memory: Mutex::new(Memory { seen: None, renewed_at: None }) }
    }

    /// Follow this process's leadership.
    pub fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.state.subscribe()
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, next: Leadership) {
        self.state.send_if_modified(|now| {
            let changed = *now != next;
            *now = next;
            changed
        });
    }

    /// Take part in the election: stand by or lead, until leadership is lost. Returns only
    /// then; the caller stops everything that acts (the process exits) at once.
    pub async fn run(&self) -> LostLease {
        loop {
            let started = Instant::now();
            let leading = *self.state.borrow() == Leadership::Leading;
            // A leader's attempt may not outlast its deadline: it must know it lost in time.
            let budget = match self.memory().renewed_at {
                Some(at) if leading => (at + self.timings.renew_deadline).saturating_duration_since(started),
                _ => self.timings.renew_deadline / 2,
            }
            .min(self.timings.renew_deadline / 2);
            match tokio::time::timeout(budget, self.look()).await {
                Ok(Ok(Look::Leads)) => {
                    self.memory().renewed_at = Some(started);
                    if !leading {
                        tracing::info!(identity = %self.identity, "acquired the lease: leading");
                    }
                    self.set(Leadership::Leading);
                }
                Ok(Ok(Look::Follows(holder))) if leading => {
                    tracing::error!(identity = %self.identity, %holder, "the lease was taken over: stopping");
                    self.set(Leadership::Lost);
                    return LostLease::TakenBy(holder);
                }
                Ok(Ok(Look::Follows(holder))) => {
                    if *self.state.borrow() != (Leadership::Standby { holder: Some(holder.clone()) }) {
                        tracing::info!(identity = %self.identity, %holder, "standing by: the lease is held by another operator");
                    }
                    self.set(Leadership::Standby { holder: Some(holder) });
                }
                Ok(Err(error)) => tracing::warn!(identity = %self.identity, %error, leading, "lease request failed"),
                Err(_) => {
                    tracing::warn!(identity = %self.identity, leading, timeout_ms = budget.as_millis() as u64, "lease request timed out")
                }
            }
            if *self.state.borrow() == Leadership::Starting {
                self.set(Leadership::Standby { holder: None });
            }
            if *self.state.borrow() == Leadership::Leading {
                let since = self.memory().renewed_at.map_or(Duration::MAX, |at| at.elapsed());
                if decide::must_stop(since, &self.timings) {
                    tracing::error!(identity = %self.identity, since_ms = since.as_millis() as u64, "could not renew the lease within the deadline: stopping");
                    self.set(Leadership::Lost);
                    return LostLease::NotRenewed(self.timings.renew_deadline);
                }
            }
            tokio::time::sleep(self.timings.retry_period).await;
        }
    }

    /// Read the Lease and write what [`decide`] says.
    async fn look(&self) -> Result<Look, KubeError> {
        let stored = self.api.get().await?;
        let now = Instant::now();
        let unchanged_for = {
            let mut memory = self.memory();
            match (&stored, &memory.seen) {
                (Some(s), Some((version, since))) if *version == s.version => now.duration_since(*since),
                (Some(s), _) => {
                    memory.seen = Some((s.version.clone(), now));
                    Duration::ZERO
                }
                (None, _) => {
                    memory.seen = None;
                    Duration::ZERO
                }
            }
        };
        let decision =
            decide(&self.identity, stored.as_ref().map(|s| &s.record), unchanged_for, self.clock.now(), &self.timings);
        let version = match (&decision, &stored) {
            (Decision::Create(record), _) => self.api.create(record).await?,
            (Decision::Write(record), Some(s)) => self.api.replace(record, &s.version).await?,
            (Decision::Write(record), None) => self.api.create(record).await?,
            (Decision::Follow { holder, .. }, _) => return Ok(Look::Follows(holder.clone())),
        };
        self.memory().seen = Some((version, Instant::now()));
        Ok(Look::Leads)
    }

    /// Give the Lease up, if this process holds it (on shutdown, after the last reconcile
    /// ended), so a standby takes over at its next look. Returns whether it was released.
    pub async fn release(&self) -> Result<bool, KubeError> {
        if *self.state.borrow() != Leadership::Leading {
            return Ok(false);
        }
        self.set(Leadership::Lost);
        let Some(stored) = self.api.get().await? else { return Ok(false) };
        if stored.record.holder.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        self.api.replace(&decide::released(&stored.record, self.clock.now()), &stored.version).await?;
        tracing::info!(identity = %self.identity, "released the lease");
        Ok(true)
    }
}

/// Wait until `state` says this process leads. Returns false if the elector stopped first.
pub async fn until_leading(state: &mut watch::Receiver<Leadership>) -> bool {
    state.wait_for(|s| *s == Leadership::Leading).await.is_ok()
}

/// Wait until this process has lost leadership (or the elector is gone).
pub async fn until_lost(state: &mut watch::Receiver<Leadership>) {
    let _ = state.wait_for(|s| *s == Leadership::Lost).await;
}

#[cfg(test)]
mod tests;
