//! Which `connector:source` API a component was built against, read from the
//! component itself: the names of its imports and exports carry the WIT
//! package version (`connector:source/source@0.1.0`), whatever the manifest
//! says.

use crate::api_version::{ApiVersion, ApiVersionError, PACKAGE};

use std::collections::BTreeSet;

use wasmtime::Engine;
use wasmtime::component::Component;

/// The `connector:source` versions named by a component's imports and
/// exports (for example `{"0.1.0"}`), and whether it exports the `source`
/// interface at all.
pub fn versions_in(engine: &Engine, component: &Component) -> (BTreeSet<String>, bool) {
    let ty = component.component_type();
    let mut versions = BTreeSet::new();
    let mut exports_source = false;
    let mut note = |name: &str, is_export: bool| {
        let Some(rest) = name.strip_prefix(PACKAGE).and_then(|r| r.strip_prefix('/')) else {
            return;
        };
        let (interface, version) = match rest.split_once('@') {
            Some((i, v)) => (i, v.to_string()),
            None => (rest, String::new()),
        };
        if is_export && interface == "source" {
            exports_source = true;
        }
        versions.insert(version);
    };
    for (name, _) in ty.imports(engine) {
        note(name, false);
    }
    for (name, _) in ty.exports(engine) {
        note(name, true);
    }
    (versions, exports_source)
}

/// Reads the API version of `component` and checks it against the versions
/// this host runs and against the manifest's `api-version` (`declared`).
pub fn detect(
    engine: &Engine,
    component: &Component,
    declared: &str,
) -> Result<ApiVersion, ApiVersionError> {
    let (versions, exports_source) = versions_in(engine, component);
    if !exports_source {
        return Err(ApiVersionError::NotAPlugin);
    }
    if versions.contains("") {
        return Err(ApiVersionError::Unversioned {
            name: format!("{PACKAGE}/source"),
        });
    }
    if versions.len() > 1 {
        return Err(ApiVersionError::Mixed {
            versions: versions.into_iter().collect(),
        });
    }
    let found = versions
        .into_iter()
        .next()
        .ok_or(ApiVersionError::NotAPlugin)?;
    let version = ApiVersion::parse(&found).ok_or_else(|| ApiVersionError::Unsupported {
        found: found.clone(),
    })?;
    if declared != found {
        return Err(ApiVersionError::ManifestMismatch {
            declared: declared.to_string(),
            found,
        });
    }
    Ok(version)
}

/// Compiles the component in `bytes` and reads its API version, checked
/// against the manifest's `declared` one (for `connector plugin check`).
pub fn detect_in_bytes(
    engine: &super::PluginEngine,
    bytes: &[u8],
    declared: &str,
) -> Result<ApiVersion, crate::PluginError> {
    let component = Component::new(engine.engine(), bytes).map_err(|e| {
        crate::PluginError::Load(format!(
            "not a valid WebAssembly component: {e:#}; build it for wasm32-wasip2"
        ))
    })?;
    detect(engine.engine(), &component, declared)
        .map_err(|e| crate::PluginError::Load(e.to_string()))
}
