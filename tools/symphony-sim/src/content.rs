//! Attachment content: a ChaCha8 key stream keyed by (seed, attachment id), generated in
//! chunks so that a 50 MB file is never held in memory, and served base64-encoded.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// Raw bytes per chunk: a multiple of 3 so that chunk-wise base64 concatenates to one valid
/// base64 text (padding only at the very end).
pub(crate) const CHUNK: usize = 3 * 21_846; // 65,538 bytes

/// Iterator over the file's raw content in chunks of at most [`CHUNK`] bytes.
pub(crate) struct Chunks {
    rng: ChaCha8Rng,
    remaining: u64,
}

impl Chunks {
    pub(crate) fn new(key: [u8; 32], size: u64) -> Self {
        Chunks {
            rng: ChaCha8Rng::from_seed(key),
            remaining: size,
        }
    }
}

impl Iterator for Chunks {
    type Item = Vec<u8>;
    fn next(&mut self) -> Option<Vec<u8>> {
        if self.remaining == 0 {
            return None;
        }
        let n = self.remaining.min(CHUNK as u64) as usize;
        let mut buf = vec![0u8; n];
        self.rng.fill_bytes(&mut buf);
        self.remaining -= n as u64;
        Some(buf)
    }
}

/// SHA-256 of the content of a file.
pub(crate) fn sha256_of(key: [u8; 32], size: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    for chunk in Chunks::new(key, size) {
        h.update(&chunk);
    }
    h.finalize().into()
}

/// Length of the standard (padded) base64 encoding of `size` bytes.
pub(crate) fn base64_len(size: u64) -> u64 {
    size.div_ceil(3) * 4
}

/// The base64 text of the file, chunk by chunk.
pub(crate) fn base64_chunks(key: [u8; 32], size: u64) -> impl Iterator<Item = bytes::Bytes> {
    Chunks::new(key, size).map(|c| bytes::Bytes::from(STANDARD.encode(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_base64_equals_whole_base64_and_length_is_predicted() {
        let key = [7u8; 32];
        for size in [
            0u64,
            1,
            2,
            3,
            4,
            CHUNK as u64,
            CHUNK as u64 + 1,
            3 * CHUNK as u64 + 2,
        ] {
            let whole: Vec<u8> = Chunks::new(key, size).flatten().collect();
            assert_eq!(whole.len() as u64, size);
            let streamed: String = base64_chunks(key, size)
                .map(|b| String::from_utf8(b.to_vec()).unwrap())
                .collect();
            assert_eq!(streamed, STANDARD.encode(&whole));
            assert_eq!(streamed.len() as u64, base64_len(size));
            let digest: [u8; 32] = Sha256::digest(&whole).into();
            assert_eq!(sha256_of(key, size), digest);
        }
    }
}
