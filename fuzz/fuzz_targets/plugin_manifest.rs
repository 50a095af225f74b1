//! A plugin manifest (`plugin.toml`), loaded pinned and unpinned.
#![no_main]

use connector_runtime::manifest::PluginManifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("plugin.toml");
    std::fs::write(&path, data).expect("the input is written");
    if PluginManifest::load_unpinned(&path).is_ok() {
        if let Ok(manifest) = PluginManifest::load(&path) {
            let _ = manifest.wasm_path();
        }
    }
});
