//! One run of a connector at a time, across processes: a run holds an
//! exclusive lock on `<state>/locks/<connector>.lock` (released by the
//! operating system when the process ends, also on `kill -9`), so that a
//! `run --once`, a backfill or a redelivery never races the daemon into the
//! same mailboxes.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use super::RunError;
use connector_state::StateError;

/// Held while a connector runs.
#[derive(Debug)]
pub(crate) struct ConnectorLock {
    _file: File,
}

impl ConnectorLock {
    /// Takes the connector's lock, or says who holds it.
    pub(crate) fn acquire(state_dir: &Path, connector: &str) -> Result<ConnectorLock, RunError> {
        let dir = state_dir.join("locks");
        let io = |e: std::io::Error| {
            RunError::State(StateError::Io(format!(
                "cannot use the lock folder {}: {e}",
                dir.display()
            )))
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(format!("{connector}.lock")))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(ConnectorLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(RunError::Busy {
                connector: connector.to_string(),
            }),
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }
}
