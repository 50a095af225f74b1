//! The `conversations` table: each conversation a connector's plugin
//! described, as JSON.

use connector_model::Conversation;
use rusqlite::{Transaction, params};

use crate::{SqliteStore, rows_for_ids};
use connector_state::ConversationDirectory;
use connector_state::StateError;

impl ConversationDirectory for SqliteStore {
    fn conversations(
        &self,
        connector: &str,
        ids: &[&str],
    ) -> Result<Vec<Conversation>, StateError> {
        let descriptions = rows_for_ids(
            &self.conn,
            "SELECT description FROM conversations WHERE connector = ? AND id IN",
            connector,
            ids,
            |r| r.get::<_, String>(0),
        )?;
        descriptions
            .iter()
            .map(|d| {
                serde_json::from_str(d).map_err(|e| StateError::Corrupt {
                    what: "conversation description",
                    message: e.to_string(),
                })
            })
            .collect()
    }
}

/// Remembers the page's conversations, inside its transaction.
pub(super) fn store(
    tx: &Transaction<'_>,
    connector: &str,
    conversations: &[Conversation],
) -> Result<(), StateError> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO conversations (connector, id, description) VALUES (?1, ?2, ?3)
         ON CONFLICT (connector, id) DO UPDATE SET description = excluded.description",
    )?;
    for c in conversations {
        let description = serde_json::to_string(c).map_err(|e| StateError::Corrupt {
            what: "conversation description",
            message: e.to_string(),
        })?;
        upsert.execute(params![connector, c.id, description])?;
    }
    Ok(())
}
