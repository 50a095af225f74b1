//! The data a plugin's store carries: its WASI context, its resources, and
//! the capabilities its host imports check.

use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::limits::MemoryCap;
use crate::{KvAccess, PluginError, PluginHttp};
use connector_model::Unreadable;

/// How much of a plugin's stderr is kept for error reports.
const STDERR_CAPACITY: usize = 64 << 10;

/// A plugin's log lines, kept in memory (besides the host's log) for tests.
pub type LogSink = Arc<Mutex<Vec<LogLine>>>;

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The message.
    pub message: String,
    /// Its key/value fields.
    pub fields: Vec<(String, String)>,
}

/// Per-store state of one plugin instance.
pub struct SandboxState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: MemoryCap,
    /// The plugin's id, capabilities and secrets, with its HTTP.
    pub(super) http: PluginHttp,
    pub(super) kv: Option<KvAccess>,
    pub(super) log_sink: Option<LogSink>,
    /// Conversations the plugin reported unreadable since its last page.
    pub(super) unreadable: Vec<Unreadable>,
    pub(super) stderr: MemoryOutputPipe,
}

impl SandboxState {
    /// A fresh sandbox: no environment, no arguments, no network sockets,
    /// read-only access to the granted folders, stderr captured.
    pub(super) fn new(
        http: PluginHttp,
        kv: Option<KvAccess>,
        log_sink: Option<LogSink>,
    ) -> Result<SandboxState, PluginError> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (guest, host) in &http.caps.files {
            wasi.preopened_dir(host, guest, FsPerms::ReadOnly)
                .map_err(|e| {
                    PluginError::Load(format!(
                        "cannot open the granted folder {} for {guest}: {e}; check that it exists and is readable",
                        host.display()
                    ))
                })?;
        }
        Ok(SandboxState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryCap::new(http.caps.memory_bytes),
            http,
            kv,
            log_sink,
            unreadable: Vec::new(),
            stderr,
        })
    }

    /// What the plugin wrote to stderr so far.
    pub(super) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).into_owned()
    }
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
