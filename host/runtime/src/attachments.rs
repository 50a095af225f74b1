//! Attachment bytes as a session resolves them, whatever kind of plugin
//! it runs: inline bytes checked against the limit, downloads the host
//! makes under the plugin's grants (retried when the server is busy or the
//! connection breaks), and deferred reads the plugin serves in chunks.
//! Small files stay in memory; large or unknown sizes are spooled to a
//! folder that lives as long as the session.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use connector_model::{Attachment, AttachmentData};

use crate::PluginError;
use crate::http::{DownloadError, FetchSpec, PluginHttp};

/// Largest checkpoint the host stores.
pub const MAX_CHECKPOINT: usize = 1 << 20;
/// Largest inline attachment the host accepts.
pub const MAX_INLINE_ATTACHMENT: usize = 8 << 20;
/// Attachments larger than this are spooled to disk.
const SPOOL_THRESHOLD: u64 = 16 << 20;
/// Largest attachment the host takes from a plugin unless the operator
/// grants another (`[grants] attachment-mb`): past it, an attachment that
/// never ends stops its page instead of filling the disk.
pub const DEFAULT_MAX_ATTACHMENT_MB: u64 = 16 << 10;
/// Retries of one attachment download before the page fails.
const DOWNLOAD_RETRIES: u32 = 4;
/// Longest pause between download retries.
const MAX_DOWNLOAD_PAUSE: Duration = Duration::from_secs(30);

/// An attachment as a plugin describes it, before its bytes are in hand.
pub(crate) struct Described {
    /// Id, unique within its message.
    pub id: String,
    /// File name shown in the email.
    pub file_name: String,
    /// MIME type, when known.
    pub media_type: Option<String>,
    /// Size in bytes, when the plugin knows it.
    pub size: Option<u64>,
    /// Where the bytes are.
    pub body: Body,
}

/// Where an attachment's bytes are.
pub(crate) enum Body {
    /// Handed over whole.
    Inline(Vec<u8>),
    /// At a URL the host downloads under the plugin's grants.
    Fetch(FetchSpec),
    /// Read from the plugin in chunks, later.
    Deferred,
}

/// A plugin session, as far as its attachments go (wasm and native alike).
pub(crate) trait AttachmentSession {
    /// The session's spool and the plugin's HTTP.
    fn spool_and_http(&mut self) -> (&mut AttachmentSpool, &PluginHttp);

    /// Reads a deferred attachment from the plugin, chunk by chunk into an
    /// [`AttachmentSpool::writer`].
    fn read_deferred(
        &mut self,
        message_id: &str,
        attachment_id: &str,
        size: Option<u64>,
    ) -> Result<AttachmentData, PluginError>;
}

/// The attachment `described` of message `message_id`, with its bytes.
pub(crate) fn resolve(
    session: &mut impl AttachmentSession,
    message_id: &str,
    described: Described,
) -> Result<Attachment, PluginError> {
    let Described {
        id,
        file_name,
        media_type,
        size,
        body,
    } = described;
    let data = match body {
        Body::Inline(bytes) => inline(message_id, &id, bytes)?,
        Body::Fetch(spec) => {
            let (spool, http) = session.spool_and_http();
            spool.download(http, message_id, &id, size, &spec)?
        }
        Body::Deferred => session.read_deferred(message_id, &id, size)?,
    };
    Ok(Attachment {
        id,
        file_name,
        media_type,
        data,
    })
}

/// Where one session's attachments are resolved to.
pub(crate) struct AttachmentSpool {
    /// Created on first need, removed with the session.
    dir: Option<tempfile::TempDir>,
    /// Largest attachment taken, in bytes.
    most: u64,
}

/// Bytes the plugin handed over whole, within the inline limit.
fn inline(
    message_id: &str,
    attachment_id: &str,
    bytes: Vec<u8>,
) -> Result<AttachmentData, PluginError> {
    if bytes.len() > MAX_INLINE_ATTACHMENT {
        return Err(PluginError::Protocol(format!(
            "attachment {attachment_id} of message {message_id} is {} bytes inline; above {MAX_INLINE_ATTACHMENT} use fetch or deferred",
            bytes.len()
        )));
    }
    Ok(AttachmentData::Bytes(bytes))
}

impl AttachmentSpool {
    /// A spool for attachments of at most `most` bytes each.
    pub(crate) fn new(most: u64) -> AttachmentSpool {
        AttachmentSpool { dir: None, most }
    }

    /// Where attachment `attachment_id` of message `message_id`, of `size`
    /// bytes if known, is written as it arrives: memory for small files, a
    /// file in the spool otherwise.
    pub(crate) fn writer(
        &mut self,
        message_id: &str,
        attachment_id: &str,
        size: Option<u64>,
    ) -> Result<AttachmentWriter, PluginError> {
        if self.dir.is_none() {
            self.dir = Some(tempfile::tempdir().map_err(spool_error)?);
        }
        let dir = self.dir.as_ref().expect("just created").path();
        AttachmentWriter::new(message_id, attachment_id, size, self.most, dir)
    }

    /// Downloads a `fetch` attachment, retrying a few times when the
    /// connection breaks or the server is busy, so that one flaky download
    /// does not send the whole page back to the plugin.
    pub(crate) fn download(
        &mut self,
        http: &PluginHttp,
        message_id: &str,
        attachment_id: &str,
        size: Option<u64>,
        spec: &FetchSpec,
    ) -> Result<AttachmentData, PluginError> {
        let mut attempt = 0;
        loop {
            let mut sink = self.writer(message_id, attachment_id, size)?;
            match http.download(spec, &mut sink) {
                Ok(_) => return sink.finish(),
                Err(e) if e.is_retryable() && attempt < DOWNLOAD_RETRIES => {
                    let pause = e
                        .retry_after()
                        .unwrap_or(Duration::from_millis(250) * (1 << attempt))
                        .min(MAX_DOWNLOAD_PAUSE);
                    attempt += 1;
                    tracing::warn!(plugin = %http.plugin_id, attachment = attachment_id, message = message_id, "attachment download failed ({e}); retry {attempt} in {pause:?}");
                    std::thread::sleep(pause);
                }
                Err(DownloadError::Body(e)) if too_large(&e) => return Err(sink.refusal(e)),
                Err(e) => {
                    return Err(PluginError::Transient(format!(
                        "attachment {attachment_id} of message {message_id}: {e}"
                    )));
                }
            }
        }
    }
}

/// Where attachment bytes go while they arrive: memory for small files, a
/// temporary file for large or unknown sizes (and for a small one that
/// turns out larger than declared), refusing bytes past the limit.
pub(crate) struct AttachmentWriter {
    /// Which attachment, for errors.
    what: String,
    dir: PathBuf,
    out: Spooled,
    written: u64,
    most: u64,
}

enum Spooled {
    Memory(Vec<u8>),
    File(std::io::BufWriter<tempfile::NamedTempFile>),
}

/// An attachment past the host's limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "it is larger than {most_mb} MiB, the most the host takes from this plugin; if such files \
     are expected, raise `attachment-mb` in the connector's [grants], else report the plugin's \
     endless attachment to its author"
)]
struct AttachmentTooLarge {
    most_mb: u64,
}

impl Write for AttachmentWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let after = self.written + buf.len() as u64;
        if after > self.most {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                AttachmentTooLarge {
                    most_mb: self.most >> 20,
                },
            ));
        }
        if let Spooled::Memory(v) = &mut self.out
            && after > SPOOL_THRESHOLD
        {
            let mut file = spool_file(&self.dir)?;
            file.write_all(v)?;
            self.out = Spooled::File(file);
        }
        let n = match &mut self.out {
            Spooled::Memory(v) => v.write(buf)?,
            Spooled::File(f) => f.write(buf)?,
        };
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.out {
            Spooled::Memory(_) => Ok(()),
            Spooled::File(f) => f.flush(),
        }
    }
}

impl AttachmentWriter {
    /// A writer for attachment `attachment_id` of message `message_id`,
    /// of `size` bytes if known, spooling into `dir`.
    fn new(
        message_id: &str,
        attachment_id: &str,
        size: Option<u64>,
        most: u64,
        dir: &Path,
    ) -> Result<AttachmentWriter, PluginError> {
        let out = if size.is_some_and(|s| s <= SPOOL_THRESHOLD) {
            Spooled::Memory(Vec::new())
        } else {
            Spooled::File(spool_file(dir).map_err(spool_error)?)
        };
        Ok(AttachmentWriter {
            what: format!("attachment {attachment_id} of message {message_id}"),
            dir: dir.to_path_buf(),
            out,
            written: 0,
            most,
        })
    }

    /// Appends a chunk that arrived; a full disk is a transient error, an
    /// attachment past the limit a permanent one.
    pub(crate) fn append(&mut self, chunk: &[u8]) -> Result<(), PluginError> {
        self.write_all(chunk).map_err(|e| self.refusal(e))
    }

    /// What a failed write means: past the limit, a permanent error naming
    /// the attachment; anything else, the spool's trouble.
    fn refusal(&self, e: std::io::Error) -> PluginError {
        if too_large(&e) {
            PluginError::Permanent(format!("{}: {e}", self.what))
        } else {
            spool_error(e)
        }
    }

    /// The attachment's data: bytes, or the spooled file.
    pub(crate) fn finish(self) -> Result<AttachmentData, PluginError> {
        match self.out {
            Spooled::Memory(v) => Ok(AttachmentData::Bytes(v)),
            Spooled::File(f) => {
                let file = f.into_inner().map_err(|e| spool_error(e.into_error()))?;
                if self.written <= SPOOL_THRESHOLD {
                    let bytes = std::fs::read(file.path()).map_err(spool_error)?;
                    return Ok(AttachmentData::Bytes(bytes));
                }
                let (_, path) = file.keep().map_err(|e| spool_error(e.error))?;
                Ok(AttachmentData::File(path))
            }
        }
    }
}

fn spool_file(dir: &Path) -> std::io::Result<std::io::BufWriter<tempfile::NamedTempFile>> {
    Ok(std::io::BufWriter::new(tempfile::NamedTempFile::new_in(
        dir,
    )?))
}

/// Whether a write failed for the attachment's size.
fn too_large(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::FileTooLarge
}

fn spool_error(e: std::io::Error) -> PluginError {
    PluginError::Transient(format!(
        "cannot spool an attachment to disk: {e}; check free space in the temporary folder"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attachment_larger_than_declared_moves_from_memory_to_the_spool() {
        let mut spool = AttachmentSpool::new(1 << 30);
        let mut writer = spool.writer("m", "a", Some(10)).unwrap();
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..20 {
            writer.append(&chunk).unwrap();
        }
        match writer.finish().unwrap() {
            AttachmentData::File(path) => {
                assert_eq!(std::fs::metadata(path).unwrap().len(), 20 << 20)
            }
            AttachmentData::Bytes(b) => panic!("kept {} bytes in memory", b.len()),
        }
    }

    #[test]
    fn bytes_past_the_limit_are_refused_with_the_grant_to_raise() {
        let mut spool = AttachmentSpool::new(2 << 20);
        let mut writer = spool.writer("m", "a", None).unwrap();
        writer.append(&vec![0u8; 2 << 20]).unwrap();
        let e = writer.append(&[0]).unwrap_err();
        assert!(matches!(e, PluginError::Permanent(_)), "{e:?}");
        assert!(e.to_string().contains("attachment a of message m"), "{e}");
        assert!(e.to_string().contains("attachment-mb"), "{e}");
    }
}
