//! The `kv` table: plugins' key/value values.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::{SqliteStore, to_u64};
use connector_state::PluginValues;
use connector_state::StateError;
use connector_state::encoding;

impl PluginValues for SqliteStore {
    fn kv_get(&self, connector: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM kv WHERE connector = ?1 AND key = ?2",
                params![connector, key],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn kv_set(&mut self, connector: &str, key: &str, value: &[u8]) -> Result<(), StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let others: i64 = tx.query_row(
            "SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)), 0)
             FROM kv WHERE connector = ?1 AND key <> ?2",
            params![connector, key],
            |r| r.get(0),
        )?;
        encoding::check_kv_write(connector, key, value, to_u64(others))?;
        tx.execute(
            "INSERT INTO kv (connector, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (connector, key) DO UPDATE SET value = excluded.value",
            params![connector, key, value],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn kv_delete(&mut self, connector: &str, key: &str) -> Result<(), StateError> {
        self.conn.execute(
            "DELETE FROM kv WHERE connector = ?1 AND key = ?2",
            params![connector, key],
        )?;
        Ok(())
    }

    fn kv_usage(&self, connector: &str) -> Result<u64, StateError> {
        let n: i64 = self.conn.query_row(
            "SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)), 0)
             FROM kv WHERE connector = ?1",
            [connector],
            |r| r.get(0),
        )?;
        Ok(to_u64(n))
    }
}
