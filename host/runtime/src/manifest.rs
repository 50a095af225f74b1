//! A plugin's manifest: `manifest.toml` beside the plugin, written by its
//! author. It names the plugin, pins its wasm by SHA-256 and declares every
//! permission the plugin may ever use.

use std::path::{Path, PathBuf};

use connector_model::digest::sha256_hex;
use serde::Deserialize;

use crate::api_version::SUPPORTED_API_VERSIONS;
use crate::config::{ConfigError, read_toml, relative_to};
use crate::origin::Origin;

const HINT: &str = "a manifest has id, name, version, api-version, wasm (or kind = \"native\" and library), sha256, optionally description, settings-schema and fetch-after-commit, and a [permissions] table (hosts, secrets, signing-keys, files, memory-mb, timeout-secs); see plugins/chat-export/manifest.toml";

/// What a plugin is built as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// A WebAssembly component run in the sandbox (the default).
    #[default]
    Wasm,
    /// A native shared library loaded into the host process: trusted code,
    /// run only when the operator's connector file sets
    /// `[grants] trusted-native = true`.
    Native,
}

/// A parsed and checked plugin manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginManifest {
    /// Short identifier, e.g. `symphony`: lower-case letters, digits, `-`.
    pub id: String,
    /// Display name of the source, e.g. `Symphony`; the default target folder.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// What the plugin reads, in a sentence or two, shown to an admin who
    /// chooses a plugin in the console.
    #[serde(default)]
    pub description: Option<String>,
    /// A JSON Schema (draft 2020-12, an object of simple properties) of the
    /// plugin's `[plugin-config]`, relative to the manifest: the console
    /// makes its settings form from it.
    #[serde(default)]
    pub settings_schema: Option<PathBuf>,
    /// The WIT API version the plugin was built against, e.g. `0.1.0`.
    pub api_version: String,
    /// `wasm` (default) or `native`.
    #[serde(default)]
    pub kind: PluginKind,
    /// Path of the `.wasm` component, relative to the manifest (wasm
    /// plugins).
    #[serde(default)]
    pub wasm: PathBuf,
    /// Path of the shared library (`.so`, `.dylib`, `.dll`), relative to the
    /// manifest (native plugins).
    #[serde(default)]
    pub library: Option<PathBuf>,
    /// Hex SHA-256 of the `.wasm` file (or the library); checked before every
    /// load.
    pub sha256: String,
    /// The plugin's reads acknowledge what it read before to the source
    /// (a datahose's `ackId`, a queue's ack), which then never gives it
    /// again. The host otherwise asks for the next page while it delivers
    /// the ones before; with this it asks only once the page before is
    /// committed, so a crash in between cannot lose an acknowledged page.
    #[serde(default)]
    pub fetch_after_commit: bool,
    /// What the plugin asks to be allowed.
    #[serde(default)]
    pub permissions: RequestedPermissions,
    /// Where the manifest was read from (not part of the file).
    #[serde(skip)]
    pub path: PathBuf,
}

/// Everything a plugin may ever do beyond computing; the operator grants a
/// subset of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RequestedPermissions {
    /// Outbound HTTP origins, `scheme://host[:port]`; `*.domain` allowed.
    #[serde(default)]
    pub hosts: Vec<Origin>,
    /// Names of secrets the plugin may read.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Names of secrets holding private keys the host signs with; the plugin
    /// never reads them.
    #[serde(default)]
    pub signing_keys: Vec<String>,
    /// Whether the plugin may read folders the operator grants.
    #[serde(default)]
    pub files: bool,
    /// Memory ceiling of the plugin's sandbox, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u32,
    /// Time limit of one call into the plugin, in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u32,
}

fn default_memory_mb() -> u32 {
    128
}

fn default_timeout_secs() -> u32 {
    60
}

impl Default for RequestedPermissions {
    fn default() -> Self {
        RequestedPermissions {
            hosts: Vec::new(),
            secrets: Vec::new(),
            signing_keys: Vec::new(),
            files: false,
            memory_mb: default_memory_mb(),
            timeout_secs: default_timeout_secs(),
        }
    }
}

/// Why a plugin's wasm file may not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WasmFileError {
    /// The file could not be read.
    #[error(
        "cannot read plugin wasm {path}: {source}; build the plugin or fix `wasm` in its manifest"
    )]
    Read {
        /// The wasm path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not the one the manifest pins.
    #[error(
        "plugin wasm {path} has SHA-256 {actual} but its manifest pins {expected}; rebuild the plugin from its source or update `sha256` in the manifest if you trust this file"
    )]
    Mismatch {
        /// The wasm path.
        path: PathBuf,
        /// The manifest's value.
        expected: String,
        /// The file's hash.
        actual: String,
    },
}

impl PluginManifest {
    /// Reads and checks a manifest file.
    pub fn load(path: &Path) -> Result<PluginManifest, ConfigError> {
        let manifest = Self::load_unpinned(path)?;
        manifest.validate_pin()?;
        Ok(manifest)
    }

    /// Reads and checks a manifest whose `sha256` may not be filled in yet
    /// (a plugin's source manifest, before [`package`]).
    pub fn load_unpinned(path: &Path) -> Result<PluginManifest, ConfigError> {
        let mut manifest: PluginManifest = read_toml(path, HINT)?;
        manifest.path = path.to_path_buf();
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate_pin(&self) -> Result<(), ConfigError> {
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ConfigError::Invalid {
                path: self.path.clone(),
                message: format!("sha256 `{}` is not 64 hex digits", self.sha256),
                hint: "install the plugin with `connector package`, which pins the SHA-256 of its wasm".into(),
            });
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String, hint: &str| ConfigError::Invalid {
            path: self.path.clone(),
            message,
            hint: hint.to_string(),
        };
        if !is_identifier(&self.id) {
            return Err(invalid(
                format!("id `{}` is not a plugin identifier", self.id),
                "use lower-case letters, digits and `-`, starting with a letter",
            ));
        }
        if self.name.trim().is_empty() || self.name.contains(['/', '.', '\\']) {
            return Err(invalid(
                format!("name `{}` cannot be a folder name", self.name),
                "use a short display name without `/`, `.` or `\\`, e.g. `Symphony`",
            ));
        }
        match (self.kind, self.wasm.as_os_str().is_empty(), &self.library) {
            (PluginKind::Wasm, false, None) | (PluginKind::Native, true, Some(_)) => {}
            (PluginKind::Wasm, _, _) => {
                return Err(invalid(
                    "a wasm plugin needs `wasm` (the component's path) and no `library`".into(),
                    "set wasm = \"my_plugin.wasm\", or kind = \"native\" with library = \"libmy_plugin.so\"",
                ));
            }
            (PluginKind::Native, _, _) => {
                return Err(invalid(
                    "a native plugin needs `library` (the shared library's path) and no `wasm`"
                        .into(),
                    "set library = \"libmy_plugin.so\" beside kind = \"native\"",
                ));
            }
        }
        if !SUPPORTED_API_VERSIONS.contains(&self.api_version.as_str()) {
            return Err(invalid(
                format!(
                    "api-version `{}` is not one this host runs (it runs {})",
                    self.api_version,
                    SUPPORTED_API_VERSIONS.join(", ")
                ),
                "rebuild the plugin with a supported connector-sdk, or upgrade the host",
            ));
        }
        for name in self
            .permissions
            .secrets
            .iter()
            .chain(&self.permissions.signing_keys)
        {
            if !is_identifier(name) {
                return Err(invalid(
                    format!("secret name `{name}` is not an identifier"),
                    "use lower-case letters, digits and `-`",
                ));
            }
        }
        let p = &self.permissions;
        if p.memory_mb == 0 || p.memory_mb > 4096 || p.timeout_secs == 0 {
            return Err(invalid(
                "memory-mb must be 1..=4096 and timeout-secs at least 1".into(),
                "the defaults are memory-mb = 128 and timeout-secs = 60",
            ));
        }
        Ok(())
    }

    /// The plugin file's path (the wasm component, or the library of a
    /// native plugin), resolved against the manifest's folder.
    pub fn wasm_path(&self) -> PathBuf {
        match (&self.kind, &self.library) {
            (PluginKind::Native, Some(library)) => relative_to(&self.path, library),
            _ => relative_to(&self.path, &self.wasm),
        }
    }

    /// The settings schema's text (see [`PluginManifest::settings_schema`]),
    /// checked to be a JSON object; `None` when the manifest names none.
    pub fn read_settings_schema(&self) -> Result<Option<String>, ConfigError> {
        let Some(file) = &self.settings_schema else {
            return Ok(None);
        };
        let path = relative_to(&self.path, file);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(_)) => Ok(Some(text)),
            Ok(_) => Err(ConfigError::Invalid {
                path,
                message: "the settings schema is not a JSON object".into(),
                hint: "describe [plugin-config] as {\"type\": \"object\", \"properties\": {…}}"
                    .into(),
            }),
            Err(e) => Err(ConfigError::Parse {
                path,
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
                hint: "the settings schema is a JSON Schema object; fix the JSON".into(),
            }),
        }
    }

    /// Reads the plugin file (see [`PluginManifest::wasm_path`]) and checks it
    /// against the pinned SHA-256.
    pub fn read_wasm(&self) -> Result<Vec<u8>, WasmFileError> {
        let path = self.wasm_path();
        let bytes = std::fs::read(&path).map_err(|source| WasmFileError::Read {
            path: path.clone(),
            source,
        })?;
        let actual = sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(&self.sha256) {
            return Err(WasmFileError::Mismatch {
                path,
                expected: self.sha256.clone(),
                actual,
            });
        }
        Ok(bytes)
    }
}

/// Why a plugin could not be packaged.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The source manifest is wrong.
    #[error(transparent)]
    Manifest(#[from] ConfigError),
    /// Reading the wasm or writing the package failed.
    #[error(
        "cannot package {path}: {source}; check that the plugin is built and the output folder is writable"
    )]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Writes an installable plugin into `out`: the wasm file and a copy of the
/// source manifest whose `wasm` names that file and whose `sha256` pins it.
/// Returns the written manifest's path.
pub fn package(source: &Path, wasm: &Path, out: &Path) -> Result<PathBuf, PackageError> {
    let manifest = PluginManifest::load_unpinned(source)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Io { path, source }
    };
    let bytes = std::fs::read(wasm).map_err(io(wasm))?;
    let sha = sha256_hex(&bytes);
    std::fs::create_dir_all(out).map_err(io(out))?;
    let (key, wasm_name) = match manifest.kind {
        PluginKind::Wasm => ("wasm", format!("{}.wasm", manifest.id)),
        PluginKind::Native => (
            "library",
            wasm.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("{}.so", manifest.id)),
        ),
    };
    std::fs::write(out.join(&wasm_name), &bytes).map_err(io(out))?;
    let schema_name = match &manifest.settings_schema {
        Some(file) => {
            let from = relative_to(source, file);
            let name = format!("{}.schema.json", manifest.id);
            std::fs::copy(&from, out.join(&name)).map_err(io(&from))?;
            Some(name)
        }
        None => None,
    };
    let text = std::fs::read_to_string(source).map_err(io(source))?;
    let mut in_root = true;
    let rewritten: Vec<String> = text
        .lines()
        .map(|line| {
            let field = line.split('=').next().unwrap_or("").trim();
            if line.trim_start().starts_with('[') {
                in_root = false;
            }
            match field {
                f if f == key && in_root => format!("{key} = \"{wasm_name}\""),
                "sha256" if in_root => format!("sha256 = \"{sha}\""),
                "settings-schema" if in_root => match &schema_name {
                    Some(name) => format!("settings-schema = \"{name}\""),
                    None => line.to_string(),
                },
                _ => line.to_string(),
            }
        })
        .collect();
    let target = out.join("manifest.toml");
    std::fs::write(&target, rewritten.join("\n") + "\n").map_err(io(&target))?;
    PluginManifest::load(&target)?
        .read_wasm()
        .map_err(|e| PackageError::Io {
            path: target.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok(target)
}

/// Lower-case letters, digits and `-`, starting with a letter.
pub fn is_identifier(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("manifest.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    const GOOD: &str = r#"
id = "chat-export"
name = "Chat export"
version = "0.1.0"
api-version = "0.1.0"
wasm = "plugin.wasm"
sha256 = "SHA"
[permissions]
hosts = ["http://127.0.0.1:8080"]
secrets = ["token"]
"#;

    fn good(sha: &str) -> String {
        GOOD.replace("SHA", sha)
    }

    #[test]
    fn valid_manifest_loads_and_pins_its_wasm() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plugin.wasm"), b"\0asm").unwrap();
        let sha = sha256_hex(b"\0asm");
        let m = PluginManifest::load(&write(dir.path(), &good(&sha))).unwrap();
        assert_eq!(m.permissions.memory_mb, 128);
        assert_eq!(m.read_wasm().unwrap(), b"\0asm");
    }

    #[test]
    fn pages_are_fetched_ahead_of_commits_unless_the_manifest_says_fetch_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let sha = "0".repeat(64);
        let m = PluginManifest::load(&write(dir.path(), &good(&sha))).unwrap();
        assert!(!m.fetch_after_commit);
        let text = good(&sha).replace("[permissions]", "fetch-after-commit = true\n[permissions]");
        let m = PluginManifest::load(&write(dir.path(), &text)).unwrap();
        assert!(m.fetch_after_commit);
    }

    #[test]
    fn wasm_with_other_hash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plugin.wasm"), b"\0asm-tampered").unwrap();
        let m = PluginManifest::load(&write(dir.path(), &good(&"0".repeat(64)))).unwrap();
        let e = m.read_wasm().unwrap_err().to_string();
        assert!(e.contains("manifest pins"), "{e}");
    }

    #[test]
    fn unknown_field_is_reported_with_line_and_hint() {
        let dir = tempfile::tempdir().unwrap();
        let text = good(&"0".repeat(64)) + "colour = \"red\"\n";
        let e = PluginManifest::load(&write(dir.path(), &text)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("unknown field `colour`"), "{msg}");
        assert!(msg.contains("manifest.toml:11:"), "{msg}");
        assert!(msg.contains("hint:"), "{msg}");
    }

    #[test]
    fn bad_origin_is_reported_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = good(&"0".repeat(64)).replace("http://127.0.0.1:8080", "127.0.0.1");
        let msg = PluginManifest::load(&write(dir.path(), &text))
            .unwrap_err()
            .to_string();
        assert!(msg.contains(":9:"), "{msg}");
        assert!(msg.contains("scheme://host[:port]"), "{msg}");
    }

    #[test]
    fn package_pins_the_wasm_and_keeps_comments() {
        let dir = tempfile::tempdir().unwrap();
        let src = write(
            dir.path(),
            &(String::from("# my plugin\n") + &good("unset")),
        );
        std::fs::write(dir.path().join("built.wasm"), b"\0asm-bytes").unwrap();
        let out = dir.path().join("dist");
        let written = package(&src, &dir.path().join("built.wasm"), &out).unwrap();
        let m = PluginManifest::load(&written).unwrap();
        assert_eq!(m.read_wasm().unwrap(), b"\0asm-bytes");
        assert!(
            std::fs::read_to_string(&written)
                .unwrap()
                .starts_with("# my plugin")
        );
        assert!(
            PluginManifest::load(&src).is_err(),
            "an unpinned manifest must not load"
        );
    }

    #[test]
    fn native_manifests_name_a_library_and_package_it() {
        let dir = tempfile::tempdir().unwrap();
        let native = good("unset").replace(
            "wasm = \"plugin.wasm\"",
            "kind = \"native\"\nlibrary = \"libx.so\"",
        );
        let src = write(dir.path(), &native);
        let m = PluginManifest::load_unpinned(&src).unwrap();
        assert_eq!(m.kind, PluginKind::Native);
        assert!(m.wasm_path().ends_with("libx.so"));
        std::fs::write(dir.path().join("libbuilt.so"), b"\x7fELF").unwrap();
        let out = dir.path().join("dist");
        let written = package(&src, &dir.path().join("libbuilt.so"), &out).unwrap();
        let m = PluginManifest::load(&written).unwrap();
        assert_eq!(m.read_wasm().unwrap(), b"\x7fELF");
        assert!(m.wasm_path().ends_with("libbuilt.so"));

        let both = good("unset").replace("wasm = ", "library = \"libx.so\"\nwasm = ");
        let msg = PluginManifest::load_unpinned(&write(dir.path(), &both))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("a wasm plugin needs `wasm`"), "{msg}");
        let no_lib = good("unset").replace("wasm = \"plugin.wasm\"", "kind = \"native\"");
        let msg = PluginManifest::load_unpinned(&write(dir.path(), &no_lib))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("a native plugin needs `library`"), "{msg}");
    }

    #[test]
    fn unsupported_api_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            good(&"0".repeat(64)).replace("api-version = \"0.1.0\"", "api-version = \"9.0.0\"");
        let msg = PluginManifest::load(&write(dir.path(), &text))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("not one this host runs"), "{msg}");
    }
}
