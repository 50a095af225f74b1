//! The connector file's `[sink]` table: which mail store, in that store's
//! own configuration type, and the one place that opens it.

use std::sync::Arc;

use serde::Deserialize;

use connector_secrets::SecretSource;
use connector_sink::{Sink, SinkError};
use connector_sink_graph::{GraphSink, GraphSinkConfig};
use connector_sink_imap::{ImapSink, ImapSinkConfig};
use connector_sink_maildir::{MaildirConfig, MaildirSink};
use connector_sink_smtp::{SmtpSink, SmtpSinkConfig};

/// Where mail is imported.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SinkConfig {
    /// A local Maildir++ tree, one maildir per mailbox; see
    /// [`MaildirConfig`].
    Maildir(MaildirConfig),
    /// An IMAP server (Dovecot, Exchange Online, …); see
    /// [`ImapSinkConfig`].
    Imap(ImapSinkConfig),
    /// An SMTP journaling address of an archive; see [`SmtpSinkConfig`].
    Smtp(SmtpSinkConfig),
    /// Exchange Online mailboxes through Microsoft Graph (app-only); see
    /// [`GraphSinkConfig`].
    Graph(GraphSinkConfig),
}

impl SinkConfig {
    /// The store's kind and where it is, for people (no secrets).
    pub fn describe(&self) -> String {
        let port = |p: Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
        match self {
            SinkConfig::Maildir(c) => format!("maildir at {}", c.path.display()),
            SinkConfig::Imap(c) => format!("imap {}{}", c.host, port(c.port)),
            SinkConfig::Smtp(c) => format!("smtp {}{}", c.host, port(c.port)),
            SinkConfig::Graph(c) => format!("graph tenant {} at {}", c.tenant, c.graph_url),
        }
    }

    /// The sink this table describes. Its credentials (IMAP passwords,
    /// tokens, client secrets) are the operator's: read from the
    /// connector's secret source, not from the plugin's grants. Nothing
    /// connects yet.
    pub fn open(&self, secrets: &SecretSource) -> Result<Box<dyn Sink>, SinkError> {
        let secrets = Arc::new(secrets.clone());
        Ok(match self {
            SinkConfig::Maildir(config) => Box::new(MaildirSink::open(config)),
            SinkConfig::Imap(config) => Box::new(ImapSink::open(config, secrets)?),
            SinkConfig::Smtp(config) => Box::new(SmtpSink::open(config, secrets)?),
            SinkConfig::Graph(config) => Box::new(GraphSink::open(config, secrets)?),
        })
    }
}
