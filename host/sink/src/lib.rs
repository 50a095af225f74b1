//! The sink interface: imports emails into mailboxes. Each mail store is
//! its own crate (`connector-sink-maildir`, `-imap`, `-smtp`, `-graph`)
//! that implements [`Sink`] and owns its configuration and constructor.
//!
//! A [`Sink`] stores each email in a folder of a mailbox. It must never
//! store the same email twice in the same folder: [`Sink::contains`] answers
//! whether an email with a given Message-ID is already there, which lets a
//! run that crashed between delivering and recording the delivery pick up
//! without duplicates.

pub mod budget;
pub mod mutf7;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

pub use budget::{LocalBudget, MailboxBudget, MailboxLimits};
pub use connector_email::Email;
pub use connector_model::Mailbox;

/// How a connection to a mail store is secured (IMAP and SMTP).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS, port 993).
    #[default]
    Implicit,
    /// Plain text upgraded with STARTTLS before logging in (port 143).
    Starttls,
    /// No encryption at all: only for tests on a loopback address.
    None,
}

/// Seconds a sink waits for its server when its configuration sets none.
pub const DEFAULT_TIMEOUT_SECS: u32 = 120;

/// One email to store in one folder of one mailbox.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The mailbox.
    pub mailbox: &'a Mailbox,
    /// Logical folder path, `/`-separated, e.g. `INBOX/Symphony`.
    pub folder: &'a str,
    /// The email.
    pub email: &'a Email,
}

/// Where a sink put an email (for a Maildir, its path relative to the
/// root), recorded in the delivery ledger.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(pub String);

/// Why a delivery failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// The mail store cannot be reached now.
    #[error(
        "the mail store {target} is unavailable: {message}; check that it is running and reachable, the run retries later"
    )]
    Unavailable {
        /// Which store.
        target: String,
        /// What happened.
        message: String,
    },
    /// Reading or writing the store failed.
    #[error(
        "cannot use {}: {source}; free space or mend the permissions there: nothing is lost, the daemon retries on its own and a run started again goes on from its last committed page", path.display()
    )]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the file system said (shared, so that a batch that failed
        /// as a whole can report it for each of its items).
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The folder name cannot be stored.
    #[error(
        "folder `{folder}` cannot be stored: {reason}; change the connector's `folder` setting"
    )]
    InvalidFolder {
        /// The logical folder path.
        folder: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The mailbox name cannot be stored.
    #[error("mailbox `{mailbox}` cannot be stored: {reason}; fix the mapping for this person")]
    InvalidMailbox {
        /// The mailbox.
        mailbox: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store rejected this email or mailbox.
    #[error(
        "{target} refused the email {message_id} for {mailbox}: {reason}; the item is kept as failed, fix the cause and run again"
    )]
    Refused {
        /// Which store.
        target: String,
        /// The mailbox.
        mailbox: String,
        /// The email's Message-ID.
        message_id: String,
        /// What the store said.
        reason: String,
    },
    /// The store refused the credentials (or they are missing).
    #[error("{target} refused the login for {mailbox}: {reason}; {fix}, then run again")]
    Authentication {
        /// Which store.
        target: String,
        /// The mailbox being logged in to.
        mailbox: String,
        /// What the store (or the secret source) said.
        reason: String,
        /// Which credential to fix, and where.
        fix: String,
    },
    /// The sink's settings cannot work with this store (certificate not
    /// trusted, TLS or authentication method not offered, CA file
    /// unusable).
    #[error("cannot use {target}: {reason}; fix the connector's [sink] settings, then run again")]
    Setup {
        /// Which store.
        target: String,
        /// What is wrong.
        reason: String,
    },
}

impl SinkError {
    /// Whether trying again later may succeed (the store was unavailable or
    /// an I/O operation failed) rather than the item or mailbox having been
    /// refused.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Unavailable { .. } | SinkError::Io { .. } => true,
            SinkError::InvalidFolder { .. }
            | SinkError::InvalidMailbox { .. }
            | SinkError::Refused { .. }
            | SinkError::Authentication { .. }
            | SinkError::Setup { .. } => false,
        }
    }

    /// Whether the error concerns the whole sink (credentials, TLS, server
    /// set-up) rather than one item: the run stops instead of quarantining
    /// items one by one, and the operator fixes the setting first.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            SinkError::Authentication { .. } | SinkError::Setup { .. }
        )
    }

    /// An I/O error on `path`.
    pub fn io(path: PathBuf, source: std::io::Error) -> SinkError {
        SinkError::Io {
            path,
            source: Arc::new(source),
        }
    }
}

/// A mail store that emails are imported into.
pub trait Sink: Send {
    /// A short description for logs, e.g. `maildir /var/mail/archive`.
    fn describe(&self) -> String;

    /// Whether an email with this Message-ID (without angle brackets) is
    /// already in the folder. Implementations read what a folder holds once
    /// and cache it; deliveries made through the same sink keep the cache
    /// current.
    fn contains(
        &mut self,
        mailbox: &Mailbox,
        folder: &str,
        message_id: &str,
    ) -> Result<bool, SinkError>;

    /// [`Sink::contains`] for each of `queries` (mailbox, folder,
    /// Message-ID), in order. A sink that must read many mailboxes first
    /// reads them concurrently here.
    fn contains_each(
        &mut self,
        queries: &[(&Mailbox, &str, &str)],
    ) -> Vec<Result<bool, SinkError>> {
        queries
            .iter()
            .map(|(mailbox, folder, message_id)| self.contains(mailbox, folder, message_id))
            .collect()
    }

    /// Keeps the per-mailbox limits of the mail store in `budget`, shared
    /// with every worker using the same budget, rather than in this
    /// process alone. Sinks of stores without such limits ignore it.
    fn share_budget(&mut self, _budget: Arc<dyn MailboxBudget>) {}

    /// Stores the emails; one result per delivery, in order. An email whose
    /// Message-ID is already in the folder is not stored again: its result
    /// is the receipt of the copy already there.
    fn deliver(&mut self, batch: &[Delivery<'_>]) -> Vec<Result<Receipt, SinkError>>;

    /// [`Sink::deliver`], told what the caller delivers next: a sink that
    /// pipelines its requests may write some of `next` before it waits for
    /// the last answers to `batch`, so that the store is not idle between
    /// two calls. What it wrote ahead is stored whether or not a later call
    /// asks for it, so `next` holds only emails the caller is about to
    /// deliver; the call that does gets their receipts as for any other.
    /// Sinks without pipelining deliver `batch` alone.
    fn deliver_before(
        &mut self,
        batch: &[Delivery<'_>],
        next: &[Delivery<'_>],
    ) -> Vec<Result<Receipt, SinkError>> {
        let _ = next;
        self.deliver(batch)
    }
}
