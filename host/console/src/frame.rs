//! The page frame every console page shares (navigation, who is signed in,
//! sign-out), its assets, refusal pages, and the security headers put on
//! every response.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::csrf::csrf_field;
use crate::roles::Permission;
use crate::session::SignedIn;

/// The style sheet.
pub(crate) const CSS: &str = include_str!("../assets/console.css");
/// The script (confirmations only).
pub(crate) const JS: &str = include_str!("../assets/console.js");

/// A link of the navigation bar, shown to those with its permission.
#[derive(Debug, Clone)]
pub struct NavLink {
    /// The text.
    pub label: &'static str,
    /// Where it goes.
    pub href: &'static str,
    /// Who sees it.
    pub permission: Permission,
}

/// A whole page: `title`, the navigation (the link to `here` marked), who is
/// signed in and the sign-out button, then `body`.
pub fn page(title: &str, signed_in: Option<&SignedIn>, here: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Connectors" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                header.top {
                    span.brand { "Connectors" }
                    @if let Some(s) = signed_in {
                        nav {
                            @for link in &s.console.nav {
                                @if s.identity.may(link.permission) {
                                    a href=(link.href) class=[(link.href == here).then_some("here")] { (link.label) }
                                }
                            }
                        }
                        span.who {
                            span data-user=(s.identity.name) { (s.identity.name) " (" (s.identity.role_names()) ")" }
                            form method="post" action="/signout" {
                                (csrf_field(s))
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page that says why something was refused, with its status.
pub fn refusal_page(status: StatusCode, title: &str, message: &str) -> Response {
    Refusal::new(status, title, message).into_response()
}

/// A refusal, shown as a page that says why and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// The page's title.
    pub title: String,
    /// Why, and what to do.
    pub message: String,
}

impl Refusal {
    /// A refusal with its status, title and message.
    pub fn new(status: StatusCode, title: &str, message: &str) -> Refusal {
        Refusal {
            status,
            title: title.to_string(),
            message: message.to_string(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = html! {
            h1 { (self.title) }
            p.advice role="alert" { (self.message) }
            p { a href="/" { "Back to the console" } }
        };
        (self.status, page(&self.title, None, "", body)).into_response()
    }
}

/// The console's Content-Security-Policy: nothing but this origin's own
/// files, no inline script or style, no framing.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Puts the security headers on a response.
pub(crate) async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

pub(crate) async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

pub(crate) async fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
