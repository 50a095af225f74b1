//! App-only OAuth2 access tokens from the Microsoft identity platform's
//! client-credentials grant ("Microsoft identity platform and the OAuth
//! 2.0 client credentials flow"): a form-encoded `POST
//! {login-url}/{tenant}/oauth2/v2.0/token` with `grant_type =
//! client_credentials`, the app's client id and secret, and the resource's
//! `/.default` scope.
//!
//! [`AppTokens`] keeps one token for all of a sink's workers, asks for a
//! new one shortly before the old one expires (at half its life, at most
//! five minutes early) and after a server refused it ([`AppTokens::forget`]);
//! the client secret is read from the secret source at each request, so a
//! rotated secret is picked up without a restart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connector_secrets::SecretLookup;
use serde_json::Value;

/// The identity platform's base URL when the configuration gives none.
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";

/// Longest a token is renewed before it expires.
const MAX_RENEW_MARGIN: Duration = Duration::from_secs(300);
/// Longest a token is trusted, whatever its `expires_in` says (the
/// identity platform gives 60 to 90 minutes).
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Who asks for tokens, and for which resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The identity platform's base URL, without a trailing `/`.
    pub login_url: String,
    /// Directory (tenant) id or domain.
    pub tenant: String,
    /// Application (client) id of the app registration.
    pub client_id: String,
    /// Name of the secret holding the app's client secret.
    pub client_secret_secret: String,
    /// The resource's scope, e.g. `https://outlook.office365.com/.default`.
    pub scope: String,
    /// Timeout of one token request.
    pub timeout: Duration,
}

impl ClientCredentials {
    /// Credentials from a `[sink]` table's `tenant`, `client-id`,
    /// `client-secret-secret` and `login-url`, checked: the first three
    /// must not be empty and `login-url` must be an http(s) URL. The error
    /// names the key to fix.
    pub fn from_keys(
        tenant: &str,
        client_id: &str,
        client_secret_secret: &str,
        login_url: &str,
        scope: &str,
        timeout: Duration,
    ) -> Result<ClientCredentials, String> {
        for (key, value) in [
            ("tenant", tenant),
            ("client-id", client_id),
            ("client-secret-secret", client_secret_secret),
        ] {
            if value.trim().is_empty() {
                return Err(format!("`{key}` is empty"));
            }
        }
        check_http_url("login-url", login_url)?;
        Ok(ClientCredentials {
            login_url: login_url.trim().trim_end_matches('/').to_string(),
            tenant: tenant.trim().to_string(),
            client_id: client_id.trim().to_string(),
            client_secret_secret: client_secret_secret.trim().to_string(),
            scope: scope.to_string(),
            timeout,
        })
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.login_url, self.tenant)
    }
}

/// Checks that the configuration key `key` holds an http(s) URL; the error
/// names the key and the value.
pub fn check_http_url(key: &str, value: &str) -> Result<(), String> {
    let url = url::Url::parse(value.trim())
        .map_err(|e| format!("`{key}` = \"{value}\" is not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("`{key}` = \"{value}\" is not an http(s) URL"));
    }
    Ok(())
}

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The client secret is missing, or the identity platform refused the
    /// app's credentials (wrong tenant, client id or secret, expired
    /// secret): retrying does not help until `fix` is done.
    #[error("{reason}; {fix}")]
    Credentials {
        /// What went wrong.
        reason: String,
        /// What to change, and where.
        fix: String,
    },
    /// The token endpoint answered 200 without a token: `login-url` does
    /// not lead to an identity platform.
    #[error("the token endpoint {url} answered without an access_token; check `login-url`")]
    NotAnEndpoint {
        /// The URL asked.
        url: String,
    },
    /// The token endpoint cannot be reached now, or is busy (429, 5xx).
    #[error("cannot get a token from {url}: {message}")]
    Unavailable {
        /// The URL asked.
        url: String,
        /// What happened.
        message: String,
    },
}

/// What the token endpoint answered, read from its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAnswer {
    /// 200 with an `access_token`, which lives `lifetime`: `expires_in`
    /// (a number in the v2.0 endpoint's answers, a string in older ones;
    /// 3600 s when missing or unreadable), at most [`MAX_LIFETIME`].
    Granted {
        /// The access token.
        token: String,
        /// How long it lives from now.
        lifetime: Duration,
    },
    /// 200 without an `access_token`: not an identity platform.
    NoToken,
    /// 429 or 5xx: the endpoint is busy.
    Busy,
    /// Any other status: the credentials were refused. `error` and
    /// `error_description` of the OAuth error body (empty, and the whole
    /// body, when it has none).
    Refused {
        /// The OAuth `error` code, e.g. `invalid_client`.
        error: String,
        /// `error_description`, else the body as it came.
        description: String,
    },
}

/// Reads the token endpoint's answer (`status` and `body`); see
/// [`TokenAnswer`] for what each outcome means.
pub fn read_token_answer(status: u16, body: &str) -> TokenAnswer {
    if status == 429 || status >= 500 {
        return TokenAnswer::Busy;
    }
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if status != 200 {
        return TokenAnswer::Refused {
            error: parsed["error"].as_str().unwrap_or("").to_string(),
            description: parsed["error_description"]
                .as_str()
                .unwrap_or(body)
                .to_string(),
        };
    }
    let Some(token) = parsed["access_token"].as_str() else {
        return TokenAnswer::NoToken;
    };
    let seconds = parsed["expires_in"]
        .as_u64()
        .or_else(|| parsed["expires_in"].as_str()?.parse().ok())
        .unwrap_or(3600);
    TokenAnswer::Granted {
        token: token.to_string(),
        lifetime: Duration::from_secs(seconds).min(MAX_LIFETIME),
    }
}

/// When a token that lives `lifetime` from `now` is asked for again: at
/// half its life, at most five minutes before it expires; a lifetime over
/// [`MAX_LIFETIME`] counts as that.
pub fn renewal_time(now: Instant, lifetime: Duration) -> Instant {
    let lifetime = lifetime.min(MAX_LIFETIME);
    let margin = (lifetime / 2).min(MAX_RENEW_MARGIN);
    now + (lifetime - margin)
}

struct Cached {
    value: String,
    renew_at: Instant,
}

/// App tokens for one set of [`ClientCredentials`], shared by a sink's
/// workers; see the crate documentation.
pub struct AppTokens {
    credentials: ClientCredentials,
    secrets: Arc<dyn SecretLookup>,
    agent: ureq::Agent,
    cached: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for AppTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppTokens")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl AppTokens {
    /// Tokens for `credentials`, the client secret read from `secrets`.
    /// Nothing is requested until the first [`AppTokens::token`].
    pub fn new(credentials: ClientCredentials, secrets: Arc<dyn SecretLookup>) -> AppTokens {
        let agent = ureq::AgentBuilder::new()
            .timeout(credentials.timeout)
            .redirects(0)
            .build();
        AppTokens {
            credentials,
            secrets,
            agent,
            cached: Mutex::new(None),
        }
    }

    /// The credentials tokens are asked with.
    pub fn credentials(&self) -> &ClientCredentials {
        &self.credentials
    }

    /// A token that is not about to expire: the cached one, else a new
    /// one. Concurrent callers wait for one request rather than each
    /// making their own.
    pub fn token(&self) -> Result<String, TokenError> {
        let mut slot = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = slot.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.value.clone());
        }
        let (value, lifetime) = self.request()?;
        *slot = Some(Cached {
            value: value.clone(),
            renew_at: renewal_time(Instant::now(), lifetime),
        });
        tracing::debug!(
            tenant = %self.credentials.tenant,
            scope = %self.credentials.scope,
            ?lifetime,
            "app token obtained"
        );
        Ok(value)
    }

    /// Forgets `token` after a server refused it (expired early, revoked),
    /// unless a newer one already replaced it: the next
    /// [`AppTokens::token`] asks for a new one.
    pub fn forget(&self, token: &str) {
        let mut slot = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|t| t.value == token) {
            *slot = None;
        }
    }

    /// One token request: the token and how long it lives.
    fn request(&self) -> Result<(String, Duration), TokenError> {
        let c = &self.credentials;
        let name = &c.client_secret_secret;
        let secret = match self.secrets.secret(name) {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(TokenError::Credentials {
                    reason: format!("the secret `{name}` (the app's client secret) is not set"),
                    fix: format!("set {}", self.secrets.where_to_set(name)),
                });
            }
            Err(e) => {
                return Err(TokenError::Credentials {
                    reason: format!("the secret `{name}` cannot be read: {e}"),
                    fix: "fix the connector's [secrets] source".into(),
                });
            }
        };
        let url = c.token_url();
        let unavailable = |message: String| TokenError::Unavailable {
            url: url.clone(),
            message,
        };
        let sent = self.agent.post(&url).send_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.client_id),
            ("client_secret", secret.expose()),
            ("scope", &c.scope),
        ]);
        let response = match sent {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(unavailable(t.to_string())),
        };
        let status = response.status();
        let body = response
            .into_string()
            .map_err(|e| unavailable(format!("reading the answer: {e}")))?;
        match read_token_answer(status, &body) {
            TokenAnswer::Granted { token, lifetime } => Ok((token, lifetime)),
            TokenAnswer::NoToken => Err(TokenError::NotAnEndpoint { url }),
            TokenAnswer::Busy => Err(unavailable(format!("the token endpoint answered {status}"))),
            TokenAnswer::Refused { error, description } => Err(TokenError::Credentials {
                reason: format!("the token request was refused ({status}): {error} {description}"),
                fix: format!(
                    "check `tenant` ({}) and `client-id` ({}) and put a valid client secret of that app in {}",
                    c.tenant,
                    c.client_id,
                    self.secrets.where_to_set(name)
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_secrets::SecretStore;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    /// A token endpoint that answers each request with the next of
    /// `answers` (status, body) and records the form it got.
    fn endpoint(answers: Vec<(u16, String)>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let forms = Arc::new(Mutex::new(Vec::new()));
        let seen = forms.clone();
        std::thread::spawn(move || {
            for (answer, stream) in answers.into_iter().zip(listener.incoming()) {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                seen.lock().unwrap().push(String::from_utf8(body).unwrap());
                let (status, text) = answer;
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                )
                .unwrap();
            }
        });
        (url, forms)
    }

    fn tokens(login_url: &str, secret: Option<&str>) -> AppTokens {
        let credentials = ClientCredentials::from_keys(
            "contoso.example",
            "app-id",
            "client-secret",
            login_url,
            "https://outlook.office365.com/.default",
            Duration::from_secs(5),
        )
        .unwrap();
        let secrets =
            SecretStore::from_pairs(secret.map(|s| ("client-secret".to_string(), s.to_string())));
        AppTokens::new(credentials, Arc::new(secrets))
    }

    fn granted(token: &str, expires_in: u64) -> (u16, String) {
        (
            200,
            format!(
                r#"{{"token_type":"Bearer","expires_in":{expires_in},"access_token":"{token}"}}"#
            ),
        )
    }

    #[test]
    fn a_token_is_kept_until_half_its_life_and_renewed_after_a_refusal() {
        let (url, forms) = endpoint(vec![
            granted("t1", 2),
            granted("t2", 3600),
            granted("t3", 3600),
        ]);
        let tokens = tokens(&url, Some("s3cret"));
        assert_eq!(tokens.token().unwrap(), "t1");
        assert_eq!(tokens.token().unwrap(), "t1");
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(tokens.token().unwrap(), "t2", "renewed at half its life");
        tokens.forget("t1");
        assert_eq!(
            tokens.token().unwrap(),
            "t2",
            "an older token is not forgotten twice"
        );
        tokens.forget("t2");
        assert_eq!(tokens.token().unwrap(), "t3");
        let form = forms.lock().unwrap()[0].clone();
        for pair in [
            "grant_type=client_credentials",
            "client_id=app-id",
            "client_secret=s3cret",
            "scope=https%3A%2F%2Foutlook.office365.com%2F.default",
        ] {
            assert!(form.contains(pair), "{form}");
        }
    }

    #[test]
    fn refusals_say_what_to_fix_and_busy_endpoints_are_retried_later() {
        let (url, _) = endpoint(vec![
            (
                401,
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#.into(),
            ),
            (503, String::new()),
            (200, "{}".into()),
        ]);
        let tokens = tokens(&url, Some("wrong"));
        match tokens.token() {
            Err(TokenError::Credentials { reason, fix }) => {
                assert!(
                    reason.contains("(401): invalid_client AADSTS7000215"),
                    "{reason}"
                );
                assert!(
                    fix.contains("`client-id` (app-id)") && fix.contains("client-secret"),
                    "{fix}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            tokens.token(),
            Err(TokenError::Unavailable { .. })
        ));
        assert!(matches!(
            tokens.token(),
            Err(TokenError::NotAnEndpoint { .. })
        ));
        match self::tokens(&url, None).token() {
            Err(e @ TokenError::Credentials { .. }) => {
                assert!(e.to_string().contains("`client-secret`"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_token_whose_expires_in_overflows_the_clock_is_trusted_a_day_at_most() {
        // Before MAX_LIFETIME, `Instant::now() + lifetime` panicked
        // ("overflow when adding duration to instant") on this answer.
        let body =
            r#"{"token_type":"Bearer","expires_in":18446744073709551615,"access_token":"t"}"#;
        let TokenAnswer::Granted { token, lifetime } = read_token_answer(200, body) else {
            panic!("{:?}", read_token_answer(200, body));
        };
        assert_eq!((token.as_str(), lifetime), ("t", MAX_LIFETIME));
        let now = Instant::now();
        assert_eq!(
            renewal_time(now, Duration::MAX),
            now + MAX_LIFETIME - MAX_RENEW_MARGIN
        );
        let text = r#"{"expires_in":"99999999999999999999","access_token":"t"}"#;
        assert!(matches!(
            read_token_answer(200, text),
            TokenAnswer::Granted { lifetime, .. } if lifetime == Duration::from_secs(3600)
        ));
    }
}
