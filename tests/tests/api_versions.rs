//! WIT versioning: the host reads the API version a plugin was built
//! against from the component itself, runs a plugin built against the
//! frozen 0.1.0 world (a committed prebuilt fixture), and refuses a
//! component built against a version it does not know, naming the versions
//! it runs.

use std::path::Path;

use connector_e2e::*;
use connector_host::config::ConnectorConfig;
use connector_host::pipeline::{Host, RunOptions};
use connector_plugin_harness::{Harness, HarnessError, Relation, attachment_bytes};
use connector_runtime::api_version::{ApiVersion, ApiVersionError, SUPPORTED_API_VERSIONS};
use connector_runtime::wasm::{PluginEngine, api_version};

fn fixture() -> std::path::PathBuf {
    workspace_root().join("tests/fixtures/api-v0.1.0")
}

#[test]
fn the_version_is_read_from_the_component_itself() {
    let engine = PluginEngine::new(None).unwrap();
    let bytes = std::fs::read(fixture().join("hello-0.1.0.wasm")).unwrap();
    let component = wasmtime_component(&engine, &bytes);
    let (versions, exports_source) = api_version::versions_in(engine.engine(), &component);
    assert!(exports_source);
    assert_eq!(versions.into_iter().collect::<Vec<_>>(), ["0.1.0"]);
    assert_eq!(
        api_version::detect(engine.engine(), &component, "0.1.0").unwrap(),
        ApiVersion::V0_1_0
    );
    assert!(matches!(
        api_version::detect(engine.engine(), &component, "0.2.0"),
        Err(ApiVersionError::ManifestMismatch { .. })
    ));
}

fn wasmtime_component(engine: &PluginEngine, bytes: &[u8]) -> wasmtime::component::Component {
    wasmtime::component::Component::new(engine.engine(), bytes).unwrap()
}

#[test]
fn a_plugin_built_against_0_1_0_keeps_running() {
    let run = Harness::new(fixture().join("manifest.toml"))
        .run_pages()
        .unwrap();
    assert_eq!(run.pages.len(), 2);
    let ids: Vec<&str> = run.messages().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["hello-0", "hello-1", "hello-2"]);
    let reply = run.message("hello-1").unwrap();
    assert_eq!(reply.relations, [Relation::ReplyTo("hello-0".into())]);
    assert_eq!(attachment_bytes(&reply.attachments[0]), b"hello");
    assert_eq!(run.last_checkpoint().unwrap(), [3]);
}

/// The chat-export component with every `connector:source` name moved to
/// version 0.9.0, as if built against a future SDK.
fn future_plugin(dir: &Path) -> std::path::PathBuf {
    let mut bytes = std::fs::read(build_plugin("chat-export")).unwrap();
    let mut patched = 0;
    for iface in [
        "types", "http", "secrets", "signing", "state", "log", "source",
    ] {
        let newest = SUPPORTED_API_VERSIONS.last().unwrap();
        let from = format!("connector:source/{iface}@{newest}").into_bytes();
        let to = format!("connector:source/{iface}@0.9.0").into_bytes();
        let mut i = 0;
        while i + from.len() <= bytes.len() {
            if bytes[i..i + from.len()] == from[..] {
                bytes[i..i + from.len()].copy_from_slice(&to);
                patched += 1;
            }
            i += 1;
        }
    }
    assert!(patched > 0, "the component names its imports and exports");
    let wasm = dir.join("future.wasm");
    std::fs::write(&wasm, bytes).unwrap();
    wasm
}

#[test]
fn a_component_of_an_unknown_version_is_refused_with_the_supported_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm = future_plugin(tmp.path());
    // Under the harness (version taken from the component).
    let err = Harness::new(&wasm).run_pages().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, HarnessError::Load(_)), "{msg}");
    assert!(msg.contains("API 0.9.0"), "{msg}");
    assert!(
        msg.contains(&format!("it runs {}", SUPPORTED_API_VERSIONS.join(", "))),
        "{msg}"
    );
    // Through the host, with a manifest that claims the newest version.
    let manifest = connector_runtime::manifest::package(
        &workspace_root().join("plugins/chat-export/manifest.toml"),
        &wasm,
        &tmp.path().join("plugin"),
    )
    .unwrap();
    let config = write_file(
        tmp.path(),
        "connector.toml",
        &format!(
            "id = \"future\"\nplugin = \"{}\"\n[plugin-config]\nurl = \"http://127.0.0.1:9/x\"\n[sink]\nkind = \"maildir\"\npath = \"mail\"\n",
            manifest.display()
        ),
    );
    let config = ConnectorConfig::load(&config).unwrap();
    let host = Host::open(&tmp.path().join("state")).unwrap();
    let msg = host.validate(&config).unwrap_err().to_string();
    assert!(
        msg.contains("built against connector:source API 0.9.0"),
        "{msg}"
    );
    assert!(msg.contains("rebuild the plugin"), "{msg}");
    let msg = host
        .run_once(&config, &RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("0.9.0"), "{msg}");
}
