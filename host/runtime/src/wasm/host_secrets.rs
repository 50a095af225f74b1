//! Secrets and signatures for plugins: a plugin reads only the secrets it
//! declares and is granted, and never reads signing keys at all.

use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};

use super::latest::secrets::{self, SecretError};
use super::latest::signing::{self, Algorithm, SigningError};
use super::sandbox::SandboxState;

impl secrets::Host for SandboxState {
    fn get(&mut self, name: String) -> Result<String, SecretError> {
        if !self.http.caps.secrets.contains(&name) {
            tracing::warn!(plugin = %self.http.plugin_id, secret = %name, "denied a secret that is not declared and granted");
            return Err(SecretError::NotDeclared(name));
        }
        match self.http.secrets.get(&name) {
            Some(value) => Ok(value.expose().to_string()),
            None => Err(SecretError::NotSet(name)),
        }
    }
}

impl signing::Host for SandboxState {
    fn sign(
        &mut self,
        key_name: String,
        alg: Algorithm,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, SigningError> {
        if !self.http.caps.signing_keys.contains(&key_name) {
            tracing::warn!(plugin = %self.http.plugin_id, key = %key_name, "denied a signing key that is not declared and granted");
            return Err(SigningError::NotDeclared(key_name));
        }
        let pem = self
            .http
            .secrets
            .get(&key_name)
            .ok_or_else(|| SigningError::NotSet(key_name.clone()))?;
        let key = parse_private_key(pem.expose()).map_err(|e| {
            SigningError::InvalidKey(format!(
                "secret `{key_name}` is not an RSA private key in PEM: {e}"
            ))
        })?;
        Ok(match alg {
            Algorithm::Rs256 => SigningKey::<sha2::Sha256>::new(key).sign(&data).to_vec(),
            Algorithm::Rs512 => SigningKey::<sha2::Sha512>::new(key).sign(&data).to_vec(),
        })
    }
}

fn parse_private_key(pem: &str) -> Result<RsaPrivateKey, String> {
    RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|e| e.to_string())
}
