//! Plugin data (WIT types of the newest world) into the host's model.

use connector_model as model;

use super::latest::types as wit;
use crate::attachments::{Body, Described};
use crate::http::{BodyEncoding, FetchSpec};
use crate::normalize;

fn person(p: wit::Person) -> model::Person {
    model::Person {
        id: p.id,
        display_name: p.display_name,
        email: p.email,
    }
}

pub(crate) fn conversation(c: wit::Conversation) -> model::Conversation {
    normalize::conversation(model::Conversation {
        id: c.id,
        kind: match c.kind {
            wit::ConversationKind::Direct => model::ConversationKind::Direct,
            wit::ConversationKind::Group => model::ConversationKind::Group,
            wit::ConversationKind::Room => model::ConversationKind::Room,
            wit::ConversationKind::Feed => model::ConversationKind::Feed,
        },
        name: c.name,
        participants: c.participants.into_iter().map(person).collect(),
    })
}

fn kind(k: wit::MessageKind) -> model::MessageKind {
    match k {
        wit::MessageKind::Chat => model::MessageKind::Chat,
        wit::MessageKind::Edit => model::MessageKind::Edit,
        wit::MessageKind::Deletion => model::MessageKind::Deletion,
        wit::MessageKind::MemberJoined => model::MessageKind::MemberJoined,
        wit::MessageKind::MemberLeft => model::MessageKind::MemberLeft,
        wit::MessageKind::System => model::MessageKind::System,
    }
}

fn relation(r: wit::Relation) -> model::Relation {
    match r {
        wit::Relation::ReplyTo(id) => model::Relation::ReplyTo(id),
        wit::Relation::ForwardOf(id) => model::Relation::ForwardOf(id),
        wit::Relation::EditOf(id) => model::Relation::EditOf(id),
        wit::Relation::Deletes(id) => model::Relation::Deletes(id),
    }
}

/// A message whose attachments the runner resolved separately. Its
/// normalized digest leaves the attachments out, as it always has for wasm
/// plugins (recorded digests must not change).
pub(crate) fn message(m: wit::Message, attachments: Vec<model::Attachment>) -> model::Message {
    let message = model::Message {
        id: m.id,
        conversation_id: m.conversation_id,
        sender: person(m.sender),
        sent_at: m.sent_at,
        kind: kind(m.kind),
        relations: m.relations.into_iter().map(relation).collect(),
        text: m.text,
        html: m.html,
        attachments: Vec::new(),
        source_sha256: String::new(),
        properties: m.properties,
    };
    model::Message {
        attachments,
        ..normalize::message(message, m.original.as_deref())
    }
}

/// An attachment as the plugin describes it.
pub(crate) fn attachment(a: wit::Attachment) -> Described {
    Described {
        id: a.id,
        file_name: a.file_name,
        media_type: a.media_type,
        size: a.size,
        body: match a.body {
            wit::AttachmentBody::Inline(bytes) => Body::Inline(bytes),
            wit::AttachmentBody::Fetch(spec) => Body::Fetch(fetch_spec(spec)),
            wit::AttachmentBody::Deferred => Body::Deferred,
        },
    }
}

fn fetch_spec(spec: wit::FetchSpec) -> FetchSpec {
    FetchSpec {
        url: spec.url,
        headers: spec.headers,
        secret_headers: spec.secret_headers,
        encoding: match spec.encoding {
            wit::BodyEncoding::Identity => BodyEncoding::Identity,
            wit::BodyEncoding::Base64 => BodyEncoding::Base64,
        },
    }
}
