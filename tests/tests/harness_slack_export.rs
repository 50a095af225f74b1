//! The slack-export plugin under the test harness: a generated export in a
//! granted folder, `url_private` downloads answered by scripted HTTP at the
//! real `https://files.slack.com` origin, and assertions on the pages.

use connector_e2e::slack;
use connector_e2e::{build_plugin, workspace_root};
use connector_plugin_harness::{Harness, MessageKind, Method, Relation, attachment_bytes};
use serde_json::json;

const FILES: &str = "https://files.slack.com";

fn harness(dir: &std::path::Path, download: bool) -> Harness {
    build_plugin("slack-export");
    Harness::new(workspace_root().join("plugins/slack-export/manifest.toml"))
        .config(json!({"path": "/export/acme", "page_size": 10, "download_files": download}))
        .grant_folder("/export", dir)
        .grant_host(FILES)
        .secret("slack-token", "Bearer xoxb-test")
}

#[test]
fn pages_files_and_token_header_over_scripted_http() {
    let export = slack::build(2, 6);
    let tmp = tempfile::tempdir().unwrap();
    export.write_dir(&tmp.path().join("acme"), FILES);
    let mut h = harness(tmp.path(), true);
    for (path, bytes) in &export.downloads {
        h = h.respond(
            Method::Get,
            &format!("{FILES}{path}"),
            200,
            &[],
            bytes.clone(),
        );
    }
    let run = h.run_pages().unwrap();
    let ids: Vec<&str> = run.messages().map(|m| m.id.as_str()).collect();
    let want: Vec<&str> = export.expected.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, want, "every message, in export order");
    assert_eq!(run.conversations().count(), 5);
    assert!(run.pages.iter().all(|p| p.messages.len() <= 10));
    // Every download carried the token from the secret, filled in by the host.
    assert_eq!(run.requests.len(), export.downloads.len());
    assert!(
        run.requests
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer xoxb-test"))
    );
    for e in &export.expected {
        let m = run.message(&e.id).unwrap();
        let got: Vec<(&str, &[u8])> = m
            .attachments
            .iter()
            .map(|a| (a.file_name.as_str(), attachment_bytes(a)))
            .collect();
        let want: Vec<(&str, &[u8])> = e
            .attachments
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        assert_eq!(got, want, "{}", e.id);
        if let Some(parent) = &e.reply_to {
            assert!(
                m.relations.contains(&Relation::ReplyTo(parent.clone())),
                "{}",
                e.id
            );
        }
    }
    let join = run
        .messages()
        .find(|m| m.kind == MessageKind::MemberJoined)
        .unwrap();
    assert_eq!(join.id, export.expected[0].id);
    let tombstoned = run
        .messages()
        .find(|m| {
            m.properties
                .iter()
                .any(|(k, v)| k == "slack-files-not-archived" && v.contains("tombstone"))
        })
        .expect("a deleted file is named, not dropped");
    assert!(tombstoned.attachments.is_empty());
    let alice = run
        .conversations()
        .flat_map(|c| c.participants.iter())
        .find(|p| p.id == "U01ALICE")
        .unwrap();
    assert_eq!(
        alice.email.as_deref(),
        Some("alice@example.test"),
        "emails from users.json"
    );
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&run.last_checkpoint().unwrap()).unwrap();
    assert_eq!(checkpoint["v"], 1);
    assert_eq!(checkpoint["after"].as_object().unwrap().len(), 5);
}

#[test]
fn without_downloads_no_request_is_made_and_missing_files_are_named() {
    let export = slack::build(1, 7);
    let tmp = tempfile::tempdir().unwrap();
    export.write_dir(&tmp.path().join("acme"), FILES);
    let run = harness(tmp.path(), false).run_pages().unwrap();
    assert!(run.requests.is_empty());
    let named = run
        .messages()
        .filter(|m| {
            m.properties
                .iter()
                .any(|(k, v)| k == "slack-files-not-archived" && v.contains("download_files"))
        })
        .count();
    assert_eq!(named, export.downloads.len());
    // Files stored inside the export are still attached (deferred reads).
    let stored = run.messages().filter(|m| !m.attachments.is_empty()).count();
    assert!(stored > 0);
}

#[test]
fn a_folder_that_is_not_an_export_is_a_configuration_error() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("acme")).unwrap();
    std::fs::write(tmp.path().join("acme/readme.txt"), "hello").unwrap();
    let err = harness(tmp.path(), false).run_pages().unwrap_err();
    assert!(err.to_string().contains("is not a Slack export"), "{err}");
}
