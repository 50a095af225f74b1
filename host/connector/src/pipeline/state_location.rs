//! Where a host keeps its state, and how a worker takes part in a fleet.

use std::path::PathBuf;
use std::time::Duration;

use std::sync::{Arc, Mutex};

use connector_state::{DEFAULT_LEASE, SharedStore, StateError, StateStore};
use connector_state_postgres::{PostgresConfig, PostgresStore};
use connector_state_sqlite::SqliteStore;

/// Where the host keeps its state.
#[derive(Debug, Clone)]
pub enum StateLocation {
    /// A SQLite file: the processes of one machine share it.
    Sqlite(PathBuf),
    /// A PostgreSQL database: a fleet of workers on any machines share it.
    Postgres(Box<PostgresConfig>),
}

impl StateLocation {
    /// Opens a connection of its own (the run loop, the status server and
    /// the heartbeat each have one).
    pub fn open(&self) -> Result<Box<dyn StateStore>, StateError> {
        match self {
            StateLocation::Sqlite(path) => Ok(Box::new(SqliteStore::open(path)?)),
            StateLocation::Postgres(config) => Ok(Box::new(PostgresStore::connect(config)?)),
        }
    }

    /// Opens a connection to share between threads.
    pub fn open_shared(&self) -> Result<SharedStore, StateError> {
        match self {
            StateLocation::Sqlite(path) => Ok(Arc::new(Mutex::new(SqliteStore::open(path)?))),
            StateLocation::Postgres(config) => {
                Ok(Arc::new(Mutex::new(PostgresStore::connect(config)?)))
            }
        }
    }

    /// The file, or the server's URL without its password.
    pub fn describe(&self) -> String {
        match self {
            StateLocation::Sqlite(path) => path.display().to_string(),
            StateLocation::Postgres(config) => config.redacted(),
        }
    }
}

/// How a host opens its state and shares it with other workers.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Where the state is; `None` is `state.db` in the state folder.
    pub state: Option<StateLocation>,
    /// How long a run's lease lasts without renewal (renewed every third
    /// of it); a worker that stops renewing loses its connectors after it.
    pub lease_time: Duration,
}

impl Default for HostSettings {
    fn default() -> HostSettings {
        HostSettings {
            state: None,
            lease_time: DEFAULT_LEASE,
        }
    }
}
