//! The admin listener: health checks and metrics, apart from the public
//! listener so they can stay off the public network.
//!
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /readyz`: 200 when RabbitMQ is connected and every enabled queue is
//!   consumed, else 503. The JSON body names what is not ready.
//! - `GET /metrics`: Prometheus text format.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use serde_json::json;

use crate::bridge::Bridge;

/// Builds the admin listener's routes.
pub fn router(bridge: Arc<Bridge>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(bridge)
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(bridge): State<Arc<Bridge>>) -> impl IntoResponse {
    let readiness = bridge.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
}

async fn metrics(State(bridge): State<Arc<Bridge>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        bridge.metrics.render(),
    )
}
