//! Journals emails to an archive over SMTP (lettre's synchronous client).
//!
//! Each email goes, bytes unchanged, in one SMTP transaction (SMTP ends
//! every message with a line break: an email whose last line has none
//! arrives with CRLF added, RFC 5321 4.1.1.4; dot-stuffing is undone by
//! the server): `MAIL FROM`
//! the configured sender, `RCPT TO` the journal address (or, with
//! `{mailbox}` in `to`, the mailbox's own journal address), `DATA`. The
//! folder of a [`Delivery`] plays no part: a journal has none. When several
//! mailboxes of one email resolve to the same journal address, the email
//! is sent once and every delivery gets that transaction's receipt.
//!
//! One connection (implicit TLS, STARTTLS or, when spelled out, plain TCP;
//! optional AUTH with a password secret) is kept open across calls and
//! opened again after an error. lettre does not set TCP_NODELAY and does
//! not give access to its socket, so after connecting the sink sets it on
//! the process's TCP sockets whose peer is the server's address (found in
//! `/proc/self/fd`; only the sink's own connections to the archive match).
//! Without it each email waits for a delayed ACK, ~40 ms; the end-to-end
//! test measures both.
//!
//! **What [`Sink::contains`] can know.** An SMTP server cannot be asked
//! what it holds, so `contains` answers only from what this sink sent in
//! this process; the delivery ledger keeps later runs from sending again.
//! A crash between the server accepting a page's emails and the ledger
//! recording them resends that page once; journaling archives deduplicate
//! on the Message-ID, which the email keeps.
//!
//! Receipts read `smtp:<rcpt>;<code> <server's reply>` (the reply usually
//! names the queue id). `4xx` replies and lost connections are
//! [`SinkError::Unavailable`], `5xx` replies to one email
//! [`SinkError::Refused`], refused AUTH [`SinkError::Authentication`] and
//! TLS failures [`SinkError::Setup`].

mod nodelay;

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, SmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use connector_secrets::SecretLookup;
use connector_sink::{Delivery, Mailbox, Receipt, Sink, SinkError, TlsMode};
use serde::Deserialize;

/// `[sink] kind = "smtp"`: journal every email to an archive's address.
/// SMTP has no folders and cannot be asked what it holds: see the SMTP
/// sink's documentation for how duplicates are avoided.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SmtpSinkConfig {
    /// Server host name (also checked against its TLS certificate).
    pub host: String,
    /// Port; 465 with `tls = "implicit"`, 587 with `starttls`, 25 with
    /// `none`, when absent.
    #[serde(default)]
    pub port: Option<u16>,
    /// Transport security; `starttls` when absent.
    #[serde(default = "default_smtp_tls")]
    pub tls: TlsMode,
    /// PEM file of CA certificates trusted besides the public web roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// User name for SMTP AUTH (PLAIN or LOGIN); no AUTH when absent.
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the secret holding the AUTH password (with `username`).
    #[serde(default)]
    pub password_secret: Option<String>,
    /// Envelope sender (`MAIL FROM`), e.g. `connector@example.com`.
    pub from: String,
    /// Envelope recipient (`RCPT TO`): the journal address, or a template
    /// where `{mailbox}` stands for the mailbox address and `{local}` for
    /// its local part (one journal address per mailbox).
    pub to: String,
    /// Name sent in `EHLO` (`connector.invalid` when absent).
    #[serde(default)]
    pub hello_name: Option<String>,
    /// Seconds to wait for the server (120).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u32,
    /// Sets TCP_NODELAY on the connection (on by default; without it each
    /// email waits ~40 ms for a delayed ACK).
    #[serde(default = "yes")]
    pub tcp_nodelay: bool,
}

fn default_smtp_tls() -> TlsMode {
    TlsMode::Starttls
}

fn default_timeout_secs() -> u32 {
    connector_sink::DEFAULT_TIMEOUT_SECS
}

fn yes() -> bool {
    true
}

/// Resolved settings of an SMTP journal sink.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// Server host name (also the TLS server name).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Transport security.
    pub tls: TlsMode,
    /// Extra CA certificates (PEM) trusted besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// AUTH user and the secret holding its password.
    pub auth: Option<(String, String)>,
    /// Envelope sender.
    pub from: Address,
    /// Envelope recipient; `{mailbox}` is replaced by the mailbox address,
    /// `{local}` by its local part.
    pub to: String,
    /// EHLO name.
    pub hello_name: String,
    /// Connect, read and write timeout.
    pub timeout: Duration,
    /// Whether to set TCP_NODELAY.
    pub tcp_nodelay: bool,
}

impl SmtpSettings {
    /// Settings from the connector file's `[sink]` table, checked.
    pub fn from_config(config: &SmtpSinkConfig) -> Result<SmtpSettings, String> {
        if config.host.trim().is_empty() {
            return Err("`host` is empty".into());
        }
        if config.tls == TlsMode::None && config.ca_file.is_some() {
            return Err("`ca-file` is set but tls = \"none\"".into());
        }
        let auth = match (&config.username, &config.password_secret) {
            (Some(u), Some(p)) if !u.trim().is_empty() && !p.trim().is_empty() => {
                Some((u.trim().to_string(), p.trim().to_string()))
            }
            (None, None) => None,
            _ => return Err("`username` and `password-secret` go together".into()),
        };
        let from: Address = config
            .from
            .trim()
            .parse()
            .map_err(|e| format!("`from` = \"{}\" is not an address: {e}", config.from))?;
        let probe = recipient(config.to.trim(), "someone@example.com");
        probe
            .parse::<Address>()
            .map_err(|e| format!("`to` = \"{}\" is not an address: {e}", config.to))?;
        let port = config.port.unwrap_or(match config.tls {
            TlsMode::Implicit => 465,
            TlsMode::Starttls => 587,
            TlsMode::None => 25,
        });
        Ok(SmtpSettings {
            host: config.host.trim().to_string(),
            port,
            tls: config.tls,
            ca_file: config.ca_file.clone(),
            auth,
            from,
            to: config.to.trim().to_string(),
            hello_name: config
                .hello_name
                .clone()
                .unwrap_or_else(|| "connector.invalid".to_string()),
            timeout: Duration::from_secs(u64::from(config.timeout_secs.max(1))),
            tcp_nodelay: config.tcp_nodelay,
        })
    }
}

/// `template` with `{mailbox}` replaced by the mailbox address and
/// `{local}` by its local part.
fn recipient(template: &str, mailbox: &str) -> String {
    let local = mailbox.rsplit_once('@').map_or(mailbox, |(l, _)| l);
    template
        .replace("{mailbox}", mailbox)
        .replace("{local}", local)
}

/// Journals emails over SMTP; see the module documentation.
pub struct SmtpSink {
    settings: SmtpSettings,
    secrets: Arc<dyn SecretLookup>,
    tls: Option<TlsParameters>,
    target: String,
    conn: Option<SmtpConnection>,
    /// (recipient, Message-ID) → receipt, of what this sink sent.
    sent: HashMap<(String, String), String>,
}

impl fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSink")
            .field("target", &self.target)
            .field("sent", &self.sent.len())
            .finish()
    }
}

impl SmtpSink {
    /// The sink a `[sink] kind = "smtp"` table describes, with credentials
    /// from `secrets`. Nothing connects yet.
    pub fn open(
        config: &SmtpSinkConfig,
        secrets: Arc<dyn SecretLookup>,
    ) -> Result<SmtpSink, SinkError> {
        let settings = SmtpSettings::from_config(config).map_err(|reason| SinkError::Setup {
            target: format!("smtp://{}", config.host),
            reason,
        })?;
        SmtpSink::new(settings, secrets)
    }

    /// A sink for these settings; the AUTH password comes from `secrets`.
    /// Nothing connects until the first delivery. Fails when the CA file
    /// cannot be used.
    pub fn new(
        settings: SmtpSettings,
        secrets: Arc<dyn SecretLookup>,
    ) -> Result<SmtpSink, SinkError> {
        let target = format!("smtp://{}:{}", settings.host, settings.port);
        let setup = |reason: String| SinkError::Setup {
            target: target.clone(),
            reason,
        };
        let tls = match settings.tls {
            TlsMode::None => None,
            TlsMode::Implicit | TlsMode::Starttls => {
                let mut builder = TlsParameters::builder(settings.host.clone()).certificate_store(
                    lettre::transport::smtp::client::CertificateStore::WebpkiRoots,
                );
                if let Some(path) = &settings.ca_file {
                    let pem = std::fs::read(path).map_err(|e| {
                        setup(format!("cannot read `ca-file` {}: {e}", path.display()))
                    })?;
                    let cert = Certificate::from_pem(&pem).map_err(|e| {
                        setup(format!(
                            "`ca-file` {} is not a PEM certificate: {e}",
                            path.display()
                        ))
                    })?;
                    builder = builder.add_root_certificate(cert);
                }
                Some(
                    builder
                        .build_rustls()
                        .map_err(|e| setup(format!("cannot set up TLS: {e}")))?,
                )
            }
        };
        Ok(SmtpSink {
            settings,
            secrets,
            tls,
            target,
            conn: None,
            sent: HashMap::new(),
        })
    }

    /// The journal address of a mailbox.
    fn recipient(&self, mailbox: &Mailbox) -> String {
        recipient(&self.settings.to, mailbox.as_str())
    }

    fn unavailable(&self, message: String) -> SinkError {
        SinkError::Unavailable {
            target: self.target.clone(),
            message,
        }
    }

    /// The open connection, connecting (TLS, AUTH) when needed.
    fn connection(&mut self, mailbox: &Mailbox) -> Result<&mut SmtpConnection, SinkError> {
        if self.conn.as_ref().is_some_and(|c| c.has_broken()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let conn = self.connect(mailbox)?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("set above"))
    }

    fn connect(&self, mailbox: &Mailbox) -> Result<SmtpConnection, SinkError> {
        let s = &self.settings;
        let addrs: Vec<SocketAddr> = (s.host.as_str(), s.port)
            .to_socket_addrs()
            .map_err(|e| self.unavailable(format!("cannot resolve {}: {e}", s.host)))?
            .collect();
        let hello = ClientId::Domain(s.hello_name.clone());
        let implicit = match s.tls {
            TlsMode::Implicit => self.tls.as_ref(),
            _ => None,
        };
        let mut conn = SmtpConnection::connect(&addrs[..], Some(s.timeout), &hello, implicit, None)
            .map_err(|e| self.transport_error(e, "connecting"))?;
        if s.tcp_nodelay {
            let set = nodelay::set_for_peers(&addrs);
            tracing::debug!(target = %self.target, sockets = set, "TCP_NODELAY set");
        }
        if s.tls == TlsMode::Starttls {
            if !conn.can_starttls() {
                conn.abort();
                return Err(SinkError::Setup {
                    target: self.target.clone(),
                    reason: "the server does not offer STARTTLS; use tls = \"implicit\" or, on a loopback test server only, \"none\"".into(),
                });
            }
            let params = self.tls.as_ref().expect("TLS parameters for STARTTLS");
            conn.starttls(params, &hello)
                .map_err(|e| self.transport_error(e, "STARTTLS"))?;
        }
        if let Some((user, secret_name)) = &s.auth {
            let password = match self.secrets.secret(secret_name) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    return Err(SinkError::Authentication {
                        target: self.target.clone(),
                        mailbox: mailbox.to_string(),
                        reason: format!("the secret `{secret_name}` is not set"),
                        fix: format!("set {}", self.secrets.where_to_set(secret_name)),
                    });
                }
                Err(e) => {
                    return Err(SinkError::Authentication {
                        target: self.target.clone(),
                        mailbox: mailbox.to_string(),
                        reason: format!("the secret `{secret_name}` cannot be read: {e}"),
                        fix: "fix the connector's [secrets] source".into(),
                    });
                }
            };
            let credentials = Credentials::new(user.clone(), password.expose().to_string());
            if let Err(e) = conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials) {
                conn.abort();
                return Err(if e.is_transient() || e.is_timeout() {
                    self.transport_error(e, "AUTH")
                } else {
                    SinkError::Authentication {
                        target: self.target.clone(),
                        mailbox: mailbox.to_string(),
                        reason: e.to_string(),
                        fix: format!(
                            "check `username` (`{user}`) and the password in {}",
                            self.secrets.where_to_set(secret_name)
                        ),
                    }
                });
            }
        }
        tracing::debug!(target = %self.target, "SMTP connection open");
        Ok(conn)
    }

    /// A connection-level error (not about one email).
    fn transport_error(&self, e: lettre::transport::smtp::Error, doing: &str) -> SinkError {
        if e.is_tls() {
            SinkError::Setup {
                target: self.target.clone(),
                reason: format!("{doing}: {e}"),
            }
        } else {
            self.unavailable(format!("{doing}: {e}"))
        }
    }

    /// Sends one email to one recipient.
    fn send_one(
        &mut self,
        mailbox: &Mailbox,
        rcpt: &str,
        message_id: &str,
        bytes: &[u8],
    ) -> Result<Receipt, SinkError> {
        let to: Address = rcpt.parse().map_err(|e| SinkError::InvalidMailbox {
            mailbox: mailbox.to_string(),
            reason: format!("its journal address `{rcpt}` is not an address: {e}"),
        })?;
        let envelope = Envelope::new(Some(self.settings.from.clone()), vec![to]).map_err(|e| {
            SinkError::InvalidMailbox {
                mailbox: mailbox.to_string(),
                reason: format!("no envelope for `{rcpt}`: {e}"),
            }
        })?;
        // lettre ends DATA with CRLF.CRLF, whose first CRLF ends the last
        // line: leave the email's own final CRLF to it, so the server
        // stores exactly the email's bytes.
        let body = bytes.strip_suffix(b"\r\n").unwrap_or(bytes);
        let conn = self.connection(mailbox)?;
        match conn.send(&envelope, body) {
            Ok(response) => {
                let text = response.message().collect::<Vec<_>>().join(" ");
                let receipt = format!("smtp:{rcpt};{} {text}", response.code());
                self.sent
                    .insert((rcpt.to_string(), message_id.to_string()), receipt.clone());
                Ok(Receipt(receipt))
            }
            Err(e) => {
                let broken = conn.has_broken();
                if broken {
                    self.conn = None;
                } else if let Some(c) = self.conn.as_mut() {
                    // Leave the transaction, keep the connection.
                    if c.command(lettre::transport::smtp::commands::Rset).is_err() {
                        self.conn = None;
                    }
                }
                if e.is_permanent() {
                    Err(SinkError::Refused {
                        target: self.target.clone(),
                        mailbox: mailbox.to_string(),
                        message_id: message_id.to_string(),
                        reason: format!("the server answered {e} for RCPT {rcpt}"),
                    })
                } else if e.is_client() {
                    Err(SinkError::Refused {
                        target: self.target.clone(),
                        mailbox: mailbox.to_string(),
                        message_id: message_id.to_string(),
                        reason: e.to_string(),
                    })
                } else {
                    self.conn = None;
                    Err(self.transport_error(e, "sending"))
                }
            }
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = conn.set_timeout(Some(Duration::from_secs(2)));
            let _ = conn.quit();
        }
    }
}

impl Sink for SmtpSink {
    fn describe(&self) -> String {
        let tls = match self.settings.tls {
            TlsMode::Implicit => "TLS",
            TlsMode::Starttls => "STARTTLS",
            TlsMode::None => "plain text",
        };
        format!(
            "smtp {}:{} ({tls}) to {}",
            self.settings.host, self.settings.port, self.settings.to
        )
    }

    fn contains(
        &mut self,
        mailbox: &Mailbox,
        _folder: &str,
        message_id: &str,
    ) -> Result<bool, SinkError> {
        // Only what this sink sent is known: see the module documentation.
        let rcpt = self.recipient(mailbox);
        Ok(self.sent.contains_key(&(rcpt, message_id.to_string())))
    }

    fn deliver(&mut self, batch: &[Delivery<'_>]) -> Vec<Result<Receipt, SinkError>> {
        let mut out = Vec::with_capacity(batch.len());
        let mut broken: Option<String> = None;
        for d in batch {
            let rcpt = self.recipient(d.mailbox);
            let key = (rcpt.clone(), d.email.message_id.clone());
            if let Some(receipt) = self.sent.get(&key) {
                out.push(Ok(Receipt(receipt.clone())));
                continue;
            }
            if let Some(message) = &broken {
                out.push(Err(self.unavailable(message.clone())));
                continue;
            }
            // lettre sends DATA from memory, so a spooled email is read whole.
            let result = match d.email.bytes() {
                Ok(bytes) => self.send_one(d.mailbox, &rcpt, &d.email.message_id, &bytes),
                Err(source) => Err(SinkError::io(
                    d.email.spool_path().unwrap_or(Path::new("")).to_path_buf(),
                    source,
                )),
            };
            if let Err(e) = &result
                && (e.is_retryable() || e.is_fatal())
            {
                // The server is gone or the set-up is wrong: the rest
                // waits for the retry.
                broken = Some(format!("not sent: an earlier send failed ({e})"));
            }
            out.push(result);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SmtpSinkConfig {
        SmtpSinkConfig {
            host: "smtp.example.test".into(),
            port: None,
            tls: TlsMode::Starttls,
            ca_file: None,
            username: None,
            password_secret: None,
            from: "connector@example.test".into(),
            to: "journal@archive.example.test".into(),
            hello_name: None,
            timeout_secs: 120,
            tcp_nodelay: true,
        }
    }

    #[test]
    fn settings_pick_ports_and_check_addresses() {
        let s = SmtpSettings::from_config(&config()).unwrap();
        assert_eq!(s.port, 587);
        let s = SmtpSettings::from_config(&SmtpSinkConfig {
            tls: TlsMode::Implicit,
            ..config()
        })
        .unwrap();
        assert_eq!(s.port, 465);
        let err = SmtpSettings::from_config(&SmtpSinkConfig {
            to: "not an address".into(),
            ..config()
        })
        .unwrap_err();
        assert!(err.contains("`to`"), "{err}");
        let err = SmtpSettings::from_config(&SmtpSinkConfig {
            username: Some("u".into()),
            ..config()
        })
        .unwrap_err();
        assert!(err.contains("password-secret"), "{err}");
        SmtpSettings::from_config(&SmtpSinkConfig {
            to: "journal+{local}@archive.example.test".into(),
            ..config()
        })
        .unwrap();
        assert_eq!(
            recipient("journal+{local}@a.test", "bob@x.test"),
            "journal+bob@a.test"
        );
        assert_eq!(recipient("{mailbox}", "bob@x.test"), "bob@x.test");
    }
}
