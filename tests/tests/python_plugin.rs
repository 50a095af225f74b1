//! A source plugin written in Python (plugins/python-example), built with
//! componentize-py against the frozen WIT world sdk/wit/v0.1.0 and run by the
//! same host: through the test harness and through the whole pipeline into a
//! Maildir. `scripts/setup` installs componentize-py.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use connector_e2e::*;
use connector_host::config::ConnectorConfig;
use connector_host::pipeline::{Host, RunOptions};
use connector_plugin_harness::{Harness, HarnessError};
use connector_state::RunOutcome;
use serde_json::json;

/// Builds the Python plugin once per test process (about 10 s).
fn build_python_plugin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let out = root.join("target/plugins/python-example/python_example.wasm");
            std::fs::create_dir_all(out.parent().unwrap()).unwrap();
            let output = Command::new("componentize-py")
                .current_dir(&root)
                .args([
                    "-d",
                    "sdk/wit/v0.1.0",
                    "-w",
                    "source-plugin",
                    "componentize",
                    "app",
                ])
                .args(["-p", "plugins/python-example", "-o"])
                .arg(&out)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .output()
                .unwrap_or_else(|e| {
                    panic!("cannot run componentize-py ({e}); install it with scripts/setup")
                });
            assert!(
                output.status.success(),
                "componentize-py failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            out
        })
        .clone()
}

fn write_csv(dir: &Path, rows: usize) {
    let mut text =
        String::from("id,conversation,sender_id,sender_name,sender_email,sent_at_ms,text\n");
    for i in 0..rows {
        let (sender, name, email) = if i % 2 == 0 {
            ("u-ann", "Ann Ünïcode", "ann@example.test")
        } else {
            ("u-ben", "Ben", "ben@example.test")
        };
        let conv = if i % 3 == 0 { "desk" } else { "ops" };
        text.push_str(&format!(
            "py-{i},{conv},{sender},{name},{email},{},\"Python says hello {i} 🐍, with a comma\"\n",
            1_767_225_600_000i64 + i as i64 * 1000
        ));
    }
    std::fs::write(dir.join("chat.csv"), text).unwrap();
}

#[test]
fn a_python_plugin_runs_under_the_harness() {
    build_python_plugin();
    let tmp = tempfile::tempdir().unwrap();
    write_csv(tmp.path(), 9);
    let h = Harness::new(workspace_root().join("plugins/python-example/manifest.toml"))
        .config(json!({"path": "/export/chat.csv", "page_size": 4}))
        .grant_folder("/export", tmp.path());
    h.validate_config().unwrap();
    let run = h.run_pages().unwrap();
    assert_eq!(run.pages.len(), 3);
    assert_eq!(run.messages().count(), 9);
    assert_eq!(run.conversations().count(), 2);
    let m = run.message("py-4").unwrap();
    assert_eq!(
        m.text.as_deref(),
        Some("Python says hello 4 🐍, with a comma")
    );
    assert_eq!(m.sender.email.as_deref(), Some("ann@example.test"));
    assert_eq!(run.last_checkpoint().unwrap(), b"9");
    let bad = h
        .clone()
        .config(json!({"path": "/export/chat.csv", "page_size": 0}));
    assert!(matches!(
        bad.validate_config(),
        Err(HarnessError::Plugin { .. })
    ));
}

#[test]
fn a_python_plugin_runs_through_the_pipeline_into_the_maildir() {
    let wasm = build_python_plugin();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let manifest = connector_runtime::manifest::package(
        &workspace_root().join("plugins/python-example/manifest.toml"),
        &wasm,
        &root.join("plugin"),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("export")).unwrap();
    write_csv(&root.join("export"), 10);
    let file = write_file(
        root,
        "connector.toml",
        &format!(
            r#"
id = "python-e2e"
plugin = "{}"
[plugin-config]
path = "/export/chat.csv"
page_size = 4
[grants]
files = {{ "/export" = "export" }}
[mapping]
domains = ["example.test"]
[sink]
kind = "maildir"
path = "mail"
fsync = false
"#,
            manifest.display()
        ),
    );
    let config = ConnectorConfig::load(&file).unwrap();
    let host = Host::open(&root.join("state")).unwrap();
    let summary = host.run_once(&config, &RunOptions::default()).unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    assert_eq!(summary.counts.items_from_source, 10);
    assert_eq!(summary.counts.imported, 20);
    assert_eq!(
        maildir_emails(
            &root.join("mail"),
            "ben@example.test",
            ".INBOX.Python example"
        )
        .len(),
        10
    );
}

#[test]
fn plugin_new_lang_python_then_plugin_build_makes_a_component_the_host_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let connector = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_connector-cli"))
            .args(args)
            .current_dir(tmp.path())
            .output()
            .unwrap()
    };
    let new = connector(&["plugin", "new", "csv-chat", "--lang", "python"]);
    assert!(
        new.status.success(),
        "{}",
        String::from_utf8_lossy(&new.stderr)
    );
    // A missing componentize-py fails here, with the hint to run scripts/setup.
    let build = connector(&["plugin", "build", "csv-chat"]);
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let plugin = tmp.path().join("csv-chat");
    assert!(plugin.join("target/csv_chat.wasm").is_file());
    let installed = plugin.join("target/dist/csv-chat/manifest.toml");
    assert_eq!(
        connector_runtime::PluginManifest::load(&installed)
            .unwrap()
            .id,
        "csv-chat"
    );

    let data = tempfile::tempdir().unwrap();
    write_csv(data.path(), 5);
    let run = Harness::new(plugin.join("manifest.toml"))
        .config(json!({"path": "/export/chat.csv", "page_size": 2}))
        .grant_folder("/export", data.path())
        .run_pages()
        .unwrap();
    assert_eq!(run.messages().count(), 5);
    assert_eq!(run.last_checkpoint().unwrap(), b"5");
}
