//! Two electors on one in-memory Lease, in tokio's paused time: who leads, when a standby takes
//! over, and that a leader stops before anyone else can start.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::kube_api::{KubeError, KubeErrorKind};

#[derive(Default)]
struct Store {
    lease: Option<StoredLease>,
    next: u64,
}

/// One shared Lease; `cut` makes this client's requests fail, as a partition from the API
/// server does.
#[derive(Clone)]
struct MemLease {
    store: Arc<Mutex<Store>>,
    cut: Arc<std::sync::atomic::AtomicBool>,
}

fn err(operation: &'static str, error: KubeErrorKind) -> KubeError {
    KubeError {
        operation,
        kind: "Lease".into(),
        namespace: "ns".into(),
        name: "l".into(),
        error,
        message: String::new(),
    }
}

impl MemLease {
    fn check(&self, operation: &'static str) -> Result<(), KubeError> {
        if self.cut.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(err(operation, KubeErrorKind::Transport));
        }
        Ok(())
    }
    fn holder(&self) -> Option<String> {
        self.store.lock().ok()?.lease.as_ref()?.record.holder.clone()
    }
}

#[async_trait]
impl LeaseApi for MemLease {
    async fn get(&self) -> Result<Option<StoredLease>, KubeError> {
        self.check("get")?;
        Ok(self.store.lock().map_err(|_| err("get", KubeErrorKind::Transport))?.lease.clone())
    }
    async fn create(&self, record: &LeaseRecord) -> Result<String, KubeError> {
        self.check("create")?;
        let mut s = self.store.lock().map_err(|_| err("create", KubeErrorKind::Transport))?;
        if s.lease.is_some() {
            return Err(err("create", KubeErrorKind::Conflict));
        }
        s.next += 1;
        let version = s.next.to_string();
        s.lease = Some(StoredLease { record: record.clone(), version: version.clone() });
        Ok(version)
    }
    async fn replace(&self, record: &LeaseRecord, version: &str) -> Result<String, KubeError> {
        self.check("replace")?;
        let mut s = self.store.lock().map_err(|_| err("replace", KubeErrorKind::Transport))?;
        if s.lease.as_ref().map(|l| l.version.as_str()) != Some(version) {
            return Err(err("replace", KubeErrorKind::Conflict));
        }
        s.next += 1;
        let version = s.next.to_string();
        s.lease = Some(StoredLease { record: record.clone(), version: version.clone() });
        Ok(version)
    }
}

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::UNIX_EPOCH
    }
    fn fill_random(&self, buf: &mut [u8]) {
        buf.fill(0);
    }
}

type TestElector = Arc<Elector<MemLease, FixedClock>>;

fn spawn(e: &TestElector) -> tokio::task::JoinHandle<LostLease> {
    let e = e.clone();
    tokio::spawn(async move { e.run().await })
}

/// `a` leading on a fresh Lease and `b` started beside it.
struct Two {
    ea: TestElector,
    sa: tokio::sync::watch::Receiver<Leadership>,
    sb: tokio::sync::watch::Receiver<Leadership>,
    /// `a`'s election task.
    a: tokio::task::JoinHandle<LostLease>,
    /// `a`'s client of the Lease (cut it to partition `a` from the API).
    lease: MemLease,
}

async fn a_leads_then_b_starts() -> Two {
    let store = Arc::new(Mutex::new(Store::default()));
    let lease = MemLease { store: store.clone(), cut: Arc::default() };
    let ea = Arc::new(Elector::new(lease.clone(), FixedClock, "a".into(), Timings::default()));
    let b = MemLease { store, cut: Arc::default() };
    let eb = Arc::new(Elector::new(b, FixedClock, "b".into(), Timings::default()));
    let (mut sa, sb) = (ea.subscribe(), eb.subscribe());
    let a = spawn(&ea);
    assert!(until_leading(&mut sa).await);
    // Detached: it runs until the test's runtime ends.
    let _b = spawn(&eb);
    Two { ea, sa, sb, a, lease }
}

#[tokio::test(start_paused = true)]
async fn the_first_leads_and_the_second_stands_by() {
    let Two { sa, mut sb, lease, .. } = a_leads_then_b_starts().await;
    sb.wait_for(|s| matches!(s, Leadership::Standby { .. })).await.ok();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(*sa.borrow(), Leadership::Leading);
    assert_eq!(*sb.borrow(), Leadership::Standby { holder: Some("a".into()) });
    assert_eq!(lease.holder().as_deref(), Some("a"));
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_within_one_retry_period() {
    let Two { ea, mut sb, a, lease, .. } = a_leads_then_b_starts().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    a.abort();
    assert_eq!(ea.release().await, Ok(true));
    let released = tokio::time::Instant::now();
    assert!(until_leading(&mut sb).await);
    assert!(released.elapsed() <= Timings::default().retry_period, "took {:?}", released.elapsed());
    assert_eq!(lease.holder().as_deref(), Some("b"));
}

#[tokio::test(start_paused = true)]
async fn a_crashed_leader_is_replaced_after_the_lease_duration() {
    let Two { mut sb, a, .. } = a_leads_then_b_starts().await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    a.abort();
    let crashed = tokio::time::Instant::now();
    assert!(until_leading(&mut sb).await);
    let waited = crashed.elapsed();
    // Its last renewal was at most a retry period before the crash; the standby waits out the
    // duration from when it saw that renewal, and looks every retry period.
    let t = Timings::default();
    assert!(waited >= t.lease_duration - t.retry_period, "took over after {waited:?}");
    assert!(waited <= t.lease_duration + t.retry_period, "took over after {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_from_the_api_stops_before_the_standby_starts() {
    let Two { sa, mut sb, a, lease: cut_a, .. } = a_leads_then_b_starts().await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    cut_a.cut.store(true, std::sync::atomic::Ordering::SeqCst);
    let lost = a.await.ok();
    let stopped = tokio::time::Instant::now();
    assert_eq!(lost, Some(LostLease::NotRenewed(Timings::default().renew_deadline)));
    assert_eq!(*sa.borrow(), Leadership::Lost);
    assert_eq!(*sb.borrow(), Leadership::Standby { holder: Some("a".into()) }, "b must not lead while a does");
    assert!(until_leading(&mut sb).await);
    let gap = stopped.elapsed();
    assert!(gap >= Duration::from_secs(3), "a stopped only {gap:?} before b started");
}

#[tokio::test(start_paused = true)]
async fn a_restarted_leader_with_the_same_identity_keeps_leading() {
    // `b` stands by meanwhile: it must not get in the way.
    let Two { a, lease, .. } = a_leads_then_b_starts().await;
    a.abort();
    // The container restarts in the same pod: same name, so its own Lease is renewed at once.
    let again = Arc::new(Elector::new(lease.clone(), FixedClock, "a".into(), Timings::default()));
    let mut s = again.subscribe();
    let _r = spawn(&again);
    let started = tokio::time::Instant::now();
    assert!(until_leading(&mut s).await);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn timings_that_cannot_keep_leaders_apart_are_refused() {
    assert!(Timings::from_secs(15, 10, 2).is_ok());
    let e = Timings::from_secs(10, 10, 2).unwrap_err();
    assert!(e.to_string().contains("--lease-renew-deadline-seconds (10) must be shorter"), "{e}");
    assert!(Timings::from_secs(15, 10, 0).is_err());
    assert!(Timings::from_secs(15, 10, 10).is_err());
}
