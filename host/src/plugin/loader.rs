//! Turns an installed plugin (its manifest) into a runnable [`Source`],
//! whatever kind of plugin it is.

use super::{Capabilities, PluginError, SecretStore, Source};
use crate::config::PluginManifest;
use crate::wasm::{KvAccess, PluginEngine, WasmPlugin};

/// Loads the plugin a manifest describes, with the given capabilities.
pub fn load(
    engine: &PluginEngine,
    manifest: &PluginManifest,
    caps: Capabilities,
    secrets: SecretStore,
    kv: Option<KvAccess>,
) -> Result<Box<dyn Source>, PluginError> {
    Ok(Box::new(WasmPlugin::load(
        engine, manifest, caps, secrets, kv,
    )?))
}
