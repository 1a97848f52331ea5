//! The sidecar's request stack, built in one place, outermost layer first.

use crate::state::State;
use crate::{auth, health, layers, ratelimit};
use axum::Router;
use axum::extract::{Request, State as Extract};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::Response;
use axum::routing::get;
use pika_common::http::{panic_response, record_http_metrics, request_id, shed_load};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

/// The whole service: the sidecar's own endpoints, then everything else
/// through auth, rate limit and the search cache to the dataplane.
pub fn build(state: State, max_in_flight: usize) -> Router {
    let proxied = Router::new()
        .fallback(forward)
        .layer(
            ServiceBuilder::new()
                // Per client address, for keys not known to be live: a flood of
                // missing or guessed keys never reaches the key lookup at speed.
                .layer(from_fn_with_state(state.clone(), ratelimit::limit_unknown_keys))
                // Auth next: nothing below, the cache included, runs for a
                // request without a live key (a cached answer is data).
                .layer(from_fn_with_state(state.clone(), auth::require_key))
                // Per key, after auth so only real keys are counted, before the
                // cache so a hit counts like any other request.
                .layer(from_fn_with_state(state.clone(), ratelimit::limit))
                // Searches are answered here when possible; job status and user
                // deletion feed freshness; the rest passes through.
                .layer(from_fn_with_state(state.clone(), layers::search_cache)),
        )
        .with_state(state.clone());

    Router::new()
        .route("/health", get(health::health))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .with_state(state.clone())
        .merge(proxied)
        .layer(
            ServiceBuilder::new()
                // Request id outermost, with the request's tracing span: every
                // log line, error envelope and the dataplane (which receives
                // the header) share it.
                .layer(from_fn(request_id))
                // Mem0's clients read `{"detail": ...}`: errors the sidecar
                // answers itself on Mem0 paths take that shape too.
                .layer(from_fn(pika_common::http::mem0::mem0_errors))
                // Metrics: count everything, rejections and cache hits included.
                .layer(from_fn_with_state(
                    state.metrics.http.clone(),
                    record_http_metrics,
                ))
                // Load shedding: beyond `max_in_flight`, 503 at once rather
                // than a queue (counted by the metrics above).
                .layer(from_fn_with_state(
                    Arc::new(Semaphore::new(max_in_flight.max(1))),
                    shed_load,
                ))
                // A bug in one request answers the 500 envelope; the sidecar
                // keeps serving everyone else.
                .layer(CatchPanicLayer::custom(panic_response)),
        )
}

/// Innermost: the dataplane.
async fn forward(Extract(state): Extract<State>, req: Request) -> Response {
    state.upstream.forward(req).await
}
