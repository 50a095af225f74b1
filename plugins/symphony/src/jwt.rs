//! The login JWT of Symphony's RSA authentication.
//!
//! Header `{"alg":"RS512","typ":"JWT"}`, claims `sub` (the service account's
//! username) and `exp` (Unix seconds, at most five minutes ahead). The
//! plugin builds the signing input; the host signs it with the signing key
//! `private-key`, which the plugin never sees.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// How far ahead of now the token expires; Symphony refuses more than five
/// minutes, so a minute is left for clock skew.
pub const LIFETIME_SECS: i64 = 240;

/// The encoded JWT header.
fn header() -> String {
    URL_SAFE_NO_PAD.encode(br#"{"alg":"RS512","typ":"JWT"}"#)
}

/// The JWT signing input `base64url(header).base64url(claims)` for
/// `username`, with `exp` = `now_ms` / 1000 + [`LIFETIME_SECS`].
pub fn signing_input(username: &str, now_ms: i64) -> String {
    let exp = now_ms.div_euclid(1000) + LIFETIME_SECS;
    let claims = serde_json::json!({ "sub": username, "exp": exp });
    format!(
        "{}.{}",
        header(),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// The complete token: the signing input, a dot and the base64url signature.
pub fn assemble(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn structure_and_claims() {
        let now = 1_700_000_000_123;
        let input = signing_input("bot.user@acme", now);
        let parts: Vec<&str> = input.split('.').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            decode(parts[0]),
            serde_json::json!({"alg": "RS512", "typ": "JWT"})
        );
        let claims = decode(parts[1]);
        assert_eq!(claims["sub"], "bot.user@acme");
        let exp = claims["exp"].as_i64().unwrap();
        assert_eq!(exp, 1_700_000_000 + LIFETIME_SECS);
        assert!(exp - now / 1000 <= 300, "at most five minutes ahead");
        assert!(!input.contains('='), "no padding");

        let token = assemble(&input, &[0xff, 0xfe, 0x00, 0x7f]);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], "__4Afw");
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
            [0xff, 0xfe, 0x00, 0x7f]
        );
    }

    #[test]
    fn usernames_are_json_escaped() {
        let input = signing_input("a\"b\\c", 0);
        let claims = decode(input.split('.').nth(1).unwrap());
        assert_eq!(claims["sub"], "a\"b\\c");
        assert_eq!(claims["exp"], LIFETIME_SECS);
    }
}
