//! The plugin's key/value store, kept in the host's state database under
//! the connector's id.

use connector_runtime::{KvError, PluginKv};
use connector_state::{SharedStore, StateError, StateStore};

/// One connector's values in the state database.
pub(crate) struct StateKv {
    pub(crate) db: SharedStore,
    pub(crate) connector: String,
}

impl StateKv {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut dyn StateStore, &str) -> Result<T, StateError>,
    ) -> Result<T, KvError> {
        let mut db = self
            .db
            .lock()
            .map_err(|_| KvError::Other("the state store is unavailable".into()))?;
        f(&mut *db, &self.connector).map_err(|e| match e {
            StateError::QuotaExceeded { .. } => KvError::QuotaExceeded,
            StateError::TooLarge { limit, .. } => KvError::TooLarge(limit),
            other => KvError::Other(other.to_string()),
        })
    }
}

impl PluginKv for StateKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.with(|db, connector| db.kv_get(connector, key))
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.with(|db, connector| db.kv_set(connector, key, value))
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.with(|db, connector| db.kv_delete(connector, key))
    }
}
