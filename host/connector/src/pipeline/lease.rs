//! Who this worker is, and the lease each of its runs holds: taken before
//! a run starts, renewed while it goes on, released when it ends.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use connector_model::digest::sha256_hex;
use connector_model::time::now_ms;
use connector_state::{Fence, Fingerprint, LeaseRequest, LockOutcome, RunLock, WorkerRecord};

use super::{Host, RunError};
use crate::config::ConnectorConfig;

/// This process as the fleet knows it.
#[derive(Debug, Clone)]
pub struct WorkerIdentity {
    /// Unique per process: `host:pid:start time`.
    pub id: String,
    /// The machine's name.
    pub host: String,
    /// This process's id.
    pub pid: u32,
    /// When the process opened its state.
    pub started_at_ms: i64,
}

impl WorkerIdentity {
    /// This process.
    pub fn current() -> WorkerIdentity {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        let pid = std::process::id();
        let started_at_ms = now_ms();
        WorkerIdentity {
            id: format!("{host}:{pid}:{started_at_ms:x}"),
            host,
            pid,
            started_at_ms,
        }
    }

    /// Its heartbeat record, running the connectors of `fingerprints`.
    pub fn record(&self, fingerprints: BTreeMap<String, Fingerprint>) -> WorkerRecord {
        WorkerRecord {
            id: self.id.clone(),
            host: self.host.clone(),
            pid: self.pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at_ms: self.started_at_ms,
            heartbeat_at_ms: 0,
            connectors: fingerprints,
        }
    }
}

/// The [`fingerprint`] of each connector, by id: read once by a daemon
/// for its heartbeats and its status, once by `connector status`.
pub fn fingerprints(configs: &[ConnectorConfig]) -> BTreeMap<String, Fingerprint> {
    configs
        .iter()
        .map(|c| (c.id.clone(), fingerprint(c)))
        .collect()
}

/// The SHA-256 of each file the connector's runs depend on: the connector
/// file, the plugin's manifest and plugin file, and the user map. A file
/// that cannot be read is left out (the run itself reports it).
pub fn fingerprint(config: &ConnectorConfig) -> Fingerprint {
    let mut files: Vec<(&str, std::path::PathBuf)> = vec![
        ("connector file", config.path.clone()),
        ("plugin manifest", config.plugin.clone()),
    ];
    if let Ok(manifest) = connector_runtime::PluginManifest::load_unpinned(&config.plugin) {
        files.push(("plugin", manifest.wasm_path()));
    }
    if let Some(csv) = &config.mapping.overrides {
        files.push(("user map", csv.clone()));
    }
    files
        .into_iter()
        .filter_map(|(what, path)| Some((what.to_string(), file_sha256(&path)?)))
        .collect()
}

fn file_sha256(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|bytes| sha256_hex(&bytes))
}

impl Host {
    /// Takes the lease that lets one run of the connector go on at a time,
    /// across processes and, with a shared state, across machines: a
    /// `run --once`, a backfill or a redelivery never races the daemon into
    /// the same mailboxes.
    pub(super) fn lock_runs(&self, config: &ConnectorConfig) -> Result<HeldLease<'_>, RunError> {
        match self.lease_outcome(config, &config.id)? {
            LockOutcome::Taken(lock) => Ok(self.held(lock)),
            LockOutcome::Held { owner } => Err(RunError::Busy {
                connector: config.id.clone(),
                owner,
            }),
            LockOutcome::Mismatch { differs, worker } => Err(mismatch(config, differs, worker)),
        }
    }

    /// Takes the lease `name` of a partition of the connector; `None` while
    /// another run holds it.
    pub(super) fn take_lease(
        &self,
        config: &ConnectorConfig,
        name: &str,
    ) -> Result<Option<HeldLease<'_>>, RunError> {
        match self.lease_outcome(config, name)? {
            LockOutcome::Taken(lock) => Ok(Some(self.held(lock))),
            LockOutcome::Held { .. } => Ok(None),
            LockOutcome::Mismatch { differs, worker } => Err(mismatch(config, differs, worker)),
        }
    }

    fn lease_outcome(&self, config: &ConnectorConfig, name: &str) -> Result<LockOutcome, RunError> {
        let request = LeaseRequest {
            owner: self.worker.id.clone(),
            ttl: self.lease_time,
            fingerprint: fingerprint(config),
        };
        Ok(self.db().lock_runs(name, &request)?)
    }

    fn held(&self, lock: RunLock) -> HeldLease<'_> {
        HeldLease {
            host: self,
            lock: Some(lock),
        }
    }

    /// How long a lease lasts without renewal.
    pub fn lease_time(&self) -> Duration {
        self.lease_time
    }

    /// This worker.
    pub fn worker(&self) -> &WorkerIdentity {
        &self.worker
    }
}

fn mismatch(config: &ConnectorConfig, differs: Vec<String>, worker: String) -> RunError {
    RunError::Mismatch {
        connector: config.id.clone(),
        differs: differs.join(", "),
        worker,
    }
}

/// A run's lease, released when dropped (whatever way the run ends), so
/// the next run, here or on another worker, need not wait for it to lapse.
pub(super) struct HeldLease<'a> {
    host: &'a Host,
    lock: Option<RunLock>,
}

impl HeldLease<'_> {
    /// What the run's pages carry.
    pub fn fence(&self) -> Fence {
        self.lock
            .as_ref()
            .map(RunLock::fence)
            .expect("held until dropped")
    }
}

impl Drop for HeldLease<'_> {
    fn drop(&mut self) {
        let Some(lock) = self.lock.take() else { return };
        let (connector, token) = (lock.lease().connector.clone(), lock.token());
        drop(lock);
        if let Err(e) = self.host.db().release_lease(&connector, token) {
            tracing::warn!(connector = %connector, "cannot release the lease, it lapses on its own: {e}");
        }
    }
}
