//! The limits of a plugin's key/value state, the same wherever the values
//! are kept (the host's state store, the test harness's memory).

/// Most bytes (keys plus values) one connector's plugin may keep.
pub const KV_QUOTA_BYTES: u64 = 16 * 1024 * 1024;
/// Largest single value a plugin may store.
pub const KV_MAX_VALUE_BYTES: u64 = 1024 * 1024;
/// Longest key a plugin may use.
pub const KV_MAX_KEY_BYTES: u64 = 1024;

/// A key/value write over one of the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvLimit {
    /// The key or the value is too long.
    TooLarge {
        /// `key` or `value`.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The connector's values would grow over the quota.
    Quota {
        /// Bytes the connector would use.
        needed: u64,
        /// The quota.
        limit: u64,
    },
}

/// Checks a write of `value` under `key` when the connector's other keys
/// and values take `others` bytes.
pub fn check_kv_write(key: &str, value: &[u8], others: u64) -> Result<(), KvLimit> {
    let (key_len, value_len) = (key.len() as u64, value.len() as u64);
    if key_len > KV_MAX_KEY_BYTES {
        return Err(KvLimit::TooLarge {
            what: "key",
            size: key_len,
            limit: KV_MAX_KEY_BYTES,
        });
    }
    if value_len > KV_MAX_VALUE_BYTES {
        return Err(KvLimit::TooLarge {
            what: "value",
            size: value_len,
            limit: KV_MAX_VALUE_BYTES,
        });
    }
    let needed = others + key_len + value_len;
    if needed > KV_QUOTA_BYTES {
        return Err(KvLimit::Quota {
            needed,
            limit: KV_QUOTA_BYTES,
        });
    }
    Ok(())
}
