//! Signatures made by the host with private keys the plugin never sees, for
//! example to build a JWT for an OAuth client-credentials grant.

use crate::SourceError;

pub use crate::bindings::connector::source::signing::{Algorithm, SigningError};

/// Signs `data` with the private key held in the declared secret `key_name`.
pub fn sign(key_name: &str, algorithm: Algorithm, data: &[u8]) -> Result<Vec<u8>, SigningError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::connector::source::signing::sign(key_name, algorithm, data)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (algorithm, data);
        Err(SigningError::NotSet(key_name.to_string()))
    }
}

impl Algorithm {
    /// The JWT `alg` name (`RS256`, `RS512`).
    pub fn jwt_name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs512 => "RS512",
        }
    }
}

/// An undeclared key is a plugin bug (permanent); a key that is not set or
/// not usable is the operator's to fix (invalid-config).
impl From<SigningError> for SourceError {
    fn from(err: SigningError) -> Self {
        match err {
            SigningError::NotDeclared(name) => SourceError::Permanent(format!(
                "signing key {name:?} is not declared in the plugin's manifest"
            )),
            SigningError::NotSet(name) => SourceError::InvalidConfig(format!(
                "signing key {name:?} has not been provided by the operator"
            )),
            SigningError::InvalidKey(why) => {
                SourceError::InvalidConfig(format!("signing key is not usable: {why}"))
            }
        }
    }
}
