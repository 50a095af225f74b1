//! # chat-export
//!
//! An example source plugin built only on `connector-sdk`: it reads a chat
//! export in JSON Lines (the format is defined in `FORMAT.md` beside this
//! crate) from a file in a folder the operator grants, or over HTTP.
//!
//! Configuration: `{"path": "/export/chat.jsonl"}` (a guest path inside the
//! granted folder) or `{"url": "http://host:port/chat.jsonl"}`, with an
//! optional `"page_size"` (default 200, at most 5000).
//!
//! The checkpoint is the byte offset of the next unread line, as the UTF-8
//! JSON `{"offset":N}`. A session that resumes reads the export again from
//! its start, learning the conversations described before the offset but
//! emitting only the messages after it.
//!
//! The parsing and paging logic lives in [`mod@format`] and [`reader`], which do
//! no I/O of their own and are tested natively; this file connects them to
//! the file system, HTTP and the SDK's [`Source`] trait.

pub mod config;
pub mod format;
pub mod reader;

use config::{Config, Location};
use connector_sdk::http::{self, Request};
use connector_sdk::{AttachmentReader, ChunkReader, Page, Source, SourceError};
use reader::PageReader;
use std::io::{BufRead, BufReader};

/// Size of the read buffer for the export.
const BUFFER_BYTES: usize = 256 * 1024;

/// The chat-export source: one sync session over one export.
pub struct ChatExport {
    config: Config,
    pages: PageReader<Box<dyn BufRead>>,
    page_number: u64,
}

fn open_file(path: &str) -> Result<std::fs::File, SourceError> {
    connector_sdk::files::open("the export", path)
}

fn get(url: &str) -> Result<http::Response, SourceError> {
    Request::get(url).send()?.error_for_status()
}

/// Resolves `relative` (already checked: no `..`, no leading `/`) against the
/// folder of the export URL, percent-encoding each path segment.
fn join_url(export_url: &str, relative: &str) -> String {
    let base = export_url.split(['?', '#']).next().unwrap_or(export_url);
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let folder = match base[scheme_end..].rfind('/') {
        Some(i) => &base[..scheme_end + i + 1],
        None => return format!("{base}/{}", encode_path(relative)),
    };
    format!("{folder}{}", encode_path(relative))
}

fn encode_path(relative: &str) -> String {
    let mut out = String::with_capacity(relative.len());
    for b in relative.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Resolves `relative` against the folder of the export file.
fn join_path(export_path: &str, relative: &str) -> String {
    match export_path.rfind('/') {
        Some(i) => format!("{}/{relative}", &export_path[..i]),
        None => relative.to_string(),
    }
}

impl Source for ChatExport {
    const NAME: &'static str = "chat-export";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    /// Checks the configuration and, for an export in a granted folder,
    /// that the file can be opened (validation gets the folders, not the
    /// network).
    fn validate_config(config_json: &str) -> Result<(), SourceError> {
        match Config::parse(config_json)?.location {
            Location::Path(path) => open_file(&path).map(drop),
            Location::Url(_) => Ok(()),
        }
    }

    fn open(config_json: &str, checkpoint: Option<Vec<u8>>) -> Result<Self, SourceError> {
        let config = Config::parse(config_json)?;
        let start = match checkpoint {
            Some(bytes) => reader::decode_checkpoint(&bytes)?,
            None => 0,
        };
        let input: Box<dyn BufRead> = match &config.location {
            Location::Path(path) => {
                Box::new(BufReader::with_capacity(BUFFER_BYTES, open_file(path)?))
            }
            Location::Url(url) => Box::new(BufReader::with_capacity(
                BUFFER_BYTES,
                get(url)?.into_reader(),
            )),
        };
        let pages = PageReader::new(input, start, config.page_size)?;
        connector_sdk::info!("chat export opened"; resume_offset = start, page_size = config.page_size);
        Ok(ChatExport {
            config,
            pages,
            page_number: 0,
        })
    }

    fn next_page(&mut self) -> Result<Page, SourceError> {
        let page = self.pages.next_page()?;
        self.page_number += 1;
        connector_sdk::info!(
            "chat export page {}", self.page_number;
            messages = page.messages.len(),
            conversations = page.conversations.len(),
            offset = self.pages.offset(),
            complete = page.complete
        );
        Ok(page)
    }

    fn open_attachment(
        &mut self,
        message_id: &str,
        attachment_id: &str,
    ) -> Result<Box<dyn AttachmentReader>, SourceError> {
        let relative = self
            .pages
            .deferred_path(message_id, attachment_id)
            .ok_or_else(|| {
                SourceError::permanent(format!(
                    "message {message_id:?} of this session has no deferred attachment \
                     {attachment_id:?}"
                ))
            })?;
        connector_sdk::debug!("opening attachment"; message = message_id, attachment = attachment_id, path = relative);
        match &self.config.location {
            Location::Path(path) => {
                let full = join_path(path, relative);
                let file = std::fs::File::open(&full).map_err(|e| {
                    SourceError::permanent(format!(
                        "attachment {attachment_id:?} of message {message_id:?}: cannot open \
                         {full}: {e}"
                    ))
                })?;
                Ok(Box::new(ChunkReader::new(file)))
            }
            Location::Url(url) => {
                let response = get(&join_url(url, relative))?;
                Ok(Box::new(ChunkReader::new(response.into_reader())))
            }
        }
    }
}

connector_sdk::export!(ChatExport);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths() {
        assert_eq!(
            join_url("http://h:8/x/chat.jsonl?t=1", "files/a b.pdf"),
            "http://h:8/x/files/a%20b.pdf"
        );
        assert_eq!(join_url("http://h", "f/ü.txt"), "http://h/f/%C3%BC.txt");
        assert_eq!(
            join_path("/export/chat.jsonl", "files/a.pdf"),
            "/export/files/a.pdf"
        );
    }

    #[test]
    fn session_over_sample_file() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sample/chat.jsonl");
        let config = format!(r#"{{"path": "{dir}", "page_size": 10}}"#);
        ChatExport::validate_config(&config).unwrap();
        let mut session = ChatExport::open(&config, None).unwrap();
        let mut count = 0;
        let mut deferred = Vec::new();
        loop {
            let page = session.next_page().unwrap();
            for m in &page.messages {
                for a in &m.attachments {
                    if a.body == connector_sdk::AttachmentBody::Deferred {
                        deferred.push((m.id.clone(), a.id.clone(), a.size));
                    }
                }
            }
            count += page.messages.len();
            if page.complete {
                break;
            }
        }
        assert!(count >= 30);
        assert!(!deferred.is_empty());
        for (message, attachment, size) in deferred {
            let mut reader = session.open_attachment(&message, &attachment).unwrap();
            let mut bytes = Vec::new();
            while let Some(chunk) = reader.read(7).unwrap() {
                assert!(chunk.len() <= 7);
                bytes.extend(chunk);
            }
            assert!(!bytes.is_empty());
            if let Some(size) = size {
                assert_eq!(bytes.len() as u64, size);
            }
        }
        assert!(matches!(
            session.open_attachment("nope", "x"),
            Err(SourceError::Permanent(_))
        ));
    }

    #[test]
    fn missing_file_is_a_config_error() {
        let err = ChatExport::open(r#"{"path": "/nonexistent/chat.jsonl"}"#, None)
            .err()
            .unwrap();
        assert!(matches!(err, SourceError::InvalidConfig(_)));
    }
}
