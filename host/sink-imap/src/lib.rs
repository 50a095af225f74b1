//! Imports emails into mailboxes over IMAP: Dovecot (per-user or master-user
//! login), Exchange Online (XOAUTH2, app-only) and most other servers.
//!
//! Per mailbox the sink opens one connection (TLS — implicit or STARTTLS —
//! or, when the configuration says so explicitly, plain TCP), logs in,
//! learns the hierarchy delimiter with `LIST "" "INBOX"`, creates the target
//! folder (`INBOX/Symphony` or `INBOX.Symphony`; "already exists" is fine)
//! and subscribes it. [`Sink::contains`] reads which Message-IDs a folder
//! holds once per run with one `UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS
//! (MESSAGE-ID)])`; deliveries keep that cache current.
//!
//! [`Sink::deliver`] appends each folder's emails, flagged `\Seen` with the
//! send time as INTERNALDATE:
//!
//! * as MULTIAPPEND commands with non-synchronizing literals when the
//!   server has MULTIAPPEND and LITERAL+, in batches bounded by count and
//!   bytes, pipelined (the next batch is on the wire while the server
//!   stores the last, two at once; [`Sink::deliver_before`] also writes
//!   the first of the caller's next emails before it reads its own last
//!   answers, see `ahead.rs`); a MULTIAPPEND is atomic, so
//!   when one is refused its emails are appended again one by one to find
//!   the culprit, once the commands behind it are answered;
//! * else as pipelined single APPENDs with LITERAL+ (Exchange), or one at a
//!   time with synchronizing literals;
//! * emails over [`SYNC_LITERAL_ABOVE`] go alone with a synchronizing
//!   literal, so a server can refuse one before it is sent.
//!
//! Receipts read `imap:<mailbox>/<folder>;UIDVALIDITY=<v>;UID=<uid>` from
//! UIDPLUS's `APPENDUID` (`imap:<mailbox>/<folder>` without UIDPLUS).
//!
//! Failures: a refused email (`NO`, e.g. `[OVERQUOTA]`) is
//! [`SinkError::Refused`]; `BYE`, dropped connections, timeouts and
//! `NO [UNAVAILABLE]`/`[INUSE]`/`[SERVERBUG]` are
//! [`SinkError::Unavailable`] (the connection is dropped and opened again on
//! the next call; a folder whose appends were cut off, however many were in
//! flight, is read again before more is appended, so what did arrive is not
//! appended twice); refused
//! credentials are [`SinkError::Authentication`], naming the secret to fix.
//!
//! XOAUTH2 as an app ([`XOAuth2Token::App`]) gets its tokens with the
//! client-credentials grant (`connector-oauth`), renewed before they
//! expire. A mailbox that refuses the token gets one new token (it may
//! have expired early or been revoked); refusing that too, it is judged
//! when its emails are reported: when another mailbox has accepted the
//! app, this one lacks `Add-MailboxPermission` and is refused alone
//! ([`SinkError::Refused`], [`Sink::contains`] answers `false` so that the
//! run goes on) for the sink's life; when none has, the app itself is not
//! set up and the run stops ([`SinkError::Authentication`]).
//!
//! Mailboxes of one batch are worked in parallel, one thread and one
//! connection each, never more than `max-connections` connections open.
//! Each connection holds one of its mailbox's slots in the sink's
//! [`MailboxBudget`] (the host's state, shared by every worker of the
//! fleet): at most `mailbox-connections` connections to one mailbox, all
//! workers together. A connection waits for a slot up to the timeout,
//! renews it while in use and frees it when closed.

mod ahead;
mod client;
mod codec;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use self::client::{Client, ClientError, Completion, Endpoint, Security};
use self::codec::{Args, Status, StatusLine};
use connector_oauth::{AppTokens, ClientCredentials, TokenError};
use connector_secrets::{Secret, SecretLookup};
use connector_sink::budget::{LocalBudget, MailboxBudget, MailboxLimits, SLOT_LEASE};
use connector_sink::{Delivery, Email, Mailbox, Receipt, Sink, SinkError, TlsMode};
use serde::Deserialize;

/// Emails larger than this are appended alone with a synchronizing literal
/// (the server may refuse before the bytes are sent).
pub const SYNC_LITERAL_ABOVE: usize = 4 << 20;

/// Most MULTIAPPEND commands on the wire at once to one folder: the next
/// is sent while the server stores the last, so neither side waits for
/// the other.
const APPENDS_IN_FLIGHT: usize = 2;

/// Response codes after which trying again later may succeed.
const RETRYABLE_CODES: [&str; 4] = ["UNAVAILABLE", "INUSE", "SERVERBUG", "TRYCREATE"];

/// How to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImapAuth {
    /// Each mailbox logs in as itself (`LOGIN <mailbox> <password>`); the
    /// password is the secret named by `password_secret` with `{mailbox}`
    /// replaced by the mailbox address.
    Login {
        /// Secret name template, e.g. `imap-password-{mailbox}`.
        password_secret: String,
    },
    /// A Dovecot master user logs in as each mailbox: `AUTHENTICATE PLAIN`
    /// with the mailbox as authorization id when offered, else
    /// `LOGIN "<mailbox>*<master>" <password>`.
    Master {
        /// The master user's name.
        user: String,
        /// The secret holding the master user's password.
        password_secret: String,
    },
    /// `AUTHENTICATE XOAUTH2` with an OAuth2 bearer token for every mailbox
    /// (Exchange Online app-only, `IMAP.AccessAsApp`).
    XOAuth2(XOAuth2Token),
}

/// Where the XOAUTH2 bearer token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XOAuth2Token {
    /// Read as it is from the secret of this name and never renewed:
    /// whoever fills the secret keeps it current.
    Secret(String),
    /// Asked for by the sink with the app's client credentials (scope
    /// [`EXCHANGE_SCOPE`]), renewed before it expires and once more after
    /// a refused `AUTHENTICATE`.
    App(ClientCredentials),
}

/// The scope of app tokens for Exchange Online's IMAP.
pub const EXCHANGE_SCOPE: &str = "https://outlook.office365.com/.default";

/// Resolved settings of an IMAP sink.
#[derive(Debug, Clone)]
pub struct ImapSettings {
    /// Server host name (also the TLS server name).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Transport security.
    pub tls: TlsMode,
    /// Extra CA certificates (PEM) trusted besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// How to log in.
    pub auth: ImapAuth,
    /// Most connections open at once (one per mailbox being worked).
    pub max_connections: usize,
    /// Most connections to one mailbox at once, all workers together.
    pub mailbox_connections: u32,
    /// Most emails in one MULTIAPPEND or pipelined run of APPENDs.
    pub batch_messages: usize,
    /// Most bytes in one MULTIAPPEND or pipelined run of APPENDs.
    pub batch_bytes: usize,
    /// Connect, read and write timeout.
    pub timeout: Duration,
    /// Separator of a master-user `LOGIN` (`user*master`).
    pub master_separator: String,
}

impl ImapSettings {
    /// Settings from the connector file's `[sink]` table, checked: the
    /// secret names the chosen `auth` needs must be present.
    pub fn from_config(config: &ImapSinkConfig) -> Result<ImapSettings, String> {
        let timeout = Duration::from_secs(u64::from(config.timeout_secs.max(1)));
        let need = |value: &Option<String>, key: &str| -> Result<String, String> {
            match value.as_deref().map(str::trim) {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => Err(format!(
                    "auth = \"{}\" needs `{key}`",
                    auth_name(config.auth)
                )),
            }
        };
        let auth = match config.auth {
            ImapAuthMethod::Login => ImapAuth::Login {
                password_secret: need(&config.password_secret, "password-secret")?,
            },
            ImapAuthMethod::Master => ImapAuth::Master {
                user: need(&config.master_user, "master-user")?,
                password_secret: need(&config.password_secret, "password-secret")?,
            },
            ImapAuthMethod::Xoauth2 => ImapAuth::XOAuth2(xoauth2_token(config, timeout)?),
        };
        if config.host.trim().is_empty() {
            return Err("`host` is empty".into());
        }
        if config.tls == TlsMode::None && config.ca_file.is_some() {
            return Err("`ca-file` is set but tls = \"none\"".into());
        }
        let port = config.port.unwrap_or(match config.tls {
            TlsMode::Implicit => 993,
            TlsMode::Starttls | TlsMode::None => 143,
        });
        Ok(ImapSettings {
            host: config.host.trim().to_string(),
            port,
            tls: config.tls,
            ca_file: config.ca_file.clone(),
            auth,
            max_connections: config.max_connections.max(1) as usize,
            mailbox_connections: match config.mailbox_connections {
                0 => return Err(
                    "`mailbox-connections = 0` would never connect; set at least 1 (4 when absent)"
                        .into(),
                ),
                n => n,
            },
            batch_messages: config.batch_messages.max(1) as usize,
            batch_bytes: (config.batch_mb.max(1) as usize) << 20,
            timeout,
            master_separator: config.master_separator.clone(),
        })
    }
}

/// Where `auth = "xoauth2"` gets its token: the app's `tenant`,
/// `client-id` and `client-secret-secret` (and `login-url`), or a
/// `token-secret`, not both.
fn xoauth2_token(config: &ImapSinkConfig, timeout: Duration) -> Result<XOAuth2Token, String> {
    let app_keys = [
        ("tenant", &config.tenant),
        ("client-id", &config.client_id),
        ("client-secret-secret", &config.client_secret_secret),
        ("login-url", &config.login_url),
    ];
    let named = |keys: &[(&str, &Option<String>)], given: bool| -> String {
        keys.iter()
            .filter(|(_, v)| v.is_some() == given)
            .map(|(k, _)| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let given = named(&app_keys, true);
    match config.token_secret.as_deref().map(str::trim) {
        Some(_) if !given.is_empty() => Err(format!(
            "`token-secret` and {given} exclude each other: give the app's `tenant`, `client-id` and `client-secret-secret` (the sink gets and renews its tokens) or a `token-secret` you keep current"
        )),
        Some("") => Err("`token-secret` is empty".into()),
        Some(name) => Ok(XOAuth2Token::Secret(name.to_string())),
        None => {
            let missing = named(&app_keys[..3], false);
            if !missing.is_empty() {
                return Err(format!(
                    "auth = \"xoauth2\" needs the app's `tenant`, `client-id` and `client-secret-secret` (the sink then gets and renews its tokens) or a `token-secret` you keep current; missing: {missing}"
                ));
            }
            let text = |v: &Option<String>| v.clone().unwrap_or_default();
            ClientCredentials::from_keys(
                &text(&config.tenant),
                &text(&config.client_id),
                &text(&config.client_secret_secret),
                config
                    .login_url
                    .as_deref()
                    .unwrap_or(connector_oauth::DEFAULT_LOGIN_URL),
                EXCHANGE_SCOPE,
                timeout,
            )
            .map(XOAuth2Token::App)
        }
    }
}

fn auth_name(method: ImapAuthMethod) -> &'static str {
    match method {
        ImapAuthMethod::Login => "login",
        ImapAuthMethod::Master => "master",
        ImapAuthMethod::Xoauth2 => "xoauth2",
    }
}

/// `[sink] kind = "imap"`: where the IMAP server is, how to reach it and
/// how to log in. Passwords and tokens are never written here: the
/// `*-secret` keys name secrets of the connector's `[secrets]` source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImapSinkConfig {
    /// Server host name (also checked against its TLS certificate).
    pub host: String,
    /// Port; 993 with `tls = "implicit"`, else 143, when absent.
    #[serde(default)]
    pub port: Option<u16>,
    /// Transport security; `implicit` when absent.
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file of CA certificates trusted besides the public web roots
    /// (for a server with a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How each mailbox is logged in to.
    pub auth: ImapAuthMethod,
    /// With `auth = "master"`: the master user's name.
    #[serde(default)]
    pub master_user: Option<String>,
    /// With `auth = "master"`: separator of `LOGIN "<mailbox><sep><master>"`
    /// when the server offers no AUTH=PLAIN (Dovecot's
    /// `auth_master_user_separator`).
    #[serde(default = "default_master_separator")]
    pub master_separator: String,
    /// With `auth = "master"`: name of the secret holding the master
    /// password. With `auth = "login"`: name of each mailbox's password
    /// secret, where `{mailbox}` stands for the mailbox address (e.g.
    /// `imap-password-{mailbox}`).
    #[serde(default)]
    pub password_secret: Option<String>,
    /// With `auth = "xoauth2"`: name of a secret holding an access token
    /// that the operator keeps current (the sink does not renew it).
    /// Without it the sink gets its own tokens with `tenant`, `client-id`
    /// and `client-secret-secret`.
    #[serde(default)]
    pub token_secret: Option<String>,
    /// With `auth = "xoauth2"`: the app registration's directory (tenant)
    /// id or domain.
    #[serde(default)]
    pub tenant: Option<String>,
    /// With `auth = "xoauth2"`: the app registration's application
    /// (client) id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// With `auth = "xoauth2"`: name of the secret holding the app's
    /// client secret.
    #[serde(default)]
    pub client_secret_secret: Option<String>,
    /// With `auth = "xoauth2"`: the identity platform's base URL
    /// (`https://login.microsoftonline.com` when absent).
    #[serde(default)]
    pub login_url: Option<String>,
    /// Most connections open at once, one per mailbox being imported
    /// into (4 when absent).
    #[serde(default = "default_imap_connections")]
    pub max_connections: u32,
    /// Most connections to one mailbox at once, all workers of the fleet
    /// together (4 when absent).
    #[serde(default = "default_imap_connections")]
    pub mailbox_connections: u32,
    /// Most emails appended by one command or pipelined run (100).
    #[serde(default = "default_imap_batch_messages")]
    pub batch_messages: u32,
    /// Most MiB appended by one command or pipelined run (32).
    #[serde(default = "default_imap_batch_mb")]
    pub batch_mb: u32,
    /// Seconds to wait for the server before giving up on a connection
    /// (120).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u32,
}

/// How the IMAP sink logs in to each mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImapAuthMethod {
    /// Each mailbox with its own password (`password-secret`, with
    /// `{mailbox}` in the name).
    Login,
    /// A Dovecot master user logs in as every mailbox (`master-user`,
    /// `password-secret`).
    Master,
    /// OAuth2 bearer token, e.g. Exchange Online app-only: the app's
    /// `tenant`, `client-id` and `client-secret-secret`, or a
    /// `token-secret`.
    Xoauth2,
}

fn default_master_separator() -> String {
    "*".to_string()
}

fn default_imap_connections() -> u32 {
    4
}

fn default_imap_batch_messages() -> u32 {
    100
}

fn default_imap_batch_mb() -> u32 {
    32
}

fn default_timeout_secs() -> u32 {
    connector_sink::DEFAULT_TIMEOUT_SECS
}

/// What every worker shares: settings, endpoint, credentials.
struct Shared {
    settings: ImapSettings,
    endpoint: Endpoint,
    secrets: Arc<dyn SecretLookup>,
    target: String,
    /// The app's tokens (`auth = "xoauth2"` with client credentials).
    tokens: Option<AppTokens>,
    /// Some mailbox has accepted an app token in this sink's life: a
    /// mailbox that refuses a new one lacks its own permission.
    app_accepted: AtomicBool,
    /// Where each mailbox's connection slots are kept.
    budget: Mutex<Arc<dyn MailboxBudget>>,
}

/// A mailbox's connection slot, freed when dropped (with its connection).
struct ConnectionSlot {
    budget: Arc<dyn MailboxBudget>,
    key: String,
    slot: u32,
    renewed: Instant,
}

impl ConnectionSlot {
    /// Takes one of the mailbox's connection slots, waiting up to the
    /// timeout while other connections (of any worker) hold them all.
    fn take(sh: &Shared, mailbox: &Mailbox) -> Result<ConnectionSlot, SinkError> {
        let budget = sh.budget.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let key = format!(
            "imap {}:{} {}",
            sh.settings.host,
            sh.settings.port,
            mailbox.as_str().to_ascii_lowercase()
        );
        let limits = MailboxLimits {
            concurrency: sh.settings.mailbox_connections,
            requests: u32::MAX,
            window: SLOT_LEASE,
        };
        let until = Instant::now() + sh.settings.timeout;
        loop {
            if let Some(&slot) = budget.take_slots(&key, 1, &limits)?.first() {
                return Ok(ConnectionSlot {
                    budget,
                    key,
                    slot,
                    renewed: Instant::now(),
                });
            }
            if Instant::now() >= until {
                return Err(SinkError::Unavailable {
                    target: sh.target.clone(),
                    message: format!(
                        "all {} connections to {mailbox} that `mailbox-connections` allows are in use by other workers",
                        limits.concurrency
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Renews the slot when half its lease has passed.
    fn keep(&mut self) {
        if self.renewed.elapsed() < SLOT_LEASE / 2 {
            return;
        }
        match self.budget.renew_slots(&self.key, &[self.slot]) {
            Ok(held) if held.is_empty() => {
                tracing::warn!(key = %self.key, "a connection slot expired and was taken by another worker")
            }
            Ok(_) => self.renewed = Instant::now(),
            Err(e) => tracing::warn!(key = %self.key, "cannot renew a connection slot now: {e}"),
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Err(e) = self.budget.release_slots(&self.key, &[self.slot]) {
            tracing::warn!(key = %self.key, "cannot free a connection slot now, it expires on its own: {e}");
        }
    }
}

/// Imports emails over IMAP; see the module documentation.
pub struct ImapSink {
    shared: Shared,
    mailboxes: HashMap<Mailbox, MailboxState>,
    clock: u64,
}

impl fmt::Debug for ImapSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapSink")
            .field("target", &self.shared.target)
            .field("mailboxes", &self.mailboxes.len())
            .finish()
    }
}

impl ImapSink {
    /// The sink a `[sink] kind = "imap"` table describes, with credentials
    /// from `secrets`. Nothing connects yet.
    pub fn open(
        config: &ImapSinkConfig,
        secrets: Arc<dyn SecretLookup>,
    ) -> Result<ImapSink, SinkError> {
        let settings = ImapSettings::from_config(config).map_err(|reason| SinkError::Setup {
            target: format!("imap://{}", config.host),
            reason,
        })?;
        ImapSink::new(settings, secrets)
    }

    /// A sink for these settings; credentials come from `secrets`. Nothing
    /// connects until the first call. Fails when the CA file cannot be
    /// used.
    pub fn new(
        settings: ImapSettings,
        secrets: Arc<dyn SecretLookup>,
    ) -> Result<ImapSink, SinkError> {
        let target = format!("imap://{}:{}", settings.host, settings.port);
        let tls = match settings.tls {
            TlsMode::None => None,
            TlsMode::Implicit | TlsMode::Starttls => {
                Some(tls_config(settings.ca_file.as_deref()).map_err(|reason| {
                    SinkError::Setup {
                        target: target.clone(),
                        reason,
                    }
                })?)
            }
        };
        let endpoint = Endpoint {
            host: settings.host.clone(),
            port: settings.port,
            security: match settings.tls {
                TlsMode::Implicit => Security::Implicit,
                TlsMode::Starttls => Security::StartTls,
                TlsMode::None => Security::None,
            },
            tls,
            timeout: settings.timeout,
        };
        let tokens = match &settings.auth {
            ImapAuth::XOAuth2(XOAuth2Token::App(credentials)) => {
                Some(AppTokens::new(credentials.clone(), secrets.clone()))
            }
            _ => None,
        };
        Ok(ImapSink {
            shared: Shared {
                settings,
                endpoint,
                secrets,
                target,
                tokens,
                app_accepted: AtomicBool::new(false),
                budget: Mutex::new(Arc::new(LocalBudget::default())),
            },
            mailboxes: HashMap::new(),
            clock: 0,
        })
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> usize {
        self.mailboxes
            .values()
            .filter(|m| m.session.is_some())
            .count()
    }

    fn touch(&mut self, mailbox: &Mailbox) -> &mut MailboxState {
        self.clock += 1;
        let clock = self.clock;
        let state = self
            .mailboxes
            .entry(mailbox.clone())
            .or_insert_with(|| MailboxState::new(mailbox.clone()));
        state.last_used = clock;
        state
    }

    /// Closes least recently used connections of mailboxes other than
    /// `keep` until at most `limit` remain open.
    fn close_idle(&mut self, keep: &BTreeSet<&Mailbox>, limit: usize) {
        let mut open: Vec<(u64, Mailbox)> = self
            .mailboxes
            .values()
            .filter(|m| m.session.is_some() && !keep.contains(&m.mailbox))
            .map(|m| (m.last_used, m.mailbox.clone()))
            .collect();
        let kept_open = self
            .mailboxes
            .values()
            .filter(|m| m.session.is_some() && keep.contains(&m.mailbox))
            .count();
        open.sort();
        let mut total = open.len() + kept_open;
        for (_, mailbox) in open {
            if total <= limit {
                break;
            }
            if let Some(state) = self.mailboxes.get_mut(&mailbox) {
                state.close(&self.shared);
                total -= 1;
            }
        }
    }
}

impl Drop for ImapSink {
    fn drop(&mut self) {
        for state in self.mailboxes.values_mut() {
            state.close(&self.shared);
        }
    }
}

impl Sink for ImapSink {
    fn describe(&self) -> String {
        let s = &self.shared.settings;
        let tls = match s.tls {
            TlsMode::Implicit => "TLS",
            TlsMode::Starttls => "STARTTLS",
            TlsMode::None => "plain text",
        };
        let auth = match &s.auth {
            ImapAuth::Login { .. } => "per-mailbox login".to_string(),
            ImapAuth::Master { user, .. } => format!("master user {user}"),
            ImapAuth::XOAuth2(XOAuth2Token::Secret(name)) => {
                format!("XOAUTH2 with the token in `{name}`")
            }
            ImapAuth::XOAuth2(XOAuth2Token::App(c)) => {
                format!("XOAUTH2 as app {} of tenant {}", c.client_id, c.tenant)
            }
        };
        format!("imap {}:{} ({tls}, {auth})", s.host, s.port)
    }

    fn share_budget(&mut self, budget: Arc<dyn MailboxBudget>) {
        *self.shared.budget.lock().unwrap_or_else(|p| p.into_inner()) = budget;
    }

    fn contains(
        &mut self,
        mailbox: &Mailbox,
        folder: &str,
        message_id: &str,
    ) -> Result<bool, SinkError> {
        let needs_connection = self
            .mailboxes
            .get(mailbox)
            .is_none_or(|m| m.session.is_none() && !m.is_ready(folder));
        if needs_connection {
            let keep = BTreeSet::from([mailbox]);
            let limit = self.shared.settings.max_connections - 1;
            self.close_idle(&keep, limit);
        }
        let shared = &self.shared;
        self.clock += 1;
        let clock = self.clock;
        let state = self
            .mailboxes
            .entry(mailbox.clone())
            .or_insert_with(|| MailboxState::new(mailbox.clone()));
        state.last_used = clock;
        if let Err(e) = state.ready_folder(shared, folder).map(|_| ()) {
            // A refused mailbox's emails are reported by `deliver`.
            return if state.refused.is_some() {
                Ok(false)
            } else {
                Err(e)
            };
        }
        Ok(state.folders[folder].known.contains_key(message_id))
    }

    fn deliver(&mut self, batch: &[Delivery<'_>]) -> Vec<Result<Receipt, SinkError>> {
        self.deliver_batch(batch, &[])
    }

    /// Writes the first of `next` ahead on each connection that `batch`
    /// leaves open, once its own emails are all on the wire.
    fn deliver_before(
        &mut self,
        batch: &[Delivery<'_>],
        next: &[Delivery<'_>],
    ) -> Vec<Result<Receipt, SinkError>> {
        self.deliver_batch(batch, next)
    }
}

impl ImapSink {
    fn deliver_batch(
        &mut self,
        batch: &[Delivery<'_>],
        next: &[Delivery<'_>],
    ) -> Vec<Result<Receipt, SinkError>> {
        let mut results: Vec<Option<Result<Receipt, SinkError>>> =
            (0..batch.len()).map(|_| None).collect();
        // Group by mailbox, then folder, keeping the batch's order.
        let mut order: Vec<&Mailbox> = Vec::new();
        let mut groups: HashMap<&Mailbox, Vec<FolderBatch<'_>>> = HashMap::new();
        for (i, d) in batch.iter().enumerate() {
            let folders = groups.entry(d.mailbox).or_insert_with(|| {
                order.push(d.mailbox);
                Vec::new()
            });
            match folders.iter_mut().find(|f| f.folder == d.folder) {
                Some(f) => f.items.push((i, d.email)),
                None => folders.push(FolderBatch {
                    folder: d.folder,
                    items: vec![(i, d.email)],
                }),
            }
        }
        for mailbox in &order {
            self.touch(mailbox);
        }
        // Mailboxes with an open connection go first, one per worker.
        order.sort_by_key(|m| self.mailboxes[*m].session.is_none());
        let workers = self.shared.settings.max_connections.min(order.len()).max(1);
        let firsts: BTreeSet<&Mailbox> = order.iter().take(workers).copied().collect();
        let spare = self.shared.settings.max_connections - firsts.len();
        let firsts_open = firsts
            .iter()
            .filter(|m| self.mailboxes[**m].session.is_some())
            .count();
        self.close_idle(&firsts, firsts_open + spare);

        let position: HashMap<&Mailbox, usize> =
            order.iter().enumerate().map(|(i, m)| (*m, i)).collect();
        // One queue shared by the workers, so that a worker done with a
        // small mailbox takes the next one (the loads are uneven).
        let mut pending: Vec<(usize, &mut MailboxState)> = self
            .mailboxes
            .iter_mut()
            .filter_map(|(mailbox, state)| position.get(mailbox).map(|&at| (at, state)))
            .collect();
        // Popped from the end: the first in `order` last.
        pending.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        let queue = Mutex::new(pending);
        let shared = &self.shared;
        let groups = &groups;
        let queue = &queue;
        let work = move || {
            let mut out = Vec::new();
            loop {
                let (popped, last) = {
                    let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
                    (queue.pop(), queue.is_empty())
                };
                let Some((_, state)) = popped else {
                    return out;
                };
                let folders = &groups[&state.mailbox];
                // A connection that stays open writes its mailbox's next
                // emails ahead, after its last folder of this batch.
                let ahead: Vec<&Email> = match folders.last() {
                    Some(fb) if last => next
                        .iter()
                        .filter(|d| *d.mailbox == state.mailbox && d.folder == fb.folder)
                        .map(|d| d.email)
                        .collect(),
                    _ => Vec::new(),
                };
                for (k, fb) in folders.iter().enumerate() {
                    let ahead = if k + 1 == folders.len() {
                        &ahead[..]
                    } else {
                        &[]
                    };
                    state.deliver_folder(shared, fb, ahead, &mut out);
                }
                if !queue.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                    // Keep at most one connection per worker.
                    state.close(shared);
                }
            }
        };
        let outputs: Vec<Vec<(usize, Result<Receipt, SinkError>)>> = if workers == 1 {
            vec![work()]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
        for (i, mut result) in outputs.into_iter().flatten() {
            let d = &batch[i];
            if let Some(said) = self
                .mailboxes
                .get(d.mailbox)
                .and_then(|m| m.refused.as_deref())
            {
                // Judged now that every mailbox of the batch has been tried.
                result = Err(refused_mailbox(
                    &self.shared,
                    d.mailbox,
                    &d.email.message_id,
                    said,
                ));
            }
            results[i] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.expect("every delivery has a result"))
            .collect()
    }
}

/// The emails of one batch for one folder of one mailbox.
struct FolderBatch<'a> {
    folder: &'a str,
    items: Vec<(usize, &'a Email)>,
}

/// A logged-in connection and what it offers.
struct Session {
    client: Client,
    delimiter: Option<char>,
    /// Freed after the connection (fields drop in order).
    slot: ConnectionSlot,
}

/// What the sink knows of one folder.
#[derive(Debug, Default)]
struct FolderState {
    /// Its name on the server.
    server_name: String,
    /// Created and subscribed in this run.
    prepared: bool,
    /// Its Message-IDs have been read.
    loaded: bool,
    /// An append was cut off: read what arrived before appending more.
    stale: bool,
    uidvalidity: u32,
    max_uid: u32,
    /// Message-ID → receipt of the copy in the folder.
    known: HashMap<String, String>,
    /// Message-ID → receipt of emails written ahead of their call and
    /// accepted, until their call asks for them (then they are `known`).
    sent_ahead: HashMap<String, String>,
}

/// A folder batch's emails, sorted out against what the folder holds.
struct SortedOut<'a> {
    /// To append, first copies only.
    to_send: Vec<(usize, &'a Email)>,
    /// Already in the folder: item and receipt.
    found: Vec<(usize, String)>,
    /// Written ahead and accepted: their Message-IDs.
    claimed: Vec<String>,
    /// Twice in the batch: item and the item of its first copy.
    repeats: Vec<(usize, usize)>,
}

/// A mailbox's connection and folders.
struct MailboxState {
    mailbox: Mailbox,
    session: Option<Session>,
    folders: HashMap<String, FolderState>,
    last_used: u64,
    /// What the server answered when this mailbox refused a new app
    /// token: not tried again in this sink's life.
    refused: Option<String>,
    /// MULTIAPPENDs on the wire for a call still to come.
    ahead: Option<ahead::Ahead>,
}

impl MailboxState {
    fn new(mailbox: Mailbox) -> MailboxState {
        MailboxState {
            mailbox,
            session: None,
            folders: HashMap::new(),
            last_used: 0,
            refused: None,
            ahead: None,
        }
    }

    fn is_ready(&self, folder: &str) -> bool {
        self.folders
            .get(folder)
            .is_some_and(|f| f.prepared && f.loaded && !f.stale)
    }

    /// Settles what was written ahead, logs out (best effort) and drops
    /// the connection.
    fn close(&mut self, sh: &Shared) {
        if let Some(session) = &mut self.session {
            // A server that stopped answering must not hold up the run.
            session.client.set_timeout(Duration::from_secs(2));
        }
        self.settle_ahead(sh);
        if let Some(mut session) = self.session.take() {
            let _ = session.client.command(Args::new("LOGOUT"));
        }
    }

    /// Drops the connection after an error; a folder with commands written
    /// ahead is read again before more is appended.
    fn drop_session(&mut self) {
        self.session = None;
        if let Some(ahead) = self.ahead.take()
            && let Some(state) = self.folders.get_mut(&ahead.folder)
        {
            state.stale = true;
        }
    }

    fn receipt(&self, folder: &str, validity: Option<u32>, uid: Option<u32>) -> String {
        match (validity, uid) {
            (Some(v), Some(u)) => {
                format!("imap:{}/{folder};UIDVALIDITY={v};UID={u}", self.mailbox)
            }
            _ => format!("imap:{}/{folder}", self.mailbox),
        }
    }

    /// The logged-in session, connecting when needed.
    fn session(&mut self, sh: &Shared) -> Result<&mut Session, SinkError> {
        open_session(&mut self.session, &mut self.refused, &self.mailbox, sh)
    }

    /// The folder, created, subscribed and with its Message-IDs read (again,
    /// for what is new, when an append was cut off).
    fn ready_folder(&mut self, sh: &Shared, folder: &str) -> Result<&mut FolderState, SinkError> {
        if !self.is_ready(folder) {
            let result = self.prepare_and_load(sh, folder);
            if let Err(e) = &result
                && e.is_retryable()
            {
                self.drop_session();
            }
            result?;
        }
        Ok(self.folders.get_mut(folder).expect("prepared above"))
    }

    fn prepare_and_load(&mut self, sh: &Shared, folder: &str) -> Result<(), SinkError> {
        self.settle_ahead(sh);
        let mailbox = self.mailbox.clone();
        let session = open_session(&mut self.session, &mut self.refused, &self.mailbox, sh)?;
        let state = self.folders.entry(folder.to_string()).or_default();
        let client = &mut session.client;
        let conn = |e| connection_error(sh, e);
        if !state.prepared {
            let name = codec::server_folder_name(folder, session.delimiter).map_err(|reason| {
                SinkError::InvalidFolder {
                    folder: folder.to_string(),
                    reason: format!("{reason} (on {})", sh.target),
                }
            })?;
            let created = client
                .command(Args::new("CREATE").string(name.as_bytes(), false))
                .map_err(conn)?;
            if created.status.status != Status::Ok && !client.exists(&name).map_err(conn)? {
                if is_retryable_code(&created.status) {
                    return Err(unavailable(sh, &created.status));
                }
                return Err(SinkError::InvalidFolder {
                    folder: folder.to_string(),
                    reason: format!(
                        "{} cannot create it for {mailbox}: {}",
                        sh.target,
                        created.status.describe()
                    ),
                });
            }
            // Subscribing only makes the folder visible in clients.
            let _ = client
                .command(Args::new("SUBSCRIBE").string(name.as_bytes(), false))
                .map_err(conn)?;
            state.server_name = name;
            state.prepared = true;
        }
        if !state.loaded || state.stale {
            let (exists, validity) = match client.examine(&state.server_name).map_err(conn)? {
                Ok(v) => v,
                Err(status) => {
                    return Err(if is_retryable_code(&status) {
                        unavailable(sh, &status)
                    } else {
                        SinkError::InvalidFolder {
                            folder: folder.to_string(),
                            reason: format!(
                                "{} cannot open it for {mailbox}: {}",
                                sh.target,
                                status.describe()
                            ),
                        }
                    });
                }
            };
            if validity != state.uidvalidity {
                // New folder, or its UIDs were reset: read it all.
                state.known.clear();
                state.max_uid = 0;
                state.uidvalidity = validity;
            }
            if exists > 0 {
                let from = state.max_uid + 1;
                let listed = client.message_ids(from).map_err(conn)?.map_err(|status| {
                    if is_retryable_code(&status) {
                        unavailable(sh, &status)
                    } else {
                        SinkError::Unavailable {
                            target: sh.target.clone(),
                            message: format!(
                                "cannot list the Message-IDs of {folder} for {mailbox}: {}",
                                status.describe()
                            ),
                        }
                    }
                })?;
                let validity = (validity != 0).then_some(validity);
                for (uid, mid) in listed {
                    state.max_uid = state.max_uid.max(uid);
                    if let Some(mid) = mid {
                        let receipt = match validity {
                            Some(v) => {
                                format!("imap:{mailbox}/{folder};UIDVALIDITY={v};UID={uid}")
                            }
                            None => format!("imap:{mailbox}/{folder}"),
                        };
                        state.known.entry(mid).or_insert(receipt);
                    }
                }
            }
            client.unselect().map_err(conn)?;
            state.loaded = true;
            state.stale = false;
            tracing::debug!(%mailbox, folder, messages = state.known.len(), "folder read");
        }
        Ok(())
    }

    /// Sorts out `items` for `folder`: already there (or written ahead and
    /// accepted), twice, or to append.
    fn sort_out<'a>(
        &self,
        folder: &str,
        items: impl Iterator<Item = (usize, &'a Email)>,
    ) -> SortedOut<'a> {
        let mut sorted = SortedOut {
            to_send: Vec::new(),
            found: Vec::new(),
            claimed: Vec::new(),
            repeats: Vec::new(),
        };
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        let state = &self.folders[folder];
        for (i, email) in items {
            if let Some(receipt) = state.known.get(&email.message_id) {
                sorted.found.push((i, receipt.clone()));
            } else if let Some(receipt) = state.sent_ahead.get(&email.message_id) {
                sorted.found.push((i, receipt.clone()));
                sorted.claimed.push(email.message_id.clone());
            } else if let Some(&first) = first_of.get(email.message_id.as_str()) {
                sorted.repeats.push((i, first));
            } else {
                first_of.insert(&email.message_id, i);
                sorted.to_send.push((i, email));
            }
        }
        sorted
    }

    /// Appends one folder's emails; pushes one result per item. `next`
    /// are the caller's next emails for this folder, written ahead once
    /// these are all on the wire.
    fn deliver_folder(
        &mut self,
        sh: &Shared,
        fb: &FolderBatch<'_>,
        next: &[&Email],
        out: &mut Vec<(usize, Result<Receipt, SinkError>)>,
    ) {
        let folder = fb.folder;
        if self.ahead.as_ref().is_some_and(|a| a.folder != folder) {
            self.settle_ahead(sh);
        }
        // Already there, or twice in this batch: not appended again.
        let sorted = loop {
            if let Err(e) = self.ready_folder(sh, folder) {
                for (i, _) in &fb.items {
                    out.push((*i, Err(e.clone())));
                }
                return;
            }
            let sorted = self.sort_out(folder, fb.items.iter().copied());
            match &self.ahead {
                Some(ahead) if !ahead.begins(&sorted.to_send) => self.settle_ahead(sh),
                _ => break sorted,
            }
        };
        let SortedOut {
            to_send,
            found,
            claimed,
            repeats,
        } = sorted;
        let state = self.folders.get_mut(folder).expect("read above");
        for id in claimed {
            if let Some(receipt) = state.sent_ahead.remove(&id) {
                state.known.insert(id, receipt);
            }
        }
        out.extend(found.into_iter().map(|(i, r)| (i, Ok(Receipt(r)))));
        // The commands written ahead by the call before carry the first
        // emails; they are this call's first in flight.
        let written = self.ahead.take().map(|a| a.commands).unwrap_or_default();
        let mut chunks = Vec::new();
        let mut rest = to_send.as_slice();
        while !rest.is_empty() {
            let chunk = match written.get(chunks.len()) {
                Some((_, ids)) => &rest[..ids.len()],
                None => next_chunk(rest, &sh.settings),
            };
            rest = &rest[chunk.len()..];
            chunks.push(chunk);
        }
        let written = written.into_iter().map(|(tag, _)| tag).collect();
        let mut sent: Vec<(usize, Result<Receipt, SinkError>)> = Vec::new();
        let done = self.append_chunks(sh, folder, &chunks, written, next, &mut sent);
        if done < chunks.len() {
            // The connection is gone: the rest waits for the retry.
            for (i, _) in chunks[done..].iter().copied().flatten() {
                sent.push((
                    *i,
                    Err(SinkError::Unavailable {
                        target: sh.target.clone(),
                        message: format!(
                            "not appended to {folder} of {}: an earlier append failed",
                            self.mailbox
                        ),
                    }),
                ));
            }
        }
        for (i, first) in repeats {
            let copy = match sent.iter().find(|(j, _)| *j == first) {
                Some((_, Ok(r))) => Ok(r.clone()),
                Some((_, Err(e))) => Err(e.clone()),
                None => unreachable!("the first copy was sent"),
            };
            sent.push((i, copy));
        }
        out.extend(sent);
    }

    /// Appends `chunks` in order, pushing one result per email, and
    /// returns how many chunks were tried: all, unless the connection
    /// broke. MULTIAPPENDs are pipelined, up to [`APPENDS_IN_FLIGHT`] on
    /// the wire; a connection cut with commands in flight fails them all
    /// and marks the folder to be read again, so that what did arrive is
    /// found by its Message-ID and not appended twice.
    fn append_chunks(
        &mut self,
        sh: &Shared,
        folder: &str,
        chunks: &[&[(usize, &Email)]],
        written: Vec<String>,
        ahead: &[&Email],
        out: &mut Vec<(usize, Result<Receipt, SinkError>)>,
    ) -> usize {
        // The first chunks may be on the wire already (written ahead).
        let mut flying: std::collections::VecDeque<(usize, String)> =
            written.into_iter().enumerate().collect();
        let mut next = flying.len();
        loop {
            while next < chunks.len()
                && flying.len() < APPENDS_IN_FLIGHT
                && self.can_pipeline(chunks[next])
            {
                match self.send_chunk(sh, folder, chunks[next]) {
                    Ok(tag) => flying.push_back((next, tag)),
                    Err(e) => {
                        let cut: Vec<usize> =
                            flying.iter().map(|(k, _)| *k).chain([next]).collect();
                        return self.cut_off(folder, chunks, &cut, e, out);
                    }
                }
                next += 1;
            }
            if next == chunks.len() {
                self.write_ahead(sh, folder, ahead, flying.len());
            }
            if let Some((k, tag)) = flying.pop_front() {
                let done = match self.finish_chunk(sh, &tag) {
                    Ok(done) => done,
                    Err(e) => {
                        let cut: Vec<usize> = [k]
                            .into_iter()
                            .chain(flying.iter().map(|(j, _)| *j))
                            .collect();
                        return self.cut_off(folder, chunks, &cut, e, out);
                    }
                };
                let mut settled = vec![(k, done)];
                if settled[0].1.status.status != Status::Ok {
                    // Refused: what follows is read first, so the
                    // connection is free to find the culprit.
                    while let Some((j, tag)) = flying.pop_front() {
                        match self.finish_chunk(sh, &tag) {
                            Ok(done) => settled.push((j, done)),
                            Err(e) => {
                                let cut: Vec<usize> = settled
                                    .iter()
                                    .map(|(k, _)| *k)
                                    .chain([j])
                                    .chain(flying.iter().map(|(j, _)| *j))
                                    .collect();
                                return self.cut_off(folder, chunks, &cut, e, out);
                            }
                        }
                    }
                    self.settle_ahead(sh);
                }
                for (j, done) in settled {
                    let results = match self.settle_multi(sh, folder, chunks[j], &done) {
                        Ok(results) => results,
                        Err(e) => {
                            // Nothing else is in flight now.
                            let cut: Vec<usize> = (j..next).collect();
                            return self.cut_off(folder, chunks, &cut, e, out);
                        }
                    };
                    out.extend(chunks[j].iter().map(|(i, _)| *i).zip(results));
                }
                continue;
            }
            if next == chunks.len() {
                return next;
            }
            let results = self.append_chunk(sh, folder, chunks[next]);
            let broken = results
                .iter()
                .any(|r| matches!(r, Err(SinkError::Unavailable { .. })));
            out.extend(chunks[next].iter().map(|(i, _)| *i).zip(results));
            next += 1;
            if broken {
                return next;
            }
        }
    }

    /// Whether `chunk` can go as a MULTIAPPEND with non-synchronizing
    /// literals on this connection (opened when needed).
    fn can_pipeline(&self, chunk: &[(usize, &Email)]) -> bool {
        let Some(session) = &self.session else {
            return false;
        };
        chunk.len() > 1
            && chunk[0].1.len() <= SYNC_LITERAL_ABOVE as u64
            && session.client.has("LITERAL+")
            && session.client.has("MULTIAPPEND")
    }

    /// Writes `chunk` as one MULTIAPPEND without waiting for its answer.
    fn send_chunk(
        &mut self,
        sh: &Shared,
        folder: &str,
        chunk: &[(usize, &Email)],
    ) -> Result<String, SinkError> {
        let name = self.folders[folder].server_name.clone();
        let session = self.session(sh)?;
        let messages: Vec<&Email> = chunk.iter().map(|(_, e)| *e).collect();
        session
            .client
            .send(Client::append_args(&name, &messages, true))
            .map_err(|e| connection_error(sh, e))
    }

    fn finish_chunk(&mut self, sh: &Shared, tag: &str) -> Result<Completion, SinkError> {
        let session = self.session(sh)?;
        session
            .client
            .finish(tag)
            .map_err(|e| connection_error(sh, e))
    }

    /// After the connection broke (`e`) with the chunks `cut` unanswered:
    /// each of their emails fails with `e`, the connection is dropped and
    /// the folder is read again before more is appended. Returns how many
    /// chunks were tried.
    fn cut_off(
        &mut self,
        folder: &str,
        chunks: &[&[(usize, &Email)]],
        cut: &[usize],
        e: SinkError,
        out: &mut Vec<(usize, Result<Receipt, SinkError>)>,
    ) -> usize {
        self.drop_session();
        if let Some(state) = self.folders.get_mut(folder) {
            state.stale = true;
        }
        for &k in cut {
            out.extend(chunks[k].iter().map(|(i, _)| (*i, Err(e.clone()))));
        }
        cut.iter().max().map_or(0, |k| k + 1)
    }

    /// Appends a chunk (see [`next_chunk`]); one result per email.
    fn append_chunk(
        &mut self,
        sh: &Shared,
        folder: &str,
        chunk: &[(usize, &Email)],
    ) -> Vec<Result<Receipt, SinkError>> {
        let result = self.try_append_chunk(sh, folder, chunk);
        match result {
            Ok(results) => results,
            Err(e) => {
                // Cut off: some of the chunk may have arrived.
                self.drop_session();
                if let Some(state) = self.folders.get_mut(folder) {
                    state.stale = true;
                }
                chunk.iter().map(|_| Err(e.clone())).collect()
            }
        }
    }

    fn try_append_chunk(
        &mut self,
        sh: &Shared,
        folder: &str,
        chunk: &[(usize, &Email)],
    ) -> Result<Vec<Result<Receipt, SinkError>>, SinkError> {
        self.settle_ahead(sh);
        let name = self.folders[folder].server_name.clone();
        let session = self.session(sh)?;
        let client = &mut session.client;
        let literal_plus = client.has("LITERAL+");
        let multiappend = literal_plus && client.has("MULTIAPPEND");
        let conn = |e| connection_error(sh, e);
        let messages: Vec<&Email> = chunk.iter().map(|(_, e)| *e).collect();
        let single_big = chunk.len() == 1 && chunk[0].1.len() > SYNC_LITERAL_ABOVE as u64;
        let statuses: Vec<StatusLine> = if single_big || !literal_plus {
            let mut statuses = Vec::with_capacity(messages.len());
            for m in &messages {
                let args = Client::append_args(&name, std::slice::from_ref(m), false);
                statuses.push(client.command(args).map_err(conn)?.status);
            }
            statuses
        } else if multiappend && messages.len() > 1 {
            let args = Client::append_args(&name, &messages, true);
            let done: Completion = client.command(args).map_err(conn)?;
            return self.settle_multi(sh, folder, chunk, &done);
        } else {
            return self.append_singles_pipelined(sh, folder, chunk);
        };
        Ok(self.record_singles(sh, folder, chunk, &statuses))
    }

    /// Appends `chunk`'s emails as single APPENDs with non-synchronizing
    /// literals, all sent before any answer is read.
    fn append_singles_pipelined(
        &mut self,
        sh: &Shared,
        folder: &str,
        chunk: &[(usize, &Email)],
    ) -> Result<Vec<Result<Receipt, SinkError>>, SinkError> {
        let name = self.folders[folder].server_name.clone();
        let session = self.session(sh)?;
        let commands = chunk
            .iter()
            .map(|(_, m)| Client::append_args(&name, std::slice::from_ref(m), true))
            .collect();
        let statuses = session
            .client
            .pipeline(commands)
            .map_err(|e| connection_error(sh, e))?;
        Ok(self.record_singles(sh, folder, chunk, &statuses))
    }

    /// The results of single APPENDs of `chunk`'s emails, answered
    /// `statuses`; a BAD drops the connection.
    fn record_singles(
        &mut self,
        sh: &Shared,
        folder: &str,
        chunk: &[(usize, &Email)],
        statuses: &[StatusLine],
    ) -> Vec<Result<Receipt, SinkError>> {
        let mut results = Vec::with_capacity(chunk.len());
        let mut bad = false;
        for ((_, email), status) in chunk.iter().zip(statuses) {
            bad |= status.status == Status::Bad;
            results.push(self.record_single(sh, folder, email, status));
        }
        if bad {
            self.drop_session();
        }
        results
    }

    /// The results of a MULTIAPPEND of `chunk` answered `done`: receipts
    /// when accepted; when refused, the emails appended one by one to find
    /// the culprit (on a connection with nothing else in flight); an
    /// error when trying again later may succeed.
    fn settle_multi(
        &mut self,
        sh: &Shared,
        folder: &str,
        chunk: &[(usize, &Email)],
        done: &Completion,
    ) -> Result<Vec<Result<Receipt, SinkError>>, SinkError> {
        match done.status.status {
            Status::Ok => Ok(self.record_multi(sh, folder, chunk, &done.status)),
            _ if is_retryable_code(&done.status) => {
                if done.status.code.as_deref() == Some("TRYCREATE")
                    && let Some(f) = self.folders.get_mut(folder)
                {
                    // Deleted meanwhile: create it again on the retry.
                    f.prepared = false;
                    f.loaded = false;
                }
                Err(unavailable(sh, &done.status))
            }
            status => {
                tracing::info!(
                    mailbox = %self.mailbox, folder, count = chunk.len(),
                    "MULTIAPPEND refused ({}); appending one by one to find the culprit",
                    done.status.describe()
                );
                if status == Status::Bad {
                    // The server may have lost track of the command.
                    self.drop_session();
                }
                self.append_singles_pipelined(sh, folder, chunk)
            }
        }
    }

    /// Results of an accepted MULTIAPPEND.
    fn record_multi(
        &mut self,
        sh: &Shared,
        folder: &str,
        chunk: &[(usize, &Email)],
        status: &StatusLine,
    ) -> Vec<Result<Receipt, SinkError>> {
        placed_uids(sh, status, chunk.len())
            .into_iter()
            .zip(chunk)
            .map(|((validity, uid), (_, email))| {
                Ok(self.remember(folder, &email.message_id, validity, uid, false))
            })
            .collect()
    }

    /// The result of one APPEND.
    fn record_single(
        &mut self,
        sh: &Shared,
        folder: &str,
        email: &Email,
        status: &StatusLine,
    ) -> Result<Receipt, SinkError> {
        match status.status {
            Status::Ok => {
                let (validity, uid) = match append_uids(status) {
                    Some((v, uids)) if uids.len() == 1 => (Some(v), Some(uids[0])),
                    _ => (None, None),
                };
                Ok(self.remember(folder, &email.message_id, validity, uid, false))
            }
            _ if is_retryable_code(status) => {
                if status.code.as_deref() == Some("TRYCREATE")
                    && let Some(f) = self.folders.get_mut(folder)
                {
                    f.prepared = false;
                    f.loaded = false;
                }
                Err(unavailable(sh, status))
            }
            _ => Err(SinkError::Refused {
                target: sh.target.clone(),
                mailbox: self.mailbox.to_string(),
                message_id: email.message_id.clone(),
                reason: format!("APPEND to {folder} answered {}", status.describe()),
            }),
        }
    }

    /// Notes that `folder` now holds the email `message_id`, under `uid`
    /// when the server said: among what the folder is known to hold, or,
    /// `written_ahead` of its call, kept for that call. Returns its receipt.
    fn remember(
        &mut self,
        folder: &str,
        message_id: &str,
        validity: Option<u32>,
        uid: Option<u32>,
        written_ahead: bool,
    ) -> Receipt {
        let receipt = self.receipt(folder, validity, uid);
        if let Some(state) = self.folders.get_mut(folder) {
            if let Some(uid) = uid {
                state.max_uid = state.max_uid.max(uid);
            }
            let held = if written_ahead {
                &mut state.sent_ahead
            } else {
                &mut state.known
            };
            held.insert(message_id.to_string(), receipt.clone());
        }
        Receipt(receipt)
    }
}

/// The logged-in session in `slot`, connecting when needed. An app
/// token the mailbox refuses is renewed once (it may have expired early or
/// been revoked); a mailbox that refuses the new one too is remembered in
/// `refused` and not tried again.
fn open_session<'a>(
    slot: &'a mut Option<Session>,
    refused: &mut Option<String>,
    mailbox: &Mailbox,
    sh: &Shared,
) -> Result<&'a mut Session, SinkError> {
    if let Some(said) = refused {
        return Err(refused_mailbox(sh, mailbox, "", said));
    }
    if slot.is_none() {
        let connection_slot = ConnectionSlot::take(sh, mailbox)?;
        let mut client = match connect_and_login(sh, mailbox) {
            Err(LoginError::TokenRefused { token, said }) => {
                tracing::info!(%mailbox, target = %sh.target, "the app token was refused ({said}); trying once more with a new one");
                if let Some(tokens) = &sh.tokens {
                    tokens.forget(&token);
                }
                connect_and_login(sh, mailbox)
            }
            first => first,
        }
        .map_err(|e| match e {
            LoginError::Sink(e) => e,
            LoginError::TokenRefused { said, .. } => {
                let e = refused_mailbox(sh, mailbox, "", &said);
                *refused = Some(said);
                e
            }
        })?;
        let delimiter = client.delimiter().map_err(|e| connection_error(sh, e))?;
        tracing::debug!(%mailbox, target = %sh.target, ?delimiter, "IMAP session open");
        *slot = Some(Session {
            client,
            delimiter,
            slot: connection_slot,
        });
    }
    let session = slot.as_mut().expect("set above");
    session.slot.keep();
    Ok(session)
}

/// A new connection, logged in as `mailbox`.
fn connect_and_login(sh: &Shared, mailbox: &Mailbox) -> Result<Client, LoginError> {
    let mut client = Client::connect(&sh.endpoint).map_err(|e| connection_error(sh, e))?;
    if !client.is_preauthenticated() {
        login(sh, mailbox, &mut client)?;
    }
    Ok(client)
}

/// The error for an email (`message_id`, empty before any) to `mailbox`,
/// which refused a new app token, saying `said`. When another mailbox has
/// accepted the app's token, this mailbox alone lacks the app's right and
/// is refused; when none has, the app itself is not set up and the run
/// stops.
fn refused_mailbox(sh: &Shared, mailbox: &Mailbox, message_id: &str, said: &str) -> SinkError {
    let client_id = sh
        .tokens
        .as_ref()
        .map_or("", |t| t.credentials().client_id.as_str());
    if sh.app_accepted.load(Ordering::Relaxed) {
        SinkError::Refused {
            target: sh.target.clone(),
            mailbox: mailbox.to_string(),
            message_id: if message_id.is_empty() {
                "(login)".to_string()
            } else {
                message_id.to_string()
            },
            reason: format!(
                "AUTHENTICATE XOAUTH2 with a new app token answered {said} while other mailboxes accept the app, so the app has no right on this mailbox: in Exchange Online PowerShell run `Add-MailboxPermission -Identity {mailbox} -User <service principal id> -AccessRights FullAccess` (the id is the ObjectId that `Get-ServicePrincipal | Where-Object AppId -eq {client_id}` shows), or fix the mapping if this is not an archive mailbox"
            ),
        }
    } else {
        SinkError::Authentication {
            target: sh.target.clone(),
            mailbox: mailbox.to_string(),
            reason: format!(
                "AUTHENTICATE XOAUTH2 with a new app token answered {said}, and no mailbox has accepted the app's token"
            ),
            fix: format!(
                "check the app registration {client_id}: the Office 365 Exchange Online application permission IMAP.AccessAsApp with admin consent, its service principal in Exchange Online (`New-ServicePrincipal -AppId {client_id} -ObjectId <enterprise application object id>`) and `Add-MailboxPermission` for each archive mailbox (docs/exchange.md, section 3)"
            ),
        }
    }
}

/// The next emails to append together: one email over
/// [`SYNC_LITERAL_ABOVE`] alone, else as many as the batch limits allow
/// (at least one).
fn next_chunk<'a, 'b>(
    rest: &'b [(usize, &'a Email)],
    settings: &ImapSettings,
) -> &'b [(usize, &'a Email)] {
    if rest[0].1.len() > SYNC_LITERAL_ABOVE as u64 {
        return &rest[..1];
    }
    let mut bytes = 0;
    let mut n = 0;
    for (_, email) in rest {
        let size = usize::try_from(email.len()).unwrap_or(usize::MAX);
        if n > 0
            && (n >= settings.batch_messages
                || bytes + size > settings.batch_bytes
                || size > SYNC_LITERAL_ABOVE)
        {
            break;
        }
        bytes += size;
        n += 1;
    }
    &rest[..n]
}

/// Where an accepted MULTIAPPEND of `count` emails put each, in order:
/// UIDVALIDITY and UID, or neither when the server does not say (no
/// UIDPLUS, or an APPENDUID listing another number of UIDs).
fn placed_uids(sh: &Shared, status: &StatusLine, count: usize) -> Vec<(Option<u32>, Option<u32>)> {
    match append_uids(status) {
        Some((validity, uids)) if uids.len() == count => uids
            .into_iter()
            .map(|uid| (Some(validity), Some(uid)))
            .collect(),
        Some((_, uids)) => {
            tracing::warn!(target = %sh.target, "APPENDUID lists {} UIDs for {} emails; receipts without UIDs", uids.len(), count);
            vec![(None, None); count]
        }
        None => vec![(None, None); count],
    }
}

/// UIDVALIDITY and UIDs of an `[APPENDUID v set]` code.
fn append_uids(status: &StatusLine) -> Option<(u32, Vec<u32>)> {
    (status.code.as_deref() == Some("APPENDUID"))
        .then(|| codec::parse_append_uid(&status.code_args))
        .flatten()
}

fn is_retryable_code(status: &StatusLine) -> bool {
    status
        .code
        .as_deref()
        .is_some_and(|c| RETRYABLE_CODES.contains(&c))
}

fn unavailable(sh: &Shared, status: &StatusLine) -> SinkError {
    SinkError::Unavailable {
        target: sh.target.clone(),
        message: format!("the server answered {}", status.describe()),
    }
}

fn connection_error(sh: &Shared, e: ClientError) -> SinkError {
    match e {
        ClientError::Tls(reason) => SinkError::Setup {
            target: sh.target.clone(),
            reason,
        },
        other => SinkError::Unavailable {
            target: sh.target.clone(),
            message: other.to_string(),
        },
    }
}

/// Why a login did not succeed.
enum LoginError {
    /// The login failed in a way the caller reports as it is.
    Sink(SinkError),
    /// `AUTHENTICATE XOAUTH2` answered NO to this app token, saying `said`.
    TokenRefused { token: String, said: String },
}

impl From<SinkError> for LoginError {
    fn from(e: SinkError) -> LoginError {
        LoginError::Sink(e)
    }
}

/// Logs `mailbox` in as configured.
fn login(sh: &Shared, mailbox: &Mailbox, client: &mut Client) -> Result<(), LoginError> {
    let conn = |e| connection_error(sh, e);
    let secret = |name: &str| -> Result<Secret, SinkError> {
        match sh.secrets.secret(name) {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(SinkError::Authentication {
                target: sh.target.clone(),
                mailbox: mailbox.to_string(),
                reason: format!("the secret `{name}` is not set"),
                fix: format!("set {}", sh.secrets.where_to_set(name)),
            }),
            Err(e) => Err(SinkError::Authentication {
                target: sh.target.clone(),
                mailbox: mailbox.to_string(),
                reason: format!("the secret `{name}` cannot be read: {e}"),
                fix: "fix the connector's [secrets] source".to_string(),
            }),
        }
    };
    let (done, fix) = match &sh.settings.auth {
        ImapAuth::Login { password_secret } => {
            if client.has("LOGINDISABLED") {
                return Err(SinkError::Setup {
                    target: sh.target.clone(),
                    reason: "the server refuses LOGIN on this connection (LOGINDISABLED)".into(),
                }
                .into());
            }
            let name = password_secret.replace("{mailbox}", mailbox.as_str());
            let password = secret(&name)?;
            let done = client
                .login(mailbox.as_str(), password.expose())
                .map_err(conn)?;
            (
                done,
                format!(
                    "the password of {mailbox} in {}",
                    sh.secrets.where_to_set(&name)
                ),
            )
        }
        ImapAuth::Master {
            user,
            password_secret,
        } => {
            let password = secret(password_secret)?;
            let done = if client.has("AUTH=PLAIN") {
                client
                    .authenticate(
                        "PLAIN",
                        &codec::sasl_plain(mailbox.as_str(), user, password.expose()),
                    )
                    .map_err(conn)?
            } else if client.has("LOGINDISABLED") {
                return Err(SinkError::Setup {
                    target: sh.target.clone(),
                    reason: "the server offers neither AUTH=PLAIN nor LOGIN on this connection"
                        .into(),
                }
                .into());
            } else {
                let login = format!("{mailbox}{}{user}", sh.settings.master_separator);
                client.login(&login, password.expose()).map_err(conn)?
            };
            let fix = if done.status.code.as_deref() == Some("AUTHORIZATIONFAILED") {
                format!(
                    "check that {mailbox} exists on the server and that master user `{user}` may log in as it (the mapping may name a wrong mailbox)"
                )
            } else {
                format!(
                    "check `master-user` (`{user}`) and the master password in {}",
                    sh.secrets.where_to_set(password_secret)
                )
            };
            (done, fix)
        }
        ImapAuth::XOAuth2(source) => {
            if !client.has("AUTH=XOAUTH2") {
                return Err(SinkError::Setup {
                    target: sh.target.clone(),
                    reason:
                        "the server does not offer AUTH=XOAUTH2; use auth = \"login\" or \"master\""
                            .into(),
                }
                .into());
            }
            let token = match (source, &sh.tokens) {
                (XOAuth2Token::App(_), Some(tokens)) => {
                    tokens.token().map_err(|e| token_error(sh, mailbox, e))?
                }
                (XOAuth2Token::App(_), None) => unreachable!("app tokens are set up with the sink"),
                (XOAuth2Token::Secret(name), _) => secret(name)?.expose().to_string(),
            };
            let done = client
                .authenticate("XOAUTH2", &codec::sasl_xoauth2(mailbox.as_str(), &token))
                .map_err(conn)?;
            match source {
                XOAuth2Token::App(_) if done.status.status == Status::Ok => {
                    sh.app_accepted.store(true, Ordering::Relaxed);
                }
                XOAuth2Token::App(_) if !is_retryable_code(&done.status) => {
                    return Err(LoginError::TokenRefused {
                        token,
                        said: done.status.describe(),
                    });
                }
                _ => {}
            }
            (
                done,
                format!(
                    "put a valid access token (IMAP.AccessAsApp, not expired) for this mailbox's tenant in {}, or let the sink get its own with `tenant`, `client-id` and `client-secret-secret`",
                    sh.secrets.where_to_set(match source {
                        XOAuth2Token::Secret(name) => name,
                        XOAuth2Token::App(c) => &c.client_secret_secret,
                    })
                ),
            )
        }
    };
    match done.status.status {
        Status::Ok => {
            if done.status.code.as_deref() != Some("CAPABILITY") {
                client.refresh_capabilities().map_err(conn)?;
            }
            Ok(())
        }
        _ if is_retryable_code(&done.status) => Err(unavailable(sh, &done.status).into()),
        _ => Err(SinkError::Authentication {
            target: sh.target.clone(),
            mailbox: mailbox.to_string(),
            reason: done.status.describe(),
            fix,
        }
        .into()),
    }
}

/// The sink error for an app token that could not be had.
fn token_error(sh: &Shared, mailbox: &Mailbox, e: TokenError) -> SinkError {
    match e {
        TokenError::Credentials { reason, fix } => SinkError::Authentication {
            target: sh.target.clone(),
            mailbox: mailbox.to_string(),
            reason,
            fix,
        },
        e @ TokenError::NotAnEndpoint { .. } => SinkError::Setup {
            target: sh.target.clone(),
            reason: e.to_string(),
        },
        e @ TokenError::Unavailable { .. } => SinkError::Unavailable {
            target: sh.target.clone(),
            message: e.to_string(),
        },
    }
}

/// rustls client settings: the public web roots plus the CAs in `ca_file`.
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read `ca-file` {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| format!("`ca-file` {} is not PEM: {e}", path.display()))?;
            roots.add(cert).map_err(|e| {
                format!(
                    "`ca-file` {} holds an unusable certificate: {e}",
                    path.display()
                )
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(format!(
                "`ca-file` {} holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)",
                path.display()
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
