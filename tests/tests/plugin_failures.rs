//! Bad input and badly behaved plugins get clear errors and lose nothing:
//! a plugin that traps, loops, over-allocates or reaches for what it was not
//! granted; a tampered wasm; malformed manifests and connector files.

use std::path::{Path, PathBuf};

use connector_e2e::*;
use connector_host::config::{ConfigError, ConnectorConfig};
use connector_host::pipeline::{Host, RunError, RunOptions};
use connector_runtime::PluginError;
use connector_state::RunOutcome;

struct Setup {
    tmp: tempfile::TempDir,
    manifest: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let manifest = install_misbehaving(&tmp.path().join("plugin"));
        Setup { tmp, manifest }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// A connector file for the misbehaving plugin with this plugin config.
    fn config(&self, plugin_config: &str, extra: &str) -> ConnectorConfig {
        let path = write_file(
            self.root(),
            "connector.toml",
            &format!(
                r#"
id = "misbehaving"
plugin = "{}"
retries = 0
{extra}
[plugin-config]
{plugin_config}
[sink]
kind = "maildir"
path = "mail"
fsync = false
"#,
                self.manifest.display()
            ),
        );
        ConnectorConfig::load(&path).unwrap()
    }

    fn host(&self) -> Host {
        Host::open(&self.root().join("state")).unwrap()
    }

    fn delivered(&self, mailbox: &str) -> usize {
        maildir_emails(&self.root().join("mail"), mailbox, ".INBOX.Misbehaving").len()
    }
}

fn plugin_error(result: Result<impl std::fmt::Debug, RunError>) -> PluginError {
    match result {
        Err(RunError::Plugin(e)) => e,
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

#[test]
fn a_plugin_that_traps_fails_the_run_and_the_rerun_resumes_at_the_failed_page() {
    let s = Setup::new();
    let host = s.host();
    let bad = s.config(
        r#"pages = 5
per_page = 4
mode = "trap"
at_page = 2"#,
        "",
    );
    let e = plugin_error(host.run_once(&bad, &RunOptions::default()));
    let PluginError::Trap { stderr, .. } = &e else {
        panic!("expected a trap, got {e:?}");
    };
    assert!(
        stderr.contains("panicked"),
        "the panic message reaches the operator: {stderr}"
    );
    assert!(
        e.to_string()
            .contains("next run starts from the last checkpoint")
    );
    assert_eq!(
        s.delivered("alice@example.test"),
        8,
        "the two pages before the trap are kept"
    );
    let runs = host.db().runs("misbehaving", 1).unwrap();
    assert_eq!(runs[0].outcome, Some(RunOutcome::Failed));

    let good = s.config(
        r#"pages = 5
per_page = 4
mode = "none""#,
        "",
    );
    let summary = host.run_once(&good, &RunOptions::default()).unwrap();
    assert_eq!(summary.counts.items_from_source, 12, "resumed at page 2");
    assert_eq!(summary.counts.skipped_duplicates, 0);
    assert_eq!(s.delivered("alice@example.test"), 20);
    assert_eq!(s.delivered("bob@example.test"), 20);
}

#[test]
fn a_plugin_that_loops_forever_is_stopped_by_its_deadline() {
    let s = Setup::new();
    let cfg = s.config(
        r#"pages = 3
per_page = 2
mode = "loop"
at_page = 1"#,
        "[grants]\ntimeout-secs = 2",
    );
    let started = std::time::Instant::now();
    let e = plugin_error(s.host().run_once(&cfg, &RunOptions::default()));
    assert!(matches!(e, PluginError::Deadline { secs: 2 }), "{e:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert_eq!(
        s.delivered("alice@example.test"),
        2,
        "the page before the loop is kept"
    );
}

#[test]
fn a_plugin_that_allocates_past_its_memory_limit_is_stopped() {
    let s = Setup::new();
    let cfg = s.config(
        r#"pages = 2
per_page = 2
mode = "oom"
at_page = 0"#,
        "",
    );
    let e = plugin_error(s.host().run_once(&cfg, &RunOptions::default()));
    assert!(matches!(e, PluginError::MemoryLimit { mb: 128 }), "{e:?}");
    assert!(e.to_string().contains("raise memory-mb"));
}

#[test]
fn a_host_that_was_not_granted_is_an_error_value_not_a_trap() {
    let s = Setup::new();
    let origin = serve_files(Default::default());
    let cfg = s.config(
        &format!(
            "pages = 2\nper_page = 1\nmode = \"denied-host\"\nat_page = 0\nurl = \"{origin}/x\""
        ),
        "",
    );
    let e = plugin_error(s.host().run_once(&cfg, &RunOptions::default()));
    assert!(matches!(e, PluginError::Permanent(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("is not granted to plugin misbehaving"),
        "{e}"
    );
}

#[test]
fn an_undeclared_secret_is_an_error_value_not_a_trap() {
    let s = Setup::new();
    let cfg = s.config(
        "pages = 1\nper_page = 1\nmode = \"undeclared-secret\"\nat_page = 0",
        "",
    );
    let e = plugin_error(s.host().run_once(&cfg, &RunOptions::default()));
    assert!(matches!(e, PluginError::Permanent(_)), "{e:?}");
    assert!(
        e.to_string().contains("not-declared") || e.to_string().contains("not declared"),
        "{e}"
    );
}

#[test]
fn a_transient_failure_is_retried_then_reported() {
    let s = Setup::new();
    let cfg = s.config("pages = 2\nper_page = 1\nmode = \"error\"\nat_page = 1", "");
    let e = plugin_error(s.host().run_once(&cfg, &RunOptions::default()));
    assert!(matches!(e, PluginError::Transient(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("next run resumes from the last checkpoint")
    );
    assert_eq!(s.delivered("alice@example.test"), 1);
}

#[test]
fn a_wasm_that_does_not_match_its_manifest_is_refused_before_loading() {
    let s = Setup::new();
    let wasm = s.root().join("plugin/misbehaving.wasm");
    let mut bytes = std::fs::read(&wasm).unwrap();
    bytes.extend_from_slice(b"\0tampered");
    std::fs::write(&wasm, bytes).unwrap();
    let cfg = s.config("pages = 1\nper_page = 1\nmode = \"none\"", "");
    let e = plugin_error(s.host().run_once(&cfg, &RunOptions::default()));
    assert!(matches!(e, PluginError::Load(_)), "{e:?}");
    assert!(e.to_string().contains("manifest pins"), "{e}");
    assert!(!s.root().join("mail").exists(), "nothing was delivered");
}

#[test]
fn a_malformed_manifest_is_reported_with_file_line_and_hint() {
    let s = Setup::new();
    let text = std::fs::read_to_string(&s.manifest).unwrap();
    std::fs::write(
        &s.manifest,
        text.replace("[permissions]", "[permissions]\nnetwork = \"all\""),
    )
    .unwrap();
    let cfg = s.config("pages = 1\nper_page = 1\nmode = \"none\"", "");
    let e = s.host().run_once(&cfg, &RunOptions::default()).unwrap_err();
    let RunError::Config(ConfigError::Parse { line, message, .. }) = &e else {
        panic!("expected a parse error, got {e:?}");
    };
    assert!(message.contains("unknown field `network`"), "{message}");
    assert!(*line > 1);
    assert!(e.to_string().contains("hint:"));
}

#[test]
fn a_connector_file_granting_more_than_the_manifest_declares_is_refused() {
    let s = Setup::new();
    let cfg = s.config(
        "pages = 1\nper_page = 1\nmode = \"none\"",
        "[grants]\nhosts = [\"https://evil.example\"]",
    );
    let e = s.host().run_once(&cfg, &RunOptions::default()).unwrap_err();
    assert!(
        matches!(e, RunError::Config(ConfigError::Invalid { .. })),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("https://evil.example:443 is granted but the manifest does not declare it"),
        "{e}"
    );
}

#[test]
fn a_granted_name_that_resolves_to_a_private_address_is_refused_unless_the_operator_allows_private_networks()
 {
    let pod = symphony_sim::start_blocking(
        symphony_sim::SimConfig::builder()
            .messages(20)
            .large_attachment_bytes(0)
            .build(),
    )
    .expect("the Symphony simulator starts");
    // The same server, by a name that resolves to the loopback address.
    let by_name = pod.base_url().replace("127.0.0.1", "localhost");
    assert_ne!(by_name, pod.base_url());
    let tmp = tempfile::tempdir().unwrap();
    let file = connector_e2e::symphony::symphony_connector_file(
        tmp.path(),
        &connector_e2e::symphony::SymphonyConnector {
            id: "on-premises",
            base: &by_name,
            retries: 0,
            page_size: 50,
            domain: "acme-capital.example",
            sink: "[sink]\nkind = \"maildir\"\npath = \"mail\"\nfsync = false\n",
            extra_secrets: "",
        },
    );
    let host = Host::open(&tmp.path().join("state")).unwrap();
    let refused = host
        .run_once(
            &ConnectorConfig::load(&file).unwrap(),
            &RunOptions::default(),
        )
        .expect_err("a name resolving to loopback is refused");
    let said = format!("{refused:#}");
    assert!(
        said.contains("localhost resolves to") && said.contains("private-networks = true"),
        "the refusal names the host and the grant that allows it: {said}"
    );
    assert_eq!(pod.stats().requests, 0, "nothing reached the server");

    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replacen("[grants]\n", "[grants]\nprivate-networks = true\n", 1),
    )
    .unwrap();
    let allowed = host
        .run_once(
            &ConnectorConfig::load(&file).unwrap(),
            &RunOptions::default(),
        )
        .unwrap();
    assert_eq!(allowed.outcome, RunOutcome::Succeeded);
    assert!(allowed.counts.imported > 0, "{allowed:?}");
}

#[test]
fn an_attachment_that_never_ends_stops_its_page_at_the_granted_size_and_the_host_goes_on() {
    let s = Setup::new();
    let host = s.host();
    let endless = s.config(
        "pages = 2\nper_page = 2\nmode = \"endless-attachment\"\nat_page = 1",
        "[grants]\nattachment-mb = 4\n",
    );
    let e = plugin_error(host.run_once(&endless, &RunOptions::default()));
    assert!(matches!(e, PluginError::Permanent(_)), "{e:?}");
    let said = e.to_string();
    assert!(
        said.contains("attachment endless of message m-1-0")
            && said.contains("larger than 4 MiB")
            && said.contains("attachment-mb"),
        "the error names the attachment, the limit and the grant: {said}"
    );
    assert_eq!(s.delivered("alice@example.test"), 2, "the page before it");

    let calm = s.config("pages = 3\nper_page = 1", "");
    let summary = host.run_once(&calm, &RunOptions::default()).unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
}

#[test]
fn a_conversation_of_more_people_than_the_host_takes_stops_its_page_with_a_clear_error() {
    let s = Setup::new();
    let host = s.host();
    let crowded = s.config(
        &format!(
            "pages = 2\nper_page = 2\nparticipants = {}",
            connector_runtime::MAX_PARTICIPANTS
        ),
        "",
    );
    let e = plugin_error(host.run_once(&crowded, &RunOptions::default()));
    assert!(matches!(e, PluginError::Protocol(_)), "{e:?}");
    let said = e.to_string();
    assert!(
        said.contains("conversation c1 lists 250002 participants")
            && said.contains("report this to the plugin's author"),
        "the error names the conversation, its size and what to do: {said}"
    );
    assert_eq!(s.delivered("alice@example.test"), 0, "nothing of the page");

    let calm = s.config("pages = 3\nper_page = 1\nparticipants = 1000", "");
    let summary = host.run_once(&calm, &RunOptions::default()).unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
}
