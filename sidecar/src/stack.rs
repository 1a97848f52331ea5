//! The sidecar's request stack, built in one place, outermost layer first.

use crate::state::State;
use crate::{auth, health, layers, ratelimit};
use axum::Router;
use axum::extract::{MatchedPath, Request, State as Extract};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use axum::routing::get;
use std::time::Instant;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// The whole service: the sidecar's own endpoints, then everything else
/// through auth, rate limit and the search cache to the dataplane.
pub fn build(state: State) -> Router {
    let proxied = Router::new()
        .fallback(forward)
        .layer(
            ServiceBuilder::new()
                // Auth first: nothing below, the cache included, runs for a
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
                // Request id outermost: every log line, error envelope and the
                // dataplane (which receives the header) share it.
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id())
                // Tracing: one span per request, carrying the request id.
                .layer(TraceLayer::new_for_http())
                // Metrics: count everything, rejections and cache hits included.
                .layer(from_fn_with_state(state, record_metrics)),
        )
}

/// Innermost: the dataplane.
async fn forward(Extract(state): Extract<State>, req: Request) -> Response {
    state.upstream.forward(req).await
}

/// A bounded label: the matched route, or the first two path segments.
fn endpoint(req: &Request) -> String {
    if let Some(p) = req.extensions().get::<MatchedPath>() {
        return p.as_str().to_string();
    }
    let path = req.uri().path();
    if path.starts_with("/v1/jobs/") {
        return "/v1/jobs/{job_id}".into();
    }
    if path.starts_with("/v1/users/") {
        return "/v1/users/{user_id}".into();
    }
    if path.starts_with("/v1/facts/") {
        return "/v1/facts/{fact_id}".into();
    }
    match path {
        "/v1/search_facts" | "/search_facts" | "/v1/extract_facts" | "/extract_facts" => path.into(),
        _ => "other".into(),
    }
}

async fn record_metrics(Extract(state): Extract<State>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = endpoint(&req);
    let method = req.method().as_str().to_string();
    let resp = next.run(req).await;
    state
        .metrics
        .http_requests
        .with_label_values(&[endpoint.as_str(), method.as_str(), resp.status().as_str()])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[endpoint.as_str(), method.as_str()])
        .observe(started.elapsed().as_secs_f64());
    resp
}
