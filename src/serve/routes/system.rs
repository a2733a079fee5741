//! The public routes: `GET /healthz` (the token answers on a session),
//! `GET /metrics` (OpenMetrics text, which Prometheus scrapes). Neither takes credentials nor writes
//! an audit line; `/openapi.json` is added by the server itself.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::serve::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// "ok" or "unavailable".
    pub status: &'static str,
    /// The token's label.
    pub token: String,
    /// Why the token did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The token answers on one of the server's sessions.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn healthz(State(state): State<AppState>) -> Response {
    let label = state.pool().summary().label.clone();
    let wait = state.config().request_timeout;
    let check = state.pool().run(|token| {
        token.module().summary(token.slot())?;
        token.is_so()?;
        Ok(())
    });
    let outcome = match tokio::time::timeout(wait, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no session became free in time".into()),
    };
    match outcome {
        Ok(()) => Json(Health {
            status: "ok",
            token: label,
            reason: None,
        })
        .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable",
                token: label,
                reason: Some(reason),
            }),
        )
            .into_response(),
    }
}

/// Requests by route and status, latency, token calls, sessions.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "OpenMetrics 1.0 text exposition", content_type = "application/openmetrics-text")))]
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [("content-type", crate::serve::metrics::CONTENT_TYPE)],
        state.metrics().render(state.pool()),
    )
        .into_response()
}
