//! `connector plugin new`: a plugin from the templates built into the
//! binary, so that it works from an installed binary with no copy of this
//! repository. Inside this repository's workspace the crate joins the
//! workspace (its SDK by relative path, its wasm under `target/plugins`);
//! anywhere else it is a crate of its own, with its own `[workspace]` and the
//! SDK crate by absolute path (`--sdk`, by default the SDK of the source the
//! binary was built from).

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

/// The language of a new plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum Lang {
    /// A Rust crate on `connector-sdk`, built to wasm32-wasip2 by cargo.
    Rust,
    /// A Python plugin (app.py, source.py) built by componentize-py.
    Python,
}

/// The Rust template, as it is in `templates/source-plugin/`.
mod rust_template {
    pub const WORKSPACE_CARGO: &str =
        include_str!("../../../../templates/source-plugin/Cargo.toml.template");
    pub const STANDALONE_CARGO: &str =
        include_str!("../../../../templates/source-plugin/Cargo.standalone.toml.template");
    pub const FILES: [(&str, &str); 4] = [
        (
            "manifest.toml",
            include_str!("../../../../templates/source-plugin/manifest.toml"),
        ),
        (
            "README.md",
            include_str!("../../../../templates/source-plugin/README.md"),
        ),
        (
            "src/lib.rs",
            include_str!("../../../../templates/source-plugin/src/lib.rs"),
        ),
        (
            "tests/harness.rs",
            include_str!("../../../../templates/source-plugin/tests/harness.rs"),
        ),
    ];
    /// The versions the SDK is built and tested with: a standalone plugin
    /// starts from them (cargo drops what it does not use), so it resolves
    /// without a network and builds what the SDK was tested against.
    pub const LOCK: &str = include_str!("../../../../Cargo.lock");
}

/// The Python template: `plugins/python-example`, its id replaced.
mod python_template {
    pub const FILES: [(&str, &str); 2] = [
        (
            "app.py",
            include_str!("../../../../plugins/python-example/app.py"),
        ),
        (
            "source.py",
            include_str!("../../../../plugins/python-example/source.py"),
        ),
    ];
    pub const MANIFEST: &str = include_str!("../../../../plugins/python-example/manifest.toml");
    /// The id the template's files use, replaced by the new plugin's.
    pub const ID: &str = "python-example";
}

/// The SDK folder of the source this binary was built from, when it is
/// still there.
fn built_in_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().ok())
        .flatten()
}

/// What `plugin new` was asked for.
pub(super) struct NewPlugin<'a> {
    pub name: &'a str,
    pub parent: &'a Path,
    pub lang: Lang,
    pub display_name: Option<&'a str>,
    pub sdk: Option<&'a Path>,
}

/// What `plugin new` made, for the message after it.
pub(super) struct Created {
    pub dir: PathBuf,
    /// The workspace's root when the crate joined it.
    pub workspace: Option<PathBuf>,
}

/// Creates the plugin `request.name` in `request.parent`.
pub(super) fn create(request: &NewPlugin) -> Result<Created> {
    let name = request.name;
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "plugin name {name:?} must be lower-case letters, digits and '-', starting with a letter and not ending with '-'; pick another name"
        );
    }
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    let display = request.display_name.unwrap_or(&type_name);
    if display.contains(['/', '.', '\\', '"']) {
        bail!("display name {display:?} must not contain / . \\ or \"; pick another one");
    }
    std::fs::create_dir_all(request.parent)
        .with_context(|| format!("creating {}", request.parent.display()))?;
    let parent = request.parent.canonicalize().with_context(|| {
        format!(
            "reading {}: pass an existing --dir",
            request.parent.display()
        )
    })?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!(
            "{} already exists; pick another name or remove it",
            dir.display()
        );
    }
    let crate_name = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("__PLUGIN_ID__", name)
            .replace("__CRATE_NAME__", &crate_name)
            .replace("__TYPE_NAME__", &type_name)
            .replace("__DISPLAY_NAME__", display)
    };
    let workspace = this_workspace(&parent);
    let mut files: Vec<(String, String)> = Vec::new();
    match request.lang {
        Lang::Rust => {
            let (cargo, sdk, target) = match &workspace {
                Some(root) => {
                    let up = "../".repeat(depth_below(root, &dir));
                    (
                        rust_template::WORKSPACE_CARGO,
                        format!("{up}sdk"),
                        format!("{up}target/plugins"),
                    )
                }
                None => {
                    let sdk = sdk_folder(request.sdk)?;
                    // A shared target folder (CARGO_TARGET_DIR) keeps its
                    // compiled dependencies for every plugin.
                    let target = match std::env::var_os("CARGO_TARGET_DIR") {
                        Some(t) => std::path::absolute(&t)
                            .with_context(|| {
                                format!("CARGO_TARGET_DIR={t:?}: set it to a folder, or unset it")
                            })?
                            .display()
                            .to_string(),
                        None => "target".to_string(),
                    };
                    files.push(("Cargo.lock".into(), rust_template::LOCK.into()));
                    (
                        rust_template::STANDALONE_CARGO,
                        sdk.display().to_string(),
                        target,
                    )
                }
            };
            let wasm = format!("{target}/wasm32-wasip2/release/{crate_name}.wasm");
            files.push((
                "Cargo.toml".into(),
                fill(cargo).replace("__SDK_PATH__", &sdk),
            ));
            for (path, text) in rust_template::FILES {
                files.push((path.into(), fill(text).replace("__WASM_PATH__", &wasm)));
            }
        }
        Lang::Python => {
            let python = |text: &str| {
                text.replace(python_template::ID, name)
                    .replace(&python_template::ID.replace('-', "_"), &crate_name)
            };
            for (path, text) in python_template::FILES {
                files.push((path.into(), python(text)));
            }
            let manifest: String = python(python_template::MANIFEST)
                .lines()
                .map(|line| {
                    if line.starts_with("name ") {
                        format!("name = \"{display}\"")
                    } else if line.starts_with("wasm ") {
                        format!(
                            "wasm = \"target/{crate_name}.wasm\"   # where `connector plugin build` writes the component"
                        )
                    } else {
                        line.to_string()
                    }
                })
                .map(|line| line + "\n")
                .collect();
            files.push(("manifest.toml".into(), manifest));
        }
    }
    for (path, text) in &files {
        let file = dir.join(path);
        if let Some(folder) = file.parent() {
            std::fs::create_dir_all(folder).with_context(|| {
                format!(
                    "creating {}: check that you may write there",
                    folder.display()
                )
            })?;
        }
        std::fs::write(&file, text).with_context(|| {
            format!("writing {}: check that you may write there", file.display())
        })?;
    }
    let workspace = match (request.lang, workspace) {
        (Lang::Rust, Some(root)) => {
            join_workspace(&root, &dir)?;
            Some(root)
        }
        _ => None,
    };
    Ok(Created { dir, workspace })
}

/// The root of this repository's workspace when `dir` is inside it: the
/// nearest folder above with a `Cargo.toml` that has a `[workspace]` table
/// and an `sdk/` holding `connector-sdk`.
fn this_workspace(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml"))
                .ok()
                .and_then(|t| t.parse::<toml::Table>().ok())
                .is_some_and(|t| t.contains_key("workspace"))
        })
        .filter(|root| package_name(&root.join("sdk")).as_deref() == Some("connector-sdk"))
        .map(Path::to_path_buf)
}

/// How many folders `dir` is below `root`.
fn depth_below(root: &Path, dir: &Path) -> usize {
    dir.strip_prefix(root).map_or(0, |rel| {
        rel.components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count()
    })
}

/// The `[package]` name of the crate in `dir`.
fn package_name(dir: &Path) -> Option<String> {
    let table: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml"))
        .ok()?
        .parse()
        .ok()?;
    Some(table.get("package")?.get("name")?.as_str()?.to_string())
}

/// The SDK crate's folder for a standalone plugin: `--sdk`, else the one of
/// the source this binary was built from.
fn sdk_folder(given: Option<&Path>) -> Result<PathBuf> {
    let Some(sdk) = given.map(Path::to_path_buf).or_else(built_in_sdk) else {
        bail!(
            "this binary was not built from a source folder that is still there: pass --sdk PATH, the sdk/ folder of the connector framework's source (the crate connector-sdk)"
        );
    };
    if package_name(&sdk).as_deref() != Some("connector-sdk") {
        bail!(
            "{} is not the connector-sdk crate: pass --sdk PATH, the sdk/ folder of the connector framework's source",
            sdk.display()
        );
    }
    sdk.canonicalize().with_context(|| {
        format!(
            "reading {}: pass --sdk PATH to the SDK's folder",
            sdk.display()
        )
    })
}

/// Adds `dir` to the members of the workspace at `root` (once).
fn join_workspace(root: &Path, dir: &Path) -> Result<()> {
    let cargo = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&cargo).with_context(|| {
        format!(
            "reading {}: add the plugin to its workspace members yourself",
            cargo.display()
        )
    })?;
    let member = dir
        .strip_prefix(root)
        .unwrap_or(dir)
        .to_string_lossy()
        .into_owned();
    let quoted = format!("\"{member}\"");
    if text.contains(&quoted) {
        return Ok(());
    }
    let Some(at) = text.find("members = [") else {
        bail!(
            "{} has no `members = [` line: add \"{member}\" to its workspace members yourself",
            cargo.display()
        );
    };
    let at = at + "members = [".len();
    let updated = format!("{}{quoted}, {}", &text[..at], &text[at..]);
    std::fs::write(&cargo, updated).with_context(|| format!("writing {}", cargo.display()))?;
    Ok(())
}
