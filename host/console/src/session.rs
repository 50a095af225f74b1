//! Sessions: a random token in an HttpOnly, Secure, SameSite=Strict cookie,
//! kept in memory for a limited time, each with its CSRF token; and the
//! [`SignedIn`] extractor every page and action starts from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Console;
use crate::refusal::{Refusal, refusal_page};
use crate::roles::{Identity, Permission};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "connector_session";

/// A fresh random token, URL-safe.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether two secrets are equal, in time that does not depend on where
/// they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether a request came from this console's own pages: it names no
/// origin (or `null`), or the origin's host is the one it was sent to.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    match headers.get(ORIGIN).and_then(|o| o.to_str().ok()) {
        None | Some("null") => true,
        Some(origin) => Some(origin.split_once("://").map_or(origin, |(_, h)| h)) == host,
    }
}

/// The value of cookie `name` in the request's headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly and Secure always.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    same_site: &str,
    max_age: Duration,
) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; Secure; SameSite={same_site}; Max-Age={}",
        max_age.as_secs()
    ))
    .expect("cookie values are URL-safe")
}

struct Session {
    identity: Identity,
    csrf: String,
    expires: Instant,
}

/// The sessions of this process.
pub(crate) struct Sessions {
    lifetime: Duration,
    by_token_hash: Mutex<HashMap<[u8; 32], Session>>,
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    pub(crate) fn new(lifetime: Duration) -> Sessions {
        Sessions {
            lifetime,
            by_token_hash: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_token_hash.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session; returns its `Set-Cookie` value.
    pub(crate) fn open(&self, identity: Identity) -> HeaderValue {
        let token = random_token();
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            token_hash(&token),
            Session {
                identity,
                csrf: random_token(),
                expires: now + self.lifetime,
            },
        );
        set_cookie(SESSION_COOKIE, &token, "Strict", self.lifetime)
    }

    /// Ends the session of `token`.
    pub(crate) fn close(&self, token: &str) -> Option<Identity> {
        self.lock().remove(&token_hash(token)).map(|s| s.identity)
    }

    fn find(&self, token: &str) -> Option<(Identity, String)> {
        let mut sessions = self.lock();
        let hash = token_hash(token);
        match sessions.get(&hash) {
            Some(s) if s.expires > Instant::now() => Some((s.identity.clone(), s.csrf.clone())),
            Some(_) => {
                sessions.remove(&hash);
                None
            }
            None => None,
        }
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub(crate) fn expired_session_cookie() -> HeaderValue {
    set_cookie(SESSION_COOKIE, "", "Strict", Duration::ZERO)
}

/// Where a request came from: the peer's IP address.
pub(crate) fn source(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// A request from a signed-in person. Without a session, a page (GET)
/// sends the browser to the sign-in page and comes back after it; anything
/// else is refused (401).
#[derive(Clone)]
pub struct SignedIn {
    /// Who.
    pub identity: Identity,
    /// The session's CSRF token, for the forms of the page.
    pub csrf: String,
    /// From where (the peer's IP address).
    pub source: String,
    /// The console.
    pub console: Arc<Console>,
}

impl SignedIn {
    /// Refuses (403, saying which roles would do) unless one of the roles
    /// allows `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), Refusal> {
        if self.identity.may(permission) {
            return Ok(());
        }
        let roles: Vec<&str> = permission.roles().iter().map(|r| r.as_str()).collect();
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "Not allowed",
            &format!(
                "{} (roles: {}) may not {}; ask an administrator for the role {}.",
                self.identity.name,
                self.identity.role_names(),
                permission.describe(),
                roles.join(" or ")
            ),
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<SignedIn, Response> {
        let console = Console::of(parts);
        let found = cookie(&parts.headers, SESSION_COOKIE).and_then(|t| console.sessions.find(t));
        match found {
            Some((identity, csrf)) => Ok(SignedIn {
                identity,
                csrf,
                source: source(&parts.extensions),
                console,
            }),
            None if parts.method == Method::GET || parts.method == Method::HEAD => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
                Err(Redirect::to(&format!("/signin?{query}")).into_response())
            }
            None => Err(refusal_page(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                "Your session has ended or you never signed in; sign in and try again.",
            )),
        }
    }
}

/// Adds the `Set-Cookie` header to a response.
pub(crate) fn with_cookie(mut response: Response, cookie: HeaderValue) -> Response {
    response.headers_mut().append(SET_COOKIE, cookie);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn someone() -> Identity {
        Identity {
            name: "alice".into(),
            roles: BTreeSet::from([crate::roles::Role::Viewer]),
            via: "local".into(),
        }
    }

    fn token_of(cookie: &HeaderValue) -> String {
        let text = cookie.to_str().unwrap();
        let pair = text.split(';').next().unwrap();
        pair.strip_prefix("connector_session=").unwrap().to_string()
    }

    #[test]
    fn a_session_ends_when_its_lifetime_is_over_and_at_sign_out() {
        let sessions = Sessions::new(Duration::from_millis(300));
        let first = token_of(&sessions.open(someone()));
        let (who, csrf) = sessions.find(&first).expect("a fresh session");
        assert_eq!(who.name, "alice");
        assert_eq!(csrf.len(), 43, "256 random bits, URL-safe");
        std::thread::sleep(Duration::from_millis(400));
        assert!(sessions.find(&first).is_none(), "expired");
        let second = token_of(&sessions.open(someone()));
        assert_ne!(first, second);
        assert!(sessions.close(&second).is_some());
        assert!(sessions.find(&second).is_none(), "signed out");
        assert!(sessions.find("forged").is_none());
    }
}
