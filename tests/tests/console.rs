//! The web console over real HTTP against the real daemon: sign-in with
//! local accounts, sessions and their cookie flags, roles refused by a
//! direct POST, CSRF and origin checks, sign-in throttling, security
//! headers, escaping, the log download and redelivery after a mapping fix.

use std::path::Path;
use std::time::Duration;

use connector_e2e::console_client::{
    ConsoleClient, SCRIPT_NAME, TEST_PASSWORD, console_file, give_dave_a_script_name,
};
use connector_e2e::daemon_process::DaemonProcess;
use connector_e2e::ops::*;

const BIN: &str = env!("CARGO_BIN_EXE_connector-cli");

/// A chat-export connector whose `room-ext` messages are quarantined (dave
/// has no mailbox), a daemon serving the console with an admin, a viewer
/// and an auditor, and the connector's first run done.
struct Console {
    chat: ChatSetup,
    daemon: DaemonProcess,
    base: String,
}

fn start(console_extra: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, Console) {
    let (tmp, console) = start_unwaited(console_extra, env);
    wait_for(Duration::from_secs(90), "the first run", || {
        let c = console.daemon.connector("chat");
        (c["last_run"]["outcome"] == "succeeded").then_some(())
    });
    (tmp, console)
}

/// Like [`start`], not waiting for the first run.
fn start_unwaited(console_extra: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, Console) {
    start_following(console_extra, env, None)
}

/// Like [`start_unwaited`], the daemon also following the folder
/// `folder` (made under the test's folder) when given.
fn start_following(
    console_extra: &str,
    env: &[(&str, &str)],
    folder: Option<&str>,
) -> (tempfile::TempDir, Console) {
    let tmp = tempfile::tempdir().unwrap();
    let chat = chat_setup(tmp.path(), "chat", 30, 10, "24h");
    give_dave_a_script_name(&chat);
    let console = console_file(
        Path::new(BIN),
        tmp.path(),
        &[
            ("admin", &["connector-admin"]),
            ("viewer", &["viewer"]),
            ("auditor", &["auditor"]),
        ],
        console_extra,
    );
    let followed = folder.map(|f| tmp.path().join(f));
    let mut sources = vec![chat.config.as_path()];
    if let Some(f) = &followed {
        std::fs::create_dir_all(f).unwrap();
        sources.push(f);
    }
    let daemon = DaemonProcess::start_with_console(
        Path::new(BIN),
        &["--state-dir".into(), chat.state.as_os_str().to_owned()],
        "127.0.0.1:0",
        &console,
        &sources,
        env,
        &tmp.path().join("daemon.log"),
    );
    let base = format!("http://{}", daemon.addr());
    (tmp, Console { chat, daemon, base })
}

fn signed_in(base: &str, name: &str) -> ConsoleClient {
    let mut client = ConsoleClient::new(base);
    let answer = client.sign_in(name, TEST_PASSWORD);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(client.has_session());
    client
}

#[test]
fn pages_need_a_session_and_the_machine_endpoints_answer_without_one() {
    let (_tmp, c) = start("", &[]);
    let mut anon = ConsoleClient::new(&c.base);
    for page in ["/", "/connectors/chat", "/connectors/chat/quarantine"] {
        let answer = anon.get(page);
        assert_eq!(answer.status, 303, "{page}");
        let to = answer.header("location").unwrap();
        assert!(to.starts_with("/signin?next="), "{page} → {to}");
    }
    let post = anon.post("/connectors/chat/redeliver", &[("csrf", "x")], &[]);
    assert_eq!(post.status, 401, "{}", post.body);
    assert!(post.body.contains("sign in and try again"), "{}", post.body);
    for endpoint in ["/healthz", "/metrics", "/status.json"] {
        assert_eq!(anon.get(endpoint).status, 200, "{endpoint}");
    }
    c.daemon.terminate();
}

#[test]
fn a_local_account_signs_in_with_an_httponly_secure_strict_cookie_and_signs_out() {
    let (_tmp, c) = start("", &[]);
    let mut client = ConsoleClient::new(&c.base);
    let answer = client.sign_in("admin", TEST_PASSWORD);
    let cookie = answer.header("set-cookie").expect("a session cookie");
    for flag in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    let list = client.get("/");
    assert_eq!(list.status, 200);
    assert!(
        list.body
            .contains(r#"data-connector="chat" data-state="idle""#),
        "{}",
        list.body
    );
    assert!(list.body.contains(r#"data-user="admin""#));
    assert!(list.header("set-cookie").is_none(), "pages set no cookie");
    let token = client.session().unwrap().to_string();
    let csrf = list.csrf().expect("the sign-out form's token");
    let out = client.post("/signout", &[("csrf", &csrf)], &[]);
    assert_eq!(out.status, 303);
    assert!(!client.has_session(), "sign-out removes the cookie");
    // The old session is gone on the server too.
    let mut replay = ConsoleClient::new(&c.base);
    replay.set_session(&token);
    assert_eq!(replay.get("/").status, 303);
    let wrong = ConsoleClient::new(&c.base).sign_in("admin", "not the password");
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Wrong account or password"));
    c.daemon.terminate();
}

#[test]
fn a_viewer_sees_the_connectors_but_is_refused_every_change_even_by_a_direct_post() {
    let (_tmp, c) = start("", &[]);
    let mut viewer = signed_in(&c.base, "viewer");
    let page = viewer.get("/connectors/chat");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Download log"));
    let csrf = page.csrf().expect("the sign-out form carries the token");
    let refused = viewer.post("/connectors/chat/redeliver", &[("csrf", &csrf)], &[]);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("may not change connectors")
            && refused.body.contains("connector-admin"),
        "{}",
        refused.body
    );
    assert_eq!(viewer.get("/connectors/chat/quarantine").status, 403);
    let reconciliation = viewer.get("/connectors/chat/runs/1/reconciliation");
    assert_eq!(reconciliation.status, 403);
    let quarantined = c.daemon.connector("chat")["in_quarantine"].clone();
    assert!(quarantined.as_u64().unwrap() > 0);
    assert_eq!(c.daemon.connector("chat")["in_quarantine"], quarantined);
    // The auditor reads the quarantine and the reconciliation, changes nothing.
    let mut auditor = signed_in(&c.base, "auditor");
    assert_eq!(auditor.get("/connectors/chat/quarantine").status, 200);
    assert_eq!(
        auditor.get("/connectors/chat/runs/1/reconciliation").status,
        200
    );
    let csrf = auditor.get("/").csrf().unwrap();
    assert_eq!(
        auditor
            .post("/connectors/chat/redeliver", &[("csrf", &csrf)], &[])
            .status,
        403
    );
    c.daemon.terminate();
}

#[test]
fn a_post_without_the_csrf_token_or_from_another_origin_is_refused_and_changes_nothing() {
    let (_tmp, c) = start("", &[]);
    let mut admin = signed_in(&c.base, "admin");
    let runs_before = c.daemon.connector("chat")["totals"].clone();
    let missing = admin.post("/connectors/chat/redeliver", &[], &[]);
    assert_eq!(missing.status, 403);
    assert!(missing.body.contains("security token"), "{}", missing.body);
    let wrong = admin.post("/connectors/chat/redeliver", &[("csrf", "forged")], &[]);
    assert_eq!(wrong.status, 403);
    let csrf = admin.get("/connectors/chat/quarantine").csrf().unwrap();
    let foreign = admin.post(
        "/connectors/chat/redeliver",
        &[("csrf", &csrf)],
        &[("Origin", "https://attacker.example")],
    );
    assert_eq!(foreign.status, 403);
    assert!(foreign.body.contains("another site"), "{}", foreign.body);
    assert_eq!(c.daemon.connector("chat")["totals"], runs_before);
    c.daemon.terminate();
}

#[test]
fn failed_sign_ins_are_limited_for_the_account_and_the_address() {
    let (_tmp, c) = start("", &[]);
    for _ in 0..5 {
        let answer = ConsoleClient::new(&c.base).sign_in("admin", "guess");
        assert_eq!(answer.status, 401);
    }
    let held = ConsoleClient::new(&c.base).sign_in("admin", TEST_PASSWORD);
    assert_eq!(held.status, 429, "the right password waits too");
    assert!(held.header("retry-after").is_some());
    assert!(
        held.body.contains("Too many failed sign-ins"),
        "{}",
        held.body
    );
    // The address is held as well, for every account.
    let other = ConsoleClient::new(&c.base).sign_in("viewer", TEST_PASSWORD);
    assert_eq!(other.status, 429);
    c.daemon.terminate();
}

#[test]
fn every_page_has_the_security_headers_and_no_inline_script_and_names_are_escaped() {
    let (_tmp, c) = start("", &[]);
    let mut admin = signed_in(&c.base, "admin");
    for path in [
        "/",
        "/connectors/chat",
        "/connectors/chat/quarantine",
        "/connectors/chat/runs/1/reconciliation",
        "/signin",
    ] {
        let page = admin.get(path);
        assert_eq!(page.status, 200, "{path}");
        let csp = page.header("content-security-policy").unwrap_or("");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(page.header("cache-control"), Some("no-store"));
        for (at, _) in page.body.match_indices("<script") {
            let tag = &page.body[at..at + page.body[at..].find('>').unwrap()];
            assert!(
                tag.contains("src=\"/assets/"),
                "{path}: inline script {tag}"
            );
        }
        assert!(!page.body.contains(" style="), "{path}: inline style");
    }
    let quarantine = admin.get("/connectors/chat/quarantine");
    assert!(
        quarantine
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the name is shown as text: {}",
        quarantine.body
    );
    assert!(!quarantine.body.contains(SCRIPT_NAME));
    c.daemon.terminate();
}

#[test]
fn the_downloaded_log_is_the_csv_that_connector_log_writes() {
    let (tmp, c) = start("", &[]);
    let mut viewer = signed_in(&c.base, "viewer");
    let download = viewer.get("/connectors/chat/runs/1/log.csv");
    assert_eq!(download.status, 200);
    assert!(
        download
            .header("content-disposition")
            .is_some_and(|d| d.contains("attachment") && d.contains("chat-run-1.csv"))
    );
    let out = tmp.path().join("log.csv");
    connector_ok(
        Path::new(BIN),
        &c.chat.state,
        &["log", "1", "--out", out.to_str().unwrap()],
    );
    assert_eq!(download.body, std::fs::read_to_string(&out).unwrap());
    assert!(download.body.contains("unmapped"), "{}", download.body);
    // Another connector's run is not served under this one.
    assert_eq!(viewer.get("/connectors/other/runs/1/log.csv").status, 500);
    c.daemon.terminate();
}

#[test]
fn a_mapping_fix_then_redeliver_from_the_console_delivers_the_quarantined_items_once() {
    let (_tmp, c) = start("", &[]);
    let mut admin = signed_in(&c.base, "admin");
    let quarantined = c.daemon.connector("chat")["in_quarantine"]
        .as_u64()
        .unwrap();
    assert_eq!(quarantined as usize, c.chat.truth.quarantined.len());
    // The mapping is fixed in the console: a CSV that does not parse is
    // refused and changes nothing; a good one is saved and recorded.
    let before = std::fs::read_to_string(&c.chat.users_csv).unwrap();
    let mapping = admin.get("/connectors/chat/mapping");
    assert!(
        mapping.body.contains("u-carol,carol@example.test"),
        "{}",
        mapping.body
    );
    let csrf = mapping.csrf().unwrap();
    let bad = admin.post(
        "/connectors/chat/mapping",
        &[
            ("csrf", &csrf),
            ("csv", "ExternalUserId,Mailbox\nu-dave,not an address\n"),
        ],
        &[],
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("line 2"), "{}", bad.body);
    assert_eq!(std::fs::read_to_string(&c.chat.users_csv).unwrap(), before);
    let mut viewer = signed_in(&c.base, "viewer");
    let viewer_csrf = viewer.get("/").csrf().unwrap();
    let refused = viewer.post(
        "/connectors/chat/mapping",
        &[("csrf", &viewer_csrf), ("csv", "ExternalUserId,Mailbox\n")],
        &[],
    );
    assert_eq!(refused.status, 403);
    let fixed = format!("{before}u-dave,dave@example.test\n");
    let saved = admin.post(
        "/connectors/chat/mapping",
        &[("csrf", &csrf), ("csv", &fixed)],
        &[],
    );
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(std::fs::read_to_string(&c.chat.users_csv).unwrap(), fixed);
    for round in 0..2 {
        let csrf = admin.get("/connectors/chat/quarantine").csrf().unwrap();
        let done = admin.post("/connectors/chat/redeliver", &[("csrf", &csrf)], &[]);
        assert_eq!(done.status, 200, "{}", done.body);
        let released = if round == 0 { quarantined } else { 0 };
        assert!(
            done.body.contains(&format!(
                "<dt>Released from the quarantine</dt><dd>{released}</dd>"
            )),
            "round {round}: {}",
            done.body
        );
    }
    assert_eq!(c.daemon.connector("chat")["in_quarantine"], 0);
    let dave = mailbox_contents(&c.chat.mail, CHAT_FOLDER_ON_DISK)
        .remove("dave@example.test")
        .unwrap_or_default();
    let mut expected: Vec<String> = c
        .chat
        .truth
        .quarantined
        .iter()
        .map(|id| chat_message_id(id))
        .collect();
    expected.sort();
    let mut got = dave.clone();
    got.sort();
    assert_eq!(got, expected, "each once, none twice");
    let trail = connector_ok(
        Path::new(BIN),
        &c.chat.state,
        &["audit", "export", "--format", "json"],
    );
    let trail: serde_json::Value = serde_json::from_str(&trail).unwrap();
    let change = trail
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "mapping-changed")
        .expect("the mapping change is recorded");
    assert_eq!(change["actor"], "admin");
    assert_eq!(change["detail"], "+u-dave,dave@example.test");
    c.daemon.terminate();
}

#[test]
fn a_machine_token_guards_healthz_metrics_and_status_json() {
    let (_tmp, c) = start_unwaited(
        "machine-token = \"metrics-token\"\n[secrets]\nfrom = \"env\"\nprefix = \"CONSOLE_\"\n",
        &[("CONSOLE_METRICS_TOKEN", "s3cret-token")],
    );
    let mut anon = ConsoleClient::new(&c.base);
    for endpoint in ["/healthz", "/metrics", "/status.json"] {
        let refused = anon.get(endpoint);
        assert_eq!(refused.status, 401, "{endpoint}");
        assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
        let wrong = anon.get_with(endpoint, &[("Authorization", "Bearer nope")]);
        assert_eq!(wrong.status, 401, "{endpoint}");
        let ok = anon.get_with(endpoint, &[("Authorization", "Bearer s3cret-token")]);
        assert_eq!(ok.status, 200, "{endpoint}");
    }
    drop(c.daemon);
}

#[test]
fn a_console_file_with_an_unknown_key_stops_the_daemon_with_the_key_named() {
    let tmp = tempfile::tempdir().unwrap();
    let chat = chat_setup(tmp.path(), "chat", 3, 10, "24h");
    let console = connector_e2e::write_file(
        tmp.path(),
        "console.toml",
        "accounts = \"accounts.toml\"\nsession-minute = 5\n",
    );
    let err = daemon_refused(&chat, &console);
    assert!(
        err.contains("unknown field `session-minute`") && err.contains("docs/console.md"),
        "{err}"
    );
}

#[test]
fn the_data_connectors_page_shows_each_connector_its_state_and_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let chat = chat_setup(tmp.path(), "chat-archive", 12, 4, "1h");
    let broken = misbehaving_config(
        tmp.path(),
        "broken-source",
        "pages = 2\nmode = \"trap\"\nat_page = 0",
        "0 3 * * *",
    );
    let console = console_file(Path::new(BIN), tmp.path(), &[("viewer", &["viewer"])], "");
    let daemon = DaemonProcess::start_with_console(
        Path::new(BIN),
        &["--state-dir".into(), chat.state.as_os_str().to_owned()],
        "127.0.0.1:0",
        &console,
        &[&chat.config, &broken],
        &[],
        &tmp.path().join("daemon.log"),
    );
    wait_for(
        Duration::from_secs(90),
        "both connectors to have run",
        || {
            let s = daemon.status();
            let states: Vec<&str> = s["connectors"]
                .as_array()?
                .iter()
                .map(|c| c["state"].as_str().unwrap_or(""))
                .collect();
            (states == ["idle", "failing"]).then_some(())
        },
    );
    let mut viewer = signed_in(&format!("http://{}", daemon.addr()), "viewer");
    let page = viewer.get("/");
    for needle in [
        "<title>Data connectors · Connectors</title>",
        r#"data-connector="chat-archive" data-state="idle""#,
        r#"data-connector="broken-source" data-state="failing""#,
        r#"<span class="state state-idle" data-state="idle">idle</span>"#,
        r#"<span class="state state-failing" data-state="failing">failing</span>"#,
        "What to do: ",
        "0 3 * * *",
    ] {
        assert!(
            page.body.contains(needle),
            "the page lacks {needle}:\n{}",
            page.body
        );
    }
    daemon.terminate();
}

#[test]
fn an_admin_pauses_resumes_and_runs_now_and_the_auditor_sees_each_action_in_a_verified_trail() {
    let (_tmp, c) = start("", &[]);
    let mut admin = signed_in(&c.base, "admin");
    let post = |client: &mut ConsoleClient, action: &str| {
        let csrf = client.get("/connectors/chat").csrf().unwrap();
        client.post(
            &format!("/connectors/chat/{action}"),
            &[("csrf", &csrf)],
            &[],
        )
    };
    assert_eq!(post(&mut admin, "pause").status, 303);
    assert_eq!(c.daemon.connector("chat")["paused"]["by"], "admin");
    let list = admin.get("/");
    assert!(
        list.body.contains(r#"data-paused="admin""#),
        "{}",
        list.body
    );
    assert!(list.body.contains(">Resume</button>") && !list.body.contains(">Run now</button>"));
    let refused = post(&mut admin, "run");
    assert_eq!(refused.status, 409);
    assert!(refused.body.contains("resume it first"), "{}", refused.body);
    assert_eq!(post(&mut admin, "resume").status, 303);
    assert!(c.daemon.connector("chat")["paused"].is_null());
    assert_eq!(post(&mut admin, "run").status, 303);
    wait_for(Duration::from_secs(60), "the run asked for", || {
        let succeeded = &c.daemon.connector("chat")["totals"]["runs_by_outcome"]["succeeded"];
        (succeeded.as_u64()? >= 2).then_some(())
    });
    assert_eq!(admin.get("/connectors/chat/runs/1/log.csv").status, 200);
    // Admin actions are for auditors to see, not for admins or viewers.
    assert_eq!(admin.get("/audit").status, 403);
    assert_eq!(signed_in(&c.base, "viewer").get("/audit").status, 403);
    let mut auditor = signed_in(&c.base, "auditor");
    let trail = auditor.get("/audit");
    assert_eq!(trail.status, 200);
    assert!(
        trail.body.contains(r#"data-chain="intact""#),
        "{}",
        trail.body
    );
    for action in [
        "sign-in",
        "paused",
        "resumed",
        "run-started",
        "log-downloaded",
    ] {
        assert!(
            trail.body.contains(&format!(r#"data-action="{action}""#)),
            "{action} in {}",
            trail.body
        );
    }
    let only_admin = auditor.get("/audit?actor=admin&action=paused");
    assert_eq!(only_admin.body.matches("<tr data-action=").count(), 1);
    let csv = auditor.get("/audit.csv");
    assert!(csv.body.starts_with("Seq,Time,"), "{}", csv.body);
    assert!(
        csv.body.contains(",audit-exported,"),
        "the export is recorded"
    );
    let verified = connector_ok(Path::new(BIN), &c.chat.state, &["audit", "verify"]);
    assert!(verified.contains("audit trail OK"), "{verified}");

    // Someone with the database file changes record 2: the page and the
    // command both name it.
    let db = rusqlite::Connection::open(c.chat.state.join("state.db")).unwrap();
    db.execute_batch(
        "DROP TRIGGER audit_trail_no_update; UPDATE audit_trail SET actor = 'nobody' WHERE seq = 2;",
    )
    .unwrap();
    let trail = auditor.get("/audit");
    assert!(
        trail.body.contains(r#"data-chain="broken""#) && trail.body.contains("broken at record 2"),
        "{}",
        trail.body
    );
    let out = std::process::Command::new(BIN)
        .arg("--state-dir")
        .arg(&c.chat.state)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("broken at record 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.daemon.terminate();
}

#[test]
fn the_console_serves_https_from_its_certificate_files_and_refuses_plain_http() {
    let tmp = tempfile::tempdir().unwrap();
    let chat = chat_setup(tmp.path(), "chat", 3, 10, "24h");
    let (ca, cert, key) = connector_e2e::loopback_certificates().unwrap();
    std::fs::write(tmp.path().join("console.crt"), cert).unwrap();
    std::fs::write(tmp.path().join("console.key"), key).unwrap();
    let console = console_file(
        Path::new(BIN),
        tmp.path(),
        &[("viewer", &["viewer"])],
        "[tls]\ncertificate = \"console.crt\"\nkey = \"console.key\"\n",
    );
    let daemon = DaemonProcess::start_with_console(
        Path::new(BIN),
        &["--state-dir".into(), chat.state.as_os_str().to_owned()],
        "127.0.0.1:0",
        &console,
        &[&chat.config],
        &[],
        &tmp.path().join("daemon.log"),
    );
    let mut client =
        ConsoleClient::trusting(&format!("https://localhost:{}", port_of(&daemon)), &ca);
    assert_eq!(client.sign_in("viewer", TEST_PASSWORD).status, 200);
    assert_eq!(client.get("/").status, 200);
    assert_eq!(client.get("/healthz").status, 200);
    // Plain HTTP on the same port gets no page.
    assert!(http_get(daemon.addr(), "/healthz").map_or(true, |(code, _)| code != 200));
    drop(daemon);

    // A key that is no key stops the daemon, naming the file.
    std::fs::write(tmp.path().join("console.key"), "not a key\n").unwrap();
    let err = daemon_refused(&chat, &console);
    assert!(
        err.contains("console.key") && err.contains("[tls]"),
        "{err}"
    );
}

fn port_of(daemon: &DaemonProcess) -> u16 {
    daemon.addr().rsplit(':').next().unwrap().parse().unwrap()
}

/// What the daemon said when it refused to start with `console`.
fn daemon_refused(chat: &ChatSetup, console: &Path) -> String {
    let out = std::process::Command::new(BIN)
        .arg("--state-dir")
        .arg(&chat.state)
        .args(["daemon", "--listen", "127.0.0.1:0", "--console"])
        .arg(console)
        .arg(&chat.config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the daemon refuses to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const WIZARD: &str = "[connectors]\nplugins = \"plugins\"\nfolder = \"connectors\"\n";

#[test]
fn only_a_connector_admin_opens_the_wizard_and_a_draft_is_its_owners_alone() {
    let (tmp, c) = start_following(WIZARD, &[], Some("connectors"));
    connector_e2e::install_chat_export(&tmp.path().join("plugins/chat-export"));
    let mut viewer = signed_in(&c.base, "viewer");
    assert!(!viewer.get("/").body.contains("Add connector"));
    assert_eq!(viewer.get("/connectors/new").status, 403);
    let csrf = viewer.get("/").csrf().unwrap();
    let refused = viewer.post(
        "/connectors/new",
        &[("csrf", &csrf), ("plugin", "chat-export")],
        &[],
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    let edit = viewer.post("/connectors/chat/edit", &[("csrf", &csrf)], &[]);
    assert_eq!(edit.status, 403, "{}", edit.body);

    let mut admin = signed_in(&c.base, "admin");
    let list = admin.get("/connectors/new");
    assert!(
        list.body.contains(r#"data-plugin="chat-export""#),
        "{}",
        list.body
    );
    let csrf = list.csrf().unwrap();
    let started = admin.post(
        "/connectors/new",
        &[("csrf", &csrf), ("plugin", "chat-export")],
        &[],
    );
    assert_eq!(started.status, 303, "{}", started.body);
    let draft = started.header("location").unwrap().to_string();
    assert!(
        draft.starts_with("/wizard/") && draft.ends_with("/permissions"),
        "{draft}"
    );
    assert_eq!(admin.get(&draft).status, 200);
    // A viewer may neither open the draft nor post to it.
    assert_eq!(viewer.get(&draft).status, 403);
    let refused = viewer.post(&draft, &[("csrf", &csrf)], &[]);
    assert_eq!(refused.status, 403);
    // A step without the token is refused and changes nothing.
    let forged = admin.post(&draft, &[("accept", "yes")], &[]);
    assert_eq!(forged.status, 403);
    c.daemon.terminate();
}

/// A console following `connectors/` with the chat-export plugin
/// installed and an `export/` folder beside it, an admin signed in and a
/// draft of a chat-export connector started: the draft's permissions page
/// and the form token.
fn chat_export_draft() -> (tempfile::TempDir, Console, ConsoleClient, String, String) {
    let (tmp, c) = start_following(WIZARD, &[], Some("connectors"));
    connector_e2e::install_chat_export(&tmp.path().join("plugins/chat-export"));
    std::fs::create_dir_all(tmp.path().join("export")).unwrap();
    let mut admin = signed_in(&c.base, "admin");
    let csrf = admin.get("/connectors/new").csrf().unwrap();
    let started = admin.post(
        "/connectors/new",
        &[("csrf", &csrf), ("plugin", "chat-export")],
        &[],
    );
    let draft = started.header("location").unwrap().to_string();
    (tmp, c, admin, draft, csrf)
}

#[test]
fn a_relative_folder_grant_is_read_against_the_connector_files_folder_as_a_run_reads_it() {
    let (_tmp, c, mut admin, draft, csrf) = chat_export_draft();
    // `connectors/../export` exists; the daemon's own folder has no
    // `../export`.
    let missing = admin.post(
        &draft,
        &[
            ("csrf", &csrf),
            ("files", "/export = export"),
            ("accept", "yes"),
        ],
        &[],
    );
    assert_eq!(missing.status, 422, "{}", missing.body);
    assert!(missing.body.contains("does not exist"), "{}", missing.body);
    let granted = admin.post(
        &draft,
        &[
            ("csrf", &csrf),
            ("files", "/export = ../export"),
            ("accept", "yes"),
        ],
        &[],
    );
    assert_eq!(granted.status, 303, "{}", granted.body);
    c.daemon.terminate();
}

#[test]
fn a_settings_step_refused_field_by_field_shows_every_answer_again_as_typed() {
    let (tmp, c, mut admin, draft, csrf) = chat_export_draft();
    let step = |s: &str| draft.replace("/permissions", &format!("/{s}"));
    let grant = format!("/export = {}", tmp.path().join("export").display());
    for (path, fields) in [
        (
            draft.clone(),
            vec![("files", grant.as_str()), ("accept", "yes")],
        ),
        (step("name"), vec![("id", "desk"), ("schedule", "24h")]),
    ] {
        let mut fields = fields;
        fields.push(("csrf", &csrf));
        let done = admin.post(&path, &fields, &[]);
        assert_eq!(done.status, 303, "{path}: {}", done.body);
    }
    let refused = admin.post(
        &step("settings"),
        &[
            ("csrf", &csrf),
            ("setting-path", "/export/chat.jsonl"),
            ("setting-page_size", "0"),
        ],
        &[],
    );
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("Messages per page must be from 1 to 5000"),
        "{}",
        refused.body
    );
    // The answer that was right, and the one that was not, as typed.
    assert!(
        refused.body.contains(r#"value="/export/chat.jsonl""#),
        "{}",
        refused.body
    );
    assert!(refused.body.contains(r#"value="0""#), "{}", refused.body);
    c.daemon.terminate();
}

#[test]
fn a_daemon_whose_wizard_folder_it_does_not_follow_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let chat = chat_setup(tmp.path(), "chat", 3, 10, "24h");
    let console = console_file(
        Path::new(BIN),
        tmp.path(),
        &[("admin", &["connector-admin"])],
        WIZARD,
    );
    std::fs::create_dir_all(tmp.path().join("connectors")).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("--state-dir")
        .arg(&chat.state)
        .args(["daemon", "--listen", "127.0.0.1:0", "--console"])
        .arg(&console)
        .arg(&chat.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a folder this daemon follows") && err.contains("connectors"),
        "{err}"
    );
}
