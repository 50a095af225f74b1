//! The endpoints for machines: `/healthz` (the state answers), `/metrics`
//! (Prometheus text) and `/status.json` (the status report), behind the
//! console's machine token when it sets one.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use connector_console::MachineAccess;

use super::WebContext;
use crate::status::render_metrics;

pub(super) fn routes(ctx: Arc<WebContext>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/status.json", get(status_json))
        .with_state(ctx)
}

async fn healthz(_: MachineAccess, State(ctx): State<Arc<WebContext>>) -> Response {
    match ctx.read(|_, db| Ok(db.clock_ms()?)).await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the state cannot be read: {}; see the daemon's log\n", e.0),
        )
            .into_response(),
    }
}

async fn metrics(_: MachineAccess, State(ctx): State<Arc<WebContext>>) -> Response {
    match ctx.read(|ctx, db| ctx.report(db)).await {
        Ok(report) => (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            render_metrics(&report),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", e.0)).into_response(),
    }
}

async fn status_json(_: MachineAccess, State(ctx): State<Arc<WebContext>>) -> Response {
    match ctx.read(|ctx, db| ctx.report(db)).await {
        Ok(report) => (
            [(CONTENT_TYPE, "application/json")],
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", e.0)).into_response(),
    }
}
