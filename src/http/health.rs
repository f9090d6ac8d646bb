//! Liveness, readiness and the Prometheus scrape endpoint.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::log::Reachability;

/// The process is alive.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Whether this replica can serve, and if not, why.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessResponse {
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// The broker's reachability: `up`, `down` or `unknown` (not checked yet).
    #[schema(example = "up")]
    pub broker: &'static str,
    /// Topics still replaying, failed, or preloaded but not attached yet.
    pub pending_topics: Vec<String>,
}

/// Liveness: answers 200 while the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "get_health",
    tag = "health",
    responses((status = 200, description = "Alive", body = HealthResponse))
)]
pub async fn healthz() -> Json<HealthResponse> {
    Json(HealthResponse { status: "ok" })
}

/// Readiness: 200 once the broker answers and every attached (and preloaded) topic has
/// replayed to the end it had when attached; 503 otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "get_readiness",
    tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = ReadinessResponse),
        (status = 503, description = "Not ready: broker unreachable or topics replaying", body = ReadinessResponse),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<ReadinessResponse>) {
    let broker = state.log.status().get();
    let pending_topics = state.topics.not_ready();
    let ready = broker == Reachability::Up && pending_topics.is_empty();
    let body = ReadinessResponse {
        status: if ready { "ready" } else { "not_ready" },
        broker: match broker {
            Reachability::Up => "up",
            Reachability::Down => "down",
            Reachability::Unknown => "unknown",
        },
        pending_topics,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "get_metrics",
    tag = "health",
    responses((status = 200, description = "Metrics", content_type = "text/plain; version=0.0.4", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = &state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled").into_response();
    };
    let topics = state.topics.list();
    crate::metrics::service_state(state.log.status().get() == Reachability::Up, topics.len());
    for topic in &topics {
        let info = topic.info();
        crate::metrics::topic_progress(&info.name, info.stats, info.end_offset, info.lag);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
