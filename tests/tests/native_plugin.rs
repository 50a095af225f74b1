//! Native (trusted) plugins: the example cdylib, built for this machine,
//! run by the real host through the C ABI into a Maildir; refused unless the
//! operator trusts it.

use std::path::{Path, PathBuf};

use connector_e2e::*;
use connector_host::config::ConnectorConfig;
use connector_host::pipeline::{Host, RunOptions};
use connector_plugin_harness::{Harness, HarnessError, MessageKind, attachment_bytes};
use connector_state::RunOutcome;
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::json;

fn install(dir: &Path) -> PathBuf {
    let lib = build_native_plugin("native-example");
    connector_runtime::manifest::package(
        &workspace_root().join("plugins/native-example/manifest.toml"),
        &lib,
        dir,
    )
    .expect("packaging the native plugin")
}

fn connector(root: &Path, manifest: &Path, trusted: bool) -> ConnectorConfig {
    let file = write_file(
        root,
        "connector.toml",
        &format!(
            r#"
id = "native-e2e"
plugin = "{}"
[plugin-config]
messages = 12
page_size = 5
room = "Ops notes"
participants = [{{ id = "u1", display_name = "Ann", email = "ann@example.test" }}, {{ id = "u2", display_name = "Ben", email = "ben@example.test" }}]
[grants]
trusted-native = {trusted}
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
    ConnectorConfig::load(&file).unwrap()
}

#[test]
fn a_trusted_native_plugin_runs_through_the_pipeline_into_the_maildir() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = install(&tmp.path().join("plugin"));
    let config = connector(tmp.path(), &manifest, true);
    let host = Host::open(&tmp.path().join("state")).unwrap();
    host.validate(&config).unwrap();
    let summary = host.run_once(&config, &RunOptions::default()).unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    assert_eq!(summary.counts.pages, 3);
    assert_eq!(summary.counts.items_from_source, 12);
    assert_eq!(
        summary.counts.imported, 24,
        "each message to both participants"
    );
    let emails = maildir_emails(
        &tmp.path().join("mail"),
        "ann@example.test",
        ".INBOX.Native example",
    );
    assert_eq!(emails.len(), 12);
    let mut deferred = 0;
    for e in &emails {
        let parsed = MessageParser::default().parse(&e.bytes).unwrap();
        for a in parsed.attachments() {
            if a.attachment_name().unwrap().starts_with("data-") {
                assert_eq!(a.contents().len(), 40_000);
                deferred += 1;
            }
        }
    }
    assert_eq!(deferred, 2, "native-4 and native-9 carry a deferred file");
    let again = host.run_once(&config, &RunOptions::default()).unwrap();
    assert_eq!(
        again.counts.items_from_source, 0,
        "resumed from the checkpoint"
    );
}

#[test]
fn an_untrusted_native_plugin_is_refused_with_the_grant_to_set() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = install(&tmp.path().join("plugin"));
    let config = connector(tmp.path(), &manifest, false);
    let host = Host::open(&tmp.path().join("state")).unwrap();
    let err = host.validate(&config).unwrap_err().to_string();
    assert!(err.contains("trusted-native = true"), "{err}");
    let err = host
        .run_once(&config, &RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no sandbox"), "{err}");
}

#[test]
fn the_harness_runs_native_plugins_too() {
    build_native_plugin("native-example");
    let h =
        Harness::new(workspace_root().join("plugins/native-example/manifest.toml")).config(json!({
            "messages": 7, "page_size": 3,
            "participants": [{"id": "u1", "email": "ann@example.test"}]
        }));
    let err = h.clone().run_pages().unwrap_err();
    assert!(matches!(err, HarnessError::Load(_)), "{err}");
    let run = h.trust_native().run_pages().unwrap();
    assert_eq!(run.pages.len(), 3);
    assert_eq!(run.messages().count(), 7);
    let m3 = run.message("native-3").unwrap();
    assert_eq!(attachment_bytes(&m3.attachments[0]), b"inline attachment 3");
    assert!(run.message("native-2").unwrap().relations.len() == 1);
    assert!(run.messages().all(|m| m.kind == MessageKind::Chat));
    assert_eq!(run.last_checkpoint().unwrap(), b"7");
}

#[test]
fn a_library_that_is_not_a_connector_plugin_is_refused_before_any_call() {
    // Any shared library without the handshake symbol: the C maths
    // library will do.
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.is_file());
    let Some(libm) = libm else {
        eprintln!("no libm found; skipping");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let manifest = connector_runtime::manifest::package(
        &workspace_root().join("plugins/native-example/manifest.toml"),
        libm,
        &tmp.path().join("plugin"),
    )
    .unwrap();
    let err = Harness::new(&manifest)
        .trust_native()
        .run_pages()
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a connector native plugin"), "{err}");
    assert!(err.contains("connector_native_abi_version"), "{err}");
}
