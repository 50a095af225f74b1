//! Any message the model allows, built with `arbitrary`, into an email;
//! the email must parse back with the same Message-ID.
#![no_main]

use arbitrary::Arbitrary;
use connector_email::EmailConverter;
use connector_model::{
    Attachment, AttachmentData, Conversation, ConversationKind, Message, MessageKind, Person,
    Relation,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct ArbPerson {
    id: String,
    display_name: Option<String>,
    email: Option<String>,
}

impl From<ArbPerson> for Person {
    fn from(p: ArbPerson) -> Person {
        Person {
            id: p.id,
            display_name: p.display_name,
            email: p.email,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct ArbAttachment {
    id: String,
    file_name: String,
    media_type: Option<String>,
    bytes: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    source_id: String,
    source_name: String,
    id: String,
    sender: ArbPerson,
    sent_at: i64,
    kind: u8,
    conversation_kind: u8,
    conversation_name: Option<String>,
    participants: Vec<ArbPerson>,
    relations: Vec<(u8, String)>,
    text: Option<String>,
    html: Option<String>,
    attachments: Vec<ArbAttachment>,
    source_sha256: String,
    properties: Vec<(String, String)>,
}

fn pick<T: Copy>(choices: &[T], n: u8) -> T {
    choices[usize::from(n) % choices.len()]
}

fuzz_target!(|input: Input| {
    let conversation = Conversation {
        id: "c".into(),
        kind: pick(
            &[
                ConversationKind::Direct,
                ConversationKind::Group,
                ConversationKind::Room,
                ConversationKind::Feed,
            ],
            input.conversation_kind,
        ),
        name: input.conversation_name,
        participants: input.participants.into_iter().map(Person::from).collect(),
    };
    let message = Message {
        id: input.id,
        conversation_id: "c".into(),
        sender: input.sender.into(),
        sent_at: input.sent_at,
        kind: pick(
            &[
                MessageKind::Chat,
                MessageKind::Edit,
                MessageKind::Deletion,
                MessageKind::MemberJoined,
                MessageKind::MemberLeft,
                MessageKind::System,
            ],
            input.kind,
        ),
        relations: input
            .relations
            .into_iter()
            .map(|(k, id)| match k % 4 {
                0 => Relation::ReplyTo(id),
                1 => Relation::ForwardOf(id),
                2 => Relation::EditOf(id),
                _ => Relation::Deletes(id),
            })
            .collect(),
        text: input.text,
        html: input.html,
        attachments: input
            .attachments
            .into_iter()
            .map(|a| Attachment {
                id: a.id,
                file_name: a.file_name,
                media_type: a.media_type,
                data: AttachmentData::Bytes(a.bytes),
            })
            .collect(),
        source_sha256: input.source_sha256,
        properties: input.properties,
    };
    let converter = EmailConverter::new(&input.source_id, &input.source_name);
    let Ok(email) = converter.convert(&message, &conversation) else {
        assert!(message.id.is_empty(), "only a message without an id is refused");
        return;
    };
    let bytes = email.in_memory().expect("a fuzzed email is small enough for memory");
    let parsed = mail_parser::MessageParser::default()
        .parse(bytes)
        .expect("every email parses");
    assert_eq!(parsed.message_id(), Some(converter.message_id(&message.id).as_str()));
});
