//! Which `connector:source` API a component was built against, read from the
//! component itself: the names of its imports and exports carry the WIT
//! package version (`connector:source/source@0.1.0`), whatever the manifest
//! says.

use std::collections::BTreeSet;

use wasmtime::Engine;
use wasmtime::component::Component;

/// The WIT package every source plugin targets.
pub const PACKAGE: &str = "connector:source";

/// The `connector:source` API versions this host runs, oldest first; each has
/// its own bindings module (`since_v0_1_0`, …).
pub const SUPPORTED_API_VERSIONS: &[&str] = &[super::since_v0_1_0::VERSION];

/// A supported API version, as the runner dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `connector:source@0.1.0`, the first released world.
    V0_1_0,
}

impl ApiVersion {
    /// The version as written in WIT and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V0_1_0 => super::since_v0_1_0::VERSION,
        }
    }

    /// The supported version written `text`, if any.
    pub fn parse(text: &str) -> Option<ApiVersion> {
        match text {
            v if v == super::since_v0_1_0::VERSION => Some(ApiVersion::V0_1_0),
            _ => None,
        }
    }
}

/// Why a component's API version is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiVersionError {
    /// The component neither imports nor exports anything of the package.
    #[error(
        "the component does not export {PACKAGE}/source: it is not a connector source plugin; build it with connector-sdk (or against sdk/wit/) for the wasm32-wasip2 target"
    )]
    NotAPlugin,
    /// The component exports the `source` interface without a version.
    #[error(
        "the component's {PACKAGE} names carry no version ({name}); build it against a released WIT world from sdk/wit/v<version>/"
    )]
    Unversioned {
        /// The name without a version.
        name: String,
    },
    /// The component uses several versions of the package at once.
    #[error(
        "the component mixes {PACKAGE} versions {}; rebuild it against one version of connector-sdk",
        .versions.join(", ")
    )]
    Mixed {
        /// The versions it uses.
        versions: Vec<String>,
    },
    /// The component was built against a version this host does not run.
    #[error(
        "the component was built against {PACKAGE} API {found}, which this host does not run (it runs {}); rebuild the plugin with a connector-sdk for one of those, or upgrade the host",
        SUPPORTED_API_VERSIONS.join(", ")
    )]
    Unsupported {
        /// The version the component uses.
        found: String,
    },
    /// The manifest declares another version than the component uses.
    #[error(
        "the manifest declares api-version {declared} but the component was built against {PACKAGE} API {found}; set api-version = \"{found}\" in the manifest (and re-package it)"
    )]
    ManifestMismatch {
        /// The manifest's `api-version`.
        declared: String,
        /// The version the component uses.
        found: String,
    },
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_parses_back() {
        for v in SUPPORTED_API_VERSIONS {
            assert_eq!(ApiVersion::parse(v).map(ApiVersion::as_str), Some(*v));
        }
        assert_eq!(ApiVersion::parse("9.9.9"), None);
    }

    #[test]
    fn manifest_list_matches_the_bindings() {
        assert_eq!(
            crate::config::manifest::SUPPORTED_API_VERSIONS,
            SUPPORTED_API_VERSIONS
        );
    }

    #[test]
    fn unsupported_message_names_the_supported_versions() {
        let msg = ApiVersionError::Unsupported {
            found: "0.9.0".into(),
        }
        .to_string();
        assert!(
            msg.contains("0.9.0") && msg.contains("it runs 0.1.0"),
            "{msg}"
        );
    }
}
