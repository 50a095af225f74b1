//! The `conversations` table: each conversation a connector's plugin
//! described, as JSON.

use connector_model::Conversation;
use rusqlite::{Transaction, params};

use crate::{SqliteStore, rows_for_ids};
use connector_state::ConversationDirectory;
use connector_state::StateError;
use connector_state::encoding;

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
            .map(|d| encoding::parse_conversation(d))
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
        let description = encoding::conversation_json(c)?;
        upsert.execute(params![connector, c.id, description])?;
    }
    Ok(())
}
