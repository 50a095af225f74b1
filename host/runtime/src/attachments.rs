//! Attachment bytes as a session resolves them, whatever kind of plugin
//! it runs: inline bytes checked against the limit, downloads the host
//! makes under the plugin's grants (retried when the server is busy or the
//! connection breaks), and deferred reads the plugin serves in chunks.
//! Small files stay in memory; large or unknown sizes are spooled to a
//! folder that lives as long as the session.

use std::io::Write;
use std::time::Duration;

use connector_model::{Attachment, AttachmentData};

use crate::PluginError;
use crate::http::{FetchSpec, PluginHttp};

/// Largest checkpoint the host stores.
pub const MAX_CHECKPOINT: usize = 1 << 20;
/// Largest inline attachment the host accepts.
pub const MAX_INLINE_ATTACHMENT: usize = 8 << 20;
/// Attachments larger than this are spooled to disk.
const SPOOL_THRESHOLD: u64 = 16 << 20;
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
#[derive(Default)]
pub(crate) struct AttachmentSpool {
    /// Created on first need, removed with the session.
    dir: Option<tempfile::TempDir>,
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
    /// Where an attachment of `size` bytes (if known) is written as it
    /// arrives: memory for small files, a file in the spool otherwise.
    pub(crate) fn writer(&mut self, size: Option<u64>) -> Result<AttachmentWriter, PluginError> {
        AttachmentWriter::new(size, &mut self.dir)
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
            let mut sink = self.writer(size)?;
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
/// temporary file for large or unknown sizes.
pub(crate) enum AttachmentWriter {
    /// Small files.
    Memory(Vec<u8>),
    /// Large or unknown sizes.
    File(std::io::BufWriter<tempfile::NamedTempFile>),
}

impl Write for AttachmentWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            AttachmentWriter::Memory(v) => v.write(buf),
            AttachmentWriter::File(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            AttachmentWriter::Memory(_) => Ok(()),
            AttachmentWriter::File(f) => f.flush(),
        }
    }
}

impl AttachmentWriter {
    /// A writer for a file of `size` bytes (if known), spooling into `dir`
    /// (created on first need and removed with the session).
    fn new(
        size: Option<u64>,
        dir: &mut Option<tempfile::TempDir>,
    ) -> Result<AttachmentWriter, PluginError> {
        if size.is_some_and(|s| s <= SPOOL_THRESHOLD) {
            return Ok(AttachmentWriter::Memory(Vec::new()));
        }
        if dir.is_none() {
            *dir = Some(tempfile::tempdir().map_err(spool_error)?);
        }
        let dir = dir.as_ref().expect("just created").path();
        let file = tempfile::NamedTempFile::new_in(dir).map_err(spool_error)?;
        Ok(AttachmentWriter::File(std::io::BufWriter::new(file)))
    }

    /// Appends a chunk that arrived; a full disk is a transient error.
    pub(crate) fn append(&mut self, chunk: &[u8]) -> Result<(), PluginError> {
        self.write_all(chunk).map_err(spool_error)
    }

    /// The attachment's data: bytes, or the spooled file.
    pub(crate) fn finish(self) -> Result<AttachmentData, PluginError> {
        match self {
            AttachmentWriter::Memory(v) => Ok(AttachmentData::Bytes(v)),
            AttachmentWriter::File(f) => {
                let file = f.into_inner().map_err(|e| spool_error(e.into_error()))?;
                if file.as_file().metadata().map_err(spool_error)?.len() <= SPOOL_THRESHOLD {
                    let bytes = std::fs::read(file.path()).map_err(spool_error)?;
                    return Ok(AttachmentData::Bytes(bytes));
                }
                let (_, path) = file.keep().map_err(|e| spool_error(e.error))?;
                Ok(AttachmentData::File(path))
            }
        }
    }
}

fn spool_error(e: std::io::Error) -> PluginError {
    PluginError::Transient(format!(
        "cannot spool an attachment to disk: {e}; check free space in the temporary folder"
    ))
}
