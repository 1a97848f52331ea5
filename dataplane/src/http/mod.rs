//! HTTP API (DESIGN.md §4.1): routes, middleware stack and handlers.

pub mod auth;
pub mod error;
mod handlers;
mod json;
mod middleware;

use crate::app::AppState;
use crate::domain::Permission;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use pika_common::validate::MAX_BODY_BYTES;

/// The whole router. Layers run outermost first: request id (so every log line
/// and error carries it) → metrics (count everything, including auth failures)
/// → per-route auth → body limit → handler.
pub fn router(state: AppState) -> Router {
    let with = |p: Permission| axum::middleware::from_fn_with_state((state.clone(), p), auth::require);

    let extract = Router::new()
        .route("/v1/extract_facts", post(handlers::extract_facts))
        .route("/extract_facts", post(handlers::extract_facts))
        .route("/v1/jobs/{job_id}", get(handlers::get_job))
        .route("/v1/jobs/{job_id}/status", get(handlers::get_job))
        .route_layer(with(Permission::Extract));
    let search = Router::new()
        .route("/v1/search_facts", post(handlers::search_facts))
        .route("/search_facts", post(handlers::search_facts))
        .route("/v1/users/{user_id}/facts", get(handlers::list_facts))
        .route("/v1/facts/{fact_id}", get(handlers::get_fact))
        .route("/v1/facts/{fact_id}/history", get(handlers::fact_history))
        .route_layer(with(Permission::Search));
    let admin = Router::new()
        .route(
            "/v1/facts/{fact_id}",
            axum::routing::delete(handlers::delete_fact),
        )
        .route(
            "/v1/users/{user_id}",
            axum::routing::delete(handlers::delete_user),
        )
        .route("/v1/users/{user_id}/export", get(handlers::export_user))
        .route_layer(with(Permission::Admin));
    let open = Router::new()
        .route("/health", get(handlers::health))
        .route("/health/live", get(handlers::live))
        .route("/health/ready", get(handlers::ready))
        .route("/metrics", get(handlers::metrics));

    Router::new()
        .merge(extract)
        .merge(search)
        .merge(admin)
        .merge(open)
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::metrics,
        ))
        .layer(axum::middleware::from_fn(middleware::request_id))
        .with_state(state)
}

/// Health and metrics only: what a worker process serves.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(handlers::health))
        .route("/health/live", get(handlers::live))
        .route("/health/ready", get(handlers::ready))
        .route("/metrics", get(handlers::metrics))
        .fallback(handlers::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::metrics,
        ))
        .layer(axum::middleware::from_fn(middleware::request_id))
        .with_state(state)
}
