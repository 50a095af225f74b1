//! The plugin test harness (`sdk/harness`) running the real chat-export
//! plugin, built to wasm32-wasip2, over scripted HTTP: pages, checkpoints,
//! requests, resuming, errors, and the allow-list in front of the scripted
//! transport.

use base64::Engine as _;
use connector_e2e::{build_plugin, workspace_root};
use connector_plugin_harness::{
    Harness, HarnessError, MessageKind, Method, TransportError, attachment_bytes,
};
use connector_runtime::PluginError;
use serde_json::json;

const ORIGIN: &str = "https://chat.example.test";

/// A small export served over HTTP: one room, five messages, a reply, an
/// edit, a base64 download and a deferred file.
fn export() -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(b"inline bytes");
    let lines = [
        json!({"type":"conversation","id":"c1","kind":"room","name":"Desk","participants":[
            {"id":"u1","name":"Ann","email":"ann@example.test"},{"id":"u2","name":"Ben"}]}),
        json!({"type":"message","id":"m1","conversation":"c1","sender":{"id":"u1"},"sent_at":1000,"text":"hello",
            "attachments":[{"id":"a","name":"a.txt","content_base64":b64}]}),
        json!({"type":"message","id":"m2","conversation":"c1","sender":{"id":"u2"},"sent_at":2000,"text":"hi","reply_to":"m1"}),
        json!({"type":"message","id":"m3","conversation":"c1","sender":{"id":"u2"},"sent_at":3000,"text":"hi!","edit_of":"m2"}),
        json!({"type":"message","id":"m4","conversation":"c1","sender":{"id":"u1"},"sent_at":4000,"text":"file",
            "attachments":[{"id":"d","name":"d.bin","url":format!("{ORIGIN}/dl/d.bin"),"encoding":"base64"}]}),
        json!({"type":"message","id":"m5","conversation":"c1","sender":{"id":"u1"},"sent_at":5000,"text":"path",
            "attachments":[{"id":"p","name":"p.pdf","path":"files/p.pdf"}]}),
    ];
    lines.iter().map(|l| l.to_string() + "\n").collect()
}

fn harness() -> Harness {
    build_plugin("chat-export");
    Harness::new(workspace_root().join("plugins/chat-export/manifest.toml"))
        .config(json!({"url": format!("{ORIGIN}/export/chat.jsonl"), "page_size": 2}))
        .grant_host(ORIGIN)
}

fn scripted(h: Harness) -> Harness {
    h.respond(
        Method::Get,
        &format!("{ORIGIN}/export/chat.jsonl"),
        200,
        &[],
        export(),
    )
    .respond(
        Method::Get,
        &format!("{ORIGIN}/dl/*"),
        200,
        &[("content-type", "text/plain")],
        base64::engine::general_purpose::STANDARD.encode(b"downloaded"),
    )
    .respond(
        Method::Get,
        &format!("{ORIGIN}/export/files/p.pdf"),
        200,
        &[],
        b"%PDF-1.7 deferred".to_vec(),
    )
}

#[test]
fn pages_checkpoints_and_requests_over_scripted_http() {
    let run = scripted(harness()).run_pages().unwrap();
    assert_eq!(run.pages.len(), 3, "five messages in pages of two");
    assert!(run.pages[2].complete && !run.pages[0].complete);
    assert_eq!(run.conversations().count(), 1, "described once per session");
    let ids: Vec<&str> = run.messages().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(run.message("m3").unwrap().kind, MessageKind::Edit);
    let att = |m: &str| attachment_bytes(&run.message(m).unwrap().attachments[0]).to_vec();
    assert_eq!(att("m1"), b"inline bytes");
    assert_eq!(att("m4"), b"downloaded", "fetch decoded by the host");
    assert_eq!(
        att("m5"),
        b"%PDF-1.7 deferred",
        "deferred read through the plugin"
    );
    let checkpoints: Vec<String> = run
        .pages
        .iter()
        .map(|p| String::from_utf8(p.checkpoint.clone()).unwrap())
        .collect();
    assert!(
        checkpoints.iter().all(|c| c.starts_with("{\"offset\":")),
        "{checkpoints:?}"
    );
    let opened = run
        .logs
        .iter()
        .find(|l| l.message == "chat export opened")
        .expect("the plugin's log lines are captured");
    assert_eq!(opened.level, "info");
    assert!(
        opened
            .fields
            .contains(&("page_size".to_string(), "2".to_string()))
    );
    let urls: Vec<&str> = run.requests.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://chat.example.test/export/chat.jsonl",
            "https://chat.example.test/dl/d.bin",
            "https://chat.example.test/export/files/p.pdf"
        ]
    );
}

#[test]
fn resuming_from_a_checkpoint_emits_only_what_follows() {
    let first = scripted(harness()).max_pages(1).run_pages().unwrap();
    assert_eq!(first.pages.len(), 1);
    let resumed = scripted(harness())
        .checkpoint(first.last_checkpoint().unwrap())
        .run_pages()
        .unwrap();
    let ids: Vec<&str> = resumed.messages().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["m3", "m4", "m5"]);
    assert_eq!(
        resumed.pages[0].conversations.len(),
        1,
        "described again in the new session"
    );
}

#[test]
fn an_unscripted_request_fails_the_run_and_names_it() {
    let err = harness()
        .respond(
            Method::Get,
            &format!("{ORIGIN}/export/chat.jsonl"),
            200,
            &[],
            export(),
        )
        .run_pages()
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, HarnessError::Unscripted { .. }), "{msg}");
    assert!(
        msg.contains("GET https://chat.example.test/dl/d.bin"),
        "{msg}"
    );
    assert!(msg.contains(".respond("), "{msg}");
}

#[test]
fn the_allow_list_stands_in_front_of_the_scripted_transport() {
    build_plugin("chat-export");
    let err = scripted(
        Harness::new(workspace_root().join("plugins/chat-export/manifest.toml"))
            .config(json!({"url": format!("{ORIGIN}/export/chat.jsonl")})),
    )
    .run_pages()
    .unwrap_err();
    let HarnessError::Plugin { error, run } = err else {
        panic!("expected a plugin error, got {err}");
    };
    assert!(run.requests.is_empty(), "nothing reached the transport");
    assert!(
        matches!(&error, PluginError::Permanent(m) if m.contains("not granted")),
        "{error}"
    );
}

#[test]
fn statuses_and_transport_failures_reach_the_plugin_classified() {
    let unavailable = harness()
        .respond(Method::Get, "*", 503, &[], "maintenance")
        .run_pages()
        .unwrap_err();
    assert!(
        matches!(&unavailable, HarnessError::Plugin { error: PluginError::Transient(m), .. } if m.contains("503")),
        "{unavailable}"
    );
    let throttled = harness()
        .respond(Method::Get, "*", 429, &[("retry-after", "7")], "")
        .run_pages()
        .unwrap_err();
    assert!(
        matches!(
            throttled,
            HarnessError::Plugin {
                error: PluginError::RateLimited(Some(7)),
                ..
            }
        ),
        "{throttled}"
    );
    let timeout = harness()
        .respond_error(Method::Get, "*", TransportError::Timeout)
        .run_pages()
        .unwrap_err();
    assert!(
        matches!(&timeout, HarnessError::Plugin { error: PluginError::Transient(m), .. } if m.contains("timed out")),
        "{timeout}"
    );
}

#[test]
fn a_grant_the_manifest_does_not_declare_is_a_setup_error() {
    build_plugin("chat-export");
    let err = Harness::new(workspace_root().join("plugins/chat-export/manifest.toml"))
        .secret("token", "x")
        .run_pages()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("secret `token` is granted but the manifest does not declare it"),
        "{err}"
    );
}

#[test]
fn validate_config_runs_without_grants() {
    let h = harness();
    h.validate_config().unwrap();
    let bad = h.config(json!({"page_size": 0}));
    assert!(matches!(
        bad.validate_config(),
        Err(HarnessError::Plugin {
            error: PluginError::InvalidConfig(_),
            ..
        })
    ));
}
