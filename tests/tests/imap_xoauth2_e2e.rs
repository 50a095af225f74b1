//! The IMAP sink's XOAUTH2 app login as Exchange Online does it, against
//! a real Dovecot whose `oauth2` passdb checks each bearer token with the
//! introspection endpoint of a local identity platform
//! (`connector_e2e::identity_platform`) that also issues the tokens by
//! client credentials: the sink gets its own tokens and renews them
//! before they expire and when a server refuses one; a mailbox without
//! `Add-MailboxPermission` is refused alone and delivered by the
//! redelivery once the permission exists; every mailbox refusing stops
//! the run with the app-level error; a wrong client secret says what to
//! fix. Last, the identity platform's and Dovecot's own rules, each shown
//! refusing what Microsoft's documentation says is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use connector_e2e::chat_fixture::{
    ChatFixture, Paging, USERS, chat_fixture, connector_file, message_id_of,
};
use connector_e2e::dovecot::{Dovecot, DovecotOptions, ImapReader, XOAuth2Passdb};
use connector_e2e::identity_platform::{IdentityServer, TokenRules};
use connector_host::config::ConnectorConfig;
use connector_host::pipeline::{Host, RunOptions};
use connector_sink_imap::EXCHANGE_SCOPE;
use connector_state::RunOutcome;

const FOLDER: &str = "INBOX/Symphony";
const TENANT: &str = "example.test";
const CLIENT_ID: &str = "0a1b2c3d-1111-2222-3333-444455556666";
const SECRET: &str = "app~secret.value";
/// The mailboxes' domain: the app's tokens introspect as
/// `<client id>@example.test`.
const DOMAIN: &str = "example.test";
/// The life of Microsoft's app tokens.
const HOUR: Duration = Duration::from_secs(3599);

/// A local Exchange Online: the identity platform and Dovecot trusting it.
struct Exchange {
    identity: IdentityServer,
    dovecot: Dovecot,
}

/// Tokens that live `lifetime` and say they live `expires_in`; the app
/// without permission on `denied`; each token check takes `latency`.
fn exchange(
    lifetime: Duration,
    expires_in: Duration,
    denied: &[&str],
    latency: Duration,
) -> Exchange {
    let identity = IdentityServer::start(
        TokenRules {
            tenant: Some(TENANT.into()),
            lifetime,
            expires_in,
            ..TokenRules::new(CLIENT_ID, SECRET, EXCHANGE_SCOPE)
        },
        DOMAIN,
        latency,
    );
    let dovecot = Dovecot::start(DovecotOptions {
        users: USERS
            .iter()
            .map(|u| (u.to_string(), "unused-password".to_string()))
            .collect(),
        xoauth2: Some(XOAuth2Passdb {
            introspection_url: identity.introspection_url(),
            without_permission: denied.iter().map(|m| m.to_string()).collect(),
        }),
        ..DovecotOptions::default()
    });
    Exchange { identity, dovecot }
}

struct Setup {
    _tmp: tempfile::TempDir,
    config: ConnectorConfig,
    state: PathBuf,
    /// Mailbox → Message-IDs it must hold.
    expected: BTreeMap<String, BTreeSet<String>>,
}

/// A chat export of `n` messages read `page_size` at a time, imported into
/// `INBOX/Symphony` over XOAUTH2 as the app, with `secret` as its client
/// secret and `connections` connections (one makes every change of
/// mailbox a new login).
fn setup(ex: &Exchange, n: usize, page_size: u32, secret: &str, connections: usize) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let fixture = chat_fixture(root, n, None);
    let sink = format!(
        r#"[sink]
kind = "imap"
host = "127.0.0.1"
port = {port}
tls = "none"
auth = "xoauth2"
tenant = "{TENANT}"
client-id = "{CLIENT_ID}"
client-secret-secret = "imap-client-secret"
login-url = "{login}"
max-connections = {connections}
batch-messages = 20
timeout-secs = 30
"#,
        port = ex.dovecot.port(),
        login = ex.identity.login_url(),
    );
    let config = connector_file(
        root,
        "imap-xoauth2",
        &fixture,
        Paging {
            page_size,
            retries: 3,
        },
        &sink,
        &format!("imap-client-secret = \"{secret}\"\n"),
    );
    let ChatFixture { expected, .. } = fixture;
    Setup {
        config: ConnectorConfig::load(&config).unwrap(),
        state: root.join("state"),
        _tmp: tmp,
        expected,
    }
}

/// What each user's folder holds: its Message-IDs, each checked to be
/// there once.
fn held(dovecot: &Dovecot) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for user in USERS {
        let mut reader = ImapReader::login(dovecot.port(), user);
        let mut ids = BTreeSet::new();
        let messages = match reader
            .run("LIST \"\" \"INBOX/Symphony\"")
            .iter()
            .any(|r| r.starts_with(b"* LIST"))
        {
            true => reader.messages(FOLDER),
            false => Vec::new(),
        };
        for (_, bytes) in messages {
            let mid = message_id_of(&bytes);
            assert!(ids.insert(mid.clone()), "{user}: {mid} is there twice");
        }
        out.insert(user.to_string(), ids);
    }
    out
}

/// The expected Message-IDs with `left_out` mailboxes empty.
fn expected_without(s: &Setup, left_out: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    USERS
        .iter()
        .map(|u| {
            let ids = if left_out.contains(u) {
                BTreeSet::new()
            } else {
                s.expected.get(*u).cloned().unwrap_or_default()
            };
            (u.to_string(), ids)
        })
        .collect()
}

fn deliveries(s: &Setup) -> usize {
    s.expected.values().map(BTreeSet::len).sum()
}

/// Runs the connector, which must deliver everything once, refuse
/// nothing and outlive two tokens of `lifetime`; returns the host and how
/// long the run took.
fn run_outliving_tokens(ex: &Exchange, s: &Setup, lifetime: Duration) -> (Host, Duration) {
    let host = Host::open(&s.state).unwrap();
    let started = Instant::now();
    let summary = host.run_once(&s.config, &RunOptions::default()).unwrap();
    let took = started.elapsed();
    assert!(
        took > 2 * lifetime,
        "the run took {took:?}, too short to outlive a token: make the fixture bigger"
    );
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:?}");
    assert_eq!(
        summary.counts.imported as usize,
        deliveries(s),
        "{summary:?}"
    );
    assert_eq!(summary.counts.failed, 0, "{summary:?}");
    assert_eq!(host.db().quarantine_count("imap-xoauth2").unwrap(), 0);
    assert_eq!(held(&ex.dovecot), expected_without(s, &[]));
    (host, took)
}

/// Runs the connector again: it finds every email in its mailbox,
/// appends and refuses nothing; and no request broke the identity
/// platform's rules.
fn assert_rerun_adds_nothing(ex: &Exchange, s: &Setup, host: &Host) {
    let again = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(again.counts.imported, 0, "{again:?}");
    assert_eq!(again.counts.failed, 0, "{again:?}");
    assert_eq!(held(&ex.dovecot), expected_without(s, &[]));
    let violations = ex.identity.violations();
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn a_token_that_expires_mid_run_is_renewed_and_the_run_delivers_everything_exactly_once() {
    // Tokens that say how long they live: renewed before they expire, so
    // no login is ever refused.
    let lifetime = Duration::from_secs(2);
    let ex = exchange(lifetime, lifetime, &[], Duration::from_millis(60));
    let s = setup(&ex, 480, 10, SECRET, 1);
    let (host, took) = run_outliving_tokens(&ex, &s, lifetime);
    let issued = ex.identity.tokens_issued();
    let (refused, accepted) = ex.identity.introspections();
    assert!(
        issued as u128 >= took.as_millis() / lifetime.as_millis(),
        "{issued} token(s) in {took:?}"
    );
    assert_eq!(refused, 0, "a token was used after it expired");
    assert!(accepted > issued, "{accepted} logins, {issued} tokens");
    assert_rerun_adds_nothing(&ex, &s, &host);

    // Tokens that die long before they say (revoked, clock skew): each
    // refused login gets one new token and goes on.
    let lifetime = Duration::from_millis(1500);
    let ex = exchange(lifetime, HOUR, &[], Duration::from_millis(60));
    let s = setup(&ex, 480, 10, SECRET, 1);
    let (host, _) = run_outliving_tokens(&ex, &s, lifetime);
    let (refused, _) = ex.identity.introspections();
    let issued = ex.identity.tokens_issued();
    assert!(
        refused >= 1,
        "no token outlived its life: the run was too short"
    );
    assert_eq!(issued, refused + 1, "one new token per refused login");
    assert_rerun_adds_nothing(&ex, &s, &host);
}

#[test]
fn a_mailbox_the_token_may_not_open_is_refused_alone_and_a_rerun_after_the_grant_delivers_only_what_was_missing()
 {
    let bob = USERS[1];
    let mut ex = exchange(HOUR, HOUR, &[bob], Duration::ZERO);
    let s = setup(&ex, 60, 20, SECRET, 4);
    let host = Host::open(&s.state).unwrap();
    let summary = host.run_once(&s.config, &RunOptions::default()).unwrap();
    let for_bob = s.expected[bob].len();
    assert!(for_bob > 0);
    assert_eq!(summary.counts.failed as usize, for_bob, "{summary:?}");
    assert_eq!(
        summary.counts.imported as usize,
        deliveries(&s) - for_bob,
        "{summary:?}"
    );
    assert_eq!(held(&ex.dovecot), expected_without(&s, &[bob]));
    let quarantined = host.db().quarantine("imap-xoauth2").unwrap();
    assert_eq!(quarantined.len(), for_bob);
    let reason = &quarantined[0].reason;
    assert!(
        reason.contains(&format!(
            "Add-MailboxPermission -Identity {bob} -User <service principal id> -AccessRights FullAccess"
        )) && reason.contains(CLIENT_ID),
        "{reason}"
    );
    // Bob's refusal was judged once: one token, renewed once for him.
    assert_eq!(ex.identity.tokens_issued(), 2);

    // Granted: the redelivery brings bob what he lacks, and nothing else.
    ex.dovecot.grant_app_permission(bob);
    let redelivered = host.redeliver_quarantine(&s.config).unwrap();
    assert_eq!(
        redelivered.counts.imported as usize, for_bob,
        "{redelivered:?}"
    );
    assert_eq!(redelivered.counts.quarantined, 0, "{redelivered:?}");
    assert_eq!(held(&ex.dovecot), expected_without(&s, &[]));
    assert_rerun_adds_nothing(&ex, &s, &host);
}

/// Runs the connector, which must stop with an error saying each of
/// `said`, having quarantined and delivered nothing.
fn assert_run_stops_saying(ex: &Exchange, s: &Setup, said: &[&str]) {
    let host = Host::open(&s.state).unwrap();
    let e = match host.run_once(&s.config, &RunOptions::default()) {
        Err(e) => e.to_string(),
        Ok(summary) => panic!("the run went on: {summary:?}"),
    };
    for said in said {
        assert!(e.contains(said), "`{said}` missing from: {e}");
    }
    assert_eq!(host.db().quarantine_count("imap-xoauth2").unwrap(), 0);
    assert!(held(&ex.dovecot).values().all(BTreeSet::is_empty));
}

#[test]
fn every_mailbox_refused_stops_the_run_with_the_app_level_error() {
    let ex = exchange(HOUR, HOUR, &USERS, Duration::ZERO);
    let s = setup(&ex, 40, 20, SECRET, 4);
    assert_run_stops_saying(
        &ex,
        &s,
        &[
            "no mailbox has accepted the app's token",
            "IMAP.AccessAsApp",
            &format!("New-ServicePrincipal -AppId {CLIENT_ID}"),
            "Add-MailboxPermission",
        ],
    );
}

#[test]
fn a_wrong_client_secret_stops_the_run_saying_which_secret_to_fix() {
    let ex = exchange(HOUR, HOUR, &[], Duration::ZERO);
    let s = setup(&ex, 20, 20, "an-expired-secret", 4);
    assert_run_stops_saying(
        &ex,
        &s,
        &[
            "(401): invalid_client AADSTS7000215",
            "\"imap-client-secret\" = \"...\"",
            &format!("`client-id` ({CLIENT_ID})"),
            &format!("`tenant` ({TENANT})"),
        ],
    );
    assert_eq!(ex.identity.tokens_issued(), 0);
}

// ---- the stand-ins' own rules ------------------------------------------

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[test]
fn the_token_endpoint_refuses_what_the_identity_platform_refuses() {
    let identity = IdentityServer::start(
        TokenRules {
            tenant: Some(TENANT.into()),
            lifetime: Duration::from_millis(300),
            ..TokenRules::new(CLIENT_ID, SECRET, EXCHANGE_SCOPE)
        },
        DOMAIN,
        Duration::ZERO,
    );
    let path = format!("/{TENANT}/oauth2/v2.0/token");
    let good = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", SECRET),
        ("scope", EXCHANGE_SCOPE),
    ];
    let with = |key: &str, value: &str| -> String {
        let pairs: Vec<(&str, &str)> = good
            .iter()
            .map(|&(k, v)| if k == key { (k, value) } else { (k, v) })
            .collect();
        form(&pairs)
    };
    let form_type = "application/x-www-form-urlencoded";
    let refused = |(status, body): (u16, serde_json::Value)| -> (u16, String, String) {
        assert!(body["error_codes"].is_array(), "{body}");
        assert!(body["trace_id"].is_string() && body["correlation_id"].is_string());
        (
            status,
            body["error"].as_str().unwrap_or("").to_string(),
            body["error_description"].as_str().unwrap_or("").to_string(),
        )
    };

    // JSON instead of a form.
    let json = serde_json::json!({"grant_type": "client_credentials"}).to_string();
    let (status, error, text) = refused(identity.post(&path, "application/json", &json));
    assert_eq!((status, error.as_str()), (400, "invalid_request"), "{text}");
    assert!(text.starts_with("AADSTS900144"), "{text}");
    // An unknown tenant.
    let (status, error, text) =
        refused(identity.post("/other.example/oauth2/v2.0/token", form_type, &form(&good)));
    assert_eq!((status, error.as_str()), (400, "invalid_request"), "{text}");
    assert!(text.starts_with("AADSTS90002"), "{text}");
    // Another grant.
    let (status, error, _) =
        refused(identity.post(&path, form_type, &with("grant_type", "password")));
    assert_eq!((status, error.as_str()), (400, "unsupported_grant_type"));
    // A scope without `/.default`.
    let (status, error, text) = refused(identity.post(
        &path,
        form_type,
        &with("scope", "https://outlook.office365.com/IMAP.AccessAsApp"),
    ));
    assert_eq!((status, error.as_str()), (400, "invalid_scope"), "{text}");
    assert!(text.contains("/.default"), "{text}");
    // An unknown app.
    let (status, error, text) = refused(identity.post(
        &path,
        form_type,
        &with("client_id", "99999999-0000-0000-0000-000000000000"),
    ));
    assert_eq!(
        (status, error.as_str()),
        (400, "unauthorized_client"),
        "{text}"
    );
    assert!(text.starts_with("AADSTS700016"), "{text}");
    // A wrong secret.
    let (status, error, text) =
        refused(identity.post(&path, form_type, &with("client_secret", "wrong")));
    assert_eq!((status, error.as_str()), (401, "invalid_client"), "{text}");
    assert!(text.starts_with("AADSTS7000215"), "{text}");
    assert_eq!(identity.tokens_issued(), 0);

    // The right request: a Bearer token with its life in seconds.
    let (status, body) = identity.post(&path, form_type, &form(&good));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].is_u64(), "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    // Introspection: active while it lives, then not.
    let introspect = || {
        identity
            .post("/introspect", form_type, &form(&[("token", &token)]))
            .1
    };
    let live = introspect();
    assert_eq!(live["active"], true, "{live}");
    assert_eq!(live["username"], format!("{CLIENT_ID}@{DOMAIN}"));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(introspect()["active"], false);
    assert_eq!(
        identity
            .post("/introspect", form_type, &form(&[("token", "made-up")]))
            .1["active"],
        false
    );
    // What broke the protocol (not wrong credentials) is on record.
    assert_eq!(
        identity.violations().len(),
        3,
        "{:?}",
        identity.violations()
    );
}

/// `AUTHENTICATE XOAUTH2` as `user` with `token` on a new connection; the
/// tagged answer.
fn authenticate(port: u16, user: &str, token: &str) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("* OK"), "{line}");
    let response = base64::engine::general_purpose::STANDARD
        .encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
    write!(writer, "x1 AUTHENTICATE XOAUTH2 {response}\r\n").unwrap();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.starts_with('+') {
            // The error challenge: an empty answer ends the exchange.
            write!(writer, "\r\n").unwrap();
        } else if line.starts_with("x1 ") {
            return line.trim_end().to_string();
        }
    }
}

#[test]
fn dovecot_refuses_expired_and_foreign_tokens_and_mailboxes_without_permission() {
    let ex = exchange(
        Duration::from_millis(1500),
        HOUR,
        &[USERS[1]],
        Duration::ZERO,
    );
    let form_type = "application/x-www-form-urlencoded";
    let (_, body) = ex.identity.post(
        &format!("/{TENANT}/oauth2/v2.0/token"),
        form_type,
        &form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("scope", EXCHANGE_SCOPE),
        ]),
    );
    let token = body["access_token"].as_str().unwrap().to_string();
    let port = ex.dovecot.port();
    assert!(authenticate(port, USERS[0], &token).starts_with("x1 OK"));
    // The same token for a mailbox the app has no right on.
    let no = authenticate(port, USERS[1], &token);
    assert!(no.starts_with("x1 NO [AUTHENTICATIONFAILED]"), "{no}");
    // For a mailbox of another tenant's domain.
    let no = authenticate(port, "eve@other.example", &token);
    assert!(no.starts_with("x1 NO [AUTHENTICATIONFAILED]"), "{no}");
    // A token nobody issued.
    let no = authenticate(port, USERS[0], "made-up");
    assert!(no.starts_with("x1 NO [AUTHENTICATIONFAILED]"), "{no}");
    // An expired one.
    std::thread::sleep(Duration::from_millis(1600));
    let no = authenticate(port, USERS[0], &token);
    assert!(no.starts_with("x1 NO [AUTHENTICATIONFAILED]"), "{no}");
}
