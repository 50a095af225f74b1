//! The `kv` table: plugins' key/value values.

use crate::{PostgresStore, to_u64};
use connector_state::encoding;
use connector_state::{PluginValues, StateError};

impl PluginValues for PostgresStore {
    fn kv_get(&self, connector: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.with(|c| {
            Ok(c.session()
                .query_opt(
                    "SELECT value FROM kv WHERE connector = $1 AND key = $2",
                    &[&connector, &key],
                )?
                .map(|r| r.get(0)))
        })
    }

    fn kv_set(&mut self, connector: &str, key: &str, value: &[u8]) -> Result<(), StateError> {
        self.with(|c| {
            c.transaction(|tx| {
                // Writes of one connector take turns, so that two cannot
                // both fit the quota and together exceed it.
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended('kv:' || $1, 0))",
                    &[&connector],
                )?;
                let others: i64 = tx
                    .query_one(
                        "SELECT COALESCE(SUM(octet_length(key) + octet_length(value)), 0)::bigint
                         FROM kv WHERE connector = $1 AND key <> $2",
                        &[&connector, &key],
                    )?
                    .get(0);
                encoding::check_kv_write(connector, key, value, to_u64(others))?;
                tx.execute(
                    "INSERT INTO kv (connector, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (connector, key) DO UPDATE SET value = excluded.value",
                    &[&connector, &key, &value],
                )?;
                Ok(())
            })
        })
    }

    fn kv_delete(&mut self, connector: &str, key: &str) -> Result<(), StateError> {
        self.with(|c| {
            c.session().execute(
                "DELETE FROM kv WHERE connector = $1 AND key = $2",
                &[&connector, &key],
            )?;
            Ok(())
        })
    }

    fn kv_usage(&self, connector: &str) -> Result<u64, StateError> {
        self.with(|c| {
            let n: i64 = c
                .session()
                .query_one(
                    "SELECT COALESCE(SUM(octet_length(key) + octet_length(value)), 0)::bigint
                     FROM kv WHERE connector = $1",
                    &[&connector],
                )?
                .get(0);
            Ok(to_u64(n))
        })
    }
}
