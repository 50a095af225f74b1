//! The `checkpoints` table.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::SqliteStore;
use connector_state::Checkpoints;
use connector_state::StateError;
use connector_state::{CheckpointSlot, RunId};

impl Checkpoints for SqliteStore {
    fn checkpoint(&self, connector: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self
            .conn
            .query_row(
                "SELECT data FROM checkpoints WHERE connector = ?1",
                [connector],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn clear_checkpoint(&mut self, connector: &str) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM checkpoints WHERE connector = ?1", [connector])?;
        Ok(())
    }

    fn partition_checkpoints(&self, connector: &str) -> Result<u64, StateError> {
        let prefix = connector_state::partition_lease(connector, "");
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM checkpoints WHERE substr(connector, 1, ?2) = ?1",
            params![prefix, prefix.chars().count() as i64],
            |r| r.get(0),
        )?;
        Ok(n.unsigned_abs())
    }
}

/// Stores the page's checkpoint in its slot, inside the page's transaction.
pub(super) fn store(
    tx: &Transaction<'_>,
    connector: &str,
    run: RunId,
    slot: &CheckpointSlot,
    checkpoint: &[u8],
) -> Result<(), StateError> {
    let key = match slot {
        CheckpointSlot::Connector => connector,
        CheckpointSlot::Key(key) => key.as_str(),
        CheckpointSlot::Keep => return Ok(()),
    };
    tx.execute(
        "INSERT INTO checkpoints (connector, data, run_id) VALUES (?1, ?2, ?3)
         ON CONFLICT (connector) DO UPDATE SET data = excluded.data,
            run_id = excluded.run_id",
        params![key, checkpoint, run.0],
    )?;
    Ok(())
}
