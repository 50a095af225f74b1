//! What the host gives a plugin it loads, whatever kind of plugin it is.

use crate::{Capabilities, HttpClient, KvAccess, SecretStore};

/// What the host gives a plugin it loads.
pub struct PluginContext {
    /// What it may reach and use.
    pub caps: Capabilities,
    /// The values of its granted secrets.
    pub secrets: SecretStore,
    /// Its key/value store (wasm plugins; `None` gives it none).
    pub kv: Option<KvAccess>,
    /// What carries its HTTP requests and the host's downloads for it.
    pub http: HttpClient,
}

impl PluginContext {
    /// `caps` and `secrets`, no key/value store, real HTTP.
    pub fn new(caps: Capabilities, secrets: SecretStore) -> PluginContext {
        PluginContext {
            caps,
            secrets,
            kv: None,
            http: HttpClient::new(),
        }
    }

    /// The same, with the key/value store `kv`.
    pub fn with_kv(self, kv: KvAccess) -> PluginContext {
        PluginContext {
            kv: Some(kv),
            ..self
        }
    }

    /// The same, with HTTP carried by `http` (for example a scripted
    /// transport in the plugin test harness).
    pub fn with_http(self, http: HttpClient) -> PluginContext {
        PluginContext { http, ..self }
    }
}
