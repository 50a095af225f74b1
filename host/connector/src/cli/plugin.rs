//! `connector plugin`: the plugin author's commands. `new` creates a plugin
//! from the built-in templates (`plugin_new.rs`); `build` compiles a Rust
//! plugin (cargo) or a Python one (componentize-py) to the wasm file its
//! manifest names (so the harness and the host load what was just built)
//! and writes an installable copy; `test` builds, then runs the crate's
//! tests against that wasm; `check` reads the manifest and the built
//! component and says what they declare.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use connector_runtime::wasm::{PluginEngine, api_version};
use connector_runtime::{PluginKind, PluginManifest, manifest};

/// The folder that `cargo build --release --target wasm32-wasip2` writes a
/// crate's component to, under its target folder.
const WASM_OUTPUT: &str = "wasm32-wasip2/release";

/// The frozen WIT worlds componentize-py builds Python plugins against, by
/// API version, so that a Python plugin needs no copy of `sdk/wit`.
const WIT_WORLDS: [(&str, &str); 2] = [
    (
        "0.1.0",
        include_str!("../../../../sdk/wit/v0.1.0/source.wit"),
    ),
    (
        "0.2.0",
        include_str!("../../../../sdk/wit/v0.2.0/source.wit"),
    ),
];

/// How a plugin's source becomes its component.
enum Toolchain {
    /// A Rust crate: `cargo build` for wasm32-wasip2. `wasm_file` is the file
    /// name cargo gives the component (`my_plugin.wasm`).
    Cargo {
        cargo_toml: PathBuf,
        wasm_file: String,
    },
    /// A Python plugin (`app.py`): componentize-py, straight to the
    /// manifest's `wasm`.
    ComponentizePy,
}

/// A plugin's folder: its manifest and how it is built.
struct PluginDir {
    dir: PathBuf,
    manifest: PluginManifest,
    toolchain: Toolchain,
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
        if !cargo_toml.exists() && dir.join("app.py").is_file() {
            return Ok(PluginDir {
                dir: dir.to_path_buf(),
                manifest,
                toolchain: Toolchain::ComponentizePy,
            });
        }
        let text = std::fs::read_to_string(&cargo_toml).with_context(|| {
            format!(
                "reading {}: `connector plugin build` builds Rust plugins (a crate beside manifest.toml) and Python ones (app.py beside manifest.toml)",
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
            bail!(
                "{} has no [package] name: add `name = \"my-plugin\"` under [package]",
                cargo_toml.display()
            );
        };
        Ok(PluginDir {
            dir: dir.to_path_buf(),
            manifest,
            toolchain: Toolchain::Cargo {
                wasm_file: format!("{}.wasm", name.replace('-', "_")),
                cargo_toml,
            },
        })
    }

    /// The target folder to build into: the one the manifest's `wasm`
    /// path is under, so that what is built is what the manifest loads.
    /// A Python plugin's is the folder of its `wasm`.
    fn target_dir(&self) -> Result<PathBuf> {
        let wasm = self.manifest.wasm_path();
        let Toolchain::Cargo { wasm_file, .. } = &self.toolchain else {
            return Ok(wasm.parent().map(Path::to_path_buf).unwrap_or_default());
        };
        let expected = Path::new(WASM_OUTPUT).join(wasm_file);
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

/// Builds the plugin in `dir` (Rust for wasm32-wasip2, Python with
/// componentize-py) into the file its manifest names, then writes an
/// installable copy (manifest pinned to the built file) into `out`, by
/// default `<target>/dist/<id>`. Returns the installed manifest's path.
pub(super) fn build(dir: &Path, out: Option<&Path>) -> Result<PathBuf> {
    let plugin = PluginDir::open(dir)?;
    build_plugin(&plugin, out)
}

fn build_plugin(plugin: &PluginDir, out: Option<&Path>) -> Result<PathBuf> {
    let target = plugin.target_dir()?;
    let wasm = plugin.manifest.wasm_path();
    match &plugin.toolchain {
        Toolchain::Cargo { cargo_toml, .. } => {
            eprintln!(
                "building {} for wasm32-wasip2 into {}",
                plugin.manifest.id,
                target.display()
            );
            let status = cargo()
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--manifest-path",
                ])
                .arg(cargo_toml)
                .arg("--target-dir")
                .arg(&target)
                .status()
                .context(
                    "running cargo: install Rust (rustup) and `rustup target add wasm32-wasip2`",
                )?;
            if !status.success() {
                bail!(
                    "cargo build failed ({status}); its messages are above (a missing target: `rustup target add wasm32-wasip2`)"
                );
            }
        }
        Toolchain::ComponentizePy => {
            let api = plugin.manifest.api_version.as_str();
            let Some((_, world)) = WIT_WORLDS.iter().find(|(v, _)| *v == api) else {
                bail!(
                    "{}: api-version {api:?} is not a world this binary knows ({}); set one of those",
                    plugin.manifest.path.display(),
                    WIT_WORLDS.map(|(v, _)| v).join(", ")
                );
            };
            let wit = tempfile::tempdir()
                .context("creating a temporary folder for the WIT world: check TMPDIR")?;
            std::fs::write(wit.path().join("source.wit"), world)
                .context("writing the WIT world to a temporary folder: check TMPDIR")?;
            std::fs::create_dir_all(&target)
                .with_context(|| format!("creating {}", target.display()))?;
            eprintln!(
                "building {} with componentize-py into {}",
                plugin.manifest.id,
                wasm.display()
            );
            let status = Command::new("componentize-py")
                .arg("-d")
                .arg(wit.path())
                .args(["-w", "source-plugin", "componentize", "app", "-p"])
                .arg(&plugin.dir)
                .arg("-o")
                .arg(&wasm)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .stdout(std::process::Stdio::null())
                .status()
                .context(
                    "running componentize-py: install it with `pip install componentize-py` (this repository's scripts/setup does)",
                )?;
            if !status.success() {
                bail!("componentize-py failed ({status}); its messages are above");
            }
        }
    }
    let out = out.map_or_else(
        || target.join("dist").join(&plugin.manifest.id),
        Path::to_path_buf,
    );
    Ok(manifest::package(&plugin.manifest.path, &wasm, &out)?)
}

/// The cargo that runs this command (when run by cargo), else the one on
/// the PATH.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Builds the plugin in `dir` as [`build`] does, then runs its crate's tests
/// (`cargo test`: unit tests, and harness tests that load the wasm just
/// built). A Python plugin has no cargo tests: it is built and checked.
/// Returns what was tested, for the last line.
pub(super) fn test(dir: &Path) -> Result<String> {
    let plugin = PluginDir::open(dir)?;
    eprintln!("[1/2] building {}", plugin.manifest.id);
    let installed = build_plugin(&plugin, None)?;
    let Toolchain::Cargo { cargo_toml, .. } = &plugin.toolchain else {
        eprintln!("[2/2] checking the component (a Python plugin has no cargo tests)");
        return check(dir);
    };
    eprintln!(
        "[2/2] testing {}: cargo test --manifest-path {}",
        plugin.manifest.id,
        cargo_toml.display()
    );
    let status = cargo()
        .arg("test")
        .arg("--manifest-path")
        .arg(cargo_toml)
        .status()
        .context("running cargo: install Rust (rustup)")?;
    if !status.success() {
        bail!(
            "the tests of {} failed ({status}); their messages are above",
            plugin.manifest.id
        );
    }
    Ok(format!(
        "{} built and tested; installable copy: {}",
        plugin.manifest.id,
        installed.display()
    ))
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
