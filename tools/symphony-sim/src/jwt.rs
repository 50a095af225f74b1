//! RS512 JWTs as Symphony's RSA bot login uses them: signing (for tests and clients) and the
//! simulator's own verification.
//!
//! A login JWT has the header `{"alg":"RS512","typ":"JWT"}` and the claims `sub` (the service
//! account's username) and `exp` (expiry, Unix seconds, at most five minutes ahead).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha512;

use crate::SimError;
use crate::keys::{TEST_PRIVATE_KEY_PEM, TEST_USERNAME};

/// Seconds of clock skew tolerated on `exp` when checking the five-minute limit.
pub(crate) const EXP_LEEWAY_SECS: u64 = 10;

/// Current time in Unix seconds.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs a Symphony login JWT (RS512) for `username`, expiring at `expires_at` (Unix seconds),
/// with the PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM private key.
pub fn sign_jwt(
    private_key_pem: &str,
    username: &str,
    expires_at: u64,
) -> Result<String, SimError> {
    let key = parse_private_key(private_key_pem)?;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS512","typ":"JWT"}"#);
    let claims = serde_json::json!({ "sub": username, "exp": expires_at });
    let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?);
    let signing_input = format!("{header}.{claims}");
    let signer = SigningKey::<Sha512>::new(key);
    let signature = signer
        .try_sign(signing_input.as_bytes())
        .map_err(|e| SimError::Jwt(e.to_string()))?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    ))
}

/// Signs a JWT for [`TEST_USERNAME`] with the test private key, expiring four minutes from
/// now: what a well-behaved client sends to `/login/pubkey/authenticate`.
pub fn sign_test_jwt() -> Result<String, SimError> {
    sign_jwt(TEST_PRIVATE_KEY_PEM, TEST_USERNAME, now_secs() + 240)
}

fn parse_private_key(pem: &str) -> Result<RsaPrivateKey, SimError> {
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| SimError::Key(e.to_string()))
    } else {
        RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| SimError::Key(e.to_string()))
    }
}

/// Parses a public key PEM (SubjectPublicKeyInfo `BEGIN PUBLIC KEY`, or PKCS#1
/// `BEGIN RSA PUBLIC KEY`).
pub(crate) fn parse_public_key(pem: &str) -> Result<RsaPublicKey, SimError> {
    if pem.contains("BEGIN RSA PUBLIC KEY") {
        use rsa::pkcs1::DecodeRsaPublicKey;
        RsaPublicKey::from_pkcs1_pem(pem).map_err(|e| SimError::Key(e.to_string()))
    } else {
        RsaPublicKey::from_public_key_pem(pem).map_err(|e| SimError::Key(e.to_string()))
    }
}

/// Why a login JWT was refused (the text goes into the 401 body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JwtRejection {
    Malformed(&'static str),
    Algorithm(String),
    UnknownUser(String),
    BadSignature,
    Expired,
    TooFarAhead,
}

impl std::fmt::Display for JwtRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtRejection::Malformed(why) => write!(f, "malformed authentication token: {why}"),
            JwtRejection::Algorithm(alg) => {
                write!(f, "unsupported token algorithm {alg:?}, RS512 is required")
            }
            JwtRejection::UnknownUser(u) => {
                write!(f, "user {u:?} not found or has no public key registered")
            }
            JwtRejection::BadSignature => write!(f, "invalid token signature"),
            JwtRejection::Expired => write!(f, "authentication token expired"),
            JwtRejection::TooFarAhead => {
                write!(
                    f,
                    "authentication token expiration exceeds the 5 minutes limit"
                )
            }
        }
    }
}

/// Verifies a login JWT against the registered accounts; returns the username.
pub(crate) fn verify(
    token: &str,
    accounts: &[(String, RsaPublicKey)],
    now: u64,
    max_lifetime_secs: u64,
) -> Result<String, JwtRejection> {
    let mut parts = token.trim().split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtRejection::Malformed(
            "expected three dot-separated parts",
        ));
    };
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p.trim_end_matches('='));
    let header: serde_json::Value = decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtRejection::Malformed("header is not base64url JSON"))?;
    let claims: serde_json::Value = decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtRejection::Malformed("claims are not base64url JSON"))?;
    let signature = decode(s).map_err(|_| JwtRejection::Malformed("signature is not base64url"))?;
    let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
    if alg != "RS512" {
        return Err(JwtRejection::Algorithm(alg.to_string()));
    }
    let sub = claims
        .get("sub")
        .and_then(|v| v.as_str())
        .ok_or(JwtRejection::Malformed("missing sub claim"))?;
    let exp = claims
        .get("exp")
        .and_then(|v| v.as_f64())
        .ok_or(JwtRejection::Malformed("missing exp claim"))?;
    let Some((_, key)) = accounts.iter().find(|(u, _)| u == sub) else {
        return Err(JwtRejection::UnknownUser(sub.to_string()));
    };
    let sig = Signature::try_from(signature.as_slice()).map_err(|_| JwtRejection::BadSignature)?;
    let signing_input = &token.trim()[..h.len() + 1 + c.len()];
    VerifyingKey::<Sha512>::new(key.clone())
        .verify(signing_input.as_bytes(), &sig)
        .map_err(|_| JwtRejection::BadSignature)?;
    if exp <= now as f64 {
        return Err(JwtRejection::Expired);
    }
    if exp > (now + max_lifetime_secs + EXP_LEEWAY_SECS) as f64 {
        return Err(JwtRejection::TooFarAhead);
    }
    Ok(sub.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::TEST_PUBLIC_KEY_PEM;

    fn accounts() -> Vec<(String, RsaPublicKey)> {
        vec![(
            TEST_USERNAME.to_string(),
            parse_public_key(TEST_PUBLIC_KEY_PEM).unwrap(),
        )]
    }

    #[test]
    fn signed_test_jwt_verifies_and_tampering_is_detected() {
        let now = now_secs();
        let jwt = sign_jwt(TEST_PRIVATE_KEY_PEM, TEST_USERNAME, now + 200).unwrap();
        assert_eq!(verify(&jwt, &accounts(), now, 300).unwrap(), TEST_USERNAME);
        let mut tampered = jwt.clone();
        tampered.pop();
        tampered.push(if jwt.ends_with('A') { 'B' } else { 'A' });
        assert!(verify(&tampered, &accounts(), now, 300).is_err());
        assert_eq!(
            verify(&jwt, &accounts(), now + 300, 300),
            Err(JwtRejection::Expired)
        );
        let far = sign_jwt(TEST_PRIVATE_KEY_PEM, TEST_USERNAME, now + 3600).unwrap();
        assert_eq!(
            verify(&far, &accounts(), now, 300),
            Err(JwtRejection::TooFarAhead)
        );
        let other = sign_jwt(TEST_PRIVATE_KEY_PEM, "someone-else", now + 100).unwrap();
        assert!(matches!(
            verify(&other, &accounts(), now, 300),
            Err(JwtRejection::UnknownUser(_))
        ));
    }
}
