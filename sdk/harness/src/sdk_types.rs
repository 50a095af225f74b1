//! Pages as the host received them, in the SDK's types: what a plugin
//! author's test compares with what the plugin built.

use connector_model as model;
use connector_model::AttachmentData;
use connector_runtime::PluginError;
use connector_sdk as sdk;

/// `page` in the SDK's types, attachments read into memory (a spooled one
/// from its file, before the session removes it). The host's cleaning shows:
/// blank names and addresses are absent. `original` is always `None`: the
/// host keeps only its digest ([`crate::Run::source_sha256`]).
pub(crate) fn page(page: connector_runtime::Page) -> Result<sdk::Page, PluginError> {
    let mut messages = Vec::with_capacity(page.messages.len());
    for m in page.messages {
        messages.push(message(m)?);
    }
    Ok(sdk::Page::new(page.checkpoint)
        .with_conversations(page.conversations.into_iter().map(conversation))
        .with_messages(messages)
        .with_complete(page.complete))
}

fn person(p: model::Person) -> sdk::Person {
    sdk::Person::new(p.id)
        .with_name(p.display_name)
        .with_email(p.email)
}

fn conversation(c: model::Conversation) -> sdk::Conversation {
    let kind = match c.kind {
        model::ConversationKind::Direct => sdk::ConversationKind::Direct,
        model::ConversationKind::Group => sdk::ConversationKind::Group,
        model::ConversationKind::Room => sdk::ConversationKind::Room,
        model::ConversationKind::Feed => sdk::ConversationKind::Feed,
    };
    sdk::Conversation::new(c.id, kind)
        .with_name(c.name)
        .with_participants(c.participants.into_iter().map(person))
}

fn message(m: model::Message) -> Result<sdk::Message, PluginError> {
    let kind = match m.kind {
        model::MessageKind::Chat => sdk::MessageKind::Chat,
        model::MessageKind::Edit => sdk::MessageKind::Edit,
        model::MessageKind::Deletion => sdk::MessageKind::Deletion,
        model::MessageKind::MemberJoined => sdk::MessageKind::MemberJoined,
        model::MessageKind::MemberLeft => sdk::MessageKind::MemberLeft,
        model::MessageKind::System => sdk::MessageKind::System,
    };
    let relations = m.relations.into_iter().map(|r| match r {
        model::Relation::ReplyTo(id) => sdk::Relation::ReplyTo(id),
        model::Relation::ForwardOf(id) => sdk::Relation::ForwardOf(id),
        model::Relation::EditOf(id) => sdk::Relation::EditOf(id),
        model::Relation::Deletes(id) => sdk::Relation::Deletes(id),
    });
    let mut attachments = Vec::with_capacity(m.attachments.len());
    for a in m.attachments {
        let bytes = match a.data {
            AttachmentData::Bytes(bytes) => bytes,
            AttachmentData::File(path) => std::fs::read(&path).map_err(|e| {
                PluginError::Transient(format!(
                    "reading the spooled attachment {}: {e}",
                    path.display()
                ))
            })?,
        };
        let size = bytes.len() as u64;
        attachments.push(
            sdk::Attachment::new(a.id, a.file_name, sdk::AttachmentBody::Inline(bytes))
                .with_media_type(a.media_type)
                .with_size(size),
        );
    }
    Ok(
        sdk::Message::new(m.id, m.conversation_id, person(m.sender), m.sent_at, kind)
            .with_relations(relations)
            .with_text(m.text)
            .with_html(m.html)
            .with_attachments(attachments)
            .with_properties(m.properties),
    )
}
