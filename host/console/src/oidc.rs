//! Sign-in through an OpenID provider: the authorization code flow with
//! PKCE and a nonce, the provider found by discovery (and found again when
//! it fails), the ID token's signature, issuer, audience, expiry and nonce
//! checked, and roles taken from the configured groups claim.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse,
};

use crate::roles::{Identity, Role};
use crate::session::{random_token, same_secret};
use crate::settings::OidcSettings;

/// How long a started sign-in may take at the provider.
const PENDING_FOR: Duration = Duration::from_secs(10 * 60);
/// How long each request to the provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(15);

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a sign-in through the provider failed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Discovery failed.
    #[error(
        "the OpenID provider {issuer} cannot be reached or answered badly ({message}); check `issuer` in the console file and that this machine reaches the provider"
    )]
    Discovery {
        /// The issuer.
        issuer: String,
        /// What went wrong.
        message: String,
    },
    /// The callback's state is unknown, old or from another browser.
    #[error(
        "this sign-in was not started here, was already used or took longer than 10 minutes; sign in again"
    )]
    UnknownState,
    /// The provider answered with an error.
    #[error("the OpenID provider refused the sign-in: {0}")]
    Refused(String),
    /// The code could not be exchanged, or the ID token is not valid.
    #[error(
        "the OpenID provider's answer cannot be trusted: {0}; sign in again, and if it persists check the provider's client settings (client-id, secret, redirect URI)"
    )]
    Token(String),
    /// The user's groups grant no role.
    #[error(
        "{user} signed in, but none of their groups ({groups}) gives a role in this console; ask an administrator to add them to a group listed under [oidc.roles]"
    )]
    NoRole {
        /// Who.
        user: String,
        /// Their groups.
        groups: String,
    },
}

struct Pending {
    verifier: String,
    nonce: String,
    next: String,
    browser: String,
    started: Instant,
}

/// A sign-in started at the provider: where to send the browser, and the
/// value of the cookie that ties the callback to this browser.
pub(crate) struct Started {
    pub(crate) url: String,
    pub(crate) browser: String,
}

/// The provider's side of sign-in.
pub(crate) struct OidcSignIn {
    settings: OidcSettings,
    secret: Option<String>,
    redirect: RedirectUrl,
    client: Mutex<Option<Arc<Client>>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl OidcSignIn {
    pub(crate) fn new(
        settings: OidcSettings,
        secret: Option<String>,
        public_url: &str,
    ) -> Result<OidcSignIn, String> {
        let redirect = RedirectUrl::new(format!(
            "{}/signin/callback",
            public_url.trim_end_matches('/')
        ))
        .map_err(|e| e.to_string())?;
        Ok(OidcSignIn {
            settings,
            secret,
            redirect,
            client: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The text of the sign-in button.
    pub(crate) fn button(&self) -> &str {
        &self.settings.button
    }

    /// The issuer, for the audit trail.
    pub(crate) fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    fn client(&self) -> Result<Arc<Client>, OidcError> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let discovery = |message: String| OidcError::Discovery {
            issuer: self.settings.issuer.clone(),
            message,
        };
        let issuer =
            IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| discovery(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover(&issuer, &http_call)
            .map_err(|e| discovery(error_chain(&e)))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            self.secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(self.redirect.clone());
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Starts a sign-in that returns to `next`. Blocks (discovery).
    pub(crate) fn start(&self, next: &str) -> Result<Started, OidcError> {
        let client = self.client()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(self.settings.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge)
            .url();
        let browser = random_token();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, p| p.started.elapsed() < PENDING_FOR);
        pending.insert(
            state.secret().clone(),
            Pending {
                verifier: verifier.secret().clone(),
                nonce: nonce.secret().clone(),
                next: next.to_string(),
                browser: browser.clone(),
                started: Instant::now(),
            },
        );
        Ok(Started {
            url: url.to_string(),
            browser,
        })
    }

    /// Finishes a sign-in at the callback: the identity and where to go.
    /// Blocks (the token request).
    pub(crate) fn finish(
        &self,
        state: &str,
        code: &str,
        browser: Option<&str>,
    ) -> Result<(Identity, String), OidcError> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(state)
            .filter(|p| p.started.elapsed() < PENDING_FOR)
            .ok_or(OidcError::UnknownState)?;
        if !browser.is_some_and(|b| same_secret(b, &pending.browser)) {
            return Err(OidcError::UnknownState);
        }
        let client = self.client()?;
        let answer = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Token(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request(&http_call);
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                // Keys may have rotated or the provider moved: discover
                // again next time.
                self.forget_client();
                return Err(OidcError::Token(error_chain(&e)));
            }
        };
        let id_token = answer
            .id_token()
            .ok_or_else(|| OidcError::Token("no ID token in the answer".into()))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(pending.nonce))
            .map_err(|e| {
                self.forget_client();
                OidcError::Token(error_chain(&e))
            })?;
        let name = claims
            .email()
            .map(|e| e.as_str().to_string())
            .or_else(|| claims.preferred_username().map(|u| u.as_str().to_string()))
            .unwrap_or_else(|| claims.subject().as_str().to_string());
        // The signature was checked above; the groups claim is read from
        // the same token's payload, whatever its name.
        let groups = groups_in(&id_token.to_string(), &self.settings.groups_claim);
        let roles: BTreeSet<Role> = groups
            .iter()
            .filter_map(|g| self.settings.roles.get(g))
            .flatten()
            .copied()
            .collect();
        if roles.is_empty() {
            return Err(OidcError::NoRole {
                user: name,
                groups: if groups.is_empty() {
                    "none".into()
                } else {
                    groups.join(", ")
                },
            });
        }
        Ok((
            Identity {
                name,
                roles,
                via: self.settings.issuer.clone(),
            },
            pending.next,
        ))
    }

    fn forget_client(&self) {
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The strings of claim `claim` in a JWT's payload.
fn groups_in(jwt: &str, claim: &str) -> Vec<String> {
    let payload = jwt
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok());
    match payload.as_ref().and_then(|p| p.get(claim)) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Why a request to the provider failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProviderHttpError(String);

/// One request to the provider, redirects not followed; an error status is
/// returned as an answer, for the OAuth error in its body.
fn http_call(
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, ProviderHttpError> {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(PROVIDER_TIMEOUT)
        .build();
    let url = request.uri().to_string();
    let mut call = agent.request(request.method().as_str(), &url);
    for (name, value) in request.headers() {
        let value = value
            .to_str()
            .map_err(|_| ProviderHttpError(format!("header {name} is not text")))?;
        call = call.set(name.as_str(), value);
    }
    let answer = if request.body().is_empty() {
        call.call()
    } else {
        call.send_bytes(request.body())
    };
    let response = match answer {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(ProviderHttpError(format!("{url}: {e}"))),
    };
    let mut builder = http::Response::builder().status(response.status());
    for name in response.headers_names() {
        if let Some(value) = response.header(&name) {
            builder = builder.header(name.as_str(), value);
        }
    }
    let mut body = Vec::new();
    response
        .into_reader()
        .take(4 * 1024 * 1024)
        .read_to_end(&mut body)
        .map_err(|e| ProviderHttpError(format!("{url}: {e}")))?;
    builder
        .body(body)
        .map_err(|e| ProviderHttpError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_read_from_a_list_or_a_single_string() {
        let jwt = |payload: &str| format!("h.{}.s", URL_SAFE_NO_PAD.encode(payload));
        assert_eq!(
            groups_in(&jwt(r#"{"groups":["a","b"]}"#), "groups"),
            vec!["a", "b"]
        );
        assert_eq!(groups_in(&jwt(r#"{"roles":"a"}"#), "roles"), vec!["a"]);
        assert!(groups_in(&jwt(r#"{"sub":"x"}"#), "groups").is_empty());
    }
}
