//! What the host knows about a source plugin, whatever it is built with: its
//! capabilities, its secrets, and the session interface the pipeline drives.

pub mod capabilities;
pub mod error;
pub mod loader;
pub mod secrets;

pub use capabilities::Capabilities;
pub use error::PluginError;
pub use secrets::SecretStore;

use crate::model::{Conversation, Message};

/// A page of normalized messages with attachments already fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Conversations first described in this page.
    pub conversations: Vec<Conversation>,
    /// Messages in import order.
    pub messages: Vec<Message>,
    /// The position after this page, committed once the page is delivered.
    pub checkpoint: Vec<u8>,
    /// Whether the source has nothing more for now.
    pub complete: bool,
}

impl Page {
    /// This page followed by `next`, as one: the conversations and
    /// messages of both, `next`'s checkpoint and completeness.
    pub fn absorb(&mut self, next: Page) {
        self.conversations.extend(next.conversations);
        self.messages.extend(next.messages);
        self.checkpoint = next.checkpoint;
        self.complete = next.complete;
    }
}

/// One run of a source: the pipeline pulls pages until one is complete.
pub trait SourceSession {
    /// The next page.
    fn next_page(&mut self) -> Result<Page, PluginError>;
}

/// A loaded plugin that can start sessions.
pub trait Source {
    /// Checks the plugin's configuration without touching the network.
    fn validate_config(&mut self, config_json: &str) -> Result<(), PluginError>;
    /// Starts a session from the last committed checkpoint.
    fn open(
        &mut self,
        config_json: &str,
        checkpoint: Option<Vec<u8>>,
    ) -> Result<Box<dyn SourceSession + '_>, PluginError>;
}
