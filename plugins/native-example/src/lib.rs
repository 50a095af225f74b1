//! # native-example
//!
//! An example **native** source plugin: a shared library that speaks the
//! host's C ABI version 1 (`host/runtime/src/native/connector_native.h`). It only
//! uses C types at the boundary — integers, byte buffers and
//! NUL-terminated JSON strings — and catches every panic at every entry
//! point, so nothing unwinds into the host.
//!
//! It generates a deterministic conversation from its configuration:
//! `{"messages": 12, "page_size": 5, "room": "Ops notes",
//!   "participants": [{"id": "u1", "display_name": "Ann", "email": "ann@example.test"}]}`.
//! Every fourth message carries an inline attachment, every fifth a
//! deferred one read back through `read_attachment`; every third answers
//! the one before. The checkpoint is the index of the next message.

use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

/// The ABI version this library implements.
const ABI_VERSION: u32 = 1;

/// `ConnectorNativeV1` of `connector_native.h`.
#[repr(C)]
pub struct NativeV1 {
    abi_version: u32,
    struct_size: u32,
    info: unsafe extern "C" fn() -> *mut c_char,
    validate_config: unsafe extern "C" fn(*const c_char) -> *mut c_char,
    open: unsafe extern "C" fn(*const c_char, *const u8, usize, *mut *mut c_char) -> *mut c_void,
    next_page: unsafe extern "C" fn(*mut c_void) -> *mut c_char,
    read_attachment: unsafe extern "C" fn(
        *mut c_void,
        *const c_char,
        *const c_char,
        u64,
        *mut u8,
        usize,
        *mut usize,
        *mut *mut c_char,
    ) -> i32,
    close: unsafe extern "C" fn(*mut c_void),
    free_string: unsafe extern "C" fn(*mut c_char),
}

static TABLE: NativeV1 = NativeV1 {
    abi_version: ABI_VERSION,
    struct_size: std::mem::size_of::<NativeV1>() as u32,
    info,
    validate_config,
    open,
    next_page,
    read_attachment,
    close,
    free_string,
};

/// Step 1 of the handshake.
#[unsafe(no_mangle)]
pub extern "C" fn connector_native_abi_version() -> u32 {
    ABI_VERSION
}

/// Step 2: the function table.
#[unsafe(no_mangle)]
pub extern "C" fn connector_native_plugin_v1() -> *const NativeV1 {
    &TABLE
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    messages: u64,
    #[serde(default = "default_page_size")]
    page_size: u64,
    #[serde(default = "default_room")]
    room: String,
    participants: Vec<Value>,
}

fn default_page_size() -> u64 {
    100
}

fn default_room() -> String {
    "Native example".into()
}

struct Session {
    config: Config,
    next: u64,
    described: bool,
}

fn to_c(text: String) -> *mut c_char {
    CString::new(text)
        .unwrap_or_else(|_| {
            CString::new("{\"error\":{\"kind\":\"permanent\",\"message\":\"NUL in output\"}}")
                .expect("no NUL")
        })
        .into_raw()
}

fn error_json(kind: &str, message: &str) -> String {
    json!({"kind": kind, "message": message}).to_string()
}

/// Runs `f`, turning a panic into an error JSON: nothing unwinds into the
/// host.
fn guard(f: impl FnOnce() -> Result<Value, String>) -> *mut c_char {
    let result = catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(error_json("permanent", "the native example panicked")));
    to_c(match result {
        Ok(v) => json!({"ok": v}).to_string(),
        Err(e) => format!("{{\"error\":{e}}}"),
    })
}

/// # Safety
/// `ptr` is null or a NUL-terminated string valid for the call.
unsafe fn text<'a>(ptr: *const c_char) -> Result<&'a str, String> {
    if ptr.is_null() {
        return Err(error_json("permanent", "null string"));
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| error_json("invalid-config", "not UTF-8"))
}

fn parse_config(json_text: &str) -> Result<Config, String> {
    let config: Config = serde_json::from_str(json_text)
        .map_err(|e| error_json("invalid-config", &format!("invalid configuration: {e}")))?;
    if config.page_size == 0 || config.participants.is_empty() {
        return Err(error_json(
            "invalid-config",
            "page_size must be at least 1 and participants must not be empty",
        ));
    }
    Ok(config)
}

unsafe extern "C" fn info() -> *mut c_char {
    to_c(
        json!({"name": "native-example", "version": env!("CARGO_PKG_VERSION"), "api_version": "0.1.0"})
            .to_string(),
    )
}

unsafe extern "C" fn validate_config(config: *const c_char) -> *mut c_char {
    // SAFETY: the host passes a valid string.
    guard(|| parse_config(unsafe { text(config) }?).map(|_| Value::Null))
}

unsafe extern "C" fn open(
    config: *const c_char,
    checkpoint: *const u8,
    checkpoint_len: usize,
    error: *mut *mut c_char,
) -> *mut c_void {
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Session, String> {
        // SAFETY: the host passes a valid string.
        let config = parse_config(unsafe { text(config) }?)?;
        let next = if checkpoint.is_null() {
            0
        } else {
            // SAFETY: the host passes checkpoint_len readable bytes.
            let bytes = unsafe { std::slice::from_raw_parts(checkpoint, checkpoint_len) };
            std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| error_json("permanent", "checkpoint is not a message index"))?
        };
        Ok(Session {
            config,
            next,
            described: false,
        })
    }))
    .unwrap_or_else(|_| {
        Err(error_json(
            "permanent",
            "the native example panicked in open",
        ))
    });
    match result {
        Ok(session) => Box::into_raw(Box::new(session)).cast(),
        Err(e) => {
            if !error.is_null() {
                // SAFETY: the host passes a valid out-pointer.
                unsafe { *error = to_c(e) };
            }
            std::ptr::null_mut()
        }
    }
}

fn deferred_bytes(index: u64) -> Vec<u8> {
    (0..40_000u64)
        .map(|i| ((i * 31 + index) % 251) as u8)
        .collect()
}

unsafe extern "C" fn next_page(session: *mut c_void) -> *mut c_char {
    guard(|| {
        // SAFETY: the handle came from open and is used by one thread.
        let s = unsafe { &mut *session.cast::<Session>() };
        let mut conversations = Vec::new();
        if !s.described {
            s.described = true;
            conversations.push(
                json!({"id": "native-room", "kind": "room", "name": s.config.room,
                "participants": s.config.participants}),
            );
        }
        let end = (s.next + s.config.page_size).min(s.config.messages);
        let mut messages = Vec::new();
        for i in s.next..end {
            let sender = &s.config.participants[(i as usize) % s.config.participants.len()];
            let mut m = json!({"id": format!("native-{i}"), "conversation_id": "native-room",
                "sender": sender, "sent_at": 1_767_225_600_000i64 + i as i64 * 60_000,
                "text": format!("Native message {i} ✓"),
                "properties": [["native-index", i.to_string()]]});
            if i % 3 == 2 {
                m["relations"] = json!([{"reply_to": format!("native-{}", i - 1)}]);
            }
            if i % 4 == 3 {
                m["attachments"] = json!([{"id": "inline", "file_name": format!("inline-{i}.txt"),
                    "media_type": "text/plain", "body": {"inline_base64":
                    base64::engine::general_purpose::STANDARD.encode(format!("inline attachment {i}"))}}]);
            } else if i % 5 == 4 {
                m["attachments"] = json!([{"id": "deferred", "file_name": format!("data-{i}.bin"),
                    "media_type": "application/octet-stream", "size": 40_000, "body": "deferred"}]);
            }
            messages.push(m);
        }
        s.next = end;
        Ok(json!({"conversations": conversations, "messages": messages,
            "checkpoint_base64": base64::engine::general_purpose::STANDARD.encode(end.to_string()),
            "complete": end >= s.config.messages}))
    })
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn read_attachment(
    _session: *mut c_void,
    message_id: *const c_char,
    attachment_id: *const c_char,
    offset: u64,
    buf: *mut u8,
    buf_len: usize,
    written: *mut usize,
    error: *mut *mut c_char,
) -> i32 {
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<usize, String> {
        // SAFETY: the host passes valid strings.
        let (message, attachment) = unsafe { (text(message_id)?, text(attachment_id)?) };
        let index: u64 = message
            .strip_prefix("native-")
            .and_then(|i| i.parse().ok())
            .filter(|i| i % 5 == 4 && i % 4 != 3 && attachment == "deferred")
            .ok_or_else(|| {
                error_json(
                    "permanent",
                    &format!("no deferred attachment {attachment} on {message}"),
                )
            })?;
        let bytes = deferred_bytes(index);
        let start = (offset as usize).min(bytes.len());
        let n = (bytes.len() - start).min(buf_len);
        // SAFETY: the host gives buf_len writable bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes[start..].as_ptr(), buf, n) };
        Ok(n)
    }))
    .unwrap_or_else(|_| Err(error_json("permanent", "panicked in read_attachment")));
    match result {
        Ok(n) => {
            // SAFETY: valid out-pointer.
            unsafe { *written = n };
            0
        }
        Err(e) => {
            // SAFETY: valid out-pointer.
            unsafe { *error = to_c(e) };
            1
        }
    }
}

unsafe extern "C" fn close(session: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !session.is_null() {
            // SAFETY: the handle came from open (Box::into_raw) and is closed once.
            drop(unsafe { Box::from_raw(session.cast::<Session>()) });
        }
    }));
}

unsafe extern "C" fn free_string(s: *mut c_char) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !s.is_null() {
            // SAFETY: every string this library returns comes from CString::into_raw.
            drop(unsafe { CString::from_raw(s) });
        }
    }));
}
