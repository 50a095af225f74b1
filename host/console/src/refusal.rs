//! Refusals: a page that says why something was not done and what to do,
//! with its HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use crate::layout::document;

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
        (self.status, document(&self.title, html! {}, body)).into_response()
    }
}
