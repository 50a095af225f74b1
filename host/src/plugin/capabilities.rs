//! The capabilities a plugin gets: what its manifest declares, intersected
//! with what the operator grants.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::config::connector::Grants;
use crate::config::{ConnectorConfig, Origin, PluginManifest};

/// Effective permissions of one configured plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Capabilities {
    /// Origins the plugin may reach over HTTP.
    pub hosts: Vec<Origin>,
    /// Secrets it may read.
    pub secrets: BTreeSet<String>,
    /// Secrets the host may sign with for it.
    pub signing_keys: BTreeSet<String>,
    /// Read-only folders: path inside the sandbox → folder on disk.
    pub files: BTreeMap<String, PathBuf>,
    /// Memory ceiling in bytes.
    pub memory_bytes: u64,
    /// Time limit per call in seconds.
    pub timeout_secs: u32,
    /// Whether the operator trusts a native plugin to run in the host
    /// process (`[grants] trusted-native`).
    pub trusted_native: bool,
}

impl Capabilities {
    /// Declared ∩ granted. Anything granted but not declared is dropped here;
    /// [`ConnectorConfig::check_grants`] reports it to the operator.
    pub fn new(manifest: &PluginManifest, connector: &ConnectorConfig) -> Capabilities {
        Self::from_grants(manifest, &connector.grants)
    }

    /// Declared ∩ `granted`, for callers that have grants without a whole
    /// connector file (the plugin test harness).
    pub fn from_grants(manifest: &PluginManifest, granted: &Grants) -> Capabilities {
        let declared = &manifest.permissions;
        let hosts = granted
            .hosts
            .iter()
            .filter(|g| declared.hosts.iter().any(|d| g.is_within(d)))
            .cloned()
            .collect();
        let secrets = granted
            .secrets
            .iter()
            .filter(|s| declared.secrets.contains(s))
            .cloned()
            .collect();
        let signing_keys = granted
            .signing_keys
            .iter()
            .filter(|s| declared.signing_keys.contains(s))
            .cloned()
            .collect();
        let files = if declared.files {
            granted.files.clone()
        } else {
            BTreeMap::new()
        };
        let memory_mb = granted
            .memory_mb
            .map_or(declared.memory_mb, |g| g.min(declared.memory_mb));
        let timeout_secs = granted
            .timeout_secs
            .map_or(declared.timeout_secs, |g| g.min(declared.timeout_secs));
        Capabilities {
            hosts,
            secrets,
            signing_keys,
            files,
            memory_bytes: u64::from(memory_mb) << 20,
            timeout_secs,
            trusted_native: granted.trusted_native,
        }
    }

    /// Nothing at all: for validating a plugin without running it.
    pub fn none(manifest: &PluginManifest) -> Capabilities {
        Capabilities {
            hosts: Vec::new(),
            secrets: BTreeSet::new(),
            signing_keys: BTreeSet::new(),
            files: BTreeMap::new(),
            memory_bytes: u64::from(manifest.permissions.memory_mb) << 20,
            timeout_secs: manifest.permissions.timeout_secs,
            trusted_native: false,
        }
    }

    /// Nothing but the operator's trust in a native plugin: for validating
    /// a connector's plugin without letting it reach anything.
    pub fn for_validation(manifest: &PluginManifest, connector: &ConnectorConfig) -> Capabilities {
        Capabilities {
            trusted_native: connector.grants.trusted_native,
            ..Self::none(manifest)
        }
    }

    /// The origin allowing `url`, if any.
    pub fn allows(&self, url: &url::Url) -> bool {
        self.hosts.iter().any(|o| o.allows(url))
    }
}
