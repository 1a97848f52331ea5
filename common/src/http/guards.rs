//! Guards every server of ours puts around its routes, so that neither a
//! slow dependency, a flood nor a bug in one handler takes the process's
//! answers out of the contract: a bound on requests in flight (beyond it, 503
//! at once, before any work is queued), a deadline per request, and a panic
//! turned into the 500 envelope (the process keeps serving; the panic is logged).

use super::ApiError;
use crate::wire::ErrorCode;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Middleware: at most the semaphore's permits in flight; a request beyond
/// that is shed at once with 503 and `Retry-After: 1` (load shedding: a
/// queue in front of a saturated server only adds latency and memory).
/// Liveness and metrics are never shed, so an overloaded pod is not killed
/// and stays observable.
pub async fn shed_load(State(slots): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/health/live" || path == "/metrics" {
        return next.run(req).await;
    }
    match slots.try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => ApiError::new(
            ErrorCode::ServiceUnavailable,
            "the server is at its limit of requests in flight; retry shortly",
        )
        .retry_after(1)
        .into_response(),
    }
}

/// Middleware: 503 `SERVICE_UNAVAILABLE` (with `Retry-After`) when the inner
/// service has not answered within the deadline; the work is dropped.
pub async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(limit_ms = limit.as_millis() as u64, "request deadline passed");
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!("the request took longer than {} ms", limit.as_millis()),
            )
            .retry_after(1)
            .into_response()
        }
    }
}

/// For `tower_http::catch_panic::CatchPanicLayer::custom`: the 500 envelope.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "handler panicked");
    ApiError::new(ErrorCode::InternalError, "internal error").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_slow_handler_gets_the_envelope_at_the_deadline() {
        let app = Router::new()
            .route(
                "/",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Duration::from_millis(20),
                deadline,
            ));
        let req = Request::builder().uri("/").body(Body::empty()).expect("request");
        let resp = app.oneshot(req).await.expect("response");
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "1");
    }

    #[tokio::test]
    async fn requests_beyond_the_limit_are_shed_with_retry_after() {
        let slots = Arc::new(Semaphore::new(1));
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/health/live", get(|| async { "alive" }))
            .layer(axum::middleware::from_fn_with_state(slots.clone(), shed_load));
        let get_path = |p: &str| Request::builder().uri(p).body(Body::empty()).expect("request");
        let resp = app.clone().oneshot(get_path("/")).await.expect("response");
        assert_eq!(resp.status(), 200);
        let held = slots.clone().try_acquire_owned().expect("the only slot");
        let resp = app.clone().oneshot(get_path("/")).await.expect("response");
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "1");
        let resp = app
            .clone()
            .oneshot(get_path("/health/live"))
            .await
            .expect("response");
        assert_eq!(resp.status(), 200, "liveness is never shed");
        drop(held);
        let resp = app.oneshot(get_path("/")).await.expect("response");
        assert_eq!(resp.status(), 200);
    }

    #[test]
    fn a_panic_becomes_a_500_envelope() {
        let resp = panic_response(Box::new("boom"));
        assert_eq!(resp.status(), 500);
    }
}
