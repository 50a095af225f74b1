//! [`ChunkReader`]: an [`AttachmentReader`] over any [`std::io::Read`].

use std::io::{ErrorKind, Read};

use crate::{AttachmentReader, SourceError};

/// The bytes of a deferred attachment read from any [`Read`]: a file in a
/// granted folder, an HTTP body ([`crate::http::BodyReader`]), an entry of
/// an archive. What [`crate::Source::open_attachment`] usually returns:
///
/// ```no_run
/// # use connector_sdk::{AttachmentReader, ChunkReader, SourceError};
/// # fn open(path: &str) -> Result<Box<dyn AttachmentReader>, SourceError> {
/// Ok(Box::new(ChunkReader::new(std::fs::File::open(path)?)))
/// # }
/// ```
///
/// Each chunk is as long as the host asked for (at most
/// [`ChunkReader::MAX_CHUNK_BYTES`], at least one byte), short only at the
/// end of the bytes: short reads of the inner reader are joined, and reads
/// interrupted by a signal are retried. I/O errors convert into a
/// [`SourceError`] as `?` does.
#[derive(Debug)]
pub struct ChunkReader<R> {
    inner: R,
}

impl<R> ChunkReader<R> {
    /// The largest chunk returned, whatever the host asks for.
    pub const MAX_CHUNK_BYTES: u32 = 4 << 20;

    /// Reads `inner` from where it stands to its end.
    pub fn new(inner: R) -> Self {
        ChunkReader { inner }
    }

    /// The inner reader, past the bytes returned so far.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> AttachmentReader for ChunkReader<R> {
    fn read(&mut self, max_bytes: u32) -> Result<Option<Vec<u8>>, SourceError> {
        let mut chunk = vec![0u8; max_bytes.clamp(1, Self::MAX_CHUNK_BYTES) as usize];
        let mut filled = 0;
        while filled < chunk.len() {
            match self.inner.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if filled == 0 {
            return Ok(None);
        }
        chunk.truncate(filled);
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out one byte per call, after an interruption before each.
    struct Dribble {
        bytes: Vec<u8>,
        interrupt: bool,
    }

    impl Read for Dribble {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(ErrorKind::Interrupted.into());
            }
            if self.bytes.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.bytes.remove(0);
            Ok(1)
        }
    }

    #[test]
    fn chunks_are_as_long_as_asked_until_the_end() {
        let mut r = ChunkReader::new(&b"abcdefg"[..]);
        assert_eq!(r.read(3).unwrap().unwrap(), b"abc");
        assert_eq!(r.read(10).unwrap().unwrap(), b"defg");
        assert_eq!(r.read(10).unwrap(), None);
    }

    #[test]
    fn short_and_interrupted_reads_are_joined_into_full_chunks() {
        let mut r = ChunkReader::new(Dribble {
            bytes: b"abcde".to_vec(),
            interrupt: false,
        });
        assert_eq!(r.read(4).unwrap().unwrap(), b"abcd");
        assert_eq!(r.read(0).unwrap().unwrap(), b"e");
        assert_eq!(r.read(4).unwrap(), None);
    }

    #[test]
    fn read_errors_become_source_errors() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(ErrorKind::ConnectionReset.into())
            }
        }
        assert!(matches!(
            ChunkReader::new(Broken).read(8),
            Err(SourceError::Transient(_))
        ));
    }
}
