//! The one mapping from service errors to HTTP: status, code and envelope
//! (DESIGN.md §4.1, SDD 14.6). Internal details are logged, not returned.

use crate::ports::{ExtractError, StoreError};
use crate::service::ServiceError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pika_common::embed::EmbedError;
use pika_common::wire::{ErrorBody, ErrorCode, ErrorEnvelope};
use serde_json::{Value, json};

tokio::task_local! {
    /// The current request's id, set by the request-id middleware, read here
    /// so every error envelope carries it as `trace_id`.
    pub static REQUEST_ID: String;
}

/// The current request id, or empty outside a request.
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// An error ready to be sent.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
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
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Validation(errs) => ApiError::new(ErrorCode::ValidationError, errs.summary())
                .with_details(json!({ "fields": errs.0 })),
            ServiceError::NotFound(what) => ApiError::new(ErrorCode::NotFound, format!("{what} not found")),
            ServiceError::Unauthorized => {
                ApiError::new(ErrorCode::Unauthorized, "missing or invalid API key")
            }
            ServiceError::Forbidden(p) => ApiError::new(
                ErrorCode::Forbidden,
                format!("this API key lacks the {p} permission"),
            ),
            ServiceError::ExtractionFailed(m) => ApiError::new(ErrorCode::ExtractionFailed, m),
            ServiceError::Store(StoreError::NotFound { what }) => {
                ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
            }
            ServiceError::Store(StoreError::Conflict(m)) => ApiError::new(ErrorCode::Conflict, m),
            ServiceError::Store(e @ StoreError::Unavailable(_)) => {
                tracing::error!(error = %e, "metadata store unavailable");
                let mut err = ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "a storage dependency is unavailable",
                );
                err.retry_after = Some(1);
                err
            }
            ServiceError::Embed(e @ (EmbedError::Unavailable(_) | EmbedError::Closed)) => {
                tracing::error!(error = %e, "embedder unavailable");
                let mut err = ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "the embedding service is unavailable",
                );
                err.retry_after = Some(1);
                err
            }
            ServiceError::Extract(ExtractError::Unavailable(m)) => {
                tracing::error!(error = %m, "extractor unavailable");
                ApiError::new(ErrorCode::ServiceUnavailable, "the language model is unavailable")
            }
            other => {
                tracing::error!(error = %other, "internal error");
                ApiError::new(ErrorCode::InternalError, "internal error")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorEnvelope {
            status: "error".into(),
            error: ErrorBody {
                code: self.code,
                message: self.message,
                details: self.details,
                trace_id: current_request_id(),
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert("retry-after", v);
        }
        resp
    }
}
