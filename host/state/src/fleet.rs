//! Workers sharing connectors through one state: each run of a connector
//! holds a lease (owner, expiry, fencing token) that a [`LeaseKeeper`]
//! renews while it runs. A worker that dies or hangs loses the lease when
//! it expires and another worker takes it with the next token; every page
//! commit checks the token, so a worker that wakes up after its lease was
//! taken can never commit over its successor.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::StateError;

/// The SHA-256 of each file a connector's runs depend on, by what the file
/// is (`connector file`, `plugin`): workers whose fingerprints differ run
/// different configurations.
pub type Fingerprint = BTreeMap<String, String>;

/// The lease time when none is configured.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// A worker process as the fleet sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Unique per process: host name, process id and a random part.
    pub id: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// The connector release it runs.
    pub version: String,
    /// When it started.
    pub started_at_ms: i64,
    /// Its last heartbeat, on the state's clock (set by the store).
    pub heartbeat_at_ms: i64,
    /// The connectors it is configured to run, with their fingerprints.
    pub connectors: BTreeMap<String, Fingerprint>,
}

/// Who holds (or last held) a connector's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The connector.
    pub connector: String,
    /// The worker id of the holder.
    pub owner: String,
    /// Grows by one at every taking: a commit under an older token is refused.
    pub token: u64,
    /// When the lease lapses unless renewed, on the state's clock; 0 once
    /// released.
    pub expires_at_ms: i64,
    /// The holder's fingerprint of the connector's files.
    pub fingerprint: Fingerprint,
}

/// What a worker asks for when it wants to run a connector.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    /// The asking worker's id.
    pub owner: String,
    /// How long the lease lasts without renewal.
    pub ttl: Duration,
    /// The asking worker's fingerprint of the connector's files.
    pub fingerprint: Fingerprint,
}

/// The answer to a [`LeaseRequest`].
#[derive(Debug)]
pub enum LockOutcome {
    /// The lease is this worker's until the lock is dropped.
    Taken(RunLock),
    /// Another run holds it.
    Held {
        /// The holder's worker id.
        owner: String,
    },
    /// A live worker runs the connector with other files: this one must not.
    Mismatch {
        /// The files whose SHA-256 differs (or that only one side has).
        differs: Vec<String>,
        /// A live worker that runs the fleet's version.
        worker: String,
    },
}

/// Whether a lease is still this worker's to use, as far as it can tell
/// without asking the store: renewed in time and never refused.
#[derive(Debug, Clone)]
pub struct LeaseLiveness(Arc<Liveness>);

#[derive(Debug)]
struct Liveness {
    valid_until: Mutex<Instant>,
    lost: AtomicBool,
}

impl LeaseLiveness {
    /// A lease valid for `ttl` from now.
    pub fn new(ttl: Duration) -> LeaseLiveness {
        LeaseLiveness(Arc::new(Liveness {
            valid_until: Mutex::new(Instant::now() + ttl),
            lost: AtomicBool::new(false),
        }))
    }

    /// A lease that never lapses (an exclusive lock the operating system
    /// holds for the process).
    pub fn forever() -> LeaseLiveness {
        LeaseLiveness::new(Duration::from_secs(100 * 365 * 24 * 3600))
    }

    /// Whether the lease may still be used: a monotonic clock, so a process
    /// paused past its lease (SIGSTOP, a VM freeze) sees it lapsed on waking.
    pub fn is_live(&self) -> bool {
        !self.0.lost.load(Ordering::SeqCst) && Instant::now() < *lock(&self.0.valid_until)
    }

    fn renewed(&self, asked_at: Instant, ttl: Duration) {
        *lock(&self.0.valid_until) = asked_at + ttl;
    }

    fn lose(&self) {
        self.0.lost.store(true, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Renews a lease from a thread of its own, a third of the lease time
/// apart, until dropped or until the store says the lease is gone.
#[derive(Debug)]
pub struct LeaseKeeper {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl LeaseKeeper {
    /// Starts renewing: `renew` extends the lease by `ttl` and says whether
    /// it is still held (on its own connection: the run's may be busy).
    /// An error (the database unreachable) is retried at the next beat; the
    /// liveness lapses meanwhile when the lease time passes.
    pub fn spawn(
        ttl: Duration,
        liveness: LeaseLiveness,
        mut renew: impl FnMut() -> Result<bool, StateError> + Send + 'static,
    ) -> LeaseKeeper {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let beat = ttl / 3;
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                loop {
                    {
                        let (stopped, wake) = &*stop;
                        let guard = lock(stopped);
                        let (guard, _) = wake
                            .wait_timeout_while(guard, beat, |s| !*s)
                            .unwrap_or_else(|p| p.into_inner());
                        if *guard {
                            return;
                        }
                    }
                    let asked_at = Instant::now();
                    match renew() {
                        Ok(true) => liveness.renewed(asked_at, ttl),
                        Ok(false) => {
                            liveness.lose();
                            return;
                        }
                        Err(e) => tracing::warn!("lease renewal failed, retrying: {e}"),
                    }
                }
            })
        };
        LeaseKeeper {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *lock(stopped) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Held while a connector runs: the lease and what keeps it (an operating
/// system lock, a [`LeaseKeeper`]). Dropping it stops the renewals; the
/// host then releases the lease with [`Fleet::release_lease`] (or it lapses).
pub struct RunLock {
    lease: LeaseRecord,
    liveness: LeaseLiveness,
    _keep: Box<dyn std::any::Any + Send>,
}

impl RunLock {
    /// A lock on `lease`, kept for as long as `keep` lives.
    pub fn new(
        lease: LeaseRecord,
        liveness: LeaseLiveness,
        keep: impl std::any::Any + Send,
    ) -> RunLock {
        RunLock {
            lease,
            liveness,
            _keep: Box::new(keep),
        }
    }

    /// The lease taken.
    pub fn lease(&self) -> &LeaseRecord {
        &self.lease
    }

    /// The fencing token every commit of this run carries.
    pub fn token(&self) -> u64 {
        self.lease.token
    }

    /// Whether the lease is still this worker's (see [`LeaseLiveness`]).
    pub fn is_live(&self) -> bool {
        self.liveness.is_live()
    }

    /// What a run's pages carry to prove the lease is theirs.
    pub fn fence(&self) -> Fence {
        Fence {
            connector: self.lease.connector.clone(),
            token: self.lease.token,
            liveness: self.liveness.clone(),
        }
    }
}

/// A run's proof of its lease, checked before each page is imported (by
/// the worker, [`Fence::ensure_live`]) and when it is committed (by the
/// store, against [`Fence::token`]).
#[derive(Debug, Clone)]
pub struct Fence {
    connector: String,
    token: u64,
    liveness: LeaseLiveness,
}

impl Fence {
    /// The connector leased.
    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// The fencing token.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Refuses to go on once the lease has lapsed or been lost: another
    /// worker may already run the connector.
    pub fn ensure_live(&self) -> Result<(), StateError> {
        if self.liveness.is_live() {
            Ok(())
        } else {
            Err(StateError::LeaseLost {
                connector: self.connector.clone(),
            })
        }
    }
}

impl std::fmt::Debug for RunLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLock")
            .field("lease", &self.lease)
            .finish()
    }
}

/// The workers of a fleet and the leases they hold.
pub trait Fleet {
    /// Records `worker`'s heartbeat (the store sets the time) and the
    /// connectors it runs.
    fn heartbeat(&mut self, worker: &WorkerRecord) -> Result<(), StateError>;

    /// Removes a worker that stops cleanly.
    fn forget_worker(&mut self, worker_id: &str) -> Result<(), StateError>;

    /// Every worker that has sent a heartbeat, with the time of the last
    /// one, by id.
    fn workers(&self) -> Result<Vec<WorkerRecord>, StateError>;

    /// Every connector's lease (held, lapsed or released), by connector.
    fn leases(&self) -> Result<Vec<LeaseRecord>, StateError>;

    /// Releases the lease if `token` still holds it.
    fn release_lease(&mut self, connector: &str, token: u64) -> Result<(), StateError>;

    /// How many page commits were refused because their fencing token was
    /// stale.
    fn fenced_commits(&self) -> Result<u64, StateError>;

    /// The state's clock, in milliseconds since the epoch: the one leases
    /// and heartbeats are measured on.
    fn clock_ms(&self) -> Result<i64, StateError>;
}

/// Whether a worker asking with `ours` must refuse a connector whose last
/// lease was taken with `fleet`: only while a live worker other than
/// `asking` (heartbeat within `ttl` of `now_ms`) runs it with `fleet`. The
/// files that differ, and that worker, when it must.
pub fn fingerprint_conflict(
    connector: &str,
    fleet: &Fingerprint,
    ours: &Fingerprint,
    asking: &str,
    workers: &[WorkerRecord],
    now_ms: i64,
    ttl: Duration,
) -> Option<(Vec<String>, String)> {
    if fleet == ours || fleet.is_empty() {
        return None;
    }
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let worker = workers.iter().find(|w| {
        w.id != asking
            && now_ms - w.heartbeat_at_ms <= ttl_ms
            && w.connectors.get(connector) == Some(fleet)
    })?;
    let differs = fleet
        .keys()
        .chain(ours.keys())
        .filter(|file| fleet.get(*file) != ours.get(*file))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Some((differs, worker.id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(connector_file: &str, plugin: &str) -> Fingerprint {
        [
            ("connector file".to_string(), connector_file.to_string()),
            ("plugin".to_string(), plugin.to_string()),
        ]
        .into()
    }

    fn worker(id: &str, beat: i64, connector: &str, f: Fingerprint) -> WorkerRecord {
        WorkerRecord {
            id: id.to_string(),
            host: "h".to_string(),
            pid: 1,
            version: "0".to_string(),
            started_at_ms: 0,
            heartbeat_at_ms: beat,
            connectors: [(connector.to_string(), f)].into(),
        }
    }

    #[test]
    fn a_live_worker_with_other_files_makes_the_asker_refuse_naming_the_file() {
        let fleet = print("a", "p");
        let ours = print("b", "p");
        let workers = [worker("w1", 1_000, "c", fleet.clone())];
        let (differs, by) =
            fingerprint_conflict("c", &fleet, &ours, "w2", &workers, 5_000, DEFAULT_LEASE).unwrap();
        assert_eq!(differs, ["connector file"]);
        assert_eq!(by, "w1");
    }

    #[test]
    fn files_of_a_fleet_with_no_live_worker_left_do_not_block_an_upgrade() {
        let fleet = print("a", "p");
        let workers = [worker("w1", 1_000, "c", fleet.clone())];
        let late = 1_000 + 31_000;
        assert!(
            fingerprint_conflict(
                "c",
                &fleet,
                &print("b", "q"),
                "w2",
                &workers,
                late,
                DEFAULT_LEASE
            )
            .is_none()
        );
        assert!(
            fingerprint_conflict("c", &fleet, &fleet, "w2", &workers, 2_000, DEFAULT_LEASE)
                .is_none()
        );
    }

    #[test]
    fn a_lapsed_liveness_is_not_live_and_a_lost_one_never_again() {
        let live = LeaseLiveness::new(Duration::from_millis(30));
        assert!(live.is_live());
        std::thread::sleep(Duration::from_millis(40));
        assert!(!live.is_live());
        live.renewed(Instant::now(), Duration::from_secs(10));
        assert!(live.is_live());
        live.lose();
        assert!(!live.is_live());
    }

    #[test]
    fn the_keeper_renews_until_the_store_says_the_lease_is_gone() {
        let ttl = Duration::from_millis(90);
        let live = LeaseLiveness::new(ttl);
        let gone = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(Mutex::new(0));
        let (store_says_gone, counted) = (gone.clone(), calls.clone());
        let keeper = LeaseKeeper::spawn(ttl, live.clone(), move || {
            *lock(&counted) += 1;
            Ok(!store_says_gone.load(Ordering::SeqCst))
        });
        std::thread::sleep(Duration::from_millis(250));
        assert!(live.is_live(), "renewed past the first lease time");
        gone.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        assert!(!live.is_live(), "a refused renewal loses the lease at once");
        let renewals = *lock(&calls);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(*lock(&calls), renewals, "no renewal after the refusal");
        drop(keeper);
    }
}
