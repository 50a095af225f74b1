//! The sign-in routes: the sign-in page, local accounts, the OpenID
//! provider's round trip, and sign-out.

use axum::extract::{FromRequest, Query, Request};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use crate::accounts::LocalAccounts;
use crate::csrf::CsrfForm;
use crate::frame::page;
use crate::refusal::refusal_page;
use crate::roles::Identity;
use crate::session::{
    SESSION_COOKIE, cookie, expired_session_cookie, same_origin, set_cookie, with_cookie,
};
use crate::{Console, ConsoleEvent, EventKind};

/// The cookie that ties an OpenID provider's callback to the browser that
/// started the sign-in. SameSite=Lax: the provider's redirect back is a
/// cross-site navigation.
const SIGNIN_COOKIE: &str = "connector_signin";

/// `next` when it is a path of this console, else `/` (no open redirect).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".into(),
    }
}

#[derive(Deserialize)]
pub(crate) struct SignInQuery {
    next: Option<String>,
}

pub(crate) async fn signin_page(Query(q): Query<SignInQuery>, request: Request) -> Response {
    let console = Console::from_request(&request);
    signin_form(
        &console,
        &local_path(q.next.as_deref()),
        None,
        StatusCode::OK,
    )
}

fn signin_form(
    console: &Console,
    next: &str,
    problem: Option<&str>,
    status: StatusCode,
) -> Response {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(p) = problem { p.advice role="alert" { (p) } }
        @if let Some(oidc) = &console.oidc {
            p { a.button href={ "/signin/oidc?" (serde_urlencoded::to_string([("next", next)]).unwrap_or_default()) } { (oidc.button()) } }
        }
        @if console.settings.accounts.is_some() {
            form.signin method="post" action="/signin" {
                input type="hidden" name="next" value=(next);
                label { "Account" input type="text" name="name" autocomplete="username" required; }
                label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        }
    };
    (status, page("Sign in", None, "/signin", body)).into_response()
}

#[derive(Deserialize)]
pub(crate) struct LocalSignIn {
    name: String,
    password: String,
    next: Option<String>,
}

pub(crate) async fn signin_local(request: Request) -> Response {
    let console = Console::from_request(&request);
    let from = Console::source_of(&request);
    if !same_origin(request.headers()) {
        return refusal_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "This sign-in was sent from another site; open the console and sign in there.",
        );
    }
    let Ok(body) = axum::body::to_bytes(request.into_body(), 64 * 1024).await else {
        return refusal_page(
            StatusCode::BAD_REQUEST,
            "Bad form",
            "The sign-in form could not be read; try again.",
        );
    };
    let Ok(form) = serde_urlencoded::from_bytes::<LocalSignIn>(&body) else {
        return refusal_page(
            StatusCode::BAD_REQUEST,
            "Bad form",
            "Fill in the account and the password.",
        );
    };
    let next = local_path(form.next.as_deref());
    let keys = [from.as_str(), form.name.as_str()];
    if let Some(wait) = console.throttle.wait(&keys) {
        let minutes = wait.as_secs().div_ceil(60);
        let mut response = signin_form(
            &console,
            &next,
            Some(&format!(
                "Too many failed sign-ins for this account or from this address; wait {minutes} minute(s) and try again."
            )),
            StatusCode::TOO_MANY_REQUESTS,
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(RETRY_AFTER, v);
        }
        return response;
    }
    let Some(path) = console.settings.accounts_path() else {
        return signin_form(
            &console,
            &next,
            Some("Local accounts are not enabled; use the button above."),
            StatusCode::FORBIDDEN,
        );
    };
    let (name, password) = (form.name.clone(), form.password);
    let checked = tokio::task::spawn_blocking(move || {
        LocalAccounts::load(&path).and_then(|a| a.check(&name, &password))
    })
    .await;
    match checked {
        Ok(Ok(Some(roles))) => {
            console.throttle.succeeded(&keys);
            let identity = Identity {
                name: form.name,
                roles: roles.into_iter().collect(),
                via: "local".into(),
            };
            signed_in(&console, identity, &from, &next)
        }
        Ok(Ok(None)) => {
            console.throttle.failed(&keys);
            console.record(ConsoleEvent {
                kind: EventKind::SignInFailed,
                actor: form.name,
                source: from,
                detail: "wrong account or password".into(),
            });
            signin_form(
                &console,
                &next,
                Some("Wrong account or password."),
                StatusCode::UNAUTHORIZED,
            )
        }
        Ok(Err(e)) => {
            tracing::error!("console sign-in: {e}");
            signin_form(
                &console,
                &next,
                Some(&e.to_string()),
                StatusCode::INTERNAL_SERVER_ERROR,
            )
        }
        Err(e) => refusal_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in failed",
            &format!("{e}; try again"),
        ),
    }
}

/// Opens the session and sends the browser on. A page rather than a
/// redirect: after the provider's cross-site redirect, the browser would
/// not send the SameSite=Strict cookie on a redirect that follows it.
fn signed_in(console: &Console, identity: Identity, from: &str, next: &str) -> Response {
    console.record(ConsoleEvent {
        kind: EventKind::SignedIn,
        actor: identity.name.clone(),
        source: from.to_string(),
        detail: format!("via {}, roles {}", identity.via, identity.role_names()),
    });
    let cookie = console.sessions.open(identity);
    let body = html! {
        (maud::PreEscaped(format!(r#"<meta http-equiv="refresh" content="0;url={}">"#, maud::html! { (next) }.into_string())))
        h1 { "Signed in" }
        p { a href=(next) { "Continue" } }
    };
    with_cookie(page("Signed in", None, "", body).into_response(), cookie)
}

pub(crate) async fn oidc_start(Query(q): Query<SignInQuery>, request: Request) -> Response {
    let console = Console::from_request(&request);
    let next = local_path(q.next.as_deref());
    let Some(oidc) = console.oidc.clone() else {
        return signin_form(
            &console,
            &next,
            Some("Sign-in through a provider is not enabled."),
            StatusCode::NOT_FOUND,
        );
    };
    let n = next.clone();
    match tokio::task::spawn_blocking(move || oidc.start(&n)).await {
        Ok(Ok(started)) => with_cookie(
            Redirect::to(&started.url).into_response(),
            set_cookie(
                SIGNIN_COOKIE,
                &started.browser,
                "Lax",
                std::time::Duration::from_secs(600),
            ),
        ),
        Ok(Err(e)) => signin_form(
            &console,
            &next,
            Some(&e.to_string()),
            StatusCode::BAD_GATEWAY,
        ),
        Err(e) => signin_form(
            &console,
            &next,
            Some(&e.to_string()),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    }
}

#[derive(Deserialize)]
pub(crate) struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

pub(crate) async fn oidc_callback(Query(q): Query<Callback>, request: Request) -> Response {
    let console = Console::from_request(&request);
    let from = Console::source_of(&request);
    let browser = cookie(request.headers(), SIGNIN_COOKIE).map(str::to_string);
    let Some(oidc) = console.oidc.clone() else {
        return signin_form(
            &console,
            "/",
            Some("Sign-in through a provider is not enabled."),
            StatusCode::NOT_FOUND,
        );
    };
    let failed = |console: &Console, actor: String, why: String, status| {
        console.record(ConsoleEvent {
            kind: EventKind::SignInFailed,
            actor,
            source: from.clone(),
            detail: why.clone(),
        });
        with_cookie(
            signin_form(console, "/", Some(&why), status),
            set_cookie(SIGNIN_COOKIE, "", "Lax", std::time::Duration::ZERO),
        )
    };
    if let Some(error) = q.error {
        let why = format!(
            "The provider refused the sign-in: {error}{}. Try again, or ask your identity administrator.",
            q.error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
        return failed(
            &console,
            oidc.issuer().to_string(),
            why,
            StatusCode::UNAUTHORIZED,
        );
    }
    let (Some(state), Some(code)) = (q.state, q.code) else {
        return failed(
            &console,
            oidc.issuer().to_string(),
            "The provider's answer has no code; sign in again.".into(),
            StatusCode::BAD_REQUEST,
        );
    };
    let finishing = oidc.clone();
    let finished =
        tokio::task::spawn_blocking(move || finishing.finish(&state, &code, browser.as_deref()))
            .await;
    match finished {
        Ok(Ok((identity, next))) => with_cookie(
            signed_in(&console, identity, &from, &next),
            set_cookie(SIGNIN_COOKIE, "", "Lax", std::time::Duration::ZERO),
        ),
        Ok(Err(e)) => {
            let actor = match &e {
                crate::oidc::OidcError::NoRole { user, .. } => user.clone(),
                _ => oidc.issuer().to_string(),
            };
            failed(&console, actor, e.to_string(), StatusCode::FORBIDDEN)
        }
        Err(e) => failed(
            &console,
            oidc.issuer().to_string(),
            e.to_string(),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    }
}

#[derive(Deserialize)]
pub(crate) struct Nothing {}

pub(crate) async fn signout(request: Request) -> Response {
    let token = cookie(request.headers(), SESSION_COOKIE).map(str::to_string);
    let form = match <CsrfForm<Nothing> as FromRequest<()>>::from_request(request, &()).await {
        Ok(CsrfForm { signed_in, .. }) => signed_in,
        Err(refused) => return refused,
    };
    if let Some(token) = token {
        form.console.sessions.close(&token);
    }
    form.console.record(ConsoleEvent {
        kind: EventKind::SignedOut,
        actor: form.identity.name.clone(),
        source: form.source.clone(),
        detail: String::new(),
    });
    with_cookie(
        Redirect::to("/signin").into_response(),
        expired_session_cookie(),
    )
}
