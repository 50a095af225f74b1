//! Loading a plugin component and driving its sessions: a fresh store per
//! session, a deadline on every call, traps turned into typed errors, and
//! attachments fetched before a page leaves this module.

use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Store, Trap};

use super::api_version;
use super::convert;
use super::engine::PluginEngine;
use super::latest::types as wit;
use super::sandbox::{LogSink, SandboxState};
use super::versioned::{Instance, InstancePre};
use crate::api_version::ApiVersion;
use crate::attachments::{self, AttachmentSession, AttachmentSpool};
use crate::context::PluginContext;
use crate::{KvAccess, Page, PluginError, PluginHttp, PluginManifest};
use crate::{Source, SourceSession};
use connector_model::AttachmentData;

/// Chunk size for deferred attachment reads.
const ATTACHMENT_CHUNK: u32 = 1 << 20;
/// Most sessions one instance serves, one after another, before a fresh
/// one replaces it (so what a plugin leaks stays bounded).
const SESSIONS_PER_INSTANCE: u32 = 64;

/// An instance of the component in its store.
struct Instantiated {
    store: Store<SandboxState>,
    bindings: Instance,
    /// Sessions it has served.
    sessions: u32,
}

/// A compiled plugin ready to start sessions.
pub struct WasmPlugin {
    engine: PluginEngine,
    pre: InstancePre,
    /// The plugin's id, capabilities and secrets, with its HTTP.
    http: PluginHttp,
    kv: Option<KvAccess>,
    log_sink: Option<LogSink>,
    /// The instance of the last session, when it ended cleanly: the next
    /// session (the next partition this thread reads) runs in it, so the
    /// plugin may keep what it learned (a login) in memory meanwhile.
    idle: std::sync::Mutex<Option<Instantiated>>,
}

impl WasmPlugin {
    /// Checks the wasm against the manifest's SHA-256, compiles it (or takes
    /// it from the cache), reads the API version it was built against and
    /// links it to the host imports of that version.
    pub fn load(
        engine: &PluginEngine,
        manifest: &PluginManifest,
        context: PluginContext,
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
        let PluginContext {
            caps,
            secrets,
            kv,
            http,
        } = context;
        Ok(WasmPlugin {
            engine: engine.clone(),
            pre,
            http: PluginHttp::new(&manifest.id, caps, secrets, http),
            kv,
            log_sink: None,
            idle: std::sync::Mutex::new(None),
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

    /// Gives the next call into `store` the plugin's time limit.
    fn arm(&self, store: &mut Store<SandboxState>) {
        store.set_epoch_deadline(PluginEngine::ticks_for(self.http.caps.timeout_secs));
    }

    fn instantiate(&self) -> Result<(Store<SandboxState>, Instance), PluginError> {
        let state = SandboxState::new(self.http.clone(), self.kv.clone(), self.log_sink.clone())?;
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        self.arm(&mut store);
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(e, &store, self.http.caps.timeout_secs))?;
        Ok((store, bindings))
    }
}

impl Source for WasmPlugin {
    fn validate_config(&mut self, config_json: &str) -> Result<(), PluginError> {
        let (mut store, bindings) = self.instantiate()?;
        let result = bindings
            .call_validate_config(&mut store, config_json)
            .map_err(|e| classify(e, &store, self.http.caps.timeout_secs))?;
        result.map_err(source_error)
    }

    fn partitions(&mut self, config_json: &str) -> Result<Vec<String>, PluginError> {
        let (mut store, bindings) = self.instantiate()?;
        let ids = bindings
            .call_partitions(&mut store, config_json)
            .map_err(|e| classify(e, &store, self.http.caps.timeout_secs))?
            .map_err(source_error)?;
        crate::source::check_partition_ids(&ids)?;
        Ok(ids)
    }

    fn open(
        &mut self,
        config_json: &str,
        partition: Option<&str>,
        checkpoint: Option<Vec<u8>>,
    ) -> Result<Box<dyn SourceSession + '_>, PluginError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut inst = match idle {
            Some(inst) => inst,
            None => {
                let (store, bindings) = self.instantiate()?;
                Instantiated {
                    store,
                    bindings,
                    sessions: 0,
                }
            }
        };
        self.arm(&mut inst.store);
        let session = inst
            .bindings
            .call_open(&mut inst.store, config_json, partition, checkpoint.as_ref())
            .map_err(|e| classify(e, &inst.store, self.http.caps.timeout_secs))?
            .map_err(source_error)?;
        inst.sessions += 1;
        Ok(Box::new(WasmSession {
            plugin: self,
            inst: Some(inst),
            session: Some(session),
            spool: AttachmentSpool::new(self.http.caps.attachment_bytes),
        }))
    }
}

/// A session of a wasm plugin. Its store outlives it when it ends cleanly,
/// for the plugin's next session.
pub struct WasmSession<'a> {
    plugin: &'a WasmPlugin,
    /// The instance; taken only when the session is dropped.
    inst: Option<Instantiated>,
    /// `None` once a call trapped: the instance is never called again.
    session: Option<ResourceAny>,
    spool: AttachmentSpool,
}

impl WasmSession<'_> {
    /// The instance, its deadline armed for one more call.
    fn armed(&mut self) -> &mut Instantiated {
        let inst = self
            .inst
            .as_mut()
            .expect("held until the session is dropped");
        self.plugin.arm(&mut inst.store);
        inst
    }

    fn fail(&mut self, e: wasmtime::Error) -> PluginError {
        // After a trap the instance may be inconsistent: never call it again.
        self.session = None;
        let inst = self
            .inst
            .as_ref()
            .expect("held until the session is dropped");
        classify(e, &inst.store, self.plugin.http.caps.timeout_secs)
    }

    fn session(&self) -> Result<ResourceAny, PluginError> {
        self.session.ok_or_else(|| {
            PluginError::Protocol("the session was ended by an earlier failure".into())
        })
    }
}

impl AttachmentSession for WasmSession<'_> {
    fn spool_and_http(&mut self) -> (&mut AttachmentSpool, &PluginHttp) {
        (&mut self.spool, &self.plugin.http)
    }

    fn read_deferred(
        &mut self,
        message_id: &str,
        attachment_id: &str,
        size: Option<u64>,
    ) -> Result<AttachmentData, PluginError> {
        let session = self.session()?;
        let inst = self.armed();
        let opened =
            inst.bindings
                .call_open_attachment(&mut inst.store, session, message_id, attachment_id);
        let reader = opened.map_err(|e| self.fail(e))?.map_err(source_error)?;
        let mut writer = self.spool.writer(message_id, attachment_id, size)?;
        loop {
            let inst = self.armed();
            let read = inst
                .bindings
                .call_read(&mut inst.store, reader, ATTACHMENT_CHUNK);
            match read.map_err(|e| self.fail(e))?.map_err(source_error)? {
                Some(bytes) => writer.append(&bytes)?,
                None => break,
            }
        }
        let dropped = reader.resource_drop(&mut self.armed().store);
        dropped.map_err(|e| self.fail(e))?;
        writer.finish()
    }
}

impl SourceSession for WasmSession<'_> {
    fn next_page(&mut self) -> Result<Page, PluginError> {
        let session = self.session()?;
        let inst = self.armed();
        let page = inst.bindings.call_next_page(&mut inst.store, session);
        let page = page.map_err(|e| self.fail(e))?.map_err(source_error)?;
        let mut messages = Vec::with_capacity(page.messages.len());
        for mut m in page.messages {
            let wit_attachments = std::mem::take(&mut m.attachments);
            let mut attachments = Vec::with_capacity(wit_attachments.len());
            for a in wit_attachments {
                attachments.push(attachments::resolve(self, &m.id, convert::attachment(a))?);
            }
            messages.push(convert::message(m, attachments));
        }
        let page = Page {
            conversations: page
                .conversations
                .into_iter()
                .map(convert::conversation)
                .collect(),
            messages,
            checkpoint: page.checkpoint,
            complete: page.complete,
            unreadable: std::mem::take(&mut self.armed().store.data_mut().unreadable),
        };
        page.check_limits()?;
        Ok(page)
    }
}

impl Drop for WasmSession<'_> {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        if let Err(e) = session.resource_drop(&mut self.armed().store) {
            tracing::warn!(plugin = %self.plugin.http.plugin_id, "ending the plugin session failed: {e:#}");
            return;
        }
        // The instance serves the plugin's next session, unless it has
        // served enough (one that trapped returned above: no session).
        if let Some(inst) = self.inst.take()
            && inst.sessions < SESSIONS_PER_INSTANCE
        {
            *self.plugin.idle.lock().unwrap_or_else(|p| p.into_inner()) = Some(inst);
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
            mb: (data.http.caps.memory_bytes >> 20) as u32,
        };
    }
    PluginError::Trap {
        message: format!("{e:?}"),
        stderr: data.stderr_text(),
    }
}
