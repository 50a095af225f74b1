//! The built component, run by the harness in the host's sandbox.
//! `cargo test` does not rebuild the wasm: `connector plugin test` builds it
//! first, then runs these tests.

use connector_plugin_harness::Harness;

/// The manifest, named from the crate folder: it names the wasm
/// `connector plugin build` writes.
const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifest.toml");

#[test]
fn the_built_component_pages_the_sample_messages_and_keeps_its_state() {
    let run = Harness::new(MANIFEST)
        .config(serde_json::json!({"room": "Lobby", "messages": 5, "page_size": 2}))
        .state("sessions", "41")
        .run_pages()
        .expect("the plugin runs (build it first: `connector plugin build`)");
    assert_eq!(run.pages.len(), 3);
    assert_eq!(run.messages().count(), 5);
    assert_eq!(
        run.conversations().next().unwrap().name.as_deref(),
        Some("Lobby")
    );
    assert_eq!(run.last_checkpoint().unwrap(), b"5");
    assert_eq!(run.state("sessions").as_deref(), Some(&b"42"[..]));
}

#[test]
fn the_built_component_resumes_from_its_checkpoint() {
    let run = Harness::new(MANIFEST)
        .config(serde_json::json!({"messages": 3, "page_size": 2}))
        .checkpoint(b"2".to_vec())
        .run_pages()
        .expect("the plugin runs (build it first: `connector plugin build`)");
    let ids: Vec<_> = run.messages().map(|m| m.id.to_string()).collect();
    assert_eq!(ids, ["sample-2"]);
}
