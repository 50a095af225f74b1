//! The session interface the pipeline drives, whatever a plugin is built
//! with: a [`Source`] opens a [`SourceSession`], which yields [`Page`]s.

use connector_model::{Conversation, Message, Unreadable};

use crate::PluginError;
use crate::attachments::MAX_CHECKPOINT;

/// A page of normalized messages with attachments already fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Conversations first described in this page.
    pub conversations: Vec<Conversation>,
    /// Messages in import order.
    pub messages: Vec<Message>,
    /// The position after this page, committed once the page is delivered.
    pub checkpoint: Vec<u8>,
    /// Whether the source has nothing more for now.
    pub complete: bool,
    /// Conversations the plugin reported it could not read while it made
    /// this page.
    pub unreadable: Vec<Unreadable>,
}

impl Page {
    /// This page followed by `next`, as one: the conversations and
    /// messages of both, `next`'s checkpoint and completeness.
    pub fn absorb(&mut self, next: Page) {
        self.conversations.extend(next.conversations);
        self.messages.extend(next.messages);
        self.checkpoint = next.checkpoint;
        self.complete = next.complete;
        self.unreadable.extend(next.unreadable);
    }

    /// Refuses a page past the host's limits, the same for every kind of
    /// plugin: a checkpoint over [`MAX_CHECKPOINT`] bytes (the host stores
    /// it with every commit) or a conversation of more than
    /// [`MAX_PARTICIPANTS`] people (each may be a mailbox every message of
    /// it goes to). A plugin's bug, or a hostile plugin, then stops its run
    /// with an error instead of the host.
    pub fn check_limits(&self) -> Result<(), PluginError> {
        if self.checkpoint.len() > MAX_CHECKPOINT {
            return Err(PluginError::Protocol(format!(
                "checkpoint of {} bytes is larger than the {MAX_CHECKPOINT} the host stores",
                self.checkpoint.len()
            )));
        }
        if let Some(c) = self
            .conversations
            .iter()
            .find(|c| c.participants.len() > MAX_PARTICIPANTS)
        {
            return Err(PluginError::Protocol(format!(
                "conversation {} lists {} participants, more than the {MAX_PARTICIPANTS} the host takes in one conversation (every participant may be a mailbox each of its messages goes to)",
                c.id,
                c.participants.len()
            )));
        }
        Ok(())
    }
}

/// Most people one conversation may list.
pub const MAX_PARTICIPANTS: usize = 250_000;

/// Longest partition id a plugin may list, in bytes.
pub const MAX_PARTITION_ID: usize = 256;

/// Refuses a listing with an empty, overlong or repeated partition id: the
/// host keys checkpoints and leases by these ids.
pub fn check_partition_ids(ids: &[String]) -> Result<(), PluginError> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        let problem = if id.is_empty() {
            "is empty"
        } else if id.len() > MAX_PARTITION_ID {
            "is longer than 256 bytes"
        } else if !seen.insert(id.as_str()) {
            "is listed twice"
        } else {
            continue;
        };
        return Err(PluginError::Protocol(format!(
            "the plugin listed a partition id that {problem} ({:?}); partition ids must be unique, stable and 1 to {MAX_PARTITION_ID} bytes; report this to the plugin's author",
            id.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

/// One run of a source: the pipeline pulls pages until one is complete.
pub trait SourceSession {
    /// The next page.
    fn next_page(&mut self) -> Result<Page, PluginError>;
}

/// A loaded plugin that can start sessions.
pub trait Source {
    /// Checks the plugin's configuration without touching the network.
    fn validate_config(&mut self, config_json: &str) -> Result<(), PluginError>;
    /// The ids of the partitions the source has now; none when it is read
    /// as one whole (every plugin of API 0.1.0, every native plugin).
    fn partitions(&mut self, config_json: &str) -> Result<Vec<String>, PluginError> {
        let _ = config_json;
        Ok(Vec::new())
    }
    /// Starts a session of `partition` (`None`: the whole source) from its
    /// last committed checkpoint.
    fn open(
        &mut self,
        config_json: &str,
        partition: Option<&str>,
        checkpoint: Option<Vec<u8>>,
    ) -> Result<Box<dyn SourceSession + '_>, PluginError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ids: &[&str], checkpoint: &[u8], complete: bool) -> Page {
        let conversation = connector_model::Conversation {
            id: format!("c-{}", ids[0]),
            kind: connector_model::ConversationKind::Room,
            name: None,
            participants: Vec::new(),
        };
        let messages = ids
            .iter()
            .map(|id| Message {
                id: id.to_string(),
                conversation_id: conversation.id.clone(),
                sender: connector_model::Person {
                    id: "u".into(),
                    display_name: None,
                    email: None,
                },
                sent_at: 0,
                kind: connector_model::MessageKind::Chat,
                relations: Vec::new(),
                text: None,
                html: None,
                attachments: Vec::new(),
                source_sha256: String::new(),
                properties: Vec::new(),
            })
            .collect();
        Page {
            conversations: vec![conversation],
            messages,
            checkpoint: checkpoint.to_vec(),
            complete,
            unreadable: Vec::new(),
        }
    }

    #[test]
    fn partition_listings_with_empty_long_or_repeated_ids_are_refused() {
        let ok = vec!["a".to_string(), "b".to_string()];
        assert!(check_partition_ids(&ok).is_ok());
        for bad in [
            vec![String::new()],
            vec!["x".repeat(MAX_PARTITION_ID + 1)],
            vec!["a".to_string(), "a".to_string()],
        ] {
            let e = check_partition_ids(&bad).unwrap_err().to_string();
            assert!(e.contains("partition id"), "{e}");
        }
    }

    #[test]
    fn pages_committed_together_keep_order_and_take_the_last_checkpoint() {
        let mut first = page(&["m1", "m2"], b"cp-1", false);
        first.absorb(page(&["m3"], b"cp-2", true));
        let ids: Vec<&str> = first.messages.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["m1", "m2", "m3"]);
        assert_eq!(first.conversations.len(), 2);
        assert_eq!(first.checkpoint, b"cp-2");
        assert!(first.complete);
    }
}
