//! Where mail-builder writes an email: memory first, a spool file once the
//! email grows past a threshold, hashed as it is written, with attachment
//! bodies base64-encoded in chunks straight from their source.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use encodify::base64::MIME;

use super::spool::{SPOOL_BUFFER, new_spool_file};
use connector_model::digest::{HashingWriter, sha256_hex};

/// Input bytes per base64 line (76 characters).
const LINE_INPUT: usize = 57;
/// Attachment bytes encoded at a time: whole lines, so that the pieces
/// join into the same text as one encoding of the whole.
const CHUNK_INPUT: usize = LINE_INPUT * 1024;
/// Marks the place of an attachment body in what mail-builder writes.
const PLACEHOLDER: &[u8] = b"\0connector-attachment:";

/// Where an attachment's bytes come from.
pub(super) enum AttachmentSource<'a> {
    /// Held in memory.
    Bytes(&'a [u8]),
    /// A spooled file.
    File(&'a Path),
}

/// The body mail-builder is given for attachment `index`: the writer puts
/// the attachment's base64 text in its place.
pub(super) fn placeholder(index: usize) -> Vec<u8> {
    let mut out = PLACEHOLDER.to_vec();
    out.extend_from_slice(index.to_string().as_bytes());
    out.push(0);
    out
}

/// A finished email's bytes.
pub(crate) struct Built {
    /// The bytes, when they stayed in memory.
    pub memory: Vec<u8>,
    /// The spool file, when they did not.
    pub spool: Option<tempfile::TempPath>,
    /// The size.
    pub len: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
}

/// Why writing an email failed.
pub(super) enum WriteError {
    /// An attachment's spooled file could not be read.
    Attachment {
        /// Index of the attachment in the message.
        index: usize,
        /// What the file system said.
        source: io::Error,
    },
    /// The email's spool file could not be written.
    Spool(io::Error),
}

/// Collects an email as mail-builder writes it.
pub(super) struct EmailWriter<'a> {
    attachments: &'a [AttachmentSource<'a>],
    spool_dir: &'a Path,
    spill_above: usize,
    memory: Vec<u8>,
    /// Once spilled: the spool file (hashing what it is given) and its path.
    file: Option<(BufWriter<HashingWriter<File>>, tempfile::TempPath)>,
    len: u64,
    scratch: Vec<u8>,
    /// The first failure; [`mail_builder::Writer`] cannot return one.
    error: Option<WriteError>,
}

impl<'a> EmailWriter<'a> {
    /// A writer that keeps up to `spill_above` bytes in memory and spools
    /// bigger emails into `spool_dir`.
    pub fn new(
        attachments: &'a [AttachmentSource<'a>],
        spool_dir: &'a Path,
        spill_above: usize,
    ) -> EmailWriter<'a> {
        EmailWriter {
            attachments,
            spool_dir,
            spill_above,
            memory: Vec::with_capacity(4096),
            file: None,
            len: 0,
            scratch: Vec::new(),
            error: None,
        }
    }

    /// The email's bytes, size and hash.
    pub fn finish(mut self) -> Result<Built, WriteError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let (spool, sha256) = match self.file.take() {
            // In memory: hashed in one pass, faster than write by write.
            None => (None, sha256_hex(&self.memory)),
            Some((file, path)) => {
                let file = file
                    .into_inner()
                    .map_err(|e| WriteError::Spool(e.into_error()))?;
                let (_, sha256, _) = file.finish();
                (Some(path), sha256)
            }
        };
        Ok(Built {
            memory: self.memory,
            spool,
            len: self.len,
            sha256,
        })
    }

    /// Appends bytes of the email.
    fn put(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.len += bytes.len() as u64;
        if self.file.is_none()
            && self.memory.len() + bytes.len() > self.spill_above
            && let Err(e) = self.spill()
        {
            self.error = Some(WriteError::Spool(e));
            return;
        }
        match &mut self.file {
            Some((file, _)) => {
                if let Err(e) = file.write_all(bytes) {
                    self.error = Some(WriteError::Spool(e));
                }
            }
            None => self.memory.extend_from_slice(bytes),
        }
    }

    /// Moves what is in memory into a new spool file.
    fn spill(&mut self) -> io::Result<()> {
        let (file, path) = new_spool_file(self.spool_dir)?;
        let mut file = BufWriter::with_capacity(SPOOL_BUFFER, HashingWriter::new(file));
        file.write_all(&self.memory)?;
        self.memory = Vec::new();
        self.file = Some((file, path));
        Ok(())
    }

    /// Writes attachment `index` base64-encoded, a chunk at a time.
    fn put_attachment(&mut self, index: usize) {
        let Some(source) = self.attachments.get(index) else {
            return;
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        match source {
            AttachmentSource::Bytes(bytes) => {
                for chunk in bytes.chunks(CHUNK_INPUT) {
                    scratch.clear();
                    MIME.encode_append(chunk, &mut scratch);
                    self.put(&scratch);
                }
            }
            AttachmentSource::File(path) => {
                if let Err(source) = self.put_file(path, &mut scratch) {
                    self.error
                        .get_or_insert(WriteError::Attachment { index, source });
                }
            }
        }
        self.scratch = scratch;
    }

    fn put_file(&mut self, path: &Path, scratch: &mut Vec<u8>) -> io::Result<()> {
        let mut file = File::open(path)?;
        let mut chunk = vec![0u8; CHUNK_INPUT];
        loop {
            let n = read_full(&mut file, &mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            scratch.clear();
            MIME.encode_append(&chunk[..n], scratch);
            self.put(scratch);
            if n < chunk.len() {
                return Ok(());
            }
        }
    }
}

impl mail_builder::Writer for EmailWriter<'_> {
    fn write(&mut self, bytes: &[u8]) {
        if let Some(index) = placeholder_index(bytes) {
            self.put_attachment(index);
        } else {
            self.put(bytes);
        }
    }
}

/// The attachment index of a placeholder, if `bytes` is one.
fn placeholder_index(bytes: &[u8]) -> Option<usize> {
    let digits = bytes.strip_prefix(PLACEHOLDER)?.strip_suffix(b"\0")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Reads until `buf` is full or the file ends; returns how much was read.
fn read_full(file: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The folder spool files go to when none is configured.
pub(super) fn default_spool_dir() -> PathBuf {
    std::env::temp_dir()
}
