//! The `checkpoints` table.

use postgres::Transaction;

use crate::{Fail, PostgresStore, Session};
use connector_state::{CheckpointSlot, Checkpoints, RunId, StateError};

impl Checkpoints for PostgresStore {
    fn checkpoint(&self, connector: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.with(|c| {
            Ok(c.session()
                .query_opt(
                    "SELECT data FROM checkpoints WHERE connector = $1",
                    &[&connector],
                )?
                .map(|r| r.get(0)))
        })
    }

    fn clear_checkpoint(&mut self, connector: &str) -> Result<(), StateError> {
        self.with(|c| {
            c.session().execute(
                "DELETE FROM checkpoints WHERE connector = $1",
                &[&connector],
            )?;
            Ok(())
        })
    }

    fn partition_checkpoints(&self, connector: &str) -> Result<u64, StateError> {
        let prefix = connector_state::partition_lease(connector, "");
        let length = prefix.chars().count() as i32;
        self.with(|c| {
            let n: i64 = c
                .session()
                .query_one(
                    "SELECT count(*) FROM checkpoints WHERE substr(connector, 1, $2) = $1",
                    &[&prefix, &length],
                )?
                .get(0);
            Ok(n.unsigned_abs())
        })
    }
}

/// Stores the page's checkpoint in its slot, inside the page's transaction.
pub(crate) fn store(
    tx: &mut Session<'_, Transaction<'_>>,
    connector: &str,
    run: RunId,
    slot: &CheckpointSlot,
    checkpoint: &[u8],
) -> Result<(), Fail> {
    let key = match slot {
        CheckpointSlot::Connector => connector,
        CheckpointSlot::Key(key) => key.as_str(),
        CheckpointSlot::Keep => return Ok(()),
    };
    tx.execute(
        "INSERT INTO checkpoints (connector, data, run_id) VALUES ($1, $2, $3)
         ON CONFLICT (connector) DO UPDATE SET data = excluded.data, run_id = excluded.run_id",
        &[&key, &checkpoint, &run.0],
    )?;
    Ok(())
}
