//! Loading a plugin component and driving its sessions: a fresh store per
//! session, a deadline on every call, traps turned into typed errors, and
//! attachments fetched before a page leaves this module.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Store, Trap};

use super::api_version::{self, ApiVersion};
use super::convert;
use super::engine::PluginEngine;
use super::host_http::HttpClient;
use super::latest::types as wit;
use super::sandbox::SandboxState;
use super::versioned::{Instance, InstancePre};
use crate::config::PluginManifest;
use crate::model::{Attachment, AttachmentData};
use crate::plugin::{Capabilities, Page, PluginError, SecretStore, Source, SourceSession};
use crate::state::StateDb;

/// Largest checkpoint the host stores.
pub const MAX_CHECKPOINT: usize = 1 << 20;
/// Largest inline attachment the host accepts.
pub const MAX_INLINE_ATTACHMENT: usize = 8 << 20;
/// Attachments larger than this are spooled to disk.
const SPOOL_THRESHOLD: u64 = 16 << 20;
/// Retries of one attachment download before the page fails.
const DOWNLOAD_RETRIES: u32 = 4;
/// Longest pause between download retries.
const MAX_DOWNLOAD_PAUSE: Duration = Duration::from_secs(30);
/// Chunk size for deferred attachment reads.
const ATTACHMENT_CHUNK: u32 = 1 << 20;

/// Access to the connector's key/value state for the plugin's `state` import.
#[derive(Clone)]
pub struct KvAccess {
    /// The host's state database.
    pub db: Arc<Mutex<StateDb>>,
    /// The connector the values belong to.
    pub connector: String,
}

/// A compiled plugin ready to start sessions.
pub struct WasmPlugin {
    engine: PluginEngine,
    id: String,
    pre: InstancePre,
    caps: Arc<Capabilities>,
    secrets: Arc<SecretStore>,
    http: HttpClient,
    kv: Option<KvAccess>,
    log_sink: Option<LogSink>,
}

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

impl WasmPlugin {
    /// Checks the wasm against the manifest's SHA-256, compiles it (or takes
    /// it from the cache), reads the API version it was built against and
    /// links it to the host imports of that version. HTTP goes over the
    /// network.
    pub fn load(
        engine: &PluginEngine,
        manifest: &PluginManifest,
        caps: Capabilities,
        secrets: SecretStore,
        kv: Option<KvAccess>,
    ) -> Result<WasmPlugin, PluginError> {
        Self::load_with_http(engine, manifest, caps, secrets, kv, HttpClient::new())
    }

    /// Like [`WasmPlugin::load`], with HTTP (the plugin's requests and the
    /// host's attachment downloads) carried by `http`, for example a client
    /// over a scripted transport in tests.
    pub fn load_with_http(
        engine: &PluginEngine,
        manifest: &PluginManifest,
        caps: Capabilities,
        secrets: SecretStore,
        kv: Option<KvAccess>,
        http: HttpClient,
    ) -> Result<WasmPlugin, PluginError> {
        let bytes = manifest
            .read_wasm()
            .map_err(|e| PluginError::Load(e.to_string()))?;
        let component = Component::new(engine.engine(), &bytes).map_err(|e| {
            PluginError::Load(format!(
                "{} is not a valid WebAssembly component: {e:#}; build it for wasm32-wasip2",
                manifest.wasm_path().display()
            ))
        })?;
        let version = api_version::detect(engine.engine(), &component, &manifest.api_version)
            .map_err(|e| PluginError::Load(format!("plugin {}: {e}", manifest.id)))?;
        let mut linker: Linker<SandboxState> = Linker::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| PluginError::Load(format!("linking WASI: {e:#}")))?;
        let pre = InstancePre::new(version, &mut linker, &component).map_err(|e| {
            PluginError::Load(format!(
                "plugin {} (API {}) cannot be linked: {e:#}; rebuild it with a connector-sdk for API {}",
                manifest.id,
                version.as_str(),
                version.as_str()
            ))
        })?;
        Ok(WasmPlugin {
            engine: engine.clone(),
            id: manifest.id.clone(),
            pre,
            caps: Arc::new(caps),
            secrets: Arc::new(secrets),
            http,
            kv,
            log_sink: None,
        })
    }

    /// Also records every line the plugin logs (at any level) into `sink`.
    pub fn set_log_sink(&mut self, sink: LogSink) {
        self.log_sink = Some(sink);
    }

    /// The API version the plugin was built against (read from the
    /// component).
    pub fn api_version(&self) -> ApiVersion {
        self.pre.version()
    }

    fn instantiate(&self) -> Result<(Store<SandboxState>, Instance), PluginError> {
        let state = SandboxState::new(
            &self.id,
            self.caps.clone(),
            self.secrets.clone(),
            self.http.clone(),
            self.kv.clone(),
            self.log_sink.clone(),
        )?;
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(PluginEngine::ticks_for(self.caps.timeout_secs));
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(e, &store, self.caps.timeout_secs))?;
        Ok((store, bindings))
    }
}

impl Source for WasmPlugin {
    fn validate_config(&mut self, config_json: &str) -> Result<(), PluginError> {
        let (mut store, bindings) = self.instantiate()?;
        let result = bindings
            .call_validate_config(&mut store, config_json)
            .map_err(|e| classify(e, &store, self.caps.timeout_secs))?;
        result.map_err(source_error)
    }

    fn open(
        &mut self,
        config_json: &str,
        checkpoint: Option<Vec<u8>>,
    ) -> Result<Box<dyn SourceSession + '_>, PluginError> {
        let (mut store, bindings) = self.instantiate()?;
        let session = bindings
            .call_open(&mut store, config_json, checkpoint.as_ref())
            .map_err(|e| classify(e, &store, self.caps.timeout_secs))?
            .map_err(source_error)?;
        Ok(Box::new(WasmSession {
            plugin: self,
            store,
            bindings,
            session: Some(session),
            spool: None,
        }))
    }
}

/// A session of a wasm plugin; its store lives as long as the session.
pub struct WasmSession<'a> {
    plugin: &'a WasmPlugin,
    store: Store<SandboxState>,
    bindings: Instance,
    session: Option<ResourceAny>,
    spool: Option<tempfile::TempDir>,
}

impl WasmSession<'_> {
    fn arm_deadline(&mut self) {
        self.store
            .set_epoch_deadline(PluginEngine::ticks_for(self.plugin.caps.timeout_secs));
    }

    fn fail(&mut self, e: wasmtime::Error) -> PluginError {
        // After a trap the instance may be inconsistent: never call it again.
        self.session = None;
        classify(e, &self.store, self.plugin.caps.timeout_secs)
    }

    fn session(&self) -> Result<ResourceAny, PluginError> {
        self.session.ok_or_else(|| {
            PluginError::Protocol("the session was ended by an earlier failure".into())
        })
    }

    fn resolve_attachment(
        &mut self,
        message_id: &str,
        a: wit::Attachment,
    ) -> Result<Attachment, PluginError> {
        let data = match a.body {
            wit::AttachmentBody::Inline(bytes) => {
                if bytes.len() > MAX_INLINE_ATTACHMENT {
                    return Err(PluginError::Protocol(format!(
                        "attachment {} of message {message_id} is {} bytes inline; above {MAX_INLINE_ATTACHMENT} use fetch or deferred",
                        a.id,
                        bytes.len()
                    )));
                }
                AttachmentData::Bytes(bytes)
            }
            wit::AttachmentBody::Fetch(spec) => self.download(message_id, &a.id, a.size, &spec)?,
            wit::AttachmentBody::Deferred => self.read_deferred(message_id, &a.id, a.size)?,
        };
        Ok(Attachment {
            id: a.id,
            file_name: a.file_name,
            media_type: a.media_type,
            data,
        })
    }

    /// Downloads a `fetch` attachment, retrying a few times when the
    /// connection breaks or the server is busy, so that one flaky download
    /// does not send the whole page back to the plugin.
    fn download(
        &mut self,
        message_id: &str,
        attachment_id: &str,
        size: Option<u64>,
        spec: &wit::FetchSpec,
    ) -> Result<AttachmentData, PluginError> {
        let plugin = self.plugin;
        let mut attempt = 0;
        loop {
            let mut sink = self.spool_sink(size)?;
            match plugin
                .http
                .download(&plugin.id, &plugin.caps, &plugin.secrets, spec, &mut sink)
            {
                Ok(_) => return sink.finish(),
                Err(e) if e.is_retryable() && attempt < DOWNLOAD_RETRIES => {
                    let pause = e
                        .retry_after()
                        .unwrap_or(Duration::from_millis(250) * (1 << attempt))
                        .min(MAX_DOWNLOAD_PAUSE);
                    attempt += 1;
                    tracing::warn!(plugin = %plugin.id, attachment = attachment_id, message = message_id, "attachment download failed ({e}); retry {attempt} in {pause:?}");
                    std::thread::sleep(pause);
                }
                Err(e) => {
                    return Err(PluginError::Transient(format!(
                        "attachment {attachment_id} of message {message_id}: {e}"
                    )));
                }
            }
        }
    }

    fn read_deferred(
        &mut self,
        message_id: &str,
        attachment_id: &str,
        size: Option<u64>,
    ) -> Result<AttachmentData, PluginError> {
        let session = self.session()?;
        self.arm_deadline();
        let reader = self
            .bindings
            .call_open_attachment(&mut self.store, session, message_id, attachment_id)
            .map_err(|e| self.fail(e))?
            .map_err(source_error)?;
        let mut sink = self.spool_sink(size)?;
        loop {
            self.arm_deadline();
            let chunk = self
                .bindings
                .call_read(&mut self.store, reader, ATTACHMENT_CHUNK)
                .map_err(|e| self.fail(e))?
                .map_err(source_error)?;
            match chunk {
                Some(bytes) => sink.write_all(&bytes).map_err(spool_error)?,
                None => break,
            }
        }
        reader
            .resource_drop(&mut self.store)
            .map_err(|e| self.fail(e))?;
        sink.finish()
    }

    fn spool_sink(&mut self, size: Option<u64>) -> Result<SpoolSink, PluginError> {
        SpoolSink::new(size, &mut self.spool)
    }
}

/// Where attachment bytes go while they arrive: memory for small files, a
/// temporary file for large or unknown sizes.
pub(crate) enum SpoolSink {
    /// Small files.
    Memory(Vec<u8>),
    /// Large or unknown sizes.
    File(std::io::BufWriter<tempfile::NamedTempFile>),
}

impl Write for SpoolSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            SpoolSink::Memory(v) => v.write(buf),
            SpoolSink::File(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            SpoolSink::Memory(_) => Ok(()),
            SpoolSink::File(f) => f.flush(),
        }
    }
}

impl SpoolSink {
    /// A sink for a file of `size` bytes (if known), spooling into `dir`
    /// (created on first need and removed with the session).
    pub(crate) fn new(
        size: Option<u64>,
        dir: &mut Option<tempfile::TempDir>,
    ) -> Result<SpoolSink, PluginError> {
        if size.is_some_and(|s| s <= SPOOL_THRESHOLD) {
            return Ok(SpoolSink::Memory(Vec::new()));
        }
        if dir.is_none() {
            *dir = Some(tempfile::tempdir().map_err(spool_error)?);
        }
        let dir = dir.as_ref().expect("just created").path();
        let file = tempfile::NamedTempFile::new_in(dir).map_err(spool_error)?;
        Ok(SpoolSink::File(std::io::BufWriter::new(file)))
    }

    /// The attachment's data: bytes, or the spooled file.
    pub(crate) fn finish(self) -> Result<AttachmentData, PluginError> {
        match self {
            SpoolSink::Memory(v) => Ok(AttachmentData::Bytes(v)),
            SpoolSink::File(f) => {
                let file = f.into_inner().map_err(|e| spool_error(e.into_error()))?;
                if file.as_file().metadata().map_err(spool_error)?.len() <= SPOOL_THRESHOLD {
                    let bytes = std::fs::read(file.path()).map_err(spool_error)?;
                    return Ok(AttachmentData::Bytes(bytes));
                }
                let (_, path) = file.keep().map_err(|e| spool_error(e.error))?;
                Ok(AttachmentData::File(path))
            }
        }
    }
}

pub(crate) fn spool_error(e: std::io::Error) -> PluginError {
    PluginError::Transient(format!(
        "cannot spool an attachment to disk: {e}; check free space in the temporary folder"
    ))
}

impl SourceSession for WasmSession<'_> {
    fn next_page(&mut self) -> Result<Page, PluginError> {
        let session = self.session()?;
        self.arm_deadline();
        let page = self
            .bindings
            .call_next_page(&mut self.store, session)
            .map_err(|e| self.fail(e))?
            .map_err(source_error)?;
        if page.checkpoint.len() > MAX_CHECKPOINT {
            return Err(PluginError::Protocol(format!(
                "checkpoint of {} bytes is larger than the {MAX_CHECKPOINT} the host stores",
                page.checkpoint.len()
            )));
        }
        let mut messages = Vec::with_capacity(page.messages.len());
        for mut m in page.messages {
            let wit_attachments = std::mem::take(&mut m.attachments);
            let mut attachments = Vec::with_capacity(wit_attachments.len());
            for a in wit_attachments {
                attachments.push(self.resolve_attachment(&m.id, a)?);
            }
            messages.push(convert::message(m, attachments));
        }
        Ok(Page {
            conversations: page
                .conversations
                .into_iter()
                .map(convert::conversation)
                .collect(),
            messages,
            checkpoint: page.checkpoint,
            complete: page.complete,
        })
    }
}

impl Drop for WasmSession<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.arm_deadline();
            if let Err(e) = session.resource_drop(&mut self.store) {
                tracing::warn!(plugin = %self.plugin.id, "ending the plugin session failed: {e:#}");
            }
        }
    }
}

fn source_error(e: wit::SourceError) -> PluginError {
    match e {
        wit::SourceError::InvalidConfig(m) => PluginError::InvalidConfig(m),
        wit::SourceError::Auth(m) => PluginError::Auth(m),
        wit::SourceError::RateLimited(s) => PluginError::RateLimited(s),
        wit::SourceError::Transient(m) => PluginError::Transient(m),
        wit::SourceError::Permanent(m) => PluginError::Permanent(m),
    }
}

/// Names a failed call: the deadline, the memory cap, or a crash.
fn classify(e: wasmtime::Error, store: &Store<SandboxState>, timeout_secs: u32) -> PluginError {
    let data = store.data();
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return PluginError::Deadline { secs: timeout_secs };
    }
    if data.limiter.was_hit() {
        return PluginError::MemoryLimit {
            mb: (data.caps.memory_bytes >> 20) as u32,
        };
    }
    PluginError::Trap {
        message: format!("{e:?}"),
        stderr: data.stderr_text(),
    }
}
