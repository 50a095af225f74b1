//! `connector plugin`: the plugin author's commands. `build` compiles a
//! Rust plugin to the wasm file its manifest names (so the harness and the
//! host load what was just built) and writes an installable copy; `check`
//! reads the manifest and the built component and says what they declare.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use connector_runtime::wasm::{PluginEngine, api_version};
use connector_runtime::{PluginKind, PluginManifest, manifest};

/// The folder that `cargo build --release --target wasm32-wasip2` writes a
/// crate's component to, under its target folder.
const WASM_OUTPUT: &str = "wasm32-wasip2/release";

/// A plugin's folder: its manifest and its crate's name.
struct PluginDir {
    manifest: PluginManifest,
    /// The file name cargo gives the component (`my_plugin.wasm`).
    wasm_file: String,
    cargo_toml: PathBuf,
}

impl PluginDir {
    fn open(dir: &Path) -> Result<PluginDir> {
        let manifest = PluginManifest::load_unpinned(&dir.join("manifest.toml"))?;
        if manifest.kind != PluginKind::Wasm {
            bail!(
                "{} is a native plugin; build its library with `cargo build`, then install it with `connector package`",
                manifest.path.display()
            );
        }
        let cargo_toml = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&cargo_toml).with_context(|| {
            format!(
                "reading {}: `connector plugin build` builds Rust plugins (a crate beside manifest.toml)",
                cargo_toml.display()
            )
        })?;
        let table: toml::Table = text
            .parse()
            .with_context(|| format!("parsing {}", cargo_toml.display()))?;
        let Some(name) = table
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
        else {
            bail!("{} has no [package] name", cargo_toml.display());
        };
        Ok(PluginDir {
            manifest,
            wasm_file: format!("{}.wasm", name.replace('-', "_")),
            cargo_toml,
        })
    }

    /// The target folder to build into: the one the manifest's `wasm`
    /// path is under, so that what is built is what the manifest loads.
    fn target_dir(&self) -> Result<PathBuf> {
        let wasm = self.manifest.wasm_path();
        let expected = Path::new(WASM_OUTPUT).join(&self.wasm_file);
        match wasm
            .to_string_lossy()
            .strip_suffix(&*expected.to_string_lossy())
        {
            Some(target) if !target.is_empty() => Ok(PathBuf::from(target)),
            _ => bail!(
                "{}: wasm = {:?} is not where cargo writes this crate's component; set wasm = \"target/{}\" (or any `<folder>/{}`)",
                self.manifest.path.display(),
                self.manifest.wasm.display(),
                expected.display(),
                expected.display()
            ),
        }
    }
}

/// Builds the plugin in `dir` for wasm32-wasip2 into the folder its
/// manifest names, then writes an installable copy (manifest pinned to the
/// built file) into `out`, by default `<target>/dist/<id>`. Returns the
/// installed manifest's path.
pub(super) fn build(dir: &Path, out: Option<&Path>) -> Result<PathBuf> {
    let plugin = PluginDir::open(dir)?;
    let target = plugin.target_dir()?;
    eprintln!(
        "building {} for wasm32-wasip2 into {}",
        plugin.manifest.id,
        target.display()
    );
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&plugin.cargo_toml)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .context("running cargo: install Rust (rustup) and `rustup target add wasm32-wasip2`")?;
    if !status.success() {
        bail!("cargo build failed ({status}); its messages are above");
    }
    let out = out.map_or_else(
        || target.join("dist").join(&plugin.manifest.id),
        Path::to_path_buf,
    );
    Ok(manifest::package(
        &plugin.manifest.path,
        &plugin.manifest.wasm_path(),
        &out,
    )?)
}

/// What the plugin in `dir` declares, checked against its built component.
pub(super) fn check(dir: &Path) -> Result<String> {
    let plugin = PluginDir::open(dir)?;
    plugin.target_dir()?;
    let m = &plugin.manifest;
    let wasm = m.wasm_path();
    let bytes = std::fs::read(&wasm).with_context(|| {
        format!(
            "reading {}: build the plugin first with `connector plugin build {}`",
            wasm.display(),
            dir.display()
        )
    })?;
    let engine = PluginEngine::new(None)?;
    let version = api_version::detect_in_bytes(&engine, &bytes, &m.api_version)
        .with_context(|| format!("checking {}", wasm.display()))?;
    let p = &m.permissions;
    let list = |items: &[String]| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    let hosts: Vec<String> = p.hosts.iter().map(ToString::to_string).collect();
    Ok(format!(
        "{id} {version} ({name}): API {api}, built component {wasm}\n\
         permissions: hosts {hosts}; secrets {secrets}; signing keys {keys}; folders {files}; \
         memory {mem} MiB; {secs} s per call",
        id = m.id,
        version = m.version,
        name = m.name,
        api = version.as_str(),
        wasm = wasm.display(),
        hosts = list(&hosts),
        secrets = list(&p.secrets),
        keys = list(&p.signing_keys),
        files = if p.files { "granted ones" } else { "none" },
        mem = p.memory_mb,
        secs = p.timeout_secs,
    ))
}
