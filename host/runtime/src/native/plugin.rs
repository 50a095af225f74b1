//! Loading a native library and driving its sessions through ABI version 1.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use base64::Engine as _;

use super::abi::{self, BodyJson, ErrorJson, NativeV1, Outcome, PageJson};
use crate::attachments::{self, AttachmentSession, AttachmentSpool, Body, Described};
use crate::context::PluginContext;
use crate::http::{BodyEncoding, FetchSpec};
use crate::normalize;
use crate::{Page, PluginError, PluginHttp, PluginKind, PluginManifest};
use crate::{Source, SourceSession};
use connector_model as model;
use connector_model::AttachmentData;

/// Chunk size for deferred attachment reads.
const ATTACHMENT_CHUNK: usize = 1 << 20;

/// Libraries loaded so far, by path: loaded once, never unloaded.
fn libraries() -> &'static Mutex<HashMap<PathBuf, &'static libloading::Library>> {
    static LIBRARIES: OnceLock<Mutex<HashMap<PathBuf, &'static libloading::Library>>> =
        OnceLock::new();
    LIBRARIES.get_or_init(Default::default)
}

/// A loaded native plugin.
pub struct NativePlugin {
    table: NativeV1,
    /// The plugin's id, capabilities and secrets, with its HTTP.
    http: PluginHttp,
}

/// Runs `f`, turning a panic into [`PluginError::Trap`].
fn guarded<T>(plugin: &str, what: &str, f: impl FnOnce() -> T) -> Result<T, PluginError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        PluginError::Trap {
            message: format!("native plugin {plugin} panicked in {what}: {message}"),
            stderr: String::new(),
        }
    })
}

fn cstring(what: &str, text: &str) -> Result<CString, PluginError> {
    CString::new(text).map_err(|_| PluginError::Protocol(format!("{what} contains a NUL byte")))
}

impl NativePlugin {
    /// Loads the library a `kind = "native"` manifest names, after checking
    /// the operator's trust, the pinned SHA-256 and the ABI handshake.
    pub fn load(
        manifest: &PluginManifest,
        context: PluginContext,
    ) -> Result<NativePlugin, PluginError> {
        let PluginContext {
            caps,
            secrets,
            http,
            ..
        } = context;
        if manifest.kind != PluginKind::Native {
            return Err(PluginError::Load(format!(
                "plugin {} is not a native plugin (its manifest has no kind = \"native\")",
                manifest.id
            )));
        }
        if !caps.trusted_native {
            return Err(PluginError::Load(format!(
                "plugin {} is a native plugin: it would run inside the host process with no sandbox. \
                 The operator must allow it explicitly with `trusted-native = true` under [grants] in \
                 the connector file, and should only do so for code trusted as much as the host itself",
                manifest.id
            )));
        }
        let path = manifest.wasm_path();
        // Checks the pinned SHA-256 of the library file.
        manifest
            .read_wasm()
            .map_err(|e| PluginError::Load(e.to_string()))?;
        let library = {
            let mut loaded = libraries().lock().unwrap_or_else(|p| p.into_inner());
            match loaded.get(&path) {
                Some(lib) => *lib,
                None => {
                    // SAFETY: loading runs the library's initializers; the
                    // operator declared this library trusted and its hash
                    // matches the manifest.
                    let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| {
                        PluginError::Load(format!(
                            "cannot load native plugin library {}: {e}; build it for this machine \
                             (cargo build -p <plugin>) and check `library` in the manifest",
                            path.display()
                        ))
                    })?;
                    // Never unloaded: sessions and statics must not vanish.
                    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
                    loaded.insert(path.clone(), lib);
                    lib
                }
            }
        };
        let id = manifest.id.as_str();
        // SAFETY: the symbol's type is fixed by the ABI (connector_native.h).
        let version_fn: libloading::Symbol<'static, abi::AbiVersionFn> =
            unsafe { library.get(abi::ABI_VERSION_SYMBOL) }.map_err(|e| {
                PluginError::Load(format!(
                    "{} is not a connector native plugin (no connector_native_abi_version: {e})",
                    path.display()
                ))
            })?;
        // SAFETY: a C function without arguments returning an integer.
        let version = guarded(id, "connector_native_abi_version", || unsafe {
            version_fn()
        })?;
        if !abi::SUPPORTED_ABI_VERSIONS.contains(&version) {
            return Err(PluginError::Load(format!(
                "native plugin {id} speaks native ABI version {version}, which this host does not \
                 load (it loads {}); rebuild the plugin against connector_native.h of this host",
                abi::SUPPORTED_ABI_VERSIONS
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // SAFETY: the symbol's type is fixed by ABI version 1.
        let table_fn: libloading::Symbol<'static, abi::PluginV1Fn> =
            unsafe { library.get(abi::PLUGIN_V1_SYMBOL) }.map_err(|e| {
                PluginError::Load(format!(
                    "native plugin {id} announces ABI 1 but lacks connector_native_plugin_v1: {e}"
                ))
            })?;
        // SAFETY: returns a pointer to a static table, or null.
        let table_ptr = guarded(id, "connector_native_plugin_v1", || unsafe { table_fn() })?;
        if table_ptr.is_null() {
            return Err(PluginError::Load(format!(
                "native plugin {id} returned no function table"
            )));
        }
        // SAFETY: non-null pointer to the plugin's table; it first reads the
        // two leading integers, which every ABI version has.
        let (abi_version, struct_size) =
            unsafe { ((*table_ptr).abi_version, (*table_ptr).struct_size) };
        if abi_version != 1 || (struct_size as usize) < std::mem::size_of::<NativeV1>() {
            return Err(PluginError::Load(format!(
                "native plugin {id}: its function table says ABI {abi_version} and {struct_size} \
                 bytes, expected ABI 1 and at least {} bytes; rebuild it against this host's \
                 connector_native.h",
                std::mem::size_of::<NativeV1>()
            )));
        }
        // SAFETY: checked above: a complete version-1 table.
        let table = unsafe { *table_ptr };
        let plugin = NativePlugin {
            table,
            http: PluginHttp::new(&manifest.id, caps, secrets, http),
        };
        let info_text = plugin.take_string("info", |t| unsafe { (t.info)() })?;
        let info: abi::Info = serde_json::from_str(&info_text).map_err(|e| {
            PluginError::Load(format!("native plugin {id} returned bad info JSON: {e}"))
        })?;
        if info.api_version != manifest.api_version {
            return Err(PluginError::Load(format!(
                "native plugin {id} reports data-model version {} but its manifest declares \
                 api-version {}; make them agree",
                info.api_version, manifest.api_version
            )));
        }
        tracing::info!(plugin = %id, name = %info.name, version = %info.version, "native plugin loaded");
        Ok(plugin)
    }

    /// Calls `f` (which returns a string owned by the plugin), copies the
    /// string and hands it back to the plugin's `free_string`.
    fn take_string(
        &self,
        what: &str,
        f: impl FnOnce(&NativeV1) -> *mut c_char,
    ) -> Result<String, PluginError> {
        let table = self.table;
        guarded(&self.http.plugin_id, what, || {
            let ptr = f(&table);
            if ptr.is_null() {
                return Err(PluginError::Protocol(format!("{what} returned no string")));
            }
            // SAFETY: the ABI says a non-null return is a NUL-terminated
            // string owned by the plugin until free_string.
            let text = unsafe { CStr::from_ptr(ptr) }
                .to_string_lossy()
                .into_owned();
            // SAFETY: handing the plugin's own string back to it, once.
            unsafe { (table.free_string)(ptr) };
            Ok(text)
        })?
    }

    fn take_error(&self, what: &str, ptr: *mut c_char) -> PluginError {
        if ptr.is_null() {
            return PluginError::Protocol(format!("{what} failed without an error JSON"));
        }
        let table = self.table;
        // SAFETY: as in take_string.
        let text = unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: the plugin's own string, freed once.
        unsafe { (table.free_string)(ptr) };
        match serde_json::from_str::<ErrorJson>(&text) {
            Ok(e) => error_from_json(e),
            Err(e) => PluginError::Protocol(format!("{what} returned bad error JSON: {e}")),
        }
    }

    fn parse_outcome<T: serde::de::DeserializeOwned>(
        what: &str,
        text: &str,
    ) -> Result<T, PluginError> {
        match serde_json::from_str::<Outcome<T>>(text) {
            Ok(Outcome::Ok(v)) => Ok(v),
            Ok(Outcome::Error(e)) => Err(error_from_json(e)),
            Err(e) => Err(PluginError::Protocol(format!(
                "{what} returned JSON that is not {{\"ok\": …}} or {{\"error\": …}}: {e}"
            ))),
        }
    }
}

fn error_from_json(e: ErrorJson) -> PluginError {
    match e.kind.as_str() {
        "invalid-config" => PluginError::InvalidConfig(e.message),
        "auth" => PluginError::Auth(e.message),
        "rate-limited" => PluginError::RateLimited(e.retry_after_secs),
        "transient" => PluginError::Transient(e.message),
        "permanent" => PluginError::Permanent(e.message),
        other => PluginError::Protocol(format!(
            "unknown error kind {other:?} (message: {})",
            e.message
        )),
    }
}

impl Source for NativePlugin {
    fn validate_config(&mut self, config_json: &str) -> Result<(), PluginError> {
        let config = cstring("the configuration", config_json)?;
        let text = self.take_string("validate_config", |t| unsafe {
            (t.validate_config)(config.as_ptr())
        })?;
        Self::parse_outcome::<Option<serde_json::Value>>("validate_config", &text).map(|_| ())
    }

    fn open(
        &mut self,
        config_json: &str,
        partition: Option<&str>,
        checkpoint: Option<Vec<u8>>,
    ) -> Result<Box<dyn SourceSession + '_>, PluginError> {
        if let Some(partition) = partition {
            return Err(PluginError::Protocol(format!(
                "native plugins have no partitions (asked to open {partition:?})"
            )));
        }
        let config = cstring("the configuration", config_json)?;
        let table = self.table;
        let mut error: *mut c_char = std::ptr::null_mut();
        let (ptr, len) = match &checkpoint {
            Some(c) => (c.as_ptr(), c.len()),
            None => (std::ptr::null(), 0),
        };
        let error_ref = &mut error;
        // SAFETY: arguments are valid for the call's duration as the ABI says.
        let handle = guarded(&self.http.plugin_id, "open", || unsafe {
            (table.open)(config.as_ptr(), ptr, len, error_ref)
        })?;
        if handle.is_null() {
            return Err(self.take_error("open", error));
        }
        Ok(Box::new(NativeSession {
            plugin: self,
            handle: Some(handle),
            spool: AttachmentSpool::new(self.http.caps.attachment_bytes),
        }))
    }
}

/// A session of a native plugin; closed when dropped.
pub struct NativeSession<'a> {
    plugin: &'a NativePlugin,
    handle: Option<*mut c_void>,
    spool: AttachmentSpool,
}

impl NativeSession<'_> {
    fn handle(&self) -> Result<*mut c_void, PluginError> {
        self.handle.ok_or_else(|| {
            PluginError::Protocol("the session was ended by an earlier failure".into())
        })
    }

    fn fail(&mut self, e: PluginError) -> PluginError {
        if matches!(e, PluginError::Trap { .. }) {
            // A panic may have left the plugin inconsistent: never call the
            // session again (and do not close it either).
            self.handle = None;
        }
        e
    }

    /// The attachment as the plugin describes it.
    fn describe(message_id: &str, a: abi::AttachmentJson) -> Result<Described, PluginError> {
        let body = match a.body {
            BodyJson::InlineBase64(text) => Body::Inline(
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| {
                        PluginError::Protocol(format!(
                            "attachment {} of message {message_id}: inline_base64 is not base64: {e}",
                            a.id
                        ))
                    })?,
            ),
            BodyJson::Fetch(f) => {
                let encoding = match f.encoding.as_deref() {
                    None | Some("identity") => BodyEncoding::Identity,
                    Some("base64") => BodyEncoding::Base64,
                    Some(other) => {
                        return Err(PluginError::Protocol(format!(
                            "attachment {} of message {message_id}: unknown encoding {other:?}",
                            a.id
                        )));
                    }
                };
                Body::Fetch(FetchSpec {
                    url: f.url,
                    headers: f.headers,
                    secret_headers: f.secret_headers,
                    encoding,
                })
            }
            BodyJson::Deferred => Body::Deferred,
        };
        Ok(Described {
            id: a.id,
            file_name: a.file_name,
            media_type: a.media_type,
            size: a.size,
            body,
        })
    }

    fn convert_page(&mut self, page: PageJson) -> Result<Page, PluginError> {
        let checkpoint = base64::engine::general_purpose::STANDARD
            .decode(page.checkpoint_base64.trim())
            .map_err(|e| PluginError::Protocol(format!("checkpoint_base64 is not base64: {e}")))?;
        let mut conversations = Vec::with_capacity(page.conversations.len());
        for c in page.conversations {
            conversations.push(normalize::conversation(model::Conversation {
                id: c.id,
                kind: conversation_kind(&c.kind)?,
                name: c.name,
                participants: c.participants.into_iter().map(person).collect(),
            }));
        }
        let mut messages = Vec::with_capacity(page.messages.len());
        for m in page.messages {
            let mut attachments = Vec::with_capacity(m.attachments.len());
            for a in m.attachments {
                attachments.push(attachments::resolve(
                    self,
                    &m.id,
                    Self::describe(&m.id, a)?,
                )?);
            }
            let original = match m.original_base64 {
                Some(text) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(text.trim())
                        .map_err(|e| {
                            PluginError::Protocol(format!(
                                "message {}: original_base64 is not base64: {e}",
                                m.id
                            ))
                        })?,
                ),
                None => None,
            };
            let message = model::Message {
                kind: message_kind(m.kind.as_deref())?,
                id: m.id,
                conversation_id: m.conversation_id,
                sender: person(m.sender),
                sent_at: m.sent_at,
                relations: m.relations.into_iter().map(relation).collect(),
                text: m.text,
                html: m.html,
                attachments,
                source_sha256: String::new(),
                properties: m.properties,
            };
            messages.push(normalize::message(message, original.as_deref()));
        }
        let page = Page {
            conversations,
            messages,
            checkpoint,
            complete: page.complete,
            unreadable: Vec::new(),
        };
        page.check_limits()?;
        Ok(page)
    }
}

impl AttachmentSession for NativeSession<'_> {
    fn spool_and_http(&mut self) -> (&mut AttachmentSpool, &PluginHttp) {
        (&mut self.spool, &self.plugin.http)
    }

    fn read_deferred(
        &mut self,
        message_id: &str,
        attachment_id: &str,
        size: Option<u64>,
    ) -> Result<AttachmentData, PluginError> {
        let handle = self.handle()?;
        let message = cstring("a message id", message_id)?;
        let attachment = cstring("an attachment id", attachment_id)?;
        let mut buf = vec![0u8; ATTACHMENT_CHUNK];
        let mut offset = 0u64;
        let plugin = self.plugin;
        let table = plugin.table;
        let mut writer = self.spool.writer(message_id, attachment_id, size)?;
        loop {
            let mut written = 0usize;
            let mut error: *mut c_char = std::ptr::null_mut();
            let (buf_ptr, buf_len) = (buf.as_mut_ptr(), buf.len());
            let (written_ref, error_ref) = (&mut written, &mut error);
            // SAFETY: every pointer is valid for the call; the plugin writes
            // at most buf_len bytes.
            let status = guarded(&plugin.http.plugin_id, "read_attachment", || unsafe {
                (table.read_attachment)(
                    handle,
                    message.as_ptr(),
                    attachment.as_ptr(),
                    offset,
                    buf_ptr,
                    buf_len,
                    written_ref,
                    error_ref,
                )
            })
            .map_err(|e| self.fail(e))?;
            if status != 0 {
                return Err(plugin.take_error("read_attachment", error));
            }
            if written > buf.len() {
                return Err(PluginError::Protocol(format!(
                    "read_attachment claims {written} bytes written into a {} byte buffer",
                    buf.len()
                )));
            }
            if written == 0 {
                break;
            }
            writer.append(&buf[..written])?;
            offset += written as u64;
        }
        writer.finish()
    }
}

fn person(p: abi::PersonJson) -> model::Person {
    model::Person {
        id: p.id,
        display_name: p.display_name,
        email: p.email,
    }
}

fn relation(r: abi::RelationJson) -> model::Relation {
    match r {
        abi::RelationJson::ReplyTo(id) => model::Relation::ReplyTo(id),
        abi::RelationJson::ForwardOf(id) => model::Relation::ForwardOf(id),
        abi::RelationJson::EditOf(id) => model::Relation::EditOf(id),
        abi::RelationJson::Deletes(id) => model::Relation::Deletes(id),
    }
}

fn conversation_kind(kind: &str) -> Result<model::ConversationKind, PluginError> {
    Ok(match kind {
        "direct" => model::ConversationKind::Direct,
        "group" => model::ConversationKind::Group,
        "room" => model::ConversationKind::Room,
        "feed" => model::ConversationKind::Feed,
        other => {
            return Err(PluginError::Protocol(format!(
                "unknown conversation kind {other:?} (direct, group, room or feed)"
            )));
        }
    })
}

fn message_kind(kind: Option<&str>) -> Result<model::MessageKind, PluginError> {
    Ok(match kind.unwrap_or("chat") {
        "chat" => model::MessageKind::Chat,
        "edit" => model::MessageKind::Edit,
        "deletion" => model::MessageKind::Deletion,
        "member-joined" => model::MessageKind::MemberJoined,
        "member-left" => model::MessageKind::MemberLeft,
        "system" => model::MessageKind::System,
        other => {
            return Err(PluginError::Protocol(format!(
                "unknown message kind {other:?}"
            )));
        }
    })
}

impl SourceSession for NativeSession<'_> {
    fn next_page(&mut self) -> Result<Page, PluginError> {
        let handle = self.handle()?;
        let text = self
            .plugin
            .take_string("next_page", |t| unsafe { (t.next_page)(handle) })
            .map_err(|e| self.fail(e))?;
        let page = NativePlugin::parse_outcome::<PageJson>("next_page", &text)?;
        self.convert_page(page)
    }
}

impl Drop for NativeSession<'_> {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let table = self.plugin.table;
            // SAFETY: the handle came from open and is closed once.
            if let Err(e) = guarded(&self.plugin.http.plugin_id, "close", || unsafe {
                (table.close)(handle)
            }) {
                tracing::warn!(plugin = %self.plugin.http.plugin_id, "ending the native session failed: {e}");
            }
        }
    }
}
