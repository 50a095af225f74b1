//! The `connector:source` API versions: which ones this host runs, for
//! manifests and for the wasm host that links each through its own
//! bindings.

/// The WIT package every source plugin targets.
pub const PACKAGE: &str = "connector:source";

/// The `connector:source` API versions this host runs, oldest first; each has
/// its own bindings module in the wasm host (`wasm/since_v0_1_0.rs`, …).
pub const SUPPORTED_API_VERSIONS: &[&str] =
    &[ApiVersion::V0_1_0.as_str(), ApiVersion::V0_2_0.as_str()];

/// A supported API version, as the runner dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `connector:source@0.1.0`, the first released world.
    V0_1_0,
    /// `connector:source@0.2.0`: partitions.
    V0_2_0,
}

impl ApiVersion {
    /// The version as written in WIT and in manifests.
    pub const fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V0_1_0 => "0.1.0",
            ApiVersion::V0_2_0 => "0.2.0",
        }
    }

    /// The supported version written `text`, if any.
    pub fn parse(text: &str) -> Option<ApiVersion> {
        match text {
            "0.1.0" => Some(ApiVersion::V0_1_0),
            "0.2.0" => Some(ApiVersion::V0_2_0),
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
