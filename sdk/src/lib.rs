//! # connector-sdk
//!
//! Everything needed to write a **source plugin** for the connector framework:
//! a WebAssembly component (target `wasm32-wasip2`) that reads a third-party
//! communication system and hands the host pages of normalized messages.
//!
//! A plugin is one type implementing [`Source`] plus one [`export!`] line. The
//! plugin crate needs no knowledge of `wit-bindgen` or of the component model:
//! the SDK generates the bindings for the WIT world
//! `connector:source/source-plugin@0.2.0` (shipped in `wit/v0.2.0`) and adapts
//! them to the [`Source`] and [`AttachmentReader`] traits.
//!
//! ## A complete plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "hello-source"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! connector-sdk = { path = "../sdk" }
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```no_run
//! use connector_sdk::{Conversation, ConversationKind, Message, Page, Person, Source, SourceError};
//!
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     greeting: String,
//! }
//!
//! /// Emits one greeting, then reports that it is complete.
//! struct Hello {
//!     greeting: String,
//!     done: bool,
//! }
//!
//! impl Source for Hello {
//!     const NAME: &'static str = "hello";
//!     const VERSION: &'static str = env!("CARGO_PKG_VERSION");
//!
//!     fn validate_config(config_json: &str) -> Result<(), SourceError> {
//!         connector_sdk::parse_config::<Config>(config_json).map(|_| ())
//!     }
//!
//!     fn open(config_json: &str, checkpoint: Option<Vec<u8>>) -> Result<Self, SourceError> {
//!         let config: Config = connector_sdk::parse_config(config_json)?;
//!         // The checkpoint is whatever an earlier page returned; here "1" means done.
//!         let done = checkpoint.as_deref() == Some(b"1".as_slice());
//!         Ok(Hello { greeting: config.greeting, done })
//!     }
//!
//!     fn next_page(&mut self) -> Result<Page, SourceError> {
//!         let alice = Person::new("alice")
//!             .with_name("Alice")
//!             .with_email("alice@example.test");
//!         let mut page = Page::new(b"1").with_complete(true);
//!         if !self.done {
//!             page = page
//!                 .with_conversation(
//!                     Conversation::new("general", ConversationKind::Room)
//!                         .with_name("General")
//!                         .with_participant(alice.clone()),
//!                 )
//!                 .with_message(
//!                     Message::chat("hello-1", "general", alice, 1_700_000_000_000)
//!                         .with_text(&self.greeting),
//!                 );
//!             self.done = true;
//!         }
//!         connector_sdk::info!("page built"; messages = page.messages.len());
//!         Ok(page)
//!     }
//! }
//!
//! connector_sdk::export!(Hello);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! file in `target/wasm32-wasip2/release/` is the component the host loads.
//!
//! ## Building records
//!
//! The records of the WIT world ([`Page`], [`Conversation`], [`Message`],
//! [`Person`], [`Attachment`], [`FetchSpec`]) have constructors taking what
//! each must have, and `with_*` methods for everything else, which starts
//! empty:
//!
//! ```
//! use connector_sdk::{Attachment, AttachmentBody, FetchSpec, Message, Person, Relation};
//!
//! let ann = Person::new("u-ann").with_name("Ann").with_email("ann@example.test");
//! let reply = Message::chat("m-2", "room-1", ann, 1_700_000_000_000)
//!     .with_relation(Relation::ReplyTo("m-1".into()))
//!     .with_text("See the agenda.")
//!     .with_attachment(
//!         Attachment::new(
//!             "agenda",
//!             "agenda.pdf",
//!             AttachmentBody::Fetch(FetchSpec::new("https://files.example.test/agenda")),
//!         )
//!         .with_media_type("application/pdf"),
//!     )
//!     .with_property("channel", "web");
//! assert_eq!(reply.html, None);
//! ```
//!
//! Build records this way rather than with struct literals: when a later
//! world adds an optional field, the SDK gives it a default and the plugin
//! compiles unchanged, where a literal would have to name the new field.
//! Optional text fields take a `&str`, a `String` or an `Option<String>`
//! ([`IntoOptionalString`]). Ids are taken as [`MessageId`],
//! [`ConversationId`], [`PersonId`] and [`AttachmentId`], which convert from
//! any string.
//!
//! ## What the host offers
//!
//! * [`http`]: outbound HTTP, limited to the origins the manifest declares and
//!   the operator grants, with secrets filled into headers by the host;
//! * [`secrets`]: declared secrets, when a plugin must see a value;
//! * [`signing`]: signatures made with keys the plugin never sees;
//! * [`state`]: a small persistent key/value store;
//! * [`log`]: structured lines in the host's run log (see [`info!`] and
//!   friends);
//! * WASI (`std::fs`, clocks, random): files only inside the folder the
//!   operator grants.
//!
//! Outside the host (native unit tests) the host imports are unavailable:
//! [`http`], [`secrets`], [`signing`] and [`state`] return errors and [`log`]
//! records nothing, so that plugin logic can be tested with `cargo test`.
//!
//! ## Errors
//!
//! Every failure is a [`SourceError`], whose variant tells the host whether to
//! retry. Conversions exist from [`http::HttpError`], [`secrets::SecretError`],
//! [`signing::SigningError`], [`state::StateError`] and [`std::io::Error`], so
//! `?` does the sensible thing; [`http::classify_status`] turns HTTP statuses
//! into the right variant. `RateLimited` and `Transient` make the host pause
//! and open a new session at the last committed checkpoint; the others stop
//! the run with the message shown to the operator. A panic is a crash: the
//! host reports it and never calls that instance again.
//!
//! ## Capabilities
//!
//! The plugin's `manifest.toml` declares every origin, secret, signing key
//! and folder access it may use; the operator grants a subset; the plugin
//! gets the intersection. Asking for anything else is an **error value**
//! (for example [`http::HttpError::Denied`], [`secrets::SecretError::NotDeclared`]),
//! never a trap. Only the sandbox's limits (`memory-mb`, `timeout-secs` per
//! call) stop a plugin.
//!
//! ## Checkpoints
//!
//! [`Page::checkpoint`] is the position *after* the page. The host commits
//! it together with the page's deliveries, once all of them succeeded, and
//! hands the last committed one to [`Source::open`] on the next run; a page
//! that failed half-way is produced again from the previous checkpoint (and
//! never delivered twice). Put in it what you need to continue right after
//! the page — a server cursor, an offset in an append-only file,
//! per-conversation high-water marks — as versioned bytes such as
//! `{"v":1,"cursor":"…"}`, at most 1 MiB. Never keep resume positions in
//! [`state`]: its writes survive a failed page.
//!
//! ## Attachments
//!
//! [`AttachmentBody::Inline`] for small files already in hand (≤ 8 MiB),
//! [`AttachmentBody::Fetch`] for a URL the host downloads itself under the
//! plugin's HTTP grants (any size; the bytes never enter the sandbox), and
//! [`AttachmentBody::Deferred`] for files the plugin reads itself, later,
//! through [`Source::open_attachment`] in chunks (any size): a
//! [`ChunkReader`] reads them from any [`std::io::Read`]. Set `size` when
//! known.
//!
//! ## Testing
//!
//! Test parsing and paging natively with `cargo test`. Test the built
//! component as the host runs it with the harness crate
//! `connector-plugin-harness` (`sdk/harness`): scripted HTTP responses,
//! granted folders, secrets and state in, pages and requests out, no
//! network.
//!
//! ## Versioning
//!
//! The WIT world of a released [`API_VERSION`] never changes; a new world
//! is a new folder under `wit/`, and hosts keep running plugins built
//! against the old ones (they read the version from the component). Declare
//! [`API_VERSION`] as the manifest's `api-version`.
//!
//! The full guide, with the manifest, the capability model, errors and
//! retries, state, logging and native or non-Rust plugins, is
//! `docs/plugin-guide.md` in the repository.

#![warn(missing_docs)]

use std::cell::RefCell;
use std::marker::PhantomData;

pub mod files;
pub mod http;
pub mod log;
pub mod report;
pub mod secrets;
pub mod signing;
pub mod state;
pub mod time;

mod chunk_reader;
mod ids;
mod records;

pub use chunk_reader::ChunkReader;
pub use ids::{AttachmentId, ConversationId, MessageId, PartitionId, PersonId};
pub use records::{EXTERNAL_PARTICIPANTS, IntoOptionalString};

/// Generated guest bindings for the `source-plugin` world. Not part of the
/// stable API: use the re-exports at the crate root and the modules instead.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "source-plugin",
        path: "wit/v0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_source_plugin",
        default_bindings_module: "connector_sdk::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

use bindings::exports::connector::source::source as guest;

pub use bindings::connector::source::types::{
    Attachment, AttachmentBody, BodyEncoding, Checkpoint, Conversation, ConversationKind,
    FetchSpec, Message, MessageKind, Page, Person, Relation, SourceError, TimestampMs,
};

/// Version of this SDK, reported to the host in the plugin's `info`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Version of the WIT package (`connector:source`) this SDK implements; the
/// `api-version` a plugin's manifest declares. The one place the SDK names
/// its version: a test checks that the bindings are generated from
/// `wit/v{API_VERSION}`, whose package carries this version.
pub const API_VERSION: &str = "0.2.0";

/// A source of messages: what a plugin implements.
///
/// The host calls [`Source::validate_config`] when the operator saves a
/// configuration, then for every sync run [`Source::open`] once and
/// [`Source::next_page`] until a page is `complete`, calling
/// [`Source::open_attachment`] for `deferred` attachments of the messages it
/// received in between. The value is dropped at the end of the run.
///
/// Register the implementation with [`export!`].
pub trait Source: Sized + 'static {
    /// Name of the source, for example `symphony`.
    const NAME: &'static str;
    /// The plugin's own version; `env!("CARGO_PKG_VERSION")` is a good value.
    const VERSION: &'static str;

    /// Checks a configuration (JSON text) without touching the network.
    ///
    /// The default accepts everything. Return
    /// [`SourceError::InvalidConfig`] to reject it; [`parse_config`] does that
    /// for configurations that do not deserialize.
    fn validate_config(config_json: &str) -> Result<(), SourceError> {
        let _ = config_json;
        Ok(())
    }

    /// Starts a sync run of the whole source (a source that lists no
    /// partitions).
    ///
    /// `checkpoint` is the token of the last page whose messages the host
    /// delivered in an earlier run, or `None` on the first run.
    fn open(config_json: &str, checkpoint: Option<Vec<u8>>) -> Result<Self, SourceError>;

    /// The partitions of the source now: parts the host reads on their
    /// own, each with its own checkpoint, several at once and on several
    /// workers (a chat service's streams, stable shards of channels).
    ///
    /// The default lists none: the source is read as one whole through
    /// [`Source::open`]. A source that lists partitions is opened once per
    /// partition through [`Source::open_partition`] instead. The host asks
    /// at the start of every run, so a part that appears is read from then
    /// on and one that is no longer listed keeps what was archived.
    fn partitions(config_json: &str) -> Result<Vec<PartitionId>, SourceError> {
        let _ = config_json;
        Ok(Vec::new())
    }

    /// Starts a sync run of one partition listed by [`Source::partitions`].
    ///
    /// `checkpoint` is the partition's last committed token. On a
    /// partition's first run after the source was read as one whole, it is
    /// the whole source's last token, so the plugin can go on from its
    /// position there. The default refuses: implement it together with
    /// [`Source::partitions`].
    fn open_partition(
        config_json: &str,
        partition: PartitionId,
        checkpoint: Option<Vec<u8>>,
    ) -> Result<Self, SourceError> {
        let _ = (config_json, checkpoint);
        Err(SourceError::Permanent(format!(
            "plugin {} lists partitions but cannot open one (asked for {partition}); \
             implement Source::open_partition",
            Self::NAME
        )))
    }

    /// Returns the next page of messages.
    ///
    /// A page lists in `conversations` the conversations its messages belong
    /// to that no earlier page of this run described, carries the checkpoint
    /// of the position after it, and sets `complete` when there is nothing
    /// more for now.
    fn next_page(&mut self) -> Result<Page, SourceError>;

    /// Opens the bytes of an attachment that was announced as
    /// [`AttachmentBody::Deferred`] in a message of this run.
    ///
    /// The default answers with a permanent error: plugins that announce no
    /// deferred attachments need not implement it.
    fn open_attachment(
        &mut self,
        message_id: &str,
        attachment_id: &str,
    ) -> Result<Box<dyn AttachmentReader>, SourceError> {
        Err(SourceError::Permanent(format!(
            "plugin {} has no deferred attachments (asked for attachment {attachment_id:?} \
             of message {message_id:?})",
            Self::NAME
        )))
    }
}

/// The bytes of one deferred attachment, read in order. [`ChunkReader`]
/// implements it for any [`std::io::Read`].
pub trait AttachmentReader {
    /// Returns the next chunk of at most `max_bytes` bytes, or `None` at the
    /// end. Longer chunks are split by the SDK, so returning more is safe.
    fn read(&mut self, max_bytes: u32) -> Result<Option<Vec<u8>>, SourceError>;
}

/// Parses a JSON configuration, answering [`SourceError::InvalidConfig`]
/// with serde's explanation when it does not fit `T`.
pub fn parse_config<T: serde::de::DeserializeOwned>(config_json: &str) -> Result<T, SourceError> {
    serde_json::from_str(config_json)
        .map_err(|e| SourceError::InvalidConfig(format!("invalid configuration: {e}")))
}

impl SourceError {
    /// [`SourceError::InvalidConfig`] with `message`.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        SourceError::InvalidConfig(message.into())
    }

    /// [`SourceError::Auth`] with `message`.
    pub fn auth(message: impl Into<String>) -> Self {
        SourceError::Auth(message.into())
    }

    /// [`SourceError::Transient`] with `message`.
    pub fn transient(message: impl Into<String>) -> Self {
        SourceError::Transient(message.into())
    }

    /// [`SourceError::Permanent`] with `message`.
    pub fn permanent(message: impl Into<String>) -> Self {
        SourceError::Permanent(message.into())
    }

    /// Whether the host retries after this error (rate limits and transient
    /// failures).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SourceError::RateLimited(_) | SourceError::Transient(_)
        )
    }
}

/// Maps I/O errors: errors wrapping an [`http::HttpError`] (as returned by
/// [`http::BodyReader`]) convert like that error; `NotFound`,
/// `PermissionDenied`, `InvalidInput`, `InvalidData` and `Unsupported` are
/// permanent; everything else (interruptions, timeouts, broken connections,
/// unexpected ends) is transient.
impl From<std::io::Error> for SourceError {
    fn from(err: std::io::Error) -> Self {
        use std::io::ErrorKind;
        if let Some(http_err) = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<http::HttpError>())
        {
            return http_err.clone().into();
        }
        match err.kind() {
            ErrorKind::NotFound
            | ErrorKind::PermissionDenied
            | ErrorKind::InvalidInput
            | ErrorKind::InvalidData
            | ErrorKind::Unsupported => SourceError::Permanent(format!("I/O error: {err}")),
            _ => SourceError::Transient(format!("I/O error: {err}")),
        }
    }
}

/// Registers a [`Source`] implementation as the plugin's exports.
///
/// Use it once per plugin crate, at item level:
///
/// ```ignore
/// connector_sdk::export!(MySource);
/// ```
///
/// It expands to the component-model export functions (`info`,
/// `validate-config`, the `session` and `attachment-reader` resources) that
/// forward to `MySource` through the SDK's adapters, and to the custom
/// section describing the world, so that the `wasm32-wasip2` build is a
/// complete component.
///
/// The glue is only emitted for `wasm32` targets: native builds (unit tests,
/// `cargo check`) only check that the type implements [`Source`], so a plugin
/// crate with `crate-type = ["cdylib", "rlib"]` also links natively.
#[macro_export]
macro_rules! export {
    ($source:ty) => {
        const _: () = {
            #[allow(dead_code)]
            fn __connector_sdk_check_source() {
                $crate::__private::check_source::<$source>();
            }

            #[cfg(target_arch = "wasm32")]
            #[doc(hidden)]
            type __ConnectorSdkPlugin = $crate::__private::Plugin<$source>;

            #[cfg(target_arch = "wasm32")]
            $crate::bindings::__export_source_plugin!(
                __ConnectorSdkPlugin with_types_in $crate::bindings
            );
        };
    };
}

/// Implementation details of [`export!`]; not part of the stable API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    /// Fails to compile unless `S` implements [`Source`].
    pub fn check_source<S: Source>() {}

    /// The type the generated export glue is instantiated with.
    pub struct Plugin<S>(PhantomData<S>);

    impl<S: Source> guest::Guest for Plugin<S> {
        type Session = SessionAdapter<S>;
        type AttachmentReader = ReaderAdapter;

        fn info() -> guest::PluginInfo {
            guest::PluginInfo {
                name: S::NAME.to_string(),
                version: S::VERSION.to_string(),
                sdk_version: SDK_VERSION.to_string(),
            }
        }

        fn validate_config(config_json: String) -> Result<(), SourceError> {
            S::validate_config(&config_json)
        }

        fn partitions(config_json: String) -> Result<Vec<String>, SourceError> {
            Ok(S::partitions(&config_json)?
                .into_iter()
                .map(PartitionId::into_string)
                .collect())
        }
    }

    /// A session resource wrapping the plugin's [`Source`]; resource methods
    /// take `&self`, hence the `RefCell`.
    pub struct SessionAdapter<S>(RefCell<S>);

    impl<S: Source> guest::GuestSession for SessionAdapter<S> {
        fn open(
            config_json: String,
            partition: Option<String>,
            checkpoint: Option<Vec<u8>>,
        ) -> Result<guest::Session, SourceError> {
            let source = match partition {
                None => S::open(&config_json, checkpoint)?,
                Some(id) => S::open_partition(&config_json, id.into(), checkpoint)?,
            };
            Ok(guest::Session::new(SessionAdapter(RefCell::new(source))))
        }

        fn next_page(&self) -> Result<Page, SourceError> {
            self.0.borrow_mut().next_page()
        }

        fn open_attachment(
            &self,
            message_id: String,
            attachment_id: String,
        ) -> Result<guest::AttachmentReader, SourceError> {
            let reader = self
                .0
                .borrow_mut()
                .open_attachment(&message_id, &attachment_id)?;
            Ok(guest::AttachmentReader::new(ReaderAdapter(RefCell::new(
                ReaderState {
                    reader,
                    pending: Vec::new(),
                    done: false,
                },
            ))))
        }
    }

    /// An attachment-reader resource wrapping the plugin's reader; splits
    /// chunks longer than the host asked for.
    pub struct ReaderAdapter(RefCell<ReaderState>);

    /// State of a [`ReaderAdapter`].
    pub struct ReaderState {
        reader: Box<dyn AttachmentReader>,
        pending: Vec<u8>,
        done: bool,
    }

    impl guest::GuestAttachmentReader for ReaderAdapter {
        fn read(&self, max_bytes: u32) -> Result<Option<Vec<u8>>, SourceError> {
            let mut state = self.0.borrow_mut();
            state.read(max_bytes)
        }
    }

    impl ReaderState {
        fn read(&mut self, max_bytes: u32) -> Result<Option<Vec<u8>>, SourceError> {
            let max = (max_bytes as usize).max(1);
            if self.pending.is_empty() {
                if self.done {
                    return Ok(None);
                }
                match self.reader.read(max_bytes)? {
                    None => {
                        self.done = true;
                        return Ok(None);
                    }
                    Some(chunk) => self.pending = chunk,
                }
            }
            if self.pending.len() <= max {
                Ok(Some(std::mem::take(&mut self.pending)))
            } else {
                let rest = self.pending.split_off(max);
                Ok(Some(std::mem::replace(&mut self.pending, rest)))
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        struct Chunks(Vec<Vec<u8>>);

        impl AttachmentReader for Chunks {
            fn read(&mut self, _max: u32) -> Result<Option<Vec<u8>>, SourceError> {
                Ok(if self.0.is_empty() {
                    None
                } else {
                    Some(self.0.remove(0))
                })
            }
        }

        #[test]
        fn reader_splits_long_chunks() {
            let mut state = ReaderState {
                reader: Box::new(Chunks(vec![b"abcdefg".to_vec(), b"h".to_vec()])),
                pending: Vec::new(),
                done: false,
            };
            let mut out = Vec::new();
            while let Some(chunk) = state.read(3).unwrap() {
                assert!(chunk.len() <= 3);
                out.push(chunk);
            }
            assert_eq!(
                out,
                vec![
                    b"abc".to_vec(),
                    b"def".to_vec(),
                    b"g".to_vec(),
                    b"h".to_vec()
                ]
            );
            assert_eq!(state.read(3).unwrap(), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_keep_http_classification() {
        let err = std::io::Error::new(std::io::ErrorKind::TimedOut, http::HttpError::Timeout);
        assert!(matches!(SourceError::from(err), SourceError::Transient(_)));
        let err = std::io::Error::other(http::HttpError::Denied("http://x".into()));
        assert!(matches!(SourceError::from(err), SourceError::Permanent(_)));
        let err = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(matches!(SourceError::from(err), SourceError::Permanent(_)));
    }

    #[test]
    fn api_version_is_the_version_of_the_world_the_bindings_come_from() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let wit = std::fs::read_to_string(format!("{dir}/wit/v{API_VERSION}/source.wit")).unwrap();
        assert!(wit.contains(&format!("package connector:source@{API_VERSION};")));
        let lib = std::fs::read_to_string(format!("{dir}/src/lib.rs")).unwrap();
        assert!(lib.contains(&format!("path: \"wit/v{API_VERSION}\",")));
    }

    #[test]
    fn parse_config_reports_invalid_config() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct C {
            a: u32,
        }
        assert!(matches!(
            parse_config::<C>("{\"a\": \"x\"}"),
            Err(SourceError::InvalidConfig(_))
        ));
        assert!(parse_config::<C>("{\"a\": 1}").is_ok());
    }
}
