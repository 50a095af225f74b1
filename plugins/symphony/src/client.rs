//! HTTP to the pod, agent and key manager: login, session headers, one
//! re-login on 401, and the classification of failures.
//!
//! Everything the plugin asks the network goes through a [`Backend`], so
//! that the session logic can be tested natively against a fake pod; inside
//! the host it is [`HostBackend`] (the SDK's `http`, `signing` and `time`).

use connector_sdk::SourceError;
use connector_sdk::http::{FullResponse, HttpError, Method, Request};

use crate::api;
use crate::config::Config;
use crate::jwt;

/// Name of the signing key holding the service account's RSA private key.
pub const SIGNING_KEY: &str = "private-key";
/// Time limit of an API request.
const API_TIMEOUT_MS: u32 = 120_000;
/// Time limit of a login request.
const LOGIN_TIMEOUT_MS: u32 = 60_000;

/// What the plugin needs from its surroundings.
pub trait Backend {
    /// Sends a request and reads the whole response.
    fn fetch(&mut self, request: &Request) -> Result<FullResponse, HttpError>;
    /// Signs `data` with RS512 and the key [`SIGNING_KEY`].
    fn sign(&mut self, data: &[u8]) -> Result<Vec<u8>, SourceError>;
    /// Milliseconds since the epoch, now.
    fn now_ms(&self) -> i64;
    /// The tokens an earlier session of this instance got for `account`
    /// (the host runs the partitions a thread reads one after another in
    /// one instance, so they log in once); none by default.
    fn remembered_login(&self, account: &str) -> Option<Tokens> {
        let _ = account;
        None
    }
    /// Keeps `tokens` for the next session of this instance.
    fn remember_login(&mut self, account: &str, tokens: &Tokens) {
        let _ = (account, tokens);
    }
}

/// The host's imports.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostBackend;

/// The last login of this instance, by account (see
/// [`Backend::remembered_login`]); memory of one instance only.
static LAST_LOGIN: std::sync::Mutex<Option<(String, Tokens)>> = std::sync::Mutex::new(None);

impl Backend for HostBackend {
    fn fetch(&mut self, request: &Request) -> Result<FullResponse, HttpError> {
        connector_sdk::http::fetch(request)
    }

    fn sign(&mut self, data: &[u8]) -> Result<Vec<u8>, SourceError> {
        connector_sdk::signing::sign(SIGNING_KEY, connector_sdk::signing::Algorithm::Rs512, data)
            .map_err(SourceError::from)
    }

    fn now_ms(&self) -> i64 {
        connector_sdk::time::now_ms()
    }

    fn remembered_login(&self, account: &str) -> Option<Tokens> {
        let last = LAST_LOGIN.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref()
            .filter(|(who, _)| who == account)
            .map(|(_, tokens)| tokens.clone())
    }

    fn remember_login(&mut self, account: &str, tokens: &Tokens) {
        *LAST_LOGIN.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((account.to_string(), tokens.clone()));
    }
}

/// Which server a request goes to, and so which tokens it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// The pod: `sessionToken`.
    Pod,
    /// The agent: `sessionToken` and `keyManagerToken`.
    Agent,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// A classified failure.
    Source(SourceError),
    /// The response was larger than the host buffers (the limit in bytes).
    TooLarge(u64),
    /// The server refused the request for good: its HTTP status, and the
    /// message naming the endpoint and the server's reason.
    Refused(u16, String),
}

impl From<SourceError> for CallError {
    fn from(e: SourceError) -> Self {
        CallError::Source(e)
    }
}

impl From<CallError> for SourceError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Source(e) => e,
            CallError::Refused(_, why) => SourceError::Permanent(why),
            CallError::TooLarge(limit) => SourceError::Permanent(format!(
                "a response exceeded the host's limit of {limit} bytes"
            )),
        }
    }
}

/// Session headers: `(header name, token)` for the pod and the key manager.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    /// `sessionToken`.
    pub session: (String, String),
    /// `keyManagerToken`; `None` where the key-manager login is skipped.
    pub key_manager: Option<(String, String)>,
}

impl Tokens {
    /// The headers a request to `server` carries: the session token, and
    /// for the agent the key-manager token where there is one.
    pub fn headers(&self, server: Server) -> impl Iterator<Item = (&str, &str)> {
        let key_manager = match server {
            Server::Agent => self.key_manager.as_ref(),
            Server::Pod => None,
        };
        std::iter::once(&self.session)
            .chain(key_manager)
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(<redacted>)")
    }
}

/// A logged-in (or not yet) client.
pub struct Client<B> {
    backend: B,
    username: String,
    pod: String,
    agent: String,
    /// The key manager's base URL, `None` when its login is skipped.
    key_manager: Option<String>,
    tokens: Option<Tokens>,
    logins: u32,
}

/// `METHOD path` of a URL, without its query, for messages.
pub fn endpoint(method: Method, url: &str) -> String {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = without_scheme
        .find('/')
        .map_or("/", |i| &without_scheme[i..]);
    let path = path.split('?').next().unwrap_or(path);
    let m = match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    };
    format!("{m} {path}")
}

/// The `message` of an `Error` body, or the start of the body.
fn body_message(body: &[u8]) -> String {
    if let Ok(api::ErrorBody {
        message: Some(message),
    }) = serde_json::from_slice::<api::ErrorBody>(body)
    {
        return message.chars().take(200).collect();
    }
    String::from_utf8_lossy(&body[..body.len().min(200)])
        .trim()
        .to_string()
}

/// Whether a 400 answer is the agent throttling: it carries `Retry-After`,
/// or its message asks to retry later (agents throttle with a bare 400 too).
fn throttling_400(response: &FullResponse, detail: &str) -> bool {
    let detail = detail.to_ascii_lowercase();
    response.header("retry-after").is_some()
        || ["too many requests", "retry later", "rate limit"]
            .iter()
            .any(|m| detail.contains(m))
}

/// Classifies a non-2xx answer of `what`: 429, and a throttling 400 (with
/// `Retry-After`, or saying to retry later), are throttling; 401 is an
/// authentication failure; 5xx are transient; every other status is
/// permanent.
pub fn status_error(what: &str, response: &FullResponse) -> SourceError {
    let status = response.status;
    let detail = body_message(&response.body);
    if status == 429 || (status == 400 && throttling_400(response, &detail)) {
        return SourceError::RateLimited(
            response
                .header("retry-after")
                .and_then(connector_sdk::http::parse_retry_after),
        );
    }
    let message = if detail.is_empty() {
        format!("{what} answered HTTP {status}")
    } else {
        format!("{what} answered HTTP {status}: {detail}")
    };
    match status {
        401 => SourceError::Auth(format!(
            "{message}; the session was refused right after logging in again"
        )),
        403 => SourceError::Permanent(format!(
            "{message}; the pod refused the service account (the admin endpoints need the \
             User Provisioning role, a stream's messages membership of the stream, the \
             datahose its add-on)"
        )),
        500..=599 => SourceError::Transient(message),
        _ => SourceError::Permanent(message),
    }
}

fn http_error(what: &str, e: HttpError) -> CallError {
    match e {
        HttpError::BodyTooLarge(limit) => CallError::TooLarge(limit),
        HttpError::Timeout => {
            CallError::Source(SourceError::Transient(format!("{what} timed out")))
        }
        HttpError::Connection(why) => CallError::Source(SourceError::Transient(format!(
            "{what}: connection failed: {why}"
        ))),
        HttpError::Other(why) => {
            CallError::Source(SourceError::Transient(format!("{what} failed: {why}")))
        }
        HttpError::Denied(why) => {
            CallError::Source(SourceError::Permanent(format!("{what} was denied: {why}")))
        }
        HttpError::InvalidRequest(why) => CallError::Source(SourceError::Permanent(format!(
            "{what} is not a valid request: {why}"
        ))),
    }
}

impl<B: Backend> Client<B> {
    /// A client for `config`'s servers; it logs in on first use.
    pub fn new(backend: B, config: &Config) -> Client<B> {
        Client {
            backend,
            username: config.username.clone(),
            pod: config.pod_url.clone(),
            agent: config.agent_url.clone(),
            key_manager: config
                .key_manager_login
                .then(|| config.key_manager_url.clone()),
            tokens: None,
            logins: 0,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// `{pod}{path}`.
    pub fn pod_url(&self, path: &str) -> String {
        format!("{}{path}", self.pod)
    }

    /// `{agent}{path}`.
    pub fn agent_url(&self, path: &str) -> String {
        format!("{}{path}", self.agent)
    }

    /// How many logins this client made.
    pub fn logins(&self) -> u32 {
        self.logins
    }

    /// The current session headers: those of an earlier session of this
    /// instance for the same account, else a fresh login's.
    pub fn tokens(&mut self) -> Result<Tokens, SourceError> {
        if self.tokens.is_none() {
            self.tokens = self.backend.remembered_login(&self.account());
        }
        if self.tokens.is_none() {
            self.login()?;
        }
        Ok(self.tokens.clone().expect("logged in"))
    }

    /// Who logs in where: the key of a remembered login.
    fn account(&self) -> String {
        format!(
            "{} {} {} {}",
            self.username,
            self.pod,
            self.agent,
            self.key_manager.as_deref().unwrap_or("-")
        )
    }

    /// Logs in to the pod and the key manager with a fresh JWT signed by the
    /// host, replacing any earlier tokens.
    pub fn login(&mut self) -> Result<(), SourceError> {
        self.tokens = None;
        let now = self.backend.now_ms();
        let input = jwt::signing_input(&self.username, now);
        let signature = self.backend.sign(input.as_bytes())?;
        let token = jwt::assemble(&input, &signature);
        let session = self.authenticate(
            &format!("{}/login/pubkey/authenticate", self.pod),
            &token,
            "sessionToken",
        )?;
        let key_manager = match self.key_manager.clone() {
            Some(base) => Some(self.authenticate(
                &format!("{base}/relay/pubkey/authenticate"),
                &token,
                "keyManagerToken",
            )?),
            None => None,
        };
        self.logins += 1;
        connector_sdk::debug!("logged in to Symphony"; logins = self.logins);
        let tokens = Tokens {
            session,
            key_manager,
        };
        let account = self.account();
        self.backend.remember_login(&account, &tokens);
        self.tokens = Some(tokens);
        Ok(())
    }

    fn authenticate(
        &mut self,
        url: &str,
        jwt: &str,
        default_header: &str,
    ) -> Result<(String, String), SourceError> {
        let what = endpoint(Method::Post, url);
        let request = Request::post(url)
            .header("accept", "application/json")
            .json(&serde_json::json!({ "token": jwt }))?
            .timeout_ms(LOGIN_TIMEOUT_MS);
        let response = self
            .backend
            .fetch(&request)
            .map_err(|e| SourceError::from(http_error(&what, e)))?;
        if response.status == 401 || response.status == 403 {
            return Err(SourceError::Auth(format!(
                "{what} refused the login of {:?} (HTTP {}: {}); check the username and that \
                 the public key of the signing key {SIGNING_KEY:?} is registered for it",
                self.username,
                response.status,
                body_message(&response.body)
            )));
        }
        if !(200..300).contains(&response.status) {
            return Err(status_error(&what, &response));
        }
        let token: api::Token = serde_json::from_slice(&response.body).map_err(|e| {
            SourceError::Permanent(format!("{what} answered an unexpected body: {e}"))
        })?;
        let value = token
            .token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| SourceError::Permanent(format!("{what} answered no token")))?;
        let header = token
            .name
            .filter(|n| {
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .unwrap_or_else(|| default_header.to_string());
        Ok((header, value))
    }

    /// Sends a request to `server` with the session headers. On 401 it logs
    /// in again once and repeats the request. Returns the response if its
    /// status is 2xx, else the classified failure.
    pub fn call(
        &mut self,
        server: Server,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<FullResponse, CallError> {
        let what = endpoint(method, url);
        let mut relogged = false;
        loop {
            let tokens = self.tokens()?;
            let mut request = Request::new(method, url)
                .header("accept", "application/json")
                .timeout_ms(API_TIMEOUT_MS);
            for (name, value) in tokens.headers(server) {
                request = request.header(name, value);
            }
            if let Some(body) = body {
                request = request.json(body)?;
            }
            let response = self
                .backend
                .fetch(&request)
                .map_err(|e| http_error(&what, e))?;
            if response.status == 401 && !relogged {
                connector_sdk::info!("session expired, logging in again"; endpoint = what);
                self.login()?;
                relogged = true;
                continue;
            }
            if (200..300).contains(&response.status) {
                return Ok(response);
            }
            return Err(match status_error(&what, &response) {
                SourceError::Permanent(why) => CallError::Refused(response.status, why),
                other => CallError::Source(other),
            });
        }
    }
}

/// Percent-encodes a URL path segment or query value: every byte but the
/// unreserved ones (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`. With
/// `keep_escapes`, `%XX` sequences already there are kept as they are, so
/// that an id a server lists percent-encoded is not encoded twice.
pub fn encode_component(s: &str, keep_escapes: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else if keep_escapes
            && b == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            out.push_str(&s[i..i + 3]);
            i += 3;
            continue;
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> FullResponse {
        FullResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn statuses_are_classified_with_the_endpoint() {
        let what = "GET /agent/v4/stream/s/message";
        assert_eq!(
            status_error(what, &response(429, &[("retry-after", "7")], "")),
            SourceError::RateLimited(Some(7))
        );
        assert_eq!(
            status_error(what, &response(429, &[], "")),
            SourceError::RateLimited(None)
        );
        assert_eq!(
            status_error(what, &response(400, &[("retry-after", "2")], "{}")),
            SourceError::RateLimited(Some(2))
        );
        match status_error(
            what,
            &response(400, &[], r#"{"code":400,"message":"bad since"}"#),
        ) {
            SourceError::Permanent(m) => {
                assert!(
                    m.contains(what) && m.contains("400") && m.contains("bad since"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            status_error(
                what,
                &response(
                    400,
                    &[],
                    r#"{"code":400,"message":"Too many requests, please retry later"}"#
                )
            ),
            SourceError::RateLimited(None)
        );
        assert!(matches!(
            status_error(what, &response(401, &[], "")),
            SourceError::Auth(_)
        ));
        assert!(matches!(
            status_error(what, &response(403, &[], "")),
            SourceError::Permanent(m) if m.contains("403")
        ));
        assert!(matches!(
            status_error(what, &response(404, &[], "")),
            SourceError::Permanent(_)
        ));
        assert!(matches!(
            status_error(what, &response(503, &[], "down")),
            SourceError::Transient(m) if m.contains("503") && m.contains("down")
        ));
    }

    #[test]
    fn endpoints_name_method_and_path() {
        assert_eq!(
            endpoint(
                Method::Get,
                "https://h:1/agent/v4/stream/x/message?since=1&skip=0"
            ),
            "GET /agent/v4/stream/x/message"
        );
        assert_eq!(endpoint(Method::Post, "http://h"), "POST /");
    }

    #[test]
    fn components_are_encoded_once() {
        assert_eq!(
            encode_component("internal_1/ab+c==", false),
            "internal_1%2Fab%2Bc%3D%3D"
        );
        assert_eq!(
            encode_component("internal_1%2Fab%2Bc%3D%3D", true),
            "internal_1%2Fab%2Bc%3D%3D"
        );
        assert_eq!(
            encode_component("internal_1/ab%2B==", true),
            "internal_1%2Fab%2B%3D%3D"
        );
        assert_eq!(encode_component("50%", true), "50%25");
        assert_eq!(encode_component("a%zz", true), "a%25zz");
        assert_eq!(encode_component("ü ~", false), "%C3%BC%20~");
        assert_eq!(encode_component("Q2KY-_x", false), "Q2KY-_x");
    }

    #[test]
    fn tokens_are_never_printed() {
        let t = Tokens {
            session: ("sessionToken".into(), "secret-session".into()),
            key_manager: Some(("keyManagerToken".into(), "secret-km".into())),
        };
        assert!(!format!("{t:?}").contains("secret"));
    }
}
