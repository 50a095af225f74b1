//! Turns an installed plugin (its manifest) into a runnable [`Source`],
//! whatever kind of plugin it is: the one place that picks WebAssembly or
//! native.

use crate::native::NativePlugin;
use crate::wasm::{PluginEngine, WasmPlugin};
use crate::{PluginContext, PluginError, PluginKind, PluginManifest, Source};

/// Loads the plugin a manifest describes, in `context`.
///
/// A `kind = "native"` plugin loads only when `context.caps.trusted_native`
/// is set (the operator's `[grants] trusted-native = true`); it gets no
/// sandbox and no key/value state.
pub fn load(
    engine: &PluginEngine,
    manifest: &PluginManifest,
    context: PluginContext,
) -> Result<Box<dyn Source>, PluginError> {
    match manifest.kind {
        PluginKind::Wasm => Ok(Box::new(WasmPlugin::load(engine, manifest, context)?)),
        PluginKind::Native => Ok(Box::new(NativePlugin::load(manifest, context)?)),
    }
}
