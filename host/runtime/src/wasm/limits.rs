//! The memory ceiling of a plugin's store, remembering whether it was hit so
//! that the resulting trap can be reported as what it is.

use wasmtime::ResourceLimiter;

/// Refuses linear-memory growth past `max_bytes`.
pub struct MemoryCap {
    max_bytes: usize,
    hit: bool,
}

impl MemoryCap {
    /// A cap of `max_bytes`.
    pub fn new(max_bytes: u64) -> MemoryCap {
        MemoryCap {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            hit: false,
        }
    }

    /// Whether the plugin asked for more than the cap.
    pub fn was_hit(&self) -> bool {
        self.hit
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
