//! A built email: its bytes in memory, or in a spool file when it is big.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use super::spool::{SPOOL_BUFFER, new_spool_file};
use super::writer::Built;
use connector_model::TimestampMs;
use connector_model::digest::{HashingWriter, sha256_hex};

/// An email built from one message.
///
/// Small emails live in memory. An email larger than the converter's
/// spool threshold (one with a big attachment) lives in a temporary file
/// that is removed when the last clone of the email is dropped, so a
/// 100 MB attachment is never held in memory whole.
#[derive(Debug, Clone)]
pub struct Email {
    /// The Message-ID, without angle brackets (see
    /// [`super::EmailConverter::message_id`]).
    pub message_id: String,
    /// Lower-case hex SHA-256 of the email's bytes.
    pub sha256: String,
    /// When the message was sent; mailboxes use it as the arrival date.
    pub sent_at: TimestampMs,
    content: Content,
    len: u64,
}

#[derive(Debug, Clone)]
enum Content {
    Memory(Arc<Vec<u8>>),
    Spooled(Arc<tempfile::TempPath>),
}

impl PartialEq for Email {
    fn eq(&self, other: &Email) -> bool {
        self.message_id == other.message_id
            && self.sha256 == other.sha256
            && self.sent_at == other.sent_at
            && self.len == other.len
    }
}

impl Eq for Email {}

impl Email {
    /// An email whose RFC 5322 bytes (CRLF line endings) are given whole;
    /// its SHA-256 is computed here.
    pub fn from_bytes(message_id: String, bytes: Vec<u8>, sent_at: TimestampMs) -> Email {
        let sha256 = sha256_hex(&bytes);
        Email {
            message_id,
            sha256,
            sent_at,
            len: bytes.len() as u64,
            content: Content::Memory(Arc::new(bytes)),
        }
    }

    /// An email copied from `reader` into a new spool file in `dir` (for an
    /// email stored elsewhere that is too big to hold in memory), hashed on
    /// the way.
    pub fn spool_from(
        message_id: String,
        reader: &mut impl Read,
        dir: &Path,
        sent_at: TimestampMs,
    ) -> io::Result<Email> {
        let (file, path) = new_spool_file(dir)?;
        let mut out = HashingWriter::new(io::BufWriter::with_capacity(SPOOL_BUFFER, file));
        io::copy(reader, &mut out)?;
        let (file, sha256, len) = out.finish();
        file.into_inner().map_err(|e| e.into_error())?;
        Ok(Email {
            message_id,
            sha256,
            sent_at,
            len,
            content: Content::Spooled(Arc::new(path)),
        })
    }

    /// An email built by [`super::EmailConverter`]: in memory or in a spool
    /// file, with its size and hash already known.
    pub(super) fn built(message_id: String, built: Built, sent_at: TimestampMs) -> Email {
        Email {
            message_id,
            sha256: built.sha256,
            sent_at,
            len: built.len,
            content: match built.spool {
                Some(path) => Content::Spooled(Arc::new(path)),
                None => Content::Memory(Arc::new(built.memory)),
            },
        }
    }

    /// The size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the email has no bytes (never the case for a built email).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, when the email is held in memory.
    pub fn in_memory(&self) -> Option<&[u8]> {
        match &self.content {
            Content::Memory(bytes) => Some(bytes),
            Content::Spooled(_) => None,
        }
    }

    /// The spool file, when the email is held in one.
    pub fn spool_path(&self) -> Option<&Path> {
        match &self.content {
            Content::Memory(_) => None,
            Content::Spooled(path) => Some(path),
        }
    }

    /// The whole email as bytes: borrowed when it is in memory, read from
    /// its spool file otherwise (for stores that need it whole).
    pub fn bytes(&self) -> io::Result<Cow<'_, [u8]>> {
        match &self.content {
            Content::Memory(bytes) => Ok(Cow::Borrowed(bytes)),
            Content::Spooled(path) => {
                let mut bytes = Vec::with_capacity(self.len as usize);
                self.open_spool(path)?.read_to_end(&mut bytes)?;
                Ok(Cow::Owned(bytes))
            }
        }
    }

    /// Writes the email to `out` (a spooled email is copied from its file
    /// without being loaded whole).
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        match &self.content {
            Content::Memory(bytes) => out.write_all(bytes),
            Content::Spooled(path) => {
                let copied = io::copy(&mut self.open_spool(path)?, out)?;
                if copied != self.len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the spool file {} holds {copied} bytes instead of {}",
                            path.display(),
                            self.len
                        ),
                    ));
                }
                Ok(())
            }
        }
    }

    fn open_spool(&self, path: &Path) -> io::Result<File> {
        File::open(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open the email spool file {}: {e}", path.display()),
            )
        })
    }
}
