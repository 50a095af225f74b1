//! The native plugin ABI, version 1: the C function table (mirroring
//! `connector_native.h`) and the JSON documents that cross it.
//!
//! Nothing here is a Rust type shared with plugins: a plugin sees only C
//! integers, byte buffers and NUL-terminated JSON strings, and may be
//! written in any language that can export C functions.

use std::ffi::{c_char, c_void};

use serde::Deserialize;

/// ABI versions this host can load, oldest first.
pub const SUPPORTED_ABI_VERSIONS: &[u32] = &[1];

/// Symbol of the handshake function: `uint32_t connector_native_abi_version(void)`.
pub const ABI_VERSION_SYMBOL: &[u8] = b"connector_native_abi_version\0";

/// Symbol of the version-1 table: `const ConnectorNativeV1 *connector_native_plugin_v1(void)`.
pub const PLUGIN_V1_SYMBOL: &[u8] = b"connector_native_plugin_v1\0";

/// The handshake function's type.
pub type AbiVersionFn = unsafe extern "C" fn() -> u32;

/// The version-1 table getter's type.
pub type PluginV1Fn = unsafe extern "C" fn() -> *const NativeV1;

/// `ConnectorNativeV1` of `connector_native.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NativeV1 {
    /// Must be 1.
    pub abi_version: u32,
    /// `sizeof(ConnectorNativeV1)` as the plugin was compiled.
    pub struct_size: u32,
    /// Info JSON.
    pub info: unsafe extern "C" fn() -> *mut c_char,
    /// Result JSON for a configuration.
    pub validate_config: unsafe extern "C" fn(config_json: *const c_char) -> *mut c_char,
    /// A session handle, or null with an error JSON.
    pub open: unsafe extern "C" fn(
        config_json: *const c_char,
        checkpoint: *const u8,
        checkpoint_len: usize,
        error_json: *mut *mut c_char,
    ) -> *mut c_void,
    /// Result JSON holding a page.
    pub next_page: unsafe extern "C" fn(session: *mut c_void) -> *mut c_char,
    /// Copies bytes of a deferred attachment.
    pub read_attachment: unsafe extern "C" fn(
        session: *mut c_void,
        message_id: *const c_char,
        attachment_id: *const c_char,
        offset: u64,
        buf: *mut u8,
        buf_len: usize,
        written: *mut usize,
        error_json: *mut *mut c_char,
    ) -> i32,
    /// Ends a session.
    pub close: unsafe extern "C" fn(session: *mut c_void),
    /// Frees a string the plugin returned.
    pub free_string: unsafe extern "C" fn(s: *mut c_char),
}

/// `info` JSON.
#[derive(Debug, Clone, Deserialize)]
pub struct Info {
    /// Name of the source.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The data-model version (the WIT world's), e.g. `0.1.0`.
    pub api_version: String,
}

/// A result JSON: `{"ok": T}` or `{"error": E}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome<T> {
    /// Success.
    Ok(T),
    /// Failure.
    Error(ErrorJson),
}

/// An error JSON.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorJson {
    /// `invalid-config`, `auth`, `rate-limited`, `transient` or `permanent`.
    pub kind: String,
    /// What went wrong.
    #[serde(default)]
    pub message: String,
    /// For `rate-limited`: seconds to wait, when known.
    #[serde(default)]
    pub retry_after_secs: Option<u32>,
}

/// A page JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageJson {
    /// Conversations first described in this page.
    #[serde(default)]
    pub conversations: Vec<ConversationJson>,
    /// Messages in import order.
    #[serde(default)]
    pub messages: Vec<MessageJson>,
    /// The checkpoint after this page, in base64.
    pub checkpoint_base64: String,
    /// Whether the source has nothing more for now.
    pub complete: bool,
}

/// A person JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonJson {
    /// Stable id in the source.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Email address.
    #[serde(default)]
    pub email: Option<String>,
}

/// A conversation JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationJson {
    /// Stable id in the source.
    pub id: String,
    /// `direct`, `group`, `room` or `feed`.
    pub kind: String,
    /// Room or channel name.
    #[serde(default)]
    pub name: Option<String>,
    /// Everyone whose mailbox receives the conversation.
    #[serde(default)]
    pub participants: Vec<PersonJson>,
}

/// A relation JSON: `{"reply_to": id}`, `{"forward_of": id}`,
/// `{"edit_of": id}` or `{"deletes": id}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RelationJson {
    /// Answers a message.
    ReplyTo(String),
    /// Forwards a message.
    ForwardOf(String),
    /// Replaces a message.
    EditOf(String),
    /// Removes a message.
    Deletes(String),
}

/// Where an attachment's bytes are.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BodyJson {
    /// The bytes in base64 (8 MiB at most once decoded).
    InlineBase64(String),
    /// A download the host performs under the plugin's HTTP grants.
    Fetch(FetchJson),
    /// Read later through `read_attachment`.
    Deferred,
}

/// A download JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchJson {
    /// Absolute URL.
    pub url: String,
    /// Headers sent as they are.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Header name → secret name.
    #[serde(default)]
    pub secret_headers: Vec<(String, String)>,
    /// `identity` (default) or `base64`.
    #[serde(default)]
    pub encoding: Option<String>,
}

/// An attachment JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentJson {
    /// Unique within its message.
    pub id: String,
    /// File name.
    pub file_name: String,
    /// MIME type.
    #[serde(default)]
    pub media_type: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Where the bytes are.
    pub body: BodyJson,
}

/// A message JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageJson {
    /// Unique and stable within the source.
    pub id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Who sent it.
    pub sender: PersonJson,
    /// Milliseconds since the Unix epoch.
    pub sent_at: i64,
    /// `chat` (default), `edit`, `deletion`, `member-joined`, `member-left`
    /// or `system`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Links to other messages.
    #[serde(default)]
    pub relations: Vec<RelationJson>,
    /// Plain-text body.
    #[serde(default)]
    pub text: Option<String>,
    /// HTML body.
    #[serde(default)]
    pub html: Option<String>,
    /// Attached files.
    #[serde(default)]
    pub attachments: Vec<AttachmentJson>,
    /// The source item as delivered, in base64.
    #[serde(default)]
    pub original_base64: Option<String>,
    /// Source-specific facts.
    #[serde(default)]
    pub properties: Vec<(String, String)>,
}
