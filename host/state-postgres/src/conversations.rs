//! The `conversations` table: each conversation a connector's plugin
//! described, as JSON.

use connector_model::Conversation;
use postgres::Transaction;

use crate::{Fail, PostgresStore, Session};
use connector_state::encoding;
use connector_state::{ConversationDirectory, StateError};

impl ConversationDirectory for PostgresStore {
    fn conversations(
        &self,
        connector: &str,
        ids: &[&str],
    ) -> Result<Vec<Conversation>, StateError> {
        self.with(|c| {
            let rows = c.session().query(
                "SELECT description::text FROM conversations
                 WHERE connector = $1 AND id = ANY($2)",
                &[&connector, &ids],
            )?;
            rows.iter()
                .map(|r| Ok(encoding::parse_conversation(r.get::<_, &str>(0))?))
                .collect()
        })
    }
}

/// Remembers the page's conversations (the last description of an id
/// wins), inside its transaction, in one statement.
pub(crate) fn store(
    tx: &mut Session<'_, Transaction<'_>>,
    connector: &str,
    conversations: &[Conversation],
) -> Result<(), Fail> {
    if conversations.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::new();
    let mut descriptions = Vec::new();
    for c in last_of_each(conversations, |c| c.id.as_str()) {
        ids.push(c.id.as_str());
        descriptions.push(encoding::conversation_json(c)?);
    }
    tx.execute(
        "INSERT INTO conversations (connector, id, description)
         SELECT $1, u.id, u.description::jsonb FROM UNNEST($2::text[], $3::text[]) AS u(id, description)
         ON CONFLICT (connector, id) DO UPDATE SET description = excluded.description",
        &[&connector, &ids, &descriptions],
    )?;
    Ok(())
}

/// The last of the items with each key, in the order of their first
/// occurrence: what a series of replacing writes would leave.
pub(crate) fn last_of_each<'a, T>(items: &'a [T], key: impl Fn(&'a T) -> &'a str) -> Vec<&'a T> {
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut out: Vec<&T> = Vec::new();
    for item in items {
        match index.get(key(item)) {
            Some(&i) => out[i] = item,
            None => {
                index.insert(key(item), out.len());
                out.push(item);
            }
        }
    }
    out
}
