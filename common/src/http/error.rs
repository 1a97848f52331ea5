//! The one error type a handler or layer returns, and the envelope it becomes
//! (DESIGN.md §4.1, SDD 14.6):
//! `{"status":"error","error":{"code","message","details":{},"trace_id"}}`.
//! `trace_id` is the request id of the request being answered, read from the
//! task-local the request-id middleware sets.

use crate::wire::{ErrorBody, ErrorCode, ErrorEnvelope};
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

tokio::task_local! {
    /// The current request's id, set by [`super::request_id`].
    pub(super) static REQUEST_ID: String;
}

/// The current request id, or empty outside a request.
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// An error ready to be sent. Build it from a typed error in one place per
/// crate (a `From` impl with an exhaustive match), not in handlers.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Always an object (`{}` when there is nothing to add).
    pub details: Value,
    /// Seconds for `Retry-After` (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: json!({}),
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The envelope this error is sent as, with `trace_id`.
    pub fn envelope(&self, trace_id: String) -> ErrorEnvelope {
        ErrorEnvelope {
            status: "error".into(),
            error: ErrorBody {
                code: self.code,
                message: self.message.clone(),
                details: self.details.clone(),
                trace_id,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.envelope(current_request_id());
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_envelope_carries_the_request_id_and_an_object() {
        let resp = REQUEST_ID
            .scope("req-1".into(), async {
                ApiError::new(ErrorCode::ServiceUnavailable, "down")
                    .retry_after(2)
                    .into_response()
            })
            .await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
        let bytes = axum::body::to_bytes(resp.into_body(), 4096).await.expect("body");
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["status"], "error");
        assert_eq!(v["error"]["code"], "SERVICE_UNAVAILABLE");
        assert_eq!(v["error"]["trace_id"], "req-1");
        assert_eq!(v["error"]["details"], json!({}));
    }
}
