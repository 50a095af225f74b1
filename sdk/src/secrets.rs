//! Secrets the plugin's manifest declares and the operator provides.
//!
//! Prefer [`crate::http::Request::secret_header`] and [`crate::signing`]:
//! with them the plugin never sees the value. Read a secret only when its
//! value must be used inside the plugin.

use crate::SourceError;

pub use crate::bindings::connector::source::secrets::SecretError;

/// The value of the declared secret `name`.
pub fn get(name: &str) -> Result<String, SecretError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::connector::source::secrets::get(name)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Err(SecretError::NotSet(name.to_string()))
    }
}

/// A secret the manifest does not declare is a plugin bug (permanent); one
/// the operator has not set is a configuration problem (invalid-config).
impl From<SecretError> for SourceError {
    fn from(err: SecretError) -> Self {
        match err {
            SecretError::NotDeclared(name) => SourceError::Permanent(format!(
                "secret {name:?} is not declared in the plugin's manifest"
            )),
            SecretError::NotSet(name) => SourceError::InvalidConfig(format!(
                "secret {name:?} has not been provided by the operator"
            )),
        }
    }
}
