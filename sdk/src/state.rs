//! Small persistent key/value state, private to one configured connector.
//!
//! Writes take effect at once, whatever becomes of the page being built: keep
//! resume positions in the page checkpoint, and use state for things like
//! cached tokens or discovered ids.

use crate::SourceError;

pub use crate::bindings::connector::source::state::StateError;

/// The value under `key`, if any.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, StateError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::connector::source::state::get(key)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = key;
        Err(outside_host())
    }
}

/// Stores `value` under `key`.
pub fn set(key: &str, value: &[u8]) -> Result<(), StateError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::connector::source::state::set(key, value)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (key, value);
        Err(outside_host())
    }
}

/// Removes `key`.
pub fn delete(key: &str) -> Result<(), StateError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::connector::source::state::delete(key)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = key;
        Err(outside_host())
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn outside_host() -> StateError {
    StateError::Other("state is only available inside the connector host".to_string())
}

/// Quota and size limits are permanent; other state failures transient.
impl From<StateError> for SourceError {
    fn from(err: StateError) -> Self {
        match err {
            StateError::QuotaExceeded => {
                SourceError::Permanent("the connector's state quota is exhausted".to_string())
            }
            StateError::TooLarge(limit) => SourceError::Permanent(format!(
                "state value exceeds the host's limit of {limit} bytes"
            )),
            StateError::Other(why) => SourceError::Transient(format!("state failed: {why}")),
        }
    }
}
