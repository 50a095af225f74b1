//! The frame of a signed-in person's pages: the navigation their roles
//! allow, who they are, and the sign-out button.

use maud::{Markup, html};

use crate::csrf::csrf_field;
use crate::layout::document;
use crate::session::SignedIn;

/// A whole page: `title`, the navigation (the link to `here` marked), who is
/// signed in and the sign-out button, then `body`.
pub fn page(title: &str, signed_in: Option<&SignedIn>, here: &str, body: Markup) -> Markup {
    let header = html! {
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
    };
    document(title, header, body)
}
