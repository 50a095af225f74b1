//! What the operator grants a plugin ([`Grants`], the connector file's
//! `[grants]` table) and the capabilities it gets: what its manifest
//! declares, intersected with that. The one place where the two meet.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::address::AddressPolicy;
use crate::attachments::DEFAULT_MAX_ATTACHMENT_MB;
use crate::manifest::PluginManifest;
use crate::origin::Origin;

/// What the operator grants; the plugin gets the part of it that its
/// manifest also declares.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Grants {
    /// Outbound HTTP origins.
    #[serde(default)]
    pub hosts: Vec<Origin>,
    /// Secret names the plugin may read.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Secret names the host may sign with for the plugin.
    #[serde(default)]
    pub signing_keys: Vec<String>,
    /// Folders the plugin may read: path inside the sandbox → folder on disk.
    #[serde(default)]
    pub files: BTreeMap<String, PathBuf>,
    /// Lower memory ceiling than the manifest's, in MiB.
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// Lower time limit per call than the manifest's, in seconds.
    #[serde(default)]
    pub timeout_secs: Option<u32>,
    /// Lets a native plugin (manifest `kind = "native"`) run: it is loaded
    /// into the host process, outside any sandbox, so only set this for
    /// plugins you trust as much as the host itself.
    #[serde(default)]
    pub trusted_native: bool,
    /// Lets the plugin's granted names resolve to loopback, private and
    /// link-local addresses (a pod or server on your own network).
    #[serde(default)]
    pub private_networks: bool,
    /// Largest attachment the plugin may hand over, in MiB (default
    /// [`DEFAULT_MAX_ATTACHMENT_MB`], 16 GiB): past it the page stops with
    /// an error instead of an endless attachment filling the disk.
    #[serde(default)]
    pub attachment_mb: Option<u64>,
}

impl Grants {
    /// Reads relative folder grants against the folder of the connector
    /// file `file` (which need not exist yet).
    pub fn resolve_folders(&mut self, file: &Path) {
        for dir in self.files.values_mut() {
            *dir = crate::config::relative_to(file, dir);
        }
    }

    /// What is granted but the manifest does not declare, and granted
    /// folders that do not exist: one sentence each, empty when all is
    /// well. The plugin would not get those anyway ([`Capabilities`] takes
    /// the intersection); reporting them tells the operator the grant is
    /// wrong.
    pub fn problems(&self, manifest: &PluginManifest) -> Vec<String> {
        let declared = &manifest.permissions;
        let mut problems = Vec::new();
        for origin in &self.hosts {
            if !declared.hosts.iter().any(|d| origin.is_within(d)) {
                problems.push(format!(
                    "host {origin} is granted but the manifest does not declare it"
                ));
            }
        }
        for name in &self.secrets {
            if !declared.secrets.contains(name) {
                problems.push(format!(
                    "secret `{name}` is granted but the manifest does not declare it"
                ));
            }
        }
        for name in &self.signing_keys {
            if !declared.signing_keys.contains(name) {
                problems.push(format!(
                    "signing key `{name}` is granted but the manifest does not declare it"
                ));
            }
        }
        if !self.files.is_empty() && !declared.files {
            problems.push(
                "folders are granted but the manifest does not declare `files = true`".into(),
            );
        }
        for (guest, dir) in &self.files {
            if !dir.is_dir() {
                problems.push(format!(
                    "granted folder {guest} → {} does not exist",
                    dir.display()
                ));
            }
        }
        problems
    }
}

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
    /// Which addresses its requests may reach (`[grants] private-networks`).
    pub addresses: AddressPolicy,
    /// Largest attachment taken from it, in bytes (`[grants] attachment-mb`).
    pub attachment_bytes: u64,
}

/// The largest attachment, in bytes, for a grant of `mb` MiB (the default
/// when none is granted).
fn attachment_bytes(mb: Option<u64>) -> u64 {
    mb.unwrap_or(DEFAULT_MAX_ATTACHMENT_MB)
        .saturating_mul(1 << 20)
}

impl Capabilities {
    /// Declared ∩ `granted`. Anything granted but not declared is dropped
    /// here; [`Grants::problems`] reports it to the operator.
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
            addresses: if granted.private_networks {
                AddressPolicy::PrivateNetworksAllowed
            } else {
                AddressPolicy::PublicOnly
            },
            attachment_bytes: attachment_bytes(granted.attachment_mb),
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
            addresses: AddressPolicy::PublicOnly,
            attachment_bytes: attachment_bytes(None),
        }
    }

    /// What validating a connector's plugin may use: its granted folders
    /// (read-only, so it can check that a configured path is there) and the
    /// operator's trust in a native plugin; no network, no secrets.
    pub fn for_validation(manifest: &PluginManifest, granted: &Grants) -> Capabilities {
        Capabilities {
            hosts: Vec::new(),
            secrets: BTreeSet::new(),
            signing_keys: BTreeSet::new(),
            ..Self::from_grants(manifest, granted)
        }
    }

    /// The origin allowing `url`, if any.
    pub fn allows(&self, url: &url::Url) -> bool {
        self.hosts.iter().any(|o| o.allows(url))
    }
}
