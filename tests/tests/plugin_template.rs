//! `scripts/new-plugin NAME` in a temporary copy of the workspace creates a
//! plugin from templates/source-plugin that builds to wasm32-wasip2 and runs
//! under the test harness.

use std::path::Path;
use std::process::Command;

use connector_e2e::workspace_root;
use connector_plugin_harness::Harness;
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
fn new_plugin_creates_a_plugin_that_builds_to_wasm_and_runs() {
    let root = workspace_root();
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("ws");
    copy_tree(&root, &copy);
    // Share the build folder, so that dependencies are not rebuilt.
    std::os::unix::fs::symlink(root.join("target"), copy.join("target")).unwrap();

    let out = Command::new("bash")
        .arg(copy.join("scripts/new-plugin"))
        .args(["acme-chat", "Acme Chat"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("scripts/build-plugins acme-chat"),
        "{stdout}"
    );
    let plugin = copy.join("plugins/acme-chat");
    for file in ["Cargo.toml", "manifest.toml", "src/lib.rs", "README.md"] {
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
    let again = Command::new("bash")
        .arg(copy.join("scripts/new-plugin"))
        .arg("acme-chat")
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = Command::new("bash")
        .arg(copy.join("scripts/new-plugin"))
        .arg("Acme_Chat")
        .output()
        .unwrap();
    assert!(!bad.status.success());

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(cargo)
        .current_dir(&copy)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "acme-chat",
        ])
        .arg("--target-dir")
        .arg(root.join("target/plugins"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "the new plugin does not build:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    assert!(
        root.join("target/plugins/wasm32-wasip2/release/acme_chat.wasm")
            .is_file()
    );

    let run = Harness::new(plugin.join("manifest.toml"))
        .config(json!({"room": "Lobby", "messages": 5, "page_size": 2}))
        .state("sessions", "41")
        .run_pages()
        .unwrap();
    assert_eq!(
        run.state("sessions").as_deref(),
        Some(&b"42"[..]),
        "state in and out"
    );
    assert_eq!(run.pages.len(), 3);
    assert_eq!(run.messages().count(), 5);
    assert_eq!(
        run.conversations().next().unwrap().name.as_deref(),
        Some("Lobby")
    );
    assert_eq!(run.last_checkpoint().unwrap(), b"5");
}
