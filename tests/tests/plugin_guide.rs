//! The Quick start of docs/plugin-guide.md, walked as an author would walk
//! it: in an empty folder outside the repository, each `connector` command
//! of the section's `sh` blocks is run with the real binary, and its `toml`
//! block is written to the file its first line names. The commands come
//! from the guide itself, so the guide cannot drift from what works.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use connector_e2e::workspace_root;
use sha2::Digest as _;

/// A fenced block of the Quick start: its language and its lines.
struct Block {
    lang: String,
    lines: Vec<String>,
}

/// The fenced blocks of the guide's Quick start section, in order.
fn quick_start_blocks() -> Vec<Block> {
    let guide = std::fs::read_to_string(workspace_root().join("docs/plugin-guide.md")).unwrap();
    let start = guide
        .find("## Quick start\n")
        .expect("a Quick start section");
    let section = &guide[start + 1..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for line in section.lines() {
        match (line.strip_prefix("```"), open.take()) {
            (Some(lang), None) => {
                open = Some(Block {
                    lang: lang.to_string(),
                    lines: Vec::new(),
                });
            }
            (Some(_), Some(block)) => blocks.push(block),
            (None, Some(mut block)) => {
                block.lines.push(line.to_string());
                open = Some(block);
            }
            (None, None) => {}
        }
    }
    blocks
}

/// Runs the real binary in `dir`, with the plugin builds sharing the
/// repository's plugin target folder (its compiled dependencies).
fn connector(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_connector-cli"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", workspace_root().join("target/plugins"))
        .env_remove("CONNECTOR_STATE_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap()
}

/// The email files under a Maildir++ root.
fn emails(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if folder.ends_with("new") || folder.ends_with("cur") {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn the_guides_quick_start_creates_tests_builds_and_runs_a_plugin_outside_the_repository() {
    // The same folder on every run of this checkout (the plugin crate's
    // path is part of its build's identity): its builds in the shared
    // target folder are replaced, not piled up.
    let root_hash =
        hex::encode(&sha2::Sha256::digest(workspace_root().to_string_lossy().as_bytes())[..6]);
    let dir = &std::env::temp_dir().join(format!("connector-plugin-guide-{root_hash}"));
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
    assert!(
        !dir.starts_with(workspace_root()),
        "the walk starts outside the repository"
    );
    let mut walked = Vec::new();
    let mut outputs = Vec::new();
    for block in quick_start_blocks() {
        match block.lang.as_str() {
            "sh" => {
                for line in &block.lines {
                    let command = line.split('#').next().unwrap().trim();
                    let words: Vec<&str> = command.split_whitespace().collect();
                    let Some((&"connector", args)) = words.split_first() else {
                        panic!("the Quick start runs only `connector` commands: {line}");
                    };
                    eprintln!("$ {command}");
                    let out = connector(dir, args);
                    assert!(
                        out.status.success(),
                        "`{command}` failed:\n{}\n{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let verb = if args[0] == "plugin" {
                        &args[..2]
                    } else {
                        &args[..1]
                    };
                    walked.push(verb.join(" "));
                    outputs.push(out);
                }
            }
            "toml" => {
                let name = block.lines[0]
                    .strip_prefix("# ")
                    .expect("a toml block's first line names its file: # NAME.toml");
                std::fs::write(dir.join(name), block.lines.join("\n")).unwrap();
                walked.push(format!("write {name}"));
            }
            "rust" => {}
            other => panic!("a Quick start block of an unexpected language: {other}"),
        }
    }
    assert_eq!(
        walked,
        [
            "plugin new",
            "plugin test",
            "plugin build",
            "write acme-chat.toml",
            "run",
            "log"
        ],
        "the Quick start walks from a new plugin to its run's log"
    );

    let test = String::from_utf8_lossy(&outputs[1].stdout);
    let progress = String::from_utf8_lossy(&outputs[1].stderr);
    assert!(
        progress.contains("[1/2] building") && progress.contains("[2/2] testing"),
        "{progress}"
    );
    assert!(
        test.contains("the_built_component_pages_the_sample_messages_and_keeps_its_state ... ok"),
        "the harness tests ran on the built wasm:\n{test}"
    );
    let manifest = std::fs::read_to_string(dir.join("acme-chat/manifest.toml")).unwrap();
    assert!(
        manifest.contains("/wasm32-wasip2/release/acme_chat.wasm"),
        "{manifest}"
    );
    let cargo = std::fs::read_to_string(dir.join("acme-chat/Cargo.toml")).unwrap();
    assert!(cargo.contains("\n[workspace]\n"), "a workspace of its own");

    let mail = emails(&dir.join("mail"));
    assert_eq!(mail.len(), 3, "{mail:?}");
    assert!(
        mail.iter()
            .all(|m| m.to_string_lossy().contains("sample.user@example.test")),
        "{mail:?}"
    );
    let text = std::fs::read_to_string(&mail[0]).unwrap();
    assert!(text.contains("Sample message"), "{text}");
    let log = String::from_utf8_lossy(&outputs[4].stdout);
    assert_eq!(
        log.lines().count(),
        4,
        "a header and three messages:\n{log}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn plugin_new_outside_the_repository_refuses_an_sdk_folder_that_is_not_the_sdk() {
    let tmp = tempfile::tempdir().unwrap();
    let out = connector(
        tmp.path(),
        &[
            "plugin",
            "new",
            "acme-chat",
            "--sdk",
            tmp.path().to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not the connector-sdk crate: pass --sdk PATH"),
        "{stderr}"
    );
    assert!(!tmp.path().join("acme-chat").exists(), "nothing written");
}
