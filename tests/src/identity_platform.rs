//! A local stand-in for the Microsoft identity platform's token endpoint,
//! client-credentials grant only, written from "Microsoft identity platform
//! and the OAuth 2.0 client credentials flow" (Microsoft Learn) and its
//! error reference:
//!
//! - `POST /{tenant}/oauth2/v2.0/token` with a form-encoded body
//!   (`Content-Type: application/x-www-form-urlencoded`), else 400
//!   `invalid_request` (AADSTS900144, the body lacks `grant_type`);
//! - an unknown tenant: 400 `invalid_request` (AADSTS90002);
//! - `grant_type=client_credentials`, else 400 `unsupported_grant_type`
//!   (AADSTS70003);
//! - `scope` = the resource's `/.default`, else 400 `invalid_scope`
//!   (AADSTS1002012: client credentials need `/.default`);
//! - an unknown `client_id`: 400 `unauthorized_client` (AADSTS700016);
//! - a wrong `client_secret`: 401 `invalid_client` (AADSTS7000215);
//! - success: 200 `{"token_type": "Bearer", "expires_in": …,
//!   "ext_expires_in": …, "access_token": …}` with `expires_in` in
//!   seconds as a number. Errors carry `error`, `error_description`,
//!   `error_codes`, `timestamp`, `trace_id` and `correlation_id`.
//!
//! [`Tokens`] holds those rules and the tokens issued (the Graph test
//! server uses it for its token endpoint); [`IdentityServer`] serves it
//! over HTTP together with an RFC 7662 introspection endpoint (`POST
//! /introspect`, form `token=…`) for Dovecot's `oauth2` passdb: `{"active":
//! true, "username": "<client id>@<domain>", …}` for a live token,
//! `{"active": false}` otherwise. A token lives [`TokenRules::lifetime`]
//! on the server's clock while its answer announces
//! [`TokenRules::expires_in`], so a test can make tokens die before the
//! sink expects (revoked, clock skew).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// What the token endpoint accepts.
#[derive(Debug, Clone, Default)]
pub struct TokenRules {
    /// The tenant (id or domain) the path must name; `None`: any.
    pub tenant: Option<String>,
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: String,
    /// The one scope tokens are issued for, e.g.
    /// `https://outlook.office365.com/.default`.
    pub scope: String,
    /// How long a token is accepted after it was issued.
    pub lifetime: Duration,
    /// What the answer's `expires_in` says.
    pub expires_in: Duration,
}

impl TokenRules {
    /// Tokens for one app and scope that live and announce 3599 s, as
    /// Microsoft's do; any tenant.
    pub fn new(client_id: &str, client_secret: &str, scope: &str) -> TokenRules {
        TokenRules {
            tenant: None,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scope: scope.into(),
            lifetime: Duration::from_secs(3599),
            expires_in: Duration::from_secs(3599),
        }
    }
}

/// The token endpoint's state: its rules, the tokens it issued and the
/// requests that broke a rule. The default accepts nothing.
#[derive(Debug, Default)]
pub struct Tokens {
    rules: TokenRules,
    /// Token → when it stops being accepted.
    live: Vec<(String, Instant)>,
    /// Tokens the endpoint issued.
    issued: usize,
    /// Tokens made, by the endpoint or for a test.
    minted: usize,
    violations: Vec<String>,
}

/// An identity-platform error answer.
fn refusal(status: u16, error: &str, code: u32, description: &str) -> (u16, Value) {
    (
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}"),
            "error_codes": [code],
            "timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": "00000000-0000-0000-0000-000000000001",
            "correlation_id": "00000000-0000-0000-0000-000000000002",
        }),
    )
}

impl Tokens {
    /// A token endpoint with these rules.
    pub fn new(rules: TokenRules) -> Tokens {
        Tokens {
            rules,
            ..Tokens::default()
        }
    }

    /// Answers a token request for `tenant` (from the path) as the
    /// identity platform does. A request a correct client never sends
    /// (not a form, another grant or scope) is also recorded as a
    /// violation; wrong credentials are not: they are what a
    /// misconfigured connector sends.
    pub fn answer(
        &mut self,
        tenant: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, Value) {
        let form_encoded = content_type.is_some_and(|t| {
            t.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
        if !form_encoded {
            self.violations
                .push(format!("a token request of type {content_type:?}"));
            return refusal(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            );
        }
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        let field = |k: &str| form.get(k).map(String::as_str);
        if self.rules.tenant.as_deref().is_some_and(|t| t != tenant) {
            return refusal(
                400,
                "invalid_request",
                90002,
                &format!("Tenant '{tenant}' not found."),
            );
        }
        if field("grant_type") != Some("client_credentials") {
            self.violations
                .push(format!("grant_type {:?}", field("grant_type")));
            return refusal(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
            );
        }
        if field("scope") != Some(self.rules.scope.as_str()) {
            self.violations.push(format!("scope {:?}", field("scope")));
            return refusal(
                400,
                "invalid_scope",
                1002012,
                &format!(
                    "The provided value for scope {} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
                    field("scope").unwrap_or("")
                ),
            );
        }
        if field("client_id") != Some(self.rules.client_id.as_str()) {
            return refusal(
                400,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{}' was not found in the directory '{tenant}'.",
                    field("client_id").unwrap_or("")
                ),
            );
        }
        if field("client_secret") != Some(self.rules.client_secret.as_str()) {
            return refusal(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            );
        }
        self.issued += 1;
        let token = self.issue();
        (
            200,
            json!({
                "token_type": "Bearer",
                "expires_in": self.rules.expires_in.as_secs(),
                "ext_expires_in": self.rules.expires_in.as_secs(),
                "access_token": token,
            }),
        )
    }

    /// Issues a token as a successful request would, without counting it
    /// (for requests a test sends itself).
    pub fn issue(&mut self) -> String {
        self.minted += 1;
        let token = format!("token-{:08}-{:016x}", self.minted, rand_word());
        self.live
            .push((token.clone(), Instant::now() + self.rules.lifetime));
        token
    }

    /// Whether `token` was issued and is still alive.
    pub fn accepts(&self, token: &str) -> bool {
        let now = Instant::now();
        self.live
            .iter()
            .any(|(t, until)| t == token && now < *until)
    }

    /// Makes every token issued so far invalid.
    pub fn revoke_all(&mut self) {
        self.live.clear();
    }

    /// Tokens the endpoint issued so far.
    pub fn issued(&self) -> usize {
        self.issued
    }

    /// Requests that broke a rule.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }
}

/// A word that differs between tokens of different runs and servers.
fn rand_word() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// What the server counted and decided.
#[derive(Debug, Default)]
struct Served {
    tokens: Tokens,
    /// Introspections answered `active: false`.
    inactive: usize,
    /// Introspections answered `active: true`.
    active: usize,
}

/// The token endpoint and an introspection endpoint over HTTP on
/// 127.0.0.1; they stop with the test process.
pub struct IdentityServer {
    origin: String,
    served: Arc<Mutex<Served>>,
}

impl IdentityServer {
    /// Starts the server. Live tokens introspect as
    /// `<client id>@<domain>`; each introspection waits `latency` first (a
    /// slow identity provider makes each login take that long).
    pub fn start(rules: TokenRules, domain: &str, latency: Duration) -> IdentityServer {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("binding a loopback port");
        let origin = format!(
            "http://{}",
            server.server_addr().to_ip().expect("an IP address")
        );
        let username = format!("{}@{domain}", rules.client_id);
        let served = Arc::new(Mutex::new(Served {
            tokens: Tokens::new(rules),
            ..Served::default()
        }));
        let server = Arc::new(server);
        // A few threads: Dovecot's auth process and the sink's workers
        // ask at the same time.
        for _ in 0..4 {
            let server = server.clone();
            let served = served.clone();
            let username = username.clone();
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    serve(request, &served, &username, latency);
                }
            });
        }
        IdentityServer { origin, served }
    }

    fn served(&self) -> MutexGuard<'_, Served> {
        self.served.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `login-url` for a sink.
    pub fn login_url(&self) -> String {
        self.origin.clone()
    }

    /// The introspection endpoint, for Dovecot's `introspection_url`.
    pub fn introspection_url(&self) -> String {
        format!("{}/introspect", self.origin)
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        self.served().tokens.issued()
    }

    /// Introspections answered `active: false` (a token expired, revoked
    /// or never issued) and `active: true`.
    pub fn introspections(&self) -> (usize, usize) {
        let s = self.served();
        (s.inactive, s.active)
    }

    /// Makes every token issued so far invalid.
    pub fn revoke_tokens(&self) {
        self.served().tokens.revoke_all();
    }

    /// Requests that broke a rule of the token endpoint.
    pub fn violations(&self) -> Vec<String> {
        self.served().tokens.violations().to_vec()
    }

    /// Sends a request to the server itself (`path` from the origin) and
    /// returns its status and JSON body: for tests of the server's rules.
    pub fn post(&self, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        let answer = ureq::post(&format!("{}{path}", self.origin))
            .set("Content-Type", content_type)
            .send_string(body);
        let response = match answer {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("POST {path}: {e}"),
        };
        let status = response.status();
        let text = response.into_string().expect("an answer");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn serve(
    mut request: tiny_http::Request,
    served: &Mutex<Served>,
    username: &str,
    latency: Duration,
) {
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    let content_type = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Content-Type"))
        .map(|h| h.value.as_str().to_string());
    let path: Vec<String> = request
        .url()
        .split('?')
        .next()
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let post = *request.method() == tiny_http::Method::Post;
    let (status, value) = match path.as_slice() {
        [tenant, "oauth2", "v2.0", "token"] if post => served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tokens
            .answer(tenant, content_type.as_deref(), &body),
        ["introspect"] if post => {
            std::thread::sleep(latency);
            let form: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(&body).into_owned().collect();
            let token = form.get("token").map(String::as_str).unwrap_or("");
            let mut s = served.lock().unwrap_or_else(|p| p.into_inner());
            if s.tokens.accepts(token) {
                s.active += 1;
                let scope = s.tokens.rules.scope.clone();
                let client_id = s.tokens.rules.client_id.clone();
                (
                    200,
                    json!({"active": true, "username": username, "scope": scope,
                        "client_id": client_id, "token_type": "Bearer"}),
                )
            } else {
                s.inactive += 1;
                (200, json!({"active": false}))
            }
        }
        _ => (404, json!({"error": "not_found"})),
    };
    let text = value.to_string();
    let response = tiny_http::Response::from_string(text)
        .with_status_code(status)
        .with_header(
            "Content-Type: application/json; charset=utf-8"
                .parse::<tiny_http::Header>()
                .expect("a header"),
        );
    let _ = request.respond(response);
}
