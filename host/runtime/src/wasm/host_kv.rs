//! The plugin's `state` import, served by the host's [`PluginKv`].

use super::latest::state::{self, StateError};
use super::sandbox::SandboxState;
use crate::kv::{KvError, PluginKv};

impl From<KvError> for StateError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::QuotaExceeded => StateError::QuotaExceeded,
            KvError::TooLarge(limit) => StateError::TooLarge(limit),
            KvError::Other(message) => StateError::Other(message),
        }
    }
}

impl SandboxState {
    fn kv(&self) -> Result<&dyn PluginKv, StateError> {
        self.kv
            .as_deref()
            .ok_or_else(|| StateError::Other("this host gives the plugin no state store".into()))
    }
}

impl state::Host for SandboxState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.kv()?.get(&key)?)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), StateError> {
        Ok(self.kv()?.set(&key, &value)?)
    }

    fn delete(&mut self, key: String) -> Result<(), StateError> {
        Ok(self.kv()?.delete(&key)?)
    }
}

impl super::latest::types::Host for SandboxState {}
