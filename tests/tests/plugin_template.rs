//! `connector plugin new NAME --dir plugins` in a temporary copy of the
//! workspace (what `scripts/new-plugin NAME` runs) creates a plugin from
//! templates/source-plugin that joins the workspace, builds to wasm32-wasip2
//! and runs under the test harness. `plugin_guide.rs` walks the same
//! commands outside the repository.

use std::path::Path;
use std::process::Command;

use connector_e2e::workspace_root;
use connector_plugin_harness::Harness;
use connector_runtime::PluginManifest;
use serde_json::json;

/// Copies the workspace's sources (not `target/` or `.git/`) to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else if ty.is_file() {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

#[test]
fn plugin_new_in_the_workspace_creates_a_member_that_builds_to_wasm_and_runs() {
    let root = workspace_root();
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("ws");
    copy_tree(&root, &copy);
    // Share the build folder, so that dependencies are not rebuilt.
    std::os::unix::fs::symlink(root.join("target"), copy.join("target")).unwrap();

    let connector = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_connector-cli"))
            .args(args)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .unwrap()
    };
    let plugins = copy.join("plugins");
    let plugins = plugins.to_str().unwrap();
    let new = |name: &str| {
        connector(&[
            "plugin",
            "new",
            name,
            "--dir",
            plugins,
            "--display-name",
            "Acme Chat",
        ])
    };
    let out = new("acme-chat");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("a member of the workspace"), "{stdout}");
    assert!(stdout.contains("connector plugin test"), "{stdout}");
    let plugin = copy.join("plugins/acme-chat");
    for file in [
        "Cargo.toml",
        "manifest.toml",
        "src/lib.rs",
        "README.md",
        "tests/harness.rs",
    ] {
        let text = std::fs::read_to_string(plugin.join(file)).unwrap();
        assert!(!text.contains("__"), "{file} keeps a placeholder:\n{text}");
    }
    assert!(
        std::fs::read_to_string(copy.join("Cargo.toml"))
            .unwrap()
            .contains("\"plugins/acme-chat\""),
        "added to the workspace"
    );
    // A second plugin of the same name is refused.
    let again = new("acme-chat");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = new("Acme_Chat");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("lower-case letters"));

    // `connector plugin build` compiles into the folder the manifest's
    // `wasm` names (here the workspace's target/plugins, shared with the
    // other tests) and writes an installable, pinned copy.
    let dist = tmp.path().join("dist");
    let plugin_arg = plugin.to_str().unwrap();
    let build = connector(&[
        "plugin",
        "build",
        plugin_arg,
        "--out",
        dist.to_str().unwrap(),
    ]);
    assert!(
        build.status.success(),
        "the new plugin does not build:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    assert!(
        root.join("target/plugins/wasm32-wasip2/release/acme_chat.wasm")
            .is_file()
    );
    let installed = PluginManifest::load(&dist.join("manifest.toml")).unwrap();
    assert_eq!(installed.id, "acme-chat");
    let check = connector(&["plugin", "check", plugin_arg]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(report.contains("API 0.2.0"), "{report}");

    // What the component does is the template's own harness tests' to
    // check (`plugin test`, walked by plugin_guide.rs); here: it runs.
    let run = Harness::new(plugin.join("manifest.toml"))
        .config(json!({"room": "Lobby", "messages": 5, "page_size": 2}))
        .run_pages()
        .unwrap();
    assert_eq!(run.messages().count(), 5);
}

#[test]
fn plugin_build_refuses_a_manifest_whose_wasm_is_not_where_cargo_writes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest =
        std::fs::read_to_string(workspace_root().join("plugins/chat-export/manifest.toml"))
            .unwrap()
            .lines()
            .map(|l| {
                if l.starts_with("wasm") {
                    "wasm = \"build/chat.wasm\"".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
    std::fs::write(tmp.path().join("manifest.toml"), manifest).unwrap();
    std::fs::write(
        tmp.path().join("Cargo.toml"),
        "[package]\nname = \"chat-export\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_connector-cli"))
        .args(["plugin", "build"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("set wasm = \"target/wasm32-wasip2/release/chat_export.wasm\""),
        "{stderr}"
    );
}
