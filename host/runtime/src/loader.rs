//! Turns an installed plugin (its manifest) into a runnable [`Source`],
//! whatever kind of plugin it is: the one place that picks WebAssembly or
//! native.

use crate::native::NativePlugin;
use crate::wasm::{PluginEngine, WasmPlugin};
use crate::{Capabilities, HttpClient, KvAccess, PluginError, PluginKind, PluginManifest};
use crate::{SecretStore, Source};

/// Loads the plugin a manifest describes, with the given capabilities and
/// real HTTP.
///
/// A `kind = "native"` plugin loads only when `caps.trusted_native` is set
/// (the operator's `[grants] trusted-native = true`); it gets no sandbox and
/// no key/value state (`kv` is for wasm plugins).
pub fn load(
    engine: &PluginEngine,
    manifest: &PluginManifest,
    caps: Capabilities,
    secrets: SecretStore,
    kv: Option<KvAccess>,
) -> Result<Box<dyn Source>, PluginError> {
    load_with_http(engine, manifest, caps, secrets, kv, HttpClient::new())
}

/// Like [`load`], with HTTP carried by `http` (for example a scripted
/// transport in the plugin test harness).
pub fn load_with_http(
    engine: &PluginEngine,
    manifest: &PluginManifest,
    caps: Capabilities,
    secrets: SecretStore,
    kv: Option<KvAccess>,
    http: HttpClient,
) -> Result<Box<dyn Source>, PluginError> {
    match manifest.kind {
        PluginKind::Wasm => Ok(Box::new(WasmPlugin::load_with_http(
            engine, manifest, caps, secrets, kv, http,
        )?)),
        PluginKind::Native => Ok(Box::new(NativePlugin::load(manifest, caps, secrets, http)?)),
    }
}
