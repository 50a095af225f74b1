//! The daemon's HTTP status server: `/` (HTML page), `/status.json` and
//! `/metrics` (Prometheus text format). Read-only, on its own thread and
//! its own connection to the state database, so a busy connector never
//! blocks it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Response, Server};

use super::{LiveBoard, collect, render_html, render_metrics};
use crate::config::ConnectorConfig;
use crate::pipeline::StateLocation;
use connector_state::{Fingerprint, StateStore};

/// Why the status server could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot serve the status on {addr}: {message}; choose another `--listen` address (e.g. 127.0.0.1:9090) or stop what already uses it"
)]
pub struct ServeError {
    /// The address asked for.
    pub addr: String,
    /// What the system said.
    pub message: String,
}

/// A running status server; stops when dropped.
pub struct StatusServer {
    server: Arc<Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl StatusServer {
    /// Starts serving on `addr` (port 0 picks a free port): the status of
    /// `configs` (whose files have `fingerprints`) from the state at
    /// `state` and the live board; workers are alive while their heartbeat
    /// is within `lease_time`.
    pub fn start(
        addr: &str,
        state: StateLocation,
        configs: Vec<ConnectorConfig>,
        fingerprints: BTreeMap<String, Fingerprint>,
        live: Arc<LiveBoard>,
        lease_time: Duration,
    ) -> Result<StatusServer, ServeError> {
        let server = Server::http(addr).map_err(|e| ServeError {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
        let bound = server.server_addr().to_ip().ok_or_else(|| ServeError {
            addr: addr.to_string(),
            message: "not an IP address".into(),
        })?;
        let server = Arc::new(server);
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("status-http".into())
            .spawn(move || serve(&serving, &state, &configs, &fingerprints, &live, lease_time))
            .map_err(|e| ServeError {
                addr: addr.to_string(),
                message: e.to_string(),
            })?;
        Ok(StatusServer {
            server,
            addr: bound,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

fn serve(
    server: &Server,
    state: &StateLocation,
    configs: &[ConnectorConfig],
    fingerprints: &BTreeMap<String, Fingerprint>,
    live: &LiveBoard,
    lease_time: Duration,
) {
    let mut db: Option<Box<dyn StateStore>> = None;
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or("/").to_string();
        if request.method() != &tiny_http::Method::Get
            && request.method() != &tiny_http::Method::Head
        {
            let _ = request.respond(Response::from_string("only GET\n").with_status_code(405));
            continue;
        }
        if db.is_none() {
            db = state
                .open()
                .map_err(|e| tracing::error!("status server: {e}"))
                .ok();
        }
        let Some(conn) = db.as_ref() else {
            let _ = request.respond(
                Response::from_string(
                    "the state database cannot be opened; see the daemon's log\n",
                )
                .with_status_code(503),
            );
            continue;
        };
        let report = match collect(conn.as_ref(), configs, Some(live), lease_time, fingerprints) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("status server: {e}");
                db = None;
                let _ =
                    request.respond(Response::from_string(format!("{e}\n")).with_status_code(500));
                continue;
            }
        };
        let (body, content_type) = match path.as_str() {
            "/" | "/index.html" => (render_html(&report), "text/html; charset=utf-8"),
            "/status.json" => (
                serde_json::to_string_pretty(&report).unwrap_or_default(),
                "application/json",
            ),
            "/metrics" => (
                render_metrics(&report),
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            _ => {
                let _ = request.respond(
                    Response::from_string("not found; try /, /status.json or /metrics\n")
                        .with_status_code(404),
                );
                continue;
            }
        };
        let response = Response::from_string(body)
            .with_header(header("Content-Type", content_type))
            .with_header(header("Cache-Control", "no-store"));
        let _ = request.respond(response);
    }
}
