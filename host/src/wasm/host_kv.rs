//! The plugin's small key/value store, kept in the host's state database
//! under the connector's id.

use super::latest::state::{self, StateError};
use super::sandbox::SandboxState;
use crate::state::StateError as DbError;

fn to_wit(e: DbError) -> StateError {
    match e {
        DbError::QuotaExceeded { .. } => StateError::QuotaExceeded,
        DbError::TooLarge { limit, .. } => StateError::TooLarge(limit),
        other => StateError::Other(other.to_string()),
    }
}

impl SandboxState {
    fn kv<T>(
        &mut self,
        f: impl FnOnce(&mut crate::state::StateDb, &str) -> Result<T, DbError>,
    ) -> Result<T, StateError> {
        let Some(kv) = &self.kv else {
            return Err(StateError::Other(
                "this host gives the plugin no state store".into(),
            ));
        };
        let mut db = kv
            .db
            .lock()
            .map_err(|_| StateError::Other("the state store is unavailable".into()))?;
        f(&mut db, &kv.connector).map_err(to_wit)
    }
}

impl state::Host for SandboxState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, StateError> {
        self.kv(|db, connector| db.kv_get(connector, &key))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), StateError> {
        self.kv(|db, connector| db.kv_set(connector, &key, &value))
    }

    fn delete(&mut self, key: String) -> Result<(), StateError> {
        self.kv(|db, connector| db.kv_delete(connector, &key))
    }
}

impl super::latest::types::Host for SandboxState {}
