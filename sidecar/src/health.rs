//! The sidecar's own health and metrics (not proxied: the dataplane's are on
//! its own port). Ready means the dataplane answers; Redis and the
//! invalidation subscription are reported but optional (fail open).

use crate::state::State;
use axum::Json;
use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub async fn health(Extract(state): Extract<State>) -> Response {
    let upstream = state.upstream.live().await;
    let redis = match &state.cache.l1 {
        Some(l1) => {
            let started = std::time::Instant::now();
            let r = l1.ping().await;
            state
                .metrics
                .dependency_up
                .with_label_values(&["redis"])
                .set(r.is_ok() as i64);
            json!({"up": r.is_ok(), "latency_ms": started.elapsed().as_secs_f64() * 1000.0,
                   "error": r.err().map(|e| e.to_string())})
        }
        None => json!({"up": false, "error": "L1 disabled"}),
    };
    state
        .metrics
        .dependency_up
        .with_label_values(&["dataplane"])
        .set(upstream.is_ok() as i64);
    let status = if upstream.is_err() {
        "down"
    } else if redis["up"] == true && state.subscribed() {
        "ok"
    } else {
        "degraded"
    };
    let code = if upstream.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": status,
        "dataplane": match &upstream {
            Ok(d) => json!({"up": true, "latency_ms": d.as_secs_f64() * 1000.0}),
            Err(e) => json!({"up": false, "error": e.to_string()}),
        },
        "redis": redis,
        "invalidation": {"subscribed": state.subscribed()},
        "l0": {"entries": state.cache.l0.entry_count()},
    });
    (code, Json(body)).into_response()
}

pub async fn live() -> StatusCode {
    StatusCode::OK
}

pub async fn ready(Extract(state): Extract<State>) -> StatusCode {
    // Draining: the load balancer must stop sending here.
    if !state.draining() && state.upstream.live().await.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

pub async fn metrics(Extract(state): Extract<State>) -> String {
    state.metrics.embedder_waiting.set(state.cache.embedder.waiting());
    state.metrics.render()
}
