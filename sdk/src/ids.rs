//! Id newtypes taken by the record constructors ([`crate::Message::new`],
//! [`crate::Conversation::new`], [`crate::Person::new`],
//! [`crate::Attachment::new`]).
//!
//! The WIT records keep plain `String` ids (the world is frozen); these types
//! only name what a constructor argument is. Each converts from `String`,
//! `&str` and `&String`, so passing text stays as short as before, while a
//! plugin that keeps its ids as these types cannot hand a conversation id
//! where a message id belongs: the compiler refuses it.

/// Defines one id newtype over `String` with its conversions.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The `String` the WIT records hold.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_owned())
            }
        }

        impl From<&String> for $name {
            fn from(id: &String) -> Self {
                $name(id.clone())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

id_type! {
    /// Id of a [`crate::Message`]: unique and stable within the source, the
    /// host's idempotency key (also the target of a [`crate::Relation`]).
    MessageId
}

id_type! {
    /// Id of a [`crate::Conversation`], stable within the source.
    ConversationId
}

id_type! {
    /// Id of a [`crate::Person`], stable within the source: the key of the
    /// operator's mapping CSV (`ExternalUserId`).
    PersonId
}

id_type! {
    /// Id of an [`crate::Attachment`], unique within its message; the host
    /// passes it back to [`crate::Source::open_attachment`].
    AttachmentId
}

id_type! {
    /// Id of a partition of the source (a stream, a stable shard of
    /// channels), stable across listings: the host keeps a checkpoint and a
    /// lease per partition (see [`crate::Source::partitions`]).
    PartitionId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_convert_from_and_into_text_unchanged() {
        let owned = String::from("C01/1709543100.000200");
        assert_eq!(MessageId::from(&owned).as_str(), owned);
        assert_eq!(MessageId::from(owned.as_str()), owned.as_str());
        assert_eq!(String::from(MessageId::from(owned.clone())), owned);
        assert_eq!(ConversationId::from("C01").to_string(), "C01");
        assert_eq!(PersonId::from("U01").into_string(), "U01");
        assert_eq!(AttachmentId::from("F01").as_ref(), "F01");
    }
}
