//! The web console in a real browser (Chromium over WebDriver) against the
//! real daemon, signing in through a real OpenID provider: the pages an
//! administrator walks through, what a viewer sees, a script-bearing name
//! shown as text, and a screenshot of each page kept as a test artefact.

use std::path::Path;
use std::time::Duration;

use connector_e2e::browser::Browser;
use connector_e2e::console_client::{SCRIPT_NAME, give_dave_a_script_name};
use connector_e2e::daemon_process::DaemonProcess;
use connector_e2e::dovecot::free_port;
use connector_e2e::oidc_provider::{OidcClient, OidcConfig, OidcProvider, OidcUser};
use connector_e2e::ops::*;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_connector-cli");
const CLIENT_SECRET: &str = "console-client-secret";

fn user(name: &str, groups: &[&str]) -> OidcUser {
    OidcUser {
        sub: name.into(),
        email: format!("{name}@example.test"),
        name: name.into(),
        password: format!("{name}-password"),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// A provider, and a daemon whose console signs in through it, running a
/// chat-export connector whose `room-ext` items wait in the quarantine.
struct Setup {
    _tmp: tempfile::TempDir,
    provider: OidcProvider,
    chat: ChatSetup,
    daemon: DaemonProcess,
    base: String,
}

/// A provider, and a daemon over `state` running `sources` (connector
/// files or folders) whose console signs in through it; `console_extra`
/// is added to the console file.
fn start_console(
    dir: &Path,
    state: &Path,
    sources: &[&Path],
    console_extra: &str,
) -> (OidcProvider, DaemonProcess, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let provider = OidcProvider::start(&OidcConfig {
        clients: vec![OidcClient {
            client_id: "connector-console".into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uris: vec![format!("{base}/signin/callback")],
            post_logout_redirect_uris: vec![],
        }],
        users: vec![
            user("admin", &["compliance-admins"]),
            user("viewer", &["compliance-staff"]),
            user("stranger", &["marketing"]),
        ],
    });
    let console = connector_e2e::write_file(
        dir,
        "console.toml",
        &format!(
            r#"public-url = "{base}"
{console_extra}
[secrets]
from = "env"
prefix = "CONSOLE_"
[oidc]
issuer = "{issuer}"
client-id = "connector-console"
client-secret = "oidc-secret"
scopes = ["email", "profile", "groups"]
[oidc.roles]
compliance-admins = ["connector-admin", "auditor"]
compliance-staff = ["viewer"]
"#,
            issuer = provider.issuer()
        ),
    );
    let daemon = DaemonProcess::start_with_console(
        Path::new(BIN),
        &["--state-dir".into(), state.as_os_str().to_owned()],
        &format!("127.0.0.1:{port}"),
        &console,
        sources,
        &[("CONSOLE_OIDC_SECRET", CLIENT_SECRET)],
        &dir.join("daemon.log"),
    );
    (provider, daemon, base)
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let chat = chat_setup(tmp.path(), "chat", 30, 10, "24h");
    give_dave_a_script_name(&chat);
    let (provider, daemon, base) = start_console(tmp.path(), &chat.state, &[&chat.config], "");
    wait_for(Duration::from_secs(90), "the first run", || {
        (daemon.connector("chat")["last_run"]["outcome"] == "succeeded").then_some(())
    });
    Setup {
        _tmp: tmp,
        provider,
        chat,
        daemon,
        base,
    }
}

/// Opens the console, follows it to the provider, signs in there and
/// comes back signed in.
fn sign_in(browser: &Browser, s: &Setup, name: &str) {
    sign_in_at(browser, &s.base, &s.provider, name);
}

fn sign_in_at(browser: &Browser, base: &str, provider: &OidcProvider, name: &str) {
    browser.goto(&format!("{base}/"));
    browser.wait_for_url("the sign-in page", |u| u.contains("/signin"));
    browser.click("a.button");
    browser.wait_for_url("the provider's login page", |u| {
        u.starts_with(&provider.issuer())
    });
    browser.fill("username", &format!("{name}@example.test"));
    browser.fill("password", &format!("{name}-password"));
    browser.click_button("Sign in");
}

#[test]
fn an_administrator_signs_in_through_the_provider_and_walks_the_console() {
    let s = setup();
    let browser = Browser::start();
    sign_in(&browser, &s, "admin");
    browser.wait_for_text("Data connectors");
    browser.wait_for_url("the connectors page", |u| u == format!("{}/", s.base));
    let text = browser.page_text();
    assert!(
        text.contains("admin@example.test (connector-admin, auditor)"),
        "{text}"
    );
    let session = browser
        .cookies()
        .into_iter()
        .find(|c| c.name == "connector_session")
        .expect("a session cookie");
    assert!(session.http_only && session.secure, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Strict"));
    browser.screenshot("console-data-connectors");

    browser.click("a[href='/connectors/chat']");
    browser.wait_for_text("Properties");
    assert!(browser.page_text().contains("maildir at"));
    browser.screenshot("console-connector");

    // The log behind the link is `connector log`'s CSV.
    let csv = browser.run_script(
        "return fetch(document.querySelector('a[download]').href).then(r => r.text());",
        vec![],
    );
    let expected = connector_ok(Path::new(BIN), &s.chat.state, &["log", "1"]);
    assert_eq!(csv.as_str().unwrap().trim_end(), expected.trim_end());

    browser.click("a[href$='/reconciliation']");
    browser.wait_for_text("Per mailbox and day");
    browser.screenshot("console-reconciliation");

    browser.goto(&format!("{}/connectors/chat/quarantine", s.base));
    browser.wait_for_text("Quarantine of chat");
    let text = browser.page_text();
    assert!(text.contains(SCRIPT_NAME), "the name shows as text: {text}");
    // Had the name run as script, its alert would now be open and the
    // next WebDriver command would fail with "unexpected alert open".
    assert_eq!(browser.run_script("return 1 + 1;", vec![]), json!(2));
    browser.screenshot("console-quarantine");

    // Fix the mapping in the console, then redeliver (the confirmation
    // answered yes).
    browser.click("a[href='/connectors/chat/mapping']");
    browser.wait_for_text("Mapping of chat");
    let users = std::fs::read_to_string(&s.chat.users_csv).unwrap();
    browser.fill("csv", &format!("{users}u-dave,dave@example.test\n"));
    browser.click_button("Save mapping");
    browser.wait_for_text("Saved.");
    browser.screenshot("console-mapping");
    browser.goto(&format!("{}/connectors/chat/quarantine", s.base));
    browser.wait_for_text("Quarantine of chat");
    browser.run_script("window.confirm = () => true;", vec![]);
    browser.click_button("Redeliver");
    browser.wait_for_text("Redelivered");
    let released = s.chat.truth.quarantined.len();
    assert!(
        browser
            .page_text()
            .contains(&format!("Released from the quarantine\n{released}")),
        "{}",
        browser.page_text()
    );
    browser.screenshot("console-redelivered");
    assert_eq!(s.daemon.connector("chat")["in_quarantine"], 0);

    // Pause, resume and run now from the connector's page.
    browser.goto(&format!("{}/connectors/chat", s.base));
    browser.click_button("Pause");
    browser.wait_until("the paused badge", |b| {
        b.page_source()
            .contains(r#"data-paused="admin@example.test""#)
            .then_some(())
    });
    browser.screenshot("console-connector-paused");
    browser.click_button("Resume");
    browser.wait_for_text("Run now");
    browser.click_button("Run now");
    wait_for(Duration::from_secs(60), "the run asked for", || {
        let succeeded = &s.daemon.connector("chat")["totals"]["runs_by_outcome"]["succeeded"];
        (succeeded.as_u64()? >= 2).then_some(())
    });

    // Everything above is in the audit trail, and the chain holds.
    browser.click("a[href='/audit']");
    browser.wait_for_text("Chain intact");
    let trail = browser.page_text();
    for action in [
        "sign-in",
        "log-downloaded",
        "redelivered",
        "paused",
        "resumed",
        "run-started",
        "mapping-changed",
    ] {
        assert!(trail.contains(action), "{action} in {trail}");
    }
    assert!(trail.contains("admin@example.test"), "{trail}");
    browser.screenshot("console-audit-trail");
    let verified = connector_ok(Path::new(BIN), &s.chat.state, &["audit", "verify"]);
    assert!(verified.contains("audit trail OK"), "{verified}");

    browser.click_button("Sign out");
    browser.wait_for_url("the sign-in page", |u| u.contains("/signin"));
    browser.goto(&format!("{}/connectors/chat", s.base));
    browser.wait_for_url("the sign-in page again", |u| u.contains("/signin?next="));
}

#[test]
fn a_viewer_sees_no_change_buttons_and_a_user_without_a_role_is_refused() {
    let s = setup();
    let browser = Browser::start();
    sign_in(&browser, &s, "viewer");
    browser.wait_for_text("Data connectors");
    browser.goto(&format!("{}/connectors/chat", s.base));
    browser.wait_for_text("Runs");
    let source = browser.page_source();
    assert!(
        !source.contains("/redeliver"),
        "no change buttons for a viewer"
    );
    assert!(!source.contains("/reconciliation"));
    browser.goto(&format!("{}/connectors/chat/quarantine", s.base));
    browser.wait_for_text("Not allowed");
    assert!(browser.page_text().contains("may not see the quarantine"));
    browser.screenshot("console-viewer-refused");

    let stranger = Browser::start();
    sign_in(&stranger, &s, "stranger");
    stranger.wait_for_text("none of their groups (marketing) gives a role");
    assert!(
        stranger
            .cookies()
            .iter()
            .all(|c| c.name != "connector_session"),
        "no session without a role"
    );
}

/// The rows of the mapping preview: id, name, e-mail, mailbox.
fn preview_rows(browser: &Browser) -> Vec<Vec<String>> {
    let rows = browser.run_script(
        "return [...document.querySelectorAll('#preview tbody tr')].map(r => [...r.cells].map(c => c.innerText.trim()));",
        vec![],
    );
    serde_json::from_value(rows).unwrap()
}

#[test]
fn an_administrator_adds_a_symphony_connector_with_the_wizard_runs_it_and_edits_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let sim = symphony_sim::start_blocking(
        symphony_sim::SimConfig::builder()
            .seed(7)
            .messages(60)
            .large_attachment_bytes(0)
            .membership(symphony_sim::Membership::All)
            .build(),
    )
    .expect("the simulator starts");
    let pod = sim.base_url();
    connector_e2e::install_plugin(
        "symphony",
        "plugins/symphony/manifest.toml",
        &root.join("plugins/symphony"),
    );
    let secrets = connector_e2e::symphony::write_symphony_secrets(root, "");
    let folder = root.join("connectors");
    std::fs::create_dir_all(&folder).unwrap();
    let state = root.join("state");
    let (provider, daemon, base) = start_console(
        root,
        &state,
        &[&folder],
        "[connectors]\nplugins = \"plugins\"\nfolder = \"connectors\"",
    );
    let browser = Browser::start();
    sign_in_at(&browser, &base, &provider, "admin");
    browser.wait_for_text("Data connectors");

    // Choose the plugin: its description and permissions.
    browser.click("#add-connector");
    browser.wait_for_text("Choose the source to archive");
    browser.screenshot("wizard-plugins");
    browser.click("tr[data-plugin='symphony'] button");
    browser.wait_for_text("What Symphony asks to be allowed");
    assert!(
        browser
            .page_text()
            .contains("private-key (the plugin never sees them)")
    );
    // Going on without accepting is refused.
    browser.fill("hosts", &pod);
    browser.click_button("Next");
    browser.wait_for_text("Accept the permissions to go on");
    browser.click("input[name='secrets-from'][value='file']");
    browser.fill("secrets-path", secrets.to_str().unwrap());
    browser.click("input[name='accept']");
    browser.screenshot("wizard-permissions");
    browser.click_button("Next");

    browser.wait_for_text("Schedule");
    browser.fill("id", "pod-archive");
    browser.click_button("Next");

    // The settings form comes from the plugin's schema; the plugin's own
    // check refuses what it does not take.
    browser.wait_for_text("Service account");
    for field in ["pod_url", "agent_url", "key_manager_url"] {
        browser.fill(&format!("setting-{field}"), &pod);
    }
    browser.fill("setting-username", symphony_sim::TEST_USERNAME);
    browser.fill("setting-page_size", "20");
    browser.fill("setting-events_tag", &"t".repeat(81));
    browser.click_button("Next");
    browser.wait_for_text("The plugin does not take these settings");
    assert!(
        browser
            .page_text()
            .contains("events_tag must have 1 to 80 characters")
    );
    browser.fill("setting-events_tag", "");
    browser.screenshot("wizard-settings");
    browser.click_button("Next");

    browser.wait_for_text("Where the mail goes");
    let mail = root.join("mail");
    browser.fill(
        "settings",
        &format!("path = \"{}\"\nfsync = false", mail.display()),
    );
    browser.click_button("Next");

    // The mapping: a preview of the source's people, then an override.
    browser.wait_for_text("Map people automatically");
    browser.fill("domains", "acme-capital.example");
    browser.click_button("Preview people");
    browser.wait_for_text("The source's people");
    let rows = preview_rows(&browser);
    assert!(rows.len() >= 2, "{rows:?}");
    let mapped = rows
        .iter()
        .filter(|r| r[3].ends_with("@acme-capital.example"))
        .count();
    assert!(mapped >= 1, "people of the domain map by e-mail: {rows:?}");
    let person = rows[0][0].clone();
    // The override comes as a file, uploaded into the user map's box.
    let csv = connector_e2e::write_file(
        root,
        "legal-hold.csv",
        &format!("ExternalUserId,Mailbox\n{person},legal-hold@acme-capital.example\n"),
    );
    browser.upload("input[data-fills='csv']", &csv);
    browser.wait_until("the uploaded CSV in the box", |b| {
        let value = b.run_script("return document.querySelector('[name=csv]').value;", vec![]);
        value.as_str()?.contains("legal-hold@").then_some(())
    });
    browser.click_button("Preview people");
    // The page before showed a preview too: wait for the new one.
    browser.wait_until("the override in the preview", |b| {
        preview_rows(b)
            .iter()
            .any(|r| r[0] == person && r[3] == "legal-hold@acme-capital.example")
            .then_some(())
    });
    browser.screenshot("wizard-mapping");
    browser.click_button("Next");

    browser.wait_for_text("Checked as connector validate checks it");
    browser.screenshot("wizard-review");
    browser.click_button("Finish");
    browser.wait_for_url("the new connector's page", |u| {
        u.ends_with("/connectors/pod-archive")
    });
    browser.wait_for_text("Properties");

    // The file is one `connector validate` accepts, and the daemon runs it.
    let file = folder.join("pod-archive.toml");
    let validated = connector_ok(
        Path::new(BIN),
        &state,
        &["validate", file.to_str().unwrap()],
    );
    assert!(validated.contains("pod-archive"), "{validated}");
    browser.click_button("Run now");
    wait_for(
        Duration::from_secs(120),
        "the wizard's connector to run",
        || (daemon.connector("pod-archive")["last_run"]["outcome"] == "succeeded").then_some(()),
    );
    let imported = daemon.connector("pod-archive")["last_run"]["counts"]["imported"].clone();
    assert!(imported.as_u64().unwrap_or(0) > 0, "{imported}");
    assert!(
        mail.join("legal-hold@acme-capital.example").is_dir(),
        "the override's mailbox"
    );

    // Edit: a new page size, shown as a change before it is written.
    browser.click("#edit-connector");
    browser.wait_for_text("What Symphony asks to be allowed");
    browser.goto(&format!(
        "{}/settings",
        browser.current_url().trim_end_matches("/permissions")
    ));
    browser.wait_for_text("Service account");
    browser.fill("setting-page_size", "50");
    browser.click_button("Next");
    browser.wait_for_text("Where the mail goes");
    browser.click_button("Next");
    browser.wait_for_text("Map people automatically");
    browser.click_button("Next");
    browser.wait_for_text("What changes");
    let diff = browser.page_text();
    assert!(
        diff.contains("+page_size = 50") && diff.contains("-page_size = 20"),
        "{diff}"
    );
    browser.click_button("Finish");
    browser.wait_for_url("the connector's page", |u| {
        u.ends_with("/connectors/pod-archive")
    });
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("page_size = 50")
    );

    browser.goto(&format!("{base}/audit"));
    browser.wait_for_text("Chain intact");
    let trail = browser.page_text();
    assert!(
        trail.contains("connector-created") && trail.contains("connector-changed"),
        "{trail}"
    );
    let verified = connector_ok(Path::new(BIN), &state, &["audit", "verify"]);
    assert!(verified.contains("audit trail OK"), "{verified}");
}
