//! What the host does to every plugin's data, whatever kind of plugin gave
//! it: blank names and addresses become absent, and each message gets its
//! source digest.

use connector_model::digest::{normalized_digest, sha256_hex};
use connector_model::{Conversation, Message, Person};

fn person(p: Person) -> Person {
    Person {
        id: p.id,
        display_name: p.display_name.filter(|n| !n.trim().is_empty()),
        email: p.email.filter(|e| !e.trim().is_empty()),
    }
}

/// A conversation as the plugin described it, cleaned.
pub(crate) fn conversation(c: Conversation) -> Conversation {
    Conversation {
        name: c.name.filter(|n| !n.trim().is_empty()),
        participants: c.participants.into_iter().map(person).collect(),
        ..c
    }
}

/// A message as the plugin gave it (with `source_sha256` not yet set),
/// with its source digest: the SHA-256 of `original` when the plugin gave
/// the item's bytes, otherwise of the message itself. Then cleaned.
pub(crate) fn message(mut m: Message, original: Option<&[u8]>) -> Message {
    m.source_sha256 = match original {
        Some(bytes) => sha256_hex(bytes),
        None => normalized_digest(&m),
    };
    m.sender = person(m.sender);
    m
}
