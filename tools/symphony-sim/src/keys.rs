//! The fixed **test-only** RSA key pair and service-account name.
//!
//! These keys are committed to the repository on purpose so that tests can log in to the
//! simulator without generating keys. The private key is public knowledge: never use it to
//! protect anything real.

use std::path::PathBuf;

/// Username of the service account the simulator registers by default, with
/// [`TEST_PUBLIC_KEY_PEM`] as its RSA public key. A JWT must carry it as `sub`.
pub const TEST_USERNAME: &str = "compliance-archiver";

/// TEST-ONLY RSA private key (2048 bit, PKCS#8 PEM, `-----BEGIN PRIVATE KEY-----`).
///
/// Sign login JWTs with it (see [`crate::jwt::sign_jwt`]). Never use it outside tests.
pub const TEST_PRIVATE_KEY_PEM: &str = include_str!("../keys/test_private_key.pem");

/// TEST-ONLY RSA public key matching [`TEST_PRIVATE_KEY_PEM`] (SubjectPublicKeyInfo PEM,
/// `-----BEGIN PUBLIC KEY-----`).
pub const TEST_PUBLIC_KEY_PEM: &str = include_str!("../keys/test_public_key.pem");

/// Path of the test private key file in this crate's source tree (`keys/test_private_key.pem`),
/// as it was when the crate was compiled. Useful to point an out-of-process client at it.
pub fn test_private_key_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("keys")
        .join("test_private_key.pem")
}
