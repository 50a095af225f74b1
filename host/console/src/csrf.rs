//! Forms that change something: each carries the session's CSRF token in a
//! hidden `csrf` field, and a request from another origin is refused.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::de::DeserializeOwned;

use crate::refusal::refusal_page;
use crate::session::{SignedIn, same_origin, same_secret};

/// The largest form body taken (a mapping CSV is uploaded in a form).
const MAX_FORM_BYTES: usize = 16 * 1024 * 1024;

/// The hidden field every state-changing form carries.
pub fn csrf_field(signed_in: &SignedIn) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed_in.csrf); }
}

/// A URL-encoded form posted by a signed-in person, with a valid CSRF
/// token, from this console's own origin.
pub struct CsrfForm<T> {
    /// Who posted it.
    pub signed_in: SignedIn,
    /// The form's fields.
    pub form: T,
}

#[derive(serde::Deserialize)]
struct Token {
    #[serde(default)]
    csrf: String,
}

fn forbidden(why: &str) -> Response {
    refusal_page(StatusCode::FORBIDDEN, "Refused", why)
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<CsrfForm<T>, Response> {
        let (mut parts, body) = request.into_parts();
        let signed_in = SignedIn::from_request_parts(&mut parts, state).await?;
        if !same_origin(&parts.headers) {
            return Err(forbidden(
                "This form was sent from another site; open the console and send it from there.",
            ));
        }
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|_| forbidden("The form could not be read; send it again."))?;
        if bytes.len() > MAX_FORM_BYTES {
            return Err(forbidden("The form is too large (16 MiB at most)."));
        }
        let token: Token = serde_urlencoded::from_bytes(&bytes).unwrap_or(Token {
            csrf: String::new(),
        });
        if !same_secret(&token.csrf, &signed_in.csrf) {
            return Err(forbidden(
                "The form's security token is missing or out of date; reload the page and send it again.",
            ));
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            refusal_page(
                StatusCode::BAD_REQUEST,
                "Bad form",
                &format!("The form is not complete: {e}; reload the page and fill it in again."),
            )
        })?;
        Ok(CsrfForm { signed_in, form })
    }
}
