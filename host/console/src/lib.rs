//! The web console's frame, apart from what it shows: an HTTP(S) server
//! ([`ConsoleServer`]), sign-in by local accounts (argon2id) or an OpenID
//! provider (authorization code with PKCE), sessions in HttpOnly, Secure,
//! SameSite=Strict cookies, roles and their permissions ([`Role`],
//! [`Permission`]), CSRF-checked forms ([`CsrfForm`]), a strict
//! Content-Security-Policy and the page layout ([`page`]).
//!
//! It knows nothing of connectors: the host builds its pages as an axum
//! [`Router`] whose handlers start from [`SignedIn`] or [`CsrfForm`], and
//! hears of sign-ins through [`ConsoleHooks`].

mod accounts;
mod csrf;
mod files;
mod frame;
mod layout;
mod oidc;
mod refusal;
mod roles;
mod server;
mod session;
mod settings;
mod settings_form;
mod signin;
mod throttle;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{get, post};

pub use accounts::{AccountsError, LocalAccount, LocalAccounts};
pub use csrf::{CsrfForm, csrf_field};
pub use files::replace_file;
pub use frame::page;
pub use layout::{CONTENT_SECURITY_POLICY_VALUE, NavLink};
pub use oidc::OidcError;
pub use refusal::{Refusal, refusal_page};
pub use roles::{Identity, Permission, Role};
pub use server::{ConsoleServer, ServeError};
pub use session::{SESSION_COOKIE, SignedIn, random_token};
pub use settings::{ConnectorFolders, ConsoleSettings, OidcSettings, SettingsError, TlsFiles};
pub use settings_form::{FormProblems, SchemaError, SettingsForm};

/// What the console tells its embedder (for the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleEvent {
    /// What happened.
    pub kind: EventKind,
    /// Who: the account name, the provider's e-mail, or the issuer when
    /// nobody is known yet.
    pub actor: String,
    /// From where: the peer's IP address.
    pub source: String,
    /// How (method and roles) or why it failed.
    pub detail: String,
}

/// The kinds of [`ConsoleEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A session was opened.
    SignedIn,
    /// A sign-in was refused.
    SignInFailed,
    /// A session was closed by its owner.
    SignedOut,
}

/// The embedder's policy hooks; each has a default that does nothing.
pub trait ConsoleHooks: Send + Sync + 'static {
    /// Records a sign-in, a refused sign-in or a sign-out.
    fn record(&self, event: &ConsoleEvent) {
        let _ = event;
    }
}

/// The console: its settings, sessions, sign-in and navigation.
pub struct Console {
    settings: ConsoleSettings,
    sessions: session::Sessions,
    throttle: throttle::SignInThrottle,
    oidc: Option<Arc<oidc::OidcSignIn>>,
    machine_token: Option<String>,
    hooks: Arc<dyn ConsoleHooks>,
    nav: Vec<NavLink>,
}

impl Console {
    /// A console from its settings (secrets read now), with the navigation
    /// bar's links and the embedder's hooks.
    pub fn new(
        settings: ConsoleSettings,
        nav: Vec<NavLink>,
        hooks: Arc<dyn ConsoleHooks>,
    ) -> Result<Arc<Console>, SettingsError> {
        let machine_token = match &settings.machine_token {
            Some(name) => Some(settings.secret(name)?),
            None => None,
        };
        let oidc = match (&settings.oidc, &settings.public_url) {
            (Some(o), Some(url)) => {
                let secret = match &o.client_secret {
                    Some(name) => Some(settings.secret(name)?),
                    None => None,
                };
                let signin = oidc::OidcSignIn::new(o.clone(), secret, url).map_err(|_| {
                    SettingsError::BadPublicUrl {
                        path: settings.base_dir.clone(),
                        url: url.clone(),
                    }
                })?;
                Some(Arc::new(signin))
            }
            _ => None,
        };
        Ok(Arc::new(Console {
            sessions: session::Sessions::new(settings.session_lifetime()),
            throttle: Default::default(),
            oidc,
            machine_token,
            hooks,
            nav,
            settings,
        }))
    }

    /// The settings it was made from.
    pub fn settings(&self) -> &ConsoleSettings {
        &self.settings
    }

    /// `pages` behind the console: the sign-in routes and assets added,
    /// the console reachable by every handler, the security headers on
    /// every response.
    pub fn router(self: &Arc<Self>, pages: Router) -> Router {
        Router::new()
            .route(
                "/signin",
                get(signin::signin_page).post(signin::signin_local),
            )
            .route("/signin/oidc", get(signin::oidc_start))
            .route("/signin/callback", get(signin::oidc_callback))
            .route("/signout", post(signin::signout))
            .route("/assets/console.css", get(layout::css))
            .route("/assets/console.js", get(layout::js))
            .merge(pages)
            .layer(axum::Extension(self.clone()))
            .layer(axum::middleware::map_response(layout::security_headers))
    }

    /// Tells the hooks.
    pub fn record(&self, event: ConsoleEvent) {
        self.hooks.record(&event);
    }

    fn of(parts: &Parts) -> Arc<Console> {
        parts
            .extensions
            .get::<Arc<Console>>()
            .cloned()
            .expect("the console's routes run inside Console::router")
    }

    fn from_request(request: &Request) -> Arc<Console> {
        request
            .extensions()
            .get::<Arc<Console>>()
            .cloned()
            .expect("the console's routes run inside Console::router")
    }

    fn source_of(request: &Request) -> String {
        session::source(request.extensions())
    }
}

/// A request to a machine endpoint (`/healthz`, `/metrics`,
/// `/status.json`): allowed when the console sets no machine token or the
/// request carries it as a bearer token, refused (401) otherwise.
pub struct MachineAccess;

impl<S: Send + Sync> FromRequestParts<S> for MachineAccess {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<MachineAccess, Response> {
        let expected = parts
            .extensions
            .get::<Arc<Console>>()
            .and_then(|c| c.machine_token.clone());
        let Some(expected) = expected else {
            return Ok(MachineAccess);
        };
        let given = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given.is_some_and(|g| session::same_secret(g, &expected)) {
            Ok(MachineAccess)
        } else {
            let mut response = axum::response::IntoResponse::into_response((
                StatusCode::UNAUTHORIZED,
                "this endpoint needs `Authorization: Bearer <token>`, the machine-token secret of the console file\n",
            ));
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            Err(response)
        }
    }
}
