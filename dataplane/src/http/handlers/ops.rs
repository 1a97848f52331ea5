//! Health, metrics and the fallback: open routes, no key needed.

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::service::ServiceError;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Per-dependency status; 503 when the metadata store is down.
pub async fn health(State(state): State<AppState>) -> Response {
    let report = state.services.health.report().await;
    let code = if report.serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report)).into_response()
}

pub async fn live() -> Response {
    (StatusCode::OK, Json(json!({"status": "alive"}))).into_response()
}

/// As `/health`, and 503 once shutdown has begun (the load balancer stops
/// sending here while requests in flight finish).
pub async fn ready(state: State<AppState>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        )
            .into_response();
    }
    health(state).await
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut resp = state.services.health.metrics_text().await.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

/// The OpenAPI 3.1 document of every route (`http::openapi`).
pub async fn openapi() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOCUMENT.get_or_init(crate::http::openapi::document_json).clone();
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

pub async fn not_found() -> ApiError {
    ServiceError::NotFound("endpoint".into()).into()
}
