//! Request ids: every response carries `X-Request-Id` (the client's when it
//! sent a usable one), every log line of the request is in a span naming it,
//! every error envelope carries it as `trace_id`, and a proxied request takes
//! it upstream, so one id follows a request through sidecar and dataplane.

use super::error::REQUEST_ID;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A client's id is kept when it is short printable ASCII; otherwise a new
/// UUIDv7 is made (an id goes into logs and headers: bound it).
pub fn usable_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic())
}

/// Middleware: assigns, scopes and echoes the request id.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| usable_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let header = HeaderValue::from_str(&id).ok();
    if let Some(v) = &header {
        req.headers_mut().insert(REQUEST_ID_HEADER, v.clone());
    }
    let span =
        tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let mut resp = REQUEST_ID
        .scope(id, tracing::Instrument::instrument(next.run(req), span))
        .await;
    if let Some(v) = header {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn echo(req: Request) -> String {
        let seen = req.headers().get(REQUEST_ID_HEADER).cloned();
        format!("{}|{:?}", super::super::current_request_id(), seen)
    }

    #[tokio::test]
    async fn a_usable_id_is_kept_and_a_bad_one_replaced() {
        let app = Router::new()
            .route("/", get(echo))
            .layer(axum::middleware::from_fn(request_id));
        let req = Request::builder()
            .uri("/")
            .header(REQUEST_ID_HEADER, "abc-1")
            .body(Body::empty());
        let resp = app
            .clone()
            .oneshot(req.expect("request"))
            .await
            .expect("response");
        assert_eq!(resp.headers()[REQUEST_ID_HEADER], "abc-1");
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.expect("body");
        assert!(String::from_utf8_lossy(&body).starts_with("abc-1|Some("));

        let req = Request::builder()
            .uri("/")
            .header(REQUEST_ID_HEADER, "has space")
            .body(Body::empty());
        let resp = app.oneshot(req.expect("request")).await.expect("response");
        let id = resp.headers()[REQUEST_ID_HEADER]
            .to_str()
            .expect("ascii")
            .to_string();
        assert_ne!(id, "has space");
        assert_eq!(id.len(), 36);
    }
}
