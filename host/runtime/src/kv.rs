//! The plugin's small key/value store (the `state` import), behind a trait
//! so that the runtime does not care where values are kept: the host keeps
//! them in its state store under the connector's id, the test harness in
//! memory.

use connector_model::limits::{KvLimit, check_kv_write};

/// Why a key/value operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The connector's values would exceed its quota.
    #[error("the plugin state would exceed its quota")]
    QuotaExceeded,
    /// A key or value is over its size limit (the payload is the limit).
    #[error("a plugin state item is over the limit of {0} bytes")]
    TooLarge(u64),
    /// Anything else, said in full.
    #[error("{0}")]
    Other(String),
}

/// One connector's key/value values.
pub trait PluginKv: Send + Sync {
    /// The value under `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Stores `value` under `key`.
    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError>;
    /// Removes `key` (no error when absent).
    fn delete(&self, key: &str) -> Result<(), KvError>;
}

/// A plugin's access to its store, shared by its sessions.
pub type KvAccess = std::sync::Arc<dyn PluginKv>;

/// Values kept in memory, within the same limits as the host's store: for
/// tests and the plugin test harness.
#[derive(Debug, Default)]
pub struct MemoryKv {
    values: std::sync::Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
}

impl MemoryKv {
    fn values(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Vec<u8>>> {
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PluginKv for MemoryKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.values().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        let mut values = self.values();
        let others: u64 = values
            .iter()
            .filter(|(k, _)| k.as_str() != key)
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        check_kv_write(key, value, others).map_err(|limit| match limit {
            KvLimit::TooLarge { limit, .. } => KvError::TooLarge(limit),
            KvLimit::Quota { .. } => KvError::QuotaExceeded,
        })?;
        values.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.values().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_model::limits::{KV_MAX_VALUE_BYTES, KV_QUOTA_BYTES};

    #[test]
    fn memory_store_keeps_the_host_limits() {
        let kv = MemoryKv::default();
        kv.set("a", b"1").unwrap();
        assert_eq!(kv.get("a").unwrap(), Some(b"1".to_vec()));
        let big = vec![0u8; KV_MAX_VALUE_BYTES as usize + 1];
        assert_eq!(
            kv.set("b", &big),
            Err(KvError::TooLarge(KV_MAX_VALUE_BYTES))
        );
        let value = vec![0u8; KV_MAX_VALUE_BYTES as usize - 8];
        let mut i = 0;
        let err = loop {
            match kv.set(&format!("k{i:05}"), &value) {
                Ok(()) => i += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err, KvError::QuotaExceeded);
        assert!((i as u64) * KV_MAX_VALUE_BYTES <= KV_QUOTA_BYTES + KV_MAX_VALUE_BYTES);
        kv.delete("a").unwrap();
        assert_eq!(kv.get("a").unwrap(), None);
    }
}
