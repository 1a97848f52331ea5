//! HTTP API (DESIGN.md §4.1): routes, middleware stack and handlers.

pub mod auth;
pub mod error;
mod handlers;
mod json;
mod mem0;
pub mod openapi;
mod views;

use crate::app::AppState;
use crate::domain::Permission;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use pika_common::http::{deadline, panic_response, record_http_metrics, request_id, shed_load};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;

/// The longest a request may take: `server.request_timeout_ms`, raised to
/// leave a `?wait=true` extract its own bound (`server.max_wait_ms`).
fn request_deadline(state: &AppState) -> Duration {
    let s = &state.config.server;
    Duration::from_millis(s.request_timeout_ms.max(s.max_wait_ms + 1_000))
}
use pika_common::validate::MAX_BODY_BYTES;

/// The whole router. Layers run outermost first: request id (so every log line
/// and error carries it) → metrics (count everything, including auth failures)
/// → load shedding (`server.max_in_flight`; counted, so sheds show in the
/// metrics) → catch panic (a bug answers the 500 envelope, the process keeps
/// serving) → deadline (`server.request_timeout_ms`, at least `server.max_wait_ms` + 1 s
/// so that `?wait=true` can use its bound) → per-route auth → body limit →
/// handler.
pub fn router(state: AppState) -> Router {
    let with = |p: Permission| axum::middleware::from_fn_with_state((state.clone(), p), auth::require);

    use handlers::{access, facts, jobs, memory, ops, sidecar};
    let extract = Router::new()
        .route("/v1/extract_facts", post(memory::extract_facts))
        .route("/extract_facts", post(memory::extract_facts))
        .route("/v1/jobs/{job_id}", get(memory::get_job))
        .route("/v1/jobs/{job_id}/status", get(memory::get_job))
        .route_layer(with(Permission::Extract));
    let search = Router::new()
        .route("/v1/search_facts", post(memory::search_facts))
        .route("/search_facts", post(memory::search_facts))
        .route("/v1/users/{user_id}/facts", get(facts::list_facts))
        .route("/v1/facts/{fact_id}", get(facts::get_fact))
        .route("/v1/facts/{fact_id}/history", get(facts::fact_history))
        .route("/v1/audit/cache_hits", post(sidecar::cache_hits))
        .route_layer(with(Permission::Search));
    let admin = Router::new()
        .route("/v1/facts/{fact_id}", axum::routing::delete(facts::delete_fact))
        .route("/v1/users/{user_id}", axum::routing::delete(facts::delete_user))
        .route("/v1/users/{user_id}/export", get(facts::export_user))
        .route(
            "/v1/users/{user_id}/consent",
            get(facts::get_consent).put(facts::set_consent),
        )
        .route("/v1/admin/jobs", get(jobs::list_jobs))
        .route("/v1/admin/jobs/redrive", post(jobs::redrive_jobs))
        .route("/v1/admin/jobs/{job_id}/retry", post(jobs::retry_job))
        .route_layer(with(Permission::Admin));
    let operator = Router::new()
        .route(
            "/v1/tenants",
            post(access::create_tenant).get(access::list_tenants),
        )
        .route(
            "/v1/tenants/{tenant_id}",
            axum::routing::patch(access::change_tenant),
        )
        .route("/v1/keys", post(access::create_key).get(access::list_keys))
        .route("/v1/keys/{key_id}", axum::routing::delete(access::revoke_key))
        .route_layer(with(Permission::Operator));
    let open = Router::new()
        .route("/health", get(ops::health))
        .route("/health/live", get(ops::live))
        .route("/health/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        // Checks the key it is asked about, whatever that key may do.
        .route("/v1/keys/self", get(sidecar::key_self));

    Router::new()
        .merge(extract)
        .merge(search)
        .merge(admin)
        .merge(operator)
        .merge(open)
        .merge(mem0::router(state.clone()))
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            request_deadline(&state),
            deadline,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(Semaphore::new(state.config.server.max_in_flight.max(1))),
            shed_load,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.http.clone(),
            record_http_metrics,
        ))
        .layer(axum::middleware::from_fn(request_id))
        .with_state(state)
}

/// Health and metrics only: what a worker process serves.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(handlers::ops::health))
        .route("/health/live", get(handlers::ops::live))
        .route("/health/ready", get(handlers::ops::ready))
        .route("/metrics", get(handlers::ops::metrics))
        .fallback(handlers::ops::not_found)
        .layer(axum::middleware::from_fn_with_state(
            request_deadline(&state),
            deadline,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.http.clone(),
            record_http_metrics,
        ))
        .layer(axum::middleware::from_fn(request_id))
        .with_state(state)
}
