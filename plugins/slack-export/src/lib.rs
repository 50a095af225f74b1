//! # slack-export
//!
//! A source plugin for a **Slack workspace export**: the ZIP a Slack
//! workspace admin downloads (Settings → Import/Export Data → Export), or
//! the folder it unzips to, read from a folder the operator grants. Built
//! only on the public `connector-sdk`. What it reads is described in
//! `FORMAT.md` beside this crate.
//!
//! * **People**: `users.json`, with each user's `profile.email` (present
//!   when the export includes email addresses) so the host can map them to
//!   mailboxes; bots keep their bot id and name.
//! * **Conversations**: `channels.json` (public channels, `room`),
//!   `groups.json` (private channels, `room`), `mpims.json` (group DMs,
//!   `group`) and `dms.json` (DMs, `direct`), each with its members.
//! * **Messages**: one JSON file per day in each conversation's folder.
//!   Ids are `<conversation id>/<ts>`; thread replies (`thread_ts`) answer
//!   their parent; `edited` and reactions become properties; joins and
//!   leaves (`channel_join`, …) are member events; topic, purpose, rename,
//!   archive and tombstones are system messages. The message's JSON object,
//!   byte for byte, is its `original`.
//! * **Files**: a file stored inside the export (`__uploads/F…/name` or
//!   `<conversation>/attachments/F…-name`) is a `deferred` attachment read
//!   from the export in chunks; otherwise, with `"download_files": true`,
//!   the host downloads its `url_private` (`fetch`) sending the secret
//!   `slack-token` as the `Authorization` header. A file that is neither
//!   (or deleted: `tombstone`) is named in the `slack-files-not-archived`
//!   property, never dropped silently.
//!
//! Configuration: `{"path": "/export/slack.zip", "page_size": 200,
//! "download_files": false, "token_secret": "slack-token"}`.
//!
//! Checkpoint: JSON `{"v":1,"after":{"<conversation id>":"<ts>"}}`, the
//! last message emitted per conversation. A newer export of the same
//! workspace resumes correctly: only messages after each conversation's
//! mark (and conversations not seen before) are emitted.

pub mod archive;
pub mod config;
pub mod model;
pub mod reader;

use config::Config;
use connector_sdk::{AttachmentReader, ChunkReader, Page, Source, SourceError};
use reader::{Checkpoint, Reader};

/// The slack-export source: one session over one export.
pub struct SlackExport {
    reader: Reader,
    pages: u64,
}

impl Source for SlackExport {
    const NAME: &'static str = "slack-export";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    /// Checks the configuration and that the export can be found in the
    /// granted folder (validation gets the folders, not the network).
    fn validate_config(config_json: &str) -> Result<(), SourceError> {
        archive::exists(&Config::parse(config_json)?.path)
    }

    fn open(config_json: &str, checkpoint: Option<Vec<u8>>) -> Result<Self, SourceError> {
        let config = Config::parse(config_json)?;
        let checkpoint = checkpoint.map(|c| Checkpoint::decode(&c)).transpose()?;
        let resumed = checkpoint.as_ref().map_or(0, |c| c.after.len());
        let reader = Reader::open(config, checkpoint)?;
        connector_sdk::info!(
            "slack export opened";
            conversations = reader.conversations().len(),
            resumed_conversations = resumed
        );
        Ok(SlackExport { reader, pages: 0 })
    }

    fn next_page(&mut self) -> Result<Page, SourceError> {
        let page = self.reader.next_page()?;
        self.pages += 1;
        connector_sdk::info!(
            "slack export page {}", self.pages;
            messages = page.messages.len(),
            conversations = page.conversations.len(),
            complete = page.complete
        );
        Ok(page)
    }

    fn open_attachment(
        &mut self,
        message_id: &str,
        attachment_id: &str,
    ) -> Result<Box<dyn AttachmentReader>, SourceError> {
        let path = self
            .reader
            .deferred_path(message_id, attachment_id)
            .ok_or_else(|| {
                SourceError::permanent(format!(
                    "message {message_id:?} of this session has no file {attachment_id:?} in the \
                     export"
                ))
            })?
            .to_string();
        let reader = self.reader.archive_mut().open_reader(&path)?;
        Ok(Box::new(ChunkReader::new(reader)))
    }
}

connector_sdk::export!(SlackExport);
