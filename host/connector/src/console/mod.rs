//! The daemon's web server: the console's pages (the connectors, one
//! connector with its runs, logs, quarantine and reconciliation, the audit
//! trail) behind sign-in, and the machine endpoints (`/healthz`,
//! `/metrics`, `/status.json`). Sign-in, sessions, roles and CSRF are
//! `connector-console`'s; this module says what each page shows and does.
//!
//! Without a console file only the machine endpoints are served, and `/`
//! says how to turn the console on.

mod audit;
mod connector;
mod connectors;
mod machine;
mod mapping;
mod wizard;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use connector_console::{
    Console, ConsoleServer, NavLink, Permission, Refusal, ServeError, page, refusal_page,
};
use connector_console::{ConsoleEvent, ConsoleHooks, EventKind, SignedIn};
use connector_model::time::now_ms;
use connector_state::{AuditAction, AuditEntry, StateStore};
use maud::html;

use crate::config::ConnectorConfig;
use crate::config::folder::{ConnectorSet, SharedConnectors};
use crate::pipeline::Host;
use crate::status::{LiveBoard, StatusReport, collect};

/// What the pages read and act on.
pub struct WebContext {
    /// The daemon's host (redeliveries run through it).
    pub host: Arc<Host>,
    /// The connectors the daemon runs now.
    connectors: SharedConnectors,
    /// What the connector threads report.
    pub live: Arc<LiveBoard>,
    /// The pages' own connection to the state, so a busy connector never
    /// holds a page up; opened again after an error.
    reader: Mutex<Option<Box<dyn StateStore>>>,
    /// Whether the Add-connector wizard is served (the console file has
    /// `[connectors]`).
    wizard_on: std::sync::atomic::AtomicBool,
}

/// Why a page could not be made: shown as a 500 page with the cause.
pub(crate) struct PageError(String);

impl<E: std::fmt::Display> From<E> for PageError {
    fn from(e: E) -> PageError {
        PageError(e.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        refusal_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot show this page",
            &format!("{}; see the daemon's log, and reload the page.", self.0),
        )
    }
}

impl WebContext {
    /// A context for the daemon's pages.
    pub fn new(host: Arc<Host>, connectors: SharedConnectors, live: Arc<LiveBoard>) -> WebContext {
        WebContext {
            host,
            connectors,
            live,
            reader: Mutex::new(None),
            wizard_on: Default::default(),
        }
    }

    /// Runs `work` with the pages' state connection, on this thread.
    fn with_state<T>(
        &self,
        work: impl FnOnce(&WebContext, &mut dyn StateStore) -> Result<T, PageError>,
    ) -> Result<T, PageError> {
        let mut slot = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(self.host.state().open()?);
        }
        let db = slot.as_deref_mut().expect("opened above");
        let result = work(self, db);
        if result.is_err() {
            *slot = None;
        }
        result
    }

    /// Runs `work` with the pages' state connection, off the async threads.
    pub(crate) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&WebContext, &mut dyn StateStore) -> Result<T, PageError> + Send + 'static,
    ) -> Result<T, PageError> {
        let ctx = self.clone();
        tokio::task::spawn_blocking(move || ctx.with_state(work))
            .await
            .map_err(|e| PageError(e.to_string()))?
    }

    /// Records what `who` did in the audit trail.
    pub(crate) async fn record(
        self: &Arc<Self>,
        who: &SignedIn,
        action: AuditAction,
        target: &str,
        detail: String,
    ) -> Result<(), PageError> {
        let entry = AuditEntry {
            at_ms: now_ms(),
            actor: who.identity.name.clone(),
            source: who.source.clone(),
            action,
            target: target.to_string(),
            detail,
        };
        self.read(move |_, db| Ok(db.append_audit(&entry).map(drop)?))
            .await
            .map_err(|e| {
                PageError(format!(
                    "{action} on `{target}` was done, but the audit trail could not record it ({}); fix the cause and record it by hand in your change log",
                    e.0
                ))
            })
    }

    /// The status of every connector.
    pub(crate) fn report(&self, db: &dyn StateStore) -> Result<StatusReport, PageError> {
        let set = self.connectors();
        Ok(collect(
            db,
            &set.configs,
            Some(&self.live),
            self.host.lease_time(),
            &set.fingerprints,
        )?)
    }

    /// The connectors the daemon runs now.
    pub(crate) fn connectors(&self) -> ConnectorSet {
        self.connectors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether `who` may add and edit connectors here.
    pub(crate) fn may_edit(&self, who: &SignedIn) -> bool {
        self.wizard_on.load(std::sync::atomic::Ordering::Relaxed)
            && who.identity.may(Permission::ChangeConnectors)
    }

    /// The connector with this id, when `who` has `permission`.
    pub(crate) fn connector_for(
        &self,
        who: &SignedIn,
        permission: Permission,
        id: &str,
    ) -> Result<ConnectorConfig, Refusal> {
        who.require(permission)?;
        let set = self.connectors();
        set.configs.into_iter().find(|c| c.id == id).ok_or_else(|| {
            Refusal::new(
                StatusCode::NOT_FOUND,
                "No such connector",
                &format!("This daemon runs no connector `{id}`; pick one from the list."),
            )
        })
    }
}

/// The navigation bar.
pub fn nav() -> Vec<NavLink> {
    vec![
        NavLink {
            label: "Data connectors",
            href: "/",
            permission: Permission::ViewStatus,
        },
        NavLink {
            label: "Audit trail",
            href: "/audit",
            permission: Permission::ViewAuditTrail,
        },
    ]
}

/// The console's sign-ins, sign-in failures and sign-outs, recorded in the
/// audit trail.
pub struct AuditHooks {
    ctx: Arc<WebContext>,
}

impl AuditHooks {
    /// Hooks that record into `ctx`'s state.
    pub fn new(ctx: Arc<WebContext>) -> AuditHooks {
        AuditHooks { ctx }
    }
}

impl ConsoleHooks for AuditHooks {
    fn record(&self, event: &ConsoleEvent) {
        let action = match event.kind {
            EventKind::SignedIn => AuditAction::SignIn,
            EventKind::SignInFailed => AuditAction::SignInFailed,
            EventKind::SignedOut => AuditAction::SignOut,
        };
        let entry = AuditEntry {
            at_ms: now_ms(),
            actor: event.actor.clone(),
            source: event.source.clone(),
            action,
            target: String::new(),
            detail: event.detail.clone(),
        };
        // Called from an async handler: the write may block briefly.
        let written = tokio::task::block_in_place(|| {
            self.ctx
                .with_state(|_, db| Ok(db.append_audit(&entry).map(drop)?))
        });
        if let Err(e) = written {
            tracing::error!(
                "the audit trail could not record {action} by {}: {}",
                event.actor,
                e.0
            );
        }
    }
}

/// The daemon's web server.
pub struct WebServer {
    server: ConsoleServer,
}

impl WebServer {
    /// Serves on `addr`: the console's pages when `console` is given, and
    /// the machine endpoints always.
    pub fn start(
        addr: &str,
        console: Option<Arc<Console>>,
        ctx: Arc<WebContext>,
    ) -> Result<WebServer, ServeError> {
        let machine = machine::routes(ctx.clone());
        let (app, tls) = match &console {
            Some(console) => {
                let pages = Router::new()
                    .route("/", get(connectors::list))
                    .route("/connectors/{id}", get(connector::show))
                    .route(
                        "/connectors/{id}/runs/{run}/log.csv",
                        get(connector::download_log),
                    )
                    .route(
                        "/connectors/{id}/runs/{run}/reconciliation",
                        get(connector::reconciliation),
                    )
                    .route("/connectors/{id}/quarantine", get(connector::quarantine))
                    .route("/connectors/{id}/redeliver", post(connector::redeliver))
                    .route(
                        "/connectors/{id}/mapping",
                        get(mapping::show).post(mapping::save),
                    )
                    .route("/connectors/{id}/run", post(connectors::run_now))
                    .route("/connectors/{id}/pause", post(connectors::pause))
                    .route("/connectors/{id}/resume", post(connectors::resume))
                    .route("/audit", get(audit::trail))
                    .route("/audit.csv", get(audit::export_csv))
                    .route("/audit.json", get(audit::export_json))
                    .with_state(ctx.clone())
                    .merge(machine);
                let pages = match console.settings().connector_folders() {
                    Some(folders) => {
                        ctx.wizard_on
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        let wizard = Arc::new(wizard::Wizard::new(ctx, folders));
                        pages.merge(
                            Router::new()
                                .route("/connectors/new", get(wizard::choose).post(wizard::start))
                                .route("/connectors/{id}/edit", post(wizard::edit))
                                .route("/wizard/{draft}/finish", post(wizard::finish))
                                .route(
                                    "/wizard/{draft}/{step}",
                                    get(wizard::show).post(wizard::save),
                                )
                                .with_state(wizard),
                        )
                    }
                    None => pages,
                };
                (console.router(pages), console.settings().tls_files())
            }
            None => {
                let off = Router::new().route("/", get(console_off)).merge(machine);
                (off, None)
            }
        };
        let server = ConsoleServer::start(addr, tls.as_ref(), app)?;
        Ok(WebServer { server })
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    /// `http(s)://` and the address.
    pub fn url(&self) -> String {
        self.server.url()
    }
}

async fn console_off() -> Response {
    let body = html! {
        h1 { "The console is off" }
        p.notice {
            "This daemon serves only " a href="/status.json" { "status.json" } ", "
            a href="/metrics" { "/metrics" } " and " a href="/healthz" { "/healthz" } ". "
            "To manage connectors here, start it with "
            code { "connector daemon --listen ADDRESS --console console.toml" }
            " (see docs/console.md)."
        }
    };
    (StatusCode::OK, page("Console off", None, "/", body)).into_response()
}
