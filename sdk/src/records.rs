//! Constructors and `with_*` builder methods for the WIT records.
//!
//! A constructor takes the fields every record of its kind must have; every
//! other field starts empty (`None`, an empty list, `false`) and is set with
//! a `with_*` method named after it, which returns the record so calls chain.
//! When a later world adds an optional field, the SDK gives it a default
//! here and plugins built with the constructors compile unchanged; struct
//! literals, which name every field, would not. The fields stay public, so a
//! record can still be read, matched and changed field by field.
//!
//! Methods that add to a list (`with_message`, `with_properties`, …) append,
//! in call order, to what the list holds already.

use crate::ids::{AttachmentId, ConversationId, MessageId, PersonId};
use crate::{
    Attachment, AttachmentBody, BodyEncoding, Checkpoint, Conversation, ConversationKind,
    FetchSpec, Message, MessageKind, Page, Person, Relation, TimestampMs,
};

/// A value for an optional text field of a record: a `String`, a `&str` or
/// a `&String` sets it, an `Option<String>` sets or clears it. Lets
/// `.with_name("General")` and `.with_name(parsed.name)` (an
/// `Option<String>` from the source) read the same.
pub trait IntoOptionalString {
    /// The field's new value.
    fn into_optional_string(self) -> Option<String>;
}

impl IntoOptionalString for String {
    fn into_optional_string(self) -> Option<String> {
        Some(self)
    }
}

impl IntoOptionalString for &str {
    fn into_optional_string(self) -> Option<String> {
        Some(self.to_owned())
    }
}

impl IntoOptionalString for &String {
    fn into_optional_string(self) -> Option<String> {
        Some(self.clone())
    }
}

impl IntoOptionalString for Option<String> {
    fn into_optional_string(self) -> Option<String> {
        self
    }
}

/// Appends `items` to `list`, reusing the items' own allocation when `list`
/// is still empty (a `Vec` built by the plugin moves in without a copy).
fn append<T>(list: &mut Vec<T>, items: impl IntoIterator<Item = T>) {
    if list.is_empty() {
        *list = items.into_iter().collect();
    } else {
        list.extend(items);
    }
}

/// Defines `with_*` methods that set (or, given `None`, clear) an optional
/// text field.
macro_rules! text_setters {
    ($($(#[$doc:meta])* $method:ident => $field:ident;)*) => {$(
        $(#[$doc])*
        pub fn $method(mut self, value: impl IntoOptionalString) -> Self {
            self.$field = value.into_optional_string();
            self
        }
    )*};
}

/// Defines two `with_*` methods for a list field: one adding an item, one
/// adding several in order.
macro_rules! list_setters {
    ($($(#[$doc:meta])* $one:ident, $many:ident => $field:ident: $item:ty;)*) => {$(
        $(#[$doc])*
        pub fn $one(mut self, item: $item) -> Self {
            self.$field.push(item);
            self
        }

        #[doc = concat!("Adds several, in order, as [`Self::", stringify!($one), "`] adds one.")]
        pub fn $many(mut self, items: impl IntoIterator<Item = $item>) -> Self {
            append(&mut self.$field, items);
            self
        }
    )*};
}

/// Defines the header methods of a record with `headers` and
/// `secret-headers` ([`crate::http::Request`], [`FetchSpec`]).
macro_rules! header_setters {
    ($header:ident, $secret_header:ident) => {
        /// Adds a header sent as it is.
        pub fn $header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.headers.push((name.into(), value.into()));
            self
        }

        /// Adds a header whose value the host fills in from the declared
        /// secret `secret_name`; the plugin never sees the value.
        pub fn $secret_header(
            mut self,
            name: impl Into<String>,
            secret_name: impl Into<String>,
        ) -> Self {
            self.secret_headers.push((name.into(), secret_name.into()));
            self
        }
    };
}

pub(crate) use header_setters;

impl Person {
    /// A person known by id only: no display name, no email.
    pub fn new(id: impl Into<PersonId>) -> Self {
        Person {
            id: id.into().into_string(),
            display_name: None,
            email: None,
        }
    }

    text_setters! {
        /// Sets the name shown in email headers (`display-name`).
        with_name => display_name;
        /// Sets the email address the source knows for the person; the host
        /// maps the person to a mailbox by it when the mapping CSV does not
        /// name them.
        with_email => email;
    }
}

impl Conversation {
    /// A conversation without a name or participants.
    pub fn new(id: impl Into<ConversationId>, kind: ConversationKind) -> Self {
        Conversation {
            id: id.into().into_string(),
            kind,
            name: None,
            participants: Vec::new(),
        }
    }

    text_setters! {
        /// Sets the room or channel name, which the host uses as the email
        /// subject.
        with_name => name;
    }

    list_setters! {
        /// Adds a participant: someone whose mailbox receives the
        /// conversation's messages.
        with_participant, with_participants => participants: Person;
    }
}

impl Message {
    /// A message with no relations, bodies, attachments, original bytes or
    /// properties.
    pub fn new(
        id: impl Into<MessageId>,
        conversation_id: impl Into<ConversationId>,
        sender: Person,
        sent_at: TimestampMs,
        kind: MessageKind,
    ) -> Self {
        Message {
            id: id.into().into_string(),
            conversation_id: conversation_id.into().into_string(),
            sender,
            sent_at,
            kind,
            relations: Vec::new(),
            text: None,
            html: None,
            attachments: Vec::new(),
            original: None,
            properties: Vec::new(),
        }
    }

    /// [`Message::new`] of kind [`MessageKind::Chat`], an ordinary message.
    pub fn chat(
        id: impl Into<MessageId>,
        conversation_id: impl Into<ConversationId>,
        sender: Person,
        sent_at: TimestampMs,
    ) -> Self {
        Message::new(id, conversation_id, sender, sent_at, MessageKind::Chat)
    }

    text_setters! {
        /// Sets the plain-text body.
        with_text => text;
        /// Sets the HTML body, which the plugin must have sanitized.
        with_html => html;
    }

    list_setters! {
        /// Adds a link to another message (reply, forward, edit, deletion).
        with_relation, with_relations => relations: Relation;
        /// Adds an attached file.
        with_attachment, with_attachments => attachments: Attachment;
    }

    /// Sets the source item's bytes exactly as the source delivered them;
    /// the host records their SHA-256 for auditors.
    pub fn with_original(mut self, original: impl Into<Vec<u8>>) -> Self {
        self.original = Some(original.into());
        self
    }

    /// Adds a source fact, recorded as an `X-Connector-Property-*` header.
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((name.into(), value.into()));
        self
    }

    /// Adds source facts as `(name, value)` pairs, in order.
    pub fn with_properties(
        mut self,
        properties: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        append(&mut self.properties, properties);
        self
    }

    /// Names the participants of other organisations (their person ids):
    /// the host's mapping applies its policy for external participants to
    /// them (by default they are named in the email and the admin log, and
    /// a message they have no mailbox for is not quarantined). Recorded as
    /// the property [`EXTERNAL_PARTICIPANTS`]; no ids, no property.
    pub fn with_external_participants<I, P>(self, ids: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PersonId>,
    {
        let ids: Vec<String> = ids.into_iter().map(|id| id.into().into_string()).collect();
        if ids.is_empty() {
            return self;
        }
        self.with_property(EXTERNAL_PARTICIPANTS, ids.join(","))
    }
}

/// The property [`Message::with_external_participants`] writes.
pub const EXTERNAL_PARTICIPANTS: &str = "External-Participants";

impl Page {
    /// A page with no conversations or messages that ends at `checkpoint`
    /// and is not the last one of the run.
    pub fn new(checkpoint: impl Into<Checkpoint>) -> Self {
        Page {
            conversations: Vec::new(),
            messages: Vec::new(),
            checkpoint: checkpoint.into(),
            complete: false,
        }
    }

    list_setters! {
        /// Adds the description of a conversation that this page's messages
        /// use and no earlier page of the session described.
        with_conversation, with_conversations => conversations: Conversation;
        /// Adds a message after the ones the page holds: the host imports
        /// them in this order.
        with_message, with_messages => messages: Message;
    }

    /// Sets whether the source has nothing more right now, which ends the
    /// run after this page.
    pub fn with_complete(mut self, complete: bool) -> Self {
        self.complete = complete;
        self
    }
}

impl Attachment {
    /// An attachment whose media type and size are unknown.
    pub fn new(
        id: impl Into<AttachmentId>,
        file_name: impl Into<String>,
        body: AttachmentBody,
    ) -> Self {
        Attachment {
            id: id.into().into_string(),
            file_name: file_name.into(),
            media_type: None,
            size: None,
            body,
        }
    }

    text_setters! {
        /// Sets the MIME type.
        with_media_type => media_type;
    }

    /// Sets the size in bytes (a `u64`, or an `Option<u64>` that may clear
    /// it); with it the host keeps small files in memory and spools the
    /// others.
    pub fn with_size(mut self, size: impl Into<Option<u64>>) -> Self {
        self.size = size.into();
        self
    }
}

impl FetchSpec {
    /// A download of `url` without headers, taken as the file itself
    /// ([`BodyEncoding::Identity`]).
    pub fn new(url: impl Into<String>) -> Self {
        FetchSpec {
            url: url.into(),
            headers: Vec::new(),
            secret_headers: Vec::new(),
            encoding: BodyEncoding::Identity,
        }
    }

    header_setters!(with_header, with_secret_header);

    /// Sets how the response body encodes the file.
    pub fn with_encoding(mut self, encoding: BodyEncoding) -> Self {
        self.encoding = encoding;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Destructures every field, so that a field a new world adds fails to
    /// compile here until its default is chosen in the constructor.
    #[test]
    fn constructors_leave_every_optional_field_empty() {
        let ann = Person::new("u-ann");
        let Person {
            id,
            display_name,
            email,
        } = ann.clone();
        assert_eq!((id.as_str(), display_name, email), ("u-ann", None, None));

        let Conversation {
            id,
            kind,
            name,
            participants,
        } = Conversation::new("room", ConversationKind::Room);
        assert_eq!(
            (id.as_str(), kind, name),
            ("room", ConversationKind::Room, None)
        );
        assert!(participants.is_empty());

        let Message {
            id,
            conversation_id,
            sender,
            sent_at,
            kind,
            relations,
            text,
            html,
            attachments,
            original,
            properties,
        } = Message::chat("m1", "room", ann.clone(), 7);
        assert_eq!(
            (id.as_str(), conversation_id.as_str(), sender, sent_at, kind),
            ("m1", "room", ann, 7, MessageKind::Chat)
        );
        assert!(relations.is_empty() && attachments.is_empty() && properties.is_empty());
        assert_eq!((text, html, original), (None, None, None));

        let Page {
            conversations,
            messages,
            checkpoint,
            complete,
        } = Page::new(b"1");
        assert!(conversations.is_empty() && messages.is_empty() && !complete);
        assert_eq!(checkpoint, b"1");

        let Attachment {
            id,
            file_name,
            media_type,
            size,
            body,
        } = Attachment::new("a", "a.txt", AttachmentBody::Deferred);
        assert_eq!(
            (id.as_str(), file_name.as_str(), media_type, size, body),
            ("a", "a.txt", None, None, AttachmentBody::Deferred)
        );

        let FetchSpec {
            url,
            headers,
            secret_headers,
            encoding,
        } = FetchSpec::new("https://files.example.test/a");
        assert_eq!(url, "https://files.example.test/a");
        assert!(headers.is_empty() && secret_headers.is_empty());
        assert_eq!(encoding, BodyEncoding::Identity);
    }

    #[test]
    fn builder_methods_set_the_same_records_as_literals() {
        let ann = Person::new("u-ann")
            .with_name("Ann")
            .with_email(Some("ann@example.test".to_string()));
        let spec = FetchSpec::new("https://files.example.test/a")
            .with_header("x-a", "1")
            .with_secret_header("authorization", "token")
            .with_encoding(BodyEncoding::Base64);
        let html = String::from("<p>hi</p>");
        let message = Message::new("m2", "room", ann.clone(), 8, MessageKind::Edit)
            .with_relation(Relation::EditOf("m1".into()))
            .with_relations([Relation::ReplyTo("m0".into())])
            .with_text("hi")
            .with_html(&html)
            .with_attachment(
                Attachment::new("a", "a.bin", AttachmentBody::Fetch(spec.clone()))
                    .with_media_type("application/octet-stream")
                    .with_size(3),
            )
            .with_original("{}")
            .with_property("k1", "v1")
            .with_properties(vec![("k2".to_string(), "v2".to_string())]);
        let conversation = Conversation::new("room", ConversationKind::Room)
            .with_name("Hello")
            .with_participants(vec![ann.clone()])
            .with_participant(Person::new("u-bob"));
        let page = Page::new(b"2".to_vec())
            .with_conversations([conversation.clone()])
            .with_message(message.clone())
            .with_messages(vec![message.clone()])
            .with_conversation(conversation.clone())
            .with_complete(true);
        assert_eq!(
            message,
            Message {
                id: "m2".into(),
                conversation_id: "room".into(),
                sender: Person {
                    id: "u-ann".into(),
                    display_name: Some("Ann".into()),
                    email: Some("ann@example.test".into()),
                },
                sent_at: 8,
                kind: MessageKind::Edit,
                relations: vec![
                    Relation::EditOf("m1".into()),
                    Relation::ReplyTo("m0".into())
                ],
                text: Some("hi".into()),
                html: Some(html),
                attachments: vec![Attachment {
                    id: "a".into(),
                    file_name: "a.bin".into(),
                    media_type: Some("application/octet-stream".into()),
                    size: Some(3),
                    body: AttachmentBody::Fetch(FetchSpec {
                        url: "https://files.example.test/a".into(),
                        headers: vec![("x-a".into(), "1".into())],
                        secret_headers: vec![("authorization".into(), "token".into())],
                        encoding: BodyEncoding::Base64,
                    }),
                }],
                original: Some(b"{}".to_vec()),
                properties: vec![("k1".into(), "v1".into()), ("k2".into(), "v2".into())],
            }
        );
        assert_eq!(conversation.participants, vec![ann, Person::new("u-bob")]);
        assert_eq!(
            page,
            Page {
                conversations: vec![conversation.clone(), conversation],
                messages: vec![message.clone(), message],
                checkpoint: b"2".to_vec(),
                complete: true,
            }
        );
    }

    #[test]
    fn optional_setters_clear_with_none() {
        let person = Person::new("u").with_name("U").with_name(None);
        assert_eq!(person.display_name, None);
        let message = Message::chat("m", "c", person, 0)
            .with_text(None)
            .with_html(None);
        assert_eq!((message.text, message.html), (None, None));
        let attachment = Attachment::new("a", "a", AttachmentBody::Deferred)
            .with_size(4)
            .with_size(None);
        assert_eq!(attachment.size, None);
    }
}
