//! # connector-plugin-harness
//!
//! Runs a **compiled** source plugin — the same `.wasm` component (or native
//! library) the host would load — against scripted HTTP responses, folders,
//! secrets and state, and hands back the pages it produced and the requests
//! it made. No network, no mail store, no connector file: a plugin author's
//! unit test for the plugin as the host really runs it.
//!
//! The plugin runs in the real host sandbox (`connector-runtime`), with the
//! real capability checks: only origins the manifest declares **and** the
//! test grants pass the allow-list, and only then reach the scripted
//! transport. A request nothing scripted answers gets an HTTP error inside
//! the plugin and fails the run with [`HarnessError::Unscripted`], naming
//! the request and the scripted patterns.
//!
//! ## Walkthrough
//!
//! ```no_run
//! use connector_plugin_harness::{Harness, Method};
//!
//! // Build the plugin first: cargo build --release --target wasm32-wasip2 -p my-plugin
//! let run = Harness::new("plugins/my-plugin/manifest.toml")
//!     .config(serde_json::json!({"base_url": "https://chat.example.test"}))
//!     .grant_host("https://chat.example.test")
//!     .secret("api-token", "Bearer test-token")
//!     .respond(
//!         Method::Get,
//!         "https://chat.example.test/api/messages?*",
//!         200,
//!         &[("content-type", "application/json")],
//!         r#"{"messages": [], "next": null}"#,
//!     )
//!     .run_pages()
//!     .expect("the plugin runs");
//! assert!(run.pages.last().unwrap().complete);
//! assert_eq!(run.requests[0].header("authorization"), Some("Bearer test-token"));
//! ```
//!
//! [`Harness::new`] takes the plugin's manifest (its declared permissions
//! apply; the `sha256` may still be `"unset"`) or a bare `.wasm` file
//! (then every granted host, folder and secret counts as declared).
//! [`Harness::run_pages`] opens one session (from [`Harness::checkpoint`]
//! if set), pulls pages until one is `complete` (or [`Harness::max_pages`]
//! is reached) and returns a [`Run`]: the pages in the SDK's types (as the
//! host received them, attachments resolved to inline bytes), the
//! checkpoints, every request, every line the plugin logged, and the
//! plugin's state store afterwards. Run it again with
//! `.checkpoint(run.last_checkpoint())` to test resuming.
//!
//! Scripted responses ([`Harness::respond`], [`Harness::respond_once`],
//! [`Harness::respond_error`]) are matched in the order given, by method and
//! by a URL pattern in which `*` matches any run of characters (query string
//! included). A `respond_once` rule is used up by its first match, so a
//! `respond_once(…, 429, …)` before a `respond(…, 200, …)` scripts a retry.

#![warn(missing_docs)]

mod scripted;
mod sdk_types;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use connector_model::digest::sha256_hex;
use connector_runtime::wasm::{LogSink, PluginEngine, WasmPlugin};
use connector_runtime::{Capabilities, Grants, HttpClient, KvAccess, MemoryKv, PluginError};
use connector_runtime::{Origin, PluginKind, PluginKv, PluginManifest, RequestedPermissions};
use connector_runtime::{PluginContext, loader};
use connector_runtime::{SecretStore, Source};

pub use connector_runtime::http::TransportError;
pub use connector_runtime::wasm::LogLine;
pub use connector_sdk::{
    Attachment, AttachmentBody, Conversation, ConversationKind, Message, MessageKind, Page, Person,
    Relation,
};
pub use scripted::{Method, RecordedRequest};

use scripted::{Rule, ScriptedTransport};

/// Pages pulled at most when [`Harness::max_pages`] is not set.
const DEFAULT_MAX_PAGES: usize = 10_000;

/// Why a harness run failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The manifest or plugin file is unusable, or a grant is wrong.
    #[error("harness set-up: {0}")]
    Setup(String),
    /// The plugin could not be loaded (bad component, unsupported API
    /// version, untrusted native plugin, …).
    #[error("the plugin did not load: {0}")]
    Load(PluginError),
    /// The plugin returned an error or crashed; `run` holds what it did
    /// before.
    #[error("the plugin failed after {} page(s) and {} request(s): {error}", .run.pages.len(), .run.requests.len())]
    Plugin {
        /// What the host reported.
        error: PluginError,
        /// Pages and requests up to the failure.
        run: Box<Run>,
    },
    /// The plugin made requests no scripted response matches.
    #[error(
        "the plugin made {} request(s) nothing scripts: {}; script them with .respond(method, url_pattern, …) (scripted patterns: {})",
        .unscripted.len(),
        .unscripted.iter().map(|r| format!("{} {}", r.method, r.url)).collect::<Vec<_>>().join(", "),
        if .patterns.is_empty() { "none".to_string() } else { .patterns.join(", ") }
    )]
    Unscripted {
        /// The requests without a scripted response.
        unscripted: Vec<RecordedRequest>,
        /// The scripted `METHOD pattern`s.
        patterns: Vec<String>,
        /// Everything the run did.
        run: Box<Run>,
    },
    /// The pages break the host's contract in a way the host would refuse.
    #[error("the plugin broke the host contract: {0}")]
    Contract(String),
}

/// What a plugin did in one harness run.
#[derive(Debug)]
pub struct Run {
    /// The pages in order, as the host received them, in the SDK's types:
    /// attachments resolved to inline bytes, blank names and addresses
    /// dropped, `original` left out (see [`Run::source_sha256`]).
    pub pages: Vec<Page>,
    /// The source digest the host recorded for each message, by id.
    source_sha256: BTreeMap<String, String>,
    /// Every HTTP request that passed the allow-list (plugin requests and the
    /// host's `fetch` attachment downloads), in order.
    pub requests: Vec<RecordedRequest>,
    /// Every line the plugin logged, at any level (wasm plugins).
    pub logs: Vec<LogLine>,
    state: Arc<MemoryKv>,
}

impl Run {
    /// Every message of every page, in order.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.pages.iter().flat_map(|p| p.messages.iter())
    }

    /// Every conversation the pages described, in order.
    pub fn conversations(&self) -> impl Iterator<Item = &Conversation> {
        self.pages.iter().flat_map(|p| p.conversations.iter())
    }

    /// The message with id `id`, if any page had it.
    pub fn message(&self, id: &str) -> Option<&Message> {
        self.messages().find(|m| m.id == id)
    }

    /// The SHA-256 the host recorded as the message's source digest: of its
    /// `original` bytes when the plugin gave them, else of the message.
    pub fn source_sha256(&self, id: &str) -> Option<&str> {
        self.source_sha256.get(id).map(String::as_str)
    }

    /// The checkpoint of the last page (what the host would commit last).
    pub fn last_checkpoint(&self) -> Option<Vec<u8>> {
        self.pages.last().map(|p| p.checkpoint.clone())
    }

    /// The value the plugin's state store holds under `key` after the run.
    pub fn state(&self, key: &str) -> Option<Vec<u8>> {
        self.state.get(key).ok().flatten()
    }
}

/// The bytes of an attachment of a harness page (always inline).
pub fn attachment_bytes(attachment: &Attachment) -> &[u8] {
    match &attachment.body {
        AttachmentBody::Inline(bytes) => bytes,
        AttachmentBody::Fetch(_) | AttachmentBody::Deferred => &[],
    }
}

/// A plugin under test and everything scripted around it. Build it with the
/// chained methods, then call [`Harness::run_pages`] (as often as you like).
#[derive(Clone)]
pub struct Harness {
    manifest: Result<PluginManifest, String>,
    bare_wasm: bool,
    config_json: String,
    grants: Grants,
    secrets: BTreeMap<String, String>,
    state: BTreeMap<String, Vec<u8>>,
    checkpoint: Option<Vec<u8>>,
    partition: Option<String>,
    described: BTreeSet<String>,
    rules: Vec<Rule>,
    forward: Vec<String>,
    max_pages: Option<usize>,
    problems: Vec<String>,
}

/// The engine shared by every harness of the test process, with a compile
/// cache in the temporary folder so that a plugin compiles once.
fn engine() -> Result<PluginEngine, HarnessError> {
    static ENGINE: OnceLock<Result<PluginEngine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let cache = std::env::temp_dir().join("connector-plugin-harness-cache");
            PluginEngine::new(Some(&cache)).map_err(|e| e.to_string())
        })
        .clone()
        .map_err(HarnessError::Setup)
}

impl Harness {
    /// A harness for the plugin at `path`: its `manifest.toml` (the usual
    /// case: declared permissions apply, `sha256` may be unset) or a bare
    /// `.wasm` component (everything granted counts as declared).
    ///
    /// Problems (a missing file, a bad manifest) are reported by
    /// [`Harness::run_pages`], so the builder chain never breaks.
    pub fn new(path: impl AsRef<Path>) -> Harness {
        let path = path.as_ref();
        let is_wasm = path.extension().is_some_and(|e| e == "wasm");
        let manifest = if is_wasm {
            bare_manifest(path)
        } else {
            load_manifest(path)
        };
        Harness {
            manifest,
            bare_wasm: is_wasm,
            config_json: "{}".into(),
            grants: Grants::default(),
            secrets: BTreeMap::new(),
            state: BTreeMap::new(),
            checkpoint: None,
            partition: None,
            described: BTreeSet::new(),
            rules: Vec::new(),
            forward: Vec::new(),
            max_pages: None,
            problems: Vec::new(),
        }
    }

    /// The plugin configuration (what `[plugin-config]` holds), as JSON.
    pub fn config(mut self, config: serde_json::Value) -> Harness {
        self.config_json = config.to_string();
        self
    }

    /// The plugin configuration as JSON text, passed as it is.
    pub fn config_json(mut self, config_json: impl Into<String>) -> Harness {
        self.config_json = config_json.into();
        self
    }

    /// Grants an HTTP origin (`scheme://host[:port]`), as `[grants] hosts`.
    pub fn grant_host(mut self, origin: &str) -> Harness {
        match Origin::parse(origin) {
            Ok(o) => self.grants.hosts.push(o),
            Err(e) => self.problems.push(format!("grant_host: {e}")),
        }
        self
    }

    /// Grants a read-only folder: `guest` (e.g. `/export`) inside the
    /// sandbox is `host_dir` on disk, as `[grants] files`.
    pub fn grant_folder(mut self, guest: &str, host_dir: impl Into<PathBuf>) -> Harness {
        self.grants.files.insert(guest.to_string(), host_dir.into());
        self
    }

    /// Grants the secret `name` and gives it `value` (for `secret-headers`
    /// and `secrets::get`).
    pub fn secret(mut self, name: &str, value: &str) -> Harness {
        self.grants.secrets.push(name.to_string());
        self.secrets.insert(name.to_string(), value.to_string());
        self
    }

    /// Grants the signing key `name`, an RSA private key in PEM.
    pub fn signing_key(mut self, name: &str, pem: &str) -> Harness {
        self.grants.signing_keys.push(name.to_string());
        self.secrets.insert(name.to_string(), pem.to_string());
        self
    }

    /// Marks a native plugin as trusted (`[grants] trusted-native = true`).
    pub fn trust_native(mut self) -> Harness {
        self.grants.trusted_native = true;
        self
    }

    /// Stores `value` under `key` in the plugin's state before the run.
    pub fn state(mut self, key: &str, value: impl Into<Vec<u8>>) -> Harness {
        self.state.insert(key.to_string(), value.into());
        self
    }

    /// Conversations an earlier run described (for example
    /// `earlier.conversations().cloned()`), which the host would remember:
    /// messages of this run may belong to them without describing them
    /// again.
    pub fn described(mut self, conversations: impl IntoIterator<Item = Conversation>) -> Harness {
        self.described
            .extend(conversations.into_iter().map(|c| c.id));
        self
    }

    /// Starts the session from `checkpoint` (as if an earlier run had
    /// committed it); without it the session starts from the beginning.
    pub fn checkpoint(mut self, checkpoint: impl Into<Vec<u8>>) -> Harness {
        self.checkpoint = Some(checkpoint.into());
        self
    }

    /// Opens the session of `partition` (an id [`Harness::partitions`]
    /// lists), as the host does for a partitioned source; without it the
    /// session reads the whole source.
    pub fn partition(mut self, partition: impl Into<String>) -> Harness {
        self.partition = Some(partition.into());
        self
    }

    /// Sends the requests to `origin` (`scheme://host:port`) that no rule
    /// answers to the real server there, such as a local simulator of the
    /// source; the plugin still needs the grant ([`Harness::grant_host`]).
    pub fn forward(mut self, origin: &str) -> Harness {
        self.forward.push(origin.trim_end_matches('/').to_string());
        self
    }

    /// Stops after `pages` pages even if none is complete.
    pub fn max_pages(mut self, pages: usize) -> Harness {
        self.max_pages = Some(pages);
        self
    }

    /// Answers every request matching `method` and `url_pattern` (`*` is a
    /// wildcard) with `status`, `headers` and `body`.
    pub fn respond(
        mut self,
        method: Method,
        url_pattern: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Harness {
        self.rules.push(Rule::response(
            method,
            url_pattern,
            status,
            headers,
            body.into(),
            false,
        ));
        self
    }

    /// Like [`Harness::respond`], for the first matching request only.
    pub fn respond_once(
        mut self,
        method: Method,
        url_pattern: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Harness {
        self.rules.push(Rule::response(
            method,
            url_pattern,
            status,
            headers,
            body.into(),
            true,
        ));
        self
    }

    /// Fails the first matching request with a transport error (a timeout,
    /// a broken connection).
    pub fn respond_error(
        mut self,
        method: Method,
        url_pattern: &str,
        error: TransportError,
    ) -> Harness {
        self.rules.push(Rule::error(method, url_pattern, error));
        self
    }

    fn prepare(&self) -> Result<(PluginManifest, Capabilities), HarnessError> {
        if !self.problems.is_empty() {
            return Err(HarnessError::Setup(self.problems.join("; ")));
        }
        let mut manifest = self.manifest.clone().map_err(HarnessError::Setup)?;
        if self.bare_wasm {
            let p = &mut manifest.permissions;
            p.secrets = self.grants.secrets.clone();
            p.signing_keys = self.grants.signing_keys.clone();
            p.files = !self.grants.files.is_empty();
        } else {
            let problems = self.grants.problems(&manifest);
            if !problems.is_empty() {
                return Err(HarnessError::Setup(format!(
                    "{}; declare it in {} or drop the grant",
                    problems.join("; "),
                    manifest.path.display()
                )));
            }
        }
        let caps = Capabilities::from_grants(&manifest, &self.grants);
        Ok((manifest, caps))
    }

    fn secrets(&self) -> SecretStore {
        SecretStore::from_pairs(self.secrets.clone())
    }

    /// Asks the plugin to check the configuration, as `connector validate`
    /// does (no grants, no network).
    pub fn validate_config(&self) -> Result<(), HarnessError> {
        let (manifest, _) = self.prepare()?;
        let engine = engine()?;
        let caps = Capabilities::for_validation(&manifest, &self.grants);
        let context = PluginContext::new(caps, SecretStore::default());
        let mut plugin = loader::load(&engine, &manifest, context).map_err(HarnessError::Load)?;
        plugin
            .validate_config(&self.config_json)
            .map_err(|error| HarnessError::Plugin {
                error,
                run: Box::new(Run {
                    pages: Vec::new(),
                    source_sha256: BTreeMap::new(),
                    requests: Vec::new(),
                    logs: Vec::new(),
                    state: Arc::default(),
                }),
            })
    }

    /// Loads the plugin with the harness's grants, secrets, state and
    /// scripted HTTP.
    fn load(&self) -> Result<Loaded, HarnessError> {
        let (manifest, caps) = self.prepare()?;
        let engine = engine()?;
        let state = Arc::new(MemoryKv::default());
        for (key, value) in &self.state {
            state
                .set(key, value)
                .map_err(|e| HarnessError::Setup(format!("state {key:?}: {e}")))?;
        }
        let transport = Arc::new(ScriptedTransport::new(
            self.rules.clone(),
            self.forward.clone(),
        ));
        let http = HttpClient::with_transport(transport.clone());
        let kv: KvAccess = state.clone();
        let logs: LogSink = Arc::new(Mutex::new(Vec::new()));
        let context = PluginContext::new(caps, self.secrets()).with_http(http);
        let plugin: Box<dyn Source> = match manifest.kind {
            PluginKind::Wasm => {
                let mut wasm = WasmPlugin::load(&engine, &manifest, context.with_kv(kv))
                    .map_err(HarnessError::Load)?;
                wasm.set_log_sink(logs.clone());
                Box::new(wasm)
            }
            PluginKind::Native => {
                loader::load(&engine, &manifest, context).map_err(HarnessError::Load)?
            }
        };
        Ok(Loaded {
            plugin,
            transport,
            logs,
            state,
        })
    }

    /// The partitions the plugin lists for the configuration, as the host
    /// asks at the start of every run (empty: the source is read whole).
    pub fn partitions(&self) -> Result<Vec<String>, HarnessError> {
        let Loaded {
            mut plugin,
            transport,
            logs,
            state,
        } = self.load()?;
        let result = plugin.partitions(&self.config_json);
        let loaded = Loaded {
            plugin,
            transport,
            logs,
            state,
        };
        let run = self.checked_run(loaded, Vec::new(), BTreeMap::new())?;
        result.map_err(|error| HarnessError::Plugin {
            error,
            run: Box::new(run),
        })
    }

    /// Runs one session (of [`Harness::partition`], or of the whole
    /// source): opens it, pulls pages until one is complete (or
    /// [`Harness::max_pages`]), and returns what happened.
    pub fn run_pages(&self) -> Result<Run, HarnessError> {
        let mut loaded = self.load()?;
        let mut pages = Vec::new();
        let mut digests = BTreeMap::new();
        let result = (|| -> Result<(), PluginError> {
            let mut session = loaded.plugin.open(
                &self.config_json,
                self.partition.as_deref(),
                self.checkpoint.clone(),
            )?;
            let max = self.max_pages.unwrap_or(DEFAULT_MAX_PAGES);
            while pages.len() < max {
                let page = session.next_page()?;
                for m in &page.messages {
                    digests.insert(m.id.clone(), m.source_sha256.clone());
                }
                // Spooled attachments live in the session's temporary
                // folder: read them before the session ends.
                let page = sdk_types::page(page)?;
                let complete = page.complete;
                pages.push(page);
                if complete {
                    break;
                }
            }
            Ok(())
        })();
        let run = self.checked_run(loaded, pages, digests)?;
        if let Err(error) = result {
            return Err(HarnessError::Plugin {
                error,
                run: Box::new(run),
            });
        }
        check_contract(&run, &self.described)?;
        Ok(run)
    }
}

impl Harness {
    /// What the plugin did, refused when it sent a request no rule
    /// scripted.
    fn checked_run(
        &self,
        loaded: Loaded,
        pages: Vec<Page>,
        source_sha256: BTreeMap<String, String>,
    ) -> Result<Run, HarnessError> {
        let run = Run {
            pages,
            source_sha256,
            requests: loaded.transport.requests(),
            logs: loaded
                .logs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            state: loaded.state,
        };
        let unscripted: Vec<RecordedRequest> = run
            .requests
            .iter()
            .filter(|r| !r.scripted)
            .cloned()
            .collect();
        if !unscripted.is_empty() {
            return Err(HarnessError::Unscripted {
                unscripted,
                patterns: self.rules.iter().map(Rule::describe).collect(),
                run: Box::new(run),
            });
        }
        Ok(run)
    }
}

/// A loaded plugin and what the harness watches of it.
struct Loaded {
    plugin: Box<dyn Source>,
    transport: Arc<ScriptedTransport>,
    logs: LogSink,
    state: Arc<MemoryKv>,
}

/// The checks the host's pipeline makes on pages, so that a plugin that
/// passes the harness is not refused by the host.
fn check_contract(run: &Run, earlier: &BTreeSet<String>) -> Result<(), HarnessError> {
    let mut described: BTreeSet<&str> = earlier.iter().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    for (n, page) in run.pages.iter().enumerate() {
        for c in &page.conversations {
            described.insert(c.id.as_str());
        }
        for m in &page.messages {
            if !described.contains(m.conversation_id.as_str()) {
                return Err(HarnessError::Contract(format!(
                    "page {}: message {} belongs to conversation {}, which no page described (nor an \
                     earlier run: see Harness::described); list it in a page's conversations",
                    n + 1,
                    m.id,
                    m.conversation_id
                )));
            }
            if !seen.insert(m.id.as_str()) {
                return Err(HarnessError::Contract(format!(
                    "page {}: message id {} appears twice in one session; ids must be unique and stable",
                    n + 1,
                    m.id
                )));
            }
            let mut ids = BTreeSet::new();
            for a in &m.attachments {
                if !ids.insert(a.id.as_str()) {
                    return Err(HarnessError::Contract(format!(
                        "message {}: attachment id {} appears twice",
                        m.id, a.id
                    )));
                }
            }
        }
    }
    Ok(())
}

fn load_manifest(path: &Path) -> Result<PluginManifest, String> {
    let mut manifest = PluginManifest::load_unpinned(path).map_err(|e| e.to_string())?;
    let file = manifest.wasm_path();
    let bytes = std::fs::read(&file).map_err(|e| {
        format!(
            "cannot read the plugin file {}: {e}; build the plugin first (`connector plugin build <plugin folder>`, or \
             cargo build --release --target wasm32-wasip2 -p <crate> --target-dir target/plugins)",
            file.display()
        )
    })?;
    // The harness tests what is built now: pin it.
    manifest.sha256 = sha256_hex(&bytes);
    Ok(manifest)
}

fn bare_manifest(path: &Path) -> Result<PluginManifest, String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read {}: {e}; build the plugin for wasm32-wasip2 first",
            path.display()
        )
    })?;
    let engine = engine().map_err(|e| e.to_string())?;
    let component = wasmtime::component::Component::new(engine.engine(), &bytes)
        .map_err(|e| format!("{} is not a WebAssembly component: {e:#}", path.display()))?;
    let (versions, _) =
        connector_runtime::wasm::api_version::versions_in(engine.engine(), &component);
    let api_version = versions
        .into_iter()
        .next()
        .unwrap_or_else(|| connector_runtime::api_version::SUPPORTED_API_VERSIONS[0].to_string());
    let id: String = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase().replace('_', "-"))
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let id = if id.starts_with(|c: char| c.is_ascii_lowercase()) {
        id
    } else {
        format!("plugin-{id}")
    };
    let any = |s: &str| Origin::parse(s).expect("a valid origin");
    Ok(PluginManifest {
        name: id.clone(),
        id,
        version: "0.0.0".into(),
        description: None,
        settings_schema: None,
        api_version,
        kind: PluginKind::Wasm,
        wasm: std::path::absolute(path).map_err(|e| e.to_string())?,
        library: None,
        sha256: sha256_hex(&bytes),
        fetch_after_commit: false,
        permissions: RequestedPermissions {
            hosts: vec![any("http://*:*"), any("https://*:*")],
            ..RequestedPermissions::default()
        },
        path: std::path::absolute(path).map_err(|e| e.to_string())?,
    })
}

#[cfg(test)]
mod tests {
    /// The two sides of the frozen `log` interface agree: the SDK writes the
    /// fields and the property the host reads.
    #[test]
    fn the_sdk_writes_the_report_fields_and_property_the_host_reads() {
        use connector_model::unreadable_fields as host;
        use connector_sdk::report::fields as sdk;
        assert_eq!(
            [
                sdk::REPORT,
                sdk::UNREADABLE,
                sdk::CONVERSATION,
                sdk::REASON,
                sdk::FIX
            ],
            [
                host::REPORT,
                host::UNREADABLE,
                host::CONVERSATION,
                host::REASON,
                host::FIX
            ]
        );
        assert_eq!(
            connector_sdk::EXTERNAL_PARTICIPANTS,
            connector_model::EXTERNAL_PARTICIPANTS_PROPERTY
        );
    }
}
